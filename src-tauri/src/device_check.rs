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
    /// Held so the check runs; the SDK stops it when the last reference goes. `None` once
    /// stopped.
    media: Option<Arc<StageMedia>>,
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
            media: Some(media),
            pictures_stop,
            signals,
        }
    }
}

impl DeviceCheck {
    /// Shows another camera or microphone: the capture restarts, the old device closed
    /// first.
    pub fn select_devices(&self, choice: DeviceChoice) {
        if let Some(media) = &self.media {
            media.select_devices(choice);
        }
    }

    /// Stops the check and waits until its devices are closed, so that whoever opens them
    /// next (the meeting's media, a new check) does not find them busy.
    pub async fn stop(mut self) {
        self.pictures_stop.store(true, Ordering::Relaxed);
        self.signals.abort();
        let _ = (&mut self.signals).await;
        // The signals task held the other reference: with it gone the media can be stopped
        // and awaited rather than just dropped.
        match self.media.take().map(Arc::try_unwrap) {
            Some(Ok(media)) => media.stop().await,
            Some(Err(media)) => drop(media),
            None => {}
        }
    }
}

impl Drop for DeviceCheck {
    fn drop(&mut self) {
        self.pictures_stop.store(true, Ordering::Relaxed);
        // Holds the other reference to the media: with it gone the media stops.
        self.signals.abort();
    }
}
