//! Raw frames: what sources produce, encoders take and decoders give back.

use crate::MediaError;

/// Every audio frame in the crate is 48 kHz: Opus's native rate, so nothing resamples
/// between the microphone conversion and the speaker.
pub const AUDIO_SAMPLE_RATE: u32 = 48_000;

/// Samples in one 20 ms mono frame at [`AUDIO_SAMPLE_RATE`]: the Opus packet size WebRTC
/// uses by default, and the tick of the mixer.
pub const AUDIO_FRAME_SAMPLES: usize = 960;

/// Size and rate of a video stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct VideoFormat {
    /// Width in pixels (even).
    pub width: u32,
    /// Height in pixels (even).
    pub height: u32,
    /// Frames per second.
    pub fps: u32,
}

/// One picture in I420 (YUV 4:2:0, BT.601 limited range), tightly packed.
///
/// The Y plane is `width * height` bytes with stride `width`; U and V are each
/// `(width / 2) * (height / 2)` with stride `width / 2`. Width and height are even, which
/// 4:2:0 subsampling and H.264 need. Tight packing keeps frames trivially comparable and
/// sendable between threads; converting to and from strided buffers happens at the edges
/// (camera, codec).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VideoFrame {
    /// Width in pixels (even).
    pub width: u32,
    /// Height in pixels (even).
    pub height: u32,
    /// Luma plane, `width * height` bytes.
    pub y: Vec<u8>,
    /// Blue-difference chroma plane, `width/2 * height/2` bytes.
    pub u: Vec<u8>,
    /// Red-difference chroma plane, `width/2 * height/2` bytes.
    pub v: Vec<u8>,
    /// Capture time in microseconds since the unix epoch (0 when unknown, e.g. straight
    /// out of a decoder: the receiver sets it from RTP).
    pub timestamp_us: u64,
}

impl VideoFrame {
    /// A black picture (Y = 16, U = V = 128 in limited range), e.g. for a muted camera.
    /// Odd sizes are rounded down to even.
    pub fn black(width: u32, height: u32, timestamp_us: u64) -> Self {
        let (width, height) = (width & !1, height & !1);
        let luma = width as usize * height as usize;
        Self {
            width,
            height,
            y: vec![16; luma],
            u: vec![128; luma / 4],
            v: vec![128; luma / 4],
            timestamp_us,
        }
    }

    /// Checks the invariants (even, non-zero size; plane lengths match), so code that
    /// hands the planes to C never reads out of bounds.
    ///
    /// # Errors
    /// `unsupported_format` naming what is wrong.
    pub fn validate(&self) -> Result<(), MediaError> {
        if self.width == 0 || self.height == 0 || self.width % 2 != 0 || self.height % 2 != 0 {
            return Err(MediaError::UnsupportedFormat(format!(
                "frame size {}x{} must be even and non-zero",
                self.width, self.height
            )));
        }
        let luma = self.width as usize * self.height as usize;
        if self.y.len() != luma || self.u.len() != luma / 4 || self.v.len() != luma / 4 {
            return Err(MediaError::UnsupportedFormat(format!(
                "plane sizes y={} u={} v={} do not match {}x{} I420",
                self.y.len(),
                self.u.len(),
                self.v.len(),
                self.width,
                self.height
            )));
        }
        Ok(())
    }

    /// The format of this frame at the given rate.
    pub fn format(&self, fps: u32) -> VideoFormat {
        VideoFormat {
            width: self.width,
            height: self.height,
            fps,
        }
    }

    /// RGBA (alpha 255), `width * height * 4` bytes, for drawing in the UI.
    ///
    /// A frame whose planes are too short (see [`validate`](Self::validate)) converts
    /// the part that exists and leaves the rest black rather than panicking.
    pub fn to_rgba(&self) -> Vec<u8> {
        crate::convert::i420_to_rgba(self)
    }
}

/// 20 ms of 48 kHz mono audio ([`AUDIO_FRAME_SAMPLES`] samples).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AudioFrame {
    /// Signed 16-bit PCM samples.
    pub samples: Vec<i16>,
    /// Capture time of the first sample, in microseconds since the unix epoch (0 when
    /// unknown).
    pub timestamp_us: u64,
}

impl AudioFrame {
    /// 20 ms of silence.
    pub fn silence(timestamp_us: u64) -> Self {
        Self {
            samples: vec![0; AUDIO_FRAME_SAMPLES],
            timestamp_us,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn black_frame_is_valid_and_black() {
        let f = VideoFrame::black(64, 48, 7);
        assert!(f.validate().is_ok());
        assert_eq!(f.timestamp_us, 7);
        let rgba = f.to_rgba();
        assert_eq!(rgba.len(), 64 * 48 * 4);
        assert!(rgba.chunks(4).all(|p| p == [0, 0, 0, 255]));
    }

    #[test]
    fn odd_black_is_rounded_down() {
        let f = VideoFrame::black(65, 49, 0);
        assert_eq!((f.width, f.height), (64, 48));
        assert!(f.validate().is_ok());
    }

    #[test]
    fn validate_rejects_bad_frames() {
        let mut f = VideoFrame::black(64, 48, 0);
        f.u.pop();
        assert_eq!(
            f.validate().map_err(|e| e.code().as_str()),
            Err("unsupported_format")
        );
        let f = VideoFrame {
            width: 3,
            height: 2,
            y: vec![0; 6],
            u: vec![],
            v: vec![],
            timestamp_us: 0,
        };
        assert_eq!(
            f.validate().map_err(|e| e.code().as_str()),
            Err("unsupported_format")
        );
        // Converting a broken frame does not panic.
        assert_eq!(f.to_rgba().len(), 3 * 2 * 4);
    }
}
