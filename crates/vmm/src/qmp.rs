//! A small QMP client for what templates need: save a paused VM's device state and restore
//! it into a new QEMU (`x-ignore-shared` migration, guest RAM staying in its memory file).
//!
//! ```text
//!  template QEMU (RAM file share=on)            clone QEMU (same file, share=off, -incoming defer)
//!  stop                                          migrate-set-capabilities x-ignore-shared
//!  migrate-set-capabilities x-ignore-shared      getfd state  (STATE opened here, passed)
//!  getfd state (STATE opened here, passed)       migrate-incoming fd:state
//!  migrate fd:state   ── STATE (≈50 KB) ───────▶ query-migrate … completed
//!  query-migrate … completed                     cont
//!  quit
//! ```
//! Only device state travels; RAM pages are the file's, copied on write by each clone. The
//! state file is opened by us and handed over the QMP socket (`SCM_RIGHTS`) rather than named
//! in an `exec:` URI: QEMU then never starts a process, so its seccomp sandbox can forbid it
//! (`spawn=deny`), and it never opens a path of our choosing.

use std::io::{BufRead, BufReader, IoSlice, Write};
use std::os::fd::{AsRawFd, BorrowedFd};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

/// The name a state file's descriptor is known by in QEMU (`getfd`, `fd:` URIs).
const STATE_FD: &str = "state";

/// How long a save or a restore may take.
const MIGRATE_TIMEOUT: Duration = Duration::from_secs(60);

