//! Helpers for the formats' own tests.

/// A small reproducible sequence of numbers (a 64-bit linear congruential generator), to make
/// test data; not for anything else.
pub struct Lcg(u64);

impl Lcg {
    #[must_use]
    pub fn new(seed: u64) -> Lcg {
        Lcg(seed)
    }

    /// The next number, below `n`.
    pub fn below(&mut self, n: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (self.0 >> 33) % n
    }
}
