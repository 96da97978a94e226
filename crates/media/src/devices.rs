//! Real devices: cameras through nokhwa, microphones and speakers through cpal.
//!
//! No device is a normal state, never a crash: listing with nothing plugged in gives an
//! empty list, opening gives [`MediaError::DeviceNotFound`] (or `device_busy` /
//! `device_error`), and every call into the device libraries is guarded against panics.
//! Dropping a source or sink closes the device at once (the camera light goes off when
//! the participant leaves the stage).
//!
//! cpal streams are not `Send` on every platform, so each audio stream lives on its own
//! small thread that owns it from creation to drop; the source/sink talks to it through
//! channels and a shared ring, which keeps [`MicrophoneSource`] and [`SpeakerSink`] `Send`.

use std::collections::VecDeque;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::Duration;

use cpal::traits::{DeviceTrait, HostTrait, StreamTrait};
use cpal::{FromSample, SampleFormat, SizedSample, StreamConfig};
use nokhwa::pixel_format::RgbFormat;
use nokhwa::utils::{
    ApiBackend, CameraFormat, CameraIndex, FrameFormat, RequestedFormat, RequestedFormatType,
};

use crate::convert::rgb_to_i420;
use crate::{
    now_unix_us, AudioFrame, AudioSink, AudioSource, DeviceKind, MediaError, VideoFormat,
    VideoFrame, VideoSource, AUDIO_FRAME_SAMPLES, AUDIO_SAMPLE_RATE,
};

/// Expands `$build!(T)` for the Rust sample type `T` of a cpal sample format (streams are
/// generic over it); an unknown format returns `unsupported_format` naming `$what`.
macro_rules! with_sample_type {
    ($format:expr, $what:expr, $build:ident) => {
        match $format {
            SampleFormat::I8 => $build!(i8),
            SampleFormat::I16 => $build!(i16),
            SampleFormat::I24 => $build!(cpal::I24),
            SampleFormat::I32 => $build!(i32),
            SampleFormat::I64 => $build!(i64),
            SampleFormat::U8 => $build!(u8),
            SampleFormat::U16 => $build!(u16),
            SampleFormat::U24 => $build!(cpal::U24),
            SampleFormat::U32 => $build!(u32),
            SampleFormat::U64 => $build!(u64),
            SampleFormat::F32 => $build!(f32),
            SampleFormat::F64 => $build!(f64),
            other => {
                return Err(MediaError::UnsupportedFormat(format!(
                    "{} sample format {other}",
                    $what
                )))
            }
        }
    };
}

/// A device as the UI lists it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct DeviceInfo {
    /// What to pass to `open` to get this device back (a camera index, a cpal device id
    /// like `alsa:hw:0,0`).
    pub id: String,
    /// Human-readable name.
    pub name: String,
}

impl DeviceInfo {
    /// Whether `wanted` names this device: its id or its name, as a user may give either.
    pub fn is(&self, wanted: &str) -> bool {
        self.id == wanted || self.name == wanted
    }
}

/// The devices of `kind` the OS knows about: [`list_cameras`], [`list_microphones`] or
/// [`list_speakers`].
///
/// # Errors
/// `device_error` if that device system cannot be queried.
pub fn list_devices(kind: DeviceKind) -> Result<Vec<DeviceInfo>, MediaError> {
    match kind {
        DeviceKind::Camera => list_cameras(),
        DeviceKind::Microphone => list_microphones(),
        DeviceKind::Speaker => list_speakers(),
    }
}

/// The listed device of `kind` that `wanted` names (its id or its name): a device chosen
/// by name is checked with this before it is needed, so a typo is an error at once and
/// not a problem reported when the stage is joined.
///
/// # Errors
/// `device_not_found` naming the device and what was asked for, or the listing's error.
pub fn find_device(kind: DeviceKind, wanted: &str) -> Result<DeviceInfo, MediaError> {
    // A stand-in named on purpose (`alsa:null`) is what was asked for: it opens.
    let listed = match kind {
        DeviceKind::Camera => list_cameras()?,
        DeviceKind::Microphone => list_audio(true)?,
        DeviceKind::Speaker => list_audio(false)?,
    };
    listed
        .into_iter()
        .find(|d| d.is(wanted))
        .ok_or_else(|| MediaError::DeviceNotFound(kind, format!("no {kind} {wanted:?}")))
}

/// Runs a call into a device library, turning a panic into `device_error` about `device`:
/// a broken driver must not take the app down.
fn guard<T>(device: DeviceKind, what: &str, f: impl FnOnce() -> T) -> Result<T, MediaError> {
    catch_unwind(AssertUnwindSafe(f))
        .map_err(|_| MediaError::Device(device, format!("{what}: the device library panicked")))
}

// ---------------------------------------------------------------------------------------
// Cameras

fn camera_backend() -> ApiBackend {
    nokhwa::native_api_backend().unwrap_or(ApiBackend::Auto)
}

fn nokhwa_err(what: &str, e: &nokhwa::NokhwaError) -> MediaError {
    let msg = format!("{what}: {e}");
    let lower = msg.to_lowercase();
    if lower.contains("busy") || lower.contains("os error 16") {
        MediaError::DeviceBusy(DeviceKind::Camera, msg)
    } else if lower.contains("no such file")
        || lower.contains("no such device")
        || lower.contains("os error 2)")
        || lower.contains("os error 19")
        || lower.contains("not found")
    {
        MediaError::DeviceNotFound(DeviceKind::Camera, msg)
    } else {
        MediaError::Device(DeviceKind::Camera, msg)
    }
}

/// Cameras the OS knows about (empty, not an error, when there are none).
///
/// # Errors
/// `device_error` if the camera system itself cannot be queried.
pub fn list_cameras() -> Result<Vec<DeviceInfo>, MediaError> {
    let infos = guard(DeviceKind::Camera, "camera query", || {
        nokhwa::query(camera_backend())
    })?
    .map_err(|e| nokhwa_err("camera query", &e))?;
    Ok(infos
        .into_iter()
        .map(|info| DeviceInfo {
            id: info.index().as_string(),
            name: info.human_name(),
        })
        .collect())
}

/// A camera as a [`VideoSource`]: frames are decoded to RGB, then converted to I420.
///
/// nokhwa's `Camera` is not `Send`, so it lives on a capture thread that also does the
/// conversion (in parallel with the caller's encoder); `next_frame` blocks until that
/// thread has the next picture, so the camera sets the pace. If the caller is slower than
/// the camera, older pictures are dropped rather than queued. Dropping the source stops
/// the thread, which closes the device.
pub struct CameraSource {
    frames: Receiver<Result<VideoFrame, MediaError>>,
    format: VideoFormat,
    name: String,
    stop: Arc<std::sync::atomic::AtomicBool>,
    thread: Option<JoinHandle<()>>,
    /// Tells `drop` the capture thread has finished (so joining cannot hang on a stuck
    /// driver).
    done: Receiver<()>,
}

