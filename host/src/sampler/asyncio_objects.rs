//! `--async-aware` on 3.8-3.13, which keep no asyncio debug offsets: tasks are read where
//! asyncio itself registers them, in the module `asyncio.tasks` (found through `sys.modules`):
//! `_current_tasks` (event loop → the task running on it), `_all_tasks` (3.8-3.11) or
//! `_scheduled_tasks` and `_eager_tasks` (3.12+), weak sets of every task. No task says who
//! awaits it, so awaiters are found from the other side, as CPython 3.14 records them: a task
//! awaits the task its `fut_waiter` holds, or each child of the `gather()` future it holds; a
//! `TaskGroup`'s task is awaited by the group's parent task (the group's `_on_task_done` is
//! among the task's done callbacks).
//! C tasks are read at the offsets of the generated `ObjectLayout`; pure-Python tasks (no
//! `_asyncio` accelerator) through their instance dict.

use tachyon_plugin_api::{FrameId, FxHashMap, Symbols};

use super::asyncio::{running_frames, AsyncMode, ObjectFields, Task, ThreadFrames};
use super::discover::Target;
use super::layout::ObjectLayout;
use super::objects::{i32_at, u64_at};
use super::process::{field_addr, ReadError};
use super::unwind::{RawFrame, ThreadSample, UnwindState};

/// Bounds on what the target's memory can make us walk.
const MAX_DICT_ENTRIES: u64 = 1 << 17;
const MAX_LIST_ITEMS: u64 = 1 << 16;
const MAX_TASKS: usize = 65_536;
/// Types walked up from a task's type to `Task` (subclasses), and nested `gather()`s followed.
const MAX_DEPTH: usize = 16;
/// `Py_TPFLAGS_MANAGED_DICT` (3.11+: the dict or values pointer sits before the object) and
/// `Py_TPFLAGS_INLINE_VALUES` (3.13: values follow the object).
const MANAGED_DICT: u64 = 1 << 4;
const INLINE_VALUES: u64 = 1 << 2;
/// The pre-header slots (3.11+): dict (or 3.12's tagged values) at -24, 3.11's values at -32.
const MANAGED_DICT_SLOT: u64 = 24;
const VALUES_SLOT_311: u64 = 32;
/// 3.13 `PyDictValues`: `capacity, size, embedded, valid` bytes before the values.
const VALUES_VALID_313: u64 = 3;
const OB_TYPE: usize = 8;
/// Reads of a registry the target is changing.
const TRIES: usize = 3;

/// Record that `parent` awaits `child` (once: a task may be found by two routes).
fn add_parent(parents: &mut FxHashMap<u64, Vec<u64>>, child: u64, parent: u64) {
    let known = parents.entry(child).or_default();
    if !known.contains(&parent) {
        known.push(parent);
    }
}

/// asyncio's registries in the target, found once: they live as long as the module.
#[derive(Clone, Copy, Debug)]
pub struct Roots {
    /// dict: event loop → running task.
    current_tasks: u64,
    /// set of weak references to tasks (the `data` of a `WeakSet`).
    weak_tasks: u64,
    /// 3.12+: set of eagerly started tasks; 0 before.
    eager_tasks: u64,
    /// `_asyncio.Task` (0 without the accelerator) and the pure-Python `Task`.
    c_task: u64,
    py_task: u64,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum TaskKind {
    C,
    Python,
}

/// What a pending task holds.
struct TaskFields {
    coro: u64,
    name: u64,
    fut_waiter: u64,
    event_loop: u64,
    /// Its first done callback and the list of `(callback, context)` of the others.
    callback0: u64,
    callbacks: u64,
}

impl UnwindState {
    fn object_layout(&self, target: &Target) -> Option<&'static ObjectLayout> {
        let (major, minor) = target.layout.python;
        ObjectLayout::for_version((major, minor))
    }

