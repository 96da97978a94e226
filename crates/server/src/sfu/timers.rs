//! When each session must be woken next, in a heap: the SFU's loop asks for the earliest
//! wake and for the sessions due, at a cost that does not grow with the sessions that are
//! not due (it used to scan every session of every meeting on every turn).
//!
//! Entries are never updated in place. A session whose wake moves earlier gets a new entry;
//! one whose wake moves later keeps its old entry, which then fires early: the caller finds
//! nothing due and schedules the session again at its real wake. Each session keeps the
//! instant of its live entry (its `slot`), so that entries left behind by an earlier
//! schedule, or by a session that is gone, are told apart and dropped.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::time::Instant;

/// A heap of (wake, id), earliest first. `Id` is whatever names a session.
#[derive(Debug)]
pub struct WakeQueue<Id: Ord + Copy> {
    heap: BinaryHeap<Reverse<(Instant, Id)>>,
}

impl<Id: Ord + Copy> Default for WakeQueue<Id> {
    fn default() -> Self {
        Self {
            heap: BinaryHeap::new(),
        }
    }
}

impl<Id: Ord + Copy> WakeQueue<Id> {
    /// `id` must be woken at `at` at the latest. `slot` is the session's own record of its
    /// live entry: an entry is pushed only when `at` is earlier than it (or there is none).
    pub fn schedule(&mut self, id: Id, slot: &mut Option<Instant>, at: Instant) {
        if slot.is_some_and(|live| live <= at) {
            return;
        }
        *slot = Some(at);
        self.heap.push(Reverse((at, id)));
    }

    /// The earliest entry's instant (perhaps a stale one: waking early is harmless).
    pub fn next(&self) -> Option<Instant> {
        self.heap.peek().map(|Reverse((at, _))| *at)
    }

    /// Pops the earliest entry if it is due at `now`: the session and the instant it was
    /// scheduled for. Hand that instant to [`claim`] with the session's slot: only the live
    /// entry of a session that still exists is its wake.
    pub fn pop_due(&mut self, now: Instant) -> Option<(Id, Instant)> {
        let Reverse((at, id)) = *self.heap.peek()?;
        if at > now {
            return None;
        }
        self.heap.pop();
        Some((id, at))
    }

    /// Entries in the heap, live and stale.
    pub fn len(&self) -> usize {
        self.heap.len()
    }

    pub fn is_empty(&self) -> bool {
        self.heap.is_empty()
    }
}

/// Is the entry popped for `at` the session's live one? Then the slot is cleared (the
/// session must be scheduled again once it has been woken) and the answer is yes.
pub fn claim(slot: &mut Option<Instant>, at: Instant) -> bool {
    if *slot == Some(at) {
        *slot = None;
        true
    } else {
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;
    use std::time::Duration;

    /// Sessions as the engine keeps them: each with its slot.
    #[derive(Default)]
    struct World {
        queue: WakeQueue<u64>,
        slots: HashMap<u64, Option<Instant>>,
    }

    impl World {
        fn schedule(&mut self, id: u64, at: Instant) {
            let slot = self.slots.entry(id).or_default();
            self.queue.schedule(id, slot, at);
        }

        fn due(&mut self, now: Instant) -> Vec<u64> {
            let mut due = Vec::new();
            while let Some((id, at)) = self.queue.pop_due(now) {
                if self.slots.get_mut(&id).is_some_and(|slot| claim(slot, at)) {
                    due.push(id);
                }
            }
            due.sort();
            due
        }
    }

    fn ms(t0: Instant, n: u64) -> Instant {
        t0 + Duration::from_millis(n)
    }

    #[test]
    fn sessions_come_due_in_order_and_only_once() {
        let t0 = Instant::now();
        let mut w = World::default();
        w.schedule(1, ms(t0, 30));
        w.schedule(2, ms(t0, 10));
        w.schedule(3, ms(t0, 20));
        assert_eq!(w.queue.next(), Some(ms(t0, 10)));
        assert_eq!(w.due(ms(t0, 5)), Vec::<u64>::new());
        assert_eq!(w.due(ms(t0, 20)), vec![2, 3]);
        assert_eq!(w.due(ms(t0, 25)), Vec::<u64>::new());
        assert_eq!(w.due(ms(t0, 30)), vec![1]);
        assert!(w.queue.is_empty());
    }

    #[test]
    fn an_earlier_wake_replaces_a_later_one_and_a_later_one_fires_early() {
        let t0 = Instant::now();
        let mut w = World::default();
        w.schedule(1, ms(t0, 50));
        // Earlier: a new entry; the old one is stale and is dropped when it comes up.
        w.schedule(1, ms(t0, 10));
        // Later than the live entry: nothing is pushed, the live entry stands.
        w.schedule(1, ms(t0, 80));
        assert_eq!(w.queue.len(), 2);
        assert_eq!(w.due(ms(t0, 10)), vec![1]);
        // The stale 50 ms entry finds its session scheduled elsewhere (here: nowhere).
        assert_eq!(w.due(ms(t0, 60)), Vec::<u64>::new());
        assert!(w.queue.is_empty());
    }

    #[test]
    fn a_session_that_is_gone_never_comes_due() {
        let t0 = Instant::now();
        let mut w = World::default();
        w.schedule(7, ms(t0, 10));
        w.slots.remove(&7);
        assert_eq!(w.due(ms(t0, 100)), Vec::<u64>::new());
        assert!(w.queue.is_empty());
    }

    proptest::proptest! {
        /// Whatever the order of schedules, every session comes due at the earliest wake
        /// it was given since it last came due, and never before.
        #[test]
        fn every_session_is_woken_at_its_earliest_wake(
            plan in proptest::collection::vec((0u64..8, 0u64..200), 1..60),
        ) {
            let t0 = Instant::now();
            let mut w = World::default();
            let mut earliest: HashMap<u64, u64> = HashMap::new();
            for &(id, at) in &plan {
                w.schedule(id, ms(t0, at));
                let e = earliest.entry(id).or_insert(at);
                *e = (*e).min(at);
            }
            let mut woken: HashMap<u64, u64> = HashMap::new();
            for now in 0..=200 {
                for id in w.due(ms(t0, now)) {
                    proptest::prop_assert!(woken.insert(id, now).is_none(), "woken twice");
                }
            }
            proptest::prop_assert_eq!(woken, earliest);
        }
    }
}
