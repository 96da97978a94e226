//! The publication: one publish peer with the camera and microphone (as the preset allows)
//! and everything it needs while it runs: the encoded pictures and packets from the
//! capture threads ([`super::capture`]), keyframe requests, the bitrate estimate, the mute
//! state everyone is told.
//!
//! The video is a plain stream or a simulcast of up to three layers ([`super::layers`]):
//! each layer's encoder runs at the rate [`layers::allocate`] gives it from the estimate
//! (the top layers cut first), and only while some viewer takes it ([`layers::wanted`],
//! from the SFU's `layers` message): a layer nobody takes costs no CPU.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, watch};

use crate::rtc::{PublishOptions, PublishPeer};
use crate::{ClientError, ErrorCode, Meeting};

use super::capture::{CaptureControl, Devices, EncodedPicture, VideoOut};
use super::layers::{self, LayerSpec};
use super::plan::{CaptureAction, CaptureInputs};
use super::{transport_for, MediaConfig, Shared, ENCODED_QUEUE};
use onstage_proto::MediaKinds;

/// How often a camera that failed to open is tried again while switched on.
const CAMERA_RETRY: Duration = Duration::from_secs(2);

/// Sleeps until `at` (forever for `None`: the branch is then disabled anyway).
pub(super) async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at.into()).await,
        None => std::future::pending().await,
    }
}

