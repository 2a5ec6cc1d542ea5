//! The unwinder against recorded snapshots of every supported version (tests/snapshots, made
//! by examples/record_snapshot.rs from tests/scripts/parked.py): no live process needed. Each
//! snapshot holds what one sample read of a process whose threads were parked in known
//! stacks — deep recursion, a running generator, the main thread — and the stacks the
//! interpreter itself reported for them.

use std::cell::{Cell, RefCell};
use std::path::PathBuf;
use std::rc::Rc;

use tachyon::sampler::fixture::{stacks, ExpectedFrame, Fixture};
use tachyon::sampler::memory::{Memory, Snapshot};
use tachyon::sampler::process::ReadError;
use tachyon::sampler::{UnwindOptions, Unwinder};
use tachyon_plugin_api::Symbols;

fn fixture(version: &str) -> Fixture {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/snapshots")
        .join(format!("{version}.snap.zst"));
    Fixture::load(&path).unwrap()
}

fn options() -> UnwindOptions {
    UnwindOptions {
        all_threads: true,
        exception_state: true,
        ..UnwindOptions::default()
    }
}

/// Sample `fixture` through `snapshot`: the stacks, sorted, or the read error.
fn sample(
    fixture: &Fixture,
    snapshot: Snapshot,
    times: usize,
) -> Result<Vec<Vec<ExpectedFrame>>, ReadError> {
    let mut unwinder =
        Unwinder::with_memory(fixture.target.target(), options(), Box::new(snapshot));
    let mut symbols = Symbols::default();
    let mut threads = Vec::new();
    for _ in 0..times {
        unwinder.sample(&mut symbols, &mut threads)?;
    }
    let mut seen = stacks(&symbols, &threads);
    seen.sort();
    Ok(seen)
}

fn unwinds_the_recorded_stacks(version: &str) {
    let f = fixture(version);
    assert!(
        f.python.starts_with(version),
        "{} is not {version}",
        f.python
    );
    let mut expected = f.expected.clone();
    expected.sort();
    // Twice: the second sample resolves through the code-object cache.
    assert_eq!(sample(&f, f.snapshot.clone(), 2).unwrap(), expected);
    let deep = expected
        .iter()
        .find(|s| s.iter().any(|fr| fr.1 == "recurse"))
        .unwrap();
    assert_eq!(
        deep.iter().filter(|fr| fr.1 == "recurse").count(),
        41,
        "recursion depth"
    );
    let generator = expected
        .iter()
        .find(|s| s.iter().any(|fr| fr.1 == "producer"))
        .unwrap();
    assert!(
        generator.iter().any(|fr| fr.1 == "consume"),
        "the generator's caller follows it"
    );
    assert!(expected
        .iter()
        .all(|s| s.iter().any(|fr| fr.0 == "parked.py" && fr.1 == "park")));
}

/// Every region of the snapshot in turn missing (a read torn by the target freeing memory):
/// an error or fewer frames, never a panic; the thread and frame chain reads do fail.
fn torn_reads_are_errors(version: &str) {
    let f = fixture(version);
    let mut faults = 0;
    for (start, _) in f.snapshot.regions() {
        let mut torn = f.snapshot.clone();
        torn.cut(start);
        match sample(&f, torn, 1) {
            Err(ReadError::Fault) => faults += 1,
            Err(e) => panic!("{version}: a missing region read as {e:?}"),
            Ok(_) => {}
        }
    }
    assert!(
        faults > 0,
        "{version}: no missing region made the sample fail"
    );
}

/// How many samples of `f`, with `bytes` written at each of `places` in turn, show the deep
/// recursion short of exactly one `recurse` frame with its outermost frame still there: a
/// frame passed over. Samples that fail, or whose stack was cut short, are not counted.
fn frames_passed_over(f: &Fixture, places: Vec<u64>, bytes: &[u8]) -> usize {
    let outermost = |s: &Vec<ExpectedFrame>| s.last().cloned();
    let deep = f
        .expected
        .iter()
        .find(|s| s.iter().any(|fr| fr.1 == "recurse"))
        .unwrap();
    let mut passed_over = 0;
    for at in places {
        let mut snapshot = f.snapshot.clone();
        snapshot.write(at, bytes);
        let Ok(seen) = sample(f, snapshot, 1) else {
            continue;
        };
        passed_over += seen
            .iter()
            .filter(|s| s.iter().filter(|fr| fr.1 == "recurse").count() == 40)
            .filter(|s| outermost(s) == outermost(deep))
            .count();
    }
    passed_over
}

