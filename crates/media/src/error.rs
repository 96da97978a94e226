//! The one error type of the crate.

/// What went wrong with a device, a codec or a frame.
///
/// The UI shows device problems as states rather than crashes, so every variant maps to a
/// stable [`code`](MediaError::code) that other crates and the frontend can match on; the
/// message is for logs.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MediaError {
    /// No such device (none plugged in, or the id names one that is gone).
    #[error("device not found: {0}")]
    DeviceNotFound(String),
    /// The device exists but another program (or stream) holds it.
    #[error("device busy: {0}")]
    DeviceBusy(String),
    /// The device or the audio/video system failed in some other way.
    #[error("device error: {0}")]
    Device(String),
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
    /// A stable, machine-readable code: `device_not_found`, `device_busy`, `device_error`,
    /// `unsupported_format`, `codec_error` or `closed`.
    pub fn code(&self) -> &'static str {
        match self {
            Self::DeviceNotFound(_) => "device_not_found",
            Self::DeviceBusy(_) => "device_busy",
            Self::Device(_) => "device_error",
            Self::UnsupportedFormat(_) => "unsupported_format",
            Self::Codec(_) => "codec_error",
            Self::Closed => "closed",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::MediaError;

    #[test]
    fn codes_are_stable() {
        let cases = [
            (MediaError::DeviceNotFound("x".into()), "device_not_found"),
            (MediaError::DeviceBusy("x".into()), "device_busy"),
            (MediaError::Device("x".into()), "device_error"),
            (
                MediaError::UnsupportedFormat("x".into()),
                "unsupported_format",
            ),
            (MediaError::Codec("x".into()), "codec_error"),
            (MediaError::Closed, "closed"),
        ];
        for (err, code) in cases {
            assert_eq!(err.code(), code);
        }
    }
}
