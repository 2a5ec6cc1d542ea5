//! `jsonl`: newline-delimited JSON records for programs, as CPython 3.15.2's `--jsonl` writes
//! them (`jsonl_collector.py`): `meta`, then `string_table`, `frame_table` and `agg` records in
//! chunks of 256 entries, then `end`; every record carries `type`, `v` (schema version) and
//! `run_id`. Ids are given in the order CPython gives them (samples as they came, each stack
//! innermost frame first; a frame's function name before its file name), so both tools write
//! the same records for the same capture. Consumers ignore unknown record types and fields.

use std::fmt::Write as _;

use anyhow::{Context, Result};
use serde_json::{json, Map, Value};
use tachyon_plugin_api::{
    AggregateOutput, Aggregating, CollectorConfig, ExportContext, Format, FrameId, Interner, Mode,
    Needs, StackCounts, Symbols,
};

/// Entries per chunked record.
const CHUNK_SIZE: usize = 256;
const SCHEMA_VERSION: u32 = 0;

/// A frame as the frame table keys it: (path, function, line, end line, column, end column),
/// the last three `None` where unknown.
type FrameRecord = (usize, usize, i32, Option<i32>, Option<i32>, Option<i32>);

struct Jsonl {
    interval_us: u64,
    /// None when the capture recorded no mode (the record then has none, as CPython's).
    mode: Option<Mode>,
    run_id: String,
}

