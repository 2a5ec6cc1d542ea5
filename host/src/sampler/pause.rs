//! `--blocking`: stop every thread of the target around a sample (PTRACE_SEIZE +
//! PTRACE_INTERRUPT), so the stack cannot change while it is read. Detaches on drop.

use anyhow::{Context, Result};
use nix::sys::ptrace;
use nix::sys::wait::{waitpid, WaitPidFlag};
use nix::unistd::Pid;

use super::process::Process;

pub struct Paused {
    threads: Vec<Pid>,
}

impl Paused {
    pub fn pause(process: &Process) -> Result<Paused> {
        let mut paused = Paused {
            threads: Vec::new(),
        };
        for tid in process.thread_ids() {
            let pid = Pid::from_raw(tid as i32);
            if ptrace::seize(pid, ptrace::Options::empty()).is_err() {
                continue; // the thread exited meanwhile
            }
            paused.threads.push(pid);
            ptrace::interrupt(pid).with_context(|| format!("cannot interrupt thread {tid}"))?;
            waitpid(pid, Some(WaitPidFlag::__WALL))
                .with_context(|| format!("cannot stop thread {tid}"))?;
        }
        Ok(paused)
    }
}

impl Drop for Paused {
    fn drop(&mut self) {
        for &pid in &self.threads {
            let _ = ptrace::detach(pid, None);
        }
    }
}
