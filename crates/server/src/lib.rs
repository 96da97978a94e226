//! # onstage-server — the Onstage meeting server
//!
//! One process serves the admin REST API, WebSocket signaling at `/v1/signal`, `/healthz`
//! and `/metrics`, with meetings, presets and participants stored in SQLite. It is a library
//! first, so the `onstage serve` command and the desktop app (embedded) run the same code:
//!
//! ```no_run
//! # async fn demo() -> Result<(), onstage_server::ServerError> {
//! let config = onstage_server::ServerConfig::new("127.0.0.1:0".parse().unwrap(), "data".into());
//! let server = onstage_server::start(config).await?;
//! println!("{} (admin key {})", server.http_url(), server.admin_key());
//! server.shutdown().await;
//! # Ok(()) }
//! ```
//!
//! The front door:
//! - [`ServerConfig::new`] (defaults: 30 s grace, 24 h tokens, `max_on_stage` 25, 50-call
//!   burst at 20 calls/s per connection, 15 s pings, 45 s idle cut-off), then [`start`].
//! - [`RunningServer`]: `local_addr`, `http_url`, `admin_key`, `admin_key_generated`; stop
//!   it with `shutdown().await` (every socket gets `goodbye: shutdown`, then the server
//!   waits for them to close), or serve until told: `wait()` with a [`ShutdownHandle`], or
//!   `run_until(shutdown_signal())` for Ctrl-C / SIGTERM.
//!
//! Modules, in the order a request meets them:
//! - [`server`]: start-up (storage, secrets, listener), the router, graceful shutdown.
//! - [`http`]: the front door: accepting, TLS handshakes, connection caps, time limits.
//! - [`limits`]: what one source may hold and try (connection caps, admin-key back-off).
//! - [`auth`]: the admin key and participant tokens (HS256 JWTs).
//! - [`rest`]: the admin API (`docs/API.md`).
//! - [`signal`]: one task per WebSocket: frames in, room messages out.
//! - [`rooms`]: one task per live meeting, driving its `onstage_room::Room` and fanning out
//!   its events.
//! - [`keeper`]: each live room's stage kept in storage as it changes, given back after
//!   a restart.
//! - [`storage`]: SQLite (rusqlite + migrations) and the data dir's secret files.
//! - [`tls`]: https/wss certificates (files or self-signed).
//! - [`sfu`]: media: the str0m sessions and forwarding ([`sfu::engine`], sans-IO) and the
//!   sockets ([`sfu::net`]: UDP on every interface, ICE-TCP, the announced addresses).
//! - [`turn`]: per-participant credentials for a TURN relay (coturn), put in each welcome.
//! - [`web`]: the files browsers fetch (the web Stage SDK).
//! - [`metrics`], [`config`], [`error`].

pub mod auth;
pub mod config;
pub mod error;
pub mod http;
pub mod keeper;
pub mod limits;
pub mod metrics;
pub mod rest;
pub mod rooms;
pub mod server;
pub mod sfu;
pub mod signal;
pub mod storage;
pub mod tls;
pub mod turn;
pub mod web;

pub use config::{ClusterSettings, ServerConfig, TlsConfig};
pub use error::{ApiError, ServerError, StorageError};
pub use server::{shutdown_signal, start, RunningServer, ShutdownHandle};
