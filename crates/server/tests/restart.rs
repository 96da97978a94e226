//! A restart on the same data dir keeps meetings, presets, participants, the admin key and
//! the token secret, so tokens issued before still connect; and it keeps revocations:
//! superseded tokens, removed participants and deleted meetings stay refused.

mod common;

use common::{Peer, Srv};
use serde_json::{json, Value};

async fn everything(srv: &Srv, meeting: &str) -> Value {
    json!({
        "meetings": srv.ok("GET", "/v1/meetings", None).await,
        "meeting": srv.ok("GET", &format!("/v1/meetings/{meeting}"), None).await,
        "participants": srv.ok("GET", &format!("/v1/meetings/{meeting}/participants"), None).await,
        "presets": srv.ok("GET", "/v1/presets", None).await,
    })
}

#[tokio::test]
async fn a_restart_keeps_meetings_presets_participants_and_tokens() {
    let srv = Srv::start().await;
    assert!(srv.server.as_ref().is_some_and(|s| s.admin_key_generated()));
    srv.ok(
        "POST",
        "/v1/presets",
        Some(json!({"name":"panelist","stage_access":"ALLOWED","can_produce_video":false})),
    )
    .await;
    let meeting = srv
        .ok(
            "POST",
            "/v1/meetings",
            Some(json!({"title":"Keep me","max_on_stage":2})),
        )
        .await["id"]
        .as_str()
        .expect("id")
        .to_owned();
    let (host_id, host_token) = srv.participant(&meeting, "Host", "host").await;
    let (pan_id, pan_token) = srv.participant(&meeting, "Pan", "panelist").await;
    let before = everything(&srv, &meeting).await;
    let key = srv.admin_key.clone();

    // Someone is connected when the server goes down.
    let (mut host, _) = Peer::join(&srv, &host_token).await;
    let dir = srv.stop().await;
    let seen = host.until_closed().await;
    assert_eq!(
        seen.last(),
        Some(&json!({"type":"goodbye","reason":"shutdown"}))
    );

    let srv = Srv::start_in(dir, |_| {}).await;
    assert_eq!(srv.admin_key, key, "the admin key is kept in the data dir");
    assert!(srv
        .server
        .as_ref()
        .is_some_and(|s| !s.admin_key_generated()));
    assert_eq!(everything(&srv, &meeting).await, before);

    // Old tokens still connect; the custom preset and max_on_stage still apply.
    let (mut pan, welcome) = Peer::join(&srv, &pan_token).await;
    assert_eq!(welcome["user_id"], json!(pan_id));
    assert_eq!(welcome["preset"]["name"], json!("panelist"));
    assert_eq!(welcome["preset"]["can_produce_video"], json!(false));
    assert_eq!(welcome["snapshot"]["max_on_stage"], json!(2));
    let (mut host, welcome) = Peer::join(&srv, &host_token).await;
    assert_eq!(welcome["user_id"], json!(host_id));
    let reply = pan.call(json!({"call":"stage.join"})).await;
    assert_eq!(
        reply["result"],
        json!({"stage_status":"ON_STAGE"}),
        "{reply}"
    );
    let reply = host.call(json!({"call":"stage.join"})).await;
    assert_eq!(
        reply["result"],
        json!({"stage_status":"ON_STAGE"}),
        "{reply}"
    );

    // New participants get working tokens from the same secret.
    let (_, late_token) = srv.participant(&meeting, "Late", "speaker").await;
    let (mut late, _) = Peer::join(&srv, &late_token).await;
    let reply = late.call(json!({"call":"stage.join"})).await;
    assert_eq!(reply["error"]["code"], json!("stage_full"), "{reply}");
}

/// The token is refused before the upgrade with 401 and `code`.
async fn refused(srv: &Srv, token: &str, code: &str) {
    let (status, body) = srv
        .raw("GET", &format!("/v1/signal?token={token}"), None, None)
        .await;
    common::assert_error(status, &body, 401, code);
}

async fn issue(srv: &Srv, meeting: &str, id: &str) -> String {
    srv.ok(
        "POST",
        &format!("/v1/meetings/{meeting}/participants"),
        Some(json!({"name":"N","preset_name":"viewer","custom_participant_id":id})),
    )
    .await["token"]
        .as_str()
        .expect("token")
        .to_owned()
}

