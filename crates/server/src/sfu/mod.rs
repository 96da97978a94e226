//! The SFU: forwards the media of everyone on stage to everyone in the meeting.
//!
//! One UDP socket (and one TCP listener at the same port, for peers without UDP) carries
//! every WebRTC session of every meeting. One task owns the sockets and the sans-IO
//! [`engine::Engine`] (str0m sessions, routing, forwarding); everything else talks to it
//! through [`Sfu`], a cheap handle that queues commands in order. Subscription sessions
//! are built on set-up threads ([`engine::SessionSetup`]: about a millisecond of key
//! generation each), so that a join storm does not hold the forwarding up. Room
//! tasks decide *who* may publish and *when* publishing ends (the stage rules); the SFU
//! carries it out.
//!
//! - [`allocate`]: which simulcast layer of each stage video a viewer receives (its
//!   bandwidth estimate and tile sizes in, a layer per video out), and switching layers at
//!   keyframes.
//! - [`estimate`]: a viewer session's bandwidth as the allocator takes it (str0m's
//!   estimate, heavy loss as congestion) and the rhythm of probing for more.
//! - [`engine`]: the sessions and the forwarding, driven by datagrams, commands and time.
//! - [`forward`]: per-viewer rewriting (SSRC, sequence numbers, timestamps), keyframe
//!   gating and keyframe-request coalescing.
//! - [`layers`]: a publisher's simulcast layers as received: their RIDs, bitrates, and
//!   which are paused.
//! - [`net`]: the UDP socket and the ICE-TCP listener, and the addresses peers are told.
//! - [`timers`]: when each session must be woken next, in a heap.

pub mod allocate;
pub mod engine;
pub mod estimate;
pub mod forward;
pub mod layers;
#[cfg(test)]
mod libwebrtc_sdp;
pub mod net;
pub mod timers;

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use std::collections::HashMap;

use onstage_proto::{ErrorCode, MediaKinds, UserId, VideoLayer};
use str0m::net::Protocol;
use tokio::sync::{mpsc, oneshot};

use crate::metrics::Metrics;
pub use allocate::Tile;
use engine::{BuiltSession, Engine, EngineStats, ParticipantKey, SessionSetup};
pub use engine::{Notice, Publication};
pub use net::MediaConfig;
use net::{AddressPlan, TcpConns, TcpEvent};

/// Why the SFU refused a request.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SfuError {
    #[error("bad SDP: {0}")]
    BadSdp(String),
    #[error("not allowed: {0}")]
    NotAllowed(String),
    #[error("the media server is shutting down")]
    Closed,
    #[error("the subscription was ended or asked for again while it was being set up")]
    Superseded,
}

impl SfuError {
    /// The stable wire code.
    pub fn code(&self) -> ErrorCode {
        match self {
            SfuError::BadSdp(_) => ErrorCode::BadRequest,
            SfuError::NotAllowed(_) => ErrorCode::PermissionDenied,
            SfuError::Closed => ErrorCode::Internal,
            SfuError::Superseded => ErrorCode::InvalidState,
        }
    }
}

/// How often the announced addresses are read again from the interfaces (a laptop that
/// changes networks keeps hosting).
const ADDRESS_REFRESH: Duration = Duration::from_secs(2);

/// Threads that build subscription sessions for the SFU's task (see [`SessionSetup`]), at
/// most: one per core beyond the first, which the forwarding keeps.
const MAX_SETUP_WORKERS: usize = 4;

/// Where the SFU's notices to one publisher go (its signaling connection).
pub type NoticeSink = Box<dyn Fn(Notice) + Send>;

