//! Published ports (`-p [HOST_IP:][HOST_PORT]:CTR_PORT[/tcp|/udp]` or `-p CTR_PORT`): parsing,
//! binding the host side early (a missing or 0 host port takes a free one from the kernel, as
//! docker's do), and a userspace proxy the container's monitor runs.
//!
//! Choice: a userspace proxy rather than nf_tables DNAT. DNAT does not apply to connections
//! from the host's own loopback (packets to 127.0.0.1 never leave through a routed interface
//! unless `route_localnet` is set, which weakens the host), yet "curl 127.0.0.1:8080" from the
//! host is the most common use. The proxy costs one copy per byte, which is small next to the
//! VM's virtio path.
//!
//! Conflicts are found before the VM boots: [`bind`] opens every listening socket and fails on
//! the first that cannot be bound, naming it. The monitor then hands the bound sockets to
//! [`BoundPorts::spawn`] once the container's address is known (or receives them as inherited
//! descriptors through [`BoundPorts::into_parts`] / [`BoundPorts::from_parts`]).

use std::collections::HashMap;
use std::fmt;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::os::fd::OwnedFd;
use std::str::FromStr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::net::{TcpListener, TcpStream, UdpSocket};

/// How long a UDP client may stay silent before its relay socket is closed.
const UDP_IDLE: Duration = Duration::from_secs(60);
/// How long to wait for the container to accept a relayed TCP connection.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Transport protocol of a published port.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    /// TCP (the default).
    Tcp,
    /// UDP.
    Udp,
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
        })
    }
}

/// One `-p` value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PortSpec {
    /// Host address to listen on (127.0.0.1 unless given).
    pub host_ip: IpAddr,
    /// Host port; 0 until bound when the kernel is to choose one.
    pub host_port: u16,
    /// Port inside the container.
    pub container_port: u16,
    /// tcp or udp.
    pub protocol: Protocol,
    /// No host address was given: the port is published on IPv6's loopback `[::1]` as well,
    /// on the same port (as docker publishes on `0.0.0.0` and `[::]`; our default stays the
    /// loopback). Where the host has no IPv6 loopback, IPv4 alone.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub loopback6: bool,
    /// The last port of a host range (`8000-8010:80`, docker's form): the first free port of
    /// `host_port..=host_port_end` is taken at bind time. 0: no range.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub host_port_end: u16,
}

fn is_zero(n: &u16) -> bool {
    *n == 0
}

/// One `-p` value, which may stand for several ports: docker's ranges
/// (`8000-8002:8000-8002`, `8000-8010:80`, `80-82`, `127.0.0.1:8000-8001:80-81/udp`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortSpecs(pub Vec<PortSpec>);

impl FromStr for PortSpecs {
    type Err = PortError;

