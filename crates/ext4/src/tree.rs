//! The in-memory tree the layers are applied to: names, metadata and where each file's data
//! already sits in the image. Memory grows with the number of entries, never with the data.
//!
//! Paths are resolved inside the tree only: `..` stops at the root, absolute symlink targets
//! start at the image root, and symlinks met on the way to a parent directory are followed
//! (at most 40 of them) as the kernel would inside the guest. Nothing here touches the host.

use std::collections::BTreeMap;
use std::time::{SystemTime, UNIX_EPOCH};

use crate::alloc::{Alloc, Run};
use crate::extent::Extent;

/// Index of a node in [`Tree::nodes`].
pub(crate) type Id = usize;

/// A timestamp: seconds since the epoch and nanoseconds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Time {
    /// Seconds since 1970-01-01 UTC (may be negative).
    pub sec: i64,
    /// Nanoseconds, below 10^9.
    pub nsec: u32,
}

impl Time {
    /// The current time (the epoch if the clock is before it), for what the formatter stamps
    /// itself: the superblock's write time, the inodes it makes (root, lost+found, journal).
    pub(crate) fn now() -> Time {
        let d = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        Time {
            sec: d.as_secs() as i64,
            nsec: d.subsec_nanos(),
        }
    }
}

/// One extended attribute: full name (`user.foo`, `security.capability`) and value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Xattr {
    /// Full attribute name including its namespace prefix.
    pub name: Vec<u8>,
    /// Raw value.
    pub value: Vec<u8>,
}

/// Owner, permissions, times and attributes of a node.
#[derive(Debug, Clone, Default)]
pub(crate) struct Meta {
    /// Permission bits including setuid/setgid/sticky (07777).
    pub perm: u16,
    pub uid: u32,
    pub gid: u32,
    pub atime: Time,
    pub mtime: Time,
    pub ctime: Time,
    pub xattrs: Vec<Xattr>,
}

#[derive(Debug)]
pub(crate) enum Body {
    File {
        size: u64,
        extents: Vec<Extent>,
    },
    Dir {
        parent: Id,
        children: BTreeMap<Box<[u8]>, Child>,
    },
    Symlink(Vec<u8>),
    CharDev {
        major: u32,
        minor: u32,
    },
    BlockDev {
        major: u32,
        minor: u32,
    },
    Fifo,
}

#[derive(Debug)]
pub(crate) struct Node {
    pub meta: Meta,
    pub body: Body,
    /// Names referring to this node (hard links).
    pub refs: u32,
}

/// A directory entry: the node and the layer that last wrote the entry.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Child {
    pub id: Id,
    pub layer: u32,
}

/// Why a path could not be resolved.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum PathError {
    NotADirectory(String),
    Missing(String),
    TooManyLinks,
    NameTooLong(String),
}

impl std::fmt::Display for PathError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PathError::NotADirectory(p) => write!(f, "parent {p:?} is not a directory"),
            PathError::Missing(p) => write!(f, "{p:?} does not exist"),
            PathError::TooManyLinks => write!(f, "too many levels of symbolic links"),
            PathError::NameTooLong(p) => write!(f, "component of {p:?} is longer than 255 bytes"),
        }
    }
}

const MAX_SYMLINK_HOPS: u32 = 40;
/// Longest name a directory entry holds.
pub(crate) const MAX_NAME: usize = 255;

#[derive(Debug)]
pub(crate) struct Tree {
    nodes: Vec<Option<Node>>,
    free_slots: Vec<Id>,
}

pub(crate) const ROOT: Id = 0;

/// Splits a tar path into clean components: no empty, `.` or `..` parts (`..` pops, never
/// above the root).
pub(crate) fn clean_path(path: &[u8]) -> Vec<Vec<u8>> {
    let mut out: Vec<Vec<u8>> = Vec::new();
    for part in path.split(|&c| c == b'/') {
        match part {
            b"" | b"." => {}
            b".." => {
                out.pop();
            }
            p => out.push(p.to_vec()),
        }
    }
    out
}

impl Tree {
    pub(crate) fn new(root_meta: Meta) -> Self {
        let root = Node {
            meta: root_meta,
            body: Body::Dir {
                parent: ROOT,
                children: BTreeMap::new(),
            },
            refs: 1,
        };
        Tree {
            nodes: vec![Some(root)],
            free_slots: Vec::new(),
        }
    }

    pub(crate) fn node(&self, id: Id) -> &Node {
        self.nodes[id].as_ref().expect("live node")
    }

