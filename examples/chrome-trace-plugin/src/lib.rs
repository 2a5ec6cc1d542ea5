//! Example third-party tachyon plugin (plugin API v2): a timeline in Chrome's Trace Event
//! Format, the JSON that `chrome://tracing` and Perfetto (ui.perfetto.dev) open. It declares
//! `Needs::timeline`, so it receives every sample at its own time, as a built-in format does:
//!
//! - `traceEvents`: per thread, one complete (`"ph": "X"`) slice per function call seen in
//!   consecutive samples — a flame chart over time — plus thread and process names (`"M"`);
//! - `stackFrames` and `samples`: every sample with its stack, at its exact time (µs).
//!
//! Build it (`cargo build --release -p tachyon-chrome-trace`) and load it with
//! `tachyon --plugin target/release/libtachyon_chrome_trace.so replay run.bin -f chrome-trace -o trace.json`.

use std::collections::{BTreeMap, HashMap};

use anyhow::Context;
use serde_json::{json, Value};
use tachyon_plugin_api::{
    Collector, CollectorConfig, ExportContext, Format, FrameId, Needs, Sample, StackId, StackTable,
    Symbols,
};

/// The trace's one process (a capture holds one).
const PID: u64 = 1;

struct ChromeTrace {
    config: CollectorConfig,
    /// (thread, time µs, stack) in arrival order.
    samples: Vec<(u64, u64, StackId)>,
}

/// A slice being drawn: the function it is, and when it began.
struct Open {
    function: (u32, u32),
    frame: FrameId,
    start: u64,
}

impl Collector for ChromeTrace {
    fn collect(&mut self, _symbols: &Symbols, sample: &Sample<'_>) {
        let stack = sample.stack;
        if stack == StackTable::EMPTY {
            return;
        }
        for &t in sample.timestamps_us {
            self.samples.push((sample.thread_id, t, stack));
        }
    }

    fn export(&mut self, ctx: &ExportContext<'_>) -> anyhow::Result<()> {
        let path = ctx.path.context("chrome-trace writes a file (-o)")?;
        let symbols = ctx.symbols;
        let mut by_thread: BTreeMap<u64, Vec<(u64, StackId)>> = BTreeMap::new();
        for &(thread, time, stack) in &self.samples {
            by_thread.entry(thread).or_default().push((time, stack));
        }
        let mut events = vec![json!({
            "name": "process_name", "ph": "M", "pid": PID, "tid": 0,
            "args": {"name": "python"},
        })];
        // Stack frames: one node per (parent node, frame), root first.
        let mut nodes: HashMap<(Option<usize>, FrameId), usize> = HashMap::new();
        let mut frames_json = serde_json::Map::new();
        let mut samples_json = Vec::new();
        for (&thread, samples) in &mut by_thread {
            samples.sort_by_key(|&(time, _)| time);
            events.push(json!({
                "name": "thread_name", "ph": "M", "pid": PID, "tid": thread,
                "args": {"name": format!("Thread {thread}")},
            }));
            let mut open: Vec<Open> = Vec::new();
            for &(time, stack) in samples.iter() {
                let frames = symbols.stacks().frames_root_first(stack);
                let mut node = None;
                for &frame in &frames {
                    let next = nodes.len();
                    let id = *nodes.entry((node, frame)).or_insert(next);
                    if id == next {
                        let f = symbols.frame(frame);
                        let mut entry = json!({
                            "name": symbols.str(f.funcname),
                            "category": symbols.str(f.filename),
                        });
                        if let Some(parent) = node {
                            entry["parent"] = json!(parent.to_string());
                        }
                        frames_json.insert(id.to_string(), entry);
                    }
                    node = Some(id);
                }
                samples_json.push(json!({
                    "name": "sample", "tid": thread, "ts": time,
                    "sf": node.map(|n| n.to_string()), "weight": 1,
                }));
                // Calls still on the stack stay open; the rest end now, innermost first.
                let function = |id: FrameId| {
                    let f = symbols.frame(id);
                    (f.filename, f.funcname)
                };
                let kept = open
                    .iter()
                    .zip(&frames)
                    .take_while(|(o, &f)| o.function == function(f))
                    .count();
                while open.len() > kept {
                    let done = open.pop().expect("longer than kept");
                    events.push(slice(symbols, &done, thread, time));
                }
                for &frame in &frames[kept..] {
                    open.push(Open {
                        function: function(frame),
                        frame,
                        start: time,
                    });
                }
            }
            // The last sample stands for one interval.
            let end = samples.last().map_or(0, |&(t, _)| t) + self.config.interval_us;
            while let Some(done) = open.pop() {
                events.push(slice(symbols, &done, thread, end));
            }
        }
        let document = json!({
            "traceEvents": events,
            "displayTimeUnit": "ms",
            "stackFrames": frames_json,
            "samples": samples_json,
            "otherData": {
                "generator": "tachyon chrome-trace plugin",
                "interval_us": self.config.interval_us,
                "mode": (!self.config.mode_unknown).then(|| self.config.mode.name()),
                "python_version": self.config.python_version
                    .map(|(a, b, c)| format!("{a}.{b}.{c}")),
            },
        });
        std::fs::write(path, serde_json::to_vec(&document)?)
            .with_context(|| format!("cannot write {}", path.display()))?;
        Ok(())
    }
}

/// A complete event for a call seen from `open.start` until `end`.
fn slice(symbols: &Symbols, open: &Open, thread: u64, end: u64) -> Value {
    let f = symbols.frame(open.frame);
    json!({
        "name": symbols.str(f.funcname),
        "cat": "python",
        "ph": "X",
        "ts": open.start,
        "dur": end - open.start,
        "pid": PID,
        "tid": thread,
        "args": {"file": symbols.str(f.filename), "line": f.lineno},
    })
}

fn create(config: &CollectorConfig) -> anyhow::Result<Box<dyn Collector>> {
    Ok(Box::new(ChromeTrace {
        config: config.clone(),
        samples: Vec::new(),
    }))
}

static CHROME_TRACE: Format = Format {
    name: "chrome-trace",
    description: "Timeline in Chrome's Trace Event Format (chrome://tracing, Perfetto)",
    extension: "json",
    options: &[],
    needs: Needs {
        timeline: true,
        ..Needs::NOTHING
    },
    create,
};

tachyon_plugin_api::export_plugin!(CHROME_TRACE);
