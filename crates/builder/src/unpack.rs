//! Unpacks a stage's or an image's layers into a host directory, whiteouts applied: the
//! source of `COPY --from`, and the `-o type=local` output.

use std::fs;
use std::io::{self, Read};
use std::path::{Component, Path, PathBuf};

use super::compress;

/// A layer could not be unpacked.
#[derive(Debug, thiserror::Error)]
#[error("unpack layer {layer} into {}", dir.display())]
pub struct UnpackError {
    layer: usize,
    dir: PathBuf,
    #[source]
    source: io::Error,
}

/// The relative path of an entry, refused when it climbs out.
fn relative(raw: &[u8]) -> io::Result<PathBuf> {
    let text = String::from_utf8_lossy(raw);
    let mut out = PathBuf::new();
    for c in Path::new(text.as_ref()).components() {
        match c {
            Component::Normal(p) => out.push(p),
            Component::CurDir | Component::RootDir => {}
            Component::ParentDir | Component::Prefix(_) => {
                return Err(io::Error::other(format!("entry {text} leaves the layer")))
            }
        }
    }
    Ok(out)
}

fn remove_any(p: &Path) -> io::Result<()> {
    match fs::symlink_metadata(p) {
        Ok(m) if m.is_dir() => fs::remove_dir_all(p),
        Ok(_) => fs::remove_file(p),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    }
}

/// Applies one layer (gzip, zstd or plain tar) on top of `dir`: `.wh.NAME` removes
/// `NAME`, `.wh..wh..opq` empties its directory, an entry replaces what was at its path
/// (a directory over a directory keeps the contents). Owners, modes, mtimes and extended
/// attributes are kept where the host allows.
pub fn apply_layer<R: Read>(dir: &Path, layer: R) -> io::Result<()> {
    let (_, reader) = compress::decompress(layer)?;
    let mut archive = tar::Archive::new(reader);
    archive.set_preserve_permissions(true);
    archive.set_preserve_ownerships(true);
    archive.set_preserve_mtime(true);
    archive.set_unpack_xattrs(true);
    archive.set_overwrite(true);
    let mut dirs = Vec::new();
    for entry in archive.entries()? {
        let mut entry = entry?;
        let rel = relative(&entry.path_bytes())?;
        let Some(name) = rel.file_name().and_then(|n| n.to_str()).map(str::to_owned) else {
            continue;
        };
        let parent = dir.join(rel.parent().unwrap_or(Path::new("")));
        if name == ".wh..wh..opq" {
            for child in fs::read_dir(&parent).into_iter().flatten().flatten() {
                remove_any(&child.path())?;
            }
            continue;
        }
        if let Some(hidden) = name.strip_prefix(".wh.") {
            remove_any(&parent.join(hidden))?;
            continue;
        }
        let target = dir.join(&rel);
        let is_dir = entry.header().entry_type().is_dir();
        match fs::symlink_metadata(&target) {
            Ok(m) if m.is_dir() && is_dir => {}
            Ok(_) => remove_any(&target)?,
            Err(_) => {}
        }
        if is_dir {
            // Directory mtimes are set last: unpacking into them changes them.
            let mtime = entry.header().mtime().unwrap_or(0);
            dirs.push((target.clone(), mtime));
        }
        entry.unpack_in(dir)?;
    }
    for (d, mtime) in dirs.iter().rev() {
        let _ = agent::copy::set_mtime(d, *mtime as i64);
    }
    Ok(())
}

/// Unpacks `layers` (files, lowest first) into the existing directory `dir`.
pub fn unpack_layers(dir: &Path, layers: &[PathBuf]) -> Result<(), UnpackError> {
    for (i, layer) in layers.iter().enumerate() {
        let err = |source| UnpackError {
            layer: i,
            dir: dir.to_path_buf(),
            source,
        };
        let file = fs::File::open(layer).map_err(err)?;
        apply_layer(dir, io::BufReader::new(file)).map_err(err)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tar(entries: &[(&str, Option<&[u8]>)]) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        for (name, data) in entries {
            let mut h = tar::Header::new_ustar();
            h.set_uid(0);
            h.set_gid(0);
            h.set_mtime(0);
            match data {
                Some(d) => {
                    h.set_entry_type(tar::EntryType::Regular);
                    h.set_size(d.len() as u64);
                    h.set_mode(0o644);
                    b.append_data(&mut h, name, *d).unwrap();
                }
                None => {
                    h.set_entry_type(tar::EntryType::Directory);
                    h.set_size(0);
                    h.set_mode(0o755);
                    b.append_data(&mut h, name, &[][..]).unwrap();
                }
            }
        }
        b.into_inner().unwrap()
    }

    #[test]
    fn whiteouts_and_opaque_directories() {
        let dir = tempfile::tempdir().unwrap();
        let l1 = tar(&[
            ("a/", None),
            ("a/x", Some(b"x")),
            ("a/y", Some(b"y")),
            ("b/", None),
            ("b/z", Some(b"z")),
            ("c", Some(b"c")),
        ]);
        let l2 = tar(&[
            ("a/", None),
            ("a/.wh.x", Some(b"")),
            ("b/", None),
            ("b/.wh..wh..opq", Some(b"")),
            ("b/new", Some(b"n")),
            ("c/", None),
        ]);
        apply_layer(dir.path(), &l1[..]).unwrap();
        apply_layer(dir.path(), &l2[..]).unwrap();
        let p = dir.path();
        assert!(!p.join("a/x").exists());
        assert_eq!(fs::read(p.join("a/y")).unwrap(), b"y");
        assert!(!p.join("b/z").exists());
        assert_eq!(fs::read(p.join("b/new")).unwrap(), b"n");
        assert!(p.join("c").is_dir());
        assert!(relative(b"a/../../evil").is_err());
    }
}
