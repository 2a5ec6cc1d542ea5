//! Where things are inside one CPython version's structs. 2.7 and 3.6-3.12 come from tables
//! generated from their headers (layouts.rs); 3.13+ describe themselves through the
//! `_Py_DebugOffsets` block at the start of `_PyRuntime`, read from the target at attach.

use anyhow::{bail, Context, Result};

/// Byte offsets (x86_64) of the fields the sampler reads: every version has the plain ones
/// (a version whose debug offsets lack one is refused at attach, naming it); `None` where a
/// version has no such field. Offsets named `interp_*`, `tstate_*`, `frame_*`, `code_*` are relative to the
/// interpreter state, thread state, frame and code object.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Layout {
    pub python: (u8, u8),
    pub runtime_interpreters_head: Option<usize>,
    /// `_PyRuntime.gilstate.tstate_current` (3.7-3.11): the thread holding the GIL.
    pub runtime_tstate_current: Option<usize>,
    pub interp_next: usize,
    /// 3.7+: the interpreter's id (0 for the main interpreter), which samples carry.
    pub interp_id: Option<usize>,
    pub interp_tstate_head: usize,
    /// 3.13+: the main thread's state.
    pub interp_threads_main: Option<usize>,
    pub interp_gc_collecting: Option<usize>,
    /// 3.12: pointer to the GIL state; `gil_locked`/`gil_last_holder` are relative to it.
    pub interp_ceval_gil: Option<usize>,
    pub gil_locked: Option<usize>,
    pub gil_last_holder: Option<usize>,
    /// 3.13+: the GIL state embedded in the interpreter state.
    pub interp_gil_locked: Option<usize>,
    pub interp_gil_holder: Option<usize>,
    /// A counter that moves whenever a code object of the interpreter may have been replaced
    /// at its address: 3.14+ count the code objects they free (`code_object_generation`), 3.13
    /// hand each new code object its version from `func_state.next_version` (a `u32` followed
    /// by padding: read as a word, it is the same count; 0 once it wraps, when it stops).
    pub interp_code_generation: Option<usize>,
    pub tstate_size: Option<usize>,
    pub tstate_next: usize,
    pub tstate_interp: usize,
    /// ≤3.10: `frame`; 3.11/3.12: `cframe` (then `cframe_current_frame`); 3.13+: `current_frame`.
    pub tstate_frame: usize,
    pub cframe_current_frame: Option<usize>,
    pub tstate_native_thread_id: Option<usize>,
    pub tstate_datastack_chunk: Option<usize>,
    pub tstate_thread_id: usize,
    /// `curexc_type` (≤3.11) or `current_exception` (3.12+): an exception being raised.
    pub tstate_exception: Option<usize>,
    /// ≤3.6: `exc_type` of the exception being handled.
    pub tstate_exc_type: Option<usize>,
    /// 3.7+: `exc_info` pointer; `exc_info_value` is the handled exception inside it.
    pub tstate_exc_info: Option<usize>,
    pub exc_info_value: Option<usize>,
    /// 3.15+: an int, nonzero while the thread waits for the GIL.
    pub tstate_gil_requested: Option<usize>,
    pub frame_size: Option<usize>,
    /// `f_code` / `f_executable`.
    pub frame_code: usize,
    pub frame_previous: usize,
    /// `f_lasti` (≤3.10), `prev_instr` (3.11/3.12) or `instr_ptr` (3.13+).
    pub frame_instr: usize,
    pub frame_owner: Option<usize>,
    pub frame_is_entry: Option<usize>,
    pub code_size: Option<usize>,
    pub code_qualname: Option<usize>,
    pub code_code_adaptive: Option<usize>,
    /// `co_lnotab` (≤3.9) or `co_linetable` (3.10+).
    pub code_linetable: usize,
    pub code_filename: usize,
    pub code_name: usize,
    pub code_firstlineno: usize,
    pub unicode_ascii_size: Option<usize>,
    pub unicode_compact_size: Option<usize>,
    pub bytes_sval: usize,
    /// 3.14+, for asyncio tasks: object type, type flags, int digits, set table, coroutine
    /// frames and the interpreter frame's value-stack top.
    pub object_type: Option<usize>,
    pub type_flags: Option<usize>,
    pub long_tag: Option<usize>,
    pub long_digits: Option<usize>,
    pub set_used: Option<usize>,
    pub set_table: Option<usize>,
    pub set_mask: Option<usize>,
    pub gen_iframe: Option<usize>,
    pub gen_frame_state: Option<usize>,
    pub frame_stackpointer: Option<usize>,
}

