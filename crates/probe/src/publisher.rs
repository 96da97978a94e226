//! [`ProbePublisher`]: publishes synthetic H.264-shaped video and Opus-shaped audio.

use std::collections::VecDeque;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use onstage_client::Meeting;
use str0m::media::{Direction, MediaKind, Pt};
use str0m::rtp::{RtpWrite, Ssrc};
use str0m::{Event, Rtc};
use tokio::sync::{oneshot, watch};

use crate::endpoint::{lock, unix_us, Endpoint, Role, Session};
use crate::shape::{self, Stamp};
use crate::ProbeError;

/// How a [`ProbePublisher`] publishes.
#[derive(Debug, Clone)]
pub struct PublisherOptions {
    /// Average video bitrate; frames average `video_bitrate_bps / 8 / fps` bytes.
    pub video_bitrate_bps: u64,
    pub fps: u32,
    /// Publish an audio track too (20 ms packets of `audio_packet_bytes`).
    pub audio: bool,
    pub audio_packet_bytes: usize,
    /// Largest RTP payload.
    pub mtu: usize,
    /// A keyframe is this many times the average frame.
    pub keyframe_factor: usize,
    /// Keep sending after the server closed the session, as a client that ignores a kick
    /// would: the last encrypted media datagrams are resent raw from the same socket at
    /// the same packet rate.
    pub keep_sending_after_close: bool,
    /// The local IP to send from (the server must be reachable from it).
    pub bind_ip: IpAddr,
    /// How long the WebRTC session may take to connect.
    pub connect_timeout: Duration,
}

impl Default for PublisherOptions {
    fn default() -> Self {
        Self {
            video_bitrate_bps: 1_200_000,
            fps: 30,
            audio: true,
            audio_packet_bytes: 80,
            mtu: 1200,
            keyframe_factor: 4,
            keep_sending_after_close: false,
            bind_ip: IpAddr::V4(Ipv4Addr::LOCALHOST),
            connect_timeout: Duration::from_secs(10),
        }
    }
}

/// What a publisher has done so far.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PublisherStats {
    pub video_packets: u64,
    pub video_bytes: u64,
    pub audio_packets: u64,
    pub audio_bytes: u64,
    pub frames: u64,
    pub keyframes: u64,
    /// PLIs and FIRs that arrived from the SFU.
    pub keyframe_requests: u64,
    /// The server ended the session.
    pub closed: bool,
    /// Datagrams sent raw after the close (`keep_sending_after_close`).
    pub sent_after_close: u64,
}

/// A publishing WebRTC endpoint with synthetic media, paced in real time. Dropping it
/// stops it (without a proper close; use [`ProbePublisher::stop`] for that).
pub struct ProbePublisher {
    stats: Arc<Mutex<PublisherStats>>,
    session: Session,
    connected_at: Instant,
}

impl ProbePublisher {
    /// Offers sendonly video (and audio) to the meeting's SFU through `meeting` (which must
    /// be ON_STAGE), connects, and starts sending with a keyframe. Returns once connected.
    pub async fn start(
        meeting: &Meeting,
        opts: PublisherOptions,
    ) -> Result<ProbePublisher, ProbeError> {
        Self::start_with(opts, |offer| async move {
            Ok(meeting.publish_offer(offer).await?)
        })
        .await
    }

    /// Like [`ProbePublisher::start`], with the signaling done by `signal`: it takes the
    /// sendonly offer to the SFU (any SFU: Janus's VideoRoom `publish`, say) and returns
    /// the SFU's answer.
    pub async fn start_with<F, Fut>(
        opts: PublisherOptions,
        signal: F,
    ) -> Result<ProbePublisher, ProbeError>
    where
        F: FnOnce(String) -> Fut,
        Fut: std::future::Future<Output = Result<String, ProbeError>>,
    {
        let mut lines = vec![(MediaKind::Video, Direction::SendOnly)];
        if opts.audio {
            lines.insert(0, (MediaKind::Audio, Direction::SendOnly));
        }
        let (mut ep, offer) = Endpoint::offer(opts.bind_ip, &lines).await?;
        let answer = signal(offer).await?;
        ep.accept(&answer)?;
        let video = Track::of(&mut ep, MediaKind::Video)?;
        let audio = if opts.audio {
            Some(Track::of(&mut ep, MediaKind::Audio)?)
        } else {
            None
        };
        let stats = Arc::new(Mutex::new(PublisherStats::default()));
        let (closed_tx, closed) = watch::channel(false);
        let (connected_tx, connected_rx) = oneshot::channel();
        let role = Publisher {
            opts: opts.clone(),
            video,
            audio,
            connected: None,
            connected_tx: Some(connected_tx),
            next_frame: None,
            next_audio: None,
            frame_no: 0,
            want_keyframe: true,
            rng: u64::from(unix_us() as u32) | 1,
            ring: VecDeque::new(),
            ring_pos: 0,
            is_closed: false,
            stats: stats.clone(),
            closed_tx,
        };
        let mut me = ProbePublisher {
            stats,
            session: Session::spawn(ep, role, closed),
            connected_at: Instant::now(),
        };
        match tokio::time::timeout(opts.connect_timeout, connected_rx).await {
            Ok(Ok(at)) => {
                me.connected_at = at;
                Ok(me)
            }
            Ok(Err(_)) => Err(ProbeError::ClosedBeforeConnect),
            Err(_) => Err(ProbeError::ConnectTimeout(opts.connect_timeout)),
        }
    }

