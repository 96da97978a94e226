//! `onstage load-test --sdk-clients`: stage media with the real clients, end to end.
//!
//! The publisher is an `onstage bot --media synthetic` child process (so its CPU, capture +
//! H.264/Opus encoding + WebRTC sending, is measured apart); the viewers are SDK clients in
//! this process running [`StageMedia`] (WebRTC receiving + decoding). Three phases:
//!
//! 1. `--rounds` stage joins: the bot joins the stage while `--viewers` wait; time from the
//!    join to each viewer's first decoded picture of it. Then it leaves again.
//! 2. `--duration` seconds on stage: the bot's CPU (publishing), and glass to glass at the
//!    viewers (capture time stamped in the picture -> decoded).
//! 3. `--late-viewers` join the live stage one after another, 500 ms apart: time from
//!    joining the meeting to the first decoded picture.

use std::process::Stdio;
use std::time::{Duration, Instant};

use onstage_client::{MediaConfig, Meeting, Sources, StageMedia, UserId};
use onstage_proto::ErrorBody;
use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::process::{Child, ChildStdin, ChildStdout, Command};
use tokio::sync::broadcast;

use super::load_test::{cpu_seconds, fail, percentile, round3};
use crate::cli::LoadTestArgs;
use onstage_client::AdminClient;
use onstage_proto::rest::{AddParticipant, CreateMeeting};

/// How long one expected thing (a picture, a reply) may take before the run fails.
const WAIT: Duration = Duration::from_secs(20);

/// Between two late viewers: more than the SFU's least keyframe-request interval (100 ms)
/// and the time a keyframe takes to arrive, so each waits for a keyframe of its own.
const LATE_VIEWER_GAP: Duration = Duration::from_millis(500);

/// The publishing bot, driven over stdin/stdout.
struct Bot {
    child: Child,
    stdin: ChildStdin,
    out: Lines<BufReader<ChildStdout>>,
    next_id: u64,
    user_id: UserId,
}

impl Bot {
    async fn start(url: &str, token: &str, args: &LoadTestArgs) -> Result<Bot, ErrorBody> {
        let exe = std::env::current_exe().map_err(|e| fail(format!("own path: {e}")))?;
        let video = format!(
            "{}x{}@{}",
            args.video.width, args.video.height, args.video.fps
        );
        let bitrate = args.video_bitrate.to_string();
        let mut child = Command::new(exe)
            .args([
                "bot",
                "--server",
                url,
                "--token",
                token,
                "--media",
                "synthetic",
            ])
            .args(["--video", &video, "--video-bitrate", &bitrate])
            .env_remove("RUST_LOG")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| fail(format!("cannot start the bot: {e}")))?;
        let stdin = child.stdin.take().ok_or_else(|| fail("no bot stdin"))?;
        let stdout = child.stdout.take().ok_or_else(|| fail("no bot stdout"))?;
        let mut bot = Bot {
            child,
            stdin,
            out: BufReader::new(stdout).lines(),
            next_id: 1,
            user_id: UserId::new(""),
        };
        let joined = bot.wait_for(|v| v["event"] == "joined").await?;
        bot.user_id = UserId::new(joined["user_id"].as_str().unwrap_or_default());
        Ok(bot)
    }

    async fn wait_for(&mut self, pred: impl Fn(&Value) -> bool) -> Result<Value, ErrorBody> {
        loop {
            let line = tokio::time::timeout(WAIT, self.out.next_line())
                .await
                .map_err(|_| fail("the bot went quiet"))?
                .map_err(|e| fail(format!("bot stdout: {e}")))?
                .ok_or_else(|| fail("the bot exited"))?;
            let value: Value = serde_json::from_str(&line).map_err(|e| fail(e.to_string()))?;
            if pred(&value) {
                return Ok(value);
            }
        }
    }

    async fn call(&mut self, call: &str) -> Result<Value, ErrorBody> {
        self.call_timed(call).await.map(|(result, _)| result)
    }

    /// Sends `call` and returns its result with when the accepted attempt was sent. The
    /// rounds join and leave the stage faster than the server's broadcast budget refills:
    /// a `rate_limited` answer is waited out (as long as it says) and the call sent again,
    /// so a round's clock starts at the attempt that went through.
    async fn call_timed(&mut self, call: &str) -> Result<(Value, Instant), ErrorBody> {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let id = self.next_id;
            self.next_id += 1;
            let line = format!("{}\n", json!({"id": id, "call": call}));
            let sent = Instant::now();
            self.stdin
                .write_all(line.as_bytes())
                .await
                .map_err(|e| fail(format!("bot stdin: {e}")))?;
            let reply = self.wait_for(|v| v["id"] == id).await?;
            if reply["ok"] == true {
                return Ok((reply["result"].clone(), sent));
            }
            if reply["error"]["code"] != "rate_limited" || Instant::now() > deadline {
                return Err(fail(format!("{call}: {reply}")));
            }
            tokio::time::sleep(retry_after(&reply).unwrap_or(Duration::from_millis(200))).await;
        }
    }

    /// CPU seconds (user + system) the bot has used so far (Linux).
    fn cpu_seconds(&self) -> Option<f64> {
        cpu_seconds(self.child.id()?)
    }
}

