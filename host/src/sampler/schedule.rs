//! Whether a thread has run since a moment, from what the kernel tells of its scheduling in
//! procfs (nothing is attached to the thread: the target pays nothing): how many times it has
//! been put on a CPU (`/proc/PID/task/TID/schedstat`, third field) and its state (`stat`). A
//! thread asleep when its state was read, and put on no CPU since its count was read just
//! before that, has not run since: not one instruction.

use std::fs::File;
use std::os::unix::fs::FileExt;

use super::process::stat_state;

pub struct ThreadSchedule {
    schedstat: File,
    stat: File,
}

impl ThreadSchedule {
    pub fn open(pid: i32, tid: i32) -> Option<ThreadSchedule> {
        let open = |name: &str| File::open(format!("/proc/{pid}/task/{tid}/{name}")).ok();
        let schedule = ThreadSchedule {
            schedstat: open("schedstat")?,
            stat: open("stat")?,
        };
        // A kernel that does not keep the count shows 0, even for a thread that has run.
        (schedule.times_run()? > 0).then_some(schedule)
    }

    /// How many times the thread has been put on a CPU.
    pub fn times_run(&self) -> Option<u64> {
        let mut buf = [0u8; 96];
        let n = self.schedstat.read_at(&mut buf, 0).ok()?;
        let text = std::str::from_utf8(&buf[..n]).ok()?;
        text.split_ascii_whitespace().nth(2)?.parse().ok()
    }

    /// Whether the thread cannot run until something wakes it: asleep, waiting for a disk,
    /// or stopped.
    pub fn asleep(&self) -> Option<bool> {
        stat_state(&self.stat).map(|state| matches!(state, b'S' | b'D' | b'T' | b't'))
    }
}

/// A thread found running has its schedule read again only after this many samples at most:
/// it mostly runs on, and a read of its state costs a few microseconds (1 % of a flat-out
/// sample's cost with 63).
const MAX_WAIT: u32 = 255;

/// Whether a sample of a thread can be the last one again.
#[derive(Default)]
pub struct SleepWatch {
    /// The thread's times run, read before the last sample's reads, when it was asleep then
    /// and that sample succeeded.
    asleep_at: Option<u64>,
    /// The same for the sample under way.
    pending: Option<u64>,
    /// Samples to take before the schedule is read again, and the wait set after the next
    /// read that finds the thread running (doubling while it keeps running).
    wait: u32,
    backoff: u32,
}

impl SleepWatch {
    /// Before a sample's reads: whether the thread has not run since the last sample's reads
    /// began (the sample is the last one again). `times_run` and `asleep` read the thread's
    /// schedule, in that order, the state only when the sample is to be read.
    pub fn unchanged(
        &mut self,
        times_run: impl FnOnce() -> Option<u64>,
        asleep: impl FnOnce() -> Option<bool>,
    ) -> bool {
        self.pending = None;
        if self.wait > 0 {
            self.wait -= 1;
            return false;
        }
        let Some(times) = times_run() else {
            return false;
        };
        if self.asleep_at == Some(times) {
            return true;
        }
        match asleep() {
            Some(true) => {
                self.pending = Some(times);
                self.backoff = 0;
            }
            Some(false) => {
                self.backoff = (self.backoff * 2 + 1).min(MAX_WAIT);
                self.wait = self.backoff;
            }
            None => {}
        }
        false
    }

    /// After a sample that was read (`unchanged` said no): whether it succeeded.
    pub fn sampled(&mut self, ok: bool) {
        self.asleep_at = self.pending.take().filter(|_| ok);
    }
}

#[cfg(test)]
mod tests {
    use super::{SleepWatch, ThreadSchedule, MAX_WAIT};
    use std::sync::mpsc;
    use std::time::Duration;

    /// A thread of this process: asleep with its count standing still while it waits, and
    /// counted again once it has run.
    #[test]
    fn a_waiting_thread_is_asleep_and_its_count_moves_when_it_runs() {
        let (tid_tx, tid_rx) = mpsc::channel();
        let (go_tx, go_rx) = mpsc::channel::<()>();
        let (done_tx, done_rx) = mpsc::channel();
        let worker = std::thread::spawn(move || {
            tid_tx.send(nix::unistd::gettid().as_raw()).unwrap();
            go_rx.recv().unwrap();
            done_tx.send(()).unwrap();
            go_rx.recv().unwrap();
        });
        let tid = tid_rx.recv().unwrap();
        let schedule = ThreadSchedule::open(std::process::id() as i32, tid).expect("schedstat");
        // Once it has reached its wait (a loaded machine may take a while to run it there).
        let waiting = (0..250).find_map(|_| {
            let before = schedule.times_run().unwrap();
            let asleep = schedule.asleep().unwrap();
            std::thread::sleep(Duration::from_millis(20));
            (asleep && schedule.times_run().unwrap() == before).then_some(before)
        });
        let before = waiting.expect("a waiting thread was never asleep with its count still");
        go_tx.send(()).unwrap();
        done_rx.recv().unwrap();
        assert!(schedule.times_run().unwrap() > before, "it ran");
        go_tx.send(()).unwrap();
        worker.join().unwrap();
    }

    /// Samples of a thread whose count and state are `schedule(sample)`: per sample, whether
    /// it was kept from the last one; and the schedule reads made (count and state each).
    fn watched(samples: u64, schedule: impl Fn(u64) -> (u64, bool)) -> (Vec<bool>, usize) {
        let mut watch = SleepWatch::default();
        let reads = std::cell::Cell::new(0);
        fn read<T>(reads: &std::cell::Cell<usize>, value: T) -> Option<T> {
            reads.set(reads.get() + 1);
            Some(value)
        }
        let kept = (0..samples)
            .map(|sample| {
                let (times, asleep) = schedule(sample);
                let unchanged = watch.unchanged(|| read(&reads, times), || read(&reads, asleep));
                if !unchanged {
                    watch.sampled(true);
                }
                unchanged
            })
            .collect();
        (kept, reads.get())
    }

    #[test]
    fn a_thread_asleep_keeps_its_sample_and_one_running_is_rarely_asked() {
        // Asleep throughout: every sample after the first is kept.
        let (kept, _) = watched(1000, |_| (5, true));
        assert!(!kept[0] && kept[1..].iter().all(|&k| k));
        // Running throughout: nothing kept, and its schedule read (count and state) once in
        // MAX_WAIT + 1 samples once the wait has grown (after 8 reads).
        let (kept, reads) = watched(10_000, |sample| (sample, false));
        assert!(kept.iter().all(|&k| !k));
        let most = 2 * (10_000 / (MAX_WAIT as usize + 1) + 8);
        assert!(reads <= most, "{reads} reads");
        // Ready to run or running with the same count (not yet put on a CPU again): read.
        let (kept, _) = watched(100, |_| (5, false));
        assert!(kept.iter().all(|&k| !k));
        // Running, then asleep from sample 500: kept again within a wait.
        let (kept, _) = watched(1000, |sample| (sample.min(500), sample >= 500));
        assert!(kept[..=500].iter().all(|&k| !k));
        let first_kept = kept.iter().position(|&k| k).unwrap();
        assert!(first_kept <= 500 + MAX_WAIT as usize + 2, "{first_kept}");
        assert!(kept[first_kept..].iter().all(|&k| k));
        // Woken now and then: each sample after a wakeup is read, the next kept.
        let (kept, _) = watched(100, |sample| (sample / 10, true));
        for (sample, &k) in kept.iter().enumerate() {
            assert_eq!(k, sample % 10 != 0, "{sample}");
        }
    }
}
