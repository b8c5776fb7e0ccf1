//! Image → (config, cached rootfs) for `run`/`create`, and where the guest init binary is.

use std::path::PathBuf;

use anyhow::Context;

use runtime::spec::ImageConfig;

use crate::global::GlobalOptions;

/// An image ready to become a container.
#[derive(Debug, Clone)]
pub struct ResolvedImage {
    /// Normalised reference.
    pub reference: String,
    /// Manifest digest.
    pub digest: String,
    /// Its config.
    pub config: ImageConfig,
    /// The cached ext4 rootfs.
    pub rootfs: PathBuf,
    /// The image's `VOLUME` paths.
    pub volumes: Vec<String>,
}

/// Finds `reference` in the content store (pulling it if missing) and makes sure its rootfs is
/// in the cache (built once per manifest digest with our ext4 writer).
pub async fn resolve(global: &GlobalOptions, reference: &str) -> anyhow::Result<ResolvedImage> {
    let root = global.root_dir();
    let r = oci::Reference::parse(reference)
        .with_context(|| format!("invalid image reference {reference:?}"))?;
    let store = oci::Store::open(&root)?;
    let image = match store.image(&r) {
        Ok(i) => i,
        Err(oci::StoreError::NotFound(_)) => {
            let opts = oci::PullOptions {
                progress: crate::progress::Bars::for_terminal(false, "pulling"),
                ..Default::default()
            };
            oci::pull(&store, &r, &opts)
                .await
                .with_context(|| format!("image {r} is not in the store and cannot be pulled"))?
        }
        Err(e) => return Err(anyhow::Error::new(e).context(format!("image {r}"))),
    };
    let c = &image.config.config;
    let config = ImageConfig {
        env: c.env.clone(),
        entrypoint: c.entrypoint.clone().unwrap_or_default(),
        cmd: c.cmd.clone().unwrap_or_default(),
        working_dir: c.working_dir.clone().unwrap_or_default(),
        user: c.user.clone().unwrap_or_default(),
    };
    let digest = image.manifest_digest().to_string();
    let layers: Vec<PathBuf> = image
        .layers()
        .iter()
        .map(|l| store.blob_path(&l.digest))
        .collect();
    let cache = runtime::rootfs::RootfsCache::open(&root)?;
    let rootfs = tokio::task::block_in_place(|| {
        cache.ensure(&digest, |tmp| {
            let opts = ext4::FormatOptions {
                journal: true,
                ..Default::default()
            };
            ext4::build_from_layers(&layers, tmp, &opts).map(|_| ())
        })
    })
    .with_context(|| format!("image {r}"))?;
    Ok(ResolvedImage {
        reference: r.to_string(),
        digest,
        config,
        rootfs,
        volumes: c.volumes.keys().cloned().collect(),
    })
}

/// The static vminitd for the guest: $CONTAINER_VMINITD, else next to this executable, else
/// `<exe dir>/../x86_64-unknown-linux-gnu/{release,debug}/vminitd` (where setup.sh builds it).
/// Candidates found by search that are dynamically linked (a plain `cargo build` of the
/// workspace puts one next to us) are skipped: the guest has no libc to load them with.
pub fn vminitd_path() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("CONTAINER_VMINITD") {
        return Some(PathBuf::from(p));
    }
    let exe = std::env::current_exe().ok()?;
    let dir = exe.parent()?;
    let mut candidates = vec![dir.join("vminitd")];
    for profile in ["release", "debug"] {
        candidates.push(
            dir.join("..")
                .join("x86_64-unknown-linux-gnu")
                .join(profile)
                .join("vminitd"),
        );
    }
    candidates.into_iter().find(|p| is_static_elf(p))
}

/// Whether `path` is an ELF executable without a program interpreter (PT_INTERP), i.e. static.
fn is_static_elf(path: &std::path::Path) -> bool {
    let Ok(bytes) = std::fs::read(path) else {
        return false;
    };
    static_elf(&bytes)
}

fn static_elf(b: &[u8]) -> bool {
    const PT_INTERP: u32 = 3;
    let u16_at = |o: usize| {
        b.get(o..o + 2)
            .map(|s| u16::from_le_bytes([s[0], s[1]]) as usize)
    };
    let u32_at = |o: usize| {
        b.get(o..o + 4)
            .map(|s| u32::from_le_bytes([s[0], s[1], s[2], s[3]]))
    };
    let u64_at = |o: usize| {
        b.get(o..o + 8)
            .and_then(|s| s.try_into().ok())
            .map(u64::from_le_bytes)
    };
    // ELF64, little endian (x86_64 guests only).
    if b.get(..6) != Some(b"\x7fELF\x02\x01".as_slice()) {
        return false;
    }
    let (Some(phoff), Some(phentsize), Some(phnum)) = (u64_at(0x20), u16_at(0x36), u16_at(0x38))
    else {
        return false;
    };
    (0..phnum).all(|i| u32_at(phoff as usize + i * phentsize) != Some(PT_INTERP))
}

#[cfg(test)]
mod tests {
    #[test]
    fn static_binaries_are_told_from_dynamic_ones() {
        // This test binary is dynamically linked; /bin/busybox (busybox-static) is not.
        let me = std::fs::read(std::env::current_exe().unwrap()).unwrap();
        assert!(!super::static_elf(&me));
        let busybox = std::fs::read("/bin/busybox").expect("/bin/busybox (busybox-static)");
        assert!(super::static_elf(&busybox));
        assert!(!super::static_elf(b"#!/bin/sh\n"));
    }
}
