//! Property test: random sequences of inputs from several participants, run against the
//! room and against a small, independently written reference model of the stage rules.
//!
//! Checked after every step:
//! - the room and the model agree on the outcome (ok, or the same error code) and on every
//!   participant's status;
//! - a refused call (or the removal of someone not in the roster) changes nothing and
//!   produces no event;
//! - the queue holds exactly the REQUESTED participants, oldest request first;
//! - never more than `max_on_stage` participants ON_STAGE;
//! - the events tell everyone everything: replaying them onto the previous snapshot gives
//!   exactly the new snapshot (so a client that mirrors events never diverges), and the
//!   sequence numbers run on without a gap;
//! - publications: only a participant ON_STAGE and connected publishes, what it publishes
//!   is what the model says, and the media events tell every change (replaying them onto
//!   the previous set of publications gives the new one).

mod common;

use std::collections::BTreeMap;

use common::uid;
use onstage_proto::{
    AccessRequest, Call, ErrorCode, MediaEvent, MediaKinds, ParticipantInfo, PeerId, Preset,
    PublishedMedia, RoomEvent, RoomSnapshot, StageAccess, StageStatus, UserId,
};
use onstage_room::{builtin_preset, BroadcastBudget, Member, Room, RoomConfig, Seat};
use proptest::prelude::*;

const USERS: [&str; 6] = ["u0", "u1", "u2", "u3", "u4", "u5"];
const MAX_ON_STAGE: u32 = 2;
const GRACE: u64 = 50;

fn preset_for(user: usize) -> Preset {
    match user {
        0 => builtin_preset("host").unwrap(),
        1 => builtin_preset("speaker").unwrap(),
        2 | 3 => builtin_preset("viewer").unwrap(),
        4 => builtin_preset("spectator").unwrap(),
        _ => Preset {
            name: "kicker".into(),
            stage_enabled: false,
            stage_access: StageAccess::CanRequest,
            accept_stage_requests: false,
            kick_participant: true,
            can_produce_audio: false,
            can_produce_video: false,
        },
    }
}

