//! `image history`: an image's build steps, newest first, from its config's `history`, as
//! docker's daemon lists them (moby `daemon/images/image_history.go`, Engine API
//! `ImageHistory`), for every front end (the CLI's table, the Engine API's JSON).
//!
//! Each history entry becomes one item; an entry that made a layer (`empty_layer` false)
//! takes the next layer of the image, base first, and its size is that layer's uncompressed
//! size (docker's `DiffSize`); the others are 0 bytes. The newest item carries the image's id
//! (its config digest) and its names; older ones are `<missing>`, as docker shows them for
//! pulled images, whose intermediate images it does not have (neither have we: images have no
//! parents here).

use std::io::{BufRead, BufReader, Read};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// The id docker shows for a step without an image of its own.
pub const MISSING: &str = "<missing>";

/// Errors of reading an image's history.
#[derive(Debug, thiserror::Error)]
pub enum HistoryError {
    /// More history entries made layers than the image has.
    #[error("image {0}: too many non-empty layers in History section")]
    TooManyLayers(String),
    /// A layer blob could not be read.
    #[error("read layer {digest} of image {image}")]
    ReadLayer {
        /// The image.
        image: String,
        /// The layer's digest.
        digest: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// The image name is not a valid reference.
    #[error(transparent)]
    Reference(#[from] oci::ReferenceError),
    /// The content store failed, or has no such image.
    #[error(transparent)]
    Store(#[from] oci::StoreError),
}

impl crate::Runtime {
    /// The history of the image named `reference` in this runtime's store (see the module).
    pub fn image_history(&self, reference: &str) -> Result<Vec<HistoryItem>, HistoryError> {
        let store = oci::Store::open(self.root())?;
        let image = store.image(&oci::Reference::parse(reference)?)?;
        history(&store, &image)
    }
}

/// One step of an image's history: docker's `HistoryResponseItem`, serialised as the Engine
/// API's `/images/{name}/history` items (`Created` in Unix seconds).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct HistoryItem {
    /// The image id (`sha256:…`, the config digest) for the newest step, [`MISSING`] for
    /// the others.
    pub id: String,
    /// When the step ran; None when the entry says nothing (docker then has Go's zero time,
    /// whose Unix seconds are what the JSON says).
    #[serde(serialize_with = "unix_seconds")]
    pub created: Option<DateTime<Utc>>,
    /// The instruction or command that made it.
    pub created_by: String,
    /// The image's names, on the newest step only.
    pub tags: Vec<String>,
    /// Uncompressed size of the layer it made, 0 for a step without a layer.
    pub size: u64,
    /// Its comment.
    pub comment: String,
}

/// Go's zero time (`0001-01-01T00:00:00Z`) in Unix seconds, as docker's API reports a step
/// without a time.
const GO_ZERO_TIME_UNIX: i64 = -62_135_596_800;

fn unix_seconds<S: serde::Serializer>(t: &Option<DateTime<Utc>>, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_i64(t.map_or(GO_ZERO_TIME_UNIX, |t| t.timestamp()))
}

/// The fields of an image config's history entry this reads (the OCI spec's names).
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct Entry {
    created: Option<String>,
    created_by: String,
    comment: String,
    empty_layer: bool,
}

/// The history of `image` in `store`, newest first.
pub fn history(store: &oci::Store, image: &oci::Image) -> Result<Vec<HistoryItem>, HistoryError> {
    let name = image.reference.to_string();
    let layers = image.layers();
    let mut next_layer = 0;
    let mut items = Vec::new();
    for raw in &image.config.history {
        // An entry we cannot read is shown empty rather than failing the whole listing.
        let entry: Entry = serde_json::from_value(raw.clone()).unwrap_or_default();
        let mut size = 0;
        if !entry.empty_layer {
            let layer = layers
                .get(next_layer)
                .ok_or_else(|| HistoryError::TooManyLayers(name.clone()))?;
            next_layer += 1;
            size = uncompressed_size(store, &layer.digest).map_err(|source| {
                HistoryError::ReadLayer {
                    image: name.clone(),
                    digest: layer.digest.to_string(),
                    source,
                }
            })?;
        }
        items.push(HistoryItem {
            id: MISSING.to_string(),
            created: entry
                .created
                .as_deref()
                .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
                .map(|t| t.with_timezone(&Utc)),
            created_by: entry.created_by,
            tags: Vec::new(),
            size,
            comment: entry.comment,
        });
    }
    items.reverse();
    if let Some(top) = items.first_mut() {
        let id = image.manifest.config.digest.to_string();
        top.tags = names_of(store, &id)?;
        top.id = id;
    }
    Ok(items)
}

/// The names in the store whose image has the config digest `id`.
fn names_of(store: &oci::Store, id: &str) -> Result<Vec<String>, HistoryError> {
    let mut names = Vec::new();
    for e in store.list()? {
        if let Ok(img) = store.image(&e.reference) {
            if img.manifest.config.digest.to_string() == id {
                names.push(e.reference.to_string());
            }
        }
    }
    Ok(names)
}

/// The size of a layer blob once decompressed (gzip, zstd or none, told by its first
/// bytes, as the layer applier tells them): read through once, nothing kept.
fn uncompressed_size(store: &oci::Store, digest: &oci::Digest) -> std::io::Result<u64> {
    let file = store.open_blob(digest).map_err(std::io::Error::other)?;
    let mut reader = BufReader::with_capacity(1 << 16, file);
    let head = reader.fill_buf()?;
    let mut stream: Box<dyn Read> = if head.starts_with(&[0x1f, 0x8b]) {
        Box::new(flate2::bufread::MultiGzDecoder::new(reader))
    } else if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        Box::new(zstd::stream::read::Decoder::with_buffer(reader)?)
    } else {
        Box::new(reader)
    };
    std::io::copy(&mut stream, &mut std::io::sink())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_are_uncompressed_and_steps_are_newest_first() {
        let tmp = tempfile::tempdir().unwrap();
        let store = oci::Store::open(tmp.path()).unwrap();
        let plain = vec![7u8; 3000];
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        std::io::Write::write_all(&mut gz, &plain).unwrap();
        let gz = gz.finish().unwrap();
        let zst = zstd::encode_all(&plain[..1000], 3).unwrap();
        for (data, want) in [(&plain, 3000), (&gz, 3000), (&zst, 1000)] {
            let d = store.write_blob(data).unwrap();
            assert_eq!(uncompressed_size(&store, &d).unwrap(), want);
        }
    }
}
