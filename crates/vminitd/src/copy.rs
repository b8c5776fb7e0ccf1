//! `container cp` in the guest. Each copy is a helper that vminitd forks from itself (no
//! program in the guest or the image is needed): it enters the container's mount namespace
//! with setns(2), which makes the container's `/` its root, so every path — in the rootfs,
//! a volume, a bind mount or a tmpfs — and every symlink is resolved the way the container
//! sees it and nothing of the guest's own filesystem is reachable. It closes every inherited
//! fd but its stdio, stats the path and reports over a status pipe (`R` + JSON stat, or a
//! typed error), then packs the path as a tar stream on its stdout (copy-out) or unpacks the
//! tar stream from its stdin (copy-in), with the shared rules of `agent::copy`. A failure
//! after that point is one line on its stderr and exit status 1.
//!
//! The helper is then an ordinary entry of the process table ([`Processes::adopt`]), so its
//! stdio rides the agent's flow-controlled `Data` frames like any process's.
//!
//! The builder's layer copies (`LayerOut`, `LayerIn`) are the same helper without a
//! container: it stays in the guest's own mount namespace, where the build's overlay
//! directories are, and packs or unpacks with `agent::layer` instead.

use std::io::{self, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use agent::copy::{self, DestKind, UnpackOptions};
use agent::layer;
use agent::{CopyIn, CopyOut, CopySource, CopyStarted, LayerIn, LayerOut, PathStat};

use crate::error::GuestError;
use crate::fdio::FdStream;
use crate::process::Processes;
use crate::sys::{self, cvt};

/// What the helper does once inside the container.
enum Job {
    Out {
        path: String,
        follow_link: bool,
    },
    In {
        path: String,
        source: Option<CopySource>,
        preserve_owner: bool,
    },
    /// Pack a guest directory as a layer.
    LayerOut {
        path: PathBuf,
    },
    /// Unpack a layer into a new guest directory.
    LayerIn {
        path: PathBuf,
    },
    /// Connect to a unix socket in the container and relay it over stdio.
    Connect {
        path: String,
    },
    /// Relay an accepted connection (the fd the helper keeps) over stdio.
    Relay {
        conn: i32,
    },
}

/// Starts a copy-out helper; its stdout carries the tar stream.
pub async fn copy_out(procs: &Arc<Processes>, req: CopyOut) -> Result<CopyStarted, GuestError> {
    let job = Job::Out {
        path: req.path,
        follow_link: req.follow_link,
    };
    start(procs, Some(&req.container), job).await
}

/// Starts a copy-in helper; it unpacks what arrives on its stdin.
pub async fn copy_in(procs: &Arc<Processes>, req: CopyIn) -> Result<CopyStarted, GuestError> {
    let job = Job::In {
        path: req.path,
        source: req.source,
        preserve_owner: req.preserve_owner,
    };
    start(procs, Some(&req.container), job).await
}

/// Starts a layer-out helper; its stdout carries the layer tar of the guest directory.
pub async fn layer_out(procs: &Arc<Processes>, req: LayerOut) -> Result<CopyStarted, GuestError> {
    let job = Job::LayerOut {
        path: guest_path(&req.path)?,
    };
    start(procs, None, job).await
}

/// Starts a layer-in helper; it unpacks the layer tar on its stdin into a new directory.
pub async fn layer_in(procs: &Arc<Processes>, req: LayerIn) -> Result<CopyStarted, GuestError> {
    let job = Job::LayerIn {
        path: guest_path(&req.path)?,
    };
    start(procs, None, job).await
}

/// Starts a helper connected to the unix socket `path` in `container`: what the host writes
/// to its stdin goes to the socket, what the socket sends comes on its stdout.
pub async fn socket_connect(
    procs: &Arc<Processes>,
    container: &str,
    path: &str,
) -> Result<CopyStarted, GuestError> {
    if !path.starts_with('/') {
        return Err(GuestError::InvalidArgument(format!(
            "socket path {path} is not absolute"
        )));
    }
    let job = Job::Connect {
        path: path.to_string(),
    };
    start(procs, Some(container), job).await
}

/// Starts a helper relaying the accepted connection `conn` over its stdin and stdout, as
/// [`socket_connect`]'s.
pub async fn socket_relay(
    procs: &Arc<Processes>,
    conn: OwnedFd,
) -> Result<CopyStarted, GuestError> {
    let job = Job::Relay {
        conn: conn.as_raw_fd(),
    };
    start_with(procs, None, job, Some(conn)).await
}

/// A layer request's path: absolute, since no container's `/` is there to resolve it from.
fn guest_path(path: &str) -> Result<PathBuf, GuestError> {
    if !path.starts_with('/') {
        return Err(GuestError::InvalidArgument(format!(
            "layer directory {path} is not an absolute guest path"
        )));
    }
    Ok(PathBuf::from(path))
}

/// Forks the helper for `job`, inside `container`'s mount namespace or, without one, in the
/// guest's own.
async fn start(
    procs: &Arc<Processes>,
    container: Option<&str>,
    job: Job,
) -> Result<CopyStarted, GuestError> {
    start_with(procs, container, job, None).await
}

/// [`start`], handing the helper `extra` (kept open across its fd cleanup, closed here).
async fn start_with(
    procs: &Arc<Processes>,
    container: Option<&str>,
    job: Job,
    extra: Option<OwnedFd>,
) -> Result<CopyStarted, GuestError> {
    let mnt = match container {
        Some(c) => {
            let init = procs.running_container(c)?;
            let ns = format!("/proc/{init}/ns/mnt");
            let fd = sys::open(Path::new(&ns), libc::O_RDONLY, 0)
                .map_err(|e| GuestError::sys(format!("open {ns}"), e))?;
            Some(fd)
        }
        None => None,
    };
    let pipe = || sys::pipe().map_err(|e| GuestError::sys("pipe", e));
    let (status_r, status_w) = pipe()?;
    let (in_r, in_w) = match job {
        Job::In { .. } | Job::LayerIn { .. } | Job::Connect { .. } | Job::Relay { .. } => {
            let (r, w) = pipe()?;
            (Some(r), Some(w))
        }
        Job::Out { .. } | Job::LayerOut { .. } => (None, None),
    };
    let (out_r, out_w) = pipe()?;
    let (err_r, err_w) = pipe()?;
    let pid = crate::spawn::raw_fork(0).map_err(|e| GuestError::sys("fork", e))?;
    if pid == 0 {
        drop((status_r, in_w, out_r, err_r));
        helper_main(job, mnt, status_w, in_r, out_w, err_w, extra)
    }
    drop((mnt, status_w, in_r, out_w, err_w, extra));
    let reg = |fd| FdStream::new(fd).map_err(|e| GuestError::sys("register pipe", e));
    let (stdin, stdout, stderr) = match (in_w.map(reg).transpose(), reg(out_r), reg(err_r)) {
        (Ok(i), Ok(o), Ok(e)) => (i, o, e),
        (Err(e), _, _) | (_, Err(e), _) | (_, _, Err(e)) => {
            let _ = sys::kill(pid, libc::SIGKILL);
            return Err(e);
        }
    };
    // A layer helper belongs to no container: "" names none, so `kill` with `all` signals
    // the helper alone and `delete` tears nothing else down.
    let handle = procs.adopt(container.unwrap_or(""), pid, stdin, stdout, stderr);
    let report = match FdStream::new(status_r) {
        Ok(s) => read_all(&s).await,
        Err(e) => Err(e),
    };
    let started = match report {
        Ok(r) => decode(&r).map(|stat| CopyStarted { handle, stat }),
        Err(e) => Err(GuestError::sys("read the copy helper's status", e)),
    };
    if started.is_err() {
        procs.discard(handle);
    }
    started
}

async fn read_all(s: &FdStream) -> io::Result<Vec<u8>> {
    let mut all = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match s.read(&mut buf).await? {
            0 => return Ok(all),
            n => all.extend_from_slice(&buf[..n]),
        }
    }
}

