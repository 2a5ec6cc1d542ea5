//! `tachyon run` and `tachyon attach`: the sampling loop, its options, and the end-of-run
//! summary. Samples stream into the chosen collector; Ctrl-C (or SIGTERM, SIGHUP), the
//! duration limit, the target's exit, or even a failure while sampling all end the loop, and
//! the output is still written.
//!
//! Exit status: 1 if tachyon failed, else 3 if a regression gate fired, else the target's
//! own status (128+S when it died on signal S); 128+S when tachyon itself got signal S; 0 when
//! the duration ended the run.

use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus};
use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use clap::{Args, ValueEnum};
use serde::{Deserialize, Serialize};
use tachyon_plugin_api::{
    Collector, CollectorConfig, FrameId, Mode, RunStats, Sample, Symbols, ThreadStatus,
};

use crate::binary::{features, ReadLimits};
use crate::live::{LiveView, Next, Nothing};
use crate::output::{
    all_formats, build_collector, check_output_dir, export, find_format, open_in_browser,
    opens_in_browser, with_capture, Durability, FormatChoice, OutputArgs, UsageError,
};
use crate::progress::RealtimeStats;
use crate::sampler::asyncio::AsyncMode;
use crate::sampler::discover::AttachError;
use crate::sampler::pause::{child_exit, Paused};
use crate::sampler::process::{check_pid, Process, ReadError};
use crate::sampler::{Target, ThreadSample, UnwindOptions, Unwinder};

#[derive(Copy, Clone, Debug, PartialEq, Eq, ValueEnum, Serialize, Deserialize)]
pub enum ModeArg {
    Wall,
    Cpu,
    Gil,
    Exception,
}

/// Sampling options shared by `run` and `attach`. Child profilers (--subprocesses) get a
/// copy of the parent's, serialized whole, so no option is ever dropped on the way.
#[derive(Args, Debug, Clone, Serialize, Deserialize)]
pub struct SampleArgs {
    /// Samples per second: a number of Hz, or with a suffix, e.g. `-r 10khz`, `-r 10k`,
    /// `-r 250hz`.
    #[arg(short = 'r', long = "sampling-rate", value_name = "RATE", default_value = "1khz", value_parser = parse_rate)]
    pub interval_us: u64,
    /// Stop after this many seconds, e.g. `-d 30` (default: until the target exits or Ctrl-C).
    #[arg(short, long, value_name = "SECONDS", value_parser = parse_duration)]
    pub duration: Option<f64>,
    /// Sample every thread, not only the main thread.
    #[arg(short, long)]
    pub all_threads: bool,
    /// Print live sampling statistics once a second while sampling: rate (Hz and µs per
    /// sample, mean/min/max), samples taken and error rate.
    #[arg(long)]
    pub realtime_stats: bool,
    /// What a sample counts: wall (every sample), cpu (threads on a CPU), gil (threads
    /// holding the GIL) or exception (threads handling an exception), e.g. `--mode cpu`.
    #[arg(long, value_enum, default_value = "wall")]
    pub mode: ModeArg,
    /// Insert `<native>` frames where Python called into C code (Python 3.11+).
    #[arg(long)]
    pub native: bool,
    /// Do not insert `<GC>` frames while the garbage collector runs.
    #[arg(long)]
    pub no_gc: bool,
    /// Record the bytecode instruction each frame executes (Python 3.11+): shown by the flame
    /// graph, the heatmap and gecko's opcode markers, kept by --binary.
    #[arg(long)]
    pub opcodes: bool,
    /// Stop all of the target's threads while each sample is read (ptrace): consistent stacks,
    /// but the target runs slower.
    #[arg(long)]
    pub blocking: bool,
    /// Also profile every Python subprocess, each into its own output `NAME_PID.EXT`.
    #[arg(long)]
    pub subprocesses: bool,
    /// A full-screen, top-like view of the hottest functions while sampling (q quits, h shows
    /// the keys). With --save-capture the samples are kept for any format afterwards.
    #[arg(long)]
    pub live: bool,
    /// Rebuild stacks from asyncio tasks (Python 3.8+): one stack per leaf task, its awaiters
    /// as `<task>` frames up to the root task. Unlike CPython 3.15, --binary keeps them too.
    #[arg(long)]
    pub async_aware: bool,
    /// With --async-aware: `running` (the running task and its awaiters, the default) or
    /// `all` (suspended tasks too).
    #[arg(long, value_name = "MODE", value_parser = ["running", "all"])]
    pub async_mode: Option<String>,
}

impl SampleArgs {
    fn check_async(&self) -> Result<()> {
        check_async(
            self.async_aware,
            self.async_mode.as_deref(),
            [self.all_threads, self.native, self.no_gc],
            Some(self.mode),
        )
    }

