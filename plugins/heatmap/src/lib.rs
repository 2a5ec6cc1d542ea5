//! `heatmap`: a directory with `index.html` (files by samples, grouped as project / standard
//! library / site-packages) and one `file_NNNN.html` per source file, every line coloured by
//! its self or total samples on a log scale, with links to the functions it calls.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::path::Path;

use anyhow::{Context, Result};
use tachyon_plugin_api::opcodes::Opcodes;
use tachyon_plugin_api::{
    group_by_key, printable, AggregateOutput, Aggregating, Collector, CollectorConfig,
    ExportContext, Format, FrameKeys, FxHashMap, Interner, Needs, SourceAccess, SourceReader,
    StackCounts, Symbols,
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
    /// The file's name id.
    file: u32,
    lines: BTreeMap<i32, LineCounts>,
    /// line -> opcode -> samples executing it (frames carry opcodes with --opcodes).
    opcodes: FxHashMap<i32, FxHashMap<u8, u64>>,
    total: u64,
    self_samples: u64,
}

/// Every file's counts, and the calls between lines, by dense ids of names, source lines and
/// functions (a capture can hold millions of distinct stacks: names are looked up only for the
/// lines a page shows).
struct Files {
    names: Interner<String>,
    stats: Vec<FileStats>,
    /// Source lines (file, line number) and functions (file, name), by name ids.
    lines: Interner<(u32, i32)>,
    functions: Interner<(u32, u32)>,
    /// By function: the line of its first frame seen, where a link to it points.
    first_line: Vec<i32>,
    /// Every call, by line (the functions it calls) and by callee (the lines that call it).
    calls: Calls,
    /// (file, line) -> the functions first seen at that line.
    defined_at: FxHashMap<(u32, i32), Vec<u32>>,
}

impl Files {
    fn name(&self, id: u32) -> &str {
        self.names.get(id as usize)
    }

    /// The functions a line calls: (file, first line, function, samples).
    fn callees(&self, file: u32, line: i32) -> Vec<(&str, i32, &str, u64)> {
        let calls = self
            .lines
            .find(&(file, line))
            .map(|id| self.calls.of_line(id));
        self.links(calls.into_iter().flatten().map(|call| {
            let (file, name) = *self.functions.get(call.callee as usize);
            (
                (file, self.first_line[call.callee as usize], name),
                call.samples,
            )
        }))
    }

    /// The lines that called the functions first seen at a line: (file, line, function,
    /// samples).
    fn callers(&self, file: u32, line: i32) -> Vec<(&str, i32, &str, u64)> {
        let functions = self.defined_at.get(&(file, line)).into_iter().flatten();
        self.links(
            functions
                .flat_map(|&f| self.calls.of_callee(f))
                .map(|call| {
                    let (file, line) = *self.lines.get(call.line as usize);
                    let name = self.functions.get(call.function as usize).1;
                    ((file, line, name), call.samples)
                }),
        )
    }

    /// Links merged (functions first seen at one line share their callers), with their names,
    /// in (file, line, function) order.
    fn links(&self, links: impl Iterator<Item = (Callee, u64)>) -> Vec<(&str, i32, &str, u64)> {
        let mut merged: Vec<(Callee, u64)> = links.collect();
        merged.sort_unstable();
        merged.dedup_by(|later, kept| {
            let same = later.0 == kept.0;
            if same {
                kept.1 += later.1;
            }
            same
        });
        let mut out: Vec<_> = merged
            .into_iter()
            .map(|((file, line, func), n)| (self.name(file), line, self.name(func), n))
            .collect();
        out.sort_unstable();
        out
    }
}

/// A line calling a function, in one distinct stack.
#[derive(Clone, Copy, Default)]
struct Call {
    line: u32,
    /// The function the calling line is in.
    function: u32,
    callee: u32,
    samples: u64,
}

/// Calls, one per caller frame of each distinct stack (not merged: the links a page shows
/// are merged when it is written), grouped by calling line and by callee. A capture can
/// hold millions: they are pushed as the stacks are walked, and grouped at the end by two
/// counting sorts ([`group_by_key`]), where a map per line and per function cost a lookup in
/// each per call.
#[derive(Default)]
struct Calls {
    /// By calling line; `by_line[line]..by_line[line + 1]` are the line's.
    calls: Vec<Call>,
    by_line: Vec<u32>,
    /// The calls as they came, and indexes into them by callee;
    /// `by_callee[f]..by_callee[f + 1]` are `f`'s.
    came: Vec<Call>,
    order_by_callee: Vec<u32>,
    by_callee: Vec<u32>,
}

