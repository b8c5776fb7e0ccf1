//! Image → (config, cached rootfs) for `run`/`create`.

use std::path::PathBuf;

use anyhow::Context;

use runtime::spec::ImageConfig;

use crate::global::GlobalOptions;

/// Smallest size of an image's cached ext4 rootfs (sparse on the host).
const ROOTFS_MIN_SIZE: u64 = 8 << 30;

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
            // The cached image is the base of every container's writable disk: give it room
            // to write (docker's writable layer is bounded only by the host's disk). The file
            // is sparse, so the room costs nothing until a container writes.
            let opts = ext4::FormatOptions {
                journal: true,
                min_size: Some(ROOTFS_MIN_SIZE),
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
