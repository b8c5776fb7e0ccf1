//! Property test: random layer stacks (files, directories, symlinks, hard links, FIFOs,
//! whiteouts, opaque directories and type changes) give the same tree as `umoci unpack`,
//! and the image passes `e2fsck -fn`. Needs root (loop mounts) and umoci.

mod common;

use std::collections::{BTreeMap, BTreeSet};

use common::Layer;
use proptest::prelude::*;

/// Paths over names a..d, up to three deep.
fn universe() -> Vec<String> {
    let names = ["a", "b", "c", "d"];
    let d1: Vec<String> = names.iter().map(|s| s.to_string()).collect();
    let d2: Vec<String> = d1
        .iter()
        .flat_map(|p| names.iter().map(move |n| format!("{p}/{n}")))
        .collect();
    let d3: Vec<String> = d2
        .iter()
        .flat_map(|p| names.iter().map(move |n| format!("{p}/{n}")))
        .collect();
    [d1, d2, d3].concat()
}

#[derive(Debug, Clone)]
enum Op {
    File {
        path: usize,
        len: usize,
        mode: u32,
        zero_head: bool,
    },
    Dir {
        path: usize,
        mode: u32,
    },
    Symlink {
        path: usize,
        target: usize,
    },
    Hardlink {
        path: usize,
        target: usize,
    },
    Fifo {
        path: usize,
    },
    Whiteout {
        path: usize,
    },
    Opaque {
        path: usize,
    },
}

fn op() -> impl Strategy<Value = Op> {
    let p = 0usize..84;
    prop_oneof![
        4 => (p.clone(), 0usize..20_000, prop::sample::select(vec![0o644u32, 0o600, 0o755, 0o4755, 0o2711]), any::<bool>())
            .prop_map(|(path, len, mode, zero_head)| Op::File { path, len, mode, zero_head }),
        3 => (p.clone(), prop::sample::select(vec![0o755u32, 0o700, 0o1777, 0o750]))
            .prop_map(|(path, mode)| Op::Dir { path, mode }),
        1 => (p.clone(), 0usize..5).prop_map(|(path, target)| Op::Symlink { path, target }),
        1 => (p.clone(), 0usize..84).prop_map(|(path, target)| Op::Hardlink { path, target }),
        1 => p.clone().prop_map(|path| Op::Fifo { path }),
        2 => p.clone().prop_map(|path| Op::Whiteout { path }),
        1 => p.prop_map(|path| Op::Opaque { path }),
    ]
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    File,
    Dir,
    Other,
}

/// Turns raw ops into valid layers, tracking the merged tree so every entry makes sense.
struct Model {
    paths: Vec<String>,
    tree: BTreeMap<String, Kind>,
}

fn parent_chain(p: &str) -> Vec<String> {
    let parts: Vec<&str> = p.split('/').collect();
    (1..parts.len()).map(|i| parts[..i].join("/")).collect()
}

fn under(p: &str, root: &str) -> bool {
    p == root || p.starts_with(&format!("{root}/"))
}

impl Model {
    fn remove_subtree(&mut self, root: &str) {
        self.tree.retain(|k, _| !under(k, root));
    }

