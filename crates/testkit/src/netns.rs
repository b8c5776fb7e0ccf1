//! Network namespaces for tests that make bridges, taps, addresses or nf_tables rules: the test
//! creates its own namespace (a unique name), runs the code under test inside it and deletes it
//! on drop, pass or fail, so nothing touches the namespace the test runner started in.
//!
//! Two ways in: a program under `ip netns exec` ([`Netns::command`], [`Netns::exec`]), or a
//! closure on a thread that `setns`ed into it ([`Netns::run`], [`Netns::spawn`]): a network
//! namespace belongs to a thread, and the threads and processes it starts inherit it.

use std::fs::File;
use std::os::fd::AsFd;
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};

use crate::tool;

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// A named network namespace (`ip netns add`) with loopback up, deleted on drop.
pub struct Netns {
    /// Its name under /run/netns.
    pub name: String,
}

impl Netns {
    /// A fresh namespace; `tag` makes the name readable (`ctr-TAG-PID-N`).
    pub fn new(tag: &str) -> Netns {
        let n = COUNTER.fetch_add(1, Ordering::SeqCst);
        let name = format!("ctr-{tag}-{}-{n}", std::process::id());
        tool("ip", &["netns", "add", &name]);
        let ns = Netns { name };
        ns.ip(&["link", "set", "lo", "up"]);
        ns
    }

    /// `ip -n NS ARGS…` (panics with its output on failure), its stdout.
    #[track_caller]
    pub fn ip(&self, args: &[&str]) -> String {
        let mut full = vec!["-n", self.name.as_str()];
        full.extend_from_slice(args);
        tool("ip", &full)
    }

    /// `program ARGS…` to be run inside the namespace (`ip netns exec`).
    pub fn command(&self, program: &str, args: &[&str]) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.name, program]).args(args);
        c
    }

    /// Runs a program inside the namespace: (success, stdout then stderr).
    pub fn exec(&self, program: &str, args: &[&str]) -> (bool, String) {
        let o = self
            .command(program, args)
            .output()
            .expect("run ip netns exec");
        let mut text = String::from_utf8_lossy(&o.stdout).into_owned();
        text.push_str(&String::from_utf8_lossy(&o.stderr));
        (o.status.success(), text)
    }

    /// Runs `f` on a new thread inside this namespace and returns its result (panics propagate).
    pub fn run<T: Send>(&self, f: impl FnOnce() -> T + Send) -> T {
        let path = self.path();
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
        let path = self.path();
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
        crate::run(&mut self.command("nft", &["list", "ruleset"]))
    }

    fn path(&self) -> String {
        format!("/run/netns/{}", self.name)
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "delete", &self.name])
            .status();
    }
}

fn enter(path: &str) {
    let file = File::open(path).unwrap_or_else(|e| panic!("open {path}: {e}"));
    nix::sched::setns(file.as_fd(), nix::sched::CloneFlags::CLONE_NEWNET)
        .unwrap_or_else(|e| panic!("setns {path}: {e}"));
}

/// Joins namespace `inner` to `outer` with a veth pair: `outer_if` stays in `outer` (optionally
/// enslaved to `bridge`), its peer moves into `inner` as `eth0` with `address` and a default
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
