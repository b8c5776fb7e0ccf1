//! Links and addresses through rtnetlink (the `rtnetlink` crate): bridges, enslaving taps,
//! addresses, up/down, deletion, listing.
//!
//! The public API of this crate is synchronous (it is called from the CLI, from the runtime
//! under a file lock, and from tests that switch namespaces per thread), while `rtnetlink` is
//! async. Each batch of operations therefore runs on a short-lived thread with its own
//! current-thread tokio runtime: no nesting inside a caller's runtime, and the thread is
//! created by the caller's thread, so it inherits the caller's network namespace.

use std::future::Future;
use std::io;
use std::net::{IpAddr, Ipv4Addr};

use futures_util::TryStreamExt;
use ipnet::{Ipv4Net, Ipv6Net};
use rtnetlink::packet_route::address::{AddressAttribute, AddressHeaderFlags};
use rtnetlink::packet_route::link::{LinkAttribute, LinkFlags, LinkMessage};
use rtnetlink::{Handle, LinkBridge, LinkUnspec};

/// A failed netlink operation, naming the link it was about.
#[derive(Debug, thiserror::Error)]
pub enum LinkError {
    /// The netlink socket or its runtime could not be set up.
    #[error("cannot open a netlink socket")]
    Connect(#[source] io::Error),
    /// Listing links failed.
    #[error("cannot list network links")]
    List(#[source] io::Error),
    /// Creating a bridge failed.
    #[error("cannot create bridge {0}")]
    CreateBridge(String, #[source] io::Error),
    /// Adding an address failed.
    #[error("cannot add address {1} to {0}")]
    AddAddress(String, String, #[source] io::Error),
    /// Bringing a link up or attaching it to a bridge failed.
    #[error("cannot set up link {0}")]
    SetLink(String, #[source] io::Error),
    /// Deleting a link failed.
    #[error("cannot delete link {0}")]
    Delete(String, #[source] io::Error),
    /// A link that must exist does not.
    #[error("link {0} does not exist")]
    Missing(String),
}

/// What we need to know about one link.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkInfo {
    /// Interface index.
    pub index: u32,
    /// Interface name.
    pub name: String,
    /// Index of the bridge it is enslaved to, if any.
    pub controller: Option<u32>,
    /// Administratively up.
    pub up: bool,
    /// MTU.
    pub mtu: Option<u32>,
    /// IPv4 addresses with their prefix.
    pub addresses: Vec<Ipv4Net>,
}

fn to_io(err: rtnetlink::Error) -> io::Error {
    match err {
        rtnetlink::Error::NetlinkError(msg) => msg.to_io(),
        other => io::Error::other(other.to_string()),
    }
}

/// Runs `f` with a fresh netlink handle on a thread of its own (see the module doc).
fn with_handle<T, F, Fut>(f: F) -> Result<T, LinkError>
where
    T: Send,
    F: FnOnce(Handle) -> Fut + Send,
    Fut: Future<Output = Result<T, LinkError>>,
{
    std::thread::scope(|scope| {
        let worker = scope.spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_io()
                .build()
                .map_err(LinkError::Connect)?;
            runtime.block_on(async move {
                let (connection, handle, _) =
                    rtnetlink::new_connection().map_err(LinkError::Connect)?;
                let driver = tokio::spawn(connection);
                let result = f(handle).await;
                driver.abort();
                result
            })
        });
        worker.join().unwrap_or_else(|_| {
            Err(LinkError::Connect(io::Error::other(
                "netlink worker panicked",
            )))
        })
    })
}

fn link_info(msg: &LinkMessage) -> LinkInfo {
    let mut info = LinkInfo {
        index: msg.header.index,
        name: String::new(),
        controller: None,
        up: msg.header.flags.contains(LinkFlags::Up),
        mtu: None,
        addresses: Vec::new(),
    };
    for attr in &msg.attributes {
        match attr {
            LinkAttribute::IfName(name) => info.name = name.clone(),
            LinkAttribute::Controller(index) => info.controller = Some(*index),
            LinkAttribute::Mtu(mtu) => info.mtu = Some(*mtu),
            _ => {}
        }
    }
    info
}

async fn list_async(handle: &Handle) -> Result<Vec<LinkInfo>, LinkError> {
    let mut links: Vec<LinkInfo> = handle
        .link()
        .get()
        .execute()
        .map_ok(|m| link_info(&m))
        .try_collect()
        .await
        .map_err(|e| LinkError::List(to_io(e)))?;
    let addresses: Vec<_> = handle
        .address()
        .get()
        .execute()
        .try_collect()
        .await
        .map_err(|e| LinkError::List(to_io(e)))?;
    for msg in addresses {
        let Some(link) = links.iter_mut().find(|l| l.index == msg.header.index) else {
            continue;
        };
        for attr in &msg.attributes {
            if let AddressAttribute::Address(IpAddr::V4(ip)) = attr {
                if let Ok(net) = Ipv4Net::new(*ip, msg.header.prefix_len) {
                    link.addresses.push(net);
                }
            }
        }
    }
    Ok(links)
}

/// All links of the current network namespace with their IPv4 addresses.
pub fn list() -> Result<Vec<LinkInfo>, LinkError> {
    with_handle(|handle| async move { list_async(&handle).await })
}

/// Makes sure bridge `name` exists with MAC `mac`, is up, has `mtu` and carries `gateway`
/// (e.g. 192.168.64.1/24) and, on an IPv6 network, `gateway6`. Idempotent.
pub fn ensure_bridge(
    name: &str,
    mac: [u8; 6],
    mtu: u32,
    gateway: Ipv4Net,
    gateway6: Option<Ipv6Net>,
) -> Result<(), LinkError> {
    let name = name.to_string();
    with_handle(|handle| async move {
        let links = list_async(&handle).await?;
        let existing = links.iter().find(|l| l.name == name);
        let index = match existing {
            Some(link) => link.index,
            None => {
                let msg = LinkBridge::new(&name)
                    .mtu(mtu)
                    .address(mac.to_vec())
                    .build();
                match handle.link().add(msg).execute().await {
                    Ok(()) => {}
                    Err(e) => {
                        let e = to_io(e);
                        if e.raw_os_error() != Some(libc::EEXIST) {
                            return Err(LinkError::CreateBridge(name.clone(), e));
                        }
                    }
                }
                let links = list_async(&handle).await?;
                links
                    .iter()
                    .find(|l| l.name == name)
                    .map(|l| l.index)
                    .ok_or_else(|| LinkError::Missing(name.clone()))?
            }
        };
        let has_address = existing.is_some_and(|l| l.addresses.contains(&gateway));
        if !has_address {
            if let Err(e) = handle
                .address()
                .add(index, IpAddr::V4(gateway.addr()), gateway.prefix_len())
                .execute()
                .await
            {
                let e = to_io(e);
                if e.raw_os_error() != Some(libc::EEXIST) {
                    return Err(LinkError::AddAddress(name.clone(), gateway.to_string(), e));
                }
            }
        }
        if let Some(gateway6) = gateway6 {
            // A host with IPv6 off by default (`disable_ipv6` in `default`) hands that to new
            // links; the bridge of an IPv6 network needs it on.
            let sysctl = format!("/proc/sys/net/ipv6/conf/{name}/disable_ipv6");
            if std::fs::read_to_string(&sysctl).is_ok_and(|v| v.trim() != "0") {
                std::fs::write(&sysctl, b"0")
                    .map_err(|e| LinkError::AddAddress(name.clone(), gateway6.to_string(), e))?;
            }
            // No duplicate address detection: the address is ours by construction, and while
            // DAD runs (a second or more) the kernel will not use it, so the first packets a
            // container sends to its gateway would go unanswered.
            let mut request =
                handle
                    .address()
                    .add(index, IpAddr::V6(gateway6.addr()), gateway6.prefix_len());
            request.message_mut().header.flags |= AddressHeaderFlags::Nodad;
            if let Err(e) = request.execute().await {
                let e = to_io(e);
                if e.raw_os_error() != Some(libc::EEXIST) {
                    return Err(LinkError::AddAddress(name.clone(), gateway6.to_string(), e));
                }
            }
        }
        handle
            .link()
            .set(LinkUnspec::new_with_index(index).up().build())
            .execute()
            .await
            .map_err(|e| LinkError::SetLink(name.clone(), to_io(e)))
    })
}

/// Enslaves `port` to `bridge`, sets its MTU and brings it up.
pub fn attach_to_bridge(port: &str, bridge: &str, mtu: u32) -> Result<(), LinkError> {
    let (port, bridge) = (port.to_string(), bridge.to_string());
    with_handle(|handle| async move {
        let links = list_async(&handle).await?;
        let (port_index, bridge_index) =
            (named(&links, &port)?.index, named(&links, &bridge)?.index);
        let msg = LinkUnspec::new_with_index(port_index)
            .controller(bridge_index)
            .mtu(mtu)
            .up()
            .build();
        handle
            .link()
            .set(msg)
            .execute()
            .await
            .map_err(|e| LinkError::SetLink(port.clone(), to_io(e)))
    })
}

/// The link called `name` among `links`.
fn named<'a>(links: &'a [LinkInfo], name: &str) -> Result<&'a LinkInfo, LinkError> {
    links
        .iter()
        .find(|l| l.name == name)
        .ok_or_else(|| LinkError::Missing(name.to_string()))
}

/// Puts the link `spare` in the place of `port`: `port` is deleted and `spare` takes its name,
/// its bridge, its MTU and comes up. A pre-booted VM's tap (opened by its QEMU, attached to
/// nothing) so becomes the tap a container's network session made for it, which its lease,
/// cleanup and every later lookup know by name. `spare` must be down (a link is renamed only
/// while down).
pub fn replace_port(port: &str, spare: &str) -> Result<(), LinkError> {
    let (port, spare) = (port.to_string(), spare.to_string());
    with_handle(|handle| async move {
        let links = list_async(&handle).await?;
        let (old, new) = (named(&links, &port)?, named(&links, &spare)?);
        handle
            .link()
            .del(old.index)
            .execute()
            .await
            .map_err(|e| LinkError::Delete(port.clone(), to_io(e)))?;
        let mut msg = LinkUnspec::new_with_index(new.index).name(port.clone());
        if let Some(bridge) = old.controller {
            msg = msg.controller(bridge);
        }
        if let Some(mtu) = old.mtu {
            msg = msg.mtu(mtu);
        }
        handle
            .link()
            .set(msg.up().build())
            .execute()
            .await
            .map_err(|e| LinkError::SetLink(port.clone(), to_io(e)))
    })
}

/// Deletes the named links that exist; missing ones are not an error (idempotent cleanup).
pub fn delete(names: &[String]) -> Result<(), LinkError> {
    let names = names.to_vec();
    with_handle(|handle| async move {
        let links = list_async(&handle).await?;
        for name in &names {
            let Some(link) = links.iter().find(|l| &l.name == name) else {
                continue;
            };
            if let Err(e) = handle.link().del(link.index).execute().await {
                let e = to_io(e);
                if e.raw_os_error() != Some(libc::ENODEV) {
                    return Err(LinkError::Delete(name.clone(), e));
                }
            }
        }
        Ok(())
    })
}

/// The IPv4 networks configured on links other than those named in `except`; used to refuse
/// a subnet that overlaps one the host already uses.
pub fn host_networks(except: &[&str]) -> Result<Vec<(String, Ipv4Net)>, LinkError> {
    Ok(list()?
        .into_iter()
        .filter(|l| !except.contains(&l.name.as_str()))
        .flat_map(|l| {
            let name = l.name;
            l.addresses.into_iter().map(move |a| (name.clone(), a))
        })
        .filter(|(_, a)| !a.addr().is_loopback() && a.addr() != Ipv4Addr::UNSPECIFIED)
        .collect())
}