/// Publishes while this participant is on stage: one publish peer, the capture threads
/// feeding it, the bitrate following the estimate, keyframes on request.
pub(super) async fn run_publisher(
    meeting: Meeting,
    config: MediaConfig,
    shared: Arc<Shared>,
    mut stop: watch::Receiver<bool>,
) {
    // Offer what the preset allows, whatever is switched on now: the camera may be turned
    // on later without a new negotiation.
    let preset = meeting.preset();
    let max_layers = if config.simulcast {
        layers::MAX_LAYERS
    } else {
        1
    };
    let (width, height) = (config.video.width, config.video.height);
    // A plain stream goes up to twice the starting rate, as it always has.
    let single_max = config.video_bitrate_bps.saturating_mul(2);
    let specs = layers::plan(width, height, max_layers, single_max);
    let simulcast = preset.can_produce_video && config.capture.video && specs.len() > 1;
    // A simulcast starts with every layer on: the estimate starts at their sum (it only
    // grows a few percent per receiver report) and loss cuts the top ones. A plain
    // stream starts where the estimator does, at the configured rate.
    let start = match simulcast {
        true => specs.iter().map(|l| l.max_bitrate_bps).sum(),
        false => config.video_bitrate_bps,
    };
    // A device left out (`capture`) is not offered either.
    let opts = PublishOptions {
        audio: preset.can_produce_audio && config.capture.audio,
        video: preset.can_produce_video && config.capture.video,
        simulcast: match simulcast {
            true => specs.iter().map(|l| l.rid.to_owned()).collect(),
            false => Vec::new(),
        },
        start_bitrate_bps: simulcast.then_some(start),
    };
    if !opts.audio && !opts.video {
        return;
    }
    let described: Vec<onstage_proto::VideoLayer> = match simulcast {
        true => specs.iter().map(LayerSpec::to_proto).collect(),
        false => Vec::new(),
    };
    let t0 = Instant::now();
    let (peer, offer) =
        match PublishPeer::with_config(opts.clone(), &transport_for(&meeting, &config)).await {
            Ok(pair) => pair,
            Err(e) => return shared.error("publish peer", &e),
        };
    tracing::debug!(after = ?t0.elapsed(), "publish: offer ready");
    // Joining the stage and publishing both tell the whole meeting: a participant that
    // came and went quickly may find its budget spent, and the server says for how long.
    // The publication is what the stage is for, so it waits that out and asks again.
    let answer = loop {
        let attempt = tokio::select! {
            a = meeting.publish_offer_with_layers(offer.clone(), described.clone()) => a,
            _ = stop.changed() => { peer.close().await; return; }
        };
        let wait = match &attempt {
            Err(ClientError::Server(body)) if body.code == ErrorCode::RateLimited => {
                Duration::from_millis(body.retry_after_ms.unwrap_or(500).clamp(50, 5_000))
            }
            _ => break attempt,
        };
        tracing::info!(
            ?wait,
            "media.publish: over the broadcast budget; asking again"
        );
        tokio::select! {
            () = tokio::time::sleep(wait) => {}
            _ = stop.changed() => { peer.close().await; return; }
        }
    };
    let answer = match answer {
        Ok(answer) => answer,
        Err(e) => {
            peer.close().await;
            return shared.error("media.publish", &e);
        }
    };
    if let Err(e) = peer.apply_answer(&answer).await {
        peer.close().await;
        return shared.error("publish answer", &e);
    }
    tracing::debug!(after = ?t0.elapsed(), "publish: answer applied");
    // Room for a few pictures of every layer between the camera thread and the network.
    let (video_tx, mut video_rx) = mpsc::channel::<EncodedPicture>(ENCODED_QUEUE * specs.len());
    let (audio_tx, mut audio_rx) = mpsc::channel::<Vec<u8>>(ENCODED_QUEUE);
    let video_out = VideoOut {
        tx: video_tx,
        layers: specs.clone(),
    };
    let mut devices = Devices::new(Some(audio_tx), Some(video_out));
    let frame_time = Duration::from_secs(1) / config.video.fps.max(1);
    let audio_time = Duration::from_millis(20);
    let mut keyframes = peer.keyframe_requests();
    let mut estimates = peer.bitrate_estimates();
    let mut wanted_layers = meeting.wanted_layers();
    let mut controls = shared.controls.subscribe();
    let mut choice = shared.devices.subscribe();
    let mut connecting = true;
    // What each layer is encoded at (0: not at all): the estimate's share, if anyone
    // takes it.
    let mut rates = Rates::new(specs, start);
    // The SFU may have said already (it does as soon as the publication exists), before
    // this receiver was made: what it said counts as much as what it says next.
    rates.wanted(wanted_layers.borrow_and_update().as_deref());
    let mut clocks = LayerClocks::new(frame_time);
    let mut announced: Option<MediaKinds> = None;
    // Whether the switches, the devices or the connection changed since the captures last
    // followed them. The loop wakes for every encoded picture and audio packet (some 80
    // times a second); following only on a change keeps that path to the write alone.
    let mut changed = true;
    loop {
        if std::mem::take(&mut changed) {
            // Follow the switches: the camera opens and closes with its switch; a muted mic
            // keeps capturing (levels) but nothing is sent.
            let c = shared.controls();
            let inputs = CaptureInputs {
                audio: opts.audio,
                video: opts.video,
                controls: c,
                devices: shared.devices(),
            };
            let actions = devices.follow(&inputs, &config, &shared).await;
            if actions.contains(&CaptureAction::StartVideo) {
                // A camera that just opened starts at the current estimate, with a keyframe.
                if let Some(v) = devices.video() {
                    rates.apply(v);
                    v.keyframe_all();
                }
            }
            let sending = MediaKinds::new(devices.has_audio() && c.mic, devices.video().is_some());
            {
                let mut stats = shared.stats();
                stats.publishing = sending;
                stats.video_bitrate_bps = sending.video.then_some(rates.total());
                if !sending.video {
                    stats.layers.clear();
                }
            }
            if shared.retell_state.swap(false, Ordering::SeqCst) {
                // The server changed what it shows of this publication (a host's mute):
                // whatever the switches say now is told, even if it is what was last told.
                announced = None;
            }
            if !connecting && announced != Some(sending) {
                // Everyone's tiles show the mute state; the publication itself stays.
                let _ = meeting.media_state(sending.audio, sending.video).await;
                announced = Some(sending);
            }
        }
        let mic_retry = devices.audio_retry_at();
        tokio::select! {
            // The microphone failed or went away: everyone is told it is off (muted), and
            // it is opened again when its back-off allows.
            () = shared.capture_ended.notified() => changed = true,
            () = sleep_until(mic_retry), if mic_retry.is_some() => changed = true,
            // Whatever was encoded before the connection was up is lost: start the
            // viewers' pictures with a fresh keyframe.
            r = peer.connected(Duration::from_secs(10)), if connecting => {
                connecting = false;
                changed = true;
                tracing::debug!(after = ?t0.elapsed(), ok = r.is_ok(), "publish: connected");
                if let Some(v) = devices.video() {
                    v.keyframe_all();
                }
            }
            Some(picture) = video_rx.recv() => {
                // Nothing can leave before the connection is up; the first picture after
                // it is a keyframe (see above).
                if connecting {
                    continue;
                }
                let layer = picture.layer;
                // A layer back from a pause (or after skipped pictures) first moves its RTP
                // clock on by the time it was away.
                if let Some(gap) = clocks.gap(layer, picture.timestamp_us) {
                    if let Err(e) = peer.write_video_layer(layer, &[], gap).await {
                        tracing::debug!(error = %e, layer, "video clock");
                    }
                }
                if let Err(e) = peer.write_video_layer(layer, &picture.data, frame_time).await {
                    tracing::debug!(error = %e, layer, "video write");
                }
            }
            Some(packet) = audio_rx.recv() => {
                if connecting || !shared.controls().mic {
                    continue;
                }
                if let Err(e) = peer.write_audio(&packet, audio_time).await {
                    tracing::debug!(error = %e, "audio write");
                }
            }
            Some(request) = keyframes.recv() => {
                // Only the layer asked for: the others' viewers are fine.
                if let Some(layer) = devices.video().and_then(|v| v.layers.get(request.layer)) {
                    layer.keyframe.store(true, Ordering::SeqCst);
                }
                shared.stats().keyframe_requests += 1;
            }
            Ok(()) = estimates.changed() => {
                let estimate = *estimates.borrow_and_update();
                rates.estimate(estimate);
                if let Some(v) = devices.video() {
                    rates.apply(v);
                }
                changed = true;
            }
            Ok(()) = wanted_layers.changed() => {
                let wanted = wanted_layers.borrow_and_update().clone();
                tracing::debug!(?wanted, "layers taken");
                rates.wanted(wanted.as_deref());
                if let Some(v) = devices.video() {
                    rates.apply(v);
                }
                changed = true;
            }
            Ok(()) = controls.changed() => changed = true,
            // Another camera or microphone: the capture restarts (above), the publication
            // stays.
            Ok(()) = choice.changed() => changed = true,
            // A camera that failed to open is tried again now and then while it is switched
            // on (it may have been plugged in), never in a loop.
            () = tokio::time::sleep(CAMERA_RETRY), if devices.video_failed() => changed = true,
            _ = peer.closed() => break,
            _ = stop.changed() => break,
        }
    }
    // Stop capturing first: the devices close as the threads drop their sources.
    drop(video_rx);
    drop(audio_rx);
    peer.close().await;
    devices.end().await;
    let mut stats = shared.stats();
    stats.publishing = MediaKinds::NONE;
    stats.video_bitrate_bps = None;
    stats.layers.clear();
}

