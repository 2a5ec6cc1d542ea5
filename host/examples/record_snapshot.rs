//! Record an unwinder fixture (host/tests/snapshots/X.Y.snap.zst) from a live process:
//!
//!     cargo run --release --example record_snapshot -- PYTHON OUT
//!
//! runs tests/scripts/parked.py under PYTHON, takes the stacks it reports, samples it once
//! through a recording memory, checks the unwinder saw exactly those stacks, and writes the
//! target's description, the recorded memory and the expected stacks to OUT.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use tachyon::sampler::fixture::{ExpectedFrame, Fixture, TargetDescription};
use tachyon::sampler::memory::{LiveMemory, Recording};
use tachyon::sampler::{Target, UnwindOptions, Unwinder};
use tachyon_plugin_api::Symbols;

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let [_, python, out] = &args[..] else {
        bail!("usage: record_snapshot PYTHON OUT");
    };
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/scripts/parked.py");
    let mut child = Command::new(python)
        .arg(&script)
        .stdout(Stdio::piped())
        .spawn()
        .with_context(|| format!("cannot run {python}"))?;
    let result = record(
        child.id() as i32,
        child.stdout.take().context("no stdout")?,
        out,
    );
    let _ = child.kill();
    let _ = child.wait();
    result
}

fn record(pid: i32, stdout: std::process::ChildStdout, out: &str) -> Result<()> {
    let mut line = String::new();
    BufReader::new(stdout).read_line(&mut line)?;
    let mut expected: Vec<Vec<ExpectedFrame>> =
        serde_json::from_str(&line).context("parked.py printed no stacks")?;
    let started = Instant::now();
    let target = loop {
        match Target::attach(pid) {
            Ok(t) => break t,
            Err(e) if started.elapsed() > Duration::from_secs(5) => return Err(e.into()),
            Err(_) => std::thread::sleep(Duration::from_millis(20)),
        }
    };
    let description = TargetDescription::of(&target);
    let (memory, snapshot) = Recording::new(LiveMemory::new(target.process.clone()));
    let opts = UnwindOptions {
        all_threads: true,
        exception_state: true,
        ..UnwindOptions::default()
    };
    let mut unwinder = Unwinder::with_memory(target, opts, Box::new(memory));
    let mut symbols = Symbols::default();
    let mut threads = Vec::new();
    unwinder.sample(&mut symbols, &mut threads)?;
    let mut seen = tachyon::sampler::fixture::stacks(&symbols, &threads);
    seen.sort();
    expected.sort();
    if seen != expected {
        bail!("the unwinder saw\n{seen:?}\nbut the program reported\n{expected:?}");
    }
    let (major, minor, micro) = description.version();
    let fixture = Fixture {
        python: format!("{major}.{minor}.{micro}"),
        target: description,
        expected,
        snapshot: snapshot
            .lock()
            .map_err(|_| anyhow::anyhow!("the recording panicked"))?
            .clone(),
    };
    fixture.save(Path::new(out))?;
    println!("{out}: {} threads", fixture.expected.len());
    Ok(())
}
