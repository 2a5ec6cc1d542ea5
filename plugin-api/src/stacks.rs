//! Interning whole stacks as nodes of a call tree, so collectors aggregate by one integer per
//! sample instead of hashing frame vectors.

use crate::hash::{FxHashMap, Slots};
use crate::model::FrameId;

/// Id of an interned stack; [`StackTable::EMPTY`] is the empty stack.
pub type StackId = u32;

/// Paths of small ids interned as a tree: a node is its parent and one item, found with one
/// hash. Stacks of frames, call paths of functions and collapsed texts of segments are tries.
#[derive(Debug, Clone)]
pub struct Trie {
    /// (parent, item) of every node; node 0 is the empty path.
    nodes: Vec<(u32, u32)>,
    /// Each node's first child ([`NO_CHILD`] if none). Most nodes of a stack table or a call
    /// tree have one child at most: they are found here, and never hashed, and a new path's
    /// nodes are made one after another without a random write into the index.
    first_child: Vec<u32>,
    /// Every later child, by (parent, item).
    index: FxHashMap<(u32, u32), u32>,
}

const NO_CHILD: u32 = u32::MAX;

/// A new node, with no child yet.
fn push(nodes: &mut Vec<(u32, u32)>, first_child: &mut Vec<u32>, parent: u32, item: u32) -> u32 {
    nodes.push((parent, item));
    first_child.push(NO_CHILD);
    (nodes.len() - 1) as u32
}

impl Default for Trie {
    fn default() -> Self {
        Trie {
            nodes: vec![(0, u32::MAX)],
            first_child: vec![NO_CHILD],
            index: FxHashMap::default(),
        }
    }
}

impl Trie {
    /// The empty path.
    pub const ROOT: u32 = 0;

    /// The node for `parent` followed by `item`, made if new.
    pub fn child(&mut self, parent: u32, item: u32) -> u32 {
        if self.first_child.len() < self.nodes.len() {
            self.thaw();
        }
        let first = self.first_child[parent as usize];
        if first == NO_CHILD {
            let node = push(&mut self.nodes, &mut self.first_child, parent, item);
            self.first_child[parent as usize] = node;
            return node;
        }
        if self.nodes[first as usize].1 == item {
            return first;
        }
        let Trie {
            nodes,
            first_child,
            index,
        } = self;
        *index
            .entry((parent, item))
            .or_insert_with(|| push(nodes, first_child, parent, item))
    }

    #[must_use]
    pub fn parent(&self, node: u32) -> u32 {
        self.nodes[node as usize].0
    }

    /// The last item of a path (None for the root).
    #[must_use]
    pub fn item(&self, node: u32) -> Option<u32> {
        (node != Self::ROOT).then(|| self.nodes[node as usize].1)
    }

    /// Every node's (parent, item); index 0 is the root's placeholder.
    #[must_use]
    pub fn nodes(&self) -> &[(u32, u32)] {
        &self.nodes
    }

    #[must_use]
    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.nodes.len() == 1
    }

    /// Drop the lookup index: nodes are kept. A node made later makes the index again.
    pub fn freeze(&mut self) {
        self.first_child = Vec::new();
        self.index = FxHashMap::default();
    }

    /// The lookup index made again from the nodes, as [`Trie::child`] made it: a node's first
    /// child is the first made.
    fn thaw(&mut self) {
        self.first_child = vec![NO_CHILD; self.nodes.len()];
        for (node, &(parent, item)) in self.nodes.iter().enumerate().skip(1) {
            let first = &mut self.first_child[parent as usize];
            if *first == NO_CHILD {
                *first = node as u32;
            } else {
                self.index.insert((parent, item), node as u32);
            }
        }
    }

    /// A frozen trie of these nodes, (parent, item) of nodes 1, 2, ... (node 0 is the root):
    /// for paths known to be distinct, each parent before its children, so no node is looked
    /// up to be made.
    pub fn frozen(nodes: impl IntoIterator<Item = (u32, u32)>) -> Trie {
        let mut trie = Trie::default();
        trie.nodes.extend(nodes);
        debug_assert!(trie
            .nodes
            .iter()
            .enumerate()
            .skip(1)
            .all(|(node, &(parent, _))| (parent as usize) < node));
        trie.freeze();
        trie
    }
}

