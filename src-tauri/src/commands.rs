//! The Tauri commands of docs/APP.md, each a thin mapping onto the SDK. A refusal is a
//! [`CommandError`] `{code, message, device?}` (see `error`).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};
use tauri::{AppHandle, Manager, Runtime, State};

use onstage_client::link::{Fingerprint, InviteLink};
use onstage_client::proto::rest::{AddParticipant, CreateMeeting};
use onstage_client::proto::{TileSize, MAX_TILE_SIDE};
use onstage_client::{
    ConnectionState, JoinOptions, MediaConfig, Meeting, Sources, StageMedia, StageStatus, UserId,
};
use onstage_media::{list_cameras, list_microphones, list_speakers, DeviceInfo, MediaError};

pub use crate::error::CommandError;

use crate::config::MediaMode;
use crate::device_check::DeviceCheck;
use crate::error::{AppError, Code, Context, ErrorCode, ShellCode};
use crate::events::{self, emit_session};
use crate::hosting::{self, HostRecord};
use crate::state::{
    admin_client, lock, AppState, Embedded, Entry, Kept, Live, Mode, Session, View,
};

type Result<T> = std::result::Result<T, CommandError>;

#[derive(Debug, Serialize)]
pub struct AppInfo {
    mode: Mode,
    #[serde(skip_serializing_if = "Option::is_none")]
    server_url: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    invite_link: Option<String>,
    /// The last thing that failed without a command to answer: hosting or joining at start,
    /// an invite link opened from outside (also sent as the `app-error` event).
    #[serde(skip_serializing_if = "Option::is_none")]
    last_error: Option<AppError>,
    /// The embedded server still serves a meeting its host left without ending it: the
    /// others carry on, and hosting again rejoins it.
    serving: bool,
}

/// Reports an [`AppError`]: logged, kept for `app_info`, and sent to the UI.
pub fn report<R: Runtime>(app: &AppHandle<R>, state: &AppState, context: Context, e: CommandError) {
    report_with_link(app, state, context, e, None);
}

/// [`report`], handing the join form a role link that needs the guest's name.
pub fn report_with_link<R: Runtime>(
    app: &AppHandle<R>,
    state: &AppState,
    context: Context,
    e: CommandError,
    link: Option<String>,
) {
    use tauri::Emitter;
    tracing::error!(code = %e.code, ?context, "{}", e.message);
    let error = AppError {
        link,
        ..AppError::new(e, context)
    };
    *lock(&state.last_error) = Some(error.clone());
    if let Err(e) = app.emit("app-error", &error) {
        tracing::warn!(error = %e, "emit app-error");
    }
}

/// Marks a join to `server_url` as under way for as long as it lives.
struct Joining<'a>(&'a AppState);

impl<'a> Joining<'a> {
    fn start(state: &'a AppState, server_url: &str) -> Self {
        *lock(&state.joining) = Some(bare_server(server_url));
        Joining(state)
    }
}

impl Drop for Joining<'_> {
    fn drop(&mut self) {
        *lock(&self.0.joining) = None;
    }
}

/// What a page may show of a server address: scheme, host and port, nothing else.
fn bare_server(server_url: &str) -> String {
    match url::Url::parse(server_url).map(|u| u.origin()) {
        Ok(origin) if origin.is_tuple() => origin.ascii_serialization(),
        _ => server_url.to_owned(),
    }
}

/// `join_progress`: the server a join is under way to (at start, from a link, or the join
/// form), or null. Answers at once, also while the join holds the session.
#[tauri::command]
pub fn join_progress(state: State<'_, AppState>) -> Option<String> {
    lock(&state.joining).clone()
}

#[tauri::command]
pub async fn app_info(state: State<'_, AppState>) -> Result<AppInfo> {
    let live = state.live.lock().await;
    Ok(match live.as_ref() {
        None => AppInfo {
            mode: Mode::Idle,
            server_url: None,
            invite_link: None,
            last_error: lock(&state.last_error).clone(),
            serving: lock(&state.serving)
                .as_ref()
                .is_some_and(|k| k.meeting_running),
        },
        Some(l) => AppInfo {
            mode: if l.embedded.is_some() {
                Mode::Embedded
            } else {
                Mode::Joined
            },
            server_url: Some(l.server_url.clone()),
            invite_link: l.invite_link.clone(),
            last_error: lock(&state.last_error).clone(),
            serving: false,
        },
    })
}

#[tauri::command]
pub async fn start_embedded<R: Runtime>(
    app: AppHandle<R>,
    state: State<'_, AppState>,
    name: Option<String>,
    new_ports: Option<bool>,
) -> Result<Session> {
    let name = name
        .map(|n| n.trim().to_owned())
        .filter(|n| !n.is_empty())
        .unwrap_or_else(|| "Host".into());
    host(&app, &state, &name, new_ports.unwrap_or(false)).await
}

