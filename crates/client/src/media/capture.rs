//! The capture threads: open a camera or microphone (or its synthetic stand-in), read it on
//! a plain thread (reads block), hand every picture to the local preview and every
//! microphone frame to the level meter, and encode to the publisher when there is one.
//! [`Devices`] holds the threads of one job and follows [`plan::capture`].

use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle as ThreadHandle;

use onstage_media::{
    AudioSource, CameraSource, EncoderConfig, H264Encoder, MediaError, MicrophoneSource,
    OpusEncoder, SyntheticAudio, SyntheticVideo, VideoSource,
};
use tokio::sync::{mpsc, watch};

use super::plan::{self, CaptureAction, CaptureInputs, CaptureState, Captures, Slot};
use super::stats::LevelMeter;
use super::{AudioLevel, Device, MediaConfig, Origin, Shared, Sources};

/// Counts an open source for as long as it lives.
struct OpenSource<S> {
    source: S,
    shared: Arc<Shared>,
}

impl<S> OpenSource<S> {
    fn new(source: S, shared: &Arc<Shared>) -> Self {
        shared.open_sources.fetch_add(1, Ordering::SeqCst);
        Self {
            source,
            shared: shared.clone(),
        }
    }
}

impl<S> Drop for OpenSource<S> {
    fn drop(&mut self) {
        self.shared.open_sources.fetch_sub(1, Ordering::SeqCst);
    }
}

fn open_video(config: &MediaConfig) -> Result<Option<Box<dyn VideoSource>>, MediaError> {
    let f = config.video;
    Ok(match &config.sources {
        Sources::None => None,
        Sources::Synthetic { .. } => Some(Box::new(SyntheticVideo::new(f.width, f.height, f.fps))),
        Sources::Devices { camera, .. } => {
            Some(Box::new(CameraSource::open(camera.as_deref(), f)?))
        }
    })
}

fn open_audio(config: &MediaConfig) -> Result<Option<Box<dyn AudioSource>>, MediaError> {
    Ok(match &config.sources {
        Sources::None => None,
        Sources::Synthetic { tone_hz } => Some(Box::new(SyntheticAudio::new(*tone_hz))),
        Sources::Devices { microphone, .. } => {
            Some(Box::new(MicrophoneSource::open(microphone.as_deref())?))
        }
    })
}

/// Control shared between the network side and a capture thread.
pub(super) struct CaptureControl {
    stop: AtomicBool,
    pub(super) keyframe: AtomicBool,
    pub(super) bitrate: AtomicU32,
}

impl CaptureControl {
    fn new(bitrate: u32) -> Arc<Self> {
        Arc::new(CaptureControl {
            stop: AtomicBool::new(false),
            keyframe: AtomicBool::new(false),
            bitrate: AtomicU32::new(bitrate),
        })
    }
}

/// A capture thread and its switch.
struct Capture {
    control: Arc<CaptureControl>,
    thread: ThreadHandle<()>,
}

impl Capture {
    /// Stops the thread and waits until it has dropped its source (the device is closed).
    async fn end(self) {
        self.control.stop.store(true, Ordering::SeqCst);
        let _ = tokio::task::spawn_blocking(move || self.thread.join()).await;
    }
}

/// Opens a device off the async threads (a device may take a while to open) and counts it
/// as open. `None` when there is none to open or it failed (the failure is reported).
async fn open_source<S: ?Sized + Send + 'static>(
    device: Device,
    shared: &Arc<Shared>,
    open: impl FnOnce() -> Result<Option<Box<S>>, MediaError> + Send + 'static,
) -> Option<OpenSource<Box<S>>> {
    match tokio::task::spawn_blocking(open).await {
        Ok(Ok(Some(source))) => Some(OpenSource::new(source, shared)),
        Ok(Ok(None)) => None,
        Ok(Err(e)) => {
            shared.device_error(device, &e);
            None
        }
        Err(e) => {
            shared.error(device.as_str(), &e);
            None
        }
    }
}

