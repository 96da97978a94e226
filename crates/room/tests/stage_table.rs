//! One test per row of the stage table (DESIGN.md "The stage"), each with its refusals.

mod common;

use common::*;
use onstage_proto::{
    Call, CallResult, ErrorCode, LeaveReason, Preset, RoomEvent, StageAccess,
    StageChangeReason as Why, StageStatus::*,
};
use onstage_room::{builtin_preset, Member, Room, RoomConfig};

fn status_event(user: &str, status: onstage_proto::StageStatus, reason: Why) -> RoomEvent {
    RoomEvent::StageStatusChanged {
        user_id: uid(user),
        status,
        reason,
        by: None,
        requested_at: None,
    }
}

fn by(event: RoomEvent, who: &str) -> RoomEvent {
    match event {
        RoomEvent::StageStatusChanged {
            user_id,
            status,
            reason,
            requested_at,
            ..
        } => RoomEvent::StageStatusChanged {
            user_id,
            status,
            reason,
            by: Some(uid(who)),
            requested_at,
        },
        other => other,
    }
}

#[test]
fn get_access_requests_needs_accept_permission_and_lists_oldest_first() {
    let mut room = room_with_everyone(25);
    call(&mut room, "viewer2", Call::RequestAccess, 20).unwrap();
    call(&mut room, "viewer", Call::RequestAccess, 10).unwrap();
    events(&mut room);
    let Ok(CallResult::Requests(queue)) = call(&mut room, "host", Call::GetAccessRequests, 30)
    else {
        panic!("host gets the queue");
    };
    let order: Vec<_> = queue.iter().map(|r| r.user_id.as_str()).collect();
    assert_eq!(order, ["viewer", "viewer2"], "oldest request first");
    assert_eq!(queue[0].requested_at, 10);
    assert_eq!(queue[0].name, "viewer name");
    for who in ["speaker", "viewer", "spectator"] {
        refused(
            &mut room,
            who,
            Call::GetAccessRequests,
            ErrorCode::PermissionDenied,
        );
    }
}

#[test]
fn request_access_can_request_goes_to_requested() {
    let mut room = room_with_everyone(25);
    let r = call(&mut room, "viewer", Call::RequestAccess, 5).unwrap();
    assert_eq!(
        r,
        CallResult::Status {
            stage_status: RequestedToJoinStage
        }
    );
    assert_eq!(
        events(&mut room),
        [RoomEvent::StageStatusChanged {
            user_id: uid("viewer"),
            status: RequestedToJoinStage,
            reason: Why::Requested,
            by: None,
            requested_at: Some(5),
        }]
    );
    assert_eq!(room.queue().len(), 1);
    // Twice is a state error.
    refused(
        &mut room,
        "viewer",
        Call::RequestAccess,
        ErrorCode::InvalidState,
    );
}

#[test]
fn request_access_allowed_goes_to_accepted_and_not_allowed_is_refused() {
    let mut room = room_with_everyone(25);
    call(&mut room, "speaker", Call::RequestAccess, 1).unwrap();
    assert_eq!(status(&room, "speaker"), AcceptedToJoinStage);
    assert_eq!(
        events(&mut room),
        [status_event(
            "speaker",
            AcceptedToJoinStage,
            Why::AutoAccepted
        )]
    );
    assert!(room.queue().is_empty(), "an ALLOWED caller never queues");
    refused(
        &mut room,
        "spectator",
        Call::RequestAccess,
        ErrorCode::PermissionDenied,
    );
    // From ACCEPTED or ON a request is a state error.
    refused(
        &mut room,
        "speaker",
        Call::RequestAccess,
        ErrorCode::InvalidState,
    );
    call(&mut room, "speaker", Call::Join, 2).unwrap();
    refused(
        &mut room,
        "speaker",
        Call::RequestAccess,
        ErrorCode::InvalidState,
    );
}

#[test]
fn cancel_request_access_only_from_requested() {
    let mut room = room_with_everyone(25);
    refused(
        &mut room,
        "viewer",
        Call::CancelRequestAccess,
        ErrorCode::InvalidState,
    );
    call(&mut room, "viewer", Call::RequestAccess, 1).unwrap();
    events(&mut room);
    call(&mut room, "viewer", Call::CancelRequestAccess, 2).unwrap();
    assert_eq!(status(&room, "viewer"), OffStage);
    assert!(room.queue().is_empty());
    assert_eq!(
        events(&mut room),
        [status_event("viewer", OffStage, Why::Cancelled)]
    );
}

