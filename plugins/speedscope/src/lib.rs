//! speedscope's file format (https://www.speedscope.app/file-format-schema.json): one
//! "sampled" profile per thread, its samples in arrival order with consecutive repeats of a
//! stack merged into one weight, frames per function and line. speedscope, and py-spy's
//! `--format speedscope` users, open it as it is.

use std::collections::BTreeMap;
use std::io::Write;

use anyhow::{Context, Result};
use tachyon_plugin_api::{
    Collector, CollectorConfig, ExportContext, Format, FrameKeys, FxHashMap, Needs, Sample,
    StackId, StackTable, Symbols,
};

struct Speedscope {
    interval_us: u64,
    /// Thread -> (stack, samples) in arrival order, consecutive repeats merged.
    threads: BTreeMap<u64, Vec<(StackId, u64)>>,
}

impl Collector for Speedscope {
    fn collect(&mut self, _symbols: &Symbols, sample: &Sample<'_>) {
        let stack = sample.stack;
        if stack == StackTable::EMPTY {
            return;
        }
        let samples = self.threads.entry(sample.thread_id).or_default();
        match samples.last_mut() {
            Some((last, weight)) if *last == stack => *weight += sample.weight(),
            _ => samples.push((stack, sample.weight())),
        }
    }

    fn export(&mut self, ctx: &ExportContext<'_>) -> Result<()> {
        let path = ctx.path.context("speedscope output needs a file")?;
        let cannot = || format!("cannot write {}", path.display());
        let mut out = tachyon_plugin_api::output_file(path)?;
        self.write(ctx.symbols, &mut out).with_context(cannot)?;
        // Dropping a BufWriter hides write errors (a full disk): flush explicitly.
        out.flush().with_context(cannot)?;
        eprintln!(
            "speedscope output written to {}",
            ctx.shown_path().display()
        );
        Ok(())
    }
}

impl Speedscope {
    /// The document, written as it goes (a sample's stack is as many numbers as frames, so
    /// the file can be far larger than the profile); keys in the order serde_json sorts them.
    fn write(&self, symbols: &Symbols, out: &mut impl Write) -> Result<()> {
        // speedscope frames are per function and line; ours are per location and opcode.
        let mut keys = FrameKeys::default();
        // Each distinct stack's `[k,k,...]`, rendered once, in the order samples first show
        // it (which numbers the frames as they are met): `rendered[at[i]..at[i + 1]]` is the
        // text of the i-th distinct stack, and `text_of` each stack's i.
        let mut rendered: Vec<u8> = Vec::new();
        let mut at: Vec<usize> = vec![0];
        let mut text_of: FxHashMap<StackId, u32> = FxHashMap::default();
        let mut number = itoa::Buffer::new();
        for list in self.threads.values() {
            for &(stack, _) in list {
                text_of.entry(stack).or_insert_with(|| {
                    let frames = symbols.stacks().frames_root_first(stack);
                    for (k, &frame) in frames.iter().enumerate() {
                        rendered.push(if k == 0 { b'[' } else { b',' });
                        rendered
                            .extend_from_slice(number.format(keys.id(symbols, frame)).as_bytes());
                    }
                    rendered.push(b']');
                    at.push(rendered.len());
                    (at.len() - 2) as u32
                });
            }
        }
        let ms = self.interval_us as f64 / 1000.0;
        let mut weight_text: FxHashMap<u64, Vec<u8>> = FxHashMap::default();
        out.write_all(b"{\"$schema\":\"https://www.speedscope.app/file-format-schema.json\",\"activeProfileIndex\":0,\"exporter\":")?;
        serde_json::to_writer(&mut *out, &format!("tachyon {}", env!("CARGO_PKG_VERSION")))?;
        out.write_all(b",\"name\":\"tachyon profile\",\"profiles\":[")?;
        for (i, (tid, list)) in self.threads.iter().enumerate() {
            if i > 0 {
                out.write_all(b",")?;
            }
            let total: f64 = list.iter().map(|&(_, w)| w as f64 * ms).sum();
            out.write_all(b"{\"endValue\":")?;
            serde_json::to_writer(&mut *out, &total)?;
            write!(out, ",\"name\":\"Thread {tid}\",\"samples\":[")?;
            // Hundreds of megabytes on a capture of many deep stacks: made on two threads.
            let pieces = list.len().div_ceil(SAMPLES_A_PIECE);
            let samples = |piece: usize, text: &mut Vec<u8>| {
                let start = piece * SAMPLES_A_PIECE;
                for (j, &(stack, _)) in list.iter().enumerate().skip(start).take(SAMPLES_A_PIECE) {
                    if j > 0 {
                        text.push(b',');
                    }
                    let i = text_of[&stack] as usize;
                    text.extend_from_slice(&rendered[at[i]..at[i + 1]]);
                }
                Ok(())
            };
            tachyon_plugin_api::write_in_pieces(out, pieces, &samples)?;
            out.write_all(
                b"],\"startValue\":0,\"type\":\"sampled\",\"unit\":\"milliseconds\",\"weights\":[",
            )?;
            // A run's weight is a few samples' worth, the same few values again and again:
            // each is formatted once.
            for (j, &(_, w)) in list.iter().enumerate() {
                if j > 0 {
                    out.write_all(b",")?;
                }
                let text = weight_text
                    .entry(w)
                    .or_insert_with(|| serde_json::to_vec(&(w as f64 * ms)).unwrap_or_default());
                out.write_all(text)?;
            }
            out.write_all(b"]}")?;
        }
        out.write_all(b"],\"shared\":{\"frames\":[")?;
        for (i, k) in keys.list().iter().enumerate() {
            if i > 0 {
                out.write_all(b",")?;
            }
            if k.is_synthetic() {
                out.write_all(b"{\"name\":")?;
            } else {
                out.write_all(b"{\"file\":")?;
                serde_json::to_writer(&mut *out, &k.filename)?;
                write!(out, ",\"line\":{},\"name\":", k.lineno)?;
            }
            serde_json::to_writer(&mut *out, &k.funcname)?;
            out.write_all(b"}")?;
        }
        out.write_all(b"]}}")?;
        Ok(())
    }
}

/// Samples written at a time by one thread: about a megabyte on a capture of deep stacks.
const SAMPLES_A_PIECE: usize = 8192;

fn create(config: &CollectorConfig) -> Result<Box<dyn Collector>> {
    Ok(Box::new(Speedscope {
        interval_us: config.interval_us,
        threads: BTreeMap::new(),
    }))
}

inventory::submit! {
    Format {
        name: "speedscope",
        description: "speedscope JSON (https://www.speedscope.app; one sampled profile per thread), as py-spy writes",
        extension: "json", options: &[], needs: Needs::NOTHING,
        create,
    }
}
