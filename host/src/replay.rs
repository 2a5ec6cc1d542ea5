//! `tachyon replay FILE.bin`: re-emit a capture through any output format.

use std::path::Path;

use anyhow::{Context, Result};
use tachyon_plugin_api::CollectorConfig;

use crate::binary::Capture;
use crate::output::{build_collector, check_output_dir, export, find_format, OutputArgs};
use crate::progress::ProgressBar;

pub fn replay(input: &Path, out: &OutputArgs) -> Result<()> {
    if !input.exists() {
        anyhow::bail!("input file not found: {}", input.display());
    }
    let format = find_format(out.format_name())?;
    let capture = Capture::open(input)?;
    let header = &capture.header;
    let mut config = CollectorConfig {
        interval_us: header.interval_us,
        mode: capture.mode().unwrap_or_default(),
        python_version: Some(header.python_version),
        start_time_us: Some(header.start_time_us),
        capture_features: header.capture_features(),
        ..Default::default()
    };
    out.fill_options(&mut config)?;
    let path = out.output_path(&format, std::process::id());
    check_output_dir(path.as_deref())?;
    let mut collector = build_collector(&format, &config, out)?;

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
    let mut bar = ProgressBar::new();
    let counts = capture.replay(collector.as_mut(), &mut |done, total| {
        bar.update(done, total)
    });
    bar.finish();
    let counts = counts.with_context(|| format!("{} is not a valid capture", input.display()))?;
    eprintln!("Replayed {} samples", counts.samples);

    let stats = capture.stats.clone().unwrap_or_default();
    export(
        collector.as_mut(),
        path.as_deref(),
        &capture.symbols,
        &stats,
    )
}
