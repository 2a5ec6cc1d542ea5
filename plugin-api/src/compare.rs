//! Comparing two profiles, as data any format can render (the differential flame graph
//! today; reports and plugins alike), with CPython 3.15.2's semantics
//! (`DiffFlamegraphCollector`): samples are aggregated per call path of (filename, function),
//! so moved lines still match; the baseline is expressed in units of the current sampling
//! interval (`--diff-normalize interval`, the default) or scaled to the current run's total
//! sampled time (`total`, for fixed-duration captures); a rendered per-line node gets its
//! share of the path's baseline by weight. Beyond CPython: a noise test per node and per
//! function, inclusive deltas, and per-function changes for regression tables and gates.

use std::collections::HashMap;

use crate::aggregate::CallTree;
use crate::model::Interner;
use crate::stacks::Trie;

/// |z| below this is sampling noise (3 keeps false alarms rare when hundreds of functions
/// are compared at once).
pub const NOISE_Z: f64 = 3.0;

/// How the baseline is brought to the current run's units.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Normalize {
    /// By the ratio of sampling intervals only (CPython 3.15.2): an unchanged function stays
    /// unchanged whatever else got faster or slower.
    Interval,
    /// By the ratio of total sampled time: compares shares of the run, for captures of a
    /// fixed duration (`attach -d 30` on a server).
    Total,
}

impl Normalize {
    #[must_use]
    pub fn parse(text: &str) -> Option<Normalize> {
        match text {
            "interval" => Some(Normalize::Interval),
            "total" => Some(Normalize::Total),
            _ => None,
        }
    }

    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            Normalize::Interval => "interval",
            Normalize::Total => "total",
        }
    }
}

/// A call path of (filename, function) ids from the root, as a node of [`CallPaths`];
/// [`Trie::ROOT`] is the empty path.
pub type PathId = u32;

/// Every call path of both compared trees, as one trie: a million paths cost a million small
/// entries, not a million vectors.
pub type CallPaths = Trie;

/// Samples per call path, indexed by [`PathId`]; a path one tree lacks has zero samples.
pub type PathMap = Vec<PathStats>;

/// (filename, function) pairs as small ids shared by both profiles.
#[derive(Default)]
pub struct FunctionIds {
    names: Interner<String>,
    pairs: Interner<(usize, usize)>,
}

impl FunctionIds {
    pub fn id(&mut self, filename: &str, funcname: &str) -> u32 {
        let pair = (self.names.id(filename), self.names.id(funcname));
        self.pairs.id(&pair) as u32
    }

    /// (filename, function) of an id.
    #[must_use]
    pub fn name(&self, id: u32) -> (&str, &str) {
        let (file, func) = *self.pairs.get(id as usize);
        (self.names.get(file), self.names.get(func))
    }
}

/// Inclusive and self samples of one call path.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PathStats {
    pub total: u64,
    pub self_samples: u64,
}

/// Samples per call path of (filename, function), every node of the tree counted, and the
/// path of every node.
fn path_stats(
    tree: &CallTree,
    funcs: &mut FunctionIds,
    paths: &mut CallPaths,
) -> (PathMap, Vec<PathId>) {
    let func_of_key: Vec<u32> = tree
        .keys
        .list()
        .iter()
        .map(|k| funcs.id(&k.filename, &k.funcname))
        .collect();
    let mut stats = PathMap::default();
    let mut node_paths = vec![Trie::ROOT; tree.nodes.len()];
    // A node is made under an existing one, so a parent's id is below its children's.
    for id in 0..tree.nodes.len() {
        let path = node_paths[id];
        for &child in tree.children(id) {
            let child = child as usize;
            let n = &tree.nodes[child];
            let p = paths.child(path, func_of_key[n.key]);
            node_paths[child] = p;
            if stats.len() <= p as usize {
                stats.resize(paths.len(), PathStats::default());
            }
            let e = &mut stats[p as usize];
            e.total += n.value;
            e.self_samples += n.self_value;
        }
    }
    (stats, node_paths)
}

