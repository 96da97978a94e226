//! The receive path: one subscribe peer per participant on stage; video access units to a
//! decoder thread (pictures to the app, delay and order counted), audio through an
//! [`AudioPlayout`] (reordered, decoded in order, concealed) to the levels, the stats and
//! the speaker's mix.

use std::sync::Arc;
use std::time::{Duration, Instant};

use onstage_media::{
    dominant_frequency, now_unix_us, read_stamp, AudioFrame, H264Decoder, JitterBuffer, MediaError,
    OpusDecoder, Playout, AUDIO_SAMPLE_RATE,
};
use tokio::sync::{mpsc, watch};

use crate::rtc::{MediaKind, SubscribePeer};
use crate::{Meeting, UserId};

use super::stats::LevelMeter;
use super::{
    transport_for, AudioLevel, MediaConfig, Origin, Picture, Shared, DECODE_QUEUE, LATENCY_SAMPLES,
};

/// Receives one participant on stage until told to stop or the server ends the session.
pub(super) async fn run_subscription(
    meeting: Meeting,
    config: MediaConfig,
    shared: Arc<Shared>,
    user: UserId,
    mut stop: watch::Receiver<bool>,
) {
    shared.received(&user, |_| {});
    let (peer, offer) = match SubscribePeer::with_config(&transport_for(&meeting, &config)).await {
        Ok(pair) => pair,
        Err(e) => return shared.error("subscribe peer", &e),
    };
    tracing::debug!(%user, "subscribe: offer ready");
    let answer = tokio::select! {
        a = meeting.subscribe_offer(&user, offer) => a,
        _ = stop.changed() => { peer.close().await; return; }
    };
    match answer {
        Ok(answer) => {
            if let Err(e) = peer.apply_answer(&answer).await {
                peer.close().await;
                return shared.error("subscribe answer", &e);
            }
        }
        Err(e) => {
            peer.close().await;
            // Off stage already (a race with the stage event): nothing to receive.
            if e.code() != onstage_proto::ErrorCode::InvalidState {
                shared.error("media.subscribe", &e);
            }
            return;
        }
    }
    let t0 = Instant::now();
    tracing::debug!(%user, "subscribe: answer applied");
    let mut frames = peer.frames();
    let mut first = true;
    let (decode_tx, decode_rx) = std::sync::mpsc::sync_channel::<bytes::Bytes>(DECODE_QUEUE);
    let (keyframe_tx, mut keyframe_rx) = mpsc::unbounded_channel::<()>();
    let decoder = config.decode_video.then(|| {
        let (s, u) = (shared.clone(), user.clone());
        std::thread::spawn(move || video_decode(decode_rx, s, u, keyframe_tx))
    });
    let mut audio = match AudioPlayout::new() {
        Ok(a) => Some(a),
        Err(e) => {
            shared.error("audio decoder", &e);
            None
        }
    };
    // The jitter buffer is played out at the speaker's pace, one 20 ms slot per tick; a
    // tick that came late is caught up at once (burst), so the sender's clock is followed.
    let mut playout = tokio::time::interval(AUDIO_TICK);
    let mut tone: Vec<i16> = Vec::with_capacity(AUDIO_SAMPLE_RATE as usize / 5);
    let mut meter = LevelMeter::default();
    loop {
        tokio::select! {
            frame = frames.recv() => {
                let Some(frame) = frame else { break };
                if first && frame.kind == MediaKind::Video {
                    first = false;
                    tracing::debug!(%user, after = ?t0.elapsed(), keyframe = frame.keyframe, "subscribe: first video frame");
                }
                match frame.kind {
                    MediaKind::Video => {
                        if decoder.is_some() {
                            if let Err(std::sync::mpsc::TrySendError::Full(_)) =
                                decode_tx.try_send(frame.data)
                            {
                                // The decoder fell behind: skip to the next keyframe.
                                let _ = peer.request_keyframe().await;
                            }
                        }
                    }
                    MediaKind::Audio => {
                        let Some(audio) = audio.as_mut() else { continue };
                        audio.arrive(frame.rtp_timestamp, frame.data);
                        let late = audio.late();
                        shared.received(&user, |r| r.audio_late = late);
                    }
                }
            }
            _ = playout.tick(), if audio.is_some() => {
                let Some(played) = audio.as_mut().and_then(AudioPlayout::tick) else { continue };
                let pcm = match played.sound {
                    Sound::Decoded(pcm) => {
                        tone.extend_from_slice(&pcm.samples);
                        let measured = (tone.len() >= tone.capacity()).then(|| {
                            let hz = dominant_frequency(&tone, AUDIO_SAMPLE_RATE);
                            tone.clear();
                            hz
                        });
                        if let Some(level) = meter.add(&pcm.samples) {
                            let _ = shared.levels.send(AudioLevel {
                                origin: Origin::Remote(user.clone()),
                                level,
                            });
                        }
                        let at = Instant::now();
                        shared.received(&user, |r| {
                            r.audio_slot(at, false);
                            if measured.is_some() {
                                r.audio_frequency_hz = measured;
                            }
                        });
                        pcm
                    }
                    // A packet that never came: Opus conceals it from its state, so the mix
                    // hears a smooth guess instead of a click of silence.
                    Sound::Concealed(pcm) => {
                        let at = Instant::now();
                        shared.received(&user, |r| r.audio_slot(at, true));
                        pcm
                    }
                };
                if config.play_audio {
                    if let Ok(mut mixer) = shared.mixer.lock() {
                        mixer.push(user.as_str(), played.rtp_timestamp, pcm);
                    }
                }
            }
            Some(()) = keyframe_rx.recv() => {
                let _ = peer.request_keyframe().await;
            }
            _ = peer.closed() => break,
            _ = stop.changed() => break,
        }
    }
    drop(decode_tx);
    peer.close().await;
    if let Some(t) = decoder {
        let _ = tokio::task::spawn_blocking(move || t.join()).await;
    }
}

