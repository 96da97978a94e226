//! The SFU core: every WebRTC session (a str0m [`Rtc`]) of every meeting, driven by
//! datagrams, commands and the clock, producing datagrams to send. No sockets and no
//! tokio here; [`super::Sfu`] does the I/O.
//!
//! Two kinds of session, one WebRTC peer connection each (the pattern of Janus' video
//! room): a participant's *publication* (its sendonly offer: audio and/or video in), and a
//! *subscription* of one participant to one publisher (a recvonly offer: that publisher's
//! audio and video out). A subscription belongs to the publisher's *participant*, not to
//! one publication: when a publisher reconnects and publishes again, its viewers keep their
//! sessions and the media simply resumes (starting at a keyframe).
//!
//! Forwarding is per RTP packet (str0m's RTP mode): each packet from a publication is
//! rewritten (SSRC, sequence number, timestamp: see [`TrackForwarder`]) and written to
//! every subscriber's stream; str0m then does SRTP, NACK/RTX and RTCP per leg.
//!
//! The rules of the stage are enforced by what exists: media is accepted only on a
//! publication's session, publications are created only for ON_STAGE participants (the
//! room checks) and are closed the moment the participant leaves the stage or its
//! connection drops. A datagram no live session accepts is dropped and counted.

use std::borrow::Cow;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use onstage_proto::{MediaKinds, MeetingId, UserId, VideoLayer};
use str0m::bwe::{Bitrate, BweKind};
use str0m::change::{SdpAnswer, SdpOffer};
use str0m::format::Codec;
use str0m::media::{KeyframeRequestKind, MediaKind, Mid};
use str0m::net::{DatagramRecv, Protocol, Receive, TcpType, Transmit};
use str0m::rtp::{RtpPacket, RtpWrite, Ssrc};
use str0m::{Candidate, Event, IceConnectionState, Input, Output, Rtc};

use super::allocate::{Allocator, LayerIndex, LayerSwitch, Pick, Tile, Video};
use super::estimate::{LinkEstimate, LinkReport};
use super::forward::{KeyframeThrottle, TrackForwarder, Verdict};
use super::layers::{offered_rids, BitrateMeter, PublishedLayers};
use super::timers::{self, WakeQueue};
use super::SfuError;
use onstage_proto::h264::starts_keyframe;

/// How often every viewer's layers are chosen again (the climb's hold is counted in these
/// steps; a falling estimate or a new tile size is acted on at once).
pub const ALLOCATION_INTERVAL: Duration = Duration::from_millis(250);

/// How long after a cut to a lower layer (congestion: see [`LayerSwitch::cut_to`]) its
/// keyframe is asked for a second time. The first one went into a link whose queue the old
/// layer had just filled, and a token bucket drops what arrives at a full queue: in the
/// lab the first keyframe was cut short in some runs, and the viewer's picture froze until
/// its own request (one queue's delay later) brought another. By now the queue has room,
/// and a keyframe of the lowest layer costs little.
const KEYFRAME_AGAIN_AFTER_CUT: Duration = Duration::from_millis(250);

/// The bandwidth estimate a viewer's session starts from, before TWCC feedback has told
/// better: enough for the top layer of a 720p speaker. Starting lower leaves a viewer in
/// a trap: an estimator learns only from what is sent, and one fed a 450 kbit/s layer
/// rarely shows the 2 Mbit/s the top layer asks (measured in the lab: it settled at
/// 1.1-1.7 Mbit/s). A viewer on a slower link pays with a second or two of congestion at
/// the start, until its estimate falls and it is moved down.
const INITIAL_ESTIMATE: Bitrate = Bitrate::kbps(2_500);

/// How often a subscription that estimates its bandwidth reports its raw estimate, loss
/// and feedback round trip (str0m's peer stats): a queue is seen in two reports running,
/// so this is half the delay before a congested viewer is moved down.
const LINK_STATS_INTERVAL: Duration = Duration::from_millis(100);

/// What a publication's audio is taken to cost before it is measured, bit/s.
const AUDIO_BITRATE: u64 = 40_000;

/// A change the SFU tells a publisher (through its signaling connection).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Notice {
    /// The simulcast layers (RIDs) someone takes now: the others may pause.
    Layers(Vec<String>),
}

/// Which way a session's media goes, as the call that made it means: a publication's
/// media comes in only, a subscription's goes out only.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Side {
    Publication,
    Subscription,
}

impl Side {
    /// The offer as its call means it: a `sendrecv` media line is taken as `sendonly` in a
    /// publication's offer (the SFU answers `recvonly`) and as `recvonly` in a
    /// subscription's (answered `sendonly`). str0m would answer `sendrecv`, which the
    /// API does not promise, and which tells a viewer's stack to send on a subscription.
    fn read(self, offer: &str) -> Cow<'_, str> {
        if !offer.lines().any(|l| l.trim_end() == "a=sendrecv") {
            return Cow::Borrowed(offer);
        }
        let meant = match self {
            Side::Publication => "a=sendonly",
            Side::Subscription => "a=recvonly",
        };
        let lines = offer.split_inclusive('\n').map(|line| {
            let body = line.trim_end_matches(['\r', '\n']);
            if body == "a=sendrecv" {
                Cow::Owned(format!("{meant}{}", &line[body.len()..]))
            } else {
                Cow::Borrowed(line)
            }
        });
        Cow::Owned(lines.collect())
    }
}

/// Everything building one session needs, taken from the engine ([`Engine::plan_subscription`]):
/// building it ([`SessionSetup::build`]: a DTLS context with fresh key shares, and the SDP
/// negotiation) costs about a millisecond of CPU, so the SFU's task hands it to a worker
/// instead of holding every meeting's forwarding up for it, a join storm's hundreds of times
/// over.
pub struct SessionSetup {
    offer: String,
    side: Side,
    bwe: bool,
    candidates: Vec<LocalCandidate>,
    dtls_cert: Option<str0m::config::DtlsCert>,
    now: Instant,
}

/// A built session and its SDP answer, for [`Engine::finish_subscription`].
pub struct BuiltSession {
    rtc: Rtc,
    answer: String,
}

impl SessionSetup {
    /// Builds the session: its `Rtc`, with our candidates that the peer can use, and the
    /// answer to the offer. Pure: needs nothing of the engine, runs on any thread.
    pub fn build(self) -> Result<BuiltSession, SfuError> {
        let reach = PeerReach::of(&self.offer);
        let offer = SdpOffer::from_sdp_string(&self.side.read(&self.offer))
            .map_err(|e| SfuError::BadSdp(e.to_string()))?;
        let mut config = rtc_config();
        if self.bwe {
            // Peer stats carry str0m's raw estimate and the loss its TWCC feedback shows:
            // the fast signals of `LinkEstimate`.
            config = config
                .enable_bwe(Some(INITIAL_ESTIMATE))
                .set_stats_interval(Some(LINK_STATS_INTERVAL));
        }
        if let Some(cert) = self.dtls_cert {
            config = config.set_dtls_cert(cert);
        }
        let mut rtc = config.build(self.now);
        for local in self
            .candidates
            .iter()
            .filter(|c| reach.may_use(c.addr.ip()))
        {
            match local.to_str0m() {
                Ok(c) => {
                    rtc.add_local_candidate(c);
                }
                Err(e) => tracing::warn!(addr = %local.addr, error = %e, "unusable media address"),
            }
        }
        // str0m asserts on some offers it cannot negotiate (one payload type mapped in two
        // media lines of a recvonly offer: "Pt locked multiple times"). A peer's offer must
        // not take the SFU task, and every meeting's media, down with it: the half-built
        // session is dropped and the offer refused.
        let accepted = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            rtc.sdp_api().accept_offer(offer)
        }))
        .map_err(|_| {
            tracing::warn!("refused an SDP offer the WebRTC stack could not negotiate");
            SfuError::BadSdp("the offer could not be negotiated".into())
        })?;
        let answer: SdpAnswer = accepted.map_err(|e| SfuError::BadSdp(e.to_string()))?;
        Ok(BuiltSession {
            rtc,
            answer: answer.to_sdp_string(),
        })
    }
}

/// A participant of a meeting: who owns a session.
pub type ParticipantKey = (MeetingId, UserId);

/// One datagram to send: over UDP, or as one RFC 4571 frame on the TCP connection to
/// `destination`.
#[derive(Debug, Clone)]
pub struct Datagram {
    pub proto: Protocol,
    /// The local candidate address it leaves from (the address the peer used).
    pub source: SocketAddr,
    pub destination: SocketAddr,
    pub contents: Vec<u8>,
}

/// An address of ours that peers are told about: a UDP host candidate, or a passive TCP
/// candidate (ICE-TCP, for peers whose UDP is blocked).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct LocalCandidate {
    pub proto: Protocol,
    pub addr: SocketAddr,
}

impl LocalCandidate {
    pub fn udp(addr: SocketAddr) -> Self {
        LocalCandidate {
            proto: Protocol::Udp,
            addr,
        }
    }

    pub fn tcp(addr: SocketAddr) -> Self {
        LocalCandidate {
            proto: Protocol::Tcp,
            addr,
        }
    }

    fn to_str0m(self) -> Result<Candidate, str0m::error::IceError> {
        match self.proto {
            Protocol::Tcp => Candidate::builder()
                .tcp()
                .host(self.addr)
                .tcptype(TcpType::Passive)
                .build(),
            _ => Candidate::host(self.addr, "udp"),
        }
    }
}

/// Counters the engine keeps; the server exports them as metrics.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct EngineStats {
    /// RTP packets received from publishers.
    pub received: u64,
    /// RTP packets written to subscribers (one per packet per subscriber).
    pub forwarded: u64,
    /// Datagrams no live session accepted (e.g. media from a kicked participant).
    pub dropped: u64,
    /// Keyframe requests sent to publishers.
    pub keyframe_requests: u64,
    /// Audio packets not forwarded because a host muted their publisher.
    pub held_audio: u64,
}

type SessionId = u64;

struct Session {
    rtc: Rtc,
    owner: ParticipantKey,
    role: Role,
    /// The negotiated media lines.
    mids: Vec<(Mid, MediaKind)>,
    /// When its `Rtc` wants to be woken (its last `Output::Timeout`).
    timeout: Instant,
    /// The instant of its live entry in the engine's [`WakeQueue`] (see [`timers`]).
    wake: Option<Instant>,
    /// How its DTLS and media travel (the nominated pair's protocol), once known: ICE
    /// checks go over every pair, everything else only over the nominated one.
    transport: Option<Protocol>,
}

enum Role {
    Publication {
        /// Keyframe requests, per video layer.
        keyframes: Vec<KeyframeThrottle>,
        /// A host muted the publisher: its audio goes nowhere until it unmutes itself.
        audio_held: bool,
        layers: PublishedLayers,
        audio_meter: BitrateMeter,
        /// The subscriptions its packets are written to: the publisher's audience, kept
        /// here as the forwarding reads it (a clone is a count, not a copy) and built
        /// again only when someone subscribes or a subscription ends.
        audience: Arc<[SessionId]>,
    },
    Subscription {
        publisher: ParticipantKey,
        audio: Option<OutTrack>,
        video: Option<OutTrack>,
        /// Which of the publisher's video layers this viewer is shown.
        switch: LayerSwitch,
        /// The session's bandwidth estimate, and what its estimator is asked to probe for
        /// (boxed: a publication's variant is much smaller).
        link: Box<LinkEstimate>,
        /// When to ask for a second keyframe of the layer shown, after a cut to it.
        keyframe_again: Option<Instant>,
    },
}

