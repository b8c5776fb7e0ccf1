//! Image → (config, cached rootfs) for `run`/`create`, and where the guest init binary is.

use std::path::PathBuf;

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
}

/// Finds `reference` in the content store (pulling it if missing) and makes sure its rootfs is
/// in the cache.
pub async fn resolve(_global: &GlobalOptions, reference: &str) -> anyhow::Result<ResolvedImage> {
    anyhow::bail!("image {reference}: the image store is not wired in yet")
}

/// The static vminitd for the guest: $CONTAINER_VMINITD, else next to this executable, else
/// `<exe dir>/../x86_64-unknown-linux-gnu/{release,debug}/vminitd` (where setup.sh builds it).
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
    candidates.into_iter().find(|p| p.is_file())
}
