//! Where a capture came from, recorded in it (tachyon's provenance block in `.bin`) so two
//! sets of runs can be checked for comparability and a report can say what was compared:
//! the command line, the Python and its binary, sampling rate and mode, host, CPU count, wall
//! start time and, when the target runs in a git work tree, its commit.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::{json, Value};

use crate::sampler::Target;

/// Longest a `git rev-parse` may take before the commit is left out.
const GIT_TIMEOUT: Duration = Duration::from_secs(2);

pub fn collect(target: &Target, interval_us: u64, mode: &str) -> Value {
    let (major, minor, micro) = target.version;
    let cwd = std::fs::read_link(format!("/proc/{}/cwd", target.process.pid)).ok();
    json!({
        "tachyon": env!("CARGO_PKG_VERSION"),
        "command": std::env::args().collect::<Vec<_>>().join(" "),
        "python": format!("{major}.{minor}.{micro}"),
        "python_binary": target.binary,
        "rate_hz": (1e6 / interval_us.max(1) as f64).round(),
        "mode": mode,
        "host": nix::unistd::gethostname().ok().and_then(|h| h.into_string().ok()),
        "cpus": std::thread::available_parallelism().map_or(0, std::num::NonZero::get),
        "started": started_utc(),
        "git_commit": cwd.as_deref().and_then(git_commit),
    })
}

/// Now as `YYYY-MM-DDTHH:MM:SSZ`.
fn started_utc() -> String {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let (days, rest) = (secs / 86_400, secs % 86_400);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rest / 3600,
        rest / 60 % 60,
        rest % 60
    )
}

/// The commit checked out where the target runs, if that is a git work tree.
fn git_commit(dir: &std::path::Path) -> Option<String> {
    let mut child = Command::new("git")
        .args(["rev-parse", "HEAD"])
        .current_dir(dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .ok()?;
    let started = Instant::now();
    loop {
        match child.try_wait() {
            Ok(Some(status)) if status.success() => break,
            Ok(None) if started.elapsed() < GIT_TIMEOUT => {
                std::thread::sleep(Duration::from_millis(5))
            }
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                return None;
            }
        }
    }
    let mut text = String::new();
    std::io::Read::read_to_string(&mut child.stdout.take()?, &mut text).ok()?;
    let commit = text.trim();
    (commit.len() == 40 && commit.bytes().all(|b| b.is_ascii_hexdigit())).then(|| commit.to_owned())
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_start_time_is_an_iso_date() {
        let t = super::started_utc();
        assert_eq!(t.len(), 20, "{t}");
        assert!(
            t.starts_with("20") && t.ends_with('Z') && &t[10..11] == "T",
            "{t}"
        );
    }
}
