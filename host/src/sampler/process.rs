//! Read-only access to another process's memory (process_vm_readv) and its memory map.
//! Nothing here ever writes to the target.

use std::io::IoSliceMut;
use std::path::PathBuf;

use anyhow::{Context, Result};
use nix::errno::Errno;
use tachyon_plugin_api::FxHashMap;

use super::discover::AttachError;
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

/// End of x86_64 user space: a pointer at or past it (or a region running past it) is torn
/// or corrupt, never readable.
const USER_SPACE_END: u64 = 1 << 47;
/// The kernel's IOV_MAX: the most regions one `process_vm_readv` takes.
pub const IOV_MAX: usize = 1024;

/// Whether `len` bytes at `addr` lie in user space, with no wrap-around. Target pointers
/// are untrusted: a torn read can hold any 64-bit value.
pub fn readable_range(addr: u64, len: usize) -> bool {
    addr != 0
        && addr
            .checked_add(len as u64)
            .is_some_and(|end| end <= USER_SPACE_END)
}

/// `base + offset` for a field of a remote object. A torn `base` wraps to an address that
/// `readable_range` refuses, so the read becomes a counted fault, never a panic.
pub fn field_addr(base: u64, offset: usize) -> u64 {
    base.wrapping_add(offset as u64)
}

