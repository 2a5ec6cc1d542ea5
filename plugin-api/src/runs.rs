//! Comparing two *sets* of runs: is a change bigger than the runs' own spread?
//!
//! One run per side cannot tell a change from run-to-run noise (a CI runner varies by 30 % and
//! more), so each function's time — or share of the run, with `Normalize::Total` — is measured
//! in every run of each side, and the sides' means are compared with Welch's t-test: the
//! per-run values are few (3 to 10), their spreads may differ between the sides, and Welch's
//! test uses each side's own spread. A bootstrap over runs was the alternative; with three runs
//! a side it has only ten distinct resamples per side, too coarse for a 99 % interval. The
//! question is directional — did it get slower? faster? — so each direction is a one-sided
//! test at the level: a function *regressed* when its rise is significant at 99 %, *improved*
//! when its fall is. The interval's two ends are the matching one-sided bounds (together a
//! 98 % two-sided interval at level 99 %), so a verdict holds exactly when its bound excludes
//! no change — and, to be worth reporting, every change under 1 % ([`MIN_CHANGE_PCT`]). The
//! effect is the relative change of the mean (current − baseline) / baseline,
//! with the interval of the difference divided by the baseline mean.
//!
//! Stacks are classed as the "pyrometry" approach classes them: *appeared* (in no baseline run,
//! in every current run), *disappeared* (the reverse), *grown* and *shrunk* (a significant
//! change of their per-run values).

use std::collections::{BTreeMap, BTreeSet};

use statrs::distribution::{ContinuousCDF, StudentsT};

use crate::compare::Normalize;
use crate::hash::FxHashMap;
use crate::model::StrId;
use crate::profile::Profile;
use crate::stacks::{StackId, StackTable};

/// What the comparison of one function (or stack) across the runs says.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    Regressed,
    Improved,
    Unchanged,
    /// Fewer than two runs on a side, or fewer samples than `min_samples` on both.
    NotEnoughData,
}

impl Verdict {
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            Verdict::Regressed => "regressed",
            Verdict::Improved => "improved",
            Verdict::Unchanged => "unchanged",
            Verdict::NotEnoughData => "not enough data",
        }
    }
}

/// One side's per-run values of a function or stack.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct Spread {
    /// Per run, in `unit`.
    pub values: Vec<f64>,
    pub mean: f64,
    /// Sample standard deviation (n − 1); 0 for one run.
    pub stdev: f64,
    /// Mean samples per run (for `min_samples`).
    pub mean_samples: f64,
}

impl Spread {
    fn new(values: Vec<f64>, samples: &[u64]) -> Spread {
        let n = values.len() as f64;
        let mean = if values.is_empty() {
            0.0
        } else {
            values.iter().sum::<f64>() / n
        };
        let stdev = if values.len() < 2 {
            0.0
        } else {
            (values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1.0)).sqrt()
        };
        let mean_samples = if samples.is_empty() {
            0.0
        } else {
            samples.iter().sum::<u64>() as f64 / samples.len() as f64
        };
        Spread {
            values,
            mean,
            stdev,
            mean_samples,
        }
    }
}

/// Welch's t-test of the current mean against the baseline mean.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize)]
pub struct Welch {
    /// current mean − baseline mean, in `unit`.
    pub diff: f64,
    /// The difference's one-sided bounds at the comparison's level (below and above).
    pub diff_low: f64,
    pub diff_high: f64,
    /// `diff` relative to the baseline mean, in percent, and its interval (`None` when the
    /// baseline mean is 0: the function is new).
    pub change_pct: Option<f64>,
    pub change_low_pct: Option<f64>,
    pub change_high_pct: Option<f64>,
    pub t: f64,
    /// Welch–Satterthwaite degrees of freedom.
    pub df: f64,
    /// One-sided p-value in the direction of the change.
    pub p: f64,
}

