//! `svg`: an interactive SVG flame graph (search, zoom, tooltips) drawn by inferno from the
//! collapsed stacks, the same kind of file py-spy writes.

use anyhow::{Context, Result};
use inferno::flamegraph::{self, Options};
use tachyon_plugin_api::{
    AggregateOutput, Aggregating, Collector, CollectorConfig, ExportContext, Format, Needs,
    StackCounts,
};

struct Svg {
    title: String,
}

impl AggregateOutput for Svg {
    fn export(&mut self, counts: &StackCounts, ctx: &ExportContext<'_>) -> Result<()> {
        let path = ctx.path.context("svg output needs a file")?;
        let mut lines: Vec<String> = Vec::new();
        tachyon_collapsed::Lines::new(counts, ctx.symbols).for_each(|text, n| {
            lines.push(format!("{text} {n}"));
            Ok(())
        })?;
        if lines.is_empty() {
            eprintln!(
                "Warning: no samples were collected; {} not written",
                ctx.shown_path().display()
            );
            return Ok(());
        }
        let mut opts = Options::default();
        opts.title = self.title.clone();
        opts.count_name = "samples".into();
        let mut writer = tachyon_plugin_api::output_file(path)?;
        flamegraph::from_lines(&mut opts, lines.iter().map(String::as_str), &mut writer)
            .with_context(|| format!("cannot draw the flame graph {}", path.display()))?;
        // Dropping a BufWriter hides write errors (a full disk): flush explicitly.
        std::io::Write::flush(&mut writer)
            .with_context(|| format!("cannot write {}", path.display()))?;
        eprintln!(
            "Flame graph (SVG) written to {}",
            ctx.shown_path().display()
        );
        Ok(())
    }
}

fn create(config: &CollectorConfig) -> Result<Box<dyn Collector>> {
    let title = match config.python_version {
        Some((a, b, _)) => format!(
            "tachyon: Python {a}.{b}, {} mode, {} Hz",
            config.mode.name(),
            1_000_000 / config.interval_us.max(1)
        ),
        None => "tachyon".to_owned(),
    };
    Ok(Box::new(Aggregating::new(Svg { title })))
}

inventory::submit! {
    Format {
        name: "svg",
        description: "Interactive SVG flame graph (search, zoom) drawn by inferno",
        extension: "svg", options: &[], needs: Needs::NOTHING,
        create,
    }
}
