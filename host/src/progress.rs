//! A Tachyon-style progress bar on stderr, drawn only when stderr is a terminal.

use std::io::{IsTerminal, Write};

const WIDTH: usize = 40;

pub struct ProgressBar {
    enabled: bool,
    drawn: bool,
}

impl ProgressBar {
    pub fn new() -> Self {
        ProgressBar {
            enabled: std::io::stderr().is_terminal(),
            drawn: false,
        }
    }

    pub fn update(&mut self, done: u64, total: u64) {
        if !self.enabled || total == 0 {
            return;
        }
        let frac = (done as f64 / total as f64).clamp(0.0, 1.0);
        let filled = (frac * WIDTH as f64) as usize;
        let bar: String = "█".repeat(filled) + &"░".repeat(WIDTH - filled);
        eprint!("\r  [{bar}] {:5.1}% ({done}/{total})", frac * 100.0);
        let _ = std::io::stderr().flush();
        self.drawn = true;
    }

    pub fn finish(&mut self) {
        if self.drawn {
            eprintln!();
            self.drawn = false;
        }
    }
}

impl Default for ProgressBar {
    fn default() -> Self {
        Self::new()
    }
}

/// `--realtime-stats`: once a second, the sampling rate over the last 100 samples (mean, min
/// and max, in Hz and µs per sample), samples taken and the error rate, as CPython 3.15's
/// `_print_realtime_stats`, plus errors. Rewritten in place on a terminal (stderr), one plain
/// line a second otherwise.
pub struct RealtimeStats {
    /// Rate (Hz) between consecutive samples, the last 100.
    rates: std::collections::VecDeque<f64>,
    last_sample_us: Option<u64>,
    last_print_us: u64,
    terminal: bool,
    drawn: bool,
}

impl RealtimeStats {
    const WINDOW: usize = 100;
    const EVERY_US: u64 = 1_000_000;

    pub fn new(start_us: u64) -> Self {
        RealtimeStats {
            rates: std::collections::VecDeque::with_capacity(Self::WINDOW),
            last_sample_us: None,
            last_print_us: start_us,
            terminal: std::io::stderr().is_terminal(),
            drawn: false,
        }
    }

    /// A sample was taken at `now_us`; `samples` and `errors` so far.
    pub fn sampled(&mut self, now_us: u64, samples: u64, errors: u64) {
        if let Some(last) = self.last_sample_us {
            let gap = now_us.saturating_sub(last).max(1) as f64 / 1e6;
            if self.rates.len() == Self::WINDOW {
                self.rates.pop_front();
            }
            self.rates.push_back(1.0 / gap);
        }
        self.last_sample_us = Some(now_us);
        if now_us.saturating_sub(self.last_print_us) >= Self::EVERY_US && self.rates.len() >= 2 {
            self.last_print_us = now_us;
            self.print(samples, errors);
        }
    }

    fn print(&mut self, samples: u64, errors: u64) {
        let n = self.rates.len() as f64;
        let mean = self.rates.iter().sum::<f64>() / n;
        let min = self.rates.iter().copied().fold(f64::INFINITY, f64::min);
        let max = self.rates.iter().copied().fold(0.0, f64::max);
        let colors = self.terminal && std::env::var_os("NO_COLOR").is_none();
        let c = |code| tachyon_plugin_api::ansi(colors, code);
        let (blue, yellow, green, red, cyan, magenta, reset) = (
            c("\x1b[1;34m"),
            c("\x1b[33m"),
            c("\x1b[32m"),
            c("\x1b[31m"),
            c("\x1b[36m"),
            c("\x1b[35m"),
            c("\x1b[0m"),
        );
        let attempts = samples + errors;
        let error_pct = if attempts > 0 {
            errors as f64 * 100.0 / attempts as f64
        } else {
            0.0
        };
        let line = format!(
            "{blue}Stats:{reset} {yellow}{mean:.1}Hz ({:.1}µs){reset} {green}Min: {min:.1}Hz{reset} {red}Max: {max:.1}Hz{reset} {cyan}N={samples}{reset} {magenta}Errors: {error_pct:.2}%{reset}",
            1e6 / mean
        );
        if self.terminal {
            eprint!("\r\x1b[K{line}");
            let _ = std::io::stderr().flush();
            self.drawn = true;
        } else {
            eprintln!("{line}");
        }
    }

    /// End the rewritten line before other output.
    pub fn finish(&mut self) {
        if self.drawn {
            eprintln!();
            self.drawn = false;
        }
    }
}
