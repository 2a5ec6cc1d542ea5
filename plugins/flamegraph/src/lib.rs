//! `flamegraph` and `diff_flamegraph`: a self-contained HTML flame graph in Tachyon's data
//! shape (string table, nodes with name/value/self/filename/lineno/funcname/threads/source/
//! opcodes, stats), and its differential form against a baseline capture.

mod html;
mod json;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::thread::JoinHandle;

use anyhow::{bail, Context, Result};
use serde_json::{json, Map, Value};
use tachyon_plugin_api::compare::{BaselinePaths, Comparison, FunctionDiff, Normalize, NOISE_Z};
use tachyon_plugin_api::opcodes;
use tachyon_plugin_api::runs::{Compared, Verdict};
use tachyon_plugin_api::{
    AggregateOutput, Aggregating, CallTree, Collector, CollectorConfig, ExportContext, Format,
    FrameKey, Interner, Needs, Profile, RegressionDetected, Sample, SourceReader, StackCounts,
    Symbols, ThreadStatus, ThreadValue, ROOT_THREADS_ONLY,
};

/// Nodes with fewer samples than this fraction of all samples (and of every thread's) are
/// left out, as CPython 3.15.2.
const PRUNE_FRACTION: f64 = 0.001;

/// Capture-feature bits by name, in the order CPython 3.15.2 names mismatches (sorted).
const CAPTURE_FEATURES: [(u8, &str); 5] = [
    (1, "all_threads"),
    (16, "blocking"),
    (4, "gc"),
    (2, "native"),
    (8, "opcodes"),
];

/// Rows in each of the regressions / improvements tables.
const TABLE_ROWS: usize = 10;

#[derive(Default, Clone)]
struct StatusCounts {
    total: u64,
    has_gil: u64,
    on_cpu: u64,
    gil_requested: u64,
    unknown: u64,
    has_exception: u64,
}

impl StatusCounts {
    fn add(&mut self, s: ThreadStatus, w: u64) {
        self.total += w;
        for (bit, field) in [
            (ThreadStatus::HAS_GIL, &mut self.has_gil),
            (ThreadStatus::ON_CPU, &mut self.on_cpu),
            (ThreadStatus::GIL_REQUESTED, &mut self.gil_requested),
            (ThreadStatus::UNKNOWN, &mut self.unknown),
            (ThreadStatus::HAS_EXCEPTION, &mut self.has_exception),
        ] {
            if s.has(bit) {
                *field += w;
            }
        }
    }

    fn json(&self, gc: u64) -> Value {
        let pct = |n: u64| {
            if self.total > 0 {
                n as f64 * 100.0 / self.total as f64
            } else {
                0.0
            }
        };
        json!({
            "has_gil_pct": pct(self.has_gil), "on_cpu_pct": pct(self.on_cpu),
            "gil_requested_pct": pct(self.gil_requested), "has_exception_pct": pct(self.has_exception),
            "gc_pct": pct(gc), "has_gil": self.has_gil, "on_cpu": self.on_cpu, "gil_requested": self.gil_requested,
            "unknown": self.unknown, "has_exception": self.has_exception, "total": self.total,
        })
    }
}

/// One thread's share of the run, for the page's per-thread statistics and thread filter.
#[derive(Default)]
struct ThreadStats {
    status: StatusCounts,
    /// Its samples in garbage collection.
    gc_samples: u64,
    /// The interpreters it was sampled in.
    interpreters: BTreeSet<u32>,
}

/// The flame graph, drawn from aggregated samples ([`Aggregating`] collects them).
pub struct Flamegraph {
    config: CollectorConfig,
    status: StatusCounts,
    gc_samples: u64,
    per_thread: BTreeMap<u64, ThreadStats>,
    /// The baseline's call tree and its side of the comparison, made on a second core from
    /// the moment the collector is made, while the current run is collected and its own
    /// tree built.
    baseline_tree: Option<JoinHandle<(CallTree, BaselinePaths)>>,
}

/// Whether the leading runpy frames are left out: only when two runs are compared, so that
/// captures of CPython's `run` and of tachyon's match (unless --keep-bootstrap-frames).
fn strips_bootstrap(config: &CollectorConfig) -> bool {
    config.baseline.is_some() && config.option("keep_bootstrap_frames").is_none()
}

