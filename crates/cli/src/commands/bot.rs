//! `onstage bot`: joins a meeting through the SDK, answers calls read as JSON lines on stdin
//! and prints the SDK's events. The protocol is in `cli::BOT_HELP` (`onstage bot --help`).
//!
//! Stage calls are parsed by `onstage_proto::Request::parse`, the same parser the server
//! uses for the wire; the bot adds its local calls (`stage.status`, `participants.list`,
//! `media.stats`) in front of it.

use std::process::ExitCode;
use std::time::Duration;

use serde::Serialize;
use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, BufReader};

use onstage_client::{
    ClientError, ConnectionState, InviteLink, JoinOptions, MediaConfig, MediaProblem, Meeting,
    MeetingEvent, Participant, Sources, StageMedia,
};
use onstage_media::{find_device, DeviceKind, MediaError};
use onstage_proto::signal::KNOWN_CALLS;
use onstage_proto::{
    Call, ErrorBody, ErrorCode, MediaKinds, PeerId, Request, StageStatus, TileSize, UserId,
};

use crate::cli::{BotArgs, MediaMode, Switch};
use crate::output::{self, Lines, Reply};

/// Calls the bot answers itself, from the SDK's state.
const LOCAL_CALLS: &[&str] = &["stage.status", "participants.list", "media.stats"];

/// Server calls the bot does not offer: the SDK makes them itself (resync, media).
const HIDDEN_CALLS: &[&str] = &[
    "meeting.snapshot",
    "media.publish",
    "media.unpublish",
    "media.subscribe",
    "media.unsubscribe",
    "media.state",
];

/// Every call the bot answers: the server's calls (one list, in `onstage_proto`) and its own.
pub fn bot_calls() -> impl Iterator<Item = &'static str> {
    KNOWN_CALLS
        .iter()
        .copied()
        .filter(|c| !HIDDEN_CALLS.contains(c))
        .chain(LOCAL_CALLS.iter().copied())
}

/// One call the bot understood.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BotCall {
    /// A call that goes to the server through the SDK.
    Sdk(Call),
    /// `stage.status`: the bot's own status, from the SDK's mirror.
    StageStatus,
    /// `participants.list`: the roster, from the SDK's mirror.
    ParticipantsList,
    /// `media.stats`: what the bot publishes and has decoded.
    MediaStats,
}

/// A line the bot could not take: the id when it could be read, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadLine {
    pub id: Option<Value>,
    pub error: ErrorBody,
}

fn bad(id: Option<Value>, message: impl Into<String>) -> BadLine {
    BadLine {
        id,
        error: ErrorBody::new(ErrorCode::BadRequest, message),
    }
}

/// Parses one stdin line into its id and call.
pub fn parse_line(line: &str) -> Result<(u64, BotCall), BadLine> {
    let value: Value =
        serde_json::from_str(line).map_err(|e| bad(None, format!("not valid JSON: {e}")))?;
    let Some(object) = value.as_object() else {
        return Err(bad(None, "a call must be a JSON object"));
    };
    let raw_id = object.get("id").filter(|id| !id.is_null()).cloned();
    let Some(name) = object.get("call").and_then(Value::as_str) else {
        return Err(bad(raw_id, "a call needs a \"call\" (string)"));
    };
    if !bot_calls().any(|c| c == name) {
        let calls: Vec<&str> = bot_calls().collect();
        return Err(bad(
            raw_id,
            format!("unknown call {name:?}; calls: {}", calls.join(" ")),
        ));
    }
    let local = match name {
        "stage.status" => Some(BotCall::StageStatus),
        "participants.list" => Some(BotCall::ParticipantsList),
        "media.stats" => Some(BotCall::MediaStats),
        _ => None,
    };
    match local {
        Some(call) => match raw_id.as_ref().and_then(Value::as_u64) {
            Some(id) => Ok((id, call)),
            None => Err(bad(raw_id, "a call needs an \"id\" (unsigned integer)")),
        },
        None => Request::parse(line)
            .map(|request| (request.id, BotCall::Sdk(request.call)))
            .map_err(|(_, error)| BadLine { id: raw_id, error }),
    }
}