/// One outgoing track of a subscription.
struct OutTrack {
    ssrc: Ssrc,
    pt: str0m::media::Pt,
    forwarder: TrackForwarder,
}

/// What a publisher's packet needs to be forwarded: read once, written to every viewer.
struct Incoming {
    kind: MediaKind,
    /// The video layer (0 for audio, and for a video without simulcast).
    layer: LayerIndex,
    seq: u64,
    timestamp: u32,
    marker: bool,
    keyframe_start: bool,
    payload: Arc<[u8]>,
    arrived: Instant,
}

/// Every session of every meeting. See the module docs.
pub struct Engine {
    /// Candidates offered to every new session (the SFU's sockets, by address).
    candidates: Vec<LocalCandidate>,
    /// One DTLS certificate for every session (as one SFU process is one endpoint):
    /// generating a key pair per session was a third of the cost of setting one up, which
    /// adds up when hundreds of viewers subscribe at once.
    dtls_cert: Option<str0m::config::DtlsCert>,
    sessions: HashMap<SessionId, Session>,
    next_id: SessionId,
    publications: HashMap<ParticipantKey, SessionId>,
    /// Subscriptions by publisher participant.
    audiences: HashMap<ParticipantKey, Vec<SessionId>>,
    /// Subscriptions by subscriber, then publisher: a viewer's allocation reads its own
    /// alone.
    subscriptions: HashMap<ParticipantKey, HashMap<ParticipantKey, SessionId>>,
    /// Subscriptions being set up, by (subscriber, publisher): the ticket of the latest.
    planned: HashMap<(ParticipantKey, ParticipantKey), u64>,
    next_ticket: u64,
    /// Which session a remote address belongs to, learnt from the first datagram a
    /// session accepted.
    routes: HashMap<(Protocol, SocketAddr), SessionId>,
    /// Sessions that had input since they were last polled.
    dirty: Vec<SessionId>,
    /// When each session must be woken next.
    wakes: WakeQueue<SessionId>,
    out: Vec<Datagram>,
    notices: Vec<(ParticipantKey, Notice)>,
    stats: EngineStats,
    /// Sessions whose media travels over UDP and over TCP.
    over: [usize; 2],
    /// How large each viewer shows each publisher's video (`media.tiles`), by viewer.
    tiles: HashMap<ParticipantKey, HashMap<UserId, Option<Tile>>>,
    /// Each viewer's layer allocator.
    allocators: HashMap<ParticipantKey, Allocator<ParticipantKey>>,
    next_allocation: Option<Instant>,
}

impl Engine {
    /// `candidates`: the addresses peers can reach the SFU at, offered in every answer.
    pub fn new(candidates: Vec<LocalCandidate>) -> Self {
        let dtls_cert = str0m::crypto::from_feature_flags()
            .dtls_provider
            .generate_certificate();
        Self {
            candidates,
            dtls_cert,
            sessions: HashMap::new(),
            next_id: 1,
            publications: HashMap::new(),
            audiences: HashMap::new(),
            subscriptions: HashMap::new(),
            planned: HashMap::new(),
            next_ticket: 1,
            routes: HashMap::new(),
            dirty: Vec::new(),
            wakes: WakeQueue::default(),
            out: Vec::new(),
            notices: Vec::new(),
            stats: EngineStats::default(),
            over: [0, 0],
            tiles: HashMap::new(),
            allocators: HashMap::new(),
            next_allocation: None,
        }
    }

    pub fn stats(&self) -> EngineStats {
        self.stats
    }

    /// The candidates offered to sessions created from now on (the machine's interfaces
    /// change: a laptop joins another network). Live sessions keep theirs.
    pub fn set_candidates(&mut self, candidates: Vec<LocalCandidate>) {
        self.candidates = candidates;
    }

    pub fn candidates(&self) -> &[LocalCandidate] {
        &self.candidates
    }

    /// Live publications and subscriptions.
    pub fn counts(&self) -> (usize, usize) {
        let subscriptions = self.subscriptions.values().map(HashMap::len).sum();
        (self.publications.len(), subscriptions)
    }

    /// Sessions whose media travels over UDP, and over TCP (ICE-TCP).
    pub fn transports(&self) -> (usize, usize) {
        (self.over[0], self.over[1])
    }

    /// Is `key` publishing right now?
    pub fn is_publishing(&self, key: &ParticipantKey) -> bool {
        self.publications.contains_key(key)
    }

