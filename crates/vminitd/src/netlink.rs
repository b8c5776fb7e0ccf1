//! Interface setup over rtnetlink (raw NETLINK_ROUTE socket, no `ip` binary in the guest):
//! MAC address, link up + MTU (RTM_NEWLINK), addresses (RTM_NEWADDR), default route
//! (RTM_NEWROUTE).
//! Message layouts follow include/uapi/linux/{netlink,rtnetlink,if_link,if_addr}.h.
//! Building messages is separate from the socket so the encoding is unit-tested.

use std::io;
use std::net::IpAddr;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

use agent::Interface;

use crate::error::GuestError;
use crate::sys::{self, cvt};

const RTM_NEWLINK: u16 = 16;
const RTM_NEWADDR: u16 = 20;
const RTM_NEWROUTE: u16 = 24;
const NLMSG_ERROR: u16 = 2;
const NLM_F_REQUEST: u16 = 1;
const NLM_F_ACK: u16 = 4;
const NLM_F_REPLACE: u16 = 0x100;
const NLM_F_CREATE: u16 = 0x400;
const IFLA_ADDRESS: u16 = 1;
const IFLA_MTU: u16 = 4;
const IFA_ADDRESS: u16 = 1;
const IFA_LOCAL: u16 = 2;
const RTA_OIF: u16 = 4;
const RTA_GATEWAY: u16 = 5;
const IFF_UP: u32 = 1;
/// `IFA_F_NODAD` (if_addr.h): no duplicate address detection for the address.
const IFA_F_NODAD: u8 = 0x02;

fn align4(n: usize) -> usize {
    (n + 3) & !3
}

/// A netlink message under construction.
struct Msg {
    buf: Vec<u8>,
}

impl Msg {
    fn new(kind: u16, flags: u16, seq: u32) -> Msg {
        let mut buf = Vec::with_capacity(128);
        buf.extend_from_slice(&0u32.to_ne_bytes()); // length, patched in finish()
        buf.extend_from_slice(&kind.to_ne_bytes());
        buf.extend_from_slice(&(flags | NLM_F_REQUEST | NLM_F_ACK).to_ne_bytes());
        buf.extend_from_slice(&seq.to_ne_bytes());
        buf.extend_from_slice(&0u32.to_ne_bytes());
        Msg { buf }
    }

    fn raw(&mut self, b: &[u8]) -> &mut Self {
        self.buf.extend_from_slice(b);
        self
    }

    fn attr(&mut self, kind: u16, data: &[u8]) -> &mut Self {
        let len = 4 + data.len();
        self.buf.extend_from_slice(&(len as u16).to_ne_bytes());
        self.buf.extend_from_slice(&kind.to_ne_bytes());
        self.buf.extend_from_slice(data);
        self.buf.resize(align4(self.buf.len()), 0);
        self
    }

    fn finish(&mut self) -> Vec<u8> {
        let len = self.buf.len() as u32;
        self.buf[..4].copy_from_slice(&len.to_ne_bytes());
        std::mem::take(&mut self.buf)
    }
}

fn ip_bytes(ip: &IpAddr) -> Vec<u8> {
    match ip {
        IpAddr::V4(v) => v.octets().to_vec(),
        IpAddr::V6(v) => v.octets().to_vec(),
    }
}

fn family(ip: &IpAddr) -> u8 {
    match ip {
        IpAddr::V4(_) => libc::AF_INET as u8,
        IpAddr::V6(_) => libc::AF_INET6 as u8,
    }
}

/// RTM_NEWLINK: set IFF_UP (and the MTU).
fn link_up(index: u32, mtu: Option<u32>, seq: u32) -> Vec<u8> {
    let mut m = Msg::new(RTM_NEWLINK, 0, seq);
    // ifinfomsg: family, pad, type, index, flags, change
    m.raw(&[libc::AF_UNSPEC as u8, 0])
        .raw(&0u16.to_ne_bytes())
        .raw(&(index as i32).to_ne_bytes());
    m.raw(&IFF_UP.to_ne_bytes()).raw(&IFF_UP.to_ne_bytes());
    if let Some(mtu) = mtu {
        m.attr(IFLA_MTU, &mtu.to_ne_bytes());
    }
    m.finish()
}

