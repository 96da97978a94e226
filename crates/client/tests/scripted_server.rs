//! The SDK against a scripted WebSocket server: each test plays the server's side frame by
//! frame, so replies, event order, gaps, drops and goodbyes are exactly what the test says.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::{http, Message};
use tokio_tungstenite::WebSocketStream;

use onstage_client::{
    ClientError, CloseReason, ConnectionState, ErrorCode, EventStream, JoinOptions, Meeting,
    MeetingEvent, StageStatus,
};

const WAIT: Duration = Duration::from_secs(5);

/// The server's 401 with an error envelope, as the real one answers a refused token.
fn refusal(code: &str, message: &str) -> http::Response<Option<String>> {
    let body = json!({"success": false, "error": {"code": code, "message": message}});
    http::Response::builder()
        .status(401)
        .body(Some(body.to_string()))
        .unwrap()
}

async fn within<T>(what: &str, fut: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(WAIT, fut)
        .await
        .unwrap_or_else(|_| panic!("timed out waiting for {what}"))
}

struct Scripted {
    url: String,
    conns: mpsc::UnboundedReceiver<Conn>,
    refuse: Arc<AtomicBool>,
    /// Refuses the token as superseded (401 `token_revoked`) rather than expired.
    revoked: Arc<AtomicBool>,
}

struct Conn {
    ws: WebSocketStream<TcpStream>,
    token: String,
}

impl Scripted {
    async fn start() -> Scripted {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let (tx, conns) = mpsc::unbounded_channel();
        let refuse = Arc::new(AtomicBool::new(false));
        let refusing = refuse.clone();
        let revoked = Arc::new(AtomicBool::new(false));
        let revoking = revoked.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let tx = tx.clone();
                let refusing = refusing.clone();
                let revoking = revoking.clone();
                tokio::spawn(async move {
                    let mut token = String::new();
                    // The signature is tungstenite's handshake callback.
                    #[allow(clippy::result_large_err)]
                    let callback = |req: &http::Request<()>, resp| {
                        assert_eq!(req.uri().path(), "/v1/signal");
                        token = req
                            .uri()
                            .query()
                            .and_then(|q| q.strip_prefix("token="))
                            .unwrap_or_default()
                            .to_owned();
                        if revoking.load(Ordering::SeqCst) {
                            return Err(refusal("token_revoked", "this token was revoked"));
                        }
                        // Tokens that script a join failure of their own.
                        if token == "expired" {
                            return Err(refusal("token_expired", "the token has expired"));
                        }
                        if token == "web-page" {
                            return Err(http::Response::builder()
                                .status(404)
                                .body(Some("<html>Not Found</html>".into()))
                                .unwrap());
                        }
                        if refusing.load(Ordering::SeqCst) {
                            return Err(refusal("unauthorized", "token expired"));
                        }
                        Ok(resp)
                    };
                    if let Ok(ws) = tokio_tungstenite::accept_hdr_async(stream, callback).await {
                        let _ = tx.send(Conn { ws, token });
                    }
                });
            }
        });
        Scripted {
            url,
            conns,
            refuse,
            revoked,
        }
    }

    async fn next_conn(&mut self) -> Conn {
        within("a connection", self.conns.recv()).await.unwrap()
    }
}

impl Conn {
    async fn send(&mut self, v: Value) {
        self.ws.send(Message::text(v.to_string())).await.unwrap();
    }

    /// The next request the client sent.
    async fn request(&mut self) -> Value {
        loop {
            match within("a request", self.ws.next()).await {
                Some(Ok(Message::Text(t))) => return serde_json::from_str(t.as_str()).unwrap(),
                Some(Ok(_)) => continue,
                other => panic!("connection ended: {other:?}"),
            }
        }
    }

    async fn reply(&mut self, id: &Value, result: Value) {
        self.send(json!({"type":"reply","id":id,"ok":true,"result":result}))
            .await;
    }
}

fn participant(id: &str, preset: &str, status: &str) -> Value {
    json!({"user_id":id,"peer_id":format!("p-{id}"),"name":id.to_uppercase(),
           "preset":preset,"stage_status":status,"connected":true})
}

fn preset(name: &str) -> Value {
    match name {
        "host" => json!({"name":"host","stage_access":"ALLOWED",
                         "accept_stage_requests":true,"kick_participant":true}),
        _ => json!({"name":"viewer","stage_access":"CAN_REQUEST"}),
    }
}

