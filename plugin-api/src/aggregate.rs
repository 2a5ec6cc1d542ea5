//! The middle layer every aggregating format is built on (CPython's `StackTraceCollector`,
//! inferno's `collapse/common`): samples counted once per (thread, stack), one frame key with
//! one naming rule, and the call tree a flame graph or a comparison walks.

use std::hash::Hasher as _;

use crate::collector::{Collector, ExportContext};
use crate::hash::{FxHashMap, FxHasher, Slots};
use crate::model::{FrameId, Interner, Sample, StrId, Symbols};
use crate::stacks::{StackId, StackTable, Trie};

/// What makes two frames the same function line: (filename, line, function), as CPython
/// 3.15.2 keys its flame graph nodes and cProfile keys its entries. Unknown lines are 0.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FrameKey {
    pub filename: String,
    pub lineno: i32,
    pub funcname: String,
}

/// Tachyon's synthetic frames (`<GC>`, `<native>`) have filename `~` and no line.
#[must_use]
pub fn is_synthetic(filename: &str, lineno: i32) -> bool {
    lineno <= 0 && filename == "~"
}

impl FrameKey {
    #[must_use]
    pub fn of(symbols: &Symbols, frame: FrameId) -> FrameKey {
        let f = symbols.frame(frame);
        FrameKey {
            filename: symbols.str(f.filename).to_owned(),
            lineno: f.lineno.max(0),
            funcname: symbols.str(f.funcname).to_owned(),
        }
    }

    #[must_use]
    pub fn is_synthetic(&self) -> bool {
        is_synthetic(&self.filename, self.lineno)
    }

    /// A line of a file that could be read: not synthetic, `<string>`, `<frozen …>` or `[…]`.
    #[must_use]
    pub fn has_source(&self) -> bool {
        self.lineno > 0
            && !self.is_synthetic()
            && !self.filename.is_empty()
            && !self.filename.starts_with(['<', '['])
    }

    /// The runpy machinery CPython 3.15's `run` starts a script or module through.
    #[must_use]
    pub fn is_bootstrap(&self) -> bool {
        self.filename == "<frozen runpy>" || self.filename.ends_with("/runpy.py")
    }

    /// The file's last path component (pstats' `strip_dirs()`).
    #[must_use]
    pub fn base_name(&self) -> &str {
        self.filename.rsplit('/').next().unwrap_or(&self.filename)
    }

    /// CPython's `_format_function_name`: `func (path:line)` with a long path shortened, the
    /// bare name for synthetic frames.
    #[must_use]
    pub fn label(&self) -> String {
        self.label_with(&short_path(&self.filename))
    }

    /// The label with another name for the file (CPython's `_format_module_name` passes the
    /// module).
    #[must_use]
    pub fn label_with(&self, place: &str) -> String {
        if self.is_synthetic() {
            self.funcname.clone()
        } else {
            format!("{} ({place}:{})", self.funcname, self.lineno)
        }
    }
}

/// `.../a/b.py` for paths over 50 characters, as CPython shortens them.
#[must_use]
pub fn short_path(path: &str) -> String {
    let parts: Vec<&str> = path.split('/').collect();
    if path.chars().count() > 50 && parts.len() > 2 {
        format!(".../{}", parts[parts.len() - 2..].join("/"))
    } else {
        path.to_owned()
    }
}

/// Frame keys numbered once, each sampled frame looked up once. A frame's key is found by
/// the ids of its file's and function's texts (their first ids in the string table, so a
/// table that repeats a string still gives one key), not by hashing the strings.
#[derive(Default, Debug)]
pub struct FrameKeys {
    keys: Vec<FrameKey>,
    /// (file, line, function) -> key id, the strings by their texts' first ids.
    by_ids: FxHashMap<(StrId, i32, StrId), u32>,
    /// Frame id -> key id ([`NO_KEY`] until the frame is seen): frame ids are dense.
    of_frame: Vec<u32>,
    /// String id -> the first id of its text ([`NO_KEY`] until asked).
    first_str: Vec<u32>,
}

const NO_KEY: u32 = u32::MAX;

