//! Collapsed stacks, one line per (thread, stack): `tid:N;file.py:func:line;... count`, root
//! first, as CPython's Tachyon writes them; flamegraph.pl and inferno render the file.

use std::io::Write as _;

use anyhow::{Context, Result};
use tachyon_plugin_api::{
    printable, AggregateOutput, Aggregating, Collector, CollectorConfig, ExportContext, Format,
    FrameId, FrameKey, FrameKeys, FxHashMap, Interner, Needs, StackCounts, StackId, Symbols, Trie,
};

/// `file.py:func:line`, or the bare name for synthetic frames (`<GC>`, `<native>`).
pub fn frame_label(key: &FrameKey) -> String {
    let label = if key.is_synthetic() {
        key.funcname.clone()
    } else {
        format!("{}:{}:{}", key.base_name(), key.funcname, key.lineno)
    };
    // One line per stack: a newline (or NUL) in a name must not split or corrupt it.
    printable(&label).into_owned()
}

/// A thread of at least 1/this as many lines as the text tree has nodes is cut with passes
/// over the whole tree; a smaller one along its lines' paths. The passes read the tree in
/// order, many times faster per node than a path's steps, which miss the cache (at 16, the
/// adversarial capture's threads, 92,000 lines each in a tree of 2.5 million nodes, took
/// the paths and their svg replay 15 % longer).
const LINES_FOR_A_TREE_PASS: usize = 64;

/// One output line: the samples of one thread's stack of frame keys.
#[derive(Clone, Copy)]
struct Line {
    tid: u64,
    /// The line's text after `tid:N;`, as a node of [`Lines::trie`].
    text: u32,
    /// A stack with this line's keys (the first seen), to tell apart stacks whose texts match.
    stack: StackId,
    count: u64,
}

/// The lines in CPython 3.15's order — by count (descending), then text, then first
/// appearance — without holding their text, which can be hundreds of megabytes: each text is
/// a node of a trie of its `;`-separated segments, rebuilt when the line is written. Lines
/// are one per (thread, stack of frame keys), as CPython counts them; two stacks whose texts
/// happen to match (same base name, different directory) stay two lines, as there.
pub struct Lines {
    segments: Interner<String>,
    /// Texts as paths of segments; the root is the empty text.
    trie: Trie,
    lines: Vec<Line>,
}

impl Lines {
    /// The lines, in CPython's order.
    #[must_use]
    pub fn new(counts: &StackCounts, symbols: &Symbols) -> Lines {
        let (mut lines, text_of, keys) = Lines::texts_of(counts, symbols);
        // The texts are ranked on a second thread while the lines are counted.
        let (text_rank, counted) = tachyon_plugin_api::join(
            || text_order(lines.trie.nodes(), &lines.segments),
            || Lines::count(counts, symbols, &text_of, keys),
        );
        lines.lines = counted;
        lines.sort(&text_rank);
        lines
    }

    /// The lines a flame graph draws, in no particular order (the drawing sorts them). A
    /// frame with fewer than `min_samples` samples in its thread is too narrow to draw and so
    /// is everything under it: it keeps its samples, and its place among its siblings, but
    /// loses its descendants, and the lines that now end at it are one. On a profile of many
    /// distinct stacks that is most of every line.
    #[must_use]
    pub fn cut_below(counts: &StackCounts, symbols: &Symbols, min_samples: f64) -> Lines {
        let (mut lines, text_of, keys) = Lines::texts_of(counts, symbols);
        lines.lines = Lines::count(counts, symbols, &text_of, keys);
        lines.lines.sort_by_key(|l| l.tid);
        // Threads are cut one at a time, each with the whole tree: the threads of about half
        // the lines on a second core, the rest here.
        let half = lines.lines.len() / 2;
        let split = lines.lines[half..]
            .iter()
            .position(|l| l.tid != lines.lines[half].tid)
            .map_or(lines.lines.len(), |after| half + after);
        let tree = lines.trie.nodes();
        let (first, rest) = lines.lines.split_at_mut(split);
        tachyon_plugin_api::join(
            || cut_threads(tree, first, min_samples),
            || cut_threads(tree, rest, min_samples),
        );
        lines.lines.sort_unstable_by_key(|l| (l.tid, l.text));
        lines.lines.dedup_by(|later, kept| {
            let same = (later.tid, later.text) == (kept.tid, kept.text);
            if same {
                kept.count += later.count;
            }
            same
        });
        lines
    }

