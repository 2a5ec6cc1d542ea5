//! pprof output: a gzip-compressed `profile.proto` (github.com/google/pprof, proto/profile.proto),
//! encoded with prost — what Grafana Pyroscope, Parca, Google Cloud Profiler and `go tool
//! pprof` read. Two sample types, `samples`/`count` and `wall` or `cpu`/`nanoseconds` (as the
//! mode), the period of one sample and the run's duration; one function per (file, name) with
//! its start line when its source can be read (0, pprof's "unknown", otherwise), one location
//! per function and line, and each sample labelled with its thread id and name.

use std::collections::HashMap;
use std::io::Write;

use anyhow::{Context, Result};
use prost::encoding::{encode_key, encode_varint, encoded_len_varint, message, WireType};
use tachyon_plugin_api::{
    prefetch, AggregateOutput, Aggregating, Collector, CollectorConfig, ExportContext, Format,
    FrameId, FrameKey, FrameKeys, FxHashMap, Mode, Needs, Sample, SourceReader, StackCounts,
    StackId, Symbols, ThreadStatus,
};

mod proto;

struct Pprof {
    config: CollectorConfig,
    /// Threads seen as the main thread.
    main_threads: Vec<u64>,
}

/// Strings numbered as pprof wants them: the empty string first.
#[derive(Default)]
struct StringTable {
    index: HashMap<String, i64>,
    strings: Vec<String>,
}

impl StringTable {
    fn new() -> Self {
        let mut table = StringTable::default();
        table.id("");
        table
    }

    fn id(&mut self, s: &str) -> i64 {
        if let Some(&id) = self.index.get(s) {
            return id;
        }
        let id = self.strings.len() as i64;
        self.strings.push(s.to_owned());
        self.index.insert(s.to_owned(), id);
        id
    }
}

/// The line a function starts on, from its source: `def NAME`/`class NAME` at or above the
/// first line it was sampled on; 1 for a module; 0 (unknown) without its source.
fn start_line(sources: &mut SourceReader, key: &FrameKey, first_sampled: i32) -> i64 {
    if key.funcname == "<module>" {
        return 1;
    }
    let Some(text) = sources.get(&key.filename) else {
        return 0;
    };
    let name = key.funcname.rsplit('.').next().unwrap_or(&key.funcname);
    let lines: Vec<&str> = text.lines().collect();
    let from = usize::try_from(first_sampled).unwrap_or(0).min(lines.len());
    (0..from)
        .rev()
        .find(|&i| {
            let line = lines[i].trim_start();
            let line = line.strip_prefix("async ").unwrap_or(line);
            [
                format!("def {name}("),
                format!("class {name}"),
                format!("def {name} ("),
            ]
            .iter()
            .any(|start| line.starts_with(start.as_str()))
        })
        .map_or(0, |i| i as i64 + 1)
}

impl AggregateOutput for Pprof {
    fn observe(&mut self, _symbols: &Symbols, sample: &Sample<'_>) {
        if sample.status.0 & ThreadStatus::MAIN_THREAD != 0
            && !self.main_threads.contains(&sample.thread_id)
        {
            self.main_threads.push(sample.thread_id);
        }
    }

