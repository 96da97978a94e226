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
    /// How this participant's media comes through, for a mark on its tile (see
    /// [`Reception`]); absent until there is enough to judge.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reception: Option<Reception>,
    /// The last glass-to-glass samples, oldest first.
    #[serde(skip)]
    pub(super) latencies_ms: std::collections::VecDeque<f64>,
    #[serde(skip)]
    pub(super) flow: PictureFlow,
    /// When the first picture or sound came, and when the last freeze ended.
    #[serde(skip)]
    pub(super) first_media: Option<Instant>,
    #[serde(skip)]
    pub(super) last_freeze_end: Option<Instant>,
    /// Since when video is expected (published with the camera on, to a tile that is
    /// shown), as of the last reading; `None` while it is not.
    #[serde(skip)]
    pub(super) video_expected_since: Option<Instant>,
    /// The audio slots of the last [`Reception::AUDIO_WINDOW`]: when, and whether it was
    /// concealed.
    #[serde(skip)]
    pub(super) audio_slots: VecDeque<(Instant, bool)>,
}

/// How a participant's media comes through, judged by what a viewer notices: freezes, a
/// frame rate that fell, sound that had to be made up. The same rule runs in the web SDK
/// (`web-sdk/src/reception.ts`); docs/API.md states it.
///
/// - `poor`: video is published and fewer than 5 pictures came in the last second, or a
///   freeze ended in the last 5 s; or more than 10 % of the last 5 s of sound was concealed.
/// - `fair`: a freeze ended in the last 15 s; or video is published and the last second's
///   frame rate is under 60 % of the best second in the last 10 s; or more than 2 % of the
///   sound was concealed.
/// - `good` otherwise. Nothing is said in the first 2 s after the first media.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Reception {
    Good,
    Fair,
    Poor,
}

