//! `flamegraph` and `diff_flamegraph`: a self-contained HTML flame graph in Tachyon's data
//! shape (string table, nodes with name/value/self/filename/lineno/funcname/threads/source/
//! opcodes, stats), and its differential form against a baseline capture.

mod diff;
mod html;
mod tree;

use std::collections::BTreeSet;
use std::path::Path;

use anyhow::{bail, Context, Result};
use serde_json::{json, Map, Value};
use tachyon_plugin_api::{
    Collector, CollectorConfig, ExportContext, Format, FxHashMap, Profile, RegressionDetected,
    Sample, SourceReader, StackId, StackTable, StringIndex, Symbols, ThreadStatus,
};

use diff::Comparison;
use tree::{Key, Tree};

/// Children with fewer samples than this fraction of the total are left out (as Tachyon).
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
    stacks: StackTable,
    counts: FxHashMap<(u64, StackId), u64>,
    status: StatusCounts,
    gc_samples: u64,
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
            stacks: StackTable::new(),
            counts: FxHashMap::default(),
            status: StatusCounts::default(),
            gc_samples: 0,
        })
    }
}

/// A node's label: `func (path:line)`, the bare name for synthetic frames, `all` at the root.
fn node_label(id: usize, k: &Key) -> String {
    if id == 0 {
        "all".to_owned()
    } else if is_synthetic(k) {
        k.funcname.clone()
    } else if k.lineno > 0 {
        format!("{} ({}:{})", k.funcname, short_path(&k.filename), k.lineno)
    } else {
        format!("{} ({})", k.funcname, short_path(&k.filename))
    }
}

/// `.../a/b.py` for long paths, as Tachyon shortens them.
fn short_path(path: &str) -> String {
    let parts: Vec<&str> = path.split('/').collect();
    if path.len() > 50 && parts.len() > 2 {
        format!(".../{}", parts[parts.len() - 2..].join("/"))
    } else {
        path.to_owned()
    }
}

fn is_synthetic(k: &Key) -> bool {
    k.filename == "~"
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

struct JsonBuilder<'a> {
    tree: &'a Tree,
    strings: StringIndex,
    sources: SourceReader,
    min_value: u64,
    diff: Option<&'a Comparison>,
    with_source: bool,
}

impl JsonBuilder<'_> {
    fn node(&mut self, id: usize) -> Value {
        let n = &self.tree.nodes[id];
        let k = &self.tree.keys[n.key];
        let mut m = Map::new();
        let name = node_label(id, k);
        m.insert("name".into(), json!(self.strings.id(&name)));
        m.insert("value".into(), json!(n.value));
        m.insert("self".into(), json!(n.self_value));
        if id != 0 {
            m.insert("filename".into(), json!(self.strings.id(&k.filename)));
            m.insert("funcname".into(), json!(self.strings.id(&k.funcname)));
            m.insert("lineno".into(), json!(k.lineno));
        }
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
        if self.with_source && id != 0 {
            let src: Vec<usize> = source_lines(&mut self.sources, k)
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
                .map(|(o, c)| (o.to_string(), json!(c)))
                .collect();
            m.insert("opcodes".into(), Value::Object(ops));
        }
        if let Some(d) = self.diff.and_then(|c| c.nodes[id].as_ref()) {
            m.insert("baseline".into(), json!(d.baseline_self));
            m.insert("baseline_total".into(), json!(d.baseline_total));
            m.insert("diff".into(), json!(d.diff));
            m.insert("diff_pct".into(), json!(d.diff_pct));
            m.insert("total_diff".into(), json!(d.total_diff));
            m.insert("total_diff_pct".into(), json!(d.total_diff_pct));
            m.insert("significant".into(), json!(d.significant));
            m.insert("self_time".into(), json!(n.self_value));
        }
        let mut children: Vec<usize> = n
            .children
            .iter()
            .copied()
            .filter(|&c| self.tree.nodes[c].value >= self.min_value)
            .collect();
        children.sort_by(|&a, &b| {
            self.tree.nodes[b]
                .value
                .cmp(&self.tree.nodes[a].value)
                .then(a.cmp(&b))
        });
        let children: Vec<Value> = children.into_iter().map(|c| self.node(c)).collect();
        m.insert("children".into(), Value::Array(children));
        Value::Object(m)
    }
}