impl std::fmt::Debug for CameraSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CameraSource")
            .field("name", &self.name)
            .field("format", &self.format)
            .finish_non_exhaustive()
    }
}

/// Frame formats we can decode, best first: raw formats cost no JPEG decoding.
const CAMERA_FORMATS: [FrameFormat; 6] = [
    FrameFormat::YUYV,
    FrameFormat::NV12,
    FrameFormat::RAWRGB,
    FrameFormat::RAWBGR,
    FrameFormat::MJPEG,
    FrameFormat::GRAY,
];

/// Consecutive capture failures after which the camera counts as gone.
const CAMERA_MAX_ERRORS: u32 = 5;
/// `next_frame` gives up after this long without a picture.
const CAMERA_FRAME_TIMEOUT: Duration = Duration::from_secs(5);

/// Picks the camera mode closest to what was asked: nearest size first, then a frame
/// rate at or just above the wish, then the cheapest pixel format.
fn best_camera_format(modes: &[CameraFormat], want: VideoFormat) -> Option<CameraFormat> {
    modes
        .iter()
        .filter(|m| CAMERA_FORMATS.contains(&m.format()))
        .min_by_key(|m| {
            let size = u64::from(m.width().abs_diff(want.width))
                + u64::from(m.height().abs_diff(want.height));
            let fps = if m.frame_rate() >= want.fps {
                m.frame_rate() - want.fps
            } else {
                // Too slow is worse than too fast.
                1000 + want.fps - m.frame_rate()
            };
            let rank = CAMERA_FORMATS
                .iter()
                .position(|f| *f == m.format())
                .unwrap_or(CAMERA_FORMATS.len());
            (size, fps, rank)
        })
        .copied()
}

/// Opens the camera at `index` in the mode nearest to `want` and starts its stream.
fn open_camera(index: CameraIndex, want: VideoFormat) -> Result<nokhwa::Camera, MediaError> {
    let mut camera = guard(DeviceKind::Camera, "camera open", || {
        nokhwa::Camera::with_backend(
            index,
            RequestedFormat::new::<RgbFormat>(RequestedFormatType::None),
            camera_backend(),
        )
    })?
    .map_err(|e| nokhwa_err("camera open", &e))?;

    match guard(DeviceKind::Camera, "camera modes", || {
        camera.compatible_camera_formats()
    })? {
        Ok(modes) => {
            if let Some(best) = best_camera_format(&modes, want) {
                if best != camera.camera_format() {
                    let request =
                        RequestedFormat::new::<RgbFormat>(RequestedFormatType::Exact(best));
                    if let Err(e) = guard(DeviceKind::Camera, "camera mode", || {
                        camera.set_camera_requset(request)
                    })? {
                        tracing::warn!(error = %e, ?best, "camera refused the mode, keeping its default");
                    }
                }
            }
        }
        Err(e) => tracing::warn!(error = %e, "cannot list camera modes, keeping its default"),
    }
    guard(DeviceKind::Camera, "camera stream", || camera.open_stream())?
        .map_err(|e| nokhwa_err("camera stream", &e))?;
    Ok(camera)
}

/// One picture from the camera, converted to I420.
fn capture(camera: &mut nokhwa::Camera, rgb: &mut Vec<u8>) -> Result<VideoFrame, MediaError> {
    let buffer = guard(DeviceKind::Camera, "camera frame", || camera.frame())?
        .map_err(|e| nokhwa_err("camera frame", &e))?;
    let timestamp_us = now_unix_us();
    let res = buffer.resolution();
    let (w, h) = (res.width(), res.height());
    rgb.resize(w as usize * h as usize * 3, 0);
    guard(DeviceKind::Camera, "camera decode", || {
        buffer.decode_image_to_buffer::<RgbFormat>(rgb)
    })?
    .map_err(|e| MediaError::UnsupportedFormat(format!("camera frame decode: {e}")))?;
    rgb_to_i420(rgb, w, h, timestamp_us)
}

/// The capture thread: owns the camera from open to close.
fn camera_thread(
    mut camera: nokhwa::Camera,
    tx: SyncSender<Result<VideoFrame, MediaError>>,
    stop: &std::sync::atomic::AtomicBool,
) {
    let mut rgb = Vec::new();
    let mut errors = 0;
    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
        match capture(&mut camera, &mut rgb) {
            Ok(frame) => {
                errors = 0;
                match tx.try_send(Ok(frame)) {
                    Ok(()) | Err(TrySendError::Full(_)) => {}
                    Err(TrySendError::Disconnected(_)) => break,
                }
            }
            Err(e) => {
                errors += 1;
                tracing::debug!(error = %e, errors, "camera capture failed");
                if errors >= CAMERA_MAX_ERRORS {
                    // The error must reach the consumer, but the thread must still notice
                    // a stop while the queue is full.
                    let mut msg = Err(e);
                    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                        match tx.try_send(msg) {
                            Err(TrySendError::Full(back)) => {
                                msg = back;
                                std::thread::sleep(Duration::from_millis(10));
                            }
                            Ok(()) | Err(TrySendError::Disconnected(_)) => break,
                        }
                    }
                    break;
                }
            }
        }
    }
    // nokhwa's Drop unwraps `stop_stream`; a failing driver must not abort us.
    if guard(DeviceKind::Camera, "camera close", move || drop(camera)).is_err() {
        tracing::warn!("camera close panicked");
    }
}

