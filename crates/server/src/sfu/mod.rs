//! The SFU: forwards the media of everyone on stage to everyone in the meeting.
//!
//! One UDP socket carries every WebRTC session of every meeting. One task owns the socket
//! and the sans-IO [`engine::Engine`] (str0m sessions, routing, forwarding); everything
//! else talks to it through [`Sfu`], a cheap handle that queues commands in order. Room
//! tasks decide *who* may publish and *when* publishing ends (the stage rules); the SFU
//! carries it out.
//!
//! - [`engine`]: the sessions and the forwarding, driven by datagrams, commands and time.
//! - [`forward`]: per-viewer rewriting (SSRC, sequence numbers, timestamps), keyframe
//!   gating and keyframe-request coalescing.
//! - [`h264`]: finding where a keyframe starts in an RTP payload.

pub mod engine;
pub mod forward;
pub mod h264;

use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, UdpSocket as StdUdpSocket};
use std::sync::Arc;
use std::time::{Duration, Instant};

use onstage_proto::ErrorCode;
use tokio::net::UdpSocket;
use tokio::sync::{mpsc, oneshot};

use crate::metrics::Metrics;
use engine::{Engine, EngineStats, ParticipantKey};

/// Why the SFU refused a request.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SfuError {
    #[error("bad SDP: {0}")]
    BadSdp(String),
    #[error("not allowed: {0}")]
    NotAllowed(String),
    #[error("the media server is shutting down")]
    Closed,
}

impl SfuError {
    /// The stable wire code.
    pub fn code(&self) -> ErrorCode {
        match self {
            SfuError::BadSdp(_) => ErrorCode::BadRequest,
            SfuError::NotAllowed(_) => ErrorCode::PermissionDenied,
            SfuError::Closed => ErrorCode::Internal,
        }
    }
}

/// Largest datagram we read; WebRTC stays under the 1500-byte MTU.
const MAX_DATAGRAM: usize = 2048;
/// Datagrams read in one go before the engine's output is sent.
const READ_BATCH: usize = 64;
/// Socket buffers asked of the kernel: a video keyframe fanned out to hundreds of viewers
/// is a burst of thousands of datagrams.
const SOCKET_BUFFER_BYTES: usize = 8 * 1024 * 1024;

enum Command {
    Publish {
        key: ParticipantKey,
        offer: String,
        allow_audio: bool,
        allow_video: bool,
        reply: oneshot::Sender<Result<String, SfuError>>,
    },
    Subscribe {
        subscriber: ParticipantKey,
        publisher: ParticipantKey,
        offer: String,
        reply: oneshot::Sender<Result<String, SfuError>>,
    },
    Unsubscribe {
        subscriber: ParticipantKey,
        publisher: ParticipantKey,
    },
    Unpublish(ParticipantKey),
    EndPublisher(ParticipantKey),
    DropParticipant(ParticipantKey),
    Stats(oneshot::Sender<SfuStats>),
    Shutdown(oneshot::Sender<()>),
}

/// A snapshot of the SFU's counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SfuStats {
    pub engine: EngineStats,
    pub publications: usize,
    pub subscriptions: usize,
}

/// The handle to the SFU task. Commands are carried out in the order they are sent.
#[derive(Debug, Clone)]
pub struct Sfu {
    tx: mpsc::UnboundedSender<Command>,
    local_addr: SocketAddr,
}

impl Sfu {
    /// Binds the UDP socket and starts the SFU task. `advertise` are the IPs peers are told
    /// to send to; empty means: the bound IP, or for a wildcard bind, loopback plus the
    /// address of the interface that routes outwards.
    pub fn start(bind: SocketAddr, advertise: &[IpAddr], metrics: Arc<Metrics>) -> io::Result<Sfu> {
        let socket = socket2::Socket::new(
            socket2::Domain::for_address(bind),
            socket2::Type::DGRAM,
            Some(socket2::Protocol::UDP),
        )?;
        // Best effort: the kernel caps these at its configured maximum.
        let _ = socket.set_send_buffer_size(SOCKET_BUFFER_BYTES);
        let _ = socket.set_recv_buffer_size(SOCKET_BUFFER_BYTES);
        socket.set_nonblocking(true)?;
        socket.bind(&bind.into())?;
        let std_socket: StdUdpSocket = socket.into();
        let local_addr = std_socket.local_addr()?;
        let candidates = candidate_addrs(local_addr, advertise);
        tracing::info!(%local_addr, ?candidates, "media (SFU) listening");
        let socket = UdpSocket::from_std(std_socket)?;
        let (tx, rx) = mpsc::unbounded_channel();
        let engine = Engine::new(local_addr, candidates);
        tokio::spawn(run(socket, engine, rx, metrics));
        Ok(Sfu { tx, local_addr })
    }

