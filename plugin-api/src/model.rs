//! The sample model: interned strings and frames, thread status bits, one sample.

use std::borrow::Borrow;
use std::hash::{BuildHasher, Hash, RandomState};

use crate::hash::Slots;

use crate::stacks::{StackId, StackTable};

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

/// Append-only intern tables for strings, frames and stacks. Ids never change once given, so
/// collectors may key their own caches by [`FrameId`] and [`StackId`].
#[derive(Default, Debug, Clone)]
pub struct Symbols {
    strings: Interner<String>,
    frames: Interner<FrameInfo>,
    /// Per frame: whether it is `<GC>`. Asked of every sample by the formats that show GC
    /// time, which looking up the frame's strings each time slowed by several percent.
    gc: Vec<bool>,
    stacks: StackTable,
}

impl Symbols {
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// Tables taken verbatim (e.g. from a capture file); ids are the table positions.
    #[must_use]
    pub fn from_tables(strings: Vec<String>, frames: Vec<FrameInfo>) -> Self {
        let mut symbols = Symbols {
            strings: Interner::from_list(strings),
            frames: Interner::from_list(frames),
            gc: Vec::new(),
            stacks: StackTable::new(),
        };
        symbols.gc = (symbols.frames.list().iter())
            .map(|f| symbols.frame_is_gc(f))
            .collect();
        symbols
    }

    pub fn intern_str(&mut self, s: &str) -> StrId {
        self.strings.id(s) as StrId
    }

    pub fn intern_frame(&mut self, frame: FrameInfo) -> FrameId {
        let id = self.frames.id(&frame);
        if id == self.gc.len() {
            self.gc.push(self.frame_is_gc(&frame));
        }
        id as FrameId
    }

    /// The id of a stack given innermost frame first, as [`Sample::stack`] holds it.
    pub fn intern_stack(&mut self, frames: &[FrameId]) -> StackId {
        self.stacks.intern(frames)
    }

    /// [`Symbols::intern_stack`], given the frames' [`StackTable::hash`].
    pub fn intern_stack_hashed(&mut self, frames: &[FrameId], hash: u64) -> StackId {
        self.stacks.intern_hashed(frames, hash)
    }

    /// A hint, some stacks ahead of interning the stack of this [`StackTable::hash`]: see
    /// [`StackTable::prefetch`].
    pub fn prefetch_stack(&mut self, hash: u64) {
        self.stacks.prefetch(hash);
    }

    /// Interning is over, for now: see [`StackTable::freeze`].
    pub fn freeze_stacks(&mut self) {
        self.stacks.freeze();
    }

    /// Every interned stack: a sample's frames are `stacks().frames(sample.stack)`.
    #[must_use]
    pub fn stacks(&self) -> &StackTable {
        &self.stacks
    }

    #[must_use]
    pub fn str(&self, id: StrId) -> &str {
        self.strings.get(id as usize)
    }

    /// The first id of this string's text: a table may hold one text at several ids.
    #[must_use]
    pub fn first_str_id(&self, id: StrId) -> StrId {
        let first = self.strings.find(self.str(id));
        first.map_or(id, |first| first as StrId)
    }

    #[must_use]
    pub fn frame(&self, id: FrameId) -> &FrameInfo {
        self.frames.get(id as usize)
    }

    #[must_use]
    pub fn strings(&self) -> &[String] {
        self.strings.list()
    }

    #[must_use]
    pub fn frames(&self) -> &[FrameInfo] {
        self.frames.list()
    }

    /// True for the synthetic `<GC>` frame the sampler puts innermost while the collector runs.
    #[must_use]
    pub fn is_gc(&self, id: FrameId) -> bool {
        self.gc[id as usize]
    }

    fn frame_is_gc(&self, frame: &FrameInfo) -> bool {
        self.is_synthetic(frame) && self.str(frame.funcname) == "<GC>"
    }

    /// True for Tachyon's synthetic frames (`<GC>`, `<native>`): filename `~`, no line.
    #[must_use]
    pub fn is_synthetic(&self, frame: &FrameInfo) -> bool {
        crate::aggregate::is_synthetic(self.str(frame.filename), frame.lineno)
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

    #[must_use]
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
    #[must_use]
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

    /// The mode a [`Mode::name`] names.
    #[must_use]
    pub fn parse(name: &str) -> Option<Mode> {
        (0..5)
            .filter_map(Mode::from_code)
            .find(|m| m.name() == name)
    }

    #[must_use]
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
    /// `frames` interned in the [`Symbols`] the sample comes with: collectors count stacks by
    /// this id instead of hashing frames (the empty stack is [`StackTable::EMPTY`]).
    pub stack: StackId,
}

impl Sample<'_> {
    #[must_use]
    pub fn weight(&self) -> u64 {
        self.timestamps_us.len() as u64
    }
}

/// Values numbered in first-seen order: the one interner behind string tables, frame keys
/// and output tables. A value is looked up by reference, so a known one allocates nothing,
/// and is kept once (the index holds positions in the list, not copies). Values may come
/// from an untrusted capture: they are hashed with the standard library's keyed hash.
#[derive(Debug, Clone)]
pub struct Interner<T> {
    list: Vec<T>,
    index: Slots,
    hasher: RandomState,
}

impl<T> Default for Interner<T> {
    fn default() -> Self {
        Interner {
            list: Vec::new(),
            index: Slots::default(),
            hasher: RandomState::new(),
        }
    }
}

impl<T: Eq + Hash> Interner<T> {
    /// A list taken as it is (ids are positions); a repeated value keeps its first id.
    #[must_use]
    pub fn from_list(list: Vec<T>) -> Self {
        let mut interner = Interner {
            list,
            ..Interner::default()
        };
        for i in 0..interner.list.len() {
            let value = &interner.list[i];
            let hash = interner.hasher.hash_one(value);
            if interner
                .index
                .find(hash, |j| interner.list[j] == *value)
                .is_none()
            {
                interner.index.insert(hash, i);
            }
        }
        interner
    }

    pub fn id<Q>(&mut self, value: &Q) -> usize
    where
        T: Borrow<Q>,
        Q: Hash + Eq + ToOwned<Owned = T> + ?Sized,
    {
        let hash = self.hasher.hash_one(value);
        if let Some(i) = self.index.find(hash, |i| self.list[i].borrow() == value) {
            return i;
        }
        self.list.push(value.to_owned());
        self.index.insert(hash, self.list.len() - 1);
        self.list.len() - 1
    }

    /// The id of a value already numbered.
    pub fn find<Q>(&self, value: &Q) -> Option<usize>
    where
        T: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let hash = self.hasher.hash_one(value);
        self.index.find(hash, |i| self.list[i].borrow() == value)
    }

    #[must_use]
    pub fn get(&self, id: usize) -> &T {
        &self.list[id]
    }

    #[must_use]
    pub fn list(&self) -> &[T] {
        &self.list
    }

    #[must_use]
    pub fn len(&self) -> usize {
        self.list.len()
    }

    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.list.is_empty()
    }
}

impl Interner<String> {
    /// The string numbered `id` ("" if there is none).
    pub fn text(&self, id: usize) -> &str {
        self.list.get(id).map_or("", String::as_str)
    }
}