    /// 3.8-3.13: every pending task, or those running now and their awaiters; `None` until
    /// the target has imported asyncio.
    pub(super) fn object_tasks(
        &mut self,
        target: &Target,
        symbols: &mut Symbols,
        interp: u64,
        mode: AsyncMode,
        frames_of: &[ThreadFrames],
        threads: &[ThreadSample],
    ) -> Result<Option<FxHashMap<u64, Task>>, ReadError> {
        let Some(o) = self.object_layout(target) else {
            return Ok(None);
        };
        let Some(roots) = self.asyncio_roots(target, o, interp) else {
            return Ok(None);
        };
        let fields = ObjectFields::of_objects(o);

        // The registries change while they are read (tasks come and go, dicts are resized):
        // a torn read of one is tried again before the sample counts as an error.
        let registered = self.retried(|u| u.registered_tasks(o, &roots, &fields))?;
        let mut pending: FxHashMap<u64, TaskFields> = FxHashMap::default();
        for task in registered {
            // Dead references point at None; finished tasks stay registered until collected;
            // one freed since the registry was read cannot be read at all.
            let Ok(Some(kind)) = self.task_kind(o, &roots, task) else {
                continue;
            };
            if let Ok(Some(f)) = self.task_fields(target, o, kind, task) {
                pending.insert(task, f);
            }
        }

        let mut parents: FxHashMap<u64, Vec<u64>> = FxHashMap::default();
        for (&task, f) in &pending {
            // What a task awaited may be gone by now: then it awaits nothing.
            self.link_awaited(target, o, &pending, f.fut_waiter, task, &mut parents)
                .ok();
            // A TaskGroup's task: its parent waits for the group, not for the task.
            for callback in self.done_callbacks(o, f).unwrap_or_default() {
                if let Ok(Some(parent)) = self.task_group_parent(target, o, callback) {
                    if pending.contains_key(&parent) {
                        add_parent(&mut parents, task, parent);
                    }
                }
            }
        }

        // Running tasks: their frames are their thread's, down to their coroutine.
        let mut running: FxHashMap<u64, (usize, Vec<FrameId>)> = FxHashMap::default();
        for (_, task) in self.retried(|u| u.dict_items(o, roots.current_tasks))? {
            let Some(f) = pending.get(&task) else {
                continue;
            };
            let frame = self.coroutine_frame_addr(o, f.coro)?;
            for (i, t) in frames_of.iter().enumerate() {
                if t.addrs.contains(&frame) {
                    if let Some(frames) = running_frames(t, threads, frame) {
                        running.insert(task, (i, frames));
                    }
                }
            }
        }

        let chosen: Vec<u64> = match mode {
            AsyncMode::All => pending.keys().copied().collect(),
            AsyncMode::Running => {
                // The running tasks and, transitively, what awaits them.
                let mut chosen: Vec<u64> = running.keys().copied().collect();
                let mut at = 0;
                while at < chosen.len() {
                    for &parent in parents.get(&chosen[at]).map_or(&[][..], Vec::as_slice) {
                        if !chosen.contains(&parent) {
                            chosen.push(parent);
                        }
                    }
                    at += 1;
                }
                chosen
            }
        };
        let mut loop_threads: FxHashMap<u64, usize> = FxHashMap::default();
        let mut tasks = FxHashMap::default();
        for task in chosen {
            let f = &pending[&task];
            // A task that finished while it was read is left out (an awaiter's stack then
            // ends at it).
            let (thread, frames) = match running.remove(&task) {
                Some(found) => found,
                None => {
                    let Ok(frames) = self.coroutine_frames(target, symbols, f.coro, OB_TYPE) else {
                        continue;
                    };
                    let thread = match loop_threads.get(&f.event_loop) {
                        Some(&t) => t,
                        None => {
                            let t = self
                                .loop_thread(target, o, f.event_loop, frames_of)
                                .unwrap_or(usize::MAX);
                            loop_threads.insert(f.event_loop, t);
                            t
                        }
                    };
                    (thread, frames)
                }
            };
            let Ok(name) = self.task_name(target, f.name, task, &fields) else {
                continue;
            };
            tasks.insert(
                task,
                Task {
                    name,
                    frames,
                    parents: parents.remove(&task).unwrap_or_default(),
                    thread,
                },
            );
        }
        Ok(Some(tasks))
    }

