//! Choosing the output format, building its collector, and naming its output file.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{bail, Context, Result};
use clap::Args;
use tachyon_plugin_api::{
    formats, Collector, CollectorConfig, ExportContext, Format, Needs, RegressionDetected,
    RunStats, Symbols,
};

use crate::binary::{BinaryCollector, Capture, ReadLimits};
use crate::plugins::{Plugin, PluginCollector};
use tachyon_plugin_api::ffi::FormatInfo;

/// How a user passes a format's option: its own flag for the ones tachyon knows, else
/// `--format-option KEY`.
pub fn option_flag(key: &str) -> String {
    if OPTION_FLAGS.contains(&key) {
        format!("--{}", key.replace('_', "-"))
    } else {
        format!("--format-option {key}")
    }
}

/// Format options that have a flag of their own (the key with `-` for `_`).
const OPTION_FLAGS: &[&str] = &[
    "sort",
    "limit",
    "no_summary",
    "fail_on_regression",
    "force_diff",
    "diff_normalize",
    "keep_bootstrap_frames",
    "compression",
];

/// Output options shared by `run`, `attach` and `replay`. The format is chosen once: by
/// `-f NAME`, by one of CPython 3.15's format flags, or by `--diff-flamegraph`.
#[derive(Args, Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
pub struct OutputArgs {
    /// Output format by name, e.g. `-f flamegraph` (`tachyon formats` lists them all, plugins
    /// included). Default: pstats.
    #[arg(short = 'f', long, value_name = "NAME", group = "output_format")]
    pub format: Option<String>,
    /// Print a pstats table, or with -o write a file pstats.Stats and snakeviz load (the default).
    #[arg(long, group = "output_format", help_heading = "Output format")]
    pub pstats: bool,
    /// Write collapsed stacks (`tid:N;file:func:line;... count`) for flamegraph.pl or inferno.
    #[arg(long, group = "output_format", help_heading = "Output format")]
    pub collapsed: bool,
    /// Write an interactive HTML flame graph.
    #[arg(long, group = "output_format", help_heading = "Output format")]
    pub flamegraph: bool,
    /// Write a Firefox Profiler (gecko) JSON profile.
    #[arg(long, group = "output_format", help_heading = "Output format")]
    pub gecko: bool,
    /// Write an HTML heatmap of sampled lines: a directory with index.html.
    #[arg(long, group = "output_format", help_heading = "Output format")]
    pub heatmap: bool,
    /// Write JSON Lines records (string and frame tables, self/cumulative counts) for programs.
    #[arg(long, group = "output_format", help_heading = "Output format")]
    pub jsonl: bool,
    /// Write a binary capture (.bin) that `tachyon replay` and CPython 3.15 read.
    #[arg(long, group = "output_format", help_heading = "Output format")]
    pub binary: bool,
    /// Write a differential flame graph against this baseline capture, e.g.
    /// `--diff-flamegraph before.bin`: red where time grew, blue where it shrank. With
    /// `-f NAME`, the baseline of another differential format.
    #[arg(long, value_name = "BASELINE.bin", help_heading = "Output format",
          conflicts_with_all = ["pstats", "collapsed", "flamegraph", "gecko", "heatmap", "jsonl", "binary"])]
    pub diff_flamegraph: Option<PathBuf>,
    /// Output path, e.g. `-o profile.html` (a directory for --heatmap). Default: pstats prints
    /// to stdout; other formats write `FORMAT_PID.EXT` (an existing directory gets that name
    /// inside it).
    #[arg(short, long, value_name = "PATH")]
    pub output: Option<PathBuf>,
    /// Open the HTML output (flame graph, diff, heatmap) in a browser when it is written
    /// ($BROWSER, else xdg-open).
    #[arg(long)]
    pub browser: bool,
    /// Sort order, e.g. `--sort cumtime` (default nsamples).
    #[arg(long, value_parser = ["nsamples", "tottime", "cumtime", "sample-pct", "cumul-pct", "nsamples-cumul", "name"], help_heading = "pstats table")]
    pub sort: Option<String>,
    /// Rows to print, e.g. `-l 30` (default 15).
    #[arg(short, long, value_name = "ROWS", help_heading = "pstats table")]
    pub limit: Option<usize>,
    /// Leave out the summary of interesting functions.
    #[arg(long, help_heading = "pstats table")]
    pub no_summary: bool,
    /// Exit with status 3 when a function's self time grew by at least this many percent
    /// beyond sampling noise, e.g. `--fail-on-regression 10`. The output is still written.
    #[arg(long, value_name = "PCT", help_heading = "Differential flame graph")]
    pub fail_on_regression: Option<f64>,
    /// Compare captures taken differently anyway: in another mode (cpu against wall) or with
    /// other capture options (-a, --native, --no-gc, --opcodes, --blocking).
    #[arg(long, help_heading = "Differential flame graph")]
    pub force_diff: bool,
    /// Bring the baseline to the current run's units by the ratio of sampling intervals
    /// (`interval`, the default, as CPython 3.15.2) or of total sampled time (`total`, for
    /// captures of a fixed duration such as `attach -d 30`).
    #[arg(long, value_name = "HOW", value_parser = ["interval", "total"], help_heading = "Differential flame graph")]
    pub diff_normalize: Option<String>,
    /// Keep the leading runpy frames CPython's `run` starts scripts through (by default they
    /// are ignored on both sides, so captures of either tool match).
    #[arg(long, help_heading = "Differential flame graph")]
    pub keep_bootstrap_frames: bool,
    /// Pass an option to the output format (plugins read these), e.g. `--format-option theme=dark`.
    #[arg(long = "format-option", value_name = "KEY=VALUE")]
    pub format_options: Vec<String>,
    /// Also write the binary capture here, e.g. `--save-capture run.bin` (written first, so
    /// it survives a failing format; replay it into any format later).
    #[arg(long, value_name = "FILE.bin")]
    pub save_capture: Option<PathBuf>,
    /// Compression of a binary capture (--binary, --save-capture): auto (zstd), zstd or none.
    #[arg(long, value_parser = ["auto", "zstd", "none"])]
    pub compression: Option<String>,
}

