//! A host ends the meeting for everyone (`meeting.end`): everyone hears `meeting_ended`,
//! then `goodbye: meeting_ended`; the room is gone, and a later join starts a new one.

mod common;

use common::{Peer, Srv};
use serde_json::{json, Value};

fn is_event(msg: &Value, kind: &str) -> bool {
    msg["type"] == "event" && msg["event"]["kind"] == kind
}

#[tokio::test]
async fn only_a_host_may_end_the_meeting() {
    let srv = Srv::start().await;
    let meeting = srv.meeting("standup").await;
    let (_, speaker_token) = srv.participant(&meeting, "Sam", "speaker").await;
    let (_, viewer_token) = srv.participant(&meeting, "Vera", "viewer").await;
    let (mut speaker, _) = Peer::join(&srv, &speaker_token).await;
    let (mut viewer, _) = Peer::join(&srv, &viewer_token).await;
    for peer in [&mut speaker, &mut viewer] {
        let reply = peer.call(json!({"call":"meeting.end"})).await;
        assert_eq!(reply["ok"], json!(false), "{reply}");
        assert_eq!(
            reply["error"]["code"],
            json!("permission_denied"),
            "{reply}"
        );
    }
    // Nothing ended: the meeting goes on.
    let reply = viewer.call(json!({"call":"meeting.snapshot"})).await;
    assert_eq!(reply["ok"], json!(true), "{reply}");
    assert_eq!(
        reply["result"]["participants"].as_array().map(Vec::len),
        Some(2)
    );
}

#[tokio::test]
async fn ending_tells_everyone_says_goodbye_and_a_later_join_starts_afresh() {
    let srv = Srv::start().await;
    let meeting = srv.meeting("all hands").await;
    let (host_id, host_token) = srv.participant(&meeting, "Hana", "host").await;
    let (_, speaker_token) = srv.participant(&meeting, "Sam", "speaker").await;
    let (_, viewer_token) = srv.participant(&meeting, "Vera", "viewer").await;
    let (mut host, _) = Peer::join(&srv, &host_token).await;
    let (mut speaker, _) = Peer::join(&srv, &speaker_token).await;
    let (mut viewer, _) = Peer::join(&srv, &viewer_token).await;
    let reply = speaker.call(json!({"call":"stage.join"})).await;
    assert_eq!(reply["ok"], json!(true), "{reply}");
    let reply = viewer.call(json!({"call":"stage.requestAccess"})).await;
    assert_eq!(reply["ok"], json!(true), "{reply}");
    srv.await_metric("onstage_participants", 3.0).await;

    // The event comes before the host's reply (so its mirror shows the change first).
    host.send_text(json!({"id":77,"call":"meeting.end"}).to_string())
        .await;
    let ended = json!({"kind":"meeting_ended","by":host_id});
    for (who, peer) in [
        ("host", &mut host),
        ("speaker", &mut speaker),
        ("viewer", &mut viewer),
    ] {
        let seen = peer.until_closed().await;
        let at = seen
            .iter()
            .position(|m| is_event(m, "meeting_ended"))
            .unwrap_or_else(|| panic!("{who} did not hear meeting_ended: {seen:?}"));
        assert_eq!(seen[at]["event"], ended, "{who}");
        assert_eq!(
            seen.last(),
            Some(&json!({"type":"goodbye","reason":"meeting_ended"})),
            "{who}: {seen:?}"
        );
        assert!(
            seen[at + 1..].iter().all(|m| m["type"] != "event"),
            "{who}: meeting_ended is the last event: {seen:?}"
        );
        if who == "host" {
            assert!(
                seen.contains(&json!({"type":"reply","id":77,"ok":true,"result":null})),
                "{seen:?}"
            );
        }
    }
    // The room is gone with everyone in it, media and all.
    srv.await_metric("onstage_rooms", 0.0).await;
    srv.await_metric("onstage_participants", 0.0).await;
    srv.await_metric("onstage_signal_connections", 0.0).await;
    srv.await_metric("onstage_sfu_publications", 0.0).await;

    // The meeting stays; the same token joins a new, empty session of it.
    let (_, welcome) = Peer::join(&srv, &viewer_token).await;
    let snapshot = &welcome["snapshot"];
    let roster = snapshot["participants"].as_array().expect("participants");
    assert_eq!(roster.len(), 1, "{welcome}");
    assert!(
        roster[0].get("stage_status").is_none(),
        "back OFF_STAGE: {welcome}"
    );
    assert_eq!(snapshot["queue"], json!([]), "{welcome}");
    assert_eq!(welcome["resumed"], json!(false), "{welcome}");
}
