//! Per-function sample counts in cProfile's shape: keys (filename, lineno, funcname), direct
//! (leaf) and cumulative (on the stack, recursion counted once) samples, and caller edges.

use tachyon_plugin_api::{group_by_key, FrameKeys, StackCounts, StackId, StackTable, Symbols};

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
    /// The table, from the stack table's nodes rather than each stack's frames: a node's
    /// samples (its own and its descendants') are those of its function called by its
    /// parent's, and, at the outermost node of its function on its path, that function's
    /// cumulative samples. Walking every stack and looking up each of its pairs of frames
    /// missed the cache at almost every pair on a capture of many stacks.
    pub fn build(counts: &StackCounts, symbols: &Symbols) -> FuncTable {
        let stacks = symbols.stacks();
        let by_stack = counts.by_stack();
        let mut table = FuncTable::default();
        let function_of = number_functions(&mut table.keys, &by_stack, symbols);
        let functions = table.keys.list().len();
        table.stats = vec![FuncStats::default(); functions];
        let mut inclusive = vec![0u64; stacks.len()];
        for &(stack, weight) in &by_stack {
            inclusive[stack as usize] += weight;
            table.total_samples += weight;
            table.stats[function_of[stack as usize] as usize].direct += weight;
        }
        stacks.add_descendants(&mut inclusive);
        let is_node = |node: usize| function_of[node] != NONE;
        // Cumulative samples (each stack once per function on it), summed on a second thread
        // while the callers are grouped here (both read the table, neither writes what the
        // other reads).
        let cumulative = || stacks.once_per_stack(&function_of, &inclusive, functions);
        // Every node's edge, (caller, samples), grouped by callee: a scatter in node order
        // (gathering each callee's nodes instead read them out of order, 16 % slower).
        let grouped = || {
            let edges = (1..stacks.len()).filter_map(|node| {
                let parent = stacks.parent(node as StackId);
                (is_node(node) && parent != StackTable::EMPTY).then(|| {
                    (
                        function_of[node],
                        (function_of[parent as usize], inclusive[node]),
                    )
                })
            });
            group_by_key(edges, functions)
        };
        let (cumulative, (start, mut edges)) = tachyon_plugin_api::join(cumulative, grouped);
        drop(inclusive);
        // A stack's own samples are its innermost call's direct samples: (caller, samples)
        // by callee, added to each callee's edges while they are in the cache.
        let (direct_start, direct) = group_by_key(
            by_stack.iter().filter_map(|&(stack, weight)| {
                let parent = stacks.parent(stack);
                (parent != StackTable::EMPTY).then(|| {
                    (
                        function_of[stack as usize],
                        (function_of[parent as usize], weight),
                    )
                })
            }),
            functions,
        );
        // Each callee's edges summed by caller, the callees in two halves on two threads.
        let callers_of = |callees: std::ops::Range<usize>, edges: &mut [(u32, u64)]| {
            let first = start[callees.start] as usize;
            callees
                .map(|callee| {
                    let group = &mut edges
                        [start[callee] as usize - first..start[callee + 1] as usize - first];
                    group.sort_unstable_by_key(|&(caller, _)| caller);
                    let mut callers: Vec<(usize, CallerEdge)> = group
                        .chunk_by(|a, b| a.0 == b.0)
                        .map(|same| {
                            let samples = same.iter().map(|&(_, samples)| samples).sum();
                            (same[0].0 as usize, CallerEdge { samples, direct: 0 })
                        })
                        .collect();
                    let own =
                        &direct[direct_start[callee] as usize..direct_start[callee + 1] as usize];
                    for &(caller, weight) in own {
                        if let Ok(at) =
                            callers.binary_search_by_key(&(caller as usize), |&(c, _)| c)
                        {
                            callers[at].1.direct += weight;
                        }
                    }
                    callers
                })
                .collect::<Vec<_>>()
        };
        let half = functions / 2;
        let (low, high) = edges.split_at_mut(start[half] as usize);
        let (mut callers, high_callers) = tachyon_plugin_api::join(
            || callers_of(0..half, low),
            || callers_of(half..functions, high),
        );
        callers.extend(high_callers);
        for ((st, cumulative), callers) in table.stats.iter_mut().zip(cumulative).zip(callers) {
            st.cumulative = cumulative;
            st.callers = callers;
        }
        table
    }
}

/// Not a node of any counted stack.
const NONE: u32 = u32::MAX;

