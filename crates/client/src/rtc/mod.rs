//! # rtc — the client's WebRTC transport (encoded media only)
//!
//! Two peer connections per participant, both offered by the client and answered by the SFU:
//! - [`PublishPeer`]: sendonly audio + video. Takes encoded access units (H.264 Annex-B) and
//!   Opus packets; webrtc-rs packetizes them. Reports keyframe requests (PLI/FIR) and a
//!   bandwidth estimate back to the encoder.
//! - [`SubscribePeer`]: recvonly audio + video. Reassembles RTP into whole access units / Opus
//!   packets and hands them out as [`EncodedFrame`]s; can ask the sender for a keyframe.
//!
//! Codecs live elsewhere; this module never decodes. Signaling is the caller's: it carries the
//! offer SDP to the server and the answer back ([`PublishPeer::apply_answer`]). ICE is
//! non-trickle: the offer is returned once gathering is complete, so it carries every
//! candidate (host, and relayed when [`TransportConfig::ice_servers`] names a TURN server).
//!
//! ## Networks
//! - Host candidates on every interface, IPv4 and (where the machine has it) IPv6.
//! - ICE-TCP for networks that drop UDP: the peer also gathers active TCP candidates, and
//!   the server's passive TCP candidates from the answer are handed to
//!   `add_ice_candidate` (webrtc-rs 0.21 dials passive candidates only when given that way,
//!   not from inside a remote description).
//! - mDNS is off: the SFU never sends `.local` candidates, and webrtc-rs's mDNS socket fails
//!   the whole connection on a host without a multicast route (`IP_ADD_MEMBERSHIP`, ENODEV).
//!
//! ## Why an interceptor of our own
//! In webrtc-rs 0.21 inbound RTCP ends inside the interceptor chain: a sender never sees a PLI
//! unless an interceptor forwards it. `tap::RtcpTap` sits wire-most in the chain, reads
//! every inbound RTCP compound packet (PLI/FIR -> keyframe requests, receiver reports and REMB ->
//! bandwidth estimate) and every outbound RTP packet (send counters), and passes everything on
//! so the stock interceptors (NACK, reports, TWCC) still work. The one thing it changes: the
//! packets of a simulcast video get the MID and RID header extensions, which webrtc-rs
//! negotiates but does not write, and which the SFU needs to tell the layers apart.
//!
//! ## How the end of a session is seen
//! webrtc-rs does not change the peer connection state when the remote closes DTLS
//! (`close_notify`) while ICE is still up, and it never ends remote tracks by itself. A small
//! monitor task therefore watches three things: the connection state (failed/closed), the DTLS
//! transport state (closed by the peer, polled every 100 ms) and the ICE
//! consent timeouts (shortened in [`TransportConfig`] so a silently vanished SFU is noticed in
//! seconds, not the 30 s default).

mod assemble;
mod bwe;
mod publish;
mod subscribe;
mod tap;

use std::net::SocketAddr;
use std::sync::{Arc, Weak};
use std::time::Duration;

use rtc::ice::mdns::MulticastDnsMode;
use rtc::peer_connection::configuration::interceptor_registry::{
    register_default_interceptors, Registry,
};
use rtc::peer_connection::configuration::media_engine::{
    MediaEngine, MIME_TYPE_H264, MIME_TYPE_OPUS,
};
use rtc::peer_connection::configuration::setting_engine::SettingEngineBuilder;
use rtc::peer_connection::configuration::RTCConfigurationBuilder;
use rtc::peer_connection::transport::RTCDtlsTransportState;
use rtc::peer_connection::transport::{RTCIceCandidateInit, RTCIceServer};
use rtc::rtp_transceiver::rtp_sender::{
    RTCPFeedback, RTCRtpCodec, RTCRtpCodecParameters, RtpCodecKind,
};
use tokio::sync::watch;
use webrtc::peer_connection::{
    PeerConnection, PeerConnectionBuilder, RTCIceGatheringState, RTCPeerConnectionState,
    RTCSessionDescription,
};

pub use bwe::{LossBasedEstimator, MAX_BITRATE_BPS, MIN_BITRATE_BPS, START_BITRATE_BPS};
pub use publish::{LayerSendStats, PublishOptions, PublishPeer, PublishStats};
pub use subscribe::{SubscribePeer, SubscribeStats};
pub use tap::KeyframeRequest;

use onstage_proto::{ErrorCode, IceServer};