    /// The UDP socket's address.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Queues a publish; the answer arrives on the returned receiver. Lets a caller that
    /// must not wait (a room task) keep its commands in order.
    pub fn publish_queued(
        &self,
        key: ParticipantKey,
        offer: String,
        allow_audio: bool,
        allow_video: bool,
    ) -> oneshot::Receiver<Result<String, SfuError>> {
        let (reply, rx) = oneshot::channel();
        self.send(Command::Publish {
            key,
            offer,
            allow_audio,
            allow_video,
            reply,
        });
        rx
    }

    /// Queues a subscription; the answer arrives on the returned receiver.
    pub fn subscribe_queued(
        &self,
        subscriber: ParticipantKey,
        publisher: ParticipantKey,
        offer: String,
    ) -> oneshot::Receiver<Result<String, SfuError>> {
        let (reply, rx) = oneshot::channel();
        self.send(Command::Subscribe {
            subscriber,
            publisher,
            offer,
            reply,
        });
        rx
    }

    pub fn unsubscribe(&self, subscriber: ParticipantKey, publisher: ParticipantKey) {
        self.send(Command::Unsubscribe {
            subscriber,
            publisher,
        });
    }

    /// Ends the participant's publication; its viewers stay subscribed.
    pub fn unpublish(&self, key: ParticipantKey) {
        self.send(Command::Unpublish(key));
    }

    /// The participant left the stage: its publication and every subscription to it end.
    pub fn end_publisher(&self, key: ParticipantKey) {
        self.send(Command::EndPublisher(key));
    }

    /// The participant's connection is gone: its publication and subscriptions end.
    pub fn drop_participant(&self, key: ParticipantKey) {
        self.send(Command::DropParticipant(key));
    }

    pub async fn stats(&self) -> SfuStats {
        let (reply, rx) = oneshot::channel();
        self.send(Command::Stats(reply));
        rx.await.unwrap_or_default()
    }

    /// Closes every session (peers are told) and stops the task.
    pub async fn shutdown(&self) {
        let (reply, rx) = oneshot::channel();
        self.send(Command::Shutdown(reply));
        let _ = rx.await;
    }

    fn send(&self, cmd: Command) {
        // The task only ends on shutdown; later commands have nothing left to act on.
        let _ = self.tx.send(cmd);
    }
}

/// Where peers can reach the socket.
fn candidate_addrs(local: SocketAddr, advertise: &[IpAddr]) -> Vec<SocketAddr> {
    let port = local.port();
    if !advertise.is_empty() {
        return advertise
            .iter()
            .map(|ip| SocketAddr::new(*ip, port))
            .collect();
    }
    if !local.ip().is_unspecified() {
        return vec![local];
    }
    let mut ips = vec![IpAddr::V4(Ipv4Addr::LOCALHOST)];
    // The interface the default route uses: connecting a UDP socket sends nothing.
    let outward = StdUdpSocket::bind("0.0.0.0:0")
        .and_then(|s| s.connect("192.0.2.1:9").map(|()| s))
        .and_then(|s| s.local_addr());
    if let Ok(addr) = outward {
        if !addr.ip().is_loopback() && !addr.ip().is_unspecified() {
            ips.push(addr.ip());
        }
    }
    ips.into_iter()
        .map(|ip| SocketAddr::new(ip, port))
        .collect()
}