/// The baseline's nodes that have no counterpart now, with their ancestors (values: scaled
/// baseline samples; an ancestor's value is the sum of what is kept below it).
fn elided_json(
    base: &Tree,
    cmp: &Comparison,
    strings: &mut StringIndex,
    id: usize,
) -> Option<Value> {
    let n = &base.nodes[id];
    let children: Vec<Value> = n
        .children
        .iter()
        .filter_map(|&c| elided_json(base, cmp, strings, c))
        .collect();
    if !cmp.elided[id] && children.is_empty() {
        return None;
    }
    let k = &base.keys[n.key];
    let value = if cmp.elided[id] {
        n.value as f64 * cmp.scale
    } else {
        children
            .iter()
            .map(|c| c["value"].as_f64().unwrap_or(0.0))
            .sum()
    };
    let name = node_label(id, k);
    let baseline = n.self_value as f64 * cmp.scale;
    Some(json!({
        "name": strings.id(&name), "value": value, "self": 0, "filename": strings.id(&k.filename),
        "funcname": strings.id(&k.funcname), "lineno": 0, "threads": [], "thread_values": {},
        "baseline": baseline, "baseline_total": n.value as f64 * cmp.scale, "diff": -baseline,
        "diff_pct": if baseline > 0.0 { -100.0 } else { 0.0 }, "self_time": 0, "elided": cmp.elided[id],
        "significant": true, "children": children,
    }))
}

impl FlamegraphCollector {
    fn tree(&self, symbols: &Symbols, by_function: bool) -> Tree {
        let mut tree = Tree::new();
        tree.add_stacks(
            symbols,
            &self.stacks,
            self.counts
                .iter()
                .map(|(&(tid, stack), &w)| (tid, stack, w)),
            by_function,
        );
        tree
    }

    fn stats_json(&self, ctx: &ExportContext<'_>, total: u64) -> Map<String, Value> {
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
        m.insert("mode".into(), json!(self.config.mode.name()));
        m.insert("total_samples".into(), json!(total));
        m.insert("thread_stats".into(), self.status.json(self.gc_samples));
        m.insert(
            "python_version".into(),
            json!(self
                .config
                .python_version
                .map(|(a, b, c)| format!("{a}.{b}.{c}"))),
        );
        m
    }

    fn export_html(&self, ctx: &ExportContext<'_>, path: &Path) -> Result<()> {
        let baseline = self.config.baseline.as_deref();
        let by_function = baseline.is_some();
        let tree = self.tree(ctx.symbols, by_function);
        let total = tree.nodes[0].value;
        if total == 0 {
            eprintln!("Warning: No functions found in profiling data. Check if sampling captured any data.");
            return Ok(());
        }
        let comparison = baseline.map(|b| compare_with(&tree, b, total, self.config.interval_us));
        let mut builder = JsonBuilder {
            tree: &tree,
            strings: StringIndex::default(),
            sources: SourceReader::new(self.config.sources.clone()),
            min_value: ((total as f64 * PRUNE_FRACTION) as u64).max(1),
            diff: comparison.as_ref().map(|(c, _)| c),
            with_source: true,
        };
        let root = builder.node(0);
        let mut strings = builder.strings;
        builder.sources.report();
        let mut stats = self.stats_json(ctx, total);
        let skipped: Vec<&String> = builder.sources.skipped().keys().collect();
        if !skipped.is_empty() {
            stats.insert("skipped_sources".into(), json!(skipped));
        }
        let threads: BTreeSet<u64> = self.counts.keys().map(|(t, _)| *t).collect();
        let mut data = json!({ "tree": root, "threads": threads });
        let mut title = "Tachyon Profiler - Flamegraph Report";
        if let (Some(b), Some((cmp, base_tree))) = (baseline, comparison.as_ref()) {
            title = "Tachyon Profiler - Differential Flamegraph Report";
            stats.insert("is_differential".into(), json!(true));
            stats.insert("baseline_samples".into(), json!(b.total_samples()));
            stats.insert("current_samples".into(), json!(total));
            stats.insert("baseline_scale".into(), json!(cmp.scale));
            stats.insert("elided_count".into(), json!(cmp.elided_count));
            stats.insert("noise_z".into(), json!(diff::NOISE_Z));
            if let Some(elided) = elided_json(base_tree, cmp, &mut strings, 0) {
                data["elided"] = elided;
            }
            data["regressions"] = self.table(cmp, &mut strings, true);
            data["improvements"] = self.table(cmp, &mut strings, false);
        }
        if tree.nodes.iter().any(|n| !n.opcodes.is_empty()) {
            if let Some((major, minor, _)) = self.config.python_version {
                let tables: Value = serde_json::from_str(OPCODES)?;
                if let Some(table) = tables.get(format!("{major}.{minor}")) {
                    data["opcode_mapping"] = table.clone();
                }
            }
        }
        data["stats"] = Value::Object(stats);
        data["strings"] = json!(strings.strings());
        std::fs::write(path, html::render(title, &data)?)
            .with_context(|| format!("cannot write {}", path.display()))?;
        eprintln!("Flamegraph saved to: {}", ctx.shown_path().display());
        if let Some((cmp, _)) = &comparison {
            self.report(cmp)?;
        }
        Ok(())
    }