impl CameraSource {
    /// Opens a camera (`None` = the first one) in the mode nearest to `format`.
    ///
    /// The frames may come out at a different size or rate than asked if the camera has
    /// no exact match: check [`format`](VideoSource::format).
    ///
    /// # Errors
    /// `device_not_found` if there is no such camera, `device_busy` if another program
    /// holds it, `device_error` otherwise.
    pub fn open(id: Option<&str>, format: VideoFormat) -> Result<Self, MediaError> {
        let cameras = list_cameras()?;
        let info = match id {
            None => cameras.first(),
            Some(id) => cameras.iter().find(|c| c.is(id)),
        }
        .ok_or_else(|| {
            MediaError::DeviceNotFound(
                DeviceKind::Camera,
                match id {
                    Some(id) => format!("no camera {id:?}"),
                    None => "no camera".into(),
                },
            )
        })?
        .clone();
        let index = match info.id.parse::<u32>() {
            Ok(i) => CameraIndex::Index(i),
            Err(_) => CameraIndex::String(info.id.clone()),
        };

        let (ready_tx, ready_rx) = mpsc::sync_channel::<Result<CameraFormat, MediaError>>(1);
        let (tx, frames) = mpsc::sync_channel(2);
        let (done_tx, done) = mpsc::sync_channel::<()>(1);
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let stop2 = stop.clone();
        let thread = std::thread::Builder::new()
            .name("onstage-camera".into())
            .spawn(move || {
                match open_camera(index, format) {
                    Ok(camera) => {
                        let _ = ready_tx.send(Ok(camera.camera_format()));
                        camera_thread(camera, tx, &stop2);
                    }
                    Err(e) => {
                        let _ = ready_tx.send(Err(e));
                    }
                }
                let _ = done_tx.send(());
            })
            .map_err(|e| {
                MediaError::Device(
                    DeviceKind::Camera,
                    format!("cannot start camera thread: {e}"),
                )
            })?;
        let mode = match ready_rx.recv_timeout(Duration::from_secs(10)) {
            Ok(Ok(mode)) => mode,
            Ok(Err(e)) => {
                let _ = thread.join();
                return Err(e);
            }
            Err(_) => {
                stop.store(true, std::sync::atomic::Ordering::Relaxed);
                return Err(MediaError::Device(
                    DeviceKind::Camera,
                    "camera did not open within 10 s".into(),
                ));
            }
        };
        tracing::info!(camera = %info.name, ?mode, "camera open");
        Ok(Self {
            frames,
            format: VideoFormat {
                width: mode.width() & !1,
                height: mode.height() & !1,
                fps: mode.frame_rate().max(1),
            },
            name: info.name,
            stop,
            thread: Some(thread),
            done,
        })
    }

    /// The camera's name.
    pub fn name(&self) -> &str {
        &self.name
    }
}

impl VideoSource for CameraSource {
    fn format(&self) -> VideoFormat {
        self.format
    }

    fn next_frame(&mut self) -> Result<VideoFrame, MediaError> {
        match self.frames.recv_timeout(CAMERA_FRAME_TIMEOUT) {
            Ok(Ok(frame)) => {
                self.format.width = frame.width;
                self.format.height = frame.height;
                Ok(frame)
            }
            Ok(Err(e)) => Err(e),
            Err(RecvTimeoutError::Timeout) => Err(MediaError::Device(
                DeviceKind::Camera,
                format!(
                    "the camera delivered no picture for {} s",
                    CAMERA_FRAME_TIMEOUT.as_secs()
                ),
            )),
            Err(RecvTimeoutError::Disconnected) => Err(MediaError::Closed),
        }
    }
}

impl Drop for CameraSource {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        // The thread notices within one camera frame. Wait for it so the device is really
        // closed when this returns, but not forever if the driver is stuck.
        let finished = self.done.recv_timeout(Duration::from_secs(2)).is_ok();
        if let Some(thread) = self.thread.take() {
            if finished {
                let _ = thread.join();
            } else {
                tracing::warn!("camera thread did not stop within 2 s, leaving it behind");
            }
        }
    }
}

// ---------------------------------------------------------------------------------------
// Audio devices (cpal)

fn cpal_err(device: DeviceKind, what: &str, e: &cpal::Error) -> MediaError {
    use cpal::ErrorKind as K;
    let msg = format!("{what}: {e}");
    match e.kind() {
        K::DeviceNotAvailable => MediaError::DeviceNotFound(device, msg),
        K::DeviceBusy => MediaError::DeviceBusy(device, msg),
        K::UnsupportedConfig => MediaError::UnsupportedFormat(msg),
        _ => MediaError::Device(device, msg),
    }
}

/// The kind of an audio device: capture is the microphone, playback the speaker.
fn audio_kind(input: bool) -> DeviceKind {
    if input {
        DeviceKind::Microphone
    } else {
        DeviceKind::Speaker
    }
}

/// Whether a stream error ends the stream (as opposed to a glitch worth a log line).
fn is_fatal(e: &cpal::Error) -> bool {
    use cpal::ErrorKind as K;
    !matches!(e.kind(), K::Xrun | K::RealtimeDenied | K::DeviceChanged)
}

/// Whether a listed audio device is one (a microphone, a speaker) rather than a stand-in.
///
/// ALSA lists beside the devices PCMs that only stand in for one: `null` (silence in,
/// nothing out), the rate converters and channel mixers (they wrap another device), and
/// the bridges to sound systems it lists whether or not anything runs behind them
/// (`pulse`, `jack`, `oss`). Listed as microphones, they made a machine without a sound
/// card say "Microphone ready" with a flat meter. What counts is hardware (`hw:`,
/// `plughw:`, anything naming a `CARD=`) and `default`, which ALSA lists only when a card
/// or a running sound server is behind it. Other hosts list devices only.
fn is_audio_device(id: &str) -> bool {
    let Some(pcm) = id.strip_prefix("alsa:") else {
        return true;
    };
    pcm == "default"
        || pcm.contains("CARD=")
        || pcm.starts_with("hw:")
        || pcm.starts_with("plughw:")
}

/// Every microphone (`input`) or speaker the audio host lists, stand-ins included.
fn list_audio(input: bool) -> Result<Vec<DeviceInfo>, MediaError> {
    let what = if input {
        "microphone list"
    } else {
        "speaker list"
    };
    let device = audio_kind(input);
    guard(device, what, || {
        let host = cpal::default_host();
        let devices = if input {
            host.input_devices().map(|d| d.collect::<Vec<_>>())
        } else {
            host.output_devices().map(|d| d.collect::<Vec<_>>())
        }
        .map_err(|e| cpal_err(device, what, &e))?;
        Ok(devices
            .into_iter()
            .filter_map(|d| {
                let id = d.id().ok()?.to_string();
                let name = d
                    .description()
                    .map(|desc| desc.name().to_owned())
                    .unwrap_or_else(|_| id.clone());
                Some(DeviceInfo { id, name })
            })
            .collect())
    })?
}

/// The devices among `listed` (see [`is_audio_device`]).
fn devices_only(listed: Vec<DeviceInfo>) -> Vec<DeviceInfo> {
    listed
        .into_iter()
        .filter(|d| is_audio_device(&d.id))
        .collect()
}