impl FrameKeys {
    pub fn id(&mut self, symbols: &Symbols, frame: FrameId) -> usize {
        if let Some(&id) = self
            .of_frame
            .get(frame as usize)
            .filter(|&&id| id != NO_KEY)
        {
            return id as usize;
        }
        let f = symbols.frame(frame);
        let mut first = |s: StrId| {
            if self.first_str.len() <= s as usize {
                self.first_str
                    .resize(symbols.strings().len().max(s as usize + 1), NO_KEY);
            }
            if self.first_str[s as usize] == NO_KEY {
                self.first_str[s as usize] = symbols.first_str_id(s);
            }
            self.first_str[s as usize]
        };
        let ids = (first(f.filename), f.lineno.max(0), first(f.funcname));
        let keys = &mut self.keys;
        let id = *self.by_ids.entry(ids).or_insert_with(|| {
            keys.push(FrameKey::of(symbols, frame));
            (keys.len() - 1) as u32
        });
        if self.of_frame.len() <= frame as usize {
            self.of_frame
                .resize(symbols.frames().len().max(frame as usize + 1), NO_KEY);
        }
        self.of_frame[frame as usize] = id;
        id as usize
    }

    #[must_use]
    pub fn key(&self, id: usize) -> &FrameKey {
        &self.keys[id]
    }

    /// Every key, by id.
    #[must_use]
    pub fn list(&self) -> &[FrameKey] {
        &self.keys
    }
}

/// Values grouped by a dense key below `groups`, each group's in the order they came:
/// `(start, grouped)`, where `grouped[start[g]..start[g + 1]]` are the values of key `g`. A
/// counting sort: two passes over the items (each value written once, in its place), no
/// comparison, however many items.
#[must_use]
pub fn group_by_key<T: Copy + Default>(
    items: impl Iterator<Item = (u32, T)> + Clone,
    groups: usize,
) -> (Vec<u32>, Vec<T>) {
    let mut start = vec![0u32; groups + 1];
    for (key, _) in items.clone() {
        start[key as usize + 1] += 1;
    }
    for g in 0..groups {
        start[g + 1] += start[g];
    }
    let mut next = start.clone();
    let mut grouped = vec![T::default(); start[groups] as usize];
    for (key, value) in items {
        grouped[next[key as usize] as usize] = value;
        next[key as usize] += 1;
    }
    (start, grouped)
}

/// Samples aggregated once, for every format that aggregates: weight per (thread, stack), in
/// order of first appearance (the order CPython's collectors fill their dictionaries in,
/// which decides ties and ids). Stacks are ids in the samples' [`Symbols::stacks`]. Samples
/// with no frame are skipped, as CPython 3.15's collectors skip them.
#[derive(Debug, Default)]
pub struct StackCounts {
    /// (thread id, stack, samples).
    entries: Vec<(u64, StackId, u64)>,
    /// The entries by the hash of (thread id, stack).
    index: Slots,
}

/// The hash of a (thread, stack) pair, by which aggregates find their entries.
pub(crate) fn entry_hash(thread_id: u64, stack: StackId) -> u64 {
    let mut hasher = FxHasher::default();
    hasher.write_u64(thread_id);
    hasher.write_u32(stack);
    hasher.finish()
}

impl StackCounts {
    /// Count one sample (batch); `false` if it was skipped for having no frame.
    pub fn add(&mut self, sample: &Sample<'_>) -> bool {
        self.add_weighted(sample.thread_id, sample.stack, sample.weight())
    }

    /// Count `weight` samples of an interned stack.
    pub fn add_weighted(&mut self, thread_id: u64, stack: StackId, weight: u64) -> bool {
        if stack == StackTable::EMPTY {
            return false;
        }
        let hash = entry_hash(thread_id, stack);
        let StackCounts { entries, index } = self;
        match index.find(hash, |i| entries[i].0 == thread_id && entries[i].1 == stack) {
            Some(i) => entries[i].2 += weight,
            None => {
                entries.push((thread_id, stack, weight));
                index.insert(hash, entries.len() - 1);
            }
        }
        true
    }

    /// Start counting a sample of this thread and stack, some samples ahead: bring what it
    /// will read into the cache.
    pub fn prefetch(&mut self, thread_id: u64, stack: StackId) {
        self.index
            .prefetch(entry_hash(thread_id, stack), &self.entries);
    }

    /// (thread id, stack, samples), in order of first appearance.
    #[must_use]
    pub fn entries(&self) -> &[(u64, StackId, u64)] {
        &self.entries
    }

    /// Samples per stack, every thread together, in order of first appearance.
    #[must_use]
    pub fn by_stack(&self) -> Vec<(StackId, u64)> {
        let mut index: FxHashMap<StackId, usize> = FxHashMap::default();
        let mut out: Vec<(StackId, u64)> = Vec::new();
        for &(_, stack, w) in &self.entries {
            if let Some(&i) = index.get(&stack) {
                out[i].1 += w
            } else {
                index.insert(stack, out.len());
                out.push((stack, w));
            }
        }
        out
    }