impl Flamegraph {
    pub fn new(config: &CollectorConfig) -> Result<Self> {
        if let (Some(base), false) = (&config.baseline, config.option("force_diff").is_some()) {
            if let Some(bm) = base.mode.filter(|&bm| bm != config.mode) {
                bail!(
                    "the baseline was captured in {} mode and this profile is {} mode; comparing them is misleading (use --force-diff to compare anyway)",
                    bm.name(),
                    config.mode.name()
                );
            }
            // As CPython 3.15.2: stacks gathered differently (all threads or one, <GC> and
            // <native> frames or not) do not compare.
            if let (Some(b), Some(c)) = (base.capture_features, config.capture_features) {
                let mismatches: Vec<&str> = CAPTURE_FEATURES
                    .iter()
                    .filter(|&&(bit, _)| (b & bit) != (c & bit))
                    .map(|&(_, name)| name)
                    .collect();
                if !mismatches.is_empty() {
                    bail!(
                        "Baseline capture configuration does not match current configuration: {} (use --force-diff to compare anyway)",
                        mismatches.join(", ")
                    );
                }
            }
        }
        let strip_bootstrap = strips_bootstrap(config);
        let baseline_tree = config
            .baseline
            .clone()
            .map(|base| {
                // The elided graph lists the per-thread values of the nodes it writes.
                std::thread::Builder::new().spawn(move || {
                    let tree =
                        base.counts()
                            .tree(&base.symbols, strip_bootstrap, ROOT_THREADS_ONLY);
                    let paths = BaselinePaths::new(&tree);
                    (tree, paths)
                })
            })
            .transpose()
            .context("cannot start a thread for the baseline")?;
        Ok(Flamegraph {
            config: config.clone(),
            status: StatusCounts::default(),
            gc_samples: 0,
            per_thread: BTreeMap::new(),
            baseline_tree,
        })
    }
}

/// The module a file belongs to, named as CPython's `module_utils.extract_module_name` names
/// it: relative to the standard library, a site-packages directory or the project (the
/// current directory), slashes as dots, without `.py`, packages without `__init__`. tachyon
/// has no interpreter of its own to ask for those directories, so it recognises them by
/// their shape (`.../lib/pythonX.Y/`, `.../site-packages/`, `.../dist-packages/`).
fn module_name(filename: &str, cwd: Option<&Path>) -> String {
    if filename.is_empty() {
        return "unknown".to_owned();
    }
    let path = Path::new(filename);
    for marker in ["/site-packages/", "/dist-packages/"] {
        if let Some(at) = filename.rfind(marker) {
            return path_to_module(Path::new(&filename[at + marker.len()..]));
        }
    }
    if let Some(at) = filename.find("/lib/python") {
        let rest = &filename[at + "/lib/python".len()..];
        if let Some(slash) = rest.find('/') {
            let version = &rest[..slash];
            if !version.is_empty() && version.chars().all(|c| c.is_ascii_digit() || c == '.') {
                return path_to_module(Path::new(&rest[slash + 1..]));
            }
        }
    }
    if !filename.starts_with(['<', '[']) {
        if let Some(rel) = cwd.and_then(|c| path.strip_prefix(c).ok()) {
            return path_to_module(rel);
        }
    }
    path_to_module(path)
}

/// CPython's `_path_to_module`.
fn path_to_module(path: &Path) -> String {
    let path = if path.extension().is_some_and(|e| e == "py") {
        path.with_extension("")
    } else {
        path.to_path_buf()
    };
    let mut parts: Vec<String> = path
        .components()
        .filter_map(|c| match c {
            std::path::Component::Normal(p) => Some(p.to_string_lossy().into_owned()),
            _ => None,
        })
        .collect();
    if parts.last().is_some_and(|p| p == "__init__") {
        parts.pop();
    }
    if parts.is_empty() {
        path.file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default()
    } else {
        parts.join(".")
    }
}

/// Up to five source lines around `lineno`, the hit line marked, from the files `sources`
/// may read.
fn source_lines(sources: &mut SourceReader, k: &FrameKey) -> Vec<String> {
    if !k.has_source() {
        return Vec::new();
    }
    let Some(text) = sources.get(&k.filename) else {
        return Vec::new();
    };
    let lines: Vec<&str> = text.lines().collect();
    let at = k.lineno as usize;
    (at.saturating_sub(2).max(1)..=at + 2)
        .filter_map(|n| {
            lines
                .get(n - 1)
                .filter(|l| !l.trim().is_empty())
                .map(|l| format!("{} {n}: {l}", if n == at { "→" } else { " " }))
        })
        .collect()
}

