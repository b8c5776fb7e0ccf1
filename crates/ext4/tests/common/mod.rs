//! Shared helpers of the oracle tests: build layers, build the OCI reference with `umoci
//! unpack`, check images with `e2fsck -fn`, loop-mount them and compare trees.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::io::Write;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::process::Command;

use sha2::{Digest, Sha256};

/// A layer tarball built in memory.
pub struct Layer {
    b: tar::Builder<Vec<u8>>,
    pub mtime: u64,
}

impl Default for Layer {
    fn default() -> Self {
        Self::new()
    }
}

impl Layer {
    pub fn new() -> Self {
        Layer {
            b: tar::Builder::new(Vec::new()),
            mtime: 1_700_000_000,
        }
    }

    fn header(&self, kind: tar::EntryType, mode: u32, uid: u64, gid: u64) -> tar::Header {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(kind);
        h.set_mode(mode);
        h.set_uid(uid);
        h.set_gid(gid);
        h.set_mtime(self.mtime);
        h.set_size(0);
        h
    }

    /// PAX records for the next entry.
    pub fn pax(&mut self, records: &[(&str, &[u8])]) -> &mut Self {
        let mut data = Vec::new();
        for (k, v) in records {
            let body_len = k.len() + v.len() + 3;
            let mut len = body_len + 1;
            while len.to_string().len() + body_len != len {
                len = len.to_string().len() + body_len;
            }
            data.extend_from_slice(format!("{len} {k}=").as_bytes());
            data.extend_from_slice(v);
            data.push(b'\n');
        }
        let mut h = tar::Header::new_ustar();
        h.set_entry_type(tar::EntryType::XHeader);
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_path("PaxHeaders/x").expect("pax path");
        h.set_cksum();
        self.b.append(&h, data.as_slice()).expect("pax");
        self
    }

    pub fn dir(&mut self, path: &str, mode: u32) -> &mut Self {
        self.dir_owned(path, mode, 0, 0)
    }

    pub fn dir_owned(&mut self, path: &str, mode: u32, uid: u64, gid: u64) -> &mut Self {
        let mut h = self.header(tar::EntryType::Directory, mode, uid, gid);
        self.b.append_data(&mut h, path, &[][..]).expect("dir");
        self
    }

    pub fn file(&mut self, path: &str, mode: u32, data: &[u8]) -> &mut Self {
        self.file_owned(path, mode, 0, 0, data)
    }

    pub fn file_owned(
        &mut self,
        path: &str,
        mode: u32,
        uid: u64,
        gid: u64,
        data: &[u8],
    ) -> &mut Self {
        let mut h = self.header(tar::EntryType::Regular, mode, uid, gid);
        h.set_size(data.len() as u64);
        self.b.append_data(&mut h, path, data).expect("file");
        self
    }

    pub fn symlink(&mut self, path: &str, target: &str) -> &mut Self {
        let mut h = self.header(tar::EntryType::Symlink, 0o777, 0, 0);
        self.b.append_link(&mut h, path, target).expect("symlink");
        self
    }

    pub fn hardlink(&mut self, path: &str, target: &str) -> &mut Self {
        let mut h = self.header(tar::EntryType::Link, 0o644, 0, 0);
        self.b.append_link(&mut h, path, target).expect("hardlink");
        self
    }

    pub fn device(
        &mut self,
        path: &str,
        kind: tar::EntryType,
        major: u32,
        minor: u32,
    ) -> &mut Self {
        let mut h = self.header(kind, 0o660, 0, 6);
        h.set_device_major(major).expect("major");
        h.set_device_minor(minor).expect("minor");
        self.b.append_data(&mut h, path, &[][..]).expect("device");
        self
    }

    pub fn fifo(&mut self, path: &str) -> &mut Self {
        let mut h = self.header(tar::EntryType::Fifo, 0o644, 0, 0);
        self.b.append_data(&mut h, path, &[][..]).expect("fifo");
        self
    }

    pub fn whiteout(&mut self, path: &str) -> &mut Self {
        let p = Path::new(path);
        let name = format!(".wh.{}", p.file_name().expect("name").to_string_lossy());
        let full = p.with_file_name(name);
        self.file(full.to_str().expect("utf8"), 0o644, b"")
    }

    pub fn opaque(&mut self, dir: &str) -> &mut Self {
        self.file(&format!("{dir}/.wh..wh..opq"), 0o644, b"")
    }