/// Every 8-byte-aligned word of the snapshot.
fn words(f: &Fixture) -> Vec<u64> {
    f.snapshot
        .regions()
        .into_iter()
        .flat_map(|(start, len)| (start.next_multiple_of(8)..start + len as u64 - 7).step_by(8))
        .collect()
}

/// 3.11+: a frame of the thread's data stack whose code pointer reads as null is a frame
/// popped (3.14+ clear its executable) while the sample read the stack. Of a code not seen
/// yet, the sample fails rather than skip it and report its callers. Every aligned word of
/// the snapshot is cleared in turn, in a first sample: the deep recursion's stack is then
/// whole, cut short (a null `previous` ends it), or an error, never short of one frame.
fn a_popped_frame_of_unseen_code_is_an_error(version: &str) {
    let f = fixture(version);
    assert_eq!(
        frames_passed_over(&f, words(&f), &[0; 8]),
        0,
        "{version}: a frame was skipped"
    );
}

/// 3.11+: a popped frame keeps its instruction pointer, which points into the code it ran:
/// once that code was seen, the frame is named by it. The code pointer of every frame of the
/// copied data stacks (a word pointing at an object whose instructions hold the frame's
/// instruction pointer) is cleared in turn: where that fails a first sample, a second sample
/// after a whole one gives the recorded stacks, and so it is for the whole deep recursion at
/// least.
fn a_popped_frame_is_named_by_its_instruction_pointer(version: &str) {
    let f = fixture(version);
    let layout = f.target.target().layout;
    let mut expected = f.expected.clone();
    expected.sort();
    let code_words = data_stack_frames(&f)
        .into_iter()
        .map(|frame| frame + layout.frame_code as u64);
    let mut named = 0;
    for at in code_words {
        let mut popped = f.snapshot.clone();
        popped.write(at, &[0; 8]);
        if sample(&f, popped.clone(), 1).is_ok() {
            continue;
        }
        let memory = Phases {
            snapshots: vec![f.snapshot.clone(), popped],
            begun: 0,
        };
        let mut unwinder = Unwinder::with_memory(f.target.target(), options(), Box::new(memory));
        let (mut symbols, mut threads) = (Symbols::default(), Vec::new());
        unwinder.sample(&mut symbols, &mut threads).unwrap();
        unwinder.sample(&mut symbols, &mut threads).unwrap();
        let mut seen = stacks(&symbols, &threads);
        seen.sort();
        assert_eq!(seen, expected, "{version}: frame code at {at:#x} cleared");
        named += 1;
    }
    assert!(
        named >= 41,
        "{version}: {named} popped frames named, of a recursion 41 deep"
    );
}

/// 3.11+: the frames of the snapshot's data stacks: each aligned place of a data-stack copy
/// (a data stack is copied in whole kilobytes; the other reads are of an object or a frame)
/// whose code word points at an object whose instructions hold the place's instruction
/// pointer.
fn data_stack_frames(f: &Fixture) -> Vec<u64> {
    let layout = f.target.target().layout;
    let instructions = layout.code_code_adaptive.expect("3.11+") as u64;
    let mut whole = f.snapshot.clone();
    let mut word = |at: u64| {
        let mut bytes = [0u8; 8];
        whole
            .read(at, &mut bytes)
            .map_or(0, |()| u64::from_le_bytes(bytes))
    };
    let data_stacks: Vec<(u64, usize)> = f
        .snapshot
        .regions()
        .into_iter()
        .filter(|&(_, len)| len >= 1024)
        .collect();
    words(f)
        .into_iter()
        .filter(|&at| {
            data_stacks
                .iter()
                .any(|&(start, len)| (start..start + len as u64).contains(&at))
        })
        .filter(|&frame| {
            let code = word(frame + layout.frame_code as u64) & !7;
            let instr = word(frame + layout.frame_instr as u64);
            code != 0 && (code + instructions..code + instructions + (1 << 16)).contains(&instr)
        })
        .collect()
}

