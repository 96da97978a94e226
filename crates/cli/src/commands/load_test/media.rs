//! `onstage load-test --publishers M --viewers N --duration SECS`: the SFU benchmark.
//!
//! M participants (host preset) join the stage one after another while N viewers wait;
//! every viewer subscribes to a publisher as soon as it sees it go ON_STAGE. Publishers
//! and viewers are [`onstage_probe`] endpoints (real WebRTC, synthetic H.264-shaped
//! video and Opus-sized audio, nothing encoded or decoded), so this process stays light
//! and the figures are the server's. Measured:
//!
//! 1. Stage join -> first frame: from the publisher's `stage.join` call to each viewer's
//!    first keyframe packet of it (includes the viewers' subscriptions and connections).
//! 2. A steady window of `--duration` seconds: the server's CPU time (utime + stime from
//!    `/proc/<pid>/stat`), packets forwarded (`onstage_sfu_forwarded_packets_total` before
//!    and after), hence microseconds of server CPU per forwarded packet and viewers per
//!    core; packet latency (send -> arrival, first packet of each frame) at the viewers.
//! 3. `--late-viewers` viewers subscribing to the live stage one after another (400 ms
//!    apart): time from the subscribe call to their first keyframe packet.
//!
//! Loss is counted per viewer by sequence numbers from its first packet to its last, over
//! the whole run, repairs (NACK/RTX) counting as received.

use std::sync::Arc;
use std::time::{Duration, Instant};

use onstage_client::{Meeting, MeetingEvent, StageStatus, UserId};
use onstage_probe::{ProbePublisher, ProbeViewer, PublisherOptions, ViewerOptions};
use onstage_proto::{ErrorBody, ErrorCode};
use serde_json::{json, Value};
use tokio::sync::{mpsc, Semaphore};

use super::{cpu_seconds, fail, percentile, round3, rss_kib};
use crate::cli::LoadTestArgs;
use onstage_client::AdminClient;
use onstage_proto::rest::{AddParticipant, CreateMeeting};

/// How long everyone may take to get a first keyframe after a stage join.
const FIRST_FRAME_TIMEOUT: Duration = Duration::from_secs(30);

/// One viewer's subscriptions, by publisher index.
struct Viewer {
    meeting: Meeting,
    probes: Vec<Option<ProbeViewer>>,
}

pub(super) async fn run(args: &LoadTestArgs) -> Result<Value, ErrorBody> {
    let (m, n) = (args.publishers, args.viewers);
    if m == 0 || n == 0 || args.duration == 0 {
        return Err(ErrorBody::new(
            ErrorCode::BadRequest,
            "need --publishers >= 1, --viewers >= 1 and --duration >= 1",
        ));
    }
    let (child, url, key, pid) = super::server_under_test(args).await?;
    let result = bench(args, &url, &key, pid).await;
    if let Some(child) = child {
        child.stop().await;
    }
    result
}

