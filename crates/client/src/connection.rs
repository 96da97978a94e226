//! The task that owns the signaling socket: sends calls, matches replies, feeds room events
//! to the mirror and publishes what it derives, and reconnects with resume.
//!
//! One task per [`Meeting`](crate::Meeting). Handles talk to it through a command channel;
//! the mirror and the subscriber list live in [`Shared`] behind a mutex, updated and
//! published under the same lock so a handle never sees an event before the state it
//! describes.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::{self, Message};
use tokio_tungstenite::{Connector, MaybeTlsStream, WebSocketStream};
use url::Url;

use onstage_proto::{
    Call, CallResult, CloseReason, ErrorCode, Fingerprint, LinkError, Request, RoomEvent,
    ServerMessage, Welcome,
};

use crate::mirror::Mirror;
use crate::{ClientError, ConnectionState, EventStream, JoinOptions, MeetingEvent};

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;
type Reply = oneshot::Sender<Result<CallResult, ClientError>>;
type Outcome = Result<CallResult, ClientError>;

/// The longest a successful status reply waits for its event (see [`Deferred`]); at most
/// half the request timeout.
const DEFER_LIMIT: Duration = Duration::from_secs(1);

/// A call in flight.
struct Pending {
    reply: Reply,
    /// The mirror's seq when the call was sent.
    sent_seq: u64,
}

/// A successful reply to a call that changed the caller's own status, held back until the
/// event carrying that change has reached the mirror, so that `stage().status()` agrees with
/// the result as soon as the call returns (whatever order the server sends reply and event
/// in). Released at the latest after [`DEFER_LIMIT`] (the call did succeed).
struct Deferred {
    reply: Reply,
    outcome: Outcome,
    sent_seq: u64,
    until: Instant,
}

/// What handles ask of the task.
pub(crate) enum Command {
    Call { call: Call, reply: Reply },
}

/// State shared by the handles and the task.
pub(crate) struct Shared {
    state: Mutex<State>,
    /// The simulcast layers (RIDs) the SFU last said anyone takes of our video (`None`:
    /// it has not said, so every layer is wanted).
    pub(crate) wanted_layers: tokio::sync::watch::Sender<Option<Vec<String>>>,
}

pub(crate) struct State {
    pub(crate) mirror: Mirror,
    pub(crate) connection: ConnectionState,
    subscribers: Vec<mpsc::UnboundedSender<MeetingEvent>>,
    /// The subscriber created at join, handed to the first `events()` call so that it misses
    /// nothing that happened after the welcome.
    first: Option<mpsc::UnboundedReceiver<MeetingEvent>>,
    /// Set once the task has ended: no more events will come.
    finished: bool,
    /// Why the session ended, when known (see [`State::closed_error`]).
    pub(crate) ended: Option<CloseReason>,
    /// The tile sizes last told (`media.tiles`), as `Meeting::tiles` gives them.
    pub(crate) tiles: Option<Vec<onstage_proto::TileSize>>,
}

impl State {
    /// What a call gets once the meeting is over for this handle: the server's reason when
    /// it ended the session ([`ClientError::Ended`]), else [`ClientError::Closed`].
    pub(crate) fn closed_error(&self) -> ClientError {
        closed_error(self.ended)
    }
}

fn closed_error(reason: Option<CloseReason>) -> ClientError {
    match reason {
        Some(reason) if reason != CloseReason::Left => ClientError::Ended(reason),
        _ => ClientError::Closed,
    }
}

impl Shared {
    pub(crate) fn new(mirror: Mirror) -> Self {
        let (tx, rx) = mpsc::unbounded_channel();
        Self {
            state: Mutex::new(State {
                mirror,
                connection: ConnectionState::Connected,
                subscribers: vec![tx],
                first: Some(rx),
                finished: false,
                tiles: None,
                ended: None,
            }),
            wanted_layers: tokio::sync::watch::Sender::new(None),
        }
    }

