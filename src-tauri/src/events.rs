//! SDK events -> Tauri events: `session`, `meeting-event`, `media-error`, `audio-level`.
//!
//! One task per joined meeting. The Session is rebuilt after every SDK event and on a
//! short tick (the media side changes without meeting events: a publisher connecting, a
//! device failing), and emitted only when it differs from the last one sent, so the UI gets
//! every change once.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::Serialize;
use tauri::{AppHandle, Emitter, Runtime};
use tokio::sync::broadcast;

use onstage_client::{AudioLevel, Meeting, MeetingEvent, StageMedia};

use crate::state::{build_session, lock, Session, View};

/// How often the media side is checked for changes the meeting events do not announce.
const TICK: Duration = Duration::from_millis(250);

#[derive(Debug, Clone, Serialize)]
pub struct MediaErrorEvent {
    pub code: String,
    pub message: String,
}

#[derive(Debug, Clone, Serialize)]
struct AudioLevelEvent<'a> {
    user_id: &'a str,
    level: f32,
}

/// Emits the Session if it changed since the last one emitted.
pub fn emit_session<R: Runtime>(
    app: &AppHandle<R>,
    meeting: &Meeting,
    media: &StageMedia,
    view: &Mutex<View>,
) -> Session {
    let mut view = lock(view);
    let session = build_session(meeting, media, &view);
    if view.last_session.as_ref() != Some(&session) {
        if let Err(e) = app.emit("session", &session) {
            tracing::warn!(error = %e, "emit session");
        }
        view.last_session = Some(session.clone());
    }
    session
}

/// Runs until the meeting's event stream ends (left, or disconnected for good).
pub async fn run<R: Runtime>(
    app: AppHandle<R>,
    meeting: Meeting,
    media: Arc<StageMedia>,
    view: Arc<Mutex<View>>,
) {
    let mut events = meeting.events();
    let mut levels = media.audio_levels();
    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut last_error: Option<String> = None;
    loop {
        tokio::select! {
            event = events.recv() => {
                let Some(event) = event else { break };
                remember(&view, &event);
                if let Err(e) = app.emit("meeting-event", &event) {
                    tracing::warn!(error = %e, "emit meeting-event");
                }
                emit_session(&app, &meeting, &media, &view);
            }
            level = levels.recv() => match level {
                Ok(AudioLevel { user_id, level }) => {
                    let _ = app.emit("audio-level", AudioLevelEvent { user_id: user_id.as_str(), level });
                }
                // Levels are momentary: a missed one is simply gone.
                Err(broadcast::error::RecvError::Lagged(_)) => {}
                Err(broadcast::error::RecvError::Closed) => levels = media.audio_levels(),
            },
            _ = tick.tick() => {
                let error = media.stats().last_error;
                if error.is_some() && error != last_error {
                    if let Some(message) = &error {
                        let _ = app.emit("media-error", media_error(message));
                    }
                }
                last_error = error;
                emit_session(&app, &meeting, &media, &view);
            }
        }
    }
    // The stream ended: the final Session says `disconnected`.
    emit_session(&app, &meeting, &media, &view);
}

/// Keeps what the Session needs and the SDK's mirror does not hold.
fn remember(view: &Mutex<View>, event: &MeetingEvent) {
    let mut view = lock(view);
    match event {
        MeetingEvent::StageAccessRequestUpdate { requests } => view.queue = requests.clone(),
        MeetingEvent::MediaPublished {
            user_id,
            audio,
            video,
        } => {
            view.published.insert(user_id.clone(), (*audio, *video));
        }
        MeetingEvent::MediaUnpublished { user_id }
        | MeetingEvent::ParticipantLeft { user_id, .. } => {
            view.published.remove(user_id);
            view.queue.retain(|r| &r.user_id != user_id);
        }
        _ => {}
    }
}

/// The SDK reports media failures as text (`"camera: device not found: ..."`, the
/// `MediaError` display after what failed); the UI wants the stable code.
pub fn media_error(message: &str) -> MediaErrorEvent {
    let code = if message.contains("device not found") {
        "device_not_found"
    } else if message.contains("device busy") {
        "device_busy"
    } else {
        "device_error"
    };
    MediaErrorEvent {
        code: code.into(),
        message: message.into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use onstage_client::UserId;

    #[test]
    fn media_error_codes() {
        assert_eq!(
            media_error("camera: device not found: no camera").code,
            "device_not_found"
        );
        assert_eq!(
            media_error("microphone: device busy: x").code,
            "device_busy"
        );
        assert_eq!(media_error("speaker: device error: x").code, "device_error");
    }

    #[test]
    fn view_follows_the_queue_and_publications() {
        let view = Mutex::new(View::default());
        let u = UserId::new("u1");
        remember(
            &view,
            &MeetingEvent::MediaPublished {
                user_id: u.clone(),
                audio: true,
                video: false,
            },
        );
        assert_eq!(lock(&view).published.get(&u), Some(&(true, false)));
        remember(
            &view,
            &MeetingEvent::MediaUnpublished { user_id: u.clone() },
        );
        assert!(lock(&view).published.is_empty());
    }
}
