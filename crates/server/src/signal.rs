//! The WebSocket at `/v1/signal`: authenticate, seat the participant in its room, then
//! relay requests to the room and the room's messages to the socket.
//!
//! One task per connection does both directions in a single `select!`, so a connection
//! costs one task, one bounded queue and the socket's buffers.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::rejection::QueryRejection;
use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::extract::ws::{Message, Utf8Bytes, WebSocket, WebSocketUpgrade};
use axum::extract::{Query, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use futures_util::{SinkExt, StreamExt};
use onstage_proto::{
    CloseReason, ErrorCode, MeetingId, Request, ServerMessage, UserId, MAX_SIGNAL_FRAME_BYTES,
};
use onstage_room::{Member, RoomConfig};
use tokio::sync::mpsc;

use crate::error::ApiError;
use crate::limits::TokenBucket;
use crate::rooms::{encode, error_reply, next_conn_id, now_ms, ConnHandle, Outbound, Personal};
use crate::server::AppState;
use crate::storage::{JoinInvite, MemberRecord};

/// Frames beyond this close the offending connection at once (below it, frames over
/// [`MAX_SIGNAL_FRAME_BYTES`] get `bad_request` and count as bad input).
///
/// A small multiple of the protocol's limit: frames a little over it (an SDP offer that grew
/// too large) are still read and answered with their id, so the caller learns why, while
/// nothing larger is ever legitimate. The WebSocket layer checks a frame's length in its
/// header, so a bigger frame is refused before its payload is read, and a connection never
/// buffers more than this (it was 1 MiB: one socket made the server read 4.9 GB of junk
/// in 10 s).
pub const HARD_FRAME_LIMIT: usize = 4 * MAX_SIGNAL_FRAME_BYTES;

/// The id of a refused frame, for its reply: from the frame's start, or, for a frame small
/// enough to parse, wherever it stands.
pub fn request_id(text: &str) -> Option<u64> {
    #[derive(serde::Deserialize)]
    struct IdOnly {
        id: Option<u64>,
    }
    Request::leading_id(text).or_else(|| {
        (text.len() <= MAX_SIGNAL_FRAME_BYTES)
            .then(|| serde_json::from_str::<IdOnly>(text).ok()?.id)
            .flatten()
    })
}

/// `GET /v1/signal?token=...` (or `Authorization: Bearer`). Credentials are checked before
/// anything else, so every refusal is our JSON error shape: 401 for the token, 400 for a
/// request that is not a WebSocket upgrade, 503 while shutting down.
pub async fn handler(
    State(app): State<Arc<AppState>>,
    query: Result<Query<HashMap<String, String>>, QueryRejection>,
    headers: HeaderMap,
    ws: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Response {
    let query = query.map(|Query(q)| q).unwrap_or_default();
    let token = query
        .get("token")
        .map(String::as_str)
        .filter(|t| !t.is_empty())
        .or_else(|| crate::auth::bearer(&headers));
    let Some(token) = token else {
        return ApiError::unauthorized("missing token (?token= or Authorization: Bearer)")
            .into_response();
    };
    // What would stop the upgrade once the token checks out; a join with an invite makes
    // its participant only when nothing does.
    let not_ready = match &ws {
        Err(rejection) => Some(ApiError::bad_request(format!(
            "/v1/signal expects a WebSocket upgrade: {}",
            rejection.body_text()
        ))),
        Ok(_) if app.stopping() => Some(ApiError::unavailable("the server is shutting down")),
        Ok(_) => None,
    };
    // Read before the check: a revocation after it is caught once seated (`recheck`).
    let revocations = app.rooms.revocations();
    let (record, welcome_token) =
        match seat_credentials(&app, token, query.get("name"), not_ready.clone()).await {
            Ok(seat) => seat,
            Err(e) => return e.into_response(),
        };
    let ws = match (ws, not_ready) {
        (Ok(ws), None) => ws,
        (_, Some(refused)) => return refused.into_response(),
        (Err(rejection), None) => {
            return ApiError::bad_request(rejection.body_text()).into_response()
        }
    };
    let generation = record.participant.token_generation;
    let Some(preset) = record.preset else {
        return ApiError::unauthorized(format!(
            "the participant's preset {:?} no longer exists",
            record.participant.preset_name
        ))
        .into_response();
    };
    let member = Member {
        user_id: record.participant.id.clone(),
        name: record.participant.name.clone(),
        preset,
    };
    let meeting = record.meeting.id.clone();
    let max_on_stage = record.meeting.max_on_stage;
    let title = record.meeting.title.clone();
    ws.max_message_size(HARD_FRAME_LIMIT)
        .max_frame_size(HARD_FRAME_LIMIT)
        .read_buffer_size(4 * 1024)
        .write_buffer_size(0)
        .on_upgrade(move |socket| async move {
            Connection::new(app, meeting, member.user_id.clone(), generation)
                .run(
                    socket,
                    member,
                    &title,
                    max_on_stage,
                    revocations,
                    welcome_token,
                )
                .await
        })
}

/// The participant a token seats, and for a role invite the personal token of the
/// participant made for this join (for the welcome).
///
/// A participant token must be of the participant's current generation. An invite token
/// (see [`crate::auth::InviteClaims`]) needs `name`, the guest's display name, checked as
/// the admin API checks names; each join with it makes a new participant of the invite's
/// preset. A token that is neither is refused as a participant token would be, so an
/// expired personal token still says `token_expired`.
async fn seat_credentials(
    app: &AppState,
    token: &str,
    name: Option<&String>,
    not_ready: Option<ApiError>,
) -> Result<(MemberRecord, Option<String>), ApiError> {
    let claims = match app.auth.verify(token) {
        Ok(claims) => claims,
        Err(refused) => match app.auth.verify_invite(token) {
            Ok(invite) => {
                let (record, token) = join_invite(app, invite, name, not_ready).await?;
                return Ok((record, Some(token)));
            }
            Err(_) => return Err(refused),
        },
    };
    let record = app
        .storage
        .load_member(claims.meeting_id(), claims.user_id())
        .await?
        .ok_or_else(|| {
            ApiError::unauthorized("the token's meeting or participant no longer exists")
        })?;
    if claims.generation != record.participant.token_generation {
        return Err(ApiError::token_revoked(
            "this token was revoked: the participant has been issued a newer one",
        ));
    }
    Ok((record, None))
}

/// A guest joining with a role invite: the new participant and its personal token.
///
/// Checked in the order a caller can fix things: the invite (401), the name (400), then
/// the request itself (`not_ready`); only then is the participant made, so a refused join
/// leaves nothing behind.
async fn join_invite(
    app: &AppState,
    invite: crate::auth::InviteClaims,
    name: Option<&String>,
    not_ready: Option<ApiError>,
) -> Result<(MemberRecord, String), ApiError> {
    let meeting = invite.meeting_id();
    // A look first (no name: nothing is made), so a dead invite says so whatever the name.
    let looked = app
        .storage
        .join_invite(
            meeting.clone(),
            invite.inv.clone(),
            None,
            app.config.max_participants,
            now_ms(),
        )
        .await?;
    if !matches!(looked, JoinInvite::Valid) {
        return Err(invite_refusal(looked));
    }
    let name = name.ok_or_else(|| {
        ApiError::bad_request("joining with an invite needs the guest's name (?name=)")
    })?;
    let name = crate::rest::clean_text("name", name, crate::rest::MAX_NAME_CHARS)?;
    if let Some(refused) = not_ready {
        return Err(refused);
    }
    // Checked again inside the transaction that makes the participant: a revocation in
    // between wins.
    let record = match app
        .storage
        .join_invite(
            meeting.clone(),
            invite.inv.clone(),
            Some(name),
            app.config.max_participants,
            now_ms(),
        )
        .await?
    {
        JoinInvite::Joined(record) => record,
        other => return Err(invite_refusal(other)),
    };
    let token = app.auth.mint(
        &meeting,
        &record.participant.id,
        record.participant.token_generation,
        now_ms(),
    )?;
    tracing::info!(meeting = %meeting, invite = %invite.inv, user = %record.participant.id, "a guest joined with an invite");
    Ok((record, token))
}

/// Why an invite lets nobody in.
fn invite_refusal(outcome: JoinInvite) -> ApiError {
    match outcome {
        JoinInvite::Revoked => ApiError::token_revoked("this invite link was revoked"),
        JoinInvite::NoPreset(preset) => {
            ApiError::unauthorized(format!("the invite's preset {preset:?} no longer exists"))
        }
        JoinInvite::Full => ApiError::meeting_full(
            "the meeting holds as many participants as it may: the invite lets nobody new in",
        ),
        JoinInvite::NoInvite | JoinInvite::Valid | JoinInvite::Joined(_) => {
            ApiError::unauthorized("the invite or its meeting no longer exists")
        }
    }
}

/// A client asks for a snapshot after a gap in the event sequence: rarely. Four at once,
/// then one every 5 s.
const SNAPSHOT_BURST: f64 = 4.0;
const SNAPSHOT_PER_SEC: f64 = 0.2;

/// The per-connection limits on what a client sends: frames per second, bytes per second,
/// and bad frames in a row.
#[derive(Debug)]
struct Limits {
    frames: TokenBucket,
    bytes: TokenBucket,
    /// `meeting.snapshot` calls: each answer is the whole room (~30 KB at 300 people)
    /// for a request of a few bytes, so they have a bucket of their own.
    snapshots: TokenBucket,
    /// Bad or over-limit frames since the last good one.
    strikes: u32,
    /// This many strikes in a row close the connection (`goodbye: bad_input`).
    close_after: u32,
    /// Whether the current run of over-limit frames has been told `rate_limited` (frames
    /// without a leading id are told only once a run).
    told_limited: bool,
}

impl Limits {
    fn new(config: &crate::ServerConfig) -> Self {
        let now = Instant::now();
        Self {
            frames: TokenBucket::new(
                f64::from(config.rate_limit_burst),
                config.rate_limit_per_sec,
                now,
            ),
            bytes: TokenBucket::new(
                config.rate_limit_bytes_burst as f64,
                config.rate_limit_bytes_per_sec as f64,
                now,
            ),
            snapshots: TokenBucket::new(SNAPSHOT_BURST, SNAPSHOT_PER_SEC, now),
            strikes: 0,
            close_after: config.bad_frames_before_close.max(1),
            told_limited: false,
        }
    }

    /// Takes one frame of `len` bytes from both buckets, or from neither.
    fn admit(&mut self, len: usize) -> bool {
        let now = Instant::now();
        self.frames.refill(now);
        self.bytes.refill(now);
        let len = len as f64;
        if self.frames.allows(1.0) && self.bytes.allows(len) {
            self.frames.spend(1.0);
            self.bytes.spend(len);
            true
        } else {
            false
        }
    }

    /// Takes a snapshot's token, if there is one.
    fn admit_snapshot(&mut self) -> bool {
        self.snapshots.refill(Instant::now());
        let allowed = self.snapshots.allows(1.0);
        if allowed {
            self.snapshots.spend(1.0);
        }
        allowed
    }

    /// Counts a bad or over-limit frame; true when that was one too many.
    fn strike(&mut self) -> bool {
        self.strikes = self.strikes.saturating_add(1);
        self.strikes >= self.close_after
    }
}

/// What becomes of one incoming frame.
enum Verdict {
    /// Nothing to send back now (a control frame, a call the room answers, or an
    /// over-limit frame after the first of its run).
    Quiet,
    /// Answer at once.
    Reply(Utf8Bytes),
    /// Enough bad input: say `goodbye: bad_input` and close.
    Close,
}

struct Connection {
    app: Arc<AppState>,
    meeting: MeetingId,
    user: UserId,
    id: u64,
    /// The token generation it authenticated with.
    generation: u64,
}

impl Connection {
    fn new(app: Arc<AppState>, meeting: MeetingId, user: UserId, generation: u64) -> Self {
        Self {
            app,
            meeting,
            user,
            id: next_conn_id(),
            generation,
        }
    }

    async fn run(
        self,
        socket: WebSocket,
        member: Member,
        title: &str,
        max_on_stage: u32,
        revocations: u64,
        welcome_token: Option<String>,
    ) {
        let metrics = self.app.metrics.clone();
        metrics.connections.inc();
        // Shutdown waits until every connection has dropped its clone.
        let _alive = self.app.alive.clone();
        let (tx, mut rx) = mpsc::channel(self.app.config.outbound_queue);
        let mut shutdown = self.app.shutdown.clone();
        let (mut sink, mut stream) = socket.split();
        let ice_servers = self
            .app
            .config
            .turn
            .iter()
            .map(|turn| turn.credentials(&self.user, std::time::SystemTime::now()))
            .collect();
        self.app
            .rooms
            .connect(
                &self.meeting,
                title,
                RoomConfig {
                    max_on_stage,
                    grace_ms: self.app.config.grace_ms(),
                    budget: self.app.config.broadcast_budget(),
                },
                member,
                Personal {
                    ice_servers,
                    token: welcome_token,
                },
                ConnHandle {
                    id: self.id,
                    tx,
                    generation: self.generation,
                },
            )
            .await;
        self.app
            .rooms
            .recheck(
                &self.app.storage,
                revocations,
                &self.meeting,
                &self.user,
                self.generation,
            )
            .await;
        tracing::debug!(meeting = %self.meeting, user = %self.user, conn = self.id, "connected");

        let mut limits = Limits::new(&self.app.config);
        let mut ping = tokio::time::interval(self.app.config.ping_interval);
        ping.tick().await;
        let idle_timeout = self.app.config.idle_timeout;
        let mut last_heard = Instant::now();
        let mut goodbye: Option<CloseReason> = None;

        loop {
            tokio::select! {
                out = rx.recv() => match out {
                    Some(Outbound::Text(text)) => {
                        if sink.send(Message::Text(text)).await.is_err() { break; }
                    }
                    Some(Outbound::Goodbye(reason)) => { goodbye = Some(reason); break; }
                    Some(Outbound::Close) => {
                        let _ = tokio::time::timeout(Duration::from_secs(1), sink.close()).await;
                        break;
                    }
                    // The room let go of us: it is shutting down, or we did not keep up
                    // with the events.
                    None => {
                        goodbye = Some(if self.app.stopping() {
                            CloseReason::Shutdown
                        } else {
                            CloseReason::TooSlow
                        });
                        break;
                    }
                },
                frame = stream.next() => {
                    let frame = match frame {
                        Some(Ok(frame)) => frame,
                        Some(Err(e)) => {
                            if is_bad_input(e) {
                                // Over the hard cap, or not WebSocket at all: nothing a
                                // client of ours sends.
                                tracing::info!(meeting = %self.meeting, user = %self.user, conn = self.id, "closing a connection that sent a frame over the hard cap or broke the protocol");
                                metrics.closed_bad_input.inc();
                                goodbye = Some(CloseReason::BadInput);
                            }
                            break;
                        }
                        None => break,
                    };
                    last_heard = Instant::now();
                    match self.on_frame(frame, &mut limits).await {
                        Verdict::Quiet => {}
                        Verdict::Reply(reply) => {
                            if sink.send(Message::Text(reply)).await.is_err() { break; }
                        }
                        Verdict::Close => {
                            tracing::info!(meeting = %self.meeting, user = %self.user, conn = self.id, strikes = limits.strikes, "closing a connection that keeps sending bad or over-limit frames");
                            metrics.closed_bad_input.inc();
                            goodbye = Some(CloseReason::BadInput);
                            break;
                        }
                    }
                },
                _ = ping.tick() => {
                    if last_heard.elapsed() > idle_timeout {
                        tracing::debug!(user = %self.user, "idle connection dropped");
                        break;
                    }
                    if sink.send(Message::Ping(Default::default())).await.is_err() { break; }
                },
                _ = async { shutdown.wait_for(|stop| *stop).await.map(|_| ()) } => { goodbye = Some(CloseReason::Shutdown); break; }
            }
        }

        if let Some(reason) = goodbye {
            let bye = encode(&ServerMessage::Goodbye { reason });
            let _ = tokio::time::timeout(Duration::from_secs(1), async {
                let _ = sink.send(Message::Text(bye)).await;
                let _ = sink.close().await;
            })
            .await;
        }
        // The room ignores this when the connection was replaced or left on purpose.
        self.app
            .rooms
            .disconnect(&self.meeting, self.user.clone(), self.id)
            .await;
        metrics.connections.dec();
        tracing::debug!(meeting = %self.meeting, user = %self.user, conn = self.id, "disconnected");
    }

    /// Handles one incoming frame: what to send back at once, if anything.
    async fn on_frame(&self, frame: Message, limits: &mut Limits) -> Verdict {
        let len = match &frame {
            Message::Text(t) => t.len(),
            Message::Binary(b) => b.len(),
            Message::Ping(p) | Message::Pong(p) => p.len(),
            Message::Close(_) => return Verdict::Quiet,
        };
        // Every frame counts against both buckets, junk and pings included: checking size
        // and syntax first let a client send (and be answered for) unlimited bad frames.
        if !limits.admit(len) {
            self.app.metrics.rate_limited_frames.inc();
            if limits.strike() {
                return Verdict::Close;
            }
            // A call whose id can be read is answered, so its caller is not left waiting
            // for its timeout; at most a run's worth of strikes are, before the close.
            // Frames without a readable id are told once a run, then dropped: answering
            // junk costs as much as the junk itself.
            let id = match &frame {
                Message::Text(t) => request_id(t.as_str()),
                _ => None,
            };
            if std::mem::replace(&mut limits.told_limited, true) && id.is_none() {
                return Verdict::Quiet;
            }
            return Verdict::Reply(error_reply(
                id,
                ErrorCode::RateLimited,
                "too many frames or bytes; slow down (the connection closes if they keep \
                 coming)",
            ));
        }
        limits.told_limited = false;
        let text = match frame {
            Message::Text(text) => text,
            Message::Binary(_) => {
                return self.bad(
                    limits,
                    None,
                    "binary frames are not part of the protocol; send JSON text".into(),
                )
            }
            _ => return Verdict::Quiet,
        };
        if text.len() > MAX_SIGNAL_FRAME_BYTES {
            // Answered with its id when the frame's start names it, so a caller waiting
            // for that reply is not left to its timeout.
            return self.bad(
                limits,
                Request::leading_id(text.as_str()),
                format!(
                    "frame of {} bytes exceeds the {MAX_SIGNAL_FRAME_BYTES}-byte limit",
                    text.len()
                ),
            );
        }
        let request = match Request::parse(text.as_str()) {
            Ok(r) => r,
            Err((id, error)) => return self.bad(limits, id, error.message),
        };
        if matches!(request.call, onstage_proto::Call::Snapshot) && !limits.admit_snapshot() {
            if limits.strike() {
                return Verdict::Close;
            }
            return Verdict::Reply(error_reply(
                Some(request.id),
                ErrorCode::RateLimited,
                "too many meeting.snapshot calls; one every 5 s (events keep it current)",
            ));
        }
        limits.strikes = 0;
        let accepted = self
            .app
            .rooms
            .call(
                &self.meeting,
                self.user.clone(),
                self.id,
                request.id,
                request.call,
            )
            .await;
        if accepted {
            Verdict::Quiet
        } else {
            Verdict::Reply(error_reply(
                Some(request.id),
                ErrorCode::Internal,
                "the meeting is not live on this server",
            ))
        }
    }

    /// A frame refused as `bad_request` (binary, oversized, unparsable, unknown call): the
    /// reply, or the close when it is one too many in a row.
    fn bad(&self, limits: &mut Limits, id: Option<u64>, message: String) -> Verdict {
        self.app.metrics.bad_frames.inc();
        if limits.strike() {
            return Verdict::Close;
        }
        Verdict::Reply(error_reply(id, ErrorCode::BadRequest, message))
    }
}

/// A read error that is the client's doing (a frame over the hard cap, a broken frame,
/// text that is not UTF-8), as opposed to the network going away (an I/O error, or a
/// connection that ended without a close frame).
fn is_bad_input(error: axum::Error) -> bool {
    use tungstenite::error::ProtocolError;
    use tungstenite::Error;
    match error.into_inner().downcast_ref::<Error>() {
        Some(Error::Protocol(ProtocolError::ResetWithoutClosingHandshake)) => false,
        Some(Error::Capacity(_) | Error::Protocol(_) | Error::Utf8(_) | Error::AttackAttempt) => {
            true
        }
        _ => false,
    }
}
