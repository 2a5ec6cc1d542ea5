//! Where the unwinder's reads go: the live target (through the read set, readset.rs) or a
//! snapshot recorded from one, so the unwinder can be tested without a live process.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use super::process::{Process, ReadError};
use super::readset::ReadSet;

/// The target's memory as the unwinder sees it.
pub trait Memory {
    /// Start a sample (the live target prefetches what the last one read).
    fn begin(&mut self) -> Result<(), ReadError> {
        Ok(())
    }

    fn read(&mut self, addr: u64, buf: &mut [u8]) -> Result<(), ReadError>;

    /// Several regions at once; whether every one was read whole.
    fn read_many(&mut self, regions: &mut [(u64, &mut [u8])]) -> Result<bool, ReadError> {
        let mut whole = true;
        for (addr, buf) in regions.iter_mut() {
            match self.read(*addr, buf) {
                Ok(()) => {}
                Err(ReadError::Fault) => whole = false,
                Err(e) => return Err(e),
            }
        }
        Ok(whole)
    }

    fn read_u64(&mut self, addr: u64) -> Result<u64, ReadError> {
        let mut b = [0u8; 8];
        self.read(addr, &mut b)?;
        Ok(u64::from_le_bytes(b))
    }

    /// Read the target as it is now rather than as the sample's prefetch found it (retrying
    /// a read of something the target is changing).
    fn set_fresh(&mut self, _fresh: bool) {}

    /// The target's OS thread ids.
    fn thread_ids(&self) -> Vec<u32>;
}

/// A live process, read through the read set.
pub struct LiveMemory {
    process: Process,
    set: ReadSet,
}

impl LiveMemory {
    pub fn new(process: Process) -> LiveMemory {
        LiveMemory {
            process,
            set: ReadSet::default(),
        }
    }
}

impl Memory for LiveMemory {
    fn begin(&mut self) -> Result<(), ReadError> {
        self.set.begin(&self.process)
    }

    fn read(&mut self, addr: u64, buf: &mut [u8]) -> Result<(), ReadError> {
        self.set.read(&self.process, addr, buf)
    }

    fn read_many(&mut self, regions: &mut [(u64, &mut [u8])]) -> Result<bool, ReadError> {
        self.set.read_many(&self.process, regions)
    }

    fn set_fresh(&mut self, fresh: bool) {
        self.set.fresh = fresh;
    }

    fn thread_ids(&self) -> Vec<u32> {
        self.process.thread_ids()
    }
}

/// What one sample read of a process: its regions' bytes and thread ids. A read outside the
/// regions is a fault, as a read of unmapped memory.
#[derive(Clone, Default, Debug, serde::Serialize, serde::Deserialize)]
pub struct Snapshot {
    /// Start address → bytes, disjoint.
    #[serde(with = "hex_regions")]
    regions: BTreeMap<u64, Vec<u8>>,
    threads: Vec<u32>,
}

impl Snapshot {
    /// Add what a read returned, merging it with regions it overlaps or touches.
    pub(super) fn record(&mut self, addr: u64, bytes: &[u8]) {
        let mut start = addr;
        let mut merged = bytes.to_vec();
        let end = addr + bytes.len() as u64;
        let touching: Vec<u64> = self
            .regions
            .range(..=end)
            .filter(|(&a, b)| a + b.len() as u64 >= addr)
            .map(|(&a, _)| a)
            .collect();
        for a in touching {
            let old = self.regions.remove(&a).expect("listed above");
            let new_start = start.min(a);
            let new_end = (start + merged.len() as u64).max(a + old.len() as u64);
            let mut joined = vec![0u8; (new_end - new_start) as usize];
            let at = |x: u64| (x - new_start) as usize;
            joined[at(a)..at(a) + old.len()].copy_from_slice(&old);
            // The newer read wins where they overlap.
            joined[at(start)..at(start) + merged.len()].copy_from_slice(&merged);
            start = new_start;
            merged = joined;
        }
        self.regions.insert(start, merged);
    }

    /// Forget a region's bytes from `addr` on: a read there fails, as a torn read does.
    pub fn cut(&mut self, addr: u64) {
        if let Some((&a, bytes)) = self.regions.range_mut(..=addr).next_back() {
            bytes.truncate(addr.saturating_sub(a) as usize);
        }
    }

