//! `gecko`: the Firefox Profiler's processed profile format as CPython's Tachyon writes it
//! (meta version 32, preprocessedProfileVersion 57, one global string array in `shared`), with
//! interval markers for GIL, CPU, code type (Python or native), GIL wait, exception and GC state
//! changes per thread.

use std::io::Write;

use anyhow::{Context, Result};
use serde_json::{json, Value};
use tachyon_plugin_api::opcodes::Opcodes;
use tachyon_plugin_api::{
    Collector, CollectorConfig, ExportContext, Format, FrameId, FxHashMap, Interner, Needs, Sample,
    StackId, StackTable, StrId, Symbols, ThreadStatus,
};

/// Categories (index = position), as Tachyon.
const CATEGORIES: [(&str, &str); 9] = [
    ("Other", "grey"),
    ("Python", "yellow"),
    ("Native", "blue"),
    ("GC", "orange"),
    ("GIL", "green"),
    ("CPU", "purple"),
    ("Code Type", "red"),
    ("Opcodes", "magenta"),
    ("Exception", "lightblue"),
];
const CAT_PYTHON: usize = 1;
const CAT_NATIVE: usize = 2;
const CAT_GC: usize = 3;
const CAT_GIL: usize = 4;
const CAT_CPU: usize = 5;
const CAT_EXCEPTION: usize = 8;

const CAT_CODE_TYPE: usize = 6;

/// The states a thread's markers follow, as CPython's `*_start` dicts: a two-state track has
/// one marker open at a time, named by the state; the others are open or not.
#[derive(Default)]
struct OpenMarkers {
    /// Has GIL / No GIL, On CPU / Off CPU, Has Exception / No Exception: (state, since).
    tracks: [Option<(bool, f64)>; 3],
    /// Python Code (true: holds the GIL) or Native Code (on a CPU without it), since.
    code: Option<(bool, f64)>,
    gil_wait: Option<f64>,
    gc: Option<f64>,
}

/// How many kinds of marker CPython closes at the end, one after another (see
/// [`OpenMarkers::listed`]).
const CLOSING_RANKS: usize = 10;

impl OpenMarkers {
    /// The open markers as (rank in CPython's closing order, name, start, category).
    fn listed(&self) -> impl Iterator<Item = (usize, &'static str, f64, usize)> {
        let tracks = [0, 1, 2].map(|track| {
            let (on, off, cat) = TRACKS[track];
            let rank = [0, 2, 8][track];
            self.tracks[track].map(|(state, start)| {
                if state {
                    (rank, on, start, cat)
                } else {
                    (rank + 1, off, start, cat)
                }
            })
        });
        let code = self.code.map(|(python, start)| {
            if python {
                (4, "Python Code", start, CAT_CODE_TYPE)
            } else {
                (5, "Native Code", start, CAT_CODE_TYPE)
            }
        });
        let gil_wait = self
            .gil_wait
            .map(|start| (6, "Waiting for GIL", start, CAT_GIL));
        let gc = self.gc.map(|start| (7, "GC Collecting", start, CAT_GC));
        tracks.into_iter().chain([code, gil_wait, gc]).flatten()
    }
}

/// The two-state tracks: (name when true, name when false, category).
const TRACKS: [(&str, &str, usize); 3] = [
    ("Has GIL", "No GIL", CAT_GIL),
    ("On CPU", "Off CPU", CAT_CPU),
    ("Has Exception", "No Exception", CAT_EXCEPTION),
];

/// An interval marker: (name, start ms, end ms, category, data).
type Marker = (usize, f64, f64, usize, Value);

/// What an opcode interval marker spans: (opcode, line, column, function, file), the names
/// as ids in the symbols (equal names, equal ids: no string is copied per sample).
type OpcodeSpan = (Option<u8>, i32, i32, StrId, StrId);

const CAT_OPCODES: usize = 7;
const _: () = assert!(CATEGORIES.len() <= 10, "a category is written as one digit");

/// `platform.system()`, as CPython writes it.
const PLATFORM: &str = "Linux";

/// The marker schema CPython writes when it makes opcode markers.
fn opcode_schema() -> Value {
    json!([{
        "name": "Opcode",
        "display": ["marker-table", "marker-chart"],
        "tooltipLabel": "{marker.data.opname}",
        "tableLabel": "{marker.data.opname} at line {marker.data.line}",
        "chartLabel": "{marker.data.opname}",
        "fields": [
            {"key": "opname", "label": "Opcode", "format": "string", "searchable": true},
            {"key": "base_opname", "label": "Base Opcode", "format": "string"},
            {"key": "is_specialized", "label": "Specialized", "format": "string"},
            {"key": "line", "label": "Line", "format": "integer"},
            {"key": "column", "label": "Column", "format": "integer"},
            {"key": "function", "label": "Function", "format": "string"},
            {"key": "duration", "label": "Duration", "format": "duration"},
        ],
    }])
}

/// A state marker as CPython's `_add_marker` writes it.
fn state_marker(
    strings: &mut Interner<String>,
    name: &str,
    start: f64,
    end: f64,
    cat: usize,
    tid: u64,
) -> Marker {
    let data = json!({"type": name.replace(' ', ""), "duration": end - start, "tid": tid});
    (strings.id(name), start, end, cat, data)
}

/// A row of a thread's function table; names are ids in the string array.
struct Func {
    name: usize,
    /// isJS and relevantForJS.
    python: bool,
    resource: usize,
    file_name: Option<usize>,
    line: Option<i32>,
}

