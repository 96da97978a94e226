//! The home lock's decisions, without I/O: when a renewal is due, when a lease counts as
//! lost by our own clock, what a renewal's answer means, which epoch is newer.
//!
//! Time is what the caller passes in (`Instant`s), so every rule is tested here with
//! made-up clocks; [`crate::Cluster`] feeds it the real one and does the Redis calls.

use std::fmt;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::error::ClusterError;

/// A fencing epoch: every take of a meeting's home lock gets a higher one than the last
/// (while Redis keeps its data). Whatever the home does is stamped with its epoch, so
/// anything from an older epoch, a home that lost the lock without knowing yet, can be
/// told apart and ignored.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize,
)]
#[serde(transparent)]
pub struct Epoch(pub u64);

impl fmt::Display for Epoch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// Admits what carries the newest epoch seen so far and refuses what carries an older
/// one: how a receiver ignores a deposed home.
#[derive(Debug, Clone, Default)]
pub struct EpochFence {
    newest: Option<Epoch>,
}

impl EpochFence {
    /// `true` (and remembers it) for an epoch at least as new as every one seen; `false`
    /// for an older one, which changes nothing.
    pub fn admit(&mut self, epoch: Epoch) -> bool {
        match self.newest {
            Some(newest) if epoch < newest => false,
            _ => {
                self.newest = Some(epoch);
                true
            }
        }
    }

    pub fn newest(&self) -> Option<Epoch> {
        self.newest
    }
}

/// How long a home lock lives in Redis and how often its holder renews it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LeaseTiming {
    ttl: Duration,
    renew_every: Duration,
}

impl LeaseTiming {
    /// The shortest TTL accepted: below it a renewal's round trip on a loaded machine is a
    /// real share of the lease.
    pub const MIN_TTL: Duration = Duration::from_millis(300);

    /// A TTL of `ttl`, renewed every `renew_every`. The renewal must fit at least twice in
    /// the TTL, so one failed renewal (Redis briefly away) does not lose the lease.
    pub fn new(ttl: Duration, renew_every: Duration) -> Result<Self, ClusterError> {
        if ttl < Self::MIN_TTL {
            return Err(ClusterError::BadConfig(format!(
                "a lease TTL of {ttl:?} is shorter than the minimum {:?}",
                Self::MIN_TTL
            )));
        }
        if ttl > Duration::from_secs(24 * 60 * 60) {
            return Err(ClusterError::BadConfig(format!(
                "a lease TTL of {ttl:?} is longer than a day"
            )));
        }
        if renew_every.is_zero() || renew_every * 2 > ttl {
            return Err(ClusterError::BadConfig(format!(
                "a lease renewed every {renew_every:?} must be renewed at least twice within its TTL of {ttl:?}"
            )));
        }
        Ok(Self { ttl, renew_every })
    }

    /// A TTL of `ttl`, renewed three times within it.
    pub fn from_ttl(ttl: Duration) -> Result<Self, ClusterError> {
        Self::new(ttl, ttl / 3)
    }

    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    /// The TTL in whole milliseconds, as `PX` takes it.
    pub fn ttl_ms(&self) -> u64 {
        u64::try_from(self.ttl.as_millis()).unwrap_or(u64::MAX)
    }

    pub fn renew_every(&self) -> Duration {
        self.renew_every
    }

    /// How much sooner than Redis we count a lease as run out: our clock and Redis's may
    /// not run at the same rate, and a holder must stop before anyone else can start.
    pub fn drift(&self) -> Duration {
        self.ttl / 10
    }
}

/// What Redis said to a renewal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RenewReply {
    /// The lock was still ours; its TTL starts again.
    Renewed,
    /// There is no lock (Redis restarted empty, or it expired with nobody taking it).
    Missing,
    /// Another holder has it (its lock value).
    HeldBy(String),
}

/// Why a lease is over.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LossReason {
    /// Our clock says the lease ran out before a renewal was confirmed (we were paused,
    /// or Redis was unreachable for too long).
    Expired,
    /// Another holder took the lock (its lock value).
    TakenBy(String),
}

impl fmt::Display for LossReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LossReason::Expired => f.write_str("expired before it was renewed"),
            LossReason::TakenBy(holder) => write!(f, "taken by {holder}"),
        }
    }
}

