//! One process of a task as containerd sees it (the main process or an exec): its stdio,
//! status, the control channel into its monitor session, and its exit.

use std::sync::Mutex;

use containerd_shim::protos::protobuf::well_known_types::timestamp::Timestamp;
use runtime::protocol::Frame;
use tokio::sync::{mpsc, watch};

use crate::stdio::Stdio;

/// containerd's process states that apply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// Created, not started.
    Created,
    /// Running.
    Running,
    /// Ended.
    Stopped,
}

/// How a process ended.
#[derive(Debug, Clone)]
pub struct Exit {
    /// Exit status as containerd reports it (128+n for signal n).
    pub code: u32,
    /// When.
    pub at: Timestamp,
}

/// A process of the task.
pub struct Process {
    /// What containerd handed over.
    pub stdio: Stdio,
    /// An exec's process spec (None: the main process).
    pub exec: Option<runtime::spec::ProcessSpec>,
    state: Mutex<State>,
    exit: watch::Sender<Option<Exit>>,
}

#[derive(Default)]
struct State {
    status: Option<Status>,
    pid: u32,
    control: Option<mpsc::UnboundedSender<Frame>>,
    stdin_pump: Option<tokio::task::AbortHandle>,
}

impl Process {
    /// A created process.
    pub fn new(stdio: Stdio, exec: Option<runtime::spec::ProcessSpec>) -> Process {
        Process {
            stdio,
            exec,
            state: Mutex::new(State {
                status: Some(Status::Created),
                ..Default::default()
            }),
            exit: watch::channel(None).0,
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        // A panic while holding it leaves plain data behind; go on with it.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Its status.
    pub fn status(&self) -> Status {
        self.state().status.unwrap_or(Status::Created)
    }

    /// The pid reported to containerd.
    pub fn pid(&self) -> u32 {
        self.state().pid
    }

    /// Marks it running, with the channel into its session and its stdin pump.
    pub fn set_running(
        &self,
        pid: u32,
        control: mpsc::UnboundedSender<Frame>,
        stdin_pump: Option<tokio::task::AbortHandle>,
    ) {
        let mut s = self.state();
        s.status = Some(Status::Running);
        s.pid = pid;
        s.control = Some(control);
        s.stdin_pump = stdin_pump;
    }

    /// Records its end; wakes every waiter.
    pub fn set_exited(&self, code: u32) -> Exit {
        let exit = Exit { code, at: now() };
        {
            let mut s = self.state();
            s.status = Some(Status::Stopped);
            s.control = None;
            if let Some(p) = s.stdin_pump.take() {
                p.abort();
            }
        }
        self.exit.send_replace(Some(exit.clone()));
        exit
    }

    /// Its exit, if it ended.
    pub fn exit(&self) -> Option<Exit> {
        self.exit.borrow().clone()
    }

    /// Waits until it ends.
    pub async fn wait(&self) -> Exit {
        let mut rx = self.exit.subscribe();
        loop {
            if let Some(e) = rx.borrow_and_update().clone() {
                return e;
            }
            if rx.changed().await.is_err() {
                // The sender lives as long as self: not reached.
                return Exit {
                    code: 255,
                    at: now(),
                };
            }
        }
    }

    /// Sends a frame (resize, signal) into its session; false when it has none.
    pub fn control(&self, frame: Frame) -> bool {
        self.state()
            .control
            .as_ref()
            .is_some_and(|c| c.send(frame).is_ok())
    }

    /// Ends its input (CloseIO).
    pub fn close_stdin(&self) {
        if let Some(p) = self.state().stdin_pump.take() {
            p.abort();
        }
    }
}

/// The time now as a protobuf timestamp.
pub fn now() -> Timestamp {
    let d = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    Timestamp {
        seconds: i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
        nanos: i32::try_from(d.subsec_nanos()).unwrap_or(0),
        ..Default::default()
    }
}
