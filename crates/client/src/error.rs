//! What can go wrong when talking to the meeting.

use std::time::Duration;

use onstage_proto::{ErrorBody, ErrorCode};

/// An error from the SDK. Every variant maps to a stable [`ErrorCode`] through
/// [`ClientError::code`], so callers (and the `onstage bot`) can report one uniform shape.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ClientError {
    /// The server refused the call; the body carries its stable code. A refused call
    /// changed nothing.
    #[error("{0}")]
    Server(ErrorBody),
    /// The server refused the token when joining (HTTP 401): missing, bad or expired, or
    /// the participant no longer exists.
    #[error("unauthorized: {0}")]
    Unauthorized(String),
    /// The server could not be reached, or the WebSocket handshake failed.
    #[error("cannot connect: {0}")]
    Connect(String),
    /// The connection dropped before the call was answered, or the call was made while the
    /// SDK is reconnecting. Whether a call that was in flight took effect is unknown; the
    /// events tell.
    #[error("the connection to the server is lost")]
    ConnectionLost,
    /// No reply within the request timeout.
    #[error("no reply from the server within {0:?}")]
    Timeout(Duration),
    /// The meeting is over for this handle: it was left, replaced by another connection with
    /// the same token, or reconnecting failed for good.
    #[error("the meeting is closed")]
    Closed,
    /// The server sent something this SDK does not understand.
    #[error("protocol error: {0}")]
    Protocol(String),
}

impl ClientError {
    /// The stable code: the server's code for [`ClientError::Server`]; `unauthorized` for a
    /// refused token; `connection_lost` for every connection problem (including timeouts and
    /// a closed meeting); `internal` for protocol errors.
    pub fn code(&self) -> ErrorCode {
        match self {
            ClientError::Server(body) => body.code,
            ClientError::Unauthorized(_) => ErrorCode::Unauthorized,
            ClientError::Connect(_)
            | ClientError::ConnectionLost
            | ClientError::Timeout(_)
            | ClientError::Closed => ErrorCode::ConnectionLost,
            ClientError::Protocol(_) => ErrorCode::Internal,
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

impl From<ErrorBody> for ClientError {
    fn from(body: ErrorBody) -> Self {
        ClientError::Server(body)
    }
}