    /// Datagrams produced since the last call.
    pub fn drain_datagrams(&mut self) -> std::vec::Drain<'_, Datagram> {
        self.out.drain(..)
    }

    /// What to tell publishers, produced since the last call.
    pub fn drain_notices(&mut self) -> std::vec::Drain<'_, (ParticipantKey, Notice)> {
        self.notices.drain(..)
    }

    /// The earliest moment [`Engine::handle_timeout`] must run.
    pub fn next_timeout(&self) -> Option<Instant> {
        self.wakes
            .next()
            .into_iter()
            .chain(self.next_allocation)
            .min()
    }

    /// A participant starts publishing: `offer` is its sendonly SDP offer, of the kinds
    /// `allowed` (its preset's). Replaces an earlier publication of the same participant.
    /// Returns the SDP answer and the kinds it accepted.
    /// `described`: the publisher's description of its simulcast layers (may be empty).
    pub fn publish(
        &mut self,
        key: ParticipantKey,
        offer: &str,
        described: &[VideoLayer],
        allowed: MediaKinds,
        now: Instant,
    ) -> Result<Publication, SfuError> {
        let kinds = offered_kinds(offer);
        if kinds.is_none() {
            return Err(SfuError::BadSdp("the offer has no audio or video".into()));
        }
        if !kinds.within(allowed) {
            return Err(SfuError::NotAllowed(
                "this preset may not publish that kind of media".into(),
            ));
        }
        let layers = PublishedLayers::simulcast(&offered_rids(offer), described)
            .map_err(|e| SfuError::BadSdp(e.to_string()))?;
        let (rtc, answer) = self.accept(offer, Side::Publication, false, now)?;
        self.unpublish(&key);
        let id = self.insert(
            rtc,
            key.clone(),
            Role::Publication {
                keyframes: vec![KeyframeThrottle::default(); layers.len()],
                audio_held: false,
                layers,
                audio_meter: BitrateMeter::default(),
                audience: Arc::from([]),
            },
            now,
        );
        self.publications.insert(key.clone(), id);
        self.refresh_audience(&key);
        // Viewers who were watching an earlier publication start over at a keyframe of
        // the new one's lowest layer, then climb as their estimates allow.
        for sub in self.audiences.get(&key).cloned().unwrap_or_default() {
            if let Some(Role::Subscription {
                audio,
                video,
                switch,
                ..
            }) = self.sessions.get_mut(&sub).map(|s| &mut s.role)
            {
                for (track, is_video) in [(audio, false), (video, true)] {
                    if let Some(t) = track {
                        t.forwarder.restart(is_video);
                    }
                }
                *switch = LayerSwitch::new();
                switch.choose(Some(0));
            }
        }
        self.drive(now);
        self.allocate_soon(now);
        Ok(Publication { answer, kinds })
    }

    /// `subscriber` wants `publisher`'s media: `offer` is its recvonly SDP offer. Replaces
    /// an earlier subscription of the same pair. Returns the SDP answer. The steps of
    /// [`Engine::plan_subscription`], [`SessionSetup::build`] and
    /// [`Engine::finish_subscription`] at once.
    pub fn subscribe(
        &mut self,
        subscriber: ParticipantKey,
        publisher: ParticipantKey,
        offer: &str,
        now: Instant,
    ) -> Result<String, SfuError> {
        let (ticket, setup) =
            self.plan_subscription(subscriber.clone(), publisher.clone(), offer.to_owned(), now);
        self.finish_subscription(ticket, subscriber, publisher, setup.build(), now)
    }

    /// The first step of a subscription: what to build for it, and its ticket. Until it is
    /// finished, ending the subscription (or the subscriber, or the publisher) or asking
    /// for it again voids the ticket.
    pub fn plan_subscription(
        &mut self,
        subscriber: ParticipantKey,
        publisher: ParticipantKey,
        offer: String,
        now: Instant,
    ) -> (u64, SessionSetup) {
        // Estimating the viewer's bandwidth is what choosing a layer needs, and it costs:
        // str0m then paces every packet to the estimate (measured at 100 viewers: a third
        // more SFU CPU per forwarded packet, and queueing in the pacer). A publisher known
        // to send one layer has nothing to choose from; one not publishing yet may come
        // with layers.
        let publication = self.publications.get(&publisher);
        let layered = match publication
            .and_then(|id| self.sessions.get(id))
            .map(|s| &s.role)
        {
            Some(Role::Publication { layers, .. }) => layers.is_simulcast(),
            _ => true,
        };
        let ticket = self.next_ticket;
        self.next_ticket += 1;
        self.planned.insert((subscriber, publisher), ticket);
        (ticket, self.setup(offer, Side::Subscription, layered, now))
    }

    /// The last step of a subscription: takes the session built for `ticket` into the
    /// meeting. Returns the SDP answer, or why not (the build failed; the ticket was voided
    /// meanwhile, and the session is dropped unused).
    pub fn finish_subscription(
        &mut self,
        ticket: u64,
        subscriber: ParticipantKey,
        publisher: ParticipantKey,
        built: Result<BuiltSession, SfuError>,
        now: Instant,
    ) -> Result<String, SfuError> {
        let pair = (subscriber, publisher);
        if self.planned.get(&pair) != Some(&ticket) {
            return Err(SfuError::Superseded);
        }
        let (subscriber, publisher) = pair;
        self.planned
            .remove(&(subscriber.clone(), publisher.clone()));
        let BuiltSession { rtc, answer } = built?;
        self.unsubscribe(&subscriber, &publisher);
        // The lowest layer first, for a picture at once; the allocator raises it.
        let mut switch = LayerSwitch::new();
        switch.choose(Some(0));
        let id = self.insert(
            rtc,
            subscriber.clone(),
            Role::Subscription {
                publisher: publisher.clone(),
                audio: None,
                video: None,
                switch,
                link: Box::new(LinkEstimate::new(INITIAL_ESTIMATE.as_u64())),
                keyframe_again: None,
            },
            now,
        );
        self.audiences
            .entry(publisher.clone())
            .or_default()
            .push(id);
        self.refresh_audience(&publisher);
        self.subscriptions
            .entry(subscriber)
            .or_default()
            .insert(publisher, id);
        self.drive(now);
        self.allocate_soon(now);
        Ok(answer)
    }

    /// How large `viewer` shows each stage video now (`media.tiles`): `None` is hidden. A
    /// publisher left out is shown at whatever size its layers come in. Replaces the last
    /// call's sizes, and takes effect at once.
    pub fn set_tiles(
        &mut self,
        viewer: &ParticipantKey,
        tiles: impl IntoIterator<Item = (UserId, Option<Tile>)>,
        now: Instant,
    ) {
        let tiles: HashMap<UserId, Option<Tile>> = tiles.into_iter().collect();
        let before = self.tiles.insert(viewer.clone(), tiles.clone());
        if let Some(allocator) = self.allocators.get_mut(viewer) {
            let before = before.unwrap_or_default();
            let publishers = tiles.keys().chain(before.keys());
            for user in publishers.filter(|u| tiles.get(*u) != before.get(*u)) {
                allocator.reset(&(viewer.0.clone(), user.clone()));
            }
        }
        self.allocate_viewer(viewer, now);
        self.tell_layers();
        self.drive(now);
    }

    /// Ends one subscription (and voids one being set up).
    pub fn unsubscribe(&mut self, subscriber: &ParticipantKey, publisher: &ParticipantKey) {
        self.planned
            .remove(&(subscriber.clone(), publisher.clone()));
        if let Some(id) = self
            .subscriptions
            .get(subscriber)
            .and_then(|by_publisher| by_publisher.get(publisher))
            .copied()
        {
            self.close(id);
        }
    }

    /// Ends a participant's publication (its subscribers stay, waiting for the next one).
    pub fn unpublish(&mut self, key: &ParticipantKey) {
        if let Some(id) = self.publications.get(key).copied() {
            self.close(id);
        }
    }

    /// A host muted the participant (`held`), or it unmuted itself: while held, its
    /// publication's audio is forwarded to nobody, whatever its client sends. Lasts as long
    /// as the publication; a new one starts unheld (its client has turned the microphone
    /// off by then).
    pub fn hold_audio(&mut self, key: &ParticipantKey, held: bool) {
        let Some(id) = self.publications.get(key).copied() else {
            return;
        };
        let Some(Session {
            role: Role::Publication { audio_held, .. },
            ..
        }) = self.sessions.get_mut(&id)
        else {
            return;
        };
        if std::mem::replace(audio_held, held) == held {
            return;
        }
        tracing::debug!(user = %key.1, held, "publisher audio hold");
        if held {
            return;
        }
        // Each viewer's audio goes on where it stopped: no gap in its sequence numbers,
        // which a receiver would take for loss.
        for sub in self.audiences.get(key).cloned().unwrap_or_default() {
            if let Some(Session {
                role:
                    Role::Subscription {
                        audio: Some(track), ..
                    },
                ..
            }) = self.sessions.get_mut(&sub)
            {
                track.forwarder.close_gap();
            }
        }
    }

    /// The participant left the stage: its publication and everyone's subscription to it
    /// end now.
    pub fn end_publisher(&mut self, key: &ParticipantKey) {
        self.unpublish(key);
        self.planned.retain(|(_, publisher), _| publisher != key);
        for id in self.audiences.get(key).cloned().unwrap_or_default() {
            self.close(id);
        }
    }

    /// The participant's connection is gone: its publication and its own subscriptions end.
    pub fn drop_participant(&mut self, key: &ParticipantKey) {
        self.unpublish(key);
        self.planned.retain(|(subscriber, _), _| subscriber != key);
        self.tiles.remove(key);
        self.allocators.remove(key);
        let own: Vec<SessionId> = self
            .subscriptions
            .get(key)
            .into_iter()
            .flat_map(HashMap::values)
            .copied()
            .collect();
        for id in own {
            self.close(id);
        }
    }

    /// Ends every session (server shutdown).
    pub fn close_all(&mut self) {
        self.planned.clear();
        let ids: Vec<SessionId> = self.sessions.keys().copied().collect();
        for id in ids {
            self.close(id);
        }
    }

    /// A datagram arrived: over UDP, or as one frame of a TCP connection. `destination` is
    /// the local candidate address it was sent to (str0m accepts ICE checks only on its own
    /// candidates). Returns whether a session took it; a refused datagram is counted and
    /// changes nothing.
    pub fn handle_datagram(
        &mut self,
        now: Instant,
        proto: Protocol,
        source: SocketAddr,
        destination: SocketAddr,
        data: &[u8],
    ) -> bool {
        let Ok(contents) = DatagramRecv::try_from(data) else {
            self.stats.dropped += 1;
            return false;
        };
        let input = Input::Receive(
            now,
            Receive {
                proto,
                source,
                destination,
                contents,
            },
        );
        let learnt = self
            .routes
            .get(&(proto, source))
            .copied()
            .filter(|id| self.sessions.contains_key(id));
        let routed =
            learnt.filter(|id| self.sessions.get(id).is_some_and(|s| s.rtc.accepts(&input)));
        let id = match routed {
            Some(id) => id,
            None => {
                // New address (ICE checks): ask every session. Only STUN with the right
                // credentials or traffic from a nominated pair is accepted.
                let found = self
                    .sessions
                    .iter()
                    .find(|(_, s)| s.rtc.accepts(&input))
                    .map(|(id, _)| *id);
                match (found, learnt) {
                    (Some(id), _) => {
                        self.routes.insert((proto, source), id);
                        id
                    }
                    // The peer's DTLS hello can overtake our side of the ICE checks: its
                    // pair is nominated on its side, not yet on ours, so str0m does not
                    // claim it. The address was learnt from a check with this session's
                    // credentials: hand it over rather than make the peer wait a DTLS
                    // retransmission (about a second).
                    (None, Some(id)) => id,
                    (None, None) => {
                        self.stats.dropped += 1;
                        return false;
                    }
                }
            }
        };
        if let Some(session) = self.sessions.get_mut(&id) {
            // RFC 7983: a first byte of 0-3 is STUN; 20 and above is DTLS, RTP or RTCP.
            if data.first().is_some_and(|b| *b >= 20) && session.transport != Some(proto) {
                if let Some(old) = session.transport.replace(proto) {
                    self.over[transport_index(old)] -= 1;
                }
                self.over[transport_index(proto)] += 1;
            }
            if let Err(e) = session.rtc.handle_input(input) {
                tracing::debug!(error = %e, "a session refused a datagram");
            }
            self.dirty.push(id);
        }
        self.drive(now);
        true
    }

    /// Time passed: wake the sessions whose timers are due and send deferred keyframe
    /// requests.
    pub fn handle_timeout(&mut self, now: Instant) {
        let mut keyframes = Vec::new();
        let mut again = Vec::new();
        let mut due = Vec::new();
        let mut rescheduled = Vec::new();
        while let Some((id, at)) = self.wakes.pop_due(now) {
            if self
                .sessions
                .get_mut(&id)
                .is_some_and(|s| timers::claim(&mut s.wake, at))
            {
                due.push(id);
            }
        }
        for id in due {
            let Some(s) = self.sessions.get_mut(&id) else {
                continue;
            };
            if s.timeout <= now {
                if let Err(e) = s.rtc.handle_input(Input::Timeout(now)) {
                    tracing::debug!(error = %e, "session timeout failed");
                }
                // Polled below, which schedules its next wake.
                self.dirty.push(id);
            } else {
                // Woken early (its `Rtc` moved its timeout later, or for a keyframe
                // request): nothing for the `Rtc`, whose poll would cost as much as a
                // packet's.
                rescheduled.push(id);
            }
            match &mut s.role {
                Role::Publication { keyframes: k, .. } => {
                    for (layer, throttle) in k.iter_mut().enumerate() {
                        if throttle.poll(now) {
                            keyframes.push((id, layer));
                        }
                    }
                }
                Role::Subscription {
                    publisher,
                    switch,
                    keyframe_again,
                    ..
                } => {
                    if keyframe_again.is_some_and(|at| at <= now) {
                        *keyframe_again = None;
                        if let Some(layer) = switch.shown() {
                            again.push((publisher.clone(), layer));
                        }
                    }
                }
            }
        }
        for (id, layer) in keyframes {
            self.send_keyframe_request(id, layer);
        }
        for id in rescheduled {
            self.reschedule(id);
        }
        for (publisher, layer) in again {
            if let Some(&publication) = self.publications.get(&publisher) {
                tracing::trace!(session = publication, layer, "keyframe again after a cut");
                self.request_keyframe(publication, layer, now);
            }
        }
        if self.next_allocation.is_some_and(|at| at <= now) {
            self.allocate_all(now);
        }
        self.drive(now);
    }

    /// Runs the allocation at the next step (now, if none is planned).
    fn allocate_soon(&mut self, now: Instant) {
        if self.next_allocation.is_none() {
            self.next_allocation = Some(now);
        }
    }

    /// Chooses every viewer's layers, tells publishers which layers are taken, and plans
    /// the next round while anyone watches.
    fn allocate_all(&mut self, now: Instant) {
        let mut viewers: Vec<ParticipantKey> = self.subscriptions.keys().cloned().collect();
        viewers.sort();
        for viewer in &viewers {
            self.allocate_viewer(viewer, now);
        }
        self.allocators
            .retain(|v, _| viewers.binary_search(v).is_ok());
        self.tell_layers();
        self.next_allocation = (!viewers.is_empty()).then(|| now + ALLOCATION_INTERVAL);
    }

    /// One viewer's layers: its estimate (all its sessions' together, as they share its
    /// link) shared among the stage videos it shows, by [`Allocator`]'s rules.
    fn allocate_viewer(&mut self, viewer: &ParticipantKey, now: Instant) {
        struct Leg {
            sub: SessionId,
            publication: SessionId,
            index: Vec<LayerIndex>,
            estimate: u64,
        }
        let mut legs = Vec::new();
        let mut videos = Vec::new();
        let mut audio = 0;
        let mut congested = false;
        let mut restarts = Vec::new();
        let tiles = self.tiles.get(viewer);
        for (publisher, &sub) in self.subscriptions.get(viewer).into_iter().flatten() {
            let Some(&publication) = self.publications.get(publisher) else {
                continue;
            };
            let Some(Role::Publication {
                layers,
                audio_meter,
                ..
            }) = self.sessions.get(&publication).map(|s| &s.role)
            else {
                continue;
            };
            let Some(Role::Subscription { link, .. }) = self.sessions.get(&sub).map(|s| &s.role)
            else {
                continue;
            };
            congested |= link.congested(now);
            let audio_rate = audio_meter.bitrate(now).unwrap_or(AUDIO_BITRATE);
            audio += audio_rate;
            let (offer, index) = layers.on_offer(now);
            // A congestion that just began restarts the estimator from what the viewer
            // falls back to: GCC's estimate may not have seen the slower link (the queue
            // was noticed first), and once the fallback no longer fills the link it never
            // would, and would let the viewer climb straight back into the queue.
            let restart = link
                .restart_pending()
                .then(|| audio_rate + offer.first().map_or(0, |l| l.bitrate));
            let tile = match tiles.and_then(|t| t.get(&publisher.1)) {
                Some(tile) => *tile,
                None => Some(Tile {
                    width: u32::MAX,
                    height: u32::MAX,
                }),
            };
            videos.push(Video {
                key: publisher.clone(),
                layers: offer,
                tile,
            });
            legs.push(Leg {
                sub,
                publication,
                index,
                estimate: restart.unwrap_or(link.bitrate()),
            });
            if let Some(floor) = restart {
                restarts.push((sub, floor));
            }
        }
        // An estimator that stood still too long starts over from where it stood.
        for leg in &legs {
            if let Some(s) = self.sessions.get_mut(&leg.sub) {
                if let Role::Subscription { link, .. } = &mut s.role {
                    if link.kick_pending() && !restarts.iter().any(|(sub, _)| *sub == leg.sub) {
                        tracing::debug!(viewer = %viewer.1, from = leg.estimate, "estimator kicked");
                        link.kicked();
                        s.rtc.bwe().reset(Bitrate::bps(leg.estimate.max(1)));
                        self.dirty.push(leg.sub);
                    }
                }
            }
        }
        for (sub, floor) in restarts {
            if let Some(s) = self.sessions.get_mut(&sub) {
                if let Role::Subscription { link, .. } = &mut s.role {
                    tracing::debug!(viewer = %viewer.1, floor, "estimate restarted");
                    link.restart(floor);
                    s.rtc.bwe().reset(Bitrate::bps(floor.max(1)));
                    self.dirty.push(sub);
                }
            }
        }
        if legs.is_empty() {
            return;
        }
        let total: u64 = legs.iter().map(|l| l.estimate).sum();
        let allocation = self
            .allocators
            .entry(viewer.clone())
            .or_insert_with(Allocator::new)
            .allocate(total, audio, &videos, congested, now);
        for (leg, video) in legs.iter().zip(&videos) {
            // A shown video never goes below its lowest layer: a picture on a congested
            // link beats none, and a video without simulcast has nothing lower to go to.
            let lowest = video
                .tile
                .filter(|t| t.width > 0 && t.height > 0)
                .and_then(|_| leg.index.first().copied());
            let choice = allocation
                .layers
                .get(&video.key)
                .copied()
                .flatten()
                .and_then(|i| leg.index.get(i).copied())
                .or(lowest);
            // Each session probes for its share of what the viewer wants (str0m probes
            // when the rate asked for rises; `LinkEstimate` makes it rise again while the
            // estimate falls short). Padding up to it all the time would teach the
            // estimator faster, but costs the viewer's link, and webrtc-rs receivers
            // answered it with collapsing estimates in the lab.
            let part = |bps: u64| (bps as f64 * leg.estimate as f64 / total.max(1) as f64) as u64;
            let share = part(allocation.wanted);
            let sustain = part(allocation.sustain);
            let mut keyframe = None;
            if let Some(s) = self.sessions.get_mut(&leg.sub) {
                if let Role::Subscription { switch, link, .. } = &mut s.role {
                    if switch.target() != choice {
                        tracing::debug!(viewer = %viewer.1, publisher = %video.key.1, from = ?switch.shown(), to = ?choice, estimate = total, congested, "layer change");
                        // On a congested link the old layer stops at once: its packets
                        // would only lengthen the queue the new keyframe has to pass.
                        if congested {
                            switch.cut_to(choice);
                        } else {
                            switch.choose(choice);
                        }
                    }
                    if switch.awaiting_keyframe() {
                        keyframe = switch.target();
                    }
                    let probe = link.desired(share, now).is_some();
                    if link.sustain(sustain, now) | probe {
                        let (minimum, desired) = link.asked();
                        tracing::trace!(viewer = %viewer.1, minimum, desired, estimate = leg.estimate, "probing towards");
                        s.rtc
                            .bwe()
                            .set_bitrate(Bitrate::bps(minimum), Bitrate::bps(desired));
                        self.dirty.push(leg.sub);
                    }
                }
            }
            if let Some(layer) = keyframe {
                self.request_keyframe(leg.publication, layer, now);
            }
        }
    }

    /// Tells each simulcast publisher which of its layers anyone is shown or switching
    /// to, when that changed.
    fn tell_layers(&mut self) {
        let pubs: Vec<(ParticipantKey, SessionId)> = self
            .publications
            .iter()
            .map(|(k, id)| (k.clone(), *id))
            .collect();
        for (key, id) in pubs {
            let n = match self.sessions.get(&id).map(|s| &s.role) {
                Some(Role::Publication { layers, .. }) if layers.is_simulcast() => layers.len(),
                _ => continue,
            };
            let mut taken = vec![false; n];
            for sub in self.audiences.get(&key).into_iter().flatten() {
                if let Some(Role::Subscription { switch, .. }) =
                    self.sessions.get(sub).map(|s| &s.role)
                {
                    for layer in [switch.shown(), switch.target()].into_iter().flatten() {
                        if let Some(t) = taken.get_mut(layer) {
                            *t = true;
                        }
                    }
                }
            }
            if let Some(Role::Publication { layers, .. }) =
                self.sessions.get_mut(&id).map(|s| &mut s.role)
            {
                if let Some(rids) = layers.set_taken(&taken) {
                    tracing::debug!(publisher = %key.1, ?rids, "layers taken");
                    self.notices.push((key, Notice::Layers(rids)));
                }
            }
        }
    }

    /// The bandwidth view of a subscription session.
    fn link_of(&mut self, id: SessionId) -> Option<&mut LinkEstimate> {
        match self.sessions.get_mut(&id).map(|s| &mut s.role) {
            Some(Role::Subscription { link, .. }) => Some(link),
            _ => None,
        }
    }

    /// A subscription's periodic link report: its estimate learns from it, and a link
    /// that became congested moves its viewer down at once.
    fn on_link_report(&mut self, id: SessionId, report: LinkReport, now: Instant) {
        let (before, began) = match self.link_of(id) {
            Some(link) => (Some(link.bitrate()), link.on_stats(report, now)),
            None => (None, false),
        };
        tracing::trace!(session = id, ?report, began, "link stats");
        self.reallocate_if_worse(id, before, began, now);
    }

    /// Re-decides the viewer's layers at once when its session's estimate fell below
    /// `before`, or its link became congested (down at once); a rising estimate waits for
    /// the next round (up only after a hold anyway).
    fn reallocate_if_worse(
        &mut self,
        id: SessionId,
        before: Option<u64>,
        congested: bool,
        now: Instant,
    ) {
        let Some(session) = self.sessions.get(&id) else {
            return;
        };
        let fell = match &session.role {
            Role::Subscription { link, .. } => before.is_some_and(|b| link.bitrate() < b),
            _ => false,
        };
        if fell || congested {
            let viewer = session.owner.clone();
            self.allocate_viewer(&viewer, now);
            self.tell_layers();
        }
    }

    /// Accepts an offer for `side` here and now (see [`SessionSetup`] for doing the costly
    /// part elsewhere).
    fn accept(
        &mut self,
        offer: &str,
        side: Side,
        bwe: bool,
        now: Instant,
    ) -> Result<(Rtc, String), SfuError> {
        let built = self.setup(offer.to_owned(), side, bwe, now).build()?;
        Ok((built.rtc, built.answer))
    }

    /// What building a session for `offer` takes from the engine. A subscription's session
    /// (`bwe`) estimates the bandwidth to its viewer from TWCC feedback, for the layer
    /// allocation.
    fn setup(&self, offer: String, side: Side, bwe: bool, now: Instant) -> SessionSetup {
        SessionSetup {
            offer,
            side,
            bwe,
            candidates: self.candidates.clone(),
            dtls_cert: self.dtls_cert.clone(),
            now,
        }
    }

    fn insert(&mut self, rtc: Rtc, owner: ParticipantKey, role: Role, now: Instant) -> SessionId {
        let id = self.next_id;
        self.next_id += 1;
        self.sessions.insert(
            id,
            Session {
                rtc,
                owner,
                role,
                mids: Vec::new(),
                timeout: now,
                wake: None,
                transport: None,
            },
        );
        self.dirty.push(id);
        id
    }

    /// Closes a session: str0m sends RTCP BYE and DTLS close_notify (so the peer learns at
    /// once that the tracks ended), then it is forgotten. Anything that peer sends later
    /// finds no session and is dropped.
    fn close(&mut self, id: SessionId) {
        if let Some(s) = self.sessions.get_mut(&id) {
            if let Err(e) = s.rtc.close() {
                tracing::debug!(error = %e, "closing a session");
            }
            // Drain the goodbye datagrams; events are no longer of interest.
            for _ in 0..64 {
                match s.rtc.poll_output() {
                    Ok(Output::Transmit(t)) => self.out.push(Datagram::from(t)),
                    Ok(Output::Event(_)) => {}
                    Ok(Output::Timeout(_)) | Err(_) => break,
                }
            }
        }
        self.forget(id);
    }

    fn forget(&mut self, id: SessionId) {
        let Some(s) = self.sessions.remove(&id) else {
            return;
        };
        if let Some(t) = s.transport {
            self.over[transport_index(t)] -= 1;
        }
        self.routes.retain(|_, sid| *sid != id);
        match s.role {
            Role::Publication { .. } => {
                if self.publications.get(&s.owner) == Some(&id) {
                    self.publications.remove(&s.owner);
                }
            }
            Role::Subscription { publisher, .. } => {
                if let Some(list) = self.audiences.get_mut(&publisher) {
                    list.retain(|sid| *sid != id);
                    if list.is_empty() {
                        self.audiences.remove(&publisher);
                    }
                }
                self.refresh_audience(&publisher);
                if let Some(by_publisher) = self.subscriptions.get_mut(&s.owner) {
                    if by_publisher.get(&publisher) == Some(&id) {
                        by_publisher.remove(&publisher);
                    }
                    if by_publisher.is_empty() {
                        self.subscriptions.remove(&s.owner);
                    }
                }
            }
        }
    }

    /// Polls every dirty session until it has nothing more to say, handling its events
    /// (which may dirty other sessions: forwarding writes to subscribers).
    fn drive(&mut self, now: Instant) {
        while let Some(id) = self.dirty.pop() {
            let mut events = Vec::new();
            let mut dead = false;
            if let Some(s) = self.sessions.get_mut(&id) {
                loop {
                    if !s.rtc.is_alive() {
                        dead = true;
                        break;
                    }
                    match s.rtc.poll_output() {
                        Ok(Output::Transmit(t)) => self.out.push(Datagram::from(t)),
                        Ok(Output::Timeout(t)) => {
                            s.timeout = t;
                            let wake = wake_of(s);
                            self.wakes.schedule(id, &mut s.wake, wake);
                            break;
                        }
                        Ok(Output::Event(e)) => events.push(e),
                        Err(e) => {
                            tracing::debug!(error = %e, "session failed");
                            dead = true;
                            break;
                        }
                    }
                }
            }
            for e in events {
                self.on_event(id, e, now);
            }
            if dead {
                self.forget(id);
            }
        }
    }

    fn on_event(&mut self, id: SessionId, event: Event, now: Instant) {
        match event {
            Event::MediaAdded(m) => {
                if let Some(s) = self.sessions.get_mut(&id) {
                    s.mids.push((m.mid, m.kind));
                }
            }
            Event::RtpPacket(packet) => self.forward(id, packet, now),
            // A viewer is ready, or its decoder lost the picture: ask the publisher, for
            // the layer the viewer is shown or is switching to.
            Event::Connected | Event::KeyframeRequest(_) => {
                if let Some((pub_id, layer)) = self.publisher_session_of(id) {
                    self.request_keyframe(pub_id, layer, now);
                }
            }
            Event::EgressBitrateEstimate(BweKind::Twcc {
                estimate,
                can_probe,
            }) => {
                let before = self.link_of(id).map(|link| {
                    let before = link.bitrate();
                    link.on_estimate(estimate.as_u64());
                    before
                });
                tracing::trace!(
                    session = id,
                    bps = estimate.as_u64(),
                    can_probe,
                    "bandwidth estimate"
                );
                self.reallocate_if_worse(id, before, false, now);
            }
            Event::PeerStats(stats) => {
                let report = LinkReport {
                    sent_bytes: stats.peer_bytes_tx,
                    raw: stats.bwe_tx.map(|b| b.as_u64()),
                    loss: stats.egress_loss_fraction,
                    rtt: stats.rtt,
                };
                self.on_link_report(id, report, now);
            }
            Event::IceConnectionStateChange(IceConnectionState::Disconnected) => {
                if let Some(s) = self.sessions.get_mut(&id) {
                    tracing::debug!(owner = %s.owner.1, "peer went away (ICE disconnected)");
                    s.rtc.disconnect();
                }
                self.forget(id);
            }
            _ => {}
        }
    }

    /// For a subscription: its publisher's live publication session, and the video layer
    /// the viewer is shown (or switching to).
    fn publisher_session_of(&self, id: SessionId) -> Option<(SessionId, LayerIndex)> {
        match &self.sessions.get(&id)?.role {
            Role::Subscription {
                publisher, switch, ..
            } => {
                let layer = switch.target().or(switch.shown()).unwrap_or(0);
                Some((*self.publications.get(publisher)?, layer))
            }
            Role::Publication { .. } => None,
        }
    }

    fn forward(&mut self, from: SessionId, packet: RtpPacket, now: Instant) {
        let Some(publisher) = self.sessions.get_mut(&from) else {
            return;
        };
        let Role::Publication {
            audio_held,
            layers,
            audio_meter,
            keyframes,
            audience,
        } = &mut publisher.role
        else {
            return; // viewers do not send media; ignore whatever they do send
        };
        let ssrc = packet.header.ssrc;
        let Some((mid, rid)) = publisher
            .rtc
            .direct_api()
            .stream_rx(&ssrc)
            .map(|s| (s.mid(), s.rid()))
        else {
            return;
        };
        let Some(kind) = publisher
            .mids
            .iter()
            .find(|(m, _)| *m == mid)
            .map(|(_, k)| *k)
        else {
            return;
        };
        self.stats.received += 1;
        let keyframe_start = kind == MediaKind::Video && starts_keyframe(&packet.payload);
        let layer = match kind {
            MediaKind::Audio => {
                audio_meter.record(now, packet.payload.len());
                if *audio_held {
                    self.stats.held_audio += 1;
                    return;
                }
                0
            }
            MediaKind::Video => {
                // A RID the offer did not declare (or none, in a simulcast video) belongs to
                // no layer: nobody is sent it.
                let Some(layer) = layers.index_of(rid.as_deref()) else {
                    self.stats.dropped += 1;
                    return;
                };
                layers.on_packet(layer, packet.payload.len(), now);
                if keyframe_start {
                    if let Some(throttle) = keyframes.get_mut(layer) {
                        throttle.on_keyframe();
                    }
                }
                layer
            }
        };

        let incoming = Incoming {
            kind,
            layer,
            seq: *packet.seq_no,
            timestamp: packet.header.timestamp,
            marker: packet.header.marker,
            keyframe_start,
            payload: packet.payload,
            arrived: packet.timestamp,
        };
        let audience = Arc::clone(audience);
        let mut want_keyframe = false;
        for &sub in audience.iter() {
            match self.write_to(sub, &incoming, now) {
                Some(Verdict::Forward(_)) => {
                    self.stats.forwarded += 1;
                    self.dirty.push(sub);
                }
                Some(Verdict::WaitingForKeyframe) => want_keyframe = true,
                Some(Verdict::Stale) | None => {}
            }
        }
        if want_keyframe {
            self.request_keyframe(from, incoming.layer, now);
        }
    }

    /// Writes one publisher packet to one subscription, rewritten for it.
    fn write_to(&mut self, sub: SessionId, p: &Incoming, now: Instant) -> Option<Verdict> {
        let s = self.sessions.get_mut(&sub)?;
        let Role::Subscription {
            audio,
            video,
            switch,
            keyframe_again,
            ..
        } = &mut s.role
        else {
            return None;
        };
        let is_video = p.kind == MediaKind::Video;
        let slot = if is_video { video } else { audio };
        if slot.is_none() {
            *slot = out_track(&mut s.rtc, &s.mids, p.kind);
        }
        let track = slot.as_mut()?;
        if is_video {
            match switch.on_packet(p.layer, p.keyframe_start) {
                Pick::Forward => {}
                // The viewer's stream goes on across the change: the forwarder starts a new
                // mapping at this keyframe, continuing its sequence numbers and timestamps.
                Pick::SwitchTo(layer) => {
                    tracing::trace!(session = sub, layer, "switched at a keyframe");
                    if switch.take_cut() {
                        *keyframe_again = Some(now + KEYFRAME_AGAIN_AFTER_CUT);
                        // Polled, and so scheduled for it, even if nothing is written.
                        self.dirty.push(sub);
                    }
                    track.forwarder.restart(true)
                }
                Pick::Drop => {
                    let waiting = switch.awaiting_keyframe() && switch.target() == Some(p.layer);
                    return Some(if waiting {
                        Verdict::WaitingForKeyframe
                    } else {
                        Verdict::Stale
                    });
                }
            }
        }
        let verdict = track
            .forwarder
            .on_packet(p.seq, p.timestamp, p.keyframe_start, now);
        if let Verdict::Forward(rw) = verdict {
            let mut api = s.rtc.direct_api();
            let tx = api.stream_tx(&track.ssrc)?;
            tx.write_rtp(
                RtpWrite::new(
                    track.pt,
                    rw.seq.into(),
                    rw.timestamp,
                    p.arrived,
                    p.payload.clone(),
                )
                .marker(p.marker)
                .nackable(is_video),
            );
        }
        Some(verdict)
    }

    /// Asks a publication for a keyframe of one video layer (coalesced per layer).
    fn request_keyframe(&mut self, publication: SessionId, layer: LayerIndex, now: Instant) {
        let send = match self.sessions.get_mut(&publication).map(|s| &mut s.role) {
            Some(Role::Publication { keyframes, .. }) => keyframes
                .get_mut(layer)
                .is_some_and(|throttle| throttle.request(now)),
            _ => false,
        };
        if send {
            tracing::trace!(session = publication, layer, "keyframe requested");
            self.send_keyframe_request(publication, layer);
        } else {
            // A request deferred by the throttle comes due later: its wake may be sooner.
            self.reschedule(publication);
        }
    }

    /// Schedules a session's wake again after something other than its `Rtc` changed it.
    fn reschedule(&mut self, id: SessionId) {
        if let Some(s) = self.sessions.get_mut(&id) {
            let wake = wake_of(s);
            self.wakes.schedule(id, &mut s.wake, wake);
        }
    }

    /// Rebuilds the audience a publisher's live publication forwards to, after its
    /// subscriptions changed.
    fn refresh_audience(&mut self, publisher: &ParticipantKey) {
        let Some(id) = self.publications.get(publisher) else {
            return;
        };
        if let Some(Role::Publication { audience, .. }) =
            self.sessions.get_mut(id).map(|s| &mut s.role)
        {
            *audience = self
                .audiences
                .get(publisher)
                .map_or_else(|| Arc::from([]), |list| Arc::from(list.as_slice()));
        }
    }

    /// Asks the publisher for a keyframe of `layer`; a request that could not go out (no
    /// packet of the layer yet) is forgotten by its throttle, so that it is not waited for.
    fn send_keyframe_request(&mut self, publication: SessionId, layer: LayerIndex) {
        if !self.try_keyframe_request(publication, layer) {
            if let Some(Role::Publication { keyframes, .. }) =
                self.sessions.get_mut(&publication).map(|s| &mut s.role)
            {
                if let Some(throttle) = keyframes.get_mut(layer) {
                    throttle.unsent();
                }
            }
        }
    }

    fn try_keyframe_request(&mut self, publication: SessionId, layer: LayerIndex) -> bool {
        let Some(s) = self.sessions.get_mut(&publication) else {
            return false;
        };
        let rid = match &s.role {
            Role::Publication { layers, .. } => layers.rid(layer).map(str0m::media::Rid::from),
            Role::Subscription { .. } => return false,
        };
        let Some(mid) = s
            .mids
            .iter()
            .find(|(_, k)| *k == MediaKind::Video)
            .map(|(m, _)| *m)
        else {
            return false;
        };
        // No stream yet means no packet yet: the encoder's first frame is a keyframe.
        let mut api = s.rtc.direct_api();
        let Some(rx) = api.stream_rx_by_mid(mid, rid) else {
            return false;
        };
        rx.request_keyframe(KeyframeRequestKind::Pli);
        self.stats.keyframe_requests += 1;
        self.dirty.push(publication);
        true
    }
}