    /// The texts of the stacks' lines as a trie, with no lines yet; each stack's text (a
    /// node of the trie), and the frame keys met.
    fn texts_of(counts: &StackCounts, symbols: &Symbols) -> (Lines, Vec<u32>, FrameKeys) {
        let stacks = symbols.stacks();
        let mut keys = FrameKeys::default();
        let mut segments: Interner<String> = Interner::default();
        // Frame id -> its label's segment ids, `label_segments[start..end]` (one segment
        // unless the label holds a ';'): two flat arrays, read at every node of the table,
        // where a vector per label missed the cache at each.
        let mut label_of_frame: Vec<(u32, u32)> = Vec::new();
        let mut label_of_key: Vec<(u32, u32)> = Vec::new();
        let mut label_segments: Vec<u32> = Vec::new();
        const NO_LABEL: (u32, u32) = (u32::MAX, 0);
        // The needed nodes of the stack table in id order (parents first), each as (its
        // parent's place in this list, 0 for the root, and its frame): its text's place.
        let mut needed: Vec<(u32, FrameId)> = Vec::new();
        // No two of these frames have one label, and each label is one segment: then the
        // texts are the nodes themselves, none merged, and need no lookup to be made.
        let mut labels_are_distinct = true;
        let stack_ids = counts.entries().iter().map(|&(_, stack, _)| stack);
        let place_of = stacks.map_prefixes(stack_ids, 0, |parent, frame| {
            if label_of_frame.len() <= frame as usize {
                label_of_frame.resize(frame as usize + 1, NO_LABEL);
            }
            if label_of_frame[frame as usize] == NO_LABEL {
                let key = keys.id(symbols, frame);
                if label_of_key.len() <= key {
                    label_of_key.resize(key + 1, NO_LABEL);
                }
                if label_of_key[key] == NO_LABEL {
                    let start = label_segments.len() as u32;
                    for part in frame_label(keys.key(key)).split(';') {
                        let known = segments.len();
                        let segment = segments.id(part);
                        labels_are_distinct &= segment == known;
                        label_segments.push(segment as u32);
                    }
                    labels_are_distinct &= label_segments.len() == start as usize + 1;
                    label_of_key[key] = (start, label_segments.len() as u32);
                } else {
                    labels_are_distinct = false;
                }
                label_of_frame[frame as usize] = label_of_key[key];
            }
            needed.push((parent, frame));
            needed.len() as u32
        });
        let label = |frame: FrameId| {
            let (start, end) = label_of_frame[frame as usize];
            &label_segments[start as usize..end as usize]
        };
        let (trie, text_of) = if labels_are_distinct {
            let nodes = needed
                .iter()
                .map(|&(parent, frame)| (parent, label(frame)[0]));
            (Trie::frozen(nodes), place_of)
        } else {
            let mut trie = Trie::default();
            let mut text_at = vec![Trie::ROOT; needed.len() + 1];
            for (place, &(parent, frame)) in needed.iter().enumerate() {
                text_at[place + 1] = label(frame)
                    .iter()
                    .fold(text_at[parent as usize], |node, &seg| trie.child(node, seg));
            }
            trie.freeze();
            let text_of = place_of
                .into_iter()
                .map(|place| text_at.get(place as usize).copied().unwrap_or(u32::MAX))
                .collect();
            (trie, text_of)
        };
        let lines = Lines {
            segments,
            trie,
            lines: Vec::new(),
        };
        (lines, text_of, keys)
    }

