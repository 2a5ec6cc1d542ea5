//! Reading `.bin` captures. Every field is validated; corrupt or truncated input is a one-line
//! error (worded as CPython's reader words it), never a panic.

use std::collections::hash_map::Entry;
use std::io::{BufRead, Read, Seek, SeekFrom};
use std::path::Path;
use std::sync::mpsc::TrySendError;

use anyhow::{bail, Context, Result};
use tachyon_plugin_api::{
    Collector, FrameInfo, FxHashMap, Mode, Profile, ProfileBuilder, RunStats, Sample, StackId,
    StackTable, Symbols, ThreadStatus,
};

use super::varint::Cursor;
use super::*;

/// Frames of CPython 3.15's own profiler machinery, which its collectors drop
/// (`_INTERNAL_FRAME_SUFFIXES` in profiling/sampling/constants.py).
const INTERNAL_FRAME_SUFFIXES: &[&str] = &["_sync_coordinator.py"];

/// Most identical samples handed to a collector in one batch (as CPython).
const MAX_BATCH: usize = 8192;

/// What a capture may make tachyon hold: a small file can declare (and, compressed, encode)
/// more samples or bytes than any output can afford, so both are capped.
#[derive(Clone, Copy, Debug)]
pub struct ReadLimits {
    /// Most samples replayed (`--max-samples`).
    pub max_samples: u64,
    /// Most bytes of capture, and of decompressed sample records (`--max-capture-bytes`).
    pub max_bytes: u64,
}

impl Default for ReadLimits {
    fn default() -> Self {
        ReadLimits {
            max_samples: 100_000_000,
            max_bytes: 4 << 30,
        }
    }
}

/// A capture file, parsed and validated up to its sample records.
pub struct Capture {
    pub header: Header,
    pub symbols: Symbols,
    /// From the stats trailer; fields the file lacks are None.
    pub stats: Option<RunStats>,
    /// What the capture came from (tachyon's provenance block), when it has one.
    pub provenance: Option<serde_json::Value>,
    records: Records,
    big_endian: bool,
    /// Most bytes the records may decompress to (`ReadLimits::max_bytes`).
    max_record_bytes: u64,
}

/// Where the sample records are: read again from the opened file by every replay (`len`
/// bytes after the header), or in memory.
enum Records {
    File { file: std::fs::File, len: u64 },
    InMemory(Vec<u8>),
}

impl Records {
    /// The sample records, decompressed as they are read: on a thread of `scope`'s, a few
    /// chunks ahead, when they are compressed (decompressing is half of decoding an ordinary
    /// capture, whose replay waits on decoding).
    fn stream<'scope>(
        &'scope self,
        scope: &'scope std::thread::Scope<'scope, '_>,
        compression: u32,
        max_bytes: u64,
    ) -> Result<RecordStream<'scope>> {
        let raw: Box<dyn Read + Send + '_> = match self {
            Records::InMemory(bytes) => Box::new(&bytes[..]),
            Records::File { file, len } => {
                let mut file = file.try_clone()?;
                file.seek(SeekFrom::Start(HEADER_SIZE as u64))?;
                Box::new(file.take(*len))
            }
        };
        let mut raw = std::io::BufReader::with_capacity(1 << 16, raw);
        let reader: Box<dyn Read + '_> = if compression == COMPRESSION_ZSTD {
            // A frame that declares more than the limit is refused before it is decompressed.
            let declared = zstd::zstd_safe::get_frame_content_size(raw.fill_buf()?);
            if declared.ok().flatten().is_some_and(|n| n > max_bytes) {
                return Err(too_big(max_bytes).into());
            }
            let decoder = zstd::stream::read::Decoder::with_buffer(raw)
                .map_err(|e| anyhow::anyhow!("Corrupted zstd frame header: {e}"))?;
            Box::new(Decompressed::start(scope, decoder)?)
        } else {
            Box::new(raw)
        };
        Ok(RecordStream {
            reader: reader.take(max_bytes + 1),
            compressed: compression == COMPRESSION_ZSTD,
            max_bytes,
            buf: Vec::with_capacity(2 * STREAM_CHUNK),
            pos: 0,
            read: 0,
            at_end: false,
        })
    }
}

/// Bytes decompressed ahead on the decompressing thread, in chunks of [`STREAM_CHUNK`].
const CHUNKS_AHEAD: usize = 4;

/// A stream decompressed on a thread of its own, read here: at most [`CHUNKS_AHEAD`] chunks
/// are made before they are read (and none once this end is dropped), so a capture cannot
/// make it hold more.
struct Decompressed {
    chunks: std::sync::mpsc::Receiver<std::io::Result<Vec<u8>>>,
    chunk: Vec<u8>,
    at: usize,
}