    fn export(&mut self, counts: &StackCounts, ctx: &ExportContext<'_>) -> Result<()> {
        let path = ctx.path.context("pprof output needs a file")?;
        let file = tachyon_plugin_api::output_file(path)?;
        std::thread::scope(|scope| {
            // The gzip stream is made on a second thread, a megabyte at a time as it is
            // encoded here: compressing was a third of the export.
            let (chunks, to_compress) = std::sync::mpsc::sync_channel::<Vec<u8>>(2);
            let compressing = std::thread::Builder::new()
                .name("tachyon-gzip".into())
                .spawn_scoped(scope, move || {
                    // The fastest level, as Go's runtime/pprof writes its profiles: a profile
                    // of many distinct stacks is tens of megabytes, and level 6 took half the
                    // export.
                    let mut gz = flate2::write::GzEncoder::new(file, flate2::Compression::fast());
                    for chunk in to_compress {
                        gz.write_all(&chunk)?;
                    }
                    // Dropping a BufWriter hides write errors (a full disk): flush explicitly.
                    gz.finish()?.flush()
                })
                .context("cannot start a thread")?;
            // (false: compressing stopped at an error, and wants no more.)
            let encoded = self.encode(counts, ctx, &mut |chunk| chunks.send(chunk).is_ok());
            drop(chunks);
            let written = compressing
                .join()
                .unwrap_or_else(|panic| std::panic::resume_unwind(panic));
            // A write error first: it is why encoding stopped.
            written.with_context(|| format!("cannot write {}", path.display()))?;
            encoded
        })?;
        eprintln!("pprof profile written to {}", ctx.shown_path().display());
        Ok(())
    }
}

/// pprof's functions, one per (file, name), and locations, one per frame key (file, line,
/// name), numbered from 1 as first asked for.
#[derive(Default)]
struct Locations {
    keys: FrameKeys,
    /// The location of each frame key, by its id in `keys`.
    of_key: Vec<Option<u64>>,
    list: Vec<proto::Location>,
    function_of: HashMap<(String, String), u64>,
    /// Each function's frame key and the first line of it sampled.
    functions: Vec<(FrameKey, i32)>,
}

impl Locations {
    fn id(&mut self, symbols: &Symbols, frame: FrameId) -> u64 {
        let key_id = self.keys.id(symbols, frame);
        if self.of_key.len() <= key_id {
            self.of_key.resize(key_id + 1, None);
        }
        if let Some(location) = self.of_key[key_id] {
            return location;
        }
        let key = self.keys.key(key_id);
        let line = key.lineno;
        let function = *self
            .function_of
            .entry((key.filename.clone(), key.funcname.clone()))
            .or_insert_with(|| {
                self.functions.push((key.clone(), line));
                self.functions.len() as u64
            });
        let first = &mut self.functions[function as usize - 1].1;
        if line > 0 && (*first <= 0 || line < *first) {
            *first = line;
        }
        self.list.push(proto::Location {
            id: self.list.len() as u64 + 1,
            line: vec![proto::Line {
                function_id: function,
                line: i64::from(line.max(0)),
                column: 0,
            }],
            ..Default::default()
        });
        let location = self.list.len() as u64;
        self.of_key[key_id] = Some(location);
        location
    }
}

