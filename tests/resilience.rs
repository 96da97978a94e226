//! What happens when things go wrong: dropped connections (resume inside the grace period,
//! removal after it), a server restart on the same data dir, and garbage on every endpoint.

use std::time::Duration;

use onstage_e2e::*;
use onstage_proto::{ErrorCode, StageStatus};
use serde_json::{json, Value};

const SHORT_GRACE: Duration = Duration::from_millis(400);

fn status_in(snapshot: &Value, user: &str) -> Value {
    snapshot["participants"]
        .as_array()
        .expect("participants")
        .iter()
        .find(|p| p["user_id"] == user)
        // The wire omits OFF_STAGE, the default.
        .map(|p| p.get("stage_status").cloned().unwrap_or(json!("OFF_STAGE")))
        .unwrap_or(Value::Null)
}

#[tokio::test]
async fn a_dropped_requester_resumes_its_place_inside_the_grace_period() {
    let server = TestServer::start().await;
    let meeting = server.meeting("resume").await;
    let mut host = server.join(&meeting, "Host", "host").await;
    let (first_id, first_token) = server.participant(&meeting, "First", "viewer").await;
    let second = server.join(&meeting, "Second", "viewer").await;

    let mut first = RawPeer::connect(&server, &first_token).await;
    let welcome = first.next_matching(|v| v["type"] == "welcome").await;
    let peer_id = welcome["peer_id"].clone();
    assert_eq!(welcome["resumed"], false);
    let reply = first
        .call(json!({"id":1,"call":"stage.requestAccess"}))
        .await;
    assert_eq!(reply["ok"], true, "{reply}");
    host.expect_event("newStageRequest", json!({"request":{"user_id":first_id}}))
        .await;
    second
        .meeting
        .stage()
        .request_access()
        .await
        .expect("second asks");
    host.expect_event(
        "newStageRequest",
        json!({"request":{"user_id":second.id()}}),
    )
    .await;

    first.vanish();
    host.expect_event(
        "participantConnection",
        json!({"user_id":first_id,"connected":false}),
    )
    .await;
    // Still in the queue, still first.
    let queue = host
        .meeting
        .stage()
        .get_access_requests()
        .await
        .expect("queue");
    assert_eq!(queue[0].user_id.as_str(), first_id);

    let mut back = RawPeer::connect(&server, &first_token).await;
    let welcome = back.next_matching(|v| v["type"] == "welcome").await;
    assert_eq!(welcome["resumed"], true);
    assert_eq!(welcome["peer_id"], peer_id, "same session");
    assert_eq!(
        status_in(&welcome["snapshot"], &first_id),
        "REQUESTED_TO_JOIN_STAGE"
    );
    assert_eq!(welcome["snapshot"]["queue"][0]["user_id"], first_id);
    host.expect_event(
        "participantConnection",
        json!({"user_id":first_id,"connected":true}),
    )
    .await;
    // The resumed session carries on: it can cancel its request.
    let reply = back
        .call(json!({"id":2,"call":"stage.cancelRequestAccess"}))
        .await;
    assert_eq!(reply["ok"], true, "{reply}");
}

#[tokio::test]
async fn a_dropped_participant_is_removed_after_the_grace_period() {
    let server = TestServer::start_with_grace(SHORT_GRACE).await;
    let meeting = server.meeting("expire").await;
    let mut host = server.join(&meeting, "Host", "host").await;
    let (speaker_id, speaker_token) = server.participant(&meeting, "Sp", "speaker").await;
    let (viewer_id, viewer_token) = server.participant(&meeting, "Vi", "viewer").await;

    let mut speaker = RawPeer::connect(&server, &speaker_token).await;
    assert_eq!(
        speaker.call(json!({"id":1,"call":"stage.join"})).await["ok"],
        true
    );
    let mut viewer = RawPeer::connect(&server, &viewer_token).await;
    assert_eq!(
        viewer
            .call(json!({"id":1,"call":"stage.requestAccess"}))
            .await["ok"],
        true
    );
    host.expect_event(
        "participantStageStatus",
        json!({"user_id":speaker_id,"status":"ON_STAGE"}),
    )
    .await;
    host.expect_event("newStageRequest", json!({})).await;

    speaker.vanish();
    viewer.vanish();
    host.expect_event(
        "participantStageStatus",
        json!({"user_id":speaker_id,"status":"OFF_STAGE"}),
    )
    .await;
    host.expect_event("participantLeft", json!({"user_id":speaker_id}))
        .await;
    host.expect_event("stageAccessRequestUpdate", json!({"requests":[]}))
        .await;
    host.expect_event("participantLeft", json!({"user_id":viewer_id}))
        .await;
    assert!(host
        .meeting
        .participants()
        .iter()
        .all(|p| p.user_id.as_str() != speaker_id && p.user_id.as_str() != viewer_id));

    // Coming back after the grace period is a fresh start, off stage.
    let mut again = RawPeer::connect(&server, &speaker_token).await;
    let welcome = again.next_matching(|v| v["type"] == "welcome").await;
    assert_eq!(welcome["resumed"], false);
    assert_eq!(status_in(&welcome["snapshot"], &speaker_id), "OFF_STAGE");
}

