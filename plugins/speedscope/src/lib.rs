//! speedscope's file format (https://www.speedscope.app/file-format-schema.json): one
//! "sampled" profile per thread, its samples in arrival order with consecutive repeats of a
//! stack merged into one weight, frames per function and line. speedscope, and py-spy's
//! `--format speedscope` users, open it as it is.

use std::collections::BTreeMap;

use anyhow::{Context, Result};
use serde_json::json;
use tachyon_plugin_api::{
    Collector, CollectorConfig, ExportContext, Format, FrameKeys, Needs, Sample, StackId,
    StackTable, Symbols,
};

struct Speedscope {
    interval_us: u64,
    stacks: StackTable,
    /// Thread -> (stack, samples) in arrival order, consecutive repeats merged.
    threads: BTreeMap<u64, Vec<(StackId, u64)>>,
}

impl Collector for Speedscope {
    fn collect(&mut self, _symbols: &Symbols, sample: &Sample<'_>) {
        if sample.frames.is_empty() {
            return;
        }
        let stack = self.stacks.intern(sample.frames);
        let samples = self.threads.entry(sample.thread_id).or_default();
        match samples.last_mut() {
            Some((last, weight)) if *last == stack => *weight += sample.weight(),
            _ => samples.push((stack, sample.weight())),
        }
    }

    fn export(&mut self, ctx: &ExportContext<'_>) -> Result<()> {
        let path = ctx.path.context("speedscope output needs a file")?;
        // speedscope frames are per function and line; ours are per location and opcode.
        let mut keys = FrameKeys::default();
        let ms = self.interval_us as f64 / 1000.0;
        let profiles: Vec<serde_json::Value> = self
            .threads
            .iter()
            .map(|(tid, list)| {
                let stacks: Vec<Vec<usize>> = list
                    .iter()
                    .map(|&(stack, _)| {
                        self.stacks
                            .frames_root_first(stack)
                            .into_iter()
                            .map(|id| keys.id(ctx.symbols, id))
                            .collect()
                    })
                    .collect();
                let weights: Vec<f64> = list.iter().map(|&(_, w)| w as f64 * ms).collect();
                let total: f64 = weights.iter().sum();
                json!({"type": "sampled", "name": format!("Thread {tid}"), "unit": "milliseconds",
                       "startValue": 0, "endValue": total, "samples": stacks, "weights": weights})
            })
            .collect();
        let frames: Vec<serde_json::Value> = keys
            .list()
            .iter()
            .map(|k| {
                if k.is_synthetic() {
                    json!({"name": k.funcname})
                } else {
                    json!({"name": k.funcname, "file": k.filename, "line": k.lineno})
                }
            })
            .collect();
        let doc = json!({
            "$schema": "https://www.speedscope.app/file-format-schema.json",
            "shared": {"frames": frames}, "profiles": profiles, "name": "tachyon profile",
            "activeProfileIndex": 0, "exporter": format!("tachyon {}", env!("CARGO_PKG_VERSION")),
        });
        std::fs::write(path, serde_json::to_vec(&doc)?)
            .with_context(|| format!("cannot write {}", path.display()))?;
        eprintln!(
            "speedscope output written to {}",
            ctx.shown_path().display()
        );
        Ok(())
    }
}

fn create(config: &CollectorConfig) -> Result<Box<dyn Collector>> {
    Ok(Box::new(Speedscope {
        interval_us: config.interval_us,
        stacks: StackTable::default(),
        threads: BTreeMap::new(),
    }))
}

inventory::submit! {
    Format {
        name: "speedscope",
        description: "speedscope JSON (https://www.speedscope.app; one sampled profile per thread), as py-spy writes",
        extension: "json", options: &[], needs: Needs::NOTHING,
        create,
    }
}
