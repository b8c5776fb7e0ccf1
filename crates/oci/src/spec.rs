//! The JSON documents of images: descriptors, manifests, indexes, image configs, platforms, and
//! the media types (OCI and docker v2 schema 2) that name them.
//!
//! These are our own serde types rather than a generic OCI crate's because docker's media types
//! and its `null`-for-empty habits (`"Entrypoint": null`, `"Labels": null`) must parse as well as
//! OCI's, and because stored bytes are never re-serialised: parsing is for reading only, so
//! digests stay those of the original bytes.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Deserializer, Serialize};

use crate::digest::Digest;

/// Media type strings, OCI image-spec v1.1 and docker distribution "v2 schema 2".
pub mod media_type {
    /// OCI image manifest.
    pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
    /// OCI image index.
    pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
    /// OCI image config.
    pub const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
    /// Uncompressed OCI layer.
    pub const OCI_LAYER_TAR: &str = "application/vnd.oci.image.layer.v1.tar";
    /// gzip-compressed OCI layer.
    pub const OCI_LAYER_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
    /// zstd-compressed OCI layer.
    pub const OCI_LAYER_ZSTD: &str = "application/vnd.oci.image.layer.v1.tar+zstd";
    /// Docker image manifest (v2 schema 2).
    pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
    /// Docker manifest list (multi-arch).
    pub const DOCKER_MANIFEST_LIST: &str =
        "application/vnd.docker.distribution.manifest.list.v2+json";
    /// Docker image config.
    pub const DOCKER_CONFIG: &str = "application/vnd.docker.container.image.v1+json";
    /// gzip-compressed docker layer.
    pub const DOCKER_LAYER_GZIP: &str = "application/vnd.docker.image.rootfs.diff.tar.gzip";
    /// Docker "foreign" (non-distributable) layer.
    pub const DOCKER_FOREIGN_LAYER: &str =
        "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip";
    /// OCI non-distributable layers (deprecated but still seen).
    pub const OCI_NONDIST_TAR: &str = "application/vnd.oci.image.layer.nondistributable.v1.tar";
    /// OCI non-distributable gzip layer.
    pub const OCI_NONDIST_GZIP: &str =
        "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip";
    /// OCI non-distributable zstd layer.
    pub const OCI_NONDIST_ZSTD: &str =
        "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd";

    /// Everything we ask a registry for when resolving a reference, best first.
    pub const MANIFEST_ACCEPT: &str = "application/vnd.oci.image.index.v1+json, application/vnd.docker.distribution.manifest.list.v2+json, application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.v2+json";

    /// Is this an image index / manifest list?
    pub fn is_index(mt: &str) -> bool {
        mt == OCI_INDEX || mt == DOCKER_MANIFEST_LIST
    }

    /// Is this a single-platform image manifest?
    pub fn is_manifest(mt: &str) -> bool {
        mt == OCI_MANIFEST || mt == DOCKER_MANIFEST
    }

    /// Is this an image config?
    pub fn is_config(mt: &str) -> bool {
        mt == OCI_CONFIG || mt == DOCKER_CONFIG
    }

    /// How a layer of this media type is compressed, or `None` if it is not a layer type we know.
    pub fn layer_compression(mt: &str) -> Option<super::Compression> {
        use super::Compression::*;
        match mt {
            OCI_LAYER_TAR | OCI_NONDIST_TAR => Some(None),
            OCI_LAYER_GZIP | OCI_NONDIST_GZIP | DOCKER_LAYER_GZIP | DOCKER_FOREIGN_LAYER => {
                Some(Gzip)
            }
            OCI_LAYER_ZSTD | OCI_NONDIST_ZSTD => Some(Zstd),
            _ => Option::None,
        }
    }
}

/// Compression of a layer blob.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    /// A plain tar.
    None,
    /// tar + gzip.
    Gzip,
    /// tar + zstd.
    Zstd,
}

