//! A small DNS responder on a network's gateway address: it answers the names of the containers
//! on that network (from the network's lease file, read afresh for every query, so a container
//! that started a second ago is found) and relays every other query unchanged to the host's
//! name servers (not for `--internal` networks, which get NXDOMAIN instead).
//!
//! Daemonless: every container's monitor runs one responder per network it is attached to. All
//! of them bind `GATEWAY:53/udp` with `SO_REUSEPORT`, the kernel spreads queries over them, and
//! since all read the same lease file they give the same answers. The responder lives as long
//! as some container of the network runs, which is exactly as long as it is needed.
//!
//! Wire format handling is the `simple-dns` crate's; relayed queries are not parsed at all. UDP and
//! TCP (for answers too large for a datagram) are both served.
//!
//! The gateway address is the host's own, so a container on any network reaches every
//! network's gateway (traffic to the host is not forwarded, so the isolation rules do not see
//! it). Given the network's subnet ([`DnsResponder::only_from`]), the responder ignores queries
//! from elsewhere: another network must learn nothing of this one's names, and an `--internal`
//! network must not use another network's relay as its way out.

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use ipnet::Ipv4Net;
use simple_dns::rdata::{RData, A, AAAA};
use simple_dns::{Packet, PacketFlag, ResourceRecord, CLASS, QTYPE, RCODE, TYPE};
use socket2::{Domain, Protocol, Socket, Type};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::task::JoinSet;

use crate::hosts::nameservers;
use crate::store::Store;

/// How long a TCP client may stay silent before its connection is closed.
const TCP_IDLE: Duration = Duration::from_secs(10);
/// How long a relayed query may wait for the upstream's answer.
const UPSTREAM_TIMEOUT: Duration = Duration::from_secs(3);