/// Microphones of the default audio host: devices only, not the stand-ins (ALSA's `null`,
/// its plugins): none on a machine without a sound card or a running sound server.
///
/// # Errors
/// `device_error` if the audio system cannot be queried.
pub fn list_microphones() -> Result<Vec<DeviceInfo>, MediaError> {
    list_audio(true).map(devices_only)
}

/// Speakers of the default audio host: devices only, as [`list_microphones`].
///
/// # Errors
/// `device_error` if the audio system cannot be queried.
pub fn list_speakers() -> Result<Vec<DeviceInfo>, MediaError> {
    list_audio(false).map(devices_only)
}

fn find_audio_device(input: bool, id: Option<&str>) -> Result<cpal::Device, MediaError> {
    let host = cpal::default_host();
    let kind = if input { "microphone" } else { "speaker" };
    let found = match id {
        None => {
            if input {
                host.default_input_device()
            } else {
                host.default_output_device()
            }
        }
        Some(id) => {
            let by_id = id
                .parse::<cpal::DeviceId>()
                .ok()
                .and_then(|parsed| host.device_by_id(&parsed));
            by_id.or_else(|| {
                host.devices().ok()?.find(|d| {
                    d.id().is_ok_and(|i| i.to_string() == id)
                        || d.description().is_ok_and(|desc| desc.name() == id)
                })
            })
        }
    };
    found.ok_or_else(|| {
        MediaError::DeviceNotFound(
            audio_kind(input),
            match id {
                Some(id) => format!("no {kind} {id:?}"),
                None => format!("no default {kind}"),
            },
        )
    })
}

/// The device's default mode, moved to 48 kHz when the device can do it (then nothing
/// needs resampling).
fn pick_config(
    device: &cpal::Device,
    input: bool,
) -> Result<cpal::SupportedStreamConfig, MediaError> {
    let what = if input {
        "microphone config"
    } else {
        "speaker config"
    };
    let default = if input {
        device.default_input_config()
    } else {
        device.default_output_config()
    }
    .map_err(|e| cpal_err(audio_kind(input), what, &e))?;
    if default.sample_rate() == AUDIO_SAMPLE_RATE {
        return Ok(default);
    }
    let ranges: Vec<cpal::SupportedStreamConfigRange> = if input {
        device.supported_input_configs().map(Iterator::collect)
    } else {
        device.supported_output_configs().map(Iterator::collect)
    }
    .unwrap_or_default();
    Ok(ranges
        .into_iter()
        .filter(|r| {
            r.sample_format() == default.sample_format() && r.channels() == default.channels()
        })
        .find_map(|r| r.try_with_sample_rate(AUDIO_SAMPLE_RATE))
        .unwrap_or(default))
}

/// The device period asked for (the stream buffers two): what the device may take
/// between two callbacks. The sound server's default (PulseAudio through ALSA) is a few
/// milliseconds, which a busy machine misses: the stream underruns, and the plugin's
/// restart after an underrun fails the stream (`I/O error`) every few seconds.
const DEVICE_PERIOD_MS: u32 = 20;

/// The stream of `supported` with a [`DEVICE_PERIOD_MS`] period, within what the device
/// allows (its own default when it says nothing).
fn stream_config(supported: &cpal::SupportedStreamConfig) -> StreamConfig {
    let mut config = supported.config();
    let frames = config.sample_rate * DEVICE_PERIOD_MS / 1000;
    if let cpal::SupportedBufferSize::Range { min, max } = supported.buffer_size() {
        config.buffer_size = cpal::BufferSize::Fixed(frames.clamp(*min, (*max).max(*min)));
    }
    config
}

/// A resampler for one channel, streaming across calls of any length.
///
/// rubato's FFT resampler (a fixed ratio between two device rates), with its anti-aliasing
/// filter: a linear interpolator folds everything above the new Nyquist frequency back
/// into the band (a 30 kHz component of a 96 kHz microphone came out at 18 kHz). It works
/// on 10 ms chunks of input, so up to 10 ms wait here for the rest of their chunk, plus the
/// filter's delay (a few ms).
pub(crate) struct Resampler {
    /// `None` when both rates are the same: samples pass through.
    fft: Option<rubato::Fft<f32>>,
    /// Input not yet resampled (less than a chunk).
    pending: Vec<f32>,
    /// Room for one chunk's output.
    chunk_out: Vec<f32>,
}

impl std::fmt::Debug for Resampler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Resampler")
            .field("resampling", &self.fft.is_some())
            .field("pending", &self.pending.len())
            .finish()
    }
}

impl Resampler {
    pub(crate) fn new(from_rate: u32, to_rate: u32) -> Self {
        use rubato::Resampler as _;
        let (from, to) = (from_rate.max(1) as usize, to_rate.max(1) as usize);
        let fft = (from != to)
            .then(|| {
                rubato::Fft::<f32>::new(from, to, (from / 100).max(64), 1, rubato::FixedSync::Input)
            })
            .and_then(|made| match made {
                Ok(fft) => Some(fft),
                // Only for rates rubato cannot pair (none a device offers): pass through
                // rather than fail the device.
                Err(e) => {
                    tracing::warn!(from, to, error = %e, "cannot resample; passing through");
                    None
                }
            });
        let chunk_out = vec![0.0; fft.as_ref().map_or(0, |f| f.output_frames_max())];
        Self {
            fft,
            pending: Vec::new(),
            chunk_out,
        }
    }

    pub(crate) fn process(&mut self, input: &[f32], out: &mut Vec<f32>) {
        use rubato::audioadapter_buffers::direct::InterleavedSlice;
        use rubato::Resampler as _;
        let Some(fft) = self.fft.as_mut() else {
            out.extend_from_slice(input);
            return;
        };
        self.pending.extend_from_slice(input);
        let mut used = 0;
        loop {
            let need = fft.input_frames_next();
            if self.pending.len() - used < need {
                break;
            }
            let chunk = &self.pending[used..used + need];
            let capacity = self.chunk_out.len();
            let (Ok(input), Ok(mut output)) = (
                InterleavedSlice::new(chunk, 1, need),
                InterleavedSlice::new_mut(&mut self.chunk_out, 1, capacity),
            ) else {
                break;
            };
            match fft.process_into_buffer(&input, &mut output, None) {
                Ok((read, written)) => {
                    used += read.max(1);
                    out.extend_from_slice(&self.chunk_out[..written]);
                }
                Err(e) => {
                    // Sizes come from the resampler itself; should it still refuse, drop
                    // this chunk rather than stall the device.
                    tracing::warn!(error = %e, "resampling failed; a chunk is lost");
                    used += need;
                }
            }
        }
        self.pending.drain(..used);
    }
}