/// RTP payload type offered for H.264 (constrained baseline, packetization-mode 1).
pub const H264_PAYLOAD_TYPE: u8 = 102;
/// The payload type of H.264 retransmissions (RTX), on a viewer's connections.
pub const H264_RTX_PAYLOAD_TYPE: u8 = 103;
/// RTP payload type offered for Opus.
pub const OPUS_PAYLOAD_TYPE: u8 = 111;
/// The only H.264 format offered: constrained baseline 3.1, non-interleaved (FU-A/STAP-A).
/// What openh264 produces, and the one format both webrtc-rs and str0m (the SFU) agree on:
/// profile-level-id 42e01f, packetization-mode 1.
pub const H264_FMTP: &str =
    "level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42e01f";
/// Opus: 10 ms minimum packet time, in-band FEC on.
pub const OPUS_FMTP: &str = "minptime=10;useinbandfec=1";

/// How often the session monitor looks at the DTLS transport state.
const MONITOR_INTERVAL: Duration = Duration::from_millis(100);
/// How long an offer waits for ICE gathering: host candidates take milliseconds, a relay
/// one round trip to the TURN server. A relay that never answers (its UDP blocked) is given
/// up after this, and the offer goes out with the candidates gathered.
const GATHER_TIMEOUT: Duration = Duration::from_millis(1500);

/// Audio or video.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MediaKind {
    Audio,
    Video,
}

/// One reassembled unit of encoded media, as it came off the network.
#[derive(Debug, Clone)]
pub struct EncodedFrame {
    pub kind: MediaKind,
    /// Video: one H.264 access unit in Annex-B form (4-byte start codes). Audio: one Opus packet.
    pub data: bytes::Bytes,
    /// The RTP timestamp of the frame (90 kHz for video, 48 kHz for audio).
    pub rtp_timestamp: u32,
    /// Video: the access unit contains an IDR slice. Always false for audio.
    pub keyframe: bool,
    /// When the packet that completed the frame arrived.
    pub received_at: std::time::Instant,
}

/// What can go wrong in the transport. [`RtcError::code`] maps each to a stable
/// [`ErrorCode`] so callers can report it in the same shape as signaling errors.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RtcError {
    /// The remote description could not be parsed or does not fit our offer.
    #[error("bad remote SDP: {0}")]
    BadSdp(String),
    /// A call that needs a negotiated session came too early (e.g. writing before the answer).
    #[error("not negotiated yet: {0}")]
    NotNegotiated(&'static str),
    /// The media kind was not requested when the peer was created.
    #[error("no {0:?} track on this peer")]
    NoTrack(MediaKind),
    /// ICE or DTLS failed.
    #[error("the connection failed")]
    ConnectionFailed,
    /// The peer connection is closed (locally or by the remote side).
    #[error("the connection is closed")]
    Closed,
    /// Waited too long for the connection (or ICE gathering).
    #[error("timed out after {0:?}")]
    Timeout(Duration),
    /// webrtc-rs reported an error we cannot attribute to the input.
    #[error("webrtc: {0}")]
    Internal(String),
}

impl RtcError {
    /// `bad_request` for a bad SDP, `connection_lost` for failed/closed/timed-out connections,
    /// `invalid_state` for calls made before negotiation or for a kind that was not requested,
    /// `internal` for the rest.
    pub fn code(&self) -> ErrorCode {
        match self {
            RtcError::BadSdp(_) => ErrorCode::BadRequest,
            RtcError::NotNegotiated(_) | RtcError::NoTrack(_) => ErrorCode::InvalidState,
            RtcError::ConnectionFailed | RtcError::Closed | RtcError::Timeout(_) => {
                ErrorCode::ConnectionLost
            }
            RtcError::Internal(_) => ErrorCode::Internal,
        }
    }

    fn internal(err: impl std::fmt::Display) -> Self {
        RtcError::Internal(err.to_string())
    }
}

