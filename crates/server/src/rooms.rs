//! Live meetings: one tokio task per meeting owns its [`Room`] and every connection's
//! outbound queue.
//!
//! The task is the only thing that touches the room, so the room needs no lock. After every
//! input it drains the room's events, serializes each one once and hands the same bytes to
//! every connection's bounded queue. A connection that lets its queue fill up is dropped
//! (its socket task then says `goodbye: too_slow`); the room never waits for anyone.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::extract::ws::Utf8Bytes;
use onstage_proto::{
    Call, CallResult, CloseReason, ErrorBody, ErrorCode, IceServer, MediaEvent, MediaKinds,
    MeetingId, PeerId, RoomEvent, RoomSnapshot, ServerMessage, StageStatus, UnixMillis, UserId,
    Welcome,
};
use onstage_room::{Member, Room, RoomConfig};
use tokio::sync::{mpsc, oneshot};

use crate::keeper::SeatKeeper;
use crate::metrics::Metrics;
use crate::sfu::{Notice, NoticeSink, Sfu, SfuError, Tile};
use crate::storage::Storage;

/// Commands queued to one room task at most; senders wait beyond it.
const ROOM_QUEUE: usize = 1024;

/// Milliseconds since the Unix epoch, the room's clock.
pub fn now_ms() -> UnixMillis {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// What a room task sends to one connection.
#[derive(Debug, Clone)]
pub enum Outbound {
    /// A serialized `ServerMessage`, shared between every receiver.
    Text(Utf8Bytes),
    /// Say goodbye with this reason and close.
    Goodbye(CloseReason),
    /// Close without a goodbye: the connection was refused, and said why in the message
    /// before (the client may try again later).
    Close,
}

/// The room's side of one connection.
#[derive(Debug, Clone)]
pub struct ConnHandle {
    pub id: u64,
    pub tx: mpsc::Sender<Outbound>,
    /// The token generation the connection authenticated with.
    pub generation: u64,
}

/// A new session id: 96 random bits, hex. Unique enough for a meeting's sessions and
/// shorter than a UUID, which matters because every welcome lists every peer.
fn new_peer_id() -> PeerId {
    let bits: u128 = rand::random::<u128>() >> 32;
    PeerId::new(format!("{bits:024x}"))
}

/// Serializes a server message for the wire.
pub fn encode(msg: &ServerMessage) -> Utf8Bytes {
    match serde_json::to_string(msg) {
        Ok(s) => Utf8Bytes::from(s),
        // Our own types always serialize; keep the connection alive regardless.
        Err(e) => Utf8Bytes::from(format!(
            r#"{{"type":"error","error":{{"code":"internal","message":"{e}"}}}}"#
        )),
    }
}

/// What a participant's welcome tells it alone.
#[derive(Debug, Clone, Default)]
pub struct Personal {
    /// TURN relays with credentials minted for it.
    pub ice_servers: Vec<IceServer>,
    /// Its own token, when it joined with a role invite (the server made it for this join).
    pub token: Option<String>,
}

enum Command {
    Connect {
        member: Member,
        grace_ms: u64,
        personal: Personal,
        conn: ConnHandle,
        done: oneshot::Sender<()>,
    },
    Disconnect {
        user: UserId,
        conn_id: u64,
    },
    Call {
        user: UserId,
        conn_id: u64,
        request_id: u64,
        call: Call,
    },
    Snapshot {
        reply: oneshot::Sender<RoomSnapshot>,
    },
    /// The SFU answered a `media.publish` or `media.subscribe`.
    MediaAnswer(MediaAnswer),
    /// Storage carried out a host's `meeting.removeParticipant` or `meeting.setPreset`.
    StorageAnswer(StorageAnswer),
    /// The participant was issued a token of `generation`: a connection with an older one
    /// ends (`goodbye: revoked`) and none is seated again.
    Revoke {
        user: UserId,
        generation: u64,
    },
    /// An admin removed the participant (whose token was of `generation`): its connection
    /// ends (`goodbye: removed`) and it leaves the room.
    Remove {
        user: UserId,
        generation: u64,
    },
    /// An admin deleted the meeting: every connection ends (`goodbye: meeting_deleted`)
    /// and the room with them.
    Delete,
    /// The server is stopping: every connection is told `goodbye: shutdown` (they come back
    /// and resume after the restart); `done` is dropped once the stage is in storage.
    Shutdown {
        done: oneshot::Sender<()>,
    },
    /// The meeting's home lock is lost (this node is a cluster member and another node
    /// took it, or the lease ran out by our clock): the room stops being run here at once.
    /// Every connection ends with `goodbye: shutdown` and loses its media; the stage stays
    /// kept, and the clients reconnect.
    StepDown,
}

/// Forgets a deleted meeting's stage, after its room's last write.
async fn keeper_storage_clear(rooms: &Rooms, meeting: &MeetingId) {
    if let Some(storage) = &rooms.storage {
        if let Err(e) = storage.save_seats(meeting.clone(), Vec::new()).await {
            tracing::error!(meeting = %meeting, error = %e, "could not forget a deleted meeting's stage");
        }
    }
}

/// The SFU's answer to a media call, back in the room task.
struct MediaAnswer {
    user: UserId,
    conn_id: u64,
    request_id: u64,
    name: &'static str,
    /// The SDP answer and, for a publish, the kinds the SFU accepted.
    result: Result<(String, Option<MediaKinds>), SfuError>,
}

/// What storage did for a host's call, back in the room task.
struct StorageAnswer {
    user: UserId,
    conn_id: u64,
    request_id: u64,
    name: &'static str,
    /// Whom the call was about.
    target: UserId,
    result: Result<StorageOutcome, crate::error::StorageError>,
}

enum StorageOutcome {
    Removed(crate::storage::RemoveParticipant),
    PresetSet(crate::storage::SetPreset),
}

/// The set of live rooms. Cheap to clone.
#[derive(Clone)]
pub struct Rooms {
    inner: Arc<Mutex<HashMap<MeetingId, mpsc::Sender<Command>>>>,
    metrics: Arc<Metrics>,
    grace_ms: u64,
    /// Where media goes; `None` runs signaling only (media calls get `internal`).
    sfu: Option<Sfu>,
    /// Counts revocations (re-issued tokens, removed participants, deleted meetings). A
    /// connection checked against storage before one of them may be seated after it; it
    /// compares this count before the check and after seating (see [`Rooms::recheck`]).
    revocations: Arc<AtomicU64>,
    /// Where each room keeps its stage, to be given back after a restart; `None` keeps
    /// nothing (rooms of unit tests).
    storage: Option<Storage>,
    /// When this server started: a stage given back after a restart counts its grace
    /// period from then (the connections dropped when the last server ended).
    started_at: UnixMillis,
    /// This node's cluster membership: each room takes its meeting's home lock before it
    /// runs and gives it up when it ends. `None`: a node on its own.
    cluster: Option<onstage_cluster::Cluster>,
}

impl std::fmt::Debug for Rooms {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Rooms").finish_non_exhaustive()
    }
}