#[derive(Debug, Clone)]
enum Input {
    Connect(usize),
    Disconnect(usize),
    /// An admin removes the participant from the meeting.
    Remove(usize),
    Wait(u64),
    Call(usize, Call),
    /// Storage gave the participant (first) the built-in preset named, at the request of
    /// the second (`meeting.setPreset` once storage has written it).
    SetPreset(usize, &'static str, usize),
    /// The SFU accepted the participant's publication, carrying (audio, video).
    Published(usize, bool, bool),
}

fn targets() -> impl Strategy<Value = Vec<UserId>> {
    prop::collection::vec(0..USERS.len() + 1, 0..3).prop_map(|v| {
        v.into_iter()
            .map(|i| USERS.get(i).map_or_else(|| uid("ghost"), |u| uid(u)))
            .collect()
    })
}

fn target() -> impl Strategy<Value = UserId> {
    (0..USERS.len() + 1).prop_map(|i| USERS.get(i).map_or_else(|| uid("ghost"), |u| uid(u)))
}

const PRESET_NAMES: [&str; 4] = ["host", "speaker", "viewer", "spectator"];

fn call() -> impl Strategy<Value = Call> {
    prop_oneof![
        1 => Just(Call::GetAccessRequests),
        3 => Just(Call::RequestAccess),
        1 => Just(Call::CancelRequestAccess),
        3 => targets().prop_map(|user_ids| Call::GrantAccess { user_ids }),
        1 => targets().prop_map(|user_ids| Call::DenyAccess { user_ids }),
        3 => Just(Call::Join),
        1 => Just(Call::Leave),
        1 => targets().prop_map(|user_ids| Call::Kick { user_ids }),
        1 => Just(Call::LeaveMeeting),
        1 => Just(Call::EndMeeting),
        1 => Just(Call::Publish {
            sdp: String::new(),
            layers: Vec::new()
        }),
        1 => Just(Call::Unpublish),
        1 => (any::<bool>(), any::<bool>()).prop_map(|(audio, video)| Call::MediaState { audio, video }),
        1 => target().prop_map(|user_id| Call::Subscribe { user_id, sdp: String::new() }),
        1 => target().prop_map(|user_id| Call::MuteParticipant { user_id }),
        1 => target().prop_map(|user_id| Call::RemoveParticipant { user_id }),
        1 => (target(), prop::sample::select(vec!["host", "viewer", ""]))
            .prop_map(|(user_id, name)| Call::SetPreset { user_id, preset: name.into() }),
        1 => (target(), prop::sample::select(vec![0u32, 320, 16_384, 16_385]))
            .prop_map(|(user_id, side)| Call::Tiles {
                tiles: vec![onstage_proto::TileSize { user_id, width: side, height: side / 2 }],
            }),
    ]
}

fn input() -> impl Strategy<Value = Input> {
    let user = 0..USERS.len();
    prop_oneof![
        2 => user.clone().prop_map(Input::Connect),
        1 => user.clone().prop_map(Input::Disconnect),
        1 => user.clone().prop_map(Input::Remove),
        1 => (0..GRACE * 2).prop_map(Input::Wait),
        8 => (user.clone(), call()).prop_map(|(u, c)| Input::Call(u, c)),
        1 => (user.clone(), prop::sample::select(PRESET_NAMES.to_vec()), user.clone())
            .prop_map(|(u, name, by)| Input::SetPreset(u, name, by)),
        2 => (user, any::<bool>(), any::<bool>()).prop_map(|(u, a, v)| Input::Published(u, a, v)),
    ]
}

/// The reference model: the stage table written as plainly as possible.
#[derive(Debug, Default, Clone)]
struct Model {
    /// user index -> (status, requested_at, disconnected_at)
    present: BTreeMap<usize, (StageStatus, u64, Option<u64>)>,
    /// requested order: (requested_at, arrival counter, user)
    arrivals: u64,
    order: BTreeMap<usize, (u64, u64)>,
    /// user index -> what its live publication carries
    publishing: BTreeMap<usize, MediaKinds>,
    /// user index -> the preset it was given since (as storage keeps it, also out of the
    /// roster); the others have `preset_for`'s
    presets: BTreeMap<usize, Preset>,
}

impl Model {
    fn index(id: &UserId) -> Option<usize> {
        USERS.iter().position(|u| *u == id.as_str())
    }

    fn preset(&self, u: usize) -> Preset {
        self.presets
            .get(&u)
            .cloned()
            .unwrap_or_else(|| preset_for(u))
    }

    /// The participant was given `preset`: a status the preset does not allow ends.
    fn set_preset(&mut self, u: usize, preset: Preset, now: u64) -> bool {
        self.presets.insert(u, preset.clone());
        let Some(status) = self.status(u) else {
            return false;
        };
        let allowed = match status {
            StageStatus::OffStage => true,
            StageStatus::RequestedToJoinStage => {
                preset.stage_enabled && preset.stage_access != StageAccess::NotAllowed
            }
            StageStatus::AcceptedToJoinStage | StageStatus::OnStage => preset.stage_enabled,
        };
        if !allowed {
            self.set(u, StageStatus::OffStage, now);
        }
        true
    }

    fn status(&self, u: usize) -> Option<StageStatus> {
        self.present.get(&u).map(|p| p.0)
    }

    fn on_stage(&self) -> u32 {
        self.present
            .values()
            .filter(|p| p.0 == StageStatus::OnStage)
            .count() as u32
    }

    fn set(&mut self, u: usize, s: StageStatus, now: u64) {
        if s != StageStatus::OnStage {
            self.publishing.remove(&u);
        }
        if let Some(p) = self.present.get_mut(&u) {
            p.0 = s;
            if s == StageStatus::RequestedToJoinStage {
                self.arrivals += 1;
                self.order.insert(u, (now, self.arrivals));
            } else {
                self.order.remove(&u);
            }
        }
    }

