//! Janus's HTTP API (plain JSON over HTTP, events by long poll), as far as the media
//! benchmark drives its VideoRoom plugin: one session, a handle per publisher and per
//! subscriber, a room with H.264 42e01f + Opus, `join` + `publish` with our offer, and
//! subscribers that `join` with `streams:[{feed}]`, answer Janus's offer and `start`.
//!
//! A request either gets its reply at once (`success`, `error`) or an `ack`, its reply
//! then arriving as an event of the session's long poll with the same transaction; one
//! task polls and hands events to their waiting requests.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use onstage_probe::ProbeError;
use onstage_proto::ErrorBody;
use serde_json::{json, Value};
use tokio::sync::oneshot;

use super::fail;

/// How long one request's reply may take, acked or not.
const REPLY_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a starting Janus may take to answer its first request.
const STARTUP: Duration = Duration::from_secs(15);

type Waiters = Arc<Mutex<HashMap<String, oneshot::Sender<Value>>>>;

/// One Janus session. Dropping it stops the long poll (the session then times out, or
/// dies with the Janus the benchmark started).
pub(crate) struct Janus {
    http: reqwest::Client,
    /// The session's URL: `<base>/<session id>`.
    session_url: String,
    waiters: Waiters,
    next: AtomicU64,
    poll: tokio::task::JoinHandle<()>,
}

