//! Simulcast: which layers a capture is published as, and which of them the bandwidth
//! carries. Pure, like [`super::plan`]: the publisher and the capture thread ask here.
//!
//! - [`plan`]: a capture of at least 1280x720 is three layers, `q`, `h` and `f` (the
//!   capture divided by 4, 2 and 1); one of at least 640x360 is two, `q` and `h` (by 2
//!   and 1); anything smaller is one plain stream, no simulcast at all.
//! - [`allocate`]: an estimate in, each layer's bitrate out, lowest layer first: the top
//!   layers are the ones cut, the lowest is always on.
//! - [`wanted`]: which layers the SFU says some viewer takes; the others are not encoded.

use onstage_proto::VideoLayer;

/// The most layers a capture is sent as.
pub const MAX_LAYERS: usize = 3;

/// The RIDs (RFC 8851 `a=rid`) of the layers, lowest first: quarter, half, full.
const RIDS: [&str; MAX_LAYERS] = ["q", "h", "f"];

/// A capture at least this large (both sides) has three layers...
const THREE_LAYERS: (u32, u32) = (1280, 720);
/// ...and at least this large two.
const TWO_LAYERS: (u32, u32) = (640, 360);

/// What each layer size is encoded at, at most: (pixels, bit/s), by picture area. Between
/// these points the rate is interpolated by area; below the first it is proportional (never
/// under the encoder's floor), above the last it grows with the area up to
/// [`TOP_LAYER_MAX_BPS`].
const RATES: [(u32, u32); 3] = [
    (320 * 180, 150_000),
    (640 * 360, 450_000),
    (1280 * 720, 1_700_000),
];
/// The most any layer is encoded at (a 1080p top layer).
const TOP_LAYER_MAX_BPS: u32 = 2_500_000;

/// A layer whose share of the estimate is under this fraction of its maximum is not worth
/// sending (a 720p picture at a tenth of its rate is a smear): it is cut, and so is every
/// layer above it. A layer that is off comes back only at [`ON_FRACTION`], so an estimate
/// hovering at the edge does not switch it on and off (each restart costs a keyframe).
const OFF_FRACTION: (u32, u32) = (1, 4);
const ON_FRACTION: (u32, u32) = (1, 3);

/// One layer of a publication.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LayerSpec {
    /// Its RTP stream id; empty for a plain stream (one layer, no simulcast).
    pub rid: &'static str,
    pub width: u32,
    pub height: u32,
    /// The most it is encoded at, bit/s.
    pub max_bitrate_bps: u32,
}

impl LayerSpec {
    /// As the publisher describes it to the SFU (`media.publish`'s `layers`).
    pub fn to_proto(&self) -> VideoLayer {
        VideoLayer {
            rid: self.rid.to_owned(),
            width: self.width,
            height: self.height,
            max_bitrate: u64::from(self.max_bitrate_bps),
        }
    }
}

/// The layers of a `width` x `height` capture, lowest first: at most `max_layers` (1 turns
/// simulcast off). Each layer is the capture divided by 4, 2 or 1, rounded down to even.
/// A single layer is the capture itself at `single_max_bps`, whatever its size: exactly a
/// publication without simulcast.
pub fn plan(width: u32, height: u32, max_layers: usize, single_max_bps: u32) -> Vec<LayerSpec> {
    let fits = |(w, h): (u32, u32)| width >= w && height >= h;
    let count = if fits(THREE_LAYERS) {
        3
    } else if fits(TWO_LAYERS) {
        2
    } else {
        1
    }
    .min(max_layers.max(1));
    if count == 1 {
        return vec![LayerSpec {
            rid: "",
            width,
            height,
            max_bitrate_bps: single_max_bps,
        }];
    }
    (0..count)
        .map(|i| {
            let divisor = 1 << (count - 1 - i);
            let (w, h) = ((width / divisor) & !1, (height / divisor) & !1);
            LayerSpec {
                rid: RIDS[i],
                width: w,
                height: h,
                max_bitrate_bps: max_bitrate(w, h),
            }
        })
        .collect()
}