    /// Raw bytes appended as-is (hostile input tests).
    pub fn raw_entry(&mut self, mut h: tar::Header, data: &[u8]) -> &mut Self {
        h.set_cksum();
        self.b.append(&h, data).expect("raw");
        self
    }

    pub fn finish(self) -> Vec<u8> {
        self.b.into_inner().expect("tar")
    }
}

pub fn gzip(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(data).expect("gzip");
    e.finish().expect("gzip")
}

pub fn sha256_hex(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

/// Writes layer files into `dir` and returns their paths.
pub fn write_layers(dir: &Path, layers: &[Vec<u8>]) -> Vec<PathBuf> {
    layers
        .iter()
        .enumerate()
        .map(|(i, l)| {
            let p = dir.join(format!("layer{i}.tar"));
            std::fs::write(&p, l).expect("write layer");
            p
        })
        .collect()
}

fn run(cmd: &mut Command) -> String {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{cmd:?} failed: {text}");
    text
}

/// The reference tree: the same layers unpacked by umoci from an OCI layout.
pub fn umoci_reference(dir: &Path, layers: &[Vec<u8>]) -> PathBuf {
    let layout = dir.join("oci");
    let blobs = layout.join("blobs/sha256");
    std::fs::create_dir_all(&blobs).expect("blobs");
    let put = |data: &[u8]| -> (String, usize) {
        let d = sha256_hex(data);
        std::fs::write(blobs.join(&d), data).expect("blob");
        (format!("sha256:{d}"), data.len())
    };
    let mut layer_descs = Vec::new();
    let mut diff_ids = Vec::new();
    for l in layers {
        let gz = gzip(l);
        let (digest, size) = put(&gz);
        diff_ids.push(format!("sha256:{}", sha256_hex(l)));
        layer_descs.push(serde_json::json!({
            "mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
            "digest": digest, "size": size}));
    }
    let config = serde_json::json!({
        "architecture": "amd64", "os": "linux", "config": {},
        "rootfs": {"type": "layers", "diff_ids": diff_ids}});
    let (cdigest, csize) = put(config.to_string().as_bytes());
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": cdigest, "size": csize},
        "layers": layer_descs});
    let (mdigest, msize) = put(manifest.to_string().as_bytes());
    let index = serde_json::json!({
        "schemaVersion": 2,
        "manifests": [{"mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": mdigest, "size": msize, "annotations": {"org.opencontainers.image.ref.name": "t"}}]});
    std::fs::write(layout.join("index.json"), index.to_string()).expect("index");
    std::fs::write(
        layout.join("oci-layout"),
        r#"{"imageLayoutVersion":"1.0.0"}"#,
    )
    .expect("layout");
    let bundle = dir.join("bundle");
    run(Command::new("umoci")
        .arg("unpack")
        .arg("--image")
        .arg(format!("{}:t", layout.display()))
        .arg(&bundle));
    bundle.join("rootfs")
}

/// Runs `e2fsck` with `args` on `image`: its exit code and everything it printed.
fn e2fsck(args: &str, image: &Path) -> (Option<i32>, String) {
    // e2fsck compares the superblock's write time with the clock; a clock stepped back between
    // writing and checking (seen on these VMs) would be reported as a fault of the image.
    // `broken_system_clock` turns off only those time checks.
    static CONF: std::sync::OnceLock<std::path::PathBuf> = std::sync::OnceLock::new();
    let conf = CONF.get_or_init(|| {
        let p = Path::new(env!("CARGO_TARGET_TMPDIR"))
            .join(format!("e2fsck-{}.conf", std::process::id()));
        std::fs::write(&p, "[options]\n\tbroken_system_clock = 1\n").expect("e2fsck.conf");
        p
    });
    let out = Command::new("e2fsck")
        .env("E2FSCK_CONFIG", conf)
        .arg(args)
        .arg(image)
        .output()
        .expect("run e2fsck");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code(), text)
}

/// The lines of e2fsck's output that are not its banner, pass headers or summary.
fn complaints(text: &str) -> Vec<&str> {
    text.lines()
        .filter(|line| {
            !(line.starts_with("Pass ")
                || line.starts_with("e2fsck ")
                || line.contains(" files (")
                || line.trim().is_empty())
        })
        .collect()
}

/// `e2fsck -fn` must find nothing to fix.
pub fn e2fsck_clean(image: &Path) {
    let (code, text) = e2fsck("-fn", image);
    assert_eq!(code, Some(0), "e2fsck -fn {}:\n{text}", image.display());
    // Exit status 0 must also mean no complaint was printed.
    let found = complaints(&text);
    assert!(found.is_empty(), "e2fsck complained: {found:?}\n{text}");
}