/// Status message kinds: ready (JSON stat follows), not found, invalid, exists already, OS
/// error (errno).
const READY: u8 = b'R';
const NOT_FOUND: u8 = b'N';
const INVALID: u8 = b'I';
const EXISTS: u8 = b'A';
const OS: u8 = b'O';

fn decode(buf: &[u8]) -> Result<Option<PathStat>, GuestError> {
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    match buf.split_first() {
        Some((&READY, [])) => Ok(None),
        Some((&READY, json)) => serde_json::from_slice(json)
            .map(Some)
            .map_err(|e| GuestError::InvalidArgument(format!("copy helper status: {e}"))),
        Some((&NOT_FOUND, m)) => Err(GuestError::NotFound(text(m))),
        Some((&INVALID, m)) => Err(GuestError::InvalidArgument(text(m))),
        Some((&EXISTS, m)) => Err(GuestError::AlreadyExists(text(m))),
        Some((&OS, m)) if m.len() >= 4 => {
            let errno = i32::from_le_bytes([m[0], m[1], m[2], m[3]]);
            Err(GuestError::sys(
                text(&m[4..]),
                io::Error::from_raw_os_error(errno),
            ))
        }
        _ => Err(GuestError::sys(
            "the copy helper exited during setup",
            io::Error::from_raw_os_error(libc::EIO),
        )),
    }
}