/// RTM_NEWLINK: set the hardware address, flags untouched.
fn set_mac(index: u32, mac: &[u8; 6], seq: u32) -> Vec<u8> {
    let mut m = Msg::new(RTM_NEWLINK, 0, seq);
    m.raw(&[libc::AF_UNSPEC as u8, 0])
        .raw(&0u16.to_ne_bytes())
        .raw(&(index as i32).to_ne_bytes());
    m.raw(&0u32.to_ne_bytes()).raw(&0u32.to_ne_bytes());
    m.attr(IFLA_ADDRESS, mac);
    m.finish()
}

/// Parses a unicast Ethernet address `xx:xx:xx:xx:xx:xx` (the kernel refuses multicast and
/// all-zero addresses for an interface: `is_valid_ether_addr`).
pub fn parse_mac(s: &str) -> Result<[u8; 6], GuestError> {
    let bad = || GuestError::InvalidArgument(format!("invalid MAC address {s:?}"));
    let mut mac = [0u8; 6];
    let mut parts = s.split(':');
    for b in &mut mac {
        let p = parts.next().ok_or_else(bad)?;
        if p.len() != 2 {
            return Err(bad());
        }
        *b = u8::from_str_radix(p, 16).map_err(|_| bad())?;
    }
    if parts.next().is_some() || mac[0] & 1 != 0 || mac == [0; 6] {
        return Err(bad());
    }
    Ok(mac)
}

/// RTM_NEWADDR for `ip/prefix`. IPv6 addresses skip duplicate address detection: the host
/// hands each address out once, and a tentative address (for a second or more) could not be
/// used by the container's first connections.
fn add_address(index: u32, ip: &IpAddr, prefix: u8, seq: u32) -> Vec<u8> {
    let mut m = Msg::new(RTM_NEWADDR, NLM_F_CREATE | NLM_F_REPLACE, seq);
    let flags = if ip.is_ipv6() { IFA_F_NODAD } else { 0 };
    // ifaddrmsg: family, prefixlen, flags, scope, index
    m.raw(&[family(ip), prefix, flags, 0])
        .raw(&index.to_ne_bytes());
    let b = ip_bytes(ip);
    m.attr(IFA_LOCAL, &b).attr(IFA_ADDRESS, &b);
    m.finish()
}

/// RTM_NEWROUTE: default route via `gw` on interface `index`.
fn default_route(index: u32, gw: &IpAddr, seq: u32) -> Vec<u8> {
    let mut m = Msg::new(RTM_NEWROUTE, NLM_F_CREATE | NLM_F_REPLACE, seq);
    // rtmsg: family, dst_len, src_len, tos, table (main), protocol (boot), scope (universe),
    // type (unicast), flags
    m.raw(&[family(gw), 0, 0, 0, 254, 3, 0, 1])
        .raw(&0u32.to_ne_bytes());
    m.attr(RTA_GATEWAY, &ip_bytes(gw))
        .attr(RTA_OIF, &index.to_ne_bytes());
    m.finish()
}

/// A NETLINK_ROUTE socket.
pub struct Netlink {
    fd: OwnedFd,
    seq: u32,
}

impl Netlink {
    /// Opens the socket.
    pub fn open() -> io::Result<Netlink> {
        // SAFETY: socket(2) with constant arguments; the fd is new and owned by us.
        let fd = cvt(unsafe {
            libc::socket(
                libc::AF_NETLINK,
                libc::SOCK_RAW | libc::SOCK_CLOEXEC,
                libc::NETLINK_ROUTE,
            )
        })?;
        // SAFETY: fd was just returned by socket.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        Ok(Netlink { fd, seq: 1 })
    }

