//! `onstage load-test --compare janus --viewers N`: our SFU, then Janus's VideoRoom, under
//! identical conditions, and one table. Also `--sfu janus` alone (without `--server`).
//!
//! Both SFUs run on the SFU host of a two-namespace [`Lab`] (Janus never sends media over
//! loopback; ours runs there too so that nothing differs), pinned to one core with
//! `taskset`; the benchmark itself ([`super::media`], the same code for both) runs as a
//! child `onstage load-test` on the client host, pinned to the other cores, and drives the
//! SFU with `--server`. The figures compared are the ones both SFUs can be measured by
//! alike: server CPU per packet *delivered to the viewers* (Janus keeps no forwarded
//! count), packets delivered per second, loss, packet latency, first frames, memory.

use std::process::Stdio;
use std::time::Duration;

use onstage_proto::{ErrorBody, ErrorCode};
use serde_json::{json, Value};
use tokio::io::AsyncReadExt;

use super::lab::{find_janus, JanusInstall, JanusProcess, Lab, CLIENT_IP, SFU_IP};
use super::{fail, round3, ChildServer};
use crate::cli::{LoadTestArgs, SfuKind};

/// How long Janus may take to start its HTTP server.
const JANUS_START: Duration = Duration::from_secs(15);

pub(super) async fn run(args: &LoadTestArgs) -> Result<Value, ErrorBody> {
    if args.viewers == 0 || args.publishers == 0 || args.duration == 0 {
        return Err(ErrorBody::new(
            ErrorCode::BadRequest,
            "need --viewers >= 1, --publishers >= 1 and --duration >= 1",
        ));
    }
    if args.sdk_clients {
        return Err(ErrorBody::new(
            ErrorCode::BadRequest,
            "the Janus modes use probes, not --sdk-clients",
        ));
    }
    // First what can be told without root: is Janus there at all?
    let install = find_janus(&args.janus)?;
    let lab = Lab::new()?;
    let work = async {
        if args.compare.is_some() {
            let ours = run_onstage(&lab, args).await?;
            let theirs = run_janus(&lab, &install, args).await?;
            Ok(table(args, &lab, ours, theirs))
        } else {
            let mut report = run_janus(&lab, &install, args).await?;
            report["lab"] = lab_info(&lab);
            Ok(report)
        }
    };
    // Ctrl-C or a TERM ends the run with the lab taken down (its drop), not left behind.
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .map_err(|e| fail(format!("signal handler: {e}")))?;
    tokio::select! {
        result = work => result,
        _ = tokio::signal::ctrl_c() => Err(fail("interrupted")),
        _ = term.recv() => Err(fail("terminated")),
    }
}

fn lab_info(lab: &Lab) -> Value {
    json!({
        "sfu_host": SFU_IP.to_string(),
        "client_host": CLIENT_IP.to_string(),
        "pinning": lab.pinning(),
    })
}

/// Our SFU on the SFU host, the benchmark on the client host.
async fn run_onstage(lab: &Lab, args: &LoadTestArgs) -> Result<Value, ErrorBody> {
    let exe = std::env::current_exe().map_err(|e| fail(format!("own path: {e}")))?;
    let key = onstage_server::storage::random_secret();
    let listen = format!("{SFU_IP}:0");
    // Every probe comes from the one client address: lift the per-source cap.
    let extra = ["--max-connections-per-source", "1000000"];
    let (server, url) =
        ChildServer::start_with(lab.sfu_command(&exe), &listen, &extra, &key).await?;
    let pid = server.pid().ok_or_else(|| fail("the server has no pid"))?;
    let result = bench_child(lab, args, SfuKind::Onstage, &url, pid, Some(&key)).await;
    server.stop().await;
    result
}

/// Janus on the SFU host, the benchmark on the client host. Failures carry Janus's log.
async fn run_janus(
    lab: &Lab,
    install: &JanusInstall,
    args: &LoadTestArgs,
) -> Result<Value, ErrorBody> {
    let mut janus = JanusProcess::start(lab, install)?;
    janus.ready(JANUS_START).await?;
    let pid = janus.pid().ok_or_else(|| fail("Janus has no pid"))?;
    let result = bench_child(lab, args, SfuKind::Janus, &janus.url(), pid, None).await;
    let result = result.map_err(|e| janus.failure(&e.message));
    janus.stop().await;
    result
}

