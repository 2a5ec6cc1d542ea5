//! `--subprocesses`: every Python descendant of the target gets its own `tachyon attach`,
//! writing `BASE_{pid}.EXT` next to the parent's output (Tachyon's naming). A child profiler
//! gets the parent's options whole (serialized, so none is lost) and its errors and warnings
//! reach the user prefixed with the child's PID.

use std::collections::HashSet;
use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::output::OutputArgs;
use crate::sampler::Target;
use crate::session::SampleArgs;

/// What a child profiler inherits (`tachyon attach PID --inherit-options JSON`).
#[derive(Serialize, Deserialize)]
pub struct ChildOptions {
    pub sample: SampleArgs,
    pub output: OutputArgs,
    pub plugins: Vec<PathBuf>,
    pub plugin_timeout: f64,
}

impl ChildOptions {
    fn for_child(sample: &SampleArgs, output: &OutputArgs, path: PathBuf) -> ChildOptions {
        ChildOptions {
            // The parent already watches every descendant.
            sample: SampleArgs {
                subprocesses: false,
                realtime_stats: false,
                ..sample.clone()
            },
            // Only the main profiler opens a browser, as CPython's.
            output: OutputArgs {
                output: Some(path),
                browser: false,
                ..output.clone()
            },
            plugins: crate::plugins::loaded()
                .iter()
                .map(|p| p.path.clone())
                .collect(),
            plugin_timeout: crate::plugins::timeout().as_secs_f64(),
        }
    }
}

/// Pass a child profiler's errors and warnings through, prefixed with the child's PID.
fn forward_errors(pid: i32, child: &mut Child) {
    let Some(stderr) = child.stderr.take() else {
        return;
    };
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stderr)
            .lines()
            .map_while(Result::ok)
        {
            if line.starts_with("tachyon: error:") || line.starts_with("Warning") {
                eprintln!("[child {pid}] {line}");
            }
        }
    });
}

/// Most child profilers at once, as Tachyon.
const MAX_CHILDREN: usize = 100;
const POLL: Duration = Duration::from_millis(100);

/// All descendants of `root` (not `root` itself), from /proc's parent links.
pub fn descendants(root: i32) -> Vec<i32> {
    let mut parent_of = Vec::new();
    if let Ok(dir) = std::fs::read_dir("/proc") {
        for entry in dir.flatten() {
            let Some(pid) = entry
                .file_name()
                .to_str()
                .and_then(|s| s.parse::<i32>().ok())
            else {
                continue;
            };
            let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
                continue;
            };
            // Fields after the last ')': state, ppid, ...
            let ppid = stat
                .rsplit(')')
                .next()
                .and_then(|rest| rest.split_whitespace().nth(1))
                .and_then(|p| p.parse::<i32>().ok());
            if let Some(ppid) = ppid {
                parent_of.push((pid, ppid));
            }
        }
    }
    let mut found = vec![root];
    let mut i = 0;
    while i < found.len() {
        let parent = found[i];
        found.extend(
            parent_of
                .iter()
                .filter(|(_, pp)| *pp == parent)
                .map(|(p, _)| *p),
        );
        i += 1;
    }
    found.remove(0);
    found
}

/// `out.bin` -> `out_{pid}.bin`; no extension -> `out_{pid}`.
pub fn child_output(base: &Path, pid: i32) -> PathBuf {
    match (base.file_stem(), base.extension()) {
        (Some(stem), Some(ext)) => base.with_file_name(format!(
            "{}_{pid}.{}",
            stem.to_string_lossy(),
            ext.to_string_lossy()
        )),
        _ => PathBuf::from(format!("{}_{pid}", base.display())),
    }
}

pub struct Monitor {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
    children: Arc<Mutex<Vec<Child>>>,
}

impl Monitor {
    /// Watch `root`'s descendants; each child profiler gets `sample` and `out`, writing next to
    /// `output`, the parent's output path.
    pub fn start(root: i32, sample: &SampleArgs, out: &OutputArgs, output: PathBuf) -> Monitor {
        let (sample, out) = (sample.clone(), out.clone());
        let stop = Arc::new(AtomicBool::new(false));
        let children = Arc::new(Mutex::new(Vec::new()));
        let (stop2, children2) = (stop.clone(), children.clone());
        let thread = std::thread::spawn(move || {
            let exe = std::env::current_exe().unwrap_or_else(|_| PathBuf::from("tachyon"));
            let mut seen: HashSet<i32> = HashSet::new();
            while !stop2.load(Ordering::SeqCst) {
                for pid in descendants(root) {
                    if seen.contains(&pid) || Target::attach(pid).is_err() {
                        continue; // not (yet) a Python process: look again next time
                    }
                    seen.insert(pid);
                    let mut running = children2.lock().unwrap();
                    if running.len() >= MAX_CHILDREN {
                        eprintln!("Warning: Max child profilers ({MAX_CHILDREN}) reached, skipping PID {pid}");
                        continue;
                    }
                    let options =
                        ChildOptions::for_child(&sample, &out, child_output(&output, pid));
                    let Ok(json) = serde_json::to_string(&options) else {
                        continue;
                    };
                    let spawned = Command::new(&exe)
                        .args(["attach", &pid.to_string(), "--inherit-options", &json])
                        // The plugins are named explicitly: do not load them twice.
                        .env_remove("TACHYON_PLUGIN_PATH")
                        .stdin(Stdio::null())
                        .stdout(Stdio::null())
                        .stderr(Stdio::piped())
                        .spawn();
                    match spawned {
                        Ok(mut child) => {
                            eprintln!("Started profiler for child process {pid}");
                            forward_errors(pid, &mut child);
                            running.push(child);
                        }
                        Err(e) => eprintln!(
                            "Warning: cannot start a profiler for child process {pid}: {e}"
                        ),
                    }
                }
                std::thread::sleep(POLL);
            }
        });
        Monitor {
            stop,
            thread: Some(thread),
            children,
        }
    }

    /// Stop watching and wait (up to 30 s) for the child profilers to write their outputs.
    pub fn finish(mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        let mut children = self.children.lock().unwrap();
        if !children.is_empty() {
            eprintln!(
                "Waiting for {} child profiler(s) to complete...",
                children.len()
            );
        }
        let deadline = Instant::now() + Duration::from_secs(30);
        for child in children.iter_mut() {
            while Instant::now() < deadline && matches!(child.try_wait(), Ok(None)) {
                std::thread::sleep(Duration::from_millis(20));
            }
            if matches!(child.try_wait(), Ok(None)) {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(child.id() as i32),
                    nix::sys::signal::Signal::SIGINT,
                );
                let _ = child.wait();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn child_outputs_are_named_like_tachyon() {
        assert_eq!(
            child_output(Path::new("out/prof.bin"), 42),
            PathBuf::from("out/prof_42.bin")
        );
        assert_eq!(
            child_output(Path::new("heatmap_7"), 42),
            PathBuf::from("heatmap_7_42")
        );
    }

    #[test]
    fn finds_own_children() {
        let mut child = Command::new("sleep").arg("5").spawn().unwrap();
        let found = descendants(std::process::id() as i32);
        child.kill().unwrap();
        child.wait().unwrap();
        assert!(found.contains(&(child.id() as i32)));
    }
}
