//! `onstage load-test --publishers M --viewers N --duration SECS`: the SFU benchmark, on
//! our SFU or (`--sfu janus`) on Janus's VideoRoom, with the same probes and load.
//!
//! M publishers go live one after another while N viewers wait; every viewer subscribes
//! to a publisher as soon as it learns it is live (on our SFU: it sees it go ON_STAGE; on
//! Janus: its feed is published). Publishers and viewers are [`onstage_probe`] endpoints
//! (real WebRTC, synthetic H.264-shaped video and Opus-sized audio, nothing encoded or
//! decoded), so this process stays light and the figures are the server's. What differs
//! between the two SFUs is only signaling, behind [`Sfu`]; everything measured is here,
//! once. Measured:
//!
//! 1. Stage join -> first frame: from the publisher's join call (`stage.join`, or Janus's
//!    publisher `join`) to each viewer's first keyframe packet of it (includes the
//!    viewers' subscriptions and connections).
//! 2. A steady window of `--duration` seconds: the server's CPU time (utime + stime from
//!    `/proc/<pid>/stat`), packets delivered to the viewers (counted by the viewers, the
//!    same for both SFUs) and, on ours, packets forwarded
//!    (`onstage_sfu_forwarded_packets_total`), hence microseconds of server CPU per packet
//!    and viewers per core; packet latency (send -> arrival, first packet of each frame)
//!    at the viewers.
//! 3. `--late-viewers` viewers subscribing to the live stage one after another (400 ms
//!    apart): time from the subscribe call to their first keyframe packet.
//!
//! Loss is counted per viewer by sequence numbers from its first packet to its last, over
//! the whole run, repairs (NACK/RTX) counting as received.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use onstage_client::{Meeting, MeetingEvent, StageStatus, UserId};
use onstage_probe::{ProbePublisher, ProbeViewer, PublisherOptions, ViewerOptions};
use onstage_proto::{ErrorBody, ErrorCode};
use serde_json::{json, Value};
use tokio::sync::{mpsc, Semaphore};

use super::janus::{self, Janus};
use super::{cpu_seconds, fail, percentile, round3, rss_kib};
use crate::cli::{LoadTestArgs, SfuKind};
use onstage_client::AdminClient;
use onstage_proto::rest::{AddParticipant, CreateMeeting};

/// How long everyone may take to get a first keyframe after a stage join.
const FIRST_FRAME_TIMEOUT: Duration = Duration::from_secs(30);

/// One viewer's subscriptions, by publisher index.
struct Viewer {
    probes: Vec<Option<ProbeViewer>>,
}

/// A viewer's subscription to a publisher as it came out: (viewer, publisher, probe).
pub(super) type Subscribed = (usize, usize, Result<ProbeViewer, String>);

/// The SFU under test as the benchmark drives it: signaling only (publishing, subscribing),
/// never measuring.
pub(super) trait Sfu {
    /// Sets up the meeting (or room) and everyone in it. From then on, viewers subscribe to
    /// each publisher as soon as they learn it is live, and send what came of it on `subs`.
    async fn prepare(&mut self, subs: mpsc::UnboundedSender<Subscribed>) -> Result<(), ErrorBody>;
    /// Publisher `pi` goes live: returns when its join call was answered, and the
    /// publisher, once connected.
    async fn go_live(
        &mut self,
        pi: usize,
        opts: PublisherOptions,
    ) -> Result<(Instant, ProbePublisher), ErrorBody>;
    /// Late viewer `li` subscribes to the first publisher.
    async fn late_viewer(&mut self, li: usize) -> Result<ProbeViewer, ErrorBody>;
    /// The server's own count of packets forwarded so far, if it keeps one.
    async fn forwarded_packets(&self) -> Option<f64>;
    /// Everyone leaves.
    async fn finish(self);
}

/// What the benchmark's shape is, whichever SFU runs it.
#[derive(Debug, Clone)]
struct Shape {
    publishers: usize,
    viewers: usize,
    late: usize,
    join_concurrency: usize,
    bind_ip: IpAddr,
}

impl Shape {
    fn of(args: &LoadTestArgs) -> Shape {
        Shape {
            publishers: args.publishers,
            viewers: args.viewers,
            late: args.late_viewers,
            join_concurrency: args.join_concurrency.max(1),
            bind_ip: args.bind_ip,
        }
    }

    fn viewer_options(&self) -> ViewerOptions {
        ViewerOptions {
            bind_ip: self.bind_ip,
            ..ViewerOptions::default()
        }
    }
}

