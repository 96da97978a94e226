//! What the shell holds: the joined meeting, its stage media, the embedded server, and the
//! Session the UI renders from (docs/APP.md).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::Serialize;

use onstage_client::proto::{ErrorBody, MediaKinds, StageAccess};
use onstage_client::Fingerprint;
use onstage_client::{
    AccessRequest, AdminClient, CloseReason, ConnectionState, Meeting, Participant, Reception,
    StageMedia, StageStatus, UserId,
};
use onstage_server::RunningServer;

use crate::commands::CommandError;
use crate::config::AppConfig;
use crate::hosting::HostRecord;
use crate::video::Pictures;

/// What the app is doing (`app_info.mode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    Idle,
    Embedded,
    Joined,
}

/// Managed by Tauri; every command gets it.
pub struct AppState {
    pub config: AppConfig,
    /// One command at a time changes the session (join while leaving would leak a meeting).
    pub live: tokio::sync::Mutex<Option<Live>>,
    pub pictures: Pictures,
    /// The picture socket's URL; `None` when it could not start (the app runs on without
    /// video).
    pub picture_socket: Option<String>,
    /// Device choice for the next media start (`select_devices`).
    pub devices: Mutex<DeviceChoice>,
    /// The device check before joining (`preview` with no meeting).
    pub idle_preview: Mutex<Option<crate::device_check::DeviceCheck>>,
    /// The last failure no command answered for (`app_info.last_error`).
    pub last_error: Mutex<Option<crate::error::AppError>>,
    /// The embedded server once its host is out of the meeting: it keeps serving while the
    /// app runs, and hosting again rejoins it rather than starting another.
    pub serving: Mutex<Option<Kept>>,
    /// The server a join is under way to (`join_progress`), without its token: the page
    /// says what it waits for while the join holds `live`.
    pub joining: Mutex<Option<String>>,
}

/// The embedded server the host is out of (`AppState::serving`).
pub struct Kept {
    pub embedded: Embedded,
    /// The host left without ending it: the others carry on (`app_info.serving`). False
    /// after "End meeting for all": nobody is in it, a later join starts a new session.
    pub meeting_running: bool,
}

#[derive(Debug, Clone, Default)]
pub struct DeviceChoice {
    pub camera: Option<String>,
    pub microphone: Option<String>,
}

/// A joined meeting and everything that lives as long as it.
pub struct Live {
    pub meeting: Meeting,
    pub media: Arc<StageMedia>,
    /// Stops the picture thread.
    pub pictures_stop: Arc<std::sync::atomic::AtomicBool>,
    pub server_url: String,
    /// Set when this app runs the server.
    pub embedded: Option<Embedded>,
    /// What the events task learnt (queue, published state); shared with it.
    pub view: Arc<Mutex<View>>,
    /// The task turning SDK events into Tauri events; aborted on leave.
    pub events_task: tauri::async_runtime::JoinHandle<()>,
    /// The last invitation minted (`app_info.invite_link`).
    pub invite_link: Option<String>,
    /// How the meeting was entered: Rejoin enters it the same way.
    pub entry: Entry,
}

/// How a meeting was entered, so that Rejoin can enter it again the same way.
#[derive(Debug, Clone)]
pub enum Entry {
    /// A server's meeting, joined with this token (and certificate pin, from a link).
    Server {
        token: String,
        fingerprint: Option<Fingerprint>,
    },
    /// The embedded server's meeting, hosted under this name.
    Hosted { name: String },
}

/// The server this app runs, and the admin access to mint invitations.
pub struct Embedded {
    pub server: RunningServer,
    pub admin: AdminClient,
    pub meeting_id: String,
    /// The server's data dir, where [`HostRecord`] lives.
    pub data_dir: std::path::PathBuf,
    /// What hosting keeps between starts (ports, meeting, the last invite address).
    pub record: HostRecord,
    /// The server serves IPv6 too (bound to `::`).
    pub with_v6: bool,
}

/// What the SDK does not keep in its mirror but the Session shows: the request queue (from
/// `stageAccessRequestUpdate`) and what each participant publishes (from `mediaPublished` /
/// `mediaUnpublished`).
#[derive(Debug, Default)]
pub struct View {
    pub queue: Vec<AccessRequest>,
    pub published: HashMap<UserId, MediaKinds>,
    pub last_session: Option<Session>,
}

