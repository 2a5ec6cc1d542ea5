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
}

/// A node's ids in the page's string list.
struct NodeStrings {
    name: usize,
    label: usize,
    filename: usize,
    module: usize,
    funcname: usize,
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

    /// Whether node `id` is written: kept, and among `only` when that is set.
    fn shown(&self, id: usize) -> bool {
        self.kept(id) && self.only.as_ref().is_none_or(|only| only[id])
    }

    /// The children of `id` that are kept, biggest first.
    fn children(&self, id: usize) -> Vec<usize> {
        let mut kids: Vec<usize> = self
            .tree
            .children(id)
            .iter()
            .map(|&c| c as usize)
            .filter(|&c| self.shown(c))
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

    /// Node `id`'s strings, interned in this order whatever order they are written in (the
    /// page's string list is in the order they were first met); its name and label after
    /// `prefix`.
    fn node_strings(&mut self, id: usize, prefix: &str) -> NodeStrings {
        let k = self.tree.keys.get(self.tree.nodes[id].key);
        let module = module_name(&k.filename, self.cwd.as_deref());
        NodeStrings {
            name: self.strings.id(&format!("{prefix}{}", k.label())),
            label: self
                .strings
                .id(&format!("{prefix}{}", k.label_with(&module))),
            filename: self.strings.id(&k.filename),
            module: self.strings.id(&module),
            funcname: self.strings.id(&k.funcname),
        }
    }

    /// Node `id`'s fields, children last.
    fn fields(&mut self, id: usize, with: Annotation<'_>, prefix: &str, out: &mut Vec<u8>) {
        let n = &self.tree.nodes[id];
        let k = self.tree.keys.get(n.key);
        let strings = self.node_strings(id, prefix);
        json::field(out, "name", &strings.name);
        json::field(out, "label", &strings.label);
        json::field(out, "value", &n.value);
        json::field(out, "self", &n.self_value);
        json::field(out, "filename", &strings.filename);
        json::field(out, "module", &strings.module);
        json::field(out, "lineno", &i64::from(k.lineno));
        json::field(out, "funcname", &strings.funcname);
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
        if let Some(only) = self.promoted(&kids) {
            self.fields(only, with, "Program Root: ", out);
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

impl JsonBuilder<'_> {
    /// The root's only child, when it covers every sample of every thread: it stands for
    /// the root (`Program Root: …`).
    fn promoted(&self, kids: &[usize]) -> Option<usize> {
        let &[only] = kids else { return None };
        let (theirs, all) = (self.tree.threads(only), self.tree.threads(0));
        let covers_all = self.tree.nodes[only].value == self.tree.nodes[0].value
            && theirs.len() == all.len()
            && theirs
                .iter()
                .zip(all)
                .all(|(t, r)| (t.tid, t.inclusive) == (r.tid, r.inclusive));
        covers_all.then_some(only)
    }

    /// The elided graph (see [`elided_json`]); `None` when no path is elided.
    fn elided_root(&mut self, d: &Comparison, stats: &Map<String, Value>) -> Option<Vec<u8>> {
        let tree = self.tree;
        let is_elided = |id: usize| id != 0 && d.is_elided(d.baseline_nodes[id]);
        // Each written node's samples: an elided node keeps its own, a node above one
        // carries the sum of its written children's (children have higher ids).
        let mut pruned = vec![0u64; tree.nodes.len()];
        for id in (0..tree.nodes.len()).rev() {
            pruned[id] = if is_elided(id) {
                tree.nodes[id].value
            } else {
                let kids = tree.children(id).iter().map(|&c| c as usize);
                kids.filter(|&c| self.shown(c)).map(|c| pruned[c]).sum()
            };
        }
        let kids = self.children(0);
        let top = self.promoted(&kids);
        let kept = top.map_or(!kids.is_empty(), |only| {
            is_elided(only) || !self.children(only).is_empty()
        });
        if !kept {
            return None;
        }
        let written = Elided {
            comparison: d,
            pruned: &pruned,
            stats,
        };
        let mut out = Vec::new();
        match top {
            Some(only) => self.elided_node(only, &written, "Program Root: ", true, &mut out),
            None => {
                // A synthetic root: no frame, no self samples, not in the baseline.
                let name = self.strings.id("Program Root");
                out.push(b'{');
                json::field(&mut out, "baseline", &0.0);
                json::field(&mut out, "baseline_total", &0.0);
                self.elided_children(&kids, &written, &mut out);
                json::field(&mut out, "diff", &0.0);
                json::field(&mut out, "diff_pct", &0.0);
                json::field(&mut out, "elided", &false);
                json::field(&mut out, "label", &name);
                json::field(&mut out, "name", &name);
                json::field(&mut out, "self", &0.0);
                json::field(&mut out, "self_time", &0);
                self.elided_top_fields(&written, &mut out);
                sorted_thread_values(&mut out, tree.threads(0), |_| 0);
                json::field(&mut out, "value", &(pruned[0] as f64 * d.noise.scale));
                out.push(b'}');
            }
        }
        Some(out)
    }

    /// Frame node `id` of the elided graph, its keys in serde_json's (sorted) order; its
    /// strings interned in the order [`JsonBuilder::fields`] interns them.
    fn elided_node(
        &mut self,
        id: usize,
        e: &Elided<'_>,
        prefix: &str,
        top: bool,
        out: &mut Vec<u8>,
    ) {
        let tree = self.tree;
        let n = &tree.nodes[id];
        let k = tree.keys.get(n.key);
        let strings = self.node_strings(id, prefix);
        let scale = e.comparison.noise.scale;
        let elided = e.comparison.is_elided(e.comparison.baseline_nodes[id]);
        // A node above an elided one keeps no self samples and no opcodes of its own.
        let own = if elided { n.self_value as f64 } else { 0.0 };
        let baseline = if elided { own * scale } else { 0.0 };
        let value = e.pruned[id] as f64 * scale;
        out.push(b'{');
        json::field(out, "baseline", &baseline);
        json::field(out, "baseline_total", &value);
        let kids = self.children(id);
        self.elided_children(&kids, e, out);
        json::field(out, "diff", &(0.0 - baseline));
        json::field(out, "diff_pct", &if baseline > 0.0 { -100.0 } else { 0.0 });
        json::field(out, "elided", &elided);
        json::field(out, "filename", &strings.filename);
        json::field(out, "funcname", &strings.funcname);
        json::field(out, "label", &strings.label);
        json::field(out, "lineno", &i64::from(k.lineno));
        json::field(out, "module", &strings.module);
        json::field(out, "name", &strings.name);
        let opcodes = tree.opcodes(id);
        if elided && !opcodes.is_empty() {
            let mut by_name: Vec<(String, u64)> = opcodes
                .iter()
                .map(|&(op, count)| (op.to_string(), count))
                .collect();
            by_name.sort();
            json::key(out, "opcodes");
            out.push(b'{');
            for (op, count) in &by_name {
                json::field(out, op, count);
            }
            out.push(b'}');
        }
        json::field(out, "self", &(own * scale));
        json::field(out, "self_time", &0);
        if top {
            self.elided_top_fields(e, out);
        }
        let threads = tree.threads(id);
        sorted_thread_values(out, threads, |t| t.self_value);
        json::key(out, "threads");
        json::list(out, threads, |out, t| json::put(out, &t.tid));
        json::field(out, "value", &value);
        out.push(b'}');
    }

    fn elided_children(&mut self, kids: &[usize], e: &Elided<'_>, out: &mut Vec<u8>) {
        json::key(out, "children");
        out.push(b'[');
        for (i, &child) in kids.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            self.elided_node(child, e, "", false, out);
        }
        out.push(b']');
    }

    /// The top node's `stats` and `strings`: its keys sort after `children`, so every string
    /// of the graph is interned by then.
    fn elided_top_fields(&self, e: &Elided<'_>, out: &mut Vec<u8>) {
        json::field(out, "stats", &Value::Object(e.stats.clone()));
        json::field(out, "strings", &self.strings.list());
    }
}

/// What writing the elided graph's nodes reads.
struct Elided<'a> {
    comparison: &'a Comparison,
    /// Each written node's samples once the graph is cut down.
    pruned: &'a [u64],
    /// The graph's own `stats`.
    stats: &'a Map<String, Value>,
}

/// `"thread_values"` as a serde_json map writes it: the thread ids as text, in text order.
fn sorted_thread_values(
    out: &mut Vec<u8>,
    threads: &[ThreadValue],
    self_of: impl Fn(&ThreadValue) -> u64,
) {
    let mut sorted = threads.to_vec();
    sorted.sort_by_cached_key(|t| t.tid.to_string());
    thread_values_field(out, &sorted, self_of);
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

/// CPython's elided flame graph (`stats.elided_flamegraph`): the baseline, nothing pruned,
/// cut down to the paths that are gone and the nodes above them, values in current-run
/// units; a node above one carries only what is kept below it. Only the nodes written get
/// their per-thread values. Written as text, keys in the order serde_json's maps write them
/// (sorted), as when it was made as a `serde_json::Value`: two short runs of a program of
/// many stacks elide hundreds of thousands of paths, which as values took gigabytes.
fn elided_json(
    base: &mut CallTree,
    comparison: &Comparison,
    cwd: Option<PathBuf>,
    stats: &Map<String, Value>,
) -> Option<Vec<u8>> {
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
    builder.elided_root(comparison, stats)
}

/// `map` as serde_json writes it (keys in order), with `raw` JSON text as the value of `key`.
fn object_with(out: &mut Vec<u8>, map: &Map<String, Value>, key: &str, raw: Option<&[u8]>) {
    out.push(b'{');
    let mut pending = raw;
    for (k, v) in map {
        if let Some(text) = pending.filter(|_| k.as_str() > key) {
            json::key(out, key);
            out.extend_from_slice(text);
            pending = None;
        }
        json::field(out, k, v);
    }
    if let Some(text) = pending {
        json::key(out, key);
        out.extend_from_slice(text);
    }
    out.push(b'}');
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
        let mut elided: Option<Vec<u8>> = None;
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
                    elided = elided_json(base_tree, comparison, cwd, &estats);
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
        json::key(&mut data, "stats");
        object_with(&mut data, &stats, "elided_flamegraph", elided.as_deref());
        let stats = Value::Object(stats);
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
