//! The printed pstats table (`--pstats` without `-o`), character for character as CPython
//! 3.15.2's `PstatsCollector.print_stats` prints it: rows merged by `strip_dirs()` names,
//! `--sort` (stable, so ties keep first-appearance order), `--limit`, the legend, and the
//! summary of interesting functions over the rows shown. Coloured as CPython colours it.

use std::fmt::Write as _;

use tachyon_plugin_api::{ansi, printable, FxHashMap};

use crate::stats::FuncTable;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SortKey {
    NSamples,
    TotTime,
    CumTime,
    SamplePct,
    CumulPct,
    NSamplesCumul,
    Name,
}

impl SortKey {
    pub fn parse(s: &str) -> Option<SortKey> {
        Some(match s {
            "nsamples" => SortKey::NSamples,
            "tottime" => SortKey::TotTime,
            "cumtime" => SortKey::CumTime,
            "sample-pct" => SortKey::SamplePct,
            "cumul-pct" => SortKey::CumulPct,
            "nsamples-cumul" => SortKey::NSamplesCumul,
            "name" => SortKey::Name,
            _ => return None,
        })
    }
}

pub struct TableOptions {
    pub sort: SortKey,
    pub limit: usize,
    pub summary: bool,
    pub interval_s: f64,
    /// The run was in CPU mode (an empty table says why it may be empty).
    pub cpu_mode: bool,
}

/// ANSI colours as `_colorize.ANSIColors`, or none (`NoColors`).
struct Colors {
    bold_blue: &'static str,
    green: &'static str,
    yellow: &'static str,
    cyan: &'static str,
    reset: &'static str,
}

impl Colors {
    fn new(enabled: bool) -> Colors {
        let c = |code| ansi(enabled, code);
        Colors {
            bold_blue: c("\x1b[1;34m"),
            green: c("\x1b[32m"),
            yellow: c("\x1b[33m"),
            cyan: c("\x1b[36m"),
            reset: c("\x1b[0m"),
        }
    }

    /// `file:line(func)`, each part coloured.
    fn func(&self, file: &str, line: &str, func: &str) -> String {
        let Colors {
            green,
            yellow,
            cyan,
            reset,
            ..
        } = self;
        format!("{green}{file}{reset}:{yellow}{line}{reset}({cyan}{func}{reset})")
    }
}

/// One row: (file, line, function) as `strip_dirs()` names it, direct and cumulative samples.
struct Row {
    file: String,
    line: i32,
    func: String,
    direct: u64,
    cumulative: u64,
}

/// Largest unit in which the column's maximum is at least 1.
fn unit_for(max_seconds: f64) -> (&'static str, f64) {
    if max_seconds >= 1.0 {
        ("s", 1.0)
    } else if max_seconds >= 0.001 {
        ("ms", 1e3)
    } else {
        ("μs", 1e6)
    }
}

pub fn render(table: &FuncTable, opts: &TableOptions, colors: bool) -> String {
    let c = Colors::new(colors);
    let mut out = String::new();
    // strip_dirs(): functions that differ only in their directory become one row.
    let mut rows: Vec<Row> = Vec::new();
    let mut row_of: FxHashMap<(&str, i32, &str), usize> = FxHashMap::default();
    for (key, st) in table.keys.list().iter().zip(&table.stats) {
        let name = (key.base_name(), key.lineno, key.funcname.as_str());
        if let Some(&i) = row_of.get(&name) {
            rows[i].direct += st.direct;
            rows[i].cumulative += st.cumulative;
        } else {
            row_of.insert(name, rows.len());
            rows.push(Row {
                file: printable(key.base_name()).into_owned(),
                line: key.lineno,
                func: printable(&key.funcname).into_owned(),
                direct: st.direct,
                cumulative: st.cumulative,
            });
        }
    }
    if rows.is_empty() {
        out.push_str("No samples were collected.\n");
        if opts.cpu_mode {
            out.push_str("This can happen in CPU mode when all threads are idle.\n");
        }
        return out;
    }
    let total: u64 = rows.iter().map(|r| r.direct).sum();
    let pct = |n: u64| {
        if total > 0 {
            n as f64 / total as f64 * 100.0
        } else {
            0.0
        }
    };
    match opts.sort {
        // Python sorts the string of the key tuple: `('file', 12, 'func')`.
        SortKey::Name => rows.sort_by_cached_key(|r| {
            format!("({}, {}, {})", py_repr(&r.file), r.line, py_repr(&r.func))
        }),
        SortKey::NSamples | SortKey::TotTime | SortKey::SamplePct => {
            rows.sort_by_key(|r| std::cmp::Reverse(r.direct));
        }
        SortKey::CumTime | SortKey::CumulPct | SortKey::NSamplesCumul => {
            rows.sort_by_key(|r| std::cmp::Reverse(r.cumulative));
        }
    }
    rows.truncate(opts.limit);

    let secs = |n: u64| n as f64 * opts.interval_s;
    let max_of = |f: fn(&Row) -> u64| rows.iter().map(|r| secs(f(r))).fold(0.0, f64::max);
    let (tot_unit, tot_scale) = unit_for(max_of(|r| r.direct));
    let (cum_unit, cum_scale) = unit_for(max_of(|r| r.cumulative));
    let tot_header = format!("tottime ({tot_unit})");
    let cum_header = format!("cumtime ({cum_unit})");
    let tot_width = tot_header.chars().count().max(12);
    let cum_width = cum_header.chars().count().max(12);
    let (b, r) = (c.bold_blue, c.reset);
    let _ = writeln!(out, "{b}Profile Stats:{r}");
    let _ = writeln!(
        out,
        "{b}{:>15}{r}  {b}{:>8}{r}  {b}{tot_header:>tot_width$}{r}  {b}{:>8}{r}  {b}{cum_header:>cum_width$}{r}  {b}filename:lineno(function){r}",
        "nsamples", "sample%", "cumul%"
    );
    for row in &rows {
        let _ = writeln!(
            out,
            "{:>15}  {:8.1}  {:tot_width$.3}  {:8.1}  {:cum_width$.3}  {}",
            format!("{}/{}", row.direct, row.cumulative),
            pct(row.direct),
            secs(row.direct) * tot_scale,
            pct(row.cumulative),
            secs(row.cumulative) * cum_scale,
            c.func(&row.file, &row.line.to_string(), &row.func)
        );
    }
    let y = c.yellow;
    let _ = write!(
        out,
        "\n{b}Legend:{r}
  {y}nsamples{r}: Direct/Cumulative samples (direct executing / on call stack)
  {y}sample%{r}: Percentage of total samples this function was directly executing
  {y}tottime{r}: Estimated total time spent directly in this function
  {y}cumul%{r}: Percentage of total samples when this function was on the call stack
  {y}cumtime{r}: Estimated cumulative time (including time in called functions)
  {y}filename:lineno(function){r}: Function location and name
"
    );
    if opts.summary {
        render_summary(&mut out, &rows, total, &c);
    }
    out
}