#[tokio::test]
async fn the_sdk_reconnects_and_resumes_after_a_network_cut() {
    let server = TestServer::start().await;
    let meeting = server.meeting("cut").await;
    let mut host = server.join(&meeting, "Host", "host").await;
    let proxy = CutProxy::start(&server.url).await;
    let (_, token) = server.participant(&meeting, "Wanderer", "speaker").await;
    let mut wanderer = Client::join(&proxy.url, &token).await;
    let id = wanderer.id();
    let peer = wanderer.meeting.peer_id();
    wanderer.meeting.stage().join().await.expect("join");
    host.expect_event(
        "participantStageStatus",
        json!({"user_id":id,"status":"ON_STAGE"}),
    )
    .await;

    proxy.cut().await;
    wanderer
        .expect_event("connectionStateUpdate", json!({"state":"reconnecting"}))
        .await;
    wanderer
        .expect_event("connectionStateUpdate", json!({"state":"connected"}))
        .await;
    assert_eq!(wanderer.meeting.peer_id(), peer, "resumed the same session");
    assert_eq!(wanderer.meeting.stage().status(), StageStatus::OnStage);
    host.expect_event(
        "participantConnection",
        json!({"user_id":id,"connected":true}),
    )
    .await;
    // Still on stage, still in control.
    wanderer
        .meeting
        .stage()
        .leave()
        .await
        .expect("leave after resume");
    host.expect_event(
        "participantStageStatus",
        json!({"user_id":id,"status":"OFF_STAGE"}),
    )
    .await;
}

#[tokio::test]
async fn a_guest_of_a_role_link_reconnects_as_itself_after_a_network_cut() {
    let server = TestServer::start().await;
    let meeting = server.meeting("open house").await;
    let mut host = server.join(&meeting, "Host", "host").await;
    let invite = server
        .admin
        .create_invite(&meeting, "speaker")
        .await
        .expect("an invite");
    let link = invite.invite().expect("a role link");
    assert!(link.invite);
    let proxy = CutProxy::start(&server.url).await;
    let options = onstage_client::JoinOptions::default();

    // A role link wants a name before anything is sent; the server refuses a bad one.
    let nameless = onstage_client::Meeting::join_link(&link, Some("  "), options.clone()).await;
    assert_eq!(
        nameless.map(|_| ()).map_err(|e| e.code()),
        Err(ErrorCode::BadRequest)
    );
    let personal_way = onstage_client::Meeting::join_invite(&link, options.clone()).await;
    assert_eq!(
        personal_way.map(|_| ()).map_err(|e| e.code()),
        Err(ErrorCode::BadRequest),
        "a role link is not joined as a personal one"
    );
    let bad = onstage_client::Meeting::join_guest(
        &proxy.url,
        &invite.token,
        "a\u{202e}b",
        options.clone(),
    )
    .await;
    assert_eq!(
        bad.map(|_| ()).map_err(|e| e.code()),
        Err(ErrorCode::BadRequest)
    );

    let guest = within(
        "guest join",
        onstage_client::Meeting::join_guest(&proxy.url, &invite.token, "Nia", options.clone()),
    )
    .await
    .expect("the guest joins");
    assert_ne!(guest.token(), invite.token, "it keeps a token of its own");
    let mut guest = Client::of(guest, &invite.token);
    let id = guest.id();
    let peer = guest.meeting.peer_id();
    assert_eq!(guest.meeting.self_().name, "Nia");
    assert_eq!(guest.meeting.preset().name, "speaker");
    guest.meeting.stage().join().await.expect("on stage");
    host.expect_event(
        "participantStageStatus",
        json!({"user_id":id,"status":"ON_STAGE"}),
    )
    .await;

    // Revoked: nobody new comes in, but the guest reconnects with its own token.
    server
        .admin
        .revoke_invite(&meeting, &invite.id)
        .await
        .expect("revoke");
    let refused = onstage_client::Meeting::join_link(&link, Some("Oz"), options).await;
    assert_eq!(
        refused.map(|_| ()).map_err(|e| e.code()),
        Err(ErrorCode::TokenRevoked)
    );
    proxy.cut().await;
    guest
        .expect_event("connectionStateUpdate", json!({"state":"reconnecting"}))
        .await;
    guest
        .expect_event(
            "connectionStateUpdate",
            json!({"state":"connected","resumed":true}),
        )
        .await;
    assert_eq!(
        guest.meeting.user_id().to_string(),
        id,
        "the same participant"
    );
    assert_eq!(guest.meeting.peer_id(), peer, "resumed the same session");
    assert_eq!(guest.meeting.stage().status(), StageStatus::OnStage);
    let everyone = server
        .admin
        .list_participants(&meeting)
        .await
        .expect("list");
    assert_eq!(
        everyone.len(),
        2,
        "the reconnect made nobody new: {everyone:?}"
    );
}

