//! The command line. Every failure is printed as one `tachyon: error: ...` line with a
//! non-zero exit code: 1 when tachyon failed, 3 when a regression gate fired; `run` otherwise
//! exits with the target's status (see session.rs). A closed stdout ends quietly.

use std::io::Write;
use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};

use crate::output::OutputArgs;
use crate::replay::InputArgs;
use crate::sampler::UnwindOptions;
use crate::session::SampleArgs;

/// Seconds a plugin's export may run unless `--plugin-timeout` says otherwise.
pub const DEFAULT_PLUGIN_TIMEOUT_S: f64 = 600.0;

#[derive(Parser, Debug)]
#[command(
    name = "tachyon",
    version,
    about = "A sampling profiler for CPython with differential flame graphs",
    after_help = "Exit status: 1 if tachyon failed; else 3 if --fail-on-regression fired; else, for `run`, \
                  the target's own status (128+S if it died on signal S); 128+S if tachyon was stopped by \
                  signal S (Ctrl-C: 130); 0 otherwise. The output is written in every case it can be."
)]
pub struct Cli {
    /// Load an output-format plugin (a tachyon plugin .so); repeatable. TACHYON_PLUGIN_PATH
    /// lists directories whose plugins are loaded too.
    #[arg(long, global = true, value_name = "PATH")]
    pub plugin: Vec<PathBuf>,
    /// Stop a plugin's export that runs longer than this many seconds.
    #[arg(long, global = true, value_name = "SECONDS", default_value_t = DEFAULT_PLUGIN_TIMEOUT_S, value_parser = crate::session::parse_duration)]
    pub plugin_timeout: f64,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Start a Python program and profile it until it exits (or -d / Ctrl-C).
    #[command(trailing_var_arg = true)]
    Run {
        /// Run the target as a module (python -m MODULE).
        #[arg(short, long)]
        module: bool,
        /// Python interpreter to start (default: $TACHYON_PYTHON, else python3).
        #[arg(long, value_name = "PATH")]
        python: Option<PathBuf>,
        #[command(flatten, next_help_heading = "Sampling")]
        sample: SampleArgs,
        #[command(flatten, next_help_heading = "Output")]
        out: OutputArgs,
        /// Script path (or module name with -m).
        target: String,
        /// Arguments passed to the program.
        #[arg(allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// Profile a running Python process until it exits (or -d / Ctrl-C).
    Attach {
        /// Process ID to attach to, e.g. `tachyon attach 1234`.
        pid: i32,
        #[command(flatten, next_help_heading = "Sampling")]
        sample: SampleArgs,
        #[command(flatten, next_help_heading = "Output")]
        out: OutputArgs,
        /// Internal: a child profiler of --subprocesses takes its parent's options whole.
        #[arg(long, hide = true, value_name = "JSON")]
        inherit_options: Option<String>,
    },
    /// Convert a binary capture (.bin, from --binary or --save-capture) into another format.
    Replay {
        /// The capture to read, e.g. `tachyon replay --flamegraph -o f.html profile.bin`.
        input: PathBuf,
        #[command(flatten, next_help_heading = "Output")]
        out: OutputArgs,
        #[command(flatten, next_help_heading = "Reading captures")]
        input_args: InputArgs,
    },
    /// Differential flame graph of two captures, or of two sets of runs compared with
    /// statistics: where CURRENT spends more or less time than BASELINE.
    #[command(
        after_help = "Sets of runs: `tachyon diff --baseline main-*.bin --current pr-*.bin -o diff.html \
                  --fail-on-regression 10` compares each function's per-run time with Welch's t-test, \
                  writes diff.html, diff.md and diff.json, and exits with status 3 only when a function \
                  regressed significantly (at --confidence) and by more than 10%."
    )]
    Diff {
        /// The capture to compare against (before the change), e.g. `before.bin`.
        #[arg(required_unless_present = "baseline_runs")]
        baseline: Option<PathBuf>,
        /// The capture to show (after the change), e.g. `after.bin`.
        #[arg(required_unless_present = "baseline_runs")]
        current: Option<PathBuf>,
        /// Several baseline runs (captures; patterns such as `main-*.bin` are expanded), compared
        /// as a set with --current.
        #[arg(long = "baseline", value_name = "BIN", num_args = 1.., requires = "current_runs", conflicts_with_all = ["baseline", "current"], help_heading = "Sets of runs")]
        baseline_runs: Vec<PathBuf>,
        /// Several current runs, compared as a set with --baseline.
        #[arg(long = "current", value_name = "BIN", num_args = 1.., requires = "baseline_runs", help_heading = "Sets of runs")]
        current_runs: Vec<PathBuf>,
        /// Confidence level of the tests and intervals across runs, in percent.
        #[arg(
            long,
            value_name = "PCT",
            default_value_t = 99.0,
            help_heading = "Sets of runs"
        )]
        confidence: f64,
        /// Functions with fewer samples than this per run on both sides get no verdict.
        #[arg(
            long,
            value_name = "N",
            default_value_t = 20,
            help_heading = "Sets of runs"
        )]
        min_samples: u64,
        #[command(flatten, next_help_heading = "Output")]
        out: OutputArgs,
        #[command(flatten, next_help_heading = "Reading captures")]
        input_args: InputArgs,
    },
    /// Print a running process's current Python stack once (the main thread; -a for all).
    Dump {
        /// Process ID to dump, e.g. `tachyon dump 1234`.
        pid: i32,
        /// Dump every thread, not only the main thread.
        #[arg(short, long)]
        all_threads: bool,
        /// Insert `<native>` frames where Python called into C code (Python 3.11+).
        #[arg(long)]
        native: bool,
        /// Do not insert a `<GC>` frame while the garbage collector runs.
        #[arg(long)]
        no_gc: bool,
        /// Show the bytecode instruction each frame executes (Python 3.11+).
        #[arg(long)]
        opcodes: bool,
        /// Stop the target's threads while their stacks are read (consistent stacks).
        #[arg(long)]
        blocking: bool,
        /// Print asyncio task stacks (Python 3.8+): one per leaf task, its awaiters as
        /// `<task>` frames.
        #[arg(long)]
        async_aware: bool,
        /// With --async-aware: `all` tasks (the default for dump) or the `running` one.
        #[arg(long, value_name = "MODE", value_parser = ["running", "all"])]
        async_mode: Option<String>,
    },
    /// List every output format.
    Formats,
    /// Print a shell completion script, e.g. `tachyon completions bash > /etc/bash_completion.d/tachyon`
    /// or `source <(tachyon completions bash)`.
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Print tachyon's man page (roff), e.g. `tachyon man > /usr/local/share/man/man1/tachyon.1`.
    Man,
}