impl Layout {
    /// The generated table for a version without debug offsets (2.7, 3.6-3.12).
    pub fn for_version(major: u8, minor: u8) -> Option<Layout> {
        super::layouts::LAYOUTS
            .iter()
            .find(|l| l.python == (major, minor))
            .cloned()
    }

    /// The layout, if it has every field its version's sampling reads (else the missing
    /// field's name): unicode sizes on 3.x; 3.11+'s code-unit start, data stack and native
    /// thread id; 3.11/3.12's cframe; 3.11's entry flag and 3.12+'s frame owner.
    pub fn checked(self) -> std::result::Result<Layout, String> {
        let at_least = |v: (u8, u8)| self.python >= v;
        let required = [
            (
                "unicode_ascii_size",
                self.unicode_ascii_size,
                at_least((3, 0)),
            ),
            (
                "unicode_compact_size",
                self.unicode_compact_size,
                at_least((3, 0)),
            ),
            (
                "code_code_adaptive",
                self.code_code_adaptive,
                at_least((3, 11)),
            ),
            (
                "tstate_datastack_chunk",
                self.tstate_datastack_chunk,
                at_least((3, 11)),
            ),
            (
                "tstate_native_thread_id",
                self.tstate_native_thread_id,
                at_least((3, 11)),
            ),
            (
                "cframe_current_frame",
                self.cframe_current_frame,
                matches!(self.python, (3, 11 | 12)),
            ),
            (
                "frame_is_entry",
                self.frame_is_entry,
                self.python == (3, 11),
            ),
            ("frame_owner", self.frame_owner, at_least((3, 12))),
        ];
        match required
            .iter()
            .find(|(_, offset, needed)| *needed && offset.is_none())
        {
            Some((name, ..)) => Err(format!(
                "the struct layout of Python {}.{} lacks `{name}`",
                self.python.0, self.python.1
            )),
            None => Ok(self),
        }
    }

    /// ≤3.10 frames are heap `PyFrameObject`s; 3.11+ are `_PyInterpreterFrame`s.
    pub fn object_frames(&self) -> bool {
        self.python < (3, 11)
    }

    /// How many bytes of a thread state to read to reach every field used.
    pub fn tstate_read_size(&self) -> usize {
        self.tstate_size.unwrap_or_else(|| {
            [
                Some(self.tstate_next),
                Some(self.tstate_interp),
                Some(self.tstate_frame),
                self.tstate_native_thread_id,
                self.tstate_datastack_chunk,
                Some(self.tstate_thread_id),
                self.tstate_exception,
                self.tstate_exc_type,
                self.tstate_exc_info,
                self.tstate_gil_requested,
            ]
            .into_iter()
            .flatten()
            .max()
            .unwrap_or(0)
                + 8
        })
    }

    /// Bytes of a code object holding every field used.
    pub fn code_read_size(&self) -> usize {
        [
            self.code_qualname,
            Some(self.code_linetable),
            Some(self.code_filename),
            Some(self.code_name),
            Some(self.code_firstlineno),
        ]
        .into_iter()
        .flatten()
        .max()
        .unwrap_or(0)
            + 8
    }

    /// 3.14+: a frame's function (`f_funcobj`, the field after `previous`). Popping a frame
    /// clears it, then the code, so a frame without one is gone (or going) from its stack.
    pub fn frame_funcobj(&self) -> Option<usize> {
        (self.python >= (3, 14)).then_some(self.frame_previous + 8)
    }

    /// 3.13+: a code object's `co_framesize` (its frames' size in words: where a frame it
    /// calls is pushed), two ints after `co_firstlineno`, inside `code_read_size`. The debug
    /// offsets list neither this nor `code_nlocalsplus`, `code_flags` or `frame_stacktop`.
    pub fn code_framesize(&self) -> Option<usize> {
        (self.python >= (3, 13)).then_some(self.code_firstlineno + 8)
    }

