//! The client's copy of the room, and the rules that turn room events into
//! [`MeetingEvent`]s. Pure: no I/O, no clock, no tasks — the connection task feeds it and
//! publishes what it returns.
//!
//! # Ordering and gaps
//! Room events carry a per-meeting sequence number. The mirror starts from the welcome's
//! snapshot (`seq` = the last event it includes) and applies event `seq + 1`; older events
//! are ignored (already in the snapshot). A jump means events were missed: the mirror asks
//! for a fresh snapshot ([`Applied::need_snapshot`]), buffers what arrives meanwhile, and on
//! [`Mirror::on_snapshot`] replaces its state, emits events for what changed, then replays
//! the buffered events that are newer than the snapshot.
//!
//! # Derivation rules
//! For `StageStatusChanged { user_id, status, reason, by, requested_at }`:
//! - if it is this participant: `stageRequestApproved {by}` when the reason is `granted` or
//!   `invited`; `stageRequestRejected {by}` when it is `denied`; then
//!   `stageStatusUpdate {status}`;
//! - always `participantStageStatus {user_id, status}`;
//! - if this participant's preset may accept requests and the queue changed:
//!   `newStageRequest {request}` when the status became REQUESTED, then
//!   `stageAccessRequestUpdate {requests}` with the whole queue.
//!
//! `ParticipantJoined`, `ParticipantLeft` and `ParticipantConnection` map one to one
//! (`ParticipantLeft` also drops the participant from the queue, with a queue update for
//! acceptors when it was in it).
//!
//! A snapshot replacing the state (after a gap, or a reconnect's welcome) emits the
//! difference: `participantLeft` (reason `left`: the real one is unknown) for those gone,
//! `participantJoined` for newcomers, status and connection events for changes
//! (`stageRequestApproved {by: null}` when this participant became ACCEPTED from REQUESTED,
//! or from OFF unless its preset is ALLOWED, whose own `requestAccess` accepts at once),
//! and for acceptors `newStageRequest` for each new request plus one queue update.

use std::collections::BTreeMap;

use onstage_proto::{
    AccessRequest, IceServer, LeaveReason, MediaEvent, MediaKinds, MeetingId, ParticipantInfo,
    PeerId, Preset, RoomEvent, RoomSnapshot, StageAccess, StageChangeReason, StageStatus, UserId,
    Welcome,
};

use crate::MeetingEvent;

/// What applying an input produced.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Applied {
    /// Events to publish, in order.
    pub events: Vec<MeetingEvent>,
    /// A gap was seen: ask the server for `meeting.snapshot` and hand the result to
    /// [`Mirror::on_snapshot`].
    pub need_snapshot: bool,
}

/// The client's copy of the room.
#[derive(Debug, Clone)]
pub struct Mirror {
    meeting_id: MeetingId,
    title: String,
    user_id: UserId,
    peer_id: PeerId,
    preset: Preset,
    grace_ms: u64,
    seq: u64,
    max_on_stage: u32,
    /// The roster in join order.
    participants: Vec<ParticipantInfo>,
    /// The request queue, oldest first.
    queue: Vec<AccessRequest>,
    /// Set while a snapshot is awaited: the events received meanwhile, by seq.
    resync: Option<BTreeMap<u64, RoomEvent>>,
    /// The seq of the last event that changed this participant's own status.
    own_status_seq: u64,
    /// Who publishes media and what (audio, video), from the welcome and the `media`
    /// messages.
    publishing: BTreeMap<UserId, MediaKinds>,
    /// The relays (with this participant's credentials) from the latest welcome.
    ice_servers: Vec<IceServer>,
}

impl Mirror {
    /// A mirror of the room as the welcome describes it.
    pub fn new(welcome: Welcome) -> Self {
        let Welcome {
            meeting_id,
            title,
            user_id,
            peer_id,
            resumed: _,
            preset,
            grace_ms,
            snapshot,
            publishing,
            ice_servers,
            token: _,
        } = welcome;
        Self {
            meeting_id,
            title,
            user_id,
            peer_id,
            preset,
            grace_ms,
            seq: snapshot.seq,
            max_on_stage: snapshot.max_on_stage,
            participants: snapshot.participants,
            queue: snapshot.queue,
            resync: None,
            own_status_seq: 0,
            publishing: publishing
                .into_iter()
                .map(|p| (p.user_id, MediaKinds::new(p.audio, p.video)))
                .collect(),
            ice_servers,
        }
    }

    /// The relays to offer media through, from the latest welcome.
    pub fn ice_servers(&self) -> &[IceServer] {
        &self.ice_servers
    }

    /// Who publishes media right now and what.
    pub fn publishing(&self) -> &BTreeMap<UserId, MediaKinds> {
        &self.publishing
    }

