//! The front door: [`Meeting`], its [`Stage`], and [`EventStream`].

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};

use onstage_proto::{
    AccessRequest, Call, CallResult, CloseReason, MeetingId, ParticipantInfo, PeerId, Preset,
    StageStatus, UserId,
};

use crate::connection::{self, Command, Driver, Shared};
use crate::link::{Fingerprint, InviteLink};
use crate::mirror::Mirror;
use crate::{ClientError, ConnectionState, MeetingEvent};

/// A participant as everyone in the meeting sees it: `user_id`, `peer_id`, `name`,
/// `preset` (its name), `stage_status`, `connected`.
pub type Participant = ParticipantInfo;

/// Timeouts and reconnect pacing. [`JoinOptions::default`] suits interactive use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JoinOptions {
    /// How long a call waits for its reply before failing with [`ClientError::Timeout`].
    pub request_timeout: Duration,
    /// How long one connection attempt (TCP, WebSocket handshake, welcome) may take.
    pub connect_timeout: Duration,
    /// First pause between reconnect attempts; doubles up to `reconnect_max`.
    pub reconnect_min: Duration,
    pub reconnect_max: Duration,
    /// Past the server's grace period the session is gone there, but the meeting may not
    /// be (a server restarting slowly, a long network cut): by default the client keeps
    /// trying, pausing up to this long between attempts, and a connection that works then
    /// starts afresh (`resumed: false`, OFF_STAGE). `None` gives up at the end of the grace
    /// period (`disconnected`).
    pub keep_trying_every: Option<Duration>,
    /// How often the client pings the server.
    pub ping_interval: Duration,
    /// With nothing heard from the server for this long, the connection counts as dropped.
    pub dead_after: Duration,
    /// The SHA-256 fingerprint of the server's certificate, for a self-signed `https`
    /// server (an invite link's `fp=`): the server must present exactly that certificate.
    /// `None` (the default): an `https` server's certificate must be one the system trusts.
    /// Refused with [`ClientError::Link`] for a plain `http` server, whose token would
    /// travel in clear.
    pub fingerprint: Option<Fingerprint>,
}

impl Default for JoinOptions {
    fn default() -> Self {
        Self {
            request_timeout: Duration::from_secs(10),
            connect_timeout: Duration::from_secs(10),
            reconnect_min: Duration::from_millis(50),
            reconnect_max: Duration::from_secs(1),
            keep_trying_every: Some(Duration::from_secs(10)),
            ping_interval: Duration::from_secs(10),
            dead_after: Duration::from_secs(30),
            fingerprint: None,
        }
    }
}

/// `options` with the link's certificate pin, when it has one, in place of theirs.
fn pinned(link: &InviteLink, options: JoinOptions) -> JoinOptions {
    JoinOptions {
        fingerprint: link.fingerprint.or(options.fingerprint),
        ..options
    }
}

/// A role link joined without the guest's name: `bad_request`, nothing sent.
fn name_needed() -> ClientError {
    ClientError::Server(onstage_proto::ErrorBody::new(
        onstage_proto::ErrorCode::BadRequest,
        "this invite link is for anyone: give your name to join",
    ))
}

/// A joined meeting. A cheap handle: clones share one connection, owned by a background
/// task. Dropping the last handle closes the connection without leaving (the server keeps
/// the session for its grace period); call [`Meeting::leave`] to leave for good.
#[derive(Clone)]
pub struct Meeting {
    inner: Arc<Inner>,
}

struct Inner {
    shared: Arc<Shared>,
    commands: mpsc::UnboundedSender<Command>,
    options: JoinOptions,
    /// The participant token the connection uses (a guest's own, from its welcome).
    token: String,
}

/// A [`Meeting`] handle that does not keep the connection open: for what only looks at
/// a meeting while it lasts (the stage media's reception).
#[derive(Clone)]
pub(crate) struct WeakMeeting {
    inner: std::sync::Weak<Inner>,
}

impl WeakMeeting {
    pub(crate) fn upgrade(&self) -> Option<Meeting> {
        self.inner.upgrade().map(|inner| Meeting { inner })
    }
}

