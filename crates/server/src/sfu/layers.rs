//! What a publisher's video is made of: its simulcast layers, as the SFU receives them.
//! Pure logic, no I/O.
//!
//! A video published with `a=simulcast:send` has a layer per RID; one without has a single
//! layer. [`PublishedLayers`] keeps, per layer, what the publisher said of it (its size
//! and bitrate, or the usual meaning of the RIDs `q`, `h`, `f`), the bitrate the SFU
//! measures, and when its last packet came; it tells the allocator which layers a viewer
//! can be given now and the publisher which ones anyone takes.
//!
//! A layer that stops (its packets no longer come, though nobody paused it) is left out
//! until it comes back: the allocator moves its viewers to a layer that still plays. A
//! layer the SFU paused (nobody takes it, so the publisher stopped encoding it) stays on
//! offer at its described bitrate: taking it again asks the publisher to resume it.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use onstage_proto::VideoLayer;

use super::allocate::{Layer, LayerIndex};

/// A layer whose last packet is older than this (and that nobody paused) has stopped.
pub const LAYER_SILENCE: Duration = Duration::from_millis(1_500);

/// The window of the bitrate meter.
const METER_WINDOW: Duration = Duration::from_secs(1);

/// The meaning of the usual RIDs when a publisher does not describe its layers: a quarter,
/// a half and the full picture of a 1280x720 capture, at the bitrates the SDKs encode
/// them at.
fn usual(rid: &str) -> Option<Layer> {
    let (width, height, bitrate) = match rid {
        "q" => (320, 180, 150_000),
        "h" => (640, 360, 450_000),
        "f" => (1280, 720, 1_700_000),
        _ => return None,
    };
    Some(Layer {
        width,
        height,
        bitrate,
    })
}

/// A single (not simulcast) video, described: the SDKs' default capture and bitrate.
const SINGLE: Layer = Layer {
    width: 640,
    height: 480,
    bitrate: 1_000_000,
};

/// The bitrate of one stream over the last second, from the packets' sizes.
#[derive(Debug, Clone, Default)]
pub struct BitrateMeter {
    samples: VecDeque<(Instant, usize)>,
    bytes: usize,
}

impl BitrateMeter {
    pub fn record(&mut self, now: Instant, bytes: usize) {
        self.samples.push_back((now, bytes));
        self.bytes += bytes;
        self.expire(now);
    }

    fn expire(&mut self, now: Instant) {
        while let Some(&(at, bytes)) = self.samples.front() {
            if now.saturating_duration_since(at) <= METER_WINDOW {
                break;
            }
            self.samples.pop_front();
            self.bytes -= bytes;
        }
    }

    /// Bits per second over the last second; `None` until a whole second has been seen.
    pub fn bitrate(&self, now: Instant) -> Option<u64> {
        let first = self.samples.front()?.0;
        if now.saturating_duration_since(first) < METER_WINDOW / 2 {
            return None;
        }
        let within: usize = self
            .samples
            .iter()
            .filter(|(at, _)| now.saturating_duration_since(*at) <= METER_WINDOW)
            .map(|(_, b)| *b)
            .sum();
        Some(within as u64 * 8 * 1000 / METER_WINDOW.as_millis() as u64)
    }
}

/// One layer as the SFU knows it.
#[derive(Debug, Clone)]
struct LayerState {
    /// Its RID; `None` for a video that is not simulcast.
    rid: Option<String>,
    described: Layer,
    meter: BitrateMeter,
    last_packet: Option<Instant>,
    /// The SFU told the publisher it may stop encoding it.
    paused: bool,
}

/// A publisher's video layers, lowest first.
#[derive(Debug, Clone)]
pub struct PublishedLayers {
    layers: Vec<LayerState>,
}

/// Why a publication's layers could not be made sense of.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LayersError {
    #[error("layer {0:?} is described but not in the offer's a=simulcast")]
    NotOffered(String),
    #[error("layer {0:?} is described twice")]
    Twice(String),
    #[error("layer {0:?} has no size or no bitrate")]
    Empty(String),
    #[error("the offer's a=simulcast names {0:?}, which is neither described nor q, h or f")]
    Unknown(String),
}

