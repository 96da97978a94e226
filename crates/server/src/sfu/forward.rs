//! Per-viewer forwarding state: what the SFU rewrites in each RTP packet it relays, and
//! when it asks a publisher for a keyframe. Pure logic, no I/O, unit-tested.

use std::time::{Duration, Instant};

/// How long a requested keyframe is taken to be on its way: requests meanwhile are
/// answered by it; one still unanswered after this is sent again (a lost request).
pub const KEYFRAME_WAIT: Duration = Duration::from_millis(500);

/// The least time between two keyframe requests for one layer of a publisher: a join
/// storm, viewers arriving one after another, costs it at most one keyframe per interval.
pub const KEYFRAME_MIN_INTERVAL: Duration = Duration::from_millis(100);

/// Rewrites one publisher track for one viewer.
///
/// Each viewer's outgoing stream has its own SSRC, and its sequence numbers and timestamps
/// must run on without jumps even when the publisher's stream restarts (a publisher that
/// reconnects starts new ones). Video forwarding starts at a keyframe, since a decoder can
/// do nothing with what comes before it. Gaps in the input are kept as gaps in the output,
/// so the viewer's NACKs name the right packets.
#[derive(Debug, Clone)]
pub struct TrackForwarder {
    needs_keyframe: bool,
    /// Input (extended seq, timestamp) mapped onto output (seq, timestamp) at the start of
    /// the current input stream: out = in - in_base + out_base.
    base: Option<Base>,
    /// The next sequence number and the timestamp after the last output packet, so a new
    /// input stream continues where the old one stopped.
    next_seq: u64,
    last_ts: u32,
    last_at: Option<Instant>,
    clock_rate: u32,
    /// Packets were held back on purpose (a host's mute): the next one takes the next
    /// sequence number, closing the gap, while timestamps keep following the publisher's.
    close_gap: bool,
}

#[derive(Debug, Clone, Copy)]
struct Base {
    in_seq: u64,
    in_ts: u32,
    out_seq: u64,
    out_ts: u32,
}

/// A packet's new header fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rewritten {
    pub seq: u64,
    pub timestamp: u32,
}

/// What to do with one input packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Forward(Rewritten),
    /// Not forwarded: video before the first keyframe. The caller should make sure a
    /// keyframe was asked for.
    WaitingForKeyframe,
    /// Not forwarded: older than where this viewer started.
    Stale,
}

impl TrackForwarder {
    /// `first_seq` is the viewer stream's first sequence number (below 2^15, so the SRTP
    /// rollover counter starts at zero on both sides).
    pub fn new(video: bool, clock_rate: u32, first_seq: u16) -> Self {
        Self {
            needs_keyframe: video,
            base: None,
            next_seq: u64::from(first_seq & 0x7fff),
            last_ts: rand_ts(first_seq),
            last_at: None,
            clock_rate,
            close_gap: false,
        }
    }

    /// Is this forwarder still waiting for its first keyframe?
    pub fn waiting_for_keyframe(&self) -> bool {
        self.needs_keyframe
    }

    /// The publisher's stream (re)started: the next packet begins a new mapping, and video
    /// waits for a keyframe again.
    pub fn restart(&mut self, video: bool) {
        self.base = None;
        self.needs_keyframe = video;
    }

    /// The packets since the last forwarded one were held back, not lost: the viewer must
    /// not see their gap (it would take it for loss). Their time still passed, so the
    /// timestamps stay the publisher's.
    pub fn close_gap(&mut self) {
        self.close_gap = true;
    }

    /// Decides on one input packet: `seq` is the publisher's extended sequence number.
    pub fn on_packet(&mut self, seq: u64, ts: u32, keyframe_start: bool, now: Instant) -> Verdict {
        if std::mem::take(&mut self.close_gap) {
            if let Some(b) = self.base.as_mut().filter(|b| seq >= b.in_seq) {
                b.out_seq = self.next_seq;
                b.in_seq = seq;
            }
        }
        if self.needs_keyframe {
            if !keyframe_start {
                return Verdict::WaitingForKeyframe;
            }
            self.needs_keyframe = false;
            self.base = None;
        }
        let base = match self.base {
            Some(b) => b,
            None => {
                // Continue the timeline: the gap in wall-clock time since the last packet
                // we sent, in media clock ticks (at least one tick).
                let elapsed = self
                    .last_at
                    .map(|at| now.saturating_duration_since(at))
                    .unwrap_or_default();
                let ticks = (elapsed.as_secs_f64() * f64::from(self.clock_rate)) as u32;
                let b = Base {
                    in_seq: seq,
                    in_ts: ts,
                    out_seq: self.next_seq,
                    out_ts: self.last_ts.wrapping_add(ticks.max(1)),
                };
                self.base = Some(b);
                b
            }
        };
        if seq < base.in_seq {
            return Verdict::Stale;
        }
        let out_seq = base.out_seq + (seq - base.in_seq);
        let out_ts = base.out_ts.wrapping_add(ts.wrapping_sub(base.in_ts));
        if out_seq + 1 > self.next_seq {
            self.next_seq = out_seq + 1;
            self.last_ts = out_ts;
            self.last_at = Some(now);
        }
        Verdict::Forward(Rewritten {
            seq: out_seq,
            timestamp: out_ts,
        })
    }
}