/// Exit status of a process that wrote into a closed pipe (128 + SIGPIPE), as Unix tools.
const BROKEN_PIPE_STATUS: i32 = 141;

pub fn main() -> i32 {
    crate::guard::install_panic_hook();
    let cli = Cli::parse();
    match crate::guard::catch("tachyon", || dispatch(cli)) {
        Ok(code) => code,
        Err(e) if is_broken_pipe(&e) => BROKEN_PIPE_STATUS,
        Err(e) => {
            eprintln!("tachyon: error: {}", one_line(&e));
            // A command line that cannot be carried out, as an argument parser's error.
            if e.downcast_ref::<crate::output::UsageError>().is_some() {
                return 2;
            }
            // A regression found by --fail-on-regression is a verdict, not a failure to run.
            if e.downcast_ref::<tachyon_plugin_api::RegressionDetected>()
                .is_some()
            {
                3
            } else {
                1
            }
        }
    }
}

/// Whether the error is a write into a closed pipe (`tachyon dump PID | head`).
fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|cause| {
        cause
            .downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
    })
}

/// The error and its causes on one line, without repeating a cause the message already holds.
fn one_line(e: &anyhow::Error) -> String {
    let mut line = String::new();
    for cause in e.chain() {
        let text = cause.to_string();
        if line.contains(&text) {
            continue;
        }
        if !line.is_empty() {
            line.push_str(": ");
        }
        line.push_str(&text);
    }
    line.replace('\n', " ")
}

