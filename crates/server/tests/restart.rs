//! A restart on the same data dir keeps meetings, presets, participants, the admin key and
//! the token secret, so tokens issued before still connect.

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
    let key = srv.key.clone();

    // Someone is connected when the server goes down.
    let (mut host, _) = Peer::join(&srv, &host_token).await;
    let dir = srv.stop().await;
    let seen = host.until_closed().await;
    assert_eq!(
        seen.last(),
        Some(&json!({"type":"goodbye","reason":"shutdown"}))
    );

    let srv = Srv::start_in(dir, |_| {}).await;
    assert_eq!(srv.key, key, "the admin key is kept in the data dir");
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

#[tokio::test]
async fn a_configured_admin_key_is_used_and_not_reported_as_generated() {
    let key = "operator-key-with-at-least-32-characters";
    let srv = Srv::start_with(|c| c.admin_key = Some(key.into())).await;
    assert_eq!(srv.key, key);
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
        let meta = std::fs::metadata(srv.dir.path().join(file)).expect(file);
        assert_eq!(meta.permissions().mode() & 0o777, 0o600, "{file}");
    }
}
