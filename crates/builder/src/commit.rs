//! `container commit`: a container's changes to its image's files as a new layer on that
//! image, with the container's process settings and `--change`s as the new config (docker's
//! `commit`).
//!
//! The guest's root filesystem is one ext4, not an overlay, so the changes are found by
//! comparison: the container's root filesystem (as `export` packs it) against its image's
//! layers, both unpacked on the host. An entry is changed when its type, mode, owner, size,
//! mtime or link target differ (what a copy-up would have caught); what the image has and the
//! container not becomes a whiteout.

use std::collections::BTreeSet;
use std::fs;
use std::io::{self, BufWriter, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use oci::{Digest, ImageConfig};

use crate::builder::{store_layer_tar, write_image, BuildError};

/// What `commit` was asked for.
#[derive(Debug, Clone, Default)]
pub struct CommitOptions {
    /// The new image's name.
    pub reference: Option<String>,
    /// `-c/--change` instructions.
    pub changes: Vec<String>,
    /// `-a/--author`.
    pub author: Option<String>,
    /// `-m/--message`: the history entry's comment.
    pub message: Option<String>,
    /// `-p/--pause` (docker's default): accepted, but not acted on yet. Docker freezes the
    /// container's cgroup; `container pause` freezes the whole VM, whose agent the copy needs,
    /// and freezing only the container's processes inside the guest is still to come.
    pub pause: bool,
}

fn host<E: std::fmt::Display>(what: &str) -> impl FnOnce(E) -> BuildError + '_ {
    move |e| BuildError::Host(format!("{what}: {e}"))
}

/// Commits container `key`'s changes as a new image; returns its ID.
pub async fn commit(
    rt: &runtime::Runtime,
    key: &str,
    opts: &CommitOptions,
) -> Result<Digest, BuildError> {
    let mut container = rt
        .container(key)
        .map_err(|e| BuildError::Host(runtime::error_line(&e)))?;
    let record = container.record().clone();
    let store = oci::Store::open(rt.root()).map_err(host("open the content store"))?;
    let _gc = store
        .lock_gc(false)
        .map_err(host("lock the content store"))?;
    let digest = Digest::parse(&record.image_digest)
        .map_err(|_| BuildError::Host(format!("container {key} has no image digest")))?;
    let (doc, _) = store
        .read_manifest(&digest)
        .map_err(host("read the container's image"))?;
    let oci::ManifestDoc::Manifest(manifest) = doc else {
        return Err(BuildError::Host(format!(
            "the image of {key} is not a single-platform manifest"
        )));
    };
    let mut image = ImageConfig::parse(
        &store
            .read_blob(&manifest.config.digest)
            .map_err(host("read the image config"))?,
    )
    .map_err(host("read the image config"))?;

    let scratch = crate::scratch::make(store.temp_path().parent().unwrap_or(rt.root()), "commit")
        .map_err(host("create a scratch directory"))?;
    let exported = scratch.path().join("rootfs.tar");
    // `pause` would freeze the whole VM, guest agent included, and the copy needs the
    // agent: the container keeps running while its files are read (see CommitOptions::pause).
    let file = tokio::fs::File::create(&exported)
        .await
        .map_err(host("create a temp file"))?;
    container
        .export(file)
        .await
        .map_err(|e| BuildError::Host(runtime::error_line(&e)))?;

    let (before, after) = (scratch.path().join("image"), scratch.path().join("now"));
    let layers: Vec<PathBuf> = manifest
        .layers
        .iter()
        .map(|l| store.blob_path(&l.digest))
        .collect();
    let layer_tar = scratch.path().join("layer.tar");
    {
        let (b, a, ex, lt) = (
            before.clone(),
            after.clone(),
            exported.clone(),
            layer_tar.clone(),
        );
        tokio::task::spawn_blocking(move || -> Result<(), BuildError> {
            fs::create_dir_all(&b).map_err(host("create a directory"))?;
            fs::create_dir_all(&a).map_err(host("create a directory"))?;
            crate::unpack::unpack_layers(&b, &layers)
                .map_err(|e| BuildError::Host(runtime::error_line(&e)))?;
            let f = fs::File::open(&ex).map_err(host("read the export"))?;
            crate::unpack::apply_layer(&a, io::BufReader::new(f))
                .map_err(host("unpack the container's files"))?;
            let out = BufWriter::new(fs::File::create(&lt).map_err(host("create a layer"))?);
            write_diff(&b, &a, out).map_err(host("write the changes"))
        })
        .await
        .map_err(host("compare the container with its image"))??;
    }
    let layer = store_layer_tar(&store, &layer_tar)?;

    // The container's own settings, as docker's commit takes its Config.
    let c = &record.config;
    let ep_len = c.entrypoint.as_ref().map_or(0, Vec::len);
    image.config.entrypoint = c.entrypoint.clone().filter(|e| !e.is_empty());
    let cmd = c.process.args.get(ep_len..).unwrap_or_default().to_vec();
    image.config.cmd = (!cmd.is_empty()).then_some(cmd);
    image.config.env = c.process.env.clone();
    image.config.working_dir = Some(c.process.cwd.clone()).filter(|w| !w.is_empty());
    image.config.user = Some(c.process.user.clone()).filter(|u| !u.is_empty());
    image.config.labels = c.labels.clone();
    crate::config::apply_changes(&mut image.config, &opts.changes)
        .map_err(|e| BuildError::Host(e.to_string()))?;
    let now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    if let Some(a) = &opts.author {
        image.author = Some(a.clone());
    }
    image.created = Some(now.clone());
    let mut entry = crate::config::history(&now, "container commit", layer.is_none());
    entry["comment"] = opts.message.clone().unwrap_or_default().into();
    image.history.push(entry);
    let mut blobs = manifest.layers.clone();
    if let Some((blob, diff_id)) = layer {
        blobs.push(blob);
        image.rootfs.diff_ids.push(diff_id);
    }
    let tags: Vec<String> = opts.reference.iter().cloned().collect();
    let (id, _, names) = write_image(&store, &image, &blobs, &tags)?;
    // docker's commit event is the container's, then the image is tagged.
    runtime::events::container_event(
        rt.store(),
        &record.id,
        "commit",
        &[("comment", opts.message.clone().unwrap_or_default())],
    );
    for n in &names {
        runtime::events::image_event(rt.root(), "tag", id.as_str(), n);
    }
    Ok(id)
}

