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
    FxHashMap, Mode, Needs, StackCounts,
};

pub use stats::{CallerEdge, FuncStats, FuncTable};
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
        // A caller edge's tuple follows from its two counts, and most edges of a large
        // profile hold a few samples: each distinct tuple is written once, then referred to
        // (on a capture of 100,000 distinct stacks: 2.4 million edges, 407 distinct tuples).
        let mut edge_reference: FxHashMap<(u64, u64), Option<u32>> = FxHashMap::default();
        let mut edge = Marshal::default();
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
            for &(caller, CallerEdge { samples, direct }) in &st.callers {
                m.shared(key(caller), &mut reference[caller]);
                let tuple = edge_reference.entry((samples, direct)).or_default();
                if tuple.is_none() {
                    edge.out.clear();
                    edge.tuple(4);
                    edge.int(samples as i64);
                    edge.int(samples as i64);
                    edge.float(direct as f64 * self.interval_s);
                    edge.float(samples as f64 * self.interval_s);
                }
                m.shared(&edge.out, tuple);
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

#[cfg(test)]
mod tests {
    use super::*;
    use tachyon_plugin_api::{testing, Symbols};

    #[derive(Clone, Debug, PartialEq)]
    enum Value {
        Int(i64),
        Float(f64),
        Str(String),
        Tuple(Vec<Value>),
        Dict(Vec<(Value, Value)>),
    }

    /// Python's `marshal.load` for the types a pstats file holds: a flagged object takes the
    /// next reference before its items do, as CPython numbers them.
    struct Loader<'a> {
        data: &'a [u8],
        pos: usize,
        refs: Vec<Option<Value>>,
        flagged_tuples: usize,
    }

    impl Loader<'_> {
        fn take(&mut self, n: usize) -> &[u8] {
            self.pos += n;
            &self.data[self.pos - n..self.pos]
        }

        fn u32(&mut self) -> u32 {
            u32::from_le_bytes(self.take(4).try_into().unwrap())
        }

        fn value(&mut self) -> Value {
            let byte = self.take(1)[0];
            let slot = (byte & 0x80 != 0).then(|| {
                self.refs.push(None);
                self.refs.len() - 1
            });
            let value = match byte & 0x7f {
                b'i' => Value::Int(i64::from(self.u32() as i32)),
                b'g' => Value::Float(f64::from_le_bytes(self.take(8).try_into().unwrap())),
                b'u' => {
                    let len = self.u32() as usize;
                    Value::Str(String::from_utf8(self.take(len).to_vec()).unwrap())
                }
                b')' => {
                    let len = self.take(1)[0];
                    self.flagged_tuples += usize::from(slot.is_some() && len == 4);
                    Value::Tuple((0..len).map(|_| self.value()).collect())
                }
                b'{' => {
                    let mut items = Vec::new();
                    while self.data[self.pos] != b'0' {
                        items.push((self.value(), self.value()));
                    }
                    self.pos += 1;
                    Value::Dict(items)
                }
                b'r' => {
                    let index = self.u32() as usize;
                    return self.refs[index]
                        .clone()
                        .expect("a reference to a whole object");
                }
                other => panic!("unexpected marshal type {other}"),
            };
            if let Some(slot) = slot {
                self.refs[slot] = Some(value.clone());
            }
            value
        }
    }

    /// Edges of equal counts share one tuple, written once and referred to after; the file
    /// loads as the table, every function and caller edge with its own counts and times.
    #[test]
    fn equal_edges_are_written_once_and_load_whole() {
        let mut symbols = Symbols::new();
        let frames: Vec<_> = (0..40)
            .map(|i| testing::frame(&mut symbols, "/app/m.py", &format!("f{i}"), i + 1, 0))
            .collect();
        let (counts, _) = testing::random_samples(&mut symbols, &frames, 5, 1500, &[1, 2], 5, 2);
        let table = FuncTable::build(&counts, &symbols);
        let interval_s = 0.001;
        let pstats = Pstats::new(&CollectorConfig {
            interval_us: 1000,
            ..Default::default()
        })
        .unwrap();
        let mut file = Vec::new();
        pstats.marshal(&table, &mut file).unwrap();
        let mut loader = Loader {
            data: &file,
            pos: 0,
            refs: Vec::new(),
            flagged_tuples: 0,
        };
        let loaded = loader.value();
        assert_eq!(loader.pos, file.len());

        let key = |i: usize| {
            let k = &table.keys.list()[i];
            Value::Tuple(vec![
                Value::Str(k.filename.to_string()),
                Value::Int(k.lineno.into()),
                Value::Str(k.funcname.to_string()),
            ])
        };
        let times = |samples: u64, direct: u64| {
            [
                Value::Float(direct as f64 * interval_s),
                Value::Float(samples as f64 * interval_s),
            ]
        };
        let mut distinct_edges = std::collections::HashSet::new();
        let expected = Value::Dict(
            table
                .stats
                .iter()
                .enumerate()
                .map(|(i, st)| {
                    let callers = st
                        .callers
                        .iter()
                        .map(|&(caller, CallerEdge { samples, direct })| {
                            distinct_edges.insert((samples, direct));
                            let [tt, ct] = times(samples, direct);
                            let n = Value::Int(samples as i64);
                            (key(caller), Value::Tuple(vec![n.clone(), n, tt, ct]))
                        })
                        .collect();
                    let [tt, ct] = times(st.cumulative, st.direct);
                    let value = vec![
                        Value::Int(st.direct as i64),
                        Value::Int(st.cumulative as i64),
                        tt,
                        ct,
                        Value::Dict(callers),
                    ];
                    (key(i), Value::Tuple(value))
                })
                .collect(),
        );
        assert_eq!(loaded, expected);
        let edges: usize = table.stats.iter().map(|st| st.callers.len()).sum();
        assert!(
            distinct_edges.len() * 4 < edges,
            "{} distinct of {edges}",
            distinct_edges.len()
        );
        assert_eq!(loader.flagged_tuples, distinct_edges.len());
    }
}
