//! The contract between tachyon's host (which samples and owns the binary format) and its
//! output formats ("collectors").
//!
//! A collector is created from a [`CollectorConfig`], receives [`Sample`]s through
//! [`Collector::collect`] many times and writes its output once in [`Collector::export`].
//! Built-in collectors register a [`Format`] with `inventory::submit!`; the host lists them.
//!
//! # Writing a run-time plugin
//!
//! The same collector can be loaded at run time instead of compiled in: build it as a
//! `cdylib` and name its formats in [`export_plugin!`](crate::export_plugin). The host then sends each export the
//! profile as IR ([`ir`], versioned with [`API_VERSION`]), and the macro replays it into the
//! collector exactly as the host feeds a built-in one: the same [`CollectorConfig`] (interval,
//! mode, Python version, start time, capture features, the user's `--format-option`s and, for
//! a format whose [`Needs::baseline`] is set, the baseline profile), every sample at its own
//! time for a format whose [`Needs::timeline`] is set (aggregated stacks otherwise), and the
//! run's statistics at export. A whole plugin, writing how many samples each thread had:
//!
//! ```
//! use std::collections::BTreeMap;
//! use tachyon_plugin_api::{Collector, CollectorConfig, ExportContext, Format, Needs, Sample, Symbols};
//!
//! #[derive(Default)]
//! struct PerThread {
//!     samples: BTreeMap<u64, u64>,
//! }
//!
//! impl Collector for PerThread {
//!     fn collect(&mut self, _symbols: &Symbols, sample: &Sample<'_>) {
//!         *self.samples.entry(sample.thread_id).or_default() += sample.weight();
//!     }
//!
//!     fn export(&mut self, ctx: &ExportContext<'_>) -> anyhow::Result<()> {
//!         let text: String = self.samples.iter().map(|(tid, n)| format!("{tid} {n}\n")).collect();
//!         std::fs::write(ctx.path.ok_or_else(|| anyhow::anyhow!("needs -o"))?, text)?;
//!         Ok(())
//!     }
//! }
//!
//! fn create(_config: &CollectorConfig) -> anyhow::Result<Box<dyn Collector>> {
//!     Ok(Box::<PerThread>::default())
//! }
//!
//! static PER_THREAD: Format = Format {
//!     name: "per-thread",
//!     description: "Samples per thread",
//!     extension: "txt",
//!     options: &[],
//!     needs: Needs::NOTHING,
//!     create,
//! };
//!
//! tachyon_plugin_api::export_plugin!(PER_THREAD);
//! ```
//!
//! `tachyon --plugin libper_thread.so replay run.bin -f per-thread -o counts.txt` runs it. The
//! export runs in a child process with a time limit, so a plugin that panics, crashes or hangs
//! costs an error line, never the profile. Complete examples: `examples/speedscope-plugin`,
//! `examples/chrome-trace-plugin` (a timeline) and `examples/diff-table-plugin` (differential).
//!
//! # Versions
//!
//! The table a plugin exports ([`ffi::PluginV1`]) starts with the IR version it reads. The host
//! serves every version it knows — today 1 ([`export_plugin_v1!`], aggregated stacks only)
//! and 2 — and refuses others with a message naming both. Within a version nothing changes;
//! new fields come with a new version, and the previous one stays served.

mod aggregate;
mod collector;
pub mod compare;
pub mod ffi;
mod hash;
pub mod ir;
mod model;
pub mod opcodes;
mod profile;
pub mod runs;
pub mod source;
mod stacks;
#[doc(hidden)]
pub mod testing;

pub use aggregate::{
    group_by_key, is_synthetic, short_path, AggregateOutput, Aggregating, CallTree, FrameKey,
    FrameKeys, StackCounts, ThreadValue, TreeNode, ROOT_THREADS_ONLY,
};
pub use collector::{
    formats, join, output_file, write_in_pieces, Collector, CollectorConfig, ExportContext, Format,
    Needs, RegressionDetected, RunStats,
};
pub use hash::{prefetch, FxBuildHasher, FxHashMap, FxHashSet, FxHasher};
pub use model::{FrameId, FrameInfo, Interner, Mode, Sample, StrId, Symbols, ThreadStatus};
pub use profile::{Profile, ProfileBuilder, Timeline, WeightedStack};
pub use source::{ansi, printable, stdout_takes_colors, SourceAccess, SourceReader};
pub use stacks::{StackId, StackTable, Trie, Walk};

/// Re-exported so plugin crates register with the same `inventory` version as the host.
pub use inventory;

/// Version of the run-time plugin contract ([`ir`]): 2. The host also serves plugins built
/// against version 1; any other is refused.
pub const API_VERSION: u32 = 2;