#[derive(Default)]
struct ThreadData {
    is_main: bool,
    /// Each sample's stack (an id in the symbols' stack table) and time, as two columns: 12
    /// bytes a sample.
    sample_stacks: Vec<StackId>,
    /// Microseconds since the first sample replayed: written as the milliseconds serde_json
    /// would write for `us / 1000.0`, without formatting a float.
    sample_us: Vec<i64>,
    /// The stacks this thread sampled and each of their prefixes: its stack table, in the
    /// order of the ids (a prefix's id is below its stacks'), made when the profile is written.
    stacks: IdSet,
    /// The frames of those stacks met so far (ids in the symbols), each with its row in the
    /// frame table. Rows are made as frames are first met, root first, and keyed as CPython's
    /// (function, line, column): a function's line is its first frame's.
    frames: Vec<(FrameId, u32)>,
    frame_set: IdSet,
    frame_index: FxHashMap<(usize, i32, i32), u32>,
    frame_table: Vec<(usize, Option<i32>, Option<i32>, usize)>, // (func, line, column, category)
    func_table: Vec<Func>,
    func_index: FxHashMap<(StrId, StrId), usize>,
    /// Each file's resource: its base name (a string id).
    resource_table: Vec<usize>,
    resource_index: FxHashMap<StrId, usize>,
    open: OpenMarkers,
    markers: Vec<Marker>,
    /// The leaf frame's (opcode, line, column, function, file) since `.5` ms, with --opcodes.
    opcode_state: Option<(OpcodeSpan, f64)>,
}

/// A set of dense ids (stacks, frames), as bits in pages of 4,096 made when first used: a
/// thread that sampled a few stacks of a large table costs a few pages and a pointer per page,
/// one that sampled most of it a bit per stack. (A thread's stack table kept as it was
/// sampled, with a map from each stack to its row, cost 200 bytes a sample on a capture whose
/// threads share 2.5 million stack nodes.)
#[derive(Default)]
struct IdSet {
    pages: Vec<Option<Box<[u64; 64]>>>,
}

impl IdSet {
    /// Add `id`; whether it was not there yet.
    #[inline]
    fn insert(&mut self, id: u32) -> bool {
        let (page, word, bit) = (id as usize >> 12, (id as usize >> 6) & 63, id & 63);
        let words = match self.pages.get_mut(page) {
            Some(Some(words)) => words,
            _ => self.new_page(page),
        };
        let added = words[word] & (1 << bit) == 0;
        words[word] |= 1 << bit;
        added
    }

    /// A hint that `id` is inserted soon: its word is brought into the cache.
    fn prefetch(&self, id: u32) {
        if let Some(Some(words)) = self.pages.get(id as usize >> 12) {
            tachyon_plugin_api::prefetch(&words[(id as usize >> 6) & 63]);
        }
    }

    #[cold]
    fn new_page(&mut self, page: usize) -> &mut [u64; 64] {
        if self.pages.len() <= page {
            self.pages.resize_with(page + 1, || None);
        }
        self.pages[page].get_or_insert_with(|| Box::new([0; 64]))
    }
}

/// A stack set's ids numbered smallest first, as the rows of a thread's stack table: the set's
/// bits in one run and how many ids come before each word. A stack's row is then a count in a
/// bit per stack, which stays in the cache, rather than a read in four bytes per stack.
struct Ranked {
    words: Vec<u64>,
    before: Vec<u32>,
    len: usize,
}

/// Words of a [`Ranked`] set whose rows are made at a time by one thread (see `write_in_pieces`).
const WORDS_A_PIECE: usize = 1 << 10;

impl Ranked {
    fn new(set: &IdSet) -> Ranked {
        let mut words = Vec::with_capacity(set.pages.len() * 64);
        for page in &set.pages {
            match page {
                Some(page) => words.extend_from_slice(&page[..]),
                None => words.resize(words.len() + 64, 0),
            }
        }
        let mut len = 0;
        let before = words
            .iter()
            .map(|bits| {
                let before = len;
                len += bits.count_ones();
                before
            })
            .collect();
        Ranked {
            words,
            before,
            len: len as usize,
        }
    }

    /// The row of `id`, which is in the set.
    fn row(&self, id: u32) -> u32 {
        let (word, bit) = (id as usize >> 6, id & 63);
        self.before[word] + (self.words[word] & ((1 << bit) - 1)).count_ones()
    }

    /// The ids of piece `piece` (of `pieces()`), smallest first, with their rows.
    fn piece(&self, piece: usize) -> impl Iterator<Item = (u32, StackId)> + '_ {
        let words = piece * WORDS_A_PIECE..((piece + 1) * WORDS_A_PIECE).min(self.words.len());
        words.flat_map(move |word| {
            let (mut rest, mut row) = (self.words[word], self.before[word]);
            std::iter::from_fn(move || {
                (rest != 0).then(|| {
                    let id = (word << 6) as u32 + rest.trailing_zeros();
                    rest &= rest - 1;
                    row += 1;
                    (row - 1, id)
                })
            })
        })
    }

    fn pieces(&self) -> usize {
        self.words.len().div_ceil(WORDS_A_PIECE)
    }
}

/// Each (thread id, interpreter id) sampled, in the order first seen (CPython's dict order,
/// the order of the profile's tracks), found through an index: a thread running in a
/// sub-interpreter is sampled there too, as a track of its own.
#[derive(Default)]
struct Threads {
    list: Vec<((u64, u32), ThreadData)>,
    index: FxHashMap<(u64, u32), usize>,
}