impl PublishedLayers {
    /// A video without simulcast: one layer.
    pub fn single() -> Self {
        Self {
            layers: vec![LayerState::new(None, SINGLE)],
        }
    }

    /// The layers of a simulcast video: `offered` is the offer's RIDs in its
    /// `a=simulcast:send` order, `described` the publisher's description (lowest first),
    /// if any. Without a description the RIDs must be the usual `q`, `h`, `f` (ordered so);
    /// with one, every described RID must be offered, and the description's order is the
    /// order of the layers. An offer with fewer than two RIDs is not simulcast.
    pub fn simulcast(offered: &[String], described: &[VideoLayer]) -> Result<Self, LayersError> {
        if offered.len() < 2 && described.len() < 2 {
            return Ok(Self::single());
        }
        let mut layers: Vec<LayerState> = Vec::new();
        if described.is_empty() {
            for rid in offered {
                let layer = usual(rid).ok_or_else(|| LayersError::Unknown(rid.clone()))?;
                layers.push(LayerState::new(Some(rid.clone()), layer));
            }
            layers.sort_by_key(|l| l.described.bitrate);
        } else {
            for d in described {
                if !offered.contains(&d.rid) {
                    return Err(LayersError::NotOffered(d.rid.clone()));
                }
                if layers.iter().any(|l| l.rid.as_deref() == Some(&d.rid)) {
                    return Err(LayersError::Twice(d.rid.clone()));
                }
                if d.width == 0 || d.height == 0 || d.max_bitrate == 0 {
                    return Err(LayersError::Empty(d.rid.clone()));
                }
                let layer = Layer {
                    width: d.width,
                    height: d.height,
                    bitrate: d.max_bitrate,
                };
                layers.push(LayerState::new(Some(d.rid.clone()), layer));
            }
        }
        Ok(Self { layers })
    }

    pub fn is_simulcast(&self) -> bool {
        self.layers.len() > 1
    }

    pub fn len(&self) -> usize {
        self.layers.len()
    }

    pub fn is_empty(&self) -> bool {
        self.layers.is_empty()
    }

    /// The layer a packet with this RID belongs to. A RID nobody declared, or a packet
    /// without one in a simulcast video, belongs to none.
    pub fn index_of(&self, rid: Option<&str>) -> Option<LayerIndex> {
        if !self.is_simulcast() {
            return Some(0);
        }
        let rid = rid?;
        self.layers
            .iter()
            .position(|l| l.rid.as_deref() == Some(rid))
    }

    pub fn rid(&self, layer: LayerIndex) -> Option<&str> {
        self.layers.get(layer)?.rid.as_deref()
    }

    /// A packet of `layer` arrived, `bytes` long.
    pub fn on_packet(&mut self, layer: LayerIndex, bytes: usize, now: Instant) {
        if let Some(l) = self.layers.get_mut(layer) {
            l.meter.record(now, bytes);
            l.last_packet = Some(now);
        }
    }

    /// Has `layer` stopped on its own (no packet for [`LAYER_SILENCE`], not paused)? A
    /// layer that never sent yet has not: the publisher may just be starting.
    fn stopped(&self, layer: &LayerState, now: Instant) -> bool {
        !layer.paused
            && layer
                .last_packet
                .is_some_and(|at| now.saturating_duration_since(at) > LAYER_SILENCE)
    }

    /// The layers a viewer may be given now, for the allocator (lowest first, each with
    /// the bitrate it takes), and which of the publisher's layers each one is. A layer
    /// playing is priced at what it measures (what it described, until measured), a
    /// paused one at what it described.
    pub fn on_offer(&self, now: Instant) -> (Vec<Layer>, Vec<LayerIndex>) {
        let mut offer = Vec::new();
        let mut index = Vec::new();
        for (i, l) in self.layers.iter().enumerate() {
            if self.stopped(l, now) {
                continue;
            }
            let measured = if l.paused { None } else { l.meter.bitrate(now) };
            let bitrate = measured.unwrap_or(l.described.bitrate).max(1);
            offer.push(Layer {
                bitrate,
                ..l.described
            });
            index.push(i);
        }
        (offer, index)
    }

