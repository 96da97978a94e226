//! The broadcast budget: a participant's calls that tell the whole room are bounded per
//! time, a refused call changes nothing, and normal use is never refused.

mod common;

use common::{add, events, uid};
use onstage_proto::{Call, ErrorCode, StageStatus};
use onstage_room::{BroadcastBudget, Room, RoomConfig, StageError};
use proptest::prelude::*;

const BURST: u32 = 5;
const REFILL: u64 = 100;

fn room(users: &[(&str, &str)]) -> Room {
    let mut room = Room::new(RoomConfig {
        max_on_stage: 25,
        grace_ms: 1_000,
        budget: BroadcastBudget {
            burst: BURST,
            refill_ms: REFILL,
        },
    });
    for (user, preset) in users {
        add(&mut room, user, preset);
    }
    room.drain_events().for_each(drop);
    room
}

fn toggle(room: &Room, who: &str) -> Call {
    if room.status_of(&uid(who)) == Some(StageStatus::RequestedToJoinStage) {
        Call::CancelRequestAccess
    } else {
        Call::RequestAccess
    }
}

#[test]
fn toggling_past_the_burst_is_refused_until_a_token_comes_back() {
    let mut room = room(&[("host", "host"), ("viewer", "viewer")]);
    for _ in 0..BURST {
        let call = toggle(&room, "viewer");
        room.handle_call(&uid("viewer"), call, 1_000)
            .expect("within the burst");
    }
    assert_eq!(events(&mut room).len(), BURST as usize);
    let before = room.snapshot();
    let call = toggle(&room, "viewer");
    let err = room
        .handle_call(&uid("viewer"), call.clone(), 1_050)
        .expect_err("the bucket is empty");
    assert_eq!(err.code(), ErrorCode::RateLimited);
    assert_eq!(err, StageError::RateLimited { retry_after_ms: 50 });
    assert_eq!(room.snapshot(), before, "a refused call changes nothing");
    assert!(events(&mut room).is_empty(), "and tells nobody");
    // Calls that tell nobody are not limited.
    room.handle_call(&uid("viewer"), Call::Snapshot, 1_050)
        .expect("a snapshot costs nothing");
    // Another participant has its own budget: the host still grants at once.
    room.handle_call(&uid("host"), Call::GetAccessRequests, 1_050)
        .expect("host reads the queue");
    // A token back after REFILL ms: one more call, then refused again.
    room.handle_call(&uid("viewer"), call, 1_000 + REFILL)
        .expect("one token back");
    let call = toggle(&room, "viewer");
    assert_eq!(
        room.handle_call(&uid("viewer"), call, 1_000 + REFILL)
            .map_err(|e| e.code()),
        Err(ErrorCode::RateLimited)
    );
}

#[test]
fn a_request_cancel_grant_and_join_are_never_refused() {
    let mut room = room(&[("host", "host"), ("viewer", "viewer")]);
    let viewer = uid("viewer");
    room.handle_call(&viewer, Call::RequestAccess, 10)
        .expect("request");
    room.handle_call(&viewer, Call::CancelRequestAccess, 11)
        .expect("cancel");
    room.handle_call(&viewer, Call::RequestAccess, 12)
        .expect("request again");
    room.handle_call(
        &uid("host"),
        Call::GrantAccess {
            user_ids: vec![viewer.clone()],
        },
        13,
    )
    .expect("grant");
    room.handle_call(&viewer, Call::Join, 14).expect("join");
    assert_eq!(room.status_of(&viewer), Some(StageStatus::OnStage));
}