/// Whether `seen` is `expected` with one stack's innermost frame removed, or doubled.
fn innermost_changed(
    expected: &[Vec<ExpectedFrame>],
    seen: &[Vec<ExpectedFrame>],
    doubled: bool,
) -> bool {
    (0..expected.len()).any(|i| {
        let mut changed = expected.to_vec();
        let innermost = changed[i].remove(0);
        if doubled {
            changed[i].splice(0..0, [innermost.clone(), innermost]);
        }
        changed.sort();
        changed == seen
    })
}

/// 3.13+: the thread state is read a microsecond or so before its stack is copied, and the
/// sample's top is where the copy has it. Popping a frame clears its function (3.14+; then
/// its code) or its stack depth (3.13): a thread's top frame popped meanwhile leaves its
/// caller on top. A frame pushed
/// meanwhile, right above its caller (`co_framesize` words on) and linked to it, is the top
/// once past its first instruction; at its first instruction it is left out (a caller fills
/// a new frame in before it makes it current). Each data-stack frame in turn has its
/// function (stack depth) cleared: the stacks are the recorded ones (a frame below the top,
/// which the copy cannot have popped), or one of them without its innermost frame (the frame
/// was a thread's top). Above each such top, a copy of it linked to it is then its callee
/// (3.13: once the top has saved a depth, as a frame does when it calls; not while it runs).
fn the_top_is_where_the_copy_has_it(version: &str) {
    let f = fixture(version);
    let layout = f.target.target().layout;
    // What popping a frame clears: 3.14+ its function, 3.13 its stack depth.
    let (cleared, width) = match (layout.frame_funcobj(), layout.frame_stacktop()) {
        (Some(funcobj), _) => (funcobj as u64, 8),
        (None, Some(stacktop)) => (stacktop as u64, 4),
        (None, None) => panic!("{version}: 3.13+"),
    };
    let framesize_at = layout.code_framesize().expect("3.13+") as u64;
    let instructions = layout.code_code_adaptive.expect("3.11+") as u64;
    let mut expected = f.expected.clone();
    expected.sort();
    let mut whole = f.snapshot.clone();
    let mut read = |at: u64, len: usize| {
        let mut bytes = vec![0u8; len];
        whole
            .read(at, &mut bytes)
            .map(|()| bytes)
            .unwrap_or_default()
    };
    let (mut tops, mut pushed) = (0, 0);
    for frame in data_stack_frames(&f) {
        let mut popped = f.snapshot.clone();
        popped.write(frame + cleared, &[0; 8][..width]);
        // Twice: 3.13 ask the code (cached by the first sample) if the frame has locals.
        let Ok(seen) = sample(&f, popped, 2) else {
            // Not a frame: the write cleared another's code, of which nothing was seen yet.
            continue;
        };
        if seen == expected {
            continue;
        }
        assert!(
            innermost_changed(&expected, &seen, false),
            "{version}: frame {frame:#x} without its function gave {seen:?}"
        );
        tops += 1;
        // Its callee: a copy of its frame, linked to it, where its code pushes frames.
        let header = read(frame, layout.frame_read_size());
        let code = u64::from_le_bytes(header[layout.frame_code..][..8].try_into().unwrap()) & !7;
        let words = i32::from_le_bytes(read(code + framesize_at, 4).try_into().unwrap());
        let callee = frame + 8 * words as u64;
        let mut callee_frame = header.clone();
        callee_frame[layout.frame_previous..][..8].copy_from_slice(&frame.to_le_bytes());
        let mut with_callee = f.snapshot.clone();
        if with_callee
            .read(callee, &mut vec![0u8; callee_frame.len()])
            .is_err()
        {
            continue; // Beyond the copied span.
        }
        with_callee.write(callee, &callee_frame);
        if let Some(stacktop) = layout.frame_stacktop() {
            // 3.13: a caller running (depth -1) has not called; the frame above it is one it
            // left (an exception's). One calling has saved its depth.
            assert_eq!(
                sample(&f, with_callee.clone(), 2).unwrap(),
                expected,
                "{version}: a frame above {frame:#x}, running"
            );
            with_callee.write(frame + stacktop as u64, &1i32.to_le_bytes());
        }
        let seen = sample(&f, with_callee.clone(), 2).unwrap();
        assert!(
            innermost_changed(&expected, &seen, true),
            "{version}: a callee of {frame:#x} gave {seen:?}"
        );
        let first_instruction = code + instructions;
        with_callee.write(
            callee + layout.frame_instr as u64,
            &first_instruction.to_le_bytes(),
        );
        assert_eq!(
            sample(&f, with_callee, 2).unwrap(),
            expected,
            "{version}: a callee of {frame:#x} at its first instruction"
        );
        pushed += 1;
    }
    // Each parked thread's top; 3.14+ copy too little above the deep recursion's for a callee.
    assert!(
        tops == 3 && pushed >= 2,
        "{version}: {tops} tops popped, {pushed} pushed"
    );
}

