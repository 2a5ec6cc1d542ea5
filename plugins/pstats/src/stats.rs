//! Per-function sample counts in cProfile's shape: keys (filename, lineno, funcname), direct
//! (leaf) and cumulative (on the stack, recursion counted once) samples, and caller edges.

use std::collections::BTreeMap;

use tachyon_plugin_api::{printable, FrameKey, FrameKeys, FxHashMap, StackId, StackTable, Symbols};

/// `file.py:12(func)` with the directory stripped, as pstats' `strip_dirs()` prints.
pub fn short_name(key: &FrameKey) -> String {
    printable(&format!(
        "{}:{}({})",
        key.base_name(),
        key.lineno,
        key.funcname
    ))
    .into_owned()
}

#[derive(Clone, Debug, Default)]
pub struct FuncStats {
    pub direct: u64,
    pub cumulative: u64,
    /// Caller key index -> samples in which it called this function.
    pub callers: BTreeMap<usize, u64>,
}

#[derive(Default)]
pub struct FuncTable {
    /// The functions, numbered as `stats`.
    pub keys: FrameKeys,
    pub stats: Vec<FuncStats>,
    pub total_samples: u64,
}

impl FuncTable {
    pub fn build(
        stacks: &StackTable,
        counts: &FxHashMap<StackId, u64>,
        symbols: &Symbols,
    ) -> FuncTable {
        let mut table = FuncTable::default();
        let mut seen_epoch: Vec<u64> = Vec::new();
        for (epoch, (&stack, &weight)) in counts.iter().enumerate() {
            let epoch = epoch as u64 + 1;
            let keys: Vec<usize> = stacks
                .frames_root_first(stack)
                .into_iter()
                .map(|frame| table.keys.id(symbols, frame))
                .collect();
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
            for pair in keys.windows(2) {
                *table.stats[pair[1]].callers.entry(pair[0]).or_default() += weight;
            }
        }
        table
    }
}
