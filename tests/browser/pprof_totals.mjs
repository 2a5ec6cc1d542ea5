// Decode a tachyon pprof file with `pprof-format` (the decoder Datadog's Node profiler uses)
// and print what a pprof reader sees: sample types, period, duration, labels, and per
// function (file + name) its self samples and start line.
//     node pprof_totals.mjs profile.pb.gz
import { readFileSync } from "node:fs";
import { gunzipSync } from "node:zlib";
import { Profile } from "pprof-format";

const profile = Profile.decode(gunzipSync(readFileSync(process.argv[2])));
const str = (i) => profile.stringTable.strings[Number(i)];
const functions = new Map(profile.function.map((f) => [String(f.id), f]));
const locations = new Map(profile.location.map((l) => [String(l.id), l]));
const perFunction = {};
const threads = {};
for (const sample of profile.sample) {
  const leaf = locations.get(String(sample.locationId[0]));
  const fn = functions.get(String(leaf.line[0].functionId));
  const key = `${str(fn.filename)}:${str(fn.name)}`;
  const entry = (perFunction[key] ??= { self: 0, selfNs: 0, startLine: Number(fn.startLine) });
  entry.self += Number(sample.value[0]);
  entry.selfNs += Number(sample.value[1]);
  const labels = Object.fromEntries(sample.label.map((l) => [str(l.key), l.num ? Number(l.num) : str(l.str)]));
  threads[labels.thread_id] = labels.thread_name;
}
console.log(JSON.stringify({
  sampleTypes: profile.sampleType.map((t) => [str(t.type), str(t.unit)]),
  periodType: [str(profile.periodType.type), str(profile.periodType.unit)],
  period: Number(profile.period),
  durationNanos: Number(profile.durationNanos),
  threads,
  perFunction,
}));