#[test]
fn grant_access_accepts_requests_and_invites_others() {
    let mut room = room_with_everyone(25);
    call(&mut room, "viewer", Call::RequestAccess, 1).unwrap();
    events(&mut room);
    // viewer requested (grant), spectator did not (invitation, even though NOT_ALLOWED).
    call(
        &mut room,
        "host",
        Call::GrantAccess {
            user_ids: ids(&["viewer", "spectator"]),
        },
        2,
    )
    .unwrap();
    assert_eq!(status(&room, "viewer"), AcceptedToJoinStage);
    assert_eq!(status(&room, "spectator"), AcceptedToJoinStage);
    assert!(room.queue().is_empty());
    assert_eq!(
        events(&mut room),
        [
            by(
                status_event("viewer", AcceptedToJoinStage, Why::Granted),
                "host"
            ),
            by(
                status_event("spectator", AcceptedToJoinStage, Why::Invited),
                "host"
            ),
        ]
    );
    // The invited spectator may now join.
    call(&mut room, "spectator", Call::Join, 3).unwrap();
    assert_eq!(status(&room, "spectator"), OnStage);
}

#[test]
fn grant_access_refusals() {
    let mut room = room_with_everyone(25);
    call(&mut room, "viewer", Call::RequestAccess, 1).unwrap();
    let grant = |list: &[&str]| Call::GrantAccess {
        user_ids: ids(list),
    };
    for who in ["speaker", "viewer", "spectator"] {
        refused(
            &mut room,
            who,
            grant(&["viewer"]),
            ErrorCode::PermissionDenied,
        );
    }
    // Batch validated whole: one unknown id or one target in the wrong state, no change.
    refused(
        &mut room,
        "host",
        grant(&["viewer", "ghost"]),
        ErrorCode::NotFound,
    );
    call(&mut room, "speaker", Call::Join, 2).unwrap();
    events(&mut room);
    refused(
        &mut room,
        "host",
        grant(&["viewer", "speaker"]),
        ErrorCode::InvalidState,
    );
    refused(&mut room, "host", grant(&[]), ErrorCode::BadRequest);
    // A preset with the stage disabled cannot be granted.
    let mut no_stage = builtin_preset("viewer").unwrap();
    no_stage.name = "listener".into();
    no_stage.stage_enabled = false;
    room.connect(
        Member {
            user_id: uid("listener"),
            name: "Listener".into(),
            preset: no_stage,
        },
        "peer-l".into(),
        3,
    );
    events(&mut room);
    refused(
        &mut room,
        "host",
        grant(&["listener"]),
        ErrorCode::PermissionDenied,
    );
    refused(
        &mut room,
        "listener",
        Call::RequestAccess,
        ErrorCode::PermissionDenied,
    );
    refused(
        &mut room,
        "listener",
        Call::Join,
        ErrorCode::PermissionDenied,
    );
}

#[test]
fn deny_access_only_on_requests_and_tells_target() {
    let mut room = room_with_everyone(25);
    call(&mut room, "viewer", Call::RequestAccess, 1).unwrap();
    events(&mut room);
    let deny = |list: &[&str]| Call::DenyAccess {
        user_ids: ids(list),
    };
    refused(
        &mut room,
        "viewer2",
        deny(&["viewer"]),
        ErrorCode::PermissionDenied,
    );
    refused(
        &mut room,
        "host",
        deny(&["viewer", "viewer2"]),
        ErrorCode::InvalidState,
    );
    refused(&mut room, "host", deny(&["nobody"]), ErrorCode::NotFound);
    call(&mut room, "host", deny(&["viewer"]), 2).unwrap();
    assert_eq!(status(&room, "viewer"), OffStage);
    assert!(room.queue().is_empty());
    assert_eq!(
        events(&mut room),
        [by(status_event("viewer", OffStage, Why::Denied), "host")]
    );
}

