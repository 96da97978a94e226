//! A host ends the meeting for everyone (`meeting.end`): everyone hears `meeting_ended`,
//! then `goodbye: meeting_ended`; the room is gone, and a later join starts a new one.

mod common;

use common::{is_event, Peer, Srv};
use serde_json::json;

#[tokio::test]
async fn only_a_host_may_end_the_meeting() {
    let srv = Srv::start().await;
    let meeting = srv.meeting("standup").await;
    let (_, _, mut speaker) = Peer::join_as(&srv, &meeting, "Sam", "speaker").await;
    let (_, _, mut viewer) = Peer::join_as(&srv, &meeting, "Vera", "viewer").await;
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
    assert_eq!(viewer.participant_count().await, 2);
}

#[tokio::test]
async fn ending_tells_everyone_says_goodbye_and_a_later_join_starts_afresh() {
    let srv = Srv::start().await;
    let meeting = srv.meeting("all hands").await;
    let (host_id, _, mut host) = Peer::join_as(&srv, &meeting, "Hana", "host").await;
    let (_, _, mut speaker) = Peer::join_as(&srv, &meeting, "Sam", "speaker").await;
    let (_, viewer_token, mut viewer) = Peer::join_as(&srv, &meeting, "Vera", "viewer").await;
    speaker.call_ok(json!({"call":"stage.join"})).await;
    viewer.call_ok(json!({"call":"stage.requestAccess"})).await;
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