impl std::fmt::Debug for Meeting {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let state = self.inner.shared.lock();
        f.debug_struct("Meeting")
            .field("meeting_id", state.mirror.meeting_id())
            .field("user_id", state.mirror.user_id())
            .field("peer_id", state.mirror.peer_id())
            .field("connection", &state.connection)
            .finish()
    }
}

impl Meeting {
    /// Joins with a participant token. `server_url` is the server's base URL, e.g.
    /// `http://127.0.0.1:7800` (`ws://` works too); the SDK connects to
    /// `ws://.../v1/signal?token=...` and returns once the server's welcome has arrived.
    ///
    /// `https://` servers are reached over `wss://`, their certificate checked against the
    /// system's roots (see [`JoinOptions::fingerprint`] for self-signed ones).
    ///
    /// A refused token gives [`ClientError::Unauthorized`]; an unreachable server
    /// [`ClientError::Connect`]; a refused certificate [`ClientError::Certificate`]. Must be
    /// called inside a tokio runtime.
    pub async fn join(server_url: &str, token: &str) -> Result<Meeting, ClientError> {
        Self::join_with(server_url, token, JoinOptions::default()).await
    }

    /// Joins with an invite link (`onstage://join?server=..&token=..[&fp=..]`): its server,
    /// its token and, when it has one, its certificate fingerprint (which replaces
    /// `options.fingerprint`). A role link needs a name: see [`Meeting::join_link`].
    pub async fn join_invite(
        link: &InviteLink,
        options: JoinOptions,
    ) -> Result<Meeting, ClientError> {
        if link.invite {
            // Refused before anything is sent: the server would make a nameless guest.
            return Err(name_needed());
        }
        Self::join_with(link.server.as_str(), &link.token, pinned(link, options)).await
    }

    /// Joins with any link: a personal one as [`Meeting::join_invite`] (`name` is not
    /// needed: the host named the participant), a role link (`invite=`) as
    /// [`Meeting::join_guest`] with `name`, which it needs (else
    /// [`ClientError::Server`] with `bad_request`, before anything is sent).
    pub async fn join_link(
        link: &InviteLink,
        name: Option<&str>,
        options: JoinOptions,
    ) -> Result<Meeting, ClientError> {
        if !link.invite {
            return Self::join_invite(link, options).await;
        }
        let name = name
            .map(str::trim)
            .filter(|n| !n.is_empty())
            .ok_or_else(name_needed)?;
        Self::join_guest(
            link.server.as_str(),
            &link.token,
            name,
            pinned(link, options),
        )
        .await
    }

    /// Joins as a guest with a role invite token (a role link's `invite=`) under `name`:
    /// the server makes a participant of the invite's preset for this join and gives it a
    /// token of its own in the welcome, which the SDK reconnects with (so a reconnect
    /// resumes this participant instead of making another); [`Meeting::token`] returns it.
    /// A name the server refuses (empty, too long, control characters) is
    /// [`ClientError::Server`] with `bad_request`; a revoked invite
    /// [`ClientError::TokenRevoked`].
    pub async fn join_guest(
        server_url: &str,
        invite_token: &str,
        name: &str,
        options: JoinOptions,
    ) -> Result<Meeting, ClientError> {
        let url = connection::guest_signal_url(server_url, invite_token, name)?;
        Self::connect_at(url, options, true).await
    }

    /// [`Meeting::join`] with explicit timeouts, reconnect pacing and certificate pin.
    pub async fn join_with(
        server_url: &str,
        token: &str,
        options: JoinOptions,
    ) -> Result<Meeting, ClientError> {
        let url = connection::signal_url(server_url, token)?;
        Self::connect_at(url, options, false).await
    }