fn video_decode(
    rx: std::sync::mpsc::Receiver<bytes::Bytes>,
    shared: Arc<Shared>,
    user: UserId,
    want_keyframe: mpsc::UnboundedSender<()>,
) {
    let mut decoder = match H264Decoder::new() {
        Ok(d) => d,
        Err(e) => return shared.error("video decoder", &e),
    };
    while let Ok(au) = rx.recv() {
        match decoder.decode(&au) {
            Ok(Some(mut frame)) => {
                let now_us = now_unix_us();
                frame.timestamp_us = now_us;
                let stamp = read_stamp(&frame);
                let decoded_at = std::time::Instant::now();
                shared.received(&user, |r| {
                    r.picture(frame.width, frame.height, decoded_at);
                    if let Some(stamp) = stamp {
                        r.stamped_frames += 1;
                        if r.last_frame_number.is_some_and(|n| stamp.frame_number <= n) {
                            r.out_of_order_frames += 1;
                        }
                        r.last_frame_number = Some(stamp.frame_number);
                        let now_ms = (now_us / 1000) & ((1 << 48) - 1);
                        let delay = now_ms.saturating_sub(stamp.capture_time_ms) as f64;
                        // The percentiles are computed when stats are read, not here
                        // on every picture under the lock.
                        if r.latencies_ms.len() >= LATENCY_SAMPLES {
                            r.latencies_ms.pop_front();
                        }
                        r.latencies_ms.push_back(delay);
                    }
                });
                let _ = shared.frames.send(Picture {
                    origin: Origin::Remote(user.clone()),
                    frame: Arc::new(frame),
                });
            }
            Ok(None) => {}
            Err(e) => {
                tracing::debug!(error = %e, "h264 decode");
                shared.received(&user, |r| r.decode_errors += 1);
                let _ = want_keyframe.send(());
            }
        }
    }
}

/// One playout slot: an Opus packet lasts 20 ms.
const AUDIO_TICK: Duration = Duration::from_millis(20);
/// RTP ticks of one 20 ms Opus packet at 48 kHz.
const OPUS_FRAME_TICKS: u32 = 960;

/// What one playout slot gave.
#[derive(Debug)]
enum Sound {
    /// The packet for this slot, decoded.
    Decoded(AudioFrame),
    /// The packet for this slot is missing while later ones are here: concealed.
    Concealed(AudioFrame),
}

#[derive(Debug)]
struct Played {
    rtp_timestamp: u32,
    sound: Sound,
}

/// One participant's received audio: the Opus packets wait in a [`JitterBuffer`] that
/// puts them back in stream order, and are decoded one per 20 ms slot, so the decoder's
/// state follows the stream even when the network reorders. A packet that comes a little
/// late still makes its slot; one that never comes is concealed.
struct AudioPlayout {
    buffer: JitterBuffer<(u32, bytes::Bytes)>,
    decoder: OpusDecoder,
    /// The RTP timestamp of the last slot played: a concealed slot is the one after it.
    last: Option<u32>,
}