fn welcome(me: &str, preset_name: &str, seq: u64, participants: Vec<Value>) -> Value {
    json!({"type":"welcome","meeting_id":"m1","user_id":me,"peer_id":format!("p-{me}"),
           "resumed":false,"preset":preset(preset_name),"grace_ms":30000,
           "snapshot":{"seq":seq,"max_on_stage":25,"participants":participants,"queue":[]}})
}

fn two(viewer_status: &str) -> Vec<Value> {
    vec![
        participant("h", "host", "OFF_STAGE"),
        participant("v", "viewer", viewer_status),
    ]
}

fn status_event(seq: u64, user: &str, status: &str, reason: &str, by: Option<&str>) -> Value {
    let mut event = json!({"kind":"stage_status_changed","user_id":user,"status":status,
                           "reason":reason});
    if let Some(by) = by {
        event["by"] = json!(by);
    }
    if status == "REQUESTED_TO_JOIN_STAGE" {
        event["requested_at"] = json!(1000 + seq);
    }
    json!({"type":"event","seq":seq,"event":event})
}

fn fast() -> JoinOptions {
    JoinOptions {
        request_timeout: Duration::from_secs(3),
        connect_timeout: Duration::from_secs(3),
        reconnect_min: Duration::from_millis(10),
        reconnect_max: Duration::from_millis(50),
        ..JoinOptions::default()
    }
}

/// Joins as `me`; the scripted side sends the welcome.
async fn join(server: &mut Scripted, me: &str, preset: &str) -> (Meeting, Conn) {
    let url = server.url.clone();
    let joining = tokio::spawn(async move { Meeting::join_with(&url, "tok", fast()).await });
    let mut conn = server.next_conn().await;
    assert_eq!(conn.token, "tok");
    conn.send(welcome(me, preset, 2, two("OFF_STAGE"))).await;
    let meeting = within("join", joining).await.unwrap().expect("joined");
    (meeting, conn)
}

async fn next_event(events: &mut onstage_client::EventStream) -> Value {
    let e = within("an event", events.recv())
        .await
        .expect("stream open");
    serde_json::to_value(e).unwrap()
}

/// The next events, in order, are exactly these.
async fn expect_events(events: &mut onstage_client::EventStream, expected: &[Value]) {
    for (i, want) in expected.iter().enumerate() {
        assert_eq!(
            &next_event(events).await,
            want,
            "event {i} of {}",
            expected.len()
        );
    }
}

/// The meeting-ended event, then the disconnect it causes.
async fn expect_meeting_ended_by(events: &mut onstage_client::EventStream, host: &str) {
    expect_events(
        events,
        &[
            json!({"event":"meetingEnded","by":host}),
            json!({"event":"connectionStateUpdate","state":"disconnected","reason":"meeting_ended"}),
        ],
    )
    .await;
}

#[tokio::test]
async fn join_exposes_the_welcome() {
    let mut server = Scripted::start().await;
    let (meeting, _conn) = join(&mut server, "v", "viewer").await;
    assert_eq!(meeting.user_id().as_str(), "v");
    assert_eq!(meeting.peer_id().as_str(), "p-v");
    assert_eq!(meeting.meeting_id().as_str(), "m1");
    assert_eq!(meeting.preset().name, "viewer");
    assert_eq!(meeting.participants().len(), 2);
    assert_eq!(meeting.self_().name, "V");
    assert_eq!(meeting.stage().status(), StageStatus::OffStage);
    assert_eq!(meeting.connection_state(), ConnectionState::Connected);
    assert_eq!(meeting.max_on_stage(), 25);
}

