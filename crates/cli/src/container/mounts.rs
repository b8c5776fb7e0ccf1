//! `-v/--volume`, `--mount`, `--tmpfs` and `--read-only`: read by the runtime's parsers
//! (`runtime::container::parse_volume` and its siblings), which every front end shares.

use clap::Args;
use runtime::container::{parse_mount, parse_tmpfs, parse_volume};
use runtime::volume::MountSpec;

/// The mount flags of `run`/`create`.
#[derive(Debug, Args)]
pub struct MountFlags {
    /// Mount a named volume: NAME:/path[:ro] (created when missing).
    #[arg(short = 'v', long = "volume", value_name = "NAME:PATH[:ro]")]
    pub volume: Vec<String>,
    /// Mount: type=volume,source=NAME,target=PATH[,readonly] or type=tmpfs,target=PATH[,tmpfs-size=N].
    #[arg(long = "mount", value_name = "SPEC")]
    pub mount: Vec<String>,
    /// Mount a fresh tmpfs: PATH[:OPTIONS] (options as in mount(8), comma-separated).
    #[arg(long = "tmpfs", value_name = "PATH[:OPTIONS]")]
    pub tmpfs: Vec<String>,
    /// Mount the container's root filesystem read-only.
    #[arg(long)]
    pub read_only: bool,
}

impl MountFlags {
    /// The mounts in command-line order: `-v`, then `--mount`, then `--tmpfs`.
    pub fn specs(&self) -> anyhow::Result<Vec<MountSpec>> {
        let mut out = Vec::new();
        for v in &self.volume {
            out.push(parse_volume(v)?);
        }
        for v in &self.mount {
            out.push(parse_mount(v)?);
        }
        for v in &self.tmpfs {
            out.push(parse_tmpfs(v)?);
        }
        Ok(out)
    }
}