    /// Events telling what is published now (after a join: there is no earlier state).
    pub fn publishing_events(&self) -> Vec<MeetingEvent> {
        self.publishing
            .iter()
            .map(|(user_id, kinds)| MeetingEvent::MediaPublished {
                user_id: user_id.clone(),
                audio: kinds.audio,
                video: kinds.video,
            })
            .collect()
    }

    /// A `media` message: who publishes changed. Returns the event to deliver.
    pub fn on_media(&mut self, event: MediaEvent) -> MeetingEvent {
        let user_id = event.user_id().clone();
        match event.publication() {
            Some(kinds) => {
                self.publishing.insert(user_id.clone(), kinds);
                MeetingEvent::MediaPublished {
                    user_id,
                    audio: kinds.audio,
                    video: kinds.video,
                }
            }
            None => {
                self.publishing.remove(&user_id);
                MeetingEvent::MediaUnpublished { user_id }
            }
        }
    }

    pub fn meeting_id(&self) -> &MeetingId {
        &self.meeting_id
    }

    /// The meeting's title (empty from a server that does not send one).
    pub fn title(&self) -> &str {
        &self.title
    }

    pub fn user_id(&self) -> &UserId {
        &self.user_id
    }

    pub fn peer_id(&self) -> &PeerId {
        &self.peer_id
    }

    /// This participant's preset (its permissions).
    pub fn preset(&self) -> &Preset {
        &self.preset
    }

    /// How long the server keeps a dropped session, in milliseconds.
    pub fn grace_ms(&self) -> u64 {
        self.grace_ms
    }

    /// The sequence number of the last event applied.
    pub fn seq(&self) -> u64 {
        self.seq
    }

    pub fn max_on_stage(&self) -> u32 {
        self.max_on_stage
    }

    /// Everyone in the roster, this participant included, in join order.
    pub fn participants(&self) -> &[ParticipantInfo] {
        &self.participants
    }

    pub fn participant(&self, user_id: &UserId) -> Option<&ParticipantInfo> {
        self.participants.iter().find(|p| &p.user_id == user_id)
    }

    /// This participant as the roster shows it (an OFF_STAGE stand-in if the roster does not
    /// hold it, which only happens in the instant around leaving).
    pub fn me(&self) -> ParticipantInfo {
        self.participant(&self.user_id)
            .cloned()
            .unwrap_or_else(|| ParticipantInfo {
                user_id: self.user_id.clone(),
                peer_id: self.peer_id.clone(),
                name: String::new(),
                preset: self.preset.name.clone(),
                stage_status: StageStatus::OffStage,
                connected: false,
            })
    }

    /// This participant's own stage status.
    pub fn status(&self) -> StageStatus {
        self.status_of(&self.user_id)
    }

    /// The request queue, oldest first.
    pub fn queue(&self) -> &[AccessRequest] {
        &self.queue
    }

    /// This participant's place in the request queue (1 = next in line), while REQUESTED.
    /// Every participant's mirror keeps the queue (the events carry each request's time);
    /// only acceptors are told it as `stageAccessRequestUpdate`.
    pub fn place_in_queue(&self) -> Option<usize> {
        self.queue
            .iter()
            .position(|r| r.user_id == self.user_id)
            .map(|i| i + 1)
    }

    /// The sequence number of the last event (or snapshot) that changed this participant's
    /// own stage status. A status call sent when the mirror was at seq `s` has taken effect
    /// in the mirror once this is greater than `s`.
    pub fn own_status_seq(&self) -> u64 {
        self.own_status_seq
    }

    /// Is a snapshot awaited (a gap was seen)?
    pub fn awaiting_snapshot(&self) -> bool {
        self.resync.is_some()
    }

    /// Applies one sequenced room event.
    pub fn on_event(&mut self, seq: u64, event: RoomEvent) -> Applied {
        if let Some(buffer) = &mut self.resync {
            buffer.insert(seq, event);
            return Applied::default();
        }
        if seq <= self.seq {
            return Applied::default();
        }
        if seq > self.seq + 1 {
            self.resync = Some(BTreeMap::from([(seq, event)]));
            return Applied {
                events: Vec::new(),
                need_snapshot: true,
            };
        }
        self.seq = seq;
        Applied {
            events: self.apply(event),
            need_snapshot: false,
        }
    }

    /// A host ended the meeting: told at once, gap or not (nothing that could come after
    /// it matters, and a resync could never answer: the connection closes next).
    pub fn on_meeting_ended(&mut self, seq: u64, by: UserId) -> Vec<MeetingEvent> {
        self.resync = None;
        self.seq = self.seq.max(seq);
        vec![MeetingEvent::MeetingEnded { by }]
    }

    /// Replaces the room with a fresh snapshot (the answer to `meeting.snapshot`), emits what
    /// changed, then replays the events buffered while waiting.
    pub fn on_snapshot(&mut self, snapshot: RoomSnapshot) -> Applied {
        let buffered = self.resync.take().unwrap_or_default();
        let mut applied = Applied {
            events: self.replace(snapshot),
            need_snapshot: false,
        };
        for (seq, event) in buffered {
            let more = self.on_event(seq, event);
            applied.events.extend(more.events);
            applied.need_snapshot |= more.need_snapshot;
        }
        applied
    }

