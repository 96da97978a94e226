//! Measurements of signaling abuse, run by hand on a release build:
//!
//! ```text
//! cargo test --release -p onstage-server --test abuse_bench -- --ignored --nocapture --test-threads 1
//! ```
//!
//! The server runs in this process on its own runtime, whose threads are named
//! `onstage-srv`; its CPU time is summed over those threads from `/proc/self/task/*/stat`,
//! so the load generator's own work is not counted.
//!
//! - `junk_frames`: one connection sends text frames of 1 MiB - 200 bytes as fast as the
//!   socket takes them, for up to 10 s: bytes handed to the socket, bytes the server's
//!   socket received (`ss`), server CPU seconds, replies and how soon the server closed;
//!   `junk_frames_under_the_cap`: the same with frames of 64 KiB - 200 bytes.
//! - `toggle_fan_out`: 300 connected participants; one of them alternates
//!   `stage.requestAccess` and `stage.cancelRequestAccess` at the per-connection rate limit
//!   (its burst of 50, then 19 calls/s) for 20 s; every message the other 299 receive is
//!   counted, and the toggler's replies by code.
//! - `reconnect_fan_out`: 300 connected participants; one of them connects, reads its
//!   first message and drops the socket, in a loop for 10 s; every message the other 299
//!   receive is counted.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::Message;

const SERVER_THREADS: &str = "onstage-srv";

/// Clock ticks per second of `/proc/*/stat` (USER_HZ, 100 on Linux).
const TICKS: f64 = 100.0;

/// Bytes received by the kernel on the server's side of its open TCP connections on
/// `port` (`ss`'s `bytes_received`), `None` when there is none (or no `ss`).
fn server_bytes_received(port: u16) -> Option<u64> {
    let out = std::process::Command::new("ss")
        .args([
            "-tinH",
            "state",
            "established",
            "sport",
            "=",
            &format!(":{port}"),
        ])
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    let counts: Vec<u64> = text
        .split_whitespace()
        .filter_map(|w| w.strip_prefix("bytes_received:")?.parse().ok())
        .collect();
    (!counts.is_empty()).then(|| counts.iter().sum())
}

/// CPU seconds of the server's threads so far.
fn server_cpu() -> f64 {
    let mut cpu = 0.0;
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return 0.0;
    };
    for task in tasks.flatten() {
        let Ok(stat) = std::fs::read_to_string(task.path().join("stat")) else {
            continue;
        };
        let (Some(open), Some(close)) = (stat.find('('), stat.rfind(')')) else {
            continue;
        };
        if !stat[open + 1..close].starts_with(SERVER_THREADS) {
            continue;
        }
        // After the name: state is field 3; utime and stime are fields 14 and 15.
        let fields: Vec<&str> = stat[close + 2..].split_whitespace().collect();
        let ticks: u64 = fields
            .get(11..13)
            .map(|f| f.iter().filter_map(|v| v.parse::<u64>().ok()).sum())
            .unwrap_or(0);
        cpu += ticks as f64 / TICKS;
    }
    cpu
}

/// The testkit's server, running on a runtime of its own (see above).
struct Bench {
    /// Dropped, and so stopped, before its runtime.
    srv: onstage_testkit::TestServer,
    _server_rt: tokio::runtime::Runtime,
}

impl Bench {
    fn start() -> Bench {
        let server_rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name(SERVER_THREADS)
            .enable_all()
            .build()
            .expect("server runtime");
        // Signaling only: the SFU is not what is measured.
        let srv = server_rt.block_on(onstage_testkit::TestServer::start_with(|config| {
            config.media_udp = None
        }));
        Bench {
            srv,
            _server_rt: server_rt,
        }
    }
}

impl std::ops::Deref for Bench {
    type Target = onstage_testkit::TestServer;

    fn deref(&self) -> &Self::Target {
        &self.srv
    }
}

fn client_rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("bench-client")
        .enable_all()
        .build()
        .expect("client runtime")
}

#[test]
#[ignore = "a measurement: run by hand with --release"]
fn junk_frames() {
    junk(1024 * 1024 - 200);
}

/// The same with frames just under the hard cap: read, throttled, then closed.
#[test]
#[ignore = "a measurement: run by hand with --release"]
fn junk_frames_under_the_cap() {
    junk(64 * 1024 - 200);
}

