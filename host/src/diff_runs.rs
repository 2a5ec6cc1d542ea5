//! `tachyon diff --baseline A… --current B…`: two sets of runs compared with statistics
//! (plugin_api::runs), the pooled runs drawn as a differential flame graph coloured by the
//! verdicts, Markdown and JSON reports beside it, and a gate that fails only on a significant
//! regression over the user's limit.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{bail, Context, Result};
use tachyon_plugin_api::compare::Normalize;
use tachyon_plugin_api::runs::{Compared, RunsComparison, RunsOptions, StackClass, Verdict};
use tachyon_plugin_api::{CollectorConfig, Mode, Profile, RegressionDetected};

use crate::binary::Capture;
use crate::output::{
    build_collector, check_output_dir, export, find_format, Durability, OutputArgs,
};
use crate::replay::InputArgs;

/// How the run sets are tested.
pub struct RunsArgs {
    pub baseline: Vec<PathBuf>,
    pub current: Vec<PathBuf>,
    /// Confidence level in percent (99).
    pub confidence: f64,
    pub min_samples: u64,
}

/// Paths as given, a pattern with `*`, `?` or `[` expanded (sorted), for shells that passed it on.
fn expand(paths: &[PathBuf]) -> Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    for path in paths {
        let text = path.to_string_lossy();
        if text.contains(['*', '?', '[']) {
            let mut found: Vec<PathBuf> = glob::glob(&text)
                .with_context(|| format!("bad pattern {text}"))?
                .filter_map(Result::ok)
                .collect();
            if found.is_empty() {
                bail!("no capture matches {text}");
            }
            found.sort();
            out.extend(found);
        } else {
            out.push(path.clone());
        }
    }
    Ok(out)
}

fn profiles(runs: &[Run]) -> Vec<&Profile> {
    runs.iter().map(|r| &r.profile).collect()
}

/// How a capture was taken, as its header, stats and provenance say.
struct Origin {
    path: PathBuf,
    python: Option<(u8, u8)>,
    mode: Option<Mode>,
    interval_us: u64,
    error_rate: Option<f64>,
    provenance: Option<serde_json::Value>,
}

/// A capture of a set of runs, aggregated.
struct Run {
    origin: Origin,
    profile: Profile,
}

/// The captures at `paths` (patterns expanded) and where they came from.
fn open(paths: &[PathBuf], input: &InputArgs) -> Result<Vec<(Origin, Capture)>> {
    expand(paths)?
        .into_iter()
        .map(|path| {
            let capture = Capture::open(&path, &input.limits())
                .with_context(|| format!("cannot read {}", path.display()))?;
            let (major, minor, _) = capture.header.python_version;
            let origin = Origin {
                python: Some((major, minor)).filter(|&v| v != (0, 0)),
                mode: capture.mode(),
                interval_us: capture.header.interval_us,
                error_rate: capture.stats.as_ref().and_then(|s| s.error_rate),
                provenance: capture.provenance.clone(),
                path,
            };
            Ok((origin, capture))
        })
        .collect()
}

fn load(paths: &[PathBuf], input: &InputArgs) -> Result<Vec<Run>> {
    open(paths, input)?
        .into_iter()
        .map(|(origin, capture)| {
            let (profile, _) = capture
                .to_profile(false, &mut |_, _| {})
                .with_context(|| format!("{} is not a valid capture", origin.path.display()))?;
            Ok(Run { origin, profile })
        })
        .collect()
}

/// The captures must measure the same thing: one Python version, and for sets of runs one
/// mode, are required; for sets of runs one sampling rate, and similar error rates, are
/// warned about. A pair's mode and rate are left to the differential format, which refuses
/// and warns in CPython 3.15.2's words. `--force-diff` compares anyway.
fn check_comparable(origins: &[&Origin], force: bool, pair: bool) -> Result<()> {
    let first = origins[0];
    for run in origins {
        let show_version = |o: &Origin| {
            o.python
                .map_or("unknown".to_owned(), |(a, b)| format!("{a}.{b}"))
        };
        let show_mode = |o: &Origin| o.mode.map_or("unknown", Mode::name).to_owned();
        let differs: Option<(&str, String, String)> = if run.python != first.python {
            Some(("Python version", show_version(first), show_version(run)))
        } else if !pair && run.mode != first.mode {
            Some(("mode", show_mode(first), show_mode(run)))
        } else {
            None
        };
        if let (Some((field, a, b)), false) = (differs, force) {
            bail!(
                "{} and {} differ in {field} ({a} against {b}): their profiles do not compare (--force-diff compares them anyway)",
                first.path.display(),
                run.path.display()
            );
        }
        if !pair && run.interval_us != first.interval_us && !force {
            eprintln!(
                "Warning: {} samples every {} us and {} every {} us (the sampling rate differs)",
                first.path.display(),
                first.interval_us,
                run.path.display(),
                run.interval_us
            );
        }
    }
    // Runs that lost many more samples than the others measure less well.
    let errors: Vec<f64> = origins.iter().filter_map(|o| o.error_rate).collect();
    if let (Some(lo), Some(hi)) = (
        errors.iter().copied().reduce(f64::min),
        errors.iter().copied().reduce(f64::max),
    ) {
        if hi - lo > MAX_ERROR_RATE_SPREAD && !force {
            eprintln!("Warning: the runs' error rates range from {lo:.1}% to {hi:.1}% (the error rate differs)");
        }
    }
    Ok(())
}