/// Opens the camera and starts capturing: every picture to the local preview, and encoded
/// to `out` when given (publishing).
async fn start_video(
    config: &MediaConfig,
    shared: &Arc<Shared>,
    out: Option<mpsc::Sender<Vec<u8>>>,
) -> Option<Capture> {
    let cfg = config.clone();
    let source = open_source(Device::Camera, shared, move || open_video(&cfg)).await?;
    let control = CaptureControl::new(config.video_bitrate_bps);
    let (c, s, cfg) = (control.clone(), shared.clone(), config.clone());
    let thread = std::thread::spawn(move || video_capture(source, cfg, c, out, s));
    Some(Capture { control, thread })
}

/// Opens the microphone and starts capturing: levels always, encoded packets to `out`
/// when given.
async fn start_audio(
    config: &MediaConfig,
    shared: &Arc<Shared>,
    out: Option<mpsc::Sender<Vec<u8>>>,
) -> Option<Capture> {
    let cfg = config.clone();
    let source = open_source(Device::Microphone, shared, move || open_audio(&cfg)).await?;
    let control = CaptureControl::new(0);
    let (c, s, rate) = (control.clone(), shared.clone(), config.audio_bitrate_bps);
    let thread = std::thread::spawn(move || audio_capture(source, rate, c, out, s));
    Some(Capture { control, thread })
}

/// The device check and green room off stage: camera pictures to the app, microphone
/// levels, nothing encoded or sent.
pub(super) async fn run_preview(
    config: MediaConfig,
    shared: Arc<Shared>,
    mut stop: watch::Receiver<bool>,
) {
    let mut controls = shared.controls.subscribe();
    let mut choice = shared.devices.subscribe();
    let mut devices = Devices::new(None, None);
    loop {
        let inputs = CaptureInputs {
            audio: true,
            video: true,
            controls: shared.controls(),
            devices: shared.devices(),
        };
        devices.follow(&inputs, &config, &shared).await;
        tokio::select! {
            r = controls.changed() => if r.is_err() { break },
            r = choice.changed() => if r.is_err() { break },
            _ = stop.changed() => break,
        }
    }
    devices.end().await;
}

/// The capture threads of the job that holds the devices (the preview or the publisher),
/// started and stopped as [`plan::capture`] says.
pub(super) struct Devices {
    audio: Option<Capture>,
    audio_slot: Slot,
    video: Option<Capture>,
    video_slot: Slot,
    /// Where encoded packets and pictures go; `None` for the preview (nothing is encoded).
    audio_out: Option<mpsc::Sender<Vec<u8>>>,
    video_out: Option<mpsc::Sender<Vec<u8>>>,
}

impl Devices {
    pub(super) fn new(
        audio_out: Option<mpsc::Sender<Vec<u8>>>,
        video_out: Option<mpsc::Sender<Vec<u8>>>,
    ) -> Self {
        Devices {
            audio: None,
            audio_slot: Slot::default(),
            video: None,
            video_slot: Slot::default(),
            audio_out,
            video_out,
        }
    }

    fn states(&self) -> Captures {
        Captures {
            audio: self.audio_slot.clone(),
            video: self.video_slot.clone(),
        }
    }

    /// Applies what [`plan::capture`] says for `inputs` and returns the actions taken.
    pub(super) async fn follow(
        &mut self,
        inputs: &CaptureInputs,
        config: &MediaConfig,
        shared: &Arc<Shared>,
    ) -> Vec<CaptureAction> {
        let actions = plan::capture(inputs, &self.states());
        let config = config.with_devices(&inputs.devices);
        for action in &actions {
            match action {
                // Awaited: the thread has dropped its source, so the device is closed and
                // can be opened again at once.
                CaptureAction::StopAudio => {
                    if let Some(a) = self.audio.take() {
                        a.end().await;
                    }
                    self.audio_slot.state = CaptureState::Stopped;
                }
                CaptureAction::StopVideo => {
                    if let Some(v) = self.video.take() {
                        v.end().await;
                    }
                    self.video_slot.state = CaptureState::Stopped;
                }
                CaptureAction::StartAudio => {
                    self.audio = start_audio(&config, shared, self.audio_out.clone()).await;
                    self.audio_slot = Slot {
                        state: state_of(&self.audio),
                        device: inputs.devices.microphone.clone(),
                    };
                }
                CaptureAction::StartVideo => {
                    self.video = start_video(&config, shared, self.video_out.clone()).await;
                    self.video_slot = Slot {
                        state: state_of(&self.video),
                        device: inputs.devices.camera.clone(),
                    };
                }
            }
        }
        actions
    }