/// What each layer of the publication is encoded at: the estimate's share
/// ([`layers::allocate`]) of the layers some viewer takes ([`layers::wanted`]).
struct Rates {
    specs: Vec<LayerSpec>,
    /// The last allocation (which layers the estimate carries).
    allocation: Vec<Option<u32>>,
    wanted: Vec<bool>,
}

impl Rates {
    fn new(specs: Vec<LayerSpec>, estimate: u32) -> Rates {
        let wanted = layers::wanted(&specs, None);
        let allocation = layers::allocate(&specs, estimate, &[]);
        Rates {
            specs,
            allocation,
            wanted,
        }
    }

    fn estimate(&mut self, estimate: u32) {
        let on: Vec<bool> = self.allocation.iter().map(Option::is_some).collect();
        self.allocation = layers::allocate(&self.specs, estimate, &on);
    }

    fn wanted(&mut self, rids: Option<&[String]>) {
        self.wanted = layers::wanted(&self.specs, rids);
    }

    /// Each layer's rate; 0 for one not encoded.
    fn each(&self) -> impl Iterator<Item = u32> + '_ {
        self.allocation
            .iter()
            .zip(&self.wanted)
            .map(|(rate, &wanted)| if wanted { rate.unwrap_or(0) } else { 0 })
    }

    fn total(&self) -> u32 {
        self.each().sum()
    }

    /// Tells the camera thread.
    fn apply(&self, control: &CaptureControl) {
        for (layer, bps) in control.layers.iter().zip(self.each()) {
            layer.bitrate.store(bps, Ordering::SeqCst);
        }
    }
}