fn dispatch(mut cli: Cli) -> Result<i32> {
    if let Command::Attach {
        sample,
        out,
        inherit_options: Some(json),
        ..
    } = &mut cli.command
    {
        let inherited: crate::subprocesses::ChildOptions =
            serde_json::from_str(json).context("invalid --inherit-options")?;
        (*sample, *out, cli.plugin, cli.plugin_timeout) = (
            inherited.sample,
            inherited.output,
            inherited.plugins,
            inherited.plugin_timeout,
        );
    }
    crate::plugins::init(
        &cli.plugin,
        std::time::Duration::from_secs_f64(cli.plugin_timeout),
    )?;
    let done = |r: Result<()>| r.map(|()| 0);
    match cli.command {
        Command::Run {
            module,
            python,
            sample,
            out,
            target,
            args,
        } => crate::session::run(python, module, &target, &args, &sample, &out),
        Command::Attach {
            pid, sample, out, ..
        } => crate::session::attach(pid, &sample, &out),
        Command::Replay {
            input,
            out,
            input_args,
        } => done(crate::replay::replay(&input, &out, &input_args)),
        Command::Dump {
            pid,
            all_threads,
            native,
            no_gc,
            opcodes,
            blocking,
            async_aware,
            async_mode,
        } => {
            crate::session::check_async(
                async_aware,
                async_mode.as_deref(),
                [all_threads, native, no_gc],
                None,
            )?;
            done(crate::dump::dump(
                pid,
                UnwindOptions {
                    all_threads,
                    native,
                    gc: !no_gc,
                    opcodes,
                    asyncio: async_aware.then(|| {
                        crate::session::async_mode(
                            async_mode.as_deref(),
                            crate::sampler::asyncio::AsyncMode::All,
                        )
                    }),
                    ..Default::default()
                },
                blocking,
            ))
        }
        Command::Diff {
            baseline,
            current,
            baseline_runs,
            current_runs,
            confidence,
            min_samples,
            mut out,
            input_args,
        } => match (baseline, current) {
            (Some(baseline), Some(current)) => {
                crate::diff_runs::check_pair(&baseline, &current, &input_args, out.force_diff)?;
                out.diff_flamegraph = Some(baseline);
                done(crate::replay::replay(&current, &out, &input_args))
            }
            _ => {
                if out.format.is_none() {
                    out.format = Some("diff_flamegraph".to_owned());
                }
                let runs = crate::diff_runs::RunsArgs {
                    baseline: baseline_runs,
                    current: current_runs,
                    confidence,
                    min_samples,
                };
                done(crate::diff_runs::diff_runs(&runs, &out, &input_args))
            }
        },
        Command::Formats => {
            let mut stdout = std::io::stdout().lock();
            for f in crate::output::all_formats() {
                let flags: Vec<String> = f
                    .options()
                    .into_iter()
                    .map(crate::output::option_flag)
                    .collect();
                let takes = if flags.is_empty() {
                    String::new()
                } else {
                    format!(" [{}]", flags.join(", "))
                };
                writeln!(stdout, "{:<16} {}{takes}", f.name(), f.description())?;
            }
            stdout.flush()?;
            Ok(0)
        }
        Command::Completions { shell } => {
            let mut command = <Cli as clap::CommandFactory>::command();
            // Into memory first: clap_complete panics on a write error (a closed pipe).
            let mut script = Vec::new();
            clap_complete::generate(shell, &mut command, "tachyon", &mut script);
            std::io::stdout().write_all(&script)?;
            Ok(0)
        }
        Command::Man => {
            let command = <Cli as clap::CommandFactory>::command();
            clap_mangen::Man::new(command).render(&mut std::io::stdout())?;
            Ok(0)
        }
    }
}
