//! # onstage-cluster — an Onstage node's membership of a cluster on Redis
//!
//! Several `onstage serve` nodes share one Redis. Through it each node
//!
//! - **registers itself** ([`registry`]): a key per node holding its id, public URL and load
//!   (meetings, connections, CPU), written with a TTL and refreshed every couple of seconds
//!   by a task, so a node that dies vanishes on its own when the TTL runs out;
//! - **holds the home lock** of each live meeting it runs ([`placement`]): one key per
//!   meeting naming the holder and a fencing epoch. It is taken with `SET NX PX` (the epoch
//!   from `INCR` on the meeting's counter), renewed only while it is still ours (a Lua
//!   compare-and-`PEXPIRE`) and released by compare-and-delete, so a node never removes a
//!   lock another holds. A renewal that finds the lock gone to someone else, or that could
//!   not be confirmed before the lease ran out by our own clock, means the meeting is no
//!   longer ours: the node steps down ([`ClusterEvent::HomeLost`]).
//!
//! The decisions (when a renewal is due, when a lease counts as lost by the clock, what a
//! renewal's answer means, which epoch wins) are plain code in [`lease`], tested without
//! Redis; the Redis I/O is in [`registry`] and [`placement`], and [`Cluster`] runs both
//! with their background tasks.
//!
//! Nothing here knows about rooms or sockets: the server tells it which meetings it opens
//! and closes, and hears back when one is lost.

pub mod cluster;
pub mod error;
pub mod keys;
pub mod lease;
pub mod load;
pub mod placement;
pub mod registry;
#[cfg(feature = "test-support")]
pub mod testing;

/// The Redis client this crate speaks through, for callers (tests, tools) that look at the
/// same keys.
pub use redis;

pub use cluster::{Cluster, ClusterConfig, ClusterEvent};
pub use error::ClusterError;
pub use lease::{Epoch, EpochFence, LeaseClock, LeaseStep, LeaseTiming, RenewReply};
pub use load::Load;
pub use placement::{Holder, HomeLease, HomeLocks};
pub use registry::{NodeId, NodeInfo, Registry};