#[test]
fn join_from_accepted_or_allowed_and_refusals() {
    let mut room = room_with_everyone(25);
    // ALLOWED joins straight from OFF.
    call(&mut room, "host", Call::Join, 1).unwrap();
    assert_eq!(
        events(&mut room),
        [status_event("host", OnStage, Why::Joined)]
    );
    refused(&mut room, "host", Call::Join, ErrorCode::InvalidState);
    // CAN_REQUEST needs an accepted request, NOT_ALLOWED an invitation.
    refused(&mut room, "viewer", Call::Join, ErrorCode::PermissionDenied);
    call(&mut room, "viewer", Call::RequestAccess, 2).unwrap();
    events(&mut room);
    refused(&mut room, "viewer", Call::Join, ErrorCode::PermissionDenied);
    refused(
        &mut room,
        "spectator",
        Call::Join,
        ErrorCode::PermissionDenied,
    );
    call(
        &mut room,
        "host",
        Call::GrantAccess {
            user_ids: ids(&["viewer"]),
        },
        3,
    )
    .unwrap();
    call(&mut room, "viewer", Call::Join, 4).unwrap();
    assert_eq!(status(&room, "viewer"), OnStage);
    assert_eq!(room.on_stage_count(), 2);
}

#[test]
fn join_beyond_max_on_stage_is_stage_full() {
    let mut room = room_with_everyone(2);
    call(&mut room, "host", Call::Join, 1).unwrap();
    call(&mut room, "speaker", Call::Join, 2).unwrap();
    call(
        &mut room,
        "host",
        Call::GrantAccess {
            user_ids: ids(&["spectator"]),
        },
        3,
    )
    .unwrap();
    events(&mut room);
    refused(&mut room, "spectator", Call::Join, ErrorCode::StageFull);
    assert_eq!(status(&room, "spectator"), AcceptedToJoinStage);
    // A place frees up: the join works.
    call(&mut room, "speaker", Call::Leave, 4).unwrap();
    call(&mut room, "spectator", Call::Join, 5).unwrap();
    assert_eq!(room.on_stage_count(), 2);
}

#[test]
fn leave_from_on_stage_or_accepted() {
    let mut room = room_with_everyone(25);
    refused(&mut room, "viewer", Call::Leave, ErrorCode::InvalidState);
    call(&mut room, "viewer", Call::RequestAccess, 1).unwrap();
    events(&mut room);
    refused(&mut room, "viewer", Call::Leave, ErrorCode::InvalidState);
    call(&mut room, "host", Call::Join, 2).unwrap();
    call(&mut room, "host", Call::Leave, 3).unwrap();
    call(
        &mut room,
        "host",
        Call::GrantAccess {
            user_ids: ids(&["spectator"]),
        },
        4,
    )
    .unwrap();
    events(&mut room);
    // Leaving from ACCEPTED declines the invitation.
    call(&mut room, "spectator", Call::Leave, 5).unwrap();
    assert_eq!(status(&room, "spectator"), OffStage);
    assert_eq!(
        events(&mut room),
        [status_event("spectator", OffStage, Why::Declined)]
    );
    assert_eq!(room.on_stage_count(), 0);
}

#[test]
fn kick_needs_permission_and_a_target_on_stage_or_accepted() {
    let mut room = room_with_everyone(25);
    let mut moderator: Preset = builtin_preset("viewer").unwrap();
    moderator.name = "moderator".into();
    moderator.kick_participant = true;
    room.connect(
        Member {
            user_id: uid("moderator"),
            name: "Mod".into(),
            preset: moderator,
        },
        "peer-m".into(),
        0,
    );
    call(&mut room, "speaker", Call::Join, 1).unwrap();
    call(&mut room, "host", Call::RequestAccess, 2).unwrap();
    call(&mut room, "viewer", Call::RequestAccess, 3).unwrap();
    events(&mut room);
    let kick = |list: &[&str]| Call::Kick {
        user_ids: ids(list),
    };
    refused(
        &mut room,
        "viewer2",
        kick(&["speaker"]),
        ErrorCode::PermissionDenied,
    );
    refused(
        &mut room,
        "speaker",
        kick(&["host"]),
        ErrorCode::PermissionDenied,
    );
    refused(
        &mut room,
        "host",
        kick(&["speaker", "viewer"]),
        ErrorCode::InvalidState,
    );
    refused(
        &mut room,
        "host",
        kick(&["speaker", "ghost"]),
        ErrorCode::NotFound,
    );
    // kick_participant alone is enough; ON and ACCEPTED targets both go OFF.
    call(&mut room, "moderator", kick(&["speaker", "host"]), 4).unwrap();
    assert_eq!(status(&room, "speaker"), OffStage);
    assert_eq!(status(&room, "host"), OffStage);
    assert_eq!(room.on_stage_count(), 0);
    assert_eq!(
        events(&mut room),
        [
            by(status_event("speaker", OffStage, Why::Kicked), "moderator"),
            by(status_event("host", OffStage, Why::Kicked), "moderator"),
        ]
    );
}

