//! A whole profile held in memory, aggregated by (thread, stack, status): what the host hands
//! to differential collectors as the baseline.

use crate::aggregate::{entry_hash, StackCounts};
use crate::collector::{Collector, ExportContext, RunStats};
use crate::hash::{FxHashMap, Slots};
use crate::model::{FrameId, FrameInfo, Mode, Sample, Symbols, ThreadStatus};
use crate::stacks::{StackId, StackTable};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WeightedStack {
    pub thread_id: u64,
    pub interpreter_id: u32,
    pub status: ThreadStatus,
    /// In the profile's [`Symbols::stacks`].
    pub stack: StackId,
    pub weight: u64,
}

#[derive(Clone, Debug, Default)]
pub struct Profile {
    pub symbols: Symbols,
    /// In order of first appearance.
    pub stacks: Vec<WeightedStack>,
    pub interval_us: u64,
    pub mode: Option<Mode>,
    pub stats: RunStats,
    /// Version of the profiled Python, when known.
    pub python_version: Option<(u8, u8, u8)>,
    /// Capture-feature bits (as [`crate::CollectorConfig::capture_features`]), when known.
    pub capture_features: Option<u8>,
    /// Every sample in arrival order, when it was kept ([`ProfileBuilder::with_timeline`]).
    pub timeline: Option<Timeline>,
}

/// Each sample's stack (an index into [`Profile::stacks`]) and CLOCK_MONOTONIC time, in
/// arrival order.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Timeline {
    pub stack: Vec<u32>,
    pub time_us: Vec<u64>,
}

impl Profile {
    /// Several profiles as one (a set of runs pooled): their stacks re-interned into one
    /// symbol table and summed; interval, mode and Python version are the first's.
    #[must_use]
    pub fn pool(profiles: &[&Profile]) -> Profile {
        let mut symbols = Symbols::default();
        let mut index: FxHashMap<(u64, u32, u8, StackId), usize> = FxHashMap::default();
        let mut stacks: Vec<WeightedStack> = Vec::new();
        let mut duration = 0.0;
        for p in profiles {
            let mut mapped: FxHashMap<FrameId, FrameId> = FxHashMap::default();
            for s in &p.stacks {
                let frames: Vec<FrameId> = p
                    .symbols
                    .stacks()
                    .frames(s.stack)
                    .into_iter()
                    .map(|id| {
                        *mapped.entry(id).or_insert_with(|| {
                            let f = p.symbols.frame(id).clone();
                            let filename = symbols.intern_str(p.symbols.str(f.filename));
                            let funcname = symbols.intern_str(p.symbols.str(f.funcname));
                            symbols.intern_frame(FrameInfo {
                                filename,
                                funcname,
                                ..f
                            })
                        })
                    })
                    .collect();
                let stack = symbols.intern_stack(&frames);
                let key = (s.thread_id, s.interpreter_id, s.status.0, stack);
                match index.get(&key) {
                    Some(&i) => stacks[i].weight += s.weight,
                    None => {
                        index.insert(key, stacks.len());
                        stacks.push(WeightedStack { stack, ..*s });
                    }
                }
            }
            duration += p.stats.duration_sec;
        }
        let first = profiles.first();
        let total: u64 = stacks.iter().map(|s| s.weight).sum();
        Profile {
            symbols,
            stacks,
            interval_us: first.map_or(1000, |p| p.interval_us),
            mode: first.and_then(|p| p.mode),
            stats: RunStats {
                duration_sec: duration,
                sample_rate: if duration > 0.0 {
                    total as f64 / duration
                } else {
                    0.0
                },
                error_rate: None,
                missed_samples: None,
            },
            python_version: first.and_then(|p| p.python_version),
            capture_features: first.and_then(|p| p.capture_features),
            timeline: None,
        }
    }

    #[must_use]
    pub fn total_samples(&self) -> u64 {
        self.stacks.iter().map(|s| s.weight).sum()
    }

    /// The profile's samples aggregated as a collector would have aggregated them.
    #[must_use]
    pub fn counts(&self) -> StackCounts {
        let mut counts = StackCounts::default();
        for stack in &self.stacks {
            counts.add_weighted(stack.thread_id, stack.stack, stack.weight);
        }
        counts
    }

