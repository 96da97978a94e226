//! The events a [`Meeting`](crate::Meeting) delivers.
//!
//! They serialize exactly as the `onstage bot` prints them: an `"event"` key with the SDK's
//! event name (camelCase, as in RealtimeKit), fields in snake_case, e.g.
//! `{"event":"stageStatusUpdate","status":"ON_STAGE"}`.

use serde::{Deserialize, Serialize};

use onstage_proto::{
    AccessRequest, CloseReason, LeaveReason, ParticipantInfo, StageStatus, UserId,
};

/// The state of the signaling connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ConnectionState {
    /// Up; the mirror of the room is live.
    Connected,
    /// The connection dropped; the SDK is retrying inside the server's grace period. Calls
    /// fail with `connection_lost` meanwhile.
    Reconnecting,
    /// Over for good: the meeting was left, the server ended the session (another
    /// connection with the same token took over, the token was revoked, the participant
    /// removed, the meeting deleted or ended by a host), or reconnecting failed. The event streams end after
    /// this event.
    Disconnected,
}

/// Something that happened in the meeting, from this participant's point of view.
///
/// Room events are public to the whole meeting; the SDK derives the personal ones
/// (`stageStatusUpdate`, `stageRequestApproved`, ...) from them. See [`crate::mirror`] for
/// the rules.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "camelCase")]
pub enum MeetingEvent {
    /// This participant's own stage status changed.
    StageStatusUpdate { status: StageStatus },
    /// The whole request queue, oldest first, after any change to it. Only delivered to
    /// participants whose preset may accept requests.
    StageAccessRequestUpdate { requests: Vec<AccessRequest> },
    /// Someone asked to come on stage. Only delivered to participants whose preset may
    /// accept requests.
    NewStageRequest { request: AccessRequest },
    /// This participant's request was granted, or it was invited to the stage (status is
    /// now `ACCEPTED_TO_JOIN_STAGE`). `by` is who granted it, when known.
    StageRequestApproved { by: Option<UserId> },
    /// This participant's request was denied (status is back to `OFF_STAGE`).
    StageRequestRejected { by: Option<UserId> },
    /// Any participant's stage status changed, this participant's own included
    /// (RealtimeKit's `stageStatusUpdate` on a participant).
    ParticipantStageStatus {
        user_id: UserId,
        status: StageStatus,
    },
    /// A participant entered the meeting.
    ParticipantJoined { participant: ParticipantInfo },
    /// A participant left the meeting for good (left, or its grace period ran out).
    ParticipantLeft {
        user_id: UserId,
        reason: LeaveReason,
    },
    /// A participant's network connection dropped (it keeps its place for the grace period)
    /// or came back.
    ParticipantConnection { user_id: UserId, connected: bool },
    /// A participant's media started flowing into the server (it published).
    MediaPublished {
        user_id: UserId,
        audio: bool,
        video: bool,
    },
    /// A participant's tracks ended (left the stage, kicked, or its connection dropped).
    MediaUnpublished { user_id: UserId },
    /// A host ended the meeting for everyone (`meeting.end`). The connection closes right
    /// after (`connectionStateUpdate` `disconnected`, reason `meeting_ended`); the SDK does
    /// not reconnect. `by` is the host who ended it.
    MeetingEnded { by: UserId },
    /// A host muted an ON_STAGE participant's microphone (`by` is the host). When it is
    /// this participant, its [`crate::StageMedia`] has turned the microphone off; it may
    /// turn it on again.
    ParticipantMuted { user_id: UserId, by: UserId },
    /// A participant was given another preset (`by` is the host), e.g. made host. When it
    /// is this participant, [`crate::Meeting::preset`] is the new one from now on.
    PresetChanged {
        user_id: UserId,
        preset: String,
        by: UserId,
    },
    /// This client's own connection changed state. `resumed` is set on `connected` after a
    /// reconnect: true when the session (stage status, queue place) was kept. `reason` is
    /// set on `disconnected` when the session ended for a known reason (the server's
    /// goodbye, or a reconnect refused as `token_revoked`): `left`, `replaced`, `revoked`,
    /// `removed`, `meeting_deleted` or `meeting_ended`. None of them is retried.
    ConnectionStateUpdate {
        state: ConnectionState,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        resumed: Option<bool>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reason: Option<CloseReason>,
    },
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn wire_shapes_match_the_bot_contract() {
        let e = MeetingEvent::StageStatusUpdate {
            status: StageStatus::OnStage,
        };
        assert_eq!(
            serde_json::to_value(&e).unwrap(),
            json!({"event":"stageStatusUpdate","status":"ON_STAGE"})
        );
        let e = MeetingEvent::StageAccessRequestUpdate {
            requests: vec![AccessRequest {
                user_id: UserId::new("u1"),
                name: "Ann".into(),
                requested_at: 5,
            }],
        };
        assert_eq!(
            serde_json::to_value(&e).unwrap(),
            json!({"event":"stageAccessRequestUpdate",
                   "requests":[{"user_id":"u1","name":"Ann","requested_at":5}]})
        );
        let e = MeetingEvent::ParticipantStageStatus {
            user_id: UserId::new("u1"),
            status: StageStatus::AcceptedToJoinStage,
        };
        assert_eq!(
            serde_json::to_value(&e).unwrap(),
            json!({"event":"participantStageStatus","user_id":"u1",
                   "status":"ACCEPTED_TO_JOIN_STAGE"})
        );
        let e = MeetingEvent::StageRequestApproved {
            by: Some(UserId::new("h")),
        };
        assert_eq!(
            serde_json::to_value(&e).unwrap(),
            json!({"event":"stageRequestApproved","by":"h"})
        );
        let e = MeetingEvent::ConnectionStateUpdate {
            state: ConnectionState::Reconnecting,
            resumed: None,
            reason: None,
        };
        assert_eq!(
            serde_json::to_value(&e).unwrap(),
            json!({"event":"connectionStateUpdate","state":"reconnecting"})
        );
        let e = MeetingEvent::ConnectionStateUpdate {
            state: ConnectionState::Disconnected,
            resumed: None,
            reason: Some(CloseReason::MeetingDeleted),
        };
        let v = serde_json::to_value(&e).unwrap();
        assert_eq!(
            v,
            json!({"event":"connectionStateUpdate","state":"disconnected",
                   "reason":"meeting_deleted"})
        );
        assert_eq!(serde_json::from_value::<MeetingEvent>(v).unwrap(), e);
        let e = MeetingEvent::MeetingEnded {
            by: UserId::new("h"),
        };
        let v = serde_json::to_value(&e).unwrap();
        assert_eq!(v, json!({"event":"meetingEnded","by":"h"}));
        assert_eq!(serde_json::from_value::<MeetingEvent>(v).unwrap(), e);
        let e = MeetingEvent::ParticipantLeft {
            user_id: UserId::new("u2"),
            reason: LeaveReason::TimedOut,
        };
        let v = serde_json::to_value(&e).unwrap();
        assert_eq!(
            v,
            json!({"event":"participantLeft","user_id":"u2","reason":"timed_out"})
        );
        let back: MeetingEvent = serde_json::from_value(v).unwrap();
        assert_eq!(back, e);
    }
}