/// The annotation holding an image's name in an OCI layout's `index.json`.
pub const ANNOTATION_REF_NAME: &str = "org.opencontainers.image.ref.name";

/// Why a manifest, index or config document was refused.
#[derive(Debug, thiserror::Error)]
pub enum SpecError {
    /// The JSON does not parse as the expected document.
    #[error("malformed {what}")]
    Json {
        /// Which document.
        what: &'static str,
        /// The parser's complaint.
        #[source]
        source: serde_json::Error,
    },
    /// The media type is not one we handle.
    #[error("unsupported media type {media_type:?} for {what}")]
    MediaType {
        /// Which document or blob.
        what: String,
        /// The media type found.
        media_type: String,
    },
    /// A platform string is not `os/arch[/variant]`.
    #[error("invalid platform {0:?}: expected os/arch[/variant], e.g. linux/arm64/v8")]
    Platform(String),
}

/// A content descriptor: what a blob is, its digest and size.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Descriptor {
    /// Media type of the referenced content.
    pub media_type: String,
    /// Digest of the referenced content.
    pub digest: Digest,
    /// Size in bytes.
    pub size: u64,
    /// Alternative download locations (foreign layers).
    #[serde(
        default,
        skip_serializing_if = "Vec::is_empty",
        deserialize_with = "null_default"
    )]
    pub urls: Vec<String>,
    /// Free-form annotations.
    #[serde(
        default,
        skip_serializing_if = "BTreeMap::is_empty",
        deserialize_with = "null_default"
    )]
    pub annotations: BTreeMap<String, String>,
    /// Platform of the manifest this points to (index entries only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform: Option<Platform>,
    /// Artifact type, for artifacts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub artifact_type: Option<String>,
}

impl Descriptor {
    /// A bare descriptor.
    pub fn new(media_type: &str, digest: Digest, size: u64) -> Self {
        Descriptor {
            media_type: media_type.to_string(),
            digest,
            size,
            urls: Vec::new(),
            annotations: BTreeMap::new(),
            platform: None,
            artifact_type: None,
        }
    }
}

/// A single-platform image manifest (OCI or docker v2 schema 2).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Manifest {
    /// Always 2.
    pub schema_version: u32,
    /// The manifest's own media type, when it says.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub media_type: Option<String>,
    /// The image config blob.
    pub config: Descriptor,
    /// Layers, base first.
    #[serde(default, deserialize_with = "null_default")]
    pub layers: Vec<Descriptor>,
    /// Free-form annotations.
    #[serde(
        default,
        skip_serializing_if = "BTreeMap::is_empty",
        deserialize_with = "null_default"
    )]
    pub annotations: BTreeMap<String, String>,
}

/// An image index / docker manifest list.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Index {
    /// Always 2.
    pub schema_version: u32,
    /// The index's own media type, when it says.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub media_type: Option<String>,
    /// The manifests, usually one per platform.
    #[serde(default, deserialize_with = "null_default")]
    pub manifests: Vec<Descriptor>,
    /// Free-form annotations.
    #[serde(
        default,
        skip_serializing_if = "BTreeMap::is_empty",
        deserialize_with = "null_default"
    )]
    pub annotations: BTreeMap<String, String>,
}