    pub(crate) fn node_mut(&mut self, id: Id) -> &mut Node {
        self.nodes[id].as_mut().expect("live node")
    }

    pub(crate) fn children(&self, id: Id) -> Option<&BTreeMap<Box<[u8]>, Child>> {
        match &self.node(id).body {
            Body::Dir { children, .. } => Some(children),
            _ => None,
        }
    }

    fn children_mut(&mut self, id: Id) -> &mut BTreeMap<Box<[u8]>, Child> {
        match &mut self.node_mut(id).body {
            Body::Dir { children, .. } => children,
            _ => panic!("children_mut on a non-directory"),
        }
    }

    pub(crate) fn parent(&self, id: Id) -> Id {
        match &self.node(id).body {
            Body::Dir { parent, .. } => *parent,
            _ => ROOT,
        }
    }

    /// Whether node `id` still exists (an unlink may have freed it).
    pub(crate) fn is_live(&self, id: Id) -> bool {
        self.nodes.get(id).is_some_and(Option::is_some)
    }

    pub(crate) fn is_dir(&self, id: Id) -> bool {
        matches!(self.node(id).body, Body::Dir { .. })
    }

    fn insert_node(&mut self, node: Node) -> Id {
        match self.free_slots.pop() {
            Some(id) => {
                self.nodes[id] = Some(node);
                id
            }
            None => {
                self.nodes.push(Some(node));
                self.nodes.len() - 1
            }
        }
    }

    pub(crate) fn lookup(&self, dir: Id, name: &[u8]) -> Option<Child> {
        self.children(dir).and_then(|c| c.get(name).copied())
    }

    /// Resolves the directory that holds `comps` (all but the last component), following
    /// symlinks inside the tree and creating missing directories with `implicit` metadata.
    pub(crate) fn resolve_dir(
        &mut self,
        comps: &[Vec<u8>],
        implicit: Option<(&Meta, u32)>,
    ) -> Result<Id, PathError> {
        let mut todo: Vec<Vec<u8>> = comps.iter().rev().cloned().collect();
        let mut cur = ROOT;
        let mut hops = 0;
        let mut walked: Vec<u8> = Vec::new();
        while let Some(comp) = todo.pop() {
            match comp.as_slice() {
                b"" | b"." => continue,
                b".." => {
                    cur = self.parent(cur);
                    continue;
                }
                _ => {}
            }
            walked.push(b'/');
            walked.extend_from_slice(&comp);
            match self.lookup(cur, &comp) {
                None => {
                    let Some((meta, layer)) = implicit else {
                        return Err(PathError::Missing(lossy(&walked)));
                    };
                    if comp.len() > MAX_NAME {
                        return Err(PathError::NameTooLong(lossy(&walked)));
                    }
                    let id = self.insert_node(Node {
                        meta: meta.clone(),
                        body: Body::Dir {
                            parent: cur,
                            children: BTreeMap::new(),
                        },
                        refs: 1,
                    });
                    self.children_mut(cur)
                        .insert(comp.into_boxed_slice(), Child { id, layer });
                    cur = id;
                }
                Some(child) => match &self.node(child.id).body {
                    Body::Dir { .. } => cur = child.id,
                    Body::Symlink(target) => {
                        hops += 1;
                        if hops > MAX_SYMLINK_HOPS {
                            return Err(PathError::TooManyLinks);
                        }
                        if target.first() == Some(&b'/') {
                            cur = ROOT;
                        }
                        for part in target.split(|&c| c == b'/').rev() {
                            todo.push(part.to_vec());
                        }
                    }
                    _ => return Err(PathError::NotADirectory(lossy(&walked))),
                },
            }
        }
        Ok(cur)
    }

    /// Removes the entry `name` from `dir`, releasing the node (and its blocks) when its
    /// last name goes.
    pub(crate) fn unlink(&mut self, dir: Id, name: &[u8], alloc: &mut Alloc) {
        if let Some(child) = self.children_mut(dir).remove(name) {
            self.drop_ref(child.id, alloc);
        }
    }

    fn drop_ref(&mut self, id: Id, alloc: &mut Alloc) {
        let mut stack = vec![id];
        while let Some(id) = stack.pop() {
            let node = self.node_mut(id);
            node.refs -= 1;
            if node.refs > 0 {
                continue;
            }
            let node = self.nodes[id].take().expect("live node");
            self.free_slots.push(id);
            match node.body {
                Body::File { extents, .. } => {
                    for e in extents {
                        alloc.free(Run {
                            start: e.start,
                            len: u64::from(e.len),
                        });
                    }
                }
                Body::Dir { children, .. } => stack.extend(children.values().map(|c| c.id)),
                _ => {}
            }
        }
    }

