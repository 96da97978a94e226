//! Invite links: `onstage://join?server=<url>&token=<t>[&fp=sha256:<hex>]`.
//!
//! The types are the wire crate's ([`onstage_proto::link`]), so the server that hands links
//! out and the SDK that opens them read and write exactly the same thing; this module is
//! where SDK users find them, with [`Meeting::join_invite`](crate::Meeting::join_invite)
//! to join with one.
//!
//! ```
//! use onstage_client::link::InviteLink;
//!
//! let link = InviteLink::parse("onstage://join?server=https%3A%2F%2Fh%3A8443&token=t").unwrap();
//! assert_eq!(link.server.as_str(), "https://h:8443/");
//! assert_eq!(link.fingerprint, None);
//! assert!(InviteLink::parse("onstage://join?server=https%3A%2F%2Fh").is_err()); // no token
//! ```

pub use onstage_proto::link::{Fingerprint, FingerprintError, InviteLink, LinkError};
