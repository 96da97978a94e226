//! Pictures to the UI over a local WebSocket (docs/APP.md "Pictures").
//!
//! Why a socket: Tauri's IPC (events, channels, command responses) runs through the app's
//! main thread on Linux, one script evaluation or URI-scheme request per message. That
//! keeps one 30 fps tile but not four (BENCHMARKS.md "Desktop app: pictures from the
//! shell to the webview"). A WebSocket on 127.0.0.1 is carried by WebKit's network process
//! straight into the page, beside the main thread, so the pictures never queue behind the
//! UI's own IPC.
//!
//! The socket listens on 127.0.0.1 only, on a port the OS picks, behind a random key in its
//! path that only the UI learns (`video_socket`): other local programs cannot watch.
//!
//! A message is a 32-byte little-endian header `[u16 kind][u16 origin][u32 width]
//! [u32 height][u32 id_len][u64 ticket][f64 produced_unix_ms]`, the user id, then the
//! picture: kind 1 RGBA, kind 2 JPEG; origin 0 a participant (the user id follows), origin
//! 1 the local camera (no id: any user id, `"local"` too, is someone else). Which kind is
//! sent is measured in README.md ("The desktop app"): RGBA by default,
//! `ONSTAGE_PICTURES=jpeg` for the other.
//!
//! Backpressure: the UI answers each picture, once handed to its canvas, with the picture's
//! 8 ticket bytes. A tile has at most [`IN_FLIGHT_PER_TILE`] pictures unanswered; newer
//! pictures of a full tile are dropped (before they are converted): a busy or hidden
//! webview costs frames, never memory or delay.

use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::serve::ListenerExt;
use axum::Router;
use tokio::sync::{broadcast, mpsc};

use onstage_client::{Origin, Picture};
use onstage_media::{half_size, i420_to_rgb, i420_to_rgba, now_unix_us, VideoFrame};

use crate::state::lock;

/// The picture encodings of docs/APP.md.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PictureKind {
    Rgba = 1,
    Jpeg = 2,
}

/// JPEG quality: 80 keeps the test pattern's text readable at a tenth of RGBA's size.
const JPEG_QUALITY: u8 = 80;

/// Pictures of one tile sent and not yet answered. Two, so the next picture travels while
/// the page draws the last one: with one, a tile's rate is bounded by the round trip, and
/// on a loaded machine a round trip now and then takes longer than a frame. Each more
/// would only add a frame of delay when the page falls behind.
pub const IN_FLIGHT_PER_TILE: usize = 2;

/// Bytes before the user id in a picture message.
pub const HEADER_LEN: usize = 32;

/// The header's origin: a participant, named by the user id after the header.
pub const ORIGIN_REMOTE: u16 = 0;
/// The header's origin: this machine's camera (no user id follows).
pub const ORIGIN_LOCAL: u16 = 1;

/// Counters for logs and the benchmark.
#[derive(Debug, Default)]
pub struct PictureCounters {
    pub sent: AtomicU64,
    pub dropped_busy: AtomicU64,
    pub bytes: AtomicU64,
    /// Time spent converting (I420 -> RGBA or JPEG), microseconds.
    pub convert_us: AtomicU64,
}

/// The UI's socket, while one is open.
struct Viewer {
    /// Tells this connection from the one that replaced it (the page reloaded).
    id: u64,
    /// To the connection's writer task. Unbounded, yet never long: a tile has at most one
    /// picture in flight.
    pictures: mpsc::UnboundedSender<Vec<u8>>,
    /// Tiles with a picture in flight, by ticket.
    in_flight: HashMap<u64, Origin>,
}

impl Viewer {
    fn busy(&self, tile: &Origin) -> bool {
        self.in_flight.values().filter(|t| *t == tile).count() >= IN_FLIGHT_PER_TILE
    }
}

#[derive(Default)]
struct Inner {
    viewer: Option<Viewer>,
}

/// The picture pipe, shared by the commands, the socket and the pump threads.
#[derive(Clone)]
pub struct Pictures {
    kind: PictureKind,
    inner: Arc<Mutex<Inner>>,
    next: Arc<AtomicU64>,
    /// The path part of the socket URL that only the UI knows.
    key: Arc<str>,
    pub counters: Arc<PictureCounters>,
}

