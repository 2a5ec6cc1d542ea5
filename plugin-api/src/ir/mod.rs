//! The profile as it crosses to a run-time plugin: one JSON document, the "IR", versioned
//! with [`crate::API_VERSION`] (this is version 2; [`v1`] is kept for plugins built against
//! it). Tables are columnar — one array per field, row `i` across them — so a large profile
//! stays compact:
//!
//! ```json
//! {"api_version": 2,
//!  "profile": {
//!    "run": {"interval_us": 1000, "mode": "wall", "python_version": [3, 12, 1],
//!            "start_time_us": 5120000, "capture_features": 0,
//!            "stats": {"duration_sec": 2.0, "sample_rate": 998.0,
//!                      "error_rate": 0.1, "missed_samples": 0.2}},
//!    "strings": ["app.py", "main", "work"],
//!    "frames": {"filename": [0, 0], "function": [1, 2], "line": [3, 7],
//!               "end_line": [3, 7], "column": [-1, -1], "end_column": [-1, -1],
//!               "opcode": [null, null]},
//!    "stacks": {"thread_id": [4242], "interpreter_id": [0], "status": [0],
//!               "weight": [2], "frames": [[1, 0]]},
//!    "samples": {"stack": [0, 0], "delta_us": [5120000, 1000]}},
//!  "baseline": null,
//!  "comparison": null}
//! ```
//!
//! `stacks.frames` are frame indices innermost first. `samples` is present only for a format
//! whose [`crate::Needs::timeline`] is set: each sample's stack and its time as the change from
//! the previous sample's (the first from 0), in arrival order. `baseline` is the profile
//! compared with (`tachyon diff`, `--diff-flamegraph`), in the same shape; `comparison` is what
//! tachyon's comparison layer ([`crate::compare::Comparison`]) says of every function then.
//!
//! Versioning: a field is only ever added with a new version; the host sends each plugin the
//! version its table declares, so plugins built against an older version keep working.

pub mod v1;

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::aggregate::ROOT_THREADS_ONLY;
use crate::collector::{CollectorConfig, RunStats};
use crate::compare::{Comparison, Normalize};
use crate::model::{FrameInfo, Mode, Symbols, ThreadStatus};
use crate::profile::{Profile, Timeline, WeightedStack};

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct Ir {
    pub api_version: u32,
    pub profile: IrProfile,
    pub baseline: Option<IrProfile>,
    pub comparison: Option<IrComparison>,
}

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct IrProfile {
    pub run: IrRun,
    pub strings: Vec<String>,
    pub frames: IrFrames,
    pub stacks: IrStacks,
    pub samples: Option<IrSamples>,
}

/// How the profile was taken.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct IrRun {
    pub interval_us: u64,
    /// `wall`, `cpu`, `gil`, `all` or `exception`; null when a replayed capture recorded none.
    pub mode: Option<String>,
    pub python_version: Option<(u8, u8, u8)>,
    /// CLOCK_MONOTONIC microseconds when sampling started.
    pub start_time_us: Option<u64>,
    /// all_threads 1, native 2, gc 4, opcodes 8, blocking 16.
    pub capture_features: Option<u8>,
    pub stats: IrStats,
}

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct IrStats {
    pub duration_sec: f64,
    pub sample_rate: f64,
    pub error_rate: Option<f64>,
    pub missed_samples: Option<f64>,
}

/// Frames: `filename` and `function` index `strings`; -1 for an unknown line or column.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Default)]
pub struct IrFrames {
    pub filename: Vec<u32>,
    pub function: Vec<u32>,
    pub line: Vec<i32>,
    pub end_line: Vec<i32>,
    pub column: Vec<i32>,
    pub end_column: Vec<i32>,
    pub opcode: Vec<Option<u8>>,
}

/// Aggregated stacks in order of first appearance; `status` is the thread-status bits
/// (has GIL 1, on CPU 2, unknown 4, GC 8, has exception 16, main thread 32).
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Default)]
pub struct IrStacks {
    pub thread_id: Vec<u64>,
    pub interpreter_id: Vec<u32>,
    pub status: Vec<u8>,
    pub weight: Vec<u64>,
    pub frames: Vec<Vec<u32>>,
}