#[tokio::test]
async fn a_call_gets_its_reply_and_events_are_derived() {
    let mut server = Scripted::start().await;
    let (meeting, mut conn) = join(&mut server, "v", "viewer").await;
    // Events sent before anyone subscribed still reach the first subscriber.
    conn.send(
        json!({"type":"event","seq":3,"event":{"kind":"participant_connection",
                     "user_id":"h","connected":false}}),
    )
    .await;
    let m = meeting.clone();
    let call = tokio::spawn(async move { m.stage().request_access().await });
    let req = conn.request().await;
    assert_eq!(req["call"], "stage.requestAccess");
    assert!(req["id"].as_u64().is_some());
    conn.send(status_event(
        4,
        "v",
        "REQUESTED_TO_JOIN_STAGE",
        "requested",
        None,
    ))
    .await;
    conn.reply(
        &req["id"],
        json!({"stage_status":"REQUESTED_TO_JOIN_STAGE"}),
    )
    .await;
    let status = within("reply", call).await.unwrap().expect("ok");
    assert_eq!(status, StageStatus::RequestedToJoinStage);
    assert_eq!(meeting.stage().status(), StageStatus::RequestedToJoinStage);

    let mut events = meeting.events();
    expect_events(
        &mut events,
        &[
            json!({"event":"participantConnection","user_id":"h","connected":false}),
            json!({"event":"stageStatusUpdate","status":"REQUESTED_TO_JOIN_STAGE"}),
            json!({"event":"participantStageStatus","user_id":"v","status":"REQUESTED_TO_JOIN_STAGE"}),
        ],
    )
    .await;
    // A second subscriber starts from now.
    let mut later = meeting.events();
    assert!(later.try_recv().is_none());

    // An error reply carries the server's code.
    let m = meeting.clone();
    let call = tokio::spawn(async move { m.stage().join().await });
    let req = conn.request().await;
    conn.send(json!({"type":"reply","id":req["id"],"ok":false,
                     "error":{"code":"permission_denied","message":"no"}}))
        .await;
    let err = within("reply", call).await.unwrap().expect_err("refused");
    assert_eq!(err.code(), ErrorCode::PermissionDenied);
    assert!(matches!(err, ClientError::Server(_)));
}

#[tokio::test]
async fn a_status_reply_waits_for_its_event_so_status_agrees() {
    let mut server = Scripted::start().await;
    let (meeting, mut conn) = join(&mut server, "v", "viewer").await;
    for round in 0..20u64 {
        let m = meeting.clone();
        let (call, want, reason, status) = if round % 2 == 0 {
            (
                "stage.requestAccess",
                StageStatus::RequestedToJoinStage,
                "requested",
                "REQUESTED_TO_JOIN_STAGE",
            )
        } else {
            (
                "stage.cancelRequestAccess",
                StageStatus::OffStage,
                "cancelled",
                "OFF_STAGE",
            )
        };
        let task = tokio::spawn(async move {
            let got = if round % 2 == 0 {
                m.stage().request_access().await
            } else {
                m.stage().cancel_request_access().await
            };
            // The moment the call returns, the mirror already shows the change.
            (got, m.stage().status())
        });
        let req = conn.request().await;
        assert_eq!(req["call"], call);
        // The reply overtakes its event.
        conn.reply(&req["id"], json!({ "stage_status": status }))
            .await;
        conn.send(status_event(3 + round, "v", status, reason, None))
            .await;
        let (got, seen) = within("reply", task).await.unwrap();
        assert_eq!(got.expect("ok"), want);
        assert_eq!(seen, want);
    }
    // A reply whose event never comes is still delivered, a little later.
    let req_task = {
        let m = meeting.clone();
        tokio::spawn(async move { m.stage().request_access().await })
    };
    let req = conn.request().await;
    conn.reply(
        &req["id"],
        json!({"stage_status":"REQUESTED_TO_JOIN_STAGE"}),
    )
    .await;
    assert_eq!(
        within("late reply", req_task).await.unwrap().expect("ok"),
        StageStatus::RequestedToJoinStage
    );
}

#[tokio::test]
async fn batch_calls_send_user_ids_and_return_unit() {
    let mut server = Scripted::start().await;
    let (meeting, mut conn) = join(&mut server, "h", "host").await;
    let m = meeting.clone();
    let call = tokio::spawn(async move { m.stage().grant_access(&["v".into(), "w".into()]).await });
    let req = conn.request().await;
    assert_eq!(req["call"], "stage.grantAccess");
    assert_eq!(req["user_ids"], json!(["v", "w"]));
    conn.reply(&req["id"], Value::Null).await;
    within("reply", call).await.unwrap().expect("granted");

    let m = meeting.clone();
    let call = tokio::spawn(async move { m.stage().get_access_requests().await });
    let req = conn.request().await;
    conn.reply(
        &req["id"],
        json!([{"user_id":"v","name":"V","requested_at":7}]),
    )
    .await;
    let queue = within("reply", call).await.unwrap().expect("queue");
    assert_eq!(queue.len(), 1);
    assert_eq!(queue[0].requested_at, 7);
}

