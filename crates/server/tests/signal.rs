//! WebSocket signaling at `/v1/signal`: refusals before the upgrade, the welcome, bad and
//! oversized frames, the rate limits and the close for bad input, the broadcast budget,
//! replaced connections, leaving, idle connections and shutdown.

mod common;

use std::time::Duration;

use common::{assert_error, is_event, within, Peer, Srv};
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

const CONNECTIONS: &str = "onstage_signal_connections";
const CLOSED_BAD_INPUT: &str = "onstage_signal_closed_bad_input_total";
const RATE_LIMITED: &str = "onstage_signal_rate_limited_frames_total";

/// A token signed with the server's own secret (read from the data dir), with any claims.
fn forge(srv: &Srv, claims: Value) -> String {
    let secret = std::fs::read_to_string(srv.data.path().join("jwt_secret")).expect("secret");
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(secret.trim().as_bytes()),
    )
    .expect("sign")
}

fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs()
}

#[tokio::test]
async fn bad_tokens_are_refused_before_the_upgrade_with_json_401() {
    let srv = Srv::start().await;
    let meeting = srv.meeting("m").await;
    let (user, token) = srv.participant(&meeting, "Ann", "host").await;
    let now = now_secs();
    let expired = forge(
        &srv,
        json!({"sub": user, "meeting_id": meeting, "iat": now - 7200, "exp": now - 3600}),
    );
    let unknown_user = forge(
        &srv,
        json!({"sub": "nobody", "meeting_id": meeting, "iat": now, "exp": now + 600}),
    );
    let unknown_meeting = forge(
        &srv,
        json!({"sub": user, "meeting_id": "no-such-meeting", "iat": now, "exp": now + 600}),
    );
    let no_exp = forge(
        &srv,
        json!({"sub": user, "meeting_id": meeting, "iat": now}),
    );
    let other_secret = jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &json!({"sub": user, "meeting_id": meeting, "iat": now, "exp": now + 600}),
        &jsonwebtoken::EncodingKey::from_secret(b"not the server's secret"),
    )
    .expect("sign");
    let mut tampered = token.clone();
    tampered.insert(tampered.len() / 2, 'x');

    // Expired: its own code, so the user is told to ask for a new link.
    let (status, body) = srv
        .raw("GET", &format!("/v1/signal?token={expired}"), None, None)
        .await;
    assert_error(status, &body, 401, "token_expired");
    // Expired and not ours: refused as not ours, never as "expired".
    let expired_elsewhere = jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &json!({"sub": user, "meeting_id": meeting, "iat": now - 7200, "exp": now - 3600}),
        &jsonwebtoken::EncodingKey::from_secret(b"not the server's secret"),
    )
    .expect("sign");
    for bad in [
        "",
        "garbage",
        &expired_elsewhere,
        &unknown_user,
        &unknown_meeting,
        &no_exp,
        &other_secret,
        &tampered,
    ] {
        // Over plain HTTP: the JSON error shape.
        let (status, body) = srv
            .raw("GET", &format!("/v1/signal?token={bad}"), None, None)
            .await;
        assert_error(status, &body, 401, "unauthorized");
        // As a WebSocket client sees it: the handshake fails with 401.
        match tokio_tungstenite::connect_async(srv.ws_url(bad)).await {
            Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => {
                assert_eq!(resp.status().as_u16(), 401)
            }
            other => panic!("token {bad:?} was not refused: {:?}", other.map(|_| ())),
        }
    }
    let (status, body) = srv.raw("GET", "/v1/signal", None, None).await;
    assert_error(status, &body, 401, "unauthorized");
    // A valid token on a request that is not an upgrade: our JSON 400.
    let (status, body) = srv
        .raw("GET", &format!("/v1/signal?token={token}"), None, None)
        .await;
    assert_error(status, &body, 400, "bad_request");
    srv.await_metric(CONNECTIONS, 0.0).await;
}

#[tokio::test]
async fn the_token_may_come_as_a_bearer_header() {
    let srv = Srv::start().await;
    let meeting = srv.meeting("m").await;
    let (user, token) = srv.participant(&meeting, "Ann", "viewer").await;
    let url = format!("{}/v1/signal", srv.url.replacen("http", "ws", 1));
    let mut request = url.into_client_request().expect("request");
    request.headers_mut().insert(
        "authorization",
        format!("Bearer {token}").parse().expect("header"),
    );
    let (mut ws, _) = within(
        "connect with bearer",
        tokio_tungstenite::connect_async(request),
    )
    .await
    .expect("connects");
    use futures_util::StreamExt;
    let first = within("welcome", ws.next())
        .await
        .expect("a frame")
        .expect("ok");
    let welcome: Value = serde_json::from_str(first.to_text().expect("text")).expect("json");
    assert_eq!(welcome["type"], json!("welcome"));
    assert_eq!(welcome["user_id"], json!(user));
}

