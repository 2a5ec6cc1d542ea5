//! `jsonl`: newline-delimited JSON records for programs, as CPython 3.15.2's `--jsonl` writes
//! them (`jsonl_collector.py`): `meta`, then `string_table`, `frame_table` and `agg` records in
//! chunks of 256 entries, then `end`; every record carries `type`, `v` (schema version) and
//! `run_id`. Ids are given in the order CPython gives them (samples as they came, each stack
//! innermost frame first; a frame's function name before its file name), so both tools write
//! the same records for the same capture. Consumers ignore unknown record types and fields.

use std::fmt::Write as _;

use anyhow::{Context, Result};
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
    /// The fields every record starts with, as CPython orders them.
    fn open_record(&self, out: &mut String, kind: &str) {
        let _ = write!(
            out,
            r#"{{"type":"{kind}","v":{SCHEMA_VERSION},"run_id":"{}""#,
            self.run_id
        );
    }

    /// One record per chunk of `len` entries: the record's fields, `fields` after them (each
    /// with its leading comma), and the chunk's entries under `field`, each written by
    /// `entry` from its index.
    fn chunked(
        &self,
        out: &mut String,
        kind: &str,
        fields: &str,
        field: &str,
        len: usize,
        mut entry: impl FnMut(&mut String, usize),
    ) {
        for start in (0..len).step_by(CHUNK_SIZE) {
            self.open_record(out, kind);
            let _ = write!(out, r#"{fields},"{field}":["#);
            for i in start..len.min(start + CHUNK_SIZE) {
                if i > start {
                    out.push(',');
                }
                entry(out, i);
            }
            out.push_str("]}\n");
        }
    }
}

/// A string as Python's `json.dumps` writes it: ASCII only, `\uXXXX` (in lower case, UTF-16
/// surrogate pairs beyond the first plane) for every other character and for control
/// characters without a short escape.
fn put_str(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            ' '..='~' => out.push(c),
            _ => {
                let mut units = [0u16; 2];
                for unit in c.encode_utf16(&mut units) {
                    let _ = write!(out, "\\u{unit:04x}");
                }
            }
        }
    }
    out.push('"');
}

impl AggregateOutput for Jsonl {
    fn export(&mut self, counts: &StackCounts, ctx: &ExportContext<'_>) -> Result<()> {
        let path = ctx.path.context("jsonl output needs a file")?;
        let tables = Tables::build(counts, ctx.symbols);
        // Written as CPython's `json.dumps(record, separators=(",", ":"))` writes it, byte
        // for byte but the run id.
        let mut out = String::new();
        self.open_record(&mut out, "meta");
        let _ = write!(out, r#","sample_interval_usec":{}"#, self.interval_us);
        if let Some(mode) = self.mode {
            let _ = write!(out, r#","mode":"{}""#, mode.name());
        }
        out.push_str("}\n");
        let strings = tables.strings.list();
        self.chunked(
            &mut out,
            "string_table",
            "",
            "strings",
            strings.len(),
            |out, i| {
                let _ = write!(out, r#"{{"str_id":{i},"value":"#);
                put_str(out, &strings[i]);
                out.push('}');
            },
        );
        let frames = tables.frames.list();
        self.chunked(
            &mut out,
            "frame_table",
            "",
            "frames",
            frames.len(),
            |out, i| {
                let (path, func, line, end_line, col, end_col) = frames[i];
                let _ = write!(
                    out,
                    r#"{{"frame_id":{i},"path_str_id":{path},"func_str_id":{func},"line":{line}"#
                );
                for (key, value) in [("end_line", end_line), ("col", col), ("end_col", end_col)] {
                    if let Some(v) = value {
                        let _ = write!(out, r#","{key}":{v}"#);
                    }
                }
                out.push('}');
            },
        );
        let total = tables.samples_total;
        let agg_fields = format!(r#","kind":"frame","scope":"final","samples_total":{total}"#);
        self.chunked(
            &mut out,
            "agg",
            &agg_fields,
            "entries",
            tables.counts.len(),
            |out, i| {
                let (self_samples, cumulative) = tables.counts[i];
                let _ = write!(
                    out,
                    r#"{{"frame_id":{i},"self":{self_samples},"cumulative":{cumulative}}}"#
                );
            },
        );
        self.open_record(&mut out, "end");
        let _ = writeln!(out, r#","samples_total":{total}}}"#);
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strings_are_escaped_as_json_dumps_escapes_them() {
        let mut out = String::new();
        // json.dumps('é"\\\n\x01\x7f\t\x08\x0c\r/😀<'), in CPython.
        put_str(&mut out, "é\"\\\n\u{1}\u{7f}\t\u{8}\u{c}\r/😀<");
        assert_eq!(out, r#""\u00e9\"\\\n\u0001\u007f\t\b\f\r/\ud83d\ude00<""#);
    }
}