/// `tachyon diff BASE CUR`: the same checks for one pair, from the captures' headers (the
/// replay that follows aggregates them).
pub fn check_pair(baseline: &Path, current: &Path, input: &InputArgs, force: bool) -> Result<()> {
    let captures = open(&[baseline.to_path_buf(), current.to_path_buf()], input)?;
    let origins: Vec<&Origin> = captures.iter().map(|(o, _)| o).collect();
    check_comparable(&origins, force, true)
}

/// Percentage points of error rate the runs may differ by before a warning.
const MAX_ERROR_RATE_SPREAD: f64 = 5.0;

pub fn diff_runs(runs: &RunsArgs, out: &OutputArgs, input: &InputArgs) -> Result<()> {
    let baseline = load(&runs.baseline, input)?;
    let current = load(&runs.current, input)?;
    if baseline.is_empty() || current.is_empty() {
        bail!("give at least one capture for --baseline and one for --current");
    }
    if !(50.0..100.0).contains(&runs.confidence) {
        bail!("--confidence is a percentage between 50 and 100, e.g. 99");
    }
    let every_run: Vec<&Origin> = baseline.iter().chain(&current).map(|r| &r.origin).collect();
    check_comparable(&every_run, out.force_diff, false)?;
    // Shares of each run by default: they cancel a runner's overall speed, which varies by
    // 30 % and more in CI; `--diff-normalize interval` compares time per run instead.
    let normalize = match out.diff_normalize.as_deref() {
        Some("interval") => Normalize::Interval,
        _ => Normalize::Total,
    };
    let comparison = Arc::new(RunsComparison::new(
        &profiles(&baseline),
        &profiles(&current),
        RunsOptions {
            normalize,
            level: runs.confidence / 100.0,
            min_samples: runs.min_samples as f64,
        },
    ));

    // The pooled runs as a differential flame graph coloured by the verdicts.
    let format = find_format(out.format_name())?;
    let pooled = Profile::pool(&profiles(&current));
    let mut config = CollectorConfig {
        interval_us: pooled.interval_us,
        mode: pooled.mode.unwrap_or_default(),
        mode_unknown: pooled.mode.is_none(),
        python_version: pooled.python_version,
        capture_features: pooled.capture_features,
        sources: input.source_access()?,
        baseline: Some(Arc::new(Profile::pool(&profiles(&baseline)))),
        runs: Some(Arc::clone(&comparison)),
        ..Default::default()
    };
    let limits = input.limits();
    let mut single_pair = out.clone();
    // The gate of a set of runs is decided here, across the runs, not per pair.
    single_pair.fail_on_regression = None;
    single_pair.diff_flamegraph = None;
    single_pair.fill_options(&mut config, &limits)?;
    let path = single_pair.output_path(&format, std::process::id());
    check_output_dir(path.as_deref())?;
    let mut collector = build_collector(&format, &config, &single_pair)?;
    pooled.replay_into(collector.as_mut());
    export(
        collector.as_mut(),
        path.as_deref(),
        &pooled.symbols,
        &pooled.stats,
        Durability::Regenerable,
    )?;

    let report_base = path.clone().unwrap_or_else(|| PathBuf::from("diff"));
    let origins = |runs: &[Run]| -> Vec<(String, Option<serde_json::Value>)> {
        runs.iter()
            .map(|r| {
                (
                    r.origin.path.display().to_string(),
                    r.origin.provenance.clone(),
                )
            })
            .collect()
    };
    let (base_origin, cur_origin) = (origins(&baseline), origins(&current));
    let markdown = markdown(&comparison, &base_origin, &cur_origin);
    let json = serde_json::json!({
        "comparison": &*comparison,
        "baseline": base_origin.iter().map(|(p, v)| serde_json::json!({"path": p, "provenance": v})).collect::<Vec<_>>(),
        "current": cur_origin.iter().map(|(p, v)| serde_json::json!({"path": p, "provenance": v})).collect::<Vec<_>>(),
    });
    let (md_path, json_path) = (
        report_base.with_extension("md"),
        report_base.with_extension("json"),
    );
    write_atomically(&md_path, markdown.as_bytes())?;
    write_atomically(&json_path, &serde_json::to_vec_pretty(&json)?)?;
    eprintln!(
        "Reports written to {} and {}",
        md_path.display(),
        json_path.display()
    );
    print_summary(&comparison);

    if let Some(limit) = out.fail_on_regression {
        if let Some(worst) = comparison.over_limit(limit).first() {
            return Err(RegressionDetected(format!(
                "{} ({}) regressed by {} across the runs, significant at {}% and over the --fail-on-regression limit of {limit}%",
                worst.name,
                worst.filename,
                change_text(worst),
                runs.confidence
            ))
            .into());
        }
    }
    Ok(())
}

