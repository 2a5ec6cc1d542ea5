//! `tachyon dump PID`: one traceback-style snapshot of the target's Python stacks, printed as
//! CPython 3.15.2's `profiling.sampling dump` prints it (`dump.py`): a `Stack dump for PID N,
//! thread T (status; most recent call last):` header per thread, frames root first with their
//! source line, opcodes with `--opcodes`, coloured on a terminal.

use std::fmt::Write as _;

use anyhow::Result;
use tachyon_plugin_api::opcodes::Opcodes;
use tachyon_plugin_api::{ansi, printable, SourceAccess, SourceReader, Symbols, ThreadStatus};

use crate::sampler::{Target, ThreadSample, UnwindOptions, Unwinder};

/// `_colorize`'s `ProfilerDump` theme, or no colours.
struct Theme {
    header: &'static str,
    frame: &'static str,
    filename: &'static str,
    line_no: &'static str,
    source: &'static str,
    opcode: &'static str,
    warning: &'static str,
    reset: &'static str,
}

impl Theme {
    fn new(colors: bool) -> Theme {
        let c = |code| ansi(colors, code);
        Theme {
            header: c("\x1b[1;34m"),
            frame: c("\x1b[1;32m"),
            filename: c("\x1b[36m"),
            line_no: c("\x1b[33m"),
            source: c("\x1b[37m"),
            opcode: c("\x1b[90m"),
            warning: c("\x1b[33m"),
            reset: c("\x1b[0m"),
        }
    }

    fn paint(&self, text: &str, color: &str) -> String {
        if color.is_empty() {
            text.to_owned()
        } else {
            format!("{color}{text}{}", self.reset)
        }
    }
}

/// CPython's `_status_text`: the status labels, `idle` when the thread holds nothing and is
/// known to be off CPU.
fn status_text(status: u8) -> String {
    let s = ThreadStatus(status);
    let mut labels: Vec<&str> = [
        (ThreadStatus::MAIN_THREAD, "main thread"),
        (ThreadStatus::HAS_GIL, "has GIL"),
        (ThreadStatus::ON_CPU, "on CPU"),
        (ThreadStatus::GIL_REQUESTED, "waiting for GIL"),
        (ThreadStatus::HAS_EXCEPTION, "has exception"),
    ]
    .into_iter()
    .filter(|&(bit, _)| s.has(bit))
    .map(|(_, label)| label)
    .collect();
    let holds = s.has(ThreadStatus::HAS_GIL)
        || s.has(ThreadStatus::GIL_REQUESTED)
        || s.has(ThreadStatus::HAS_EXCEPTION);
    if !holds && !s.has(ThreadStatus::UNKNOWN) && !s.has(ThreadStatus::ON_CPU) {
        labels.push("idle");
    }
    labels.join(", ")
}