    /// Every thread that has a sample, in order of first appearance.
    #[must_use]
    pub fn threads(&self) -> Vec<u64> {
        let mut seen: FxHashMap<u64, ()> = FxHashMap::default();
        self.entries
            .iter()
            .filter_map(|&(tid, _, _)| seen.insert(tid, ()).is_none().then_some(tid))
            .collect()
    }

    #[must_use]
    pub fn total(&self) -> u64 {
        self.entries.iter().map(|e| e.2).sum()
    }

    /// The call tree of these samples. With `strip_bootstrap`, leading runpy frames are left
    /// out, so the same script profiled by CPython's `run` and by tachyon matches. Per-thread
    /// values are kept for the root and the nodes of at least `thread_detail` samples (1:
    /// every node; [`ROOT_THREADS_ONLY`]: the root only, until [`CallTree::list_threads`]
    /// names others): a flame graph that leaves out smaller nodes need not hold them, and on
    /// a capture of many distinct stacks they are most of the tree.
    #[must_use]
    pub fn tree(&self, symbols: &Symbols, strip_bootstrap: bool, thread_detail: u64) -> CallTree {
        let mut tree = CallTree::new();
        tree.add(symbols, self, strip_bootstrap, thread_detail);
        tree
    }
}

/// A format that works from aggregated samples: [`Aggregating`] does the collecting.
pub trait AggregateOutput {
    /// Called for every sample the aggregate counted, for what a format tracks beyond stacks
    /// (thread status, GC time).
    fn observe(&mut self, _symbols: &Symbols, _sample: &Sample<'_>) {}

    fn export(&mut self, counts: &StackCounts, ctx: &ExportContext<'_>) -> anyhow::Result<()>;
}

/// The [`Collector`] of every aggregating format: counts samples into [`StackCounts`] and
/// hands them to the format at export.
#[derive(Default)]
pub struct Aggregating<T> {
    pub counts: StackCounts,
    pub output: T,
}

impl<T> Aggregating<T> {
    pub fn new(output: T) -> Self {
        Aggregating {
            counts: StackCounts::default(),
            output,
        }
    }
}

impl<T: AggregateOutput> Collector for Aggregating<T> {
    fn collect(&mut self, symbols: &Symbols, sample: &Sample<'_>) {
        if self.counts.add(sample) {
            self.output.observe(symbols, sample);
        }
    }

    fn prefetch(&mut self, _symbols: &Symbols, thread_id: u64, stack: StackId) {
        self.counts.prefetch(thread_id, stack);
    }

    fn export(&mut self, ctx: &ExportContext<'_>) -> anyhow::Result<()> {
        self.output.export(&self.counts, ctx)
    }
}

/// The `thread_detail` of a [`StackCounts::tree`] whose per-thread values are only the
/// root's: for comparisons, which read none.
pub const ROOT_THREADS_ONLY: u64 = u64::MAX;

#[derive(Clone, Debug, Default)]
pub struct TreeNode {
    /// Into [`CallTree::keys`]; meaningless for the root.
    pub key: usize,
    /// Inclusive samples.
    pub value: u64,
    pub self_value: u64,
}

/// One thread's samples at a call-tree node.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ThreadValue {
    pub tid: u64,
    pub inclusive: u64,
    pub self_value: u64,
}

/// The call tree: one node per path of frame keys from the root, with inclusive and self
/// samples, per-thread values and opcode counts. Children and thread values are two flat
/// arrays indexed by node, not two vectors per node: a tree of millions of nodes would spend
/// more on their headers and heap blocks than on the values.
#[derive(Clone, Debug)]
pub struct CallTree {
    pub keys: Interner<FrameKey>,
    /// Node 0 is the root (all samples).
    pub nodes: Vec<TreeNode>,
    /// Node n's children are `children[child_start[n]..child_start[n + 1]]`, in order of
    /// first appearance.
    child_start: Vec<u32>,
    children: Vec<u32>,
    /// Node n's threads are `thread_values[thread_bound[n + 1]..thread_bound[n]]`, by thread
    /// id (the blocks are written deepest node first).
    thread_bound: Vec<usize>,
    thread_values: Vec<ThreadValue>,
    /// Node n's samples by opcode are `opcode_counts[opcode_start[n]..opcode_start[n + 1]]`;
    /// both empty unless a frame recorded its opcode.
    opcode_start: Vec<usize>,
    opcode_counts: Vec<(u8, u64)>,
    /// (node, thread, samples) of every counted stack: what per-thread values are made of.
    stack_samples: Vec<(u32, u64, u64)>,
}

impl Default for CallTree {
    fn default() -> Self {
        Self::new()
    }
}

impl CallTree {
    #[must_use]
    pub fn new() -> CallTree {
        CallTree {
            keys: Interner::default(),
            nodes: vec![TreeNode::default()],
            child_start: vec![0, 0],
            children: Vec::new(),
            thread_bound: vec![0, 0],
            thread_values: Vec::new(),
            opcode_start: Vec::new(),
            opcode_counts: Vec::new(),
            stack_samples: Vec::new(),
        }
    }

