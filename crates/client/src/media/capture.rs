//! The capture threads: open a camera or microphone (or its synthetic stand-in), read it on
//! a plain thread (reads block), hand every picture to the local preview and every
//! microphone frame to the level meter, and encode to the publisher when there is one.
//! [`Devices`] holds the threads of one job and follows [`plan::capture`].
//!
//! A publishing camera thread encodes each picture once per layer of the publication (one
//! for a plain stream, up to three for a simulcast: see [`super::layers`]), each layer its
//! own encoder, fed the picture scaled down to the layer's size. A layer whose bitrate is 0
//! ([`LayerControl::bitrate`]: cut by the estimate, or taken by no viewer) is not encoded
//! at all, and restarts with a keyframe.

use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle as ThreadHandle;
use std::time::Instant;

use onstage_media::{
    downscale, read_stamp, write_stamp, AudioSource, CameraSource, EncoderComplexity,
    EncoderConfig, H264Encoder, MediaError, MicrophoneSource, OpusEncoder, SyntheticAudio,
    SyntheticVideo, VideoFrame, VideoSource,
};
use tokio::sync::{mpsc, watch};

use super::backoff::Retry;
use super::layers::{self, LayerSpec};
use super::plan::{self, CaptureAction, CaptureInputs, CaptureState, Captures, Slot};
use super::stats::{LevelMeter, PublishedLayer};
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
    /// One per layer of the publication, lowest first (one for a plain stream, the
    /// preview and the microphone).
    pub(super) layers: Vec<LayerControl>,
}

/// How the network side steers one layer's encoder.
pub(super) struct LayerControl {
    /// Make the next picture of this layer a keyframe.
    pub(super) keyframe: AtomicBool,
    /// The bitrate to encode at; 0: not encoded at all.
    pub(super) bitrate: AtomicU32,
}

impl CaptureControl {
    fn new(bitrates: impl IntoIterator<Item = u32>) -> Arc<Self> {
        Arc::new(CaptureControl {
            stop: AtomicBool::new(false),
            layers: bitrates
                .into_iter()
                .map(|bps| LayerControl {
                    keyframe: AtomicBool::new(false),
                    bitrate: AtomicU32::new(bps),
                })
                .collect(),
        })
    }

    /// Every layer's next picture a keyframe.
    pub(super) fn keyframe_all(&self) {
        for layer in &self.layers {
            layer.keyframe.store(true, Ordering::SeqCst);
        }
    }
}

/// Where a publishing camera thread sends what it encodes.
#[derive(Clone)]
pub(super) struct VideoOut {
    pub(super) tx: mpsc::Sender<EncodedPicture>,
    /// The layers the publication offered, lowest first: one for a plain stream.
    pub(super) layers: Vec<LayerSpec>,
}

/// One encoded picture of one layer.
#[derive(Debug)]
pub(super) struct EncodedPicture {
    /// The layer's index, 0 the lowest.
    pub(super) layer: usize,
    /// One access unit, Annex-B.
    pub(super) data: Vec<u8>,
    /// The capture time of its picture, unix microseconds.
    pub(super) timestamp_us: u64,
}

/// A capture thread and its switch.
struct Capture {
    control: Arc<CaptureControl>,
    thread: ThreadHandle<()>,
    /// Set when the thread ends on its own, with why (the device's error) if it failed.
    ended: Arc<Mutex<Option<Ended>>>,
}

/// How a capture thread ended on its own.
struct Ended {
    /// The device's error; `None` when nothing was wrong with it (the publisher went).
    failure: Option<MediaError>,
}

impl Capture {
    /// Whether the thread has ended on its own (or is about to: it says so last).
    fn has_ended(&self) -> bool {
        self.thread.is_finished()
            || self
                .ended
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .is_some()
    }
}

impl Capture {
    /// Stops the thread and waits until it has dropped its source (the device is closed).
    async fn end(self) {
        self.control.stop.store(true, Ordering::SeqCst);
        let _ = tokio::task::spawn_blocking(move || self.thread.join()).await;
    }
}

/// Opens a device off the async threads (a device may take a while to open) and counts it
/// as open. `Ok(None)` when there is none to open.
async fn open_source<S: ?Sized + Send + 'static>(
    device: Device,
    shared: &Arc<Shared>,
    open: impl FnOnce() -> Result<Option<Box<S>>, MediaError> + Send + 'static,
) -> Result<Option<OpenSource<Box<S>>>, MediaError> {
    match tokio::task::spawn_blocking(open).await {
        Ok(Ok(source)) => Ok(source.map(|source| OpenSource::new(source, shared))),
        Ok(Err(e)) => Err(e),
        Err(e) => Err(MediaError::Device(device, format!("opening stopped: {e}"))),
    }
}

