//! What one source may hold and try: connection caps (all sources together and each one
//! alone) and the back-off on failed admin keys.
//!
//! A *source* is an IPv4 address or an IPv6 /64: one IPv6 host usually has a whole /64 to
//! pick addresses from, so counting single IPv6 addresses would count nothing.
//!
//! Both parts are plain state behind a mutex, driven by the caller's clock, so their rules
//! are unit-tested without sockets.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// Who a connection or a request counts against.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Source {
    V4([u8; 4]),
    /// The first 64 bits of an IPv6 address.
    V6Prefix([u8; 8]),
}

impl Source {
    pub fn of(ip: IpAddr) -> Self {
        match ip {
            IpAddr::V4(ip) => Source::V4(ip.octets()),
            // An IPv4 client on a dual-stack socket arrives as ::ffff:a.b.c.d.
            IpAddr::V6(ip) => match ip.to_ipv4_mapped() {
                Some(v4) => Source::V4(v4.octets()),
                None => {
                    let mut prefix = [0u8; 8];
                    prefix.copy_from_slice(&ip.octets()[..8]);
                    Source::V6Prefix(prefix)
                }
            },
        }
    }
}

/// Why a connection was not admitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, strum::IntoStaticStr, strum::Display)]
#[strum(serialize_all = "snake_case")]
pub enum Refusal {
    /// The server holds as many connections as it will.
    ServerFull,
    /// This source holds as many connections as one source may.
    SourceFull,
    /// This source opens connections faster than one source may.
    SourceTooFast,
}

impl Refusal {
    pub fn as_str(self) -> &'static str {
        self.into()
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // The guarded maps stay consistent across a panic elsewhere (each update is one
    // statement), so a poisoned lock is still usable.
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Loopback, also as an IPv4-mapped IPv6 address (`::ffff:127.0.0.1`).
fn is_loopback(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V6(v6) => {
            v6.is_loopback() || v6.to_ipv4_mapped().is_some_and(|v4| v4.is_loopback())
        }
        IpAddr::V4(v4) => v4.is_loopback(),
    }
}

/// Open HTTP connections (a WebSocket counts until it closes), against two caps, and the
/// rate at which each source opens them.
///
/// The rate matters on its own: a client that connects and drops in a loop never holds
/// many connections, yet each connection costs a TLS handshake, a token check and a
/// database read. Each source may open [`ConnectionLimits::RATE_BURST`] at once, then
/// [`ConnectionLimits::RATE_PER_SEC`] a second — a whole office behind one NAT joining at
/// the meeting's start, or reconnecting after a restart, fits in it.
#[derive(Debug)]
pub struct ConnectionLimits {
    max_total: usize,
    max_per_source: usize,
    limit_loopback: bool,
    total: AtomicUsize,
    per_source: Mutex<HashMap<Source, SourceState>>,
}

/// A token bucket: `burst` at once, refilled at `per_sec`. The server's rates on what
/// clients send (connections per source here, frames and bytes per signaling connection in
/// `signal.rs`) are all this one shape. (The room's broadcast budget is the room's own, in
/// whole tokens on the room's clock.)
#[derive(Debug, Clone, Copy)]
pub(crate) struct TokenBucket {
    tokens: f64,
    burst: f64,
    per_sec: f64,
    last: Instant,
}

impl TokenBucket {
    /// A full bucket.
    pub(crate) fn new(burst: f64, per_sec: f64, now: Instant) -> Self {
        Self {
            tokens: burst,
            burst,
            per_sec,
            last: now,
        }
    }

    /// Credits what was earned since the last look.
    pub(crate) fn refill(&mut self, now: Instant) {
        let earned = now.saturating_duration_since(self.last).as_secs_f64() * self.per_sec;
        self.tokens = (self.tokens + earned).min(self.burst);
        self.last = now;
    }

    /// Would `cost` pass? A cost above the bucket's size passes when the bucket is full
    /// (then overdraws it), so nothing is refused for its size alone.
    pub(crate) fn allows(&self, cost: f64) -> bool {
        self.tokens >= cost.min(self.burst)
    }

    pub(crate) fn spend(&mut self, cost: f64) {
        self.tokens -= cost;
    }

    /// Full as of `now`: as if it had never been used.
    fn is_full_at(&self, now: Instant) -> bool {
        let mut refilled = *self;
        refilled.refill(now);
        refilled.tokens >= refilled.burst
    }
}

/// One source's open connections and its bucket of new ones.
#[derive(Debug, Clone, Copy)]
struct SourceState {
    open: usize,
    opening: TokenBucket,
}