/// A manifest-or-index document after its media type was worked out.
#[derive(Debug, Clone)]
#[allow(clippy::large_enum_variant)] // short-lived, never stored in bulk
pub enum ManifestDoc {
    /// An image index or manifest list.
    Index(Index),
    /// A single-platform manifest.
    Manifest(Manifest),
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Probe {
    #[serde(default)]
    media_type: Option<String>,
    #[serde(default)]
    manifests: Option<serde_json::Value>,
    #[serde(default)]
    config: Option<serde_json::Value>,
    #[serde(default)]
    schema_version: Option<u32>,
}

impl ManifestDoc {
    /// Parses a manifest or index. The media type comes from the document's `mediaType`, else from
    /// `hint` (a registry's Content-Type), else from its shape (OCI allows leaving it out).
    /// Returns the document and its effective media type.
    pub fn parse(bytes: &[u8], hint: Option<&str>) -> Result<(ManifestDoc, String), SpecError> {
        let probe: Probe = serde_json::from_slice(bytes).map_err(|source| SpecError::Json {
            what: "manifest",
            source,
        })?;
        let hint = hint
            .map(|h| h.split(';').next().unwrap_or("").trim())
            .filter(|h| media_type::is_index(h) || media_type::is_manifest(h));
        let mt = match (probe.media_type, hint) {
            (Some(mt), _) => mt,
            (None, Some(h)) => h.to_string(),
            (None, None) if probe.manifests.is_some() => media_type::OCI_INDEX.to_string(),
            (None, None) if probe.config.is_some() && probe.schema_version == Some(2) => {
                media_type::OCI_MANIFEST.to_string()
            }
            (None, None) => "(none)".to_string(),
        };
        if media_type::is_index(&mt) {
            let index: Index = serde_json::from_slice(bytes).map_err(|source| SpecError::Json {
                what: "image index",
                source,
            })?;
            Ok((ManifestDoc::Index(index), mt))
        } else if media_type::is_manifest(&mt) {
            let m: Manifest = serde_json::from_slice(bytes).map_err(|source| SpecError::Json {
                what: "image manifest",
                source,
            })?;
            if !media_type::is_config(&m.config.media_type) {
                return Err(SpecError::MediaType {
                    what: "image config".into(),
                    media_type: m.config.media_type,
                });
            }
            for layer in &m.layers {
                if media_type::layer_compression(&layer.media_type).is_none() {
                    return Err(SpecError::MediaType {
                        what: format!("layer {}", layer.digest),
                        media_type: layer.media_type.clone(),
                    });
                }
            }
            Ok((ManifestDoc::Manifest(m), mt))
        } else {
            Err(SpecError::MediaType {
                what: "manifest".into(),
                media_type: mt,
            })
        }
    }
}

/// An OS/architecture pair (plus variant) an image runs on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct Platform {
    /// CPU architecture in GOARCH spelling (`amd64`, `arm64`).
    pub architecture: String,
    /// Operating system in GOOS spelling (`linux`).
    pub os: String,
    /// OS version (Windows only).
    #[serde(
        rename = "os.version",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub os_version: Option<String>,
    /// OS features (Windows only).
    #[serde(
        rename = "os.features",
        default,
        skip_serializing_if = "Vec::is_empty",
        deserialize_with = "null_default"
    )]
    pub os_features: Vec<String>,
    /// CPU variant (`v8`, `v7`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
}

impl Platform {
    /// The platform this program runs on (`linux/amd64` on x86-64).
    pub fn host() -> Platform {
        let arch = match std::env::consts::ARCH {
            "x86_64" => "amd64",
            "aarch64" => "arm64",
            "x86" => "386",
            "powerpc64" => "ppc64le",
            "riscv64" => "riscv64",
            "s390x" => "s390x",
            other => other,
        };
        Platform {
            architecture: arch.to_string(),
            os: "linux".to_string(),
            ..Default::default()
        }
    }

    /// Parses `os/arch[/variant]`.
    pub fn parse(s: &str) -> Result<Platform, SpecError> {
        let parts: Vec<&str> = s.split('/').collect();
        let ok =
            |p: &str| !p.is_empty() && p.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
        match parts.as_slice() {
            [os, arch] if ok(os) && ok(arch) => Ok(Platform {
                os: os.to_string(),
                architecture: arch.to_string(),
                ..Default::default()
            }),
            [os, arch, variant] if ok(os) && ok(arch) && ok(variant) => Ok(Platform {
                os: os.to_string(),
                architecture: arch.to_string(),
                variant: Some(variant.to_string()),
                ..Default::default()
            }),
            _ => Err(SpecError::Platform(s.to_string())),
        }
    }

