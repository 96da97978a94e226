//! Receive-side audio: a jitter buffer per remote source and the mixer that sums them.
//!
//! Packets arrive late, early, twice or never; the speaker wants exactly one 20 ms frame
//! every 20 ms. The [`JitterBuffer`] reorders decoded frames by RTP timestamp (48 kHz
//! clock, 960 per frame, wrapping at 2^32) and holds a couple of frames back so a late
//! packet still makes its slot. A slot whose frame never came is reported as lost, so the
//! caller can run Opus concealment. The [`AudioMixer`] keeps one buffer per source and,
//! once per tick, sums whatever each source has ready.
//!
//! Nothing here reads a clock: the caller's 20 ms tick drives playout, which keeps the
//! logic deterministic and testable.

use std::collections::{BTreeMap, HashMap};

use crate::{AudioFrame, AUDIO_FRAME_SAMPLES};

/// RTP timestamp units per frame (48 kHz * 20 ms).
const TICKS_PER_FRAME: i64 = AUDIO_FRAME_SAMPLES as i64;
/// Smallest playout delay in frames: covers ordinary network jitter (40 ms).
pub const MIN_TARGET_FRAMES: usize = 2;
/// Largest playout delay in frames (200 ms): beyond this, lateness is loss.
pub const MAX_TARGET_FRAMES: usize = 10;
/// A frame this far (in frames) ahead of playout means the stream restarted or jumped:
/// start over rather than wait a long time for it.
const RESYNC_FRAMES: i64 = 50;
/// Pops without a late arrival before the target delay shrinks by one frame (10 s).
const CALM_POPS_BEFORE_SHRINK: u32 = 500;
/// Consecutive pops with an empty buffer after which the source counts as paused and
/// buffering starts again when it resumes.
const EMPTY_POPS_BEFORE_REBUFFER: u32 = 25;

/// What one playout tick of a [`JitterBuffer`] gives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Playout<T = AudioFrame> {
    /// The frame for this slot.
    Frame(T),
    /// This slot's frame is missing (lost or too late): conceal it.
    Lost,
    /// Not playing yet (buffering up to the target delay, or the source is idle).
    Waiting,
}

impl<T> Playout<T> {
    /// The frame, if there is one.
    pub fn into_frame(self) -> Option<T> {
        match self {
            Self::Frame(f) => Some(f),
            Self::Lost | Self::Waiting => None,
        }
    }
}

/// Reorders one remote source's 20 ms frames by RTP timestamp and releases them one per
/// [`pop`](Self::pop) after a small, adaptive delay.
///
/// It holds decoded [`AudioFrame`]s by default (what the [`AudioMixer`] sums), but any
/// payload works: buffering the encoded Opus packets (`JitterBuffer<Vec<u8>>`) and
/// decoding them in playout order, with concealment on [`Playout::Lost`], keeps the
/// decoder's state in stream order even when the network reorders.
///
/// The delay starts at [`MIN_TARGET_FRAMES`] and grows by one frame whenever a frame
/// arrives after its slot was played (observed jitter), or to cover the reordering depth
/// seen; it shrinks back by one after 10 s without late frames. If the sender's clock runs
/// fast and the buffer grows well beyond the target, the oldest frames are dropped to keep
/// latency bounded.
#[derive(Debug, Clone)]
pub struct JitterBuffer<T = AudioFrame> {
    /// Frames by extended (unwrapped) RTP timestamp.
    frames: BTreeMap<i64, T>,
    /// Highest extended timestamp seen, the reference for unwrapping.
    highest: Option<i64>,
    /// Extended timestamp of the next slot to play; `None` while buffering.
    next: Option<i64>,
    /// Everything before this has been played or skipped; later arrivals are stale.
    played_until: Option<i64>,
    target: usize,
    /// The smallest the target shrinks back to.
    min_target: usize,
    /// Ticks to conceal without advancing, so a grown target really adds delay.
    hold: usize,
    calm_pops: u32,
    empty_pops: u32,
    late: u64,
    lost: u64,
}

impl<T> Default for JitterBuffer<T> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T> JitterBuffer<T> {
    /// An empty buffer with the minimum target delay ([`MIN_TARGET_FRAMES`]), for frames
    /// straight from the network.
    pub fn new() -> Self {
        Self::with_min_target(MIN_TARGET_FRAMES)
    }