/// Opens the camera and starts capturing: every picture to the local preview, and encoded
/// to `out` when given (publishing).
async fn start_video(
    config: &MediaConfig,
    shared: &Arc<Shared>,
    out: Option<VideoOut>,
) -> Result<Option<Capture>, MediaError> {
    let cfg = config.clone();
    let Some(source) = open_source(Device::Camera, shared, move || open_video(&cfg)).await? else {
        return Ok(None);
    };
    // Until the publisher says otherwise: a plain stream at the configured rate, every
    // layer of a simulcast at its maximum.
    let bitrates: Vec<u32> = match &out {
        Some(out) if out.layers.len() > 1 => out.layers.iter().map(|l| l.max_bitrate_bps).collect(),
        _ => vec![config.video_bitrate_bps],
    };
    let control = CaptureControl::new(bitrates);
    let (c, s, cfg) = (control.clone(), shared.clone(), config.clone());
    let thread = std::thread::spawn(move || video_capture(source, cfg, c, out, s));
    Ok(Some(Capture {
        control,
        thread,
        ended: Arc::default(),
    }))
}

/// Opens the microphone and starts capturing: levels always, encoded packets to `out`
/// when given. `Ok(None)`: there is no microphone to open (no sources). A microphone that
/// fails while capturing ends its thread, keeps why in the capture's `ended` and wakes
/// the job (`Shared::capture_ended`), which reports it and opens it again in time.
async fn start_audio(
    config: &MediaConfig,
    shared: &Arc<Shared>,
    out: Option<mpsc::Sender<Vec<u8>>>,
) -> Result<Option<Capture>, MediaError> {
    let cfg = config.clone();
    let Some(source) = open_source(Device::Microphone, shared, move || open_audio(&cfg)).await?
    else {
        return Ok(None);
    };
    let control = CaptureControl::new([0]);
    let ended: Arc<Mutex<Option<Ended>>> = Arc::default();
    let (c, s, rate, e) = (
        control.clone(),
        shared.clone(),
        config.audio_bitrate_bps,
        ended.clone(),
    );
    let thread = std::thread::spawn(move || {
        let stop = c.clone();
        let failure = audio_capture(source, rate, c, out, &s);
        if !stop.stop.load(Ordering::SeqCst) {
            // Said before the job is woken, so that it finds the thread ended.
            *e.lock().unwrap_or_else(|p| p.into_inner()) = Some(Ended { failure });
            s.capture_ended.notify_one();
        }
    });
    Ok(Some(Capture {
        control,
        thread,
        ended,
    }))
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
            audio: config.capture.audio,
            video: config.capture.video,
            controls: shared.controls(),
            devices: shared.devices(),
        };
        devices.follow(&inputs, &config, &shared).await;
        let mic_retry = devices.audio_retry_at();
        tokio::select! {
            // The microphone failed: its level stops; it is opened again in time.
            () = shared.capture_ended.notified() => {}
            () = super::publish::sleep_until(mic_retry), if mic_retry.is_some() => {}
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
    /// How soon the microphone is opened again after it failed, and whether that is told.
    audio_retry: Retry,
    /// Whether the camera's failure to open was told (it is tried again at the job's pace).
    video_retry: Retry,
    video: Option<Capture>,
    video_slot: Slot,
    /// Where encoded packets and pictures go; `None` for the preview (nothing is encoded).
    audio_out: Option<mpsc::Sender<Vec<u8>>>,
    video_out: Option<VideoOut>,
}