    pub(crate) fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock cannot leave the mirror half-updated in a way that
        // matters more than losing the meeting; keep going with the data.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Mutates the state and publishes the events it returns, under one lock.
    pub(crate) fn publish(&self, f: impl FnOnce(&mut State) -> Vec<MeetingEvent>) {
        let mut state = self.lock();
        let events = f(&mut state);
        if events.is_empty() {
            return;
        }
        state
            .subscribers
            .retain(|tx| events.iter().all(|event| tx.send(event.clone()).is_ok()));
    }

    /// A new subscriber (the join-time one on the first call).
    pub(crate) fn subscribe(&self) -> EventStream {
        let mut state = self.lock();
        if let Some(rx) = state.first.take() {
            return EventStream::new(rx);
        }
        let (tx, rx) = mpsc::unbounded_channel();
        if !state.finished {
            state.subscribers.push(tx);
        }
        EventStream::new(rx)
    }

    /// Ends every event stream (after what they hold is read).
    fn finish(&self) {
        let mut state = self.lock();
        state.finished = true;
        state.subscribers.clear();
    }
}

/// Builds the signaling URL: `http(s)://host:port[/base]` -> `ws(s)://host:port[/base]/v1/signal?token=..`.
pub(crate) fn signal_url(server_url: &str, token: &str) -> Result<Url, ClientError> {
    let mut url = Url::parse(server_url)
        .map_err(|e| ClientError::BadServerUrl(format!("{server_url:?}: {e}")))?;
    let scheme = match url.scheme() {
        "http" | "ws" => "ws",
        "https" | "wss" => "wss",
        other => {
            return Err(ClientError::BadServerUrl(format!(
                "unsupported URL scheme {other:?} (use http(s):// or ws(s)://)"
            )))
        }
    };
    url.set_scheme(scheme)
        .map_err(|()| ClientError::BadServerUrl(format!("cannot use scheme {scheme}")))?;
    let base = url.path().trim_end_matches('/').to_owned();
    url.set_path(&format!("{base}/v1/signal"));
    url.set_fragment(None);
    url.set_query(None);
    url.query_pairs_mut().append_pair("token", token);
    Ok(url)
}

/// The signaling URL of a guest joining with a role invite: the invite token and the
/// guest's name (`...?token=<invite>&name=<name>`).
pub(crate) fn guest_signal_url(
    server_url: &str,
    invite_token: &str,
    name: &str,
) -> Result<Url, ClientError> {
    let mut url = signal_url(server_url, invite_token)?;
    url.query_pairs_mut().append_pair("name", name);
    Ok(url)
}

/// The same signaling URL with another token (and nothing else in its query): what a
/// guest reconnects with once the welcome gave it a token of its own.
pub(crate) fn with_token(url: &Url, token: &str) -> Url {
    let mut url = url.clone();
    url.set_query(None);
    url.query_pairs_mut().append_pair("token", token);
    url
}

/// How to open the socket for a signaling URL: TLS for `wss` (pinned to `pin` when given),
/// plain for `ws`. A pin with a plain URL is refused: the token would go in clear to a
/// server that was meant to be authenticated.
pub(crate) fn connector(url: &Url, pin: Option<Fingerprint>) -> Result<Connector, ClientError> {
    match (url.scheme(), pin) {
        ("wss", pin) => {
            let config = crate::tls::client_config(pin).map_err(ClientError::Certificate)?;
            Ok(Connector::Rustls(Arc::new(config)))
        }
        (_, None) => Ok(Connector::Plain),
        (_, Some(_)) => {
            let mut shown = url.clone();
            shown.set_query(None);
            Err(ClientError::Link(LinkError::FingerprintWithoutTls(
                shown.to_string(),
            )))
        }
    }
}