    /// An empty buffer whose delay starts at, and never shrinks below, `frames` (1 to
    /// [`MAX_TARGET_FRAMES`]). One frame suits a source that is already in order and on an
    /// even pace, where the buffer only bridges two clocks.
    pub fn with_min_target(frames: usize) -> Self {
        let frames = frames.clamp(1, MAX_TARGET_FRAMES);
        Self {
            frames: BTreeMap::new(),
            highest: None,
            next: None,
            played_until: None,
            target: frames,
            min_target: frames,
            hold: 0,
            calm_pops: 0,
            empty_pops: 0,
            late: 0,
            lost: 0,
        }
    }

    /// Current playout delay target, in 20 ms frames.
    pub fn target_frames(&self) -> usize {
        self.target
    }

    /// Frames waiting in the buffer.
    pub fn len(&self) -> usize {
        self.frames.len()
    }

    /// True if no frame is waiting.
    pub fn is_empty(&self) -> bool {
        self.frames.is_empty()
    }

    /// Frames that arrived after their slot was played (counted as jitter).
    pub fn late_frames(&self) -> u64 {
        self.late
    }

    /// Slots played as lost.
    pub fn lost_frames(&self) -> u64 {
        self.lost
    }

    /// The delay target just grew while playing: the next [`poll`](Self::poll) gives
    /// [`Playout::Lost`] to stretch the delay, though no frame is missing. A caller that
    /// decodes in playout order can skip that slot instead of concealing a packet it has.
    pub fn is_stretching(&self) -> bool {
        self.hold > 0
    }

    /// Unwraps a 32-bit RTP timestamp against the highest one seen (RFC 3550 style: the
    /// nearest candidate wins, so a wrap from 0xFFFF_FC40 to 0 reads as +960).
    fn extend(&self, rtp_ts: u32) -> i64 {
        match self.highest {
            None => i64::from(rtp_ts) + (1 << 32),
            Some(h) => {
                let delta = rtp_ts.wrapping_sub(h as u32) as i32;
                h + i64::from(delta)
            }
        }
    }

    /// Adds a decoded frame with its RTP timestamp (48 kHz clock). Duplicates and frames
    /// whose slot has already been played are dropped.
    pub fn push(&mut self, rtp_ts: u32, frame: T) {
        let ts = self.extend(rtp_ts);
        if let Some(next) = self.next {
            if ts - next > RESYNC_FRAMES * TICKS_PER_FRAME
                || next - ts > RESYNC_FRAMES * TICKS_PER_FRAME
            {
                // The stream jumped (new SSRC state, long pause with a reset clock):
                // start over instead of playing a second of "lost" or waiting forever.
                tracing::debug!(ts, next, "jitter buffer resync");
                self.reset_to(ts);
            }
        } else if let Some(h) = self.highest {
            if (ts - h).abs() > RESYNC_FRAMES * TICKS_PER_FRAME {
                self.reset_to(ts);
            }
        }
        if self.played_until.is_some_and(|p| ts < p) {
            self.late += 1;
            self.grow_target(1);
            return;
        }
        if let Some(h) = self.highest {
            if ts < h {
                // Reordered: make sure the delay covers at least this depth.
                let depth = ((h - ts) / TICKS_PER_FRAME) as usize + 1;
                if depth > self.target {
                    self.grow_target(depth - self.target);
                }
            }
        }
        self.highest = Some(self.highest.map_or(ts, |h| h.max(ts)));
        self.frames.entry(ts).or_insert(frame);
    }

    fn reset_to(&mut self, ts: i64) {
        self.frames.clear();
        self.hold = 0;
        self.next = None;
        self.played_until = None;
        self.highest = Some(ts);
        self.empty_pops = 0;
    }

    fn grow_target(&mut self, by: usize) {
        let grown = (self.target + by).min(MAX_TARGET_FRAMES);
        if self.next.is_some() {
            // Already playing: stretch by concealing extra ticks, so the frames that
            // follow really have the longer delay.
            self.hold += grown - self.target;
        }
        self.target = grown;
        self.calm_pops = 0;
    }

    /// One playout tick (call every 20 ms): the frame for the current slot, `None` when
    /// the slot is missing or the buffer is still filling. Use [`poll`](Self::poll) to
    /// tell those two apart.
    pub fn pop(&mut self) -> Option<T> {
        self.poll().into_frame()
    }