    /// Refuse what CPython 3.15 refuses with these options and this format (its words), and
    /// warn where it warns.
    pub fn check_with(&self, format: &FormatChoice) -> Result<()> {
        let needs = format.needs();
        if needs.thread_state && self.mode != ModeArg::Wall {
            return Err(UsageError(format!(
                "--mode option is incompatible with --{name}. {} format automatically includes both GIL-holding and CPU status analysis.",
                capitalised(format.name()),
                name = format.name()
            ))
            .into());
        }
        if self.opcodes && !needs.opcodes {
            let takers: Vec<String> = all_formats()
                .iter()
                .filter(|f| f.needs().opcodes)
                .map(|f| format!("--{}", f.name()))
                .collect();
            return Err(UsageError(format!(
                "--opcodes is only compatible with {}.",
                takers.join(", ")
            ))
            .into());
        }
        if self.blocking && self.interval_us < 100 {
            eprintln!(
                "Warning: --blocking with a {} µs interval will stop all threads {} times per second. Consider using --sampling-rate 1khz or lower to reduce overhead.",
                self.interval_us,
                1_000_000 / self.interval_us
            );
        }
        Ok(())
    }
}

/// `--async-mode` as given, else `default`.
pub fn async_mode(given: Option<&str>, default: AsyncMode) -> AsyncMode {
    match given {
        Some("all") => AsyncMode::All,
        Some(_) => AsyncMode::Running,
        None => default,
    }
}

/// What CPython 3.15 refuses with `--async-aware` (and `--async-mode` without it), in its
/// words. `all_threads`, `native`, `no_gc` and `mode` as the command line gave them.
pub fn check_async(
    async_aware: bool,
    async_mode: Option<&str>,
    [all_threads, native, no_gc]: [bool; 3],
    mode: Option<ModeArg>,
) -> Result<()> {
    if !async_aware {
        if async_mode.is_some() {
            return Err(UsageError(
                "--async-mode requires --async-aware to be enabled.".to_owned(),
            )
            .into());
        }
        return Ok(());
    }
    let mut issues: Vec<String> = Vec::new();
    if native {
        issues.push("--native".to_owned());
    }
    if no_gc {
        issues.push("--no-gc".to_owned());
    }
    if let Some(m) = mode.filter(|&m| m != ModeArg::Wall) {
        issues.push(format!(
            "--mode={}",
            m.to_possible_value()
                .map_or("?".to_owned(), |v| v.get_name().to_owned())
        ));
    }
    if all_threads {
        issues.push("--all-threads".to_owned());
    }
    if issues.is_empty() {
        return Ok(());
    }
    Err(UsageError(format!(
        "Options {} are incompatible with --async-aware. Async-aware profiling uses task-based stack reconstruction.",
        issues.join(", ")
    ))
    .into())
}

/// What CPython 3.15 refuses with `--live`, in its words.
fn check_live(args: &SampleArgs, out: &OutputArgs) -> Result<()> {
    if !args.live {
        return Ok(());
    }
    if args.subprocesses {
        return Err(
            UsageError("--subprocesses is incompatible with --live mode.".to_owned()).into(),
        );
    }
    let format = out.format_name();
    if format != "pstats" {
        return Err(UsageError(format!(
            "--live is incompatible with --{format}. Live mode uses a TUI interface."
        ))
        .into());
    }
    let table: Vec<&str> = [
        (out.sort.is_some(), "--sort"),
        (out.limit.is_some(), "--limit"),
        (out.no_summary, "--no-summary"),
    ]
    .into_iter()
    .filter_map(|(given, flag)| given.then_some(flag))
    .collect();
    if !table.is_empty() {
        return Err(UsageError(format!(
            "Options {} are incompatible with --live. Live mode uses a TUI interface with its own controls.",
            table.join(", ")
        ))
        .into());
    }
    if !std::io::IsTerminal::is_terminal(&std::io::stdout()) {
        bail!("--live needs a terminal on stdout (it draws a full-screen view); drop --live to write a profile instead");
    }
    Ok(())
}

fn capitalised(name: &str) -> String {
    let mut chars = name.chars();
    chars
        .next()
        .map_or_else(String::new, |c| c.to_uppercase().chain(chars).collect())
}

