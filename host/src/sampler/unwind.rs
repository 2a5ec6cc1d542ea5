//! One sample: walk the target's threads and frames, turning them into interned frames.
//! Every read goes through the read set (readset.rs), so a steady-state sample is one
//! syscall; code objects are cached by address and their identity re-checked every sample
//! only while the interpreter does not count the code objects it frees (3.14+) or makes
//! (3.12 with its symbols, 3.13), or after that count moved.

use std::collections::hash_map::Entry;
use std::collections::BTreeMap;
use std::fs::File;

use tachyon_plugin_api::{FrameId, FrameInfo, FxHashMap, Symbols, ThreadStatus};

use super::discover::{GilSource, Target};
use super::layout::Layout;
use super::memory::{LiveMemory, Memory};
use super::objects::{code_identity, i32_at, read_code, u64_at, Code};
use super::process::{field_addr, stat_state, ReadError};
use super::schedule::{SleepWatch, ThreadSchedule};

const MAX_FRAMES: usize = 4096;
/// Reads of a sample whose reads tear (see `Unwinder::sample`).
const READS_A_SAMPLE: usize = 5;
const MAX_THREADS: usize = 4096;
const MAX_INTERPRETERS: usize = 256;
/// Code objects remembered; past this the cache starts again (a program that keeps making
/// code, `exec` in a loop, would otherwise grow it without end).
const MAX_CODES: usize = 1 << 16;
/// Largest data-stack span copied in one read.
const MAX_STACK_COPY: u64 = 1 << 20;
/// Where a data-stack chunk (`_PyStackChunk`, 3.11+) holds its size in bytes, after the
/// pointer to the previous chunk.
const CHUNK_SIZE_OFFSET: u64 = 8;
/// Data-stack copies are rounded up to this, so a slightly deeper stack next sample is still
/// inside the prefetched span.
const STACK_COPY_ROUNDING: u64 = 1024;
/// Samples a deep data-stack span is still copied after the stack last reached it.
const COPY_SPAN_SAMPLES: u32 = 1000;
/// Owners at or above this are C/interpreter shim frames (3.12+).
const FIRST_NON_PYTHON_OWNER: u8 = 3;
/// 3.11+: the owner of a generator's or coroutine's frame (`FRAME_OWNED_BY_GENERATOR`).
const FRAME_OWNED_BY_GENERATOR: u8 = 1;
/// Reads of a generator that yielded mid-sample, waiting for it to be resumed.
const GENERATOR_REREADS: usize = 4;
/// `co_flags` of a generator's, a coroutine's or an async generator's code (`CO_GENERATOR`,
/// `CO_COROUTINE`, `CO_ITERABLE_COROUTINE`, `CO_ASYNC_GENERATOR`).
const CO_GENERATOR_FLAGS: u32 = 0x20 | 0x80 | 0x100 | 0x200;

/// The highest owner a frame of this version has (3.11+): beside the thread's own, 3.11's
/// frames belong to a generator or a frame object, 3.12, 3.13 and 3.15 add one shim kind
/// (the C stack's, or the interpreter's), 3.14 has both.
fn last_frame_owner(python: (u8, u8)) -> u8 {
    match python {
        (3, 11) => 2,
        (3, 14) => 4,
        _ => 3,
    }
}

/// glibc x86_64 keeps a thread's kernel tid at this offset of `struct pthread`.
const GLIBC_PTHREAD_TID_OFFSET: usize = 0x2d0;

#[derive(Clone, Copy, Debug, Default)]
pub struct UnwindOptions {
    pub all_threads: bool,
    /// Insert `<native>` where Python was called from C (3.11+).
    pub native: bool,
    /// Insert `<GC>` while the garbage collector runs.
    pub gc: bool,
    pub opcodes: bool,
    /// Read each thread's scheduler state (ON_CPU); otherwise status carries UNKNOWN.
    pub cpu_state: bool,
    /// Look at the handled-exception slot too (HAS_EXCEPTION for `except` blocks).
    pub exception_state: bool,
    /// `--async-aware` (3.14+): one stack per leaf asyncio task instead of per thread.
    pub asyncio: Option<super::asyncio::AsyncMode>,
}

pub struct ThreadSample {
    pub thread_id: u64,
    pub interpreter_id: u32,
    pub status: u8,
    /// Innermost first.
    pub frames: Vec<FrameId>,
    /// With `--async-aware`: the leaf task this stack ends in.
    pub task: Option<u64>,
}

struct CodeEntry {
    code: Code,
    filename: u32,
    name: u32,
    frames: FxHashMap<(i64, u8), FrameId>,
    /// The code epoch its identity was last read in.
    checked_in: u64,
}

/// What the threads of one interpreter are sampled with.
struct InterpreterContext {
    id: u32,
    main: Option<u64>,
    gil_holder: u64,
    gc_running: bool,
}

struct CopySpan {
    bytes: u64,
    /// Samples since the stack last needed all of it.
    idle: u32,
    /// The chunk's size, from its header.
    chunk_bytes: u64,
}

#[derive(Clone, Copy)]
pub(super) enum RawFrame {
    /// A Python frame: its code object, instruction pointer and own address.
    Python {
        code: u64,
        instr: u64,
        frame: u64,
    },
    Native,
}

/// Samples one target: its immutable description, and what sampling it keeps between samples.
pub struct Unwinder {
    pub target: Target,
    state: UnwindState,
    idle: IdleCheck,
}

/// Without `-a` or `--async-aware` a sample is the main thread alone, and a main thread that
/// has not run since the last sample's reads began has the stack and status that sample found
/// (but off CPU): the sample is that one again, read from nothing. A program waiting for I/O
/// or a timer is such a thread most of the time, and its samples then cost a read of its
/// schedule (schedule.rs) instead of the target's memory read and unwinding.
enum IdleCheck {
    /// Set up at the first sample of the main thread.
    Untried,
    /// Sampling another set of threads, a recorded snapshot, a main thread that is not the
    /// process's first (an embedding program's), or a kernel that does not tell.
    Off,
    On(ThreadSchedule, SleepWatch),
}

impl Unwinder {
    pub fn new(target: Target, opts: UnwindOptions) -> Self {
        let memory = LiveMemory::new(target.process.clone());
        let mut unwinder = Unwinder::with_memory(target, opts, Box::new(memory));
        unwinder.idle = IdleCheck::Untried;
        unwinder
    }

    /// An unwinder reading `memory` instead of the live process (a recorded snapshot).
    pub fn with_memory(target: Target, opts: UnwindOptions, memory: Box<dyn Memory>) -> Self {
        let state = UnwindState {
            opts,
            mem: memory,
            codes: FxHashMap::default(),
            code_starts: BTreeMap::new(),
            code_cache_limit: MAX_CODES,
            code_generations: Vec::new(),
            code_epoch: 0,
            interpreters: Vec::new(),
            generations_read: Vec::new(),
            unique_codes: Vec::new(),
            code_headers: Vec::new(),
            main_tstates: FxHashMap::default(),
            pthread_tids: FxHashMap::default(),
            thread_count: 0,
            stat_files: FxHashMap::default(),
            namespace_pid: None,
            namespace_tids: FxHashMap::default(),
            tstate_buf: vec![0u8; target.layout.tstate_read_size()],
            frame_buf: vec![0u8; target.layout.frame_read_size()],
            stack_copy: Vec::new(),
            copy_spans: FxHashMap::default(),
            raw: Vec::new(),
            spare_frames: Vec::new(),
            thread_frames: Vec::new(),
            asyncio_state: super::asyncio::AsyncioState::default(),
        };
        Unwinder {
            target,
            state,
            idle: IdleCheck::Off,
        }
    }

