//! [`PublishPeer`]: sendonly audio + video towards the SFU.
//!
//! The video is one track: a plain stream (one SSRC), or a simulcast of layers
//! ([`PublishOptions::simulcast`]), one encoding each, with its RID and SSRC, lowest first:
//! the offer carries `a=rid:q send`, `a=rid:h send`, `a=rid:f send` and
//! `a=simulcast:send q;h;f`, and no `a=ssrc` lines (the SFU learns each layer's SSRC from
//! the RID header extension the tap stamps on its packets: see [`super::tap`]).

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

use super::tap::{KeyframeRequest, RtcpTap, TapShared};
use super::{
    build_peer, complete_offer, h264_codec, opus_codec, spawn_monitor, ConnEvents, MediaKind,
    RtcError, TransportConfig,
};

/// What to publish. A kind left out gets no transceiver at all.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PublishOptions {
    pub audio: bool,
    pub video: bool,
    /// The RIDs of the video's simulcast layers, lowest first (`q`, `h`, `f`): one encoding
    /// each, with its own SSRC; [`PublishPeer::write_video_layer`] takes the layer's index
    /// in this list. Fewer than two: a plain stream, no simulcast (layer 0 is that stream).
    pub simulcast: Vec<String>,
    /// Where the bandwidth estimate ([`PublishPeer::bitrate_estimates`]) starts; `None`:
    /// [`super::START_BITRATE_BPS`].
    pub start_bitrate_bps: Option<u32>,
}

/// Counters for benchmarks. RTP packets and payload bytes as they leave the interceptor chain
/// (so NACK retransmissions are included, and counted apart too); frames as written.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PublishStats {
    pub packets_sent: u64,
    /// RTP payload bytes (no RTP/SRTP/UDP overhead).
    pub bytes_sent: u64,
    pub retransmissions_sent: u64,
    /// Video frames written, all layers together.
    pub video_frames_sent: u64,
    pub audio_frames_sent: u64,
    /// PLI/FIR received for our video.
    pub keyframe_requests: u64,
    /// Per video layer, lowest first (one for a plain stream).
    pub layers: Vec<LayerSendStats>,
}

/// What was written to one video layer.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LayerSendStats {
    /// Its RID; empty for a plain stream.
    pub rid: String,
    pub ssrc: u32,
    pub frames_sent: u64,
    /// Access unit bytes written (before packetization).
    pub bytes_sent: u64,
}

/// One video layer's encoding and its counters.
struct LayerOut {
    rid: String,
    ssrc: u32,
    frames: AtomicU64,
    bytes: AtomicU64,
}

/// One outgoing track and what writing to it needs.
struct Outgoing {
    track: Arc<TrackLocalStaticSample>,
    sender: Arc<dyn RtpSender>,
    /// Its encodings, lowest layer first; one for audio and for a plain video stream.
    layers: Vec<LayerOut>,
    /// The payload type the answer settled on; read from the sender after negotiation.
    payload_type: OnceCell<u8>,
    /// Its MID, as the offer set it.
    mid: Option<String>,
}