/// The wait a `rate_limited` answer names (`retry_after_ms`).
fn retry_after(reply: &Value) -> Option<Duration> {
    reply["error"]["retry_after_ms"]
        .as_u64()
        .map(Duration::from_millis)
}

/// Waits for the first decoded picture of `from` on `frames`.
async fn first_picture(
    frames: &mut broadcast::Receiver<onstage_client::Picture>,
    from: &UserId,
) -> Result<(), ErrorBody> {
    tokio::time::timeout(WAIT, async {
        loop {
            match frames.recv().await {
                Ok(f) if f.origin.user_id() == Some(from) => return Ok(()),
                Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => {}
                Err(e) => return Err(fail(format!("pictures ended: {e}"))),
            }
        }
    })
    .await
    .map_err(|_| fail("no picture arrived"))?
}

fn viewer_config() -> MediaConfig {
    MediaConfig {
        sources: Sources::None,
        ..MediaConfig::default()
    }
}

fn summary(mut ms: Vec<f64>) -> Value {
    ms.sort_by(f64::total_cmp);
    json!({
        "n": ms.len(),
        "p50_ms": round3(percentile(&ms, 50.0)),
        "p95_ms": round3(percentile(&ms, 95.0)),
        "max_ms": round3(ms.last().copied().unwrap_or(0.0)),
    })
}

