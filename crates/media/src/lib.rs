//! # onstage-media — frames, sources, codecs and the speaker mix
//!
//! Everything the Onstage client needs to turn a camera and a microphone into H.264 and
//! Opus, and remote H.264/Opus back into pictures and one speaker signal. It knows nothing
//! about rooms or WebRTC: the client crate moves the bytes.
//!
//! The front door:
//! - Frames: [`VideoFrame`] (I420, tightly packed, capture time in unix microseconds) and
//!   [`AudioFrame`] (48 kHz mono `i16`, 20 ms = [`AUDIO_FRAME_SAMPLES`] samples).
//! - Sources and sinks: the [`VideoSource`], [`AudioSource`] and [`AudioSink`] traits. Real
//!   devices live in [`devices`] ([`CameraSource`], [`MicrophoneSource`], [`SpeakerSink`]);
//!   machines without devices, tests and bots use [`synthetic`] ([`SyntheticVideo`], a
//!   moving pattern with the frame number and capture time stamped into the picture, read
//!   back with [`read_stamp`]; [`SyntheticAudio`], a sine tone). Sources block until their
//!   next frame is due, so a loop over `next_frame()` runs in real time.
//! - Codecs in [`codec`]: [`H264Encoder`] (constrained baseline, keyframes on request,
//!   live bitrate changes), [`H264Decoder`], [`OpusEncoder`], [`OpusDecoder`] (with loss
//!   concealment).
//! - Receive side audio in [`mix`]: a [`JitterBuffer`] per remote source (decoded frames,
//!   or Opus packets to decode in order with concealment on [`Playout::Lost`]) and the
//!   [`AudioMixer`] that sums them once per 20 ms tick.
//! - Pixel conversions in [`convert`].
//!
//! Every failure is a [`MediaError`] whose [`MediaError::code`] is a stable
//! [`MediaErrorCode`] the UI can show as a state ("no camera" is `device_not_found`, not a
//! crash); a device error also says which [`DeviceKind`] it is about.
//!
//! ```
//! use onstage_media::{H264Decoder, H264Encoder, EncoderConfig, SyntheticVideo, VideoSource, read_stamp};
//! # fn main() -> Result<(), onstage_media::MediaError> {
//! let mut camera = SyntheticVideo::unpaced(320, 240, 30);
//! let mut encoder = H264Encoder::new(EncoderConfig { width: 320, height: 240, fps: 30, bitrate_bps: 300_000 })?;
//! let mut decoder = H264Decoder::new()?;
//! let frame = camera.next_frame()?;
//! let encoded = encoder.encode(&frame)?.expect("the first frame is never skipped");
//! assert!(encoded.keyframe);
//! let picture = decoder.decode(&encoded.data)?.expect("a keyframe decodes to a picture");
//! assert_eq!(read_stamp(&picture).map(|s| s.frame_number), Some(0));
//! # Ok(()) }
//! ```

pub mod codec;
pub mod convert;
pub mod devices;
mod error;
mod frame;
pub mod mix;
pub mod synthetic;

pub use codec::{
    EncodedVideo, EncoderComplexity, EncoderConfig, H264Decoder, H264Encoder, OpusDecoder,
    OpusEncoder, MAX_BITRATE_BPS, MIN_BITRATE_BPS,
};
pub use convert::{downscale, half_size, i420_to_rgb, i420_to_rgba, rgb_to_i420, rgba_to_i420};
pub use devices::{
    find_device, list_cameras, list_devices, list_microphones, list_speakers, CameraSource,
    DeviceInfo, MicrophoneSource, SpeakerSink,
};
pub use error::{DeviceKind, MediaError, MediaErrorCode};
pub use frame::{AudioFrame, VideoFormat, VideoFrame, AUDIO_FRAME_SAMPLES, AUDIO_SAMPLE_RATE};
pub use mix::{AudioMixer, JitterBuffer, Playout};
pub use synthetic::{
    dominant_frequency, read_stamp, tone_level, write_stamp, Stamp, SyntheticAudio, SyntheticVideo,
};

/// Something that produces pictures: a camera or a synthetic pattern.
///
/// `Send` so a capture thread can own it; not `Sync` because cameras are not.
pub trait VideoSource: Send {
    /// The size and rate of the frames this source produces.
    fn format(&self) -> VideoFormat;

    /// Blocks until the next frame is due (sources pace themselves in real time) and
    /// returns it.
    ///
    /// # Errors
    /// A device failure (`device_error`), or `closed` when the source has ended.
    fn next_frame(&mut self) -> Result<VideoFrame, MediaError>;
}

/// Something that produces sound: a microphone or a synthetic tone.
pub trait AudioSource: Send {
    /// Blocks until the next 20 ms frame (48 kHz mono) is available and returns it.
    ///
    /// # Errors
    /// A device failure (`device_error`), or `closed` when the source has ended.
    fn next_frame(&mut self) -> Result<AudioFrame, MediaError>;
}

/// Something that plays sound: a speaker.
pub trait AudioSink: Send {
    /// Queues one frame (48 kHz mono) for playback without blocking for long.
    ///
    /// # Errors
    /// A device failure reported since the last call (`device_error`), or `closed`.
    fn play(&mut self, frame: &AudioFrame) -> Result<(), MediaError>;
}

/// Wall-clock time in microseconds since the unix epoch, the time base of every frame's
/// `timestamp_us` (so a receiver can compare it with its own clock for glass-to-glass delay).
pub fn now_unix_us() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    /// Capture, encode and playback run on their own threads: everything must be `Send`.
    #[test]
    fn public_types_are_send() {
        fn send<T: Send>() {}
        send::<crate::H264Encoder>();
        send::<crate::H264Decoder>();
        send::<crate::OpusEncoder>();
        send::<crate::OpusDecoder>();
        send::<crate::CameraSource>();
        send::<crate::MicrophoneSource>();
        send::<crate::SpeakerSink>();
        send::<crate::SyntheticVideo>();
        send::<crate::SyntheticAudio>();
        send::<crate::AudioMixer>();
        send::<crate::JitterBuffer>();
        send::<Box<dyn crate::VideoSource>>();
        send::<Box<dyn crate::AudioSource>>();
        send::<Box<dyn crate::AudioSink>>();
    }
}