impl OutputArgs {
    pub fn format_name(&self) -> &str {
        let flags = [
            (self.pstats, "pstats"),
            (self.collapsed, "collapsed"),
            (self.flamegraph, "flamegraph"),
            (self.gecko, "gecko"),
            (self.heatmap, "heatmap"),
            (self.jsonl, "jsonl"),
            (self.binary, "binary"),
            (self.diff_flamegraph.is_some(), "diff_flamegraph"),
        ];
        match &self.format {
            Some(name) => name,
            None => flags
                .iter()
                .find(|(set, _)| *set)
                .map_or("pstats", |(_, name)| name),
        }
    }

    /// The options the user gave, as (option key, value).
    fn given_options(&self) -> Result<Vec<(String, String)>> {
        let flag = |set: bool| set.then(|| "true".to_owned());
        let own = [
            ("sort", self.sort.clone()),
            ("limit", self.limit.map(|l| l.to_string())),
            ("no_summary", flag(self.no_summary)),
            (
                "fail_on_regression",
                self.fail_on_regression.map(|p| p.to_string()),
            ),
            ("force_diff", flag(self.force_diff)),
            ("diff_normalize", self.diff_normalize.clone()),
            ("keep_bootstrap_frames", flag(self.keep_bootstrap_frames)),
        ];
        let mut given: Vec<(String, String)> = own
            .into_iter()
            .filter_map(|(key, value)| Some((key.to_owned(), value?)))
            .collect();
        for kv in &self.format_options {
            let (k, v) = kv
                .split_once('=')
                .with_context(|| format!("--format-option expects KEY=VALUE, got '{kv}'"))?;
            given.push((k.to_owned(), v.to_owned()));
        }
        Ok(given)
    }

