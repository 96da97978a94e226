//! The front door under attack: half-open requests, connection floods from one source and
//! from many, slow bodies and admin-key guessing. Each attack costs the attacker its own
//! connections and nobody else anything.
//!
//! Sources are loopback addresses (`127.0.0.N`), with `limit_loopback` on so the
//! per-source caps apply to them as to remote addresses.

mod common;

use std::net::{Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use common::{within, Srv};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

fn source(n: u8) -> Ipv4Addr {
    Ipv4Addr::new(127, 0, 0, n)
}

fn server_addr(srv: &Srv) -> SocketAddr {
    srv.server.as_ref().expect("running").local_addr()
}

/// A TCP connection to the server from `from`.
async fn connect_from(from: Ipv4Addr, to: SocketAddr) -> TcpStream {
    let socket = TcpSocket::new_v4().expect("socket");
    socket
        .bind(SocketAddr::new(from.into(), 0))
        .expect("bind source");
    within("connect", socket.connect(to))
        .await
        .expect("connect")
}

/// Reads until the server closes; the bytes it sent.
async fn read_to_close(stream: &mut TcpStream) -> Vec<u8> {
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match stream.read(&mut buf).await {
            Ok(0) | Err(_) => return out,
            Ok(n) => out.extend_from_slice(&buf[..n]),
        }
    }
}

/// `GET /healthz` on an open connection; the status line's code.
async fn health_on(stream: &mut TcpStream) -> u16 {
    stream
        .write_all(b"GET /healthz HTTP/1.1\r\nhost: x\r\n\r\n")
        .await
        .expect("write");
    let mut buf = vec![0u8; 4096];
    let mut got = 0;
    loop {
        let n = within("health reply", stream.read(&mut buf[got..]))
            .await
            .expect("read");
        assert!(n > 0, "closed before answering");
        got += n;
        let text = String::from_utf8_lossy(&buf[..got]);
        if let Some((head, body)) = text.split_once("\r\n\r\n") {
            if body.contains('}') {
                return head[9..12].parse().expect("status");
            }
        }
    }
}

