//! `tachyon replay FILE.bin`: re-emit a capture through any output format.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use clap::Args;
use tachyon_plugin_api::{CollectorConfig, SourceAccess};

use crate::binary::{Capture, ReadLimits};
use crate::output::{
    build_collector, check_output_dir, export, find_format, load_baseline, open_in_browser,
    opens_in_browser, Durability, OutputArgs,
};
use crate::progress::ProgressBar;

/// How much of an untrusted capture to believe: `replay` and `diff` read files that may come
/// from anywhere.
#[derive(Args, Debug, Clone)]
pub struct InputArgs {
    /// Refuse captures with more samples than this.
    #[arg(long, default_value_t = ReadLimits::default().max_samples, value_name = "N")]
    pub max_samples: u64,
    /// Refuse captures larger than this many bytes, compressed or decompressed.
    #[arg(long, default_value_t = ReadLimits::default().max_bytes, value_name = "BYTES")]
    pub max_capture_bytes: u64,
    /// Outputs may show source files under this directory too (repeatable); by default only
    /// files under the current directory are read.
    #[arg(long, value_name = "DIR")]
    pub source_root: Vec<PathBuf>,
}

impl InputArgs {
    pub fn limits(&self) -> ReadLimits {
        ReadLimits {
            max_samples: self.max_samples,
            max_bytes: self.max_capture_bytes,
        }
    }

    /// The current directory and every --source-root, canonical.
    pub fn source_access(&self) -> Result<SourceAccess> {
        let mut roots = vec![std::env::current_dir()?.canonicalize()?];
        for root in &self.source_root {
            roots.push(
                root.canonicalize()
                    .with_context(|| format!("--source-root {} not found", root.display()))?,
            );
        }
        Ok(SourceAccess::Under(roots))
    }
}

pub fn replay(input: &Path, out: &OutputArgs, input_args: &InputArgs) -> Result<()> {
    if !input.exists() {
        anyhow::bail!("input file not found: {}", input.display());
    }
    let format = find_format(out.format_name())?;
    out.check(&format)?;
    let limits = input_args.limits();
    let mut capture = Capture::open(input, &limits)?;
    let path = out.output_path(&format, std::process::id());
    check_output_dir(path.as_deref())?;
    let header = &capture.header;
    eprintln!(
        "Replaying {} samples from {}",
        header.sample_count,
        input.display()
    );
    eprintln!("  Sample interval: {} us", header.interval_us);
    eprintln!(
        "  Compression: {}",
        if header.compression == 1 {
            "zstd"
        } else {
            "none"
        }
    );
    let mut config = CollectorConfig {
        interval_us: header.interval_us,
        mode: capture.mode().unwrap_or_default(),
        mode_unknown: capture.mode().is_none(),
        python_version: Some(header.python_version),
        start_time_us: Some(header.start_time_us),
        capture_features: header.capture_features(),
        sources: input_args.source_access()?,
        provenance: capture.provenance.clone().map(std::sync::Arc::new),
        ..Default::default()
    };
    let stats = capture.stats.clone().unwrap_or_default();
    let mut bar = ProgressBar::new();
    let mut progress = |done, total| bar.update(done, total);
    let replayed = match &out.diff_flamegraph {
        None => {
            out.fill_options(&mut config, &limits)?;
            let mut collector = build_collector(&format, &config, out)?;
            let counts = capture.replay(collector.as_mut(), &mut progress);
            counts.map(|counts| (collector, capture.symbols, counts))
        }
        // A differential format needs the baseline before it starts: the baseline is read
        // on a second core while the capture is aggregated. An aggregating format is then
        // given each stack once with its weight; one that asks for a timeline, every sample
        // in order.
        Some(base) => {
            let (baseline, aggregated) = std::thread::scope(|scope| {
                let baseline = scope.spawn(|| load_baseline(base, &limits));
                let aggregated = capture.to_profile(format.needs().timeline, &mut progress);
                let baseline = baseline
                    .join()
                    .unwrap_or_else(|p| std::panic::resume_unwind(p));
                (baseline, aggregated)
            });
            config.baseline = Some(std::sync::Arc::new(baseline?));
            out.fill_options(&mut config, &limits)?;
            let mut collector = build_collector(&format, &config, out)?;
            aggregated.map(|(profile, counts)| {
                profile.replay_into(collector.as_mut());
                (collector, profile.symbols, counts)
            })
        }
    };
    bar.finish();
    let (mut collector, mut symbols, counts) =
        replayed.with_context(|| format!("{} is not a valid capture", input.display()))?;
    symbols.freeze_stacks();
    export(
        collector.as_mut(),
        path.as_deref(),
        &symbols,
        &stats,
        Durability::Regenerable,
    )?;
    if out.browser && opens_in_browser(&format) {
        if let Some(p) = &path {
            open_in_browser(p);
        }
    }
    // After the output, as CPython prints it.
    eprintln!("Replayed {} samples", counts.samples);
    Ok(())
}
