//! Signaling over the WebSocket at `/v1/signal`.
//!
//! Client -> server: a [`Request`] per text frame, `{"id":1,"call":"stage.grantAccess",
//! "user_ids":["u1"]}` — the same shape the `onstage bot` reads on stdin. Every request gets
//! exactly one [`ServerMessage::Reply`] with the same `id`.
//!
//! Server -> client: first a [`ServerMessage::Welcome`] with a full [`RoomSnapshot`], then
//! replies and [`ServerMessage::Event`]s. Room events are public to the whole meeting and
//! numbered by a per-meeting sequence number (`seq`), so every client sees every event in
//! the same order and can detect a gap; on a gap it asks for `meeting.snapshot` and resyncs.

use serde::{Deserialize, Serialize};

use crate::{
    AccessRequest, ErrorBody, ErrorCode, MeetingId, PeerId, Preset, StageStatus, UnixMillis, UserId,
};

/// One call a client can make. The tag is the call name of the `onstage` command contract.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "call")]
pub enum Call {
    #[serde(rename = "stage.getAccessRequests")]
    GetAccessRequests,
    #[serde(rename = "stage.requestAccess")]
    RequestAccess,
    #[serde(rename = "stage.cancelRequestAccess")]
    CancelRequestAccess,
    #[serde(rename = "stage.grantAccess")]
    GrantAccess { user_ids: Vec<UserId> },
    #[serde(rename = "stage.denyAccess")]
    DenyAccess { user_ids: Vec<UserId> },
    #[serde(rename = "stage.join")]
    Join,
    #[serde(rename = "stage.leave")]
    Leave,
    #[serde(rename = "stage.kick")]
    Kick { user_ids: Vec<UserId> },
    /// A fresh snapshot of the room (used to resync after a sequence gap).
    #[serde(rename = "meeting.snapshot")]
    Snapshot,
    /// Leave the meeting for good (no grace period).
    #[serde(rename = "meeting.leave")]
    LeaveMeeting,
    /// End the meeting for everyone (a host: `accept_stage_requests` and
    /// `kick_participant`). Everyone hears `meeting_ended`, then `goodbye: meeting_ended`.
    #[serde(rename = "meeting.end")]
    EndMeeting,
    /// Remove a participant from the meeting (a host: `kick_participant`), as the admin's
    /// `DELETE .../participants/{id}` does: it is forgotten in storage, its session ends
    /// with `goodbye: removed`, its tokens are refused, and everyone hears it leave the
    /// stage or queue and then the meeting (`removed`). Not the caller itself
    /// (`meeting.leave` is for that).
    #[serde(rename = "meeting.removeParticipant")]
    RemoveParticipant { user_id: UserId },
    /// Give a participant another preset (a host: `accept_stage_requests` and
    /// `kick_participant`), e.g. make someone host before leaving. Kept in storage, so it
    /// holds for the participant's next session too; everyone hears `preset_changed`. A
    /// status the new preset does not allow ends (a stage disabled by the preset, a request
    /// from a preset that may not request).
    #[serde(rename = "meeting.setPreset")]
    SetPreset { user_id: UserId, preset: String },
    /// Start publishing: a WebRTC offer (sendonly audio and/or video). Only while ON_STAGE;
    /// the reply carries the SFU's answer. A simulcast video (`a=simulcast:send` with
    /// `a=rid` lines) describes its layers in `layers`; the SFU measures their bitrates
    /// itself and, without a description, takes the usual meaning of the RIDs `q`, `h`
    /// and `f` (a quarter, half and full 1280x720).
    #[serde(rename = "media.publish")]
    Publish {
        sdp: String,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        layers: Vec<VideoLayer>,
    },
    /// Stop publishing (the server also stops on its own when the caller leaves the stage).
    #[serde(rename = "media.unpublish")]
    Unpublish,
    /// Receive an ON_STAGE participant's media: a WebRTC offer (recvonly audio + video).
    /// The subscription lasts until the publisher leaves the stage or the caller
    /// unsubscribes; the reply carries the SFU's answer.
    #[serde(rename = "media.subscribe")]
    Subscribe { user_id: UserId, sdp: String },
    #[serde(rename = "media.unsubscribe")]
    Unsubscribe { user_id: UserId },
    /// What the caller's publication carries right now (mic muted, camera off): told to
    /// everyone as `published`. Only while publishing.
    #[serde(rename = "media.state")]
    MediaState { audio: bool, video: bool },
    /// Mute an ON_STAGE participant's microphone (a host: `kick_participant`). The SFU
    /// stops forwarding its audio at once and everyone hears `participant_muted`; the
    /// participant's client turns its microphone off. It may unmute itself: its
    /// `media.state` with `audio: true` lifts the hold.
    #[serde(rename = "media.muteParticipant")]
    MuteParticipant { user_id: UserId },
    /// How large the caller shows each stage video now, in device pixels: the SFU sends
    /// no larger a simulcast layer than fills a tile, and no video for a tile of 0x0 (a
    /// hidden window). A video not listed takes what the caller's bandwidth carries. Each
    /// call replaces the last; not told to anyone.
    #[serde(rename = "media.tiles")]
    Tiles { tiles: Vec<TileSize> },
}

