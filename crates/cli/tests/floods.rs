//! What connection floods leave behind in a real `onstage serve` process: rounds of
//! thousands of half-open requests, each closed by the server's header timeout, must not
//! ratchet its memory up round after round.
//!
//! `flood_rounds_do_not_ratchet_memory` runs in `make test`; the same rounds, bigger and in
//! release, are the `bench_memory_after_floods` benchmark (BENCHMARKS.md).

mod support;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use support::Proc;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// The server's resident memory, from /proc.
fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("proc status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS")
}

/// Open file descriptors of the server: its sockets, mostly.
fn open_fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| d.count())
        .unwrap_or(0)
}

struct Flooded {
    server: Proc,
    addr: SocketAddr,
    pid: u32,
}

async fn serve(header_timeout_ms: u64) -> (Flooded, tempfile::TempDir) {
    let data = tempfile::tempdir().expect("temp dir");
    let timeout = header_timeout_ms.to_string();
    let mut server = Proc::spawn(
        "serve",
        &[
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--data",
            data.path().to_str().expect("utf-8"),
            "--header-timeout-ms",
            &timeout,
            "--max-connections",
            "15000",
        ],
        &[],
    );
    let ready = server.next().await.expect("ready line");
    let http = ready["http"].as_str().expect("http").to_owned();
    let addr: SocketAddr = http.trim_start_matches("http://").parse().expect("addr");
    let pid = server.child.id().expect("pid");
    (Flooded { server, addr, pid }, data)
}

/// Opens `n` connections that each send half a request and wait; returns once the server
/// has closed every one (its header timeout), with how long the last took.
async fn flood_round(addr: SocketAddr, n: usize) -> Duration {
    let started = Instant::now();
    let mut held = Vec::with_capacity(n);
    for _ in 0..n {
        let mut stream = TcpStream::connect(addr).await.expect("connect");
        // A request line and a few headers, never the blank line that ends them.
        stream
            .write_all(b"GET /v1/meetings HTTP/1.1\r\nhost: onstage\r\nuser-agent: flood\r\n")
            .await
            .expect("write");
        held.push(stream);
    }
    let waits: Vec<_> = held
        .into_iter()
        .map(|mut stream| {
            tokio::spawn(async move {
                let mut buf = [0u8; 64];
                while let Ok(n) = stream.read(&mut buf).await {
                    if n == 0 {
                        break;
                    }
                }
            })
        })
        .collect();
    for wait in waits {
        tokio::time::timeout(Duration::from_secs(60), wait)
            .await
            .expect("the server closes every half-open connection")
            .expect("task");
    }
    started.elapsed()
}

/// Waits until the server holds no more than its idle sockets.
async fn settle(pid: u32, idle_fds: usize) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while open_fds(pid) > idle_fds {
        assert!(
            Instant::now() < deadline,
            "{} fds open, {idle_fds} when idle",
            open_fds(pid)
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// RSS once it has stopped falling: an allocator hands freed pages back a moment after
/// the frees (bounded: at most 5 s of samples).
async fn steady_rss_kib(pid: u32) -> u64 {
    let mut samples = vec![rss_kib(pid)];
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
        samples.push(rss_kib(pid));
        let last = &samples[samples.len().saturating_sub(10)..];
        if last.len() == 10 && last.iter().max() == last.iter().min() {
            break;
        }
    }
    samples.into_iter().min().unwrap_or(0)
}

/// RSS after each round, in KiB, and the idle RSS before the first.
async fn rounds(connections: usize, rounds: usize, header_timeout_ms: u64) -> (u64, Vec<u64>) {
    let (flooded, _data) = serve(header_timeout_ms).await;
    let idle_fds = open_fds(flooded.pid);
    let idle = rss_kib(flooded.pid);
    let mut after = Vec::new();
    for round in 0..rounds {
        let took = flood_round(flooded.addr, connections).await;
        settle(flooded.pid, idle_fds).await;
        let rss = steady_rss_kib(flooded.pid).await;
        eprintln!(
            "round {}: {connections} half-open connections closed within {took:?}; RSS {} KiB",
            round + 1,
            rss
        );
        after.push(rss);
    }
    drop(flooded.server);
    (idle, after)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flood_rounds_do_not_ratchet_memory() {
    let (idle, after) = rounds(3000, 3, 1000).await;
    eprintln!("idle RSS {idle} KiB; after each round {after:?} KiB");
    // While held, the 3000 connections took ~60 MB. Once they are gone most of it must be
    // back with the system (what stays: thread caches, the allocator's pools), and later
    // rounds must reuse what the first left instead of adding more.
    let first = after[0];
    for (round, rss) in after.iter().enumerate() {
        assert!(
            *rss <= idle + 30 * 1024,
            "RSS after round {} is {rss} KiB, idle it was {idle} KiB: {after:?}",
            round + 1
        );
        assert!(
            *rss <= first + first / 5 + 4 * 1024,
            "RSS after round {} is {rss} KiB, after the first {first} KiB: {after:?}",
            round + 1
        );
    }
}

/// `cargo test --release -p onstage --test floods -- --ignored --nocapture`
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "benchmark: run by hand, see BENCHMARKS.md"]
async fn bench_memory_after_floods() {
    let (idle, after) = rounds(6000, 5, 2000).await;
    println!(
        "idle {} MB; after rounds of 6000 half-open connections: {:?} MB",
        idle / 1024,
        after.iter().map(|k| k / 1024).collect::<Vec<_>>()
    );
}