/// Why the picture socket could not start.
#[derive(Debug, thiserror::Error)]
#[error("cannot open the picture socket on 127.0.0.1: {0}")]
pub struct SocketError(#[from] std::io::Error);

impl Pictures {
    pub fn new(kind: PictureKind) -> Pictures {
        Pictures {
            kind,
            inner: Arc::default(),
            next: Arc::new(AtomicU64::new(1)),
            key: uuid::Uuid::new_v4().simple().to_string().into(),
            counters: Arc::default(),
        }
    }

    /// Opens the picture socket on a free port of 127.0.0.1 and serves it on the current
    /// tokio runtime for as long as the app runs. Returns the URL the UI connects to.
    pub async fn serve(&self) -> Result<String, SocketError> {
        let listener = tokio::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await?;
        let addr: SocketAddr = listener.local_addr()?;
        // Without it the tail of each picture can wait on Nagle for the page's delayed ACK.
        let listener = listener.tap_io(|tcp| {
            if let Err(e) = tcp.set_nodelay(true) {
                tracing::debug!(error = %e, "TCP_NODELAY on the picture socket");
            }
        });
        let router = Router::new()
            .route("/pictures/{key}", get(upgrade))
            .with_state(self.clone());
        tokio::spawn(async move {
            if let Err(e) = axum::serve(listener, router).await {
                tracing::error!(error = %e, "the picture socket stopped");
            }
        });
        Ok(format!("ws://{addr}/pictures/{}", self.key))
    }

    /// Converts and sends one picture, unless no UI is connected or its tile is full.
    pub fn offer(&self, origin: &Origin, frame: &VideoFrame) {
        let ticket = self.next.fetch_add(1, Ordering::Relaxed);
        let viewer_id = {
            let mut inner = lock(&self.inner);
            let Some(viewer) = inner.viewer.as_mut() else {
                return;
            };
            if viewer.busy(origin) {
                self.counters.dropped_busy.fetch_add(1, Ordering::Relaxed);
                return;
            }
            viewer.in_flight.insert(ticket, origin.clone());
            viewer.id
        };
        // The transport's delay starts here, when the shell has the decoded picture (the
        // webview compares with its own wall clock: same machine).
        let produced_ms = now_unix_us() as f64 / 1000.0;
        let started = Instant::now();
        let message = encode_message(self.kind, origin, ticket, produced_ms, frame);
        let micros = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX);
        self.counters
            .convert_us
            .fetch_add(micros, Ordering::Relaxed);

        let mut inner = lock(&self.inner);
        let Some(viewer) = inner.viewer.as_mut().filter(|v| v.id == viewer_id) else {
            return; // The UI went away (or was replaced) while converting.
        };
        let Some(message) = message else {
            viewer.in_flight.remove(&ticket);
            return;
        };
        let len = message.len() as u64;
        if viewer.pictures.send(message).is_err() {
            viewer.in_flight.remove(&ticket);
            return;
        }
        self.counters.bytes.fetch_add(len, Ordering::Relaxed);
        self.counters.sent.fetch_add(1, Ordering::Relaxed);
    }

    /// The UI drew (or dropped) the picture with this ticket: its tile may take the next.
    fn acknowledge(&self, viewer_id: u64, ticket: u64) {
        let mut inner = lock(&self.inner);
        if let Some(viewer) = inner.viewer.as_mut().filter(|v| v.id == viewer_id) {
            viewer.in_flight.remove(&ticket);
        }
    }

    /// Forgets the pictures in flight (leaving a meeting): their acknowledgements may never
    /// come, and the next meeting's tiles must not wait for them.
    pub fn clear(&self) {
        if let Some(viewer) = lock(&self.inner).viewer.as_mut() {
            viewer.in_flight.clear();
        }
    }

    /// Serves one UI connection until it closes or a newer one replaces it.
    async fn connected(self, socket: WebSocket) {
        use futures_util::{SinkExt, StreamExt};

        let (tx, mut rx) = mpsc::unbounded_channel::<Vec<u8>>();
        let viewer_id = self.next.fetch_add(1, Ordering::Relaxed);
        // A newer page replaces an older one; dropping the old sender ends its writer.
        lock(&self.inner).viewer = Some(Viewer {
            id: viewer_id,
            pictures: tx,
            in_flight: HashMap::new(),
        });
        tracing::debug!(viewer_id, "picture socket connected");

        let (mut sink, mut stream) = socket.split();
        let writer = async {
            while let Some(message) = rx.recv().await {
                if sink.send(Message::Binary(message.into())).await.is_err() {
                    break;
                }
            }
            let _ = sink.close().await;
        };
        let reader = async {
            while let Some(Ok(message)) = stream.next().await {
                match message {
                    Message::Binary(bytes) => match <[u8; 8]>::try_from(bytes.as_ref()) {
                        Ok(ticket) => self.acknowledge(viewer_id, u64::from_le_bytes(ticket)),
                        Err(_) => tracing::debug!(len = bytes.len(), "not a picture ticket"),
                    },
                    Message::Close(_) => break,
                    _ => {}
                }
            }
        };
        tokio::select! {
            () = writer => {}
            () = reader => {}
        }
        let mut inner = lock(&self.inner);
        if inner.viewer.as_ref().is_some_and(|v| v.id == viewer_id) {
            inner.viewer = None;
        }
        tracing::debug!(viewer_id, "picture socket closed");
    }

    /// Starts the pump: a thread that takes decoded pictures from the SDK and offers them.
    /// A plain thread because converting is CPU work (about 1 ms for RGBA, 7 ms for JPEG
    /// per 640x480 picture) that must not hold up the async runtime. Ends when `stop` is set or the
    /// media ends.
    pub fn pump(&self, mut frames: broadcast::Receiver<Picture>, stop: Arc<AtomicBool>) {
        let this = self.clone();
        let spawned = std::thread::Builder::new()
            .name("pictures".into())
            .spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    match frames.blocking_recv() {
                        Ok(picture) => this.offer(&picture.origin, &picture.frame),
                        // The SDK's queue is lossy by design: skipping is what we want.
                        Err(broadcast::error::RecvError::Lagged(n)) => {
                            this.counters.dropped_busy.fetch_add(n, Ordering::Relaxed);
                        }
                        Err(broadcast::error::RecvError::Closed) => break,
                    }
                }
            });
        if let Err(e) = spawned {
            tracing::error!(error = %e, "cannot start the picture thread");
        }
    }
}