/// What nodes are annotated with beyond CPython's plain fields.
#[derive(Clone, Copy)]
enum Annotation<'a> {
    None,
    /// The current run's nodes: how each compares with the baseline.
    Diff(&'a Comparison),
    /// The baseline's nodes: which paths the current run no longer reaches.
    Elided(&'a Comparison),
}

/// A call tree as CPython 3.15.2's `_convert_to_flamegraph_format` writes it: nodes with
/// name/label/value/self/filename/module/lineno/funcname/threads/thread_values (+source,
/// opcodes), children by value, small nodes pruned.
struct JsonBuilder<'a> {
    tree: &'a CallTree,
    strings: Interner<String>,
    sources: Option<SourceReader>,
    cwd: Option<PathBuf>,
    /// A node is kept with at least this many samples, or 0.1 % of one thread's.
    min_samples: u64,
    /// Sets of runs compared: each function's verdict across the runs, by (file, function).
    verdicts: HashMap<(&'a str, &'a str), &'a Compared>,
    /// Only these tree nodes are written (by node id), when set.
    only: Option<Vec<bool>>,
}

/// The fewest samples a node needs to be kept for its share of `total` samples.
fn pruned_below(total: u64) -> u64 {
    ((total as f64 * PRUNE_FRACTION) as u64).max(1)
}

/// The fewest samples a node may have and be kept ([`JsonBuilder::kept`]): its share of the
/// smallest thread's samples. Smaller nodes need no per-thread values.
fn fewest_kept(counts: &StackCounts) -> u64 {
    let mut per_thread: HashMap<u64, u64> = HashMap::new();
    for &(tid, _, weight) in counts.entries() {
        *per_thread.entry(tid).or_default() += weight;
    }
    per_thread
        .values()
        .map(|&samples| pruned_below(samples))
        .min()
        .unwrap_or(1)
}

