//! Example third-party tachyon plugin (plugin API v2): a differential format. Given a
//! baseline (`tachyon diff BEFORE.bin AFTER.bin -f diff-table`), it writes every function's
//! self time in both runs and the change, as CSV, largest change first — using the same
//! comparison layer as tachyon's differential flame graph, baseline scaled the same way.
//!
//! Build it (`cargo build --release -p tachyon-diff-table`) and load it with
//! `tachyon --plugin target/release/libtachyon_diff_table.so diff before.bin after.bin -f diff-table -o changes.csv`.

use std::fmt::Write as _;

use anyhow::Context;
use tachyon_plugin_api::compare::{Comparison, Normalize};
use tachyon_plugin_api::{
    AggregateOutput, Aggregating, Collector, CollectorConfig, ExportContext, Format, Needs,
    StackCounts, ROOT_THREADS_ONLY,
};

struct DiffTable {
    config: CollectorConfig,
}

/// A CSV field, quoted when it must be.
fn field(text: &str) -> String {
    if text.contains([',', '"', '\n']) {
        format!("\"{}\"", text.replace('"', "\"\""))
    } else {
        text.to_owned()
    }
}

impl AggregateOutput for DiffTable {
    fn export(&mut self, counts: &StackCounts, ctx: &ExportContext<'_>) -> anyhow::Result<()> {
        let path = ctx.path.context("diff-table writes a file (-o)")?;
        let baseline = self.config.baseline.as_ref().context(
            "diff-table compares two profiles: give it a baseline (tachyon diff BASE CUR)",
        )?;
        let normalize = match self.config.option("normalize") {
            None => Normalize::Interval,
            Some(text) => Normalize::parse(text)
                .with_context(|| format!("normalize={text}: use interval or total"))?,
        };
        let current = counts.tree(ctx.symbols, false, ROOT_THREADS_ONLY);
        let before = baseline
            .counts()
            .tree(&baseline.symbols, false, ROOT_THREADS_ONLY);
        let comparison = Comparison::new(
            &current,
            self.config.interval_us,
            &before,
            baseline.interval_us,
            normalize,
        );
        let mut rows: Vec<_> = comparison.functions.iter().collect();
        rows.sort_by(|a, b| {
            b.diff
                .abs()
                .total_cmp(&a.diff.abs())
                .then_with(|| (&a.filename, &a.funcname).cmp(&(&b.filename, &b.funcname)))
        });
        let mut text =
            String::from("function,file,baseline_self,current_self,diff,diff_pct,significant\n");
        for f in rows {
            let _ = writeln!(
                text,
                "{},{},{:.1},{:.1},{:+.1},{:+.2},{}",
                field(&f.funcname),
                field(&f.filename),
                f.baseline_self,
                f.current_self,
                f.diff,
                f.diff_pct,
                f.significant
            );
        }
        std::fs::write(path, text).with_context(|| format!("cannot write {}", path.display()))
    }
}

fn create(config: &CollectorConfig) -> anyhow::Result<Box<dyn Collector>> {
    Ok(Box::new(Aggregating::new(DiffTable {
        config: config.clone(),
    })))
}

static DIFF_TABLE: Format = Format {
    name: "diff-table",
    description: "Functions whose self time changed against a baseline, largest change first (CSV)",
    extension: "csv",
    options: &["normalize"],
    needs: Needs {
        baseline: true,
        ..Needs::NOTHING
    },
    create,
};

tachyon_plugin_api::export_plugin!(DIFF_TABLE);
