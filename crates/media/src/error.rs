//! The one error type of the crate, its stable code and the device it is about.

use serde::Serialize;

/// Which kind of device an error (or anything else) is about.
///
/// Carried by the device errors because whoever opened the device knows which one it was;
/// the UI names the device from this, never from the message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
#[derive(strum::IntoStaticStr, strum::Display, strum::VariantArray)]
#[strum(serialize_all = "snake_case")]
pub enum DeviceKind {
    Camera,
    Microphone,
    Speaker,
}

impl DeviceKind {
    /// `camera`, `microphone` or `speaker`.
    pub fn as_str(self) -> &'static str {
        self.into()
    }
}

/// The stable, machine-readable code of a [`MediaError`], serialized as the strings other
/// crates and the frontend match on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
#[derive(strum::IntoStaticStr, strum::Display, strum::VariantArray)]
#[strum(serialize_all = "snake_case")]
pub enum MediaErrorCode {
    DeviceNotFound,
    DeviceBusy,
    DeviceError,
    DeviceLost,
    UnsupportedFormat,
    CodecError,
    Closed,
}

impl MediaErrorCode {
    /// `device_not_found`, `device_busy`, `device_error`, `device_lost`,
    /// `unsupported_format`, `codec_error` or `closed`.
    pub fn as_str(self) -> &'static str {
        self.into()
    }
}

/// What went wrong with a device, a codec or a frame.
///
/// The UI shows device problems as states rather than crashes, so every variant maps to a
/// stable [`code`](MediaError::code) that other crates and the frontend can match on, and a
/// device problem says which [`device`](MediaError::device) it is about; the message is for
/// logs.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MediaError {
    /// No such device (none plugged in, or the id names one that is gone).
    #[error("device not found: {1}")]
    DeviceNotFound(DeviceKind, String),
    /// The device exists but another program (or stream) holds it.
    #[error("device busy: {1}")]
    DeviceBusy(DeviceKind, String),
    /// The device or the audio/video system failed in some other way.
    #[error("device error: {1}")]
    Device(DeviceKind, String),
    /// A device that was open and working went away (unplugged, its driver or sound
    /// server gone) or stopped delivering: what was playing or capturing stops until it
    /// is opened again.
    #[error("device lost: {1}")]
    DeviceLost(DeviceKind, String),
    /// A frame, packet or device format this crate cannot handle (odd sizes, wrong
    /// lengths, unknown sample formats).
    #[error("unsupported format: {0}")]
    UnsupportedFormat(String),
    /// The encoder or decoder failed (corrupt input, missing references, bad settings).
    #[error("codec error: {0}")]
    Codec(String),
    /// The source or sink has been shut down.
    #[error("closed")]
    Closed,
}

impl MediaError {
    /// The stable code; [`MediaErrorCode::as_str`] gives its string.
    pub fn code(&self) -> MediaErrorCode {
        match self {
            Self::DeviceNotFound(..) => MediaErrorCode::DeviceNotFound,
            Self::DeviceBusy(..) => MediaErrorCode::DeviceBusy,
            Self::Device(..) => MediaErrorCode::DeviceError,
            Self::DeviceLost(..) => MediaErrorCode::DeviceLost,
            Self::UnsupportedFormat(_) => MediaErrorCode::UnsupportedFormat,
            Self::Codec(_) => MediaErrorCode::CodecError,
            Self::Closed => MediaErrorCode::Closed,
        }
    }

    /// The device a device error is about (the one that was being listed, opened or
    /// used); `None` for the errors that are not about a device.
    pub fn device(&self) -> Option<DeviceKind> {
        match self {
            Self::DeviceNotFound(d, _)
            | Self::DeviceBusy(d, _)
            | Self::Device(d, _)
            | Self::DeviceLost(d, _) => Some(*d),
            Self::UnsupportedFormat(_) | Self::Codec(_) | Self::Closed => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{DeviceKind, MediaError, MediaErrorCode};
    use strum::VariantArray;

    #[test]
    fn names_are_spelt_as_on_the_wire() {
        for kind in DeviceKind::VARIANTS {
            let wire = serde_json::to_value(kind).expect("serializes");
            assert_eq!(wire, serde_json::json!(kind.as_str()));
            assert_eq!(wire, serde_json::json!(kind.to_string()));
        }
        for code in MediaErrorCode::VARIANTS {
            let wire = serde_json::to_value(code).expect("serializes");
            assert_eq!(wire, serde_json::json!(code.as_str()));
            assert_eq!(wire, serde_json::json!(code.to_string()));
        }
    }

    #[test]
    fn codes_are_stable() {
        let cam = DeviceKind::Camera;
        let cases = [
            (
                MediaError::DeviceNotFound(cam, "x".into()),
                MediaErrorCode::DeviceNotFound,
                "device_not_found",
            ),
            (
                MediaError::DeviceBusy(cam, "x".into()),
                MediaErrorCode::DeviceBusy,
                "device_busy",
            ),
            (
                MediaError::Device(cam, "x".into()),
                MediaErrorCode::DeviceError,
                "device_error",
            ),
            (
                MediaError::DeviceLost(cam, "x".into()),
                MediaErrorCode::DeviceLost,
                "device_lost",
            ),
            (
                MediaError::UnsupportedFormat("x".into()),
                MediaErrorCode::UnsupportedFormat,
                "unsupported_format",
            ),
            (
                MediaError::Codec("x".into()),
                MediaErrorCode::CodecError,
                "codec_error",
            ),
            (MediaError::Closed, MediaErrorCode::Closed, "closed"),
        ];
        for (err, code, text) in cases {
            assert_eq!(err.code(), code);
            assert_eq!(code.as_str(), text);
            // The serialized code is the same string.
            assert_eq!(serde_json::to_value(code).unwrap(), text);
        }
    }

    #[test]
    fn device_errors_name_their_device() {
        for (device, text) in [
            (DeviceKind::Camera, "camera"),
            (DeviceKind::Microphone, "microphone"),
            (DeviceKind::Speaker, "speaker"),
        ] {
            assert_eq!(device.as_str(), text);
            assert_eq!(serde_json::to_value(device).unwrap(), text);
            for err in [
                MediaError::DeviceNotFound(device, "x".into()),
                MediaError::DeviceBusy(device, "x".into()),
                MediaError::Device(device, "x".into()),
                MediaError::DeviceLost(device, "x".into()),
            ] {
                assert_eq!(err.device(), Some(device), "{err}");
            }
        }
        assert_eq!(MediaError::Codec("x".into()).device(), None);
        assert_eq!(MediaError::UnsupportedFormat("x".into()).device(), None);
        assert_eq!(MediaError::Closed.device(), None);
    }

    /// The message is what the logs have always shown: the device is a field, not text.
    #[test]
    fn messages_are_unchanged() {
        assert_eq!(
            MediaError::DeviceNotFound(DeviceKind::Camera, "no camera".into()).to_string(),
            "device not found: no camera"
        );
    }
}