    /// The participant leaves the roster.
    fn forget(&mut self, u: usize) -> bool {
        self.order.remove(&u);
        self.publishing.remove(&u);
        self.present.remove(&u).is_some()
    }

    /// The SFU accepted a publication: it counts while ON_STAGE and connected.
    fn published(&mut self, u: usize, kinds: MediaKinds) {
        if self
            .present
            .get(&u)
            .is_some_and(|p| p.0 == StageStatus::OnStage && p.2.is_none())
        {
            self.publishing.insert(u, kinds);
        }
    }

    fn queue(&self) -> Vec<usize> {
        let mut q: Vec<_> = self.order.iter().map(|(u, k)| (*k, *u)).collect();
        q.sort();
        q.into_iter().map(|(_, u)| u).collect()
    }

    fn batch(
        &self,
        ids: &[UserId],
        ok: impl Fn(usize, StageStatus) -> Result<(), ErrorCode>,
    ) -> Result<Vec<usize>, ErrorCode> {
        if ids.is_empty() {
            return Err(ErrorCode::BadRequest);
        }
        let mut out = Vec::new();
        for id in ids {
            let u = Self::index(id)
                .filter(|u| self.present.contains_key(u))
                .ok_or(ErrorCode::NotFound)?;
            ok(u, self.status(u).unwrap_or_default())?;
            if !out.contains(&u) {
                out.push(u);
            }
        }
        Ok(out)
    }