/// Errors talking QMP.
#[derive(Debug, thiserror::Error)]
pub enum QmpError {
    /// The socket could not be reached in time.
    #[error("connect to QMP socket {}", .path.display())]
    Connect {
        /// The socket.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// Reading or writing the socket failed.
    #[error("QMP {command}")]
    Io {
        /// The command.
        command: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// QEMU answered with an error.
    #[error("QMP {command}: {message}")]
    Command {
        /// The command.
        command: String,
        /// QEMU's description.
        message: String,
    },
    /// The migration failed or did not finish in time.
    #[error("migration {0}")]
    Migration(String),
}

/// One QMP connection, capabilities negotiated.
pub struct Qmp {
    reader: BufReader<UnixStream>,
    writer: UnixStream,
}

impl Qmp {
    /// Connects to `path`, retrying until `timeout` (QEMU creates the socket as it starts).
    pub fn connect(path: &Path, timeout: Duration) -> Result<Qmp, QmpError> {
        let deadline = Instant::now() + timeout;
        let stream = loop {
            match UnixStream::connect(path) {
                Ok(s) => break s,
                Err(source) if Instant::now() > deadline => {
                    return Err(QmpError::Connect {
                        path: path.to_path_buf(),
                        source,
                    })
                }
                Err(_) => std::thread::sleep(Duration::from_millis(5)),
            }
        };
        let io = |source| QmpError::Io {
            command: "greeting".into(),
            source,
        };
        stream.set_read_timeout(Some(MIGRATE_TIMEOUT)).map_err(io)?;
        let writer = stream.try_clone().map_err(io)?;
        let mut qmp = Qmp {
            reader: BufReader::new(stream),
            writer,
        };
        qmp.read_message("greeting")?;
        qmp.execute("qmp_capabilities", None)?;
        Ok(qmp)
    }

    fn read_message(&mut self, command: &str) -> Result<Value, QmpError> {
        let mut line = String::new();
        let n = self
            .reader
            .read_line(&mut line)
            .map_err(|source| QmpError::Io {
                command: command.to_string(),
                source,
            })?;
        if n == 0 {
            return Err(QmpError::Io {
                command: command.to_string(),
                source: std::io::ErrorKind::UnexpectedEof.into(),
            });
        }
        serde_json::from_str(&line).map_err(|e| QmpError::Io {
            command: command.to_string(),
            source: std::io::Error::new(std::io::ErrorKind::InvalidData, e),
        })
    }

    /// Runs one command and returns its `return` value (events in between are skipped).
    pub fn execute(&mut self, command: &str, arguments: Option<Value>) -> Result<Value, QmpError> {
        self.execute_with_fd(command, arguments, None)
    }

    /// [`Qmp::execute`], with `fd` passed along (`SCM_RIGHTS`), as `getfd` and `add-fd` take
    /// theirs.
    fn execute_with_fd(
        &mut self,
        command: &str,
        arguments: Option<Value>,
        fd: Option<BorrowedFd<'_>>,
    ) -> Result<Value, QmpError> {
        let mut msg = json!({ "execute": command });
        if let Some(a) = arguments {
            msg["arguments"] = a;
        }
        let mut text = msg.to_string();
        text.push('\n');
        let io = |source| QmpError::Io {
            command: command.to_string(),
            source,
        };
        match fd {
            None => self.writer.write_all(text.as_bytes()).map_err(io)?,
            Some(fd) => {
                use nix::sys::socket::{sendmsg, ControlMessage, MsgFlags};
                let fds = [fd.as_raw_fd()];
                let sent = sendmsg::<()>(
                    self.writer.as_raw_fd(),
                    &[IoSlice::new(text.as_bytes())],
                    &[ControlMessage::ScmRights(&fds)],
                    MsgFlags::empty(),
                    None,
                )
                .map_err(|e| io(e.into()))?;
                // A command is a few dozen bytes: a short send would mean a broken socket.
                if sent != text.len() {
                    return Err(io(std::io::ErrorKind::WriteZero.into()));
                }
            }
        }
        loop {
            let reply = self.read_message(command)?;
            if let Some(r) = reply.get("return") {
                return Ok(r.clone());
            }
            if let Some(e) = reply.get("error") {
                return Err(QmpError::Command {
                    command: command.to_string(),
                    message: e
                        .get("desc")
                        .and_then(Value::as_str)
                        .unwrap_or("unknown error")
                        .to_string(),
                });
            }
        }
    }

    fn ignore_shared(&mut self) -> Result<(), QmpError> {
        self.execute(
            "migrate-set-capabilities",
            Some(json!({"capabilities": [{"capability": "x-ignore-shared", "state": true}]})),
        )?;
        Ok(())
    }

    /// Polls `query-migrate` until it completes.
    fn wait_migration(&mut self) -> Result<(), QmpError> {
        let deadline = Instant::now() + MIGRATE_TIMEOUT;
        loop {
            let r = self.execute("query-migrate", None)?;
            match r.get("status").and_then(Value::as_str) {
                Some("completed") => return Ok(()),
                Some(s @ ("failed" | "cancelled")) => {
                    let why = r.get("error-desc").and_then(Value::as_str).unwrap_or("");
                    return Err(QmpError::Migration(format!("{s} {why}")));
                }
                _ if Instant::now() > deadline => {
                    return Err(QmpError::Migration("did not complete in time".into()))
                }
                _ => std::thread::sleep(Duration::from_millis(2)),
            }
        }
    }

    /// Pauses the VM and writes its device state to `state` (guest RAM, in a shared memory
    /// file, is not copied). The VM stays paused; `quit` it after.
    pub fn save(&mut self, state: &Path) -> Result<(), QmpError> {
        self.execute("stop", None)?;
        self.ignore_shared()?;
        let file = std::fs::File::create(state).map_err(|source| QmpError::Io {
            command: format!("migrate (create {})", state.display()),
            source,
        })?;
        self.pass_fd(&file)?;
        self.execute("migrate", Some(json!({ "uri": format!("fd:{STATE_FD}") })))?;
        self.wait_migration()
    }

    /// Hands `file` to QEMU as the named fd [`STATE_FD`] (a migration URI's `fd:` takes it).
    fn pass_fd(&mut self, file: &std::fs::File) -> Result<(), QmpError> {
        use std::os::fd::AsFd;
        self.execute_with_fd(
            "getfd",
            Some(json!({ "fdname": STATE_FD })),
            Some(file.as_fd()),
        )?;
        Ok(())
    }

    /// Loads the device state of `state` into a QEMU started with `-incoming defer` and lets
    /// the VM run.
    pub fn restore(&mut self, state: &Path) -> Result<(), QmpError> {
        self.ignore_shared()?;
        let file = std::fs::File::open(state).map_err(|source| QmpError::Io {
            command: format!("migrate-incoming (open {})", state.display()),
            source,
        })?;
        self.pass_fd(&file)?;
        self.execute(
            "migrate-incoming",
            Some(json!({ "uri": format!("fd:{STATE_FD}") })),
        )?;
        self.wait_migration()?;
        self.execute("cont", None)?;
        Ok(())
    }

    /// Has QEMU announce the capacity of each of our disks (`disk0`, `disk1`, … of
    /// [`crate::VmConfig`]) to the guest as a virtio config change, by resizing each to the
    /// size it already has; returns the sizes in bytes, in disk order. A VM restored from a
    /// template needs it: its guest probed the template's placeholder disks and still holds
    /// their capacity.
    pub fn announce_disk_sizes(&mut self) -> Result<Vec<u64>, QmpError> {
        let blocks = self.execute("query-block", None)?;
        let mut disks: Vec<(usize, u64)> = Vec::new();
        for b in blocks.as_array().into_iter().flatten() {
            let Some(index) = b["device"]
                .as_str()
                .and_then(|d| d.strip_prefix("disk"))
                .and_then(|i| i.parse::<usize>().ok())
            else {
                continue;
            };
            let size = b["inserted"]["image"]["virtual-size"]
                .as_u64()
                .ok_or_else(|| QmpError::Command {
                    command: "query-block".into(),
                    message: format!("disk{index} reports no size"),
                })?;
            disks.push((index, size));
        }
        disks.sort_unstable();
        for (index, size) in &disks {
            self.execute(
                "block_resize",
                Some(json!({ "device": format!("disk{index}"), "size": size })),
            )?;
        }
        Ok(disks.into_iter().map(|(_, size)| size).collect())
    }

    /// Puts the image of `disk` behind disk `index` of a running VM (its `-drive` node
    /// `vd{index}`, which must be `raw`, as a pooled VM's placeholders are), in place of the
    /// file it had: the new image is opened as a node of its own (a qcow2 one opens its
    /// backing file as QEMU would at start-up) and becomes the raw node's child
    /// (`blockdev-reopen`), so the guest's device stays the same. QEMU opens the image by
    /// path: a QEMU of its own user could not, so only VMs that run as the invoking user are
    /// given disks this way. The guest learns the new capacity from
    /// [`Qmp::announce_disk_sizes`].
    pub fn swap_disk(&mut self, index: usize, disk: &crate::DiskSpec) -> Result<(), QmpError> {
        let node = format!("vd{index}");
        let child = format!("{node}-c");
        let path = disk.path.to_string_lossy();
        let file = json!({ "driver": "file", "filename": path, "discard": "unmap" });
        let image = match disk.format {
            crate::DiskFormat::Raw => {
                let mut f = file;
                f["node-name"] = json!(child);
                f
            }
            crate::DiskFormat::Qcow2 => {
                json!({ "driver": "qcow2", "node-name": child, "file": file, "discard": "unmap" })
            }
        };
        let mut image = image;
        image["read-only"] = json!(disk.readonly);
        self.execute("blockdev-add", Some(image))?;
        // Every option of the node is restated: what a reopen leaves out returns to its
        // default (discard=unmap, as every disk of ours has, would be dropped).
        let reopened = self.execute(
            "blockdev-reopen",
            Some(json!({ "options": [{
                "driver": "raw",
                "node-name": node,
                "file": child,
                "discard": "unmap",
                "read-only": disk.readonly,
            }]})),
        );
        if let Err(e) = reopened {
            let _ = self.execute("blockdev-del", Some(json!({ "node-name": child })));
            return Err(e);
        }
        Ok(())
    }

    /// Ends QEMU.
    pub fn quit(&mut self) -> Result<(), QmpError> {
        self.execute("quit", None).map(|_| ())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;
    use std::os::fd::{FromRawFd, OwnedFd};
    use std::os::unix::net::UnixListener;

    /// A QMP server that answers every command and reads the descriptor `getfd` brings.
    fn fake_qmp(listener: UnixListener) -> std::thread::JoinHandle<String> {
        std::thread::spawn(move || {
            use nix::sys::socket::{recvmsg, ControlMessageOwned, MsgFlags};
            let (mut conn, _) = listener.accept().unwrap();
            conn.write_all(b"{\"QMP\": {}}\n").unwrap();
            let mut got = String::new();
            loop {
                let mut buf = [0u8; 4096];
                let mut space = nix::cmsg_space!([std::os::fd::RawFd; 1]);
                let mut iov = [std::io::IoSliceMut::new(&mut buf)];
                let msg = recvmsg::<()>(
                    conn.as_raw_fd(),
                    &mut iov,
                    Some(&mut space),
                    MsgFlags::empty(),
                )
                .unwrap();
                if msg.bytes == 0 {
                    return got;
                }
                for c in msg.cmsgs().unwrap() {
                    if let ControlMessageOwned::ScmRights(fds) = c {
                        // SAFETY: the kernel just gave us this descriptor; we own it.
                        let fd = unsafe { OwnedFd::from_raw_fd(fds[0]) };
                        let mut text = String::new();
                        std::fs::File::from(fd).read_to_string(&mut text).unwrap();
                        got.push_str(&text);
                    }
                }
                let n = msg.bytes;
                let line = String::from_utf8_lossy(&buf[..n]).to_string();
                if line.contains("query-migrate") {
                    conn.write_all(b"{\"return\": {\"status\": \"completed\"}}\n")
                        .unwrap();
                } else {
                    conn.write_all(b"{\"return\": {}}\n").unwrap();
                }
                if line.contains("\"cont\"") {
                    return got;
                }
            }
        })
    }

    #[test]
    fn the_state_file_travels_as_a_descriptor() {
        let dir = tempfile::tempdir().unwrap();
        let sock = dir.path().join("qmp.sock");
        let state = dir.path().join("state with spaces; and $(shell)");
        std::fs::write(&state, "device state").unwrap();
        let server = fake_qmp(UnixListener::bind(&sock).unwrap());
        let mut qmp = Qmp::connect(&sock, Duration::from_secs(5)).unwrap();
        qmp.restore(&state).unwrap();
        assert_eq!(server.join().unwrap(), "device state");
    }
}