#[tokio::test]
async fn the_welcome_carries_ids_preset_grace_and_a_consistent_snapshot() {
    let srv = Srv::start().await;
    let title = "Quarterly all-hands";
    let meeting = srv.meeting(title).await;
    let (host_id, host_token) = srv.participant(&meeting, "Host", "host").await;
    let (viewer_id, viewer_token) = srv.participant(&meeting, "Vic", "viewer").await;

    let (mut host, welcome) = Peer::join(&srv, &host_token).await;
    assert_eq!(welcome["meeting_id"], json!(meeting));
    assert_eq!(
        welcome["title"],
        json!(title),
        "the meeting's title, for everyone's header"
    );
    assert_eq!(welcome["user_id"], json!(host_id));
    assert_eq!(welcome["resumed"], json!(false));
    assert_eq!(welcome["grace_ms"], json!(30_000));
    assert_eq!(welcome["preset"]["name"], json!("host"));
    assert_eq!(welcome["preset"]["accept_stage_requests"], json!(true));
    assert!(welcome["peer_id"].as_str().is_some_and(|p| !p.is_empty()));
    let snapshot = &welcome["snapshot"];
    assert_eq!(snapshot["max_on_stage"], json!(25));
    assert_eq!(snapshot["queue"], json!([]));
    let roster = snapshot["participants"].as_array().expect("roster");
    assert_eq!(roster.len(), 1);
    assert_eq!(roster[0]["user_id"], json!(host_id));
    assert_eq!(roster[0]["name"], json!("Host"));
    let host_seq = snapshot["seq"].as_u64().expect("seq");

    let (mut viewer, welcome) = Peer::join(&srv, &viewer_token).await;
    let viewer_seq = welcome["snapshot"]["seq"].as_u64().expect("seq");
    assert_eq!(
        welcome["snapshot"]["participants"]
            .as_array()
            .expect("roster")
            .len(),
        2
    );
    // The host hears of the viewer with exactly the seq the viewer's snapshot includes.
    let joined = host
        .next_matching(|m| is_event(m, "participant_joined"))
        .await;
    assert_eq!(joined["seq"], json!(host_seq + 1));
    assert_eq!(joined["seq"], json!(viewer_seq));
    assert_eq!(joined["event"]["participant"]["user_id"], json!(viewer_id));

    // The viewer's first event comes right after its snapshot.
    let reply = viewer.call_ok(json!({"call":"stage.requestAccess"})).await;
    assert_eq!(
        reply["result"],
        json!({"stage_status":"REQUESTED_TO_JOIN_STAGE"})
    );
    let (status, stage) = srv
        .admin("GET", &format!("/v1/meetings/{meeting}/stage"), None)
        .await;
    assert_eq!(status, 200);
    assert_eq!(stage["data"]["queue"][0]["user_id"], json!(viewer_id));
    let ev = host
        .next_matching(|m| is_event(m, "stage_status_changed"))
        .await;
    assert_eq!(ev["seq"], json!(viewer_seq + 1));
    assert_eq!(ev["event"]["status"], json!("REQUESTED_TO_JOIN_STAGE"));
}

