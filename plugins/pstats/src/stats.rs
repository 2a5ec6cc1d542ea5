//! Per-function sample counts in cProfile's shape: keys (filename, lineno, funcname), direct
//! (leaf) and cumulative (on the stack, recursion counted once) samples, and caller edges.

use std::collections::{BTreeMap, HashMap};

use tachyon_plugin_api::{printable, FrameId, FxHashMap, StackId, StackTable, Symbols};

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct FuncKey {
    pub filename: String,
    pub lineno: i32,
    pub funcname: String,
}

impl FuncKey {
    /// `file.py:12(func)` with the directory stripped, as pstats' `strip_dirs()` prints.
    pub fn short(&self) -> String {
        let base = self.filename.rsplit('/').next().unwrap_or(&self.filename);
        printable(&format!("{base}:{}({})", self.lineno, self.funcname)).into_owned()
    }
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
    pub keys: Vec<FuncKey>,
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
        let mut key_index: HashMap<FuncKey, usize> = HashMap::new();
        let mut frame_key: HashMap<FrameId, usize> = HashMap::new();
        let mut seen_epoch: Vec<u64> = Vec::new();
        for (epoch, (&stack, &weight)) in counts.iter().enumerate() {
            let epoch = epoch as u64 + 1;
            let keys: Vec<usize> = stacks
                .frames_root_first(stack)
                .into_iter()
                .map(|id| {
                    *frame_key.entry(id).or_insert_with(|| {
                        let f = symbols.frame(id);
                        let key = FuncKey {
                            filename: symbols.str(f.filename).to_owned(),
                            lineno: f.lineno.max(0),
                            funcname: symbols.str(f.funcname).to_owned(),
                        };
                        *key_index.entry(key.clone()).or_insert_with(|| {
                            table.keys.push(key);
                            table.stats.push(FuncStats::default());
                            seen_epoch.push(0);
                            table.keys.len() - 1
                        })
                    })
                })
                .collect();
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