/// 3.11+: a frame whose owner no frame of its version has is the memory of a frame popped
/// while the sample read the stack, reused by its caller's value stack; the sample fails
/// rather than pass over it as a shim and report the callers its `previous` leads to. The
/// owner byte of every frame-aligned place is set in turn to 29, which no version uses: the
/// deep recursion's stack is then whole or an error, never short of one frame.
fn a_frame_of_no_known_owner_is_an_error(version: &str) {
    let f = fixture(version);
    let owner = f
        .target
        .target()
        .layout
        .frame_owner
        .expect("3.11+ frames have an owner") as u64;
    // Frames are 8-byte aligned: their owner byte is `owner` past a multiple of 8.
    let owner_bytes = f
        .snapshot
        .regions()
        .into_iter()
        .flat_map(|(start, len)| {
            let first = start + (owner % 8 + 8 - start % 8) % 8;
            (first..start + len as u64).step_by(8)
        })
        .collect();
    assert_eq!(
        frames_passed_over(&f, owner_bytes, &[29]),
        0,
        "{version}: a frame of no known owner was passed over"
    );
}

/// A target whose generator yielded between the copies of the thread state and of the
/// generator's frame (its link to its caller cleared): what a sample reads from the
/// prefetch. Read afresh, the generator runs again. A sample must not leave reads fresh.
struct Yielded {
    prefetched: Snapshot,
    now: Snapshot,
    fresh: bool,
}

impl Memory for Yielded {
    fn begin(&mut self) -> Result<(), ReadError> {
        assert!(!self.fresh, "a sample left reads fresh");
        Ok(())
    }

    fn read(&mut self, addr: u64, buf: &mut [u8]) -> Result<(), ReadError> {
        match self.fresh {
            true => self.now.read(addr, buf),
            false => self.prefetched.read(addr, buf),
        }
    }

    fn set_fresh(&mut self, fresh: bool) {
        self.fresh = fresh;
    }

    fn thread_ids(&self) -> Vec<u32> {
        self.now.thread_ids()
    }
}

/// 3.11+: a generator whose frame is read just after it yielded (its link to its caller
/// cleared) is followed to the caller that resumes it, read afresh, and the sample is the
/// recorded stacks; the next sample reads from the prefetch again. The generator frame is
/// the one of owner 1 (a generator's) whose code is the recorded generator's.
fn a_generator_that_yielded_is_followed_to_its_caller(version: &str) {
    let f = fixture(version);
    let layout = f.target.target().layout;
    let owner = layout.frame_owner.expect("3.11+ frames have an owner") as u64;
    let mut expected = f.expected.clone();
    expected.sort();
    let mut whole = f.snapshot.clone();
    let mut read = |at: u64, len: usize| {
        let mut bytes = [0u8; 8];
        whole
            .read(at, &mut bytes[..len])
            .map_or(0, |()| u64::from_le_bytes(bytes))
    };
    let generators: Vec<u64> = words(&f)
        .into_iter()
        .filter(|&frame| {
            read(frame + owner, 1) == 1
                && read(frame + layout.frame_previous as u64, 8) != 0
                && read(frame + layout.frame_code as u64, 8) != 0
        })
        .collect();
    let mut followed = 0;
    for frame in generators {
        let mut yielded = f.snapshot.clone();
        yielded.write(frame + layout.frame_previous as u64, &[0; 8]);
        let memory = Yielded {
            prefetched: yielded,
            now: f.snapshot.clone(),
            fresh: false,
        };
        let mut unwinder = Unwinder::with_memory(f.target.target(), options(), Box::new(memory));
        let (mut symbols, mut threads) = (Symbols::default(), Vec::new());
        if unwinder.sample(&mut symbols, &mut threads).is_err() {
            continue;
        }
        let mut seen = stacks(&symbols, &threads);
        seen.sort();
        if seen == expected {
            followed += 1;
            unwinder.sample(&mut symbols, &mut threads).unwrap();
        }
    }
    assert!(
        followed >= 1,
        "{version}: no generator followed past its yield"
    );
}

