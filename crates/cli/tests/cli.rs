//! The `onstage` binary end to end: `serve` as a child process, the admin commands, and two
//! `bot`s driven over stdin/stdout through a whole stage flow. Every wait is bounded; no
//! fixed sleeps.

mod support;

use std::time::Duration;

use serde_json::{json, Value};
use std::process::Stdio;

use support::{
    add, await_frames, create_meeting, frames_from, once, once_ok, serve, Proc, BIN, WAIT,
};
use tokio::process::Command;

async fn bot(name: &str, url: &str, token: &str) -> (Proc, Value) {
    let mut bot = Proc::spawn(name, &["bot", "--server", url, "--token", token], &[]);
    let joined = bot.next().await.expect("joined line");
    assert_eq!(joined["event"], "joined", "{joined}");
    assert!(joined["peer_id"].is_string());
    (bot, joined)
}

/// Adds `name` with `preset` and starts a bot for it: its user id and the bot.
async fn bot_as(url: &str, key: &str, meeting: &str, name: &str, preset: &str) -> (String, Proc) {
    let (user_id, token) = add(url, key, meeting, name, preset).await;
    let (bot, _) = bot(&format!("{name}-bot"), url, &token).await;
    (user_id, bot)
}

#[tokio::test]
async fn serve_admin_and_two_bots_run_a_stage_flow() {
    let data = tempfile::tempdir().expect("temp dir");
    let (mut server, url, key) = serve(data.path()).await;

    // Admin commands.
    let meeting = once_ok(
        &[
            "meeting",
            "create",
            "--server",
            &url,
            "--title",
            "Town hall",
        ],
        &key,
    )
    .await;
    let meeting_id = meeting["id"].as_str().expect("meeting id").to_owned();
    assert_eq!(meeting.as_object().map(|o| o.len()), Some(1), "{meeting}");
    let host = once_ok(
        &[
            "participant",
            "add",
            "--server",
            &url,
            "--meeting",
            &meeting_id,
            "--name",
            "Hana",
            "--preset",
            "host",
        ],
        &key,
    )
    .await;
    let viewer = once_ok(
        &[
            "participant",
            "add",
            "--server",
            &url,
            "--meeting",
            &meeting_id,
            "--name",
            "Vera",
            "--preset",
            "viewer",
            "--user-id",
            "vera",
        ],
        &key,
    )
    .await;
    assert_eq!(viewer["user_id"], "vera");
    let host_id = host["user_id"].as_str().expect("user id").to_owned();
    let preset = once_ok(
        &[
            "preset",
            "create",
            "--server",
            &url,
            "--name",
            "moderator",
            "--stage-access",
            "CAN_REQUEST",
            "--kick-participant",
        ],
        &key,
    )
    .await;
    assert_eq!(preset["name"], "moderator");
    assert_eq!(preset["stage_access"], "CAN_REQUEST");
    assert_eq!(preset["kick_participant"], true);
    assert_eq!(preset["accept_stage_requests"], false);
    assert_eq!(preset["stage_enabled"], true);

    // A wrong key: an error line on stdout and a failing exit status.
    let (error, output) = once(
        &["meeting", "create", "--server", &url, "--title", "x"],
        "wrong",
    )
    .await;
    assert!(!output.status.success());
    assert_eq!(error["ok"], false);
    assert_eq!(error["error"]["code"], "unauthorized", "{error}");
    let (error, output) = once(
        &[
            "participant",
            "add",
            "--server",
            &url,
            "--meeting",
            "nope",
            "--name",
            "n",
            "--preset",
            "host",
        ],
        &key,
    )
    .await;
    assert!(!output.status.success());
    assert_eq!(error["error"]["code"], "not_found", "{error}");

    // Two bots.
    let (mut h, joined) = bot("host-bot", &url, host["token"].as_str().expect("token")).await;
    assert_eq!(joined["user_id"], host_id.as_str());
    let (mut v, joined) = bot("viewer-bot", &url, viewer["token"].as_str().expect("token")).await;
    assert_eq!(joined["user_id"], "vera");
    h.expect_event(
        "participantJoined",
        json!({"participant":{"user_id":"vera","name":"Vera"}}),
    )
    .await;

    // Request -> the host sees it -> grant -> join.
    let result = v.ok(json!({"id":1,"call":"stage.requestAccess"})).await;
    assert_eq!(result, json!({"status":"REQUESTED_TO_JOIN_STAGE"}));
    v.expect_event(
        "stageStatusUpdate",
        json!({"status":"REQUESTED_TO_JOIN_STAGE"}),
    )
    .await;
    h.expect_event(
        "newStageRequest",
        json!({"request":{"user_id":"vera","name":"Vera"}}),
    )
    .await;
    let update = h.expect_event("stageAccessRequestUpdate", json!({})).await;
    assert_eq!(update["requests"][0]["user_id"], "vera");
    let queue = h.ok(json!({"id":1,"call":"stage.getAccessRequests"})).await;
    assert_eq!(queue[0]["user_id"], "vera");
    assert_eq!(queue[0]["name"], "Vera");
    assert!(queue[0]["requested_at"].as_u64().is_some(), "{queue}");

    let result = h
        .ok(json!({"id":2,"call":"stage.grantAccess","user_ids":["vera"]}))
        .await;
    assert_eq!(result, Value::Null);
    v.expect_event("stageRequestApproved", json!({"by": host_id.as_str()}))
        .await;
    v.expect_event(
        "stageStatusUpdate",
        json!({"status":"ACCEPTED_TO_JOIN_STAGE"}),
    )
    .await;
    let result = v.ok(json!({"id":2,"call":"stage.join"})).await;
    assert_eq!(result, json!({"status":"ON_STAGE"}));
    v.expect_event("stageStatusUpdate", json!({"status":"ON_STAGE"}))
        .await;
    h.expect_event(
        "participantStageStatus",
        json!({"user_id":"vera","status":"ON_STAGE"}),
    )
    .await;
    assert_eq!(
        v.ok(json!({"id":3,"call":"stage.status"})).await,
        json!({"status":"ON_STAGE"})
    );
    let list = h.ok(json!({"id":3,"call":"participants.list"})).await;
    let vera = list
        .as_array()
        .and_then(|l| l.iter().find(|p| p["user_id"] == "vera"))
        .expect("vera listed")
        .clone();
    assert_eq!(
        vera,
        json!({"user_id":"vera","name":"Vera","preset":"viewer","stage_status":"ON_STAGE"})
    );
    assert_eq!(
        v.ok(json!({"id":4,"call":"media.stats"})).await,
        json!({"publishing":{"audio":false,"video":false},"received":{}})
    );

    // Refusals carry the server's codes.
    let reply = v
        .call(json!({"id":5,"call":"stage.kick","user_ids":[host_id.as_str()]}))
        .await;
    assert_eq!(reply["ok"], false);
    assert_eq!(reply["error"]["code"], "permission_denied", "{reply}");

    // Garbage: bad_request, with the id when readable, and the bot carries on.
    v.send("this is not json").await;
    let reply = v.expect("bad_request", |l| l.get("event").is_none()).await;
    assert_eq!(reply["ok"], false);
    assert_eq!(reply["error"]["code"], "bad_request");
    assert!(reply.get("id").is_none(), "{reply}");
    let reply = v.call(json!({"id":6,"call":"stage.dance"})).await;
    assert_eq!(reply["error"]["code"], "bad_request", "{reply}");
    assert_eq!(
        v.ok(json!({"id":7,"call":"stage.leave"})).await,
        json!({"status":"OFF_STAGE"})
    );
    h.expect_event(
        "participantStageStatus",
        json!({"user_id":"vera","status":"OFF_STAGE"}),
    )
    .await;

    // End of input: the viewer leaves and exits 0; the host is told.
    v.close_stdin().await;
    assert_eq!(v.exit_code().await, Some(0));
    h.expect_event("participantLeft", json!({"user_id":"vera","reason":"left"}))
        .await;

    // meeting.leave answers, then the bot exits 0 on its own.
    let result = h.ok(json!({"id":9,"call":"meeting.leave"})).await;
    assert_eq!(result, Value::Null);
    assert_eq!(h.exit_code().await, Some(0));

    // SIGTERM stops the server gracefully.
    let pid = server.child.id().expect("pid").to_string();
    let killed = Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .await
        .expect("kill runs");
    assert!(killed.success());
    assert_eq!(server.exit_code().await, Some(0));
}

