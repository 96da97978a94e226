//! Helpers shared by the room's tests.
#![allow(dead_code)]

use onstage_proto::{Call, CallResult, ErrorCode, PeerId, RoomEvent, StageStatus, UserId};
use onstage_room::{builtin_preset, BroadcastBudget, Member, Room, RoomConfig, StageError};

pub fn uid(s: &str) -> UserId {
    UserId::new(s)
}

pub fn ids(list: &[&str]) -> Vec<UserId> {
    list.iter().map(|s| uid(s)).collect()
}

/// A room with `host`, `speaker`, `viewer`, `viewer2` and `spectator`, one per preset
/// named like the user (viewer2 is a viewer), events drained.
pub fn room_with_everyone(max_on_stage: u32) -> Room {
    // The stage rules alone: the broadcast budget has its own tests (budget.rs).
    let mut room = Room::new(RoomConfig {
        max_on_stage,
        grace_ms: 1_000,
        budget: BroadcastBudget::UNLIMITED,
    });
    for (user, preset) in [
        ("host", "host"),
        ("speaker", "speaker"),
        ("viewer", "viewer"),
        ("viewer2", "viewer"),
        ("spectator", "spectator"),
    ] {
        add(&mut room, user, preset);
    }
    room.drain_events().for_each(drop);
    room
}

pub fn add(room: &mut Room, user: &str, preset: &str) {
    let member = Member {
        user_id: uid(user),
        name: format!("{user} name"),
        preset: builtin_preset(preset).expect("built-in preset"),
    };
    room.connect(member, PeerId::new(format!("peer-{user}")), 0);
}

pub fn call(room: &mut Room, who: &str, call: Call, now: u64) -> Result<CallResult, StageError> {
    room.handle_call(&uid(who), call, now)
}

pub fn status(room: &Room, who: &str) -> StageStatus {
    room.status_of(&uid(who)).expect("in roster")
}

pub fn events(room: &mut Room) -> Vec<RoomEvent> {
    room.drain_events().map(|s| s.event).collect()
}

/// Asserts a call is refused with `code` and changes nothing at all.
pub fn refused(room: &mut Room, who: &str, c: Call, code: ErrorCode) {
    room.drain_events().for_each(drop);
    let before = room.snapshot();
    let err = call(room, who, c.clone(), 99).expect_err("call must be refused");
    assert_eq!(err.code(), code, "{who} {c:?}: {err}");
    assert_eq!(room.snapshot(), before, "a refused call changed the room");
    assert!(events(room).is_empty(), "a refused call produced events");
}