impl Decompressed {
    fn start<'scope>(
        scope: &'scope std::thread::Scope<'scope, '_>,
        mut from: impl Read + Send + 'scope,
    ) -> Result<Decompressed> {
        let (made, chunks) = std::sync::mpsc::sync_channel(CHUNKS_AHEAD);
        std::thread::Builder::new()
            .name("tachyon-zstd".into())
            .spawn_scoped(scope, move || loop {
                let mut chunk = vec![0; STREAM_CHUNK];
                let read = from.read(&mut chunk).map(|n| {
                    chunk.truncate(n);
                    chunk
                });
                // Stop at the end (an empty chunk), at an error, or when nothing reads on.
                let last = read.as_ref().map_or(true, Vec::is_empty);
                if made.send(read).is_err() || last {
                    return;
                }
            })
            .context("cannot start a thread")?;
        Ok(Decompressed {
            chunks,
            chunk: Vec::new(),
            at: 0,
        })
    }
}

impl Read for Decompressed {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        if self.at == self.chunk.len() {
            // A thread that is gone has sent its end or its error already.
            self.chunk = self.chunks.recv().unwrap_or_else(|_| Ok(Vec::new()))?;
            self.at = 0;
        }
        let n = out.len().min(self.chunk.len() - self.at);
        out[..n].copy_from_slice(&self.chunk[self.at..self.at + n]);
        self.at += n;
        Ok(n)
    }
}

/// Bytes of records decompressed per read: a record is at most a few kilobytes.
const STREAM_CHUNK: usize = 1 << 16;
/// Most bytes one FULL/SUFFIX/POP_PUSH record takes (prefix, delta, status, counts, frames).
const MAX_RECORD: usize = 13 + 10 + 1 + 5 + 5 + 5 * MAX_DEPTH;
/// Most bytes one (delta, status) pair of a REPEAT record takes.
const MAX_REPEAT_PAIR: usize = 11;

/// The sample records, decompressed a chunk at a time: a window of bytes that is refilled
/// whenever a record could run past its end.
struct RecordStream<'a> {
    reader: std::io::Take<Box<dyn Read + 'a>>,
    compressed: bool,
    max_bytes: u64,
    buf: Vec<u8>,
    pos: usize,
    /// Bytes read before `buf[0]`.
    read: u64,
    at_end: bool,
}

impl RecordStream<'_> {
    /// At least `n` bytes from `pos` on, unless the records end first.
    fn want(&mut self, n: usize) -> Result<()> {
        if self.at_end || self.buf.len() - self.pos >= n {
            return Ok(());
        }
        self.buf.drain(..self.pos);
        self.read += self.pos as u64;
        self.pos = 0;
        while !self.at_end && self.buf.len() < n.max(STREAM_CHUNK) {
            let filled = self.buf.len();
            self.buf.resize(filled + STREAM_CHUNK, 0);
            let got = match self.reader.read(&mut self.buf[filled..]) {
                Ok(got) => got,
                Err(e) if self.compressed => {
                    bail!("Incomplete or corrupted zstd frame: data may be truncated ({e})")
                }
                Err(e) => bail!("cannot read the sample records ({e})"),
            };
            self.buf.truncate(filled + got);
            self.at_end = got == 0;
        }
        if self.read + self.buf.len() as u64 > self.max_bytes {
            return Err(too_big(self.max_bytes).into());
        }
        Ok(())
    }

    fn is_done(&self) -> bool {
        self.at_end && self.pos == self.buf.len()
    }

    /// What a record that ran out of bytes says: only the last one can (the window holds a
    /// whole record), so what is left is what trails the records.
    fn truncated(&self) -> String {
        format!(
            "Truncated sample data: {} trailing bytes",
            self.buf.len() - self.pos
        )
    }
}

/// Record statistics of a replay, as CPython's `get_stats()`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ReplayCounts {
    pub full: u64,
    pub suffix: u64,
    pub pop_push: u64,
    pub repeat: u64,
    pub repeat_samples: u64,
    pub samples: u64,
}

struct Fixed<'a> {
    data: &'a [u8],
    big_endian: bool,
}