    /// One line per (thread, stack of frame keys), given each stack's text.
    fn count(
        counts: &StackCounts,
        symbols: &Symbols,
        text_of: &[u32],
        mut keys: FrameKeys,
    ) -> Vec<Line> {
        let stacks = symbols.stacks();
        let mut lines: Vec<Line> = Vec::new();
        // (thread, text) -> the first line with it; further lines of the same text chain on.
        let mut first_with_text: FxHashMap<(u64, u32), usize> = FxHashMap::default();
        let mut next_with_text: Vec<usize> = Vec::new();

        for &(tid, stack, count) in counts.entries() {
            let text = text_of[stack as usize];
            let same_keys = |a: StackId, keys: &mut FrameKeys| {
                let (mut a, mut b) = (a, stack);
                while a != b {
                    let (Some(fa), Some(fb)) = (stacks.leaf(a), stacks.leaf(b)) else {
                        return false;
                    };
                    if keys.id(symbols, fa) != keys.id(symbols, fb) {
                        return false;
                    }
                    a = stacks.parent(a);
                    b = stacks.parent(b);
                }
                true
            };
            let mut at = first_with_text.get(&(tid, text)).copied();
            let mut last = None;
            while let Some(i) = at {
                if same_keys(lines[i].stack, &mut keys) {
                    break;
                }
                last = Some(i);
                at = Some(next_with_text[i]).filter(|&n| n != usize::MAX);
            }
            match at {
                Some(i) => lines[i].count += count,
                None => {
                    let i = lines.len();
                    match last {
                        Some(prev) => next_with_text[prev] = i,
                        None => {
                            first_with_text.insert((tid, text), i);
                        }
                    }
                    lines.push(Line {
                        tid,
                        text,
                        stack,
                        count,
                    });
                    next_with_text.push(usize::MAX);
                }
            }
        }
        lines
    }

    /// CPython's order: by count (descending), then thread, then text, then first
    /// appearance.
    fn sort(&mut self, text_rank: &[u32]) {
        let lines = &mut self.lines;
        let mut tids: Vec<u64> = lines.iter().map(|l| l.tid).collect();
        tids.sort_unstable();
        tids.dedup();
        // Every line has a frame, so its text goes on after `tid:N;`: threads sort by that.
        tids.sort_by_cached_key(|tid| format!("tid:{tid};"));
        let tid_rank: FxHashMap<u64, usize> =
            tids.iter().enumerate().map(|(i, &t)| (t, i)).collect();
        // Each line's place as one integer: count (descending), thread, text; then where it
        // is now, so that equal lines keep the order they first appeared in.
        let mut order: Vec<(u128, u32)> = lines
            .iter()
            .enumerate()
            .map(|(at, l)| {
                let place = u128::from(u64::MAX - l.count) << 64
                    | (tid_rank[&l.tid] as u128) << 32
                    | u128::from(text_rank[l.text as usize]);
                (place, at as u32)
            })
            .collect();
        order.sort_unstable();
        *lines = order.iter().map(|&(_, at)| lines[at as usize]).collect();
    }