    /// Where each region starts, and its length.
    pub fn regions(&self) -> Vec<(u64, usize)> {
        self.regions.iter().map(|(&a, b)| (a, b.len())).collect()
    }

    /// Overwrite recorded bytes at `addr`, as the target writing between two reads would.
    pub fn write(&mut self, addr: u64, bytes: &[u8]) {
        if let Some((&a, region)) = self.regions.range_mut(..=addr).next_back() {
            let at = (addr - a) as usize;
            if let Some(dest) = region.get_mut(at..at + bytes.len()) {
                dest.copy_from_slice(bytes);
            }
        }
    }
}

impl Memory for Snapshot {
    fn read(&mut self, addr: u64, buf: &mut [u8]) -> Result<(), ReadError> {
        let (&start, bytes) = self
            .regions
            .range(..=addr)
            .next_back()
            .ok_or(ReadError::Fault)?;
        let at = (addr - start) as usize;
        let part = bytes.get(at..at + buf.len()).ok_or(ReadError::Fault)?;
        buf.copy_from_slice(part);
        Ok(())
    }

    fn thread_ids(&self) -> Vec<u32> {
        self.threads.clone()
    }
}

/// A memory that keeps a copy of everything read through it, in a snapshot its recorder
/// shares.
pub struct Recording<M: Memory> {
    inner: M,
    snapshot: Arc<Mutex<Snapshot>>,
}

impl<M: Memory> Recording<M> {
    /// The recording and the snapshot it fills.
    pub fn new(inner: M) -> (Recording<M>, Arc<Mutex<Snapshot>>) {
        let snapshot = Arc::new(Mutex::new(Snapshot {
            regions: BTreeMap::new(),
            threads: inner.thread_ids(),
        }));
        let recording = Recording {
            inner,
            snapshot: Arc::clone(&snapshot),
        };
        (recording, snapshot)
    }
}

impl<M: Memory> Memory for Recording<M> {
    fn read(&mut self, addr: u64, buf: &mut [u8]) -> Result<(), ReadError> {
        self.inner.read(addr, buf)?;
        if let Ok(mut snapshot) = self.snapshot.lock() {
            snapshot.record(addr, buf);
        }
        Ok(())
    }

    fn thread_ids(&self) -> Vec<u32> {
        self.inner.thread_ids()
    }
}

/// Regions as `[[address, "hex bytes"], …]`.
mod hex_regions {
    use std::collections::BTreeMap;

    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    pub fn serialize<S: Serializer>(
        regions: &BTreeMap<u64, Vec<u8>>,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        let hex: Vec<(u64, String)> = regions
            .iter()
            .map(|(&a, b)| (a, b.iter().map(|x| format!("{x:02x}")).collect()))
            .collect();
        hex.serialize(s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<BTreeMap<u64, Vec<u8>>, D::Error> {
        let hex: Vec<(u64, String)> = Vec::deserialize(d)?;
        hex.into_iter()
            .map(|(a, h)| {
                let bytes = (0..h.len())
                    .step_by(2)
                    .map(|i| u8::from_str_radix(h.get(i..i + 2).unwrap_or("zz"), 16))
                    .collect::<Result<Vec<u8>, _>>()
                    .map_err(serde::de::Error::custom)?;
                Ok((a, bytes))
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recorded_reads_merge_and_read_back() {
        let mut s = Snapshot::default();
        s.record(100, &[1, 2, 3, 4]);
        s.record(104, &[5, 6]);
        s.record(98, &[9, 9, 1]);
        s.record(200, &[7]);
        let mut buf = [0u8; 8];
        s.read(98, &mut buf).unwrap();
        assert_eq!(buf, [9, 9, 1, 2, 3, 4, 5, 6]);
        assert_eq!(s.read(105, &mut [0u8; 2]), Err(ReadError::Fault));
        assert_eq!(s.read_u64(200), Err(ReadError::Fault));
        s.cut(102);
        assert_eq!(s.read(101, &mut [0u8; 2]), Err(ReadError::Fault));
        s.read(100, &mut buf[..2]).unwrap();
    }
}