    /// Every registered task (weakly referenced, or 3.12+ eagerly started).
    fn registered_tasks(
        &mut self,
        o: &ObjectLayout,
        roots: &Roots,
        fields: &ObjectFields,
    ) -> Result<Vec<u64>, ReadError> {
        let mut registered = Vec::new();
        for weak in self.set_items(roots.weak_tasks, fields)? {
            registered.push(self.mem.read_u64(field_addr(weak, o.weakref_object))?);
        }
        if roots.eager_tasks != 0 {
            registered.extend(self.set_items(roots.eager_tasks, fields)?);
        }
        if registered.len() > MAX_TASKS {
            return Err(ReadError::Fault);
        }
        Ok(registered)
    }

    /// A read of something the target is changing, tried up to `TRIES` times; the tries
    /// after the first read the target's memory as it is now, not as the sample's prefetch
    /// found it.
    fn retried<T>(
        &mut self,
        mut read: impl FnMut(&mut Self) -> Result<T, ReadError>,
    ) -> Result<T, ReadError> {
        let mut failed = 0;
        let result = loop {
            match read(self) {
                Err(_) if failed + 1 < TRIES => {
                    failed += 1;
                    self.mem.set_fresh(true);
                }
                done => break done,
            }
        };
        self.mem.set_fresh(false);
        result
    }

    /// asyncio's registries, looked for at most once a second until found.
    fn asyncio_roots(&mut self, target: &Target, o: &ObjectLayout, interp: u64) -> Option<Roots> {
        if self.asyncio_state.roots.is_none() && self.asyncio_state.look_again() {
            self.asyncio_state.roots = self.find_roots(target, o, interp).ok().flatten();
        }
        self.asyncio_state.roots
    }

    fn find_roots(
        &mut self,
        target: &Target,
        o: &ObjectLayout,
        interp: u64,
    ) -> Result<Option<Roots>, ReadError> {
        let modules = self.mem.read_u64(field_addr(interp, o.interp_modules))?;
        let Some(module) = self.dict_get(target, o, modules, "asyncio.tasks")? else {
            return Ok(None);
        };
        let globals = self.mem.read_u64(field_addr(module, o.module_dict))?;
        let items = self.dict_items(o, globals)?;
        let mut get = |name: &str| self.lookup(target, &items, name).map(|v| v.unwrap_or(0));
        let (current_tasks, all_tasks, scheduled_tasks) = (
            get("_current_tasks")?,
            get("_all_tasks")?,
            get("_scheduled_tasks")?,
        );
        let (eager_tasks, c_task, py_task) =
            (get("_eager_tasks")?, get("_CTask")?, get("_PyTask")?);
        let weak_set = if all_tasks != 0 {
            all_tasks
        } else {
            scheduled_tasks
        };
        if current_tasks == 0 || weak_set == 0 {
            return Ok(None);
        }
        let Some(weak_tasks) = self.attribute(target, o, weak_set, "data")? else {
            return Ok(None);
        };
        Ok(Some(Roots {
            current_tasks,
            weak_tasks,
            eager_tasks,
            c_task,
            py_task,
        }))
    }

    /// Whether `obj` is a task (of `Task` or a subclass), and which kind.
    fn task_kind(
        &mut self,
        o: &ObjectLayout,
        roots: &Roots,
        obj: u64,
    ) -> Result<Option<TaskKind>, ReadError> {
        let mut ty = self.mem.read_u64(field_addr(obj, OB_TYPE))?;
        for _ in 0..MAX_DEPTH {
            if ty == 0 {
                break;
            }
            if ty == roots.c_task {
                return Ok(Some(TaskKind::C));
            }
            if ty == roots.py_task {
                return Ok(Some(TaskKind::Python));
            }
            ty = self.mem.read_u64(field_addr(ty, o.type_base))?;
        }
        Ok(None)
    }