pub(super) async fn run(args: &LoadTestArgs) -> Result<Value, ErrorBody> {
    let (m, n) = (args.publishers, args.viewers);
    if m == 0 || n == 0 || args.duration == 0 {
        return Err(ErrorBody::new(
            ErrorCode::BadRequest,
            "need --publishers >= 1, --viewers >= 1 and --duration >= 1",
        ));
    }
    match args.sfu {
        SfuKind::Onstage => {
            let (child, url, key, pid) = super::server_under_test(args).await?;
            let sfu = OnstageSfu::new(Shape::of(args), &url, &key)?;
            let result = bench(args, sfu, pid).await;
            if let Some(child) = child {
                child.stop().await;
            }
            result
        }
        SfuKind::Janus => {
            let url = args.server.as_deref().ok_or_else(|| {
                ErrorBody::new(
                    ErrorCode::BadRequest,
                    "--sfu janus drives a running Janus with --server URL (its HTTP API, \
                     e.g. http://10.0.0.1:8088/janus)",
                )
            })?;
            let sfu = JanusSfu::connect(Shape::of(args), url).await?;
            bench(args, sfu, args.server_pid).await
        }
    }
}

async fn bench<S: Sfu>(
    args: &LoadTestArgs,
    mut sfu: S,
    pid: Option<u32>,
) -> Result<Value, ErrorBody> {
    let (m, n, late) = (args.publishers, args.viewers, args.late_viewers);
    let join_started = Instant::now();
    let (sub_tx, mut sub_rx) = mpsc::unbounded_channel();
    sfu.prepare(sub_tx).await?;
    let join_all_secs = join_started.elapsed().as_secs_f64();
    let mut viewers: Vec<Viewer> = (0..n)
        .map(|_| Viewer {
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
    let mut failed = vec![vec![false; m]; n];
    for pi in 0..m {
        let t0 = Instant::now();
        let ms = |at: Instant| at.saturating_duration_since(t0).as_secs_f64() * 1e3;
        let opts = PublisherOptions {
            video_bitrate_bps: u64::from(args.video_bitrate),
            bind_ip: args.bind_ip,
            ..PublisherOptions::default()
        };
        let (joined, publisher) = sfu.go_live(pi, opts).await?;
        steps[0].push(ms(joined));
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
                        failed[vi][p] = true;
                        tracing::warn!(viewer = vi, error = %e, "subscribe failed");
                    }
                }
            }
            for (vi, v) in viewers.iter().enumerate() {
                if got[vi] {
                    continue;
                }
                // A failed subscription is counted as such, not waited for.
                if failed[vi][pi] {
                    got[vi] = true;
                    pending -= 1;
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
    let fwd_before = sfu.forwarded_packets().await;
    let delivered_before = delivered(&viewers);
    let window_start = Instant::now();
    tokio::time::sleep(Duration::from_secs(args.duration)).await;
    let cpu_after = pid.and_then(cpu_seconds);
    let own_after = cpu_seconds(std::process::id());
    let fwd_after = sfu.forwarded_packets().await;
    let delivered_after = delivered(&viewers);
    let delivered_packets = (delivered_after.iter().sum::<u64>() as f64
        - delivered_before.iter().sum::<u64>() as f64)
        .max(0.0);
    // Subscriptions that got media in the window: every one, when all went well.
    let with_media = delivered_after
        .iter()
        .zip(&delivered_before)
        .filter(|(a, b)| a > b)
        .count();
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
    let mut late_failures = 0usize;
    for li in 0..late {
        let probe = match sfu.late_viewer(li).await {
            Ok(probe) => probe,
            Err(e) => {
                late_failures += 1;
                tracing::warn!(viewer = li, error = %e.message, "late viewer failed");
                continue;
            }
        };
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
    let per_packet = |packets: Option<f64>| match (server_cpu, packets) {
        (Some(c), Some(f)) if f > 0.0 => Some(round3(c * 1e6 / f)),
        _ => None,
    };
    let us_per_packet = per_packet(forwarded);
    let us_per_delivered = per_packet(Some(delivered_packets));
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
        "sfu": args.sfu.name(),
        "publishers": m,
        "viewers": n,
        "subscriptions": m * n,
        "duration_secs": args.duration,
        "join_all_secs": round3(join_all_secs),
        "subscribe_failures": subscribe_failures,
        "subscriptions_with_media": with_media,
        "late_viewer_failures": late_failures,
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
            "delivered_packets": delivered_packets,
            "delivered_per_sec": (delivered_packets / wall).round(),
            "us_per_delivered_packet": us_per_delivered,
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
    }
    for p in publishers {
        p.stop().await;
    }
    sfu.finish().await;
    Ok(report)
}

/// Packets each subscription (viewer by publisher; 0 for one that failed) has received so
/// far, all kinds.
fn delivered(viewers: &[Viewer]) -> Vec<u64> {
    viewers
        .iter()
        .flat_map(|v| v.probes.iter())
        .map(|p| {
            p.as_ref().map_or(0, |p| {
                let s = p.stats();
                s.audio.packets + s.video.packets
            })
        })
        .collect()
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

/// Our SFU: one meeting, publishers with the host preset who join the stage, viewers who
/// subscribe when they see a publisher go ON_STAGE, as an app would.
struct OnstageSfu {
    shape: Shape,
    url: String,
    admin: AdminClient,
    http: reqwest::Client,
    publishers: Vec<Meeting>,
    viewers: Vec<Meeting>,
    late: Vec<Meeting>,
    publisher_ids: Vec<UserId>,
}

impl OnstageSfu {
    fn new(shape: Shape, url: &str, key: &str) -> Result<OnstageSfu, ErrorBody> {
        Ok(OnstageSfu {
            shape,
            url: url.to_owned(),
            admin: AdminClient::new(url, key)?,
            http: reqwest::Client::new(),
            publishers: Vec::new(),
            viewers: Vec::new(),
            late: Vec::new(),
            publisher_ids: Vec::new(),
        })
    }
}

/// Joins with `token`, trying again for a while: from one address (the lab's client host)
/// a join storm outruns the server's per-source rate of new connections (a burst of 128,
/// then 32 a second), which refuses the excess rather than queueing it.
async fn join_patiently(url: &str, token: &str) -> Result<Meeting, ErrorBody> {
    let deadline = Instant::now() + Duration::from_secs(90);
    let mut attempt = 0u32;
    loop {
        match Meeting::join(url, token).await {
            Ok(m) => return Ok(m),
            Err(e) if Instant::now() < deadline => {
                attempt += 1;
                tracing::debug!(error = %e, attempt, "join refused, trying again");
                let pause = Duration::from_millis(200 * u64::from(attempt.min(5)));
                tokio::time::sleep(pause).await;
            }
            Err(e) => return Err(fail(format!("join failed: {e}"))),
        }
    }
}

impl Sfu for OnstageSfu {
    async fn prepare(&mut self, subs: mpsc::UnboundedSender<Subscribed>) -> Result<(), ErrorBody> {
        let Shape {
            publishers: m,
            viewers: n,
            late,
            ..
        } = self.shape;
        let max_on_stage = u32::try_from(m).unwrap_or(u32::MAX).max(25);
        let request = CreateMeeting {
            title: "media load test".into(),
            max_on_stage: Some(max_on_stage),
        };
        let meeting_id = self.admin.create_meeting(&request).await?.id.to_string();

        // Everyone registers and joins first: publishers, waiting viewers, late viewers.
        let gate = Arc::new(Semaphore::new(self.shape.join_concurrency));
        let mut joins = Vec::with_capacity(m + n + late);
        for i in 0..m + n + late {
            let (admin, meeting_id, url, gate) = (
                self.admin.clone(),
                meeting_id.clone(),
                self.url.clone(),
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
                join_patiently(&url, &p.token).await
            }));
        }
        let mut meetings = Vec::with_capacity(joins.len());
        for j in joins {
            meetings.push(j.await.map_err(|e| fail(e.to_string()))??);
        }
        self.late = meetings.split_off(m + n);
        self.viewers = meetings.split_off(m);
        self.publishers = meetings;
        self.publisher_ids = self.publishers.iter().map(|p| p.user_id()).collect();

        for (vi, vm) in self.viewers.iter().enumerate() {
            let mut events = vm.events();
            let (vm, ids, tx) = (vm.clone(), self.publisher_ids.clone(), subs.clone());
            let opts = self.shape.viewer_options();
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
                    let (vm, tx, opts) = (vm.clone(), tx.clone(), opts.clone());
                    tokio::spawn(async move {
                        let probe = ProbeViewer::start_with(&vm, &user_id, opts)
                            .await
                            .map_err(|e| e.to_string());
                        let _ = tx.send((vi, pi, probe));
                    });
                }
            });
        }
        Ok(())
    }

    async fn go_live(
        &mut self,
        pi: usize,
        opts: PublisherOptions,
    ) -> Result<(Instant, ProbePublisher), ErrorBody> {
        let pm = &self.publishers[pi];
        pm.stage()
            .join()
            .await
            .map_err(|e| fail(format!("stage join: {e}")))?;
        let joined = Instant::now();
        let publisher = ProbePublisher::start(pm, opts)
            .await
            .map_err(|e| fail(format!("publisher {pi}: {e}")))?;
        Ok((joined, publisher))
    }

    async fn late_viewer(&mut self, li: usize) -> Result<ProbeViewer, ErrorBody> {
        ProbeViewer::start_with(
            &self.late[li],
            &self.publisher_ids[0],
            self.shape.viewer_options(),
        )
        .await
        .map_err(|e| fail(format!("late viewer: {e}")))
    }

    async fn forwarded_packets(&self) -> Option<f64> {
        metric(&self.http, &self.url, "onstage_sfu_forwarded_packets_total").await
    }

    async fn finish(self) {
        for m in self
            .viewers
            .iter()
            .chain(&self.publishers)
            .chain(&self.late)
        {
            let _ = m.leave().await;
        }
    }
}

