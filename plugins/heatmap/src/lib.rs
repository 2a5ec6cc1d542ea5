//! `heatmap`: a directory with `index.html` (files by samples, grouped as project / standard
//! library / site-packages) and one `file_NNNN.html` per source file, every line coloured by
//! its self or total samples on a log scale, with links to the functions it calls.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt::Write as _;
use std::path::Path;

use anyhow::{Context, Result};
use tachyon_plugin_api::opcodes::Opcodes;
use tachyon_plugin_api::{
    printable, AggregateOutput, Aggregating, Collector, CollectorConfig, ExportContext, Format,
    FrameKeys, Needs, SourceAccess, SourceReader, StackCounts, Symbols,
};

const INDEX: &str = include_str!("../../../assets/heatmap/index.html");
const FILE: &str = include_str!("../../../assets/heatmap/file.html");
const CSS: &str = include_str!("../../../assets/heatmap/heatmap.css");
const JS: &str = include_str!("../../../assets/heatmap/heatmap.js");

struct Heatmap {
    sources: SourceAccess,
    python_version: Option<(u8, u8, u8)>,
}

#[derive(Default, Clone, Copy)]
struct LineCounts {
    self_samples: u64,
    total: u64,
}

/// Where a function is defined: (file, first line seen, name).
type Callee = (String, i32, String);

#[derive(Default)]
struct FileStats {
    lines: BTreeMap<i32, LineCounts>,
    /// line -> opcode -> samples executing it (frames carry opcodes with --opcodes).
    opcodes: BTreeMap<i32, BTreeMap<u8, u64>>,
    callees: BTreeMap<i32, BTreeMap<Callee, u64>>,
    /// The first sampled line of a function -> the lines that called it.
    callers: BTreeMap<i32, BTreeMap<Callee, u64>>,
    total: u64,
    self_samples: u64,
}

fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in printable(s).chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

fn kind_of(path: &str) -> &'static str {
    if path.contains("/site-packages/") || path.contains("/dist-packages/") {
        "Site Packages"
    } else if path.contains("/lib/python") {
        "Standard Library"
    } else {
        "Project"
    }
}

/// Where a file's time goes: total samples per line, in up to 60 bins from its first to its
/// last sampled line, as a small inline SVG (numbers only, so it is safe to embed).
fn sparkline(stats: &FileStats) -> String {
    const BINS: usize = 60;
    const W: usize = 120;
    const H: f64 = 16.0;
    let (Some((&first, _)), Some((&last, _))) =
        (stats.lines.first_key_value(), stats.lines.last_key_value())
    else {
        return String::new();
    };
    let span = (last - first + 1) as usize;
    let bins = span.min(BINS);
    let mut values = vec![0u64; bins];
    for (&line, c) in &stats.lines {
        values[(line - first) as usize * bins / span] += c.total;
    }
    let max = values.iter().copied().max().unwrap_or(0).max(1);
    let bar = W as f64 / bins as f64;
    let mut svg = format!(
        "<svg class=\"spark\" width=\"{W}\" height=\"{H}\" viewBox=\"0 0 {W} {H}\" role=\"img\" aria-label=\"samples by line, lines {first} to {last}\">"
    );
    for (i, &v) in values.iter().enumerate().filter(|(_, &v)| v > 0) {
        let h = (v as f64 / max as f64 * H).max(1.0);
        let _ = write!(
            svg,
            "<rect x=\"{:.1}\" y=\"{:.1}\" width=\"{:.1}\" height=\"{h:.1}\"></rect>",
            i as f64 * bar,
            H - h,
            bar.max(1.0)
        );
    }
    svg.push_str("</svg>");
    svg
}

/// log(n+1)/log(max+1), so cold lines stay visible next to a hot loop.
fn intensity(n: u64, max: u64) -> f64 {
    if n == 0 || max == 0 {
        0.0
    } else {
        ((n as f64) + 1.0).ln() / ((max as f64) + 1.0).ln()
    }
}