/// Opens the socket and waits for the welcome, all within `limit`.
pub(crate) async fn connect(
    url: &Url,
    connector: &Connector,
    limit: Duration,
) -> Result<(Ws, Welcome), ClientError> {
    match tokio::time::timeout(limit, connect_inner(url, connector)).await {
        Ok(outcome) => outcome,
        Err(_) => Err(ClientError::Connect(format!(
            "no welcome from the server within {limit:?}"
        ))),
    }
}

async fn connect_inner(url: &Url, connector: &Connector) -> Result<(Ws, Welcome), ClientError> {
    let (mut ws, _response) = tokio_tungstenite::connect_async_tls_with_config(
        url.as_str(),
        None,
        true,
        Some(connector.clone()),
    )
    .await
    .map_err(handshake_error)?;
    loop {
        match ws.next().await {
            Some(Ok(Message::Text(text))) => {
                return match serde_json::from_str::<ServerMessage>(text.as_str()) {
                    Ok(ServerMessage::Welcome(welcome)) => Ok((ws, *welcome)),
                    Ok(ServerMessage::Error { error }) => Err(ClientError::Server(error)),
                    // Turned away for good before the welcome (a token revoked or a
                    // participant removed just as it connected): say why, never retry.
                    Ok(ServerMessage::Goodbye { reason }) if reason.is_final() => {
                        Err(ClientError::Ended(reason))
                    }
                    Ok(ServerMessage::Goodbye { reason }) => Err(ClientError::Connect(format!(
                        "the server closed the connection ({reason})"
                    ))),
                    // It upgraded to a WebSocket but does not speak our protocol.
                    Ok(_) => Err(ClientError::NotOnstage(
                        "the first message was not a welcome".into(),
                    )),
                    Err(e) => Err(ClientError::NotOnstage(format!("unreadable welcome: {e}"))),
                };
            }
            Some(Ok(Message::Close(_))) | None => {
                return Err(ClientError::Connect(
                    "the server closed the connection before the welcome".into(),
                ))
            }
            Some(Ok(_)) => continue,
            Some(Err(e)) => return Err(ClientError::Connect(e.to_string())),
        }
    }
}

fn handshake_error(e: tungstenite::Error) -> ClientError {
    match e {
        tungstenite::Error::Http(response) => {
            let body = response
                .body()
                .as_deref()
                .and_then(|body| serde_json::from_slice::<serde_json::Value>(body).ok());
            let message = body
                .as_ref()
                .and_then(|v| v.pointer("/error/message")?.as_str().map(str::to_owned));
            let code = body
                .as_ref()
                .and_then(|v| v.pointer("/error/code")?.as_str().map(str::to_owned));
            let revoked = Some(ErrorCode::TokenRevoked.as_str());
            let expired = Some(ErrorCode::TokenExpired.as_str());
            if response.status() == 401 && code.as_deref() == revoked {
                ClientError::TokenRevoked(
                    message.unwrap_or_else(|| "the server revoked the token".into()),
                )
            } else if response.status() == 401 && code.as_deref() == expired {
                ClientError::TokenExpired(message.unwrap_or_else(|| "the token has expired".into()))
            } else if response.status() == 401 {
                ClientError::Unauthorized(
                    message.unwrap_or_else(|| "the server refused the token".into()),
                )
            } else if response.status() == 400
                && code.as_deref() == Some(ErrorCode::BadRequest.as_str())
            {
                // Ours, refusing what the join said (a guest's name the server will not
                // take): the caller has to fix it, so it is the server's own error.
                ClientError::Server(onstage_proto::ErrorBody::new(
                    ErrorCode::BadRequest,
                    message.unwrap_or_else(|| "the server refused the join".into()),
                ))
            } else if response.status() == 503 {
                // Ours, shutting down (or a proxy in front with no server behind it):
                // come back later, as for an unreachable one.
                ClientError::Connect(format!(
                    "HTTP 503{}",
                    message.map(|m| format!(": {m}")).unwrap_or_default()
                ))
            } else {
                // A web server without our signaling path (404), a proxy's error page, ...
                ClientError::NotOnstage(format!(
                    "HTTP {}{}",
                    response.status(),
                    message.map(|m| format!(": {m}")).unwrap_or_default()
                ))
            }
        }
        other => match crate::tls::certificate_problem(&other) {
            Some(problem) => ClientError::Certificate(problem),
            None => ClientError::Connect(other.to_string()),
        },
    }
}