/// Janus's VideoRoom: one room, a handle per publisher and per subscription, all in one
/// session; viewers subscribe to a feed as soon as it is published, a bounded number at
/// once.
struct JanusSfu {
    shape: Shape,
    janus: Arc<Janus>,
    room: u64,
    subs: Option<mpsc::UnboundedSender<Subscribed>>,
    feeds: Vec<u64>,
}

impl JanusSfu {
    async fn connect(shape: Shape, url: &str) -> Result<JanusSfu, ErrorBody> {
        let janus = Janus::connect(url).await?;
        Ok(JanusSfu {
            shape,
            janus: Arc::new(janus),
            room: 1000 + u64::from(std::process::id() % 100_000),
            subs: None,
            feeds: Vec::new(),
        })
    }
}

/// One subscription on Janus: attach, join as subscriber to `feed` (Janus offers), answer,
/// start.
async fn janus_subscribe(
    janus: &Janus,
    room: u64,
    feed: u64,
    opts: ViewerOptions,
) -> Result<ProbeViewer, String> {
    let started = Instant::now();
    let handle = janus.attach().await?;
    // Janus knows the feed once the publisher's session is up on its side too, a moment
    // after ours: until then it says "No such feed".
    let deadline = Instant::now() + Duration::from_secs(3);
    let offer = loop {
        match janus.subscribe(handle, room, feed).await {
            Err(e) if e.contains("No such feed") && Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            got => break got?,
        }
    };
    let (viewer, answer) = ProbeViewer::answer(&offer, started, opts)
        .await
        .map_err(|e| e.to_string())?;
    janus.start(handle, room, &answer).await?;
    Ok(viewer)
}

