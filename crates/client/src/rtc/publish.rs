//! [`PublishPeer`]: sendonly audio + video towards the SFU.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rtc::media::Sample;
use rtc::media_stream::MediaStreamTrack;
use rtc::rtp_transceiver::rtp_sender::{
    RTCRtpCodec, RTCRtpCodingParameters, RTCRtpEncodingParameters, RtpCodecKind,
};
use rtc::rtp_transceiver::{RTCRtpTransceiverDirection, RTCRtpTransceiverInit};
use tokio::sync::{mpsc, watch, OnceCell};
use webrtc::media_stream::track_local::static_sample::TrackLocalStaticSample;
use webrtc::media_stream::track_local::TrackLocal;
use webrtc::peer_connection::{
    PeerConnection, PeerConnectionEventHandler, RTCIceGatheringState, RTCPeerConnectionState,
};
use webrtc::rtp_transceiver::RtpSender;

use super::tap::{RtcpTap, TapShared};
use super::{
    build_peer, complete_offer, h264_codec, opus_codec, spawn_monitor, ConnEvents, MediaKind,
    RtcError, TransportConfig,
};

/// What to publish. A kind left out gets no transceiver at all.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PublishOptions {
    pub audio: bool,
    pub video: bool,
}

/// Counters for benchmarks. RTP packets and payload bytes as they leave the interceptor chain
/// (so NACK retransmissions are included, and counted apart too); frames as written.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PublishStats {
    pub packets_sent: u64,
    /// RTP payload bytes (no RTP/SRTP/UDP overhead).
    pub bytes_sent: u64,
    pub retransmissions_sent: u64,
    pub video_frames_sent: u64,
    pub audio_frames_sent: u64,
    /// PLI/FIR received for our video.
    pub keyframe_requests: u64,
}

/// One outgoing track and what writing to it needs.
struct Outgoing {
    track: Arc<TrackLocalStaticSample>,
    sender: Arc<dyn RtpSender>,
    ssrc: u32,
    /// The payload type the answer settled on; read from the sender after negotiation.
    payload_type: OnceCell<u8>,
}

impl Outgoing {
    async fn new(
        pc: &dyn PeerConnection,
        kind: RtpCodecKind,
        codec: RTCRtpCodec,
        stream_id: &str,
    ) -> Result<Self, RtcError> {
        let ssrc = random_ssrc();
        let name = match kind {
            RtpCodecKind::Audio => "audio",
            _ => "video",
        };
        let track = MediaStreamTrack::new(
            stream_id.to_owned(),
            format!("{stream_id}-{name}"),
            name.to_owned(),
            kind,
            vec![RTCRtpEncodingParameters {
                rtp_coding_parameters: RTCRtpCodingParameters {
                    ssrc: Some(ssrc),
                    ..Default::default()
                },
                codec,
                ..Default::default()
            }],
        );
        let track = Arc::new(
            TrackLocalStaticSample::new(Instant::now(), track).map_err(RtcError::internal)?,
        );
        let transceiver = pc
            .add_transceiver_from_track(
                Arc::clone(&track) as Arc<dyn TrackLocal>,
                Some(RTCRtpTransceiverInit {
                    direction: RTCRtpTransceiverDirection::Sendonly,
                    ..Default::default()
                }),
            )
            .await
            .map_err(RtcError::internal)?;
        let sender = transceiver
            .sender()
            .await
            .map_err(RtcError::internal)?
            .ok_or(RtcError::Internal("transceiver without a sender".into()))?;
        Ok(Outgoing {
            track,
            sender,
            ssrc,
            payload_type: OnceCell::new(),
        })
    }

    async fn payload_type(&self) -> Result<u8, RtcError> {
        self.payload_type
            .get_or_try_init(|| async {
                let params = self
                    .sender
                    .get_parameters()
                    .await
                    .map_err(RtcError::internal)?;
                params
                    .rtp_parameters
                    .codecs
                    .first()
                    .map(|codec| codec.payload_type)
                    .ok_or(RtcError::NotNegotiated(
                        "no codec negotiated for the sender",
                    ))
            })
            .await
            .copied()
    }

