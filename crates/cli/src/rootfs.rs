//! `container rootfs …` commands: build ext4 root filesystems from layer tarballs with our own
//! ext4 writer (crate `ext4`), no mkfs and no loop mount.

use std::path::PathBuf;

use anyhow::Context;
use clap::Subcommand;

use crate::global::{Format, GlobalOptions};

/// Subcommands of `container rootfs`.
#[derive(Debug, Subcommand)]
pub enum RootfsCommand {
    /// Build an ext4 image from layer tarballs (plain, gzip or zstd), applied in order, or from
    /// the layers of an image already in the content store.
    Create {
        /// A layer tarball; repeat for each layer, lowest first.
        #[arg(
            long = "layer",
            value_name = "FILE",
            required_unless_present = "image",
            conflicts_with = "image"
        )]
        layers: Vec<PathBuf>,
        /// A pulled (or loaded/imported) image whose layers to apply, for the host platform.
        #[arg(long, value_name = "REF")]
        image: Option<String>,
        /// Size of the filesystem (e.g. 512M, 4G); default: the content plus headroom.
        #[arg(long, value_name = "SIZE", value_parser = parse_size)]
        size: Option<u64>,
        /// Add a jbd2 journal so the guest gets crash safety.
        #[arg(long)]
        journal: bool,
        /// Output format of the summary.
        #[arg(long, value_enum, default_value_t)]
        format: Format,
        /// The image file to write.
        output: PathBuf,
    },
}

/// Parses a byte count with an optional K/M/G/T suffix (powers of 1024).
pub(crate) fn parse_size(s: &str) -> Result<u64, String> {
    let s = s.trim();
    let (num, mult) = match s.char_indices().last() {
        Some((i, c)) if c.is_ascii_alphabetic() => {
            let mult: u64 = match c.to_ascii_uppercase() {
                'K' => 1 << 10,
                'M' => 1 << 20,
                'G' => 1 << 30,
                'T' => 1 << 40,
                'B' => 1,
                _ => return Err(format!("unknown size suffix {c:?} (use K, M, G or T)")),
            };
            (&s[..i], mult)
        }
        _ => (s, 1),
    };
    let n: u64 = num
        .parse()
        .map_err(|_| format!("{s:?} is not a size (e.g. 512M, 4G)"))?;
    n.checked_mul(mult)
        .ok_or_else(|| format!("size {s:?} is too large"))
}

/// Runs one `container rootfs` subcommand.
pub fn run(global: &GlobalOptions, cmd: RootfsCommand) -> anyhow::Result<()> {
    match cmd {
        RootfsCommand::Create {
            layers,
            image,
            size,
            journal,
            format,
            output,
        } => {
            let layers = match image {
                Some(reference) => image_layers(global, &reference)?,
                None => layers,
            };
            let opts = ext4::FormatOptions {
                size,
                journal,
                ..Default::default()
            };
            let s = ext4::build_from_layers(&layers, &output, &opts)
                .with_context(|| format!("cannot build {}", output.display()))?;
            if format == Format::Json {
                let v = serde_json::json!({
                    "output": output,
                    "size_bytes": s.size_bytes,
                    "block_size": s.block_size,
                    "blocks": s.blocks,
                    "used_blocks": s.used_blocks,
                    "inodes": s.inodes,
                    "used_inodes": s.used_inodes,
                    "files": s.files,
                    "directories": s.directories,
                    "content_bytes": s.content_bytes,
                });
                println!("{v}");
            } else {
                println!(
                    "{}: {} bytes, {} entries ({} directories), {} of {} blocks used",
                    output.display(),
                    s.size_bytes,
                    s.files,
                    s.directories,
                    s.used_blocks,
                    s.blocks
                );
            }
            Ok(())
        }
    }
}

/// The layer blob paths (lowest first) of `reference` in the content store; an error naming the
/// reference if it is not there (this command never pulls).
fn image_layers(global: &GlobalOptions, reference: &str) -> anyhow::Result<Vec<PathBuf>> {
    let r = oci::Reference::parse(reference)
        .with_context(|| format!("invalid image reference {reference:?}"))?;
    let store = oci::Store::open(&global.root_dir())?;
    let image = match store.image(&r) {
        Ok(i) => i,
        Err(oci::StoreError::NotFound(_)) => {
            anyhow::bail!("image {r} is not in the store (pull, load or import it first)")
        }
        Err(e) => return Err(anyhow::Error::new(e).context(format!("image {r}"))),
    };
    Ok(image
        .layers()
        .iter()
        .map(|l| store.blob_path(&l.digest))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse_with_suffixes() {
        assert_eq!(parse_size("4096"), Ok(4096));
        assert_eq!(parse_size("512M"), Ok(512 << 20));
        assert_eq!(parse_size("2g"), Ok(2 << 30));
        assert!(parse_size("12Q").is_err());
        assert!(parse_size("abc").is_err());
    }
}