/// A failure starting the responder.
#[derive(Debug, thiserror::Error)]
pub enum DnsError {
    /// The gateway's port 53 could not be bound.
    #[error("cannot listen for DNS on {0}")]
    Bind(SocketAddr, #[source] io::Error),
    /// The network's state could not be opened.
    #[error("cannot open network state for the DNS responder")]
    Store(#[source] crate::StoreError),
}

/// Name servers the host itself uses (from `/etc/resolv.conf`, loopback ones included: the
/// responder runs on the host), as port-53 socket addresses.
pub fn host_upstreams() -> Vec<SocketAddr> {
    let text = std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default();
    nameservers(&text)
        .into_iter()
        .map(|ip| SocketAddr::new(IpAddr::V4(ip), 53))
        .collect()
}

/// A bound responder for one network, not yet serving.
#[derive(Debug)]
pub struct DnsResponder {
    udp: std::net::UdpSocket,
    tcp: std::net::TcpListener,
    store: Store,
    network: String,
    internal: bool,
    upstreams: Vec<SocketAddr>,
    clients: Option<Ipv4Net>,
}

impl DnsResponder {
    /// Binds `gateway:port` (53 in production) for network `network` of state root `root`.
    /// `upstreams` receive the queries for other names (see [`host_upstreams`]); ignored when
    /// `internal`.
    pub fn bind(
        root: &Path,
        network: &str,
        gateway: Ipv4Addr,
        port: u16,
        internal: bool,
        upstreams: Vec<SocketAddr>,
    ) -> Result<Self, DnsError> {
        let addr = SocketAddr::new(IpAddr::V4(gateway), port);
        // SO_REUSEPORT: every monitor on this network binds the same address (module doc).
        let socket = |ty: Type, proto: Protocol| -> io::Result<Socket> {
            let socket = Socket::new(Domain::IPV4, ty, Some(proto))?;
            socket.set_reuse_address(true)?;
            socket.set_reuse_port(true)?;
            socket.set_nonblocking(true)?;
            socket.bind(&addr.into())?;
            Ok(socket)
        };
        let udp = socket(Type::DGRAM, Protocol::UDP).map_err(|e| DnsError::Bind(addr, e))?;
        let tcp = socket(Type::STREAM, Protocol::TCP)
            .and_then(|s| s.listen(128).map(|()| s))
            .map_err(|e| DnsError::Bind(addr, e))?;
        let store = Store::open(root).map_err(DnsError::Store)?;
        Ok(Self {
            udp: udp.into(),
            tcp: tcp.into(),
            store,
            network: network.to_string(),
            internal,
            upstreams,
            clients: None,
        })
    }

    /// Serves only clients whose address is in `subnet` (the network's own); queries and
    /// connections from anywhere else get no answer (see the module doc).
    pub fn only_from(mut self, subnet: Ipv4Net) -> Self {
        self.clients = Some(subnet);
        self
    }

    /// Serves UDP and TCP on the current tokio runtime until the returned task is aborted
    /// (which also ends every query and connection in flight).
    pub fn spawn(self) -> io::Result<tokio::task::JoinHandle<()>> {
        let udp = Arc::new(UdpSocket::from_std(self.udp)?);
        let tcp = TcpListener::from_std(self.tcp)?;
        let shared = Arc::new(Shared {
            store: self.store,
            network: self.network,
            internal: self.internal,
            upstreams: self.upstreams,
            clients: self.clients,
        });
        Ok(tokio::spawn(async move {
            tokio::join!(serve_udp(udp, shared.clone()), serve_tcp(tcp, shared));
        }))
    }
}

async fn serve_udp(socket: Arc<UdpSocket>, shared: Arc<Shared>) {
    let mut tasks = JoinSet::new();
    let mut buf = vec![0u8; 4096];
    loop {
        while tasks.try_join_next().is_some() {}
        let (n, client) = match socket.recv_from(&mut buf).await {
            Ok(pair) => pair,
            Err(e) => {
                tracing::debug!("dns receive: {e}");
                continue;
            }
        };
        if !shared.admits(client.ip()) {
            continue;
        }
        let query = buf[..n].to_vec();
        let (socket, shared) = (socket.clone(), shared.clone());
        tasks.spawn(async move {
            if let Some(reply) = shared.answer(&query, false).await {
                let _ = socket.send_to(&reply, client).await;
            }
        });
    }
}

/// DNS over TCP (RFC 1035 §4.2.2: each message preceded by its 16-bit length), used by
/// resolvers when a UDP answer came back truncated.
async fn serve_tcp(listener: TcpListener, shared: Arc<Shared>) {
    let mut tasks = JoinSet::new();
    loop {
        while tasks.try_join_next().is_some() {}
        let stream = match listener.accept().await {
            Ok((stream, peer)) if shared.admits(peer.ip()) => stream,
            Ok(_) => continue,
            Err(e) => {
                tracing::debug!("dns accept: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let shared = shared.clone();
        tasks.spawn(async move {
            let _ = serve_tcp_connection(stream, &shared).await;
        });
    }
}

async fn serve_tcp_connection(mut stream: TcpStream, shared: &Shared) -> io::Result<()> {
    loop {
        let Ok(query) = tokio::time::timeout(TCP_IDLE, read_framed(&mut stream)).await else {
            return Ok(());
        };
        let query = query?;
        let Some(reply) = shared.answer(&query, true).await else {
            return Ok(());
        };
        write_framed(&mut stream, &reply).await?;
    }
}

async fn read_framed(stream: &mut TcpStream) -> io::Result<Vec<u8>> {
    let len = stream.read_u16().await?;
    let mut buf = vec![0u8; usize::from(len)];
    stream.read_exact(&mut buf).await?;
    Ok(buf)
}

async fn write_framed(stream: &mut TcpStream, message: &[u8]) -> io::Result<()> {
    let len = u16::try_from(message.len()).map_err(|_| io::Error::other("DNS message too long"))?;
    let mut framed = Vec::with_capacity(message.len() + 2);
    framed.extend_from_slice(&len.to_be_bytes());
    framed.extend_from_slice(message);
    stream.write_all(&framed).await
}

struct Shared {
    store: Store,
    network: String,
    internal: bool,
    upstreams: Vec<SocketAddr>,
    clients: Option<Ipv4Net>,
}

impl Shared {
    /// Whether a query from `client` is answered at all.
    fn admits(&self, client: IpAddr) -> bool {
        match (self.clients, client) {
            (None, _) => true,
            (Some(subnet), IpAddr::V4(ip)) => subnet.contains(&ip),
            (Some(_), IpAddr::V6(_)) => false,
        }
    }

    /// The reply to one query, or `None` to stay silent (unparseable input). Other names are
    /// relayed over the transport the query came on.
    async fn answer(&self, query: &[u8], tcp: bool) -> Option<Vec<u8>> {
        let packet = Packet::parse(query).ok()?;
        if packet.has_flags(PacketFlag::RESPONSE) {
            return None;
        }
        let local = match packet.questions.as_slice() {
            [q] => self.lookup(&q.qname.to_string()).map(|ip| (q.clone(), ip)),
            _ => None,
        };
        if let Some((question, (ip, ip6))) = local {
            let mut reply = Packet::new_reply(packet.id());
            reply.set_flags(PacketFlag::AUTHORITATIVE_ANSWER | PacketFlag::RECURSION_AVAILABLE);
            if packet.has_flags(PacketFlag::RECURSION_DESIRED) {
                reply.set_flags(PacketFlag::RECURSION_DESIRED);
            }
            // A for the container, AAAA on an IPv6 network; any other type of a container
            // name: no data, no error.
            let data = match question.qtype {
                QTYPE::TYPE(TYPE::A) => Some(RData::A(A::from(ip))),
                QTYPE::TYPE(TYPE::AAAA) => ip6.map(|ip6| RData::AAAA(AAAA::from(ip6))),
                _ => None,
            };
            if let Some(data) = data {
                let record = ResourceRecord::new(question.qname.clone(), CLASS::IN, 0, data);
                reply.answers.push(record);
            }
            reply.questions.push(question);
            return reply.build_bytes_vec().ok();
        }
        if self.internal || self.upstreams.is_empty() {
            let mut reply = Packet::new_reply(packet.id());
            reply.questions = packet.questions.clone();
            *reply.rcode_mut() = if self.internal {
                RCODE::NameError
            } else {
                RCODE::ServerFailure
            };
            return reply.build_bytes_vec().ok();
        }
        for upstream in &self.upstreams {
            let relayed = if tcp {
                relay_tcp(query, *upstream).await
            } else {
                relay(query, *upstream).await
            };
            match relayed {
                Ok(reply) => return Some(reply),
                Err(e) => tracing::debug!("dns relay to {upstream}: {e}"),
            }
        }
        let mut reply = Packet::new_reply(packet.id());
        reply.questions = packet.questions.clone();
        *reply.rcode_mut() = RCODE::ServerFailure;
        reply.build_bytes_vec().ok()
    }

    /// The addresses of the container on this network that `name` names: its name, one of its
    /// aliases there, or its short id (the first 12 digits, which docker answers as an alias
    /// too). Names come before aliases, so an alias never hides another container's name.
    /// The lease file is replaced atomically, so reading it without the lock sees one whole
    /// version.
    fn lookup(&self, name: &str) -> Option<(Ipv4Addr, Option<Ipv6Addr>)> {
        let name = name.trim_end_matches('.');
        let leases = self.store.read_leases_unlocked(&self.network).ok()?;
        let is = |n: &str| n.eq_ignore_ascii_case(name);
        let by_name = || {
            leases
                .leases
                .values()
                .find(|l| l.name.as_deref().is_some_and(is))
        };
        let by_alias = || {
            leases.leases.iter().find_map(|(id, l)| {
                let short = id.get(..12).is_some_and(|s| s.len() == name.len() && is(s));
                (short || l.aliases.iter().any(|a| is(a))).then_some(l)
            })
        };
        by_name().or_else(by_alias).map(|l| (l.address, l.address6))
    }
}

async fn relay_tcp(query: &[u8], upstream: SocketAddr) -> io::Result<Vec<u8>> {
    let exchange = async {
        let mut stream = TcpStream::connect(upstream).await?;
        write_framed(&mut stream, query).await?;
        read_framed(&mut stream).await
    };
    tokio::time::timeout(UPSTREAM_TIMEOUT, exchange)
        .await
        .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "no answer"))?
}

async fn relay(query: &[u8], upstream: SocketAddr) -> io::Result<Vec<u8>> {
    let local: SocketAddr = match upstream {
        SocketAddr::V4(_) => (Ipv4Addr::UNSPECIFIED, 0).into(),
        SocketAddr::V6(_) => (std::net::Ipv6Addr::UNSPECIFIED, 0).into(),
    };
    let socket = UdpSocket::bind(local).await?;
    socket.connect(upstream).await?;
    socket.send(query).await?;
    let mut buf = vec![0u8; 4096];
    let n = tokio::time::timeout(UPSTREAM_TIMEOUT, socket.recv(&mut buf))
        .await
        .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "no answer"))??;
    buf.truncate(n);
    Ok(buf)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};
    use simple_dns::{Name, Question, QCLASS};