    /// Gives up waiting for a snapshot (the request failed): drops the buffered events. The
    /// next event will see the gap again and ask anew.
    pub fn snapshot_failed(&mut self) {
        self.resync = None;
    }

    /// A new welcome after a reconnect: takes its ids, preset and snapshot and emits what
    /// changed. Pending resyncs are dropped (the snapshot is fresh).
    pub fn on_welcome(&mut self, welcome: Welcome) -> Vec<MeetingEvent> {
        let Welcome {
            meeting_id,
            title,
            user_id,
            peer_id,
            resumed: _,
            preset,
            grace_ms,
            snapshot,
            publishing,
            ice_servers,
            token: _,
        } = welcome;
        self.resync = None;
        self.title = title;
        // Fresh credentials with every welcome: expired ones are renewed by reconnecting.
        self.ice_servers = ice_servers;
        // What changed in who publishes while we were away, as events.
        let now: BTreeMap<UserId, MediaKinds> = publishing
            .into_iter()
            .map(|p| (p.user_id, MediaKinds::new(p.audio, p.video)))
            .collect();
        let mut media: Vec<MeetingEvent> = self
            .publishing
            .keys()
            .filter(|u| !now.contains_key(*u))
            .map(|u| MeetingEvent::MediaUnpublished { user_id: u.clone() })
            .collect();
        media.extend(
            now.iter()
                .filter(|(u, state)| self.publishing.get(*u) != Some(*state))
                .map(|(u, kinds)| MeetingEvent::MediaPublished {
                    user_id: u.clone(),
                    audio: kinds.audio,
                    video: kinds.video,
                }),
        );
        self.publishing = now;
        self.meeting_id = meeting_id;
        self.user_id = user_id;
        self.peer_id = peer_id;
        self.preset = preset;
        self.grace_ms = grace_ms;
        let mut events = self.replace(snapshot);
        events.extend(media);
        events
    }

    fn status_of(&self, user_id: &UserId) -> StageStatus {
        self.participant(user_id)
            .map(|p| p.stage_status)
            .unwrap_or_default()
    }

    fn is_me(&self, user_id: &UserId) -> bool {
        &self.user_id == user_id
    }

    fn acceptor(&self) -> bool {
        self.preset.may_accept_requests()
    }

    fn apply(&mut self, event: RoomEvent) -> Vec<MeetingEvent> {
        let mut out = Vec::new();
        match event {
            RoomEvent::ParticipantJoined { participant } => {
                match self
                    .participants
                    .iter_mut()
                    .find(|p| p.user_id == participant.user_id)
                {
                    Some(existing) => *existing = participant.clone(),
                    None => self.participants.push(participant.clone()),
                }
                out.push(MeetingEvent::ParticipantJoined { participant });
            }
            RoomEvent::ParticipantLeft { user_id, reason } => {
                self.participants.retain(|p| p.user_id != user_id);
                let before = self.queue.len();
                self.queue.retain(|r| r.user_id != user_id);
                if self.queue.len() != before && self.acceptor() {
                    out.push(MeetingEvent::StageAccessRequestUpdate {
                        requests: self.queue.clone(),
                    });
                }
                out.push(MeetingEvent::ParticipantLeft { user_id, reason });
            }
            RoomEvent::MeetingEnded { by } => out.push(MeetingEvent::MeetingEnded { by }),
            RoomEvent::ParticipantMuted { user_id, by } => {
                out.push(MeetingEvent::ParticipantMuted { user_id, by });
            }
            RoomEvent::PresetChanged {
                user_id,
                preset,
                by,
            } => {
                if let Some(p) = self.participants.iter_mut().find(|p| p.user_id == user_id) {
                    p.preset.clone_from(&preset.name);
                }
                let was_acceptor = self.acceptor();
                let name = preset.name.clone();
                if self.is_me(&user_id) {
                    self.preset = preset;
                }
                out.push(MeetingEvent::PresetChanged {
                    user_id,
                    preset: name,
                    by,
                });
                // A new host is shown the queue as it stands (it heard no request so far).
                if !was_acceptor && self.acceptor() {
                    out.push(MeetingEvent::StageAccessRequestUpdate {
                        requests: self.queue.clone(),
                    });
                }
            }
            RoomEvent::ParticipantConnection { user_id, connected } => {
                if let Some(p) = self.participants.iter_mut().find(|p| p.user_id == user_id) {
                    p.connected = connected;
                }
                out.push(MeetingEvent::ParticipantConnection { user_id, connected });
            }
            RoomEvent::StageStatusChanged {
                user_id,
                status,
                reason,
                by,
                requested_at,
            } => {
                let mut name = String::new();
                if let Some(p) = self.participants.iter_mut().find(|p| p.user_id == user_id) {
                    p.stage_status = status;
                    name = p.name.clone();
                }
                let before = self.queue.len();
                self.queue.retain(|r| r.user_id != user_id);
                let mut queue_changed = self.queue.len() != before;
                let mut new_request = None;
                if status == StageStatus::RequestedToJoinStage {
                    let request = AccessRequest {
                        user_id: user_id.clone(),
                        name,
                        requested_at: requested_at.unwrap_or_default(),
                    };
                    insert_request(&mut self.queue, request.clone());
                    new_request = Some(request);
                    queue_changed = true;
                }
                if self.is_me(&user_id) {
                    self.own_status_seq = self.seq;
                    match reason {
                        StageChangeReason::Granted | StageChangeReason::Invited => {
                            out.push(MeetingEvent::StageRequestApproved { by: by.clone() });
                        }
                        StageChangeReason::Denied => {
                            out.push(MeetingEvent::StageRequestRejected { by: by.clone() });
                        }
                        _ => {}
                    }
                    out.push(MeetingEvent::StageStatusUpdate { status });
                }
                out.push(MeetingEvent::ParticipantStageStatus { user_id, status });
                if queue_changed && self.acceptor() {
                    if let Some(request) = new_request {
                        out.push(MeetingEvent::NewStageRequest { request });
                    }
                    out.push(MeetingEvent::StageAccessRequestUpdate {
                        requests: self.queue.clone(),
                    });
                }
            }
        }
        out
    }