/// A snapshot that counts the reads of one address.
struct Counted {
    snapshot: Snapshot,
    addr: u64,
    reads: Rc<Cell<usize>>,
}

impl Memory for Counted {
    fn read(&mut self, addr: u64, buf: &mut [u8]) -> Result<(), ReadError> {
        if addr == self.addr {
            self.reads.set(self.reads.get() + 1);
        }
        self.snapshot.read(addr, buf)
    }

    fn thread_ids(&self) -> Vec<u32> {
        self.snapshot.thread_ids()
    }
}

/// The address of the first interpreter state in the recorded list (the main one, in these
/// single-interpreter recordings).
fn first_interpreter(f: &Fixture) -> u64 {
    let mut head = [0u8; 8];
    f.snapshot
        .clone()
        .read(f.target.target().interp_head_addr, &mut head)
        .unwrap();
    u64::from_le_bytes(head)
}

/// 3.11+ keep the main interpreter inside `_PyRuntime`: without `-a`, the list of
/// interpreters is read for it once, and each sample is its main thread's recorded stack;
/// with `-a`, the list is read every sample, and so it is without `-a` when the interpreter
/// found has not the main interpreter's id (0).
fn the_main_interpreter_is_found_once(version: &str) {
    let f = fixture(version);
    let target = f.target.target();
    let main_thread = f
        .expected
        .iter()
        .find(|s| s.last().is_some_and(|fr| fr.1 == "<module>"))
        .unwrap();
    let id_at = first_interpreter(&f) + target.layout.interp_id.expect("3.11+") as u64;
    let mut not_main = f.snapshot.clone();
    not_main.write(id_at, &1u64.to_le_bytes());
    for (snapshot, all_threads, head_reads) in [
        (&f.snapshot, false, 1),
        (&f.snapshot, true, 3),
        (&not_main, false, 3),
    ] {
        let reads = Rc::new(Cell::new(0));
        let memory = Counted {
            snapshot: snapshot.clone(),
            addr: target.interp_head_addr,
            reads: reads.clone(),
        };
        let opts = UnwindOptions {
            all_threads,
            ..options()
        };
        let mut unwinder = Unwinder::with_memory(f.target.target(), opts, Box::new(memory));
        let (mut symbols, mut threads) = (Symbols::default(), Vec::new());
        for _ in 0..3 {
            unwinder.sample(&mut symbols, &mut threads).unwrap();
            if !all_threads {
                assert_eq!(
                    &stacks(&symbols, &threads),
                    std::slice::from_ref(main_thread)
                );
            }
        }
        assert_eq!(
            reads.get(),
            head_reads,
            "{version}, -a {all_threads}, {head_reads}"
        );
    }
}

