//! [`Cluster`]: a node's membership, with the tasks that keep it: the registration
//! refreshed every couple of seconds, the held home locks renewed before they run out.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use tokio::sync::broadcast;
use tokio::task::JoinHandle;

use crate::error::ClusterError;
use crate::keys::Keys;
use crate::lease::{Epoch, LeaseClock, LeaseStep, LeaseTiming, LossReason};
use crate::load::{CpuMeter, Load};
use crate::placement::{check_meeting_id, Holder, HomeLease, HomeLocks};
use crate::registry::{NodeId, NodeInfo, Registry};

/// How a node joins: where Redis is, who it is, how long its registration and its locks
/// live. [`ClusterConfig::new`] gives the defaults.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ClusterConfig {
    /// `redis://HOST:PORT[/DB]` (or `rediss://`, `redis+unix://`).
    pub redis_url: String,
    pub node_id: NodeId,
    /// Where clients and other nodes reach this node.
    pub public_url: String,
    /// A registration lives this long unless refreshed (default 6 s): a dead node is
    /// gone from the registry at most this long after its last refresh.
    pub node_ttl: Duration,
    /// How often the registration is refreshed, with the load (default 2 s).
    pub refresh_every: Duration,
    /// The home locks' TTL and renewal period (default 10 s, renewed every 3 s): a dead
    /// home's meetings can be taken over this long after its last renewal.
    pub lease: LeaseTiming,
    /// Longest wait for Redis to connect or answer one command (default 1 s): a renewal
    /// stuck on a dead connection must give up well within the lease.
    pub redis_timeout: Duration,
    pub keys: Keys,
}

impl ClusterConfig {
    pub fn new(
        redis_url: impl Into<String>,
        node_id: NodeId,
        public_url: impl Into<String>,
    ) -> Self {
        Self {
            redis_url: redis_url.into(),
            node_id,
            public_url: public_url.into(),
            node_ttl: Duration::from_secs(6),
            refresh_every: Duration::from_secs(2),
            // 10 s / 3 s is valid by construction (renewed three times within the TTL).
            lease: LeaseTiming::new(Duration::from_secs(10), Duration::from_secs(3))
                .unwrap_or_else(|_| unreachable!("the default lease timing is valid")),
            redis_timeout: Duration::from_secs(1),
            keys: Keys::default(),
        }
    }

    /// A registration TTL of `ttl`, refreshed three times within it.
    pub fn with_node_ttl(mut self, ttl: Duration) -> Self {
        self.node_ttl = ttl;
        self.refresh_every = ttl / 3;
        self
    }

    /// Home locks of `lease`; the Redis timeout is shortened to a third of its TTL if it
    /// was longer, so a stuck renewal gives up in time for another.
    pub fn with_lease(mut self, lease: LeaseTiming) -> Self {
        self.lease = lease;
        self.redis_timeout = self.redis_timeout.min(lease.ttl() / 3);
        self
    }

    pub fn with_keys(mut self, keys: Keys) -> Self {
        self.keys = keys;
        self
    }

    fn check(&self) -> Result<(), ClusterError> {
        self.check_timings()?;
        if self.public_url.trim().is_empty() {
            return Err(ClusterError::BadConfig("the public URL is empty".into()));
        }
        Ok(())
    }

    /// Checks the TTLs and timeouts fit together ([`Cluster::join`] does it too), so that a
    /// caller can refuse bad settings before it does anything else.
    pub fn check_timings(&self) -> Result<(), ClusterError> {
        if self.node_ttl < Duration::from_millis(300) {
            return Err(ClusterError::BadConfig(format!(
                "a node TTL of {:?} is shorter than 300 ms",
                self.node_ttl
            )));
        }
        if self.node_ttl > Duration::from_secs(24 * 60 * 60) {
            return Err(ClusterError::BadConfig(format!(
                "a node TTL of {:?} is longer than a day",
                self.node_ttl
            )));
        }
        if self.refresh_every.is_zero() || self.refresh_every * 2 > self.node_ttl {
            return Err(ClusterError::BadConfig(format!(
                "a registration refreshed every {:?} must be refreshed at least twice within its TTL of {:?}",
                self.refresh_every, self.node_ttl
            )));
        }
        if self.redis_timeout.is_zero() || self.redis_timeout * 2 > self.lease.ttl() {
            return Err(ClusterError::BadConfig(format!(
                "a Redis timeout of {:?} does not fit twice in the lease TTL of {:?}",
                self.redis_timeout,
                self.lease.ttl()
            )));
        }
        Ok(())
    }
}