    /// Adds a new node as `dir/name` (the caller removed any previous entry).
    pub(crate) fn add(&mut self, dir: Id, name: &[u8], mut node: Node, layer: u32) -> Id {
        if let Body::Dir { parent, .. } = &mut node.body {
            *parent = dir;
        }
        node.refs = 1;
        let id = self.insert_node(node);
        self.children_mut(dir)
            .insert(name.into(), Child { id, layer });
        id
    }

    /// Adds another name for an existing non-directory node (a hard link).
    pub(crate) fn link(&mut self, dir: Id, name: &[u8], target: Id, layer: u32) {
        self.node_mut(target).refs += 1;
        self.children_mut(dir)
            .insert(name.into(), Child { id: target, layer });
    }

    /// Marks `dir/name` as written by `layer` (a directory entry merged over an existing one).
    pub(crate) fn touch(&mut self, dir: Id, name: &[u8], layer: u32) {
        if let Some(c) = self.children_mut(dir).get_mut(name) {
            c.layer = layer;
        }
    }

    /// Removes everything below `dir` that came from layers before `layer` (an opaque
    /// directory hides the layers below it, not its own layer's entries).
    pub(crate) fn prune_lower(&mut self, dir: Id, layer: u32, alloc: &mut Alloc) {
        let mut stack = vec![dir];
        while let Some(d) = stack.pop() {
            let names: Vec<(Box<[u8]>, Child)> = self
                .children(d)
                .map(|c| c.iter().map(|(k, v)| (k.clone(), *v)).collect())
                .unwrap_or_default();
            for (name, child) in names {
                if child.layer < layer {
                    self.unlink(d, &name, alloc);
                } else if self.is_dir(child.id) {
                    stack.push(child.id);
                }
            }
        }
    }

    /// Live nodes in depth-first order from the root, each once, with its parent directory.
    pub(crate) fn walk(&self) -> Vec<Id> {
        let mut out = Vec::new();
        let mut seen = vec![false; self.nodes.len()];
        let mut stack = vec![ROOT];
        seen[ROOT] = true;
        while let Some(id) = stack.pop() {
            out.push(id);
            if let Some(children) = self.children(id) {
                for c in children.values().rev() {
                    if !seen[c.id] {
                        seen[c.id] = true;
                        stack.push(c.id);
                    }
                }
            }
        }
        out
    }

    pub(crate) fn capacity(&self) -> usize {
        self.nodes.len()
    }
}

pub(crate) fn lossy(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir_node() -> Node {
        Node {
            meta: Meta::default(),
            body: Body::Dir {
                parent: ROOT,
                children: BTreeMap::new(),
            },
            refs: 1,
        }
    }

    #[test]
    fn clean_path_stays_inside() {
        assert_eq!(
            clean_path(b"/../../etc/./passwd"),
            vec![b"etc".to_vec(), b"passwd".to_vec()]
        );
        assert_eq!(clean_path(b"a/../../b/"), vec![b"b".to_vec()]);
        assert!(clean_path(b"./").is_empty());
    }

    #[test]
    fn symlinked_parent_resolves_inside_the_tree() {
        let mut t = Tree::new(Meta::default());
        let mut a = Alloc::new(100, 0);
        let etc = t.add(ROOT, b"etc", dir_node(), 0);
        let link = Node {
            meta: Meta::default(),
            body: Body::Symlink(b"../../../etc".to_vec()),
            refs: 1,
        };
        t.add(ROOT, b"escape", link, 0);
        let got = t
            .resolve_dir(&[b"escape".to_vec()], None)
            .expect("resolves");
        assert_eq!(got, etc);
        t.unlink(ROOT, b"etc", &mut a);
        let meta = Meta::default();
        let made = t
            .resolve_dir(&[b"escape".to_vec()], Some((&meta, 1)))
            .expect("creates");
        assert_eq!(t.lookup(ROOT, b"etc").map(|c| c.id), Some(made));
    }

    #[test]
    fn symlink_loop_is_an_error() {
        let mut t = Tree::new(Meta::default());
        let l = |target: &[u8]| Node {
            meta: Meta::default(),
            body: Body::Symlink(target.to_vec()),
            refs: 1,
        };
        t.add(ROOT, b"a", l(b"b"), 0);
        t.add(ROOT, b"b", l(b"a"), 0);
        assert_eq!(
            t.resolve_dir(&[b"a".to_vec()], None),
            Err(PathError::TooManyLinks)
        );
    }
}