/// `onstage load-test --server URL --server-pid PID ...` on the client host; its report.
async fn bench_child(
    lab: &Lab,
    args: &LoadTestArgs,
    sfu: SfuKind,
    url: &str,
    pid: u32,
    key: Option<&str>,
) -> Result<Value, ErrorBody> {
    let exe = std::env::current_exe().map_err(|e| fail(format!("own path: {e}")))?;
    let mut cmd = lab.client_command(&exe);
    cmd.arg("load-test")
        .args(["--sfu", sfu.name(), "--server", url])
        .args(["--server-pid", &pid.to_string()])
        .args(["--bind-ip", &CLIENT_IP.to_string()])
        .args(["--publishers", &args.publishers.to_string()])
        .args(["--viewers", &args.viewers.to_string()])
        .args(["--duration", &args.duration.to_string()])
        .args(["--late-viewers", &args.late_viewers.to_string()])
        .args(["--late-gap-ms", &args.late_gap_ms.to_string()])
        .args(["--video-bitrate", &args.video_bitrate.to_string()])
        .args(["--join-concurrency", &args.join_concurrency.to_string()])
        .env_remove("ONSTAGE_ADMIN_KEY")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true);
    if let Some(key) = key {
        cmd.env("ONSTAGE_ADMIN_KEY", key);
    }
    let mut child = cmd.spawn().map_err(|e| {
        fail(format!(
            "cannot start the benchmark on the client host: {e}"
        ))
    })?;
    let mut out = String::new();
    if let Some(mut stdout) = child.stdout.take() {
        let _ = stdout.read_to_string(&mut out).await;
    }
    let status = child
        .wait()
        .await
        .map_err(|e| fail(format!("the benchmark: {e}")))?;
    let last = out
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("");
    let report: Value = serde_json::from_str(last).map_err(|_| {
        fail(format!(
            "the benchmark against {} ended ({status}) without a report: {last}",
            sfu.name()
        ))
    })?;
    if report["ok"] == false {
        let message = report["error"]["message"].as_str().unwrap_or("failed");
        return Err(fail(format!(
            "the benchmark against {}: {message}",
            sfu.name()
        )));
    }
    Ok(report)
}

/// The figures both SFUs are compared by, from one benchmark report.
fn figures(report: &Value) -> Value {
    let steady = &report["steady"];
    json!({
        "us_per_forwarded_packet": steady["us_per_delivered_packet"],
        "forwarded_per_sec": steady["delivered_per_sec"],
        "server_core_fraction": steady["server_core_fraction"],
        "loss_percent": report["loss"]["percent"],
        "latency_ms": {
            "p50": report["latency_ms"]["p50"],
            "p95": report["latency_ms"]["p95"],
            "p99": report["latency_ms"]["p99"],
        },
        "late_viewer_first_keyframe_ms": {
            "p50": report["late_viewer_first_keyframe_ms"]["p50"],
            "p95": report["late_viewer_first_keyframe_ms"]["p95"],
        },
        "stage_join_to_first_frame_ms": {
            "p50": report["stage_join_to_first_frame_ms"]["p50"],
            "p95": report["stage_join_to_first_frame_ms"]["p95"],
        },
        "server_rss_kib": steady["server_rss_kib"],
        "subscriptions_with_media": report["subscriptions_with_media"],
        "subscribe_failures": report["subscribe_failures"],
        "missing_first_frame": report["missing_first_frame"],
        "late_viewer_failures": report["late_viewer_failures"],
    })
}

/// ours / theirs, where both are numbers and theirs is not zero.
fn ratio(ours: &Value, theirs: &Value) -> Value {
    match (ours.as_f64(), theirs.as_f64()) {
        (Some(a), Some(b)) if b != 0.0 => json!(round3(a / b)),
        _ => Value::Null,
    }
}

fn table(args: &LoadTestArgs, lab: &Lab, ours: Value, theirs: Value) -> Value {
    let (a, b) = (figures(&ours), figures(&theirs));
    let r = |path: &[&str]| {
        let pick = |v: &Value| path.iter().fold(v.clone(), |v, k| v[*k].clone());
        ratio(&pick(&a), &pick(&b))
    };
    json!({
        "event": "load_test_compare",
        "peer": "janus",
        "publishers": args.publishers,
        "viewers": args.viewers,
        "duration_secs": args.duration,
        "lab": lab_info(lab),
        "janus_event_loops": lab.sfu_cores(),
        "packets_counted": "delivered to the viewers (the same count for both SFUs)",
        "onstage": a,
        "janus": b,
        "ours_over_janus": {
            "us_per_forwarded_packet": r(&["us_per_forwarded_packet"]),
            "forwarded_per_sec": r(&["forwarded_per_sec"]),
            "latency_p95": r(&["latency_ms", "p95"]),
            "late_viewer_first_keyframe_p95": r(&["late_viewer_first_keyframe_ms", "p95"]),
            "stage_join_to_first_frame_p95": r(&["stage_join_to_first_frame_ms", "p95"]),
            "server_rss": r(&["server_rss_kib"]),
        },
        "runs": { "onstage": ours, "janus": theirs },
    })
}