/// `{"status":"ON_STAGE"}`: the result of every call that moves the caller.
pub fn status_json(status: StageStatus) -> Value {
    json!({ "status": status })
}

/// `participants.list`: `[{"user_id","name","preset","stage_status"}]`.
pub fn participants_json(participants: &[Participant]) -> Value {
    Value::Array(
        participants
            .iter()
            .map(|p| {
                json!({
                    "user_id": p.user_id,
                    "name": p.name,
                    "preset": p.preset,
                    "stage_status": p.stage_status,
                })
            })
            .collect(),
    )
}

/// `media.stats`: what the bot publishes and what it has decoded from whom. With
/// `--media none` there is no media at all: nothing published, nothing received.
pub fn media_stats_json(media: Option<&StageMedia>) -> Value {
    match media {
        Some(media) => serde_json::to_value(media.stats()).unwrap_or(Value::Null),
        None => json!({
            "publishing": { "audio": false, "video": false },
            "received": {},
        }),
    }
}

/// Runs one call against the meeting; the `result` of the reply line.
pub async fn execute(
    meeting: &Meeting,
    media: Option<&StageMedia>,
    call: BotCall,
) -> Result<Value, ClientError> {
    let stage = meeting.stage();
    let done = |()| Value::Null;
    Ok(match call {
        BotCall::StageStatus => status_json(stage.status()),
        BotCall::ParticipantsList => participants_json(&meeting.participants()),
        BotCall::MediaStats => media_stats_json(media),
        BotCall::Sdk(call) => match call {
            Call::GetAccessRequests => serde_json::to_value(stage.get_access_requests().await?)
                .map_err(|e| ClientError::Protocol(e.to_string()))?,
            Call::RequestAccess => status_json(stage.request_access().await?),
            Call::CancelRequestAccess => status_json(stage.cancel_request_access().await?),
            Call::GrantAccess { user_ids } => done(stage.grant_access(&user_ids).await?),
            Call::DenyAccess { user_ids } => done(stage.deny_access(&user_ids).await?),
            Call::Join => status_json(stage.join().await?),
            Call::Leave => status_json(stage.leave().await?),
            Call::Kick { user_ids } => done(stage.kick(&user_ids).await?),
            Call::LeaveMeeting => done(meeting.leave().await?),
            Call::EndMeeting => done(meeting.end().await?),
            Call::RemoveParticipant { user_id } => {
                done(meeting.remove_participant(&user_id).await?)
            }
            Call::SetPreset { user_id, preset } => {
                done(meeting.set_preset(&user_id, &preset).await?)
            }
            Call::MuteParticipant { user_id } => done(meeting.mute_participant(&user_id).await?),
            Call::Tiles { tiles } => done(meeting.set_tiles(tiles).await?),
            // Signaling internals the SDK makes on the bot's behalf, not bot calls.
            Call::Snapshot
            | Call::Publish { .. }
            | Call::Unpublish
            | Call::Subscribe { .. }
            | Call::Unsubscribe { .. }
            | Call::MediaState { .. } => {
                return Err(ClientError::Server(ErrorBody::new(
                    ErrorCode::BadRequest,
                    format!("unknown call {:?}", call.name()),
                )))
            }
        },
    })
}

/// What one input line produced.
#[derive(Debug, Clone, PartialEq)]
pub struct Handled {
    /// The reply line (a JSON object).
    pub reply: String,
    /// The line was `meeting.leave`, or a `meeting.end` that succeeded: the bot stops after
    /// printing the reply.
    pub leave: bool,
}

/// Parses and runs one input line; `None` for a blank line.
pub async fn handle_line(
    meeting: &Meeting,
    media: Option<&StageMedia>,
    line: &str,
) -> Option<Handled> {
    let line = line.trim();
    if line.is_empty() {
        return None;
    }
    Some(match parse_line(line) {
        Err(BadLine { id, error }) => Handled {
            reply: output::to_line(&Reply::error(id.as_ref(), error)),
            leave: false,
        },
        Ok((id, call)) => {
            let mut leave = call == BotCall::Sdk(Call::LeaveMeeting);
            let ending = call == BotCall::Sdk(Call::EndMeeting);
            let id = Value::from(id);
            let reply = match execute(meeting, media, call).await {
                Ok(result) => {
                    // Ended for everyone, the bot included: nothing more to do.
                    leave |= ending;
                    Reply::ok(Some(&id), result)
                }
                Err(e) => Reply::error(Some(&id), e.to_body()),
            };
            Handled {
                reply: output::to_line(&reply),
                leave,
            }
        }
    })
}