/// A random 128-bit id in hex, as `uuid.uuid4().hex` (from the kernel's random source).
fn run_id() -> String {
    let mut bytes = [0u8; 16];
    if std::fs::File::open("/dev/urandom")
        .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut bytes))
        .is_err()
    {
        // No random source: time and pid still tell runs apart.
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        bytes = (now ^ u128::from(std::process::id()) << 64).to_le_bytes();
    }
    bytes[6] = (bytes[6] & 0x0f) | 0x40; // version 4
    bytes[8] = (bytes[8] & 0x3f) | 0x80; // RFC 4122 variant
    bytes.iter().fold(String::new(), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

/// The string, frame and count tables, filled in CPython's order.
#[derive(Default)]
struct Tables {
    strings: Interner<String>,
    frames: Interner<FrameRecord>,
    /// Per frame id: (self, cumulative) samples.
    counts: Vec<(u64, u64)>,
    samples_total: u64,
}

impl Tables {
    fn build(counts: &StackCounts, symbols: &Symbols) -> Tables {
        let mut t = Tables::default();
        // By frame id (ids are dense): its record's id, once made.
        let mut record_of: Vec<usize> = Vec::new();
        // Per frame id: the last entry that counted it cumulatively.
        let mut seen_in: Vec<usize> = Vec::new();
        let mut walk = symbols.stacks().walk(counts.entries(), |e| e.1);
        while let Some((entry, &(_, _, weight), frames)) = walk.next_stack() {
            t.samples_total += weight;
            for (i, &frame) in frames.iter().enumerate() {
                if record_of.len() <= frame as usize {
                    record_of.resize(frame as usize + 1, usize::MAX);
                }
                let id = match record_of[frame as usize] {
                    usize::MAX => {
                        let id = t.frame_id(symbols, frame);
                        record_of[frame as usize] = id;
                        id
                    }
                    id => id,
                };
                if id >= t.counts.len() {
                    t.counts.resize(id + 1, (0, 0));
                    seen_in.resize(id + 1, usize::MAX);
                }
                if i == 0 {
                    t.counts[id].0 += weight;
                }
                // Recursion counts once per sample.
                if seen_in[id] != entry {
                    seen_in[id] = entry;
                    t.counts[id].1 += weight;
                }
            }
        }
        t
    }

    /// CPython's `_get_or_create_frame_id`: the function's name is interned before its file.
    fn frame_id(&mut self, symbols: &Symbols, frame: FrameId) -> usize {
        let f = symbols.frame(frame);
        let func = self.strings.id(symbols.str(f.funcname));
        let path = self.strings.id(symbols.str(f.filename));
        // A frame without a location (tachyon's `<GC>`/`<native>`, or an unknown line) is at
        // line 0 with nothing else, as CPython's DEFAULT_LOCATION.
        let location = if symbols.is_synthetic(f) || f.lineno < 0 {
            (0, 0, -1, -1)
        } else {
            (f.lineno, f.end_lineno, f.column, f.end_column)
        };
        self.frames.id(&(
            path,
            func,
            location.0,
            (location.1 > 0).then_some(location.1),
            (location.2 >= 0).then_some(location.2),
            (location.3 >= 0).then_some(location.3),
        ))
    }
}

impl Jsonl {
    fn record(&self, kind: &str) -> Map<String, Value> {
        let mut m = Map::new();
        m.insert("type".into(), json!(kind));
        m.insert("v".into(), json!(SCHEMA_VERSION));
        m.insert("run_id".into(), json!(self.run_id));
        m
    }

    /// `base` once per chunk of `entries`, the chunk under `field`.
    fn chunked(
        &self,
        out: &mut Vec<u8>,
        base: &Map<String, Value>,
        field: &str,
        entries: &[Value],
    ) -> Result<()> {
        for chunk in entries.chunks(CHUNK_SIZE) {
            let mut record = base.clone();
            record.insert(field.into(), Value::Array(chunk.to_vec()));
            line(out, &Value::Object(record))?;
        }
        Ok(())
    }
}

/// One record, compact, on its own line.
fn line(out: &mut Vec<u8>, record: &Value) -> Result<()> {
    serde_json::to_writer(&mut *out, record)?;
    out.push(b'\n');
    Ok(())
}

impl AggregateOutput for Jsonl {
    fn export(&mut self, counts: &StackCounts, ctx: &ExportContext<'_>) -> Result<()> {
        let path = ctx.path.context("jsonl output needs a file")?;
        let tables = Tables::build(counts, ctx.symbols);
        let mut out = Vec::new();
        let mut meta = self.record("meta");
        meta.insert("sample_interval_usec".into(), json!(self.interval_us));
        if let Some(mode) = self.mode {
            meta.insert("mode".into(), json!(mode.name()));
        }
        line(&mut out, &Value::Object(meta))?;
        let strings: Vec<Value> = tables
            .strings
            .list()
            .iter()
            .enumerate()
            .map(|(i, s)| json!({"str_id": i, "value": s}))
            .collect();
        self.chunked(&mut out, &self.record("string_table"), "strings", &strings)?;
        let frames: Vec<Value> = tables
            .frames
            .list()
            .iter()
            .enumerate()
            .map(|(i, &(path, func, line, end_line, col, end_col))| {
                let mut f = Map::new();
                f.insert("frame_id".into(), json!(i));
                f.insert("path_str_id".into(), json!(path));
                f.insert("func_str_id".into(), json!(func));
                f.insert("line".into(), json!(line));
                for (key, value) in [("end_line", end_line), ("col", col), ("end_col", end_col)] {
                    if let Some(v) = value {
                        f.insert(key.into(), json!(v));
                    }
                }
                Value::Object(f)
            })
            .collect();
        self.chunked(&mut out, &self.record("frame_table"), "frames", &frames)?;
        let entries: Vec<Value> = tables
            .counts
            .iter()
            .enumerate()
            .map(|(i, &(self_samples, cumulative))| {
                json!({"frame_id": i, "self": self_samples, "cumulative": cumulative})
            })
            .collect();
        let mut agg = self.record("agg");
        agg.insert("kind".into(), json!("frame"));
        agg.insert("scope".into(), json!("final"));
        agg.insert("samples_total".into(), json!(tables.samples_total));
        self.chunked(&mut out, &agg, "entries", &entries)?;
        let mut end = self.record("end");
        end.insert("samples_total".into(), json!(tables.samples_total));
        line(&mut out, &Value::Object(end))?;
        std::fs::write(path, out).with_context(|| format!("cannot write {}", path.display()))?;
        eprintln!("JSONL profile written to {}", ctx.shown_path().display());
        Ok(())
    }
}

fn create(config: &CollectorConfig) -> Result<Box<dyn tachyon_plugin_api::Collector>> {
    Ok(Box::new(Aggregating::new(Jsonl {
        interval_us: config.interval_us,
        mode: (!config.mode_unknown).then_some(config.mode),
        run_id: run_id(),
    })))
}

inventory::submit! {
    Format {
        name: "jsonl",
        description: "JSON Lines records (meta, string/frame tables, self and cumulative counts) for programs",
        extension: "jsonl", options: &[], needs: Needs::NOTHING,
        create,
    }
}
