//! Identifiers. All are opaque strings on the wire; the newtypes keep them apart in code.

use serde::{Deserialize, Serialize};
use std::fmt;

macro_rules! string_id {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(pub String);

        impl $name {
            pub fn new(id: impl Into<String>) -> Self {
                Self(id.into())
            }
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl From<&str> for $name {
            fn from(s: &str) -> Self {
                Self(s.to_owned())
            }
        }

        impl From<String> for $name {
            fn from(s: String) -> Self {
                Self(s)
            }
        }
    };
}

string_id!(
    /// A meeting, as created through the admin API.
    MeetingId
);
string_id!(
    /// A participant of a meeting (RealtimeKit's `userId`): stable across reconnects and
    /// server restarts; stage calls name participants by it.
    UserId
);
string_id!(
    /// One session of a participant in a meeting (RealtimeKit's `peerId`). A reconnect inside
    /// the grace period resumes the same peer; joining again after leaving gets a new one.
    PeerId
);