    /// Does an image built for `candidate` satisfy a request for `self`? The variant must match
    /// only if one was asked for (`arm64` with no variant means `v8`).
    pub fn matches(&self, candidate: &Platform) -> bool {
        if self.os != candidate.os || self.architecture != candidate.architecture {
            return false;
        }
        match &self.variant {
            None => true,
            Some(want) => {
                let have = candidate
                    .variant
                    .clone()
                    .or_else(|| (candidate.architecture == "arm64").then(|| "v8".to_string()));
                have.as_deref() == Some(want.as_str())
            }
        }
    }
}

impl fmt::Display for Platform {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.os, self.architecture)?;
        if let Some(v) = &self.variant {
            write!(f, "/{v}")?;
        }
        Ok(())
    }
}

/// An image config (the `application/vnd.oci.image.config.v1+json` document).
#[derive(Debug, Clone, Serialize, Deserialize, Default)]
pub struct ImageConfig {
    /// Creation time, RFC 3339.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created: Option<String>,
    /// Author.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub author: Option<String>,
    /// CPU architecture.
    #[serde(default)]
    pub architecture: String,
    /// Operating system.
    #[serde(default)]
    pub os: String,
    /// CPU variant.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
    /// Defaults for containers started from the image.
    #[serde(default, deserialize_with = "null_default")]
    pub config: ContainerConfig,
    /// The layers' uncompressed digests.
    #[serde(default, deserialize_with = "null_default")]
    pub rootfs: RootFs,
    /// Build history (kept opaque).
    #[serde(
        default,
        skip_serializing_if = "Vec::is_empty",
        deserialize_with = "null_default"
    )]
    pub history: Vec<serde_json::Value>,
}

impl ImageConfig {
    /// Parses a config blob.
    pub fn parse(bytes: &[u8]) -> Result<ImageConfig, SpecError> {
        serde_json::from_slice(bytes).map_err(|source| SpecError::Json {
            what: "image config",
            source,
        })
    }

    /// The platform the config says the image is for.
    pub fn platform(&self) -> Platform {
        Platform {
            architecture: self.architecture.clone(),
            os: self.os.clone(),
            variant: self.variant.clone(),
            ..Default::default()
        }
    }
}

/// The `config` object of an image config: process defaults.
#[derive(Debug, Clone, Serialize, Deserialize, Default, PartialEq)]
#[serde(rename_all = "PascalCase")]
pub struct ContainerConfig {
    /// `user`, `user:group`, `uid:gid`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// Ports as `80/tcp` keys.
    #[serde(default, deserialize_with = "null_default")]
    pub exposed_ports: BTreeMap<String, serde_json::Value>,
    /// `KEY=value` entries.
    #[serde(default, deserialize_with = "null_default")]
    pub env: Vec<String>,
    /// Entrypoint argv.
    #[serde(default)]
    pub entrypoint: Option<Vec<String>>,
    /// Default arguments.
    #[serde(default)]
    pub cmd: Option<Vec<String>>,
    /// Paths that should be volumes.
    #[serde(default, deserialize_with = "null_default")]
    pub volumes: BTreeMap<String, serde_json::Value>,
    /// Working directory.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub working_dir: Option<String>,
    /// Labels.
    #[serde(default, deserialize_with = "null_default")]
    pub labels: BTreeMap<String, String>,
    /// Signal to stop the container with.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stop_signal: Option<String>,
    /// How to check the container's health (Docker's extension of the OCI config).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub healthcheck: Option<HealthConfig>,
    /// Instructions to run when the image is the base of a build (Docker's `ONBUILD`).
    #[serde(
        default,
        skip_serializing_if = "Vec::is_empty",
        deserialize_with = "null_default"
    )]
    pub on_build: Vec<String>,
    /// The shell of shell-form commands in builds on this image (Docker's `SHELL`).
    #[serde(
        default,
        skip_serializing_if = "Vec::is_empty",
        deserialize_with = "null_default"
    )]
    pub shell: Vec<String>,
}