/// Transport knobs shared by both peers. [`Default`] is what [`PublishPeer::new`] and
/// [`SubscribePeer::new`] use.
#[derive(Debug, Clone)]
pub struct TransportConfig {
    /// Local UDP sockets to gather host candidates from. A wildcard (`0.0.0.0:0`) expands to every
    /// non-loopback interface; loopback must be listed explicitly (it is by default, so a server
    /// on the same machine works).
    pub udp_addrs: Vec<SocketAddr>,
    /// Local TCP listeners for ICE-TCP (each gives an active and a passive candidate);
    /// expanded like `udp_addrs`. Empty: no ICE-TCP.
    pub tcp_addrs: Vec<SocketAddr>,
    /// STUN/TURN servers (`turn:` over UDP is what webrtc-rs 0.21 supports): the server hands
    /// out TURN credentials in the welcome.
    pub ice_servers: Vec<IceServer>,
    /// No consent for this long -> ICE `disconnected`.
    pub ice_disconnected_timeout: Duration,
    /// Disconnected for this long -> ICE `failed`, which ends the session.
    pub ice_failed_timeout: Duration,
    /// STUN keepalive period; must be well below the disconnected timeout.
    pub ice_keepalive_interval: Duration,
    /// Time between ICE connectivity checks. The stack's default (200 ms) puts 200 ms of
    /// idle waiting in front of every connection, i.e. of every first picture; checks are
    /// tiny, so they go out every 20 ms.
    pub ice_check_interval: Duration,
    /// Checks per candidate pair before it is given up: with the interval, how long a pair
    /// is tried (70 x 20 ms = the stack's default 1.4 s).
    pub ice_max_binding_requests: u16,
    /// How long a working relayed pair waits for a direct one before it is chosen. The
    /// stack's 2 s is for peers behind unknown NATs; our peer is an SFU with host
    /// candidates, which a direct path reaches within a round trip or not at all, so a
    /// relay-only guest need not wait that long for its first picture.
    pub relay_acceptance_min_wait: Duration,
}

impl Default for TransportConfig {
    fn default() -> Self {
        let mut wildcards = vec![SocketAddr::from(([0, 0, 0, 0], 0))];
        if has_global_ipv6() {
            wildcards.push(SocketAddr::from((std::net::Ipv6Addr::UNSPECIFIED, 0)));
        }
        let loopback = SocketAddr::from(([127, 0, 0, 1], 0));
        TransportConfig {
            udp_addrs: wildcards.iter().copied().chain([loopback]).collect(),
            tcp_addrs: wildcards,
            ice_servers: Vec::new(),
            ice_disconnected_timeout: Duration::from_secs(4),
            ice_failed_timeout: Duration::from_secs(6),
            ice_keepalive_interval: Duration::from_secs(1),
            ice_check_interval: Duration::from_millis(20),
            ice_max_binding_requests: 70,
            relay_acceptance_min_wait: Duration::from_millis(500),
        }
    }
}

impl TransportConfig {
    /// Loopback only: what tests and a same-machine server need; gathers one candidate.
    pub fn loopback() -> Self {
        TransportConfig {
            udp_addrs: vec![SocketAddr::from(([127, 0, 0, 1], 0))],
            tcp_addrs: Vec::new(),
            ..TransportConfig::default()
        }
    }
}

/// Does any interface have a routable IPv6 address? (A wildcard IPv6 socket on a machine
/// without one would yield an unusable `::` candidate.)
fn has_global_ipv6() -> bool {
    if_addrs::get_if_addrs().is_ok_and(|ifaces| {
        ifaces.iter().any(|i| match i.ip() {
            std::net::IpAddr::V6(v6) => {
                !v6.is_loopback() && !v6.is_unspecified() && (v6.segments()[0] & 0xffc0) != 0xfe80
            }
            std::net::IpAddr::V4(_) => false,
        })
    })
}

fn feedback(typ: &str, parameter: &str) -> RTCPFeedback {
    RTCPFeedback {
        typ: typ.to_owned(),
        parameter: parameter.to_owned(),
    }
}

/// The H.264 codec as offered (also used for the local track).
pub(crate) fn h264_codec() -> RTCRtpCodec {
    RTCRtpCodec {
        mime_type: MIME_TYPE_H264.to_owned(),
        clock_rate: 90_000,
        channels: 0,
        sdp_fmtp_line: H264_FMTP.to_owned(),
        rtcp_feedback: vec![
            feedback("nack", ""),
            feedback("nack", "pli"),
            feedback("ccm", "fir"),
            feedback("goog-remb", ""),
            feedback("transport-cc", ""),
        ],
    }
}

/// The Opus codec as offered (also used for the local track).
pub(crate) fn opus_codec() -> RTCRtpCodec {
    RTCRtpCodec {
        mime_type: MIME_TYPE_OPUS.to_owned(),
        clock_rate: 48_000,
        channels: 2,
        sdp_fmtp_line: OPUS_FMTP.to_owned(),
        rtcp_feedback: vec![feedback("transport-cc", "")],
    }
}

