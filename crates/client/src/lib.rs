//! # onstage-client — the Onstage SDK
//!
//! What the desktop app and the `onstage bot` use to take part in a meeting: join with a
//! participant token, read the room, run the stage, receive events. The API mirrors
//! RealtimeKit's web-core (`meeting.self`, `meeting.participants`, `meeting.stage`).
//!
//! ```no_run
//! # async fn demo() -> Result<(), onstage_client::ClientError> {
//! use onstage_client::{Meeting, MeetingEvent};
//!
//! let meeting = Meeting::join("http://127.0.0.1:7800", "<participant token>").await?;
//! let mut events = meeting.events();
//! meeting.stage().request_access().await?;          // OFF -> REQUESTED
//! while let Some(event) = events.recv().await {
//!     if let MeetingEvent::StageRequestApproved { .. } = event {
//!         meeting.stage().join().await?;            // ACCEPTED -> ON
//!     }
//! }
//! # Ok(()) }
//! ```
//!
//! `https://` servers are reached over `wss://`. A self-signed one is pinned by its
//! certificate's fingerprint: [`Meeting::join_invite`] with an invite link that carries
//! `fp=`, or [`JoinOptions::fingerprint`]. A certificate that does not match is
//! [`ClientError::Certificate`] (code `untrusted_server`), naming both fingerprints.
//!
//! A role link (one link for a whole meeting and preset, `invite=` in place of `token=`)
//! joins with a name of the guest's own: [`Meeting::join_link`] (any link) or
//! [`Meeting::join_guest`]. The server makes a participant for the join and its welcome
//! carries that participant's token, which every reconnect uses ([`Meeting::token`]), so
//! the guest resumes as itself and never turns into a second participant.
//!
//! ## How it works
//! [`Meeting::join`] opens the WebSocket at `/v1/signal`, waits for the server's welcome
//! (ids, own preset, grace period, a snapshot of the room) and hands the socket to a
//! background task. The task keeps a [`mirror::Mirror`] of the room, applies the server's
//! sequenced room events to it and publishes the [`MeetingEvent`]s derived from them to
//! every [`EventStream`]. Calls go through the same task: each gets an id and exactly one
//! reply, or fails after a timeout.
//!
//! If the connection drops without the server saying goodbye for good, the task emits
//! `connectionStateUpdate` `reconnecting` and retries (50 ms, doubling to 1 s) for as long
//! as the server keeps the session (the welcome's grace period). Back in, it replaces the
//! mirror from the new welcome, emits events for what changed and `connectionStateUpdate`
//! `connected` (`resumed: true` when the stage status and queue place were kept). Calls
//! made meanwhile fail with `connection_lost`. Only `goodbye: shutdown` and `too_slow`
//! lead to a reconnect.
//!
//! The final goodbyes stop it for good, without a single retry, and say why: the last
//! `connectionStateUpdate` `disconnected` carries `reason`, [`Meeting::end_reason`] keeps
//! it, and calls fail with [`ClientError::Ended`]:
//! - `left`: this participant left (`meeting.leave`);
//! - `replaced`: the same token connected again elsewhere (another window or device).
//!   That session is live; reconnecting would knock it off and be knocked off in turn;
//! - `revoked`: a newer token was issued for this participant; this one is refused from now
//!   on (code `token_revoked`, also when a reconnect is refused so, or when joining with
//!   it: [`ClientError::TokenRevoked`]);
//! - `removed`: an admin removed the participant from the meeting;
//! - `meeting_deleted`: an admin deleted the meeting;
//! - `meeting_ended`: a host ended the meeting for everyone ([`Meeting::end`]). The SDK
//!   stops at the `meeting_ended` event already ([`MeetingEvent::MeetingEnded`], then the
//!   final `disconnected`), so a lost goodbye cannot make it reconnect into a new session;
//! - `bad_input`: the server kept refusing this client's frames (malformed, oversized, or
//!   past the rate limit after being told so); reconnecting would only repeat it.
//!
//! ## Modules
//! - [`meeting`]: [`Meeting`], [`Stage`], [`EventStream`], [`JoinOptions`] — the front door.
//! - [`event`]: [`MeetingEvent`], [`ConnectionState`] — what subscribers receive.
//! - [`mirror`]: the pure room copy and the event-derivation rules (unit-tested).
//! - [`error`]: [`ClientError`] and its stable codes.
//! - [`link`]: [`InviteLink`] (`onstage://join?...`) and [`Fingerprint`].
//! - [`admin`]: [`AdminClient`], the admin REST API typed with `proto::rest`'s bodies —
//!   what the `onstage` admin commands, the desktop app and the tests make meetings and
//!   participants with.
//! - [`tls`]: how `https`/`wss` servers are trusted: the system's roots, or exactly the
//!   certificate a fingerprint pins.
//! - [`media`]: [`StageMedia`], the stage's media: what should run now is a pure plan
//!   (`media::plan`) from the stage status and the controls; the publisher, the captures,
//!   the receive path and the speaker each live in a file of their own.
//! - [`rtc`]: the WebRTC peers over webrtc-rs: a publisher and a subscriber per remote
//!   publisher, their ICE and DTLS setup, H.264 and Opus on the wire, bandwidth estimation.
//! - `connection` (private): the socket task, reconnect and resume.

pub mod admin;
mod connection;
pub mod error;
pub mod event;
pub mod link;
pub mod media;
pub mod meeting;
pub mod mirror;
pub mod rtc;
pub mod tls;

pub use admin::AdminClient;
pub use error::ClientError;
pub use event::{ConnectionState, MeetingEvent};
pub use link::{Fingerprint, InviteLink, LinkError};
pub use media::{
    AudioLevel, Controls, Device, DeviceChoice, MediaConfig, MediaProblem, MediaStats, Origin,
    Picture, Reception, Sources, StageMedia,
};
pub use meeting::{EventStream, JoinOptions, Meeting, Participant, Stage};
pub use tls::CertificateError;

pub use onstage_proto as proto;
pub use onstage_proto::{
    AccessRequest, CloseReason, ErrorCode, PeerId, Preset, StageStatus, UserId,
};
