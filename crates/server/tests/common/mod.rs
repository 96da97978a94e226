//! Shared helpers: the testkit's real server on 127.0.0.1:0 in a temporary data dir (with
//! the typed admin client and raw HTTP requests), and raw WebSocket peers. Every wait is
//! bounded by [`WAIT`].

#![allow(dead_code)]

// Each test binary uses its own part.
#[allow(unused_imports)]
pub use onstage_testkit::{assert_error, within, TestServer as Srv, WAIT};

use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

/// An event of this kind (`{"type":"event","event":{"kind":..}}`).
pub fn is_event(msg: &Value, kind: &str) -> bool {
    msg["type"] == "event" && msg["event"]["kind"] == kind
}

/// The signaling URL of a guest: `?token=<invite token>&name=<name>`, encoded.
pub fn guest_url(srv: &Srv, invite_token: &str, name: &str) -> String {
    format!("{}&name={}", srv.ws_url(invite_token), encode(name))
}

/// A query value, encoded.
pub fn encode(value: &str) -> String {
    url::form_urlencoded::byte_serialize(value.as_bytes()).collect()
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

    /// Connects without waiting for anything (the first message may not be a welcome).
    pub async fn connect(srv: &Srv, token: &str) -> Peer {
        let (ws, _) = within(
            "ws connect",
            tokio_tungstenite::connect_async(srv.ws_url(token)),
        )
        .await
        .expect("ws connects");
        Peer { ws, next_id: 1000 }
    }

    /// Connects as a guest with a role invite token under `name` and returns the peer
    /// with its welcome.
    pub async fn join_guest(srv: &Srv, invite_token: &str, name: &str) -> (Peer, Value) {
        let (ws, _) = within(
            "ws connect",
            tokio_tungstenite::connect_async(guest_url(srv, invite_token, name)),
        )
        .await
        .expect("ws connects");
        let mut peer = Peer { ws, next_id: 1000 };
        let welcome = peer.next_json().await;
        assert_eq!(welcome["type"], json!("welcome"), "{welcome}");
        (peer, welcome)
    }

    /// Adds `name` with `preset` to `meeting` and connects it: its user id, token and peer.
    pub async fn join_as(
        srv: &Srv,
        meeting: &str,
        name: &str,
        preset: &str,
    ) -> (String, String, Peer) {
        let (user_id, token) = srv.participant(meeting, name, preset).await;
        let (peer, _) = Peer::join(srv, &token).await;
        (user_id, token, peer)
    }

    /// How many participants the meeting's snapshot lists, as this peer sees it.
    pub async fn participant_count(&mut self) -> usize {
        let reply = self.call_ok(json!({"call":"meeting.snapshot"})).await;
        reply["result"]["participants"]
            .as_array()
            .map_or(0, Vec::len)
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

    /// [`Peer::call`] that must succeed; returns the reply.
    pub async fn call_ok(&mut self, request: Value) -> Value {
        let reply = self.call(request).await;
        assert_eq!(reply["ok"], json!(true), "{reply}");
        reply
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
    /// Everything until the server closes, which it does with `goodbye: reason` last.
    pub async fn expect_goodbye(&mut self, reason: &str) -> Vec<Value> {
        let seen = self.until_closed().await;
        assert_eq!(
            seen.last(),
            Some(&json!({"type":"goodbye","reason":reason})),
            "{seen:?}"
        );
        seen
    }

    pub async fn send_close(&mut self) {
        within("close", self.ws.send(Message::Close(None)))
            .await
            .expect("send close");
    }

    pub async fn close(mut self) {
        let _ = within("close", self.ws.close(None)).await;
    }
}

/// The token is refused before the upgrade, over HTTP and as a WebSocket client sees it,
/// with 401 and `code`.
pub async fn refused(srv: &Srv, token: &str, code: &str) {
    let (status, body) = srv
        .raw("GET", &format!("/v1/signal?token={token}"), None, None)
        .await;
    assert_error(status, &body, 401, code);
    match tokio_tungstenite::connect_async(srv.ws_url(token)).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => {
            assert_eq!(resp.status().as_u16(), 401)
        }
        other => panic!("the token was not refused: {:?}", other.map(|_| ())),
    }
}

/// Everything the room says until `peer`'s snapshot reply; returns (events, snapshot).
pub async fn events_then_snapshot(peer: &mut Peer) -> (Vec<Value>, Value) {
    peer.send_text(json!({"id":9999,"call":"meeting.snapshot"}).to_string())
        .await;
    let mut events = Vec::new();
    loop {
        let msg = peer.next_json().await;
        if msg["type"] == "reply" && msg["id"] == json!(9999) {
            return (events, msg["result"].clone());
        }
        events.push(msg);
    }
}

pub fn roster(snapshot: &Value) -> Vec<String> {
    snapshot["participants"]
        .as_array()
        .expect("participants")
        .iter()
        .map(|p| p["user_id"].as_str().expect("user_id").to_owned())
        .collect()
}
