//! The admin REST API (see `docs/API.md`). Every route needs the admin bearer key, checked
//! by [`require_admin`] before the handler runs; every failure answers
//! `{"success":false,"error":{code,message}}` and changes nothing.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::rejection::JsonRejection;
use axum::extract::{ConnectInfo, FromRequest, Path, Request, State};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get};
use axum::{Json, Router};
use onstage_proto::rest::{
    AddParticipant, AddedParticipant, CreateInvite, CreateMeeting, Envelope, Invite, Participant,
};
use onstage_proto::{MeetingId, Preset, RoomSnapshot, UserId};
use serde::de::DeserializeOwned;
use serde_json::json;

use crate::error::ApiError;
use crate::limits::Source;
use crate::rooms::now_ms;
use crate::server::AppState;
use crate::storage::{
    self, DeletePreset, InviteRecord, MeetingRecord, RemoveParticipant, RevokeInvite,
};

type Shared = State<Arc<AppState>>;

pub fn routes() -> Router<Arc<AppState>> {
    Router::new()
        .route("/v1/meetings", get(list_meetings).post(create_meeting))
        .route("/v1/meetings/{id}", get(get_meeting).delete(delete_meeting))
        .route(
            "/v1/meetings/{id}/participants",
            get(list_participants).post(add_participant),
        )
        .route(
            "/v1/meetings/{id}/participants/{participant_id}",
            delete(remove_participant),
        )
        .route(
            "/v1/meetings/{id}/invites",
            get(list_invites).post(create_invite),
        )
        .route(
            "/v1/meetings/{id}/invites/{invite_id}",
            delete(revoke_invite),
        )
        .route("/v1/meetings/{id}/stage", get(stage))
        .route("/v1/presets", get(list_presets).post(create_preset))
        .route(
            "/v1/presets/{name}",
            get(get_preset).put(update_preset).delete(delete_preset),
        )
}

/// JSON bodies whose rejections speak our error shape.
pub struct ApiJson<T>(pub T);

impl<S, T> FromRequest<S> for ApiJson<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        match Json::<T>::from_request(req, state).await {
            Ok(Json(v)) => Ok(ApiJson(v)),
            Err(rejection) => Err(json_rejection(rejection)),
        }
    }
}

fn json_rejection(rejection: JsonRejection) -> ApiError {
    if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
        ApiError::too_large("request body too large")
    } else {
        ApiError::bad_request(rejection.body_text())
    }
}

fn ok(status: StatusCode, data: impl serde::Serialize) -> Response {
    (status, Json(Envelope::Success(data))).into_response()
}

/// Every admin route goes through this first: a source that keeps failing the admin key
/// waits (429 with `Retry-After`) before it may try again, without the key being looked at.
pub async fn require_admin(State(app): Shared, request: Request, next: Next) -> Response {
    let source = request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ConnectInfo(peer)| Source::of(peer.ip()))
        // Only the front door serves the router, and it always says who is asking.
        .unwrap_or(Source::V4([0; 4]));
    let now = std::time::Instant::now();
    if let Err(wait) = app.admin_backoff.check(source, now) {
        app.metrics.admin_backoffs.inc();
        return too_many_failures(wait);
    }
    match app.auth.check_admin(request.headers()) {
        Ok(()) => {
            app.admin_backoff.succeeded(source);
            next.run(request).await
        }
        // A request without a key guesses nothing; only a wrong key counts.
        Err(refused) if crate::auth::bearer(request.headers()).is_none() => refused.into_response(),
        Err(refused) => {
            if app.admin_backoff.failed(source, now).is_some() {
                tracing::warn!(?source, "admin key failures: the source now waits");
            }
            refused.into_response()
        }
    }
}

fn too_many_failures(wait: std::time::Duration) -> Response {
    // Whole seconds, rounded up: a client that waits exactly this long is let in.
    let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
    let error = ApiError::new(
        StatusCode::TOO_MANY_REQUESTS,
        onstage_proto::ErrorCode::RateLimited,
        format!("too many wrong admin keys from your address; try again in {secs} s"),
    );
    ([(axum::http::header::RETRY_AFTER, secs.to_string())], error).into_response()
}