/// Why a connected phase ended.
enum Ended {
    /// The socket dropped (or the server asked us to come back later): reconnect.
    Dropped,
    /// Over for good: `left` when it ended by leaving the meeting, or the server's final
    /// goodbye; `None` when every handle is gone.
    Over { reason: Option<CloseReason> },
}

pub(crate) struct Driver {
    shared: Arc<Shared>,
    commands: mpsc::UnboundedReceiver<Command>,
    url: Url,
    connector: Connector,
    options: JoinOptions,
    next_id: u64,
    pending: HashMap<u64, Pending>,
    deferred: Vec<Deferred>,
    /// The id of an in-flight `meeting.leave`.
    leave_id: Option<u64>,
    /// The id of an in-flight `meeting.end`: it succeeded if the meeting ends before its
    /// reply arrives (the `meeting_ended` event comes first).
    end_id: Option<u64>,
    /// The id of an in-flight `meeting.snapshot` (asked by the mirror after a gap).
    snapshot_id: Option<u64>,
    /// Why the session ended for good, when known: told with the final `disconnected`.
    end_reason: Option<CloseReason>,
    /// The tiles last told (`media.tiles`). The server forgets a viewer's tiles with its
    /// connection, so a new connection tells them again: else a hidden window would get
    /// video, and a small tile the top layer, until the layout next changed.
    tiles: Option<Call>,
}

impl Driver {
    pub(crate) fn new(
        shared: Arc<Shared>,
        commands: mpsc::UnboundedReceiver<Command>,
        url: Url,
        connector: Connector,
        options: JoinOptions,
    ) -> Self {
        Self {
            shared,
            commands,
            url,
            connector,
            options,
            next_id: 0,
            pending: HashMap::new(),
            deferred: Vec::new(),
            leave_id: None,
            end_id: None,
            snapshot_id: None,
            end_reason: None,
            tiles: None,
        }
    }

    pub(crate) async fn run(mut self, mut ws: Ws) {
        loop {
            match self.serve(&mut ws).await {
                Ended::Over { reason } => {
                    self.end_reason = reason;
                    self.fail_pending(reason, closed_error(reason));
                    break;
                }
                Ended::Dropped => {
                    if self.leave_id.is_some() {
                        // Leaving and the socket went: we are gone either way (the server
                        // times the session out after its grace period).
                        self.end_reason = Some(CloseReason::Left);
                        self.fail_pending(Some(CloseReason::Left), ClientError::ConnectionLost);
                        break;
                    }
                    self.fail_pending(None, ClientError::ConnectionLost);
                    tracing::info!("signaling connection lost; reconnecting");
                    self.shared.publish(|state| {
                        state.connection = ConnectionState::Reconnecting;
                        vec![MeetingEvent::ConnectionStateUpdate {
                            state: ConnectionState::Reconnecting,
                            resumed: None,
                            reason: None,
                        }]
                    });
                    let Some((new_ws, welcome)) = self.reconnect().await else {
                        break;
                    };
                    tracing::info!(resumed = welcome.resumed, "signaling connection restored");
                    ws = new_ws;
                    if let Some(tiles) = self.tiles.clone() {
                        // Nobody waits for this reply: the caller had its answer before.
                        let (reply, _) = oneshot::channel();
                        if self.send_call(&mut ws, tiles, Some(reply)).await.is_err() {
                            tracing::debug!("the socket dropped while telling the tiles again");
                        }
                    }
                    let resumed = welcome.resumed;
                    self.shared.publish(|state| {
                        let mut events = state.mirror.on_welcome(welcome);
                        state.connection = ConnectionState::Connected;
                        events.push(MeetingEvent::ConnectionStateUpdate {
                            state: ConnectionState::Connected,
                            resumed: Some(resumed),
                            reason: None,
                        });
                        events
                    });
                }
            }
        }
        let reason = self.end_reason;
        if let Some(reason) = reason {
            tracing::info!(%reason, "the meeting is over for this participant");
        }
        self.shared.publish(|state| {
            state.connection = ConnectionState::Disconnected;
            state.ended = reason;
            vec![MeetingEvent::ConnectionStateUpdate {
                state: ConnectionState::Disconnected,
                resumed: None,
                reason,
            }]
        });
        self.shared.finish();
        self.commands.close();
        while let Ok(Command::Call { reply, .. }) = self.commands.try_recv() {
            let _ = reply.send(Err(closed_error(reason)));
        }
    }