/// Waits until the server counts exactly `n` open connections (closes are noticed a
/// moment after the client drops its socket).
async fn await_open(srv: &Srv, n: usize) {
    let limits = srv.server.as_ref().expect("running").connection_limits();
    within(&format!("{n} open connections"), async {
        while limits.open() != n {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
}

async fn healthy_from(srv: &Srv, from: Ipv4Addr) -> bool {
    let (status, body) = srv.raw_from(from, "GET", "/healthz", None, None).await;
    status == 200 && body["status"] == "ok"
}

async fn metric(srv: &Srv, name: &str) -> f64 {
    let (_, body) = srv.raw("GET", "/metrics", None, None).await;
    let text = body.as_str().expect("metrics text").to_owned();
    text.lines()
        .filter(|l| l.starts_with(name))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn half_open_requests_are_closed_by_the_header_timeout_and_others_are_served() {
    // 24 sources of 125: each inside the per-source burst of new connections.
    const PER_SOURCE: usize = 125;
    const SOURCES: u8 = 24;
    let timeout = Duration::from_secs(2);
    let srv = Srv::start_with(|c| {
        c.http_header_timeout = timeout;
        c.max_connections_per_source = PER_SOURCE;
        c.max_connections = Some(4000);
        c.limit_loopback = true;
    })
    .await;
    let addr = server_addr(&srv);

    // Thousands of requests that never finish their head: a request line, then one
    // header line every 300 ms (well inside any per-read timeout).
    let opened = Instant::now();
    let mut held = Vec::new();
    for s in 0..SOURCES {
        for _ in 0..PER_SOURCE {
            let mut stream = connect_from(source(10 + s), addr).await;
            stream
                .write_all(b"GET /healthz HTTP/1.1\r\nhost: x\r\n")
                .await
                .expect("partial request");
            held.push((stream, Instant::now()));
        }
    }
    let drips: Vec<_> = held
        .into_iter()
        .map(|(mut stream, started)| {
            tokio::spawn(async move {
                let mut buf = [0u8; 256];
                loop {
                    tokio::select! {
                        read = stream.read(&mut buf) => match read {
                            // The server closed it (or answered 408 and closed).
                            Ok(0) | Err(_) => return started.elapsed(),
                            Ok(_) => {}
                        },
                        () = tokio::time::sleep(Duration::from_millis(300)) => {
                            if stream.write_all(b"x-drip: 1\r\n").await.is_err() {
                                return started.elapsed();
                            }
                        }
                    }
                }
            })
        })
        .collect();

    // A normal client is served throughout the flood.
    for _ in 0..5 {
        assert!(healthy_from(&srv, source(99)).await);
    }
    let mut closed_after = Vec::new();
    for drip in drips {
        let elapsed = within("half-open connection closed", drip)
            .await
            .expect("task");
        closed_after.push(elapsed);
    }
    closed_after.sort();
    let worst = *closed_after.last().expect("some");
    // Every one was closed by the header timeout, none held much past it.
    assert!(
        worst < timeout + Duration::from_secs(5),
        "the last half-open connection closed after {worst:?} (opened over {:?})",
        opened.elapsed()
    );
    // ... and none before it: the drip kept each one busy.
    assert!(
        closed_after[0] >= timeout - Duration::from_millis(50),
        "{:?}",
        closed_after[0]
    );
    assert!(healthy_from(&srv, source(99)).await);
    await_open(&srv, 0).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_the_caps_new_connections_get_a_fast_503_and_held_ones_are_untouched() {
    let srv = Srv::start_with(|c| {
        c.max_connections_per_source = 20;
        c.max_connections = Some(50);
        c.limit_loopback = true;
    })
    .await;
    let addr = server_addr(&srv);

    // One source takes its whole share; its next connection is refused at once.
    let mut mine = Vec::new();
    for _ in 0..20 {
        mine.push(connect_from(source(20), addr).await);
    }
    await_open(&srv, 20).await;
    let started = Instant::now();
    let mut refused = connect_from(source(20), addr).await;
    let _ = refused
        .write_all(b"GET /healthz HTTP/1.1\r\nhost: x\r\n\r\n")
        .await;
    let answer = String::from_utf8(within("503", read_to_close(&mut refused)).await).unwrap();
    assert!(answer.starts_with("HTTP/1.1 503 "), "{answer}");
    let body: Value = serde_json::from_str(answer.split_once("\r\n\r\n").unwrap().1).unwrap();
    assert_eq!(body["error"]["code"], "rate_limited", "{body}");
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    // Held connections still work; so does another source.
    assert_eq!(health_on(&mut mine[0]).await, 200);
    assert!(healthy_from(&srv, source(21)).await);
    await_open(&srv, 20).await;

    // Fill the server from other sources: 20 + 29 + 1 = 50, the last place...
    let mut others = Vec::new();
    for n in 0..29 {
        others.push(connect_from(source(30 + n / 10), addr).await);
    }
    let mut last = connect_from(source(40), addr).await;
    assert_eq!(health_on(&mut last).await, 200);
    await_open(&srv, 50).await;
    // ... past it everyone new is refused ...
    let (status, body) = srv
        .raw_from(source(41), "GET", "/healthz", None, None)
        .await;
    assert_eq!(status, 503, "{body}");
    // ... and every held one is still served.
    assert_eq!(health_on(&mut mine[19]).await, 200);
    assert_eq!(health_on(&mut others[0]).await, 200);

    // Places come back as connections close.
    drop((mine, others, last));
    await_open(&srv, 0).await;
    assert!(healthy_from(&srv, source(41)).await);
    let refused = metric(&srv, "onstage_http_refused_connections_total").await;
    assert!(refused >= 2.0, "{refused}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websockets_hold_their_place_until_they_close() {
    let srv = Srv::start_with(|c| {
        c.max_connections_per_source = 3;
        c.limit_loopback = true;
    })
    .await;
    let meeting = srv.meeting("caps").await;
    let guest = source(60);
    let addr = server_addr(&srv);
    let mut sockets = Vec::new();
    for i in 0..3 {
        let (_, token) = srv.participant(&meeting, &format!("p{i}"), "viewer").await;
        let tcp = connect_from(guest, addr).await;
        let (ws, _) = within(
            "ws connect",
            tokio_tungstenite::client_async(srv.ws_url(&token), tcp),
        )
        .await
        .expect("ws connects");
        sockets.push(ws);
    }
    // The three WebSockets are this source's share: a fourth connection is refused.
    let (status, _) = srv.raw_from(guest, "GET", "/healthz", None, None).await;
    assert_eq!(status, 503);
    // Closing one gives its place back.
    let mut ws = sockets.pop().expect("one");
    let _ = ws.close(None).await;
    drop(ws);
    within("a place back", async {
        while srv.raw_from(guest, "GET", "/healthz", None, None).await.0 != 200 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
}

#[tokio::test]
async fn a_request_whose_body_never_completes_gets_408() {
    let srv = Srv::start_with(|c| {
        c.http_request_timeout = Duration::from_millis(500);
    })
    .await;
    let mut stream = connect_from(source(1), server_addr(&srv)).await;
    let head = format!(
        "POST /v1/meetings HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {}\r\n\
         content-type: application/json\r\ncontent-length: 100\r\n\r\n{{\"title\"",
        srv.admin_key
    );
    stream.write_all(head.as_bytes()).await.expect("write");
    let answer = String::from_utf8(within("408", read_to_close(&mut stream)).await).unwrap();
    assert!(answer.starts_with("HTTP/1.1 408 "), "{answer}");
    assert!(answer.contains("\"bad_request\""), "{answer}");
    let (_, meetings) = srv.admin("GET", "/v1/meetings", None).await;
    assert_eq!(meetings["data"], serde_json::json!([]));
}

#[tokio::test]
async fn admin_key_guessing_is_made_to_wait_per_source() {
    let srv = Srv::start().await;
    let wrong = "x".repeat(64);
    let guesser = source(50);
    let mut statuses = Vec::new();
    for _ in 0..8 {
        let (status, body) = srv
            .raw_from(guesser, "GET", "/v1/meetings", None, Some(&wrong))
            .await;
        if status == 429 {
            assert_eq!(body["error"]["code"], "rate_limited", "{body}");
        }
        statuses.push(status);
    }
    // Five tries for typos, then a wait: the sixth wrong key is already answered 429.
    assert_eq!(statuses[..5], [401; 5], "{statuses:?}");
    assert_eq!(statuses[5..], [429; 3], "{statuses:?}");
    // While it waits, even the right key from there is not looked at...
    let (status, _) = srv
        .raw_from(guesser, "GET", "/v1/meetings", None, Some(&srv.admin_key))
        .await;
    assert_eq!(status, 429);
    // ... and from elsewhere the right key works at once.
    let (status, _) = srv
        .raw_from(
            source(51),
            "GET",
            "/v1/meetings",
            None,
            Some(&srv.admin_key),
        )
        .await;
    assert_eq!(status, 200);
    // A request without any key guesses nothing and costs nothing.
    for _ in 0..10 {
        let (status, _) = srv
            .raw_from(source(52), "GET", "/v1/meetings", None, None)
            .await;
        assert_eq!(status, 401);
    }
    let (status, _) = srv
        .raw_from(
            source(52),
            "GET",
            "/v1/meetings",
            None,
            Some(&srv.admin_key),
        )
        .await;
    assert_eq!(status, 200);
    assert!(metric(&srv, "onstage_admin_backoffs_total").await >= 4.0);

    // The wait says how long; after it, the source may try again. (The first wait may be
    // over by now: a wrong key then starts a longer one.)
    let client = reqwest::Client::builder()
        .local_address(std::net::IpAddr::V4(guesser))
        .build()
        .unwrap();
    let mut retry = None;
    for _ in 0..3 {
        let response = client
            .get(format!("{}/v1/meetings", srv.url))
            .bearer_auth(&wrong)
            .send()
            .await
            .unwrap();
        if response.status().as_u16() == 429 {
            retry = Some(
                response.headers()["retry-after"]
                    .to_str()
                    .unwrap()
                    .parse::<u64>()
                    .unwrap(),
            );
            break;
        }
    }
    let retry = retry.expect("a 429 with retry-after");
    assert!((1..=8).contains(&retry), "retry-after {retry}");
    // Asking while waiting does not lengthen the wait: the right key gets in once it is
    // over, about `retry` seconds from now.
    let asked = Instant::now();
    within("the wait to end", async {
        while srv
            .raw_from(guesser, "GET", "/v1/meetings", None, Some(&srv.admin_key))
            .await
            .0
            != 200
        {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
    assert!(asked.elapsed() <= Duration::from_secs(retry) + Duration::from_millis(500));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connecting_and_dropping_in_a_loop_is_slowed_per_source() {
    let srv = Srv::start_with(|c| c.limit_loopback = true).await;
    let addr = server_addr(&srv);
    let looper = source(70);
    // Connect, close at once, again: never more than one open, yet past the burst the
    // source is refused (503) while another is served.
    let mut refused = 0;
    for _ in 0..300 {
        let mut stream = connect_from(looper, addr).await;
        let _ = stream
            .write_all(b"GET /healthz HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
            .await;
        let answer = within("an answer", read_to_close(&mut stream)).await;
        if answer.starts_with(b"HTTP/1.1 503 ") {
            refused += 1;
        } else {
            assert!(answer.starts_with(b"HTTP/1.1 200 "), "{answer:?}");
        }
    }
    assert!(refused >= 100, "only {refused} of 300 refused");
    assert!(healthy_from(&srv, source(71)).await);
    let too_fast = metric(
        &srv,
        "onstage_http_refused_connections_total{reason=\"source_too_fast\"}",
    )
    .await;
    assert!(too_fast >= 100.0, "{too_fast}");
}