    /// 3.13+: a code object's `co_nlocalsplus` (its frames' local variables), right after
    /// `co_firstlineno`.
    pub fn code_nlocalsplus(&self) -> Option<usize> {
        (self.python >= (3, 13)).then_some(self.code_firstlineno + 4)
    }

    /// 3.13: a frame's `stacktop` (its value stack's depth, counted from its locals, as saved
    /// when it calls; -1 while it runs), the int after its instruction pointer. Popping a
    /// frame zeroes it (3.14+ keep a pointer instead, and clear the frame's function).
    pub fn frame_stacktop(&self) -> Option<usize> {
        (self.python == (3, 13)).then_some(self.frame_instr + 8)
    }

    /// A code object's `co_flags`: ≤3.10 after the argument, local and stack counts, 3.13+
    /// five ints before `co_firstlineno` (3.11 and 3.12 do not need it).
    pub fn code_flags(&self) -> Option<usize> {
        match self.python {
            (2, _) => Some(28),
            (3, 6 | 7) => Some(32),
            (3, 8..=10) => Some(36),
            (3, 13..) => Some(self.code_firstlineno - 20),
            _ => None,
        }
    }

    /// Bytes of a frame holding every field used.
    pub fn frame_read_size(&self) -> usize {
        let needed = [
            Some(self.frame_code),
            Some(self.frame_previous),
            Some(self.frame_instr),
            self.frame_owner,
            self.frame_is_entry,
        ]
        .into_iter()
        .flatten()
        .max()
        .unwrap_or(0)
            + 8;
        self.frame_size.map_or(needed, |s| s.max(needed))
    }

    /// Parse `_Py_DebugOffsets` (3.13+). `raw` starts at `_PyRuntime`.
    pub fn from_debug_offsets(raw: &[u8]) -> Result<(Layout, u64)> {
        if raw.len() < 24 || &raw[..8] != b"xdebugpy" {
            bail!("no _Py_DebugOffsets cookie in _PyRuntime");
        }
        let word = |i: usize| {
            raw.get(i * 8..i * 8 + 8)
                .map(|b| u64::from_le_bytes(b.try_into().unwrap()))
        };
        let version = word(1).unwrap();
        let (major, minor) = ((version >> 24) as u8, (version >> 16) as u8);
        if word(2) != Some(0) {
            bail!("free-threaded CPython builds are not supported yet");
        }
        let names = debug_offset_fields(minor);
        if raw.len() < names.len() * 8 {
            bail!("_Py_DebugOffsets of Python {major}.{minor} is shorter than expected");
        }
        let get = |name: &str| -> Option<usize> {
            names
                .iter()
                .position(|n| *n == name)
                .and_then(word)
                .map(|v| v as usize)
        };
        let need = |name: &str| {
            get(name).with_context(|| {
                format!("the debug offsets of Python {major}.{minor} lack `{name}`")
            })
        };
        check_shape(&names, |i| word(i).unwrap_or(0)).map_err(|field| {
            anyhow::anyhow!(
                "the debug offsets of Python {major}.{minor} do not have the shape tachyon knows \
                 (3.{}'s): `{field}` lies outside its struct, so fields were added or moved; \
                 this Python needs a newer tachyon",
                minor.min(NEWEST_KNOWN_MINOR)
            )
        })?;
        let threads_head = need("interpreter_state.threads_head")?;
        let exception = get("thread_state.current_exception").or(Some(112));
        let layout = Layout {
            python: (major, minor),
            runtime_interpreters_head: get("runtime_state.interpreters_head"),
            interp_next: need("interpreter_state.next")?,
            interp_id: get("interpreter_state.id"),
            interp_tstate_head: threads_head,
            interp_threads_main: get("interpreter_state.threads_main").or(Some(threads_head + 8)),
            interp_gc_collecting: get("interpreter_state.gc")
                .zip(get("gc.collecting"))
                .map(|(a, b)| a + b),
            interp_gil_locked: get("interpreter_state.gil_runtime_state_locked"),
            interp_gil_holder: get("interpreter_state.gil_runtime_state_holder"),
            interp_code_generation: get("interpreter_state.code_object_generation")
                .or_else(|| code_version_from_headers(minor, get("interpreter_state.size"))),
            tstate_size: get("thread_state.size"),
            tstate_next: need("thread_state.next")?,
            tstate_interp: need("thread_state.interp")?,
            tstate_frame: need("thread_state.current_frame")?,
            tstate_native_thread_id: get("thread_state.native_thread_id"),
            tstate_datastack_chunk: get("thread_state.datastack_chunk"),
            tstate_thread_id: need("thread_state.thread_id")?,
            tstate_exception: exception,
            // exc_info follows current_exception (static-asserted in CPython).
            tstate_exc_info: exception.map(|e| e + 8),
            // The handled exception is `_PyErr_StackItem`'s first field.
            exc_info_value: get("err_stackitem.exc_value").or(Some(0)),
            tstate_gil_requested: get("thread_state.gil_requested"),
            frame_size: get("interpreter_frame.size"),
            frame_code: need("interpreter_frame.executable")?,
            frame_previous: need("interpreter_frame.previous")?,
            frame_instr: need("interpreter_frame.instr_ptr")?,
            frame_owner: get("interpreter_frame.owner"),
            code_size: get("code_object.size"),
            code_qualname: get("code_object.qualname"),
            code_code_adaptive: get("code_object.co_code_adaptive"),
            code_linetable: need("code_object.linetable")?,
            code_filename: need("code_object.filename")?,
            code_name: need("code_object.name")?,
            code_firstlineno: need("code_object.firstlineno")?,
            unicode_ascii_size: get("unicode_object.asciiobject_size"),
            unicode_compact_size: get("unicode_object.compactunicodeobject_size").or(Some(56)),
            bytes_sval: need("bytes_object.ob_sval")?,
            object_type: get("pyobject.ob_type"),
            type_flags: get("type_object.tp_flags"),
            long_tag: get("long_object.lv_tag"),
            long_digits: get("long_object.ob_digit"),
            set_used: get("set_object.used"),
            set_table: get("set_object.table"),
            set_mask: get("set_object.mask"),
            gen_iframe: get("gen_object.gi_iframe"),
            gen_frame_state: get("gen_object.gi_frame_state"),
            frame_stackpointer: get("interpreter_frame.stackpointer"),
            // Not in 3.13+: the GIL is embedded, frames are not entry-marked, exceptions are
            // objects.
            runtime_tstate_current: None,
            interp_ceval_gil: None,
            gil_locked: None,
            gil_last_holder: None,
            cframe_current_frame: None,
            tstate_exc_type: None,
            frame_is_entry: None,
        };
        Ok((layout, version))
    }
}