    /// When the session connected (media started).
    pub fn connected_at(&self) -> Instant {
        self.connected_at
    }

    pub fn stats(&self) -> PublisherStats {
        lock(&self.stats).clone()
    }

    /// Has the server ended the session?
    pub fn is_closed(&self) -> bool {
        self.session.is_closed()
    }

    /// Resolves when the server ends the session.
    pub async fn closed(&self) {
        self.session.closed().await
    }

    /// Stops sending and closes the session; returns the final counts.
    pub async fn stop(mut self) -> PublisherStats {
        self.session.stop().await;
        self.stats()
    }
}

/// One outgoing track.
struct Track {
    ssrc: Ssrc,
    pt: Pt,
    /// Next extended sequence number (starts below 2^15: no rollover to signal).
    seq: u64,
    ts_base: u32,
}

impl Track {
    fn of(ep: &mut Endpoint, kind: MediaKind) -> Result<Track, ProbeError> {
        let (mid, pt) = ep.payload_type(kind)?;
        let ssrc = ep
            .rtc
            .direct_api()
            .stream_tx_by_mid(mid, None)
            .map(|s| s.ssrc())
            .ok_or_else(|| ProbeError::Negotiation(format!("no send stream for {kind:?}")))?;
        let seed = unix_us();
        Ok(Track {
            ssrc,
            pt,
            seq: (seed as u16 & 0x7fff).into(),
            ts_base: (seed as u32).wrapping_mul(2_654_435_761),
        })
    }

    fn write(
        &mut self,
        rtc: &mut Rtc,
        ts: u32,
        now: Instant,
        payload: Vec<u8>,
        marker: bool,
        video: bool,
    ) {
        let seq = self.seq;
        self.seq += 1;
        let mut api = rtc.direct_api();
        if let Some(tx) = api.stream_tx(&self.ssrc) {
            tx.write_rtp(
                RtpWrite::new(
                    self.pt,
                    seq.into(),
                    self.ts_base.wrapping_add(ts),
                    now,
                    payload,
                )
                .marker(marker)
                .nackable(video),
            );
        }
    }
}

/// Encrypted media datagrams kept for raw resending after a close.
const RING: usize = 128;
const AUDIO_INTERVAL: Duration = Duration::from_millis(20);

struct Publisher {
    opts: PublisherOptions,
    video: Track,
    audio: Option<Track>,
    connected: Option<Instant>,
    connected_tx: Option<oneshot::Sender<Instant>>,
    next_frame: Option<Instant>,
    next_audio: Option<Instant>,
    frame_no: u32,
    want_keyframe: bool,
    rng: u64,
    ring: VecDeque<(SocketAddr, Vec<u8>)>,
    ring_pos: usize,
    is_closed: bool,
    stats: Arc<Mutex<PublisherStats>>,
    closed_tx: watch::Sender<bool>,
}

impl Publisher {
    fn frame_interval(&self) -> Duration {
        Duration::from_secs_f64(1.0 / f64::from(self.opts.fps.max(1)))
    }

    /// The size of the next frame: the average, +-25% (xorshift), times the keyframe
    /// factor for keyframes.
    fn frame_size(&mut self, keyframe: bool) -> usize {
        let avg = (self.opts.video_bitrate_bps / 8 / u64::from(self.opts.fps.max(1))).max(64);
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 7;
        self.rng ^= self.rng << 17;
        let jitter = (self.rng % 501) as f64 / 1000.0 + 0.75;
        let size = (avg as f64 * jitter) as usize;
        if keyframe {
            size * self.opts.keyframe_factor.max(1)
        } else {
            size
        }
    }

