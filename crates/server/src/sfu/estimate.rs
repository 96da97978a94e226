//! What the allocator takes for one viewer session's bandwidth, and what the session's
//! bandwidth estimator is asked to probe for: [`LinkEstimate`].
//!
//! Pure logic over what str0m reports, no I/O and no clock of its own. str0m's estimator
//! (GCC over TWCC feedback) is the source; this adds what a layer choice needs on top:
//! - **A fall is seen at once.** str0m's `EgressBitrateEstimate` event is smoothed (it
//!   steps down over a second or two); its raw estimate, in the periodic peer stats, is
//!   taken whenever it is lower.
//! - **A queue, heavy loss or a collapse is congestion now.** When the time from sending a
//!   packet to its feedback is more than [`QUEUE_CONGESTED`] over its floor in two reports
//!   running, and still growing (a queue building up at a bottleneck: the fastest sign, as
//!   a bottleneck's buffer fills before it drops; in the lab it shows 0.5 s after a step
//!   down, about as GCC's trend filter calls it overuse; one late feedback, a viewer's busy
//!   moment, is a spike that does not grow), or sooner when it grows by [`QUEUE_RISE`]
//!   in each of two reports (a link several times slower than what is sent: seen before
//!   the bottleneck's buffer overflows), when more than [`CONGESTED_LOSS`] of what
//!   was sent in the last second was reported lost, or when the raw estimate fell by more
//!   than [`COLLAPSE`] from one report to the next (GCC backing off from a queue that
//!   grows), the path carries far less than is being sent: a link that just got slower.
//!   The viewer then falls back to every video's lowest layer at once, rather than step
//!   by step as the smoothed estimate comes down, and climbs again by the usual rules once
//!   it is over. The estimator restarts from what the viewer falls back to
//!   ([`LinkEstimate::restart`]), as its estimate may never have seen the slower link.
//! - **A warm-up before the estimate counts.** For [`WARMUP`] after the viewer's first
//!   feedback the estimate is the one the session started from (or what a congestion
//!   restarted it to), not str0m's: while little has been acknowledged, str0m reads a
//!   fraction of the link (1 Mbit/s of a free one in the lab, a quarter on loopback), and
//!   a viewer who took its readings then was moved off the top layer of a free link and
//!   kept off it for seconds. The first feedback is answered with a probe, whose result is
//!   in before the warm-up ends. A congestion is seen in the warm-up as at any time.
//! - **What the link carried counts.** What was sent over the last [`DELIVERY_WINDOW`],
//!   when every report in it showed no queue and next to no loss, reached the viewer:
//!   the link carries at least that, whatever str0m says. The estimate is never taken
//!   below it. GCC backs off to 85% of what was acknowledged on any sign of overuse, and
//!   on a free link a viewer's busy moment (its feedback stamps arrival times in user
//!   space) is such a sign: without this, a free viewer was moved off a top layer its
//!   link had carried for seconds. A link that got slower shows its queue at once, and
//!   then only str0m's estimate counts.
//! - **Probing for more, again and again.** str0m probes when the rate it is asked to
//!   discover rises above its estimate, and on its own only now and then. While the viewer
//!   wants more than the estimate carries, the wanted rate is lowered to the estimate and
//!   raised again every [`REPROBE_INTERVAL`], so a link that got faster is found within
//!   seconds rather than never (an SFU sending a low layer sends too little for the
//!   estimate to grow by itself).

use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// The share of a second's packets reported lost above which a viewer's link is taken as
/// congested (libwebrtc's loss-based rule cuts its rate above the same 10%).
pub const CONGESTED_LOSS: f32 = 0.10;

/// The fall of the raw estimate, from one report to the next, that is taken as congestion
/// when the round trip shows a queue (over [`QUEUE_RISING_OVER`]): GCC's back-off on
/// overuse takes it to 85% of what was acknowledged, so a fall this deep says the path
/// carries well under half of what it did. Without a queue it is no sign: a viewer taking
/// only a low layer has little acknowledged, and GCC's back-off from a blip of a few
/// milliseconds (a busy receiver) halved its estimate on a free LAN in the lab.
pub const COLLAPSE: f64 = 0.5;

/// The growth of the feedback round trip over its floor that says a queue is building,
/// in two reports running and growing. Well above what a free viewer's feedback wavers
/// by (at most 31 ms over a minute in the lab, with the machine's two cores busy).
pub const QUEUE_CONGESTED: Duration = Duration::from_millis(150);