#[tokio::test]
async fn a_restart_keeps_meetings_presets_participants_and_tokens() {
    let server = TestServer::start().await;
    let meeting = server.meeting("durable").await;
    server
        .preset(json!({"name":"panelist","stage_access":"ALLOWED","accept_stage_requests":true}))
        .await;
    let (host_id, host_token) = server.participant(&meeting, "Host", "panelist").await;
    let (_, viewer_token) = server.participant(&meeting, "Viewer", "viewer").await;
    let admin_key = server.admin_key.clone();

    let server = server.restart().await;
    assert_eq!(
        server.admin_key, admin_key,
        "the generated admin key is kept"
    );
    let (status, body) = server
        .admin("GET", &format!("/v1/meetings/{meeting}"), None)
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["data"]["title"], "durable");
    let (status, body) = server.admin("GET", "/v1/presets/panelist", None).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["data"]["accept_stage_requests"], true);
    let (_, body) = server
        .admin("GET", &format!("/v1/meetings/{meeting}/participants"), None)
        .await;
    assert_eq!(body["data"].as_array().map(Vec::len), Some(2));

    // Tokens minted before the restart still work, with their custom preset.
    let mut host = Client::join(&server.url, &host_token).await;
    assert_eq!(host.id(), host_id);
    let viewer = Client::join(&server.url, &viewer_token).await;
    viewer
        .meeting
        .stage()
        .request_access()
        .await
        .expect("request");
    host.expect_event("newStageRequest", json!({})).await;
    host.meeting
        .stage()
        .grant_access(&[viewer.user_id()])
        .await
        .expect("the custom preset's permission survived");
}

