//! Test images, built here from Debian's busybox-static (`/bin/busybox`), written as OCI image
//! layouts that skopeo can push into a [`crate::Registry`].
//!
//! [`busybox`] has three gzip layers exercising what layer appliers must get right:
//! 1. base: `/bin/busybox` plus applet symlinks, `/etc/passwd`, `/tmp` 1777, `/root` 0700;
//! 2. `/data` owned 1000:1000 mode 0750 with a file, a hard link to it and a relative symlink,
//!    `/old/{x,y}`, `/etc/motd`, a setuid file;
//! 3. a whiteout of `/etc/motd`, an opaque `/old` (only `/old/z` remains), `/data/b.txt`.
//!
//! Its config sets Env, Cmd, WorkingDir, User, ExposedPorts, Volumes and Labels (see
//! [`busybox`]). [`multi_arch`] is an index with an amd64 and an arm64 manifest.

use std::io::Write;
use std::path::{Path, PathBuf};

use serde_json::{json, Value};

use crate::sha256;

/// A layer being built as an uncompressed tar.
pub struct LayerBuilder {
    tar: tar::Builder<Vec<u8>>,
}

/// A finished layer.
#[derive(Clone)]
pub struct Layer {
    /// The uncompressed tar.
    pub tar: Vec<u8>,
}

impl Layer {
    /// gzip of the tar (what goes into the image).
    pub fn gzip(&self) -> Vec<u8> {
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(&self.tar).expect("gzip");
        gz.finish().expect("gzip")
    }

    /// Digest of the uncompressed tar (the config's diff_id).
    pub fn diff_id(&self) -> String {
        sha256(&self.tar)
    }
}

impl Default for LayerBuilder {
    fn default() -> Self {
        Self::new()
    }
}

impl LayerBuilder {
    /// An empty layer.
    pub fn new() -> Self {
        let mut tar = tar::Builder::new(Vec::new());
        tar.mode(tar::HeaderMode::Complete);
        LayerBuilder { tar }
    }

    fn header(kind: tar::EntryType, mode: u32, uid: u64, gid: u64, size: u64) -> tar::Header {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(kind);
        h.set_mode(mode);
        h.set_uid(uid);
        h.set_gid(gid);
        h.set_size(size);
        h.set_mtime(1_700_000_000);
        h
    }

    /// A directory.
    pub fn dir(mut self, path: &str, mode: u32, uid: u64, gid: u64) -> Self {
        let mut h = Self::header(tar::EntryType::Directory, mode, uid, gid, 0);
        self.tar
            .append_data(&mut h, path, std::io::empty())
            .expect("tar dir");
        self
    }

    /// A regular file.
    pub fn file(mut self, path: &str, data: &[u8], mode: u32, uid: u64, gid: u64) -> Self {
        let mut h = Self::header(tar::EntryType::Regular, mode, uid, gid, data.len() as u64);
        self.tar.append_data(&mut h, path, data).expect("tar file");
        self
    }

    /// A symbolic link.
    pub fn symlink(mut self, path: &str, target: &str) -> Self {
        let mut h = Self::header(tar::EntryType::Symlink, 0o777, 0, 0, 0);
        self.tar
            .append_link(&mut h, path, target)
            .expect("tar symlink");
        self
    }

    /// A hard link to an earlier entry of this layer.
    pub fn hardlink(mut self, path: &str, target: &str) -> Self {
        let mut h = Self::header(tar::EntryType::Link, 0o644, 0, 0, 0);
        self.tar
            .append_link(&mut h, path, target)
            .expect("tar hardlink");
        self
    }

    /// A whiteout: deletes `path` from lower layers (`dir/.wh.name`).
    pub fn whiteout(self, path: &str) -> Self {
        let p = Path::new(path);
        let name = p.file_name().expect("whiteout name").to_string_lossy();
        let wh = p.with_file_name(format!(".wh.{name}"));
        self.file(&wh.to_string_lossy(), b"", 0o644, 0, 0)
    }

    /// An opaque directory marker: hides everything lower layers put in `dir`.
    pub fn opaque(self, dir: &str) -> Self {
        self.file(
            &format!("{}/.wh..wh..opq", dir.trim_end_matches('/')),
            b"",
            0o644,
            0,
            0,
        )
    }

    /// The finished layer.
    pub fn finish(self) -> Layer {
        Layer {
            tar: self.tar.into_inner().expect("tar finish"),
        }
    }
}