impl Fixed<'_> {
    fn u32(&self, at: usize) -> u32 {
        let b: [u8; 4] = self.data[at..at + 4].try_into().unwrap();
        if self.big_endian {
            u32::from_be_bytes(b)
        } else {
            u32::from_le_bytes(b)
        }
    }
    fn u64(&self, at: usize) -> u64 {
        let b: [u8; 8] = self.data[at..at + 8].try_into().unwrap();
        if self.big_endian {
            u64::from_be_bytes(b)
        } else {
            u64::from_le_bytes(b)
        }
    }
    fn f64(&self, at: usize) -> f64 {
        f64::from_bits(self.u64(at))
    }
}

impl Capture {
    /// Reads the header and the tables; the sample records stay in the file and are streamed
    /// (and decompressed) by [`replay`](Self::replay), so a capture of any length needs only
    /// its tables in memory.
    pub fn open(path: &Path, limits: &ReadLimits) -> Result<Capture> {
        let cannot = || format!("cannot read capture {}", path.display());
        let mut file = std::fs::File::open(path).with_context(cannot)?;
        let size = file.metadata().with_context(cannot)?.len();
        if size > limits.max_bytes {
            bail!(
                "capture {} is {size} bytes, more than the limit of {} (raise it with --max-capture-bytes)",
                path.display(),
                limits.max_bytes
            );
        }
        let mut head = Vec::with_capacity(HEADER_SIZE);
        (&mut file)
            .take(HEADER_SIZE as u64)
            .read_to_end(&mut head)
            .with_context(cannot)?;
        let parsed = (|| {
            let (header, big_endian) = parse_header(&head, size, limits)?;
            let tables_at = header.string_table_offset;
            let mut tables = Vec::new();
            file.seek(SeekFrom::Start(tables_at))?;
            file.read_to_end(&mut tables)?;
            let records = Records::File {
                file,
                len: tables_at - HEADER_SIZE as u64,
            };
            Capture::from_tables(header, big_endian, &tables, records, limits)
        })();
        parsed.with_context(|| format!("{} is not a valid capture", path.display()))
    }

    /// A capture held in memory.
    pub fn parse(data: &[u8], limits: &ReadLimits) -> Result<Capture> {
        let (header, big_endian) = parse_header(data, data.len() as u64, limits)?;
        let tables_at = header.string_table_offset as usize;
        let records = Records::InMemory(data[HEADER_SIZE..tables_at].to_vec());
        Capture::from_tables(header, big_endian, &data[tables_at..], records, limits)
    }

    /// Everything after the sample records: string table, frame table, provenance, stats and
    /// footer (`tables` starts at the header's string table offset, checked to leave room for
    /// the footer).
    fn from_tables(
        header: Header,
        big_endian: bool,
        tables: &[u8],
        records: Records,
        limits: &ReadLimits,
    ) -> Result<Capture> {
        let f = Fixed {
            data: tables,
            big_endian,
        };
        let footer_at = tables.len() - FOOTER_SIZE;
        let frame_at = (header.frame_table_offset - header.string_table_offset) as usize;
        let string_count = f.u32(footer_at);
        let frame_count = f.u32(footer_at + 4);
        let (stats, tables_end) = read_stats(&f, footer_at);
        let max_strings = tables.len();
        if string_count as usize > max_strings {
            bail!("Invalid string count {string_count} exceeds maximum possible {max_strings}");
        }
        let mut cur = Cursor::new(&tables[..tables_end], 0);
        let mut strings = Vec::with_capacity(string_count as usize);
        for _ in 0..string_count {
            let len = cur.uvar32().context("Truncated string table")? as usize;
            let bytes = cur.bytes(len).context("Truncated string table")?;
            strings.push(String::from_utf8_lossy(bytes).into_owned());
        }
        let max_frames = (tables.len() - frame_at) / 7;
        if frame_count as usize > max_frames {
            bail!("Invalid frame count {frame_count} exceeds maximum possible {max_frames}");
        }
        let mut cur = Cursor::new(&tables[..tables_end.max(frame_at)], frame_at);
        let mut frames = Vec::with_capacity(frame_count as usize);
        for _ in 0..frame_count {
            frames.push(read_frame(&mut cur, string_count).context("Truncated frame table")??);
        }
        let provenance = tables.get(cur.pos..tables_end).and_then(read_provenance);
        Ok(Capture {
            header,
            symbols: Symbols::from_tables(strings, frames),
            stats,
            provenance,
            records,
            big_endian,
            max_record_bytes: limits.max_bytes,
        })
    }

    pub fn mode(&self) -> Option<Mode> {
        self.header.mode_code().and_then(Mode::from_code)
    }