/// A failure of the helper before it is ready: the status kind and the message.
type Fail = (u8, Option<io::Error>, String);

/// The child: never returns.
fn helper_main(
    job: Job,
    mnt: Option<OwnedFd>,
    status: OwnedFd,
    stdin: Option<OwnedFd>,
    stdout: OwnedFd,
    stderr: OwnedFd,
    extra: Option<OwnedFd>,
) -> ! {
    let mut status = std::fs::File::from(status);
    let fds = Fds {
        mnt: mnt.as_ref().map(|f| f.as_raw_fd()),
        stdin: stdin.as_ref().map(|f| f.as_raw_fd()),
        stdout: stdout.as_raw_fd(),
        stderr: stderr.as_raw_fd(),
        status: status.as_raw_fd(),
        extra: extra.as_ref().map(|f| f.as_raw_fd()),
    };
    // `enter` closes these numbers itself (close_range); dropping the owners afterwards
    // would close them a second time. `extra` stays open: the job owns it.
    std::mem::forget((mnt, stdin, stdout, stderr, extra));
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        enter(&fds)?;
        prepare(&job)
    }));
    let code = match result {
        Ok(Ok(ready)) => {
            let _ = status.write_all(&ready.message);
            drop(status);
            match ready.run() {
                Ok(()) => 0,
                Err(e) => {
                    let _ = writeln!(io::stderr(), "{}", copy::one_line(&*e));
                    1
                }
            }
        }
        Ok(Err((kind, errno, message))) => {
            let mut buf = vec![kind];
            if kind == OS {
                let n = errno.and_then(|e| e.raw_os_error()).unwrap_or(libc::EIO);
                buf.extend_from_slice(&n.to_le_bytes());
            }
            buf.extend_from_slice(message.as_bytes());
            let _ = status.write_all(&buf);
            1
        }
        Err(_) => 1,
    };
    // SAFETY: _exit skips the destructors of the parent's state this forked copy carries.
    unsafe { libc::_exit(code) }
}

/// The raw fds the helper starts with.
struct Fds {
    /// The container's mount namespace; none for a layer helper.
    mnt: Option<i32>,
    stdin: Option<i32>,
    stdout: i32,
    stderr: i32,
    status: i32,
    /// An fd the job needs (a connection to relay), kept open.
    extra: Option<i32>,
}