/// An OCI layout on disk, as pushed by skopeo.
#[derive(Debug, Clone)]
pub struct TestImage {
    /// The layout directory.
    pub layout: PathBuf,
    /// Its name in the layout (`org.opencontainers.image.ref.name`).
    pub tag: String,
    /// Digest of the top manifest or index.
    pub digest: String,
    /// Digests of the platform manifests (one for a single-platform image).
    pub manifests: Vec<String>,
    /// Digests of the layers of the first (amd64) manifest, base first.
    pub layers: Vec<String>,
    /// Digest of the first manifest's config.
    pub config: String,
}

impl TestImage {
    /// Bytes of a blob of the layout.
    pub fn blob(&self, digest: &str) -> Vec<u8> {
        let hex = digest.trim_start_matches("sha256:");
        std::fs::read(self.layout.join("blobs/sha256").join(hex)).expect("layout blob")
    }
}

/// Writes blobs into an OCI layout.
pub struct LayoutWriter {
    dir: PathBuf,
}

impl LayoutWriter {
    /// Creates `dir` as an empty layout.
    pub fn new(dir: &Path) -> Self {
        std::fs::create_dir_all(dir.join("blobs/sha256")).expect("layout dir");
        std::fs::write(dir.join("oci-layout"), br#"{"imageLayoutVersion":"1.0.0"}"#)
            .expect("oci-layout");
        LayoutWriter {
            dir: dir.to_path_buf(),
        }
    }

    /// Stores a blob; returns its descriptor.
    pub fn blob(&self, media_type: &str, data: &[u8]) -> Value {
        let digest = sha256(data);
        let hex = digest.trim_start_matches("sha256:");
        std::fs::write(self.dir.join("blobs/sha256").join(hex), data).expect("write blob");
        json!({"mediaType": media_type, "digest": digest, "size": data.len()})
    }

    /// Stores config, gzip layers and the manifest; returns the manifest's descriptor.
    pub fn image(&self, config: &Value, layers: &[Layer]) -> Value {
        let layer_descs: Vec<Value> = layers
            .iter()
            .map(|l| self.blob("application/vnd.oci.image.layer.v1.tar+gzip", &l.gzip()))
            .collect();
        let config = self.blob(
            "application/vnd.oci.image.config.v1+json",
            &serde_json::to_vec(config).expect("config json"),
        );
        let manifest = json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": config,
            "layers": layer_descs,
        });
        self.blob(
            "application/vnd.oci.image.manifest.v1+json",
            &serde_json::to_vec(&manifest).expect("manifest json"),
        )
    }

    /// Writes `index.json` naming `top` as `tag`.
    pub fn finish(self, tag: &str, mut top: Value) -> PathBuf {
        top["annotations"] = json!({"org.opencontainers.image.ref.name": tag});
        let index = json!({"schemaVersion": 2, "manifests": [top]});
        std::fs::write(
            self.dir.join("index.json"),
            serde_json::to_vec(&index).expect("index"),
        )
        .expect("write index.json");
        self.dir
    }
}

/// The three layers of the busybox test image.
pub fn busybox_layers() -> Vec<Layer> {
    let busybox = std::fs::read("/bin/busybox").expect("/bin/busybox (Debian busybox-static)");
    let mut base = LayerBuilder::new()
        .dir("bin", 0o755, 0, 0)
        .dir("etc", 0o755, 0, 0)
        .dir("tmp", 0o1777, 0, 0)
        .dir("root", 0o700, 0, 0)
        .file("bin/busybox", &busybox, 0o755, 0, 0);
    for applet in [
        "sh", "ls", "cat", "echo", "id", "stat", "sleep", "true", "false", "env",
    ] {
        base = base.symlink(&format!("bin/{applet}"), "busybox");
    }
    let base = base
        .file(
            "etc/passwd",
            b"root:x:0:0:root:/root:/bin/sh\nuser:x:1000:1000:user:/data:/bin/sh\n",
            0o644,
            0,
            0,
        )
        .file("etc/group", b"root:x:0:\nuser:x:1000:\n", 0o644, 0, 0)
        .finish();
    let second = LayerBuilder::new()
        .dir("data", 0o750, 1000, 1000)
        .file("data/a.txt", b"hello from layer 2\n", 0o640, 1000, 1000)
        .hardlink("data/a-link", "data/a.txt")
        .symlink("data/rel", "a.txt")
        .dir("old", 0o755, 0, 0)
        .file("old/x", b"x\n", 0o644, 0, 0)
        .file("old/y", b"y\n", 0o644, 0, 0)
        .file("etc/motd", b"to be whited out\n", 0o644, 0, 0)
        .file("bin/suid", b"#!/bin/sh\n", 0o4755, 0, 0)
        .finish();
    let third = LayerBuilder::new()
        .whiteout("etc/motd")
        .dir("old", 0o755, 0, 0)
        .opaque("old")
        .file("old/z", b"z\n", 0o644, 0, 0)
        .file("data/b.txt", b"layer 3\n", 0o600, 1000, 1000)
        .finish();
    vec![base, second, third]
}