/// The oracle for images made without `/lost+found`: e2fsck finds nothing wrong but the
/// missing directory, and nothing else would change in a repair.
///
/// - `e2fsck -fn` (read-only) on the image: clean. e2fsprogs 1.42.9 and later skip the
///   lost+found check in read-only mode; before that (a flag compared with the wrong field,
///   e2fsprogs commit e9a8c0c2) it printed "/lost+found not found.  Create? no" and exited 4,
///   so exactly that complaint is accepted as well.
/// - `e2fsck -fy` (repairing) on a copy: exit 1 with exactly one complaint, "/lost+found not
///   found.  Create? yes", and then the copy checks clean. This is what proves that nothing
///   but the directory is missing: a read-only run never looks for it.
pub fn e2fsck_clean_but_lost_found(image: &Path) {
    let (code, text) = e2fsck("-fn", image);
    let found = complaints(&text);
    let ok = match code {
        Some(0) => found.is_empty(),
        Some(4) => found == ["/lost+found not found.  Create? no"],
        _ => false,
    };
    assert!(ok, "e2fsck -fn {} ({code:?}):\n{text}", image.display());

    let copy = image.with_file_name(format!(
        "{}.fsck-copy",
        image.file_name().expect("name").to_string_lossy()
    ));
    let st = Command::new("cp")
        .arg("--sparse=always")
        .arg(image)
        .arg(&copy)
        .status()
        .expect("cp");
    assert!(st.success(), "copy {}", image.display());
    let (code, text) = e2fsck("-fy", &copy);
    let found: Vec<&str> = complaints(&text)
        .into_iter()
        .filter(|l| !l.contains("***** FILE SYSTEM WAS MODIFIED *****"))
        .collect();
    assert_eq!(code, Some(1), "e2fsck -fy of a copy:\n{text}");
    assert_eq!(
        found,
        ["/lost+found not found.  Create? yes"],
        "e2fsck -fy of a copy:\n{text}"
    );
    e2fsck_clean(&copy);
    std::fs::remove_file(&copy).expect("remove the copy");
}

/// The names `debugfs` lists in the image's directory `dir` (`.` and `..` excluded): e2fsprogs'
/// own reading of the tree, no kernel involved.
pub fn debugfs_ls(image: &Path, dir: &str) -> Vec<String> {
    let out = Command::new("debugfs")
        .args(["-R", &format!("ls -p {dir}")])
        .arg(image)
        .output()
        .expect("debugfs");
    assert!(out.status.success(), "debugfs ls {dir}");
    // `ls -p` prints one `/ino/mode/uid/gid/name/size/` line per entry.
    let mut names: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split('/').nth(5).map(str::to_string))
        .filter(|n| !n.is_empty() && n != "." && n != "..")
        .collect();
    names.sort();
    names
}

/// A loop mount, undone on drop.
pub struct Mount {
    pub dir: PathBuf,
}

impl Mount {
    pub fn new(image: &Path, at: &Path, read_only: bool) -> Mount {
        std::fs::create_dir_all(at).expect("mountpoint");
        let opts = if read_only { "loop,ro" } else { "loop" };
        run(Command::new("mount").arg("-o").arg(opts).arg(image).arg(at));
        Mount {
            dir: at.to_path_buf(),
        }
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.dir).status();
    }
}

/// What we compare about one path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Info {
    pub kind: &'static str,
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub size: u64,
    pub content: Option<String>,
    pub target: Option<String>,
    pub rdev: u64,
    pub mtime: Option<(i64, i64)>,
    pub xattrs: Vec<(String, Vec<u8>)>,
    /// First path (in sorted order) with the same inode: hard-link identity.
    pub link_group: Option<String>,
}

