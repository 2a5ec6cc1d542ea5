//! `--blocking`: stop every thread of the target around a sample (PTRACE_SEIZE +
//! PTRACE_INTERRUPT), so the stack cannot change while it is read. Detaches on drop.
//! Nothing here may wait without a bound: a thread that is exiting (or a zombie left by a
//! killed target) never reports its stop, and the sample goes on without it.

use std::process::{Child, ExitStatus};
use std::time::{Duration, Instant};

use anyhow::{bail, Result};
use nix::errno::Errno;
use nix::sys::ptrace;
use nix::sys::signal::Signal;
use nix::sys::wait::{waitid, Id, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;

use super::process::{permission_help, tracer_of, Process};

/// How long one thread may take to stop (or, at the end, to be released) before it is
/// given up on.
const STOP_TIMEOUT: Duration = Duration::from_millis(100);

enum Stop {
    /// Stopped; with the signal it was about to receive if this is a signal-delivery stop
    /// (a tracer that detaches without passing it on would swallow the user's SIGTERM).
    Seen(Option<Signal>),
    /// Not seen to stop within the timeout: its stop (and signal) may still come.
    NotSeen,
}

pub struct Paused {
    pid: i32,
    /// Seized threads and their stops.
    threads: Vec<(Pid, Stop)>,
}

impl Paused {
    pub fn pause(process: &Process) -> Result<Paused> {
        let mut paused = Paused {
            pid: process.pid,
            threads: Vec::new(),
        };
        for tid in process.thread_ids() {
            let pid = Pid::from_raw(tid as i32);
            match ptrace::seize(pid, ptrace::Options::empty()) {
                Ok(()) => {}
                Err(Errno::ESRCH) => continue, // the thread exited meanwhile
                Err(Errno::EPERM) => match tracer_of(process.pid, tid) {
                    // Still ours from a sample whose stop came too late to detach it.
                    Some(tracer) if tracer == std::process::id() as i32 => {}
                    Some(tracer) => bail!(
                        "--blocking cannot stop thread {tid} of PID {}: it is already traced by PID {tracer} \
                         (a debugger or another profiler); stop that tracer or profile without --blocking",
                        process.pid
                    ),
                    None => bail!(permission_help(process.pid)),
                },
                Err(e) => bail!("--blocking cannot stop thread {tid}: {e}"),
            }
            let stop = match ptrace::interrupt(pid) {
                Ok(()) => {
                    wait_stopped(pid, tid as i32 == process.pid).map_or(Stop::NotSeen, Stop::Seen)
                }
                Err(_) => Stop::NotSeen,
            };
            paused.threads.push((pid, stop));
        }
        Ok(paused)
    }
}

/// Wait (bounded) for a seized, interrupted thread to stop. `Some(signal)` once stopped: the
/// signal it was about to receive when the stop is a signal-delivery stop (a tracer that
/// detaches without passing it on would swallow the user's SIGTERM); `None` if it exited or
/// did not stop in time. A tracee's stops are reported whatever the flags, and a thread that
/// exited while traced is reaped here (only its tracer can), except the main thread: for
/// `tachyon run` it is our own child, and its exit status belongs to the session, so its exit
/// is only looked at (WNOWAIT).
fn wait_stopped(tid: Pid, main_thread: bool) -> Option<Option<Signal>> {
    use WaitPidFlag as F;
    let deadline = Instant::now() + STOP_TIMEOUT;
    let status = |flags| waitid(Id::Pid(tid), flags | F::WNOHANG | F::__WALL);
    loop {
        let mut seen = status(F::WSTOPPED);
        if main_thread && matches!(seen, Ok(WaitStatus::StillAlive)) {
            seen = status(F::WEXITED | F::WNOWAIT);
        } else if !main_thread {
            seen = seen.and_then(|s| match s {
                WaitStatus::StillAlive => status(F::WEXITED),
                stop => Ok(stop),
            });
        }
        match seen {
            Ok(WaitStatus::StillAlive) if Instant::now() < deadline => {
                std::thread::sleep(Duration::from_micros(20));
            }
            Ok(WaitStatus::Stopped(_, signal)) => return Some(Some(signal)),
            // A tracee's signal-delivery stop reads as a trap with no event (waitid reports
            // every tracee stop as CLD_TRAPPED): the signal must be passed on, or a SIGTERM
            // that arrives while a thread is seized is lost and the target runs on.
            Ok(WaitStatus::PtraceEvent(_, signal, 0)) => return Some(Some(signal)),
            // PTRACE_EVENT_STOP: our interrupt, or a group stop, which is not re-sent.
            Ok(WaitStatus::PtraceEvent(..)) => return Some(None),
            _ => return None,
        }
    }
}

/// The exit status of `tachyon run`'s target once it has ended, or `None` while it runs.
/// `Child::try_wait` would not do: its main thread may still be seized (a stop that came too
/// late to be detached), and `waitpid` hands its tracer and parent that stop as if it were the
/// exit, which the child then keeps as its status. A tracee's stops are reported whatever the
/// flags, so the state is only looked at (WNOWAIT), and collected once it is an exit.
pub fn child_exit(child: &mut Child) -> std::io::Result<Option<ExitStatus>> {
    let flags = WaitPidFlag::WEXITED | WaitPidFlag::WNOHANG | WaitPidFlag::WNOWAIT;
    match waitid(Id::Pid(Pid::from_raw(child.id() as i32)), flags) {
        // Already collected (ECHILD): the child keeps the status it was collected with.
        Ok(WaitStatus::Exited(..) | WaitStatus::Signaled(..)) | Err(Errno::ECHILD) => {
            child.try_wait()
        }
        Ok(_) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// Reap the target's threads that died while we traced them: until their tracer collects them,
/// the process cannot finish exiting and its parent never gets its exit status.
pub fn reap_traced_zombies(process: &Process) {
    let tachyon = std::process::id() as i32;
    for tid in process.thread_ids() {
        if tid as i32 != process.pid && tracer_of(process.pid, tid) == Some(tachyon) {
            reap(Pid::from_raw(tid as i32));
        }
    }
}

/// Collect the exit of a traced thread (bounded).
fn reap(tid: Pid) {
    let deadline = Instant::now() + STOP_TIMEOUT;
    let flags = WaitPidFlag::WEXITED | WaitPidFlag::WNOHANG | WaitPidFlag::__WALL;
    while matches!(waitid(Id::Pid(tid), flags), Ok(WaitStatus::StillAlive))
        && Instant::now() < deadline
    {
        std::thread::sleep(Duration::from_micros(20));
    }
}

impl Drop for Paused {
    fn drop(&mut self) {
        for &(tid, ref stop) in &self.threads {
            let main_thread = tid.as_raw() == self.pid;
            // A stop not seen yet is waited for once more: its signal must be passed on.
            let pending = match stop {
                Stop::Seen(signal) => *signal,
                Stop::NotSeen => match wait_stopped(tid, main_thread) {
                    Some(signal) => signal,
                    None => continue,
                },
            };
            // A thread killed while stopped (its process got a fatal signal) cannot be
            // detached: it is exiting, and only its tracer can reap it. Unreaped, the whole
            // process would stay a zombie.
            if ptrace::detach(tid, pending).is_err() && !main_thread {
                reap(tid);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::process::ExitStatusExt;

    /// A `sleep 100` child, seized.
    fn seized_sleep() -> (std::process::Child, Pid) {
        let child = std::process::Command::new("sleep")
            .arg("100")
            .spawn()
            .expect("sleep runs");
        let pid = Pid::from_raw(child.id() as i32);
        ptrace::seize(pid, ptrace::Options::empty()).expect("a parent may trace its child");
        (child, pid)
    }

    /// A SIGTERM that a seized thread takes before our interrupt stops it is reported as
    /// its signal-delivery stop, and must reach the thread when it is let go: before, it
    /// was read as our interrupt's stop and dropped, and the target ran on.
    #[test]
    fn a_signal_taken_while_seized_is_passed_on() {
        let (mut child, pid) = seized_sleep();
        nix::sys::signal::kill(pid, Signal::SIGTERM).expect("signal sent");
        let stop = (0..50).find_map(|_| wait_stopped(pid, false));
        assert_eq!(stop, Some(Some(Signal::SIGTERM)));
        ptrace::detach(pid, Signal::SIGTERM).expect("detached");
        let status = child.wait().expect("sleep ends");
        assert_eq!(status.signal(), Some(libc::SIGTERM));
    }

    /// A seized child's stop is not its exit: `child_exit` leaves the stop for the pause to
    /// collect and gives the real status once the child is gone. (`Child::try_wait` took the
    /// stop and kept it as the exit status.)
    #[test]
    fn a_stop_is_not_an_exit() {
        let (mut child, pid) = seized_sleep();
        ptrace::interrupt(pid).expect("interrupted");
        std::thread::sleep(Duration::from_millis(50));
        assert!(child_exit(&mut child).expect("waitable").is_none());
        assert_eq!(
            wait_stopped(pid, true),
            Some(None),
            "the stop is still ours"
        );
        ptrace::detach(pid, None).expect("detached");
        child.kill().expect("killed");
        let status = (0..200)
            .find_map(|_| {
                std::thread::sleep(Duration::from_millis(10));
                child_exit(&mut child).expect("waitable")
            })
            .expect("sleep ends");
        assert_eq!(status.signal(), Some(libc::SIGKILL));
        assert_eq!(child.wait().expect("kept").signal(), Some(libc::SIGKILL));
    }
}
