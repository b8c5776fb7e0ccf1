//! Network namespaces for tests. Every test makes its own namespaces (unique names), runs the
//! code under test on a thread that `setns`ed into one (a network namespace belongs to a thread,
//! and threads and processes started from it inherit it), and deletes them on drop, also when
//! the test fails. Nothing touches the namespace the test runner started in.

#![allow(dead_code)]

use std::fs::File;
use std::os::fd::AsFd;
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// A named network namespace (`ip netns add`), deleted on drop.
pub struct Netns {
    pub name: String,
}

impl Netns {
    pub fn new(tag: &str) -> Self {
        let n = COUNTER.fetch_add(1, Ordering::SeqCst);
        let name = format!("ctrt-{tag}-{}-{n}", std::process::id());
        sh(&["ip", "netns", "add", &name]);
        let ns = Netns { name };
        ns.ip(&["link", "set", "lo", "up"]);
        ns
    }

    /// Runs `ip -n NS ARGS…`, panicking with its stderr on failure.
    pub fn ip(&self, args: &[&str]) -> String {
        let mut full = vec!["ip", "-n", &self.name];
        full.extend_from_slice(args);
        sh(&full)
    }

    /// Runs `f` on a new thread inside this namespace and returns its result (panics propagate).
    pub fn run<T: Send>(&self, f: impl FnOnce() -> T + Send) -> T {
        let path = format!("/run/netns/{}", self.name);
        std::thread::scope(|s| {
            s.spawn(|| {
                enter(&path);
                f()
            })
            .join()
            .unwrap_or_else(|e| std::panic::resume_unwind(e))
        })
    }

    /// Spawns a detached thread inside this namespace.
    pub fn spawn<T: Send + 'static>(
        &self,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> std::thread::JoinHandle<T> {
        let path = format!("/run/netns/{}", self.name);
        std::thread::spawn(move || {
            enter(&path);
            f()
        })
    }

    /// Names of the links in this namespace.
    pub fn links(&self) -> Vec<String> {
        let out = self.ip(&["-o", "link", "show"]);
        out.lines()
            .filter_map(|l| l.split(": ").nth(1))
            .map(|n| n.split('@').next().unwrap_or(n).to_string())
            .collect()
    }

    /// `nft list ruleset` inside this namespace.
    pub fn ruleset(&self) -> String {
        sh(&["ip", "netns", "exec", &self.name, "nft", "list", "ruleset"])
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .status();
    }
}

fn enter(path: &str) {
    let file = File::open(path).unwrap_or_else(|e| panic!("open {path}: {e}"));
    nix::sched::setns(file.as_fd(), nix::sched::CloneFlags::CLONE_NEWNET)
        .unwrap_or_else(|e| panic!("setns {path}: {e}"));
}

/// Runs a command, panicking with its output when it fails; returns stdout.
pub fn sh(args: &[&str]) -> String {
    let out = Command::new(args[0])
        .args(&args[1..])
        .output()
        .unwrap_or_else(|e| panic!("{args:?}: {e}"));
    assert!(
        out.status.success(),
        "{args:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Joins namespace `inner` to `outer` with a veth pair: `outer_if` stays in `outer` (optionally
/// enslaved to `bridge`), `inner_if` moves into `inner` as `eth0` with `address` and a default
/// route via `gateway`. This stands in for a container VM on a network.
pub fn plug(
    outer: &Netns,
    inner: &Netns,
    outer_if: &str,
    bridge: Option<&str>,
    address: &str,
    gateway: Option<&str>,
) {
    let peer = format!("{outer_if}p");
    outer.ip(&[
        "link", "add", outer_if, "type", "veth", "peer", "name", &peer,
    ]);
    outer.ip(&["link", "set", &peer, "netns", &inner.name]);
    inner.ip(&["link", "set", &peer, "name", "eth0"]);
    inner.ip(&["addr", "add", address, "dev", "eth0"]);
    inner.ip(&["link", "set", "eth0", "up"]);
    if let Some(gw) = gateway {
        inner.ip(&["route", "add", "default", "via", gw]);
    }
    if let Some(br) = bridge {
        outer.ip(&["link", "set", outer_if, "master", br]);
    }
    outer.ip(&["link", "set", outer_if, "up"]);
}
