//! Role invites: one link per meeting and preset; each guest joins under a name of their
//! own as a new participant, reconnects with the token its welcome carries, and a revoked
//! invite lets nobody new in while its guests stay.

mod common;

use common::{assert_error, encode, guest_url, Peer, Srv};
use serde_json::{json, Value};

/// Creates a role invite of `preset`; returns its REST data.
async fn invite(srv: &Srv, meeting: &str, preset: &str) -> Value {
    let (status, body) = srv
        .admin(
            "POST",
            &format!("/v1/meetings/{meeting}/invites"),
            Some(json!({"preset_name": preset})),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    body["data"].clone()
}

fn token_of(invite: &Value) -> String {
    invite["token"].as_str().expect("token").to_owned()
}

/// A join with `token` (and `name`, when given) is refused before the upgrade, over HTTP
/// and as a WebSocket client sees it, with `status` and `code`.
async fn join_refused(srv: &Srv, token: &str, name: Option<&str>, status: u16, code: &str) {
    let query = match name {
        Some(name) => format!("token={token}&name={}", encode(name)),
        None => format!("token={token}"),
    };
    let (got, body) = srv
        .raw("GET", &format!("/v1/signal?{query}"), None, None)
        .await;
    assert_error(got, &body, status, code);
    let url = match name {
        Some(name) => guest_url(srv, token, name),
        None => srv.ws_url(token),
    };
    match tokio_tungstenite::connect_async(url).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => {
            assert_eq!(resp.status().as_u16(), status)
        }
        other => panic!("the join was not refused: {:?}", other.map(|_| ())),
    }
}

async fn participants(srv: &Srv, meeting: &str) -> Vec<Value> {
    let list = srv
        .ok("GET", &format!("/v1/meetings/{meeting}/participants"), None)
        .await;
    list.as_array().expect("a list").clone()
}

#[tokio::test]
async fn two_guests_join_with_one_invite_as_distinct_participants_of_its_preset() {
    let srv = Srv::start().await;
    let meeting = srv.meeting("Town hall").await;
    let (_, host_token) = srv.participant(&meeting, "Host", "host").await;
    let (mut host, _) = Peer::join(&srv, &host_token).await;

    let created = invite(&srv, &meeting, "speaker").await;
    assert_eq!(created["preset_name"], "speaker");
    assert!(created["created_at"].as_u64().is_some(), "{created}");
    assert_eq!(created["revoked_at"], Value::Null);
    let link =
        onstage_proto::InviteLink::parse(created["link"].as_str().expect("link")).expect("a link");
    assert!(link.invite, "a role link says invite=");
    assert_eq!(link.token, token_of(&created));
    let listed = srv
        .ok("GET", &format!("/v1/meetings/{meeting}/invites"), None)
        .await;
    assert_eq!(
        listed,
        json!([created.clone()]),
        "listed with the same token"
    );

    let token = token_of(&created);
    let (mut ann, ann_welcome) = Peer::join_guest(&srv, &token, "  Ann  ").await;
    let (mut bob, bob_welcome) = Peer::join_guest(&srv, &token, "Bob").await;
    let (ann_id, bob_id) = (
        ann_welcome["user_id"].as_str().expect("id").to_owned(),
        bob_welcome["user_id"].as_str().expect("id").to_owned(),
    );
    assert_ne!(ann_id, bob_id, "each join is a participant of its own");
    for (welcome, name) in [(&ann_welcome, "Ann"), (&bob_welcome, "Bob")] {
        assert_eq!(welcome["preset"]["name"], "speaker", "{welcome}");
        let own = welcome["token"]
            .as_str()
            .expect("the welcome carries a token");
        assert_ne!(own, token, "a personal token, not the invite");
        let me = welcome["snapshot"]["participants"]
            .as_array()
            .expect("participants")
            .iter()
            .find(|p| p["user_id"] == welcome["user_id"])
            .cloned()
            .expect("in the snapshot");
        assert_eq!(me["name"], name, "trimmed, as REST names are");
    }
    assert_ne!(ann_welcome["token"], bob_welcome["token"]);
    // A speaker may go on stage at once: the invite's preset is theirs.
    ann.call_ok(json!({"call":"stage.join"})).await;
    bob.call_ok(json!({"call":"stage.join"})).await;
    assert_eq!(host.participant_count().await, 3);

    let stored = participants(&srv, &meeting).await;
    let guests: Vec<(Value, Value, Value)> = stored
        .iter()
        .filter(|p| p["id"] != json!(host_token_user(&stored)))
        .map(|p| (p["id"].clone(), p["name"].clone(), p["preset_name"].clone()))
        .collect();
    assert_eq!(
        guests,
        vec![
            (json!(ann_id), json!("Ann"), json!("speaker")),
            (json!(bob_id), json!("Bob"), json!("speaker")),
        ]
    );
}

