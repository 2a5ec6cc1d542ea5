//! The .bin reader and writer: round trips, record choice, and corrupt input.

use proptest::prelude::*;
use tachyon::binary::{BinaryWriter, Capture, Header, ReadLimits};
use tachyon_plugin_api::{Collector, ExportContext, FrameInfo, Sample, Symbols};

/// One decoded thread-sample with its frames resolved to (file, func, line).
type Row = (u64, u32, u64, u8, Vec<(String, String, i32)>);

#[derive(Default)]
struct Rows(Vec<Row>);

impl Collector for Rows {
    fn collect(&mut self, symbols: &Symbols, s: &Sample<'_>) {
        // The stack id names these frames in the table as it is while the replay runs.
        assert_eq!(symbols.stacks().frames(s.stack), s.frames);
        let frames: Vec<_> = s
            .frames
            .iter()
            .map(|&id| {
                let f = symbols.frame(id);
                (
                    symbols.str(f.filename).to_owned(),
                    symbols.str(f.funcname).to_owned(),
                    f.lineno,
                )
            })
            .collect();
        for &ts in s.timestamps_us {
            self.0.push((
                s.thread_id,
                s.interpreter_id,
                ts,
                s.status.0,
                frames.clone(),
            ));
        }
    }
    fn export(&mut self, _: &ExportContext<'_>) -> anyhow::Result<()> {
        Ok(())
    }
}

fn frame(line: i32) -> FrameInfo {
    FrameInfo {
        filename: 0,
        funcname: 0,
        lineno: line,
        end_lineno: line,
        column: -1,
        end_column: -1,
        opcode: None,
    }
}

/// Write rows (frames given as line numbers of `f{line}` in `mod{line % 3}.py`).
fn write(rows: &[(u64, u32, u64, u8, Vec<i32>)], zstd: bool) -> Vec<u8> {
    let mut w = BinaryWriter::new(
        1000,
        5,
        zstd.then_some(5),
        (3, 13, 0),
        Header::config_word(Some(0), Some(4)),
    )
    .unwrap();
    for (tid, iid, ts, status, lines) in rows {
        let ids: Vec<u32> = lines
            .iter()
            .map(|&l| w.intern_frame(&format!("mod{}.py", l % 3), &format!("f{l}"), &frame(l)))
            .collect();
        w.write_sample(*tid, *iid, *status, *ts, &ids).unwrap();
    }
    w.finish(None, None).unwrap()
}

fn decode(bytes: &[u8]) -> anyhow::Result<Vec<Row>> {
    let mut capture = Capture::parse(bytes, &ReadLimits::default())?;
    let mut rows = Rows::default();
    capture.replay(&mut rows, &mut |_, _| {})?;
    Ok(rows.0)
}

fn expected(rows: &[(u64, u32, u64, u8, Vec<i32>)]) -> Vec<Row> {
    rows.iter()
        .map(|(t, i, ts, st, lines)| {
            let frames = lines
                .iter()
                .take(256)
                .map(|&l| (format!("mod{}.py", l % 3), format!("f{l}"), l))
                .collect();
            (*t, *i, *ts, *st, frames)
        })
        .collect()
}

/// Decoded rows grouped per thread, in order (the format only keeps per-thread order).
fn per_thread(mut rows: Vec<Row>) -> Vec<Row> {
    rows.sort_by_key(|r| (r.0, r.1));
    rows
}

fn sample_strategy() -> impl Strategy<Value = Vec<(u64, u32, u64, u8, Vec<i32>)>> {
    let stack = prop::collection::vec(1i32..12, 0..300);
    let row = (1u64..4, 0u32..2, 0u64..5000, 0u8..64, stack, 0u8..4);
    prop::collection::vec(row, 1..60).prop_map(|rows| {
        let mut ts = 10u64;
        let mut last: std::collections::HashMap<(u64, u32), Vec<i32>> = Default::default();
        rows.into_iter()
            .map(|(tid, iid, dt, status, stack, mutation)| {
                ts += dt;
                // Often reuse or edit the thread's previous stack so REPEAT/SUFFIX/POP_PUSH occur.
                let prev = last.get(&(tid, iid)).cloned().unwrap_or_default();
                let stack = match mutation {
                    0 => prev,
                    1 => [stack.clone(), prev].concat(),
                    2 => [
                        stack.clone(),
                        prev.iter()
                            .skip(stack.len() % (prev.len() + 1))
                            .copied()
                            .collect(),
                    ]
                    .concat(),
                    _ => stack,
                };
                last.insert((tid, iid), stack.clone());
                (tid, iid, ts, status, stack)
            })
            .collect()
    })
}