/// Every sample, in arrival order: its stack and its time minus the previous sample's.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Default)]
pub struct IrSamples {
    pub stack: Vec<u32>,
    pub delta_us: Vec<i64>,
}

/// Every function seen in either profile: self samples in both (the baseline's scaled to the
/// current run), the change, and whether it is beyond noise.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct IrComparison {
    /// What the baseline's samples were multiplied by (`normalize`: `interval`, the ratio
    /// of sampling intervals, or `total`, of sampled time).
    pub scale: f64,
    pub normalize: String,
    pub functions: Vec<IrFunctionDiff>,
}

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct IrFunctionDiff {
    pub filename: String,
    pub function: String,
    pub baseline_self: f64,
    pub current_self: f64,
    pub diff: f64,
    pub diff_pct: f64,
    pub significant: bool,
}

impl Ir {
    /// The document for `profile` as a collector configured by `config` would receive it
    /// (its baseline compared as `normalize` says).
    #[must_use]
    pub fn new(profile: &Profile, config: &CollectorConfig, normalize: Normalize) -> Ir {
        let comparison = config.baseline.as_ref().map(|base| {
            let tree = profile
                .counts()
                .tree(&profile.symbols, false, ROOT_THREADS_ONLY);
            let base_tree = base.counts().tree(&base.symbols, false, ROOT_THREADS_ONLY);
            let c = Comparison::new(
                &tree,
                profile.interval_us,
                &base_tree,
                base.interval_us,
                normalize,
            );
            IrComparison {
                scale: c.noise.scale,
                normalize: normalize.name().to_owned(),
                functions: c
                    .functions
                    .iter()
                    .map(|f| IrFunctionDiff {
                        filename: f.filename.clone(),
                        function: f.funcname.clone(),
                        baseline_self: f.baseline_self,
                        current_self: f.current_self,
                        diff: f.diff,
                        diff_pct: f.diff_pct,
                        significant: f.significant,
                    })
                    .collect(),
            }
        });
        Ir {
            api_version: crate::API_VERSION,
            profile: IrProfile::new(profile, config.start_time_us, config.capture_features),
            baseline: config
                .baseline
                .as_ref()
                .map(|b| IrProfile::new(b, None, b.capture_features)),
            comparison,
        }
    }
}

impl IrProfile {
    #[must_use]
    pub fn new(p: &Profile, start_time_us: Option<u64>, capture_features: Option<u8>) -> IrProfile {
        let mut frames = IrFrames::default();
        for f in p.symbols.frames() {
            frames.filename.push(f.filename);
            frames.function.push(f.funcname);
            frames.line.push(f.lineno);
            frames.end_line.push(f.end_lineno);
            frames.column.push(f.column);
            frames.end_column.push(f.end_column);
            frames.opcode.push(f.opcode);
        }
        let mut stacks = IrStacks::default();
        for s in &p.stacks {
            stacks.thread_id.push(s.thread_id);
            stacks.interpreter_id.push(s.interpreter_id);
            stacks.status.push(s.status.0);
            stacks.weight.push(s.weight);
            stacks.frames.push(p.symbols.stacks().frames(s.stack));
        }
        let samples = p.timeline.as_ref().map(|t| {
            let mut previous = 0i64;
            IrSamples {
                stack: t.stack.clone(),
                delta_us: t
                    .time_us
                    .iter()
                    .map(|&time| {
                        let delta = time as i64 - previous;
                        previous = time as i64;
                        delta
                    })
                    .collect(),
            }
        });
        IrProfile {
            run: IrRun {
                interval_us: p.interval_us,
                mode: p.mode.map(|m| m.name().to_owned()),
                python_version: p.python_version,
                start_time_us,
                capture_features,
                stats: IrStats {
                    duration_sec: p.stats.duration_sec,
                    sample_rate: p.stats.sample_rate,
                    error_rate: p.stats.error_rate,
                    missed_samples: p.stats.missed_samples,
                },
            },
            strings: p.symbols.strings().to_vec(),
            frames,
            stacks,
            samples,
        }
    }

