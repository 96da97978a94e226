//! What is published and received, as the app and `media.stats` see it, and the small
//! meters that fill it in (audio levels, glass-to-glass percentiles).

use std::collections::BTreeMap;

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
    /// Audio packets that never arrived and were concealed, and packets that arrived too
    /// late to be played (after their slot was concealed).
    pub audio_concealed: u64,
    pub audio_late: u64,
    /// The last glass-to-glass samples, oldest first.
    #[serde(skip)]
    pub(super) latencies_ms: std::collections::VecDeque<f64>,
}

/// `media.stats` in the `onstage` command contract, plus diagnostics.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct MediaStats {
    /// What is being published (a muted mic is not).
    pub publishing: MediaKinds,
    pub received: BTreeMap<UserId, Received>,
    /// Devices (or synthetic sources) currently open.
    pub open_sources: usize,
    /// The encoder's current target bitrate while publishing.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub video_bitrate_bps: Option<u32>,
    /// Keyframe requests the publisher received.
    pub keyframe_requests: u64,
    /// The last error, e.g. a missing camera (`device_not_found`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
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
    /// Fills in the glass-to-glass percentiles from the samples kept.
    pub(super) fn compute_percentiles(&mut self) {
        if self.latencies_ms.is_empty() {
            return;
        }
        let (p50, p95) = percentiles(self.latencies_ms.iter().copied());
        self.glass_to_glass_p50_ms = Some(p50);
        self.glass_to_glass_p95_ms = Some(p95);
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
        let mut received = Received::default();
        received.compute_percentiles();
        assert_eq!(received.glass_to_glass_p50_ms, None);
        received.latencies_ms.extend(samples);
        received.compute_percentiles();
        assert_eq!(received.glass_to_glass_p50_ms, Some(51.0));
        assert_eq!(received.glass_to_glass_p95_ms, Some(95.0));
    }
}