impl Sfu for JanusSfu {
    async fn prepare(&mut self, subs: mpsc::UnboundedSender<Subscribed>) -> Result<(), ErrorBody> {
        self.janus
            .create_room(self.room, self.shape.publishers)
            .await
            .map_err(|e| fail(format!("Janus room: {e}")))?;
        self.subs = Some(subs);
        Ok(())
    }

    async fn go_live(
        &mut self,
        pi: usize,
        opts: PublisherOptions,
    ) -> Result<(Instant, ProbePublisher), ErrorBody> {
        let handle = self
            .janus
            .attach()
            .await
            .map_err(|e| fail(format!("Janus attach: {e}")))?;
        let (janus, room) = (self.janus.clone(), self.room);
        let feed = janus
            .join_publisher(handle, room, &format!("pub-{pi}"))
            .await
            .map_err(|e| fail(format!("Janus publisher join: {e}")))?;
        let joined = Instant::now();
        self.feeds.push(feed);
        let publisher = ProbePublisher::start_with(opts, |offer| async move {
            janus.publish(handle, &offer).await.map_err(janus::peer)
        })
        .await
        .map_err(|e| fail(format!("publisher {pi}: {e}")))?;
        // The feed is live: every viewer subscribes, a bounded number at once.
        let gate = Arc::new(Semaphore::new(self.shape.join_concurrency));
        for vi in 0..self.shape.viewers {
            let (janus, gate, subs) = (self.janus.clone(), gate.clone(), self.subs.clone());
            let opts = self.shape.viewer_options();
            tokio::spawn(async move {
                let _permit = gate.acquire().await;
                let probe = janus_subscribe(&janus, room, feed, opts).await;
                if let Some(subs) = subs {
                    let _ = subs.send((vi, pi, probe));
                }
            });
        }
        Ok((joined, publisher))
    }

    async fn late_viewer(&mut self, _li: usize) -> Result<ProbeViewer, ErrorBody> {
        let feed = *self
            .feeds
            .first()
            .ok_or_else(|| fail("no publisher to watch"))?;
        janus_subscribe(&self.janus, self.room, feed, self.shape.viewer_options())
            .await
            .map_err(|e| fail(format!("late viewer: {e}")))
    }

    async fn forwarded_packets(&self) -> Option<f64> {
        None
    }

    async fn finish(self) {
        self.janus.destroy().await;
    }
}
