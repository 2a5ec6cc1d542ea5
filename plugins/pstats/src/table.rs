//! Tachyon's printed pstats table (`--format pstats` without `-o`), with `--sort`, `--limit`
//! and the legend / summary of interesting functions.

use std::collections::HashMap;
use std::fmt::Write as _;

use tachyon_plugin_api::printable;

use crate::stats::{short_name, FuncTable};

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

pub struct TableOptions {
    pub sort: SortKey,
    pub limit: usize,
    pub summary: bool,
    pub interval_s: f64,
    pub mode: &'static str,
}

pub fn render(table: &FuncTable, opts: &TableOptions) -> String {
    let mut out = String::new();
    let total_direct: u64 = table.stats.iter().map(|s| s.direct).sum::<u64>().max(1);
    let mut order: Vec<usize> = (0..table.stats.len()).collect();
    let names: Vec<String> = table.keys.list().iter().map(short_name).collect();
    let s = &table.stats;
    order.sort_by(|&a, &b| {
        let primary = match opts.sort {
            SortKey::NSamples | SortKey::TotTime | SortKey::SamplePct => {
                s[b].direct.cmp(&s[a].direct)
            }
            SortKey::CumTime | SortKey::CumulPct | SortKey::NSamplesCumul => {
                s[b].cumulative.cmp(&s[a].cumulative)
            }
            SortKey::Name => std::cmp::Ordering::Equal,
        };
        primary.then_with(|| names[a].cmp(&names[b]))
    });
    order.truncate(opts.limit);

    let secs = |n: u64| n as f64 * opts.interval_s;
    let (tot_unit, tot_scale) =
        unit_for(order.iter().map(|&i| secs(s[i].direct)).fold(0.0, f64::max));
    let (cum_unit, cum_scale) = unit_for(
        order
            .iter()
            .map(|&i| secs(s[i].cumulative))
            .fold(0.0, f64::max),
    );
    let _ = writeln!(out, "Profile Stats (Mode: {}):", opts.mode);
    let _ = writeln!(
        out,
        "{:>15} {:>8} {:>13} {:>8} {:>13}  filename:lineno(function)",
        "nsamples",
        "sample%",
        format!("tottime ({tot_unit})"),
        "cumul%",
        format!("cumtime ({cum_unit})")
    );
    for &i in &order {
        let st = &s[i];
        let _ = writeln!(
            out,
            "{:>15} {:>8.1} {:>13.3} {:>8.1} {:>13.3}  {}",
            format!("{}/{}", st.direct, st.cumulative),
            st.direct as f64 * 100.0 / total_direct as f64,
            secs(st.direct) * tot_scale,
            st.cumulative as f64 * 100.0 / total_direct as f64,
            secs(st.cumulative) * cum_scale,
            names[i]
        );
    }
    if opts.summary {
        render_legend(&mut out);
        render_summary(&mut out, table, total_direct);
    }
    out
}

fn render_legend(out: &mut String) {
    out.push_str(
        "\nLegend:
  nsamples: direct/cumulative samples (direct = the function was executing, cumulative = it was on the stack)
  sample%: direct samples as a percentage of all samples
  tottime: estimated time executing the function itself (direct samples x interval)
  cumul%: cumulative samples as a percentage of all samples
  cumtime: estimated time the function was on the stack, callees included
  filename:lineno(function): where the function is
",
    );
}

type Func = (String, u64, u64);

fn top(mut v: Vec<(f64, &Func)>) -> Vec<(f64, &Func)> {
    v.sort_by(|a, b| b.0.total_cmp(&a.0));
    v.truncate(3);
    v
}

/// Top three functions (lines merged into `file:func`) by three ratios, as Tachyon prints.
fn render_summary(out: &mut String, table: &FuncTable, total: u64) {
    let mut merged: HashMap<String, (u64, u64)> = HashMap::new();
    for (key, st) in table.keys.list().iter().zip(&table.stats) {
        let e = merged
            .entry(printable(&format!("{}:{}", key.base_name(), key.funcname)).into_owned())
            .or_default();
        e.0 += st.direct;
        e.1 += st.cumulative;
    }
    let mut funcs: Vec<Func> = merged.into_iter().map(|(k, (d, c))| (k, d, c)).collect();
    funcs.sort_by(|a, b| a.0.cmp(&b.0));
    let pct = |n: u64| n as f64 * 100.0 / total as f64;
    out.push_str("\nSummary of Interesting Functions:\n");
    out.push_str("\nFunctions with Highest Direct/Cumulative Ratio (Hot Spots):\n");
    for (ratio, (name, d, _)) in top(funcs
        .iter()
        .filter(|f| f.1 > 0 && f.2 > 0)
        .map(|f| (f.1 as f64 / f.2 as f64, f))
        .collect())
    {
        let _ = writeln!(
            out,
            "  {ratio:.3} direct/cumulative ratio, {:.1}% direct samples: {name}",
            pct(*d)
        );
    }
    out.push_str("\nFunctions with Highest Call Frequency (Indirect Calls):\n");
    for (indirect, (name, _, c)) in top(funcs
        .iter()
        .filter(|f| f.2 > f.1)
        .map(|f| ((f.2 - f.1) as f64, f))
        .collect())
    {
        let _ = writeln!(
            out,
            "  {indirect} indirect calls, {:.1}% total stack presence: {name}",
            pct(*c)
        );
    }
    out.push_str("\nFunctions with Highest Call Magnification (Cumulative/Direct):\n");
    for (mag, (name, d, c)) in top(funcs
        .iter()
        .filter(|f| f.1 > 0 && f.2 > f.1)
        .map(|f| (f.2 as f64 / f.1 as f64, f))
        .collect())
    {
        let _ = writeln!(
            out,
            "  {mag:.1}x call magnification, {} indirect calls from {d} direct: {name}",
            c - d
        );
    }
}