    /// A task's coroutine, name, awaited future and loop; `None` once it is done.
    fn task_fields(
        &mut self,
        target: &Target,
        o: &ObjectLayout,
        kind: TaskKind,
        task: u64,
    ) -> Result<Option<TaskFields>, ReadError> {
        match kind {
            TaskKind::C => {
                let mut buf = vec![0u8; o.task_size];
                self.mem.read(task, &mut buf)?;
                // fut_state: PENDING is 0.
                if i32_at(&buf, o.fut_state) != 0 {
                    return Ok(None);
                }
                Ok(Some(TaskFields {
                    coro: u64_at(&buf, o.task_coro),
                    name: u64_at(&buf, o.task_name),
                    fut_waiter: u64_at(&buf, o.task_fut_waiter),
                    event_loop: u64_at(&buf, o.fut_loop),
                    callback0: u64_at(&buf, o.fut_callback0),
                    callbacks: u64_at(&buf, o.fut_callbacks),
                }))
            }
            TaskKind::Python => {
                // `_state` is a class attribute ('PENDING') until the task is done.
                if let Some(state) = self.attribute(target, o, task, "_state")? {
                    if !self.str_is(target, state, "PENDING") {
                        return Ok(None);
                    }
                }
                let mut get = |name: &str| {
                    self.attribute(target, o, task, name)
                        .map(|v| v.unwrap_or(0))
                };
                Ok(Some(TaskFields {
                    coro: get("_coro")?,
                    name: get("_name")?,
                    fut_waiter: get("_fut_waiter")?,
                    event_loop: get("_loop")?,
                    callback0: 0,
                    callbacks: get("_callbacks")?,
                }))
            }
        }
    }

    /// Record `awaiter` as awaiting `awaited` if that is a pending task, or as awaiting each
    /// child of a `gather()` future.
    fn link_awaited(
        &mut self,
        target: &Target,
        o: &ObjectLayout,
        pending: &FxHashMap<u64, TaskFields>,
        awaited: u64,
        awaiter: u64,
        parents: &mut FxHashMap<u64, Vec<u64>>,
    ) -> Result<(), ReadError> {
        // (awaited object, how many gathers deep)
        let mut work = vec![(awaited, 0)];
        while let Some((awaited, depth)) = work.pop() {
            if awaited == 0 || depth > MAX_DEPTH {
                continue;
            }
            if pending.contains_key(&awaited) {
                add_parent(parents, awaited, awaiter);
                continue;
            }
            if self.type_name(o, awaited)? != "_GatheringFuture" {
                continue;
            }
            if let Some(children) = self.attribute(target, o, awaited, "_children")? {
                for child in self.list_items(o, children)? {
                    work.push((child, depth + 1));
                }
            }
        }
        Ok(())
    }

    /// A future's done callbacks.
    fn done_callbacks(&mut self, o: &ObjectLayout, f: &TaskFields) -> Result<Vec<u64>, ReadError> {
        let mut out = Vec::new();
        if f.callback0 != 0 {
            out.push(f.callback0);
        }
        if f.callbacks != 0 && self.type_name(o, f.callbacks)? == "list" {
            for pair in self.list_items(o, f.callbacks)? {
                out.push(self.mem.read_u64(field_addr(pair, o.tuple_items))?);
            }
        }
        Ok(out)
    }

    /// The task owning the `TaskGroup` whose `_on_task_done` method `callback` is.
    fn task_group_parent(
        &mut self,
        target: &Target,
        o: &ObjectLayout,
        callback: u64,
    ) -> Result<Option<u64>, ReadError> {
        if self.type_name(o, callback)? != "method" {
            return Ok(None);
        }
        let owner = self.mem.read_u64(field_addr(callback, o.method_self))?;
        if self.type_name(o, owner)? != "TaskGroup" {
            return Ok(None);
        }
        self.attribute(target, o, owner, "_parent_task")
    }