    /// Sample the selected threads into `out` (cleared first; left as it is, the last sample,
    /// when the main thread alone is sampled and has not run since). A read torn by the target
    /// changing its stack meanwhile (a frame pushed or popped between the copies of the
    /// thread state and of its frames) is made again at once, up to READS_A_SAMPLE reads, not
    /// lost: tears fall in calls and returns, so losing them under-counts code that calls
    /// often. A 3.15 target making small calls on the other core tore 52-56 % of reads; with
    /// a second read 25-28 % of samples were lost (since then, the top taken from the copy
    /// made it none). pydoc over the standard library at 5 kHz lost 2.7-4.3 % of its samples
    /// with two reads, 0.4-0.9 % with three and 0.01-0.11 % with five (3.11-3.15): a read
    /// that tore has a good chance of tearing again (a quarter of second reads did), and a
    /// failing sample is all that pays for the extra reads.
    pub fn sample(
        &mut self,
        symbols: &mut Symbols,
        out: &mut Vec<ThreadSample>,
    ) -> Result<(), ReadError> {
        if let IdleCheck::On(schedule, watch) = &mut self.idle {
            if watch.unchanged(|| schedule.times_run(), || schedule.asleep()) {
                // `out` still holds the last sample.
                for thread in out.iter_mut() {
                    thread.status &= !ThreadStatus::ON_CPU;
                }
                return Ok(());
            }
        }
        let mut sampled = self.state.sample(&self.target, symbols, out);
        for _ in 1..READS_A_SAMPLE {
            if !matches!(sampled, Err(ReadError::Fault)) {
                break;
            }
            sampled = self.state.sample(&self.target, symbols, out);
        }
        match &mut self.idle {
            IdleCheck::On(_, watch) => watch.sampled(sampled.is_ok()),
            IdleCheck::Untried if sampled.is_ok() && !out.is_empty() => {
                self.idle = self.idle_check(out);
            }
            _ => {}
        }
        sampled
    }

    /// The idle check for the threads of a first sample: on if they are the main thread alone
    /// and it is the process's first thread (whose id is the process id).
    fn idle_check(&mut self, sampled: &[ThreadSample]) -> IdleCheck {
        let opts = &self.state.opts;
        let main_alone = !opts.all_threads && opts.asyncio.is_none();
        let pid = self.state.namespace_pid(&self.target);
        let ours = self.target.process.pid;
        match sampled {
            [main] if main_alone && main.thread_id == pid => ThreadSchedule::open(ours, ours)
                .map_or(IdleCheck::Off, |schedule| {
                    IdleCheck::On(schedule, SleepWatch::default())
                }),
            _ => IdleCheck::Off,
        }
    }
}

/// What sampling a target keeps from one sample to the next: its reads, caches and buffers.
/// Its methods take the target's description (`&Target`) beside it.
pub(super) struct UnwindState {
    pub(super) opts: UnwindOptions,
    pub(super) mem: Box<dyn Memory>,
    codes: FxHashMap<u64, CodeEntry>,
    /// The addresses of `codes` by where their instructions start (3.11+): which code an
    /// instruction pointer is in.
    code_starts: BTreeMap<u64, u64>,
    /// Code objects `codes` holds at most ([`MAX_CODES`]; lower in tests).
    code_cache_limit: usize,
    /// Each interpreter's code counter, as last read: the count of code objects freed (3.14+)
    /// or the version the next new one takes (3.13; 3.12's is global, keyed 0). While none
    /// moves, no code object was freed or made, so none of `codes` can have been replaced by
    /// another at its address (CPython's own sampler trusts its cache on the 3.14 counter).
    code_generations: Vec<(u64, u64)>,
    /// Bumped whenever `code_generations` changes (always where there is no counter: 3.11 and
    /// before, or a 3.12 without its symbol): a code checked in an earlier epoch has its
    /// identity read again before it is used.
    code_epoch: u64,
    /// Buffers each sample fills again: the interpreters, their generations as read, the
    /// distinct codes of a stack and their identifying fields as read.
    interpreters: Vec<u64>,
    generations_read: Vec<(u64, u64)>,
    unique_codes: Vec<u64>,
    code_headers: Vec<u8>,
    /// ≤3.12 (no `threads.main`): each interpreter's main thread state, found once.
    main_tstates: FxHashMap<u64, u64>,
    pthread_tids: FxHashMap<u64, u64>,
    thread_count: usize,
    stat_files: FxHashMap<u64, File>,
    namespace_pid: Option<u64>,
    /// In another PID namespace: the target's thread ids mapped to ours.
    namespace_tids: FxHashMap<u64, u32>,
    tstate_buf: Vec<u8>,
    frame_buf: Vec<u8>,
    stack_copy: Vec<u8>,
    /// Each data-stack chunk's copy span (`copy_span`).
    copy_spans: FxHashMap<u64, CopySpan>,
    pub(super) raw: Vec<RawFrame>,
    /// Emptied stack vectors of the last sample's threads, for this sample's.
    spare_frames: Vec<Vec<FrameId>>,
    /// With `asyncio`: each sampled thread's state address and frame addresses (aligned with
    /// its frames), to cut a running task's frames at its coroutine.
    pub(super) thread_frames: Vec<super::asyncio::ThreadFrames>,
    pub(super) asyncio_state: super::asyncio::AsyncioState,
}

impl UnwindState {
    fn sample(
        &mut self,
        target: &Target,
        symbols: &mut Symbols,
        out: &mut Vec<ThreadSample>,
    ) -> Result<(), ReadError> {
        // The last sample's stacks' vectors are filled again rather than made anew; no more
        // are kept than it had (task stacks are made elsewhere, and would pile up).
        let stacks = out.len();
        self.spare_frames.extend(out.drain(..).map(|t| {
            let mut frames = t.frames;
            frames.clear();
            frames
        }));
        self.spare_frames.truncate(stacks);
        self.mem.begin()?;
        // Without `-a` only the main interpreter's main thread is sampled (CPython 3.15.2
        // samples the head's, which is the newest sub-interpreter's when there is one);
        // asyncio tasks are read from it too.
        let all = self.opts.all_threads && self.opts.asyncio.is_none();
        let interpreters = self.interpreters(target, all)?;
        let Some(&main) = interpreters.last() else {
            return Ok(());
        };
        self.thread_frames.clear();
        let mut thread_count = 0;
        let mut last_id = 0;
        for &interp in &interpreters {
            let (threads, id) = self.sample_interpreter(target, symbols, interp, out)?;
            thread_count += threads;
            last_id = id;
        }
        self.interpreters = interpreters;
        if last_id != 0 {
            // Not the main interpreter (its id is 0): found by a walk the target tore. The
            // next sample walks the list again.
            self.interpreters.clear();
        }
        if thread_count != self.thread_count {
            self.thread_count = thread_count;
            self.pthread_tids.clear();
        }
        if let Some(mode) = self.opts.asyncio {
            let threads = std::mem::take(out);
            self.task_stacks(target, symbols, main, mode, threads, out)?;
        }
        Ok(())
    }

