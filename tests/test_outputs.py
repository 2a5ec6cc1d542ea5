"""heatmap and gecko from real profiles: the heatmap in Chromium, the gecko profile against the
Firefox Profiler's processed-format schema."""
import json
import os
import shutil
import struct
import subprocess

import pytest

from conftest import ROOT, require_python, tachyon
from test_html import ARTIFACTS, browser_ready

WORK = r'''
import threading, time
BANNER = "<script>window.__tachyon_xss = 1</script>"

def hot():
    s = 0
    for i in range(3000):
        s += i * i
    return s

def cold():
    return sum(range(100))

def handler():
    try:
        raise KeyError("x")
    except KeyError:
        return hot()

def sleeper():
    time.sleep(1.2)

def main():
    t = threading.Thread(target=sleeper)
    t.start()
    end = time.time() + 1.0
    while time.time() < end:
        hot()
        cold()
        handler()
    t.join()

main()
'''


@pytest.fixture(scope="module")
def capture(tmp_path_factory):
    python = require_python("3.12")
    d = tmp_path_factory.mktemp("outputs")
    script = d / "work.py"
    script.write_text(WORK)
    tachyon("run", "--python", python, "-a", "-f", "binary", "-o", d / "cap.bin", script)
    return d, script


def test_heatmap_pages_colour_the_hot_lines(capture):
    browser_ready()
    d, script = capture
    out = d / "heat"
    proc = tachyon("replay", d / "cap.bin", "-f", "heatmap", "-o", str(out) + ".html", "--source-root", d)
    assert "Heatmap output written to" in proc.stderr and out.is_dir(), "-o x.html means directory x"
    os.makedirs(ARTIFACTS, exist_ok=True)
    shot = os.path.join(ARTIFACTS, "heatmap.png")
    r = json.loads(subprocess.run(["node", os.path.join(ROOT, "tests", "browser", "check_heatmap.mjs"), str(out), shot, "threading"],
                                  capture_output=True, text=True, check=True, timeout=120).stdout)
    assert r["consoleErrors"] == [] and r["pageErrors"] == [] and r["dialogs"] == []
    assert r["indexFiles"][0] == str(script), "the profiled script is the hottest file"
    src = script.read_text().splitlines()
    hot_line = src.index("        s += i * i") + 1
    self_hot = [l for l in r["selfLines"] if l["n"] == "line-%d" % hot_line]
    assert self_hot, "the loop body has self samples"
    self_of = {l["n"]: int(l["title"].split("Self: ")[1].split(",")[0]) for l in r["selfLines"]}
    cold_line = src.index("    return sum(range(100))") + 1
    assert self_of["line-%d" % hot_line] > self_of.get("line-%d" % cold_line, 0)
    assert len(r["totalLines"]) > len(r["selfLines"]), "callers are coloured by total time"
    assert any(t == '        hot()' for t in r["allText"])
    assert 'BANNER = "<script>window.__tachyon_xss = 1</script>"' in r["allText"], "source is shown as text"
    for href in r["callees"]:
        page, anchor = href.split("#")
        assert (out / page).exists() and anchor.startswith("line-")
    # Column headers, a colour legend, and caller (▲) links beside the callee (▼) ones:
    # hot() (on the first of its lines sampled) is called from main() and from handler().
    assert r["header"] == ["Line", "Self", "Total", "Source"]
    assert "cold" in r["legend"] and "hot" in r["legend"] and "gradient" in r["legendScale"]
    in_hot = {"line-%d" % n for n in range(src.index("def hot():") + 2, src.index("def cold():") + 1)}
    callers_of_hot = {text for line, href, text in r["callers"] if line in in_hot}
    assert {"▲ main", "▲ handler"} <= callers_of_hot, r["callers"]
    caller_lines = {href.split("#")[1] for line, href, _ in r["callers"] if line in in_hot}
    assert "line-%d" % (src.index("        hot()") + 1) in caller_lines
    # Index: headers, a sparkline per file, and a filter over paths.
    assert "Where time goes (by line)" in r["indexHeaders"]
    assert all(n > 0 for n in r["sparkBars"])
    assert r["filteredFiles"] and all("threading" in f for f in r["filteredFiles"])
    # Replayed, the index still reports the run's real duration and rate (3.15.2 shows 0.0).
    duration = float(r["indexStats"].split("Duration: ")[1].split(" s")[0])
    assert duration > 0.5