/// The title as stored and the stage size of a new meeting, or why the body is refused.
fn check_meeting(
    body: &CreateMeeting,
    default_max_on_stage: u32,
) -> Result<(String, u32), ApiError> {
    let title = clean_text("title", &body.title, 200)?;
    let max_on_stage = body.max_on_stage.unwrap_or(default_max_on_stage);
    if !(1..=1000).contains(&max_on_stage) {
        return Err(ApiError::bad_request("max_on_stage must be 1 to 1000"));
    }
    Ok((title, max_on_stage))
}

async fn create_meeting(
    State(app): Shared,
    body: Result<ApiJson<CreateMeeting>, ApiError>,
) -> Result<Response, ApiError> {
    let ApiJson(body) = body?;
    let (title, max_on_stage) = check_meeting(&body, app.config.default_max_on_stage)?;
    let meeting = MeetingRecord {
        id: MeetingId::new(uuid::Uuid::new_v4().to_string()),
        title,
        max_on_stage,
        created_at: now_ms(),
    };
    app.storage.create_meeting(meeting.clone()).await?;
    tracing::info!(meeting = %meeting.id, "meeting created");
    Ok(ok(StatusCode::CREATED, meeting))
}

async fn list_meetings(State(app): Shared) -> Result<Response, ApiError> {
    Ok(ok(StatusCode::OK, app.storage.list_meetings().await?))
}

async fn meeting_or_404(app: &AppState, id: &str) -> Result<MeetingRecord, ApiError> {
    app.storage
        .get_meeting(MeetingId::new(id))
        .await?
        .ok_or_else(|| ApiError::not_found(format!("no meeting {id:?}")))
}

async fn get_meeting(State(app): Shared, Path(id): Path<String>) -> Result<Response, ApiError> {
    Ok(ok(StatusCode::OK, meeting_or_404(&app, &id).await?))
}

/// `DELETE /v1/meetings/{id}`: the meeting and its participants go; every live session
/// ends with `goodbye: meeting_deleted` and every token of the meeting is refused.
async fn delete_meeting(State(app): Shared, Path(id): Path<String>) -> Result<Response, ApiError> {
    let meeting = app
        .storage
        .delete_meeting(MeetingId::new(id.clone()))
        .await?
        .ok_or_else(|| ApiError::not_found(format!("no meeting {id:?}")))?;
    // Storage first: from here on its tokens are refused, then the live room is told.
    app.rooms.delete(&meeting.id).await;
    tracing::info!(meeting = %meeting.id, "meeting deleted");
    Ok(ok(StatusCode::OK, meeting))
}

/// The longest participant name, in characters (REST participants and invite guests alike).
pub(crate) const MAX_NAME_CHARS: usize = 100;

/// The name of a new participant as stored, or why the body is refused.
fn check_participant(body: &AddParticipant) -> Result<String, ApiError> {
    let name = clean_text("name", &body.name, MAX_NAME_CHARS)?;
    if let Some(custom) = &body.custom_participant_id {
        let valid = !custom.is_empty()
            && custom.len() <= 128
            && custom
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "_-.:@".contains(c));
        if !valid {
            return Err(ApiError::bad_request(
                "custom_participant_id must be 1 to 128 of [A-Za-z0-9_-.:@]",
            ));
        }
        // The server's own ids are UUIDs: a custom id in that form could name (rename,
        // re-preset, mint a token for) a participant the server made.
        if uuid::Uuid::try_parse(custom).is_ok() {
            return Err(ApiError::bad_request(
                "custom_participant_id may not have the form of the server's ids (a UUID)",
            ));
        }
    }
    Ok(name)
}