#[test]
fn a_large_batch_overdraws_the_bucket_once_and_is_paid_back() {
    let viewers: Vec<String> = (0..12).map(|i| format!("v{i}")).collect();
    let mut users = vec![("host", "host")];
    users.extend(viewers.iter().map(|v| (v.as_str(), "viewer")));
    let mut room = room(&users);
    let all: Vec<_> = viewers.iter().map(|v| uid(v)).collect();
    // (Arriving at 0 cost the host a token; it is back by T.)
    const T: u64 = REFILL;
    // Twelve invitations at once with a bucket of five: allowed, twelve events.
    room.handle_call(
        &uid("host"),
        Call::GrantAccess {
            user_ids: all.clone(),
        },
        T,
    )
    .expect("a batch is never refused for its size");
    assert_eq!(events(&mut room).len(), 12);
    // The debt stops at one bucket (-5, not 5 - 12): a crowd granted at once does not
    // lock the host out for a refill per person.
    assert_eq!(room.budget_of(&uid("host"), T), -5);
    // The debt (5) and one token more must come back before the next such call.
    let kick = Call::Kick { user_ids: all };
    assert_eq!(
        room.handle_call(&uid("host"), kick.clone(), T + 5 * REFILL)
            .map_err(|e| e.code()),
        Err(ErrorCode::RateLimited)
    );
    room.handle_call(&uid("host"), kick, T + 6 * REFILL)
        .expect("paid back");
}

#[test]
fn leaving_the_meeting_and_coming_back_does_not_refill_the_budget() {
    let mut room = room(&[("viewer", "viewer")]);
    let t = REFILL;
    for _ in 0..BURST {
        let call = toggle(&room, "viewer");
        room.handle_call(&uid("viewer"), call, t).expect("burst");
    }
    room.handle_call(&uid("viewer"), Call::LeaveMeeting, t)
        .expect("leaving is never refused");
    // Coming back is refused while the budget is spent (the leave overdrew it: two events).
    let refused = room.may_arrive(&uid("viewer"), t).expect_err("spent");
    assert_eq!(
        refused,
        StageError::RateLimited {
            retry_after_ms: 3 * REFILL
        }
    );
    assert!(room.may_arrive(&uid("viewer"), t + 3 * REFILL).is_ok());
    add(&mut room, "viewer", "viewer");
    assert_eq!(
        room.handle_call(&uid("viewer"), Call::RequestAccess, t + 3 * REFILL)
            .map_err(|e| e.code()),
        Err(ErrorCode::RateLimited),
        "the arrival spent the token that came back"
    );
}

#[test]
fn connecting_and_dropping_in_a_loop_is_refused_once_the_budget_is_spent() {
    let mut room = room(&[("host", "host"), ("viewer", "viewer")]);
    let viewer = uid("viewer");
    let t = 10 * REFILL;
    // Each drop and each return tells the room: two tokens a cycle.
    let mut cycles = 0;
    while room.may_arrive(&viewer, t).is_ok() {
        room.disconnect(&viewer, t);
        if room.may_arrive(&viewer, t).is_err() {
            break;
        }
        add(&mut room, "viewer", "viewer");
        cycles += 1;
        assert!(cycles <= BURST, "the loop must be stopped");
    }
    assert_eq!(events(&mut room).len(), BURST as usize);
    // A connection replacing a live one tells nobody and is always let in.
    assert!(room.may_arrive(&uid("host"), t).is_ok());
    // The host is untouched by the viewer's loop.
    room.handle_call(&uid("host"), Call::GetAccessRequests, t)
        .expect("host served");
}

