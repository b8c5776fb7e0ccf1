//! `container cp`: copies files and directories between the host and a container, docker's
//! syntax and path rules (`agent::copy::plan`). The host side packs or unpacks the tar stream
//! here; the container side is a helper in the guest reached through the container's
//! monitor. A stopped container gets a monitor in hold mode for the copy: its VM boots with
//! its disks and mounts, its process does not run, its recorded state does not change. `-`
//! stands for a tar stream on stdin or stdout.
//!
//! Ownership: copied into a container, files belong to root (0:0) unless `-a` keeps the
//! source's uid/gid; copied out, they belong to the calling user unless `-a`.

use std::path::Path;
use std::time::Duration;

use anyhow::{bail, Context};
use clap::Args;
use runtime::client;
use runtime::state::{Status, Store};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;

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
    match (parse_location(&a.src), parse_location(&a.dest)) {
        (Location::Container { container, path }, Location::Host(dest)) => {
            let path = container_path(&path)?;
            let (stream, id, held) = connect(global, &container).await?;
            let r = copy_out(stream, &id, path, &dest, &a).await;
            released(held, &id, r).await
        }
        (Location::Host(src), Location::Container { container, path }) => {
            let path = container_path(&path)?;
            let source = host_source(&src, a.follow_link)?;
            let (stream, id, held) = connect(global, &container).await?;
            let r = copy_in(stream, &id, &src, source, path, &a).await;
            released(held, &id, r).await
        }
        (Location::Host(_), Location::Host(_)) => {
            bail!("one of SRC and DEST must be CONTAINER:PATH")
        }
        (Location::Container { .. }, Location::Container { .. }) => {
            bail!("copying between containers is not supported")
        }
    }
}

/// How long a stopped container's VM may take to come up for a copy.
const HOLD_BOOT: Duration = Duration::from_secs(120);

/// A monitor connection for a copy: the container's own monitor while it runs; for a stopped
/// container, one started in hold mode (its VM runs for this copy only, its process does
/// not, and its recorded state stays as it was).
async fn connect(
    global: &GlobalOptions,
    container: &str,
) -> anyhow::Result<(tokio::net::UnixStream, String, Option<Store>)> {
    let store = super::store(global)?;
    let record = store.reconcile(store.resolve(container)?)?;
    if record.status == Status::Running {
        let stream = client::connect(&store, &record.id)
            .await
            .map_err(|_| anyhow::anyhow!("container {container} is not running"))?;
        return Ok((stream, record.id, None));
    }
    let cmd = super::run::monitor_command(global)?;
    let pid = runtime::container::start_for_copy(&store, &record.id, &cmd)?;
    let stream = client::connect_starting(&store, &record.id, pid, HOLD_BOOT).await?;
    Ok((stream, record.id, Some(store)))
}

/// After a copy on a stopped container, waits until its hold-mode monitor has shut the VM
/// down, so a `start` or another copy right after finds the container free again.
async fn released(held: Option<Store>, id: &str, result: anyhow::Result<()>) -> anyhow::Result<()> {
    if let Some(store) = held {
        let freed = client::wait_stopped(&store, id, HOLD_BOOT).await;
        result?;
        freed?;
        return Ok(());
    }
    result
}

fn container_path(path: &str) -> anyhow::Result<&str> {
    if path.is_empty() {
        bail!("no path given after the container name (use CONTAINER:/path)");
    }
    Ok(path)
}

/// Bytes from the monitor into the blocking unpacker; an `Err` item cuts the stream.
struct ChanReader {
    rx: mpsc::Receiver<Result<bytes::Bytes, String>>,
    cur: bytes::Bytes,
}

impl std::io::Read for ChanReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        while self.cur.is_empty() {
            match self.rx.blocking_recv() {
                Some(Ok(b)) => self.cur = b,
                Some(Err(m)) => return Err(std::io::Error::other(m)),
                None => return Ok(0),
            }
        }
        let n = buf.len().min(self.cur.len());
        buf[..n].copy_from_slice(&self.cur.split_to(n));
        Ok(n)
    }
}

/// Bytes from the blocking packer to the monitor.
struct ChanWriter(mpsc::Sender<bytes::Bytes>);

impl std::io::Write for ChanWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0
            .blocking_send(bytes::Bytes::copy_from_slice(buf))
            .map_err(|_| std::io::Error::from(std::io::ErrorKind::BrokenPipe))?;
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