/// A queue growing this fast is congestion before it reaches [`QUEUE_CONGESTED`]: the
/// round trip over its floor grew by at least this from one report to the next, twice
/// running, and is over [`QUEUE_RISING_OVER`]. A link that just got several times
/// slower than what is sent shows this in its first two reports (its queue grows by
/// most of a report interval in each); a late feedback rises once, then falls.
pub const QUEUE_RISE: Duration = Duration::from_millis(50);

/// See [`QUEUE_RISE`].
pub const QUEUE_RISING_OVER: Duration = Duration::from_millis(75);

/// Over how long the round trip's floor is the smallest seen (in two halves, so an old
/// floor ages out).
pub const RTT_FLOOR_WINDOW: Duration = Duration::from_secs(10);

/// Over how long what was sent is taken as delivered: see the module docs.
pub const DELIVERY_WINDOW: Duration = Duration::from_secs(1);

/// The loss under which a report counts as clean for [`DELIVERY_WINDOW`].
pub const CLEAN_LOSS: f32 = 0.02;

/// What one peer stats report says of a session's path.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct LinkReport {
    /// Bytes sent on the session so far (every packet: media, retransmissions, padding).
    pub sent_bytes: u64,
    /// str0m's raw estimate, bit/s.
    pub raw: Option<u64>,
    /// The share of the last second's packets the viewer's feedback reported lost.
    pub loss: Option<f32>,
    /// From sending the newest packet the feedback covers to receiving that feedback.
    pub rtt: Option<Duration>,
}

/// The smallest round trip over [`RTT_FLOOR_WINDOW`]: the path without a queue.
#[derive(Debug, Clone, Copy, Default)]
struct RttFloor {
    since: Option<Instant>,
    current: Option<Duration>,
    previous: Option<Duration>,
}

impl RttFloor {
    fn add(&mut self, rtt: Duration, now: Instant) {
        let since = *self.since.get_or_insert(now);
        if now.saturating_duration_since(since) >= RTT_FLOOR_WINDOW / 2 {
            self.previous = self.current;
            self.current = None;
            self.since = Some(now);
        }
        self.current = Some(self.current.map_or(rtt, |c| c.min(rtt)));
    }

    fn get(&self) -> Option<Duration> {
        match (self.current, self.previous) {
            (Some(c), Some(p)) => Some(c.min(p)),
            (c, p) => c.or(p),
        }
    }
}

/// How long after a session's first feedback its estimate is the one it started from:
/// long enough for the probe sent on that feedback to be answered (about 2 s in the lab).
pub const WARMUP: Duration = Duration::from_secs(3);

/// How long a viewer stays taken as congested after the last sign of congestion: the
/// loss figure covers a second, and the queue that overflowed takes a moment to drain.
pub const CONGESTION_HOLD: Duration = Duration::from_secs(1);

/// How often an estimate short of what the viewer wants is probed again.
pub const REPROBE_INTERVAL: Duration = Duration::from_secs(3);

/// How long str0m's estimate may stand still, short of what the viewer wants and with no
/// congestion, before its estimator is started over from it ([`LinkEstimate::kick_pending`]).
/// After heavy loss, str0m's loss-based estimate can hold a low figure while little is
/// sent (a viewer on its lowest layer), and it does not probe while loss limits it:
/// without a kick, a viewer whose link came back stayed on 180p for good (seen in the
/// lab). A fresh estimator probes from where the old one stood.
pub const STALL: Duration = Duration::from_secs(8);

/// How long str0m's estimate may stand still after a congestion's restart, once the path
/// is clean again (no queue, next to no loss in every report), before its estimator is
/// started over a second time. The estimator restarted in the middle of a congestion
/// learns the loss of the queue that is still draining; str0m's loss controller then
/// holds one figure and does not probe, though the link may have come back: in the lab
/// a viewer whose link stepped up just after such a restart waited out [`STALL`] on 180p
/// (5-8 s of its climb back). Once per congestion, so a link that is slow for good costs
/// one extra probe per congestion, not one every few seconds.
pub const STALL_AFTER_CONGESTION: Duration = Duration::from_secs(2);

/// How far str0m's raw estimate may move and still be standing still, as a share of
/// where it stood: a loss-limited estimate creeps by a few kbit/s from report to report
/// (289 359, 288 359, 291 002, 287 295 bit/s in the lab) without ever probing.
pub const STILL_WITHIN: f64 = 0.10;

/// How often, at most, a link where a climb was just tried and failed is probed again:
/// each try costs the viewer a short queue, and a link that failed is likely to fail the
/// next (twice [`REPROBE_INTERVAL`] after a failure, until a try does not fail).
pub const REPROBE_AFTER_FAILURE: Duration = Duration::from_secs(6);

