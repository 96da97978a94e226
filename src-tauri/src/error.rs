//! The errors the UI receives (docs/APP.md "Errors"): a refused command ([`CommandError`]),
//! the `media-error` event (the same shape) and the `app-error` event ([`AppError`]).
//!
//! Every one carries a [`Code`] from one list: the SDK's codes, the media codes and the
//! shell's own. The UI words errors by code, and names the device of a device error from
//! `device`, which is set where the error came from (the media layer knows which device it
//! opened), never read out of the message.

use serde::Serialize;

use onstage_client::ClientError;
use onstage_media::{DeviceKind, MediaError, MediaErrorCode};
use onstage_proto::ErrorCode;

/// Every code the UI can receive, serialized as its snake_case string.
///
/// The SDK's and the media crate's codes come in through exhaustive `From` conversions, so
/// a code added to either does not compile until it is added here (and to docs/APP.md and
/// the UI's `ErrorCode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Code {
    // The SDK's codes (`onstage_proto::ErrorCode`).
    Unauthorized,
    TokenExpired,
    TokenRevoked,
    PermissionDenied,
    InvalidState,
    NotFound,
    StageFull,
    BadRequest,
    RateLimited,
    Internal,
    ConnectionLost,
    UntrustedServer,
    Unreachable,
    NotOnstageServer,
    InvalidServerUrl,
    // The media codes (`onstage_media::MediaErrorCode`).
    DeviceNotFound,
    DeviceBusy,
    DeviceError,
    UnsupportedFormat,
    CodecError,
    Closed,
    /// An invite link the SDK's parser refuses; the message names what is wrong. The
    /// SDK's `bad_link`, which the shell also gives for links it parses itself.
    BadLink,
    // The shell's own.
    /// An invite address that cannot go into a link.
    BadAddress,
    /// Hosting: a stored port is taken by another program.
    PortInUse,
    /// The picture socket could not start.
    Unavailable,
}

/// The code as the UI receives it (for logs). Taken from the serialized form so that the
/// derive's `rename_all` is the one place a code's string is written.
impl std::fmt::Display for Code {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match serde_json::to_value(self) {
            Ok(serde_json::Value::String(code)) => f.write_str(&code),
            _ => Err(std::fmt::Error),
        }
    }
}

impl From<ErrorCode> for Code {
    fn from(code: ErrorCode) -> Self {
        match code {
            ErrorCode::Unauthorized => Self::Unauthorized,
            ErrorCode::TokenExpired => Self::TokenExpired,
            ErrorCode::TokenRevoked => Self::TokenRevoked,
            ErrorCode::PermissionDenied => Self::PermissionDenied,
            ErrorCode::InvalidState => Self::InvalidState,
            ErrorCode::NotFound => Self::NotFound,
            ErrorCode::StageFull => Self::StageFull,
            ErrorCode::BadRequest => Self::BadRequest,
            ErrorCode::RateLimited => Self::RateLimited,
            ErrorCode::Internal => Self::Internal,
            ErrorCode::ConnectionLost => Self::ConnectionLost,
            ErrorCode::UntrustedServer => Self::UntrustedServer,
            ErrorCode::Unreachable => Self::Unreachable,
            ErrorCode::NotOnstageServer => Self::NotOnstageServer,
            ErrorCode::InvalidServerUrl => Self::InvalidServerUrl,
            ErrorCode::BadLink => Self::BadLink,
        }
    }
}

impl From<MediaErrorCode> for Code {
    fn from(code: MediaErrorCode) -> Self {
        match code {
            MediaErrorCode::DeviceNotFound => Self::DeviceNotFound,
            MediaErrorCode::DeviceBusy => Self::DeviceBusy,
            MediaErrorCode::DeviceError => Self::DeviceError,
            MediaErrorCode::UnsupportedFormat => Self::UnsupportedFormat,
            MediaErrorCode::CodecError => Self::CodecError,
            MediaErrorCode::Closed => Self::Closed,
        }
    }
}

/// A refused command, as the UI receives it: `{code, message}`, and `device` for an error
/// about a device. Also the payload of the `media-error` event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, thiserror::Error)]
#[error("{code}: {message}")]
pub struct CommandError {
    pub code: Code,
    pub message: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub device: Option<DeviceKind>,
}

impl CommandError {
    pub fn new(code: impl Into<Code>, message: impl Into<String>) -> Self {
        Self {
            code: code.into(),
            message: message.into(),
            device: None,
        }
    }

    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(Code::Internal, message)
    }

    pub fn not_joined() -> Self {
        Self::new(Code::InvalidState, "not in a meeting")
    }
}

impl From<ClientError> for CommandError {
    fn from(e: ClientError) -> Self {
        let body = e.to_body();
        Self::new(body.code, body.message)
    }
}

impl From<MediaError> for CommandError {
    fn from(e: MediaError) -> Self {
        Self {
            code: e.code().into(),
            message: e.to_string(),
            device: e.device(),
        }
    }
}

/// `media-error`: a device the stage media could not use. The SDK says which device it
/// was trying to use, so every one has a `device`.
impl From<onstage_client::MediaProblem> for CommandError {
    fn from(p: onstage_client::MediaProblem) -> Self {
        Self {
            code: p.code.into(),
            message: p.message,
            device: Some(p.device),
        }
    }
}

/// Where an [`AppError`] came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Context {
    /// Hosting or joining at start, the command line.
    Start,
    /// An invite link opened while the app runs.
    Link,
}

