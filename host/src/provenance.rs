//! Where a capture came from, recorded in it (tachyon's provenance block in `.bin`) so two
//! sets of runs can be checked for comparability and a report can say what was compared:
//! the command line, the Python and its binary, sampling rate and mode, host, CPU count, wall
//! start time and, when the target runs in a git work tree, its commit.

use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::{json, Value};

use crate::sampler::Target;

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

/// The commit checked out where the target runs, if that is in a git work tree: read from
/// the repository's files (`HEAD`, then the loose or packed ref it names), so recording it
/// costs no process and no wait before sampling starts.
fn git_commit(dir: &Path) -> Option<String> {
    let git_dir = dir.ancestors().find_map(|d| {
        let dot_git = d.join(".git");
        if dot_git.is_dir() {
            return Some(dot_git);
        }
        // A linked work tree or submodule: `.git` is a file naming the real directory.
        let text = std::fs::read_to_string(&dot_git).ok()?;
        Some(d.join(text.strip_prefix("gitdir:")?.trim()))
    })?;
    let head = std::fs::read_to_string(git_dir.join("HEAD")).ok()?;
    let Some(reference) = head.trim().strip_prefix("ref:").map(str::trim) else {
        return is_commit(head.trim()).then(|| head.trim().to_owned());
    };
    // Branches of a linked work tree live in the main repository (`commondir`).
    let common = std::fs::read_to_string(git_dir.join("commondir"))
        .map_or_else(|_| git_dir.clone(), |c| git_dir.join(c.trim()));
    [&git_dir, &common].iter().find_map(|d| {
        let loose = std::fs::read_to_string(d.join(reference)).ok();
        let packed = || {
            std::fs::read_to_string(d.join("packed-refs"))
                .ok()?
                .lines()
                .find_map(|l| {
                    l.strip_suffix(reference)?
                        .strip_suffix(' ')
                        .map(str::to_owned)
                })
        };
        loose
            .map(|l| l.trim().to_owned())
            .or_else(packed)
            .filter(|c| is_commit(c))
    })
}

fn is_commit(text: &str) -> bool {
    text.len() == 40 && text.bytes().all(|b| b.is_ascii_hexdigit())
}

#[cfg(test)]
mod tests {
    /// The commit read from the repository's files is the one git itself reports.
    #[test]
    fn the_commit_is_what_git_says() {
        let here = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
        let git = std::process::Command::new("git")
            .args(["rev-parse", "HEAD"])
            .current_dir(here)
            .output()
            .expect("git runs");
        assert!(
            git.status.success(),
            "the project is tested from a git clone"
        );
        let want = String::from_utf8(git.stdout).unwrap().trim().to_owned();
        assert_eq!(super::git_commit(here), Some(want));
        assert_eq!(super::git_commit(std::path::Path::new("/proc")), None);
    }

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