/// What a node hears about its own membership.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClusterEvent {
    /// A meeting's home lock is no longer ours: stop running the meeting here (its
    /// participants reconnect and reach the new home).
    HomeLost {
        meeting: String,
        epoch: Epoch,
        reason: LossReason,
    },
    /// Redis had lost a held lock (it restarted empty) and we took it again, with an epoch
    /// above the old one. The meeting stays here.
    HomeRetaken {
        meeting: String,
        old: Epoch,
        new: Epoch,
    },
}

/// A connection to Redis that gives up on a command after `timeout` and reconnects by
/// itself (after Redis restarts, say). Fails at once on a malformed URL, and when Redis
/// does not answer within the timeout.
pub async fn connect(url: &str, timeout: Duration) -> Result<ConnectionManager, ClusterError> {
    // The URL may carry a password: it is not repeated in errors.
    let client = redis::Client::open(url)
        .map_err(|e| ClusterError::BadConfig(format!("the Redis URL is not usable: {e}")))?;
    let config = ConnectionManagerConfig::new()
        .set_connection_timeout(Some(timeout))
        .set_response_timeout(Some(timeout))
        .set_number_of_retries(1)
        .set_max_delay(Duration::from_millis(500));
    match tokio::time::timeout(
        timeout * 3,
        client.get_connection_manager_with_config(config),
    )
    .await
    {
        Ok(conn) => Ok(conn?),
        Err(_) => Err(ClusterError::Unavailable(redis::RedisError::from((
            redis::ErrorKind::Io,
            "no answer from Redis",
            format!("within {:?}", timeout * 3),
        )))),
    }
}

/// Checks that `url` is a usable Redis URL and that Redis answers PING within `timeout`,
/// before anything else is done (a server checks this before it touches its data dir).
pub async fn check_reachable(url: &str, timeout: Duration) -> Result<(), ClusterError> {
    let mut conn = connect(url, timeout).await?;
    let pong: String = redis::cmd("PING").query_async(&mut conn).await?;
    if pong != "PONG" {
        return Err(ClusterError::BadReply(format!("PING answered {pong:?}")));
    }
    Ok(())
}

struct Held {
    /// The lock as it is now (a retake after Redis lost it changes the epoch).
    lease: HomeLease,
    /// The lease [`Cluster::take_home`] handed out, which the caller releases with: it
    /// names this holding through retakes.
    origin: HomeLease,
    clock: LeaseClock,
}

struct Shared {
    node_id: NodeId,
    instance: String,
    public_url: String,
    started_at_ms: u64,
    refresh_every: Duration,
    registry: Registry,
    locks: HomeLocks,
    held: Mutex<HashMap<String, Held>>,
    /// Meetings whose take is under way: one take per meeting at a time in this process.
    taking: Mutex<std::collections::HashSet<String>>,
    events: broadcast::Sender<ClusterEvent>,
    connections: Box<dyn Fn() -> u64 + Send + Sync>,
    cpu: Mutex<CpuMeter>,
}

impl Shared {
    fn held(&self) -> MutexGuard<'_, HashMap<String, Held>> {
        self.held.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn info(&self) -> NodeInfo {
        let cpu = self.cpu.lock().unwrap_or_else(|p| p.into_inner()).sample();
        NodeInfo {
            node_id: self.node_id.clone(),
            instance: self.instance.clone(),
            public_url: self.public_url.clone(),
            load: Load {
                meetings: self.held().len() as u64,
                connections: (self.connections)(),
                cpu,
            },
            started_at_ms: self.started_at_ms,
            updated_at_ms: now_ms(),
        }
    }

    fn lost(&self, meeting: &str, epoch: Epoch, reason: LossReason) {
        tracing::warn!(meeting, %epoch, %reason, "stepping down: the meeting's home lock is lost");
        let _ = self.events.send(ClusterEvent::HomeLost {
            meeting: meeting.to_owned(),
            epoch,
            reason,
        });
    }
}

/// A take under way, for one meeting; ends (even when the take is dropped half-way) when
/// this is dropped.
struct Taking<'a> {
    shared: &'a Shared,
    meeting: String,
}

impl<'a> Taking<'a> {
    fn start(shared: &'a Shared, meeting: &str) -> Option<Self> {
        let mut taking = shared.taking.lock().unwrap_or_else(|p| p.into_inner());
        taking.insert(meeting.to_owned()).then(|| Self {
            shared,
            meeting: meeting.to_owned(),
        })
    }
}