static NEXT_CONN_ID: AtomicU64 = AtomicU64::new(1);

/// A fresh connection id.
pub fn next_conn_id() -> u64 {
    NEXT_CONN_ID.fetch_add(1, Ordering::Relaxed)
}

impl Rooms {
    pub fn new(metrics: Arc<Metrics>, grace_ms: u64, sfu: Option<Sfu>) -> Self {
        Self {
            inner: Arc::default(),
            metrics,
            grace_ms,
            sfu,
            revocations: Arc::default(),
            storage: None,
            started_at: now_ms(),
            cluster: None,
        }
    }

    /// Rooms that run only while they hold their meeting's home lock in `cluster`.
    pub fn with_cluster(mut self, cluster: onstage_cluster::Cluster) -> Self {
        self.cluster = Some(cluster);
        self
    }

    /// This node's cluster membership, if it is a member.
    pub fn cluster(&self) -> Option<&onstage_cluster::Cluster> {
        self.cluster.as_ref()
    }

    /// The live rooms' meetings.
    pub fn live_meetings(&self) -> Vec<MeetingId> {
        self.lock()
            .iter()
            .filter(|(_, tx)| !tx.is_closed())
            .map(|(meeting, _)| meeting.clone())
            .collect()
    }

    /// The meeting's home lock is lost: its room ends here now (see [`Command::StepDown`]).
    /// Out of the registry first, so a connection arriving from now on starts a new room,
    /// which must take the lock again before it runs.
    pub async fn step_down(&self, meeting: &MeetingId) {
        let tx = self.lock().remove(meeting);
        if let Some(tx) = tx {
            let _ = tx.send(Command::StepDown).await;
        }
    }