impl JsonBuilder<'_> {
    fn kept(&self, id: usize) -> bool {
        let significant_for_thread = self.tree.threads(id).iter().any(|t| {
            let thread_total = self.tree.thread(0, t.tid).map_or(0, |r| r.inclusive);
            t.inclusive >= pruned_below(thread_total)
        });
        self.tree.nodes[id].value >= self.min_samples || significant_for_thread
    }

    /// The children of `id` that are kept, biggest first.
    fn children(&self, id: usize) -> Vec<usize> {
        let mut kids: Vec<usize> = self
            .tree
            .children(id)
            .iter()
            .map(|&c| c as usize)
            .filter(|&c| self.kept(c) && self.only.as_ref().is_none_or(|only| only[c]))
            .collect();
        // Each name is formatted once, not at every comparison.
        kids.sort_by_cached_key(|&c| {
            let n = &self.tree.nodes[c];
            (
                std::cmp::Reverse(n.value),
                self.tree.keys.get(n.key).label(),
            )
        });
        kids
    }

    /// Node `id` as a JSON object, its name and label after `prefix`.
    fn node(&mut self, id: usize, with: Annotation<'_>, prefix: &str, out: &mut Vec<u8>) {
        out.push(b'{');
        self.fields(id, with, prefix, out);
        out.push(b'}');
    }

    /// Node `id`'s fields, children last.
    fn fields(&mut self, id: usize, with: Annotation<'_>, prefix: &str, out: &mut Vec<u8>) {
        let n = &self.tree.nodes[id];
        let k = self.tree.keys.get(n.key);
        let module = module_name(&k.filename, self.cwd.as_deref());
        let name = self.strings.id(&format!("{prefix}{}", k.label()));
        let label = self
            .strings
            .id(&format!("{prefix}{}", k.label_with(&module)));
        json::field(out, "name", &name);
        json::field(out, "label", &label);
        json::field(out, "value", &n.value);
        json::field(out, "self", &n.self_value);
        json::field(out, "filename", &self.strings.id(&k.filename));
        json::field(out, "module", &self.strings.id(&module));
        json::field(out, "lineno", &i64::from(k.lineno));
        json::field(out, "funcname", &self.strings.id(&k.funcname));
        let threads = self.tree.threads(id);
        json::key(out, "threads");
        json::list(out, threads, |out, t| json::put(out, &t.tid));
        thread_values_field(out, threads, |t| t.self_value);
        if let Some(sources) = self.sources.as_mut() {
            let src: Vec<usize> = source_lines(sources, k)
                .iter()
                .map(|l| self.strings.id(l))
                .collect();
            if !src.is_empty() {
                json::key(out, "source");
                json::list(out, &src, json::put);
            }
        }
        let opcodes = self.tree.opcodes(id);
        if !opcodes.is_empty() {
            json::key(out, "opcodes");
            out.push(b'{');
            for &(op, count) in opcodes {
                json::field(out, &op.to_string(), &count);
            }
            out.push(b'}');
        }
        match with {
            Annotation::None => {}
            Annotation::Diff(d) => {
                let here = d.current_nodes[id];
                let diff = d.node(here, n.value, n.self_value);
                // Across sets of runs the verdict, not one pair's noise test, colours a node.
                let verdict = self
                    .verdicts
                    .get(&(k.filename.as_str(), k.funcname.as_str()));
                let significant = verdict.map_or(diff.significant, |c| {
                    matches!(c.verdict, Verdict::Regressed | Verdict::Improved)
                });
                // CPython's `_add_diff_data_to_node` fields, plus tachyon's inclusive delta
                // and noise test.
                json::field(out, "baseline", &diff.baseline_self);
                json::field(out, "baseline_total", &diff.baseline_total);
                json::field(out, "self_time", &n.self_value);
                json::field(out, "diff", &diff.diff);
                json::field(out, "diff_pct", &diff.diff_pct);
                json::field(out, "total_diff", &diff.total_diff);
                json::field(out, "total_diff_pct", &diff.total_diff_pct);
                json::field(out, "significant", &significant);
                if let Some(f) = d.function(here) {
                    json::field(out, "function_diff", &f.diff);
                    json::field(out, "function_diff_pct", &f.diff_pct);
                }
                if let Some(c) = verdict {
                    json::field(out, "run_verdict", &c.verdict.name());
                    if let Some(w) = c.test {
                        json::key(out, "run_change");
                        let change = [w.change_pct, w.change_low_pct, w.change_high_pct];
                        json::list(out, &change, json::put);
                    }
                }
            }
            Annotation::Elided(d) => {
                json::field(out, "elided", &d.is_elided(d.baseline_nodes[id]));
            }
        }
        let kids = self.children(id);
        self.children_field(&kids, with, out);
    }

    fn children_field(&mut self, kids: &[usize], with: Annotation<'_>, out: &mut Vec<u8>) {
        json::key(out, "children");
        out.push(b'[');
        for &child in kids {
            if !out.ends_with(b"[") {
                out.push(b',');
            }
            self.node(child, with, "", out);
        }
        out.push(b']');
    }

    /// The whole tree's fields: the root's only child promoted when it covers every sample
    /// of every thread (`Program Root: …`), else a `Program Root` over the top-level
    /// functions. Whether they include the threads list (a promoted child's).
    fn root(&mut self, with: Annotation<'_>, out: &mut Vec<u8>) -> bool {
        let root = &self.tree.nodes[0];
        let kids = self.children(0);
        let covers_all = kids.len() == 1 && {
            let (only, all) = (self.tree.threads(kids[0]), self.tree.threads(0));
            self.tree.nodes[kids[0]].value == root.value
                && only.len() == all.len()
                && only
                    .iter()
                    .zip(all)
                    .all(|(t, r)| (t.tid, t.inclusive) == (r.tid, r.inclusive))
        };
        if covers_all {
            self.fields(kids[0], with, "Program Root: ", out);
            return true;
        }
        let name = self.strings.id("Program Root");
        json::field(out, "name", &name);
        json::field(out, "label", &name);
        json::field(out, "value", &root.value);
        self.children_field(&kids, with, out);
        thread_values_field(out, self.tree.threads(0), |_| 0);
        false
    }
}

/// `"thread_values": {tid: [inclusive, self], …}`, self as `self_of` says.
fn thread_values_field(
    out: &mut Vec<u8>,
    threads: &[ThreadValue],
    self_of: impl Fn(&ThreadValue) -> u64,
) {
    json::key(out, "thread_values");
    out.push(b'{');
    for t in threads {
        json::key(out, &t.tid.to_string());
        json::list(out, &[t.inclusive, self_of(t)], json::put);
    }
    out.push(b'}');
}