#[test]
fn unknown_caller_is_not_found() {
    let mut room = room_with_everyone(25);
    refused(&mut room, "stranger", Call::Join, ErrorCode::NotFound);
}

#[test]
fn disconnect_keeps_status_and_queue_place_within_grace() {
    let mut room = room_with_everyone(25);
    call(&mut room, "viewer", Call::RequestAccess, 10).unwrap();
    call(&mut room, "viewer2", Call::RequestAccess, 20).unwrap();
    call(&mut room, "speaker", Call::Join, 20).unwrap();
    events(&mut room);
    room.disconnect(&uid("viewer"), 100);
    room.disconnect(&uid("speaker"), 150);
    assert_eq!(room.poll_timeout(), Some(1_100));
    assert_eq!(
        events(&mut room),
        [
            RoomEvent::ParticipantConnection {
                user_id: uid("viewer"),
                connected: false
            },
            RoomEvent::ParticipantConnection {
                user_id: uid("speaker"),
                connected: false
            },
        ]
    );
    room.handle_timeout(1_099);
    assert!(events(&mut room).is_empty());
    // The viewer comes back in time: same peer, same place.
    let back = room.connect(
        Member {
            user_id: uid("viewer"),
            name: "viewer name".into(),
            preset: builtin_preset("viewer").unwrap(),
        },
        "a-new-peer".into(),
        1_099,
    );
    assert!(back.resumed && !back.replaced);
    assert_eq!(back.peer_id.as_str(), "peer-viewer");
    assert_eq!(status(&room, "viewer"), RequestedToJoinStage);
    assert_eq!(room.queue()[0].user_id, uid("viewer"));
    // The speaker does not: removed from the stage and the roster, everyone told.
    events(&mut room);
    room.handle_timeout(1_150);
    assert_eq!(
        events(&mut room),
        [
            status_event("speaker", OffStage, Why::Removed),
            RoomEvent::ParticipantLeft {
                user_id: uid("speaker"),
                reason: LeaveReason::TimedOut
            },
        ]
    );
    assert_eq!(room.on_stage_count(), 0);
    assert_eq!(room.status_of(&uid("speaker")), None);
    assert_eq!(room.poll_timeout(), None);
}

#[test]
fn a_second_connection_replaces_the_first_without_events() {
    let mut room = room_with_everyone(25);
    let again = room.connect(
        Member {
            user_id: uid("host"),
            name: "host name".into(),
            preset: builtin_preset("host").unwrap(),
        },
        "other".into(),
        5,
    );
    assert!(again.resumed && again.replaced);
    assert!(events(&mut room).is_empty());
}

#[test]
fn leaving_the_meeting_removes_from_queue_and_stage_at_once() {
    let mut room = room_with_everyone(25);
    call(&mut room, "viewer", Call::RequestAccess, 1).unwrap();
    events(&mut room);
    call(&mut room, "viewer", Call::LeaveMeeting, 2).unwrap();
    assert!(room.queue().is_empty());
    assert_eq!(
        events(&mut room),
        [
            status_event("viewer", OffStage, Why::Removed),
            RoomEvent::ParticipantLeft {
                user_id: uid("viewer"),
                reason: LeaveReason::Left
            },
        ]
    );
    // Coming back after leaving is a new participant.
    let again = room.connect(
        Member {
            user_id: uid("viewer"),
            name: "v".into(),
            preset: builtin_preset("viewer").unwrap(),
        },
        "peer-2".into(),
        3,
    );
    assert!(!again.resumed);
    assert_eq!(status(&room, "viewer"), OffStage);
}