/// A thread the main thread has just started carries, on 3.11 and before, the main thread's
/// native id until it runs; the main thread is then the oldest so named (the list's tail),
/// however it is looked for: here every thread is named by the process id, and 3.13+'s
/// `threads.main` is cleared as while the interpreter finalizes. Each sample without `-a` is
/// the main thread's recorded stack.
fn the_main_thread_is_the_oldest_named_by_the_process_id(version: &str) {
    let f = fixture(version);
    let target = f.target.target();
    let layout = &target.layout;
    let main_thread = f
        .expected
        .iter()
        .find(|s| s.last().is_some_and(|fr| fr.1 == "<module>"))
        .unwrap();
    let native_id = layout.tstate_native_thread_id.expect("3.11+");
    let interp = first_interpreter(&f);
    let mut snapshot = f.snapshot.clone();
    if let Some(off) = layout.interp_threads_main {
        snapshot.write(interp + off as u64, &0u64.to_le_bytes());
    }
    let read_u64 = |snapshot: &mut Snapshot, addr: u64| {
        let mut word = [0u8; 8];
        snapshot.read(addr, &mut word).unwrap();
        u64::from_le_bytes(word)
    };
    let mut tstate = read_u64(&mut snapshot, interp + layout.interp_tstate_head as u64);
    let mut named = 0;
    while tstate != 0 {
        snapshot.write(
            tstate + native_id as u64,
            &(target.process.namespace_pid() as u64).to_le_bytes(),
        );
        named += 1;
        tstate = read_u64(&mut snapshot, tstate + layout.tstate_next as u64);
    }
    assert!(named >= 2, "{named} threads");
    let opts = UnwindOptions {
        all_threads: false,
        ..options()
    };
    let mut unwinder = Unwinder::with_memory(f.target.target(), opts, Box::new(snapshot));
    let (mut symbols, mut threads) = (Symbols::default(), Vec::new());
    for _ in 0..2 {
        unwinder.sample(&mut symbols, &mut threads).unwrap();
        assert_eq!(
            &stacks(&symbols, &threads),
            std::slice::from_ref(main_thread)
        );
    }
}

/// `Phases` counting in each sample the reads of `header` bytes (a code object's
/// identifying fields).
struct CodeReads {
    phases: Phases,
    header: usize,
    per_sample: Rc<RefCell<Vec<usize>>>,
}

impl Memory for CodeReads {
    fn begin(&mut self) -> Result<(), ReadError> {
        self.per_sample.borrow_mut().push(0);
        self.phases.begin()
    }

    fn read(&mut self, addr: u64, buf: &mut [u8]) -> Result<(), ReadError> {
        if buf.len() == self.header {
            *self.per_sample.borrow_mut().last_mut().unwrap() += 1;
        }
        self.phases.read(addr, buf)
    }

    fn thread_ids(&self) -> Vec<u32> {
        self.phases.thread_ids()
    }
}

/// Cached code objects are trusted while the interpreter's code counter stands still (3.12
/// with its symbols, 3.13+): their identity is read again only in the sample after it moves,
/// and every sample while it reads 0 (wrapped) or where there is no counter (3.11 and before).
fn codes_are_read_again_only_when_the_code_counter_moves(version: &str) {
    let f = fixture(version);
    let target = f.target.target();
    let counter = match (
        target.code_version_addr,
        target.layout.interp_code_generation,
    ) {
        (Some(addr), _) => Some((addr, 4)),
        (None, Some(offset)) => Some((first_interpreter(&f) + offset as u64, 8)),
        (None, None) => None,
    };
    let has_counter = ["3.12", "3.13", "3.14", "3.15"].contains(&version);
    assert_eq!(counter.is_some(), has_counter, "{version}");
    let with_counter = |value: u64| {
        let mut snapshot = f.snapshot.clone();
        if let Some((addr, width)) = counter {
            snapshot.write(addr, &value.to_le_bytes()[..width]);
        }
        snapshot
    };
    let snapshots = vec![
        with_counter(7),
        with_counter(7),
        with_counter(8),
        with_counter(8),
        with_counter(0),
        with_counter(0),
    ];
    let samples = snapshots.len();
    let per_sample = Rc::new(RefCell::new(Vec::new()));
    let memory = CodeReads {
        phases: Phases {
            snapshots,
            begun: 0,
        },
        header: target.layout.code_read_size(),
        per_sample: per_sample.clone(),
    };
    let mut unwinder = Unwinder::with_memory(f.target.target(), options(), Box::new(memory));
    let (mut symbols, mut threads) = (Symbols::default(), Vec::new());
    let mut expected = f.expected.clone();
    expected.sort();
    for _ in 0..samples {
        unwinder.sample(&mut symbols, &mut threads).unwrap();
        let mut seen = stacks(&symbols, &threads);
        seen.sort();
        assert_eq!(seen, expected, "{version}");
    }
    let counts = per_sample.borrow().clone();
    let codes = counts[2];
    assert!(codes > 0 && counts[0] >= codes, "{version}: {counts:?}");
    let want = if has_counter {
        vec![counts[0], 0, codes, 0, codes, codes]
    } else {
        vec![counts[0], codes, codes, codes, codes, codes]
    };
    assert_eq!(counts, want, "{version}");
}

