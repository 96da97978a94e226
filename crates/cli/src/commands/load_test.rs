//! `onstage load-test`: the signaling benchmark (`--no-media`); the SFU benchmark with
//! probe endpoints (`--viewers N`, in [`media`]), also on Janus and side by side with it
//! (`--sfu janus`, `--compare janus`, in [`compare`]); real SDK clients (`--sdk-clients`).
//!
//! The signaling benchmark:
//!
//! Joins N participants to one meeting through the real SDK (the first is the host), then
//! has the host change its stage status R times (join, leave, join, ...) and measures, for
//! every participant, how long each change took to reach it: from just before the call is
//! sent to the moment that participant's SDK delivers `participantStageStatus`. Reports
//! p50/p95/p99/max over all N x R deliveries, and the server's resident memory per idle
//! participant (when this command started the server, or `--server-pid` names it).
//!
//! Unless `--server` is given, the server is this same binary started as a child process
//! (`onstage serve`), so its memory is measured apart from the N clients.

use std::path::PathBuf;
use std::process::{ExitCode, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use onstage_client::{Meeting, MeetingEvent};
use onstage_proto::{ErrorBody, ErrorCode, StageStatus, UserId};
use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::{mpsc, Semaphore};

use crate::cli::{LoadTestArgs, SfuKind};
use crate::output;
use onstage_client::AdminClient;
use onstage_proto::rest::{AddParticipant, CreateMeeting};

mod compare;
mod janus;
mod lab;
mod media;

/// How long one stage change may take to reach everyone before the run fails.
const ROUND_TIMEOUT: Duration = Duration::from_secs(30);

pub async fn run(args: LoadTestArgs) -> ExitCode {
    match load_test(args).await {
        Ok(report) => {
            output::print_line(&report);
            ExitCode::SUCCESS
        }
        Err(e) => {
            output::print_error(None, &e);
            ExitCode::FAILURE
        }
    }
}

pub(crate) fn fail(message: impl Into<String>) -> ErrorBody {
    ErrorBody::new(ErrorCode::Internal, message)
}

pub(crate) struct ChildServer {
    child: Child,
    data: PathBuf,
}

impl ChildServer {
    pub(crate) async fn start(admin_key: &str) -> Result<(ChildServer, String), ErrorBody> {
        let exe = std::env::current_exe().map_err(|e| fail(format!("own path: {e}")))?;
        Self::start_with(Command::new(exe), "127.0.0.1:0", &[], admin_key).await
    }

    /// `command` (this binary, perhaps behind `ip netns exec` and `taskset`) `serve`s on
    /// `listen` with `extra` arguments.
    pub(crate) async fn start_with(
        mut command: Command,
        listen: &str,
        extra: &[&str],
        admin_key: &str,
    ) -> Result<(ChildServer, String), ErrorBody> {
        let data = std::env::temp_dir().join(format!("onstage-load-{}", std::process::id()));
        let mut child = command
            .args(["serve", "--listen", listen, "--data"])
            .arg(&data)
            // The rounds join and leave the stage back to back, far faster than anyone
            // does: a budget this size keeps what is measured the media, not the waits.
            .args(["--broadcast-burst", "1000"])
            .args(extra)
            .env("ONSTAGE_ADMIN_KEY", admin_key)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| fail(format!("cannot start the server: {e}")))?;
        let stdout = child
            .stdout
            .take()
            .ok_or_else(|| fail("no server stdout"))?;
        let mut lines = BufReader::new(stdout).lines();
        let line = tokio::time::timeout(Duration::from_secs(30), lines.next_line())
            .await
            .map_err(|_| fail("the server did not get ready"))?
            .map_err(|e| fail(format!("server stdout: {e}")))?
            .ok_or_else(|| fail("the server exited before it was ready"))?;
        let ready: Value = serde_json::from_str(&line).map_err(|e| fail(format!("{e}: {line}")))?;
        let url = ready["http"]
            .as_str()
            .ok_or_else(|| fail(format!("no url in {line}")))?
            .to_owned();
        Ok((ChildServer { child, data }, url))
    }

    pub(crate) fn pid(&self) -> Option<u32> {
        self.child.id()
    }

    pub(crate) async fn stop(mut self) {
        let _ = self.child.kill().await;
        let _ = std::fs::remove_dir_all(&self.data);
    }
}

