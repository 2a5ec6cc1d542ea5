//! The command line. Every failure is printed as one `tachyon: error: ...` line with a
//! non-zero exit code.

use std::path::PathBuf;

use anyhow::Result;
use clap::{Parser, Subcommand};
use tachyon_plugin_api::formats;

use crate::output::OutputArgs;
use crate::sampler::UnwindOptions;

#[derive(Parser, Debug)]
#[command(
    name = "tachyon",
    version,
    about = "A sampling profiler for CPython with differential flame graphs"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Convert a binary capture (.bin) into another format.
    Replay {
        /// The capture to read.
        input: PathBuf,
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
            1
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
    match cli.command {
        Command::Replay { input, out } => crate::replay::replay(&input, &out),
        Command::Dump { pid, native } => crate::dump::dump(
            pid,
            UnwindOptions {
                native,
                gc: true,
                ..Default::default()
            },
        ),
        Command::Formats => {
            for f in formats() {
                println!("{:<16} {}", f.name, f.description);
            }
            Ok(())
        }
    }
}