/// `Session` of docs/APP.md.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Session {
    pub meeting_id: String,
    /// The meeting's title (empty when the server sends none).
    pub title: String,
    pub connection: ConnectionState,
    /// Once `disconnected`: why, when the meeting ended for a known reason (`left`,
    /// `replaced`, `revoked`, `removed`, `meeting_deleted`, `meeting_ended`), for the UI
    /// to say so.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub end_reason: Option<CloseReason>,
    pub me: Me,
    pub participants: Vec<ParticipantView>,
    pub queue: Vec<AccessRequest>,
    pub max_on_stage: u32,
    pub mic_on: bool,
    pub camera_on: bool,
    pub publishing: MediaKinds,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ParticipantView {
    pub user_id: UserId,
    pub name: String,
    pub preset: String,
    pub stage_status: StageStatus,
    pub connected: bool,
    pub audio: bool,
    pub video: bool,
    /// How their media comes through here (the tile's mark): someone else on stage, once
    /// there is enough to judge.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reception: Option<Reception>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Me {
    #[serde(flatten)]
    pub participant: ParticipantView,
    pub can: Can,
    /// While REQUESTED: my place in the queue (1 = next in line).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub queue_place: Option<usize>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Can {
    pub accept_requests: bool,
    pub kick: bool,
    pub request: bool,
    pub join_directly: bool,
    /// May end the meeting for everyone, and give others presets (a host:
    /// `Preset::may_end_meeting`).
    pub end_meeting: bool,
    /// May remove others from the meeting (`kick_participant`).
    pub remove: bool,
}

impl Live {
    /// The Session as of now.
    pub fn session(&self) -> Session {
        let view = lock(&self.view);
        build_session(&self.meeting, &self.media, &view)
    }
}

/// Builds the Session from the SDK's mirror, the media switches and what the events said.
pub fn build_session(meeting: &Meeting, media: &StageMedia, view: &View) -> Session {
    let me_id = meeting.user_id();
    let stats = media.stats();
    let controls = media.controls();
    let publishing = stats.publishing;
    let participant = |p: Participant| {
        let MediaKinds { audio, video } = if p.user_id == me_id {
            publishing
        } else if p.stage_status == StageStatus::OnStage {
            // A participant that published before we joined announced it before we
            // listened (the welcome does not carry publications): what arrives tells.
            view.published.get(&p.user_id).copied().unwrap_or_else(|| {
                stats
                    .received
                    .get(&p.user_id)
                    .map_or(MediaKinds::NONE, |r| {
                        MediaKinds::new(r.audio_frames > 0, r.video_frames > 0)
                    })
            })
        } else {
            MediaKinds::NONE
        };
        let reception = (p.user_id != me_id && p.stage_status == StageStatus::OnStage)
            .then(|| stats.received.get(&p.user_id).and_then(|r| r.reception))
            .flatten();
        ParticipantView {
            user_id: p.user_id,
            name: p.name,
            preset: p.preset,
            stage_status: p.stage_status,
            connected: p.connected,
            audio,
            video,
            reception,
        }
    };
    let preset = meeting.preset();
    let stage = preset.stage_enabled;
    let can = Can {
        accept_requests: preset.may_accept_requests(),
        kick: preset.may_kick(),
        request: stage && preset.stage_access == StageAccess::CanRequest,
        join_directly: stage && preset.stage_access == StageAccess::Allowed,
        end_meeting: preset.may_end_meeting(),
        remove: preset.kick_participant,
    };
    Session {
        meeting_id: meeting.meeting_id().to_string(),
        title: meeting.title(),
        connection: meeting.connection_state(),
        end_reason: meeting.end_reason(),
        me: Me {
            participant: participant(meeting.self_()),
            can,
            queue_place: meeting.stage().place_in_queue(),
        },
        participants: meeting
            .participants()
            .into_iter()
            .map(participant)
            .collect(),
        queue: if can.accept_requests {
            view.queue.clone()
        } else {
            Vec::new()
        },
        max_on_stage: meeting.max_on_stage(),
        mic_on: controls.mic,
        camera_on: controls.camera,
        publishing,
    }
}

/// A poisoned lock only means a panic elsewhere; the data is still the best we have.
pub fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// How long the app waits on an admin call to its own server (it is on loopback: a call
/// that takes longer will not come back, and hosting should fail rather than hang).
pub const ADMIN_TIMEOUT: Duration = Duration::from_secs(10);

/// The admin client of the embedded server: `base` is its https URL, `pin` its
/// self-signed certificate's fingerprint, which the client insists on exactly as the SDK
/// does.
pub fn admin_client(
    base: &str,
    key: &str,
    pin: Option<Fingerprint>,
) -> Result<AdminClient, CommandError> {
    Ok(AdminClient::with_fingerprint(base, key, pin)?.with_timeout(ADMIN_TIMEOUT))
}

/// What an admin call answered instead of its data, as the UI's error.
impl From<ErrorBody> for CommandError {
    fn from(e: ErrorBody) -> Self {
        CommandError::new(e.code, e.message)
    }
}
