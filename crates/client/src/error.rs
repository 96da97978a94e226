//! What can go wrong when talking to the meeting.

use std::time::Duration;

use onstage_proto::{ErrorBody, ErrorCode, LinkError};

use crate::tls::CertificateError;

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
    /// refused token; `connection_lost` for every connection problem (including timeouts and
    /// a closed meeting); `untrusted_server` for a refused certificate; `bad_request` for
    /// a malformed invite link; `internal` for protocol errors.
    pub fn code(&self) -> ErrorCode {
        match self {
            ClientError::Server(body) => body.code,
            ClientError::Unauthorized(_) => ErrorCode::Unauthorized,
            ClientError::Connect(_)
            | ClientError::ConnectionLost
            | ClientError::Timeout(_)
            | ClientError::Closed => ErrorCode::ConnectionLost,
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

impl From<ErrorBody> for ClientError {
    fn from(body: ErrorBody) -> Self {
        ClientError::Server(body)
    }
}