#[tokio::test]
async fn bot_refuses_bad_tokens_with_stable_codes() {
    let data = tempfile::tempdir().expect("temp dir");
    let (_server, url, _key) = serve(data.path()).await;
    for media in ["none", "synthetic"] {
        let mut bot = Proc::spawn(
            "bad-token",
            &["bot", "--server", &url, "--token", "nope", "--media", media],
            &[],
        );
        let line = bot.next().await.expect("an error line");
        assert_eq!(line["ok"], false);
        assert_eq!(line["error"]["code"], "unauthorized", "{line}");
        assert_ne!(bot.exit_code().await, Some(0));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_synthetic_bots_a_viewer_sees_both_stage_members_and_nothing_after_they_leave() {
    let data = tempfile::tempdir().expect("temp dir");
    let (_server, url, key) = serve(data.path()).await;
    let meeting = once_ok(
        &["meeting", "create", "--server", &url, "--title", "media"],
        &key,
    )
    .await["id"]
        .as_str()
        .expect("meeting id")
        .to_owned();
    let mut bots = Vec::new();
    for (name, preset) in [
        ("host", "host"),
        ("speaker", "speaker"),
        ("viewer", "viewer"),
    ] {
        let (_, token) = add(&url, &key, &meeting, name, preset).await;
        let mut bot = Proc::spawn(
            name,
            &[
                "bot",
                "--server",
                &url,
                "--token",
                &token,
                "--media",
                "synthetic",
            ],
            &[],
        );
        let joined = bot.next().await.expect("joined line");
        assert_eq!(joined["event"], "joined", "{joined}");
        bots.push(bot);
    }
    let [host, speaker, viewer] = &mut bots[..] else {
        unreachable!("three bots")
    };
    host.ok(json!({"id": 1, "call": "stage.join"})).await;
    speaker.ok(json!({"id": 1, "call": "stage.join"})).await;

    // The viewer decodes both stage members' video and audio.
    await_frames(viewer, &["host", "speaker"], &[(0, 0), (0, 0)], 30, WAIT).await;
    let stats = viewer.ok(json!({"id": 2, "call": "media.stats"})).await;
    assert_eq!(stats["publishing"], json!({"audio": false, "video": false}));
    // Per received stream: the picture's size and how it flows (the last second's rate;
    // freezes are counted, not asserted: a loaded machine may stall a decoder).
    for who in ["host", "speaker"] {
        let r = &stats["received"][who];
        assert_eq!(
            (r["width"].as_u64(), r["height"].as_u64()),
            (Some(640), Some(480)),
            "{r}"
        );
        assert!(r["fps"].as_f64().is_some_and(|fps| fps > 0.0), "{r}");
        for field in ["freezes", "freeze_ms_total", "longest_freeze_ms"] {
            assert!(r[field].as_u64().is_some(), "{field}: {r}");
        }
    }
    let stats = host.ok(json!({"id": 2, "call": "media.stats"})).await;
    assert_eq!(stats["publishing"], json!({"audio": true, "video": true}));

    host.ok(json!({"id": 3, "call": "stage.leave"})).await;
    speaker.ok(json!({"id": 3, "call": "stage.leave"})).await;
    for who in ["host", "speaker"] {
        viewer
            .expect_event("mediaUnpublished", json!({ "user_id": who }))
            .await;
    }
    // What was in flight may still land; after that, nothing.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let settled = (
        frames_from(viewer, "host").await,
        frames_from(viewer, "speaker").await,
    );
    tokio::time::sleep(Duration::from_millis(700)).await;
    let later = (
        frames_from(viewer, "host").await,
        frames_from(viewer, "speaker").await,
    );
    assert_eq!(settled, later, "no frames after both left the stage");
    let stats = host.ok(json!({"id": 4, "call": "media.stats"})).await;
    assert_eq!(stats["publishing"], json!({"audio": false, "video": false}));
    assert_eq!(stats["open_sources"], 0);
    for bot in bots.iter_mut() {
        bot.close_stdin().await;
        assert_eq!(bot.exit_code().await, Some(0));
    }
}

#[tokio::test]
async fn serve_uses_the_admin_key_from_the_environment() {
    let data = tempfile::tempdir().expect("temp dir");
    let path = data.path().to_str().expect("utf-8 path");
    let mut server = Proc::spawn(
        "serve-env",
        &["serve", "--listen", "127.0.0.1:0", "--data", path],
        &[("ONSTAGE_ADMIN_KEY", ENV_KEY)],
    );
    let ready = server.next().await.expect("ready line");
    assert_eq!(ready["event"], "listening");
    assert!(
        ready.get("admin_key").is_none(),
        "a key from the environment is not echoed"
    );
    let url = ready["http"].as_str().expect("http").to_owned();
    let meeting = once_ok(
        &["meeting", "create", "--server", &url, "--title", "t"],
        ENV_KEY,
    )
    .await;
    assert!(meeting["id"].is_string());
}

/// An operator's admin key (32 characters or more).
const ENV_KEY: &str = "an-operator-key-of-32-characters-or-more";

#[tokio::test]
async fn serve_refuses_a_short_admin_key() {
    let data = tempfile::tempdir().expect("temp dir");
    let path = data.path().to_str().expect("utf-8 path");
    let mut server = Proc::spawn(
        "serve-short-key",
        &["serve", "--listen", "127.0.0.1:0", "--data", path],
        &[("ONSTAGE_ADMIN_KEY", "sekrit")],
    );
    let line = server.next().await.expect("an error line");
    assert_eq!(line["ok"], false, "{line}");
    assert!(
        line["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("at least 32 characters")),
        "{line}"
    );
    assert_ne!(server.exit_code().await, Some(0));
}

#[tokio::test]
async fn reissue_remove_and_delete_cut_bots_off_for_good() {
    let data = tempfile::tempdir().expect("temp dir");
    let (_server, url, key) = serve(data.path()).await;
    let meeting = create_meeting(&url, &key, "cut").await;
    let (_, old) = add(&url, &key, &meeting, "vera", "viewer").await;
    let (mut vera, _) = bot("vera", &url, &old).await;

    // Issued again: the bot on the old token is told, and stays out.
    let (_, new) = add(&url, &key, &meeting, "vera", "viewer").await;
    vera.expect_event(
        "connectionStateUpdate",
        json!({"state":"disconnected","reason":"revoked"}),
    )
    .await;
    let reply = vera
        .call(json!({"id":1,"call":"stage.requestAccess"}))
        .await;
    assert_eq!(code_of(&reply), "token_revoked", "{reply}");
    let (refused, output) = once(&["bot", "--server", &url, "--token", &old], "").await;
    assert!(!output.status.success());
    assert_eq!(refused["error"]["code"], "token_revoked", "{refused}");

    // Removed: `participant remove` prints the user id; the bot is told.
    let (mut vera, _) = bot("vera2", &url, &new).await;
    let removed = once_ok(
        &[
            "participant",
            "remove",
            "--server",
            &url,
            "--meeting",
            &meeting,
            "--user-id",
            "vera",
        ],
        &key,
    )
    .await;
    assert_eq!(removed, json!({"user_id":"vera"}));
    vera.expect_event(
        "connectionStateUpdate",
        json!({"state":"disconnected","reason":"removed"}),
    )
    .await;
    let (line, output) = once(
        &[
            "participant",
            "remove",
            "--server",
            &url,
            "--meeting",
            &meeting,
            "--user-id",
            "vera",
        ],
        &key,
    )
    .await;
    assert!(!output.status.success());
    assert_eq!(line["error"]["code"], "not_found", "{line}");

    // Deleted: `meeting delete` prints the id; the bot still in it is told.
    let (_, hana) = add(&url, &key, &meeting, "hana", "host").await;
    let (mut hana, _) = bot("hana", &url, &hana).await;
    let deleted = once_ok(
        &["meeting", "delete", "--server", &url, "--meeting", &meeting],
        &key,
    )
    .await;
    assert_eq!(deleted, json!({"id": meeting}));
    hana.expect_event(
        "connectionStateUpdate",
        json!({"state":"disconnected","reason":"meeting_deleted"}),
    )
    .await;
    let (line, output) = once(
        &["meeting", "delete", "--server", &url, "--meeting", &meeting],
        &key,
    )
    .await;
    assert!(!output.status.success());
    assert_eq!(line["error"]["code"], "not_found", "{line}");
}

#[tokio::test]
async fn admin_commands_without_a_server_fail_cleanly() {
    let (line, output) = once(
        &[
            "meeting",
            "create",
            "--server",
            "http://127.0.0.1:1",
            "--title",
            "t",
        ],
        "k",
    )
    .await;
    assert!(!output.status.success());
    assert_eq!(line["ok"], false);
    assert_eq!(line["error"]["code"], "connection_lost", "{line}");

    let (line, output) = once(
        &[
            "meeting",
            "create",
            "--server",
            "http://127.0.0.1:1",
            "--title",
            "t",
        ],
        "",
    )
    .await;
    assert!(!output.status.success());
    assert_eq!(line["error"]["code"], "unauthorized", "{line}");
}

fn code_of(reply: &Value) -> &str {
    reply["error"]["code"].as_str().unwrap_or("")
}

/// The rows of the stage table the first bot test does not walk, and every error code, all
/// through `onstage bot` lines.
#[tokio::test]
async fn bots_walk_every_stage_row_and_error_code() {
    let data = tempfile::tempdir().expect("temp dir");
    let (_server, url, key) = serve(data.path()).await;
    let meeting = create_meeting(&url, &key, "rows").await;
    let (_, mut h) = bot_as(&url, &key, &meeting, "hana", "host").await;
    let (_, mut s) = bot_as(&url, &key, &meeting, "sami", "speaker").await;
    let (_, mut v) = bot_as(&url, &key, &meeting, "vera", "viewer").await;
    let (_, mut x) = bot_as(&url, &key, &meeting, "spec", "spectator").await;
    h.expect_event(
        "participantJoined",
        json!({"participant":{"user_id":"spec"}}),
    )
    .await;

    // invalid_state: nothing to cancel or leave.
    let r = v
        .call(json!({"id":1,"call":"stage.cancelRequestAccess"}))
        .await;
    assert_eq!(code_of(&r), "invalid_state", "{r}");
    let r = v.call(json!({"id":2,"call":"stage.leave"})).await;
    assert_eq!(code_of(&r), "invalid_state", "{r}");
    // permission_denied: a viewer may not see the queue, a spectator may not ask.
    let r = v
        .call(json!({"id":3,"call":"stage.getAccessRequests"}))
        .await;
    assert_eq!(code_of(&r), "permission_denied", "{r}");
    let r = x.call(json!({"id":1,"call":"stage.requestAccess"})).await;
    assert_eq!(code_of(&r), "permission_denied", "{r}");
    let r = v.call(json!({"id":4,"call":"stage.join"})).await;
    assert_eq!(code_of(&r), "permission_denied", "{r}");

    // request -> cancel.
    v.ok(json!({"id":5,"call":"stage.requestAccess"})).await;
    h.expect_event("newStageRequest", json!({"request":{"user_id":"vera"}}))
        .await;
    assert_eq!(
        v.ok(json!({"id":6,"call":"stage.cancelRequestAccess"}))
            .await,
        json!({"status":"OFF_STAGE"})
    );
    h.expect_event("stageAccessRequestUpdate", json!({"requests":[]}))
        .await;

    // request -> deny: the viewer is told it was rejected.
    v.ok(json!({"id":7,"call":"stage.requestAccess"})).await;
    h.expect_event("newStageRequest", json!({"request":{"user_id":"vera"}}))
        .await;
    // not_found and bad_request leave the request alone.
    let r = h
        .call(json!({"id":1,"call":"stage.denyAccess","user_ids":["vera","ghost"]}))
        .await;
    assert_eq!(code_of(&r), "not_found", "{r}");
    let r = h
        .call(json!({"id":2,"call":"stage.grantAccess","user_ids":[]}))
        .await;
    assert_eq!(code_of(&r), "bad_request", "{r}");
    h.ok(json!({"id":3,"call":"stage.denyAccess","user_ids":["vera"]}))
        .await;
    v.expect_event("stageRequestRejected", json!({"by":"hana"}))
        .await;
    v.expect_event("stageStatusUpdate", json!({"status":"OFF_STAGE"}))
        .await;

    // invite a spectator (grant from OFF) who joins; invite the viewer, who declines.
    h.ok(json!({"id":4,"call":"stage.grantAccess","user_ids":["spec","vera"]}))
        .await;
    x.expect_event("stageRequestApproved", json!({"by":"hana"}))
        .await;
    assert_eq!(
        x.ok(json!({"id":2,"call":"stage.join"})).await,
        json!({"status":"ON_STAGE"})
    );
    v.expect_event(
        "stageStatusUpdate",
        json!({"status":"ACCEPTED_TO_JOIN_STAGE"}),
    )
    .await;
    assert_eq!(
        v.ok(json!({"id":8,"call":"stage.leave"})).await,
        json!({"status":"OFF_STAGE"})
    );
    h.expect_event(
        "participantStageStatus",
        json!({"user_id":"vera","status":"OFF_STAGE"}),
    )
    .await;

    // An ALLOWED speaker: requestAccess goes straight to ACCEPTED; then joins.
    assert_eq!(
        s.ok(json!({"id":1,"call":"stage.requestAccess"})).await,
        json!({"status":"ACCEPTED_TO_JOIN_STAGE"})
    );
    s.ok(json!({"id":2,"call":"stage.join"})).await;
    let r = s.call(json!({"id":3,"call":"stage.join"})).await;
    assert_eq!(code_of(&r), "invalid_state", "{r}");

    // kick: both off stage at once; the speaker is told.
    let r = h
        .call(json!({"id":5,"call":"stage.kick","user_ids":["sami","vera"]}))
        .await;
    assert_eq!(
        code_of(&r),
        "invalid_state",
        "a batch with one bad target: {r}"
    );
    h.ok(json!({"id":6,"call":"stage.kick","user_ids":["sami","spec"]}))
        .await;
    s.expect_event("stageStatusUpdate", json!({"status":"OFF_STAGE"}))
        .await;
    x.expect_event("stageStatusUpdate", json!({"status":"OFF_STAGE"}))
        .await;

    // rate_limited: a burst of calls beyond the limit; the bot answers each until then. (The
    // server answers only the first frame of a run past its limit and drops the rest until
    // the limit allows them, so the loop stops there.)
    let mut limited = 0;
    for i in 0..80 {
        let r = v
            .call(json!({"id": 100 + i, "call":"stage.cancelRequestAccess"}))
            .await;
        if code_of(&r) == "rate_limited" {
            limited += 1;
            break;
        }
    }
    assert!(limited > 0, "80 calls at once must hit the limit");

    // stage_full: a meeting with room for one.
    let small = once_ok(
        &[
            "meeting",
            "create",
            "--server",
            &url,
            "--title",
            "small",
            "--max-on-stage",
            "1",
        ],
        &key,
    )
    .await["id"]
        .as_str()
        .expect("id")
        .to_owned();
    let (_, a) = add(&url, &key, &small, "alpha", "speaker").await;
    let (_, b) = add(&url, &key, &small, "beta", "speaker").await;
    let (mut a, _) = bot("alpha", &url, &a).await;
    let (mut b, _) = bot("beta", &url, &b).await;
    a.ok(json!({"id":1,"call":"stage.join"})).await;
    let r = b.call(json!({"id":1,"call":"stage.join"})).await;
    assert_eq!(code_of(&r), "stage_full", "{r}");
    assert_eq!(
        b.ok(json!({"id":2,"call":"stage.status"})).await,
        json!({"status":"OFF_STAGE"})
    );
}

/// `serve --tls-self-signed` as a child: (process, https url, admin key, fingerprint).
async fn serve_tls(data: &std::path::Path) -> (Proc, String, String, String) {
    let data = data.to_str().expect("utf-8 path");
    let mut server = Proc::spawn(
        "serve-tls",
        &[
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--data",
            data,
            "--tls-self-signed",
        ],
        &[],
    );
    let ready = server.next().await.expect("serve prints its ready line");
    assert_eq!(ready["event"], "listening", "{ready}");
    let url = ready["http"].as_str().expect("http").to_owned();
    assert!(url.starts_with("https://127.0.0.1:"), "{ready}");
    assert_eq!(ready["public_url"], url.as_str(), "{ready}");
    let fp = ready["fingerprint"]
        .as_str()
        .expect("fingerprint")
        .to_owned();
    let hex = fp.strip_prefix("sha256:").expect("sha256: prefix");
    assert!(
        hex.len() == 64
            && hex
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)),
        "{fp}"
    );
    let key = ready["admin_key"].as_str().expect("admin key").to_owned();
    (server, url, key, fp)
}