    /// How many lines there are.
    #[must_use]
    pub fn len(&self) -> usize {
        self.lines.len()
    }

    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.lines.is_empty()
    }

    /// What writing the lines' texts reads, made once.
    #[must_use]
    pub fn texts(&self) -> Texts {
        // Every segment with its `;` before it, side by side: millions of short copies read
        // from one dense block instead of a heap allocation each.
        let mut joined = String::new();
        let mut segment_at = vec![0usize];
        for segment in self.segments.list() {
            joined.push(';');
            joined.push_str(segment);
            segment_at.push(joined.len());
        }
        // Every node's depth (parents come before their children).
        let mut depth = vec![0u32; self.trie.len()];
        for (node, &(parent, _)) in self.trie.nodes().iter().enumerate().skip(1) {
            depth[node] = depth[parent as usize] + 1;
        }
        Texts {
            joined,
            segment_at,
            depth,
        }
    }

    /// Each line's text (without the count) and count, in order.
    pub fn for_each(&self, emit: impl FnMut(&str, u64) -> Result<()>) -> Result<()> {
        self.for_each_of(&self.texts(), 0..self.lines.len(), emit)
    }

    /// [`Lines::for_each`] for the lines in `range`. Lines of one count are in text order, so
    /// a line mostly begins as the one before it: only the rest is rebuilt.
    pub fn for_each_of(
        &self,
        texts: &Texts,
        range: std::ops::Range<usize>,
        mut emit: impl FnMut(&str, u64) -> Result<()>,
    ) -> Result<()> {
        let Texts {
            joined,
            segment_at,
            depth,
        } = texts;
        let mut text = String::new();
        let mut tid = None;
        // The text's nodes, root first, and its length after each (`ends[0]`: after the tid).
        let mut path: Vec<u32> = Vec::new();
        let mut ends: Vec<usize> = Vec::new();
        let mut nodes: Vec<u32> = Vec::new();
        /// How many lines ahead a line's first node is fetched: its start is a cache miss.
        const AHEAD: usize = 4;
        let lines = &self.lines[range];
        for (i, line) in lines.iter().enumerate() {
            if let Some(ahead) = lines.get(i + AHEAD) {
                tachyon_plugin_api::prefetch(&depth[ahead.text as usize]);
                tachyon_plugin_api::prefetch(&self.trie.nodes()[ahead.text as usize]);
            }
            if tid != Some(line.tid) {
                tid = Some(line.tid);
                text.clear();
                use std::fmt::Write as _;
                let _ = write!(text, "tid:{}", line.tid);
                path.clear();
                ends.clear();
                ends.push(text.len());
            }
            // Up from the line's node only to where it meets the last line's path (each
            // step up a node is a cache miss in a large trie), found by depth.
            nodes.clear();
            let mut node = line.text;
            let mut shared = depth[node as usize] as usize;
            while shared > path.len() {
                nodes.push(node);
                node = self.trie.parent(node);
                shared -= 1;
            }
            while shared > 0 && path[shared - 1] != node {
                nodes.push(node);
                node = self.trie.parent(node);
                shared -= 1;
            }
            nodes.reverse();
            path.truncate(shared);
            ends.truncate(shared + 1);
            text.truncate(ends[shared]);
            for &node in &nodes {
                let seg = self.trie.item(node).expect("not the root") as usize;
                text.push_str(&joined[segment_at[seg]..segment_at[seg + 1]]);
                ends.push(text.len());
            }
            path.extend_from_slice(&nodes);
            emit(&text, line.count)?;
        }
        Ok(())
    }
}

