//! [`AdminClient`]: the admin REST API (`docs/API.md`) over HTTP, typed with the wire
//! types of [`onstage_proto::rest`]. The `onstage` admin commands, the desktop app's
//! embedded server and the tests all go through it, so there is one place that knows how
//! the API is reached, trusted and answered.
//!
//! Every call answers its data or an [`ErrorBody`]: the server's own error when it sent
//! one, else one of the client's codes (`connection_lost` when the server cannot be
//! reached, `untrusted_server` when its certificate is refused, and for an answer that is
//! not the API's, the code its HTTP status stands for).

use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::Serialize;

use onstage_proto::rest::{
    AddParticipant, AddedParticipant, CreateInvite, CreateMeeting, Envelope, Invite, Meeting,
    Participant,
};
use onstage_proto::{ErrorBody, ErrorCode, Fingerprint, Preset, RoomSnapshot};

/// How long a call may take when the caller does not say ([`AdminClient::with_timeout`]).
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

/// A client of the admin REST API of one server, holding its admin key. Cheap to clone
/// (the connection pool is shared).
#[derive(Debug, Clone)]
pub struct AdminClient {
    http: reqwest::Client,
    base: String,
    key: String,
    timeout: Duration,
}

impl AdminClient {
    /// `base` is the server's URL (`http(s)://host:port`); `key` the admin key. An `https`
    /// server must have a certificate the system trusts.
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
        let builder = reqwest::Client::builder();
        let builder = match (url.scheme(), pin) {
            ("https", pin) => {
                let tls = crate::tls::client_config(pin)
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
            timeout: DEFAULT_TIMEOUT,
        })
    }

    /// The same client with calls bounded by `timeout` instead of [`DEFAULT_TIMEOUT`]
    /// (the desktop app, waiting on its own server, gives up sooner).
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// The server's URL, without a trailing `/`.
    pub fn base(&self) -> &str {
        &self.base
    }

    /// `POST /v1/meetings`.
    pub async fn create_meeting(&self, meeting: &CreateMeeting) -> Result<Meeting, ErrorBody> {
        self.send(reqwest::Method::POST, "/v1/meetings", Some(meeting))
            .await
    }

    /// `GET /v1/meetings`.
    pub async fn list_meetings(&self) -> Result<Vec<Meeting>, ErrorBody> {
        self.get("/v1/meetings").await
    }

    /// `GET /v1/meetings/{id}`.
    pub async fn get_meeting(&self, meeting: &str) -> Result<Meeting, ErrorBody> {
        self.get(&meeting_path(meeting)).await
    }

    /// Does the server (still) have this meeting? `GET /v1/meetings/{id}`, with
    /// `not_found` as `false`.
    pub async fn meeting_exists(&self, meeting: &str) -> Result<bool, ErrorBody> {
        match self.get_meeting(meeting).await {
            Ok(_) => Ok(true),
            Err(e) if e.code == ErrorCode::NotFound => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// `DELETE /v1/meetings/{id}`; answers the deleted meeting.
    pub async fn delete_meeting(&self, meeting: &str) -> Result<Meeting, ErrorBody> {
        self.delete(&meeting_path(meeting)).await
    }

    /// `POST /v1/meetings/{id}/participants`: the participant with its token and link.
    pub async fn add_participant(
        &self,
        meeting: &str,
        participant: &AddParticipant,
    ) -> Result<AddedParticipant, ErrorBody> {
        let path = format!("{}/participants", meeting_path(meeting));
        self.send(reqwest::Method::POST, &path, Some(participant))
            .await
    }

    /// `GET /v1/meetings/{id}/participants` (no tokens).
    pub async fn list_participants(&self, meeting: &str) -> Result<Vec<Participant>, ErrorBody> {
        self.get(&format!("{}/participants", meeting_path(meeting)))
            .await
    }

    /// `DELETE /v1/meetings/{id}/participants/{user_id}`; answers the removed participant.
    pub async fn remove_participant(
        &self,
        meeting: &str,
        user_id: &str,
    ) -> Result<Participant, ErrorBody> {
        let path = format!(
            "{}/participants/{}",
            meeting_path(meeting),
            path_segment(user_id)
        );
        self.delete(&path).await
    }

    /// `POST /v1/meetings/{id}/invites`: a role link for `preset_name`, with its token.
    pub async fn create_invite(
        &self,
        meeting: &str,
        preset_name: &str,
    ) -> Result<Invite, ErrorBody> {
        let path = format!("{}/invites", meeting_path(meeting));
        self.send(
            reqwest::Method::POST,
            &path,
            Some(&CreateInvite::new(preset_name)),
        )
        .await
    }

    /// `GET /v1/meetings/{id}/invites`: every invite, revoked ones included (with
    /// `revoked_at`), oldest first.
    pub async fn list_invites(&self, meeting: &str) -> Result<Vec<Invite>, ErrorBody> {
        self.get(&format!("{}/invites", meeting_path(meeting)))
            .await
    }

    /// `DELETE /v1/meetings/{id}/invites/{invite_id}`: nobody new joins with it; answers
    /// the invite, revoked.
    pub async fn revoke_invite(&self, meeting: &str, invite_id: &str) -> Result<Invite, ErrorBody> {
        let path = format!(
            "{}/invites/{}",
            meeting_path(meeting),
            path_segment(invite_id)
        );
        self.delete(&path).await
    }

    /// `GET /v1/meetings/{id}/stage`: the live room (empty when nobody joined).
    pub async fn stage(&self, meeting: &str) -> Result<RoomSnapshot, ErrorBody> {
        self.get(&format!("{}/stage", meeting_path(meeting))).await
    }

    /// `GET /v1/presets`: the built-in presets and the custom ones.
    pub async fn list_presets(&self) -> Result<Vec<Preset>, ErrorBody> {
        self.get("/v1/presets").await
    }

    /// `GET /v1/presets/{name}`.
    pub async fn get_preset(&self, name: &str) -> Result<Preset, ErrorBody> {
        self.get(&preset_path(name)).await
    }

    /// `POST /v1/presets`; answers the preset as stored.
    pub async fn create_preset(&self, preset: &Preset) -> Result<Preset, ErrorBody> {
        self.send(reqwest::Method::POST, "/v1/presets", Some(preset))
            .await
    }

    /// `PUT /v1/presets/{name}` (the name is the preset's own).
    pub async fn update_preset(&self, preset: &Preset) -> Result<Preset, ErrorBody> {
        self.send(
            reqwest::Method::PUT,
            &preset_path(&preset.name),
            Some(preset),
        )
        .await
    }

    /// `DELETE /v1/presets/{name}`; answers the deleted preset.
    pub async fn delete_preset(&self, name: &str) -> Result<Preset, ErrorBody> {
        self.delete(&preset_path(name)).await
    }

    async fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T, ErrorBody> {
        self.send(reqwest::Method::GET, path, None::<&()>).await
    }

    async fn delete<T: DeserializeOwned>(&self, path: &str) -> Result<T, ErrorBody> {
        self.send(reqwest::Method::DELETE, path, None::<&()>).await
    }

    /// Sends a request (with a JSON body when given) and unwraps the envelope.
    async fn send<T: DeserializeOwned>(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<&impl Serialize>,
    ) -> Result<T, ErrorBody> {
        let url = format!("{}{path}", self.base);
        let mut request = self
            .http
            .request(method, &url)
            .bearer_auth(&self.key)
            .timeout(self.timeout);
        if let Some(body) = body {
            request = request.json(body);
        }
        let response =
            request
                .send()
                .await
                .map_err(|e| match crate::tls::certificate_problem(&e) {
                    Some(problem) => {
                        ErrorBody::new(ErrorCode::UntrustedServer, problem.to_string())
                    }
                    None => ErrorBody::new(
                        ErrorCode::ConnectionLost,
                        format!("cannot reach {}: {e}", self.base),
                    ),
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

/// Turns an admin API response into its `data` or its error. An answer that is not an
/// envelope of `T` (a proxy's error page, a server of another version) gets the code its
/// HTTP status stands for, and the start of the text to show what came instead.
pub fn unwrap_envelope<T: DeserializeOwned>(status: u16, text: &str) -> Result<T, ErrorBody> {
    if let Ok(envelope) = serde_json::from_str::<Envelope<T>>(text) {
        return envelope.into_result();
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

fn meeting_path(meeting: &str) -> String {
    format!("/v1/meetings/{}", path_segment(meeting))
}

fn preset_path(name: &str) -> String {
    format!("/v1/presets/{}", path_segment(name))
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

#[cfg(test)]
mod tests {
    use super::*;
    use onstage_proto::MeetingId;

    #[test]
    fn envelope_success_and_errors() {
        let meeting =
            r#"{"success":true,"data":{"id":"m1","title":"t","max_on_stage":4,"created_at":1}}"#;
        assert_eq!(
            unwrap_envelope::<Meeting>(201, meeting),
            Ok(Meeting {
                id: MeetingId::new("m1"),
                title: "t".into(),
                max_on_stage: 4,
                created_at: 1,
            })
        );
        assert_eq!(
            unwrap_envelope::<Meeting>(
                404,
                r#"{"success":false,"error":{"code":"not_found","message":"no such meeting"}}"#
            ),
            Err(ErrorBody::new(ErrorCode::NotFound, "no such meeting"))
        );
        let e = unwrap_envelope::<Meeting>(401, "nope").unwrap_err();
        assert_eq!(e.code, ErrorCode::Unauthorized);
        let e = unwrap_envelope::<Meeting>(502, "<html>").unwrap_err();
        assert_eq!(e.code, ErrorCode::Internal);
        // Data of another shape is not this API's answer.
        let e =
            unwrap_envelope::<Meeting>(200, r#"{"success":true,"data":{"id":"m1"}}"#).unwrap_err();
        assert_eq!(e.code, ErrorCode::Internal);
        assert!(e.message.contains("HTTP 200"), "{e}");
    }

    #[test]
    fn path_segments_are_escaped() {
        assert_eq!(path_segment("abc-1_2.x~"), "abc-1_2.x~");
        assert_eq!(path_segment("a/b c"), "a%2Fb%20c");
        assert_eq!(meeting_path("../x"), "/v1/meetings/..%2Fx");
    }

    #[test]
    fn a_fingerprint_needs_https() {
        let fp = format!("sha256:{}", "00".repeat(32)).parse().ok();
        let e = AdminClient::with_fingerprint("http://127.0.0.1:1", "k", fp).unwrap_err();
        assert_eq!(e.code, ErrorCode::BadRequest);
        assert!(AdminClient::with_fingerprint("https://127.0.0.1:1", "k", fp).is_ok());
        assert!(AdminClient::with_fingerprint("ftp://h", "k", None).is_err());
        assert!(AdminClient::new("not a url", "k").is_err());
    }

    #[tokio::test]
    async fn an_unreachable_server_is_a_clear_error() {
        // Port 1 on loopback: nothing listens there.
        let client = AdminClient::new("http://127.0.0.1:1", "k").unwrap();
        let e = client
            .create_meeting(&CreateMeeting::titled("t"))
            .await
            .unwrap_err();
        assert_eq!(e.code, ErrorCode::ConnectionLost);
    }
}