/// Turns interleaved device samples (any channel count and rate, as `f32`) into 20 ms,
/// 48 kHz mono [`AudioFrame`]s.
#[derive(Debug)]
pub(crate) struct MonoConverter {
    channels: usize,
    resampler: Resampler,
    mono: Vec<f32>,
    resampled: Vec<f32>,
    pending: Vec<i16>,
}

impl MonoConverter {
    pub(crate) fn new(channels: u16, rate: u32) -> Self {
        Self {
            channels: usize::from(channels.max(1)),
            resampler: Resampler::new(rate, AUDIO_SAMPLE_RATE),
            mono: Vec::new(),
            resampled: Vec::new(),
            pending: Vec::with_capacity(AUDIO_FRAME_SAMPLES * 2),
        }
    }

    /// Feeds interleaved samples; calls `emit` for every complete frame.
    pub(crate) fn push(&mut self, interleaved: &[f32], mut emit: impl FnMut(AudioFrame)) {
        self.mono.clear();
        let scale = 1.0 / self.channels as f32;
        self.mono.extend(
            interleaved
                .chunks_exact(self.channels)
                .map(|c| c.iter().sum::<f32>() * scale),
        );
        self.resampled.clear();
        self.resampler.process(&self.mono, &mut self.resampled);
        for &s in &self.resampled {
            self.pending
                .push((s.clamp(-1.0, 1.0) * 32767.0).round() as i16);
            if self.pending.len() == AUDIO_FRAME_SAMPLES {
                let samples =
                    std::mem::replace(&mut self.pending, Vec::with_capacity(AUDIO_FRAME_SAMPLES));
                // The frame's first sample was captured ~20 ms ago.
                let timestamp_us = now_unix_us().saturating_sub(20_000);
                emit(AudioFrame {
                    samples,
                    timestamp_us,
                });
            }
        }
    }
}

/// The thread that owns a cpal stream; dropping this stops the stream and joins it.
struct StreamThread {
    stop: Option<mpsc::Sender<()>>,
    handle: Option<JoinHandle<()>>,
}

impl StreamThread {
    /// Starts `open` on a new thread and waits until the stream is playing (or failed).
    /// The stream lives until this handle is dropped.
    fn spawn<S: 'static>(
        device: DeviceKind,
        name: &str,
        open: impl FnOnce() -> Result<S, MediaError> + Send + 'static,
    ) -> Result<Self, MediaError> {
        let (ready_tx, ready_rx) = mpsc::sync_channel::<Result<(), MediaError>>(1);
        let (stop_tx, stop_rx) = mpsc::channel::<()>();
        let handle = std::thread::Builder::new()
            .name(name.to_owned())
            .spawn(move || {
                let stream = match guard(device, "audio open", open) {
                    Ok(Ok(stream)) => stream,
                    Ok(Err(e)) | Err(e) => {
                        let _ = ready_tx.send(Err(e));
                        return;
                    }
                };
                let _ = ready_tx.send(Ok(()));
                // Park until the owner is dropped (the sender goes away).
                let _ = stop_rx.recv();
                if guard(device, "audio close", move || drop(stream)).is_err() {
                    tracing::warn!("audio stream close panicked");
                }
            })
            .map_err(|e| MediaError::Device(device, format!("cannot start audio thread: {e}")))?;
        let mut thread = Self {
            stop: Some(stop_tx),
            handle: Some(handle),
        };
        match ready_rx.recv_timeout(Duration::from_secs(10)) {
            Ok(Ok(())) => Ok(thread),
            Ok(Err(e)) => Err(e),
            Err(_) => {
                // The thread is stuck in the driver; do not wait for it on drop.
                thread.handle = None;
                Err(MediaError::Device(
                    device,
                    "audio device did not open within 10 s".into(),
                ))
            }
        }
    }
}

impl Drop for StreamThread {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(handle) = self.handle.take() {
            let _ = handle.join();
        }
    }
}

/// How long a stream that has just started is watched for an early failure.
const STARTUP_WATCH: Duration = Duration::from_millis(50);
/// How many times a stream that fails as it starts is started.
const STARTUP_ATTEMPTS: u32 = 4;

/// Starts a stream with `start` and watches it for [`STARTUP_WATCH`]: one whose stream
/// fails at once is started again, up to [`STARTUP_ATTEMPTS`] times. PulseAudio through
/// ALSA refuses the first calls of a stream now and then (`snd_pcm_avail_delay`: I/O
/// error) and the next start works; without this, such a start would look like a device
/// lost a moment after it opened. `error` is the slot the stream's errors land in.
fn start_watched<T>(
    device: DeviceKind,
    error: &ErrorSlot,
    mut start: impl FnMut() -> Result<(StreamThread, T), MediaError>,
) -> Result<(StreamThread, T), MediaError> {
    let mut attempt = 1;
    loop {
        let started = start()?;
        std::thread::sleep(STARTUP_WATCH);
        let Some(e) = lock(error).take() else {
            return Ok(started);
        };
        // Closed before it is started again.
        drop(started);
        if attempt >= STARTUP_ATTEMPTS {
            return Err(MediaError::Device(
                device,
                format!("{device} failed as it started, {attempt} times: {e}"),
            ));
        }
        tracing::debug!(error = %e, attempt, "{device} failed as it started; starting again");
        attempt += 1;
    }
}

/// Locks, recovering from poisoning: audio state stays usable even if a holder panicked.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

type ErrorSlot = Arc<Mutex<Option<MediaError>>>;

/// A running stream's errors: the first fatal one is kept as `device_lost` (the device was
/// open and working) for the owner to find at its next read or write, and logged once: a
/// failing stream repeats its error in a loop until it is dropped.
fn error_callback(slot: ErrorSlot, device: DeviceKind) -> impl FnMut(cpal::Error) + Send {
    move |e: cpal::Error| {
        if is_fatal(&e) {
            let mut slot = lock(&slot);
            if slot.is_none() {
                tracing::warn!(error = %e, "{device} stream failed");
                *slot = Some(MediaError::DeviceLost(
                    device,
                    format!("{device} stream: {e}"),
                ));
            }
        } else {
            tracing::debug!(error = %e, "{device} stream glitch");
        }
    }
}