/// Welch's test of `current` against `baseline` at `level` (0.99): one-sided in the direction
/// of the change; `None` with fewer than two values on a side.
#[must_use]
pub fn welch(baseline: &Spread, current: &Spread, level: f64) -> Option<Welch> {
    let (nb, nc) = (baseline.values.len() as f64, current.values.len() as f64);
    if nb < 2.0 || nc < 2.0 {
        return None;
    }
    let (vb, vc) = (baseline.stdev.powi(2) / nb, current.stdev.powi(2) / nc);
    let diff = current.mean - baseline.mean;
    let se = (vb + vc).sqrt();
    let (t, df, p, half) = if se == 0.0 {
        // No spread on either side: any difference is exact.
        let p = if diff == 0.0 { 0.5 } else { 0.0 };
        (
            if diff == 0.0 {
                0.0
            } else {
                f64::INFINITY.copysign(diff)
            },
            nb + nc - 2.0,
            p,
            0.0,
        )
    } else {
        let df = (vb + vc).powi(2) / (vb.powi(2) / (nb - 1.0) + vc.powi(2) / (nc - 1.0));
        let dist = StudentsT::new(0.0, 1.0, df).ok()?;
        let t = diff / se;
        let p = (1.0 - dist.cdf(t.abs())).clamp(0.0, 1.0);
        let critical = dist.inverse_cdf(level);
        (t, df, p, critical * se)
    };
    let relative = |x: f64| (baseline.mean > 0.0).then(|| 100.0 * x / baseline.mean);
    Some(Welch {
        diff,
        diff_low: diff - half,
        diff_high: diff + half,
        change_pct: relative(diff),
        change_low_pct: relative(diff - half),
        change_high_pct: relative(diff + half),
        t,
        df,
        p,
    })
}

/// One function (or stack) compared across the runs.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Compared {
    pub filename: String,
    /// The function, or for a stack its frames' functions root first joined by `;`.
    pub name: String,
    pub baseline: Spread,
    pub current: Spread,
    pub test: Option<Welch>,
    pub verdict: Verdict,
}

/// How a stack changed between the sides.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum StackClass {
    Appeared,
    Disappeared,
    Grown,
    Shrunk,
}

#[derive(Clone, Debug, serde::Serialize)]
pub struct ComparedStack {
    pub class: StackClass,
    pub stack: Compared,
}

/// How two sets of runs were compared.
#[derive(Clone, Copy, Debug)]
pub struct RunsOptions {
    pub normalize: Normalize,
    /// Confidence level of the intervals and the tests (0.99).
    pub level: f64,
    /// Functions with fewer mean samples per run than this on both sides get no verdict.
    pub min_samples: f64,
}

/// Two sets of runs compared function by function (inclusive time: the function anywhere on
/// the stack) and stack by stack.
#[derive(Clone, Debug, serde::Serialize)]
pub struct RunsComparison {
    /// `ms` (time per run) or `%` (share of the run's samples).
    pub unit: &'static str,
    pub level: f64,
    pub baseline_runs: usize,
    pub current_runs: usize,
    /// Every function seen, largest |change| first.
    pub functions: Vec<Compared>,
    /// Stacks that appeared, disappeared, grew or shrank.
    pub stacks: Vec<ComparedStack>,
}

/// Per run: key -> (value in unit, samples).
type PerRun = Vec<BTreeMap<(String, String), (f64, u64)>>;

/// (file, function name or call path) and its samples in one run.
type KeySamples = Vec<((String, String), u64)>;

/// Each run's inclusive value of every function and value of every stack.
fn measure(runs: &[&Profile], normalize: Normalize) -> (PerRun, PerRun) {
    let mut functions = Vec::new();
    let mut stacks = Vec::new();
    for run in runs {
        let total = run.total_samples().max(1) as f64;
        let unit = |samples: u64| match normalize {
            Normalize::Interval => samples as f64 * run.interval_us as f64 / 1000.0,
            Normalize::Total => 100.0 * samples as f64 / total,
        };
        let (fn_samples, path_samples) = samples_by_function_and_path(run);
        // Two paths can be one text (a name holding `;`): their samples are summed.
        let in_unit = |by_key: KeySamples| {
            let mut summed: BTreeMap<(String, String), u64> = BTreeMap::new();
            for (key, n) in by_key {
                *summed.entry(key).or_default() += n;
            }
            summed
                .into_iter()
                .map(|(k, n)| (k, (unit(n), n)))
                .collect::<BTreeMap<_, _>>()
        };
        functions.push(in_unit(fn_samples));
        stacks.push(in_unit(path_samples));
    }
    (functions, stacks)
}