/// `app-error`: a failure no command answers for (the app was started with, or was sent,
/// something that did not work). The error's fields and `context`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AppError {
    #[serde(flatten)]
    pub error: CommandError,
    pub context: Context,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// The strings the UI matches on (ui/src/lib/types.ts `ERROR_CODES`, docs/APP.md).
    #[test]
    fn codes_serialize_as_the_strings_the_ui_knows() {
        let all = [
            (Code::Unauthorized, "unauthorized"),
            (Code::TokenExpired, "token_expired"),
            (Code::TokenRevoked, "token_revoked"),
            (Code::PermissionDenied, "permission_denied"),
            (Code::InvalidState, "invalid_state"),
            (Code::NotFound, "not_found"),
            (Code::StageFull, "stage_full"),
            (Code::BadRequest, "bad_request"),
            (Code::RateLimited, "rate_limited"),
            (Code::Internal, "internal"),
            (Code::ConnectionLost, "connection_lost"),
            (Code::UntrustedServer, "untrusted_server"),
            (Code::Unreachable, "unreachable"),
            (Code::NotOnstageServer, "not_onstage_server"),
            (Code::InvalidServerUrl, "invalid_server_url"),
            (Code::DeviceNotFound, "device_not_found"),
            (Code::DeviceBusy, "device_busy"),
            (Code::DeviceError, "device_error"),
            (Code::UnsupportedFormat, "unsupported_format"),
            (Code::CodecError, "codec_error"),
            (Code::Closed, "closed"),
            (Code::BadLink, "bad_link"),
            (Code::BadAddress, "bad_address"),
            (Code::PortInUse, "port_in_use"),
            (Code::Unavailable, "unavailable"),
        ];
        for (code, text) in all {
            assert_eq!(serde_json::to_value(code).unwrap(), text);
            assert_eq!(code.to_string(), text);
        }
    }

    /// The SDK's and the media crate's codes keep their strings through the conversion.
    #[test]
    fn sdk_and_media_codes_keep_their_strings() {
        for code in [
            ErrorCode::Unauthorized,
            ErrorCode::TokenExpired,
            ErrorCode::TokenRevoked,
            ErrorCode::PermissionDenied,
            ErrorCode::InvalidState,
            ErrorCode::NotFound,
            ErrorCode::StageFull,
            ErrorCode::BadRequest,
            ErrorCode::RateLimited,
            ErrorCode::Internal,
            ErrorCode::ConnectionLost,
            ErrorCode::UntrustedServer,
            ErrorCode::Unreachable,
            ErrorCode::NotOnstageServer,
            ErrorCode::InvalidServerUrl,
            ErrorCode::BadLink,
        ] {
            assert_eq!(Code::from(code).to_string(), code.as_str());
        }
        for code in [
            MediaErrorCode::DeviceNotFound,
            MediaErrorCode::DeviceBusy,
            MediaErrorCode::DeviceError,
            MediaErrorCode::UnsupportedFormat,
            MediaErrorCode::CodecError,
            MediaErrorCode::Closed,
        ] {
            assert_eq!(Code::from(code).to_string(), code.as_str());
        }
    }

    /// The device comes from the error's origin: a microphone error whose message talks of
    /// a camera is still the microphone's.
    #[test]
    fn a_device_error_names_its_device() {
        let mic = CommandError::from(MediaError::DeviceBusy(
            DeviceKind::Microphone,
            "camera 0".into(),
        ));
        assert_eq!(mic.code, Code::DeviceBusy);
        assert_eq!(mic.device, Some(DeviceKind::Microphone));
        assert_eq!(
            serde_json::to_value(&mic).unwrap(),
            json!({"code": "device_busy", "message": "device busy: camera 0", "device": "microphone"})
        );

        let camera = CommandError::from(MediaError::DeviceNotFound(
            DeviceKind::Camera,
            "no default microphone".into(),
        ));
        assert_eq!(
            serde_json::to_value(&camera).unwrap(),
            json!({
                "code": "device_not_found",
                "message": "device not found: no default microphone",
                "device": "camera"
            })
        );
    }

    /// Errors that are not about a device have no `device` field at all.
    #[test]
    fn other_errors_have_no_device() {
        let codec = CommandError::from(MediaError::Codec("bad NAL".into()));
        assert_eq!(
            serde_json::to_value(&codec).unwrap(),
            json!({"code": "codec_error", "message": "codec error: bad NAL"})
        );
        let refused = CommandError::from(ClientError::Server(onstage_proto::ErrorBody::new(
            ErrorCode::StageFull,
            "max 25",
        )));
        assert_eq!(
            serde_json::to_value(&refused).unwrap(),
            json!({"code": "stage_full", "message": "max 25"})
        );
    }

    /// `media-error` is the same shape, its device the one the SDK was using.
    #[test]
    fn a_media_problem_becomes_a_media_error_event() {
        let problem = onstage_client::MediaProblem {
            device: DeviceKind::Speaker,
            code: MediaErrorCode::DeviceError,
            message: "device error: gone".into(),
        };
        assert_eq!(
            serde_json::to_value(CommandError::from(problem)).unwrap(),
            json!({"code": "device_error", "message": "device error: gone", "device": "speaker"})
        );
    }

    #[test]
    fn an_app_error_is_the_error_with_its_context() {
        let e = AppError {
            error: CommandError::new(Code::BadLink, "no token"),
            context: Context::Link,
        };
        assert_eq!(
            serde_json::to_value(&e).unwrap(),
            json!({"code": "bad_link", "message": "no token", "context": "link"})
        );
        let e = AppError {
            error: MediaError::Device(DeviceKind::Camera, "x".into()).into(),
            context: Context::Start,
        };
        assert_eq!(
            serde_json::to_value(&e).unwrap(),
            json!({"code": "device_error", "message": "device error: x", "device": "camera", "context": "start"})
        );
    }
}