/// Docker's `Healthcheck` object of an image config. Durations are in nanoseconds, 0 (or
/// absent) meaning "inherit" (the default).
#[derive(Debug, Clone, Serialize, Deserialize, Default, PartialEq, Eq)]
#[serde(rename_all = "PascalCase")]
pub struct HealthConfig {
    /// `["NONE"]`, `["CMD", arg…]` or `["CMD-SHELL", command]`; empty inherits.
    #[serde(default, deserialize_with = "null_default")]
    pub test: Vec<String>,
    /// Time between checks.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub interval: i64,
    /// Time a check may take.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub timeout: i64,
    /// Start-up time during which failures do not count.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub start_period: i64,
    /// Time between checks during the start period.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub start_interval: i64,
    /// Consecutive failures before the container is unhealthy.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub retries: i64,
}

fn is_zero(v: &i64) -> bool {
    *v == 0
}

/// The `rootfs` object of an image config.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct RootFs {
    /// Always `layers`.
    #[serde(rename = "type")]
    pub kind: String,
    /// Digests of the uncompressed layer tars, base first.
    #[serde(default, deserialize_with = "null_default")]
    pub diff_ids: Vec<Digest>,
}

impl Default for RootFs {
    fn default() -> Self {
        RootFs {
            kind: "layers".to_string(),
            diff_ids: Vec::new(),
        }
    }
}

/// Treats JSON `null` like an absent field (docker writes `null` for empty lists and maps).
fn null_default<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Default + Deserialize<'de>,
{
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;

    const D: &str = "sha256:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";

    #[test]
    fn parses_docker_manifest_and_nulls() {
        let m = format!(
            r#"{{"schemaVersion":2,"mediaType":"{}","config":{{"mediaType":"{}","digest":"{D}","size":10}},"layers":[{{"mediaType":"{}","digest":"{D}","size":5}}]}}"#,
            media_type::DOCKER_MANIFEST,
            media_type::DOCKER_CONFIG,
            media_type::DOCKER_LAYER_GZIP
        );
        let (doc, mt) = ManifestDoc::parse(m.as_bytes(), None).unwrap();
        assert_eq!(mt, media_type::DOCKER_MANIFEST);
        assert!(matches!(doc, ManifestDoc::Manifest(ref m) if m.layers.len() == 1));
        let c = ImageConfig::parse(br#"{"architecture":"amd64","os":"linux","config":{"Env":null,"Entrypoint":null,"Cmd":["sh"],"Labels":null,"ExposedPorts":{"80/tcp":{}}},"rootfs":{"type":"layers","diff_ids":[]}}"#).unwrap();
        assert_eq!(c.config.cmd, Some(vec!["sh".to_string()]));
        assert!(c.config.exposed_ports.contains_key("80/tcp"));
    }

    #[test]
    fn index_by_shape_and_unknown_types() {
        let (doc, mt) = ManifestDoc::parse(br#"{"schemaVersion":2,"manifests":[]}"#, None).unwrap();
        assert_eq!(mt, media_type::OCI_INDEX);
        assert!(matches!(doc, ManifestDoc::Index(_)));
        let err = ManifestDoc::parse(
            br#"{"schemaVersion":2,"mediaType":"application/x-nope"}"#,
            None,
        )
        .unwrap_err();
        assert!(err.to_string().contains("application/x-nope"));
        assert!(ManifestDoc::parse(b"{not json", None).is_err());
    }

    #[test]
    fn platforms() {
        let p = Platform::parse("linux/arm64/v8").unwrap();
        assert_eq!(p.to_string(), "linux/arm64/v8");
        let plain_arm = Platform {
            os: "linux".into(),
            architecture: "arm64".into(),
            ..Default::default()
        };
        assert!(p.matches(&plain_arm));
        assert!(
            Platform::parse("linux/amd64")
                .unwrap()
                .matches(&Platform::host())
                || Platform::host().architecture != "amd64"
        );
        assert!(Platform::parse("linux").is_err());
        assert!(Platform::parse("linux/amd64/v1/x").is_err());
    }
}