/// Tachyon's rate syntax: `^(\d+(\.\d+)?)(hz|khz|k)?$`, case-insensitive; the result is the
/// interval in microseconds.
pub fn parse_rate(text: &str) -> Result<u64, String> {
    let s = text.trim().to_ascii_lowercase();
    let (number, scale) = if let Some(n) = s.strip_suffix("khz") {
        (n, 1000.0)
    } else if let Some(n) = s.strip_suffix('k') {
        (n, 1000.0)
    } else if let Some(n) = s.strip_suffix("hz") {
        (n, 1.0)
    } else {
        (s.as_str(), 1.0)
    };
    let valid = !number.is_empty()
        && number.chars().all(|c| c.is_ascii_digit() || c == '.')
        && number.matches('.').count() <= 1
        && !number.starts_with('.')
        && !number.ends_with('.');
    if !valid {
        return Err(format!(
            "invalid sampling rate format: {text}. Expected a number followed by an optional suffix (hz, khz, k) with no spaces (e.g. 10khz)"
        ));
    }
    let hz: f64 = number.parse::<f64>().map_err(|e| e.to_string())? * scale;
    if hz <= 0.0 {
        return Err(format!("sampling rate must be positive: {text}"));
    }
    let interval = (1_000_000.0 / hz) as u64;
    if interval < 1 {
        return Err(format!("sampling rate too high: {text} (at most 1MHz)"));
    }
    Ok(interval)
}

/// Longest accepted `--duration`: one year.
const MAX_DURATION_SECS: f64 = 365.0 * 24.0 * 3600.0;

/// A duration in seconds: finite, positive, at most a year (`inf`, `nan`, `1e300` would
/// otherwise end the run at once).
pub fn parse_duration(text: &str) -> Result<f64, String> {
    let secs: f64 = text
        .trim()
        .parse()
        .map_err(|_| format!("'{text}' is not a number of seconds"))?;
    if !secs.is_finite() || secs <= 0.0 || secs > MAX_DURATION_SECS {
        return Err(format!(
            "the duration must be more than 0 and at most one year ({MAX_DURATION_SECS} seconds), not '{text}'"
        ));
    }
    Ok(secs)
}

impl SampleArgs {
    fn mode(&self) -> Mode {
        match self.mode {
            ModeArg::Wall => Mode::Wall,
            ModeArg::Cpu => Mode::Cpu,
            ModeArg::Gil => Mode::Gil,
            ModeArg::Exception => Mode::Exception,
        }
    }

    fn unwind_options(&self) -> UnwindOptions {
        UnwindOptions {
            asyncio: self
                .async_aware
                .then(|| async_mode(self.async_mode.as_deref(), AsyncMode::Running)),
            all_threads: self.all_threads,
            native: self.native,
            gc: !self.no_gc,
            opcodes: self.opcodes,
            cpu_state: matches!(self.mode, ModeArg::Cpu | ModeArg::Exception),
            exception_state: self.mode == ModeArg::Exception,
        }
    }

    fn capture_features(&self) -> u8 {
        let mut f = 0;
        for (on, bit) in [
            (self.all_threads, features::ALL_THREADS),
            (self.native, features::NATIVE),
            (!self.no_gc, features::GC),
            (self.opcodes, features::OPCODES),
            (self.blocking, features::BLOCKING),
        ] {
            if on {
                f |= bit;
            }
        }
        f
    }

    /// Whether a thread's sample counts in this mode (Tachyon's filters).
    fn keeps(&self, status: u8) -> bool {
        let s = ThreadStatus(status);
        match self.mode {
            ModeArg::Wall => true,
            ModeArg::Cpu => s.has(ThreadStatus::ON_CPU),
            ModeArg::Gil => s.has(ThreadStatus::HAS_GIL),
            ModeArg::Exception => {
                s.has(ThreadStatus::HAS_EXCEPTION)
                    && (s.has(ThreadStatus::HAS_GIL) || s.has(ThreadStatus::ON_CPU))
            }
        }
    }
}

/// The signal (SIGINT, SIGTERM or SIGHUP) that asked tachyon to stop, or 0.
static STOP_SIGNAL: AtomicI32 = AtomicI32::new(0);

extern "C" fn on_signal(sig: libc::c_int) {
    STOP_SIGNAL.store(sig, Ordering::SeqCst);
}

fn stop_requested() -> bool {
    STOP_SIGNAL.load(Ordering::SeqCst) != 0
}

fn install_signal_handlers() {
    use nix::sys::signal::{sigaction, SaFlags, SigAction, SigHandler, SigSet, Signal};
    let action = SigAction::new(
        SigHandler::Handler(on_signal),
        SaFlags::SA_RESTART,
        SigSet::empty(),
    );
    // A closed terminal (SIGHUP) ends the run like Ctrl-C: the profile is still written.
    for sig in [Signal::SIGINT, Signal::SIGTERM, Signal::SIGHUP] {
        // SAFETY: the handler only stores to atomics, which is async-signal-safe.
        unsafe {
            let _ = sigaction(sig, &action);
        }
    }
}

pub fn monotonic_us() -> u64 {
    use nix::time::{clock_gettime, ClockId};
    // CLOCK_MONOTONIC cannot fail on Linux.
    clock_gettime(ClockId::CLOCK_MONOTONIC).map_or(0, |ts| {
        ts.tv_sec() as u64 * 1_000_000 + ts.tv_nsec() as u64 / 1000
    })
}