/// How many stacks [`Walk`] follows at once.
const WALK_LANES: usize = 8;

/// Items that each name a stack (aggregated counts, say), given with the stack's frames. A
/// walk from a stack to the root is a chain of loads, each waiting for the one before, and
/// on a capture of many distinct stacks each misses the cache: so the stacks of the next
/// [`WALK_LANES`] items are walked together, a step of each in turn, and their misses
/// overlap instead of adding up.
pub struct Walk<'a, T> {
    table: &'a StackTable,
    items: &'a [T],
    stack_of: fn(&T) -> StackId,
    /// The next item to give.
    at: usize,
    /// Items before this one have a lane: item i's is `lanes[i % WALK_LANES]`.
    started: usize,
    lanes: [Lane; WALK_LANES],
}

/// One stack's walk: the node it has reached ([`StackTable::EMPTY`] when done) and the
/// frames passed, innermost first.
#[derive(Default)]
struct Lane {
    node: StackId,
    frames: Vec<FrameId>,
}

impl<'a, T> Walk<'a, T> {
    /// The next item's index, the item, and its stack's frames, innermost first.
    pub fn next_stack(&mut self) -> Option<(usize, &'a T, &[FrameId])> {
        let at = self.at;
        let item = self.items.get(at)?;
        let ahead = (at + WALK_LANES).min(self.items.len());
        while self.started < ahead {
            let lane = &mut self.lanes[self.started % WALK_LANES];
            lane.node = (self.stack_of)(&self.items[self.started]);
            lane.frames.clear();
            self.started += 1;
        }
        let nodes = self.table.trie.nodes();
        let head = at % WALK_LANES;
        while self.lanes[head].node != StackTable::EMPTY {
            for lane in &mut self.lanes {
                if lane.node != StackTable::EMPTY {
                    let (parent, frame) = nodes[lane.node as usize];
                    lane.frames.push(frame);
                    lane.node = parent;
                }
            }
        }
        self.at += 1;
        Some((at, item, &self.lanes[head].frames))
    }
}

#[derive(Debug, Clone, Default)]
pub struct StackTable {
    /// Node = stack: its parent is the stack without its innermost frame.
    trie: Trie,
    /// The last interned stack, root first, and the node of each of its prefixes: the next
    /// stack usually shares its outer frames, so the walk starts where they diverge.
    last_frames: Vec<FrameId>,
    last_ids: Vec<StackId>,
    /// Whole stacks seen before, to their id: one hash of the frames instead of a lookup per
    /// frame (which misses the cache once there are many distinct stacks).
    whole: WholeStacks,
}

/// At most this many words (4 bytes each: the frames, and two per stack) are kept in the
/// whole-stack cache.
const WHOLE_STACK_FRAMES: usize = 1 << 24;

/// Whole stacks to their ids: entries one after another in `entries` (length, id, frames),
/// found by their hash through `slots`.
#[derive(Debug, Clone, Default)]
struct WholeStacks {
    slots: Slots,
    entries: Vec<u32>,
}

/// The frames of the entry at `at` in [`WholeStacks::entries`].
fn frames_at(entries: &[u32], at: usize) -> &[FrameId] {
    &entries[at + 2..at + 2 + entries[at] as usize]
}

impl WholeStacks {
    fn find(&self, frames: &[FrameId], hash: u64) -> Option<StackId> {
        let at = self
            .slots
            .find(hash, |at| frames_at(&self.entries, at) == frames)?;
        Some(self.entries[at + 1])
    }

    fn insert(&mut self, frames: &[FrameId], hash: u64, id: StackId) {
        let at = self.entries.len();
        self.entries.push(frames.len() as u32);
        self.entries.push(id);
        self.entries.extend_from_slice(frames);
        self.slots.insert(hash, at);
    }
}

impl StackTable {
    pub const EMPTY: StackId = 0;