/// One connection sends `len`-byte text frames (not JSON) as fast as it can for 10 s.
fn junk(len: usize) {
    let bench = Bench::start();
    client_rt().block_on(async {
        let meeting = bench.meeting("bench").await;
        let (_, token) = bench.participant(&meeting, "junk", "viewer").await;
        let (ws, _) = tokio_tungstenite::connect_async(bench.ws_url(&token))
            .await
            .expect("connects");
        let (mut sink, mut stream) = ws.split();
        let replies = Arc::new(AtomicU64::new(0));
        let goodbye = Arc::new(std::sync::Mutex::new(None::<String>));
        let closed = Arc::new(AtomicBool::new(false));
        let started = Instant::now();
        let closed_after = Arc::new(std::sync::Mutex::new(None::<Duration>));
        let reader = {
            let (replies, goodbye, closed, closed_after) = (
                replies.clone(),
                goodbye.clone(),
                closed.clone(),
                closed_after.clone(),
            );
            tokio::spawn(async move {
                while let Some(Ok(msg)) = stream.next().await {
                    match msg {
                        Message::Text(t) => {
                            let v: Value = serde_json::from_str(t.as_str()).unwrap_or_default();
                            if v["type"] == "goodbye" {
                                *goodbye.lock().expect("lock") = Some(v["reason"].to_string());
                            } else if v["type"] != "welcome" {
                                replies.fetch_add(1, Ordering::Relaxed);
                            }
                        }
                        Message::Close(_) => break,
                        _ => {}
                    }
                }
                closed.store(true, Ordering::Relaxed);
                *closed_after.lock().expect("lock") = Some(started.elapsed());
            })
        };
        let port = url::Url::parse(&bench.url)
            .ok()
            .and_then(|u| u.port())
            .expect("port");
        let cpu0 = server_cpu();
        let frame = "x".repeat(len);
        let mut sent_frames = 0u64;
        // The server side's received bytes, sampled every 100 ms while the connection is
        // open: the last sample before the end.
        let mut received = None;
        let mut sampled = Instant::now() - Duration::from_secs(1);
        let deadline = started + Duration::from_secs(10);
        while Instant::now() < deadline && !closed.load(Ordering::Relaxed) {
            if sampled.elapsed() >= Duration::from_millis(100) {
                received = server_bytes_received(port).or(received);
                sampled = Instant::now();
            }
            let send = sink.send(Message::text(frame.clone()));
            match tokio::time::timeout_at(deadline.into(), send).await {
                Ok(Ok(())) => sent_frames += 1,
                Ok(Err(_)) | Err(_) => break,
            }
        }
        let elapsed = started.elapsed();
        received = server_bytes_received(port).or(received);
        let _ = tokio::time::timeout(Duration::from_secs(2), reader).await;
        let cpu1 = server_cpu();
        println!(
            "junk_frames: {sent_frames} frames of {} B handed to the socket ({:.1} MB) in {:.2} s; \
             server's socket received {} (last sample), server CPU {:.2} s ({:.4} CPU-s per MB \
             sent), {} replies, goodbye {:?}, closed after {:?}",
            frame.len(),
            (sent_frames * frame.len() as u64) as f64 / 1e6,
            elapsed.as_secs_f64(),
            received.map_or("?".to_owned(), |b| format!("{:.1} MB", b as f64 / 1e6)),
            cpu1 - cpu0,
            (cpu1 - cpu0) / ((sent_frames.max(1) * frame.len() as u64) as f64 / 1e6),
            replies.load(Ordering::Relaxed),
            goodbye.lock().expect("lock").clone(),
            *closed_after.lock().expect("lock"),
        );
    });
}

#[test]
#[ignore = "a measurement: run by hand with --release"]
fn toggle_fan_out() {
    const WATCHERS: usize = 299;
    const SECS: u64 = 20;
    let bench = Bench::start();
    client_rt().block_on(async {
        let meeting = bench.meeting("bench").await;
        let (toggler_id, token) = bench.participant(&meeting, "toggler", "viewer").await;
        let watchers = Watchers::join(&bench, &meeting, WATCHERS, &toggler_id).await;
        let Watchers {
            received,
            about,
            counting,
            ..
        } = &watchers;
        let (ws, _) = tokio_tungstenite::connect_async(bench.ws_url(&token))
            .await
            .expect("connects");
        let (mut sink, mut stream) = ws.split();
        let codes = Arc::new(std::sync::Mutex::new(std::collections::BTreeMap::<
            String,
            u64,
        >::new()));
        let reader = {
            let codes = codes.clone();
            tokio::spawn(async move {
                while let Some(Ok(msg)) = stream.next().await {
                    let Message::Text(t) = msg else { continue };
                    let v: Value = serde_json::from_str(t.as_str()).unwrap_or_default();
                    if v["type"] == "reply" {
                        let code = if v["ok"] == json!(true) {
                            "ok".to_owned()
                        } else {
                            v["error"]["code"].as_str().unwrap_or("?").to_owned()
                        };
                        *codes.lock().expect("lock").entry(code).or_default() += 1;
                    }
                }
            })
        };
        // Let the joins' events drain before counting.
        tokio::time::sleep(Duration::from_secs(3)).await;
        counting.store(true, Ordering::Relaxed);
        let cpu0 = server_cpu();
        let started = Instant::now();
        // The per-connection limit's burst (50) at once, then a call every 52 ms (the limit
        // refills 20 a second; a little slower, so that no call arrives early and is
        // dropped): as fast as the limit allows, and every call reaches the room.
        let mut next = tokio::time::Instant::now();
        let mut id = 0u64;
        while started.elapsed() < Duration::from_secs(SECS) {
            id += 1;
            let call = if id % 2 == 1 {
                "stage.requestAccess"
            } else {
                "stage.cancelRequestAccess"
            };
            let text = json!({"id": id, "call": call}).to_string();
            if sink.send(Message::text(text)).await.is_err() {
                break;
            }
            if id >= 50 {
                next += Duration::from_millis(52);
                tokio::time::sleep_until(next).await;
            }
        }
        let elapsed = started.elapsed().as_secs_f64();
        tokio::time::sleep(Duration::from_secs(1)).await;
        counting.store(false, Ordering::Relaxed);
        let cpu1 = server_cpu();
        let total = received.load(Ordering::Relaxed);
        println!(
            "toggle_fan_out: {id} calls in {elapsed:.1} s, replies {:?}; {WATCHERS} watchers \
             received {total} messages ({:.0}/s, {:.1} per call), {} of them about the \
             toggler; server CPU {:.2} s",
            codes.lock().expect("lock"),
            total as f64 / elapsed,
            total as f64 / id as f64,
            about.load(Ordering::Relaxed),
            cpu1 - cpu0,
        );
        reader.abort();
        watchers.stop();
    });
}

