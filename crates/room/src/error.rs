use onstage_proto::{ErrorBody, ErrorCode, UserId};

/// Why the room refused a call. A refused call changes nothing.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StageError {
    #[error("permission denied: {0}")]
    PermissionDenied(String),
    #[error("invalid state: {0}")]
    InvalidState(String),
    #[error("participant {0} is not in this meeting")]
    NotFound(UserId),
    #[error("the stage is full ({max} on stage)")]
    StageFull { max: u32 },
    #[error("bad request: {0}")]
    BadRequest(String),
    /// The caller spent its budget of changes everyone is told about (see
    /// [`crate::BroadcastBudget`]); it may try again after `retry_after_ms`.
    #[error("too many stage changes; try again in {retry_after_ms} ms")]
    RateLimited { retry_after_ms: u64 },
}

impl StageError {
    /// The stable wire code of this error.
    pub fn code(&self) -> ErrorCode {
        match self {
            StageError::PermissionDenied(_) => ErrorCode::PermissionDenied,
            StageError::InvalidState(_) => ErrorCode::InvalidState,
            StageError::NotFound(_) => ErrorCode::NotFound,
            StageError::StageFull { .. } => ErrorCode::StageFull,
            StageError::BadRequest(_) => ErrorCode::BadRequest,
            StageError::RateLimited { .. } => ErrorCode::RateLimited,
        }
    }
}

impl From<StageError> for ErrorBody {
    fn from(e: StageError) -> Self {
        let body = ErrorBody::new(e.code(), e.to_string());
        match e {
            StageError::RateLimited { retry_after_ms } => body.with_retry_after(retry_after_ms),
            _ => body,
        }
    }
}