    /// The interpreters to sample (in the last sample's vector, refilled): with `all` every
    /// one, newest first, else the main interpreter, the oldest (new ones are pushed at the
    /// list's head). 3.11+ keep the main interpreter inside `_PyRuntime`, never freed, so
    /// once found it is not looked for again while samples succeed and it has the main
    /// interpreter's id (0): the list's head is a page of its own,
    /// one of the five a 3.12-3.15 sample read (flat out on a 3.15 target at depth 5, 460 k
    /// samples in 3 s became 586 k).
    fn interpreters(&mut self, target: &Target, all: bool) -> Result<Vec<u64>, ReadError> {
        let l = &target.layout;
        let mut out = std::mem::take(&mut self.interpreters);
        let found_main = out.last().copied().filter(|_| !all && l.python >= (3, 11));
        out.clear();
        if let Some(main) = found_main {
            out.push(main);
        } else {
            let mut interp = self.mem.read_u64(target.interp_head_addr)?;
            while interp != 0 {
                if out.len() >= MAX_INTERPRETERS || out.contains(&interp) {
                    return Err(ReadError::Fault);
                }
                out.push(interp);
                interp = self.mem.read_u64(field_addr(interp, l.interp_next))?;
            }
            if !all && out.len() > 1 {
                out.drain(..out.len() - 1);
            }
        }
        let mut generations = std::mem::take(&mut self.generations_read);
        generations.clear();
        if let Some(off) = l.interp_code_generation {
            for &interp in &out {
                generations.push((interp, self.mem.read_u64(field_addr(interp, off))?));
            }
        }
        if let Some(addr) = target.code_version_addr {
            let mut version = [0u8; 4];
            self.mem.read(addr, &mut version)?;
            generations.push((0, u32::from_le_bytes(version).into()));
        }
        // A code version counter at 0 has wrapped and stopped (3.12, 3.13); 3.14's count of
        // codes freed is 0 only until the first is freed (start-up frees many).
        if generations.iter().any(|&(_, count)| count == 0) {
            generations.clear();
        }
        if generations.is_empty() || generations != self.code_generations {
            self.code_epoch += 1;
            std::mem::swap(&mut self.code_generations, &mut generations);
        }
        self.generations_read = generations;
        Ok(out)
    }

    /// Sample one interpreter's selected threads into `out`; how many threads it has (when
    /// they were listed), and its id.
    fn sample_interpreter(
        &mut self,
        target: &Target,
        symbols: &mut Symbols,
        interp: u64,
        out: &mut Vec<ThreadSample>,
    ) -> Result<(usize, u32), ReadError> {
        let l = &target.layout;
        // 3.12: the GIL state is behind a pointer (each interpreter may have its own GIL).
        let ceval_gil = match target.gil {
            GilSource::CevalPointer { gil, .. } => self.mem.read_u64(field_addr(interp, gil))?,
            _ => 0,
        };
        // Interpreter-wide state: id, thread list head, main thread, GC, GIL holder.
        let mut id = [0u8; 8];
        let mut head = [0u8; 8];
        let mut main = [0u8; 8];
        let mut gc = [0u8; 4];
        let mut locked = [0u8; 4];
        let mut holder = [0u8; 8];
        // The GIL's `locked` and `holder` in the struct at `base`.
        let in_struct = |base, locked_at, holder_at| {
            (
                Some(field_addr(base, locked_at)),
                Some(field_addr(base, holder_at)),
            )
        };
        let (gil_locked, gil_holder) = match target.gil {
            GilSource::CurrentPointer(addr) => {
                locked = [1, 0, 0, 0];
                (None, Some(addr))
            }
            // A null pointer reads as a fault.
            GilSource::CevalPointer {
                locked: locked_at,
                holder: holder_at,
                ..
            } => in_struct(ceval_gil, locked_at, holder_at),
            GilSource::Embedded {
                locked: locked_at,
                holder: holder_at,
            } => in_struct(interp, locked_at, holder_at),
        };
        let complete = {
            let wanted = [
                Some((field_addr(interp, l.interp_tstate_head), &mut head[..])),
                l.interp_id
                    .map(|off| (field_addr(interp, off), &mut id[..])),
                l.interp_threads_main
                    .map(|off| (field_addr(interp, off), &mut main[..])),
                l.interp_gc_collecting
                    .filter(|_| self.opts.gc)
                    .map(|off| (field_addr(interp, off), &mut gc[..])),
                gil_locked.map(|addr| (addr, &mut locked[..])),
                gil_holder.map(|addr| (addr, &mut holder[..])),
            ];
            // On the stack, not in a vector: no allocation a sample.
            let mut regions: [(u64, &mut [u8]); 6] = Default::default();
            let mut count = 0;
            for region in wanted.into_iter().flatten() {
                regions[count] = region;
                count += 1;
            }
            self.mem.read_many(&mut regions[..count])?
        };
        if !complete {
            return Err(ReadError::Fault);
        }
        let head = u64::from_le_bytes(head);
        let gil_holder = if i32::from_le_bytes(locked) != 0 {
            u64::from_le_bytes(holder)
        } else {
            0
        };
        let listed = self.opts.all_threads || self.opts.asyncio.is_some();
        // 3.13+ name the main thread only while the interpreter runs its program: not while
        // it starts, nor while it finalizes (joining non-daemon threads in
        // `threading._shutdown`, atexit handlers). Then it is found as before 3.13.
        let named_main = l
            .interp_threads_main
            .map(|_| u64::from_le_bytes(main))
            .filter(|&m| m != 0);
        let cached_main = self.main_tstates.get(&interp).copied();
        let threads = if listed || (named_main.is_none() && cached_main.is_none()) {
            self.thread_list(target, head)?
        } else {
            Vec::new()
        };
        let main = if named_main.is_some() {
            named_main
        } else {
            // Found once, and again if it left the list (an interpreter gone, another at
            // its address).
            match cached_main.filter(|m| !listed || threads.contains(m)) {
                Some(m) => Some(m),
                None => {
                    let found = self.find_main(target, &threads)?;
                    if self.main_tstates.len() >= MAX_INTERPRETERS {
                        self.main_tstates.clear();
                    }
                    if let Some(m) = found {
                        self.main_tstates.insert(interp, m);
                    }
                    found
                }
            }
        };
        let context = InterpreterContext {
            id: u32::try_from(u64::from_le_bytes(id)).unwrap_or(u32::MAX),
            main,
            gil_holder,
            gc_running: i32::from_le_bytes(gc) != 0,
        };
        let thread_count = threads.len();
        let selected = if listed {
            &threads[..]
        } else {
            main.as_slice()
        };
        for &tstate in selected {
            if let Some(thread) = self.sample_thread(target, symbols, tstate, &context)? {
                out.push(thread);
            }
        }
        Ok((thread_count, context.id))
    }