impl Drop for Taking<'_> {
    fn drop(&mut self) {
        let mut taking = self.shared.taking.lock().unwrap_or_else(|p| p.into_inner());
        taking.remove(&self.meeting);
    }
}

/// The background tasks, stopped when the last [`Cluster`] handle goes (or on
/// [`Cluster::leave`]). Dropping without `leave` is what a crash looks like to the others:
/// the registration and the locks run out by their TTLs.
struct Tasks(Mutex<Vec<JoinHandle<()>>>);

impl Tasks {
    fn stop(&self) {
        for task in self.0.lock().unwrap_or_else(|p| p.into_inner()).drain(..) {
            task.abort();
        }
    }
}

impl Drop for Tasks {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A node's membership of the cluster. Cheap to clone.
#[derive(Clone)]
pub struct Cluster {
    shared: Arc<Shared>,
    tasks: Arc<Tasks>,
}

impl fmt::Debug for Cluster {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Cluster")
            .field("node_id", &self.shared.node_id)
            .field("instance", &self.shared.instance)
            .finish_non_exhaustive()
    }
}

impl Cluster {
    /// Connects to Redis, registers this node (waiting up to one registration TTL for a
    /// predecessor with the same id to run out) and starts the refresh and renewal tasks.
    /// `connections` tells the open connections, for the load.
    pub async fn join(
        config: ClusterConfig,
        connections: impl Fn() -> u64 + Send + Sync + 'static,
    ) -> Result<Self, ClusterError> {
        config.check()?;
        let conn = connect(&config.redis_url, config.redis_timeout).await?;
        let instance = new_instance();
        let shared = Arc::new(Shared {
            node_id: config.node_id.clone(),
            instance: instance.clone(),
            public_url: config.public_url.clone(),
            started_at_ms: now_ms(),
            refresh_every: config.refresh_every,
            registry: Registry::new(conn.clone(), config.keys.clone(), config.node_ttl),
            locks: HomeLocks::new(
                conn,
                config.keys.clone(),
                config.lease,
                config.node_id.clone(),
                instance,
            ),
            held: Mutex::default(),
            taking: Mutex::default(),
            events: broadcast::channel(256).0,
            connections: Box::new(connections),
            cpu: Mutex::new(CpuMeter::new()),
        });
        // A node killed a moment ago and restarted under its id finds its old registration
        // still there until its TTL ends; a second live process with the id never lets go.
        let deadline = Instant::now() + config.node_ttl + config.refresh_every;
        loop {
            match shared.registry.register(&shared.info()).await {
                Ok(()) => break,
                Err(ClusterError::NodeIdInUse(_)) if Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                Err(e) => return Err(e),
            }
        }
        tracing::info!(node = %shared.node_id, instance = %shared.instance, "joined the cluster");
        let tasks = vec![
            tokio::spawn(refresh_registration(shared.clone())),
            tokio::spawn(renew_leases(shared.clone(), config.lease)),
        ];
        Ok(Self {
            shared,
            tasks: Arc::new(Tasks(Mutex::new(tasks))),
        })
    }

    pub fn node_id(&self) -> &NodeId {
        &self.shared.node_id
    }

    /// This process's instance token (in its registration and lock values).
    pub fn instance(&self) -> &str {
        &self.shared.instance
    }

    /// Lost and retaken homes, from now on.
    pub fn events(&self) -> broadcast::Receiver<ClusterEvent> {
        self.shared.events.subscribe()
    }

    /// Every live node.
    pub async fn live_nodes(&self) -> Result<Vec<NodeInfo>, ClusterError> {
        self.shared.registry.list().await
    }

    /// Who holds the meeting's home now, if anyone.
    pub async fn home_of(&self, meeting: &str) -> Result<Option<Holder>, ClusterError> {
        self.shared.locks.holder(meeting).await
    }

    /// Our epoch for the meeting while its home is here and the lease is valid by our
    /// clock; `None` otherwise.
    pub fn home_epoch(&self, meeting: &str) -> Option<Epoch> {
        let now = Instant::now();
        self.shared
            .held()
            .get(meeting)
            .filter(|held| !held.clock.expired(now))
            .map(|held| held.lease.epoch())
    }

    /// How many meetings have their home here.
    pub fn homes(&self) -> usize {
        self.shared.held().len()
    }