/// The factor that turns baseline samples into current-run samples.
fn scale(
    normalize: Normalize,
    cur_samples: u64,
    cur_interval: u64,
    base_samples: u64,
    base_interval: u64,
) -> f64 {
    if base_samples == 0 || cur_interval == 0 {
        return 1.0;
    }
    match normalize {
        Normalize::Interval => base_interval as f64 / cur_interval as f64,
        Normalize::Total if cur_samples == 0 => base_interval as f64 / cur_interval as f64,
        Normalize::Total => cur_samples as f64 / base_samples as f64,
    }
}

/// CPython's change in percent: against the baseline, +100 % for something new.
#[must_use]
pub fn pct(diff: f64, base: f64, current: f64) -> f64 {
    if base > 0.0 {
        diff / base * 100.0
    } else if current > 0.0 {
        100.0
    } else {
        0.0
    }
}

/// Whether `current` samples differ from `base_raw` baseline samples beyond sampling noise.
/// Interval normalisation compares counts (Poisson: var = c + scale² b); total normalisation
/// compares shares of each run (two-proportion z-test).
pub struct Noise {
    pub normalize: Normalize,
    pub scale: f64,
    pub cur_total: f64,
    pub base_total: f64,
}

impl Noise {
    #[must_use]
    pub fn significant(&self, current: f64, base_raw: f64) -> bool {
        match self.normalize {
            Normalize::Interval => {
                let var = current + self.scale * self.scale * base_raw;
                var > 0.0 && ((current - self.scale * base_raw) / var.sqrt()).abs() >= NOISE_Z
            }
            Normalize::Total => {
                let (n1, n2) = (self.cur_total, self.base_total);
                if n1 <= 0.0 || n2 <= 0.0 {
                    return false;
                }
                let p = (current + base_raw) / (n1 + n2);
                let se = (p * (1.0 - p) * (1.0 / n1 + 1.0 / n2)).sqrt();
                if se == 0.0 {
                    return current / n1 != base_raw / n2;
                }
                ((current / n1 - base_raw / n2) / se).abs() >= NOISE_Z
            }
        }
    }
}

/// CPython's `_sample_weight`: a rendered node's share of its path's samples.
fn sample_weight(value: f64, aggregate: f64, fallback_value: f64, fallback_aggregate: f64) -> f64 {
    if aggregate > 0.0 {
        value / aggregate
    } else if fallback_aggregate > 0.0 {
        fallback_value / fallback_aggregate
    } else {
        0.0
    }
}

/// One function's self time in both runs (summed over every path it appears on).
#[derive(Clone, Debug)]
pub struct FunctionDiff {
    pub id: u32,
    pub filename: String,
    pub funcname: String,
    pub baseline_self: f64,
    pub current_self: f64,
    pub diff: f64,
    pub diff_pct: f64,
    pub significant: bool,
}

fn function_diffs(
    cur: &PathMap,
    base: &PathMap,
    paths: &CallPaths,
    funcs: &FunctionIds,
    noise: &Noise,
) -> Vec<FunctionDiff> {
    // Both maps cover every path (one tree's absent paths are zero). Function ids are
    // small and dense: (seen, baseline self, current self) by id.
    let mut per_fn: Vec<(bool, u64, u64)> = vec![(false, 0, 0); funcs.pairs.len()];
    for (path, (b, c)) in base.iter().zip(cur).enumerate() {
        if b.total > 0 || c.total > 0 {
            let func = paths.item(path as PathId).expect("non-empty path");
            let entry = &mut per_fn[func as usize];
            entry.0 = true;
            entry.1 += b.self_samples;
            entry.2 += c.self_samples;
        }
    }
    let mut out: Vec<FunctionDiff> = per_fn
        .into_iter()
        .enumerate()
        .filter(|&(_, (seen, _, _))| seen)
        .map(|(id, (_, b, c))| {
            let id = id as u32;
            let (filename, funcname) = funcs.name(id);
            let (b, c) = (b as f64, c as f64);
            let diff = c - b * noise.scale;
            FunctionDiff {
                id,
                filename: filename.to_owned(),
                funcname: funcname.to_owned(),
                baseline_self: b * noise.scale,
                current_self: c,
                diff,
                diff_pct: pct(diff, b * noise.scale, c),
                significant: noise.significant(c, b),
            }
        })
        .collect();
    out.sort_by(|a, b| (&a.filename, &a.funcname).cmp(&(&b.filename, &b.funcname)));
    out
}

