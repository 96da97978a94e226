//! Shared harness of the end-to-end tests: the testkit's real server on 127.0.0.1:0 in a
//! temporary data dir (admin calls over real HTTP, typed or raw), participants joined
//! through the real SDK, raw WebSocket peers for misbehaving clients, and a TCP proxy that
//! can cut connections.
//!
//! Events are matched in their JSON form — the same shape `onstage bot` prints — so the tests
//! check the public contract, not internal types.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use onstage_client::{EventStream, Meeting};
use onstage_proto::UserId;
use onstage_server::ServerConfig;
use serde_json::Value;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Mutex;
use tokio::task::JoinHandle;

pub use onstage_testkit::{within, WAIT};

/// The testkit's server (everything it has is reached through `Deref`), whose [`join`]
/// gives a [`Client`] that keeps the events it sees.
///
/// [`join`]: TestServer::join
pub struct TestServer(onstage_testkit::TestServer);

impl TestServer {
    /// A server with the default 30 s grace period.
    pub async fn start() -> Self {
        Self::start_with_grace(Duration::from_secs(30)).await
    }

    pub async fn start_with_grace(grace: Duration) -> Self {
        Self::start_with(|c| c.grace = grace).await
    }

    /// A server with its configuration adjusted by `adjust`.
    pub async fn start_with(adjust: impl FnOnce(&mut ServerConfig)) -> Self {
        Self(onstage_testkit::TestServer::start_with(adjust).await)
    }

    /// Stops the server gracefully and starts a new one on the same data dir (new port).
    pub async fn restart(self) -> Self {
        Self(self.0.restart().await)
    }

    /// Registers a participant and joins it through the SDK.
    pub async fn join(&self, meeting: &str, name: &str, preset: &str) -> Client {
        let (_, token) = self.participant(meeting, name, preset).await;
        Client::join(&self.url, &token).await
    }
}

impl std::ops::Deref for TestServer {
    type Target = onstage_testkit::TestServer;

    fn deref(&self) -> &Self::Target {
        &self.0
    }
}

/// A participant joined through the SDK, with its event stream.
pub struct Client {
    pub meeting: Meeting,
    pub events: EventStream,
    pub token: String,
    /// Every event seen so far, in order, as JSON.
    pub seen: Vec<Value>,
}

impl Client {
    pub async fn join(url: &str, token: &str) -> Client {
        let meeting = within("join", Meeting::join(url, token))
            .await
            .expect("joins the meeting");
        Client::of(meeting, token)
    }

    /// A client around a meeting joined some other way (e.g. over TLS with a pin).
    pub fn of(meeting: Meeting, token: &str) -> Client {
        let events = meeting.events();
        Client {
            meeting,
            events,
            token: token.to_owned(),
            seen: Vec::new(),
        }
    }

    pub fn user_id(&self) -> UserId {
        self.meeting.user_id()
    }

    pub fn id(&self) -> String {
        self.meeting.user_id().to_string()
    }

    /// Waits for the next event matching `pred` (events before it are kept in `seen`).
    pub async fn expect(&mut self, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let next = tokio::time::timeout_at(deadline, self.events.recv())
                .await
                .unwrap_or_else(|_| {
                    panic!(
                        "{}: timed out waiting for {what}; saw {:#?}",
                        self.id(),
                        self.seen
                    )
                })
                .unwrap_or_else(|| panic!("{}: event stream ended before {what}", self.id()));
            let value = serde_json::to_value(&next).expect("event serializes");
            self.seen.push(value.clone());
            if pred(&value) {
                return value;
            }
        }
    }

    /// Waits for the event named `name` whose fields include every field of `fields`.
    pub async fn expect_event(&mut self, name: &str, fields: Value) -> Value {
        let what = format!("{name} {fields}");
        self.expect(&what, |e| e["event"] == name && includes(e, &fields))
            .await
    }

    /// Every event that has already arrived, without waiting.
    pub fn drain(&mut self) -> Vec<Value> {
        let mut out = Vec::new();
        while let Some(e) = self.events.try_recv() {
            let v = serde_json::to_value(&e).expect("event serializes");
            self.seen.push(v.clone());
            out.push(v);
        }
        out
    }
}

/// Does `value` hold every field of `fields` (recursively for objects)?
pub fn includes(value: &Value, fields: &Value) -> bool {
    match (value, fields) {
        (Value::Object(v), Value::Object(f)) => f
            .iter()
            .all(|(k, fv)| v.get(k).is_some_and(|vv| includes(vv, fv))),
        (v, f) => v == f,
    }
}

/// A raw WebSocket peer: for clients that misbehave or vanish without a goodbye.
pub struct RawPeer {
    pub ws: tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<TcpStream>>,
}

impl RawPeer {
    pub async fn connect(server: &TestServer, token: &str) -> RawPeer {
        let url = server.ws_url(token);
        let (ws, _) = within("raw connect", tokio_tungstenite::connect_async(url))
            .await
            .expect("raw websocket connects");
        RawPeer { ws }
    }

    pub async fn send_text(&mut self, text: impl Into<String>) {
        self.ws
            .send(tokio_tungstenite::tungstenite::Message::text(text.into()))
            .await
            .expect("send");
    }

    pub async fn send_binary(&mut self, bytes: Vec<u8>) {
        self.ws
            .send(tokio_tungstenite::tungstenite::Message::binary(bytes))
            .await
            .expect("send");
    }

    /// The next JSON text frame (pings and pongs skipped).
    pub async fn next_json(&mut self) -> Value {
        loop {
            let msg = within("a frame", self.ws.next())
                .await
                .expect("connection open")
                .expect("frame");
            if let tokio_tungstenite::tungstenite::Message::Text(t) = msg {
                return serde_json::from_str(t.as_str()).expect("server sends JSON");
            }
        }
    }

    /// The next frame matching `pred`.
    pub async fn next_matching(&mut self, pred: impl Fn(&Value) -> bool) -> Value {
        loop {
            let v = self.next_json().await;
            if pred(&v) {
                return v;
            }
        }
    }

    /// Sends a request and returns its reply.
    pub async fn call(&mut self, request: Value) -> Value {
        let id = request["id"].clone();
        self.send_text(request.to_string()).await;
        self.next_matching(|v| v["type"] == "reply" && v["id"] == id)
            .await
    }

    /// Vanishes without a close frame, as a crashed client or a dead network would.
    pub fn vanish(self) {
        drop(self.ws);
    }
}

/// A TCP proxy in front of the server whose live connections can be cut, so a test can
/// make an SDK client lose its network without touching the server.
pub struct CutProxy {
    pub url: String,
    conns: Arc<Mutex<Vec<JoinHandle<()>>>>,
    accept: JoinHandle<()>,
}

impl CutProxy {
    pub async fn start(target: &str) -> CutProxy {
        let target: SocketAddr = target
            .trim_start_matches("http://")
            .parse()
            .expect("server address");
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind proxy");
        let url = format!("http://{}", listener.local_addr().expect("addr"));
        let conns: Arc<Mutex<Vec<JoinHandle<()>>>> = Arc::default();
        let tracked = conns.clone();
        let accept = tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                let task = tokio::spawn(async move {
                    if let Ok(mut outbound) = TcpStream::connect(target).await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                });
                tracked.lock().await.push(task);
            }
        });
        CutProxy { url, conns, accept }
    }

    /// Cuts every live connection (both directions, no close frames).
    pub async fn cut(&self) {
        for task in self.conns.lock().await.drain(..) {
            task.abort();
        }
    }
}

impl Drop for CutProxy {
    fn drop(&mut self) {
        self.accept.abort();
    }
}
