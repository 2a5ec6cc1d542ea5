//! Read-only access to another process's memory (process_vm_readv) and its memory map.
//! Nothing here ever writes to the target.

use std::io::IoSliceMut;
use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use nix::errno::Errno;
use nix::sys::uio::{process_vm_readv, RemoteIoVec};
use nix::unistd::Pid;

/// Why a read failed: the process is gone, we may not read it, or the address is bad.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReadError {
    Exited,
    Permission,
    Fault,
}

impl std::fmt::Display for ReadError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            ReadError::Exited => "the process has exited",
            ReadError::Permission => "permission denied reading process memory",
            ReadError::Fault => "invalid address in process memory",
        })
    }
}

impl std::error::Error for ReadError {}

#[derive(Clone)]
pub struct Process {
    pub pid: i32,
}

impl Process {
    pub fn new(pid: i32) -> Self {
        Process { pid }
    }

    /// Fill `buf` from `addr` in the target.
    pub fn read(&self, addr: u64, buf: &mut [u8]) -> Result<(), ReadError> {
        if buf.is_empty() {
            return Ok(());
        }
        if addr == 0 {
            return Err(ReadError::Fault);
        }
        let len = buf.len();
        let remote = [RemoteIoVec {
            base: addr as usize,
            len,
        }];
        match process_vm_readv(
            Pid::from_raw(self.pid),
            &mut [IoSliceMut::new(buf)],
            &remote,
        ) {
            Ok(n) if n == len => Ok(()),
            Ok(_) => Err(ReadError::Fault),
            Err(e) => Err(self.classify(e)),
        }
    }

    /// Several regions in one syscall. Returns the number of bytes read: the kernel stops at
    /// the first region it cannot read, so regions are complete in order up to that count.
    pub fn read_many(&self, regions: &mut [(u64, &mut [u8])]) -> Result<usize, ReadError> {
        if regions.is_empty() {
            return Ok(0);
        }
        let remote: Vec<RemoteIoVec> = regions
            .iter()
            .map(|(a, b)| RemoteIoVec {
                base: *a as usize,
                len: b.len(),
            })
            .collect();
        let mut local: Vec<IoSliceMut<'_>> = regions
            .iter_mut()
            .map(|(_, b)| IoSliceMut::new(b))
            .collect();
        match process_vm_readv(Pid::from_raw(self.pid), &mut local, &remote) {
            Ok(n) => Ok(n),
            Err(Errno::EFAULT) => Ok(0),
            Err(e) => Err(self.classify(e)),
        }
    }

    fn classify(&self, e: Errno) -> ReadError {
        match e {
            Errno::ESRCH => ReadError::Exited,
            Errno::EPERM | Errno::EACCES => ReadError::Permission,
            _ if !self.is_alive() => ReadError::Exited,
            _ => ReadError::Fault,
        }
    }

    pub fn read_u64(&self, addr: u64) -> Result<u64, ReadError> {
        let mut b = [0u8; 8];
        self.read(addr, &mut b)?;
        Ok(u64::from_le_bytes(b))
    }

    pub fn read_u32(&self, addr: u64) -> Result<u32, ReadError> {
        let mut b = [0u8; 4];
        self.read(addr, &mut b)?;
        Ok(u32::from_le_bytes(b))
    }

    pub fn is_alive(&self) -> bool {
        // A zombie (exited, not yet reaped) has no memory left to read.
        match std::fs::read_to_string(format!("/proc/{}/stat", self.pid)) {
            Ok(stat) => !matches!(
                stat.rsplit(')')
                    .next()
                    .and_then(|s| s.trim_start().chars().next()),
                Some('Z' | 'X')
            ),
            Err(_) => false,
        }
    }

    pub fn maps(&self) -> Result<Vec<Mapping>> {
        let path = format!("/proc/{}/maps", self.pid);
        let text = std::fs::read_to_string(&path).map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => anyhow::anyhow!("process {} does not exist", self.pid),
            std::io::ErrorKind::PermissionDenied => anyhow::anyhow!(permission_help(self.pid)),
            _ => anyhow::anyhow!("cannot read {path}: {e}"),
        })?;
        Ok(text.lines().filter_map(Mapping::parse).collect())
    }

    /// OS thread ids of the process.
    pub fn thread_ids(&self) -> Vec<u32> {
        std::fs::read_dir(format!("/proc/{}/task", self.pid))
            .map(|d| {
                d.filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
                    .collect()
            })
            .unwrap_or_default()
    }

    /// A path through which this process's view of `path` can be opened (works across mount
    /// namespaces and for deleted files).
    pub fn open_path(&self, path: &str) -> PathBuf {
        let rooted = PathBuf::from(format!("/proc/{}/root{}", self.pid, path));
        if rooted.exists() {
            rooted
        } else {
            PathBuf::from(path)
        }
    }

    pub fn exe(&self) -> Result<PathBuf> {
        std::fs::read_link(format!("/proc/{}/exe", self.pid))
            .with_context(|| format!("cannot read /proc/{}/exe", self.pid))
    }
}

/// Fails with a clear message unless `pid` names a live process we may read.
pub fn check_pid(pid: i32) -> Result<()> {
    if pid <= 0 || !std::path::Path::new(&format!("/proc/{pid}")).exists() {
        bail!("no process with PID {pid}");
    }
    Process::new(pid).maps().map(|_| ())
}

pub fn permission_help(pid: i32) -> String {
    format!(
        "permission denied reading the memory of PID {pid}: tachyon needs ptrace access (same user and \
         kernel.yama.ptrace_scope=0, or root/CAP_SYS_PTRACE; in Docker run with --cap-add=SYS_PTRACE)"
    )
}

#[derive(Debug, Clone)]
pub struct Mapping {
    pub start: u64,
    pub end: u64,
    pub perms: String,
    pub offset: u64,
    pub path: String,
}

impl Mapping {
    fn parse(line: &str) -> Option<Mapping> {
        let mut parts = line.splitn(6, ' ');
        let range = parts.next()?;
        let perms = parts.next()?.to_owned();
        let offset = u64::from_str_radix(parts.next()?, 16).ok()?;
        let _dev = parts.next()?;
        let _inode = parts.next()?;
        let path = parts.next().unwrap_or("").trim().to_owned();
        let (s, e) = range.split_once('-')?;
        Some(Mapping {
            start: u64::from_str_radix(s, 16).ok()?,
            end: u64::from_str_radix(e, 16).ok()?,
            perms,
            offset,
            path,
        })
    }
}