/// One session's view of its path, from str0m's events.
#[derive(Debug, Clone)]
pub struct LinkEstimate {
    /// From `EgressBitrateEstimate` (smoothed), bit/s.
    smoothed: Option<u64>,
    /// From the peer stats (str0m's last raw estimate), bit/s, once past the warm-up.
    raw: Option<u64>,
    /// What the estimate is in the warm-up: the start, or a congestion's restart, bit/s.
    start: u64,
    /// The first report that carried feedback (a loss figure).
    first_feedback: Option<Instant>,
    /// The warm-up is over: str0m's readings count.
    settled: bool,
    /// The raw estimate last read, warm-up or not (what a probe dips to).
    raw_seen: Option<u64>,
    /// A probe was asked for since the first feedback.
    probed_after_feedback: bool,
    rtt_floor: RttFloor,
    /// How far over the floor the last two reports' round trips were (the last first).
    over_floor: [Option<Duration>; 2],
    /// A congestion began: the estimator is to start over.
    restart_pending: bool,
    /// Until when heavy loss counts.
    congested_until: Option<Instant>,
    /// The rate last asked of the estimator, bit/s (0: not yet asked).
    desired: u64,
    /// When a probe was last asked for (the wanted rate raised above the estimate).
    probed_at: Option<Instant>,
    /// The wanted rate was lowered for a probe, to be raised on the next call.
    dipped: bool,
    /// What the link is asked to carry (str0m pads up to it), bit/s: a climb being tried.
    minimum: u64,
    /// The last climb tried ended in a congestion.
    climb_failed: bool,
    /// The reports of the last [`DELIVERY_WINDOW`] (and the one before it): when, bytes
    /// sent so far, and whether the path showed no queue and next to no loss.
    deliveries: VecDeque<(Instant, u64, bool)>,
    /// Since when str0m's raw estimate has read what it reads now (within
    /// [`STILL_WITHIN`]), and what it read then.
    raw_since: Option<Instant>,
    raw_then: Option<u64>,
    /// When the estimator was last started over, or a stall was last looked for.
    kicked_at: Option<Instant>,
    /// The estimator stood still too long: it is to start over from the estimate.
    kick_pending: bool,
    /// The estimator was restarted in a congestion and not started over since.
    restarted_in_congestion: bool,
    /// Since when every report has been clean (no queue, next to no loss, no congestion).
    clean_since: Option<Instant>,
}

impl LinkEstimate {
    /// A session whose estimate starts at `start` bit/s.
    pub fn new(start: u64) -> Self {
        Self {
            smoothed: None,
            raw: None,
            start,
            first_feedback: None,
            settled: false,
            raw_seen: None,
            probed_after_feedback: false,
            rtt_floor: RttFloor::default(),
            over_floor: [None; 2],
            restart_pending: false,
            congested_until: None,
            desired: 0,
            probed_at: None,
            dipped: false,
            minimum: 0,
            climb_failed: false,
            deliveries: VecDeque::new(),
            raw_since: None,
            raw_then: None,
            kicked_at: None,
            kick_pending: false,
            restarted_in_congestion: false,
            clean_since: None,
        }
    }

    /// str0m's (smoothed) estimate changed.
    pub fn on_estimate(&mut self, bps: u64) {
        self.smoothed = Some(bps);
    }