/// One run's samples of every function (file, name), each counted once per stack it is on,
/// and of every call path (the innermost frame's file, the names root first joined by `;`).
/// Counted on the stack table's nodes by string ids, parents first, and each key's strings
/// made once at the end: making them for every frame of every sampled stack took seconds
/// on a comparison of six 1M-sample runs.
fn samples_by_function_and_path(run: &Profile) -> (KeySamples, KeySamples) {
    let symbols = &run.symbols;
    let table = symbols.stacks();
    // Samples of each stack, then of each node with everything under it.
    let mut inclusive = vec![0u64; table.len()];
    for s in &run.stacks {
        inclusive[s.stack as usize] += s.weight;
    }
    let sampled: Vec<(StackId, u64)> = (0..table.len() as StackId)
        .map(|stack| (stack, inclusive[stack as usize]))
        .filter(|&(stack, weight)| weight > 0 && stack != StackTable::EMPTY)
        .collect();
    table.add_descendants(&mut inclusive);
    // Each node's function, by (file, name) ids, numbered as met.
    let mut function_ids: FxHashMap<(StrId, StrId), u32> = FxHashMap::default();
    let mut functions: Vec<(StrId, StrId)> = Vec::new();
    let function_of = table.map_prefixes(sampled.iter().map(|&(s, _)| s), 0, |_, frame| {
        let info = symbols.frame(frame);
        let key = (info.filename, info.funcname);
        *function_ids.entry(key).or_insert_with(|| {
            functions.push(key);
            (functions.len() - 1) as u32
        })
    });
    let function_samples = table.once_per_stack(&function_of, &inclusive, functions.len());
    // Each node's call path, as a tree of names: (parent path, name) -> path; 0 is empty.
    let mut path_ids: FxHashMap<(u32, StrId), u32> = FxHashMap::default();
    let mut path_nodes: Vec<(u32, StrId)> = vec![(0, 0)];
    let path_of = table.map_prefixes(sampled.iter().map(|&(s, _)| s), 0, |parent, frame| {
        let name = symbols.frame(frame).funcname;
        *path_ids.entry((parent, name)).or_insert_with(|| {
            path_nodes.push((parent, name));
            (path_nodes.len() - 1) as u32
        })
    });
    let mut path_weights: FxHashMap<(StrId, u32), u64> = FxHashMap::default();
    for &(stack, weight) in &sampled {
        let leaf = table.leaf(stack).expect("a sampled stack has a frame");
        let leaf_file = symbols.frame(leaf).filename;
        *path_weights
            .entry((leaf_file, path_of[stack as usize]))
            .or_default() += weight;
    }
    let function_samples = functions
        .into_iter()
        .zip(function_samples)
        .map(|((file, name), n)| {
            (
                (symbols.str(file).to_owned(), symbols.str(name).to_owned()),
                n,
            )
        })
        .collect();
    let mut names = Vec::new();
    let path_samples = path_weights
        .into_iter()
        .map(|((leaf_file, mut path), n)| {
            names.clear();
            while path != 0 {
                let (parent, name) = path_nodes[path as usize];
                names.push(symbols.str(name));
                path = parent;
            }
            names.reverse();
            ((symbols.str(leaf_file).to_owned(), names.join(";")), n)
        })
        .collect();
    (function_samples, path_samples)
}

/// The least relative change a verdict reports: a shift the runs show for certain but smaller
/// than this is not a regression to anyone. (A fixed cost, such as 8 samples of garbage
/// collection at exit, is a share of the run that falls by a hundredth of a percent as runs
/// get longer, and with three steady runs a side that is significant.)
const MIN_CHANGE_PCT: f64 = 1.0;

fn compare_key(
    key: &(String, String),
    baseline: &PerRun,
    current: &PerRun,
    options: &RunsOptions,
) -> Compared {
    let side = |runs: &PerRun| {
        let found: Vec<(f64, u64)> = runs
            .iter()
            .map(|r| r.get(key).copied().unwrap_or((0.0, 0)))
            .collect();
        let samples: Vec<u64> = found.iter().map(|&(_, n)| n).collect();
        Spread::new(found.into_iter().map(|(v, _)| v).collect(), &samples)
    };
    let (b, c) = (side(baseline), side(current));
    let test = welch(&b, &c, options.level);
    let verdict = match test {
        _ if b.mean_samples.max(c.mean_samples) < options.min_samples => Verdict::NotEnoughData,
        None => Verdict::NotEnoughData,
        Some(w) if w.p >= 1.0 - options.level => Verdict::Unchanged,
        Some(w) if w.diff > 0.0 && w.change_low_pct.is_none_or(|low| low >= MIN_CHANGE_PCT) => {
            Verdict::Regressed
        }
        Some(w) if w.diff < 0.0 && w.change_high_pct.is_none_or(|high| high <= -MIN_CHANGE_PCT) => {
            Verdict::Improved
        }
        Some(_) => Verdict::Unchanged,
    };
    Compared {
        filename: key.0.clone(),
        name: key.1.clone(),
        baseline: b,
        current: c,
        test,
        verdict,
    }
}

