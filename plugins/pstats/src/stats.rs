//! Per-function sample counts in cProfile's shape: keys (filename, lineno, funcname), direct
//! (leaf) and cumulative (on the stack, recursion counted once) samples, and caller edges.

use tachyon_plugin_api::{FrameKeys, FxHashMap, StackCounts, Symbols};

#[derive(Clone, Debug, Default)]
pub struct FuncStats {
    pub direct: u64,
    pub cumulative: u64,
    /// (caller key index, samples in which it called this function), by caller index.
    pub callers: Vec<(usize, CallerEdge)>,
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
        // (callee, caller) -> the edge, given to the callees at the end: a capture of many
        // stacks has millions of edges, and one lookup per edge is all their cache misses.
        let mut edges: FxHashMap<(u32, u32), CallerEdge> = FxHashMap::default();
        // Made its full size at once rather than grown through rehashes of millions of edges.
        // An edge is the (caller, callee) of a stack-table node, and a pair of frames: there
        // are at most as many as nodes, or as pairs of frames (a few, under deep recursion).
        let frame_pairs = symbols
            .frames()
            .len()
            .saturating_mul(symbols.frames().len());
        edges.reserve(symbols.stacks().len().min(frame_pairs));
        let mut frames = Vec::new();
        let mut keys: Vec<usize> = Vec::new();
        for (epoch, (stack, weight)) in counts.by_stack().into_iter().enumerate() {
            let epoch = epoch as u64 + 1;
            symbols.stacks().frames_into(stack, &mut frames);
            keys.clear();
            // Numbered innermost first, as CPython meets them; walked root first.
            keys.extend(frames.iter().map(|&frame| table.keys.id(symbols, frame)));
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
            let last_edge = keys.len().saturating_sub(1);
            for (i, pair) in keys.windows(2).enumerate() {
                let (caller, callee) = (pair[0], pair[1]);
                let edge = edges.entry((callee as u32, caller as u32)).or_default();
                edge.samples += weight;
                if i + 1 == last_edge {
                    edge.direct += weight;
                }
            }
        }
        // Each callee's edges in one allocation of their size: the edges are the most memory.
        let mut edges_of = vec![0usize; table.stats.len()];
        for &(callee, _) in edges.keys() {
            edges_of[callee as usize] += 1;
        }
        for (st, n) in table.stats.iter_mut().zip(edges_of) {
            st.callers.reserve_exact(n);
        }
        for ((callee, caller), edge) in edges {
            table.stats[callee as usize]
                .callers
                .push((caller as usize, edge));
        }
        for st in &mut table.stats {
            st.callers.sort_unstable_by_key(|&(caller, _)| caller);
        }
        table
    }
}
