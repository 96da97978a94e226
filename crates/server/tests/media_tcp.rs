//! The SFU's ICE-TCP listener against hostile peers: garbage, oversized and stalled frames,
//! and connections opened by the hundred. Each costs only its own connection, and the
//! server keeps serving. (Media over TCP itself is proven in the network lab:
//! `crates/cli/tests/networks.rs`.)

mod common;

use std::time::Duration;

use common::{within, Srv};
use onstage_server::sfu::net::{MAX_UNCLAIMED_TCP, TCP_CLAIM_TIMEOUT};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const TCP_CONNECTIONS: &str = "onstage_sfu_tcp_connections";

async fn connect(srv: &Srv) -> TcpStream {
    let media = srv
        .server
        .as_ref()
        .and_then(|s| s.media_addr())
        .expect("the SFU runs");
    TcpStream::connect(media)
        .await
        .expect("the media port takes TCP")
}

/// Waits until the server closes `stream` (EOF or reset), bounded.
async fn closed_by_server(what: &str, stream: &mut TcpStream) {
    within(what, async {
        let mut buf = [0u8; 64];
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    })
    .await
}

#[tokio::test]
async fn garbage_and_oversized_frames_close_only_their_connection() {
    let srv = Srv::start().await;
    let dropped_before = srv.metric("onstage_sfu_dropped_datagrams_total").await;

    // A well-formed frame that is no STUN, DTLS or RTP any session knows.
    let mut junk = connect(&srv).await;
    junk.write_all(&[0, 8, 0xde, 0xad, 0xbe, 0xef, 1, 2, 3, 4])
        .await
        .expect("write");
    closed_by_server("a junk frame closes its connection", &mut junk).await;
    assert!(srv.metric("onstage_sfu_dropped_datagrams_total").await > dropped_before);

    // A length beyond any datagram: not RFC 4571.
    let mut huge = connect(&srv).await;
    huge.write_all(&[0xff, 0xff, 1, 2, 3]).await.expect("write");
    closed_by_server("an oversized frame closes its connection", &mut huge).await;

    // Plain HTTP to the media port is garbage too.
    let mut http = connect(&srv).await;
    http.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .expect("write");
    closed_by_server("HTTP on the media port is closed", &mut http).await;

    // The server carries on.
    let (status, _) = srv.raw("GET", "/healthz", None, None).await;
    assert_eq!(status, 200);
    srv.await_metric(TCP_CONNECTIONS, 0.0).await;
}

#[tokio::test]
async fn unclaimed_connections_are_capped_and_closed_after_the_claim_timeout() {
    let srv = Srv::start().await;
    let mut idle = Vec::new();
    for _ in 0..MAX_UNCLAIMED_TCP + 40 {
        idle.push(connect(&srv).await);
    }
    // One that starts a frame and stalls halfway.
    let mut stalled = connect(&srv).await;
    stalled.write_all(&[0, 100, 1, 2, 3]).await.expect("write");
    // Beyond the cap, new connections are closed as they come.
    srv.await_metric(TCP_CONNECTIONS, MAX_UNCLAIMED_TCP as f64)
        .await;
    // Then nobody claimed any of them: all closed once the claim timeout has passed.
    tokio::time::timeout(TCP_CLAIM_TIMEOUT + Duration::from_secs(5), async {
        while srv.metric(TCP_CONNECTIONS).await != 0.0 {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
    .expect("unclaimed connections are closed after the claim timeout");
    closed_by_server("the stalled connection is closed", &mut stalled).await;
    for (i, stream) in idle.iter_mut().enumerate() {
        closed_by_server(&format!("idle connection {i} is closed"), stream).await;
    }
    let (status, _) = srv.raw("GET", "/healthz", None, None).await;
    assert_eq!(status, 200);
}
