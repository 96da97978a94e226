//! The Tauri commands of docs/APP.md, each a thin mapping onto the SDK. A refusal is a
//! [`CommandError`] `{code, message}` with the SDK's stable codes.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};
use tauri::{AppHandle, Manager, Runtime, State};

use onstage_client::link::{Fingerprint, InviteLink};
use onstage_client::{
    ClientError, JoinOptions, MediaConfig, Meeting, Sources, StageMedia, StageStatus, UserId,
};
use onstage_media::{list_cameras, list_microphones, list_speakers, DeviceInfo, MediaError};

use crate::config::MediaMode;
use crate::device_check::DeviceCheck;
use crate::events::{self, emit_session};
use crate::state::{lock, Admin, AppState, Embedded, Live, Mode, Session, View};

/// A refused command, as the UI receives it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, thiserror::Error)]
#[error("{code}: {message}")]
pub struct CommandError {
    pub code: String,
    pub message: String,
}

impl CommandError {
    pub fn new(code: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            code: code.into(),
            message: message.into(),
        }
    }

    pub fn internal(message: impl Into<String>) -> Self {
        Self::new("internal", message)
    }

    fn not_joined() -> Self {
        Self::new("invalid_state", "not in a meeting")
    }
}

impl From<ClientError> for CommandError {
    fn from(e: ClientError) -> Self {
        let body = e.to_body();
        Self::new(body.code.as_str(), body.message)
    }
}

impl From<MediaError> for CommandError {
    fn from(e: MediaError) -> Self {
        Self::new(e.code(), e.to_string())
    }
}

type Result<T> = std::result::Result<T, CommandError>;

#[derive(Debug, Serialize)]
pub struct AppInfo {
    mode: Mode,
    #[serde(skip_serializing_if = "Option::is_none")]
    server_url: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    invite_link: Option<String>,
}

#[tauri::command]
pub async fn app_info(state: State<'_, AppState>) -> Result<AppInfo> {
    let live = state.live.lock().await;
    Ok(match live.as_ref() {
        None => AppInfo {
            mode: Mode::Idle,
            server_url: None,
            invite_link: None,
        },
        Some(l) => AppInfo {
            mode: if l.embedded.is_some() {
                Mode::Embedded
            } else {
                Mode::Joined
            },
            server_url: Some(l.server_url.clone()),
            invite_link: l.invite_link.clone(),
        },
    })
}

#[tauri::command]
pub async fn start_embedded<R: Runtime>(
    app: AppHandle<R>,
    state: State<'_, AppState>,
    name: Option<String>,
) -> Result<Session> {
    let name = name
        .map(|n| n.trim().to_owned())
        .filter(|n| !n.is_empty())
        .unwrap_or_else(|| "Host".into());
    host(&app, &state, &name).await
}

/// Starts the embedded server, creates a meeting and joins it as its host.
pub async fn host<R: Runtime>(app: &AppHandle<R>, state: &AppState, name: &str) -> Result<Session> {
    let mut live = state.live.lock().await;
    if live.is_some() {
        return Err(CommandError::new("invalid_state", "already in a meeting"));
    }
    let data_dir = data_dir(app)?;
    let config =
        onstage_server::ServerConfig::new(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)), data_dir);
    let server = onstage_server::start(config)
        .await
        .map_err(|e| CommandError::internal(format!("embedded server: {e}")))?;
    let url = server.http_url();
    let prepared = async {
        let admin = Admin::new(&url, server.admin_key())?;
        let meeting_id = admin.create_meeting("Onstage meeting").await?;
        let token = admin.add_participant(&meeting_id, name, "host").await?;
        let meeting = Meeting::join(&url, &token).await?;
        Ok::<_, CommandError>((admin, meeting_id, meeting))
    }
    .await;
    let (admin, meeting_id, meeting) = match prepared {
        Ok(p) => p,
        Err(e) => {
            server.shutdown().await;
            return Err(e);
        }
    };
    tracing::info!(%url, %meeting_id, "embedded server up, joined as host");
    let embedded = Embedded {
        server,
        admin,
        meeting_id,
    };
    let started = attach(app, state, meeting, url, Some(embedded), None);
    let session = started.session();
    *live = Some(started);
    Ok(session)
}