    #[must_use]
    pub fn key(&self, node: usize) -> &FrameKey {
        self.keys.get(self.nodes[node].key)
    }

    /// A node's children, in order of first appearance.
    #[must_use]
    pub fn children(&self, node: usize) -> &[u32] {
        &self.children[self.child_start[node] as usize..self.child_start[node + 1] as usize]
    }

    /// A node's samples per thread, by thread id.
    #[must_use]
    pub fn threads(&self, node: usize) -> &[ThreadValue] {
        &self.thread_values[self.thread_bound[node + 1]..self.thread_bound[node]]
    }

    /// One thread's samples at a node.
    #[must_use]
    pub fn thread(&self, node: usize, tid: u64) -> Option<&ThreadValue> {
        let threads = self.threads(node);
        threads
            .binary_search_by_key(&tid, |t| t.tid)
            .ok()
            .map(|at| &threads[at])
    }

    /// A node's samples by the opcode its frame was at, by opcode (with `--opcodes`).
    #[must_use]
    pub fn opcodes(&self, node: usize) -> &[(u8, u64)] {
        match self.opcode_start.get(node..node + 2) {
            Some(&[start, end]) => &self.opcode_counts[start..end],
            _ => &[],
        }
    }

    /// Add every (thread, stack). The stack table is itself a tree, so each interned prefix
    /// maps to one tree node, found once. Each stack's samples go to its own node, then every
    /// node's inclusive values to its parent's, deepest nodes first (a child is made after its
    /// parent): one pass over the nodes instead of a walk of every stack's depth, which missed
    /// the cache at each of its nodes. Called once, on a new tree.
    fn add(
        &mut self,
        symbols: &Symbols,
        counts: &StackCounts,
        strip_bootstrap: bool,
        thread_detail: u64,
    ) {
        let stacks = symbols.stacks();
        let mut frame_keys = FrameKeys::default();
        // The needed nodes of the stack table in id order (parents first), each as (its
        // parent's place in this list, 0 for the root, and its frame's key): its place.
        let mut needed: Vec<(u32, u32)> = Vec::new();
        // The frame each key was first met at. When no two frames have one key (and none is
        // left out as bootstrap), no two nodes merge: the tree's nodes are the needed nodes
        // themselves, made in a row with no lookup.
        let mut frame_of_key: Vec<FrameId> = Vec::new();
        let mut keys_are_distinct = true;
        let stack_ids = counts.entries().iter().map(|&(_, stack, _)| stack);
        let place_of = stacks.map_prefixes(stack_ids, 0, |parent, frame| {
            let key = frame_keys.id(symbols, frame);
            if frame_of_key.len() <= key {
                frame_of_key.resize(key + 1, FrameId::MAX);
            }
            if frame_of_key[key] == FrameId::MAX {
                frame_of_key[key] = frame;
                keys_are_distinct &= !(strip_bootstrap && frame_keys.key(key).is_bootstrap());
            }
            keys_are_distinct &= frame_of_key[key] == frame;
            needed.push((parent, key as u32));
            needed.len() as u32
        });
        // Frame key id -> this tree's key id (hashing a key's strings once, not per node).
        let mut tree_key: Vec<usize> = vec![usize::MAX; frame_keys.list().len()];
        let mut tree_key_of = |key: u32| {
            let key = key as usize;
            if tree_key[key] == usize::MAX {
                tree_key[key] = self.keys.id(frame_keys.key(key));
            }
            tree_key[key]
        };
        let mut parent_of: Vec<u32> = vec![0];
        // No more nodes than needed stack nodes: sized once, never copied as they grow.
        self.nodes.reserve_exact(needed.len() + 1);
        let node_of = if keys_are_distinct {
            for &(parent, key) in &needed {
                let key = tree_key_of(key);
                self.nodes.push(TreeNode {
                    key,
                    ..Default::default()
                });
                parent_of.push(parent);
            }
            place_of
        } else {
            // The tree's nodes as paths of keys, while it is built (node ids are the same).
            let mut paths = Trie::default();
            let mut node_at = vec![0u32; needed.len() + 1];
            for (place, &(parent, key)) in needed.iter().enumerate() {
                let parent = node_at[parent as usize];
                node_at[place + 1] = if strip_bootstrap
                    && parent == 0
                    && frame_keys.key(key as usize).is_bootstrap()
                {
                    0
                } else {
                    let key = tree_key_of(key);
                    let child = paths.child(parent, key as u32);
                    if child as usize == self.nodes.len() {
                        self.nodes.push(TreeNode {
                            key,
                            ..Default::default()
                        });
                        parent_of.push(parent);
                    }
                    child
                };
            }
            place_of
                .into_iter()
                .map(|place| node_at.get(place as usize).copied().unwrap_or(u32::MAX))
                .collect()
        };
        drop(needed);
        self.stack_samples.reserve_exact(counts.entries().len());
        for &(tid, stack, weight) in counts.entries() {
            let node = node_of[stack as usize];
            let n = &mut self.nodes[node as usize];
            n.value += weight;
            n.self_value += weight;
            self.stack_samples.push((node, tid, weight));
        }
        for node in (1..self.nodes.len()).rev() {
            let value = self.nodes[node].value;
            self.nodes[parent_of[node] as usize].value += value;
        }
        self.link_children(&parent_of);
        let listed: Vec<bool> = self
            .nodes
            .iter()
            .map(|n| n.value >= thread_detail)
            .collect();
        self.list_threads(&listed);
        if symbols.frames().iter().any(|f| f.opcode.is_some()) {
            self.add_opcodes(symbols, counts, &node_of);
        }
    }