/// The baseline's nodes on an elided path or above one: only they are written.
fn elided_nodes(base: &CallTree, comparison: &Comparison) -> Vec<bool> {
    let mut keep: Vec<bool> = (0..base.nodes.len())
        .map(|id| comparison.is_elided(comparison.baseline_nodes[id]))
        .collect();
    // A node is made under an existing one, so its children have higher ids: deepest first.
    for id in (0..base.nodes.len()).rev() {
        if base.children(id).iter().any(|&c| keep[c as usize]) {
            keep[id] = true;
        }
    }
    keep
}

/// CPython's elided flame graph: the baseline (nothing pruned) cut down to the paths that are
/// gone, values in current-run units; ancestors only carry what is kept below them. Only
/// the nodes written get their per-thread values.
fn elided_json(
    base: &mut CallTree,
    comparison: &Comparison,
    cwd: Option<PathBuf>,
) -> Result<Option<Value>> {
    let written = elided_nodes(base, comparison);
    base.list_threads(&written);
    let mut builder = JsonBuilder {
        tree: base,
        strings: Interner::default(),
        sources: None,
        cwd,
        min_samples: 1,
        verdicts: HashMap::new(),
        only: Some(written),
    };
    let mut text = b"{".to_vec();
    builder.root(Annotation::Elided(comparison), &mut text);
    text.push(b'}');
    // Pruned and rescaled below as a value: it is rarely more than a few paths.
    let mut data: Value = serde_json::from_slice(&text)?;
    // A frame node carries "elided"; the synthetic "Program Root" does not.
    let is_elided = |node: &Value| node.get("elided").and_then(Value::as_bool);
    // Keep elided nodes and the ancestors of elided nodes.
    fn prune(node: &mut Value, is_elided: &dyn Fn(&Value) -> Option<bool>) -> bool {
        let elided_here = is_elided(node) == Some(true);
        let mut kept = Vec::new();
        let mut total = 0.0;
        if let Some(Value::Array(children)) = node.get_mut("children").map(Value::take) {
            for mut child in children {
                if prune(&mut child, is_elided) {
                    total += child["value"].as_f64().unwrap_or(0.0);
                    kept.push(child);
                }
            }
        }
        let has_kept = !kept.is_empty();
        if has_kept && !elided_here {
            node["value"] = json!(total);
            node["self"] = json!(0);
            if let Some(obj) = node.as_object_mut() {
                obj.remove("opcodes");
            }
        }
        node["children"] = Value::Array(kept);
        elided_here || has_kept
    }
    fn metadata(node: &mut Value, scale: f64, is_elided: &dyn Fn(&Value) -> Option<bool>) {
        let value = node["value"].as_f64().unwrap_or(0.0);
        let self_value = node["self"].as_f64().unwrap_or(0.0);
        let elided_here = is_elided(node);
        let baseline_self = if elided_here == Some(true) {
            self_value * scale
        } else {
            0.0
        };
        let in_baseline = elided_here.is_some();
        node["baseline"] = json!(baseline_self);
        node["baseline_total"] = json!(if in_baseline { value * scale } else { 0.0 });
        node["diff"] = json!(0.0 - baseline_self);
        node["self_time"] = json!(0);
        node["diff_pct"] = json!(if baseline_self > 0.0 { -100.0 } else { 0.0 });
        node["elided"] = json!(elided_here == Some(true));
        node["value"] = json!(value * scale);
        node["self"] = json!(self_value * scale);
        if let Some(Value::Array(children)) = node.get_mut("children") {
            for child in children {
                metadata(child, scale, is_elided);
            }
        }
    }
    if !prune(&mut data, &is_elided) {
        return Ok(None);
    }
    metadata(&mut data, comparison.noise.scale, &is_elided);
    data["strings"] = json!(builder.strings.list());
    Ok(Some(data))
}

