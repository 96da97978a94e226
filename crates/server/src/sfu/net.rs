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
//! - **Batched sends.** One `sendmmsg` carries many datagrams, each to its own peer; runs
//!   of datagrams to one peer (a video frame's packets) travel as one buffer the kernel
//!   cuts into datagrams (UDP GSO, [`SendBatch`]), so the stack is walked once per run.

use std::collections::HashMap;
use std::io;
use std::io::IoSliceMut;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::atomic::{AtomicBool, Ordering};
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
    /// A send cut by the kernel failed (a device that cannot checksum what it is handed
    /// cut up): from then on every datagram goes alone.
    gso_failed: AtomicBool,
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
            gso_failed: AtomicBool::new(false),
            local,
            bufs: (0..RECV_BATCH).map(|_| vec![0u8; buf_len]).collect(),
            metas: vec![RecvMeta::default(); RECV_BATCH],
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    /// How many datagrams one send may carry cut by the kernel (UDP GSO): 1 where it
    /// cannot.
    pub fn max_segments(&self) -> usize {
        if self.gso_failed.load(Ordering::Relaxed) {
            return 1;
        }
        self.state.max_gso_segments().clamp(1, MAX_SEGMENTS)
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

    /// Sends `batch` in order, each datagram from its `source` (`None`: the kernel's
    /// choice), waiting while the socket buffer is full. On Linux one `sendmmsg` takes up
    /// to [`SEND_BATCH`] datagrams; when the kernel takes only part of them the rest follow
    /// in the next call. A datagram the kernel refuses (no route, a firewall, a broadcast
    /// address) only costs itself.
    pub async fn send_batch(&self, batch: &[Outgoing<'_>]) {
        let mut done = 0;
        loop {
            let step = send_in_order(batch, &mut done, |part| {
                let sent = self
                    .socket
                    .try_io(tokio::io::Interest::WRITABLE, || self.send_prefix(part));
                if let Err(e) = &sent {
                    // EIO is how Linux refuses a segmented send the device cannot take.
                    if e.raw_os_error() == Some(libc::EIO)
                        && part[0].segment.is_some()
                        && !self.gso_failed.swap(true, Ordering::Relaxed)
                    {
                        tracing::warn!(error = %e, "UDP segmentation offload refused: sending datagrams one by one");
                    }
                }
                sent
            });
            match step {
                Ok(()) => return,
                // The buffer is full: the rest go once there is room.
                Err(_) => {
                    if self.socket.writable().await.is_err() {
                        return;
                    }
                }
            }
        }
    }

    /// One `sendmmsg` of the first [`SEND_BATCH`] of `part` (not empty). Returns how many
    /// the kernel took (at least one), or the error of the first.
    #[cfg(target_os = "linux")]
    fn send_prefix(&self, part: &[Outgoing<'_>]) -> io::Result<usize> {
        use std::os::fd::AsRawFd;

        let part = &part[..part.len().min(SEND_BATCH)];
        let v6 = self.local.is_ipv6();
        // A specific bind has one source; naming it again is harmless but pointless.
        let wildcard = self.local.ip().is_unspecified();
        let names: Vec<socket2::SockAddr> = part
            .iter()
            .map(|o| {
                socket2::SockAddr::from(if v6 {
                    map_v6(o.destination)
                } else {
                    o.destination
                })
            })
            .collect();
        let mut iovs: Vec<libc::iovec> = part
            .iter()
            .map(|o| libc::iovec {
                // The kernel only reads through it (`sendmmsg` takes a const buffer).
                iov_base: o.contents.as_ptr().cast_mut().cast(),
                iov_len: o.contents.len(),
            })
            .collect();
        let mut controls: Vec<Control> = part
            .iter()
            .map(|o| {
                let mut control = Control::EMPTY;
                if let Some(source) = o.source.filter(|_| wildcard) {
                    control.set_source(if v6 { map_v6_ip(source) } else { source });
                }
                if let Some(size) = o.segment {
                    control.set_segment(size);
                }
                control
            })
            .collect();
        // Raw pointers taken once, after the last write to these buffers, so that none is
        // invalidated by a later borrow before the call.
        let iov_at = iovs.as_mut_ptr();
        let control_at = controls.as_mut_ptr();
        let mut msgs: Vec<libc::mmsghdr> = Vec::with_capacity(part.len());
        for (i, (name, control)) in names.iter().zip(&controls).enumerate() {
            // SAFETY: `msghdr` and `mmsghdr` are plain C structs of integers and pointers,
            // for which all zeroes is a valid value (null pointers, zero lengths); musl's
            // has private padding fields, which is why it is not built field by field.
            let mut msg: libc::mmsghdr = unsafe { std::mem::zeroed() };
            msg.msg_hdr.msg_name = name.as_ptr().cast_mut().cast();
            msg.msg_hdr.msg_namelen = name.len();
            msg.msg_hdr.msg_iov = iov_at.wrapping_add(i);
            msg.msg_hdr.msg_iovlen = 1;
            if control.len > 0 {
                msg.msg_hdr.msg_control = control_at.wrapping_add(i).cast();
                msg.msg_hdr.msg_controllen = control.len as _;
            }
            msgs.push(msg);
        }
        let count = libc::c_uint::try_from(msgs.len()).unwrap_or(libc::c_uint::MAX);
        // SAFETY: `msgs` holds `count` initialised headers, and every pointer in them
        // (`names`, `iovs`, `controls`, and the datagrams' contents borrowed by `part`)
        // points into memory that lives until this function returns, with the lengths
        // given; the kernel reads those and writes only `msg_len` of each header, which
        // `msgs` owns mutably.
        let sent = unsafe { libc::sendmmsg(self.socket.as_raw_fd(), msgs.as_mut_ptr(), count, 0) };
        match usize::try_from(sent) {
            Ok(n) => Ok(n),
            Err(_) => Err(io::Error::last_os_error()),
        }
    }

    /// Elsewhere: one datagram at a time.
    #[cfg(not(target_os = "linux"))]
    fn send_prefix(&self, part: &[Outgoing<'_>]) -> io::Result<usize> {
        let o = &part[0];
        let (destination, source) = if self.local.is_ipv6() {
            (map_v6(o.destination), o.source.map(map_v6_ip))
        } else {
            (o.destination, o.source)
        };
        let transmit = quinn_udp::Transmit {
            destination,
            ecn: None,
            contents: o.contents,
            segment_size: o.segment.map(usize::from),
            src_ip: source.filter(|_| self.local.ip().is_unspecified()),
        };
        self.state
            .try_send(UdpSockRef::from(&self.socket), &transmit)?;
        Ok(1)
    }
}

/// One UDP datagram to send, or with `segment` several to one peer.
#[derive(Debug, Clone, Copy)]
pub struct Outgoing<'a> {
    /// The local IP it leaves from; `None`: the kernel's choice.
    pub source: Option<IpAddr>,
    pub destination: SocketAddr,
    /// One datagram; with `segment`, datagrams of that size back to back (the last may be
    /// shorter), which the kernel cuts apart (UDP GSO).
    pub contents: &'a [u8],
    pub segment: Option<u16>,
}

/// Most datagrams joined in one segmented send (the kernel's `UDP_MAX_SEGMENTS`).
pub const MAX_SEGMENTS: usize = 64;

/// Most bytes in one segmented send: what one UDP datagram may carry.
const MAX_SEGMENTED_BYTES: usize = 65_000;

/// Datagrams gathered for one [`MediaUdp::send_batch`], with each run of datagrams to the
/// same peer from the same address joined into one segmented send where the kernel allows:
/// equal sizes, only the last shorter (what UDP GSO can cut). Only neighbours are joined,
/// so push datagrams grouped by peer (each peer's in their order) for the most joins.
#[derive(Debug, Default)]
pub struct SendBatch {
    /// Every datagram's bytes, runs contiguous.
    bytes: Vec<u8>,
    runs: Vec<Run>,
}

#[derive(Debug)]
struct Run {
    source: Option<IpAddr>,
    destination: SocketAddr,
    start: usize,
    len: usize,
    /// The size of each datagram but the last.
    segment: usize,
    count: usize,
    /// A shorter datagram ended it: nothing more may follow.
    closed: bool,
}

impl SendBatch {
    pub fn clear(&mut self) {
        self.bytes.clear();
        self.runs.clear();
    }

    /// Adds a datagram; `max_segments` is what the socket takes ([`MediaUdp::max_segments`]).
    pub fn push(
        &mut self,
        source: Option<IpAddr>,
        destination: SocketAddr,
        contents: &[u8],
        max_segments: usize,
    ) {
        let start = self.bytes.len();
        self.bytes.extend_from_slice(contents);
        let size = contents.len();
        if let Some(run) = self.runs.last_mut() {
            let joins = run.destination == destination
                && run.source == source
                && !run.closed
                && run.count < max_segments
                && size > 0
                && size <= run.segment
                && run.len + size <= MAX_SEGMENTED_BYTES;
            if joins {
                run.len += size;
                run.count += 1;
                run.closed = size < run.segment;
                return;
            }
        }
        self.runs.push(Run {
            source,
            destination,
            start,
            len: size,
            segment: size,
            count: 1,
            closed: false,
        });
    }

    /// What to hand [`MediaUdp::send_batch`]: one entry per run.
    pub fn outgoing(&self) -> Vec<Outgoing<'_>> {
        self.runs
            .iter()
            .map(|run| Outgoing {
                source: run.source,
                destination: run.destination,
                contents: &self.bytes[run.start..run.start + run.len],
                segment: (run.count > 1).then(|| u16::try_from(run.segment).unwrap_or(u16::MAX)),
            })
            .collect()
    }

    /// Datagrams pushed.
    pub fn datagrams(&self) -> usize {
        self.runs.iter().map(|r| r.count).sum()
    }
}

/// Datagrams handed to the kernel by one `sendmmsg` (its limit, `UIO_MAXIOV`, is 1024).
pub const SEND_BATCH: usize = 64;

/// Sends `batch[*done..]` in order through `send`, which sends a prefix of the datagrams
/// it is given and says how many it took. Advances `*done` past every datagram sent or
/// given up on: the kernel taking only part of a call, the next call starts at the first
/// it did not take; an error is that first datagram's own, so that one is skipped (a
/// refusal is the same on a retry) and the rest go on. Returns when all are done, or with
/// `WouldBlock` when the socket buffer is full (call again with the same `done` once it
/// has room).
fn send_in_order(
    batch: &[Outgoing<'_>],
    done: &mut usize,
    mut send: impl FnMut(&[Outgoing<'_>]) -> io::Result<usize>,
) -> io::Result<()> {
    while *done < batch.len() {
        let rest = &batch[*done..];
        match send(rest) {
            Ok(n) if n > 0 => *done += n.min(rest.len()),
            // Taking nothing without an error is no answer `sendmmsg` gives; skipping the
            // datagram keeps the loop from spinning on it.
            Ok(_) => *done += 1,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Err(e),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => {
                tracing::trace!(error = %e, to = %rest[0].destination, "udp send");
                *done += 1;
            }
        }
    }
    Ok(())
}

// `Control`'s alignment serves a `cmsghdr`.
#[cfg(target_os = "linux")]
const _: () = assert!(std::mem::align_of::<libc::cmsghdr>() <= 8);

/// Room for the control messages of one send: the source address (`IP_PKTINFO` or
/// `IPV6_PKTINFO`) and the segment size (`UDP_SEGMENT`); both at once take the 64 bytes for
/// IPv6. The buffer comes first and is aligned as `cmsghdr` must be.
#[cfg(target_os = "linux")]
#[derive(Clone, Copy)]
#[repr(C, align(8))]
struct Control {
    buf: [u8; 64],
    /// How much of `buf` is used (the `msg_controllen`); 0: no control message.
    len: usize,
}

#[cfg(target_os = "linux")]
impl Control {
    const EMPTY: Control = Control {
        buf: [0; 64],
        len: 0,
    };

    /// Adds the control message that cuts the send into datagrams of `size` (UDP GSO).
    fn set_segment(&mut self, size: u16) {
        self.len += self.set(libc::SOL_UDP, libc::UDP_SEGMENT, size);
    }

    /// Adds the control message that makes a datagram leave from `source`.
    fn set_source(&mut self, source: IpAddr) {
        self.len += match source {
            IpAddr::V4(v4) => self.set(
                libc::IPPROTO_IP,
                libc::IP_PKTINFO,
                libc::in_pktinfo {
                    ipi_ifindex: 0,
                    ipi_spec_dst: libc::in_addr {
                        s_addr: u32::from_ne_bytes(v4.octets()),
                    },
                    ipi_addr: libc::in_addr { s_addr: 0 },
                },
            ),
            IpAddr::V6(v6) => self.set(
                libc::IPPROTO_IPV6,
                libc::IPV6_PKTINFO,
                libc::in6_pktinfo {
                    ipi6_ifindex: 0,
                    ipi6_addr: libc::in6_addr {
                        s6_addr: v6.octets(),
                    },
                },
            ),
        };
    }

    /// Writes one control message after those already there; returns the room it takes.
    fn set<T: Copy>(&mut self, level: libc::c_int, kind: libc::c_int, value: T) -> usize {
        let data_len = std::mem::size_of::<T>() as libc::c_uint;
        // SAFETY: `CMSG_SPACE` and `CMSG_LEN` only compute sizes.
        let (space, len) = unsafe { (libc::CMSG_SPACE(data_len), libc::CMSG_LEN(data_len)) };
        assert!(
            self.len + space as usize <= self.buf.len(),
            "control messages too large"
        );
        // `self.len` is a sum of `CMSG_SPACE`s, each a multiple of the header's alignment.
        let header = self.buf[self.len..].as_mut_ptr().cast::<libc::cmsghdr>();
        // SAFETY: the buffer at `self.len` is aligned for `cmsghdr` (`align(8)`, enough as
        // checked at compile time, and a multiple of it in) and holds the header and its data
        // (`CMSG_SPACE` checked above);
        // `CMSG_DATA` points past the header inside it. The data is written unaligned, as
        // `CMSG_DATA` promises no alignment for `T`; both are `Copy` values.
        unsafe {
            let mut h: libc::cmsghdr = std::mem::zeroed();
            h.cmsg_len = len as _;
            h.cmsg_level = level;
            h.cmsg_type = kind;
            header.write(h);
            libc::CMSG_DATA(header).cast::<T>().write_unaligned(value);
        }
        space as usize
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

    fn out(destination: SocketAddr, contents: &[u8]) -> Outgoing<'_> {
        Outgoing {
            source: None,
            destination,
            contents,
            segment: None,
        }
    }

    /// (destination port, segment, datagrams) of each entry a batch hands the socket.
    fn shape(batch: &SendBatch) -> Vec<(u16, Option<u16>, usize)> {
        batch
            .outgoing()
            .iter()
            .map(|o| {
                let n = match o.segment {
                    Some(size) => o.contents.len().div_ceil(usize::from(size)),
                    None => 1,
                };
                (o.destination.port(), o.segment, n)
            })
            .collect()
    }

    #[test]
    fn runs_to_one_peer_are_joined_while_the_kernel_can_cut_them() {
        let a: SocketAddr = "10.0.0.1:1".parse().expect("addr");
        let b: SocketAddr = "10.0.0.1:2".parse().expect("addr");
        let mut batch = SendBatch::default();
        // A frame of three full packets and a short one to a, then b's own.
        for len in [1200, 1200, 1200, 300] {
            batch.push(None, a, &vec![1; len], 64);
        }
        // After a shorter one nothing joins: the kernel cuts at the first size only.
        batch.push(None, a, &[2; 1200], 64);
        batch.push(None, b, &[3; 100], 64);
        // Larger than the run's size: a run of its own.
        batch.push(None, b, &[4; 200], 64);
        batch.push(None, b, &[5; 200], 64);
        assert_eq!(
            shape(&batch),
            vec![
                (1, Some(1200), 4),
                (1, None, 1),
                (2, None, 1),
                (2, Some(200), 2)
            ]
        );
        assert_eq!(batch.datagrams(), 8);
        // Another source address is another run; so is a socket that cannot cut.
        batch.clear();
        batch.push(Some(ip("10.0.0.9")), a, &[1; 10], 64);
        batch.push(None, a, &[1; 10], 64);
        batch.push(None, a, &[1; 10], 1);
        assert_eq!(
            shape(&batch),
            vec![(1, None, 1), (1, None, 1), (1, None, 1)]
        );
        // At most `max_segments` in a run.
        batch.clear();
        for _ in 0..5 {
            batch.push(None, a, &[1; 10], 2);
        }
        assert_eq!(
            shape(&batch),
            vec![(1, Some(10), 2), (1, Some(10), 2), (1, None, 1)]
        );
    }

    #[tokio::test]
    async fn a_joined_run_arrives_as_the_datagrams_it_was_made_of() {
        // A specific bind, and a wildcard naming each run's source (both control messages
        // in one send).
        for (bind, source) in [("127.0.0.1:0", None), ("0.0.0.0:0", Some(ip("127.0.0.2")))] {
            let udp = MediaUdp::bind(bind.parse().expect("addr")).expect("bind");
            #[cfg(target_os = "linux")]
            assert!(udp.max_segments() > 1, "Linux cuts segmented sends");
            let peers = receivers(2);
            let mut batch = SendBatch::default();
            // Nine full datagrams and a short last one per peer, each byte telling which.
            let expected: Vec<Vec<Vec<u8>>> = (0..2u8)
                .map(|p| {
                    (0..10u8)
                        .map(|i| vec![p * 16 + i; if i == 9 { 77 } else { 1100 }])
                        .collect()
                })
                .collect();
            // Grouped by peer, as the SFU pushes them.
            for (p, peer) in peers.iter().enumerate() {
                for d in &expected[p] {
                    batch.push(source, local(peer), d, udp.max_segments());
                }
            }
            let out = batch.outgoing();
            assert_eq!(out.len(), 2, "one send per peer");
            udp.send_batch(&out).await;
            for (p, peer) in peers.iter().enumerate() {
                let got = receive(peer, 10);
                let from = source.unwrap_or(ip("127.0.0.1"));
                assert!(
                    got.iter().all(|(addr, _)| addr.ip() == from),
                    "{bind}: from {from}"
                );
                let got: Vec<Vec<u8>> = got.into_iter().map(|(_, d)| d).collect();
                assert_eq!(
                    got, expected[p],
                    "{bind}, peer {p}: the datagrams, whole and in order"
                );
            }
        }
    }

    #[test]
    fn a_short_send_keeps_the_rest() {
        let to: SocketAddr = "10.0.0.1:5".parse().expect("addr");
        let refused: SocketAddr = "10.0.0.2:5".parse().expect("addr");
        let contents: Vec<[u8; 1]> = (0..200u8).map(|i| [i]).collect();
        let batch: Vec<Outgoing<'_>> = contents
            .iter()
            .map(|c| out(if c[0] == 7 { refused } else { to }, c))
            .collect();
        // What the "kernel" did, call by call: it takes one, then has no room, then takes
        // some, refuses datagram 7 (reported as the first of a call), then takes the rest
        // but at most what one call may carry.
        let mut sent = Vec::new();
        let mut offered = Vec::new();
        let mut calls = 0;
        let mut kernel = |part: &[Outgoing<'_>]| -> io::Result<usize> {
            calls += 1;
            offered.push(part.len());
            if part[0].destination == refused {
                return Err(io::Error::from_raw_os_error(libc::EACCES));
            }
            let take = match calls {
                1 => 1,
                2 => return Err(io::ErrorKind::WouldBlock.into()),
                3 => return Err(io::ErrorKind::Interrupted.into()),
                _ => part.len().min(SEND_BATCH),
            };
            // A call carries datagrams up to the first refused one.
            let take = part
                .iter()
                .take(take)
                .take_while(|o| o.destination != refused)
                .count();
            sent.extend(part[..take].iter().map(|o| o.contents[0]));
            Ok(take)
        };
        let mut done = 0;
        let full = send_in_order(&batch, &mut done, &mut kernel);
        assert_eq!(full.map_err(|e| e.kind()), Err(io::ErrorKind::WouldBlock));
        assert_eq!(done, 1);
        // The socket has room again: the same call goes on where it stopped.
        send_in_order(&batch, &mut done, &mut kernel).expect("all sent");
        assert_eq!(done, batch.len());
        let expected: Vec<u8> = (0..200u8).filter(|i| *i != 7).collect();
        assert_eq!(
            sent, expected,
            "each once, in order, all but the refused one"
        );
        // The remainder is offered whole; the sender limits each call itself.
        assert_eq!(offered[..3], [200, 199, 199]);
    }

    #[test]
    fn a_kernel_taking_nothing_does_not_stall_the_batch() {
        let to: SocketAddr = "10.0.0.1:5".parse().expect("addr");
        let batch = [out(to, b"a"), out(to, b"b")];
        let mut done = 0;
        send_in_order(&batch, &mut done, |_| Ok(0)).expect("done");
        assert_eq!(done, 2);
    }

    /// Reads datagrams until `count` have arrived; the payloads by sender.
    fn receive(socket: &std::net::UdpSocket, count: usize) -> Vec<(SocketAddr, Vec<u8>)> {
        socket
            .set_read_timeout(Some(Duration::from_secs(5)))
            .expect("timeout");
        let mut got = Vec::new();
        let mut buf = [0u8; MAX_DATAGRAM];
        while got.len() < count {
            let (n, from) = socket.recv_from(&mut buf).expect("datagram in time");
            got.push((from, buf[..n].to_vec()));
        }
        got
    }

    fn receivers(n: usize) -> Vec<std::net::UdpSocket> {
        (0..n)
            .map(|_| {
                let s = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::DGRAM, None)
                    .expect("socket");
                let _ = s.set_recv_buffer_size(4 * 1024 * 1024);
                s.bind(&SocketAddr::from(([127, 0, 0, 1], 0)).into())
                    .expect("bind");
                s.into()
            })
            .collect()
    }

    fn local(s: &std::net::UdpSocket) -> SocketAddr {
        s.local_addr().expect("addr")
    }

    #[tokio::test]
    async fn a_batch_reaches_every_receiver_intact_and_in_order() {
        let udp = MediaUdp::bind("127.0.0.1:0".parse().expect("addr")).expect("bind");
        let peers = receivers(3);
        let per_peer = 150; // several calls' worth for the three of them
        let contents: Vec<Vec<u8>> = (0..per_peer * peers.len())
            .map(|i| {
                let mut c = (i as u32).to_be_bytes().to_vec();
                c.resize(100 + i % 300, (i % 251) as u8);
                c
            })
            .collect();
        let batch: Vec<Outgoing<'_>> = contents
            .iter()
            .enumerate()
            .map(|(i, c)| out(local(&peers[i % peers.len()]), c))
            .collect();
        udp.send_batch(&batch).await;
        for (p, peer) in peers.iter().enumerate() {
            let got = receive(peer, per_peer);
            let expected: Vec<Vec<u8>> = contents
                .iter()
                .skip(p)
                .step_by(peers.len())
                .cloned()
                .collect();
            let payloads: Vec<Vec<u8>> = got.iter().map(|(_, c)| c.clone()).collect();
            assert!(
                payloads == expected,
                "peer {p}: not the datagrams sent, in order"
            );
            assert!(got.iter().all(|(from, _)| *from == udp.local_addr()));
        }
    }

    #[tokio::test]
    async fn a_refused_datagram_costs_only_itself() {
        let udp = MediaUdp::bind("127.0.0.1:0".parse().expect("addr")).expect("bind");
        let peers = receivers(1);
        let to = local(&peers[0]);
        // The kernel refuses a broadcast from a socket without SO_BROADCAST: the call
        // carrying it takes only what precedes it, and the rest follow.
        let broadcast: SocketAddr = "255.255.255.255:9".parse().expect("addr");
        let contents: Vec<[u8; 1]> = (0..100u8).map(|i| [i]).collect();
        let batch: Vec<Outgoing<'_>> = contents
            .iter()
            .map(|c| out(if c[0] % 30 == 0 { broadcast } else { to }, c))
            .collect();
        udp.send_batch(&batch).await;
        let got: Vec<u8> = receive(&peers[0], 96).iter().map(|(_, c)| c[0]).collect();
        let expected: Vec<u8> = (0..100u8).filter(|i| i % 30 != 0).collect();
        assert_eq!(got, expected);
    }

    #[tokio::test]
    async fn a_closed_port_does_not_stop_the_others() {
        let udp = MediaUdp::bind("127.0.0.1:0".parse().expect("addr")).expect("bind");
        let peers = receivers(1);
        let to = local(&peers[0]);
        // A port nobody listens on: loopback answers with ICMP port unreachable.
        let closed = local(&receivers(1)[0]);
        for round in 0..3u8 {
            let contents = [round];
            let batch = [out(closed, b"x"), out(to, &contents), out(closed, b"y")];
            udp.send_batch(&batch).await;
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let got: Vec<u8> = receive(&peers[0], 3).iter().map(|(_, c)| c[0]).collect();
        assert_eq!(got, [0, 1, 2]);
    }

    #[tokio::test]
    async fn a_wildcard_socket_sends_from_the_source_given() {
        let peers = receivers(1);
        let to = local(&peers[0]);
        // The whole of 127/8 is this machine's: 127.0.0.2 is a local address to leave from.
        let source = ip("127.0.0.2");
        for bind in ["0.0.0.0:0", "[::]:0"] {
            let Ok(udp) = MediaUdp::bind(bind.parse().expect("addr")) else {
                assert!(bind.starts_with('['), "an IPv4 wildcard binds");
                continue; // no IPv6 on this machine
            };
            let port = udp.local_addr().port();
            let batch = [
                Outgoing {
                    source: Some(source),
                    destination: to,
                    contents: b"from .2",
                    segment: None,
                },
                out(to, b"any"),
            ];
            udp.send_batch(&batch).await;
            let got = receive(&peers[0], 2);
            assert_eq!(got[0], (SocketAddr::new(source, port), b"from .2".to_vec()));
            assert_eq!(got[1].1, b"any");
        }
    }

    #[test]
    fn dual_stack_peers_are_plain_ipv4() {
        let mapped: SocketAddr = "[::ffff:10.0.0.1]:5".parse().expect("addr");
        assert_eq!(canonical(mapped), "10.0.0.1:5".parse().expect("addr"));
        assert_eq!(map_v6("10.0.0.1:5".parse().expect("addr")), mapped);
    }
}
