//! The contract between tachyon's host (which samples and owns the binary format) and its
//! output formats ("collectors").
//!
//! A collector is created from a [`CollectorConfig`], receives [`Sample`]s through
//! [`Collector::collect`] many times and writes its output once in [`Collector::export`].
//! Built-in collectors register a [`Format`] with `inventory::submit!`; the host lists them.

mod aggregate;
mod collector;
pub mod compare;
pub mod ffi;
mod hash;
pub mod ir;
mod model;
pub mod opcodes;
mod profile;
pub mod source;
mod stacks;

pub use aggregate::{
    is_synthetic, short_path, AggregateOutput, Aggregating, CallTree, FrameKey, FrameKeys,
    StackCounts, TreeNode,
};
pub use collector::{
    formats, Collector, CollectorConfig, ExportContext, Format, Needs, RegressionDetected, RunStats,
};
pub use hash::{FxBuildHasher, FxHashMap, FxHasher};
pub use model::{FrameId, FrameInfo, Interner, Mode, Sample, StrId, Symbols, ThreadStatus};
pub use profile::{Profile, ProfileBuilder, WeightedStack};
pub use source::{ansi, printable, stdout_takes_colors, SourceAccess, SourceReader};
pub use stacks::{StackId, StackTable};

/// Re-exported so plugin crates register with the same `inventory` version as the host.
pub use inventory;

/// Version of this contract. Bumped on any incompatible change; dynamically loaded
/// plugins built against another version are refused.
pub const API_VERSION: u32 = 1;