/// Joins the container's mount namespace (if any) and makes fds 0-2 and the status pipe the
/// only open fds.
fn enter(fds: &Fds) -> Result<(), Fail> {
    let os = |what: &str| {
        let what = what.to_string();
        move |e: io::Error| (OS, Some(e), what)
    };
    if let Some(mnt) = fds.mnt {
        // SAFETY: setns on an fd we own; this child has a single thread.
        cvt(unsafe { libc::setns(mnt, libc::CLONE_NEWNS) })
            .map_err(os("join the container's mount namespace"))?;
    }
    std::env::set_current_dir("/").map_err(os("chdir /"))?;
    let input = match fds.stdin {
        Some(fd) => fd,
        // SAFETY: a valid C string; the fd is closed by close_range below.
        None => cvt(unsafe { libc::open(c"/dev/null".as_ptr(), libc::O_RDONLY) })
            .map_err(os("open /dev/null"))?,
    };
    for (fd, target) in [(input, 0), (fds.stdout, 1), (fds.stderr, 2)] {
        // SAFETY: dup2 on fds we own.
        cvt(unsafe { libc::dup2(fd, target) }).map_err(os("set up stdio"))?;
    }
    // Everything else vminitd had open (other processes' pipes, the agent port) is closed,
    // so a long copy holds nothing of theirs open.
    let mut keep: Vec<i32> = [Some(fds.status), fds.extra]
        .into_iter()
        .flatten()
        .filter(|&fd| fd >= 3)
        .collect();
    keep.sort_unstable();
    let mut lo = 3;
    for hi in keep.into_iter().map(|k| k - 1).chain([i32::MAX]) {
        if lo <= hi {
            // SAFETY: close_range on fd numbers; none of them is used afterwards.
            unsafe {
                libc::syscall(
                    libc::SYS_close_range,
                    lo.unsigned_abs(),
                    hi.unsigned_abs(),
                    0u32,
                )
            };
        }
        lo = hi.saturating_add(2);
    }
    // SAFETY: umask takes and returns plain integers.
    unsafe { libc::umask(0o022) };
    Ok(())
}

/// A helper that is ready to move data: its status message and its work.
struct Ready {
    message: Vec<u8>,
    work: Work,
}

enum Work {
    Pack {
        path: PathBuf,
        name: String,
        follow_link: bool,
    },
    Unpack {
        target: copy::Target,
        opts: UnpackOptions,
    },
    LayerPack {
        dir: PathBuf,
    },
    LayerUnpack {
        dest: PathBuf,
    },
    Relay {
        sock: OwnedFd,
    },
}

impl Ready {
    fn run(self) -> Result<(), Box<dyn std::error::Error>> {
        match self.work {
            Work::Pack {
                path,
                name,
                follow_link,
            } => {
                let out = io::BufWriter::with_capacity(64 * 1024, io::stdout().lock());
                let mut out = copy::pack(out, &path, &name, follow_link)?;
                Ok(out.flush().map_err(copy::CopyError::Stream)?)
            }
            Work::Unpack { target, opts } => Ok(copy::unpack(io::stdin().lock(), &target, &opts)?),
            Work::LayerPack { dir } => {
                let out = io::BufWriter::with_capacity(64 * 1024, io::stdout().lock());
                let mut out = layer::pack(out, &dir)?;
                Ok(out.flush().map_err(layer::LayerError::Stream)?)
            }
            Work::LayerUnpack { dest } => {
                let input = io::BufReader::with_capacity(64 * 1024, io::stdin().lock());
                let report = layer::unpack(input, &dest)?;
                for x in report.dropped_xattrs {
                    let _ = writeln!(
                        io::stderr(),
                        "warning: the filesystem of {} does not support the xattr {x}",
                        dest.display()
                    );
                }
                Ok(())
            }
            Work::Relay { sock } => Ok(relay(sock)?),
        }
    }
}

/// Copies `from` to `to` until the end of `from`, with plain read and write calls. Not
/// `io::copy`: between a socket and a pipe it splices, and splice(2) holds the pipe's lock
/// while it waits for the socket, so vminitd's own read of the other end of the pipe would
/// wait in the kernel, uninterruptibly, for as long as the socket is quiet.
fn pump(from: &mut impl io::Read, to: &mut impl Write) -> io::Result<()> {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = match from.read(&mut buf) {
            Ok(0) => return Ok(()),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        to.write_all(&buf[..n])?;
    }
}