/// The host's user id in a participant list (the one named "Host").
fn host_token_user(list: &[Value]) -> String {
    list.iter()
        .find(|p| p["name"] == "Host")
        .and_then(|p| p["id"].as_str())
        .expect("the host")
        .to_owned()
}

#[tokio::test]
async fn a_guest_resumes_with_the_token_of_its_welcome() {
    let srv = Srv::start().await;
    let meeting = srv.meeting("m").await;
    let (_, host_token) = srv.participant(&meeting, "Host", "host").await;
    let (mut host, _) = Peer::join(&srv, &host_token).await;
    let token = token_of(&invite(&srv, &meeting, "viewer").await);
    let (mut guest, welcome) = Peer::join_guest(&srv, &token, "Cleo").await;
    let user = welcome["user_id"].clone();
    let peer_id = welcome["peer_id"].clone();
    let own = welcome["token"].as_str().expect("token").to_owned();
    guest.call_ok(json!({"call":"stage.requestAccess"})).await;
    guest.close().await;

    let (mut back, again) = Peer::join(&srv, &own).await;
    assert_eq!(again["user_id"], user, "the same participant");
    assert_eq!(again["resumed"], true, "inside the grace period: {again}");
    assert_eq!(again["peer_id"], peer_id, "the same session");
    assert_eq!(
        again["token"],
        Value::Null,
        "a personal token needs no new one"
    );
    assert_eq!(
        again["snapshot"]["queue"][0]["user_id"], user,
        "still asking"
    );
    back.call_ok(json!({"call":"stage.cancelRequestAccess"}))
        .await;
    assert_eq!(host.participant_count().await, 2, "nobody new");
    assert_eq!(participants(&srv, &meeting).await.len(), 2);
}

#[tokio::test]
async fn a_full_meeting_lets_no_guest_in_until_room_is_made() {
    let srv = Srv::start_with(|c| c.max_participants = 3).await;
    let meeting = srv.meeting("m").await;
    // The admin API's own participant counts, and is never refused.
    let (host, _) = srv.participant(&meeting, "Host", "host").await;
    let token = token_of(&invite(&srv, &meeting, "viewer").await);
    let (_ann, _) = Peer::join_guest(&srv, &token, "Ann").await;
    let (_bob, _) = Peer::join_guest(&srv, &token, "Bob").await;
    join_refused(&srv, &token, Some("Cy"), 409, "meeting_full").await;
    // Nothing was made, whatever the name; a nameless look says so too.
    join_refused(&srv, &token, None, 409, "meeting_full").await;
    assert_eq!(participants(&srv, &meeting).await.len(), 3);
    let (crew, _) = srv.participant(&meeting, "Crew", "viewer").await;
    assert_eq!(
        participants(&srv, &meeting).await.len(),
        4,
        "admins may go past it"
    );

    // Room made: the next guest gets in.
    for uid in [host, crew] {
        srv.ok(
            "DELETE",
            &format!("/v1/meetings/{meeting}/participants/{uid}"),
            None,
        )
        .await;
    }
    let (_cy, welcome) = Peer::join_guest(&srv, &token, "Cy").await;
    assert!(welcome["token"].is_string(), "{welcome}");
}