#[derive(Serialize)]
struct Joined {
    event: &'static str,
    user_id: UserId,
    peer_id: PeerId,
}

/// How long, after leaving, the bot waits for the SDK's last events to be printed.
const DRAIN: Duration = Duration::from_secs(2);

/// Joins with the invite link, or with --server/--token (and --fingerprint).
async fn join(args: &BotArgs) -> Result<Meeting, ClientError> {
    if let Some(link) = &args.link {
        let link = InviteLink::parse(link)?;
        return Meeting::join_link(&link, args.name.as_deref(), JoinOptions::default()).await;
    }
    // clap makes --server and --token go together, or --link: both present here.
    let (Some(server), Some(token)) = (&args.server, &args.token) else {
        return Err(ClientError::Link(onstage_proto::LinkError::MissingServer));
    };
    let options = JoinOptions {
        fingerprint: args.fingerprint,
        ..JoinOptions::default()
    };
    Meeting::join_with(server, token, options).await
}

/// What `--media` publishes and plays; `None` for no media at all.
fn media_config(args: &BotArgs) -> Option<MediaConfig> {
    let base = MediaConfig {
        video: args.video,
        video_bitrate_bps: args.video_bitrate,
        simulcast: args.simulcast == Switch::On,
        ..MediaConfig::default()
    };
    match args.media {
        MediaMode::None => None,
        MediaMode::Synthetic => Some(MediaConfig {
            sources: Sources::Synthetic {
                tone_hz: args.tone_hz,
            },
            ..base
        }),
        MediaMode::Devices => Some(MediaConfig {
            sources: Sources::Devices {
                camera: args.camera.id(),
                microphone: args.mic.id(),
            },
            capture: MediaKinds::new(args.mic.is_used(), args.camera.is_used()),
            play_audio: args.speaker.is_used(),
            speaker: args.speaker.id(),
            ..base
        }),
    }
}

/// With `--media devices`: every device named on the command line exists (the defaults
/// and the ones left out are not checked: no default device is a state, reported when
/// the stage needs it).
async fn check_named_devices(args: &BotArgs) -> Result<(), MediaError> {
    if args.media != MediaMode::Devices {
        return Ok(());
    }
    let named: Vec<(DeviceKind, String)> = [
        (DeviceKind::Camera, &args.camera),
        (DeviceKind::Microphone, &args.mic),
        (DeviceKind::Speaker, &args.speaker),
    ]
    .into_iter()
    .filter_map(|(kind, arg)| arg.id().map(|id| (kind, id)))
    .collect();
    if named.is_empty() {
        return Ok(());
    }
    // Device libraries block: off the async threads.
    tokio::task::spawn_blocking(move || {
        named
            .iter()
            .try_for_each(|(kind, id)| find_device(*kind, id).map(drop))
    })
    .await
    .unwrap_or_else(|e| {
        Err(MediaError::Device(
            DeviceKind::Camera,
            format!("the device check stopped: {e}"),
        ))
    })
}

/// `{"event":"mediaError","device":"microphone","code":"device_lost","message":..}`: a
/// device the media could not use, as it happens (the app's `media-error`).
pub fn media_error_event(problem: &MediaProblem) -> Value {
    json!({
        "event": "mediaError",
        "device": problem.device,
        "code": problem.code,
        "message": problem.message,
    })
}