/// Moves bytes between stdio and the connection until both directions end: a forked child
/// carries stdin to the socket (then shuts its write side, so the peer sees the end), this
/// process the socket to stdout (then closes stdout, so the host sees the end). Plain
/// blocking copies: each direction waits only for its own data.
fn relay(sock: OwnedFd) -> io::Result<()> {
    use std::mem::ManuallyDrop;
    use std::os::unix::net::UnixStream;
    let sock = UnixStream::from(sock);
    let pid = crate::spawn::raw_fork(0)?;
    if pid == 0 {
        // SAFETY: fd 1 is this process's stdout: the other direction's, closed here so only
        // the parent holds it.
        unsafe { libc::close(1) };
        // SAFETY: fd 0 is the helper's stdin pipe, open for its whole life; not closed by us.
        let mut input = ManuallyDrop::new(unsafe { std::fs::File::from_raw_fd(0) });
        let code = match pump(&mut *input, &mut &sock) {
            Ok(()) => 0,
            Err(_) => 1,
        };
        let _ = sock.shutdown(std::net::Shutdown::Write);
        // SAFETY: _exit skips the destructors of the parent's state this forked copy carries.
        unsafe { libc::_exit(code) }
    }
    // SAFETY: fd 0 belongs to the child's direction now.
    unsafe { libc::close(0) };
    // SAFETY: fd 1 is the helper's stdout pipe; closed explicitly below.
    let mut output = ManuallyDrop::new(unsafe { std::fs::File::from_raw_fd(1) });
    let copied = pump(&mut &sock, &mut *output);
    // SAFETY: closing our stdout tells the host this direction ended.
    unsafe { libc::close(1) };
    let _ = sock.shutdown(std::net::Shutdown::Read);
    let mut status = 0;
    // SAFETY: waits for our own child.
    unsafe { libc::waitpid(pid, &mut status, 0) };
    copied
}

/// Container paths are taken from its `/`.
fn absolute(path: &str) -> String {
    if path.starts_with('/') {
        path.to_string()
    } else {
        format!("/{path}")
    }
}

