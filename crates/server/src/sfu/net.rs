//! The SFU's sockets: one UDP socket and one TCP listener on the same port, and which
//! addresses peers are told about.
//!
//! - **UDP on every interface.** Bound to a wildcard (`0.0.0.0`, or `::` for IPv6 and IPv4
//!   both), the socket offers a host candidate for each usable interface address. str0m
//!   accepts an ICE check only if it arrived at one of its own candidates, so every
//!   datagram's real destination is read (`IP_PKTINFO` / `IPV6_RECVPKTINFO`, through
//!   `quinn-udp`), and every reply leaves from the address the peer used.
//! - **TCP (ICE-TCP, RFC 6544 passive side).** For peers whose network drops UDP. Each
//!   connection carries RFC 4571 frames (a 16-bit length, then one STUN, DTLS, RTP or RTCP
//!   packet). Connections are capped, must be claimed by a session within
//!   [`TCP_CLAIM_TIMEOUT`] and are closed on the first frame no session takes, so a flood of
//!   connections or of garbage costs only the offender.
//! - **Announced addresses** ([`AddressPlan`]). Without `--media-ip`, what the interfaces
//!   have. With it (a server behind 1:1 NAT, e.g. a cloud VM), the public address stands in
//!   for every non-loopback interface address: what arrives at the private address is handed
//!   to str0m as arriving at the public one, and replies leave from the private one, which
//!   the NAT maps back.

use std::collections::HashMap;
use std::io;
use std::io::IoSliceMut;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use quinn_udp::{RecvMeta, UdpSockRef, UdpSocketState};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::sync::{mpsc, Semaphore};
use tokio::task::AbortHandle;

use super::engine::{Datagram, LocalCandidate};

/// Largest datagram we read; WebRTC stays under the 1500-byte MTU.
pub const MAX_DATAGRAM: usize = 2048;
/// Socket buffers asked of the kernel: a video keyframe fanned out to hundreds of viewers
/// is a burst of thousands of datagrams.
const SOCKET_BUFFER_BYTES: usize = 8 * 1024 * 1024;
/// Datagrams read by one `recvmmsg`.
const RECV_BATCH: usize = 32;

/// TCP media connections open at once; more are closed as they arrive.
pub const MAX_TCP_CONNECTIONS: usize = 1024;
/// Of those, connections no session has claimed yet (an ICE check with the right
/// credentials claims one).
pub const MAX_UNCLAIMED_TCP: usize = 64;
/// An unclaimed connection is closed after this long.
pub const TCP_CLAIM_TIMEOUT: Duration = Duration::from_secs(5);
/// A connection with nothing received for this long is closed (ICE consent checks arrive
/// every few seconds on a live one).
const TCP_IDLE_TIMEOUT: Duration = Duration::from_secs(30);
/// Frames queued for one TCP connection; beyond it frames are dropped (media prefers loss,
/// which NACK repairs, to a growing delay).
const TCP_SEND_QUEUE: usize = 512;
/// Frames from every TCP connection waiting for the SFU task.
const TCP_EVENT_QUEUE: usize = 1024;

/// Where the SFU listens and what it announces.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MediaConfig {
    /// The UDP socket's address (and the TCP listener's, when `tcp`). A wildcard IP serves
    /// every interface; `::` serves IPv6 and IPv4.
    pub bind: SocketAddr,
    /// Public IPs to announce in place of the interface addresses (1:1 NAT). Empty: the
    /// interfaces' own addresses.
    pub advertise: Vec<IpAddr>,
    /// IPs announced besides the others: the public URL's, for a server behind a NAT that
    /// forwards its ports (what arrives there reaches a private address, which is a
    /// candidate too, and replies leave from it, which the NAT maps back).
    pub also_announce: Vec<IpAddr>,
    /// Also accept ICE over TCP at the same port.
    pub tcp: bool,
}

/// Which local IPs the SFU serves on and what each is announced as. See the module docs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AddressPlan {
    bind: IpAddr,
    advertise: Vec<IpAddr>,
    also: Vec<IpAddr>,
}

impl AddressPlan {
    pub fn new(bind: IpAddr, advertise: Vec<IpAddr>) -> Self {
        AddressPlan {
            bind,
            advertise,
            also: Vec::new(),
        }
    }

