//! A plugin built with `export_plugin_v1!`: it reads IR v1 (an aggregated profile). Its
//! format `v1-collapsed` writes collapsed stacks with the built-in format's own code, so the
//! suite can check that a profile crosses the v1 contract whole; `v1-panics` panics in its
//! export, so the suite can check a panicking plugin costs an error line, not the profile.

use anyhow::Context;
use tachyon_plugin_api::{
    AggregateOutput, Aggregating, Collector, CollectorConfig, ExportContext, Format, Needs,
    StackCounts,
};

struct V1Collapsed;

impl AggregateOutput for V1Collapsed {
    fn export(&mut self, counts: &StackCounts, ctx: &ExportContext<'_>) -> anyhow::Result<()> {
        let path = ctx.path.context("v1-collapsed needs -o")?;
        let mut text = String::new();
        tachyon_collapsed::Lines::new(counts, ctx.symbols).for_each(|line, count| {
            text.push_str(&format!("{line} {count}\n"));
            Ok(())
        })?;
        std::fs::write(path, text)?;
        Ok(())
    }
}

fn create(_config: &CollectorConfig) -> anyhow::Result<Box<dyn Collector>> {
    Ok(Box::new(Aggregating::new(V1Collapsed)))
}

static V1_COLLAPSED: Format = Format {
    name: "v1-collapsed",
    description: "Collapsed stacks, from a plugin built against plugin API v1",
    extension: "txt",
    options: &[],
    needs: Needs::NOTHING,
    create,
};

struct Panics;

impl AggregateOutput for Panics {
    fn export(&mut self, _counts: &StackCounts, _ctx: &ExportContext<'_>) -> anyhow::Result<()> {
        panic!("v1-panics panics, as asked");
    }
}

fn create_panics(_config: &CollectorConfig) -> anyhow::Result<Box<dyn Collector>> {
    Ok(Box::new(Aggregating::new(Panics)))
}

static V1_PANICS: Format = Format {
    name: "v1-panics",
    description: "Panics in its export (a test of plugin failures)",
    extension: "txt",
    options: &[],
    needs: Needs::NOTHING,
    create: create_panics,
};

tachyon_plugin_api::export_plugin_v1!(V1_COLLAPSED, V1_PANICS);