    /// The camera's thread, to steer its encoder.
    pub(super) fn video(&self) -> Option<&CaptureControl> {
        self.video.as_ref().map(|c| c.control.as_ref())
    }

    /// The camera was asked for and failed to open.
    pub(super) fn video_failed(&self) -> bool {
        self.video_slot.state == CaptureState::Failed
    }

    /// The microphone is open.
    pub(super) fn has_audio(&self) -> bool {
        self.audio.is_some()
    }

    /// Stops both threads and waits until the devices are closed.
    pub(super) async fn end(mut self) {
        for capture in [self.video.take(), self.audio.take()].into_iter().flatten() {
            capture.end().await;
        }
    }
}

fn state_of(capture: &Option<Capture>) -> CaptureState {
    match capture {
        Some(_) => CaptureState::Running,
        None => CaptureState::Failed,
    }
}

fn video_capture(
    mut source: OpenSource<Box<dyn VideoSource>>,
    config: MediaConfig,
    control: Arc<CaptureControl>,
    out: Option<mpsc::Sender<Vec<u8>>>,
    shared: Arc<Shared>,
) {
    let format = source.source.format();
    let mut encoder = match &out {
        None => None,
        Some(_) => match H264Encoder::new(EncoderConfig {
            width: format.width,
            height: format.height,
            fps: format.fps,
            bitrate_bps: config.video_bitrate_bps,
        }) {
            Ok(e) => Some(e),
            Err(e) => return shared.error("video encoder", &e),
        },
    };
    while !control.stop.load(Ordering::SeqCst) {
        let frame = match source.source.next_frame() {
            Ok(f) => f,
            Err(e) => return shared.device_error(Device::Camera, &e),
        };
        if control.stop.load(Ordering::SeqCst) {
            break;
        }
        shared.local_picture(&frame, out.is_some());
        let (Some(encoder), Some(out)) = (encoder.as_mut(), out.as_ref()) else {
            continue;
        };
        if control.keyframe.swap(false, Ordering::SeqCst) {
            encoder.request_keyframe();
        }
        let target = control.bitrate.load(Ordering::SeqCst);
        if target != 0 && target != encoder.bitrate() {
            if let Err(e) = encoder.set_bitrate(target) {
                tracing::debug!(error = %e, "bitrate change");
            }
            shared.stats().video_bitrate_bps = Some(encoder.bitrate());
        }
        match encoder.encode(&frame) {
            Ok(Some(au)) => match out.try_send(au.data) {
                Ok(()) => {}
                // The network cannot keep up: drop this picture, and restart the decoders
                // downstream with a keyframe.
                Err(mpsc::error::TrySendError::Full(_)) => {
                    control.keyframe.store(true, Ordering::SeqCst);
                }
                Err(mpsc::error::TrySendError::Closed(_)) => break,
            },
            Ok(None) => {}
            Err(e) => return shared.error("video encoder", &e),
        }
    }
}

fn audio_capture(
    mut source: OpenSource<Box<dyn AudioSource>>,
    bitrate: u32,
    control: Arc<CaptureControl>,
    out: Option<mpsc::Sender<Vec<u8>>>,
    shared: Arc<Shared>,
) {
    let mut encoder = match &out {
        None => None,
        Some(_) => match OpusEncoder::new(bitrate) {
            Ok(e) => Some(e),
            Err(e) => return shared.error("audio encoder", &e),
        },
    };
    let mut meter = LevelMeter::default();
    while !control.stop.load(Ordering::SeqCst) {
        let frame = match source.source.next_frame() {
            Ok(f) => f,
            Err(e) => return shared.device_error(Device::Microphone, &e),
        };
        if let Some(level) = meter.add(&frame.samples) {
            let _ = shared.levels.send(AudioLevel {
                origin: Origin::Local,
                level,
            });
        }
        let (Some(encoder), Some(out)) = (encoder.as_mut(), out.as_ref()) else {
            continue;
        };
        match encoder.encode(&frame) {
            Ok(packet) => {
                if let Err(mpsc::error::TrySendError::Closed(_)) = out.try_send(packet) {
                    break;
                }
            }
            Err(e) => return shared.error("audio encoder", &e),
        }
    }
}