    /// Connects at a signaling URL; `guest`: its token is an invite, which the welcome's
    /// personal token replaces for every reconnect.
    async fn connect_at(
        url: url::Url,
        options: JoinOptions,
        guest: bool,
    ) -> Result<Meeting, ClientError> {
        let connector = connection::connector(&url, options.fingerprint)?;
        let (ws, welcome) = connection::connect(&url, &connector, options.connect_timeout).await?;
        let url = match (guest, welcome.token.as_deref()) {
            (false, _) => url,
            (true, Some(token)) => connection::with_token(&url, token),
            // Reconnecting with the invite would make another participant each time.
            (true, None) => {
                return Err(ClientError::Protocol(
                    "the server's welcome to a guest carries no token of its own".into(),
                ))
            }
        };
        tracing::debug!(
            meeting_id = %welcome.meeting_id,
            user_id = %welcome.user_id,
            peer_id = %welcome.peer_id,
            resumed = welcome.resumed,
            "joined"
        );
        let shared = Arc::new(Shared::new(Mirror::new(welcome)));
        // Who already publishes, as the first events (they wait for the first stream).
        shared.publish(|state| state.mirror.publishing_events());
        let (commands, rx) = mpsc::unbounded_channel();
        let token = url
            .query_pairs()
            .find(|(k, _)| k == "token")
            .map(|(_, v)| v.into_owned())
            .unwrap_or_default();
        tokio::spawn(Driver::new(shared.clone(), rx, url, connector, options.clone()).run(ws));
        Ok(Meeting {
            inner: Arc::new(Inner {
                shared,
                commands,
                options,
                token,
            }),
        })
    }

    /// The participant token this meeting connects with: the one joined with, or for a
    /// guest of a role invite the personal token the server gave it (to rejoin later as
    /// the same participant, e.g. after a restart).
    pub fn token(&self) -> String {
        self.inner.token.clone()
    }

    pub fn meeting_id(&self) -> MeetingId {
        self.inner.shared.lock().mirror.meeting_id().clone()
    }

    /// The meeting's title, from the latest welcome.
    pub fn title(&self) -> String {
        self.inner.shared.lock().mirror.title().to_owned()
    }

    /// This participant's user id (stable across reconnects and restarts).
    pub fn user_id(&self) -> UserId {
        self.inner.shared.lock().mirror.user_id().clone()
    }

    /// This session's peer id. Kept by a resumed reconnect; a new session gets a new one.
    pub fn peer_id(&self) -> PeerId {
        self.inner.shared.lock().mirror.peer_id().clone()
    }

    /// This participant's preset (its permissions).
    pub fn preset(&self) -> Preset {
        self.inner.shared.lock().mirror.preset().clone()
    }

    /// The TURN relays the server offers this participant, with credentials (from the
    /// latest welcome: a reconnect renews them).
    pub fn ice_servers(&self) -> Vec<onstage_proto::IceServer> {
        self.inner.shared.lock().mirror.ice_servers().to_vec()
    }

    /// This participant as the room sees it.
    pub fn self_(&self) -> Participant {
        self.inner.shared.lock().mirror.me()
    }

    /// Everyone in the meeting, this participant included, in the order they joined.
    /// Participants inside their disconnect grace period are listed with
    /// `connected: false`.
    pub fn participants(&self) -> Vec<Participant> {
        self.inner.shared.lock().mirror.participants().to_vec()
    }

    /// One participant, if in the meeting.
    pub fn participant(&self, user_id: &UserId) -> Option<Participant> {
        self.inner
            .shared
            .lock()
            .mirror
            .participant(user_id)
            .cloned()
    }

    /// The most participants the stage holds at once.
    pub fn max_on_stage(&self) -> u32 {
        self.inner.shared.lock().mirror.max_on_stage()
    }

    /// The state of the signaling connection.
    pub fn connection_state(&self) -> ConnectionState {
        self.inner.shared.lock().connection
    }

    /// Why the meeting is over for this handle, once it is and the reason is known: `left`,
    /// or what the server said when it ended the session for good (`replaced`, `revoked`,
    /// `removed`, `meeting_deleted`, `meeting_ended`). `None` while the meeting goes on, and when it ended
    /// otherwise (every handle dropped, reconnecting failed). The final
    /// `connectionStateUpdate` carries the same reason.
    pub fn end_reason(&self) -> Option<CloseReason> {
        self.inner.shared.lock().ended
    }