/// Python's `repr` of a string, enough for sorting names as CPython does.
fn py_repr(s: &str) -> String {
    if s.contains('\'') && !s.contains('"') {
        format!("\"{s}\"")
    } else {
        format!("'{}'", s.replace('\\', "\\\\").replace('\'', "\\'"))
    }
}

/// The rows shown, merged per `file:function` (lines together), as CPython's summary does.
struct Function {
    file: String,
    func: String,
    direct: u64,
    cumulative: u64,
}

/// "Summary of Interesting Functions": the top three by three measures.
fn render_summary(out: &mut String, rows: &[Row], total: u64, c: &Colors) {
    let mut funcs: Vec<Function> = Vec::new();
    let mut index: FxHashMap<(&str, &str), usize> = FxHashMap::default();
    for row in rows {
        if let Some(&i) = index.get(&(row.file.as_str(), row.func.as_str())) {
            funcs[i].direct += row.direct;
            funcs[i].cumulative += row.cumulative;
        } else {
            index.insert((&row.file, &row.func), funcs.len());
            funcs.push(Function {
                file: row.file.clone(),
                func: row.func.clone(),
                direct: row.direct,
                cumulative: row.cumulative,
            });
        }
    }
    let pct = |n: u64| {
        if total > 0 {
            n as f64 / total as f64 * 100.0
        } else {
            0.0
        }
    };
    let (b, r) = (c.bold_blue, c.reset);
    let _ = writeln!(out, "\n{b}Summary of Interesting Functions:{r}");
    let section = |out: &mut String,
                   title: &str,
                   key: &dyn Fn(&Function) -> f64,
                   line: &dyn Fn(&Function) -> Option<String>| {
        let _ = writeln!(out, "\n{b}{title}:{r}");
        let mut order: Vec<&Function> = funcs.iter().collect();
        // Stable, highest first: ties keep their order, as Python's sorted(reverse=True).
        order.sort_by(|x, y| key(y).total_cmp(&key(x)));
        for f in order.into_iter().take(3) {
            if let Some(text) = line(f) {
                let _ = writeln!(out, "  {text}");
            }
        }
    };
    let name = |f: &Function| c.func(&f.file, "", &f.func);
    section(
        out,
        "Functions with Highest Direct/Cumulative Ratio (Hot Spots)",
        &|f| ratio(f.direct, f.cumulative),
        &|f| {
            (f.direct > 0 && f.cumulative > 0).then(|| {
                format!(
                    "{:.3} direct/cumulative ratio, {:.1}% direct samples: {}",
                    ratio(f.direct, f.cumulative),
                    pct(f.direct),
                    name(f)
                )
            })
        },
    );
    section(
        out,
        "Functions with Highest Call Frequency (Indirect Calls)",
        &|f| f.cumulative as f64 - f.direct as f64,
        &|f| {
            (f.cumulative > f.direct).then(|| {
                format!(
                    "{} indirect calls, {:.1}% total stack presence: {}",
                    f.cumulative - f.direct,
                    pct(f.cumulative),
                    name(f)
                )
            })
        },
    );
    section(
        out,
        "Functions with Highest Call Magnification (Cumulative/Direct)",
        &|f| ratio(f.cumulative, f.direct),
        &|f| {
            (f.direct > 0 && f.cumulative > f.direct).then(|| {
                format!(
                    "{:.1}x call magnification, {} indirect calls from {} direct: {}",
                    ratio(f.cumulative, f.direct),
                    f.cumulative - f.direct,
                    f.direct,
                    name(f)
                )
            })
        },
    );
}

/// a / b, 0 when b is 0 (CPython's sort keys).
fn ratio(a: u64, b: u64) -> f64 {
    if b > 0 {
        a as f64 / b as f64
    } else {
        0.0
    }
}