/// The embedded server's data: `ONSTAGE_DATA_DIR`, else `server/` in the app's data dir.
fn data_dir<R: Runtime>(app: &AppHandle<R>) -> Result<PathBuf> {
    if let Some(dir) = std::env::var_os("ONSTAGE_DATA_DIR").filter(|d| !d.is_empty()) {
        return Ok(PathBuf::from(dir));
    }
    app.path()
        .app_data_dir()
        .map(|d| d.join("server"))
        .map_err(|e| CommandError::internal(format!("no data directory: {e}")))
}

#[tauri::command]
pub async fn join<R: Runtime>(
    app: AppHandle<R>,
    state: State<'_, AppState>,
    server_url: Option<String>,
    token: Option<String>,
    invite_link: Option<String>,
) -> Result<Session> {
    let (server_url, token, fingerprint) = match (server_url, token, invite_link) {
        (_, _, Some(link)) => {
            let link = InviteLink::parse(&link)
                .map_err(|e| CommandError::new(e.code().as_str(), e.to_string()))?;
            (link.server.to_string(), link.token, link.fingerprint)
        }
        (Some(s), Some(t), None) => (s.trim().to_owned(), t.trim().to_owned(), None),
        _ => {
            return Err(CommandError::new(
                "bad_request",
                "join needs server_url and token, or invite_link",
            ))
        }
    };
    join_server(&app, &state, &server_url, &token, fingerprint).await
}

/// Joins a meeting on a server (not embedded). `fingerprint` pins a self-signed server's
/// certificate (from its invite link).
pub async fn join_server<R: Runtime>(
    app: &AppHandle<R>,
    state: &AppState,
    server_url: &str,
    token: &str,
    fingerprint: Option<Fingerprint>,
) -> Result<Session> {
    let mut live = state.live.lock().await;
    if live.is_some() {
        return Err(CommandError::new("invalid_state", "already in a meeting"));
    }
    let options = JoinOptions {
        fingerprint,
        ..JoinOptions::default()
    };
    let meeting = Meeting::join_with(server_url, token, options).await?;
    tracing::info!(server_url, user_id = %meeting.user_id(), "joined");
    let started = attach(app, state, meeting, server_url.to_owned(), None, None);
    let session = started.session();
    *live = Some(started);
    Ok(session)
}

/// Starts stage media, the picture pump and the events task for a joined meeting.
/// `view` carries over what was learnt when media restarts (device change).
fn attach<R: Runtime>(
    app: &AppHandle<R>,
    state: &AppState,
    meeting: Meeting,
    server_url: String,
    embedded: Option<Embedded>,
    view: Option<Arc<Mutex<View>>>,
) -> Live {
    // Stage media owns the devices from here on.
    *lock(&state.idle_preview) = None;
    let media = Arc::new(StageMedia::start(meeting.clone(), media_config(state)));
    let pictures_stop = Arc::new(AtomicBool::new(false));
    state
        .pictures
        .pump(media.video_frames(), pictures_stop.clone());
    let view = view.unwrap_or_default();
    let fresh = lock(&view).queue.is_empty();
    let events_task = tauri::async_runtime::spawn(events::run(
        app.clone(),
        meeting.clone(),
        media.clone(),
        view.clone(),
    ));
    // The queue as of joining: later changes arrive as events.
    if fresh && meeting.preset().may_accept_requests() {
        let (m, v, a, md) = (meeting.clone(), view.clone(), app.clone(), media.clone());
        tauri::async_runtime::spawn(async move {
            if let Ok(requests) = m.stage().get_access_requests().await {
                lock(&v).queue = requests;
                emit_session(&a, &m, &md, &v);
            }
        });
    }
    Live {
        meeting,
        media,
        pictures_stop,
        server_url,
        embedded,
        view,
        events_task,
        invite_link: None,
    }
}

/// The tone the synthetic microphone plays (`ONSTAGE_MEDIA=synthetic`).
const SYNTHETIC_TONE_HZ: f32 = 440.0;