impl Pprof {
    /// The profile as protobuf, handed to `send` a megabyte at a time; it stops early when
    /// `send` refuses a chunk.
    fn encode(
        &self,
        counts: &StackCounts,
        ctx: &ExportContext<'_>,
        send: &mut dyn FnMut(Vec<u8>) -> bool,
    ) -> Result<()> {
        let period_ns = self.config.interval_us as i64 * 1000;
        let mut strings = StringTable::new();
        let time_kind = if self.config.mode == Mode::Cpu {
            "cpu"
        } else {
            "wall"
        };
        let sample_type = vec![
            proto::ValueType {
                r#type: strings.id("samples"),
                unit: strings.id("count"),
            },
            proto::ValueType {
                r#type: strings.id(time_kind),
                unit: strings.id("nanoseconds"),
            },
        ];
        let mut locations = Locations::default();
        // The profile is encoded as it is built, in prost's field order (sample types, then
        // samples, then the rest): on a capture of many stacks the samples are most of it, and
        // are not kept. A megabyte of encoding at a time goes to the gzip stream.
        let mut encoded: Vec<u8> = Vec::new();
        prost::encoding::message::encode_repeated(1, &sample_type, &mut encoded);
        let (thread_id, thread_name) = (strings.id("thread_id"), strings.id("thread_name"));
        // Each distinct stack's location ids are found and encoded once, as the packed field
        // that lists them (innermost first, as pprof wants): a stack sampled in several
        // threads is one walk. Entries go a block at a time (its stacks new so far walked,
        // then its samples encoded), so the gzip thread starts early, and locations are
        // numbered as the samples first name them.
        let mut slot_of_stack = vec![u32::MAX; ctx.symbols.stacks().len()];
        // The distinct stacks' packed location ids, back to back; where each starts, and
        // (last) where the last ends.
        let mut packed: Vec<u8> = Vec::new();
        let mut packed_at: Vec<usize> = vec![0];
        let mut new_stacks: Vec<StackId> = Vec::new();
        let mut block_slots: Vec<u32> = Vec::new();
        // Each thread's name made once.
        let mut name_of_thread: FxHashMap<u64, i64> = FxHashMap::default();
        for block in counts.entries().chunks(4096) {
            new_stacks.clear();
            block_slots.clear();
            for (i, &(_, stack, _)) in block.iter().enumerate() {
                // Stacks are spread over the whole table: fetch the slot of one a few on.
                if let Some(&(_, ahead, _)) = block.get(i + 8) {
                    prefetch(&slot_of_stack[ahead as usize]);
                }
                let slot = &mut slot_of_stack[stack as usize];
                if *slot == u32::MAX {
                    *slot = (packed_at.len() - 1 + new_stacks.len()) as u32;
                    new_stacks.push(stack);
                }
                block_slots.push(*slot);
            }
            let mut walk = ctx.symbols.stacks().walk(&new_stacks, |&stack| stack);
            while let Some((_, _, frames)) = walk.next_stack() {
                for &frame in frames {
                    encode_varint(locations.id(ctx.symbols, frame), &mut packed);
                }
                packed_at.push(packed.len());
            }
            for (&(tid, _, count), &slot) in block.iter().zip(&block_slots) {
                let slot = slot as usize;
                let name = *name_of_thread.entry(tid).or_insert_with(|| {
                    strings.id(&if self.main_threads.contains(&tid) {
                        "MainThread".to_owned()
                    } else {
                        format!("Thread {tid}")
                    })
                });
                let labels = [
                    proto::Label {
                        key: thread_id,
                        num: tid as i64,
                        ..Default::default()
                    },
                    proto::Label {
                        key: thread_name,
                        str: name,
                        ..Default::default()
                    },
                ];
                encode_sample(
                    &packed[packed_at[slot]..packed_at[slot + 1]],
                    [count as i64, count as i64 * period_ns],
                    &labels,
                    &mut encoded,
                );
                if encoded.len() >= 1 << 20 && !send(std::mem::take(&mut encoded)) {
                    return Ok(());
                }
            }
        }
        let mut sources = SourceReader::new(self.config.sources.clone());
        let function = locations
            .functions
            .iter()
            .enumerate()
            .map(|(i, (key, first_line))| proto::Function {
                id: i as u64 + 1,
                name: strings.id(&key.funcname),
                system_name: strings.id(&key.funcname),
                filename: strings.id(if key.is_synthetic() {
                    ""
                } else {
                    &key.filename
                }),
                start_line: if key.is_synthetic() {
                    0
                } else {
                    start_line(&mut sources, key, *first_line)
                },
            })
            .collect();
        let period_type = Some(proto::ValueType {
            r#type: strings.id(time_kind),
            unit: strings.id("nanoseconds"),
        });
        // Sample types and samples are written already.
        let rest = proto::Profile {
            location: locations.list,
            function,
            string_table: strings.strings,
            duration_nanos: (ctx.stats.duration_sec * 1e9) as i64,
            period_type,
            period: period_ns,
            default_sample_type: 1,
            ..Default::default()
        };
        prost::Message::encode(&rest, &mut encoded)?;
        send(encoded);
        Ok(())
    }
}