    /// Rooms that keep their stage in `storage` and start from what it kept.
    pub fn with_storage(mut self, storage: Storage) -> Self {
        self.storage = Some(storage);
        self
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<MeetingId, mpsc::Sender<Command>>> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn live(&self, meeting: &MeetingId) -> Option<mpsc::Sender<Command>> {
        self.lock()
            .get(meeting)
            .filter(|tx| !tx.is_closed())
            .cloned()
    }

    fn get_or_start(
        &self,
        meeting: &MeetingId,
        title: &str,
        config: RoomConfig,
    ) -> mpsc::Sender<Command> {
        let mut map = self.lock();
        if let Some(tx) = map.get(meeting).filter(|tx| !tx.is_closed()) {
            return tx.clone();
        }
        let (tx, rx) = mpsc::channel(ROOM_QUEUE);
        let task = RoomTask {
            meeting: meeting.clone(),
            title: title.to_owned(),
            room: Room::new(config),
            conns: HashMap::new(),
            metrics: self.metrics.clone(),
            rooms: self.clone(),
            self_tx: tx.downgrade(),
            participants: 0,
            sfu: self.sfu.clone(),
            fences: HashMap::new(),
            keeper: None,
            ended: false,
            home: None,
        };
        tokio::spawn(task.run(rx));
        self.metrics.rooms.inc();
        map.insert(meeting.clone(), tx.clone());
        tx
    }

    /// Seats a connection in its meeting's room (starting the room with `config` if needed;
    /// its grace period is always the one these rooms were made with). The welcome (with
    /// `ice_servers`, the participant's relay credentials) is the first thing queued on
    /// `conn`.
    pub async fn connect(
        &self,
        meeting: &MeetingId,
        title: &str,
        config: RoomConfig,
        member: Member,
        personal: Personal,
        conn: ConnHandle,
    ) {
        // A room may be closing down just as we arrive; then start a new one.
        for _ in 0..3 {
            let tx = self.get_or_start(
                meeting,
                title,
                RoomConfig {
                    grace_ms: self.grace_ms,
                    ..config
                },
            );
            let (done, wait) = oneshot::channel();
            let cmd = Command::Connect {
                member: member.clone(),
                grace_ms: self.grace_ms,
                personal: personal.clone(),
                conn: conn.clone(),
                done,
            };
            if tx.send(cmd).await.is_ok() && wait.await.is_ok() {
                return;
            }
        }
        let _ = conn.tx.try_send(Outbound::Goodbye(CloseReason::Shutdown));
    }

    pub async fn disconnect(&self, meeting: &MeetingId, user: UserId, conn_id: u64) {
        if let Some(tx) = self.live(meeting) {
            let _ = tx.send(Command::Disconnect { user, conn_id }).await;
        }
    }

    /// Hands a call to the room; the reply arrives on the connection's queue. `false` when
    /// the room is gone.
    pub async fn call(
        &self,
        meeting: &MeetingId,
        user: UserId,
        conn_id: u64,
        request_id: u64,
        call: Call,
    ) -> bool {
        match self.live(meeting) {
            Some(tx) => tx
                .send(Command::Call {
                    user,
                    conn_id,
                    request_id,
                    call,
                })
                .await
                .is_ok(),
            None => false,
        }
    }

    /// The live room's snapshot, or `None` when nobody is in the meeting.
    pub async fn snapshot(&self, meeting: &MeetingId) -> Option<RoomSnapshot> {
        let tx = self.live(meeting)?;
        let (reply, rx) = oneshot::channel();
        tx.send(Command::Snapshot { reply }).await.ok()?;
        rx.await.ok()
    }

    /// How many revocations there have been. Read it before checking a token against
    /// storage and compare after seating the connection.
    pub fn revocations(&self) -> u64 {
        self.revocations.load(Ordering::SeqCst)
    }

    /// Storage is updated first, then the count, then the live room: a connection either
    /// read storage after the change, or is seated before the room hears of it, or sees
    /// the count move and checks again.
    fn revoked(&self) {
        self.revocations.fetch_add(1, Ordering::SeqCst);
    }

    /// The participant was issued a token of `generation` (storage already says so): a live
    /// connection with an older token ends with `goodbye: revoked`. The participant keeps
    /// its place for the grace period, so the holder of the new token resumes it.
    pub async fn revoke(&self, meeting: &MeetingId, user: UserId, generation: u64) {
        self.revoked();
        if let Some(tx) = self.live(meeting) {
            let _ = tx.send(Command::Revoke { user, generation }).await;
        }
    }

    /// The participant (whose token was of `generation`) was removed from storage: its live
    /// connection ends with `goodbye: removed` and it leaves the room (off the stage and
    /// the queue first), which everyone hears.
    pub async fn remove(&self, meeting: &MeetingId, user: UserId, generation: u64) {
        self.revoked();
        if let Some(tx) = self.live(meeting) {
            let _ = tx.send(Command::Remove { user, generation }).await;
        }
    }

    /// The meeting was deleted from storage: every live connection ends with
    /// `goodbye: meeting_deleted` and the room is dropped.
    pub async fn delete(&self, meeting: &MeetingId) {
        self.revoked();
        // Out of the registry first, so nobody is seated in the room that is ending.
        let tx = self.lock().remove(meeting);
        if let Some(tx) = tx {
            let _ = tx.send(Command::Delete).await;
        }
    }

    /// After seating a connection checked against storage with `revocations_before`
    /// revocations: if one happened meanwhile, checks the token again and applies what
    /// changed to the room, which then ends this connection with the matching goodbye.
    /// Costs nothing when no revocation happened, the usual case.
    pub async fn recheck(
        &self,
        storage: &crate::storage::Storage,
        revocations_before: u64,
        meeting: &MeetingId,
        user: &UserId,
        generation: u64,
    ) {
        if self.revocations() == revocations_before {
            return;
        }
        match storage.load_member(meeting.clone(), user.clone()).await {
            Ok(Some(member)) if member.participant.token_generation == generation => {}
            Ok(Some(member)) => {
                self.revoke(meeting, user.clone(), member.participant.token_generation)
                    .await
            }
            Ok(None) => match storage.get_meeting(meeting.clone()).await {
                Ok(Some(_)) => self.remove(meeting, user.clone(), generation).await,
                Ok(None) => self.delete(meeting).await,
                Err(e) => tracing::error!(error = %e, "storage failure re-checking a token"),
            },
            Err(e) => tracing::error!(error = %e, "storage failure re-checking a token"),
        }
    }

    /// Stops every room task: each says `goodbye: shutdown` to its connections and ends.
    pub async fn shutdown(&self) {
        let rooms: Vec<_> = self.lock().drain().map(|(_, tx)| tx).collect();
        let mut stopped = Vec::with_capacity(rooms.len());
        for tx in rooms {
            let (done, wait) = oneshot::channel();
            // Waits only while a room's queue is full; a room that is gone is fine.
            if tx.send(Command::Shutdown { done }).await.is_ok() {
                stopped.push(wait);
            }
        }
        // Each room's stage is in storage once its `done` is dropped.
        for wait in stopped {
            let _ = wait.await;
        }
    }

    /// Removes a room from the registry if it is still the registered one for its meeting.
    fn forget(&self, meeting: &MeetingId, ours: &mpsc::WeakSender<Command>) {
        let mut map = self.lock();
        let registered = match (map.get(meeting), ours.upgrade()) {
            (Some(registered), Some(ours)) => registered.same_channel(&ours),
            _ => false,
        };
        if registered {
            map.remove(meeting);
        }
    }

    /// Removes an empty room from the registry, but only when no command is queued and no
    /// caller holds a sender (all senders are handed out under this lock, so nobody can be
    /// about to send). Returns whether the room was removed and its task should end.
    fn forget_if_idle(
        &self,
        meeting: &MeetingId,
        ours: &mpsc::WeakSender<Command>,
        rx: &mpsc::Receiver<Command>,
    ) -> bool {
        let mut map = self.lock();
        let Some(ours) = ours.upgrade() else {
            return true; // already dropped from the registry (shutdown)
        };
        let idle = map.get(meeting).is_some_and(|registered| {
            // Two strong senders: the registry's and the `ours` just upgraded.
            registered.same_channel(&ours) && ours.strong_count() == 2 && rx.is_empty()
        });
        if idle {
            map.remove(meeting);
        }
        idle
    }
}

struct RoomTask {
    meeting: MeetingId,
    /// The meeting's title, told in every welcome.
    title: String,
    room: Room,
    conns: HashMap<UserId, ConnHandle>,
    metrics: Arc<Metrics>,
    rooms: Rooms,
    self_tx: mpsc::WeakSender<Command>,
    participants: i64,
    sfu: Option<Sfu>,
    /// Per participant, the oldest token generation still seated, and the goodbye for an
    /// older one: raised by revocations and removals, and by every connection (its
    /// generation was the current one when it was checked). Keeps a connection checked
    /// just before a revocation from taking a seat after it.
    fences: HashMap<UserId, (u64, CloseReason)>,
    /// Keeps the stage in storage as it changes (when the rooms have storage).
    keeper: Option<SeatKeeper>,
    /// A host ended the meeting (`meeting.end`): the task closes every connection and ends.
    ended: bool,
    /// The meeting's home lock, while this node is a cluster member.
    home: Option<onstage_cluster::HomeLease>,
}

impl RoomTask {
    async fn run(mut self, mut rx: mpsc::Receiver<Command>) {
        tracing::debug!(meeting = %self.meeting, "room started");
        // In a cluster the room runs only on the meeting's home: connections wait in the
        // queue while the lock is taken (for up to a lease, the longest a dead home can
        // hold it), and are turned away to come back later if another node keeps it.
        if let Some(cluster) = self.rooms.cluster.clone() {
            let wait = cluster.lease_timing().ttl() + Duration::from_secs(1);
            match cluster.take_home_within(self.meeting.as_str(), wait).await {
                Ok(lease) => {
                    tracing::info!(meeting = %self.meeting, epoch = %lease.epoch(), "this node is the meeting's home");
                    self.home = Some(lease);
                }
                Err(e) => {
                    tracing::warn!(meeting = %self.meeting, error = %e, code = e.code(), "not the meeting's home; turning its connections away");
                    self.turn_away(rx).await;
                    self.metrics.rooms.dec();
                    return;
                }
            }
        }
        // Connections wait in the queue while the stage a restart left behind is read.
        if let Some(storage) = self.rooms.storage.clone() {
            let kept = match storage.load_seats(self.meeting.clone()).await {
                Ok(seats) => seats,
                Err(e) => {
                    tracing::error!(meeting = %self.meeting, error = %e, "could not read the kept stage; starting with an empty one");
                    Vec::new()
                }
            };
            if !kept.is_empty() {
                tracing::info!(meeting = %self.meeting, seats = kept.len(), "giving the stage back after a restart");
                self.room = Room::restore(self.room.config(), kept.clone(), self.rooms.started_at);
                self.flush();
            }
            self.keeper = Some(SeatKeeper::start(storage, self.meeting.clone(), kept));
        }
        let mut shutdown_done = None;
        let mut deleted = false;
        loop {
            let deadline = self.room.poll_timeout();
            let cmd = match deadline {
                Some(at) => {
                    let wait = Duration::from_millis(at.saturating_sub(now_ms()));
                    match tokio::time::timeout(wait, rx.recv()).await {
                        Ok(cmd) => cmd,
                        Err(_) => {
                            self.room.handle_timeout(now_ms());
                            self.flush();
                            if self.can_close(&rx) {
                                break;
                            }
                            continue;
                        }
                    }
                }
                None => rx.recv().await,
            };
            let Some(cmd) = cmd else { break };
            if let Command::Shutdown { done } = cmd {
                for conn in self.conns.values() {
                    let _ = conn.tx.try_send(Outbound::Goodbye(CloseReason::Shutdown));
                }
                // The stage stays kept: everyone resumes after the restart.
                shutdown_done = Some(done);
                break;
            }
            if matches!(cmd, Command::StepDown) {
                tracing::warn!(meeting = %self.meeting, "the meeting's home lock is lost; ending its sessions here");
                let users: Vec<UserId> = self.conns.keys().cloned().collect();
                for user in users {
                    self.end_conn(&user, CloseReason::Shutdown);
                }
                break;
            }
            if matches!(cmd, Command::Delete) {
                tracing::info!(meeting = %self.meeting, "meeting deleted; ending its sessions");
                let users: Vec<UserId> = self.conns.keys().cloned().collect();
                for user in users {
                    if let Some(conn) = self.conns.remove(&user) {
                        let _ = conn
                            .tx
                            .try_send(Outbound::Goodbye(CloseReason::MeetingDeleted));
                    }
                    self.drop_media(&user);
                }
                deleted = true;
                break;
            }
            self.handle(cmd);
            self.flush();
            if self.ended {
                self.end_meeting();
                break;
            }
            if self.can_close(&rx) {
                break;
            }
        }
        if let Some(keeper) = self.keeper.take() {
            keeper.finish().await;
            if deleted {
                // A write may have been under way as the meeting was deleted.
                keeper_storage_clear(&self.rooms, &self.meeting).await;
            }
        }
        if let (Some(cluster), Some(lease)) = (&self.rooms.cluster, self.home.take()) {
            // Compare-and-delete: a lock lost meanwhile to another node stays theirs.
            if let Err(e) = cluster.release_home(&lease).await {
                tracing::warn!(meeting = %self.meeting, error = %e, "could not give the meeting's home up; it runs out by its TTL");
            }
        }
        drop(shutdown_done);
        self.metrics.participants.dec_by(self.participants);
        self.metrics.rooms.dec();
        tracing::debug!(meeting = %self.meeting, "room closed");
    }

