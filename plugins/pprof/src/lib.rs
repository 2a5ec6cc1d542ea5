//! pprof output: a gzip-compressed `profile.proto` (github.com/google/pprof, proto/profile.proto),
//! encoded with prost — what Grafana Pyroscope, Parca, Google Cloud Profiler and `go tool
//! pprof` read. Two sample types, `samples`/`count` and `wall` or `cpu`/`nanoseconds` (as the
//! mode), the period of one sample and the run's duration; one function per (file, name) with
//! its start line when its source can be read (0, pprof's "unknown", otherwise), one location
//! per function and line, and each sample labelled with its thread id and name.

use std::collections::HashMap;
use std::io::Write;

use anyhow::{Context, Result};
use tachyon_plugin_api::{
    AggregateOutput, Aggregating, Collector, CollectorConfig, ExportContext, Format, FrameKey,
    FrameKeys, FxHashMap, Mode, Needs, Sample, SourceReader, StackCounts, Symbols, ThreadStatus,
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
        let mut keys = FrameKeys::default();
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
        // Functions per (file, name); a location per frame key (file, line, name), made the
        // first time the key is seen.
        let mut functions: HashMap<(String, String), u64> = HashMap::new();
        let mut function_list: Vec<(FrameKey, i32)> = Vec::new();
        let mut location_of: Vec<Option<u64>> = Vec::new();
        let mut location_list: Vec<proto::Location> = Vec::new();
        // The profile is encoded as it is built, in prost's field order (sample types, then
        // samples, then the rest): on a capture of many stacks the samples are most of it, and
        // are not kept. A megabyte of encoding at a time goes to the gzip stream.
        let mut encoded: Vec<u8> = Vec::new();
        prost::encoding::message::encode_repeated(1, &sample_type, &mut encoded);
        let (thread_id, thread_name) = (strings.id("thread_id"), strings.id("thread_name"));
        // Innermost first, as pprof lists a sample's locations.
        let mut walk = ctx.symbols.stacks().walk(counts.entries(), |e| e.1);
        // One sample message, its lists refilled for each stack; each thread's name made once.
        let mut sample = proto::Sample::default();
        let mut name_of_thread: FxHashMap<u64, i64> = FxHashMap::default();
        while let Some((_, &(tid, _, count), frames)) = walk.next_stack() {
            let location_ids = &mut sample.location_id;
            location_ids.clear();
            for &frame in frames {
                let id = keys.id(ctx.symbols, frame);
                if location_of.len() <= id {
                    location_of.resize(id + 1, None);
                }
                let location = *location_of[id].get_or_insert_with(|| {
                    let key = keys.key(id);
                    let line = key.lineno;
                    let function = *functions
                        .entry((key.filename.clone(), key.funcname.clone()))
                        .or_insert_with(|| {
                            function_list.push((key.clone(), line));
                            function_list.len() as u64
                        });
                    let first = &mut function_list[function as usize - 1].1;
                    if line > 0 && (*first <= 0 || line < *first) {
                        *first = line;
                    }
                    location_list.push(proto::Location {
                        id: location_list.len() as u64 + 1,
                        line: vec![proto::Line {
                            function_id: function,
                            line: i64::from(line.max(0)),
                            column: 0,
                        }],
                        ..Default::default()
                    });
                    location_list.len() as u64
                });
                location_ids.push(location);
            }
            let name = *name_of_thread.entry(tid).or_insert_with(|| {
                strings.id(&if self.main_threads.contains(&tid) {
                    "MainThread".to_owned()
                } else {
                    format!("Thread {tid}")
                })
            });
            sample.value.clear();
            sample
                .value
                .extend([count as i64, count as i64 * period_ns]);
            sample.label.clear();
            sample.label.extend([
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
            ]);
            prost::encoding::message::encode(2, &sample, &mut encoded);
            if encoded.len() >= 1 << 20 && !send(std::mem::take(&mut encoded)) {
                return Ok(());
            }
        }
        let mut sources = SourceReader::new(self.config.sources.clone());
        let function = function_list
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
            location: location_list,
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