/// [`Lines::cut_below`] for the lines of some threads, grouped by thread, in the text tree
/// `tree`: each line's text becomes the node it is cut to.
fn cut_threads(tree: &[(u32, u32)], lines: &mut [Line], min_samples: f64) {
    if lines.is_empty() {
        return;
    }
    let parent = |node: u32| tree[node as usize].0;
    // Per thread: each text's samples, its own and its descendants' (all zero between
    // threads), and the node each text is cut to.
    let mut through = vec![0u64; tree.len()];
    let mut cut = vec![0u32; tree.len()];
    let mut touched: Vec<u32> = Vec::new();
    for thread in lines.chunk_by_mut(|a, b| a.tid == b.tid) {
        if thread.len() * LINES_FOR_A_TREE_PASS >= tree.len() {
            // Many lines: passes over the whole tree (children are made after parents).
            for line in thread.iter() {
                through[line.text as usize] += line.count;
            }
            for node in (1..tree.len()).rev() {
                through[parent(node as u32) as usize] += through[node];
            }
            for node in 1..tree.len() {
                let up = parent(node as u32);
                let narrow = (through[up as usize] as f64) < min_samples;
                cut[node] = if narrow {
                    cut[up as usize]
                } else {
                    node as u32
                };
            }
            for line in thread.iter_mut() {
                line.text = cut[line.text as usize];
            }
            through.fill(0);
        } else {
            // Few lines: along each line's path, so that many small threads cost their
            // lines, not the whole tree each.
            for line in thread.iter() {
                let mut node = line.text;
                loop {
                    if through[node as usize] == 0 {
                        touched.push(node);
                    }
                    through[node as usize] += line.count;
                    if node == Trie::ROOT {
                        break;
                    }
                    node = parent(node);
                }
            }
            for line in thread.iter_mut() {
                let mut node = line.text;
                while node != Trie::ROOT && (through[parent(node) as usize] as f64) < min_samples {
                    node = parent(node);
                }
                line.text = node;
            }
            for node in touched.drain(..) {
                through[node as usize] = 0;
            }
        }
    }
}

/// What [`Lines::for_each_of`] reads: every segment with its `;` before it, side by side,
/// where each starts, and every text node's depth.
pub struct Texts {
    joined: String,
    segment_at: Vec<usize>,
    depth: Vec<u32>,
}

/// `a` and `b` as the strings `segment` or `segment;` (when it goes on) compare. Segments hold
/// no `;`: when one segment is the other's prefix, the longer one's next byte is compared
/// with the other's `;` or its end.
fn text_cmp((a, a_goes_on): (&[u8], bool), (b, b_goes_on): (&[u8], bool)) -> std::cmp::Ordering {
    use std::cmp::Ordering;
    let shared = a.len().min(b.len());
    let order = a[..shared].cmp(&b[..shared]);
    if order != Ordering::Equal {
        return order;
    }
    let next = |rest: &[u8], goes_on: bool| rest.first().copied().or(goes_on.then_some(b';'));
    next(&a[shared..], a_goes_on).cmp(&next(&b[shared..], b_goes_on))
}

/// The rank of every trie node's text in string order. A node's own text ends there, while
/// its descendants' go on with `;`: so among siblings, `seg` (ending) and `seg;…` (going on)
/// are ordered as the strings `seg` and `seg;` — `x:1` < `x:12` < `x:12;…` < `x:1;…`.
fn text_order(trie: &[(u32, u32)], segments: &Interner<String>) -> Vec<u32> {
    let n = trie.len();
    // Every (segment, whether the text goes on) by its place in that order, found once for
    // the few thousand segments: siblings are then ordered by an integer, where comparing
    // their strings missed the cache at each string.
    let segment_item = |item: u32| (segments.get((item >> 1) as usize).as_bytes(), item & 1 == 1);
    let mut in_order: Vec<u32> = (0..2 * segments.len() as u32).collect();
    in_order.sort_by(|&a, &b| text_cmp(segment_item(a), segment_item(b)));
    let mut place = vec![0u32; in_order.len()];
    for (at, &item) in in_order.iter().enumerate() {
        place[item as usize] = at as u32;
    }
    // Each node's children, grouped by parent: `children[start[p]..start[p + 1]]`. Counted
    // into `start[p]`, summed to where each group ends, and filled from the ends down.
    let mut start = vec![0u32; n + 1];
    for &(parent, _) in &trie[1..] {
        start[parent as usize] += 1;
    }
    for i in 1..n {
        start[i] += start[i - 1];
    }
    start[n] = (n - 1) as u32;
    let mut children = vec![0u32; n - 1];
    for (child, &(parent, _)) in trie.iter().enumerate().skip(1).rev() {
        start[parent as usize] -= 1;
        children[start[parent as usize] as usize] = child as u32;
    }
    // Depth-first, the next item on top: an item is `node << 1 | 1 when it goes on`, and a
    // node's items go on in the order of their places. Most nodes have one child, whose
    // items are in order already (`seg` < `seg;…`).
    let mut rank = vec![0u32; n];
    let mut next_rank = 0;
    // The root goes on.
    let mut pending: Vec<u64> = vec![1];
    // A node's children's items, by their places.
    let mut group: Vec<(u32, u64)> = Vec::new();
    while let Some(item) = pending.pop() {
        let node = (item >> 1) as usize;
        if item & 1 == 0 {
            rank[node] = next_rank;
            next_rank += 1;
            continue;
        }
        match &children[start[node] as usize..start[node + 1] as usize] {
            [] => {}
            &[child] => pending.extend([u64::from(child) << 1 | 1, u64::from(child) << 1]),
            several => {
                group.clear();
                for &child in several {
                    let segment = trie[child as usize].1 as usize;
                    let child = u64::from(child) << 1;
                    group.push((place[segment << 1], child));
                    group.push((place[segment << 1 | 1], child | 1));
                }
                group.sort_unstable();
                pending.extend(group.iter().rev().map(|&(_, item)| item));
            }
        }
    }
    rank
}