/// What the holder does next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LeaseStep {
    /// Still ours.
    Keep,
    /// Nobody holds it: take it again, with an epoch above ours.
    Retake,
    /// Not ours any more: stop running the meeting.
    StepDown(LossReason),
}

/// One held lease as its holder's clock sees it.
///
/// Validity is counted from when a command was *sent*, never from when its answer came:
/// Redis started the TTL somewhere in between, so the send time is the safe side.
#[derive(Debug, Clone)]
pub struct LeaseClock {
    timing: LeaseTiming,
    /// Past this, by our clock, the lease may have run out in Redis.
    valid_until: Instant,
    /// When the last renewal (or the take) was sent.
    last_attempt: Instant,
    /// A renewal is on its way and not answered yet: no second one is sent meanwhile (a
    /// Redis that hangs must not pile renewals up), while the expiry keeps being checked.
    in_flight: bool,
}

impl LeaseClock {
    /// A lease taken by a command sent at `sent_at`.
    pub fn taken(timing: LeaseTiming, sent_at: Instant) -> Self {
        Self {
            timing,
            valid_until: sent_at + timing.ttl - timing.drift(),
            last_attempt: sent_at,
            in_flight: false,
        }
    }

    pub fn timing(&self) -> LeaseTiming {
        self.timing
    }

    pub fn valid_until(&self) -> Instant {
        self.valid_until
    }

    /// Has our clock passed the lease's end? Then the holder must step down before doing
    /// anything else, even before asking Redis.
    pub fn expired(&self, now: Instant) -> bool {
        now >= self.valid_until
    }

    /// When the next renewal should be sent.
    pub fn next_renewal(&self) -> Instant {
        self.last_attempt + self.timing.renew_every
    }

    /// Is a renewal to be sent now? Never while one is unanswered.
    pub fn renewal_due(&self, now: Instant) -> bool {
        !self.in_flight && now >= self.next_renewal()
    }

    /// A renewal is being sent now.
    pub fn sending(&mut self, now: Instant) {
        self.last_attempt = now;
        self.in_flight = true;
    }

    /// Redis answered a renewal sent at `sent_at`.
    pub fn answered(&mut self, reply: RenewReply, sent_at: Instant) -> LeaseStep {
        self.in_flight = false;
        match reply {
            RenewReply::Renewed => {
                let until = sent_at + self.timing.ttl - self.timing.drift();
                self.valid_until = self.valid_until.max(until);
                LeaseStep::Keep
            }
            RenewReply::Missing => LeaseStep::Retake,
            RenewReply::HeldBy(holder) => LeaseStep::StepDown(LossReason::TakenBy(holder)),
        }
    }

