//! A network namespace someone else set up (CNI, for a Kubernetes pod) handed to a VM: the
//! namespace's interface keeps its address, MAC and routes, and a tap next to it takes all
//! its traffic both ways (tc `mirred` redirects, as Kata's "tcfilter" model does), so the
//! guest, given the same address and MAC, is the pod on that network.
//!
//! Everything here runs on a thread that entered the namespace (`setns` of a network
//! namespace is per thread), and the `ip`/`tc` commands it starts inherit it.

use std::net::Ipv4Addr;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::Command;

use ipnet::Ipv4Net;

/// The tap that stands in for the VM in the namespace.
pub const POD_TAP: &str = "tap0";

/// Errors handing a namespace's network to a VM.
#[derive(Debug, thiserror::Error)]
pub enum PodNetError {
    /// The namespace could not be entered.
    #[error("enter the network namespace {}: {source}", path.display())]
    Enter {
        /// Its path.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A command in the namespace failed.
    #[error("{command} in the network namespace: {message}")]
    Command {
        /// What ran.
        command: String,
        /// Its error output.
        message: String,
    },
    /// The namespace has nothing a VM could take.
    #[error("the network namespace has {0}")]
    Unusable(String),
}

/// The namespace's interface as the guest must take it over.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodInterface {
    /// Its name in the namespace (`eth0`).
    pub name: String,
    /// Its MAC address: the guest's, so that what the network sends it reaches the guest.
    pub mac: String,
    /// Its IPv4 address and prefix.
    pub address: Ipv4Net,
    /// The namespace's default gateway.
    pub gateway: Ipv4Addr,
    /// Its MTU.
    pub mtu: u32,
}

/// Reads the namespace's interface and plumbs [`POD_TAP`] to it; the VM's QEMU must be
/// started in the namespace too (it opens the tap by name).
pub fn attach(netns: &Path) -> Result<PodInterface, PodNetError> {
    in_netns(netns, || {
        let iface = read_interface()?;
        // Owned by our uid: QEMU, which holds no capability, may then attach to it.
        // SAFETY: geteuid has no preconditions.
        let uid = unsafe { libc::geteuid() }.to_string();
        run(
            "ip",
            &["tuntap", "add", "dev", POD_TAP, "mode", "tap", "user", &uid],
        )?;
        let mtu = iface.mtu.to_string();
        run("ip", &["link", "set", POD_TAP, "mtu", &mtu, "up"])?;
        for (from, to) in [
            (iface.name.as_str(), POD_TAP),
            (POD_TAP, iface.name.as_str()),
        ] {
            run("tc", &["qdisc", "add", "dev", from, "ingress"])?;
            run(
                "tc",
                &[
                    "filter", "add", "dev", from, "parent", "ffff:", "protocol", "all", "u32",
                    "match", "u8", "0", "0", "action", "mirred", "egress", "redirect", "dev", to,
                ],
            )?;
        }
        Ok(iface)
    })
}

/// Undoes [`attach`] (the namespace may be gone already: nothing to do then).
pub fn detach(netns: &Path) {
    if !netns.exists() {
        return;
    }
    let _ = in_netns(netns, || {
        if let Ok(iface) = read_interface() {
            let _ = run("tc", &["qdisc", "del", "dev", &iface.name, "ingress"]);
        }
        let _ = run("ip", &["link", "del", POD_TAP]);
        Ok(())
    });
}

/// Runs `f` on a thread inside the namespace at `netns`; processes it starts are in it too.
pub fn in_netns<T: Send>(
    netns: &Path,
    f: impl FnOnce() -> Result<T, PodNetError> + Send,
) -> Result<T, PodNetError> {
    let file = std::fs::File::open(netns).map_err(|source| PodNetError::Enter {
        path: netns.to_path_buf(),
        source,
    })?;
    std::thread::scope(|s| {
        s.spawn(|| {
            // SAFETY: setns(2) on an open namespace descriptor, for this thread only.
            if unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
                return Err(PodNetError::Enter {
                    path: netns.to_path_buf(),
                    source: std::io::Error::last_os_error(),
                });
            }
            f()
        })
        .join()
        .unwrap_or_else(|_| {
            Err(PodNetError::Unusable(
                "a failure while setting it up".into(),
            ))
        })
    })
}