fn media_config(state: &AppState) -> MediaConfig {
    let sources = match state.config.media {
        MediaMode::Synthetic => Sources::Synthetic {
            tone_hz: SYNTHETIC_TONE_HZ,
        },
        MediaMode::Devices => {
            let choice = lock(&state.devices).clone();
            Sources::Devices {
                camera: choice.camera,
                microphone: choice.microphone,
            }
        }
    };
    MediaConfig {
        sources,
        // A desktop app plays what it receives; a missing speaker is logged by the SDK,
        // not fatal.
        play_audio: state.config.media == MediaMode::Devices,
        ..MediaConfig::default()
    }
}

/// Stops media, pictures and events of a meeting, keeping the meeting itself.
async fn detach(live: Live) -> (Meeting, Option<Embedded>, Arc<Mutex<View>>, String) {
    live.events_task.abort();
    let _ = live.events_task.await;
    live.pictures_stop.store(true, Ordering::Relaxed);
    // The events task held the other reference; with it gone the media can be stopped and
    // awaited (devices closed) rather than just dropped.
    match Arc::try_unwrap(live.media) {
        Ok(media) => media.stop().await,
        Err(media) => drop(media),
    }
    (live.meeting, live.embedded, live.view, live.server_url)
}

#[derive(Debug, Serialize)]
pub struct Invite {
    server_url: String,
    token: String,
    link: String,
}

#[tauri::command]
pub async fn create_invite(
    state: State<'_, AppState>,
    preset: String,
    name: Option<String>,
) -> Result<Invite> {
    if preset != "viewer" && preset != "speaker" {
        return Err(CommandError::new(
            "bad_request",
            "preset is \"viewer\" or \"speaker\"",
        ));
    }
    let name = name
        .map(|n| n.trim().to_owned())
        .filter(|n| !n.is_empty())
        .unwrap_or_else(|| "Guest".into());
    let mut live = state.live.lock().await;
    let live = live.as_mut().ok_or_else(CommandError::not_joined)?;
    let embedded = live.embedded.as_ref().ok_or_else(|| {
        CommandError::new(
            "permission_denied",
            "invitations come from the host of an embedded meeting",
        )
    })?;
    let token = embedded
        .admin
        .add_participant(&embedded.meeting_id, &name, &preset)
        .await?;
    let server = live
        .server_url
        .parse()
        .map_err(|e| CommandError::internal(format!("the embedded server's URL: {e}")))?;
    let link = InviteLink::new(server, &token, None)
        .map_err(|e| CommandError::internal(e.to_string()))?
        .to_string();
    live.invite_link = Some(link.clone());
    Ok(Invite {
        server_url: live.server_url.clone(),
        token,
        link,
    })
}

#[tauri::command]
pub async fn leave_meeting(state: State<'_, AppState>) -> Result<()> {
    let Some(live) = state.live.lock().await.take() else {
        return Ok(());
    };
    state.pictures.clear();
    let (meeting, embedded, _, _) = detach(live).await;
    // Leaving for good tells everyone at once; a meeting already gone is left anyway.
    if let Err(e) = meeting.leave().await {
        tracing::debug!(error = %e, "leave");
    }
    if let Some(embedded) = embedded {
        embedded.server.shutdown().await;
    }
    Ok(())
}

#[tauri::command]
pub async fn session(state: State<'_, AppState>) -> Result<Session> {
    let live = state.live.lock().await;
    Ok(live
        .as_ref()
        .ok_or_else(CommandError::not_joined)?
        .session())
}

#[derive(Debug, Serialize)]
pub struct Device {
    id: String,
    name: String,
}

#[derive(Debug, Serialize)]
pub struct Devices {
    cameras: Vec<Device>,
    microphones: Vec<Device>,
    speakers: Vec<Device>,
}

#[tauri::command]
pub async fn devices(state: State<'_, AppState>) -> Result<Devices> {
    let synthetic = state.config.media == MediaMode::Synthetic;
    // Device libraries block (and may be slow to enumerate): off the async threads.
    let listed = tauri::async_runtime::spawn_blocking(move || {
        if synthetic {
            // ONSTAGE_MEDIA=synthetic: the test pattern and tone are the camera and the
            // microphone; what plays is still the real speaker.
            let one = |id: &str, name: &str| {
                vec![Device {
                    id: id.into(),
                    name: name.into(),
                }]
            };
            return Devices {
                cameras: one("synthetic", "Test pattern"),
                microphones: one("synthetic", &format!("Test tone ({SYNTHETIC_TONE_HZ} Hz)")),
                speakers: list_devices(list_speakers()),
            };
        }
        Devices {
            cameras: list_devices(list_cameras()),
            microphones: list_devices(list_microphones()),
            speakers: list_devices(list_speakers()),
        }
    })
    .await
    .map_err(|e| CommandError::internal(format!("listing devices: {e}")))?;
    Ok(listed)
}