pub async fn run(args: BotArgs) -> ExitCode {
    if let Err(e) = check_named_devices(&args).await {
        output::print_line(&super::devices::device_error_line(&e));
        return ExitCode::FAILURE;
    }
    let meeting = match join(&args).await {
        Ok(meeting) => meeting,
        Err(e) => {
            output::print_error(None, &e.to_body());
            return ExitCode::FAILURE;
        }
    };
    let (lines, writer) = Lines::start();
    lines.send(&Joined {
        event: "joined",
        user_id: meeting.user_id(),
        peer_id: meeting.peer_id(),
    });
    let mut events = meeting.events();
    let event_lines = lines.clone();
    let mut pump = tokio::spawn(async move {
        while let Some(event) = events.recv().await {
            event_lines.send(&event);
        }
    });

    // Publishes while on stage; receives everyone on stage.
    let media = media_config(&args).map(|config| StageMedia::start(meeting.clone(), config));
    let problems = media.as_ref().map(|media| {
        let mut problems = media.media_problems();
        let lines = lines.clone();
        tokio::spawn(async move {
            loop {
                match problems.recv().await {
                    Ok(problem) => lines.send(&media_error_event(&problem)),
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => {
                        tracing::warn!(n, "media problems skipped");
                    }
                    Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
                }
            }
        })
    });
    let tiles = args
        .tiles
        .map(|size| tokio::spawn(tell_tiles(meeting.clone(), size)));
    let left = read_calls(&meeting, media.as_ref(), &lines).await;
    if let Some(tiles) = tiles {
        tiles.abort();
    }
    if let Some(media) = media {
        media.stop().await;
    }
    if let Some(problems) = problems {
        problems.abort();
    }
    if !left {
        if let Err(e) = meeting.leave().await {
            tracing::debug!(error = %e, "leaving at end of input");
        }
    }
    // The event stream ends after the final `disconnected`; give it a moment to get out.
    if tokio::time::timeout(DRAIN, &mut pump).await.is_err() {
        pump.abort();
    }
    drop(lines);
    let _ = writer.await;
    ExitCode::SUCCESS
}

/// `--tiles`: tells the SFU that every stage video is shown at `width` x `height`, as the
/// set of publishers changes and again after a reconnect (the server's session is new).
async fn tell_tiles(meeting: Meeting, (width, height): (u32, u32)) {
    let me = meeting.user_id();
    let mut events = meeting.events();
    let mut told: Option<Vec<UserId>> = None;
    loop {
        let publishers: Vec<UserId> = meeting
            .publishing()
            .into_keys()
            .filter(|user| *user != me)
            .collect();
        if told.as_ref() != Some(&publishers) {
            let tiles = publishers
                .iter()
                .map(|user_id| TileSize {
                    user_id: user_id.clone(),
                    width,
                    height,
                })
                .collect();
            match meeting.set_tiles(tiles).await {
                Ok(()) => told = Some(publishers),
                // Told again at the next change (a reconnect is one).
                Err(e) => tracing::debug!(error = %e, "media.tiles"),
            }
        }
        match events.recv().await {
            None => return,
            Some(MeetingEvent::ConnectionStateUpdate {
                state: ConnectionState::Connected,
                ..
            }) => told = None,
            Some(_) => {}
        }
    }
}

