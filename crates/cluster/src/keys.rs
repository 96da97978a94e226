//! Where everything lives in Redis. One prefix, so a Redis shared with other software (or
//! two clusters on one Redis) keeps our keys apart.

/// The default prefix of every key.
pub const DEFAULT_PREFIX: &str = "onstage";

/// Key names under one prefix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Keys {
    prefix: String,
}

impl Default for Keys {
    fn default() -> Self {
        Self::new(DEFAULT_PREFIX)
    }
}

impl Keys {
    pub fn new(prefix: impl Into<String>) -> Self {
        Self {
            prefix: prefix.into(),
        }
    }

    /// `PREFIX:node:ID`: a node's registration (JSON [`crate::NodeInfo`], with a TTL).
    pub fn node(&self, node_id: &str) -> String {
        format!("{}:node:{node_id}", self.prefix)
    }

    /// The `SCAN MATCH` pattern of every node key. Node ids hold no glob characters (see
    /// [`crate::NodeId`]), so a node key never matches by accident.
    pub fn node_pattern(&self) -> String {
        format!("{}:node:*", self.prefix)
    }

    /// `PREFIX:home:{MEETING}`: the meeting's home lock, `"NODE INSTANCE EPOCH"`, with a TTL.
    /// The braces make the lock and its epoch counter one hash slot (Redis Cluster), so the
    /// scripts that touch both stay valid there.
    pub fn home(&self, meeting: &str) -> String {
        format!("{}:home:{{{meeting}}}", self.prefix)
    }

    /// `PREFIX:epoch:{MEETING}`: the meeting's epoch counter, `INCR`ed on every take. Never
    /// expires, so epochs only grow while Redis keeps its data.
    pub fn epoch(&self, meeting: &str) -> String {
        format!("{}:epoch:{{{meeting}}}", self.prefix)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        let keys = Keys::default();
        assert_eq!(keys.node("a-1"), "onstage:node:a-1");
        assert_eq!(keys.node_pattern(), "onstage:node:*");
        assert_eq!(keys.home("m1"), "onstage:home:{m1}");
        assert_eq!(keys.epoch("m1"), "onstage:epoch:{m1}");
        assert_eq!(Keys::new("t").home("x"), "t:home:{x}");
    }
}