#[tokio::test]
async fn a_revoked_invite_lets_nobody_new_in_and_its_guests_stay() {
    let srv = Srv::start().await;
    let meeting = srv.meeting("m").await;
    let created = invite(&srv, &meeting, "viewer").await;
    let token = token_of(&created);
    let id = created["id"].as_str().expect("id").to_owned();
    let (mut guest, welcome) = Peer::join_guest(&srv, &token, "Dee").await;
    let own = welcome["token"].as_str().expect("token").to_owned();

    let revoked = srv
        .ok(
            "DELETE",
            &format!("/v1/meetings/{meeting}/invites/{id}"),
            None,
        )
        .await;
    assert_eq!(revoked["id"], json!(id));
    let at = revoked["revoked_at"].as_u64().expect("revoked_at");
    join_refused(&srv, &token, Some("Eve"), 401, "token_revoked").await;
    // Revoked it stays, when it was: revoking again changes nothing.
    let again = srv
        .ok(
            "DELETE",
            &format!("/v1/meetings/{meeting}/invites/{id}"),
            None,
        )
        .await;
    assert_eq!(again["revoked_at"], json!(at));
    let listed = srv
        .ok("GET", &format!("/v1/meetings/{meeting}/invites"), None)
        .await;
    assert_eq!(listed[0]["revoked_at"], json!(at));

    // Whoever joined stays, live and with its own token.
    assert_eq!(guest.participant_count().await, 1);
    guest.close().await;
    let (mut back, _) = Peer::join(&srv, &own).await;
    assert_eq!(back.participant_count().await, 1);
    assert_eq!(
        participants(&srv, &meeting).await.len(),
        1,
        "Eve was not made"
    );

    // Unknown invites, and invites of another meeting, are not found; nothing changes.
    let (status, body) = srv
        .admin(
            "DELETE",
            &format!("/v1/meetings/{meeting}/invites/nope"),
            None,
        )
        .await;
    assert_error(status, &body, 404, "not_found");
    let other = srv.meeting("other").await;
    let live = token_of(&invite(&srv, &other, "viewer").await);
    let other_invite = srv
        .ok("GET", &format!("/v1/meetings/{other}/invites"), None)
        .await[0]["id"]
        .as_str()
        .expect("id")
        .to_owned();
    let (status, body) = srv
        .admin(
            "DELETE",
            &format!("/v1/meetings/{meeting}/invites/{other_invite}"),
            None,
        )
        .await;
    assert_error(status, &body, 404, "not_found");
    let (status, body) = srv
        .admin(
            "DELETE",
            &format!("/v1/meetings/nope/invites/{other_invite}"),
            None,
        )
        .await;
    assert_error(status, &body, 404, "not_found");
    Peer::join_guest(&srv, &live, "Fay").await.0.close().await;
}

#[tokio::test]
async fn invite_and_participant_tokens_never_stand_in_for_each_other() {
    let srv = Srv::start().await;
    let meeting = srv.meeting("m").await;
    let token = token_of(&invite(&srv, &meeting, "viewer").await);
    let (user, personal) = srv.participant(&meeting, "Gil", "host").await;

    // A participant token with a name is that participant, as named by the host: no new
    // participant, no token in the welcome.
    let (peer, welcome) = Peer::join_guest(&srv, &personal, "Mallory").await;
    assert_eq!(welcome["user_id"], json!(user));
    assert_eq!(welcome["preset"]["name"], "host");
    assert_eq!(welcome["token"], Value::Null);
    assert_eq!(welcome["snapshot"]["participants"][0]["name"], "Gil");
    peer.close().await;

    // An invite token is no participant's: without a name it joins nobody.
    join_refused(&srv, &token, None, 400, "bad_request").await;
    assert_eq!(participants(&srv, &meeting).await.len(), 1);

    // Nor is it an admin key.
    let (status, body) = srv.raw("GET", "/v1/meetings", None, Some(&token)).await;
    assert_error(status, &body, 401, "unauthorized");
}

#[tokio::test]
async fn a_bad_guest_name_is_bad_request_and_makes_nobody() {
    let srv = Srv::start().await;
    let meeting = srv.meeting("m").await;
    let created = invite(&srv, &meeting, "viewer").await;
    let token = token_of(&created);
    let long = "x".repeat(101);
    for name in [
        "",
        "   ",
        long.as_str(),
        "a\u{202e}b",
        "line\nbreak",
        "nul\0",
    ] {
        join_refused(&srv, &token, Some(name), 400, "bad_request").await;
    }
    join_refused(&srv, &token, None, 400, "bad_request").await;
    assert!(participants(&srv, &meeting).await.is_empty(), "nobody made");
    // 100 characters of any script are fine.
    let (peer, welcome) = Peer::join_guest(&srv, &token, &"é".repeat(100)).await;
    assert_eq!(welcome["preset"]["name"], "viewer");
    peer.close().await;

    // A dead invite says so whatever the name.
    let id = created["id"].as_str().expect("id");
    srv.ok(
        "DELETE",
        &format!("/v1/meetings/{meeting}/invites/{id}"),
        None,
    )
    .await;
    join_refused(&srv, &token, Some(""), 401, "token_revoked").await;
    // A forged invite token is refused as any bad token.
    join_refused(&srv, &format!("{token}x"), Some("Hal"), 401, "unauthorized").await;
}