    fn thread_list(&mut self, target: &Target, mut tstate: u64) -> Result<Vec<u64>, ReadError> {
        let next = target.layout.tstate_next;
        let mut out = Vec::new();
        // A torn list can loop: found in linear time (a search of the list so far for each
        // thread was a million comparisons a sample with a thousand threads).
        let mut cycle = CycleGuard::new(tstate);
        while tstate != 0 {
            if out.len() >= MAX_THREADS {
                return Err(ReadError::Fault);
            }
            out.push(tstate);
            tstate = self.mem.read_u64(field_addr(tstate, next))?;
            if cycle.looped(tstate) {
                return Err(ReadError::Fault);
            }
        }
        Ok(out)
    }

    /// The main thread: the oldest thread state (new ones are pushed at the list's head) whose
    /// native id is the process id (3.11+), else the oldest. Not the first so named: ≤3.11
    /// give a thread the main thread starts the main thread's native id until the new thread
    /// runs, and a main thread looked for in that window was the new one for the rest of the
    /// run.
    fn find_main(&mut self, target: &Target, threads: &[u64]) -> Result<Option<u64>, ReadError> {
        if let Some(off) = target.layout.tstate_native_thread_id {
            for &t in threads.iter().rev() {
                if self.mem.read_u64(field_addr(t, off))? == self.namespace_pid(target) {
                    return Ok(Some(t));
                }
            }
        }
        Ok(threads.last().copied())
    }

    fn sample_thread(
        &mut self,
        target: &Target,
        symbols: &mut Symbols,
        tstate: u64,
        context: &InterpreterContext,
    ) -> Result<Option<ThreadSample>, ReadError> {
        let mut ts = std::mem::take(&mut self.tstate_buf);
        let result = self
            .mem
            .read(tstate, &mut ts)
            .and_then(|()| self.thread_from_state(target, symbols, tstate, &ts, context));
        self.tstate_buf = ts;
        result
    }

    fn thread_from_state(
        &mut self,
        target: &Target,
        symbols: &mut Symbols,
        tstate: u64,
        ts: &[u8],
        context: &InterpreterContext,
    ) -> Result<Option<ThreadSample>, ReadError> {
        let l = &target.layout;
        let field = |off: Option<usize>| off.map_or(0, |o| u64_at(ts, o));
        let mut frame = u64_at(ts, l.tstate_frame);
        if let Some(off) = l.cframe_current_frame {
            // 3.11/3.12: the thread state points at a C-stack cframe holding the top frame.
            frame = if frame == 0 {
                0
            } else {
                self.mem.read_u64(field_addr(frame, off))?
            };
        }
        let thread_id = match l.tstate_native_thread_id {
            Some(off) => u64_at(ts, off),
            None => self.os_tid(u64_at(ts, l.tstate_thread_id)),
        };
        let mut status = 0u8;
        if tstate == context.gil_holder {
            status |= ThreadStatus::HAS_GIL;
        } else if l.tstate_gil_requested.is_some_and(|o| i32_at(ts, o) != 0) {
            // 3.15 flags a thread waiting for the GIL, as CPython's sampler reports it.
            status |= ThreadStatus::GIL_REQUESTED;
        }
        if Some(tstate) == context.main {
            status |= ThreadStatus::MAIN_THREAD;
        }
        if self.has_exception(target, ts)? {
            status |= ThreadStatus::HAS_EXCEPTION;
        }
        status |= if self.opts.cpu_state {
            self.cpu_state(target, thread_id)
        } else {
            ThreadStatus::UNKNOWN
        };
        let chunk = field(l.tstate_datastack_chunk);

        self.raw.clear();
        let walked = if l.object_frames() {
            self.walk_object_frames(target, frame)
        } else {
            self.walk_interpreter_frames(target, frame, chunk)
        };
        // A walk that followed a generator past a yield read afresh from there on.
        self.mem.set_fresh(false);
        walked?;
        let mut frames = self.spare_frames.pop().unwrap_or_default();
        frames.reserve(self.raw.len() + 1);
        // Above the Python code that set the collection off, as CPython 3.15.2 places it: a
        // thread with no Python frame (the interpreter's last collections as it finalizes) is
        // not a `<GC>` stack of its own beside the program's.
        if context.gc_running && status & ThreadStatus::HAS_GIL != 0 && !self.raw.is_empty() {
            frames.push(synthetic(symbols, "<GC>"));
        }
        let gc_frames = frames.len();
        self.resolve(target, symbols, &mut frames)?;
        if self.opts.asyncio.is_some() {
            self.thread_frames.push(super::asyncio::ThreadFrames {
                tstate,
                thread_id,
                addrs: std::iter::repeat_n(0, gc_frames)
                    .chain(self.raw.iter().map(|f| match f {
                        RawFrame::Python { frame, .. } => *frame,
                        RawFrame::Native => 0,
                    }))
                    .collect(),
            });
        }
        if thread_id == 0 && frames.is_empty() {
            // A thread state still being set up (native id not yet written, no Python frame;
            // 3.14+ already point at the base frame): not a thread yet.
            return Ok(None);
        }
        Ok(Some(ThreadSample {
            thread_id,
            interpreter_id: context.id,
            status,
            frames,
            task: None,
        }))
    }

    /// ≤3.10: heap frame objects linked by `f_back`.
    fn walk_object_frames(&mut self, target: &Target, mut frame: u64) -> Result<(), ReadError> {
        let l = &target.layout;
        let (code_off, back_off, lasti_off) = (l.frame_code, l.frame_previous, l.frame_instr);
        let mut cycle = CycleGuard::new(frame);
        let mut bottom = None;
        let mut resumed = false;
        while frame != 0 || self.resumed_caller(target, bottom, &mut resumed, &mut frame)? {
            if self.raw.len() >= MAX_FRAMES {
                return Err(ReadError::Fault);
            }
            self.mem.read(frame, &mut self.frame_buf)?;
            let code = u64_at(&self.frame_buf, code_off);
            let lasti = i32_at(&self.frame_buf, lasti_off);
            if code != 0 {
                self.raw.push(RawFrame::Python {
                    code,
                    instr: i64::from(lasti) as u64,
                    frame,
                });
            }
            bottom = (code != 0).then_some((frame, code, 0));
            frame = u64_at(&self.frame_buf, back_off);
            if cycle.looped(frame) {
                return Err(ReadError::Fault);
            }
        }
        Ok(())
    }