/// The baseline's side of a [`Comparison`]: its samples per call path, and the path of each
/// of its tree's nodes. It needs nothing of the current run, so it can be made while the
/// current run is still being read.
pub struct BaselinePaths {
    funcs: FunctionIds,
    paths: CallPaths,
    stats: PathMap,
    nodes: Vec<PathId>,
    total: u64,
}

impl BaselinePaths {
    #[must_use]
    pub fn new(baseline: &CallTree) -> BaselinePaths {
        let mut funcs = FunctionIds::default();
        let mut paths = CallPaths::default();
        let (stats, nodes) = path_stats(baseline, &mut funcs, &mut paths);
        BaselinePaths {
            funcs,
            paths,
            stats,
            nodes,
            total: baseline.nodes[0].value,
        }
    }
}

/// Two profiles compared: per-path and per-function samples of both, the baseline's scale
/// and the noise test. Renderers ask it about the nodes they draw.
pub struct Comparison {
    pub funcs: FunctionIds,
    pub paths: CallPaths,
    /// The path of every node of the current tree, by node id.
    pub current_nodes: Vec<PathId>,
    /// The path of every node of the baseline tree, by node id.
    pub baseline_nodes: Vec<PathId>,
    pub current: PathMap,
    pub baseline: PathMap,
    pub noise: Noise,
    /// Self-time change of every function seen in either run, by file then name.
    pub functions: Vec<FunctionDiff>,
    function_index: HashMap<u32, usize>,
}

/// What a comparison says of one rendered node (CPython's `_add_diff_data_to_node`, plus
/// tachyon's inclusive delta and noise test). Baseline values are in current-run units.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct NodeDiff {
    pub baseline_self: f64,
    pub baseline_total: f64,
    pub diff: f64,
    pub diff_pct: f64,
    pub total_diff: f64,
    pub total_diff_pct: f64,
    pub significant: bool,
}

impl Comparison {
    /// Compare `current` (sampled every `current_interval_us`) with `baseline`.
    #[must_use]
    pub fn new(
        current: &CallTree,
        current_interval_us: u64,
        baseline: &CallTree,
        baseline_interval_us: u64,
        normalize: Normalize,
    ) -> Comparison {
        let baseline = BaselinePaths::new(baseline);
        Comparison::against(
            current,
            current_interval_us,
            baseline,
            baseline_interval_us,
            normalize,
        )
    }

    /// [`Comparison::new`], the baseline's side made beforehand.
    #[must_use]
    pub fn against(
        current: &CallTree,
        current_interval_us: u64,
        baseline: BaselinePaths,
        baseline_interval_us: u64,
        normalize: Normalize,
    ) -> Comparison {
        let BaselinePaths {
            mut funcs,
            mut paths,
            stats: mut base_paths,
            nodes: baseline_nodes,
            total: base_total,
        } = baseline;
        let (mut cur_paths, current_nodes) = path_stats(current, &mut funcs, &mut paths);
        cur_paths.resize(paths.len(), PathStats::default());
        base_paths.resize(paths.len(), PathStats::default());
        let cur_total = current.nodes[0].value;
        let noise = Noise {
            normalize,
            scale: scale(
                normalize,
                cur_total,
                current_interval_us,
                base_total,
                baseline_interval_us,
            ),
            cur_total: cur_total as f64,
            base_total: base_total as f64,
        };
        let functions = function_diffs(&cur_paths, &base_paths, &paths, &funcs, &noise);
        let function_index = functions
            .iter()
            .enumerate()
            .map(|(i, f)| (f.id, i))
            .collect();
        Comparison {
            funcs,
            paths,
            current_nodes,
            baseline_nodes,
            current: cur_paths,
            baseline: base_paths,
            noise,
            functions,
            function_index,
        }
    }

