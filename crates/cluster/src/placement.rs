//! Meeting placement: each live meeting's home lock, with a fencing epoch.
//!
//! The lock's value is `"NODE INSTANCE EPOCH"`. It is taken with `SET NX PX` (the epoch
//! from `INCR` on the meeting's counter, both in one script so a refused take spends no
//! epoch), renewed with compare-and-`PEXPIRE` and released with compare-and-delete: every
//! change checks the whole value, so a holder never touches a lock that has become
//! someone else's.

use std::fmt;
use std::sync::LazyLock;

use redis::aio::ConnectionManager;
use redis::Script;

use crate::error::ClusterError;
use crate::keys::Keys;
use crate::lease::{Epoch, LeaseTiming, RenewReply};
use crate::registry::NodeId;

/// Who holds a meeting's home lock.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Holder {
    pub node_id: NodeId,
    pub instance: String,
    pub epoch: Epoch,
}

impl Holder {
    /// The lock's value.
    pub fn value(&self) -> String {
        format!("{} {} {}", self.node_id, self.instance, self.epoch)
    }

    /// Reads a lock's value.
    pub fn parse(value: &str) -> Result<Self, ClusterError> {
        let bad = || ClusterError::BadReply(format!("a home lock value {value:?}"));
        let mut parts = value.split(' ');
        let (Some(node), Some(instance), Some(epoch), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(bad());
        };
        let node_id = NodeId::new(node).map_err(|_| bad())?;
        let epoch = epoch.parse::<u64>().map_err(|_| bad())?;
        if instance.is_empty() {
            return Err(bad());
        }
        Ok(Self {
            node_id,
            instance: instance.to_owned(),
            epoch: Epoch(epoch),
        })
    }
}

impl fmt::Display for Holder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} (epoch {})", self.node_id, self.epoch)
    }
}

/// A home lock we hold.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HomeLease {
    pub meeting: String,
    pub holder: Holder,
}

impl HomeLease {
    pub fn epoch(&self) -> Epoch {
        self.holder.epoch
    }
}

/// The longest meeting id a lock is made for.
pub const MAX_MEETING_ID: usize = 128;

/// A meeting id names a key and sits inside a hash tag: printable ASCII, no spaces, no
/// braces.
pub fn check_meeting_id(meeting: &str) -> Result<(), ClusterError> {
    if meeting.is_empty() || meeting.len() > MAX_MEETING_ID {
        return Err(ClusterError::BadMeetingId(format!(
            "a meeting id has 1 to {MAX_MEETING_ID} characters, not {}",
            meeting.len()
        )));
    }
    if let Some(bad) = meeting
        .chars()
        .find(|c| !c.is_ascii_graphic() || matches!(c, '{' | '}'))
    {
        return Err(ClusterError::BadMeetingId(format!(
            "{meeting:?} has {bad:?}; printable ASCII without spaces or braces only"
        )));
    }
    Ok(())
}

/// Takes the lock if nobody holds it: `{epoch, value}`; `{0, holder's value}` otherwise.
/// The epoch is the counter's next value, raised above `floor` (the epoch a holder had
/// before Redis lost its data) so that a retake is never older than what it replaces.
static TAKE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local cur = redis.call('GET', KEYS[1])
if cur then return {0, cur} end
local epoch = redis.call('INCR', KEYS[2])
local floor = tonumber(ARGV[4])
if epoch <= floor then
  epoch = floor + 1
  redis.call('SET', KEYS[2], epoch)
end
local value = ARGV[1] .. ' ' .. ARGV[2] .. ' ' .. epoch
redis.call('SET', KEYS[1], value, 'NX', 'PX', ARGV[3])
return {epoch, value}
",
    )
});

/// Renews only our own lock: `{1}` renewed, `{0}` no lock, `{-1, holder's value}`.
static RENEW: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local cur = redis.call('GET', KEYS[1])
if cur == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return {1, cur}
end
if not cur then return {0, ''} end
return {-1, cur}
",
    )
});

/// Deletes only our own lock: 1 deleted, 0 not ours (or gone).
static RELEASE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
",
    )
});

/// What one take script found.
enum Taken {
    Fresh(HomeLease),
    /// The lock already has this instance's value.
    Ours(Holder),
}

/// One process's home locks: takes, renewals and releases in its name.
#[derive(Clone)]
pub struct HomeLocks {
    conn: ConnectionManager,
    keys: Keys,
    timing: LeaseTiming,
    node_id: NodeId,
    instance: String,
}

impl fmt::Debug for HomeLocks {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HomeLocks")
            .field("node_id", &self.node_id)
            .field("instance", &self.instance)
            .field("timing", &self.timing)
            .finish_non_exhaustive()
    }
}

impl HomeLocks {
    pub fn new(
        conn: ConnectionManager,
        keys: Keys,
        timing: LeaseTiming,
        node_id: NodeId,
        instance: impl Into<String>,
    ) -> Self {
        Self {
            conn,
            keys,
            timing,
            node_id,
            instance: instance.into(),
        }
    }

    pub fn timing(&self) -> LeaseTiming {
        self.timing
    }

    pub fn node_id(&self) -> &NodeId {
        &self.node_id
    }