    /// The sampled thread running an event loop (its `_thread_id`); out of range for none.
    fn loop_thread(
        &mut self,
        target: &Target,
        o: &ObjectLayout,
        event_loop: u64,
        frames_of: &[ThreadFrames],
    ) -> Result<usize, ReadError> {
        let Some(id) = self.attribute(target, o, event_loop, "_thread_id")? else {
            return Ok(usize::MAX);
        };
        let fields = ObjectFields::of_objects(o);
        if self.type_name(o, id)? != "int" {
            return Ok(usize::MAX);
        }
        let id = self.int_value(id, &fields)?;
        let at = target.layout.tstate_thread_id;
        for (i, t) in frames_of.iter().enumerate() {
            if i128::from(self.mem.read_u64(field_addr(t.tstate, at))?) == id {
                return Ok(i);
            }
        }
        Ok(usize::MAX)
    }

    /// Where a coroutine's frame is (as thread stacks record it): its frame object (≤3.10) or
    /// its embedded interpreter frame (3.11+).
    fn coroutine_frame_addr(&mut self, o: &ObjectLayout, coro: u64) -> Result<u64, ReadError> {
        match (o.gen_frame, o.gen_iframe) {
            (Some(frame), _) => self.mem.read_u64(field_addr(coro, frame)),
            (None, Some(iframe)) => Ok(field_addr(coro, iframe)),
            (None, None) => Ok(0),
        }
    }

    /// 3.8-3.13: a coroutine's frame (none once it finished) and, while it is suspended, the
    /// object on top of its value stack: what it awaits (checked by the caller's type test).
    pub(super) fn object_suspended_frame(
        &mut self,
        target: &Target,
        coro: u64,
    ) -> Result<(Option<RawFrame>, u64), ReadError> {
        let Some(o) = self.object_layout(target) else {
            return Ok((None, 0));
        };
        let l = &target.layout;
        let mut buf = vec![0u8; l.frame_read_size()];
        if let Some(gen_frame) = o.gen_frame {
            // ≤3.10: a frame object, gone once the coroutine finished.
            let frame = self.mem.read_u64(field_addr(coro, gen_frame))?;
            if frame == 0 {
                return Ok((None, 0));
            }
            self.mem.read(frame, &mut buf)?;
            let raw = RawFrame::Python {
                code: u64_at(&buf, l.frame_code),
                instr: i64::from(i32_at(&buf, l.frame_instr)) as u64,
                frame,
            };
            let top = match (
                o.frame_stacktop,
                o.frame_valuestack,
                o.frame_stackdepth,
                o.frame_state,
            ) {
                // 3.8/3.9: `f_stacktop` is set only while suspended.
                (Some(stacktop), ..) => u64_at(&buf, stacktop).checked_sub(8),
                // 3.10: FRAME_SUSPENDED is -1.
                (None, Some(stack), Some(depth), Some(state)) if buf[state] as i8 == -1 => {
                    let depth = u64::try_from(i32_at(&buf, depth)).unwrap_or(0);
                    let stack = u64_at(&buf, stack);
                    (depth > 0).then(|| stack + 8 * (depth - 1))
                }
                _ => None,
            };
            let awaited = match top {
                Some(slot) if slot >= 8 => self.mem.read_u64(slot)?,
                _ => 0,
            };
            return Ok((Some(raw), awaited));
        }
        let (Some(iframe), Some(state_at), Some(stacktop), Some(localsplus)) = (
            o.gen_iframe,
            o.gen_frame_state,
            o.iframe_stacktop,
            o.iframe_localsplus,
        ) else {
            return Ok((None, 0));
        };
        // 3.11+: the frame is embedded in the coroutine.
        buf.resize(iframe + l.frame_read_size(), 0);
        self.mem.read(coro, &mut buf)?;
        let state = buf[state_at] as i8;
        // COMPLETED (1) and CLEARED (4): nothing left to show.
        if state >= 1 {
            return Ok((None, 0));
        }
        let frame = &buf[iframe..];
        let code = u64_at(frame, l.frame_code) & !7;
        let raw = (code != 0).then_some(RawFrame::Python {
            code,
            instr: u64_at(frame, l.frame_instr),
            frame: field_addr(coro, iframe),
        });
        // Suspended awaiting: FRAME_SUSPENDED (3.11/3.12), FRAME_SUSPENDED_YIELD_FROM (3.13).
        let depth = u64::try_from(i32_at(frame, stacktop)).unwrap_or(0);
        if state != -1 || depth == 0 {
            return Ok((raw, 0));
        }
        let slot = field_addr(coro, iframe + localsplus) + 8 * (depth - 1);
        Ok((raw, self.mem.read_u64(slot)?))
    }