/// Every path below `root` (lost+found excluded), with what we compare.
pub fn snapshot(root: &Path, with_dir_mtimes: bool) -> BTreeMap<String, Info> {
    let mut out = BTreeMap::new();
    let mut by_ino: BTreeMap<u64, String> = BTreeMap::new();
    let mut stack = vec![root.to_path_buf()];
    let mut paths = Vec::new();
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).expect("read_dir") {
            let p = e.expect("entry").path();
            let rel = p
                .strip_prefix(root)
                .expect("rel")
                .to_string_lossy()
                .into_owned();
            if rel == "lost+found" {
                continue;
            }
            let md = std::fs::symlink_metadata(&p).expect("lstat");
            if md.is_dir() {
                stack.push(p.clone());
            }
            paths.push((rel, p));
        }
    }
    paths.sort();
    for (rel, p) in paths {
        let md = std::fs::symlink_metadata(&p).expect("lstat");
        let ft = md.file_type();
        let kind = if ft.is_dir() {
            "dir"
        } else if ft.is_file() {
            "file"
        } else if ft.is_symlink() {
            "symlink"
        } else if ft.is_char_device() {
            "char"
        } else if ft.is_block_device() {
            "block"
        } else if ft.is_fifo() {
            "fifo"
        } else {
            "socket"
        };
        let link_group = if ft.is_file() && md.nlink() > 1 {
            Some(
                by_ino
                    .entry(md.ino())
                    .or_insert_with(|| rel.clone())
                    .clone(),
            )
        } else {
            None
        };
        let mut xattrs: Vec<(String, Vec<u8>)> = xattr::list(&p)
            .map(|names| {
                names
                    .filter_map(|n| {
                        let v = xattr::get(&p, &n).ok().flatten()?;
                        Some((n.to_string_lossy().into_owned(), v))
                    })
                    .collect()
            })
            .unwrap_or_default();
        xattrs.sort();
        let info = Info {
            kind,
            mode: md.mode() & 0o7777,
            uid: md.uid(),
            gid: md.gid(),
            size: if ft.is_file() { md.size() } else { 0 },
            content: ft
                .is_file()
                .then(|| sha256_hex(&std::fs::read(&p).expect("read"))),
            target: ft.is_symlink().then(|| {
                std::fs::read_link(&p)
                    .expect("readlink")
                    .to_string_lossy()
                    .into_owned()
            }),
            rdev: md.rdev(),
            mtime: (!ft.is_dir() || with_dir_mtimes).then(|| (md.mtime(), md.mtime_nsec())),
            xattrs,
            link_group,
        };
        out.insert(rel, info);
    }
    out
}

/// Asserts two snapshots are equal, printing the first differences.
pub fn assert_same(ours: &BTreeMap<String, Info>, reference: &BTreeMap<String, Info>) {
    let mut diffs = Vec::new();
    for (k, v) in reference {
        match ours.get(k) {
            None => diffs.push(format!("missing in image: {k}")),
            Some(o) if o != v => {
                diffs.push(format!("differs: {k}\n  image: {o:?}\n  ref:   {v:?}"))
            }
            _ => {}
        }
    }
    for k in ours.keys() {
        if !reference.contains_key(k) {
            diffs.push(format!("extra in image: {k}"));
        }
    }
    assert!(
        diffs.is_empty(),
        "{} differences:\n{}",
        diffs.len(),
        diffs
            .iter()
            .take(20)
            .cloned()
            .collect::<Vec<_>>()
            .join("\n")
    );
}

/// Builds the image with our library, checks it with e2fsck, mounts it and compares it with
/// umoci's unpack of the same layers. Without `opts.lost_found`, the root must also hold
/// exactly umoci's names, as the kernel and debugfs list them.
pub fn check_against_umoci(
    layers: &[Vec<u8>],
    opts: &ext4::FormatOptions,
    dir_mtimes: bool,
) -> ext4::Summary {
    let tmp = tempfile::tempdir().expect("tempdir");
    let paths = write_layers(tmp.path(), layers);
    let image = tmp.path().join("rootfs.ext4");
    let summary = ext4::build_from_layers(&paths, &image, opts).expect("build image");
    if opts.lost_found {
        e2fsck_clean(&image);
    } else {
        e2fsck_clean_but_lost_found(&image);
    }
    let reference = umoci_reference(tmp.path(), layers);
    let m = Mount::new(&image, &tmp.path().join("mnt"), true);
    if !opts.lost_found {
        let names = |dir: &Path| {
            let mut v: Vec<String> = std::fs::read_dir(dir)
                .expect("read_dir")
                .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
                .collect();
            v.sort();
            v
        };
        let theirs = names(&reference);
        assert_eq!(
            names(&m.dir),
            theirs,
            "root entries, as the kernel lists them"
        );
        assert_eq!(
            debugfs_ls(&image, "/"),
            theirs,
            "root entries, as debugfs lists them"
        );
    }
    let ours = snapshot(&m.dir, dir_mtimes);
    let theirs = snapshot(&reference, dir_mtimes);
    assert_same(&ours, &theirs);
    summary
}