    /// One playout tick with the reason when there is no frame.
    pub fn poll(&mut self) -> Playout<T> {
        let Some(next) = self.next else {
            return self.try_start();
        };
        if self.hold > 0 {
            self.hold -= 1;
            return Playout::Lost;
        }
        let mut next = next;
        self.calm_pops += 1;
        if self.calm_pops >= CALM_POPS_BEFORE_SHRINK {
            self.calm_pops = 0;
            if self.target > self.min_target {
                self.target -= 1;
                // Give the frame back: skip one slot if we hold more than the new target.
                if self
                    .highest
                    .is_some_and(|h| (h - next) / TICKS_PER_FRAME + 1 > self.target as i64)
                {
                    self.frames.remove(&next);
                    next += TICKS_PER_FRAME;
                }
            }
        }

        // Sender clock faster than ours, or a burst after a stall: drop the oldest so the
        // delay goes back to the target instead of growing forever.
        if let Some(h) = self.highest {
            let depth = (h - next) / TICKS_PER_FRAME + 1;
            let limit = (self.target * 2 + 2) as i64;
            if depth > limit {
                let new_next = h - (self.target as i64 - 1) * TICKS_PER_FRAME;
                self.frames = self.frames.split_off(&new_next);
                next = new_next;
            }
        }

        self.next = Some(next + TICKS_PER_FRAME);
        self.played_until = Some(next + TICKS_PER_FRAME);
        // Anything older than this slot is stale (e.g. a frame with an odd timestamp).
        self.frames = self.frames.split_off(&next);
        match self.frames.remove(&next) {
            Some(frame) => {
                self.empty_pops = 0;
                Playout::Frame(frame)
            }
            None => {
                if self.frames.is_empty() {
                    self.empty_pops += 1;
                    if self.empty_pops >= EMPTY_POPS_BEFORE_REBUFFER {
                        // The source went quiet: buffer up again when it comes back.
                        self.next = None;
                        self.hold = 0;
                        self.empty_pops = 0;
                        return Playout::Waiting;
                    }
                }
                self.lost += 1;
                Playout::Lost
            }
        }
    }

    fn try_start(&mut self) -> Playout<T> {
        let (Some((&first, _)), Some(h)) = (self.frames.first_key_value(), self.highest) else {
            return Playout::Waiting;
        };
        let buffered = (h - first) / TICKS_PER_FRAME + 1;
        if buffered < self.target as i64 {
            return Playout::Waiting;
        }
        self.next = Some(first);
        self.poll()
    }
}

/// Sums the audio of every remote source into one 20 ms frame per tick.
///
/// Each source's frames wait in a [`JitterBuffer`] of its own, starting at one frame of
/// delay: what comes in is already in stream order and on an even 20 ms pace (the receive
/// path's jitter buffer re-times the packets before decoding), so this buffer only bridges
/// the receive path's clock and the speaker's. It grows on its own should frames come late.
#[derive(Debug, Default)]
pub struct AudioMixer {
    sources: HashMap<String, JitterBuffer>,
}

/// The mixer's delay per source, in frames, before any lateness grows it.
pub const MIXER_MIN_TARGET_FRAMES: usize = 1;

impl AudioMixer {
    /// An empty mixer.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a decoded frame from `source_id` (created on first use) at its RTP timestamp.
    pub fn push(&mut self, source_id: impl AsRef<str>, rtp_ts: u32, frame: AudioFrame) {
        let source_id = source_id.as_ref();
        if let Some(buffer) = self.sources.get_mut(source_id) {
            buffer.push(rtp_ts, frame);
            return;
        }
        self.sources
            .entry(source_id.to_owned())
            .or_insert_with(|| JitterBuffer::with_min_target(MIXER_MIN_TARGET_FRAMES))
            .push(rtp_ts, frame);
    }

    /// Forgets a source (it left the stage) and whatever it had buffered.
    pub fn remove(&mut self, source_id: impl AsRef<str>) {
        self.sources.remove(source_id.as_ref());
    }

    /// Ids of the sources currently mixed.
    pub fn source_ids(&self) -> impl Iterator<Item = &str> {
        self.sources.keys().map(String::as_str)
    }

    /// The jitter buffer of one source, e.g. for its statistics.
    pub fn buffer(&self, source_id: &str) -> Option<&JitterBuffer> {
        self.sources.get(source_id)
    }

