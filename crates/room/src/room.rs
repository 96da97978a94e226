//! The room state machine.
//!
//! | call                 | who may                                    | from -> to                    |
//! |----------------------|--------------------------------------------|-------------------------------|
//! | `getAccessRequests`  | `accept_stage_requests`                    | -                             |
//! | `requestAccess`      | `stage_access` CAN_REQUEST (ALLOWED: auto) | OFF -> REQUESTED (ACCEPTED)   |
//! | `cancelRequestAccess`| the requester                              | REQUESTED -> OFF              |
//! | `grantAccess(ids)`   | `accept_stage_requests`                    | REQUESTED or OFF -> ACCEPTED  |
//! | `denyAccess(ids)`    | `accept_stage_requests`                    | REQUESTED -> OFF              |
//! | `join`               | ACCEPTED, or `stage_access` ALLOWED        | -> ON (`stage_full` at max)   |
//! | `leave`              | ON or ACCEPTED                             | -> OFF                        |
//! | `kick(ids)`          | `accept_stage_requests` or `kick_participant` | ON/ACCEPTED -> OFF         |
//! | `meeting.end`        | `accept_stage_requests` and `kick_participant` (a host) | everyone -> out |
//!
//! `meeting.end` ends the meeting for everyone: one `meeting_ended {by}` event, and the
//! roster, queue and stage are empty afterwards (no per-participant events: the one event
//! says it all). Like `meeting.leave` it is never refused for the caller's budget. The
//! server then closes every connection (`goodbye: meeting_ended`) and drops the room; the
//! meeting stays, and a later join starts a new, empty room.
//!
//! Order of checks for every call: the caller's broadcast budget (`rate_limited`, only for
//! calls that tell the whole room, see [`BroadcastBudget`]), the request itself
//! (`bad_request`), the caller's permission (`permission_denied`), the targets' existence
//! (`not_found`), the statuses (`invalid_state`), then capacity (`stage_full`). Batch calls check every target before
//! changing any. A participant whose preset has `stage_enabled = false` can neither request,
//! be granted, nor join (`permission_denied`); a CAN_REQUEST participant calling `join`
//! before being accepted gets `permission_denied`.

use std::collections::{HashMap, VecDeque};

use onstage_proto::{
    AccessRequest, Call, CallResult, LeaveReason, MediaEvent, MediaKinds, ParticipantInfo, PeerId,
    Preset, PublishedMedia, RoomEvent, RoomSnapshot, StageAccess, StageChangeReason, StageStatus,
    UnixMillis, UserId, MAX_BATCH_IDS,
};

use crate::StageError;

/// Settings of one room.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RoomConfig {
    /// Most participants ON_STAGE at once.
    pub max_on_stage: u32,
    /// How long a dropped participant keeps its status and queue place, in milliseconds.
    pub grace_ms: u64,
    /// Each participant's budget of changes told to the whole room.
    pub budget: BroadcastBudget,
}

impl Default for RoomConfig {
    fn default() -> Self {
        Self {
            max_on_stage: 25,
            grace_ms: 30_000,
            budget: BroadcastBudget::default(),
        }
    }
}

/// How many room-wide messages one participant's calls may cause.
///
/// Every event is sent to every connection in the meeting, so a call that changes a stage
/// status costs the server one message per participant: toggling `requestAccess` and
/// `cancelRequestAccess` in a meeting of 300 turned each call into 300 messages. Each
/// participant therefore has a token bucket: a call that tells the room (a stage change of
/// its own or of others, a media publication or its state) needs a token and spends one
/// per room event it produces (batch calls: one per target changed; media calls: one, for
/// the server's `published`/`unpublished`). Tokens come back one every `refill_ms`, up to
/// `burst`. A call made with an empty bucket is refused with `rate_limited`, changes
/// nothing and tells nobody. A batch may overdraw the bucket (a moderator granting many
/// requests at once is never refused for its size), by one bucket at most; the debt is
/// paid back before the next such call.
///
/// Arrivals and drops of a participant's connection, and its `meeting.leave`, are charged
/// too (never refused: they happen), and an arrival with the budget spent is refused
/// before it tells anyone (see [`Room::may_arrive`]), so connecting and dropping in a loop
/// is bounded like toggling.
///
/// So one participant causes at most `burst + t / refill_ms + (its largest batch - 1)`
/// room events in any `t` milliseconds, each sent to every connection (plus the one drop
/// and the one leave that may follow an overdraft) while its batches change at most
/// `burst + 1` participants each; a larger batch pays one bucket, so a moderator's mass
/// actions cause at most one batch per `burst + 1` refills. For the calls a viewer can
/// make (one event each), at most `burst + t / refill_ms`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BroadcastBudget {
    /// Events one participant may cause at once (the bucket's size).
    pub burst: u32,
    /// One token comes back every this many milliseconds. 0: no budget at all.
    pub refill_ms: u64,
}

impl BroadcastBudget {
    /// No limit: every call is judged on the stage rules alone.
    pub const UNLIMITED: BroadcastBudget = BroadcastBudget {
        burst: u32::MAX,
        refill_ms: 0,
    };
}

