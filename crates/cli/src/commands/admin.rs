//! `meeting create`, `meeting delete`, `participant add`, `participant remove`,
//! `preset create`: one admin API call each.

use std::process::ExitCode;
use std::time::Duration;

use serde_json::{json, Value};

use onstage_proto::{ErrorBody, ErrorCode, Fingerprint, Preset};

use crate::cli::{AdminConnection, MeetingCommand, ParticipantCommand, PresetCommand};
use crate::output;

/// A small client of the admin REST API (see `docs/API.md`).
#[derive(Debug, Clone)]
pub struct AdminClient {
    http: reqwest::Client,
    base: String,
    key: String,
}

impl AdminClient {
    /// `base` is the server's URL (`http://host:port`); `key` the admin key.
    pub fn new(base: &str, key: &str) -> Result<Self, ErrorBody> {
        Self::with_fingerprint(base, key, None)
    }

    /// For an `https` server: its certificate is checked as the SDK checks it (the
    /// system's trust, or exactly the certificate `pin` names), and the client never
    /// follows a redirect to plain http, so the admin key never goes in clear. A pin with
    /// an `http` base is refused for the same reason.
    pub fn with_fingerprint(
        base: &str,
        key: &str,
        pin: Option<Fingerprint>,
    ) -> Result<Self, ErrorBody> {
        let bad = |message: String| ErrorBody::new(ErrorCode::BadRequest, message);
        let url =
            url::Url::parse(base).map_err(|e| bad(format!("bad server URL {base:?}: {e}")))?;
        let builder = reqwest::Client::builder().timeout(Duration::from_secs(30));
        let builder = match (url.scheme(), pin) {
            ("https", pin) => {
                let tls = onstage_client::tls::client_config(pin)
                    .map_err(|e| ErrorBody::new(ErrorCode::UntrustedServer, e.to_string()))?;
                builder.tls_backend_preconfigured(tls).https_only(true)
            }
            // Plain http needs no roots: keep the client from loading the system's.
            ("http", None) => builder.tls_certs_only([]),
            ("http", Some(_)) => {
                return Err(bad(format!(
                    "a certificate fingerprint needs an https:// server, not {base}"
                )))
            }
            (other, _) => {
                return Err(bad(format!(
                    "the server URL must be http(s)://, not {other}://"
                )))
            }
        };
        let http = builder
            .build()
            .map_err(|e| ErrorBody::new(ErrorCode::Internal, format!("HTTP client: {e}")))?;
        Ok(Self {
            http,
            base: base.trim_end_matches('/').to_owned(),
            key: key.to_owned(),
        })
    }

    /// From the command line's `--server` / `--admin-key` (or `ONSTAGE_ADMIN_KEY`).
    pub fn from_args(conn: &AdminConnection) -> Result<Self, ErrorBody> {
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
        Self::with_fingerprint(&conn.server, key, conn.fingerprint)
    }

    /// `POST /v1/meetings`; returns the meeting (`{"id","title","max_on_stage","created_at"}`).
    pub async fn create_meeting(
        &self,
        title: &str,
        max_on_stage: Option<u32>,
    ) -> Result<Value, ErrorBody> {
        let mut body = json!({ "title": title });
        if let Some(max) = max_on_stage {
            body["max_on_stage"] = json!(max);
        }
        self.post("/v1/meetings", &body).await
    }

    /// `POST /v1/meetings/{id}/participants`; returns `{"id","name","preset_name",..,"token"}`.
    pub async fn add_participant(
        &self,
        meeting: &str,
        name: &str,
        preset: &str,
        user_id: Option<&str>,
    ) -> Result<Value, ErrorBody> {
        let mut body = json!({ "name": name, "preset_name": preset });
        if let Some(id) = user_id {
            body["custom_participant_id"] = json!(id);
        }
        let path = format!("/v1/meetings/{}/participants", path_segment(meeting));
        self.post(&path, &body).await
    }

    /// `DELETE /v1/meetings/{id}`; returns the deleted meeting.
    pub async fn delete_meeting(&self, meeting: &str) -> Result<Value, ErrorBody> {
        let path = format!("/v1/meetings/{}", path_segment(meeting));
        self.send(reqwest::Method::DELETE, &path, None).await
    }

    /// `DELETE /v1/meetings/{id}/participants/{user_id}`; returns the removed participant.
    pub async fn remove_participant(
        &self,
        meeting: &str,
        user_id: &str,
    ) -> Result<Value, ErrorBody> {
        let path = format!(
            "/v1/meetings/{}/participants/{}",
            path_segment(meeting),
            path_segment(user_id)
        );
        self.send(reqwest::Method::DELETE, &path, None).await
    }

    /// `POST /v1/presets`; returns the preset as stored.
    pub async fn create_preset(&self, preset: &Preset) -> Result<Value, ErrorBody> {
        let body = serde_json::to_value(preset)
            .map_err(|e| ErrorBody::new(ErrorCode::Internal, e.to_string()))?;
        self.post("/v1/presets", &body).await
    }

    /// POSTs JSON and unwraps the `{"success":..,"data"|"error":..}` envelope.
    pub async fn post(&self, path: &str, body: &Value) -> Result<Value, ErrorBody> {
        self.send(reqwest::Method::POST, path, Some(body)).await
    }