/// One simulcast layer of a published video, as its publisher describes it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VideoLayer {
    /// Its RTP stream id (`a=rid`), e.g. `q`, `h`, `f`.
    pub rid: String,
    pub width: u32,
    pub height: u32,
    /// The bitrate it is encoded at, at most, in bit/s.
    pub max_bitrate: u64,
}

/// How large one participant's video is shown, in device pixels (`media.tiles`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TileSize {
    pub user_id: UserId,
    pub width: u32,
    pub height: u32,
}

/// The largest tile side `media.tiles` takes (an 8K screen's width, twice).
pub const MAX_TILE_SIDE: u32 = 16_384;

impl Call {
    /// The call's wire name, e.g. `stage.join`.
    pub fn name(&self) -> &'static str {
        match self {
            Call::GetAccessRequests => "stage.getAccessRequests",
            Call::RequestAccess => "stage.requestAccess",
            Call::CancelRequestAccess => "stage.cancelRequestAccess",
            Call::GrantAccess { .. } => "stage.grantAccess",
            Call::DenyAccess { .. } => "stage.denyAccess",
            Call::Join => "stage.join",
            Call::Leave => "stage.leave",
            Call::Kick { .. } => "stage.kick",
            Call::Snapshot => "meeting.snapshot",
            Call::LeaveMeeting => "meeting.leave",
            Call::EndMeeting => "meeting.end",
            Call::RemoveParticipant { .. } => "meeting.removeParticipant",
            Call::SetPreset { .. } => "meeting.setPreset",
            Call::Publish { .. } => "media.publish",
            Call::Unpublish => "media.unpublish",
            Call::Subscribe { .. } => "media.subscribe",
            Call::Unsubscribe { .. } => "media.unsubscribe",
            Call::MediaState { .. } => "media.state",
            Call::MuteParticipant { .. } => "media.muteParticipant",
            Call::Tiles { .. } => "media.tiles",
        }
    }

    /// Media calls are answered by the SFU, not the room.
    pub fn is_media(&self) -> bool {
        matches!(
            self,
            Call::Publish { .. }
                | Call::Unpublish
                | Call::Subscribe { .. }
                | Call::Unsubscribe { .. }
                | Call::MediaState { .. }
                | Call::MuteParticipant { .. }
                | Call::Tiles { .. }
        )
    }

    /// Calls the room rules on but the server carries out after storage has (the room
    /// only checks who may make them): removing a participant, changing its preset.
    pub fn needs_storage(&self) -> bool {
        matches!(
            self,
            Call::RemoveParticipant { .. } | Call::SetPreset { .. }
        )
    }
}

/// A client's request: an id chosen by the client and the call.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Request {
    pub id: u64,
    #[serde(flatten)]
    pub call: Call,
}

/// Alias kept for readability at call sites: what a client sends is a request.
pub type ClientMessage = Request;