/// Frames the microphone may queue before the oldest are dropped (1 s): a consumer that
/// stalls gets fresh audio afterwards, not a growing delay.
const MIC_QUEUE_FRAMES: usize = 50;
/// `next_frame` gives up after this long without audio, so a dead device is an error and
/// not a hang.
const MIC_SILENCE_TIMEOUT: Duration = Duration::from_secs(2);
/// How often a wait for the microphone's next frame looks whether its stream failed.
const MIC_ERROR_CHECK: Duration = Duration::from_millis(50);

/// A microphone as an [`AudioSource`]: any sample format, rate and channel count is
/// converted to 48 kHz mono `i16` in 20 ms frames.
pub struct MicrophoneSource {
    frames: Receiver<AudioFrame>,
    error: ErrorSlot,
    name: String,
    _stream: StreamThread,
}

impl std::fmt::Debug for MicrophoneSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MicrophoneSource")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

fn build_input<T>(
    device: &cpal::Device,
    config: StreamConfig,
    tx: SyncSender<AudioFrame>,
    error: ErrorSlot,
) -> Result<cpal::Stream, cpal::Error>
where
    T: SizedSample,
    f32: FromSample<T>,
{
    let mut converter = MonoConverter::new(config.channels, config.sample_rate);
    let mut scratch: Vec<f32> = Vec::new();
    device.build_input_stream::<T, _, _>(
        config,
        move |data: &[T], _: &cpal::InputCallbackInfo| {
            scratch.clear();
            scratch.extend(data.iter().map(|s| s.to_sample::<f32>()));
            converter.push(&scratch, |frame| {
                if let Err(TrySendError::Full(_)) = tx.try_send(frame) {
                    tracing::trace!("microphone queue full, dropping a frame");
                }
            });
        },
        error_callback(error, DeviceKind::Microphone),
        Some(Duration::from_secs(5)),
    )
}

impl MicrophoneSource {
    /// Opens a microphone (`None` = the system default) and starts capturing.
    ///
    /// # Errors
    /// `device_not_found` if there is no such (or no default) microphone, `device_busy`,
    /// `unsupported_format` for a sample format we cannot convert, `device_error` otherwise.
    pub fn open(id: Option<&str>) -> Result<Self, MediaError> {
        let (tx, rx) = mpsc::sync_channel(MIC_QUEUE_FRAMES);
        let error: ErrorSlot = Arc::default();
        let (stream, name) = start_watched(DeviceKind::Microphone, &error, || {
            let (id, tx, slot) = (id.map(str::to_owned), tx.clone(), error.clone());
            let (name_tx, name_rx) = mpsc::sync_channel(1);
            let stream = StreamThread::spawn(DeviceKind::Microphone, "onstage-mic", move || {
                let device = find_audio_device(true, id.as_deref())?;
                let name = device
                    .description()
                    .map(|d| d.name().to_owned())
                    .unwrap_or_else(|_| "microphone".into());
                let supported = pick_config(&device, true)?;
                let config = stream_config(&supported);
                macro_rules! build {
                    ($t:ty) => {
                        build_input::<$t>(&device, config, tx, slot)
                    };
                }
                let stream = with_sample_type!(supported.sample_format(), "microphone", build)
                    .map_err(|e| cpal_err(DeviceKind::Microphone, "microphone stream", &e))?;
                stream
                    .play()
                    .map_err(|e| cpal_err(DeviceKind::Microphone, "microphone start", &e))?;
                tracing::info!(microphone = %name, ?config, "microphone open");
                let _ = name_tx.send(name);
                Ok(stream)
            })?;
            let name = name_rx.try_recv().unwrap_or_else(|_| "microphone".into());
            Ok((stream, name))
        })?;
        // What a failed start may have captured is not the microphone's.
        while rx.try_recv().is_ok() {}
        Ok(Self {
            frames: rx,
            error,
            name,
            _stream: stream,
        })
    }

    /// The microphone's name.
    pub fn name(&self) -> &str {
        &self.name
    }
}

impl AudioSource for MicrophoneSource {
    fn next_frame(&mut self) -> Result<AudioFrame, MediaError> {
        // Waited for in slices: a stream that failed says so at once, not after the
        // silence timeout.
        let deadline = std::time::Instant::now() + MIC_SILENCE_TIMEOUT;
        let received = loop {
            if let Some(e) = lock(&self.error).clone() {
                return Err(e);
            }
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            match self.frames.recv_timeout(left.min(MIC_ERROR_CHECK)) {
                Err(RecvTimeoutError::Timeout) if !left.is_zero() => {}
                received => break received,
            }
        };
        match received {
            Ok(frame) => Ok(frame),
            Err(RecvTimeoutError::Timeout) => Err(lock(&self.error).clone().unwrap_or_else(|| {
                MediaError::DeviceLost(
                    DeviceKind::Microphone,
                    format!(
                        "no audio from the microphone for {} s",
                        MIC_SILENCE_TIMEOUT.as_secs()
                    ),
                )
            })),
            Err(RecvTimeoutError::Disconnected) => {
                Err(lock(&self.error).clone().unwrap_or(MediaError::Closed))
            }
        }
    }
}

/// Most audio the speaker queue holds (200 ms): beyond it the oldest is dropped, so a
/// burst from the network cannot build up delay.
const SPEAKER_QUEUE_MS: u32 = 200;

/// A speaker as an [`AudioSink`]: 48 kHz mono frames are resampled to the device rate
/// and copied to every channel. When the queue runs dry the device plays silence.
pub struct SpeakerSink {
    ring: Arc<Mutex<VecDeque<f32>>>,
    error: ErrorSlot,
    resampler: Resampler,
    capacity: usize,
    name: String,
    scratch: Vec<f32>,
    resampled: Vec<f32>,
    /// The first [`FADE_IN_MS`] it plays fade in.
    fade: FadeIn,
    _stream: StreamThread,
}

/// How long what a speaker plays first (opened, or opened again after it was lost: the
/// mix has gone on meanwhile) takes to reach its level: started at full level
/// mid-waveform it would click.
const FADE_IN_MS: u32 = 10;

/// A gain rising from 0 to 1 over its first `total` samples, then 1.
#[derive(Debug, Clone)]
struct FadeIn {
    done: usize,
    total: usize,
}

impl FadeIn {
    fn new(total: usize) -> Self {
        Self { done: 0, total }
    }

    fn apply(&mut self, samples: &mut [f32]) {
        for s in samples {
            if self.done >= self.total {
                return;
            }
            *s *= self.done as f32 / self.total as f32;
            self.done += 1;
        }
    }
}

impl std::fmt::Debug for SpeakerSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SpeakerSink")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

