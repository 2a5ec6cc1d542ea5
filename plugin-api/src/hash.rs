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
pub type FxHashSet<K> = std::collections::HashSet<K, FxBuildHasher>;

/// How many lookups ahead [`Slots::prefetch`] fetches a slot's entry after the slot itself.
const ENTRY_AFTER: usize = 4;

/// Indexes of entries kept elsewhere, found by hash: open addressing with linear probing, at
/// most half full. A slot holds a tag (the upper half of the hash) and its entry's index, so
/// a probe past another key rarely reads that key's entry, and a growing table places each
/// slot again by its tag alone, without reading its entry (which, in entry order, would be a
/// cache miss per entry). In a table of millions of entries a lookup is two cache misses,
/// its slot and then its entry: [`Slots::prefetch`], called for each key some lookups before
/// its own, starts both early, so that the misses of several lookups overlap instead of
/// adding up.
#[derive(Debug, Clone, Default)]
pub(crate) struct Slots {
    /// 0 when empty; else the tag (upper half) and the index + 1 (lower half).
    slots: Vec<u64>,
    len: usize,
    /// The hashes of the last prefetches: the entry of the oldest is fetched next.
    ahead: [u64; ENTRY_AFTER],
    ahead_at: usize,
}

/// A hash's tag: its upper half, which the Fx hash mixes best.
fn tag_of(hash: u64) -> u32 {
    (hash >> 32) as u32
}

impl Slots {
    /// The first slot to probe for a tag: its first bits (as many as the table's size takes).
    fn home(&self, tag: u32) -> usize {
        let bits = self.slots.len().trailing_zeros();
        (u64::from(tag) >> (32 - bits)) as usize
    }

    /// The index of the entry of this hash that `is` accepts.
    pub fn find(&self, hash: u64, mut is: impl FnMut(usize) -> bool) -> Option<usize> {
        if self.slots.is_empty() {
            return None;
        }
        let tag = tag_of(hash);
        let mut at = self.home(tag);
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

    /// Add the index of a new entry; growing first when half full.
    pub fn insert(&mut self, hash: u64, index: usize) {
        if (self.len + 1) * 2 > self.slots.len() {
            // (A tag's 32 bits pick among at most 2^32 slots.)
            assert!(self.slots.len() < 1 << 32, "fewer than 2^31 entries");
            let bigger = vec![0; (self.slots.len() * 2).max(1024)];
            let old = std::mem::replace(&mut self.slots, bigger);
            for slot in old.into_iter().filter(|&slot| slot != 0) {
                self.place(slot);
            }
        }
        let index = u32::try_from(index + 1).expect("fewer than 2^32 entries");
        self.place(u64::from(tag_of(hash)) << 32 | u64::from(index));
        self.len += 1;
    }

    fn place(&mut self, slot: u64) {
        let mut at = self.home((slot >> 32) as u32);
        while self.slots[at] != 0 {
            at = (at + 1) & (self.slots.len() - 1);
        }
        self.slots[at] = slot;
    }

    /// Start looking up `hash`: bring its slot into the cache now, and the first two cache
    /// lines of the entry in the slot of the hash given [`ENTRY_AFTER`] calls ago (whose
    /// slot is there by now). A hint only: it changes nothing that is found.
    pub fn prefetch<E>(&mut self, hash: u64, entries: &[E]) {
        if self.slots.is_empty() {
            return;
        }
        prefetch(&self.slots[self.home(tag_of(hash))]);
        let earlier = std::mem::replace(&mut self.ahead[self.ahead_at], hash);
        self.ahead_at = (self.ahead_at + 1) % ENTRY_AFTER;
        let tag = tag_of(earlier);
        let slot = self.slots[self.home(tag)];
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
    use super::{FxHasher, Slots};
    use std::hash::Hasher;

    /// Every entry is found again after the table has grown many times (each growth places
    /// slots by their tags alone), also entries whose hashes share their tag (they differ
    /// only in the lower half), and keys never added are not found.
    #[test]
    fn entries_are_found_after_growing() {
        let hash_of = |key: u64| {
            if key.is_multiple_of(3) {
                // A third share one tag: only their entries tell them apart.
                0xdead_beef_0000_0000 | key
            } else {
                let mut hasher = FxHasher::default();
                hasher.write_u64(key);
                hasher.finish()
            }
        };
        let keys: Vec<u64> = (0..5_000).map(|i| i * 7 + 1).collect();
        let mut slots = Slots::default();
        for (index, &key) in keys.iter().enumerate() {
            assert_eq!(slots.find(hash_of(key), |i| keys[i] == key), None);
            slots.insert(hash_of(key), index);
        }
        for (index, &key) in keys.iter().enumerate() {
            slots.prefetch(hash_of(key), &keys);
            assert_eq!(slots.find(hash_of(key), |i| keys[i] == key), Some(index));
        }
        for absent in [0, 2, 9, 35_000, 0xdead_beef] {
            assert_eq!(slots.find(hash_of(absent), |i| keys[i] == absent), None);
        }
    }

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
