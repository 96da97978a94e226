//! Shared helpers: a real server on 127.0.0.1:0 in a temporary data dir, admin calls over
//! real HTTP and raw WebSocket peers. Every wait is bounded by [`WAIT`].

#![allow(dead_code)]

use std::future::Future;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use onstage_server::{RunningServer, ServerConfig};
use serde_json::{json, Value};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

/// The longest any single expected thing may take.
pub const WAIT: Duration = Duration::from_secs(10);

/// Awaits `fut`, failing the test with `what` if it takes longer than [`WAIT`].
pub async fn within<T>(what: &str, fut: impl Future<Output = T>) -> T {
    tokio::time::timeout(WAIT, fut)
        .await
        .unwrap_or_else(|_| panic!("timed out waiting for {what}"))
}

pub struct Srv {
    pub server: Option<RunningServer>,
    pub url: String,
    pub key: String,
    pub dir: tempfile::TempDir,
    http: reqwest::Client,
}

impl Srv {
    pub async fn start() -> Srv {
        Self::start_with(|_| {}).await
    }

    pub async fn start_with(adjust: impl FnOnce(&mut ServerConfig)) -> Srv {
        let dir = tempfile::tempdir().expect("temp dir");
        Self::start_in(dir, adjust).await
    }

    pub async fn start_in(dir: tempfile::TempDir, adjust: impl FnOnce(&mut ServerConfig)) -> Srv {
        let mut config = ServerConfig::new(
            "127.0.0.1:0".parse().expect("addr"),
            dir.path().to_path_buf(),
        );
        adjust(&mut config);
        let server = onstage_server::start(config).await.expect("server starts");
        Srv {
            url: server.http_url(),
            key: server.admin_key().to_owned(),
            server: Some(server),
            dir,
            http: reqwest::Client::new(),
        }
    }

    /// Shuts the server down gracefully and gives back its data dir.
    pub async fn stop(mut self) -> tempfile::TempDir {
        if let Some(server) = self.server.take() {
            within("shutdown", server.shutdown()).await;
        }
        self.dir
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
        source: std::net::Ipv4Addr,
        method: &str,
        path: &str,
        body: Option<String>,
        key: Option<&str>,
    ) -> (u16, Value) {
        let client = reqwest::Client::builder()
            .local_address(std::net::IpAddr::V4(source))
            .build()
            .expect("http client");
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

    /// An admin request with the right key.
    pub async fn admin(&self, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
        self.raw(method, path, body.map(|b| b.to_string()), Some(&self.key))
            .await
    }

    /// `data` of a successful admin call; fails the test on anything else.
    pub async fn ok(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        let (status, body) = self.admin(method, path, body).await;
        assert!(
            (200..300).contains(&status),
            "{method} {path}: {status} {body}"
        );
        assert_eq!(body["success"], json!(true), "{body}");
        body["data"].clone()
    }

    pub async fn meeting(&self, title: &str) -> String {
        let data = self
            .ok("POST", "/v1/meetings", Some(json!({ "title": title })))
            .await;
        data["id"].as_str().expect("meeting id").to_owned()
    }

    /// Adds a participant; returns (user id, token).
    pub async fn participant(&self, meeting: &str, name: &str, preset: &str) -> (String, String) {
        let data = self
            .ok(
                "POST",
                &format!("/v1/meetings/{meeting}/participants"),
                Some(json!({ "name": name, "preset_name": preset })),
            )
            .await;
        (
            data["id"].as_str().expect("id").to_owned(),
            data["token"].as_str().expect("token").to_owned(),
        )
    }

    pub fn ws_url(&self, token: &str) -> String {
        format!(
            "{}/v1/signal?token={token}",
            self.url.replacen("http", "ws", 1)
        )
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

/// A raw signaling peer.
pub struct Peer {
    ws: WebSocketStream<MaybeTlsStream<TcpStream>>,
    next_id: u64,
}

impl Peer {
    /// Connects and returns the peer with its welcome.
    pub async fn join(srv: &Srv, token: &str) -> (Peer, Value) {
        let (ws, _) = within(
            "ws connect",
            tokio_tungstenite::connect_async(srv.ws_url(token)),
        )
        .await
        .expect("ws connects");
        let mut peer = Peer { ws, next_id: 1000 };
        let welcome = peer.next_json().await;
        assert_eq!(welcome["type"], json!("welcome"), "{welcome}");
        (peer, welcome)
    }

    pub async fn send_text(&mut self, text: impl Into<String>) {
        within("send", self.ws.send(Message::text(text.into())))
            .await
            .expect("send");
    }

    pub async fn send_binary(&mut self, bytes: Vec<u8>) {
        within("send", self.ws.send(Message::binary(bytes)))
            .await
            .expect("send");
    }

    /// The next text frame as JSON; panics if the connection ends first.
    pub async fn next_json(&mut self) -> Value {
        self.try_next_json()
            .await
            .expect("connection ended while a message was expected")
    }

    /// The next text frame as JSON, `None` once the connection has ended.
    pub async fn try_next_json(&mut self) -> Option<Value> {
        within("a server message", async {
            loop {
                match self.ws.next().await {
                    Some(Ok(Message::Text(t))) => {
                        return Some(serde_json::from_str(t.as_str()).expect("server sends JSON"))
                    }
                    Some(Ok(Message::Close(_))) | None | Some(Err(_)) => return None,
                    Some(Ok(_)) => {}
                }
            }
        })
        .await
    }

    /// The next message matching `pred`, skipping others.
    pub async fn next_matching(&mut self, pred: impl Fn(&Value) -> bool) -> Value {
        loop {
            let msg = self.next_json().await;
            if pred(&msg) {
                return msg;
            }
        }
    }

    /// Sends `request` (an `id` is added when missing) and returns its reply, skipping
    /// events.
    pub async fn call(&mut self, mut request: Value) -> Value {
        if request.get("id").is_none() {
            self.next_id += 1;
            request["id"] = json!(self.next_id);
        }
        let id = request["id"].clone();
        self.send_text(request.to_string()).await;
        self.next_matching(|m| m["type"] == "reply" && m["id"] == id)
            .await
    }

    /// Waits until the server closes the connection; returns the messages seen meanwhile.
    pub async fn until_closed(&mut self) -> Vec<Value> {
        let mut seen = Vec::new();
        while let Some(msg) = self.try_next_json().await {
            seen.push(msg);
        }
        seen
    }

    /// Starts a close from our side; the server's messages before its end can still be
    /// read (see [`Peer::until_closed`]).
    pub async fn send_close(&mut self) {
        within("close", self.ws.send(Message::Close(None)))
            .await
            .expect("send close");
    }

    pub async fn close(mut self) {
        let _ = within("close", self.ws.close(None)).await;
    }
}

/// `{"success":false,"error":{"code":code,...}}` with a message.
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
