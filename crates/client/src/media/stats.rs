//! What is published and received, as the app and `media.stats` see it, and the small
//! meters that fill it in (audio levels, glass-to-glass percentiles).

use std::collections::{BTreeMap, VecDeque};
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::UserId;
use onstage_proto::MediaKinds;

/// What was received from one participant on stage.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Received {
    /// Pictures decoded.
    pub video_frames: u64,
    /// Opus packets decoded (20 ms each).
    pub audio_frames: u64,
    /// Decoded pictures carrying a valid synthetic stamp, and those whose frame number did
    /// not increase (each should stay 0).
    pub stamped_frames: u64,
    pub out_of_order_frames: u64,
    /// The last stamp's frame number.
    pub last_frame_number: Option<u32>,
    /// Capture -> decoded delay of stamped pictures (glass to glass), milliseconds: the
    /// median and 95th percentile of the last samples.
    pub glass_to_glass_p50_ms: Option<f64>,
    pub glass_to_glass_p95_ms: Option<f64>,
    /// The dominant frequency of the decoded audio (synthetic tones), Hz.
    pub audio_frequency_hz: Option<f32>,
    /// Decoder errors (each triggers a keyframe request).
    pub decode_errors: u64,
    /// The last decoded picture's size (0 before the first).
    pub width: u32,
    pub height: u32,
    /// Pictures decoded in the last second, as of the reading.
    pub fps: f64,
    /// Freezes (see [`PictureFlow`]): how many, their summed and their longest duration.
    pub freezes: u64,
    pub freeze_ms_total: u64,
    pub longest_freeze_ms: u64,
    /// Audio packets that never arrived and were concealed, and packets that arrived too
    /// late to be played (after their slot was concealed).
    pub audio_concealed: u64,
    pub audio_late: u64,
    /// The last glass-to-glass samples, oldest first.
    #[serde(skip)]
    pub(super) latencies_ms: std::collections::VecDeque<f64>,
    #[serde(skip)]
    pub(super) flow: PictureFlow,
}

/// `media.stats` in the `onstage` command contract, plus diagnostics.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct MediaStats {
    /// What is being published (a muted mic is not).
    pub publishing: MediaKinds,
    pub received: BTreeMap<UserId, Received>,
    /// Devices (or synthetic sources) currently open.
    pub open_sources: usize,
    /// The encoder's current target bitrate while publishing (all layers together).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub video_bitrate_bps: Option<u32>,
    /// The published video's layers, lowest first: one for a plain stream, up to three for
    /// a simulcast (see [`super::layers`]); empty when no video is published.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub layers: Vec<PublishedLayer>,
    /// Keyframe requests the publisher received.
    pub keyframe_requests: u64,
    /// The last error, e.g. a missing camera (`device_not_found`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
}

/// One layer of the published video, as its encoder sees it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct PublishedLayer {
    /// Its RID (`q`, `h`, `f`); empty for a plain stream.
    pub rid: String,
    pub width: u32,
    pub height: u32,
    /// What it is encoded at now; 0 while it is not encoded (cut by the bandwidth
    /// estimate, or taken by no viewer).
    pub bitrate_bps: u32,
    /// Pictures encoded, their bytes, and how many were keyframes.
    pub frames_encoded: u64,
    pub bytes_encoded: u64,
    pub keyframes: u64,
}

/// Sums 20 ms frames into a level every five frames (100 ms).
#[derive(Debug, Default)]
pub(super) struct LevelMeter {
    sum_squares: f64,
    samples: usize,
    frames: u32,
}

impl LevelMeter {
    pub(super) fn add(&mut self, samples: &[i16]) -> Option<f32> {
        self.sum_squares += samples
            .iter()
            .map(|&s| f64::from(s) * f64::from(s))
            .sum::<f64>();
        self.samples += samples.len();
        self.frames += 1;
        if self.frames < 5 {
            return None;
        }
        let rms = (self.sum_squares / self.samples.max(1) as f64).sqrt() / f64::from(i16::MAX);
        *self = LevelMeter::default();
        Some(rms.min(1.0) as f32)
    }
}

impl Received {
    /// One picture decoded at `at`, of `width` x `height`.
    pub(super) fn picture(&mut self, width: u32, height: u32, at: Instant) {
        self.video_frames += 1;
        (self.width, self.height) = (width, height);
        if let Some(freeze) = self.flow.picture(at) {
            let ms = freeze.as_millis() as u64;
            self.freezes += 1;
            self.freeze_ms_total += ms;
            self.longest_freeze_ms = self.longest_freeze_ms.max(ms);
        }
    }

    /// Fills in what is computed when read: the glass-to-glass percentiles from the
    /// samples kept, and the frame rate as of `now`.
    pub(super) fn compute_at_reading(&mut self, now: Instant) {
        self.fps = self.flow.fps(now);
        if self.latencies_ms.is_empty() {
            return;
        }
        let (p50, p95) = percentiles(self.latencies_ms.iter().copied());
        self.glass_to_glass_p50_ms = Some(p50);
        self.glass_to_glass_p95_ms = Some(p95);
    }
}

