//! Attaching: find the CPython runtime in a process, work out its version, and pick the
//! struct layout. 3.13+ are found through the `.PyRuntime` section and their debug offsets;
//! 2.7 and 3.6-3.12 through ELF symbols (`_PyRuntime`, `interp_head`) and generated tables.

use std::path::Path;

use super::elf::Elf;
use super::layout::{debug_offsets_size, Layout};
use super::process::{Mapping, Process, ReadError};

/// Where the thread holding the GIL can be read.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum GilSource {
    /// An address holding the holder's `PyThreadState*` (2.7-3.11).
    CurrentPointer(u64),
    /// 3.12: the interpreter state's pointer at `gil` to a struct with `locked` and `holder`.
    CevalPointer {
        gil: usize,
        locked: usize,
        holder: usize,
    },
    /// 3.13+: `locked` and `holder` embedded in the interpreter state.
    Embedded { locked: usize, holder: usize },
}

/// Why a process cannot be sampled.
#[derive(Debug)]
pub enum AttachError {
    /// No process with that PID.
    NotFound(i32),
    /// No CPython runtime in it, or not one that is initialised yet (`why` says which).
    NotPython { pid: i32, why: String },
    /// A Python tachyon cannot read (`why`: the version, or the struct field it lacks).
    Unsupported { pid: i32, why: String },
    /// Its memory may not be read; `help` names the missing capability or setting.
    Permission { pid: i32, help: String },
    /// It exited while being attached.
    Exited(i32),
}

impl AttachError {
    /// Whether waiting could help: a runtime still starting up can appear; the rest cannot.
    pub fn may_pass(&self) -> bool {
        matches!(self, AttachError::NotPython { .. })
    }

    pub fn from_read(pid: i32, e: ReadError) -> AttachError {
        match e {
            ReadError::Permission => AttachError::Permission {
                pid,
                help: super::process::permission_help(pid),
            },
            ReadError::Exited => AttachError::Exited(pid),
            ReadError::Fault => AttachError::NotPython {
                pid,
                why: format!("cannot read the CPython runtime of PID {pid}"),
            },
        }
    }
}

impl std::fmt::Display for AttachError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            AttachError::NotFound(pid) => write!(f, "no process with PID {pid}"),
            AttachError::NotPython { why, .. } | AttachError::Unsupported { why, .. } => {
                f.write_str(why)
            }
            AttachError::Permission { help, .. } => f.write_str(help),
            AttachError::Exited(pid) => write!(f, "process {pid} exited"),
        }
    }
}

impl std::error::Error for AttachError {}

pub struct Target {
    pub process: Process,
    pub layout: Layout,
    /// (major, minor, micro); micro is 0 where the process does not tell it.
    pub version: (u8, u8, u8),
    /// Address of the pointer to the first interpreter state.
    pub interp_head_addr: u64,
    pub gil: GilSource,
    /// Path of the binary holding the runtime (for messages).
    pub binary: String,
    /// Address of `Py_None`, to tell "no exception" from a handled one.
    pub none_addr: Option<u64>,
    /// 3.12: address of `_Py_next_func_version` (a `u32`), the version the next new code
    /// object takes, whoever makes it; found by its symbol, so only where the binary keeps
    /// its symbol table or its debug file is installed.
    pub code_version_addr: Option<u64>,
}

/// Versions with a layout table, plus 3.13+ through debug offsets.
pub const SUPPORTED: &str = "2.7 and 3.6-3.15";

/// `(major, minor)` from names like `libpython3.12.so.1.0`, `python3.12`, `python2.7`.
pub fn version_from_name(name: &str) -> Option<(u8, u8)> {
    let base = name.rsplit('/').next()?;
    let rest = &base[base.find("python")? + "python".len()..];
    let (major, tail) = rest.split_once('.')?;
    let minor: String = tail.chars().take_while(char::is_ascii_digit).collect();
    Some((major.parse().ok()?, minor.parse().ok()?))
}

/// Binaries that may hold the runtime, with the address their first mapping starts at.
fn candidate_binaries(maps: &[Mapping], exe: Option<&Path>) -> Vec<(String, u64)> {
    let mut out: Vec<(String, u64)> = Vec::new();
    let mut push = |path: &str| {
        if out.iter().any(|(p, _)| p == path) {
            return;
        }
        if let Some(first) = maps
            .iter()
            .filter(|m| m.path == path)
            .map(|m| m.start)
            .min()
        {
            out.push((path.to_owned(), first));
        }
    };
    for m in maps {
        let base = m.path.rsplit('/').next().unwrap_or("");
        if base.starts_with("libpython") {
            push(&m.path);
        }
    }
    if let Some(exe) = exe.and_then(|e| e.to_str()) {
        push(exe);
    }
    for m in maps {
        let base = m.path.rsplit('/').next().unwrap_or("");
        if base.contains("python") && !base.contains(".cpython-") {
            push(&m.path);
        }
    }
    out
}