fn prepare(job: &Job) -> Result<Ready, Fail> {
    match job {
        Job::Connect { path } => match std::os::unix::net::UnixStream::connect(path) {
            Ok(sock) => Ok(Ready {
                message: vec![READY],
                work: Work::Relay { sock: sock.into() },
            }),
            Err(e) if matches!(e.raw_os_error(), Some(libc::ENOENT | libc::ENOTDIR)) => {
                Err((NOT_FOUND, None, format!("no socket at {path}")))
            }
            Err(e) => Err((OS, Some(e), format!("connect to {path}"))),
        },
        Job::Relay { conn } => {
            // SAFETY: the fd handed to this helper, kept open by `enter`, owned by no one
            // else in this process.
            let sock = unsafe { OwnedFd::from_raw_fd(*conn) };
            Ok(Ready {
                message: vec![READY],
                work: Work::Relay { sock },
            })
        }
        Job::LayerOut { path } => match std::fs::symlink_metadata(path) {
            Ok(m) if m.is_dir() => Ok(Ready {
                message: vec![READY],
                work: Work::LayerPack { dir: path.clone() },
            }),
            Ok(_) => Err((
                INVALID,
                None,
                format!("{} is not a directory", path.display()),
            )),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Err((
                NOT_FOUND,
                None,
                format!("layer directory {} does not exist", path.display()),
            )),
            Err(e) => Err((OS, Some(e), format!("stat {}", path.display()))),
        },
        Job::LayerIn { path } => {
            if std::fs::symlink_metadata(path).is_ok() {
                return Err((EXISTS, None, format!("{} exists already", path.display())));
            }
            let parent = path.parent().unwrap_or(Path::new("/"));
            if !parent.is_dir() {
                return Err((
                    NOT_FOUND,
                    None,
                    format!("directory {} does not exist", parent.display()),
                ));
            }
            Ok(Ready {
                message: vec![READY],
                work: Work::LayerUnpack { dest: path.clone() },
            })
        }
        Job::Out { path, follow_link } => {
            let abs = absolute(path);
            let meta = if *follow_link {
                std::fs::metadata(&abs)
            } else {
                std::fs::symlink_metadata(&abs)
            };
            let meta = match meta {
                Ok(m) => m,
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    return Err((NOT_FOUND, None, format!("Could not find the file {path}")))
                }
                Err(e) if e.raw_os_error() == Some(libc::ENOTDIR) => {
                    return Err((NOT_FOUND, None, format!("Could not find the file {path}")))
                }
                Err(e) => return Err((OS, Some(e), format!("stat {path}"))),
            };
            let link_target = if meta.file_type().is_symlink() {
                std::fs::read_link(&abs)
                    .map(|t| t.to_string_lossy().into_owned())
                    .unwrap_or_default()
            } else {
                String::new()
            };
            let name = copy::source_name(path);
            let stat = PathStat {
                name: name.clone(),
                size: meta.len(),
                mode: meta.mode(),
                mtime: meta.mtime(),
                link_target,
            };
            let mut message = vec![READY];
            message.extend_from_slice(&serde_json::to_vec(&stat).unwrap_or_default());
            Ok(Ready {
                message,
                work: Work::Pack {
                    path: PathBuf::from(abs),
                    name,
                    follow_link: *follow_link,
                },
            })
        }
        Job::In {
            path,
            source,
            preserve_owner,
        } => {
            let abs = absolute(path);
            let kind = match std::fs::metadata(&abs) {
                Ok(m) if m.is_dir() => DestKind::Dir,
                Ok(_) => DestKind::File,
                Err(_) => DestKind::Missing,
            };
            let parent_is_dir = copy::split_last(&abs)
                .map(|(parent, _)| Path::new(&parent).is_dir())
                .unwrap_or(true);
            let target = copy::plan(source.as_ref(), &abs, kind, parent_is_dir).map_err(|e| {
                // A destination that is not there is "not found" to front ends (the Engine
                // API's 404), a wrong kind of destination a bad argument.
                let code = match e {
                    copy::PlanError::DestDirMissing(_) | copy::PlanError::ParentMissing(_) => {
                        NOT_FOUND
                    }
                    _ => INVALID,
                };
                (code, None, e.to_string())
            })?;
            // Refuse a read-only destination before any byte is sent (access(2) reports
            // EROFS for a read-only mount, whatever the permission bits say).
            let dir = sys::cstr(&target.dir).map_err(|e| (OS, Some(e), path.clone()))?;
            // SAFETY: a valid C string.
            let r = unsafe { libc::access(dir.as_ptr(), libc::W_OK) };
            if r != 0 {
                let e = io::Error::last_os_error();
                return Err((
                    OS,
                    Some(e),
                    format!("cannot copy to {}", target.dir.display()),
                ));
            }
            Ok(Ready {
                message: vec![READY],
                work: Work::Unpack {
                    target,
                    opts: UnpackOptions {
                        owner: (!preserve_owner).then_some((0, 0)),
                    },
                },
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_messages_decode_to_typed_errors() {
        assert!(matches!(decode(b"R"), Ok(None)));
        let stat = PathStat {
            name: "x".into(),
            mode: 0o40755,
            ..Default::default()
        };
        let mut msg = vec![READY];
        msg.extend_from_slice(&serde_json::to_vec(&stat).unwrap());
        assert_eq!(decode(&msg).unwrap(), Some(stat));
        assert!(matches!(decode(b"Nnope"), Err(GuestError::NotFound(m)) if m == "nope"));
        assert!(
            matches!(decode(b"A/l/1 exists"), Err(GuestError::AlreadyExists(m)) if m == "/l/1 exists")
        );
        let mut ro = vec![OS];
        ro.extend_from_slice(&libc::EROFS.to_le_bytes());
        ro.extend_from_slice(b"cannot copy to /");
        let e = decode(&ro).unwrap_err();
        assert!(e.to_string().starts_with("cannot copy to /: "), "{e}");
        assert!(decode(b"").is_err());
    }
}