    /// Refuse what does not apply to `format` with one error line, worded as CPython 3.15
    /// words it: an option the format does not read, a baseline given to a format that
    /// compares nothing, a differential format without one. Nothing the user asks for is
    /// silently ignored.
    pub fn check(&self, format: &FormatChoice) -> Result<()> {
        let accepted = format.options();
        let refused: Vec<String> = self
            .given_options()?
            .into_iter()
            .map(|(key, _)| key)
            .filter(|key| !accepted.contains(&key.as_str()))
            .collect();
        if !refused.is_empty() {
            let flags: Vec<String> = refused.iter().map(|k| option_flag(k)).collect();
            let takers: Vec<String> = all_formats()
                .iter()
                .filter(|f| refused.iter().any(|k| f.options().contains(&k.as_str())))
                .map(|f| format!("--{}", f.name()))
                .collect();
            let message = if takers.is_empty() {
                let takes = if accepted.is_empty() {
                    "no options".to_owned()
                } else {
                    let own: Vec<String> = accepted.iter().map(|k| option_flag(k)).collect();
                    own.join(", ")
                };
                format!(
                    "Options {} are not read by any format (--{} takes {takes})",
                    flags.join(", "),
                    format.name()
                )
            } else {
                format!(
                    "Options {} are only valid with {}, not --{}",
                    flags.join(", "),
                    takers.join(", "),
                    format.name()
                )
            };
            return Err(UsageError(message).into());
        }
        // --compression applies to the binary format and to the --save-capture copy.
        if self.compression.is_some()
            && !accepted.contains(&"compression")
            && self.save_capture.is_none()
        {
            return Err(UsageError(format!(
                "--compression does not apply to the {} format (only to binary and --save-capture)",
                format.name()
            ))
            .into());
        }
        let needs = format.needs();
        if self.diff_flamegraph.is_some() && !needs.baseline {
            return Err(UsageError(format!(
                "the {} format does not compare against a baseline (--diff-flamegraph and `tachyon diff` need a differential format such as diff_flamegraph)",
                format.name()
            ))
            .into());
        }
        if needs.baseline && self.diff_flamegraph.is_none() {
            return Err(UsageError(format!(
                "the {} format needs a baseline capture: --diff-flamegraph BASELINE.bin",
                format.name()
            ))
            .into());
        }
        if self.browser && !opens_in_browser(format) {
            eprintln!(
                "Warning: --browser opens HTML output; the {} format writes none",
                format.name()
            );
        }
        Ok(())
    }

    /// Options handed to the collector by name (call [`OutputArgs::check`] first); the
    /// baseline loaded.
    pub fn fill_options(&self, config: &mut CollectorConfig, limits: &ReadLimits) -> Result<()> {
        config.options.extend(self.given_options()?);
        if let Some(c) = &self.compression {
            config.options.insert("compression".into(), c.clone());
        }
        if let (Some(base), None) = (&self.diff_flamegraph, &config.baseline) {
            config.baseline = Some(Arc::new(load_baseline(base, limits)?));
        }
        Ok(())
    }

    /// Where the output goes: `-o` as given, a default name inside an `-o` directory, or the
    /// default `{format}_{pid}.{ext}`. None = print to stdout (pstats without -o).
    pub fn output_path(&self, format: &FormatChoice, pid: u32) -> Option<PathBuf> {
        let default_name = || {
            if format.extension().is_empty() {
                format!("{}_{pid}", format.name())
            } else {
                format!("{}_{pid}.{}", format.name(), format.extension())
            }
        };
        match &self.output {
            Some(p) if p.is_dir() && !format.extension().is_empty() => Some(p.join(default_name())),
            // A directory output named like a page (`-o heat.html`) is the directory `heat`, as Tachyon.
            Some(p)
                if format.extension().is_empty() && p.extension().is_some_and(|e| e == "html") =>
            {
                Some(p.with_extension(""))
            }
            Some(p) => Some(p.clone()),
            None if format.needs().stdout => None,
            None => Some(PathBuf::from(default_name())),
        }
    }
}

/// The baseline capture of a differential format, aggregated.
pub fn load_baseline(path: &Path, limits: &ReadLimits) -> Result<tachyon_plugin_api::Profile> {
    Capture::open(path, limits)
        .and_then(|c| Ok(c.to_profile(false, &mut |_, _| {})?.0))
        .with_context(|| format!("cannot load baseline {}", path.display()))
}

/// A command line that asks for something that cannot be done (exit status 2, as a usage
/// error of CPython's argument parser).
#[derive(Debug)]
pub struct UsageError(pub String);

impl std::fmt::Display for UsageError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for UsageError {}

/// Whether a format's output is a page to open (`--browser`): an `.html` file, or a
/// directory (heatmap) with an `index.html`.
pub fn opens_in_browser(format: &FormatChoice) -> bool {
    matches!(format.extension(), "html" | "")
}