impl Request {
    /// Parses one text frame. On failure returns the request id when it could be read (so the
    /// error reply can carry it) and a `bad_request` error saying what is wrong.
    /// The id of a request read from the start of its text alone (`{"id":N,...`, the
    /// order our clients write), for answering a frame too large to parse.
    pub fn leading_id(text: &str) -> Option<u64> {
        let head = text.get(..text.len().min(64)).unwrap_or(text);
        let rest = head.trim_start().strip_prefix('{')?.trim_start();
        let rest = rest.strip_prefix("\"id\"")?.trim_start();
        let rest = rest.strip_prefix(':')?.trim_start();
        let digits: &str = &rest[..rest
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(rest.len())];
        digits.parse().ok()
    }

    pub fn parse(text: &str) -> Result<Request, (Option<u64>, ErrorBody)> {
        let value: serde_json::Value = serde_json::from_str(text).map_err(|e| {
            (
                None,
                ErrorBody::new(ErrorCode::BadRequest, format!("not valid JSON: {e}")),
            )
        })?;
        let id = value.get("id").and_then(serde_json::Value::as_u64);
        let Some(obj) = value.as_object() else {
            return Err((
                None,
                ErrorBody::new(ErrorCode::BadRequest, "a request must be a JSON object"),
            ));
        };
        if id.is_none() {
            return Err((
                None,
                ErrorBody::new(
                    ErrorCode::BadRequest,
                    "a request needs an \"id\" (unsigned integer)",
                ),
            ));
        }
        match obj.get("call").and_then(serde_json::Value::as_str) {
            None => {
                return Err((
                    id,
                    ErrorBody::new(ErrorCode::BadRequest, "a request needs a \"call\" (string)"),
                ))
            }
            Some(name) if !KNOWN_CALLS.contains(&name) => {
                return Err((
                    id,
                    ErrorBody::new(ErrorCode::BadRequest, format!("unknown call {name:?}")),
                ))
            }
            Some(_) => {}
        }
        serde_json::from_value(value)
            .map_err(|e| (id, ErrorBody::new(ErrorCode::BadRequest, e.to_string())))
    }
}

/// Every call name a server accepts.
pub const KNOWN_CALLS: &[&str] = &[
    "stage.getAccessRequests",
    "stage.requestAccess",
    "stage.cancelRequestAccess",
    "stage.grantAccess",
    "stage.denyAccess",
    "stage.join",
    "stage.leave",
    "stage.kick",
    "meeting.snapshot",
    "meeting.leave",
    "meeting.end",
    "meeting.removeParticipant",
    "meeting.setPreset",
    "media.publish",
    "media.unpublish",
    "media.subscribe",
    "media.unsubscribe",
    "media.state",
    "media.muteParticipant",
    "media.tiles",
];

/// What a successful call returns.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum CallResult {
    /// `stage.getAccessRequests`: the queue, oldest first.
    Requests(Vec<AccessRequest>),
    /// Calls that change the caller's own status: the status it now has.
    Status { stage_status: StageStatus },
    /// `meeting.snapshot`.
    Snapshot(RoomSnapshot),
    /// `media.publish` and `media.subscribe`: the SFU's SDP answer.
    Sdp { sdp: String },
    /// Batch calls, `meeting.leave` and `meeting.end`: nothing to return (`null`).
    Done,
}

/// A participant as everyone in the meeting sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ParticipantInfo {
    pub user_id: UserId,
    pub peer_id: PeerId,
    pub name: String,
    /// The preset's name.
    pub preset: String,
    /// Omitted on the wire when `OFF_STAGE`, the status of most of a large audience: every
    /// newcomer's welcome lists the whole roster, so each byte here counts once per member.
    #[serde(default, skip_serializing_if = "is_off_stage")]
    pub stage_status: StageStatus,
    /// Set while the participant's network connection is up; a participant inside its
    /// disconnect grace period stays in the roster with `connected: false`. Omitted on the
    /// wire when true.
    #[serde(default = "connected_default", skip_serializing_if = "is_connected")]
    pub connected: bool,
}