#[tokio::test]
async fn an_unanswered_call_times_out() {
    let mut server = Scripted::start().await;
    let url = server.url.clone();
    let options = JoinOptions {
        request_timeout: Duration::from_millis(200),
        ..fast()
    };
    let joining = tokio::spawn(async move { Meeting::join_with(&url, "tok", options).await });
    let mut conn = server.next_conn().await;
    conn.send(welcome("v", "viewer", 2, two("OFF_STAGE"))).await;
    let meeting = within("join", joining).await.unwrap().unwrap();
    let err = meeting.stage().join().await.expect_err("no reply");
    assert!(matches!(err, ClientError::Timeout(_)), "{err:?}");
    assert_eq!(err.code(), ErrorCode::ConnectionLost);
    // A late reply to the abandoned call is ignored; the next call works.
    let req = conn.request().await;
    conn.reply(&req["id"], json!({"stage_status":"ON_STAGE"}))
        .await;
    let m = meeting.clone();
    let call = tokio::spawn(async move { m.stage().kick(&["h".into()]).await });
    let req2 = conn.request().await;
    assert_ne!(req2["id"], req["id"]);
    conn.reply(&req2["id"], Value::Null).await;
    within("reply", call).await.unwrap().expect("kicked");
}

#[tokio::test]
async fn a_sequence_gap_resyncs_from_a_snapshot() {
    let mut server = Scripted::start().await;
    let (meeting, mut conn) = join(&mut server, "v", "viewer").await;
    let mut events = meeting.events();
    // seq 3 (request) and 4 (grant) are lost; 5 arrives.
    conn.send(status_event(5, "h", "ON_STAGE", "joined", None))
        .await;
    let req = conn.request().await;
    assert_eq!(req["call"], "meeting.snapshot");
    // 6 arrives before the snapshot answer; it is newer than the snapshot and replayed.
    conn.send(status_event(6, "v", "ON_STAGE", "joined", None))
        .await;
    let mut participants = two("ACCEPTED_TO_JOIN_STAGE");
    participants[0]["stage_status"] = json!("ON_STAGE");
    conn.reply(
        &req["id"],
        json!({"seq":5,"max_on_stage":25,"participants":participants,"queue":[]}),
    )
    .await;
    let mut got = Vec::new();
    for _ in 0..6 {
        got.push(next_event(&mut events).await);
    }
    assert_eq!(
        got,
        vec![
            json!({"event":"participantStageStatus","user_id":"h","status":"ON_STAGE"}),
            json!({"event":"stageRequestApproved","by":null}),
            json!({"event":"stageStatusUpdate","status":"ACCEPTED_TO_JOIN_STAGE"}),
            json!({"event":"participantStageStatus","user_id":"v","status":"ACCEPTED_TO_JOIN_STAGE"}),
            json!({"event":"stageStatusUpdate","status":"ON_STAGE"}),
            json!({"event":"participantStageStatus","user_id":"v","status":"ON_STAGE"}),
        ]
    );
    assert_eq!(meeting.stage().status(), StageStatus::OnStage);
}

#[tokio::test]
async fn a_dropped_connection_reconnects_and_resumes() {
    let mut server = Scripted::start().await;
    let (meeting, conn) = join(&mut server, "v", "viewer").await;
    let mut events = meeting.events();
    drop(conn);
    assert_eq!(
        next_event(&mut events).await,
        json!({"event":"connectionStateUpdate","state":"reconnecting"})
    );
    assert_eq!(meeting.connection_state(), ConnectionState::Reconnecting);
    let mut conn = server.next_conn().await;
    // Until the welcome arrives, calls fail at once.
    let err = meeting.stage().join().await.expect_err("down");
    assert!(matches!(err, ClientError::ConnectionLost), "{err:?}");
    assert_eq!(err.code().as_str(), "connection_lost");
    let mut w = welcome("v", "viewer", 9, two("OFF_STAGE"));
    w["resumed"] = json!(true);
    w["snapshot"]["participants"][0]["connected"] = json!(false);
    conn.send(w).await;
    expect_events(
        &mut events,
        &[
            json!({"event":"participantConnection","user_id":"h","connected":false}),
            json!({"event":"connectionStateUpdate","state":"connected","resumed":true}),
        ],
    )
    .await;
    assert_eq!(meeting.connection_state(), ConnectionState::Connected);
    // Sequence numbers continue from the new welcome.
    conn.send(status_event(10, "h", "ON_STAGE", "joined", None))
        .await;
    assert_eq!(
        next_event(&mut events).await,
        json!({"event":"participantStageStatus","user_id":"h","status":"ON_STAGE"})
    );
}

