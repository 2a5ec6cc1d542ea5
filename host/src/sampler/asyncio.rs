//! `--async-aware`: stacks rebuilt from asyncio tasks, as CPython 3.15's profiler rebuilds
//! them. On 3.14+ the asyncio module describes its task objects in an `.AsyncioDebug` section
//! (in the executable on 3.15, in `_asyncio.*.so` on Debian's 3.14, which exists only once the
//! target imported asyncio); on 3.8-3.13 they are read from asyncio's own registries
//! (asyncio_objects.rs). Each task gives its name, its coroutine and the task(s) awaiting it;
//! a leaf task (one nobody awaits) becomes one stack: its coroutine frames, a `<task>` frame
//! named after it, then its awaiter's, up to the root.

use std::time::{Duration, Instant};

use tachyon_plugin_api::{FrameId, FxHashMap, FxHashSet, Symbols};

use super::discover::Target;
use super::elf::Elf;
use super::layout::{Layout, ObjectLayout};
use super::objects::{read_str, u64_at};
use super::process::{field_addr, ReadError};
use super::unwind::{frame_without_location, RawFrame, ThreadSample, UnwindState};

/// `--async-mode`: the tasks running now and what awaits them, or every task.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum AsyncMode {
    Running,
    All,
}

/// Bounds on what the target's memory can make us walk (as CPython's).
const MAX_TASKS: usize = 65_536;
const MAX_CHAIN: usize = 1536;
const MAX_SET_SLOTS: u64 = 1 << 20;
/// How often a missing `.AsyncioDebug` section is looked for again (asyncio may be imported
/// later).
const RETRY: Duration = Duration::from_secs(1);
/// `Py_TPFLAGS_LONG_SUBCLASS`: the task's name is still its number (`Task-N`).
const LONG_SUBCLASS: u64 = 1 << 24;

/// Task stacks need the asyncio debug offsets (3.14+) or a known layout of asyncio's objects
/// (3.8-3.13; 3.7's tasks have no names).
pub fn check_version(target: &super::Target) -> anyhow::Result<()> {
    let (major, minor, _) = target.version;
    if (major, minor) < (3, 14) && ObjectLayout::for_version((major, minor)).is_none() {
        anyhow::bail!(
            "--async-aware needs Python 3.8 or later (PID {} runs {major}.{minor})",
            target.process.pid
        );
    }
    let l = &target.layout;
    let debug_offsets = [
        ("pyobject.ob_type", l.object_type),
        ("type_object.tp_flags", l.type_flags),
        ("long_object.lv_tag", l.long_tag),
        ("long_object.ob_digit", l.long_digits),
        ("set_object.table", l.set_table),
        ("set_object.mask", l.set_mask),
        ("gen_object.gi_iframe", l.gen_iframe),
        ("gen_object.gi_frame_state", l.gen_frame_state),
        ("interpreter_frame.stackpointer", l.frame_stackpointer),
    ];
    if (major, minor) >= (3, 14) {
        if let Some((name, _)) = debug_offsets.iter().find(|(_, offset)| offset.is_none()) {
            anyhow::bail!(
                "--async-aware: the debug offsets of Python {major}.{minor} lack `{name}`"
            );
        }
    }
    Ok(())
}

/// `_Py_AsyncioModuleDebugOffsets` (13 u64).
#[derive(Clone, Copy, Debug)]
pub struct AsyncioOffsets {
    task_size: usize,
    task_name: usize,
    task_awaited_by: usize,
    task_awaited_by_is_set: usize,
    task_coro: usize,
    task_node: usize,
    interp_tasks_head: usize,
    running_task: usize,
    thread_tasks_head: usize,
    /// From the runtime's debug offsets: the objects task names and awaiter sets are, and
    /// where a coroutine's frame is.
    objects: ObjectFields,
    gen_iframe: usize,
}

