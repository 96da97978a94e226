//! https and wss end to end: a server with a self-signed certificate on 127.0.0.1:0, SDK
//! clients that pin it by fingerprint, the invite links the admin API hands out, and
//! clients that get the certificate wrong or do not speak TLS at all. Every wait is
//! bounded; no fixed sleeps.

use std::time::Duration;

use onstage_client::link::{Fingerprint, InviteLink};
use onstage_client::proto::rest::{AddParticipant, CreateMeeting};
use onstage_client::{AdminClient, CertificateError, ClientError, ErrorCode, JoinOptions, Meeting};
use onstage_e2e::{within, Client, WAIT};
use onstage_server::{RunningServer, ServerConfig, TlsConfig};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// A self-signed TLS server, the typed admin client pinned to it and an https client for
/// everything else.
struct TlsServer {
    server: Option<RunningServer>,
    url: String,
    fingerprint: Fingerprint,
    admin_key: String,
    admin: AdminClient,
    http: reqwest::Client,
    _data: tempfile::TempDir,
}

/// How long a test server lets a handshake stall (short, so the test sees it closed).
const HANDSHAKE_TIMEOUT: Duration = Duration::from_millis(500);

impl TlsServer {
    async fn start() -> Self {
        Self::start_with(|_| {}).await
    }

    async fn start_with(adjust: impl FnOnce(&mut ServerConfig)) -> Self {
        let data = tempfile::tempdir().expect("temp dir");
        Self::start_in(data, "127.0.0.1:0", adjust).await
    }

    async fn start_in(
        data: tempfile::TempDir,
        listen: &str,
        adjust: impl FnOnce(&mut ServerConfig),
    ) -> Self {
        let mut config =
            ServerConfig::new(listen.parse().expect("addr"), data.path().to_path_buf());
        config.tls = Some(TlsConfig::SelfSigned);
        config.tls_handshake_timeout = HANDSHAKE_TIMEOUT;
        adjust(&mut config);
        let server = onstage_server::start(config).await.expect("server starts");
        let fingerprint = server.fingerprint().expect("self-signed: a fingerprint");
        let tls = onstage_client::tls::client_config(Some(fingerprint)).expect("tls config");
        let http = reqwest::Client::builder()
            .tls_backend_preconfigured(tls)
            .https_only(true)
            .timeout(WAIT)
            .build()
            .expect("https client");
        let url = server.http_url();
        let admin = AdminClient::with_fingerprint(&url, server.admin_key(), Some(fingerprint))
            .expect("pinned admin client")
            .with_timeout(WAIT);
        Self {
            url,
            fingerprint,
            admin_key: server.admin_key().to_owned(),
            admin,
            server: Some(server),
            http,
            _data: data,
        }
    }

    // The admin client's own timeout (WAIT) bounds its calls.
    async fn meeting(&self) -> String {
        let meeting = self
            .admin
            .create_meeting(&CreateMeeting::titled("tls"))
            .await
            .expect("admin request over https");
        meeting.id.to_string()
    }

    /// Adds a participant; returns its data (`id`, `token`, `link`, ...) as JSON.
    async fn add(&self, meeting: &str, name: &str, preset: &str) -> Value {
        let added = self
            .admin
            .add_participant(meeting, &AddParticipant::new(name, preset))
            .await
            .expect("admin request over https");
        serde_json::to_value(added).expect("JSON")
    }

    async fn healthz(&self) -> Value {
        let response = within(
            "healthz over https",
            self.http.get(format!("{}/healthz", self.url)).send(),
        )
        .await
        .expect("healthz answers over https");
        response.json().await.expect("JSON")
    }

    fn pinned(&self) -> JoinOptions {
        JoinOptions {
            fingerprint: Some(self.fingerprint),
            ..JoinOptions::default()
        }
    }

    async fn join(&self, token: &str) -> Client {
        let meeting = within("join", Meeting::join_with(&self.url, token, self.pinned()))
            .await
            .expect("joins over wss");
        Client::of(meeting, token)
    }
}

/// Some other certificate's fingerprint.
fn other_fingerprint(than: Fingerprint) -> Fingerprint {
    let mut bytes = *than.as_bytes();
    bytes[0] ^= 0xff;
    Fingerprint::from_sha256(bytes)
}

#[tokio::test]
async fn pinned_clients_join_over_wss_and_run_the_stage() {
    let srv = TlsServer::start().await;
    assert!(srv.url.starts_with("https://127.0.0.1:"), "{}", srv.url);
    let meeting = srv.meeting().await;
    let host = srv.add(&meeting, "Hana", "host").await;
    let viewer = srv.add(&meeting, "Vera", "viewer").await;
    let mut host = srv.join(host["token"].as_str().expect("token")).await;
    let mut viewer = srv.join(viewer["token"].as_str().expect("token")).await;

    viewer
        .meeting
        .stage()
        .request_access()
        .await
        .expect("request");
    host.expect_event("newStageRequest", json!({})).await;
    host.meeting
        .stage()
        .grant_access(&[viewer.user_id()])
        .await
        .expect("grant");
    viewer
        .expect_event(
            "stageStatusUpdate",
            json!({"status": "ACCEPTED_TO_JOIN_STAGE"}),
        )
        .await;
    viewer.meeting.stage().join().await.expect("join the stage");
    host.expect_event(
        "participantStageStatus",
        json!({"user_id": viewer.id(), "status": "ON_STAGE"}),
    )
    .await;
    viewer.meeting.leave().await.expect("leave");
    host.expect_event("participantLeft", json!({"user_id": viewer.id()}))
        .await;
}