#[tokio::test]
async fn serve_self_signed_and_a_bot_joins_by_link() {
    let data = tempfile::tempdir().expect("temp dir");
    let (mut server, url, key, fp) = serve_tls(data.path()).await;

    // Admin commands reach it with the fingerprint, and are refused without it.
    let (line, output) = once(
        &["meeting", "create", "--server", &url, "--title", "T"],
        &key,
    )
    .await;
    assert!(!output.status.success());
    assert_eq!(line["error"]["code"], "untrusted_server", "{line}");
    let meeting = once_ok(
        &[
            "meeting",
            "create",
            "--server",
            &url,
            "--title",
            "T",
            "--fingerprint",
            &fp,
        ],
        &key,
    )
    .await;
    let meeting = meeting["id"].as_str().expect("id").to_owned();
    // The colon-separated uppercase form is accepted too.
    let hex = fp.trim_start_matches("sha256:");
    let pairs: Vec<String> = (0..32)
        .map(|i| hex[2 * i..2 * i + 2].to_ascii_uppercase())
        .collect();
    let colon_fp = format!("sha256:{}", pairs.join(":"));
    let added = once_ok(
        &[
            "participant",
            "add",
            "--server",
            &url,
            "--meeting",
            &meeting,
            "--name",
            "Hana",
            "--preset",
            "host",
            "--fingerprint",
            &colon_fp,
        ],
        &key,
    )
    .await;
    let link = added["link"]
        .as_str()
        .expect("participant add prints the link");
    assert!(
        link.starts_with("onstage://join?server=https%3A%2F%2F127.0.0.1%3A"),
        "{link}"
    );
    assert!(link.ends_with(&format!("&fp=sha256%3A{hex}")), "{link}");

    // The bot joins with the link alone and runs a stage call.
    let mut bot = Proc::spawn("bot-link", &["bot", "--link", link], &[]);
    let joined = bot.next().await.expect("joined line");
    assert_eq!(joined["event"], "joined", "{joined}");
    assert_eq!(joined["user_id"], added["user_id"]);
    let result = bot.ok(json!({"id": 1, "call": "stage.join"})).await;
    assert_eq!(result["status"], "ON_STAGE");
    bot.close_stdin().await;
    assert_eq!(bot.exit_code().await, Some(0));

    // A link whose fingerprint is another certificate's is refused, naming both.
    let wrong_hex: String = hex
        .chars()
        .map(|c| if c == '0' { '1' } else { '0' })
        .collect();
    let wrong = link.replace(hex, &wrong_hex);
    let mut bot = Proc::spawn("bot-wrong-fp", &["bot", "--link", &wrong], &[]);
    let line = bot.next().await.expect("an error line");
    assert_eq!(line["error"]["code"], "untrusted_server", "{line}");
    let message = line["error"]["message"].as_str().expect("message");
    assert!(
        message.contains(&wrong_hex) && message.contains(hex),
        "{message}"
    );
    assert_ne!(bot.exit_code().await, Some(0));

    // A truncated link is a bad_link naming what is missing; the bot never connects.
    let cut = &link[..link.find("&token=").expect("token") + 5];
    let mut bot = Proc::spawn("bot-cut-link", &["bot", "--link", cut], &[]);
    let line = bot.next().await.expect("an error line");
    assert_eq!(line["error"]["code"], "bad_link", "{line}");
    assert!(
        line["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("token")),
        "{line}"
    );
    assert_ne!(bot.exit_code().await, Some(0));

    // The next start reuses the stored certificate: links already handed out keep working.
    server.child.kill().await.expect("kill serve");
    let (_server, _url, _key, again) = serve_tls(data.path()).await;
    assert_eq!(again, fp);
}

#[tokio::test]
async fn serve_refuses_missing_certificate_files() {
    let data = tempfile::tempdir().expect("temp dir");
    let missing = data.path().join("missing-cert.pem");
    let missing = missing.to_str().expect("utf-8 path");
    let output = tokio::time::timeout(
        WAIT,
        Command::new(BIN)
            .args([
                "serve",
                "--listen",
                "127.0.0.1:0",
                "--data",
                data.path().to_str().expect("utf-8"),
                "--tls-cert",
                missing,
                "--tls-key",
                missing,
            ])
            .stdin(Stdio::null())
            .output(),
    )
    .await
    .expect("serve exits")
    .expect("serve runs");
    assert!(!output.status.success());
    let text = String::from_utf8_lossy(&output.stdout);
    let line: Value = serde_json::from_str(text.trim()).expect("one JSON line");
    assert_eq!(line["error"]["code"], "bad_request", "{line}");
    let message = line["error"]["message"].as_str().expect("message");
    assert!(message.contains(missing), "{message}");
}

/// `onstage load-test` against the server it starts itself: the child must accept the
/// admin key the load test makes for it (a short one was refused, and every load test
/// and client benchmark failed before measuring anything).
#[tokio::test]
async fn a_load_test_runs_against_its_own_server() {
    let output = tokio::time::timeout(
        WAIT,
        Command::new(BIN)
            .args([
                "load-test",
                "--participants",
                "5",
                "--rounds",
                "2",
                "--no-media",
            ])
            .env_remove("ONSTAGE_ADMIN_KEY")
            .stdin(Stdio::null())
            .output(),
    )
    .await
    .expect("the load test finishes")
    .expect("runs");
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{text}");
    let report: Value = serde_json::from_str(text.trim()).expect("one JSON line");
    assert_eq!(report["event"], "load_test", "{report}");
    assert_eq!(report["participants"], 5, "{report}");
    assert_eq!(report["deliveries"], 10, "{report}");
}

#[tokio::test]
async fn a_host_bot_ends_the_meeting_and_a_viewer_bot_hears_it() {
    let data = tempfile::tempdir().expect("temp dir");
    let (_server, url, key) = serve(data.path()).await;
    let meeting = create_meeting(&url, &key, "Ending").await;
    let (host_id, mut h) = bot_as(&url, &key, &meeting, "Hana", "host").await;
    let (_, mut v) = bot_as(&url, &key, &meeting, "Vera", "viewer").await;

    // A viewer may not, and carries on.
    let reply = v.call(json!({"id":1,"call":"meeting.end"})).await;
    assert_eq!(reply["error"]["code"], "permission_denied", "{reply}");
    assert_eq!(
        v.ok(json!({"id":2,"call":"stage.status"})).await,
        json!({"status":"OFF_STAGE"})
    );

    // The host's end answers null, then the host bot exits 0 on its own.
    let result = h.ok(json!({"id":1,"call":"meeting.end"})).await;
    assert_eq!(result, Value::Null);
    assert_eq!(h.exit_code().await, Some(0));
    v.expect_event("meetingEnded", json!({"by": host_id.as_str()}))
        .await;
    v.expect_event(
        "connectionStateUpdate",
        json!({"state":"disconnected","reason":"meeting_ended"}),
    )
    .await;
}

#[tokio::test]
async fn bots_join_with_one_role_link_under_names_of_their_own() {
    let data = tempfile::tempdir().expect("temp dir");
    let (_server, url, key) = serve(data.path()).await;
    let meeting = create_meeting(&url, &key, "Open").await;
    let created = once_ok(
        &[
            "invite",
            "create",
            "--server",
            &url,
            "--meeting",
            &meeting,
            "--preset",
            "viewer",
        ],
        &key,
    )
    .await;
    assert_eq!(created["preset"], "viewer", "{created}");
    assert_eq!(created["revoked_at"], Value::Null);
    let link = created["link"].as_str().expect("link").to_owned();
    assert!(link.contains("&invite="), "{link}");
    let invite_id = created["invite_id"].as_str().expect("id").to_owned();

    let mut joined = Vec::new();
    for name in ["Ona", "Pia"] {
        let mut bot = Proc::spawn(name, &["bot", "--link", &link, "--name", name], &[]);
        let line = bot.next().await.expect("joined line");
        assert_eq!(line["event"], "joined", "{line}");
        joined.push((line["user_id"].clone(), bot));
    }
    assert_ne!(joined[0].0, joined[1].0, "two participants");
    let everyone = joined[1]
        .1
        .ok(json!({"id": 1, "call": "participants.list"}))
        .await;
    let mut names: Vec<(String, String)> = everyone
        .as_array()
        .expect("a list")
        .iter()
        .map(|p| {
            (
                p["name"].as_str().expect("name").to_owned(),
                p["preset"].as_str().expect("preset").to_owned(),
            )
        })
        .collect();
    names.sort();
    assert_eq!(
        names,
        [
            ("Ona".into(), "viewer".into()),
            ("Pia".into(), "viewer".into())
        ]
    );

    // Without a name, a role link is refused before anything is sent.
    let mut nameless = Proc::spawn("nameless", &["bot", "--link", &link], &[]);
    let line = nameless.next().await.expect("an error line");
    assert_eq!(line["error"]["code"], "bad_request", "{line}");
    assert_ne!(nameless.exit_code().await, Some(0));

    let revoked = once_ok(
        &[
            "invite",
            "revoke",
            "--server",
            &url,
            "--meeting",
            &meeting,
            "--invite-id",
            &invite_id,
        ],
        &key,
    )
    .await;
    assert!(revoked["revoked_at"].as_u64().is_some(), "{revoked}");
    let listed = once_ok(
        &["invite", "list", "--server", &url, "--meeting", &meeting],
        &key,
    )
    .await;
    assert_eq!(listed["invite_id"], json!(invite_id));
    assert_eq!(listed["revoked_at"], revoked["revoked_at"]);
    let mut late = Proc::spawn("late", &["bot", "--link", &link, "--name", "Quin"], &[]);
    let line = late.next().await.expect("an error line");
    assert_eq!(line["error"]["code"], "token_revoked", "{line}");
    assert_ne!(late.exit_code().await, Some(0));

    // Unknown preset: a clear refusal, nothing made.
    let (line, output) = once(
        &[
            "invite",
            "create",
            "--server",
            &url,
            "--meeting",
            &meeting,
            "--preset",
            "ghost",
        ],
        &key,
    )
    .await;
    assert!(!output.status.success());
    assert_eq!(line["error"]["code"], "bad_request", "{line}");
    for (_, mut bot) in joined {
        bot.close_stdin().await;
        assert_eq!(bot.exit_code().await, Some(0));
    }
}