    /// The stage: status, requests, grant/deny, join/leave, kick.
    pub fn stage(&self) -> Stage<'_> {
        Stage { meeting: self }
    }

    /// A stream of every event from now on, in order, without loss. Each call is a new,
    /// independent subscriber. The first call after joining receives everything since the
    /// welcome, so nothing between [`Meeting::join`] and subscribing is missed (until then
    /// those events are kept in memory). The stream ends after the final
    /// `connectionStateUpdate` `disconnected`.
    pub fn events(&self) -> EventStream {
        self.inner.shared.subscribe()
    }

    /// Leaves the meeting for good (`meeting.leave`): the server takes this participant off
    /// the stage and out of the queue at once and tells everyone. The connection then
    /// closes; later calls fail with [`ClientError::Closed`]. While reconnecting it just
    /// stops (the server removes the participant when its grace period ends).
    pub async fn leave(&self) -> Result<(), ClientError> {
        self.call(Call::LeaveMeeting).await.map(|_| ())
    }

    /// Ends the meeting for everyone (`meeting.end`; a host's preset only, otherwise
    /// `permission_denied`). Everyone, this participant included, gets
    /// [`MeetingEvent::MeetingEnded`] and then `connectionStateUpdate` `disconnected` with
    /// reason `meeting_ended`; nobody reconnects. The meeting itself stays: joining again
    /// starts a new session.
    pub async fn end(&self) -> Result<(), ClientError> {
        self.call(Call::EndMeeting).await.map(|_| ())
    }

    /// Removes another participant from the meeting (`meeting.removeParticipant`; a preset
    /// with `kick_participant`): it is forgotten by the server, its session ends with
    /// `goodbye: removed` and its link no longer works. Everyone hears it leave.
    pub async fn remove_participant(&self, user_id: &UserId) -> Result<(), ClientError> {
        let call = Call::RemoveParticipant {
            user_id: user_id.clone(),
        };
        self.call(call).await.map(|_| ())
    }

    /// Gives a participant another preset (`meeting.setPreset`; a host's preset only),
    /// e.g. `"host"` to hand over the meeting before leaving. It lasts beyond this session;
    /// everyone gets [`MeetingEvent::PresetChanged`].
    pub async fn set_preset(&self, user_id: &UserId, preset: &str) -> Result<(), ClientError> {
        let call = Call::SetPreset {
            user_id: user_id.clone(),
            preset: preset.to_owned(),
        };
        self.call(call).await.map(|_| ())
    }

    /// Mutes an ON_STAGE participant's microphone (`media.muteParticipant`; a preset that
    /// runs the stage). The server stops its audio at once; its client turns the microphone
    /// off, and the participant may unmute itself.
    pub async fn mute_participant(&self, user_id: &UserId) -> Result<(), ClientError> {
        let call = Call::MuteParticipant {
            user_id: user_id.clone(),
        };
        self.call(call).await.map(|_| ())
    }

    /// Sends one call and awaits its reply.
    pub(crate) async fn call(&self, call: Call) -> Result<CallResult, ClientError> {
        let (reply, rx) = oneshot::channel();
        self.inner
            .commands
            .send(Command::Call { call, reply })
            .map_err(|_| self.inner.shared.lock().closed_error())?;
        let limit = self.inner.options.request_timeout;
        match tokio::time::timeout(limit, rx).await {
            Err(_) => Err(ClientError::Timeout(limit)),
            Ok(Err(_)) => Err(self.inner.shared.lock().closed_error()),
            Ok(Ok(outcome)) => outcome,
        }
    }
}

/// The stage of a meeting (RealtimeKit's `meeting.stage`). Calls are validated by the
/// server; a refused call changes nothing and returns [`ClientError::Server`] with a stable
/// code (`permission_denied`, `invalid_state`, `not_found`, `stage_full`, `bad_request`,
/// `rate_limited`).
#[derive(Debug, Clone, Copy)]
pub struct Stage<'a> {
    meeting: &'a Meeting,
}

