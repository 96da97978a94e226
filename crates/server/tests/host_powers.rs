//! A host's powers over other participants through signaling: remove someone from the
//! meeting, give someone another preset (hand over the host role), mute a speaker.

mod common;

use common::{events_then_snapshot, is_event, refused, roster, Peer, Srv};
use serde_json::{json, Value};

/// The room events among `messages`.
fn room_events(messages: &[Value]) -> Vec<Value> {
    messages
        .iter()
        .filter(|m| m["type"] == "event")
        .map(|m| m["event"].clone())
        .collect()
}

/// The meeting's participants as the admin API lists them (storage's view).
async fn listed(srv: &Srv, meeting: &str) -> Vec<Value> {
    let list = srv
        .ok("GET", &format!("/v1/meetings/{meeting}/participants"), None)
        .await;
    list.as_array().expect("a list").clone()
}

#[tokio::test]
async fn a_host_removes_a_participant_who_is_cut_off_and_cannot_return() {
    let srv = Srv::start().await;
    let meeting = srv.meeting("m").await;
    let (host_id, _, mut host) = Peer::join_as(&srv, &meeting, "Hana", "host").await;
    let (sam_id, _, mut sam) = Peer::join_as(&srv, &meeting, "Sam", "speaker").await;
    let (vera_id, vera_token, mut vera) = Peer::join_as(&srv, &meeting, "Vera", "viewer").await;
    vera.call_ok(json!({"call":"stage.requestAccess"})).await;
    let _ = events_then_snapshot(&mut host).await;

    // Refused: not a host, oneself, nobody; nothing changes.
    let remove = |who: &str| json!({"call":"meeting.removeParticipant","user_id":who});
    let reply = sam.call(remove(&vera_id)).await;
    assert_eq!(
        reply["error"]["code"],
        json!("permission_denied"),
        "{reply}"
    );
    for (target, code) in [(host_id.as_str(), "invalid_state"), ("ghost", "not_found")] {
        let reply = host.call(remove(target)).await;
        assert_eq!(reply["error"]["code"], json!(code), "{reply}");
    }
    let (events, snapshot) = events_then_snapshot(&mut host).await;
    assert!(room_events(&events).is_empty(), "{events:?}");
    assert_eq!(roster(&snapshot).len(), 3);

    host.call_ok(remove(&vera_id)).await;
    vera.expect_goodbye("removed").await;
    // Everyone hears it leave the queue, then the meeting.
    let (events, snapshot) = events_then_snapshot(&mut sam).await;
    let told = room_events(&events);
    assert_eq!(
        told,
        [
            json!({"kind":"stage_status_changed","user_id":vera_id,"status":"OFF_STAGE",
                   "reason":"removed"}),
            json!({"kind":"participant_left","user_id":vera_id,"reason":"removed"}),
        ],
        "{events:?}"
    );
    assert_eq!(roster(&snapshot), vec![host_id, sam_id]);
    assert!(snapshot["queue"].as_array().is_some_and(Vec::is_empty));
    // Gone from storage: not listed, and the link no longer opens a session.
    assert!(listed(&srv, &meeting)
        .await
        .iter()
        .all(|p| p["id"] != json!(vera_id)));
    refused(&srv, &vera_token, "unauthorized").await;
    // A second removal finds nobody.
    let reply = host.call(remove(&vera_id)).await;
    assert_eq!(reply["error"]["code"], json!("not_found"), "{reply}");
}

