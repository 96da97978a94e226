//! TURN credentials for guests that can only reach a relay.
//!
//! The server never relays media itself: a TURN server (coturn) does, configured with
//! `use-auth-secret` and the same `static-auth-secret`. Each participant gets its own
//! time-limited credentials in every welcome (so a reconnect refreshes them), minted as the
//! TURN REST API describes: username `<unix expiry>:<user id>`, password
//! base64(HMAC-SHA1(secret, username)). coturn checks them without asking us.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use hmac::{Hmac, Mac};
use onstage_proto::{IceServer, UserId};
use sha1::Sha1;

/// The TURN servers participants are told about and the secret shared with them.
#[derive(Clone, PartialEq, Eq)]
pub struct TurnConfig {
    /// `turn:HOST:PORT` URLs (UDP; webrtc-rs 0.21 uses nothing else).
    pub urls: Vec<String>,
    pub secret: String,
    /// How long minted credentials stay valid. A relay allocation is refreshed with the
    /// same credentials for as long as the call lasts, so this must outlast a meeting.
    pub ttl: Duration,
}

impl std::fmt::Debug for TurnConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TurnConfig")
            .field("urls", &self.urls)
            .field("ttl", &self.ttl)
            .finish_non_exhaustive()
    }
}

impl TurnConfig {
    /// Credentials for `user`, valid from `now` for [`TurnConfig::ttl`].
    pub fn credentials(&self, user: &UserId, now: SystemTime) -> IceServer {
        let expiry = now
            .checked_add(self.ttl)
            .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
            .map_or(0, |d| d.as_secs());
        let username = format!("{expiry}:{user}");
        IceServer {
            urls: self.urls.clone(),
            credential: password(&self.secret, &username),
            username,
        }
    }
}

/// base64(HMAC-SHA1(secret, username)), as coturn's `use-auth-secret` computes it.
fn password(secret: &str, username: &str) -> String {
    // HMAC takes a key of any length; `new_from_slice` cannot fail for it.
    let Ok(mut mac) = Hmac::<Sha1>::new_from_slice(secret.as_bytes()) else {
        return String::new();
    };
    mac.update(username.as_bytes());
    base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_follow_the_turn_rest_api() {
        let turn = TurnConfig {
            urls: vec!["turn:10.0.0.5:3478".into()],
            secret: "north".into(),
            ttl: Duration::from_secs(3600),
        };
        let now = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let c = turn.credentials(&UserId::new("u1"), now);
        assert_eq!(c.username, "1700003600:u1");
        assert_eq!(c.urls, vec!["turn:10.0.0.5:3478".to_owned()]);
        // `printf %s 1700003600:u1 | openssl dgst -sha1 -hmac north -binary | base64`
        assert_eq!(c.credential, "v/htRUiFiOnpNCbrnctUyh6uZAg=");
        assert!(
            !format!("{turn:?}").contains("north"),
            "the secret is not logged"
        );
    }
}
