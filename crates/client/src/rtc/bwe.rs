//! The outgoing-video bandwidth estimate.
//!
//! A loss-based controller fed by RTCP receiver reports, capped by REMB when the remote sends
//! one. That is what can be made to work against both ends we talk to: every receiver sends
//! receiver reports (str0m does, webrtc-rs does), and REMB is honoured when present. Delay-based
//! estimation (GCC over TWCC feedback) would react earlier, but in webrtc-rs 0.21 it comes only
//! with its pacer in the send path, which adds queueing delay to every keyframe; not worth it
//! for a meeting on a LAN/loopback SFU.

/// Lower bound of the estimate, bps.
pub const MIN_BITRATE_BPS: u32 = 100_000;
/// Upper bound of the estimate, bps: the three simulcast layers of a 720p capture
/// (0.15 + 0.45 + 1.7 Mbit/s) fit, with room for audio.
pub const MAX_BITRATE_BPS: u32 = 3_000_000;
/// The estimate before any report has arrived, bps.
pub const START_BITRATE_BPS: u32 = 1_000_000;

/// Loss fraction (of 256) above which the estimate drops: > 10 %.
const HIGH_LOSS: u8 = 26;
/// Loss fraction (of 256) below which the estimate grows: < 2 %.
const LOW_LOSS: u8 = 5;

/// The classic loss-based rule (as in GCC's loss controller, simplified): more than 10 % loss
/// -> -15 %, less than 2 % -> +5 %, otherwise hold; the result is capped by the last REMB and
/// clamped to [`MIN_BITRATE_BPS`, `MAX_BITRATE_BPS`].
#[derive(Debug, Clone)]
pub struct LossBasedEstimator {
    loss_based: f64,
    remb: Option<f64>,
}

impl Default for LossBasedEstimator {
    fn default() -> Self {
        LossBasedEstimator {
            loss_based: f64::from(START_BITRATE_BPS),
            remb: None,
        }
    }
}

impl LossBasedEstimator {
    /// An estimator starting at `bps` (clamped to the bounds) instead of
    /// [`START_BITRATE_BPS`]: a simulcast publisher starts at the sum of its layers, so
    /// that all of them go out from the first picture and loss, if there is any, cuts the
    /// top ones (receivers report only every few seconds, so growing there from
    /// [`START_BITRATE_BPS`] would take a minute).
    pub fn starting_at(bps: u32) -> Self {
        LossBasedEstimator {
            loss_based: f64::from(bps.clamp(MIN_BITRATE_BPS, MAX_BITRATE_BPS)),
            remb: None,
        }
    }

    /// Applies one receiver report's `fraction_lost` (RFC 3550: lost/expected * 256 since the
    /// previous report) and returns the new estimate.
    pub fn on_fraction_lost(&mut self, fraction_lost: u8) -> u32 {
        if fraction_lost > HIGH_LOSS {
            self.loss_based *= 0.85;
        } else if fraction_lost < LOW_LOSS {
            self.loss_based *= 1.05;
        }
        self.loss_based = self
            .loss_based
            .clamp(f64::from(MIN_BITRATE_BPS), f64::from(MAX_BITRATE_BPS));
        self.estimate()
    }

    /// Records a REMB (receiver-estimated maximum bitrate) and returns the new estimate.
    pub fn on_remb(&mut self, bitrate_bps: f32) -> u32 {
        if bitrate_bps.is_finite() && bitrate_bps > 0.0 {
            self.remb = Some(f64::from(bitrate_bps));
        }
        self.estimate()
    }

    /// The current estimate, bps.
    pub fn estimate(&self) -> u32 {
        let capped = match self.remb {
            Some(remb) => self.loss_based.min(remb),
            None => self.loss_based,
        };
        // In range by the clamp, so the cast cannot truncate.
        capped.clamp(f64::from(MIN_BITRATE_BPS), f64::from(MAX_BITRATE_BPS)) as u32
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn starts_at_start_rate() {
        assert_eq!(LossBasedEstimator::default().estimate(), START_BITRATE_BPS);
    }

    #[test]
    fn a_start_of_its_own_within_the_bounds() {
        assert_eq!(
            LossBasedEstimator::starting_at(2_300_000).estimate(),
            2_300_000
        );
        assert_eq!(
            LossBasedEstimator::starting_at(9_000_000).estimate(),
            MAX_BITRATE_BPS
        );
        assert_eq!(
            LossBasedEstimator::starting_at(0).estimate(),
            MIN_BITRATE_BPS
        );
        let mut e = LossBasedEstimator::starting_at(2_000_000);
        assert_eq!(e.on_fraction_lost(64), 1_700_000);
    }

    #[test]
    fn high_loss_decreases_15_percent_low_loss_increases_5() {
        let mut e = LossBasedEstimator::default();
        assert_eq!(e.on_fraction_lost(64), 850_000);
        assert_eq!(e.on_fraction_lost(10), 850_000, "between 2 and 10 % holds");
        assert_eq!(e.on_fraction_lost(0), 892_500);
    }

    #[test]
    fn clamped_to_bounds() {
        let mut e = LossBasedEstimator::default();
        for _ in 0..100 {
            e.on_fraction_lost(255);
        }
        assert_eq!(e.estimate(), MIN_BITRATE_BPS);
        for _ in 0..200 {
            e.on_fraction_lost(0);
        }
        assert_eq!(e.estimate(), MAX_BITRATE_BPS);
    }

    #[test]
    fn remb_caps_and_garbage_is_ignored() {
        let mut e = LossBasedEstimator::default();
        assert_eq!(e.on_remb(300_000.0), 300_000);
        assert_eq!(e.on_remb(f32::NAN), 300_000);
        assert_eq!(e.on_remb(-1.0), 300_000);
        assert_eq!(e.on_remb(10.0), MIN_BITRATE_BPS);
        assert_eq!(e.on_remb(5e9), START_BITRATE_BPS);
    }
}