    /// 3.11+: `_PyInterpreterFrame`s, mostly inside the thread's current data-stack chunk,
    /// which is copied once; frames elsewhere (generators, C-stack entry frames, older chunks)
    /// are read one by one.
    fn walk_interpreter_frames(
        &mut self,
        target: &Target,
        mut frame: u64,
        chunk: u64,
    ) -> Result<(), ReadError> {
        let l = &target.layout;
        let size = self.frame_buf.len() as u64;
        self.stack_copy.clear();
        // Bytes from the chunk's start to the end of the top frame; `None` for torn pointers
        // or a top frame below the chunk.
        let used = frame
            .checked_sub(chunk)
            .and_then(|d| d.checked_add(size))
            .filter(|_| chunk != 0);
        if let Some(used) = used {
            if let Some(span) = self.copy_span(chunk, used)? {
                self.stack_copy.resize(span as usize, 0);
                self.mem.read(chunk, &mut self.stack_copy)?;
            }
        }
        frame = self.top_when_copied(l, frame, chunk);
        let mut emitted = 0usize;
        let mut visited = 0usize;
        let mut bottom = None;
        let mut resumed = false;
        let mut cycle = CycleGuard::new(frame);
        let copied_len = self.stack_copy.len() as u64;
        let in_copy = |f: u64| f >= chunk && f - chunk < copied_len;
        while frame != 0 || self.resumed_caller(target, bottom, &mut resumed, &mut frame)? {
            visited += 1;
            if visited > MAX_FRAMES {
                return Err(ReadError::Fault);
            }
            let buf: &[u8] = if let Some(bytes) = copied_frame(&self.stack_copy, chunk, frame, size)
            {
                bytes
            } else {
                self.mem.read(frame, &mut self.frame_buf)?;
                &self.frame_buf
            };
            let code = u64_at(buf, l.frame_code) & !7;
            let previous = u64_at(buf, l.frame_previous);
            let instr = u64_at(buf, l.frame_instr);
            let owner = l.frame_owner.map_or(0, |o| buf[o]);
            let is_entry = l.frame_is_entry.is_some_and(|o| buf[o] != 0);
            if owner > last_frame_owner(l.python) {
                // No frame of this version has that owner: the memory of a frame popped
                // after the thread state was read, reused by its caller's value stack. Taken
                // for a shim, its `previous` would be followed into garbage, or to a real
                // frame that would take the sample without its innermost calls.
                return Err(ReadError::Fault);
            }
            if l.python >= (3, 12) && owner >= FIRST_NON_PYTHON_OWNER {
                // A C-stack/interpreter shim: the boundary where C called into Python.
                if self.opts.native && emitted > 0 && previous != 0 {
                    self.raw.push(RawFrame::Native);
                }
            } else {
                let code = if code == 0 {
                    // A Python frame without code: one popped (3.14+ clear its executable; a
                    // generator's is cleared when it finishes) after the thread state was
                    // read, when it was on the thread's stack. Its instruction pointer, left
                    // as it was, still points into the code it ran: a code already seen
                    // names the frame. Otherwise the sample fails. Reported at its callers
                    // instead (as CPython 3.15.2 does), or failed always, a call of a few
                    // nanoseconds lost half its samples: such frames are mostly gone by the
                    // time the stack is copied (bench/accuracy_bench.py, "calls").
                    self.code_at(instr).ok_or(ReadError::Fault)?
                } else {
                    code
                };
                self.raw.push(RawFrame::Python { code, instr, frame });
                emitted += 1;
                if is_entry && self.opts.native && previous != 0 {
                    self.raw.push(RawFrame::Native);
                }
            }
            // In one chunk, a frame's caller sits below it: a caller above it (or itself) is a
            // torn read of frames that changed while the chunk was copied.
            if in_copy(frame) && in_copy(previous) && previous >= frame || cycle.looped(previous) {
                return Err(ReadError::Fault);
            }
            bottom = Some((frame, code, owner));
            frame = previous;
        }
        Ok(())
    }

    /// 3.13+: the top of the stack as copied, from `frame`, the top the thread state named.
    /// The stack is copied a microsecond or so after the thread state is read, and a program
    /// making calls every few tens of nanoseconds has often returned or called again
    /// meanwhile (two thirds of the samples of `bench/accuracy_bench.py`'s `calls`). The top
    /// of one and the frames of the other make stacks the program never had: a caller at the
    /// line after its call with the callee still above it (9-10 % of those samples), or a
    /// sibling call pushed where the popped one was. The sample takes the copy's stack
    /// instead: down past frames popped meanwhile, then up through calls made meanwhile: a
    /// direct call's frame sits `co_framesize` words above its caller's and links back to it.
    /// A frame still at its first instruction is left out: a caller fills a new frame in
    /// before it makes it the current frame.
    fn top_when_copied(&self, l: &Layout, mut frame: u64, chunk: u64) -> u64 {
        let (Some(framesize_at), Some(flags_at), Some(nlocals_at)) =
            (l.code_framesize(), l.code_flags(), l.code_nlocalsplus())
        else {
            return frame;
        };
        let size = self.frame_buf.len() as u64;
        let copied = |f: u64| copied_frame(&self.stack_copy, chunk, f, size);
        let code_of = |f: &[u8]| self.codes.get(&(u64_at(f, l.frame_code) & !7));
        let header_int = |code: &CodeEntry, at: usize| i32_at(&code.code.header, at);
        let thread_owned = |f: &[u8]| l.frame_owner.is_none_or(|o| f[o] == 0);
        // 3.13: a frame's stack depth (counted from its locals): -1 while it runs, saved when
        // it calls, zeroed when it is popped.
        let depth = |f: &[u8]| l.frame_stacktop().map(|at| i32_at(f, at));
        // 3.14+ clear a popped frame's function, then its code (both tagged references: a
        // cleared one may keep a tag bit). 3.13 zero its stack depth, which a frame with no
        // locals also has while it calls with nothing on its stack: not known to be popped.
        let popped = |f: &[u8]| {
            thread_owned(f)
                && match l.frame_funcobj() {
                    Some(funcobj) => {
                        u64_at(f, l.frame_code) & !7 == 0 || u64_at(f, funcobj) & !7 == 0
                    }
                    None => {
                        depth(f) == Some(0)
                            && code_of(f).is_some_and(|c| header_int(c, nlocals_at) > 0)
                    }
                }
        };
        // 3.13: a frame whose stack depth is zero: popped, or (with no locals) calling.
        let may_be_popped = |f: &[u8]| thread_owned(f) && depth(f) == Some(0);
        let top = frame;
        // Below a popped frame, such a frame is not calling: it was popped too (or has just
        // seen its callee return, for a few instructions).
        let mut below_popped = false;
        while let Some(f) = copied(frame).filter(|f| popped(f) || below_popped && may_be_popped(f))
        {
            let previous = u64_at(f, l.frame_previous);
            if previous >= frame {
                // Torn: the walk fails it.
                return top;
            }
            frame = previous;
            below_popped = true;
        }
        // Whether a frame may have called: not one running (3.13). Above a running frame sits
        // what it last called, and a frame left by an exception is not cleared as one that
        // returned is (3.13): taken for a call made since the thread state was read, it was
        // the top for as long as its caller ran on without a call (90 % of the samples of
        // tests/scripts/caught_exception.py).
        let may_call = |f: &[u8]| depth(f) != Some(-1);
        // The frame a direct call of `frame`'s made, if the copy has one; and whether it may
        // be one popped (3.13).
        let callee_of = |frame: u64| {
            let caller = copied(frame).filter(|f| may_call(f))?;
            let words = header_int(code_of(caller)?, framesize_at);
            let callee = frame + 8 * u64::try_from(words).ok()?;
            let f = copied(callee).filter(|_| callee > frame)?;
            let code = code_of(f)?;
            // A generator's frame made by its call is moved into the generator, and the
            // stack's copy is left as it was.
            let generator = header_int(code, flags_at) as u32 & CO_GENERATOR_FLAGS != 0;
            let started =
                (code.code.code_start + 1..code.code.code_end).contains(&u64_at(f, l.frame_instr));
            (!generator && started && !popped(f) && u64_at(f, l.frame_previous) == frame)
                .then_some((callee, may_be_popped(f)))
        };
        while let Some((callee, ambiguous)) = callee_of(frame) {
            // One that may be popped is calling when it has a callee of its own.
            if ambiguous && callee_of(callee).is_none_or(|(_, again)| again) {
                break;
            }
            frame = callee;
        }
        frame
    }

