//! Choosing the output format, building its collector, and naming its output file.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{bail, Context, Result};
use clap::Args;
use tachyon_plugin_api::{formats, Collector, CollectorConfig, Format};

use crate::binary::Capture;

/// Output options shared by `run`, `attach` and `replay`.
#[derive(Args, Debug, Clone, Default)]
pub struct OutputArgs {
    /// Output format (see `tachyon formats`).
    #[arg(short = 'f', long, default_value = "pstats")]
    pub format: String,
    /// Differential flame graph against this baseline capture (.bin); implies --format diff_flamegraph.
    #[arg(long, value_name = "BASELINE.bin")]
    pub diff_flamegraph: Option<PathBuf>,
    /// Output file (directory for heatmap). pstats without -o prints a table.
    #[arg(short, long, value_name = "PATH")]
    pub output: Option<PathBuf>,
    /// pstats table: sort order.
    #[arg(long, value_parser = ["nsamples", "tottime", "cumtime", "sample-pct", "cumul-pct", "nsamples-cumul", "name"])]
    pub sort: Option<String>,
    /// pstats table: rows to print (default 15).
    #[arg(short, long)]
    pub limit: Option<usize>,
    /// pstats table: omit the legend and summary.
    #[arg(long)]
    pub no_summary: bool,
    /// Differential formats: exit with code 3 when a function's self time grew by at least
    /// this many percent (beyond sampling noise). The output is still written.
    #[arg(long, value_name = "PCT")]
    pub fail_on_regression: Option<f64>,
    /// Differential formats: compare captures taken in different modes anyway.
    #[arg(long)]
    pub force_diff: bool,
    /// binary: compression of the sample records.
    #[arg(long, value_parser = ["auto", "zstd", "none"], default_value = "auto")]
    pub compression: String,
}

impl OutputArgs {
    pub fn format_name(&self) -> &str {
        if self.diff_flamegraph.is_some() {
            "diff_flamegraph"
        } else {
            &self.format
        }
    }

    /// Options handed to the collector by name.
    pub fn fill_options(&self, config: &mut CollectorConfig) -> Result<()> {
        let pstats_only = self.sort.is_some() || self.limit.is_some() || self.no_summary;
        if pstats_only && self.format_name() != "pstats" {
            bail!(
                "options --sort, --limit, --no-summary are only valid with --format pstats, not {}",
                self.format_name()
            );
        }
        let opts = &mut config.options;
        if let Some(s) = &self.sort {
            opts.insert("sort".into(), s.clone());
        }
        if let Some(l) = self.limit {
            opts.insert("limit".into(), l.to_string());
        }
        if self.no_summary {
            opts.insert("no_summary".into(), "true".into());
        }
        opts.insert("compression".into(), self.compression.clone());
        if let Some(pct) = self.fail_on_regression {
            opts.insert("fail_on_regression".into(), pct.to_string());
        }
        if self.force_diff {
            opts.insert("force_diff".into(), "true".into());
        }
        if let Some(base) = &self.diff_flamegraph {
            let profile = Capture::open(base)
                .and_then(|c| c.to_profile())
                .with_context(|| format!("cannot load baseline {}", base.display()))?;
            config.baseline = Some(Arc::new(profile));
        }
        Ok(())
    }

    /// Where the output goes: `-o` as given, a default name inside an `-o` directory, or the
    /// default `{format}_{pid}.{ext}`. None = print to stdout (pstats without -o).
    pub fn output_path(&self, format: &Format, pid: u32) -> Option<PathBuf> {
        let default_name = || {
            if format.extension.is_empty() {
                format!("{}_{pid}", format.name)
            } else {
                format!("{}_{pid}.{}", format.name, format.extension)
            }
        };
        match &self.output {
            Some(p) if p.is_dir() && !format.extension.is_empty() => Some(p.join(default_name())),
            Some(p) => Some(p.clone()),
            None if format.name == "pstats" => None,
            None => Some(PathBuf::from(default_name())),
        }
    }
}

pub fn find_format(name: &str) -> Result<&'static Format> {
    let all = formats();
    all.iter()
        .copied()
        .find(|f| f.name == name)
        .with_context(|| {
            let names: Vec<&str> = all.iter().map(|f| f.name).collect();
            format!("unknown format '{name}' (available: {})", names.join(", "))
        })
}

pub fn build_collector(format: &Format, config: &CollectorConfig) -> Result<Box<dyn Collector>> {
    (format.create)(config).with_context(|| format!("cannot set up the {} format", format.name))
}

/// Make sure the output's directory exists before sampling starts, so a typo does not cost a run.
pub fn check_output_dir(path: Option<&Path>) -> Result<()> {
    if let Some(parent) = path
        .and_then(Path::parent)
        .filter(|p| !p.as_os_str().is_empty())
    {
        if !parent.is_dir() {
            bail!("output directory {} does not exist", parent.display());
        }
    }
    Ok(())
}