impl Stage<'_> {
    /// This participant's own stage status, as of the last event received.
    pub fn status(&self) -> StageStatus {
        self.meeting.inner.shared.lock().mirror.status()
    }

    /// This participant's place in the request queue while it waits (1 = next in line),
    /// kept current by the events; `None` when it is not REQUESTED.
    pub fn place_in_queue(&self) -> Option<usize> {
        self.meeting.inner.shared.lock().mirror.place_in_queue()
    }

    /// The request queue, oldest first. Needs `accept_stage_requests`.
    pub async fn get_access_requests(&self) -> Result<Vec<AccessRequest>, ClientError> {
        match self.meeting.call(Call::GetAccessRequests).await? {
            CallResult::Requests(requests) => Ok(requests),
            other => Err(unexpected("stage.getAccessRequests", &other)),
        }
    }

    /// Asks to come on stage: OFF -> REQUESTED (ACCEPTED at once for an ALLOWED preset).
    /// Returns the new status.
    pub async fn request_access(&self) -> Result<StageStatus, ClientError> {
        self.status_call(Call::RequestAccess).await
    }

    /// Withdraws a request: REQUESTED -> OFF.
    pub async fn cancel_request_access(&self) -> Result<StageStatus, ClientError> {
        self.status_call(Call::CancelRequestAccess).await
    }

    /// Grants requests or invites (REQUESTED or OFF -> ACCEPTED). All or nothing.
    pub async fn grant_access(&self, user_ids: &[UserId]) -> Result<(), ClientError> {
        self.batch_call(Call::GrantAccess {
            user_ids: user_ids.to_vec(),
        })
        .await
    }

    /// Denies requests (REQUESTED -> OFF). All or nothing.
    pub async fn deny_access(&self, user_ids: &[UserId]) -> Result<(), ClientError> {
        self.batch_call(Call::DenyAccess {
            user_ids: user_ids.to_vec(),
        })
        .await
    }

    /// Goes on stage (from ACCEPTED, or directly with an ALLOWED preset). `stage_full` at
    /// the meeting's limit.
    pub async fn join(&self) -> Result<StageStatus, ClientError> {
        self.status_call(Call::Join).await
    }

    /// Leaves the stage (from ON), or declines an invitation (from ACCEPTED).
    pub async fn leave(&self) -> Result<StageStatus, ClientError> {
        self.status_call(Call::Leave).await
    }

    /// Takes participants off the stage (ON or ACCEPTED -> OFF). All or nothing.
    pub async fn kick(&self, user_ids: &[UserId]) -> Result<(), ClientError> {
        self.batch_call(Call::Kick {
            user_ids: user_ids.to_vec(),
        })
        .await
    }

    async fn status_call(&self, call: Call) -> Result<StageStatus, ClientError> {
        let name = call.name();
        match self.meeting.call(call).await? {
            CallResult::Status { stage_status } => Ok(stage_status),
            other => Err(unexpected(name, &other)),
        }
    }

    async fn batch_call(&self, call: Call) -> Result<(), ClientError> {
        self.meeting.call(call).await.map(|_| ())
    }
}

/// Media signaling: SDP offers to the server's SFU and its answers. The WebRTC side is in
/// [`crate::rtc`]; [`crate::media`] ties both to the stage.
impl Meeting {
    /// Offers to publish (sendonly audio and/or video); returns the SFU's answer. Only
    /// while ON_STAGE (`invalid_state` otherwise).
    pub async fn publish_offer(&self, sdp: String) -> Result<String, ClientError> {
        self.publish_offer_with_layers(sdp, Vec::new()).await
    }

    /// [`Meeting::publish_offer`] for a simulcast video: `layers` describes its layers,
    /// lowest first (their RIDs as in the offer's `a=simulcast:send`). A new publication
    /// starts with every layer wanted ([`Meeting::wanted_layers`] is `None` again) until
    /// the SFU says otherwise.
    pub async fn publish_offer_with_layers(
        &self,
        sdp: String,
        layers: Vec<onstage_proto::VideoLayer>,
    ) -> Result<String, ClientError> {
        self.inner.shared.wanted_layers.send_replace(None);
        sdp_result(
            "media.publish",
            self.call(Call::Publish { sdp, layers }).await?,
        )
    }