/// A device listing for the UI. No device system at all lists as no devices: the UI shows
/// "none found".
fn list_devices(listed: std::result::Result<Vec<DeviceInfo>, MediaError>) -> Vec<Device> {
    listed
        .unwrap_or_default()
        .into_iter()
        .map(|d| Device {
            id: d.id,
            name: d.name,
        })
        .collect()
}

#[tauri::command]
pub async fn select_devices<R: Runtime>(
    app: AppHandle<R>,
    state: State<'_, AppState>,
    camera: Option<String>,
    microphone: Option<String>,
) -> Result<()> {
    {
        let mut choice = lock(&state.devices);
        choice.camera = camera;
        choice.microphone = microphone;
    }
    // Stage media opens its devices from its config: start it again with the new choice.
    // Synthetic media has nothing to switch.
    if state.config.media == MediaMode::Synthetic {
        return Ok(());
    }
    let mut live = state.live.lock().await;
    if let Some(old) = live.take() {
        let controls = old.media.controls();
        let invite = old.invite_link.clone();
        let (meeting, embedded, view, url) = detach(old).await;
        let mut restarted = attach(&app, &state, meeting, url, embedded, Some(view));
        restarted.media.set_mic(controls.mic);
        restarted.media.set_camera(controls.camera);
        restarted.media.preview(controls.preview);
        restarted.invite_link = invite;
        *live = Some(restarted);
    }
    Ok(())
}

/// Runs a media switch and emits the new Session.
async fn switch<R: Runtime>(
    app: &AppHandle<R>,
    state: &AppState,
    f: impl FnOnce(&StageMedia),
) -> Result<()> {
    let live = state.live.lock().await;
    let live = live.as_ref().ok_or_else(CommandError::not_joined)?;
    f(&live.media);
    emit_session(app, &live.meeting, &live.media, &live.view);
    Ok(())
}

#[tauri::command]
pub async fn preview<R: Runtime>(
    app: AppHandle<R>,
    state: State<'_, AppState>,
    on: bool,
) -> Result<()> {
    if state.live.lock().await.is_none() {
        // The join screen's device check: no meeting yet.
        let mut idle = lock(&state.idle_preview);
        *idle = None;
        if on {
            *idle = Some(DeviceCheck::start(
                &app,
                media_config(&state),
                &state.pictures,
            ));
        }
        return Ok(());
    }
    switch(&app, &state, |m| m.preview(on)).await
}

#[tauri::command]
pub async fn set_mic<R: Runtime>(
    app: AppHandle<R>,
    state: State<'_, AppState>,
    on: bool,
) -> Result<()> {
    switch(&app, &state, |m| m.set_mic(on)).await
}

#[tauri::command]
pub async fn set_camera<R: Runtime>(
    app: AppHandle<R>,
    state: State<'_, AppState>,
    on: bool,
) -> Result<()> {
    switch(&app, &state, |m| m.set_camera(on)).await
}

#[derive(Debug, Clone, Copy)]
enum StageCall {
    RequestAccess,
    CancelRequest,
    Join,
    Leave,
}

/// One stage call on the joined meeting, then the new Session. The lock is released while
/// the call waits for the server so events keep flowing.
async fn stage_call<R: Runtime>(
    app: &AppHandle<R>,
    state: &AppState,
    call: StageCall,
) -> Result<StageStatus> {
    let (meeting, media, view) = joined(state).await?;
    let stage = meeting.stage();
    let status = match call {
        StageCall::RequestAccess => stage.request_access().await?,
        StageCall::CancelRequest => stage.cancel_request_access().await?,
        StageCall::Join => stage.join().await?,
        StageCall::Leave => stage.leave().await?,
    };
    emit_session(app, &meeting, &media, &view);
    Ok(status)
}