impl SourceState {
    fn new(now: Instant) -> Self {
        Self {
            open: 0,
            opening: TokenBucket::new(
                ConnectionLimits::RATE_BURST,
                ConnectionLimits::RATE_PER_SEC,
                now,
            ),
        }
    }

    /// Nothing to remember: no connection open and a full bucket.
    fn idle(&self, now: Instant) -> bool {
        self.open == 0 && self.opening.is_full_at(now)
    }
}

impl ConnectionLimits {
    /// `limit_loopback: false` leaves connections from this machine (the desktop app,
    /// local bots and load tests) out of the per-source cap; they still count in the total.
    pub fn new(max_total: usize, max_per_source: usize, limit_loopback: bool) -> Arc<Self> {
        Arc::new(Self {
            max_total,
            max_per_source,
            limit_loopback,
            total: AtomicUsize::new(0),
            per_source: Mutex::new(HashMap::new()),
        })
    }

    /// New connections one source may open at once.
    pub const RATE_BURST: f64 = 128.0;
    /// New connections one source may open per second, past the burst.
    pub const RATE_PER_SEC: f64 = 32.0;
    /// Sources remembered before the idle ones are forgotten.
    const PRUNE_AT: usize = 4096;

    pub fn max_total(&self) -> usize {
        self.max_total
    }

    /// Open connections now.
    pub fn open(&self) -> usize {
        self.total.load(Ordering::Relaxed)
    }

    /// Counts a new connection from `ip`, or says why not. The permit gives the place back
    /// when dropped.
    pub fn admit(self: &Arc<Self>, ip: IpAddr) -> Result<ConnectionPermit, Refusal> {
        self.admit_at(ip, Instant::now())
    }

    /// [`Self::admit`] at `now`.
    pub fn admit_at(
        self: &Arc<Self>,
        ip: IpAddr,
        now: Instant,
    ) -> Result<ConnectionPermit, Refusal> {
        let per_source = (self.limit_loopback || !is_loopback(ip)).then(|| Source::of(ip));
        let mut sources = lock(&self.per_source);
        if self.total.load(Ordering::Relaxed) >= self.max_total {
            return Err(Refusal::ServerFull);
        }
        if let Some(source) = per_source {
            if sources.len() >= Self::PRUNE_AT && !sources.contains_key(&source) {
                sources.retain(|_, state| !state.idle(now));
            }
            let state = sources
                .entry(source)
                .or_insert_with(|| SourceState::new(now));
            state.opening.refill(now);
            if state.open >= self.max_per_source {
                return Err(Refusal::SourceFull);
            }
            if !state.opening.allows(1.0) {
                return Err(Refusal::SourceTooFast);
            }
            state.opening.spend(1.0);
            state.open += 1;
        }
        self.total.fetch_add(1, Ordering::Relaxed);
        Ok(ConnectionPermit {
            limits: self.clone(),
            source: per_source,
        })
    }
}

/// One admitted connection's place.
#[derive(Debug)]
pub struct ConnectionPermit {
    limits: Arc<ConnectionLimits>,
    source: Option<Source>,
}

