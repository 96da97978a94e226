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
//! network side runs on tokio. What runs when is decided in one place, the pure `plan`;
//! the rest carries it out.
//!
//! ## Layout
//! - [`config`]: [`MediaConfig`], [`Sources`], [`Controls`], [`Device`], [`MediaProblem`].
//! - [`stats`]: [`MediaStats`] and what it counts; the level meter.
//! - `plan`: what should run now — pure functions from the stage, the switches and the
//!   running jobs to start/stop actions (unit- and property-tested).
//! - `orchestrate`: applies the plan: holds the publisher, the preview and the
//!   subscriptions.
//! - [`layers`]: the simulcast layers of a capture, and which of them the bandwidth carries
//!   (pure, unit-tested).
//! - `publish`: the publish peer and what feeds it.
//! - `capture`: the camera and microphone threads (preview and encoding, one encoder per
//!   layer).
//! - `receive`: one subscription: video decoding, audio through a jitter buffer.
//! - `speaker`: plays the mix.
//! - `backoff`: how soon a failed or lost device is opened again.
//! - this file: [`StageMedia`], the handle the app holds, and the state its jobs share.

mod backoff;
mod capture;
pub mod config;
pub mod layers;
mod orchestrate;
mod plan;
mod publish;
mod receive;
mod speaker;
pub mod stats;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use onstage_media::{AudioMixer, MediaError, VideoFrame};
use tokio::sync::{broadcast, watch};

use crate::meeting::WeakMeeting;
use crate::rtc::TransportConfig;
use crate::{Meeting, UserId};
use onstage_proto::MediaKinds;

pub use config::{Controls, Device, DeviceChoice, MediaConfig, MediaProblem, Sources};
pub use stats::{MediaStats, PublishedLayer, Received, Reception};

/// Whose picture or audio level it is. The local camera and microphone are their own case,
/// not a reserved user id: a participant whose id happens to be `"local"` is someone else.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Origin {
    /// This machine's camera or microphone: the self-view, the preview, the device check.
    Local,
    /// A participant on stage.
    Remote(UserId),
}

impl Origin {
    /// The participant, for a remote origin.
    pub fn user_id(&self) -> Option<&UserId> {
        match self {
            Origin::Local => None,
            Origin::Remote(user) => Some(user),
        }
    }
}

/// A decoded picture, from someone on stage or the local camera, for the app to draw.
#[derive(Debug, Clone)]
pub struct Picture {
    pub origin: Origin,
    pub frame: Arc<VideoFrame>,
}

/// Samples of glass-to-glass delay kept per publisher.
const LATENCY_SAMPLES: usize = 512;
/// Encoded frames waiting between a capture thread and the network.
const ENCODED_QUEUE: usize = 8;
/// Received access units waiting for a decoder.
const DECODE_QUEUE: usize = 16;

/// The loudness of someone's audio (or of the local microphone), 0.0 to 1.0 (RMS over
/// about 100 ms).
#[derive(Debug, Clone, PartialEq)]
pub struct AudioLevel {
    pub origin: Origin,
    pub level: f32,
}

/// The transport for a new peer: the configured one plus the relays the server offers
/// (their credentials are the latest welcome's).
fn transport_for(meeting: &Meeting, config: &MediaConfig) -> TransportConfig {
    let mut transport = config.transport.clone();
    transport.ice_servers.extend(meeting.ice_servers());
    transport
}

/// What the handle and its jobs share: the outputs (pictures, levels, problems, stats),
/// the mix, the switches and the device choice.
struct Shared {
    problems: broadcast::Sender<MediaProblem>,
    stats: Mutex<MediaStats>,
    open_sources: AtomicUsize,
    frames: broadcast::Sender<Picture>,
    levels: broadcast::Sender<AudioLevel>,
    mixer: Mutex<AudioMixer>,
    controls: watch::Sender<Controls>,
    /// The camera and microphone to capture from; changing it restarts only the capture.
    devices: watch::Sender<DeviceChoice>,
    /// There are sources to choose (a choice between synthetic sources restarts them, as it
    /// would a device: what the tests check).
    choosable: bool,
    /// A host muted this participant: what the server holds as its publication's state is
    /// no longer what the publisher last told it, so the publisher tells it again (its
    /// `media.state` with audio on is what lifts the server's hold).
    retell_state: std::sync::atomic::AtomicBool,
    /// A capture thread ended on its own (its device failed): the job holding it wakes to
    /// tell everyone the microphone is off and to open it again in time.
    capture_ended: tokio::sync::Notify,
}

impl Shared {
    fn new(devices: DeviceChoice, choosable: bool) -> Shared {
        Shared {
            problems: broadcast::channel(16).0,
            stats: Mutex::default(),
            open_sources: AtomicUsize::new(0),
            frames: broadcast::channel(16).0,
            levels: broadcast::channel(64).0,
            mixer: Mutex::new(AudioMixer::new()),
            controls: watch::channel(Controls::default()).0,
            devices: watch::channel(devices).0,
            choosable,
            retell_state: std::sync::atomic::AtomicBool::new(false),
            capture_ended: tokio::sync::Notify::new(),
        }
    }

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

    fn devices(&self) -> DeviceChoice {
        self.devices.borrow().clone()
    }