    pub fn instance(&self) -> &str {
        &self.instance
    }

    /// Takes the meeting's home with an epoch above `floor` (use `Epoch(0)` for a first
    /// take); every take that succeeds has a fresh epoch. [`ClusterError::HeldElsewhere`]
    /// when another holds it. A lock of this very instance that its caller no longer counts
    /// as held (a take whose answer was lost, a lease given up by the clock while Redis
    /// still had it) is stale: it is deleted and taken anew. One take per meeting at a
    /// time from one instance (as [`crate::Cluster`] does).
    pub async fn take(&self, meeting: &str, floor: Epoch) -> Result<HomeLease, ClusterError> {
        check_meeting_id(meeting)?;
        match self.take_once(meeting, floor).await? {
            Taken::Fresh(lease) => Ok(lease),
            Taken::Ours(stale) => {
                tracing::info!(meeting, epoch = %stale.epoch, "replacing a stale lock of this process");
                let stale = HomeLease {
                    meeting: meeting.to_owned(),
                    holder: stale,
                };
                self.release(&stale).await?;
                match self.take_once(meeting, floor.max(stale.epoch())).await? {
                    Taken::Fresh(lease) => Ok(lease),
                    Taken::Ours(again) => Err(ClusterError::HeldElsewhere {
                        meeting: meeting.to_owned(),
                        holder: again.node_id.to_string(),
                        epoch: again.epoch,
                    }),
                }
            }
        }
    }

    async fn take_once(&self, meeting: &str, floor: Epoch) -> Result<Taken, ClusterError> {
        let (epoch, value): (u64, String) = TAKE
            .key(self.keys.home(meeting))
            .key(self.keys.epoch(meeting))
            .arg(self.node_id.as_str())
            .arg(&self.instance)
            .arg(self.timing.ttl_ms())
            .arg(floor.0)
            .invoke_async(&mut self.conn.clone())
            .await?;
        let holder = Holder::parse(&value)?;
        if epoch != 0 {
            return Ok(Taken::Fresh(HomeLease {
                meeting: meeting.to_owned(),
                holder,
            }));
        }
        if self.is_ours(&holder) {
            return Ok(Taken::Ours(holder));
        }
        Err(ClusterError::HeldElsewhere {
            meeting: meeting.to_owned(),
            holder: holder.node_id.to_string(),
            epoch: holder.epoch,
        })
    }

    /// Renews our lease for another TTL, if it is still ours (see [`RenewReply`]).
    pub async fn renew(&self, lease: &HomeLease) -> Result<RenewReply, ClusterError> {
        let (status, value): (i64, String) = RENEW
            .key(self.keys.home(&lease.meeting))
            .arg(lease.holder.value())
            .arg(self.timing.ttl_ms())
            .invoke_async(&mut self.conn.clone())
            .await?;
        match status {
            1 => Ok(RenewReply::Renewed),
            0 => Ok(RenewReply::Missing),
            -1 => Ok(RenewReply::HeldBy(value)),
            other => Err(ClusterError::BadReply(format!("renewal answered {other}"))),
        }
    }

    /// Deletes our lock; `false` (and nothing deleted) when it is not ours any more.
    pub async fn release(&self, lease: &HomeLease) -> Result<bool, ClusterError> {
        let deleted: i64 = RELEASE
            .key(self.keys.home(&lease.meeting))
            .arg(lease.holder.value())
            .invoke_async(&mut self.conn.clone())
            .await?;
        Ok(deleted == 1)
    }

    /// Who holds the meeting's home now, if anyone.
    pub async fn holder(&self, meeting: &str) -> Result<Option<Holder>, ClusterError> {
        check_meeting_id(meeting)?;
        let raw: Option<String> = redis::cmd("GET")
            .arg(self.keys.home(meeting))
            .query_async(&mut self.conn.clone())
            .await?;
        raw.map(|raw| Holder::parse(&raw)).transpose()
    }

    fn is_ours(&self, holder: &Holder) -> bool {
        holder.node_id == self.node_id && holder.instance == self.instance
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lock_values_round_trip_and_junk_is_refused() {
        let holder = Holder {
            node_id: NodeId::new("n1").expect("valid"),
            instance: "abc".into(),
            epoch: Epoch(12),
        };
        assert_eq!(holder.value(), "n1 abc 12");
        assert_eq!(Holder::parse("n1 abc 12").expect("parses"), holder);
        for junk in [
            "",
            "n1",
            "n1 abc",
            "n1 abc x",
            "n1 abc 1 2",
            "n 1 abc 1",
            "n1  1",
        ] {
            let err = Holder::parse(junk).expect_err(junk);
            assert_eq!(err.code(), "bad_reply", "{junk:?}");
        }
    }

    #[test]
    fn meeting_ids_are_checked() {
        assert!(check_meeting_id("9f1c-44a0_x.y").is_ok());
        for bad in ["", "a b", "a{b", "a}b", "a\nb", "é", &"m".repeat(129)] {
            let err = check_meeting_id(bad).expect_err(bad);
            assert_eq!(err.code(), "bad_meeting_id", "{bad:?}");
        }
    }
}
