//! Every stage flow through the SDK against a real server: each row of the stage table,
//! each error code and each event name.

use onstage_e2e::*;
use onstage_proto::rest::CreateMeeting;
use onstage_proto::{ErrorCode, StageStatus, UserId};
use serde_json::json;

fn code<T: std::fmt::Debug>(r: Result<T, onstage_client::ClientError>) -> ErrorCode {
    r.expect_err("call must be refused").code()
}

struct Cast {
    server: TestServer,
    meeting: String,
    host: Client,
    viewer: Client,
    audience: Client,
}

/// A meeting with a host, a viewer that will ask to come up and an audience member who
/// watches everything.
async fn cast() -> Cast {
    let server = TestServer::start().await;
    let meeting = server.meeting("flows").await;
    let host = server.join(&meeting, "Host", "host").await;
    let viewer = server.join(&meeting, "Vera", "viewer").await;
    let audience = server.join(&meeting, "Audrey", "viewer").await;
    Cast {
        server,
        meeting,
        host,
        viewer,
        audience,
    }
}

#[tokio::test]
async fn request_then_cancel() {
    let Cast {
        server: _server,
        mut host,
        mut viewer,
        mut audience,
        ..
    } = cast().await;
    let vid = viewer.id();
    viewer
        .meeting
        .stage()
        .request_access()
        .await
        .expect("request");
    viewer
        .expect_event(
            "stageStatusUpdate",
            json!({"status":"REQUESTED_TO_JOIN_STAGE"}),
        )
        .await;
    host.expect_event(
        "newStageRequest",
        json!({"request":{"user_id":vid, "name":"Vera"}}),
    )
    .await;
    let update = host
        .expect_event("stageAccessRequestUpdate", json!({}))
        .await;
    assert_eq!(update["requests"][0]["user_id"], vid);
    assert!(update["requests"][0]["requested_at"].as_u64().is_some());
    audience
        .expect_event(
            "participantStageStatus",
            json!({"user_id":vid,"status":"REQUESTED_TO_JOIN_STAGE"}),
        )
        .await;
    let queue = host
        .meeting
        .stage()
        .get_access_requests()
        .await
        .expect("queue");
    assert_eq!(queue.len(), 1);
    assert_eq!(queue[0].user_id.as_str(), vid);

    viewer
        .meeting
        .stage()
        .cancel_request_access()
        .await
        .expect("cancel");
    viewer
        .expect_event("stageStatusUpdate", json!({"status":"OFF_STAGE"}))
        .await;
    host.expect_event("stageAccessRequestUpdate", json!({"requests": []}))
        .await;
    assert!(host
        .meeting
        .stage()
        .get_access_requests()
        .await
        .expect("queue")
        .is_empty());
    // The audience (not a host) never gets the queue events.
    audience
        .expect_event(
            "participantStageStatus",
            json!({"user_id":vid,"status":"OFF_STAGE"}),
        )
        .await;
    assert!(audience
        .seen
        .iter()
        .all(|e| e["event"] != "stageAccessRequestUpdate" && e["event"] != "newStageRequest"));
}

#[tokio::test]
async fn grant_join_then_kick() {
    let Cast {
        server: _server,
        mut host,
        mut viewer,
        mut audience,
        ..
    } = cast().await;
    let vid = viewer.id();
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
        .expect("grant");
    viewer.expect_event("stageRequestApproved", json!({})).await;
    viewer
        .expect_event(
            "stageStatusUpdate",
            json!({"status":"ACCEPTED_TO_JOIN_STAGE"}),
        )
        .await;
    host.expect_event("stageAccessRequestUpdate", json!({"requests": []}))
        .await;
    viewer.meeting.stage().join().await.expect("join");
    viewer
        .expect_event("stageStatusUpdate", json!({"status":"ON_STAGE"}))
        .await;
    assert_eq!(viewer.meeting.stage().status(), StageStatus::OnStage);
    audience
        .expect_event(
            "participantStageStatus",
            json!({"user_id":vid,"status":"ON_STAGE"}),
        )
        .await;
    let seen_by_audience = audience
        .meeting
        .participants()
        .into_iter()
        .find(|p| p.user_id.as_str() == vid)
        .expect("audience sees the viewer");
    assert_eq!(seen_by_audience.stage_status, StageStatus::OnStage);

    host.meeting
        .stage()
        .kick(&[viewer.user_id()])
        .await
        .expect("kick");
    viewer
        .expect_event("stageStatusUpdate", json!({"status":"OFF_STAGE"}))
        .await;
    audience
        .expect_event(
            "participantStageStatus",
            json!({"user_id":vid,"status":"OFF_STAGE"}),
        )
        .await;
    assert_eq!(viewer.meeting.stage().status(), StageStatus::OffStage);
}

