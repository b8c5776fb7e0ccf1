//! Image → what a container is made from: the image's config and its cached ext4 rootfs.
//! A missing image is pulled first; the rootfs is built once per manifest digest by our ext4
//! writer (see [`crate::rootfs`]).

use std::path::{Path, PathBuf};

use crate::rootfs::{RootfsCache, RootfsError, IMAGE_ROOTFS_FORMAT};
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
    /// The image is missing (or to be pulled anyway) and the pull failed.
    #[error("cannot pull image {reference}")]
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
    /// The store has the image, but not for the platform asked for (and it is not to be
    /// pulled).
    #[error("image {reference} is not in the store for platform {platform} (pull it for {platform} first)")]
    MissingPlatform {
        /// The normalised reference.
        reference: String,
        /// The platform asked for.
        platform: String,
    },
    /// A platform other than the one our VMs run.
    #[error("platform {0} is not supported: containers run in linux/amd64 virtual machines")]
    UnsupportedPlatform(String),
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

/// When creating a container pulls its image (docker's `--pull`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum PullPolicy {
    /// Pull first every time; a failed pull fails the create even when the store has the
    /// image.
    Always,
    /// Pull only what the store lacks (for the platform asked for).
    #[default]
    Missing,
    /// Never pull: an image the store lacks is an error.
    Never,
}

impl std::str::FromStr for PullPolicy {
    type Err = String;

    fn from_str(s: &str) -> Result<PullPolicy, String> {
        match s {
            "always" => Ok(PullPolicy::Always),
            "missing" => Ok(PullPolicy::Missing),
            "never" => Ok(PullPolicy::Never),
            _ => Err(format!(
                "invalid pull policy {s:?}: use always, missing or never"
            )),
        }
    }
}

/// The platform our VMs run: the only one a container can be made for.
fn guest_platform() -> oci::Platform {
    oci::Platform {
        os: "linux".to_string(),
        architecture: "amd64".to_string(),
        ..Default::default()
    }
}

/// Refuses a platform our VMs cannot run (a `--platform` for anything but linux/amd64: there
/// is no emulation of other architectures).
pub fn check_platform(platform: &oci::Platform) -> Result<(), ImageError> {
    let guest = guest_platform();
    if platform.os == guest.os && platform.architecture == guest.architecture {
        Ok(())
    } else {
        Err(ImageError::UnsupportedPlatform(platform.to_string()))
    }
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

fn parse(reference: &str) -> Result<oci::Reference, ImageError> {
    oci::Reference::parse(reference).map_err(|source| ImageError::Reference {
        reference: reference.to_string(),
        source,
    })
}

/// What the store has of an image.
enum Lookup {
    /// The image (for the platform asked for, or the host's).
    Found(Box<oci::Image>),
    /// Nothing under that name.
    Absent,
    /// The name, but not for this platform.
    OtherPlatform(String),
}

/// `reference` in `store`, for `platform` (default: the host's). A multi-platform image
/// pulled for another platform, or (with `platform`) a single-platform image for another one,
/// is there only for another platform.
fn lookup(
    store: &oci::Store,
    r: &oci::Reference,
    platform: Option<&oci::Platform>,
) -> Result<Lookup, ImageError> {
    let wanted = platform.cloned().unwrap_or_else(oci::Platform::host);
    match store.image_for(r, &wanted) {
        Ok(i) if platform.is_some() && !wanted.matches(&i.platform) => {
            Ok(Lookup::OtherPlatform(wanted.to_string()))
        }
        Ok(i) => Ok(Lookup::Found(Box::new(i))),
        Err(oci::StoreError::NotFound(_)) => Ok(Lookup::Absent),
        Err(oci::StoreError::PlatformNotPulled { .. }) => {
            Ok(Lookup::OtherPlatform(wanted.to_string()))
        }
        Err(source) => Err(ImageError::Read {
            reference: r.to_string(),
            source,
        }),
    }
}

/// The content store under `root`, `reference` parsed, and the image if the store has it.
fn find(
    root: &Path,
    reference: &str,
) -> Result<(oci::Store, oci::Reference, Option<oci::Image>), ImageError> {
    let r = parse(reference)?;
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

/// Finds `reference` in the content store under `root`, pulling it with `pull` as `policy`
/// says, and makes sure its rootfs is in the cache. With `platform`, the image must be for
/// that platform (checked with [`check_platform`] first): an image in the store for another
/// one counts as missing, as docker counts it. Building blocks; call from a multi-threaded
/// runtime.
pub async fn resolve(
    root: &Path,
    reference: &str,
    pull: &oci::PullOptions,
    policy: PullPolicy,
    platform: Option<&oci::Platform>,
) -> Result<ResolvedImage, ImageError> {
    let (store, image) = find_or_pull(root, reference, pull, policy, platform).await?;
    let r = image.reference.clone();
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
        healthcheck: c.healthcheck.clone(),
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
        cache.ensure_in_format(&digest, Some(IMAGE_ROOTFS_FORMAT), |tmp| {
            let opts = ext4::FormatOptions {
                journal: true,
                min_size: Some(ROOTFS_MIN_SIZE),
                // The container sees exactly its image's files at `/`, as on docker's
                // overlayfs; the format is in the cache name, so old files are not reused.
                lost_found: false,
                ensure: crate::rootfs::mount_points(),
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

/// Finds `reference` in the content store under `root`, pulling it as `policy` says (see
/// [`resolve`], which also makes its rootfs): the store and the image.
pub async fn find_or_pull(
    root: &Path,
    reference: &str,
    pull: &oci::PullOptions,
    policy: PullPolicy,
    platform: Option<&oci::Platform>,
) -> Result<(oci::Store, oci::Image), ImageError> {
    if let Some(p) = platform {
        check_platform(p)?;
    }
    let r = parse(reference)?;
    let store = oci::Store::open(root).map_err(ImageError::OpenStore)?;
    let local = match policy {
        PullPolicy::Always => Lookup::Absent,
        PullPolicy::Missing | PullPolicy::Never => lookup(&store, &r, platform)?,
    };
    let image = match (local, policy) {
        (Lookup::Found(image), _) => *image,
        (Lookup::Absent, PullPolicy::Never) => return Err(ImageError::Missing(r.to_string())),
        (Lookup::OtherPlatform(platform), PullPolicy::Never) => {
            return Err(ImageError::MissingPlatform {
                reference: r.to_string(),
                platform,
            })
        }
        (_, _) => {
            let opts = oci::PullOptions {
                platform: platform.cloned().or_else(|| pull.platform.clone()),
                scheme: pull.scheme,
                concurrency: pull.concurrency,
                credentials: pull.credentials.clone(),
                progress: pull.progress.clone(),
            };
            let image = oci::pull(&store, &r, &opts)
                .await
                .map_err(|source| ImageError::Pull {
                    reference: r.to_string(),
                    source: Box::new(source),
                })?;
            crate::events::image_event(root, "pull", &r.to_string(), &r.to_string());
            image
        }
    };
    Ok((store, image))
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