/// The newest minor version whose `_Py_DebugOffsets` field order is known; newer ones are
/// read as it, and checked (`check_shape`).
const NEWEST_KNOWN_MINOR: u8 = 15;

/// Fields that are sizes or counts, not offsets inside their group's struct.
const NOT_OFFSETS: [&str; 3] = [
    "unicode_object.asciiobject_size",
    "unicode_object.compactunicodeobject_size",
    "gc.generation_stats_size",
];

/// Whether a `_Py_DebugOffsets` block read by `names` has that shape: in each struct that
/// states its size, every offset lies inside it. A version that added or moved a field reads
/// shifted, and some offset then lands outside its struct (or a size reads as an offset);
/// the first such field, else Ok.
fn check_shape(names: &[String], word: impl Fn(usize) -> u64) -> Result<(), String> {
    for (i, name) in names.iter().enumerate() {
        let Some((group, field)) = name.split_once('.') else {
            continue;
        };
        let size = names
            .iter()
            .position(|n| *n == format!("{group}.size"))
            .map(&word);
        if let (Some(size), false) = (
            size,
            field == "size" || NOT_OFFSETS.contains(&name.as_str()),
        ) {
            if word(i) >= size {
                return Err(name.clone());
            }
        }
    }
    Ok(())
}

/// Field order of `_Py_DebugOffsets` for 3.13, 3.14 and 3.15 (all u64 after the cookie).
fn debug_offset_fields(minor: u8) -> Vec<String> {
    let at_least = |m: u8| minor >= m;
    let mut f: Vec<String> = ["cookie", "version", "free_threaded"]
        .iter()
        .map(std::string::ToString::to_string)
        .collect();
    let mut group = |prefix: &str, names: &[(&str, bool)]| {
        for (n, present) in names {
            if *present {
                f.push(format!("{prefix}.{n}"));
            }
        }
    };
    group(
        "runtime_state",
        &[
            ("size", true),
            ("finalizing", true),
            ("interpreters_head", true),
        ],
    );
    group(
        "interpreter_state",
        &[
            ("size", true),
            ("id", true),
            ("next", true),
            ("threads_head", true),
            ("threads_main", at_least(14)),
            ("gc", true),
            ("imports_modules", true),
            ("sysdict", true),
            ("builtins", true),
            ("ceval_gil", true),
            ("gil_runtime_state", true),
            ("gil_runtime_state_enabled", true),
            ("gil_runtime_state_locked", true),
            ("gil_runtime_state_holder", true),
            ("code_object_generation", at_least(14)),
            ("tlbc_generation", at_least(14)),
        ],
    );
    group(
        "thread_state",
        &[
            ("size", true),
            ("prev", true),
            ("next", true),
            ("interp", true),
            ("current_frame", true),
            ("base_frame", at_least(15)),
            ("last_profiled_frame", at_least(15)),
            ("last_profiled_frame_seq", at_least(15)),
            ("thread_id", true),
            ("native_thread_id", true),
            ("datastack_chunk", true),
            ("status", true),
            ("holds_gil", at_least(15)),
            ("gil_requested", at_least(15)),
            ("current_exception", at_least(15)),
            ("exc_state", at_least(15)),
        ],
    );
    group("err_stackitem", &[("exc_value", at_least(15))]);
    group(
        "interpreter_frame",
        &[
            ("size", true),
            ("previous", true),
            ("executable", true),
            ("instr_ptr", true),
            ("localsplus", true),
            ("owner", true),
            ("stackpointer", at_least(14)),
            ("tlbc_index", at_least(14)),
        ],
    );
    group(
        "code_object",
        &[
            ("size", true),
            ("filename", true),
            ("name", true),
            ("qualname", true),
            ("linetable", true),
            ("firstlineno", true),
            ("argcount", true),
            ("localsplusnames", true),
            ("localspluskinds", true),
            ("co_code_adaptive", true),
            ("co_tlbc", at_least(14)),
        ],
    );
    group("pyobject", &[("size", true), ("ob_type", true)]);
    group(
        "type_object",
        &[
            ("size", true),
            ("tp_name", true),
            ("tp_repr", true),
            ("tp_flags", true),
            ("tp_basicsize", at_least(15)),
            ("tp_dictoffset", at_least(15)),
        ],
    );
    group(
        "heap_type_object",
        &[("size", at_least(15)), ("ht_cached_keys", at_least(15))],
    );
    group(
        "tuple_object",
        &[("size", true), ("ob_item", true), ("ob_size", true)],
    );
    group(
        "list_object",
        &[("size", true), ("ob_item", true), ("ob_size", true)],
    );
    group(
        "set_object",
        &[
            ("size", at_least(14)),
            ("used", at_least(14)),
            ("table", at_least(14)),
            ("mask", at_least(14)),
        ],
    );
    group(
        "dict_object",
        &[("size", true), ("ma_keys", true), ("ma_values", true)],
    );
    group("float_object", &[("size", true), ("ob_fval", true)]);
    group(
        "long_object",
        &[("size", true), ("lv_tag", true), ("ob_digit", true)],
    );
    group(
        "bytes_object",
        &[("size", true), ("ob_size", true), ("ob_sval", true)],
    );
    group(
        "unicode_object",
        &[
            ("size", true),
            ("state", true),
            ("length", true),
            ("asciiobject_size", true),
            ("compactunicodeobject_size", at_least(15)),
        ],
    );
    group(
        "gc",
        &[
            ("size", true),
            ("collecting", true),
            ("frame", at_least(15)),
            ("generation_stats_size", at_least(15)),
            ("generation_stats", at_least(15)),
        ],
    );
    group(
        "gen_object",
        &[
            ("size", at_least(14)),
            ("gi_name", at_least(14)),
            ("gi_iframe", at_least(14)),
            ("gi_frame_state", at_least(14)),
        ],
    );
    group(
        "llist_node",
        &[("next", at_least(14)), ("prev", at_least(14))],
    );
    f
}