#[tokio::test]
async fn garbage_on_the_websocket_is_refused_and_hurts_nobody() {
    let server = TestServer::start().await;
    let meeting = server.meeting("garbage").await;
    let mut host = server.join(&meeting, "Host", "host").await;
    let (_, token) = server.participant(&meeting, "Troll", "viewer").await;
    let mut troll = RawPeer::connect(&server, &token).await;
    let welcome = troll.next_matching(|v| v["type"] == "welcome").await;
    let seq_before = welcome["snapshot"]["seq"].as_u64().expect("seq");

    let bad_request = |v: &Value| v["error"]["code"] == "bad_request";
    troll.send_text("this is not json").await;
    let e = troll.next_json().await;
    assert!(bad_request(&e), "{e}");
    troll.send_text(r#"{"id":5,"call":"stage.takeOver"}"#).await;
    let e = troll.next_json().await;
    assert!(bad_request(&e) && e["id"] == 5, "{e}");
    troll
        .send_text(r#"{"id":6,"call":"stage.grantAccess","user_ids":"everyone"}"#)
        .await;
    let e = troll.next_json().await;
    assert!(bad_request(&e) && e["id"] == 6, "{e}");
    troll
        .send_text(format!(
            r#"{{"id":7,"call":"stage.join","pad":"{}"}}"#,
            // Over the protocol's 16 KiB, under the 64 KiB that closes the connection.
            "x".repeat(32 * 1024)
        ))
        .await;
    let e = troll.next_json().await;
    assert!(bad_request(&e), "oversized: {e}");
    troll.send_binary(vec![0xde, 0xad, 0xbe, 0xef]).await;
    let e = troll.next_json().await;
    assert!(bad_request(&e), "binary: {e}");

    // The offender's connection still works, and the room did not move.
    let reply = troll.call(json!({"id":8,"call":"meeting.snapshot"})).await;
    assert_eq!(reply["ok"], true);
    assert_eq!(reply["result"]["seq"].as_u64(), Some(seq_before));
    // Everyone else carries on.
    let reply = troll
        .call(json!({"id":9,"call":"stage.requestAccess"}))
        .await;
    assert_eq!(reply["ok"], true);
    host.expect_event("newStageRequest", json!({})).await;
    assert!(host.meeting.stage().get_access_requests().await.is_ok());
}

#[tokio::test]
async fn garbage_on_the_rest_api_is_refused_and_changes_nothing() {
    let server = TestServer::start().await;
    let meeting = server.meeting("rest").await;
    let key = server.admin_key.clone();
    let count = |body: &Value| body["data"].as_array().map(Vec::len);
    let (_, before) = server.admin("GET", "/v1/meetings", None).await;

    // (method, path, body, bearer key, expected status, expected code)
    type Case<'a> = (
        &'a str,
        String,
        Option<String>,
        Option<&'a str>,
        u16,
        &'a str,
    );
    let cases: Vec<Case> = vec![
        (
            "POST",
            "/v1/meetings".into(),
            Some("{not json".into()),
            Some(&key),
            400,
            "bad_request",
        ),
        (
            "POST",
            "/v1/meetings".into(),
            Some(r#"{"title":42}"#.into()),
            Some(&key),
            400,
            "bad_request",
        ),
        (
            "POST",
            "/v1/meetings".into(),
            Some(r#"{"title":"x"}"#.into()),
            None,
            401,
            "unauthorized",
        ),
        (
            "POST",
            "/v1/meetings".into(),
            Some(r#"{"title":"x"}"#.into()),
            Some("wrong"),
            401,
            "unauthorized",
        ),
        (
            "POST",
            "/v1/meetings".into(),
            Some(format!(r#"{{"title":"{}"}}"#, "x".repeat(200_000))),
            Some(&key),
            413,
            "bad_request",
        ),
        (
            "GET",
            "/v1/meetings/does-not-exist".into(),
            None,
            Some(&key),
            404,
            "not_found",
        ),
        (
            "POST",
            "/v1/meetings/does-not-exist/participants".into(),
            Some(r#"{"name":"a","preset_name":"host"}"#.into()),
            Some(&key),
            404,
            "not_found",
        ),
        (
            "POST",
            format!("/v1/meetings/{meeting}/participants"),
            Some(r#"{"name":"a","preset_name":"emperor"}"#.into()),
            Some(&key),
            400,
            "bad_request",
        ),
        (
            "POST",
            format!("/v1/meetings/{meeting}/participants"),
            Some(r#"{"preset_name":"host"}"#.into()),
            Some(&key),
            400,
            "bad_request",
        ),
        (
            "POST",
            "/v1/presets".into(),
            Some(r#"{"name":"host","stage_access":"ALLOWED"}"#.into()),
            Some(&key),
            400,
            "bad_request",
        ),
        (
            "POST",
            "/v1/presets".into(),
            Some(r#"{"name":"x","stage_access":"SOMETIMES"}"#.into()),
            Some(&key),
            400,
            "bad_request",
        ),
        (
            "DELETE",
            "/v1/presets/viewer".into(),
            None,
            Some(&key),
            400,
            "bad_request",
        ),
    ];
    for (method, path, body, auth, want_status, want_code) in cases {
        let (status, reply) = server.raw(method, &path, body, auth).await;
        assert_eq!(status, want_status, "{method} {path}: {reply}");
        assert_eq!(reply["success"], false, "{method} {path}: {reply}");
        assert_eq!(
            reply["error"]["code"], want_code,
            "{method} {path}: {reply}"
        );
    }

    let (_, after) = server.admin("GET", "/v1/meetings", None).await;
    assert_eq!(count(&after), count(&before), "no meeting was created");
    let (_, participants) = server
        .admin("GET", &format!("/v1/meetings/{meeting}/participants"), None)
        .await;
    assert_eq!(count(&participants), Some(0), "no participant was added");
    let (_, presets) = server.admin("GET", "/v1/presets", None).await;
    assert_eq!(count(&presets), Some(4), "only the built-in presets");
    let (status, _) = server.raw("GET", "/healthz", None, None).await;
    assert_eq!(status, 200);
}

#[tokio::test]
async fn a_token_for_one_meeting_cannot_touch_another() {
    let server = TestServer::start().await;
    let a = server.meeting("a").await;
    let b = server.meeting("b").await;
    let mut host_a = server.join(&a, "HostA", "host").await;
    let guest_b = server.join(&b, "GuestB", "viewer").await;
    guest_b
        .meeting
        .stage()
        .request_access()
        .await
        .expect("request in b");
    // The host of A sees nothing of B and cannot act on B's participants.
    assert!(host_a
        .meeting
        .stage()
        .get_access_requests()
        .await
        .expect("queue")
        .is_empty());
    let err = host_a
        .meeting
        .stage()
        .grant_access(&[guest_b.user_id()])
        .await
        .expect_err("not in this meeting");
    assert_eq!(err.code(), ErrorCode::NotFound);
    assert!(host_a
        .drain()
        .iter()
        .all(|e| e["event"] != "newStageRequest"));
}

#[tokio::test]
async fn expired_and_forged_tokens_are_unauthorized_and_metrics_count_the_traffic() {
    use jsonwebtoken::{encode, EncodingKey, Header};
    let server = TestServer::start().await;
    let meeting = server.meeting("tokens").await;
    let (user, issued) = server.participant(&meeting, "Late", "viewer").await;
    let secret = std::fs::read_to_string(server.data_dir().join("jwt_secret")).expect("secret");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs();
    // The participant's token generation, as the issued token carries it.
    let gen = jsonwebtoken::decode::<Value>(
        &issued,
        &jsonwebtoken::DecodingKey::from_secret(secret.trim().as_bytes()),
        &jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::HS256),
    )
    .expect("the issued token decodes")
    .claims["gen"]
        .clone();
    let mint = |secret: &str, exp: u64| {
        encode(
            &Header::default(),
            &json!({"sub": user, "meeting_id": meeting, "iat": now - 7200, "exp": exp,
                    "gen": gen}),
            &EncodingKey::from_secret(secret.trim().as_bytes()),
        )
        .expect("mint")
    };
    let expired = mint(&secret, now - 3600);
    let forged = mint("not-the-secret", now + 3600);
    let valid = mint(&secret, now + 3600);
    // An expired token of this server says so (the app tells the user to ask for a new
    // link); one signed with another secret is refused, expired or not.
    for (token, code) in [
        (&expired, ErrorCode::TokenExpired),
        (&forged, ErrorCode::Unauthorized),
    ] {
        let err = onstage_client::Meeting::join(&server.url, token)
            .await
            .expect_err("refused");
        assert_eq!(err.code(), code);
    }
    // The same claims, properly signed and in date, are accepted.
    let client = Client::join(&server.url, &valid).await;
    assert_eq!(client.id(), user);

    let (status, text) = server.raw("GET", "/metrics", None, None).await;
    assert_eq!(status, 200);
    let text = text.as_str().expect("metrics are text").to_owned();
    assert!(text.contains("onstage_signal_connections 1"), "{text}");
    assert!(text.contains("onstage_rooms 1"), "{text}");
    assert!(text.contains("onstage_http_requests_total"), "{text}");
}

#[tokio::test]
async fn a_frame_beyond_the_hard_limit_closes_only_the_offender() {
    let server = TestServer::start_with_grace(SHORT_GRACE).await;
    let meeting = server.meeting("flood").await;
    let mut host = server.join(&meeting, "Host", "host").await;
    let (troll_id, token) = server.participant(&meeting, "Flood", "viewer").await;
    let mut troll = RawPeer::connect(&server, &token).await;
    troll.next_matching(|v| v["type"] == "welcome").await;
    host.expect_event(
        "participantJoined",
        json!({"participant":{"user_id":troll_id}}),
    )
    .await;
    // 2 MiB: over the 64 KiB hard cap, so the server drops this connection...
    let _ = futures_util::SinkExt::send(
        &mut troll.ws,
        tokio_tungstenite::tungstenite::Message::text("x".repeat(2 * 1024 * 1024)),
    )
    .await;
    let closed = within("the offender's connection to close", async {
        loop {
            match futures_util::StreamExt::next(&mut troll.ws).await {
                None | Some(Err(_)) => return,
                Some(Ok(tokio_tungstenite::tungstenite::Message::Close(_))) => return,
                Some(Ok(_)) => {}
            }
        }
    });
    closed.await;
    host.expect_event(
        "participantConnection",
        json!({"user_id":troll_id,"connected":false}),
    )
    .await;
    // ...and nobody else notices anything but that.
    host.meeting
        .stage()
        .join()
        .await
        .expect("the host carries on");
    assert_eq!(host.meeting.stage().status(), StageStatus::OnStage);
}

#[tokio::test]
async fn an_empty_room_is_freed_and_a_later_join_starts_a_new_one() {
    let server = TestServer::start().await;
    let meeting = server.meeting("freed").await;
    let (_, token) = server.participant(&meeting, "Solo", "host").await;
    let solo = Client::join(&server.url, &token).await;
    solo.meeting.stage().join().await.expect("join");
    solo.meeting.leave().await.expect("leave the meeting");
    let rooms_gauge = || async {
        let (_, text) = server.raw("GET", "/metrics", None, None).await;
        text.as_str()
            .and_then(|t| t.lines().find(|l| l.starts_with("onstage_rooms ")))
            .map(str::to_owned)
    };
    within("the room to be freed", async {
        // The gauge is state, not an event: poll it, bounded by `within`.
        while rooms_gauge().await.as_deref() != Some("onstage_rooms 0") {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    // The meeting is still there and starts afresh: off stage, alone.
    let again = Client::join(&server.url, &token).await;
    assert_eq!(again.meeting.stage().status(), StageStatus::OffStage);
    assert_eq!(again.meeting.participants().len(), 1);
    assert_eq!(rooms_gauge().await.as_deref(), Some("onstage_rooms 1"));
}

/// Issues `id` (again) in `meeting`; returns its token.
async fn issue(server: &TestServer, meeting: &str, id: &str) -> String {
    let (status, body) = server
        .admin(
            "POST",
            &format!("/v1/meetings/{meeting}/participants"),
            Some(json!({"name": id, "preset_name": "speaker", "custom_participant_id": id})),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    body["data"]["token"].as_str().expect("token").to_owned()
}

#[tokio::test]
async fn the_sdk_stops_for_good_on_a_revoked_token_a_removal_and_a_deleted_meeting() {
    use onstage_client::{ClientError, CloseReason};
    let server = TestServer::start().await;
    let meeting = server.meeting("cut off").await;
    let mut host = server.join(&meeting, "Host", "host").await;

    // Re-issued: the session of the old token ends, and says so.
    let old = issue(&server, &meeting, "ann").await;
    let mut ann = Client::join(&server.url, &old).await;
    let new = issue(&server, &meeting, "ann").await;
    ann.expect_event(
        "connectionStateUpdate",
        json!({"state":"disconnected","reason":"revoked"}),
    )
    .await;
    assert_eq!(ann.meeting.end_reason(), Some(CloseReason::Revoked));
    assert_eq!(
        ann.meeting
            .stage()
            .request_access()
            .await
            .unwrap_err()
            .code(),
        ErrorCode::TokenRevoked
    );
    assert!(
        !ann.seen.iter().any(|e| e["state"] == "reconnecting"),
        "{:?}",
        ann.seen
    );
    let err = onstage_client::Meeting::join(&server.url, &old)
        .await
        .expect_err("the old token is refused");
    assert!(matches!(err, ClientError::TokenRevoked(_)), "{err:?}");

    // The new token works; then the participant is removed.
    let mut ann = Client::join(&server.url, &new).await;
    ann.meeting.stage().join().await.expect("on stage");
    let (status, body) = server
        .admin(
            "DELETE",
            &format!("/v1/meetings/{meeting}/participants/ann"),
            None,
        )
        .await;
    assert_eq!(status, 200, "{body}");
    ann.expect_event(
        "connectionStateUpdate",
        json!({"state":"disconnected","reason":"removed"}),
    )
    .await;
    host.expect_event(
        "participantLeft",
        json!({"user_id":"ann","reason":"removed"}),
    )
    .await;
    assert!(host.meeting.participant(&"ann".into()).is_none());

    // The meeting deleted: everyone is told.
    let (status, body) = server
        .admin("DELETE", &format!("/v1/meetings/{meeting}"), None)
        .await;
    assert_eq!(status, 200, "{body}");
    host.expect_event(
        "connectionStateUpdate",
        json!({"state":"disconnected","reason":"meeting_deleted"}),
    )
    .await;
    assert_eq!(
        host.meeting.stage().join().await,
        Err(ClientError::Ended(CloseReason::MeetingDeleted))
    );
}