    /// A peer stats report. Returns whether it begins a congestion (the caller re-decides
    /// the viewer's layers at once).
    pub fn on_stats(&mut self, report: LinkReport, now: Instant) -> bool {
        let LinkReport {
            sent_bytes,
            raw,
            loss,
            rtt,
        } = report;
        if loss.is_some() {
            let first = *self.first_feedback.get_or_insert(now);
            self.settled |= now.saturating_duration_since(first) >= WARMUP;
        }
        let moved = raw
            .zip(self.raw_then)
            .is_none_or(|(raw, then)| raw.abs_diff(then) as f64 > then as f64 * STILL_WITHIN);
        if raw.is_some() && moved || self.raw_since.is_none() {
            self.raw_since = Some(now);
            self.raw_then = raw.or(self.raw_then);
        }
        self.raw_seen = raw.or(self.raw_seen);
        let raw = raw.filter(|_| self.settled);
        let mut queue = false;
        if let Some(rtt) = rtt {
            let above = self.rtt_floor.get().map(|floor| rtt.saturating_sub(floor));
            let over = above.filter(|&over| over > QUEUE_CONGESTED);
            let before = self.over_floor[0].filter(|&over| over > QUEUE_CONGESTED);
            queue = over.zip(before).is_some_and(|(now, before)| now > before);
            let rising = match (above, self.over_floor) {
                (Some(o0), [Some(o1), Some(o2)]) => {
                    o0 > QUEUE_RISING_OVER
                        && o0.saturating_sub(o1) >= QUEUE_RISE
                        && o1.saturating_sub(o2) >= QUEUE_RISE
                }
                _ => false,
            };
            queue |= rising;
            self.over_floor = [above, self.over_floor[0]];
            self.rtt_floor.add(rtt, now);
        }
        // A collapse with no queue behind it is GCC's back-off from a blip on a link that
        // carries little (it backs off to 85% of what was acknowledged): not congestion.
        let queued_some = self.over_floor[0].is_some_and(|o| o > QUEUE_RISING_OVER);
        let collapsed = queued_some
            && self
                .raw
                .zip(raw)
                .is_some_and(|(old, new)| (new as f64) < old as f64 * COLLAPSE);
        if raw.is_some() {
            self.raw = raw;
        }
        let heavy = queue || collapsed || loss.is_some_and(|l| l > CONGESTED_LOSS);
        let began = heavy && !self.congested(now);
        if heavy {
            self.congested_until = Some(now + CONGESTION_HOLD);
        }
        self.restart_pending |= began;
        let queue_free = rtt
            .zip(self.rtt_floor.get())
            .is_some_and(|(rtt, floor)| rtt.saturating_sub(floor) <= QUEUE_CONGESTED);
        let clean = queue_free && loss.is_some_and(|l| l <= CLEAN_LOSS) && !self.congested(now);
        self.deliveries.push_back((now, sent_bytes, clean));
        // Keep one report older than the window: the start of what it measures.
        while self
            .deliveries
            .get(1)
            .is_some_and(|&(at, ..)| now.saturating_duration_since(at) >= DELIVERY_WINDOW)
        {
            self.deliveries.pop_front();
        }
        if began && self.minimum > 0 {
            self.climb_failed = true;
        }
        self.clean_since = clean.then(|| self.clean_since.unwrap_or(now));
        let still_for = |at: Option<Instant>, d: Duration| {
            at.is_none_or(|at| now.saturating_duration_since(at) >= d)
        };
        let stalled = still_for(self.raw_since, STALL) && still_for(self.kicked_at, STALL);
        // A congestion's restart whose estimator holds still on a path clean again: see
        // `STALL_AFTER_CONGESTION`.
        let stalled_after_congestion = self.restarted_in_congestion
            && self.clean_since.is_some()
            && still_for(self.clean_since, STALL_AFTER_CONGESTION)
            && still_for(self.raw_since, STALL_AFTER_CONGESTION);
        if self.settled
            && self.desired > self.bitrate()
            && !self.congested(now)
            && (stalled || stalled_after_congestion)
        {
            self.kick_pending = true;
            self.restarted_in_congestion = false;
            self.kicked_at = Some(now);
            self.raw_since = Some(now);
        }
        began
    }

    /// Whether the estimator stood still for [`STALL`] and is to start over from
    /// [`bitrate`](Self::bitrate) (the caller resets str0m's, then calls
    /// [`kicked`](Self::kicked)).
    pub fn kick_pending(&self) -> bool {
        self.kick_pending
    }

    /// The estimator started over.
    pub fn kicked(&mut self) {
        self.kick_pending = false;
    }

    /// What the link is to carry while a climb is tried (0: none), bit/s. Returns whether
    /// that changed enough to tell the estimator.
    pub fn sustain(&mut self, bps: u64, now: Instant) -> bool {
        if bps == 0 && self.minimum > 0 && !self.congested(now) {
            // Tried and not failed: the climb was taken (or no longer wanted).
            self.climb_failed = false;
        }
        let changed =
            (bps == 0) != (self.minimum == 0) || bps.abs_diff(self.minimum) * 20 > self.minimum;
        if changed {
            self.minimum = bps;
        }
        changed
    }

    /// The rates last asked of the estimator: what to carry, and what to discover, bit/s.
    pub fn asked(&self) -> (u64, u64) {
        (self.minimum.min(self.desired), self.desired.max(1))
    }

    /// Whether a congestion began since the last [`restart`](Self::restart).
    pub fn restart_pending(&self) -> bool {
        self.restart_pending
    }

    /// The estimator started over from `bps` (str0m's estimate is reset to it).
    pub fn restart(&mut self, bps: u64) {
        self.restart_pending = false;
        self.restarted_in_congestion = true;
        self.start = bps;
        self.smoothed = Some(bps);
        self.raw = self.raw.map(|_| bps);
    }