/// When a session must be woken: its `Rtc`'s timeout, or sooner for a deferred keyframe
/// request (a publication) or a second keyframe after a cut (a subscription).
fn wake_of(s: &Session) -> Instant {
    let keyframe = match &s.role {
        Role::Publication { keyframes, .. } => {
            keyframes.iter().filter_map(KeyframeThrottle::due).min()
        }
        Role::Subscription { keyframe_again, .. } => *keyframe_again,
    };
    keyframe.map_or(s.timeout, |at| at.min(s.timeout))
}

/// What the peer's offered candidates say about which of our addresses it can use. Every
/// pair the peer must check costs it a check interval before its last one (a TCP pair,
/// lowest in priority, is tried after all the UDP ones): loopback is of use only to a peer
/// on this machine, and an address family only to a peer that has it. An offer without
/// candidates (or with names, e.g. mDNS) gets everything.
struct PeerReach {
    known: bool,
    loopback: bool,
    v4: bool,
    v6: bool,
}

impl PeerReach {
    fn of(offer: &str) -> PeerReach {
        let mut reach = PeerReach {
            known: false,
            loopback: false,
            v4: false,
            v6: false,
        };
        for line in offer.lines() {
            let Some(c) = line.trim().strip_prefix("a=candidate:") else {
                continue;
            };
            let Some(address) = c.split_whitespace().nth(4) else {
                continue;
            };
            match address.parse::<std::net::IpAddr>() {
                Ok(ip) => {
                    reach.known = true;
                    reach.loopback |= ip.is_loopback();
                    reach.v4 |= ip.is_ipv4();
                    reach.v6 |= ip.is_ipv6();
                }
                // A name (mDNS, a host name): we cannot tell, so offer everything.
                Err(_) => {
                    return PeerReach {
                        known: false,
                        ..reach
                    }
                }
            }
        }
        reach
    }