    /// Decode every record and hand the samples to `collector` in file order (per-thread order
    /// is guaranteed, global time order is not). `progress(done, total)` is called about every
    /// 100,000 samples. Fails if the records contradict the header.
    ///
    /// The records are decoded (decompressed, varints, stacks rebuilt) on a second thread in
    /// batches while this one interns each stack into the capture's symbols and feeds the
    /// collector, so on two cores a replay takes about as long as the slower half. (Interning
    /// on the decoding thread instead made that half the slower one on ordinary captures.)
    pub fn replay(
        &mut self,
        collector: &mut dyn Collector,
        progress: &mut dyn FnMut(u64, u64),
    ) -> Result<ReplayCounts> {
        let total = self.header.sample_count;
        let Capture {
            header,
            symbols,
            records,
            big_endian,
            max_record_bytes,
            ..
        } = self;
        let decoder = Decoder {
            header,
            records,
            max_record_bytes: *max_record_bytes,
            big_endian: *big_endian,
            internal: internal_frames(symbols),
        };
        std::thread::scope(|scope| {
            let (sender, batches) = std::sync::mpsc::sync_channel::<Batch>(BATCHES_IN_FLIGHT);
            // Replayed batches go back to be filled again: no allocation once the first few
            // are made.
            let (give_back, spare) = std::sync::mpsc::channel::<Batch>();
            let decoding = scope.spawn(move || {
                let mut sink = BatchSink {
                    batch: Batch::default(),
                    sender,
                    spare,
                    closed: false,
                };
                let counts = decoder.decode(&mut sink);
                sink.send();
                counts
            });
            // Each thread's last stack, for samples that repeat it.
            let mut last_stack: FxHashMap<(u64, u32), StackId> = FxHashMap::default();
            let (mut done, mut next_progress) = (0u64, 0u64);
            for batch in batches {
                done += batch.replay_into(symbols, &mut last_stack, collector);
                let _ = give_back.send(batch);
                if done >= next_progress {
                    progress(done, total);
                    next_progress = done + 100_000;
                }
            }
            let counts = decoding
                .join()
                .unwrap_or_else(|panic| std::panic::resume_unwind(panic))?;
            progress(counts.samples, total);
            Ok(counts)
        })
    }

    /// The whole capture aggregated in memory (baselines), with its symbols; with
    /// `timeline`, every sample's stack and time kept too, so replaying the profile is
    /// replaying the capture.
    pub fn to_profile(
        mut self,
        timeline: bool,
        progress: &mut dyn FnMut(u64, u64),
    ) -> Result<(Profile, ReplayCounts)> {
        let mut builder = if timeline {
            ProfileBuilder::with_timeline()
        } else {
            ProfileBuilder::new()
        };
        let counts = self.replay(&mut builder, progress)?;
        let mode = self.mode();
        let mut profile = builder.finish(
            self.symbols,
            self.header.interval_us,
            mode,
            self.stats.unwrap_or_default(),
        );
        profile.python_version = Some(self.header.python_version).filter(|&v| v != (0, 0, 0));
        profile.capture_features = self.header.capture_features();
        Ok((profile, counts))
    }
}

/// What the decoding thread reads: the records and what it needs of the header and tables.
struct Decoder<'a> {
    header: &'a Header,
    records: &'a Records,
    max_record_bytes: u64,
    big_endian: bool,
    /// One per frame of the table (so its length is the frame count): one of CPython's
    /// profiler frames, left out of the stacks as its collectors leave them out.
    internal: Vec<bool>,
}

/// Which frames are CPython's profiler's own (see [`Decoder::internal`]).
fn internal_frames(symbols: &Symbols) -> Vec<bool> {
    symbols
        .frames()
        .iter()
        .map(|f| {
            let file = symbols.str(f.filename);
            INTERNAL_FRAME_SUFFIXES.iter().any(|s| file.ends_with(s))
        })
        .collect()
}