/// The busybox image's config for an architecture.
pub fn busybox_config(arch: &str, layers: &[Layer]) -> Value {
    json!({
        "created": "2026-01-01T00:00:00Z",
        "architecture": arch,
        "os": "linux",
        "config": {
            "Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "TESTVAR=hello"],
            "Cmd": ["/bin/sh"],
            "Entrypoint": null,
            "WorkingDir": "/data",
            "User": "1000:1000",
            "ExposedPorts": {"8080/tcp": {}},
            "Volumes": {"/data": {}},
            "Labels": {"org.example.test": "busybox"},
        },
        "rootfs": {"type": "layers", "diff_ids": layers.iter().map(Layer::diff_id).collect::<Vec<_>>()},
        "history": [{"created": "2026-01-01T00:00:00Z", "created_by": "container test suite"}],
    })
}

/// The single-platform (amd64) busybox image as an OCI layout under `dir`.
pub fn busybox(dir: &Path) -> TestImage {
    let layers = busybox_layers();
    let w = LayoutWriter::new(dir);
    let manifest = w.image(&busybox_config("amd64", &layers), &layers);
    let digest = manifest["digest"].as_str().expect("digest").to_string();
    let layout = w.finish("latest", manifest);
    describe(layout, "latest", digest.clone(), vec![digest])
}

/// An index with an amd64 and an arm64 manifest (same layers, different configs) under `dir`.
pub fn multi_arch(dir: &Path) -> TestImage {
    let layers = busybox_layers();
    let w = LayoutWriter::new(dir);
    let mut amd = w.image(&busybox_config("amd64", &layers), &layers);
    let mut arm = w.image(&busybox_config("arm64", &layers), &layers);
    amd["platform"] = json!({"architecture": "amd64", "os": "linux"});
    arm["platform"] = json!({"architecture": "arm64", "os": "linux", "variant": "v8"});
    let manifests = vec![
        amd["digest"].as_str().expect("digest").to_string(),
        arm["digest"].as_str().expect("digest").to_string(),
    ];
    let index = json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [amd, arm],
    });
    let top = w.blob(
        "application/vnd.oci.image.index.v1+json",
        &serde_json::to_vec(&index).expect("index json"),
    );
    let digest = top["digest"].as_str().expect("digest").to_string();
    let layout = w.finish("latest", top);
    describe(layout, "latest", digest, manifests)
}

fn describe(layout: PathBuf, tag: &str, digest: String, manifests: Vec<String>) -> TestImage {
    let hex = manifests[0].trim_start_matches("sha256:").to_string();
    let m: Value = serde_json::from_slice(
        &std::fs::read(layout.join("blobs/sha256").join(hex)).expect("manifest"),
    )
    .expect("manifest json");
    let layers = m["layers"]
        .as_array()
        .expect("layers")
        .iter()
        .map(|l| l["digest"].as_str().expect("digest").to_string())
        .collect();
    let config = m["config"]["digest"].as_str().expect("config").to_string();
    TestImage {
        layout,
        tag: tag.to_string(),
        digest,
        manifests,
        layers,
        config,
    }
}

/// Pushes a layout into a registry with skopeo (an outside tool), all platforms, digests kept.
pub fn push_with_skopeo(image: &TestImage, reference: &str) {
    crate::tool(
        "skopeo",
        &[
            "copy",
            "--quiet",
            "--all",
            "--preserve-digests",
            "--dest-tls-verify=false",
            &format!("oci:{}:{}", image.layout.display(), image.tag),
            &format!("docker://{reference}"),
        ],
    );
}