impl Drop for ConnectionPermit {
    fn drop(&mut self) {
        let mut sources = lock(&self.limits.per_source);
        if let Some(source) = self.source {
            // The entry stays while its bucket refills: forgetting a source as soon as its
            // last connection closed would let connect-and-drop loops past the rate.
            if let Some(state) = sources.get_mut(&source) {
                state.open = state.open.saturating_sub(1);
            }
        }
        self.limits.total.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Failed admin keys from one source buy it a wait: the first [`AdminBackoff::FREE`]
/// failures cost nothing (a typo), then each failure doubles the wait, from 1 s up to
/// [`AdminBackoff::MAX_WAIT`]. While a source waits, its admin requests are answered 429
/// without looking at the key, so guessing runs at a few tries an hour instead of
/// thousands a second. A right key clears the source's record.
#[derive(Debug)]
pub struct AdminBackoff {
    sources: Mutex<HashMap<Source, Failures>>,
}

#[derive(Debug, Clone, Copy)]
struct Failures {
    count: u32,
    last: Instant,
    wait_until: Option<Instant>,
}

impl Default for AdminBackoff {
    fn default() -> Self {
        Self::new()
    }
}

impl AdminBackoff {
    /// Failures from one source before it has to wait.
    pub const FREE: u32 = 5;
    /// The longest wait.
    pub const MAX_WAIT: Duration = Duration::from_secs(15 * 60);
    /// A source's record is forgotten this long after its last failure.
    pub const FORGET_AFTER: Duration = Duration::from_secs(60 * 60);
    /// Sources remembered at most; past it the quietest are forgotten first.
    pub const MAX_SOURCES: usize = 16 * 1024;

    pub fn new() -> Self {
        Self {
            sources: Mutex::new(HashMap::new()),
        }
    }

    /// `Err(wait)` while `source` must wait before its next try.
    pub fn check(&self, source: Source, now: Instant) -> Result<(), Duration> {
        let sources = lock(&self.sources);
        match sources.get(&source).and_then(|f| f.wait_until) {
            Some(until) if until > now => Err(until - now),
            _ => Ok(()),
        }
    }

    /// Records a wrong or missing key; returns the wait it now has, if any.
    pub fn failed(&self, source: Source, now: Instant) -> Option<Duration> {
        let mut sources = lock(&self.sources);
        if sources.len() >= Self::MAX_SOURCES && !sources.contains_key(&source) {
            sources.retain(|_, f| now.saturating_duration_since(f.last) < Self::FORGET_AFTER);
            if sources.len() >= Self::MAX_SOURCES {
                // Many sources failing at once: forget the one quiet the longest, which
                // loses the least (its wait has most likely run out).
                if let Some(oldest) = sources.iter().min_by_key(|(_, f)| f.last).map(|(s, _)| *s) {
                    sources.remove(&oldest);
                }
            }
        }
        let entry = sources.entry(source).or_insert(Failures {
            count: 0,
            last: now,
            wait_until: None,
        });
        if now.saturating_duration_since(entry.last) >= Self::FORGET_AFTER {
            entry.count = 0;
        }
        entry.count = entry.count.saturating_add(1);
        entry.last = now;
        let wait = Self::wait_after(entry.count);
        entry.wait_until = wait.map(|w| now + w);
        wait
    }

    /// A right key: the source starts afresh.
    pub fn succeeded(&self, source: Source) {
        lock(&self.sources).remove(&source);
    }

    /// The wait after `count` failures in a row.
    fn wait_after(count: u32) -> Option<Duration> {
        let over = count.checked_sub(Self::FREE)?;
        let secs = 1u64.checked_shl(over.min(20)).unwrap_or(u64::MAX);
        Some(Duration::from_secs(secs).min(Self::MAX_WAIT))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{Ipv4Addr, Ipv6Addr};

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn sources_are_v4_addresses_and_v6_prefixes() {
        assert_eq!(
            Source::of(ip("10.0.0.1")),
            Source::of(ip("::ffff:10.0.0.1"))
        );
        assert_ne!(Source::of(ip("10.0.0.1")), Source::of(ip("10.0.0.2")));
        assert_eq!(
            Source::of(ip("2001:db8:1:2::1")),
            Source::of(ip("2001:db8:1:2:ffff::9"))
        );
        assert_ne!(
            Source::of(ip("2001:db8:1:2::1")),
            Source::of(ip("2001:db8:1:3::1"))
        );
    }

    #[test]
    fn caps_hold_and_places_come_back() {
        let limits = ConnectionLimits::new(3, 2, true);
        let a = ip("10.0.0.1");
        let b = ip("10.0.0.2");
        let a1 = limits.admit(a).unwrap();
        let _a2 = limits.admit(a).unwrap();
        assert_eq!(limits.admit(a).unwrap_err(), Refusal::SourceFull);
        let _b1 = limits.admit(b).unwrap();
        assert_eq!(limits.admit(b).unwrap_err(), Refusal::ServerFull);
        assert_eq!(limits.open(), 3);
        drop(a1);
        assert_eq!(limits.open(), 2);
        let _a3 = limits.admit(a).unwrap();
        assert_eq!(
            limits.admit(ip("10.0.0.3")).unwrap_err(),
            Refusal::ServerFull
        );
    }

    #[test]
    fn a_source_opening_connections_too_fast_is_slowed_down() {
        let limits = ConnectionLimits::new(10_000, 10_000, true);
        let a = ip("10.0.0.1");
        let t0 = Instant::now();
        let burst = ConnectionLimits::RATE_BURST as usize;
        // Connect and drop in a loop: no connection is held, yet the rate catches it.
        for _ in 0..burst {
            drop(limits.admit_at(a, t0).unwrap());
        }
        assert_eq!(limits.admit_at(a, t0).unwrap_err(), Refusal::SourceTooFast);
        assert!(
            limits.admit_at(ip("10.0.0.2"), t0).is_ok(),
            "others are not slowed"
        );
        // A token comes back every 1/RATE_PER_SEC s.
        let next = t0 + Duration::from_secs_f64(1.0 / ConnectionLimits::RATE_PER_SEC);
        drop(limits.admit_at(a, next).unwrap());
        assert_eq!(
            limits.admit_at(a, next).unwrap_err(),
            Refusal::SourceTooFast
        );
        // Loopback is not slowed unless asked.
        let free = ConnectionLimits::new(10_000, 10_000, false);
        for _ in 0..burst * 2 {
            drop(free.admit_at(Ipv4Addr::LOCALHOST.into(), t0).unwrap());
        }
    }

    #[test]
    fn idle_sources_are_forgotten_and_busy_ones_kept() {
        let limits = ConnectionLimits::new(100_000, 10, true);
        let t0 = Instant::now();
        let held = limits.admit_at(ip("10.9.9.9"), t0).unwrap();
        for i in 0..ConnectionLimits::PRUNE_AT as u32 + 10 {
            let addr = IpAddr::V4(Ipv4Addr::from(0x0b00_0000 + i));
            drop(limits.admit_at(addr, t0).unwrap());
        }
        // Much later, every bucket is full again: a newcomer prunes the idle ones.
        let later = t0 + Duration::from_secs(60);
        drop(limits.admit_at(ip("12.0.0.1"), later).unwrap());
        let sources = lock(&limits.per_source);
        assert!(sources.len() <= 2, "{} sources remembered", sources.len());
        assert!(
            sources.contains_key(&Source::of(ip("10.9.9.9"))),
            "held one kept"
        );
        drop(sources);
        drop(held);
    }

    #[test]
    fn loopback_is_out_of_the_per_source_cap_unless_asked() {
        let free = ConnectionLimits::new(10, 1, false);
        let held: Vec<_> = (0..5)
            .map(|_| free.admit(Ipv4Addr::LOCALHOST.into()).unwrap())
            .collect();
        let _v6 = free.admit(Ipv6Addr::LOCALHOST.into()).unwrap();
        let _mapped = free.admit(ip("::ffff:127.0.0.1")).unwrap();
        assert_eq!(free.open(), 7);
        drop(held);
        let strict = ConnectionLimits::new(10, 1, true);
        let _one = strict.admit(Ipv4Addr::LOCALHOST.into()).unwrap();
        assert_eq!(
            strict.admit(Ipv4Addr::LOCALHOST.into()).unwrap_err(),
            Refusal::SourceFull
        );
    }

    #[test]
    fn admin_failures_back_off_exponentially_and_a_right_key_clears() {
        let guard = AdminBackoff::new();
        let s = Source::of(ip("10.0.0.1"));
        let other = Source::of(ip("10.0.0.2"));
        let t0 = Instant::now();
        for _ in 0..AdminBackoff::FREE - 1 {
            assert_eq!(guard.failed(s, t0), None);
            assert!(guard.check(s, t0).is_ok());
        }
        assert_eq!(guard.failed(s, t0), Some(Duration::from_secs(1)));
        assert_eq!(guard.check(s, t0), Err(Duration::from_secs(1)));
        assert!(guard.check(other, t0).is_ok(), "another source is not held");
        let t1 = t0 + Duration::from_secs(1);
        assert!(guard.check(s, t1).is_ok());
        assert_eq!(guard.failed(s, t1), Some(Duration::from_secs(2)));
        let t2 = t1 + Duration::from_secs(2);
        assert_eq!(guard.failed(s, t2), Some(Duration::from_secs(4)));
        // Doubling stops at the ceiling.
        let mut now = t2;
        for _ in 0..40 {
            now += AdminBackoff::MAX_WAIT;
            guard.failed(s, now);
        }
        assert_eq!(guard.check(s, now), Err(AdminBackoff::MAX_WAIT));
        guard.succeeded(s);
        assert!(guard.check(s, now).is_ok());
        assert_eq!(guard.failed(s, now), None);
    }

    #[test]
    fn admin_records_are_bounded() {
        let guard = AdminBackoff::new();
        let t0 = Instant::now();
        for i in 0..AdminBackoff::MAX_SOURCES as u32 + 10 {
            let source = Source::V4(i.to_be_bytes());
            guard.failed(source, t0 + Duration::from_millis(u64::from(i)));
        }
        assert!(lock(&guard.sources).len() <= AdminBackoff::MAX_SOURCES);
    }
}