    /// The walk ended at `bottom`, `(frame, code, owner)`. A thread's outermost frame is never
    /// a generator's: one there yielded after the thread state was read, which cleared its
    /// link to its caller (the sample would be the generator alone: a fifth of the samples of
    /// a loop over a small generator). Its caller was the frame that resumes it, and a loop
    /// over a generator resumes it within nanoseconds: its link, read afresh a few times, is
    /// set again while it runs, and the walk goes on there (with fresh reads from then on;
    /// `frame` set), once, if the frame still runs the same code. Otherwise the sample fails:
    /// failing them all left such a generator a third short of its samples.
    fn resumed_caller(
        &mut self,
        target: &Target,
        bottom: Option<(u64, u64, u8)>,
        resumed: &mut bool,
        frame: &mut u64,
    ) -> Result<bool, ReadError> {
        let Some((generator, code, owner)) = bottom else {
            return Ok(false);
        };
        if !self.is_generator(target, code, owner)? {
            return Ok(false);
        }
        if std::mem::replace(resumed, true) {
            return Err(ReadError::Fault);
        }
        let l = &target.layout;
        let code_mask = if l.object_frames() { !0 } else { !7 };
        self.mem.set_fresh(true);
        for _ in 0..GENERATOR_REREADS {
            self.mem.read(generator, &mut self.frame_buf)?;
            let same = u64_at(&self.frame_buf, l.frame_code) & code_mask == code
                && l.frame_owner
                    .is_none_or(|o| self.frame_buf[o] == FRAME_OWNED_BY_GENERATOR);
            if !same {
                // Finished, or its memory now holds something else.
                return Err(ReadError::Fault);
            }
            *frame = u64_at(&self.frame_buf, l.frame_previous);
            if *frame != 0 {
                return Ok(true);
            }
        }
        Err(ReadError::Fault)
    }

    /// Whether a frame of `code` and `owner` is a generator's or a coroutine's: by its owner
    /// on 3.11+, by its code's `co_flags` before (read with the code's header, which the
    /// prefetch holds).
    fn is_generator(&mut self, target: &Target, code: u64, owner: u8) -> Result<bool, ReadError> {
        let l = &target.layout;
        let Some(off) = l.code_flags().filter(|_| l.object_frames()) else {
            return Ok(owner == FRAME_OWNED_BY_GENERATOR);
        };
        let mut flags = [0u8; 4];
        self.mem.read(field_addr(code, off), &mut flags)?;
        Ok(u32::from_le_bytes(flags) & CO_GENERATOR_FLAGS != 0)
    }

    /// The cached code whose instructions hold `instr`.
    fn code_at(&self, instr: u64) -> Option<u64> {
        let (_, &code) = self.code_starts.range(..=instr).next_back()?;
        let entry = self.codes.get(&code)?;
        (instr < entry.code.code_end).then_some(code)
    }

    /// How much of `chunk` to copy when its frames end `used` bytes in: the deepest span of
    /// the last `COPY_SPAN_SAMPLES` samples, so that a stack that deepens between samples is
    /// still inside what the sample's prefetch read in the same syscall as the thread state.
    /// A copy read later, by a second syscall, finds the frames microseconds newer than the
    /// thread state that points at them (on a stack that changes every few microseconds, 18 %
    /// of samples failed that way instead of 1 %). None when the top frame is past the
    /// chunk's end, which its header says (read once: a chunk made again at the same address
    /// almost always has the same size, 16 KiB): it is not in the chunk but a generator's, in
    /// the heap, anywhere above. Its callers in the chunk are then read one by one, as before
    /// when it was over 1 MiB up; copying up to it, pydoc on 3.12 had one 130 pages up in one
    /// run of five, which made each sample slow enough to tear (4-5 % of the run's samples
    /// lost, against 0.5 %), and copying the whole chunk instead lost 0.2 points more of
    /// every run (a 3.12 pydoc run has 3-4 % of its samples so).
    fn copy_span(&mut self, chunk: u64, used: u64) -> Result<Option<u64>, ReadError> {
        if self.copy_spans.len() >= MAX_THREADS {
            self.copy_spans.clear();
        }
        let span = match self.copy_spans.entry(chunk) {
            Entry::Occupied(e) => e.into_mut(),
            Entry::Vacant(v) => {
                let chunk_bytes = self.mem.read_u64(chunk + CHUNK_SIZE_OFFSET)?;
                v.insert(CopySpan {
                    bytes: 0,
                    idle: 0,
                    chunk_bytes: chunk_bytes.min(MAX_STACK_COPY),
                })
            }
        };
        if used > span.chunk_bytes {
            return Ok(None);
        }
        let needed = used.div_ceil(STACK_COPY_ROUNDING) * STACK_COPY_ROUNDING;
        span.idle += 1;
        if needed >= span.bytes || span.idle > COPY_SPAN_SAMPLES {
            span.bytes = needed;
            span.idle = 0;
        }
        Ok(Some(span.bytes.min(span.chunk_bytes)))
    }