    /// Answers every call in flight: a pending `meeting.leave` succeeds when the session
    /// ended as `left`, a pending `meeting.end` when it ended as `meeting_ended`; the rest
    /// get `error`. Held-back replies answered successfully are delivered as they are.
    fn fail_pending(&mut self, reason: Option<CloseReason>, error: ClientError) {
        self.release_deferred(true);
        let leave_id = self.leave_id.take();
        let end_id = self.end_id.take();
        let done = match reason {
            Some(CloseReason::Left) => leave_id,
            Some(CloseReason::MeetingEnded) => end_id,
            _ => None,
        };
        self.snapshot_id = None;
        for (id, Pending { reply, .. }) in self.pending.drain() {
            let outcome = if Some(id) == done {
                Ok(CallResult::Done)
            } else {
                Err(error.clone())
            };
            let _ = reply.send(outcome);
        }
        self.shared.lock().mirror.snapshot_failed();
    }

    /// The connected phase: runs until the socket drops or the meeting is over.
    async fn serve(&mut self, ws: &mut Ws) -> Ended {
        let mut keepalive = tokio::time::interval(self.options.ping_interval);
        keepalive.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        keepalive.tick().await;
        let mut last_heard = Instant::now();
        loop {
            tokio::select! {
                command = self.commands.recv() => {
                    let Some(Command::Call { call, reply }) = command else {
                        // Every handle is gone: close without leaving (the server keeps the
                        // session for its grace period).
                        close_quietly(ws).await;
                        return Ended::Over { reason: None };
                    };
                    if self.send_call(ws, call, Some(reply)).await.is_err() {
                        return Ended::Dropped;
                    }
                }
                frame = ws.next() => match frame {
                    Some(Ok(Message::Text(text))) => {
                        last_heard = Instant::now();
                        if let Some(ended) = self.on_text(ws, text.as_str()).await {
                            return ended;
                        }
                    }
                    Some(Ok(Message::Close(_))) | None => return Ended::Dropped,
                    Some(Err(e)) => {
                        tracing::debug!(error = %e, "signaling socket error");
                        return Ended::Dropped;
                    }
                    Some(Ok(_)) => last_heard = Instant::now(),
                },
                _ = sleep_until_first(&self.deferred) => self.release_deferred(false),
                _ = keepalive.tick() => {
                    if last_heard.elapsed() >= self.options.dead_after {
                        tracing::warn!("nothing heard from the server; dropping the connection");
                        return Ended::Dropped;
                    }
                    if ws.send(Message::Ping(Default::default())).await.is_err() {
                        return Ended::Dropped;
                    }
                }
            }
        }
    }