impl Decoder<'_> {
    /// Decode every record into `sink`, in file order.
    fn decode(&self, sink: &mut BatchSink) -> Result<ReplayCounts> {
        std::thread::scope(|scope| self.decode_in(scope, sink))
    }

    fn decode_in<'scope>(
        &'scope self,
        scope: &'scope std::thread::Scope<'scope, '_>,
        sink: &mut BatchSink,
    ) -> Result<ReplayCounts> {
        let total = self.header.sample_count;
        let frame_count = u32::try_from(self.internal.len()).unwrap_or(u32::MAX);
        let mut counts = ReplayCounts::default();
        let mut threads: FxHashMap<(u64, u32), ThreadRecords> = FxHashMap::default();
        let mut scratch: Vec<u32> = Vec::with_capacity(MAX_DEPTH);
        let mut timestamps: Vec<u64> = Vec::with_capacity(MAX_BATCH);
        let mut stream =
            self.records
                .stream(scope, self.header.compression, self.max_record_bytes)?;
        let internal = &self.internal;
        let any_internal = internal.contains(&true);

        loop {
            stream.want(MAX_RECORD)?;
            if stream.is_done() {
                break;
            }
            let mut cur = Cursor::new(&stream.buf, stream.pos);
            let truncated = || stream.truncated();
            let prefix = cur.bytes(13).with_context(truncated)?;
            let (thread_id, interpreter_id) = if self.big_endian {
                (
                    u64::from_be_bytes(prefix[0..8].try_into().unwrap()),
                    u32::from_be_bytes(prefix[8..12].try_into().unwrap()),
                )
            } else {
                (
                    u64::from_le_bytes(prefix[0..8].try_into().unwrap()),
                    u32::from_le_bytes(prefix[8..12].try_into().unwrap()),
                )
            };
            let encoding = prefix[12];
            if encoding > ENC_POP_PUSH {
                bail!("Unknown stack encoding: {encoding}");
            }
            let known = threads.len();
            let thread = match threads.entry((thread_id, interpreter_id)) {
                Entry::Occupied(thread) => thread.into_mut(),
                Entry::Vacant(_) if known >= self.header.thread_count as usize => bail!(
                    "Invalid thread count: sample data contains more unique threads than declared in header (declared {}, found at least {})",
                    self.header.thread_count,
                    known + 1
                ),
                Entry::Vacant(new) => new.insert(ThreadRecords {
                    stack: Vec::new(),
                    visible: Vec::new(),
                    last_ts: self.header.start_time_us,
                }),
            };
            // `repeat`: the thread's stack is the one of its last sample.
            let sample =
                |sink: &mut BatchSink, ts: &[u64], status: u8, t: &ThreadRecords, repeat| {
                    let frames = if any_internal { &t.visible } else { &t.stack };
                    sink.push(thread_id, interpreter_id, status, ts, frames, repeat);
                };

            if encoding == ENC_REPEAT {
                let count = cur.uvar32().with_context(truncated)?;
                stream.pos = cur.pos;
                counts.repeat += 1;
                let mut batch_status = None;
                for _ in 0..count {
                    stream.want(MAX_REPEAT_PAIR)?;
                    let mut cur = Cursor::new(&stream.buf, stream.pos);
                    let truncated = || stream.truncated();
                    let delta = cur.uvar().with_context(truncated)?;
                    let status = cur.u8().with_context(truncated)?;
                    stream.pos = cur.pos;
                    if batch_status != Some(status) || timestamps.len() == MAX_BATCH {
                        if let Some(s) = batch_status {
                            sample(sink, &timestamps, s, thread, true);
                        }
                        timestamps.clear();
                        batch_status = Some(status);
                    }
                    thread.last_ts = thread.last_ts.wrapping_add(delta);
                    timestamps.push(thread.last_ts);
                }
                if let Some(s) = batch_status {
                    sample(sink, &timestamps, s, thread, true);
                }
                timestamps.clear();
                counts.repeat_samples += u64::from(count);
                counts.samples += u64::from(count);
            } else {
                let delta = cur.uvar().with_context(truncated)?;
                let status = cur.u8().with_context(truncated)?;
                let (keep_from, n) = match encoding {
                    ENC_FULL => (thread.stack.len(), cur.uvar32().with_context(truncated)?),
                    ENC_SUFFIX => {
                        let shared = cur.uvar32().with_context(truncated)? as usize;
                        if shared > thread.stack.len() {
                            bail!(
                                "Invalid suffix: shares {shared} frames but previous stack has {}",
                                thread.stack.len()
                            );
                        }
                        (
                            thread.stack.len() - shared,
                            cur.uvar32().with_context(truncated)?,
                        )
                    }
                    _ => {
                        let pop = cur.uvar32().with_context(truncated)? as usize;
                        (
                            pop.min(thread.stack.len()),
                            cur.uvar32().with_context(truncated)?,
                        )
                    }
                };
                if n as usize > MAX_DEPTH {
                    bail!("Stack depth {n} exceeds capacity {MAX_DEPTH}");
                }
                scratch.clear();
                if let Err(idx) = cur
                    .uvars_below(n as usize, frame_count, &mut scratch)
                    .with_context(truncated)?
                {
                    bail!("Invalid frame index: {idx}");
                }
                scratch.extend_from_slice(&thread.stack[keep_from..]);
                if scratch.len() > MAX_DEPTH {
                    bail!(
                        "Final stack depth {} exceeds capacity {MAX_DEPTH}",
                        scratch.len()
                    );
                }
                stream.pos = cur.pos;
                std::mem::swap(&mut thread.stack, &mut scratch);
                thread.last_ts = thread.last_ts.wrapping_add(delta);
                match encoding {
                    ENC_FULL => counts.full += 1,
                    ENC_SUFFIX => counts.suffix += 1,
                    _ => counts.pop_push += 1,
                }
                counts.samples += 1;
                if any_internal {
                    thread.visible.clear();
                    let visible = thread.stack.iter().filter(|&&f| !internal[f as usize]);
                    thread.visible.extend(visible);
                }
                sample(
                    sink,
                    std::slice::from_ref(&thread.last_ts),
                    status,
                    thread,
                    false,
                );
            }
            // The header's count was checked against the limit: hold the records to it.
            if counts.samples > total {
                bail!("Sample count mismatch: the records hold more than the {total} samples the header declares");
            }
        }
        if counts.samples != total {
            bail!(
                "Sample count mismatch: header declares {total} samples but replay decoded {}",
                counts.samples
            );
        }
        Ok(counts)
    }
}