/// Open a written HTML output in the user's browser: `$BROWSER` (a `:`-separated list of
/// commands, `%s` standing for the URL), else `xdg-open`. A browser that cannot be started
/// is a warning: the output is written either way.
pub fn open_in_browser(path: &Path) {
    let page = if path.is_dir() {
        path.join("index.html")
    } else {
        path.to_path_buf()
    };
    let Ok(page) = page.canonicalize() else {
        eprintln!("Warning: Could not find {} to open", page.display());
        return;
    };
    let url = format!("file://{}", page.display());
    let browsers = std::env::var("BROWSER").unwrap_or_default();
    let commands = browsers
        .split(':')
        .filter(|c| !c.trim().is_empty())
        .map(str::to_owned)
        .chain(["xdg-open".to_owned()]);
    for command in commands {
        let mut words: Vec<String> = command.split_whitespace().map(str::to_owned).collect();
        if words.iter().any(|w| w.contains("%s")) {
            for w in &mut words {
                *w = w.replace("%s", &url);
            }
        } else {
            words.push(url.clone());
        }
        let started = std::process::Command::new(&words[0])
            .args(&words[1..])
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .spawn();
        if started.is_ok() {
            return;
        }
    }
    eprintln!("Warning: Could not open a browser for {url} (set $BROWSER)");
}

/// A built-in format or one a loaded plugin provides.
pub enum FormatChoice {
    Builtin(&'static Format),
    Plugin(Arc<Plugin>, FormatInfo),
}

impl FormatChoice {
    pub fn name(&self) -> &str {
        match self {
            FormatChoice::Builtin(f) => f.name,
            FormatChoice::Plugin(_, f) => &f.name,
        }
    }

    pub fn description(&self) -> String {
        match self {
            FormatChoice::Builtin(f) => f.description.to_owned(),
            FormatChoice::Plugin(p, f) => {
                format!("{} (plugin: {})", f.description, p.path.display())
            }
        }
    }

    pub fn options(&self) -> Vec<&str> {
        match self {
            FormatChoice::Builtin(f) => f.options.to_vec(),
            FormatChoice::Plugin(_, f) => f.options.iter().map(String::as_str).collect(),
        }
    }

    pub fn needs(&self) -> Needs {
        match self {
            FormatChoice::Builtin(f) => f.needs,
            FormatChoice::Plugin(_, f) => f.needs,
        }
    }

    pub fn extension(&self) -> &str {
        match self {
            FormatChoice::Builtin(f) => f.extension,
            FormatChoice::Plugin(_, f) => &f.extension,
        }
    }

    pub fn create(&self, config: &CollectorConfig) -> Result<Box<dyn Collector>> {
        match self {
            FormatChoice::Builtin(f) => {
                (f.create)(config).with_context(|| format!("cannot set up the {} format", f.name))
            }
            FormatChoice::Plugin(p, f) => {
                Ok(Box::new(PluginCollector::new(p.clone(), &f.name, config)))
            }
        }
    }
}

/// Every format: built-ins first, then plugins' (a plugin cannot shadow a built-in).
pub fn all_formats() -> Vec<FormatChoice> {
    let mut all: Vec<FormatChoice> = formats().into_iter().map(FormatChoice::Builtin).collect();
    for plugin in crate::plugins::loaded() {
        for f in &plugin.formats {
            if !all.iter().any(|c| c.name() == f.name) {
                all.push(FormatChoice::Plugin(plugin.clone(), f.clone()));
            }
        }
    }
    all
}

pub fn find_format(name: &str) -> Result<FormatChoice> {
    let all = all_formats();
    let names: Vec<String> = all.iter().map(|f| f.name().to_owned()).collect();
    all.into_iter()
        .find(|f| f.name() == name)
        .with_context(|| format!("unknown format '{name}' (available: {})", names.join(", ")))
}

/// With `--save-capture`, the binary capture is written first, then the chosen format: a
/// failing format (or plugin) never costs the profile.
pub struct SaveCapture {
    capture: BinaryCollector,
    path: PathBuf,
    main: Box<dyn Collector>,
}

impl Collector for SaveCapture {
    fn collect(&mut self, symbols: &Symbols, sample: &tachyon_plugin_api::Sample<'_>) {
        self.capture.collect(symbols, sample);
        self.main.collect(symbols, sample);
    }

    fn prefetch(&mut self, symbols: &Symbols, thread_id: u64, stack: tachyon_plugin_api::StackId) {
        self.main.prefetch(symbols, thread_id, stack);
    }