/// What a `width` x `height` layer is encoded at, at most (see [`RATES`]).
fn max_bitrate(width: u32, height: u32) -> u32 {
    let area = u64::from(width) * u64::from(height);
    let (first_area, first_rate) = (u64::from(RATES[0].0), u64::from(RATES[0].1));
    let rate = if area <= first_area {
        area * first_rate / first_area
    } else {
        let segment = RATES
            .windows(2)
            .find(|pair| area <= u64::from(pair[1].0))
            .unwrap_or(&RATES[RATES.len() - 2..]);
        let ((a0, r0), (a1, r1)) = (segment[0], segment[1]);
        let (a0, r0, a1, r1) = (u64::from(a0), u64::from(r0), u64::from(a1), u64::from(r1));
        // Interpolated between the two points, or extrapolated past the last one.
        r0 + (area - a0) * (r1 - r0) / (a1 - a0)
    };
    u32::try_from(rate)
        .unwrap_or(u32::MAX)
        .clamp(onstage_media::MIN_BITRATE_BPS, TOP_LAYER_MAX_BPS)
}

/// Each layer's bitrate for `estimate_bps`, lowest first; `None` for a layer cut.
///
/// The lowest layer is always on, at up to its maximum (and never under the encoder's
/// floor, [`onstage_media::MIN_BITRATE_BPS`]); each layer above gets what is
/// left, up to its own maximum, as long as that is worth sending (a quarter of its maximum
/// to stay on, a third to come back: `on` says which layers are on now). The first layer
/// cut takes every layer above it along: the top layers are the ones sacrificed. Audio is
/// outside this budget and never cut.
pub fn allocate(layers: &[LayerSpec], estimate_bps: u32, on: &[bool]) -> Vec<Option<u32>> {
    let mut left = estimate_bps;
    let mut cut = false;
    layers
        .iter()
        .enumerate()
        .map(|(i, layer)| {
            let mut share = left.min(layer.max_bitrate_bps);
            if i == 0 {
                // Never paused by the budget: at least what the encoder goes down to.
                share = share.max(onstage_media::MIN_BITRATE_BPS.min(layer.max_bitrate_bps));
            }
            let (num, den) = if on.get(i).copied().unwrap_or(false) {
                OFF_FRACTION
            } else {
                ON_FRACTION
            };
            let enough = u64::from(share) * u64::from(den)
                >= u64::from(layer.max_bitrate_bps) * u64::from(num);
            if i > 0 && (cut || !enough) {
                cut = true;
                return None;
            }
            left = left.saturating_sub(share);
            Some(share)
        })
        .collect()
}