fn build_output<T>(
    device: &cpal::Device,
    config: StreamConfig,
    ring: Arc<Mutex<VecDeque<f32>>>,
    error: ErrorSlot,
) -> Result<cpal::Stream, cpal::Error>
where
    T: SizedSample + FromSample<f32>,
{
    let channels = usize::from(config.channels.max(1));
    device.build_output_stream::<T, _, _>(
        config,
        move |data: &mut [T], _: &cpal::OutputCallbackInfo| {
            let mut ring = lock(&ring);
            for frame in data.chunks_mut(channels) {
                let s = ring.pop_front().unwrap_or(0.0);
                let v = T::from_sample(s);
                frame.fill(v);
            }
        },
        error_callback(error, DeviceKind::Speaker),
        Some(Duration::from_secs(5)),
    )
}

impl SpeakerSink {
    /// Opens a speaker (`None` = the system default) and starts playing (silence until
    /// frames arrive).
    ///
    /// # Errors
    /// `device_not_found` if there is no such (or no default) speaker, `device_busy`,
    /// `unsupported_format` for a sample format we cannot produce, `device_error` otherwise.
    pub fn open(id: Option<&str>) -> Result<Self, MediaError> {
        let ring: Arc<Mutex<VecDeque<f32>>> = Arc::default();
        let error: ErrorSlot = Arc::default();
        let (stream, (name, rate)) = start_watched(DeviceKind::Speaker, &error, || {
            let (id, ring, slot) = (id.map(str::to_owned), ring.clone(), error.clone());
            let (info_tx, info_rx) = mpsc::sync_channel::<(String, u32)>(1);
            let stream = StreamThread::spawn(DeviceKind::Speaker, "onstage-speaker", move || {
                let device = find_audio_device(false, id.as_deref())?;
                let name = device
                    .description()
                    .map(|d| d.name().to_owned())
                    .unwrap_or_else(|_| "speaker".into());
                let supported = pick_config(&device, false)?;
                let config = stream_config(&supported);
                let rate = config.sample_rate;
                macro_rules! build {
                    ($t:ty) => {
                        build_output::<$t>(&device, config, ring, slot)
                    };
                }
                let stream = with_sample_type!(supported.sample_format(), "speaker", build)
                    .map_err(|e| cpal_err(DeviceKind::Speaker, "speaker stream", &e))?;
                stream
                    .play()
                    .map_err(|e| cpal_err(DeviceKind::Speaker, "speaker start", &e))?;
                tracing::info!(speaker = %name, ?config, "speaker open");
                let _ = info_tx.send((name, rate));
                Ok(stream)
            })?;
            let info = info_rx
                .try_recv()
                .unwrap_or_else(|_| ("speaker".into(), AUDIO_SAMPLE_RATE));
            Ok((stream, info))
        })?;
        Ok(Self {
            ring,
            error,
            resampler: Resampler::new(AUDIO_SAMPLE_RATE, rate),
            capacity: (rate * SPEAKER_QUEUE_MS / 1000) as usize,
            name,
            scratch: Vec::new(),
            resampled: Vec::new(),
            fade: FadeIn::new((rate * FADE_IN_MS / 1000) as usize),
            _stream: stream,
        })
    }

    /// How much audio waits in the queue for the device (what it adds to the delay).
    pub fn queued(&self) -> Duration {
        let rate = f64::from(self.capacity as u32 * 1000 / SPEAKER_QUEUE_MS.max(1));
        Duration::from_secs_f64(lock(&self.ring).len() as f64 / rate.max(1.0))
    }

    /// The speaker's name.
    pub fn name(&self) -> &str {
        &self.name
    }
}

