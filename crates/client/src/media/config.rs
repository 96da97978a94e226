//! How stage media runs and what the user has switched on: the sources, formats and
//! bitrates ([`MediaConfig`]), the switches ([`Controls`]) and the devices a
//! [`MediaProblem`] can be about.

use onstage_media::{MediaErrorCode, VideoFormat};
use onstage_proto::MediaKinds;
use serde::Serialize;

use crate::rtc::TransportConfig;

/// Where published media comes from.
#[derive(Debug, Clone, PartialEq)]
pub enum Sources {
    /// Publish nothing (receive only).
    None,
    /// A moving test pattern stamped with frame number and capture time, and a sine tone.
    Synthetic { tone_hz: f32 },
    /// The real camera and microphone; `None` picks the default device.
    Devices {
        camera: Option<String>,
        microphone: Option<String>,
    },
}

/// How [`StageMedia`](super::StageMedia) runs.
#[derive(Debug, Clone)]
pub struct MediaConfig {
    pub sources: Sources,
    /// Capture size and rate (default 640x480 at 30 fps).
    pub video: VideoFormat,
    /// Starting video bitrate; the encoder then follows the transport's estimate. A plain
    /// stream goes up to twice this; simulcast layers have their own rates (see
    /// [`super::layers`]).
    pub video_bitrate_bps: u32,
    /// Publish a capture of at least 640x360 as simulcast layers (two, or three from
    /// 1280x720), each encoded on its own, so that every viewer can get the one its tile
    /// and its network take. Off: one stream of the capture. On by default.
    pub simulcast: bool,
    pub audio_bitrate_bps: u32,
    /// Which of the camera and the microphone are captured at all (both by default). One
    /// left out is never opened, previewed or offered: a participant without a camera
    /// publishes audio only, without ever trying the device.
    pub capture: MediaKinds,
    /// Decode received video (the app and the tests want pictures; a pure listener may not).
    pub decode_video: bool,
    /// Play the mix of everyone on stage on the default speaker. A missing speaker is
    /// logged, not fatal.
    pub play_audio: bool,
    /// The speaker the mix plays on (a device id or name from the listing); `None` is the
    /// system's default.
    pub speaker: Option<String>,
    pub transport: TransportConfig,
}

impl Default for MediaConfig {
    fn default() -> Self {
        Self {
            sources: Sources::None,
            video: VideoFormat {
                width: 640,
                height: 480,
                fps: 30,
            },
            video_bitrate_bps: 1_000_000,
            simulcast: true,
            audio_bitrate_bps: 32_000,
            capture: MediaKinds::BOTH,
            decode_video: true,
            play_audio: false,
            speaker: None,
            transport: TransportConfig::default(),
        }
    }
}

/// Which camera and microphone to open (device ids from the listings); `None` is the
/// system's default.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DeviceChoice {
    pub camera: Option<String>,
    pub microphone: Option<String>,
}

impl MediaConfig {
    /// The devices [`Sources::Devices`] names; the defaults for other sources.
    pub fn devices(&self) -> DeviceChoice {
        match &self.sources {
            Sources::Devices { camera, microphone } => DeviceChoice {
                camera: camera.clone(),
                microphone: microphone.clone(),
            },
            Sources::None | Sources::Synthetic { .. } => DeviceChoice::default(),
        }
    }

    /// This configuration opening `choice` instead (real devices only).
    pub(super) fn with_devices(&self, choice: &DeviceChoice) -> MediaConfig {
        let mut config = self.clone();
        if let Sources::Devices { camera, microphone } = &mut config.sources {
            camera.clone_from(&choice.camera);
            microphone.clone_from(&choice.microphone);
        }
        config
    }
}

/// What the user has switched on: the microphone (off = muted: nothing is sent), the
/// camera (off = closed) and the local preview (device check, green room).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Controls {
    pub mic: bool,
    pub camera: bool,
    pub preview: bool,
}

impl Default for Controls {
    fn default() -> Self {
        Self {
            mic: true,
            camera: true,
            preview: false,
        }
    }
}

/// Which device a [`MediaProblem`] is about: the media crate's kind, so that a device
/// error and the problem it becomes name the same device.
pub use onstage_media::DeviceKind as Device;

/// A device that could not be used: `code` is the stable media code (`device_not_found`,
/// `device_busy`, `device_error`, ...).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MediaProblem {
    pub device: Device,
    pub code: MediaErrorCode,
    pub message: String,
}