#[tokio::test]
async fn invites_need_a_meeting_and_a_preset_and_go_with_their_meeting() {
    let srv = Srv::start().await;
    let meeting = srv.meeting("m").await;
    let path = format!("/v1/meetings/{meeting}/invites");
    for (body, status, code) in [
        (json!({"preset_name": "ghost"}), 400, "bad_request"),
        (json!({}), 400, "bad_request"),
        (
            json!({"preset_name": "viewer", "extra": 1}),
            400,
            "bad_request",
        ),
    ] {
        let (got, answer) = srv.admin("POST", &path, Some(body)).await;
        assert_error(got, &answer, status, code);
    }
    let (got, answer) = srv
        .admin(
            "POST",
            "/v1/meetings/nope/invites",
            Some(json!({"preset_name": "viewer"})),
        )
        .await;
    assert_error(got, &answer, 404, "not_found");
    let (got, answer) = srv.admin("GET", "/v1/meetings/nope/invites", None).await;
    assert_error(got, &answer, 404, "not_found");
    let (got, answer) = srv.raw("GET", &path, None, None).await;
    assert_error(got, &answer, 401, "unauthorized");
    assert_eq!(srv.ok("GET", &path, None).await, json!([]), "nothing made");

    // A custom preset: its guests get it, and it cannot be deleted while the invite lives.
    srv.preset(json!({"name": "panel", "stage_access": "ALLOWED"}))
        .await;
    let custom = invite(&srv, &meeting, "panel").await;
    let (peer, welcome) = Peer::join_guest(&srv, &token_of(&custom), "Ivy").await;
    assert_eq!(welcome["preset"]["name"], "panel");
    peer.close().await;
    let user = welcome["user_id"].as_str().expect("id");
    srv.ok(
        "DELETE",
        &format!("/v1/meetings/{meeting}/participants/{user}"),
        None,
    )
    .await;
    let (got, answer) = srv.admin("DELETE", "/v1/presets/panel", None).await;
    assert_error(got, &answer, 409, "invalid_state");
    let id = custom["id"].as_str().expect("id");
    srv.ok("DELETE", &format!("{path}/{id}"), None).await;
    srv.ok("DELETE", "/v1/presets/panel", None).await;

    // Deleting the meeting ends its invites.
    let token = token_of(&invite(&srv, &meeting, "viewer").await);
    srv.ok("DELETE", &format!("/v1/meetings/{meeting}"), None)
        .await;
    join_refused(&srv, &token, Some("Jo"), 401, "unauthorized").await;
}

#[tokio::test]
async fn invites_and_their_revocations_survive_a_restart() {
    let srv = Srv::start().await;
    let meeting = srv.meeting("m").await;
    let live = invite(&srv, &meeting, "viewer").await;
    let dead = invite(&srv, &meeting, "speaker").await;
    let dead_id = dead["id"].as_str().expect("id");
    srv.ok(
        "DELETE",
        &format!("/v1/meetings/{meeting}/invites/{dead_id}"),
        None,
    )
    .await;
    let (guest, welcome) = Peer::join_guest(&srv, &token_of(&live), "Kim").await;
    let own = welcome["token"].as_str().expect("token").to_owned();
    guest.close().await;

    let srv = srv.restart().await;
    let listed = srv
        .ok("GET", &format!("/v1/meetings/{meeting}/invites"), None)
        .await;
    assert_eq!(listed[0]["token"], live["token"], "the same link as before");
    assert!(listed[1]["revoked_at"].as_u64().is_some(), "{listed}");
    join_refused(&srv, &token_of(&dead), Some("Lou"), 401, "token_revoked").await;
    let (peer, again) = Peer::join(&srv, &own).await;
    assert_eq!(again["user_id"], welcome["user_id"]);
    peer.close().await;
    let (peer, _) = Peer::join_guest(&srv, &token_of(&live), "Max").await;
    peer.close().await;
    assert_eq!(participants(&srv, &meeting).await.len(), 2);
}
