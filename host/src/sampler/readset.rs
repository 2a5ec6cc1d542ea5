//! The read set: what one sample read is read again, in one `process_vm_readv`, at the start
//! of the next sample. Reads are the whole cost of sampling, and from one sample to the next a
//! program mostly touches the same thread states, frames and code objects, so in the steady
//! state a sample costs one syscall. Whatever the prefetch did not cover is read directly and
//! joins the set for the next sample.

use nix::sys::uio::RemoteIoVec;

use super::process::{readable_range, Process, ReadError};

/// Most bytes prefetched at once (a few kilobytes a thread: thousands of threads fit).
const MAX_PREFETCH: usize = 16 << 20;
/// Reads remembered per sample (thousands of asyncio tasks stay well below).
const MAX_WANTED: usize = 1 << 16;

const PAGE: u64 = 4096;

/// Merge regions that overlap, share a page or lie in the page after the last one's (the
/// kernel's cost is mostly per region and page, pinning, not per byte, and staying within
/// touched pages never reaches into memory that is not mapped; 3.11's code objects made
/// one after another often lie so), then put them back in the order they were first asked
/// for.
///
/// Why that order: the kernel copies the regions one after another, microseconds apart on a
/// loaded machine, and a sample's reads are in the order it follows pointers (thread state,
/// then its frames): read back to back, a thread state and the frames it points at are
/// copied as close together in time as possible. Sorted by address instead, code objects
/// could fall between them, and a thread that returned meanwhile leaves a top frame that is
/// no longer there: those samples fail, and only at the end of a call, which leans the
/// profile toward what runs next.
fn coalesce(regions: &[(u64, usize)]) -> Vec<(u64, usize)> {
    let mut by_addr: Vec<(u64, usize, usize)> = regions
        .iter()
        .enumerate()
        .map(|(order, &(addr, len))| (addr, len, order))
        .collect();
    by_addr.sort_unstable();
    let mut merged: Vec<(u64, usize, usize)> = Vec::with_capacity(by_addr.len());
    for (addr, len, order) in by_addr {
        let end = addr + len as u64;
        if let Some(last) = merged.last_mut() {
            let last_end = last.0 + last.1 as u64;
            // The last page it touches or the next: no page more is read.
            let near = addr / PAGE <= last_end.saturating_sub(1) / PAGE + 1;
            if addr <= last_end || near {
                last.1 = (end.max(last_end) - last.0) as usize;
                last.2 = last.2.min(order);
                continue;
            }
        }
        merged.push((addr, len, order));
    }
    merged.sort_unstable_by_key(|&(.., order)| order);
    merged
        .into_iter()
        .map(|(addr, len, _)| (addr, len))
        .collect()
}

#[derive(Default)]
pub struct ReadSet {
    /// Bytes prefetched for this sample, and where each region sits in them (by address).
    data: Vec<u8>,
    regions: Vec<(u64, usize, usize)>,
    /// Regions this sample asked for: the next sample's prefetch.
    wanted: Vec<(u64, usize)>,
    /// The prefetch as planned from `planned_for` (the regions a sample asked for): regions
    /// in reading order, and (address, offset in `data`, length) by address. A target whose
    /// threads stay where they were asks for the same regions sample after sample, and reuses
    /// the plan: no sorting and no allocation.
    planned_for: Vec<(u64, usize)>,
    plan: Vec<RemoteIoVec>,
    plan_by_addr: Vec<(u64, usize, usize)>,
    /// Read from the target, not from the prefetch (whose bytes are as old as the sample).
    pub fresh: bool,
}

impl ReadSet {
    /// Start a sample: fetch last sample's regions in one read.
    pub fn begin(&mut self, p: &Process) -> Result<(), ReadError> {
        if self.wanted != self.planned_for {
            self.plan.clear();
            self.plan_by_addr.clear();
            let mut total = 0usize;
            for (addr, len) in coalesce(&self.wanted) {
                if total + len > MAX_PREFETCH {
                    break;
                }
                self.plan.push(RemoteIoVec {
                    base: addr as usize,
                    len,
                });
                self.plan_by_addr.push((addr, total, len));
                total += len;
            }
            // `cached` looks regions up by address.
            self.plan_by_addr.sort_unstable();
            std::mem::swap(&mut self.planned_for, &mut self.wanted);
        }
        self.wanted.clear();
        let total = self.plan.iter().map(|r| r.len).sum();
        self.data.resize(total, 0);
        let read = p.read_packed(&self.plan, &mut self.data)?;
        self.regions.clear();
        let whole = self
            .plan_by_addr
            .iter()
            .filter(|&&(_, off, len)| off + len <= read);
        self.regions.extend(whole);
        Ok(())
    }

    /// Remember a region for the next prefetch (repeats are merged there, by `coalesce`).
    fn want(&mut self, addr: u64, len: usize) {
        if readable_range(addr, len) && self.wanted.len() < MAX_WANTED {
            self.wanted.push((addr, len));
        }
    }

    fn cached(&self, addr: u64, len: usize) -> Option<&[u8]> {
        // Prefetched regions are in user space; `addr` may be anything.
        let end = addr.checked_add(len as u64)?;
        // The regions are sorted and disjoint: only the last one starting at or before `addr`
        // can hold it.
        let at = self.regions.partition_point(|&(a, _, _)| a <= addr);
        let (a, off, l) = self.regions[at.checked_sub(1)?];
        (end <= a + l as u64).then(|| {
            let at = off + (addr - a) as usize;
            &self.data[at..at + len]
        })
    }

