//! The device check on the join screen: the local camera picture (user id `"local"`) and
//! the microphone level before any meeting exists. In a meeting, `StageMedia::preview`
//! does this instead (it owns the devices there).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;

use tauri::{AppHandle, Emitter, Runtime};

use onstage_client::LOCAL;
use onstage_media::{
    AudioSource, CameraSource, MediaError, MicrophoneSource, SyntheticAudio, SyntheticVideo,
    VideoFormat, VideoSource,
};

use crate::config::MediaMode;
use crate::events::MediaErrorEvent;
use crate::state::DeviceChoice;
use crate::video::Pictures;

const FORMAT: VideoFormat = VideoFormat {
    width: 640,
    height: 480,
    fps: 30,
};

/// A running device check; dropping it stops the threads (they close the devices).
pub struct IdlePreview {
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
}

impl IdlePreview {
    pub fn start<R: Runtime>(
        app: &AppHandle<R>,
        mode: MediaMode,
        choice: &DeviceChoice,
        pictures: &Pictures,
    ) -> IdlePreview {
        let stop = Arc::new(AtomicBool::new(false));
        let mut threads = Vec::new();

        let (camera, a, p, s) = (
            choice.camera.clone(),
            app.clone(),
            pictures.clone(),
            stop.clone(),
        );
        threads.push(std::thread::spawn(move || {
            let opened: Result<Box<dyn VideoSource>, MediaError> = match mode {
                MediaMode::Synthetic => Ok(Box::new(SyntheticVideo::new(
                    FORMAT.width,
                    FORMAT.height,
                    FORMAT.fps,
                ))),
                MediaMode::Devices => CameraSource::open(camera.as_deref(), FORMAT)
                    .map(|c| Box::new(c) as Box<dyn VideoSource>),
            };
            let mut source = match opened {
                Ok(s) => s,
                Err(e) => return report(&a, "camera", &e),
            };
            while !s.load(Ordering::Relaxed) {
                match source.next_frame() {
                    Ok(frame) => p.offer(LOCAL, &frame),
                    Err(e) => return report(&a, "camera", &e),
                }
            }
        }));

        let (mic, a, s) = (choice.microphone.clone(), app.clone(), stop.clone());
        threads.push(std::thread::spawn(move || {
            let opened: Result<Box<dyn AudioSource>, MediaError> = match mode {
                MediaMode::Synthetic => Ok(Box::new(SyntheticAudio::new(440.0))),
                MediaMode::Devices => MicrophoneSource::open(mic.as_deref())
                    .map(|m| Box::new(m) as Box<dyn AudioSource>),
            };
            let mut source = match opened {
                Ok(s) => s,
                Err(e) => return report(&a, "microphone", &e),
            };
            // A level every five 20 ms frames, like the SDK's meter.
            let (mut sum, mut n, mut frames) = (0f64, 0usize, 0u32);
            while !s.load(Ordering::Relaxed) {
                let frame = match source.next_frame() {
                    Ok(f) => f,
                    Err(e) => return report(&a, "microphone", &e),
                };
                sum += frame
                    .samples
                    .iter()
                    .map(|&x| f64::from(x) * f64::from(x))
                    .sum::<f64>();
                n += frame.samples.len();
                frames += 1;
                if frames == 5 {
                    let level = ((sum / n.max(1) as f64).sqrt() / f64::from(i16::MAX)).min(1.0);
                    let _ = a.emit(
                        "audio-level",
                        serde_json::json!({ "user_id": LOCAL, "level": level }),
                    );
                    (sum, n, frames) = (0.0, 0, 0);
                }
            }
        }));
        IdlePreview { stop, threads }
    }
}

impl Drop for IdlePreview {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        // Not joined: a device read blocks for at most one frame, and waiting here would
        // stall the command that stopped the preview.
        self.threads.clear();
    }
}

fn report<R: Runtime>(app: &AppHandle<R>, what: &'static str, e: &MediaError) {
    tracing::warn!(error = %e, "{what}");
    let _ = app.emit(
        "media-error",
        MediaErrorEvent {
            code: e.code().into(),
            message: format!("{what}: {e}"),
            device: Some(what),
        },
    );
}