/// `n` connected participants that count every message they receive while `counting`,
/// and those naming `subject`.
struct Watchers {
    received: Arc<AtomicU64>,
    about: Arc<AtomicU64>,
    counting: Arc<AtomicBool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Watchers {
    async fn join(bench: &Bench, meeting: &str, n: usize, subject: &str) -> Watchers {
        let pattern = format!(r#""user_id":"{subject}""#);
        let received = Arc::new(AtomicU64::new(0));
        let about = Arc::new(AtomicU64::new(0));
        let counting = Arc::new(AtomicBool::new(false));
        let mut tasks = Vec::new();
        for i in 0..n {
            let (_, token) = bench.participant(meeting, &format!("w{i}"), "viewer").await;
            let (ws, _) = tokio_tungstenite::connect_async(bench.ws_url(&token))
                .await
                .expect("connects");
            let (received, about, counting) = (received.clone(), about.clone(), counting.clone());
            let pattern = pattern.clone();
            tasks.push(tokio::spawn(async move {
                let (_sink, mut stream) = ws.split();
                while let Some(Ok(msg)) = stream.next().await {
                    let Message::Text(t) = msg else { continue };
                    if counting.load(Ordering::Relaxed) {
                        received.fetch_add(1, Ordering::Relaxed);
                        if t.as_str().contains(&pattern) {
                            about.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }
            }));
        }
        Watchers {
            received,
            about,
            counting,
            tasks,
        }
    }

    fn stop(self) {
        for task in self.tasks {
            task.abort();
        }
    }
}

#[test]
#[ignore = "a measurement: run by hand with --release"]
fn reconnect_fan_out() {
    const WATCHERS: usize = 299;
    const SECS: u64 = 10;
    let bench = Bench::start();
    client_rt().block_on(async {
        let meeting = bench.meeting("bench").await;
        let (looper_id, token) = bench.participant(&meeting, "looper", "viewer").await;
        let watchers = Watchers::join(&bench, &meeting, WATCHERS, &looper_id).await;
        tokio::time::sleep(Duration::from_secs(3)).await;
        watchers.counting.store(true, Ordering::Relaxed);
        let cpu0 = server_cpu();
        let started = Instant::now();
        let (mut welcomed, mut refused) = (0u64, 0u64);
        // Connect, read the first message (a welcome or a refusal), drop the socket
        // without a close, again, as fast as the server lets us.
        while started.elapsed() < Duration::from_secs(SECS) {
            let Ok((mut ws, _)) = tokio_tungstenite::connect_async(bench.ws_url(&token)).await
            else {
                continue;
            };
            while let Some(Ok(msg)) = ws.next().await {
                let Message::Text(t) = msg else { continue };
                if t.as_str().starts_with(r#"{"type":"welcome""#) {
                    welcomed += 1;
                } else {
                    refused += 1;
                }
                break;
            }
        }
        let elapsed = started.elapsed().as_secs_f64();
        tokio::time::sleep(Duration::from_secs(1)).await;
        watchers.counting.store(false, Ordering::Relaxed);
        let cpu1 = server_cpu();
        let total = watchers.received.load(Ordering::Relaxed);
        println!(
            "reconnect_fan_out: {} connections in {elapsed:.1} s ({welcomed} welcomed, \
             {refused} refused); {WATCHERS} watchers received {total} messages ({:.0}/s), {} \
             of them about the looper; server CPU {:.2} s",
            welcomed + refused,
            total as f64 / elapsed,
            watchers.about.load(Ordering::Relaxed),
            cpu1 - cpu0,
        );
        watchers.stop();
    });
}