impl Reception {
    const WARMUP: Duration = Duration::from_secs(2);
    const RECENT_FREEZE: Duration = Duration::from_secs(5);
    const FREEZE_MEMORY: Duration = Duration::from_secs(15);
    pub(super) const AUDIO_WINDOW: Duration = Duration::from_secs(5);
    const POOR_FPS: f64 = 5.0;
    const FAIR_FPS_SHARE: f64 = 0.6;
    const POOR_CONCEALED: f64 = 0.10;
    const FAIR_CONCEALED: f64 = 0.02;
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
        self.first_media.get_or_insert(at);
        (self.width, self.height) = (width, height);
        if let Some(freeze) = self.flow.picture(at) {
            let ms = freeze.as_millis() as u64;
            self.freezes += 1;
            self.freeze_ms_total += ms;
            self.longest_freeze_ms = self.longest_freeze_ms.max(ms);
            self.last_freeze_end = Some(at);
        }
    }

    /// One 20 ms slot of sound played at `at`: decoded, or `concealed` (its packet never
    /// came).
    pub(super) fn audio_slot(&mut self, at: Instant, concealed: bool) {
        if concealed {
            self.audio_concealed += 1;
        } else {
            self.audio_frames += 1;
        }
        self.first_media.get_or_insert(at);
        self.audio_slots.push_back((at, concealed));
        while self
            .audio_slots
            .front()
            .is_some_and(|&(t, _)| at.saturating_duration_since(t) > Reception::AUDIO_WINDOW)
        {
            self.audio_slots.pop_front();
        }
    }

    /// [`Reception`]'s rule as of `now`, for a participant from whom `expected` is expected
    /// (video: published with the camera on, to a tile that is shown). Video is judged from
    /// [`Reception::WARMUP`] after it is expected again: its first picture waits for a
    /// keyframe, and that wait is no freeze of the link.
    pub fn reception_at(&mut self, now: Instant, expected: MediaKinds) -> Option<Reception> {
        if !expected.video {
            self.video_expected_since = None;
        } else if self.video_expected_since.is_none() {
            self.video_expected_since = Some(now);
        }
        let first = self.first_media?;
        if !(expected.audio || expected.video)
            || now.saturating_duration_since(first) < Reception::WARMUP
        {
            return None;
        }
        let judged_from = self
            .video_expected_since
            .map(|since| since.max(first) + Reception::WARMUP);
        let video = judged_from.is_some_and(|from| from <= now);
        // A freeze counts once video was judged (one that ended since stays remembered
        // after the camera goes off).
        let counted_from = judged_from.or(self.last_freeze_end);
        let freeze_within = |window: Duration| {
            self.last_freeze_end.is_some_and(|end| {
                counted_from.is_some_and(|from| end >= from)
                    && now.saturating_duration_since(end) < window
            })
        };
        let (slots, concealed) = self
            .audio_slots
            .iter()
            .filter(|&&(t, _)| now.saturating_duration_since(t) <= Reception::AUDIO_WINDOW)
            .fold((0u32, 0u32), |(n, c), &(_, lost)| {
                (n + 1, c + u32::from(lost))
            });
        let concealed = f64::from(concealed) / f64::from(slots.max(1));
        let fps = self.flow.fps(now);
        if (video && (fps < Reception::POOR_FPS || freeze_within(Reception::RECENT_FREEZE)))
            || concealed > Reception::POOR_CONCEALED
        {
            Some(Reception::Poor)
        } else if freeze_within(Reception::FREEZE_MEMORY)
            || (video && fps < Reception::FAIR_FPS_SHARE * self.flow.peak_fps(now))
            || concealed > Reception::FAIR_CONCEALED
        {
            Some(Reception::Fair)
        } else {
            Some(Reception::Good)
        }
    }

    /// Fills in what is computed when read: the glass-to-glass percentiles from the
    /// samples kept, the frame rate and the reception as of `now` (the participant
    /// from whom `expected` is expected).
    pub(super) fn compute_at_reading(&mut self, now: Instant, expected: MediaKinds) {
        self.fps = self.flow.fps(now);
        self.reception = self.reception_at(now, expected);
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
    /// How far back the best second is looked for ([`PictureFlow::peak_fps`]).
    const PEAK_WINDOW: Duration = Duration::from_secs(10);

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
            .is_some_and(|&t| at.saturating_duration_since(t) > Self::PEAK_WINDOW + Self::WINDOW)
        {
            self.recent.pop_front();
        }
        freeze
    }

    /// The most pictures that came in any one second of the last ten before `now`.
    pub(super) fn peak_fps(&self, now: Instant) -> f64 {
        let since = now.checked_sub(Self::PEAK_WINDOW);
        let times: Vec<Instant> = self
            .recent
            .iter()
            .copied()
            .filter(|&t| t <= now && since.is_none_or(|s| t >= s))
            .collect();
        // A window ending at each picture: the pictures within the second before it.
        let mut start = 0;
        let mut best = 0;
        for (end, &t) in times.iter().enumerate() {
            while t.saturating_duration_since(times[start]) >= Self::WINDOW {
                start += 1;
            }
            best = best.max(end + 1 - start);
        }
        best as f64
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
        received.compute_at_reading(now, MediaKinds::BOTH);
        assert_eq!(received.glass_to_glass_p50_ms, None);
        received.latencies_ms.extend(samples);
        received.compute_at_reading(now, MediaKinds::BOTH);
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
        r.compute_at_reading(end, MediaKinds::BOTH);
        assert_eq!((r.video_frames, r.width, r.height), (90, 640, 360));
        assert_eq!(r.fps, 31.0, "the pictures of the last 1000 ms");
        assert_eq!(r.freezes, 0);
        // Read a second after the last picture: nothing came in the last second.
        r.compute_at_reading(end + ms(1000), MediaKinds::BOTH);
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

    /// A participant publishing both, its pictures every 33 ms and its sound every 20 ms
    /// from `t0` for `ms`; returns the instant of the last.
    fn steady(r: &mut Received, t0: Instant, from_ms: u64, to_ms: u64) -> Instant {
        let mut at = t0 + ms(from_ms);
        let mut next_audio = at;
        while at < t0 + ms(to_ms) {
            r.picture(640, 360, at);
            while next_audio <= at {
                r.audio_slot(next_audio, false);
                next_audio += ms(20);
            }
            at += ms(33);
        }
        at - ms(33)
    }

    #[test]
    fn reception_is_unknown_at_first_then_good_on_a_steady_stream() {
        let t0 = Instant::now();
        let mut r = Received::default();
        assert_eq!(r.reception_at(t0, MediaKinds::BOTH), None, "nothing came");
        let end = steady(&mut r, t0, 0, 1_500);
        assert_eq!(r.reception_at(end, MediaKinds::BOTH), None, "under 2 s");
        let end = steady(&mut r, t0, 1_500 + 12, 4_000);
        assert_eq!(r.reception_at(end, MediaKinds::BOTH), Some(Reception::Good));
        assert_eq!(
            r.reception_at(end, MediaKinds::NONE),
            None,
            "publishes nothing"
        );
        r.compute_at_reading(end, MediaKinds::BOTH);
        assert_eq!(r.reception, Some(Reception::Good));
    }

    #[test]
    fn a_freeze_is_poor_for_5_s_and_fair_until_15_s() {
        let t0 = Instant::now();
        let mut r = Received::default();
        assert_eq!(
            r.reception_at(t0, MediaKinds::BOTH),
            None,
            "read from the start"
        );
        steady(&mut r, t0, 0, 3_000);
        // 600 ms without a picture, then the stream goes on.
        let end = steady(&mut r, t0, 3_600, 7_000);
        assert_eq!(r.freezes, 1);
        assert_eq!(r.reception_at(end, MediaKinds::BOTH), Some(Reception::Poor));
        let end = steady(&mut r, t0, 7_000, 12_000);
        assert_eq!(r.reception_at(end, MediaKinds::BOTH), Some(Reception::Fair));
        let end = steady(&mut r, t0, 12_000, 19_000);
        assert_eq!(r.reception_at(end, MediaKinds::BOTH), Some(Reception::Good));
    }

    #[test]
    fn a_frame_rate_that_fell_is_fair_and_under_5_fps_poor_unless_the_camera_is_off() {
        let t0 = Instant::now();
        let mut r = Received::default();
        assert_eq!(
            r.reception_at(t0, MediaKinds::BOTH),
            None,
            "read from the start"
        );
        let end = steady(&mut r, t0, 0, 4_000);
        // 15 fps after 30: 50 % of the best second.
        let mut at = end;
        for _ in 0..20 {
            at += ms(66);
            r.picture(640, 360, at);
            r.audio_slot(at, false);
        }
        assert_eq!(r.freezes, 0, "slower, not frozen");
        assert_eq!(r.reception_at(at, MediaKinds::BOTH), Some(Reception::Fair));
        // Then pictures stop: under 5 a second.
        let later = at + ms(1_100);
        assert_eq!(
            r.reception_at(later, MediaKinds::BOTH),
            Some(Reception::Poor)
        );
        // With the camera off, only the sound counts.
        let audio_only = MediaKinds::new(true, false);
        assert_eq!(r.reception_at(later, audio_only), Some(Reception::Good));
    }

    #[test]
    fn the_wait_for_a_picture_after_the_camera_comes_back_is_no_freeze() {
        let t0 = Instant::now();
        let mut r = Received::default();
        r.reception_at(t0, MediaKinds::BOTH);
        let end = steady(&mut r, t0, 0, 3_000);
        assert_eq!(r.reception_at(end, MediaKinds::BOTH), Some(Reception::Good));
        // The camera goes off for 4 s: sound only, and nothing held against the link.
        let audio_only = MediaKinds::new(true, false);
        let mut at = end;
        for _ in 0..200 {
            at += ms(20);
            r.audio_slot(at, false);
        }
        assert_eq!(r.reception_at(at, audio_only), Some(Reception::Good));
        // Back on: the first picture ends a gap the W3C rule calls a freeze.
        assert_eq!(r.reception_at(at, MediaKinds::BOTH), Some(Reception::Good));
        let end = steady(&mut r, t0, 7_400, 10_000);
        assert_eq!(r.freezes, 1, "the gap counted as a freeze in the stats");
        assert_eq!(
            r.reception_at(end, MediaKinds::BOTH),
            Some(Reception::Good),
            "but not against the reception"
        );
        // A real one, once video is judged, is.
        let end = steady(&mut r, t0, 10_600, 12_000);
        assert_eq!(r.freezes, 2);
        assert_eq!(r.reception_at(end, MediaKinds::BOTH), Some(Reception::Poor));
        // And stays remembered when the camera goes off.
        assert_eq!(
            r.reception_at(end + ms(6_000), audio_only),
            Some(Reception::Fair)
        );
    }

    #[test]
    fn concealed_sound_over_2_percent_is_fair_and_over_10_percent_poor() {
        let t0 = Instant::now();
        let audio_only = MediaKinds::new(true, false);
        let run = |every: u64| {
            let mut r = Received::default();
            let mut at = t0;
            for i in 0..300u64 {
                at = t0 + ms(20 * i);
                r.audio_slot(at, i % every == 0);
            }
            r.reception_at(at, audio_only)
        };
        assert_eq!(run(1_000), Some(Reception::Good), "one in 300");
        assert_eq!(run(20), Some(Reception::Fair), "5 %");
        assert_eq!(run(5), Some(Reception::Poor), "20 %");
        // Concealment older than 5 s is forgotten.
        let mut r = Received::default();
        for i in 0..100u64 {
            r.audio_slot(t0 + ms(20 * i), true);
        }
        let mut at = t0;
        for i in 100..500u64 {
            at = t0 + ms(20 * i);
            r.audio_slot(at, false);
        }
        assert_eq!(r.reception_at(at, audio_only), Some(Reception::Good));
        assert!(
            r.audio_slots.len() <= 252,
            "the window is kept, not the past"
        );
        assert_eq!((r.audio_frames, r.audio_concealed), (400, 100));
    }

    #[test]
    fn the_best_second_is_found_in_the_last_ten() {
        let t0 = Instant::now();
        let mut flow = PictureFlow::default();
        for i in 0..30 {
            flow.picture(t0 + ms(33 * i));
        }
        for i in 0..20 {
            flow.picture(t0 + ms(1_000 + 100 * i));
        }
        assert_eq!(flow.peak_fps(t0 + ms(3_000)), 30.0);
        assert_eq!(
            flow.peak_fps(t0 + ms(11_500)),
            10.0,
            "the 30 fps second aged out"
        );
    }
}