    /// Feed the samples to a collector: with a timeline each at its own time, in arrival
    /// order; without, every stack with synthetic timestamps one interval apart.
    pub fn replay_into(&self, collector: &mut dyn Collector) {
        let mut frames = Vec::new();
        if let Some(timeline) = &self.timeline {
            // Consecutive samples of one stack go as one batch, as the sampler sends them.
            let mut at = 0;
            while at < timeline.stack.len() {
                let index = timeline.stack[at];
                let run = timeline.stack[at..]
                    .iter()
                    .take_while(|&&s| s == index)
                    .count();
                if let Some(stack) = self.stacks.get(index as usize) {
                    self.symbols.stacks().frames_into(stack.stack, &mut frames);
                    collector.collect(
                        &self.symbols,
                        &stack.sample(&timeline.time_us[at..at + run], &frames),
                    );
                }
                at += run;
            }
            return;
        }
        let mut timestamps = Vec::new();
        let mut t = 0u64;
        let mut walk = self.symbols.stacks().walk(&self.stacks, |s| s.stack);
        while let Some((at, stack, frames)) = walk.next_stack() {
            // Counting a stack misses the cache when there are many: started some stacks ahead.
            if let Some(ahead) = self.stacks.get(at + COLLECT_AHEAD) {
                collector.prefetch(&self.symbols, ahead.thread_id, ahead.stack);
            }
            timestamps.clear();
            for _ in 0..stack.weight {
                t += self.interval_us;
                timestamps.push(t);
            }
            collector.collect(&self.symbols, &stack.sample(&timestamps, frames));
        }
    }
}

/// How many stacks ahead [`Profile::replay_into`] gives the collector its prefetch hint.
const COLLECT_AHEAD: usize = 8;

impl WeightedStack {
    /// This stack (whose `frames` are given) as a batch of samples taken at `timestamps_us`.
    fn sample<'a>(&self, timestamps_us: &'a [u64], frames: &'a [FrameId]) -> Sample<'a> {
        Sample {
            thread_id: self.thread_id,
            interpreter_id: self.interpreter_id,
            status: self.status,
            timestamps_us,
            frames,
            stack: self.stack,
        }
    }
}

/// (thread, interpreter, status, stack)
type StackKey = (u64, u32, u8, StackId);

/// A collector that aggregates samples into a [`Profile`]; `finish` must be given the
/// symbols the samples came with.
#[derive(Default)]
pub struct ProfileBuilder {
    /// Indexes into `order`, by the hash of (thread, stack): what [`Collector::prefetch`]
    /// is given, some samples ahead.
    index: Slots,
    /// Keys and weights in order of first appearance.
    order: Vec<(StackKey, u64)>,
    timeline: Option<Timeline>,
}

impl ProfileBuilder {
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// Keep every sample's time too (formats that need [`crate::Needs::timeline`]).
    #[must_use]
    pub fn with_timeline() -> Self {
        ProfileBuilder {
            timeline: Some(Timeline::default()),
            ..Self::default()
        }
    }

    pub fn add(&mut self, sample: &Sample<'_>) {
        // CPython 3.15's collectors skip samples with no Python frame.
        if sample.stack == StackTable::EMPTY {
            return;
        }
        let key = (
            sample.thread_id,
            sample.interpreter_id,
            sample.status.0,
            sample.stack,
        );
        let hash = entry_hash(sample.thread_id, sample.stack);
        let ProfileBuilder { index, order, .. } = self;
        let index = match index.find(hash, |i| order[i].0 == key) {
            Some(i) => {
                order[i].1 += sample.weight();
                i
            }
            None => {
                order.push((key, sample.weight()));
                index.insert(hash, order.len() - 1);
                order.len() - 1
            }
        };
        if let Some(timeline) = &mut self.timeline {
            for &t in sample.timestamps_us {
                timeline.stack.push(index as u32);
                timeline.time_us.push(t);
            }
        }
    }

    #[must_use]
    pub fn finish(
        self,
        symbols: Symbols,
        interval_us: u64,
        mode: Option<Mode>,
        stats: RunStats,
    ) -> Profile {
        let stacks = self
            .order
            .iter()
            .map(
                |&((thread_id, interpreter_id, status, stack), weight)| WeightedStack {
                    thread_id,
                    interpreter_id,
                    status: ThreadStatus(status),
                    stack,
                    weight,
                },
            )
            .collect();
        Profile {
            symbols,
            stacks,
            interval_us,
            mode,
            stats,
            python_version: None,
            capture_features: None,
            timeline: self.timeline,
        }
    }
}

impl Collector for ProfileBuilder {
    fn collect(&mut self, _symbols: &Symbols, sample: &Sample<'_>) {
        self.add(sample);
    }

    fn prefetch(&mut self, _symbols: &Symbols, thread_id: u64, stack: StackId) {
        self.index
            .prefetch(entry_hash(thread_id, stack), &self.order);
    }

    fn export(&mut self, _ctx: &ExportContext<'_>) -> anyhow::Result<()> {
        Ok(())
    }
}