impl Devices {
    pub(super) fn new(
        audio_out: Option<mpsc::Sender<Vec<u8>>>,
        video_out: Option<VideoOut>,
    ) -> Self {
        Devices {
            audio: None,
            audio_slot: Slot::default(),
            audio_retry: Retry::default(),
            video_retry: Retry::default(),
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
        self.reap_audio(shared);
        if self.audio_slot.state == CaptureState::Failed {
            if self.audio_slot.device != inputs.devices.microphone {
                // Another microphone chosen: tried at once, and told if it fails.
                self.audio_retry.reset();
            } else if self.audio_retry.ready(Instant::now()) {
                // Its wait is over: the plan opens it again.
                self.audio_slot.state = CaptureState::Stopped;
            }
        }
        if self.video_slot.state == CaptureState::Failed
            && self.video_slot.device != inputs.devices.camera
        {
            // Another camera chosen: told if it fails too.
            self.video_retry.reset();
        }
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
                    self.audio = match start_audio(&config, shared, self.audio_out.clone()).await {
                        Ok(capture) => {
                            self.audio_retry.opened(Instant::now());
                            capture
                        }
                        Err(e) => {
                            let tell = self.audio_retry.open_failed(Instant::now());
                            tell_audio(shared, tell, &e);
                            None
                        }
                    };
                    self.audio_slot = Slot {
                        state: state_of(&self.audio),
                        device: inputs.devices.microphone.clone(),
                    };
                }
                CaptureAction::StartVideo => {
                    self.video = match start_video(&config, shared, self.video_out.clone()).await {
                        Ok(capture) => {
                            self.video_retry.opened(Instant::now());
                            capture
                        }
                        // A missing camera is tried again now and then: told once.
                        Err(e) => {
                            if self.video_retry.open_failed(Instant::now()) {
                                shared.device_error(Device::Camera, &e);
                            } else {
                                tracing::debug!(error = %e, "camera still failing");
                            }
                            None
                        }
                    };
                    self.video_slot = Slot {
                        state: state_of(&self.video),
                        device: inputs.devices.camera.clone(),
                    };
                }
            }
        }
        actions
    }

    /// A microphone whose thread ended on its own (the device failed or went away): its
    /// problem is told (once: not again until it has worked for a while) and it is opened
    /// again when its back-off allows.
    fn reap_audio(&mut self, shared: &Shared) {
        if !self.audio.as_ref().is_some_and(Capture::has_ended) {
            return;
        }
        let Some(capture) = self.audio.take() else {
            return;
        };
        let failure = capture
            .ended
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()
            .and_then(|ended| ended.failure);
        // Ended, or about to: joining does not wait for long.
        let _ = capture.thread.join();
        let tell = self.audio_retry.failed(Instant::now());
        self.audio_slot.state = CaptureState::Failed;
        if let Some(e) = failure {
            tell_audio(shared, tell, &e);
        }
    }

    /// When the microphone, failed or lost, is due to be opened again: the job wakes then.
    pub(super) fn audio_retry_at(&self) -> Option<Instant> {
        (self.audio_slot.state == CaptureState::Failed)
            .then(|| self.audio_retry.due())
            .flatten()
    }

    /// The camera's thread, to steer its encoder.
    pub(super) fn video(&self) -> Option<&CaptureControl> {
        self.video.as_ref().map(|c| c.control.as_ref())
    }

    /// The camera was asked for and failed to open.
    pub(super) fn video_failed(&self) -> bool {
        self.video_slot.state == CaptureState::Failed
    }

    /// The microphone is open and capturing.
    pub(super) fn has_audio(&self) -> bool {
        self.audio
            .as_ref()
            .is_some_and(|capture| !capture.has_ended())
    }

    /// Stops both threads and waits until the devices are closed.
    pub(super) async fn end(mut self) {
        for capture in [self.video.take(), self.audio.take()].into_iter().flatten() {
            capture.end().await;
        }
    }
}

