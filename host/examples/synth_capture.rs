//! Synthetic captures for `bench/`: the two workloads issue 21 measures replay and diff on.
//!
//!     cargo run --release --example synth_capture -- realistic|adversarial SAMPLES OUT.bin [SEED]
//!
//! *realistic*: 4 threads, stacks of depth 20-40 drawn from a call tree (shared outer frames),
//! about 3,000 distinct stacks with Zipf weights, each thread keeping its stack for a few samples.
//! *adversarial*: 4 threads, depth 30, 100,000 distinct stacks drawn uniformly every sample.
//! Both written through tachyon's own writer (zstd), so they are the captures a sampler makes.
//! SEED picks the samples, not the stacks: two seeds are two runs of one program (for `diff`).

use anyhow::{bail, Context, Result};
use tachyon::binary::BinaryWriter;
use tachyon_plugin_api::FrameInfo;

/// xorshift64*: reproducible without a dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
}

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.len() < 3 {
        bail!("usage: synth_capture realistic|adversarial SAMPLES OUT.bin [SEED]");
    }
    let samples: u64 = args[1].parse().context("SAMPLES")?;
    let seed: u64 = args.get(3).map_or(Ok(1), |s| s.parse()).context("SEED")?;
    // The stacks are the same for every seed (one program); the seed picks the samples (a run).
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let (distinct, stay) = match args[0].as_str() {
        "realistic" => (3_000, 0.7),
        "adversarial" => (100_000, 0.0),
        other => bail!("unknown workload {other}"),
    };
    let mut writer = BinaryWriter::new(100, 1_700_000_000_000_000, Some(3), (3, 15, 2), 0)?;
    // 2,000 functions in 60 modules; a frame is a function at one of 8 lines of it.
    let mut frame_ids = Vec::new();
    for f in 0..2_000u32 {
        for l in 0..8 {
            let line = (f % 300) as i32 * 10 + 1 + l;
            let info = FrameInfo {
                filename: 0,
                funcname: 0,
                lineno: line,
                end_lineno: line,
                column: 4,
                end_column: 30,
                opcode: None,
            };
            let file = format!("/srv/app/pkg{}/module_{}.py", f % 7, f % 60);
            frame_ids.push(writer.intern_frame(&file, &format!("function_{f}"), &info));
        }
    }
    let roots: Vec<u32> = (0..5).map(|i| frame_ids[i * 8]).collect();
    let mut stacks: Vec<Vec<u32>> = Vec::with_capacity(distinct);
    if distinct == 3_000 {
        // Walks down a call tree: each stack extends a shorter one seen before (or the roots).
        let mut seen = std::collections::HashSet::new();
        while stacks.len() < distinct {
            let mut stack: Vec<u32> = if stacks.is_empty() || rng.unit() < 0.1 {
                roots.iter().rev().copied().collect()
            } else {
                let parent = &stacks[rng.below(stacks.len())];
                parent[parent.len() - (15 + rng.below(parent.len() - 14))..].to_vec()
            };
            let depth = 20 + rng.below(21);
            while stack.len() < depth {
                stack.insert(0, frame_ids[rng.below(frame_ids.len())]);
            }
            if seen.insert(stack.clone()) {
                stacks.push(stack);
            }
        }
    } else {
        for _ in 0..distinct {
            let mut stack: Vec<u32> = (0..25)
                .map(|_| frame_ids[rng.below(frame_ids.len())])
                .collect();
            stack.extend(roots.iter().rev());
            stacks.push(stack);
        }
    }
    // Zipf(1) over the realistic stacks by cumulative weight; uniform for adversarial.
    let cumulative: Vec<f64> = (1..=stacks.len())
        .scan(0.0, |sum, rank| {
            *sum += 1.0 / rank as f64;
            Some(*sum)
        })
        .collect();
    let total_weight = *cumulative.last().unwrap();
    let draw = |rng: &mut Rng| {
        if stay > 0.0 {
            let x = rng.unit() * total_weight;
            cumulative.partition_point(|&c| c < x).min(stacks.len() - 1)
        } else {
            rng.below(stacks.len())
        }
    };
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15 ^ seed.wrapping_mul(0x1000_0001));
    let mut current: Vec<usize> = (0..4).map(|_| draw(&mut rng)).collect();
    let mut ts = 1_700_000_000_000_000u64;
    let mut written = 0;
    while written < samples {
        ts += 100;
        for (thread, stack) in current.iter_mut().enumerate() {
            if written == samples {
                break;
            }
            if rng.unit() >= stay {
                *stack = draw(&mut rng);
            }
            let status = if thread == 0 { 3 } else { 0 };
            writer.write_sample(1000 + thread as u64, 0, status, ts, &stacks[*stack])?;
            written += 1;
        }
    }
    let bytes = writer.finish(None, None)?;
    std::fs::write(&args[2], bytes).with_context(|| format!("cannot write {}", args[2]))?;
    Ok(())
}