#[tokio::test]
async fn a_wrong_fingerprint_is_refused_with_the_mismatch() {
    let srv = TlsServer::start().await;
    let meeting = srv.meeting().await;
    let added = srv.add(&meeting, "Vera", "viewer").await;
    let token = added["token"].as_str().expect("token");

    let wrong = other_fingerprint(srv.fingerprint);
    let options = JoinOptions {
        fingerprint: Some(wrong),
        ..JoinOptions::default()
    };
    // Refused at once (no retrying until a timeout), naming both fingerprints.
    let error = within("the refusal", Meeting::join_with(&srv.url, token, options))
        .await
        .expect_err("a wrong fingerprint is refused");
    assert_eq!(
        error,
        ClientError::Certificate(CertificateError::Mismatch {
            expected: wrong,
            got: srv.fingerprint,
        })
    );
    assert_eq!(error.code(), ErrorCode::UntrustedServer);
    let text = error.to_string();
    assert!(text.contains(&wrong.to_string()) && text.contains(&srv.fingerprint.to_string()));

    // Without any pin the self-signed certificate is untrusted, also a typed refusal.
    let error = within("the refusal", Meeting::join(&srv.url, token))
        .await
        .expect_err("an unpinned self-signed server is refused");
    assert!(
        matches!(
            error,
            ClientError::Certificate(CertificateError::Untrusted(_))
        ),
        "{error:?}"
    );

    // A pin with a plain http URL is refused before anything is sent.
    let plain = srv.url.replacen("https", "http", 1);
    let error = Meeting::join_with(&plain, token, srv.pinned())
        .await
        .expect_err("a pin needs https");
    // The link (server and pin) cannot be used as it is.
    assert_eq!(error.code(), ErrorCode::BadLink, "{error}");

    // The admin API over https with the wrong pin fails the same way.
    let tls = onstage_client::tls::client_config(Some(wrong)).expect("tls config");
    let http = reqwest::Client::builder()
        .tls_backend_preconfigured(tls)
        .build()
        .expect("client");
    let error = within(
        "admin refusal",
        http.get(format!("{}/healthz", srv.url)).send(),
    )
    .await
    .expect_err("the wrong pin refuses the admin API too");
    assert!(
        matches!(
            onstage_client::tls::certificate_problem(&error),
            Some(CertificateError::Mismatch { .. })
        ),
        "{error:?}"
    );

    // The right pin still joins.
    let mut vera = srv.join(token).await;
    assert_eq!(vera.meeting.user_id().as_str(), added["id"]);
    vera.meeting.leave().await.expect("leave");
    vera.expect_event("connectionStateUpdate", json!({"state": "disconnected"}))
        .await;
}

#[tokio::test]
async fn plain_http_garbage_and_stalled_handshakes_cost_only_their_connection() {
    let srv = TlsServer::start().await;
    let addr = srv.url.trim_start_matches("https://").to_owned();

    // A stalled client: connects and sends half a ClientHello, then nothing.
    let mut stalled = TcpStream::connect(&addr).await.expect("tcp");
    stalled
        .write_all(&[0x16, 0x03, 0x01, 0x02, 0x00, 0x01])
        .await
        .expect("write");

    // Plain HTTP to the TLS port fails for that client.
    let plain = reqwest::Client::builder()
        .tls_certs_only([])
        .timeout(WAIT)
        .build()
        .expect("client");
    let plain_url = format!("http://{addr}/healthz");
    let answer = within("plain http", plain.get(&plain_url).send()).await;
    assert!(answer.is_err(), "plain http must not be served: {answer:?}");

    // Random bytes: the server closes the connection.
    let mut garbage = TcpStream::connect(&addr).await.expect("tcp");
    garbage
        .write_all(b"\x00\xffnot tls at all\r\n\r\n")
        .await
        .expect("write");
    let mut buf = [0u8; 256];
    loop {
        match within(
            "the server to close the garbage connection",
            garbage.read(&mut buf),
        )
        .await
        {
            Ok(0) | Err(_) => break,
            Ok(_) => continue, // a TLS alert, then the close
        }
    }

    // Meanwhile the server answers over https, the stalled client still waiting.
    assert_eq!(srv.healthz().await, json!({"status": "ok"}));

    // The stalled handshake is cut at the handshake timeout.
    let started = tokio::time::Instant::now();
    loop {
        match within("the stalled handshake to be cut", stalled.read(&mut buf)).await {
            Ok(0) | Err(_) => break,
            Ok(_) => continue,
        }
    }
    assert!(started.elapsed() < WAIT);

    // And the server still serves wss.
    let meeting = srv.meeting().await;
    let added = srv.add(&meeting, "Hana", "host").await;
    let hana = srv.join(added["token"].as_str().expect("token")).await;
    hana.meeting.leave().await.expect("leave");
    assert_eq!(srv.healthz().await, json!({"status": "ok"}));
}