    /// Takes the set of layers anyone takes (or is switching to): the lowest always runs,
    /// so a new viewer has a picture at once. Returns the RIDs to tell the publisher when
    /// the set changed.
    pub fn set_taken(&mut self, taken: &[bool]) -> Option<Vec<String>> {
        if !self.is_simulcast() {
            return None;
        }
        let mut changed = false;
        for (i, l) in self.layers.iter_mut().enumerate() {
            let runs = i == 0 || taken.get(i).copied().unwrap_or(false);
            if l.paused == runs {
                l.paused = !runs;
                // A paused layer is not measured: when it resumes, it starts over. Its
                // last packet is from before the pause; kept, it would count the layer
                // as stopped on its own until the publisher's first packet after the
                // resume (and a 640x360 tile would be given 720p meanwhile).
                l.meter = BitrateMeter::default();
                l.last_packet = None;
                changed = true;
            }
        }
        changed.then(|| {
            self.layers
                .iter()
                .filter(|l| !l.paused)
                .filter_map(|l| l.rid.clone())
                .collect()
        })
    }
}

impl LayerState {
    fn new(rid: Option<String>, described: Layer) -> Self {
        Self {
            rid,
            described,
            meter: BitrateMeter::default(),
            last_packet: None,
            paused: false,
        }
    }
}