    /// Also announces `ips` (those the socket serves, and not already announced).
    pub fn also_announce(mut self, ips: Vec<IpAddr>) -> Self {
        self.also = ips;
        self
    }

    /// The local IPs datagrams can arrive at: the bound IP, or for a wildcard every usable
    /// interface address of the families the socket serves (non-loopback first).
    pub fn local_ips(&self) -> Vec<IpAddr> {
        if !self.bind.is_unspecified() {
            return vec![self.bind];
        }
        let serves_v6 = self.bind.is_ipv6();
        let mut ips: Vec<IpAddr> = interface_addresses(serves_v6)
            .into_iter()
            .map(|a| a.ip)
            .collect();
        if ips.is_empty() {
            // Nothing listed: loopback still works on any machine.
            ips.push(if serves_v6 {
                IpAddr::V6(Ipv6Addr::LOCALHOST)
            } else {
                IpAddr::V4(Ipv4Addr::LOCALHOST)
            });
        }
        ips
    }

    /// What a local IP is announced as (and what str0m sees datagrams arrive at).
    pub fn announced(&self, local: IpAddr) -> IpAddr {
        if local.is_loopback() {
            return local;
        }
        self.advertise
            .iter()
            .find(|a| a.is_ipv4() == local.is_ipv4())
            .copied()
            .unwrap_or(local)
    }

    /// A datagram's real local address as str0m knows it: the candidate it was sent to.
    pub fn announced_addr(&self, local: SocketAddr) -> SocketAddr {
        SocketAddr::new(self.announced(local.ip()), local.port())
    }

    /// The local IP a datagram announced as leaving from `announced` is sent from; `None`
    /// lets the kernel choose (a public address no interface has).
    pub fn local_source(&self, announced: IpAddr) -> Option<IpAddr> {
        if self.advertise.contains(&announced) && !announced.is_loopback() {
            None
        } else {
            Some(announced)
        }
    }

    /// The candidates of a socket pair at `port`: UDP, and passive TCP when `tcp`.
    pub fn candidates(&self, port: u16, tcp: bool) -> Vec<LocalCandidate> {
        let mut announced: Vec<IpAddr> = self
            .local_ips()
            .into_iter()
            .map(|ip| self.announced(ip))
            .collect();
        let serves_v6 = self.bind.is_ipv6() && self.bind.is_unspecified();
        for ip in &self.also {
            let family_ok = ip.is_ipv4() == self.bind.is_ipv4() || serves_v6;
            if family_ok && usable(*ip) && !announced.contains(ip) {
                announced.push(*ip);
            }
        }
        announced.dedup();
        let mut out = Vec::new();
        for ip in &announced {
            out.push(LocalCandidate::udp(SocketAddr::new(*ip, port)));
        }
        if tcp {
            for ip in &announced {
                out.push(LocalCandidate::tcp(SocketAddr::new(*ip, port)));
            }
        }
        out
    }
}

/// One address of one of this machine's interfaces.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InterfaceAddress {
    /// The interface's name (`eth0`, `wlp2s0`, ...).
    pub name: String,
    pub ip: IpAddr,
}

/// The machine's usable interface addresses ([`usable`]), IPv6 ones only `with_v6`: IPv4
/// first, loopback last, each address once. What a wildcard-bound SFU offers, and what the
/// desktop app offers for its invite links. Empty if the interfaces cannot be listed.
pub fn interface_addresses(with_v6: bool) -> Vec<InterfaceAddress> {
    let listed = match if_addrs::get_if_addrs() {
        Ok(ifaces) => ifaces,
        Err(e) => {
            tracing::warn!(error = %e, "cannot list the network interfaces");
            Vec::new()
        }
    };
    let mut out: Vec<InterfaceAddress> = listed
        .into_iter()
        .map(|i| InterfaceAddress {
            ip: i.ip(),
            name: i.name,
        })
        .filter(|a| usable(a.ip) && (a.ip.is_ipv4() || with_v6))
        .collect();
    out.sort_by_key(|a| (a.ip.is_loopback(), a.ip.is_ipv6()));
    out.dedup_by(|a, b| a.ip == b.ip);
    out
}

