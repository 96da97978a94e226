//! Stage media: publish camera and microphone while this participant is ON_STAGE, and
//! receive everyone on stage.
//!
//! [`StageMedia::start`] ties the three layers together: the stage (the [`Meeting`]'s
//! mirror and events say who is on stage), the transport ([`crate::rtc`]: one publish peer,
//! one subscribe peer per participant on stage) and the codecs and devices
//! ([`onstage_media`]). It reconciles continuously:
//!
//! - own status ON_STAGE -> open the sources, encode, publish; any other status -> stop at
//!   once: the capture threads end and drop their sources, which closes the devices;
//! - every other participant ON_STAGE -> subscribe, decode, count, hand decoded pictures to
//!   the app ([`StageMedia::video_frames`]) and audio to the speaker mix; off stage ->
//!   unsubscribe;
//! - after a reconnect the server has dropped this client's peer connections: start over.
//!
//! Capture, encoding and decoding run on plain threads (they block and burn CPU); the
//! network side runs on tokio.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle as ThreadHandle;
use std::time::{Duration, Instant};

use onstage_media::{
    dominant_frequency, now_unix_us, read_stamp, AudioFrame, AudioMixer, AudioSink, AudioSource,
    CameraSource, EncoderConfig, H264Decoder, H264Encoder, MediaError, MicrophoneSource,
    OpusDecoder, OpusEncoder, SpeakerSink, SyntheticAudio, SyntheticVideo, VideoFormat, VideoFrame,
    VideoSource, AUDIO_SAMPLE_RATE,
};
use serde::Serialize;
use tokio::sync::{broadcast, mpsc, watch};

use crate::rtc::{MediaKind, PublishOptions, PublishPeer, SubscribePeer, TransportConfig};
use crate::{ConnectionState, Meeting, MeetingEvent, StageStatus, UserId};

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

/// How [`StageMedia`] runs.
#[derive(Debug, Clone)]
pub struct MediaConfig {
    pub sources: Sources,
    /// Capture size and rate (default 640x480 at 30 fps).
    pub video: VideoFormat,
    /// Starting video bitrate; the encoder then follows the transport's estimate.
    pub video_bitrate_bps: u32,
    pub audio_bitrate_bps: u32,
    /// Decode received video (the app and the tests want pictures; a pure listener may not).
    pub decode_video: bool,
    /// Play the mix of everyone on stage on the default speaker. A missing speaker is
    /// logged, not fatal.
    pub play_audio: bool,
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
            audio_bitrate_bps: 32_000,
            decode_video: true,
            play_audio: false,
            transport: TransportConfig::default(),
        }
    }
}

/// What is being published.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Publishing {
    pub audio: bool,
    pub video: bool,
}

/// What was received from one participant on stage.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Received {
    /// Pictures decoded.
    pub video_frames: u64,
    /// Opus packets decoded (20 ms each).
    pub audio_frames: u64,
    /// Decoded pictures carrying a valid synthetic stamp, and those whose frame number did
    /// not increase (each should stay 0).
    pub stamped_frames: u64,
    pub out_of_order_frames: u64,
    /// The last stamp's frame number.
    pub last_frame_number: Option<u32>,
    /// Capture -> decoded delay of stamped pictures (glass to glass), milliseconds: the
    /// median and 95th percentile of the last samples.
    pub glass_to_glass_p50_ms: Option<f64>,
    pub glass_to_glass_p95_ms: Option<f64>,
    /// The dominant frequency of the decoded audio (synthetic tones), Hz.
    pub audio_frequency_hz: Option<f32>,
    /// Decoder errors (each triggers a keyframe request).
    pub decode_errors: u64,
    /// Audio packets that never arrived and were concealed, and packets that arrived too
    /// late to be played (after their slot was concealed).
    pub audio_concealed: u64,
    pub audio_late: u64,
    #[serde(skip)]
    latencies_ms: Vec<f64>,
}

/// `media.stats` in the `onstage` command contract, plus diagnostics.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct MediaStats {
    pub publishing: Publishing,
    pub received: BTreeMap<UserId, Received>,
    /// Devices (or synthetic sources) currently open.
    pub open_sources: usize,
    /// The encoder's current target bitrate while publishing.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub video_bitrate_bps: Option<u32>,
    /// Keyframe requests the publisher received.
    pub keyframe_requests: u64,
    /// The last error, e.g. a missing camera (`device_not_found`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
}