    /// Sends a call. `reply: None` marks the mirror's own `meeting.snapshot`.
    async fn send_call(
        &mut self,
        ws: &mut Ws,
        call: Call,
        reply: Option<Reply>,
    ) -> Result<(), tungstenite::Error> {
        self.next_id += 1;
        let id = self.next_id;
        if matches!(call, Call::Tiles { .. }) {
            self.tiles = Some(call.clone());
        }
        let is_leave = matches!(call, Call::LeaveMeeting);
        let is_end = matches!(call, Call::EndMeeting);
        let text = match serde_json::to_string(&Request { id, call }) {
            Ok(text) => text,
            Err(e) => {
                if let Some(reply) = reply {
                    let _ = reply.send(Err(ClientError::Protocol(e.to_string())));
                }
                return Ok(());
            }
        };
        // Callers that timed out dropped their receiver; forget them.
        self.pending.retain(|_, pending| !pending.reply.is_closed());
        match reply {
            Some(reply) => {
                let sent_seq = self.shared.lock().mirror.seq();
                self.pending.insert(id, Pending { reply, sent_seq });
                if is_leave {
                    self.leave_id = Some(id);
                }
                if is_end {
                    self.end_id = Some(id);
                }
            }
            None => self.snapshot_id = Some(id),
        }
        ws.send(Message::text(text)).await
    }

    async fn on_text(&mut self, ws: &mut Ws, text: &str) -> Option<Ended> {
        let message = match serde_json::from_str::<ServerMessage>(text) {
            Ok(message) => message,
            Err(e) => {
                tracing::warn!(error = %e, "unreadable frame from the server");
                return None;
            }
        };
        match message {
            ServerMessage::Reply {
                id,
                ok,
                result,
                error,
            } => {
                let outcome = if ok {
                    Ok(result.unwrap_or(CallResult::Done))
                } else {
                    Err(error.map(ClientError::Server).unwrap_or_else(|| {
                        ClientError::Protocol("an error reply without an error".into())
                    }))
                };
                if self.snapshot_id == Some(id) {
                    self.snapshot_id = None;
                    return self.on_snapshot(ws, outcome).await;
                }
                if let Some(pending) = self.pending.remove(&id) {
                    self.answer(pending, outcome);
                }
                if self.leave_id == Some(id) {
                    self.leave_id = None;
                    if ok {
                        close_quietly(ws).await;
                        return Some(Ended::Over {
                            reason: Some(CloseReason::Left),
                        });
                    }
                }
                None
            }
            ServerMessage::Event {
                seq,
                event: RoomEvent::MeetingEnded { by },
            } => {
                // The last event of the session: over at once, without waiting for the
                // goodbye that follows (were it lost with the socket, a reconnect would
                // start a new session of a meeting that has ended).
                self.shared
                    .publish(|state| state.mirror.on_meeting_ended(seq, by));
                close_quietly(ws).await;
                Some(Ended::Over {
                    reason: Some(CloseReason::MeetingEnded),
                })
            }
            ServerMessage::Event { seq, event } => {
                let mut need_snapshot = false;
                self.shared.publish(|state| {
                    let applied = state.mirror.on_event(seq, event);
                    need_snapshot = applied.need_snapshot;
                    applied.events
                });
                self.release_deferred(false);
                if need_snapshot {
                    tracing::debug!(seq, "event sequence gap; asking for a snapshot");
                    return self.ask_snapshot(ws).await;
                }
                None
            }
            ServerMessage::Goodbye { reason } => {
                tracing::info!(?reason, "the server closes the connection");
                // Final reasons are never fought with a reconnect: `replaced` means another
                // session of this participant is live (reconnecting would knock it off, and
                // it us, forever); the others mean the token no longer works.
                if reason.is_final() {
                    close_quietly(ws).await;
                    Some(Ended::Over {
                        reason: Some(reason),
                    })
                } else {
                    Some(Ended::Dropped)
                }
            }
            ServerMessage::Media { event } => {
                self.shared
                    .publish(|state| vec![state.mirror.on_media(event)]);
                None
            }
            ServerMessage::Layers { rids } => {
                tracing::debug!(?rids, "the SFU wants these layers of our video");
                self.shared.wanted_layers.send_replace(Some(rids));
                None
            }
            ServerMessage::Error { error } => {
                tracing::warn!(%error, "the server reported an error");
                None
            }
            ServerMessage::Welcome(_) => {
                tracing::warn!("unexpected second welcome; ignored");
                None
            }
        }
    }