    /// Takes the meeting's home (once; see [`Self::take_home_within`] to wait), renewed
    /// from now on until released or lost. One holder at a time even inside this process:
    /// a meeting whose home is held here already is [`ClusterError::HeldElsewhere`] too
    /// (a room ending while the next one starts waits for the first to let go).
    pub async fn take_home(&self, meeting: &str) -> Result<HomeLease, ClusterError> {
        check_meeting_id(meeting)?;
        let here = |epoch| ClusterError::HeldElsewhere {
            meeting: meeting.to_owned(),
            holder: self.shared.node_id.to_string(),
            epoch,
        };
        if let Some(held) = self.shared.held().get(meeting) {
            return Err(here(held.lease.epoch()));
        }
        let Some(_taking) = Taking::start(&self.shared, meeting) else {
            return Err(here(Epoch(0)));
        };
        let sent = Instant::now();
        let lease = self.shared.locks.take(meeting, Epoch(0)).await?;
        let clock = LeaseClock::taken(self.shared.locks.timing(), sent);
        {
            let mut held = self.shared.held();
            if let Some(first) = held.get(meeting) {
                return Err(here(first.lease.epoch()));
            }
            held.insert(
                meeting.to_owned(),
                Held {
                    lease: lease.clone(),
                    origin: lease.clone(),
                    clock,
                },
            );
        }
        tracing::info!(meeting, epoch = %lease.epoch(), "took the meeting's home");
        Ok(lease)
    }