/// Each layer's RTP clock, kept in step with the capture: a picture that comes more than
/// half a frame later than one frame after the layer's last (a pause, skipped pictures)
/// first moves the clock on by the difference.
struct LayerClocks {
    frame_time: Duration,
    /// The capture time of each layer's last picture sent, unix microseconds.
    last_us: Vec<Option<u64>>,
}

impl LayerClocks {
    fn new(frame_time: Duration) -> LayerClocks {
        LayerClocks {
            frame_time,
            last_us: Vec::new(),
        }
    }

    /// Records `layer`'s picture captured at `timestamp_us`; the time to move its clock on
    /// by first, if any.
    fn gap(&mut self, layer: usize, timestamp_us: u64) -> Option<Duration> {
        if self.last_us.len() <= layer {
            self.last_us.resize(layer + 1, None);
        }
        let last = self.last_us[layer].replace(timestamp_us)?;
        let since = Duration::from_micros(timestamp_us.checked_sub(last)?);
        let gap = since.checked_sub(self.frame_time)?;
        (gap > self.frame_time / 2).then_some(gap)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_layers_clock_moves_on_over_a_pause() {
        let frame = Duration::from_micros(33_333);
        let mut clocks = LayerClocks::new(frame);
        assert_eq!(clocks.gap(2, 1_000_000), None, "the first picture");
        assert_eq!(clocks.gap(2, 1_033_333), None, "one frame later");
        assert_eq!(clocks.gap(2, 1_070_000), None, "jitter under half a frame");
        assert_eq!(clocks.gap(0, 1_070_000), None, "each layer on its own");
        // Paused for a second: the clock moves on by all of it but the frame it carries.
        assert_eq!(
            clocks.gap(2, 2_070_000),
            Some(Duration::from_micros(1_000_000) - frame)
        );
        assert_eq!(clocks.gap(2, 1_000_000), None, "time going back is ignored");
    }

    #[test]
    fn rates_follow_the_estimate_and_the_layers_taken() {
        let specs = layers::plan(1280, 720, layers::MAX_LAYERS, 0);
        let mut rates = Rates::new(specs, 1_000_000);
        let each = |r: &Rates| r.each().collect::<Vec<_>>();
        assert_eq!(each(&rates), [150_000, 450_000, 0], "the top layer waits");
        rates.estimate(3_000_000);
        assert_eq!(each(&rates), [150_000, 450_000, 1_700_000]);
        assert_eq!(rates.total(), 2_300_000);
        rates.wanted(Some(&["q".to_owned()]));
        assert_eq!(each(&rates), [150_000, 0, 0], "nobody takes h or f");
        rates.wanted(None);
        rates.estimate(200_000);
        assert_eq!(
            each(&rates),
            [150_000, 0, 0],
            "the estimate cuts from the top"
        );

        let plain = layers::plan(320, 240, layers::MAX_LAYERS, 2_000_000);
        let mut rates = Rates::new(plain, 1_000_000);
        assert_eq!(each(&rates), [1_000_000]);
        rates.estimate(2_500_000);
        assert_eq!(
            each(&rates),
            [2_000_000],
            "a plain stream up to its maximum"
        );
        rates.wanted(Some(&[]));
        assert_eq!(each(&rates), [2_000_000], "and always wanted");
    }
}