/// One `Sample` message (field 2 of `Profile`), as prost encodes `proto::Sample`, from its
/// locations already encoded as the packed field's contents.
fn encode_sample(locations: &[u8], values: [i64; 2], labels: &[proto::Label], out: &mut Vec<u8>) {
    let values_len: usize = values.iter().map(|&v| encoded_len_varint(v as u64)).sum();
    let len = 1
        + encoded_len_varint(locations.len() as u64)
        + locations.len()
        + 1
        + encoded_len_varint(values_len as u64)
        + values_len
        + message::encoded_len_repeated(3, labels);
    encode_key(2, WireType::LengthDelimited, out);
    encode_varint(len as u64, out);
    encode_key(1, WireType::LengthDelimited, out);
    encode_varint(locations.len() as u64, out);
    out.extend_from_slice(locations);
    encode_key(2, WireType::LengthDelimited, out);
    encode_varint(values_len as u64, out);
    for v in values {
        encode_varint(v as u64, out);
    }
    for label in labels {
        message::encode(3, label, out);
    }
}

fn create(config: &CollectorConfig) -> Result<Box<dyn Collector>> {
    Ok(Box::new(Aggregating::new(Pprof {
        config: config.clone(),
        main_threads: Vec::new(),
    })))
}

inventory::submit! {
    Format {
        name: "pprof",
        description: "pprof profile.proto, gzipped (Pyroscope, Parca, Cloud Profiler, go tool pprof)",
        extension: "pb.gz", options: &[], needs: Needs::NOTHING,
        create,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use prost::Message;
    use tachyon_plugin_api::{testing, RunStats};

    /// (thread id, its stack's (file, function, line) innermost first) -> samples.
    type Totals = HashMap<(u64, Vec<(String, String, i64)>), i64>;

    /// Stacks shared by threads, more (thread, stack) pairs than one block of the encoding:
    /// decoded, each sample lists its own stack's locations, innermost first, with its thread
    /// and count, and each (thread, stack) is one sample.
    #[test]
    fn each_sample_lists_its_own_stack() {
        let mut symbols = Symbols::new();
        let frames: Vec<FrameId> = (0..20)
            .map(|i| {
                testing::frame(
                    &mut symbols,
                    &format!("/m{}.py", i % 3),
                    &format!("f{i}"),
                    i + 1,
                    0,
                )
            })
            .collect();
        let (counts, samples) =
            testing::random_samples(&mut symbols, &frames, 5, 30_000, &[1, 2, 3], 3, 2);
        assert!(counts.entries().len() > 4096, "{}", counts.entries().len());
        let pprof = Pprof {
            config: CollectorConfig::default(),
            main_threads: vec![],
        };
        let stats = RunStats::default();
        let ctx = ExportContext {
            path: None,
            destination: None,
            symbols: &symbols,
            stats: &stats,
        };
        let mut bytes = Vec::new();
        pprof
            .encode(&counts, &ctx, &mut |chunk| {
                bytes.extend(chunk);
                true
            })
            .unwrap();
        let profile = proto::Profile::decode(&bytes[..]).unwrap();

        let mut expected = Totals::new();
        for (tid, stack, weight) in samples {
            let frames = stack
                .iter()
                .map(|&frame| {
                    let info = symbols.frame(frame);
                    (
                        symbols.str(info.filename).to_owned(),
                        symbols.str(info.funcname).to_owned(),
                        i64::from(info.lineno),
                    )
                })
                .collect();
            *expected.entry((tid, frames)).or_default() += weight as i64;
        }
        let string = |id: i64| profile.string_table[id as usize].clone();
        let mut decoded = Totals::new();
        for sample in &profile.sample {
            let tid = sample
                .label
                .iter()
                .find(|l| string(l.key) == "thread_id")
                .unwrap()
                .num;
            let frames = sample
                .location_id
                .iter()
                .map(|&id| {
                    let line = &profile.location[id as usize - 1].line[0];
                    let function = &profile.function[line.function_id as usize - 1];
                    (string(function.filename), string(function.name), line.line)
                })
                .collect();
            let before = decoded.insert((tid as u64, frames), sample.value[0]);
            assert!(before.is_none(), "a (thread, stack) listed twice");
        }
        assert_eq!(decoded, expected);
    }
}
