//! The stable error codes. Clients match on the code; the message is for humans.

use serde::{Deserialize, Serialize};
use std::fmt;

/// A stable error code. The wire form is the snake_case name, e.g. `"stage_full"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[derive(strum::IntoStaticStr, strum::Display, strum::VariantArray)]
#[strum(serialize_all = "snake_case")]
pub enum ErrorCode {
    /// No valid credentials: missing, malformed or wrongly signed token / admin key, or a
    /// token whose participant or meeting no longer exists.
    Unauthorized,
    /// A participant token that was valid but whose lifetime is over (HTTP 401). A new
    /// token (invite link) for the same participant works.
    TokenExpired,
    /// A participant token that was valid but has been superseded: the participant was
    /// issued a newer token. Answered with HTTP 401 like `unauthorized`; retrying with the
    /// same token never helps.
    TokenRevoked,
    /// The caller's preset does not allow the call.
    PermissionDenied,
    /// The call does not fit the current stage status of the caller or a target.
    InvalidState,
    /// An id that does not exist (in this meeting).
    NotFound,
    /// The stage already holds `max_on_stage` participants.
    StageFull,
    /// The meeting already holds as many participants as the server lets a meeting hold
    /// (`max_participants`): a role link lets nobody new in (HTTP 409) until some are
    /// removed.
    MeetingFull,
    /// Malformed input: unparseable JSON, unknown call, oversized frame, bad field.
    BadRequest,
    /// Too many calls in too short a time.
    RateLimited,
    /// A server-side failure (storage, internal error). Nothing changed.
    Internal,
    /// The client lost its connection to the server before the call was answered.
    ConnectionLost,
    /// The client refused the server's TLS certificate: not the one the invite link pins
    /// (fingerprint mismatch), or not vouched for by a trusted authority. Retrying does not
    /// help; the link or the server's certificate is wrong.
    UntrustedServer,
    /// The client could not reach the server: no answer at the address (refused, no route,
    /// no name, or nothing within the connect timeout). A client's own code.
    Unreachable,
    /// Something answered at the address, but not as an Onstage server does (an HTTP
    /// status other than a token refusal, or no welcome). A client's own code.
    NotOnstageServer,
    /// A server address the client cannot use: not a URL, or a scheme other than
    /// http(s)/ws(s). A client's own code.
    InvalidServerUrl,
    /// A malformed invite link (no server, no token, a bad fingerprint). A client's own code.
    BadLink,
}

impl ErrorCode {
    pub fn as_str(self) -> &'static str {
        self.into()
    }
}

/// An error as it travels: `{"code":"stage_full","message":"..."}`, and for a
/// `rate_limited` that knows when the caller may try again, `"retry_after_ms":N`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    pub code: ErrorCode,
    pub message: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_after_ms: Option<u64>,
}

impl ErrorBody {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
            retry_after_ms: None,
        }
    }

    /// The same error, saying when the caller may try again.
    pub fn with_retry_after(mut self, ms: u64) -> Self {
        self.retry_after_ms = Some(ms);
        self
    }
}

impl fmt::Display for ErrorBody {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.code, self.message)
    }
}

impl std::error::Error for ErrorBody {}