impl Flamegraph {
    fn stats_json(&self, ctx: &ExportContext<'_>) -> Map<String, Value> {
        let s = ctx.stats;
        let mut m = Map::new();
        m.insert(
            "sample_interval_usec".into(),
            json!(self.config.interval_us),
        );
        m.insert("duration_sec".into(), json!(s.duration_sec));
        m.insert("sample_rate".into(), json!(s.sample_rate));
        m.insert("error_rate".into(), json!(s.error_rate));
        m.insert("missed_samples".into(), json!(s.missed_samples));
        // CPython stores the mode's number (PROFILING_MODE_*).
        m.insert("mode".into(), json!(self.config.mode as u32));
        m.insert("thread_stats".into(), self.status.json(self.gc_samples));
        let per_thread: Map<String, Value> = self
            .per_thread
            .iter()
            .map(|(tid, t)| (tid.to_string(), t.status.json(t.gc_samples)))
            .collect();
        m.insert("per_thread_stats".into(), Value::Object(per_thread));
        m.insert(
            "python_version".into(),
            json!(self
                .config
                .python_version
                .map(|(a, b, c)| format!("{a}.{b}.{c}"))),
        );
        m
    }

    fn normalize(&self) -> Result<Normalize> {
        let text = self.config.option("diff_normalize").unwrap_or("interval");
        Normalize::parse(text).with_context(|| {
            format!("unknown --diff-normalize '{text}' (expected interval or total)")
        })
    }