async fn bench(
    args: &LoadTestArgs,
    url: &str,
    key: &str,
    pid: Option<u32>,
) -> Result<Value, ErrorBody> {
    let (m, n, late) = (args.publishers, args.viewers, args.late_viewers);
    let admin = AdminClient::new(url, key)?;
    let max_on_stage = u32::try_from(m).unwrap_or(u32::MAX).max(25);
    let request = CreateMeeting {
        title: "media load test".into(),
        max_on_stage: Some(max_on_stage),
    };
    let meeting_id = admin.create_meeting(&request).await?.id.to_string();

    // Everyone registers and joins first: publishers, waiting viewers, late viewers.
    let join_started = Instant::now();
    let gate = Arc::new(Semaphore::new(args.join_concurrency.max(1)));
    let mut joins = Vec::with_capacity(m + n + late);
    for i in 0..m + n + late {
        let (admin, meeting_id, url, gate) = (
            admin.clone(),
            meeting_id.clone(),
            url.to_owned(),
            gate.clone(),
        );
        joins.push(tokio::spawn(async move {
            let _permit = gate.acquire().await;
            let (name, preset) = if i < m {
                (format!("pub-{i}"), "host")
            } else {
                (format!("viewer-{}", i - m), "viewer")
            };
            let p = admin
                .add_participant(&meeting_id, &AddParticipant::new(name, preset))
                .await?;
            Meeting::join(&url, &p.token)
                .await
                .map_err(|e| fail(format!("join failed: {e}")))
        }));
    }
    let mut meetings = Vec::with_capacity(joins.len());
    for j in joins {
        meetings.push(j.await.map_err(|e| fail(e.to_string()))??);
    }
    let join_all_secs = join_started.elapsed().as_secs_f64();
    let late_meetings = meetings.split_off(m + n);
    let viewer_meetings = meetings.split_off(m);
    let publisher_meetings = meetings;
    let publisher_ids: Vec<UserId> = publisher_meetings.iter().map(|p| p.user_id()).collect();

    // Viewers subscribe to whoever goes ON_STAGE, as an app would.
    let (sub_tx, mut sub_rx) = mpsc::unbounded_channel();
    for (vi, vm) in viewer_meetings.iter().enumerate() {
        let mut events = vm.events();
        let (vm, ids, tx) = (vm.clone(), publisher_ids.clone(), sub_tx.clone());
        tokio::spawn(async move {
            while let Some(e) = events.recv().await {
                let MeetingEvent::ParticipantStageStatus { user_id, status } = e else {
                    continue;
                };
                let Some(pi) = ids.iter().position(|id| *id == user_id) else {
                    continue;
                };
                if status != StageStatus::OnStage {
                    continue;
                }
                let (vm, tx) = (vm.clone(), tx.clone());
                tokio::spawn(async move {
                    let probe =
                        ProbeViewer::start_with(&vm, &user_id, ViewerOptions::default()).await;
                    let _ = tx.send((vi, pi, probe));
                });
            }
        });
    }
    drop(sub_tx);
    let mut viewers: Vec<Viewer> = viewer_meetings
        .into_iter()
        .map(|meeting| Viewer {
            meeting,
            probes: (0..m).map(|_| None).collect(),
        })
        .collect();

    // 1. Stage joins, one publisher at a time, everyone watching.
    let mut publishers = Vec::with_capacity(m);
    let mut join_to_frame_ms = Vec::with_capacity(m * n);
    // Where the time goes, from the join call: the join's reply, the publisher's session
    // connected, and at each viewer: subscribe sent, answered, connected.
    let mut steps: [Vec<f64>; 5] = Default::default();
    let mut subscribe_failures = 0usize;
    let mut missing_first_frame = 0usize;
    for (pi, pm) in publisher_meetings.iter().enumerate() {
        let t0 = Instant::now();
        let ms = |at: Instant| at.saturating_duration_since(t0).as_secs_f64() * 1e3;
        pm.stage()
            .join()
            .await
            .map_err(|e| fail(format!("stage join: {e}")))?;
        steps[0].push(ms(Instant::now()));
        let opts = PublisherOptions {
            video_bitrate_bps: u64::from(args.video_bitrate),
            ..PublisherOptions::default()
        };
        let publisher = ProbePublisher::start(pm, opts)
            .await
            .map_err(|e| fail(format!("publisher {pi}: {e}")))?;
        steps[1].push(ms(publisher.connected_at()));
        publishers.push(publisher);
        let deadline = t0 + FIRST_FRAME_TIMEOUT;
        let mut pending = n;
        let mut got = vec![false; n];
        while pending > 0 && Instant::now() < deadline {
            while let Ok((vi, p, probe)) = sub_rx.try_recv() {
                match probe {
                    Ok(probe) => viewers[vi].probes[p] = Some(probe),
                    Err(e) => {
                        subscribe_failures += 1;
                        tracing::warn!(viewer = vi, error = %e, "subscribe failed");
                    }
                }
            }
            for (vi, v) in viewers.iter().enumerate() {
                if got[vi] {
                    continue;
                }
                if let Some(at) = v.probes[pi].as_ref().and_then(|p| p.first_keyframe_at()) {
                    got[vi] = true;
                    pending -= 1;
                    join_to_frame_ms.push(ms(at));
                }
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        missing_first_frame += pending;
        for p in viewers.iter().filter_map(|v| v.probes[pi].as_ref()) {
            let s = p.stats();
            for (k, at) in [s.started_at, s.answered_at, s.connected_at]
                .into_iter()
                .enumerate()
            {
                if let Some(at) = at {
                    steps[2 + k].push(ms(at));
                }
            }
        }
    }

    // 2. The steady window.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let http = reqwest::Client::new();
    let latency_marks: Vec<Vec<usize>> = viewers
        .iter()
        .map(|v| {
            v.probes
                .iter()
                .map(|p| p.as_ref().map_or(0, |p| p.stats().latencies_us.len()))
                .collect()
        })
        .collect();
    let cpu_before = pid.and_then(cpu_seconds);
    let own_before = cpu_seconds(std::process::id());
    let fwd_before = metric(&http, url, "onstage_sfu_forwarded_packets_total").await;
    let window_start = Instant::now();
    tokio::time::sleep(Duration::from_secs(args.duration)).await;
    let cpu_after = pid.and_then(cpu_seconds);
    let own_after = cpu_seconds(std::process::id());
    let fwd_after = metric(&http, url, "onstage_sfu_forwarded_packets_total").await;
    let wall = window_start.elapsed().as_secs_f64();
    let rss = pid.and_then(rss_kib);

    // What the viewers saw.
    let mut latencies_ms = Vec::new();
    let (mut expected, mut lost) = ([0u64; 2], [0u64; 2]);
    let (mut first_keyframe, mut first_not_keyframe) = (0u64, 0u64);
    for (v, marks) in viewers.iter().zip(&latency_marks) {
        for (p, mark) in v.probes.iter().zip(marks) {
            let Some(p) = p else { continue };
            let s = p.stats();
            latencies_ms.extend(s.latencies_us[*mark..].iter().map(|us| *us as f64 / 1e3));
            for (k, t) in [&s.audio, &s.video].into_iter().enumerate() {
                expected[k] += t.expected();
                lost[k] += t.lost();
            }
            match s.first_video_was_keyframe {
                Some(true) => first_keyframe += 1,
                Some(false) => first_not_keyframe += 1,
                None => {}
            }
        }
    }

    // 3. Late viewers join the live stage one after another.
    let mut late_ms = Vec::with_capacity(late);
    let mut late_probes = Vec::with_capacity(late);
    for lm in &late_meetings {
        let probe = ProbeViewer::start(lm, &publisher_ids[0])
            .await
            .map_err(|e| fail(format!("late viewer: {e}")))?;
        let deadline = Instant::now() + FIRST_FRAME_TIMEOUT;
        while probe.first_keyframe_at().is_none() && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        if let Some(t) = probe.stats().time_to_first_keyframe() {
            late_ms.push(t.as_secs_f64() * 1e3);
        }
        late_probes.push(probe);
        tokio::time::sleep(Duration::from_millis(args.late_gap_ms)).await;
    }

    let forwarded = match (fwd_before, fwd_after) {
        (Some(b), Some(a)) => Some(a - b),
        _ => None,
    };
    let server_cpu = match (cpu_before, cpu_after) {
        (Some(b), Some(a)) => Some((a - b).max(0.0)),
        _ => None,
    };
    let own_cpu = match (own_before, own_after) {
        (Some(b), Some(a)) => Some((a - b).max(0.0)),
        _ => None,
    };
    let us_per_packet = match (server_cpu, forwarded) {
        (Some(c), Some(f)) if f > 0.0 => Some(round3(c * 1e6 / f)),
        _ => None,
    };
    let core_fraction = server_cpu.map(|c| c / wall);
    // Viewers one core could serve at this load: for one publisher N / core fraction; with
    // more publishers each viewer holds M subscriptions, so count subscriptions too.
    let per_core = |x: usize| {
        core_fraction
            .filter(|f| *f > 0.0)
            .map(|f| (x as f64 / f).round())
    };
    let viewers_per_core = if m == 1 { per_core(n) } else { None };
    let subscriptions_per_core = per_core(m * n);
    let pct = |l: u64, e: u64| {
        if e == 0 {
            0.0
        } else {
            (l as f64 * 100.0 / e as f64 * 1000.0).round() / 1000.0
        }
    };
    join_to_frame_ms.sort_by(f64::total_cmp);
    for v in &mut steps {
        v.sort_by(f64::total_cmp);
    }
    late_ms.sort_by(f64::total_cmp);
    latencies_ms.sort_by(f64::total_cmp);
    let dist = |v: &[f64]| {
        json!({
            "samples": v.len(),
            "p50": round3(percentile(v, 50.0)),
            "p95": round3(percentile(v, 95.0)),
            "max": round3(v.last().copied().unwrap_or(0.0)),
        })
    };
    let report = json!({
        "event": "load_test_media",
        "publishers": m,
        "viewers": n,
        "subscriptions": m * n,
        "duration_secs": args.duration,
        "join_all_secs": round3(join_all_secs),
        "subscribe_failures": subscribe_failures,
        "stage_join_to_first_frame_ms": dist(&join_to_frame_ms),
        "stage_join_steps_ms": {
            "join_replied": dist(&steps[0]),
            "publisher_connected": dist(&steps[1]),
            "viewer_subscribe_sent": dist(&steps[2]),
            "viewer_answered": dist(&steps[3]),
            "viewer_connected": dist(&steps[4]),
        },
        "missing_first_frame": missing_first_frame,
        "first_video_packet_was_keyframe": { "yes": first_keyframe, "no": first_not_keyframe },
        "steady": {
            "wall_secs": round3(wall),
            "server_cpu_secs": server_cpu.map(round3),
            "server_core_fraction": core_fraction.map(round3),
            "forwarded_packets": forwarded,
            "forwarded_per_sec": forwarded.map(|f| (f / wall).round()),
            "us_per_forwarded_packet": us_per_packet,
            "viewers_per_core": viewers_per_core,
            "subscriptions_per_core": subscriptions_per_core,
            "load_test_process_cpu_secs": own_cpu.map(round3),
            "server_rss_kib": rss,
        },
        "loss": {
            "expected_packets": expected[0] + expected[1],
            "lost_packets": lost[0] + lost[1],
            "percent": pct(lost[0] + lost[1], expected[0] + expected[1]),
            "video_percent": pct(lost[1], expected[1]),
            "audio_percent": pct(lost[0], expected[0]),
        },
        "latency_ms": {
            "samples": latencies_ms.len(),
            "p50": round3(percentile(&latencies_ms, 50.0)),
            "p95": round3(percentile(&latencies_ms, 95.0)),
            "p99": round3(percentile(&latencies_ms, 99.0)),
            "max": round3(latencies_ms.last().copied().unwrap_or(0.0)),
        },
        "late_viewer_first_keyframe_ms": dist(&late_ms),
    });

    for p in late_probes {
        p.stop().await;
    }
    for v in viewers {
        for p in v.probes.into_iter().flatten() {
            drop(p);
        }
        let _ = v.meeting.leave().await;
    }
    for p in publishers {
        p.stop().await;
    }
    for pm in publisher_meetings.iter().chain(&late_meetings) {
        let _ = pm.leave().await;
    }
    Ok(report)
}

/// An unlabelled metric from the server's `/metrics`.
async fn metric(http: &reqwest::Client, url: &str, name: &str) -> Option<f64> {
    let text = http
        .get(format!("{url}/metrics"))
        .send()
        .await
        .ok()?
        .text()
        .await
        .ok()?;
    text.lines().find_map(|line| {
        let (key, value) = line.split_once(' ')?;
        (key == name).then(|| value.trim().parse().ok())?
    })
}
