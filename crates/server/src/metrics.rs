//! Prometheus metrics, rendered as text at `/metrics`.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CallLabels {
    pub call: String,
    /// `ok` or the error code.
    pub code: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct HttpLabels {
    pub method: String,
    pub status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RefusedLabels {
    /// `server_full` or `source_full`.
    pub reason: &'static str,
}

/// Every metric the server exports.
#[derive(Debug)]
pub struct Metrics {
    pub connections: Gauge,
    pub rooms: Gauge,
    pub participants: Gauge,
    pub calls: Family<CallLabels, Counter>,
    pub events: Counter,
    pub bad_frames: Counter,
    pub rate_limited_frames: Counter,
    pub closed_bad_input: Counter,
    pub refused_arrivals: Counter,
    pub slow_clients: Counter,
    pub http_requests: Family<HttpLabels, Counter>,
    pub http_connections: Gauge,
    pub http_refused: Family<RefusedLabels, Counter>,
    pub admin_backoffs: Counter,
    pub sfu_received: Counter,
    pub sfu_forwarded: Counter,
    pub sfu_dropped: Counter,
    pub sfu_keyframe_requests: Counter,
    pub sfu_held_audio: Counter,
    pub sfu_publications: Gauge,
    pub sfu_subscriptions: Gauge,
    pub sfu_tcp_connections: Gauge,
    pub sfu_sessions_over_udp: Gauge,
    pub sfu_sessions_over_tcp: Gauge,
    /// Meetings whose home lock this node holds (a cluster member; 0 otherwise).
    pub cluster_homes: Gauge,
    /// Home locks this node lost (taken by another node, or run out by its clock).
    pub cluster_homes_lost: Counter,
    registry: Registry,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("onstage");
        let connections = Gauge::default();
        let rooms = Gauge::default();
        let participants = Gauge::default();
        let calls = Family::<CallLabels, Counter>::default();
        let events = Counter::default();
        let bad_frames = Counter::default();
        let rate_limited_frames = Counter::default();
        let closed_bad_input = Counter::default();
        let refused_arrivals = Counter::default();
        let slow_clients = Counter::default();
        let http_requests = Family::<HttpLabels, Counter>::default();
        registry.register(
            "signal_connections",
            "Open signaling connections",
            connections.clone(),
        );
        registry.register("rooms", "Live meetings (rooms in memory)", rooms.clone());
        registry.register(
            "participants",
            "Participants in live rooms, including those inside their grace period",
            participants.clone(),
        );
        registry.register(
            "calls",
            "Signaling calls by name and outcome",
            calls.clone(),
        );
        registry.register("room_events", "Room events produced", events.clone());
        registry.register(
            "bad_frames",
            "Signaling frames refused as bad_request",
            bad_frames.clone(),
        );
        registry.register(
            "signal_rate_limited_frames",
            "Signaling frames past a connection's frame or byte limit (answered or dropped)",
            rate_limited_frames.clone(),
        );
        registry.register(
            "signal_closed_bad_input",
            "Signaling connections closed with goodbye bad_input",
            closed_bad_input.clone(),
        );
        registry.register(
            "signal_refused_arrivals",
            "Signaling connections refused with rate_limited: the participant's broadcast budget was spent",
            refused_arrivals.clone(),
        );
        registry.register(
            "slow_clients",
            "Connections dropped for not reading their events",
            slow_clients.clone(),
        );
        registry.register(
            "http_requests",
            "Admin API requests by method and status",
            http_requests.clone(),
        );
        let cluster_homes = Gauge::default();
        let cluster_homes_lost = Counter::default();
        registry.register(
            "cluster_homes",
            "Meetings whose home lock this node holds (cluster members)",
            cluster_homes.clone(),
        );
        registry.register(
            "cluster_homes_lost",
            "Home locks this node lost: taken by another node or run out by its clock",
            cluster_homes_lost.clone(),
        );
        let http_connections = Gauge::default();
        let http_refused = Family::<RefusedLabels, Counter>::default();
        let admin_backoffs = Counter::default();
        registry.register(
            "http_connections",
            "Open HTTP connections, WebSockets included",
            http_connections.clone(),
        );
        registry.register(
            "http_refused_connections",
            "Connections refused with 503 (or closed) over a connection cap, by reason",
            http_refused.clone(),
        );
        registry.register(
            "admin_backoffs",
            "Admin requests answered 429 because their source failed the key too often",
            admin_backoffs.clone(),
        );
        let sfu_received = Counter::default();
        let sfu_forwarded = Counter::default();
        let sfu_dropped = Counter::default();
        let sfu_keyframe_requests = Counter::default();
        let sfu_held_audio = Counter::default();
        let sfu_publications = Gauge::default();
        let sfu_subscriptions = Gauge::default();
        let sfu_tcp_connections = Gauge::default();
        let sfu_sessions_over_udp = Gauge::default();
        let sfu_sessions_over_tcp = Gauge::default();
        registry.register(
            "sfu_received_packets",
            "RTP packets received from publishers",
            sfu_received.clone(),
        );
        registry.register(
            "sfu_forwarded_packets",
            "RTP packets forwarded to subscribers (one per subscriber)",
            sfu_forwarded.clone(),
        );
        registry.register(
            "sfu_dropped_datagrams",
            "Datagrams no live media session accepted (e.g. from a participant off stage)",
            sfu_dropped.clone(),
        );
        registry.register(
            "sfu_keyframe_requests",
            "Keyframe requests sent to publishers",
            sfu_keyframe_requests.clone(),
        );
        registry.register(
            "sfu_held_audio_packets",
            "Audio packets not forwarded because a host muted their publisher",
            sfu_held_audio.clone(),
        );
        registry.register(
            "sfu_publications",
            "Participants publishing media",
            sfu_publications.clone(),
        );
        registry.register(
            "sfu_subscriptions",
            "Media subscriptions (one viewer of one publisher)",
            sfu_subscriptions.clone(),
        );
        registry.register(
            "sfu_tcp_connections",
            "Open ICE-TCP media connections",
            sfu_tcp_connections.clone(),
        );
        registry.register(
            "sfu_sessions_over_udp",
            "Media sessions whose DTLS and media travel over UDP",
            sfu_sessions_over_udp.clone(),
        );
        registry.register(
            "sfu_sessions_over_tcp",
            "Media sessions whose DTLS and media travel over TCP (ICE-TCP)",
            sfu_sessions_over_tcp.clone(),
        );
        Self {
            sfu_received,
            sfu_forwarded,
            sfu_dropped,
            sfu_keyframe_requests,
            sfu_held_audio,
            sfu_publications,
            sfu_subscriptions,
            sfu_tcp_connections,
            sfu_sessions_over_udp,
            sfu_sessions_over_tcp,
            connections,
            rooms,
            participants,
            calls,
            events,
            bad_frames,
            rate_limited_frames,
            closed_bad_input,
            refused_arrivals,
            slow_clients,
            http_requests,
            http_connections,
            http_refused,
            admin_backoffs,
            cluster_homes,
            cluster_homes_lost,
            registry,
        }
    }

    /// The Prometheus text exposition of every metric.
    pub fn render(&self) -> String {
        let mut out = String::new();
        if let Err(e) = prometheus_client::encoding::text::encode(&mut out, &self.registry) {
            tracing::error!(error = %e, "cannot encode metrics");
        }
        out
    }
}
