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