#[tokio::test]
async fn a_host_hands_over_the_host_role_which_storage_keeps() {
    let srv = Srv::start().await;
    let meeting = srv.meeting("m").await;
    let (host_id, _, mut host) = Peer::join_as(&srv, &meeting, "Hana", "host").await;
    let (vera_id, vera_token, mut vera) = Peer::join_as(&srv, &meeting, "Vera", "viewer").await;
    let (_, _, mut wes) = Peer::join_as(&srv, &meeting, "Wes", "viewer").await;
    wes.call_ok(json!({"call":"stage.requestAccess"})).await;

    // A viewer may not hand out presets; an unknown preset changes nothing.
    let reply = vera
        .call(json!({"call":"meeting.setPreset","user_id":vera_id,"preset":"host"}))
        .await;
    assert_eq!(
        reply["error"]["code"],
        json!("permission_denied"),
        "{reply}"
    );
    let reply = host
        .call(json!({"call":"meeting.setPreset","user_id":vera_id,"preset":"emperor"}))
        .await;
    assert_eq!(reply["error"]["code"], json!("not_found"), "{reply}");
    let reply = vera.call(json!({"call":"stage.getAccessRequests"})).await;
    assert_eq!(
        reply["error"]["code"],
        json!("permission_denied"),
        "{reply}"
    );

    host.call_ok(json!({"call":"meeting.setPreset","user_id":vera_id,"preset":"host"}))
        .await;
    let changed = vera.next_matching(|m| is_event(m, "preset_changed")).await;
    assert_eq!(changed["event"]["user_id"], json!(vera_id));
    assert_eq!(changed["event"]["by"], json!(host_id));
    assert_eq!(changed["event"]["preset"]["name"], json!("host"));
    assert_eq!(
        changed["event"]["preset"]["accept_stage_requests"],
        json!(true)
    );
    // The new host runs the stage at once: the queue, granting.
    let reply = vera
        .call_ok(json!({"call":"stage.getAccessRequests"}))
        .await;
    let wes_id = reply["result"][0]["user_id"].clone();
    vera.call_ok(json!({"call":"stage.grantAccess","user_ids":[wes_id]}))
        .await;
    let (_, snapshot) = events_then_snapshot(&mut host).await;
    let vera_row: Vec<&Value> = snapshot["participants"]
        .as_array()
        .expect("participants")
        .iter()
        .filter(|p| p["user_id"] == json!(vera_id))
        .collect();
    assert_eq!(vera_row[0]["preset"], json!("host"), "{snapshot}");

    // Kept in storage: listed so, and the next session (after a restart too) is a host's.
    assert!(listed(&srv, &meeting)
        .await
        .iter()
        .any(|p| p["id"] == json!(vera_id) && p["preset_name"] == json!("host")));
    drop((host, vera, wes));
    let srv = srv.restart().await;
    let (_, welcome) = Peer::join(&srv, &vera_token).await;
    assert_eq!(welcome["preset"]["name"], json!("host"), "{welcome}");
}

#[tokio::test]
async fn a_host_mutes_a_speaker_on_stage_and_everyone_is_told() {
    let srv = Srv::start().await;
    let meeting = srv.meeting("m").await;
    let (host_id, _, mut host) = Peer::join_as(&srv, &meeting, "Hana", "host").await;
    let (sam_id, _, mut sam) = Peer::join_as(&srv, &meeting, "Sam", "speaker").await;
    let (vera_id, _, mut vera) = Peer::join_as(&srv, &meeting, "Vera", "viewer").await;
    let mute = |who: &str| json!({"call":"media.muteParticipant","user_id":who});
    // Only someone on stage can be muted, and only by who runs the stage.
    let reply = host.call(mute(&sam_id)).await;
    assert_eq!(reply["error"]["code"], json!("invalid_state"), "{reply}");
    sam.call_ok(json!({"call":"stage.join"})).await;
    let reply = vera.call(mute(&sam_id)).await;
    assert_eq!(
        reply["error"]["code"],
        json!("permission_denied"),
        "{reply}"
    );
    let reply = host.call(mute("ghost")).await;
    assert_eq!(reply["error"]["code"], json!("not_found"), "{reply}");

    host.call_ok(mute(&sam_id)).await;
    let want = json!({"kind":"participant_muted","user_id":sam_id,"by":host_id});
    for peer in [&mut sam, &mut vera] {
        let told = peer
            .next_matching(|m| is_event(m, "participant_muted"))
            .await;
        assert_eq!(told["event"], want);
    }
    let _ = vera_id;
}