#[test]
fn an_admin_removal_takes_the_participant_off_stage_queue_and_roster_at_once() {
    let mut room = room_with_everyone(25);
    call(&mut room, "speaker", Call::Join, 1).unwrap();
    call(&mut room, "viewer", Call::RequestAccess, 2).unwrap();
    events(&mut room);

    // On stage: off it first, then out.
    assert!(room.remove_member(&uid("speaker"), 3));
    assert_eq!(room.on_stage_count(), 0);
    assert_eq!(
        events(&mut room),
        [
            status_event("speaker", OffStage, Why::Removed),
            RoomEvent::ParticipantLeft {
                user_id: uid("speaker"),
                reason: LeaveReason::Removed
            },
        ]
    );
    // Disconnected and inside its grace period, in the queue: out of both, no waiting.
    room.disconnect(&uid("viewer"), 4);
    events(&mut room);
    assert!(room.remove_member(&uid("viewer"), 5));
    assert!(room.queue().is_empty());
    assert_eq!(room.status_of(&uid("viewer")), None);
    assert_eq!(events(&mut room).len(), 2);
    assert_eq!(room.poll_timeout(), None, "nothing left to time out");

    // Off stage: only the leave. Unknown (or already removed) ids change nothing.
    assert!(room.remove_member(&uid("spectator"), 6));
    assert_eq!(
        events(&mut room),
        [RoomEvent::ParticipantLeft {
            user_id: uid("spectator"),
            reason: LeaveReason::Removed
        }]
    );
    let before = room.snapshot();
    assert!(!room.remove_member(&uid("spectator"), 7));
    assert!(!room.remove_member(&uid("ghost"), 7));
    assert_eq!(room.snapshot(), before);
    assert!(events(&mut room).is_empty());
}

#[test]
fn sequence_numbers_increase_by_one_and_snapshot_carries_the_last() {
    let mut room = Room::new(RoomConfig::default());
    add(&mut room, "host", "host");
    add(&mut room, "viewer", "viewer");
    call(&mut room, "viewer", Call::RequestAccess, 1).unwrap();
    let seqs: Vec<u64> = room.drain_events().map(|e| e.seq).collect();
    assert_eq!(seqs, [1, 2, 3]);
    let snap = room.snapshot();
    assert_eq!(snap.seq, 3);
    assert_eq!(snap.max_on_stage, 25);
    assert_eq!(snap.queue.len(), 1);
    let names: Vec<_> = snap
        .participants
        .iter()
        .map(|p| p.user_id.as_str())
        .collect();
    assert_eq!(names, ["host", "viewer"], "join order");
    assert_eq!(snap.participants[1].stage_status, RequestedToJoinStage);
    assert!(snap.participants.iter().all(|p| p.connected));
    let _ = StageAccess::Allowed;
}

#[test]
fn ending_the_meeting_needs_a_host_and_empties_the_room_with_one_event() {
    let mut room = room_with_everyone(25);
    // Only a host: `accept_stage_requests` and `kick_participant` both. A moderator that
    // handles requests but may not kick, and a kicker that may not handle requests, may not.
    let moderator = Member {
        user_id: uid("moderator"),
        name: "m".into(),
        preset: Preset {
            name: "moderator".into(),
            kick_participant: false,
            ..builtin_preset("host").unwrap()
        },
    };
    let kicker = Member {
        user_id: uid("kicker"),
        name: "k".into(),
        preset: Preset {
            name: "kicker".into(),
            accept_stage_requests: false,
            kick_participant: true,
            ..builtin_preset("viewer").unwrap()
        },
    };
    room.connect(moderator, "peer-m".into(), 0);
    room.connect(kicker, "peer-k".into(), 0);
    for who in ["speaker", "viewer", "spectator", "moderator", "kicker"] {
        refused(
            &mut room,
            who,
            Call::EndMeeting,
            ErrorCode::PermissionDenied,
        );
    }
    call(&mut room, "speaker", Call::Join, 1).unwrap();
    call(&mut room, "viewer", Call::RequestAccess, 2).unwrap();
    events(&mut room);
    let seq = room.seq();

    assert_eq!(
        call(&mut room, "host", Call::EndMeeting, 3).unwrap(),
        CallResult::Done
    );
    let told: Vec<_> = room.drain_events().collect();
    assert_eq!(told.len(), 1, "one event says it all: {told:?}");
    assert_eq!(told[0].seq, seq + 1);
    assert_eq!(told[0].event, RoomEvent::MeetingEnded { by: uid("host") });
    assert!(room.is_empty() && room.queue().is_empty());
    assert_eq!(room.on_stage_count(), 0);
    assert!(
        room.seats().is_empty(),
        "nothing left to keep for a restart"
    );
    assert_eq!(room.drain_media_events().count(), 0);
}

