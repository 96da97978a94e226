//! [`ProbeViewer`]: receives one publisher's media and counts it.

use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, Ipv4Addr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use onstage_client::{Meeting, UserId};
use str0m::media::{Direction, MediaKind, Mid};
use str0m::{Event, Rtc};
use tokio::sync::watch;

use crate::endpoint::{lock, unix_us, Endpoint, Role, Session};
use crate::shape;
use crate::ProbeError;

/// How a [`ProbeViewer`] connects.
#[derive(Debug, Clone)]
pub struct ViewerOptions {
    /// The local IP to receive on (the server must be reachable from it).
    pub bind_ip: IpAddr,
    /// Keep every frame's latency (for percentiles); off keeps only the count and sum.
    pub keep_latencies: bool,
}

impl Default for ViewerOptions {
    fn default() -> Self {
        Self {
            bind_ip: IpAddr::V4(Ipv4Addr::LOCALHOST),
            keep_latencies: true,
        }
    }
}

/// Packets of one kind, with loss judged by sequence numbers.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TrackStats {
    /// Packets delivered by the session (after SRTP, RTX unwrapped), duplicates included.
    pub packets: u64,
    pub bytes: u64,
    /// The first sequence number received (extended); loss is counted from here.
    pub first_seq: Option<u64>,
    pub highest_seq: Option<u64>,
    /// Distinct sequence numbers at or after `first_seq`.
    pub unique: u64,
    pub duplicates: u64,
    /// Packets that arrived after a higher sequence number (late, or repaired by RTX).
    pub reordered: u64,
    /// Packets older than the first one received (ignored for loss).
    pub before_first: u64,
}

impl TrackStats {
    /// Sequence numbers from the first to the highest received.
    pub fn expected(&self) -> u64 {
        match (self.first_seq, self.highest_seq) {
            (Some(f), Some(h)) => h - f + 1,
            _ => 0,
        }
    }

    /// Expected but never received (repairs that arrived count as received).
    pub fn lost(&self) -> u64 {
        self.expected().saturating_sub(self.unique)
    }
}

/// What a viewer has received so far.
#[derive(Debug, Clone, Default)]
pub struct ViewerStats {
    /// When [`ProbeViewer::start`] was called.
    pub started_at: Option<Instant>,
    /// When the server's answer was applied (signaling done).
    pub answered_at: Option<Instant>,
    pub connected_at: Option<Instant>,
    pub video: TrackStats,
    pub audio: TrackStats,
    pub first_video_at: Option<Instant>,
    pub first_keyframe_at: Option<Instant>,
    /// Did the first video packet start a keyframe (SPS or IDR start)?
    pub first_video_was_keyframe: Option<bool>,
    /// Frames seen (distinct stamps), keyframes among them.
    pub frames: u64,
    pub keyframes: u64,
    /// Frames whose number was below one already seen.
    pub frames_out_of_order: u64,
    /// Per frame: arrival of its first packet minus the send time stamped in it, in
    /// microseconds (empty unless `keep_latencies`).
    pub latencies_us: Vec<u64>,
    pub latency_sum_us: u64,
    /// The server ended the session.
    pub closed_at: Option<Instant>,
    /// Datagrams, and RTP datagrams among them, that reached the socket after the close.
    pub datagrams_after_close: u64,
    pub rtp_after_close: u64,
}

impl ViewerStats {
    fn since_start(&self, at: Option<Instant>) -> Option<Duration> {
        Some(at?.saturating_duration_since(self.started_at?))
    }

    pub fn time_to_connect(&self) -> Option<Duration> {
        self.since_start(self.connected_at)
    }

    /// From [`ProbeViewer::start`] to the first video packet.
    pub fn time_to_first_video(&self) -> Option<Duration> {
        self.since_start(self.first_video_at)
    }