#[tokio::test]
async fn the_participant_link_parses_and_joins() {
    let srv = TlsServer::start().await;
    let meeting = srv.meeting().await;
    let added = srv.add(&meeting, "Lena", "speaker").await;
    let text = added["link"].as_str().expect("a link in the response");
    let link = InviteLink::parse(text).expect("the link parses");
    assert_eq!(link.token, added["token"]);
    assert_eq!(link.fingerprint, Some(srv.fingerprint));
    assert_eq!(link.server.as_str().trim_end_matches('/'), srv.url);

    let joined = within(
        "join from the link",
        Meeting::join_invite(&link, JoinOptions::default()),
    )
    .await
    .expect("joins with the link");
    assert_eq!(joined.user_id().as_str(), added["id"]);
    joined
        .stage()
        .join()
        .await
        .expect("a speaker goes on stage");
    joined.leave().await.expect("leave");

    // A configured public URL is what links name.
    let public = TlsServer::start_with(|c| {
        c.public_url = Some("https://meet.example.test:8443".parse().expect("url"));
    })
    .await;
    let meeting = public.meeting().await;
    let added = public.add(&meeting, "Lena", "viewer").await;
    let link = InviteLink::parse(added["link"].as_str().expect("link")).expect("parses");
    assert_eq!(link.server.as_str(), "https://meet.example.test:8443/");
    assert_eq!(link.fingerprint, Some(public.fingerprint));
}

#[tokio::test]
async fn a_server_back_with_another_certificate_ends_the_meeting_instead_of_retrying() {
    let first = TlsServer::start().await;
    let meeting = first.meeting().await;
    let added = first.add(&meeting, "Vera", "viewer").await;
    let mut vera = first.join(added["token"].as_str().expect("token")).await;
    let addr = first.url.trim_start_matches("https://").to_owned();
    let vera_pin = first.fingerprint;

    // The same address and data (meetings, token secret), but the certificate files gone:
    // the server comes back with a new self-signed certificate. Only the certificate stands
    // between the client and its resumed session; its grace period is the default 30 s, and
    // it must give up long before that.
    let TlsServer { server, _data, .. } = first;
    server.expect("running").shutdown().await;
    for file in [
        onstage_server::tls::SELF_SIGNED_CERT_FILE,
        onstage_server::tls::SELF_SIGNED_KEY_FILE,
    ] {
        std::fs::remove_file(_data.path().join(file)).expect("remove the certificate");
    }
    let second = TlsServer::start_in(_data, &addr, |_| {}).await;
    assert_eq!(second.url.trim_start_matches("https://"), addr);
    assert_ne!(second.fingerprint, vera_pin);

    vera.expect_event("connectionStateUpdate", json!({"state": "reconnecting"}))
        .await;
    vera.expect_event("connectionStateUpdate", json!({"state": "disconnected"}))
        .await;
    let error = vera
        .meeting
        .stage()
        .request_access()
        .await
        .expect_err("closed");
    assert_eq!(error, ClientError::Closed);
    drop(second);
}

#[tokio::test]
async fn body_limits_metrics_and_shutdown_work_over_https() {
    let mut srv = TlsServer::start().await;
    let big = "x".repeat(100 * 1024);
    let response = within(
        "an oversized body",
        srv.http
            .post(format!("{}/v1/meetings", srv.url))
            .bearer_auth(&srv.admin_key)
            .header("content-type", "application/json")
            .body(format!(r#"{{"title":"{big}"}}"#))
            .send(),
    )
    .await
    .expect("answered");
    assert_eq!(response.status(), 413);

    let metrics = within(
        "metrics",
        srv.http.get(format!("{}/metrics", srv.url)).send(),
    )
    .await
    .expect("metrics over https")
    .text()
    .await
    .expect("text");
    assert!(metrics.contains("status=\"413\""), "{metrics}");

    // A graceful shutdown tells a wss participant and frees the port.
    let meeting = srv.meeting().await;
    let added = srv.add(&meeting, "Hana", "host").await;
    let mut hana = srv.join(added["token"].as_str().expect("token")).await;
    let addr = srv.url.trim_start_matches("https://").to_owned();
    within("shutdown", srv.server.take().expect("running").shutdown()).await;
    hana.expect_event("connectionStateUpdate", json!({"state": "reconnecting"}))
        .await;
    let rebound = tokio::net::TcpListener::bind(&addr).await;
    assert!(
        rebound.is_ok(),
        "the port is free after shutdown: {rebound:?}"
    );
}