    fn may_use(&self, ip: std::net::IpAddr) -> bool {
        if !self.known {
            return true;
        }
        if ip.is_loopback() {
            return self.loopback;
        }
        if ip.is_ipv4() {
            self.v4
        } else {
            self.v6
        }
    }
}

fn transport_index(proto: Protocol) -> usize {
    usize::from(proto != Protocol::Udp)
}

impl From<Transmit> for Datagram {
    fn from(t: Transmit) -> Self {
        Datagram {
            proto: t.proto,
            source: t.source,
            destination: t.destination,
            contents: t.contents.into(),
        }
    }
}

/// Sets up a subscription's outgoing track of `kind`: the stream str0m declared for the
/// media line, and the payload type the viewer offered for our codec.
fn out_track(rtc: &mut Rtc, mids: &[(Mid, MediaKind)], kind: MediaKind) -> Option<OutTrack> {
    let mid = mids.iter().find(|(_, k)| *k == kind).map(|(m, _)| *m)?;
    let codec = match kind {
        MediaKind::Video => Codec::H264,
        MediaKind::Audio => Codec::Opus,
    };
    let remote_pts = rtc.media(mid)?.remote_pts().to_vec();
    let params = rtc
        .codec_config()
        .params()
        .iter()
        .filter(|p| p.spec().codec == codec && remote_pts.contains(&p.pt()))
        // H.264: the packetization our publishers use (FU-A).
        .max_by_key(|p| p.spec().format.packetization_mode == Some(1))?;
    let pt = params.pt();
    let clock_rate = match kind {
        MediaKind::Video => 90_000,
        MediaKind::Audio => 48_000,
    };
    let ssrc = rtc.direct_api().stream_tx_by_mid(mid, None)?.ssrc();
    Some(OutTrack {
        ssrc,
        pt,
        forwarder: TrackForwarder::new(kind == MediaKind::Video, clock_rate, rand::random::<u16>()),
    })
}