    /// The room could not run here (another node is the meeting's home): out of the
    /// registry, then every connection queued for it is told `goodbye: shutdown` (the
    /// client comes back later) and everything else queued is dropped.
    async fn turn_away(&mut self, mut rx: mpsc::Receiver<Command>) {
        self.rooms.forget(&self.meeting, &self.self_tx);
        rx.close();
        while let Some(cmd) = rx.recv().await {
            if let Command::Connect { conn, done, .. } = cmd {
                let _ = conn.tx.try_send(Outbound::Goodbye(CloseReason::Shutdown));
                let _ = done.send(());
            }
        }
    }

    /// A host ended the meeting; everyone has heard `meeting_ended` (and the host its
    /// reply). Out of the registry first, so that a join from now on starts a new room
    /// (connections queued behind the end are turned back by the dropped queue and retry
    /// into it), then every connection says `goodbye: meeting_ended` and loses its media.
    /// The room's stage is empty, so the keeper forgets the kept seats.
    fn end_meeting(&mut self) {
        tracing::info!(meeting = %self.meeting, "meeting ended by a host; ending its sessions");
        self.rooms.forget(&self.meeting, &self.self_tx);
        let users: Vec<UserId> = self.conns.keys().cloned().collect();
        for user in users {
            self.end_conn(&user, CloseReason::MeetingEnded);
        }
    }

    /// Nobody left and nobody about to arrive: the room can go (the meeting stays in
    /// storage; a later join starts a new room). Unregisters it when so.
    fn can_close(&self, rx: &mpsc::Receiver<Command>) -> bool {
        self.room.is_empty()
            && self.conns.is_empty()
            && self.rooms.forget_if_idle(&self.meeting, &self.self_tx, rx)
    }

    fn handle(&mut self, cmd: Command) {
        let now = now_ms();
        match cmd {
            Command::Connect {
                member,
                grace_ms,
                personal: Personal { ice_servers, token },
                conn,
                done,
            } => {
                let user = member.user_id.clone();
                let preset = member.preset.clone();
                // A token older than one already seen for this participant was checked
                // before a revocation reached storage: it gets no seat.
                if let Some(reason) = self.fenced(&user, conn.generation) {
                    tracing::info!(meeting = %self.meeting, user = %user, %reason, "a superseded token is not seated");
                    let _ = conn.tx.try_send(Outbound::Goodbye(reason));
                    let _ = done.send(());
                    return;
                }
                // A participant that connects and drops in a loop would tell everyone each
                // time; once its budget is spent, it is refused before anyone hears of it.
                if let Err(refused) = self.room.may_arrive(&user, now) {
                    // Debug only: a client looping on this would flood an info log.
                    tracing::debug!(meeting = %self.meeting, user = %user, "refusing a connection: its arrivals and changes are over budget");
                    self.metrics.refused_arrivals.inc();
                    let error = ServerMessage::Error {
                        error: ErrorBody::from(refused),
                    };
                    let _ = conn.tx.try_send(Outbound::Text(encode(&error)));
                    let _ = conn.tx.try_send(Outbound::Close);
                    let _ = done.send(());
                    return;
                }
                self.raise_fence(&user, conn.generation, CloseReason::Revoked);
                let connected = self.room.connect(member, new_peer_id(), now);
                if let Some(old) = self.conns.remove(&user) {
                    // Same token generation: the same participant connected again (another
                    // window). An older one: its token was superseded by the newcomer's.
                    let reason = if old.generation < conn.generation {
                        CloseReason::Revoked
                    } else {
                        CloseReason::Replaced
                    };
                    let _ = old.tx.try_send(Outbound::Goodbye(reason));
                    // The old connection's peer connections belong to the old client (the
                    // room has ended its publication).
                    self.drop_media(&user);
                }
                // Everyone else hears of the arrival before the newcomer's snapshot is taken,
                // so the newcomer sees each event exactly once: in the snapshot or after it.
                self.flush();
                let welcome = ServerMessage::Welcome(Box::new(Welcome {
                    meeting_id: self.meeting.clone(),
                    title: self.title.clone(),
                    user_id: user.clone(),
                    peer_id: connected.peer_id,
                    resumed: connected.resumed,
                    preset,
                    grace_ms,
                    snapshot: self.room.snapshot(),
                    publishing: self.room.publishing(),
                    ice_servers,
                    token,
                }));
                if conn.tx.try_send(Outbound::Text(encode(&welcome))).is_ok() {
                    self.conns.insert(user, conn);
                }
                let _ = done.send(());
            }
            Command::Disconnect { user, conn_id } => {
                if self.conns.get(&user).is_some_and(|c| c.id == conn_id) {
                    self.conns.remove(&user);
                    self.drop_media(&user);
                    self.room.disconnect(&user, now);
                }
            }
            Command::Call {
                user,
                conn_id,
                request_id,
                call,
            } => {
                let Some(conn) = self.conns.get(&user).filter(|c| c.id == conn_id).cloned() else {
                    return; // a connection that was replaced or dropped: nobody to answer
                };
                let name = call.name();
                let leaving = matches!(call, Call::LeaveMeeting);
                let ending = matches!(call, Call::EndMeeting);
                let media = call.is_media().then(|| call.clone());
                let stored = call.needs_storage().then(|| call.clone());
                let mut outcome: Result<CallResult, ErrorBody> = self
                    .room
                    .handle_call(&user, call, now)
                    .map_err(ErrorBody::from);
                if let (Ok(_), Some(call)) = (&outcome, media) {
                    // The room allows it; the SFU carries it out. Publish and subscribe
                    // are answered when the SFU has answered.
                    match self.media_call(&user, conn_id, request_id, call) {
                        Ok(Some(result)) => outcome = Ok(result),
                        Ok(None) => return,
                        Err(e) => outcome = Err(e),
                    }
                }
                if let (Ok(_), Some(call)) = (&outcome, stored) {
                    // The room allows it; storage goes first (answered in
                    // [`Self::storage_answered`]), so that what a restart would find is
                    // never behind what everyone was told.
                    match self.storage_call(&user, conn_id, request_id, call) {
                        Ok(()) => return,
                        Err(e) => outcome = Err(e),
                    }
                }
                self.count_call(name, &outcome);
                // Events first: when the reply arrives, the caller's mirror already shows
                // what the call changed.
                self.flush();
                // Ended whether or not the host's reply can be delivered.
                self.ended |= ending && outcome.is_ok();
                if !self.reply(&user, &conn, request_id, outcome) {
                    return;
                }
                if leaving {
                    self.conns.remove(&user);
                    let _ = conn.tx.try_send(Outbound::Goodbye(CloseReason::Left));
                }
            }
            Command::Snapshot { reply } => {
                let _ = reply.send(self.room.snapshot());
            }
            Command::MediaAnswer(answer) => self.media_answered(answer),
            Command::StorageAnswer(answer) => self.storage_answered(answer),
            Command::Revoke { user, generation } => {
                self.raise_fence(&user, generation, CloseReason::Revoked);
                if self
                    .conns
                    .get(&user)
                    .is_some_and(|c| c.generation < generation)
                {
                    tracing::info!(meeting = %self.meeting, user = %user, "token revoked; ending its session");
                    self.end_conn(&user, CloseReason::Revoked);
                    // Like a dropped connection: the place is kept for the grace period,
                    // for the holder of the new token.
                    self.room.disconnect(&user, now);
                }
            }
            Command::Remove { user, generation } => self.remove_member(&user, generation, now),
            Command::Delete | Command::Shutdown { .. } | Command::StepDown => {}
        }
    }