impl Heatmap {
    /// Samples per file and line. Frames without a real source line (synthetic, `<string>`,
    /// frozen modules) are skipped.
    fn files(counts: &StackCounts, symbols: &Symbols) -> BTreeMap<String, FileStats> {
        let mut files: BTreeMap<String, FileStats> = BTreeMap::new();
        let mut keys = FrameKeys::default();
        // (file, function) -> the first line seen of it, where a callee link points.
        let mut first_line: HashMap<(String, String), i32> = HashMap::new();
        // callee file -> its function's first line -> (caller file, line, function) -> samples.
        let mut callers: BTreeMap<String, BTreeMap<i32, BTreeMap<Callee, u64>>> = BTreeMap::new();
        for (stack, w) in counts.by_stack() {
            let frame_ids = counts.stacks.frames_root_first(stack);
            let frames: Vec<usize> = frame_ids
                .iter()
                .map(|&frame| keys.id(symbols, frame))
                .collect();
            let mut seen: HashSet<(&str, i32)> = HashSet::new();
            for (i, &id) in frames.iter().enumerate() {
                let key = keys.key(id);
                if !key.has_source() {
                    continue;
                }
                first_line
                    .entry((key.filename.clone(), key.funcname.clone()))
                    .or_insert(key.lineno);
                let stats = files.entry(key.filename.clone()).or_default();
                let line = stats.lines.entry(key.lineno).or_default();
                // A line counts once per sample however deep the recursion.
                if seen.insert((&key.filename, key.lineno)) {
                    line.total += w;
                }
                if i + 1 == frames.len() {
                    line.self_samples += w;
                    stats.self_samples += w;
                }
                if let Some(op) = symbols.frame(frame_ids[i]).opcode {
                    *stats
                        .opcodes
                        .entry(key.lineno)
                        .or_default()
                        .entry(op)
                        .or_default() += w;
                }
                if let Some(callee) = frames.get(i + 1).map(|&c| keys.key(c)) {
                    if callee.has_source() {
                        let defined = *first_line
                            .entry((callee.filename.clone(), callee.funcname.clone()))
                            .or_insert(callee.lineno);
                        *stats
                            .callees
                            .entry(key.lineno)
                            .or_default()
                            .entry((callee.filename.clone(), defined, callee.funcname.clone()))
                            .or_default() += w;
                        *callers
                            .entry(callee.filename.clone())
                            .or_default()
                            .entry(defined)
                            .or_default()
                            .entry((key.filename.clone(), key.lineno, key.funcname.clone()))
                            .or_default() += w;
                    }
                }
            }
            let mut counted: HashSet<&str> = HashSet::new();
            for &id in &frames {
                let key = keys.key(id);
                if key.has_source() && counted.insert(&key.filename) {
                    files.get_mut(&key.filename).expect("added above").total += w;
                }
            }
        }
        for (file, lines) in callers {
            if let Some(stats) = files.get_mut(&file) {
                stats.callers = lines;
            }
        }
        files
    }

