//! # onstage-testkit — a real server for tests
//!
//! What every test that needs a server starts from (the server's own integration tests,
//! the end-to-end tests of `tests/`, the probe's): [`TestServer`] runs `onstage_server`
//! in-process on `127.0.0.1:0` in a temporary data dir, makes meetings and participants
//! with the SDK's typed [`AdminClient`], and sends raw requests for the tests that assert
//! how bad input, wrong keys and odd methods are answered. Every wait is bounded by
//! [`WAIT`].
//!
//! A dev-only crate (`publish = false`): `onstage-server` has it as a dev-dependency while
//! it depends on `onstage-server`, a cycle cargo allows because only the server's
//! integration tests (which link the same library) use it.
//!
//! Layout: this file — [`TestServer`], [`within`] and [`WAIT`], [`assert_error`]; [`sound`]:
//! a private sound server (PulseAudio with null sinks) for tests of real audio devices.

pub mod sound;

use std::future::Future;
use std::net::{IpAddr, Ipv4Addr};
use std::path::Path;
use std::time::Duration;

use onstage_client::{AdminClient, Fingerprint, Meeting};
use onstage_proto::rest::{AddParticipant, CreateMeeting};
use onstage_proto::Preset;
use onstage_server::{RunningServer, ServerConfig};
use serde_json::{json, Value};

/// The longest any single expected thing may take.
pub const WAIT: Duration = Duration::from_secs(10);

/// Awaits `fut`, failing the test with `what` if it takes longer than [`WAIT`].
pub async fn within<T>(what: &str, fut: impl Future<Output = T>) -> T {
    tokio::time::timeout(WAIT, fut)
        .await
        .unwrap_or_else(|_| panic!("timed out waiting for {what}"))
}

/// A server running in this process, its data dir and the clients to call it with. A
/// self-signed TLS server (`config.tls`) is called over https, pinned to its certificate.
pub struct TestServer {
    /// The running server; a test may take it to shut it down its own way.
    pub server: Option<RunningServer>,
    /// `http(s)://127.0.0.1:PORT`
    pub url: String,
    pub admin_key: String,
    /// The admin API with the right key.
    pub admin: AdminClient,
    pub data: tempfile::TempDir,
    /// What it was started with, to start it again ([`TestServer::restart`]).
    config: ServerConfig,
    http: reqwest::Client,
}

impl TestServer {
    /// A server with the default configuration.
    pub async fn start() -> Self {
        Self::start_with(|_| {}).await
    }

    /// A server with its configuration adjusted by `adjust`.
    pub async fn start_with(adjust: impl FnOnce(&mut ServerConfig)) -> Self {
        let data = tempfile::tempdir().expect("temp dir");
        Self::start_in(data, adjust).await
    }

    /// A server on an existing data dir (one a stopped server left, say).
    pub async fn start_in(data: tempfile::TempDir, adjust: impl FnOnce(&mut ServerConfig)) -> Self {
        let mut config = ServerConfig::new(
            "127.0.0.1:0".parse().expect("addr"),
            data.path().to_path_buf(),
        );
        adjust(&mut config);
        Self::launch(data, config).await
    }

    async fn launch(data: tempfile::TempDir, config: ServerConfig) -> Self {
        let server = onstage_server::start(config.clone())
            .await
            .expect("server starts");
        let url = server.http_url();
        let admin_key = server.admin_key().to_owned();
        let pin = server.fingerprint();
        let admin = AdminClient::with_fingerprint(&url, &admin_key, pin)
            .expect("admin client")
            .with_timeout(WAIT);
        Self {
            http: http_client(pin, None),
            url,
            admin_key,
            admin,
            server: Some(server),
            data,
            config,
        }
    }

    /// Shuts the server down gracefully and gives back its data dir.
    pub async fn stop(mut self) -> tempfile::TempDir {
        if let Some(server) = self.server.take() {
            within("shutdown", server.shutdown()).await;
        }
        self.data
    }

    /// Stops the server gracefully and starts it again with the same configuration on
    /// the same data dir (on a new port when it had asked for any).
    pub async fn restart(self) -> Self {
        let config = self.config.clone();
        let data = self.stop().await;
        Self::launch(data, config).await
    }

    /// The fingerprint of the server's self-signed certificate, if it has one.
    pub fn fingerprint(&self) -> Option<Fingerprint> {
        self.server.as_ref().and_then(RunningServer::fingerprint)
    }

    pub fn data_dir(&self) -> &Path {
        self.data.path()
    }

    /// `ws(s)://.../v1/signal?token=..`
    pub fn ws_url(&self, token: &str) -> String {
        format!(
            "{}/v1/signal?token={token}",
            self.url.replacen("http", "ws", 1)
        )
    }

    /// A request with any body text and any (or no) bearer key: (status, JSON body). A body
    /// that is not JSON comes back as a JSON string.
    pub async fn raw(
        &self,
        method: &str,
        path: &str,
        body: Option<String>,
        key: Option<&str>,
    ) -> (u16, Value) {
        self.raw_with(&self.http, method, path, body, key).await
    }