/// Size in bytes of `_Py_DebugOffsets` to read for a minor version (3.13: 584 ...).
pub fn debug_offsets_size(minor: u8) -> usize {
    // Generous: the parser only needs the fields up to unicode_object.
    match minor {
        13 => 584,
        14 => 760,
        _ => 888,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A `_Py_DebugOffsets` block of 3.15's shape claiming to be `minor`, `extra` inserted
    /// after `thread_state.prev` (a field a newer version might add): sizes 4096, offsets
    /// 8, 16, ... within each struct.
    fn debug_block(minor: u8, extra: Option<u64>) -> Vec<u8> {
        let names = debug_offset_fields(15);
        let mut words = vec![0u64, 0x0300_0000 | u64::from(minor) << 16, 0];
        let mut in_group = 0;
        for (i, name) in names.iter().enumerate().skip(3) {
            let group = name.split_once('.').map(|g| g.0);
            if i > 3 && group != names[i - 1].split_once('.').map(|g| g.0) {
                in_group = 0;
            }
            in_group += 1;
            words.push(if name.ends_with(".size") {
                4096
            } else {
                8 * in_group
            });
            if name == "thread_state.prev" {
                words.extend(extra);
            }
        }
        let mut raw: Vec<u8> = words.iter().flat_map(|w| w.to_le_bytes()).collect();
        raw[..8].copy_from_slice(b"xdebugpy");
        raw
    }

    #[test]
    fn a_newer_python_is_read_as_the_newest_known_shape_or_refused_naming_the_field() {
        let (layout, _) = Layout::from_debug_offsets(&debug_block(16, None)).unwrap();
        assert_eq!(layout.python, (3, 16));
        assert!(layout.checked().is_ok());
        let err = Layout::from_debug_offsets(&debug_block(16, Some(24)))
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with(
                "the debug offsets of Python 3.16 do not have the shape tachyon knows (3.15's): `"
            ),
            "{err}"
        );
        assert!(err.ends_with("this Python needs a newer tachyon"), "{err}");
    }

    #[test]
    fn every_generated_layout_has_what_its_version_reads() {
        for layout in super::super::layouts::LAYOUTS {
            assert!(layout.clone().checked().is_ok(), "{:?}", layout.python);
        }
    }

    #[test]
    fn a_missing_field_is_named_at_load_time() {
        let mut layout = Layout::for_version(3, 11).unwrap();
        layout.code_code_adaptive = None;
        assert_eq!(
            layout.checked().unwrap_err(),
            "the struct layout of Python 3.11 lacks `code_code_adaptive`"
        );
    }

    #[test]
    fn the_code_version_of_3_13_is_used_only_at_its_headers_interpreter_size() {
        let headers = ObjectLayout::for_version((3, 13)).unwrap();
        let size = headers.interp_size;
        assert!(headers.interp_code_version.is_some());
        assert_eq!(
            code_version_from_headers(13, Some(size)),
            headers.interp_code_version
        );
        assert_eq!(code_version_from_headers(13, Some(size + 8)), None);
        assert_eq!(code_version_from_headers(13, None), None);
        let size_3_12 = ObjectLayout::for_version((3, 12)).unwrap().interp_size;
        assert_eq!(code_version_from_headers(12, Some(size_3_12)), None);
    }

    #[test]
    fn debug_offset_field_positions_match_the_research_table() {
        let pos = |minor: u8, name: &str| {
            debug_offset_fields(minor)
                .iter()
                .position(|n| n == name)
                .unwrap()
                * 8
        };
        assert_eq!(pos(13, "thread_state.current_frame"), 184);
        assert_eq!(pos(14, "thread_state.current_frame"), 208);
        assert_eq!(pos(15, "thread_state.native_thread_id"), 248);
        assert_eq!(pos(13, "code_object.co_code_adaptive"), 344);
        assert_eq!(pos(14, "interpreter_frame.owner"), 288);
        assert_eq!(pos(15, "unicode_object.compactunicodeobject_size"), 744);
        assert_eq!(pos(13, "unicode_object.asciiobject_size"), 560);
        assert_eq!(pos(13, "gc.collecting"), 576);
        assert_eq!(pos(14, "gc.collecting"), 656);
        assert_eq!(pos(15, "gc.collecting"), 760);
        assert_eq!(pos(14, "gen_object.gi_iframe"), 680);
        assert_eq!(pos(15, "gen_object.gi_frame_state"), 816);
        assert_eq!(pos(15, "llist_node.next"), 824);
        assert_eq!(pos(14, "set_object.table"), 512);
        assert_eq!(pos(15, "long_object.lv_tag"), 672);
    }
}