impl Threads {
    fn get(&self, key: (u64, u32)) -> Option<&ThreadData> {
        self.index.get(&key).map(|&i| &self.list[i].1)
    }

    fn get_mut(&mut self, key: (u64, u32)) -> Option<&mut ThreadData> {
        self.index.get(&key).map(|&i| &mut self.list[i].1)
    }

    /// The thread, made by `new` if it was not sampled yet.
    fn entry(&mut self, key: (u64, u32), new: impl FnOnce() -> ThreadData) -> &mut ThreadData {
        let list = &mut self.list;
        let i = *self.index.entry(key).or_insert_with(|| {
            list.push((key, new()));
            list.len() - 1
        });
        &mut self.list[i].1
    }
}

#[derive(Default)]
pub struct GeckoCollector {
    interval_us: u64,
    first_us: Option<u64>,
    /// The time (ms) of the latest sample and how many samples came, with or without a stack:
    /// the profile's interval and where open markers close, as CPython's. (CPython takes the
    /// last sample's time, the same unless threads' records come out of order: then a marker
    /// would end before it started.)
    last_time: f64,
    sample_count: usize,
    /// The string array, "(root)" first as CPython's.
    strings: Interner<String>,
    threads: Threads,
    /// The target's opcode names, for opcode interval markers (frames carry opcodes only
    /// with --opcodes).
    opcodes: Option<Opcodes>,
    /// The capture does not say whether it was taken with --opcodes (CPython's do not): its
    /// frames are looked at when the first sample comes, and without an opcode in any of them
    /// the leaf's opcode is not followed (a frame read per sample, which missed the cache).
    opcodes_unknown: bool,
    /// The stack nodes a sample added to its thread's stack table, leaf first.
    new_nodes: Vec<StackId>,
}

impl GeckoCollector {
    fn new(interval_us: u64, opcodes: Option<Opcodes>, opcodes_unknown: bool) -> GeckoCollector {
        GeckoCollector {
            interval_us,
            strings: Interner::from_list(vec!["(root)".to_owned()]),
            opcodes,
            opcodes_unknown,
            ..GeckoCollector::default()
        }
    }

    /// CPython's `_add_opcode_interval_marker`.
    fn opcode_marker(
        &mut self,
        symbols: &Symbols,
        span: &OpcodeSpan,
        start: f64,
        end: f64,
    ) -> Option<Marker> {
        let (Some(op), Some(table)) = (span.0, self.opcodes.as_ref()) else {
            return None;
        };
        let info = table.info(op);
        let formatted = table.format(op);
        let data = json!({
            "type": "Opcode", "opcode": op, "opname": formatted, "base_opname": info.base_opname,
            "is_specialized": info.is_specialized, "line": span.1,
            "column": (span.2 >= 0).then_some(span.2), "function": symbols.str(span.3),
            "duration": end - start,
        });
        Some((self.strings.id(&formatted), start, end, CAT_OPCODES, data))
    }

    /// Follow the leaf frame's opcode; a change closes the previous span's marker.
    fn track_opcode(&mut self, symbols: &Symbols, key: (u64, u32), leaf: FrameId, now: f64) {
        let f = symbols.frame(leaf);
        let span: OpcodeSpan = (f.opcode, f.lineno, f.column, f.funcname, f.filename);
        let t = self.threads.get_mut(key).expect("thread exists");
        match t.opcode_state.take() {
            Some((open, start)) if open != span => {
                t.opcode_state = Some((span, now));
                if let Some(m) = self.opcode_marker(symbols, &open, start, now) {
                    self.threads
                        .get_mut(key)
                        .expect("thread exists")
                        .markers
                        .push(m);
                }
            }
            Some(same) => t.opcode_state = Some(same),
            None => t.opcode_state = Some((span, now)),
        }
    }
}

impl ThreadData {
    /// Add a frame to this thread's frame table, and its function and file if new, as
    /// CPython's `_get_or_create_func`, `_get_or_create_resource` and `_get_or_create_frame`.
    fn add_frame(&mut self, strings: &mut Interner<String>, symbols: &Symbols, id: FrameId) {
        let t = self;
        let info = symbols.frame(id);
        let file = symbols.str(info.filename);
        // CPython's `_is_python` (which holds for the synthetic frames' file, `~`, too).
        let python = !file.starts_with('<') || file == "<stdin>" || file == "<string>";
        // A synthetic frame has no line (-1), which CPython's frames show as none.
        let line = (info.lineno >= 0).then_some(info.lineno);
        let func = *t
            .func_index
            .entry((info.filename, info.funcname))
            .or_insert_with(|| {
                let name = strings.id(symbols.str(info.funcname));
                let base_name = file.rsplit('/').next().unwrap_or(file);
                let resource = *t.resource_index.entry(info.filename).or_insert_with(|| {
                    t.resource_table.push(strings.id(base_name));
                    t.resource_table.len() - 1
                });
                let file_name = python.then(|| strings.id(base_name));
                let line = if python { line } else { None };
                t.func_table.push(Func {
                    name,
                    python,
                    resource,
                    file_name,
                    line,
                });
                t.func_table.len() - 1
            });
        let column = (info.column >= 0).then_some(info.column);
        let row = *t
            .frame_index
            .entry((func, info.lineno, info.column.max(-1)))
            .or_insert_with(|| {
                let category = if t.func_table[func].python {
                    CAT_PYTHON
                } else {
                    CAT_NATIVE
                };
                t.frame_table
                    .push((func, line.filter(|&l| l != 0), column, category));
                (t.frame_table.len() - 1) as u32
            });
        t.frames.push((id, row));
    }