fn is_off_stage(status: &StageStatus) -> bool {
    *status == StageStatus::OffStage
}

fn connected_default() -> bool {
    true
}

fn is_connected(connected: &bool) -> bool {
    *connected
}

/// The whole room at one sequence number.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoomSnapshot {
    /// The sequence number of the last event included in this snapshot.
    pub seq: u64,
    pub max_on_stage: u32,
    pub participants: Vec<ParticipantInfo>,
    /// The request queue, oldest first.
    pub queue: Vec<AccessRequest>,
}

/// Why a participant's stage status changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StageChangeReason {
    /// `requestAccess`: OFF -> REQUESTED.
    Requested,
    /// `requestAccess` by a participant whose preset is ALLOWED: OFF -> ACCEPTED.
    AutoAccepted,
    /// `cancelRequestAccess`: REQUESTED -> OFF.
    Cancelled,
    /// `grantAccess` on a request: REQUESTED -> ACCEPTED.
    Granted,
    /// `grantAccess` on someone who had not asked: OFF -> ACCEPTED.
    Invited,
    /// `denyAccess`: REQUESTED -> OFF.
    Denied,
    /// `join`: -> ON.
    Joined,
    /// `leave` from ON.
    Left,
    /// `leave` from ACCEPTED: an invitation declined.
    Declined,
    /// `kick`: ON/ACCEPTED -> OFF.
    Kicked,
    /// The participant left the meeting or its grace period ran out.
    Removed,
}

/// Why a participant left the roster.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LeaveReason {
    /// `meeting.leave`.
    Left,
    /// The connection dropped and did not come back within the grace period.
    TimedOut,
    /// An admin removed the participant from the meeting
    /// (`DELETE /v1/meetings/{id}/participants/{user_id}`); its token no longer works.
    Removed,
}

/// A change in the room, told to everyone in the meeting.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum RoomEvent {
    ParticipantJoined {
        participant: ParticipantInfo,
    },
    ParticipantLeft {
        user_id: UserId,
        reason: LeaveReason,
    },
    /// The participant's connection dropped (grace period running) or came back.
    ParticipantConnection {
        user_id: UserId,
        connected: bool,
    },
    StageStatusChanged {
        user_id: UserId,
        status: StageStatus,
        reason: StageChangeReason,
        /// Who caused it when it was not the participant itself (grant, deny, invite, kick).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        by: Option<UserId>,
        /// Set when the status is REQUESTED: the request's time (its place in the queue).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        requested_at: Option<UnixMillis>,
    },
    /// A host ended the meeting for everyone (`meeting.end`). The last event of the
    /// session: every connection is closed with `goodbye: meeting_ended` right after, and
    /// the roster is empty. The meeting itself stays; a later join starts a new session.
    MeetingEnded {
        by: UserId,
    },
    /// A host muted this ON_STAGE participant's microphone (`media.muteParticipant`): the
    /// SFU holds its audio until it unmutes itself, and its client turns the microphone off.
    ParticipantMuted {
        user_id: UserId,
        by: UserId,
    },
    /// The participant's preset changed (`meeting.setPreset`): what it may do from now on.
    /// Its own client takes the new preset's permissions (a new host sees the queue).
    PresetChanged {
        user_id: UserId,
        preset: Preset,
        by: UserId,
    },
}

/// A change in who publishes media, told to everyone in the meeting. Not sequenced like
/// [`RoomEvent`]s: it follows the room (only ON_STAGE participants publish) and a client
/// that missed one learns the truth from the tracks themselves.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum MediaEvent {
    /// The participant's media is flowing into the SFU (its publish was answered), or
    /// what it carries changed (`media.state`: mic muted, camera off).
    Published {
        user_id: UserId,
        audio: bool,
        video: bool,
    },
    /// The participant's tracks ended: it left the stage, was kicked or removed, or its
    /// connection dropped. The SFU has stopped forwarding them.
    Unpublished { user_id: UserId },
}

