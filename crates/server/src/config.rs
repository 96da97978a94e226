//! Server settings. [`ServerConfig::new`] gives the documented defaults; change fields
//! before calling [`crate::start`].

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use url::Url;

pub use crate::tls::TlsConfig;

/// Everything [`crate::start`] needs to run a server.
///
/// Built with [`ServerConfig::new`] and then adjusted field by field:
///
/// ```no_run
/// # use std::time::Duration;
/// let mut config = onstage_server::ServerConfig::new(
///     "127.0.0.1:0".parse().unwrap(),
///     "/tmp/onstage-data".into(),
/// );
/// config.grace = Duration::from_secs(5);
/// ```
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ServerConfig {
    /// Where the HTTP server (REST + WebSocket signaling) listens. Port 0 picks a free port.
    pub listen: SocketAddr,
    /// Directory for the SQLite database and the `admin_key` / `jwt_secret` files.
    /// Created if missing.
    pub data_dir: PathBuf,
    /// The admin bearer key. `None`: read `admin_key` from the data dir, generating and
    /// storing one first if there is none.
    pub admin_key: Option<String>,
    /// How long a dropped participant keeps its stage status and queue place (default 30 s).
    pub grace: Duration,
    /// Lifetime of participant tokens (default 24 h).
    pub token_ttl: Duration,
    /// `max_on_stage` of meetings created without one (default 25).
    pub default_max_on_stage: u32,
    /// The participants a meeting may hold before role links let nobody new in (default
    /// 10 000): a guest joining past it is refused with `meeting_full` and nothing is made.
    /// One leaked link thus cannot fill the database. Participants the admin API adds are
    /// the operator's own and are not refused (they do count).
    pub max_participants: usize,
    /// Signaling rate limit per connection: the bucket size (default 50 calls).
    pub rate_limit_burst: u32,
    /// Signaling rate limit per connection: refill rate in calls per second (default 20).
    pub rate_limit_per_sec: f64,
    /// Signaling byte limit per connection: bytes that may arrive at once (default 1 MiB,
    /// room for 64 frames of the largest size the protocol allows, an SDP offer of 16 KiB).
    /// Every frame counts, control and junk frames included.
    pub rate_limit_bytes_burst: usize,
    /// Signaling byte limit per connection: refill in bytes per second (default 256 KiB,
    /// 16 of the largest frames a second; a client joining a full stage sends one offer per
    /// speaker, a few KiB each).
    pub rate_limit_bytes_per_sec: usize,
    /// Refused frames in a row (binary, oversized, unparsable, unknown calls, or past the
    /// rate limit) after which the connection is closed with `goodbye: bad_input`
    /// (default 16). Past the rate limit only the first frame of a run is answered.
    pub bad_frames_before_close: u32,
    /// Changes told to the whole meeting (stage changes, media state) one participant may
    /// cause at once (default 20). Beyond it, such calls are refused with `rate_limited`
    /// and change nothing. See [`onstage_room::BroadcastBudget`].
    pub broadcast_burst: u32,
    /// One more such change is allowed every this long (default 1 s): one participant of
    /// a meeting of N makes the server send at most about N messages a second this way.
    pub broadcast_refill: Duration,
    /// How often the server pings an idle signaling connection (default 15 s).
    pub ping_interval: Duration,
    /// A signaling connection with no traffic at all for this long is dropped (default 45 s).
    pub idle_timeout: Duration,
    /// Messages that may wait for one slow connection before it is dropped with
    /// `goodbye: too_slow` (default 256).
    pub outbound_queue: usize,
    /// Largest REST request body, in bytes (default 64 KiB). Larger bodies get 413.
    pub max_body_bytes: usize,
    /// How long a graceful shutdown waits for connections to finish (default 5 s).
    pub shutdown_timeout: Duration,
    /// Where the SFU's UDP socket binds (default: the listen IP, a free port). `None` runs
    /// signaling only.
    pub media_udp: Option<SocketAddr>,
    /// Public IPs announced in place of the interface addresses, for a server behind 1:1
    /// NAT (a cloud VM): `--media-ip`. Empty (the default): the bound IP, or for a wildcard
    /// bind, every usable interface address.
    pub media_advertise: Vec<IpAddr>,
    /// Also accept media over TCP (ICE-TCP) at the media port, for guests whose network
    /// blocks UDP (default: on).
    pub media_tcp: bool,
    /// A TURN relay (coturn) for guests that reach nothing else; each participant gets its
    /// own credentials in the welcome. `None` (the default): no relay.
    pub turn: Option<crate::turn::TurnConfig>,
    /// Serve https and wss instead of http and ws (default `None`: plain). See
    /// [`TlsConfig`].
    pub tls: Option<TlsConfig>,
    /// How long a client may take over its TLS handshake before the connection is closed
    /// (default 10 s). Only that connection is affected.
    pub tls_handshake_timeout: Duration,
    /// The server's base URL as invitees reach it: the `server=` of the invite links the
    /// admin API hands out. `None` (the default): the listen address as a URL (loopback for
    /// a wildcard bind), `https` with TLS. With TLS it must be `https`.
    pub public_url: Option<Url>,
    /// How long a client may take to send a request's head, counted from when its
    /// connection starts waiting for one: a new connection's first request and each
    /// keep-alive one, so this is also the idle timeout between requests (default 10 s).
    /// Half-open requests are closed by it.
    pub http_header_timeout: Duration,
    /// How long a request, its body included, may take to be answered; later gets 408
    /// (default 30 s). A WebSocket is past it once upgraded.
    pub http_request_timeout: Duration,
    /// Open HTTP connections at most, WebSockets included; more get a fast 503. `None`
    /// (the default): three quarters of the open-files limit left after the SFU's share,
    /// which the server raises to the system's ceiling at start.
    pub max_connections: Option<usize>,
    /// Open HTTP connections from one source (an IPv4 address or an IPv6 /64) at most
    /// (default 256: a whole office behind one NAT can still join one meeting).
    pub max_connections_per_source: usize,
    /// Hold loopback connections (this machine: the desktop app, local bots, load tests)
    /// to the per-source cap too (default false).
    pub limit_loopback: bool,
    /// Membership of a cluster of nodes on Redis (`--redis`). `None` (the default): this
    /// server is a node on its own and nothing is asked of Redis.
    pub cluster: Option<ClusterSettings>,
}

