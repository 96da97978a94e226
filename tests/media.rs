//! Stage media end to end: real server and SFU, real WebRTC over loopback, synthetic
//! sources encoded with H.264 and Opus, decoded at every receiver.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use onstage_client::{DeviceChoice, MediaConfig, Origin, Sources, StageMedia};
use onstage_e2e::*;
use onstage_proto::UserId;

/// Waits until `pred` holds on the media stats (they change as frames are decoded and
/// devices open and close; there is no event to await).
async fn wait_media(
    media: &StageMedia,
    what: &str,
    pred: impl Fn(&onstage_client::MediaStats) -> bool,
) {
    within(what, async {
        loop {
            if pred(&media.stats()) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
}

/// Waits for the first item of `rx` that `pick` accepts.
async fn first<T: Clone, U>(
    what: &str,
    rx: &mut tokio::sync::broadcast::Receiver<T>,
    pick: impl Fn(T) -> Option<U>,
) -> U {
    within(what, async {
        loop {
            if let Ok(item) = rx.recv().await {
                if let Some(found) = pick(item) {
                    return found;
                }
            }
        }
    })
    .await
}

/// A participant with its stage media running (synthetic camera and microphone).
struct Member {
    client: Client,
    media: StageMedia,
}

async fn member(server: &TestServer, meeting: &str, name: &str, preset: &str, tone: f32) -> Member {
    let client = server.join(meeting, name, preset).await;
    let media = StageMedia::start(
        client.meeting.clone(),
        MediaConfig {
            sources: Sources::Synthetic { tone_hz: tone },
            ..MediaConfig::default()
        },
    );
    Member { client, media }
}

impl Member {
    fn id(&self) -> UserId {
        self.client.user_id()
    }

    async fn wait_stats(&self, what: &str, pred: impl Fn(&onstage_client::MediaStats) -> bool) {
        wait_media(&self.media, what, pred).await
    }

    /// Waits until `n` stamped pictures and `n` audio frames from `from` were decoded.
    async fn wait_frames(&self, from: &UserId, n: u64) {
        self.wait_stats(&format!("{n} frames from {from}"), |s| {
            s.received
                .get(from)
                .is_some_and(|r| r.stamped_frames >= n && r.audio_frames >= n)
        })
        .await
    }

    /// Goes on stage (the preset may join directly, or was granted).
    async fn join_stage(&self) {
        let joined = self.client.meeting.stage().join().await;
        joined.unwrap_or_else(|e| panic!("{} joins the stage: {e}", self.id()));
    }

    fn video_frames_from(&self, from: &UserId) -> u64 {
        self.media
            .stats()
            .received
            .get(from)
            .map_or(0, |r| r.video_frames)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn everyone_receives_everyone_on_stage_and_nothing_from_the_rest() {
    let server = TestServer::start().await;
    let meeting = server.meeting("media").await;
    let host = member(&server, &meeting, "Host", "host", 440.0).await;
    let speaker = member(&server, &meeting, "Speaker", "speaker", 660.0).await;
    let viewer = member(&server, &meeting, "Vera", "viewer", 880.0).await;
    let audience = member(&server, &meeting, "Audrey", "viewer", 1000.0).await;
    host.join_stage().await;
    speaker.join_stage().await;

    for watcher in [&viewer, &audience] {
        watcher.wait_frames(&host.id(), 30).await;
        watcher.wait_frames(&speaker.id(), 30).await;
    }
    host.wait_frames(&speaker.id(), 30).await;
    speaker.wait_frames(&host.id(), 30).await;

    for watcher in [&viewer, &audience] {
        let stats = watcher.media.stats();
        let from: BTreeSet<UserId> = stats.received.keys().cloned().collect();
        assert_eq!(
            from,
            BTreeSet::from([host.id(), speaker.id()]),
            "media only from those on stage"
        );
        for (who, tone) in [(host.id(), 440.0), (speaker.id(), 660.0)] {
            let r = &stats.received[&who];
            // Every decoded picture is the one sent: its stamp reads back, in order.
            assert_eq!(
                r.stamped_frames, r.video_frames,
                "{who}: every picture checks out"
            );
            assert_eq!(r.out_of_order_frames, 0, "{who}: frame numbers increase");
            let hz = r.audio_frequency_hz.expect("a tone was measured");
            assert!(
                (hz - tone).abs() < 5.0,
                "{who}: tone {hz} Hz, sent {tone} Hz"
            );
            assert!(r.glass_to_glass_p95_ms.is_some());
        }
        // Off stage: nothing published, no device open.
        assert!(!stats.publishing.audio && !stats.publishing.video);
        assert_eq!(watcher.media.open_sources(), 0);
    }
    let stats = host.media.stats();
    assert!(stats.publishing.audio && stats.publishing.video);
    assert_eq!(host.media.open_sources(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_participant_coming_on_stage_is_seen_by_all_within_a_second() {
    let server = TestServer::start().await;
    let meeting = server.meeting("media").await;
    let host = member(&server, &meeting, "Host", "host", 440.0).await;
    let mut viewer = member(&server, &meeting, "Vera", "viewer", 660.0).await;
    let audience = member(&server, &meeting, "Audrey", "viewer", 880.0).await;
    host.join_stage().await;
    audience.wait_frames(&host.id(), 5).await;

    viewer
        .client
        .meeting
        .stage()
        .request_access()
        .await
        .expect("asks");
    host.client
        .meeting
        .stage()
        .grant_access(&[viewer.id()])
        .await
        .expect("granted");
    viewer
        .client
        .expect_event("stageRequestApproved", serde_json::json!({}))
        .await;
    let mut at_host = host.media.video_frames();
    let mut at_audience = audience.media.video_frames();
    let started = Instant::now();
    viewer.join_stage().await;
    let vid = viewer.id();
    for (who, frames) in [("host", &mut at_host), ("audience", &mut at_audience)] {
        within("a first picture of the newcomer", async {
            loop {
                match frames.recv().await {
                    Ok(f) if f.origin.user_id() == Some(&vid) => return,
                    Ok(_) | Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                    Err(e) => panic!("frames ended: {e}"),
                }
            }
        })
        .await;
        let took = started.elapsed();
        eprintln!("stage join -> first decoded picture at the {who}: {took:?}");
        assert!(
            took < Duration::from_secs(1),
            "{who} saw the newcomer after {took:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn after_leave_or_kick_no_frames_arrive_and_the_devices_are_closed() {
    let server = TestServer::start().await;
    let meeting = server.meeting("media").await;
    let host = member(&server, &meeting, "Host", "host", 440.0).await;
    let speaker = member(&server, &meeting, "Speaker", "speaker", 660.0).await;
    let mut viewer = member(&server, &meeting, "Vera", "viewer", 880.0).await;
    let sid = speaker.id();

    for round in ["leave", "kick"] {
        speaker.join_stage().await;
        let before = viewer.video_frames_from(&sid);
        viewer.wait_frames(&sid, before + 20).await;
        assert_eq!(
            speaker.media.open_sources(),
            2,
            "{round}: camera and mic open"
        );

        let stopped = Instant::now();
        match round {
            "leave" => {
                speaker
                    .client
                    .meeting
                    .stage()
                    .leave()
                    .await
                    .expect("leaves");
            }
            _ => host
                .client
                .meeting
                .stage()
                .kick(std::slice::from_ref(&sid))
                .await
                .expect("kicks"),
        }
        // The devices close at once.
        speaker
            .wait_stats(&format!("{round}: devices closed"), |s| {
                s.open_sources == 0 && !s.publishing.video && !s.publishing.audio
            })
            .await;
        eprintln!("{round}: devices closed after {:?}", stopped.elapsed());
        let sid_json = serde_json::json!({ "user_id": sid.as_str() });
        viewer
            .client
            .expect_event("mediaUnpublished", sid_json)
            .await;
        // What was in flight may still land; after that, silence.
        tokio::time::sleep(Duration::from_millis(300)).await;
        let settled = viewer.video_frames_from(&sid);
        tokio::time::sleep(Duration::from_millis(700)).await;
        assert_eq!(
            viewer.video_frames_from(&sid),
            settled,
            "{round}: no new pictures after the speaker left the stage"
        );
        viewer.client.drain();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn mute_and_camera_off_are_told_to_everyone_and_stop_that_media() {
    let server = TestServer::start().await;
    let meeting = server.meeting("media").await;
    let host = member(&server, &meeting, "Host", "host", 440.0).await;
    let mut viewer = member(&server, &meeting, "Vera", "viewer", 880.0).await;
    let hid = host.id();
    let hid_json = serde_json::json!({ "user_id": hid.as_str(), "audio": true, "video": true });
    host.join_stage().await;
    viewer.client.expect_event("mediaPublished", hid_json).await;
    viewer.wait_frames(&hid, 10).await;

    // Camera off: the camera closes, everyone is told, pictures stop; audio goes on.
    host.media.set_camera(false);
    viewer
        .client
        .expect_event(
            "mediaPublished",
            serde_json::json!({ "user_id": hid.as_str(), "audio": true, "video": false }),
        )
        .await;
    host.wait_stats("camera closed", |s| {
        s.open_sources == 1 && !s.publishing.video
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let pictures = viewer.video_frames_from(&hid);
    let audio = viewer.media.stats().received[&hid].audio_frames;
    viewer
        .wait_stats("audio goes on", |s| {
            s.received[&hid].audio_frames >= audio + 10
        })
        .await;
    assert_eq!(
        viewer.video_frames_from(&hid),
        pictures,
        "no pictures while off"
    );

    // Camera back on: pictures resume (starting with a keyframe).
    host.media.set_camera(true);
    viewer.wait_frames(&hid, pictures + 10).await;

    // Mic muted: told, and no audio arrives; pictures go on.
    host.media.set_mic(false);
    viewer
        .client
        .expect_event(
            "mediaPublished",
            serde_json::json!({ "user_id": hid.as_str(), "audio": false, "video": true }),
        )
        .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let audio = viewer.media.stats().received[&hid].audio_frames;
    let pictures = viewer.video_frames_from(&hid);
    viewer
        .wait_stats("pictures go on", |s| {
            s.received[&hid].video_frames >= pictures + 10
        })
        .await;
    assert_eq!(
        viewer.media.stats().received[&hid].audio_frames,
        audio,
        "no audio while muted"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_preview_shows_the_local_camera_and_mic_off_stage_and_publishes_nothing() {
    let server = TestServer::start().await;
    let meeting = server.meeting("media").await;
    let viewer = member(&server, &meeting, "Vera", "viewer", 880.0).await;
    let mut pictures = viewer.media.video_frames();
    let mut levels = viewer.media.audio_levels();
    viewer.media.preview(true);
    first("a local picture", &mut pictures, |p| {
        (p.origin == Origin::Local).then_some(())
    })
    .await;
    let level = first("a local level", &mut levels, |l| {
        (l.origin == Origin::Local).then_some(l.level)
    })
    .await;
    assert!(level > 0.1, "the tone is heard: level {level}");
    assert_eq!(viewer.media.open_sources(), 2);
    let stats = viewer.media.stats();
    assert!(!stats.publishing.audio && !stats.publishing.video);
    viewer.media.preview(false);
    viewer
        .wait_stats("devices closed", |s| s.open_sources == 0)
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_device_check_needs_no_meeting_and_follows_its_switches() {
    let media = StageMedia::device_check(MediaConfig {
        sources: Sources::Synthetic { tone_hz: 440.0 },
        ..MediaConfig::default()
    });
    let mut pictures = media.video_frames();
    let mut levels = media.audio_levels();
    assert_eq!(
        media.open_sources(),
        0,
        "nothing opens before the preview is on"
    );
    media.preview(true);
    first("a local picture", &mut pictures, |p| {
        (p.origin == Origin::Local).then_some(())
    })
    .await;
    let level = first("a local level", &mut levels, |l| Some(l.level)).await;
    assert!(level > 0.1, "the tone is heard: level {level}");
    wait_media(&media, "camera and mic open", |s| s.open_sources == 2).await;
    media.set_camera(false);
    wait_media(&media, "the camera closes", |s| s.open_sources == 1).await;
    media.preview(false);
    wait_media(&media, "the mic closes", |s| s.open_sources == 0).await;
    media.stop().await;

    // A camera that is not there is a typed problem, not a failure of the check.
    let media = StageMedia::device_check(MediaConfig {
        sources: Sources::Devices {
            camera: Some("no-such-camera".into()),
            microphone: Some("no-such-microphone".into()),
        },
        ..MediaConfig::default()
    });
    let mut problems = media.media_problems();
    media.preview(true);
    let mut seen = BTreeSet::new();
    while seen.len() < 2 {
        let p = first("device problems", &mut problems, Some).await;
        assert_eq!(p.code.as_str(), "device_not_found", "{p:?}");
        seen.insert(p.device.as_str());
    }
    assert_eq!(seen, BTreeSet::from(["camera", "microphone"]));
    assert_eq!(media.open_sources(), 0);
    media.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_newcomer_learns_who_publishes_and_what_from_the_welcome() {
    let server = TestServer::start().await;
    let meeting = server.meeting("media").await;
    let mut host = member(&server, &meeting, "Host", "host", 440.0).await;
    host.join_stage().await;
    host.media.set_camera(false);
    let hid = host.id();
    host.client
        .expect_event(
            "mediaPublished",
            serde_json::json!({ "user_id": hid.as_str(), "audio": true, "video": false }),
        )
        .await;
    let mut late = server.join(&meeting, "Late", "viewer").await;
    assert_eq!(
        late.meeting.publishing().get(&hid),
        Some(&onstage_client::proto::MediaKinds::new(true, false)),
        "the welcome says the host publishes audio, camera off"
    );
    late.expect_event(
        "mediaPublished",
        serde_json::json!({ "user_id": hid.as_str(), "audio": true, "video": false }),
    )
    .await;
}

/// The local camera is its own origin, not the user id `"local"`: a participant with that
/// id is shown as themselves, beside (not merged with) the self-view.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_participant_whose_id_is_local_is_shown_as_itself() {
    let server = TestServer::start().await;
    let meeting = server.meeting("media").await;
    let host = member(&server, &meeting, "Host", "host", 440.0).await;
    let (status, body) = server
        .admin(
            "POST",
            &format!("/v1/meetings/{meeting}/participants"),
            Some(serde_json::json!({
                "name": "Loki",
                "preset_name": "host",
                "custom_participant_id": "local",
            })),
        )
        .await;
    assert_eq!(status, 201, "add participant: {body}");
    let token = body["data"]["token"].as_str().expect("token").to_owned();
    let client = Client::join(&server.url, &token).await;
    assert_eq!(client.id(), "local");
    let media = StageMedia::start(
        client.meeting.clone(),
        MediaConfig {
            sources: Sources::Synthetic { tone_hz: 660.0 },
            ..MediaConfig::default()
        },
    );
    let loki = Member { client, media };
    let mut pictures = host.media.video_frames();
    let mut levels = host.media.audio_levels();
    host.join_stage().await;
    loki.join_stage().await;
    host.wait_frames(&loki.id(), 10).await;

    let them = Origin::Remote(UserId::new("local"));
    first(
        "a picture of the participant \"local\"",
        &mut pictures,
        |p| (p.origin == them).then_some(()),
    )
    .await;
    first("a picture of my own camera", &mut pictures, |p| {
        (p.origin == Origin::Local).then_some(())
    })
    .await;
    let level = first("the level of the participant \"local\"", &mut levels, |l| {
        (l.origin == them).then_some(l.level)
    })
    .await;
    assert!(level > 0.1, "their tone is heard: level {level}");
    // And they see the host as the host, their own camera as their own.
    let stats = loki.media.stats();
    assert!(stats.received.contains_key(&host.id()), "{stats:?}");
    assert!(
        !stats.received.contains_key(&UserId::new("local")),
        "{stats:?}"
    );
}

/// Choosing another camera and microphone restarts the capture only: the viewers see no
/// new publication, the pictures and sound go on, and the devices are open again.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn choosing_other_devices_restarts_only_the_capture() {
    let server = TestServer::start().await;
    let meeting = server.meeting("media").await;
    let host = member(&server, &meeting, "Host", "host", 440.0).await;
    let mut viewer = member(&server, &meeting, "Vera", "viewer", 880.0).await;
    host.join_stage().await;
    viewer.wait_frames(&host.id(), 10).await;
    host.wait_stats("publishing", |s| s.open_sources == 2).await;
    viewer.client.drain();
    let hid = host.id();
    let before = viewer.media.stats().received[&hid].clone();

    let choice = DeviceChoice {
        camera: Some("second-camera".into()),
        microphone: Some("second-microphone".into()),
    };
    host.media.select_devices(choice.clone());
    assert_eq!(host.media.devices(), choice);
    // A fresh synthetic camera counts its frames from 0 again: proof that the capture
    // restarted, while the subscription that sees it stayed.
    viewer
        .wait_stats("the capture restarted", |s| {
            s.received[&hid].out_of_order_frames > before.out_of_order_frames
        })
        .await;
    viewer
        .wait_stats("pictures and sound go on", |s| {
            let r = &s.received[&hid];
            r.video_frames >= before.video_frames + 30 && r.audio_frames >= before.audio_frames + 30
        })
        .await;
    assert_eq!(
        host.media.open_sources(),
        2,
        "camera and microphone open again"
    );
    let republished: Vec<_> = viewer
        .client
        .drain()
        .into_iter()
        .filter(|e| e["event"] == "mediaUnpublished" || e["event"] == "mediaPublished")
        .collect();
    assert!(
        republished.is_empty(),
        "no new publication: {republished:?}"
    );
    assert!(
        host.media.stats().last_error.is_none(),
        "{:?}",
        host.media.stats().last_error
    );
}

#[tokio::test]
async fn a_publish_over_the_broadcast_budget_waits_it_out_and_goes_through() {
    // Arriving and joining the stage spend the whole budget of two: the publish that
    // follows is refused rate_limited, and the SDK asks again once the server says it may.
    let server = TestServer::start_with(|c| {
        c.broadcast_burst = 2;
        c.broadcast_refill = Duration::from_millis(300);
    })
    .await;
    let meeting = server.meeting("budget").await;
    let host = member(&server, &meeting, "Host", "host", 440.0).await;
    let audience = member(&server, &meeting, "Audrey", "viewer", 880.0).await;
    host.join_stage().await;
    // Nothing else happens in the meeting: no event would restart a publisher that gave up.
    audience.wait_frames(&host.id(), 5).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn ending_the_meeting_stops_every_publication_and_subscription() {
    let server = TestServer::start().await;
    let meeting = server.meeting("media").await;
    let mut host = member(&server, &meeting, "Host", "host", 440.0).await;
    let speaker = member(&server, &meeting, "Speaker", "speaker", 660.0).await;
    let mut viewer = member(&server, &meeting, "Vera", "viewer", 880.0).await;
    let sid = speaker.id();
    speaker.join_stage().await;
    viewer.wait_frames(&sid, 20).await;
    server.await_metric("onstage_sfu_publications", 1.0).await;

    host.client.meeting.end().await.expect("the host ends it");
    let by = serde_json::json!({ "by": host.id().as_str() });
    for who in [&mut host.client, &mut viewer.client] {
        who.expect_event("meetingEnded", by.clone()).await;
    }
    // The SFU lets go of everything, and the speaker's devices close.
    server.await_metric("onstage_sfu_publications", 0.0).await;
    server.await_metric("onstage_sfu_subscriptions", 0.0).await;
    speaker
        .wait_stats("the speaker's devices closed", |s| s.open_sources == 0)
        .await;
    viewer
        .wait_stats("the viewer's devices closed", |s| s.open_sources == 0)
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_same_link_opened_again_stops_the_first_windows_media() {
    let server = TestServer::start().await;
    let meeting = server.meeting("media").await;
    let mut first = member(&server, &meeting, "Sam", "speaker", 440.0).await;
    let viewer = member(&server, &meeting, "Vera", "viewer", 880.0).await;
    let sid = first.id();
    first.join_stage().await;
    viewer.wait_frames(&sid, 20).await;
    first
        .wait_stats("camera and mic open, publishing", |s| {
            s.open_sources == 2 && s.publishing.audio && s.publishing.video
        })
        .await;

    // The same token in a second window: the first is replaced and told so, and its
    // capture, publication and subscriptions end (nothing of it goes on, frozen or live).
    let second = Client::join(&server.url, &first.client.token).await;
    assert_eq!(second.user_id(), sid, "the same participant");
    first
        .client
        .expect_event(
            "connectionStateUpdate",
            serde_json::json!({"state": "disconnected", "reason": "replaced"}),
        )
        .await;
    first
        .wait_stats("the replaced window's devices closed", |s| {
            s.open_sources == 0 && !s.publishing.audio && !s.publishing.video
        })
        .await;
    server.await_metric("onstage_sfu_publications", 0.0).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_host_mutes_a_speaker_whose_microphone_goes_off_until_it_unmutes() {
    let server = TestServer::start().await;
    let meeting = server.meeting("media").await;
    let mut host = member(&server, &meeting, "Host", "host", 440.0).await;
    let speaker = member(&server, &meeting, "Sam", "speaker", 880.0).await;
    let sid = speaker.id();
    speaker.join_stage().await;
    host.wait_frames(&sid, 10).await;
    assert!(speaker.media.controls().mic);

    host.client
        .meeting
        .mute_participant(&sid)
        .await
        .expect("the host mutes");
    host.client
        .expect_event(
            "participantMuted",
            serde_json::json!({ "user_id": sid.as_str(), "by": host.id().as_str() }),
        )
        .await;
    // The speaker's own switch is off: its app shows it muted, and says so to everyone.
    speaker
        .wait_stats("the speaker's microphone off", |s| !s.publishing.audio)
        .await;
    assert!(!speaker.media.controls().mic);
    host.client
        .expect_event(
            "mediaPublished",
            serde_json::json!({ "user_id": sid.as_str(), "audio": false, "video": true }),
        )
        .await;

    // It unmutes itself: audio reaches the host again.
    speaker.media.set_mic(true);
    host.client
        .expect_event(
            "mediaPublished",
            serde_json::json!({ "user_id": sid.as_str(), "audio": true, "video": true }),
        )
        .await;
    let audio = host.media.stats().received[&sid].audio_frames;
    host.wait_stats("audio again", |s| {
        s.received[&sid].audio_frames >= audio + 10
    })
    .await;
}