/// A start timestamp derived from the (random) first sequence number, so streams do not
/// all start at zero.
fn rand_ts(seed: u16) -> u32 {
    u32::from(seed).wrapping_mul(2_654_435_761)
}

/// Coalesces keyframe requests for one layer of a publisher by whether a keyframe is on
/// its way: a request while one is (asked for, none arrived since) is answered by it and
/// sends nothing; one after it arrived goes out at once, unless the last went out less
/// than [`KEYFRAME_MIN_INTERVAL`] ago (then when that ends). A fixed window would make a
/// viewer who arrives just after a request wait out the window, though the keyframe it
/// needs could be asked for at once.
#[derive(Debug, Clone, Default)]
pub struct KeyframeThrottle {
    last_sent: Option<Instant>,
    /// A request went out and no keyframe has arrived since.
    awaiting: bool,
    /// A request waits for the interval to end.
    pending: bool,
}

impl KeyframeThrottle {
    /// Someone wants a keyframe. Returns true when the request should go out now.
    pub fn request(&mut self, now: Instant) -> bool {
        let since = self.last_sent.map(|at| now.saturating_duration_since(at));
        if self.awaiting && since.is_some_and(|s| s < KEYFRAME_WAIT) {
            return false;
        }
        if since.is_some_and(|s| s < KEYFRAME_MIN_INTERVAL) {
            self.pending = true;
            return false;
        }
        self.sent(now);
        true
    }

    /// A keyframe of this layer arrived from the publisher: whoever asked has it.
    pub fn on_keyframe(&mut self) {
        self.awaiting = false;
    }

    /// The request [`request`](Self::request) or [`poll`](Self::poll) said to send could
    /// not go out: nothing is on its way, and the next request may go at once.
    pub fn unsent(&mut self) {
        self.last_sent = None;
        self.awaiting = false;
        self.pending = false;
    }

    /// When a deferred request is due, if one is waiting.
    pub fn due(&self) -> Option<Instant> {
        match (self.pending, self.last_sent) {
            (true, Some(at)) => Some(at + KEYFRAME_MIN_INTERVAL),
            _ => None,
        }
    }

    /// Time passed: returns true when a deferred request should go out now.
    pub fn poll(&mut self, now: Instant) -> bool {
        if self.due().is_some_and(|due| now >= due) {
            self.sent(now);
            return true;
        }
        false
    }

