//! `flamegraph` and `diff_flamegraph`: a self-contained HTML flame graph in Tachyon's data
//! shape (string table, nodes with name/value/self/filename/lineno/funcname/threads/source/
//! opcodes, stats), and its differential form against a baseline capture.

mod diff;
mod html;
mod tree;

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use serde_json::{json, Map, Value};
use tachyon_plugin_api::{
    Collector, CollectorConfig, ExportContext, Format, Needs, Profile, RegressionDetected, Sample,
    SourceReader, StackCounts, StackId, StackTable, StringIndex, Symbols, ThreadStatus,
};

use diff::{sample_weight, FuncIds, FunctionDiff, Noise, Normalize, PathStats};
use tree::{Key, Tree};

/// Nodes with fewer samples than this fraction of all samples (and of every thread's) are
/// left out, as CPython 3.15.2.
const PRUNE_FRACTION: f64 = 0.001;
/// Opcode names per Python version (tools/gen_opcodes.py, from each interpreter's `dis`).
const OPCODES: &str = include_str!("../../../assets/opcodes.json");

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

pub struct FlamegraphCollector {
    config: CollectorConfig,
    counts: StackCounts,
    status: StatusCounts,
    gc_samples: u64,
    /// Per thread: its status counts and its samples in garbage collection.
    per_thread: BTreeMap<u64, (StatusCounts, u64)>,
}

impl FlamegraphCollector {
    pub fn new(config: &CollectorConfig) -> Result<Self> {
        if let Some(base) = &config.baseline {
            if let (Some(bm), false) = (base.mode, config.option("force_diff").is_some()) {
                if bm != config.mode {
                    bail!(
                        "the baseline was captured in {} mode and this profile is {} mode; comparing them is misleading (use --force-diff to compare anyway)",
                        bm.name(),
                        config.mode.name()
                    );
                }
            }
        }
        Ok(FlamegraphCollector {
            config: config.clone(),
            counts: StackCounts::default(),
            status: StatusCounts::default(),
            gc_samples: 0,
            per_thread: BTreeMap::new(),
        })
    }
}

/// CPython's `_format_function_name`: `func (path:line)` with long paths shortened; the bare
/// name for synthetic frames (`<GC>`, `<native>`).
fn function_name(k: &Key) -> String {
    if is_synthetic(k) {
        k.funcname.clone()
    } else {
        format!("{} ({}:{})", k.funcname, short_path(&k.filename), k.lineno)
    }
}

/// CPython's `_format_module_name`: `func (module:line)`.
fn function_label(k: &Key, module: &str) -> String {
    if is_synthetic(k) {
        k.funcname.clone()
    } else {
        format!("{} ({module}:{})", k.funcname, k.lineno)
    }
}

/// `.../a/b.py` for paths over 50 characters, as CPython shortens them.
fn short_path(path: &str) -> String {
    let parts: Vec<&str> = path.split('/').collect();
    if path.chars().count() > 50 && parts.len() > 2 {
        format!(".../{}", parts[parts.len() - 2..].join("/"))
    } else {
        path.to_owned()
    }
}