    fn send_frame(
        &mut self,
        rtc: &mut Rtc,
        alive: bool,
        at: Instant,
        now: Instant,
        raw: &mut Vec<(SocketAddr, Vec<u8>)>,
    ) {
        let Some(start) = self.connected else { return };
        let keyframe = std::mem::take(&mut self.want_keyframe);
        let size = self.frame_size(keyframe);
        if !alive {
            // The kicked client that keeps blasting: same packet rate, old datagrams.
            if self.opts.keep_sending_after_close {
                let count = size.div_ceil(self.opts.mtu.max(1)).max(1);
                self.resend_raw(count, raw);
            }
            return;
        }
        let ts = (at.saturating_duration_since(start).as_secs_f64() * 90_000.0) as u32;
        let stamp = Stamp {
            frame: self.frame_no,
            sent_unix_us: unix_us(),
        };
        self.frame_no = self.frame_no.wrapping_add(1);
        let packets = shape::video_frame(stamp, keyframe, size, self.opts.mtu);
        let count = packets.len();
        let mut bytes = 0;
        for (i, p) in packets.into_iter().enumerate() {
            bytes += p.len() as u64;
            self.video.write(rtc, ts, now, p, i + 1 == count, true);
        }
        let mut s = lock(&self.stats);
        s.frames += 1;
        s.keyframes += u64::from(keyframe);
        s.video_packets += count as u64;
        s.video_bytes += bytes;
    }

    fn send_audio(
        &mut self,
        rtc: &mut Rtc,
        alive: bool,
        at: Instant,
        now: Instant,
        raw: &mut Vec<(SocketAddr, Vec<u8>)>,
    ) {
        let Some(start) = self.connected else { return };
        if !alive {
            if self.opts.keep_sending_after_close {
                self.resend_raw(1, raw);
            }
            return;
        }
        let size = self.opts.audio_packet_bytes;
        let Some(track) = self.audio.as_mut() else {
            return;
        };
        let ts = (at.saturating_duration_since(start).as_millis() as u32 / 20) * 960;
        let payload = shape::audio_packet(track.seq, size);
        let len = payload.len() as u64;
        track.write(rtc, ts, now, payload, false, false);
        let mut s = lock(&self.stats);
        s.audio_packets += 1;
        s.audio_bytes += len;
    }

    fn resend_raw(&mut self, count: usize, raw: &mut Vec<(SocketAddr, Vec<u8>)>) {
        if self.ring.is_empty() {
            return;
        }
        for _ in 0..count {
            self.ring_pos = (self.ring_pos + 1) % self.ring.len();
            raw.push(self.ring[self.ring_pos].clone());
        }
        lock(&self.stats).sent_after_close += count as u64;
    }
}

impl Role for Publisher {
    fn event(&mut self, _rtc: &mut Rtc, event: Event, now: Instant) {
        match event {
            Event::Connected => {
                self.connected = Some(now);
                self.next_frame = Some(now);
                self.next_audio = self.audio.as_ref().map(|_| now);
                self.want_keyframe = true;
                if let Some(tx) = self.connected_tx.take() {
                    let _ = tx.send(now);
                }
            }
            Event::KeyframeRequest(_) => {
                self.want_keyframe = true;
                lock(&self.stats).keyframe_requests += 1;
            }
            Event::Closed => self.closed(now),
            _ => {}
        }
    }

    fn next_tick(&self) -> Option<Instant> {
        if self.is_closed && !self.opts.keep_sending_after_close {
            return None;
        }
        match (self.next_frame, self.next_audio) {
            (Some(v), Some(a)) => Some(v.min(a)),
            (v, a) => v.or(a),
        }
    }

    fn tick(
        &mut self,
        rtc: &mut Rtc,
        alive: bool,
        now: Instant,
        raw: &mut Vec<(SocketAddr, Vec<u8>)>,
    ) {
        let alive = alive && !self.is_closed;
        let interval = self.frame_interval();
        while let Some(at) = self.next_frame.filter(|t| *t <= now) {
            self.send_frame(rtc, alive, at, now, raw);
            // Far behind (a stalled runtime): skip the missed frames rather than burst.
            let next = at + interval;
            self.next_frame = Some(if now > next + Duration::from_secs(1) {
                now + interval
            } else {
                next
            });
        }
        while let Some(at) = self.next_audio.filter(|t| *t <= now) {
            self.send_audio(rtc, alive, at, now, raw);
            let next = at + AUDIO_INTERVAL;
            self.next_audio = Some(if now > next + Duration::from_secs(1) {
                now + AUDIO_INTERVAL
            } else {
                next
            });
        }
    }

    fn sent(&mut self, destination: SocketAddr, contents: &[u8]) {
        if shape::is_rtp_datagram(contents) {
            if self.ring.len() == RING {
                self.ring.pop_front();
            }
            self.ring.push_back((destination, contents.to_vec()));
        }
    }

    fn closed(&mut self, _now: Instant) {
        if !self.is_closed {
            self.is_closed = true;
            lock(&self.stats).closed = true;
            let _ = self.closed_tx.send(true);
            // Never connected: `start` learns of it through the dropped sender.
            self.connected_tx = None;
        }
    }
}
