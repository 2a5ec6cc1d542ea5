//! Collapsed stacks, one line per (thread, stack): `tid:N;file.py:func:line;... count`, root
//! first, as CPython's Tachyon writes them; flamegraph.pl and inferno render the file.

use std::collections::HashMap;
use std::fmt::Write as _;

use anyhow::{Context, Result};
use tachyon_plugin_api::{
    printable, AggregateOutput, Aggregating, Collector, CollectorConfig, ExportContext, Format,
    FrameKey, FrameKeys, Needs, StackCounts, Symbols,
};

/// `file.py:func:line`, or the bare name for synthetic frames (`<GC>`, `<native>`).
pub fn frame_label(key: &FrameKey) -> String {
    let label = if key.is_synthetic() {
        key.funcname.clone()
    } else {
        format!("{}:{}:{}", key.base_name(), key.funcname, key.lineno)
    };
    // One line per stack: a newline (or NUL) in a name must not split or corrupt it.
    printable(&label).into_owned()
}

/// The lines, sorted by count (descending) then text; equal texts are merged.
pub fn lines(counts: &StackCounts, symbols: &Symbols) -> Vec<(String, u64)> {
    let mut keys = FrameKeys::default();
    let mut labels: HashMap<usize, String> = HashMap::new();
    let mut merged: HashMap<String, u64> = HashMap::new();
    for &(tid, stack, count) in counts.entries() {
        let mut line = format!("tid:{tid}");
        for frame in counts.stacks.frames_root_first(stack) {
            let key = keys.id(symbols, frame);
            let label = labels
                .entry(key)
                .or_insert_with(|| frame_label(keys.key(key)));
            let _ = write!(line, ";{label}");
        }
        *merged.entry(line).or_default() += count;
    }
    let mut lines: Vec<(String, u64)> = merged.into_iter().collect();
    lines.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    lines
}

struct Collapsed;

impl AggregateOutput for Collapsed {
    fn export(&mut self, counts: &StackCounts, ctx: &ExportContext<'_>) -> Result<()> {
        let path = ctx.path.context("collapsed output needs a file")?;
        let mut text = String::new();
        for (line, count) in lines(counts, ctx.symbols) {
            let _ = writeln!(text, "{line} {count}");
        }
        std::fs::write(path, text).with_context(|| format!("cannot write {}", path.display()))?;
        eprintln!(
            "Collapsed stack output written to {}",
            ctx.shown_path().display()
        );
        Ok(())
    }
}

fn create(_config: &CollectorConfig) -> Result<Box<dyn Collector>> {
    Ok(Box::new(Aggregating::new(Collapsed)))
}
inventory::submit! {
    Format {
        name: "collapsed",
        description: "Collapsed stacks (tid:N;file:func:line;... count) for flamegraph.pl / inferno",
        extension: "txt", options: &[], needs: Needs::NOTHING,
        create,
    }
}