impl MediaEvent {
    /// Whose publication the event is about.
    pub fn user_id(&self) -> &UserId {
        match self {
            MediaEvent::Published { user_id, .. } | MediaEvent::Unpublished { user_id } => user_id,
        }
    }

    /// What that participant publishes once the event is applied; `None` when nothing.
    /// One reading of an event for every keeper of the set of publications.
    pub fn publication(&self) -> Option<MediaKinds> {
        match self {
            MediaEvent::Published { audio, video, .. } => Some(MediaKinds::new(*audio, *video)),
            MediaEvent::Unpublished { .. } => None,
        }
    }
}

/// The first message on a signaling connection.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Welcome {
    pub meeting_id: MeetingId,
    /// The meeting's title, as it was created (for everyone's header).
    #[serde(default)]
    pub title: String,
    pub user_id: UserId,
    pub peer_id: PeerId,
    /// True when this connection resumed a session inside its grace period.
    pub resumed: bool,
    /// The caller's own preset (its permissions).
    pub preset: Preset,
    /// How long a dropped connection keeps its place, in milliseconds.
    pub grace_ms: u64,
    pub snapshot: RoomSnapshot,
    /// Who publishes media right now, and what (so a newcomer knows without waiting for
    /// the next `published`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub publishing: Vec<PublishedMedia>,
    /// TURN servers with credentials minted for this participant (when the server has a
    /// relay configured), for networks that reach nothing but the relay. Fresh in every
    /// welcome, so a reconnect renews them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ice_servers: Vec<IceServer>,
    /// The participant's own token, when it joined with a role invite: the server made
    /// the participant for this join, and a reconnect (resume) must use this token, not
    /// the invite (which would make yet another participant).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
}

/// A STUN or TURN server and the credentials to use it (the shape of WebRTC's
/// `RTCIceServer`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IceServer {
    pub urls: Vec<String>,
    #[serde(default)]
    pub username: String,
    #[serde(default)]
    pub credential: String,
}

/// Which kinds of media something carries, allows or asks for: a publication (its mic
/// muted, its camera off), an offer, a preset. `{"audio":..,"video":..}` on the wire.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct MediaKinds {
    pub audio: bool,
    pub video: bool,
}

impl MediaKinds {
    pub const NONE: MediaKinds = MediaKinds {
        audio: false,
        video: false,
    };
    pub const BOTH: MediaKinds = MediaKinds {
        audio: true,
        video: true,
    };

    pub fn new(audio: bool, video: bool) -> Self {
        Self { audio, video }
    }

    pub fn is_none(self) -> bool {
        !self.audio && !self.video
    }

    /// Every kind in `self` is in `allowed`.
    pub fn within(self, allowed: MediaKinds) -> bool {
        (!self.audio || allowed.audio) && (!self.video || allowed.video)
    }
}

/// One participant's live publication: what it carries (mic muted, camera off).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PublishedMedia {
    pub user_id: UserId,
    pub audio: bool,
    pub video: bool,
}

/// Why the server is closing a connection on purpose.
///
/// `shutdown` and `too_slow` invite a reconnect (it resumes); every other reason is final:
/// a client must not reconnect with the same token.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[derive(strum::IntoStaticStr, strum::Display, strum::VariantArray)]
#[strum(serialize_all = "snake_case")]
pub enum CloseReason {
    /// The participant left the meeting (`meeting.leave`).
    Left,
    /// A newer connection with the same token (the same participant, e.g. another window)
    /// took over. That session is live: fighting it back would only knock it off again.
    Replaced,
    /// The server is shutting down; reconnecting later resumes.
    Shutdown,
    /// The client was too slow reading events; reconnecting resumes.
    TooSlow,
    /// The token was superseded: the participant was issued a new one (re-added with the
    /// same `custom_participant_id`). This token is refused from now on (401
    /// `token_revoked`); the participant keeps its place for the grace period, for
    /// whoever holds the new token.
    Revoked,
    /// An admin removed the participant from the meeting; it has left the room and its
    /// token is refused from now on.
    Removed,
    /// An admin deleted the meeting; every token of it is refused from now on.
    MeetingDeleted,
    /// A host ended the meeting for everyone (`meeting.end`, told first as the
    /// `meeting_ended` event). Final: reconnecting on its own would only start a new
    /// session of the meeting nobody asked for. The token still works for a later join.
    MeetingEnded,
    /// The client kept sending frames the server refuses (malformed, oversized, binary,
    /// unknown calls, or past the rate limit after being told so). Final: reconnecting
    /// would only repeat it.
    BadInput,
}