/// The 64-byte header of a file of `file_size` bytes (`data` holds at least the header),
/// checked against the file: table offsets inside it, room for the footer, the sample limit.
fn parse_header(data: &[u8], file_size: u64, limits: &ReadLimits) -> Result<(Header, bool)> {
    if data.len() < HEADER_SIZE {
        bail!("File too small for header ({} bytes)", file_size);
    }
    let magic = u32::from_le_bytes(data[0..4].try_into().unwrap());
    let big_endian = match magic {
        MAGIC => false,
        m if m == MAGIC.swap_bytes() => true,
        m => bail!("Invalid magic number: 0x{m:08x} (not a tachyon/CPython .bin capture)"),
    };
    let f = Fixed { data, big_endian };
    let version = f.u32(4);
    if version != FORMAT_VERSION {
        bail!("Unsupported format version {version} (this reader supports version 1)");
    }
    if file_size < (HEADER_SIZE + FOOTER_SIZE) as u64 {
        bail!(
            "File too small for footer ({} bytes): truncated capture",
            file_size
        );
    }
    let header = Header {
        python_version: (data[8], data[9], data[10]),
        start_time_us: f.u64(12),
        interval_us: f.u64(20),
        sample_count: f.u64(28),
        thread_count: f.u32(36),
        string_table_offset: f.u64(40),
        frame_table_offset: f.u64(48),
        compression: f.u32(56),
        config: f.u32(60),
    };
    let footer_at = file_size - FOOTER_SIZE as u64;
    let (str_off, frame_off) = (header.string_table_offset, header.frame_table_offset);
    if str_off < HEADER_SIZE as u64 || str_off > footer_at {
        bail!(
            "Invalid string table offset {str_off} (file size {})",
            file_size
        );
    }
    if frame_off > footer_at {
        bail!(
            "Invalid frame table offset {frame_off} (file size {})",
            file_size
        );
    }
    if str_off > frame_off {
        bail!("Invalid table offsets: string table ({str_off}) is after frame table ({frame_off})");
    }
    if header.sample_count > limits.max_samples {
        return Err(LimitExceeded(format!(
                "the capture declares {} samples, more than the limit of {} (raise it with --max-samples)",
                header.sample_count, limits.max_samples
            ))
            .into());
    }
    if header.config & 7 >= 6 {
        bail!("Invalid profiling mode in header: {}", header.config & 7);
    }
    Ok((header, big_endian))
}

/// Batches queued between the decoding thread and the collector (each about 64k samples).
const BATCHES_IN_FLIGHT: usize = 2;
/// Samples (timestamps), or frames, in a batch before it is sent.
const BATCH_SAMPLES: usize = 1 << 16;
const BATCH_FRAMES: usize = 1 << 18;

/// How many samples ahead a stack's lookup is started.
const PREFETCH_AHEAD: usize = 8;

/// Decoded samples on their way to the collector, in columns: (thread, interpreter, status,
/// whether the thread's stack is its last sample's, end of its timestamps, end of its frames)
/// per sample batch.
#[derive(Default)]
struct Batch {
    samples: Vec<(u64, u32, u8, bool, u32, u32)>,
    /// Each sample's [`StackTable::hash`] (0 for a repeat), when the decoding thread had
    /// time to make them; else empty, and the collecting thread hashes.
    hashes: Vec<u64>,
    timestamps: Vec<u64>,
    frames: Vec<u32>,
}