    /// Sends one request and waits for its ack; the kernel's errno is the error.
    fn request(&mut self, msg: &[u8]) -> io::Result<()> {
        // SAFETY: msg is a valid buffer; the kernel is the default destination of a netlink
        // socket.
        cvt(unsafe { libc::send(self.fd.as_raw_fd(), msg.as_ptr().cast(), msg.len(), 0) })?;
        let mut buf = vec![0u8; 8192];
        loop {
            // SAFETY: buf is valid for writes of its length.
            let n = cvt(unsafe {
                libc::recv(self.fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0)
            })?
            .unsigned_abs();
            let mut off = 0;
            while off + 16 <= n {
                let len = u32::from_ne_bytes([buf[off], buf[off + 1], buf[off + 2], buf[off + 3]])
                    as usize;
                let kind = u16::from_ne_bytes([buf[off + 4], buf[off + 5]]);
                if len < 16 || off + len > n {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        "truncated netlink reply",
                    ));
                }
                if kind == NLMSG_ERROR && len >= 20 {
                    let errno = i32::from_ne_bytes([
                        buf[off + 16],
                        buf[off + 17],
                        buf[off + 18],
                        buf[off + 19],
                    ]);
                    return if errno == 0 {
                        Ok(())
                    } else {
                        Err(io::Error::from_raw_os_error(-errno))
                    };
                }
                off += align4(len);
            }
        }
    }

    fn next_seq(&mut self) -> u32 {
        self.seq += 1;
        self.seq
    }
}

/// Interface index by name.
pub fn index_of(name: &str) -> Result<u32, GuestError> {
    let c = sys::cstr(name).map_err(|e| GuestError::sys("interface name", e))?;
    // SAFETY: valid C string.
    let idx = unsafe { libc::if_nametoindex(c.as_ptr()) };
    if idx == 0 {
        return Err(GuestError::NotFound(format!(
            "network interface {name} does not exist"
        )));
    }
    Ok(idx)
}

/// Parses `addr/prefix`.
pub fn parse_cidr(s: &str) -> Result<(IpAddr, u8), GuestError> {
    let bad =
        || GuestError::InvalidArgument(format!("invalid address {s:?} (want ADDRESS/PREFIX)"));
    let (a, p) = s.split_once('/').ok_or_else(bad)?;
    let ip: IpAddr = a.parse().map_err(|_| bad())?;
    let prefix: u8 = p.parse().map_err(|_| bad())?;
    let max = if ip.is_ipv4() { 32 } else { 128 };
    if prefix > max {
        return Err(bad());
    }
    Ok((ip, prefix))
}

/// Applies an `Interface` request.
pub fn setup(i: &Interface) -> Result<(), GuestError> {
    let addrs = i
        .addresses
        .iter()
        .map(|a| parse_cidr(a))
        .collect::<Result<Vec<_>, _>>()?;
    let gateways = [&i.gateway, &i.gateway6]
        .into_iter()
        .flatten()
        .map(|g| {
            g.parse::<IpAddr>()
                .map_err(|_| GuestError::InvalidArgument(format!("invalid gateway {g:?}")))
        })
        .collect::<Result<Vec<_>, _>>()?;
    if let Some(mtu) = i.mtu {
        if !(68..=65535).contains(&mtu) {
            return Err(GuestError::InvalidArgument(format!("invalid MTU {mtu}")));
        }
    }
    let mac = i.mac.as_deref().map(parse_mac).transpose()?;
    let index = index_of(&i.name)?;
    let mut nl = Netlink::open().map_err(|e| GuestError::sys("open netlink socket", e))?;
    // Before the link goes up: not every driver may change its address while running.
    if let (Some(mac), Some(text)) = (mac, &i.mac) {
        let seq = nl.next_seq();
        nl.request(&set_mac(index, &mac, seq))
            .map_err(|e| GuestError::sys(format!("set MAC address {text} of {}", i.name), e))?;
    }
    no_dad(&i.name)?;
    let seq = nl.next_seq();
    nl.request(&link_up(index, i.mtu, seq))
        .map_err(|e| GuestError::sys(format!("bring up {}", i.name), e))?;
    for (ip, prefix) in &addrs {
        let seq = nl.next_seq();
        match nl.request(&add_address(index, ip, *prefix, seq)) {
            Err(e) if e.raw_os_error() != Some(libc::EEXIST) => {
                return Err(GuestError::sys(
                    format!("add address {ip}/{prefix} to {}", i.name),
                    e,
                ))
            }
            _ => {}
        }
    }
    for gw in gateways {
        let seq = nl.next_seq();
        nl.request(&default_route(index, &gw, seq))
            .map_err(|e| GuestError::sys(format!("add default route via {gw}"), e))?;
    }
    Ok(())
}