/// A target read as each snapshot in turn, one a sample read, and as the last one after.
struct Phases {
    snapshots: Vec<Snapshot>,
    begun: usize,
}

impl Memory for Phases {
    fn begin(&mut self) -> Result<(), ReadError> {
        self.begun += 1;
        Ok(())
    }

    fn read(&mut self, addr: u64, buf: &mut [u8]) -> Result<(), ReadError> {
        let now = self.begun.clamp(1, self.snapshots.len()) - 1;
        self.snapshots[now].read(addr, buf)
    }

    fn thread_ids(&self) -> Vec<u32> {
        self.snapshots[0].thread_ids()
    }
}

/// A sample whose read tore is read again at once, up to five reads: for every region whose
/// loss fails the sample, a target torn at the first four reads gives the recorded stacks,
/// and one torn at five is an error.
fn a_torn_read_is_made_again(version: &str) {
    let f = fixture(version);
    let mut expected = f.expected.clone();
    expected.sort();
    let mut retried = 0;
    for (start, _) in f.snapshot.regions() {
        let mut torn = f.snapshot.clone();
        torn.cut(start);
        if sample(&f, torn.clone(), 1).is_ok() {
            continue;
        }
        for tears in [4, 5] {
            let mut snapshots = vec![torn.clone(); tears];
            snapshots.push(f.snapshot.clone());
            let memory = Phases {
                snapshots,
                begun: 0,
            };
            let mut unwinder =
                Unwinder::with_memory(f.target.target(), options(), Box::new(memory));
            let (mut symbols, mut threads) = (Symbols::default(), Vec::new());
            let sampled = unwinder.sample(&mut symbols, &mut threads);
            if tears == 5 {
                assert!(sampled.is_err(), "{version}: torn at five reads");
                continue;
            }
            sampled.unwrap();
            let mut seen = stacks(&symbols, &threads);
            seen.sort();
            assert_eq!(
                seen, expected,
                "{version}: region {start:#x} lost at the first four reads"
            );
        }
        retried += 1;
    }
    assert!(retried > 0, "{version}: no lost region failed a read");
}

/// Every read of the target in one sample: address and length.
struct Reads {
    snapshot: Snapshot,
    seen: Rc<RefCell<Vec<(u64, usize)>>>,
}

impl Memory for Reads {
    fn read(&mut self, addr: u64, buf: &mut [u8]) -> Result<(), ReadError> {
        self.seen.borrow_mut().push((addr, buf.len()));
        self.snapshot.read(addr, buf)
    }

    fn thread_ids(&self) -> Vec<u32> {
        self.snapshot.thread_ids()
    }
}

/// 3.11+: a thread's data-stack chunk is copied only when its top frame lies in it, which its
/// header says (`_PyStackChunk.size`, after the link to the previous chunk): a top frame past
/// its end is a generator's, in the heap, with anything between. Here each copied chunk's
/// header says it ends 1,000 bytes in, short of the deep threads' top frames: no read at a
/// chunk reaches past that (a shallow thread's chunk is still copied), and the frames read
/// one by one instead still give the recorded stacks.
fn a_top_frame_past_its_chunks_end_is_not_copied(version: &str) {
    let f = fixture(version);
    let mut expected = f.expected.clone();
    expected.sort();
    let reads = |snapshot: Snapshot| {
        let seen = Rc::new(RefCell::new(Vec::new()));
        let memory = Reads {
            snapshot,
            seen: Rc::clone(&seen),
        };
        let mut unwinder = Unwinder::with_memory(f.target.target(), options(), Box::new(memory));
        let (mut symbols, mut threads) = (Symbols::default(), Vec::new());
        unwinder.sample(&mut symbols, &mut threads).unwrap();
        let mut stacks = stacks(&symbols, &threads);
        stacks.sort();
        (stacks, seen.take())
    };
    // Chunks: copies (reads of 1 KiB or more) at an address whose next word is a chunk's
    // size, 16 KiB or a power of two above.
    let header = |addr: u64| {
        let mut size = [0u8; 8];
        f.snapshot.clone().read(addr + 8, &mut size).ok()?;
        Some(u64::from_le_bytes(size)).filter(|s| *s >= 16 << 10 && s.is_power_of_two())
    };
    let (_, first) = reads(f.snapshot.clone());
    let chunks: Vec<u64> = first
        .iter()
        .filter(|&&(addr, len)| len >= 1024 && header(addr).is_some())
        .map(|&(addr, _)| addr)
        .collect();
    assert!(!chunks.is_empty(), "{version}: no chunk copied");
    const END: usize = 1000;
    let mut short = f.snapshot.clone();
    for &chunk in &chunks {
        short.write(chunk + 8, &(END as u64).to_le_bytes());
    }
    let (stacks, seen) = reads(short);
    let copies: Vec<usize> = seen
        .iter()
        .filter(|(addr, _)| chunks.contains(addr))
        .map(|&(_, len)| len)
        .collect();
    assert!(
        !copies.is_empty() && copies.iter().all(|&len| len <= END),
        "{version}: copies {copies:?}"
    );
    assert_eq!(stacks, expected, "{version}");
}