    /// Open and close the state markers for a sample in `status`, as CPython's `collect`.
    fn track_states(
        &mut self,
        strings: &mut Interner<String>,
        tid: u64,
        status: ThreadStatus,
        in_gc: bool,
        now: f64,
    ) {
        let (open, markers) = (&mut self.open, &mut self.markers);
        let mut close = |name: &str, start: f64, cat: usize| {
            markers.push(state_marker(strings, name, start, now, cat, tid));
        };
        let has_gil = status.has(ThreadStatus::HAS_GIL);
        let on_cpu = status.has(ThreadStatus::ON_CPU);
        // CPython's `_track_state_transition`: a change closes the other state's marker.
        let mut track = |track: usize, state: bool, close: &mut dyn FnMut(&str, f64, usize)| {
            let (on, off, cat) = TRACKS[track];
            let slot = &mut open.tracks[track];
            match *slot {
                Some((was, _)) if was == state => {}
                Some((was, start)) => {
                    close(if was { on } else { off }, start, cat);
                    *slot = Some((state, now));
                }
                None => *slot = Some((state, now)),
            }
        };
        track(0, has_gil, &mut close);
        track(1, on_cpu, &mut close);
        let code = (has_gil || on_cpu).then_some(has_gil);
        match (open.code, code) {
            (Some((was, _)), Some(python)) if was == python => {}
            (Some((was, start)), _) => {
                close(
                    if was { "Python Code" } else { "Native Code" },
                    start,
                    CAT_CODE_TYPE,
                );
                open.code = code.map(|python| (python, now));
            }
            (None, _) => open.code = code.map(|python| (python, now)),
        }
        match (open.gil_wait, status.has(ThreadStatus::GIL_REQUESTED)) {
            (None, true) => open.gil_wait = Some(now),
            (Some(start), false) => {
                close("Waiting for GIL", start, CAT_GIL);
                open.gil_wait = None;
            }
            _ => {}
        }
        track(2, status.has(ThreadStatus::HAS_EXCEPTION), &mut close);
        match (open.gc, in_gc) {
            (None, true) => open.gc = Some(now),
            (Some(start), false) => {
                close("GC Collecting", start, CAT_GC);
                open.gc = None;
            }
            _ => {}
        }
    }
}

impl Collector for GeckoCollector {
    fn collect(&mut self, symbols: &Symbols, sample: &Sample<'_>) {
        let Some(&first_us) = sample.timestamps_us.first() else {
            return;
        };
        let base = *self.first_us.get_or_insert(first_us);
        // Milliseconds since the first sample replayed; a thread's records can hold earlier
        // samples than another thread's before them (negative times, as CPython's).
        let to_us = |ts: u64| (ts as i64).wrapping_sub(base as i64);
        let to_ms = |ts: u64| to_us(ts) as f64 / 1000.0;
        let now = to_ms(first_us);
        self.sample_count += sample.timestamps_us.len();
        let last_ms = to_ms(*sample.timestamps_us.last().expect("not empty"));
        self.last_time = self.last_time.max(last_ms);
        if std::mem::take(&mut self.opcodes_unknown)
            && !symbols.frames().iter().any(|f| f.opcode.is_some())
        {
            self.opcodes = None;
        }
        let tid = sample.thread_id;
        let key = (tid, sample.interpreter_id);
        let t = self.threads.entry(key, || ThreadData {
            is_main: sample.status.has(ThreadStatus::MAIN_THREAD),
            ..ThreadData::default()
        });
        // The innermost frame is read from the stack table, whose node was prefetched, rather
        // than from the sample's frames, which the decoding thread wrote on another core.
        let leaf = symbols.stacks().leaf(sample.stack);
        // Every sample of a batch has the same state: a marker can only open or close at its
        // first one. Markers follow samples with no Python frame too, as CPython's.
        let in_gc = leaf.is_some_and(|leaf| symbols.is_gc(leaf));
        t.track_states(&mut self.strings, tid, sample.status, in_gc, now);
        // CPython 3.15's collectors skip samples with no Python frame (the empty stack).
        let Some(leaf) = leaf else {
            return;
        };
        // The stack and the prefixes this thread had not sampled yet; their frames from the
        // root.
        let mut node = sample.stack;
        while node != StackTable::EMPTY && t.stacks.insert(node) {
            self.new_nodes.push(node);
            node = symbols.stacks().parent(node);
        }
        for node in self.new_nodes.drain(..).rev() {
            let frame = symbols.stacks().leaf(node).expect("non-empty stack");
            if t.frame_set.insert(frame) {
                t.add_frame(&mut self.strings, symbols, frame);
            }
        }
        for &ts in sample.timestamps_us {
            t.sample_stacks.push(sample.stack);
            t.sample_us.push(to_us(ts));
        }
        if self.opcodes.is_some() {
            self.track_opcode(symbols, key, leaf, now);
        }
    }

    /// On a capture of many distinct stacks, a sample's stack misses the cache twice: in the
    /// thread's set of sampled stacks, and in the stack table when it is new to the thread.
    fn prefetch(&mut self, symbols: &Symbols, thread_id: u64, stack: StackId) {
        // A stack new to the thread is walked up to what the thread has: mostly nodes made
        // one after another, just before this one, in the cache lines below its own.
        for below in [0, 8, 16, 24] {
            symbols.stacks().prefetch_node(stack.saturating_sub(below));
        }
        // (A thread in a sub-interpreter goes without: this is only a hint.)
        if let Some(t) = self.threads.get((thread_id, 0)) {
            t.stacks.prefetch(stack);
        }
    }