    async fn write(&self, data: &[u8], duration: Duration) -> Result<(), RtcError> {
        let payload_type = self.payload_type().await?;
        let sample = Sample {
            data: bytes::Bytes::copy_from_slice(data),
            duration,
            ..Sample::new(Instant::now())
        };
        self.track
            .sample_writer(self.ssrc, payload_type)
            .write_sample(&sample)
            .await
            .map_err(|e| RtcError::Internal(format!("write sample: {e}")))
    }
}

/// A random SSRC (RFC 3550 asks for one chosen at random, unique within the session; the
/// stack resolves the rare collision). Zero is avoided: some stacks treat it as unset.
fn random_ssrc() -> u32 {
    rand::random::<u32>().max(1)
}

struct Handler {
    events: Arc<ConnEvents>,
}

#[async_trait::async_trait]
impl PeerConnectionEventHandler for Handler {
    async fn on_ice_gathering_state_change(&self, state: RTCIceGatheringState) {
        self.events.gathering.send_replace(state);
    }

    async fn on_connection_state_change(&self, state: RTCPeerConnectionState) {
        self.events.on_state(state);
    }
}

/// The publishing peer connection. Cheap to share: every method takes `&self`.
pub struct PublishPeer {
    pc: Arc<dyn PeerConnection>,
    events: Arc<ConnEvents>,
    tap: Arc<TapShared>,
    video: Option<Outgoing>,
    audio: Option<Outgoing>,
    keyframe_rx: Mutex<Option<mpsc::UnboundedReceiver<()>>>,
    bitrate_rx: watch::Receiver<u32>,
    video_frames: AtomicU64,
    audio_frames: AtomicU64,
}

impl PublishPeer {
    /// Creates the peer connection with sendonly transceivers and returns it with the offer SDP
    /// (ICE gathering complete, so the SDP carries the candidates; no trickle).
    pub async fn new(opts: PublishOptions) -> Result<(PublishPeer, String), RtcError> {
        PublishPeer::with_config(opts, &TransportConfig::default()).await
    }

    /// [`PublishPeer::new`] with explicit transport settings (sockets, ICE timeouts).
    pub async fn with_config(
        opts: PublishOptions,
        config: &TransportConfig,
    ) -> Result<(PublishPeer, String), RtcError> {
        let events = ConnEvents::new();
        let (tap, keyframe_rx, bitrate_rx) = TapShared::new();
        let handler = Arc::new(Handler {
            events: Arc::clone(&events),
        });
        let pc = build_peer(config, RtcpTap::new(Arc::clone(&tap)), handler).await?;
        let stream_id = format!("onstage-{:08x}", random_ssrc());
        // Audio first: the m-line order is the SFU's business, but a fixed one keeps SDPs
        // comparable in logs.
        let audio = if opts.audio {
            Some(Outgoing::new(pc.as_ref(), RtpCodecKind::Audio, opus_codec(), &stream_id).await?)
        } else {
            None
        };
        let video = if opts.video {
            Some(Outgoing::new(pc.as_ref(), RtpCodecKind::Video, h264_codec(), &stream_id).await?)
        } else {
            None
        };
        let offer = complete_offer(pc.as_ref(), &events).await?;
        spawn_monitor(Arc::downgrade(&pc), Arc::clone(&events));
        let peer = PublishPeer {
            pc,
            events,
            tap,
            video,
            audio,
            keyframe_rx: Mutex::new(Some(keyframe_rx)),
            bitrate_rx,
            video_frames: AtomicU64::new(0),
            audio_frames: AtomicU64::new(0),
        };
        Ok((peer, offer))
    }

    /// Applies the server's answer. A malformed or unusable answer is [`RtcError::BadSdp`].
    pub async fn apply_answer(&self, sdp: &str) -> Result<(), RtcError> {
        super::apply_answer(self.pc.as_ref(), sdp).await
    }