    /// From [`ProbeViewer::start`] to the first packet that starts a keyframe.
    pub fn time_to_first_keyframe(&self) -> Option<Duration> {
        self.since_start(self.first_keyframe_at)
    }

    pub fn is_closed(&self) -> bool {
        self.closed_at.is_some()
    }
}

/// A receiving WebRTC endpoint subscribed to one publisher. Counts, never decodes.
pub struct ProbeViewer {
    stats: Arc<Mutex<ViewerStats>>,
    connected: watch::Receiver<bool>,
    session: Session,
}

impl ProbeViewer {
    /// Subscribes to `publisher` (recvonly audio + video). Returns once the server's answer
    /// is applied; connecting and receiving go on in the background.
    pub async fn start(meeting: &Meeting, publisher: &UserId) -> Result<ProbeViewer, ProbeError> {
        Self::start_with(meeting, publisher, ViewerOptions::default()).await
    }

    pub async fn start_with(
        meeting: &Meeting,
        publisher: &UserId,
        opts: ViewerOptions,
    ) -> Result<ProbeViewer, ProbeError> {
        let started = Instant::now();
        let lines = [
            (MediaKind::Audio, Direction::RecvOnly),
            (MediaKind::Video, Direction::RecvOnly),
        ];
        let (mut ep, offer) = Endpoint::offer(opts.bind_ip, &lines).await?;
        let answer = meeting.subscribe_offer(publisher, offer).await?;
        ep.accept(&answer)?;
        Ok(Self::spawn(ep, started, &opts))
    }

    /// Answers an SFU's `offer` of a subscription (the SFU offers, as Janus does): receives
    /// what the offer sends. Returns the viewer, already running, and the answer for the
    /// caller to deliver. `started` is when the caller asked for the subscription (the
    /// start of [`ViewerStats::time_to_first_keyframe`]); `answered_at` is now.
    pub async fn answer(
        offer: &str,
        started: Instant,
        opts: ViewerOptions,
    ) -> Result<(ProbeViewer, String), ProbeError> {
        let (ep, answer) = Endpoint::answer(opts.bind_ip, offer).await?;
        Ok((Self::spawn(ep, started, &opts), answer))
    }

    fn spawn(ep: Endpoint, started: Instant, opts: &ViewerOptions) -> ProbeViewer {
        let stats = Arc::new(Mutex::new(ViewerStats {
            started_at: Some(started),
            answered_at: Some(Instant::now()),
            ..ViewerStats::default()
        }));
        let (connected_tx, connected) = watch::channel(false);
        let (closed_tx, closed) = watch::channel(false);
        let role = Viewer {
            kinds: ep.kinds(),
            seen: [HashSet::new(), HashSet::new()],
            last_frame: None,
            keep_latencies: opts.keep_latencies,
            is_closed: false,
            stats: stats.clone(),
            connected_tx,
            closed_tx,
        };
        ProbeViewer {
            stats,
            connected,
            session: Session::spawn(ep, role, closed),
        }
    }

    /// Everything counted so far (a copy, latencies included).
    pub fn stats(&self) -> ViewerStats {
        lock(&self.stats).clone()
    }

    /// When the first packet starting a keyframe arrived: a cheap look, no copy.
    pub fn first_keyframe_at(&self) -> Option<Instant> {
        lock(&self.stats).first_keyframe_at
    }

    /// Frames seen so far: a cheap look, no copy.
    pub fn frames(&self) -> u64 {
        lock(&self.stats).frames
    }

    /// Resolves when the WebRTC session is connected.
    pub async fn connected(&self) {
        let mut rx = self.connected.clone();
        let _ = rx.wait_for(|c| *c).await;
    }

    /// Resolves when the server ends the session.
    pub async fn closed(&self) {
        self.session.closed().await
    }

    pub fn is_closed(&self) -> bool {
        self.session.is_closed()
    }

    /// Closes the session (if still open); returns the final counts.
    pub async fn stop(mut self) -> ViewerStats {
        self.session.stop().await;
        self.stats()
    }
}

