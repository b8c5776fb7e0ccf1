//! Image → what a container is made from: the image's config and its cached ext4 rootfs.
//! A missing image is pulled first; the rootfs is built once per manifest digest by our ext4
//! writer (see [`crate::rootfs`]).

use std::path::{Path, PathBuf};

use crate::rootfs::{RootfsCache, RootfsError};
use crate::spec::ImageConfig;

/// Smallest size of an image's cached ext4 rootfs. The cached image is the base of every
/// container's writable disk, so it needs room to write (docker's writable layer is bounded
/// only by the host's disk); the file is sparse, so the room costs nothing until written.
pub const ROOTFS_MIN_SIZE: u64 = 8 << 30;

/// Errors resolving an image.
#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    /// The reference does not parse.
    #[error("invalid image reference {reference:?}")]
    Reference {
        /// What the user gave.
        reference: String,
        /// Why it is invalid.
        #[source]
        source: oci::ReferenceError,
    },
    /// The content store cannot be opened.
    #[error("open the image store")]
    OpenStore(#[source] oci::StoreError),
    /// The image is missing and the pull failed.
    #[error("image {reference} is not in the store and cannot be pulled")]
    Pull {
        /// The normalised reference.
        reference: String,
        /// Why the pull failed (boxed: it is large).
        #[source]
        source: Box<oci::PullError>,
    },
    /// The image is not in the store (and is not to be pulled).
    #[error("image {0} is not in the store (pull, load or import it first)")]
    Missing(String),
    /// The store has the image but cannot read it.
    #[error("image {reference}")]
    Read {
        /// The normalised reference.
        reference: String,
        /// The store's error.
        #[source]
        source: oci::StoreError,
    },
    /// Its rootfs could not be built or cached.
    #[error("image {reference}")]
    Rootfs {
        /// The normalised reference.
        reference: String,
        /// The cache's error.
        #[source]
        source: RootfsError,
    },
}

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
    /// The image's `EXPOSE`d ports (`-P` publishes them).
    pub exposed_ports: Vec<(u16, net::ports::Protocol)>,
}

/// `ExposedPorts` keys (`80/tcp`, `53/udp`, `8080`) as ports; malformed ones are skipped, as
/// docker skips them.
fn exposed_ports<'a>(keys: impl Iterator<Item = &'a String>) -> Vec<(u16, net::ports::Protocol)> {
    keys.filter_map(|k| {
        let (port, proto) = k.split_once('/').unwrap_or((k, "tcp"));
        let proto = match proto {
            "tcp" => net::ports::Protocol::Tcp,
            "udp" => net::ports::Protocol::Udp,
            _ => return None,
        };
        port.parse::<u16>()
            .ok()
            .filter(|p| *p != 0)
            .map(|p| (p, proto))
    })
    .collect()
}

/// The content store under `root`, `reference` parsed, and the image if the store has it.
fn find(
    root: &Path,
    reference: &str,
) -> Result<(oci::Store, oci::Reference, Option<oci::Image>), ImageError> {
    let r = oci::Reference::parse(reference).map_err(|source| ImageError::Reference {
        reference: reference.to_string(),
        source,
    })?;
    let store = oci::Store::open(root).map_err(ImageError::OpenStore)?;
    match store.image(&r) {
        Ok(i) => Ok((store, r, Some(i))),
        Err(oci::StoreError::NotFound(_)) => Ok((store, r, None)),
        Err(source) => Err(ImageError::Read {
            reference: r.to_string(),
            source,
        }),
    }
}

/// The layer blob paths (lowest first) of `reference` in the content store under `root`; an
/// error naming the reference if it is not there (this never pulls).
pub fn layers(root: &Path, reference: &str) -> Result<Vec<PathBuf>, ImageError> {
    let (store, r, image) = find(root, reference)?;
    let image = image.ok_or_else(|| ImageError::Missing(r.to_string()))?;
    Ok(image
        .layers()
        .iter()
        .map(|l| store.blob_path(&l.digest))
        .collect())
}

/// Finds `reference` in the content store under `root` (pulling it with `pull` if missing)
/// and makes sure its rootfs is in the cache. Building blocks; call from a multi-threaded
/// runtime.
pub async fn resolve(
    root: &Path,
    reference: &str,
    pull: &oci::PullOptions,
) -> Result<ResolvedImage, ImageError> {
    let (store, r, image) = find(root, reference)?;
    let image = match image {
        Some(i) => i,
        None => oci::pull(&store, &r, pull)
            .await
            .map_err(|source| ImageError::Pull {
                reference: r.to_string(),
                source: Box::new(source),
            })?,
    };
    let c = &image.config.config;
    let config = ImageConfig {
        env: c.env.clone(),
        entrypoint: c.entrypoint.clone().unwrap_or_default(),
        cmd: c.cmd.clone().unwrap_or_default(),
        working_dir: c.working_dir.clone().unwrap_or_default(),
        user: c.user.clone().unwrap_or_default(),
        labels: c.labels.clone(),
        exposed_ports: c.exposed_ports.keys().cloned().collect(),
        stop_signal: c.stop_signal.clone().unwrap_or_default(),
    };
    let digest = image.manifest_digest().to_string();
    let layers: Vec<PathBuf> = image
        .layers()
        .iter()
        .map(|l| store.blob_path(&l.digest))
        .collect();
    let rootfs_err = |source| ImageError::Rootfs {
        reference: r.to_string(),
        source,
    };
    let cache = RootfsCache::open(root).map_err(rootfs_err)?;
    let rootfs = tokio::task::block_in_place(|| {
        cache.ensure(&digest, |tmp| {
            let opts = ext4::FormatOptions {
                journal: true,
                min_size: Some(ROOTFS_MIN_SIZE),
                ..Default::default()
            };
            ext4::build_from_layers(&layers, tmp, &opts).map(|_| ())
        })
    })
    .map_err(rootfs_err)?;
    Ok(ResolvedImage {
        reference: r.to_string(),
        digest,
        config,
        rootfs,
        volumes: c.volumes.keys().cloned().collect(),
        exposed_ports: exposed_ports(c.exposed_ports.keys()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use net::ports::Protocol;

    #[test]
    fn exposed_port_keys() {
        let keys: Vec<String> = ["80/tcp", "53/udp", "8080", "x/tcp", "1/sctp", "0/tcp"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        assert_eq!(
            exposed_ports(keys.iter()),
            [
                (80, Protocol::Tcp),
                (53, Protocol::Udp),
                (8080, Protocol::Tcp)
            ]
        );
    }
}