    /// The participant (whose token was of `generation`) is gone from storage: its
    /// session ends with `goodbye: removed` and it leaves the room.
    fn remove_member(&mut self, user: &UserId, generation: u64, now: UnixMillis) {
        self.raise_fence(user, generation.saturating_add(1), CloseReason::Removed);
        if self
            .conns
            .get(user)
            .is_some_and(|c| c.generation > generation)
        {
            // Added again since, and seated with the new token: that session is not the
            // one removed.
            return;
        }
        self.end_conn(user, CloseReason::Removed);
        if self.room.remove_member(user, now) {
            tracing::info!(meeting = %self.meeting, user = %user, "participant removed");
        }
    }

    /// Writes a host's removal or preset change to storage; the answer comes back as
    /// [`Command::StorageAnswer`].
    fn storage_call(
        &mut self,
        user: &UserId,
        conn_id: u64,
        request_id: u64,
        call: Call,
    ) -> Result<(), ErrorBody> {
        let Some(storage) = self.rooms.storage.clone() else {
            return Err(ErrorBody::new(
                ErrorCode::Internal,
                "this server keeps no participants",
            ));
        };
        let name = call.name();
        let meeting = self.meeting.clone();
        let (target, work): (UserId, futures_util::future::BoxFuture<'static, _>) = match call {
            Call::RemoveParticipant { user_id } => (
                user_id.clone(),
                Box::pin(async move {
                    storage
                        .remove_participant(meeting, user_id)
                        .await
                        .map(StorageOutcome::Removed)
                }),
            ),
            Call::SetPreset { user_id, preset } => (
                user_id.clone(),
                Box::pin(async move {
                    storage
                        .set_participant_preset(meeting, user_id, preset)
                        .await
                        .map(StorageOutcome::PresetSet)
                }),
            ),
            other => {
                return Err(ErrorBody::new(
                    ErrorCode::Internal,
                    format!("{} is not carried out by storage", other.name()),
                ))
            }
        };
        let user = user.clone();
        self.answer_later(async move {
            Command::StorageAnswer(StorageAnswer {
                user,
                conn_id,
                request_id,
                name,
                target,
                result: work.await,
            })
        })
    }

    /// Storage has carried out a host's call: the room follows, then the host is answered.
    fn storage_answered(&mut self, answer: StorageAnswer) {
        use crate::storage::{RemoveParticipant, SetPreset};
        let StorageAnswer {
            user,
            conn_id,
            request_id,
            name,
            target,
            result,
        } = answer;
        let now = now_ms();
        let outcome = match result {
            Ok(StorageOutcome::Removed(RemoveParticipant::Removed(p))) => {
                // A connection checked against storage before this removal may be seated
                // after it: it checks again (see [`Rooms::recheck`]).
                self.rooms.revoked();
                self.remove_member(&p.id, p.token_generation, now);
                Ok(CallResult::Done)
            }
            Ok(StorageOutcome::PresetSet(SetPreset::Set(preset))) => {
                self.room.set_preset(&target, preset, &user);
                Ok(CallResult::Done)
            }
            // Gone from storage meanwhile (an admin removed it, or its meeting).
            Ok(
                StorageOutcome::Removed(_) | StorageOutcome::PresetSet(SetPreset::NoParticipant),
            ) => Err(ErrorBody::new(
                ErrorCode::NotFound,
                format!("{target} is not in this meeting"),
            )),
            Ok(StorageOutcome::PresetSet(SetPreset::NoPreset)) => {
                Err(ErrorBody::new(ErrorCode::NotFound, "no such preset"))
            }
            Err(e) => {
                tracing::error!(meeting = %self.meeting, error = %e, call = name, "storage failed a host's call");
                Err(ErrorBody::new(ErrorCode::Internal, "storage failed"))
            }
        };
        self.count_call(name, &outcome);
        self.flush();
        if let Some(conn) = self.conns.get(&user).filter(|c| c.id == conn_id).cloned() {
            self.reply(&user, &conn, request_id, outcome);
        }
    }

    /// The goodbye for a connection of `generation`, if its token has been superseded.
    fn fenced(&self, user: &UserId, generation: u64) -> Option<CloseReason> {
        self.fences
            .get(user)
            .filter(|(oldest, _)| generation < *oldest)
            .map(|(_, reason)| *reason)
    }

    /// From now on tokens of `user` older than `oldest` get `reason` instead of a seat.
    fn raise_fence(&mut self, user: &UserId, oldest: u64, reason: CloseReason) {
        let fence = self.fences.entry(user.clone()).or_insert((0, reason));
        if oldest > fence.0 {
            *fence = (oldest, reason);
        }
    }