def validate_processed_profile(p):
    """The processed-format invariants the Firefox Profiler relies on."""
    meta = p["meta"]
    assert meta["version"] == 32 and meta["preprocessedProfileVersion"] == 57 and meta["product"] == "Python"
    assert meta["interval"] > 0
    ncat = len(meta["categories"])
    assert all(set(c) == {"name", "color", "subcategories"} for c in meta["categories"])
    strings = p["shared"]["stringArray"]
    assert all(isinstance(s, str) for s in strings)
    for th in p["threads"]:
        tables = {k: th[k] for k in ("samples", "stackTable", "frameTable", "funcTable", "resourceTable", "nativeSymbols", "markers")}
        for name, table in tables.items():
            for col, values in table.items():
                if isinstance(values, list):
                    assert len(values) == table["length"], (name, col)
        st, ft, fn = th["stackTable"], th["frameTable"], th["funcTable"]
        for i in range(st["length"]):
            assert 0 <= st["frame"][i] < ft["length"] and 0 <= st["category"][i] < ncat
            assert st["prefix"][i] is None or 0 <= st["prefix"][i] < i, "prefixes point backwards (no cycles)"
        for i in range(ft["length"]):
            assert 0 <= ft["func"][i] < fn["length"] and 0 <= ft["category"][i] < ncat
        for i in range(fn["length"]):
            assert 0 <= fn["name"][i] < len(strings)
            assert fn["fileName"][i] is None or 0 <= fn["fileName"][i] < len(strings)
        times = th["samples"]["time"]
        assert all(s is None or 0 <= s < st["length"] for s in th["samples"]["stack"])
        assert times == sorted(times)
        mk = th["markers"]
        for i in range(mk["length"]):
            assert 0 <= mk["name"][i] < len(strings) and mk["startTime"][i] <= mk["endTime"][i] and mk["phase"][i] == 1


SPEEDSCOPE_SCHEMA = os.path.join(ROOT, "tests", "browser", "node_modules", "speedscope", "dist", "release",
                                 "file-format-schema.json")


def test_speedscope_matches_speedscope_schema_and_the_capture(capture):
    """Validated with speedscope's own schema (npm speedscope, which tests/run.sh installs);
    per thread, its samples are the capture's, stack by stack."""
    import jsonschema

    d, script = capture
    proc = tachyon("replay", d / "cap.bin", "-f", "speedscope", "-o", d / "s.json")
    assert "speedscope output written" in proc.stderr
    tachyon("replay", d / "cap.bin", "--collapsed", "-o", d / "s.txt")
    doc = json.loads((d / "s.json").read_text())
    if not os.path.exists(SPEEDSCOPE_SCHEMA):
        pytest.skip("speedscope's schema is not installed (tests/run.sh installs it with npm)")
    jsonschema.validate(doc, json.load(open(SPEEDSCOPE_SCHEMA)))
    frames = doc["shared"]["frames"]
    assert {"name": "hot", "file": str(script), "line": 8} in frames
    interval_ms = 1.0
    mine = {}
    for prof in doc["profiles"]:
        assert prof["type"] == "sampled" and len(prof["samples"]) == len(prof["weights"])
        assert abs(sum(prof["weights"]) - prof["endValue"]) < 1e-6
        tid = int(prof["name"].split()[-1])
        for stack, weight in zip(prof["samples"], prof["weights"]):
            names = ";".join("%s:%s" % (os.path.basename(frames[i].get("file", "")), frames[i]["name"]) for i in stack)
            mine[(tid, names)] = mine.get((tid, names), 0) + round(weight / interval_ms)
    theirs = {}
    for line in (d / "s.txt").read_text().splitlines():
        stack, count = line.rsplit(" ", 1)
        tid, *labels = stack.split(";")
        names = ";".join(":".join(l.split(":")[:2]) if l.count(":") >= 2 else ":" + l for l in labels)
        key = (int(tid[4:]), names)
        theirs[key] = theirs.get(key, 0) + int(count)
    assert mine == theirs
    assert len({tid for tid, _ in mine}) == 2


PSTATS_SELF = r"""
import json, pstats, sys
totals = {}
for (file, line, func), (cc, nc, tt, ct, callers) in pstats.Stats(sys.argv[1]).stats.items():
    key = "%s:%s" % ("" if file == "~" else file, func)  # synthetic frames (<GC>) have no file
    totals[key] = totals.get(key, 0) + cc
print(json.dumps(totals))
"""


def test_pprof_read_by_a_real_decoder_agrees_with_pstats(tmp):
    """Decoded by `pprof-format` (npm; the decoder Datadog's profiler uses): sample types,
    period, duration, thread labels, start lines, and per function the same self samples as
    the pstats output of the same run."""
    decoder = os.path.join(ROOT, "tests", "browser", "pprof_totals.mjs")
    if shutil.which("node") is None or not os.path.isdir(os.path.join(ROOT, "tests", "browser", "node_modules", "pprof-format")):
        pytest.skip("node or npm's pprof-format is missing (tests/run.sh installs it)")
    python = require_python("3.12")
    script = tmp / "work.py"
    script.write_text(WORK)
    tachyon("run", "--python", python, "-a", "-f", "pprof", "-o", tmp / "p.pb.gz", "--save-capture", tmp / "cap.bin", script)
    tachyon("replay", tmp / "cap.bin", "--pstats", "-o", tmp / "p.pstats")
    got = json.loads(subprocess.run(["node", decoder, str(tmp / "p.pb.gz")], capture_output=True, text=True,
                                    check=True).stdout)
    assert got["sampleTypes"] == [["samples", "count"], ["wall", "nanoseconds"]]
    assert got["periodType"] == ["wall", "nanoseconds"] and got["period"] == 1_000_000
    assert 1.0e9 < got["durationNanos"] < 5e9
    assert sorted(got["threads"].values())[0] == "MainThread" and len(got["threads"]) == 2
    theirs = json.loads(subprocess.run([python, "-c", PSTATS_SELF, str(tmp / "p.pstats")], capture_output=True,
                                       text=True, check=True).stdout)
    mine = {k: v["self"] for k, v in got["perFunction"].items()}
    assert mine == {k: v for k, v in theirs.items() if v}, "self samples per function"
    assert all(v["selfNs"] == v["self"] * 1_000_000 for v in got["perFunction"].values())
    lines = WORK.splitlines()
    hot = got["perFunction"]["%s:hot" % script]
    assert lines[hot["startLine"] - 1] == "def hot():", hot


