//! A real server on 127.0.0.1:0 (SFU included) in a temporary data dir, participants made
//! through the REST API and joined with the SDK. Every wait is bounded by [`WAIT`].

#![allow(dead_code)]

use std::future::Future;
use std::time::Duration;

use onstage_client::Meeting;
use onstage_server::{RunningServer, ServerConfig};
use serde_json::{json, Value};

pub const WAIT: Duration = Duration::from_secs(15);

/// Awaits `fut`, failing the test with `what` if it takes longer than [`WAIT`].
pub async fn within<T>(what: &str, fut: impl Future<Output = T>) -> T {
    tokio::time::timeout(WAIT, fut)
        .await
        .unwrap_or_else(|_| panic!("timed out waiting for {what}"))
}

/// Polls `check` every 10 ms until it holds (bounded by [`WAIT`]).
pub async fn until(what: &str, mut check: impl FnMut() -> bool) {
    within(what, async {
        while !check() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
}

pub struct Srv {
    server: Option<RunningServer>,
    pub url: String,
    key: String,
    _dir: tempfile::TempDir,
    http: reqwest::Client,
}

impl Srv {
    pub async fn start() -> Srv {
        let dir = tempfile::tempdir().expect("temp dir");
        let config = ServerConfig::new(
            "127.0.0.1:0".parse().expect("addr"),
            dir.path().to_path_buf(),
        );
        let server = onstage_server::start(config).await.expect("server starts");
        Srv {
            url: server.http_url(),
            key: server.admin_key().to_owned(),
            server: Some(server),
            _dir: dir,
            http: reqwest::Client::new(),
        }
    }

    pub async fn stop(mut self) {
        if let Some(server) = self.server.take() {
            within("shutdown", server.shutdown()).await;
        }
    }

    async fn post(&self, path: &str, body: Value) -> Value {
        let resp = within(
            "admin call",
            self.http
                .post(format!("{}{path}", self.url))
                .bearer_auth(&self.key)
                .json(&body)
                .send(),
        )
        .await
        .expect("http");
        let body: Value = within("admin body", resp.json()).await.expect("json");
        assert_eq!(body["success"], json!(true), "{path}: {body}");
        body["data"].clone()
    }

    pub async fn meeting(&self) -> String {
        let data = self.post("/v1/meetings", json!({ "title": "probe" })).await;
        data["id"].as_str().expect("meeting id").to_owned()
    }

    /// Adds a participant with `preset` and joins it with the SDK.
    pub async fn join(&self, meeting: &str, name: &str, preset: &str) -> Meeting {
        let data = self
            .post(
                &format!("/v1/meetings/{meeting}/participants"),
                json!({ "name": name, "preset_name": preset }),
            )
            .await;
        let token = data["token"].as_str().expect("token");
        within("join", Meeting::join(&self.url, token))
            .await
            .expect("joins")
    }

    /// The value of an unlabelled metric from `/metrics`.
    pub async fn metric(&self, name: &str) -> f64 {
        let resp = within(
            "metrics",
            self.http.get(format!("{}/metrics", self.url)).send(),
        )
        .await
        .expect("http");
        let text = within("metrics body", resp.text()).await.expect("text");
        text.lines()
            .find_map(|line| {
                let (key, value) = line.split_once(' ')?;
                (key == name).then(|| value.trim().parse::<f64>().ok())?
            })
            .unwrap_or_else(|| panic!("no metric {name}"))
    }
}