fn is_synthetic(k: &Key) -> bool {
    k.filename == "~" && k.lineno == 0
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
fn source_lines(sources: &mut SourceReader, k: &Key) -> Vec<String> {
    if k.lineno <= 0 || is_synthetic(k) {
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

/// What the conversion of a tree to JSON annotates with when comparing.
struct DiffContext<'a> {
    funcs: &'a mut FuncIds,
    cur_paths: &'a HashMap<Vec<u32>, PathStats>,
    base_paths: &'a HashMap<Vec<u32>, PathStats>,
    noise: &'a Noise,
    /// Self-time change of each function over all its lines and paths: (diff, diff %).
    functions: &'a HashMap<(String, String), (f64, f64)>,
}

/// A call tree as CPython 3.15.2's `_convert_to_flamegraph_format` writes it: nodes with
/// name/label/value/self/filename/module/lineno/funcname/threads/thread_values (+source,
/// opcodes), children by value, small nodes pruned.
struct JsonBuilder<'a> {
    tree: &'a Tree,
    strings: StringIndex,
    sources: Option<SourceReader>,
    cwd: Option<PathBuf>,
    /// A node is kept with at least this many samples, or 0.1 % of one thread's.
    min_samples: u64,
}

impl JsonBuilder<'_> {
    fn kept(&self, id: usize) -> bool {
        let n = &self.tree.nodes[id];
        let root = &self.tree.nodes[0];
        let significant_for_thread = n.threads.iter().any(|(tid, &(samples, _))| {
            let thread_total = root.threads.get(tid).map_or(0, |t| t.0);
            samples >= ((thread_total as f64 * PRUNE_FRACTION) as u64).max(1)
        });
        n.value >= self.min_samples || significant_for_thread
    }

    /// The children of `id` that are kept, biggest first.
    fn children(&self, id: usize) -> Vec<usize> {
        let mut kids: Vec<usize> = self.tree.nodes[id]
            .children
            .iter()
            .copied()
            .filter(|&c| self.kept(c))
            .collect();
        // Each name is formatted once, not at every comparison.
        kids.sort_by_cached_key(|&c| {
            let n = &self.tree.nodes[c];
            (
                std::cmp::Reverse(n.value),
                function_name(&self.tree.keys[n.key]),
            )
        });
        kids
    }

    fn node(&mut self, id: usize, path: &[u32], diff: &mut Option<DiffContext<'_>>) -> Value {
        let n = &self.tree.nodes[id];
        let k = &self.tree.keys[n.key];
        let module = module_name(&k.filename, self.cwd.as_deref());
        let mut m = Map::new();
        m.insert("name".into(), json!(self.strings.id(&function_name(k))));
        m.insert(
            "label".into(),
            json!(self.strings.id(&function_label(k, &module))),
        );
        m.insert("value".into(), json!(n.value));
        m.insert("self".into(), json!(n.self_value));
        m.insert("filename".into(), json!(self.strings.id(&k.filename)));
        m.insert("module".into(), json!(self.strings.id(&module)));
        m.insert("lineno".into(), json!(k.lineno));
        m.insert("funcname".into(), json!(self.strings.id(&k.funcname)));
        m.insert(
            "threads".into(),
            json!(n.threads.keys().collect::<Vec<_>>()),
        );
        let tv: Map<String, Value> = n
            .threads
            .iter()
            .map(|(t, (v, s))| (t.to_string(), json!([v, s])))
            .collect();
        m.insert("thread_values".into(), Value::Object(tv));
        if let Some(sources) = self.sources.as_mut() {
            let src: Vec<usize> = source_lines(sources, k)
                .iter()
                .map(|l| self.strings.id(l))
                .collect();
            if !src.is_empty() {
                m.insert("source".into(), json!(src));
            }
        }
        if !n.opcodes.is_empty() {
            let ops: Map<String, Value> = n
                .opcodes
                .iter()
                .map(|(op, c)| (op.to_string(), json!(c)))
                .collect();
            m.insert("opcodes".into(), Value::Object(ops));
        }
        let mut here = path.to_vec();
        if let Some(d) = diff.as_mut() {
            here.push(d.funcs.id(&k.filename, &k.funcname));
            annotate(&mut m, n.value, n.self_value, &here, d);
            if let Some(&(change, change_pct)) =
                d.functions.get(&(k.filename.clone(), k.funcname.clone()))
            {
                m.insert("function_diff".into(), json!(change));
                m.insert("function_diff_pct".into(), json!(change_pct));
            }
        }
        let children: Vec<Value> = self
            .children(id)
            .into_iter()
            .map(|c| self.node(c, &here, diff))
            .collect();
        m.insert("children".into(), Value::Array(children));
        Value::Object(m)
    }

    /// The whole tree: the root's only child promoted when it covers every sample of every
    /// thread (`Program Root: …`), else a `Program Root` over the top-level functions.
    fn root(&mut self, mut diff: Option<DiffContext<'_>>) -> Value {
        let root = &self.tree.nodes[0];
        let kids = self.children(0);
        let covers_all = kids.len() == 1 && {
            let only = &self.tree.nodes[kids[0]];
            only.value == root.value
                && only.threads.len() == root.threads.len()
                && only
                    .threads
                    .iter()
                    .all(|(t, v)| root.threads.get(t).is_some_and(|r| r.0 == v.0))
        };
        if covers_all {
            let mut only = self.node(kids[0], &[], &mut diff);
            for field in ["name", "label"] {
                let text = self
                    .strings
                    .text(only[field].as_u64().unwrap_or(0) as usize)
                    .to_owned();
                only[field] = json!(self.strings.id(&format!("Program Root: {text}")));
            }
            return only;
        }
        let name = self.strings.id("Program Root");
        let children: Vec<Value> = kids
            .into_iter()
            .map(|c| self.node(c, &[], &mut diff))
            .collect();
        let tv: Map<String, Value> = root
            .threads
            .iter()
            .map(|(t, (v, _))| (t.to_string(), json!([v, 0])))
            .collect();
        json!({ "name": name, "label": name, "value": root.value, "children": children,
                "thread_values": tv })
    }
}