    /// Biggest significant self-time changes per function, in ms.
    fn table(&self, cmp: &Comparison, strings: &mut StringIndex, regressions: bool) -> Value {
        let ms = self.config.interval_us as f64 / 1000.0;
        let mut rows: Vec<&diff::FunctionDiff> = cmp
            .functions
            .iter()
            .filter(|f| f.significant && (f.diff > 0.0) == regressions && f.diff != 0.0)
            .collect();
        rows.sort_by(|a, b| b.diff.abs().total_cmp(&a.diff.abs()));
        rows.truncate(TABLE_ROWS);
        json!(rows
            .iter()
            .map(|f| json!({
                "funcname": strings.id(&f.key.funcname), "filename": strings.id(&f.key.filename),
                "baseline_ms": f.baseline_self * ms, "current_ms": f.current_self * ms,
                "diff_ms": f.diff * ms, "diff_pct": f.diff_pct,
            }))
            .collect::<Vec<_>>())
    }

    /// Print the top changes; with --fail-on-regression, fail when one passes the threshold.
    fn report(&self, cmp: &Comparison) -> Result<()> {
        let ms = self.config.interval_us as f64 / 1000.0;
        let mut rows: Vec<&diff::FunctionDiff> = cmp
            .functions
            .iter()
            .filter(|f| f.significant && f.diff != 0.0)
            .collect();
        rows.sort_by(|a, b| b.diff.total_cmp(&a.diff));
        eprintln!(
            "Baseline scaled by {:.3}; {} elided stack(s)",
            cmp.scale, cmp.elided_count
        );
        for f in rows.iter().take(5).filter(|f| f.diff > 0.0) {
            eprintln!(
                "  regression  {:+9.1} ms ({:+7.1}%)  {} ({})",
                f.diff * ms,
                f.diff_pct,
                f.key.funcname,
                f.key.filename
            );
        }
        for f in rows.iter().rev().take(5).filter(|f| f.diff < 0.0) {
            eprintln!(
                "  improvement {:+9.1} ms ({:+7.1}%)  {} ({})",
                f.diff * ms,
                f.diff_pct,
                f.key.funcname,
                f.key.filename
            );
        }
        if let Some(limit) = self.config.option("fail_on_regression") {
            let limit: f64 = limit
                .parse()
                .with_context(|| format!("invalid --fail-on-regression '{limit}'"))?;
            if let Some(worst) = rows.iter().find(|f| f.diff > 0.0 && f.diff_pct >= limit) {
                return Err(RegressionDetected(format!(
                    "{} ({}) regressed by {:.1}% (+{:.1} ms), over the --fail-on-regression limit of {limit}%",
                    worst.key.funcname, worst.key.filename, worst.diff_pct, worst.diff * ms
                ))
                .into());
            }
        }
        Ok(())
    }
}

fn compare_with(tree: &Tree, base: &Profile, total: u64, interval_us: u64) -> (Comparison, Tree) {
    let mut base_tree = Tree::new();
    let mut stacks = StackTable::new();
    let counts: Vec<(u64, StackId, u64)> = base
        .stacks
        .iter()
        .map(|s| (s.thread_id, stacks.intern(&s.frames), s.weight))
        .collect();
    base_tree.add_stacks(&base.symbols, &stacks, counts, true);
    let scale = diff::scale(
        total,
        interval_us,
        base_tree.nodes[0].value,
        base.interval_us,
    );
    (diff::compare(tree, &base_tree, scale), base_tree)
}

impl Collector for FlamegraphCollector {
    fn collect(&mut self, symbols: &Symbols, sample: &Sample<'_>) {
        // CPython 3.15's collectors skip samples with no Python frame.
        if sample.frames.is_empty() {
            return;
        }
        let w = sample.weight();
        let stack = self.stacks.intern(sample.frames);
        *self.counts.entry((sample.thread_id, stack)).or_default() += w;
        self.status.add(sample.status, w);
        // <GC> is always the innermost frame.
        if sample.frames.first().is_some_and(|&f| symbols.is_gc(f)) {
            self.gc_samples += w;
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
    Format { name: "flamegraph", description: "Self-contained HTML flame graph (search, zoom, inverted view, threads, themes)", extension: "html", create }
}

inventory::submit! {
    Format { name: "diff_flamegraph", description: "Differential HTML flame graph against --diff-flamegraph BASELINE.bin", extension: "html", create: create_diff }
}