struct Collapsed;

/// Lines made at a time by one thread: about a megabyte of text on a capture of deep stacks.
const LINES_A_PIECE: usize = 2048;

impl AggregateOutput for Collapsed {
    fn export(&mut self, counts: &StackCounts, ctx: &ExportContext<'_>) -> Result<()> {
        let path = ctx.path.context("collapsed output needs a file")?;
        let cannot = || format!("cannot write {}", path.display());
        let mut out = tachyon_plugin_api::output_file(path)?;
        let lines = Lines::new(counts, ctx.symbols);
        let texts = lines.texts();
        // Hundreds of megabytes of text, made on two threads.
        let piece = |chunk: usize, text: &mut Vec<u8>| {
            let start = chunk * LINES_A_PIECE;
            let range = start..(start + LINES_A_PIECE).min(lines.len());
            let mut count_text = itoa::Buffer::new();
            lines.for_each_of(&texts, range, |line, count| {
                text.extend_from_slice(line.as_bytes());
                text.push(b' ');
                text.extend_from_slice(count_text.format(count).as_bytes());
                text.push(b'\n');
                Ok(())
            })
        };
        let pieces = lines.len().div_ceil(LINES_A_PIECE);
        tachyon_plugin_api::write_in_pieces(&mut out, pieces, &piece).with_context(cannot)?;
        // Dropping a BufWriter hides write errors (a full disk): flush explicitly.
        out.flush().with_context(cannot)?;
        eprintln!(
            "Collapsed stack output written to {}",
            ctx.shown_path().display()
        );
        Ok(())
    }
}