fn run(program: &str, args: &[&str]) -> Result<String, PodNetError> {
    let out = Command::new(program)
        .args(args)
        .output()
        .map_err(|e| PodNetError::Command {
            command: program.into(),
            message: e.to_string(),
        })?;
    if !out.status.success() {
        return Err(PodNetError::Command {
            command: format!("{program} {}", args.join(" ")),
            message: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        });
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// The first interface with an IPv4 address other than loopback and our tap, and the default
/// route, from `ip -j` in the current namespace.
fn read_interface() -> Result<PodInterface, PodNetError> {
    let addrs: serde_json::Value = serde_json::from_str(&run("ip", &["-j", "-4", "addr", "show"])?)
        .map_err(|e| PodNetError::Unusable(format!("unreadable addresses ({e})")))?;
    let routes: serde_json::Value =
        serde_json::from_str(&run("ip", &["-j", "-4", "route", "show", "default"])?)
            .map_err(|e| PodNetError::Unusable(format!("unreadable routes ({e})")))?;
    parse(&addrs, &routes)
}

fn parse(
    addrs: &serde_json::Value,
    routes: &serde_json::Value,
) -> Result<PodInterface, PodNetError> {
    let link = addrs
        .as_array()
        .into_iter()
        .flatten()
        .find(|l| {
            let name = l["ifname"].as_str().unwrap_or_default();
            name != "lo"
                && name != POD_TAP
                && l["addr_info"].as_array().is_some_and(|a| !a.is_empty())
        })
        .ok_or_else(|| PodNetError::Unusable("no interface with an IPv4 address".into()))?;
    let info = &link["addr_info"][0];
    let address: Ipv4Net = format!(
        "{}/{}",
        info["local"].as_str().unwrap_or_default(),
        info["prefixlen"].as_u64().unwrap_or(32)
    )
    .parse()
    .map_err(|_| PodNetError::Unusable(format!("an unreadable address {info}")))?;
    let gateway = routes
        .as_array()
        .into_iter()
        .flatten()
        .find_map(|r| r["gateway"].as_str()?.parse().ok())
        .ok_or_else(|| PodNetError::Unusable("no default route".into()))?;
    let name = link["ifname"].as_str().unwrap_or_default().to_string();
    let mac = match link["address"].as_str() {
        Some(m) => m.to_string(),
        None => {
            // `ip -j addr` of older iproute2 leaves the MAC out; `ip -j link` has it.
            let links: serde_json::Value =
                serde_json::from_str(&run("ip", &["-j", "link", "show", "dev", &name])?)
                    .map_err(|e| PodNetError::Unusable(format!("unreadable links ({e})")))?;
            links[0]["address"]
                .as_str()
                .ok_or_else(|| PodNetError::Unusable(format!("no MAC address on {name}")))?
                .to_string()
        }
    };
    Ok(PodInterface {
        name,
        mac,
        address,
        gateway,
        mtu: link["mtu"].as_u64().unwrap_or(1500) as u32,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_pods_interface_and_gateway_are_read_from_ip_json() {
        let addrs = json!([
            {"ifname": "lo", "mtu": 65536, "addr_info": [{"local": "127.0.0.1", "prefixlen": 8}]},
            {"ifname": "eth0", "mtu": 1450, "address": "aa:bb:cc:dd:ee:ff",
             "addr_info": [{"local": "10.99.0.7", "prefixlen": 24}]},
        ]);
        let routes = json!([{"dst": "default", "gateway": "10.99.0.1", "dev": "eth0"}]);
        let i = parse(&addrs, &routes).unwrap();
        assert_eq!(i.name, "eth0");
        assert_eq!(i.mac, "aa:bb:cc:dd:ee:ff");
        assert_eq!(i.address.to_string(), "10.99.0.7/24");
        assert_eq!(i.gateway, Ipv4Addr::new(10, 99, 0, 1));
        assert_eq!(i.mtu, 1450);
        let no_route = parse(&addrs, &json!([])).unwrap_err();
        assert!(no_route.to_string().contains("no default route"));
        let only_lo = parse(&json!([addrs[0]]), &routes).unwrap_err();
        assert!(only_lo.to_string().contains("no interface"));
    }
}