#[tokio::test]
async fn the_tiles_are_told_again_on_a_new_connection_and_only_the_last_ones() {
    let mut server = Scripted::start().await;
    let (meeting, mut conn) = join(&mut server, "v", "viewer").await;
    let tile = |width: u32| onstage_proto::TileSize {
        user_id: onstage_proto::UserId::new("h"),
        width,
        height: width * 9 / 16,
    };
    for width in [1280, 320] {
        let told = meeting.clone();
        let call = tokio::spawn(async move { told.set_tiles(vec![tile(width)]).await });
        let req = conn.request().await;
        assert_eq!(req["call"], "media.tiles");
        assert_eq!(req["tiles"][0]["width"], width);
        conn.reply(&req["id"], Value::Null).await;
        within("the tiles' reply", call)
            .await
            .unwrap()
            .expect("told");
    }
    // The connection drops; the first request on the new one is the last tiles told.
    drop(conn);
    let mut conn = server.next_conn().await;
    conn.send(welcome("v", "viewer", 9, two("OFF_STAGE"))).await;
    let req = conn.request().await;
    assert_eq!(req["call"], "media.tiles", "{req}");
    assert_eq!(
        req["tiles"],
        json!([{"user_id": "h", "width": 320, "height": 180}])
    );
    // Its reply is nobody's, and the connection goes on.
    conn.reply(&req["id"], Value::Null).await;
    let call = {
        let m = meeting.clone();
        tokio::spawn(async move { m.stage().request_access().await })
    };
    let req = conn.request().await;
    assert_eq!(req["call"], "stage.requestAccess", "{req}");
    conn.reply(&req["id"], json!({})).await;
    drop(call);
}

#[tokio::test]
async fn a_goodbye_shutdown_reconnects_but_replaced_ends_the_meeting() {
    let mut server = Scripted::start().await;
    let (meeting, mut conn) = join(&mut server, "v", "viewer").await;
    let mut events = meeting.events();
    conn.send(json!({"type":"goodbye","reason":"shutdown"}))
        .await;
    assert_eq!(
        next_event(&mut events).await,
        json!({"event":"connectionStateUpdate","state":"reconnecting"})
    );
    let mut conn = server.next_conn().await;
    conn.send(welcome("v", "viewer", 2, two("OFF_STAGE"))).await;
    assert_eq!(
        next_event(&mut events).await,
        json!({"event":"connectionStateUpdate","state":"connected","resumed":false})
    );

    conn.send(json!({"type":"goodbye","reason":"replaced"}))
        .await;
    // Another session of the same participant is live: stop, and say so.
    assert_eq!(
        next_event(&mut events).await,
        json!({"event":"connectionStateUpdate","state":"disconnected","reason":"replaced"})
    );
    assert!(within("end", events.recv()).await.is_none(), "stream ends");
    assert_eq!(
        meeting.stage().join().await,
        Err(ClientError::Ended(CloseReason::Replaced))
    );
    assert_eq!(meeting.connection_state(), ConnectionState::Disconnected);
    assert_eq!(meeting.end_reason(), Some(CloseReason::Replaced));
    // No reconnect attempt follows.
    assert!(
        tokio::time::timeout(Duration::from_millis(200), server.conns.recv())
            .await
            .is_err()
    );
}