    fn export(&mut self, ctx: &ExportContext<'_>) -> Result<()> {
        let path = ctx.path.context("gecko output needs a file")?;
        let pid = std::process::id().to_string();
        // Close every open marker at the last sample, in CPython's `_finalize_markers` order:
        // by kind, then thread (the order their names join the string array), opcodes last.
        let end = self.last_time;
        for rank in 0..CLOSING_RANKS {
            for ((tid, _), t) in &mut self.threads.list {
                let tid = *tid;
                if let Some((_, name, start, cat)) = t.open.listed().find(|m| m.0 == rank) {
                    let marker = state_marker(&mut self.strings, name, start, end, cat, tid);
                    t.markers.push(marker);
                }
            }
        }
        let open_spans: Vec<((u64, u32), OpcodeSpan, f64)> = self
            .threads
            .list
            .iter_mut()
            .filter_map(|(key, t)| {
                let key = *key;
                t.opcode_state
                    .take()
                    .map(|(span, start)| (key, span, start))
            })
            .collect();
        for (key, span, start) in open_spans {
            if let Some(m) = self.opcode_marker(ctx.symbols, &span, start, end) {
                self.threads
                    .get_mut(key)
                    .expect("thread exists")
                    .markers
                    .push(m);
            }
        }
        let symbols = ctx.symbols;
        let cpus = std::thread::available_parallelism().map_or(1, std::num::NonZero::get);
        // Tracks are named by interpreter too once a sub-interpreter was sampled.
        let interpreters = self.threads.list.iter().any(|&((_, iid), _)| iid != 0);
        let threads: Vec<ThreadJson<'_>> = self
            .threads
            .list
            .iter()
            .map(|&((tid, iid), ref t)| ThreadJson {
                tid,
                interpreter: interpreters.then_some(iid),
                pid: &pid,
                t,
                symbols,
            })
            .collect();
        let profile = json!({
            "meta": {
                "interval": if self.sample_count > 0 && end > 0.0 { end / self.sample_count as f64 } else { self.interval_us as f64 / 1000.0 },
                "startTime": self.first_us.unwrap_or(0) as f64 / 1000.0, "abi": std::env::consts::ARCH, "oscpu": std::env::consts::ARCH,
                "misc": "Python profiler", "platform": PLATFORM, "processType": 0,
                "categories": CATEGORIES.iter().map(|(name, color)| json!({"name": name, "color": color, "subcategories": ["Other"]})).collect::<Vec<_>>(),
                "stackwalk": 0, "toolkit": "", "version": 32, "preprocessedProfileVersion": 57, "appBuildID": "",
                "physicalCPUs": cpus, "logicalCPUs": cpus, "CPUName": "", "product": "Python", "symbolicated": true,
                "markerSchema": if self.opcodes.is_some() { opcode_schema() } else { json!([]) }, "importedFrom": "Tachyon Sampling Profiler",
                "extensions": {"id": [], "name": [], "baseURL": [], "length": 0},
            },
            "libs": [], "threads": [], "pages": [],
            "shared": {"stringArray": [], "sources": {"length": 0, "uuid": [], "filename": []}},
        });
        // The large parts (threads' tables, strings) are written straight from the collected
        // columns, never as JSON values: about 100 bytes a sample instead of a kilobyte.
        let mut out = tachyon_plugin_api::output_file(path)?;
        write_document(&mut out, &profile, &threads, self.strings.list())
            .and_then(|()| Ok(std::io::Write::flush(&mut out)?))
            .with_context(|| format!("cannot write {}", path.display()))?;
        eprintln!("Gecko profile written to {}", ctx.shown_path().display());
        eprintln!("Open in Firefox Profiler: https://profiler.firefox.com/");
        Ok(())
    }
}

fn create(config: &CollectorConfig) -> Result<Box<dyn Collector>> {
    // Capture feature 8: taken with --opcodes.
    let with_opcodes = config.capture_features.map(|features| features & 8 != 0);
    let opcodes = config
        .python_version
        .and_then(|(major, minor, _)| Opcodes::for_version(major, minor))
        .filter(|_| with_opcodes != Some(false));
    Ok(Box::new(GeckoCollector::new(
        config.interval_us,
        opcodes,
        with_opcodes.is_none(),
    )))
}

inventory::submit! {
    Format { name: "gecko", description: "Firefox Profiler JSON (processed format) with GIL, CPU, code type, GIL wait, exception and GC markers", extension: "json", options: &[], needs: Needs { thread_state: true, opcodes: true, ..Needs::NOTHING }, create }
}

/// A column written from an iterator as a JSON array, without collecting it.
struct Column<I>(I);

impl<I> serde::Serialize for Column<I>
where
    I: Iterator + Clone,
    I::Item: serde::Serialize,
{
    fn serialize<S: serde::Serializer>(
        &self,
        serializer: S,
    ) -> std::result::Result<S::Ok, S::Error> {
        serializer.collect_seq(self.0.clone())
    }
}

/// `n` copies of one value.
fn repeat<T: Clone>(value: T, n: usize) -> Column<std::iter::RepeatN<T>> {
    Column(std::iter::repeat_n(value, n))
}