impl CloseReason {
    /// Whether the session is over for good: the client must not reconnect (only
    /// `shutdown` and `too_slow` invite a reconnect that resumes).
    pub fn is_final(self) -> bool {
        !matches!(self, CloseReason::Shutdown | CloseReason::TooSlow)
    }

    /// The wire name, e.g. `meeting_deleted`.
    pub fn as_str(self) -> &'static str {
        self.into()
    }
}

/// Everything the server sends.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ServerMessage {
    Welcome(Box<Welcome>),
    Reply {
        id: u64,
        ok: bool,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        result: Option<CallResult>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        error: Option<ErrorBody>,
    },
    Event {
        seq: u64,
        event: RoomEvent,
    },
    /// An input that could not be tied to a request id (e.g. not JSON at all).
    Error {
        error: ErrorBody,
    },
    /// Who publishes media changed.
    Media {
        event: MediaEvent,
    },
    /// To a publisher of simulcast video: the layers (by RID) some viewer takes or is
    /// about to take. The others may be paused (not encoded) until they are named again;
    /// the lowest is always named. Sent whenever the set changes.
    Layers {
        rids: Vec<String>,
    },
    /// The server is about to close the connection on purpose.
    Goodbye {
        reason: CloseReason,
    },
}

impl ServerMessage {
    pub fn reply(id: u64, outcome: Result<CallResult, ErrorBody>) -> Self {
        match outcome {
            Ok(result) => ServerMessage::Reply {
                id,
                ok: true,
                result: Some(result),
                error: None,
            },
            Err(error) => ServerMessage::Reply {
                id,
                ok: false,
                result: None,
                error: Some(error),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use strum::VariantArray;

    /// `as_str` and `Display` (strum) spell every variant as its JSON (serde) does.
    fn spelt_as_on_the_wire<T: serde::Serialize + std::fmt::Display>(
        all: &[T],
        as_str: fn(&T) -> &'static str,
    ) {
        for v in all {
            let wire = serde_json::to_value(v).expect("serializes");
            assert_eq!(wire, serde_json::json!(as_str(v)));
            assert_eq!(wire, serde_json::json!(v.to_string()));
        }
    }

    #[test]
    fn wire_names_are_one_spelling() {
        spelt_as_on_the_wire(crate::ErrorCode::VARIANTS, |c| c.as_str());
        spelt_as_on_the_wire(CloseReason::VARIANTS, |c| c.as_str());
        spelt_as_on_the_wire(crate::StageStatus::VARIANTS, |c| c.as_str());
    }

    #[test]
    fn request_wire_shape_matches_the_bot_contract() {
        let r = Request::parse(r#"{"id":2,"call":"stage.grantAccess","user_ids":["u1"]}"#)
            .expect("parses");
        assert_eq!(
            r,
            Request {
                id: 2,
                call: Call::GrantAccess {
                    user_ids: vec![UserId::new("u1")]
                }
            }
        );
        let back = serde_json::to_value(&r).expect("serializes");
        assert_eq!(
            back,
            serde_json::json!({"id":2,"call":"stage.grantAccess","user_ids":["u1"]})
        );
    }

    #[test]
    fn every_known_call_name_parses() {
        for name in KNOWN_CALLS {
            let text = format!(
                r#"{{"id":1,"call":"{name}","user_ids":[],"user_id":"u","sdp":"v=0","audio":true,"video":false,"preset":"host","tiles":[]}}"#
            );
            let r = Request::parse(&text).expect(name);
            assert_eq!(r.call.name(), *name);
        }
    }

    #[test]
    fn bad_frames_are_bad_requests_with_id_when_readable() {
        assert_eq!(
            Request::leading_id(r#"{"id":42,"call":"x","pad":"..."#),
            Some(42)
        );
        assert_eq!(Request::leading_id(r#"  { "id" : 7 ,"call""#), Some(7));
        assert_eq!(Request::leading_id(r#"{"call":"x","id":3}"#), None);
        assert_eq!(Request::leading_id(r#"{"id":"3"}"#), None);
        assert_eq!(Request::leading_id("é{\"id\":1}"), None);
        assert_eq!(Request::leading_id(""), None);
        let (id, e) = Request::parse("not json").unwrap_err();
        assert_eq!((id, e.code), (None, ErrorCode::BadRequest));
        let (id, e) = Request::parse(r#"{"id":7,"call":"stage.dance"}"#).unwrap_err();
        assert_eq!((id, e.code), (Some(7), ErrorCode::BadRequest));
        let (id, e) = Request::parse(r#"{"id":8,"call":"stage.kick"}"#).unwrap_err();
        assert_eq!((id, e.code), (Some(8), ErrorCode::BadRequest));
        let (id, e) = Request::parse(r#"{"call":"stage.join"}"#).unwrap_err();
        assert_eq!((id, e.code), (None, ErrorCode::BadRequest));
        let (id, _) = Request::parse("[1,2]").unwrap_err();
        assert_eq!(id, None);
    }

    #[test]
    fn close_reasons_are_snake_case_and_only_two_invite_a_reconnect() {
        let all = [
            CloseReason::Left,
            CloseReason::Replaced,
            CloseReason::Shutdown,
            CloseReason::TooSlow,
            CloseReason::Revoked,
            CloseReason::Removed,
            CloseReason::MeetingDeleted,
            CloseReason::MeetingEnded,
            CloseReason::BadInput,
        ];
        for reason in all {
            let wire = serde_json::to_value(reason).unwrap();
            assert_eq!(wire, serde_json::json!(reason.as_str()));
            let back: CloseReason = serde_json::from_value(wire).unwrap();
            assert_eq!(back, reason);
        }
        let reconnect: Vec<_> = all.into_iter().filter(|r| !r.is_final()).collect();
        assert_eq!(reconnect, [CloseReason::Shutdown, CloseReason::TooSlow]);
        assert_eq!(
            serde_json::to_value(ServerMessage::Goodbye {
                reason: CloseReason::MeetingDeleted
            })
            .unwrap(),
            serde_json::json!({"type":"goodbye","reason":"meeting_deleted"})
        );
        assert_eq!(
            serde_json::to_value(ServerMessage::Event {
                seq: 9,
                event: RoomEvent::MeetingEnded {
                    by: UserId::new("h")
                }
            })
            .unwrap(),
            serde_json::json!({"type":"event","seq":9,"event":{"kind":"meeting_ended","by":"h"}})
        );
        assert_eq!(
            serde_json::to_value(LeaveReason::Removed).unwrap(),
            serde_json::json!("removed")
        );
    }

    #[test]
    fn preset_accepts_legacy_alias() {
        let p: Preset = serde_json::from_str(
            r#"{"name":"mod","stage_access":"CAN_REQUEST","accept_present_requests":true}"#,
        )
        .expect("parses");
        assert!(p.accept_stage_requests);
        assert!(p.stage_enabled);
    }

    #[test]
    fn status_and_error_wire_names() {
        assert_eq!(
            serde_json::to_string(&StageStatus::RequestedToJoinStage).unwrap(),
            "\"REQUESTED_TO_JOIN_STAGE\""
        );
        assert_eq!(
            serde_json::to_string(&ErrorCode::StageFull).unwrap(),
            "\"stage_full\""
        );
        let reply = ServerMessage::reply(3, Err(ErrorBody::new(ErrorCode::PermissionDenied, "no")));
        assert_eq!(
            serde_json::to_value(&reply).unwrap(),
            serde_json::json!({"type":"reply","id":3,"ok":false,
                "error":{"code":"permission_denied","message":"no"}})
        );
    }
}