#[tokio::test]
async fn revoked_removed_meeting_deleted_and_bad_input_goodbyes_stop_for_good_and_say_why() {
    for (reason, code) in [
        ("revoked", ErrorCode::TokenRevoked),
        ("removed", ErrorCode::Unauthorized),
        ("meeting_deleted", ErrorCode::Unauthorized),
        ("bad_input", ErrorCode::BadRequest),
    ] {
        let mut server = Scripted::start().await;
        let (meeting, mut conn) = join(&mut server, "v", "viewer").await;
        let mut events = meeting.events();
        // A call in flight when the goodbye comes fails with the reason.
        let m = meeting.clone();
        let pending = tokio::spawn(async move { m.stage().request_access().await });
        conn.request().await;
        conn.send(json!({"type":"goodbye","reason":reason})).await;
        assert_eq!(
            next_event(&mut events).await,
            json!({"event":"connectionStateUpdate","state":"disconnected","reason":reason}),
            "{reason}"
        );
        assert!(within("end", events.recv()).await.is_none(), "stream ends");
        let expected: CloseReason = serde_json::from_value(json!(reason)).unwrap();
        let error = within("pending call", pending).await.unwrap().unwrap_err();
        assert_eq!(error, ClientError::Ended(expected), "{reason}");
        assert_eq!(error.code(), code, "{reason}");
        assert_eq!(meeting.connection_state(), ConnectionState::Disconnected);
        over_for_good(&meeting, &mut server, expected).await;
    }
}

/// The session ended for `reason`: said so, calls refused with it, and no reconnect
/// attempt follows.
async fn over_for_good(meeting: &Meeting, server: &mut Scripted, reason: CloseReason) {
    assert_eq!(
        meeting.stage().join().await,
        Err(ClientError::Ended(reason))
    );
    assert_eq!(meeting.end_reason(), Some(reason));
    assert!(
        tokio::time::timeout(Duration::from_millis(200), server.conns.recv())
            .await
            .is_err(),
        "{reason}: it tried to reconnect"
    );
}

#[tokio::test]
async fn a_reconnect_refused_as_token_revoked_ends_with_revoked() {
    let mut server = Scripted::start().await;
    let (meeting, conn) = join(&mut server, "v", "viewer").await;
    let mut events = meeting.events();
    // The connection drops before any goodbye; meanwhile the token was superseded.
    server.revoked.store(true, Ordering::SeqCst);
    drop(conn);
    assert_eq!(
        next_event(&mut events).await["state"],
        json!("reconnecting")
    );
    assert_eq!(
        next_event(&mut events).await,
        json!({"event":"connectionStateUpdate","state":"disconnected","reason":"revoked"})
    );
    assert_eq!(meeting.end_reason(), Some(CloseReason::Revoked));
    assert_eq!(
        meeting.stage().join().await.unwrap_err().code(),
        ErrorCode::TokenRevoked
    );
}

#[tokio::test]
async fn joining_with_a_revoked_token_or_being_turned_away_says_why() {
    let mut server = Scripted::start().await;
    server.revoked.store(true, Ordering::SeqCst);
    let err = Meeting::join(&server.url, "old")
        .await
        .expect_err("refused");
    assert_eq!(
        err,
        ClientError::TokenRevoked("this token was revoked".into())
    );
    assert_eq!(err.code(), ErrorCode::TokenRevoked);

    // Turned away with a final goodbye instead of a welcome (revoked just as it came).
    server.revoked.store(false, Ordering::SeqCst);
    let url = server.url.clone();
    let joining = tokio::spawn(async move { Meeting::join_with(&url, "tok", fast()).await });
    let mut conn = server.next_conn().await;
    conn.send(json!({"type":"goodbye","reason":"removed"}))
        .await;
    let err = within("join", joining)
        .await
        .unwrap()
        .expect_err("turned away");
    assert_eq!(err, ClientError::Ended(CloseReason::Removed));
}

#[tokio::test]
async fn reconnecting_stops_when_the_token_is_refused() {
    let mut server = Scripted::start().await;
    let (meeting, conn) = join(&mut server, "v", "viewer").await;
    let mut events = meeting.events();
    server.refuse.store(true, Ordering::SeqCst);
    drop(conn);
    assert_eq!(
        next_event(&mut events).await["state"],
        json!("reconnecting")
    );
    assert_eq!(
        next_event(&mut events).await,
        json!({"event":"connectionStateUpdate","state":"disconnected"})
    );
}

/// Joins with a grace period of `grace_ms` and the given [`JoinOptions::keep_trying_every`],
/// then the connection drops.
async fn joined_then_dropped(
    server: &mut Scripted,
    keep_trying_every: Option<Duration>,
    grace_ms: u64,
) -> Meeting {
    let url = server.url.clone();
    let options = JoinOptions {
        keep_trying_every,
        ..fast()
    };
    let joining = tokio::spawn(async move { Meeting::join_with(&url, "tok", options).await });
    let mut conn = server.next_conn().await;
    let mut w = welcome("v", "viewer", 2, two("OFF_STAGE"));
    w["grace_ms"] = json!(grace_ms);
    conn.send(w).await;
    let meeting = within("join", joining).await.unwrap().unwrap();
    drop(conn);
    meeting
}