    /// [`Self::raw`] from another loopback address (`127.0.0.N`): another source, as the
    /// server's per-source limits see it.
    pub async fn raw_from(
        &self,
        source: Ipv4Addr,
        method: &str,
        path: &str,
        body: Option<String>,
        key: Option<&str>,
    ) -> (u16, Value) {
        let client = http_client(self.fingerprint(), Some(IpAddr::V4(source)));
        self.raw_with(&client, method, path, body, key).await
    }

    async fn raw_with(
        &self,
        client: &reqwest::Client,
        method: &str,
        path: &str,
        body: Option<String>,
        key: Option<&str>,
    ) -> (u16, Value) {
        let method = reqwest::Method::from_bytes(method.as_bytes()).expect("method");
        let mut req = client.request(method, format!("{}{path}", self.url));
        if let Some(key) = key {
            req = req.bearer_auth(key);
        }
        if let Some(body) = body {
            req = req.header("content-type", "application/json").body(body);
        }
        let resp = within("http response", req.send()).await.expect("http");
        let status = resp.status().as_u16();
        let text = within("http body", resp.text()).await.expect("body");
        let json = serde_json::from_str(&text).unwrap_or(Value::String(text));
        (status, json)
    }

    /// A raw admin request with the right key: (status, JSON body).
    pub async fn admin(&self, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
        self.raw(
            method,
            path,
            body.map(|b| b.to_string()),
            Some(&self.admin_key),
        )
        .await
    }

    /// `data` of a successful raw admin call; fails the test on anything else.
    pub async fn ok(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        let (status, body) = self.admin(method, path, body).await;
        assert!(
            (200..300).contains(&status),
            "{method} {path}: {status} {body}"
        );
        assert_eq!(body["success"], json!(true), "{body}");
        body["data"].clone()
    }

    /// Creates a meeting; returns its id.
    pub async fn meeting(&self, title: &str) -> String {
        let meeting = self
            .admin
            .create_meeting(&CreateMeeting::titled(title))
            .await
            .unwrap_or_else(|e| panic!("create meeting {title:?}: {e}"));
        meeting.id.to_string()
    }

    /// Adds a participant; returns (user id, token).
    pub async fn participant(&self, meeting: &str, name: &str, preset: &str) -> (String, String) {
        let added = self
            .admin
            .add_participant(meeting, &AddParticipant::new(name, preset))
            .await
            .unwrap_or_else(|e| panic!("add participant {name:?}: {e}"));
        (added.id.to_string(), added.token)
    }

    /// Creates a custom preset given as JSON, the form the API documents (absent fields
    /// take their defaults).
    pub async fn preset(&self, preset: Value) {
        let preset: Preset = serde_json::from_value(preset).expect("a preset");
        self.admin
            .create_preset(&preset)
            .await
            .unwrap_or_else(|e| panic!("create preset {:?}: {e}", preset.name));
    }

    /// Adds a participant and joins it through the SDK.
    pub async fn join(&self, meeting: &str, name: &str, preset: &str) -> Meeting {
        let (_, token) = self.participant(meeting, name, preset).await;
        within("join", Meeting::join(&self.url, &token))
            .await
            .expect("joins the meeting")
    }

    /// The value of an unlabelled metric from `/metrics`.
    pub async fn metric(&self, name: &str) -> f64 {
        let (status, body) = self.raw("GET", "/metrics", None, None).await;
        assert_eq!(status, 200);
        let text = body.as_str().expect("metrics are text");
        text.lines()
            .find_map(|line| {
                let (key, value) = line.split_once(' ')?;
                (key == name).then(|| value.trim().parse::<f64>().ok())?
            })
            .unwrap_or_else(|| panic!("no metric {name} in\n{text}"))
    }

    /// Polls `/metrics` until `name` has `value` (bounded by [`WAIT`]).
    pub async fn await_metric(&self, name: &str, value: f64) {
        within(&format!("{name} == {value}"), async {
            while self.metric(name).await != value {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
        .await
    }
}

/// The raw requests' client: plain http, or https pinned to the server's certificate; from
/// `local` when given.
fn http_client(pin: Option<Fingerprint>, local: Option<IpAddr>) -> reqwest::Client {
    let mut builder = reqwest::Client::builder().local_address(local);
    if pin.is_some() {
        let tls = onstage_client::tls::client_config(pin).expect("tls config");
        builder = builder.tls_backend_preconfigured(tls).https_only(true);
    }
    builder.build().expect("http client")
}

/// `{"success":false,"error":{"code":code,...}}` with a message, and HTTP `want_status`.
pub fn assert_error(status: u16, body: &Value, want_status: u16, code: &str) {
    assert_eq!(status, want_status, "{body}");
    assert_eq!(body["success"], json!(false), "{body}");
    assert_eq!(body["error"]["code"], json!(code), "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty()),
        "{body}"
    );
}