/// The host's own user id in its meeting: the same at every start, so reopening the app
/// brings the host back as the same participant.
const HOST_USER_ID: &str = "app-host";

/// How long a stored port that is in use is tried again before it counts as taken.
const PORT_RELEASE: std::time::Duration = std::time::Duration::from_millis(500);

/// How many times a first start tries fresh ports (the free UDP port may be taken for TCP).
const FRESH_PORT_TRIES: usize = 5;

/// Starts the embedded server (every interface, the stored ports, TLS with the stored
/// self-signed certificate), brings back or creates its meeting and joins it as host.
/// `new_ports` forgets the stored ports (links made before stop working).
pub async fn host<R: Runtime>(
    app: &AppHandle<R>,
    state: &AppState,
    name: &str,
    new_ports: bool,
) -> Result<Session> {
    let mut live = state.live.lock().await;
    if live.is_some() {
        return Err(CommandError::new(
            Code::Sdk(ErrorCode::InvalidState),
            "already in a meeting",
        ));
    }
    // A meeting left without ending it is still served: the host goes back into it.
    let kept = lock(&state.serving).take();
    if let Some(kept) = kept {
        return rejoin(app, state, &mut live, kept, name).await;
    }
    let data_dir = data_dir(app, state)?;
    let mut record = HostRecord::load(&data_dir);
    if new_ports {
        record.http_port = None;
        record.media_port = None;
    }
    let server = start_server(&data_dir, &record).await?;
    let port = server.local_addr().port();
    let fingerprint = server.fingerprint();
    // The host talks to its own server over loopback (a wildcard bind serves it too).
    let url = format!("https://127.0.0.1:{port}");
    let prepared = async {
        let admin = admin_client(&url, server.admin_key(), fingerprint)?;
        let meeting_id = match record.meeting_id.clone() {
            Some(id) if admin.meeting_exists(&id).await? => id,
            _ => {
                let created = admin
                    .create_meeting(&CreateMeeting::titled("Onstage meeting"))
                    .await?;
                created.id.to_string()
            }
        };
        let host = AddParticipant {
            custom_participant_id: Some(HOST_USER_ID.into()),
            ..AddParticipant::new(name, "host")
        };
        let token = admin.add_participant(&meeting_id, &host).await?.token;
        let options = JoinOptions {
            fingerprint,
            ..JoinOptions::default()
        };
        let meeting = Meeting::join_with(&url, &token, options).await?;
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
    record.http_port = Some(port);
    record.media_port = server.media_addr().map(|a| a.port());
    record.meeting_id = Some(meeting_id.clone());
    if let Err(e) = record.save(&data_dir) {
        // Hosting works; only the next start will not find the same ports and meeting.
        tracing::warn!(error = %e, "cannot store the hosting record");
    }
    tracing::info!(listen = %server.local_addr(), media = ?server.media_addr(), %meeting_id, "embedded server up, joined as host");
    let embedded = Embedded {
        with_v6: server.local_addr().is_ipv6(),
        server,
        admin,
        meeting_id,
        data_dir,
        record,
    };
    stop_idle_preview(state).await;
    let entry = Entry::Hosted {
        name: name.to_owned(),
    };
    let started = attach(app, state, meeting, url, Some(embedded), None, entry);
    let session = started.session();
    *live = Some(started);
    Ok(session)
}

/// The host joins its embedded server's meeting again: back among the others after leaving
/// it, or a new session after ending it. On failure the server keeps serving as before.
async fn rejoin<R: Runtime>(
    app: &AppHandle<R>,
    state: &AppState,
    live: &mut Option<Live>,
    kept: Kept,
    name: &str,
) -> Result<Session> {
    let embedded = &kept.embedded;
    let url = format!("https://127.0.0.1:{}", embedded.server.local_addr().port());
    let joined = async {
        let host = AddParticipant {
            custom_participant_id: Some(HOST_USER_ID.into()),
            ..AddParticipant::new(name, "host")
        };
        let token = embedded
            .admin
            .add_participant(&embedded.meeting_id, &host)
            .await?
            .token;
        let options = JoinOptions {
            fingerprint: embedded.server.fingerprint(),
            ..JoinOptions::default()
        };
        Ok::<_, CommandError>(Meeting::join_with(&url, &token, options).await?)
    }
    .await;
    let meeting = match joined {
        Ok(meeting) => meeting,
        Err(e) => {
            *lock(&state.serving) = Some(kept);
            return Err(e);
        }
    };
    tracing::info!(meeting_id = %embedded.meeting_id, "host back in its meeting");
    // Requests made while the host was away are in the first Session this answers with
    // (fetched later, they could be overwritten by this answer in the UI).
    let queue = meeting
        .stage()
        .get_access_requests()
        .await
        .unwrap_or_default();
    let view = Arc::new(Mutex::new(View {
        queue,
        ..View::default()
    }));
    stop_idle_preview(state).await;
    let entry = Entry::Hosted {
        name: name.to_owned(),
    };
    let started = attach(
        app,
        state,
        meeting,
        url,
        Some(kept.embedded),
        Some(view),
        entry,
    );
    let session = started.session();
    *live = Some(started);
    Ok(session)
}

/// The embedded server on `::` (IPv6 and IPv4), or `0.0.0.0` where IPv6 is off, at the
/// stored ports; free ones the first time.
async fn start_server(
    data_dir: &std::path::Path,
    record: &HostRecord,
) -> Result<onstage_server::RunningServer> {
    let fresh = record.http_port.is_none() || record.media_port.is_none();
    let tries = if fresh { FRESH_PORT_TRIES } else { 1 };
    let mut wildcard = IpAddr::V6(Ipv6Addr::UNSPECIFIED);
    let mut last = None;
    let mut tried = 0;
    let in_use_until = std::time::Instant::now() + PORT_RELEASE;
    while tried < tries {
        let (http, media) = if fresh {
            (0, 0)
        } else {
            (
                record.http_port.unwrap_or(0),
                record.media_port.unwrap_or(0),
            )
        };
        let mut config =
            onstage_server::ServerConfig::new(SocketAddr::new(wildcard, http), data_dir.into());
        config.media_udp = Some(SocketAddr::new(wildcard, media));
        config.tls = Some(onstage_server::TlsConfig::SelfSigned);
        config.public_url = public_url(record);
        match onstage_server::start(config).await {
            Ok(server) => return Ok(server),
            Err(onstage_server::ServerError::Bind { addr, source })
                if wildcard.is_ipv6() && no_ipv6(&source) =>
            {
                tracing::info!(%addr, error = %source, "no IPv6 here: serving IPv4 only");
                wildcard = IpAddr::V4(Ipv4Addr::UNSPECIFIED);
            }
            Err(onstage_server::ServerError::Bind { source, .. })
                if source.kind() == std::io::ErrorKind::AddrInUse
                    && !fresh
                    && std::time::Instant::now() < in_use_until =>
            {
                // A server of this process that just stopped (leave, then host again) may
                // still be letting go of its sockets: a moment, then the port is taken for
                // real.
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
            Err(onstage_server::ServerError::Bind { addr, source })
                if source.kind() == std::io::ErrorKind::AddrInUse && !fresh =>
            {
                let what = if addr.port() == http {
                    "HTTPS"
                } else {
                    "media (UDP and TCP)"
                };
                return Err(CommandError::new(
                    Code::Shell(ShellCode::PortInUse),
                    format!(
                        "port {} ({what}) is in use by another program; close it, or host on \
                         new ports (links already sent stop working)",
                        addr.port()
                    ),
                ));
            }
            Err(e) => {
                tried += 1;
                last = Some(e);
            }
        }
    }
    let e = last.map_or_else(|| "no attempt".to_owned(), |e| e.to_string());
    Err(CommandError::internal(format!("embedded server: {e}")))
}

/// The public URL to configure: the address the last links named when it is none of this
/// machine's (typed for a port forwarded by a router), so that the server knows it (a
/// server that announces its public URL's address to media peers then announces it too).
fn public_url(record: &HostRecord) -> Option<url::Url> {
    let typed = record.invite_address.as_deref()?;
    let own = hosting::interface_addresses(true)
        .iter()
        .any(|a| typed.parse::<IpAddr>() == Ok(a.ip));
    if own {
        return None;
    }
    hosting::server_url(typed, record.http_port.unwrap_or(443)).ok()
}

/// A bind that failed because this machine has no IPv6 (disabled, or no such family).
fn no_ipv6(e: &std::io::Error) -> bool {
    const EAFNOSUPPORT: i32 = 97;
    e.kind() == std::io::ErrorKind::AddrNotAvailable || e.raw_os_error() == Some(EAFNOSUPPORT)
}

/// The embedded server's data: `--data-dir` / `ONSTAGE_DATA_DIR`, else `server/` in the
/// app's data dir.
fn data_dir<R: Runtime>(app: &AppHandle<R>, state: &AppState) -> Result<PathBuf> {
    if let Some(dir) = &state.config.data_dir {
        return Ok(dir.clone());
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
    name: Option<String>,
) -> Result<Session> {
    let (server_url, token, fingerprint, guest) = match (server_url, token, invite_link) {
        (_, _, Some(link)) => {
            let link = parse_link(&link)?;
            let guest = guest_name(link.invite, name.as_deref())?;
            (link.server.to_string(), link.token, link.fingerprint, guest)
        }
        (Some(s), Some(t), None) => (s.trim().to_owned(), t.trim().to_owned(), None, None),
        _ => {
            return Err(CommandError::new(
                Code::Sdk(ErrorCode::BadRequest),
                "join needs server_url and token, or invite_link",
            ))
        }
    };
    join_server(
        &app,
        &state,
        &server_url,
        &token,
        fingerprint,
        guest.as_deref(),
    )
    .await
}

/// The name a guest joins under: for a role link (`guest`), `name`, which it needs
/// (`bad_request` without one); for a personal link none, since the host named it.
pub fn guest_name(guest: bool, name: Option<&str>) -> Result<Option<String>> {
    if !guest {
        return Ok(None);
    }
    match name.map(str::trim).filter(|n| !n.is_empty()) {
        Some(name) => Ok(Some(name.to_owned())),
        None => Err(CommandError::new(
            Code::Sdk(ErrorCode::BadRequest),
            "this invite link is for anyone: give your name to join \
             (paste the link under \"Join a meeting\")",
        )),
    }
}

/// An invite link through the SDK's parser; what is wrong with it is `bad_link`, its
/// message naming the part (no server, no token, a bad fingerprint, ...).
pub fn parse_link(link: &str) -> Result<InviteLink> {
    InviteLink::parse(link)
        .map_err(|e| CommandError::new(Code::Sdk(ErrorCode::BadLink), e.to_string()))
}

/// An invite link opened from outside while the app runs (the URL scheme, or a second
/// start of the app handing over its arguments): joins it, or reports what went wrong as
/// `app-error` (context `link`). Brings the window to the front either way.
pub async fn open_link<R: Runtime>(app: &AppHandle<R>, state: &AppState, link: &str) {
    if let Some(window) = app.get_webview_window("main") {
        let _ = window.unminimize();
        let _ = window.show();
        let _ = window.set_focus();
    }
    let link = match parse_link(link) {
        Ok(link) => link,
        Err(e) => return report(app, state, Context::Link, e),
    };
    if state.live.lock().await.is_some() {
        let e = CommandError::new(
            Code::Sdk(ErrorCode::InvalidState),
            format!(
                "already in a meeting: leave it to join the one at {}",
                link.server
            ),
        );
        return report(app, state, Context::Link, e);
    }
    // A link opened from outside carries no name: a role link goes to the join form, which
    // asks for one.
    if let Err(e) = guest_name(link.invite, None) {
        return report_with_link(app, state, Context::Link, e, Some(link.to_string()));
    }
    match join_server(
        app,
        state,
        link.server.as_str(),
        &link.token,
        link.fingerprint,
        None,
    )
    .await
    {
        Ok(session) => {
            use tauri::Emitter;
            *lock(&state.last_error) = None;
            let _ = app.emit("session", &session);
        }
        Err(e) => report(app, state, Context::Link, e),
    }
}

/// Joins a meeting on a server (not embedded). `fingerprint` pins a self-signed server's
/// certificate (from its invite link). With `guest`, `token` is a role invite's and
/// `guest` the name to join under; the meeting is then entered again (Rejoin) with the
/// participant's own token, so a rejoin is the same guest, not a new one.
pub async fn join_server<R: Runtime>(
    app: &AppHandle<R>,
    state: &AppState,
    server_url: &str,
    token: &str,
    fingerprint: Option<Fingerprint>,
    guest: Option<&str>,
) -> Result<Session> {
    let _joining = Joining::start(state, server_url);
    let mut live = state.live.lock().await;
    if live.is_some() {
        return Err(CommandError::new(
            Code::Sdk(ErrorCode::InvalidState),
            "already in a meeting",
        ));
    }
    let meeting = match guest {
        None => join_with_token(server_url, token, fingerprint).await?,
        Some(name) => {
            let options = JoinOptions {
                fingerprint,
                ..JoinOptions::default()
            };
            let meeting = Meeting::join_guest(server_url, token, name, options).await?;
            tracing::info!(server_url, user_id = %meeting.user_id(), "joined as a guest");
            meeting
        }
    };
    let entry = Entry::Server {
        token: meeting.token(),
        fingerprint,
    };
    stop_idle_preview(state).await;
    let started = attach(
        app,
        state,
        meeting,
        server_url.to_owned(),
        None,
        None,
        entry,
    );
    let session = started.session();
    *live = Some(started);
    Ok(session)
}

/// Joins a server's meeting with a token; `fingerprint` pins a self-signed server's
/// certificate (from its invite link).
async fn join_with_token(
    server_url: &str,
    token: &str,
    fingerprint: Option<Fingerprint>,
) -> Result<Meeting> {
    let options = JoinOptions {
        fingerprint,
        ..JoinOptions::default()
    };
    let meeting = Meeting::join_with(server_url, token, options).await?;
    tracing::info!(server_url, user_id = %meeting.user_id(), "joined");
    Ok(meeting)
}

/// Enters the meeting on screen again, the way it was entered (the same link or token, or
/// hosting again), once its session has ended here (another window took over, the host
/// ended it, the server was gone for good). A server's meeting is joined before the ended
/// session is put away, so a failed rejoin leaves it on screen to try again.
#[tauri::command]
pub async fn rejoin_meeting<R: Runtime>(
    app: AppHandle<R>,
    state: State<'_, AppState>,
) -> Result<Session> {
    let mut live = state.live.lock().await;
    let ended = live.as_ref().ok_or_else(CommandError::not_joined)?;
    if ended.meeting.connection_state() != ConnectionState::Disconnected {
        return Err(CommandError::new(
            Code::Sdk(ErrorCode::InvalidState),
            "the meeting is still connected: nothing to rejoin",
        ));
    }
    let entry = ended.entry.clone();
    let server_url = ended.server_url.clone();
    match entry {
        Entry::Server {
            ref token,
            fingerprint,
        } => {
            let meeting = join_with_token(&server_url, token, fingerprint).await?;
            if let Some(ended) = live.take() {
                detach(&state, ended).await;
            }
            let started = attach(&app, &state, meeting, server_url, None, None, entry);
            let session = started.session();
            *live = Some(started);
            Ok(session)
        }
        Entry::Hosted { name } => {
            let Some(ended) = live.take() else {
                return Err(CommandError::not_joined());
            };
            let (_, embedded) = detach(&state, ended).await;
            let Some(embedded) = embedded else {
                return Err(CommandError::internal(
                    "a hosted meeting without its server",
                ));
            };
            let kept = Kept {
                embedded,
                meeting_running: true,
            };
            rejoin(&app, &state, &mut live, kept, &name).await
        }
    }
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
    entry: Entry,
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
        entry,
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

/// Ends the join screen's device check, if any, once its devices are closed: the next to
/// open them (the meeting's media, a new check) must not find them busy.
async fn stop_idle_preview(state: &AppState) {
    let check = lock(&state.idle_preview).take();
    if let Some(check) = check {
        check.stop().await;
    }
}

/// Stops media, pictures and events of a meeting, keeping the meeting itself (and the
/// embedded server, if this app runs it). The pictures in flight are forgotten: the next
/// meeting's tiles must not wait for their acknowledgements.
async fn detach(state: &AppState, live: Live) -> (Meeting, Option<Embedded>) {
    state.pictures.clear();
    live.events_task.abort();
    let _ = live.events_task.await;
    live.pictures_stop.store(true, Ordering::Relaxed);
    // The events task held the other reference; with it gone the media can be stopped and
    // awaited (devices closed) rather than just dropped.
    match Arc::try_unwrap(live.media) {
        Ok(media) => media.stop().await,
        Err(media) => drop(media),
    }
    (live.meeting, live.embedded)
}

#[derive(Debug, Serialize)]
pub struct Invite {
    server_url: String,
    token: String,
    link: String,
    /// The same invitation for a browser (`https://HOST:PORT/join#token=..`).
    web_link: String,
    /// The address the link names (as given, or the one chosen for it).
    address: String,
}

#[tauri::command]
pub async fn create_invite(
    state: State<'_, AppState>,
    preset: String,
    name: Option<String>,
    address: Option<String>,
) -> Result<Invite> {
    if preset != "viewer" && preset != "speaker" {
        return Err(CommandError::new(
            Code::Sdk(ErrorCode::BadRequest),
            "preset is \"viewer\" or \"speaker\"",
        ));
    }
    let name = name
        .map(|n| n.trim().to_owned())
        .filter(|n| !n.is_empty())
        .unwrap_or_else(|| "Guest".into());
    let mut live = state.live.lock().await;
    let live = live.as_mut().ok_or_else(CommandError::not_joined)?;
    let embedded = live.embedded.as_mut().ok_or_else(not_embedded)?;
    let (server, address) = invite_server(embedded, address)?;
    let token = embedded
        .admin
        .add_participant(&embedded.meeting_id, &AddParticipant::new(name, preset))
        .await?
        .token;
    let link = InviteLink::new(server.clone(), &token, embedded.server.fingerprint())
        .map_err(|e| CommandError::internal(e.to_string()))?;
    remember_address(embedded, &address);
    let web_link = link.web_link();
    let link = link.to_string();
    live.invite_link = Some(link.clone());
    Ok(Invite {
        server_url: bare_url(&server),
        token,
        link,
        web_link,
        address,
    })
}

/// `create_role_link`: the meeting's link for anyone with `preset` ("viewer" or
/// "speaker"), naming `address` as `create_invite` does. Each guest who opens it gives a
/// name and joins as a new participant. The meeting keeps one invite per preset: asked
/// again, the same invite is handed out (under the address asked for now).
#[tauri::command]
pub async fn create_role_link(
    state: State<'_, AppState>,
    preset: String,
    address: Option<String>,
) -> Result<Invite> {
    if preset != "viewer" && preset != "speaker" {
        return Err(CommandError::new(
            Code::Sdk(ErrorCode::BadRequest),
            "preset is \"viewer\" or \"speaker\"",
        ));
    }
    let mut live = state.live.lock().await;
    let live = live.as_mut().ok_or_else(CommandError::not_joined)?;
    let embedded = live.embedded.as_mut().ok_or_else(not_embedded)?;
    let (server, address) = invite_server(embedded, address)?;
    let kept = live_role_invites(embedded, &preset)
        .await?
        .into_iter()
        .next();
    let invite = match kept {
        Some(invite) => invite,
        None => {
            embedded
                .admin
                .create_invite(&embedded.meeting_id, &preset)
                .await?
        }
    };
    let link = InviteLink::role(server.clone(), &invite.token, embedded.server.fingerprint())
        .map_err(|e| CommandError::internal(e.to_string()))?;
    remember_address(embedded, &address);
    Ok(Invite {
        server_url: bare_url(&server),
        token: invite.token,
        web_link: link.web_link(),
        link: link.to_string(),
        address,
    })
}

/// The meeting's role invites for `preset` that still let people in, oldest first.
async fn live_role_invites(
    embedded: &Embedded,
    preset: &str,
) -> Result<Vec<onstage_client::proto::rest::Invite>> {
    Ok(embedded
        .admin
        .list_invites(&embedded.meeting_id)
        .await?
        .into_iter()
        .filter(|i| i.preset_name == preset && i.revoked_at.is_none())
        .collect())
}

/// `revoke_role_link`: the meeting's link for anyone with `preset` stops letting anyone
/// new in (its guests stay); `create_role_link` then makes a new one. Answers whether there
/// was a live link to revoke.
#[tauri::command]
pub async fn revoke_role_link(state: State<'_, AppState>, preset: String) -> Result<bool> {
    let mut live = state.live.lock().await;
    let live = live.as_mut().ok_or_else(CommandError::not_joined)?;
    let embedded = live.embedded.as_mut().ok_or_else(not_embedded)?;
    let live_invites = live_role_invites(embedded, &preset).await?;
    for invite in &live_invites {
        embedded
            .admin
            .revoke_invite(&embedded.meeting_id, &invite.id)
            .await?;
    }
    Ok(!live_invites.is_empty())
}

/// The server URL invitations name, and the address it was made of: `address` when
/// given, else the last one used, else the machine's first (non-loopback first).
fn invite_server(embedded: &Embedded, address: Option<String>) -> Result<(url::Url, String)> {
    let port = embedded.server.local_addr().port();
    let address = match address
        .map(|a| a.trim().to_owned())
        .filter(|a| !a.is_empty())
    {
        Some(a) => a,
        None => embedded.record.invite_address.clone().unwrap_or_else(|| {
            hosting::interface_addresses(embedded.with_v6)[0]
                .ip
                .to_string()
        }),
    };
    let server = hosting::server_url(&address, port).map_err(|e| {
        CommandError::new(
            Code::Shell(ShellCode::BadAddress),
            format!("the invite address: {e}"),
        )
    })?;
    Ok((server, address))
}

/// Keeps `address` as the one the next invitations name by default.
fn remember_address(embedded: &mut Embedded, address: &str) {
    if embedded.record.invite_address.as_deref() != Some(address) {
        embedded.record.invite_address = Some(address.to_owned());
        if let Err(e) = embedded.record.save(&embedded.data_dir) {
            tracing::warn!(error = %e, "cannot store the hosting record");
        }
    }
}

/// A server URL without the trailing "/" of a bare host.
fn bare_url(server: &url::Url) -> String {
    let mut text = server.to_string();
    if server.path() == "/" {
        text.pop();
    }
    text
}

fn not_embedded() -> CommandError {
    CommandError::new(
        Code::Sdk(ErrorCode::PermissionDenied),
        "invitations come from the host of an embedded meeting",
    )
}

/// `invite_addresses`: where others may reach the embedded server.
#[derive(Debug, Serialize)]
pub struct InviteAddresses {
    /// The HTTPS port links name (unless an address says otherwise).
    port: u16,
    /// The media port (UDP and TCP), for port forwarding.
    #[serde(skip_serializing_if = "Option::is_none")]
    media_port: Option<u16>,
    /// This machine's addresses, non-loopback first.
    addresses: Vec<hosting::HostAddress>,
    /// The address the last invitations named.
    #[serde(skip_serializing_if = "Option::is_none")]
    last_address: Option<String>,
    /// The certificate's fingerprint the links carry.
    #[serde(skip_serializing_if = "Option::is_none")]
    fingerprint: Option<String>,
}

#[tauri::command]
pub async fn invite_addresses(state: State<'_, AppState>) -> Result<InviteAddresses> {
    let live = state.live.lock().await;
    let live = live.as_ref().ok_or_else(CommandError::not_joined)?;
    let embedded = live.embedded.as_ref().ok_or_else(not_embedded)?;
    let with_v6 = embedded.with_v6;
    // Listing interfaces is a few system calls: fine here, but keep it off the lock.
    let addresses =
        tauri::async_runtime::spawn_blocking(move || hosting::interface_addresses(with_v6))
            .await
            .map_err(|e| CommandError::internal(format!("listing addresses: {e}")))?;
    Ok(InviteAddresses {
        port: embedded.server.local_addr().port(),
        media_port: embedded.server.media_addr().map(|a| a.port()),
        addresses,
        last_address: embedded.record.invite_address.clone(),
        fingerprint: embedded.server.fingerprint().map(|f| f.to_string()),
    })
}

/// What `leave_meeting` and `end_meeting` answer.
#[derive(Debug, Serialize)]
pub struct Left {
    /// The meeting goes on for the others: this app's embedded server keeps serving it
    /// (while the app runs) after its host left without ending it.
    still_running: bool,
}

/// Leaves the meeting; it goes on for the others. On the embedded server the server keeps
/// serving them while the app runs (kept in `AppState::serving`; hosting again rejoins).
#[tauri::command]
pub async fn leave_meeting(state: State<'_, AppState>) -> Result<Left> {
    let Some(live) = state.live.lock().await.take() else {
        return Ok(Left {
            still_running: lock(&state.serving)
                .as_ref()
                .is_some_and(|k| k.meeting_running),
        });
    };
    let (meeting, embedded) = detach(&state, live).await;
    // Leaving for good tells everyone at once; a meeting already gone is left anyway.
    if let Err(e) = meeting.leave().await {
        tracing::debug!(error = %e, "leave");
    }
    let still_running = embedded.is_some();
    if let Some(embedded) = embedded {
        tracing::info!(meeting_id = %embedded.meeting_id, "host left; the embedded server keeps serving the meeting");
        *lock(&state.serving) = Some(Kept {
            embedded,
            meeting_running: true,
        });
    }
    Ok(Left { still_running })
}

/// Ends the meeting for everyone (a host only: `permission_denied` otherwise, and the
/// meeting goes on). Everyone is told `meetingEnded` at once. The embedded server keeps
/// running while the app does (an invitation joined later starts a new, empty session;
/// hosting again rejoins it).
#[tauri::command]
pub async fn end_meeting(state: State<'_, AppState>) -> Result<Left> {
    let mut guard = state.live.lock().await;
    let live = guard.as_ref().ok_or_else(CommandError::not_joined)?;
    live.meeting.end().await?;
    let Some(live) = guard.take() else {
        return Ok(Left {
            still_running: false,
        });
    };
    drop(guard);
    let (_, embedded) = detach(&state, live).await;
    if let Some(embedded) = embedded {
        *lock(&state.serving) = Some(Kept {
            embedded,
            meeting_running: false,
        });
    }
    Ok(Left {
        still_running: false,
    })
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
        choice.camera.clone_from(&camera);
        choice.microphone.clone_from(&microphone);
    }
    // Synthetic media has nothing to switch.
    if state.config.media == MediaMode::Synthetic {
        return Ok(());
    }
    // Only the capture restarts, the old device closed before the new one opens: the
    // publication and the subscriptions stay.
    let choice = onstage_client::DeviceChoice { camera, microphone };
    if let Some(check) = lock(&state.idle_preview).as_ref() {
        check.select_devices(choice.clone());
    }
    let live = state.live.lock().await;
    if let Some(live) = live.as_ref() {
        live.media.select_devices(choice);
        emit_session(&app, &live.meeting, &live.media, &live.view);
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
        stop_idle_preview(&state).await;
        if on {
            *lock(&state.idle_preview) = Some(DeviceCheck::start(
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
        return Err(CommandError::new(
            Code::Sdk(ErrorCode::BadRequest),
            "user_ids is empty",
        ));
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

/// A host's call about one other participant.
#[derive(Debug, Clone)]
enum ParticipantCall {
    Remove,
    Mute,
    SetPreset(String),
}

async fn participant_call<R: Runtime>(
    app: &AppHandle<R>,
    state: &AppState,
    call: ParticipantCall,
    user_id: String,
) -> Result<()> {
    if user_id.trim().is_empty() {
        return Err(CommandError::new(
            Code::Sdk(ErrorCode::BadRequest),
            "user_id is empty",
        ));
    }
    let id = UserId::new(user_id);
    let (meeting, media, view) = joined(state).await?;
    match call {
        ParticipantCall::Remove => meeting.remove_participant(&id).await?,
        ParticipantCall::Mute => meeting.mute_participant(&id).await?,
        ParticipantCall::SetPreset(preset) => meeting.set_preset(&id, &preset).await?,
    }
    emit_session(app, &meeting, &media, &view);
    Ok(())
}

/// `remove_participant`: out of the meeting for good (its link stops working).
#[tauri::command]
pub async fn remove_participant<R: Runtime>(
    app: AppHandle<R>,
    state: State<'_, AppState>,
    user_id: String,
) -> Result<()> {
    participant_call(&app, &state, ParticipantCall::Remove, user_id).await
}

/// `mute_participant`: a speaker's microphone off (it may turn it on again).
#[tauri::command]
pub async fn mute_participant<R: Runtime>(
    app: AppHandle<R>,
    state: State<'_, AppState>,
    user_id: String,
) -> Result<()> {
    participant_call(&app, &state, ParticipantCall::Mute, user_id).await
}

/// `set_preset`: another preset for a participant, e.g. `host` to hand the meeting over.
#[tauri::command]
pub async fn set_preset<R: Runtime>(
    app: AppHandle<R>,
    state: State<'_, AppState>,
    user_id: String,
    preset: String,
) -> Result<()> {
    participant_call(&app, &state, ParticipantCall::SetPreset(preset), user_id).await
}

/// The sizes as the SFU takes them: each side at most [`MAX_TILE_SIDE`] (a larger one is
/// as good as the largest layer, and the SFU would refuse the whole list), the last size
/// given for a participant named twice.
fn tiles_for_sfu(tiles: Vec<TileSize>) -> Vec<TileSize> {
    let mut out: Vec<TileSize> = Vec::with_capacity(tiles.len());
    for mut tile in tiles {
        tile.width = tile.width.min(MAX_TILE_SIDE);
        tile.height = tile.height.min(MAX_TILE_SIDE);
        match out.iter_mut().find(|t| t.user_id == tile.user_id) {
            Some(same) => *same = tile,
            None => out.push(tile),
        }
    }
    out
}

/// `set_tiles`: how large the window shows each stage video, in device pixels (0x0: not
/// seen, a minimised window or a tile out of view), so that the SFU sends no larger a
/// simulcast layer than fills it (`media.tiles`). Each call replaces the last.
#[tauri::command]
pub async fn set_tiles(state: State<'_, AppState>, tiles: Vec<TileSize>) -> Result<()> {
    let (meeting, _, _) = joined(&state).await?;
    meeting.set_tiles(tiles_for_sfu(tiles)).await?;
    Ok(())
}

/// `video_socket`: where the UI's picture socket is (docs/APP.md "Pictures").
#[tauri::command]
pub fn video_socket(state: State<'_, AppState>) -> Result<VideoSocket> {
    state
        .picture_socket
        .clone()
        .map(|url| VideoSocket { url })
        .ok_or_else(|| {
            CommandError::new(
                Code::Shell(ShellCode::Unavailable),
                "the picture socket could not start",
            )
        })
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tiles_keep_within_what_the_sfu_takes_and_one_size_per_participant() {
        let tile = |user: &str, width, height| TileSize {
            user_id: UserId::new(user),
            width,
            height,
        };
        assert_eq!(
            tiles_for_sfu(vec![
                tile("a", 1280, 720),
                tile("b", 40_000, 0),
                tile("a", 640, 360),
            ]),
            vec![tile("a", 640, 360), tile("b", MAX_TILE_SIDE, 0)]
        );
        assert_eq!(tiles_for_sfu(Vec::new()), Vec::new());
    }

    #[test]
    fn a_join_in_progress_names_the_server_and_nothing_more() {
        assert_eq!(
            bare_server("https://meet.example.com:8443/base?token=secret#x"),
            "https://meet.example.com:8443"
        );
        assert_eq!(
            bare_server("http://[fd00::2]:7800"),
            "http://[fd00::2]:7800"
        );
        assert_eq!(
            bare_server("https://meet.example.com"),
            "https://meet.example.com"
        );
        assert_eq!(bare_server("meet.example.com:1"), "meet.example.com:1");
    }

    /// The embedded server's ports: free ones the first time, the same ones afterwards, and
    /// a taken one is `port_in_use` naming it. TLS persists: the same certificate.
    #[tokio::test]
    async fn hosting_keeps_its_ports_and_certificate_and_names_a_taken_port() {
        let dir = std::env::temp_dir().join(format!("onstage-ports-{}", uuid::Uuid::new_v4()));
        let first = start_server(&dir, &HostRecord::default()).await.unwrap();
        assert!(first.local_addr().ip().is_unspecified());
        assert!(first.tls());
        let record = HostRecord {
            http_port: Some(first.local_addr().port()),
            media_port: first.media_addr().map(|a| a.port()),
            ..HostRecord::default()
        };
        let fingerprint = first.fingerprint();
        assert!(fingerprint.is_some());
        first.shutdown().await;

        let again = start_server(&dir, &record).await.unwrap();
        assert_eq!(Some(again.local_addr().port()), record.http_port);
        assert_eq!(again.media_addr().map(|a| a.port()), record.media_port);
        assert_eq!(again.fingerprint(), fingerprint);
        again.shutdown().await;

        let squatter = std::net::TcpListener::bind(("0.0.0.0", record.http_port.unwrap())).unwrap();
        let e = start_server(&dir, &record).await.unwrap_err();
        assert_eq!(e.code, Code::Shell(ShellCode::PortInUse));
        assert!(
            e.message.contains(&record.http_port.unwrap().to_string()),
            "{e}"
        );
        drop(squatter);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
