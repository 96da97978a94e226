//! Cutting tokens off: re-issuing a participant revokes its older tokens, removing a
//! participant or deleting a meeting ends their live sessions and refuses their tokens.

mod common;

use common::{assert_error, events_then_snapshot, is_event, refused, roster, Peer, Srv};
use serde_json::{json, Value};

const CONNECTIONS: &str = "onstage_signal_connections";

/// Adds (or issues again) a participant with a custom id; returns its token.
async fn issue(srv: &Srv, meeting: &str, id: &str, preset: &str) -> String {
    let data = srv
        .ok(
            "POST",
            &format!("/v1/meetings/{meeting}/participants"),
            Some(json!({"name": id.to_uppercase(), "preset_name": preset,
                        "custom_participant_id": id})),
        )
        .await;
    data["token"].as_str().expect("token").to_owned()
}

#[tokio::test]
async fn a_reissued_token_is_refused_and_its_live_session_ends_with_revoked() {
    let srv = Srv::start().await;
    let meeting = srv.meeting("m").await;
    let (_, host_token) = srv.participant(&meeting, "Host", "host").await;
    let (mut host, _) = Peer::join(&srv, &host_token).await;
    let old_token = issue(&srv, &meeting, "ann", "viewer").await;
    let (mut old, welcome) = Peer::join(&srv, &old_token).await;
    let peer_id = welcome["peer_id"].clone();
    old.call_ok(json!({"call":"stage.requestAccess"})).await;

    // Issued again (say the first link leaked): the old token's session ends at once.
    let new_token = issue(&srv, &meeting, "ann", "viewer").await;
    assert_ne!(new_token, old_token);
    old.expect_goodbye("revoked").await;
    // It cannot come back, neither as a query parameter nor as a bearer header.
    refused(&srv, &old_token, "token_revoked").await;
    srv.await_metric(CONNECTIONS, 1.0).await;

    // Like a dropped connection: everyone hears, and the place is kept for the new token.
    let dropped = host
        .next_matching(|m| is_event(m, "participant_connection"))
        .await;
    assert_eq!(
        dropped["event"],
        json!({"kind":"participant_connection","user_id":"ann","connected":false})
    );
    let (mut ann, welcome) = Peer::join(&srv, &new_token).await;
    assert_eq!(welcome["resumed"], json!(true));
    assert_eq!(welcome["peer_id"], peer_id);
    assert_eq!(welcome["snapshot"]["queue"][0]["user_id"], json!("ann"));

    // The same token again (another window): that is `replaced`, not `revoked`.
    let (_second, _) = Peer::join(&srv, &new_token).await;
    ann.expect_goodbye("replaced").await;
    refused(&srv, &old_token, "token_revoked").await;
}

#[tokio::test]
async fn an_older_token_connecting_while_a_newer_one_is_live_is_refused_and_ends_nothing() {
    let srv = Srv::start().await;
    let meeting = srv.meeting("m").await;
    let old_token = issue(&srv, &meeting, "ann", "viewer").await;
    let new_token = issue(&srv, &meeting, "ann", "viewer").await;
    let (mut ann, _) = Peer::join(&srv, &new_token).await;
    refused(&srv, &old_token, "token_revoked").await;
    // The live session carries on.
    ann.call_ok(json!({"call":"stage.requestAccess"})).await;
}

#[tokio::test]
async fn a_removed_participant_is_cut_off_leaves_the_room_and_cannot_return() {
    let srv = Srv::start().await;
    let meeting = srv.meeting("m").await;
    let (host_id, host_token) = srv.participant(&meeting, "Host", "host").await;
    let (mut host, _) = Peer::join(&srv, &host_token).await;
    let ann_token = issue(&srv, &meeting, "ann", "speaker").await;
    let (mut ann, _) = Peer::join(&srv, &ann_token).await;
    let reply = ann.call(json!({"call":"stage.join"})).await;
    assert_eq!(
        reply["result"],
        json!({"stage_status":"ON_STAGE"}),
        "{reply}"
    );
    let _ = events_then_snapshot(&mut host).await;

    let (status, body) = srv
        .admin(
            "DELETE",
            &format!("/v1/meetings/{meeting}/participants/ann"),
            None,
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body,
        json!({"success":true,"data":{"id":"ann","name":"ANN","preset_name":"speaker",
                                       "custom_participant_id":"ann"}})
    );
    ann.expect_goodbye("removed").await;

    // Everyone hears it leave the stage, then the meeting; the roster no longer has it.
    let (events, snapshot) = events_then_snapshot(&mut host).await;
    let room: Vec<&Value> = events.iter().filter(|m| m["type"] == "event").collect();
    assert_eq!(room.len(), 2, "{events:?}");
    assert_eq!(
        room[0]["event"],
        json!({"kind":"stage_status_changed","user_id":"ann","status":"OFF_STAGE",
               "reason":"removed"})
    );
    assert_eq!(
        room[1]["event"],
        json!({"kind":"participant_left","user_id":"ann","reason":"removed"})
    );
    assert_eq!(roster(&snapshot), vec![host_id], "{snapshot}");
    let stage = srv
        .ok("GET", &format!("/v1/meetings/{meeting}/stage"), None)
        .await;
    assert!(!roster(&stage).contains(&"ann".to_owned()), "{stage}");

    // Its token no longer opens a session, and it is no longer listed.
    refused(&srv, &ann_token, "unauthorized").await;
    let list = srv
        .ok("GET", &format!("/v1/meetings/{meeting}/participants"), None)
        .await;
    assert!(
        list.as_array()
            .expect("list")
            .iter()
            .all(|p| p["id"] != json!("ann")),
        "{list}"
    );

    // Added again under the same id, it gets a fresh token; the removed one stays dead.
    let back_token = issue(&srv, &meeting, "ann", "viewer").await;
    refused(&srv, &ann_token, "token_revoked").await;
    let (_back, welcome) = Peer::join(&srv, &back_token).await;
    assert_eq!(welcome["resumed"], json!(false), "a new participant");
}