async fn run(
    socket: UdpSocket,
    mut engine: Engine,
    mut rx: mpsc::UnboundedReceiver<Command>,
    metrics: Arc<Metrics>,
) {
    let mut buf = vec![0u8; MAX_DATAGRAM];
    let mut reported = EngineStats::default();
    loop {
        let wake = engine
            .next_timeout()
            .unwrap_or_else(|| Instant::now() + Duration::from_secs(1));
        let mut shutdown = None;
        tokio::select! {
            cmd = rx.recv() => match cmd {
                Some(Command::Shutdown(done)) => shutdown = Some(done),
                Some(cmd) => handle(&mut engine, cmd),
                None => shutdown = Some(oneshot::channel().0),
            },
            got = socket.recv_from(&mut buf) => {
                match got {
                    Ok((n, from)) => {
                        let now = Instant::now();
                        engine.handle_datagram(now, from, &buf[..n]);
                        // Take what else is already queued before sending anything.
                        for _ in 1..READ_BATCH {
                            match socket.try_recv_from(&mut buf) {
                                Ok((n, from)) => engine.handle_datagram(now, from, &buf[..n]),
                                Err(_) => break,
                            }
                        }
                    }
                    // ICMP errors (a peer went away) surface here on some systems.
                    Err(e) => tracing::trace!(error = %e, "udp receive"),
                }
            },
            () = tokio::time::sleep_until(wake.into()) => engine.handle_timeout(Instant::now()),
        }
        if let Some(done) = shutdown {
            engine.close_all();
            send_all(&socket, &mut engine).await;
            let _ = done.send(());
            tracing::info!("media (SFU) stopped");
            return;
        }
        send_all(&socket, &mut engine).await;
        let now_stats = engine.stats();
        report(&metrics, &reported, &now_stats, engine.counts());
        reported = now_stats;
    }
}

fn handle(engine: &mut Engine, cmd: Command) {
    let now = Instant::now();
    match cmd {
        Command::Publish {
            key,
            offer,
            allow_audio,
            allow_video,
            reply,
        } => {
            let _ = reply.send(engine.publish(key, &offer, allow_audio, allow_video, now));
        }
        Command::Subscribe {
            subscriber,
            publisher,
            offer,
            reply,
        } => {
            let _ = reply.send(engine.subscribe(subscriber, publisher, &offer, now));
        }
        Command::Unsubscribe {
            subscriber,
            publisher,
        } => engine.unsubscribe(&subscriber, &publisher),
        Command::Unpublish(key) => engine.unpublish(&key),
        Command::EndPublisher(key) => engine.end_publisher(&key),
        Command::DropParticipant(key) => engine.drop_participant(&key),
        Command::Stats(reply) => {
            let (publications, subscriptions) = engine.counts();
            let _ = reply.send(SfuStats {
                engine: engine.stats(),
                publications,
                subscriptions,
            });
        }
        Command::Shutdown(_) => {}
    }
}

async fn send_all(socket: &UdpSocket, engine: &mut Engine) {
    for d in engine.drain_datagrams() {
        loop {
            match socket.try_send_to(&d.contents, d.destination) {
                Ok(_) => break,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    if socket.writable().await.is_err() {
                        break;
                    }
                }
                // A peer that went away (ICMP unreachable) must not stop the others.
                Err(e) => {
                    tracing::trace!(error = %e, to = %d.destination, "udp send");
                    break;
                }
            }
        }
    }
}

fn report(metrics: &Metrics, before: &EngineStats, now: &EngineStats, counts: (usize, usize)) {
    metrics
        .sfu_received
        .inc_by(now.received.saturating_sub(before.received));
    metrics
        .sfu_forwarded
        .inc_by(now.forwarded.saturating_sub(before.forwarded));
    metrics
        .sfu_dropped
        .inc_by(now.dropped.saturating_sub(before.dropped));
    metrics.sfu_keyframe_requests.inc_by(
        now.keyframe_requests
            .saturating_sub(before.keyframe_requests),
    );
    metrics.sfu_publications.set(counts.0 as i64);
    metrics.sfu_subscriptions.set(counts.1 as i64);
}
