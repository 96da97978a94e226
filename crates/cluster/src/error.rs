//! What can go wrong in a cluster membership, each with a stable code.

use crate::lease::Epoch;

/// A cluster operation's failure. [`ClusterError::code`] is stable: scripts and logs match
/// on it, never on the message.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClusterError {
    /// A setting is unusable (a malformed Redis URL, a node id with spaces, a lease whose
    /// renewal period does not fit its TTL). Nothing was contacted.
    #[error("bad cluster setting: {0}")]
    BadConfig(String),
    /// A meeting id that cannot name a lock (empty, too long, spaces, braces, control
    /// characters). Nothing was contacted.
    #[error("bad meeting id: {0}")]
    BadMeetingId(String),
    /// Redis did not answer, or failed the command (refused connection, timeout, an error
    /// reply). Whatever was asked may or may not have happened; retrying is safe.
    #[error("Redis is unavailable: {0}")]
    Unavailable(#[source] redis::RedisError),
    /// Redis answered something this crate never writes (a foreign key under our prefix, a
    /// script answer of the wrong shape).
    #[error("unexpected data in Redis: {0}")]
    BadReply(String),
    /// Another live process is registered under this node id.
    #[error("node id {0} is in use by another live node")]
    NodeIdInUse(String),
    /// The meeting's home is another node (or another process of ours); it holds the lock.
    #[error("meeting {meeting} has its home on node {holder} (epoch {epoch})")]
    HeldElsewhere {
        meeting: String,
        holder: String,
        epoch: Epoch,
    },
    /// We held the meeting's home lock and do not any more: it expired, or another node
    /// took it. The meeting must stop being run here.
    #[error("the home lock of meeting {meeting} (epoch {epoch}) is lost")]
    LeaseLost { meeting: String, epoch: Epoch },
}

impl ClusterError {
    /// The stable code: `bad_config`, `bad_meeting_id`, `redis_unavailable`, `bad_reply`, `node_id_in_use`,
    /// `held_elsewhere`, `lease_lost`.
    pub fn code(&self) -> &'static str {
        match self {
            ClusterError::BadConfig(_) => "bad_config",
            ClusterError::BadMeetingId(_) => "bad_meeting_id",
            ClusterError::Unavailable(_) => "redis_unavailable",
            ClusterError::BadReply(_) => "bad_reply",
            ClusterError::NodeIdInUse(_) => "node_id_in_use",
            ClusterError::HeldElsewhere { .. } => "held_elsewhere",
            ClusterError::LeaseLost { .. } => "lease_lost",
        }
    }

    /// Whether trying again later may succeed (Redis away, a lock still held).
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            ClusterError::Unavailable(_)
                | ClusterError::NodeIdInUse(_)
                | ClusterError::HeldElsewhere { .. }
        )
    }
}

impl From<redis::RedisError> for ClusterError {
    fn from(e: redis::RedisError) -> Self {
        ClusterError::Unavailable(e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_stable() {
        let held = ClusterError::HeldElsewhere {
            meeting: "m".into(),
            holder: "b".into(),
            epoch: Epoch(3),
        };
        assert_eq!(held.code(), "held_elsewhere");
        assert!(held.is_transient());
        assert_eq!(
            held.to_string(),
            "meeting m has its home on node b (epoch 3)"
        );
        let lost = ClusterError::LeaseLost {
            meeting: "m".into(),
            epoch: Epoch(4),
        };
        assert_eq!(lost.code(), "lease_lost");
        assert!(!lost.is_transient());
        assert_eq!(ClusterError::BadConfig("x".into()).code(), "bad_config");
        assert_eq!(
            ClusterError::NodeIdInUse("a".into()).code(),
            "node_id_in_use"
        );
        assert_eq!(ClusterError::BadReply("x".into()).code(), "bad_reply");
        assert_eq!(
            ClusterError::BadMeetingId("x".into()).code(),
            "bad_meeting_id"
        );
    }
}