/// 3.8-3.13, for `--async-aware`: where asyncio keeps its tasks (module, dict, set, list,
/// weakref, int, type, coroutine and frame internals, from the headers) and the C task's fields
/// (observed in a live task: the struct is private to `_asynciomodule.c`); and 3.13's code
/// version counter, which its debug offsets do not give. Generated into layouts.rs by
/// tools/gen_layouts.py; `None` where a version has no such field.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ObjectLayout {
    pub python: (u8, u8),
    /// `sizeof(PyInterpreterState)`: a 3.13 whose debug offsets give another size was built
    /// with another layout, and `interp_code_version` is not used.
    pub interp_size: usize,
    /// 3.13: `func_state.next_version`, the version the next new code object takes.
    pub interp_code_version: Option<usize>,
    /// `sys.modules`.
    pub interp_modules: usize,
    pub type_name: usize,
    pub type_basicsize: usize,
    pub type_flags: usize,
    pub type_base: usize,
    pub type_dictoffset: usize,
    /// The keys an instance's split dict or inline values share (3.11+).
    pub heaptype_cached_keys: usize,
    pub module_dict: usize,
    pub dict_keys: usize,
    pub dict_values: usize,
    /// ≤3.10: `dk_size`; 3.11+: `dk_log2_size`, `dk_log2_index_bytes`, `dk_kind`.
    pub keys_size: Option<usize>,
    pub keys_log2_size: Option<usize>,
    pub keys_log2_index_bytes: Option<usize>,
    pub keys_kind: Option<usize>,
    pub keys_nentries: usize,
    pub keys_indices: usize,
    /// Where a `PyDictValues` keeps its values (3.13 has a header).
    pub values_values: usize,
    pub set_mask: usize,
    pub set_table: usize,
    pub list_items: usize,
    pub tuple_items: usize,
    /// A bound method's `__self__`.
    pub method_self: usize,
    pub var_size: usize,
    pub weakref_object: usize,
    /// 3.12+: `lv_tag` (digit count and sign); before, the digit count is `ob_size`.
    pub long_tag: Option<usize>,
    pub long_digits: usize,
    /// ≤3.10: the coroutine's frame object and its value stack (`f_stacktop` ≤3.9;
    /// `f_stackdepth` and `f_state` 3.10).
    pub gen_frame: Option<usize>,
    pub frame_valuestack: Option<usize>,
    pub frame_stacktop: Option<usize>,
    pub frame_stackdepth: Option<usize>,
    pub frame_state: Option<usize>,
    /// 3.11+: the coroutine's embedded interpreter frame, its state and value stack.
    pub gen_iframe: Option<usize>,
    pub gen_frame_state: Option<usize>,
    pub iframe_stacktop: Option<usize>,
    pub iframe_localsplus: Option<usize>,
    pub task_size: usize,
    pub task_coro: usize,
    pub task_name: usize,
    pub task_fut_waiter: usize,
    pub fut_loop: usize,
    pub fut_state: usize,
    /// The first done callback, and the list of `(callback, context)` of the others.
    pub fut_callback0: usize,
    pub fut_callbacks: usize,
}

/// 3.13's code version counter, from its headers: only for an interpreter state of the size
/// the headers give (another build's may have its fields elsewhere).
fn code_version_from_headers(minor: u8, interp_size: Option<usize>) -> Option<usize> {
    let headers = ObjectLayout::for_version((3, minor))?;
    headers
        .interp_code_version
        .filter(|_| interp_size == Some(headers.interp_size))
}

impl ObjectLayout {
    pub fn for_version(python: (u8, u8)) -> Option<&'static ObjectLayout> {
        super::layouts::OBJECT_LAYOUTS
            .iter()
            .find(|l| l.python == python)
    }
}