#[derive(Debug, Clone)]
enum Step {
    Wait(u64),
    Toggle,
    /// A host batch on this many viewers.
    Batch(usize),
    Mute,
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        3 => (0..3 * REFILL).prop_map(Step::Wait),
        6 => Just(Step::Toggle),
        1 => (1..4usize).prop_map(Step::Batch),
        1 => Just(Step::Mute),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    /// Whatever a participant sends, and whenever: in every window of time, the room
    /// events its calls cause stay within `burst + window / refill_ms + (largest batch -
    /// 1)`, and a refused call changes nothing.
    #[test]
    fn events_per_window_are_bounded(steps in prop::collection::vec(step(), 1..200)) {
        let mut room = room(&[
            ("host", "host"), ("speaker", "speaker"),
            ("viewer", "viewer"), ("v1", "viewer"), ("v2", "viewer"), ("v3", "viewer"),
        ]);
        // The speaker on stage, with a full bucket again, to publish its media state.
        room.handle_call(&uid("speaker"), Call::Join, 0).expect("speaker joins");
        events(&mut room);
        let mut now = REFILL;
        // (time, room messages caused) of every call by the viewer, the speaker (a media
        // state change costs one: the server's `published`), and the host.
        let mut by_viewer: Vec<(u64, usize)> = Vec::new();
        let mut by_speaker: Vec<(u64, usize)> = Vec::new();
        let mut by_host: Vec<(u64, usize)> = Vec::new();
        let mut largest_batch = 1usize;
        for step in steps {
            let (who, call) = match step {
                Step::Wait(ms) => { now += ms; continue; }
                Step::Toggle => ("viewer", toggle(&room, "viewer")),
                Step::Mute => ("speaker", Call::MediaState { audio: false, video: true }),
                Step::Batch(n) => {
                    let targets: Vec<_> = ["v1", "v2", "v3"][..n].iter().map(|v| uid(v)).collect();
                    // Invite when the first is off stage, else kick: both change all of them
                    // when they share a status.
                    let call = if room.status_of(&targets[0]) == Some(StageStatus::OffStage) {
                        Call::GrantAccess { user_ids: targets }
                    } else {
                        Call::Kick { user_ids: targets }
                    };
                    largest_batch = largest_batch.max(n);
                    ("host", call)
                }
            };
            let before = room.snapshot();
            let outcome = room.handle_call(&uid(who), call, now);
            let mut caused = events(&mut room).len();
            if who == "speaker" && outcome.is_ok() {
                caused += 1;
            }
            if let Err(e) = &outcome {
                prop_assert_eq!(caused, 0);
                prop_assert_eq!(room.snapshot(), before.clone());
                if e.code() == ErrorCode::RateLimited {
                    prop_assert!(room.budget_of(&uid(who), now) <= 0);
                }
            }
            match who {
                "viewer" => by_viewer.push((now, caused)),
                "host" => by_host.push((now, caused)),
                "speaker" => by_speaker.push((now, caused)),
                _ => {}
            }
        }
        for (calls, extra) in [(&by_viewer, 0), (&by_speaker, 0), (&by_host, largest_batch - 1)] {
            for (i, (start, _)) in calls.iter().enumerate() {
                let mut total = 0;
                for (at, caused) in &calls[i..] {
                    total += caused;
                    let bound = BURST as usize + ((at - start) / REFILL) as usize + 1 + extra;
                    prop_assert!(total <= bound, "{} events in [{}, {}] > {}", total, start, at, bound);
                }
            }
        }
    }

    /// Normal use: a participant whose budgeted calls are spaced at least `refill_ms`
    /// apart, after any burst of at most `burst`, is never refused for its rate.
    #[test]
    fn calls_spaced_by_the_refill_are_never_rate_limited(
        burst in 0..=BURST as usize,
        gaps in prop::collection::vec(REFILL..3 * REFILL, 0..50),
    ) {
        let mut room = room(&[("host", "host"), ("viewer", "viewer")]);
        // After the arrival's token has come back.
        let mut now = REFILL + 5;
        for _ in 0..burst {
            let call = toggle(&room, "viewer");
            prop_assert!(room.handle_call(&uid("viewer"), call, now).is_ok());
        }
        for gap in gaps {
            now += gap;
            let call = toggle(&room, "viewer");
            let outcome = room.handle_call(&uid("viewer"), call, now);
            prop_assert!(outcome.is_ok(), "{:?} at {}", outcome, now);
        }
    }
}

#[test]
fn a_host_with_its_budget_spent_may_still_end_the_meeting() {
    let mut room = room(&[("host", "host"), ("viewer", "viewer")]);
    let t = REFILL;
    for _ in 0..BURST {
        let call = if room.status_of(&uid("host")) == Some(StageStatus::OnStage) {
            Call::Leave
        } else {
            Call::Join
        };
        room.handle_call(&uid("host"), call, t).expect("burst");
    }
    assert_eq!(
        room.handle_call(&uid("host"), Call::Join, t)
            .map_err(|e| e.code()),
        Err(ErrorCode::RateLimited)
    );
    room.drain_events().for_each(drop);
    room.handle_call(&uid("host"), Call::EndMeeting, t)
        .expect("ending is never refused for the budget");
    assert_eq!(room.drain_events().count(), 1);
    assert!(room.is_empty());
}