    fn export_html(
        &mut self,
        counts: &StackCounts,
        ctx: &ExportContext<'_>,
        path: &Path,
    ) -> Result<()> {
        let baseline = self.config.baseline.as_deref();
        let strip_bootstrap = strips_bootstrap(&self.config);
        let tree = counts.tree(ctx.symbols, strip_bootstrap, fewest_kept(counts));
        let total = tree.nodes[0].value;
        if total == 0 {
            eprintln!("Warning: No functions found in profiling data. Check if sampling captured any data.");
            return Ok(());
        }
        let cwd = std::env::current_dir().ok();
        let mut builder = JsonBuilder {
            tree: &tree,
            strings: Interner::default(),
            sources: Some(SourceReader::new(self.config.sources.clone())),
            cwd: cwd.clone(),
            min_samples: pruned_below(total),
            verdicts: self
                .config
                .runs
                .iter()
                .flat_map(|r| &r.functions)
                .map(|c| ((c.filename.as_str(), c.name.as_str()), c))
                .collect(),
            only: None,
        };
        let mut title = "Tachyon Profiler - Flamegraph Report";
        let mut stats = self.stats_json(ctx);
        let mut extra = Map::new();
        let mut functions: &[FunctionDiff] = &[];
        let base_tree = self.baseline_tree.take().map(|building| {
            building
                .join()
                .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
        });
        let mut comparison = match baseline.zip(base_tree) {
            None => None,
            Some((b, (base_tree, base_paths))) => {
                self.warn_on_mismatch(b);
                let comparison = Comparison::against(
                    &tree,
                    self.config.interval_us,
                    base_paths,
                    b.interval_us,
                    self.normalize()?,
                );
                Some((comparison, base_tree))
            }
        };
        // The page's data: the tree's fields, then the rest (below).
        let mut data = b"{".to_vec();
        let wrote_threads = match &mut comparison {
            None => builder.root(Annotation::None, &mut data),
            Some((comparison, base_tree)) => {
                title = "Tachyon Profiler - Differential Flamegraph Report";
                functions = &comparison.functions;
                let wrote_threads = builder.root(Annotation::Diff(comparison), &mut data);
                let elided_count = comparison
                    .elided()
                    .filter(|&p| comparison.baseline[p as usize].self_samples > 0)
                    .count();
                let base_total = base_tree.nodes[0].value;
                stats.insert("is_differential".into(), json!(true));
                stats.insert("baseline_samples".into(), json!(base_total));
                stats.insert("current_samples".into(), json!(total));
                stats.insert("baseline_scale".into(), json!(comparison.noise.scale));
                stats.insert(
                    "diff_normalize".into(),
                    json!(comparison.noise.normalize.name()),
                );
                stats.insert("bootstrap_frames_stripped".into(), json!(strip_bootstrap));
                stats.insert("elided_count".into(), json!(elided_count));
                stats.insert("noise_z".into(), json!(NOISE_Z));
                if let Some(runs) = &self.config.runs {
                    stats.insert("run_confidence".into(), json!(runs.level * 100.0));
                    stats.insert("baseline_runs".into(), json!(runs.baseline_runs));
                    stats.insert("current_runs".into(), json!(runs.current_runs));
                }
                if comparison.elided().next().is_some() {
                    if let Some(mut e) = elided_json(base_tree, comparison, cwd)? {
                        let mut estats = Map::new();
                        for key in [
                            "sample_interval_usec",
                            "duration_sec",
                            "sample_rate",
                            "error_rate",
                            "missed_samples",
                            "mode",
                        ] {
                            estats.insert(key.into(), stats[key].clone());
                        }
                        estats.insert("is_differential".into(), json!(true));
                        estats.insert("baseline_samples".into(), json!(base_total));
                        estats.insert("current_samples".into(), json!(total));
                        e["stats"] = Value::Object(estats);
                        stats.insert("elided_flamegraph".into(), e);
                    }
                }
                wrote_threads
            }
        };
        let mut strings = builder.strings;
        if let Some(sources) = builder.sources.as_ref() {
            sources.report();
            let skipped: Vec<&String> = sources.skipped().keys().collect();
            if !skipped.is_empty() {
                stats.insert("skipped_sources".into(), json!(skipped));
            }
        }
        if baseline.is_some() {
            extra.insert(
                "regressions".into(),
                self.table(functions, &mut strings, true),
            );
            extra.insert(
                "improvements".into(),
                self.table(functions, &mut strings, false),
            );
        }
        if (0..tree.nodes.len()).any(|n| !tree.opcodes(n).is_empty()) {
            if let Some(table) = self
                .config
                .python_version
                .and_then(|(major, minor, _)| opcodes::table_json(major, minor))
            {
                extra.insert("opcode_mapping".into(), table);
            }
        }
        let threads: BTreeSet<u64> = counts.threads().into_iter().collect();
        let stats = Value::Object(stats);
        json::field(&mut data, "stats", &stats);
        if !wrote_threads {
            json::field(&mut data, "threads", &threads);
        }
        if self
            .per_thread
            .values()
            .any(|t| t.interpreters.iter().any(|&id| id != 0))
        {
            // The thread filter's labels, once a sub-interpreter was sampled: which
            // interpreters each thread ran in.
            let labels: Map<String, Value> = threads
                .iter()
                .map(|tid| {
                    let ids: Vec<String> = self
                        .per_thread
                        .get(tid)
                        .into_iter()
                        .flat_map(|t| &t.interpreters)
                        .map(u32::to_string)
                        .collect();
                    let noun = if ids.len() == 1 {
                        "interpreter"
                    } else {
                        "interpreters"
                    };
                    let label = format!("Thread {tid} ({noun} {})", ids.join(", "));
                    (tid.to_string(), Value::String(label))
                })
                .collect();
            json::field(&mut data, "thread_labels", &labels);
        }
        json::field(&mut data, "strings", &strings.list());
        for (k, v) in extra {
            json::field(&mut data, &k, &v);
        }
        data.push(b'}');
        std::fs::write(path, html::render(title, &data)?)
            .with_context(|| format!("cannot write {}", path.display()))?;
        eprintln!("Flamegraph saved to: {}", ctx.shown_path().display());
        if baseline.is_some() {
            self.report(&stats, functions)?;
        }
        Ok(())
    }

    /// Say so when the two captures were taken differently enough to mislead.
    fn warn_on_mismatch(&self, base: &Profile) {
        if base.interval_us != self.config.interval_us {
            eprintln!(
                "Warning: sample_interval_usec differs: baseline {} us, current {} us (the baseline is rescaled)",
                base.interval_us, self.config.interval_us
            );
        }
        if let (Some(b), Some(c)) = (base.python_version, self.config.python_version) {
            if b != c {
                eprintln!(
                    "Warning: python_version differs: baseline {}.{}.{}, current {}.{}.{}",
                    b.0, b.1, b.2, c.0, c.1, c.2
                );
            }
        }
    }