impl Batch {
    fn frames_of(&self, i: usize) -> &[u32] {
        let start = i.checked_sub(1).map_or(0, |before| self.samples[before].5);
        &self.frames[start as usize..self.samples[i].5 as usize]
    }

    /// Every sample's [`StackTable::hash`] (a repeat's is not needed: 0).
    fn hash_stacks(&mut self) {
        let mut hashes = std::mem::take(&mut self.hashes);
        hashes.clear();
        hashes.extend((0..self.samples.len()).map(|i| {
            let repeat = self.samples[i].3;
            if repeat {
                0
            } else {
                StackTable::hash(self.frames_of(i))
            }
        }));
        self.hashes = hashes;
    }

    /// Hand every sample to `collector`, its stack interned (`last_stack`: each thread's
    /// last, which a repeated stack is given again without hashing its frames); the number
    /// of samples (timestamps).
    fn replay_into(
        &self,
        symbols: &mut Symbols,
        last_stack: &mut FxHashMap<(u64, u32), StackId>,
        collector: &mut dyn Collector,
    ) -> u64 {
        // Every sample's stack first, then every sample collected: in each pass a lookup
        // that misses the cache (many distinct stacks) is started PREFETCH_AHEAD samples
        // early, so that the misses of several samples overlap.
        //
        // Stacks are hashed here, as they are fetched: decoding (decompressing, varints) is
        // the slower half of an ordinary replay, this thread the one that waits. A batch
        // that found the queue full was hashed by the decoding thread instead (`hashes`).
        let hash_of = |i: usize| match self.hashes.get(i) {
            Some(&hash) => hash,
            None => StackTable::hash(self.frames_of(i)),
        };
        let mut hashes = [0u64; PREFETCH_AHEAD];
        for (i, hash) in hashes.iter_mut().enumerate().take(self.samples.len()) {
            *hash = hash_of(i);
            symbols.prefetch_stack(*hash);
        }
        let mut stacks = Vec::with_capacity(self.samples.len());
        for (i, &(thread_id, interpreter_id, _, repeat, _, _)) in self.samples.iter().enumerate() {
            let hash = hashes[i % PREFETCH_AHEAD];
            // (A repeat is not looked up: its thread's last stack is given again.)
            if let Some(&(.., false, _, _)) = self.samples.get(i + PREFETCH_AHEAD) {
                let ahead = hash_of(i + PREFETCH_AHEAD);
                hashes[i % PREFETCH_AHEAD] = ahead;
                symbols.prefetch_stack(ahead);
            }
            let thread = (thread_id, interpreter_id);
            stacks.push(match last_stack.get(&thread) {
                Some(&stack) if repeat => stack,
                _ => {
                    // (A repeat whose thread has no stack yet was not hashed ahead.)
                    let frames = self.frames_of(i);
                    let hash = if repeat {
                        StackTable::hash(frames)
                    } else {
                        hash
                    };
                    let stack = symbols.intern_stack_hashed(frames, hash);
                    last_stack.insert(thread, stack);
                    stack
                }
            });
        }
        let (mut ts_at, mut frames_at) = (0usize, 0usize);
        for (i, &(thread_id, interpreter_id, status, _, ts_end, frames_end)) in
            self.samples.iter().enumerate()
        {
            if let Some(&stack) = stacks.get(i + PREFETCH_AHEAD) {
                collector.prefetch(symbols, self.samples[i + PREFETCH_AHEAD].0, stack);
            }
            let (ts_end, frames_end) = (ts_end as usize, frames_end as usize);
            collector.collect(
                symbols,
                &Sample {
                    thread_id,
                    interpreter_id,
                    status: ThreadStatus(status),
                    timestamps_us: &self.timestamps[ts_at..ts_end],
                    frames: &self.frames[frames_at..frames_end],
                    stack: stacks[i],
                },
            );
            (ts_at, frames_at) = (ts_end, frames_end);
        }
        self.timestamps.len() as u64
    }
}

/// The decoding thread's end: copies samples into batches and sends each when full.
struct BatchSink {
    batch: Batch,
    sender: std::sync::mpsc::SyncSender<Batch>,
    spare: std::sync::mpsc::Receiver<Batch>,
    /// The collector's side is gone (it panicked): the rest is decoded without copying.
    closed: bool,
}