    /// Turn raw frames into interned frame ids. A cached code object not checked in this epoch
    /// has its identifying fields read; if they changed (the address now holds another
    /// object), it is read again whole.
    pub(super) fn resolve(
        &mut self,
        target: &Target,
        symbols: &mut Symbols,
        out: &mut Vec<FrameId>,
    ) -> Result<(), ReadError> {
        let l = &target.layout;
        // Read: the new codes, and those not yet checked in this epoch (on 3.12+, while no
        // code object was made or freed, none).
        let mut unique = std::mem::take(&mut self.unique_codes);
        let (codes, epoch) = (&self.codes, self.code_epoch);
        distinct_codes(&self.raw, &mut unique, |code| {
            codes.get(&code).is_none_or(|e| e.checked_in != epoch)
        });
        // Before, not while, resolving: every code of this sample must stay in the cache.
        let new_codes = unique
            .iter()
            .filter(|&code| !self.codes.contains_key(code))
            .count();
        if self.codes.len() + new_codes > self.code_cache_limit {
            self.codes.clear();
            self.code_starts.clear();
            distinct_codes(&self.raw, &mut unique, |_| true);
        }
        let size = l.code_read_size();
        let mut headers = std::mem::take(&mut self.code_headers);
        headers.clear();
        headers.resize(size * unique.len(), 0);
        let complete = {
            let mut regions: Vec<(u64, &mut [u8])> = unique
                .iter()
                .copied()
                .zip(headers.chunks_mut(size))
                .collect();
            self.mem.read_many(&mut regions)?
        };
        for (&addr, header) in unique.iter().zip(headers.chunks(size)) {
            if let Some(entry) = self.codes.get_mut(&addr) {
                if complete && code_identity(l, header) == code_identity(l, &entry.code.header) {
                    entry.checked_in = self.code_epoch;
                    continue;
                }
            }
            // New, or freed and its address reused by another code object (or unreadable now).
            let code = read_code(&mut *self.mem, l, addr)?;
            let filename = symbols.intern_str(&code.filename);
            let name = symbols.intern_str(&code.name);
            if code.code_start != 0 {
                self.code_starts.insert(code.code_start, addr);
            }
            self.codes.insert(
                addr,
                CodeEntry {
                    code,
                    filename,
                    name,
                    frames: FxHashMap::default(),
                    checked_in: self.code_epoch,
                },
            );
        }
        self.unique_codes = unique;
        self.code_headers = headers;
        let opcodes = if self.opts.opcodes && !l.object_frames() {
            self.read_opcodes()?
        } else {
            Vec::new()
        };
        let mut python_index = 0;
        for f in &self.raw {
            match *f {
                RawFrame::Native => out.push(synthetic(symbols, "<native>")),
                RawFrame::Python { code, instr, .. } => {
                    let opcode = opcodes.get(python_index).copied().flatten();
                    python_index += 1;
                    let entry = self.codes.get_mut(&code).expect("resolved above");
                    let (start, end) = (entry.code.code_start, entry.code.code_end);
                    let addrq = if end != 0 && !(start..end).contains(&instr) {
                        // Not an instruction of its code: a frame being pushed, its
                        // instruction pointer still that of the frame there before it, or a
                        // 3.11 frame before its first instruction. It is at its first line.
                        -1
                    } else {
                        instruction_offset(l.python, instr, start)
                    };
                    let key = (addrq, opcode.unwrap_or(255));
                    let id = if let Some(&id) = entry.frames.get(&key) {
                        id
                    } else {
                        let loc = entry.code.table_kind.locate(
                            &entry.code.linetable,
                            entry.code.firstlineno,
                            addrq,
                        );
                        let id = symbols.intern_frame(FrameInfo {
                            filename: entry.filename,
                            funcname: entry.name,
                            lineno: loc.line,
                            end_lineno: loc.end_line,
                            column: loc.column,
                            end_column: loc.end_column,
                            opcode,
                        });
                        entry.frames.insert(key, id);
                        id
                    };
                    out.push(id);
                }
            }
        }
        Ok(())
    }

    /// The opcode byte at each Python frame's instruction pointer (3.11+).
    fn read_opcodes(&mut self) -> Result<Vec<Option<u8>>, ReadError> {
        let ptrs: Vec<u64> = self
            .raw
            .iter()
            .filter_map(|f| {
                if let RawFrame::Python { instr, .. } = f {
                    Some(*instr)
                } else {
                    None
                }
            })
            .collect();
        let mut words = vec![[0u8; 2]; ptrs.len()];
        let complete = {
            let mut regions: Vec<(u64, &mut [u8])> = ptrs
                .iter()
                .copied()
                .zip(words.iter_mut().map(<[u8; 2]>::as_mut_slice))
                .collect();
            self.mem.read_many(&mut regions)?
        };
        if complete {
            return Ok(words.iter().map(|w| Some(w[0])).collect());
        }
        // One unreadable pointer (a frame being torn down) must not hide the others.
        Ok(ptrs
            .iter()
            .zip(&mut words)
            .map(|(&ptr, w)| self.mem.read(ptr, w).ok().map(|()| w[0]))
            .collect())
    }

    fn has_exception(&mut self, target: &Target, ts: &[u8]) -> Result<bool, ReadError> {
        let l = &target.layout;
        let none = target.none_addr.unwrap_or(0);
        let set = |v: u64| v != 0 && v != none;
        if l.tstate_exception.is_some_and(|o| set(u64_at(ts, o))) {
            return Ok(true);
        }
        if !self.opts.exception_state {
            return Ok(false);
        }
        if let Some(off) = l.tstate_exc_type {
            return Ok(set(u64_at(ts, off)));
        }
        match (l.tstate_exc_info, l.exc_info_value) {
            (Some(info_off), Some(value_off)) => {
                let info = u64_at(ts, info_off);
                Ok(info != 0 && set(self.mem.read_u64(field_addr(info, value_off))?))
            }
            _ => Ok(false),
        }
    }

    /// The target's own pid (1 in a container's PID namespace), read once.
    fn namespace_pid(&mut self, target: &Target) -> u64 {
        *self
            .namespace_pid
            .get_or_insert_with(|| target.process.namespace_pid() as u64)
    }

    /// Our id of a thread the target knows as `tid` (different inside a container's PID
    /// namespace), 0 if none; the map is read again when a thread is not in it, and a thread
    /// still missing then is remembered as 0 (not read again at every sample).
    fn our_tid(&mut self, target: &Target, tid: u64) -> u64 {
        if self.namespace_pid(target) == target.process.pid as u64 {
            return tid;
        }
        if !self.namespace_tids.contains_key(&tid) {
            self.namespace_tids = target.process.namespace_tids();
        }
        u64::from(*self.namespace_tids.entry(tid).or_insert(0))
    }

    /// ON_CPU if the kernel says the thread is running, UNKNOWN if it cannot tell.
    fn cpu_state(&mut self, target: &Target, tid: u64) -> u8 {
        let pid = target.process.pid;
        let tid = self.our_tid(target, tid);
        let file = match self.stat_files.entry(tid) {
            Entry::Occupied(e) => e.into_mut(),
            Entry::Vacant(v) => match File::open(format!("/proc/{pid}/task/{tid}/stat")) {
                Ok(f) => v.insert(f),
                Err(_) => return ThreadStatus::UNKNOWN,
            },
        };
        match stat_state(file) {
            Some(b'R') => ThreadStatus::ON_CPU,
            Some(_) => 0,
            None => {
                self.stat_files.remove(&tid);
                ThreadStatus::UNKNOWN
            }
        }
    }