/// Answers stdin lines until end of input, a signal, or `meeting.leave` (returns true).
async fn read_calls(meeting: &Meeting, media: Option<&StageMedia>, lines: &Lines) -> bool {
    let mut stdin = BufReader::new(tokio::io::stdin());
    let mut buf = Vec::new();
    let shutdown = super::shutdown_signal();
    tokio::pin!(shutdown);
    loop {
        buf.clear();
        let read = tokio::select! {
            read = stdin.read_until(b'\n', &mut buf) => read,
            _ = &mut shutdown => return false,
        };
        match read {
            Ok(0) => return false,
            Ok(_) => {}
            Err(e) => {
                tracing::warn!(error = %e, "reading stdin");
                return false;
            }
        }
        let Ok(line) = std::str::from_utf8(&buf) else {
            lines.send(&Reply::error(
                None,
                ErrorBody::new(ErrorCode::BadRequest, "not valid UTF-8"),
            ));
            continue;
        };
        if let Some(handled) = handle_line(meeting, media, line).await {
            lines.send_line(handled.reply);
            if handled.leave {
                return true;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use onstage_proto::PeerId;

    fn ok(line: &str) -> (u64, BotCall) {
        parse_line(line).unwrap_or_else(|e| panic!("{line}: {e:?}"))
    }

    fn err(line: &str) -> BadLine {
        let e = parse_line(line).expect_err(line);
        assert_eq!(e.error.code, ErrorCode::BadRequest, "{line}");
        e
    }

    #[test]
    fn every_bot_call_parses() {
        for name in bot_calls() {
            let line = format!(
                r#"{{"id":4,"call":"{name}","user_ids":["u1"],"user_id":"u1","preset":"host","tiles":[]}}"#
            );
            let (id, _) = ok(&line);
            assert_eq!(id, 4);
        }
        assert_eq!(
            ok(r#"{"id":2,"call":"stage.grantAccess","user_ids":["u1","u2"]}"#),
            (
                2,
                BotCall::Sdk(Call::GrantAccess {
                    user_ids: vec!["u1".into(), "u2".into()]
                })
            )
        );
        assert_eq!(
            ok(r#"{"id":1,"call":"stage.requestAccess"}"#).1,
            BotCall::Sdk(Call::RequestAccess)
        );
        assert_eq!(
            ok(r#"{"id":1,"call":"stage.status"}"#).1,
            BotCall::StageStatus
        );
        assert_eq!(
            ok(r#"{"id":1,"call":"participants.list"}"#).1,
            BotCall::ParticipantsList
        );
        assert_eq!(
            ok(r#"{"id":1,"call":"media.stats"}"#).1,
            BotCall::MediaStats
        );
        assert_eq!(
            ok(r#"{"id":9,"call":"meeting.leave"}"#).1,
            BotCall::Sdk(Call::LeaveMeeting)
        );
        assert_eq!(
            ok(r#"{"id":10,"call":"meeting.end"}"#).1,
            BotCall::Sdk(Call::EndMeeting)
        );
    }

    #[test]
    fn bad_lines_are_bad_requests_with_the_id_when_readable() {
        assert_eq!(err("garbage").id, None);
        assert_eq!(err("[1,2]").id, None);
        assert_eq!(err(r#"{"call":"stage.join"}"#).id, None);
        assert_eq!(err(r#"{"id":7,"call":"stage.dance"}"#).id, Some(json!(7)));
        assert_eq!(err(r#"{"id":7}"#).id, Some(json!(7)));
        // The wire's meeting.snapshot is not a bot call.
        assert_eq!(
            err(r#"{"id":8,"call":"meeting.snapshot"}"#).id,
            Some(json!(8))
        );
        // Batch calls need their user ids.
        assert_eq!(err(r#"{"id":3,"call":"stage.kick"}"#).id, Some(json!(3)));
        assert_eq!(
            err(r#"{"id":3,"call":"stage.kick","user_ids":"all"}"#).id,
            Some(json!(3))
        );
        // Ids must be unsigned integers; a readable one is echoed anyway.
        assert_eq!(
            err(r#"{"id":"a","call":"stage.join"}"#).id,
            Some(json!("a"))
        );
        assert_eq!(
            err(r#"{"id":-1,"call":"stage.status"}"#).id,
            Some(json!(-1))
        );
    }

    #[test]
    fn results_have_the_documented_shapes() {
        assert_eq!(
            status_json(StageStatus::OnStage),
            json!({"status":"ON_STAGE"})
        );
        let p = Participant {
            user_id: UserId::new("u1"),
            peer_id: PeerId::new("p1"),
            name: "Ann".into(),
            preset: "viewer".into(),
            stage_status: StageStatus::RequestedToJoinStage,
            connected: true,
        };
        assert_eq!(
            participants_json(&[p]),
            json!([{"user_id":"u1","name":"Ann","preset":"viewer",
                    "stage_status":"REQUESTED_TO_JOIN_STAGE"}])
        );
        assert_eq!(
            media_stats_json(None),
            json!({"publishing":{"audio":false,"video":false},"received":{}})
        );
    }

    #[test]
    fn joined_line_shape() {
        let line = output::to_line(&Joined {
            event: "joined",
            user_id: UserId::new("u"),
            peer_id: PeerId::new("p"),
        });
        assert_eq!(line, r#"{"event":"joined","user_id":"u","peer_id":"p"}"#);
    }
}
