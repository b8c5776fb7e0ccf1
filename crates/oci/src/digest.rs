//! Content digests (`sha256:<64 hex>`) and the streaming hasher used while content is written.
//!
//! Only sha256 is accepted: it is the only algorithm registries and the OCI image layout use in
//! practice, and refusing the rest keeps every blob path in the store predictable.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use sha2::{Digest as _, Sha256};

/// Why a digest string was refused.
#[derive(Debug, thiserror::Error)]
pub enum DigestError {
    /// The string is not `sha256:` followed by 64 lowercase hex digits.
    #[error("invalid digest {0:?}: expected sha256:<64 hex digits>")]
    Parse(String),
}

/// A validated content digest such as `sha256:9f86d0…`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Digest(String);

impl Digest {
    /// Parses and validates `sha256:<hex>`.
    pub fn parse(s: &str) -> Result<Self, DigestError> {
        let hex = s
            .strip_prefix("sha256:")
            .ok_or_else(|| DigestError::Parse(s.to_string()))?;
        if hex.len() != 64 || !hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
            return Err(DigestError::Parse(s.to_string()));
        }
        Ok(Digest(s.to_string()))
    }

    /// The digest of `data`.
    pub fn of(data: &[u8]) -> Self {
        Digest(format!("sha256:{}", hex::encode(Sha256::digest(data))))
    }

    /// The algorithm part (always `sha256`).
    pub fn algorithm(&self) -> &str {
        "sha256"
    }

    /// The hex part after the colon.
    pub fn hex(&self) -> &str {
        &self.0["sha256:".len()..]
    }

    /// The whole digest as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The first 12 hex digits, as shown in tables.
    pub fn short(&self) -> &str {
        &self.hex()[..12]
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl FromStr for Digest {
    type Err = DigestError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Digest::parse(s)
    }
}

impl Serialize for Digest {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for Digest {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Digest::parse(&s).map_err(serde::de::Error::custom)
    }
}

/// Incremental sha256 over content as it streams past, counting bytes too.
#[derive(Default, Clone)]
pub struct Hasher {
    inner: Sha256,
    size: u64,
}

impl Hasher {
    /// A hasher that has seen nothing.
    pub fn new() -> Self {
        Self::default()
    }

    /// Feeds more content.
    pub fn update(&mut self, data: &[u8]) {
        self.inner.update(data);
        self.size += data.len() as u64;
    }

    /// Bytes seen so far.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// The digest of everything fed, and its size.
    pub fn finish(self) -> (Digest, u64) {
        (
            Digest(format!("sha256:{}", hex::encode(self.inner.finalize()))),
            self.size,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_hashes() {
        let d = Digest::of(b"hello");
        assert_eq!(
            d.as_str(),
            "sha256:2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824"
        );
        assert_eq!(Digest::parse(d.as_str()).unwrap(), d);
        assert_eq!(d.short(), "2cf24dba5fb0");
        let mut h = Hasher::new();
        h.update(b"hel");
        h.update(b"lo");
        assert_eq!(h.finish(), (d, 5));
    }

    #[test]
    fn rejects_bad_digests() {
        for bad in [
            "",
            "sha256:",
            "sha512:abcd",
            "sha256:XYZ",
            &format!("sha256:{}", "A".repeat(64)),
        ] {
            assert!(Digest::parse(bad).is_err(), "{bad}");
        }
    }
}
