//! How soon a device that failed is opened again: a tenth of a second after a first
//! failure (a sound server may refuse a stream that has just started, and a lost device
//! may be back at once as another default), then after a doubling wait, so a device that keeps failing is never reopened in
//! a hot loop; a device that then works long enough starts the count again.

use std::time::{Duration, Instant};

/// The first wait after a failure.
pub(super) const FIRST_WAIT: Duration = Duration::from_millis(100);
/// The longest wait between two attempts.
pub(super) const LONGEST_WAIT: Duration = Duration::from_secs(5);
/// How long a device must have worked for its next failure to count as a first one.
pub(super) const WORKED_FOR: Duration = Duration::from_secs(2);

/// The retry schedule of one device.
#[derive(Debug, Clone)]
pub(super) struct Backoff {
    wait: Duration,
    /// When the device may be opened again; `None` when it is not failing.
    due: Option<Instant>,
}

impl Default for Backoff {
    fn default() -> Self {
        Self {
            wait: FIRST_WAIT,
            due: None,
        }
    }
}

impl Backoff {
    /// The device failed at `now`, after working since `opened` (`None`: it did not open):
    /// the next attempt is due after the current wait, which then doubles.
    pub(super) fn failed(&mut self, now: Instant, opened: Option<Instant>) {
        if opened.is_some_and(|at| now.saturating_duration_since(at) >= WORKED_FOR) {
            self.wait = FIRST_WAIT;
        }
        self.due = Some(now + self.wait);
        self.wait = (self.wait * 2).min(LONGEST_WAIT);
    }

    /// When the next attempt is due, while failing.
    pub(super) fn due(&self) -> Option<Instant> {
        self.due
    }

    /// Whether an attempt may be made at `now` (always, when not failing).
    pub(super) fn ready(&self, now: Instant) -> bool {
        self.due.is_none_or(|due| now >= due)
    }
}

/// A device that fails this many times in a row just after opening is told as lost: a
/// sound server may refuse a stream that has only just started, and the next one works.
pub(super) const QUICK_FAILURES_UNTOLD: u32 = 2;

/// One device's attempts: when it may be opened again, and whether its problem is to be
/// told to the app, which hears of it once (a `media-error`), not at every attempt.
#[derive(Debug, Clone, Default)]
pub(super) struct Retry {
    backoff: Backoff,
    /// When it last opened; `None` while it is not open.
    opened: Option<Instant>,
    /// A problem was told since it last worked.
    told: bool,
    /// Failures in a row just after opening (before [`WORKED_FOR`]).
    quick_failures: u32,
}

impl Retry {
    /// It opened at `now`.
    pub(super) fn opened(&mut self, now: Instant) {
        self.opened = Some(now);
    }

    /// It could not be opened: whether to tell (the first problem since it last worked).
    pub(super) fn open_failed(&mut self, now: Instant) -> bool {
        self.backoff.failed(now, None);
        !std::mem::replace(&mut self.told, true)
    }

    /// It failed while open: whether to tell. Not a failure just after opening, unless it
    /// keeps happening; a device that had worked for a while is told again.
    pub(super) fn failed(&mut self, now: Instant) -> bool {
        let opened = self.opened.take();
        let worked = opened.is_some_and(|at| now.saturating_duration_since(at) >= WORKED_FOR);
        self.backoff.failed(now, opened);
        if worked {
            self.told = false;
            self.quick_failures = 0;
        } else {
            self.quick_failures += 1;
            if self.quick_failures <= QUICK_FAILURES_UNTOLD {
                return false;
            }
        }
        !std::mem::replace(&mut self.told, true)
    }

    /// Whether it may be opened at `now`.
    pub(super) fn ready(&self, now: Instant) -> bool {
        self.backoff.ready(now)
    }

    /// When it may be opened again, while failing.
    pub(super) fn due(&self) -> Option<Instant> {
        self.backoff.due()
    }

    /// Another device is chosen: tried at once, and told if it fails.
    pub(super) fn reset(&mut self) {
        *self = Self::default();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waits_double_up_to_the_longest_and_start_again_after_working() {
        let t0 = Instant::now();
        let mut b = Backoff::default();
        assert!(b.ready(t0) && b.due().is_none());
        let mut waits = Vec::new();
        let mut now = t0;
        for _ in 0..8 {
            b.failed(now, None);
            let due = b.due().expect("due");
            assert!(!b.ready(now));
            waits.push(due - now);
            now = due;
            assert!(b.ready(now));
        }
        let ms: Vec<u128> = waits.iter().map(Duration::as_millis).collect();
        assert_eq!(ms, [100, 200, 400, 800, 1600, 3200, 5000, 5000]);
        // Opened and failed at once: still backing off.
        b.failed(now, Some(now));
        assert_eq!(b.due().map(|d| d - now), Some(LONGEST_WAIT));
        // Worked for a while: a first failure again.
        let later = now + WORKED_FOR;
        b.failed(later, Some(now));
        assert_eq!(b.due().map(|d| d - later), Some(FIRST_WAIT));
    }

    #[test]
    fn a_problem_is_told_once_until_the_device_has_worked_again() {
        let t0 = Instant::now();
        let mut r = Retry::default();
        // Missing at start: told once, however often it is tried.
        assert!(r.open_failed(t0));
        assert!(!r.open_failed(t0));
        // Opens, works, goes away: told.
        r.opened(t0);
        let gone = t0 + WORKED_FOR * 2;
        assert!(r.failed(gone));
        assert!(!r.ready(gone));
        // Missing while it is away: not told again.
        assert!(!r.open_failed(gone));
        // Back, works for a while, goes again: told again.
        r.opened(gone);
        let again = gone + WORKED_FOR;
        assert!(r.failed(again));
    }

    #[test]
    fn failures_just_after_opening_are_told_only_when_they_go_on() {
        let t0 = Instant::now();
        let mut r = Retry::default();
        for _ in 0..QUICK_FAILURES_UNTOLD {
            r.opened(t0);
            assert!(!r.failed(t0), "a start glitch");
        }
        r.opened(t0);
        assert!(r.failed(t0), "it keeps failing");
        r.opened(t0);
        assert!(!r.failed(t0), "told already");
        r.reset();
        assert!(r.ready(t0) && r.due().is_none());
    }
}