    /// Every node's children, in the order they were made.
    fn link_children(&mut self, parent_of: &[u32]) {
        let children =
            (parent_of.iter().enumerate().skip(1)).map(|(node, &parent)| (parent, node as u32));
        (self.child_start, self.children) = group_by_key(children, self.nodes.len());
    }

    /// The samples per thread of the root and of the nodes `listed` (indexed by node; a
    /// listed node's parent is listed too), in place of those listed before: each one's own
    /// samples and its children's, deepest node first (children are made after their parent,
    /// so they are done before it). An unlisted node keeps none: its samples count for its
    /// nearest listed ancestor.
    pub fn list_threads(&mut self, listed: &[bool]) {
        // The node each node's samples are listed under: itself, or its nearest listed
        // ancestor; parents come first.
        let mut listed_under: Vec<u32> = vec![0; self.nodes.len()];
        for node in 0..self.nodes.len() {
            let under = listed_under[node];
            for &child in self.children(node) {
                listed_under[child as usize] = if listed[child as usize] { child } else { under };
            }
        }
        // (listed under, thread) -> (inclusive, self): summed before they are sorted, since
        // most stacks' samples fall to a few listed nodes when few are listed.
        let mut summed: FxHashMap<(u32, u64), (u64, u64)> = FxHashMap::default();
        for &(node, tid, weight) in &self.stack_samples {
            let under = listed_under[node as usize];
            let sums = summed.entry((under, tid)).or_default();
            sums.0 += weight;
            if under == node {
                sums.1 += weight;
            }
        }
        let mut own: Vec<((u32, u64), (u64, u64))> = summed.into_iter().collect();
        own.sort_unstable_by_key(|&(key, _)| key);
        let nodes = self.nodes.len();
        self.thread_bound = vec![0; nodes + 1];
        self.thread_values.clear();
        let mut merged: Vec<ThreadValue> = Vec::new();
        for node in (0..nodes).rev() {
            if listed_under[node] != node as u32 {
                // Nothing is listed here or below.
                self.thread_bound[node] = self.thread_values.len();
                continue;
            }
            merged.clear();
            while let Some(&((n, tid), (inclusive, self_value))) = own.last() {
                if n as usize != node {
                    break;
                }
                own.pop();
                merged.push(ThreadValue {
                    tid,
                    inclusive,
                    self_value,
                });
            }
            for &child in self.children(node) {
                let child = child as usize;
                let span = self.thread_bound[child + 1]..self.thread_bound[child];
                merged.extend(self.thread_values[span].iter().map(|t| ThreadValue {
                    self_value: 0,
                    ..*t
                }));
            }
            merged.sort_unstable_by_key(|t| t.tid);
            let start = self.thread_values.len();
            for t in &merged {
                match self.thread_values[start..].last_mut() {
                    Some(last) if last.tid == t.tid => {
                        last.inclusive += t.inclusive;
                        last.self_value += t.self_value;
                    }
                    _ => self.thread_values.push(*t),
                }
            }
            // Written deepest node first: node n's block starts where node n + 1's ends.
            self.thread_bound[node] = self.thread_values.len();
        }
    }