async fn copy_out(
    stream: tokio::net::UnixStream,
    id: &str,
    path: &str,
    dest: &str,
    a: &CpArgs,
) -> anyhow::Result<()> {
    let (stat, mut session) = client::copy_out(stream, id, path, a.follow_link).await?;
    if dest == "-" {
        let mut out = tokio::io::stdout();
        while let Some(b) = session.next_chunk().await? {
            out.write_all(&b).await.context("write to stdout")?;
        }
        return out.flush().await.context("write to stdout");
    }
    let kind = match std::fs::metadata(dest) {
        Ok(m) if m.is_dir() => agent::copy::DestKind::Dir,
        Ok(_) => agent::copy::DestKind::File,
        Err(_) => agent::copy::DestKind::Missing,
    };
    let parent_is_dir = agent::copy::split_last(dest)
        .map(|(p, _)| Path::new(&p).is_dir())
        .unwrap_or(true);
    let source = agent::CopySource {
        is_dir: stat.is_dir(),
        contents_only: agent::copy::contents_only(path),
    };
    let target = agent::copy::plan(Some(&source), dest, kind, parent_is_dir)?;
    let opts = agent::copy::UnpackOptions {
        // SAFETY: geteuid/getegid cannot fail.
        owner: (!a.archive).then(|| unsafe { (libc::geteuid(), libc::getegid()) }),
    };
    let (tx, rx) = mpsc::channel(16);
    let unpacker = tokio::task::spawn_blocking(move || {
        let reader = ChanReader {
            rx,
            cur: bytes::Bytes::new(),
        };
        agent::copy::unpack(reader, &target, &opts)
    });
    let relayed = loop {
        match session.next_chunk().await {
            Ok(Some(b)) => {
                if tx.send(Ok(b)).await.is_err() {
                    break Ok(());
                }
            }
            Ok(None) => break Ok(()),
            Err(e) => {
                let _ = tx.send(Err(e.to_string())).await;
                break Err(e);
            }
        }
    };
    drop(tx);
    let unpacked = unpacker.await.context("unpack task")?;
    relayed?;
    unpacked.map_err(|e| anyhow::anyhow!(agent::copy::one_line(&e)))
}

/// What a host source is; `None` for `-` (a raw tar stream on stdin).
fn host_source(src: &str, follow_link: bool) -> anyhow::Result<Option<agent::CopySource>> {
    if src == "-" {
        return Ok(None);
    }
    let meta = if follow_link {
        std::fs::metadata(src)
    } else {
        std::fs::symlink_metadata(src)
    }
    .with_context(|| format!("cannot copy {src}"))?;
    Ok(Some(agent::CopySource {
        is_dir: meta.is_dir(),
        contents_only: agent::copy::contents_only(src),
    }))
}

async fn copy_in(
    stream: tokio::net::UnixStream,
    id: &str,
    src: &str,
    source: Option<agent::CopySource>,
    path: &str,
    a: &CpArgs,
) -> anyhow::Result<()> {
    // The guest accepts or refuses the destination before any byte is read or packed.
    let mut session = client::copy_in(stream, id, path, source.clone(), a.archive).await?;
    let (tx, mut rx) = mpsc::channel::<bytes::Bytes>(16);
    let packer = match source {
        None => {
            tokio::spawn(async move {
                let mut stdin = tokio::io::stdin();
                let mut buf = vec![0u8; 64 * 1024];
                while let Ok(n) = stdin.read(&mut buf).await {
                    if n == 0
                        || tx
                            .send(bytes::Bytes::copy_from_slice(&buf[..n]))
                            .await
                            .is_err()
                    {
                        break;
                    }
                }
            });
            None
        }
        Some(_) => {
            let (src, follow) = (src.to_string(), a.follow_link);
            Some(tokio::task::spawn_blocking(move || {
                let name = agent::copy::source_name(&src);
                let w = std::io::BufWriter::with_capacity(64 * 1024, ChanWriter(tx));
                agent::copy::pack(w, Path::new(&src), &name, follow).and_then(|mut w| {
                    std::io::Write::flush(&mut w).map_err(agent::copy::CopyError::Stream)
                })
            }))
        }
    };
    while let Some(b) = rx.recv().await {
        session.send(b).await?;
    }
    if let Some(p) = packer {
        // A failed pack drops the session without finishing it: the guest sees a cut
        // stream and removes what it staged.
        p.await
            .context("pack task")?
            .map_err(|e| anyhow::anyhow!(agent::copy::one_line(&e)))?;
    }
    session.finish().await?;
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