/// Writes the pairs of a JSON object (`serialize_entry` calls) for one table of a thread.
macro_rules! table {
    ($name:ident, |$r:ident, $t:ident, $m:ident| $body:block) => {
        struct $name<'a>(&'a Rows<'a>);

        impl serde::Serialize for $name<'_> {
            fn serialize<S: serde::Serializer>(
                &self,
                serializer: S,
            ) -> std::result::Result<S::Ok, S::Error> {
                use serde::ser::SerializeMap;
                let ($r, $t) = (self.0, self.0.t);
                let mut $m = serializer.serialize_map(None)?;
                $body
                $m.end()
            }
        }
    };
}

const NULL: Option<u8> = None;

/// A thread's stack table as written: its rows (stack ids, smallest first) and, by frame id,
/// the row of the frame table each is written as. Made for one thread at a time, while it is
/// written.
struct Rows<'a> {
    t: &'a ThreadData,
    stacks: &'a StackTable,
    stack_rows: Ranked,
    row_of_frame: Vec<u32>,
    /// By frame id, its row's category as the digit written (every category is below 10).
    category_of_frame: Vec<u8>,
}

impl<'a> Rows<'a> {
    fn new(t: &'a ThreadData, symbols: &'a Symbols) -> Rows<'a> {
        let mut row_of_frame = vec![u32::MAX; symbols.frames().len()];
        let mut category_of_frame = vec![b'0'; symbols.frames().len()];
        for &(frame, row) in &t.frames {
            row_of_frame[frame as usize] = row;
            category_of_frame[frame as usize] = b'0' + t.frame_table[row as usize].3 as u8;
        }
        Rows {
            t,
            stacks: symbols.stacks(),
            stack_rows: Ranked::new(&t.stacks),
            row_of_frame,
            category_of_frame,
        }
    }

    /// A stack's frame (its row in the frame table).
    fn frame(&self, stack: StackId) -> u32 {
        let leaf = self.stacks.leaf(stack).expect("non-empty stack");
        self.row_of_frame[leaf as usize]
    }
}

table!(FrameTableJson, |_r, t, m| {
    let n = t.frame_table.len();
    m.serialize_entry("address", &repeat(-1, n))?;
    m.serialize_entry("category", &Column(t.frame_table.iter().map(|f| f.3)))?;
    m.serialize_entry("subcategory", &repeat(0, n))?;
    m.serialize_entry("func", &Column(t.frame_table.iter().map(|f| f.0)))?;
    m.serialize_entry("innerWindowID", &repeat(NULL, n))?;
    m.serialize_entry("implementation", &repeat(NULL, n))?;
    m.serialize_entry("optimizations", &repeat(NULL, n))?;
    m.serialize_entry("line", &Column(t.frame_table.iter().map(|f| f.1)))?;
    m.serialize_entry("column", &Column(t.frame_table.iter().map(|f| f.2)))?;
    m.serialize_entry("inlineDepth", &repeat(0, n))?;
    m.serialize_entry("nativeSymbol", &repeat(NULL, n))?;
    m.serialize_entry("length", &n)?;
});

table!(FuncTableJson, |_r, t, m| {
    let n = t.func_table.len();
    m.serialize_entry("name", &Column(t.func_table.iter().map(|f| f.name)))?;
    m.serialize_entry("isJS", &Column(t.func_table.iter().map(|f| f.python)))?;
    m.serialize_entry(
        "relevantForJS",
        &Column(t.func_table.iter().map(|f| f.python)),
    )?;
    m.serialize_entry("resource", &Column(t.func_table.iter().map(|f| f.resource)))?;
    m.serialize_entry(
        "fileName",
        &Column(t.func_table.iter().map(|f| f.file_name)),
    )?;
    m.serialize_entry("lineNumber", &Column(t.func_table.iter().map(|f| f.line)))?;
    m.serialize_entry("columnNumber", &repeat(NULL, n))?;
    m.serialize_entry("length", &n)?;
});

table!(ResourceTableJson, |_r, t, m| {
    let n = t.resource_table.len();
    m.serialize_entry("lib", &repeat(NULL, n))?;
    m.serialize_entry("name", &Column(t.resource_table.iter()))?;
    m.serialize_entry("host", &repeat(NULL, n))?;
    // RESOURCE_TYPE_LIBRARY
    m.serialize_entry("type", &repeat(1, n))?;
    m.serialize_entry("length", &n)?;
});

table!(MarkersJson, |_r, t, m| {
    let n = t.markers.len();
    m.serialize_entry("data", &Column(t.markers.iter().map(|x| &x.4)))?;
    m.serialize_entry("name", &Column(t.markers.iter().map(|x| x.0)))?;
    m.serialize_entry("startTime", &Column(t.markers.iter().map(|x| x.1)))?;
    m.serialize_entry("endTime", &Column(t.markers.iter().map(|x| x.2)))?;
    m.serialize_entry("phase", &repeat(1, n))?;
    m.serialize_entry("category", &Column(t.markers.iter().map(|x| x.3)))?;
    m.serialize_entry("length", &n)?;
});

/// One thread of the processed profile.
struct ThreadJson<'a> {
    tid: u64,
    interpreter: Option<u32>,
    pid: &'a str,
    t: &'a ThreadData,
    symbols: &'a Symbols,
}

/// Samples whose entries of a column are made at a time by one thread (see `write_in_pieces`).
const ENTRIES_A_PIECE: usize = 1 << 16;

/// `"key":[…]`, its entries made in `pieces` pieces on two threads: `piece(k, text)` writes
/// those of piece k, each after a comma but the very first.
fn write_column(
    out: &mut dyn Write,
    key: &str,
    pieces: usize,
    piece: &(dyn Fn(usize, &mut Vec<u8>) + Sync),
) -> Result<()> {
    write!(out, "\"{key}\":[")?;
    tachyon_plugin_api::write_in_pieces(out, pieces, &|k, text| {
        piece(k, text);
        Ok(())
    })?;
    out.write_all(b"]")?;
    Ok(())
}