async fn add_participant(
    State(app): Shared,
    Path(id): Path<String>,
    body: Result<ApiJson<AddParticipant>, ApiError>,
) -> Result<Response, ApiError> {
    let ApiJson(body) = body?;
    let name = check_participant(&body)?;
    let meeting = MeetingId::new(id.clone());
    let added = app
        .storage
        .add_participant(
            meeting.clone(),
            name,
            body.preset_name.clone(),
            body.custom_participant_id,
            now_ms(),
        )
        .await?;
    let (participant, reissued) = match added {
        storage::AddParticipant::Added(p) => (p, false),
        storage::AddParticipant::Reissued(p) => (p, true),
        storage::AddParticipant::NoMeeting => {
            return Err(ApiError::not_found(format!("no meeting {id:?}")))
        }
        storage::AddParticipant::NoPreset => {
            return Err(ApiError::bad_request(format!(
                "no preset {:?}",
                body.preset_name
            )))
        }
    };
    let token = app.auth.mint(
        &meeting,
        &participant.id,
        participant.token_generation,
        now_ms(),
    )?;
    if reissued {
        // The session of the previous token, if live, ends now (a leaked token must not
        // keep a seat); storage already refuses that token.
        app.rooms
            .revoke(
                &meeting,
                participant.id.clone(),
                participant.token_generation,
            )
            .await;
        tracing::info!(meeting = %meeting, user = %participant.id, "participant re-issued; older tokens revoked");
    }
    let link = app
        .invites
        .link(&token)
        .map_err(|e| ApiError::internal(format!("cannot build the invite link: {e}")))?;
    Ok(ok(
        StatusCode::CREATED,
        AddedParticipant {
            id: participant.id,
            name: participant.name,
            preset_name: participant.preset_name,
            custom_participant_id: participant.custom_participant_id,
            token,
            web_link: link.web_link(),
            link: link.to_string(),
        },
    ))
}