    /// Takes the meeting's home, trying again while another holds it or Redis is away,
    /// for up to `wait` (a home that died runs out within the lease TTL).
    pub async fn take_home_within(
        &self,
        meeting: &str,
        wait: Duration,
    ) -> Result<HomeLease, ClusterError> {
        let deadline = Instant::now() + wait;
        loop {
            match self.take_home(meeting).await {
                Err(e) if e.is_transient() && Instant::now() < deadline => {
                    tracing::debug!(meeting, error = %e, "the meeting's home is not free yet");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                other => return other,
            }
        }
    }

    /// Gives up the home `lease` (as [`Self::take_home`] returned it) names, with the epoch
    /// it has now if it was retaken since (compare-and-delete: a lock that has become
    /// someone else's stays). Only that holding: a newer one of the same meeting, taken
    /// after it was lost, is kept. `false` when the lock was not ours any more.
    pub async fn release_home(&self, lease: &HomeLease) -> Result<bool, ClusterError> {
        let current = {
            let mut held = self.shared.held();
            if held.get(&lease.meeting).is_some_and(|h| h.origin == *lease) {
                held.remove(&lease.meeting).map(|h| h.lease)
            } else {
                None
            }
        };
        // Not held any more (lost): its own value may still be in Redis (we stepped down
        // by our clock while Redis was away), and only that is deleted.
        let released = self
            .shared
            .locks
            .release(current.as_ref().unwrap_or(lease))
            .await?;
        tracing::info!(meeting = %lease.meeting, epoch = %lease.epoch(), released, "gave the meeting's home up");
        Ok(released)
    }

    /// The home locks' TTL and renewal period.
    pub fn lease_timing(&self) -> LeaseTiming {
        self.shared.locks.timing()
    }

    /// Leaves gracefully: stops the tasks, releases every home and deregisters. Later
    /// calls do nothing; other handles stop renewing.
    pub async fn leave(&self) -> Result<(), ClusterError> {
        self.tasks.stop();
        let held: Vec<Held> = self.shared.held().drain().map(|(_, held)| held).collect();
        let mut failed = None;
        for held in held {
            if let Err(e) = self.shared.locks.release(&held.lease).await {
                tracing::warn!(meeting = %held.lease.meeting, error = %e, "could not release a home lock; it runs out by its TTL");
                failed = Some(e);
            }
        }
        match self
            .shared
            .registry
            .deregister(&self.shared.node_id, &self.shared.instance)
            .await
        {
            Ok(_) => {}
            Err(e) => failed = Some(e),
        }
        tracing::info!(node = %self.shared.node_id, "left the cluster");
        failed.map_or(Ok(()), Err)
    }
}

/// Rewrites the registration with the load every period. A failure is logged and retried
/// at the next period; the registration is whole every time, so one write after Redis
/// restarted empty brings the node back.
async fn refresh_registration(shared: Arc<Shared>) {
    let mut failing = false;
    loop {
        tokio::time::sleep(shared.refresh_every).await;
        match shared.registry.register(&shared.info()).await {
            Ok(()) if failing => {
                failing = false;
                tracing::info!(node = %shared.node_id, "registered again");
            }
            Ok(()) => {}
            Err(e) => {
                if !failing {
                    tracing::warn!(node = %shared.node_id, error = %e, code = e.code(), "could not refresh the registration");
                }
                failing = true;
            }
        }
    }
}

/// What the renewal task does with one lease at one tick.
enum Due {
    Expired(HomeLease),
    Renew(HomeLease),
}

/// Renews each held lease when due and steps down from those our clock says ran out.
/// A lease whose renewal finds the lock gone is retaken above its epoch; one found held by
/// another is lost.
async fn renew_leases(shared: Arc<Shared>, timing: LeaseTiming) {
    let tick = (timing.renew_every() / 4).max(Duration::from_millis(20));
    loop {
        tokio::time::sleep(tick).await;
        let now = Instant::now();
        let due: Vec<Due> = {
            let mut held = shared.held();
            let mut due = Vec::new();
            held.retain(|_, h| {
                if h.clock.expired(now) {
                    due.push(Due::Expired(h.lease.clone()));
                    return false;
                }
                if h.clock.renewal_due(now) {
                    h.clock.sending(now);
                    due.push(Due::Renew(h.lease.clone()));
                }
                true
            });
            due
        };
        for item in due {
            match item {
                Due::Expired(lease) => {
                    shared.lost(&lease.meeting, lease.epoch(), LossReason::Expired);
                }
                // Each renewal on its own task: one that hangs (up to the Redis timeout)
                // delays neither the others nor the next tick's expiry checks.
                Due::Renew(lease) => {
                    tokio::spawn(renew_one(shared.clone(), lease, now));
                }
            }
        }
    }
}

async fn renew_one(shared: Arc<Shared>, lease: HomeLease, sent: Instant) {
    let reply = shared.locks.renew(&lease).await;
    let step = {
        let mut held = shared.held();
        // Released (or replaced) while the renewal was under way: nothing to do.
        let Some(h) = held.get_mut(&lease.meeting).filter(|h| h.lease == lease) else {
            return;
        };
        let step = match reply {
            Ok(reply) => h.clock.answered(reply, sent),
            Err(e) => {
                tracing::warn!(meeting = %lease.meeting, error = %e, "a home lock renewal got no answer");
                h.clock.unanswered(Instant::now())
            }
        };
        if matches!(step, LeaseStep::StepDown(_)) {
            held.remove(&lease.meeting);
        }
        step
    };
    match step {
        LeaseStep::Keep => {}
        LeaseStep::StepDown(reason) => shared.lost(&lease.meeting, lease.epoch(), reason),
        LeaseStep::Retake => retake(&shared, lease).await,
    }
}

/// Redis has no lock for a meeting we hold (it restarted empty): take it again with an
/// epoch above ours. Someone else got there first: it is theirs.
async fn retake(shared: &Shared, lease: HomeLease) {
    let sent = Instant::now();
    let result = shared.locks.take(&lease.meeting, lease.epoch()).await;
    let mut held = shared.held();
    let Some(origin) = held
        .get(&lease.meeting)
        .filter(|h| h.lease == lease)
        .map(|h| h.origin.clone())
    else {
        return; // released meanwhile; a lock just taken runs out by its TTL
    };
    match result {
        Ok(new) => {
            tracing::info!(meeting = %lease.meeting, old = %lease.epoch(), new = %new.epoch(), "took the meeting's home again after Redis lost it");
            let event = ClusterEvent::HomeRetaken {
                meeting: lease.meeting.clone(),
                old: lease.epoch(),
                new: new.epoch(),
            };
            held.insert(
                lease.meeting.clone(),
                Held {
                    lease: new,
                    origin,
                    clock: LeaseClock::taken(shared.locks.timing(), sent),
                },
            );
            drop(held);
            let _ = shared.events.send(event);
        }
        Err(ClusterError::HeldElsewhere { holder, epoch, .. }) => {
            held.remove(&lease.meeting);
            drop(held);
            shared.lost(
                &lease.meeting,
                lease.epoch(),
                LossReason::TakenBy(format!("{holder} (epoch {epoch})")),
            );
        }
        // Still ours by the clock; the next renewal tries again, or the clock ends it.
        Err(e) => {
            drop(held);
            tracing::warn!(meeting = %lease.meeting, error = %e, "could not take the meeting's home again yet");
        }
    }
}

fn new_instance() -> String {
    use rand::Rng;
    format!("{:016x}", rand::rng().random::<u64>())
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}