/// Every session: RTP mode (packets are forwarded, not frames), and only the codecs the
/// stage uses, H.264 and Opus.
pub fn rtc_config() -> str0m::RtcConfig {
    Rtc::builder()
        .set_rtp_mode(true)
        .clear_codecs()
        .enable_h264(true)
        .enable_opus(true, false)
}

/// Which media kinds an SDP offer carries.
fn offered_kinds(sdp: &str) -> MediaKinds {
    let mut kinds = MediaKinds::NONE;
    for line in sdp.lines() {
        kinds.audio |= line.starts_with("m=audio");
        kinds.video |= line.starts_with("m=video");
    }
    kinds
}

/// A publication the SFU accepted: its SDP answer and the kinds of media it carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Publication {
    pub answer: String,
    pub kinds: MediaKinds,
}

#[cfg(test)]
mod tests {
    //! The engine against str0m clients over an in-memory network: no sockets, no
    //! threads, a simulated clock. Each test is deterministic and runs in milliseconds.

    use std::time::Duration;

    use str0m::change::SdpAnswer;
    use str0m::media::{Direction, MediaKind, Mid};
    use str0m::rtp::RtpWrite;

    use super::*;

    const SFU: &str = "10.0.0.1:5000";

    fn key(user: &str) -> ParticipantKey {
        (MeetingId::new("m"), UserId::new(user))
    }

    /// A client: a str0m peer in RTP mode at its own address.
    struct Client {
        rtc: Rtc,
        addr: SocketAddr,
        mids: Vec<(Mid, MediaKind)>,
        /// RTP received: (kind, sequence number, payload).
        received: Vec<(MediaKind, u16, Vec<u8>)>,
        seq: u64,
        /// A simulcast publisher's layers: RID and next sequence number of each.
        layers: Vec<(&'static str, u64)>,
        /// Notices the SFU gave this client (as a publisher).
        told: Vec<Notice>,
    }

    impl Client {
        fn new(port: u16, now: Instant) -> Client {
            let addr: SocketAddr = format!("10.0.0.2:{port}").parse().expect("addr");
            let mut rtc = rtc_config().build(now);
            rtc.add_local_candidate(Candidate::host(addr, "udp").expect("candidate"));
            Client {
                rtc,
                addr,
                mids: Vec::new(),
                received: Vec::new(),
                seq: 1,
                layers: Vec::new(),
                told: Vec::new(),
            }
        }

        /// A sendonly offer of audio and a simulcast video with these RIDs (lowest
        /// first).
        fn offer_simulcast(
            &mut self,
            rids: &[&'static str],
        ) -> (String, str0m::change::SdpPendingOffer) {
            let mut change = self.rtc.sdp_api();
            let a = change.add_media(MediaKind::Audio, Direction::SendOnly, None, None, None);
            let simulcast = str0m::media::Simulcast {
                send: rids
                    .iter()
                    .map(|r| str0m::media::SimulcastLayer::new(r))
                    .collect(),
                recv: Vec::new(),
            };
            let v = change.add_media(
                MediaKind::Video,
                Direction::SendOnly,
                None,
                None,
                Some(simulcast),
            );
            self.mids = vec![(a, MediaKind::Audio), (v, MediaKind::Video)];
            self.layers = rids.iter().map(|r| (*r, 1)).collect();
            let (offer, pending) = change.apply().expect("an offer");
            (offer.to_sdp_string(), pending)
        }

        /// Sends one packet of simulcast layer `layer`: a keyframe start or a slice, its
        /// payload naming the layer (the byte after the NAL header).
        fn send_layer(&mut self, layer: usize, keyframe: bool, now: Instant) {
            let mid = self.mid(MediaKind::Video);
            let pt = self.pt(mid, Codec::H264);
            let (rid, seq) = self.layers[layer];
            self.layers[layer].1 += 1;
            let payload: Vec<u8> = if keyframe {
                vec![0x67, layer as u8, 0xc0, 0x1f]
            } else {
                vec![0x41, layer as u8, seq as u8]
            };
            let rid = str0m::media::Rid::from(rid);
            let mut api = self.rtc.direct_api();
            if api.stream_tx_by_mid(mid, Some(rid)).is_none() {
                let ssrc = Ssrc::from(0x1000 + layer as u32);
                api.declare_stream_tx(ssrc, None, mid, Some(rid));
            }
            let tx = api
                .stream_tx_by_mid(mid, Some(rid))
                .expect("a layer stream");
            tx.write_rtp(
                RtpWrite::new(pt, seq.into(), (seq * 3000) as u32, now, payload)
                    .marker(true)
                    .nackable(true),
            );
        }

        /// Makes an offer for audio + video in `dir`; returns it with the pending change.
        fn offer(&mut self, dir: Direction) -> (String, str0m::change::SdpPendingOffer) {
            let mut change = self.rtc.sdp_api();
            let a = change.add_media(MediaKind::Audio, dir, None, None, None);
            let v = change.add_media(MediaKind::Video, dir, None, None, None);
            self.mids = vec![(a, MediaKind::Audio), (v, MediaKind::Video)];
            let (offer, pending) = change.apply().expect("an offer");
            (offer.to_sdp_string(), pending)
        }

        fn accept(&mut self, pending: str0m::change::SdpPendingOffer, answer: &str) {
            let answer = SdpAnswer::from_sdp_string(answer).expect("answer parses");
            self.rtc
                .sdp_api()
                .accept_answer(pending, answer)
                .expect("answer accepted");
        }

        /// Sends one video packet: a keyframe start (SPS) or a plain slice.
        fn send_video(&mut self, keyframe: bool, now: Instant) {
            let mid = self.mid(MediaKind::Video);
            let pt = self.pt(mid, Codec::H264);
            let payload: Vec<u8> = if keyframe {
                vec![0x67, 0x42, 0xc0, 0x1f]
            } else {
                vec![0x41, 0x9a, self.seq as u8]
            };
            let seq = self.seq;
            self.seq += 1;
            let mut api = self.rtc.direct_api();
            let tx = api.stream_tx_by_mid(mid, None).expect("a send stream");
            tx.write_rtp(
                RtpWrite::new(pt, seq.into(), (seq * 3000) as u32, now, payload)
                    .marker(true)
                    .nackable(true),
            );
        }

        fn mid(&self, kind: MediaKind) -> Mid {
            self.mids
                .iter()
                .find(|(_, k)| *k == kind)
                .map(|(m, _)| *m)
                .expect("media line")
        }

        fn pt(&self, mid: Mid, codec: Codec) -> str0m::media::Pt {
            let remote = self.rtc.media(mid).expect("media").remote_pts().to_vec();
            self.rtc
                .codec_config()
                .params()
                .iter()
                .find(|p| p.spec().codec == codec && remote.contains(&p.pt()))
                .map(|p| p.pt())
                .expect("a negotiated payload type")
        }

        /// The layer of each video packet received (from a simulcast publisher).
        fn layers_received(&self) -> Vec<u8> {
            self.video_received().iter().map(|p| p[1]).collect()
        }

        fn video_seqs(&self) -> Vec<u16> {
            self.received
                .iter()
                .filter(|r| r.0 == MediaKind::Video)
                .map(|r| r.1)
                .collect()
        }

        fn video_received(&self) -> Vec<&Vec<u8>> {
            self.received
                .iter()
                .filter(|(k, _, _)| *k == MediaKind::Video)
                .map(|(_, _, p)| p)
                .collect()
        }
    }

    /// The engine plus its clients on one simulated network.
    struct Net {
        engine: Engine,
        clients: Vec<Client>,
        now: Instant,
    }

    impl Net {
        fn new() -> Net {
            let sfu: SocketAddr = SFU.parse().expect("addr");
            Net {
                engine: Engine::new(vec![LocalCandidate::udp(sfu)]),
                clients: Vec::new(),
                now: Instant::now(),
            }
        }

        fn client(&mut self) -> usize {
            let port = 6000 + self.clients.len() as u16;
            self.clients.push(Client::new(port, self.now));
            self.clients.len() - 1
        }

        /// Moves every datagram and runs every timer, `ms` milliseconds of simulated time.
        fn run(&mut self, ms: u64) {
            let sfu: SocketAddr = SFU.parse().expect("addr");
            for _ in 0..ms {
                self.now += Duration::from_millis(1);
                let now = self.now;
                // As the SFU's task drives it: only when it says a wake is due.
                if self.engine.next_timeout().is_some_and(|at| at <= now) {
                    self.engine.handle_timeout(now);
                }
                for c in &mut self.clients {
                    let _ = c.rtc.handle_input(Input::Timeout(now));
                }
                for i in 0..self.clients.len() {
                    self.pump(i);
                }
                let notices: Vec<(ParticipantKey, Notice)> = self.engine.drain_notices().collect();
                for ((_, user), notice) in notices {
                    // Clients are named c<index> in the simulcast tests.
                    if let Some(i) = user
                        .as_str()
                        .strip_prefix('c')
                        .and_then(|n| n.parse::<usize>().ok())
                    {
                        let c: &mut Client = &mut self.clients[i];
                        c.told.push(notice);
                    }
                }
                // SFU -> clients. A client is polled after every datagram: in RTP mode
                // str0m holds one received packet until it is polled.
                let out: Vec<Datagram> = self.engine.drain_datagrams().collect();
                for d in out {
                    let Some(i) = self.clients.iter().position(|c| c.addr == d.destination) else {
                        continue;
                    };
                    let Ok(contents) = DatagramRecv::try_from(d.contents.as_slice()) else {
                        continue;
                    };
                    let input = Input::Receive(
                        now,
                        Receive {
                            proto: Protocol::Udp,
                            source: sfu,
                            destination: d.destination,
                            contents,
                        },
                    );
                    let _ = self.clients[i].rtc.handle_input(input);
                    self.pump(i);
                }
            }
        }

        /// Drains client `i`: its datagrams go to the engine, its RTP is recorded.
        fn pump(&mut self, i: usize) {
            let now = self.now;
            loop {
                let c = &mut self.clients[i];
                match c.rtc.poll_output() {
                    Ok(Output::Transmit(t)) => {
                        let from = c.addr;
                        let data: Vec<u8> = t.contents.into();
                        self.engine
                            .handle_datagram(now, Protocol::Udp, from, t.destination, &data);
                    }
                    Ok(Output::Event(Event::RtpPacket(p))) => {
                        let mid = c
                            .rtc
                            .direct_api()
                            .stream_rx(&p.header.ssrc)
                            .map(|s| s.mid());
                        let kind = c
                            .mids
                            .iter()
                            .find(|(m, _)| Some(*m) == mid)
                            .map_or(MediaKind::Audio, |(_, k)| *k);
                        c.received
                            .push((kind, p.header.sequence_number, p.payload.to_vec()));
                    }
                    Ok(Output::Event(_)) => {}
                    Ok(Output::Timeout(_)) | Err(_) => break,
                }
            }
        }

        fn publish(&mut self, i: usize, user: &str) {
            let (offer, pending) = self.clients[i].offer(Direction::SendOnly);
            let answer = self
                .engine
                .publish(key(user), &offer, &[], MediaKinds::BOTH, self.now)
                .expect("publish answered")
                .answer;
            self.clients[i].accept(pending, &answer);
        }

        fn subscribe(&mut self, i: usize, user: &str, to: &str) {
            let (offer, pending) = self.clients[i].offer(Direction::RecvOnly);
            let answer = self
                .engine
                .subscribe(key(user), key(to), &offer, self.now)
                .expect("subscribe answered");
            self.clients[i].accept(pending, &answer);
        }
    }