fn create(_config: &CollectorConfig) -> Result<Box<dyn Collector>> {
    Ok(Box::new(Aggregating::new(Collapsed)))
}
inventory::submit! {
    Format {
        name: "collapsed",
        description: "Collapsed stacks (tid:N;file:func:line;... count) for flamegraph.pl / inferno",
        extension: "txt", options: &[], needs: Needs::NOTHING,
        create,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `x:1` < `x:12` < `x:12;…` < `x:1;…`, as the strings compare.
    #[test]
    fn texts_compare_as_their_strings() {
        let texts = [
            ("x:1", true),
            ("x:12", true),
            ("x:1", false),
            ("x:12", false),
        ];
        let mut sorted = texts;
        sorted.sort_by(|a, b| text_cmp((a.0.as_bytes(), a.1), (b.0.as_bytes(), b.1)));
        let mut as_strings = texts;
        as_strings
            .sort_by_key(|&(seg, goes_on)| format!("{seg}{}", if goes_on { ";" } else { "" }));
        assert_eq!(sorted, as_strings);
        assert_eq!(
            sorted,
            [
                ("x:1", false),
                ("x:12", false),
                ("x:12", true),
                ("x:1", true)
            ]
        );
    }
    use tachyon_plugin_api::testing;

    /// CPython's `CollapsedStackCollector`, literally: count per (thread, keys), then sort by
    /// (-count, text), stable.
    fn cpython_lines(samples: &[(u64, Vec<u32>, u64)], symbols: &Symbols) -> Vec<(String, u64)> {
        let mut counted: Vec<((u64, Vec<FrameKey>), u64)> = Vec::new();
        for (tid, frames, weight) in samples {
            let keys: Vec<FrameKey> = frames
                .iter()
                .rev()
                .map(|&f| FrameKey::of(symbols, f))
                .collect();
            match counted.iter_mut().find(|(k, _)| k.0 == *tid && k.1 == keys) {
                Some((_, n)) => *n += weight,
                None => counted.push(((*tid, keys), *weight)),
            }
        }
        let mut lines: Vec<(String, u64)> = counted
            .into_iter()
            .map(|((tid, keys), n)| {
                let mut text = format!("tid:{tid}");
                for key in &keys {
                    text.push(';');
                    text.push_str(&frame_label(key));
                }
                (text, n)
            })
            .collect();
        lines.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        lines
    }

    /// Our lines against CPython's, from random samples of `frames` (file, function, line,
    /// column), whole and cut into pieces (as the export writes them, each begun afresh).
    fn assert_lines_are_cpythons(frames: &[(&str, &str, i32, i32)], equal_texts: bool) {
        let mut symbols = Symbols::new();
        let frames: Vec<u32> = frames
            .iter()
            .map(|&(file, func, line, column)| {
                testing::frame(&mut symbols, file, func, line, column)
            })
            .collect();
        let (counts, samples) =
            testing::random_samples(&mut symbols, &frames, 7, 3000, &[7, 1000, 10001], 3, 2);
        let mut ours = Vec::new();
        let lines = Lines::new(&counts, &symbols);
        lines
            .for_each(|text, n| {
                ours.push((text.to_owned(), n));
                Ok(())
            })
            .unwrap();
        let expected = cpython_lines(&samples, &symbols);
        assert_eq!(
            expected.windows(2).any(|w| w[0].0 == w[1].0),
            equal_texts,
            "has equal texts"
        );
        assert_eq!(ours, expected);
        let texts = lines.texts();
        let mut pieces = Vec::new();
        for start in (0..lines.len()).step_by(7) {
            let range = start..(start + 7).min(lines.len());
            lines
                .for_each_of(&texts, range, |text, n| {
                    pieces.push((text.to_owned(), n));
                    Ok(())
                })
                .unwrap();
        }
        assert_eq!(pieces, expected);
    }

    /// Base names that collide, lines that prefix each other (x:1 and x:12), a ';' in a name,
    /// columns that make two frames of one key: texts merged from several stacks.
    #[test]
    fn lines_are_in_cpython_order() {
        let mut frames = Vec::new();
        for file in ["/a/x.py", "/b/x.py", "/c/y;z.py"] {
            for func in ["f", "f;g", "fg"] {
                for (line, column) in [(1, 0), (12, 0), (2, 0), (1, 5)] {
                    frames.push((file, func, line, column));
                }
            }
        }
        assert_lines_are_cpythons(&frames, true);
    }

    /// Every frame a label of its own (the texts are the stack table's nodes, made without
    /// lookups), lines that still prefix each other.
    #[test]
    fn lines_of_distinct_labels_are_in_cpython_order() {
        let mut frames = Vec::new();
        for file in ["/a/x.py", "/b/y.py"] {
            for func in ["f", "fg", "g"] {
                for line in [1, 12, 2] {
                    frames.push((file, func, line, 0));
                }
            }
        }
        assert_lines_are_cpythons(&frames, false);
    }
}
