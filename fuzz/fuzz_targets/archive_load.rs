//! `image load` of hostile archives: structured tars of OCI-layout and docker-archive members
//! (odd and climbing names, links, blobs named by their own digest or another's, index and
//! manifests that reference them or not), loaded into a store.
//!
//! Must never panic; a refused archive leaves the store as it was (no name, no blob, no temp
//! file); a loaded one names only images whose every blob is present; and nothing is ever
//! written beside the store.
#![no_main]

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use sha2::{Digest as _, Sha256};

#[derive(Debug, Arbitrary)]
enum Name {
    OciLayout,
    Index,
    DockerManifest,
    Repositories,
    /// `blobs/sha256/<digest of its own data>`.
    Blob,
    /// `blobs/sha256/<digest of entry N's data>`: a blob that does not match its name.
    BlobOf(u8),
    Fixed(u8),
}

const FIXED: [&str; 10] = [
    "../escape",
    "/abs",
    "blobs/../../escape",
    "blobs",
    "blobs/sha256",
    "./index.json",
    "blobs/sha256/../../../x",
    "layer.tar",
    "abc/layer.tar",
    "blobs/sha256/short",
];

#[derive(Debug, Arbitrary)]
enum Kind {
    File,
    Dir,
    Symlink(u8),
    Hardlink(u8),
}

#[derive(Debug, Arbitrary)]
enum Data {
    Raw(Vec<u8>),
    /// An OCI index pointing at the blobs of these entries as manifests.
    IndexOf(Vec<u8>),
    /// An image manifest: config and layers from these entries.
    ManifestOf(u8, Vec<u8>),
    /// A docker `manifest.json` naming these entries' paths as config and layers.
    DockerOf(u8, Vec<u8>),
}

#[derive(Debug, Arbitrary)]
struct Entry {
    name: Name,
    kind: Kind,
    data: Data,
}

fn hex(d: &[u8]) -> String {
    let mut h = Sha256::new();
    h.update(d);
    h.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

/// Each entry's bytes, resolved in two rounds so documents can point at raw blobs.
fn contents(entries: &[Entry]) -> Vec<Vec<u8>> {
    let raw: Vec<Vec<u8>> = entries
        .iter()
        .map(|e| match &e.data {
            Data::Raw(d) => d.clone(),
            _ => Vec::new(),
        })
        .collect();
    let pick = |i: u8| -> &Vec<u8> { &raw[i as usize % raw.len()] };
    let desc = |d: &[u8], media: &str| serde_json::json!({"mediaType": media, "digest": format!("sha256:{}", hex(d)), "size": d.len()});
    entries
        .iter()
        .zip(&raw)
        .map(|(e, r)| match &e.data {
            Data::Raw(_) => r.clone(),
            Data::IndexOf(list) => serde_json::to_vec(&serde_json::json!({
                "schemaVersion": 2,
                "manifests": list.iter().map(|&i| {
                    let mut d = desc(pick(i), "application/vnd.oci.image.manifest.v1+json");
                    d["annotations"] = serde_json::json!({"org.opencontainers.image.ref.name": format!("fuzz:{i}")});
                    d
                }).collect::<Vec<_>>(),
            }))
            .unwrap(),
            Data::ManifestOf(config, layers) => serde_json::to_vec(&serde_json::json!({
                "schemaVersion": 2,
                "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "config": desc(pick(*config), "application/vnd.oci.image.config.v1+json"),
                "layers": layers.iter().map(|&i| desc(pick(i), "application/vnd.oci.image.layer.v1.tar")).collect::<Vec<_>>(),
            }))
            .unwrap(),
            Data::DockerOf(config, layers) => serde_json::to_vec(&serde_json::json!([{
                "Config": format!("blobs/sha256/{}", hex(pick(*config))),
                "RepoTags": ["fuzz:docker"],
                "Layers": layers.iter().map(|&i| format!("blobs/sha256/{}", hex(pick(i)))).collect::<Vec<_>>(),
            }]))
            .unwrap(),
        })
        .collect()
}

fn archive(entries: &[Entry]) -> Vec<u8> {
    let data = contents(entries);
    let names: Vec<String> = entries
        .iter()
        .zip(&data)
        .map(|(e, d)| match e.name {
            Name::OciLayout => "oci-layout".into(),
            Name::Index => "index.json".into(),
            Name::DockerManifest => "manifest.json".into(),
            Name::Repositories => "repositories".into(),
            Name::Blob => format!("blobs/sha256/{}", hex(d)),
            Name::BlobOf(i) => format!("blobs/sha256/{}", hex(&data[i as usize % data.len()])),
            Name::Fixed(i) => FIXED[i as usize % FIXED.len()].into(),
        })
        .collect();
    let mut b = tar::Builder::new(Vec::new());
    for ((e, d), name) in entries.iter().zip(&data).zip(&names) {
        let mut h = tar::Header::new_gnu();
        h.set_mode(0o644);
        h.set_mtime(1_700_000_000);
        h.set_size(0);
        let target = |i: u8| names[i as usize % names.len()].clone();
        let ok = match &e.kind {
            Kind::File => {
                h.set_entry_type(tar::EntryType::Regular);
                h.set_size(d.len() as u64);
                b.append_data(&mut h, name, d.as_slice())
            }
            Kind::Dir => {
                h.set_entry_type(tar::EntryType::Directory);
                b.append_data(&mut h, name, std::io::empty())
            }
            Kind::Symlink(i) => {
                h.set_entry_type(tar::EntryType::Symlink);
                b.append_link(&mut h, name, target(*i))
            }
            Kind::Hardlink(i) => {
                h.set_entry_type(tar::EntryType::Link);
                b.append_link(&mut h, name, target(*i))
            }
        };
        // Names the tar crate itself refuses to write (absolute, "..") go in raw.
        if ok.is_err() {
            let mut h = tar::Header::new_old();
            let bytes = name.as_bytes();
            let n = bytes.len().min(99);
            h.as_old_mut().name[..n].copy_from_slice(&bytes[..n]);
            h.set_mode(0o644);
            h.set_size(d.len() as u64);
            h.set_entry_type(tar::EntryType::Regular);
            h.set_cksum();
            let _ = b.append(&h, d.as_slice());
        }
    }
    b.into_inner().unwrap_or_default()
}

/// A directory on tmpfs when there is one (each load fsyncs), holding the store and the
/// archive; nothing else may ever appear in it.
fn work() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let base = if Path::new("/dev/shm").is_dir() {
            PathBuf::from("/dev/shm")
        } else {
            std::env::temp_dir()
        };
        let dir = base.join(format!("archive-fuzz-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("state")).unwrap();
        dir
    })
}