/// `GET /pictures/{key}`: the UI's WebSocket. A wrong key is refused before the upgrade.
async fn upgrade(
    State(pictures): State<Pictures>,
    Path(key): Path<String>,
    ws: WebSocketUpgrade,
) -> Response {
    if key.as_str() != &*pictures.key {
        return (StatusCode::FORBIDDEN, "wrong picture key").into_response();
    }
    ws.on_upgrade(move |socket| pictures.connected(socket))
}

/// Pictures wider than this are halved before they cross to the webview: a tile on the
/// stage grid is at most a few hundred pixels wide, and the bytes through the webview's IPC
/// are what limits several tiles at 30 fps (a 640x480 RGBA picture is 1.2 MB, its half
/// 0.3 MB).
pub const MAX_TILE_WIDTH: u32 = 480;

/// The message of docs/APP.md for one picture; `None` for a malformed frame.
pub fn encode_message(
    kind: PictureKind,
    origin: &Origin,
    ticket: u64,
    produced_ms: f64,
    frame: &VideoFrame,
) -> Option<Vec<u8>> {
    if frame.validate().is_err() {
        return None;
    }
    let halved;
    let frame = if frame.width > MAX_TILE_WIDTH {
        halved = half_size(frame);
        &halved
    } else {
        frame
    };
    let (origin_code, id): (u16, &[u8]) = match origin {
        Origin::Remote(user) => (ORIGIN_REMOTE, user.as_str().as_bytes()),
        Origin::Local => (ORIGIN_LOCAL, &[]),
    };
    let mut out = Vec::with_capacity(
        HEADER_LEN + id.len() + frame.width as usize * frame.height as usize * 4,
    );
    out.extend_from_slice(&(kind as u16).to_le_bytes());
    out.extend_from_slice(&origin_code.to_le_bytes());
    for v in [frame.width, frame.height, id.len() as u32] {
        out.extend_from_slice(&v.to_le_bytes());
    }
    out.extend_from_slice(&ticket.to_le_bytes());
    out.extend_from_slice(&produced_ms.to_le_bytes());
    out.extend_from_slice(id);
    match kind {
        PictureKind::Rgba => out.extend_from_slice(&i420_to_rgba(frame)),
        PictureKind::Jpeg => {
            let rgb = i420_to_rgb(frame);
            let width = u16::try_from(frame.width).ok()?;
            let height = u16::try_from(frame.height).ok()?;
            let encoder = jpeg_encoder::Encoder::new(&mut out, JPEG_QUALITY);
            if let Err(e) = encoder.encode(&rgb, width, height, jpeg_encoder::ColorType::Rgb) {
                tracing::debug!(error = %e, "jpeg");
                return None;
            }
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_util::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::Message as WsMessage;

    fn remote(id: &str) -> Origin {
        Origin::Remote(onstage_client::UserId::new(id))
    }

    fn header(m: &[u8]) -> [u32; 4] {
        let w = |i: usize| u32::from_le_bytes([m[i], m[i + 1], m[i + 2], m[i + 3]]);
        [w(0), w(4), w(8), w(12)]
    }

    fn ticket(m: &[u8]) -> u64 {
        u64::from_le_bytes(m[16..24].try_into().unwrap())
    }

    #[test]
    fn rgba_and_jpeg_messages() {
        let frame = VideoFrame::black(64, 48, 0);
        let m = encode_message(PictureKind::Rgba, &remote("u1"), 7, 1234.5, &frame).unwrap();
        assert_eq!(header(&m), [1, 64, 48, 2]);
        assert_eq!(ticket(&m), 7);
        assert_eq!(f64::from_le_bytes(m[24..32].try_into().unwrap()), 1234.5);
        assert_eq!(&m[32..34], b"u1");
        assert_eq!(m.len(), 34 + 64 * 48 * 4);
        // Black, opaque.
        assert_eq!(&m[34..38], &[0, 0, 0, 255]);

        let m = encode_message(PictureKind::Jpeg, &remote("local"), 8, 0.0, &frame).unwrap();
        assert_eq!(header(&m), [2, 64, 48, 5]);
        assert_eq!(&m[32..37], b"local");
        assert_eq!(&m[37..39], &[0xFF, 0xD8], "a JPEG starts with SOI");
        assert_eq!(&m[m.len() - 2..], &[0xFF, 0xD9], "and ends with EOI");
    }

    #[test]
    fn the_local_camera_and_a_participant_called_local_are_told_apart() {
        let frame = VideoFrame::black(64, 48, 0);
        let origin = |m: &[u8]| u16::from_le_bytes([m[2], m[3]]);
        let mine = encode_message(PictureKind::Rgba, &Origin::Local, 1, 0.0, &frame).unwrap();
        assert_eq!(origin(&mine), ORIGIN_LOCAL);
        assert_eq!(
            u16::from_le_bytes([mine[0], mine[1]]),
            PictureKind::Rgba as u16
        );
        assert_eq!(header(&mine)[3], 0, "no user id for the local camera");
        assert_eq!(mine.len(), HEADER_LEN + 64 * 48 * 4);

        let theirs = encode_message(PictureKind::Rgba, &remote("local"), 2, 0.0, &frame).unwrap();
        assert_eq!(origin(&theirs), ORIGIN_REMOTE);
        assert_eq!(header(&theirs)[3], 5);
        assert_eq!(&theirs[HEADER_LEN..HEADER_LEN + 5], b"local");
    }

    #[test]
    fn large_pictures_are_halved_for_the_tiles() {
        let frame = VideoFrame::black(640, 480, 0);
        let m = encode_message(PictureKind::Rgba, &remote("u1"), 1, 0.0, &frame).unwrap();
        assert_eq!(header(&m), [1, 320, 240, 2]);
        assert_eq!(m.len(), 34 + 320 * 240 * 4);
    }

    #[test]
    fn a_malformed_frame_is_skipped() {
        let mut frame = VideoFrame::black(64, 48, 0);
        frame.y.truncate(10);
        assert!(encode_message(PictureKind::Rgba, &remote("u"), 1, 0.0, &frame).is_none());
    }

    type Client = tokio_tungstenite::WebSocketStream<
        tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>,
    >;

    async fn next_picture(client: &mut Client) -> Vec<u8> {
        let wait = tokio::time::timeout(std::time::Duration::from_secs(10), client.next());
        match wait.await {
            Ok(Some(Ok(WsMessage::Binary(b)))) => b.to_vec(),
            other => panic!("expected a picture, got {other:?}"),
        }
    }

    /// Offers pictures until `n` of them are sent (the connection registers asynchronously
    /// after the handshake, so the first offers may find no UI yet).
    async fn offer_until_sent(pictures: &Pictures, tile: &str, n: u64) {
        let frame = VideoFrame::black(64, 48, 0);
        for _ in 0..1000 {
            if pictures.counters.sent.load(Ordering::Relaxed) >= n {
                return;
            }
            pictures.offer(&remote(tile), &frame);
            tokio::task::yield_now().await;
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
        panic!("the picture was never sent");
    }

    #[tokio::test]
    async fn a_tile_takes_pictures_until_it_is_full_and_an_answer_frees_it() {
        let pictures = Pictures::new(PictureKind::Rgba);
        let url = pictures.serve().await.unwrap();
        let (mut client, _) = tokio_tungstenite::connect_async(&url).await.unwrap();

        offer_until_sent(&pictures, "alice", 1).await;
        let first = next_picture(&mut client).await;
        assert_eq!(header(&first), [1, 64, 48, 5]);
        assert_eq!(&first[32..37], b"alice");
        let frame = VideoFrame::black(64, 48, 0);
        pictures.offer(&remote("alice"), &frame);
        let second = next_picture(&mut client).await;
        assert_eq!(IN_FLIGHT_PER_TILE, 2);

        // Alice's tile is full: her next pictures are dropped, Bob's tile is not.
        let dropped = pictures.counters.dropped_busy.load(Ordering::Relaxed);
        pictures.offer(&remote("alice"), &frame);
        pictures.offer(&remote("alice"), &frame);
        assert_eq!(
            pictures.counters.dropped_busy.load(Ordering::Relaxed),
            dropped + 2
        );
        pictures.offer(&remote("bob"), &frame);
        let bob = next_picture(&mut client).await;
        assert_eq!(&bob[32..35], b"bob");

        // A stray message is ignored; the ticket frees the tile.
        client.send(WsMessage::Text("hello".into())).await.unwrap();
        client
            .send(WsMessage::Binary(vec![1, 2, 3].into()))
            .await
            .unwrap();
        client
            .send(WsMessage::Binary(first[16..24].to_vec().into()))
            .await
            .unwrap();
        offer_until_sent(&pictures, "alice", 4).await;
        let again = next_picture(&mut client).await;
        assert_eq!(&again[32..37], b"alice");
        assert!(ticket(&again) > ticket(&second));
    }

    #[tokio::test]
    async fn a_wrong_key_is_refused_and_a_new_page_replaces_the_old() {
        let pictures = Pictures::new(PictureKind::Rgba);
        let url = pictures.serve().await.unwrap();
        let wrong = format!("{}x", url);
        assert!(tokio_tungstenite::connect_async(&wrong).await.is_err());

        let (mut old, _) = tokio_tungstenite::connect_async(&url).await.unwrap();
        offer_until_sent(&pictures, "alice", 1).await;
        pictures.offer(&remote("alice"), &VideoFrame::black(64, 48, 0));
        next_picture(&mut old).await;
        next_picture(&mut old).await;

        // The page reloaded: the new socket gets pictures at once (the old page's full
        // tile is forgotten), the old one is closed.
        let (mut new, _) = tokio_tungstenite::connect_async(&url).await.unwrap();
        offer_until_sent(&pictures, "alice", 3).await;
        next_picture(&mut new).await;
        let closed = tokio::time::timeout(std::time::Duration::from_secs(10), async {
            loop {
                match old.next().await {
                    None | Some(Err(_)) | Some(Ok(WsMessage::Close(_))) => break,
                    Some(Ok(_)) => {}
                }
            }
        });
        assert!(closed.await.is_ok(), "the old socket stays open");
    }

    /// The shell's cost per picture (`cargo test -p onstage-app -- --ignored --nocapture`).
    #[test]
    #[ignore = "a measurement, not a check"]
    fn conversion_cost() {
        use onstage_media::{SyntheticVideo, VideoSource};
        let mut source = SyntheticVideo::unpaced(640, 480, 30);
        let frames: Vec<VideoFrame> = (0..60).filter_map(|_| source.next_frame().ok()).collect();
        for kind in [PictureKind::Rgba, PictureKind::Jpeg] {
            let t = Instant::now();
            let mut bytes = 0;
            for f in &frames {
                bytes += encode_message(kind, &remote("u"), 1, 0.0, f).map_or(0, |m| m.len());
            }
            let n = frames.len() as f64;
            println!(
                "{kind:?}: {:.2} ms and {:.0} KB per 640x480 picture",
                t.elapsed().as_secs_f64() * 1000.0 / n,
                bytes as f64 / n / 1000.0
            );
        }
    }
}
