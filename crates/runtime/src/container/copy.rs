//! `cp`: files and directories between the host and a container, docker's path rules
//! (`agent::copy::plan`). The host side packs or unpacks the tar stream here; the container
//! side is a helper in the guest reached through the container's monitor. A stopped container
//! gets a monitor in hold mode for the copy: its VM boots with its disks and mounts, its
//! process does not run, its recorded state does not change.
//!
//! Ownership: copied into a container, files belong to root (0:0) unless `archive` keeps the
//! source's uid/gid; copied out, they belong to the calling user unless `archive`.

use std::path::Path;
use std::time::Duration;

use agent::copy as files;
use agent::{CopySource, PathStat};
use bytes::Bytes;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::UnixStream;
use tokio::sync::{mpsc, oneshot};

use super::start::Launch;
use super::{Container, ContainerError};
use crate::client;
use crate::state::Status;

/// How long a stopped container's VM may take to come up for a copy.
const HOLD_BOOT: Duration = Duration::from_secs(120);

/// Errors of the host side of a copy.
#[derive(Debug, thiserror::Error)]
pub enum CopyError {
    /// No path after `CONTAINER:`.
    #[error("no path given after the container name (use CONTAINER:/path)")]
    NoPath,
    /// The host source cannot be read.
    #[error("cannot copy {path}")]
    Source {
        /// The host path.
        path: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// Packing or unpacking files on the host failed.
    #[error("{0}")]
    Files(String),
    /// The tar stream given or asked for could not be read or written.
    #[error("copy the tar stream")]
    Stream(#[source] std::io::Error),
    /// The packing or unpacking thread failed.
    #[error("copy task")]
    Task(#[source] tokio::task::JoinError),
}

/// The host side of a copy.
#[derive(Debug)]
pub enum HostPath<S> {
    /// A file or directory on the host.
    Path(String),
    /// A tar stream (`-` on the command line; an Engine API archive body).
    Tar(S),
}

/// How to copy.
#[derive(Debug, Clone, Copy, Default)]
pub struct CopyOptions {
    /// Keep uid/gid of the source (`-a`).
    pub archive: bool,
    /// Follow the source path itself when it is a symlink (`-L`).
    pub follow_link: bool,
}

impl Container {
    /// Copies `path` of the container to `dest` on the host.
    pub async fn copy_out<W: AsyncWrite + Unpin>(
        &mut self,
        path: &str,
        dest: HostPath<W>,
        opts: CopyOptions,
    ) -> Result<(), ContainerError> {
        let path = container_path(path)?;
        let (stream, held) = self.copy_connection().await?;
        let r = copy_out(stream, self.id(), path, dest, opts, None).await;
        self.released(held, r).await
    }

    /// Copies `path` of the container as a tar stream to `out`, telling `stat` what the path
    /// is before the first byte: the Engine API's archive answer carries that in a header
    /// ahead of the stream (and `HEAD` wants nothing else: dropping the reader of `out`
    /// then ends the copy, the guest's packer is killed).
    pub async fn copy_out_archive<W: AsyncWrite + Unpin>(
        &mut self,
        path: &str,
        follow_link: bool,
        stat: oneshot::Sender<PathStat>,
        out: W,
    ) -> Result<(), ContainerError> {
        let path = container_path(path)?;
        let opts = CopyOptions {
            archive: true,
            follow_link,
        };
        let (stream, held) = self.copy_connection().await?;
        let r = copy_out(
            stream,
            self.id(),
            path,
            HostPath::Tar(out),
            opts,
            Some(stat),
        )
        .await;
        self.released(held, r).await
    }

    /// Copies `src` from the host to `path` in the container. The guest accepts or refuses
    /// the destination before any byte is read; a cut stream leaves nothing behind.
    pub async fn copy_in<R: AsyncRead + Unpin + Send + 'static>(
        &mut self,
        src: HostPath<R>,
        path: &str,
        opts: CopyOptions,
    ) -> Result<(), ContainerError> {
        let path = container_path(path)?;
        let source = match &src {
            HostPath::Path(p) => Some(host_source(p, opts.follow_link)?),
            HostPath::Tar(_) => None,
        };
        let (stream, held) = self.copy_connection().await?;
        let r = copy_in(stream, self.id(), src, source, path, opts).await;
        self.released(held, r).await
    }

    /// The container's own monitor while it runs; for a stopped container, one started in
    /// hold mode (`true`).
    pub(super) async fn copy_connection(&mut self) -> Result<(UnixStream, bool), ContainerError> {
        self.refresh()?;
        if self.status() == Status::Running {
            let stream = client::connect(self.rt.store(), self.id()).await?;
            return Ok((stream, false));
        }
        Ok((
            self.launch_and_connect(Launch::Hold, HOLD_BOOT).await?,
            true,
        ))
    }

    /// After a copy on a stopped container, waits until its hold-mode monitor has shut the
    /// VM down, so a `start` or another copy right after finds the container free again.
    pub(super) async fn released(
        &self,
        held: bool,
        result: Result<(), ContainerError>,
    ) -> Result<(), ContainerError> {
        if held {
            let freed = client::wait_stopped(self.rt.store(), self.id(), HOLD_BOOT).await;
            result?;
            freed?;
            return Ok(());
        }
        result
    }
}

fn container_path(path: &str) -> Result<&str, CopyError> {
    if path.is_empty() {
        return Err(CopyError::NoPath);
    }
    Ok(path)
}

fn files_err(e: &files::CopyError) -> ContainerError {
    CopyError::Files(files::one_line(e)).into()
}

/// Bytes from the monitor into the blocking unpacker; an `Err` item cuts the stream.
struct ChanReader {
    rx: mpsc::Receiver<Result<Bytes, String>>,
    cur: Bytes,
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
struct ChanWriter(mpsc::Sender<Bytes>);

impl std::io::Write for ChanWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0
            .blocking_send(Bytes::copy_from_slice(buf))
            .map_err(|_| std::io::Error::from(std::io::ErrorKind::BrokenPipe))?;
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

async fn copy_out<W: AsyncWrite + Unpin>(
    stream: UnixStream,
    id: &str,
    path: &str,
    dest: HostPath<W>,
    opts: CopyOptions,
    tell: Option<oneshot::Sender<PathStat>>,
) -> Result<(), ContainerError> {
    let (stat, mut session) = client::copy_out(stream, id, path, opts.follow_link).await?;
    if let Some(tell) = tell {
        // Nobody waiting for it any more is the same as a reader gone: the writes fail.
        let _ = tell.send(stat.clone());
    }
    let dest = match dest {
        HostPath::Tar(mut out) => {
            while let Some(b) = session.next_chunk().await? {
                out.write_all(&b).await.map_err(CopyError::Stream)?;
            }
            return Ok(out.flush().await.map_err(CopyError::Stream)?);
        }
        HostPath::Path(dest) => dest,
    };
    let kind = match std::fs::metadata(&dest) {
        Ok(m) if m.is_dir() => files::DestKind::Dir,
        Ok(_) => files::DestKind::File,
        Err(_) => files::DestKind::Missing,
    };
    let parent_is_dir = files::split_last(&dest)
        .map(|(p, _)| Path::new(&p).is_dir())
        .unwrap_or(true);
    let source = CopySource {
        is_dir: stat.is_dir(),
        contents_only: files::contents_only(path),
    };
    let target = files::plan(Some(&source), &dest, kind, parent_is_dir)
        .map_err(|e| CopyError::Files(e.to_string()))?;
    let unpack_opts = files::UnpackOptions {
        // SAFETY: geteuid/getegid cannot fail.
        owner: (!opts.archive).then(|| unsafe { (libc::geteuid(), libc::getegid()) }),
    };
    let (tx, rx) = mpsc::channel(16);
    let unpacker = tokio::task::spawn_blocking(move || {
        let reader = ChanReader {
            rx,
            cur: Bytes::new(),
        };
        files::unpack(reader, &target, &unpack_opts)
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
    let unpacked = unpacker.await.map_err(CopyError::Task)?;
    relayed?;
    unpacked.map_err(|e| files_err(&e))
}

/// What a host source is.
fn host_source(src: &str, follow_link: bool) -> Result<CopySource, CopyError> {
    let meta = if follow_link {
        std::fs::metadata(src)
    } else {
        std::fs::symlink_metadata(src)
    }
    .map_err(|source| CopyError::Source {
        path: src.to_string(),
        source,
    })?;
    Ok(CopySource {
        is_dir: meta.is_dir(),
        contents_only: files::contents_only(src),
    })
}

async fn copy_in<R: AsyncRead + Unpin + Send + 'static>(
    stream: UnixStream,
    id: &str,
    src: HostPath<R>,
    source: Option<CopySource>,
    path: &str,
    opts: CopyOptions,
) -> Result<(), ContainerError> {
    // The guest accepts or refuses the destination before any byte is read or packed.
    let mut session = client::copy_in(stream, id, path, source, opts.archive).await?;
    let (tx, mut rx) = mpsc::channel::<Bytes>(16);
    let packer = match src {
        HostPath::Tar(mut input) => {
            tokio::spawn(async move {
                let mut buf = vec![0u8; 64 * 1024];
                while let Ok(n) = input.read(&mut buf).await {
                    if n == 0 || tx.send(Bytes::copy_from_slice(&buf[..n])).await.is_err() {
                        break;
                    }
                }
            });
            None
        }
        HostPath::Path(src) => {
            let follow = opts.follow_link;
            Some(tokio::task::spawn_blocking(move || {
                let name = files::source_name(&src);
                let w = std::io::BufWriter::with_capacity(64 * 1024, ChanWriter(tx));
                files::pack(w, Path::new(&src), &name, follow).and_then(|mut w| {
                    std::io::Write::flush(&mut w).map_err(files::CopyError::Stream)
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
            .map_err(CopyError::Task)?
            .map_err(|e| files_err(&e))?;
    }
    session.finish().await?;
    Ok(())
}