fn listing(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

fuzz_target!(|entries: Vec<Entry>| {
    if entries.is_empty() || entries.len() > 12 {
        return;
    }
    let dir = work();
    let state = dir.join("state");
    let input = dir.join("in.tar");
    std::fs::write(&input, archive(&entries)).unwrap();
    let store = oci::Store::open(&state).unwrap();
    let blobs = state.join("content/blobs/sha256");
    let outside = listing(dir);
    // Lock files are made on first use and stay: not content.
    let unlocked = |dir: &Path| -> Vec<String> {
        listing(dir)
            .into_iter()
            .filter(|n| !n.ends_with(".lock"))
            .collect()
    };
    let beside = unlocked(&state);

    match oci::load(&store, &input) {
        Ok(refs) => {
            for r in &refs {
                // Every name leads to an image whose blobs are all there.
                let image = store.image(r).expect("a loaded name resolves");
                assert!(store.has_blob(image.manifest_digest()));
                for l in &image.manifest.layers {
                    assert!(store.has_blob(&l.digest), "{r}: layer {} missing", l.digest);
                }
                assert!(store.has_blob(&image.manifest.config.digest));
            }
        }
        Err(_) => {
            assert!(
                store.list().unwrap().is_empty(),
                "a refused archive left a name"
            );
            assert!(listing(&blobs).is_empty(), "a refused archive left blobs");
        }
    }
    assert!(
        listing(&state.join("content-ingest")).is_empty(),
        "temp files left"
    );
    assert_eq!(listing(dir), outside, "written beside the store");
    assert_eq!(unlocked(&state), beside, "written in the state dir");

    // Back to an empty store for the next input.
    for e in store.list().unwrap() {
        store.remove_ref(&e.reference).unwrap();
    }
    for b in listing(&blobs) {
        std::fs::remove_file(blobs.join(b)).unwrap();
    }
});