/// Sleep until an absolute CLOCK_MONOTONIC time (µs). Timer slack is lowered at start so
/// high rates are not rounded up to 50 µs.
fn sleep_until_us(deadline_us: u64) {
    use nix::time::{clock_nanosleep, ClockId, ClockNanosleepFlags};
    let deadline = nix::sys::time::TimeSpec::from(std::time::Duration::from_micros(deadline_us));
    // EINTR just ends the sleep early.
    let _ = clock_nanosleep(
        ClockId::CLOCK_MONOTONIC,
        ClockNanosleepFlags::TIMER_ABSTIME,
        &deadline,
    );
}

/// The timestamp of a sample read at `now`: the previous sample's plus a whole number of
/// intervals when the read is within a tenth of an interval of that, else `now`. On this kind
/// of VM the kernel wakes a sleeper 25–80 µs late, by an amount that changes from one wakeup to
/// the next; every record of a capture carries its time since the last, so that noise made
/// captures a third larger than CPython's (whose sampler spins until each deadline). A stamp is
/// never more than a tenth of an interval from its read, and never before the previous stamp.
fn stamp_us(previous: Option<u64>, now: u64, interval: u64) -> u64 {
    let Some(previous) = previous else {
        return now;
    };
    let intervals = (now.saturating_sub(previous) + interval / 2) / interval;
    let on_grid = previous + intervals.max(1) * interval;
    if on_grid.abs_diff(now) <= interval / 10 {
        on_grid
    } else {
        now.max(previous)
    }
}

/// What the loop counted.
#[derive(Default, Debug)]
struct Counts {
    samples: u64,
    errors: u64,
    thread_samples: u64,
}

struct Loop<'a> {
    args: &'a SampleArgs,
    unwinder: Unwinder,
    collector: &'a mut dyn Collector,
    symbols: Symbols,
    counts: Counts,
    /// CLOCK_MONOTONIC µs when sampling started.
    start_us: u64,
    /// The timestamp the last sample was recorded with.
    last_stamp_us: Option<u64>,
    /// Sampling ended because the target exited by itself.
    target_exited: bool,
    /// `--realtime-stats`.
    realtime: Option<RealtimeStats>,
    /// `--live`.
    live: Option<LiveView>,
    /// The live view was left with `q` or Ctrl-C.
    quit: Option<Next>,
}

impl Loop<'_> {
    /// One sample; `false` once the target has exited.
    fn sample_once(&mut self, threads: &mut Vec<ThreadSample>) -> Result<bool> {
        crate::guard::inject("sample");
        let _paused = if self.args.blocking {
            // A dying target's threads never stop: do not try.
            if !self.unwinder.target.process.is_alive() {
                return Ok(false);
            }
            Some(Paused::pause(&self.unwinder.target.process)?)
        } else {
            None
        };
        let now = monotonic_us();
        let stamp = stamp_us(self.last_stamp_us, now, self.args.interval_us);
        match self.unwinder.sample(&mut self.symbols, threads) {
            Ok(()) => {
                self.last_stamp_us = Some(stamp);
                self.counts.samples += 1;
                if let Some(r) = self.realtime.as_mut() {
                    r.sampled(now, self.counts.samples, self.counts.errors);
                }
                for t in threads.iter().filter(|t| self.args.keeps(t.status)) {
                    self.counts.thread_samples += 1;
                    let sample = Sample {
                        thread_id: t.thread_id,
                        interpreter_id: t.interpreter_id,
                        status: ThreadStatus(t.status),
                        timestamps_us: &[stamp],
                        frames: &t.frames,
                        stack: self.symbols.intern_stack(&t.frames),
                    };
                    self.collector.collect(&self.symbols, &sample);
                    if let Some(live) = self.live.as_mut() {
                        live.add(&self.symbols, &sample);
                    }
                }
                Ok(true)
            }
            Err(ReadError::Exited) => Ok(false),
            Err(e @ ReadError::Permission) => {
                Err(AttachError::from_read(self.unwinder.target.process.pid, e).into())
            }
            Err(ReadError::Fault) => {
                if !self.unwinder.target.process.is_alive() {
                    return Ok(false);
                }
                self.counts.errors += 1;
                Ok(true)
            }
        }
    }
}