impl RunsComparison {
    #[must_use]
    pub fn new(
        baseline: &[&Profile],
        current: &[&Profile],
        options: RunsOptions,
    ) -> RunsComparison {
        let (base_fns, base_stacks) = measure(baseline, options.normalize);
        let (cur_fns, cur_stacks) = measure(current, options.normalize);
        let keys = |a: &PerRun, b: &PerRun| -> BTreeSet<(String, String)> {
            a.iter().chain(b).flat_map(|r| r.keys().cloned()).collect()
        };
        let magnitude = |c: &Compared| c.test.map_or(0.0, |w| w.diff.abs());
        let mut functions: Vec<Compared> = keys(&base_fns, &cur_fns)
            .iter()
            .map(|k| compare_key(k, &base_fns, &cur_fns, &options))
            .collect();
        functions.sort_by(|a, b| {
            magnitude(b)
                .total_cmp(&magnitude(a))
                .then_with(|| a.name.cmp(&b.name))
        });
        let in_every = |runs: &PerRun, k: &(String, String)| {
            !runs.is_empty() && runs.iter().all(|r| r.contains_key(k))
        };
        let in_none = |runs: &PerRun, k: &(String, String)| runs.iter().all(|r| !r.contains_key(k));
        let mut stacks: Vec<ComparedStack> = keys(&base_stacks, &cur_stacks)
            .iter()
            .filter_map(|k| {
                let compared = compare_key(k, &base_stacks, &cur_stacks, &options);
                let class = if in_none(&base_stacks, k) && in_every(&cur_stacks, k) {
                    StackClass::Appeared
                } else if in_every(&base_stacks, k) && in_none(&cur_stacks, k) {
                    StackClass::Disappeared
                } else {
                    match compared.verdict {
                        Verdict::Regressed => StackClass::Grown,
                        Verdict::Improved => StackClass::Shrunk,
                        _ => return None,
                    }
                };
                Some(ComparedStack {
                    class,
                    stack: compared,
                })
            })
            .collect();
        stacks.sort_by(|a, b| {
            let size = |s: &ComparedStack| (s.stack.current.mean - s.stack.baseline.mean).abs();
            size(b).total_cmp(&size(a))
        });
        RunsComparison {
            unit: match options.normalize {
                Normalize::Interval => "ms",
                Normalize::Total => "%",
            },
            level: options.level,
            baseline_runs: baseline.len(),
            current_runs: current.len(),
            functions,
            stacks,
        }
    }