/// Which layers to encode by what the SFU last said some viewer takes (`rids`, from
/// `ServerMessage::Layers`): every layer until it has said anything, the lowest always.
pub fn wanted(layers: &[LayerSpec], rids: Option<&[String]>) -> Vec<bool> {
    layers
        .iter()
        .enumerate()
        .map(|(i, layer)| i == 0 || rids.is_none_or(|rids| rids.iter().any(|r| r == layer.rid)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sizes(layers: &[LayerSpec]) -> Vec<(&str, u32, u32)> {
        layers.iter().map(|l| (l.rid, l.width, l.height)).collect()
    }

    #[test]
    fn a_720p_capture_is_three_layers_lowest_first() {
        let layers = plan(1280, 720, MAX_LAYERS, 2_000_000);
        assert_eq!(
            sizes(&layers),
            [("q", 320, 180), ("h", 640, 360), ("f", 1280, 720)]
        );
        let rates: Vec<u32> = layers.iter().map(|l| l.max_bitrate_bps).collect();
        assert_eq!(rates, [150_000, 450_000, 1_700_000]);
        let proto = layers[2].to_proto();
        assert_eq!(
            proto,
            VideoLayer {
                rid: "f".into(),
                width: 1280,
                height: 720,
                max_bitrate: 1_700_000
            }
        );
    }

    #[test]
    fn layers_follow_the_capture_aspect_and_stay_even() {
        assert_eq!(
            sizes(&plan(1920, 1080, MAX_LAYERS, 0)),
            [("q", 480, 270), ("h", 960, 540), ("f", 1920, 1080)]
        );
        // 4:3 and an odd quotient: 1366 / 4 = 341.5 -> 340.
        assert_eq!(
            sizes(&plan(1366, 1024, MAX_LAYERS, 0)),
            [("q", 340, 256), ("h", 682, 512), ("f", 1366, 1024)]
        );
        let big = plan(1920, 1080, MAX_LAYERS, 0);
        assert!(big
            .windows(2)
            .all(|p| p[0].max_bitrate_bps < p[1].max_bitrate_bps));
        assert_eq!(big[2].max_bitrate_bps, TOP_LAYER_MAX_BPS, "capped");
        assert!(big[0].max_bitrate_bps > 150_000 && big[0].max_bitrate_bps < 450_000);
    }

    #[test]
    fn smaller_captures_have_fewer_layers() {
        assert_eq!(
            sizes(&plan(640, 360, MAX_LAYERS, 0)),
            [("q", 320, 180), ("h", 640, 360)]
        );
        assert_eq!(
            sizes(&plan(960, 720, MAX_LAYERS, 0)),
            [("q", 480, 360), ("h", 960, 720)],
            "720 high but not 1280 wide"
        );
        // Under 640x360: one plain stream, at the caller's rate.
        for (w, h) in [(640, 358), (638, 480), (320, 240)] {
            assert_eq!(
                plan(w, h, MAX_LAYERS, 1_234_000),
                [LayerSpec {
                    rid: "",
                    width: w,
                    height: h,
                    max_bitrate_bps: 1_234_000
                }]
            );
        }
    }

    #[test]
    fn max_layers_caps_the_count_from_the_top() {
        assert_eq!(
            sizes(&plan(1280, 720, 2, 0)),
            [("q", 640, 360), ("h", 1280, 720)]
        );
        for off in [0, 1] {
            let one = plan(1280, 720, off, 2_000_000);
            assert_eq!(sizes(&one), [("", 1280, 720)], "simulcast off");
            assert_eq!(one[0].max_bitrate_bps, 2_000_000);
        }
    }

    #[test]
    fn the_estimate_feeds_the_lowest_layers_first() {
        let layers = plan(1280, 720, MAX_LAYERS, 0);
        let all = [true; 3];
        // Plenty: everyone at its maximum.
        assert_eq!(
            allocate(&layers, 3_000_000, &all),
            [Some(150_000), Some(450_000), Some(1_700_000)]
        );
        // Short of the sum: the top layer takes the cut.
        assert_eq!(
            allocate(&layers, 2_000_000, &all),
            [Some(150_000), Some(450_000), Some(1_400_000)]
        );
        // Too little for a 720p picture worth sending: cut.
        assert_eq!(
            allocate(&layers, 900_000, &all),
            [Some(150_000), Some(450_000), None]
        );
        assert_eq!(
            allocate(&layers, 300_000, &all),
            [Some(150_000), Some(150_000), None]
        );
        // A starved middle layer takes the top one with it, whatever is left.
        assert_eq!(
            allocate(&layers, 200_000, &all),
            [Some(150_000), None, None]
        );
        // The lowest is always on, even under its own maximum.
        assert_eq!(
            allocate(&layers, 100_000, &all),
            [Some(100_000), None, None]
        );
        assert_eq!(allocate(&layers, 0, &all), [Some(100_000), None, None]);
    }

    #[test]
    fn a_layer_comes_back_only_with_headroom() {
        let layers = plan(1280, 720, MAX_LAYERS, 0);
        // f needs a quarter of 1.7 Mbit/s (425 kbit/s) to stay on, a third (567) to
        // come back: between the two it stays as it is.
        let estimate = 600_000 + 500_000;
        assert_eq!(
            allocate(&layers, estimate, &[true, true, true])[2],
            Some(500_000)
        );
        assert_eq!(allocate(&layers, estimate, &[true, true, false])[2], None);
        assert_eq!(
            allocate(&layers, 600_000 + 567_000, &[true, true, false])[2],
            Some(567_000)
        );
        assert_eq!(
            allocate(&layers, 600_000 + 420_000, &[true, true, true])[2],
            None
        );
    }

    #[test]
    fn one_layer_follows_the_estimate_up_to_its_maximum() {
        let one = plan(320, 240, MAX_LAYERS, 2_000_000);
        assert_eq!(allocate(&one, 1_000_000, &[]), [Some(1_000_000)]);
        assert_eq!(allocate(&one, 2_500_000, &[true]), [Some(2_000_000)]);
        assert_eq!(allocate(&one, 100_000, &[true]), [Some(100_000)]);
    }

    #[test]
    fn only_the_layers_someone_takes_are_wanted() {
        let layers = plan(1280, 720, MAX_LAYERS, 0);
        assert_eq!(
            wanted(&layers, None),
            [true, true, true],
            "until the SFU says"
        );
        let rids = |r: &[&str]| r.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(
            wanted(&layers, Some(&rids(&["q", "h"]))),
            [true, true, false]
        );
        assert_eq!(
            wanted(&layers, Some(&rids(&["q", "f"]))),
            [true, false, true]
        );
        assert_eq!(
            wanted(&layers, Some(&rids(&[]))),
            [true, false, false],
            "lowest always"
        );
        assert_eq!(wanted(&layers, Some(&rids(&["x"]))), [true, false, false]);
        let one = plan(320, 240, MAX_LAYERS, 1);
        assert_eq!(wanted(&one, Some(&rids(&[]))), [true]);
    }
}