    fn sent(&mut self, now: Instant) {
        self.last_sent = Some(now);
        self.awaiting = true;
        self.pending = false;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fwd(v: Verdict) -> Rewritten {
        match v {
            Verdict::Forward(r) => r,
            other => panic!("expected a forward, got {other:?}"),
        }
    }

    #[test]
    fn video_starts_at_a_keyframe_and_keeps_gaps() {
        let t0 = Instant::now();
        let mut f = TrackForwarder::new(true, 90_000, 1000);
        assert_eq!(
            f.on_packet(50, 9000, false, t0),
            Verdict::WaitingForKeyframe
        );
        let a = fwd(f.on_packet(51, 12000, true, t0));
        assert_eq!(a.seq, 1000);
        let b = fwd(f.on_packet(52, 12000, false, t0));
        assert_eq!((b.seq, b.timestamp), (1001, a.timestamp));
        // 53 lost upstream: the gap stays so the viewer can NACK it.
        let c = fwd(f.on_packet(54, 15000, false, t0));
        assert_eq!(c.seq, 1003);
        assert_eq!(c.timestamp, a.timestamp.wrapping_add(3000));
        // A late retransmission of 53 fills the gap.
        assert_eq!(fwd(f.on_packet(53, 12000, false, t0)).seq, 1002);
        assert_eq!(f.on_packet(40, 0, true, t0), Verdict::Stale);
    }

    #[test]
    fn audio_needs_no_keyframe() {
        let mut f = TrackForwarder::new(false, 48_000, 7);
        assert!(!f.waiting_for_keyframe());
        assert_eq!(fwd(f.on_packet(9, 960, false, Instant::now())).seq, 7);
    }

    #[test]
    fn a_restarted_publisher_stream_continues_the_viewer_timeline() {
        let t0 = Instant::now();
        let mut f = TrackForwarder::new(true, 90_000, 100);
        fwd(f.on_packet(10, 1000, true, t0));
        let last = fwd(f.on_packet(11, 4000, false, t0));
        f.restart(true);
        let t1 = t0 + Duration::from_millis(500);
        assert_eq!(f.on_packet(7, 77, false, t1), Verdict::WaitingForKeyframe);
        let first = fwd(f.on_packet(8, 88, true, t1));
        assert_eq!(first.seq, last.seq + 1);
        // Half a second at 90 kHz later on the viewer's clock.
        assert_eq!(first.timestamp, last.timestamp.wrapping_add(45_000));
    }

    #[test]
    fn a_held_back_run_leaves_no_gap_in_numbers_and_time_runs_on() {
        let t0 = Instant::now();
        let mut f = TrackForwarder::new(false, 48_000, 100);
        let last = fwd(f.on_packet(10, 9600, false, t0));
        // 11..=60 held back (a host's mute), then released.
        f.close_gap();
        let next = fwd(f.on_packet(61, 9600 + 51 * 960, false, t0));
        assert_eq!(next.seq, last.seq + 1);
        assert_eq!(next.timestamp, last.timestamp.wrapping_add(51 * 960));
        // And on from there, gaps upstream kept as usual.
        assert_eq!(
            fwd(f.on_packet(63, 9600 + 53 * 960, false, t0)).seq,
            last.seq + 3
        );
    }

    #[test]
    fn timestamps_wrap() {
        let t0 = Instant::now();
        let mut f = TrackForwarder::new(false, 48_000, 0);
        let a = fwd(f.on_packet(1, u32::MAX - 100, false, t0));
        let b = fwd(f.on_packet(2, 860, false, t0));
        assert_eq!(b.timestamp.wrapping_sub(a.timestamp), 961);
    }

    #[test]
    fn first_sequence_number_keeps_the_rollover_counter_at_zero() {
        let mut f = TrackForwarder::new(false, 48_000, u16::MAX);
        assert!(fwd(f.on_packet(1, 0, false, Instant::now())).seq < 1 << 15);
    }

    #[test]
    fn requests_while_a_keyframe_is_on_its_way_are_answered_by_it() {
        let t0 = Instant::now();
        let ms = |n: u64| t0 + Duration::from_millis(n);
        let mut k = KeyframeThrottle::default();
        assert!(k.request(t0));
        // Viewers arriving while it is on its way: nothing more is asked.
        assert!(!k.request(ms(10)));
        assert!(!k.request(ms(60)));
        assert_eq!(k.due(), None);
        // It arrived; a viewer after it asks again at once.
        k.on_keyframe();
        assert!(k.request(ms(150)));
        assert!(!k.request(ms(160)));
        // One that could not go out is not waited for.
        let mut never = KeyframeThrottle::default();
        assert!(never.request(t0));
        never.unsent();
        assert!(never.request(ms(1)));
        // A request that was lost: asked again once the wait is over.
        assert!(!k.request(ms(150) + KEYFRAME_WAIT - Duration::from_millis(1)));
        assert!(k.request(ms(150) + KEYFRAME_WAIT));
    }

    #[test]
    fn a_join_storm_costs_at_most_one_keyframe_per_interval() {
        let t0 = Instant::now();
        let mut k = KeyframeThrottle::default();
        let mut sent = Vec::new();
        // A viewer every 10 ms for a second; each keyframe arrives 30 ms after its request.
        for i in 0..100u64 {
            let now = t0 + Duration::from_millis(10 * i);
            if sent
                .last()
                .is_some_and(|&at| now >= at + Duration::from_millis(30))
            {
                k.on_keyframe();
            }
            if k.poll(now) || k.request(now) {
                sent.push(now);
            }
        }
        assert!(sent.len() <= 10, "{} requests", sent.len());
        assert!(sent.len() >= 9, "{} requests", sent.len());
        for pair in sent.windows(2) {
            assert!(pair[1] - pair[0] >= KEYFRAME_MIN_INTERVAL, "{sent:?}");
        }
        // A deferred request is due when the interval ends.
        let at = *sent.last().unwrap_or(&t0);
        k.on_keyframe();
        assert!(!k.request(at + Duration::from_millis(40)));
        assert_eq!(k.due(), Some(at + KEYFRAME_MIN_INTERVAL));
        assert!(k.poll(at + KEYFRAME_MIN_INTERVAL));
    }
}