impl Default for BroadcastBudget {
    /// 20 at once, then one per second: far more than anyone clicks (request, cancel, a
    /// few mutes and unmutes), and 300 messages a second at most from one participant of a
    /// 300-person meeting.
    fn default() -> Self {
        Self {
            burst: 20,
            refill_ms: 1_000,
        }
    }
}

/// One participant's tokens (see [`BroadcastBudget`]).
#[derive(Debug, Clone, Copy)]
struct Bucket {
    /// Below zero after a batch overdrew it.
    tokens: i64,
    /// Up to when tokens have been credited.
    credited_at: UnixMillis,
}

impl Bucket {
    fn full(budget: BroadcastBudget, now: UnixMillis) -> Self {
        Self {
            tokens: i64::from(budget.burst),
            credited_at: now,
        }
    }

    /// Credits the tokens earned by `now`. Integer arithmetic, with the part of a token
    /// not yet earned carried over, so the same inputs always give the same outcome. A
    /// clock that goes back credits nothing.
    fn refill(&mut self, budget: BroadcastBudget, now: UnixMillis) {
        let burst = i64::from(budget.burst);
        if budget.refill_ms == 0 {
            self.tokens = burst;
            self.credited_at = now;
            return;
        }
        let earned = now.saturating_sub(self.credited_at) / budget.refill_ms;
        let tokens = self
            .tokens
            .saturating_add(i64::try_from(earned).unwrap_or(i64::MAX));
        if tokens >= burst {
            self.tokens = burst;
            self.credited_at = self.credited_at.max(now);
        } else {
            self.tokens = tokens;
            self.credited_at += earned * budget.refill_ms;
        }
    }

    /// Milliseconds until the bucket holds a token again.
    fn retry_after(&self, budget: BroadcastBudget, now: UnixMillis) -> u64 {
        let missing = u64::try_from(1 - self.tokens).unwrap_or(0);
        let at = self
            .credited_at
            .saturating_add(missing.saturating_mul(budget.refill_ms));
        at.saturating_sub(now)
    }
}

/// Does the call tell the whole room when it succeeds? Those need a token and spend the
/// caller's budget. (`meeting.leave` tells the room too and is charged, but it ends the
/// participant's session: never refused.)
fn broadcasts(call: &Call) -> bool {
    matches!(
        call,
        Call::RequestAccess
            | Call::CancelRequestAccess
            | Call::GrantAccess { .. }
            | Call::DenyAccess { .. }
            | Call::Join
            | Call::Leave
            | Call::Kick { .. }
            | Call::Publish { .. }
            | Call::Unpublish
            | Call::MediaState { .. }
            | Call::MuteParticipant { .. }
            | Call::RemoveParticipant { .. }
            | Call::SetPreset { .. }
    )
}

/// Who is connecting: the identity and preset the server resolved from the token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    pub user_id: UserId,
    pub name: String,
    pub preset: Preset,
}

/// The outcome of [`Room::connect`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Connected {
    pub peer_id: PeerId,
    /// True when the participant was already in the roster (inside its grace period, or a
    /// second connection replacing the first): its status and queue place are kept.
    pub resumed: bool,
    /// True when the participant already had a live connection, which the caller should close.
    pub replaced: bool,
}

/// A participant's place on the stage, kept in storage as it changes so that a restarted
/// server can give it back ([`Room::seats`], [`Room::restore`]). Only places that are not
/// OFF_STAGE are kept: an OFF_STAGE participant who comes back is where it was anyway.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Seat {
    pub user_id: UserId,
    pub peer_id: PeerId,
    pub name: String,
    pub preset: Preset,
    pub status: StageStatus,
    /// For a REQUESTED participant, when it asked: its place in the queue.
    pub requested_at: Option<UnixMillis>,
}

/// A room event with its per-meeting sequence number.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sequenced {
    pub seq: u64,
    pub event: RoomEvent,
}

#[derive(Debug, Clone)]
struct Participant {
    peer_id: PeerId,
    name: String,
    preset: Preset,
    status: StageStatus,
    /// Set while the network connection is down: when it dropped.
    disconnected_at: Option<UnixMillis>,
    /// Order of arrival in the roster, for a stable participant list.
    joined_order: u64,
    /// What its live publication carries, while the SFU forwards one (see
    /// [`Room::media_published`]). Only ever set while ON_STAGE and connected: a
    /// publication belongs to one connection's peer connection, and to the stage.
    publishing: Option<MediaKinds>,
}

/// The authority over one meeting's stage. See the module docs for the rules.
#[derive(Debug, Clone)]
pub struct Room {
    config: RoomConfig,
    participants: HashMap<UserId, Participant>,
    /// REQUESTED participants, oldest request first.
    queue: Vec<AccessRequest>,
    on_stage: u32,
    seq: u64,
    next_joined_order: u64,
    events: VecDeque<Sequenced>,
    /// Who publishes what, as it changes: told to every connection, unsequenced (media
    /// events are advisory; the welcome carries the current set, [`Room::publishing`]).
    media_events: VecDeque<MediaEvent>,
    /// Broadcast budgets by participant. Kept when a participant leaves the roster, so
    /// leaving and coming back does not refill it (the map holds at most one entry per
    /// participant the meeting ever had).
    budgets: HashMap<UserId, Bucket>,
}

