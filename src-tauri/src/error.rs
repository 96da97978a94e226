//! The errors the UI receives (docs/APP.md "Errors"): a refused command ([`CommandError`]),
//! the `media-error` event (the same shape) and the `app-error` event ([`AppError`]).
//!
//! Every one carries a [`Code`] from one list: the SDK's codes, the media codes and the
//! shell's own. The UI words errors by code, and names the device of a device error from
//! `device`, which is set where the error came from (the media layer knows which device it
//! opened), never read out of the message.

use serde::Serialize;

use onstage_client::ClientError;
pub use onstage_media::MediaErrorCode;
use onstage_media::{DeviceKind, MediaError};
pub use onstage_proto::ErrorCode;

/// Every code the UI can receive, serialized as its snake_case string: the SDK's
/// (`onstage_proto::ErrorCode`: what the server and the connection say), the media crate's
/// (`onstage_media::MediaErrorCode`: devices and codecs) and the shell's own. Each keeps
/// its one definition; a code added to either crate reaches the UI by itself (and belongs
/// in docs/APP.md and the UI's `ErrorCode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(untagged)]
pub enum Code {
    Sdk(ErrorCode),
    Media(MediaErrorCode),
    Shell(ShellCode),
}

/// The shell's own codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ShellCode {
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
        Self::Sdk(code)
    }
}

impl From<MediaErrorCode> for Code {
    fn from(code: MediaErrorCode) -> Self {
        Self::Media(code)
    }
}

impl From<ShellCode> for Code {
    fn from(code: ShellCode) -> Self {
        Self::Shell(code)
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
        Self::new(Code::Sdk(ErrorCode::Internal), message)
    }

    pub fn not_joined() -> Self {
        Self::new(Code::Sdk(ErrorCode::InvalidState), "not in a meeting")
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
    /// A role link that came without the guest's name (opened from outside, or given at
    /// start without `--name`): the join form takes it and asks for the name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub link: Option<String>,
}

impl AppError {
    pub fn new(error: CommandError, context: Context) -> Self {
        Self {
            error,
            context,
            link: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// The strings the UI matches on (ui/src/lib/types.ts `ERROR_CODES`, docs/APP.md).
    #[test]
    fn codes_serialize_as_the_strings_the_ui_knows() {
        let all = [
            (Code::Sdk(ErrorCode::Unauthorized), "unauthorized"),
            (Code::Sdk(ErrorCode::TokenExpired), "token_expired"),
            (Code::Sdk(ErrorCode::TokenRevoked), "token_revoked"),
            (Code::Sdk(ErrorCode::PermissionDenied), "permission_denied"),
            (Code::Sdk(ErrorCode::InvalidState), "invalid_state"),
            (Code::Sdk(ErrorCode::NotFound), "not_found"),
            (Code::Sdk(ErrorCode::StageFull), "stage_full"),
            (Code::Sdk(ErrorCode::MeetingFull), "meeting_full"),
            (Code::Sdk(ErrorCode::BadRequest), "bad_request"),
            (Code::Sdk(ErrorCode::RateLimited), "rate_limited"),
            (Code::Sdk(ErrorCode::Internal), "internal"),
            (Code::Sdk(ErrorCode::ConnectionLost), "connection_lost"),
            (Code::Sdk(ErrorCode::UntrustedServer), "untrusted_server"),
            (Code::Sdk(ErrorCode::Unreachable), "unreachable"),
            (Code::Sdk(ErrorCode::NotOnstageServer), "not_onstage_server"),
            (Code::Sdk(ErrorCode::InvalidServerUrl), "invalid_server_url"),
            (
                Code::Media(MediaErrorCode::DeviceNotFound),
                "device_not_found",
            ),
            (Code::Media(MediaErrorCode::DeviceBusy), "device_busy"),
            (Code::Media(MediaErrorCode::DeviceError), "device_error"),
            (Code::Media(MediaErrorCode::DeviceLost), "device_lost"),
            (
                Code::Media(MediaErrorCode::UnsupportedFormat),
                "unsupported_format",
            ),
            (Code::Media(MediaErrorCode::CodecError), "codec_error"),
            (Code::Media(MediaErrorCode::Closed), "closed"),
            (Code::Sdk(ErrorCode::BadLink), "bad_link"),
            (Code::Shell(ShellCode::BadAddress), "bad_address"),
            (Code::Shell(ShellCode::PortInUse), "port_in_use"),
            (Code::Shell(ShellCode::Unavailable), "unavailable"),
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
            ErrorCode::MeetingFull,
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
            MediaErrorCode::DeviceLost,
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
        assert_eq!(mic.code, Code::Media(MediaErrorCode::DeviceBusy));
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
        let e = AppError::new(
            CommandError::new(Code::Sdk(ErrorCode::BadLink), "no token"),
            Context::Link,
        );
        assert_eq!(
            serde_json::to_value(&e).unwrap(),
            json!({"code": "bad_link", "message": "no token", "context": "link"})
        );
        let e = AppError::new(
            MediaError::Device(DeviceKind::Camera, "x".into()).into(),
            Context::Start,
        );
        assert_eq!(
            serde_json::to_value(&e).unwrap(),
            json!({"code": "device_error", "message": "device error: x", "device": "camera", "context": "start"})
        );
        let e = AppError {
            link: Some("onstage://join?server=https%3A%2F%2Fh&invite=i".into()),
            ..AppError::new(
                CommandError::new(Code::Sdk(ErrorCode::BadRequest), "give your name"),
                Context::Link,
            )
        };
        assert_eq!(
            serde_json::to_value(&e).unwrap(),
            json!({"code": "bad_request", "message": "give your name", "context": "link",
                   "link": "onstage://join?server=https%3A%2F%2Fh&invite=i"})
        );
    }
}