impl Target {
    pub fn attach(pid: i32) -> Result<Target, AttachError> {
        let process = Process::new(pid);
        let maps = process.maps()?;
        let exe = process.exe().ok();
        let candidates = candidate_binaries(&maps, exe.as_deref());
        let not_python = |why: String| AttachError::NotPython { pid, why };
        if candidates.is_empty() {
            return Err(not_python(format!(
                "PID {pid} is not a Python process (no python executable or libpython is mapped)"
            )));
        }
        let mut last_err = None;
        for (path, base) in &candidates {
            let elf = match Elf::open(&process.open_path(path)) {
                Ok(elf) => elf,
                Err(e) => {
                    last_err = Some(not_python(format!("{e:#}")));
                    continue;
                }
            };
            let bias = base.wrapping_sub(elf.first_load_vaddr);
            match Target::from_binary(&process, path, &elf, bias) {
                Ok(Some(t)) => return Ok(t),
                Ok(None) => continue,
                Err(e) => last_err = Some(e),
            }
        }
        Err(last_err.unwrap_or_else(|| {
            not_python(format!(
                "PID {pid} is not a Python process (no CPython runtime found in {})",
                candidates[0].0
            ))
        }))
    }

    fn from_binary(
        process: &Process,
        path: &str,
        elf: &Elf,
        bias: u64,
    ) -> Result<Option<Target>, AttachError> {
        let pid = process.pid;
        let read_err = |e: ReadError| AttachError::from_read(pid, e);
        let unsupported = |why: String| AttachError::Unsupported { pid, why };
        let missing = |what: &str| unsupported(format!("{what} (in {path})"));
        // A symbol the runtime is found by: absent from an executable that links libpython,
        // until the loader maps the library.
        let no_symbol = |name: &str| AttachError::NotPython {
            pid,
            why: format!("no {name} symbol in {path}"),
        };
        let none_addr = elf.symbol("_Py_NoneStruct").map(|a| bias + a);
        // 3.13+: _Py_DebugOffsets at the start of the .PyRuntime section.
        if let Some(section) = elf.section(".PyRuntime") {
            let runtime = bias + section.addr;
            let mut head = [0u8; 24];
            process.read(runtime, &mut head).map_err(read_err)?;
            if &head[..8] == b"xdebugpy" {
                let minor = (u64::from_le_bytes(head[8..16].try_into().unwrap()) >> 16) as u8;
                let mut raw = vec![0u8; debug_offsets_size(minor)];
                process.read(runtime, &mut raw).map_err(read_err)?;
                let (layout, hex) =
                    Layout::from_debug_offsets(&raw).map_err(|e| unsupported(format!("{e:#}")))?;
                let version = ((hex >> 24) as u8, (hex >> 16) as u8, (hex >> 8) as u8);
                if version.1 > 15 {
                    return Err(unsupported(format!(
                        "Python {}.{} is not supported (tachyon supports {SUPPORTED})",
                        version.0, version.1
                    )));
                }
                let head_off = layout
                    .runtime_interpreters_head
                    .ok_or_else(|| missing("the debug offsets lack `interpreters_head`"))?;
                let gil = GilSource::Embedded {
                    locked: layout
                        .interp_gil_locked
                        .ok_or_else(|| missing("the debug offsets lack the GIL's `locked`"))?,
                    holder: layout
                        .interp_gil_holder
                        .ok_or_else(|| missing("the debug offsets lack the GIL's `holder`"))?,
                };
                return Ok(Some(Target {
                    process: process.clone(),
                    version,
                    interp_head_addr: runtime + head_off as u64,
                    gil,
                    layout: layout.checked().map_err(unsupported)?,
                    binary: path.to_owned(),
                    none_addr,
                    code_version_addr: None,
                }));
            }
        }
        let Some((major, minor)) = version_from_name(path) else {
            return Ok(None);
        };
        if (major, minor) >= (3, 13) {
            // Its debug offsets are not readable yet: the loader is still mapping the binary.
            return Err(AttachError::NotPython {
                pid,
                why: format!("the CPython runtime of PID {pid} is not initialised yet"),
            });
        }
        let layout = Layout::for_version(major, minor).ok_or_else(|| {
            unsupported(format!(
                "Python {major}.{minor} is not supported (tachyon supports {SUPPORTED})"
            ))
        })?;
        let mut version = (major, minor, 0);
        if let Some(sym) = elf.symbol("Py_Version") {
            let hex = process.read_u32(bias + sym).map_err(read_err)?;
            version.2 = (hex >> 8) as u8;
        }
        let (interp_head_addr, gil) = if (major, minor) >= (3, 7) {
            let runtime = bias
                + elf
                    .symbol("_PyRuntime")
                    .ok_or_else(|| no_symbol("_PyRuntime"))?;
            let head = layout
                .runtime_interpreters_head
                .ok_or_else(|| missing("the layout lacks `interpreters.head`"))?;
            let tstate_current = if (major, minor) == (3, 7) {
                layout.runtime_tstate_current.map(|off| {
                    tstate_current_3_7(process, runtime, head as u64, off as u64) as usize
                })
            } else {
                layout.runtime_tstate_current
            };
            let gil = match (
                tstate_current,
                layout.interp_ceval_gil,
                layout.gil_locked,
                layout.gil_last_holder,
            ) {
                (Some(off), ..) => GilSource::CurrentPointer(runtime + off as u64),
                (None, Some(gil), Some(locked), Some(holder)) => GilSource::CevalPointer {
                    gil,
                    locked,
                    holder,
                },
                _ => return Err(missing("the layout says nowhere where the GIL is")),
            };
            (runtime + head as u64, gil)
        } else {
            let head = bias
                + elf
                    .symbol("interp_head")
                    .ok_or_else(|| no_symbol("interp_head"))?;
            let current = elf
                .symbol("_PyThreadState_Current")
                .ok_or_else(|| no_symbol("_PyThreadState_Current"))?;
            (head, GilSource::CurrentPointer(bias + current))
        };
        Ok(Some(Target {
            process: process.clone(),
            layout: layout.checked().map_err(unsupported)?,
            version,
            interp_head_addr,
            gil,
            binary: path.to_owned(),
            none_addr,
            code_version_addr: ((major, minor) == (3, 12))
                .then(|| elf.symbol("_Py_next_func_version"))
                .flatten()
                .map(|a| bias + a),
        }))
    }