    /// Ends a participant's connection on purpose with `reason`; its media ends with it.
    /// The room itself is left to the caller (the participant may keep its place).
    fn end_conn(&mut self, user: &UserId, reason: CloseReason) {
        if let Some(conn) = self.conns.remove(user) {
            let _ = conn.tx.try_send(Outbound::Goodbye(reason));
            self.drop_media(user);
        }
    }

    /// Sends the room's new events to every connection.
    fn flush(&mut self) {
        let mut slow = Vec::new();
        let mut ended = Vec::new();
        let mut seats_changed = false;
        for ev in self.room.drain_events() {
            self.metrics.events.inc();
            seats_changed |= matches!(
                ev.event,
                RoomEvent::StageStatusChanged { .. }
                    | RoomEvent::ParticipantLeft { .. }
                    | RoomEvent::MeetingEnded { .. }
                    | RoomEvent::PresetChanged { .. }
            );
            match &ev.event {
                // Off the stage (leave, kick, removed): the SFU stops their media now.
                RoomEvent::StageStatusChanged {
                    user_id, status, ..
                } if *status != StageStatus::OnStage => ended.push(user_id.clone()),
                RoomEvent::ParticipantLeft { user_id, .. } => ended.push(user_id.clone()),
                _ => {}
            }
            let bytes = encode(&ServerMessage::Event {
                seq: ev.seq,
                event: ev.event,
            });
            for (user, conn) in &self.conns {
                match conn.tx.try_send(Outbound::Text(bytes.clone())) {
                    Ok(()) => {}
                    Err(mpsc::error::TrySendError::Full(_)) => slow.push((user.clone(), true)),
                    // The socket task has ended; its disconnect is on the way or already lost.
                    Err(mpsc::error::TrySendError::Closed(_)) => slow.push((user.clone(), false)),
                }
            }
        }
        for user in ended {
            if let Some(sfu) = &self.sfu {
                sfu.end_publisher(self.key(&user));
            }
        }
        if let (true, Some(keeper)) = (seats_changed, &self.keeper) {
            keeper.keep(self.room.seats());
        }
        // After the room events they follow from (a stage exit, then its unpublication).
        let media: Vec<MediaEvent> = self.room.drain_media_events().collect();
        for event in media {
            self.tell_media(event);
        }
        let count = self.room.len() as i64;
        self.metrics.participants.inc_by(count - self.participants);
        self.participants = count;
        slow.sort();
        slow.dedup_by(|a, b| a.0 == b.0);
        for (user, too_slow) in slow {
            self.drop_conn(&user, too_slow);
        }
    }

    /// Lets go of a connection that cannot take more: too slow (it loses its socket and may
    /// reconnect and resume) or already gone. Either way the room hears of the disconnect.
    fn drop_conn(&mut self, user: &UserId, too_slow: bool) {
        if self.conns.remove(user).is_some() {
            if too_slow {
                self.metrics.slow_clients.inc();
                tracing::warn!(meeting = %self.meeting, user = %user, "dropping a client that does not read its events");
            }
            self.drop_media(user);
            self.room.disconnect(user, now_ms());
            self.flush();
        }
    }

    fn key(&self, user: &UserId) -> crate::sfu::engine::ParticipantKey {
        (self.meeting.clone(), user.clone())
    }

    /// The participant's connection is gone: so are its peer connections. (The room ends
    /// its publication when it hears of the disconnect or the replacement.)
    fn drop_media(&self, user: &UserId) {
        if let Some(sfu) = &self.sfu {
            sfu.drop_participant(self.key(user));
        }
    }

    /// Tells every connection who publishes now. A connection that cannot take it is
    /// left to the next room event to drop (media events are advisory).
    fn tell_media(&self, event: MediaEvent) {
        let bytes = encode(&ServerMessage::Media { event });
        for conn in self.conns.values() {
            let _ = conn.tx.try_send(Outbound::Text(bytes.clone()));
        }
    }

    /// Where the SFU's notices for `user`'s publication go: straight onto the connection
    /// that published (a notice is advisory: one that does not fit the queue is dropped,
    /// and the next change says it again).
    fn notice_sink(&self, user: &UserId, conn_id: u64) -> NoticeSink {
        let tx = self
            .conns
            .get(user)
            .filter(|c| c.id == conn_id)
            .map(|c| c.tx.clone());
        Box::new(move |notice| {
            let message = match notice {
                Notice::Layers(rids) => ServerMessage::Layers { rids },
            };
            if let Some(tx) = &tx {
                let _ = tx.try_send(Outbound::Text(encode(&message)));
            }
        })
    }

    /// Carries out a media call the room allowed. `Ok(Some)` answers now; `Ok(None)` means
    /// the SFU will answer (through [`Command::MediaAnswer`]).
    fn media_call(
        &mut self,
        user: &UserId,
        conn_id: u64,
        request_id: u64,
        call: Call,
    ) -> Result<Option<CallResult>, ErrorBody> {
        let Some(sfu) = self.sfu.clone() else {
            return Err(ErrorBody::new(
                ErrorCode::Internal,
                "this server runs without media",
            ));
        };
        let name = call.name();
        // The SFU's answer, with what it accepted for a publish.
        let answer: futures_util::future::BoxFuture<
            'static,
            Result<(String, Option<MediaKinds>), SfuError>,
        > = match call {
            Call::Publish { sdp, layers } => {
                let Some(preset) = self.room.preset_of(user).cloned() else {
                    return Err(ErrorBody::new(ErrorCode::NotFound, "not in this meeting"));
                };
                let notices = self.notice_sink(user, conn_id);
                let rx =
                    sfu.publish_queued(self.key(user), sdp, layers, preset.may_produce(), notices);
                Box::pin(async move {
                    let publication = rx.await.unwrap_or(Err(SfuError::Closed))?;
                    Ok((publication.answer, Some(publication.kinds)))
                })
            }
            Call::Subscribe { user_id, sdp } => {
                let rx = sfu.subscribe_queued(self.key(user), self.key(&user_id), sdp);
                Box::pin(async move { Ok((rx.await.unwrap_or(Err(SfuError::Closed))?, None)) })
            }
            Call::Unpublish => {
                sfu.unpublish(self.key(user));
                return Ok(Some(CallResult::Done));
            }
            Call::Unsubscribe { user_id } => {
                sfu.unsubscribe(self.key(user), self.key(&user_id));
                return Ok(Some(CallResult::Done));
            }
            Call::MuteParticipant { user_id } => {
                sfu.hold_audio(self.key(&user_id), true);
                return Ok(Some(CallResult::Done));
            }
            Call::Tiles { tiles } => {
                let tiles = tiles
                    .into_iter()
                    .map(|t| {
                        let shown = (t.width > 0 && t.height > 0).then_some(Tile {
                            width: t.width,
                            height: t.height,
                        });
                        (t.user_id, shown)
                    })
                    .collect();
                sfu.set_tiles(self.key(user), tiles);
                return Ok(Some(CallResult::Done));
            }
            // Unmuting oneself lifts a host's hold.
            Call::MediaState { audio: true, .. } => {
                sfu.hold_audio(self.key(user), false);
                return Ok(Some(CallResult::Done));
            }
            // The room has recorded it (`media.state`) or there is nothing to carry out.
            _ => return Ok(Some(CallResult::Done)),
        };
        let user = user.clone();
        self.answer_later(async move {
            Command::MediaAnswer(MediaAnswer {
                user,
                conn_id,
                request_id,
                name,
                result: answer.await,
            })
        })?;
        Ok(None)
    }

