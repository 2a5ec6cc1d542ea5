//! Recorded samples of real processes, for testing the unwinder without one
//! (host/tests/snapshots/*.snap.zst, written by host/examples/record_snapshot.rs): the
//! target's description, the memory one sample read, and every thread's stack as the program
//! itself reported it at that moment.

use std::path::Path;

use anyhow::{Context, Result};

use super::discover::{GilSource, Target};
use super::layout::Layout;
use super::memory::Snapshot;
use super::process::Process;
use super::unwind::ThreadSample;
use tachyon_plugin_api::Symbols;

/// One frame as the interpreter reports it: file name (without directories), function
/// (`co_qualname` on 3.11+, `co_name` before) and line.
pub type ExpectedFrame = (String, String, i32);

#[derive(serde::Serialize, serde::Deserialize)]
pub struct Fixture {
    /// `sys.version` of the recorded interpreter, first word.
    pub python: String,
    pub target: TargetDescription,
    /// Every thread's stack, innermost frame first (thread order is not kept).
    pub expected: Vec<Vec<ExpectedFrame>>,
    pub snapshot: Snapshot,
}

/// A `Target` without its live process.
#[derive(serde::Serialize, serde::Deserialize)]
pub struct TargetDescription {
    pid: i32,
    layout: Layout,
    version: (u8, u8, u8),
    interp_head_addr: u64,
    gil: GilSource,
    binary: String,
    none_addr: Option<u64>,
    /// Absent from snapshots recorded before it was read.
    #[serde(default)]
    code_version_addr: Option<u64>,
}

impl TargetDescription {
    pub fn of(target: &Target) -> TargetDescription {
        TargetDescription {
            pid: target.process.pid,
            layout: target.layout.clone(),
            version: target.version,
            interp_head_addr: target.interp_head_addr,
            gil: target.gil,
            binary: target.binary.clone(),
            none_addr: target.none_addr,
            code_version_addr: target.code_version_addr,
        }
    }

    pub fn version(&self) -> (u8, u8, u8) {
        self.version
    }

    /// The target as it was (its process is gone: read it through a snapshot).
    pub fn target(&self) -> Target {
        Target {
            process: Process::new(self.pid),
            layout: self.layout.clone(),
            version: self.version,
            interp_head_addr: self.interp_head_addr,
            gil: self.gil,
            binary: self.binary.clone(),
            none_addr: self.none_addr,
            code_version_addr: self.code_version_addr,
        }
    }
}

impl Fixture {
    pub fn load(path: &Path) -> Result<Fixture> {
        let raw = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
        let json = zstd::decode_all(&raw[..]).context("not a zstd fixture")?;
        Ok(serde_json::from_slice(&json)?)
    }

    pub fn save(&self, path: &Path) -> Result<()> {
        let json = serde_json::to_vec(self)?;
        std::fs::write(path, zstd::encode_all(&json[..], 19)?)
            .with_context(|| format!("cannot write {}", path.display()))
    }
}

/// The sampled threads' stacks in the fixture's terms.
pub fn stacks(symbols: &Symbols, threads: &[ThreadSample]) -> Vec<Vec<ExpectedFrame>> {
    threads
        .iter()
        .map(|t| {
            t.frames
                .iter()
                .map(|&id| {
                    let f = symbols.frame(id);
                    let file = symbols.str(f.filename);
                    let base = file.rsplit('/').next().unwrap_or(file);
                    (
                        base.to_owned(),
                        symbols.str(f.funcname).to_owned(),
                        f.lineno,
                    )
                })
                .collect()
        })
        .collect()
}