    /// The regressions a gate of `limit_pct` fails on: significant, and larger than the limit.
    #[must_use]
    pub fn over_limit(&self, limit_pct: f64) -> Vec<&Compared> {
        self.functions
            .iter()
            .filter(|c| {
                c.verdict == Verdict::Regressed
                    && c.test
                        .and_then(|w| w.change_pct)
                        .is_none_or(|pct| pct > limit_pct)
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::collector::RunStats;
    use crate::model::Symbols;
    use crate::profile::WeightedStack;
    use crate::testing;

    type BySamples = BTreeMap<(String, String), u64>;

    /// The measure as first written, frame by frame of every sampled stack with strings.
    fn measured_by_strings(run: &Profile) -> (BySamples, BySamples) {
        let mut functions = BTreeMap::new();
        let mut paths = BTreeMap::new();
        for s in &run.stacks {
            let names: Vec<(String, String)> = run
                .symbols
                .stacks()
                .frames_root_first(s.stack)
                .into_iter()
                .map(|id| {
                    let f = run.symbols.frame(id);
                    (
                        run.symbols.str(f.filename).to_owned(),
                        run.symbols.str(f.funcname).to_owned(),
                    )
                })
                .collect();
            let distinct: BTreeSet<&(String, String)> = names.iter().collect();
            for key in distinct {
                *functions.entry(key.clone()).or_default() += s.weight;
            }
            let leaf_file = names.last().map(|(f, _)| f.clone()).unwrap_or_default();
            let path = names
                .iter()
                .map(|(_, n)| n.as_str())
                .collect::<Vec<_>>()
                .join(";");
            *paths.entry((leaf_file, path)).or_default() += s.weight;
        }
        (functions, paths)
    }

    /// Recursion (a function twice on a path), one name in two files, one function at several
    /// lines, stacks shared by threads, and two paths that are one text (a name holding `;`):
    /// each function is counted once per stack and each path's text sums its stacks.
    #[test]
    fn functions_and_paths_are_counted_as_the_frames_say() {
        let mut symbols = Symbols::new();
        let frames: Vec<_> = [
            ("/a.py", "f", 1),
            ("/a.py", "f", 2),
            ("/b.py", "f", 3),
            ("/a.py", "g", 4),
            ("/a.py", "h;k", 5),
            ("/a.py", "h", 6),
            ("/a.py", "k", 7),
        ]
        .iter()
        .map(|&(file, name, line)| testing::frame(&mut symbols, file, name, line, 0))
        .collect();
        let (counts, _) = testing::random_samples(&mut symbols, &frames, 3, 3000, &[1, 2, 3], 6, 4);
        let stacks = counts
            .entries()
            .iter()
            .map(|&(thread_id, stack, weight)| WeightedStack {
                thread_id,
                interpreter_id: 0,
                status: Default::default(),
                stack,
                weight,
            })
            .collect();
        let run = Profile {
            symbols,
            stacks,
            interval_us: 1000,
            mode: None,
            stats: RunStats::default(),
            python_version: None,
            capture_features: None,
            timeline: None,
        };
        let (functions, paths) = measure(&[&run], Normalize::Total);
        let samples = |measured: &BTreeMap<(String, String), (f64, u64)>| {
            measured
                .iter()
                .map(|(k, &(_, n))| (k.clone(), n))
                .collect::<BTreeMap<_, _>>()
        };
        let (want_functions, want_paths) = measured_by_strings(&run);
        assert_eq!(samples(&functions[0]), want_functions);
        assert_eq!(samples(&paths[0]), want_paths);
        assert!(want_paths.keys().any(|(_, path)| path.contains("h;k")));
    }

    fn spread(values: &[f64]) -> Spread {
        Spread::new(values.to_vec(), &[])
    }

    #[test]
    fn welch_matches_a_worked_example() {
        // Means 10 and 13, variances 1 and 4, three runs each: se = 1.2910, t = 2.3238,
        // df = 2.9412 (Welch-Satterthwaite), one-sided p = 0.05224.
        let w = welch(
            &spread(&[9.0, 10.0, 11.0]),
            &spread(&[11.0, 13.0, 15.0]),
            0.99,
        )
        .unwrap();
        assert!((w.t - 2.32379).abs() < 1e-4, "{w:?}");
        assert!((w.df - 2.94118).abs() < 1e-4, "{w:?}");
        assert!((w.p - 0.05224).abs() < 5e-4, "{w:?}");
        assert!(w.diff_low < 0.0 && w.diff_high > 6.0);
        assert_eq!(w.change_pct, Some(30.0));
    }

    /// Shares of `<module>` in runs with 8 samples of exit-time GC outside it (measured): the
    /// longer current runs raise its share by 0.006 %, significantly, and that is no verdict.
    /// Their `changed` function, 18 % more of the run, regressed.
    #[test]
    fn a_significant_but_negligible_change_is_no_verdict() {
        let key = |name: &str| ("prog.py".to_owned(), name.to_owned());
        let runs = |values: &[(f64, f64)]| -> PerRun {
            values
                .iter()
                .map(|&(module, changed)| {
                    BTreeMap::from([
                        (key("<module>"), (module, 17_000)),
                        (key("changed"), (changed, 7000)),
                    ])
                })
                .collect()
        };
        let baseline = runs(&[(99.9527, 39.8), (99.9520, 39.9), (99.9532, 40.0)]);
        let current = runs(&[(99.9590, 46.4), (99.9581, 47.3), (99.9577, 48.0)]);
        let options = RunsOptions {
            normalize: Normalize::Total,
            level: 0.99,
            min_samples: 10.0,
        };
        let module = compare_key(&key("<module>"), &baseline, &current, &options);
        assert!(module.test.unwrap().p < 0.01, "{module:?}");
        assert_eq!(module.verdict, Verdict::Unchanged);
        let changed = compare_key(&key("changed"), &baseline, &current, &options);
        assert_eq!(changed.verdict, Verdict::Regressed);
        let improved = compare_key(&key("changed"), &current, &baseline, &options);
        assert_eq!(improved.verdict, Verdict::Improved);
    }

    #[test]
    fn one_run_a_side_has_no_test() {
        assert!(welch(&spread(&[1.0]), &spread(&[2.0, 3.0]), 0.99).is_none());
    }
}