    /// Sends a request (with a JSON body when given) and unwraps the envelope.
    async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Value, ErrorBody> {
        let url = format!("{}{path}", self.base);
        let mut request = self.http.request(method, &url).bearer_auth(&self.key);
        if let Some(body) = body {
            request = request.json(body);
        }
        let response = request.send().await.map_err(|e| {
            match onstage_client::tls::certificate_problem(&e) {
                Some(problem) => ErrorBody::new(ErrorCode::UntrustedServer, problem.to_string()),
                None => ErrorBody::new(
                    ErrorCode::ConnectionLost,
                    format!("cannot reach {}: {e}", self.base),
                ),
            }
        })?;
        let status = response.status();
        let text = response.text().await.map_err(|e| {
            ErrorBody::new(
                ErrorCode::ConnectionLost,
                format!("reading the response: {e}"),
            )
        })?;
        unwrap_envelope(status.as_u16(), &text)
    }
}

/// Turns an admin API response into its `data` or its error.
pub fn unwrap_envelope(status: u16, text: &str) -> Result<Value, ErrorBody> {
    let parsed: Option<Value> = serde_json::from_str(text).ok();
    if let Some(body) = &parsed {
        if body.get("success") == Some(&Value::Bool(true)) {
            return Ok(body.get("data").cloned().unwrap_or(Value::Null));
        }
        if let Some(error) = body
            .get("error")
            .and_then(|e| serde_json::from_value::<ErrorBody>(e.clone()).ok())
        {
            return Err(error);
        }
    }
    let code = match status {
        400 | 413 => ErrorCode::BadRequest,
        401 => ErrorCode::Unauthorized,
        403 => ErrorCode::PermissionDenied,
        404 => ErrorCode::NotFound,
        409 => ErrorCode::InvalidState,
        429 => ErrorCode::RateLimited,
        _ => ErrorCode::Internal,
    };
    let snippet: String = text.chars().take(200).collect();
    Err(ErrorBody::new(
        code,
        format!("unexpected response (HTTP {status}): {snippet}"),
    ))
}

/// Percent-encodes one path segment (ids are plain, but never trust input to be).
fn path_segment(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
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
                    let client = AdminClient::from_args(&conn)?;
                    let meeting = client.create_meeting(&title, max_on_stage).await?;
                    Ok(json!({ "id": field(&meeting, "id")? }))
                }
                MeetingCommand::Delete { conn, meeting } => {
                    let client = AdminClient::from_args(&conn)?;
                    let deleted = client.delete_meeting(&meeting).await?;
                    Ok(json!({ "id": field(&deleted, "id")? }))
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
                    let client = AdminClient::from_args(&conn)?;
                    let added = client
                        .add_participant(&meeting, &name, &preset, user_id.as_deref())
                        .await?;
                    Ok(json!({
                        "user_id": field(&added, "id")?,
                        "token": field(&added, "token")?,
                        "link": field(&added, "link")?,
                    }))
                }
                ParticipantCommand::Remove {
                    conn,
                    meeting,
                    user_id,
                } => {
                    let client = AdminClient::from_args(&conn)?;
                    let removed = client.remove_participant(&meeting, &user_id).await?;
                    Ok(json!({ "user_id": field(&removed, "id")? }))
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
            let client = AdminClient::from_args(&conn)?;
            client.create_preset(&preset).await
        }
        .await,
    )
}

fn field(data: &Value, key: &str) -> Result<Value, ErrorBody> {
    data.get(key).cloned().ok_or_else(|| {
        ErrorBody::new(
            ErrorCode::Internal,
            format!("the server's answer has no {key:?}: {data}"),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn envelope_success_and_errors() {
        assert_eq!(
            unwrap_envelope(201, r#"{"success":true,"data":{"id":"m1"}}"#),
            Ok(json!({"id":"m1"}))
        );
        assert_eq!(
            unwrap_envelope(
                404,
                r#"{"success":false,"error":{"code":"not_found","message":"no such meeting"}}"#
            ),
            Err(ErrorBody::new(ErrorCode::NotFound, "no such meeting"))
        );
        let e = unwrap_envelope(401, "nope").unwrap_err();
        assert_eq!(e.code, ErrorCode::Unauthorized);
        let e = unwrap_envelope(502, "<html>").unwrap_err();
        assert_eq!(e.code, ErrorCode::Internal);
    }

    #[test]
    fn path_segments_are_escaped() {
        assert_eq!(path_segment("abc-1_2.x~"), "abc-1_2.x~");
        assert_eq!(path_segment("a/b c"), "a%2Fb%20c");
    }

    #[test]
    fn a_missing_admin_key_is_unauthorized() {
        let conn = AdminConnection {
            server: "http://127.0.0.1:1".into(),
            admin_key: None,
            fingerprint: None,
        };
        assert_eq!(
            AdminClient::from_args(&conn).unwrap_err().code,
            ErrorCode::Unauthorized
        );
    }

    #[test]
    fn a_fingerprint_needs_https() {
        let fp = format!("sha256:{}", "00".repeat(32)).parse().ok();
        let e = AdminClient::with_fingerprint("http://127.0.0.1:1", "k", fp).unwrap_err();
        assert_eq!(e.code, ErrorCode::BadRequest);
        assert!(AdminClient::with_fingerprint("https://127.0.0.1:1", "k", fp).is_ok());
        assert!(AdminClient::with_fingerprint("ftp://h", "k", None).is_err());
    }

    #[tokio::test]
    async fn an_unreachable_server_is_a_clear_error() {
        // Port 1 on loopback: nothing listens there.
        let client = AdminClient::new("http://127.0.0.1:1", "k").unwrap();
        let e = client.create_meeting("t", None).await.unwrap_err();
        assert_eq!(e.code, ErrorCode::ConnectionLost);
    }
}