/// CPython's `_add_diff_data_to_node`: the path's baseline samples, shared out among the
/// per-line nodes of the path by weight; plus tachyon's inclusive delta and noise test.
fn annotate(
    m: &mut Map<String, Value>,
    value: u64,
    self_value: u64,
    path: &[u32],
    d: &DiffContext<'_>,
) {
    let cur = d.cur_paths.get(path).copied().unwrap_or_default();
    let base = d.base_paths.get(path).copied().unwrap_or_default();
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
    let baseline_self = base_self_raw * d.noise.scale;
    let baseline_total = baseline_self + base_nonself_raw * d.noise.scale;
    let diff = cs - baseline_self;
    let total_diff = ct - baseline_total;
    m.insert("baseline".into(), json!(baseline_self));
    m.insert("baseline_total".into(), json!(baseline_total));
    m.insert("self_time".into(), json!(self_value));
    m.insert("diff".into(), json!(diff));
    m.insert("diff_pct".into(), json!(diff::pct(diff, baseline_self, cs)));
    m.insert("total_diff".into(), json!(total_diff));
    m.insert(
        "total_diff_pct".into(),
        json!(diff::pct(total_diff, baseline_total, ct)),
    );
    m.insert(
        "significant".into(),
        json!(
            d.noise.significant(cs, base_self_raw)
                || d.noise.significant(ct, base_self_raw + base_nonself_raw)
        ),
    );
}

/// CPython's elided flame graph: the baseline (nothing pruned) cut down to the paths that are
/// gone, values in current-run units; ancestors only carry what is kept below them.
fn elided_json(
    base: &Tree,
    funcs: &mut FuncIds,
    elided: &HashSet<Vec<u32>>,
    base_paths: &HashMap<Vec<u32>, PathStats>,
    scale: f64,
    cwd: Option<PathBuf>,
) -> Option<Value> {
    let mut builder = JsonBuilder {
        tree: base,
        strings: StringIndex::default(),
        sources: None,
        cwd,
        min_samples: 1,
    };
    let mut data = builder.root(None);
    let strings = builder.strings;
    let text = |v: &Value, field: &str| {
        v.get(field)
            .and_then(Value::as_u64)
            .map(|i| strings.text(i as usize).to_owned())
    };
    // Keep elided nodes and the ancestors of elided nodes.
    fn prune(
        node: &mut Value,
        path: &[u32],
        funcs: &mut FuncIds,
        elided: &HashSet<Vec<u32>>,
        text: &dyn Fn(&Value, &str) -> Option<String>,
    ) -> bool {
        let mut here = path.to_vec();
        let key = text(node, "filename").zip(text(node, "funcname"));
        if let Some((file, func)) = &key {
            here.push(funcs.id(file, func));
        }
        let is_elided = key.is_some() && elided.contains(&here);
        let mut kept = Vec::new();
        let mut total = 0.0;
        if let Some(Value::Array(children)) = node.get_mut("children").map(Value::take) {
            for mut child in children {
                if prune(&mut child, &here, funcs, elided, text) {
                    total += child["value"].as_f64().unwrap_or(0.0);
                    kept.push(child);
                }
            }
        }
        let has_kept = !kept.is_empty();
        if has_kept && !is_elided {
            node["value"] = json!(total);
            node["self"] = json!(0);
            if let Some(obj) = node.as_object_mut() {
                obj.remove("opcodes");
            }
        }
        node["children"] = Value::Array(kept);
        is_elided || has_kept
    }
    fn metadata(
        node: &mut Value,
        path: &[u32],
        funcs: &mut FuncIds,
        elided: &HashSet<Vec<u32>>,
        base_paths: &HashMap<Vec<u32>, PathStats>,
        scale: f64,
        text: &dyn Fn(&Value, &str) -> Option<String>,
    ) {
        let mut here = path.to_vec();
        let key = text(node, "filename").zip(text(node, "funcname"));
        if let Some((file, func)) = &key {
            here.push(funcs.id(file, func));
        }
        let value = node["value"].as_f64().unwrap_or(0.0);
        let self_value = node["self"].as_f64().unwrap_or(0.0);
        let mut baseline_self = 0.0;
        if key.is_some() && base_paths.contains_key(&here) {
            if elided.contains(&here) {
                baseline_self = self_value * scale;
            }
            node["baseline"] = json!(baseline_self);
            node["baseline_total"] = json!(value * scale);
            node["diff"] = json!(-baseline_self);
        } else {
            node["baseline"] = json!(0);
            node["baseline_total"] = json!(0);
            node["diff"] = json!(0);
        }
        node["self_time"] = json!(0);
        node["diff_pct"] = json!(if baseline_self > 0.0 { -100.0 } else { 0.0 });
        node["elided"] = json!(key.is_some() && elided.contains(&here));
        node["value"] = json!(value * scale);
        node["self"] = json!(self_value * scale);
        if let Some(Value::Array(children)) = node.get_mut("children") {
            for child in children {
                metadata(child, &here, funcs, elided, base_paths, scale, text);
            }
        }
    }
    if !prune(&mut data, &[], funcs, elided, &text) {
        return None;
    }
    metadata(&mut data, &[], funcs, elided, base_paths, scale, &text);
    data["strings"] = json!(strings.strings());
    Some(data)
}

