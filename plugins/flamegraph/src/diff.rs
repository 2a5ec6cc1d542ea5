//! Differential annotations: each node of the current profile against the same path in the
//! baseline, paths keyed by (filename, function) so moved lines still match (as Tachyon).
//! Beyond Tachyon: inclusive deltas, a two-proportion z-test that marks changes within
//! sampling noise, per-function regression/improvement tables, and elided baseline stacks.

use std::collections::BTreeMap;

use crate::tree::{Key, Tree};

/// |z| below this is sampling noise (two-proportion z-test; 3 keeps false alarms rare when
/// hundreds of functions are compared at once).
pub const NOISE_Z: f64 = 3.0;

#[derive(Clone, Debug, Default)]
pub struct NodeDiff {
    /// Baseline self / inclusive samples, scaled to the current run's profiled time.
    pub baseline_self: f64,
    pub baseline_total: f64,
    pub diff: f64,
    pub diff_pct: f64,
    pub total_diff: f64,
    pub total_diff_pct: f64,
    pub significant: bool,
}

pub struct Comparison {
    pub scale: f64,
    /// Indexed by current-tree node.
    pub nodes: Vec<Option<NodeDiff>>,
    /// Baseline nodes with no counterpart in the current profile.
    pub elided: Vec<bool>,
    pub elided_count: usize,
    pub functions: Vec<FunctionDiff>,
}

#[derive(Clone, Debug)]
pub struct FunctionDiff {
    pub key: Key,
    pub baseline_self: f64,
    pub current_self: f64,
    pub diff: f64,
    pub diff_pct: f64,
    pub significant: bool,
}

fn pct(diff: f64, base: f64, current: f64) -> f64 {
    if base > 0.0 {
        diff / base * 100.0
    } else if current > 0.0 {
        100.0
    } else {
        0.0
    }
}

/// Is x1/n1 different from x2/n2 beyond sampling noise?
pub fn significant(x1: f64, n1: f64, x2: f64, n2: f64) -> bool {
    if n1 <= 0.0 || n2 <= 0.0 {
        return false;
    }
    let p = (x1 + x2) / (n1 + n2);
    let se = (p * (1.0 - p) * (1.0 / n1 + 1.0 / n2)).sqrt();
    if se == 0.0 {
        return x1 / n1 != x2 / n2;
    }
    ((x1 / n1 - x2 / n2) / se).abs() >= NOISE_Z
}

/// `scale` normalises the baseline to the current run's profiled time:
/// (current samples x interval) / (baseline samples x interval).
pub fn scale(cur_samples: u64, cur_interval: u64, base_samples: u64, base_interval: u64) -> f64 {
    if base_samples == 0 || base_interval == 0 {
        1.0
    } else if cur_samples == 0 {
        cur_interval as f64 / base_interval as f64
    } else {
        (cur_samples as f64 * cur_interval as f64) / (base_samples as f64 * base_interval as f64)
    }
}

