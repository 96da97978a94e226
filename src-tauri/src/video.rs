//! Pictures to the UI over the `video_channel` (docs/APP.md "Pictures").
//!
//! A message is a 16-byte little-endian header `[kind][width][height][id_len]`, the user id,
//! then the picture: kind 1 RGBA, kind 2 JPEG. Which one is sent is measured in README.md
//! ("The desktop app"): RGBA by default, `ONSTAGE_PICTURES=jpeg` for the other.
//!
//! Backpressure. Tauri's `Channel::send` never blocks: a large message is parked in a map
//! until the webview fetches it, so a webview that falls behind (busy, hidden, throttled)
//! would make that map grow without bound. Instead the shell sends an 8-byte ticket through
//! the channel and keeps the picture itself; a channel interceptor ([`Pictures::intercept`])
//! turns the ticket into a fetch of `video_fetch`, which hands the picture over. Until that
//! fetch, the tile is busy and newer pictures of it are dropped, so at most one picture per
//! tile is ever waiting. The same eval'd script records when each picture arrived
//! (`window.__onstagePictures`), the timing hook the transport benchmark reads.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use tauri::ipc::{Channel, InvokeResponseBody, Response};
use tauri::{Runtime, Webview};
use tokio::sync::broadcast;

use onstage_client::RemoteVideo;
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

/// Counters for logs and the benchmark.
#[derive(Debug, Default)]
pub struct PictureCounters {
    pub sent: AtomicU64,
    pub dropped_busy: AtomicU64,
    pub bytes: AtomicU64,
    /// Time spent converting (I420 -> RGBA or JPEG), microseconds.
    pub convert_us: AtomicU64,
}

/// A picture waiting to be fetched by the webview.
struct Parked {
    tile: String,
    message: Vec<u8>,
    produced_ms: f64,
}

#[derive(Default)]
struct Inner {
    /// The UI's channel: its callback id (what the interceptor sees) and the channel.
    channel: Option<(u32, Channel<Response>)>,
    parked: HashMap<u64, Parked>,
    /// Tiles with a picture parked.
    busy: HashMap<String, Instant>,
}

/// The picture pipe, shared by the commands, the interceptor and the pump thread.
#[derive(Clone)]
pub struct Pictures {
    kind: PictureKind,
    inner: Arc<Mutex<Inner>>,
    next: Arc<AtomicU64>,
    pub counters: Arc<PictureCounters>,
}

impl Pictures {
    pub fn new(kind: PictureKind) -> Pictures {
        Pictures {
            kind,
            inner: Arc::default(),
            next: Arc::new(AtomicU64::new(1)),
            counters: Arc::default(),
        }
    }

    /// `video_channel`: pictures go to this channel from now on. A new channel (the page
    /// reloaded) forgets the pictures parked for the old one.
    pub fn set_channel(&self, channel: Channel<Response>) {
        let mut inner = lock(&self.inner);
        inner.parked.clear();
        inner.busy.clear();
        inner.channel = Some((channel.id(), channel));
    }

