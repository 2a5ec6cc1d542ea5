//! Interning whole stacks as nodes of a call tree, so collectors aggregate by one integer per
//! sample instead of hashing frame vectors.

use std::collections::HashMap;

use crate::model::FrameId;

/// Id of an interned stack; [`StackTable::EMPTY`] is the empty stack.
pub type StackId = u32;

#[derive(Debug, Clone)]
pub struct StackTable {
    /// (parent, frame) for every node; node 0 is the empty stack.
    nodes: Vec<(StackId, FrameId)>,
    index: HashMap<(StackId, FrameId), StackId>,
    last_frames: Vec<FrameId>,
    last_id: StackId,
}

impl Default for StackTable {
    fn default() -> Self {
        StackTable {
            nodes: vec![(0, FrameId::MAX)],
            index: HashMap::new(),
            last_frames: Vec::new(),
            last_id: Self::EMPTY,
        }
    }
}

impl StackTable {
    pub const EMPTY: StackId = 0;

    pub fn new() -> Self {
        Self::default()
    }

    /// Id of a stack given innermost frame first (as samples carry it).
    pub fn intern(&mut self, frames: &[FrameId]) -> StackId {
        if frames == self.last_frames.as_slice() {
            return self.last_id;
        }
        let mut node = Self::EMPTY;
        for &frame in frames.iter().rev() {
            node = match self.index.get(&(node, frame)) {
                Some(&child) => child,
                None => {
                    let child = self.nodes.len() as StackId;
                    self.nodes.push((node, frame));
                    self.index.insert((node, frame), child);
                    child
                }
            };
        }
        self.last_frames.clear();
        self.last_frames.extend_from_slice(frames);
        self.last_id = node;
        node
    }

    /// The innermost frame of a non-empty stack.
    pub fn leaf(&self, id: StackId) -> Option<FrameId> {
        (id != Self::EMPTY).then(|| self.nodes[id as usize].1)
    }

    pub fn parent(&self, id: StackId) -> StackId {
        self.nodes[id as usize].0
    }

    /// The stack's frames, outermost (root) first.
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

    pub fn len(&self) -> usize {
        self.nodes.len()
    }

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