    fn call(&mut self, u: usize, call: &Call, now: u64) -> Result<(), ErrorCode> {
        use StageStatus::*;
        let Some(me) = self.status(u) else {
            return Err(ErrorCode::NotFound);
        };
        let p = self.preset(u);
        let deny = |b: bool| {
            if b {
                Ok(())
            } else {
                Err(ErrorCode::PermissionDenied)
            }
        };
        let state = |b: bool| {
            if b {
                Ok(())
            } else {
                Err(ErrorCode::InvalidState)
            }
        };
        match call {
            Call::GetAccessRequests => deny(p.accept_stage_requests),
            Call::RequestAccess => {
                deny(p.stage_enabled && p.stage_access != StageAccess::NotAllowed)?;
                state(me == OffStage)?;
                let to = if p.stage_access == StageAccess::Allowed {
                    AcceptedToJoinStage
                } else {
                    RequestedToJoinStage
                };
                self.set(u, to, now);
                Ok(())
            }
            Call::CancelRequestAccess => {
                state(me == RequestedToJoinStage)?;
                self.set(u, OffStage, now);
                Ok(())
            }
            Call::GrantAccess { user_ids } => {
                deny(p.accept_stage_requests)?;
                let t = self.batch(user_ids, |t, s| {
                    deny(self.preset(t).stage_enabled)?;
                    state(s == OffStage || s == RequestedToJoinStage)
                })?;
                t.into_iter()
                    .for_each(|t| self.set(t, AcceptedToJoinStage, now));
                Ok(())
            }
            Call::DenyAccess { user_ids } => {
                deny(p.accept_stage_requests)?;
                let t = self.batch(user_ids, |_, s| state(s == RequestedToJoinStage))?;
                t.into_iter().for_each(|t| self.set(t, OffStage, now));
                Ok(())
            }
            Call::Join => {
                deny(p.stage_enabled)?;
                state(me != OnStage)?;
                deny(me == AcceptedToJoinStage || p.stage_access == StageAccess::Allowed)?;
                if self.on_stage() >= MAX_ON_STAGE {
                    return Err(ErrorCode::StageFull);
                }
                self.set(u, OnStage, now);
                Ok(())
            }
            Call::Leave => {
                state(me == OnStage || me == AcceptedToJoinStage)?;
                self.set(u, OffStage, now);
                Ok(())
            }
            Call::Kick { user_ids } => {
                deny(p.accept_stage_requests || p.kick_participant)?;
                let t = self.batch(user_ids, |_, s| {
                    state(s == OnStage || s == AcceptedToJoinStage)
                })?;
                t.into_iter().for_each(|t| self.set(t, OffStage, now));
                Ok(())
            }
            Call::Snapshot | Call::Unsubscribe { .. } => Ok(()),
            Call::Unpublish => {
                self.publishing.remove(&u);
                Ok(())
            }
            Call::Publish { .. } => {
                deny(p.can_produce_audio || p.can_produce_video)?;
                state(me == OnStage)
            }
            Call::MediaState { audio, video } => {
                state(me == OnStage)?;
                if let Some(kinds) = self.publishing.get_mut(&u) {
                    *kinds = MediaKinds::new(*audio, *video);
                }
                Ok(())
            }
            Call::Subscribe { user_id, .. } => {
                let t = Self::index(user_id)
                    .filter(|t| self.present.contains_key(t))
                    .ok_or(ErrorCode::NotFound)?;
                state(t != u && self.status(t) == Some(OnStage))
            }
            Call::LeaveMeeting => {
                self.forget(u);
                Ok(())
            }
            Call::MuteParticipant { user_id } => {
                deny(p.accept_stage_requests || p.kick_participant)?;
                let t = Self::index(user_id)
                    .filter(|t| self.present.contains_key(t))
                    .ok_or(ErrorCode::NotFound)?;
                state(self.status(t) == Some(OnStage))?;
                if let Some(kinds) = self.publishing.get_mut(&t) {
                    kinds.audio = false;
                }
                Ok(())
            }
            // Checked only; carried out once storage has (`Input::Remove`, `SetPreset`).
            Call::RemoveParticipant { user_id } => {
                deny(p.kick_participant)?;
                state(*user_id != uid(USERS[u]))?;
                Self::index(user_id)
                    .filter(|t| self.present.contains_key(t))
                    .ok_or(ErrorCode::NotFound)?;
                Ok(())
            }
            Call::SetPreset { user_id, preset } => {
                deny(p.accept_stage_requests && p.kick_participant)?;
                if preset.is_empty() {
                    return Err(ErrorCode::BadRequest);
                }
                Self::index(user_id)
                    .filter(|t| self.present.contains_key(t))
                    .ok_or(ErrorCode::NotFound)?;
                Ok(())
            }
            // Anyone may say how it shows videos; a tile over the largest side is refused.
            Call::Tiles { tiles } => {
                let max = onstage_proto::MAX_TILE_SIDE;
                if tiles.iter().any(|t| t.width > max || t.height > max) {
                    return Err(ErrorCode::BadRequest);
                }
                Ok(())
            }
            // A host only: both runs the stage and may kick (u5, a kicker, may not).
            Call::EndMeeting => {
                deny(p.accept_stage_requests && p.kick_participant)?;
                let everyone: Vec<usize> = self.present.keys().copied().collect();
                for u in everyone {
                    self.forget(u);
                }
                Ok(())
            }
        }
    }
}

/// What a client does with events: apply them to its mirror of the room.
fn apply(snap: &mut RoomSnapshot, seq: u64, event: &RoomEvent) {
    assert_eq!(seq, snap.seq + 1, "sequence gap");
    snap.seq = seq;
    match event {
        RoomEvent::ParticipantJoined { participant } => snap.participants.push(participant.clone()),
        RoomEvent::ParticipantLeft { user_id, .. } => {
            snap.participants.retain(|p| &p.user_id != user_id);
            snap.queue.retain(|r| &r.user_id != user_id);
        }
        RoomEvent::ParticipantConnection { user_id, connected } => {
            find(snap, user_id).connected = *connected;
        }
        RoomEvent::PresetChanged {
            user_id, preset, ..
        } => {
            find(snap, user_id).preset = preset.name.clone();
        }
        // What it changes is the publication's audio, told as a media event.
        RoomEvent::ParticipantMuted { user_id, .. } => {
            find(snap, user_id);
        }
        // Everyone is out: the roster and the queue are empty.
        RoomEvent::MeetingEnded { .. } => {
            snap.participants.clear();
            snap.queue.clear();
        }
        RoomEvent::StageStatusChanged {
            user_id,
            status,
            requested_at,
            ..
        } => {
            let p = find(snap, user_id);
            p.stage_status = *status;
            let name = p.name.clone();
            snap.queue.retain(|r| &r.user_id != user_id);
            if let Some(at) = requested_at {
                let pos = snap.queue.partition_point(|r| r.requested_at <= *at);
                snap.queue.insert(
                    pos,
                    AccessRequest {
                        user_id: user_id.clone(),
                        name,
                        requested_at: *at,
                    },
                );
            }
        }
    }
}

/// Publications in a fixed order, to compare sets.
fn by_user(list: &[PublishedMedia]) -> Vec<PublishedMedia> {
    let mut list = list.to_vec();
    list.sort_by(|a, b| a.user_id.cmp(&b.user_id));
    list
}

/// What a client does with media events: keep the set of live publications.
fn apply_media(publications: &mut Vec<PublishedMedia>, event: &MediaEvent) {
    let user_id = event.user_id();
    match event.publication() {
        Some(kinds) => {
            let entry = PublishedMedia {
                user_id: user_id.clone(),
                audio: kinds.audio,
                video: kinds.video,
            };
            match publications.iter_mut().find(|p| &p.user_id == user_id) {
                Some(p) => *p = entry,
                None => publications.push(entry),
            }
        }
        None => publications.retain(|p| &p.user_id != user_id),
    }
}

fn find<'a>(snap: &'a mut RoomSnapshot, id: &UserId) -> &'a mut ParticipantInfo {
    snap.participants
        .iter_mut()
        .find(|p| &p.user_id == id)
        .expect("event about a participant the mirror knows")
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn room_matches_model_and_keeps_invariants(inputs in prop::collection::vec(input(), 1..80)) {
        // The model knows the stage rules only; the budget has its own properties (budget.rs).
        let mut room = Room::new(RoomConfig {
            max_on_stage: MAX_ON_STAGE,
            grace_ms: GRACE,
            budget: BroadcastBudget::UNLIMITED,
        });
        let mut model = Model::default();
        let mut mirror = room.snapshot();
        let mut publications = room.publishing();
        let mut now = 1_000u64;
        for input in inputs {
            let before = room.snapshot();
            let mut refused = false;
            match &input {
                Input::Connect(u) => {
                    room.connect(
                        Member { user_id: uid(USERS[*u]), name: USERS[*u].into(), preset: model.preset(*u) },
                        PeerId::new(format!("p{u}-{now}")),
                        now,
                    );
                    model.present.entry(*u).or_insert((StageStatus::OffStage, 0, None)).2 = None;
                    // A new connection starts without media.
                    model.publishing.remove(u);
                }
                Input::Disconnect(u) => {
                    room.disconnect(&uid(USERS[*u]), now);
                    if let Some(p) = model.present.get_mut(u) {
                        p.2.get_or_insert(now);
                    }
                    model.publishing.remove(u);
                }
                Input::Remove(u) => {
                    let was_there = room.remove_member(&uid(USERS[*u]), now);
                    prop_assert_eq!(was_there, model.forget(*u));
                    refused = !was_there;
                }
                Input::Wait(ms) => {
                    now += ms;
                    room.handle_timeout(now);
                    let gone: Vec<usize> = model.present.iter()
                        .filter(|(_, p)| p.2.is_some_and(|t| t + GRACE <= now))
                        .map(|(u, _)| *u).collect();
                    for u in gone {
                        model.forget(u);
                    }
                }
                Input::Call(u, call) => {
                    now += 1;
                    let got = room.handle_call(&uid(USERS[*u]), call.clone(), now).map_err(|e| e.code());
                    let want = model.call(*u, call, now);
                    prop_assert_eq!(got.map(|_| ()), want, "outcome of {:?} by {}", call, USERS[*u]);
                    refused = want.is_err();
                }
                Input::SetPreset(u, name, by) => {
                    now += 1;
                    let preset = builtin_preset(name).unwrap();
                    let was_there = room.set_preset(&uid(USERS[*u]), preset.clone(), &uid(USERS[*by]));
                    prop_assert_eq!(was_there, model.set_preset(*u, preset, now));
                    refused = !was_there;
                }
                Input::Published(u, audio, video) => {
                    let kinds = MediaKinds::new(*audio, *video);
                    let recorded = room.media_published(&uid(USERS[*u]), kinds);
                    model.published(*u, kinds);
                    prop_assert_eq!(recorded, model.publishing.get(u) == Some(&kinds));
                }
            }
            let events: Vec<_> = room.drain_events().collect();
            let media: Vec<_> = room.drain_media_events().collect();
            let after = room.snapshot();
            if refused {
                prop_assert!(events.is_empty(), "a refused call produced events");
                prop_assert!(media.is_empty(), "a refused call produced media events");
                prop_assert_eq!(&after, &before, "a refused call changed the room");
                prop_assert_eq!(by_user(&room.publishing()), by_user(&publications), "a refused call changed the publications");
            }
            if events.iter().any(|e| matches!(e.event, RoomEvent::MeetingEnded { .. })) {
                // The meeting is over: every publication ended with it, untold.
                prop_assert!(media.is_empty(), "media events after the meeting ended");
                publications.clear();
            }
            for e in &media {
                apply_media(&mut publications, e);
            }
            let publishing = room.publishing();
            prop_assert_eq!(by_user(&publications), by_user(&publishing), "media events do not tell the whole change");
            for p in &publishing {
                let info = after.participants.iter().find(|i| i.user_id == p.user_id);
                prop_assert!(
                    info.is_some_and(|i| i.stage_status == StageStatus::OnStage && i.connected),
                    "{} publishes while not ON_STAGE and connected", p.user_id
                );
            }
            let want: Vec<(&str, MediaKinds)> = model.publishing.iter().map(|(u, k)| (USERS[*u], *k)).collect();
            let mut got: Vec<(&str, MediaKinds)> = publishing
                .iter()
                .map(|p| (p.user_id.as_str(), MediaKinds::new(p.audio, p.video)))
                .collect();
            got.sort_by_key(|(id, _)| Model::index(&uid(id)));
            prop_assert_eq!(got, want, "publications differ from the model");
            for e in &events {
                apply(&mut mirror, e.seq, &e.event);
            }
            prop_assert_eq!(&mirror, &after, "events do not tell the whole change");

            // Same statuses as the model.
            for (i, user) in USERS.iter().enumerate() {
                prop_assert_eq!(room.status_of(&uid(user)), model.status(i), "status of {}", user);
            }
            // The queue is exactly the REQUESTED participants, oldest first, as the model has it.
            let queue: Vec<&str> = after.queue.iter().map(|r| r.user_id.as_str()).collect();
            let requested: Vec<&str> = model.queue().into_iter().map(|u| USERS[u]).collect();
            prop_assert_eq!(queue, requested);
            let mut requested_in_roster: Vec<&str> = after.participants.iter()
                .filter(|p| p.stage_status == StageStatus::RequestedToJoinStage)
                .map(|p| p.user_id.as_str()).collect();
            let mut queued: Vec<&str> = after.queue.iter().map(|r| r.user_id.as_str()).collect();
            requested_in_roster.sort();
            queued.sort();
            prop_assert_eq!(requested_in_roster, queued);
            prop_assert!(after.queue.windows(2).all(|w| w[0].requested_at <= w[1].requested_at));
            // Capacity.
            let on = after.participants.iter().filter(|p| p.stage_status == StageStatus::OnStage).count() as u32;
            prop_assert!(on <= MAX_ON_STAGE);
            prop_assert_eq!(on, room.on_stage_count());
        }
    }

    /// A restarted server gives the stage back: the seats a room kept restore a room with
    /// the same stage (statuses, queue order and request times, count on stage), everyone
    /// in it disconnected, which keeps the same seats; a seated participant reconnecting
    /// inside the grace period is where it was, and the grace period ends the others.
    #[test]
    fn kept_seats_restore_the_same_stage(
        inputs in prop::collection::vec(input(), 1..80),
        back in prop::collection::vec(any::<bool>(), USERS.len()),
    ) {
        let config = RoomConfig { max_on_stage: MAX_ON_STAGE, grace_ms: GRACE, budget: BroadcastBudget::UNLIMITED };
        let mut room = Room::new(config);
        let mut now = 1_000u64;
        for input in &inputs {
            drive(&mut room, input, &mut now);
        }
        let seats: Vec<Seat> = room.seats();
        let before = room.snapshot();
        prop_assert!(seats.iter().all(|s| s.status != StageStatus::OffStage));
        let since = now + 5_000;
        let mut restored = Room::restore(config, seats.clone(), since);
        prop_assert_eq!(restored.seats(), seats.clone(), "the restored room keeps the same seats");
        prop_assert_eq!(restored.on_stage_count(), room.on_stage_count());
        prop_assert_eq!(restored.queue(), room.queue(), "queue order and request times");
        prop_assert_eq!(restored.drain_events().count(), 0, "a restore tells nobody");
        let snap = restored.snapshot();
        for p in &before.participants {
            let got = snap.participants.iter().find(|r| r.user_id == p.user_id);
            if p.stage_status == StageStatus::OffStage {
                prop_assert!(got.is_none(), "{} was OFF_STAGE: nothing to keep", p.user_id);
            } else {
                let got = got.expect("a seated participant is in the restored roster");
                prop_assert_eq!(got.stage_status, p.stage_status);
                prop_assert_eq!(&got.peer_id, &p.peer_id);
                prop_assert!(!got.connected, "nobody is connected after a restart");
            }
        }
        // Some come back inside the grace period; the rest time out.
        let mut came_back = Vec::new();
        for seat in &seats {
            let u = Model::index(&seat.user_id).expect("a known user");
            if back[u] {
                let connected = restored.connect(
                    Member { user_id: seat.user_id.clone(), name: seat.name.clone(), preset: preset_for(u) },
                    PeerId::new("new"),
                    since + GRACE - 1,
                );
                prop_assert!(connected.resumed && !connected.replaced);
                prop_assert_eq!(&connected.peer_id, &seat.peer_id);
                prop_assert_eq!(restored.status_of(&seat.user_id), Some(seat.status));
                came_back.push(seat.user_id.clone());
            }
        }
        restored.handle_timeout(since + GRACE);
        for seat in &seats {
            let status = restored.status_of(&seat.user_id);
            if came_back.contains(&seat.user_id) {
                prop_assert_eq!(status, Some(seat.status));
            } else {
                prop_assert_eq!(status, None, "{}'s grace period is over", seat.user_id);
            }
        }
    }
}

