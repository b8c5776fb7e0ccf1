//! Image references (`[registry[:port]/]path[:tag][@digest]`) with docker's normalisation.
//!
//! `alpine` becomes `docker.io/library/alpine:latest`, `user/app` becomes `docker.io/user/app:latest`,
//! and a first path component containing `.` or `:` (or `localhost`) names the registry. The grammar
//! follows distribution's `reference` package (path components `[a-z0-9]+([._]|__|-+)[a-z0-9]+…`,
//! tags `[\w][\w.-]{0,127}`).

use std::fmt;
use std::str::FromStr;

use crate::digest::Digest;

/// The registry docker.io names resolve to, as written in references.
pub const DOCKER_HUB: &str = "docker.io";
/// The host serving the registry API for docker.io.
pub const DOCKER_HUB_API: &str = "registry-1.docker.io";

/// Why a reference string was refused.
#[derive(Debug, thiserror::Error)]
pub enum ReferenceError {
    /// The reference is empty.
    #[error("invalid reference: empty")]
    Empty,
    /// A repository path component breaks the grammar.
    #[error("invalid reference {input:?}: bad repository name {component:?} (lowercase letters, digits, '.', '_', '-')")]
    Repository {
        /// The whole input.
        input: String,
        /// The offending component.
        component: String,
    },
    /// The tag breaks the grammar.
    #[error("invalid reference {input:?}: bad tag {tag:?}")]
    Tag {
        /// The whole input.
        input: String,
        /// The offending tag.
        tag: String,
    },
    /// The registry host is malformed.
    #[error("invalid reference {input:?}: bad registry {registry:?}")]
    Registry {
        /// The whole input.
        input: String,
        /// The offending host.
        registry: String,
    },
    /// The digest is malformed.
    #[error("invalid reference {input:?}")]
    Digest {
        /// The whole input.
        input: String,
        /// What was wrong with it.
        #[source]
        source: crate::digest::DigestError,
    },
}

/// A normalised image reference.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Reference {
    registry: String,
    repository: String,
    tag: Option<String>,
    digest: Option<Digest>,
}

impl Reference {
    /// Parses and normalises a reference; a reference with neither tag nor digest gets `latest`.
    pub fn parse(input: &str) -> Result<Self, ReferenceError> {
        if input.is_empty() {
            return Err(ReferenceError::Empty);
        }
        let (name, digest) = match input.split_once('@') {
            Some((name, d)) => (
                name,
                Some(Digest::parse(d).map_err(|source| ReferenceError::Digest {
                    input: input.to_string(),
                    source,
                })?),
            ),
            None => (input, None),
        };
        // A tag is a ':' after the last '/', so a registry port is not mistaken for one.
        let last_slash = name.rfind('/').map_or(0, |i| i + 1);
        let (name, tag) = match name[last_slash..].rfind(':') {
            Some(i) => (
                &name[..last_slash + i],
                Some(name[last_slash + i + 1..].to_string()),
            ),
            None => (name, None),
        };
        let (registry, path) = match name.split_once('/') {
            Some((first, rest))
                if first.contains('.') || first.contains(':') || first == "localhost" =>
            {
                (first.to_string(), rest.to_string())
            }
            _ => (DOCKER_HUB.to_string(), name.to_string()),
        };
        let registry = match registry.as_str() {
            "index.docker.io" | "registry-1.docker.io" => DOCKER_HUB.to_string(),
            _ => registry,
        };
        if !valid_registry(&registry) {
            return Err(ReferenceError::Registry {
                input: input.to_string(),
                registry,
            });
        }
        let repository = if registry == DOCKER_HUB && !path.contains('/') {
            format!("library/{path}")
        } else {
            path
        };
        for component in repository.split('/') {
            if !valid_component(component) {
                return Err(ReferenceError::Repository {
                    input: input.to_string(),
                    component: component.to_string(),
                });
            }
        }
        if let Some(tag) = &tag {
            if !valid_tag(tag) {
                return Err(ReferenceError::Tag {
                    input: input.to_string(),
                    tag: tag.clone(),
                });
            }
        }
        let tag = match (&tag, &digest) {
            (None, None) => Some("latest".to_string()),
            _ => tag,
        };
        Ok(Reference {
            registry,
            repository,
            tag,
            digest,
        })
    }

    /// The registry as written in the reference (`docker.io`, `localhost:5000`).
    pub fn registry(&self) -> &str {
        &self.registry
    }

    /// The host:port the registry API is served on (`registry-1.docker.io` for docker.io).
    pub fn api_host(&self) -> &str {
        if self.registry == DOCKER_HUB {
            DOCKER_HUB_API
        } else {
            &self.registry
        }
    }

    /// The repository path (`library/alpine`).
    pub fn repository(&self) -> &str {
        &self.repository
    }

    /// The tag, if any.
    pub fn tag(&self) -> Option<&str> {
        self.tag.as_deref()
    }

    /// The digest, if any.
    pub fn digest(&self) -> Option<&Digest> {
        self.digest.as_ref()
    }

