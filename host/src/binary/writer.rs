//! Writing `.bin` captures that CPython 3.15's `profiling.sampling replay` reads. Records are
//! chosen as CPython's writer chooses them (REPEAT / FULL / SUFFIX / POP_PUSH), so files are
//! as small as CPython's.

use std::collections::HashMap;
use std::io::Write;

use anyhow::Result;
use tachyon_plugin_api::{FrameInfo, Interner, RunStats};

use super::varint::{put_svar, put_uvar};
use super::*;

/// Pending REPEAT pairs are flushed before a thread's buffer would pass this size (as CPython).
const RLE_BUFFER_BYTES: usize = 16 * 1024;
const MAX_RLE_PAIR_BYTES: usize = 11;

/// A frame-table entry: file, function, line, end line, column, end column, opcode.
type FrameKey = (u32, u32, i32, i32, i32, i32, u8);

struct ThreadState {
    thread_id: u64,
    interpreter_id: u32,
    stack: Vec<u32>,
    last_ts: u64,
    /// Encoded (delta, status) pairs waiting to become one REPEAT record.
    pending: Vec<u8>,
    pending_count: u32,
}

enum Sink {
    Raw(Vec<u8>),
    Zstd(zstd::stream::write::Encoder<'static, Vec<u8>>),
}

pub struct BinaryWriter {
    interval_us: u64,
    start_time_us: u64,
    python_version: (u8, u8, u8),
    config: u32,
    strings: Interner<String>,
    frames: Vec<u8>,
    frame_ids: HashMap<FrameKey, u32>,
    frame_count: u32,
    threads: Vec<ThreadState>,
    thread_index: HashMap<(u64, u32), usize>,
    sample_count: u64,
    record: Vec<u8>,
    sink: Sink,
}

impl BinaryWriter {
    pub fn new(
        interval_us: u64,
        start_time_us: u64,
        zstd_level: Option<i32>,
        python_version: (u8, u8, u8),
        config: u32,
    ) -> Result<Self> {
        let sink = match zstd_level {
            Some(level) => Sink::Zstd(zstd::stream::write::Encoder::new(Vec::new(), level)?),
            None => Sink::Raw(Vec::new()),
        };
        Ok(BinaryWriter {
            interval_us,
            start_time_us,
            python_version,
            config,
            strings: Interner::default(),
            frames: Vec::new(),
            frame_ids: HashMap::new(),
            frame_count: 0,
            threads: Vec::new(),
            thread_index: HashMap::new(),
            sample_count: 0,
            record: Vec::with_capacity(4096),
            sink,
        })
    }

    fn intern_str(&mut self, s: &str) -> u32 {
        self.strings.id(s) as u32
    }

    /// Index of a frame in this file's frame table (interned by its full contents).
    pub fn intern_frame(&mut self, filename: &str, funcname: &str, frame: &FrameInfo) -> u32 {
        let file = self.intern_str(filename);
        let func = self.intern_str(funcname);
        let opcode = frame.opcode.unwrap_or(255);
        let key = (
            file,
            func,
            frame.lineno,
            frame.end_lineno,
            frame.column,
            frame.end_column,
            opcode,
        );
        if let Some(&id) = self.frame_ids.get(&key) {
            return id;
        }
        let delta = |base: i32, end: i32| {
            if base == -1 || end == -1 {
                0
            } else {
                end.wrapping_sub(base)
            }
        };
        put_uvar(&mut self.frames, u64::from(file));
        put_uvar(&mut self.frames, u64::from(func));
        put_svar(&mut self.frames, frame.lineno);
        put_svar(&mut self.frames, delta(frame.lineno, frame.end_lineno));
        put_svar(&mut self.frames, frame.column);
        put_svar(&mut self.frames, delta(frame.column, frame.end_column));
        self.frames.push(opcode);
        let id = self.frame_count;
        self.frame_count += 1;
        self.frame_ids.insert(key, id);
        id
    }

    /// One thread-sample. `frames` are indices from [`intern_frame`](Self::intern_frame),
    /// innermost first; deeper stacks than 256 keep their innermost frames.
    pub fn write_sample(
        &mut self,
        thread_id: u64,
        interpreter_id: u32,
        status: u8,
        timestamp_us: u64,
        frames: &[u32],
    ) -> Result<()> {
        let frames = &frames[..frames.len().min(MAX_DEPTH)];
        let index = if let Some(&i) = self.thread_index.get(&(thread_id, interpreter_id)) {
            i
        } else {
            self.threads.push(ThreadState {
                thread_id,
                interpreter_id,
                stack: Vec::new(),
                last_ts: self.start_time_us,
                pending: Vec::new(),
                pending_count: 0,
            });
            self.thread_index
                .insert((thread_id, interpreter_id), self.threads.len() - 1);
            self.threads.len() - 1
        };
        self.sample_count += 1;
        let thread = &mut self.threads[index];
        let delta = timestamp_us.saturating_sub(thread.last_ts);
        thread.last_ts = thread.last_ts.max(timestamp_us);

        if thread.stack == frames {
            if thread.pending.len() + MAX_RLE_PAIR_BYTES > RLE_BUFFER_BYTES {
                flush_repeat(thread, &mut self.record);
            }
            put_uvar(&mut thread.pending, delta);
            thread.pending.push(status);
            thread.pending_count += 1;
        } else {
            flush_repeat(thread, &mut self.record);
            encode_change(thread, delta, status, frames, &mut self.record);
            thread.stack.clear();
            thread.stack.extend_from_slice(frames);
        }
        if self.record.len() >= 64 * 1024 {
            self.drain_records()?;
        }
        Ok(())
    }