/// A column of the `n` samples, `entry(i, text)` writing sample i's.
fn sample_column(
    out: &mut dyn Write,
    key: &str,
    n: usize,
    entry: impl Fn(usize, &mut Vec<u8>) + Sync,
) -> Result<()> {
    write_column(out, key, n.div_ceil(ENTRIES_A_PIECE), &|piece, text| {
        let start = piece * ENTRIES_A_PIECE;
        for i in start..(start + ENTRIES_A_PIECE).min(n) {
            if i > 0 {
                text.push(b',');
            }
            entry(i, text);
        }
    })
}

/// A column of a thread's stack table, `entry(id, text)` writing the row of stack `id`.
fn stack_column(
    out: &mut dyn Write,
    key: &str,
    rows: &Ranked,
    entry: impl Fn(StackId, &mut Vec<u8>) + Sync,
) -> Result<()> {
    write_column(out, key, rows.pieces(), &|piece, text| {
        for (row, id) in rows.piece(piece) {
            if row > 0 {
                text.push(b',');
            }
            entry(id, text);
        }
    })
}

/// `,"key":value`, the value as serde_json writes it.
fn write_field<T: serde::Serialize + ?Sized>(
    out: &mut dyn Write,
    key: &str,
    value: &T,
) -> Result<()> {
    write!(out, ",\"{key}\":")?;
    serde_json::to_writer(&mut *out, value)?;
    Ok(())
}

fn put_int(text: &mut Vec<u8>, value: impl itoa::Integer) {
    text.extend_from_slice(itoa::Buffer::new().format(value).as_bytes());
}

/// `us / 1000.0` as serde_json writes it (`1.5`, `2.0`, `-0.25`): the shortest decimal that
/// reads back as that double is the exact thousandths while they fit in the 15 significant
/// digits a double always keeps (below 10^15 µs, 31 years). A crafted capture's larger times
/// are written exactly, where serde_json would round them.
fn put_ms(text: &mut Vec<u8>, us: i64) {
    if us < 0 {
        text.push(b'-');
    }
    let us = us.unsigned_abs();
    put_int(text, us / 1000);
    text.push(b'.');
    let thousandths = us % 1000;
    if thousandths == 0 {
        text.push(b'0');
        return;
    }
    let digits = [thousandths / 100, thousandths / 10 % 10, thousandths % 10];
    let significant = if digits[2] != 0 {
        3
    } else if digits[1] != 0 {
        2
    } else {
        1
    };
    text.extend(digits[..significant].iter().map(|&d| b'0' + d as u8));
}

impl ThreadJson<'_> {
    /// The thread's object, in serde_json's form; its samples and stack table (millions of
    /// entries on a capture of many stacks) made on two threads.
    fn write(&self, out: &mut dyn Write) -> Result<()> {
        let (t, tid) = (self.t, self.tid);
        let name = match self.interpreter {
            Some(iid) => format!("Thread-{tid} (interpreter {iid})"),
            None => format!("Thread-{tid}"),
        };
        out.write_all(b"{\"name\":")?;
        serde_json::to_writer(&mut *out, &name)?;
        write_field(out, "isMainThread", &t.is_main)?;
        write_field(out, "processType", "default")?;
        write_field(out, "processName", "Python Process")?;
        write_field(out, "processStartupTime", &0)?;
        write_field(out, "processShutdownTime", &NULL)?;
        write_field(out, "registerTime", &0)?;
        write_field(out, "unregisterTime", &NULL)?;
        write_field(out, "pausedRanges", &[0u8; 0])?;
        write_field(out, "pid", self.pid)?;
        write_field(out, "tid", &tid)?;
        let r = Rows::new(t, self.symbols);

        out.write_all(b",\"samples\":{")?;
        let n = t.sample_us.len();
        sample_column(out, "stack", n, |i, text| {
            put_int(text, r.stack_rows.row(t.sample_stacks[i]));
        })?;
        out.write_all(b",")?;
        sample_column(out, "time", n, |i, text| {
            put_ms(text, t.sample_us[i]);
        })?;
        out.write_all(b",")?;
        sample_column(out, "eventDelay", n, |_, text| {
            text.extend_from_slice(b"null");
        })?;
        write_field(out, "weight", &NULL)?;
        write_field(out, "weightType", "samples")?;
        write_field(out, "length", &n)?;

        out.write_all(b"},\"stackTable\":{")?;
        let rows = &r.stack_rows;
        stack_column(out, "frame", rows, |id, text| put_int(text, r.frame(id)))?;
        out.write_all(b",")?;
        stack_column(out, "category", rows, |id, text| {
            let leaf = r.stacks.leaf(id).expect("non-empty stack");
            text.push(r.category_of_frame[leaf as usize]);
        })?;
        out.write_all(b",")?;
        stack_column(out, "subcategory", rows, |_, text| text.push(b'0'))?;
        out.write_all(b",")?;
        stack_column(out, "prefix", rows, |id, text| match r.stacks.parent(id) {
            StackTable::EMPTY => text.extend_from_slice(b"null"),
            parent => put_int(text, rows.row(parent)),
        })?;
        write_field(out, "length", &rows.len)?;
        out.write_all(b"}")?;

        write_field(out, "frameTable", &FrameTableJson(&r))?;
        write_field(out, "funcTable", &FuncTableJson(&r))?;
        write_field(out, "resourceTable", &ResourceTableJson(&r))?;
        write_field(
            out,
            "nativeSymbols",
            &json!({"libIndex": [], "address": [], "name": [], "functionSize": [], "length": 0}),
        )?;
        write_field(out, "markers", &MarkersJson(&r))?;
        out.write_all(b"}")?;
        Ok(())
    }
}