/// Which way a peer connection's media goes, for what its media engine offers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Direction {
    Publish,
    Subscribe,
}

/// A media engine with exactly H.264 and Opus, and the stock interceptors (NACK both ways,
/// sender/receiver reports, TWCC receiver) plus our `tap::RtcpTap` wire-most. A viewer also
/// takes H.264 retransmissions on their own stream (RTX, RFC 4588): the SFU then probes
/// the viewer's link with resent packets of full size, which a bandwidth estimate can
/// measure, rather than with small blank ones. (A publisher's layers are stamped with RIDs
/// by our tap; its retransmissions stay on the layer's own stream.)
fn media_setup(
    tap: tap::RtcpTap,
    direction: Direction,
) -> Result<(MediaEngine, Registry), RtcError> {
    let mut engine = MediaEngine::default();
    engine
        .register_codec(
            RTCRtpCodecParameters {
                rtp_codec: h264_codec(),
                payload_type: H264_PAYLOAD_TYPE,
            },
            RtpCodecKind::Video,
        )
        .map_err(RtcError::internal)?;
    engine
        .register_codec(
            RTCRtpCodecParameters {
                rtp_codec: opus_codec(),
                payload_type: OPUS_PAYLOAD_TYPE,
            },
            RtpCodecKind::Audio,
        )
        .map_err(RtcError::internal)?;
    if direction == Direction::Subscribe {
        engine
            .register_codec(
                RTCRtpCodecParameters {
                    rtp_codec: RTCRtpCodec {
                        mime_type: rtc::peer_connection::configuration::media_engine::MIME_TYPE_RTX
                            .to_owned(),
                        clock_rate: 90_000,
                        channels: 0,
                        sdp_fmtp_line: format!("apt={H264_PAYLOAD_TYPE}"),
                        rtcp_feedback: vec![],
                    },
                    payload_type: H264_RTX_PAYLOAD_TYPE,
                },
                RtpCodecKind::Video,
            )
            .map_err(RtcError::internal)?;
    }
    let registry =
        register_default_interceptors(Registry::new(), &mut engine).map_err(RtcError::internal)?;
    // Wire-most (below every stock slot): sees all inbound RTCP before anything consumes it,
    // and every outbound RTP packet including NACK retransmissions.
    let registry = registry.with(rtc::interceptor::Slot::from(500), tap);
    Ok((engine, registry))
}

/// Connection-level events, published by the [`PeerConnectionEventHandler`] of both peers.
///
/// [`PeerConnectionEventHandler`]: webrtc::peer_connection::PeerConnectionEventHandler
pub(crate) struct ConnEvents {
    pub(crate) state: watch::Sender<RTCPeerConnectionState>,
    pub(crate) gathering: watch::Sender<RTCIceGatheringState>,
    /// Set once the session is over for good (any cause); never reset.
    pub(crate) ended: watch::Sender<bool>,
}

impl ConnEvents {
    pub(crate) fn new() -> Arc<Self> {
        Arc::new(ConnEvents {
            state: watch::channel(RTCPeerConnectionState::New).0,
            gathering: watch::channel(RTCIceGatheringState::New).0,
            ended: watch::channel(false).0,
        })
    }

    pub(crate) fn on_state(&self, state: RTCPeerConnectionState) {
        tracing::debug!(%state, "peer connection state");
        self.state.send_replace(state);
        if matches!(
            state,
            RTCPeerConnectionState::Failed | RTCPeerConnectionState::Closed
        ) {
            self.end();
        }
    }

    pub(crate) fn end(&self) {
        self.ended.send_replace(true);
    }

    /// Resolves once [`ConnEvents::end`] was called.
    pub(crate) async fn wait_ended(&self) {
        let mut rx = self.ended.subscribe();
        // Err only if the sender is gone, which cannot happen while `self` lives.
        let _ = rx.wait_for(|ended| *ended).await;
    }