    fn write(&self, counts: &StackCounts, dir: &Path, ctx: &ExportContext<'_>) -> Result<usize> {
        let files = Self::files(counts, ctx.symbols);
        let opcode_names = self
            .python_version
            .and_then(|(major, minor, _)| Opcodes::for_version(major, minor));
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
        let mut order: Vec<(&String, &FileStats)> = files.iter().collect();
        order.sort_by(|a, b| b.1.total.cmp(&a.1.total).then(a.0.cmp(b.0)));
        let page_of: HashMap<&str, String> = order
            .iter()
            .enumerate()
            .map(|(i, (f, _))| (f.as_str(), format!("file_{i:04}.html")))
            .collect();
        let total_samples = counts.total();
        let hottest = order.first().map_or(1, |(_, s)| s.total.max(1));
        let mut tera = tera::Tera::default();
        tera.add_raw_templates(vec![("index.html", INDEX), ("file.html", FILE)])?;

        let mut sources = SourceReader::new(self.sources.clone());
        for (file, stats) in &order {
            let mut rows = String::new();
            let source = sources.get(file);
            let lines: Vec<String> = match &source {
                Some(text) => text.lines().map(str::to_owned).collect(),
                None => vec![match sources.skipped().get(file.as_str()) {
                    Some(why) => format!("# Source file not shown ({why}): {file}"),
                    None => format!("# Source file not available: {file}"),
                }],
            };
            let max_self = stats
                .lines
                .values()
                .map(|c| c.self_samples)
                .max()
                .unwrap_or(0);
            let max_total = stats.lines.values().map(|c| c.total).max().unwrap_or(0);
            for (i, text) in lines.iter().enumerate() {
                let n = i as i32 + 1;
                let c = stats.lines.get(&n).copied().unwrap_or_default();
                let mut nav = String::new();
                for ((cfile, cline, cfunc), count) in stats.callers.get(&n).into_iter().flatten() {
                    if let Some(page) = page_of.get(cfile.as_str()) {
                        let _ = write!(nav, "<a class=\"caller\" href=\"{page}#line-{cline}\" title=\"called from {}:{cline}, {count} samples\">▲ {}</a>", escape(cfile), escape(cfunc));
                    }
                }
                for ((cfile, cline, cfunc), count) in stats.callees.get(&n).into_iter().flatten() {
                    if let Some(page) = page_of.get(cfile.as_str()) {
                        let _ = write!(nav, "<a class=\"callee\" href=\"{page}#line-{cline}\" title=\"calls into {}:{cline}, {count} samples\">▼ {}</a>", escape(cfile), escape(cfunc));
                    }
                }
                // With --opcodes: what the line was executing, busiest first.
                let mut ops: Vec<(u8, u64)> = stats
                    .opcodes
                    .get(&n)
                    .into_iter()
                    .flatten()
                    .map(|(&op, &count)| (op, count))
                    .collect();
                ops.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
                let opcodes: String = ops
                    .iter()
                    .map(|&(op, count)| {
                        let name = opcode_names
                            .as_ref()
                            .map_or_else(|| format!("<{op}>"), |t| t.format(op));
                        format!("&#10;{} {count}", escape(&name))
                    })
                    .collect();
                let _ = writeln!(
                    rows,
                    "<div class=\"code-line\" id=\"line-{n}\" data-self-intensity=\"{:.3}\" data-cumulative-intensity=\"{:.3}\" title=\"Self: {}, Total: {}{opcodes}\"><a class=\"lineno\" href=\"#line-{n}\">{n}</a><span class=\"count\">{}</span><span class=\"count\">{}</span><span class=\"src\">{}</span>{nav}</div>",
                    intensity(c.self_samples, max_self),
                    intensity(c.total, max_total),
                    c.self_samples,
                    c.total,
                    if c.self_samples > 0 { c.self_samples.to_string() } else { String::new() },
                    if c.total > 0 { c.total.to_string() } else { String::new() },
                    escape(text)
                );
            }
            let mut page = tera::Context::new();
            page.insert("path", &printable(file));
            page.insert("css", CSS);
            page.insert("js", JS);
            page.insert("rows", &rows);
            page.insert("total", &stats.total);
            page.insert("self_samples", &stats.self_samples);
            page.insert("lines", &stats.lines.len());
            let html = tera.render("file.html", &page)?;
            std::fs::write(dir.join(&page_of[file.as_str()]), html)?;
        }

        let mut sections: BTreeMap<&str, Vec<serde_json::Value>> = BTreeMap::new();
        for (file, stats) in &order {
            sections.entry(kind_of(file)).or_default().push(serde_json::json!({
                "path": printable(file), "page": page_of[file.as_str()], "total": stats.total, "self": stats.self_samples,
                "spark": sparkline(stats),
                "pct": stats.total as f64 * 100.0 / hottest as f64,
            }));
        }
        let section_list: Vec<serde_json::Value> = ["Project", "Standard Library", "Site Packages"]
            .iter()
            .filter_map(|k| {
                sections.get(k).map(
                    |files| serde_json::json!({"name": k, "open": *k == "Project", "files": files}),
                )
            })
            .collect();
        sources.report();
        let skipped: Vec<serde_json::Value> = sources
            .skipped()
            .iter()
            .map(|(path, why)| serde_json::json!({"path": printable(path), "why": why}))
            .collect();
        let mut index = tera::Context::new();
        index.insert("skipped", &skipped);
        index.insert("css", CSS);
        index.insert("js", JS);
        index.insert("sections", &section_list);
        index.insert("num_files", &order.len());
        index.insert("total_samples", &total_samples);
        index.insert("duration", &format!("{:.2}", ctx.stats.duration_sec));
        index.insert("sample_rate", &format!("{:.0}", ctx.stats.sample_rate));
        index.insert(
            "error_rate",
            &ctx.stats
                .error_rate
                .map_or("unknown".to_owned(), |e| format!("{e:.2}%")),
        );
        std::fs::write(dir.join("index.html"), tera.render("index.html", &index)?)?;
        Ok(order.len())
    }
}

impl AggregateOutput for Heatmap {
    fn export(&mut self, counts: &StackCounts, ctx: &ExportContext<'_>) -> Result<()> {
        let dir = ctx.path.context("the heatmap needs an output directory")?;
        let n = self.write(counts, dir, ctx)?;
        let shown = ctx.shown_path();
        eprintln!("Heatmap output written to {}/", shown.display());
        eprintln!("  - Index: {}", shown.join("index.html").display());
        eprintln!("  - {n} source file(s) analyzed");
        Ok(())
    }
}

fn create(config: &CollectorConfig) -> Result<Box<dyn Collector>> {
    Ok(Box::new(Aggregating::new(Heatmap {
        sources: config.sources.clone(),
        python_version: config.python_version,
    })))
}

inventory::submit! {
    Format { name: "heatmap", description: "Line-level heatmap: index.html plus one page per source file", extension: "", options: &[], needs: Needs { opcodes: true, ..Needs::NOTHING }, create }
}