/// Sample until a stop signal, the duration, or the target's exit.
fn sample_loop(lp: &mut Loop<'_>, child: &mut Option<&mut Child>) -> Result<()> {
    let interval = lp.args.interval_us;
    let start = lp.start_us;
    let end = lp.args.duration.map(|d| start + (d * 1e6) as u64);
    let mut next = start;
    let mut threads = Vec::new();
    let mut last_child_check = start;
    while !stop_requested() {
        let now = monotonic_us();
        if end.is_some_and(|e| now >= e) {
            break;
        }
        let stats = lp.live.is_some().then(|| run_stats(lp));
        if let (Some(stats), Some(live)) = (stats, lp.live.as_mut()) {
            let next = live.tick(&lp.symbols, &stats)?;
            if next != Next::Continue {
                lp.quit = Some(next);
                break;
            }
        }
        if now < next {
            sleep_until_us(next.min(end.unwrap_or(u64::MAX)));
            continue;
        }
        if !lp.sample_once(&mut threads)? {
            lp.target_exited = true;
            break;
        }
        next += interval;
        // Far behind (the machine stalled): skip ahead instead of bursting for seconds.
        if now > next + 1_000_000 {
            next = now;
        }
        if let Some(c) = child.as_mut() {
            if now - last_child_check > 10_000 {
                last_child_check = now;
                if child_exit(c)?.is_some() {
                    lp.target_exited = true;
                    break;
                }
            }
        }
    }
    Ok(())
}

/// The run's statistics so far (Tachyon's summary and stats trailer).
fn run_stats(lp: &Loop<'_>) -> RunStats {
    let interval = lp.args.interval_us;
    let elapsed = (monotonic_us() - lp.start_us) as f64 / 1e6;
    let c = &lp.counts;
    let attempts = c.samples + c.errors;
    let expected = (elapsed * 1e6 / interval as f64).floor();
    RunStats {
        duration_sec: elapsed,
        sample_rate: if elapsed > 0.0 {
            c.samples as f64 / elapsed
        } else {
            0.0
        },
        error_rate: Some(if attempts > 0 {
            c.errors as f64 * 100.0 / attempts as f64
        } else {
            0.0
        }),
        missed_samples: (expected > 0.0).then(|| (expected - attempts as f64) * 100.0 / expected),
    }
}

fn print_summary(stats: &RunStats, counts: &Counts, interval_us: u64) {
    eprintln!(
        "Captured {} samples in {:.2} seconds",
        counts.samples, stats.duration_sec
    );
    eprintln!("Sample rate: {:.2} samples/sec", stats.sample_rate);
    eprintln!("Error rate: {:.2}", stats.error_rate.unwrap_or(0.0));
    if STOP_SIGNAL.load(Ordering::SeqCst) == libc::SIGINT {
        eprintln!("Interrupted by user.");
    } else if let Some(missed) = stats.missed_samples.filter(|m| *m > 1.0) {
        let expected = (stats.duration_sec * 1e6 / interval_us as f64) as u64;
        let taken = counts.samples + counts.errors;
        eprintln!(
            "Warning: missed {} samples from the expected total of {expected} ({missed:.2}%)",
            expected.saturating_sub(taken)
        );
    }
}

/// What the options asked for that the target's Python cannot give: `<native>` frames and
/// opcodes come from 3.11's interpreter frames.
fn unavailable_options(args: &SampleArgs, (major, minor, _): (u8, u8, u8)) -> Vec<String> {
    let old = (major, minor) < (3, 11);
    [
        (args.native, "--native", "no <native> frames were recorded"),
        (args.opcodes, "--opcodes", "no opcodes were recorded"),
    ]
    .into_iter()
    .filter(|&(asked, ..)| asked && old)
    .map(|(_, option, what)| {
        format!("{option} needs Python 3.11 or newer (the target is {major}.{minor}): {what}")
    })
    .collect()
}