    /// The self-time change of the function a path ends in.
    #[must_use]
    pub fn function(&self, path: PathId) -> Option<&FunctionDiff> {
        let id = self.paths.item(path)?;
        self.function_index.get(&id).map(|&i| &self.functions[i])
    }

    /// Whether the baseline has this path and the current run never reached it ("elided").
    #[must_use]
    pub fn is_elided(&self, path: PathId) -> bool {
        self.baseline[path as usize].total > 0 && self.current[path as usize].total == 0
    }

    /// Every elided path.
    pub fn elided(&self) -> impl Iterator<Item = PathId> + '_ {
        (0..self.paths.len() as PathId).filter(|&p| self.is_elided(p))
    }

    /// A rendered node of `value` inclusive and `self_value` self samples on `path`: its share
    /// of the path's baseline, and the change.
    #[must_use]
    pub fn node(&self, path: PathId, value: u64, self_value: u64) -> NodeDiff {
        let (cur, base) = (self.current[path as usize], self.baseline[path as usize]);
        let (cs, ct) = (self_value as f64, value as f64);
        let self_weight = sample_weight(cs, cur.self_samples as f64, ct, cur.total as f64);
        let nonself_weight = sample_weight(
            ct - cs,
            (cur.total - cur.self_samples) as f64,
            ct,
            cur.total as f64,
        );
        let base_self_raw = base.self_samples as f64 * self_weight;
        let base_nonself_raw = (base.total - base.self_samples) as f64 * nonself_weight;
        let baseline_self = base_self_raw * self.noise.scale;
        let baseline_total = baseline_self + base_nonself_raw * self.noise.scale;
        let diff = cs - baseline_self;
        let total_diff = ct - baseline_total;
        NodeDiff {
            baseline_self,
            baseline_total,
            diff,
            diff_pct: pct(diff, baseline_self, cs),
            total_diff,
            total_diff_pct: pct(total_diff, baseline_total, ct),
            significant: self.noise.significant(cs, base_self_raw)
                || self.noise.significant(ct, base_self_raw + base_nonself_raw),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interval_normalisation_keeps_unchanged_functions_unchanged() {
        // Baseline 3000 samples, current 4000, same interval: scale 1 (CPython 3.15.2).
        assert_eq!(scale(Normalize::Interval, 4000, 1000, 3000, 1000), 1.0);
        assert_eq!(scale(Normalize::Interval, 4000, 500, 3000, 1000), 2.0);
        assert!((scale(Normalize::Total, 4000, 1000, 3000, 1000) - 4.0 / 3.0).abs() < 1e-12);
        let noise = Noise {
            normalize: Normalize::Interval,
            scale: 1.0,
            cur_total: 4000.0,
            base_total: 3000.0,
        };
        assert!(!noise.significant(1000.0, 1000.0), "unchanged");
        assert!(noise.significant(2000.0, 1000.0), "doubled");
        assert!(!noise.significant(1030.0, 1000.0), "within noise");
    }

    #[test]
    fn percentages_as_cpython() {
        assert_eq!(pct(1000.0, 1000.0, 2000.0), 100.0);
        assert_eq!(pct(5.0, 0.0, 5.0), 100.0);
        assert_eq!(pct(0.0, 0.0, 0.0), 0.0);
        assert_eq!(sample_weight(2.0, 4.0, 9.0, 9.0), 0.5);
        assert_eq!(sample_weight(2.0, 0.0, 3.0, 6.0), 0.5);
        assert_eq!(sample_weight(2.0, 0.0, 3.0, 0.0), 0.0);
    }
}
