//! The one collector contract and the static format registry.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use crate::model::{Mode, Sample, Symbols};
use crate::profile::Profile;
use crate::source::SourceAccess;
use crate::stacks::StackId;

/// Everything a collector is built from.
#[derive(Clone, Debug, Default)]
pub struct CollectorConfig {
    /// Nominal sampling interval in microseconds (1000 for 1 kHz).
    pub interval_us: u64,
    /// Wall when a replayed capture does not say (see `mode_unknown`).
    pub mode: Mode,
    /// A replayed capture recorded no mode (CPython's writer without one): outputs that
    /// report the mode leave it out, as CPython's.
    pub mode_unknown: bool,
    /// Format-specific options by name (`sort`, `limit`, ...), as given on the command line.
    pub options: BTreeMap<String, String>,
    /// The profile to compare against, for differential formats.
    pub baseline: Option<Arc<Profile>>,
    /// Version of the profiled Python (major, minor, micro), when known.
    pub python_version: Option<(u8, u8, u8)>,
    /// CLOCK_MONOTONIC microseconds when sampling started (or the replayed capture's start).
    pub start_time_us: Option<u64>,
    /// Capture-feature bits (all_threads 1, native 2, gc 4, opcodes 8, blocking 16), when known.
    pub capture_features: Option<u8>,
    /// Which source files the output may read (a replayed capture names untrusted files).
    pub sources: SourceAccess,
    /// Where the profile came from (command line, Python, host, commit...), as a capture
    /// records it; see tachyon's `binary` format.
    pub provenance: Option<Arc<serde_json::Value>>,
    /// Two sets of runs compared (`tachyon diff --baseline … --current …`): a differential
    /// format shows the pooled runs and colours functions by these verdicts.
    pub runs: Option<Arc<crate::runs::RunsComparison>>,
}

impl CollectorConfig {
    pub fn option(&self, name: &str) -> Option<&str> {
        self.options.get(name).map(String::as_str)
    }
}

/// How the run went, as Tachyon's summary and stats trailer report it.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct RunStats {
    pub duration_sec: f64,
    /// Samples per second actually achieved.
    pub sample_rate: f64,
    /// Percent of sampling attempts that failed, when known.
    pub error_rate: Option<f64>,
    /// Percent of expected samples not taken, when known (may be negative).
    pub missed_samples: Option<f64>,
}

/// A file an output is streamed to, buffered by the megabyte: with the default 8 KiB, a
/// 20 MB profile takes thousands of write calls.
pub fn output_file(path: &Path) -> anyhow::Result<std::io::BufWriter<std::fs::File>> {
    use anyhow::Context;
    let file =
        std::fs::File::create(path).with_context(|| format!("cannot write {}", path.display()))?;
    Ok(std::io::BufWriter::with_capacity(1 << 20, file))
}

/// `a()` and `b()`, `a` on a second thread meanwhile (or here, after `b`, if no thread can
/// be started): for the independent halves of an export, which has the second core to itself.
pub fn join<A: Send, B>(a: impl FnOnce() -> A + Send, b: impl FnOnce() -> B) -> (A, B) {
    let a = std::sync::Mutex::new(Some(a));
    let run_a = || {
        let a = a
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take();
        a.map(|a| a())
    };
    std::thread::scope(|scope| {
        let thread = std::thread::Builder::new()
            .name("tachyon-join".into())
            .spawn_scoped(scope, run_a);
        let b = b();
        let a = match thread {
            Ok(thread) => thread
                .join()
                .unwrap_or_else(|panic| std::panic::resume_unwind(panic)),
            Err(_) => None,
        };
        (a.or_else(run_a).expect("a runs once"), b)
    })
}

