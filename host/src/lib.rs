//! tachyon: a sampling profiler for CPython. The host owns the command line, sampling and the
//! binary capture format; output formats are collectors registered through the plugin API.

pub mod binary;
pub mod cli;
pub mod diff_runs;
pub mod dump;
pub mod guard;
pub mod live;
pub mod output;
pub mod plugins;
pub mod progress;
pub mod provenance;
pub mod replay;
pub mod sampler;
pub mod session;
pub mod subprocesses;

// Built-in collectors register themselves with `inventory`; naming the crates links them in.
#[cfg(feature = "collapsed")]
extern crate tachyon_collapsed;
#[cfg(feature = "flamegraph")]
extern crate tachyon_flamegraph;
#[cfg(feature = "gecko")]
extern crate tachyon_gecko;
#[cfg(feature = "heatmap")]
extern crate tachyon_heatmap;
#[cfg(feature = "jsonl")]
extern crate tachyon_jsonl;
#[cfg(feature = "pprof")]
extern crate tachyon_pprof;
#[cfg(feature = "pstats")]
extern crate tachyon_pstats;
#[cfg(feature = "speedscope")]
extern crate tachyon_speedscope;
#[cfg(feature = "svg")]
extern crate tachyon_svg;