    fn drain_records(&mut self) -> Result<()> {
        match &mut self.sink {
            Sink::Raw(buf) => buf.extend_from_slice(&self.record),
            Sink::Zstd(enc) => enc.write_all(&self.record)?,
        }
        self.record.clear();
        Ok(())
    }

    /// The complete file; `provenance` (JSON) goes between the frame table and the stats.
    pub fn finish(
        mut self,
        stats: Option<&RunStats>,
        provenance: Option<&serde_json::Value>,
    ) -> Result<Vec<u8>> {
        for thread in &mut self.threads {
            flush_repeat(thread, &mut self.record);
        }
        self.drain_records()?;
        let (compression, records) = match self.sink {
            Sink::Raw(buf) => (COMPRESSION_NONE, buf),
            Sink::Zstd(enc) => (COMPRESSION_ZSTD, enc.finish()?),
        };
        let mut out = vec![0u8; HEADER_SIZE];
        out.extend_from_slice(&records);
        let string_table_offset = out.len() as u64;
        for s in self.strings.list() {
            put_uvar(&mut out, s.len() as u64);
            out.extend_from_slice(s.as_bytes());
        }
        let frame_table_offset = out.len() as u64;
        out.extend_from_slice(&self.frames);
        if let Some(json) = provenance.and_then(|p| serde_json::to_vec(p).ok()) {
            if json.len() <= super::MAX_PROVENANCE {
                out.extend_from_slice(super::PROVENANCE_SIGNATURE);
                out.extend_from_slice(&(json.len() as u32).to_le_bytes());
                out.extend_from_slice(&json);
            }
        }
        if let Some(stats) = stats {
            let present = u32::from(stats.error_rate.is_some())
                | (u32::from(stats.missed_samples.is_some()) << 1);
            for v in [
                stats.duration_sec,
                stats.sample_rate,
                stats.error_rate.unwrap_or(0.0),
                stats.missed_samples.unwrap_or(0.0),
            ] {
                out.extend_from_slice(&v.to_le_bytes());
            }
            out.extend_from_slice(&present.to_le_bytes());
            out.extend_from_slice(&0u32.to_le_bytes());
            out.extend_from_slice(STATS_SIGNATURE);
            out.extend_from_slice(&1u32.to_le_bytes());
            out.extend_from_slice(&(STATS_SIZE as u32).to_le_bytes());
        }
        let total_size = (out.len() + FOOTER_SIZE) as u64;
        out.extend_from_slice(&(self.strings.len() as u32).to_le_bytes());
        out.extend_from_slice(&self.frame_count.to_le_bytes());
        out.extend_from_slice(&total_size.to_le_bytes());
        out.extend_from_slice(&[0u8; 16]);

        let mut header = Vec::with_capacity(HEADER_SIZE);
        header.extend_from_slice(&MAGIC.to_le_bytes());
        header.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
        let (major, minor, micro) = self.python_version;
        header.extend_from_slice(&[major, minor, micro, 0]);
        header.extend_from_slice(&self.start_time_us.to_le_bytes());
        header.extend_from_slice(&self.interval_us.to_le_bytes());
        header.extend_from_slice(&self.sample_count.to_le_bytes());
        header.extend_from_slice(&(self.threads.len() as u32).to_le_bytes());
        header.extend_from_slice(&string_table_offset.to_le_bytes());
        header.extend_from_slice(&frame_table_offset.to_le_bytes());
        header.extend_from_slice(&compression.to_le_bytes());
        header.extend_from_slice(&self.config.to_le_bytes());
        out[..HEADER_SIZE].copy_from_slice(&header);
        Ok(out)
    }
}

fn record_prefix(thread: &ThreadState, encoding: u8, out: &mut Vec<u8>) {
    out.extend_from_slice(&thread.thread_id.to_le_bytes());
    out.extend_from_slice(&thread.interpreter_id.to_le_bytes());
    out.push(encoding);
}

fn flush_repeat(thread: &mut ThreadState, out: &mut Vec<u8>) {
    if thread.pending_count == 0 {
        return;
    }
    record_prefix(thread, ENC_REPEAT, out);
    put_uvar(out, u64::from(thread.pending_count));
    out.extend_from_slice(&thread.pending);
    thread.pending.clear();
    thread.pending_count = 0;
}

/// FULL, SUFFIX or POP_PUSH for a stack that differs from the thread's previous one.
fn encode_change(thread: &ThreadState, delta: u64, status: u8, frames: &[u32], out: &mut Vec<u8>) {
    let prev = &thread.stack;
    let shared = prev
        .iter()
        .rev()
        .zip(frames.iter().rev())
        .take_while(|(a, b)| a == b)
        .count();
    let pushed = &frames[..frames.len() - shared];
    let encoding = if shared == 0 {
        ENC_FULL
    } else if shared == prev.len() && !pushed.is_empty() {
        ENC_SUFFIX
    } else if shared < frames.len() / 2 {
        ENC_FULL
    } else {
        ENC_POP_PUSH
    };
    record_prefix(thread, encoding, out);
    put_uvar(out, delta);
    out.push(status);
    let listed = match encoding {
        ENC_FULL => frames,
        ENC_SUFFIX => {
            put_uvar(out, shared as u64);
            pushed
        }
        _ => {
            put_uvar(out, (prev.len() - shared) as u64);
            pushed
        }
    };
    put_uvar(out, listed.len() as u64);
    for &f in listed {
        put_uvar(out, u64::from(f));
    }
}