/// Write `chunks` pieces of text in order, made two at a time: `make(chunk, text)` appends
/// piece `chunk` (of `0..chunks`) to `text`. Both this thread and a second one take the next
/// piece not yet taken; this one also writes them all, in order, so it makes a piece only when
/// the one it must write next is not made yet, and waits once it holds a few made ahead: memory
/// does not grow with the output, and the thread that writes makes fewer pieces than the other.
/// For outputs of hundreds of megabytes, whose making is most of an export and can be cut
/// anywhere: replay's second core has nothing else to do by then. (If no thread can be
/// started, this one makes every piece.)
pub fn write_in_pieces(
    out: &mut dyn std::io::Write,
    chunks: usize,
    make: &(dyn Fn(usize, &mut Vec<u8>) -> anyhow::Result<()> + Sync),
) -> anyhow::Result<()> {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::mpsc::sync_channel;
    /// Pieces this thread holds, made ahead of the one it must write next, before it waits.
    const AHEAD: usize = 4;
    let next = AtomicUsize::new(0);
    let take = || Some(next.fetch_add(1, Ordering::Relaxed)).filter(|&chunk| chunk < chunks);
    // Texts written, to be made again.
    let spare = std::sync::Mutex::new(Vec::<Vec<u8>>::new());
    let make_one = |chunk: usize| {
        let mut text = spare
            .lock()
            .ok()
            .and_then(|mut s| s.pop())
            .unwrap_or_default();
        text.clear();
        make(chunk, &mut text).map(|()| text)
    };
    std::thread::scope(|scope| {
        let (made, from_helper) = sync_channel::<(usize, anyhow::Result<Vec<u8>>)>(2);
        let _ = std::thread::Builder::new()
            .name("tachyon-pieces".into())
            .spawn_scoped(scope, || {
                let made = made;
                while let Some(chunk) = take() {
                    // The writer has stopped (an error): nothing more is wanted.
                    if made.send((chunk, make_one(chunk))).is_err() {
                        return;
                    }
                }
            });
        let mut ready = std::collections::BTreeMap::new();
        for chunk in 0..chunks {
            let piece = loop {
                if let Some(piece) = ready.remove(&chunk) {
                    break piece;
                }
                // What the helper made, else a piece of this thread's own, else (the helper is
                // making the next to write, or this thread holds enough) wait for the helper.
                let (at, piece) = match from_helper.try_recv() {
                    Ok(made) => made,
                    Err(_) => match (ready.len() < AHEAD).then(take).flatten() {
                        Some(mine) => (mine, make_one(mine)),
                        None => from_helper
                            .recv()
                            .map_err(|_| anyhow::anyhow!("the thread making the output stopped"))?,
                    },
                };
                ready.insert(at, piece);
            }?;
            out.write_all(&piece)?;
            if let Ok(mut spare) = spare.lock() {
                spare.push(piece);
            }
        }
        Ok(())
    })
}

/// What `export` gets: where to write, the intern tables every collected id refers to,
/// and the run's statistics.
pub struct ExportContext<'a> {
    /// Where to write. The host passes a temporary name beside the destination and renames it
    /// into place once `export` succeeds, so a failed export never leaves a truncated output.
    /// `None` means "no -o given": print to stdout.
    pub path: Option<&'a Path>,
    /// The output's final name, to tell the user (the same as `path` when nothing renames).
    pub destination: Option<&'a Path>,
    pub symbols: &'a Symbols,
    pub stats: &'a RunStats,
}

impl ExportContext<'_> {
    /// The output's name as the user should see it.
    #[must_use]
    pub fn shown_path(&self) -> &Path {
        self.destination
            .or(self.path)
            .unwrap_or(Path::new("<stdout>"))
    }
}