/// Attach (retrying while a freshly started interpreter initialises), sample, export.
/// Returns the target's own exit status when it ended by itself while being profiled.
fn profile(
    pid: i32,
    args: &SampleArgs,
    out: &OutputArgs,
    format: &FormatChoice,
    mut child: Option<&mut Child>,
    script: Option<&Path>,
) -> Result<Option<ExitStatus>> {
    install_signal_handlers();
    // Only this thread's timer slack; without it the sleeps are as precise as before.
    let _ = nix::sys::prctl::set_timerslack(1);
    let path = out.output_path(format, pid as u32);
    check_output_dir(path.as_deref())?;
    let mut target = wait_for_runtime(pid, child.as_deref_mut())?;
    if let Some(c) = child.as_deref_mut() {
        target = wait_for_program(target, script, c, args.interval_us)?;
    }
    if args.async_aware {
        crate::sampler::asyncio::check_version(&target)?;
    }
    let mut config = CollectorConfig {
        interval_us: args.interval_us,
        mode: args.mode(),
        python_version: Some(target.version),
        start_time_us: Some(monotonic_us()),
        capture_features: Some(args.capture_features()),
        provenance: Some(Arc::new(crate::provenance::collect(
            &target,
            args.interval_us,
            args.mode().name(),
        ))),
        ..Default::default()
    };
    out.fill_options(&mut config, &ReadLimits::default())?;
    // Live, the view aggregates for itself; only --save-capture keeps samples.
    let mut collector = if args.live {
        with_capture(Box::new(Nothing), &config, out)?
    } else {
        build_collector(format, &config, out)?
    };
    let (v0, v1, v2) = target.version;
    eprintln!(
        "Sampling PID {pid} (Python {v0}.{v1}.{v2}) at {:.0} Hz; Ctrl-C to stop",
        1e6 / args.interval_us as f64
    );
    let monitor = args.subprocesses.then(|| {
        let base = path
            .clone()
            .unwrap_or_else(|| PathBuf::from(format!("profile_{pid}.pstats")));
        crate::subprocesses::Monitor::start(pid, args, out, base)
    });
    let mut opts = args.unwind_options();
    if format.needs().thread_state {
        // e.g. gecko's markers show CPU and exception state whatever the mode (Tachyon: mode ALL).
        opts.cpu_state = true;
        opts.exception_state = true;
    }
    let start_us = monotonic_us();
    let mut lp = Loop {
        args,
        unwinder: Unwinder::new(target, opts),
        collector: collector.as_mut(),
        symbols: Symbols::new(),
        counts: Counts::default(),
        start_us,
        last_stamp_us: None,
        target_exited: false,
        realtime: args.realtime_stats.then(|| RealtimeStats::new(start_us)),
        live: None,
        quit: None,
    };
    if args.live {
        let header = format!(
            "PID {pid} (Python {v0}.{v1}.{v2}) · {} mode",
            config.mode.name()
        );
        // `w` writes flame graph snapshots when this build has the format.
        let snapshot = find_format("flamegraph").ok().map(|f| (f, config.clone()));
        lp.live = Some(LiveView::start(header, args.interval_us, snapshot)?);
    }
    // A failure while sampling (a bug included) ends sampling, not the profile.
    let mut sampled = crate::guard::catch("sampling", || sample_loop(&mut lp, &mut child));
    if let Some(r) = lp.realtime.as_mut() {
        r.finish();
    }
    if sampled.is_ok() && lp.quit.is_none() && lp.target_exited {
        // The program ended: the view stays until the user has read it, as 3.15's.
        let stats = run_stats(&lp);
        if let Some(live) = lp.live.as_mut() {
            match live.finish(&lp.symbols, &stats, stop_requested) {
                Ok(next) => lp.quit = Some(next),
                Err(e) => sampled = Err(e),
            }
        }
    }
    // Give the terminal back before anything is printed.
    lp.live = None;
    if lp.quit == Some(Next::Quit { interrupted: true }) {
        STOP_SIGNAL.store(libc::SIGINT, Ordering::SeqCst);
    }
    // Measured now: stopping the target and the child profilers is not sampling time.
    let stats = run_stats(&lp);
    if args.blocking {
        crate::sampler::pause::reap_traced_zombies(&lp.unwinder.target.process);
    }
    let own_exit = child.and_then(|c| stop_child(c, lp.target_exited));
    if let Some(m) = monitor {
        m.finish();
    }
    print_summary(&stats, &lp.counts, args.interval_us);
    for missing in unavailable_options(args, lp.unwinder.target.version) {
        eprintln!("Warning: {missing}");
    }
    if lp.counts.thread_samples == 0 && args.mode != ModeArg::Wall {
        eprintln!(
            "No samples were collected in {:?} mode (no thread matched it while sampling).",
            args.mode
        );
    }
    if let Some(status) = own_exit {
        report_target_exit(status);
    }
    let mut symbols = std::mem::take(&mut lp.symbols);
    symbols.freeze_stacks();
    drop(lp);
    let exported = export(
        collector.as_mut(),
        path.as_deref(),
        &symbols,
        &stats,
        Durability::Synced,
    );
    if let Err(e) = sampled {
        let kept = match (&exported, &path) {
            (Ok(()), Some(p)) => format!("what was collected is in {}", p.display()),
            (Ok(()), None) => "what was collected is printed above".to_owned(),
            (Err(x), _) => format!("and the output could not be written either: {x:#}"),
        };
        return Err(e.context(format!("sampling stopped early; {kept}")));
    }
    if exported.is_ok() && out.browser && opens_in_browser(format) {
        if let Some(p) = &path {
            open_in_browser(p);
        }
    }
    exported.map(|()| own_exit)
}

/// Say how the target ended, when that was not a clean exit.
fn report_target_exit(status: ExitStatus) {
    if status.code() != Some(0) {
        eprintln!("The target {}.", how_it_ended(status));
    }
}

/// "exited with code N" or "was killed by signal N (SIGNAME)".
fn how_it_ended(status: ExitStatus) -> String {
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("exited with code {code}"),
        (None, Some(sig)) => format!("was killed by signal {sig} ({})", signal_name(sig)),
        (None, None) => "ended".to_owned(),
    }
}

fn signal_name(sig: i32) -> String {
    nix::sys::signal::Signal::try_from(sig)
        .map_or_else(|_| format!("signal {sig}"), |s| s.as_str().to_owned())
}