    /// The simulcast layers (RIDs) of our video that the SFU last said anyone takes
    /// (`None` until it says: every layer is wanted). The others need not be encoded.
    pub fn wanted_layers(&self) -> tokio::sync::watch::Receiver<Option<Vec<String>>> {
        self.inner.shared.wanted_layers.subscribe()
    }

    /// Stops publishing.
    pub async fn unpublish(&self) -> Result<(), ClientError> {
        self.call(Call::Unpublish).await.map(|_| ())
    }

    /// Offers to receive `user_id`'s media (recvonly audio + video); returns the SFU's
    /// answer. `user_id` must be ON_STAGE.
    pub async fn subscribe_offer(
        &self,
        user_id: &UserId,
        sdp: String,
    ) -> Result<String, ClientError> {
        let call = Call::Subscribe {
            user_id: user_id.clone(),
            sdp,
        };
        sdp_result("media.subscribe", self.call(call).await?)
    }

    /// Who publishes media right now and what: `(audio, video)` by participant.
    pub fn publishing(&self) -> std::collections::BTreeMap<UserId, onstage_proto::MediaKinds> {
        self.inner.shared.lock().mirror.publishing().clone()
    }

    /// Tells everyone what this participant's publication carries now (mic muted, camera
    /// off). Only while ON_STAGE.
    pub async fn media_state(&self, audio: bool, video: bool) -> Result<(), ClientError> {
        self.call(Call::MediaState { audio, video })
            .await
            .map(|_| ())
    }

    /// Tells the SFU how large each stage video is shown here (`media.tiles`), so that it
    /// sends no larger a simulcast layer than fills a tile, and no video for a tile of 0x0
    /// (a hidden window). Each call replaces the last; a video not listed gets what the
    /// bandwidth carries.
    pub async fn set_tiles(&self, tiles: Vec<onstage_proto::TileSize>) -> Result<(), ClientError> {
        self.call(Call::Tiles {
            tiles: tiles.clone(),
        })
        .await?;
        self.inner.shared.lock().tiles = Some(tiles);
        Ok(())
    }

    /// The tile sizes last told with [`Meeting::set_tiles`] (`None`: never told).
    pub fn tiles(&self) -> Option<Vec<onstage_proto::TileSize>> {
        self.inner.shared.lock().tiles.clone()
    }

    pub(crate) fn downgrade(&self) -> WeakMeeting {
        WeakMeeting {
            inner: Arc::downgrade(&self.inner),
        }
    }

    /// Stops receiving `user_id`'s media.
    pub async fn unsubscribe(&self, user_id: &UserId) -> Result<(), ClientError> {
        let call = Call::Unsubscribe {
            user_id: user_id.clone(),
        };
        self.call(call).await.map(|_| ())
    }
}

fn sdp_result(call: &str, result: CallResult) -> Result<String, ClientError> {
    match result {
        CallResult::Sdp { sdp } => Ok(sdp),
        other => Err(unexpected(call, &other)),
    }
}

fn unexpected(call: &str, result: &CallResult) -> ClientError {
    ClientError::Protocol(format!("unexpected result for {call}: {result:?}"))
}

/// A subscriber's events, in order. Use [`EventStream::recv`] or the
/// [`futures_util::Stream`] impl. Ends after the meeting is over.
#[derive(Debug)]
pub struct EventStream {
    rx: mpsc::UnboundedReceiver<MeetingEvent>,
}

impl EventStream {
    pub(crate) fn new(rx: mpsc::UnboundedReceiver<MeetingEvent>) -> Self {
        Self { rx }
    }

    /// The next event; `None` once the meeting is over and every event was read.
    pub async fn recv(&mut self) -> Option<MeetingEvent> {
        self.rx.recv().await
    }

    /// The next event if one is ready.
    pub fn try_recv(&mut self) -> Option<MeetingEvent> {
        self.rx.try_recv().ok()
    }
}

impl futures_util::Stream for EventStream {
    type Item = MeetingEvent;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<MeetingEvent>> {
        self.rx.poll_recv(cx)
    }
}