impl Room {
    pub fn new(config: RoomConfig) -> Self {
        Self {
            config,
            participants: HashMap::new(),
            queue: Vec::new(),
            on_stage: 0,
            seq: 0,
            next_joined_order: 0,
            events: VecDeque::new(),
            media_events: VecDeque::new(),
            budgets: HashMap::new(),
        }
    }

    pub fn config(&self) -> RoomConfig {
        self.config
    }

    /// The sequence number of the last event produced.
    pub fn seq(&self) -> u64 {
        self.seq
    }

    /// Number of participants in the roster (connected or inside their grace period).
    pub fn len(&self) -> usize {
        self.participants.len()
    }

    pub fn is_empty(&self) -> bool {
        self.participants.is_empty()
    }

    /// Number of participants ON_STAGE.
    pub fn on_stage_count(&self) -> u32 {
        self.on_stage
    }

    /// A participant's stage status, if it is in the roster.
    pub fn status_of(&self, user_id: &UserId) -> Option<StageStatus> {
        self.participants.get(user_id).map(|p| p.status)
    }

    /// A participant's preset, if it is in the roster.
    pub fn preset_of(&self, user_id: &UserId) -> Option<&Preset> {
        self.participants.get(user_id).map(|p| &p.preset)
    }

    /// A participant's current peer id, if it is in the roster.
    pub fn peer_of(&self, user_id: &UserId) -> Option<&PeerId> {
        self.participants.get(user_id).map(|p| &p.peer_id)
    }

    /// Is the participant in the roster with a live connection?
    pub fn is_connected(&self, user_id: &UserId) -> bool {
        self.participants
            .get(user_id)
            .is_some_and(|p| p.disconnected_at.is_none())
    }

    /// The request queue, oldest first.
    pub fn queue(&self) -> &[AccessRequest] {
        &self.queue
    }

    /// Every live publication and what it carries, in roster order: what a newcomer's
    /// welcome tells it.
    pub fn publishing(&self) -> Vec<PublishedMedia> {
        let mut list: Vec<(&UserId, &Participant)> = self
            .participants
            .iter()
            .filter(|(_, p)| p.publishing.is_some())
            .collect();
        list.sort_by_key(|(_, p)| p.joined_order);
        list.into_iter()
            .filter_map(|(id, p)| {
                p.publishing.map(|kinds| PublishedMedia {
                    user_id: id.clone(),
                    audio: kinds.audio,
                    video: kinds.video,
                })
            })
            .collect()
    }

    /// What the participant's live publication carries, if it has one.
    pub fn publication_of(&self, user_id: &UserId) -> Option<MediaKinds> {
        self.participants.get(user_id).and_then(|p| p.publishing)
    }

    /// The SFU accepted the participant's publication, carrying `kinds`. Recorded, and
    /// told to everyone ([`MediaEvent::Published`]), only while the participant is
    /// ON_STAGE and connected: a publish answered after a stage exit or a dropped
    /// connection has already been ended by the SFU. Returns whether it was recorded.
    pub fn media_published(&mut self, user_id: &UserId, kinds: MediaKinds) -> bool {
        let Some(p) = self.participants.get_mut(user_id) else {
            return false;
        };
        if p.status != StageStatus::OnStage || p.disconnected_at.is_some() {
            return false;
        }
        p.publishing = Some(kinds);
        self.media_events.push_back(MediaEvent::Published {
            user_id: user_id.clone(),
            audio: kinds.audio,
            video: kinds.video,
        });
        true
    }