/// tachyon's exit status once the output is written: 128+S if tachyon was stopped by signal
/// S, else the target's own status (128+S for a signal), else 0.
fn exit_status(own_exit: Option<ExitStatus>) -> i32 {
    let stop_signal = STOP_SIGNAL.load(Ordering::SeqCst);
    if stop_signal != 0 {
        return 128 + stop_signal;
    }
    match own_exit {
        Some(status) => status
            .code()
            .unwrap_or_else(|| 128 + status.signal().unwrap_or(0)),
        None => 0,
    }
}

/// `tachyon run` profiles the program, not the interpreter starting up (its `site`,
/// encodings and importlib frames), as CPython 3.15's `run` does: sampling begins once a
/// thread's outermost frame is the script's own code, or runpy's `_run_module_as_main`
/// (`-m`, a zip app, a directory). A start that never shows (a `sitecustomize` that runs for
/// long, an unusual launcher) is sampled from after five seconds.
fn wait_for_program(
    target: Target,
    script: Option<&Path>,
    child: &mut Child,
    interval_us: u64,
) -> Result<Target> {
    let script = script.and_then(|s| std::fs::canonicalize(s).ok());
    let is_program = |symbols: &Symbols, frame: FrameId| {
        let info = symbols.frame(frame);
        symbols.str(info.funcname) == "_run_module_as_main"
            || script.as_ref().is_some_and(|s| {
                std::fs::canonicalize(symbols.str(info.filename)).is_ok_and(|f| &f == s)
            })
    };
    // Its own unwinder and symbols: nothing seen before the start reaches the profile.
    let mut unwinder = Unwinder::new(target, UnwindOptions::default());
    let mut symbols = Symbols::new();
    let mut threads = Vec::new();
    let started = Instant::now();
    let poll = Duration::from_micros(interval_us.min(1000));
    while !stop_requested() && started.elapsed() < Duration::from_secs(5) {
        let sampled = unwinder.sample(&mut symbols, &mut threads).is_ok();
        if sampled
            && threads
                .iter()
                .filter_map(|t| t.frames.last())
                .any(|&frame| is_program(&symbols, frame))
        {
            break;
        }
        if child_exit(child)?.is_some() {
            break;
        }
        std::thread::sleep(poll);
    }
    Ok(unwinder.target)
}