    /// Biggest significant self-time changes per function, in ms.
    fn table(
        &self,
        functions: &[FunctionDiff],
        strings: &mut Interner<String>,
        regressions: bool,
    ) -> Value {
        let ms = self.config.interval_us as f64 / 1000.0;
        let mut rows: Vec<&FunctionDiff> = functions
            .iter()
            .filter(|f| f.significant && (f.diff > 0.0) == regressions && f.diff != 0.0)
            .collect();
        rows.sort_by(|a, b| b.diff.abs().total_cmp(&a.diff.abs()));
        rows.truncate(TABLE_ROWS);
        json!(rows
            .iter()
            .map(|f| json!({
                "funcname": strings.id(&f.funcname), "filename": strings.id(&f.filename),
                "baseline_ms": f.baseline_self * ms, "current_ms": f.current_self * ms,
                "diff_ms": f.diff * ms, "diff_pct": f.diff_pct,
            }))
            .collect::<Vec<_>>())
    }

    /// Print the top changes; with --fail-on-regression, fail when one passes the threshold.
    fn report(&self, stats: &Value, functions: &[FunctionDiff]) -> Result<()> {
        let ms = self.config.interval_us as f64 / 1000.0;
        let mut rows: Vec<&FunctionDiff> = functions
            .iter()
            .filter(|f| f.significant && f.diff != 0.0)
            .collect();
        rows.sort_by(|a, b| b.diff.total_cmp(&a.diff));
        eprintln!(
            "Baseline scaled by {:.3} ({} normalisation); {} elided stack(s)",
            stats["baseline_scale"].as_f64().unwrap_or(1.0),
            stats["diff_normalize"].as_str().unwrap_or("interval"),
            stats["elided_count"]
        );
        for f in rows.iter().take(5).filter(|f| f.diff > 0.0) {
            eprintln!(
                "  regression  {:+9.1} ms ({:+7.1}%)  {} ({})",
                f.diff * ms,
                f.diff_pct,
                f.funcname,
                f.filename
            );
        }
        for f in rows.iter().rev().take(5).filter(|f| f.diff < 0.0) {
            eprintln!(
                "  improvement {:+9.1} ms ({:+7.1}%)  {} ({})",
                f.diff * ms,
                f.diff_pct,
                f.funcname,
                f.filename
            );
        }
        if let Some(limit) = self.config.option("fail_on_regression") {
            let limit: f64 = limit
                .parse()
                .with_context(|| format!("invalid --fail-on-regression '{limit}'"))?;
            if let Some(worst) = rows.iter().find(|f| f.diff > 0.0 && f.diff_pct >= limit) {
                return Err(RegressionDetected(format!(
                    "{} ({}) regressed by {:.1}% (+{:.1} ms), over the --fail-on-regression limit of {limit}%",
                    worst.funcname, worst.filename, worst.diff_pct, worst.diff * ms
                ))
                .into());
            }
        }
        Ok(())
    }
}

impl AggregateOutput for Flamegraph {
    fn observe(&mut self, symbols: &Symbols, sample: &Sample<'_>) {
        let w = sample.weight();
        self.status.add(sample.status, w);
        let thread = self.per_thread.entry(sample.thread_id).or_default();
        thread.status.add(sample.status, w);
        thread.interpreters.insert(sample.interpreter_id);
        // <GC> is always the innermost frame.
        if sample.frames.first().is_some_and(|&f| symbols.is_gc(f)) {
            self.gc_samples += w;
            thread.gc_samples += w;
        }
    }

    fn export(&mut self, counts: &StackCounts, ctx: &ExportContext<'_>) -> Result<()> {
        let path = ctx.path.context("the flame graph needs an output file")?;
        self.export_html(counts, ctx, path)
    }
}

fn create(config: &CollectorConfig) -> Result<Box<dyn Collector>> {
    Ok(Box::new(Aggregating::new(Flamegraph::new(config)?)))
}

fn create_diff(config: &CollectorConfig) -> Result<Box<dyn Collector>> {
    if config.baseline.is_none() {
        bail!("diff_flamegraph needs a baseline capture: --diff-flamegraph BASELINE.bin");
    }
    create(config)
}

inventory::submit! {
    Format { name: "flamegraph", description: "Self-contained HTML flame graph (search, zoom, inverted view, threads, themes)", extension: "html", options: &[], needs: Needs { opcodes: true, ..Needs::NOTHING }, create }
}

inventory::submit! {
    Format { name: "diff_flamegraph", description: "Differential HTML flame graph against --diff-flamegraph BASELINE.bin", extension: "html", options: &["fail_on_regression", "force_diff", "diff_normalize", "keep_bootstrap_frames"], needs: Needs { baseline: true, opcodes: true, ..Needs::NOTHING }, create: create_diff }
}