async fn joined(state: &AppState) -> Result<(Meeting, Arc<StageMedia>, Arc<Mutex<View>>)> {
    let live = state.live.lock().await;
    let live = live.as_ref().ok_or_else(CommandError::not_joined)?;
    Ok((live.meeting.clone(), live.media.clone(), live.view.clone()))
}

#[tauri::command]
pub async fn stage_request_access<R: Runtime>(
    app: AppHandle<R>,
    state: State<'_, AppState>,
) -> Result<StageStatus> {
    stage_call(&app, &state, StageCall::RequestAccess).await
}

#[tauri::command]
pub async fn stage_cancel_request<R: Runtime>(
    app: AppHandle<R>,
    state: State<'_, AppState>,
) -> Result<StageStatus> {
    stage_call(&app, &state, StageCall::CancelRequest).await
}

#[tauri::command]
pub async fn stage_join<R: Runtime>(
    app: AppHandle<R>,
    state: State<'_, AppState>,
) -> Result<StageStatus> {
    stage_call(&app, &state, StageCall::Join).await
}

#[tauri::command]
pub async fn stage_leave<R: Runtime>(
    app: AppHandle<R>,
    state: State<'_, AppState>,
) -> Result<StageStatus> {
    stage_call(&app, &state, StageCall::Leave).await
}

#[derive(Debug, Clone, Copy)]
enum BatchCall {
    Grant,
    Deny,
    Kick,
}

async fn batch_call<R: Runtime>(
    app: &AppHandle<R>,
    state: &AppState,
    call: BatchCall,
    user_ids: Vec<String>,
) -> Result<()> {
    if user_ids.is_empty() {
        return Err(CommandError::new("bad_request", "user_ids is empty"));
    }
    let ids: Vec<UserId> = user_ids.into_iter().map(UserId::new).collect();
    let (meeting, media, view) = joined(state).await?;
    let stage = meeting.stage();
    match call {
        BatchCall::Grant => stage.grant_access(&ids).await?,
        BatchCall::Deny => stage.deny_access(&ids).await?,
        BatchCall::Kick => stage.kick(&ids).await?,
    }
    emit_session(app, &meeting, &media, &view);
    Ok(())
}

#[tauri::command]
pub async fn stage_grant<R: Runtime>(
    app: AppHandle<R>,
    state: State<'_, AppState>,
    user_ids: Vec<String>,
) -> Result<()> {
    batch_call(&app, &state, BatchCall::Grant, user_ids).await
}

#[tauri::command]
pub async fn stage_deny<R: Runtime>(
    app: AppHandle<R>,
    state: State<'_, AppState>,
    user_ids: Vec<String>,
) -> Result<()> {
    batch_call(&app, &state, BatchCall::Deny, user_ids).await
}

#[tauri::command]
pub async fn stage_kick<R: Runtime>(
    app: AppHandle<R>,
    state: State<'_, AppState>,
    user_ids: Vec<String>,
) -> Result<()> {
    batch_call(&app, &state, BatchCall::Kick, user_ids).await
}

/// `video_socket`: where the UI's picture socket is (docs/APP.md "Pictures").
#[tauri::command]
pub fn video_socket(state: State<'_, AppState>) -> Result<VideoSocket> {
    state
        .picture_socket
        .clone()
        .map(|url| VideoSocket { url })
        .ok_or_else(|| CommandError::new("unavailable", "the picture socket could not start"))
}

#[derive(Debug, Serialize, Deserialize)]
pub struct VideoSocket {
    pub url: String,
}

/// Picture counters, for the transport benchmark and diagnostics.
#[derive(Debug, Serialize, Deserialize)]
pub struct PictureStats {
    pub sent: u64,
    pub dropped: u64,
    pub bytes: u64,
    pub convert_ms: f64,
}

#[tauri::command]
pub fn picture_stats(state: State<'_, AppState>) -> PictureStats {
    let c = &state.pictures.counters;
    PictureStats {
        sent: c.sent.load(Ordering::Relaxed),
        dropped: c.dropped_busy.load(Ordering::Relaxed),
        bytes: c.bytes.load(Ordering::Relaxed),
        convert_ms: c.convert_us.load(Ordering::Relaxed) as f64 / 1000.0,
    }
}