impl AudioSink for SpeakerSink {
    fn play(&mut self, frame: &AudioFrame) -> Result<(), MediaError> {
        if let Some(e) = lock(&self.error).clone() {
            return Err(e);
        }
        self.scratch.clear();
        self.scratch
            .extend(frame.samples.iter().map(|&s| f32::from(s) / 32768.0));
        self.resampled.clear();
        self.resampler.process(&self.scratch, &mut self.resampled);
        self.fade.apply(&mut self.resampled);
        let mut ring = lock(&self.ring);
        ring.extend(self.resampled.iter().copied());
        if ring.len() > self.capacity {
            let excess = ring.len() - self.capacity;
            ring.drain(..excess);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::synthetic::dominant_frequency;

    fn sine(rate: u32, freq: f32, seconds: f32, channels: usize) -> Vec<f32> {
        let n = (rate as f32 * seconds) as usize;
        (0..n)
            .flat_map(|i| {
                let v = 0.5 * (std::f32::consts::TAU * freq * i as f32 / rate as f32).sin();
                std::iter::repeat_n(v, channels)
            })
            .collect()
    }

    #[test]
    fn converter_makes_48k_mono_frames_from_any_rate_and_layout() {
        for (rate, channels) in [(48_000, 1), (44_100, 2), (16_000, 1), (96_000, 6)] {
            let mut conv = MonoConverter::new(channels as u16, rate);
            let input = sine(rate, 440.0, 1.0, channels);
            let mut frames = Vec::new();
            // Feed in odd-sized chunks like a device callback would.
            for chunk in input.chunks(channels * 441) {
                conv.push(chunk, |f| frames.push(f));
            }
            assert!(
                (49..=50).contains(&frames.len()),
                "{rate} Hz x{channels}: {} frames",
                frames.len()
            );
            assert!(frames
                .iter()
                .all(|f| f.samples.len() == AUDIO_FRAME_SAMPLES));
            let all: Vec<i16> = frames.iter().flat_map(|f| f.samples.clone()).collect();
            let f = dominant_frequency(&all, AUDIO_SAMPLE_RATE);
            assert!((f - 440.0).abs() < 2.0, "{rate} Hz x{channels}: got {f} Hz");
            let peak = all.iter().map(|s| s.unsigned_abs()).max().unwrap_or(0);
            assert!((15_500..=16_800).contains(&peak), "level kept: {peak}");
        }
    }

    /// The level of `freq` in `samples` (at `rate`), relative to full scale.
    fn level_at(samples: &[f32], rate: u32, freq: f32) -> f32 {
        let (mut re, mut im) = (0.0f64, 0.0f64);
        for (i, &s) in samples.iter().enumerate() {
            let phase = std::f64::consts::TAU * f64::from(freq) * i as f64 / f64::from(rate);
            re += f64::from(s) * phase.cos();
            im += f64::from(s) * phase.sin();
        }
        (2.0 * (re * re + im * im).sqrt() / samples.len() as f64) as f32
    }

    #[test]
    fn resampling_in_odd_chunks_is_resampling_at_once() {
        let input = sine(44_100, 1000.0, 0.5, 1);
        let mut whole = Vec::new();
        Resampler::new(44_100, 48_000).process(&input, &mut whole);
        let mut pieces = Vec::new();
        let mut r = Resampler::new(44_100, 48_000);
        for chunk in input.chunks(97) {
            r.process(chunk, &mut pieces);
        }
        assert_eq!(whole.len(), pieces.len());
        assert!(whole.iter().zip(&pieces).all(|(a, b)| (a - b).abs() < 1e-5));
        // All of it but the last chunk's wait: 0.5 s at 48 kHz, less at most 10 ms.
        assert!((23_500..=24_000).contains(&whole.len()), "{}", whole.len());
        let body = &whole[2_000..];
        assert!((level_at(body, 48_000, 1000.0) - 0.5).abs() < 0.02);
    }

    #[test]
    fn downsampling_filters_out_what_the_new_rate_cannot_carry() {
        // 30 kHz is above 48 kHz's Nyquist frequency: without a filter it would fold back
        // to 18 kHz at nearly its whole level.
        let input: Vec<f32> = sine(96_000, 30_000.0, 0.5, 1)
            .iter()
            .zip(sine(96_000, 1_000.0, 0.5, 1))
            .map(|(a, b)| a + b)
            .collect();
        let mut out = Vec::new();
        Resampler::new(96_000, 48_000).process(&input, &mut out);
        let body = &out[2_000..];
        assert!(level_at(body, 48_000, 18_000.0) < 0.005, "aliased");
        assert!((level_at(body, 48_000, 1_000.0) - 0.5).abs() < 0.02, "kept");
        // The same rate passes through untouched.
        let mut same = Vec::new();
        Resampler::new(48_000, 48_000).process(&input, &mut same);
        assert_eq!(same, input);
    }

    #[test]
    fn camera_mode_choice() {
        let modes = [
            CameraFormat::new_from(1920, 1080, FrameFormat::MJPEG, 30),
            CameraFormat::new_from(1280, 720, FrameFormat::MJPEG, 30),
            CameraFormat::new_from(1280, 720, FrameFormat::YUYV, 10),
            CameraFormat::new_from(640, 480, FrameFormat::YUYV, 30),
        ];
        let want = |w, h, fps| VideoFormat {
            width: w,
            height: h,
            fps,
        };
        // Nearest size wins; at equal size the one that keeps up with the rate.
        assert_eq!(
            best_camera_format(&modes, want(1280, 720, 30)),
            Some(modes[1])
        );
        assert_eq!(
            best_camera_format(&modes, want(1280, 720, 10)),
            Some(modes[2])
        );
        assert_eq!(
            best_camera_format(&modes, want(600, 400, 30)),
            Some(modes[3])
        );
        assert_eq!(best_camera_format(&[], want(640, 480, 30)), None);
    }

    #[test]
    fn error_mapping() {
        use crate::MediaErrorCode as C;
        let busy = nokhwa::NokhwaError::OpenDeviceError(
            "0".into(),
            "V4L2 Error: Device or resource busy (os error 16)".into(),
        );
        let e = nokhwa_err("open", &busy);
        assert_eq!(
            (e.code(), e.device()),
            (C::DeviceBusy, Some(DeviceKind::Camera))
        );
        let gone = nokhwa::NokhwaError::OpenDeviceError(
            "3".into(),
            "V4L2 Error: No such file or directory (os error 2)".into(),
        );
        assert_eq!(nokhwa_err("open", &gone).code(), C::DeviceNotFound);
        let other = nokhwa::NokhwaError::ReadFrameError("timeout".into());
        assert_eq!(nokhwa_err("frame", &other).code(), C::DeviceError);

        // The device is the one the caller names, whatever the message says.
        let e = cpal::Error::new(cpal::ErrorKind::DeviceNotAvailable);
        let mic = cpal_err(DeviceKind::Microphone, "camera-ish text", &e);
        assert_eq!(
            (mic.code(), mic.device()),
            (C::DeviceNotFound, Some(DeviceKind::Microphone))
        );
        let busy = cpal_err(
            DeviceKind::Speaker,
            "mic",
            &cpal::Error::new(cpal::ErrorKind::DeviceBusy),
        );
        assert_eq!(
            (busy.code(), busy.device()),
            (C::DeviceBusy, Some(DeviceKind::Speaker))
        );
        assert_eq!(audio_kind(true), DeviceKind::Microphone);
        assert_eq!(audio_kind(false), DeviceKind::Speaker);
        assert!(!is_fatal(&cpal::Error::new(cpal::ErrorKind::Xrun)));
        assert!(is_fatal(&e));
    }

    #[test]
    fn a_speakers_first_sound_fades_in_without_a_step() {
        let mut fade = FadeIn::new(480);
        let mut first = vec![1.0f32; 300];
        let mut second = vec![1.0f32; 300];
        fade.apply(&mut first);
        fade.apply(&mut second);
        let all: Vec<f32> = first.into_iter().chain(second).collect();
        assert_eq!(all[0], 0.0);
        // Rising by 1/480 a sample, across the calls, to full level and no further.
        assert!(all.windows(2).all(|w| w[1] - w[0] <= 1.0 / 480.0 + 1e-6));
        assert!(all[480..].iter().all(|&s| s == 1.0));
        assert!((all[240] - 0.5).abs() < 1e-6);
    }

    #[test]
    fn stand_ins_are_not_listed_as_devices() {
        for stand_in in [
            "alsa:null",
            "alsa:pulse",
            "alsa:jack",
            "alsa:oss",
            "alsa:lavrate",
            "alsa:samplerate",
            "alsa:speexrate",
            "alsa:speex",
            "alsa:upmix",
            "alsa:vdownmix",
        ] {
            assert!(!is_audio_device(stand_in), "{stand_in}");
        }
        for device in [
            "alsa:default",
            "alsa:hw:0,0",
            "alsa:plughw:1,0",
            "alsa:sysdefault:CARD=PCH",
            "alsa:front:CARD=PCH,DEV=0",
            "coreaudio:BuiltInMicrophoneDevice",
        ] {
            assert!(is_audio_device(device), "{device}");
        }
    }

    #[test]
    fn guard_turns_panics_into_errors() {
        let r: Result<(), _> = guard(DeviceKind::Microphone, "test", || panic!("driver bug"));
        let e = r.unwrap_err();
        assert_eq!(e.code(), crate::MediaErrorCode::DeviceError);
        assert_eq!(e.device(), Some(DeviceKind::Microphone));
    }
}
