//! [`SubscribePeer`]: recvonly audio + video from the SFU, reassembled into frames.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rtc::rtcp::payload_feedbacks::picture_loss_indication::PictureLossIndication;
use rtc::rtp_transceiver::rtp_sender::RtpCodecKind;
use rtc::rtp_transceiver::{RTCRtpTransceiverDirection, RTCRtpTransceiverInit};
use tokio::sync::mpsc;
use webrtc::media_stream::track_remote::{TrackRemote, TrackRemoteEvent};
use webrtc::peer_connection::{
    PeerConnection, PeerConnectionEventHandler, RTCIceGatheringState, RTCPeerConnectionState,
};

use super::assemble::{SeqTracker, VideoAssembler};
use super::tap::{RtcpTap, TapShared};
use super::{
    build_peer, complete_offer, spawn_monitor, ConnEvents, EncodedFrame, MediaKind, RtcError,
    TransportConfig,
};

/// How many reassembled frames may wait for the consumer before new ones are dropped.
const FRAME_QUEUE: usize = 256;
/// While frames are dropped for want of a keyframe, PLI is repeated at most this often.
const PLI_REPEAT: Duration = Duration::from_millis(500);

/// Counters for benchmarks and diagnostics, cumulative since creation.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SubscribeStats {
    /// RTP packets received (audio + video, retransmissions included).
    pub packets_received: u64,
    /// RTP payload bytes received.
    pub bytes_received: u64,
    /// Frames handed to the consumer queue (video access units + Opus packets).
    pub frames_completed: u64,
    pub video_frames: u64,
    pub audio_frames: u64,
    /// Packets never received, from sequence-number gaps (RFC 3550 expected - received).
    pub packets_lost: u64,
    /// Video frames thrown away by reassembly: incomplete after loss, or P-frames while
    /// waiting for a keyframe.
    pub frames_discarded: u64,
    /// Complete frames dropped because the consumer did not keep up.
    pub frames_dropped: u64,
    /// PLIs sent (on request and automatic).
    pub keyframe_requests_sent: u64,
}

#[derive(Default)]
struct Counters {
    packets: AtomicU64,
    bytes: AtomicU64,
    video_frames: AtomicU64,
    audio_frames: AtomicU64,
    video_lost: AtomicU64,
    audio_lost: AtomicU64,
    discarded: AtomicU64,
    dropped: AtomicU64,
    plis: AtomicU64,
}

/// State shared between the handle, the event handler and the per-track reader tasks.
struct Shared {
    events: Arc<ConnEvents>,
    frames_tx: Mutex<Option<mpsc::Sender<EncodedFrame>>>,
    /// The remote video track once its first packet arrived, with its SSRC.
    video_track: Mutex<Option<(Arc<dyn TrackRemote>, u32)>>,
    /// A keyframe was requested before the video track existed: ask as soon as it does.
    pending_pli: AtomicBool,
    live_tracks: AtomicUsize,
    counters: Counters,
}

impl Shared {
    fn video(&self) -> Option<(Arc<dyn TrackRemote>, u32)> {
        self.video_track.lock().ok().and_then(|v| v.clone())
    }