    /// Drains the media events produced so far. The caller sends them after the room
    /// events drained at the same time (a stage exit, then its unpublication).
    pub fn drain_media_events(&mut self) -> std::collections::vec_deque::Drain<'_, MediaEvent> {
        self.media_events.drain(..)
    }

    /// Ends the participant's publication, if it has one, telling everyone.
    fn end_publication(&mut self, user_id: &UserId) {
        let Some(p) = self.participants.get_mut(user_id) else {
            return;
        };
        if p.publishing.take().is_some() {
            self.media_events.push_back(MediaEvent::Unpublished {
                user_id: user_id.clone(),
            });
        }
    }

    /// A room given back the places of a room that was lost with its server (the seats it
    /// had kept, [`Room::seats`], in that order). Each seated participant is in the roster
    /// as disconnected since `since` (when the server came back): reconnecting inside the
    /// grace period resumes its status and queue place, as after any dropped connection,
    /// and [`Room::handle_timeout`] removes it after that. Nothing is told: there is nobody
    /// to tell yet, and newcomers get the snapshot. A seat ON_STAGE beyond `max_on_stage`
    /// comes back ACCEPTED (it can join again when there is room); a REQUESTED seat without
    /// a request time goes to the end of the queue.
    pub fn restore(config: RoomConfig, seats: Vec<Seat>, since: UnixMillis) -> Self {
        let mut room = Room::new(config);
        for seat in seats {
            if room.participants.contains_key(&seat.user_id) {
                continue;
            }
            let mut status = seat.status;
            if status == StageStatus::OnStage {
                if room.on_stage >= config.max_on_stage {
                    status = StageStatus::AcceptedToJoinStage;
                } else {
                    room.on_stage += 1;
                }
            }
            if status == StageStatus::RequestedToJoinStage {
                // One time for both the place and the record, so the queue stays sorted by
                // it: a seat kept without one goes last.
                let latest = room
                    .queue
                    .last()
                    .map_or(since, |r| r.requested_at.max(since));
                let requested_at = seat.requested_at.unwrap_or(latest);
                let at = room
                    .queue
                    .partition_point(|r| r.requested_at <= requested_at);
                room.queue.insert(
                    at,
                    AccessRequest {
                        user_id: seat.user_id.clone(),
                        name: seat.name.clone(),
                        requested_at,
                    },
                );
            }
            room.participants.insert(
                seat.user_id,
                Participant {
                    peer_id: seat.peer_id,
                    name: seat.name,
                    preset: seat.preset,
                    status,
                    disconnected_at: Some(since),
                    joined_order: room.next_joined_order,
                    publishing: None,
                },
            );
            room.next_joined_order += 1;
        }
        room
    }

    /// The places worth keeping across a restart: every participant not OFF_STAGE, in
    /// roster order. The caller keeps them in storage whenever they change: after a
    /// `stage_status_changed` or a `participant_left` event.
    pub fn seats(&self) -> Vec<Seat> {
        let mut list: Vec<(&UserId, &Participant)> = self
            .participants
            .iter()
            .filter(|(_, p)| p.status != StageStatus::OffStage)
            .collect();
        list.sort_by_key(|(_, p)| p.joined_order);
        list.into_iter()
            .map(|(id, p)| Seat {
                user_id: id.clone(),
                peer_id: p.peer_id.clone(),
                name: p.name.clone(),
                preset: p.preset.clone(),
                status: p.status,
                requested_at: self
                    .queue
                    .iter()
                    .find(|r| &r.user_id == id)
                    .map(|r| r.requested_at),
            })
            .collect()
    }

    /// A participant's connection arrives. New participants enter OFF_STAGE; one already in
    /// the roster resumes with its status and queue place, keeping its peer id (`peer_id` is
    /// used only for a new participant).
    ///
    /// An arrival that tells the room (a newcomer, or a return from a dropped connection)
    /// spends one token of the participant's broadcast budget, and may overdraw it: it is
    /// never refused here. The caller asks [`Room::may_arrive`] first.
    pub fn connect(&mut self, member: Member, peer_id: PeerId, now: UnixMillis) -> Connected {
        // A new connection starts without media: the replaced one's peer connections
        // belong to the old client (and a dropped one's are already gone).
        self.end_publication(&member.user_id);
        if let Some(p) = self.participants.get_mut(&member.user_id) {
            let replaced = p.disconnected_at.is_none();
            let peer_id = p.peer_id.clone();
            if !replaced {
                p.disconnected_at = None;
                self.charge(&member.user_id, 1, now);
                self.emit(RoomEvent::ParticipantConnection {
                    user_id: member.user_id,
                    connected: true,
                });
            }
            return Connected {
                peer_id,
                resumed: true,
                replaced,
            };
        }
        let participant = Participant {
            peer_id: peer_id.clone(),
            name: member.name,
            preset: member.preset,
            status: StageStatus::OffStage,
            disconnected_at: None,
            joined_order: self.next_joined_order,
            publishing: None,
        };
        self.next_joined_order += 1;
        self.charge(&member.user_id, 1, now);
        let info = info_of(&member.user_id, &participant);
        self.participants.insert(member.user_id, participant);
        self.emit(RoomEvent::ParticipantJoined { participant: info });
        Connected {
            peer_id,
            resumed: false,
            replaced: false,
        }
    }

    /// A participant's connection dropped. Its status and queue place are kept for the grace
    /// period; [`Room::handle_timeout`] removes it afterwards. Unknown ids are ignored.
    pub fn disconnect(&mut self, user_id: &UserId, now: UnixMillis) {
        let Some(p) = self.participants.get_mut(user_id) else {
            return;
        };
        if p.disconnected_at.is_some() {
            return;
        }
        p.disconnected_at = Some(now);
        // Its peer connections went with the connection.
        self.end_publication(user_id);
        // Told to everyone: counted like any change (a connection that comes and goes in a
        // loop spends the budget as toggling does), never refused.
        self.charge(user_id, 1, now);
        self.emit(RoomEvent::ParticipantConnection {
            user_id: user_id.clone(),
            connected: false,
        });
    }

    /// The participant was removed from the meeting by an admin: it leaves the roster at
    /// once, connected or not (no grace period), first leaving the stage or the queue, so
    /// everyone hears `stage_status_changed` (`removed`) when it was not OFF_STAGE, then
    /// `participant_left` (`removed`). Returns whether it was in the roster; unknown ids
    /// change nothing.
    pub fn remove_member(&mut self, user_id: &UserId, _now: UnixMillis) -> bool {
        if !self.participants.contains_key(user_id) {
            return false;
        }
        self.remove(user_id, LeaveReason::Removed);
        true
    }

    /// When [`Room::handle_timeout`] next has work to do, if ever.
    pub fn poll_timeout(&self) -> Option<UnixMillis> {
        self.participants
            .values()
            .filter_map(|p| p.disconnected_at)
            .min()
            .map(|t| t.saturating_add(self.config.grace_ms))
    }

    /// Removes every participant whose grace period has run out by `now`.
    pub fn handle_timeout(&mut self, now: UnixMillis) {
        let grace = self.config.grace_ms;
        let mut expired: Vec<(u64, UserId)> = self
            .participants
            .iter()
            .filter(|(_, p)| {
                p.disconnected_at
                    .is_some_and(|t| t.saturating_add(grace) <= now)
            })
            .map(|(id, p)| (p.joined_order, id.clone()))
            .collect();
        // Deterministic event order whatever the map's iteration order.
        expired.sort();
        for (_, user_id) in expired {
            self.remove(&user_id, LeaveReason::TimedOut);
        }
    }

    /// Drains the events produced so far, in sequence order.
    pub fn drain_events(&mut self) -> std::collections::vec_deque::Drain<'_, Sequenced> {
        self.events.drain(..)
    }

    /// The whole room as of the last event.
    pub fn snapshot(&self) -> RoomSnapshot {
        let mut list: Vec<(&UserId, &Participant)> = self.participants.iter().collect();
        list.sort_by_key(|(_, p)| p.joined_order);
        RoomSnapshot {
            seq: self.seq,
            max_on_stage: self.config.max_on_stage,
            participants: list.into_iter().map(|(id, p)| info_of(id, p)).collect(),
            queue: self.queue.clone(),
        }
    }

    /// Handles one call from a participant in the roster. A refused call changes nothing
    /// and produces no event.
    pub fn handle_call(
        &mut self,
        caller: &UserId,
        call: Call,
        now: UnixMillis,
    ) -> Result<CallResult, StageError> {
        self.member(caller)?;
        if matches!(call, Call::LeaveMeeting | Call::EndMeeting) {
            // Never refused for the budget (it ends the session, or the meeting), but what
            // it tells the room is counted, so leaving and coming back in a loop spends the
            // budget too.
            let seq_before = self.seq;
            let outcome = self.apply_call(caller, call, now);
            self.charge(caller, self.seq - seq_before, now);
            return outcome;
        }
        if !broadcasts(&call) {
            return self.apply_call(caller, call, now);
        }
        let budget = self.config.budget;
        let bucket = self
            .budgets
            .entry(caller.clone())
            .or_insert_with(|| Bucket::full(budget, now));
        bucket.refill(budget, now);
        if bucket.tokens <= 0 {
            return Err(StageError::RateLimited {
                retry_after_ms: bucket.retry_after(budget, now),
            });
        }
        let media = call.is_media();
        let seq_before = self.seq;
        let outcome = self.apply_call(caller, call, now);
        if outcome.is_ok() {
            // Media calls produce no room event here; the server tells the room about
            // the publication instead: one message per connection all the same.
            let events = if media { 1 } else { self.seq - seq_before };
            self.charge(caller, events, now);
        }
        outcome
    }

    /// May this participant's connection arrive now? An arrival that would tell the room
    /// (a newcomer, or a return after a drop) needs a token of its broadcast budget, so a
    /// client that connects and drops in a loop is refused with `rate_limited` once it has
    /// spent it (a client's reconnect loop retries; one token comes back every
    /// `refill_ms`). A connection replacing a live one tells nobody and is always let in.
    pub fn may_arrive(&self, user_id: &UserId, now: UnixMillis) -> Result<(), StageError> {
        if self.is_connected(user_id) {
            return Ok(());
        }
        let bucket = self.bucket_at(user_id, now);
        if bucket.tokens <= 0 {
            return Err(StageError::RateLimited {
                retry_after_ms: bucket.retry_after(self.config.budget, now),
            });
        }
        Ok(())
    }

    /// A participant's bucket as it stands at `now` (a full one for a newcomer), without
    /// changing the stored one.
    fn bucket_at(&self, user_id: &UserId, now: UnixMillis) -> Bucket {
        let budget = self.config.budget;
        let mut bucket = self
            .budgets
            .get(user_id)
            .copied()
            .unwrap_or_else(|| Bucket::full(budget, now));
        bucket.refill(budget, now);
        bucket
    }

    /// Spends `events` tokens of a participant's budget (possibly overdrawing it).
    fn charge(&mut self, user_id: &UserId, events: u64, now: UnixMillis) {
        if events == 0 {
            return;
        }
        let budget = self.config.budget;
        let bucket = self
            .budgets
            .entry(user_id.clone())
            .or_insert_with(|| Bucket::full(budget, now));
        bucket.refill(budget, now);
        // The debt stops at one bucket: a host who granted a crowd at once waits at most
        // `burst + 1` refills before the next change, not one refill per person granted.
        let floor = -i64::from(budget.burst);
        bucket.tokens = bucket
            .tokens
            .saturating_sub(i64::try_from(events).unwrap_or(i64::MAX))
            .max(floor);
    }

    /// The budget's remaining tokens of a participant as of `now` (the full `burst` for
    /// one that has spent nothing), for tests and diagnostics.
    pub fn budget_of(&self, user_id: &UserId, now: UnixMillis) -> i64 {
        self.bucket_at(user_id, now).tokens
    }

    /// [`Room::handle_call`] once the budget allows it: the stage rules.
    fn apply_call(
        &mut self,
        caller: &UserId,
        call: Call,
        now: UnixMillis,
    ) -> Result<CallResult, StageError> {
        let me = self.member(caller)?;
        let preset = me.preset.clone();
        let status = me.status;
        match call {
            Call::GetAccessRequests => {
                require(preset.may_accept_requests(), "accept_stage_requests")?;
                Ok(CallResult::Requests(self.queue.clone()))
            }
            Call::RequestAccess => {
                require_stage_enabled(&preset)?;
                if preset.stage_access == StageAccess::NotAllowed {
                    return Err(StageError::PermissionDenied(
                        "this preset may not request the stage (stage_access NOT_ALLOWED)".into(),
                    ));
                }
                expect_status(caller, status, &[StageStatus::OffStage])?;
                let (to, reason) = if preset.stage_access == StageAccess::Allowed {
                    (
                        StageStatus::AcceptedToJoinStage,
                        StageChangeReason::AutoAccepted,
                    )
                } else {
                    (
                        StageStatus::RequestedToJoinStage,
                        StageChangeReason::Requested,
                    )
                };
                self.set_status(caller, to, reason, None, now);
                Ok(CallResult::Status { stage_status: to })
            }
            Call::CancelRequestAccess => {
                expect_status(caller, status, &[StageStatus::RequestedToJoinStage])?;
                let to = StageStatus::OffStage;
                self.set_status(caller, to, StageChangeReason::Cancelled, None, now);
                Ok(CallResult::Status { stage_status: to })
            }
            Call::GrantAccess { user_ids } => {
                require(preset.may_accept_requests(), "accept_stage_requests")?;
                let targets = self.targets(user_ids, |id, p| {
                    if !p.preset.stage_enabled {
                        return Err(StageError::PermissionDenied(format!(
                            "{id}'s preset has the stage disabled"
                        )));
                    }
                    expect_status(
                        id,
                        p.status,
                        &[StageStatus::RequestedToJoinStage, StageStatus::OffStage],
                    )
                })?;
                for id in targets {
                    let reason = if self.status_of(&id) == Some(StageStatus::OffStage) {
                        StageChangeReason::Invited
                    } else {
                        StageChangeReason::Granted
                    };
                    self.set_status(
                        &id,
                        StageStatus::AcceptedToJoinStage,
                        reason,
                        Some(caller.clone()),
                        now,
                    );
                }
                Ok(CallResult::Done)
            }
            Call::DenyAccess { user_ids } => {
                require(preset.may_accept_requests(), "accept_stage_requests")?;
                let targets = self.targets(user_ids, |id, p| {
                    expect_status(id, p.status, &[StageStatus::RequestedToJoinStage])
                })?;
                for id in targets {
                    self.set_status(
                        &id,
                        StageStatus::OffStage,
                        StageChangeReason::Denied,
                        Some(caller.clone()),
                        now,
                    );
                }
                Ok(CallResult::Done)
            }
            Call::Join => {
                require_stage_enabled(&preset)?;
                match status {
                    StageStatus::OnStage => {
                        return Err(StageError::InvalidState("already on stage".into()))
                    }
                    StageStatus::AcceptedToJoinStage => {}
                    StageStatus::OffStage | StageStatus::RequestedToJoinStage => {
                        if preset.stage_access != StageAccess::Allowed {
                            return Err(StageError::PermissionDenied(
                                "joining the stage needs an accepted request or an invitation"
                                    .into(),
                            ));
                        }
                    }
                }
                if self.on_stage >= self.config.max_on_stage {
                    return Err(StageError::StageFull {
                        max: self.config.max_on_stage,
                    });
                }
                let to = StageStatus::OnStage;
                self.set_status(caller, to, StageChangeReason::Joined, None, now);
                Ok(CallResult::Status { stage_status: to })
            }
            Call::Leave => {
                expect_status(
                    caller,
                    status,
                    &[StageStatus::OnStage, StageStatus::AcceptedToJoinStage],
                )?;
                let reason = if status == StageStatus::OnStage {
                    StageChangeReason::Left
                } else {
                    StageChangeReason::Declined
                };
                let to = StageStatus::OffStage;
                self.set_status(caller, to, reason, None, now);
                Ok(CallResult::Status { stage_status: to })
            }
            Call::Kick { user_ids } => {
                require(preset.may_kick(), "kick_participant")?;
                let targets = self.targets(user_ids, |id, p| {
                    expect_status(
                        id,
                        p.status,
                        &[StageStatus::OnStage, StageStatus::AcceptedToJoinStage],
                    )
                })?;
                for id in targets {
                    self.set_status(
                        &id,
                        StageStatus::OffStage,
                        StageChangeReason::Kicked,
                        Some(caller.clone()),
                        now,
                    );
                }
                Ok(CallResult::Done)
            }
            Call::Snapshot => Ok(CallResult::Snapshot(self.snapshot())),
            Call::LeaveMeeting => {
                self.remove(caller, LeaveReason::Left);
                Ok(CallResult::Done)
            }
            Call::EndMeeting => {
                require(
                    preset.may_end_meeting(),
                    "accept_stage_requests and kick_participant",
                )?;
                self.end(caller);
                Ok(CallResult::Done)
            }
            // Media calls are carried out by the SFU; the room rules on who may make them
            // and keeps who publishes what (a publish is recorded when the SFU has
            // accepted it: [`Room::media_published`]).
            Call::Publish { .. } => {
                require(
                    preset.can_produce_audio || preset.can_produce_video,
                    "can_produce_audio or can_produce_video",
                )?;
                if status != StageStatus::OnStage {
                    return Err(StageError::InvalidState(
                        "only a participant ON_STAGE may publish".into(),
                    ));
                }
                Ok(CallResult::Done)
            }
            Call::Subscribe { user_id, .. } => {
                if user_id == *caller {
                    return Err(StageError::InvalidState(
                        "a participant does not subscribe to itself".into(),
                    ));
                }
                let target = self.member(&user_id)?;
                if target.status != StageStatus::OnStage {
                    return Err(StageError::InvalidState(format!(
                        "{user_id} is not on stage"
                    )));
                }
                Ok(CallResult::Done)
            }
            Call::MediaState { audio, video } => {
                if status != StageStatus::OnStage {
                    return Err(StageError::InvalidState(
                        "only a participant ON_STAGE publishes".into(),
                    ));
                }
                // Before the publication is accepted there is nothing to tell: the
                // publish carries what it carries.
                if self.publication_of(caller).is_some() {
                    self.media_published(caller, MediaKinds::new(audio, video));
                }
                Ok(CallResult::Done)
            }
            Call::Unpublish => {
                self.end_publication(caller);
                Ok(CallResult::Done)
            }
            Call::Unsubscribe { .. } => Ok(CallResult::Done),
            Call::Tiles { tiles } => {
                if let Some(t) = tiles.iter().find(|t| {
                    t.width > onstage_proto::MAX_TILE_SIDE
                        || t.height > onstage_proto::MAX_TILE_SIDE
                }) {
                    return Err(StageError::BadRequest(format!(
                        "a tile of {}x{} for {} is larger than {max} on a side",
                        t.width,
                        t.height,
                        t.user_id,
                        max = onstage_proto::MAX_TILE_SIDE
                    )));
                }
                Ok(CallResult::Done)
            }
            Call::MuteParticipant { user_id } => {
                require(
                    preset.may_kick(),
                    "accept_stage_requests or kick_participant",
                )?;
                let target = self.member(&user_id)?;
                expect_status(&user_id, target.status, &[StageStatus::OnStage])?;
                // Everyone's tiles show it muted at once; the SFU holds the audio until the
                // participant unmutes itself (`media.state` with audio).
                if let Some(kinds) = self.publication_of(&user_id) {
                    if kinds.audio {
                        self.media_published(&user_id, MediaKinds::new(false, kinds.video));
                    }
                }
                self.emit(RoomEvent::ParticipantMuted {
                    user_id,
                    by: caller.clone(),
                });
                Ok(CallResult::Done)
            }
            // Carried out by the server once storage has (the participant forgotten, the
            // preset written): then [`Room::remove_member`] or [`Room::set_preset`]. Here
            // only who may make them, and at whom.
            Call::RemoveParticipant { user_id } => {
                require(preset.kick_participant, "kick_participant")?;
                if user_id == *caller {
                    return Err(StageError::InvalidState(
                        "a participant does not remove itself (meeting.leave)".into(),
                    ));
                }
                self.member(&user_id)?;
                Ok(CallResult::Done)
            }
            Call::SetPreset {
                user_id,
                preset: name,
            } => {
                require(
                    preset.may_end_meeting(),
                    "accept_stage_requests and kick_participant",
                )?;
                if name.trim().is_empty() {
                    return Err(StageError::BadRequest("preset is empty".into()));
                }
                self.member(&user_id)?;
                Ok(CallResult::Done)
            }
        }
    }

    /// The participant now has `preset` (storage already says so; `by` gave it): everyone
    /// hears `preset_changed`, then, when the new preset does not allow where it is, its
    /// stage status ends (`denied` for a request the preset may not make, `kicked` for a
    /// stage the preset has disabled). Returns whether it was in the roster.
    pub fn set_preset(&mut self, user_id: &UserId, preset: Preset, by: &UserId) -> bool {
        let Some(p) = self.participants.get_mut(user_id) else {
            return false;
        };
        p.preset = preset.clone();
        let status = p.status;
        self.emit(RoomEvent::PresetChanged {
            user_id: user_id.clone(),
            preset: preset.clone(),
            by: by.clone(),
        });
        let reason = match status {
            StageStatus::RequestedToJoinStage
                if !preset.stage_enabled || preset.stage_access == StageAccess::NotAllowed =>
            {
                Some(StageChangeReason::Denied)
            }
            StageStatus::OnStage | StageStatus::AcceptedToJoinStage if !preset.stage_enabled => {
                Some(StageChangeReason::Kicked)
            }
            _ => None,
        };
        if let Some(reason) = reason {
            self.set_status(user_id, StageStatus::OffStage, reason, Some(by.clone()), 0);
        }
        true
    }

    /// A participant in the roster, or `not_found` naming it.
    fn member(&self, user_id: &UserId) -> Result<&Participant, StageError> {
        self.participants
            .get(user_id)
            .ok_or_else(|| StageError::NotFound(user_id.clone()))
    }

    /// Validates a batch's targets, all before any change: the list is non-empty and not
    /// oversized, every id is in the roster, and `check` passes for each. Duplicate ids count
    /// once. Returns the targets in the order given.
    fn targets(
        &self,
        user_ids: Vec<UserId>,
        check: impl Fn(&UserId, &Participant) -> Result<(), StageError>,
    ) -> Result<Vec<UserId>, StageError> {
        if user_ids.is_empty() {
            return Err(StageError::BadRequest("user_ids is empty".into()));
        }
        if user_ids.len() > MAX_BATCH_IDS {
            return Err(StageError::BadRequest(format!(
                "at most {MAX_BATCH_IDS} user_ids per call"
            )));
        }
        let mut unique: Vec<UserId> = Vec::with_capacity(user_ids.len());
        for id in user_ids {
            if !unique.contains(&id) {
                unique.push(id);
            }
        }
        for id in &unique {
            let p = self.member(id)?;
            check(id, p)?;
        }
        Ok(unique)
    }

    fn set_status(
        &mut self,
        user_id: &UserId,
        to: StageStatus,
        reason: StageChangeReason,
        by: Option<UserId>,
        now: UnixMillis,
    ) {
        let Some(p) = self.participants.get_mut(user_id) else {
            return;
        };
        let from = std::mem::replace(&mut p.status, to);
        let name = p.name.clone();
        if from == StageStatus::OnStage {
            self.on_stage -= 1;
        }
        let ends_publication = to != StageStatus::OnStage && p.publishing.is_some();
        if to == StageStatus::OnStage {
            self.on_stage += 1;
        }
        if from == StageStatus::RequestedToJoinStage {
            self.queue.retain(|r| &r.user_id != user_id);
        }
        let requested_at = (to == StageStatus::RequestedToJoinStage).then(|| {
            // Oldest first; equal times keep arrival order.
            let at = self.queue.partition_point(|r| r.requested_at <= now);
            self.queue.insert(
                at,
                AccessRequest {
                    user_id: user_id.clone(),
                    name,
                    requested_at: now,
                },
            );
            now
        });
        self.emit(RoomEvent::StageStatusChanged {
            user_id: user_id.clone(),
            status: to,
            reason,
            by,
            requested_at,
        });
        if ends_publication {
            // Off the stage (leave, kick, removal): the SFU stops forwarding it.
            self.end_publication(user_id);
        }
    }

    /// Ends the meeting: one `meeting_ended` event, then nobody is left. Publications end
    /// silently: every connection is about to close, and its media with it.
    fn end(&mut self, by: &UserId) {
        self.participants.clear();
        self.queue.clear();
        self.on_stage = 0;
        self.media_events.clear();
        self.emit(RoomEvent::MeetingEnded { by: by.clone() });
    }

    fn remove(&mut self, user_id: &UserId, reason: LeaveReason) {
        let Some(status) = self.status_of(user_id) else {
            return;
        };
        if status != StageStatus::OffStage {
            self.set_status(
                user_id,
                StageStatus::OffStage,
                StageChangeReason::Removed,
                None,
                0,
            );
        }
        self.participants.remove(user_id);
        self.emit(RoomEvent::ParticipantLeft {
            user_id: user_id.clone(),
            reason,
        });
    }

    fn emit(&mut self, event: RoomEvent) {
        self.seq += 1;
        self.events.push_back(Sequenced {
            seq: self.seq,
            event,
        });
    }
}

fn info_of(user_id: &UserId, p: &Participant) -> ParticipantInfo {
    ParticipantInfo {
        user_id: user_id.clone(),
        peer_id: p.peer_id.clone(),
        name: p.name.clone(),
        preset: p.preset.name.clone(),
        stage_status: p.status,
        connected: p.disconnected_at.is_none(),
    }
}

fn require(allowed: bool, permission: &str) -> Result<(), StageError> {
    if allowed {
        Ok(())
    } else {
        Err(StageError::PermissionDenied(format!(
            "this preset lacks {permission}"
        )))
    }
}

fn require_stage_enabled(preset: &Preset) -> Result<(), StageError> {
    require(preset.stage_enabled, "stage_enabled")
}

fn expect_status(
    who: &UserId,
    status: StageStatus,
    allowed: &[StageStatus],
) -> Result<(), StageError> {
    if allowed.contains(&status) {
        return Ok(());
    }
    let wanted: Vec<&str> = allowed.iter().map(|s| s.as_str()).collect();
    Err(StageError::InvalidState(format!(
        "{who} is {}, needs {}",
        status.as_str(),
        wanted.join(" or ")
    )))
}
