//! A complete third-party tachyon output format, loaded at run time: speedscope's file format
//! ("sampled" profiles, one per thread; https://www.speedscope.app/file-format-schema.json).
//!
//! It implements the same `Collector` contract as tachyon's built-in formats; the
//! `export_plugin!` line at the bottom is all that makes it a plugin.
//!
//!     cargo build --release -p tachyon-speedscope
//!     tachyon --plugin target/release/libtachyon_speedscope.so run -f speedscope -o p.json app.py

use std::collections::BTreeMap;

use anyhow::{Context, Result};
use serde_json::json;
use tachyon_plugin_api::{
    Collector, CollectorConfig, ExportContext, Format, FrameId, FrameKeys, Needs, Sample, Symbols,
};

#[derive(Default)]
struct Speedscope {
    interval_us: u64,
    /// tid -> (stack root first, weight) in arrival order.
    samples: BTreeMap<u64, Vec<(Vec<FrameId>, u64)>>,
    /// Option `panic=true` makes export panic (used by tachyon's tests of plugin failures).
    panic: bool,
}

impl Collector for Speedscope {
    fn collect(&mut self, _symbols: &Symbols, sample: &Sample<'_>) {
        let stack: Vec<FrameId> = sample.frames.iter().rev().copied().collect();
        self.samples
            .entry(sample.thread_id)
            .or_default()
            .push((stack, sample.weight()));
    }

    fn export(&mut self, ctx: &ExportContext<'_>) -> Result<()> {
        if self.panic {
            panic!("speedscope plugin asked to panic");
        }
        let path = ctx.path.context("speedscope needs an output file")?;
        // speedscope frames are per function and line; ours are per location and opcode.
        let mut keys = FrameKeys::default();
        let ms = self.interval_us as f64 / 1000.0;
        let profiles: Vec<serde_json::Value> = self
            .samples
            .iter()
            .map(|(tid, list)| {
                let stacks: Vec<Vec<usize>> = list
                    .iter()
                    .map(|(s, _)| s.iter().map(|&id| keys.id(ctx.symbols, id)).collect())
                    .collect();
                let weights: Vec<f64> = list.iter().map(|(_, w)| *w as f64 * ms).collect();
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
            "activeProfileIndex": 0, "exporter": "tachyon-speedscope 0.1.0",
        });
        std::fs::write(path, serde_json::to_vec(&doc)?)
            .with_context(|| format!("cannot write {}", path.display()))
    }
}

fn create(config: &CollectorConfig) -> Result<Box<dyn Collector>> {
    Ok(Box::new(Speedscope {
        interval_us: config.interval_us,
        panic: config.option("panic") == Some("true"),
        ..Default::default()
    }))
}

static SPEEDSCOPE: Format = Format {
    name: "speedscope",
    description: "speedscope JSON (sampled, one profile per thread) - example plugin",
    extension: "json",
    options: &["panic"],
    needs: Needs::NOTHING,
    create,
};

tachyon_plugin_api::export_plugin!(SPEEDSCOPE);