enum Command {
    Publish {
        key: ParticipantKey,
        offer: String,
        layers: Vec<VideoLayer>,
        allowed: MediaKinds,
        notices: NoticeSink,
        reply: oneshot::Sender<Result<Publication, SfuError>>,
    },
    Tiles {
        viewer: ParticipantKey,
        tiles: Vec<(UserId, Option<Tile>)>,
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
    HoldAudio {
        key: ParticipantKey,
        held: bool,
    },
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
    /// Binds the UDP socket (and the TCP listener at the same address, when
    /// `config.tcp`) and starts the SFU task. See [`net`] for what is announced.
    pub fn start(config: MediaConfig, metrics: Arc<Metrics>) -> io::Result<Sfu> {
        let (udp, tcp) = bind_sockets(&config)?;
        let local_addr = udp.local_addr();
        let plan = AddressPlan::new(config.bind.ip(), config.advertise.clone())
            .also_announce(config.also_announce.clone());
        let candidates = plan.candidates(local_addr.port(), config.tcp);
        tracing::info!(%local_addr, tcp = config.tcp, ?candidates, "media (SFU) listening");
        let (tx, rx) = mpsc::unbounded_channel();
        let engine = Engine::new(candidates);
        let io = Io {
            udp,
            tcp,
            tcp_conns: TcpConns::default(),
            plan,
            port: local_addr.port(),
            with_tcp: config.tcp,
            refreshed: Instant::now(),
            pending: Vec::new(),
            batch: net::SendBatch::default(),
        };
        tokio::spawn(run(io, engine, rx, metrics));
        Ok(Sfu { tx, local_addr })
    }

    /// The UDP socket's address.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Queues a publish; the answer arrives on the returned receiver. Lets a caller that
    /// must not wait (a room task) keep its commands in order. `layers` describes a
    /// simulcast video's layers; `notices` is how the publisher is told which of them
    /// anyone takes, for as long as the publication lasts.
    pub fn publish_queued(
        &self,
        key: ParticipantKey,
        offer: String,
        layers: Vec<VideoLayer>,
        allowed: MediaKinds,
        notices: NoticeSink,
    ) -> oneshot::Receiver<Result<Publication, SfuError>> {
        let (reply, rx) = oneshot::channel();
        self.send(Command::Publish {
            key,
            offer,
            layers,
            allowed,
            notices,
            reply,
        });
        rx
    }

    /// How large `viewer` shows each stage video (`None`: hidden); see
    /// [`Engine::set_tiles`].
    pub fn set_tiles(&self, viewer: ParticipantKey, tiles: Vec<(UserId, Option<Tile>)>) {
        self.send(Command::Tiles { viewer, tiles });
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

    /// A host muted the participant (`held`) or it unmuted itself: see
    /// [`Engine::hold_audio`].
    pub fn hold_audio(&self, key: ParticipantKey, held: bool) {
        self.send(Command::HoldAudio { key, held });
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

/// Binds the UDP socket and, with `config.tcp`, the TCP listener on the same port, so one
/// number is forwarded or opened in a firewall. With port 0 the kernel picks a UDP port that
/// may be taken for TCP: then another pick.
fn bind_sockets(
    config: &MediaConfig,
) -> io::Result<(net::MediaUdp, Option<mpsc::Receiver<TcpEvent>>)> {
    let mut attempts = 0;
    loop {
        let udp = net::MediaUdp::bind(config.bind)?;
        if !config.tcp {
            return Ok((udp, None));
        }
        match net::start_tcp(udp.local_addr()) {
            Ok((_, events)) => return Ok((udp, Some(events))),
            Err(e)
                if e.kind() == io::ErrorKind::AddrInUse
                    && config.bind.port() == 0
                    && attempts < 16 =>
            {
                attempts += 1;
            }
            Err(e) => return Err(e),
        }
    }
}

/// The SFU task's sockets and what it knows about them.
struct Io {
    udp: net::MediaUdp,
    /// Events of the TCP connections (`None`: ICE-TCP is off).
    tcp: Option<mpsc::Receiver<TcpEvent>>,
    tcp_conns: TcpConns,
    plan: AddressPlan,
    port: u16,
    with_tcp: bool,
    /// When the candidates were last read from the interfaces.
    refreshed: Instant,
    /// What the next send takes, kept between sends for their room.
    pending: Vec<engine::Datagram>,
    batch: net::SendBatch,
}

impl Io {
    /// Before a new session: the interfaces may have changed since the last one.
    fn refresh_candidates(&mut self, engine: &mut Engine, now: Instant) {
        if now.duration_since(self.refreshed) < ADDRESS_REFRESH {
            return;
        }
        self.refreshed = now;
        let candidates = self.plan.candidates(self.port, self.with_tcp);
        if candidates != engine.candidates() {
            tracing::info!(?candidates, "media addresses changed");
            engine.set_candidates(candidates);
        }
    }
}

async fn run(
    mut io: Io,
    mut engine: Engine,
    mut rx: mpsc::UnboundedReceiver<Command>,
    metrics: Arc<Metrics>,
) {
    let mut reported = EngineStats::default();
    let mut sinks: HashMap<ParticipantKey, NoticeSink> = HashMap::new();
    let (built_tx, mut built_rx) = mpsc::unbounded_channel();
    let setups = SetupWorkers::start(built_tx);
    loop {
        let wake = engine
            .next_timeout()
            .unwrap_or_else(|| Instant::now() + Duration::from_secs(1));
        // Unclaimed TCP connections are swept at least once a second.
        let wake = if io.tcp_conns.is_empty() {
            wake
        } else {
            wake.min(Instant::now() + Duration::from_secs(1))
        };
        let mut shutdown = None;
        tokio::select! {
            cmd = rx.recv() => match cmd {
                Some(Command::Shutdown(done)) => shutdown = Some(done),
                Some(cmd) => {
                    if matches!(cmd, Command::Publish { .. } | Command::Subscribe { .. }) {
                        io.refresh_candidates(&mut engine, Instant::now());
                    }
                    handle(&mut engine, &mut sinks, &setups, cmd);
                }
                None => shutdown = Some(oneshot::channel().0),
            },
            Some(built) = built_rx.recv() => finish(&mut engine, built),
            ready = io.udp.readable() => {
                if ready.is_ok() {
                    let now = Instant::now();
                    let plan = &io.plan;
                    // One batch, then send what it produced before reading more.
                    io.udp.try_recv(|d| {
                        let destination = plan.announced_addr(d.destination);
                        engine.handle_datagram(now, Protocol::Udp, d.source, destination, d.contents);
                    });
                }
            },
            event = recv_tcp(&mut io.tcp) => on_tcp(&mut io, &mut engine, event),
            () = tokio::time::sleep_until(wake.into()) => {
                let now = Instant::now();
                engine.handle_timeout(now);
                io.tcp_conns.sweep(now);
            }
        }
        if let Some(done) = shutdown {
            engine.close_all();
            send_all(&mut io, &mut engine).await;
            // Close the sockets before saying so: the UDP port is free once `shutdown`
            // returns, and the TCP listener's task ends as it sees its events closed.
            drop(io);
            let _ = done.send(());
            tracing::info!("media (SFU) stopped");
            return;
        }
        send_all(&mut io, &mut engine).await;
        tell_publishers(&mut engine, &mut sinks);
        let now_stats = engine.stats();
        report(&metrics, &reported, &now_stats, &engine, io.tcp_conns.len());
        reported = now_stats;
    }
}

/// The next TCP event; never resolves when ICE-TCP is off.
async fn recv_tcp(tcp: &mut Option<mpsc::Receiver<TcpEvent>>) -> Option<TcpEvent> {
    match tcp {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}

fn on_tcp(io: &mut Io, engine: &mut Engine, event: Option<TcpEvent>) {
    let now = Instant::now();
    match event {
        Some(TcpEvent::Opened { peer, local, conn }) => io.tcp_conns.open(peer, local, conn, now),
        Some(TcpEvent::Frame { peer, data }) => {
            let Some(local) = io.tcp_conns.local_of(&peer) else {
                return; // refused at open, or closed since
            };
            let destination = io.plan.announced_addr(local);
            if engine.handle_datagram(now, Protocol::Tcp, peer, destination, &data) {
                io.tcp_conns.claim(&peer);
            } else {
                // One connection carries one session: anything else is a stranger's.
                io.tcp_conns.close(&peer);
            }
        }
        Some(TcpEvent::Closed { peer }) => io.tcp_conns.close(&peer),
        // The listener is gone (shutdown): nothing more will arrive.
        None => io.tcp = None,
    }
}

/// Hands the engine's notices to their publishers, and lets go of the sinks of
/// publications that ended.
fn tell_publishers(engine: &mut Engine, sinks: &mut HashMap<ParticipantKey, NoticeSink>) {
    for (key, notice) in engine.drain_notices() {
        if let Some(sink) = sinks.get(&key) {
            sink(notice);
        }
    }
    if sinks.len() > engine.counts().0 {
        sinks.retain(|key, _| engine.is_publishing(key));
    }
}

fn handle(
    engine: &mut Engine,
    sinks: &mut HashMap<ParticipantKey, NoticeSink>,
    setups: &SetupWorkers,
    cmd: Command,
) {
    let now = Instant::now();
    match cmd {
        Command::Publish {
            key,
            offer,
            layers,
            allowed,
            notices,
            reply,
        } => {
            let published = engine.publish(key.clone(), &offer, &layers, allowed, now);
            if published.is_ok() {
                sinks.insert(key, notices);
            }
            let _ = reply.send(published);
        }
        Command::Tiles { viewer, tiles } => engine.set_tiles(&viewer, tiles, now),
        Command::Subscribe {
            subscriber,
            publisher,
            offer,
            reply,
        } => {
            let (ticket, setup) =
                engine.plan_subscription(subscriber.clone(), publisher.clone(), offer, now);
            let job = SetupJob {
                ticket,
                subscriber,
                publisher,
                reply,
            };
            if let Some(built) = setups.build(job, setup) {
                finish(engine, built);
            }
        }
        Command::Unsubscribe {
            subscriber,
            publisher,
        } => engine.unsubscribe(&subscriber, &publisher),
        Command::Unpublish(key) => engine.unpublish(&key),
        Command::EndPublisher(key) => engine.end_publisher(&key),
        Command::HoldAudio { key, held } => engine.hold_audio(&key, held),
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

/// Takes a built subscription into the engine and answers its subscriber.
fn finish(engine: &mut Engine, built: Built) {
    let Built { job, built } = built;
    let answer = engine.finish_subscription(
        job.ticket,
        job.subscriber,
        job.publisher,
        built,
        Instant::now(),
    );
    let _ = job.reply.send(answer);
}

/// A subscription being set up, and whom to answer.
struct SetupJob {
    ticket: u64,
    subscriber: ParticipantKey,
    publisher: ParticipantKey,
    reply: oneshot::Sender<Result<String, SfuError>>,
}

/// A job's session, built, on its way back to the SFU's task.
struct Built {
    job: SetupJob,
    built: Result<BuiltSession, SfuError>,
}

/// The threads that build sessions, fed in order of the subscribes. They end when the
/// SFU's task does (it drops the sender).
struct SetupWorkers {
    jobs: std::sync::mpsc::Sender<(SetupJob, SessionSetup)>,
}

impl SetupWorkers {
    fn start(built: mpsc::UnboundedSender<Built>) -> SetupWorkers {
        let (jobs, queue) = std::sync::mpsc::channel::<(SetupJob, SessionSetup)>();
        let queue = Arc::new(std::sync::Mutex::new(queue));
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        let workers = cores.saturating_sub(1).clamp(1, MAX_SETUP_WORKERS);
        for i in 0..workers {
            let queue = Arc::clone(&queue);
            let built = built.clone();
            let spawned = std::thread::Builder::new()
                .name(format!("sfu-setup-{i}"))
                .spawn(move || loop {
                    // The lock is held only to take one job, never while building.
                    let next = match queue.lock() {
                        Ok(queue) => queue.recv(),
                        Err(_) => return,
                    };
                    let Ok((job, setup)) = next else {
                        return; // the SFU stopped
                    };
                    let built_session = setup.build();
                    if built
                        .send(Built {
                            job,
                            built: built_session,
                        })
                        .is_err()
                    {
                        return;
                    }
                });
            if let Err(e) = spawned {
                tracing::error!(error = %e, "cannot start a session set-up thread");
            }
        }
        SetupWorkers { jobs }
    }

    /// Queues a build. With no worker left to take it (none could be started), builds it
    /// here and now rather than never: the result is returned, for the caller to finish.
    fn build(&self, job: SetupJob, setup: SessionSetup) -> Option<Built> {
        match self.jobs.send((job, setup)) {
            Ok(()) => None,
            Err(std::sync::mpsc::SendError((job, setup))) => Some(Built {
                job,
                built: setup.build(),
            }),
        }
    }
}

/// Sends what the engine produced: TCP frames to their connections, UDP datagrams grouped
/// by peer (each peer's in their order; peers are independent) so that a peer's run goes
/// as one segmented send.
async fn send_all(io: &mut Io, engine: &mut Engine) {
    let mut udp = std::mem::take(&mut io.pending);
    for d in engine.drain_datagrams() {
        if d.proto == Protocol::Tcp {
            // A full queue or a closed connection drops the frame; NACK or ICE recovers.
            io.tcp_conns.send(&d);
        } else {
            udp.push(d);
        }
    }
    // Stable: a peer's datagrams keep their order.
    udp.sort_by_key(|d| d.destination);
    let max_segments = io.udp.max_segments();
    io.batch.clear();
    for d in &udp {
        io.batch.push(
            io.plan.local_source(d.source.ip()),
            d.destination,
            &d.contents,
            max_segments,
        );
    }
    udp.clear();
    io.pending = udp;
    io.udp.send_batch(&io.batch.outgoing()).await;
}

fn report(
    metrics: &Metrics,
    before: &EngineStats,
    now: &EngineStats,
    engine: &Engine,
    tcp_connections: usize,
) {
    let counts = engine.counts();
    let (over_udp, over_tcp) = engine.transports();
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
    metrics
        .sfu_held_audio
        .inc_by(now.held_audio.saturating_sub(before.held_audio));
    metrics.sfu_publications.set(counts.0 as i64);
    metrics.sfu_subscriptions.set(counts.1 as i64);
    metrics.sfu_tcp_connections.set(tcp_connections as i64);
    metrics.sfu_sessions_over_udp.set(over_udp as i64);
    metrics.sfu_sessions_over_tcp.set(over_tcp as i64);
}