/// How a server joins a cluster: it registers itself (with its public URL and load) and
/// holds the home lock of every meeting it runs. See `onstage_cluster`.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ClusterSettings {
    /// `redis://HOST:PORT`.
    pub redis_url: String,
    pub node_id: onstage_cluster::NodeId,
    /// A registration lives this long unless refreshed, three times within it (default
    /// 6 s): a dead node leaves the registry at most this long after its last refresh.
    pub node_ttl: Duration,
    /// A meeting's home lock lives this long unless renewed, three times within it
    /// (default 10 s): how long a dead home holds its meetings.
    pub lease_ttl: Duration,
}

impl ClusterSettings {
    /// The defaults documented on each field.
    pub fn new(redis_url: impl Into<String>, node_id: onstage_cluster::NodeId) -> Self {
        Self {
            redis_url: redis_url.into(),
            node_id,
            node_ttl: Duration::from_secs(6),
            lease_ttl: Duration::from_secs(10),
        }
    }
}

impl ServerConfig {
    /// A configuration with the defaults documented on each field.
    pub fn new(listen: SocketAddr, data_dir: PathBuf) -> Self {
        Self {
            listen,
            data_dir,
            admin_key: None,
            grace: Duration::from_secs(30),
            token_ttl: Duration::from_secs(24 * 60 * 60),
            default_max_on_stage: 25,
            max_participants: 10_000,
            rate_limit_burst: 50,
            rate_limit_per_sec: 20.0,
            rate_limit_bytes_burst: 1024 * 1024,
            rate_limit_bytes_per_sec: 256 * 1024,
            bad_frames_before_close: 16,
            broadcast_burst: 20,
            broadcast_refill: Duration::from_secs(1),
            ping_interval: Duration::from_secs(15),
            idle_timeout: Duration::from_secs(45),
            outbound_queue: 256,
            max_body_bytes: 64 * 1024,
            shutdown_timeout: Duration::from_secs(5),
            media_udp: Some(SocketAddr::new(listen.ip(), 0)),
            media_advertise: Vec::new(),
            media_tcp: true,
            turn: None,
            tls: None,
            tls_handshake_timeout: Duration::from_secs(10),
            public_url: None,
            http_header_timeout: Duration::from_secs(10),
            http_request_timeout: Duration::from_secs(30),
            max_connections: None,
            max_connections_per_source: 256,
            limit_loopback: false,
            cluster: None,
        }
    }

    /// The grace period in milliseconds, as the room and the welcome message carry it.
    pub fn grace_ms(&self) -> u64 {
        u64::try_from(self.grace.as_millis()).unwrap_or(u64::MAX)
    }

    /// Each participant's broadcast budget, as the room applies it.
    pub fn broadcast_budget(&self) -> onstage_room::BroadcastBudget {
        onstage_room::BroadcastBudget {
            burst: self.broadcast_burst,
            // At least a millisecond: zero would mean no budget at all.
            refill_ms: u64::try_from(self.broadcast_refill.as_millis())
                .unwrap_or(u64::MAX)
                .max(1),
        }
    }
}