impl Calls {
    /// Both groupings at once, on both cores.
    fn new(came: Vec<Call>, lines: usize, functions: usize) -> Calls {
        let indexes = came.iter().enumerate().map(|(i, c)| (c.callee, i as u32));
        let ((by_callee, order_by_callee), (by_line, calls)) = tachyon_plugin_api::join(
            || group_by_key(indexes, functions),
            || group_by_key(came.iter().map(|&c| (c.line, c)), lines),
        );
        Calls {
            calls,
            by_line,
            came,
            order_by_callee,
            by_callee,
        }
    }

    fn of_line(&self, line: usize) -> &[Call] {
        &self.calls[self.by_line[line] as usize..self.by_line[line + 1] as usize]
    }

    fn of_callee(&self, function: u32) -> impl Iterator<Item = &Call> {
        let f = function as usize;
        self.order_by_callee[self.by_callee[f] as usize..self.by_callee[f + 1] as usize]
            .iter()
            .map(|&i| &self.came[i as usize])
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
    /// frozen modules) are skipped. A capture can hold millions of distinct stacks, so the
    /// walk over their frames indexes vectors by dense ids (frame key, source line, function):
    /// line counts by line, calls in a list, one map of opcodes. The per-file
    /// line and opcode maps are made at the end; calls keep their ids, and names are looked up
    /// only for the lines a page shows.
    fn files(counts: &StackCounts, symbols: &Symbols) -> Files {
        /// A frame's (line, function, opcode), or None without a source line.
        type FrameEntry = Option<(u32, u32, Option<u8>)>;
        let mut keys = FrameKeys::default();
        let mut names: Interner<String> = Interner::default();
        // Source lines (file, line number) and functions (file, function name), by name ids.
        let mut lines: Interner<(u32, i32)> = Interner::default();
        let mut functions: Interner<(u32, u32)> = Interner::default();
        // Frame key id -> (line, function) ids, or None without a source line.
        let mut key_ids: Vec<Option<(u32, u32)>> = Vec::new();
        // Frame id -> (line, function, opcode), found at its first sight: millions of frames
        // of stacks read one dense entry each (a frame's key and its opcode, read from the
        // frame table, missed the cache).
        let mut frame_entry: Vec<Option<FrameEntry>> = vec![None; symbols.frames().len()];
        // By function id: the line of its first frame seen, where a callee link points.
        let mut first_line: Vec<i32> = Vec::new();
        let mut line_counts: Vec<LineCounts> = Vec::new();
        // By file name id: (total, self) samples.
        let mut file_counts: Vec<(u64, u64)> = Vec::new();
        let mut calls: Vec<Call> = Vec::new();
        let mut opcodes: FxHashMap<(u32, u8), u64> = FxHashMap::default();
        // The stack's frames, root first.
        let mut frames: Vec<FrameEntry> = Vec::new();
        // By line and by file id: the last stack that counted it (a line or file counts once
        // per sample however deep the recursion).
        let mut line_seen_in: Vec<usize> = Vec::new();
        let mut file_seen_in: Vec<usize> = Vec::new();
        let by_stack = counts.by_stack();
        let mut walk = symbols.stacks().walk(&by_stack, |s| s.0);
        while let Some((at, &(_, w), stack_frames)) = walk.next_stack() {
            frames.clear();
            for &frame in stack_frames.iter().rev() {
                if let Some(entry) = frame_entry[frame as usize] {
                    frames.push(entry);
                    continue;
                }
                let key = keys.id(symbols, frame);
                if key_ids.len() <= key {
                    key_ids.resize(key + 1, None);
                    let k = keys.key(key);
                    key_ids[key] = k.has_source().then(|| {
                        let file = names.id(&k.filename) as u32;
                        let function = functions.id(&(file, names.id(&k.funcname) as u32));
                        if first_line.len() <= function {
                            first_line.push(k.lineno);
                        }
                        let line = lines.id(&(file, k.lineno));
                        if line_counts.len() <= line {
                            line_counts.push(LineCounts::default());
                            line_seen_in.push(usize::MAX);
                        }
                        if file_counts.len() <= file as usize {
                            file_counts.resize(file as usize + 1, (0, 0));
                            file_seen_in.resize(file as usize + 1, usize::MAX);
                        }
                        (line as u32, function as u32)
                    });
                }
                // A frame without source breaks the caller -> callee link as a gap would.
                let entry = key_ids[key]
                    .map(|(line, function)| (line, function, symbols.frame(frame).opcode));
                frame_entry[frame as usize] = Some(entry);
                frames.push(entry);
            }
            for (i, &entry) in frames.iter().enumerate() {
                let Some((line, function, opcode)) = entry else {
                    continue;
                };
                let file = lines.get(line as usize).0;
                let counts = &mut line_counts[line as usize];
                if line_seen_in[line as usize] != at {
                    line_seen_in[line as usize] = at;
                    counts.total += w;
                }
                if i + 1 == frames.len() {
                    counts.self_samples += w;
                    file_counts[file as usize].1 += w;
                }
                if let Some(op) = opcode {
                    *opcodes.entry((line, op)).or_default() += w;
                }
                if let Some(&Some((_, callee, _))) = frames.get(i + 1) {
                    calls.push(Call {
                        line,
                        function,
                        callee,
                        samples: w,
                    });
                }
                if file_seen_in[file as usize] != at {
                    file_seen_in[file as usize] = at;
                    file_counts[file as usize].0 += w;
                }
            }
        }
        let mut files: FxHashMap<u32, FileStats> = FxHashMap::default();
        for (&(file, line), counts) in lines.list().iter().zip(&line_counts) {
            let stats = files.entry(file).or_default();
            stats.file = file;
            stats.lines.insert(line, *counts);
            (stats.total, stats.self_samples) = file_counts[file as usize];
        }
        for (&(line, op), &n) in &opcodes {
            let (file, line) = *lines.get(line as usize);
            let stats = files.get_mut(&file).expect("a sampled line's file");
            *stats
                .opcodes
                .entry(line)
                .or_default()
                .entry(op)
                .or_default() += n;
        }
        let mut defined_at: FxHashMap<(u32, i32), Vec<u32>> = FxHashMap::default();
        for (function, (&(file, _), &line)) in functions.list().iter().zip(&first_line).enumerate()
        {
            defined_at
                .entry((file, line))
                .or_default()
                .push(function as u32);
        }
        Files {
            names,
            stats: files.into_values().collect(),
            lines,
            functions,
            calls: Calls::new(calls, line_counts.len(), first_line.len()),
            first_line,
            defined_at,
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
            .map(|s| (files.name(s.file), s))
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
                for (cfile, cline, cfunc, count) in files.callers(stats.file, n) {
                    if let Some(page) = page_of.get(cfile) {
                        let _ = write!(nav, "<a class=\"caller\" href=\"{page}#line-{cline}\" title=\"called from {}:{cline}, {count} samples\">▲ {}</a>", escape(cfile), escape(cfunc));
                    }
                }
                for (cfile, cline, cfunc, count) in files.callees(stats.file, n) {
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Calls are found by their calling line and by their callee, each exactly once, lines
    /// and functions without calls included.
    #[test]
    fn calls_are_grouped_by_line_and_by_callee() {
        let call = |line, function, callee, samples| Call {
            line,
            function,
            callee,
            samples,
        };
        let unsorted = vec![
            call(3, 1, 0, 5),
            call(0, 0, 2, 1),
            call(3, 1, 2, 7),
            call(0, 0, 0, 2),
        ];
        let calls = Calls::new(unsorted, 5, 4);
        let of_line = |line| {
            let mut found: Vec<(u32, u64)> = calls
                .of_line(line)
                .iter()
                .map(|c| (c.callee, c.samples))
                .collect();
            found.sort_unstable();
            found
        };
        assert_eq!(of_line(0), [(0, 2), (2, 1)]);
        assert_eq!(of_line(3), [(0, 5), (2, 7)]);
        assert!(of_line(1).is_empty() && of_line(4).is_empty());
        let of_callee = |f| {
            let mut found: Vec<(u32, u32, u64)> = calls
                .of_callee(f)
                .map(|c| (c.line, c.function, c.samples))
                .collect();
            found.sort_unstable();
            found
        };
        assert_eq!(of_callee(0), [(0, 0, 2), (3, 1, 5)]);
        assert_eq!(of_callee(2), [(0, 0, 1), (3, 1, 7)]);
        assert!(of_callee(1).is_empty() && of_callee(3).is_empty());
    }
}