    use crate::ipam::{Lease, Leases};

    fn shared(internal: bool) -> (tempfile::TempDir, Shared) {
        let root = tempfile::tempdir().unwrap();
        let store = Store::open(root.path()).unwrap();
        let mut leases = Leases::default();
        leases.leases.insert(
            "0123456789abcdef".into(),
            Lease {
                address: Ipv4Addr::new(10, 0, 0, 2),
                address6: None,
                mac: "02:00:00:00:00:01".into(),
                tap: "ctap0".into(),
                mtu: None,
                name: Some("web".into()),
                aliases: vec!["www".into()],
                attached: true,
            },
        );
        let lock = store.lock().unwrap();
        store.write_leases(&lock, "n", &leases).unwrap();
        drop(lock);
        let shared = Shared {
            store,
            network: "n".into(),
            internal,
            upstreams: Vec::new(),
            clients: None,
        };
        (root, shared)
    }

    fn query(name: &str, qtype: TYPE) -> Vec<u8> {
        let mut p = Packet::new_query(7);
        p.set_flags(PacketFlag::RECURSION_DESIRED);
        p.questions.push(Question::new(
            Name::new_unchecked(name),
            QTYPE::TYPE(qtype),
            QCLASS::CLASS(CLASS::IN),
            false,
        ));
        p.build_bytes_vec().unwrap()
    }