    /// Waits until ICE+DTLS are connected, or fails with [`RtcError`] on failed/closed/timeout.
    pub async fn connected(&self, timeout: Duration) -> Result<(), RtcError> {
        self.events.wait_connected(timeout).await
    }

    /// Sends one H.264 access unit (Annex-B, any start code form) lasting `duration`.
    /// webrtc-rs packetizes it (single NAL / STAP-A for SPS+PPS / FU-A) and advances the RTP
    /// timestamp by `duration` at 90 kHz. Awaits back-pressure from the connection's driver.
    pub async fn write_video(&self, annex_b: &[u8], duration: Duration) -> Result<(), RtcError> {
        let out = self
            .video
            .as_ref()
            .ok_or(RtcError::NoTrack(MediaKind::Video))?;
        self.check_open()?;
        out.write(annex_b, duration).await?;
        self.video_frames.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    /// Sends one Opus packet (normally 20 ms) lasting `duration`.
    pub async fn write_audio(&self, packet: &[u8], duration: Duration) -> Result<(), RtcError> {
        let out = self
            .audio
            .as_ref()
            .ok_or(RtcError::NoTrack(MediaKind::Audio))?;
        self.check_open()?;
        out.write(packet, duration).await?;
        self.audio_frames.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    fn check_open(&self) -> Result<(), RtcError> {
        if *self.events.ended.borrow() {
            return Err(RtcError::Closed);
        }
        Ok(())
    }

    /// Keyframe requests (PLI or FIR for our video SSRC) from the remote side, one `()` each.
    /// They are read by our RTCP tap interceptor, since webrtc-rs 0.21 swallows inbound RTCP
    /// by default. The receiver can be taken once; later calls return a receiver that is
    /// already closed.
    pub fn keyframe_requests(&self) -> mpsc::UnboundedReceiver<()> {
        let taken = self.keyframe_rx.lock().ok().and_then(|mut rx| rx.take());
        taken.unwrap_or_else(|| {
            tracing::warn!("keyframe_requests() taken twice; the second receiver is closed");
            mpsc::unbounded_channel().1
        })
    }

    /// Bandwidth estimate for the outgoing video, bps, updated as RTCP arrives.
    ///
    /// It is a loss-based controller ([`super::LossBasedEstimator`]) driven by the `fraction_lost`
    /// of every receiver report about our video (> 10 % loss -> -15 %, < 2 % -> +5 %), capped by
    /// the remote's REMB when it sends one, clamped to [100 kbps, 2.5 Mbps], starting at 1 Mbps.
    /// Receivers report about once a second, so expect that update rate. No delay-based part.
    pub fn bitrate_estimates(&self) -> watch::Receiver<u32> {
        self.bitrate_rx.clone()
    }

    /// Counters so far.
    pub fn stats(&self) -> PublishStats {
        PublishStats {
            packets_sent: self.tap.rtp_packets_sent.load(Ordering::Relaxed),
            bytes_sent: self.tap.rtp_bytes_sent.load(Ordering::Relaxed),
            retransmissions_sent: self.tap.retransmissions_sent.load(Ordering::Relaxed),
            video_frames_sent: self.video_frames.load(Ordering::Relaxed),
            audio_frames_sent: self.audio_frames.load(Ordering::Relaxed),
            keyframe_requests: self.tap.keyframe_requests.load(Ordering::Relaxed),
        }
    }

    /// Resolves when the session is over: closed here, closed by the remote (DTLS
    /// `close_notify`), or ICE failed.
    pub async fn closed(&self) {
        self.events.wait_ended().await
    }

    /// Closes the peer connection: sending stops at once and the remote gets a DTLS
    /// `close_notify`. Idempotent.
    pub async fn close(&self) {
        self.events.end();
        if let Err(err) = self.pc.close().await {
            tracing::debug!(%err, "closing the publish peer connection");
        }
    }
}
