//! `heatmap`: a directory with `index.html` (files by samples, grouped as project / standard
//! library / site-packages) and one `file_NNNN.html` per source file, every line coloured by
//! its self or total samples on a log scale, with links to the functions it calls.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::path::Path;

use anyhow::{Context, Result};
use tachyon_plugin_api::opcodes::Opcodes;
use tachyon_plugin_api::{
    printable, AggregateOutput, Aggregating, Collector, CollectorConfig, ExportContext, Format,
    FrameKeys, FxHashMap, Interner, Needs, SourceAccess, SourceReader, StackCounts, Symbols,
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

/// Where a function is defined: (file, first line seen, name), as interned name ids.
type Callee = (u32, i32, u32);

#[derive(Default)]
struct FileStats {
    lines: BTreeMap<i32, LineCounts>,
    /// line -> opcode -> samples executing it (frames carry opcodes with --opcodes).
    opcodes: FxHashMap<i32, FxHashMap<u8, u64>>,
    /// line -> the functions it calls -> samples.
    callees: FxHashMap<i32, FxHashMap<Callee, u64>>,
    /// The first sampled line of a function -> the lines that called it.
    callers: FxHashMap<i32, FxHashMap<Callee, u64>>,
    total: u64,
    self_samples: u64,
}

/// Every file's counts, by interned file and function names (a capture can hold millions of
/// distinct stacks: names are looked up only for the lines a page shows).
struct Files {
    names: Interner<String>,
    stats: Vec<(u32, FileStats)>,
}

impl Files {
    fn name(&self, id: u32) -> &str {
        self.names.get(id as usize)
    }

    /// A line's links in (file, line, function) order, with their names.
    fn links<'a>(
        &'a self,
        links: Option<&FxHashMap<Callee, u64>>,
    ) -> Vec<(&'a str, i32, &'a str, u64)> {
        let mut out: Vec<_> = links
            .into_iter()
            .flatten()
            .map(|(&(file, line, func), &n)| (self.name(file), line, self.name(func), n))
            .collect();
        out.sort_unstable();
        out
    }
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
    /// frozen modules) are skipped. Counted by interned ids (a capture can hold millions of
    /// distinct stacks); names are looked up once per distinct entry at the end.
    fn files(counts: &StackCounts, symbols: &Symbols) -> Files {
        let mut keys = FrameKeys::default();
        let mut names: Interner<String> = Interner::default();
        // Frame key id -> (file, function) ids, or None without a source line.
        let mut key_ids: Vec<Option<(u32, u32)>> = Vec::new();
        // (file, function) -> the first line seen of it, where a callee link points.
        let mut first_line: FxHashMap<(u32, u32), i32> = FxHashMap::default();
        let mut files: FxHashMap<u32, FileStats> = FxHashMap::default();
        // (callee file, its first line) -> the calling (file, line, function) -> samples.
        let mut callers: FxHashMap<(u32, i32), FxHashMap<Callee, u64>> = FxHashMap::default();
        let mut frames: Vec<(u32, i32, u32, Option<u8>)> = Vec::new();
        let mut seen_lines: Vec<(u32, i32)> = Vec::new();
        let mut seen_files: Vec<u32> = Vec::new();
        for (stack, w) in counts.by_stack() {
            frames.clear();
            for frame in symbols.stacks().frames_root_first(stack) {
                let key = keys.id(symbols, frame);
                if key_ids.len() <= key {
                    key_ids.resize(key + 1, None);
                    let k = keys.key(key);
                    key_ids[key] = k
                        .has_source()
                        .then(|| (names.id(&k.filename) as u32, names.id(&k.funcname) as u32));
                }
                // A frame without source breaks the caller -> callee link as a gap would.
                let entry = key_ids[key].map_or((u32::MAX, 0, 0, None), |(file, func)| {
                    let line = keys.key(key).lineno;
                    (file, line, func, symbols.frame(frame).opcode)
                });
                frames.push(entry);
            }
            seen_lines.clear();
            seen_files.clear();
            for (i, &(file, line, func, opcode)) in frames.iter().enumerate() {
                if file == u32::MAX {
                    continue;
                }
                first_line.entry((file, func)).or_insert(line);
                let stats = files.entry(file).or_default();
                let counts = stats.lines.entry(line).or_default();
                // A line counts once per sample however deep the recursion.
                if !seen_lines.contains(&(file, line)) {
                    seen_lines.push((file, line));
                    counts.total += w;
                }
                if i + 1 == frames.len() {
                    counts.self_samples += w;
                    stats.self_samples += w;
                }
                if let Some(op) = opcode {
                    *stats
                        .opcodes
                        .entry(line)
                        .or_default()
                        .entry(op)
                        .or_default() += w;
                }
                if let Some(&(cfile, cline, cfunc, _)) = frames.get(i + 1) {
                    if cfile != u32::MAX {
                        let defined = *first_line.entry((cfile, cfunc)).or_insert(cline);
                        let links = stats.callees.entry(line).or_default();
                        *links.entry((cfile, defined, cfunc)).or_default() += w;
                        let links = callers.entry((cfile, defined)).or_default();
                        *links.entry((file, line, func)).or_default() += w;
                    }
                }
                if !seen_files.contains(&file) {
                    seen_files.push(file);
                    stats.total += w;
                }
            }
        }
        for ((file, defined), links) in callers {
            if let Some(stats) = files.get_mut(&file) {
                stats.callers.insert(defined, links);
            }
        }
        Files {
            names,
            stats: files.into_iter().collect(),
        }
    }

    fn write(&self, counts: &StackCounts, dir: &Path, ctx: &ExportContext<'_>) -> Result<usize> {
        let files = Self::files(counts, ctx.symbols);
        let opcode_names = self
            .python_version
            .and_then(|(major, minor, _)| Opcodes::for_version(major, minor));
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
        let mut order: Vec<(&str, &FileStats)> = files
            .stats
            .iter()
            .map(|(f, s)| (files.name(*f), s))
            .collect();
        order.sort_by(|a, b| b.1.total.cmp(&a.1.total).then(a.0.cmp(b.0)));
        let page_of: HashMap<&str, String> = order
            .iter()
            .enumerate()
            .map(|(i, (f, _))| (*f, format!("file_{i:04}.html")))
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
                None => vec![match sources.skipped().get(*file) {
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
                for (cfile, cline, cfunc, count) in files.links(stats.callers.get(&n)) {
                    if let Some(page) = page_of.get(cfile) {
                        let _ = write!(nav, "<a class=\"caller\" href=\"{page}#line-{cline}\" title=\"called from {}:{cline}, {count} samples\">▲ {}</a>", escape(cfile), escape(cfunc));
                    }
                }
                for (cfile, cline, cfunc, count) in files.links(stats.callees.get(&n)) {
                    if let Some(page) = page_of.get(cfile) {
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
            std::fs::write(dir.join(&page_of[file]), html)?;
        }

        let mut sections: BTreeMap<&str, Vec<serde_json::Value>> = BTreeMap::new();
        for (file, stats) in &order {
            sections.entry(kind_of(file)).or_default().push(serde_json::json!({
                "path": printable(file), "page": page_of[file], "total": stats.total, "self": stats.self_samples,
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