    /// Replaces roster and queue with a snapshot; returns the events for the difference.
    fn replace(&mut self, snapshot: RoomSnapshot) -> Vec<MeetingEvent> {
        let old_participants = std::mem::replace(&mut self.participants, snapshot.participants);
        let old_queue = std::mem::replace(&mut self.queue, snapshot.queue);
        self.seq = snapshot.seq;
        self.max_on_stage = snapshot.max_on_stage;

        let old_own = old_participants
            .iter()
            .find(|p| p.user_id == self.user_id)
            .map(|p| p.stage_status)
            .unwrap_or_default();
        if old_own != self.status() {
            self.own_status_seq = self.seq;
        }

        let mut out = Vec::new();
        let find_old = |id: &UserId| old_participants.iter().find(|p| &p.user_id == id);

        for gone in old_participants
            .iter()
            .filter(|o| self.participant(&o.user_id).is_none())
        {
            if gone.stage_status != StageStatus::OffStage {
                if self.is_me(&gone.user_id) {
                    out.push(MeetingEvent::StageStatusUpdate {
                        status: StageStatus::OffStage,
                    });
                }
                out.push(MeetingEvent::ParticipantStageStatus {
                    user_id: gone.user_id.clone(),
                    status: StageStatus::OffStage,
                });
            }
            out.push(MeetingEvent::ParticipantLeft {
                user_id: gone.user_id.clone(),
                reason: LeaveReason::Left,
            });
        }

        for now in &self.participants {
            let old_status = find_old(&now.user_id)
                .map(|o| o.stage_status)
                .unwrap_or_default();
            if self.is_me(&now.user_id) && old_status != now.stage_status {
                // Accepted without us asking (an ALLOWED preset's own requestAccess goes
                // straight to ACCEPTED) is not an approval; anything else is.
                let approved = now.stage_status == StageStatus::AcceptedToJoinStage
                    && (old_status == StageStatus::RequestedToJoinStage
                        || (old_status == StageStatus::OffStage
                            && self.preset.stage_access != StageAccess::Allowed));
                if approved {
                    out.push(MeetingEvent::StageRequestApproved { by: None });
                }
                out.push(MeetingEvent::StageStatusUpdate {
                    status: now.stage_status,
                });
            }
            match find_old(&now.user_id) {
                None => out.push(MeetingEvent::ParticipantJoined {
                    participant: now.clone(),
                }),
                Some(old) => {
                    if old.stage_status != now.stage_status {
                        out.push(MeetingEvent::ParticipantStageStatus {
                            user_id: now.user_id.clone(),
                            status: now.stage_status,
                        });
                    }
                    if old.connected != now.connected {
                        out.push(MeetingEvent::ParticipantConnection {
                            user_id: now.user_id.clone(),
                            connected: now.connected,
                        });
                    }
                }
            }
        }

        if self.acceptor() && old_queue != self.queue {
            for request in self.queue.iter().filter(|r| !old_queue.contains(r)) {
                out.push(MeetingEvent::NewStageRequest {
                    request: request.clone(),
                });
            }
            out.push(MeetingEvent::StageAccessRequestUpdate {
                requests: self.queue.clone(),
            });
        }
        out
    }
}

