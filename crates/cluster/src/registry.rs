//! The node registry: one key per live node, written with a TTL and refreshed by its node.
//! A node that stops refreshing (killed, frozen, cut off) vanishes when the TTL runs out.

use std::fmt;
use std::str::FromStr;
use std::sync::LazyLock;
use std::time::Duration;

use redis::aio::ConnectionManager;
use redis::Script;
use serde::{Deserialize, Serialize};

use crate::error::ClusterError;
use crate::keys::Keys;
use crate::load::Load;

/// A node's name in the cluster: 1 to 64 of `A-Z a-z 0-9 . _ -`. No spaces (lock values
/// are space-separated) and no glob characters (node keys are listed by pattern).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct NodeId(String);

impl NodeId {
    pub const MAX_LEN: usize = 64;

    pub fn new(id: impl Into<String>) -> Result<Self, ClusterError> {
        let id = id.into();
        if id.is_empty() || id.len() > Self::MAX_LEN {
            return Err(ClusterError::BadConfig(format!(
                "a node id has 1 to {} characters, not {}",
                Self::MAX_LEN,
                id.len()
            )));
        }
        if let Some(bad) = id
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')))
        {
            return Err(ClusterError::BadConfig(format!(
                "a node id is made of A-Z a-z 0-9 . _ - only; {id:?} has {bad:?}"
            )));
        }
        Ok(Self(id))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl FromStr for NodeId {
    type Err = ClusterError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::new(s)
    }
}

impl TryFrom<String> for NodeId {
    type Error = ClusterError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        Self::new(s)
    }
}

impl From<NodeId> for String {
    fn from(id: NodeId) -> Self {
        id.0
    }
}

/// A node's registration, as stored (JSON) under its key.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NodeInfo {
    pub node_id: NodeId,
    /// Random per process: tells a restarted node from the one that used the same id
    /// before it, and a second process wrongly given a live node's id.
    pub instance: String,
    /// Where clients and other nodes reach this node.
    pub public_url: String,
    pub load: Load,
    pub started_at_ms: u64,
    pub updated_at_ms: u64,
}

/// Writes the registration unless another instance holds the node id. Rewriting it whole
/// (not only its TTL) is what brings a node back after Redis restarted empty.
static REGISTER: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local cur = redis.call('GET', KEYS[1])
if cur then
  local ok, info = pcall(cjson.decode, cur)
  if ok and type(info) == 'table' and info.instance ~= ARGV[1] then
    return 0
  end
end
redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
return 1
",
    )
});

/// Deletes the registration only if it is this instance's.
static DEREGISTER: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local cur = redis.call('GET', KEYS[1])
if not cur then return 0 end
local ok, info = pcall(cjson.decode, cur)
if ok and type(info) == 'table' and info.instance == ARGV[1] then
  redis.call('DEL', KEYS[1])
  return 1
end
return 0
",
    )
});

/// The registry's Redis calls.
#[derive(Clone)]
pub struct Registry {
    conn: ConnectionManager,
    keys: Keys,
    ttl: Duration,
}

impl fmt::Debug for Registry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Registry")
            .field("keys", &self.keys)
            .field("ttl", &self.ttl)
            .finish_non_exhaustive()
    }
}

impl Registry {
    /// Registrations written through this registry live `ttl` unless refreshed.
    pub fn new(conn: ConnectionManager, keys: Keys, ttl: Duration) -> Self {
        Self { conn, keys, ttl }
    }

    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    /// Writes (or refreshes) `info` with the TTL. [`ClusterError::NodeIdInUse`] when a live
    /// registration of another instance has the id; nothing is written then.
    pub async fn register(&self, info: &NodeInfo) -> Result<(), ClusterError> {
        let json = serde_json::to_string(info)
            .map_err(|e| ClusterError::BadReply(format!("encoding a registration: {e}")))?;
        let ttl_ms = u64::try_from(self.ttl.as_millis()).unwrap_or(u64::MAX);
        let written: i64 = REGISTER
            .key(self.keys.node(info.node_id.as_str()))
            .arg(&info.instance)
            .arg(json)
            .arg(ttl_ms)
            .invoke_async(&mut self.conn.clone())
            .await?;
        if written == 1 {
            Ok(())
        } else {
            Err(ClusterError::NodeIdInUse(info.node_id.to_string()))
        }
    }