/// An address peers can send to: not unspecified, multicast or link-local (which would
/// need a scope and is rarely routable).
pub fn usable(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => !v4.is_unspecified() && !v4.is_multicast() && !v4.is_link_local(),
        IpAddr::V6(v6) => {
            !v6.is_unspecified()
                && !v6.is_multicast()
                && (v6.segments()[0] & 0xffc0) != 0xfe80
                && v6.to_ipv4_mapped().is_none()
        }
    }
}

/// IPv4 peers of a dual-stack socket appear as `::ffff:a.b.c.d`: the engine and the
/// candidates speak plain IPv4.
fn canonical(addr: SocketAddr) -> SocketAddr {
    SocketAddr::new(addr.ip().to_canonical(), addr.port())
}

/// One datagram read from the UDP socket.
pub struct Received<'a> {
    pub source: SocketAddr,
    /// The local address it was sent to (the real one, not yet translated).
    pub destination: SocketAddr,
    pub contents: &'a [u8],
}

/// The UDP socket, with destination addresses on receive and source addresses on send.
pub struct MediaUdp {
    socket: UdpSocket,
    state: UdpSocketState,
    local: SocketAddr,
    bufs: Vec<Vec<u8>>,
    metas: Vec<RecvMeta>,
}

impl MediaUdp {
    pub fn bind(bind: SocketAddr) -> io::Result<MediaUdp> {
        let socket = socket2::Socket::new(
            socket2::Domain::for_address(bind),
            socket2::Type::DGRAM,
            Some(socket2::Protocol::UDP),
        )?;
        if bind.is_ipv6() {
            // `::` serves IPv4 too (as mapped addresses); a specific IPv6 address only itself.
            socket.set_only_v6(!bind.ip().is_unspecified())?;
        }
        socket.set_nonblocking(true)?;
        socket.bind(&bind.into())?;
        let std_socket: std::net::UdpSocket = socket.into();
        let state = UdpSocketState::new(UdpSockRef::from(&std_socket))?;
        // Best effort: the kernel caps these at its configured maximum.
        let _ = state.set_send_buffer_size(UdpSockRef::from(&std_socket), SOCKET_BUFFER_BYTES);
        let _ = state.set_recv_buffer_size(UdpSockRef::from(&std_socket), SOCKET_BUFFER_BYTES);
        let local = std_socket.local_addr()?;
        let socket = UdpSocket::from_std(std_socket)?;
        // With GRO the kernel may hand over several same-sized datagrams in one buffer.
        let buf_len = MAX_DATAGRAM * state.gro_segments().max(1);
        Ok(MediaUdp {
            socket,
            state,
            local,
            bufs: (0..RECV_BATCH).map(|_| vec![0u8; buf_len]).collect(),
            metas: vec![RecvMeta::default(); RECV_BATCH],
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    /// Waits until datagrams can be read.
    pub async fn readable(&self) -> io::Result<()> {
        self.socket.readable().await
    }

    /// Reads what is queued (at most one batch) without waiting and hands each datagram to
    /// `each`. Returns how many were read; 0 when nothing was waiting.
    pub fn try_recv(&mut self, mut each: impl FnMut(Received<'_>)) -> usize {
        let mut slices: Vec<IoSliceMut<'_>> =
            self.bufs.iter_mut().map(|b| IoSliceMut::new(b)).collect();
        let got = self.socket.try_io(tokio::io::Interest::READABLE, || {
            self.state
                .recv(UdpSockRef::from(&self.socket), &mut slices, &mut self.metas)
        });
        let n = match got {
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return 0,
            // ICMP errors (a peer went away) surface here on some systems.
            Err(e) => {
                tracing::trace!(error = %e, "udp receive");
                return 0;
            }
        };
        let mut count = 0;
        for (meta, buf) in self.metas.iter().zip(slices.iter()).take(n) {
            let source = canonical(meta.addr);
            let destination = SocketAddr::new(
                meta.dst_ip.map_or(self.local.ip(), |ip| ip.to_canonical()),
                self.local.port(),
            );
            let stride = meta.stride.max(1);
            for chunk in buf[..meta.len.min(buf.len())].chunks(stride) {
                count += 1;
                each(Received {
                    source,
                    destination,
                    contents: chunk,
                });
            }
        }
        count
    }

    /// Sends one datagram from `source` (`None`: the kernel's choice), waiting while the
    /// socket buffer is full. A peer that went away (ICMP) only costs its own datagram.
    pub async fn send(&self, source: Option<IpAddr>, destination: SocketAddr, contents: &[u8]) {
        let (destination, source) = if self.local.is_ipv6() {
            (map_v6(destination), source.map(map_v6_ip))
        } else {
            (destination, source)
        };
        // A specific bind has one source; naming it again is harmless but pointless.
        let src_ip = source.filter(|_| self.local.ip().is_unspecified());
        let transmit = quinn_udp::Transmit {
            destination,
            ecn: None,
            contents,
            segment_size: None,
            src_ip,
        };
        loop {
            let sent = self.socket.try_io(tokio::io::Interest::WRITABLE, || {
                self.state
                    .try_send(UdpSockRef::from(&self.socket), &transmit)
            });
            match sent {
                Ok(()) => return,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    if self.socket.writable().await.is_err() {
                        return;
                    }
                }
                Err(e) => {
                    tracing::trace!(error = %e, to = %destination, "udp send");
                    return;
                }
            }
        }
    }
}

fn map_v6(addr: SocketAddr) -> SocketAddr {
    SocketAddr::new(map_v6_ip(addr.ip()), addr.port())
}

fn map_v6_ip(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(v4) => IpAddr::V6(v4.to_ipv6_mapped()),
        v6 => v6,
    }
}

/// What the TCP connections tell the SFU task.
pub enum TcpEvent {
    Opened {
        peer: SocketAddr,
        /// The real local address of the connection.
        local: SocketAddr,
        conn: TcpConn,
    },
    Frame {
        peer: SocketAddr,
        data: Vec<u8>,
    },
    Closed {
        peer: SocketAddr,
    },
}

/// The SFU task's end of one TCP media connection. Dropping it closes the connection.
pub struct TcpConn {
    tx: mpsc::Sender<Vec<u8>>,
    task: AbortHandle,
}

impl Drop for TcpConn {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Binds the TCP listener for ICE-TCP on the UDP socket's address and starts accepting.
/// Returns the listener's address; events arrive on the returned receiver.
pub fn start_tcp(bind: SocketAddr) -> io::Result<(SocketAddr, mpsc::Receiver<TcpEvent>)> {
    let socket = socket2::Socket::new(
        socket2::Domain::for_address(bind),
        socket2::Type::STREAM,
        Some(socket2::Protocol::TCP),
    )?;
    if bind.is_ipv6() {
        socket.set_only_v6(!bind.ip().is_unspecified())?;
    }
    socket.set_reuse_address(true)?;
    socket.set_nonblocking(true)?;
    socket.bind(&bind.into())?;
    socket.listen(1024)?;
    let listener = TcpListener::from_std(socket.into())?;
    let local = listener.local_addr()?;
    let (events, rx) = mpsc::channel(TCP_EVENT_QUEUE);
    tokio::spawn(accept_loop(listener, events));
    Ok((local, rx))
}

async fn accept_loop(listener: TcpListener, events: mpsc::Sender<TcpEvent>) {
    let slots = Arc::new(Semaphore::new(MAX_TCP_CONNECTIONS));
    loop {
        // The SFU gone (shut down), the listener closes: its port must not outlive it.
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            () = events.closed() => return,
        };
        let (stream, peer) = match accepted {
            Ok(accepted) => accepted,
            Err(e) => {
                // EMFILE and friends: wait a little instead of spinning.
                tracing::debug!(error = %e, "tcp media accept");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        if events.is_closed() {
            return;
        }
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            tracing::debug!(%peer, "too many tcp media connections; closing a new one");
            continue; // dropping the stream closes it
        };
        let Ok(local) = stream.local_addr() else {
            continue;
        };
        let _ = stream.set_nodelay(true);
        let peer = canonical(peer);
        let local = canonical(local);
        let (tx, rx) = mpsc::channel(TCP_SEND_QUEUE);
        let task_events = events.clone();
        let task = tokio::spawn(async move {
            let _slot = slot;
            serve_tcp(stream, peer, rx, &task_events).await;
            let _ = task_events.send(TcpEvent::Closed { peer }).await;
        });
        let conn = TcpConn {
            tx,
            task: task.abort_handle(),
        };
        if events
            .send(TcpEvent::Opened { peer, local, conn })
            .await
            .is_err()
        {
            return;
        }
    }
}

/// Reads RFC 4571 frames into the SFU task and writes what it queues, until either side
/// ends, the peer sends something that is not a frame we take, or it goes quiet.
async fn serve_tcp(
    stream: TcpStream,
    peer: SocketAddr,
    mut outgoing: mpsc::Receiver<Vec<u8>>,
    events: &mpsc::Sender<TcpEvent>,
) {
    let (reader, mut writer) = stream.into_split();
    let read = read_frames(reader, peer, events);
    let write = async {
        while let Some(frame) = outgoing.recv().await {
            if writer.write_all(&frame).await.is_err() {
                return;
            }
        }
    };
    tokio::select! {
        () = read => {}
        () = write => {}
    }
}

/// Reads RFC 4571 frames (a 16-bit length, then that many bytes) into the SFU task until
/// the stream ends, goes quiet for [`TCP_IDLE_TIMEOUT`], or gives a length that is no frame
/// we take (0, or over [`MAX_DATAGRAM`]).
pub async fn read_frames(
    mut reader: impl AsyncRead + Unpin,
    peer: SocketAddr,
    events: &mpsc::Sender<TcpEvent>,
) {
    let mut len = [0u8; 2];
    loop {
        match tokio::time::timeout(TCP_IDLE_TIMEOUT, reader.read_exact(&mut len)).await {
            Ok(Ok(_)) => {}
            _ => return,
        }
        let n = usize::from(u16::from_be_bytes(len));
        if n == 0 || n > MAX_DATAGRAM {
            tracing::debug!(%peer, len = n, "tcp media: not a frame; closing");
            return;
        }
        let mut data = vec![0u8; n];
        match tokio::time::timeout(TCP_IDLE_TIMEOUT, reader.read_exact(&mut data)).await {
            Ok(Ok(_)) => {}
            _ => return,
        }
        if events.send(TcpEvent::Frame { peer, data }).await.is_err() {
            return;
        }
    }
}

/// The SFU task's view of the TCP connections: by peer address, with who claimed them.
#[derive(Default)]
pub struct TcpConns {
    conns: HashMap<SocketAddr, TcpEntry>,
}

struct TcpEntry {
    conn: TcpConn,
    local: SocketAddr,
    opened: Instant,
    claimed: bool,
}

impl TcpConns {
    /// A new connection; refused (closed) when too many are still unclaimed.
    pub fn open(&mut self, peer: SocketAddr, local: SocketAddr, conn: TcpConn, now: Instant) {
        let unclaimed = self.conns.values().filter(|e| !e.claimed).count();
        if unclaimed >= MAX_UNCLAIMED_TCP {
            tracing::debug!(%peer, "too many unclaimed tcp media connections; closing");
            return;
        }
        self.conns.insert(
            peer,
            TcpEntry {
                conn,
                local,
                opened: now,
                claimed: false,
            },
        );
    }

    /// The real local address of the connection from `peer`.
    pub fn local_of(&self, peer: &SocketAddr) -> Option<SocketAddr> {
        self.conns.get(peer).map(|e| e.local)
    }

    /// A session took a frame of this connection: it stays.
    pub fn claim(&mut self, peer: &SocketAddr) {
        if let Some(e) = self.conns.get_mut(peer) {
            e.claimed = true;
        }
    }

    pub fn close(&mut self, peer: &SocketAddr) {
        self.conns.remove(peer);
    }

    /// Closes connections nobody claimed in time.
    pub fn sweep(&mut self, now: Instant) {
        self.conns
            .retain(|_, e| e.claimed || now.duration_since(e.opened) < TCP_CLAIM_TIMEOUT);
    }

    pub fn len(&self) -> usize {
        self.conns.len()
    }

    pub fn is_empty(&self) -> bool {
        self.conns.is_empty()
    }

    /// Queues one datagram as an RFC 4571 frame. Dropped if there is no such connection or
    /// its queue is full.
    pub fn send(&self, d: &Datagram) -> bool {
        let Some(e) = self.conns.get(&d.destination) else {
            return false;
        };
        let Ok(len) = u16::try_from(d.contents.len()) else {
            return false;
        };
        let mut frame = Vec::with_capacity(d.contents.len() + 2);
        frame.extend_from_slice(&len.to_be_bytes());
        frame.extend_from_slice(&d.contents);
        e.conn.tx.try_send(frame).is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("ip")
    }

    #[test]
    fn a_specific_bind_serves_and_announces_itself() {
        let plan = AddressPlan::new(ip("10.1.2.3"), vec![]);
        assert_eq!(plan.local_ips(), vec![ip("10.1.2.3")]);
        assert_eq!(
            plan.candidates(5000, true),
            vec![
                LocalCandidate::udp("10.1.2.3:5000".parse().expect("addr")),
                LocalCandidate::tcp("10.1.2.3:5000".parse().expect("addr")),
            ]
        );
        assert_eq!(plan.local_source(ip("10.1.2.3")), Some(ip("10.1.2.3")));
    }

    #[test]
    fn a_wildcard_serves_every_interface_with_loopback_last() {
        let plan = AddressPlan::new(ip("0.0.0.0"), vec![]);
        let ips = plan.local_ips();
        assert!(ips.contains(&ip("127.0.0.1")), "{ips:?}");
        assert!(ips.iter().all(|i| i.is_ipv4() && !i.is_unspecified()));
        assert_eq!(ips.last(), Some(&ip("127.0.0.1")));
        let udp = plan.candidates(7, false);
        assert_eq!(udp.len(), ips.len());
    }

    #[test]
    fn a_public_address_stands_in_for_the_private_ones() {
        let plan = AddressPlan::new(ip("10.0.0.5"), vec![ip("203.0.113.7")]);
        assert_eq!(plan.announced(ip("10.0.0.5")), ip("203.0.113.7"));
        assert_eq!(plan.announced(ip("127.0.0.1")), ip("127.0.0.1"));
        // An IPv6 interface keeps its own address when only IPv4 is advertised.
        assert_eq!(plan.announced(ip("2001:db8::1")), ip("2001:db8::1"));
        assert_eq!(plan.local_source(ip("203.0.113.7")), None);
        assert_eq!(
            plan.candidates(9000, false),
            vec![LocalCandidate::udp(
                "203.0.113.7:9000".parse().expect("addr")
            )]
        );
    }

    #[test]
    fn the_public_url_address_is_announced_besides_the_interfaces() {
        let plan = AddressPlan::new(ip("10.0.0.5"), vec![]).also_announce(vec![
            ip("198.51.100.4"),
            ip("10.0.0.5"),
            ip("2001:db8::9"),
        ]);
        assert_eq!(
            plan.candidates(40000, false),
            vec![
                LocalCandidate::udp("10.0.0.5:40000".parse().expect("addr")),
                // Not again the interface's own, and no IPv6 on an IPv4 socket.
                LocalCandidate::udp("198.51.100.4:40000".parse().expect("addr")),
            ]
        );
        // It is no stand-in: replies to it leave from the interface, unchanged.
        assert_eq!(plan.announced(ip("10.0.0.5")), ip("10.0.0.5"));
    }

    #[test]
    fn link_local_and_mapped_addresses_are_not_offered() {
        assert!(!usable(ip("169.254.1.1")));
        assert!(!usable(ip("fe80::1")));
        assert!(!usable(ip("::ffff:10.0.0.1")));
        assert!(!usable(ip("0.0.0.0")));
        assert!(usable(ip("::1")));
        assert!(usable(ip("192.168.1.2")));
        assert!(usable(ip("2001:db8::2")));
    }

    #[test]
    fn dual_stack_peers_are_plain_ipv4() {
        let mapped: SocketAddr = "[::ffff:10.0.0.1]:5".parse().expect("addr");
        assert_eq!(canonical(mapped), "10.0.0.1:5".parse().expect("addr"));
        assert_eq!(map_v6("10.0.0.1:5".parse().expect("addr")), mapped);
    }
}