/// Inserts a request keeping the queue oldest first; equal times keep arrival order (the
/// room's rule).
fn insert_request(queue: &mut Vec<AccessRequest>, request: AccessRequest) {
    let at = queue.partition_point(|r| r.requested_at <= request.requested_at);
    queue.insert(at, request);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn preset(name: &str, access: StageAccess, accept: bool) -> Preset {
        Preset {
            name: name.into(),
            stage_enabled: true,
            stage_access: access,
            accept_stage_requests: accept,
            kick_participant: accept,
            can_produce_audio: true,
            can_produce_video: true,
        }
    }

    fn host() -> Preset {
        preset("host", StageAccess::Allowed, true)
    }

    fn viewer() -> Preset {
        preset("viewer", StageAccess::CanRequest, false)
    }

    fn info(id: &str, status: StageStatus) -> ParticipantInfo {
        ParticipantInfo {
            user_id: UserId::new(id),
            peer_id: PeerId::new(format!("p-{id}")),
            name: id.to_uppercase(),
            preset: "viewer".into(),
            stage_status: status,
            connected: true,
        }
    }

    fn request(id: &str, at: u64) -> AccessRequest {
        AccessRequest {
            user_id: UserId::new(id),
            name: id.to_uppercase(),
            requested_at: at,
        }
    }

    fn welcome(me: &str, preset: Preset, snapshot: RoomSnapshot) -> Welcome {
        Welcome {
            meeting_id: MeetingId::new("m"),
            title: "Standup".into(),
            user_id: UserId::new(me),
            peer_id: PeerId::new(format!("p-{me}")),
            resumed: false,
            preset,
            grace_ms: 30_000,
            snapshot,
            publishing: Vec::new(),
            ice_servers: Vec::new(),
            token: None,
        }
    }

    fn snapshot(seq: u64, participants: Vec<ParticipantInfo>) -> RoomSnapshot {
        RoomSnapshot {
            seq,
            max_on_stage: 25,
            participants,
            queue: Vec::new(),
        }
    }

    fn changed(
        id: &str,
        status: StageStatus,
        reason: StageChangeReason,
        by: Option<&str>,
        requested_at: Option<u64>,
    ) -> RoomEvent {
        RoomEvent::StageStatusChanged {
            user_id: UserId::new(id),
            status,
            reason,
            by: by.map(UserId::new),
            requested_at,
        }
    }

    /// A host `h` and a viewer `v`, both off stage, at seq 2.
    fn room() -> RoomSnapshot {
        snapshot(
            2,
            vec![
                info("h", StageStatus::OffStage),
                info("v", StageStatus::OffStage),
            ],
        )
    }

    use StageStatus::*;

    #[test]
    fn made_host_takes_the_new_permissions_and_is_shown_the_queue() {
        let mut room = room();
        room.participants.push(info("w", RequestedToJoinStage));
        room.queue.push(request("w", 50));
        let mut m = Mirror::new(welcome("v", viewer(), room));
        let a = m.on_event(
            3,
            RoomEvent::PresetChanged {
                user_id: "v".into(),
                preset: host(),
                by: "h".into(),
            },
        );
        assert_eq!(
            a.events,
            vec![
                MeetingEvent::PresetChanged {
                    user_id: "v".into(),
                    preset: "host".into(),
                    by: "h".into(),
                },
                MeetingEvent::StageAccessRequestUpdate {
                    requests: vec![request("w", 50)],
                },
            ]
        );
        assert!(m.preset().may_accept_requests());
        assert_eq!(m.me().preset, "host");
        // Someone else's change is told, and changes only the roster.
        let a = m.on_event(
            4,
            RoomEvent::PresetChanged {
                user_id: "h".into(),
                preset: viewer(),
                by: "v".into(),
            },
        );
        assert_eq!(a.events.len(), 1, "{:?}", a.events);
        assert_eq!(
            m.participant(&"h".into()).map(|p| p.preset.as_str()),
            Some("viewer")
        );
        assert!(m.preset().may_accept_requests(), "still a host");
        let a = m.on_event(
            5,
            RoomEvent::ParticipantMuted {
                user_id: "v".into(),
                by: "h".into(),
            },
        );
        assert_eq!(
            a.events,
            vec![MeetingEvent::ParticipantMuted {
                user_id: "v".into(),
                by: "h".into()
            }]
        );
    }

    #[test]
    fn own_request_and_grant_as_seen_by_the_requester() {
        let mut m = Mirror::new(welcome("v", viewer(), room()));
        let a = m.on_event(
            3,
            changed(
                "v",
                RequestedToJoinStage,
                StageChangeReason::Requested,
                None,
                Some(100),
            ),
        );
        assert!(!a.need_snapshot);
        assert_eq!(
            a.events,
            vec![
                MeetingEvent::StageStatusUpdate {
                    status: RequestedToJoinStage
                },
                MeetingEvent::ParticipantStageStatus {
                    user_id: "v".into(),
                    status: RequestedToJoinStage
                },
            ],
            "a viewer gets no queue events"
        );
        assert_eq!(m.queue(), &[request("v", 100)]);
        assert_eq!(m.status(), RequestedToJoinStage);
        assert_eq!(m.own_status_seq(), 3);

        let a = m.on_event(
            4,
            changed(
                "v",
                AcceptedToJoinStage,
                StageChangeReason::Granted,
                Some("h"),
                None,
            ),
        );
        assert_eq!(
            a.events,
            vec![
                MeetingEvent::StageRequestApproved {
                    by: Some("h".into())
                },
                MeetingEvent::StageStatusUpdate {
                    status: AcceptedToJoinStage
                },
                MeetingEvent::ParticipantStageStatus {
                    user_id: "v".into(),
                    status: AcceptedToJoinStage
                },
            ]
        );
        assert!(m.queue().is_empty());
        assert_eq!(m.me().stage_status, AcceptedToJoinStage);
    }

    #[test]
    fn requests_as_seen_by_the_host() {
        let mut m = Mirror::new(welcome("h", host(), room()));
        let a = m.on_event(
            3,
            changed(
                "v",
                RequestedToJoinStage,
                StageChangeReason::Requested,
                None,
                Some(100),
            ),
        );
        assert_eq!(
            a.events,
            vec![
                MeetingEvent::ParticipantStageStatus {
                    user_id: "v".into(),
                    status: RequestedToJoinStage
                },
                MeetingEvent::NewStageRequest {
                    request: request("v", 100)
                },
                MeetingEvent::StageAccessRequestUpdate {
                    requests: vec![request("v", 100)]
                },
            ]
        );
        assert_eq!(m.own_status_seq(), 0, "someone else's change");
        let a = m.on_event(
            4,
            changed("v", OffStage, StageChangeReason::Denied, Some("h"), None),
        );
        assert_eq!(
            a.events,
            vec![
                MeetingEvent::ParticipantStageStatus {
                    user_id: "v".into(),
                    status: OffStage
                },
                MeetingEvent::StageAccessRequestUpdate { requests: vec![] },
            ]
        );
        // The host's own join touches no queue.
        let a = m.on_event(
            5,
            changed("h", OnStage, StageChangeReason::Joined, None, None),
        );
        assert_eq!(
            a.events,
            vec![
                MeetingEvent::StageStatusUpdate { status: OnStage },
                MeetingEvent::ParticipantStageStatus {
                    user_id: "h".into(),
                    status: OnStage
                },
            ]
        );
    }

    #[test]
    fn denied_and_invited_are_told_to_the_target() {
        let mut m = Mirror::new(welcome("v", viewer(), room()));
        m.on_event(
            3,
            changed(
                "v",
                RequestedToJoinStage,
                StageChangeReason::Requested,
                None,
                Some(1),
            ),
        );
        let a = m.on_event(
            4,
            changed("v", OffStage, StageChangeReason::Denied, Some("h"), None),
        );
        assert_eq!(
            a.events[0],
            MeetingEvent::StageRequestRejected {
                by: Some("h".into())
            }
        );
        let a = m.on_event(
            5,
            changed(
                "v",
                AcceptedToJoinStage,
                StageChangeReason::Invited,
                Some("h"),
                None,
            ),
        );
        assert_eq!(
            a.events[0],
            MeetingEvent::StageRequestApproved {
                by: Some("h".into())
            }
        );
        // Kicked: only the status events.
        let a = m.on_event(
            6,
            changed("v", OffStage, StageChangeReason::Kicked, Some("h"), None),
        );
        assert_eq!(
            a.events,
            vec![
                MeetingEvent::StageStatusUpdate { status: OffStage },
                MeetingEvent::ParticipantStageStatus {
                    user_id: "v".into(),
                    status: OffStage
                },
            ]
        );
    }

    #[test]
    fn queue_keeps_oldest_first_with_ties_in_arrival_order() {
        let mut m = Mirror::new(welcome(
            "h",
            host(),
            snapshot(
                0,
                vec![
                    info("h", OffStage),
                    info("a", OffStage),
                    info("b", OffStage),
                    info("c", OffStage),
                ],
            ),
        ));
        let r = StageChangeReason::Requested;
        m.on_event(1, changed("a", RequestedToJoinStage, r, None, Some(10)));
        m.on_event(2, changed("b", RequestedToJoinStage, r, None, Some(10)));
        m.on_event(3, changed("c", RequestedToJoinStage, r, None, Some(5)));
        let ids: Vec<&str> = m.queue().iter().map(|r| r.user_id.as_str()).collect();
        assert_eq!(ids, ["c", "a", "b"]);
        assert_eq!(m.queue()[1].name, "A", "names come from the roster");
    }

    #[test]
    fn a_requester_knows_its_place_in_line_as_it_changes() {
        let mut m = Mirror::new(welcome(
            "b",
            viewer(),
            snapshot(
                0,
                vec![
                    info("a", OffStage),
                    info("b", OffStage),
                    info("c", OffStage),
                ],
            ),
        ));
        let r = StageChangeReason::Requested;
        assert_eq!(m.place_in_queue(), None);
        m.on_event(1, changed("a", RequestedToJoinStage, r, None, Some(10)));
        m.on_event(2, changed("b", RequestedToJoinStage, r, None, Some(20)));
        m.on_event(3, changed("c", RequestedToJoinStage, r, None, Some(30)));
        assert_eq!(m.place_in_queue(), Some(2), "not an acceptor, yet it knows");
        m.on_event(
            4,
            changed(
                "a",
                AcceptedToJoinStage,
                StageChangeReason::Granted,
                None,
                None,
            ),
        );
        assert_eq!(m.place_in_queue(), Some(1));
        m.on_event(
            5,
            changed("b", OffStage, StageChangeReason::Cancelled, None, None),
        );
        assert_eq!(m.place_in_queue(), None);
    }

    #[test]
    fn roster_events_map_one_to_one_and_leaving_drops_the_request() {
        let mut m = Mirror::new(welcome("h", host(), room()));
        let newcomer = info("n", OffStage);
        let a = m.on_event(
            3,
            RoomEvent::ParticipantJoined {
                participant: newcomer.clone(),
            },
        );
        assert_eq!(
            a.events,
            vec![MeetingEvent::ParticipantJoined {
                participant: newcomer
            }]
        );
        assert_eq!(m.participants().len(), 3);
        m.on_event(
            4,
            changed(
                "n",
                RequestedToJoinStage,
                StageChangeReason::Requested,
                None,
                Some(7),
            ),
        );
        let a = m.on_event(
            5,
            RoomEvent::ParticipantConnection {
                user_id: "n".into(),
                connected: false,
            },
        );
        assert_eq!(
            a.events,
            vec![MeetingEvent::ParticipantConnection {
                user_id: "n".into(),
                connected: false
            }]
        );
        assert!(!m.participant(&"n".into()).unwrap().connected);
        // The room first takes a leaver off the stage, then removes it.
        let a = m.on_event(
            6,
            changed("n", OffStage, StageChangeReason::Removed, None, None),
        );
        assert_eq!(a.events.len(), 2);
        let a = m.on_event(
            7,
            RoomEvent::ParticipantLeft {
                user_id: "n".into(),
                reason: LeaveReason::TimedOut,
            },
        );
        assert_eq!(
            a.events,
            vec![MeetingEvent::ParticipantLeft {
                user_id: "n".into(),
                reason: LeaveReason::TimedOut
            }]
        );
        assert_eq!(m.participants().len(), 2);
        assert!(m.queue().is_empty());
    }

    #[test]
    fn old_events_are_ignored() {
        let mut m = Mirror::new(welcome("h", host(), room()));
        let a = m.on_event(
            2,
            changed("v", OnStage, StageChangeReason::Joined, None, None),
        );
        assert_eq!(a, Applied::default());
        assert_eq!(m.participant(&"v".into()).unwrap().stage_status, OffStage);
    }

    #[test]
    fn a_gap_asks_for_a_snapshot_buffers_and_replays() {
        let mut m = Mirror::new(welcome("v", viewer(), room()));
        // seq 3 is lost; 4 arrives.
        let a = m.on_event(
            4,
            changed(
                "v",
                AcceptedToJoinStage,
                StageChangeReason::Granted,
                Some("h"),
                None,
            ),
        );
        assert_eq!(
            a,
            Applied {
                events: vec![],
                need_snapshot: true
            }
        );
        assert!(m.awaiting_snapshot());
        // 5 arrives while waiting: buffered.
        let a = m.on_event(
            6,
            changed("h", OnStage, StageChangeReason::Joined, None, None),
        );
        assert_eq!(a, Applied::default());
        // The snapshot is at 5: v was granted (3: requested, 4: granted), h went to ...
        // nothing yet; seq 6 (h joins) is newer and gets replayed.
        let mut snap = snapshot(5, vec![info("h", OffStage), info("v", AcceptedToJoinStage)]);
        snap.max_on_stage = 3;
        let a = m.on_snapshot(snap);
        assert!(!a.need_snapshot);
        assert_eq!(
            a.events,
            vec![
                MeetingEvent::StageRequestApproved { by: None },
                MeetingEvent::StageStatusUpdate {
                    status: AcceptedToJoinStage
                },
                MeetingEvent::ParticipantStageStatus {
                    user_id: "v".into(),
                    status: AcceptedToJoinStage
                },
                MeetingEvent::ParticipantStageStatus {
                    user_id: "h".into(),
                    status: OnStage
                },
            ]
        );
        assert_eq!(m.seq(), 6);
        assert_eq!(m.max_on_stage(), 3);
        assert!(!m.awaiting_snapshot());
    }

    #[test]
    fn a_gap_inside_the_buffer_asks_again() {
        let mut m = Mirror::new(welcome("v", viewer(), room()));
        assert!(
            m.on_event(
                5,
                changed("h", OnStage, StageChangeReason::Joined, None, None)
            )
            .need_snapshot
        );
        m.on_event(
            9,
            changed("h", OffStage, StageChangeReason::Left, None, None),
        );
        let a = m.on_snapshot(room_at(6));
        assert!(a.need_snapshot, "9 does not follow 6");
        assert!(m.awaiting_snapshot());
        m.snapshot_failed();
        assert!(!m.awaiting_snapshot());
    }

    fn room_at(seq: u64) -> RoomSnapshot {
        let mut s = room();
        s.seq = seq;
        s
    }

    #[test]
    fn a_snapshot_diff_reports_joins_leaves_connections_and_the_queue() {
        let mut m = Mirror::new(welcome(
            "h",
            host(),
            snapshot(
                10,
                vec![
                    info("h", OnStage),
                    info("gone", OnStage),
                    info("v", OffStage),
                ],
            ),
        ));
        let mut v = info("v", RequestedToJoinStage);
        v.connected = false;
        let mut snap = snapshot(20, vec![info("h", OnStage), v, info("new", OffStage)]);
        snap.queue = vec![request("v", 15)];
        let a = m.on_snapshot(snap);
        assert_eq!(
            a.events,
            vec![
                MeetingEvent::ParticipantStageStatus {
                    user_id: "gone".into(),
                    status: OffStage
                },
                MeetingEvent::ParticipantLeft {
                    user_id: "gone".into(),
                    reason: LeaveReason::Left
                },
                MeetingEvent::ParticipantStageStatus {
                    user_id: "v".into(),
                    status: RequestedToJoinStage
                },
                MeetingEvent::ParticipantConnection {
                    user_id: "v".into(),
                    connected: false
                },
                MeetingEvent::ParticipantJoined {
                    participant: info("new", OffStage)
                },
                MeetingEvent::NewStageRequest {
                    request: request("v", 15)
                },
                MeetingEvent::StageAccessRequestUpdate {
                    requests: vec![request("v", 15)]
                },
            ]
        );
        assert_eq!(m.seq(), 20);
    }

    #[test]
    fn an_unchanged_snapshot_emits_nothing() {
        let mut m = Mirror::new(welcome("h", host(), room()));
        assert_eq!(m.on_snapshot(room_at(2)), Applied::default());
    }

    #[test]
    fn a_fresh_welcome_after_the_session_was_lost_resets_own_status() {
        let mut m = Mirror::new(welcome(
            "v",
            viewer(),
            snapshot(4, vec![info("h", OnStage), info("v", OnStage)]),
        ));
        // The server restarted: a new room with only us in it, new peer id, seq from 0.
        let mut w = welcome("v", viewer(), snapshot(1, vec![info("v", OffStage)]));
        w.peer_id = PeerId::new("p-v-2");
        let events = m.on_welcome(w);
        assert_eq!(
            events,
            vec![
                MeetingEvent::ParticipantStageStatus {
                    user_id: "h".into(),
                    status: OffStage
                },
                MeetingEvent::ParticipantLeft {
                    user_id: "h".into(),
                    reason: LeaveReason::Left
                },
                MeetingEvent::StageStatusUpdate { status: OffStage },
                MeetingEvent::ParticipantStageStatus {
                    user_id: "v".into(),
                    status: OffStage
                },
            ]
        );
        assert_eq!(m.peer_id().as_str(), "p-v-2");
        assert_eq!(m.seq(), 1);
        // Events continue from the new numbering.
        let a = m.on_event(
            2,
            changed("v", OnStage, StageChangeReason::Joined, None, None),
        );
        assert!(!a.events.is_empty());
    }

    #[test]
    fn a_resumed_welcome_with_nothing_changed_emits_nothing() {
        let mut m = Mirror::new(welcome("v", viewer(), room()));
        let mut w = welcome("v", viewer(), room_at(2));
        w.resumed = true;
        assert!(m.on_welcome(w).is_empty());
    }

    #[test]
    fn every_welcome_renews_the_relay_credentials() {
        let relay = |user: &str| IceServer {
            urls: vec!["turn:10.0.0.5:3478".into()],
            username: user.into(),
            credential: "c".into(),
        };
        let mut first = welcome("v", viewer(), room());
        first.ice_servers = vec![relay("100:v")];
        let mut m = Mirror::new(first);
        assert_eq!(m.ice_servers(), [relay("100:v")]);
        // A reconnect's welcome carries fresh credentials: the old ones are gone.
        let mut again = welcome("v", viewer(), room_at(2));
        again.resumed = true;
        again.ice_servers = vec![relay("200:v")];
        assert!(m.on_welcome(again).is_empty());
        assert_eq!(m.ice_servers(), [relay("200:v")]);
    }
}