    /// A simulcast publisher `c0` (q, h, f) and `viewers` viewers `c1`, `c2`, ...,
    /// connected.
    fn simulcast_stage(viewers: usize) -> Net {
        let mut net = Net::new();
        let host = net.client();
        let (offer, pending) = net.clients[host].offer_simulcast(&["q", "h", "f"]);
        let answer = net
            .engine
            .publish(key("c0"), &offer, &[], MediaKinds::BOTH, net.now)
            .expect("a simulcast publish is answered")
            .answer;
        assert!(answer.contains("a=simulcast:recv q;h;f"), "{answer}");
        net.clients[host].accept(pending, &answer);
        for v in 1..=viewers {
            let i = net.client();
            net.subscribe(i, &format!("c{v}"), "c0");
        }
        net.run(300);
        (net.clients.iter()).for_each(|c| assert!(c.rtc.is_connected()));
        net
    }

    /// Viewer c1 shows publisher c0's video at this size (`None`: hidden).
    fn show(net: &mut Net, size: Option<(u32, u32)>) {
        let tile = size.map(|(width, height)| Tile { width, height });
        let now = net.now;
        net.engine
            .set_tiles(&key("c1"), [(UserId::new("c0"), tile)], now);
    }

    /// Sends `ms` of every layer of `layers` from publisher 0: a packet per layer every
    /// 10 ms, a keyframe of every layer every `gop_ms`.
    fn play(net: &mut Net, layers: &[usize], ms: u64, gop_ms: u64) {
        for step in 0..ms / 10 {
            let now = net.now;
            for &l in layers {
                net.clients[0].send_layer(l, (step * 10) % gop_ms == 0, now);
            }
            net.run(10);
        }
    }

    /// Like [`play`], without keyframes.
    fn slices(net: &mut Net, layers: &[usize], ms: u64) {
        for _ in 0..ms / 10 {
            let now = net.now;
            for &l in layers {
                net.clients[0].send_layer(l, false, now);
            }
            net.run(10);
        }
    }

    #[test]
    fn a_simulcast_viewer_gets_one_layer_at_a_time_and_switches_at_a_keyframe_with_one_numbering() {
        let mut net = simulcast_stage(1);
        // A small tile: q fills it.
        show(&mut net, Some((320, 180)));
        play(&mut net, &[0, 1, 2], 600, 200);
        let got = net.clients[1].layers_received();
        assert!(!got.is_empty(), "the small tile gets video");
        assert!(
            got.iter().all(|l| *l == 0),
            "only the lowest layer: {got:?}"
        );
        // A larger tile: h, from its next keyframe on, and never two layers at once.
        show(&mut net, Some((640, 360)));
        let before = got.len();
        play(&mut net, &[0, 1, 2], 1_000, 200);
        let got = net.clients[1].layers_received();
        let after = &got[before..];
        let first_h = after.iter().position(|l| *l == 1).expect("switched to h");
        assert!(after[first_h..].iter().all(|l| *l == 1), "{after:?}");
        assert_eq!(
            net.clients[1].video_received()[before + first_h][0] & 0x1f,
            7,
            "at a keyframe"
        );
        let seqs = net.clients[1].video_seqs();
        assert!(
            seqs.windows(2).all(|w| w[1] == w[0].wrapping_add(1)),
            "one unbroken numbering across the switch: {seqs:?}"
        );
    }

    #[test]
    fn a_cut_on_a_congested_link_stops_the_old_layer_and_asks_for_the_new_keyframe_twice() {
        let mut net = simulcast_stage(1);
        show(&mut net, Some((1280, 720)));
        play(&mut net, &[0, 1, 2], 600, 200);
        assert_eq!(net.clients[1].layers_received().last(), Some(&2), "on f");
        // The viewer's link reports a queue growing fast (back to back: the session's own
        // reports, of a link with no queue, come between them otherwise).
        let sub = net.engine.subscriptions[&key("c1")][&key("c0")];
        let asked = net.engine.stats().keyframe_requests;
        for ms in [2, 60, 130, 210] {
            let report = LinkReport {
                rtt: Some(Duration::from_millis(ms)),
                loss: Some(0.0),
                ..LinkReport::default()
            };
            net.engine.on_link_report(sub, report, net.now);
        }
        net.run(10);
        assert_eq!(
            net.engine.stats().keyframe_requests,
            asked + 1,
            "the cut asks for a keyframe of q"
        );
        // Until q's keyframe comes, nothing: f stopped at once.
        let before = net.clients[1].layers_received().len();
        slices(&mut net, &[0, 2], 100);
        assert_eq!(net.clients[1].layers_received().len(), before);
        // q's keyframe: the switch. A second request of it follows, a little later.
        let now = net.now;
        net.clients[0].send_layer(0, true, now);
        net.run(10);
        assert_eq!(net.clients[1].layers_received().last(), Some(&0));
        let asked = net.engine.stats().keyframe_requests;
        slices(
            &mut net,
            &[0],
            KEYFRAME_AGAIN_AFTER_CUT.as_millis() as u64 - 50,
        );
        assert_eq!(net.engine.stats().keyframe_requests, asked, "not at once");
        slices(&mut net, &[0], 100);
        assert_eq!(net.engine.stats().keyframe_requests, asked + 1, "once more");
        slices(&mut net, &[0], 1_000);
        assert_eq!(net.engine.stats().keyframe_requests, asked + 1, "only once");
    }

    #[test]
    fn a_hidden_tile_gets_no_video_but_its_sound_and_nobody_taking_a_layer_pauses_it() {
        let mut net = simulcast_stage(1);
        show(&mut net, None);
        play(&mut net, &[0, 1, 2], 500, 200);
        assert!(
            net.clients[1].video_received().is_empty(),
            "hidden: no video"
        );
        // Only the lowest layer runs now: the others are the publisher's to pause.
        assert_eq!(
            net.clients[0].told.last(),
            Some(&Notice::Layers(vec!["q".into()]))
        );
        // Shown small again: q plays at once (it never paused).
        show(&mut net, Some((200, 100)));
        play(&mut net, &[0], 500, 200);
        assert!(!net.clients[1].video_received().is_empty());
    }

    #[test]
    fn a_layer_that_stops_moves_its_viewers_down_and_an_undeclared_rid_reaches_nobody() {
        let mut net = simulcast_stage(1);
        show(&mut net, Some((640, 360)));
        play(&mut net, &[0, 1], 800, 200);
        assert_eq!(net.clients[1].layers_received().last(), Some(&1), "on h");
        // h stops (the publisher's CPU, say) without anyone pausing it: back to q.
        let before = net.clients[1].video_received().len();
        play(&mut net, &[0], 2_500, 200);
        let got = net.clients[1].layers_received();
        assert!(got[before..].contains(&0), "moved down to q: {got:?}");
        // Packets with a RID the offer never declared go to no one (str0m or the engine
        // drops them), and the layers declared play on.
        net.clients[0].layers.push(("zz", 1));
        let seen = net.clients[1].video_received().len();
        for _ in 0..10 {
            let now = net.now;
            net.clients[0].send_layer(3, true, now);
            net.run(10);
        }
        assert_eq!(net.clients[1].video_received().len(), seen);
        play(&mut net, &[0], 300, 100);
        assert!(net.clients[1].video_received().len() > seen);
    }

    /// A publisher and a viewer, connected; the viewer has had its first keyframe.
    fn stage() -> (Net, usize, usize) {
        let mut net = Net::new();
        let host = net.client();
        let viewer = net.client();
        net.publish(host, "host");
        net.subscribe(viewer, "viewer", "host");
        net.run(300);
        assert!(net.clients[host].rtc.is_connected(), "publisher connected");
        assert!(net.clients[viewer].rtc.is_connected(), "viewer connected");
        (net, host, viewer)
    }

    #[test]
    fn video_reaches_the_viewer_from_the_first_keyframe_on_with_its_own_numbering() {
        let (mut net, host, viewer) = stage();
        let now = net.now;
        net.clients[host].send_video(false, now); // before any keyframe: held back
        net.run(20);
        assert!(net.clients[viewer].video_received().is_empty());
        assert!(
            net.engine.stats().keyframe_requests >= 1,
            "asked for a keyframe"
        );
        let now = net.now;
        net.clients[host].send_video(true, now);
        net.clients[host].send_video(false, now);
        net.run(20);
        let got = net.clients[viewer].video_received();
        assert_eq!(got.len(), 2, "the keyframe and what follows it");
        assert_eq!(got[0][0] & 0x1f, 7, "starts with the SPS");
        let seqs: Vec<u16> = net.clients[viewer]
            .received
            .iter()
            .filter(|r| r.0 == MediaKind::Video)
            .map(|r| r.1)
            .collect();
        assert_eq!(
            seqs[1],
            seqs[0].wrapping_add(1),
            "consecutive on the viewer's stream"
        );
    }

    #[test]
    fn a_subscription_ended_or_asked_again_while_being_set_up_is_void() {
        let (mut net, _host, _viewer) = stage();
        let before = net.engine.counts();
        let offer = |net: &mut Net| {
            let c = net.client();
            net.clients[c].offer(Direction::RecvOnly).0
        };
        let now = net.now;
        // Ended before it was finished: its session is dropped unused.
        let o = offer(&mut net);
        let (ticket, setup) = net
            .engine
            .plan_subscription(key("late"), key("host"), o, now);
        let built = setup.build();
        net.engine.unsubscribe(&key("late"), &key("host"));
        let got = net
            .engine
            .finish_subscription(ticket, key("late"), key("host"), built, now);
        assert_eq!(got, Err(SfuError::Superseded));
        assert_eq!(net.engine.counts(), before, "nothing was added");
        // Asked for twice: only the latest counts.
        let o = offer(&mut net);
        let (first, setup1) = net
            .engine
            .plan_subscription(key("late"), key("host"), o, now);
        let o = offer(&mut net);
        let (second, setup2) = net
            .engine
            .plan_subscription(key("late"), key("host"), o, now);
        let old =
            net.engine
                .finish_subscription(first, key("late"), key("host"), setup1.build(), now);
        assert_eq!(old, Err(SfuError::Superseded));
        let new =
            net.engine
                .finish_subscription(second, key("late"), key("host"), setup2.build(), now);
        assert!(new.is_ok_and(|answer| answer.contains("a=sendonly")));
        assert_eq!(net.engine.counts(), (before.0, before.1 + 1));
        // The subscriber leaving, or the publisher leaving the stage, voids one too.
        for end in [true, false] {
            let o = offer(&mut net);
            let (ticket, setup) = net
                .engine
                .plan_subscription(key("other"), key("host"), o, now);
            if end {
                net.engine.drop_participant(&key("other"));
            } else {
                net.engine.end_publisher(&key("host"));
            }
            let got = net.engine.finish_subscription(
                ticket,
                key("other"),
                key("host"),
                setup.build(),
                now,
            );
            assert_eq!(got, Err(SfuError::Superseded));
        }
        // A bad offer is refused when built, and leaves nothing planned behind.
        let (ticket, setup) =
            net.engine
                .plan_subscription(key("bad"), key("host"), "v=0\r\nnonsense".into(), now);
        let got =
            net.engine
                .finish_subscription(ticket, key("bad"), key("host"), setup.build(), now);
        assert!(matches!(got, Err(SfuError::BadSdp(_))));
        assert!(net.engine.planned.is_empty());
    }