/// `DELETE /v1/meetings/{id}/participants/{participant_id}`: the participant goes from
/// storage; its live session ends with `goodbye: removed`, it leaves the stage, the queue and
/// the room (everyone hears), and its tokens are refused.
async fn remove_participant(
    State(app): Shared,
    Path((id, participant_id)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let meeting = MeetingId::new(id.clone());
    let removed = app
        .storage
        .remove_participant(meeting.clone(), UserId::new(participant_id.clone()))
        .await?;
    let participant = match removed {
        RemoveParticipant::Removed(p) => p,
        RemoveParticipant::NoMeeting => {
            return Err(ApiError::not_found(format!("no meeting {id:?}")))
        }
        RemoveParticipant::NoParticipant => {
            return Err(ApiError::not_found(format!(
                "no participant {participant_id:?} in meeting {id:?}"
            )))
        }
    };
    app.rooms
        .remove(
            &meeting,
            participant.id.clone(),
            participant.token_generation,
        )
        .await;
    tracing::info!(meeting = %meeting, user = %participant.id, "participant removed");
    Ok(ok(StatusCode::OK, Participant::from(participant)))
}

/// An invite as the admin API shows it: with its token and role link, which are the same
/// every time (the token is minted from the invite's id and creation time).
fn invite_view(app: &AppState, invite: InviteRecord) -> Result<Invite, ApiError> {
    let token = app
        .auth
        .mint_invite(&invite.meeting_id, &invite.id, invite.created_at)?;
    let link = app
        .invites
        .role_link(&token)
        .map_err(|e| ApiError::internal(format!("cannot build the role link: {e}")))?;
    Ok(Invite {
        id: invite.id,
        preset_name: invite.preset_name,
        token,
        web_link: link.web_link(),
        link: link.to_string(),
        created_at: invite.created_at,
        revoked_at: invite.revoked_at,
    })
}

/// `POST /v1/meetings/{id}/invites`: a role link for a preset.
async fn create_invite(
    State(app): Shared,
    Path(id): Path<String>,
    body: Result<ApiJson<CreateInvite>, ApiError>,
) -> Result<Response, ApiError> {
    let ApiJson(body) = body?;
    let created = app
        .storage
        .create_invite(
            MeetingId::new(id.clone()),
            body.preset_name.clone(),
            now_ms(),
        )
        .await?;
    let invite = match created {
        storage::CreateInvite::Created(invite) => invite,
        storage::CreateInvite::NoMeeting => {
            return Err(ApiError::not_found(format!("no meeting {id:?}")))
        }
        storage::CreateInvite::NoPreset => {
            return Err(ApiError::bad_request(format!(
                "no preset {:?}",
                body.preset_name
            )))
        }
    };
    tracing::info!(meeting = %invite.meeting_id, invite = %invite.id, preset = %invite.preset_name, "invite created");
    Ok(ok(StatusCode::CREATED, invite_view(&app, invite)?))
}

async fn list_invites(State(app): Shared, Path(id): Path<String>) -> Result<Response, ApiError> {
    let list = app
        .storage
        .list_invites(MeetingId::new(id.clone()))
        .await?
        .ok_or_else(|| ApiError::not_found(format!("no meeting {id:?}")))?;
    let list = list
        .into_iter()
        .map(|invite| invite_view(&app, invite))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(ok(StatusCode::OK, list))
}

/// `DELETE /v1/meetings/{id}/invites/{invite_id}`: nobody new joins with it; whoever did
/// stays (their own tokens are theirs).
async fn revoke_invite(
    State(app): Shared,
    Path((id, invite_id)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let revoked = app
        .storage
        .revoke_invite(MeetingId::new(id.clone()), invite_id.clone(), now_ms())
        .await?;
    let invite = match revoked {
        RevokeInvite::Revoked(invite) => invite,
        RevokeInvite::NoMeeting => return Err(ApiError::not_found(format!("no meeting {id:?}"))),
        RevokeInvite::NoInvite => {
            return Err(ApiError::not_found(format!(
                "no invite {invite_id:?} in meeting {id:?}"
            )))
        }
    };
    tracing::info!(meeting = %invite.meeting_id, invite = %invite.id, "invite revoked");
    Ok(ok(StatusCode::OK, invite_view(&app, invite)?))
}

/// A body one of the routes above reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Body {
    /// `POST /v1/meetings`
    CreateMeeting,
    /// `POST /v1/meetings/{id}/participants`
    AddParticipant,
    /// `POST /v1/presets` (and `PUT /v1/presets/{name}`, whose name comes from the path)
    Preset,
}

/// Reads `bytes` as `body` and applies the checks its route makes before touching storage,
/// the same code without HTTP or a server: the values as they would be stored, or the
/// error the caller would get. For fuzzing and tests.
pub fn check_body(
    body: Body,
    bytes: &[u8],
    default_max_on_stage: u32,
) -> Result<serde_json::Value, ApiError> {
    fn read<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
        Json::<T>::from_bytes(bytes)
            .map(|Json(v)| v)
            .map_err(json_rejection)
    }
    Ok(match body {
        Body::CreateMeeting => {
            let (title, max_on_stage) =
                check_meeting(&read::<CreateMeeting>(bytes)?, default_max_on_stage)?;
            json!({ "title": title, "max_on_stage": max_on_stage })
        }
        Body::AddParticipant => {
            let body = read::<AddParticipant>(bytes)?;
            json!({
                "name": check_participant(&body)?,
                "preset_name": body.preset_name,
                "custom_participant_id": body.custom_participant_id,
            })
        }
        Body::Preset => {
            let preset = read::<Preset>(bytes)?;
            validate_preset_name(&preset.name)?;
            json!(preset)
        }
    })
}

async fn list_participants(
    State(app): Shared,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let list = app
        .storage
        .list_participants(MeetingId::new(id.clone()))
        .await?
        .ok_or_else(|| ApiError::not_found(format!("no meeting {id:?}")))?;
    let list: Vec<Participant> = list.into_iter().map(Participant::from).collect();
    Ok(ok(StatusCode::OK, list))
}

async fn stage(State(app): Shared, Path(id): Path<String>) -> Result<Response, ApiError> {
    let meeting = meeting_or_404(&app, &id).await?;
    let snapshot = app
        .rooms
        .snapshot(&meeting.id)
        .await
        .unwrap_or(RoomSnapshot {
            seq: 0,
            max_on_stage: meeting.max_on_stage,
            participants: Vec::new(),
            queue: Vec::new(),
        });
    Ok(ok(StatusCode::OK, snapshot))
}