/// A decoded picture from someone on stage, for the app to draw.
#[derive(Debug, Clone)]
pub struct RemoteVideo {
    pub user_id: UserId,
    pub frame: Arc<VideoFrame>,
}

/// Samples of glass-to-glass delay kept per publisher.
const LATENCY_SAMPLES: usize = 512;
/// Encoded frames waiting between a capture thread and the network.
const ENCODED_QUEUE: usize = 8;
/// Received access units waiting for a decoder.
const DECODE_QUEUE: usize = 16;

/// The user id under which the local camera preview is delivered on
/// [`StageMedia::video_frames`] and the local microphone level on
/// [`StageMedia::audio_levels`].
pub const LOCAL: &str = "local";

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

/// The loudness of someone's audio (or [`LOCAL`]'s microphone), 0.0 to 1.0 (RMS over
/// about 100 ms).
#[derive(Debug, Clone, PartialEq)]
pub struct AudioLevel {
    pub user_id: UserId,
    pub level: f32,
}

/// Which device a [`MediaProblem`] is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Device {
    Camera,
    Microphone,
    Speaker,
}

impl Device {
    pub fn as_str(self) -> &'static str {
        match self {
            Device::Camera => "camera",
            Device::Microphone => "microphone",
            Device::Speaker => "speaker",
        }
    }
}

/// A device that could not be used: `code` is the stable media code (`device_not_found`,
/// `device_busy`, `device_error`, ...).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MediaProblem {
    pub device: Device,
    pub code: &'static str,
    pub message: String,
}

struct Shared {
    problems: broadcast::Sender<MediaProblem>,
    stats: Mutex<MediaStats>,
    open_sources: AtomicUsize,
    frames: broadcast::Sender<RemoteVideo>,
    levels: broadcast::Sender<AudioLevel>,
    mixer: Mutex<AudioMixer>,
    controls: watch::Sender<Controls>,
}

impl Shared {
    fn stats(&self) -> std::sync::MutexGuard<'_, MediaStats> {
        self.stats.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn received(&self, user: &UserId, f: impl FnOnce(&mut Received)) {
        f(self.stats().received.entry(user.clone()).or_default());
    }

    fn error(&self, what: &str, e: &dyn std::fmt::Display) {
        tracing::warn!(error = %e, "{what}");
        self.stats().last_error = Some(format!("{what}: {e}"));
    }

    /// A device failed (missing, busy, gone): recorded and told to the app, typed.
    fn device_error(&self, device: Device, e: &MediaError) {
        self.error(device.as_str(), e);
        let _ = self.problems.send(MediaProblem {
            device,
            code: e.code(),
            message: e.to_string(),
        });
    }

    fn controls(&self) -> Controls {
        *self.controls.borrow()
    }

    /// Hands a picture of the local camera to the app: always while publishing (the
    /// self-view tile), otherwise when the preview is on.
    fn local_picture(&self, frame: &VideoFrame, publishing: bool) {
        if (publishing || self.controls().preview) && self.frames.receiver_count() > 0 {
            let _ = self.frames.send(RemoteVideo {
                user_id: UserId::new(LOCAL),
                frame: Arc::new(frame.clone()),
            });
        }
    }
}

/// Sums 20 ms frames into a level every five frames (100 ms).
#[derive(Debug, Default)]
struct LevelMeter {
    sum_squares: f64,
    samples: usize,
    frames: u32,
}

impl LevelMeter {
    fn add(&mut self, samples: &[i16]) -> Option<f32> {
        self.sum_squares += samples
            .iter()
            .map(|&s| f64::from(s) * f64::from(s))
            .sum::<f64>();
        self.samples += samples.len();
        self.frames += 1;
        if self.frames < 5 {
            return None;
        }
        let rms = (self.sum_squares / self.samples.max(1) as f64).sqrt() / f64::from(i16::MAX);
        *self = LevelMeter::default();
        Some(rms.min(1.0) as f32)
    }
}