/// What differs between two directories' entries (metadata, not contents: a rewritten file
/// has a new mtime).
fn differs(a: &fs::Metadata, b: &fs::Metadata) -> bool {
    let kind = |m: &fs::Metadata| m.mode() & libc::S_IFMT;
    if kind(a) != kind(b) || a.mode() != b.mode() || a.uid() != b.uid() || a.gid() != b.gid() {
        return true;
    }
    if b.is_dir() {
        return false;
    }
    a.size() != b.size() || a.mtime() != b.mtime() || a.rdev() != b.rdev()
}

/// Writes the layer that turns `before` into `after`: changed and new entries (with every
/// parent directory, as layers list them), whiteouts for what is gone.
fn write_diff<W: Write>(before: &Path, after: &Path, out: W) -> io::Result<()> {
    let mut changed: BTreeSet<PathBuf> = BTreeSet::new();
    let mut whiteouts: BTreeSet<PathBuf> = BTreeSet::new();
    walk(before, after, Path::new(""), &mut changed, &mut whiteouts)?;
    // Parents of every entry, so the layer unpacks on its own.
    let mut all: BTreeSet<PathBuf> = BTreeSet::new();
    for p in changed.iter().chain(whiteouts.iter()) {
        let mut parent = p.parent();
        while let Some(d) = parent.filter(|d| !d.as_os_str().is_empty()) {
            all.insert(d.to_path_buf());
            parent = d.parent();
        }
    }
    all.extend(changed);
    let mut tar = tar::Builder::new(out);
    tar.follow_symlinks(false);
    tar.mode(tar::HeaderMode::Complete);
    // In name order, as layers are written; a whiteout is named `.wh.NAME` in its directory.
    let mut items: Vec<(PathBuf, Option<PathBuf>)> = all
        .into_iter()
        .map(|p| (p.clone(), Some(after.join(p))))
        .collect();
    for rel in whiteouts {
        let name = rel.file_name().map(|n| n.to_string_lossy().into_owned());
        let wh = rel
            .parent()
            .unwrap_or(Path::new(""))
            .join(format!(".wh.{}", name.unwrap_or_default()));
        items.push((wh, None));
    }
    items.sort();
    for (name, source) in items {
        match source {
            None => {
                let mut h = tar::Header::new_ustar();
                h.set_entry_type(tar::EntryType::Regular);
                h.set_size(0);
                h.set_mode(0o644);
                h.set_uid(0);
                h.set_gid(0);
                h.set_mtime(0);
                tar.append_data(&mut h, &name, io::empty())?;
            }
            Some(p) if fs::symlink_metadata(&p)?.is_dir() => tar.append_dir(&name, &p)?,
            Some(p) => tar.append_path_with_name(&p, &name)?,
        }
    }
    tar.into_inner()?.flush()
}

