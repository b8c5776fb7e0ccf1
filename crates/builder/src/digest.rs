//! Content digests of what COPY and ADD read, for the build cache's keys.
//!
//! Like BuildKit's `contenthash`, a file's digest covers what its layer entry would carry
//! and nothing of when it was made: its type, permission bits (with setuid, setgid and
//! sticky), owner and group as the tree stores them, size, symlink target, device numbers,
//! the extended attributes a layer keeps, and the SHA-256 of its content — not its mtime,
//! so touching a file does not invalidate a step. A directory's digest covers its own
//! record and, in name order, each child's name and digest; a file that is a hard link to
//! one met earlier in the same walk records that instead of its content, since the layer
//! stores a link there. The encoding is our own (these digests are only compared with each
//! other), versioned by its first record so a change of format can never collide.

use std::io::Read;

use dockerfile::Ignore;
use oci::digest::Hasher;
use oci::Digest;

use super::path as rel;
use super::tree::{resolve, Entry, Kind, SourceTree, TreeError};

const VERSION: &[u8] = b"container-build-digest-v1\0";

/// The SHA-256 of a regular file's content.
pub fn content_digest<T: SourceTree + ?Sized>(tree: &T, path: &str) -> Result<Digest, TreeError> {
    let mut reader = tree.open(path)?;
    let mut hasher = Hasher::new();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = reader.read(&mut buf).map_err(|source| TreeError::Read {
            tree: tree.name().into(),
            path: path.into(),
            source,
        })?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hasher.finish().0)
}

/// The record of one entry's metadata (everything but content and mtime).
fn header(entry: &Entry) -> Vec<u8> {
    let mut out = Vec::new();
    let (kind, link, dev) = match &entry.kind {
        Kind::File => ("file", "", (0, 0)),
        Kind::Dir => ("dir", "", (0, 0)),
        Kind::Symlink(target) => ("symlink", target.as_str(), (0, 0)),
        Kind::CharDevice { major, minor } => ("char", "", (*major, *minor)),
        Kind::BlockDevice { major, minor } => ("block", "", (*major, *minor)),
        Kind::Fifo => ("fifo", "", (0, 0)),
    };
    // Symlink modes mean nothing on Linux; they always read 0777.
    let mode = if matches!(entry.kind, Kind::Symlink(_)) {
        0o777
    } else {
        entry.mode & 0o7777
    };
    for (key, value) in [
        ("type", kind.to_string()),
        ("mode", format!("{mode:o}")),
        ("uid", entry.uid.to_string()),
        ("gid", entry.gid.to_string()),
        ("size", entry.size.to_string()),
        ("linkname", link.to_string()),
        ("dev", format!("{},{}", dev.0, dev.1)),
    ] {
        field(&mut out, key.as_bytes(), value.as_bytes());
    }
    for (name, value) in &entry.xattrs {
        field(&mut out, format!("xattr.{name}").as_bytes(), value);
    }
    out
}

/// `len(key) key len(value) value`: unambiguous whatever the bytes are.
fn field(out: &mut Vec<u8>, key: &[u8], value: &[u8]) {
    out.extend_from_slice(&(key.len() as u64).to_le_bytes());
    out.extend_from_slice(key);
    out.extend_from_slice(&(value.len() as u64).to_le_bytes());
    out.extend_from_slice(value);
}

/// The digest of the entry at `path` (not following a final symlink) and, for a directory,
/// everything under it that `exclude` (patterns relative to `path`) does not leave out.
pub fn tree_digest(
    tree: &dyn SourceTree,
    path: &str,
    exclude: Option<&Ignore>,
) -> Result<Digest, TreeError> {
    let mut links = std::collections::HashMap::new();
    walk_digest(tree, path, "", exclude, &mut links)
}

fn walk_digest(
    tree: &dyn SourceTree,
    path: &str,
    relative: &str,
    exclude: Option<&Ignore>,
    links: &mut std::collections::HashMap<u64, String>,
) -> Result<Digest, TreeError> {
    let entry = tree.entry(path)?.ok_or_else(|| TreeError::Missing {
        tree: tree.name().into(),
        path: path.into(),
    })?;
    let mut h = Hasher::new();
    h.update(VERSION);
    h.update(&header(&entry));
    match &entry.kind {
        Kind::File => {
            let first = entry.link.and_then(|id| match links.get(&id) {
                Some(first) => Some(first.clone()),
                None => {
                    links.insert(id, relative.to_string());
                    None
                }
            });
            match first {
                Some(first) => field_into(&mut h, b"hardlink", first.as_bytes()),
                None => field_into(
                    &mut h,
                    b"content",
                    tree.file_digest(path)?.as_str().as_bytes(),
                ),
            }
        }
        Kind::Dir => {
            for name in tree.read_dir(path)? {
                let child_rel = rel::join(relative, &name);
                if exclude.is_some_and(|ex| ex.matches(&child_rel)) {
                    let reinclude = exclude.is_some_and(|ex| ex.may_reinclude_under(&child_rel));
                    if !reinclude {
                        continue;
                    }
                }
                let child = rel::join(path, &name);
                let digest = walk_digest(tree, &child, &child_rel, exclude, links)?;
                field_into(&mut h, name.as_bytes(), digest.as_str().as_bytes());
            }
        }
        _ => {}
    }
    Ok(h.finish().0)
}

fn field_into(h: &mut Hasher, key: &[u8], value: &[u8]) {
    let mut out = Vec::new();
    field(&mut out, key, value);
    h.update(&out);
}

/// The digest of everything one COPY/ADD source pattern selects: each match's path and the
/// [`tree_digest`] of what it leads to (symlinks followed, as the copy follows them). Two
/// steps with equal digests read exactly the same files. An empty match set has a digest
/// too (a wildcard may match nothing).
pub fn source_digest(
    tree: &dyn SourceTree,
    pattern: &str,
    exclude: Option<&Ignore>,
) -> Result<Digest, super::copy::CopyError> {
    let matches = super::copy::expand(tree, pattern)?;
    let mut h = Hasher::new();
    h.update(VERSION);
    field_into(&mut h, b"pattern", pattern.as_bytes());
    for m in matches {
        let followed = resolve(tree, &m, true).map_err(|e| super::copy::CopyError::Source {
            source_arg: pattern.into(),
            source: e,
        })?;
        let digest =
            tree_digest(tree, &followed, exclude).map_err(|e| super::copy::CopyError::Source {
                source_arg: pattern.into(),
                source: e,
            })?;
        field_into(&mut h, m.as_bytes(), digest.as_str().as_bytes());
    }
    Ok(h.finish().0)
}