/// Tells the app about the microphone's problem, or only logs it (told already, or a
/// glitch just after opening).
fn tell_audio(shared: &Shared, tell: bool, e: &MediaError) {
    if tell {
        shared.device_error(Device::Microphone, e);
    } else {
        tracing::debug!(error = %e, "microphone failed; opening it again");
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
    out: Option<VideoOut>,
    shared: Arc<Shared>,
) {
    let format = source.source.format();
    // The layers at the size the source really delivers (the offer was made for the size
    // asked for), as many as were offered at most.
    let mut encoding = out.as_ref().map(|out| {
        let specs = match out.layers.as_slice() {
            [single] => vec![LayerSpec {
                width: format.width,
                height: format.height,
                ..single.clone()
            }],
            offered => {
                let mut specs = layers::plan(format.width, format.height, offered.len(), 0);
                // A capture smaller than asked for may have fewer layers; each keeps the
                // rate the publication described.
                for (spec, offered) in specs.iter_mut().zip(offered) {
                    spec.max_bitrate_bps = offered.max_bitrate_bps;
                }
                specs
            }
        };
        Layers::new(specs, format.fps, &shared)
    });
    let synthetic = matches!(config.sources, Sources::Synthetic { .. });
    while !control.stop.load(Ordering::SeqCst) {
        let frame = match source.source.next_frame() {
            Ok(f) => f,
            Err(e) => return shared.device_error(Device::Camera, &e),
        };
        if control.stop.load(Ordering::SeqCst) {
            break;
        }
        shared.local_picture(&frame, out.is_some());
        let (Some(layers), Some(out)) = (encoding.as_mut(), out.as_ref()) else {
            continue;
        };
        match layers.encode(&frame, synthetic, &control, &out.tx, &shared) {
            Ok(true) => {}
            Ok(false) => break,
            Err(e) => return shared.error("video encoder", &e),
        }
    }
}

/// The encoders of a publishing camera thread, one per layer, made when the layer is
/// first encoded.
struct Layers {
    specs: Vec<LayerSpec>,
    fps: u32,
    /// A plain stream's encoder works as hard as OpenH264 does by default; a simulcast's
    /// three at low complexity, which keeps the three within what one used to take
    /// (about a quarter less CPU each: see the `simulcast_bench` example).
    complexity: EncoderComplexity,
    encoders: Vec<Option<H264Encoder>>,
    /// Whether each layer was encoded last time (one that starts again starts with a
    /// keyframe).
    running: Vec<bool>,
    /// What the stats show of each layer.
    stats: Vec<PublishedLayer>,
}

impl Layers {
    fn new(specs: Vec<LayerSpec>, fps: u32, shared: &Shared) -> Layers {
        let stats: Vec<PublishedLayer> = specs
            .iter()
            .map(|spec| PublishedLayer {
                rid: spec.rid.to_owned(),
                width: spec.width,
                height: spec.height,
                ..PublishedLayer::default()
            })
            .collect();
        shared.stats().layers.clone_from(&stats);
        let complexity = match specs.len() {
            1 => EncoderComplexity::Medium,
            _ => EncoderComplexity::Low,
        };
        Layers {
            complexity,
            encoders: specs.iter().map(|_| None).collect(),
            running: vec![false; specs.len()],
            specs,
            fps,
            stats,
        }
    }

    /// Encodes `frame` for every layer whose bitrate is not 0 and sends the pictures.
    /// `Ok(false)`: the publisher is gone.
    fn encode(
        &mut self,
        frame: &VideoFrame,
        synthetic: bool,
        control: &CaptureControl,
        out: &mpsc::Sender<EncodedPicture>,
        shared: &Shared,
    ) -> Result<bool, MediaError> {
        let targets: Vec<u32> = (0..self.specs.len())
            .map(|i| {
                control
                    .layers
                    .get(i)
                    .map_or(0, |c| c.bitrate.load(Ordering::SeqCst))
            })
            .collect();
        let sizes: Vec<(u32, u32)> = self.specs.iter().map(|s| (s.width, s.height)).collect();
        let wanted: Vec<bool> = targets.iter().map(|&bps| bps != 0).collect();
        let mut scaled = scale_layers(frame, &sizes, &wanted);
        if synthetic && scaled.iter().any(Option::is_some) {
            // The synthetic pattern's stamp is sized to its picture: painted again at each
            // layer's size, the far end reads it whichever layer it receives.
            if let Some(stamp) = read_stamp(frame) {
                for picture in scaled.iter_mut().flatten() {
                    write_stamp(picture, stamp);
                }
            }
        }
        // Which layers start again or were asked for a keyframe: they go first. The SFU
        // switches a viewer to a layer at its keyframe and drops the old layer from there;
        // were the old layer's picture of the same capture sent before, the viewer would
        // be shown that instant twice.
        let mut keyframe = vec![false; targets.len()];
        for (i, &target) in targets.iter().enumerate() {
            if target == 0 {
                self.running[i] = false;
                self.stats[i].bitrate_bps = 0;
                continue;
            }
            let resumed = !std::mem::replace(&mut self.running[i], true);
            keyframe[i] = control.layers[i].keyframe.swap(false, Ordering::SeqCst) || resumed;
        }
        let order = (0..targets.len())
            .filter(|&i| keyframe[i])
            .chain((0..targets.len()).filter(|&i| !keyframe[i] && targets[i] != 0));
        let mut open = true;
        for i in order {
            let (target, stats) = (targets[i], &mut self.stats[i]);
            let encoder = match &mut self.encoders[i] {
                Some(encoder) => encoder,
                empty => {
                    let config = EncoderConfig {
                        width: self.specs[i].width,
                        height: self.specs[i].height,
                        fps: self.fps,
                        bitrate_bps: target,
                    };
                    empty.insert(H264Encoder::with_complexity(config, self.complexity)?)
                }
            };
            if keyframe[i] {
                encoder.request_keyframe();
            }
            if target != encoder.bitrate() {
                if let Err(e) = encoder.set_bitrate(target) {
                    tracing::debug!(error = %e, layer = i, "bitrate change");
                }
            }
            stats.bitrate_bps = encoder.bitrate();
            let picture = scaled[i].as_ref().unwrap_or(frame);
            let Some(au) = encoder.encode(picture)? else {
                continue;
            };
            stats.frames_encoded += 1;
            stats.bytes_encoded += au.data.len() as u64;
            stats.keyframes += u64::from(au.keyframe);
            let picture = EncodedPicture {
                layer: i,
                data: au.data,
                timestamp_us: au.timestamp_us,
            };
            match out.try_send(picture) {
                Ok(()) => {}
                // The network cannot keep up: drop this picture, and restart the decoders
                // downstream with a keyframe.
                Err(mpsc::error::TrySendError::Full(_)) => {
                    control.layers[i].keyframe.store(true, Ordering::SeqCst);
                }
                Err(mpsc::error::TrySendError::Closed(_)) => open = false,
            }
        }
        {
            let mut stats = shared.stats();
            stats.layers.clone_from(&self.stats);
            let sum = self.stats.iter().map(|l| l.bitrate_bps).sum::<u32>();
            stats.video_bitrate_bps = Some(sum);
        }
        Ok(open)
    }
}

/// The pictures of the layers to encode (`wanted`) from one capture, each scaled from the
/// smallest picture already made that is still larger (1280x720 -> 640x360 -> 320x180:
/// the full picture is read once). `None` for a layer not wanted, and for one of the
/// capture's own size (the capture itself is encoded, not a copy).
fn scale_layers(
    frame: &VideoFrame,
    sizes: &[(u32, u32)],
    wanted: &[bool],
) -> Vec<Option<VideoFrame>> {
    let mut out: Vec<Option<VideoFrame>> = sizes.iter().map(|_| None).collect();
    let mut smallest: Option<usize> = None;
    for i in (0..sizes.len()).rev() {
        let (width, height) = sizes[i];
        if !wanted.get(i).copied().unwrap_or(false)
            || (width, height) == (frame.width, frame.height)
        {
            continue;
        }
        let from = smallest.and_then(|j| out[j].as_ref()).unwrap_or(frame);
        out[i] = Some(downscale(from, width, height));
        smallest = Some(i);
    }
    out
}

/// Captures until stopped; the device's error if it failed (the caller tells it).
fn audio_capture(
    mut source: OpenSource<Box<dyn AudioSource>>,
    bitrate: u32,
    control: Arc<CaptureControl>,
    out: Option<mpsc::Sender<Vec<u8>>>,
    shared: &Shared,
) -> Option<MediaError> {
    let mut encoder = match &out {
        None => None,
        Some(_) => match OpusEncoder::new(bitrate) {
            Ok(e) => Some(e),
            Err(e) => {
                shared.error("audio encoder", &e);
                return None;
            }
        },
    };
    let mut meter = LevelMeter::default();
    while !control.stop.load(Ordering::SeqCst) {
        let frame = match source.source.next_frame() {
            Ok(f) => f,
            // Stopped while waiting for the device: not a failure.
            Err(_) if control.stop.load(Ordering::SeqCst) => return None,
            Err(e) => return Some(e),
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
            Err(e) => {
                shared.error("audio encoder", &e);
                return None;
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use onstage_media::VideoFormat;

    fn layer_frame(width: u32, height: u32, value: u8) -> VideoFrame {
        let mut f = VideoFrame::black(width, height, 7);
        f.y.fill(value);
        f
    }

    #[test]
    fn each_layer_is_scaled_from_the_next_larger_picture_made() {
        let capture = layer_frame(1280, 720, 100);
        let sizes = [(320, 180), (640, 360), (1280, 720)];
        let all = scale_layers(&capture, &sizes, &[true, true, true]);
        let made: Vec<Option<(u32, u32)>> = all
            .iter()
            .map(|p| p.as_ref().map(|p| (p.width, p.height)))
            .collect();
        assert_eq!(
            made,
            [Some((320, 180)), Some((640, 360)), None],
            "f is the capture"
        );
        assert!(all.iter().flatten().all(|p| p.y.iter().all(|&v| v == 100)));
        assert!(all.iter().flatten().all(|p| p.timestamp_us == 7));
        // Only q: straight from the capture.
        let q = scale_layers(&capture, &sizes, &[true, false, false]);
        assert_eq!(q[0].as_ref().map(|p| (p.width, p.height)), Some((320, 180)));
        assert!(q[1].is_none() && q[2].is_none());
        // Nothing wanted, nothing made.
        assert!(scale_layers(&capture, &sizes, &[false; 3])
            .iter()
            .all(Option::is_none));
    }

    /// User + system CPU seconds of this process so far (Linux).
    fn cpu_seconds() -> f64 {
        let stat = std::fs::read_to_string("/proc/self/stat").expect("/proc/self/stat");
        let rest = &stat[stat.rfind(')').expect("comm") + 2..];
        let fields: Vec<f64> = rest
            .split_whitespace()
            .map(|f| f.parse().unwrap_or(0.0))
            .collect();
        (fields[11] + fields[12]) / 100.0
    }

    /// What a publishing camera thread costs: the synthetic 1280x720@30 capture, scaled
    /// and encoded for each layer with a rate, for `SECONDS`, in cores (CPU seconds per
    /// second). Network sending is not included (see BENCHMARKS.md for the whole bot).
    #[test]
    #[ignore = "a measurement: cargo test --release -p onstage-client --lib publisher_cpu -- --ignored --nocapture"]
    fn publisher_cpu_by_layers_encoded() {
        const SECONDS: u64 = 20;
        let format = VideoFormat {
            width: 1280,
            height: 720,
            fps: 30,
        };
        let full = layers::plan(1280, 720, layers::MAX_LAYERS, 0);
        let rate = |i: usize| full[i].max_bitrate_bps;
        let cases: Vec<(&str, Vec<LayerSpec>, Vec<u32>)> = vec![
            (
                "1 layer (no simulcast), 1280x720",
                layers::plan(1280, 720, 1, 2_000_000),
                vec![2_000_000],
            ),
            (
                "2 layers, 640x360 + 1280x720",
                layers::plan(1280, 720, 2, 0),
                vec![rate(1), rate(2)],
            ),
            (
                "3 layers, all encoded",
                full.clone(),
                vec![rate(0), rate(1), rate(2)],
            ),
            (
                "3 layers, f paused (q + h)",
                full.clone(),
                vec![rate(0), rate(1), 0],
            ),
            ("3 layers, only q taken", full.clone(), vec![rate(0), 0, 0]),
        ];
        for (name, specs, rates) in cases {
            let shared = Arc::new(Shared::new(super::super::DeviceChoice::default(), false));
            let config = MediaConfig {
                sources: Sources::Synthetic { tone_hz: 440.0 },
                video: format,
                ..MediaConfig::default()
            };
            let source: Box<dyn VideoSource> = Box::new(SyntheticVideo::new(1280, 720, 30));
            let source = OpenSource::new(source, &shared);
            let control = CaptureControl::new(rates);
            let (tx, mut rx) = mpsc::channel::<EncodedPicture>(64);
            let drain = std::thread::spawn(move || {
                let mut bytes = 0usize;
                while let Some(picture) = rx.blocking_recv() {
                    bytes += picture.data.len();
                }
                bytes
            });
            let out = VideoOut { tx, layers: specs };
            let (c, s) = (control.clone(), shared.clone());
            let (cpu0, wall) = (cpu_seconds(), std::time::Instant::now());
            let thread = std::thread::spawn(move || video_capture(source, config, c, Some(out), s));
            std::thread::sleep(std::time::Duration::from_secs(SECONDS));
            control.stop.store(true, Ordering::SeqCst);
            thread.join().expect("capture thread");
            let bytes = drain.join().expect("drain");
            let cores = (cpu_seconds() - cpu0) / wall.elapsed().as_secs_f64();
            let frames: Vec<u64> = shared
                .stats()
                .layers
                .iter()
                .map(|l| l.frames_encoded)
                .collect();
            println!(
                "{name}: {cores:.3} cores, {:.0} kbit/s, frames per layer {frames:?}",
                bytes as f64 * 8.0 / 1000.0 / wall.elapsed().as_secs_f64()
            );
            assert!(
                shared.stats().last_error.is_none(),
                "{:?}",
                shared.stats().last_error
            );
        }
    }
}