impl BatchSink {
    fn send(&mut self) {
        let mut next = self.spare.try_recv().unwrap_or_default();
        next.samples.clear();
        next.hashes.clear();
        next.timestamps.clear();
        next.frames.clear();
        let batch = std::mem::replace(&mut self.batch, next);
        self.closed |= match self.sender.try_send(batch) {
            Ok(()) => false,
            // The collecting thread is behind (many distinct stacks): the time this one
            // would wait hashes the batch's stacks, so that it does not.
            Err(TrySendError::Full(mut batch)) => {
                batch.hash_stacks();
                self.sender.send(batch).is_err()
            }
            Err(TrySendError::Disconnected(_)) => true,
        };
    }

    fn push(
        &mut self,
        thread_id: u64,
        interpreter_id: u32,
        status: u8,
        timestamps_us: &[u64],
        frames: &[u32],
        repeat: bool,
    ) {
        if self.closed {
            return;
        }
        let b = &mut self.batch;
        b.timestamps.extend_from_slice(timestamps_us);
        b.frames.extend_from_slice(frames);
        b.samples.push((
            thread_id,
            interpreter_id,
            status,
            repeat,
            b.timestamps.len() as u32,
            b.frames.len() as u32,
        ));
        if b.timestamps.len() >= BATCH_SAMPLES || b.frames.len() >= BATCH_FRAMES {
            self.send();
        }
    }
}

/// A thread's state from one of its records to the next.
struct ThreadRecords {
    /// Its stack, innermost first, as the records encode it.
    stack: Vec<u32>,
    /// The stack without CPython's profiler frames (when the capture has any).
    visible: Vec<u32>,
    last_ts: u64,
}

fn read_frame(cur: &mut Cursor<'_>, string_count: u32) -> Result<Result<FrameInfo>> {
    let filename = cur.uvar32()?;
    let funcname = cur.uvar32()?;
    let lineno = cur.svar()?;
    let end_line_delta = cur.svar()?;
    let column = cur.svar()?;
    let end_col_delta = cur.svar()?;
    let opcode = cur.u8()?;
    if filename >= string_count || funcname >= string_count {
        return Ok(Err(anyhow::anyhow!("Invalid string index in frame")));
    }
    let end = |base: i32, delta: i32| {
        if base == -1 {
            -1
        } else {
            base.wrapping_add(delta)
        }
    };
    Ok(Ok(FrameInfo {
        filename,
        funcname,
        lineno,
        end_lineno: end(lineno, end_line_delta),
        column,
        end_column: end(column, end_col_delta),
        opcode: (opcode != 255).then_some(opcode),
    }))
}

/// tachyon's provenance block, if the bytes after the frame table start with one (anything
/// else there is ignored, as CPython ignores it).
fn read_provenance(after_frames: &[u8]) -> Option<serde_json::Value> {
    let rest = after_frames.strip_prefix(PROVENANCE_SIGNATURE.as_slice())?;
    let len = u32::from_le_bytes(rest.get(..4)?.try_into().ok()?) as usize;
    if len > MAX_PROVENANCE {
        return None;
    }
    serde_json::from_slice(rest.get(4..4 + len)?).ok()
}

/// Stats trailer (56-byte or legacy 32-byte form) just before the footer, and where the
/// tables region ends.
fn read_stats(f: &Fixed<'_>, footer_at: usize) -> (Option<RunStats>, usize) {
    if footer_at < HEADER_SIZE + 16 || &f.data[footer_at - 16..footer_at - 8] != STATS_SIGNATURE {
        return (None, footer_at);
    }
    let version = f.u32(footer_at - 8);
    let size = f.u32(footer_at - 4) as usize;
    if version != 1
        || !(size == STATS_SIZE || size == LEGACY_STATS_SIZE)
        || footer_at < HEADER_SIZE + size
    {
        return (None, footer_at);
    }
    let at = footer_at - size;
    let mut stats = RunStats {
        duration_sec: f.f64(at),
        sample_rate: f.f64(at + 8),
        ..Default::default()
    };
    if size == STATS_SIZE {
        let present = f.u32(at + 32);
        stats.error_rate = (present & 1 != 0).then(|| f.f64(at + 16));
        stats.missed_samples = (present & 2 != 0).then(|| f.f64(at + 24));
    }
    (Some(stats), at)
}

/// A capture that asks for more than `ReadLimits` allow: refused, with the flag to raise.
#[derive(Debug)]
pub struct LimitExceeded(pub String);

impl std::fmt::Display for LimitExceeded {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for LimitExceeded {}

fn too_big(max_bytes: u64) -> LimitExceeded {
    LimitExceeded(format!(
        "the sample records decompress to more than the limit of {max_bytes} bytes (raise it with --max-capture-bytes)"
    ))
}