    /// Interning is over: drop what only finding a stack needs (the trie's index and the
    /// whole-stack cache, tens of megabytes on a capture of many stacks), so an export does
    /// not hold them beside its own tables. Every stack is kept; interning again still works,
    /// making the index anew.
    pub fn freeze(&mut self) {
        self.trie.freeze();
        self.whole = WholeStacks::default();
    }

    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// Id of a stack given innermost frame first (as samples carry it).
    pub fn intern(&mut self, frames: &[FrameId]) -> StackId {
        self.intern_hashed(frames, Self::hash(frames))
    }

    /// The hash [`StackTable::intern_hashed`] and [`StackTable::prefetch`] take: computed
    /// ahead, on another thread, it is off the interning thread's path.
    #[must_use]
    pub fn hash(frames: &[FrameId]) -> u64 {
        use std::hash::Hasher as _;
        let mut hasher = crate::hash::FxHasher::default();
        for pair in frames.chunks(2) {
            hasher.write_u64(u64::from(pair[0]) | u64::from(*pair.get(1).unwrap_or(&0)) << 32);
        }
        hasher.finish()
    }

    /// [`StackTable::intern`], given the frames' [`StackTable::hash`].
    pub fn intern_hashed(&mut self, frames: &[FrameId], hash: u64) -> StackId {
        if let Some(id) = self.whole.find(frames, hash) {
            return id;
        }
        let n = frames.len();
        let shared = self
            .last_frames
            .iter()
            .zip(frames.iter().rev())
            .take_while(|(a, b)| a == b)
            .count();
        self.last_frames.truncate(shared);
        self.last_ids.truncate(shared);
        let mut node = self.last_ids.last().copied().unwrap_or(Self::EMPTY);
        for &frame in frames[..n - shared].iter().rev() {
            node = self.trie.child(node, frame);
            self.last_frames.push(frame);
            self.last_ids.push(node);
        }
        if self.whole.entries.len() + n <= WHOLE_STACK_FRAMES {
            self.whole.insert(frames, hash, node);
        }
        node
    }

    /// Start interning the stack of this [`StackTable::hash`], some stacks ahead: bring what
    /// its lookup will read into the cache (see `Slots::prefetch`).
    pub fn prefetch(&mut self, hash: u64) {
        self.whole.slots.prefetch(hash, &self.whole.entries);
    }

    /// Each of `items` with its stack's frames, innermost first, in order: see [`Walk`].
    pub fn walk<'a, T>(&'a self, items: &'a [T], stack_of: fn(&T) -> StackId) -> Walk<'a, T> {
        Walk {
            table: self,
            items,
            stack_of,
            at: 0,
            started: 0,
            lanes: Default::default(),
        }
    }

    /// A hint that the stack's node (its parent and innermost frame) is read soon.
    pub fn prefetch_node(&self, id: StackId) {
        if let Some(node) = self.trie.nodes.get(id as usize) {
            crate::hash::prefetch(node);
        }
    }

    /// The innermost frame of a non-empty stack.
    #[must_use]
    pub fn leaf(&self, id: StackId) -> Option<FrameId> {
        self.trie.item(id)
    }

    #[must_use]
    pub fn parent(&self, id: StackId) -> StackId {
        self.trie.parent(id)
    }

    /// The stack's frames, outermost (root) first.
    #[must_use]
    pub fn frames_root_first(&self, id: StackId) -> Vec<FrameId> {
        let mut out = self.frames(id);
        out.reverse();
        out
    }

    /// The stack's frames, innermost first (as samples carry them).
    #[must_use]
    pub fn frames(&self, id: StackId) -> Vec<FrameId> {
        let mut out = Vec::new();
        self.frames_into(id, &mut out);
        out
    }

    /// The stack's frames, innermost first, into `out` (cleared first).
    pub fn frames_into(&self, id: StackId, out: &mut Vec<FrameId>) {
        out.clear();
        let mut node = id;
        while let Some(frame) = self.trie.item(node) {
            out.push(frame);
            node = self.trie.parent(node);
        }
    }