/// The dump text for already-sampled threads (root frame first, like a traceback).
fn render(
    pid: i32,
    threads: &[ThreadSample],
    symbols: &Symbols,
    opcodes: Option<&Opcodes>,
    theme: &Theme,
) -> String {
    if threads.is_empty() {
        return format!(
            "{}\n",
            theme.paint(
                &format!("No Python stacks found for PID {pid}"),
                theme.warning
            )
        );
    }
    // Paths under the working directory are shown relative to it, as tracebacks read best.
    let cwd = std::env::current_dir()
        .ok()
        .filter(|c| c.parent().is_some());
    let show_interpreter = threads
        .iter()
        .any(|t| t.interpreter_id != threads[0].interpreter_id);
    let mut sources = SourceReader::new(SourceAccess::Anywhere);
    let mut lines: Vec<String> = Vec::new();
    for (i, t) in threads.iter().enumerate() {
        if i > 0 {
            lines.push(String::new());
        }
        let subject = if i == 0 {
            format!("Stack dump for PID {pid}, thread {}", t.thread_id)
        } else {
            format!("Stack dump, thread {}", t.thread_id)
        };
        let mut details = Vec::new();
        if show_interpreter {
            details.push(format!("interpreter {}", t.interpreter_id));
        }
        // A task's stack names its leaf task instead of a thread state (as 3.15's).
        match t.task {
            Some(task) => details.push(format!("task {task}")),
            None => {
                let status = status_text(t.status);
                if !status.is_empty() {
                    details.push(status);
                }
            }
        }
        details.push("most recent call last".to_owned());
        lines.push(theme.paint(
            &format!("{subject} ({}):", details.join("; ")),
            theme.header,
        ));
        if t.frames.is_empty() {
            lines.push(theme.paint("No Python frames", theme.warning));
            continue;
        }
        for &id in t.frames.iter().rev() {
            let f = symbols.frame(id);
            let func = theme.paint(&printable(symbols.str(f.funcname)), theme.frame);
            let mut line = if symbols.is_synthetic(f) {
                format!("  {func}")
            } else if f.lineno <= 0 && symbols.str(f.filename).starts_with('<') {
                // `<task>` frames: a name, no line.
                let file = theme.paint(
                    &format!("\"{}\"", printable(symbols.str(f.filename))),
                    theme.filename,
                );
                format!("  File {file}, in {func}")
            } else {
                let file = symbols.str(f.filename);
                let shown = cwd
                    .as_ref()
                    .and_then(|c| std::path::Path::new(file).strip_prefix(c).ok())
                    .map_or(file.to_owned(), |p| p.display().to_string());
                let file_part = theme.paint(&format!("\"{}\"", printable(&shown)), theme.filename);
                if f.lineno > 0 {
                    let line_part = theme.paint(&f.lineno.to_string(), theme.line_no);
                    format!("  File {file_part}, line {line_part}, in {func}")
                } else {
                    format!("  File {file_part}, in {func}")
                }
            };
            if let (Some(op), Some(table)) = (f.opcode, opcodes) {
                let _ = write!(
                    line,
                    "  {}",
                    theme.paint(&format!("opcode={}", table.format(op)), theme.opcode)
                );
            }
            lines.push(line);
            if !symbols.is_synthetic(f) {
                if let Some(source) = source_line(&mut sources, symbols.str(f.filename), f.lineno) {
                    lines.push(format!(
                        "    {}",
                        theme.paint(&printable(&source), theme.source)
                    ));
                }
            }
        }
    }
    lines.join("\n") + "\n"
}

fn source_line(sources: &mut SourceReader, file: &str, lineno: i32) -> Option<String> {
    let text = sources.get(file)?;
    let line = text
        .lines()
        .nth(usize::try_from(lineno).ok()?.checked_sub(1)?)?;
    Some(line.trim_start().to_owned()).filter(|l| !l.is_empty())
}

/// `opts` as the user chose (threads, `<native>`, `<GC>`, opcodes); `blocking` stops the
/// target's threads while they are read.
pub fn dump(pid: i32, opts: UnwindOptions, blocking: bool) -> Result<()> {
    crate::sampler::process::check_pid(pid)?;
    let target = Target::attach(pid)?;
    let (major, minor, _) = target.version;
    if opts.asyncio.is_some() {
        crate::sampler::asyncio::check_version(&target)?;
    }
    let opcodes = opts
        .opcodes
        .then(|| Opcodes::for_version(major, minor))
        .flatten();
    let mut unwinder = Unwinder::new(
        target,
        UnwindOptions {
            cpu_state: true,
            exception_state: true,
            ..opts
        },
    );
    let mut symbols = Symbols::new();
    let mut threads = Vec::new();
    {
        let _paused = if blocking {
            Some(crate::sampler::pause::Paused::pause(
                &unwinder.target.process,
            )?)
        } else {
            None
        };
        unwinder
            .sample(&mut symbols, &mut threads)
            .map_err(|e| anyhow::anyhow!("cannot read the stacks of PID {pid}: {e}"))?;
    }
    let colors = tachyon_plugin_api::stdout_takes_colors();
    let text = render(
        pid,
        &threads,
        &symbols,
        opcodes.as_ref(),
        &Theme::new(colors),
    );
    let mut stdout = std::io::stdout().lock();
    std::io::Write::write_all(&mut stdout, text.as_bytes())?;
    std::io::Write::flush(&mut stdout)?;
    Ok(())
}