impl AsyncioOffsets {
    fn parse(raw: &[u8; 104], objects: ObjectFields, gen_iframe: usize) -> AsyncioOffsets {
        let w = |i: usize| u64_at(raw, i * 8) as usize;
        AsyncioOffsets {
            task_size: w(0),
            task_name: w(1),
            task_awaited_by: w(2),
            task_awaited_by_is_set: w(4),
            task_coro: w(5),
            task_node: w(6),
            interp_tasks_head: w(8),
            running_task: w(11),
            thread_tasks_head: w(12),
            objects,
            gen_iframe,
        }
    }
}

/// Where the object fields task names, awaiter sets and coroutine chains need are: the debug
/// offsets on 3.14+, the generated `ObjectLayout` before.
#[derive(Clone, Copy, Debug)]
pub(super) struct ObjectFields {
    pub ob_type: usize,
    pub type_flags: usize,
    /// 3.12+: `lv_tag`; before, the digit count is the signed `ob_size` at `int_size`.
    pub int_tag: Option<usize>,
    pub int_size: usize,
    pub int_digits: usize,
    pub set_table: usize,
    pub set_mask: usize,
}

impl ObjectFields {
    /// 3.14+: from the debug offsets (`check_version` made sure they have them).
    fn of_debug_offsets(l: &Layout) -> Option<ObjectFields> {
        Some(ObjectFields {
            ob_type: l.object_type?,
            type_flags: l.type_flags?,
            int_tag: Some(l.long_tag?),
            int_size: 16,
            int_digits: l.long_digits?,
            set_table: l.set_table?,
            set_mask: l.set_mask?,
        })
    }

    pub(super) fn of_objects(o: &ObjectLayout) -> ObjectFields {
        ObjectFields {
            ob_type: 8,
            type_flags: o.type_flags,
            int_tag: o.long_tag,
            int_size: o.var_size,
            int_digits: o.long_digits,
            set_table: o.set_table,
            set_mask: o.set_mask,
        }
    }
}

/// The section once found, and when it was last looked for.
#[derive(Default)]
pub struct AsyncioState {
    offsets: Option<AsyncioOffsets>,
    /// 3.8-3.13: asyncio's own task registries.
    pub(super) roots: Option<super::asyncio_objects::Roots>,
    looked: Option<Instant>,
    /// Task and attribute names by the address of their `str` object (immutable, so read once).
    names: FxHashMap<u64, String>,
    /// Type names by type address (3.8-3.13, to recognise `gather()` futures).
    pub(super) type_names: FxHashMap<u64, String>,
}

impl AsyncioState {
    /// Whether to look for asyncio again: at most once a `RETRY`, as it may be imported later.
    pub(super) fn look_again(&mut self) -> bool {
        if self.looked.is_some_and(|t| t.elapsed() < RETRY) {
            return false;
        }
        self.looked = Some(Instant::now());
        true
    }
}

/// Names kept before the cache starts again (tasks come and go).
const MAX_NAMES: usize = 16_384;

/// A sampled thread: its state's address and the address of each of its frames (0 for
/// synthetic ones), aligned with the thread's frames.
pub struct ThreadFrames {
    pub tstate: u64,
    pub thread_id: u64,
    pub addrs: Vec<u64>,
}

/// One task: its name, its frames innermost first, the tasks awaiting it, and its thread (an
/// index into the sampled threads; out of range for none).
pub(super) struct Task {
    pub name: String,
    pub frames: Vec<FrameId>,
    pub parents: Vec<u64>,
    pub thread: usize,
}

impl UnwindState {
    fn asyncio_offsets(&mut self, target: &Target) -> Option<AsyncioOffsets> {
        if self.asyncio_state.offsets.is_some() {
            return self.asyncio_state.offsets;
        }
        if !self.asyncio_state.look_again() {
            return None;
        }
        self.asyncio_state.offsets = self.find_asyncio_section(target);
        self.asyncio_state.offsets
    }