/// A title or a name as people will see it: trimmed, 1 to `max` characters, and no control
/// or format characters (Unicode Cc, Cf, and line or paragraph separators): NUL, escape
/// sequences, CR LF, zero-width and bidirectional overrides (U+202E) would reach every
/// roster, UI and terminal that shows it. Plain spaces are fine.
pub(crate) fn clean_text(field: &str, value: &str, max: usize) -> Result<String, ApiError> {
    use unicode_properties::{GeneralCategory, UnicodeGeneralCategory};
    let text = value.trim();
    if text.is_empty() || text.chars().count() > max {
        return Err(ApiError::bad_request(format!(
            "{field} must be 1 to {max} characters"
        )));
    }
    let bad = text.chars().find(|c| {
        matches!(
            c.general_category(),
            GeneralCategory::Control
                | GeneralCategory::Format
                | GeneralCategory::LineSeparator
                | GeneralCategory::ParagraphSeparator
        )
    });
    match bad {
        Some(c) => Err(ApiError::bad_request(format!(
            "{field} may not contain control or format characters (found U+{:04X})",
            u32::from(c)
        ))),
        None => Ok(text.to_owned()),
    }
}

fn validate_preset_name(name: &str) -> Result<(), ApiError> {
    let valid = !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-');
    if !valid {
        return Err(ApiError::bad_request(
            "preset name must be 1 to 64 of [a-z0-9_-]",
        ));
    }
    if onstage_room::is_builtin_preset(name) {
        return Err(ApiError::bad_request(format!(
            "{name:?} is a built-in preset and cannot be changed"
        )));
    }
    Ok(())
}

async fn list_presets(State(app): Shared) -> Result<Response, ApiError> {
    let mut all = onstage_room::builtin_presets();
    all.extend(app.storage.list_presets().await?);
    Ok(ok(StatusCode::OK, all))
}

async fn create_preset(
    State(app): Shared,
    body: Result<ApiJson<Preset>, ApiError>,
) -> Result<Response, ApiError> {
    let ApiJson(preset) = body?;
    validate_preset_name(&preset.name)?;
    if !app.storage.insert_preset(preset.clone(), now_ms()).await? {
        return Err(ApiError::invalid_state(format!(
            "preset {:?} already exists",
            preset.name
        )));
    }
    Ok(ok(StatusCode::CREATED, preset))
}

async fn get_preset(State(app): Shared, Path(name): Path<String>) -> Result<Response, ApiError> {
    let preset = match onstage_room::builtin_preset(&name) {
        Some(p) => Some(p),
        None => app.storage.get_preset(name.clone()).await?,
    };
    preset
        .map(|p| ok(StatusCode::OK, p))
        .ok_or_else(|| ApiError::not_found(format!("no preset {name:?}")))
}

async fn update_preset(
    State(app): Shared,
    Path(name): Path<String>,
    body: Result<ApiJson<Preset>, ApiError>,
) -> Result<Response, ApiError> {
    validate_preset_name(&name)?;
    let ApiJson(mut preset) = body?;
    preset.name = name.clone();
    if !app.storage.update_preset(preset.clone()).await? {
        return Err(ApiError::not_found(format!("no preset {name:?}")));
    }
    Ok(ok(StatusCode::OK, preset))
}

async fn delete_preset(State(app): Shared, Path(name): Path<String>) -> Result<Response, ApiError> {
    validate_preset_name(&name)?;
    match app.storage.delete_preset(name.clone()).await? {
        DeletePreset::Deleted(p) => Ok(ok(StatusCode::OK, p)),
        DeletePreset::NotFound => Err(ApiError::not_found(format!("no preset {name:?}"))),
        DeletePreset::InUse(n) => Err(ApiError::invalid_state(format!(
            "preset {name:?} is used by {n} participants or invites"
        ))),
    }
}
