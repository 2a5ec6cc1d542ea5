//! Attaching: find the CPython runtime in a process, work out its version, and pick the
//! struct layout. 3.13+ are found through the `.PyRuntime` section and their debug offsets;
//! 2.7 and 3.6-3.12 through ELF symbols (`_PyRuntime`, `interp_head`) and generated tables.

use std::path::Path;

use anyhow::{bail, Context, Result};

use super::elf::Elf;
use super::layout::{debug_offsets_size, Layout};
use super::process::{Mapping, Process, ReadError};

/// Where the thread holding the GIL can be read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GilSource {
    /// An address holding the holder's `PyThreadState*` (2.7-3.11).
    CurrentPointer(u64),
    /// 3.12: `interp->ceval.gil` points to a `{last_holder, locked}` struct.
    CevalPointer,
    /// 3.13+: the GIL state is embedded in the interpreter state.
    Embedded,
}

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
    pub fn attach(pid: i32) -> Result<Target> {
        let process = Process::new(pid);
        let maps = process.maps()?;
        let exe = process.exe().ok();
        let candidates = candidate_binaries(&maps, exe.as_deref());
        if candidates.is_empty() {
            bail!(
                "PID {pid} is not a Python process (no python executable or libpython is mapped)"
            );
        }
        let mut last_err = None;
        for (path, base) in &candidates {
            let elf = match Elf::open(&process.open_path(path)) {
                Ok(elf) => elf,
                Err(e) => {
                    last_err = Some(e);
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
        match last_err {
            Some(e) => Err(e),
            None => bail!(
                "PID {pid} is not a Python process (no CPython runtime found in {})",
                candidates[0].0
            ),
        }
    }

    fn from_binary(process: &Process, path: &str, elf: &Elf, bias: u64) -> Result<Option<Target>> {
        let read_err = |e: ReadError| match e {
            ReadError::Permission => anyhow::anyhow!(super::process::permission_help(process.pid)),
            ReadError::Exited => anyhow::anyhow!("process {} exited", process.pid),
            ReadError::Fault => {
                anyhow::anyhow!("cannot read the CPython runtime of process {}", process.pid)
            }
        };
        // 3.13+: _Py_DebugOffsets at the start of the .PyRuntime section.
        if let Some(section) = elf.section(".PyRuntime") {
            let runtime = bias + section.addr;
            let mut head = [0u8; 24];
            process.read(runtime, &mut head).map_err(read_err)?;
            if &head[..8] == b"xdebugpy" {
                let minor = (u64::from_le_bytes(head[8..16].try_into().unwrap()) >> 16) as u8;
                let mut raw = vec![0u8; debug_offsets_size(minor)];
                process.read(runtime, &mut raw).map_err(read_err)?;
                let (layout, hex) = Layout::from_debug_offsets(&raw)?;
                let version = ((hex >> 24) as u8, (hex >> 16) as u8, (hex >> 8) as u8);
                if version.1 > 15 {
                    bail!(
                        "Python {}.{} is not supported (tachyon supports {SUPPORTED})",
                        version.0,
                        version.1
                    );
                }
                let head_off = layout
                    .runtime_interpreters_head
                    .context("debug offsets lack interpreters_head")?;
                return Ok(Some(Target {
                    process: process.clone(),
                    version,
                    interp_head_addr: runtime + head_off as u64,
                    gil: GilSource::Embedded,
                    layout,
                    binary: path.to_owned(),
                    none_addr: elf.symbol("_Py_NoneStruct").map(|a| bias + a),
                }));
            }
        }
        let Some((major, minor)) = version_from_name(path) else {
            return Ok(None);
        };
        if (major, minor) >= (3, 13) {
            // Its debug offsets are not readable yet: the loader is still mapping the binary.
            bail!(
                "the CPython runtime of PID {} is not initialised yet",
                process.pid
            );
        }
        let layout = Layout::for_version(major, minor).with_context(|| {
            format!("Python {major}.{minor} is not supported (tachyon supports {SUPPORTED})")
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
                    .with_context(|| format!("no _PyRuntime symbol in {path}"))?;
            let head = runtime
                + layout
                    .runtime_interpreters_head
                    .context("layout lacks interpreters.head")? as u64;
            let gil = match layout.runtime_tstate_current {
                Some(off) => GilSource::CurrentPointer(runtime + off as u64),
                None => GilSource::CevalPointer,
            };
            (head, gil)
        } else {
            let head = bias
                + elf.symbol("interp_head").with_context(|| {
                    format!("no interp_head symbol in {path} (stripped binary?)")
                })?;
            let current = elf
                .symbol("_PyThreadState_Current")
                .context("no _PyThreadState_Current symbol")?;
            (head, GilSource::CurrentPointer(bias + current))
        };
        let none_addr = elf.symbol("_Py_NoneStruct").map(|a| bias + a);
        Ok(Some(Target {
            process: process.clone(),
            layout,
            version,
            interp_head_addr,
            gil,
            binary: path.to_owned(),
            none_addr,
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
            .read_u64(interp + self.layout.interp_tstate_head.unwrap_or(0) as u64)?;
        Ok((head != 0).then_some(interp))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