/// An output format. `collect` is called for every sample (batch) in order of arrival per
/// thread; `export` is called exactly once at the end.
pub trait Collector {
    fn collect(&mut self, symbols: &Symbols, sample: &Sample<'_>);
    fn export(&mut self, ctx: &ExportContext<'_>) -> anyhow::Result<()>;
    /// A hint that a sample of this thread and stack is collected a few samples from now
    /// (replay gives it), to bring what collecting it reads into the cache. It must not
    /// change what is collected; by default it does nothing.
    fn prefetch(&mut self, _symbols: &Symbols, _thread_id: u64, _stack: StackId) {}
}

/// What a format needs from the host beyond the samples. The host reads these instead of
/// knowing formats by name.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct Needs {
    /// A baseline profile to compare with (`--diff-flamegraph`, `tachyon diff`).
    pub baseline: bool,
    /// Every thread's CPU and exception state in every sample, whatever the mode.
    pub thread_state: bool,
    /// Without `-o` it prints to stdout (the pstats table) instead of writing a default file.
    pub stdout: bool,
    /// It shows each frame's opcode, so `--opcodes` applies to it.
    pub opcodes: bool,
    /// A run-time plugin: every sample with its own time, in arrival order (a timeline
    /// format), not only the aggregated stacks. Built-in formats get every sample anyway.
    pub timeline: bool,
}

impl Needs {
    /// Samples and an output file, nothing else.
    pub const NOTHING: Needs = Needs {
        baseline: false,
        thread_state: false,
        stdout: false,
        opcodes: false,
        timeline: false,
    };
}

/// A registered output format.
pub struct Format {
    /// The `--format` value.
    pub name: &'static str,
    /// One line for `tachyon formats`.
    pub description: &'static str,
    /// Default output file extension (empty for directory outputs).
    pub extension: &'static str,
    /// The option keys it reads from [`CollectorConfig::options`]; the host refuses any other
    /// option with this format, so nothing the user asks for is silently ignored.
    pub options: &'static [&'static str],
    pub needs: Needs,
    pub create: fn(&CollectorConfig) -> anyhow::Result<Box<dyn Collector>>,
}

inventory::collect!(Format);

/// Every statically registered format, sorted by name.
#[must_use]
pub fn formats() -> Vec<&'static Format> {
    let mut all: Vec<&'static Format> = inventory::iter::<Format>.into_iter().collect();
    all.sort_by_key(|f| f.name);
    all
}

/// Returned by `export` (after the output is written) when a differential format finds a
/// regression over the user's `--fail-on-regression` limit; the host exits with code 3.
#[derive(Debug)]
pub struct RegressionDetected(pub String);

impl std::fmt::Display for RegressionDetected {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for RegressionDetected {}

#[cfg(test)]
mod tests {
    use super::write_in_pieces;

    /// Both halves run, once each, and give their values back in place.
    #[test]
    fn join_gives_both_values() {
        let ran = std::sync::atomic::AtomicUsize::new(0);
        let (a, b) = super::join(
            || {
                ran.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                (0..1000u64).sum::<u64>()
            },
            || "b".to_owned(),
        );
        assert_eq!((a, b.as_str(), ran.into_inner()), (499_500, "b", 1));
    }

    /// Pieces are written in order, whichever thread made them, and the first failing one
    /// ends the writing with its error after the pieces before it.
    #[test]
    fn pieces_are_written_in_order_until_one_fails() {
        let make = |chunk: usize, text: &mut Vec<u8>| {
            text.extend_from_slice(format!("{chunk},").as_bytes());
            Ok(())
        };
        for chunks in [0, 1, 2, 5, 13] {
            let mut out = Vec::new();
            write_in_pieces(&mut out, chunks, &make).unwrap();
            let expected: String = (0..chunks).map(|c| format!("{c},")).collect();
            assert_eq!(String::from_utf8(out).unwrap(), expected);
        }
        for failing in [13, 14] {
            let make = |chunk: usize, text: &mut Vec<u8>| {
                anyhow::ensure!(chunk != failing, "piece {chunk} failed");
                text.extend_from_slice(format!("{chunk},").as_bytes());
                Ok(())
            };
            let mut out = Vec::new();
            let err = write_in_pieces(&mut out, 40, &make).unwrap_err();
            assert_eq!(err.to_string(), format!("piece {failing} failed"));
            let expected: String = (0..failing).map(|c| format!("{c},")).collect();
            assert_eq!(String::from_utf8(out).unwrap(), expected);
        }
    }
}