/// Writes a busybox root filesystem tarball (for `image import`) to `path`.
pub fn rootfs_tarball(path: &Path) {
    let layers = busybox_layers();
    std::fs::write(path, &layers[0].tar).expect("write rootfs tar");
}

/// Writes the image as an OCI-layout tar named `name` (for `container image load -i`, no
/// registry needed), with skopeo; all platforms of an index are kept.
pub fn to_oci_archive(image: &TestImage, path: &Path, name: &str) {
    crate::tool(
        "skopeo",
        &[
            "copy",
            "--quiet",
            "--all",
            "--preserve-digests",
            &format!("oci:{}:{}", image.layout.display(), image.tag),
            &format!("oci-archive:{}:{}", path.display(), name),
        ],
    );
}

/// Writes the (single-platform) image as a docker-archive tar tagged `name`, with skopeo.
pub fn to_docker_archive(image: &TestImage, path: &Path, name: &str) {
    crate::tool(
        "skopeo",
        &[
            "copy",
            "--quiet",
            &format!("oci:{}:{}", image.layout.display(), image.tag),
            &format!("docker-archive:{}:{}", path.display(), name),
        ],
    );
}

/// The busybox test layers plus one layer linking more busybox `applets` into `/bin` (and
/// whatever `extra` adds to that layer).
pub fn busybox_with(
    applets: &[&str],
    extra: impl FnOnce(LayerBuilder) -> LayerBuilder,
) -> Vec<Layer> {
    let mut layers = busybox_layers();
    let mut top = LayerBuilder::new();
    for applet in applets {
        top = top.symlink(&format!("bin/{applet}"), "busybox");
    }
    layers.push(extra(top).finish());
    layers
}

/// `layer` plus the host's `programs` (absolute paths) and every shared library they load (as
/// `ldd` lists them, symlinks resolved, at the paths the loader looks them up by): dynamically
/// linked tools of the host, runnable in a test image without a distribution.
pub fn with_host_programs(mut layer: LayerBuilder, programs: &[&str]) -> LayerBuilder {
    let mut files = std::collections::BTreeSet::new();
    for program in programs {
        files.insert(program.to_string());
        let out = std::process::Command::new("ldd")
            .arg(program)
            .output()
            .expect("run ldd");
        for line in String::from_utf8_lossy(&out.stdout).lines() {
            // "libc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x…)" or "/lib64/ld-linux… (0x…)"
            let path = line
                .split("=>")
                .last()
                .and_then(|r| r.split_whitespace().next())
                .filter(|p| p.starts_with('/'));
            if let Some(p) = path {
                files.insert(p.to_string());
            }
        }
    }
    let mut dirs = std::collections::BTreeSet::new();
    for file in &files {
        let rel = file.trim_start_matches('/');
        let mut dir = std::path::Path::new(rel).parent();
        while let Some(d) = dir.filter(|d| !d.as_os_str().is_empty()) {
            dirs.insert(d.to_string_lossy().into_owned());
            dir = d.parent();
        }
    }
    for d in &dirs {
        layer = layer.dir(d, 0o755, 0, 0);
    }
    for file in &files {
        let data = std::fs::read(file).unwrap_or_else(|e| panic!("read {file}: {e}"));
        layer = layer.file(file.trim_start_matches('/'), &data, 0o755, 0, 0);
    }
    layer
}

/// An OCI layout under `dir` holding one amd64 image of `layers` whose config's `config`
/// object is `config`, tagged `reference`.
pub fn layout(dir: &Path, reference: &str, layers: &[Layer], config: Value) -> PathBuf {
    let config = json!({
        "architecture": "amd64",
        "os": "linux",
        "config": config,
        "rootfs": {"type": "layers", "diff_ids": layers.iter().map(Layer::diff_id).collect::<Vec<_>>()},
    });
    let w = LayoutWriter::new(dir);
    let manifest = w.image(&config, layers);
    w.finish(reference, manifest)
}

/// [`layout`] under `dir/layout`, archived as `dir/image.tar` for `image load -i`.
pub fn archive(dir: &Path, reference: &str, layers: &[Layer], config: Value) -> PathBuf {
    let layout = layout(&dir.join("layout"), reference, layers, config);
    let tar = dir.join("image.tar");
    crate::tool(
        "tar",
        &[
            "-C",
            layout.to_str().unwrap(),
            "-cf",
            tar.to_str().unwrap(),
            ".",
        ],
    );
    tar
}
