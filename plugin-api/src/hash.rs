//! A fast hasher for small integer keys (stack and tree indexes). SipHash's protection against
//! crafted keys buys nothing for ids we assign ourselves, and it dominated collectors' time.

use std::hash::{BuildHasherDefault, Hasher};

/// The Fx hash (rustc's): rotate, xor, multiply per word.
#[derive(Default, Clone, Copy)]
pub struct FxHasher {
    hash: u64,
}

const SEED: u64 = 0x51_7c_c1_b7_27_22_0a_95;

impl FxHasher {
    #[inline]
    fn add(&mut self, word: u64) {
        self.hash = (self.hash.rotate_left(5) ^ word).wrapping_mul(SEED);
    }
}

impl Hasher for FxHasher {
    #[inline]
    fn write(&mut self, bytes: &[u8]) {
        // Whole words straight from the bytes (whole stacks of frame ids are hashed this way);
        // the tail padded with zeros.
        let mut words = bytes.chunks_exact(8);
        for word in &mut words {
            self.add(u64::from_le_bytes(word.try_into().expect("8 bytes")));
        }
        let tail = words.remainder();
        if !tail.is_empty() {
            let mut word = [0u8; 8];
            word[..tail.len()].copy_from_slice(tail);
            self.add(u64::from_le_bytes(word));
        }
    }
    #[inline]
    fn write_u32(&mut self, n: u32) {
        self.add(u64::from(n));
    }
    #[inline]
    fn write_u64(&mut self, n: u64) {
        self.add(n);
    }
    #[inline]
    fn write_usize(&mut self, n: usize) {
        self.add(n as u64);
    }
    #[inline]
    fn finish(&self) -> u64 {
        self.hash
    }
}

pub type FxBuildHasher = BuildHasherDefault<FxHasher>;
/// A HashMap keyed by our own small ids.
pub type FxHashMap<K, V> = std::collections::HashMap<K, V, FxBuildHasher>;

/// How many lookups ahead [`Slots::prefetch`] fetches a slot's entry after the slot itself.
const ENTRY_AFTER: usize = 4;

/// Indexes of entries kept elsewhere, found by hash: open addressing with linear probing, at
/// most half full. A slot holds a tag (bits of the hash) and its entry's index, so a probe
/// past another key rarely reads that key's entry. In a table of millions of entries a
/// lookup is two cache misses, its slot and then its entry: [`Slots::prefetch`], called for
/// each key some lookups before its own, starts both early, so that the misses of several
/// lookups overlap instead of adding up.
#[derive(Debug, Clone, Default)]
pub(crate) struct Slots {
    /// 0 when empty; else the tag (upper half) and the index + 1 (lower half).
    slots: Vec<u64>,
    len: usize,
    /// The hashes of the last prefetches: the entry of the oldest is fetched next.
    ahead: [u64; ENTRY_AFTER],
    ahead_at: usize,
}

impl Slots {
    /// The first slot to probe for `hash`, and its tag.
    fn home(&self, hash: u64) -> (usize, u32) {
        // The Fx hash mixes its upper bits best: they pick the slot, the middle bits the tag.
        let bits = self.slots.len().trailing_zeros();
        ((hash >> (64 - bits)) as usize, (hash >> 16) as u32)
    }

    /// The index of the entry of this hash that `is` accepts.
    pub fn find(&self, hash: u64, mut is: impl FnMut(usize) -> bool) -> Option<usize> {
        if self.slots.is_empty() {
            return None;
        }
        let (mut at, tag) = self.home(hash);
        loop {
            let slot = self.slots[at];
            if slot == 0 {
                return None;
            }
            let index = (slot as u32 - 1) as usize;
            if (slot >> 32) as u32 == tag && is(index) {
                return Some(index);
            }
            at = (at + 1) & (self.slots.len() - 1);
        }
    }

    /// Add the index of a new entry; growing first when half full, which takes every
    /// entry's hash again from `hash_of`.
    pub fn insert(&mut self, hash: u64, index: usize, hash_of: impl Fn(usize) -> u64) {
        if (self.len + 1) * 2 > self.slots.len() {
            let bigger = vec![0; (self.slots.len() * 2).max(1024)];
            let old = std::mem::replace(&mut self.slots, bigger);
            for slot in old.into_iter().filter(|&slot| slot != 0) {
                let index = (slot as u32 - 1) as usize;
                self.place(hash_of(index), index);
            }
        }
        self.place(hash, index);
        self.len += 1;
    }

    fn place(&mut self, hash: u64, index: usize) {
        let index = u32::try_from(index + 1).expect("fewer than 2^32 entries");
        let (mut at, tag) = self.home(hash);
        while self.slots[at] != 0 {
            at = (at + 1) & (self.slots.len() - 1);
        }
        self.slots[at] = u64::from(tag) << 32 | u64::from(index);
    }

    /// Start looking up `hash`: bring its slot into the cache now, and the first two cache
    /// lines of the entry in the slot of the hash given [`ENTRY_AFTER`] calls ago (whose
    /// slot is there by now). A hint only: it changes nothing that is found.
    pub fn prefetch<E>(&mut self, hash: u64, entries: &[E]) {
        if self.slots.is_empty() {
            return;
        }
        prefetch(&self.slots[self.home(hash).0]);
        let earlier = std::mem::replace(&mut self.ahead[self.ahead_at], hash);
        self.ahead_at = (self.ahead_at + 1) % ENTRY_AFTER;
        let (at, tag) = self.home(earlier);
        let slot = self.slots[at];
        if slot != 0 && (slot >> 32) as u32 == tag {
            let entry = &entries[(slot as u32 - 1) as usize..];
            prefetch(&entry[0]);
            if let Some(next_line) = entry.get(64 / std::mem::size_of::<E>().max(1)) {
                prefetch(next_line);
            }
        }
    }
}

/// A hint to bring `value`'s cache line in; it never faults and changes nothing.
#[inline]
pub fn prefetch<T>(value: &T) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: prefetching is only a hint, of a valid reference's address here.
    unsafe {
        use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
        _mm_prefetch::<_MM_HINT_T0>(std::ptr::from_ref(value).cast::<i8>());
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = value;
}

#[cfg(test)]
mod tests {
    use super::FxHasher;
    use std::hash::Hasher;

    /// Bytes are hashed as little-endian words, the last one padded with zeros.
    #[test]
    fn bytes_hash_as_their_words() {
        let bytes: Vec<u8> = (1..=12).collect();
        let mut by_bytes = FxHasher::default();
        by_bytes.write(&bytes);
        let mut by_words = FxHasher::default();
        by_words.write_u64(u64::from_le_bytes([1, 2, 3, 4, 5, 6, 7, 8]));
        by_words.write_u64(u64::from_le_bytes([9, 10, 11, 12, 0, 0, 0, 0]));
        assert_eq!(by_bytes.finish(), by_words.finish());
    }
}
