//! Where a build's result goes besides the store (`build -o`, docker buildx's syntax):
//! an OCI archive, the root filesystem as a tar, or unpacked into a directory.

use std::io::{self, Write};
use std::path::{Path, PathBuf};

use crate::builder::{BuildError, BuildResult};

/// One `-o/--output` destination.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Output {
    /// `type=oci,dest=FILE`: the image as an OCI-layout tar (`image load` reads it).
    Oci(PathBuf),
    /// `type=tar,dest=FILE|-`: the image's root filesystem as one tar (`-`: stdout).
    Tar(PathBuf),
    /// `type=local,dest=DIR` or `DIR`: the root filesystem unpacked into DIR.
    Local(PathBuf),
}

/// Parses `-o`: `type=oci|tar|local,dest=PATH`, `-` (a tar on stdout) or a directory.
pub fn parse(spec: &str) -> Result<Output, String> {
    if spec == "-" {
        return Ok(Output::Tar(PathBuf::from("-")));
    }
    if !spec.contains('=') {
        return Ok(Output::Local(PathBuf::from(spec)));
    }
    let (mut kind, mut dest) = (None, None);
    for field in spec.split(',') {
        match field.split_once('=') {
            Some(("type", v)) => kind = Some(v.to_string()),
            Some(("dest", v)) => dest = Some(PathBuf::from(v)),
            _ => return Err(format!("invalid output {spec:?}: unknown field {field:?}")),
        }
    }
    let dest = dest.ok_or_else(|| format!("invalid output {spec:?}: dest= is required"))?;
    match kind.as_deref() {
        Some("oci") => Ok(Output::Oci(dest)),
        Some("tar") => Ok(Output::Tar(dest)),
        Some("local") => Ok(Output::Local(dest)),
        Some(other) => Err(format!(
            "invalid output {spec:?}: type {other:?} is not one of oci, tar, local"
        )),
        None => Err(format!("invalid output {spec:?}: type= is required")),
    }
}

fn host(what: &str) -> impl FnOnce(io::Error) -> BuildError + '_ {
    move |e| BuildError::Host(format!("{what}: {e}"))
}

/// Writes `result` (an image in the store under `root`) to `out`.
pub fn export(root: &Path, result: &BuildResult, out: &Output) -> Result<(), BuildError> {
    let store = oci::Store::open(root).map_err(|e| BuildError::Host(e.to_string()))?;
    let blobs: Vec<PathBuf> = result
        .layers
        .iter()
        .map(|l| store.blob_path(&l.digest))
        .collect();
    match out {
        Output::Oci(dest) => {
            let name = result
                .tags
                .first()
                .and_then(|t| oci::Reference::parse(t).ok());
            oci::archive::save_descriptors(
                &store,
                &[(result.manifest_descriptor.clone(), name)],
                dest,
            )
            .map_err(|e| BuildError::Host(runtime::error_line(&e)))
        }
        Output::Local(dest) => {
            std::fs::create_dir_all(dest).map_err(host("create the output directory"))?;
            crate::unpack::unpack_layers(dest, &blobs)
                .map_err(|e| BuildError::Host(runtime::error_line(&e)))
        }
        Output::Tar(dest) => {
            let scratch =
                crate::scratch::make(store.temp_path().parent().unwrap_or(root), "build-out")
                    .map_err(host("create a scratch directory"))?;
            crate::unpack::unpack_layers(scratch.path(), &blobs)
                .map_err(|e| BuildError::Host(runtime::error_line(&e)))?;
            if dest.as_os_str() == "-" {
                let stdout = io::stdout().lock();
                write_tar(scratch.path(), stdout).map_err(host("write the tar to stdout"))
            } else {
                let tmp = atomic_file::temp_sibling(dest);
                let written = std::fs::File::create(&tmp)
                    .and_then(|f| write_tar(scratch.path(), io::BufWriter::new(f)))
                    .and_then(|_| std::fs::rename(&tmp, dest));
                if written.is_err() {
                    let _ = std::fs::remove_file(&tmp);
                }
                written.map_err(host("write the output tar"))
            }
        }
    }
}

/// The directory `dir` as a tar of its contents (names relative to it, links kept).
fn write_tar<W: Write>(dir: &Path, out: W) -> io::Result<()> {
    let mut tar = tar::Builder::new(out);
    tar.follow_symlinks(false);
    tar.mode(tar::HeaderMode::Complete);
    let mut entries: Vec<_> = std::fs::read_dir(dir)?.flatten().collect();
    entries.sort_by_key(|e| e.file_name());
    for e in entries {
        let name = e.file_name();
        let p = e.path();
        if e.file_type()?.is_dir() {
            tar.append_dir_all(&name, &p)?;
        } else {
            tar.append_path_with_name(&p, &name)?;
        }
    }
    tar.into_inner()?.flush()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn output_specs() {
        assert_eq!(parse("-"), Ok(Output::Tar("-".into())));
        assert_eq!(parse("out"), Ok(Output::Local("out".into())));
        assert_eq!(
            parse("type=oci,dest=i.tar"),
            Ok(Output::Oci("i.tar".into()))
        );
        assert_eq!(parse("type=tar,dest=-"), Ok(Output::Tar("-".into())));
        assert_eq!(parse("dest=d,type=local"), Ok(Output::Local("d".into())));
        assert!(parse("type=docker,dest=x")
            .unwrap_err()
            .contains("oci, tar, local"));
        assert!(parse("type=oci").unwrap_err().contains("dest="));
        assert!(parse("type=oci,dest=x,foo=1").is_err());
    }
}
