//! The sample model: interned strings and frames, thread status bits, one sample.

use std::collections::HashMap;

/// Index into [`Symbols`]' string table.
pub type StrId = u32;
/// Index into [`Symbols`]' frame table.
pub type FrameId = u32;

/// One Python frame, as Tachyon records it. Line/column fields are -1 when unknown;
/// synthetic frames (`<GC>`, `<native>`) have filename `~` and `lineno == -1`.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct FrameInfo {
    pub filename: StrId,
    /// The qualified name (`Class.method`), as CPython's `co_qualname`.
    pub funcname: StrId,
    pub lineno: i32,
    pub end_lineno: i32,
    pub column: i32,
    pub end_column: i32,
    pub opcode: Option<u8>,
}

/// Append-only intern tables for strings and frames. Ids never change once given, so
/// collectors may key their own caches by [`FrameId`].
#[derive(Default, Debug, Clone)]
pub struct Symbols {
    strings: Vec<String>,
    string_ids: HashMap<String, StrId>,
    frames: Vec<FrameInfo>,
    frame_ids: HashMap<FrameInfo, FrameId>,
}

impl Symbols {
    pub fn new() -> Self {
        Self::default()
    }

    /// Tables taken verbatim (e.g. from a capture file); ids are the table positions.
    pub fn from_tables(strings: Vec<String>, frames: Vec<FrameInfo>) -> Self {
        let mut string_ids = HashMap::with_capacity(strings.len());
        for (i, s) in strings.iter().enumerate() {
            string_ids.entry(s.clone()).or_insert(i as StrId);
        }
        let mut frame_ids = HashMap::with_capacity(frames.len());
        for (i, f) in frames.iter().enumerate() {
            frame_ids.entry(f.clone()).or_insert(i as FrameId);
        }
        Symbols {
            strings,
            string_ids,
            frames,
            frame_ids,
        }
    }

    pub fn intern_str(&mut self, s: &str) -> StrId {
        if let Some(&id) = self.string_ids.get(s) {
            return id;
        }
        let id = self.strings.len() as StrId;
        self.strings.push(s.to_owned());
        self.string_ids.insert(s.to_owned(), id);
        id
    }

    pub fn intern_frame(&mut self, frame: FrameInfo) -> FrameId {
        if let Some(&id) = self.frame_ids.get(&frame) {
            return id;
        }
        let id = self.frames.len() as FrameId;
        self.frames.push(frame.clone());
        self.frame_ids.insert(frame, id);
        id
    }

    pub fn str(&self, id: StrId) -> &str {
        &self.strings[id as usize]
    }

    pub fn frame(&self, id: FrameId) -> &FrameInfo {
        &self.frames[id as usize]
    }

    pub fn strings(&self) -> &[String] {
        &self.strings
    }

    pub fn frames(&self) -> &[FrameInfo] {
        &self.frames
    }

    /// True for the synthetic `<GC>` frame the sampler puts innermost while the collector runs.
    pub fn is_gc(&self, id: FrameId) -> bool {
        let frame = self.frame(id);
        self.is_synthetic(frame) && self.str(frame.funcname) == "<GC>"
    }

    /// True for Tachyon's synthetic frames (`<GC>`, `<native>`): filename `~`, no line.
    pub fn is_synthetic(&self, frame: &FrameInfo) -> bool {
        frame.lineno <= 0 && self.str(frame.filename) == "~"
    }
}

/// Thread status bits, exactly as Tachyon's `ThreadInfo.status`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct ThreadStatus(pub u8);

impl ThreadStatus {
    pub const HAS_GIL: u8 = 1 << 0;
    pub const ON_CPU: u8 = 1 << 1;
    pub const UNKNOWN: u8 = 1 << 2;
    pub const GIL_REQUESTED: u8 = 1 << 3;
    pub const HAS_EXCEPTION: u8 = 1 << 4;
    pub const MAIN_THREAD: u8 = 1 << 5;

    pub fn has(self, bit: u8) -> bool {
        self.0 & bit != 0
    }
}

/// What a sample counts: Tachyon's `--mode` values, with their numeric codes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Mode {
    #[default]
    Wall = 0,
    Cpu = 1,
    Gil = 2,
    All = 3,
    Exception = 4,
}

impl Mode {
    pub fn from_code(code: u32) -> Option<Mode> {
        Some(match code {
            0 => Mode::Wall,
            1 => Mode::Cpu,
            2 => Mode::Gil,
            3 => Mode::All,
            4 => Mode::Exception,
            _ => return None,
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            Mode::Wall => "wall",
            Mode::Cpu => "cpu",
            Mode::Gil => "gil",
            Mode::All => "all",
            Mode::Exception => "exception",
        }
    }
}

/// One or more identical samples of one thread: same stack, same status, one timestamp
/// each (so the weight is `timestamps_us.len()`).
#[derive(Clone, Copy, Debug)]
pub struct Sample<'a> {
    pub thread_id: u64,
    pub interpreter_id: u32,
    pub status: ThreadStatus,
    /// Absolute CLOCK_MONOTONIC microseconds, one per sample in the batch.
    pub timestamps_us: &'a [u64],
    /// Innermost frame first.
    pub frames: &'a [FrameId],
}

impl Sample<'_> {
    pub fn weight(&self) -> u64 {
        self.timestamps_us.len() as u64
    }
}

/// Strings numbered in first-seen order, for outputs that keep their own string table
/// (flame graph pages, Firefox profiles).
#[derive(Default, Debug, Clone)]
pub struct StringIndex {
    list: Vec<String>,
    index: HashMap<String, usize>,
}

impl StringIndex {
    pub fn id(&mut self, s: &str) -> usize {
        if let Some(&i) = self.index.get(s) {
            return i;
        }
        self.list.push(s.to_owned());
        self.index.insert(s.to_owned(), self.list.len() - 1);
        self.list.len() - 1
    }

    pub fn strings(&self) -> &[String] {
        &self.list
    }

    /// The string numbered `id` ("" if there is none).
    pub fn text(&self, id: usize) -> &str {
        self.list.get(id).map_or("", String::as_str)
    }
}