struct Viewer {
    kinds: HashMap<Mid, MediaKind>,
    /// Sequence numbers seen: audio, video.
    seen: [HashSet<u64>; 2],
    last_frame: Option<u32>,
    keep_latencies: bool,
    is_closed: bool,
    stats: Arc<Mutex<ViewerStats>>,
    connected_tx: watch::Sender<bool>,
    closed_tx: watch::Sender<bool>,
}

fn record(track: &mut TrackStats, seen: &mut HashSet<u64>, seq: u64, len: usize) {
    track.packets += 1;
    track.bytes += len as u64;
    let (Some(first), Some(highest)) = (track.first_seq, track.highest_seq) else {
        track.first_seq = Some(seq);
        track.highest_seq = Some(seq);
        track.unique = 1;
        seen.insert(seq);
        return;
    };
    if seq < first {
        track.before_first += 1;
    } else if !seen.insert(seq) {
        track.duplicates += 1;
    } else {
        track.unique += 1;
        if seq < highest {
            track.reordered += 1;
        } else {
            track.highest_seq = Some(seq);
        }
    }
}

impl Role for Viewer {
    fn event(&mut self, rtc: &mut Rtc, event: Event, now: Instant) {
        match event {
            Event::Connected => {
                lock(&self.stats).connected_at = Some(now);
                let _ = self.connected_tx.send(true);
            }
            Event::RtpPacket(p) => {
                let mid = rtc.direct_api().stream_rx(&p.header.ssrc).map(|s| s.mid());
                let Some(kind) = mid.and_then(|m| self.kinds.get(&m).copied()) else {
                    return;
                };
                let seq = *p.seq_no;
                let mut s = lock(&self.stats);
                match kind {
                    MediaKind::Audio => {
                        record(&mut s.audio, &mut self.seen[0], seq, p.payload.len())
                    }
                    MediaKind::Video => {
                        record(&mut s.video, &mut self.seen[1], seq, p.payload.len());
                        let keyframe = shape::starts_keyframe(&p.payload);
                        if s.first_video_at.is_none() {
                            s.first_video_at = Some(now);
                            s.first_video_was_keyframe = Some(keyframe);
                        }
                        if keyframe && s.first_keyframe_at.is_none() {
                            s.first_keyframe_at = Some(now);
                        }
                        if let Some(stamp) = shape::stamp_of(&p.payload) {
                            match self.last_frame {
                                // The IDR's start repeats its SPS's stamp.
                                Some(last) if stamp.frame == last => {}
                                Some(last) if stamp.frame < last => s.frames_out_of_order += 1,
                                _ => {
                                    self.last_frame = Some(stamp.frame);
                                    s.frames += 1;
                                    s.keyframes += u64::from(keyframe);
                                    let latency = unix_us().saturating_sub(stamp.sent_unix_us);
                                    s.latency_sum_us += latency;
                                    if self.keep_latencies {
                                        s.latencies_us.push(latency);
                                    }
                                }
                            }
                        }
                    }
                }
            }
            Event::Closed => self.closed(now),
            _ => {}
        }
    }

    fn next_tick(&self) -> Option<Instant> {
        None
    }

    fn tick(
        &mut self,
        _: &mut Rtc,
        _: bool,
        _: Instant,
        _: &mut Vec<(std::net::SocketAddr, Vec<u8>)>,
    ) {
    }

    fn closed(&mut self, now: Instant) {
        if !self.is_closed {
            self.is_closed = true;
            lock(&self.stats).closed_at = Some(now);
            let _ = self.closed_tx.send(true);
        }
    }

    fn received_after_close(&mut self, data: &[u8], _now: Instant) {
        let mut s = lock(&self.stats);
        s.datagrams_after_close += 1;
        s.rtp_after_close += u64::from(shape::is_rtp_datagram(data));
    }
}