    /// One tick (call every 20 ms): the sum, saturated to `i16`, of every source that has
    /// a frame for this slot. Silence if none has. The timestamp is the latest capture
    /// time among the frames mixed (0 if none).
    pub fn mix_next(&mut self) -> AudioFrame {
        let mut acc = vec![0i32; AUDIO_FRAME_SAMPLES];
        let mut timestamp_us = 0;
        for buffer in self.sources.values_mut() {
            if let Some(frame) = buffer.pop() {
                timestamp_us = timestamp_us.max(frame.timestamp_us);
                for (a, &s) in acc.iter_mut().zip(&frame.samples) {
                    *a += i32::from(s);
                }
            }
        }
        AudioFrame {
            samples: acc
                .into_iter()
                .map(|a| a.clamp(i32::from(i16::MIN), i32::from(i16::MAX)) as i16)
                .collect(),
            timestamp_us,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A frame whose samples all equal `tag`, so tests can see which frame came out.
    fn tagged(tag: i16) -> AudioFrame {
        AudioFrame {
            samples: vec![tag; AUDIO_FRAME_SAMPLES],
            timestamp_us: tag as u64,
        }
    }

    fn tag_of(p: &Playout) -> Option<i16> {
        match p {
            Playout::Frame(f) => Some(f.samples[0]),
            _ => None,
        }
    }

    const F: u32 = AUDIO_FRAME_SAMPLES as u32;

    #[test]
    fn waits_for_target_then_plays_in_order() {
        let mut jb = JitterBuffer::new();
        assert_eq!(jb.poll(), Playout::Waiting);
        jb.push(1000, tagged(1));
        assert_eq!(
            jb.poll(),
            Playout::Waiting,
            "one frame is below the 2-frame target"
        );
        jb.push(1000 + F, tagged(2));
        assert_eq!(tag_of(&jb.poll()), Some(1));
        jb.push(1000 + 2 * F, tagged(3));
        assert_eq!(tag_of(&jb.poll()), Some(2));
        assert_eq!(tag_of(&jb.poll()), Some(3));
    }

    #[test]
    fn reorders_within_the_window() {
        let mut jb = JitterBuffer::new();
        jb.push(0, tagged(1));
        jb.push(2 * F, tagged(3));
        jb.push(F, tagged(2)); // arrives after 3
        jb.push(4 * F, tagged(5));
        jb.push(3 * F, tagged(4));
        let out: Vec<_> = (0..5).map(|_| tag_of(&jb.poll())).collect();
        assert_eq!(out, vec![Some(1), Some(2), Some(3), Some(4), Some(5)]);
        assert_eq!(jb.lost_frames(), 0);
    }

    #[test]
    fn loss_is_reported_as_a_gap() {
        let mut jb = JitterBuffer::new();
        jb.push(0, tagged(1));
        jb.push(F, tagged(2));
        jb.push(3 * F, tagged(4)); // frame 3 never comes
        assert_eq!(tag_of(&jb.poll()), Some(1));
        assert_eq!(tag_of(&jb.poll()), Some(2));
        assert_eq!(jb.poll(), Playout::Lost);
        assert_eq!(tag_of(&jb.poll()), Some(4));
        assert_eq!(jb.lost_frames(), 1);
        // pop() gives None for the gap, so the caller can conceal.
        let mut jb2 = JitterBuffer::new();
        jb2.push(0, tagged(1));
        jb2.push(2 * F, tagged(3));
        assert!(jb2.pop().is_some());
        assert!(jb2.pop().is_none());
        assert!(jb2.pop().is_some());
    }

    #[test]
    fn late_frames_are_dropped_and_grow_the_delay() {
        let mut jb = JitterBuffer::new();
        jb.push(0, tagged(1));
        jb.push(F, tagged(2));
        jb.push(3 * F, tagged(4));
        assert_eq!(tag_of(&jb.poll()), Some(1));
        assert_eq!(tag_of(&jb.poll()), Some(2));
        assert_eq!(jb.poll(), Playout::Lost);
        jb.push(2 * F, tagged(3)); // too late: its slot was played
        assert_eq!(jb.late_frames(), 1);
        assert_eq!(jb.target_frames(), MIN_TARGET_FRAMES + 1);
        // The delay grows by one tick (concealed), then playout continues in order.
        assert_eq!(jb.poll(), Playout::Lost);
        assert_eq!(tag_of(&jb.poll()), Some(4));
    }

    #[test]
    fn delay_shrinks_back_when_calm() {
        let mut jb = JitterBuffer::new();
        jb.push(0, tagged(0));
        jb.push(F, tagged(0));
        jb.poll();
        jb.poll();
        jb.push(0, tagged(0)); // late
        assert_eq!(jb.target_frames(), MIN_TARGET_FRAMES + 1);
        let mut ts = 2 * F;
        for _ in 0..CALM_POPS_BEFORE_SHRINK + 5 {
            jb.push(ts, tagged(1));
            ts = ts.wrapping_add(F);
            jb.poll();
        }
        assert_eq!(jb.target_frames(), MIN_TARGET_FRAMES);
    }

    #[test]
    fn timestamps_wrap_around() {
        let mut jb = JitterBuffer::new();
        let start = u32::MAX - F + 1; // 0xFFFF_FC40: the next frame is at 0
        jb.push(start - F, tagged(1));
        jb.push(start, tagged(2));
        jb.push(F, tagged(4)); // after the wrap, arrives before frame 3
        jb.push(0, tagged(3));
        let out: Vec<_> = (0..4).map(|_| tag_of(&jb.poll())).collect();
        assert_eq!(out, vec![Some(1), Some(2), Some(3), Some(4)]);
    }

    #[test]
    fn a_jump_resyncs_instead_of_stalling() {
        let mut jb = JitterBuffer::new();
        jb.push(0, tagged(1));
        jb.push(F, tagged(2));
        assert_eq!(tag_of(&jb.poll()), Some(1));
        let far = 1_000_000 * F;
        jb.push(far, tagged(7));
        jb.push(far + F, tagged(8));
        assert_eq!(tag_of(&jb.poll()), Some(7));
        assert_eq!(tag_of(&jb.poll()), Some(8));
    }

    #[test]
    fn overfull_buffer_drops_oldest_to_bound_latency() {
        let mut jb = JitterBuffer::new();
        jb.push(0, tagged(0));
        jb.push(F, tagged(1));
        assert_eq!(tag_of(&jb.poll()), Some(0));
        for i in 2..20u32 {
            jb.push(i * F, tagged(i as i16));
        }
        // 18 frames queued against a target of 2: skip ahead to the newest ones.
        let first = tag_of(&jb.poll()).expect("a frame");
        assert!(first >= 17, "played {first}, expected a recent frame");
        assert!(jb.len() <= MIN_TARGET_FRAMES);
    }

    #[test]
    fn idle_source_rebuffers() {
        let mut jb = JitterBuffer::new();
        jb.push(0, tagged(1));
        jb.push(F, tagged(2));
        jb.poll();
        jb.poll();
        let mut waiting = false;
        for _ in 0..EMPTY_POPS_BEFORE_REBUFFER + 1 {
            waiting |= jb.poll() == Playout::Waiting;
        }
        assert!(waiting, "an empty buffer goes back to waiting");
        // The source resumes 30 frames later (RTP time kept running).
        jb.push(32 * F, tagged(9));
        assert_eq!(jb.poll(), Playout::Waiting);
        jb.push(33 * F, tagged(10));
        assert_eq!(tag_of(&jb.poll()), Some(9));
    }

    #[test]
    fn mixer_sums_with_saturation() {
        let mut mixer = AudioMixer::new();
        assert_eq!(mixer.mix_next().samples, vec![0; AUDIO_FRAME_SAMPLES]);
        for ts in [0, F] {
            mixer.push("a", ts, tagged(20_000));
            mixer.push("b", ts + 5, tagged(20_000));
            mixer.push("c", ts, tagged(-100));
        }
        let out = mixer.mix_next();
        assert!(out.samples.iter().all(|&s| s == i16::MAX), "clipped high");
        mixer.remove("c");
        for ts in [2 * F, 3 * F] {
            mixer.push("a", ts, tagged(-20_000));
            mixer.push("b", ts + 5, tagged(-20_000));
        }
        mixer.mix_next(); // second frames
        let out = mixer.mix_next();
        assert!(out.samples.iter().all(|&s| s == i16::MIN), "clipped low");
        assert_eq!(mixer.source_ids().count(), 2);
    }

    #[test]
    fn mixer_only_sums_sources_with_a_frame() {
        let mut mixer = AudioMixer::new();
        mixer.push("a", 0, tagged(100));
        mixer.push("a", F, tagged(100));
        mixer.push("b", 0, tagged(7)); // b has nothing for the second slot
        let out = mixer.mix_next();
        assert_eq!(out.samples[0], 107);
        assert_eq!(out.timestamp_us, 100);
        let out = mixer.mix_next();
        assert_eq!(out.samples[0], 100);
        mixer.remove("a");
        mixer.remove("missing"); // no-op
        assert_eq!(mixer.source_ids().collect::<Vec<_>>(), vec!["b"]);
    }

    #[test]
    fn the_mixer_adds_one_frame_of_delay_not_two() {
        // Its input is re-timed already: a frame pushed before a tick is heard at that
        // tick, not held for a second slot.
        let mut mixer = AudioMixer::new();
        mixer.push("a", 1000, tagged(7));
        assert_eq!(mixer.mix_next().samples[0], 7);
        mixer.push("a", 1000 + F, tagged(8));
        assert_eq!(mixer.mix_next().samples[0], 8);
        assert_eq!(
            mixer.buffer("a").map(JitterBuffer::target_frames),
            Some(MIXER_MIN_TARGET_FRAMES)
        );
        // A buffer for the network keeps its two.
        let mut network = JitterBuffer::new();
        network.push(1000, tagged(1));
        assert_eq!(network.poll(), Playout::Waiting);
    }
}
