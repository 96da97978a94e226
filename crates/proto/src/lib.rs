//! # onstage-proto — the wire types of Onstage
//!
//! Everything that crosses a process boundary is defined here, and only here: ids, presets,
//! stage status, the signaling messages exchanged over the WebSocket at `/v1/signal`, the
//! room events, the admin REST API's bodies and the stable error codes. The crate is
//! `serde` only — no I/O, no async — so the server, the SDK, the `onstage` command and the
//! desktop app all speak exactly the same language.
//!
//! Layout:
//! - [`ids`]: `MeetingId`, `UserId`, `PeerId`.
//! - [`stage`]: `StageStatus`, `StageAccess`, `Preset`, `AccessRequest`.
//! - [`error`]: `ErrorCode` (the stable codes) and `ErrorBody`.
//! - [`signal`]: `Call` (what a client asks), `ClientMessage`, `ServerMessage`, `RoomEvent`,
//!   `CloseReason` (the goodbyes), `MediaEvent` and `MediaKinds` (what a publication carries).
//! - [`link`]: `InviteLink` (`onstage://join?...`) and certificate `Fingerprint`s.
//! - [`h264`]: where a keyframe starts in an H.264 RTP payload (RFC 6184), which the SFU
//!   switches layers at and a receiver resumes at.
//! - [`rest`]: the admin REST API's bodies: the `Envelope` every answer comes in,
//!   `CreateMeeting` and `Meeting`, `AddParticipant`, `Participant` and `AddedParticipant`
//!   (with its token and invite link).

pub mod error;
pub mod h264;
pub mod ids;
pub mod link;
pub mod rest;
pub mod signal;
pub mod stage;

pub use error::{ErrorBody, ErrorCode};
pub use ids::{MeetingId, PeerId, UserId};
pub use link::{Fingerprint, FingerprintError, InviteLink, LinkError};
pub use signal::{
    Call, CallResult, ClientMessage, CloseReason, IceServer, LeaveReason, MediaEvent, MediaKinds,
    ParticipantInfo, PublishedMedia, Request, RoomEvent, RoomSnapshot, ServerMessage,
    StageChangeReason, TileSize, VideoLayer, Welcome, MAX_TILE_SIDE,
};
pub use stage::{AccessRequest, Preset, StageAccess, StageStatus};

/// Milliseconds since the Unix epoch. Every timestamp on the wire uses it.
pub type UnixMillis = u64;

/// Largest signaling frame the server accepts, in bytes. Larger frames get `bad_request`.
pub const MAX_SIGNAL_FRAME_BYTES: usize = 16 * 1024;

/// Largest number of user ids in one batch call (`grantAccess`, `denyAccess`, `kick`).
pub const MAX_BATCH_IDS: usize = 1000;