    /// The first interpreter state, or None while the runtime is not initialised yet.
    pub fn first_interpreter(&self) -> Result<Option<u64>, ReadError> {
        let interp = self.process.read_u64(self.interp_head_addr)?;
        if interp == 0 {
            return Ok(None);
        }
        let head = self
            .process
            .read_u64(interp + self.layout.interp_tstate_head as u64)?;
        Ok((head != 0).then_some(interp))
    }
}

/// 3.7.0-3.7.3 keep `_PyRuntime.gilstate.tstate_current` 88 bytes before where 3.7.4+ (whose
/// headers the table comes from) keep it; neither says its patch level. The right one is
/// followed, 16 bytes on, by `autoInterpreterState`, which holds the main interpreter
/// (`interpreters.main`, 8 bytes after `interpreters.head`). Before the runtime is initialised
/// both read zero and 3.7.4+'s is kept.
pub const TSTATE_CURRENT_3_7_EARLY: u64 = 1392;

fn tstate_current_3_7(process: &Process, runtime: u64, head: u64, table: u64) -> u64 {
    let main = process.read_u64(runtime + head + 8).unwrap_or(0);
    [table, TSTATE_CURRENT_3_7_EARLY]
        .into_iter()
        .find(|&off| main != 0 && process.read_u64(runtime + off + 16) == Ok(main))
        .unwrap_or(table)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A `_PyRuntime` laid out as 3.7.0-3.7.3 or 3.7.4+ lay it out (in this process's own
    /// memory): the GIL holder's offset is the one followed by the main interpreter.
    #[test]
    fn tstate_current_of_3_7_follows_the_patch_levels_layout() {
        let me = Process::new(std::process::id() as i32);
        let layout = Layout::for_version(3, 7).unwrap();
        let head = layout.runtime_interpreters_head.unwrap() as u64;
        let table = layout.runtime_tstate_current.unwrap() as u64;
        assert_eq!(table, 1480, "3.7.4+'s header offset");
        let main = 0x5555_0000_1000u64;
        for (auto_at, want) in [
            (Some(TSTATE_CURRENT_3_7_EARLY), TSTATE_CURRENT_3_7_EARLY),
            (Some(table), table),
            (None, table),
        ] {
            let mut runtime = vec![0u64; 256];
            runtime[(head / 8 + 1) as usize] = main;
            if let Some(at) = auto_at {
                runtime[(at / 8 + 2) as usize] = main;
            }
            let addr = runtime.as_ptr() as u64;
            assert_eq!(tstate_current_3_7(&me, addr, head, table), want);
        }
        // Not initialised: no main interpreter yet, 3.7.4+'s offset.
        let runtime = vec![0u64; 256];
        assert_eq!(
            tstate_current_3_7(&me, runtime.as_ptr() as u64, head, table),
            table
        );
    }

    #[test]
    fn versions_from_binary_names() {
        assert_eq!(
            version_from_name("/usr/lib/libpython3.12.so.1.0"),
            Some((3, 12))
        );
        assert_eq!(
            version_from_name("/root/.pyenv/versions/2.7.18/bin/python2.7"),
            Some((2, 7))
        );
        assert_eq!(version_from_name("/usr/bin/python3.10"), Some((3, 10)));
        assert_eq!(
            version_from_name("/usr/lib/libpython3.6m.so.1.0"),
            Some((3, 6))
        );
        assert_eq!(version_from_name("/usr/bin/python"), None);
        assert_eq!(version_from_name("/usr/bin/python3"), None);
    }

    #[test]
    fn attach_errors_are_typed() {
        // PID 0 is never a process we can read: /proc/0 does not exist.
        let gone = Target::attach(0).err().unwrap();
        assert!(matches!(gone, AttachError::NotFound(0)), "{gone:?}");
        assert!(!gone.may_pass());
        // Our own process runs no CPython.
        let me = std::process::id() as i32;
        let err = Target::attach(me).err().unwrap();
        assert!(
            matches!(err, AttachError::NotPython { pid, .. } if pid == me),
            "{err:?}"
        );
        assert!(err.may_pass());
    }
}