    /// `.AsyncioDebug` in the binary holding the runtime or in a mapped `_asyncio` module.
    fn find_asyncio_section(&mut self, target: &Target) -> Option<AsyncioOffsets> {
        let p = &target.process;
        let maps = p.maps().ok()?;
        let mut paths: Vec<&str> = vec![target.binary.as_str()];
        for m in &maps {
            let base = m.path.rsplit('/').next().unwrap_or("");
            if base.starts_with("_asyncio") && !paths.contains(&m.path.as_str()) {
                paths.push(&m.path);
            }
        }
        for path in paths {
            let first = maps
                .iter()
                .filter(|m| m.path == path)
                .map(|m| m.start)
                .min()?;
            let Ok(elf) = Elf::open(&p.open_path(path)) else {
                continue;
            };
            let Some(section) = elf.section(".AsyncioDebug") else {
                continue;
            };
            let bias = first.wrapping_sub(elf.first_load_vaddr);
            let mut raw = [0u8; 104];
            if self.mem.read(bias + section.addr, &mut raw).is_ok() {
                let objects = ObjectFields::of_debug_offsets(&target.layout)?;
                return Some(AsyncioOffsets::parse(
                    &raw,
                    objects,
                    target.layout.gen_iframe?,
                ));
            }
        }
        None
    }

    /// Replace per-thread samples by one per leaf task (CPython 3.15's `iter_async_frames`).
    /// Threads without asyncio (or before asyncio is found) give nothing.
    pub(super) fn task_stacks(
        &mut self,
        target: &Target,
        symbols: &mut Symbols,
        interp: u64,
        mode: AsyncMode,
        threads: Vec<ThreadSample>,
        out: &mut Vec<ThreadSample>,
    ) -> Result<(), ReadError> {
        let frames_of = std::mem::take(&mut self.thread_frames);
        let tasks = if target.layout.python >= (3, 14) {
            self.debug_offset_tasks(target, symbols, interp, mode, &frames_of, &threads)?
        } else {
            self.object_tasks(target, symbols, interp, mode, &frames_of, &threads)?
        };
        if let Some(tasks) = tasks {
            leaf_stacks(symbols, &tasks, &frames_of, &threads, out);
        }
        Ok(())
    }

    /// 3.14+: the tasks of each thread's (and the interpreter's) task list, as the
    /// `.AsyncioDebug` offsets describe them; `None` before the section exists.
    fn debug_offset_tasks(
        &mut self,
        target: &Target,
        symbols: &mut Symbols,
        interp: u64,
        mode: AsyncMode,
        frames_of: &[ThreadFrames],
        threads: &[ThreadSample],
    ) -> Result<Option<FxHashMap<u64, Task>>, ReadError> {
        let Some(off) = self.asyncio_offsets(target) else {
            return Ok(None);
        };
        let fields = off.objects;
        let mut tasks: FxHashMap<u64, Task> = FxHashMap::default();
        let mut pending: Vec<(u64, usize)> = Vec::new();
        for (i, t) in frames_of.iter().enumerate() {
            match mode {
                AsyncMode::Running => {
                    let running = self.mem.read_u64(field_addr(t.tstate, off.running_task))?;
                    if running == 0 {
                        continue;
                    }
                    let coro = self.mem.read_u64(field_addr(running, off.task_coro))? & !7;
                    let gen_frame = coro + off.gen_iframe as u64;
                    let frames = match running_frames(t, threads, gen_frame) {
                        Some(frames) => frames,
                        None => self.coroutine_frames(target, symbols, coro, fields.ob_type)?,
                    };
                    self.add_task(
                        target,
                        symbols,
                        &off,
                        running,
                        i,
                        Some(frames),
                        &mut tasks,
                        &mut pending,
                    )?;
                }
                AsyncMode::All => {
                    for task in self.task_list(field_addr(t.tstate, off.thread_tasks_head), &off)? {
                        self.add_task(
                            target,
                            symbols,
                            &off,
                            task,
                            i,
                            None,
                            &mut tasks,
                            &mut pending,
                        )?;
                    }
                }
            }
        }
        if mode == AsyncMode::All {
            // Tasks of threads that have exited live on the interpreter's list; they are
            // taken as the awaiters are, with no thread.
            for task in self.task_list(field_addr(interp, off.interp_tasks_head), &off)? {
                pending.push((task, usize::MAX));
            }
        }
        // The awaiters of what was found, transitively.
        while let Some((task, thread)) = pending.pop() {
            if tasks.len() >= MAX_TASKS {
                return Err(ReadError::Fault);
            }
            if !tasks.contains_key(&task) {
                self.add_task(
                    target,
                    symbols,
                    &off,
                    task,
                    thread,
                    None,
                    &mut tasks,
                    &mut pending,
                )?;
            }
        }
        Ok(Some(tasks))
    }