#[tokio::test]
async fn a_restart_keeps_revoked_tokens_removed_participants_and_deleted_meetings_refused() {
    let srv = Srv::start().await;
    let meeting = srv.meeting("kept").await;
    let doomed = srv.meeting("doomed").await;
    let old = issue(&srv, &meeting, "ann").await;
    let new = issue(&srv, &meeting, "ann").await;
    let bob = issue(&srv, &meeting, "bob").await;
    let carl = issue(&srv, &doomed, "carl").await;
    srv.ok(
        "DELETE",
        &format!("/v1/meetings/{meeting}/participants/bob"),
        None,
    )
    .await;
    srv.ok("DELETE", &format!("/v1/meetings/{doomed}"), None)
        .await;
    let dir = srv.stop().await;

    let srv = Srv::start_in(dir, |_| {}).await;
    // The generation persisted: the superseded token stays revoked, the current one works.
    refused(&srv, &old, "token_revoked").await;
    let (_ann, welcome) = Peer::join(&srv, &new).await;
    assert_eq!(welcome["user_id"], json!("ann"));
    // The removed participant and the deleted meeting stay gone.
    refused(&srv, &bob, "unauthorized").await;
    refused(&srv, &carl, "unauthorized").await;
    let list = srv
        .ok("GET", &format!("/v1/meetings/{meeting}/participants"), None)
        .await;
    assert_eq!(list.as_array().map(Vec::len), Some(1), "{list}");
    let (status, body) = srv
        .admin("GET", &format!("/v1/meetings/{doomed}"), None)
        .await;
    common::assert_error(status, &body, 404, "not_found");
    let meetings = srv.ok("GET", "/v1/meetings", None).await;
    assert_eq!(meetings.as_array().map(Vec::len), Some(1), "{meetings}");
    // Issuing again after the restart still supersedes (the counter was kept too).
    let newer = issue(&srv, &meeting, "ann").await;
    refused(&srv, &new, "token_revoked").await;
    Peer::join(&srv, &newer).await;
}

#[tokio::test]
async fn a_data_dir_from_before_token_generations_keeps_its_participants_and_tokens() {
    let dir = tempfile::tempdir().expect("temp dir");
    // The schema as the first version made it (migration 1, `user_version` 1), with a
    // meeting and a participant, and that version's token secret.
    {
        let conn = rusqlite::Connection::open(dir.path().join("onstage.db")).expect("db");
        conn.execute_batch(
            "CREATE TABLE meetings (
                id TEXT PRIMARY KEY NOT NULL, title TEXT NOT NULL,
                max_on_stage INTEGER NOT NULL, created_at INTEGER NOT NULL) STRICT;
             CREATE TABLE presets (
                name TEXT PRIMARY KEY NOT NULL, stage_enabled INTEGER NOT NULL,
                stage_access TEXT NOT NULL, accept_stage_requests INTEGER NOT NULL,
                kick_participant INTEGER NOT NULL, can_produce_audio INTEGER NOT NULL,
                can_produce_video INTEGER NOT NULL, created_at INTEGER NOT NULL) STRICT;
             CREATE TABLE participants (
                meeting_id TEXT NOT NULL REFERENCES meetings(id) ON DELETE CASCADE,
                user_id TEXT NOT NULL, name TEXT NOT NULL, preset_name TEXT NOT NULL,
                custom_participant_id TEXT, created_at INTEGER NOT NULL,
                updated_at INTEGER NOT NULL, PRIMARY KEY (meeting_id, user_id)) STRICT;
             CREATE INDEX participants_by_preset ON participants(preset_name);
             INSERT INTO meetings VALUES ('m-old', 'Old', 4, 1);
             INSERT INTO participants VALUES ('m-old', 'ann', 'Ann', 'viewer', 'ann', 1, 1);
             PRAGMA user_version = 1;",
        )
        .expect("old schema");
    }
    std::fs::write(dir.path().join("jwt_secret"), "old-secret").expect("secret");
    let srv = Srv::start_in(dir, |_| {}).await;
    // A token as that version minted them: no generation claim.
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs();
    let legacy = jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &json!({"sub":"ann","meeting_id":"m-old","iat":now,"exp":now + 600}),
        &jsonwebtoken::EncodingKey::from_secret(b"old-secret"),
    )
    .expect("sign");
    let (_ann, welcome) = Peer::join(&srv, &legacy).await;
    assert_eq!(welcome["user_id"], json!("ann"));
    assert_eq!(welcome["snapshot"]["max_on_stage"], json!(4));
    // Issuing Ann again revokes it like any other token.
    issue(&srv, "m-old", "ann").await;
    refused(&srv, &legacy, "token_revoked").await;
}

#[tokio::test]
async fn a_configured_admin_key_is_used_and_not_reported_as_generated() {
    let key = "operator-key-with-at-least-32-characters";
    let srv = Srv::start_with(|c| c.admin_key = Some(key.into())).await;
    assert_eq!(srv.admin_key, key);
    assert!(srv
        .server
        .as_ref()
        .is_some_and(|s| !s.admin_key_generated()));
    srv.ok("GET", "/v1/meetings", None).await;
}

#[tokio::test]
async fn a_short_configured_admin_key_is_refused_before_anything_is_written() {
    let dir = tempfile::tempdir().expect("temp dir");
    let data = dir.path().join("data");
    let mut config =
        onstage_server::ServerConfig::new("127.0.0.1:0".parse().expect("addr"), data.clone());
    config.admin_key = Some("short-key".into());
    let err = onstage_server::start(config)
        .await
        .expect_err("a guessable admin key is refused");
    assert!(err.to_string().contains("at least 32 characters"), "{err}");
    assert!(!data.exists(), "nothing was written");
}

#[cfg(unix)]
#[tokio::test]
async fn the_secret_files_are_private() {
    use std::os::unix::fs::PermissionsExt;
    let srv = Srv::start().await;
    for file in ["admin_key", "jwt_secret"] {
        let meta = std::fs::metadata(srv.data.path().join(file)).expect(file);
        assert_eq!(meta.permissions().mode() & 0o777, 0o600, "{file}");
    }
}