    async fn on_snapshot(
        &mut self,
        ws: &mut Ws,
        outcome: Result<CallResult, ClientError>,
    ) -> Option<Ended> {
        match outcome {
            Ok(CallResult::Snapshot(snapshot)) => {
                let mut need_snapshot = false;
                self.shared.publish(|state| {
                    let applied = state.mirror.on_snapshot(snapshot);
                    need_snapshot = applied.need_snapshot;
                    applied.events
                });
                // The snapshot is at least as new as anything replied so far.
                self.release_deferred(true);
                if need_snapshot {
                    return self.ask_snapshot(ws).await;
                }
            }
            other => {
                tracing::warn!(
                    ?other,
                    "meeting.snapshot failed; will retry on the next gap"
                );
                self.shared.lock().mirror.snapshot_failed();
            }
        }
        None
    }

    /// Delivers a reply, holding back a successful status change until the mirror shows it.
    fn answer(&mut self, pending: Pending, outcome: Outcome) {
        let Pending { reply, sent_seq } = pending;
        if reply.is_closed() {
            // The caller gave up (timed out); nobody to tell.
            return;
        }
        let changes_own_status = matches!(outcome, Ok(CallResult::Status { .. }));
        if changes_own_status && self.shared.lock().mirror.own_status_seq() <= sent_seq {
            self.deferred.push(Deferred {
                reply,
                outcome,
                sent_seq,
                until: Instant::now() + DEFER_LIMIT.min(self.options.request_timeout / 2),
            });
            return;
        }
        let _ = reply.send(outcome);
    }

    /// Delivers the held-back replies whose change has reached the mirror (all of them when
    /// `all`), and those held too long.
    fn release_deferred(&mut self, all: bool) {
        if self.deferred.is_empty() {
            return;
        }
        let own_status_seq = self.shared.lock().mirror.own_status_seq();
        let now = Instant::now();
        let (ready, waiting): (Vec<Deferred>, Vec<Deferred>) = std::mem::take(&mut self.deferred)
            .into_iter()
            .partition(|d| all || own_status_seq > d.sent_seq || d.until <= now);
        self.deferred = waiting;
        for d in ready {
            let _ = d.reply.send(d.outcome);
        }
    }

    async fn ask_snapshot(&mut self, ws: &mut Ws) -> Option<Ended> {
        if self.snapshot_id.is_some() {
            return None;
        }
        match self.send_call(ws, Call::Snapshot, None).await {
            Ok(()) => None,
            Err(_) => Some(Ended::Dropped),
        }
    }