pub async fn run(args: &LoadTestArgs) -> Result<Value, ErrorBody> {
    let viewers_n = args.viewers.max(1);
    let (server, url, key, _) = super::load_test::server_under_test(args).await?;
    let admin = AdminClient::new(&url, &key)?;
    let meeting = admin
        .create_meeting(&CreateMeeting::titled("client bench"))
        .await?;
    let meeting_id = meeting.id.to_string();
    let host = admin
        .add_participant(&meeting_id, &AddParticipant::new("publisher", "host"))
        .await?;
    let mut bot = Bot::start(&url, &host.token, args).await?;
    let host_id = bot.user_id.clone();

    let mut viewers = Vec::new();
    for i in 0..viewers_n {
        let p = admin
            .add_participant(
                &meeting_id,
                &AddParticipant::new(format!("viewer-{i}"), "viewer"),
            )
            .await?;
        let meeting = Meeting::join(&url, &p.token)
            .await
            .map_err(|e| fail(format!("join: {e}")))?;
        let media = StageMedia::start(meeting.clone(), viewer_config());
        viewers.push((meeting, media));
    }

    // 1. Stage join -> first picture at every viewer.
    let mut join_to_picture = Vec::new();
    for _ in 0..args.rounds.max(1) {
        let mut frames: Vec<_> = viewers.iter().map(|(_, m)| m.video_frames()).collect();
        let (_, joined) = bot.call_timed("stage.join").await?;
        for f in &mut frames {
            first_picture(f, &host_id).await?;
            join_to_picture.push(joined.elapsed().as_secs_f64() * 1000.0);
        }
        bot.call("stage.leave").await?;
        // Every viewer has let go of the subscription before the next round.
        for (meeting, _) in &viewers {
            wait_off_stage(meeting, &host_id).await?;
        }
    }

    // 2. Steady streaming: the publisher's CPU and glass to glass at the viewers.
    bot.call("stage.join").await?;
    for (_, media) in &viewers {
        first_picture(&mut media.video_frames(), &host_id).await?;
    }
    let warm = Duration::from_secs(2);
    tokio::time::sleep(warm).await;
    let cpu_before = bot.cpu_seconds();
    let started = Instant::now();
    tokio::time::sleep(Duration::from_secs(args.duration.max(1))).await;
    let wall = started.elapsed().as_secs_f64();
    let publisher_cores = match (cpu_before, bot.cpu_seconds()) {
        (Some(a), Some(b)) => Some(round3((b - a) / wall)),
        _ => None,
    };
    let publisher_stats = bot.call("media.stats").await?;
    let mut g2g_p50 = Vec::new();
    let mut g2g_p95 = Vec::new();
    let mut frames_per_viewer = Vec::new();
    for (_, media) in &viewers {
        if let Some(r) = media.stats().received.get(&host_id) {
            g2g_p50.extend(r.glass_to_glass_p50_ms);
            g2g_p95.extend(r.glass_to_glass_p95_ms);
            frames_per_viewer.push(r.video_frames);
        }
    }

    // 3. Viewers joining the live stage: meeting join -> first decoded picture.
    let mut ttff = Vec::new();
    for i in 0..args.late_viewers {
        let p = admin
            .add_participant(
                &meeting_id,
                &AddParticipant::new(format!("late-{i}"), "viewer"),
            )
            .await?;
        let started = Instant::now();
        let meeting = Meeting::join(&url, &p.token)
            .await
            .map_err(|e| fail(format!("join: {e}")))?;
        let media = StageMedia::start(meeting.clone(), viewer_config());
        first_picture(&mut media.video_frames(), &host_id).await?;
        ttff.push(started.elapsed().as_secs_f64() * 1000.0);
        media.stop().await;
        let _ = meeting.leave().await;
        // Apart from each other: viewers arriving within one keyframe-request interval
        // share a keyframe, and the later ones wait for it (measured separately).
        tokio::time::sleep(LATE_VIEWER_GAP).await;
    }

    let _ = bot.call("stage.leave").await;
    for (meeting, media) in viewers {
        media.stop().await;
        let _ = meeting.leave().await;
    }
    drop(bot);
    if let Some(server) = server {
        server.stop().await;
    }
    Ok(json!({
        "event": "client_bench",
        "video": format!("{}x{}@{}", args.video.width, args.video.height, args.video.fps),
        "video_bitrate_bps": args.video_bitrate,
        "viewers": viewers_n,
        "stage_join_to_first_picture": summary(join_to_picture),
        "time_to_first_picture_live_stage": summary(ttff),
        "glass_to_glass_ms": {
            "viewer_p50s": g2g_p50,
            "viewer_p95s": g2g_p95,
        },
        "publisher_cpu_cores": publisher_cores,
        "publisher_stats": publisher_stats,
        "steady_seconds": round3(wall),
        "pictures_per_viewer": frames_per_viewer,
    }))
}

/// Waits until `meeting`'s mirror shows `user` off the stage.
async fn wait_off_stage(meeting: &Meeting, user: &UserId) -> Result<(), ErrorBody> {
    let mut events = meeting.events();
    let off = |m: &Meeting| {
        m.participant(user)
            .is_none_or(|p| p.stage_status != onstage_client::StageStatus::OnStage)
    };
    tokio::time::timeout(WAIT, async {
        while !off(meeting) {
            if events.recv().await.is_none() {
                break;
            }
        }
    })
    .await
    .map_err(|_| fail("a viewer still sees the publisher on stage"))
}