    /// Runs `work` beside the room task and hands its outcome back to it as a command (the
    /// SFU's or storage's answer to a call): the room never waits for either.
    fn answer_later(
        &self,
        work: impl std::future::Future<Output = Command> + Send + 'static,
    ) -> Result<(), ErrorBody> {
        let Some(back) = self.self_tx.upgrade() else {
            return Err(ErrorBody::new(ErrorCode::Internal, "the room is closing"));
        };
        tokio::spawn(async move {
            let _ = back.send(work.await).await;
        });
        Ok(())
    }

    fn media_answered(&mut self, answer: MediaAnswer) {
        let MediaAnswer {
            user,
            conn_id,
            request_id,
            name,
            result,
        } = answer;
        let published = result.as_ref().ok().and_then(|(_, kinds)| *kinds);
        let outcome = result
            .map(|(sdp, _)| CallResult::Sdp { sdp })
            .map_err(|e| ErrorBody::new(e.code(), e.to_string()));
        self.count_call(name, &outcome);
        let Some(conn) = self.conns.get(&user).filter(|c| c.id == conn_id).cloned() else {
            // Answered for a connection since replaced or dropped: the SFU has let go of
            // that publication with its peer connections.
            return;
        };
        if let (Ok(_), Some(kinds)) = (&outcome, published) {
            // The room records it only while the publisher is still on stage (otherwise the
            // SFU has already ended it: the stage exit was queued to it after this publish).
            if self.room.media_published(&user, kinds) {
                self.flush();
            }
        }
        self.reply(&user, &conn, request_id, outcome);
    }

    /// Counts a call by name and outcome.
    fn count_call(&self, name: &str, outcome: &Result<CallResult, ErrorBody>) {
        let code = match outcome {
            Ok(_) => "ok",
            Err(e) => e.code.as_str(),
        };
        self.metrics
            .calls
            .get_or_create(&crate::metrics::CallLabels {
                call: name.to_owned(),
                code: code.to_owned(),
            })
            .inc();
    }