    /// Retries with backoff: inside the server's grace period (the session resumes), then,
    /// unless [`JoinOptions::keep_trying_every`] is `None`, on and on at a slower pace.
    /// `None` when it is over for good (token refused, session ended, meeting left,
    /// handles gone, or the grace period over when not to keep trying).
    async fn reconnect(&mut self) -> Option<(Ws, Welcome)> {
        let grace = Duration::from_millis(self.shared.lock().mirror.grace_ms());
        let deadline = Instant::now() + grace;
        let mut backoff = self.options.reconnect_min;
        let mut past_grace = false;
        loop {
            let now = Instant::now();
            let limit = match deadline.checked_duration_since(now) {
                Some(left) => self.options.connect_timeout.min(left),
                None => self.options.connect_timeout,
            }
            .max(Duration::from_millis(100));
            let (url, connector) = (self.url.clone(), self.connector.clone());
            match self
                .while_down(async move { connect(&url, &connector, limit).await })
                .await?
            {
                Ok(connected) => return Some(connected),
                Err(ClientError::Unauthorized(message) | ClientError::TokenExpired(message)) => {
                    tracing::warn!(%message, "the server refused the token; giving up");
                    return None;
                }
                // The goodbye that said so was lost with the connection: the token was
                // superseded meanwhile.
                Err(ClientError::TokenRevoked(message)) => {
                    tracing::warn!(%message, "the token was revoked; giving up");
                    self.end_reason = Some(CloseReason::Revoked);
                    return None;
                }
                Err(ClientError::Ended(reason)) => {
                    tracing::warn!(%reason, "the server ended the session; giving up");
                    self.end_reason = Some(reason);
                    return None;
                }
                // The same server would show the same certificate: retrying cannot help.
                Err(ClientError::Certificate(problem)) => {
                    tracing::warn!(%problem, "the server's certificate is refused; giving up");
                    return None;
                }
                Err(e) => tracing::debug!(error = %e, "reconnect attempt failed"),
            }
            let left = deadline.saturating_duration_since(Instant::now());
            let pause = if !left.is_zero() {
                backoff.min(left)
            } else if let Some(every) = self.options.keep_trying_every {
                if !past_grace {
                    tracing::warn!("could not reconnect within the grace period; still trying");
                    past_grace = true;
                }
                backoff.min(every)
            } else {
                tracing::warn!("could not reconnect within the grace period");
                return None;
            };
            self.while_down(tokio::time::sleep(pause)).await?;
            let cap = if past_grace {
                self.options
                    .keep_trying_every
                    .unwrap_or(self.options.reconnect_max)
            } else {
                self.options.reconnect_max
            };
            backoff = (backoff * 2).min(cap);
        }
    }

    /// Runs `fut` while the socket is down, answering calls meanwhile: they fail with
    /// `connection_lost`, except `meeting.leave`, which succeeds and ends the meeting
    /// (`None`, as when every handle is gone).
    async fn while_down<F: Future>(&mut self, fut: F) -> Option<F::Output> {
        tokio::pin!(fut);
        loop {
            tokio::select! {
                out = &mut fut => return Some(out),
                command = self.commands.recv() => match command {
                    None => return None,
                    Some(Command::Call { call: Call::LeaveMeeting, reply }) => {
                        let _ = reply.send(Ok(CallResult::Done));
                        self.end_reason = Some(CloseReason::Left);
                        return None;
                    }
                    Some(Command::Call { reply, .. }) => {
                        let _ = reply.send(Err(ClientError::ConnectionLost));
                    }
                },
            }
        }
    }
}

/// Resolves when the first held-back reply is due; never when there is none.
async fn sleep_until_first(deferred: &[Deferred]) {
    match deferred.iter().map(|d| d.until).min() {
        Some(until) => tokio::time::sleep_until(until).await,
        None => std::future::pending().await,
    }
}

async fn close_quietly(ws: &mut Ws) {
    let _ = tokio::time::timeout(Duration::from_millis(500), ws.close(None)).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signal_url_from_http_base() {
        let url = signal_url("http://127.0.0.1:8080", "a b&c").unwrap();
        assert_eq!(url.as_str(), "ws://127.0.0.1:8080/v1/signal?token=a+b%26c");
        let url = signal_url("https://example.com/onstage/", "t").unwrap();
        assert_eq!(url.as_str(), "wss://example.com/onstage/v1/signal?token=t");
        let url = signal_url("ws://h:1/?x=1", "t").unwrap();
        assert_eq!(url.as_str(), "ws://h:1/v1/signal?token=t");
        assert!(matches!(
            signal_url("ftp://h", "t"),
            Err(ClientError::BadServerUrl(_))
        ));
        assert!(matches!(
            signal_url("not a url", "t"),
            Err(ClientError::BadServerUrl(_))
        ));
        // An address without a scheme: the user left out https://.
        let e = signal_url("meet.example.com", "t").unwrap_err();
        assert_eq!(e.code(), ErrorCode::InvalidServerUrl, "{e}");
    }
}