    pub fn read(&mut self, p: &Process, addr: u64, buf: &mut [u8]) -> Result<(), ReadError> {
        self.want(addr, buf.len());
        match self.cached(addr, buf.len()).filter(|_| !self.fresh) {
            Some(bytes) => {
                buf.copy_from_slice(bytes);
                Ok(())
            }
            None => p.read(addr, buf),
        }
    }

    /// Several regions: cached ones are copied, the rest read together. Returns whether every
    /// region was read whole.
    pub fn read_many(
        &mut self,
        p: &Process,
        regions: &mut [(u64, &mut [u8])],
    ) -> Result<bool, ReadError> {
        let mut misses: Vec<(u64, &mut [u8])> = Vec::new();
        for (addr, buf) in regions.iter_mut() {
            self.want(*addr, buf.len());
            match self.cached(*addr, buf.len()).filter(|_| !self.fresh) {
                Some(bytes) => buf.copy_from_slice(bytes),
                None => misses.push((*addr, &mut **buf)),
            }
        }
        let needed: usize = misses.iter().map(|(_, b)| b.len()).sum();
        Ok(needed == 0 || p.read_many(&mut misses)? == needed)
    }
}

#[cfg(test)]
mod tests {
    use super::{coalesce, ReadSet};
    use crate::sampler::process::{Process, IOV_MAX};
    use std::sync::atomic::{AtomicU64, Ordering};

    /// Reads of this process: each sample's reads are prefetched at the start of the next
    /// (so they hold the value as it was then), whether the plan is made anew or reused.
    #[test]
    fn each_sample_prefetches_what_the_last_one_read() {
        let me = Process::new(std::process::id() as i32);
        let value = AtomicU64::new(1);
        let addr = value.as_ptr() as u64;
        let mut set = ReadSet::default();
        let read = |set: &mut ReadSet| {
            let mut bytes = [0u8; 8];
            set.read(&me, addr, &mut bytes).unwrap();
            u64::from_le_bytes(bytes)
        };
        set.begin(&me).unwrap();
        assert_eq!(read(&mut set), 1, "nothing prefetched yet: read as it is");
        for sample in [10, 20, 30] {
            value.store(sample, Ordering::SeqCst);
            set.begin(&me).unwrap();
            value.store(sample + 1, Ordering::SeqCst);
            assert_eq!(
                read(&mut set),
                sample,
                "as prefetched when the sample began"
            );
        }
    }

    /// Half as many pages again as one `process_vm_readv` takes regions, each holding
    /// `value(its index)` at its start.
    fn more_pages_than_one_call_takes(value: impl Fn(usize) -> u64) -> Vec<Box<[AtomicU64; 512]>> {
        (0..IOV_MAX * 3 / 2)
            .map(|i| Box::new(std::array::from_fn(|_| AtomicU64::new(value(i)))))
            .collect()
    }

    /// More regions than one `process_vm_readv` takes (a target with hundreds of threads) are
    /// all prefetched: each holds its value as it was when the sample began.
    #[test]
    fn a_plan_of_more_regions_than_one_call_takes_is_prefetched_whole() {
        let me = Process::new(std::process::id() as i32);
        let pages = more_pages_than_one_call_takes(|_| 0);
        let mut set = ReadSet::default();
        let read_all = |set: &mut ReadSet| -> Vec<u64> {
            pages
                .iter()
                .map(|page| {
                    let mut bytes = [0u8; 8];
                    set.read(&me, page[0].as_ptr() as u64, &mut bytes).unwrap();
                    u64::from_le_bytes(bytes)
                })
                .collect()
        };
        set.begin(&me).unwrap();
        read_all(&mut set);
        for (i, page) in pages.iter().enumerate() {
            page[0].store(i as u64 + 1, Ordering::SeqCst);
        }
        set.begin(&me).unwrap();
        for page in &pages {
            page[0].store(0, Ordering::SeqCst);
        }
        let expected: Vec<u64> = (1..=pages.len() as u64).collect();
        assert_eq!(
            read_all(&mut set),
            expected,
            "as prefetched when the sample began"
        );
    }

    /// Regions missing from the prefetch (a stack of more code objects new to the cache than
    /// one `process_vm_readv` takes) are read whole, in as many calls as they need.
    #[test]
    fn more_misses_than_one_call_takes_are_read_whole() {
        let me = Process::new(std::process::id() as i32);
        let pages = more_pages_than_one_call_takes(|i| i as u64 + 1);
        let mut bufs = vec![[0u8; 8]; pages.len()];
        let mut regions: Vec<(u64, &mut [u8])> = pages
            .iter()
            .zip(bufs.iter_mut())
            .map(|(page, buf)| (page[0].as_ptr() as u64, &mut buf[..]))
            .collect();
        let mut set = ReadSet::default();
        set.begin(&me).unwrap();
        assert!(set.read_many(&me, &mut regions).unwrap(), "all read whole");
        let values: Vec<u64> = bufs.iter().map(|b| u64::from_le_bytes(*b)).collect();
        let expected: Vec<u64> = (1..=pages.len() as u64).collect();
        assert_eq!(values, expected);
    }

    #[test]
    fn merges_regions_that_share_or_touch_the_next_page_and_keeps_request_order() {
        let merged = coalesce(&[
            (0x9000, 8),
            (0x1010, 8),
            (0x1000, 8),
            (0x2004, 4),
            (0x1100, 16),
            (0x1ffc, 4),
            (0x4000, 8),
        ]);
        // In the order first asked for; 0x4000 is a page past the merged region's last.
        assert_eq!(merged, vec![(0x9000, 8), (0x1000, 0x1008), (0x4000, 8)]);
    }
}