    /// Hands a picture of the local camera to the app: always while publishing (the
    /// self-view tile), otherwise when the preview is on.
    fn local_picture(&self, frame: &VideoFrame, publishing: bool) {
        if (publishing || self.controls().preview) && self.frames.receiver_count() > 0 {
            let _ = self.frames.send(Picture {
                origin: Origin::Local,
                frame: Arc::new(frame.clone()),
            });
        }
    }
}

/// Stage media for one joined meeting. Dropping it (or [`StageMedia::stop`]) stops
/// publishing and receiving.
pub struct StageMedia {
    shared: Arc<Shared>,
    /// The meeting followed, for what its participants publish and which tiles are shown
    /// (a reception is judged against what is expected: a camera switched off or a hidden
    /// tile is no frozen picture). Weak: the media does not keep the connection open.
    meeting: Option<WeakMeeting>,
    stop: watch::Sender<bool>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl StageMedia {
    /// Starts following the stage. Must be called inside a tokio runtime.
    pub fn start(meeting: Meeting, config: MediaConfig) -> StageMedia {
        let choice = (config.devices(), config.sources != Sources::None);
        let weak = meeting.downgrade();
        let mut media = Self::spawn(choice, |shared, stop| {
            orchestrate::run(Some(meeting), config, shared, stop)
        });
        media.meeting = Some(weak);
        media
    }

    /// Media without a meeting: the device check before joining one. Only the preview
    /// works ([`StageMedia::preview`], [`StageMedia::set_camera`]): the local camera on
    /// [`StageMedia::video_frames`] as [`Origin::Local`], the microphone level, device problems.
    /// Must be called inside a tokio runtime.
    pub fn device_check(config: MediaConfig) -> StageMedia {
        let choice = (config.devices(), config.sources != Sources::None);
        Self::spawn(choice, |shared, stop| {
            orchestrate::run(None, config, shared, stop)
        })
    }

    fn spawn<F>(
        (devices, choosable): (DeviceChoice, bool),
        run: impl FnOnce(Arc<Shared>, watch::Receiver<bool>) -> F,
    ) -> StageMedia
    where
        F: std::future::Future<Output = ()> + Send + 'static,
    {
        let shared = Arc::new(Shared::new(devices, choosable));
        let (stop, stop_rx) = watch::channel(false);
        let task = tokio::spawn(run(shared.clone(), stop_rx));
        StageMedia {
            shared,
            meeting: None,
            stop,
            task: Some(task),
        }
    }

    /// A snapshot of what is published and received.
    pub fn stats(&self) -> MediaStats {
        // What is expected is read before the stats' lock is taken (the meeting has its
        // own); the reading is computed on the shared stats, as it keeps since when video
        // is expected.
        let meeting = self.meeting.as_ref().and_then(WeakMeeting::upgrade);
        let publishing = meeting
            .as_ref()
            .map(Meeting::publishing)
            .unwrap_or_default();
        let hidden: Vec<UserId> = meeting
            .as_ref()
            .and_then(Meeting::tiles)
            .unwrap_or_default()
            .into_iter()
            .filter(|t| t.width == 0 || t.height == 0)
            .map(|t| t.user_id)
            .collect();
        let now = std::time::Instant::now();
        let mut stats = {
            let mut shared = self.shared.stats();
            for (user, received) in &mut shared.received {
                let published = publishing.get(user).copied().unwrap_or(MediaKinds::NONE);
                let expected =
                    MediaKinds::new(published.audio, published.video && !hidden.contains(user));
                received.compute_at_reading(now, expected);
            }
            shared.clone()
        };
        stats.open_sources = self.shared.open_sources.load(Ordering::SeqCst);
        stats
    }

    /// Sources (camera, microphone, or their synthetic stand-ins) open right now.
    pub fn open_sources(&self) -> usize {
        self.shared.open_sources.load(Ordering::SeqCst)
    }

    /// Decoded pictures of everyone on stage, and of the local camera ([`Origin::Local`]) while the
    /// preview is on. Lossy: a receiver that lags skips pictures.
    pub fn video_frames(&self) -> broadcast::Receiver<Picture> {
        self.shared.frames.subscribe()
    }

    /// Devices that could not be used, as they happen (a missing camera, a microphone
    /// that went away).
    pub fn media_problems(&self) -> broadcast::Receiver<MediaProblem> {
        self.shared.problems.subscribe()
    }

    /// Audio levels of everyone on stage and of the local microphone ([`Origin::Local`]).
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

    /// Shows the local camera (on [`StageMedia::video_frames`] as [`Origin::Local`]) and the
    /// microphone level, also off stage: the device check and the green room. Nothing is
    /// published off stage.
    pub fn preview(&self, on: bool) {
        self.shared.controls.send_modify(|c| c.preview = on);
    }

    /// The current switches.
    pub fn controls(&self) -> Controls {
        self.shared.controls()
    }

    /// Captures from another camera or microphone. Only the capture restarts, the old
    /// device closed before the new one opens: a publication and the subscriptions stay as
    /// they are. Synthetic sources open the same stand-ins again; with no sources
    /// ([`Sources::None`]) there is nothing to choose: ignored.
    pub fn select_devices(&self, choice: DeviceChoice) {
        if !self.shared.choosable {
            tracing::debug!("device choice ignored: nothing is captured");
            return;
        }
        self.shared.devices.send_if_modified(|now| {
            let changed = *now != choice;
            *now = choice;
            changed
        });
    }

    /// The camera and microphone captured from.
    pub fn devices(&self) -> DeviceChoice {
        self.shared.devices()
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
