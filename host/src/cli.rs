//! The command line. Every failure is printed as one `tachyon: error: ...` line with a
//! non-zero exit code.

use std::path::PathBuf;

use anyhow::Result;
use clap::{Parser, Subcommand};

use crate::output::OutputArgs;
use crate::sampler::UnwindOptions;
use crate::session::SampleArgs;

#[derive(Parser, Debug)]
#[command(
    name = "tachyon",
    version,
    about = "A sampling profiler for CPython with differential flame graphs"
)]
pub struct Cli {
    /// Load an output-format plugin (a tachyon plugin .so); repeatable. TACHYON_PLUGIN_PATH
    /// lists directories whose plugins are loaded too.
    #[arg(long, global = true, value_name = "PATH")]
    pub plugin: Vec<PathBuf>,
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
        #[command(flatten)]
        sample: SampleArgs,
        #[command(flatten)]
        out: OutputArgs,
        /// Script path (or module name with -m).
        target: String,
        /// Arguments passed to the program.
        #[arg(allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// Profile a running Python process.
    Attach {
        pid: i32,
        #[command(flatten)]
        sample: SampleArgs,
        #[command(flatten)]
        out: OutputArgs,
    },
    /// Convert a binary capture (.bin) into another format.
    Replay {
        /// The capture to read.
        input: PathBuf,
        #[command(flatten)]
        out: OutputArgs,
    },
    /// Differential flame graph of two captures: where CURRENT spends more or less time than BASELINE.
    Diff {
        baseline: PathBuf,
        current: PathBuf,
        #[command(flatten)]
        out: OutputArgs,
    },
    /// Print the Python stack of every thread of a running process once.
    Dump {
        pid: i32,
        /// Insert <native> frames where Python was called from C.
        #[arg(long)]
        native: bool,
    },
    /// List every output format.
    Formats,
}

pub fn main() -> i32 {
    let cli = Cli::parse();
    match dispatch(cli) {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("tachyon: error: {}", one_line(&e));
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

fn dispatch(cli: Cli) -> Result<()> {
    crate::plugins::init(&cli.plugin)?;
    match cli.command {
        Command::Run {
            module,
            python,
            sample,
            out,
            target,
            args,
        } => crate::session::run(python, module, &target, &args, &sample, &out),
        Command::Attach { pid, sample, out } => crate::session::attach(pid, &sample, &out),
        Command::Replay { input, out } => crate::replay::replay(&input, &out),
        Command::Dump { pid, native } => crate::dump::dump(
            pid,
            UnwindOptions {
                native,
                gc: true,
                ..Default::default()
            },
        ),
        Command::Diff {
            baseline,
            current,
            mut out,
        } => {
            out.diff_flamegraph = Some(baseline);
            crate::replay::replay(&current, &out)
        }
        Command::Formats => {
            for f in crate::output::all_formats() {
                println!("{:<16} {}", f.name(), f.description());
            }
            Ok(())
        }
    }
}