fn write_atomically(path: &Path, bytes: &[u8]) -> Result<()> {
    let temporary = path.with_extension("tmp-report");
    std::fs::write(&temporary, bytes)
        .and_then(|()| std::fs::rename(&temporary, path))
        .with_context(|| format!("cannot write {}", path.display()))
}

/// `+12.3% (99% CI +8.1% to +16.5%)`, or the absolute change of a new function.
fn change_text(c: &Compared) -> String {
    match c.test {
        Some(w) => match (w.change_pct, w.change_low_pct, w.change_high_pct) {
            (Some(pct), Some(lo), Some(hi)) => format!("{pct:+.1}% (CI {lo:+.1}% to {hi:+.1}%)"),
            _ => format!(
                "{:+.1} (new; CI {:+.1} to {:+.1})",
                w.diff, w.diff_low, w.diff_high
            ),
        },
        None => "n/a".to_owned(),
    }
}

fn print_summary(c: &RunsComparison) {
    let count = |v: Verdict| c.functions.iter().filter(|f| f.verdict == v).count();
    eprintln!(
        "{} baseline and {} current runs: {} functions regressed, {} improved, {} unchanged, {} with too little data ({}% confidence)",
        c.baseline_runs,
        c.current_runs,
        count(Verdict::Regressed),
        count(Verdict::Improved),
        count(Verdict::Unchanged),
        count(Verdict::NotEnoughData),
        c.level * 100.0
    );
}

/// The pull-request report: significant changes with their intervals, stack classes, and
/// where both sides came from.
fn markdown(
    c: &RunsComparison,
    baseline: &[(String, Option<serde_json::Value>)],
    current: &[(String, Option<serde_json::Value>)],
) -> String {
    let mut md = String::from("## tachyon: performance comparison\n\n");
    let _ = writeln!(
        md,
        "{} baseline runs against {} current runs; one-sided Welch's t-tests on each function's per-run {} at {}% confidence (the interval's ends are the bounds at that level).\n",
        c.baseline_runs,
        c.current_runs,
        if c.unit == "ms" { "time" } else { "share of samples" },
        c.level * 100.0
    );
    for (title, verdict) in [
        ("Regressions", Verdict::Regressed),
        ("Improvements", Verdict::Improved),
    ] {
        let rows: Vec<&Compared> = c
            .functions
            .iter()
            .filter(|f| f.verdict == verdict)
            .collect();
        let _ = writeln!(md, "### {title} ({})\n", rows.len());
        if rows.is_empty() {
            md.push_str("None.\n\n");
            continue;
        }
        let _ = writeln!(
            md,
            "| Function | File | Baseline ({u}) | Current ({u}) | Change (bounds) | p |\n|---|---|---:|---:|---:|---:|",
            u = c.unit
        );
        for f in rows {
            let _ = writeln!(
                md,
                "| `{}` | `{}` | {:.1} ± {:.1} | {:.1} ± {:.1} | {} | {:.2e} |",
                f.name,
                f.filename.rsplit('/').next().unwrap_or(&f.filename),
                f.baseline.mean,
                f.baseline.stdev,
                f.current.mean,
                f.current.stdev,
                change_text(f),
                f.test.map_or(1.0, |w| w.p)
            );
        }
        md.push('\n');
    }
    let classes = [
        (StackClass::Appeared, "appeared"),
        (StackClass::Disappeared, "disappeared"),
        (StackClass::Grown, "grew"),
        (StackClass::Shrunk, "shrank"),
    ];
    let counts: Vec<String> = classes
        .iter()
        .map(|(class, name)| {
            format!(
                "{} {name}",
                c.stacks.iter().filter(|s| s.class == *class).count()
            )
        })
        .collect();
    let _ = writeln!(md, "### Stacks\n\n{}.\n", counts.join(", "));
    for (title, runs) in [("Baseline", baseline), ("Current", current)] {
        let _ = writeln!(md, "### {title} runs\n\n| Capture | Python | Rate | Mode | Host | CPUs | Commit | Started |\n|---|---|---|---|---|---|---|---|");
        for (path, provenance) in runs {
            let get = |key: &str| {
                provenance
                    .as_ref()
                    .and_then(|p| p.get(key))
                    .map_or("?".to_owned(), |v| {
                        v.as_str().map_or_else(|| v.to_string(), str::to_owned)
                    })
            };
            let _ = writeln!(
                md,
                "| `{}` | {} | {} Hz | {} | {} | {} | {} | {} |",
                path.rsplit('/').next().unwrap_or(path),
                get("python"),
                get("rate_hz"),
                get("mode"),
                get("host"),
                get("cpus"),
                get("git_commit"),
                get("started")
            );
        }
        md.push('\n');
    }
    md
}