impl Outgoing {
    /// A sendonly transceiver with one track of `kind`: one encoding for each RID of
    /// `rids` (simulcast), or a single one without a RID when there are fewer than two.
    async fn new(
        pc: &dyn PeerConnection,
        kind: RtpCodecKind,
        codec: RTCRtpCodec,
        stream_id: &str,
        rids: &[String],
    ) -> Result<Self, RtcError> {
        let name = match kind {
            RtpCodecKind::Audio => "audio",
            _ => "video",
        };
        let rids: Vec<String> = if rids.len() > 1 {
            rids.to_vec()
        } else {
            vec![String::new()]
        };
        let layers: Vec<LayerOut> = rids
            .into_iter()
            .map(|rid| LayerOut {
                rid,
                ssrc: random_ssrc(),
                frames: AtomicU64::new(0),
                bytes: AtomicU64::new(0),
            })
            .collect();
        let encodings = layers
            .iter()
            .map(|layer| RTCRtpEncodingParameters {
                rtp_coding_parameters: RTCRtpCodingParameters {
                    rid: layer.rid.clone(),
                    ssrc: Some(layer.ssrc),
                    ..Default::default()
                },
                codec: codec.clone(),
                ..Default::default()
            })
            .collect();
        let track = MediaStreamTrack::new(
            stream_id.to_owned(),
            format!("{stream_id}-{name}"),
            name.to_owned(),
            kind,
            encodings,
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
            layers,
            payload_type: OnceCell::new(),
            mid: None,
        })
    }

    fn is_simulcast(&self) -> bool {
        self.layers.len() > 1
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

    /// Writes one sample to `layer`; empty `data` sends nothing and only moves the RTP
    /// clock on by `duration`.
    async fn write(&self, layer: usize, data: &[u8], duration: Duration) -> Result<(), RtcError> {
        let out = self
            .layers
            .get(layer)
            .ok_or(RtcError::Internal(format!("no video layer {layer}")))?;
        let payload_type = self.payload_type().await?;
        let sample = Sample {
            data: bytes::Bytes::copy_from_slice(data),
            duration,
            ..Sample::new(Instant::now())
        };
        self.track
            .sample_writer(out.ssrc, payload_type)
            .write_sample(&sample)
            .await
            .map_err(|e| RtcError::Internal(format!("write sample: {e}")))?;
        if !data.is_empty() {
            out.frames.fetch_add(1, Ordering::Relaxed);
            out.bytes.fetch_add(data.len() as u64, Ordering::Relaxed);
        }
        Ok(())
    }
}

/// A random SSRC (RFC 3550 asks for one chosen at random, unique within the session; the
/// stack resolves the rare collision). Zero is avoided: some stacks treat it as unset.
fn random_ssrc() -> u32 {
    rand::random::<u32>().max(1)
}