    /// Converts and sends one picture, unless its tile still has one waiting.
    pub fn offer(&self, user_id: &str, frame: &VideoFrame) {
        let channel = {
            let inner = lock(&self.inner);
            let Some((_, channel)) = inner.channel.as_ref() else {
                return;
            };
            if inner.busy.contains_key(user_id) {
                self.counters.dropped_busy.fetch_add(1, Ordering::Relaxed);
                return;
            }
            channel.clone()
        };
        // The transport's delay starts here, when the shell has the decoded picture (the
        // webview compares with its own wall clock: same machine).
        let produced_us = now_unix_us();
        let started = Instant::now();
        let Some(message) = encode_message(self.kind, user_id, frame) else {
            return;
        };
        let micros = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX);
        self.counters
            .convert_us
            .fetch_add(micros, Ordering::Relaxed);
        self.counters
            .bytes
            .fetch_add(message.len() as u64, Ordering::Relaxed);
        let ticket = self.next.fetch_add(1, Ordering::Relaxed);
        {
            let mut inner = lock(&self.inner);
            inner.busy.insert(user_id.to_owned(), Instant::now());
            inner.parked.insert(
                ticket,
                Parked {
                    tile: user_id.to_owned(),
                    message,
                    produced_ms: produced_us as f64 / 1000.0,
                },
            );
        }
        self.counters.sent.fetch_add(1, Ordering::Relaxed);
        if let Err(e) = channel.send(Response::new(ticket.to_le_bytes().to_vec())) {
            tracing::debug!(error = %e, "picture channel closed");
            let mut inner = lock(&self.inner);
            inner.parked.remove(&ticket);
            inner.busy.remove(user_id);
        }
    }

    /// The channel interceptor (`tauri::Builder::channel_interceptor`): turns a ticket on
    /// the video channel into a fetch of `video_fetch` + delivery to the channel's callback
    /// at the channel's message index (the JS side orders messages by it). Messages of every
    /// other channel go their normal way (`false`).
    pub fn intercept<R: Runtime>(
        &self,
        webview: &Webview<R>,
        callback: u32,
        index: usize,
        body: &InvokeResponseBody,
    ) -> bool {
        let produced_ms = {
            let inner = lock(&self.inner);
            if inner.channel.as_ref().map(|(id, _)| *id) != Some(callback) {
                return false;
            }
            let ticket = match body {
                InvokeResponseBody::Raw(b) => b
                    .as_slice()
                    .try_into()
                    .ok()
                    .map(u64::from_le_bytes)
                    .unwrap_or(0),
                InvokeResponseBody::Json(_) => 0,
            };
            match inner.parked.get(&ticket) {
                Some(p) => (ticket, p.produced_ms),
                None => {
                    // Cannot happen for our own tickets; deliver an empty message so the
                    // channel's ordering does not stall on a missing index.
                    let js = format!(
                        "window.__TAURI_INTERNALS__.runCallback({callback}, {{ message: new ArrayBuffer(0), index: {index} }})"
                    );
                    let _ = webview.eval(js);
                    return true;
                }
            }
        };
        let (ticket, produced) = produced_ms;
        let js = format!(
            "window.__TAURI_INTERNALS__.invoke('video_fetch', null, {{ headers: {{ 'Onstage-Picture': '{ticket}' }} }}).then((m) => {{ \
               const now = () => Date.now(); \
               const got = now(); \
               window.__TAURI_INTERNALS__.runCallback({callback}, {{ message: m, index: {index} }}); \
               const s = (window.__onstagePictures ??= {{ count: 0, bytes: 0, received: [], handled: [] }}); \
               s.count += 1; s.bytes += m.byteLength; \
               s.received.push(got - {produced:.3}); s.handled.push(now() - {produced:.3}); \
               if (s.received.length > 2000) {{ s.received.splice(0, 1000); s.handled.splice(0, 1000); }} \
             }}).catch((e) => {{ console.error(e); window.__TAURI_INTERNALS__.runCallback({callback}, {{ message: new ArrayBuffer(0), index: {index} }}); }})"
        );
        if let Err(e) = webview.eval(js) {
            tracing::debug!(error = %e, "picture delivery");
            let mut inner = lock(&self.inner);
            if let Some(p) = inner.parked.remove(&ticket) {
                inner.busy.remove(&p.tile);
            }
        }
        true
    }

    /// `video_fetch`: hands over a parked picture and frees its tile.
    pub fn fetch(&self, ticket: u64) -> Option<Vec<u8>> {
        let mut inner = lock(&self.inner);
        let parked = inner.parked.remove(&ticket)?;
        inner.busy.remove(&parked.tile);
        Some(parked.message)
    }

    /// Forgets everything parked (leaving a meeting).
    pub fn clear(&self) {
        let mut inner = lock(&self.inner);
        inner.parked.clear();
        inner.busy.clear();
    }

    /// Starts the pump: a thread that takes decoded pictures from the SDK and offers them.
    /// A plain thread because converting is CPU work (about 1 ms for RGBA, 4 ms for JPEG
    /// at 640x480) that must not hold up the async runtime. Ends when `stop` is set or the
    /// media ends.
    pub fn pump(&self, mut frames: broadcast::Receiver<RemoteVideo>, stop: Arc<AtomicBool>) {
        let this = self.clone();
        let spawned = std::thread::Builder::new()
            .name("pictures".into())
            .spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    match frames.blocking_recv() {
                        Ok(picture) => this.offer(picture.user_id.as_str(), &picture.frame),
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

/// Pictures wider than this are halved before they cross to the webview: a tile on the
/// stage grid is at most a few hundred pixels wide, and the bytes through the webview's IPC
/// are what limits several tiles at 30 fps (a 640x480 RGBA picture is 1.2 MB, its half
/// 0.3 MB).
pub const MAX_TILE_WIDTH: u32 = 480;

/// The message of docs/APP.md for one picture; `None` for a malformed frame.
pub fn encode_message(kind: PictureKind, user_id: &str, frame: &VideoFrame) -> Option<Vec<u8>> {
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
    let id = user_id.as_bytes();
    let mut out =
        Vec::with_capacity(16 + id.len() + frame.width as usize * frame.height as usize * 4);
    for v in [kind as u32, frame.width, frame.height, id.len() as u32] {
        out.extend_from_slice(&v.to_le_bytes());
    }
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

    fn header(m: &[u8]) -> [u32; 4] {
        let w = |i: usize| u32::from_le_bytes([m[i], m[i + 1], m[i + 2], m[i + 3]]);
        [w(0), w(4), w(8), w(12)]
    }

    #[test]
    fn rgba_and_jpeg_messages() {
        let frame = VideoFrame::black(64, 48, 0);
        let m = encode_message(PictureKind::Rgba, "u1", &frame).unwrap();
        assert_eq!(header(&m), [1, 64, 48, 2]);
        assert_eq!(&m[16..18], b"u1");
        assert_eq!(m.len(), 18 + 64 * 48 * 4);
        // Black, opaque.
        assert_eq!(&m[18..22], &[0, 0, 0, 255]);

        let m = encode_message(PictureKind::Jpeg, "local", &frame).unwrap();
        assert_eq!(header(&m), [2, 64, 48, 5]);
        assert_eq!(&m[16..21], b"local");
        assert_eq!(&m[21..23], &[0xFF, 0xD8], "a JPEG starts with SOI");
        assert_eq!(&m[m.len() - 2..], &[0xFF, 0xD9], "and ends with EOI");
    }

    #[test]
    fn large_pictures_are_halved_for_the_tiles() {
        let frame = VideoFrame::black(640, 480, 0);
        let m = encode_message(PictureKind::Rgba, "u1", &frame).unwrap();
        assert_eq!(header(&m), [1, 320, 240, 2]);
        assert_eq!(m.len(), 18 + 320 * 240 * 4);
    }

    #[test]
    fn a_malformed_frame_is_skipped() {
        let mut frame = VideoFrame::black(64, 48, 0);
        frame.y.truncate(10);
        assert!(encode_message(PictureKind::Rgba, "u", &frame).is_none());
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
                bytes += encode_message(kind, "u", f).map_or(0, |m| m.len());
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
