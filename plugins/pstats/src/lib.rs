//! pstats output. With `-o`: a marshal file in cProfile's shape that `pstats.Stats` loads on
//! Python 3.8-3.15 (keys `(filename, lineno, funcname)`, values `(direct, cumulative, tottime,
//! cumtime, callers)`; Tachyon's `("__sampled__",)` marker is left out because pre-3.15
//! pstats cannot unpack it). Each caller entry is cProfile's `(nc, cc, tt, ct)` tuple — the
//! samples in which that caller called the function, twice, then the function's own and total
//! time in them — where CPython 3.15.2 writes a bare count: snakeviz and `print_callers` read
//! the tuple, and snakeviz fails on the count. Without `-o`: Tachyon's printed table.

mod marshal;

use marshal::Marshal;
mod stats;
mod table;

use std::io::Write;

use anyhow::{bail, Context, Result};
use tachyon_plugin_api::{
    stdout_takes_colors, AggregateOutput, Aggregating, CollectorConfig, ExportContext, Format,
    Mode, Needs, StackCounts,
};

pub use stats::{FuncStats, FuncTable};
use table::{SortKey, TableOptions};

pub struct Pstats {
    interval_s: f64,
    table: TableOptions,
}

impl Pstats {
    pub fn new(config: &CollectorConfig) -> Result<Self> {
        let sort = config.option("sort").unwrap_or("nsamples");
        let sort = SortKey::parse(sort).with_context(|| format!("unknown --sort '{sort}'"))?;
        let limit = match config.option("limit") {
            Some(l) => l
                .parse()
                .with_context(|| format!("invalid --limit '{l}'"))?,
            None => 15,
        };
        if config.interval_us == 0 {
            bail!("pstats needs a non-zero sampling interval");
        }
        let interval_s = config.interval_us as f64 / 1e6;
        Ok(Pstats {
            interval_s,
            table: TableOptions {
                sort,
                limit,
                summary: config.option("no_summary").is_none(),
                interval_s,
                cpu_mode: config.mode == Mode::Cpu,
            },
        })
    }

    /// Write the marshal bytes of the stats dictionary as they are made, a megabyte at a time
    /// (on a capture of many stacks the file is hundreds of megabytes of caller edges).
    pub fn marshal(&self, table: &FuncTable, out: &mut impl Write) -> std::io::Result<()> {
        // Each function's key tuple, encoded once (it recurs among many callers) and written
        // once, then referred to.
        let mut encoded = Marshal::default();
        let mut key_at = vec![0];
        for k in table.keys.list() {
            encoded.tuple(3);
            encoded.str(&k.filename);
            encoded.int(k.lineno.into());
            encoded.str(&k.funcname);
            key_at.push(encoded.out.len());
        }
        let key = |i: usize| &encoded.out[key_at[i]..key_at[i + 1]];
        let mut reference = vec![None; key_at.len() - 1];
        let mut m = Marshal::default();
        m.dict();
        for (i, st) in table.stats.iter().enumerate() {
            m.shared(key(i), &mut reference[i]);
            m.tuple(5);
            m.int(st.direct as i64);
            m.int(st.cumulative as i64);
            m.float(st.direct as f64 * self.interval_s);
            m.float(st.cumulative as f64 * self.interval_s);
            m.dict();
            for &(caller, edge) in &st.callers {
                m.shared(key(caller), &mut reference[caller]);
                m.tuple(4);
                m.int(edge.samples as i64);
                m.int(edge.samples as i64);
                m.float(edge.direct as f64 * self.interval_s);
                m.float(edge.samples as f64 * self.interval_s);
            }
            m.dict_end();
            if m.out.len() >= 1 << 20 {
                out.write_all(&m.out)?;
                m.out.clear();
            }
        }
        m.dict_end();
        out.write_all(&m.out)?;
        out.flush()
    }
}

impl AggregateOutput for Pstats {
    fn export(&mut self, counts: &StackCounts, ctx: &ExportContext<'_>) -> Result<()> {
        let table = FuncTable::build(counts, ctx.symbols);
        if let Some(path) = ctx.path {
            let mut file = tachyon_plugin_api::output_file(path)?;
            self.marshal(&table, &mut file)
                .with_context(|| format!("cannot write {}", path.display()))?;
            eprintln!(
                "pstats profile written to {} ({} functions)",
                ctx.shown_path().display(),
                table.stats.len()
            );
        } else {
            let mut stdout = std::io::stdout().lock();
            stdout
                .write_all(table::render(&table, &self.table, stdout_takes_colors()).as_bytes())?;
            stdout.flush()?;
        }
        Ok(())
    }
}

inventory::submit! {
    Format {
        name: "pstats",
        description: "Python pstats: printed table, or with -o a file for pstats.Stats / snakeviz",
        extension: "pstats", options: &["sort", "limit", "no_summary"], needs: Needs { stdout: true, ..Needs::NOTHING },
        create: |config| Ok(Box::new(Aggregating::new(Pstats::new(config)?))),
    }
}
