//! Interning whole stacks as nodes of a call tree, so collectors aggregate by one integer per
//! sample instead of hashing frame vectors.

use crate::hash::FxHashMap;
use crate::model::FrameId;

/// Id of an interned stack; [`StackTable::EMPTY`] is the empty stack.
pub type StackId = u32;

#[derive(Debug, Clone)]
pub struct StackTable {
    /// (parent, frame) for every node; node 0 is the empty stack.
    nodes: Vec<(StackId, FrameId)>,
    index: FxHashMap<(StackId, FrameId), StackId>,
    /// The last interned stack, root first, and the node of each of its prefixes: the next
    /// stack usually shares its outer frames, so the walk starts where they diverge.
    last_frames: Vec<FrameId>,
    last_ids: Vec<StackId>,
    /// Whole stacks seen before, to their id: one hash of the frames instead of a lookup per
    /// frame (which misses the cache once there are many distinct stacks).
    whole: FxHashMap<Box<[FrameId]>, StackId>,
    /// Frames held by `whole`; past [`WHOLE_STACK_FRAMES`] it stops growing.
    whole_frames: usize,
}

/// At most this many frames (4 bytes each) are kept in the whole-stack cache.
const WHOLE_STACK_FRAMES: usize = 1 << 24;

impl Default for StackTable {
    fn default() -> Self {
        StackTable {
            nodes: vec![(0, FrameId::MAX)],
            index: FxHashMap::default(),
            last_frames: Vec::new(),
            last_ids: Vec::new(),
            whole: FxHashMap::default(),
            whole_frames: 0,
        }
    }
}

impl StackTable {
    pub const EMPTY: StackId = 0;

    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// Id of a stack given innermost frame first (as samples carry it).
    pub fn intern(&mut self, frames: &[FrameId]) -> StackId {
        if let Some(&id) = self.whole.get(frames) {
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
            node = if let Some(&child) = self.index.get(&(node, frame)) {
                child
            } else {
                let child = self.nodes.len() as StackId;
                self.nodes.push((node, frame));
                self.index.insert((node, frame), child);
                child
            };
            self.last_frames.push(frame);
            self.last_ids.push(node);
        }
        if self.whole_frames + n <= WHOLE_STACK_FRAMES {
            self.whole_frames += n;
            self.whole.insert(frames.into(), node);
        }
        node
    }

    /// The innermost frame of a non-empty stack.
    #[must_use]
    pub fn leaf(&self, id: StackId) -> Option<FrameId> {
        (id != Self::EMPTY).then(|| self.nodes[id as usize].1)
    }

    #[must_use]
    pub fn parent(&self, id: StackId) -> StackId {
        self.nodes[id as usize].0
    }

    /// The stack's frames, outermost (root) first.
    #[must_use]
    pub fn frames_root_first(&self, id: StackId) -> Vec<FrameId> {
        let mut out = Vec::new();
        let mut node = id;
        while node != Self::EMPTY {
            let (parent, frame) = self.nodes[node as usize];
            out.push(frame);
            node = parent;
        }
        out.reverse();
        out
    }

    #[must_use]
    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.nodes.len() == 1
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
}