impl FlamegraphCollector {
    fn tree(&self, symbols: &Symbols, strip_bootstrap: bool) -> Tree {
        let mut tree = Tree::new();
        tree.add_stacks(
            symbols,
            &self.counts.stacks,
            self.counts
                .by_thread
                .iter()
                .map(|(&(tid, stack), &w)| (tid, stack, w)),
            strip_bootstrap,
        );
        tree
    }

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
            .map(|(tid, (st, gc))| (tid.to_string(), st.json(*gc)))
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

    fn export_html(&self, ctx: &ExportContext<'_>, path: &Path) -> Result<()> {
        let baseline = self.config.baseline.as_deref();
        let strip_bootstrap =
            baseline.is_some() && self.config.option("keep_bootstrap_frames").is_none();
        let tree = self.tree(ctx.symbols, strip_bootstrap);
        let total = tree.nodes[0].value;
        if total == 0 {
            eprintln!("Warning: No functions found in profiling data. Check if sampling captured any data.");
            return Ok(());
        }
        let cwd = std::env::current_dir().ok();
        let mut builder = JsonBuilder {
            tree: &tree,
            strings: StringIndex::default(),
            sources: Some(SourceReader::new(self.config.sources.clone())),
            cwd: cwd.clone(),
            min_samples: ((total as f64 * PRUNE_FRACTION) as u64).max(1),
        };
        let mut title = "Tachyon Profiler - Flamegraph Report";
        let mut stats = self.stats_json(ctx);
        let mut extra = Map::new();
        let mut functions = Vec::new();
        let mut data = match baseline {
            None => builder.root(None),
            Some(b) => {
                title = "Tachyon Profiler - Differential Flamegraph Report";
                let normalize = self.normalize()?;
                self.warn_on_mismatch(b);
                let base_tree = baseline_tree(b, strip_bootstrap);
                let base_total = base_tree.nodes[0].value;
                let mut funcs = FuncIds::default();
                let cur_paths = diff::path_stats(&tree, &mut funcs);
                let base_paths = diff::path_stats(&base_tree, &mut funcs);
                let noise = Noise {
                    normalize,
                    scale: diff::scale(
                        normalize,
                        total,
                        self.config.interval_us,
                        base_total,
                        b.interval_us,
                    ),
                    cur_total: total as f64,
                    base_total: base_total as f64,
                };
                functions = diff::function_diffs(&cur_paths, &base_paths, &funcs, &noise);
                let by_function: HashMap<(String, String), (f64, f64)> = functions
                    .iter()
                    .map(|f| {
                        (
                            (f.filename.clone(), f.funcname.clone()),
                            (f.diff, f.diff_pct),
                        )
                    })
                    .collect();
                let data = builder.root(Some(DiffContext {
                    funcs: &mut funcs,
                    cur_paths: &cur_paths,
                    base_paths: &base_paths,
                    noise: &noise,
                    functions: &by_function,
                }));
                let elided: HashSet<Vec<u32>> = base_paths
                    .keys()
                    .filter(|p| !cur_paths.contains_key(*p))
                    .cloned()
                    .collect();
                let elided_count = elided
                    .iter()
                    .filter(|p| base_paths[*p].self_samples > 0)
                    .count();
                stats.insert("is_differential".into(), json!(true));
                stats.insert("baseline_samples".into(), json!(base_total));
                stats.insert("current_samples".into(), json!(total));
                stats.insert("baseline_scale".into(), json!(noise.scale));
                stats.insert("diff_normalize".into(), json!(normalize.name()));
                stats.insert("bootstrap_frames_stripped".into(), json!(strip_bootstrap));
                stats.insert("elided_count".into(), json!(elided_count));
                stats.insert("noise_z".into(), json!(diff::NOISE_Z));
                if !elided.is_empty() {
                    if let Some(mut e) = elided_json(
                        &base_tree,
                        &mut funcs,
                        &elided,
                        &base_paths,
                        noise.scale,
                        cwd,
                    ) {
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
                data
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
                self.table(&functions, &mut strings, true),
            );
            extra.insert(
                "improvements".into(),
                self.table(&functions, &mut strings, false),
            );
        }
        if tree.nodes.iter().any(|n| !n.opcodes.is_empty()) {
            if let Some((major, minor, _)) = self.config.python_version {
                let tables: Value = serde_json::from_str(OPCODES)?;
                if let Some(table) = tables.get(format!("{major}.{minor}")) {
                    extra.insert("opcode_mapping".into(), table.clone());
                }
            }
        }
        let threads: BTreeSet<u64> = self.counts.by_thread.keys().map(|(t, _)| *t).collect();
        data["stats"] = Value::Object(stats);
        data["threads"] = json!(threads);
        data["strings"] = json!(strings.strings());
        for (k, v) in extra {
            data[k] = v;
        }
        std::fs::write(path, html::render(title, &data)?)
            .with_context(|| format!("cannot write {}", path.display()))?;
        eprintln!("Flamegraph saved to: {}", ctx.shown_path().display());
        if baseline.is_some() {
            self.report(&data["stats"], &functions)?;
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
        strings: &mut StringIndex,
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

/// The baseline profile as a per-line tree.
fn baseline_tree(base: &Profile, strip_bootstrap: bool) -> Tree {
    let mut tree = Tree::new();
    let mut stacks = StackTable::new();
    let counts: Vec<(u64, StackId, u64)> = base
        .stacks
        .iter()
        .filter(|s| !s.frames.is_empty())
        .map(|s| (s.thread_id, stacks.intern(&s.frames), s.weight))
        .collect();
    tree.add_stacks(&base.symbols, &stacks, counts, strip_bootstrap);
    tree
}

impl Collector for FlamegraphCollector {
    fn collect(&mut self, symbols: &Symbols, sample: &Sample<'_>) {
        if !self.counts.add(sample) {
            return;
        }
        let w = sample.weight();
        self.status.add(sample.status, w);
        let thread = self.per_thread.entry(sample.thread_id).or_default();
        thread.0.add(sample.status, w);
        // <GC> is always the innermost frame.
        if sample.frames.first().is_some_and(|&f| symbols.is_gc(f)) {
            self.gc_samples += w;
            thread.1 += w;
        }
    }

    fn export(&mut self, ctx: &ExportContext<'_>) -> Result<()> {
        let path = ctx.path.context("the flame graph needs an output file")?;
        self.export_html(ctx, path)
    }
}

fn create(config: &CollectorConfig) -> Result<Box<dyn Collector>> {
    Ok(Box::new(FlamegraphCollector::new(config)?))
}

fn create_diff(config: &CollectorConfig) -> Result<Box<dyn Collector>> {
    if config.baseline.is_none() {
        bail!("diff_flamegraph needs a baseline capture: --diff-flamegraph BASELINE.bin");
    }
    create(config)
}

inventory::submit! {
    Format { name: "flamegraph", description: "Self-contained HTML flame graph (search, zoom, inverted view, threads, themes)", extension: "html", options: &[], needs: Needs::NOTHING, create }
}

inventory::submit! {
    Format { name: "diff_flamegraph", description: "Differential HTML flame graph against --diff-flamegraph BASELINE.bin", extension: "html", options: &["fail_on_regression", "force_diff", "diff_normalize", "keep_bootstrap_frames"], needs: Needs { baseline: true, ..Needs::NOTHING }, create: create_diff }
}