    fn from_str(text: &str) -> Result<Self, PortError> {
        let bad = || PortError::Parse(text.to_string());
        let (rest, proto) = match text.rsplit_once('/') {
            Some((rest, p)) => (rest, Some(p)),
            None => (text, None),
        };
        // The container part is what follows the last ':'; the host part may hold an IPv6
        // address in brackets, whose colons are not separators.
        let (host, container) = match rest.rsplit_once(':') {
            Some((h, c)) => (Some(h), c),
            None => (None, rest),
        };
        let range = |r: &str| -> Result<Option<(u16, u16)>, PortError> {
            match r.split_once('-') {
                None => Ok(None),
                Some((a, b)) => {
                    let (a, b) = (
                        a.parse::<u16>().map_err(|_| bad())?,
                        b.parse::<u16>().map_err(|_| bad())?,
                    );
                    if a == 0 || b < a {
                        return Err(bad());
                    }
                    Ok(Some((a, b)))
                }
            }
        };
        let ctr_range = range(container)?;
        let (host_prefix, host_port) = match host {
            Some(h) => match h.rsplit_once(':') {
                Some((ip, port)) => (Some(ip), port),
                None => (None, h),
            },
            None => (None, ""),
        };
        let host_range = range(host_port)?;
        if ctr_range.is_none() && host_range.is_none() {
            return text.parse::<PortSpec>().map(|p| PortSpecs(vec![p]));
        }
        // Each single spec is parsed by `PortSpec` itself, so addresses and protocols follow
        // one rule.
        let single = |host_port: String, container_port: u16| -> Result<PortSpec, PortError> {
            let mut s = String::new();
            if let Some(ip) = host_prefix {
                s.push_str(ip);
                s.push(':');
            }
            if host.is_some() {
                s.push_str(&host_port);
                s.push(':');
            }
            s.push_str(&container_port.to_string());
            if let Some(p) = proto {
                s.push('/');
                s.push_str(p);
            }
            s.parse::<PortSpec>().map_err(|_| bad())
        };
        let specs = match (host_range, ctr_range) {
            (Some((h0, h1)), Some((c0, c1))) => {
                if h1 - h0 != c1 - c0 {
                    return Err(PortError::Parse(format!(
                        "{text}: the host range and the container range differ in size"
                    )));
                }
                (c0..=c1)
                    .zip(h0..=h1)
                    .map(|(c, h)| single(h.to_string(), c))
                    .collect::<Result<Vec<_>, _>>()?
            }
            // A host range for one container port: the first free port of the range.
            (Some((h0, h1)), None) => {
                let c = container.parse::<u16>().map_err(|_| bad())?;
                let mut spec = single(h0.to_string(), c)?;
                spec.host_port_end = h1;
                vec![spec]
            }
            // A container range with one host port cannot be; with none, free host ports.
            (None, Some((c0, c1))) => {
                if !host_port.is_empty() && c0 != c1 {
                    return Err(PortError::Parse(format!(
                        "{text}: a range of container ports needs a host range of the same size"
                    )));
                }
                (c0..=c1)
                    .map(|c| single(host_port.to_string(), c))
                    .collect::<Result<Vec<_>, _>>()?
            }
            (None, None) => unreachable!("handled above"),
        };
        Ok(PortSpecs(specs))
    }
}

impl fmt::Display for PortSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let host = SocketAddr::new(self.host_ip, self.host_port);
        write!(f, "{host}->{}/{}", self.container_port, self.protocol)
    }
}

