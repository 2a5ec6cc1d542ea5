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