    /// (key, value) of a dict's entries.
    fn dict_items(&mut self, o: &ObjectLayout, dict: u64) -> Result<Vec<(u64, u64)>, ReadError> {
        let keys = self.mem.read_u64(field_addr(dict, o.dict_keys))?;
        let values = self.mem.read_u64(field_addr(dict, o.dict_values))?;
        let values = (values != 0).then(|| field_addr(values, o.values_values));
        self.keys_items(o, keys, values)
    }

    /// The entries of a dict's keys object, with the values beside it for a split dict
    /// (an instance's, sharing its class's keys).
    fn keys_items(
        &mut self,
        o: &ObjectLayout,
        keys: u64,
        values: Option<u64>,
    ) -> Result<Vec<(u64, u64)>, ReadError> {
        let mut head = vec![0u8; o.keys_indices];
        self.mem.read(keys, &mut head)?;
        let (index_bytes, unicode) = match (o.keys_log2_index_bytes, o.keys_kind, o.keys_size) {
            // 3.11+: index table of 2^n bytes; str-only keys have (key, value) entries.
            (Some(log2), Some(kind), _) => (1u64 << head[log2].min(40), head[kind] != 0),
            // ≤3.10: dk_size indices of the narrowest width that holds them.
            (_, _, Some(size)) => {
                let size = u64_at(&head, size);
                let width = match size {
                    0..=0xff => 1,
                    0x100..=0xffff => 2,
                    0x1_0000..=0xffff_ffff => 4,
                    _ => 8,
                };
                (size.saturating_mul(width), false)
            }
            _ => return Err(ReadError::Fault),
        };
        let count = u64_at(&head, o.keys_nentries);
        if count > MAX_DICT_ENTRIES || index_bytes > MAX_DICT_ENTRIES * 8 {
            return Err(ReadError::Fault);
        }
        let entry = if unicode { 16 } else { 24 };
        let mut raw = vec![0u8; count as usize * entry];
        let entries = field_addr(keys, o.keys_indices) + index_bytes;
        self.mem.read(entries, &mut raw)?;
        let split = match values {
            Some(at) => {
                let mut split = vec![0u8; count as usize * 8];
                self.mem.read(at, &mut split)?;
                Some(split)
            }
            None => None,
        };
        Ok(raw
            .chunks(entry)
            .enumerate()
            .filter_map(|(i, e)| {
                let key = u64_at(e, entry - 16);
                let value = split
                    .as_ref()
                    .map_or_else(|| u64_at(e, entry - 8), |v| u64_at(v, i * 8));
                (key != 0 && value != 0).then_some((key, value))
            })
            .collect())
    }

    /// The value under a `str` key.
    fn lookup(
        &mut self,
        target: &Target,
        items: &[(u64, u64)],
        name: &str,
    ) -> Result<Option<u64>, ReadError> {
        Ok(items
            .iter()
            .find(|&&(key, _)| self.str_is(target, key, name))
            .map(|&(_, value)| value))
    }

    fn dict_get(
        &mut self,
        target: &Target,
        o: &ObjectLayout,
        dict: u64,
        name: &str,
    ) -> Result<Option<u64>, ReadError> {
        let items = self.dict_items(o, dict)?;
        self.lookup(target, &items, name)
    }

    /// Whether `addr` is the `str` `text` (an object that is no readable `str` is not).
    fn str_is(&mut self, target: &Target, addr: u64, text: &str) -> bool {
        self.str_text(target, addr).is_ok_and(|s| s == text)
    }

