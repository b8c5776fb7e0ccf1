//! `--cidfile FILE` of `run`/`create`: the new container's id in a file, as docker writes it.
//! The file must not exist (a second container with the same file is refused before it is
//! created), holds the full id without a newline, and is removed when the create fails.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::Context;

/// A container id file made for a container being created; removed on drop unless written.
#[derive(Debug)]
pub struct CidFile {
    path: PathBuf,
    file: File,
    written: bool,
}

impl CidFile {
    /// Makes the empty file; refuses one that exists.
    pub fn create(path: &Path) -> anyhow::Result<CidFile> {
        // create_new rather than docker's stat-then-create: two runs racing for one file
        // cannot both win.
        match OpenOptions::new().write(true).create_new(true).open(path) {
            Ok(file) => Ok(CidFile {
                path: path.to_path_buf(),
                file,
                written: false,
            }),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => anyhow::bail!(
                "container ID file {} found: make sure the other container isn't running or \
                 delete it",
                path.display()
            ),
            Err(e) => Err(e)
                .with_context(|| format!("cannot create the container ID file {}", path.display())),
        }
    }

    /// Writes the id (the file then stays).
    pub fn write(mut self, id: &str) -> anyhow::Result<()> {
        self.written = true;
        self.file
            .write_all(id.as_bytes())
            .and_then(|()| self.file.sync_all())
            .with_context(|| format!("cannot write the container ID to {}", self.path.display()))
    }
}

impl Drop for CidFile {
    fn drop(&mut self) {
        if !self.written {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::CidFile;

    #[test]
    fn refuses_an_existing_file_and_cleans_up_unless_written() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cid");
        let file = CidFile::create(&path).unwrap();
        let e = CidFile::create(&path).unwrap_err();
        assert!(e.to_string().contains("found"), "{e}");
        drop(file);
        assert!(!path.exists());
        CidFile::create(&path).unwrap().write("abc").unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "abc");
        assert!(CidFile::create(&path).is_err());
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "abc");
        let missing_dir = dir.path().join("no/such/cid");
        assert!(CidFile::create(&missing_dir).is_err());
    }
}