/// The whole profile: `base` (in serde_json's key order) with its threads and string array
/// put in as they are written.
fn write_document(
    out: &mut dyn Write,
    base: &Value,
    threads: &[ThreadJson<'_>],
    strings: &[String],
) -> Result<()> {
    out.write_all(b"{")?;
    for (i, (key, value)) in base.as_object().into_iter().flatten().enumerate() {
        if i > 0 {
            out.write_all(b",")?;
        }
        serde_json::to_writer(&mut *out, key)?;
        out.write_all(b":")?;
        match key.as_str() {
            "threads" => {
                out.write_all(b"[")?;
                for (i, thread) in threads.iter().enumerate() {
                    if i > 0 {
                        out.write_all(b",")?;
                    }
                    thread.write(out)?;
                }
                out.write_all(b"]")?;
            }
            "shared" => serde_json::to_writer(
                &mut *out,
                &json!({"sources": value["sources"], "stringArray": Column(strings.iter())}),
            )?,
            _ => serde_json::to_writer(&mut *out, value)?,
        }
    }
    out.write_all(b"}")?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use tachyon_plugin_api::FrameInfo;

    #[test]
    fn times_are_written_as_serde_json_writes_the_milliseconds() {
        let some = [
            0,
            1,
            9,
            10,
            100,
            999,
            1000,
            1001,
            1050,
            12_345,
            999_999_999_999_999,
        ];
        let near_zero = -2_000..2_000;
        for us in some.iter().flat_map(|&u| [u, -u]).chain(near_zero) {
            let mut ours = Vec::new();
            put_ms(&mut ours, us);
            let theirs = serde_json::to_vec(&(us as f64 / 1000.0)).unwrap();
            assert_eq!(
                String::from_utf8(ours),
                String::from_utf8(theirs),
                "{us} µs"
            );
        }
    }

    #[test]
    fn id_sets_number_their_ids_in_order_across_pages_and_pieces() {
        let mut set = IdSet::default();
        let added: Vec<bool> = [70_000, 5, 4_096, 4_095, 5, 63, 64]
            .iter()
            .map(|&id| set.insert(id))
            .collect();
        assert_eq!(added, [true, true, true, true, false, true, true]);
        let ranked = Ranked::new(&set);
        let rows: Vec<(u32, u32)> = (0..ranked.pieces())
            .flat_map(|piece| ranked.piece(piece))
            .collect();
        let ids = [5, 63, 64, 4_095, 4_096, 70_000];
        assert_eq!(
            rows,
            ids.iter()
                .copied()
                .zip(0..)
                .map(|(id, row)| (row, id))
                .collect::<Vec<_>>()
        );
        for (row, id) in rows {
            assert_eq!(ranked.row(id), row);
        }
        assert_eq!(ranked.len, ids.len());
    }

    /// Threads that share stacks and frames each get their own stack and frame tables,
    /// whichever thread sampled a stack first (the later threads' indexes live in their maps).
    #[test]
    fn threads_sharing_stacks_each_have_whole_tables() {
        let mut symbols = Symbols::new();
        let file = symbols.intern_str("app.py");
        let frame = |symbols: &mut Symbols, name: &str, lineno| {
            let funcname = symbols.intern_str(name);
            symbols.intern_frame(FrameInfo {
                filename: file,
                funcname,
                lineno,
                end_lineno: lineno,
                column: -1,
                end_column: -1,
                opcode: None,
            })
        };
        let (main, work, leaf) = (
            frame(&mut symbols, "main", 1),
            frame(&mut symbols, "work", 2),
            frame(&mut symbols, "leaf", 3),
        );
        let mut gecko = GeckoCollector::new(100, None, false);
        // Thread 1 samples [work, main], then thread 2 samples [leaf, work, main] (sharing its
        // prefix), then thread 1 the same stack.
        for (tid, frames) in [
            (1, vec![work, main]),
            (2, vec![leaf, work, main]),
            (1, vec![leaf, work, main]),
        ] {
            let stack = symbols.intern_stack(&frames);
            let sample = Sample {
                thread_id: tid,
                interpreter_id: 0,
                status: ThreadStatus(0),
                timestamps_us: &[tid * 10],
                frames: &frames,
                stack,
            };
            gecko.collect(&symbols, &sample);
        }
        for tid in [1, 2] {
            let t = gecko.threads.get((tid, 0)).expect("sampled");
            let rows = Rows::new(t, &symbols);
            let name = |frame: u32| {
                gecko.strings.list()[t.func_table[t.frame_table[frame as usize].0].name].clone()
            };
            // Follow the last sample's stack to its root, leaf first.
            let mut names = Vec::new();
            let mut at = *t.sample_stacks.last().unwrap();
            while at != StackTable::EMPTY {
                names.push(name(rows.frame(at)));
                at = symbols.stacks().parent(at);
            }
            assert_eq!(names, ["leaf", "work", "main"], "thread {tid}");
            assert_eq!(rows.stack_rows.len, 3, "thread {tid}");
            assert_eq!(t.frame_table.len(), 3, "thread {tid}");
        }
    }
}