/// A process's CPU time, user + system, in seconds (from /proc; Linux).
pub(crate) fn cpu_seconds(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name (which may contain spaces) start after ") ".
    let rest = stat.rsplit_once(") ")?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    // USER_HZ is 100 on every Linux this runs on.
    Some((utime + stime) / 100.0)
}

/// Resident memory of a process, in KiB (Linux).
fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

/// The server a load test talks to: `--server` (with its admin key and, for memory and
/// CPU figures, `--server-pid`), or else this binary's `serve` started as a child process,
/// which the caller stops when done.
pub(crate) async fn server_under_test(
    args: &LoadTestArgs,
) -> Result<(Option<ChildServer>, String, String, Option<u32>), ErrorBody> {
    match &args.server {
        Some(url) => {
            let key = args.admin_key.clone().ok_or_else(|| {
                ErrorBody::new(
                    ErrorCode::Unauthorized,
                    "set ONSTAGE_ADMIN_KEY for --server",
                )
            })?;
            Ok((None, url.clone(), key, args.server_pid))
        }
        None => {
            // A key the server accepts (it refuses short ones), new for every run.
            let key = onstage_server::storage::random_secret();
            let (child, url) = ChildServer::start(&key).await?;
            let pid = child.pid();
            Ok((Some(child), url, key, pid))
        }
    }
}

pub(crate) fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

pub(crate) fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

