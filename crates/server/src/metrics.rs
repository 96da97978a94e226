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

/// Every metric the server exports.
#[derive(Debug)]
pub struct Metrics {
    pub connections: Gauge,
    pub rooms: Gauge,
    pub participants: Gauge,
    pub calls: Family<CallLabels, Counter>,
    pub events: Counter,
    pub bad_frames: Counter,
    pub slow_clients: Counter,
    pub http_requests: Family<HttpLabels, Counter>,
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
            "slow_clients",
            "Connections dropped for not reading their events",
            slow_clients.clone(),
        );
        registry.register(
            "http_requests",
            "Admin API requests by method and status",
            http_requests.clone(),
        );
        Self {
            connections,
            rooms,
            participants,
            calls,
            events,
            bad_frames,
            slow_clients,
            http_requests,
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