    /// Removes the registration if it is `instance`'s; `false` when there was none of it.
    pub async fn deregister(&self, node_id: &NodeId, instance: &str) -> Result<bool, ClusterError> {
        let deleted: i64 = DEREGISTER
            .key(self.keys.node(node_id.as_str()))
            .arg(instance)
            .invoke_async(&mut self.conn.clone())
            .await?;
        Ok(deleted == 1)
    }

    /// One node's registration, if it is live.
    pub async fn get(&self, node_id: &NodeId) -> Result<Option<NodeInfo>, ClusterError> {
        let raw: Option<String> = redis::cmd("GET")
            .arg(self.keys.node(node_id.as_str()))
            .query_async(&mut self.conn.clone())
            .await?;
        raw.map(|raw| parse_info(&raw)).transpose()
    }

    /// Every live node, by id. A key under our prefix that is not a registration is skipped
    /// with a warning: one foreign key must not hide the whole cluster.
    pub async fn list(&self) -> Result<Vec<NodeInfo>, ClusterError> {
        let mut conn = self.conn.clone();
        let mut names = Vec::new();
        let mut cursor: u64 = 0;
        // SCAN, not KEYS: it never blocks Redis for long, whatever else it holds.
        loop {
            let (next, batch): (u64, Vec<String>) = redis::cmd("SCAN")
                .arg(cursor)
                .arg("MATCH")
                .arg(self.keys.node_pattern())
                .arg("COUNT")
                .arg(200)
                .query_async(&mut conn)
                .await?;
            names.extend(batch);
            if next == 0 {
                break;
            }
            cursor = next;
        }
        names.sort();
        names.dedup();
        if names.is_empty() {
            return Ok(Vec::new());
        }
        // A key may expire between SCAN and MGET: it comes back nil and is left out.
        let values: Vec<Option<String>> = redis::cmd("MGET")
            .arg(&names)
            .query_async(&mut conn)
            .await?;
        let mut nodes = Vec::with_capacity(values.len());
        for (name, raw) in names.iter().zip(values) {
            let Some(raw) = raw else { continue };
            match parse_info(&raw) {
                Ok(info) => nodes.push(info),
                Err(e) => {
                    tracing::warn!(key = %name, error = %e, "skipping a node key that is not a registration")
                }
            }
        }
        nodes.sort_by(|a, b| a.node_id.cmp(&b.node_id));
        Ok(nodes)
    }
}

fn parse_info(raw: &str) -> Result<NodeInfo, ClusterError> {
    serde_json::from_str(raw)
        .map_err(|e| ClusterError::BadReply(format!("a node registration: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_ids_are_checked() {
        assert!(NodeId::new("node-a.1_x").is_ok());
        for bad in ["", "a b", "a*", "a:b", "ä", &"x".repeat(65)] {
            let err = NodeId::new(bad).expect_err(bad);
            assert_eq!(err.code(), "bad_config", "{bad:?}");
        }
        assert_eq!(
            "n1".parse::<NodeId>().map(|n| n.to_string()).ok(),
            Some("n1".into())
        );
    }

    #[test]
    fn a_registration_round_trips_and_a_bad_node_id_in_json_is_refused() {
        let info = NodeInfo {
            node_id: NodeId::new("a").expect("valid"),
            instance: "i1".into(),
            public_url: "http://127.0.0.1:1".into(),
            load: Load {
                meetings: 2,
                connections: 5,
                cpu: 0.5,
            },
            started_at_ms: 1,
            updated_at_ms: 2,
        };
        let json = serde_json::to_string(&info).expect("encodes");
        assert_eq!(parse_info(&json).expect("parses"), info);
        let bad = json.replace("\"a\"", "\"a b\"");
        assert_eq!(
            parse_info(&bad).map_err(|e| e.code()).err(),
            Some("bad_reply")
        );
        assert_eq!(
            parse_info("junk").map_err(|e| e.code()).err(),
            Some("bad_reply")
        );
    }
}