pub fn compare(cur: &Tree, base: &Tree, scale: f64) -> Comparison {
    let n_cur = cur.nodes[0].value as f64;
    let n_base = base.nodes[0].value as f64;
    let mut nodes = vec![None; cur.nodes.len()];
    let mut matched = vec![false; base.nodes.len()];
    matched[0] = true;
    // Walk both trees together from the roots.
    let mut stack = vec![(0usize, Some(0usize))];
    while let Some((c, b)) = stack.pop() {
        let node = &cur.nodes[c];
        let (bs, bt) = b.map_or((0.0, 0.0), |b| {
            (base.nodes[b].self_value as f64, base.nodes[b].value as f64)
        });
        let (cs, ct) = (node.self_value as f64, node.value as f64);
        let diff = cs - bs * scale;
        let total_diff = ct - bt * scale;
        nodes[c] = Some(NodeDiff {
            baseline_self: bs * scale,
            baseline_total: bt * scale,
            diff,
            diff_pct: pct(diff, bs * scale, cs),
            total_diff,
            total_diff_pct: pct(total_diff, bt * scale, ct),
            significant: significant(cs, n_cur, bs, n_base),
        });
        for &child in &node.children {
            let bchild = b.and_then(|b| {
                base.key_lookup(&cur.keys[cur.nodes[child].key])
                    .and_then(|k| base.find_child(b, k))
            });
            if let Some(bc) = bchild {
                matched[bc] = true;
            }
            stack.push((child, bchild));
        }
    }
    let elided: Vec<bool> = matched.iter().map(|m| !m).collect();
    let elided_count = (1..base.nodes.len())
        .filter(|&i| elided[i] && base.nodes[i].self_value > 0)
        .count();

    // Per function (self time summed over every path it appears on).
    let mut per_fn: BTreeMap<(String, String), (f64, f64)> = BTreeMap::new();
    for n in &cur.nodes[1..] {
        let k = &cur.keys[n.key];
        per_fn
            .entry((k.filename.clone(), k.funcname.clone()))
            .or_default()
            .1 += n.self_value as f64;
    }
    for n in &base.nodes[1..] {
        let k = &base.keys[n.key];
        per_fn
            .entry((k.filename.clone(), k.funcname.clone()))
            .or_default()
            .0 += n.self_value as f64;
    }
    let functions = per_fn
        .into_iter()
        .map(|((filename, funcname), (b, c))| FunctionDiff {
            key: Key {
                filename,
                lineno: 0,
                funcname,
            },
            baseline_self: b * scale,
            current_self: c,
            diff: c - b * scale,
            diff_pct: pct(c - b * scale, b * scale, c),
            significant: significant(c, n_cur, b, n_base),
        })
        .collect();
    Comparison {
        scale,
        nodes,
        elided,
        elided_count,
        functions,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tree(stacks: &[(&[&str], u64)]) -> Tree {
        let mut t = Tree::new();
        for (frames, w) in stacks {
            let keys: Vec<(usize, Option<u8>)> = frames
                .iter()
                .map(|f| {
                    (
                        t.key_id(Key {
                            filename: "a.py".into(),
                            lineno: 0,
                            funcname: f.to_string(),
                        }),
                        None,
                    )
                })
                .collect();
            t.add(1, &keys, *w);
        }
        t
    }

    #[test]
    fn scaled_self_diffs_new_and_elided() {
        let base = tree(&[(&["main", "slow"], 100), (&["main", "gone"], 100)]);
        let cur = tree(&[(&["main", "slow"], 300), (&["main", "new"], 100)]);
        // same interval, 400 current vs 200 baseline samples: baseline counts double.
        let s = scale(400, 1000, 200, 1000);
        assert_eq!(s, 2.0);
        let c = compare(&cur, &base, s);
        let find = |name: &str| {
            (1..cur.nodes.len())
                .find(|&i| cur.keys[cur.nodes[i].key].funcname == name)
                .unwrap()
        };
        let slow = c.nodes[find("slow")].as_ref().unwrap();
        assert_eq!((slow.baseline_self, slow.diff), (200.0, 100.0));
        assert_eq!(slow.diff_pct, 50.0);
        let new = c.nodes[find("new")].as_ref().unwrap();
        assert_eq!((new.baseline_self, new.diff_pct), (0.0, 100.0));
        assert_eq!(c.elided_count, 1);
        let gone = c
            .functions
            .iter()
            .find(|f| f.key.funcname == "gone")
            .unwrap();
        assert_eq!((gone.diff, gone.diff_pct), (-200.0, -100.0));
        assert!(gone.significant);
    }

    #[test]
    fn noise_is_not_significant() {
        assert!(!significant(51.0, 1000.0, 49.0, 1000.0));
        assert!(significant(150.0, 1000.0, 50.0, 1000.0));
    }
}