#[tokio::test]
async fn a_participant_inside_its_grace_period_is_removed_at_once() {
    let srv = Srv::start().await;
    let meeting = srv.meeting("m").await;
    let (_, host_token) = srv.participant(&meeting, "Host", "host").await;
    let (mut host, _) = Peer::join(&srv, &host_token).await;
    let bob_token = issue(&srv, &meeting, "bob", "viewer").await;
    let (mut bob, _) = Peer::join(&srv, &bob_token).await;
    let reply = bob.call(json!({"call":"stage.requestAccess"})).await;
    assert_eq!(reply["ok"], json!(true));
    bob.close().await;
    host.next_matching(|m| is_event(m, "participant_connection"))
        .await;

    srv.ok(
        "DELETE",
        &format!("/v1/meetings/{meeting}/participants/bob"),
        None,
    )
    .await;
    let (events, snapshot) = events_then_snapshot(&mut host).await;
    assert!(
        events.iter().any(|m| is_event(m, "participant_left")
            && m["event"] == json!({"kind":"participant_left","user_id":"bob","reason":"removed"})),
        "{events:?}"
    );
    assert_eq!(snapshot["queue"], json!([]), "out of the queue too");
    assert!(!roster(&snapshot).contains(&"bob".to_owned()));
    refused(&srv, &bob_token, "unauthorized").await;
}

#[tokio::test]
async fn removing_unknown_participants_or_meetings_is_not_found_and_changes_nothing() {
    let srv = Srv::start().await;
    let meeting = srv.meeting("m").await;
    let token = issue(&srv, &meeting, "ann", "viewer").await;
    let before = srv
        .ok("GET", &format!("/v1/meetings/{meeting}/participants"), None)
        .await;
    for path in [
        format!("/v1/meetings/{meeting}/participants/nobody"),
        "/v1/meetings/no-such-meeting/participants/ann".to_owned(),
        "/v1/meetings/no-such-meeting".to_owned(),
    ] {
        let (status, body) = srv.admin("DELETE", &path, None).await;
        assert_error(status, &body, 404, "not_found");
    }
    // Without the admin key: unauthorized, and nothing goes.
    for path in [
        format!("/v1/meetings/{meeting}/participants/ann"),
        format!("/v1/meetings/{meeting}"),
    ] {
        for key in [None, Some("wrong")] {
            let (status, body) = srv.raw("DELETE", &path, None, key).await;
            assert_error(status, &body, 401, "unauthorized");
        }
    }
    assert_eq!(
        srv.ok("GET", &format!("/v1/meetings/{meeting}/participants"), None)
            .await,
        before
    );
    let (_ann, _) = Peer::join(&srv, &token).await;
}

#[tokio::test]
async fn a_deleted_meeting_ends_every_session_and_refuses_every_token() {
    let srv = Srv::start().await;
    let meeting = srv.meeting("doomed").await;
    let other = srv.meeting("other").await;
    let (_, host_token) = srv.participant(&meeting, "Host", "host").await;
    let (_, ann_token) = srv.participant(&meeting, "Ann", "speaker").await;
    let (_, idle_token) = srv.participant(&meeting, "Idle", "viewer").await;
    let (_, other_token) = srv.participant(&other, "Olga", "viewer").await;
    let (mut host, _) = Peer::join(&srv, &host_token).await;
    let (mut ann, _) = Peer::join(&srv, &ann_token).await;
    let (mut olga, _) = Peer::join(&srv, &other_token).await;
    ann.call_ok(json!({"call":"stage.join"})).await;
    srv.await_metric("onstage_rooms", 2.0).await;

    let (status, body) = srv
        .admin("DELETE", &format!("/v1/meetings/{meeting}"), None)
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["data"]["id"], json!(meeting));
    assert_eq!(body["data"]["title"], json!("doomed"));
    for peer in [&mut host, &mut ann] {
        peer.expect_goodbye("meeting_deleted").await;
    }
    // The room is gone, and every token of the meeting is refused, also one never used.
    srv.await_metric("onstage_rooms", 1.0).await;
    srv.await_metric(CONNECTIONS, 1.0).await;
    for token in [&host_token, &ann_token, &idle_token] {
        refused(&srv, token, "unauthorized").await;
    }
    for path in [
        format!("/v1/meetings/{meeting}"),
        format!("/v1/meetings/{meeting}/participants"),
        format!("/v1/meetings/{meeting}/stage"),
    ] {
        let (status, body) = srv.admin("GET", &path, None).await;
        assert_error(status, &body, 404, "not_found");
    }
    let (status, body) = srv
        .admin("DELETE", &format!("/v1/meetings/{meeting}"), None)
        .await;
    assert_error(status, &body, 404, "not_found");
    let list = srv.ok("GET", "/v1/meetings", None).await;
    assert_eq!(list.as_array().map(Vec::len), Some(1), "{list}");
    assert_eq!(list[0]["id"], json!(other));

    // The other meeting carries on.
    olga.call_ok(json!({"call":"stage.requestAccess"})).await;
}