/// How pictures keep coming: the frame rate over the last second and freezes, by the
/// rule of the W3C's WebRTC statistics (`freezeCount`): a freeze is a gap between two
/// pictures of at least max(3 x the average gap, the average gap + 150 ms), the average
/// over the gaps before it (here the last [`PictureFlow::AVERAGED`]).
#[derive(Debug, Clone, Default, PartialEq)]
pub(super) struct PictureFlow {
    /// When the pictures of the last second (and a little more) came.
    recent: VecDeque<Instant>,
    /// The last gaps, for their average.
    gaps: VecDeque<Duration>,
}

impl PictureFlow {
    const AVERAGED: usize = 30;
    const WINDOW: Duration = Duration::from_secs(1);

    /// A picture at `at`; the freeze it ends, if the gap before it was one.
    pub(super) fn picture(&mut self, at: Instant) -> Option<Duration> {
        let gap = self
            .recent
            .back()
            .map(|&last| at.saturating_duration_since(last));
        let freeze = gap.filter(|&gap| {
            let n = self.gaps.len() as u32;
            n > 0 && {
                let average = self.gaps.iter().sum::<Duration>() / n;
                gap >= (average * 3).max(average + Duration::from_millis(150))
            }
        });
        if let Some(gap) = gap {
            if self.gaps.len() == Self::AVERAGED {
                self.gaps.pop_front();
            }
            self.gaps.push_back(gap);
        }
        self.recent.push_back(at);
        while self
            .recent
            .front()
            .is_some_and(|&t| at.saturating_duration_since(t) > Self::WINDOW * 2)
        {
            self.recent.pop_front();
        }
        freeze
    }

    /// Pictures in the second before `now`.
    pub(super) fn fps(&self, now: Instant) -> f64 {
        self.recent
            .iter()
            .filter(|&&t| now.saturating_duration_since(t) < Self::WINDOW && t <= now)
            .count() as f64
    }
}

pub(super) fn percentiles(samples: impl IntoIterator<Item = f64>) -> (f64, f64) {
    let mut sorted: Vec<f64> = samples.into_iter().collect();
    sorted.sort_by(f64::total_cmp);
    let at = |q: f64| {
        let i = ((sorted.len() as f64 - 1.0) * q).round() as usize;
        sorted.get(i).copied().unwrap_or(0.0)
    };
    (at(0.5), at(0.95))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_of_samples() {
        let samples: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(percentiles(samples.iter().copied()), (51.0, 95.0));
        let now = Instant::now();
        let mut received = Received::default();
        received.compute_at_reading(now);
        assert_eq!(received.glass_to_glass_p50_ms, None);
        received.latencies_ms.extend(samples);
        received.compute_at_reading(now);
        assert_eq!(received.glass_to_glass_p50_ms, Some(51.0));
        assert_eq!(received.glass_to_glass_p95_ms, Some(95.0));
    }

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn a_steady_stream_has_its_rate_and_no_freeze() {
        let t0 = Instant::now();
        let mut r = Received::default();
        for i in 0..90 {
            r.picture(640, 360, t0 + ms(33 * i));
        }
        let end = t0 + ms(33 * 89);
        r.compute_at_reading(end);
        assert_eq!((r.video_frames, r.width, r.height), (90, 640, 360));
        assert_eq!(r.fps, 31.0, "the pictures of the last 1000 ms");
        assert_eq!(r.freezes, 0);
        // Read a second after the last picture: nothing came in the last second.
        r.compute_at_reading(end + ms(1000));
        assert_eq!(r.fps, 0.0);
    }

    #[test]
    fn a_gap_over_three_frames_and_150_ms_is_one_freeze() {
        let t0 = Instant::now();
        let mut r = Received::default();
        let mut at = t0;
        for _ in 0..30 {
            at += ms(33);
            r.picture(320, 180, at);
        }
        // 170 ms: over three frames (100 ms) but not over the average + 150 ms (183 ms).
        at += ms(170);
        r.picture(320, 180, at);
        assert_eq!(r.freezes, 0);
        at += ms(33);
        r.picture(320, 180, at);
        // 600 ms: a freeze, and it counts as such.
        at += ms(600);
        r.picture(1280, 720, at);
        assert_eq!(
            (r.freezes, r.freeze_ms_total, r.longest_freeze_ms),
            (1, 600, 600)
        );
        assert_eq!((r.width, r.height), (1280, 720));
        // At 5 fps a 400 ms gap is not a freeze (3 x 200 ms = 600 ms).
        let mut slow = Received::default();
        for i in 0..20 {
            slow.picture(320, 180, t0 + ms(200 * i));
        }
        slow.picture(320, 180, t0 + ms(200 * 19 + 400));
        assert_eq!(slow.freezes, 0);
        slow.picture(320, 180, t0 + ms(200 * 19 + 400 + 700));
        assert_eq!(slow.freezes, 1);
    }
}