/// Applies one input to the room, whatever it answers.
fn drive(room: &mut Room, input: &Input, now: &mut u64) {
    match input {
        Input::Connect(u) => {
            room.connect(
                Member {
                    user_id: uid(USERS[*u]),
                    name: USERS[*u].into(),
                    preset: preset_for(*u),
                },
                PeerId::new(format!("p{u}-{now}")),
                *now,
            );
        }
        Input::Disconnect(u) => room.disconnect(&uid(USERS[*u]), *now),
        Input::Remove(u) => {
            room.remove_member(&uid(USERS[*u]), *now);
        }
        Input::Wait(ms) => {
            *now += ms;
            room.handle_timeout(*now);
        }
        Input::Call(u, call) => {
            *now += 1;
            let _ = room.handle_call(&uid(USERS[*u]), call.clone(), *now);
        }
        Input::SetPreset(u, name, by) => {
            *now += 1;
            if let Some(preset) = builtin_preset(name) {
                room.set_preset(&uid(USERS[*u]), preset, &uid(USERS[*by]));
            }
        }
        Input::Published(u, audio, video) => {
            room.media_published(&uid(USERS[*u]), MediaKinds::new(*audio, *video));
        }
    }
    room.drain_events().for_each(drop);
    room.drain_media_events().for_each(drop);
}
