//! Packing a path into a tar stream: the root entry is named `name`, directories are walked
//! in name order, symlinks are stored as links (only the root is followed, with
//! `follow_link`), files that share an inode are stored once and then as hard links, and
//! device nodes and fifos as such. Modes, owners and mtimes come from the files; sockets,
//! which tar cannot carry, are skipped.

use std::collections::HashMap;
use std::fs;
use std::io::{self, Read, Write};
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use super::CopyError;

/// Writes `path` as a tar stream named `name` to `out`; returns `out` after the end marker.
pub fn pack<W: Write>(out: W, path: &Path, name: &str, follow_link: bool) -> Result<W, CopyError> {
    let read = |p: &Path| {
        let p = p.to_path_buf();
        move |source| CopyError::Read { path: p, source }
    };
    let meta = if follow_link {
        fs::metadata(path)
    } else {
        fs::symlink_metadata(path)
    }
    .map_err(read(path))?;
    let mut b = tar::Builder::new(Cut {
        inner: out,
        cut: false,
    });
    b.follow_symlinks(false);
    let mut links = HashMap::new();
    if let Err(e) = add(&mut b, path, &meta, Path::new(name), &mut links) {
        // Dropping the builder would write the end marker and make the partial stream
        // look complete to the receiver.
        b.get_mut().cut = true;
        return Err(e);
    }
    b.into_inner().map(|c| c.inner).map_err(CopyError::Stream)
}

/// The output, which refuses every write once the stream must stay incomplete (also the
/// layer packer's, `crate::layer::pack`).
pub(crate) struct Cut<W> {
    pub(crate) inner: W,
    pub(crate) cut: bool,
}

impl<W: Write> Write for Cut<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if self.cut {
            return Err(io::ErrorKind::BrokenPipe.into());
        }
        self.inner.write(buf)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

fn add<W: Write>(
    b: &mut tar::Builder<W>,
    path: &Path,
    meta: &fs::Metadata,
    name: &Path,
    links: &mut HashMap<(u64, u64), PathBuf>,
) -> Result<(), CopyError> {
    let read = |source| CopyError::Read {
        path: path.to_path_buf(),
        source,
    };
    let ft = meta.file_type();
    if ft.is_socket() {
        return Ok(());
    }
    let mut h = tar::Header::new_gnu();
    h.set_metadata_in_mode(meta, tar::HeaderMode::Complete);
    h.set_mode(meta.mode() & 0o7777);
    h.set_mtime(u64::try_from(meta.mtime()).unwrap_or(0));
    if !ft.is_file() {
        h.set_size(0);
    }
    if ft.is_file() && meta.nlink() > 1 {
        let key = (meta.dev(), meta.ino());
        if let Some(first) = links.get(&key) {
            h.set_entry_type(tar::EntryType::Link);
            h.set_size(0);
            return b
                .append_link(&mut h, name, first)
                .map_err(CopyError::Stream);
        }
        links.insert(key, name.to_path_buf());
    }
    if ft.is_symlink() {
        let target = fs::read_link(path).map_err(read)?;
        return b
            .append_link(&mut h, name, target)
            .map_err(CopyError::Stream);
    }
    if ft.is_file() {
        let f = fs::File::open(path).map_err(read)?;
        // The size in the header must match what follows: a file that changes while it is
        // copied is cut or padded to the size it had when stat'ed.
        let len = meta.len();
        let data = f.take(len).chain(io::repeat(0)).take(len);
        return b.append_data(&mut h, name, data).map_err(CopyError::Stream);
    }
    b.append_data(&mut h, name, io::empty())
        .map_err(CopyError::Stream)?;
    if ft.is_dir() {
        let mut children: Vec<_> = fs::read_dir(path)
            .map_err(read)?
            .collect::<Result<_, _>>()
            .map_err(read)?;
        children.sort_by_key(|e| e.file_name());
        for c in children {
            let p = c.path();
            let m = fs::symlink_metadata(&p).map_err(|source| CopyError::Read {
                path: p.clone(),
                source,
            })?;
            add(b, &p, &m, &name.join(c.file_name()), links)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packs_a_tree_with_links_and_modes() {
        let d = tempfile::tempdir().unwrap();
        let root = d.path().join("src");
        fs::create_dir(&root).unwrap();
        fs::create_dir(root.join("empty")).unwrap();
        fs::write(root.join("f"), b"hello").unwrap();
        fs::set_permissions(
            root.join("f"),
            std::os::unix::fs::PermissionsExt::from_mode(0o750),
        )
        .unwrap();
        fs::hard_link(root.join("f"), root.join("g")).unwrap();
        std::os::unix::fs::symlink("/etc/passwd", root.join("l")).unwrap();
        let tar = pack(Vec::new(), &root, "src", false).unwrap();
        let mut ar = tar::Archive::new(tar.as_slice());
        let mut seen = Vec::new();
        for e in ar.entries().unwrap() {
            let e = e.unwrap();
            let h = e.header();
            seen.push((
                e.path().unwrap().to_string_lossy().into_owned(),
                h.entry_type(),
                h.mode().unwrap(),
                e.link_name()
                    .unwrap()
                    .map(|l| l.to_string_lossy().into_owned()),
            ));
        }
        let names: Vec<_> = seen.iter().map(|s| s.0.as_str()).collect();
        assert_eq!(names, ["src", "src/empty", "src/f", "src/g", "src/l"]);
        assert_eq!(seen[2].1, tar::EntryType::Regular);
        assert_eq!(seen[2].2, 0o750);
        assert_eq!(seen[3].1, tar::EntryType::Link);
        assert_eq!(seen[3].3.as_deref(), Some("src/f"));
        assert_eq!(seen[4].1, tar::EntryType::Symlink);
        assert_eq!(seen[4].3.as_deref(), Some("/etc/passwd"));
    }

    #[test]
    fn follow_link_packs_the_target_of_the_root_only() {
        let d = tempfile::tempdir().unwrap();
        fs::write(d.path().join("real"), b"data").unwrap();
        std::os::unix::fs::symlink("real", d.path().join("link")).unwrap();
        let tar = pack(Vec::new(), &d.path().join("link"), "link", true).unwrap();
        let mut ar = tar::Archive::new(tar.as_slice());
        let e = ar.entries().unwrap().next().unwrap().unwrap();
        assert_eq!(e.header().entry_type(), tar::EntryType::Regular);
        assert_eq!(e.header().size().unwrap(), 4);
        let tar = pack(Vec::new(), &d.path().join("link"), "link", false).unwrap();
        let mut ar = tar::Archive::new(tar.as_slice());
        let e = ar.entries().unwrap().next().unwrap().unwrap();
        assert_eq!(e.header().entry_type(), tar::EntryType::Symlink);
    }
}