    #[tokio::test]
    async fn answers_names_and_refuses_the_rest_when_internal() {
        let (_root, s) = shared(true);
        let reply = s.answer(&query("Web.", TYPE::A), false).await.unwrap();
        let reply = Packet::parse(&reply).unwrap();
        assert_eq!(reply.id(), 7);
        assert_eq!(reply.answers.len(), 1);
        assert!(
            matches!(&reply.answers[0].rdata, RData::A(a) if a.address == u32::from(Ipv4Addr::new(10, 0, 0, 2)))
        );
        // An alias and the short id answer as the name does.
        for alias in ["WWW.", "0123456789ab"] {
            let reply = s.answer(&query(alias, TYPE::A), false).await.unwrap();
            assert_eq!(Packet::parse(&reply).unwrap().answers.len(), 1, "{alias}");
        }
        let reply = s
            .answer(&query("0123456789", TYPE::A), false)
            .await
            .unwrap();
        assert_eq!(Packet::parse(&reply).unwrap().rcode(), RCODE::NameError);
        let bytes = s.answer(&query("web", TYPE::AAAA), false).await.unwrap();
        let reply = Packet::parse(&bytes).unwrap();
        assert_eq!((reply.rcode(), reply.answers.len()), (RCODE::NoError, 0));
        let bytes = s.answer(&query("other", TYPE::A), false).await.unwrap();
        let reply = Packet::parse(&bytes).unwrap();
        assert_eq!(reply.rcode(), RCODE::NameError);
        // On an IPv6 network AAAA answers too.
        let store = &s.store;
        let lock = store.lock().unwrap();
        let mut leases = store.read_leases(&lock, "n").unwrap();
        for l in leases.leases.values_mut() {
            l.address6 = Some("fd00::2".parse().unwrap());
        }
        store.write_leases(&lock, "n", &leases).unwrap();
        drop(lock);
        let bytes = s.answer(&query("web", TYPE::AAAA), false).await.unwrap();
        let reply = Packet::parse(&bytes).unwrap();
        assert!(matches!(&reply.answers[..], [r] if matches!(&r.rdata,
            RData::AAAA(a) if a.address == u128::from("fd00::2".parse::<Ipv6Addr>().unwrap()))));
        // Without upstreams a non-internal network answers SERVFAIL rather than nothing.
        let (_root, s) = shared(false);
        let bytes = s.answer(&query("other", TYPE::A), false).await.unwrap();
        let reply = Packet::parse(&bytes).unwrap();
        assert_eq!(reply.rcode(), RCODE::ServerFailure);
    }

    /// A responder limited to its network's subnet ignores every other client, IPv6 ones
    /// included (the socket is IPv4); an unlimited one (the tests above) answers all.
    #[test]
    fn only_the_networks_own_clients_are_admitted() {
        let (_root, mut s) = shared(false);
        assert!(s.admits(IpAddr::V4(Ipv4Addr::new(10, 1, 0, 2))));
        s.clients = Some("10.0.0.0/24".parse().unwrap());
        assert!(s.admits(IpAddr::V4(Ipv4Addr::new(10, 0, 0, 2))));
        assert!(!s.admits(IpAddr::V4(Ipv4Addr::new(10, 0, 1, 2))));
        assert!(!s.admits(IpAddr::V6(Ipv6Addr::LOCALHOST)));
    }

    /// Guests send arbitrary bytes: random and truncated packets must never panic.
    #[tokio::test]
    async fn garbage_never_panics() {
        let (_root, s) = shared(true);
        let mut rng = rand::rngs::StdRng::seed_from_u64(42);
        let good = query("web", TYPE::A);
        for i in 0..5000 {
            let bytes: Vec<u8> = if i % 2 == 0 {
                let len = rng.gen_range(0..600);
                (0..len).map(|_| rng.gen()).collect()
            } else {
                let mut b = good.clone();
                b.truncate(rng.gen_range(0..good.len()));
                for _ in 0..rng.gen_range(0..4) {
                    if !b.is_empty() {
                        let at = rng.gen_range(0..b.len());
                        b[at] = rng.gen();
                    }
                }
                b
            };
            let _ = s.answer(&bytes, false).await;
        }
    }
}