fn wait_for_runtime(pid: i32, mut child: Option<&mut Child>) -> Result<Target> {
    let started = Instant::now();
    loop {
        let attempt = Target::attach(pid).and_then(|t| match t.first_interpreter() {
            Ok(Some(_)) => Ok(t),
            Ok(None) => Err(AttachError::NotPython {
                pid,
                why: format!("the Python runtime of PID {pid} is not initialised"),
            }),
            Err(e) => Err(AttachError::from_read(pid, e)),
        });
        let e = match attempt {
            Ok(t) => return Ok(t),
            Err(e) => e,
        };
        let child_gone = match child.as_deref_mut() {
            Some(c) => child_exit(c)?.map(how_it_ended),
            None => (!Process::new(pid).is_alive()).then(|| "exited".to_owned()),
        };
        if let Some(how) = child_gone {
            bail!("process {pid} {how} before it could be sampled");
        }
        // A runtime still starting up may appear; a started child gets longer to load it.
        let patience = Duration::from_secs(if child.is_some() { 10 } else { 2 });
        if !e.may_pass() || started.elapsed() > patience {
            return Err(e.into());
        }
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// Stop the target we started (SIGTERM, then SIGKILL), each wait bounded. Returns its exit
/// status when it ended on its own (`exiting`: sampling saw it go).
fn stop_child(child: &mut Child, exiting: bool) -> Option<ExitStatus> {
    let running = |c: &mut Child| matches!(child_exit(c), Ok(None));
    let wait = |c: &mut Child| {
        for _ in 0..200 {
            if !running(c) {
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    };
    // Exiting by itself: its memory is gone before its status can be collected (and its
    // threads may still be on their way out), so give it a moment rather than a signal.
    if exiting || !Process::new(child.id() as i32).is_alive() {
        wait(child);
    }
    if let Ok(Some(status)) = child_exit(child) {
        return Some(status);
    }
    let pid = nix::unistd::Pid::from_raw(child.id() as i32);
    let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
    wait(child);
    if running(child) {
        let _ = child.kill();
        wait(child);
    }
    None
}

/// `tachyon run`: start `python script.py args…` (or `-m module`) and profile it. Returns
/// the exit status (see the module comment).
pub fn run(
    python: Option<PathBuf>,
    module: bool,
    target: &str,
    target_args: &[String],
    args: &SampleArgs,
    out: &OutputArgs,
) -> Result<i32> {
    let python = python
        .or_else(|| std::env::var_os("TACHYON_PYTHON").map(PathBuf::from))
        .unwrap_or_else(|| PathBuf::from("python3"));
    let format = checked_format(args, out)?;
    if !module && !std::path::Path::new(target).exists() {
        bail!("script '{target}' not found");
    }
    let mut cmd = Command::new(&python);
    if module {
        cmd.arg("-m");
    }
    cmd.arg(target).args(target_args);
    // The live view owns the terminal: the program's output would tear it. Its stderr is
    // kept and shown afterwards (a traceback says why it ended).
    let stderr_copy = if args.live {
        let file = tempfile_for_stderr()?;
        cmd.stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(file.try_clone()?);
        Some(file)
    } else {
        None
    };
    let mut child = cmd
        .spawn()
        .with_context(|| format!("cannot start {}", python.display()))?;
    let pid = child.id() as i32;
    let script = (!module).then(|| Path::new(target));
    let result = profile(pid, args, out, &format, Some(&mut child), script);
    // Whatever happened, the program we started does not outlive us.
    stop_child(&mut child, false);
    if let Some(mut file) = stderr_copy {
        use std::io::{Read, Seek};
        let mut text = String::new();
        if file.rewind().is_ok() && file.read_to_string(&mut text).is_ok() && !text.is_empty() {
            eprint!("{text}");
        }
    }
    result.map(exit_status)
}

/// The chosen format, once everything CPython 3.15 refuses in this command line is refused
/// (before a target is started).
fn checked_format(args: &SampleArgs, out: &OutputArgs) -> Result<FormatChoice> {
    check_live(args, out)?;
    args.check_async()?;
    let format = find_format(out.format_name())?;
    args.check_with(&format)?;
    out.check(&format)?;
    Ok(format)
}

/// An unnamed file for the target's stderr while the live view runs.
fn tempfile_for_stderr() -> Result<std::fs::File> {
    let dir = std::env::temp_dir();
    let path = dir.join(format!(".tachyon-stderr-{}", std::process::id()));
    // A leftover of an earlier tachyon with the same pid; create_new never follows a link.
    let _ = std::fs::remove_file(&path);
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .open(&path)
        .with_context(|| format!("cannot create {}", path.display()))?;
    // Gone from the directory at once; the open handles keep it.
    let _ = std::fs::remove_file(&path);
    Ok(file)
}

/// `tachyon attach PID`. Returns the exit status (see the module comment).
pub fn attach(pid: i32, args: &SampleArgs, out: &OutputArgs) -> Result<i32> {
    let format = checked_format(args, out)?;
    check_pid(pid)?;
    profile(pid, args, out, &format, None, None).map(|_| exit_status(None))
}

#[cfg(test)]
mod tests {
    use super::{parse_duration, parse_rate, stamp_us};

    #[test]
    fn durations_are_finite_positive_and_at_most_a_year() {
        assert_eq!(parse_duration("2.5"), Ok(2.5));
        assert_eq!(parse_duration("31536000"), Ok(31_536_000.0));
        for bad in [
            "inf", "-inf", "nan", "1e300", "0", "-1", "31536001", "soon", "",
        ] {
            assert!(parse_duration(bad).is_err(), "{bad} accepted");
        }
    }

    #[test]
    fn rates_as_tachyon_parses_them() {
        assert_eq!(parse_rate("1khz"), Ok(1000));
        assert_eq!(parse_rate("10k"), Ok(100));
        assert_eq!(parse_rate("10KHz"), Ok(100));
        assert_eq!(parse_rate("250hz"), Ok(4000));
        assert_eq!(parse_rate("10000"), Ok(100));
        assert_eq!(parse_rate("1.5k"), Ok(666));
        assert!(parse_rate("10 khz")
            .unwrap_err()
            .contains("invalid sampling rate format"));
        assert!(parse_rate("0").unwrap_err().contains("must be positive"));
        assert!(parse_rate("2000khz").unwrap_err().contains("too high"));
        assert!(parse_rate("fast").is_err());
    }

    #[test]
    fn stamps_keep_the_sampling_grid_within_a_tenth_of_an_interval() {
        // 100 µs interval: reads 90–110 µs after the previous stamp are stamped 100 µs after it.
        assert_eq!(stamp_us(None, 5_037, 100), 5_037);
        assert_eq!(stamp_us(Some(5_037), 5_131, 100), 5_137);
        assert_eq!(stamp_us(Some(5_037), 5_147, 100), 5_137);
        // A sample missed (a failed read) keeps the grid; a wakeup far off it starts a new one.
        assert_eq!(stamp_us(Some(5_037), 5_240, 100), 5_237);
        assert_eq!(stamp_us(Some(5_037), 5_189, 100), 5_189);
        // A burst catching up right after a stamp: never before the previous stamp.
        assert_eq!(stamp_us(Some(5_137), 5_131, 100), 5_137);
        assert_eq!(stamp_us(Some(5_137), 5_149, 100), 5_149);
    }
}
