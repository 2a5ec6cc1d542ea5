//! Version 1 of the IR, for plugins built against it (`export_plugin_v1!`): an aggregated
//! profile, frames as positional tuples, no baseline, no timestamps.

use serde::{Deserialize, Serialize};

use crate::collector::{CollectorConfig, RunStats};
use crate::model::{FrameInfo, Mode, Symbols, ThreadStatus};
use crate::profile::{Profile, WeightedStack};

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct Ir {
    pub api_version: u32,
    pub interval_us: u64,
    /// Tachyon's mode code (0 wall, 1 cpu, 2 gil, 3 all, 4 exception).
    pub mode: u32,
    pub python_version: Option<(u8, u8, u8)>,
    pub strings: Vec<String>,
    pub frames: Vec<IrFrame>,
    pub stacks: Vec<IrStack>,
    pub duration_sec: f64,
    pub sample_rate: f64,
    pub error_rate: Option<f64>,
    pub missed_samples: Option<f64>,
}

/// [filename, funcname, line, end_line, column, end_column, opcode or null]
pub type IrFrame = (u32, u32, i32, i32, i32, i32, Option<u8>);

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct IrStack {
    pub thread_id: u64,
    pub interpreter_id: u32,
    pub status: u8,
    pub frames: Vec<u32>,
    pub weight: u64,
}

impl Ir {
    #[must_use]
    pub fn from_profile(p: &Profile, config: &CollectorConfig) -> Ir {
        Ir {
            api_version: 1,
            interval_us: p.interval_us,
            mode: config.mode as u32,
            python_version: config.python_version,
            strings: p.symbols.strings().to_vec(),
            frames: p
                .symbols
                .frames()
                .iter()
                .map(|f| {
                    (
                        f.filename,
                        f.funcname,
                        f.lineno,
                        f.end_lineno,
                        f.column,
                        f.end_column,
                        f.opcode,
                    )
                })
                .collect(),
            stacks: p
                .stacks
                .iter()
                .map(|s| IrStack {
                    thread_id: s.thread_id,
                    interpreter_id: s.interpreter_id,
                    status: s.status.0,
                    frames: p.symbols.stacks().frames(s.stack),
                    weight: s.weight,
                })
                .collect(),
            duration_sec: p.stats.duration_sec,
            sample_rate: p.stats.sample_rate,
            error_rate: p.stats.error_rate,
            missed_samples: p.stats.missed_samples,
        }
    }

    /// The profile, checked: every index must point into its table.
    pub fn to_profile(&self) -> anyhow::Result<Profile> {
        let n_strings = self.strings.len() as u32;
        let n_frames = self.frames.len() as u32;
        let frames = self
            .frames
            .iter()
            .map(
                |&(filename, funcname, lineno, end_lineno, column, end_column, opcode)| {
                    anyhow::ensure!(
                        filename < n_strings && funcname < n_strings,
                        "frame refers to a missing string"
                    );
                    Ok(FrameInfo {
                        filename,
                        funcname,
                        lineno,
                        end_lineno,
                        column,
                        end_column,
                        opcode,
                    })
                },
            )
            .collect::<anyhow::Result<Vec<_>>>()?;
        let mut symbols = Symbols::from_tables(self.strings.clone(), frames);
        let stacks = self
            .stacks
            .iter()
            .map(|s| {
                anyhow::ensure!(
                    s.frames.iter().all(|&f| f < n_frames),
                    "stack refers to a missing frame"
                );
                Ok(WeightedStack {
                    thread_id: s.thread_id,
                    interpreter_id: s.interpreter_id,
                    status: ThreadStatus(s.status),
                    stack: symbols.intern_stack(&s.frames),
                    weight: s.weight,
                })
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        Ok(Profile {
            symbols,
            stacks,
            interval_us: self.interval_us,
            mode: Mode::from_code(self.mode),
            stats: RunStats {
                duration_sec: self.duration_sec,
                sample_rate: self.sample_rate,
                error_rate: self.error_rate,
                missed_samples: self.missed_samples,
            },
            python_version: self.python_version,
            capture_features: None,
            timeline: None,
        })
    }
}
