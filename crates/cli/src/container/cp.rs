//! `container cp`: docker's `CONTAINER:PATH` syntax read into a copy of the runtime's
//! (`runtime::Container::copy_in`/`copy_out`, which also work on a stopped container). `-`
//! stands for a tar stream on stdin or stdout.

use anyhow::bail;
use clap::Args;
use runtime::container::{CopyOptions, HostPath};

use crate::global::GlobalOptions;

/// `container cp` arguments.
#[derive(Debug, Args)]
pub struct CpArgs {
    /// Archive mode: keep the uid/gid of the source.
    #[arg(short, long)]
    pub archive: bool,
    /// Follow SRC_PATH when it is a symlink (copy what it points to).
    #[arg(short = 'L', long)]
    pub follow_link: bool,
    /// CONTAINER:SRC_PATH, or a host SRC_PATH, or `-` (a tar stream on stdin).
    pub src: String,
    /// CONTAINER:DEST_PATH, or a host DEST_PATH, or `-` (a tar stream on stdout).
    pub dest: String,
}

/// One side of a copy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Location {
    /// A host path, or `-`.
    Host(String),
    /// A path in a container.
    Container {
        /// Name or id.
        container: String,
        /// Path inside it.
        path: String,
    },
}

/// Docker's reading of a cp argument: `NAME:PATH` names a container path, unless the argument
/// starts with `/` or `.` (a host path that may itself contain a colon, `./a:b`).
pub fn parse_location(arg: &str) -> Location {
    if arg.starts_with('/') || arg.starts_with('.') {
        return Location::Host(arg.to_string());
    }
    match arg.split_once(':') {
        Some((c, p)) if !c.is_empty() => Location::Container {
            container: c.to_string(),
            path: p.to_string(),
        },
        _ => Location::Host(arg.to_string()),
    }
}

/// Runs `container cp`.
pub async fn cp(global: &GlobalOptions, a: CpArgs) -> anyhow::Result<()> {
    let opts = CopyOptions {
        archive: a.archive,
        follow_link: a.follow_link,
    };
    let rt = global.runtime()?;
    match (parse_location(&a.src), parse_location(&a.dest)) {
        (Location::Container { container, path }, Location::Host(dest)) => {
            let dest = match dest.as_str() {
                "-" => HostPath::Tar(tokio::io::stdout()),
                _ => HostPath::Path(dest),
            };
            rt.container(&container)?
                .copy_out(&path, dest, opts)
                .await?;
        }
        (Location::Host(src), Location::Container { container, path }) => {
            let src = match src.as_str() {
                "-" => HostPath::Tar(tokio::io::stdin()),
                _ => HostPath::Path(src),
            };
            rt.container(&container)?.copy_in(src, &path, opts).await?;
        }
        (Location::Host(_), Location::Host(_)) => {
            bail!("one of SRC and DEST must be CONTAINER:PATH")
        }
        (Location::Container { .. }, Location::Container { .. }) => {
            bail!("copying between containers is not supported")
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locations_follow_docker() {
        let c = |n: &str, p: &str| Location::Container {
            container: n.into(),
            path: p.into(),
        };
        assert_eq!(parse_location("web:/etc/hosts"), c("web", "/etc/hosts"));
        assert_eq!(parse_location("web:rel/x"), c("web", "rel/x"));
        assert_eq!(parse_location("web:"), c("web", ""));
        assert_eq!(
            parse_location("/tmp/a:b"),
            Location::Host("/tmp/a:b".into())
        );
        assert_eq!(parse_location("./a:b"), Location::Host("./a:b".into()));
        assert_eq!(parse_location("file"), Location::Host("file".into()));
        assert_eq!(parse_location("-"), Location::Host("-".into()));
        assert_eq!(parse_location(":x"), Location::Host(":x".into()));
    }
}