async fn load_test(args: LoadTestArgs) -> Result<Value, ErrorBody> {
    if args.sdk_clients {
        return super::client_bench::run(&args).await;
    }
    if args.compare.is_some() || (args.sfu == SfuKind::Janus && args.server.is_none()) {
        return compare::run(&args).await;
    }
    if args.viewers > 0 {
        return media::run(&args).await;
    }
    if !args.no_media {
        return Err(ErrorBody::new(
            ErrorCode::BadRequest,
            "pick one: --no-media (signaling), --viewers N (SFU, probes) or --sdk-clients",
        ));
    }
    if args.participants < 2 || args.rounds == 0 {
        return Err(ErrorBody::new(
            ErrorCode::BadRequest,
            "need --participants >= 2 and --rounds >= 1",
        ));
    }
    let n = args.participants;
    let (child, url, key, pid) = server_under_test(&args).await?;
    let admin = AdminClient::new(&url, &key)?;
    let meeting = admin
        .create_meeting(&CreateMeeting::titled("load test"))
        .await?;
    let meeting_id = meeting.id.to_string();

    // Register everyone first, so the memory figure covers only the joined sessions.
    let gate = Arc::new(Semaphore::new(args.join_concurrency.max(1)));
    let mut adds = Vec::with_capacity(n);
    for i in 0..n {
        let admin = admin.clone();
        let meeting_id = meeting_id.clone();
        let gate = gate.clone();
        adds.push(tokio::spawn(async move {
            let _permit = gate.acquire().await;
            let preset = if i == 0 { "host" } else { "viewer" };
            admin
                .add_participant(
                    &meeting_id,
                    &AddParticipant::new(format!("load-{i}"), preset),
                )
                .await
        }));
    }
    let mut tokens = Vec::with_capacity(n);
    for add in adds {
        let p = add.await.map_err(|e| fail(e.to_string()))??;
        tokens.push(p.token);
    }
    let rss_before = pid.and_then(rss_kib);

    let join_started = Instant::now();
    let mut joins = Vec::with_capacity(n);
    for token in tokens {
        let url = url.clone();
        let gate = gate.clone();
        joins.push(tokio::spawn(async move {
            let _permit = gate.acquire().await;
            Meeting::join(&url, &token).await
        }));
    }
    let mut meetings = Vec::with_capacity(n);
    for j in joins {
        meetings.push(
            j.await
                .map_err(|e| fail(e.to_string()))?
                .map_err(|e| fail(format!("join failed: {e}")))?,
        );
    }
    let join_secs = join_started.elapsed().as_secs_f64();
    let host_id: UserId = meetings[0].user_id();

    // Every participant reports when it sees the host's status change.
    let (seen_tx, mut seen_rx) = mpsc::unbounded_channel::<(StageStatus, Instant)>();
    for m in &meetings {
        let mut events = m.events();
        let tx = seen_tx.clone();
        let host = host_id.clone();
        tokio::spawn(async move {
            while let Some(e) = events.recv().await {
                if let MeetingEvent::ParticipantStageStatus { user_id, status } = e {
                    if user_id == host && tx.send((status, Instant::now())).is_err() {
                        break;
                    }
                }
            }
        });
    }
    drop(seen_tx);

    // Let the join storm settle before reading the idle memory.
    wait_until_everyone_sees(&meetings, n).await;
    let rss_after = pid.and_then(rss_kib);

    let mut latencies_ms = Vec::with_capacity(n * args.rounds);
    let mut round_max_ms = Vec::with_capacity(args.rounds);
    for round in 0..args.rounds {
        let stage = meetings[0].stage();
        let want = if round % 2 == 0 {
            StageStatus::OnStage
        } else {
            StageStatus::OffStage
        };
        let t0 = Instant::now();
        let call = async {
            if want == StageStatus::OnStage {
                stage.join().await
            } else {
                stage.leave().await
            }
        };
        let collect = async {
            let mut got = 0;
            let mut worst = 0f64;
            while got < n {
                match seen_rx.recv().await {
                    Some((status, at)) if status == want => {
                        let ms = at.duration_since(t0).as_secs_f64() * 1000.0;
                        latencies_ms.push(ms);
                        worst = worst.max(ms);
                        got += 1;
                    }
                    Some(_) => {}
                    None => return Err(fail("event streams ended")),
                }
            }
            Ok(worst)
        };
        let (called, worst) =
            tokio::time::timeout(ROUND_TIMEOUT, async { tokio::join!(call, collect) })
                .await
                .map_err(|_| {
                    fail(format!(
                        "round {round}: not everyone heard within {ROUND_TIMEOUT:?}"
                    ))
                })?;
        called.map_err(|e| fail(format!("round {round}: {e}")))?;
        round_max_ms.push(worst?);
    }

    latencies_ms.sort_by(f64::total_cmp);
    let per_participant_kib = match (rss_before, rss_after) {
        (Some(b), Some(a)) => Some(round3(a.saturating_sub(b) as f64 / n as f64)),
        _ => None,
    };
    let report = json!({
        "event": "load_test",
        "participants": n,
        "rounds": args.rounds,
        "deliveries": latencies_ms.len(),
        "join_all_secs": round3(join_secs),
        "stage_change_to_all_ms": {
            "p50": round3(percentile(&latencies_ms, 50.0)),
            "p95": round3(percentile(&latencies_ms, 95.0)),
            "p99": round3(percentile(&latencies_ms, 99.0)),
            "max": round3(latencies_ms.last().copied().unwrap_or(0.0)),
            "last_arrival_per_round_median": round3({
                let mut r = round_max_ms.clone();
                r.sort_by(f64::total_cmp);
                percentile(&r, 50.0)
            }),
        },
        "server_rss_kib": { "before_joins": rss_before, "after_joins": rss_after },
        "server_kib_per_idle_participant": per_participant_kib,
    });

    for m in &meetings {
        let _ = m.leave().await;
    }
    if let Some(child) = child {
        child.stop().await;
    }
    Ok(report)
}

/// Waits until the last participant to join is known to every participant's mirror (the
/// join storm's events have all been delivered).
async fn wait_until_everyone_sees(meetings: &[Meeting], n: usize) {
    let deadline = Instant::now() + Duration::from_secs(60);
    for m in meetings {
        while m.participants().len() < n && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}