/// Turns off duplicate address detection on `name` before its link goes up, so the link-local
/// address the kernel makes from the MAC is usable at once, as the addresses we add are (NODAD):
/// under TCG a tentative address lasts a second or more, past a container's first `exec`. The
/// host hands out each MAC once per network. A guest without IPv6 has no such file.
fn no_dad(name: &str) -> Result<(), GuestError> {
    let path = format!("/proc/sys/net/ipv6/conf/{name}/accept_dad");
    match sys::write_file(std::path::Path::new(&path), b"0") {
        Err(e) if e.kind() != io::ErrorKind::NotFound => {
            Err(GuestError::sys(format!("turn off DAD on {name}"), e))
        }
        _ => Ok(()),
    }
}

/// Brings the loopback interface up (at boot).
pub fn loopback_up() -> Result<(), GuestError> {
    setup(&Interface {
        name: "lo".into(),
        addresses: vec![],
        gateway: None,
        gateway6: None,
        mtu: None,
        mac: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn address_message_layout() {
        let ip: IpAddr = "10.88.0.2".parse().unwrap();
        let m = add_address(7, &ip, 16, 42);
        // header 16 + ifaddrmsg 8 + two 8-byte attributes
        assert_eq!(m.len(), 40);
        assert_eq!(u32::from_ne_bytes(m[0..4].try_into().unwrap()), 40);
        assert_eq!(u16::from_ne_bytes(m[4..6].try_into().unwrap()), RTM_NEWADDR);
        assert_eq!(u32::from_ne_bytes(m[8..12].try_into().unwrap()), 42);
        assert_eq!(&m[16..20], &[libc::AF_INET as u8, 16, 0, 0]);
        assert_eq!(u32::from_ne_bytes(m[20..24].try_into().unwrap()), 7);
        assert_eq!(&m[24..32], &[8, 0, 2, 0, 10, 88, 0, 2]);
        // IPv6: no duplicate address detection, 20-byte attributes.
        let ip6: IpAddr = "fd00::2".parse().unwrap();
        let m = add_address(7, &ip6, 64, 43);
        assert_eq!(m.len(), 16 + 8 + 20 + 20);
        assert_eq!(&m[16..20], &[libc::AF_INET6 as u8, 64, IFA_F_NODAD, 0]);
    }

    #[test]
    fn mac_parsing_and_message() {
        assert_eq!(
            parse_mac("02:00:0a:FF:00:01").unwrap(),
            [2, 0, 0x0a, 0xff, 0, 1]
        );
        for bad in [
            "",
            "02:00:00:00:00",
            "02:00:00:00:00:01:02",
            "02-00-00-00-00-01",
            "2:00:00:00:00:01",
            "02:00:00:00:00:0g",
            "01:00:5e:00:00:01",
            "00:00:00:00:00:00",
        ] {
            assert!(
                matches!(parse_mac(bad), Err(GuestError::InvalidArgument(_))),
                "{bad:?}"
            );
        }
        let m = set_mac(3, &[2, 0, 0, 0, 0, 0x11], 9);
        // header 16 + ifinfomsg 16 + a 6-byte attribute padded to 12
        assert_eq!(m.len(), 44);
        assert_eq!(u16::from_ne_bytes(m[4..6].try_into().unwrap()), RTM_NEWLINK);
        assert_eq!(i32::from_ne_bytes(m[20..24].try_into().unwrap()), 3);
        assert_eq!(&m[24..32], &[0; 8], "flags and change untouched");
        assert_eq!(&m[32..42], &[10, 0, 1, 0, 2, 0, 0, 0, 0, 0x11]);
    }

    #[test]
    fn cidr_parsing() {
        assert_eq!(parse_cidr("fd00::2/64").unwrap().1, 64);
        assert!(parse_cidr("10.0.0.1").is_err());
        assert!(parse_cidr("10.0.0.1/33").is_err());
        assert!(parse_cidr("nope/8").is_err());
    }

    /// Real kernel check: a veth interface in a private network namespace gets MAC, address,
    /// MTU and default route; `ip` (iproute2, host only) is the oracle.
    #[test]
    #[cfg_attr(
        not(container_testenv),
        ignore = "needs root for network namespaces: run scripts/test.sh"
    )]
    fn configures_a_veth_interface_in_a_netns() {
        let ns = format!("vminitd-nl-{}", std::process::id());
        let ip = |args: &[&str]| {
            std::process::Command::new("ip")
                .args(args)
                .output()
                .expect("run ip")
        };
        assert!(
            ip(&["netns", "add", &ns]).status.success(),
            "ip netns add (needs root)"
        );
        let out = std::thread::spawn({
            let ns = ns.clone();
            move || {
                let f = std::fs::File::open(format!("/run/netns/{ns}")).unwrap();
                // SAFETY: setns on a valid fd; affects only this thread.
                assert_eq!(unsafe { libc::setns(f.as_raw_fd(), libc::CLONE_NEWNET) }, 0);
                let st = std::process::Command::new("ip")
                    .args(["link", "add", "d0", "type", "veth", "peer", "name", "d1"])
                    .status()
                    .unwrap();
                assert!(st.success());
                // The peer up first: d0 gets carrier when it goes up, and with it a link-local
                // address, which must not be tentative.
                let st = std::process::Command::new("ip")
                    .args(["link", "set", "d1", "up"])
                    .status()
                    .unwrap();
                assert!(st.success());
                setup(&Interface {
                    name: "d0".into(),
                    addresses: vec!["10.99.0.2/24".into(), "fd00:99::2/64".into()],
                    gateway: Some("10.99.0.1".into()),
                    gateway6: None,
                    mtu: Some(1400),
                    mac: Some("02:42:0a:63:00:02".into()),
                })
                .unwrap();
                assert!(matches!(index_of("nope0"), Err(GuestError::NotFound(_))));
                let bad_mac = Interface {
                    name: "d0".into(),
                    addresses: vec![],
                    gateway: None,
                    gateway6: None,
                    mtu: None,
                    mac: Some("02:42:0a:63:00".into()),
                };
                assert!(matches!(
                    setup(&bad_mac),
                    Err(GuestError::InvalidArgument(_))
                ));
            }
        })
        .join();
        let addr =
            String::from_utf8_lossy(&ip(&["-n", &ns, "addr", "show", "d0"]).stdout).into_owned();
        let route = String::from_utf8_lossy(&ip(&["-n", &ns, "route"]).stdout).into_owned();
        // `ip netns exec` mounts a sysfs of the namespace, as the guest's own /sys is.
        let mac = String::from_utf8_lossy(
            &ip(&["netns", "exec", &ns, "cat", "/sys/class/net/d0/address"]).stdout,
        )
        .into_owned();
        ip(&["netns", "del", &ns]);
        out.unwrap();
        assert!(
            addr.contains("mtu 1400")
                && addr.contains("10.99.0.2/24")
                && addr.contains("fd00:99::2/64"),
            "{addr}"
        );
        assert!(addr.contains("UP"), "{addr}");
        assert!(addr.contains("inet6 fe80::42:aff:fe63:2/64"), "{addr}");
        assert!(!addr.contains("tentative"), "{addr}");
        assert!(route.contains("default via 10.99.0.1 dev d0"), "{route}");
        assert_eq!(mac.trim(), "02:42:0a:63:00:02");
    }
}