fn walk(
    before: &Path,
    after: &Path,
    rel: &Path,
    changed: &mut BTreeSet<PathBuf>,
    whiteouts: &mut BTreeSet<PathBuf>,
) -> io::Result<()> {
    let (b_dir, a_dir) = (before.join(rel), after.join(rel));
    let mut names: Vec<_> = fs::read_dir(&a_dir)?
        .flatten()
        .map(|e| e.file_name())
        .collect();
    names.sort();
    for name in &names {
        let r = rel.join(name);
        let am = fs::symlink_metadata(after.join(&r))?;
        let bm = fs::symlink_metadata(before.join(&r)).ok();
        // The mount points an image's cached rootfs holds where the image lacks them (and the
        // guest made in older ones): not changes of the container's.
        let stub = runtime::rootfs::MOUNT_POINTS
            .iter()
            .any(|(s, _)| Path::new(s.trim_start_matches('/')) == r);
        match &bm {
            None if stub && ((am.is_file() && am.len() == 0) || am.is_dir()) => continue,
            None => {
                changed.insert(r.clone());
            }
            Some(bm) if differs(bm, &am) => {
                changed.insert(r.clone());
            }
            Some(bm) if am.file_type().is_symlink() && bm.file_type().is_symlink() => {
                if fs::read_link(after.join(&r))? != fs::read_link(before.join(&r))? {
                    changed.insert(r.clone());
                }
            }
            Some(_) => {}
        }
        if am.is_dir() {
            let was_dir = bm.as_ref().is_some_and(|m| m.is_dir());
            if was_dir {
                walk(before, after, &r, changed, whiteouts)?;
            } else {
                // A new directory: everything under it is new.
                for e in walkdir(&after.join(&r))? {
                    changed.insert(r.join(e));
                }
            }
        }
    }
    if b_dir.is_dir() && !fs::symlink_metadata(&b_dir)?.file_type().is_symlink() {
        for e in fs::read_dir(&b_dir)?.flatten() {
            let name = e.file_name();
            if fs::symlink_metadata(a_dir.join(&name)).is_err() {
                whiteouts.insert(rel.join(&name));
            }
        }
    }
    Ok(())
}

/// Every path under `dir`, relative to it.
fn walkdir(dir: &Path) -> io::Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    let mut todo = vec![PathBuf::new()];
    while let Some(rel) = todo.pop() {
        for e in fs::read_dir(dir.join(&rel))?.flatten() {
            let r = rel.join(e.file_name());
            if e.file_type()?.is_dir() {
                todo.push(r.clone());
            }
            out.push(r);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn diff_has_changes_new_entries_whiteouts_and_parents() {
        let t = tempfile::tempdir().unwrap();
        let (b, a) = (t.path().join("b"), t.path().join("a"));
        for d in [&b, &a] {
            fs::create_dir_all(d.join("etc/sub")).unwrap();
            fs::create_dir_all(d.join("keep")).unwrap();
            fs::write(d.join("keep/same"), "x").unwrap();
            fs::write(d.join("etc/sub/conf"), "old").unwrap();
        }
        let same = fs::metadata(b.join("keep/same"))
            .unwrap()
            .modified()
            .unwrap();
        fs::File::options()
            .write(true)
            .open(a.join("keep/same"))
            .unwrap()
            .set_modified(same)
            .unwrap();
        fs::write(b.join("gone"), "g").unwrap();
        fs::write(a.join("etc/sub/conf"), "new!").unwrap();
        fs::create_dir_all(a.join("newdir/deep")).unwrap();
        fs::write(a.join("newdir/deep/f"), "f").unwrap();
        fs::write(a.join("etc/hosts"), "").unwrap();
        fs::create_dir_all(a.join("proc")).unwrap();
        let mut out = Vec::new();
        write_diff(&b, &a, &mut out).unwrap();
        let mut ar = tar::Archive::new(&out[..]);
        let names: Vec<String> = ar
            .entries()
            .unwrap()
            .map(|e| {
                String::from_utf8_lossy(&e.unwrap().path_bytes())
                    .trim_end_matches('/')
                    .to_string()
            })
            .collect();
        assert_eq!(
            names,
            [
                ".wh.gone",
                "etc",
                "etc/sub",
                "etc/sub/conf",
                "newdir",
                "newdir/deep",
                "newdir/deep/f"
            ]
        );
    }
}