    /// A renewal got no answer (Redis unreachable, timed out): keep the lease while our
    /// clock says it is valid and try again at the next renewal; past that, step down.
    pub fn unanswered(&mut self, now: Instant) -> LeaseStep {
        self.in_flight = false;
        if self.expired(now) {
            LeaseStep::StepDown(LossReason::Expired)
        } else {
            LeaseStep::Keep
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    fn timing() -> LeaseTiming {
        LeaseTiming::new(ms(1000), ms(300)).expect("valid timing")
    }

    #[test]
    fn timing_is_checked() {
        assert!(LeaseTiming::new(ms(100), ms(30)).is_err(), "too short");
        assert!(
            LeaseTiming::new(ms(1000), ms(600)).is_err(),
            "renewal fits once"
        );
        assert!(LeaseTiming::new(ms(1000), ms(0)).is_err(), "no renewal");
        assert!(LeaseTiming::new(Duration::from_secs(90_000), ms(1000)).is_err());
        let t = LeaseTiming::new(ms(1000), ms(500)).expect("exactly twice fits");
        assert_eq!(t.ttl_ms(), 1000);
        assert_eq!(t.drift(), ms(100));
        let t = LeaseTiming::from_ttl(ms(3000)).expect("valid");
        assert_eq!(t.renew_every(), ms(1000));
        assert_eq!(
            LeaseTiming::new(ms(10), ms(1)).map_err(|e| e.code()).err(),
            Some("bad_config")
        );
    }

    #[test]
    fn a_lease_counts_from_when_it_was_sent_less_the_drift() {
        let t0 = Instant::now();
        let clock = LeaseClock::taken(timing(), t0);
        assert_eq!(clock.valid_until(), t0 + ms(900));
        assert!(!clock.expired(t0 + ms(899)));
        assert!(clock.expired(t0 + ms(900)));
    }

    #[test]
    fn renewals_are_due_every_period_after_the_last_attempt() {
        let t0 = Instant::now();
        let mut clock = LeaseClock::taken(timing(), t0);
        assert!(!clock.renewal_due(t0 + ms(299)));
        assert!(clock.renewal_due(t0 + ms(300)));
        clock.sending(t0 + ms(310));
        assert!(!clock.renewal_due(t0 + ms(500)));
        assert_eq!(clock.next_renewal(), t0 + ms(610));
    }

    #[test]
    fn no_second_renewal_is_sent_while_one_is_unanswered() {
        let t0 = Instant::now();
        let mut clock = LeaseClock::taken(timing(), t0);
        clock.sending(t0 + ms(300));
        // Redis hangs: nothing more is due, however late, but the expiry still shows.
        assert!(!clock.renewal_due(t0 + ms(700)));
        assert!(clock.expired(t0 + ms(950)));
        assert_eq!(clock.unanswered(t0 + ms(700)), LeaseStep::Keep);
        assert!(clock.renewal_due(t0 + ms(700)), "due again once it gave up");
        clock.sending(t0 + ms(700));
        assert_eq!(
            clock.answered(RenewReply::Renewed, t0 + ms(700)),
            LeaseStep::Keep
        );
        assert!(clock.renewal_due(t0 + ms(1000)));
    }

    #[test]
    fn a_confirmed_renewal_extends_from_its_send_time() {
        let t0 = Instant::now();
        let mut clock = LeaseClock::taken(timing(), t0);
        let sent = t0 + ms(300);
        clock.sending(sent);
        // The answer came late; validity still counts from the send.
        assert_eq!(clock.answered(RenewReply::Renewed, sent), LeaseStep::Keep);
        assert_eq!(clock.valid_until(), sent + ms(900));
        // An answer to an older renewal never shortens the lease.
        assert_eq!(clock.answered(RenewReply::Renewed, t0), LeaseStep::Keep);
        assert_eq!(clock.valid_until(), sent + ms(900));
    }

    #[test]
    fn a_missing_lock_is_retaken_and_a_foreign_one_means_stepping_down() {
        let t0 = Instant::now();
        let mut clock = LeaseClock::taken(timing(), t0);
        assert_eq!(clock.answered(RenewReply::Missing, t0), LeaseStep::Retake);
        assert_eq!(
            clock.answered(RenewReply::HeldBy("b x 7".into()), t0),
            LeaseStep::StepDown(LossReason::TakenBy("b x 7".into()))
        );
    }

    #[test]
    fn unanswered_renewals_keep_the_lease_only_while_the_clock_allows() {
        let t0 = Instant::now();
        let mut clock = LeaseClock::taken(timing(), t0);
        assert_eq!(clock.unanswered(t0 + ms(400)), LeaseStep::Keep);
        assert_eq!(clock.unanswered(t0 + ms(800)), LeaseStep::Keep);
        assert_eq!(
            clock.unanswered(t0 + ms(900)),
            LeaseStep::StepDown(LossReason::Expired)
        );
    }

    #[test]
    fn a_paused_holder_finds_its_lease_expired_before_asking() {
        let t0 = Instant::now();
        let clock = LeaseClock::taken(timing(), t0);
        // Stopped for longer than the TTL, then resumed: the first look says expired.
        let resumed = t0 + ms(5000);
        assert!(clock.expired(resumed));
        assert!(clock.renewal_due(resumed));
    }

    #[test]
    fn the_fence_admits_the_newest_epoch_only() {
        let mut fence = EpochFence::default();
        assert_eq!(fence.newest(), None);
        assert!(fence.admit(Epoch(3)));
        assert!(fence.admit(Epoch(3)), "the same epoch goes on");
        assert!(!fence.admit(Epoch(2)), "an older home is ignored");
        assert_eq!(fence.newest(), Some(Epoch(3)));
        assert!(fence.admit(Epoch(9)));
        assert!(!fence.admit(Epoch(3)));
        assert!(Epoch(2) < Epoch(10));
    }
}
