//! `meeting create`, `meeting delete`, `participant add`, `participant remove`,
//! `preset create`: one admin API call each, through the SDK's [`AdminClient`].

use std::process::ExitCode;

use serde_json::{json, Value};

use onstage_client::AdminClient;
use onstage_proto::rest::{AddParticipant, CreateMeeting};
use onstage_proto::{ErrorBody, ErrorCode, Preset};

use crate::cli::{AdminConnection, MeetingCommand, ParticipantCommand, PresetCommand};
use crate::output;

/// The admin client for the command line's `--server` / `--admin-key` (or
/// `ONSTAGE_ADMIN_KEY`) / `--fingerprint`.
pub fn client(conn: &AdminConnection) -> Result<AdminClient, ErrorBody> {
    let key = conn
        .admin_key
        .as_deref()
        .filter(|k| !k.is_empty())
        .ok_or_else(|| {
            ErrorBody::new(
                ErrorCode::Unauthorized,
                "no admin key: set ONSTAGE_ADMIN_KEY or pass --admin-key",
            )
        })?;
    AdminClient::with_fingerprint(&conn.server, key, conn.fingerprint)
}

fn finish(outcome: Result<Value, ErrorBody>) -> ExitCode {
    match outcome {
        Ok(value) => {
            output::print_line(&value);
            ExitCode::SUCCESS
        }
        Err(error) => {
            output::print_error(None, &error);
            ExitCode::FAILURE
        }
    }
}

/// `onstage meeting create` -> `{"id":"..."}`; `onstage meeting delete` -> `{"id":"..."}`.
pub async fn meeting(command: MeetingCommand) -> ExitCode {
    finish(
        async {
            match command {
                MeetingCommand::Create {
                    conn,
                    title,
                    max_on_stage,
                } => {
                    let request = CreateMeeting {
                        title,
                        max_on_stage,
                    };
                    let meeting = client(&conn)?.create_meeting(&request).await?;
                    Ok(json!({ "id": meeting.id }))
                }
                MeetingCommand::Delete { conn, meeting } => {
                    let deleted = client(&conn)?.delete_meeting(&meeting).await?;
                    Ok(json!({ "id": deleted.id }))
                }
            }
        }
        .await,
    )
}

/// `onstage participant add` -> `{"user_id":"...","token":"...","link":"onstage://join?.."}`;
/// `onstage participant remove` -> `{"user_id":"..."}`.
pub async fn participant(command: ParticipantCommand) -> ExitCode {
    finish(
        async {
            match command {
                ParticipantCommand::Add {
                    conn,
                    meeting,
                    name,
                    preset,
                    user_id,
                } => {
                    let request = AddParticipant {
                        name,
                        preset_name: preset,
                        custom_participant_id: user_id,
                    };
                    let added = client(&conn)?.add_participant(&meeting, &request).await?;
                    Ok(json!({
                        "user_id": added.id,
                        "token": added.token,
                        "link": added.link,
                    }))
                }
                ParticipantCommand::Remove {
                    conn,
                    meeting,
                    user_id,
                } => {
                    let removed = client(&conn)?
                        .remove_participant(&meeting, &user_id)
                        .await?;
                    Ok(json!({ "user_id": removed.id }))
                }
            }
        }
        .await,
    )
}

/// `onstage preset create` -> the preset as the server stored it.
pub async fn preset(command: PresetCommand) -> ExitCode {
    let PresetCommand::Create {
        conn,
        name,
        stage_access,
        accept_stage_requests,
        kick_participant,
        no_stage,
    } = command;
    let preset = Preset {
        name,
        stage_enabled: !no_stage,
        stage_access,
        accept_stage_requests,
        kick_participant,
        can_produce_audio: true,
        can_produce_video: true,
    };
    finish(
        async {
            let stored = client(&conn)?.create_preset(&preset).await?;
            // As a JSON value, whose keys print in the order they always have.
            serde_json::to_value(stored)
                .map_err(|e| ErrorBody::new(ErrorCode::Internal, e.to_string()))
        }
        .await,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_admin_key_is_unauthorized() {
        let conn = AdminConnection {
            server: "http://127.0.0.1:1".into(),
            admin_key: None,
            fingerprint: None,
        };
        assert_eq!(client(&conn).unwrap_err().code, ErrorCode::Unauthorized);
    }
}