    /// An instance attribute, from the object's `__dict__` or (3.11+) the values an instance
    /// keeps without one.
    fn attribute(
        &mut self,
        target: &Target,
        o: &ObjectLayout,
        obj: u64,
        name: &str,
    ) -> Result<Option<u64>, ReadError> {
        let ty = self.mem.read_u64(field_addr(obj, OB_TYPE))?;
        let flags = self.mem.read_u64(field_addr(ty, o.type_flags))?;
        let python = target.layout.python;
        let items = if python >= (3, 11) && flags & MANAGED_DICT != 0 {
            let slot = self.mem.read_u64(obj.wrapping_sub(MANAGED_DICT_SLOT))?;
            let (dict, values) = match python {
                (3, 11) => (slot, self.mem.read_u64(obj.wrapping_sub(VALUES_SLOT_311))?),
                // A tagged pointer: values (stored minus one) when the low bit is set.
                (3, 12) if slot & 1 == 1 => (0, slot + 1),
                (3, 12) => (slot, 0),
                // 3.13: a dict when there is one, else the values inline after the object.
                _ if slot != 0 || flags & INLINE_VALUES == 0 => (slot, 0),
                _ => {
                    let values = field_addr(
                        obj,
                        self.mem.read_u64(field_addr(ty, o.type_basicsize))? as usize,
                    );
                    let mut valid = [0u8];
                    self.mem.read(values + VALUES_VALID_313, &mut valid)?;
                    (0, if valid[0] != 0 { values } else { 0 })
                }
            };
            if dict != 0 {
                self.dict_items(o, dict)?
            } else if values != 0 {
                let keys = self.mem.read_u64(field_addr(ty, o.heaptype_cached_keys))?;
                self.keys_items(o, keys, Some(field_addr(values, o.values_values)))?
            } else {
                return Ok(None);
            }
        } else {
            let offset = self.mem.read_u64(field_addr(ty, o.type_dictoffset))? as i64;
            let dict = match u64::try_from(offset) {
                Ok(offset) if offset > 0 => self.mem.read_u64(obj + offset)?,
                _ => 0,
            };
            if dict == 0 {
                return Ok(None);
            }
            self.dict_items(o, dict)?
        };
        self.lookup(target, &items, name)
    }

    /// The items of a `list`.
    fn list_items(&mut self, o: &ObjectLayout, list: u64) -> Result<Vec<u64>, ReadError> {
        let count = self.mem.read_u64(field_addr(list, o.var_size))?;
        if count > MAX_LIST_ITEMS {
            return Err(ReadError::Fault);
        }
        let items = self.mem.read_u64(field_addr(list, o.list_items))?;
        let mut raw = vec![0u8; count as usize * 8];
        self.mem.read(items, &mut raw)?;
        Ok(raw.chunks(8).map(|c| u64_at(c, 0)).collect())
    }

    /// The `tp_name` of an object's type (cached by type address).
    fn type_name(&mut self, o: &ObjectLayout, obj: u64) -> Result<String, ReadError> {
        let ty = self.mem.read_u64(field_addr(obj, OB_TYPE))?;
        if let Some(name) = self.asyncio_state.type_names.get(&ty) {
            return Ok(name.clone());
        }
        let at = self.mem.read_u64(field_addr(ty, o.type_name))?;
        let mut raw = [0u8; 64];
        // A C string: read what the page holds of it.
        let readable = (4096 - (at % 4096) as usize).min(raw.len());
        self.mem.read(at, &mut raw[..readable])?;
        let end = raw.iter().position(|&b| b == 0).unwrap_or(readable);
        let name = String::from_utf8_lossy(&raw[..end]).into_owned();
        if self.asyncio_state.type_names.len() >= MAX_TASKS {
            self.asyncio_state.type_names.clear();
        }
        self.asyncio_state.type_names.insert(ty, name.clone());
        Ok(name)
    }
}
