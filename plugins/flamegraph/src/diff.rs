//! Differential annotations, with CPython 3.15.2's semantics (`DiffFlamegraphCollector`):
//! samples are aggregated per call path of (filename, function), so moved lines still match;
//! the baseline is expressed in units of the current sampling interval (`--diff-normalize
//! interval`, the default) or scaled to the current run's total sampled time (`total`, for
//! fixed-duration captures); a rendered per-line node gets its share of the path's baseline
//! by weight. Beyond CPython: a noise test per node and per function, inclusive deltas, and
//! the per-function changes behind the regression tables and `--fail-on-regression`.

use std::collections::HashMap;

use crate::tree::Tree;

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
    pub fn parse(text: &str) -> Option<Normalize> {
        match text {
            "interval" => Some(Normalize::Interval),
            "total" => Some(Normalize::Total),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Normalize::Interval => "interval",
            Normalize::Total => "total",
        }
    }
}

/// (filename, function) pairs as small ids shared by both profiles.
#[derive(Default)]
pub struct FuncIds {
    /// filename -> funcname -> id: looked up by `&str`, so a known pair allocates nothing.
    ids: HashMap<String, HashMap<String, u32>>,
    pub names: Vec<(String, String)>,
}

impl FuncIds {
    pub fn id(&mut self, filename: &str, funcname: &str) -> u32 {
        if let Some(&id) = self.ids.get(filename).and_then(|f| f.get(funcname)) {
            return id;
        }
        let id = self.names.len() as u32;
        self.names.push((filename.to_owned(), funcname.to_owned()));
        self.ids
            .entry(filename.to_owned())
            .or_default()
            .insert(funcname.to_owned(), id);
        id
    }
}

/// Inclusive and self samples of one call path.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PathStats {
    pub total: u64,
    pub self_samples: u64,
}

/// Samples per call path of (filename, function), every node of the tree counted.
pub fn path_stats(tree: &Tree, funcs: &mut FuncIds) -> HashMap<Vec<u32>, PathStats> {
    let func_of_key: Vec<u32> = tree
        .keys
        .iter()
        .map(|k| funcs.id(&k.filename, &k.funcname))
        .collect();
    let mut stats: HashMap<Vec<u32>, PathStats> = HashMap::new();
    let mut stack: Vec<(usize, Vec<u32>)> = vec![(0, Vec::new())];
    while let Some((id, path)) = stack.pop() {
        for &child in &tree.nodes[id].children {
            let n = &tree.nodes[child];
            let mut p = path.clone();
            p.push(func_of_key[n.key]);
            let e = stats.entry(p.clone()).or_default();
            e.total += n.value;
            e.self_samples += n.self_value;
            stack.push((child, p));
        }
    }
    stats
}

/// The factor that turns baseline samples into current-run samples.
pub fn scale(
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
pub fn sample_weight(
    value: f64,
    aggregate: f64,
    fallback_value: f64,
    fallback_aggregate: f64,
) -> f64 {
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
    pub filename: String,
    pub funcname: String,
    pub baseline_self: f64,
    pub current_self: f64,
    pub diff: f64,
    pub diff_pct: f64,
    pub significant: bool,
}

pub fn function_diffs(
    cur: &HashMap<Vec<u32>, PathStats>,
    base: &HashMap<Vec<u32>, PathStats>,
    funcs: &FuncIds,
    noise: &Noise,
) -> Vec<FunctionDiff> {
    let mut per_fn: HashMap<u32, (u64, u64)> = HashMap::new();
    for (path, s) in base {
        per_fn
            .entry(*path.last().expect("non-empty path"))
            .or_default()
            .0 += s.self_samples;
    }
    for (path, s) in cur {
        per_fn
            .entry(*path.last().expect("non-empty path"))
            .or_default()
            .1 += s.self_samples;
    }
    let mut out: Vec<FunctionDiff> = per_fn
        .into_iter()
        .map(|(id, (b, c))| {
            let (filename, funcname) = funcs.names[id as usize].clone();
            let (b, c) = (b as f64, c as f64);
            let diff = c - b * noise.scale;
            FunctionDiff {
                filename,
                funcname,
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