/// The MID of the transceiver that sends with `sender`, once an offer has set it.
async fn mid_of(pc: &dyn PeerConnection, sender: &dyn RtpSender) -> Option<String> {
    for transceiver in pc.get_transceivers().await {
        if let Ok(Some(s)) = transceiver.sender().await {
            if s.id() == sender.id() {
                return transceiver.mid().await.ok().flatten();
            }
        }
    }
    None
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
    keyframe_rx: Mutex<Option<mpsc::UnboundedReceiver<KeyframeRequest>>>,
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
        let (tap, keyframe_rx, bitrate_rx) = TapShared::new(opts.start_bitrate_bps);
        let handler = Arc::new(Handler {
            events: Arc::clone(&events),
        });
        let pc = build_peer(
            config,
            super::Direction::Publish,
            RtcpTap::new(Arc::clone(&tap)),
            handler,
        )
        .await?;
        let stream_id = format!("onstage-{:08x}", random_ssrc());
        // Audio first: the m-line order is the SFU's business, but a fixed one keeps SDPs
        // comparable in logs.
        let audio = if opts.audio {
            let codec = opus_codec();
            Some(Outgoing::new(pc.as_ref(), RtpCodecKind::Audio, codec, &stream_id, &[]).await?)
        } else {
            None
        };
        let mut video = if opts.video {
            let (codec, rids) = (h264_codec(), &opts.simulcast);
            Some(Outgoing::new(pc.as_ref(), RtpCodecKind::Video, codec, &stream_id, rids).await?)
        } else {
            None
        };
        let offer = complete_offer(pc.as_ref(), &events).await?;
        if let Some(video) = video.as_mut().filter(|v| v.is_simulcast()) {
            // What the tap stamps on each layer's packets once webrtc-rs binds them (when
            // the answer is applied): the MID the offer gave the video, each layer's RID.
            video.mid = mid_of(pc.as_ref(), video.sender.as_ref()).await;
            for (index, layer) in video.layers.iter().enumerate() {
                tap.register_layer(layer.ssrc, index, &layer.rid);
            }
            match &video.mid {
                Some(mid) => tap.set_video_mid(mid.clone()),
                None => tracing::warn!("the simulcast video has no MID in the offer"),
            }
        }
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

    /// Sends one H.264 access unit (Annex-B, any start code form) lasting `duration`, on
    /// the plain stream (the lowest layer of a simulcast: see
    /// [`PublishPeer::write_video_layer`]). webrtc-rs packetizes it (single NAL / STAP-A for
    /// SPS+PPS / FU-A) and advances the RTP timestamp by `duration` at 90 kHz. Awaits
    /// back-pressure from the connection's driver.
    pub async fn write_video(&self, annex_b: &[u8], duration: Duration) -> Result<(), RtcError> {
        self.write_video_layer(0, annex_b, duration).await
    }

    /// [`PublishPeer::write_video`] to simulcast layer `layer` (its index in
    /// [`PublishOptions::simulcast`], 0 the lowest), on that layer's SSRC, with its own
    /// sequence numbers and RTP clock. An empty `annex_b` sends nothing and only moves the
    /// layer's RTP clock on by `duration`: how a layer that was paused resumes with a
    /// timestamp that says how long it was away.
    pub async fn write_video_layer(
        &self,
        layer: usize,
        annex_b: &[u8],
        duration: Duration,
    ) -> Result<(), RtcError> {
        let out = self
            .video
            .as_ref()
            .ok_or(RtcError::NoTrack(MediaKind::Video))?;
        self.check_open()?;
        out.write(layer, annex_b, duration).await?;
        if !annex_b.is_empty() {
            self.video_frames.fetch_add(1, Ordering::Relaxed);
        }
        Ok(())
    }

    /// The video's layers, lowest first, by RID and SSRC (one, with an empty RID, for a
    /// plain stream; none without video).
    pub fn video_layers(&self) -> Vec<(String, u32)> {
        self.video
            .iter()
            .flat_map(|v| v.layers.iter().map(|l| (l.rid.clone(), l.ssrc)))
            .collect()
    }

    /// The video's MID, for a simulcast (what the tap stamps on its packets).
    pub fn video_mid(&self) -> Option<String> {
        self.video.as_ref().and_then(|v| v.mid.clone())
    }

    /// Sends one Opus packet (normally 20 ms) lasting `duration`.
    pub async fn write_audio(&self, packet: &[u8], duration: Duration) -> Result<(), RtcError> {
        let out = self
            .audio
            .as_ref()
            .ok_or(RtcError::NoTrack(MediaKind::Audio))?;
        self.check_open()?;
        out.write(0, packet, duration).await?;
        self.audio_frames.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    fn check_open(&self) -> Result<(), RtcError> {
        if *self.events.ended.borrow() {
            return Err(RtcError::Closed);
        }
        Ok(())
    }

    /// Keyframe requests (PLI or FIR for one of our video SSRCs) from the remote side, one
    /// each, naming the layer asked for: only that layer's encoder need make one. They are
    /// read by our RTCP tap interceptor, since webrtc-rs 0.21 swallows inbound RTCP by
    /// default. The receiver can be taken once; later calls return a receiver that is
    /// already closed.
    pub fn keyframe_requests(&self) -> mpsc::UnboundedReceiver<KeyframeRequest> {
        let taken = self.keyframe_rx.lock().ok().and_then(|mut rx| rx.take());
        taken.unwrap_or_else(|| {
            tracing::warn!("keyframe_requests() taken twice; the second receiver is closed");
            mpsc::unbounded_channel().1
        })
    }

    /// Bandwidth estimate for the outgoing video, bps, updated as RTCP arrives.
    ///
    /// It is a loss-based controller ([`super::LossBasedEstimator`]) driven by the `fraction_lost`
    /// of the receiver reports about our video (> 10 % loss -> -15 %, < 2 % -> +5 %; a
    /// compound RTCP packet with a report for each simulcast layer counts once, at the worst
    /// of them), capped by the remote's REMB when it sends one, clamped to [100 kbps,
    /// 3 Mbps], starting at 1 Mbps (or [`PublishOptions::start_bitrate_bps`]). Receivers
    /// report every second or few (str0m, the SFU, every 5 s for a video without RTX), so
    /// expect that update rate. No delay-based part.
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
            layers: self
                .video
                .iter()
                .flat_map(|v| &v.layers)
                .map(|l| LayerSendStats {
                    rid: l.rid.clone(),
                    ssrc: l.ssrc,
                    frames_sent: l.frames.load(Ordering::Relaxed),
                    bytes_sent: l.bytes.load(Ordering::Relaxed),
                })
                .collect(),
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