    fn layer(&mut self, ops: &[Op], n: u64) -> Vec<u8> {
        let mut l = Layer::new();
        l.mtime += n * 1000;
        let mut touched: BTreeSet<String> = BTreeSet::new();
        let mut blocked: Vec<String> = Vec::new();
        for (i, op) in ops.iter().enumerate() {
            l.mtime += 1;
            let path = match op {
                Op::File { path, .. }
                | Op::Dir { path, .. }
                | Op::Symlink { path, .. }
                | Op::Hardlink { path, .. }
                | Op::Fifo { path }
                | Op::Whiteout { path }
                | Op::Opaque { path } => self.paths[*path].clone(),
            };
            if touched.contains(&path) || blocked.iter().any(|b| under(&path, b)) {
                continue;
            }
            match op {
                Op::Whiteout { .. } => {
                    if self.tree.contains_key(&path) && !touched.iter().any(|t| under(t, &path)) {
                        l.whiteout(&path);
                        self.remove_subtree(&path);
                        blocked.push(path);
                    }
                    continue;
                }
                Op::Opaque { .. } => {
                    if self.tree.get(&path) == Some(&Kind::Dir)
                        && !touched.iter().any(|t| under(t, &path))
                    {
                        l.dir(&path, 0o755).opaque(&path);
                        self.remove_subtree(&path);
                        self.tree.insert(path.clone(), Kind::Dir);
                        touched.insert(path);
                    }
                    continue;
                }
                _ => {}
            }
            // Parents must be directories: create or replace them explicitly.
            let mut ok = true;
            for a in parent_chain(&path) {
                match self.tree.get(&a) {
                    Some(Kind::Dir) => {}
                    _ if touched.contains(&a) => {
                        ok = false;
                        break;
                    }
                    other => {
                        if other.is_some() {
                            self.remove_subtree(&a);
                        }
                        l.dir(&a, 0o755);
                        self.tree.insert(a.clone(), Kind::Dir);
                        touched.insert(a);
                    }
                }
            }
            if !ok {
                continue;
            }
            let existing = self.tree.get(&path).copied();
            let kind = match op {
                Op::File {
                    len,
                    mode,
                    zero_head,
                    ..
                } => {
                    let mut data: Vec<u8> = (0..*len).map(|j| (j * 7 + i) as u8 | 1).collect();
                    if *zero_head {
                        let z = (*len).min(8192);
                        data[..z].fill(0);
                    }
                    l.file(&path, *mode, &data);
                    Kind::File
                }
                Op::Dir { mode, .. } => {
                    l.dir(&path, *mode);
                    Kind::Dir
                }
                Op::Symlink { target, .. } => {
                    let targets = ["a", "../b", "/c/d", "nowhere", &"x".repeat(70)];
                    l.symlink(&path, targets[*target]);
                    Kind::Other
                }
                Op::Hardlink { target, .. } => {
                    let t = self.paths[*target].clone();
                    if self.tree.get(&t) != Some(&Kind::File)
                        || t == path
                        || existing == Some(Kind::Dir)
                    {
                        continue;
                    }
                    l.hardlink(&path, &t);
                    Kind::File
                }
                Op::Fifo { .. } => {
                    l.fifo(&path);
                    Kind::Other
                }
                Op::Whiteout { .. } | Op::Opaque { .. } => unreachable!("handled above"),
            };
            if existing.is_some() && !(existing == Some(Kind::Dir) && kind == Kind::Dir) {
                self.remove_subtree(&path);
            }
            self.tree.insert(path.clone(), kind);
            touched.insert(path);
        }
        l.finish()
    }
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: std::env::var("PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(24),
        ..ProptestConfig::default()
    })]

    #[test]
    #[cfg_attr(not(container_testenv), ignore = "needs root for loop mounts: run scripts/test.sh")]
    fn random_layer_stacks_match_umoci(stack in prop::collection::vec(prop::collection::vec(op(), 1..30), 1..4), lost_found in any::<bool>()) {
        let mut model = Model { paths: universe(), tree: BTreeMap::new() };
        let layers: Vec<Vec<u8>> = stack.iter().enumerate().map(|(n, ops)| model.layer(ops, n as u64)).collect();
        // Both kinds of root: with lost+found (volumes of old, `rootfs create`) and without
        // (image rootfs, new volumes), whose e2fsck oracle differs.
        let opts = ext4::FormatOptions { lost_found, ..Default::default() };
        common::check_against_umoci(&layers, &opts, false);
    }
}

#[test]
fn universe_has_84_paths() {
    let u = universe();
    assert_eq!(u.len(), 84);
    assert!(u.contains(&"d/d/d".to_string()));
}