#[tokio::test]
async fn reconnecting_gives_up_after_the_grace_period() {
    let mut server = Scripted::start().await;
    let meeting = joined_then_dropped(&mut server, None, 300).await;
    let mut events = meeting.events();
    // The server accepts sockets but never welcomes them again.
    let mut held = Vec::new();
    let started = tokio::time::Instant::now();
    loop {
        tokio::select! {
            conn = server.conns.recv() => held.push(conn),
            event = events.recv() => {
                let event = serde_json::to_value(event.expect("open")).unwrap();
                if event["state"] == "disconnected" { break; }
            }
            _ = tokio::time::sleep(WAIT) => panic!("never gave up"),
        }
    }
    assert!(started.elapsed() >= Duration::from_millis(250));
    assert!(!held.is_empty(), "it tried");
}

#[tokio::test]
async fn reconnecting_keeps_trying_past_the_grace_period_and_starts_afresh() {
    let mut server = Scripted::start().await;
    let meeting = joined_then_dropped(&mut server, Some(Duration::from_millis(50)), 200).await;
    let mut events = meeting.events();
    // Sockets are taken but not welcomed until well past the grace period.
    let started = tokio::time::Instant::now();
    let mut attempts = 0;
    let mut conn = loop {
        tokio::select! {
            conn = server.conns.recv() => {
                let conn = conn.expect("the scripted server runs");
                attempts += 1;
                if started.elapsed() > Duration::from_millis(600) {
                    break conn;
                }
            }
            _ = tokio::time::sleep(WAIT) => panic!("stopped trying"),
        }
    };
    assert!(attempts > 2, "it kept trying ({attempts} attempts)");
    let mut w = welcome("v", "viewer", 3, two("OFF_STAGE"));
    w["resumed"] = json!(false);
    conn.send(w).await;
    loop {
        let event = within("an event", events.recv()).await.expect("open");
        let event = serde_json::to_value(event).unwrap();
        assert_ne!(event["state"], "disconnected", "gave up: {event}");
        if event["state"] == "connected" {
            assert_eq!(event["resumed"], false, "{event}");
            break;
        }
    }
}

/// The calls that end a session.
enum Ending {
    Leave,
    End,
}

/// Joins as `me` and starts `ending` (`meeting.leave` or `meeting.end`); returns once the
/// scripted server holds its request, with the call still in flight.
async fn session_ending(
    server: &mut Scripted,
    me: &str,
    preset: &str,
    ending: Ending,
) -> (
    Meeting,
    Conn,
    EventStream,
    Value,
    tokio::task::JoinHandle<Result<(), ClientError>>,
) {
    let (meeting, mut conn) = join(server, me, preset).await;
    let events = meeting.events();
    let m = meeting.clone();
    let (call, name) = match ending {
        Ending::Leave => (
            tokio::spawn(async move { m.leave().await }),
            "meeting.leave",
        ),
        Ending::End => (tokio::spawn(async move { m.end().await }), "meeting.end"),
    };
    let req = conn.request().await;
    assert_eq!(req["call"], name);
    (meeting, conn, events, req, call)
}

#[tokio::test]
async fn leave_ends_the_meeting() {
    let mut server = Scripted::start().await;
    let (meeting, mut conn, mut events, req, leaving) =
        session_ending(&mut server, "v", "viewer", Ending::Leave).await;
    // The goodbye may come first; the leave still succeeds.
    conn.send(json!({"type":"goodbye","reason":"left"})).await;
    conn.reply(&req["id"], Value::Null).await;
    within("leave", leaving).await.unwrap().expect("left");
    assert_eq!(
        next_event(&mut events).await,
        json!({"event":"connectionStateUpdate","state":"disconnected","reason":"left"})
    );
    assert!(within("end", events.recv()).await.is_none());
    assert!(matches!(meeting.leave().await, Err(ClientError::Closed)));
    assert_eq!(meeting.end_reason(), Some(CloseReason::Left));
}

