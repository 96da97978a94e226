//! The device check on the join screen: the local camera picture (origin local) and
//! the microphone level before any meeting exists, from the SDK's
//! [`StageMedia::device_check`]. In a meeting, the meeting's own `StageMedia` does this
//! (`preview`), since it owns the devices there.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use tauri::{AppHandle, Runtime};

use onstage_client::{DeviceChoice, MediaConfig, StageMedia};

use crate::events;
use crate::video::Pictures;

/// A running device check. Dropping it stops it: the SDK closes the devices.
pub struct DeviceCheck {
    /// Held so the check runs; the SDK stops it when the last reference goes.
    media: Arc<StageMedia>,
    pictures_stop: Arc<AtomicBool>,
    signals: tauri::async_runtime::JoinHandle<()>,
}

impl DeviceCheck {
    /// Starts the check with these sources. Must be called inside the async runtime.
    pub fn start<R: Runtime>(
        app: &AppHandle<R>,
        config: MediaConfig,
        pictures: &Pictures,
    ) -> DeviceCheck {
        let media = Arc::new(StageMedia::device_check(config));
        let pictures_stop = Arc::new(AtomicBool::new(false));
        pictures.pump(media.video_frames(), pictures_stop.clone());
        let signals =
            tauri::async_runtime::spawn(events::forward_media(app.clone(), media.clone()));
        media.preview(true);
        DeviceCheck {
            media,
            pictures_stop,
            signals,
        }
    }
}

impl DeviceCheck {
    /// Shows another camera or microphone: the capture restarts, the old device closed
    /// first.
    pub fn select_devices(&self, choice: DeviceChoice) {
        self.media.select_devices(choice);
    }
}

impl Drop for DeviceCheck {
    fn drop(&mut self) {
        self.pictures_stop.store(true, Ordering::Relaxed);
        // Holds the other reference to the media: with it gone the media stops.
        self.signals.abort();
    }
}