impl AudioPlayout {
    fn new() -> Result<Self, MediaError> {
        Ok(AudioPlayout {
            buffer: JitterBuffer::new(),
            decoder: OpusDecoder::new()?,
            last: None,
        })
    }

    fn arrive(&mut self, rtp_timestamp: u32, packet: bytes::Bytes) {
        self.buffer.push(rtp_timestamp, (rtp_timestamp, packet));
    }

    /// Packets that arrived after their slot was played.
    fn late(&self) -> u64 {
        self.buffer.late_frames()
    }

    /// One 20 ms slot: `None` while buffering, when the source is quiet, or for a packet
    /// that does not decode.
    fn tick(&mut self) -> Option<Played> {
        if self.buffer.is_stretching() {
            // The buffer adds a slot of delay after late arrivals; the speaker's mix keeps
            // its own delay, so there is nothing to play or conceal here.
            let _ = self.buffer.poll();
            return None;
        }
        match self.buffer.poll() {
            Playout::Frame((rtp_timestamp, packet)) => {
                self.last = Some(rtp_timestamp);
                match self.decoder.decode(&packet) {
                    Ok(pcm) => Some(Played {
                        rtp_timestamp,
                        sound: Sound::Decoded(pcm),
                    }),
                    Err(e) => {
                        tracing::debug!(error = %e, "opus decode");
                        None
                    }
                }
            }
            Playout::Lost => {
                let rtp_timestamp = self.last?.wrapping_add(OPUS_FRAME_TICKS);
                self.last = Some(rtp_timestamp);
                // Nothing buffered behind this slot: the sender paused (muted) or the
                // stream dried up. Silence, not a made-up continuation.
                if self.buffer.is_empty() {
                    return None;
                }
                Some(Played {
                    rtp_timestamp,
                    sound: Sound::Concealed(self.decoder.decode_lost()),
                })
            }
            Playout::Waiting => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use onstage_media::{AudioSource, OpusEncoder, SyntheticAudio};

    /// Six 20 ms Opus packets of a tone, with RTP timestamps across the 32-bit wrap.
    fn packets() -> Vec<(u32, bytes::Bytes)> {
        let mut tone = SyntheticAudio::new(440.0);
        let mut encoder = OpusEncoder::new(32_000).expect("opus encoder");
        let start = u32::MAX - 2 * OPUS_FRAME_TICKS;
        (0..6u32)
            .map(|i| {
                let frame = tone.next_frame().expect("synthetic frame");
                let packet = encoder.encode(&frame).expect("encode");
                (
                    start.wrapping_add(i * OPUS_FRAME_TICKS),
                    bytes::Bytes::from(packet),
                )
            })
            .collect()
    }

    /// One packet arrives per 20 ms tick in `order`; then the buffer is drained.
    fn play(order: &[usize]) -> (Vec<(u32, bool)>, u64) {
        let packets = packets();
        let mut audio = AudioPlayout::new().expect("opus decoder");
        let mut played = Vec::new();
        let mut record = |p: Option<Played>| {
            if let Some(p) = p {
                played.push((p.rtp_timestamp, matches!(p.sound, Sound::Concealed(_))));
            }
        };
        for &i in order {
            let (ts, packet) = packets[i].clone();
            audio.arrive(ts, packet);
            record(audio.tick());
        }
        for _ in 0..5 {
            record(audio.tick());
        }
        (played, audio.late())
    }

    #[test]
    fn a_reordered_audio_packet_is_played_not_concealed_and_dropped() {
        let all: Vec<u32> = packets().iter().map(|(ts, _)| *ts).collect();
        // Packet 1 comes after packet 2.
        let (played, late) = play(&[0, 2, 1, 3, 4, 5]);
        let expected: Vec<(u32, bool)> = all.iter().map(|&ts| (ts, false)).collect();
        assert_eq!(
            played, expected,
            "every packet decoded in order, none concealed"
        );
        assert_eq!(late, 0);
    }

    #[test]
    fn a_packet_that_never_comes_is_concealed_in_its_slot() {
        let all: Vec<u32> = packets().iter().map(|(ts, _)| *ts).collect();
        let (played, late) = play(&[0, 1, 3, 4, 5]);
        let expected: Vec<(u32, bool)> = all.iter().map(|&ts| (ts, ts == all[2])).collect();
        assert_eq!(played, expected);
        assert_eq!(late, 0);
    }
}