    async fn send_pli(&self, track: &dyn TrackRemote, media_ssrc: u32) -> Result<(), RtcError> {
        track
            .write_rtcp(vec![Box::new(PictureLossIndication {
                sender_ssrc: 0,
                media_ssrc,
            })])
            .await
            .map_err(|_| RtcError::Closed)?;
        self.counters.plis.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    fn deliver(&self, tx: &mpsc::Sender<EncodedFrame>, frame: EncodedFrame) {
        let counter = match frame.kind {
            MediaKind::Video => &self.counters.video_frames,
            MediaKind::Audio => &self.counters.audio_frames,
        };
        // Counted before the send, so a consumer that just received a frame never reads stats
        // that do not include it yet.
        counter.fetch_add(1, Ordering::Relaxed);
        if tx.try_send(frame).is_err() {
            // A slow consumer loses frames rather than stalling the network task; a gone one
            // loses everything, which is the same thing from here.
            counter.fetch_sub(1, Ordering::Relaxed);
            self.counters.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Reads one remote track until it or the session ends.
    async fn read_track(self: Arc<Self>, track: Arc<dyn TrackRemote>) {
        let kind = match track.kind().await {
            RtpCodecKind::Video => MediaKind::Video,
            _ => MediaKind::Audio,
        };
        let ssrc = track.ssrcs().await.first().copied().unwrap_or_default();
        let Some(tx) = self.frames_tx.lock().ok().and_then(|tx| tx.clone()) else {
            return; // the session is already over
        };
        self.live_tracks.fetch_add(1, Ordering::AcqRel);
        tracing::debug!(?kind, ssrc, "remote track started");
        if kind == MediaKind::Video {
            if let Ok(mut video) = self.video_track.lock() {
                *video = Some((Arc::clone(&track), ssrc));
            }
        }

        let mut ended = self.events.ended.subscribe();
        let mut seq = SeqTracker::default();
        let mut assembler = VideoAssembler::default();
        let mut last_pli: Option<Instant> = None;
        loop {
            let event = tokio::select! {
                _ = ended.wait_for(|e| *e) => break,
                event = track.poll() => event,
            };
            let packet = match event {
                Some(TrackRemoteEvent::OnRtpPacket(packet)) => packet,
                Some(TrackRemoteEvent::OnEnded) | Some(TrackRemoteEvent::OnError) | None => break,
                Some(_) => continue,
            };
            let now = Instant::now();
            self.counters.packets.fetch_add(1, Ordering::Relaxed);
            self.counters
                .bytes
                .fetch_add(packet.payload.len() as u64, Ordering::Relaxed);
            let (_, newest) = seq.record(packet.header.sequence_number);
            match kind {
                MediaKind::Audio => {
                    self.counters
                        .audio_lost
                        .store(seq.lost(), Ordering::Relaxed);
                    // Late or duplicate audio is useless to a decoder that already moved on.
                    if newest && !packet.payload.is_empty() {
                        let frame = EncodedFrame {
                            kind,
                            rtp_timestamp: packet.header.timestamp,
                            data: packet.payload,
                            keyframe: false,
                            received_at: now,
                        };
                        self.deliver(&tx, frame);
                    }
                }
                MediaKind::Video => {
                    self.counters
                        .video_lost
                        .store(seq.lost(), Ordering::Relaxed);
                    let out = assembler.push(now, packet);
                    self.counters
                        .discarded
                        .fetch_add(out.discarded, Ordering::Relaxed);
                    for frame in out.frames {
                        self.deliver(
                            &tx,
                            EncodedFrame {
                                kind,
                                data: frame.data,
                                rtp_timestamp: frame.rtp_timestamp,
                                keyframe: frame.keyframe,
                                received_at: now,
                            },
                        );
                    }
                    let pending = self.pending_pli.swap(false, Ordering::AcqRel);
                    let want = assembler.waiting_for_keyframe()
                        && last_pli.is_none_or(|t| now.duration_since(t) >= PLI_REPEAT);
                    if pending || want {
                        last_pli = Some(now);
                        if self.send_pli(track.as_ref(), ssrc).await.is_err() {
                            break;
                        }
                    }
                }
            }
        }
        tracing::debug!(?kind, ssrc, "remote track ended");
        if self.live_tracks.fetch_sub(1, Ordering::AcqRel) == 1 {
            // Every track that started has ended: nothing more will come.
            self.events.end();
        }
    }
}

struct Handler {
    shared: Arc<Shared>,
}

#[async_trait::async_trait]
impl PeerConnectionEventHandler for Handler {
    async fn on_ice_gathering_state_change(&self, state: RTCIceGatheringState) {
        self.shared.events.gathering.send_replace(state);
    }

    async fn on_connection_state_change(&self, state: RTCPeerConnectionState) {
        self.shared.events.on_state(state);
    }

    /// Fires at a track's first RTP packet (not at SDP time); the reader runs on its own task
    /// so the connection's driver is never blocked by reassembly.
    async fn on_track(&self, track: Arc<dyn TrackRemote>) {
        tokio::spawn(Arc::clone(&self.shared).read_track(track));
    }
}

/// The subscribing peer connection. Cheap to share: every method takes `&self`.
pub struct SubscribePeer {
    pc: Arc<dyn PeerConnection>,
    shared: Arc<Shared>,
    frames_rx: Mutex<Option<mpsc::Receiver<EncodedFrame>>>,
}

impl SubscribePeer {
    /// Creates the peer connection with recvonly audio + video transceivers and returns it with
    /// the offer SDP (ICE gathering complete).
    pub async fn new() -> Result<(SubscribePeer, String), RtcError> {
        SubscribePeer::with_config(&TransportConfig::default()).await
    }

    /// [`SubscribePeer::new`] with explicit transport settings (sockets, ICE timeouts).
    pub async fn with_config(
        config: &TransportConfig,
    ) -> Result<(SubscribePeer, String), RtcError> {
        let events = ConnEvents::new();
        let (frames_tx, frames_rx) = mpsc::channel(FRAME_QUEUE);
        let shared = Arc::new(Shared {
            events: Arc::clone(&events),
            frames_tx: Mutex::new(Some(frames_tx)),
            video_track: Mutex::new(None),
            pending_pli: AtomicBool::new(false),
            live_tracks: AtomicUsize::new(0),
            counters: Counters::default(),
        });
        // The tap is unused on the receive side except that it must exist in the chain shape
        // both peers share; its channels are simply never read.
        let (tap, _, _) = TapShared::new(None);
        let handler = Arc::new(Handler {
            shared: Arc::clone(&shared),
        });
        let pc = build_peer(
            config,
            super::Direction::Subscribe,
            RtcpTap::new(tap),
            handler,
        )
        .await?;
        for kind in [RtpCodecKind::Audio, RtpCodecKind::Video] {
            pc.add_transceiver_from_kind(
                kind,
                Some(RTCRtpTransceiverInit {
                    direction: RTCRtpTransceiverDirection::Recvonly,
                    ..Default::default()
                }),
            )
            .await
            .map_err(RtcError::internal)?;
        }
        let offer = complete_offer(pc.as_ref(), &events).await?;
        spawn_monitor(Arc::downgrade(&pc), Arc::clone(&events));
        // When the session ends, drop our frame sender: once the reader tasks (which also
        // watch the end) have dropped theirs, the consumer's `recv()` returns `None`.
        let on_end = Arc::clone(&shared);
        tokio::spawn(async move {
            on_end.events.wait_ended().await;
            if let Ok(mut tx) = on_end.frames_tx.lock() {
                tx.take();
            }
        });
        let peer = SubscribePeer {
            pc,
            shared,
            frames_rx: Mutex::new(Some(frames_rx)),
        };
        Ok((peer, offer))
    }

    /// Applies the server's answer. A malformed or unusable answer is [`RtcError::BadSdp`].
    pub async fn apply_answer(&self, sdp: &str) -> Result<(), RtcError> {
        super::apply_answer(self.pc.as_ref(), sdp).await
    }

    /// Waits until ICE+DTLS are connected, or fails on failed/closed/timeout.
    pub async fn connected(&self, timeout: Duration) -> Result<(), RtcError> {
        self.shared.events.wait_connected(timeout).await
    }

    /// Reassembled frames as they complete, in order per kind: video = one H.264 access unit in
    /// Annex-B (delivered from the first keyframe on, and again from the next keyframe after an
    /// unrecoverable loss; a PLI is sent automatically meanwhile), audio = one Opus packet.
    /// Bounded: if the consumer lags, frames are dropped and counted
    /// ([`SubscribeStats::frames_dropped`]), the network task never waits. Ends (`None`) when the
    /// session ends. Can be taken once; later calls return an already-closed receiver.
    pub fn frames(&self) -> mpsc::Receiver<EncodedFrame> {
        let taken = self.frames_rx.lock().ok().and_then(|mut rx| rx.take());
        taken.unwrap_or_else(|| {
            tracing::warn!("frames() taken twice; the second receiver is closed");
            mpsc::channel(1).1
        })
    }

    /// Sends a PLI for the video track (the decoder needs a keyframe, e.g. after loss). Before
    /// the first video packet arrived there is no SSRC to address, so the request is kept and
    /// sent with that first packet.
    pub async fn request_keyframe(&self) -> Result<(), RtcError> {
        if *self.shared.events.ended.borrow() {
            return Err(RtcError::Closed);
        }
        match self.shared.video() {
            Some((track, ssrc)) => self.shared.send_pli(track.as_ref(), ssrc).await,
            None => {
                self.shared.pending_pli.store(true, Ordering::Release);
                Ok(())
            }
        }
    }

    /// Counters so far.
    pub fn stats(&self) -> SubscribeStats {
        let c = &self.shared.counters;
        let video_frames = c.video_frames.load(Ordering::Relaxed);
        let audio_frames = c.audio_frames.load(Ordering::Relaxed);
        SubscribeStats {
            packets_received: c.packets.load(Ordering::Relaxed),
            bytes_received: c.bytes.load(Ordering::Relaxed),
            frames_completed: video_frames + audio_frames,
            video_frames,
            audio_frames,
            packets_lost: c.video_lost.load(Ordering::Relaxed)
                + c.audio_lost.load(Ordering::Relaxed),
            frames_discarded: c.discarded.load(Ordering::Relaxed),
            frames_dropped: c.dropped.load(Ordering::Relaxed),
            keyframe_requests_sent: c.plis.load(Ordering::Relaxed),
        }
    }

    /// Resolves when the session ends: the peer connection failed or closed (here or by the
    /// remote's DTLS `close_notify`), or every remote track ended.
    pub async fn closed(&self) {
        self.shared.events.wait_ended().await
    }

    /// Closes the peer connection. Idempotent.
    pub async fn close(&self) {
        self.shared.events.end();
        if let Err(err) = self.pc.close().await {
            tracing::debug!(%err, "closing the subscribe peer connection");
        }
    }
}