#[tokio::test]
async fn deny_tells_the_requester() {
    let Cast {
        server: _server,
        mut host,
        mut viewer,
        ..
    } = cast().await;
    viewer
        .meeting
        .stage()
        .request_access()
        .await
        .expect("request");
    host.expect_event("newStageRequest", json!({})).await;
    host.meeting
        .stage()
        .deny_access(&[viewer.user_id()])
        .await
        .expect("deny");
    viewer
        .expect_event("stageRequestRejected", json!({"by": host.id()}))
        .await;
    viewer
        .expect_event("stageStatusUpdate", json!({"status":"OFF_STAGE"}))
        .await;
    host.expect_event("stageAccessRequestUpdate", json!({"requests": []}))
        .await;
    // Denying again: nobody is REQUESTED any more.
    let again = host.meeting.stage().deny_access(&[viewer.user_id()]).await;
    assert_eq!(code(again), ErrorCode::InvalidState);
}

#[tokio::test]
async fn invite_a_spectator_who_joins_and_a_viewer_who_declines() {
    let Cast {
        server,
        meeting,
        mut host,
        mut viewer,
        ..
    } = cast().await;
    let mut spectator = server.join(&meeting, "Spec", "spectator").await;
    // A spectator may not ask...
    assert_eq!(
        code(spectator.meeting.stage().request_access().await),
        ErrorCode::PermissionDenied
    );
    // ...but may be invited.
    host.meeting
        .stage()
        .grant_access(&[spectator.user_id(), viewer.user_id()])
        .await
        .expect("invite both");
    spectator
        .expect_event("stageRequestApproved", json!({}))
        .await;
    spectator.meeting.stage().join().await.expect("join");
    spectator
        .expect_event("stageStatusUpdate", json!({"status":"ON_STAGE"}))
        .await;
    // Leaving from ACCEPTED declines the invitation.
    viewer
        .expect_event(
            "stageStatusUpdate",
            json!({"status":"ACCEPTED_TO_JOIN_STAGE"}),
        )
        .await;
    viewer.meeting.stage().leave().await.expect("decline");
    viewer
        .expect_event("stageStatusUpdate", json!({"status":"OFF_STAGE"}))
        .await;
    host.expect_event(
        "participantStageStatus",
        json!({"user_id": viewer.id(), "status":"OFF_STAGE"}),
    )
    .await;
    // Leaving from ON_STAGE.
    spectator.meeting.stage().leave().await.expect("leave");
    spectator
        .expect_event("stageStatusUpdate", json!({"status":"OFF_STAGE"}))
        .await;
}