#[tokio::test]
async fn bad_frames_get_bad_request_and_the_connection_carries_on() {
    let srv = Srv::start().await;
    let meeting = srv.meeting("m").await;
    let (host_id, host_token) = srv.participant(&meeting, "Host", "host").await;
    let (_, other_token) = srv.participant(&meeting, "Other", "viewer").await;
    let (mut host, _) = Peer::join(&srv, &host_token).await;
    let (mut other, _) = Peer::join(&srv, &other_token).await;

    let error_frame = |m: &Value| m["type"] == "error" && m["error"]["code"] == "bad_request";

    host.send_text("not json").await;
    assert!(error_frame(
        &host.next_matching(|m| m["type"] != "event").await
    ));
    host.send_text("[1,2,3]").await;
    assert!(error_frame(
        &host.next_matching(|m| m["type"] != "event").await
    ));
    host.send_text(r#"{"call":"stage.join"}"#).await;
    assert!(error_frame(
        &host.next_matching(|m| m["type"] != "event").await
    ));
    host.send_binary(vec![0, 1, 2, 3]).await;
    assert!(error_frame(
        &host.next_matching(|m| m["type"] != "event").await
    ));
    // Over 16 KiB (but under the 1 MiB hard cap): refused, and answered with its id (read
    // from the frame's start), so a caller waiting for reply 9 hears at once.
    host.send_text(format!(
        r#"{{"id":9,"call":"stage.join","pad":"{}"}}"#,
        "x".repeat(20 * 1024)
    ))
    .await;
    let reply = host.next_matching(|m| m["type"] != "event").await;
    assert_eq!(reply["type"], "reply", "{reply}");
    assert_eq!(reply["id"], json!(9), "{reply}");
    assert_eq!(reply["error"]["code"], "bad_request", "{reply}");

    for (request, id) in [
        (json!({"id":5,"call":"stage.dance"}), 5),
        (json!({"id":6,"call":"stage.grantAccess"}), 6),
        (json!({"id":7,"call":"stage.kick","user_ids":"everyone"}), 7),
        (json!({"id":8,"call":42}), 8),
    ] {
        let reply = host.call(request).await;
        assert_eq!(reply["id"], json!(id));
        assert_eq!(reply["ok"], json!(false));
        assert_eq!(reply["error"]["code"], json!("bad_request"), "{reply}");
    }

    // The same connection still works, and so does everyone else's.
    let reply = host.call(json!({"call":"stage.join"})).await;
    assert_eq!(
        reply["result"],
        json!({"stage_status":"ON_STAGE"}),
        "{reply}"
    );
    let ev = other
        .next_matching(|m| is_event(m, "stage_status_changed"))
        .await;
    assert_eq!(ev["event"]["user_id"], json!(host_id));
    assert_eq!(ev["event"]["status"], json!("ON_STAGE"));
    other.call_ok(json!({"call":"stage.requestAccess"})).await;
    assert_eq!(other.participant_count().await, 2);
}

#[tokio::test]
async fn a_frame_over_the_hard_cap_closes_only_that_connection() {
    let srv = Srv::start().await;
    let meeting = srv.meeting("m").await;
    let (_, a_token) = srv.participant(&meeting, "A", "host").await;
    let (_, b_token) = srv.participant(&meeting, "B", "viewer").await;
    let (mut a, _) = Peer::join(&srv, &a_token).await;
    let (mut b, _) = Peer::join(&srv, &b_token).await;
    // Four times the protocol's 16 KiB is the most a frame may be; one byte more (here a
    // frame of 1 MiB - 200 bytes, once accepted and read in full) ends the connection at
    // its header. (The goodbye may be lost: the socket closes with the frame unread.)
    a.send_text("x".repeat(1024 * 1024 - 200)).await;
    a.until_closed().await;
    srv.await_metric(CLOSED_BAD_INPUT, 1.0).await;
    b.call_ok(json!({"call":"stage.requestAccess"})).await;
    // The cap itself is not refused: a frame of exactly 64 KiB gets bad_request.
    let mut frame = r#"{"id":3,"pad":""#.to_owned();
    frame.push_str(&"x".repeat(64 * 1024 - frame.len() - 2));
    frame.push_str(r#""}"#);
    assert_eq!(frame.len(), 64 * 1024);
    b.send_text(frame).await;
    let reply = b.next_matching(|m| m["type"] == "reply").await;
    assert_eq!(reply["id"], json!(3), "{reply}");
    assert_eq!(reply["error"]["code"], "bad_request", "{reply}");
}

#[tokio::test]
async fn big_junk_frames_are_throttled_then_closed_with_goodbye_bad_input() {
    let srv = Srv::start_with(|c| {
        // Two 60 KiB frames fit the byte bucket, and it never refills within the test.
        c.rate_limit_bytes_burst = 128 * 1024;
        c.rate_limit_bytes_per_sec = 1;
        c.bad_frames_before_close = 6;
    })
    .await;
    let meeting = srv.meeting("m").await;
    let (_, junk_token) = srv.participant(&meeting, "Junk", "viewer").await;
    let (_, host_token) = srv.participant(&meeting, "Host", "host").await;
    let (mut junk, _) = Peer::join(&srv, &junk_token).await;
    let (mut host, _) = Peer::join(&srv, &host_token).await;
    // No id to answer to: past the limit, only the first of the run is told.
    let frame = format!(r#"{{"pad":"{}"}}"#, "x".repeat(60 * 1024));
    for _ in 0..6 {
        junk.send_text(frame.clone()).await;
    }
    // Two frames within the byte budget get bad_request (too large for the protocol), the
    // first over it gets rate_limited, the next two get nothing, the sixth bad frame in a
    // row ends the connection.
    let seen: Vec<Value> = junk
        .until_closed()
        .await
        .into_iter()
        .filter(|m| m["type"] != "event")
        .collect();
    let codes: Vec<&str> = seen
        .iter()
        .map(|m| {
            m["error"]["code"]
                .as_str()
                .or_else(|| m["reason"].as_str())
                .unwrap_or("?")
        })
        .collect();
    assert_eq!(
        codes,
        ["bad_request", "bad_request", "rate_limited", "bad_input"],
        "{seen:?}"
    );
    assert_eq!(
        seen.last(),
        Some(&json!({"type":"goodbye","reason":"bad_input"}))
    );
    srv.await_metric(CLOSED_BAD_INPUT, 1.0).await;
    assert_eq!(srv.metric(RATE_LIMITED).await, 4.0);
    // Everyone else carries on, answered at once.
    let started = std::time::Instant::now();
    host.call_ok(json!({"call":"stage.join"})).await;
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn bad_frames_in_a_row_close_the_connection_and_a_good_one_resets_the_count() {
    let srv = Srv::start_with(|c| c.bad_frames_before_close = 4).await;
    let meeting = srv.meeting("m").await;
    let (_, token) = srv.participant(&meeting, "Bad", "viewer").await;
    let (_, other_token) = srv.participant(&meeting, "Other", "viewer").await;
    let (mut bad, _) = Peer::join(&srv, &token).await;
    let (mut other, _) = Peer::join(&srv, &other_token).await;
    let not_event = |m: &Value| m["type"] != "event";
    // Three bad frames, then a valid call (which the room refuses: still not bad input):
    // the count starts over. Three more, then a good call, and it starts over again.
    for _ in 0..2 {
        bad.send_text("not json").await;
        bad.send_binary(vec![1, 2, 3]).await;
        bad.send_text(r#"{"id":1,"call":"stage.dance"}"#).await;
        for _ in 0..3 {
            let refused = bad.next_matching(not_event).await;
            assert_eq!(refused["error"]["code"], "bad_request", "{refused}");
        }
        let reply = bad.call(json!({"call":"stage.cancelRequestAccess"})).await;
        assert_eq!(reply["error"]["code"], "invalid_state", "{reply}");
    }
    // Four in a row: three answered, the fourth ends it.
    for frame in ["{", "[]", r#"{"id":2}"#, r#"{"id":3,"call":"stage.fly"}"#] {
        bad.send_text(frame).await;
    }
    let seen: Vec<Value> = bad
        .until_closed()
        .await
        .into_iter()
        .filter(not_event)
        .collect();
    assert_eq!(seen.len(), 4, "{seen:?}");
    assert!(
        seen[..3]
            .iter()
            .all(|m| m["error"]["code"] == "bad_request"),
        "{seen:?}"
    );
    assert_eq!(seen[3], json!({"type":"goodbye","reason":"bad_input"}));
    srv.await_metric(CLOSED_BAD_INPUT, 1.0).await;
    // Nobody else is affected.
    other.call_ok(json!({"call":"stage.requestAccess"})).await;
    // A connection that just goes away (no close frame) is a network matter, not bad input.
    drop(other);
    srv.await_metric(CONNECTIONS, 0.0).await;
    assert_eq!(srv.metric(CLOSED_BAD_INPUT).await, 1.0);
}

#[tokio::test]
async fn a_client_that_ignores_rate_limited_is_answered_then_closed() {
    let srv = Srv::start_with(|c| {
        c.rate_limit_burst = 3;
        c.rate_limit_per_sec = 0.001;
        c.bad_frames_before_close = 5;
    })
    .await;
    let meeting = srv.meeting("m").await;
    let (_, token) = srv.participant(&meeting, "Eager", "viewer").await;
    let (mut eager, _) = Peer::join(&srv, &token).await;
    for id in 1..=3 {
        let reply = eager
            .call(json!({"id": id, "call":"meeting.snapshot"}))
            .await;
        assert_eq!(reply["ok"], json!(true), "{reply}");
    }
    // Valid calls, but past the limit: each is answered rate_limited with its id (its
    // caller is not left to a timeout), and the fifth in a row closes the connection.
    for id in 4..=8 {
        eager
            .send_text(json!({"id": id, "call":"meeting.snapshot"}).to_string())
            .await;
    }
    let seen = eager.until_closed().await;
    assert_eq!(seen.len(), 5, "{seen:?}");
    for (at, id) in (4..=7).enumerate() {
        assert_eq!(seen[at]["id"], json!(id), "{seen:?}");
        assert_eq!(seen[at]["error"]["code"], "rate_limited", "{seen:?}");
    }
    assert_eq!(seen[4], json!({"type":"goodbye","reason":"bad_input"}));
    assert_eq!(srv.metric(RATE_LIMITED).await, 5.0);
    srv.await_metric(CLOSED_BAD_INPUT, 1.0).await;
}

#[tokio::test]
async fn junk_frames_count_against_the_rate_limit_too() {
    let srv = Srv::start_with(|c| {
        c.rate_limit_burst = 5;
        c.rate_limit_per_sec = 0.001;
    })
    .await;
    let meeting = srv.meeting("m").await;
    let (_, token) = srv.participant(&meeting, "Host", "host").await;
    let (_, other_token) = srv.participant(&meeting, "Other", "viewer").await;
    let (mut host, _) = Peer::join(&srv, &token).await;
    // Five bad frames (unparseable, binary, oversized) empty the bucket...
    for _ in 0..2 {
        host.send_text("not json").await;
        host.send_binary(vec![1, 2, 3]).await;
    }
    host.send_text(format!(r#"{{"id":1,"pad":"{}"}}"#, "x".repeat(20 * 1024)))
        .await;
    for _ in 0..5 {
        let refused = host.next_matching(|m| m["type"] != "event").await;
        assert_eq!(refused["error"]["code"], "bad_request", "{refused}");
    }
    // ...so the next frame, junk or not, is rate limited, with its id when it has one
    // (as the SDK writes requests: the id first).
    host.send_text(r#"{"id":77,"call":"stage.getAccessRequests"}"#)
        .await;
    let limited = host.next_matching(|m| m["type"] != "event").await;
    assert_eq!(limited["id"], json!(77), "{limited}");
    assert_eq!(limited["error"]["code"], "rate_limited", "{limited}");
    // Only the first over-limit frame of a run is answered.
    host.send_text("still not json").await;
    srv.await_metric(RATE_LIMITED, 2.0).await;
    // Another connection has its own bucket.
    let (mut other, _) = Peer::join(&srv, &other_token).await;
    let reply = other
        .call(json!({"id": 1, "call": "stage.requestAccess"}))
        .await;
    assert_eq!(reply["ok"], json!(true), "{reply}");
}

#[tokio::test]
async fn calls_beyond_the_rate_limit_get_rate_limited_and_change_nothing() {
    let srv = Srv::start_with(|c| {
        c.rate_limit_burst = 5;
        c.rate_limit_per_sec = 0.001;
    })
    .await;
    let meeting = srv.meeting("m").await;
    let (_, token) = srv.participant(&meeting, "Host", "host").await;
    let (mut host, _) = Peer::join(&srv, &token).await;
    // Five calls fill the bucket; the next ones are refused without reaching the room.
    for id in 1..=5 {
        host.send_text(json!({"id":id,"call":"stage.getAccessRequests"}).to_string())
            .await;
    }
    for id in 6..=8 {
        host.send_text(json!({"id":id,"call":"stage.join"}).to_string())
            .await;
    }
    // The refusals are answered at once, accepted calls by the room (any order).
    let mut replies = std::collections::BTreeMap::new();
    while replies.len() < 8 {
        let reply = host.next_matching(|m| m["type"] == "reply").await;
        replies.insert(reply["id"].as_u64().expect("id"), reply);
    }
    srv.await_metric(RATE_LIMITED, 3.0).await;
    host.send_close().await;
    for msg in host.until_closed().await {
        if msg["type"] == "reply" {
            replies.insert(msg["id"].as_u64().expect("id"), msg);
        }
    }
    assert_eq!(
        replies.keys().copied().collect::<Vec<_>>(),
        [1, 2, 3, 4, 5, 6, 7, 8]
    );
    for (id, reply) in replies {
        if id <= 5 {
            assert_eq!(reply["ok"], json!(true), "{reply}");
        } else {
            assert_eq!(reply["error"]["code"], json!("rate_limited"), "{reply}");
        }
    }
    let (_, stage) = srv
        .admin("GET", &format!("/v1/meetings/{meeting}/stage"), None)
        .await;
    assert_eq!(
        stage["data"]["participants"][0]["stage_status"],
        Value::Null,
        "still OFF_STAGE (omitted as the default): {stage}"
    );
    assert_eq!(
        stage["data"]["participants"].as_array().map(Vec::len),
        Some(1)
    );
}

#[tokio::test]
async fn toggle_spam_in_a_big_meeting_reaches_everyone_a_bounded_number_of_times() {
    const WATCHERS: usize = 30;
    const TOGGLES: u64 = 40;
    let srv = Srv::start_with(|c| {
        // Arriving spends one (everyone is told); three are left for stage changes.
        c.broadcast_burst = 4;
        // No token comes back within the test.
        c.broadcast_refill = Duration::from_secs(3600);
    })
    .await;
    let meeting = srv.meeting("m").await;
    let (_, host_token) = srv.participant(&meeting, "Host", "host").await;
    let (toggler_id, toggler_token) = srv.participant(&meeting, "Tog", "viewer").await;
    let (mut host, _) = Peer::join(&srv, &host_token).await;
    let (mut toggler, _) = Peer::join(&srv, &toggler_token).await;
    let mut watchers = Vec::new();
    for i in 0..WATCHERS {
        let (id, token) = srv.participant(&meeting, &format!("W{i}"), "viewer").await;
        watchers.push((id, Peer::join(&srv, &token).await.0));
    }
    // Forty toggles, well within the connection's frame limit (50 at once): all reach the
    // room, which lets the first three through and refuses the rest.
    for id in 1..=TOGGLES {
        let call = if id % 2 == 1 {
            "stage.requestAccess"
        } else {
            "stage.cancelRequestAccess"
        };
        toggler
            .send_text(json!({"id": id, "call": call}).to_string())
            .await;
    }
    let mut codes = std::collections::BTreeMap::<String, u64>::new();
    for _ in 0..TOGGLES {
        let reply = toggler.next_matching(|m| m["type"] == "reply").await;
        let code = reply["error"]["code"].as_str().unwrap_or("ok").to_owned();
        *codes.entry(code).or_default() += 1;
    }
    assert_eq!(
        codes,
        [
            ("ok".to_owned(), 3),
            ("rate_limited".to_owned(), TOGGLES - 3)
        ]
        .into(),
    );
    // Every watcher heard of the toggler exactly three times: everything the room sent it
    // before the reply to its own snapshot call.
    let mut heard_total = 0;
    for (_, watcher) in &mut watchers {
        watcher
            .send_text(json!({"id": 1, "call": "meeting.snapshot"}).to_string())
            .await;
        let mut heard = 0;
        loop {
            let msg = watcher.next_json().await;
            if msg["type"] == "reply" {
                break;
            }
            if msg["event"]["user_id"] == json!(toggler_id) {
                heard += 1;
            }
        }
        assert_eq!(heard, 3);
        heard_total += heard;
    }
    assert_eq!(heard_total, 3 * WATCHERS);
    // Normal use by everyone else is untouched: a request, a cancel, an invitation, a join.
    let (w0_id, w0) = &mut watchers[0];
    let w0_id = w0_id.clone();
    for call in ["stage.requestAccess", "stage.cancelRequestAccess"] {
        w0.call_ok(json!({ "call": call })).await;
    }
    let reply = host
        .call(json!({"call":"stage.grantAccess","user_ids":[w0_id, toggler_id]}))
        .await;
    assert_eq!(reply["ok"], json!(true), "{reply}");
    let reply = w0.call(json!({"call":"stage.join"})).await;
    assert_eq!(
        reply["result"],
        json!({"stage_status":"ON_STAGE"}),
        "{reply}"
    );
}

#[tokio::test]
async fn connecting_and_dropping_in_a_loop_is_refused_once_the_budget_is_spent() {
    let srv = Srv::start_with(|c| {
        c.broadcast_burst = 4;
        c.broadcast_refill = Duration::from_secs(3600);
    })
    .await;
    let meeting = srv.meeting("m").await;
    let (_, host_token) = srv.participant(&meeting, "Host", "host").await;
    let (looper_id, looper_token) = srv.participant(&meeting, "Loop", "viewer").await;
    let (mut host, _) = Peer::join(&srv, &host_token).await;
    // Arrive, drop, come back, drop: four events, the whole budget.
    for _ in 0..2 {
        let (looper, _) = Peer::join(&srv, &looper_token).await;
        srv.await_metric(CONNECTIONS, 2.0).await;
        drop(looper);
        srv.await_metric(CONNECTIONS, 1.0).await;
    }
    // The next arrival is refused before anyone hears of it: an error, then the close.
    let (mut ws, _) = within(
        "ws connect",
        tokio_tungstenite::connect_async(srv.ws_url(&looper_token)),
    )
    .await
    .expect("the upgrade itself succeeds");
    use futures_util::StreamExt;
    let first = within("the refusal", ws.next())
        .await
        .expect("a frame")
        .expect("ok");
    let refusal: Value = serde_json::from_str(first.to_text().expect("text")).expect("json");
    assert_eq!(refusal["type"], "error", "{refusal}");
    assert_eq!(refusal["error"]["code"], "rate_limited", "{refusal}");
    match within("the close", ws.next()).await {
        Some(Ok(tokio_tungstenite::tungstenite::Message::Close(_))) | None | Some(Err(_)) => {}
        Some(Ok(other)) => panic!("nothing after the refusal: {other:?}"),
    }
    assert_eq!(
        srv.metric("onstage_signal_refused_arrivals_total").await,
        1.0
    );
    // The host heard of the looper exactly four times, then nothing.
    host.send_text(json!({"id": 1, "call": "meeting.snapshot"}).to_string())
        .await;
    let mut heard = Vec::new();
    loop {
        let msg = host.next_json().await;
        if msg["type"] == "reply" {
            break;
        }
        if msg["event"]["user_id"] == json!(looper_id)
            || msg["event"]["participant"]["user_id"] == json!(looper_id)
        {
            heard.push(msg["event"]["kind"].as_str().unwrap_or("?").to_owned());
        }
    }
    assert_eq!(
        heard,
        [
            "participant_joined",
            "participant_connection",
            "participant_connection",
            "participant_connection"
        ]
    );
    // The host carries on.
    host.call_ok(json!({"call":"stage.join"})).await;
}

#[tokio::test]
async fn a_second_connection_replaces_the_first_without_a_disconnect() {
    let srv = Srv::start().await;
    let meeting = srv.meeting("m").await;
    let (ann_id, ann_token) = srv.participant(&meeting, "Ann", "viewer").await;
    let (_, watcher_token) = srv.participant(&meeting, "Wat", "host").await;
    let (mut first, welcome1) = Peer::join(&srv, &ann_token).await;
    let (mut watcher, _) = Peer::join(&srv, &watcher_token).await;
    let reply = first.call(json!({"call":"stage.requestAccess"})).await;
    assert_eq!(reply["ok"], json!(true));

    let (mut second, welcome2) = Peer::join(&srv, &ann_token).await;
    assert_eq!(welcome2["resumed"], json!(true));
    assert_eq!(welcome2["peer_id"], welcome1["peer_id"]);
    // The old connection is told why, then closed.
    first.expect_goodbye("replaced").await;
    // Once the old socket's end has reached the room (the connection count drops), the
    // participant is still connected and keeps its place in the queue.
    srv.await_metric(CONNECTIONS, 2.0).await;
    let snapshot = watcher.call(json!({"call":"meeting.snapshot"})).await;
    let ann = snapshot["result"]["participants"]
        .as_array()
        .expect("roster")
        .iter()
        .find(|p| p["user_id"] == json!(ann_id))
        .cloned()
        .expect("ann is in the roster");
    assert_ne!(ann["connected"], json!(false), "{ann}");
    assert_eq!(snapshot["result"]["queue"][0]["user_id"], json!(ann_id));
    let reply = second
        .call(json!({"call":"stage.cancelRequestAccess"}))
        .await;
    assert_eq!(
        reply["result"],
        json!({"stage_status":"OFF_STAGE"}),
        "{reply}"
    );
}

#[tokio::test]
async fn the_replaced_socket_closing_tells_nobody_of_a_disconnect() {
    let srv = Srv::start().await;
    let meeting = srv.meeting("m").await;
    let (ann_id, ann_token) = srv.participant(&meeting, "Ann", "viewer").await;
    let (_, watcher_token) = srv.participant(&meeting, "Wat", "host").await;
    let (mut watcher, _) = Peer::join(&srv, &watcher_token).await;
    let (mut first, _) = Peer::join(&srv, &ann_token).await;
    let (_second, _) = Peer::join(&srv, &ann_token).await;
    first.until_closed().await;
    srv.await_metric(CONNECTIONS, 2.0).await;
    // Everything the room said since: a snapshot reply marks the end.
    let mut events = Vec::new();
    watcher
        .send_text(json!({"id":1,"call":"meeting.snapshot"}).to_string())
        .await;
    loop {
        let msg = watcher.next_json().await;
        if msg["type"] == "reply" {
            break;
        }
        events.push(msg);
    }
    assert!(
        !events.iter().any(
            |m| is_event(m, "participant_connection") && m["event"]["user_id"] == json!(ann_id)
        ),
        "{events:?}"
    );
}

#[tokio::test]
async fn meeting_leave_replies_then_says_goodbye_and_everyone_is_told() {
    let srv = Srv::start().await;
    let meeting = srv.meeting("m").await;
    let (ann_id, ann_token) = srv.participant(&meeting, "Ann", "speaker").await;
    let (_, bob_token) = srv.participant(&meeting, "Bob", "viewer").await;
    let (mut ann, _) = Peer::join(&srv, &ann_token).await;
    let (mut bob, _) = Peer::join(&srv, &bob_token).await;
    let reply = ann.call(json!({"call":"stage.join"})).await;
    assert_eq!(reply["ok"], json!(true));

    ann.call_ok(json!({"id":77,"call":"meeting.leave"})).await;
    let rest = ann.until_closed().await;
    assert_eq!(
        rest.last(),
        Some(&json!({"type":"goodbye","reason":"left"}))
    );

    let off = bob
        .next_matching(|m| {
            is_event(m, "stage_status_changed") && m["event"]["status"] == "OFF_STAGE"
        })
        .await;
    assert_eq!(off["event"]["user_id"], json!(ann_id));
    assert_eq!(off["event"]["reason"], json!("removed"));
    let left = bob.next_matching(|m| is_event(m, "participant_left")).await;
    assert_eq!(
        left["event"],
        json!({"kind":"participant_left","user_id":ann_id,"reason":"left"})
    );
    assert_eq!(left["seq"], json!(off["seq"].as_u64().expect("seq") + 1));
}

#[tokio::test]
async fn a_silent_connection_is_dropped_and_a_live_one_is_kept() {
    let srv = Srv::start_with(|c| {
        c.ping_interval = Duration::from_millis(50);
        c.idle_timeout = Duration::from_millis(300);
    })
    .await;
    let meeting = srv.meeting("m").await;
    let (silent_id, silent_token) = srv.participant(&meeting, "Silent", "viewer").await;
    let (_, live_token) = srv.participant(&meeting, "Live", "host").await;
    let (_silent, _) = Peer::join(&srv, &silent_token).await;
    let (mut live, _) = Peer::join(&srv, &live_token).await;
    // `live` keeps reading (answering pings); `silent` never reads, so never answers.
    let dropped = live
        .next_matching(|m| {
            is_event(m, "participant_connection") && m["event"]["connected"] == json!(false)
        })
        .await;
    assert_eq!(dropped["event"]["user_id"], json!(silent_id));
    srv.await_metric(CONNECTIONS, 1.0).await;
    live.call_ok(json!({"call":"stage.join"})).await;
}

#[tokio::test]
async fn shutdown_says_goodbye_to_every_connection() {
    let mut srv = Srv::start().await;
    let meeting = srv.meeting("m").await;
    let (_, a_token) = srv.participant(&meeting, "A", "host").await;
    let (_, b_token) = srv.participant(&meeting, "B", "viewer").await;
    let (mut a, _) = Peer::join(&srv, &a_token).await;
    let (mut b, _) = Peer::join(&srv, &b_token).await;
    let server = srv.server.take().expect("running");
    let handle = server.shutdown_handle();
    let waiting = tokio::spawn(server.wait());
    handle.shutdown();
    for peer in [&mut a, &mut b] {
        peer.expect_goodbye("shutdown").await;
    }
    within("wait() returns", waiting).await.expect("joins");
    assert!(
        reqwest::get(format!("{}/healthz", srv.url)).await.is_err(),
        "no longer listening"
    );
}

#[tokio::test]
async fn snapshots_have_a_budget_of_their_own() {
    // Every answer is the whole room for a request of a few bytes: four at once, then one
    // every 5 s, whatever the frame limits allow.
    let srv = Srv::start().await;
    let meeting = srv.meeting("m").await;
    let (_, token) = srv.participant(&meeting, "Curious", "viewer").await;
    let (mut curious, _) = Peer::join(&srv, &token).await;
    for id in 1..=4 {
        let reply = curious
            .call(json!({"id": id, "call":"meeting.snapshot"}))
            .await;
        assert_eq!(reply["ok"], json!(true), "{reply}");
    }
    let reply = curious
        .call(json!({"id": 5, "call":"meeting.snapshot"}))
        .await;
    assert_eq!(reply["error"]["code"], "rate_limited", "{reply}");
    // Other calls are not held back by it.
    let reply = curious
        .call(json!({"id": 6, "call":"stage.requestAccess"}))
        .await;
    assert_eq!(reply["ok"], json!(true), "{reply}");
}