/// A failure parsing, binding or relaying published ports.
#[derive(Debug, thiserror::Error)]
pub enum PortError {
    /// The `-p` value is malformed.
    #[error(
        "invalid port mapping {0:?}: expected [HOST_IP:][HOST_PORT]:CONTAINER_PORT[/tcp|/udp]"
    )]
    Parse(String),
    /// A host port could not be bound (usually: in use).
    #[error("cannot publish {0}: host port {1}/{2} is not available")]
    Bind(String, SocketAddr, Protocol, #[source] io::Error),
    /// A socket could not be handed to the async runtime.
    #[error("cannot set up the listener for {0}")]
    Register(String, #[source] io::Error),
}

impl FromStr for PortSpec {
    type Err = PortError;

    fn from_str(text: &str) -> Result<Self, PortError> {
        let bad = || PortError::Parse(text.to_string());
        let (rest, protocol) = match text.rsplit_once('/') {
            Some((rest, "tcp")) => (rest, Protocol::Tcp),
            Some((rest, "udp")) => (rest, Protocol::Udp),
            Some(_) => return Err(bad()),
            None => (text, Protocol::Tcp),
        };
        let port = |p: &str| p.parse::<u16>().ok().filter(|p| *p != 0).ok_or_else(bad);
        let Some((host_part, container_port)) = rest.rsplit_once(':') else {
            // A container port alone: any free host port on the loopback.
            return Ok(PortSpec {
                host_ip: IpAddr::V4(Ipv4Addr::LOCALHOST),
                host_port: 0,
                container_port: port(rest)?,
                protocol,
                loopback6: true,
                host_port_end: 0,
            });
        };
        let (host_ip, host_port, loopback6) = match host_part.rsplit_once(':') {
            // "[::1]:8080" or "127.0.0.1:8080"
            Some((ip, port)) => {
                let ip = ip
                    .strip_prefix('[')
                    .and_then(|i| i.strip_suffix(']'))
                    .unwrap_or(ip);
                (ip.parse::<IpAddr>().map_err(|_| bad())?, port, false)
            }
            None => (IpAddr::V4(Ipv4Addr::LOCALHOST), host_part, true),
        };
        if host_part.is_empty() {
            return Err(bad());
        }
        let host_port = match host_port {
            "" => 0,
            p => p.parse::<u16>().map_err(|_| bad())?,
        };
        Ok(PortSpec {
            host_ip,
            host_port,
            container_port: port(container_port)?,
            protocol,
            loopback6,
            host_port_end: 0,
        })
    }
}

/// A bound host-side socket for one published port.
#[derive(Debug)]
enum Socket {
    Tcp(std::net::TcpListener),
    Udp(std::net::UdpSocket),
}

/// Host ports bound ahead of the VM's boot, waiting for the container's address.
#[derive(Debug)]
pub struct BoundPorts {
    ports: Vec<(PortSpec, Socket)>,
}

/// Binds every published port now, so a conflict is reported before anything else starts.
/// Specs with host port 0 get the port the kernel chose (see [`BoundPorts::specs`]); a spec
/// without a host address is bound on `127.0.0.1` and, where the host has an IPv6 loopback, on
/// `[::1]` with the same port (two entries in [`BoundPorts::specs`]).
pub fn bind(specs: &[PortSpec]) -> Result<BoundPorts, PortError> {
    let mut ports = Vec::new();
    for spec in specs {
        ports.extend(bind_spec(spec)?);
    }
    Ok(BoundPorts { ports })
}

/// The sockets of one spec. The candidate ports are its port, or each of its host range in
/// turn, or for port 0 a few the kernel picks: the next is tried when a candidate is taken,
/// on `127.0.0.1` or (for the loopback default) on `[::1]`, so that both get the same port.
fn bind_spec(spec: &PortSpec) -> Result<Vec<(PortSpec, Socket)>, PortError> {
    let candidates: Vec<u16> = if spec.host_port == 0 {
        vec![0; 8]
    } else {
        (spec.host_port..=spec.host_port_end.max(spec.host_port)).collect()
    };
    let last = candidates.len() - 1;
    for (i, port) in candidates.into_iter().enumerate() {
        let (bound, socket) = match bind_one(spec, spec.host_ip, port) {
            Err(PortError::Bind(..)) if i < last => continue,
            other => other?,
        };
        if !spec.loopback6 {
            return Ok(vec![(bound, socket)]);
        }
        match bind_one(spec, Ipv6Addr::LOCALHOST.into(), bound.host_port) {
            Ok(v6) => return Ok(vec![(bound, socket), v6]),
            // No IPv6 on this host's loopback (disabled, or a namespace without it).
            Err(PortError::Bind(.., e))
                if matches!(
                    e.raw_os_error(),
                    Some(libc::EADDRNOTAVAIL | libc::EAFNOSUPPORT)
                ) =>
            {
                return Ok(vec![(bound, socket)])
            }
            Err(e) if i == last => return Err(e),
            Err(_) => continue,
        }
    }
    unreachable!("the last candidate returns")
}

/// Binds `spec` on `ip:port`; returns the spec as bound (its own address and port, no longer
/// standing for two addresses) and the socket.
fn bind_one(spec: &PortSpec, ip: IpAddr, port: u16) -> Result<(PortSpec, Socket), PortError> {
    let addr = SocketAddr::new(ip, port);
    let err = |e| PortError::Bind(spec.to_string(), addr, spec.protocol, e);
    let (socket, local) = match spec.protocol {
        Protocol::Tcp => {
            let l = std::net::TcpListener::bind(addr).map_err(err)?;
            let local = l.local_addr().map_err(err)?;
            (Socket::Tcp(l), local)
        }
        Protocol::Udp => {
            let s = std::net::UdpSocket::bind(addr).map_err(err)?;
            let local = s.local_addr().map_err(err)?;
            (Socket::Udp(s), local)
        }
    };
    let bound = PortSpec {
        host_ip: ip,
        host_port: local.port(),
        loopback6: false,
        host_port_end: 0,
        ..*spec
    };
    Ok((bound, socket))
}

impl BoundPorts {
    /// The specs these sockets serve, with the host ports actually bound.
    pub fn specs(&self) -> Vec<PortSpec> {
        self.ports.iter().map(|(s, _)| *s).collect()
    }

    /// The sockets as descriptors, to pass to another process (clear `FD_CLOEXEC` there).
    pub fn into_parts(self) -> Vec<(PortSpec, OwnedFd)> {
        self.ports
            .into_iter()
            .map(|(spec, socket)| match socket {
                Socket::Tcp(l) => (spec, OwnedFd::from(l)),
                Socket::Udp(s) => (spec, OwnedFd::from(s)),
            })
            .collect()
    }

    /// Rebuilds from descriptors made by [`BoundPorts::into_parts`] (a TCP listener for a tcp
    /// spec, a bound UDP socket for a udp one).
    pub fn from_parts(parts: Vec<(PortSpec, OwnedFd)>) -> Self {
        let ports = parts
            .into_iter()
            .map(|(spec, fd)| match spec.protocol {
                Protocol::Tcp => (spec, Socket::Tcp(std::net::TcpListener::from(fd))),
                Protocol::Udp => (spec, Socket::Udp(std::net::UdpSocket::from(fd))),
            })
            .collect();
        Self { ports }
    }

    /// Starts relaying every port to `container` on the current tokio runtime. The relays run
    /// until the returned handle is aborted (or dropped with [`Forwarder`]'s drop), which also
    /// closes the host sockets.
    pub fn spawn(self, container: IpAddr) -> Result<Forwarder, PortError> {
        let mut tasks = Vec::new();
        for (spec, socket) in self.ports {
            let target = SocketAddr::new(container, spec.container_port);
            let register = |e| PortError::Register(spec.to_string(), e);
            match socket {
                Socket::Tcp(l) => {
                    l.set_nonblocking(true).map_err(register)?;
                    let listener = TcpListener::from_std(l).map_err(register)?;
                    tasks.push(tokio::spawn(relay_tcp(listener, target)));
                }
                Socket::Udp(s) => {
                    s.set_nonblocking(true).map_err(register)?;
                    let socket = UdpSocket::from_std(s).map_err(register)?;
                    tasks.push(tokio::spawn(relay_udp(Arc::new(socket), target)));
                }
            }
        }
        Ok(Forwarder { tasks })
    }
}

/// Running relays; dropping it stops them and closes the host ports.
#[derive(Debug)]
pub struct Forwarder {
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Drop for Forwarder {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

async fn relay_tcp(listener: TcpListener, target: SocketAddr) {
    loop {
        let (mut client, peer) = match listener.accept().await {
            Ok(pair) => pair,
            Err(e) => {
                // EMFILE and friends: back off instead of spinning.
                tracing::warn!("accept on published port for {target} failed: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        tokio::spawn(async move {
            let upstream = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(target)).await;
            let mut upstream = match upstream {
                Ok(Ok(s)) => s,
                Ok(Err(e)) => {
                    tracing::debug!("relay {peer} -> {target}: {e}");
                    return;
                }
                Err(_) => {
                    tracing::debug!("relay {peer} -> {target}: connect timed out");
                    return;
                }
            };
            let _ = client.set_nodelay(true);
            let _ = upstream.set_nodelay(true);
            if let Err(e) = tokio::io::copy_bidirectional(&mut client, &mut upstream).await {
                tracing::debug!("relay {peer} -> {target} ended: {e}");
            }
        });
    }
}

type Sessions = Arc<Mutex<HashMap<SocketAddr, Arc<UdpSocket>>>>;

/// One connected socket towards the container per client address, so replies find their way
/// back; a session ends after [`UDP_IDLE`] without replies.
async fn relay_udp(host: Arc<UdpSocket>, target: SocketAddr) {
    let sessions: Sessions = Arc::default();
    let mut buf = vec![0u8; 65536];
    loop {
        let (n, client) = match host.recv_from(&mut buf).await {
            Ok(pair) => pair,
            Err(e) => {
                tracing::debug!("udp receive for {target}: {e}");
                continue;
            }
        };
        let existing = sessions.lock().ok().and_then(|s| s.get(&client).cloned());
        let upstream = match existing {
            Some(u) => u,
            None => match open_session(&host, &sessions, client, target).await {
                Ok(u) => u,
                Err(e) => {
                    tracing::warn!("udp relay {client} -> {target}: {e}");
                    continue;
                }
            },
        };
        if let Err(e) = upstream.send(&buf[..n]).await {
            tracing::debug!("udp relay {client} -> {target}: {e}");
        }
    }
}

async fn open_session(
    host: &Arc<UdpSocket>,
    sessions: &Sessions,
    client: SocketAddr,
    target: SocketAddr,
) -> io::Result<Arc<UdpSocket>> {
    let local: SocketAddr = match target {
        SocketAddr::V4(_) => (Ipv4Addr::UNSPECIFIED, 0).into(),
        SocketAddr::V6(_) => (std::net::Ipv6Addr::UNSPECIFIED, 0).into(),
    };
    let upstream = UdpSocket::bind(local).await?;
    upstream.connect(target).await?;
    let upstream = Arc::new(upstream);
    if let Ok(mut map) = sessions.lock() {
        map.insert(client, upstream.clone());
    }
    let (host, sessions, reply) = (host.clone(), sessions.clone(), upstream.clone());
    tokio::spawn(async move {
        let mut buf = vec![0u8; 65536];
        loop {
            match tokio::time::timeout(UDP_IDLE, reply.recv(&mut buf)).await {
                Ok(Ok(n)) => {
                    let _ = host.send_to(&buf[..n], client).await;
                }
                // ICMP port unreachable surfaces as ECONNREFUSED once; keep the session.
                Ok(Err(_)) => {}
                Err(_) => break,
            }
        }
        if let Ok(mut map) = sessions.lock() {
            map.remove(&client);
        }
    });
    Ok(upstream)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_forms() {
        let p: PortSpec = "8080:80".parse().unwrap();
        assert_eq!(p.host_ip, IpAddr::V4(Ipv4Addr::LOCALHOST));
        assert_eq!(
            (p.host_port, p.container_port, p.protocol),
            (8080, 80, Protocol::Tcp)
        );
        let p: PortSpec = "0.0.0.0:53:5353/udp".parse().unwrap();
        assert_eq!(p.host_ip, IpAddr::V4(Ipv4Addr::UNSPECIFIED));
        assert_eq!(
            (p.host_port, p.container_port, p.protocol),
            (53, 5353, Protocol::Udp)
        );
        assert!("8080:80".parse::<PortSpec>().unwrap().loopback6);
        assert!(!p.loopback6);
        let p: PortSpec = "[::1]:9000:90/tcp".parse().unwrap();
        assert_eq!(p.host_ip, "::1".parse::<IpAddr>().unwrap());
        assert!(!p.loopback6);
        // No host port: the kernel picks one at bind time.
        let p: PortSpec = "80".parse().unwrap();
        assert_eq!((p.host_port, p.container_port), (0, 80));
        let p: PortSpec = "0.0.0.0::53/udp".parse().unwrap();
        assert_eq!(p.host_ip, IpAddr::V4(Ipv4Addr::UNSPECIFIED));
        assert_eq!((p.host_port, p.container_port), (0, 53));
        assert_eq!("0:80".parse::<PortSpec>().unwrap().host_port, 0);
        for bad in [
            "a:80",
            "8080:80/sctp",
            "1.2.3:80:80",
            "70000:80",
            ":80",
            "8080:",
            "80:0",
        ] {
            assert!(bad.parse::<PortSpec>().is_err(), "{bad} parsed");
        }
    }

    #[test]
    fn ranges_expand_as_dockers_do() {
        let specs = |t: &str| t.parse::<PortSpecs>().unwrap().0;
        let pairs = |v: Vec<PortSpec>| {
            v.iter()
                .map(|p| (p.host_port, p.container_port))
                .collect::<Vec<_>>()
        };
        assert_eq!(
            pairs(specs("8000-8002:9000-9002")),
            [(8000, 9000), (8001, 9001), (8002, 9002)]
        );
        let udp = specs("127.0.0.1:8000-8001:80-81/udp");
        assert!(udp
            .iter()
            .all(|p| p.protocol == Protocol::Udp && !p.loopback6 && p.host_ip.is_loopback()));
        assert_eq!(pairs(udp), [(8000, 80), (8001, 81)]);
        assert_eq!(pairs(specs("80-82")), [(0, 80), (0, 81), (0, 82)]);
        assert_eq!(pairs(specs("[::1]::80-81")), [(0, 80), (0, 81)]);
        let one = specs("8000-8010:80");
        assert_eq!((one[0].host_port, one[0].host_port_end), (8000, 8010));
        assert_eq!(
            specs("8080:80"),
            vec!["8080:80".parse::<PortSpec>().unwrap()]
        );
        for bad in [
            "8000-8001:80-82",
            "8080:80-81",
            "9-8:80",
            "0-3:0-3",
            "a-b:80",
            "80-",
        ] {
            assert!(bad.parse::<PortSpecs>().is_err(), "{bad} parsed");
        }
    }

    #[test]
    fn a_host_range_takes_its_first_free_port() {
        let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = taken.local_addr().unwrap().port();
        let spec = format!("127.0.0.1:{port}-{}:80", port + 20)
            .parse::<PortSpecs>()
            .unwrap()
            .0[0];
        let bound = bind(&[spec]).unwrap().specs();
        assert!(
            bound[0].host_port > port && bound[0].host_port <= port + 20,
            "{bound:?}"
        );
        assert_eq!(bound[0].host_port_end, 0);
        let full = format!("127.0.0.1:{port}-{port}:80")
            .parse::<PortSpecs>()
            .unwrap()
            .0[0];
        assert!(bind(&[full]).is_err());
        // Without an address, a port taken on [::1] alone moves the pair to the next one.
        if let Ok(v6) = std::net::TcpListener::bind("[::1]:0") {
            let p6 = v6.local_addr().unwrap().port();
            let spec = format!("{p6}-{}:80", p6 + 20)
                .parse::<PortSpecs>()
                .unwrap()
                .0[0];
            let bound = bind(&[spec]).unwrap().specs();
            assert_eq!(bound.len(), 2, "{bound:?}");
            assert!(bound[0].host_port > p6, "{bound:?}");
            assert_eq!(bound[0].host_port, bound[1].host_port);
        }
    }

    #[test]
    fn conflict_is_reported_with_the_port() {
        let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = taken.local_addr().unwrap().port();
        let spec: PortSpec = format!("127.0.0.1:{port}:80").parse().unwrap();
        let err = bind(&[spec]).unwrap_err();
        assert!(
            err.to_string().contains(&format!("127.0.0.1:{port}/tcp")),
            "{err}"
        );
        // The same port twice in one request conflicts too.
        drop(taken);
        let err = bind(&[spec, spec]).unwrap_err();
        assert!(matches!(err, PortError::Bind(..)), "{err}");
        // Port 0 is a free port, reported back.
        let any: PortSpec = "80".parse().unwrap();
        let bound = bind(&[any, any]).unwrap().specs();
        assert!(bound.iter().all(|s| s.host_port != 0), "{bound:?}");
        let v4: Vec<u16> = bound
            .iter()
            .filter(|s| s.host_ip.is_ipv4())
            .map(|s| s.host_port)
            .collect();
        assert_eq!(v4.len(), 2, "{bound:?}");
        assert_ne!(v4[0], v4[1]);
    }

    #[test]
    fn no_host_address_means_both_loopbacks_on_one_port() {
        let has_ipv6_loopback = std::net::TcpListener::bind("[::1]:0").is_ok();
        let any: PortSpec = "80".parse().unwrap();
        let bound = bind(&[any]).unwrap().specs();
        if !has_ipv6_loopback {
            assert_eq!(bound.len(), 1, "{bound:?}");
            return;
        }
        assert_eq!(bound.len(), 2, "{bound:?}");
        assert_eq!(bound[0].host_ip, IpAddr::from(Ipv4Addr::LOCALHOST));
        assert_eq!(bound[1].host_ip, IpAddr::from(Ipv6Addr::LOCALHOST));
        assert_eq!(bound[0].host_port, bound[1].host_port);
        assert!(bound.iter().all(|s| !s.loopback6));
        // A port taken on [::1] alone is a conflict for an explicit port.
        let taken = std::net::TcpListener::bind("[::1]:0").unwrap();
        let port = taken.local_addr().unwrap().port();
        let spec: PortSpec = format!("{port}:80").parse().unwrap();
        let err = bind(&[spec]).unwrap_err();
        assert!(err.to_string().contains(&format!("[::1]:{port}")), "{err}");
        // An explicit address is that address alone.
        let one: PortSpec = "127.0.0.1::80".parse().unwrap();
        assert_eq!(bind(&[one]).unwrap().specs().len(), 1);
    }

    #[tokio::test]
    async fn relays_tcp_and_udp_on_loopback() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        // "Container" services on 127.0.0.2 (all of 127/8 is local).
        let echo_tcp = TcpListener::bind("127.0.0.2:0").await.unwrap();
        let tcp_port = echo_tcp.local_addr().unwrap().port();
        tokio::spawn(async move {
            let (mut s, _) = echo_tcp.accept().await.unwrap();
            let mut buf = [0u8; 5];
            s.read_exact(&mut buf).await.unwrap();
            s.write_all(&buf).await.unwrap();
        });
        let echo_udp = UdpSocket::bind("127.0.0.2:0").await.unwrap();
        let udp_port = echo_udp.local_addr().unwrap().port();
        tokio::spawn(async move {
            let mut buf = [0u8; 64];
            let (n, from) = echo_udp.recv_from(&mut buf).await.unwrap();
            echo_udp.send_to(&buf[..n], from).await.unwrap();
        });
        let host_tcp = free_port();
        let host_udp = free_port();
        let specs: Vec<PortSpec> = vec![
            format!("{host_tcp}:{tcp_port}").parse().unwrap(),
            format!("{host_udp}:{udp_port}/udp").parse().unwrap(),
        ];
        let forwarder = bind(&specs)
            .unwrap()
            .spawn("127.0.0.2".parse().unwrap())
            .unwrap();
        let mut c = TcpStream::connect(("127.0.0.1", host_tcp)).await.unwrap();
        c.write_all(b"hello").await.unwrap();
        let mut buf = [0u8; 5];
        c.read_exact(&mut buf).await.unwrap();
        assert_eq!(&buf, b"hello");
        let u = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        u.send_to(b"ping", ("127.0.0.1", host_udp)).await.unwrap();
        let mut buf = [0u8; 16];
        let (n, _) = tokio::time::timeout(Duration::from_secs(5), u.recv_from(&mut buf))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(&buf[..n], b"ping");
        drop(forwarder);
        tokio::task::yield_now().await;
    }

    fn free_port() -> u16 {
        std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port()
    }
}