    #[allow(clippy::too_many_arguments)]
    fn add_task(
        &mut self,
        target: &Target,
        symbols: &mut Symbols,
        off: &AsyncioOffsets,
        task: u64,
        thread: usize,
        frames: Option<Vec<FrameId>>,
        tasks: &mut FxHashMap<u64, Task>,
        pending: &mut Vec<(u64, usize)>,
    ) -> Result<(), ReadError> {
        let fields = off.objects;
        let mut buf = vec![0u8; off.task_size.max(off.task_node + 16)];
        self.mem.read(task, &mut buf)?;
        let coro = u64_at(&buf, off.task_coro) & !7;
        let frames = match frames {
            Some(f) => f,
            None => self.coroutine_frames(target, symbols, coro, fields.ob_type)?,
        };
        let awaited_by = u64_at(&buf, off.task_awaited_by) & !7;
        let parents = if awaited_by == 0 {
            Vec::new()
        } else if buf[off.task_awaited_by_is_set] != 0 {
            self.set_items(awaited_by, &fields)?
        } else {
            vec![awaited_by]
        };
        for &parent in &parents {
            pending.push((parent, thread));
        }
        let name = self.task_name(target, u64_at(&buf, off.task_name) & !7, task, &fields)?;
        tasks.insert(
            task,
            Task {
                name,
                frames,
                parents,
                thread,
            },
        );
        Ok(())
    }

    /// The tasks on an intrusive list whose head is at `head`.
    fn task_list(&mut self, head: u64, off: &AsyncioOffsets) -> Result<Vec<u64>, ReadError> {
        let mut out = Vec::new();
        let mut node = self.mem.read_u64(head)?;
        while node != head && node != 0 {
            if out.len() >= MAX_TASKS {
                return Err(ReadError::Fault);
            }
            out.push(node - off.task_node as u64);
            node = self.mem.read_u64(node)?;
        }
        Ok(out)
    }

    /// `Task-N` for a task still named by its number, else its name.
    pub(super) fn task_name(
        &mut self,
        target: &Target,
        name: u64,
        task: u64,
        fields: &ObjectFields,
    ) -> Result<String, ReadError> {
        if name == 0 {
            return Ok(format!("Task-{task}"));
        }
        let ty = self.mem.read_u64(field_addr(name, fields.ob_type))?;
        let flags = self.mem.read_u64(field_addr(ty, fields.type_flags))?;
        if flags & LONG_SUBCLASS != 0 {
            return Ok(format!("Task-{}", self.int_value(name, fields)?));
        }
        self.str_text(target, name).map(str::to_owned)
    }

    /// The text of a `str` object, read once per address (task names, attribute names).
    pub(super) fn str_text(&mut self, target: &Target, addr: u64) -> Result<&str, ReadError> {
        if !self.asyncio_state.names.contains_key(&addr) {
            let text = read_str(&mut *self.mem, &target.layout, addr)?;
            if self.asyncio_state.names.len() >= MAX_NAMES {
                self.asyncio_state.names.clear();
            }
            self.asyncio_state.names.insert(addr, text);
        }
        Ok(&self.asyncio_state.names[&addr])
    }

