//! `tachyon dump PID`: one traceback-style snapshot of every thread's Python stack.

use std::fmt::Write as _;

use anyhow::Result;
use tachyon_plugin_api::{printable, SourceAccess, SourceReader, Symbols, ThreadStatus};

use crate::sampler::{Target, ThreadSample, UnwindOptions, Unwinder};

fn status_words(status: u8) -> String {
    let s = ThreadStatus(status);
    let mut words = Vec::new();
    if s.has(ThreadStatus::MAIN_THREAD) {
        words.push("main thread");
    }
    if s.has(ThreadStatus::HAS_GIL) {
        words.push("has GIL");
    }
    if s.has(ThreadStatus::ON_CPU) {
        words.push("on CPU");
    }
    if s.has(ThreadStatus::GIL_REQUESTED) {
        words.push("waiting for GIL");
    }
    if s.has(ThreadStatus::HAS_EXCEPTION) {
        words.push("has exception");
    }
    if words.iter().all(|w| *w == "main thread") {
        words.push("idle");
    }
    words.join(", ")
}

/// The dump text for already-sampled threads (root frame first, like a traceback).
pub fn render(pid: i32, threads: &[ThreadSample], symbols: &Symbols) -> String {
    let mut out = String::new();
    if threads.is_empty() {
        let _ = writeln!(out, "No Python stacks found for PID {pid}");
    }
    // Paths under the working directory are shown relative to it, as tracebacks read best.
    let cwd = std::env::current_dir()
        .ok()
        .filter(|c| c.parent().is_some());
    let mut sources = SourceReader::new(SourceAccess::Anywhere);
    for t in threads {
        let _ = writeln!(
            out,
            "Stack dump for PID {pid}, thread {} ({}; most recent call last):",
            t.thread_id,
            status_words(t.status)
        );
        if t.frames.is_empty() {
            let _ = writeln!(out, "  No Python frames");
        }
        for &id in t.frames.iter().rev() {
            let f = symbols.frame(id);
            let func = symbols.str(f.funcname);
            if symbols.is_synthetic(f) {
                let _ = writeln!(out, "  {}", printable(func));
                continue;
            }
            let file = symbols.str(f.filename);
            let shown = cwd
                .as_ref()
                .and_then(|c| std::path::Path::new(file).strip_prefix(c).ok())
                .map_or(file.to_owned(), |p| p.display().to_string());
            let _ = writeln!(
                out,
                "  File \"{}\", line {}, in {}",
                printable(&shown),
                f.lineno,
                printable(func)
            );
            if let Some(line) = source_line(&mut sources, file, f.lineno) {
                let _ = writeln!(out, "    {}", printable(&line));
            }
        }
        out.push('\n');
    }
    out
}

fn source_line(sources: &mut SourceReader, file: &str, lineno: i32) -> Option<String> {
    let text = sources.get(file)?;
    let line = text
        .lines()
        .nth(usize::try_from(lineno).ok()?.checked_sub(1)?)?;
    Some(line.trim().to_owned()).filter(|l| !l.is_empty())
}

pub fn dump(pid: i32, opts: UnwindOptions) -> Result<()> {
    crate::sampler::process::check_pid(pid)?;
    let target = Target::attach(pid)?;
    let mut unwinder = Unwinder::new(
        target,
        UnwindOptions {
            all_threads: true,
            cpu_state: true,
            exception_state: true,
            ..opts
        },
    );
    let mut symbols = Symbols::new();
    let mut threads = Vec::new();
    unwinder
        .sample(&mut symbols, &mut threads)
        .map_err(|e| anyhow::anyhow!("cannot read the stacks of PID {pid}: {e}"))?;
    let mut stdout = std::io::stdout().lock();
    std::io::Write::write_all(&mut stdout, render(pid, &threads, &symbols).as_bytes())?;
    std::io::Write::flush(&mut stdout)?;
    Ok(())
}
