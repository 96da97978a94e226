//! Error types: [`ApiError`] (what an HTTP caller sees), [`StorageError`] and
//! [`ServerError`] (why the server could not start).

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use onstage_proto::{ErrorBody, ErrorCode};

/// An error answered over HTTP as
/// `{"success":false,"error":{"code":"<stable code>","message":"..."}}`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{status}: {body}")]
pub struct ApiError {
    pub status: StatusCode,
    pub body: ErrorBody,
}

impl ApiError {
    pub fn new(status: StatusCode, code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            status,
            body: ErrorBody::new(code, message),
        }
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, ErrorCode::BadRequest, message)
    }

    pub fn too_large(message: impl Into<String>) -> Self {
        Self::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            ErrorCode::BadRequest,
            message,
        )
    }

    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, ErrorCode::Unauthorized, message)
    }

    /// A participant token past its lifetime: 401 `token_expired`.
    pub fn token_expired(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, ErrorCode::TokenExpired, message)
    }

    /// A participant token superseded by a newer one: 401 `token_revoked`.
    pub fn token_revoked(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, ErrorCode::TokenRevoked, message)
    }

    pub fn meeting_full(message: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, ErrorCode::MeetingFull, message)
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, ErrorCode::NotFound, message)
    }

    pub fn invalid_state(message: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, ErrorCode::InvalidState, message)
    }

    pub fn unavailable(message: impl Into<String>) -> Self {
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            ErrorCode::Internal,
            message,
        )
    }

    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            ErrorCode::Internal,
            message,
        )
    }

    /// The HTTP status a stable code maps to.
    pub fn status_for(code: ErrorCode) -> StatusCode {
        match code {
            ErrorCode::BadRequest => StatusCode::BAD_REQUEST,
            ErrorCode::Unauthorized | ErrorCode::TokenExpired | ErrorCode::TokenRevoked => {
                StatusCode::UNAUTHORIZED
            }
            ErrorCode::PermissionDenied => StatusCode::FORBIDDEN,
            ErrorCode::NotFound => StatusCode::NOT_FOUND,
            ErrorCode::InvalidState | ErrorCode::StageFull | ErrorCode::MeetingFull => {
                StatusCode::CONFLICT
            }
            ErrorCode::RateLimited => StatusCode::TOO_MANY_REQUESTS,
            // Never sent by the server: a client's own, or no fault of the caller.
            ErrorCode::Internal
            | ErrorCode::ConnectionLost
            | ErrorCode::UntrustedServer
            | ErrorCode::Unreachable
            | ErrorCode::NotOnstageServer
            | ErrorCode::InvalidServerUrl
            | ErrorCode::BadLink => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = onstage_proto::rest::Envelope::<()>::Failure(self.body);
        (self.status, Json(body)).into_response()
    }
}

impl From<StorageError> for ApiError {
    fn from(e: StorageError) -> Self {
        tracing::error!(error = %e, "storage failure");
        ApiError::internal("storage failure")
    }
}

/// A failure of the SQLite store or of the secret files in the data dir.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    #[error("sqlite: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("migration: {0}")]
    Migration(#[from] rusqlite_migration::Error),
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
    #[error("the storage worker failed: {0}")]
    Worker(String),
}

/// Why [`crate::start`] failed.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("storage: {0}")]
    Storage(#[from] StorageError),
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: std::net::SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("invalid configuration: {0}")]
    Config(String),
    #[error("TLS: {0}")]
    Tls(#[from] crate::tls::TlsError),
    /// Joining the cluster failed (Redis unreachable, a node id in use, a bad setting).
    #[error("cluster: {0} ({code})", code = .0.code())]
    Cluster(#[from] onstage_cluster::ClusterError),
}