    /// An `int` of up to four 30-bit digits (task numbers, thread ids).
    pub(super) fn int_value(&mut self, int: u64, fields: &ObjectFields) -> Result<i128, ReadError> {
        let (digits, negative) = match fields.int_tag {
            // 3.12+: digit count above three flag bits, sign 2 for negative.
            Some(tag) => {
                let tag = self.mem.read_u64(field_addr(int, tag))?;
                (tag >> 3, tag & 3 == 2)
            }
            None => {
                let size = self.mem.read_u64(field_addr(int, fields.int_size))? as i64;
                (size.unsigned_abs(), size < 0)
            }
        };
        let mut raw = vec![0u8; digits.min(4) as usize * 4];
        self.mem
            .read(field_addr(int, fields.int_digits), &mut raw)?;
        let value = raw.chunks(4).enumerate().fold(0i128, |v, (i, d)| {
            v | (i128::from(u32::from_le_bytes(d.try_into().expect("4 bytes"))) << (30 * i))
        });
        Ok(if negative { -value } else { value })
    }

    /// The live keys of a `set` object.
    pub(super) fn set_items(
        &mut self,
        set: u64,
        fields: &ObjectFields,
    ) -> Result<Vec<u64>, ReadError> {
        let table = self.mem.read_u64(field_addr(set, fields.set_table))?;
        let slots = self.mem.read_u64(field_addr(set, fields.set_mask))? + 1;
        if slots > MAX_SET_SLOTS {
            return Err(ReadError::Fault);
        }
        let mut raw = vec![0u8; slots as usize * 16];
        self.mem.read(table, &mut raw)?;
        Ok(raw
            .chunks(16)
            .filter_map(|e| {
                let (key, hash) = (u64_at(e, 0), u64_at(e, 8) as i64);
                // Empty slots have no key; removed ones keep the dummy key with hash -1.
                (key != 0 && hash != -1).then_some(key & !7)
            })
            .collect())
    }

    /// A suspended coroutine's frames, innermost first: its own frame, and while it awaits
    /// another coroutine (`yield from`), that one's, down the chain.
    pub(super) fn coroutine_frames(
        &mut self,
        target: &Target,
        symbols: &mut Symbols,
        mut coro: u64,
        ob_type: usize,
    ) -> Result<Vec<FrameId>, ReadError> {
        let mut chain = Vec::new();
        let mut ty = 0;
        while coro != 0 && chain.len() < MAX_CHAIN {
            // What a coroutine awaits may be any object, or (3.8/3.9, not yet started) a stale
            // stack slot: only the first read must succeed.
            let this_ty = match self.mem.read_u64(field_addr(coro, ob_type)) {
                Ok(this_ty) => this_ty,
                Err(e) if ty == 0 => return Err(e),
                Err(_) => break,
            };
            if ty != 0 && this_ty != ty {
                break;
            }
            ty = this_ty;
            let (frame, awaited) = if target.layout.python >= (3, 14) {
                self.suspended_frame(target, coro)?
            } else {
                self.object_suspended_frame(target, coro)?
            };
            let Some(frame) = frame else { break };
            chain.push(frame);
            coro = awaited & !7;
        }
        // Innermost first, as every stack.
        chain.reverse();
        let saved = std::mem::replace(&mut self.raw, chain);
        let mut out = Vec::new();
        let resolved = self.resolve(target, symbols, &mut out);
        self.raw = saved;
        resolved.map(|()| out)
    }

