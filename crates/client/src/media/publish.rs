//! The publication: one publish peer with the camera and microphone (as the preset allows)
//! and everything it needs while it runs: the encoded pictures and packets from the
//! capture threads ([`super::capture`]), keyframe requests, the bitrate estimate, the mute
//! state everyone is told.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, watch};

use crate::rtc::{PublishOptions, PublishPeer};
use crate::{ClientError, ErrorCode, Meeting};

use super::capture::Devices;
use super::plan::{CaptureAction, CaptureInputs};
use super::{transport_for, MediaConfig, Shared, ENCODED_QUEUE};
use onstage_proto::MediaKinds;

/// How often a camera that failed to open is tried again while switched on.
const CAMERA_RETRY: Duration = Duration::from_secs(2);

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
    let opts = PublishOptions {
        audio: preset.can_produce_audio,
        video: preset.can_produce_video,
        ..PublishOptions::default()
    };
    if !opts.audio && !opts.video {
        return;
    }
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
            a = meeting.publish_offer(offer.clone()) => a,
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
    let (video_tx, mut video_rx) = mpsc::channel::<Vec<u8>>(ENCODED_QUEUE);
    let (audio_tx, mut audio_rx) = mpsc::channel::<Vec<u8>>(ENCODED_QUEUE);
    let mut devices = Devices::new(Some(audio_tx), Some(video_tx));
    let frame_time = Duration::from_secs(1) / config.video.fps.max(1);
    let audio_time = Duration::from_millis(20);
    let mut keyframes = peer.keyframe_requests();
    let mut estimates = peer.bitrate_estimates();
    let mut controls = shared.controls.subscribe();
    let mut choice = shared.devices.subscribe();
    let mut connecting = true;
    let mut bitrate = config.video_bitrate_bps;
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
                    v.bitrate.store(bitrate, Ordering::SeqCst);
                    v.keyframe.store(true, Ordering::SeqCst);
                }
            }
            let sending = MediaKinds::new(devices.has_audio() && c.mic, devices.video().is_some());
            {
                let mut stats = shared.stats();
                stats.publishing = sending;
                stats.video_bitrate_bps = sending.video.then_some(bitrate);
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
        tokio::select! {
            // Whatever was encoded before the connection was up is lost: start the
            // viewers' pictures with a fresh keyframe.
            r = peer.connected(Duration::from_secs(10)), if connecting => {
                connecting = false;
                changed = true;
                tracing::debug!(after = ?t0.elapsed(), ok = r.is_ok(), "publish: connected");
                if let Some(v) = devices.video() {
                    v.keyframe.store(true, Ordering::SeqCst);
                }
            }
            Some(au) = video_rx.recv() => {
                // Nothing can leave before the connection is up; the first picture after
                // it is a keyframe (see above).
                if connecting {
                    continue;
                }
                if let Err(e) = peer.write_video(&au, frame_time).await {
                    tracing::debug!(error = %e, "video write");
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
            Some(_) = keyframes.recv() => {
                if let Some(v) = devices.video() {
                    v.keyframe.store(true, Ordering::SeqCst);
                }
                shared.stats().keyframe_requests += 1;
            }
            Ok(()) = estimates.changed() => {
                bitrate = (*estimates.borrow()).min(config.video_bitrate_bps.saturating_mul(2));
                if let Some(v) = devices.video() {
                    v.bitrate.store(bitrate, Ordering::SeqCst);
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
}