def test_gecko_profile_matches_the_processed_format(capture):
    d, script = capture
    out = d / "p.json"
    tachyon("replay", d / "cap.bin", "-f", "gecko", "-o", out)
    p = json.loads(out.read_text())
    validate_processed_profile(p)
    strings = p["shared"]["stringArray"]
    main = [t for t in p["threads"] if t["isMainThread"]]
    assert len(main) == 1 and len(p["threads"]) == 2
    fn = main[0]["funcTable"]
    names = {strings[n]: (strings[f] if f is not None else None, l) for n, f, l in zip(fn["name"], fn["fileName"], fn["lineNumber"])}
    assert names["hot"][0] == script.name  # CPython's base name
    markers = {strings[n] for n in main[0]["markers"]["name"]}
    assert {"Has GIL", "No GIL"} <= markers, markers


def test_gecko_from_a_live_run_has_cpu_markers(tmp):
    python = require_python("3.12")
    script = tmp / "w.py"
    script.write_text(WORK)
    out = tmp / "live.json"
    tachyon("run", "--python", python, "-a", "-f", "gecko", "-o", out, script)
    p = json.loads(out.read_text())
    validate_processed_profile(p)
    strings = p["shared"]["stringArray"]
    names = {strings[n] for t in p["threads"] for n in t["markers"]["name"]}
    assert {"On CPU", "Off CPU", "Has GIL", "No GIL", "Has Exception"} <= names, names


def test_gecko_marks_opcodes_only_when_the_capture_has_them(tmp):
    python = require_python("3.12")
    script = tmp / "loop.py"
    script.write_text("def spin():\n    x = 0\n    for i in range(10**9):\n        x += i\nspin()\n")
    with_opcodes, plain = tmp / "ops.bin", tmp / "plain.bin"
    tachyon("run", "--python", python, "--opcodes", "-d", "0.5", "-f", "binary", "-o", with_opcodes, script)
    tachyon("run", "--python", python, "-d", "0.5", "-f", "binary", "-o", plain, script)
    # The same capture without its capture features, as CPython's writer leaves them out
    # (bit 3 of the header's config word says they follow).
    unknown = tmp / "unknown.bin"
    data = bytearray(with_opcodes.read_bytes())
    config = struct.unpack_from("<I", data, 60)[0]
    assert config & 8, hex(config)
    struct.pack_into("<I", data, 60, config & 7)
    unknown.write_bytes(bytes(data))

    def opcode_markers(capture):
        out = capture.with_suffix(".json")
        tachyon("replay", capture, "-f", "gecko", "-o", out)
        p = json.loads(out.read_text())
        validate_processed_profile(p)
        return [d for t in p["threads"] for d in t["markers"]["data"] if d.get("type") == "Opcode"]

    for capture in (with_opcodes, unknown):
        markers = opcode_markers(capture)
        spin = [m for m in markers if m["function"] == "spin"]
        assert spin and all(m["opname"] and m["line"] in (3, 4) for m in spin), markers[:5]
    assert opcode_markers(plain) == []


def test_flamegraph_thread_filter_shows_one_thread(capture):
    from test_html import check
    browser_ready()
    d, _ = capture
    page = d / "threads.html"
    tachyon("replay", d / "cap.bin", "-f", "flamegraph", "-o", page)
    r = check(page, "flamegraph_threads", "hot (")
    assert len(r["threadOptions"]) == 3, r["threadOptions"]  # all + two threads
    main_only = any(l.startswith("hot (") for l in r["threadLabels"])
    sleeper_only = any(l.startswith("sleeper (") for l in r["threadLabels"])
    assert main_only != sleeper_only, "one thread's frames only"


@pytest.mark.parametrize("version", ["3.12", "3.13"])
def test_flamegraph_tooltip_names_opcodes(tmp, version):
    import re
    from test_html import check
    browser_ready()
    python = require_python(version)
    script = tmp / "loop.py"
    script.write_text("def spin():\n    x = 0\n    for i in range(10**9):\n        x += i\nspin()\n")
    page = tmp / "op.html"
    tachyon("run", "--python", python, "--opcodes", "-d", "0.5", "-f", "flamegraph", "-o", page, script)
    r = check(page, "flamegraph_opcodes_" + version, "spin (")
    assert "Bytecode instructions:" in r["tooltip"]
    names = re.findall(r"\b([A-Z][A-Z_]{3,})\b", r["tooltip"].split("Bytecode instructions:")[1])
    assert names and "opcode " not in r["tooltip"], r["tooltip"]
