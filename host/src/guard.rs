//! Panics become errors. A bug in sampling or in a format must cost one `tachyon: error:`
//! line and never the profile: sampling stops, what was collected is still exported, and the
//! panic's message and location end up in the error instead of a backtrace on stderr.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock};

use anyhow::{anyhow, Result};

/// Message and location of the last panic, recorded by the hook.
static LAST_PANIC: Mutex<Option<String>> = Mutex::new(None);

/// Replace the default hook (which prints to stderr) with one that only records the panic.
pub fn install_panic_hook() {
    std::panic::set_hook(Box::new(|info| {
        let message = info
            .payload()
            .downcast_ref::<&str>()
            .map(std::string::ToString::to_string)
            .or_else(|| info.payload().downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "unknown panic".to_owned());
        let location = info
            .location()
            .map(|l| format!(" at {}:{}", l.file(), l.line()))
            .unwrap_or_default();
        if let Ok(mut last) = LAST_PANIC.lock() {
            *last = Some(format!("{message}{location}"));
        }
    }));
}

/// Run `f`; a panic inside it becomes an error naming `what` and the panic.
pub fn catch<T>(what: &str, f: impl FnOnce() -> Result<T>) -> Result<T> {
    if let Ok(result) = catch_unwind(AssertUnwindSafe(f)) {
        result
    } else {
        let detail = LAST_PANIC
            .lock()
            .ok()
            .and_then(|mut last| last.take())
            .unwrap_or_else(|| "unknown panic".to_owned());
        Err(anyhow!(
            "internal error in {what} (a tachyon bug, please report it): {detail}"
        ))
    }
}

/// A fault injected by the test suite through `TACHYON_FAULT=<point>[:<n>]` (a panic on the
/// n-th pass, default the first), to prove that the failure paths keep the profile. Points:
/// `sample` (while sampling), `export` (while exporting).
pub fn inject(point: &str) {
    static FAULT: OnceLock<Option<(String, u64)>> = OnceLock::new();
    static PASSES: AtomicU64 = AtomicU64::new(0);
    let fault = FAULT.get_or_init(|| {
        let spec = std::env::var("TACHYON_FAULT").ok()?;
        let (name, nth) = spec.split_once(':').unwrap_or((&spec, "1"));
        Some((name.to_owned(), nth.parse().ok()?))
    });
    if let Some((name, nth)) = fault {
        if name == point && PASSES.fetch_add(1, Ordering::Relaxed) + 1 == *nth {
            panic!("fault injected at {point} (TACHYON_FAULT)");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_panic_becomes_an_error_with_its_message() {
        install_panic_hook();
        let err = catch("the test", || -> Result<()> { panic!("boom {}", 7) }).unwrap_err();
        let text = err.to_string();
        assert!(text.contains("internal error in the test"), "{text}");
        assert!(
            text.contains("boom 7") && text.contains("guard.rs"),
            "{text}"
        );
        assert_eq!(catch("ok", || Ok(5)).unwrap(), 5);
    }
}