/// 256 cases per property by default; TACHYON_FUZZ_CASES=N for a long fuzzing run.
fn fuzz_cases() -> u32 {
    std::env::var("TACHYON_FUZZ_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(256)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(fuzz_cases()))]

    #[test]
    fn written_captures_decode_to_the_same_samples(rows in sample_strategy(), zstd in any::<bool>()) {
        let bytes = write(&rows, zstd);
        prop_assert_eq!(per_thread(decode(&bytes).unwrap()), per_thread(expected(&rows)));
    }

    #[test]
    fn corrupt_captures_are_errors_not_panics(rows in sample_strategy(), zstd in any::<bool>(),
                                               flips in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8)) {
        let mut bytes = write(&rows, zstd);
        for (at, value) in flips {
            let i = at.index(bytes.len());
            bytes[i] = value;
        }
        let _ = decode(&bytes);
    }

    #[test]
    fn arbitrary_bytes_after_a_valid_magic_are_errors_not_panics(tail in prop::collection::vec(any::<u8>(), 0..400)) {
        let mut bytes = b"HCAT\x01\x00\x00\x00".to_vec();
        bytes.extend(tail);
        prop_assert!(decode(&bytes).is_err() || bytes.len() >= 96);
    }
}

/// A replay of many batches, each with new stacks and with repeated ones, gives every
/// sample the id of its own frames (checked in `Rows::collect`).
#[test]
fn stacks_new_in_every_batch_replay_whole() {
    let rows: Vec<_> = (0..150_000u64)
        .map(|i| {
            let line = |n: u64| 1 + (n % 500) as i32;
            let stack = vec![line(i), line(i / 7), line(i / 300), 2, 1];
            (1 + i % 3, 0, 10 + 10 * i, 1, stack)
        })
        .collect();
    let decoded = decode(&write(&rows, true)).unwrap();
    assert_eq!(per_thread(decoded), per_thread(expected(&rows)));
}

#[test]
fn every_truncation_is_a_one_line_error() {
    let rows: Vec<_> = (0..50)
        .map(|i| (1, 0, 1000 * i, 1, vec![1 + (i as i32 % 4), 2, 3]))
        .collect();
    for zstd in [false, true] {
        let bytes = write(&rows, zstd);
        for cut in 0..bytes.len() {
            let err = decode(&bytes[..cut]).expect_err("truncated capture must not decode");
            assert!(
                !format!("{err:#}").contains('\n'),
                "multi-line error: {err:#}"
            );
        }
    }
}

#[test]
fn records_are_chosen_as_cpython_chooses_them() {
    let rows = vec![
        (7, 0, 1, 1, vec![3, 2, 1]),       // FULL
        (7, 0, 2, 1, vec![3, 2, 1]),       // REPEAT
        (7, 0, 3, 1, vec![3, 2, 1]),       // REPEAT
        (7, 0, 4, 1, vec![4, 3, 2, 1]),    // SUFFIX (push one)
        (7, 0, 5, 1, vec![5, 2, 1]),       // POP_PUSH (pop two, push one)
        (7, 0, 6, 1, vec![9, 8, 7, 6, 1]), // FULL (shares only 1 of 5)
    ];
    let bytes = write(&rows, false);
    let mut capture = Capture::parse(&bytes, &ReadLimits::default()).unwrap();
    let counts = capture
        .replay(&mut Rows::default(), &mut |_, _| {})
        .unwrap();
    assert_eq!(
        (
            counts.full,
            counts.repeat,
            counts.repeat_samples,
            counts.suffix,
            counts.pop_push
        ),
        (2, 1, 2, 1, 1)
    );
    assert_eq!(capture.header.sample_count, 6);
    assert_eq!(capture.header.thread_count, 1);
}

#[test]
fn deep_stacks_keep_their_256_innermost_frames() {
    let deep: Vec<i32> = (0..400).collect();
    let rows = vec![(1, 0, 10, 0, deep.clone())];
    let decoded = decode(&write(&rows, true)).unwrap();
    assert_eq!(decoded[0].4.len(), 256);
    assert_eq!(decoded[0].4[0].2, 0);
    assert_eq!(decoded[0].4[255].2, 255);
}

#[test]
fn header_lies_are_reported() {
    let rows = vec![(1, 0, 10, 0, vec![1, 2]), (2, 0, 11, 0, vec![1])];
    let good = write(&rows, false);
    let mut bad = good.clone();
    bad[28] = 9; // sample_count
    assert!(format!("{:#}", decode(&bad).unwrap_err()).contains("Sample count mismatch"));
    let mut bad = good.clone();
    bad[36] = 1; // thread_count
    assert!(format!("{:#}", decode(&bad).unwrap_err()).contains("Invalid thread count"));
    let mut bad = good.clone();
    bad[0] = b'X';
    assert!(format!("{:#}", decode(&bad).unwrap_err()).contains("Invalid magic number"));
    let mut bad = good;
    bad[4] = 2;
    assert!(format!("{:#}", decode(&bad).unwrap_err()).contains("Unsupported format version 2"));
}
