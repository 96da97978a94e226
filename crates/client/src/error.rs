//! What can go wrong when talking to the meeting.

use std::time::Duration;

use onstage_proto::{CloseReason, ErrorBody, ErrorCode, LinkError};

use crate::tls::CertificateError;

/// An error from the SDK. Every variant maps to a stable [`ErrorCode`] through
/// [`ClientError::code`], so callers (and the `onstage bot`) can report one uniform shape.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ClientError {
    /// The server refused the call; the body carries its stable code. A refused call
    /// changed nothing.
    #[error("{0}")]
    Server(ErrorBody),
    /// The server refused the token when joining (HTTP 401): missing or bad, or the
    /// participant no longer exists.
    #[error("unauthorized: {0}")]
    Unauthorized(String),
    /// The server refused the token because its lifetime is over (HTTP 401
    /// `token_expired`). A new token for the participant works; this one never will.
    #[error("token expired: {0}")]
    TokenExpired(String),
    /// The server refused the token because it was superseded (HTTP 401 `token_revoked`):
    /// the participant has been issued a newer token. Retrying never helps.
    #[error("token revoked: {0}")]
    TokenRevoked(String),
    /// The server ended this participant's session for good and said why (its goodbye):
    /// `replaced` (the same token connected elsewhere, e.g. another window: that session
    /// is live), `revoked` (a newer token was issued), `removed` (an admin removed the
    /// participant), `meeting_deleted`, or `bad_input` (the server kept refusing this
    /// client's frames). The SDK does not reconnect; calls fail with this.
    #[error("{}", ended_message(*.0))]
    Ended(CloseReason),
    /// The server could not be reached: refused, no route, no such name, or no welcome
    /// within the connect timeout.
    #[error("cannot connect: {0}")]
    Connect(String),
    /// Something answered at the server address, but not as an Onstage server: an HTTP
    /// status other than a token refusal, or no welcome as the first message.
    #[error("not an Onstage server: {0}")]
    NotOnstage(String),
    /// The server address is not one the SDK can use: not a URL, or a scheme other than
    /// http(s)/ws(s). Nothing was sent.
    #[error("bad server address: {0}")]
    BadServerUrl(String),
    /// The connection dropped before the call was answered, or the call was made while the
    /// SDK is reconnecting. Whether a call that was in flight took effect is unknown; the
    /// events tell.
    #[error("the connection to the server is lost")]
    ConnectionLost,
    /// No reply within the request timeout.
    #[error("no reply from the server within {0:?}")]
    Timeout(Duration),
    /// The meeting is over for this handle: it was left, every handle was dropped, or
    /// reconnecting failed for good. (When the server ended it and said why, calls get
    /// [`ClientError::Ended`] instead.)
    #[error("the meeting is closed")]
    Closed,
    /// The server sent something this SDK does not understand.
    #[error("protocol error: {0}")]
    Protocol(String),
    /// The server's TLS certificate was refused: not the pinned one (the mismatch names
    /// both fingerprints), or not trusted. Never retried: the same server would present
    /// the same certificate.
    #[error("{0}")]
    Certificate(CertificateError),
    /// A malformed invite link, or a fingerprint given for a server that is not `https`.
    #[error("{0}")]
    Link(#[from] LinkError),
}

impl ClientError {
    /// The stable code: the server's code for [`ClientError::Server`]; `unauthorized` for a
    /// refused token, and for a session ended because the participant was removed or the
    /// meeting deleted (its token no longer works); `token_expired` for a token past its
    /// lifetime; `token_revoked` for a superseded token (refused, or its session ended with
    /// `revoked`); for a join, `unreachable` when nothing answered at the address,
    /// `not_onstage_server` when something else did, `invalid_server_url` for an address
    /// that is not one; `connection_lost` for a connection lost once joined (including
    /// timeouts, a closed meeting and a `replaced` session); `untrusted_server` for a
    /// refused certificate; `bad_link` for a malformed invite link; `internal` for
    /// protocol errors.
    pub fn code(&self) -> ErrorCode {
        match self {
            ClientError::Server(body) => body.code,
            ClientError::Unauthorized(_) => ErrorCode::Unauthorized,
            ClientError::TokenExpired(_) => ErrorCode::TokenExpired,
            ClientError::TokenRevoked(_) | ClientError::Ended(CloseReason::Revoked) => {
                ErrorCode::TokenRevoked
            }
            ClientError::Ended(CloseReason::Removed | CloseReason::MeetingDeleted) => {
                ErrorCode::Unauthorized
            }
            ClientError::Ended(CloseReason::BadInput) => ErrorCode::BadRequest,
            ClientError::Ended(_) => ErrorCode::ConnectionLost,
            ClientError::Connect(_) => ErrorCode::Unreachable,
            ClientError::NotOnstage(_) => ErrorCode::NotOnstageServer,
            ClientError::BadServerUrl(_) => ErrorCode::InvalidServerUrl,
            ClientError::ConnectionLost | ClientError::Timeout(_) | ClientError::Closed => {
                ErrorCode::ConnectionLost
            }
            ClientError::Protocol(_) => ErrorCode::Internal,
            ClientError::Certificate(_) => ErrorCode::UntrustedServer,
            ClientError::Link(e) => e.code(),
        }
    }

    /// The error as it travels: `{"code":..,"message":..}`.
    pub fn to_body(&self) -> ErrorBody {
        match self {
            ClientError::Server(body) => body.clone(),
            other => ErrorBody::new(other.code(), other.to_string()),
        }
    }
}

/// What [`ClientError::Ended`] says, per reason.
fn ended_message(reason: CloseReason) -> &'static str {
    match reason {
        CloseReason::Replaced => {
            "this participant joined again elsewhere with the same token (another window or \
             device); this session ended"
        }
        CloseReason::Revoked => {
            "a newer token was issued for this participant; this session ended and this token \
             no longer works"
        }
        CloseReason::Removed => "an admin removed this participant from the meeting",
        CloseReason::MeetingDeleted => "an admin deleted the meeting",
        CloseReason::MeetingEnded => "the host ended the meeting for everyone",
        CloseReason::Left => "the meeting was left",
        CloseReason::Shutdown => "the server shut down",
        CloseReason::TooSlow => "the server dropped this connection for reading too slowly",
        CloseReason::BadInput => {
            "the server closed the connection (bad_input): it kept refusing this client's frames"
        }
    }
}

impl From<ErrorBody> for ClientError {
    fn from(body: ErrorBody) -> Self {
        ClientError::Server(body)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ended_sessions_say_why_with_a_code_that_fits() {
        let cases = [
            (
                CloseReason::Replaced,
                ErrorCode::ConnectionLost,
                "elsewhere",
            ),
            (CloseReason::Revoked, ErrorCode::TokenRevoked, "newer token"),
            (CloseReason::Removed, ErrorCode::Unauthorized, "removed"),
            (
                CloseReason::MeetingDeleted,
                ErrorCode::Unauthorized,
                "deleted",
            ),
            (CloseReason::BadInput, ErrorCode::BadRequest, "bad_input"),
        ];
        for (reason, code, words) in cases {
            let e = ClientError::Ended(reason);
            assert_eq!(e.code(), code, "{reason}");
            assert!(e.to_string().contains(words), "{e}");
        }
        assert_eq!(
            ClientError::TokenRevoked("x".into()).code(),
            ErrorCode::TokenRevoked
        );
    }
}