    /// Map each of `stacks` and each of their prefixes to a value made from its parent's value
    /// (`empty`'s for the outermost frame) and its innermost frame; every other stack to
    /// `u32::MAX`. How a call tree or collapsed texts are built from the stacks, each prefix
    /// once. The table is walked in id order, parents before children: a new stack's nodes
    /// were made one after another, so the walk reads the table in order (and a node's
    /// parent is mostly the node before), instead of missing the cache at each node of each
    /// stack.
    pub fn map_prefixes(
        &self,
        stacks: impl IntoIterator<Item = StackId>,
        empty: u32,
        mut map: impl FnMut(u32, FrameId) -> u32,
    ) -> Vec<u32> {
        let nodes = self.trie.nodes();
        let mut needed = vec![false; nodes.len()];
        for stack in stacks {
            needed[stack as usize] = true;
        }
        for node in (1..nodes.len()).rev() {
            if needed[node] {
                needed[nodes[node].0 as usize] = true;
            }
        }
        let mut value = vec![u32::MAX; nodes.len()];
        value[Self::EMPTY as usize] = empty;
        for (node, &(parent, frame)) in nodes.iter().enumerate().skip(1) {
            if needed[node] {
                value[node] = map(value[parent as usize], frame);
            }
        }
        value
    }

    /// Each node's value plus all its descendants' (`values` by node): children have higher
    /// ids than their parents, so one pass from the last node up adds each subtree in.
    pub fn add_descendants(&self, values: &mut [u64]) {
        for node in (1..self.len() as StackId).rev() {
            values[self.parent(node) as usize] += values[node as usize];
        }
    }

    /// Each group's samples with every stack counted once, however many of its nodes the
    /// stack passes through (a function called recursively): `group_of[node]` is a node's
    /// group (`u32::MAX` for none), `inclusive[node]` its samples with everything under it. A
    /// group's samples are those of its outermost nodes on each path, since a stack passes
    /// through exactly one of them. The groups above a node are kept as a 64-bit filter:
    /// only a node whose group's bit is already set has its path walked.
    #[must_use]
    pub fn once_per_stack(&self, group_of: &[u32], inclusive: &[u64], groups: usize) -> Vec<u64> {
        let mut samples = vec![0u64; groups];
        let mut above = vec![0u64; self.len()];
        for node in 1..self.len() as StackId {
            let group = group_of[node as usize];
            if group == u32::MAX {
                continue;
            }
            let parent = self.parent(node);
            let bit = 1u64 << (group % 64);
            above[node as usize] = above[parent as usize] | bit;
            let mut up = parent;
            let outermost = above[parent as usize] & bit == 0
                || loop {
                    if up == Self::EMPTY {
                        break true;
                    }
                    if group_of[up as usize] == group {
                        break false;
                    }
                    up = self.parent(up);
                };
            if outermost {
                samples[group as usize] += inclusive[node as usize];
            }
        }
        samples
    }

    #[must_use]
    pub fn len(&self) -> usize {
        self.trie.len()
    }

    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.trie.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shares_prefixes_and_round_trips() {
        let mut t = StackTable::new();
        let a = t.intern(&[3, 2, 1]);
        let b = t.intern(&[4, 2, 1]);
        let c = t.intern(&[3, 2, 1]);
        assert_eq!(a, c);
        assert_ne!(a, b);
        assert_eq!(t.parent(a), t.parent(b));
        assert_eq!(t.frames_root_first(a), vec![1, 2, 3]);
        assert_eq!(t.leaf(b), Some(4));
        assert_eq!(t.intern(&[]), StackTable::EMPTY);
        assert_eq!(t.len(), 5);
    }

    /// `count` stacks 1 to `depths` deep of frames below `frames`, many sharing prefixes.
    fn made_up_stacks(count: u32, depths: u32, frames: u32) -> Vec<Vec<FrameId>> {
        (0..count)
            .map(|i| {
                (0..1 + i % depths)
                    .map(|d| (i * 31 + d * 7) % frames)
                    .collect()
            })
            .collect()
    }

