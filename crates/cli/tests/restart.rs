//! A server killed mid-meeting (`kill -9`) and started again on the same data gives the
//! stage back: inside the grace period everyone is where they were — speakers ON_STAGE
//! and publishing again without a click, the queue in the same order with the same
//! request times, an accepted invitee still accepted.

mod support;

use serde_json::{json, Value};
use support::{add, await_frames, create_meeting, serve_with, Proc, WAIT};

/// Long enough for a restart, short enough that nothing else matters.
const GRACE: &str = "30000";

async fn bot(name: &str, url: &str, token: &str, media: bool) -> Proc {
    let mut args = vec!["bot", "--server", url, "--token", token];
    if media {
        args.extend(["--media", "synthetic"]);
    }
    let mut bot = Proc::spawn(name, &args, &[]);
    let joined = bot.next().await.expect("joined line");
    assert_eq!(joined["event"], "joined", "{joined}");
    bot
}

/// Waits until `viewer` has decoded at least 30 more video and audio frames from each of
/// `users` than `since` says.
async fn sees_media(viewer: &mut Proc, users: &[&str], since: &[(u64, u64)]) -> Vec<(u64, u64)> {
    await_frames(viewer, users, since, 30, WAIT).await
}

async fn status(bot: &mut Proc) -> Value {
    bot.ok(json!({"id": 800, "call": "stage.status"})).await["status"].clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_server_gives_the_stage_back_after_a_restart() {
    let data = tempfile::tempdir().expect("temp dir");
    let (mut server, url, key) =
        serve_with(data.path(), "127.0.0.1:0", &["--grace-ms", GRACE]).await;
    assert!(!key.is_empty());
    let listen = url.trim_start_matches("http://").to_owned();
    let meeting = create_meeting(&url, &key, "restart").await;

    // A host, two speakers, three requesters (the first watches the stage) and an invitee.
    let mut bots = Vec::new();
    for (name, preset, media) in [
        ("host", "host", false),
        ("s1", "speaker", true),
        ("s2", "speaker", true),
        ("r1", "viewer", true),
        ("r2", "viewer", false),
        ("r3", "viewer", false),
        ("guest", "viewer", false),
    ] {
        let (_, token) = add(&url, &key, &meeting, name, preset).await;
        bots.push(bot(name, &url, &token, media).await);
    }
    let [host, s1, s2, r1, r2, r3, guest] = &mut bots[..] else {
        unreachable!("seven bots")
    };
    for speaker in [&mut *s1, &mut *s2] {
        speaker.ok(json!({"id": 1, "call": "stage.join"})).await;
    }
    for requester in [&mut *r1, &mut *r2, &mut *r3] {
        requester
            .ok(json!({"id": 1, "call": "stage.requestAccess"}))
            .await;
    }
    host.ok(json!({"id": 1, "call": "stage.grantAccess", "user_ids": ["guest"]}))
        .await;
    let queue_before = host
        .ok(json!({"id": 2, "call": "stage.getAccessRequests"}))
        .await;
    let order: Vec<&str> = queue_before
        .as_array()
        .expect("a list of requests")
        .iter()
        .filter_map(|r| r["user_id"].as_str())
        .collect();
    assert_eq!(order, ["r1", "r2", "r3"], "{queue_before}");
    let before = sees_media(r1, &["s1", "s2"], &[(0, 0), (0, 0)]).await;

    // kill -9: nothing is told, nothing is flushed.
    server.child.kill().await.expect("kill serve");
    let (_server, url_again, _) = serve_with(data.path(), &listen, &["--grace-ms", GRACE]).await;
    assert_eq!(url_again, url);

    // Everyone with a place on the stage resumes it; the host, OFF_STAGE, had none to keep
    // and simply comes back.
    for bot in [
        &mut *s1,
        &mut *s2,
        &mut *r1,
        &mut *r2,
        &mut *r3,
        &mut *guest,
    ] {
        bot.expect_event(
            "connectionStateUpdate",
            json!({"state": "connected", "resumed": true}),
        )
        .await;
    }
    host.expect_event("connectionStateUpdate", json!({"state": "connected"}))
        .await;
    assert_eq!(status(s1).await, "ON_STAGE");
    assert_eq!(status(s2).await, "ON_STAGE");
    for requester in [&mut *r1, &mut *r2, &mut *r3] {
        assert_eq!(status(requester).await, "REQUESTED_TO_JOIN_STAGE");
    }
    assert_eq!(status(guest).await, "ACCEPTED_TO_JOIN_STAGE");
    assert_eq!(status(host).await, "OFF_STAGE");
    let queue_after = host
        .ok(json!({"id": 3, "call": "stage.getAccessRequests"}))
        .await;
    assert_eq!(
        queue_after, queue_before,
        "the same queue, order and request times"
    );
    // The speakers publish again by themselves, and the watcher sees them.
    sees_media(r1, &["s1", "s2"], &before).await;
    for speaker in [&mut *s1, &mut *s2] {
        let stats = speaker.ok(json!({"id": 4, "call": "media.stats"})).await;
        assert_eq!(stats["publishing"], json!({"audio": true, "video": true}));
    }
    for bot in bots.iter_mut() {
        bot.close_stdin().await;
        assert_eq!(bot.exit_code().await, Some(0));
    }
}
