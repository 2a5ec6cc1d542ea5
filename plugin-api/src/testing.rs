//! Helpers for the formats' own tests.

use crate::{FrameId, FrameInfo, StackCounts, Symbols};

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

/// A frame of `file` and `function` at a line and column (ending one column on).
pub fn frame(symbols: &mut Symbols, file: &str, function: &str, line: i32, column: i32) -> FrameId {
    let info = FrameInfo {
        filename: symbols.intern_str(file),
        funcname: symbols.intern_str(function),
        lineno: line,
        end_lineno: line,
        column,
        end_column: column + 1,
        opcode: None,
    };
    symbols.intern_frame(info)
}

/// `count` samples of random stacks of `frames` (1 to `max_depth` deep, innermost first) in
/// random `threads`, weighing 1 to `max_weight`: counted, and as a list.
pub fn random_samples(
    symbols: &mut Symbols,
    frames: &[FrameId],
    seed: u64,
    count: usize,
    threads: &[u64],
    max_depth: u64,
    max_weight: u64,
) -> (StackCounts, Vec<(u64, Vec<FrameId>, u64)>) {
    let mut lcg = Lcg::new(seed);
    let mut counts = StackCounts::default();
    let mut samples = Vec::new();
    for _ in 0..count {
        let tid = threads[lcg.below(threads.len() as u64) as usize];
        let depth = 1 + lcg.below(max_depth);
        let stack: Vec<FrameId> = (0..depth)
            .map(|_| frames[lcg.below(frames.len() as u64) as usize])
            .collect();
        let weight = 1 + lcg.below(max_weight);
        counts.add_weighted(tid, symbols.intern_stack(&stack), weight);
        samples.push((tid, stack, weight));
    }
    (counts, samples)
}