    #[test]
    fn a_deferred_keyframe_request_goes_out_when_it_comes_due() {
        let (mut net, host, _viewer) = stage();
        let publication = net.engine.publications[&key("host")];
        let now = net.now;
        net.clients[host].send_video(true, now);
        net.run(5);
        net.engine.request_keyframe(publication, 0, net.now);
        let first = net.now;
        let sent = net.engine.stats().keyframe_requests;
        net.clients[host].send_video(true, first);
        net.run(5);
        // Within the throttle's interval: deferred to its end, and the engine must wake
        // for it (driven, as the SFU's task does, only when it says a wake is due).
        net.engine.request_keyframe(publication, 0, net.now);
        assert_eq!(net.engine.stats().keyframe_requests, sent, "deferred");
        let due = first + crate::sfu::forward::KEYFRAME_MIN_INTERVAL;
        assert!(net.engine.next_timeout().is_some_and(|at| at <= due));
        let ms_to_due = due.duration_since(net.now).as_millis() as u64;
        net.run(ms_to_due);
        assert_eq!(
            net.engine.stats().keyframe_requests,
            sent + 1,
            "sent when due"
        );
    }

    #[test]
    fn a_publisher_off_stage_is_not_forwarded_even_if_it_keeps_sending() {
        let (mut net, host, viewer) = stage();
        let now = net.now;
        net.clients[host].send_video(true, now);
        net.run(20);
        assert_eq!(net.clients[viewer].video_received().len(), 1);
        // Kicked: the room ends the publication. The client ignores it and keeps sending.
        net.engine.unpublish(&key("host"));
        let dropped = net.engine.stats().dropped;
        let forwarded = net.engine.stats().forwarded;
        for _ in 0..10 {
            let now = net.now;
            net.clients[host].send_video(true, now);
            net.run(5);
        }
        assert_eq!(net.clients[viewer].video_received().len(), 1, "nothing new");
        assert_eq!(net.engine.stats().forwarded, forwarded);
        assert!(
            net.engine.stats().dropped > dropped,
            "its datagrams are dropped"
        );
        assert!(!net.engine.is_publishing(&key("host")));
    }

    #[test]
    fn answers_offer_udp_and_passive_tcp_candidates_and_count_sessions_by_transport() {
        let now = Instant::now();
        let sfu: SocketAddr = SFU.parse().expect("addr");
        let mut engine = Engine::new(vec![LocalCandidate::udp(sfu), LocalCandidate::tcp(sfu)]);
        let mut client = Client::new(6000, now);
        let (offer, _pending) = client.offer(Direction::SendOnly);
        let answer = engine
            .publish(key("host"), &offer, &[], MediaKinds::BOTH, now)
            .expect("an answer")
            .answer;
        let candidates: Vec<&str> = answer
            .lines()
            .filter(|l| l.starts_with("a=candidate"))
            .collect();
        assert!(
            candidates
                .iter()
                .any(|c| c.contains(" udp ") && c.contains("10.0.0.1 5000")),
            "{candidates:?}"
        );
        assert!(
            candidates
                .iter()
                .any(|c| c.contains(" tcp ") && c.contains("tcptype passive")),
            "{candidates:?}"
        );
        // Nothing has travelled yet, and junk is refused without a session noticing.
        assert_eq!(engine.transports(), (0, 0));
        let stranger: SocketAddr = "10.0.0.9:7000".parse().expect("addr");
        assert!(!engine.handle_datagram(now, Protocol::Tcp, stranger, sfu, &[0x17, 1, 2, 3]));
        assert_eq!(engine.transports(), (0, 0));
        assert_eq!(engine.counts(), (1, 0));
    }

    #[test]
    fn peers_are_offered_only_addresses_they_can_use() {
        let offer = |candidates: &[&str]| {
            candidates
                .iter()
                .map(|a| format!("a=candidate:1 1 udp 2130706431 {a} 5000 typ host\r\n"))
                .collect::<String>()
        };
        let ip = |s: &str| s.parse::<std::net::IpAddr>().expect("ip");
        let remote = PeerReach::of(&offer(&["192.168.1.2"]));
        assert!(remote.may_use(ip("10.0.0.1")));
        assert!(
            !remote.may_use(ip("127.0.0.1")),
            "loopback is of no use to another host"
        );
        assert!(
            !remote.may_use(ip("fd00::1")),
            "nor IPv6 to a peer without it"
        );
        let local = PeerReach::of(&offer(&["192.168.1.2", "127.0.0.1", "fd00::2"]));
        assert!(local.may_use(ip("127.0.0.1")) && local.may_use(ip("fd00::1")));
        // No candidates, or a name: everything.
        assert!(PeerReach::of("v=0\r\n").may_use(ip("127.0.0.1")));
        assert!(PeerReach::of(&offer(&["1f2e.local"])).may_use(ip("::1")));
    }

    #[test]
    fn a_live_stage_travels_over_udp_and_is_counted_so() {
        let (mut net, _host, _viewer) = stage();
        net.run(20);
        assert_eq!(net.engine.transports(), (2, 0));
        net.engine.end_publisher(&key("host"));
        net.run(20);
        assert_eq!(net.engine.transports(), (0, 0));
    }

    #[test]
    fn leaving_the_stage_closes_the_viewers_sessions() {
        let (mut net, _host, viewer) = stage();
        assert_eq!(net.engine.counts(), (1, 1));
        net.engine.end_publisher(&key("host"));
        net.run(50);
        assert_eq!(net.engine.counts(), (0, 0));
        assert!(
            !net.clients[viewer].rtc.is_connected() || !net.clients[viewer].rtc.is_alive(),
            "the viewer was told (DTLS close)"
        );
    }

    #[test]
    fn bad_offers_are_refused_and_change_nothing() {
        let mut net = Net::new();
        let now = net.now;
        let e = net
            .engine
            .publish(key("a"), "not sdp", &[], MediaKinds::BOTH, now)
            .expect_err("garbage");
        assert!(matches!(e, SfuError::BadSdp(_)));
        let c = net.client();
        let (offer, _) = net.clients[c].offer(Direction::SendOnly);
        let e = net
            .engine
            .publish(key("a"), &offer, &[], MediaKinds::new(true, false), now)
            .expect_err("video not allowed");
        assert!(matches!(e, SfuError::NotAllowed(_)));
        assert_eq!(net.engine.counts(), (0, 0));
    }

    /// A peer that offers `sendrecv` gets the direction its call means: a publication
    /// only receives, a subscription only sends (and the peer's stack takes the answer).
    #[test]
    fn a_sendrecv_offer_is_answered_with_the_direction_the_call_means() {
        let directions = |sdp: &str| -> Vec<String> {
            sdp.lines()
                .map(str::trim_end)
                .filter(|l| ["a=sendrecv", "a=sendonly", "a=recvonly", "a=inactive"].contains(l))
                .map(str::to_owned)
                .collect()
        };
        let mut net = Net::new();
        let now = net.now;
        let publisher = net.client();
        let (offer, pending) = net.clients[publisher].offer(Direction::SendRecv);
        assert_eq!(directions(&offer), ["a=sendrecv", "a=sendrecv"]);
        let published = net
            .engine
            .publish(key("host"), &offer, &[], MediaKinds::BOTH, now)
            .expect("answered");
        assert_eq!(directions(&published.answer), ["a=recvonly", "a=recvonly"]);
        net.clients[publisher].accept(pending, &published.answer);
        let viewer = net.client();
        let (offer, pending) = net.clients[viewer].offer(Direction::SendRecv);
        let answer = net
            .engine
            .subscribe(key("viewer"), key("host"), &offer, now)
            .expect("answered");
        assert_eq!(directions(&answer), ["a=sendonly", "a=sendonly"]);
        net.clients[viewer].accept(pending, &answer);
        // Offers that say what they mean are read as they are.
        let other = net.client();
        let (offer, _) = net.clients[other].offer(Direction::RecvOnly);
        assert!(matches!(Side::Subscription.read(&offer), Cow::Borrowed(_)));
    }

    /// Found by fuzzing: a recvonly offer whose audio line also maps the video line's
    /// payload type made str0m panic, which ended the SFU task for every meeting.
    #[test]
    fn an_offer_the_stack_cannot_negotiate_is_refused_and_the_engine_lives_on() {
        let mut net = Net::new();
        let c = net.client();
        let (offer, _) = net.clients[c].offer(Direction::RecvOnly);
        let h264 = offer
            .lines()
            .find(|l| l.starts_with("a=rtpmap:") && l.contains("H264"))
            .expect("an H.264 payload type")
            .to_owned();
        let (audio, video) = offer.split_once("m=video").expect("a video line");
        let bad = format!("{audio}{h264}\r\nm=video{video}");
        let now = net.now;
        let e = net
            .engine
            .subscribe(key("viewer"), key("host"), &bad, now)
            .expect_err("refused");
        assert!(matches!(e, SfuError::BadSdp(_)), "{e}");
        assert_eq!(net.engine.counts(), (0, 0));
        // The engine still serves: a good offer is answered.
        let (offer, _) = net.clients[c].offer(Direction::RecvOnly);
        net.engine
            .subscribe(key("viewer"), key("host"), &offer, now)
            .expect("answered");
        assert_eq!(net.engine.counts(), (0, 1));
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(64))]

        /// Whatever arrives on the socket, from a stranger or from a connected peer's
        /// address, the engine neither panics nor disturbs the live session.
        #[test]
        fn garbage_datagrams_hurt_nobody(
            packets in proptest::collection::vec(
                (proptest::collection::vec(proptest::prelude::any::<u8>(), 0..1500), proptest::prelude::any::<bool>()),
                1..40,
            )
        ) {
            let (mut net, host, viewer) = stage();
            let stranger: SocketAddr = "10.0.0.9:7000".parse().expect("addr");
            for (bytes, from_peer) in &packets {
                let from = if *from_peer { net.clients[host].addr } else { stranger };
                let now = net.now;
                let sfu: SocketAddr = SFU.parse().expect("addr");
                net.engine.handle_datagram(now, Protocol::Udp, from, sfu, bytes);
            }
            let now = net.now;
            net.clients[host].send_video(true, now);
            net.run(20);
            proptest::prop_assert_eq!(net.engine.counts(), (1, 1));
            proptest::prop_assert!(!net.clients[viewer].video_received().is_empty());
        }

        /// A cut or corrupted offer is refused as bad SDP (or, if it still parses, answered);
        /// never a panic, and a refusal leaves nothing behind.
        #[test]
        fn mangled_offers_are_refused_cleanly(cut in 0usize..4000, flip in 0usize..4000, byte in proptest::prelude::any::<u8>()) {
            let mut net = Net::new();
            let c = net.client();
            let (offer, _) = net.clients[c].offer(Direction::SendOnly);
            let mut bytes = offer.into_bytes();
            bytes.truncate(cut.min(bytes.len()));
            if let Some(b) = bytes.get_mut(flip) {
                *b = byte;
            }
            let text = String::from_utf8_lossy(&bytes).into_owned();
            let now = net.now;
            match net.engine.publish(key("p"), &text, &[], MediaKinds::BOTH, now) {
                Ok(_) => proptest::prop_assert_eq!(net.engine.counts(), (1, 0)),
                Err(e) => {
                    proptest::prop_assert!(matches!(e, SfuError::BadSdp(_) | SfuError::NotAllowed(_)));
                    proptest::prop_assert_eq!(net.engine.counts(), (0, 0));
                }
            }
        }
    }
}