    /// Waits for `connected`, failing on `failed`/`closed`/end of session or after `timeout`.
    pub(crate) async fn wait_connected(&self, timeout: Duration) -> Result<(), RtcError> {
        let mut state = self.state.subscribe();
        let mut ended = self.ended.subscribe();
        let wait = async {
            loop {
                match *state.borrow_and_update() {
                    RTCPeerConnectionState::Connected => return Ok(()),
                    RTCPeerConnectionState::Failed => return Err(RtcError::ConnectionFailed),
                    RTCPeerConnectionState::Closed => return Err(RtcError::Closed),
                    _ => {}
                }
                if *ended.borrow_and_update() {
                    return Err(RtcError::Closed);
                }
                tokio::select! {
                    changed = state.changed() => if changed.is_err() { return Err(RtcError::Closed) },
                    changed = ended.changed() => if changed.is_err() { return Err(RtcError::Closed) },
                }
            }
        };
        tokio::time::timeout(timeout, wait)
            .await
            .map_err(|_| RtcError::Timeout(timeout))?
    }
}

/// Builds a peer connection with our media setup and the given event handler.
async fn build_peer(
    config: &TransportConfig,
    direction: Direction,
    tap: tap::RtcpTap,
    handler: Arc<dyn webrtc::peer_connection::PeerConnectionEventHandler>,
) -> Result<Arc<dyn PeerConnection>, RtcError> {
    let (engine, registry) = media_setup(tap, direction)?;
    let settings = SettingEngineBuilder::new()
        .with_ice_timeouts(
            Some(config.ice_disconnected_timeout),
            Some(config.ice_failed_timeout),
            Some(config.ice_keepalive_interval),
        )
        .with_ice_connection_attempts(
            Some(config.ice_check_interval),
            Some(config.ice_max_binding_requests),
        )
        .with_multicast_dns_mode(MulticastDnsMode::Disabled)
        .with_relay_acceptance_min_wait(Some(config.relay_acceptance_min_wait))
        .build();
    let ice_servers = config
        .ice_servers
        .iter()
        .map(|s| RTCIceServer {
            urls: s.urls.clone(),
            username: s.username.clone(),
            credential: s.credential.clone(),
        })
        .collect();
    let pc = PeerConnectionBuilder::new()
        .with_configuration(
            RTCConfigurationBuilder::new()
                .with_ice_servers(ice_servers)
                .build(),
        )
        .with_media_engine(engine)
        .with_setting_engine(settings)
        .with_interceptor_registry(registry)
        .with_handler(handler)
        .with_udp_addrs(config.udp_addrs.clone())
        .with_tcp_addrs(config.tcp_addrs.clone())
        .build()
        .await
        .map_err(RtcError::internal)?;
    Ok(Arc::new(pc))
}

/// Creates the offer, applies it and waits for ICE gathering to complete, so the returned SDP
/// carries all candidates (the server does not trickle).
async fn complete_offer(pc: &dyn PeerConnection, events: &ConnEvents) -> Result<String, RtcError> {
    let mut gathering = events.gathering.subscribe();
    let offer = pc.create_offer(None).await.map_err(RtcError::internal)?;
    pc.set_local_description(offer)
        .await
        .map_err(RtcError::internal)?;
    match tokio::time::timeout(
        GATHER_TIMEOUT,
        gathering.wait_for(|g| *g == RTCIceGatheringState::Complete),
    )
    .await
    {
        Ok(done) => {
            done.map_err(|_| RtcError::Closed)?;
        }
        // A relay that does not answer (its UDP blocked) must not cost the other paths:
        // offer what was gathered by now.
        Err(_) => {
            tracing::debug!(after = ?GATHER_TIMEOUT, "ICE gathering incomplete; offering what there is")
        }
    }
    let local = pc.local_description().await.ok_or(RtcError::Internal(
        "no local description after offer".into(),
    ))?;
    Ok(local.sdp)
}

/// Parses and applies the server's answer. Any failure here is the remote's input: BadSdp.
async fn apply_answer(pc: &dyn PeerConnection, sdp: &str) -> Result<(), RtcError> {
    let answer = RTCSessionDescription::answer(sdp.to_owned())
        .map_err(|e| RtcError::BadSdp(e.to_string()))?;
    pc.set_remote_description(answer)
        .await
        .map_err(|e| RtcError::BadSdp(e.to_string()))?;
    for candidate in passive_tcp_candidates(sdp) {
        // One bad candidate must not cost the others (or the UDP path).
        if let Err(e) = pc.add_ice_candidate(candidate).await {
            tracing::debug!(error = %e, "a passive TCP candidate of the answer was refused");
        }
    }
    Ok(())
}