    fn export(&mut self, ctx: &ExportContext<'_>) -> Result<()> {
        export(
            &mut self.capture,
            Some(&self.path),
            ctx.symbols,
            ctx.stats,
            Durability::Synced,
        )?;
        self.main.export(ctx)
    }
}

/// The collector for `format`, teed into a binary capture when `--save-capture` asks.
pub fn build_collector(
    format: &FormatChoice,
    config: &CollectorConfig,
    out: &OutputArgs,
) -> Result<Box<dyn Collector>> {
    with_capture(format.create(config)?, config, out)
}

/// `main`, teed into a binary capture when `--save-capture` asks.
pub fn with_capture(
    main: Box<dyn Collector>,
    config: &CollectorConfig,
    out: &OutputArgs,
) -> Result<Box<dyn Collector>> {
    Ok(match &out.save_capture {
        Some(path) => Box::new(SaveCapture {
            capture: BinaryCollector::new(config)?,
            path: path.clone(),
            main,
        }),
        None => main,
    })
}

/// Make sure the output's directory exists before sampling starts, so a typo does not cost a run.
pub fn check_output_dir(path: Option<&Path>) -> Result<()> {
    if let Some(parent) = path
        .and_then(Path::parent)
        .filter(|p| !p.as_os_str().is_empty())
    {
        match std::fs::metadata(parent) {
            Ok(m) if m.is_dir() => {}
            Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => {
                bail!(
                    "output directory {} is not accessible (permission denied)",
                    parent.display()
                )
            }
            _ => bail!("output directory {} does not exist", parent.display()),
        }
    }
    Ok(())
}

/// Export `collector` to `destination` atomically: it writes a temporary name in the same
/// directory, which is renamed into place only once the export succeeded (or found a
/// regression, which is a verdict on a complete output). A failed, panicking or interrupted
/// export leaves no truncated file and keeps an earlier output of the same name intact.
pub fn export(
    collector: &mut dyn Collector,
    destination: Option<&Path>,
    symbols: &Symbols,
    stats: &RunStats,
    durability: Durability,
) -> Result<()> {
    let Some(destination) = destination else {
        return crate::guard::catch("the export", || {
            collector.export(&ExportContext {
                path: None,
                destination: None,
                symbols,
                stats,
            })
        });
    };
    let temporary = temporary_path(destination);
    remove_path(&temporary);
    let result = crate::guard::catch("the export", || {
        crate::guard::inject("export");
        collector.export(&ExportContext {
            path: Some(&temporary),
            destination: Some(destination),
            symbols,
            stats,
        })
    });
    let complete = match &result {
        Ok(()) => true,
        Err(e) => e.downcast_ref::<RegressionDetected>().is_some(),
    };
    // A format may decline to write (no samples): then there is nothing to move.
    if complete && temporary.symlink_metadata().is_ok() {
        if let Err(e) = replace(&temporary, destination, durability) {
            remove_path(&temporary);
            return Err(e);
        }
    } else {
        remove_path(&temporary);
    }
    result
}

/// `.NAME.tachyon-PID.tmp` beside `path`: same directory, so the rename is atomic.
fn temporary_path(path: &Path) -> PathBuf {
    let name = path
        .file_name()
        .map_or_else(|| "output".to_owned(), |n| n.to_string_lossy().into_owned());
    path.with_file_name(format!(".{name}.tachyon-{}.tmp", std::process::id()))
}

fn remove_path(path: &Path) {
    match path.symlink_metadata() {
        Ok(m) if m.is_dir() => drop(std::fs::remove_dir_all(path)),
        Ok(_) => drop(std::fs::remove_file(path)),
        Err(_) => {}
    }
}

/// Whether an output must be on disk before it takes its name.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Durability {
    /// A sampling run's output: it cannot be made again, so a crash of the machine must not
    /// leave its name pointing at data still in flight.
    Synced,
    /// Made from captures that are still there (replay, diff): the sync would only add its
    /// milliseconds.
    Regenerable,
}

/// Move a finished output into place (a file synced first if it must be); a directory
/// (heatmap) replaces an earlier one of the same name.
fn replace(temporary: &Path, destination: &Path, durability: Durability) -> Result<()> {
    let cannot = || format!("cannot write {}", destination.display());
    if durability == Durability::Synced && temporary.is_file() {
        std::fs::File::open(temporary)
            .and_then(|f| f.sync_all())
            .with_context(cannot)?;
    }
    if temporary.is_dir() && destination.is_dir() {
        let old = temporary.with_extension("old");
        std::fs::rename(destination, &old).with_context(cannot)?;
        if let Err(e) = std::fs::rename(temporary, destination) {
            let _ = std::fs::rename(&old, destination);
            return Err(e).with_context(cannot);
        }
        remove_path(&old);
        return Ok(());
    }
    std::fs::rename(temporary, destination).with_context(cannot)
}
