//! The call tree a flame graph draws: nodes keyed by frame identity along the path from the
//! root, with inclusive/self samples, per-thread values and opcode counts.

use std::collections::{BTreeMap, HashMap};

use tachyon_plugin_api::{FrameId, FxHashMap, StackId, StackTable, Symbols};

/// What makes two frames the same node: (filename, line, function), as CPython 3.15.2 keys
/// its flame graph nodes (differential matching is by path of (filename, function)).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Key {
    pub filename: String,
    pub lineno: i32,
    pub funcname: String,
}

#[derive(Clone, Debug, Default)]
pub struct Node {
    pub key: usize,
    pub value: u64,
    pub self_value: u64,
    pub children: Vec<usize>,
    /// thread id -> (inclusive, self) samples.
    pub threads: BTreeMap<u64, (u64, u64)>,
    pub opcodes: BTreeMap<u8, u64>,
}

#[derive(Clone, Debug, Default)]
pub struct Tree {
    pub keys: Vec<Key>,
    key_index: HashMap<Key, usize>,
    /// Node 0 is the root (all samples).
    pub nodes: Vec<Node>,
    child_index: FxHashMap<(usize, usize), usize>,
}

impl Tree {
    pub fn new() -> Tree {
        Tree {
            nodes: vec![Node::default()],
            ..Default::default()
        }
    }

    pub fn key_id(&mut self, key: Key) -> usize {
        if let Some(&id) = self.key_index.get(&key) {
            return id;
        }
        self.keys.push(key.clone());
        self.key_index.insert(key, self.keys.len() - 1);
        self.keys.len() - 1
    }

    pub fn child(&mut self, parent: usize, key: usize) -> usize {
        if let Some(&c) = self.child_index.get(&(parent, key)) {
            return c;
        }
        let id = self.nodes.len();
        self.nodes.push(Node {
            key,
            ..Default::default()
        });
        self.nodes[parent].children.push(id);
        self.child_index.insert((parent, key), id);
        id
    }

    fn bump(&mut self, node: usize, tid: u64, weight: u64, leaf: bool, opcode: Option<u8>) {
        let n = &mut self.nodes[node];
        n.value += weight;
        let t = n.threads.entry(tid).or_default();
        t.0 += weight;
        if leaf {
            n.self_value += weight;
            t.1 += weight;
        }
        if let Some(op) = opcode {
            *n.opcodes.entry(op).or_default() += weight;
        }
    }

    /// Add every (thread, stack, weight), stacks interned in `stacks`. The stack table is
    /// itself a tree, so each interned prefix maps to one tree node, found once. With
    /// `strip_bootstrap`, leading runpy frames (`<frozen runpy>`, which CPython's `run` starts
    /// scripts through) are left out, so the same script profiled by either tool matches.
    pub fn add_stacks(
        &mut self,
        symbols: &Symbols,
        stacks: &StackTable,
        counts: impl IntoIterator<Item = (u64, StackId, u64)>,
        strip_bootstrap: bool,
    ) {
        let mut key_of: FxHashMap<FrameId, usize> = FxHashMap::default();
        let mut node_of: Vec<usize> = vec![usize::MAX; stacks.len()];
        node_of[StackTable::EMPTY as usize] = 0;
        let mut pending: Vec<StackId> = Vec::new();
        for (tid, stack, weight) in counts {
            // Resolve the tree node of this stack and of any unresolved prefixes.
            let mut s = stack;
            while node_of[s as usize] == usize::MAX {
                pending.push(s);
                s = stacks.parent(s);
            }
            while let Some(s) = pending.pop() {
                let frame = stacks.leaf(s).expect("non-empty stack");
                let parent = node_of[stacks.parent(s) as usize];
                if strip_bootstrap && parent == 0 && is_bootstrap(symbols, frame) {
                    node_of[s as usize] = 0;
                    continue;
                }
                let key = *key_of.entry(frame).or_insert_with(|| {
                    let f = symbols.frame(frame);
                    self.key_id(Key {
                        filename: symbols.str(f.filename).to_owned(),
                        lineno: f.lineno.max(0),
                        funcname: symbols.str(f.funcname).to_owned(),
                    })
                });
                node_of[s as usize] = self.child(parent, key);
            }
            self.bump(0, tid, weight, node_of[stack as usize] == 0, None);
            let mut s = stack;
            while s != StackTable::EMPTY && node_of[s as usize] != 0 {
                let frame = stacks.leaf(s).expect("non-empty stack");
                self.bump(
                    node_of[s as usize],
                    tid,
                    weight,
                    s == stack,
                    symbols.frame(frame).opcode,
                );
                s = stacks.parent(s);
            }
        }
    }
}

/// A frame of the runpy machinery CPython 3.15's `run` starts a script or module through.
fn is_bootstrap(symbols: &Symbols, frame: FrameId) -> bool {
    let file = symbols.str(symbols.frame(frame).filename);
    file == "<frozen runpy>" || file.ends_with("/runpy.py")
}