    /// What to put after `/manifests/` when asking the registry: the digest if pinned, else the tag.
    pub fn manifest_reference(&self) -> String {
        match (&self.digest, &self.tag) {
            (Some(d), _) => d.to_string(),
            (None, Some(t)) => t.clone(),
            (None, None) => "latest".to_string(),
        }
    }

    /// The same repository with another tag and no digest.
    pub fn with_tag(&self, tag: &str) -> Reference {
        Reference {
            tag: Some(tag.to_string()),
            digest: None,
            ..self.clone()
        }
    }

    /// The same repository pinned to a digest (the tag is dropped).
    pub fn with_digest(&self, digest: Digest) -> Reference {
        Reference {
            tag: None,
            digest: Some(digest),
            ..self.clone()
        }
    }
}

impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.registry, self.repository)?;
        if let Some(tag) = &self.tag {
            write!(f, ":{tag}")?;
        }
        if let Some(digest) = &self.digest {
            write!(f, "@{digest}")?;
        }
        Ok(())
    }
}

impl FromStr for Reference {
    type Err = ReferenceError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Reference::parse(s)
    }
}

fn valid_component(c: &str) -> bool {
    // [a-z0-9]+ ( ( '.' | '_' | '__' | '-'+ ) [a-z0-9]+ )*
    let b = c.as_bytes();
    if b.is_empty() || !is_alnum(b[0]) || !is_alnum(b[b.len() - 1]) {
        return false;
    }
    let mut i = 0;
    while i < b.len() {
        if is_alnum(b[i]) {
            i += 1;
            continue;
        }
        let start = i;
        while i < b.len() && !is_alnum(b[i]) {
            i += 1;
        }
        let sep = &c[start..i];
        let ok = sep == "." || sep == "_" || sep == "__" || sep.bytes().all(|x| x == b'-');
        if !ok {
            return false;
        }
    }
    true
}

fn is_alnum(b: u8) -> bool {
    b.is_ascii_lowercase() || b.is_ascii_digit()
}

fn valid_tag(t: &str) -> bool {
    let b = t.as_bytes();
    !b.is_empty()
        && b.len() <= 128
        && (b[0].is_ascii_alphanumeric() || b[0] == b'_')
        && b.iter()
            .all(|&x| x.is_ascii_alphanumeric() || matches!(x, b'_' | b'.' | b'-'))
}

fn valid_registry(r: &str) -> bool {
    let (host, port) = if let Some(rest) = r.strip_prefix('[') {
        // [::1]:5000
        match rest.split_once(']') {
            Some((h, p)) => (h, p.strip_prefix(':')),
            None => return false,
        }
    } else {
        match r.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (r, None),
        }
    };
    if host.is_empty() {
        return false;
    }
    if let Some(p) = port {
        if p.parse::<u16>().is_err() {
            return false;
        }
    }
    host.bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b':'))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn norm(s: &str) -> String {
        Reference::parse(s).unwrap().to_string()
    }

    #[test]
    fn docker_normalisation() {
        assert_eq!(norm("alpine"), "docker.io/library/alpine:latest");
        assert_eq!(norm("alpine:3.19"), "docker.io/library/alpine:3.19");
        assert_eq!(norm("user/app"), "docker.io/user/app:latest");
        assert_eq!(norm("docker.io/alpine"), "docker.io/library/alpine:latest");
        assert_eq!(
            norm("index.docker.io/library/alpine"),
            "docker.io/library/alpine:latest"
        );
        assert_eq!(norm("localhost/app"), "localhost/app:latest");
        assert_eq!(norm("localhost:5000/a/b:v1"), "localhost:5000/a/b:v1");
        assert_eq!(
            norm("127.0.0.1:5000/busybox"),
            "127.0.0.1:5000/busybox:latest"
        );
        assert_eq!(norm("[::1]:5000/x:y"), "[::1]:5000/x:y");
        let d = format!("sha256:{}", "a".repeat(64));
        assert_eq!(
            norm(&format!("busybox@{d}")),
            format!("docker.io/library/busybox@{d}")
        );
        assert_eq!(
            norm(&format!("busybox:1@{d}")),
            format!("docker.io/library/busybox:1@{d}")
        );
    }

    #[test]
    fn parts() {
        let r = Reference::parse("localhost:5000/team/app:v2").unwrap();
        assert_eq!(r.registry(), "localhost:5000");
        assert_eq!(r.repository(), "team/app");
        assert_eq!(r.tag(), Some("v2"));
        assert_eq!(r.manifest_reference(), "v2");
        assert_eq!(
            Reference::parse("alpine").unwrap().api_host(),
            DOCKER_HUB_API
        );
    }

    #[test]
    fn rejects_bad_input() {
        for bad in [
            "",
            "UPPER",
            "a//b",
            "a:b:c",
            "a:",
            "-a",
            "a@sha256:zz",
            "host:99999/a",
            "a/b_-c",
            "a:.tag",
        ] {
            assert!(Reference::parse(bad).is_err(), "{bad:?} accepted");
        }
    }
}