    /// Queues a call's reply on its connection. A connection that cannot take it is let
    /// go (see [`Self::drop_conn`]); returns whether the reply was queued.
    fn reply(
        &mut self,
        user: &UserId,
        conn: &ConnHandle,
        request_id: u64,
        outcome: Result<CallResult, ErrorBody>,
    ) -> bool {
        let reply = ServerMessage::reply(request_id, outcome);
        match conn.tx.try_send(Outbound::Text(encode(&reply))) {
            Ok(()) => true,
            Err(e) => {
                let too_slow = matches!(e, mpsc::error::TrySendError::Full(_));
                self.drop_conn(user, too_slow);
                false
            }
        }
    }
}

/// An error reply for a call the room never saw.
pub fn error_reply(id: Option<u64>, code: ErrorCode, message: impl Into<String>) -> Utf8Bytes {
    let error = ErrorBody::new(code, message);
    encode(&match id {
        Some(id) => ServerMessage::reply(id, Err(error)),
        None => ServerMessage::Error { error },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn member(user: &str) -> Member {
        Member {
            user_id: UserId::new(user),
            name: user.to_owned(),
            preset: onstage_room::builtin_preset("viewer").expect("built-in"),
        }
    }

    /// Seats `user` with a token of `generation`; returns its queue.
    async fn seat(
        rooms: &Rooms,
        meeting: &MeetingId,
        user: &str,
        id: u64,
        generation: u64,
    ) -> mpsc::Receiver<Outbound> {
        let (tx, rx) = mpsc::channel(64);
        rooms
            .connect(
                meeting,
                "t",
                RoomConfig::default(),
                member(user),
                Personal::default(),
                ConnHandle { id, tx, generation },
            )
            .await;
        rx
    }

    /// The goodbye at the end of a queue the room let go of, if any.
    async fn goodbye(rx: &mut mpsc::Receiver<Outbound>) -> Option<CloseReason> {
        let mut last = None;
        while let Some(msg) = rx.recv().await {
            if let Outbound::Goodbye(reason) = msg {
                last = Some(reason);
                break;
            }
        }
        last
    }

    #[tokio::test]
    async fn a_token_checked_before_a_revocation_gets_no_seat_after_it() {
        let rooms = Rooms::new(Arc::new(Metrics::new()), 30_000, None);
        let meeting = MeetingId::new("m");
        let mut watcher = seat(&rooms, &meeting, "w", 1, 1).await;
        let mut old = seat(&rooms, &meeting, "ann", 2, 5).await;
        let before = rooms.revocations();
        rooms.revoke(&meeting, UserId::new("ann"), 6).await;
        assert_eq!(goodbye(&mut old).await, Some(CloseReason::Revoked));
        assert_ne!(rooms.revocations(), before, "a revocation is counted");
        // A connection with the old token that passed its check before the re-issue.
        let mut late = seat(&rooms, &meeting, "ann", 3, 5).await;
        assert_eq!(goodbye(&mut late).await, Some(CloseReason::Revoked));
        // The new token is seated and resumes the place; an older token arriving later
        // does not knock it off.
        let mut new = seat(&rooms, &meeting, "ann", 4, 6).await;
        let mut stale = seat(&rooms, &meeting, "ann", 5, 5).await;
        assert_eq!(goodbye(&mut stale).await, Some(CloseReason::Revoked));
        assert!(
            matches!(new.try_recv(), Ok(Outbound::Text(t)) if t.as_str().contains(r#""resumed":true"#))
        );
        // A newer token than the live one takes over as a revocation, not a replacement.
        let _newer = seat(&rooms, &meeting, "ann", 6, 7).await;
        assert_eq!(goodbye(&mut new).await, Some(CloseReason::Revoked));
        let snapshot = rooms.snapshot(&meeting).await.expect("live");
        assert_eq!(snapshot.participants.len(), 2);
        assert!(snapshot.participants.iter().all(|p| p.connected));
        assert!(watcher.try_recv().is_ok());
    }

    #[tokio::test]
    async fn removal_and_deletion_end_sessions_and_keep_the_removed_out() {
        let rooms = Rooms::new(Arc::new(Metrics::new()), 30_000, None);
        let meeting = MeetingId::new("m");
        let mut watcher = seat(&rooms, &meeting, "w", 1, 1).await;
        let mut ann = seat(&rooms, &meeting, "ann", 2, 3).await;
        rooms.remove(&meeting, UserId::new("ann"), 3).await;
        assert_eq!(goodbye(&mut ann).await, Some(CloseReason::Removed));
        let mut late = seat(&rooms, &meeting, "ann", 3, 3).await;
        assert_eq!(goodbye(&mut late).await, Some(CloseReason::Removed));
        let snapshot = rooms.snapshot(&meeting).await.expect("live");
        let users: Vec<&str> = snapshot
            .participants
            .iter()
            .map(|p| p.user_id.as_str())
            .collect();
        assert_eq!(users, ["w"]);
        // Added again (a newer generation): welcome.
        let mut back = seat(&rooms, &meeting, "ann", 4, 4).await;
        assert!(matches!(back.try_recv(), Ok(Outbound::Text(t)) if t.as_str().contains("welcome")));
        // A removal of the earlier generation arriving late leaves the new session alone.
        rooms.remove(&meeting, UserId::new("ann"), 3).await;
        let snapshot = rooms.snapshot(&meeting).await.expect("live");
        assert_eq!(snapshot.participants.len(), 2);
        assert!(back.try_recv().is_err(), "no goodbye");

        rooms.delete(&meeting).await;
        assert_eq!(goodbye(&mut back).await, Some(CloseReason::MeetingDeleted));
        assert_eq!(
            goodbye(&mut watcher).await,
            Some(CloseReason::MeetingDeleted)
        );
        assert!(rooms.snapshot(&meeting).await.is_none(), "the room is gone");
    }

    #[tokio::test]
    async fn a_connection_seated_after_a_revocation_it_missed_is_checked_again() {
        use crate::storage::{AddParticipant, MeetingRecord, Storage};
        let dir = tempfile::tempdir().expect("tempdir");
        let storage = Storage::open(dir.path()).expect("open");
        let rooms = Rooms::new(Arc::new(Metrics::new()), 30_000, None);
        let meeting = MeetingId::new("m");
        storage
            .create_meeting(MeetingRecord {
                id: meeting.clone(),
                title: "t".into(),
                max_on_stage: 5,
                created_at: 1,
            })
            .await
            .expect("meeting");
        let add = || {
            storage.add_participant(
                meeting.clone(),
                "Ann".into(),
                "viewer".into(),
                Some("ann".into()),
                1,
            )
        };
        let generation = |added| match added {
            AddParticipant::Added(p) | AddParticipant::Reissued(p) => p.token_generation,
            other => panic!("{other:?}"),
        };
        let ann = UserId::new("ann");
        let old = generation(add().await.expect("add"));

        // Checked against storage, then (no room live yet) the participant is issued
        // again, then the connection is seated: the room has not heard of the revocation.
        let before = rooms.revocations();
        let new = generation(add().await.expect("re-issue"));
        rooms.revoke(&meeting, ann.clone(), new).await;
        let mut conn = seat(&rooms, &meeting, "ann", 1, old).await;
        rooms.recheck(&storage, before, &meeting, &ann, old).await;
        assert_eq!(goodbye(&mut conn).await, Some(CloseReason::Revoked));

        // Nothing happened meanwhile: nothing to do, the connection stays.
        let before = rooms.revocations();
        let mut conn = seat(&rooms, &meeting, "ann", 2, new).await;
        rooms.recheck(&storage, before, &meeting, &ann, new).await;
        assert!(matches!(conn.try_recv(), Ok(Outbound::Text(_))));
        assert!(conn.try_recv().is_err(), "no goodbye");

        // Removed meanwhile.
        let before = rooms.revocations();
        storage
            .remove_participant(meeting.clone(), ann.clone())
            .await
            .expect("remove");
        rooms.revoked();
        rooms.recheck(&storage, before, &meeting, &ann, new).await;
        assert_eq!(goodbye(&mut conn).await, Some(CloseReason::Removed));

        // The meeting deleted meanwhile.
        let newest = generation(add().await.expect("add again"));
        let mut conn = seat(&rooms, &meeting, "ann", 3, newest).await;
        let before = rooms.revocations();
        storage
            .delete_meeting(meeting.clone())
            .await
            .expect("delete");
        rooms.revoked();
        rooms
            .recheck(&storage, before, &meeting, &ann, newest)
            .await;
        assert_eq!(goodbye(&mut conn).await, Some(CloseReason::MeetingDeleted));
    }

    #[tokio::test]
    async fn a_connection_that_does_not_read_is_dropped_and_the_room_carries_on() {
        let metrics = Arc::new(Metrics::new());
        let rooms = Rooms::new(metrics.clone(), 30_000, None);
        let meeting = MeetingId::new("m");
        // Room for the welcome and one event only, and nobody reads it.
        let (slow_tx, mut slow_rx) = mpsc::channel(2);
        rooms
            .connect(
                &meeting,
                "t",
                RoomConfig::default(),
                member("slow"),
                Personal::default(),
                ConnHandle {
                    id: 1,
                    tx: slow_tx,
                    generation: 0,
                },
            )
            .await;
        let (fast_tx, mut fast_rx) = mpsc::channel(64);
        rooms
            .connect(
                &meeting,
                "t",
                RoomConfig::default(),
                member("fast"),
                Personal::default(),
                ConnHandle {
                    id: 2,
                    tx: fast_tx,
                    generation: 0,
                },
            )
            .await;
        // Each newcomer is one more event for `slow`, whose queue is already full.
        let mut others = Vec::new();
        for i in 0..3 {
            let (tx, rx) = mpsc::channel(64);
            others.push(rx);
            rooms
                .connect(
                    &meeting,
                    "t",
                    RoomConfig::default(),
                    member(&format!("extra{i}")),
                    Personal::default(),
                    ConnHandle {
                        id: 10 + i,
                        tx,
                        generation: 0,
                    },
                )
                .await;
        }
        // The room let go of `slow`: its queue ends after what was already in it.
        let mut drained = 0;
        while let Some(msg) = slow_rx.recv().await {
            assert!(matches!(msg, Outbound::Text(_)));
            drained += 1;
        }
        assert_eq!(drained, 2, "welcome + the one event that fitted");
        assert_eq!(metrics.slow_clients.get(), 1);
        // Everyone else heard that `slow` dropped (it keeps its place for the grace period).
        let mut heard = false;
        while let Ok(Outbound::Text(text)) = fast_rx.try_recv() {
            heard |= text
                .as_str()
                .contains(r#""kind":"participant_connection","user_id":"slow","connected":false"#);
        }
        assert!(heard, "the others are told the slow client is gone");
        let snapshot = rooms.snapshot(&meeting).await.expect("room is live");
        assert_eq!(snapshot.participants.len(), 5);
        assert!(
            !snapshot.participants[0].connected,
            "slow is inside its grace period"
        );
    }
}