/// `remote` read by `read_batch` (given the regions' indices and their length together) in
/// calls of at most `IOV_MAX` regions, the most one `process_vm_readv` takes (hundreds of
/// threads need more), in order, up to the first call that falls short; bytes read.
fn in_batches(
    remote: &[RemoteIoVec],
    mut read_batch: impl FnMut(std::ops::Range<usize>, usize) -> Result<usize, ReadError>,
) -> Result<usize, ReadError> {
    let mut read = 0;
    for start in (0..remote.len()).step_by(IOV_MAX) {
        let batch = start..(start + IOV_MAX).min(remote.len());
        let len: usize = remote[batch.clone()].iter().map(|r| r.len).sum();
        let got = read_batch(batch, len)?;
        read += got;
        if got < len {
            break;
        }
    }
    Ok(read)
}

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
        if !readable_range(addr, buf.len()) {
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

    /// Regions read back to back into `buf` (as long as their lengths together); bytes read.
    /// The caller checks the regions are in user space.
    pub fn read_packed(&self, remote: &[RemoteIoVec], buf: &mut [u8]) -> Result<usize, ReadError> {
        let mut at = 0;
        in_batches(remote, |batch, len| {
            let got = self.readv(
                &mut [IoSliceMut::new(&mut buf[at..at + len])],
                &remote[batch],
            )?;
            at += len;
            Ok(got)
        })
    }

    /// Several regions, each into its own buffer. Returns the number of bytes read: the
    /// kernel stops at the first region it cannot read, so regions are complete in order up
    /// to that count.
    pub fn read_many(&self, regions: &mut [(u64, &mut [u8])]) -> Result<usize, ReadError> {
        // Like the kernel, stop at the first region that cannot be read.
        let readable = regions
            .iter()
            .position(|(a, b)| !readable_range(*a, b.len()))
            .unwrap_or(regions.len());
        let remote: Vec<RemoteIoVec> = regions[..readable]
            .iter()
            .map(|(a, b)| RemoteIoVec {
                base: *a as usize,
                len: b.len(),
            })
            .collect();
        in_batches(&remote, |batch, _| {
            let mut local: Vec<IoSliceMut<'_>> = regions[batch.clone()]
                .iter_mut()
                .map(|(_, b)| IoSliceMut::new(b))
                .collect();
            self.readv(&mut local, &remote[batch])
        })
    }

    /// One `process_vm_readv` of several regions: bytes read (none when the first region
    /// cannot be read).
    fn readv(
        &self,
        local: &mut [IoSliceMut<'_>],
        remote: &[RemoteIoVec],
    ) -> Result<usize, ReadError> {
        if remote.is_empty() {
            return Ok(0);
        }
        match process_vm_readv(Pid::from_raw(self.pid), local, remote) {
            Ok(n) => Ok(n),
            Err(Errno::EFAULT) => Ok(0),
            Err(e) => Err(self.classify(e)),
        }
    }

    fn classify(&self, e: Errno) -> ReadError {
        // A process on its way out refuses reads too (EPERM once its memory is gone).
        match e {
            Errno::ESRCH => ReadError::Exited,
            _ if !self.is_alive() => ReadError::Exited,
            Errno::EPERM | Errno::EACCES => ReadError::Permission,
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
        std::fs::File::open(format!("/proc/{}/stat", self.pid))
            .ok()
            .and_then(|stat| stat_state(&stat))
            .is_some_and(|state| !matches!(state, b'Z' | b'X'))
    }

    pub fn maps(&self) -> Result<Vec<Mapping>, AttachError> {
        let pid = self.pid;
        let text =
            std::fs::read_to_string(format!("/proc/{pid}/maps")).map_err(|e| match e.kind() {
                std::io::ErrorKind::NotFound => AttachError::NotFound(pid),
                std::io::ErrorKind::PermissionDenied => AttachError::Permission {
                    pid,
                    help: permission_help(pid),
                },
                _ => AttachError::Exited(pid),
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

    /// Each thread's id as the process itself sees it (in its PID namespace, as
    /// `native_thread_id` holds it) mapped to ours, from the tasks' `NSpid`; empty when the
    /// process is in our PID namespace.
    pub fn namespace_tids(&self) -> FxHashMap<u64, u32> {
        let mut map = FxHashMap::default();
        for tid in self.thread_ids() {
            let ids = status_field(&format!("/proc/{}/task/{tid}/status", self.pid), "NSpid");
            let ids: Vec<u64> = ids
                .iter()
                .flat_map(|v| v.split_whitespace())
                .filter_map(|id| id.parse().ok())
                .collect();
            if let (true, Some(&own)) = (ids.len() > 1, ids.last()) {
                map.insert(own, tid);
            }
        }
        map
    }

    /// The process's id in its own PID namespace (its main thread's `native_thread_id`).
    pub fn namespace_pid(&self) -> i32 {
        status_field(&format!("/proc/{}/status", self.pid), "NSpid")
            .and_then(|v| v.split_whitespace().last()?.parse().ok())
            .unwrap_or(self.pid)
    }

    pub fn exe(&self) -> Result<PathBuf> {
        std::fs::read_link(format!("/proc/{}/exe", self.pid))
            .with_context(|| format!("cannot read /proc/{}/exe", self.pid))
    }
}

/// Fails with a clear message unless `pid` names a live process we may read.
pub fn check_pid(pid: i32) -> Result<(), AttachError> {
    if pid <= 0 || !std::path::Path::new(&format!("/proc/{pid}")).exists() {
        return Err(AttachError::NotFound(pid));
    }
    Process::new(pid).maps().map(|_| ())
}

/// CAP_SYS_PTRACE's bit in the capability sets of /proc/PID/status.
const CAP_SYS_PTRACE: u32 = 19;

/// The state letter of a `/proc/.../stat` file: `R` running or ready to, `S` asleep, `Z` a
/// zombie...
pub fn stat_state(stat: &std::fs::File) -> Option<u8> {
    use std::os::unix::fs::FileExt;
    let mut buf = [0u8; 512];
    let n = stat.read_at(&mut buf, 0).ok()?;
    let text = &buf[..n];
    // After the command, which is in parentheses and may hold any character.
    let close = text.iter().rposition(|&b| b == b')')?;
    text.get(close + 2).copied()
}

/// A field of /proc/PID/status (or /proc/PID/task/TID/status).
fn status_field(path: &str, name: &str) -> Option<String> {
    let text = std::fs::read_to_string(path).ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(':'))
        .map(|v| v.trim().to_owned())
}

/// The PID tracing thread `tid` of `pid`, if any.
pub fn tracer_of(pid: i32, tid: u32) -> Option<i32> {
    status_field(&format!("/proc/{pid}/task/{tid}/status"), "TracerPid")?
        .parse()
        .ok()
        .filter(|&t| t != 0)
}

/// Why we may not read `pid`'s memory, said as exactly as /proc allows: a different user
/// without CAP_SYS_PTRACE, Yama's ptrace_scope, or both.
pub fn permission_help(pid: i32) -> String {
    let has_cap = status_field("/proc/self/status", "CapEff")
        .and_then(|hex| u64::from_str_radix(&hex, 16).ok())
        .is_some_and(|caps| caps & (1 << CAP_SYS_PTRACE) != 0);
    let uid_of = |path: &str| {
        status_field(path, "Uid").and_then(|v| {
            v.split_whitespace()
                .nth(1)
                .and_then(|u| u.parse::<u32>().ok())
        })
    };
    let (ours, theirs) = (
        uid_of("/proc/self/status"),
        uid_of(&format!("/proc/{pid}/status")),
    );
    let scope = std::fs::read_to_string("/proc/sys/kernel/yama/ptrace_scope")
        .ok()
        .and_then(|s| s.trim().parse::<u8>().ok());
    let mut reasons = Vec::new();
    if let (Some(ours), Some(theirs)) = (ours, theirs) {
        if ours != theirs && !has_cap {
            reasons.push(format!(
                "it belongs to uid {theirs} and tachyon runs as uid {ours} without CAP_SYS_PTRACE \
                 (run as that user, or as root / with CAP_SYS_PTRACE; in Docker --cap-add=SYS_PTRACE)"
            ));
        }
    }
    match scope {
        Some(1) if !has_cap => reasons.push(
            "kernel.yama.ptrace_scope is 1, so only a parent may read its children \
             (start the program with `tachyon run`, grant CAP_SYS_PTRACE, or set the sysctl to 0)"
                .to_owned(),
        ),
        Some(2) if !has_cap => reasons.push(
            "kernel.yama.ptrace_scope is 2, so only processes with CAP_SYS_PTRACE may read others"
                .to_owned(),
        ),
        Some(3) => reasons.push(
            "kernel.yama.ptrace_scope is 3, which forbids reading other processes until reboot"
                .to_owned(),
        ),
        _ => {}
    }
    // Capabilities count only over processes in tachyon's user namespace or one it owns: a
    // container's root cannot read processes outside its container. The initial namespace
    // maps every uid to itself.
    let uid_map = std::fs::read_to_string("/proc/self/uid_map").unwrap_or_default();
    let initial = uid_map.split_whitespace().collect::<Vec<_>>() == ["0", "0", "4294967295"];
    let user_ns = |p: &str| std::fs::read_link(format!("/proc/{p}/ns/user")).ok();
    if !uid_map.is_empty() && !initial && user_ns("self") != user_ns(&pid.to_string()) {
        reasons.push(
            "tachyon runs in a user namespace of its own (a rootless container's), where its \
             capabilities do not reach processes outside it: run it in the target's container, \
             or on the host"
                .to_owned(),
        );
    }
    // A seccomp filter (Docker's default profile before 20.10) may refuse process_vm_readv
    // even with the capability.
    if has_cap && status_field("/proc/self/status", "Seccomp").as_deref() == Some("2") {
        reasons.push(
            "a seccomp filter is active (Seccomp: 2 in /proc/self/status) and may refuse \
             process_vm_readv: in Docker, --cap-add=SYS_PTRACE or --security-opt seccomp=unconfined"
                .to_owned(),
        );
    }
    if reasons.is_empty() {
        reasons.push(
            "tachyon needs ptrace access: the same user with kernel.yama.ptrace_scope 0, or root / \
             CAP_SYS_PTRACE (in Docker --cap-add=SYS_PTRACE)"
                .to_owned(),
        );
    }
    format!(
        "permission denied reading the memory of PID {pid}: {}",
        reasons.join("; ")
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