#[tokio::test]
async fn presets_refuse_what_they_do_not_allow() {
    let server = TestServer::start().await;
    let meeting = server.meeting("perms").await;
    server
        .preset(json!({"name":"moderator","stage_access":"CAN_REQUEST","kick_participant":true}))
        .await;
    server
        .preset(json!({"name":"listener","stage_access":"CAN_REQUEST","stage_enabled":false}))
        .await;
    let host = server.join(&meeting, "Host", "host").await;
    let speaker = server.join(&meeting, "Speaker", "speaker").await;
    let viewer = server.join(&meeting, "Viewer", "viewer").await;
    let spectator = server.join(&meeting, "Spectator", "spectator").await;
    let moderator = server.join(&meeting, "Mod", "moderator").await;
    let listener = server.join(&meeting, "Listener", "listener").await;

    speaker
        .meeting
        .stage()
        .join()
        .await
        .expect("speaker joins directly");
    viewer
        .meeting
        .stage()
        .request_access()
        .await
        .expect("viewer asks");
    let target = [viewer.user_id()];
    for who in [&speaker, &viewer, &spectator, &moderator, &listener] {
        let stage = who.meeting.stage();
        assert_eq!(
            code(stage.get_access_requests().await),
            ErrorCode::PermissionDenied
        );
        assert_eq!(
            code(stage.grant_access(&target).await),
            ErrorCode::PermissionDenied
        );
        assert_eq!(
            code(stage.deny_access(&target).await),
            ErrorCode::PermissionDenied
        );
    }
    for who in [&speaker, &viewer, &spectator, &listener] {
        assert_eq!(
            code(who.meeting.stage().kick(&[speaker.user_id()]).await),
            ErrorCode::PermissionDenied
        );
    }
    assert_eq!(
        code(viewer.meeting.stage().join().await),
        ErrorCode::PermissionDenied
    );
    assert_eq!(
        code(spectator.meeting.stage().join().await),
        ErrorCode::PermissionDenied
    );
    assert_eq!(
        code(listener.meeting.stage().request_access().await),
        ErrorCode::PermissionDenied
    );
    assert_eq!(
        code(listener.meeting.stage().join().await),
        ErrorCode::PermissionDenied
    );
    assert_eq!(
        code(
            host.meeting
                .stage()
                .grant_access(&[listener.user_id()])
                .await
        ),
        ErrorCode::PermissionDenied
    );
    // kick_participant alone is enough to take someone down.
    moderator
        .meeting
        .stage()
        .kick(&[speaker.user_id()])
        .await
        .expect("moderator kicks");
    // Nothing above changed the viewer's request.
    let queue = host
        .meeting
        .stage()
        .get_access_requests()
        .await
        .expect("queue");
    assert_eq!(queue.len(), 1);
    assert_eq!(queue[0].user_id, viewer.user_id());
}

#[tokio::test]
async fn state_errors_unknown_ids_and_bad_requests() {
    let Cast {
        server,
        mut host,
        viewer,
        audience,
        ..
    } = cast().await;
    let stage = viewer.meeting.stage();
    assert_eq!(
        code(stage.cancel_request_access().await),
        ErrorCode::InvalidState
    );
    assert_eq!(code(stage.leave().await), ErrorCode::InvalidState);
    stage.request_access().await.expect("request");
    assert_eq!(code(stage.request_access().await), ErrorCode::InvalidState);
    host.expect_event("newStageRequest", json!({})).await;

    let hs = host.meeting.stage();
    assert_eq!(
        code(hs.grant_access(&[UserId::new("nobody")]).await),
        ErrorCode::NotFound
    );
    // One bad id fails the whole batch: the viewer's request is still there.
    assert_eq!(
        code(
            hs.grant_access(&[viewer.user_id(), UserId::new("nobody")])
                .await
        ),
        ErrorCode::NotFound
    );
    // One target in the wrong state fails the whole batch too.
    hs.join().await.expect("host joins");
    assert_eq!(
        code(hs.grant_access(&[viewer.user_id(), host.user_id()]).await),
        ErrorCode::InvalidState
    );
    assert_eq!(
        code(hs.kick(&[host.user_id(), audience.user_id()]).await),
        ErrorCode::InvalidState
    );
    assert_eq!(
        code(hs.kick(&[viewer.user_id()]).await),
        ErrorCode::InvalidState
    );
    assert_eq!(code(hs.grant_access(&[]).await), ErrorCode::BadRequest);
    // A participant of another meeting is not found here.
    let other = server.meeting("other").await;
    let stranger = server.join(&other, "Stranger", "viewer").await;
    stranger
        .meeting
        .stage()
        .request_access()
        .await
        .expect("request elsewhere");
    assert_eq!(
        code(hs.grant_access(&[stranger.user_id()]).await),
        ErrorCode::NotFound
    );
    assert_eq!(
        code(hs.deny_access(&[stranger.user_id()]).await),
        ErrorCode::NotFound
    );
    let queue = hs.get_access_requests().await.expect("queue");
    assert_eq!(queue.len(), 1, "refused calls changed nothing");
    assert_eq!(
        viewer.meeting.stage().status(),
        StageStatus::RequestedToJoinStage
    );
}