macro_rules! versions {
    ($($name:ident => $version:literal),* $(,)?) => {
        $(
            mod $name {
                #[test]
                fn unwinds_the_recorded_stacks() {
                    super::unwinds_the_recorded_stacks($version);
                }

                #[test]
                fn torn_reads_are_errors() {
                    super::torn_reads_are_errors($version);
                }

                #[test]
                fn a_torn_read_is_made_again() {
                    super::a_torn_read_is_made_again($version);
                }

                #[test]
                fn codes_are_read_again_only_when_the_code_counter_moves() {
                    super::codes_are_read_again_only_when_the_code_counter_moves($version);
                }
            }
        )*
    };
}

macro_rules! data_stack_versions {
    ($($name:ident => $version:literal),* $(,)?) => {
        $(
            mod $name {
                #[test]
                fn a_popped_frame_of_unseen_code_is_an_error() {
                    super::a_popped_frame_of_unseen_code_is_an_error($version);
                }

                #[test]
                fn a_popped_frame_is_named_by_its_instruction_pointer() {
                    super::a_popped_frame_is_named_by_its_instruction_pointer($version);
                }

                #[test]
                fn a_generator_that_yielded_is_followed_to_its_caller() {
                    super::a_generator_that_yielded_is_followed_to_its_caller($version);
                }

                #[test]
                fn a_frame_of_no_known_owner_is_an_error() {
                    super::a_frame_of_no_known_owner_is_an_error($version);
                }

                #[test]
                fn the_main_interpreter_is_found_once() {
                    super::the_main_interpreter_is_found_once($version);
                }

                #[test]
                fn the_main_thread_is_the_oldest_named_by_the_process_id() {
                    super::the_main_thread_is_the_oldest_named_by_the_process_id($version);
                }

                #[test]
                fn a_top_frame_past_its_chunks_end_is_not_copied() {
                    super::a_top_frame_past_its_chunks_end_is_not_copied($version);
                }
            }
        )*
    };
}

macro_rules! copied_top_versions {
    ($($name:ident => $version:literal),* $(,)?) => {
        $(
            mod $name {
                #[test]
                fn the_top_is_where_the_copy_has_it() {
                    super::the_top_is_where_the_copy_has_it($version);
                }
            }
        )*
    };
}

copied_top_versions! {
    copied_top_3_13 => "3.13",
    copied_top_3_14 => "3.14",
    copied_top_3_15 => "3.15",
}

data_stack_versions! {
    data_stack_3_11 => "3.11",
    data_stack_3_12 => "3.12",
    data_stack_3_13 => "3.13",
    data_stack_3_14 => "3.14",
    data_stack_3_15 => "3.15",
}

versions! {
    python2_7 => "2.7",
    python3_6 => "3.6",
    python3_7 => "3.7",
    python3_8 => "3.8",
    python3_9 => "3.9",
    python3_10 => "3.10",
    python3_11 => "3.11",
    python3_12 => "3.12",
    python3_13 => "3.13",
    python3_14 => "3.14",
    python3_15 => "3.15",
}
