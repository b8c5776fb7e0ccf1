//! `container rootfs …` commands: build ext4 root filesystems from layer tarballs with our own
//! ext4 writer (crate `ext4`), no mkfs and no loop mount.

use std::path::PathBuf;

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
        #[arg(long, value_name = "SIZE", value_parser = crate::output::parse_size)]
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
                Some(reference) => runtime::image::layers(&global.root_dir(), &reference)?,
                None => layers,
            };
            let opts = runtime::rootfs::FormatOptions {
                size,
                journal,
                ..Default::default()
            };
            let s = runtime::rootfs::build_from_layers(&layers, &output, &opts)?;
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