    /// Each node's samples by the opcode its frame was at: a tree node may be several frames
    /// (one function line, several opcodes), so this is counted per stack prefix.
    fn add_opcodes(&mut self, symbols: &Symbols, counts: &StackCounts, node_of: &[u32]) {
        let stacks = symbols.stacks();
        let mut through = vec![0u64; stacks.len()];
        for &(_, stack, weight) in counts.entries() {
            through[stack as usize] += weight;
        }
        // A prefix is interned before every stack that extends it.
        for s in (1..stacks.len()).rev() {
            through[stacks.parent(s as StackId) as usize] += through[s];
        }
        // (node, opcode, samples) of every prefix, then summed per node and opcode.
        let mut counted: Vec<(u32, u8, u64)> = Vec::new();
        for (s, &weight) in through.iter().enumerate().skip(1) {
            let node = node_of[s];
            if weight == 0 || node == 0 || node == u32::MAX {
                continue;
            }
            let frame = stacks.leaf(s as StackId).expect("non-empty stack");
            if let Some(op) = symbols.frame(frame).opcode {
                counted.push((node, op, weight));
            }
        }
        counted.sort_unstable_by_key(|&(node, op, _)| (node, op));
        self.opcode_start = vec![0; self.nodes.len() + 1];
        for (node, op, weight) in counted {
            match self.opcode_counts.last_mut() {
                Some(last) if self.opcode_start[node as usize + 1] > 0 && last.0 == op => {
                    last.1 += weight;
                }
                _ => {
                    self.opcode_counts.push((op, weight));
                    self.opcode_start[node as usize + 1] = self.opcode_counts.len();
                }
            }
        }
        // Nodes without opcodes end where the node before them ends.
        for i in 1..self.opcode_start.len() {
            self.opcode_start[i] = self.opcode_start[i].max(self.opcode_start[i - 1]);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::FrameInfo;

    fn frame(symbols: &mut Symbols, file: &str, func: &str, line: i32) -> FrameId {
        let frame = FrameInfo {
            filename: symbols.intern_str(file),
            funcname: symbols.intern_str(func),
            lineno: line,
            end_lineno: line,
            column: -1,
            end_column: -1,
            opcode: None,
        };
        symbols.intern_frame(frame)
    }

    /// (thread, inclusive, self) of a node.
    fn thread_values(tree: &CallTree, node: usize) -> Vec<(u64, u64, u64)> {
        tree.threads(node)
            .iter()
            .map(|t| (t.tid, t.inclusive, t.self_value))
            .collect()
    }

    #[test]
    fn one_key_and_label_rule() {
        let mut symbols = Symbols::new();
        let gc = frame(&mut symbols, "~", "<GC>", -1);
        let long = "/a/very/long/directory/name/that/goes/on/and/on/pkg/mod.py";
        let deep = frame(&mut symbols, long, "f", 7);
        assert!(symbols.is_synthetic(symbols.frame(gc)));
        assert!(FrameKey::of(&symbols, gc).is_synthetic());
        assert_eq!(FrameKey::of(&symbols, gc).label(), "<GC>");
        assert!(!FrameKey::of(&symbols, gc).has_source());
        let key = FrameKey::of(&symbols, deep);
        assert_eq!(key.label(), "f (.../pkg/mod.py:7)");
        assert_eq!(key.label_with("pkg.mod"), "f (pkg.mod:7)");
        assert_eq!(key.base_name(), "mod.py");
        assert!(key.has_source());
    }

    /// Each group lists its values in the order they came, empty groups included.
    #[test]
    fn items_are_grouped_by_key_in_order() {
        let items = [(2u32, 'a'), (0, 'b'), (2, 'c'), (3, 'd'), (0, 'e')];
        let (start, grouped) = group_by_key(items.into_iter(), 5);
        assert_eq!(start, [0, 2, 2, 4, 5, 5]);
        assert_eq!(grouped, ['b', 'e', 'a', 'c', 'd']);
    }

    /// Thousands of (thread, stack) pairs, through several growths of the index and with
    /// prefetches between, are counted in order of first appearance; a stack in another
    /// thread is another entry.
    #[test]
    fn counts_keep_first_appearance_through_growth() {
        let mut counts = StackCounts::default();
        let pairs: Vec<(u64, StackId)> = (0..6000u32)
            .map(|i| (u64::from(i % 3) << 40 | 7, 1 + i / 3))
            .collect();
        for round in 0..2 {
            for (i, &(tid, stack)) in pairs.iter().enumerate() {
                if let Some(&(t, s)) = pairs.get(i + 8) {
                    counts.prefetch(t, s);
                }
                counts.add_weighted(tid, stack, round + 1);
            }
        }
        let expected: Vec<(u64, StackId, u64)> =
            pairs.iter().map(|&(tid, stack)| (tid, stack, 3)).collect();
        assert_eq!(counts.entries(), expected);
    }

    #[test]
    fn tree_counts_inclusive_self_and_strips_bootstrap() {
        let mut symbols = Symbols::new();
        let runpy = frame(&mut symbols, "<frozen runpy>", "_run_code", 88);
        let main = frame(&mut symbols, "/app.py", "main", 3);
        let work = frame(&mut symbols, "/app.py", "work", 9);
        let mut counts = StackCounts::default();
        counts.add_weighted(1, symbols.intern_stack(&[work, main, runpy]), 3);
        counts.add_weighted(1, symbols.intern_stack(&[main, runpy]), 1);
        counts.add_weighted(2, symbols.intern_stack(&[work, main, runpy]), 2);
        assert!(!counts.add_weighted(2, symbols.intern_stack(&[]), 5));
        assert_eq!(counts.total(), 6);
        let tree = counts.tree(&symbols, true, 1);
        assert_eq!(tree.nodes[0].value, 6);
        let top: Vec<usize> = tree.children(0).iter().map(|&c| c as usize).collect();
        assert_eq!(top.len(), 1);
        assert_eq!(tree.key(top[0]).funcname, "main");
        assert_eq!(
            (tree.nodes[top[0]].value, tree.nodes[top[0]].self_value),
            (6, 1)
        );
        // (thread, inclusive, self) at the leaf, an inner node and the root.
        let leaf = tree.children(top[0])[0] as usize;
        assert_eq!(thread_values(&tree, leaf), vec![(1, 3, 3), (2, 2, 2)]);
        assert_eq!(thread_values(&tree, top[0]), vec![(1, 4, 1), (2, 2, 0)]);
        assert_eq!(thread_values(&tree, 0), vec![(1, 4, 0), (2, 2, 0)]);
        let kept = counts.tree(&symbols, false, 1);
        assert_eq!(kept.key(kept.children(0)[0] as usize).funcname, "_run_code");
    }

    /// Every node's (inclusive, self) samples are those of its path of keys, summed over the
    /// samples literally: with frames of distinct keys (the tree's nodes are the stack
    /// table's) and with frames that share keys (columns: nodes merge).
    #[test]
    fn tree_nodes_sum_the_samples_of_their_key_paths() {
        for columns in [&[0][..], &[0, 4]] {
            let mut symbols = Symbols::new();
            let mut frames = Vec::new();
            for func in ["main", "a", "b", "c"] {
                for line in [1, 2] {
                    for &column in columns {
                        frames.push(crate::testing::frame(
                            &mut symbols,
                            "/app.py",
                            func,
                            line,
                            column,
                        ));
                    }
                }
            }
            let (counts, samples) =
                crate::testing::random_samples(&mut symbols, &frames, 5, 400, &[1, 2], 5, 3);
            let mut expected: std::collections::HashMap<Vec<FrameKey>, (u64, u64)> =
                Default::default();
            for (_, stack, weight) in &samples {
                let keys: Vec<FrameKey> = stack
                    .iter()
                    .rev()
                    .map(|&f| FrameKey::of(&symbols, f))
                    .collect();
                for depth in 1..=keys.len() {
                    let sums = expected.entry(keys[..depth].to_vec()).or_default();
                    sums.0 += weight;
                    if depth == keys.len() {
                        sums.1 += weight;
                    }
                }
            }
            let tree = counts.tree(&symbols, false, 1);
            let mut ours: std::collections::HashMap<Vec<FrameKey>, (u64, u64)> = Default::default();
            let mut paths = vec![(0usize, Vec::new())];
            while let Some((node, path)) = paths.pop() {
                for &child in tree.children(node) {
                    let mut path: Vec<FrameKey> = path.clone();
                    path.push(tree.key(child as usize).clone());
                    let n = &tree.nodes[child as usize];
                    assert!(ours.insert(path.clone(), (n.value, n.self_value)).is_none());
                    paths.push((child as usize, path));
                }
            }
            assert_eq!(ours, expected, "columns {columns:?}");
        }
    }

    #[test]
    fn small_nodes_keep_no_thread_values_but_count_for_their_ancestors() {
        let mut symbols = Symbols::new();
        let main = frame(&mut symbols, "/app.py", "main", 3);
        let big = frame(&mut symbols, "/app.py", "big", 5);
        let small = frame(&mut symbols, "/app.py", "small", 7);
        let tiny = frame(&mut symbols, "/app.py", "tiny", 9);
        let mut counts = StackCounts::default();
        counts.add_weighted(1, symbols.intern_stack(&[big, main]), 5);
        counts.add_weighted(2, symbols.intern_stack(&[small, main]), 1);
        counts.add_weighted(1, symbols.intern_stack(&[tiny, small, main]), 1);
        let tree = counts.tree(&symbols, false, 3);
        let main_node = tree.children(0)[0] as usize;
        let [big_node, small_node] = [0, 1].map(|i| tree.children(main_node)[i] as usize);
        assert_eq!(tree.nodes[small_node].value, 2);
        assert!(tree.threads(small_node).is_empty());
        assert!(tree
            .threads(tree.children(small_node)[0] as usize)
            .is_empty());
        assert_eq!(thread_values(&tree, big_node), vec![(1, 5, 5)]);
        assert_eq!(thread_values(&tree, main_node), vec![(1, 6, 0), (2, 1, 0)]);
        assert_eq!(thread_values(&tree, 0), vec![(1, 6, 0), (2, 1, 0)]);
        // Every node keeps them with 1.
        let full = counts.tree(&symbols, false, 1);
        let small_node = full.children(full.children(0)[0] as usize)[1] as usize;
        assert_eq!(full.threads(small_node).len(), 2);
    }

    /// Values listed later, for a chosen path, are those every node gets when all are
    /// listed from the start; nodes off the path keep none.
    #[test]
    fn threads_listed_later_for_chosen_nodes_match_full_detail() {
        let mut symbols = Symbols::new();
        let [main, a, b, c] = ["main", "a", "b", "c"].map(|f| frame(&mut symbols, "/app.py", f, 1));
        let mut counts = StackCounts::default();
        counts.add_weighted(1, symbols.intern_stack(&[c, a, main]), 4);
        counts.add_weighted(2, symbols.intern_stack(&[c, a, main]), 1);
        counts.add_weighted(2, symbols.intern_stack(&[a, main]), 2);
        counts.add_weighted(1, symbols.intern_stack(&[b, main]), 3);
        let full = counts.tree(&symbols, false, 1);
        let mut late = counts.tree(&symbols, false, ROOT_THREADS_ONLY);
        let main_node = late.children(0)[0] as usize;
        assert!(late.threads(main_node).is_empty());
        assert_eq!(thread_values(&late, 0), thread_values(&full, 0));
        // main -> a -> c listed; main -> b not.
        let a_node = late.children(main_node)[0] as usize;
        let c_node = late.children(a_node)[0] as usize;
        let b_node = late.children(main_node)[1] as usize;
        let mut listed = vec![false; late.nodes.len()];
        for node in [main_node, a_node, c_node] {
            listed[node] = true;
        }
        late.list_threads(&listed);
        for node in [0, main_node, a_node, c_node] {
            assert_eq!(thread_values(&late, node), thread_values(&full, node));
        }
        assert_eq!(thread_values(&late, a_node), vec![(1, 4, 0), (2, 3, 2)]);
        assert!(late.threads(b_node).is_empty());
    }

    #[test]
    fn tree_counts_opcodes_of_each_frame_of_a_line() {
        let mut symbols = Symbols::new();
        let mut at = |op: u8, line: i32, func: &str| {
            let frame = FrameInfo {
                filename: symbols.intern_str("/app.py"),
                funcname: symbols.intern_str(func),
                lineno: line,
                end_lineno: line,
                column: 4,
                end_column: 9,
                opcode: Some(op),
            };
            symbols.intern_frame(frame)
        };
        // One line of `main` at two opcodes, each calling `work` at one.
        let (main_call, main_load) = (at(171, 3, "main"), at(90, 3, "main"));
        let work = at(100, 9, "work");
        let mut counts = StackCounts::default();
        counts.add_weighted(1, symbols.intern_stack(&[work, main_call]), 5);
        counts.add_weighted(1, symbols.intern_stack(&[main_load]), 2);
        counts.add_weighted(2, symbols.intern_stack(&[work, main_load]), 1);
        let tree = counts.tree(&symbols, false, 1);
        let main = tree.children(0)[0] as usize;
        assert_eq!(tree.children(0).len(), 1);
        assert_eq!(
            (tree.nodes[main].value, tree.nodes[main].self_value),
            (8, 2)
        );
        let ops = tree.opcodes(main).to_vec();
        assert_eq!(ops, vec![(90, 3), (171, 5)]);
        let work = tree.children(main)[0] as usize;
        let ops = tree.opcodes(work).to_vec();
        assert_eq!(ops, vec![(100, 6)]);
        assert!(tree.opcodes(0).is_empty());
    }
}
