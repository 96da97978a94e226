//! # onstage-probe — lightweight WebRTC endpoints for testing and benchmarking the SFU
//!
//! Real WebRTC sessions (ICE, DTLS, SRTP, RTCP, NACK/RTX) through the server's normal
//! media signaling, but no capture, no codecs and no decoding: each probe is one str0m
//! [`str0m::Rtc`] in RTP mode, one UDP socket and one small tokio task. That makes it
//! cheap enough to run hundreds of viewers next to the server on one machine.
//!
//! - [`ProbePublisher`]: joins the SFU with a sendonly offer (`media.publish`) and sends
//!   synthetic media paced in real time: H.264-shaped video (a keyframe is SPS, PPS and
//!   FU-A fragments of an IDR slice; other frames are non-IDR slices; marker bit on each
//!   frame's last packet, 90 kHz timestamps) at a chosen bitrate and frame rate, and 20 ms
//!   Opus-sized audio. Every frame's first packet carries a [`shape::Stamp`] (frame number,
//!   send time). Keyframes at start and whenever the SFU asks (PLI/FIR). It can keep
//!   sending after the server closed its session, like a client that ignores a kick.
//!   [`ProbePublisher::start_with`] leaves the signaling to the caller (another SFU's API).
//! - [`ProbeViewer`]: subscribes to one publisher (`media.subscribe`, recvonly), or answers
//!   an SFU's offer of a subscription ([`ProbeViewer::answer`], as Janus's VideoRoom
//!   offers), and counts:
//!   packets per kind, loss by sequence numbers, time to the first video packet and to the
//!   first keyframe, per-frame latency from the stamps, order, and whether the server
//!   closed the session (and whether anything still arrived after that).
//!
//! Probes talk to the server through an [`onstage_client::Meeting`] for signaling only.
//!
//! ```no_run
//! # async fn demo(host: onstage_client::Meeting, viewer: onstage_client::Meeting)
//! #     -> Result<(), onstage_probe::ProbeError> {
//! use onstage_probe::{ProbePublisher, ProbeViewer, PublisherOptions};
//!
//! host.stage().join().await?;
//! let publisher = ProbePublisher::start(&host, PublisherOptions::default()).await?;
//! let watcher = ProbeViewer::start(&viewer, &host.user_id()).await?;
//! tokio::time::sleep(std::time::Duration::from_secs(2)).await;
//! let stats = watcher.stats();
//! println!("video lost {} of {}", stats.video.lost(), stats.video.expected());
//! # Ok(()) }
//! ```

mod endpoint;
mod error;
mod publisher;
pub mod shape;
mod viewer;

pub use error::ProbeError;
pub use publisher::{ProbePublisher, PublisherOptions, PublisherStats};
pub use viewer::{ProbeViewer, TrackStats, ViewerOptions, ViewerStats};
