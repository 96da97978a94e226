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

use onstage_client::proto::MediaKinds;
use onstage_client::{AudioLevel, Meeting, MeetingEvent, Origin, StageMedia};

use crate::error::CommandError;
use crate::state::{build_session, lock, Session, View};

/// How often the media side is checked for changes the meeting events do not announce.
const TICK: Duration = Duration::from_millis(250);

/// `audio-level`: `{"origin":"local","level":..}` for this machine's microphone,
/// `{"origin":"remote","user_id":..,"level":..}` for a participant. The origin is its own
/// field so that no user id (not even `"local"`) can pass for the local microphone.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "origin", rename_all = "snake_case")]
enum AudioLevelEvent<'a> {
    Local { level: f32 },
    Remote { user_id: &'a str, level: f32 },
}

impl<'a> AudioLevelEvent<'a> {
    fn of(level: &'a AudioLevel) -> Self {
        match &level.origin {
            Origin::Local => AudioLevelEvent::Local { level: level.level },
            Origin::Remote(user) => AudioLevelEvent::Remote {
                user_id: user.as_str(),
                level: level.level,
            },
        }
    }
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
    let meeting_events = async {
        let mut events = meeting.events();
        let mut tick = tokio::time::interval(TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
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
                _ = tick.tick() => {
                    emit_session(&app, &meeting, &media, &view);
                }
            }
        }
    };
    // `forward_media` runs as long as the media does, and this task holds the media: the
    // meeting's event stream decides when this ends.
    tokio::select! {
        () = meeting_events => {}
        () = forward_media(app.clone(), media.clone()) => {}
    }
    // The stream ended: the final Session says `disconnected`.
    emit_session(&app, &meeting, &media, &view);
}

/// `audio-level` and `media-error` events from stage media, in a meeting or in the device
/// check before one. Runs until the media is gone.
pub async fn forward_media<R: Runtime>(app: AppHandle<R>, media: Arc<StageMedia>) {
    let mut levels = media.audio_levels();
    let mut problems = media.media_problems();
    loop {
        tokio::select! {
            level = levels.recv() => match level {
                Ok(level) => {
                    let _ = app.emit("audio-level", AudioLevelEvent::of(&level));
                }
                // Levels are momentary: a missed one is simply gone.
                Err(broadcast::error::RecvError::Lagged(_)) => {}
                Err(broadcast::error::RecvError::Closed) => break,
            },
            problem = problems.recv() => match problem {
                Ok(p) => {
                    let _ = app.emit("media-error", CommandError::from(p));
                }
                Err(broadcast::error::RecvError::Lagged(_)) => {}
                Err(broadcast::error::RecvError::Closed) => break,
            },
        }
    }
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
            view.published
                .insert(user_id.clone(), MediaKinds::new(*audio, *video));
        }
        MeetingEvent::MediaUnpublished { user_id }
        | MeetingEvent::ParticipantLeft { user_id, .. } => {
            view.published.remove(user_id);
            view.queue.retain(|r| &r.user_id != user_id);
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use onstage_client::UserId;

    #[test]
    fn audio_levels_name_their_origin_and_local_is_no_user_id() {
        let json = |origin: Origin| {
            serde_json::to_value(AudioLevelEvent::of(&AudioLevel { origin, level: 0.5 }))
                .expect("serializes")
        };
        assert_eq!(
            json(Origin::Local),
            serde_json::json!({"origin": "local", "level": 0.5})
        );
        assert_eq!(
            json(Origin::Remote(UserId::new("local"))),
            serde_json::json!({"origin": "remote", "user_id": "local", "level": 0.5})
        );
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
        assert_eq!(
            lock(&view).published.get(&u),
            Some(&MediaKinds::new(true, false))
        );
        remember(
            &view,
            &MeetingEvent::MediaUnpublished { user_id: u.clone() },
        );
        assert!(lock(&view).published.is_empty());
    }
}