/// Stage media for one joined meeting. Dropping it (or [`StageMedia::stop`]) stops
/// publishing and receiving.
pub struct StageMedia {
    shared: Arc<Shared>,
    stop: watch::Sender<bool>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl StageMedia {
    /// Starts following the stage. Must be called inside a tokio runtime.
    pub fn start(meeting: Meeting, config: MediaConfig) -> StageMedia {
        Self::spawn(|shared, stop| reconcile_loop(meeting, config, shared, stop))
    }

    /// Media without a meeting: the device check before joining one. Only the preview
    /// works ([`StageMedia::preview`], [`StageMedia::set_camera`]): the local camera on
    /// [`StageMedia::video_frames`] as [`LOCAL`], the microphone level, device problems.
    /// Must be called inside a tokio runtime.
    pub fn device_check(config: MediaConfig) -> StageMedia {
        Self::spawn(|shared, stop| preview_loop(config, shared, stop))
    }

    fn spawn<F>(run: impl FnOnce(Arc<Shared>, watch::Receiver<bool>) -> F) -> StageMedia
    where
        F: std::future::Future<Output = ()> + Send + 'static,
    {
        let (frames, _) = broadcast::channel(16);
        let (levels, _) = broadcast::channel(64);
        let shared = Arc::new(Shared {
            problems: broadcast::channel(16).0,
            stats: Mutex::default(),
            open_sources: AtomicUsize::new(0),
            frames,
            levels,
            mixer: Mutex::new(AudioMixer::new()),
            controls: watch::channel(Controls::default()).0,
        });
        let (stop, stop_rx) = watch::channel(false);
        let task = tokio::spawn(run(shared.clone(), stop_rx));
        StageMedia {
            shared,
            stop,
            task: Some(task),
        }
    }

    /// A snapshot of what is published and received.
    pub fn stats(&self) -> MediaStats {
        let mut stats = self.shared.stats().clone();
        stats.open_sources = self.shared.open_sources.load(Ordering::SeqCst);
        stats
    }

    /// Sources (camera, microphone, or their synthetic stand-ins) open right now.
    pub fn open_sources(&self) -> usize {
        self.shared.open_sources.load(Ordering::SeqCst)
    }

    /// Decoded pictures of everyone on stage, and of the local camera ([`LOCAL`]) while the
    /// preview is on. Lossy: a receiver that lags skips pictures.
    pub fn video_frames(&self) -> broadcast::Receiver<RemoteVideo> {
        self.shared.frames.subscribe()
    }

    /// Devices that could not be used, as they happen (a missing camera, a microphone
    /// that went away).
    pub fn media_problems(&self) -> broadcast::Receiver<MediaProblem> {
        self.shared.problems.subscribe()
    }

    /// Audio levels of everyone on stage and of the local microphone ([`LOCAL`]).
    pub fn audio_levels(&self) -> broadcast::Receiver<AudioLevel> {
        self.shared.levels.subscribe()
    }

    /// Unmutes (`true`) or mutes the microphone. Muted, nothing is sent; the device stays
    /// open while on stage so unmuting is instant. Everyone is told.
    pub fn set_mic(&self, on: bool) {
        self.shared.controls.send_modify(|c| c.mic = on);
    }

    /// Turns the camera on or off. Off, the camera is closed (its light goes off) and no
    /// video is sent. Everyone is told.
    pub fn set_camera(&self, on: bool) {
        self.shared.controls.send_modify(|c| c.camera = on);
    }

    /// Shows the local camera (on [`StageMedia::video_frames`] as [`LOCAL`]) and the
    /// microphone level, also off stage: the device check and the green room. Nothing is
    /// published off stage.
    pub fn preview(&self, on: bool) {
        self.shared.controls.send_modify(|c| c.preview = on);
    }

    /// The current switches.
    pub fn controls(&self) -> Controls {
        self.shared.controls()
    }

    /// Stops everything and waits until the devices are closed.
    pub async fn stop(mut self) {
        self.stop.send_replace(true);
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for StageMedia {
    fn drop(&mut self) {
        self.stop.send_replace(true);
    }
}

/// A running piece of media work that can be told to stop.
struct Job {
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl Job {
    fn spawn<F>(f: impl FnOnce(watch::Receiver<bool>) -> F) -> Job
    where
        F: std::future::Future<Output = ()> + Send + 'static,
    {
        let (stop, rx) = watch::channel(false);
        Job {
            stop,
            task: tokio::spawn(f(rx)),
        }
    }

    async fn end(self) {
        self.stop.send_replace(true);
        let _ = self.task.await;
    }

    /// Starts the job in `slot` when it is wanted and not there; ends it when it is not
    /// wanted.
    async fn follow(slot: &mut Option<Job>, want: bool, start: impl FnOnce() -> Job) {
        match (slot.is_some(), want) {
            (false, true) => *slot = Some(start()),
            (true, false) => {
                if let Some(job) = slot.take() {
                    job.end().await;
                }
            }
            _ => {}
        }
    }

    fn finished(&self) -> bool {
        self.task.is_finished()
    }
}

async fn reconcile_loop(
    meeting: Meeting,
    config: MediaConfig,
    shared: Arc<Shared>,
    mut stop: watch::Receiver<bool>,
) {
    let mut events = meeting.events();
    let mut publisher: Option<Job> = None;
    let mut preview: Option<Job> = None;
    let mut controls = shared.controls.subscribe();
    let mut subscriptions: HashMap<UserId, Job> = HashMap::new();
    let speaker = config.play_audio.then(|| start_speaker(shared.clone()));
    let me = meeting.user_id();
    loop {
        // Reconcile with the mirror: who should be published and received right now.
        let connected = meeting.connection_state() == ConnectionState::Connected;
        let on_stage = meeting.stage().status() == StageStatus::OnStage;
        let want_publish = connected && on_stage && config.sources != Sources::None;
        // A publication that ended on its own (the server closed it, a device failed) is
        // started again if this participant should still publish; this runs on events
        // only, so a failing device is retried at the pace of the meeting's events.
        if publisher.as_ref().is_some_and(Job::finished) {
            publisher = None;
        }
        // Off stage, the preview has the devices; on stage, the publisher (which shows the
        // preview itself). One at a time: a camera opens once.
        follow_preview(&mut preview, !want_publish, &config, &shared).await;
        Job::follow(&mut publisher, want_publish, || {
            let (m, c, s) = (meeting.clone(), config.clone(), shared.clone());
            Job::spawn(move |stop| run_publisher(m, c, s, stop))
        })
        .await;
        let stage: Vec<UserId> = if connected {
            meeting
                .participants()
                .into_iter()
                .filter(|p| p.stage_status == StageStatus::OnStage && p.user_id != me)
                .map(|p| p.user_id)
                .collect()
        } else {
            Vec::new()
        };
        // Off stage, or a session that ended on its own (the server closed it): let go;
        // whoever is still on stage gets a fresh subscription below.
        let gone: Vec<UserId> = subscriptions
            .iter()
            .filter(|(u, job)| !stage.contains(u) || job.finished())
            .map(|(u, _)| u.clone())
            .collect();
        for user in gone {
            if let Some(job) = subscriptions.remove(&user) {
                job.end().await;
            }
            if let Ok(mut mixer) = shared.mixer.lock() {
                mixer.remove(user.as_str());
            }
        }
        for user in stage {
            if let std::collections::hash_map::Entry::Vacant(slot) = subscriptions.entry(user) {
                let (m, c, s, u) = (
                    meeting.clone(),
                    config.clone(),
                    shared.clone(),
                    slot.key().clone(),
                );
                slot.insert(Job::spawn(move |stop| run_subscription(m, c, s, u, stop)));
            }
        }

        tokio::select! {
            event = events.recv() => match event {
                None => break,
                // Back after a drop: the server ended this client's peer connections.
                Some(MeetingEvent::ConnectionStateUpdate { state: ConnectionState::Connected, .. }) => {
                    if let Some(job) = publisher.take() {
                        job.end().await;
                    }
                    for (_, job) in subscriptions.drain() {
                        job.end().await;
                    }
                }
                // Someone left the stage: stop receiving them now, before a quick return
                // to the stage could hide the change from the mirror.
                Some(MeetingEvent::ParticipantStageStatus { user_id, status })
                    if status != StageStatus::OnStage =>
                {
                    if user_id == me {
                        if let Some(job) = publisher.take() {
                            job.end().await;
                        }
                    } else if let Some(job) = subscriptions.remove(&user_id) {
                        job.end().await;
                    }
                }
                Some(_) => {}
            },
            // The preview switch decides who holds the devices (see above).
            Ok(()) = controls.changed() => {}
            _ = stop.changed() => break,
        }
    }
    if let Some(job) = publisher.take() {
        job.end().await;
    }
    if let Some(job) = preview.take() {
        job.end().await;
    }
    for (_, job) in subscriptions.drain() {
        job.end().await;
    }
    if let Some(speaker) = speaker {
        speaker.store(true, Ordering::SeqCst);
    }
}

/// Runs the preview when it is switched on and `allowed` (not while publishing: the
/// publisher has the devices then).
async fn follow_preview(
    preview: &mut Option<Job>,
    allowed: bool,
    config: &MediaConfig,
    shared: &Arc<Shared>,
) {
    let want = allowed && shared.controls().preview && config.sources != Sources::None;
    if preview.as_ref().is_some_and(Job::finished) && !want {
        *preview = None;
    }
    Job::follow(preview, want, || {
        let (c, s) = (config.clone(), shared.clone());
        Job::spawn(move |stop| run_preview(c, s, stop))
    })
    .await;
}

/// [`StageMedia::device_check`]: the preview follows its switch, nothing else runs.
async fn preview_loop(config: MediaConfig, shared: Arc<Shared>, mut stop: watch::Receiver<bool>) {
    let mut controls = shared.controls.subscribe();
    let mut preview: Option<Job> = None;
    loop {
        follow_preview(&mut preview, true, &config, &shared).await;
        tokio::select! {
            r = controls.changed() => if r.is_err() { break },
            _ = stop.changed() => break,
        }
    }
    if let Some(job) = preview.take() {
        job.end().await;
    }
}

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
struct CaptureControl {
    stop: AtomicBool,
    keyframe: AtomicBool,
    bitrate: AtomicU32,
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
async fn run_preview(config: MediaConfig, shared: Arc<Shared>, mut stop: watch::Receiver<bool>) {
    let mut controls = shared.controls.subscribe();
    let mut video: Option<Capture> = None;
    let audio = start_audio(&config, &shared, None).await;
    loop {
        let camera = shared.controls().camera;
        if camera && video.is_none() {
            video = start_video(&config, &shared, None).await;
        } else if !camera {
            if let Some(v) = video.take() {
                v.end().await;
            }
        }
        tokio::select! {
            r = controls.changed() => if r.is_err() { break },
            _ = stop.changed() => break,
        }
    }
    for capture in [video, audio].into_iter().flatten() {
        capture.end().await;
    }
}

async fn run_publisher(
    meeting: Meeting,
    config: MediaConfig,
    shared: Arc<Shared>,
    mut stop: watch::Receiver<bool>,
) {
    // Offer what the preset allows, whatever is switched on now: the camera may be turned
    // on later without a new negotiation.
    let preset = meeting.preset();
    let opts = PublishOptions {
        audio: preset.can_produce_audio,
        video: preset.can_produce_video,
    };
    if !opts.audio && !opts.video {
        return;
    }
    let t0 = Instant::now();
    let (peer, offer) =
        match PublishPeer::with_config(opts, &transport_for(&meeting, &config)).await {
            Ok(pair) => pair,
            Err(e) => return shared.error("publish peer", &e),
        };
    tracing::debug!(after = ?t0.elapsed(), "publish: offer ready");
    let answer = tokio::select! {
        a = meeting.publish_offer(offer) => a,
        _ = stop.changed() => { peer.close().await; return; }
    };
    let answer = match answer {
        Ok(answer) => answer,
        Err(e) => {
            peer.close().await;
            return shared.error("media.publish", &e);
        }
    };
    if let Err(e) = peer.apply_answer(&answer).await {
        peer.close().await;
        return shared.error("publish answer", &e);
    }
    tracing::debug!(after = ?t0.elapsed(), "publish: answer applied");
    let (video_tx, mut video_rx) = mpsc::channel::<Vec<u8>>(ENCODED_QUEUE);
    let (audio_tx, mut audio_rx) = mpsc::channel::<Vec<u8>>(ENCODED_QUEUE);
    let mut audio = match opts.audio {
        true => start_audio(&config, &shared, Some(audio_tx)).await,
        false => None,
    };
    let mut video: Option<Capture> = None;
    let frame_time = Duration::from_secs(1) / config.video.fps.max(1);
    let audio_time = Duration::from_millis(20);
    let mut keyframes = peer.keyframe_requests();
    let mut estimates = peer.bitrate_estimates();
    let mut controls = shared.controls.subscribe();
    let mut connecting = true;
    let mut bitrate = config.video_bitrate_bps;
    let mut announced: Option<(bool, bool)> = None;
    loop {
        // Follow the switches: the camera opens and closes with its switch; a muted mic
        // keeps capturing (levels) but nothing is sent.
        let c = shared.controls();
        if opts.video && c.camera && video.is_none() {
            video = start_video(&config, &shared, Some(video_tx.clone())).await;
            if let Some(v) = &video {
                v.control.bitrate.store(bitrate, Ordering::SeqCst);
                v.control.keyframe.store(true, Ordering::SeqCst);
            }
        } else if !c.camera {
            if let Some(v) = video.take() {
                v.end().await;
            }
        }
        let sending = (audio.is_some() && c.mic, video.is_some());
        {
            let mut stats = shared.stats();
            stats.publishing = Publishing {
                audio: sending.0,
                video: sending.1,
            };
            stats.video_bitrate_bps = sending.1.then_some(bitrate);
        }
        if !connecting && announced != Some(sending) {
            // Everyone's tiles show the mute state; the publication itself stays.
            let _ = meeting.media_state(sending.0, sending.1).await;
            announced = Some(sending);
        }
        tokio::select! {
            // Whatever was encoded before the connection was up is lost: start the
            // viewers' pictures with a fresh keyframe.
            r = peer.connected(Duration::from_secs(10)), if connecting => {
                connecting = false;
                tracing::debug!(after = ?t0.elapsed(), ok = r.is_ok(), "publish: connected");
                if let Some(v) = &video {
                    v.control.keyframe.store(true, Ordering::SeqCst);
                }
            }
            Some(au) = video_rx.recv() => {
                // Nothing can leave before the connection is up; the first picture after
                // it is a keyframe (see above).
                if connecting {
                    continue;
                }
                if let Err(e) = peer.write_video(&au, frame_time).await {
                    tracing::debug!(error = %e, "video write");
                }
            }
            Some(packet) = audio_rx.recv() => {
                if connecting || !shared.controls().mic {
                    continue;
                }
                if let Err(e) = peer.write_audio(&packet, audio_time).await {
                    tracing::debug!(error = %e, "audio write");
                }
            }
            Some(()) = keyframes.recv() => {
                if let Some(v) = &video {
                    v.control.keyframe.store(true, Ordering::SeqCst);
                }
                shared.stats().keyframe_requests += 1;
            }
            Ok(()) = estimates.changed() => {
                bitrate = (*estimates.borrow()).min(config.video_bitrate_bps.saturating_mul(2));
                if let Some(v) = &video {
                    v.control.bitrate.store(bitrate, Ordering::SeqCst);
                }
            }
            Ok(()) = controls.changed() => {}
            _ = peer.closed() => break,
            _ = stop.changed() => break,
        }
    }
    // Stop capturing first: the devices close as the threads drop their sources.
    drop(video_rx);
    drop(audio_rx);
    peer.close().await;
    for capture in [video.take(), audio.take()].into_iter().flatten() {
        capture.end().await;
    }
    let mut stats = shared.stats();
    stats.publishing = Publishing::default();
    stats.video_bitrate_bps = None;
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
                user_id: UserId::new(LOCAL),
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

/// The transport for a new peer: the configured one plus the relays the server offers
/// (their credentials are the latest welcome's).
fn transport_for(meeting: &Meeting, config: &MediaConfig) -> TransportConfig {
    let mut transport = config.transport.clone();
    transport.ice_servers.extend(meeting.ice_servers());
    transport
}

async fn run_subscription(
    meeting: Meeting,
    config: MediaConfig,
    shared: Arc<Shared>,
    user: UserId,
    mut stop: watch::Receiver<bool>,
) {
    shared.received(&user, |_| {});
    let (peer, offer) = match SubscribePeer::with_config(&transport_for(&meeting, &config)).await {
        Ok(pair) => pair,
        Err(e) => return shared.error("subscribe peer", &e),
    };
    tracing::debug!(%user, "subscribe: offer ready");
    let answer = tokio::select! {
        a = meeting.subscribe_offer(&user, offer) => a,
        _ = stop.changed() => { peer.close().await; return; }
    };
    match answer {
        Ok(answer) => {
            if let Err(e) = peer.apply_answer(&answer).await {
                peer.close().await;
                return shared.error("subscribe answer", &e);
            }
        }
        Err(e) => {
            peer.close().await;
            // Off stage already (a race with the stage event): nothing to receive.
            if e.code() != onstage_proto::ErrorCode::InvalidState {
                shared.error("media.subscribe", &e);
            }
            return;
        }
    }
    let t0 = Instant::now();
    tracing::debug!(%user, "subscribe: answer applied");
    let mut frames = peer.frames();
    let mut first = true;
    let (decode_tx, decode_rx) = std::sync::mpsc::sync_channel::<bytes::Bytes>(DECODE_QUEUE);
    let (keyframe_tx, mut keyframe_rx) = mpsc::unbounded_channel::<()>();
    let decoder = config.decode_video.then(|| {
        let (s, u) = (shared.clone(), user.clone());
        std::thread::spawn(move || video_decode(decode_rx, s, u, keyframe_tx))
    });
    let mut opus = match OpusDecoder::new() {
        Ok(d) => Some(d),
        Err(e) => {
            shared.error("audio decoder", &e);
            None
        }
    };
    let mut tone: Vec<i16> = Vec::with_capacity(AUDIO_SAMPLE_RATE as usize / 5);
    let mut order = AudioOrder::default();
    let mut meter = LevelMeter::default();
    loop {
        tokio::select! {
            frame = frames.recv() => {
                let Some(frame) = frame else { break };
                if first && frame.kind == MediaKind::Video {
                    first = false;
                    tracing::debug!(%user, after = ?t0.elapsed(), keyframe = frame.keyframe, "subscribe: first video frame");
                }
                match frame.kind {
                    MediaKind::Video => {
                        if decoder.is_some() {
                            if let Err(std::sync::mpsc::TrySendError::Full(_)) =
                                decode_tx.try_send(frame.data)
                            {
                                // The decoder fell behind: skip to the next keyframe.
                                let _ = peer.request_keyframe().await;
                            }
                        }
                    }
                    MediaKind::Audio => {
                        let Some(opus) = opus.as_mut() else { continue };
                        let lost = match order.arrive(frame.rtp_timestamp) {
                            Arrival::Late => {
                                shared.received(&user, |r| r.audio_late += 1);
                                continue;
                            }
                            Arrival::InOrder { lost } => lost,
                        };
                        // Packets that never came: Opus conceals them from its state, so the
                        // mix hears a smooth guess instead of a click of silence.
                        for k in 0..lost {
                            let pcm = opus.decode_lost();
                            let ts = frame
                                .rtp_timestamp
                                .wrapping_sub(OPUS_FRAME_TICKS * (lost - k));
                            shared.received(&user, |r| r.audio_concealed += 1);
                            if config.play_audio {
                                if let Ok(mut mixer) = shared.mixer.lock() {
                                    mixer.push(user.as_str(), ts, pcm);
                                }
                            }
                        }
                        match opus.decode(&frame.data) {
                            Ok(pcm) => {
                                tone.extend_from_slice(&pcm.samples);
                                let measured = (tone.len() >= tone.capacity()).then(|| {
                                    let hz = dominant_frequency(&tone, AUDIO_SAMPLE_RATE);
                                    tone.clear();
                                    hz
                                });
                                if let Some(level) = meter.add(&pcm.samples) {
                                    let _ = shared.levels.send(AudioLevel {
                                        user_id: user.clone(),
                                        level,
                                    });
                                }
                                shared.received(&user, |r| {
                                    r.audio_frames += 1;
                                    if measured.is_some() {
                                        r.audio_frequency_hz = measured;
                                    }
                                });
                                if config.play_audio {
                                    if let Ok(mut mixer) = shared.mixer.lock() {
                                        mixer.push(user.as_str(), frame.rtp_timestamp, pcm);
                                    }
                                }
                            }
                            Err(e) => tracing::debug!(error = %e, "opus decode"),
                        }
                    }
                }
            }
            Some(()) = keyframe_rx.recv() => {
                let _ = peer.request_keyframe().await;
            }
            _ = peer.closed() => break,
            _ = stop.changed() => break,
        }
    }
    drop(decode_tx);
    peer.close().await;
    if let Some(t) = decoder {
        let _ = tokio::task::spawn_blocking(move || t.join()).await;
    }
}

fn video_decode(
    rx: std::sync::mpsc::Receiver<bytes::Bytes>,
    shared: Arc<Shared>,
    user: UserId,
    want_keyframe: mpsc::UnboundedSender<()>,
) {
    let mut decoder = match H264Decoder::new() {
        Ok(d) => d,
        Err(e) => return shared.error("video decoder", &e),
    };
    while let Ok(au) = rx.recv() {
        match decoder.decode(&au) {
            Ok(Some(mut frame)) => {
                let now_us = now_unix_us();
                frame.timestamp_us = now_us;
                let stamp = read_stamp(&frame);
                shared.received(&user, |r| {
                    r.video_frames += 1;
                    if let Some(stamp) = stamp {
                        r.stamped_frames += 1;
                        if r.last_frame_number.is_some_and(|n| stamp.frame_number <= n) {
                            r.out_of_order_frames += 1;
                        }
                        r.last_frame_number = Some(stamp.frame_number);
                        let now_ms = (now_us / 1000) & ((1 << 48) - 1);
                        let delay = now_ms.saturating_sub(stamp.capture_time_ms) as f64;
                        if r.latencies_ms.len() >= LATENCY_SAMPLES {
                            r.latencies_ms.remove(0);
                        }
                        r.latencies_ms.push(delay);
                        let (p50, p95) = percentiles(&r.latencies_ms);
                        r.glass_to_glass_p50_ms = Some(p50);
                        r.glass_to_glass_p95_ms = Some(p95);
                    }
                });
                let _ = shared.frames.send(RemoteVideo {
                    user_id: user.clone(),
                    frame: Arc::new(frame),
                });
            }
            Ok(None) => {}
            Err(e) => {
                tracing::debug!(error = %e, "h264 decode");
                shared.received(&user, |r| r.decode_errors += 1);
                let _ = want_keyframe.send(());
            }
        }
    }
}

/// RTP ticks of one 20 ms Opus packet at 48 kHz.
const OPUS_FRAME_TICKS: u32 = 960;
/// The longest gap concealed; a longer one (a publisher that paused) just restarts.
const MAX_CONCEALED: u32 = 10;

/// Where an audio packet falls in the stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Arrival {
    /// Next in order, after `lost` packets that never came.
    InOrder { lost: u32 },
    /// Older than one already decoded: its slot has passed.
    Late,
}

/// Orders the audio stream by RTP timestamp (with wrap-around) so the decoder sees each
/// packet once, in order, and learns of the gaps.
#[derive(Debug, Default)]
struct AudioOrder {
    last: Option<u32>,
}

impl AudioOrder {
    fn arrive(&mut self, ts: u32) -> Arrival {
        let Some(last) = self.last else {
            self.last = Some(ts);
            return Arrival::InOrder { lost: 0 };
        };
        let ahead = ts.wrapping_sub(last);
        // More than half the clock range ahead means behind (wrap-around arithmetic).
        if ahead == 0 || ahead > u32::MAX / 2 {
            return Arrival::Late;
        }
        self.last = Some(ts);
        let missing = ahead / OPUS_FRAME_TICKS - u32::from(ahead % OPUS_FRAME_TICKS == 0);
        Arrival::InOrder {
            lost: if missing <= MAX_CONCEALED { missing } else { 0 },
        }
    }
}

fn percentiles(samples: &[f64]) -> (f64, f64) {
    let mut sorted = samples.to_vec();
    sorted.sort_by(f64::total_cmp);
    let at = |q: f64| {
        let i = ((sorted.len() as f64 - 1.0) * q).round() as usize;
        sorted.get(i).copied().unwrap_or(0.0)
    };
    (at(0.5), at(0.95))
}

/// Plays the mix on the default speaker, paced by 20 ms frames. Returns the stop flag.
fn start_speaker(shared: Arc<Shared>) -> Arc<AtomicBool> {
    let stop = Arc::new(AtomicBool::new(false));
    let flag = stop.clone();
    std::thread::spawn(move || {
        let mut sink = match SpeakerSink::open(None) {
            Ok(s) => s,
            Err(e) => return shared.device_error(Device::Speaker, &e),
        };
        let start = Instant::now();
        let mut n: u32 = 0;
        while !flag.load(Ordering::SeqCst) {
            n = n.wrapping_add(1);
            let due = start + Duration::from_millis(20) * n;
            std::thread::sleep(due.saturating_duration_since(Instant::now()));
            let frame: AudioFrame = match shared.mixer.lock() {
                Ok(mut mixer) => mixer.mix_next(),
                Err(_) => break,
            };
            if let Err(e) = sink.play(&frame) {
                return shared.device_error(Device::Speaker, &e);
            }
        }
    });
    stop
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn audio_order_finds_gaps_and_late_packets_across_the_wrap() {
        let mut o = AudioOrder::default();
        let start = u32::MAX - 960;
        assert_eq!(o.arrive(start), Arrival::InOrder { lost: 0 });
        assert_eq!(
            o.arrive(start.wrapping_add(960)),
            Arrival::InOrder { lost: 0 }
        );
        // Two packets missing (crossing the wrap).
        assert_eq!(
            o.arrive(start.wrapping_add(960 * 4)),
            Arrival::InOrder { lost: 2 }
        );
        // One of them shows up after its slot was concealed; a duplicate too.
        assert_eq!(o.arrive(start.wrapping_add(960 * 2)), Arrival::Late);
        assert_eq!(o.arrive(start.wrapping_add(960 * 4)), Arrival::Late);
        // A long pause is not concealed.
        assert_eq!(
            o.arrive(start.wrapping_add(960 * 100)),
            Arrival::InOrder { lost: 0 }
        );
    }

    #[test]
    fn percentiles_of_samples() {
        let samples: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(percentiles(&samples), (51.0, 95.0));
    }
}
