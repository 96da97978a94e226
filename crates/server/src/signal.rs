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
use onstage_room::Member;
use tokio::sync::mpsc;

use crate::error::ApiError;
use crate::rooms::{encode, error_reply, next_conn_id, ConnHandle, Outbound};
use crate::server::AppState;

/// Frames beyond this close the offending connection (below it, oversized frames get
/// `bad_request` and the connection carries on).
pub const HARD_FRAME_LIMIT: usize = 1024 * 1024;

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
    let claims = match app.auth.verify(token) {
        Ok(c) => c,
        Err(e) => return e.into_response(),
    };
    let record = match app
        .storage
        .load_member(claims.meeting_id(), claims.user_id())
        .await
    {
        Ok(Some(r)) => r,
        Ok(None) => {
            return ApiError::unauthorized("the token's meeting or participant no longer exists")
                .into_response()
        }
        Err(e) => return ApiError::from(e).into_response(),
    };
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
    let ws = match ws {
        Ok(ws) => ws,
        Err(rejection) => {
            return ApiError::bad_request(format!(
                "/v1/signal expects a WebSocket upgrade: {}",
                rejection.body_text()
            ))
            .into_response()
        }
    };
    if app.stopping() {
        return ApiError::unavailable("the server is shutting down").into_response();
    }
    ws.max_message_size(HARD_FRAME_LIMIT)
        .max_frame_size(HARD_FRAME_LIMIT)
        .read_buffer_size(4 * 1024)
        .write_buffer_size(0)
        .on_upgrade(move |socket| async move {
            Connection::new(app, meeting, member.user_id.clone())
                .run(socket, member, max_on_stage)
                .await
        })
}

/// A token bucket: `burst` calls at once, refilled at `per_sec`.
#[derive(Debug)]
struct RateLimit {
    tokens: f64,
    burst: f64,
    per_sec: f64,
    last: Instant,
}

impl RateLimit {
    fn new(burst: u32, per_sec: f64) -> Self {
        Self {
            tokens: f64::from(burst),
            burst: f64::from(burst),
            per_sec,
            last: Instant::now(),
        }
    }

    fn allow(&mut self) -> bool {
        let now = Instant::now();
        let refill = now.duration_since(self.last).as_secs_f64() * self.per_sec;
        self.tokens = (self.tokens + refill).min(self.burst);
        self.last = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

struct Connection {
    app: Arc<AppState>,
    meeting: MeetingId,
    user: UserId,
    id: u64,
}

impl Connection {
    fn new(app: Arc<AppState>, meeting: MeetingId, user: UserId) -> Self {
        Self {
            app,
            meeting,
            user,
            id: next_conn_id(),
        }
    }

    async fn run(self, socket: WebSocket, member: Member, max_on_stage: u32) {
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
                max_on_stage,
                member,
                ice_servers,
                ConnHandle { id: self.id, tx },
            )
            .await;
        tracing::debug!(meeting = %self.meeting, user = %self.user, conn = self.id, "connected");

        let mut limit = RateLimit::new(
            self.app.config.rate_limit_burst,
            self.app.config.rate_limit_per_sec,
        );
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
                    let Some(Ok(frame)) = frame else { break };
                    last_heard = Instant::now();
                    if let Some(reply) = self.on_frame(frame, &mut limit).await {
                        if sink.send(Message::Text(reply)).await.is_err() { break; }
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

    /// Handles one incoming frame; returns a frame to send back at once, if any.
    async fn on_frame(&self, frame: Message, limit: &mut RateLimit) -> Option<Utf8Bytes> {
        if matches!(
            frame,
            Message::Ping(_) | Message::Pong(_) | Message::Close(_)
        ) {
            return None;
        }
        // Every frame counts against the bucket, junk included: checking size and syntax
        // first let a client send (and be answered for) unlimited bad frames.
        if !limit.allow() {
            let id = match &frame {
                Message::Text(t) => request_id(t.as_str()),
                _ => None,
            };
            return Some(error_reply(
                id,
                ErrorCode::RateLimited,
                "too many calls; slow down",
            ));
        }
        let Message::Text(text) = frame else {
            self.app.metrics.bad_frames.inc();
            return Some(error_reply(
                None,
                ErrorCode::BadRequest,
                "binary frames are not part of the protocol; send JSON text",
            ));
        };
        if text.len() > MAX_SIGNAL_FRAME_BYTES {
            self.app.metrics.bad_frames.inc();
            // Answered with its id when the frame's start names it, so a caller waiting
            // for that reply is not left to its timeout.
            return Some(error_reply(
                Request::leading_id(text.as_str()),
                ErrorCode::BadRequest,
                format!(
                    "frame of {} bytes exceeds the {MAX_SIGNAL_FRAME_BYTES}-byte limit",
                    text.len()
                ),
            ));
        }
        let request = match Request::parse(text.as_str()) {
            Ok(r) => r,
            Err((id, error)) => {
                self.app.metrics.bad_frames.inc();
                return Some(error_reply(id, error.code, error.message));
            }
        };
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
        (!accepted).then(|| {
            error_reply(
                Some(request.id),
                ErrorCode::Internal,
                "the meeting is not live on this server",
            )
        })
    }
}