    /// A frozen table keeps its stacks, and interning after it finds each again under its
    /// id (the index made anew, first children and later ones) and makes new ones beside them.
    #[test]
    fn stacks_interned_after_a_freeze_keep_their_ids() {
        let mut t = StackTable::new();
        let stacks = made_up_stacks(2000, 9, 41);
        let ids: Vec<StackId> = stacks.iter().map(|s| t.intern(s)).collect();
        let nodes = t.len();
        t.freeze();
        assert_eq!(t.len(), nodes);
        for (stack, &id) in stacks.iter().zip(&ids).rev() {
            assert_eq!(t.frames(id), *stack);
            assert_eq!(t.intern(stack), id);
        }
        assert_eq!(t.len(), nodes, "no stack made twice");
        let new = t.intern(&[99, 98]);
        assert_eq!(t.len(), nodes + 2);
        assert_eq!(t.frames(new), vec![99, 98]);
        assert_eq!(t.intern(&[99, 98]), new);
    }

    /// Thousands of stacks, through several growths of the whole-stack table, keep their ids;
    /// stacks that are prefixes of others, or the same frames in another order, are others.
    #[test]
    fn whole_stacks_are_found_again_after_growing() {
        let mut t = StackTable::new();
        let stacks = made_up_stacks(5000, 7, 97);
        let ids: Vec<StackId> = stacks.iter().map(|s| t.intern(s)).collect();
        for (stack, &id) in stacks.iter().zip(&ids) {
            t.prefetch(StackTable::hash(stack));
            assert_eq!(t.intern(stack), id);
            assert_eq!(t.frames(id), *stack);
        }
        let mut distinct = ids.clone();
        distinct.sort_unstable();
        distinct.dedup();
        let mut unique = stacks.clone();
        unique.sort();
        unique.dedup();
        assert_eq!(distinct.len(), unique.len());
        assert_ne!(t.intern(&[1, 2]), t.intern(&[2, 1]));
        assert_ne!(t.intern(&[1, 2]), t.intern(&[1, 2, 0]));
    }

    /// Each asked stack and its prefixes get their value from their parent's, once; a stack
    /// nobody asked for, even one interned between them, gets none.
    #[test]
    fn maps_the_prefixes_of_the_asked_stacks() {
        let mut t = StackTable::new();
        let a = t.intern(&[3, 2, 1]);
        let unasked = t.intern(&[9, 8]);
        let b = t.intern(&[4, 1]);
        let mut calls = 0;
        let sums = t.map_prefixes([a, b, a], 100, |parent, frame| {
            calls += 1;
            parent + 100 + frame
        });
        assert_eq!(calls, 4, "1, 1-2, 1-2-3, 1-4");
        assert_eq!(sums[a as usize], 100 + 101 + 102 + 103);
        assert_eq!(sums[b as usize], 100 + 101 + 104);
        assert_eq!(sums[StackTable::EMPTY as usize], 100);
        assert_eq!(sums[unasked as usize], u32::MAX);
        assert_eq!(sums[t.parent(unasked) as usize], u32::MAX);
    }

    /// A walk gives every item, in order, with its index and its stack's frames.
    #[test]
    fn walks_give_each_items_frames() {
        let mut t = StackTable::new();
        let stacks: Vec<Vec<FrameId>> = (0..40u32)
            .map(|i| (0..1 + i % 5).map(|d| i + d).collect())
            .collect();
        let items: Vec<(char, StackId)> = stacks.iter().map(|s| ('x', t.intern(s))).collect();
        let mut walk = t.walk(&items, |item| item.1);
        let mut seen = 0;
        while let Some((at, item, frames)) = walk.next_stack() {
            assert_eq!((at, item), (seen, &items[seen]));
            assert_eq!(frames, stacks[at]);
            seen += 1;
        }
        assert_eq!(seen, items.len());
    }

    #[test]
    fn a_trie_finds_first_and_later_children_again() {
        let mut t = Trie::default();
        let a = t.child(Trie::ROOT, 7);
        let b = t.child(Trie::ROOT, 8);
        let c = t.child(a, 7);
        let d = t.child(Trie::ROOT, 9);
        assert_eq!([7, 8, 9].map(|item| t.child(Trie::ROOT, item)), [a, b, d]);
        assert_eq!(t.child(a, 7), c);
        assert_eq!(t.len(), 5);
        assert_eq!((t.parent(c), t.item(c)), (a, Some(7)));
    }
}