#[tokio::test]
async fn the_stage_fills_up() {
    let server = TestServer::start().await;
    let small = CreateMeeting {
        title: "small".into(),
        max_on_stage: Some(1),
    };
    let meeting = server.admin.create_meeting(&small).await.expect("meeting");
    let meeting = meeting.id.to_string();
    let host = server.join(&meeting, "Host", "host").await;
    let speaker = server.join(&meeting, "Speaker", "speaker").await;
    host.meeting.stage().join().await.expect("first joins");
    assert_eq!(
        code(speaker.meeting.stage().join().await),
        ErrorCode::StageFull
    );
    assert_eq!(speaker.meeting.stage().status(), StageStatus::OffStage);
    host.meeting.stage().leave().await.expect("leave");
    speaker
        .meeting
        .stage()
        .join()
        .await
        .expect("now there is room");
}

#[tokio::test]
async fn a_bad_token_is_unauthorized() {
    let server = TestServer::start().await;
    let err = onstage_client::Meeting::join(&server.url, "not-a-token")
        .await
        .expect_err("refused");
    assert_eq!(err.code(), ErrorCode::Unauthorized);
}

#[tokio::test]
async fn too_many_calls_are_rate_limited_and_change_nothing() {
    let Cast {
        server: _server,
        host,
        viewer,
        ..
    } = cast().await;
    let mut limited = 0;
    for _ in 0..200 {
        match host.meeting.stage().get_access_requests().await {
            Ok(_) => {}
            Err(e) if e.code() == ErrorCode::RateLimited => {
                limited += 1;
                break;
            }
            Err(e) => panic!("unexpected error {e}"),
        }
    }
    assert_eq!(limited, 1, "200 calls at once must hit the limit");
    // The limit is per connection: the viewer is unaffected.
    viewer
        .meeting
        .stage()
        .request_access()
        .await
        .expect("viewer still served");
}

#[tokio::test]
async fn a_host_ends_the_meeting_and_everyone_is_told_at_once_without_reconnecting() {
    let Cast {
        server: _server,
        mut host,
        mut viewer,
        audience,
        ..
    } = cast().await;
    // Only a host may.
    assert_eq!(
        code(viewer.meeting.end().await),
        ErrorCode::PermissionDenied
    );
    drop(audience);
    host.meeting.end().await.expect("the host ends the meeting");
    let by = json!({ "by": host.id() });
    for client in [&mut host, &mut viewer] {
        client.expect_event("meetingEnded", by.clone()).await;
        client
            .expect_event(
                "connectionStateUpdate",
                json!({"state":"disconnected","reason":"meeting_ended"}),
            )
            .await;
        assert_eq!(
            client.meeting.end_reason(),
            Some(onstage_proto::CloseReason::MeetingEnded)
        );
        assert_eq!(
            client.meeting.connection_state(),
            onstage_client::ConnectionState::Disconnected
        );
        // Over for good: no reconnect, and later calls say why.
        assert!(
            !client.drain().iter().any(|e| e["state"] == "reconnecting"),
            "no reconnect after the meeting ended"
        );
        assert_eq!(
            code(client.meeting.stage().request_access().await),
            ErrorCode::ConnectionLost
        );
    }
}