#[test]
fn a_host_mutes_a_speaker_whose_publication_then_carries_no_audio() {
    let mut room = room_with_everyone(25);
    call(&mut room, "speaker", Call::Join, 1).unwrap();
    assert!(room.media_published(&uid("speaker"), onstage_proto::MediaKinds::new(true, true)));
    events(&mut room);
    room.drain_media_events().for_each(drop);
    let mute = |who: &str| Call::MuteParticipant { user_id: uid(who) };
    for who in ["speaker", "viewer", "spectator"] {
        refused(&mut room, who, mute("speaker"), ErrorCode::PermissionDenied);
    }
    refused(&mut room, "host", mute("viewer"), ErrorCode::InvalidState);
    refused(&mut room, "host", mute("ghost"), ErrorCode::NotFound);

    assert_eq!(
        call(&mut room, "host", mute("speaker"), 2).unwrap(),
        CallResult::Done
    );
    assert_eq!(
        events(&mut room),
        [RoomEvent::ParticipantMuted {
            user_id: uid("speaker"),
            by: uid("host")
        }]
    );
    assert_eq!(
        room.publication_of(&uid("speaker")),
        Some(onstage_proto::MediaKinds::new(false, true)),
        "everyone is told the audio is off at once"
    );
    assert_eq!(room.drain_media_events().count(), 1);
    assert_eq!(status(&room, "speaker"), OnStage, "muted, not kicked");
    // The speaker unmutes itself.
    call(
        &mut room,
        "speaker",
        Call::MediaState {
            audio: true,
            video: true,
        },
        3,
    )
    .unwrap();
    assert_eq!(
        room.publication_of(&uid("speaker")),
        Some(onstage_proto::MediaKinds::new(true, true))
    );
}

#[test]
fn removing_and_setting_presets_are_checked_by_the_room_and_carried_out_after_storage() {
    let mut room = room_with_everyone(25);
    let remove = |who: &str| Call::RemoveParticipant { user_id: uid(who) };
    let set = |who: &str, preset: &str| Call::SetPreset {
        user_id: uid(who),
        preset: preset.into(),
    };
    for who in ["speaker", "viewer", "spectator"] {
        refused(
            &mut room,
            who,
            remove("viewer2"),
            ErrorCode::PermissionDenied,
        );
        refused(
            &mut room,
            who,
            set("viewer2", "host"),
            ErrorCode::PermissionDenied,
        );
    }
    refused(&mut room, "host", remove("host"), ErrorCode::InvalidState);
    refused(&mut room, "host", remove("ghost"), ErrorCode::NotFound);
    refused(&mut room, "host", set("ghost", "host"), ErrorCode::NotFound);
    refused(&mut room, "host", set("viewer", " "), ErrorCode::BadRequest);
    // Allowed: nothing changes until the server has written storage.
    for c in [remove("viewer2"), set("viewer", "host")] {
        assert_eq!(call(&mut room, "host", c, 1).unwrap(), CallResult::Done);
        assert!(events(&mut room).is_empty());
    }

    // The viewer asked for the stage and is made host: the request stays (a host may
    // request); then made spectator, who may not request: the request ends.
    call(&mut room, "viewer", Call::RequestAccess, 2).unwrap();
    events(&mut room);
    let host = builtin_preset("host").unwrap();
    assert!(room.set_preset(&uid("viewer"), host.clone(), &uid("host")));
    assert_eq!(
        events(&mut room),
        [RoomEvent::PresetChanged {
            user_id: uid("viewer"),
            preset: host,
            by: uid("host")
        }]
    );
    assert_eq!(status(&room, "viewer"), RequestedToJoinStage);
    assert_eq!(
        room.preset_of(&uid("viewer")).map(|p| p.name.as_str()),
        Some("host")
    );
    call(&mut room, "viewer", Call::GetAccessRequests, 3).expect("the new host sees the queue");
    let spectator = builtin_preset("spectator").unwrap();
    assert!(room.set_preset(&uid("viewer"), spectator.clone(), &uid("host")));
    assert_eq!(
        events(&mut room),
        [
            RoomEvent::PresetChanged {
                user_id: uid("viewer"),
                preset: spectator,
                by: uid("host")
            },
            by(status_event("viewer", OffStage, Why::Denied), "host"),
        ]
    );
    assert!(room.queue().is_empty());
    // A stage the new preset disables ends.
    call(&mut room, "speaker", Call::Join, 4).unwrap();
    events(&mut room);
    let no_stage = Preset {
        name: "audience".into(),
        stage_enabled: false,
        ..builtin_preset("viewer").unwrap()
    };
    assert!(room.set_preset(&uid("speaker"), no_stage, &uid("host")));
    assert_eq!(
        events(&mut room).last(),
        Some(&by(status_event("speaker", OffStage, Why::Kicked), "host"))
    );
    assert!(!room.set_preset(&uid("ghost"), builtin_preset("host").unwrap(), &uid("host")));
    assert!(events(&mut room).is_empty());
}
