//! Per-function sample counts in cProfile's shape: keys (filename, lineno, funcname), direct
//! (leaf) and cumulative (on the stack, recursion counted once) samples, and caller edges.

use std::collections::BTreeMap;

use tachyon_plugin_api::{FrameKeys, StackCounts, Symbols};

#[derive(Clone, Debug, Default)]
pub struct FuncStats {
    pub direct: u64,
    pub cumulative: u64,
    /// Caller key index -> samples in which it called this function.
    pub callers: BTreeMap<usize, CallerEdge>,
}

/// Samples in which one function called another, and in how many of those the callee was
/// the innermost frame.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CallerEdge {
    pub samples: u64,
    pub direct: u64,
}

#[derive(Default)]
pub struct FuncTable {
    /// The functions, numbered as `stats` in order of first appearance (CPython's order:
    /// samples as they came, each stack innermost frame first).
    pub keys: FrameKeys,
    pub stats: Vec<FuncStats>,
    pub total_samples: u64,
}

impl FuncTable {
    pub fn build(counts: &StackCounts, symbols: &Symbols) -> FuncTable {
        let mut table = FuncTable::default();
        let mut seen_epoch: Vec<u64> = Vec::new();
        for (epoch, (stack, weight)) in counts.by_stack().into_iter().enumerate() {
            let epoch = epoch as u64 + 1;
            let mut keys: Vec<usize> = symbols
                .stacks()
                .frames(stack)
                .into_iter()
                .map(|frame| table.keys.id(symbols, frame))
                .collect();
            keys.reverse();
            table
                .stats
                .resize_with(table.keys.list().len(), FuncStats::default);
            seen_epoch.resize(table.keys.list().len(), 0);
            table.total_samples += weight;
            let Some(&leaf) = keys.last() else { continue };
            table.stats[leaf].direct += weight;
            for &k in &keys {
                if seen_epoch[k] != epoch {
                    seen_epoch[k] = epoch;
                    table.stats[k].cumulative += weight;
                }
            }
            let edges = keys.len().saturating_sub(1);
            for (i, pair) in keys.windows(2).enumerate() {
                let edge = table.stats[pair[1]].callers.entry(pair[0]).or_default();
                edge.samples += weight;
                if i + 1 == edges {
                    edge.direct += weight;
                }
            }
        }
        table
    }
}
