//! Probes against a real server: forwarding without loss, keyframe gating, fast first
//! keyframes, a kick that ends media even from a client that keeps sending, and the stage
//! rule for publishing.

mod common;

use std::time::Duration;

use common::{until, within, Srv};
use onstage_client::{ErrorCode, Meeting};
use onstage_probe::{ProbePublisher, ProbeViewer, PublisherOptions};

/// `who` joins the stage and publishes.
async fn go_live(who: &Meeting, opts: PublisherOptions) -> ProbePublisher {
    within("stage join", who.stage().join())
        .await
        .expect("on stage");
    within("publish", ProbePublisher::start(who, opts))
        .await
        .expect("publishes")
}

/// `viewer` subscribes to `publisher`.
async fn watch(viewer: &Meeting, publisher: &Meeting) -> ProbeViewer {
    within(
        "subscribe",
        ProbeViewer::start(viewer, &publisher.user_id()),
    )
    .await
    .expect("subscribes")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_viewers_get_everything_starting_at_a_keyframe() {
    let srv = Srv::start().await;
    let m = srv.meeting("probe").await;
    let host = srv.join(&m, "host", "host").await;
    let a = srv.join(&m, "a", "viewer").await;
    let b = srv.join(&m, "b", "viewer").await;
    let publisher = go_live(&host, PublisherOptions::default()).await;
    let va = watch(&a, &host).await;
    let vb = watch(&b, &host).await;
    // About two seconds of media at each viewer.
    until("60 frames at both viewers", || {
        va.stats().frames >= 60 && vb.stats().frames >= 60
    })
    .await;
    for (name, v) in [("a", &va), ("b", &vb)] {
        let s = v.stats();
        assert_eq!(s.first_video_was_keyframe, Some(true), "{name}: {s:?}");
        assert!(s.keyframes >= 1, "{name}: {s:?}");
        assert_eq!(s.video.lost(), 0, "{name} video: {:?}", s.video);
        assert_eq!(s.audio.lost(), 0, "{name} audio: {:?}", s.audio);
        assert!(s.video.expected() > 200, "{name}: {:?}", s.video);
        assert!(s.audio.expected() > 50, "{name}: {:?}", s.audio);
        assert_eq!(s.frames_out_of_order, 0, "{name}");
        assert!(!s.is_closed(), "{name}");
    }
    let p = publisher.stop().await;
    assert!(p.keyframes >= 1 && p.frames >= 60, "{p:?}");
    srv.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_viewer_joining_a_live_stage_gets_a_keyframe_fast() {
    let srv = Srv::start().await;
    let m = srv.meeting("probe").await;
    let host = srv.join(&m, "host", "host").await;
    let early = srv.join(&m, "early", "viewer").await;
    let late = srv.join(&m, "late", "viewer").await;
    let publisher = go_live(&host, PublisherOptions::default()).await;
    let first = watch(&early, &host).await;
    // The stage is live (well past its first keyframe) when the late viewer comes.
    until("a live stage", || first.stats().frames >= 30).await;
    let requests_before = publisher.stats().keyframe_requests;
    let viewer = watch(&late, &host).await;
    until("the late viewer's first keyframe", || {
        viewer.stats().first_keyframe_at.is_some()
    })
    .await;
    let s = viewer.stats();
    assert_eq!(s.first_video_was_keyframe, Some(true), "{s:?}");
    assert!(
        publisher.stats().keyframe_requests > requests_before,
        "the SFU asked the publisher for a keyframe"
    );
    println!(
        "late viewer: connected after {:?}, first keyframe after {:?}",
        s.time_to_connect(),
        s.time_to_first_keyframe()
    );
    srv.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kick_ends_media_even_from_a_client_that_keeps_sending() {
    let srv = Srv::start().await;
    let m = srv.meeting("probe").await;
    let host = srv.join(&m, "host", "host").await;
    let speaker = srv.join(&m, "speaker", "speaker").await;
    let a = srv.join(&m, "a", "viewer").await;
    let b = srv.join(&m, "b", "viewer").await;
    let opts = PublisherOptions {
        keep_sending_after_close: true,
        ..PublisherOptions::default()
    };
    let publisher = go_live(&speaker, opts).await;
    let viewers = [watch(&a, &speaker).await, watch(&b, &speaker).await];
    until("media at both viewers", || {
        viewers.iter().all(|v| v.stats().frames >= 10)
    })
    .await;

    within("kick", host.stage().kick(&[speaker.user_id()]))
        .await
        .expect("kicked");
    for v in &viewers {
        within("a viewer's session to close", v.closed()).await;
    }
    within("the publisher's session to close", publisher.closed()).await;
    let dropped_before = srv.metric("onstage_sfu_dropped_datagrams_total").await;
    let blasted_before = publisher.stats().sent_after_close;
    let counts: Vec<u64> = viewers.iter().map(|v| v.stats().video.packets).collect();

    // The publisher keeps blasting; the SFU drops it all.
    within("the SFU to drop the ignored kick's media", async {
        loop {
            let dropped = srv.metric("onstage_sfu_dropped_datagrams_total").await;
            let blasted = publisher.stats().sent_after_close;
            if dropped >= dropped_before + 50.0 && blasted >= blasted_before + 50 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    // A quiet period is the point here: nothing reaches the viewers.
    tokio::time::sleep(Duration::from_millis(500)).await;
    for (v, before) in viewers.iter().zip(counts) {
        let s = v.stats();
        assert_eq!(s.rtp_after_close, 0, "{s:?}");
        assert_eq!(s.video.packets, before);
    }
    srv.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publishing_off_stage_is_refused() {
    let srv = Srv::start().await;
    let m = srv.meeting("probe").await;
    let host = srv.join(&m, "host", "host").await;
    let err = match within(
        "publish",
        ProbePublisher::start(&host, PublisherOptions::default()),
    )
    .await
    {
        Ok(_) => panic!("published while OFF_STAGE"),
        Err(e) => e,
    };
    assert_eq!(err.code(), Some(ErrorCode::InvalidState), "{err}");
    srv.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_host_mute_holds_audio_even_from_a_client_that_ignores_it_until_it_unmutes() {
    let srv = Srv::start().await;
    let m = srv.meeting("probe").await;
    let host = srv.join(&m, "host", "host").await;
    let speaker = srv.join(&m, "speaker", "speaker").await;
    let a = srv.join(&m, "a", "viewer").await;
    // The probe publisher sends audio whatever it is told: only the SFU can stop it.
    let _publisher = go_live(&speaker, PublisherOptions::default()).await;
    let viewer = watch(&a, &speaker).await;
    until("audio at the viewer", || viewer.stats().audio.packets >= 20).await;

    within("mute", host.mute_participant(&speaker.user_id()))
        .await
        .expect("muted");
    held_at(&srv, 10.0).await;
    let audio_then = viewer.stats().audio.packets;
    let video_then = viewer.stats().video.packets;
    // About a second more of held audio: none of it reaches the viewer; video flows on.
    held_at(&srv, 60.0).await;
    let s = viewer.stats();
    assert!(
        s.audio.packets <= audio_then + 1,
        "audio reached the viewer while held: {} -> {}",
        audio_then,
        s.audio.packets
    );
    assert!(s.video.packets > video_then + 20, "{s:?}");

    // The speaker unmutes itself: audio comes back, its numbering without a gap.
    within("unmute", speaker.media_state(true, true))
        .await
        .expect("unmuted");
    until("audio again", || {
        viewer.stats().audio.packets > audio_then + 20
    })
    .await;
    let s = viewer.stats();
    assert_eq!(
        s.audio.lost(),
        0,
        "a gap in the viewer's audio: {:?}",
        s.audio
    );
    srv.stop().await;
}

/// Waits until the SFU has held `n` audio packets of muted publishers.
async fn held_at(srv: &Srv, n: f64) {
    within("the SFU to hold the audio", async {
        while srv.metric("onstage_sfu_held_audio_packets_total").await < n {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
}
