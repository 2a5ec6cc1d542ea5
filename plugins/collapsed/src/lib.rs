//! Collapsed stacks, one line per (thread, stack): `tid:N;file.py:func:line;... count`, root
//! first, as CPython's Tachyon writes them; flamegraph.pl and inferno render the file.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::path::Path;

use anyhow::{Context, Result};
use tachyon_plugin_api::{
    printable, Collector, CollectorConfig, ExportContext, Format, FrameId, Needs, Sample,
    StackCounts, Symbols,
};

#[derive(Default)]
pub struct CollapsedCollector {
    counts: StackCounts,
}

/// `file.py:func:line`, or the bare name for synthetic frames (`<GC>`, `<native>`).
pub fn frame_label(symbols: &Symbols, id: FrameId) -> String {
    let f = symbols.frame(id);
    let func = symbols.str(f.funcname);
    if symbols.is_synthetic(f) {
        return printable(func).into_owned();
    }
    let file = symbols.str(f.filename);
    let base = Path::new(file)
        .file_name()
        .map_or(file.into(), |b| b.to_string_lossy());
    // One line per stack: a newline (or NUL) in a name must not split or corrupt it.
    printable(&format!("{base}:{func}:{}", f.lineno.max(0))).into_owned()
}

impl CollapsedCollector {
    /// The lines, sorted by count (descending) then text; equal texts are merged.
    pub fn lines(&self, symbols: &Symbols) -> Vec<(String, u64)> {
        let mut labels: HashMap<FrameId, String> = HashMap::new();
        let mut merged: HashMap<String, u64> = HashMap::new();
        for (&(tid, stack), &count) in &self.counts.by_thread {
            let mut line = format!("tid:{tid}");
            for id in self.counts.stacks.frames_root_first(stack) {
                let label = labels.entry(id).or_insert_with(|| frame_label(symbols, id));
                let _ = write!(line, ";{label}");
            }
            *merged.entry(line).or_default() += count;
        }
        let mut lines: Vec<(String, u64)> = merged.into_iter().collect();
        lines.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        lines
    }
}

impl Collector for CollapsedCollector {
    fn collect(&mut self, _symbols: &Symbols, sample: &Sample<'_>) {
        self.counts.add(sample);
    }

    fn export(&mut self, ctx: &ExportContext<'_>) -> Result<()> {
        let path = ctx.path.context("collapsed output needs a file")?;
        let mut text = String::new();
        for (line, count) in self.lines(ctx.symbols) {
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
    Ok(Box::new(CollapsedCollector::default()))
}

inventory::submit! {
    Format {
        name: "collapsed",
        description: "Collapsed stacks (tid:N;file:func:line;... count) for flamegraph.pl / inferno",
        extension: "txt", options: &[], needs: Needs::NOTHING,
        create,
    }
}