/// The RIDs of the first video's `a=simulcast:send` line of an SDP, in its order (only the
/// first alternative of each layer; paused `~` ones included). Empty without simulcast.
pub fn offered_rids(sdp: &str) -> Vec<String> {
    let mut in_video = false;
    for line in sdp.lines().map(str::trim) {
        if line.starts_with("m=") {
            if in_video {
                break;
            }
            in_video = line.starts_with("m=video");
            continue;
        }
        if !in_video {
            continue;
        }
        let Some(spec) = line.strip_prefix("a=simulcast:") else {
            continue;
        };
        let mut words = spec.split_whitespace();
        while let Some(dir) = words.next() {
            let list = words.next().unwrap_or("");
            if dir == "send" {
                return list
                    .split(';')
                    .filter_map(|alts| alts.split(',').next())
                    .map(|rid| rid.trim_start_matches('~').to_owned())
                    .filter(|rid| !rid.is_empty())
                    .collect();
            }
        }
    }
    Vec::new()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rids(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn reads_the_send_rids_of_the_video_in_their_order() {
        let sdp = "v=0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=mid:0\r\n\
                   m=video 9 UDP/TLS/RTP/SAVPF 102\r\na=rid:q send\r\na=rid:h send\r\n\
                   a=rid:f send\r\na=simulcast:send q;~h,h2;f\r\n";
        assert_eq!(offered_rids(sdp), rids(&["q", "h", "f"]));
        assert!(offered_rids("v=0\r\nm=video 9 X 96\r\na=mid:1\r\n").is_empty());
        assert_eq!(
            offered_rids("m=video 9 X 96\r\na=simulcast:recv a;b send x;y\r\n"),
            rids(&["x", "y"])
        );
    }

    #[test]
    fn the_usual_rids_are_ordered_by_their_meaning_whatever_the_offer_order() {
        let l = PublishedLayers::simulcast(&rids(&["f", "q", "h"]), &[]).expect("usual rids");
        assert_eq!(
            (0..3).map(|i| l.rid(i).unwrap_or("")).collect::<Vec<_>>(),
            ["q", "h", "f"]
        );
        assert_eq!(l.index_of(Some("f")), Some(2));
        assert_eq!(l.index_of(Some("x")), None, "a RID nobody declared");
        assert_eq!(l.index_of(None), None, "no RID in a simulcast video");
        assert_eq!(
            PublishedLayers::simulcast(&rids(&["a", "b"]), &[]).unwrap_err(),
            LayersError::Unknown("a".into())
        );
    }

    #[test]
    fn a_description_orders_and_prices_the_layers_and_is_checked() {
        let d = |rid: &str, w, bitrate| VideoLayer {
            rid: rid.into(),
            width: w,
            height: w * 9 / 16,
            max_bitrate: bitrate,
        };
        let l = PublishedLayers::simulcast(
            &rids(&["lo", "hi"]),
            &[d("lo", 480, 200_000), d("hi", 960, 900_000)],
        )
        .expect("described");
        let (offer, index) = l.on_offer(Instant::now());
        assert_eq!(index, [0, 1]);
        assert_eq!((offer[1].width, offer[1].bitrate), (960, 900_000));
        let offered = rids(&["lo", "hi"]);
        assert_eq!(
            PublishedLayers::simulcast(&offered, &[d("lo", 480, 1), d("zz", 960, 1)]).unwrap_err(),
            LayersError::NotOffered("zz".into())
        );
        assert_eq!(
            PublishedLayers::simulcast(&offered, &[d("lo", 480, 1), d("lo", 960, 1)]).unwrap_err(),
            LayersError::Twice("lo".into())
        );
        assert_eq!(
            PublishedLayers::simulcast(&offered, &[d("lo", 0, 1), d("hi", 960, 1)]).unwrap_err(),
            LayersError::Empty("lo".into())
        );
        let single = PublishedLayers::simulcast(&rids(&["q"]), &[]).expect("one rid");
        assert!(!single.is_simulcast());
        assert_eq!(single.index_of(None), Some(0));
    }

    #[test]
    fn the_meter_measures_the_last_second() {
        let t0 = Instant::now();
        let mut m = BitrateMeter::default();
        assert_eq!(m.bitrate(t0), None);
        // 1000 bytes every 10 ms: 800 kbit/s.
        for i in 0..200 {
            m.record(t0 + Duration::from_millis(i * 10), 1000);
        }
        let at = t0 + Duration::from_millis(1990);
        let got = m.bitrate(at).expect("measured");
        assert!((790_000..=810_000).contains(&got), "{got}");
        assert_eq!(m.bitrate(at + Duration::from_secs(5)), Some(0));
    }

    #[test]
    fn a_stopped_layer_leaves_the_offer_and_a_paused_one_stays_on_it() {
        let t0 = Instant::now();
        let mut l = PublishedLayers::simulcast(&rids(&["q", "h", "f"]), &[]).expect("usual");
        for i in 0..100 {
            let at = t0 + Duration::from_millis(i * 20);
            for layer in 0..3 {
                l.on_packet(layer, 500 * (layer + 1), at);
            }
        }
        let at = t0 + Duration::from_secs(2);
        assert_eq!(l.on_offer(at).1, [0, 1, 2]);
        // Nobody takes f: paused, and it is still on offer at its described bitrate.
        assert_eq!(l.set_taken(&[true, true, false]), Some(rids(&["q", "h"])));
        assert_eq!(l.set_taken(&[true, true, false]), None, "told once");
        let later = at + LAYER_SILENCE * 2;
        for layer in 0..2 {
            l.on_packet(layer, 500, later);
        }
        let (offer, index) = l.on_offer(later);
        assert_eq!(index, [0, 1, 2]);
        assert_eq!(offer[2].bitrate, 1_700_000);
        // h stops on its own: it leaves the offer.
        let much_later = later + LAYER_SILENCE * 2;
        l.on_packet(0, 500, much_later);
        assert_eq!(l.on_offer(much_later).1, [0, 2]);
        // The lowest always runs, even if nobody takes it.
        assert_eq!(l.set_taken(&[false, false, true]), Some(rids(&["q", "f"])));
        // f resumed long after its last packet: on offer while the publisher starts it
        // (and h, paused now, too).
        let resumed = much_later + LAYER_SILENCE * 2;
        l.on_packet(0, 500, resumed);
        assert_eq!(l.on_offer(resumed).1, [0, 1, 2]);
    }
}