/// The passive TCP candidates of an SDP, each once, with the media line they came from.
fn passive_tcp_candidates(sdp: &str) -> Vec<RTCIceCandidateInit> {
    let mut out: Vec<RTCIceCandidateInit> = Vec::new();
    let mut mline: Option<u16> = None;
    let mut mid: Option<String> = None;
    for line in sdp.lines().map(str::trim) {
        if line.starts_with("m=") {
            mline = Some(mline.map_or(0, |i| i.saturating_add(1)));
            mid = None;
        } else if let Some(m) = line.strip_prefix("a=mid:") {
            mid = Some(m.to_owned());
        } else if let Some(c) = line.strip_prefix("a=candidate:") {
            let fields: Vec<&str> = c.split_whitespace().collect();
            let is_tcp = fields.get(2).is_some_and(|p| p.eq_ignore_ascii_case("tcp"));
            let passive = fields
                .windows(2)
                .any(|w| w[0] == "tcptype" && w[1] == "passive");
            let candidate = format!("candidate:{c}");
            if is_tcp && passive && !out.iter().any(|o| o.candidate == candidate) {
                out.push(RTCIceCandidateInit {
                    candidate,
                    sdp_mid: mid.clone(),
                    sdp_mline_index: mline,
                    username_fragment: None,
                    url: None,
                });
            }
        }
    }
    out
}

/// Watches the session until it ends: connection failed/closed (via `events`), or the DTLS
/// transport closed by the remote (`close_notify`), which webrtc-rs does not surface as a state
/// change. Holds only a weak reference so a dropped peer is not kept alive.
fn spawn_monitor(pc: Weak<dyn PeerConnection>, events: Arc<ConnEvents>) {
    tokio::spawn(async move {
        let mut ended = events.ended.subscribe();
        let mut tick = tokio::time::interval(MONITOR_INTERVAL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = ended.wait_for(|e| *e) => return,
                _ = tick.tick() => {}
            }
            let Some(pc) = pc.upgrade() else {
                events.end();
                return;
            };
            if dtls_closed(pc.as_ref()).await {
                tracing::debug!("remote closed the DTLS transport");
                events.end();
                return;
            }
        }
    });
}

/// Whether the DTLS transport under this connection is closed or failed.
async fn dtls_closed(pc: &dyn PeerConnection) -> bool {
    for transceiver in pc.get_transceivers().await {
        let transport = match transceiver.sender().await {
            Ok(Some(sender)) => sender.transport().await,
            _ => match transceiver.receiver().await {
                Ok(Some(receiver)) => receiver.transport().await,
                _ => continue,
            },
        };
        if let Ok(Some(dtls)) = transport {
            return matches!(
                dtls.state().await,
                Ok(RTCDtlsTransportState::Closed | RTCDtlsTransportState::Failed)
            );
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passive_tcp_candidates_are_found_once_with_their_media_line() {
        let sdp = "v=0\r\n\
            m=audio 9 UDP/TLS/RTP/SAVPF 111\r\n\
            a=mid:0\r\n\
            a=candidate:1 1 udp 2130706175 10.0.0.1 5000 typ host\r\n\
            a=candidate:2 1 tcp 2105524479 10.0.0.1 5000 typ host tcptype passive\r\n\
            m=video 9 UDP/TLS/RTP/SAVPF 102\r\n\
            a=mid:1\r\n\
            a=candidate:2 1 tcp 2105524479 10.0.0.1 5000 typ host tcptype passive\r\n\
            a=candidate:3 1 tcp 2105524479 10.0.0.1 9 typ host tcptype active\r\n";
        let found = passive_tcp_candidates(sdp);
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!(
            found[0].candidate,
            "candidate:2 1 tcp 2105524479 10.0.0.1 5000 typ host tcptype passive"
        );
        assert_eq!(found[0].sdp_mid.as_deref(), Some("0"));
        assert_eq!(found[0].sdp_mline_index, Some(0));
        assert!(passive_tcp_candidates("garbage\n a=candidate:").is_empty());
    }

    #[test]
    fn error_codes() {
        assert_eq!(RtcError::BadSdp("x".into()).code(), ErrorCode::BadRequest);
        assert_eq!(RtcError::Closed.code(), ErrorCode::ConnectionLost);
        assert_eq!(
            RtcError::Timeout(Duration::from_secs(1)).code(),
            ErrorCode::ConnectionLost
        );
        assert_eq!(RtcError::ConnectionFailed.code(), ErrorCode::ConnectionLost);
        assert_eq!(RtcError::Internal("x".into()).code(), ErrorCode::Internal);
        assert_eq!(
            RtcError::NoTrack(MediaKind::Video).code(),
            ErrorCode::InvalidState
        );
    }
}