/// Each stack-table node's function, numbered in `keys` as CPython meets them (samples as
/// they came, each stack innermost frame first); [`NONE`] for a node of no counted stack.
fn number_functions(
    keys: &mut FrameKeys,
    by_stack: &[(StackId, u64)],
    symbols: &Symbols,
) -> Vec<u32> {
    let stacks = symbols.stacks();
    // Numbered first as the table is walked, then renumbered as CPython meets them: a walk
    // of the stacks' frames, which ends once every function has been met.
    let mut walk_order = FrameKeys::default();
    let mut function_of =
        stacks.map_prefixes(by_stack.iter().map(|&(s, _)| s), NONE, |_, frame| {
            walk_order.id(symbols, frame) as u32
        });
    let functions = walk_order.list().len();
    let mut renumbered = vec![NONE; functions];
    'stacks: for &(stack, _) in by_stack {
        let mut node = stack;
        while let Some(frame) = stacks.leaf(node) {
            let at = &mut renumbered[function_of[node as usize] as usize];
            if *at == NONE {
                *at = keys.id(symbols, frame) as u32;
                if keys.list().len() == functions {
                    break 'stacks;
                }
            }
            node = stacks.parent(node);
        }
    }
    for function in &mut function_of {
        if *function != NONE {
            *function = renumbered[*function as usize];
        }
    }
    function_of
}

#[cfg(test)]
mod tests {
    use super::*;
    use tachyon_plugin_api::{testing, FrameKey};

    /// CPython's `PstatsCollector`, literally: per sample, walk the frames innermost first,
    /// numbering functions as met; direct to the innermost, cumulative once per function on
    /// the stack, and every pair of adjacent frames an edge (direct for the innermost pair).
    fn cpython_table(
        samples: &[(u64, Vec<u32>, u64)],
        symbols: &Symbols,
    ) -> Vec<(FrameKey, FuncStats)> {
        let mut keys: Vec<FrameKey> = Vec::new();
        let mut stats: Vec<FuncStats> = Vec::new();
        for (_, frames, weight) in samples {
            let ids: Vec<usize> = frames
                .iter()
                .map(|&f| {
                    let key = FrameKey::of(symbols, f);
                    keys.iter().position(|k| *k == key).unwrap_or_else(|| {
                        keys.push(key);
                        stats.push(FuncStats::default());
                        keys.len() - 1
                    })
                })
                .collect();
            stats[ids[0]].direct += weight;
            let mut seen = ids.clone();
            seen.sort_unstable();
            seen.dedup();
            for k in seen {
                stats[k].cumulative += weight;
            }
            for (i, pair) in ids.windows(2).enumerate() {
                let (callee, caller) = (pair[0], pair[1]);
                let callers = &mut stats[callee].callers;
                let at = match callers.iter().position(|&(c, _)| c == caller) {
                    Some(at) => at,
                    None => {
                        callers.push((caller, CallerEdge::default()));
                        callers.len() - 1
                    }
                };
                callers[at].1.samples += weight;
                if i == 0 {
                    callers[at].1.direct += weight;
                }
            }
        }
        for st in &mut stats {
            st.callers.sort_unstable_by_key(|&(caller, _)| caller);
        }
        keys.into_iter().zip(stats).collect()
    }

    /// Recursion (direct and through other functions), functions met through several frames
    /// (columns), threads sharing stacks: the table is CPython's, numbering included.
    #[test]
    fn table_is_cpythons() {
        let mut symbols = Symbols::new();
        let mut frames = Vec::new();
        for (name, line, column) in [
            ("f", 1, 0),
            ("g", 2, 0),
            ("h", 3, 0),
            ("f", 1, 4),
            ("k", 9, 0),
        ] {
            frames.push(testing::frame(
                &mut symbols,
                "/app/m.py",
                name,
                line,
                column,
            ));
        }
        let (counts, samples) =
            testing::random_samples(&mut symbols, &frames, 11, 2000, &[1, 2, 3], 6, 3);
        let table = FuncTable::build(&counts, &symbols);
        // CPython's order of meeting is the stacks' first appearance, every thread together.
        let mut first: Vec<(Vec<u32>, u64)> = Vec::new();
        for (_, stack, weight) in &samples {
            match first.iter_mut().find(|(s, _)| s == stack) {
                Some((_, w)) => *w += weight,
                None => first.push((stack.clone(), *weight)),
            }
        }
        let as_samples: Vec<(u64, Vec<u32>, u64)> =
            first.into_iter().map(|(s, w)| (0, s, w)).collect();
        let expected = cpython_table(&as_samples, &symbols);
        let ours: Vec<(FrameKey, FuncStats)> = table
            .keys
            .list()
            .iter()
            .cloned()
            .zip(table.stats.iter().cloned())
            .collect();
        assert_eq!(ours.len(), expected.len());
        for ((ours_key, ours), (key, theirs)) in ours.iter().zip(&expected) {
            assert_eq!(ours_key, key);
            assert_eq!(
                (ours.direct, ours.cumulative),
                (theirs.direct, theirs.cumulative),
                "{key:?}"
            );
            assert_eq!(ours.callers, theirs.callers, "{key:?}");
        }
        assert_eq!(
            table.total_samples,
            samples.iter().map(|s| s.2).sum::<u64>()
        );
    }
}