    /// The profile, checked: every column as long as the others, every index inside its
    /// table.
    pub fn to_profile(&self) -> anyhow::Result<Profile> {
        let f = &self.frames;
        let rows = f.filename.len();
        anyhow::ensure!(
            [
                f.function.len(),
                f.line.len(),
                f.end_line.len(),
                f.column.len(),
                f.end_column.len(),
                f.opcode.len()
            ]
            .iter()
            .all(|&n| n == rows),
            "frame columns of different lengths"
        );
        let n_strings = self.strings.len() as u32;
        let frames = (0..rows)
            .map(|i| {
                anyhow::ensure!(
                    f.filename[i] < n_strings && f.function[i] < n_strings,
                    "frame refers to a missing string"
                );
                Ok(FrameInfo {
                    filename: f.filename[i],
                    funcname: f.function[i],
                    lineno: f.line[i],
                    end_lineno: f.end_line[i],
                    column: f.column[i],
                    end_column: f.end_column[i],
                    opcode: f.opcode[i],
                })
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        let s = &self.stacks;
        let count = s.thread_id.len();
        anyhow::ensure!(
            [
                s.interpreter_id.len(),
                s.status.len(),
                s.weight.len(),
                s.frames.len()
            ]
            .iter()
            .all(|&n| n == count),
            "stack columns of different lengths"
        );
        let mut symbols = Symbols::from_tables(self.strings.clone(), frames);
        let stacks = (0..count)
            .map(|i| {
                anyhow::ensure!(
                    s.frames[i].iter().all(|&id| (id as usize) < rows),
                    "stack refers to a missing frame"
                );
                Ok(WeightedStack {
                    thread_id: s.thread_id[i],
                    interpreter_id: s.interpreter_id[i],
                    status: ThreadStatus(s.status[i]),
                    stack: symbols.intern_stack(&s.frames[i]),
                    weight: s.weight[i],
                })
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        let timeline = match &self.samples {
            None => None,
            Some(samples) => {
                anyhow::ensure!(
                    samples.stack.len() == samples.delta_us.len(),
                    "sample columns of different lengths"
                );
                anyhow::ensure!(
                    samples.stack.iter().all(|&i| (i as usize) < count),
                    "sample refers to a missing stack"
                );
                let mut time = 0i64;
                Some(Timeline {
                    stack: samples.stack.clone(),
                    time_us: samples
                        .delta_us
                        .iter()
                        .map(|&d| {
                            time = time.saturating_add(d);
                            time as u64
                        })
                        .collect(),
                })
            }
        };
        Ok(Profile {
            symbols,
            stacks,
            interval_us: self.run.interval_us,
            mode: self.run.mode.as_deref().and_then(Mode::parse),
            stats: RunStats {
                duration_sec: self.run.stats.duration_sec,
                sample_rate: self.run.stats.sample_rate,
                error_rate: self.run.stats.error_rate,
                missed_samples: self.run.stats.missed_samples,
            },
            python_version: self.run.python_version,
            capture_features: self.run.capture_features,
            timeline,
        })
    }

    /// A collector's configuration for this profile (its baseline and options aside).
    #[must_use]
    pub fn config(&self) -> CollectorConfig {
        let mode = self.run.mode.as_deref().and_then(Mode::parse);
        CollectorConfig {
            interval_us: self.run.interval_us,
            mode: mode.unwrap_or_default(),
            mode_unknown: mode.is_none(),
            python_version: self.run.python_version,
            start_time_us: self.run.start_time_us,
            capture_features: self.run.capture_features,
            ..CollectorConfig::default()
        }
    }
}

/// The baseline of a decoded document, shared as a collector's configuration holds it.
pub fn baseline(ir: &Ir) -> anyhow::Result<Option<Arc<Profile>>> {
    ir.baseline
        .as_ref()
        .map(|b| b.to_profile().map(Arc::new))
        .transpose()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Sample;
    use crate::ProfileBuilder;

    /// Two threads; `work` weighs `heavy` samples in thread 1.
    fn profile(heavy: u64, timeline: bool) -> Profile {
        let mut symbols = Symbols::default();
        let file = symbols.intern_str("app.py");
        let frame = |symbols: &mut Symbols, name: &str, line: i32| {
            let funcname = symbols.intern_str(name);
            symbols.intern_frame(FrameInfo {
                filename: file,
                funcname,
                lineno: line,
                end_lineno: line,
                column: -1,
                end_column: -1,
                opcode: None,
            })
        };
        let (main, work, idle) = (
            frame(&mut symbols, "main", 1),
            frame(&mut symbols, "work", 5),
            frame(&mut symbols, "idle", 9),
        );
        let mut builder = if timeline {
            ProfileBuilder::with_timeline()
        } else {
            ProfileBuilder::new()
        };
        let times: Vec<u64> = (0..heavy).map(|i| 1_000_000 + i * 1000).collect();
        builder.add(&Sample {
            thread_id: 1,
            interpreter_id: 0,
            status: ThreadStatus(2),
            timestamps_us: &times,
            frames: &[work, main],
            stack: symbols.intern_stack(&[work, main]),
        });
        builder.add(&Sample {
            thread_id: 2,
            interpreter_id: 0,
            status: ThreadStatus(0),
            timestamps_us: &[999_000],
            frames: &[idle, main],
            stack: symbols.intern_stack(&[idle, main]),
        });
        let mut p = builder.finish(
            symbols,
            1000,
            Some(Mode::Cpu),
            RunStats {
                duration_sec: 1.5,
                sample_rate: 990.0,
                error_rate: Some(0.5),
                missed_samples: None,
            },
        );
        p.python_version = Some((3, 12, 1));
        p
    }

    #[test]
    fn a_profile_crosses_whole_with_its_timeline() {
        let p = profile(3, true);
        let config = CollectorConfig {
            start_time_us: Some(999_000),
            capture_features: Some(1),
            ..CollectorConfig::default()
        };
        let json = serde_json::to_vec(&Ir::new(&p, &config, Normalize::Interval)).unwrap();
        let ir: Ir = serde_json::from_slice(&json).unwrap();
        assert_eq!(ir.api_version, 2);
        assert!(ir.baseline.is_none() && ir.comparison.is_none());
        let back = ir.profile.to_profile().unwrap();
        assert_eq!(back.stacks, p.stacks);
        assert_eq!(back.timeline, p.timeline);
        assert_eq!(
            back.timeline.as_ref().unwrap().time_us,
            vec![1_000_000, 1_001_000, 1_002_000, 999_000]
        );
        assert_eq!(
            (back.mode, back.python_version, back.stats.clone()),
            (p.mode, p.python_version, p.stats.clone())
        );
        let config = ir.profile.config();
        assert_eq!(
            (config.start_time_us, config.capture_features, config.mode),
            (Some(999_000), Some(1), Mode::Cpu)
        );
    }

    #[test]
    fn a_baseline_comes_with_the_comparison() {
        let current = profile(30, false);
        let config = CollectorConfig {
            baseline: Some(Arc::new(profile(10, false))),
            ..CollectorConfig::default()
        };
        let ir = Ir::new(&current, &config, Normalize::Interval);
        assert_eq!(ir.baseline.as_ref().unwrap().stacks.weight, vec![10, 1]);
        let comparison = ir.comparison.unwrap();
        let work = comparison
            .functions
            .iter()
            .find(|f| f.function == "work")
            .unwrap();
        assert_eq!(
            (work.baseline_self, work.current_self, work.diff),
            (10.0, 30.0, 20.0)
        );
        assert!(
            ir.profile.samples.is_none(),
            "no timeline unless the format needs one"
        );
    }

    #[test]
    fn malformed_documents_are_refused() {
        let mut ir = Ir::new(
            &profile(2, true),
            &CollectorConfig::default(),
            Normalize::Interval,
        );
        ir.profile.frames.line.pop();
        assert!(ir.profile.to_profile().is_err());
        let mut ir = Ir::new(
            &profile(2, true),
            &CollectorConfig::default(),
            Normalize::Interval,
        );
        ir.profile.samples.as_mut().unwrap().stack[0] = 99;
        assert!(ir.profile.to_profile().is_err());
    }
}