#[tokio::test]
async fn a_refused_token_is_unauthorized_and_a_dead_address_is_connect() {
    let server = Scripted::start().await;
    server.refuse.store(true, Ordering::SeqCst);
    let err = Meeting::join(&server.url, "bad")
        .await
        .expect_err("refused");
    assert_eq!(err, ClientError::Unauthorized("token expired".into()));
    assert_eq!(err.code(), ErrorCode::Unauthorized);

    let err = Meeting::join("http://127.0.0.1:1", "t")
        .await
        .expect_err("nothing there");
    assert!(matches!(err, ClientError::Connect(_)), "{err:?}");
}

/// Each way a join fails has its own code, so an app can say which (never
/// `connection_lost`, which means a meeting joined and then lost).
#[tokio::test]
async fn each_join_failure_has_its_own_code() {
    let mut server = Scripted::start().await;
    let code = |r: Result<Meeting, ClientError>| match r {
        Ok(_) => panic!("joined"),
        Err(e) => e.code(),
    };

    assert_eq!(
        code(Meeting::join(&server.url, "expired").await),
        ErrorCode::TokenExpired
    );
    server.refuse.store(true, Ordering::SeqCst);
    assert_eq!(
        code(Meeting::join(&server.url, "bad").await),
        ErrorCode::Unauthorized
    );
    server.refuse.store(false, Ordering::SeqCst);
    // A web server without the signaling path.
    assert_eq!(
        code(Meeting::join(&server.url, "web-page").await),
        ErrorCode::NotOnstageServer
    );
    // A WebSocket server that does not speak the protocol.
    let joining = tokio::spawn({
        let url = server.url.clone();
        async move { Meeting::join(&url, "t").await }
    });
    let mut conn = server.next_conn().await;
    conn.ws
        .send(Message::Text(r#"{"hello":"world"}"#.into()))
        .await
        .unwrap();
    assert_eq!(
        code(within("join", joining).await.unwrap()),
        ErrorCode::NotOnstageServer
    );
    assert_eq!(
        code(Meeting::join("http://127.0.0.1:1", "t").await),
        ErrorCode::Unreachable
    );
    // Addresses that are none: no scheme, another scheme.
    for address in ["meet.example.com", "ftp://meet.example.com"] {
        assert_eq!(
            code(Meeting::join(address, "t").await),
            ErrorCode::InvalidServerUrl,
            "{address}"
        );
    }
    let bad_link = onstage_client::link::InviteLink::parse("onstage://join?server=http://h");
    assert_eq!(bad_link.unwrap_err().code(), ErrorCode::BadLink);
}

#[tokio::test]
async fn dropping_every_handle_closes_the_socket() {
    let mut server = Scripted::start().await;
    let (meeting, mut conn) = join(&mut server, "v", "viewer").await;
    drop(meeting);
    loop {
        match within("close", conn.ws.next()).await {
            Some(Ok(Message::Close(_))) | None | Some(Err(_)) => break,
            Some(Ok(_)) => continue,
        }
    }
}

#[test]
fn events_are_plain_data() {
    fn assert_send_sync<T: Send + Sync + Clone>() {}
    assert_send_sync::<MeetingEvent>();
    assert_send_sync::<Meeting>();
}

#[tokio::test]
async fn meeting_ended_stops_at_the_event_even_if_the_goodbye_is_lost() {
    let mut server = Scripted::start().await;
    let (meeting, mut conn) = join(&mut server, "v", "viewer").await;
    let mut events = meeting.events();
    // The event, then the socket drops without its goodbye: over all the same, no
    // reconnect (it would start a new session of a meeting that has ended).
    conn.send(json!({"type":"event","seq":3,"event":{"kind":"meeting_ended","by":"h"}}))
        .await;
    drop(conn);
    expect_meeting_ended_by(&mut events, "h").await;
    assert!(within("end", events.recv()).await.is_none(), "stream ends");
    over_for_good(&meeting, &mut server, CloseReason::MeetingEnded).await;
}

#[tokio::test]
async fn the_host_ending_succeeds_though_the_event_comes_before_its_reply() {
    let mut server = Scripted::start().await;
    let (meeting, mut conn, mut events, _req, ending) =
        session_ending(&mut server, "h", "host", Ending::End).await;
    conn.send(json!({"type":"event","seq":3,"event":{"kind":"meeting_ended","by":"h"}}))
        .await;
    within("end", ending).await.unwrap().expect("ended");
    expect_meeting_ended_by(&mut events, "h").await;
    assert_eq!(meeting.end_reason(), Some(CloseReason::MeetingEnded));
}
