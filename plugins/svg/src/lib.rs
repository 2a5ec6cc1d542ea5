//! `svg`: an interactive SVG flame graph (search, zoom, tooltips) drawn by inferno from the
//! collapsed stacks, the same kind of file py-spy writes.

use anyhow::{Context, Result};
use inferno::flamegraph::{self, Options};
use tachyon_collapsed::Lines;
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
        let mut opts = options(&self.title);
        let min_samples = fewest_drawn(&opts, counts.total());
        let lines = inferno_lines(&Lines::cut_below(counts, ctx.symbols, min_samples))?;
        if lines.is_empty() {
            eprintln!(
                "Warning: no samples were collected; {} not written",
                ctx.shown_path().display()
            );
            return Ok(());
        }
        let mut writer = tachyon_plugin_api::output_file(path)?;
        flamegraph::from_lines(&mut opts, lines.lines(), &mut writer)
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

/// The fewest samples of a frame inferno draws (its own formula): it leaves out narrower
/// frames and everything under them, so those are cut before it is given the lines.
fn fewest_drawn(opts: &Options<'_>, total: u64) -> f64 {
    opts.min_width / (100.0 / total as f64)
}

/// The lines as inferno reads them, `text count`, one text of them a line each (a string
/// per line cost an allocation and a copy each). A collapsed line holds no newline.
fn inferno_lines(lines: &Lines) -> Result<String> {
    let mut text = String::new();
    lines.for_each(|line, n| {
        text.push_str(line);
        text.push(' ');
        text.push_str(itoa::Buffer::new().format(n));
        text.push('\n');
        Ok(())
    })?;
    Ok(text)
}

fn options(title: &str) -> Options<'static> {
    let mut opts = Options::default();
    opts.title = title.to_owned();
    opts.count_name = "samples".into();
    opts
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

#[cfg(test)]
mod tests {
    use super::*;
    use tachyon_plugin_api::{FrameInfo, Symbols};

    fn draw(lines: &Lines, opts: &mut Options<'_>) -> Vec<u8> {
        let mut svg = Vec::new();
        flamegraph::from_lines(opts, inferno_lines(lines).unwrap().lines(), &mut svg).unwrap();
        svg
    }

    /// Lines cut below the frames inferno leaves out draw the same picture, byte for byte:
    /// skewed random stacks in threads of many lines and of few, with inferno's least drawn
    /// width and with a larger one, under which most lines are cut.
    #[test]
    fn cut_lines_draw_the_same_svg() {
        let mut symbols = Symbols::new();
        let frames: Vec<u32> = (0..40)
            .map(|i| {
                let info = FrameInfo {
                    filename: symbols.intern_str(&format!("/app/m{}.py", i % 5)),
                    funcname: symbols.intern_str(&format!("f{}", i % 13)),
                    lineno: 1 + i % 7,
                    end_lineno: 1 + i % 7,
                    column: 0,
                    end_column: 1,
                    opcode: None,
                };
                symbols.intern_frame(info)
            })
            .collect();
        let mut lcg = tachyon_plugin_api::testing::Lcg::new(11);
        let mut next = |n: u64| lcg.below(n);
        let mut counts = StackCounts::default();
        // Three threads of many lines (cut with passes over the whole tree) and forty of a
        // few (cut along their lines).
        for i in 0..20_120 {
            let tid = if i < 20_000 {
                [3, 70, 900][next(3) as usize]
            } else {
                2000 + i / 3
            };
            let depth = 1 + next(12) as usize;
            // Frames from a small set near the root, any frame deeper: a wide top, narrow tips.
            let stack: Vec<u32> = (0..depth)
                .map(|d| frames[next(if d < 3 { 3 } else { 40 }) as usize])
                .rev()
                .collect();
            let weight = 1 + next(4) * next(4) * next(50);
            counts.add_weighted(tid, symbols.intern_stack(&stack), weight);
        }
        let count = |lines: &Lines| inferno_lines(lines).unwrap().lines().count();
        let full = Lines::new(&counts, &symbols);
        for (min_width, most_cut) in [(options("t").min_width, false), (0.5, true)] {
            let mut opts = options("t");
            opts.min_width = min_width;
            // Frames not named like any language's get random colours otherwise.
            opts.deterministic = true;
            let cut = Lines::cut_below(&counts, &symbols, fewest_drawn(&opts, counts.total()));
            assert!(count(&cut) < count(&full));
            assert_eq!(count(&cut) * 2 < count(&full), most_cut);
            assert!(
                draw(&cut, &mut opts) == draw(&full, &mut opts),
                "{min_width}"
            );
        }
    }
}