    /// 3.14+: a coroutine's frame (none once it finished) and what it awaits (0 for nothing).
    fn suspended_frame(
        &mut self,
        target: &Target,
        coro: u64,
    ) -> Result<(Option<RawFrame>, u64), ReadError> {
        let l = &target.layout;
        let (Some(iframe), Some(state_at), Some(stackpointer)) =
            (l.gen_iframe, l.gen_frame_state, l.frame_stackpointer)
        else {
            return Ok((None, 0));
        };
        let (cleared, yield_from): (i8, &[i8]) = if l.python >= (3, 15) {
            (5, &[2, 3])
        } else {
            (4, &[-1])
        };
        // The awaited object sits at the top of the suspended frame's value stack.
        let awaited_slot: u64 = if l.python >= (3, 15) { 16 } else { 8 };
        let mut buf = vec![0u8; iframe + l.frame_read_size()];
        self.mem.read(coro, &mut buf)?;
        let state = buf[state_at] as i8;
        if state == cleared {
            return Ok((None, 0));
        }
        let frame = &buf[iframe..];
        let code = u64_at(frame, l.frame_code) & !7;
        let instr = u64_at(frame, l.frame_instr);
        let raw = (code != 0).then_some(RawFrame::Python {
            code,
            instr,
            frame: coro + iframe as u64,
        });
        if !yield_from.contains(&state) {
            return Ok((raw, 0));
        }
        let sp = u64_at(frame, stackpointer);
        Ok((raw, self.mem.read_u64(sp.wrapping_sub(awaited_slot))?))
    }
}

/// A running task's frames: its thread's, innermost first, down to the task's coroutine frame
/// at `coroutine_frame` (all of them while the loop is between steps of it, as CPython);
/// `None` when the thread was not sampled.
pub(super) fn running_frames(
    thread: &ThreadFrames,
    threads: &[ThreadSample],
    coroutine_frame: u64,
) -> Option<Vec<FrameId>> {
    let sample = threads.iter().find(|s| s.thread_id == thread.thread_id)?;
    Some(
        match thread.addrs.iter().position(|&a| a == coroutine_frame) {
            Some(at) => sample.frames[..=at].to_vec(),
            None => sample.frames.clone(),
        },
    )
}

/// One stack per leaf task (one nobody awaits): its frames, a `<task>` frame named after it,
/// then its awaiter's, up to the root.
fn leaf_stacks(
    symbols: &mut Symbols,
    tasks: &FxHashMap<u64, Task>,
    frames_of: &[ThreadFrames],
    threads: &[ThreadSample],
    out: &mut Vec<ThreadSample>,
) {
    let parents: FxHashSet<u64> = tasks
        .values()
        .flat_map(|t| t.parents.iter().copied())
        .collect();
    let mut leaves: Vec<u64> = tasks
        .keys()
        .copied()
        .filter(|t| !parents.contains(t))
        .collect();
    leaves.sort_unstable();
    for leaf in leaves {
        let mut frames = Vec::new();
        let mut seen = FxHashSet::default();
        let mut current = Some(leaf);
        while let Some(id) = current {
            if !seen.insert(id) {
                break;
            }
            let Some(task) = tasks.get(&id) else { break };
            frames.extend_from_slice(&task.frames);
            // Several awaiters: follow the lowest id, as CPython, and say how many.
            let parent = task.parents.iter().copied().min();
            let name = match task.parents.len() {
                n if n > 1 => format!("{} ({n} parents)", task.name),
                _ => task.name.clone(),
            };
            frames.push(frame_without_location(symbols, "<task>", &name));
            current = parent;
        }
        let thread = tasks[&leaf].thread;
        let (thread_id, status, interpreter_id) = frames_of
            .get(thread)
            .and_then(|t| threads.iter().find(|s| s.thread_id == t.thread_id))
            .map_or((0, 0, 0), |s| (s.thread_id, s.status, s.interpreter_id));
        out.push(ThreadSample {
            thread_id,
            interpreter_id,
            status,
            frames,
            task: Some(leaf),
        });
    }
}