    /// ≤3.10 record only `pthread_t`; the kernel tid sits inside glibc's `struct pthread`.
    fn os_tid(&mut self, pthread: u64) -> u64 {
        if let Some(&tid) = self.pthread_tids.get(&pthread) {
            return tid;
        }
        let tids = self.mem.thread_ids();
        let mut buf = vec![0u8; 2048];
        let tid = match self.mem.read(pthread, &mut buf) {
            Ok(()) => {
                let at = |o: usize| u32::from_le_bytes(buf[o..o + 4].try_into().unwrap());
                let known = GLIBC_PTHREAD_TID_OFFSET;
                if tids.contains(&at(known)) {
                    u64::from(at(known))
                } else {
                    (0..buf.len() - 4)
                        .step_by(4)
                        .map(at)
                        .find(|v| tids.contains(v))
                        .map_or(pthread, u64::from)
                }
            }
            Err(_) => pthread,
        };
        self.pthread_tids.insert(pthread, tid);
        tid
    }
}

/// The bytes of the frame at `frame` in `copy`, the copy of a data-stack chunk at `chunk`, if
/// the copy holds its first `size` bytes.
fn copied_frame(copy: &[u8], chunk: u64, frame: u64, size: u64) -> Option<&[u8]> {
    let at = frame.checked_sub(chunk)?;
    copy.get(at as usize..at.checked_add(size)? as usize)
}

/// Offset of the executing instruction in the units each line table uses.
fn instruction_offset(python: (u8, u8), instr: u64, code_start: u64) -> i64 {
    if python >= (3, 11) {
        (instr.wrapping_sub(code_start) as i64).div_euclid(2)
    } else if python == (3, 10) {
        // f_lasti counts instructions; the table counts bytes.
        (instr as i64).wrapping_mul(2)
    } else {
        instr as i64
    }
}

/// Brent's cycle detection over a chain of frames: a torn `previous` pointer can lead back to
/// a frame already walked (one that points to itself, such as a type object read as a frame),
/// which would otherwise cost MAX_FRAMES reads before failing.
struct CycleGuard {
    mark: u64,
    steps: usize,
    limit: usize,
}

impl CycleGuard {
    fn new(start: u64) -> Self {
        CycleGuard {
            mark: start,
            steps: 0,
            limit: 1,
        }
    }

    /// Whether stepping to `next` closed a loop (found within twice the loop's length).
    fn looped(&mut self, next: u64) -> bool {
        if next != 0 && next == self.mark {
            return true;
        }
        self.steps += 1;
        if self.steps == self.limit {
            self.mark = next;
            self.limit *= 2;
            self.steps = 0;
        }
        false
    }
}

pub(super) fn synthetic(symbols: &mut Symbols, name: &str) -> FrameId {
    frame_without_location(symbols, "~", name)
}

/// A frame with a file and a name but no line: tachyon's `~` frames, asyncio's `<task>`.
pub(super) fn frame_without_location(symbols: &mut Symbols, file: &str, name: &str) -> FrameId {
    let filename = symbols.intern_str(file);
    let funcname = symbols.intern_str(name);
    symbols.intern_frame(FrameInfo {
        filename,
        funcname,
        lineno: -1,
        end_lineno: -1,
        column: -1,
        end_column: -1,
        opcode: None,
    })
}

/// The distinct codes of `frames` that `wanted` keeps, in `out` (emptied first). A run of
/// frames of one code (recursion) asks `wanted` once; no code is looked for in `out` unless
/// it is wanted, so a stack whose codes are all checked costs a lookup a code, not a scan.
fn distinct_codes(frames: &[RawFrame], out: &mut Vec<u64>, mut wanted: impl FnMut(u64) -> bool) {
    out.clear();
    let mut last = None;
    for f in frames {
        if let RawFrame::Python { code, .. } = *f {
            if last != Some(code) && wanted(code) && !out.contains(&code) {
                out.push(code);
            }
            last = Some(code);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{CycleGuard, ThreadSample, Unwinder};
    use crate::sampler::fixture::{stacks, Fixture};
    use crate::sampler::UnwindOptions;
    use tachyon_plugin_api::Symbols;

    /// The recorded 3.12 process, and an unwinder of all its threads reading it.
    fn recorded_3_12() -> (Fixture, Unwinder) {
        let path =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/snapshots/3.12.snap.zst");
        let fixture = Fixture::load(&path).unwrap();
        let opts = UnwindOptions {
            all_threads: true,
            ..UnwindOptions::default()
        };
        let unwinder = Unwinder::with_memory(
            fixture.target.target(),
            opts,
            Box::new(fixture.snapshot.clone()),
        );
        (fixture, unwinder)
    }

    /// A full code cache starts again before a sample resolves its frames, never while: with
    /// room for one code object, every sample of a recorded 3.12 process (threads in dozens
    /// of frames of several code objects) still gives the stacks the interpreter reported.
    #[test]
    fn a_full_code_cache_starts_again_between_samples() {
        let (fixture, mut unwinder) = recorded_3_12();
        unwinder.state.code_cache_limit = 1;
        let mut expected = fixture.expected.clone();
        expected.sort();
        let (mut symbols, mut threads) = (Symbols::default(), Vec::new());
        for _ in 0..3 {
            unwinder.sample(&mut symbols, &mut threads).unwrap();
            let mut seen = stacks(&symbols, &threads);
            seen.sort();
            assert_eq!(seen, expected);
        }
    }

    /// The stack vectors a sample hands back are reused, and no more are kept than it had:
    /// stacks made elsewhere (asyncio's task stacks, ten here each sample) do not pile up.
    #[test]
    fn spare_stack_vectors_do_not_pile_up() {
        let (fixture, mut unwinder) = recorded_3_12();
        let (mut symbols, mut threads) = (Symbols::default(), Vec::new());
        for _ in 0..5 {
            unwinder.sample(&mut symbols, &mut threads).unwrap();
            let sampled = threads.len();
            assert_eq!(sampled, fixture.expected.len());
            let first = &threads[0];
            let (thread_id, frames) = (first.thread_id, first.frames.clone());
            threads.extend((0..10).map(|_| ThreadSample {
                thread_id,
                interpreter_id: 0,
                status: 0,
                frames: frames.clone(),
                task: None,
            }));
            assert!(unwinder.state.spare_frames.len() <= 10 + sampled);
        }
    }

    /// Walks `next` from `start` until 0 or a loop; the steps taken, or None if it looped.
    fn walk(start: u64, next: impl Fn(u64) -> u64) -> Option<usize> {
        let (mut at, mut steps, mut guard) = (start, 0, CycleGuard::new(start));
        while at != 0 {
            at = next(at);
            steps += 1;
            if guard.looped(at) {
                return None;
            }
            assert!(steps < 10_000, "never stopped");
        }
        Some(steps)
    }

    #[test]
    fn cycle_guard_stops_loops_and_passes_chains() {
        // A frame whose `previous` is itself (a type object read as a frame).
        assert_eq!(walk(0xbf_b4a0, |a| a), None);
        // Two frames pointing at each other, and a loop entered after a tail.
        assert_eq!(walk(1, |a| if a == 1 { 2 } else { 1 }), None);
        assert_eq!(walk(100, |a| if a > 10 { a - 1 } else { a + 5 }), None);
        // A 3,000-frame chain ending in 0 is walked whole.
        assert_eq!(walk(3000, |a| a - 1), Some(3000));
    }
}