    /// The estimate, bit/s: in the warm-up the start, then the lower of the smoothed and
    /// the raw.
    pub fn bitrate(&self) -> u64 {
        let estimate = if !self.settled {
            self.start
        } else {
            match (self.smoothed, self.raw) {
                (Some(s), Some(r)) => s.min(r),
                (s, r) => s.or(r).unwrap_or(self.start),
            }
        };
        estimate.max(self.delivered().unwrap_or(0))
    }

    /// What reached the viewer over the last [`DELIVERY_WINDOW`], bit/s, when every report
    /// in it was clean (no queue, next to no loss).
    pub fn delivered(&self) -> Option<u64> {
        let &(first, from, _) = self.deliveries.front()?;
        let &(last, to, _) = self.deliveries.back()?;
        let span = last.saturating_duration_since(first);
        let clean = self.deliveries.iter().skip(1).all(|&(.., clean)| clean);
        (clean && span >= DELIVERY_WINDOW)
            .then(|| (to.saturating_sub(from) as f64 * 8.0 / span.as_secs_f64()) as u64)
    }

    /// Whether heavy loss was reported within [`CONGESTION_HOLD`].
    pub fn congested(&self, now: Instant) -> bool {
        self.congested_until.is_some_and(|until| now < until)
    }

    /// The rate to ask the estimator to discover, given what the viewer would take
    /// (`wanted`, bit/s), if it should change: `None` keeps the last one. See the module
    /// docs for the probing rhythm.
    pub fn desired(&mut self, wanted: u64, now: Instant) -> Option<u64> {
        let wanted = wanted.max(1);
        if self.dipped {
            self.dipped = false;
            self.probed_at = Some(now);
            self.desired = wanted;
            return Some(wanted);
        }
        // The first feedback is answered with a probe, whatever the estimate says (it is
        // the start's, in the warm-up): see the module docs.
        let first = self.first_feedback.is_some() && !self.probed_after_feedback;
        let short = self.bitrate() < wanted;
        let interval = if self.climb_failed {
            REPROBE_AFTER_FAILURE
        } else {
            REPROBE_INTERVAL
        };
        let due = self
            .probed_at
            .is_none_or(|at| now.saturating_duration_since(at) >= interval);
        if (first || short && due && self.desired >= wanted) && !self.congested(now) {
            // Lowered now, raised on the next call: str0m probes on a rise only.
            let measured = if self.settled {
                self.bitrate()
            } else {
                self.raw_seen.unwrap_or(self.start).min(wanted)
            };
            self.probed_after_feedback |= self.first_feedback.is_some();
            self.dipped = true;
            self.desired = measured;
            return Some(measured.max(1));
        }
        // Small changes are not worth telling (each retimes the estimator).
        if wanted.abs_diff(self.desired) * 20 > self.desired {
            if wanted > self.desired {
                self.probed_at = Some(now);
            }
            self.desired = wanted;
            return Some(wanted);
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const START: u64 = 2_500_000;

    fn r(raw: Option<u64>, loss: Option<f32>) -> LinkReport {
        LinkReport {
            raw,
            loss,
            ..LinkReport::default()
        }
    }

    fn rtt(ms: u64) -> LinkReport {
        LinkReport {
            rtt: Some(Duration::from_millis(ms)),
            ..LinkReport::default()
        }
    }

    /// A session past its warm-up at the returned instant.
    fn settled() -> (LinkEstimate, Instant) {
        let mut link = LinkEstimate::new(START);
        let t0 = Instant::now();
        link.on_stats(r(None, Some(0.0)), t0);
        let now = t0 + WARMUP;
        link.on_stats(r(None, Some(0.0)), now);
        (link, now)
    }

    #[test]
    fn a_queue_building_up_is_congestion_and_a_late_feedback_is_not() {
        let mut link = LinkEstimate::new(START);
        let t0 = Instant::now();
        let at = |ms: u64| t0 + Duration::from_millis(ms);
        // Late feedback: a spike over the floor (20 ms), then less, then back.
        for (i, ms) in [20, 35, 25, 40, 330, 250, 30].into_iter().enumerate() {
            assert!(!link.on_stats(rtt(ms), at(200 * i as u64)), "{ms}");
        }
        assert!(!link.congested(at(1400)));
        // A queue growing fast (a link several times slower than what is sent): seen
        // before it is 150 ms deep.
        let mut fast = LinkEstimate::new(START);
        for (i, ms) in [12, 14, 86].into_iter().enumerate() {
            assert!(!fast.on_stats(rtt(ms), at(100 * i as u64)), "{ms}");
        }
        assert!(fast.on_stats(rtt(162), at(300)));
        // A queue: over 150 ms above the floor, twice, growing.
        assert!(!link.on_stats(rtt(178), at(1600)));
        assert!(link.on_stats(rtt(334), at(1800)));
        assert!(link.congested(at(1800)));
        let at = |ms: u64| t0 + Duration::from_millis(ms + 400);
        assert!(!link.on_stats(rtt(420), at(1400)), "the same congestion");
        // The estimator starts over from the fallback, once.
        assert!(link.restart_pending());
        link.on_estimate(2_500_000);
        link.restart(190_000);
        assert!(!link.restart_pending());
        assert_eq!(link.bitrate(), 190_000);
        // Over once the queue is gone, after the hold.
        assert!(!link.on_stats(rtt(25), at(1600)));
        assert!(!link.congested(at(1400) + CONGESTION_HOLD));
    }

    #[test]
    fn the_round_trip_floor_ages_out() {
        let mut floor = RttFloor::default();
        let t0 = Instant::now();
        floor.add(Duration::from_millis(10), t0);
        floor.add(Duration::from_millis(50), t0 + RTT_FLOOR_WINDOW / 2);
        assert_eq!(floor.get(), Some(Duration::from_millis(10)));
        floor.add(Duration::from_millis(60), t0 + RTT_FLOOR_WINDOW);
        assert_eq!(floor.get(), Some(Duration::from_millis(50)));
    }

    #[test]
    fn in_the_warm_up_the_estimate_is_the_start_and_the_first_feedback_is_probed() {
        let mut link = LinkEstimate::new(START);
        let t0 = Instant::now();
        // Before any feedback: the start; str0m's readings of a few packets do not count.
        assert_eq!(link.bitrate(), START);
        assert_eq!(link.desired(2_300_000, t0), Some(2_300_000));
        link.on_estimate(1_000_000);
        assert!(!link.on_stats(r(Some(950_000), None), t0));
        assert_eq!(link.bitrate(), START);
        // No probe before the feedback, and the wanted rate is unchanged.
        assert_eq!(link.desired(2_300_000, t0), None);
        // The first feedback: a probe at once (dip to what str0m read, then a rise), though
        // the estimate (the start) carries what is wanted.
        let t1 = t0 + Duration::from_millis(100);
        assert!(!link.on_stats(r(Some(950_000), Some(0.0)), t1));
        assert_eq!(link.bitrate(), START);
        assert_eq!(link.desired(2_300_000, t1), Some(950_000));
        assert_eq!(link.desired(2_300_000, t1), Some(2_300_000));
        // Only once.
        let t2 = t1 + Duration::from_millis(500);
        link.on_stats(r(Some(950_000), Some(0.0)), t2);
        assert_eq!(link.desired(2_300_000, t2), None);
        // The probe's answer, then the end of the warm-up: str0m's readings count.
        link.on_estimate(3_200_000);
        link.on_stats(
            r(Some(3_200_000), Some(0.0)),
            t1 + WARMUP - Duration::from_millis(1),
        );
        assert_eq!(link.bitrate(), START);
        link.on_stats(r(Some(3_200_000), Some(0.0)), t1 + WARMUP);
        assert_eq!(link.bitrate(), 3_200_000);
    }

    #[test]
    fn a_congestion_in_the_warm_up_is_seen_and_restarts_the_start() {
        let mut link = LinkEstimate::new(START);
        let t0 = Instant::now();
        assert!(link.on_stats(r(None, Some(0.4)), t0));
        assert!(link.congested(t0));
        link.restart(190_000);
        assert_eq!(link.bitrate(), 190_000);
        // Still in the warm-up: the restart's figure holds.
        link.on_estimate(2_000_000);
        assert_eq!(link.bitrate(), 190_000);
    }

    #[test]
    fn the_lower_of_the_smoothed_and_the_raw_estimate_counts() {
        let (mut link, now) = settled();
        assert_eq!(link.bitrate(), START, "nothing read yet: the start");
        link.on_estimate(2_000_000);
        assert_eq!(link.bitrate(), 2_000_000);
        link.on_stats(r(Some(600_000), Some(0.0)), now);
        assert_eq!(link.bitrate(), 600_000);
        link.on_stats(r(Some(3_000_000), None), now);
        assert_eq!(link.bitrate(), 2_000_000);
    }

    #[test]
    fn what_a_clean_link_carried_is_the_least_the_estimate_is() {
        let (mut link, t0) = settled();
        link.on_estimate(1_200_000);
        let report = |sent: u64, rtt_ms: u64, loss: f32| LinkReport {
            sent_bytes: sent,
            raw: Some(1_200_000),
            loss: Some(loss),
            rtt: Some(Duration::from_millis(rtt_ms)),
        };
        // 250 kB a second (2 Mbit/s) sent, no queue, no loss: over a full window, it counts.
        for i in 0..=10u64 {
            link.on_stats(
                report(25_000 * i, 10, 0.0),
                t0 + Duration::from_millis(100 * i),
            );
        }
        assert_eq!(link.delivered(), Some(2_000_000));
        assert_eq!(link.bitrate(), 2_000_000);
        // A queue in one report: what was sent may be waiting in it, not delivered.
        let t1 = t0 + Duration::from_millis(1100);
        link.on_stats(report(275_000, 200, 0.0), t1);
        assert_eq!(link.delivered(), None);
        assert_eq!(link.bitrate(), 1_200_000);
        // Clean again, for a whole window.
        for i in 1..=10u64 {
            let at = t1 + Duration::from_millis(100 * i);
            link.on_stats(report(275_000 + 25_000 * i, 10, 0.01), at);
        }
        assert_eq!(link.bitrate(), 2_000_000);
        // Loss over 2%: not clean.
        link.on_stats(report(550_000, 10, 0.05), t1 + Duration::from_millis(1100));
        assert_eq!(link.bitrate(), 1_200_000);
    }

    #[test]
    fn an_estimate_standing_still_short_of_the_wanted_rate_is_kicked() {
        let (mut link, t0) = settled();
        link.on_estimate(394_000);
        assert_eq!(
            link.desired(2_300_000, t0),
            Some(394_000),
            "the first probe"
        );
        assert_eq!(link.desired(2_300_000, t0), Some(2_300_000));
        let report = |raw: u64| r(Some(raw), Some(0.0));
        link.on_stats(report(394_000), t0);
        // Moving: no kick.
        link.on_stats(report(450_000), t0 + STALL - Duration::from_secs(1));
        assert!(!link.kick_pending());
        // Still for STALL: kicked, once.
        let t1 = t0 + STALL - Duration::from_secs(1);
        link.on_stats(report(450_000), t1 + STALL);
        assert!(link.kick_pending());
        link.kicked();
        link.on_stats(report(450_000), t1 + STALL + Duration::from_secs(1));
        assert!(!link.kick_pending());
        // Not while what is wanted is carried.
        let mut carried = settled().0;
        carried.on_estimate(3_000_000);
        carried.on_stats(report(3_000_000), t0);
        carried.desired(2_300_000, t0);
        carried.on_stats(report(3_000_000), t0 + STALL * 2);
        assert!(!carried.kick_pending());
    }

    #[test]
    fn an_estimate_restarted_in_a_congestion_and_standing_still_on_a_clean_path_is_kicked_soon() {
        let clean = |raw: u64| LinkReport {
            raw: Some(raw),
            loss: Some(0.0),
            rtt: Some(Duration::from_millis(20)),
            ..LinkReport::default()
        };
        let every_100ms = |link: &mut LinkEstimate, from: Instant, to: Instant, raw: u64| {
            let mut at = from;
            while at <= to {
                link.on_stats(clean(raw), at);
                at += Duration::from_millis(100);
            }
        };
        for restarted in [false, true] {
            let (mut link, t0) = settled();
            every_100ms(&mut link, t0, t0 + Duration::from_secs(1), 2_000_000);
            // A congestion: heavy loss, and the estimator restarted from the lowest layers.
            let t1 = t0 + Duration::from_secs(2);
            assert!(link.on_stats(r(Some(2_000_000), Some(0.4)), t1));
            if restarted {
                link.restart(180_000);
            }
            link.on_estimate(400_000);
            link.desired(2_300_000, t1);
            link.desired(2_300_000, t1);
            // Over: clean reports, the raw estimate held at one figure.
            let t2 = t1 + CONGESTION_HOLD;
            let t3 = t2 + STALL_AFTER_CONGESTION + Duration::from_millis(200);
            // Creeping by a few kbit/s, as a loss-limited estimate does, is standing still.
            every_100ms(&mut link, t2, t2 + Duration::from_secs(1), 400_000);
            every_100ms(&mut link, t2 + Duration::from_secs(1), t3, 392_000);
            assert_eq!(
                link.kick_pending(),
                restarted,
                "kicked {STALL_AFTER_CONGESTION:?} after a congestion's restart only"
            );
            if restarted {
                // Once per congestion.
                link.kicked();
                every_100ms(&mut link, t3, t3 + STALL_AFTER_CONGESTION * 2, 400_000);
                assert!(!link.kick_pending());
            }
        }
    }

    #[test]
    fn heavy_loss_is_congestion_for_a_hold_and_begins_once() {
        let mut link = LinkEstimate::new(START);
        let t0 = Instant::now();
        assert!(!link.on_stats(r(None, Some(0.05)), t0));
        assert!(!link.congested(t0));
        assert!(link.on_stats(r(None, Some(0.3)), t0));
        assert!(link.congested(t0));
        // Still lossy: the same congestion, not a new one.
        let t1 = t0 + Duration::from_millis(200);
        assert!(!link.on_stats(r(None, Some(0.2)), t1));
        // No report of loss since: over after the hold.
        assert!(link.congested(t1 + CONGESTION_HOLD - Duration::from_millis(1)));
        assert!(!link.congested(t1 + CONGESTION_HOLD));
        // A report without a loss figure says nothing about congestion.
        assert!(!link.on_stats(r(None, None), t1 + CONGESTION_HOLD));
    }

    #[test]
    fn a_collapsing_raw_estimate_is_congestion_and_a_gentle_fall_is_not() {
        let mut link = LinkEstimate::new(START);
        let start = Instant::now();
        // A collapse in the warm-up is not taken.
        assert!(!link.on_stats(r(Some(3_000_000), Some(0.0)), start));
        assert!(!link.on_stats(r(Some(600_000), Some(0.0)), start));
        let t0 = start + WARMUP;
        let with_rtt = |raw: u64, ms: u64| LinkReport {
            rtt: Some(Duration::from_millis(ms)),
            ..r(Some(raw), Some(0.0))
        };
        assert!(!link.on_stats(with_rtt(3_000_000, 10), t0));
        assert!(!link.on_stats(with_rtt(1_600_000, 12), t0));
        assert!(!link.congested(t0));
        // A halving with no queue behind it: GCC's back-off from a blip, not congestion.
        assert!(!link.on_stats(with_rtt(700_000, 11), t0));
        assert!(!link.congested(t0));
        assert!(!link.on_stats(with_rtt(1_500_000, 11), t0));
        // With a queue (100 ms over the floor): congestion.
        assert!(!link.on_stats(with_rtt(1_500_000, 110), t0));
        assert!(link.on_stats(with_rtt(700_000, 120), t0));
        assert!(link.congested(t0));
        assert_eq!(link.bitrate(), 700_000);
    }

    #[test]
    fn an_estimate_short_of_the_wanted_rate_is_probed_again_by_a_dip_and_a_rise() {
        let (mut link, t0) = settled();
        link.on_estimate(500_000);
        // The first feedback's probe.
        assert_eq!(link.desired(2_000_000, t0), Some(500_000));
        assert_eq!(link.desired(2_000_000, t0), Some(2_000_000));
        // Unchanged, and too soon for another probe.
        assert_eq!(link.desired(2_010_000, t0 + Duration::from_secs(1)), None);
        // Due: down to the estimate, then up again on the next round.
        let t1 = t0 + REPROBE_INTERVAL;
        assert_eq!(link.desired(2_000_000, t1), Some(500_000));
        let t2 = t1 + Duration::from_millis(250);
        assert_eq!(link.desired(2_000_000, t2), Some(2_000_000));
        assert_eq!(link.desired(2_000_000, t2 + Duration::from_secs(1)), None);
        // Not while congested: probing a congested link deepens its queue.
        let t3 = t2 + REPROBE_INTERVAL;
        link.on_stats(r(None, Some(0.5)), t3);
        assert_eq!(link.desired(2_000_000, t3), None);
        // Nor once the estimate carries what is wanted.
        let t4 = t3 + CONGESTION_HOLD;
        link.on_estimate(3_000_000);
        link.on_stats(r(Some(3_000_000), Some(0.0)), t4);
        assert_eq!(link.desired(2_000_000, t4), None);
    }

    #[test]
    fn a_changed_wanted_rate_is_told_when_it_moved_by_more_than_five_percent() {
        let mut link = LinkEstimate::new(5_000_000);
        let t0 = Instant::now();
        assert_eq!(link.desired(1_000_000, t0), Some(1_000_000));
        assert_eq!(link.desired(1_040_000, t0), None);
        assert_eq!(link.desired(800_000, t0), Some(800_000));
        assert_eq!(link.desired(0, t0), Some(1));
    }
}
