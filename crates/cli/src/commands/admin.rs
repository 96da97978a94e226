//! `meeting create`, `meeting delete`, `participant add`, `participant remove`,
//! `preset create`, `invite create`, `invite list`, `invite revoke`: one admin API call each, through the SDK's [`AdminClient`].

use std::process::ExitCode;

use serde_json::{json, Value};

use onstage_client::AdminClient;
use onstage_proto::rest::{AddParticipant, CreateMeeting, Invite};
use onstage_proto::{ErrorBody, ErrorCode, Preset};

use crate::cli::{
    AdminConnection, InviteCommand, MeetingCommand, ParticipantCommand, PresetCommand,
};
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

/// `onstage participant add` ->
/// `{"user_id":"...","token":"...","link":"onstage://join?..","web_link":"https://../join#token=.."}`;
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
                        "web_link": added.web_link,
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

/// An invite as the invite commands print it.
fn invite_line(invite: Invite) -> Value {
    json!({
        "invite_id": invite.id,
        "preset": invite.preset_name,
        "token": invite.token,
        "link": invite.link,
        "web_link": invite.web_link,
        "revoked_at": invite.revoked_at,
    })
}

/// `onstage invite create` -> `{"invite_id","preset","token","link","web_link","revoked_at":null}`;
/// `invite list` -> one such line per invite; `invite revoke` -> `{"invite_id","revoked_at"}`.
pub async fn invite(command: InviteCommand) -> ExitCode {
    let outcome: Result<Vec<Value>, ErrorBody> = async {
        match command {
            InviteCommand::Create {
                conn,
                meeting,
                preset,
            } => {
                let invite = client(&conn)?.create_invite(&meeting, &preset).await?;
                Ok(vec![invite_line(invite)])
            }
            InviteCommand::List { conn, meeting } => {
                let list = client(&conn)?.list_invites(&meeting).await?;
                Ok(list.into_iter().map(invite_line).collect())
            }
            InviteCommand::Revoke {
                conn,
                meeting,
                invite_id,
            } => {
                let revoked = client(&conn)?.revoke_invite(&meeting, &invite_id).await?;
                Ok(vec![
                    json!({ "invite_id": revoked.id, "revoked_at": revoked.revoked_at }),
                ])
            }
        }
    }
    .await;
    match outcome {
        Ok(lines) => {
            for line in &lines {
                output::print_line(line);
            }
            ExitCode::SUCCESS
        }
        Err(error) => finish(Err(error)),
    }
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