impl Drop for Janus {
    fn drop(&mut self) {
        self.poll.abort();
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Janus {
    /// Creates a session at `base` (e.g. `http://10.0.0.1:8088/janus`), retrying while a
    /// freshly started Janus is not listening yet.
    pub(crate) async fn connect(base: &str) -> Result<Janus, ErrorBody> {
        let base = base.trim_end_matches('/').to_owned();
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(60))
            .pool_max_idle_per_host(64)
            .build()
            .map_err(|e| fail(format!("http client: {e}")))?;
        let deadline = Instant::now() + STARTUP;
        let created = loop {
            let sent = http
                .post(&base)
                .json(&json!({"janus": "create", "transaction": "create"}))
                .timeout(Duration::from_secs(5))
                .send()
                .await;
            match sent {
                Ok(r) => break r.json::<Value>().await,
                Err(e) if Instant::now() < deadline => {
                    tracing::debug!(error = %e, "janus not answering yet");
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                Err(e) => {
                    return Err(fail(format!(
                        "Janus did not answer at {base} within {STARTUP:?}: {e}"
                    )))
                }
            }
        }
        .map_err(|e| fail(format!("Janus's reply to create: {e}")))?;
        let id = created["data"]["id"]
            .as_u64()
            .ok_or_else(|| fail(format!("Janus did not create a session: {created}")))?;
        let session_url = format!("{base}/{id}");
        let waiters: Waiters = Arc::default();
        let poll = tokio::spawn(long_poll(
            http.clone(),
            session_url.clone(),
            waiters.clone(),
        ));
        Ok(Janus {
            http,
            session_url,
            waiters,
            next: AtomicU64::new(1),
            poll,
        })
    }

    fn transaction(&self) -> String {
        format!("t{}", self.next.fetch_add(1, Ordering::Relaxed))
    }

    /// Posts `body` (with a new transaction) to `url`; returns the reply, waiting for it on
    /// the long poll when Janus only acks.
    async fn call(&self, url: &str, body: Value) -> Result<Value, String> {
        self.post(url, body, true).await
    }

    /// [`Janus::call`]; an ack is the whole reply unless `wait_after_ack` (a trickle's is).
    async fn post(
        &self,
        url: &str,
        mut body: Value,
        wait_after_ack: bool,
    ) -> Result<Value, String> {
        let tx = self.transaction();
        body["transaction"] = Value::String(tx.clone());
        let (reply_tx, reply_rx) = oneshot::channel();
        // Registered before posting: the event may come back before the ack does.
        lock(&self.waiters).insert(tx.clone(), reply_tx);
        let got = async {
            let reply: Value = self
                .http
                .post(url)
                .json(&body)
                .send()
                .await
                .map_err(|e| e.to_string())?
                .json()
                .await
                .map_err(|e| e.to_string())?;
            match reply["janus"].as_str() {
                Some("ack") if wait_after_ack => tokio::time::timeout(REPLY_TIMEOUT, reply_rx)
                    .await
                    .map_err(|_| format!("no reply within {REPLY_TIMEOUT:?}"))?
                    .map_err(|_| "the long poll ended".to_owned()),
                _ => Ok(reply),
            }
        }
        .await;
        lock(&self.waiters).remove(&tx);
        let reply = got?;
        if reply["janus"] == "error" {
            return Err(format!("Janus error: {}", reply["error"]));
        }
        if let Some(error) = reply["plugindata"]["data"].get("error") {
            return Err(format!("VideoRoom error: {error}"));
        }
        Ok(reply)
    }

    /// A new handle on the VideoRoom plugin.
    pub(crate) async fn attach(&self) -> Result<u64, String> {
        let reply = self
            .call(
                &self.session_url,
                json!({"janus": "attach", "plugin": "janus.plugin.videoroom"}),
            )
            .await?;
        reply["data"]["id"]
            .as_u64()
            .ok_or_else(|| format!("no handle in {reply}"))
    }

    /// A message to the plugin on `handle`, with an SDP when given; returns the plugin's
    /// data and Janus's SDP, if any.
    pub(crate) async fn message(
        &self,
        handle: u64,
        body: Value,
        jsep: Option<(&str, &str)>,
    ) -> Result<(Value, Option<String>), String> {
        let mut msg = json!({"janus": "message", "body": body});
        if let Some((kind, sdp)) = jsep {
            msg["jsep"] = json!({"type": kind, "sdp": sdp});
        }
        let reply = self
            .call(&format!("{}/{handle}", self.session_url), msg)
            .await?;
        let sdp = reply["jsep"]["sdp"].as_str().map(str::to_owned);
        Ok((reply["plugindata"]["data"].clone(), sdp))
    }

    /// Tells Janus that our SDP held every candidate there is.
    pub(crate) async fn candidates_done(&self, handle: u64) -> Result<(), String> {
        self.post(
            &format!("{}/{handle}", self.session_url),
            json!({"janus": "trickle", "candidate": {"completed": true}}),
            false,
        )
        .await
        .map(drop)
    }

    /// Creates VideoRoom `room` for `publishers` publishers, H.264 42e01f and Opus only.
    pub(crate) async fn create_room(&self, room: u64, publishers: usize) -> Result<(), String> {
        let handle = self.attach().await?;
        let body = json!({
            "request": "create",
            "room": room,
            "description": "onstage load test",
            "publishers": publishers.max(1),
            "videocodec": "h264",
            "h264_profile": "42e01f",
            "audiocodec": "opus",
            // No periodic keyframe requests, no bitrate cap: keyframes come when a
            // subscriber needs one, as on our SFU.
            "fir_freq": 0,
            "bitrate": 0,
            "notify_joining": false,
            "permanent": false,
        });
        self.message(handle, body, None).await.map(drop)
    }

    /// Publisher `display` joins `room` on `handle`; returns its feed id.
    pub(crate) async fn join_publisher(
        &self,
        handle: u64,
        room: u64,
        display: &str,
    ) -> Result<u64, String> {
        let (joined, _) = self
            .message(
                handle,
                json!({"request": "join", "ptype": "publisher", "room": room, "display": display}),
                None,
            )
            .await?;
        joined["id"]
            .as_u64()
            .ok_or_else(|| format!("no publisher id in {joined}"))
    }

    /// The joined publisher on `handle` publishes `offer`; returns Janus's answer.
    pub(crate) async fn publish(&self, handle: u64, offer: &str) -> Result<String, String> {
        let (_, answer) = self
            .message(
                handle,
                json!({"request": "publish", "audio": true, "video": true}),
                Some(("offer", offer)),
            )
            .await?;
        let answer = answer.ok_or("Janus answered the publish without an SDP")?;
        self.candidates_done(handle).await?;
        Ok(answer)
    }

    /// A subscriber to `feed` in `room`: Janus's offer for it.
    pub(crate) async fn subscribe(
        &self,
        handle: u64,
        room: u64,
        feed: u64,
    ) -> Result<String, String> {
        let body = json!({
            "request": "join",
            "ptype": "subscriber",
            "room": room,
            "streams": [{"feed": feed}],
        });
        let (_, offer) = self.message(handle, body, None).await?;
        offer.ok_or_else(|| "Janus offered the subscription without an SDP".to_owned())
    }

    /// Starts a subscription with our answer.
    pub(crate) async fn start(&self, handle: u64, room: u64, answer: &str) -> Result<(), String> {
        self.message(
            handle,
            json!({"request": "start", "room": room}),
            Some(("answer", answer)),
        )
        .await?;
        self.candidates_done(handle).await
    }

    /// Ends the session.
    pub(crate) async fn destroy(&self) {
        let _ = self
            .call(&self.session_url, json!({"janus": "destroy"}))
            .await;
    }
}

/// Maps a Janus failure to the probe's error, for [`onstage_probe::ProbePublisher::start_with`].
pub(crate) fn peer(e: String) -> ProbeError {
    ProbeError::Peer(e)
}

/// The session's long poll: every event that names a waiting transaction goes to it.
async fn long_poll(http: reqwest::Client, session_url: String, waiters: Waiters) {
    let url = format!("{session_url}?maxev=50");
    loop {
        let got = async {
            http.get(&url)
                .timeout(Duration::from_secs(45))
                .send()
                .await?
                .json::<Value>()
                .await
        }
        .await;
        let events = match got {
            Ok(Value::Array(events)) => events,
            Ok(event) => vec![event],
            Err(e) => {
                tracing::debug!(error = %e, "janus long poll");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        for event in events {
            let Some(tx) = event["transaction"].as_str() else {
                continue;
            };
            if let Some(waiter) = lock(&waiters).remove(tx) {
                let _ = waiter.send(event);
            }
        }
    }
}
