//! `onstage serve --redis`: nodes of a cluster on a real `redis-server` (started by the
//! test on a free loopback port, no persistence). Skipped, saying so, only when
//! redis-server is not installed.

mod support;

use std::time::{Duration, Instant};

use onstage_cluster::cluster::connect;
use onstage_cluster::keys::Keys;
use onstage_cluster::testing::{eventually, RedisServer};
use onstage_cluster::{HomeLocks, LeaseTiming, NodeId, NodeInfo, Registry};
use serde_json::{json, Value};
use support::{add, create_meeting, Proc};

const NODE_TTL: Duration = Duration::from_millis(1000);

/// `onstage serve` as node `id` of the cluster on `redis`: the process and its ready line.
async fn node(redis: &RedisServer, id: &str, data: &std::path::Path) -> (Proc, Value) {
    let data = data.to_str().expect("utf-8 path");
    let url = redis.url();
    let ttl = NODE_TTL.as_millis().to_string();
    let args = [
        "serve",
        "--listen",
        "127.0.0.1:0",
        "--data",
        data,
        "--grace-ms",
        "2000",
        "--redis",
        &url,
        "--node-id",
        id,
        "--node-ttl-ms",
        &ttl,
        "--lease-ttl-ms",
        "1500",
    ];
    let mut server = Proc::spawn(id, &args, &[]);
    let ready = server.next().await.expect("serve prints its ready line");
    assert_eq!(ready["event"], "listening", "{ready}");
    assert_eq!(ready["node_id"], id, "{ready}");
    (server, ready)
}

async fn look(redis: &RedisServer) -> (Registry, HomeLocks) {
    let conn = connect(&redis.url(), Duration::from_secs(1))
        .await
        .expect("connects");
    let registry = Registry::new(conn.clone(), Keys::default(), NODE_TTL);
    // Only read with: `holder` asks who holds a meeting.
    let locks = HomeLocks::new(
        conn,
        Keys::default(),
        LeaseTiming::from_ttl(Duration::from_secs(1)).expect("valid"),
        NodeId::new("observer").expect("valid"),
        "observer",
    );
    (registry, locks)
}

async fn nodes(registry: &Registry) -> Vec<NodeInfo> {
    registry.list().await.expect("lists the nodes")
}

async fn ids(registry: &Registry) -> Vec<String> {
    nodes(registry)
        .await
        .into_iter()
        .map(|n| n.node_id.to_string())
        .collect()
}

async fn home(locks: &HomeLocks, meeting: &str) -> Option<String> {
    let holder = locks.holder(meeting).await.expect("reads the lock");
    holder.map(|h| h.node_id.to_string())
}

async fn bot(name: &str, url: &str, token: &str) -> Proc {
    let mut bot = Proc::spawn(name, &["bot", "--server", url, "--token", token], &[]);
    let joined = bot.next().await.expect("joined line");
    assert_eq!(joined["event"], "joined", "{joined}");
    bot
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_register_hold_their_meetings_and_a_killed_one_vanishes_within_its_ttl() {
    let Some(redis) = RedisServer::start_or_skip() else {
        return;
    };
    let (registry, locks) = look(&redis).await;
    let dir_a = tempfile::tempdir().expect("temp dir");
    let dir_b = tempfile::tempdir().expect("temp dir");
    let (mut a, ready_a) = node(&redis, "node-a", dir_a.path()).await;
    let (mut b, ready_b) = node(&redis, "node-b", dir_b.path()).await;

    // Both registered by the time they said they were listening, under their public URLs.
    let listed = nodes(&registry).await;
    let urls: Vec<(&str, &str)> = listed
        .iter()
        .map(|n| (n.node_id.as_str(), n.public_url.as_str()))
        .collect();
    let url_a = ready_a["public_url"].as_str().expect("public url");
    let url_b = ready_b["public_url"].as_str().expect("public url");
    assert_eq!(urls, [("node-a", url_a), ("node-b", url_b)]);

    // A meeting opened on node-a takes its home lock there; the load says so.
    let http_a = ready_a["http"].as_str().expect("http");
    let key_a = ready_a["admin_key"].as_str().expect("admin key");
    let first = create_meeting(http_a, key_a, "first").await;
    let second = create_meeting(http_a, key_a, "second").await;
    assert_eq!(home(&locks, &first).await, None, "no room yet, no home");
    let (_, token) = add(http_a, key_a, &first, "host1", "host").await;
    let mut host1 = bot("host1", http_a, &token).await;
    assert_eq!(home(&locks, &first).await.as_deref(), Some("node-a"));
    let (_, token) = add(http_a, key_a, &second, "host2", "host").await;
    let _host2 = bot("host2", http_a, &token).await;
    assert_eq!(home(&locks, &second).await.as_deref(), Some("node-a"));
    eventually(NODE_TTL * 3, "node-a reports two meetings", || async {
        let a = registry.get(&NodeId::new("node-a").expect("valid")).await;
        a.ok()
            .flatten()
            .is_some_and(|n| n.load.meetings == 2 && n.load.connections >= 2)
    })
    .await;

    // The last participant leaves: the room ends and gives its home up.
    host1.ok(json!({"id": 1, "call": "meeting.leave"})).await;
    eventually(
        Duration::from_secs(5),
        "the first meeting's home is given up",
        || async { home(&locks, &first).await.is_none() },
    )
    .await;

    // kill -9 node-b: no goodbye to Redis; it vanishes when its registration runs out.
    b.child.start_kill().expect("kill -9");
    b.child.wait().await.expect("node-b is gone");
    let killed = Instant::now();
    let took = eventually(
        NODE_TTL + Duration::from_millis(700),
        "node-b vanishes",
        || async { ids(&registry).await == ["node-a"] },
    )
    .await;
    eprintln!("node-b vanished {took:?} after kill -9 (TTL {NODE_TTL:?})");
    assert!(killed.elapsed() <= NODE_TTL + Duration::from_millis(700));

    // node-a stops gracefully (SIGTERM): its homes are released and it deregisters at once.
    let pid = a.child.id().expect("node-a runs").to_string();
    let status = std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .expect("kill runs");
    assert!(status.success());
    assert_eq!(a.exit_code().await, Some(0));
    assert_eq!(
        ids(&registry).await,
        Vec::<String>::new(),
        "deregistered on shutdown"
    );
    assert_eq!(home(&locks, &second).await, None, "released on shutdown");
}

#[tokio::test]
async fn bad_cluster_flags_and_an_unreachable_redis_are_clear_errors() {
    let Some(mut redis) = RedisServer::start_or_skip() else {
        return;
    };
    let dead = redis.url();
    redis.kill();
    let root = tempfile::tempdir().expect("temp dir");
    let data_dir = root.path().join("data");
    let data = data_dir.to_str().expect("utf-8 path");
    for (flags, code) in [
        (
            vec!["--redis", dead.as_str(), "--node-id", "n1"],
            "unreachable",
        ),
        (
            vec!["--redis", dead.as_str(), "--node-id", "bad id"],
            "bad_request",
        ),
        (
            vec!["--redis", "http://nowhere", "--node-id", "n1"],
            "bad_request",
        ),
        (
            vec![
                "--redis",
                dead.as_str(),
                "--node-id",
                "n1",
                "--lease-ttl-ms",
                "999999999999",
            ],
            "bad_request",
        ),
        (
            vec![
                "--redis",
                dead.as_str(),
                "--node-id",
                "n1",
                "--node-ttl-ms",
                "999999999999",
            ],
            "bad_request",
        ),
    ] {
        let mut args = vec!["serve", "--listen", "127.0.0.1:0", "--data", data];
        args.extend(&flags);
        let mut server = Proc::spawn("serve", &args, &[]);
        let line = server.next().await.expect("an error line");
        assert_eq!(line["ok"], false, "{flags:?}: {line}");
        assert_eq!(line["error"]["code"], code, "{flags:?}: {line}");
        assert_eq!(server.exit_code().await, Some(1), "{flags:?}");
        assert!(!data_dir.exists(), "{flags:?}: no data dir is made");
    }
}

fn signal(proc: &Proc, sig: &str) {
    let pid = proc.child.id().expect("running").to_string();
    let status = std::process::Command::new("kill")
        .args([sig, &pid])
        .status()
        .expect("kill runs");
    assert!(status.success(), "kill {sig} {pid}");
}

async fn load_of(registry: &Registry, id: &str) -> Option<u64> {
    let info = registry.get(&NodeId::new(id).expect("valid")).await;
    info.ok().flatten().map(|n| n.load.meetings)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_home_frozen_past_its_lease_steps_down_when_it_resumes() {
    let Some(redis) = RedisServer::start_or_skip() else {
        return;
    };
    let (registry, _) = look(&redis).await;
    // Another node's locks, with a long lease: it keeps what it takes.
    let conn = connect(&redis.url(), Duration::from_secs(1))
        .await
        .expect("connects");
    let other = HomeLocks::new(
        conn,
        Keys::default(),
        LeaseTiming::from_ttl(Duration::from_secs(30)).expect("valid"),
        NodeId::new("node-z").expect("valid"),
        "z",
    );
    let dir = tempfile::tempdir().expect("temp dir");
    let (mut a, ready) = node(&redis, "node-a", dir.path()).await;
    let http = ready["http"].as_str().expect("http");
    let key = ready["admin_key"].as_str().expect("admin key");
    let meeting = create_meeting(http, key, "frozen").await;
    let (_, token) = add(http, key, &meeting, "host", "host").await;
    let mut host = bot("host", http, &token).await;
    let held = other.holder(&meeting).await.expect("reads");
    let old = held.expect("node-a holds the home");
    assert_eq!(old.node_id.as_str(), "node-a");

    // Frozen (SIGSTOP) past its lease (1.5 s): its lock runs out and node-z takes it.
    signal(&a, "-STOP");
    eventually(Duration::from_secs(4), "node-a's lock runs out", || async {
        other.holder(&meeting).await.expect("reads").is_none()
    })
    .await;
    let taken = other
        .take(&meeting, onstage_cluster::Epoch(0))
        .await
        .expect("node-z takes it");
    assert!(taken.epoch() > old.epoch);
    assert_eq!(
        ids(&registry).await,
        Vec::<String>::new(),
        "a frozen node leaves the registry"
    );

    // Resumed: its own clock says the lease is over, so it steps down before anything
    // else: the meeting's sessions end here (the bot is told and reconnects), it comes
    // back to the registry with no meetings, and node-z's lock is untouched.
    let resumed = Instant::now();
    signal(&a, "-CONT");
    host.expect_event("connectionStateUpdate", json!({"state":"reconnecting"}))
        .await;
    eventually(
        Duration::from_secs(3),
        "node-a registered again, home of nothing",
        || async { load_of(&registry, "node-a").await == Some(0) },
    )
    .await;
    eprintln!(
        "stepped down and registered again within {:?}",
        resumed.elapsed()
    );
    let holder = other.holder(&meeting).await.expect("reads");
    assert_eq!(holder, Some(taken.holder.clone()));
    a.child.start_kill().expect("kill");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_redis_restarts_empty_a_node_registers_and_takes_its_meeting_again() {
    let Some(mut redis) = RedisServer::start_or_skip() else {
        return;
    };
    let (registry, locks) = look(&redis).await;
    let dir = tempfile::tempdir().expect("temp dir");
    let (mut a, ready) = node(&redis, "node-a", dir.path()).await;
    let http = ready["http"].as_str().expect("http");
    let key = ready["admin_key"].as_str().expect("admin key");
    let meeting = create_meeting(http, key, "kept").await;
    let (_, token) = add(http, key, &meeting, "host", "host").await;
    let mut host = bot("host", http, &token).await;
    let old = locks.holder(&meeting).await.expect("reads").expect("held");

    redis.restart_empty().expect("Redis restarts");
    let (registry_after, locks_after) = look(&redis).await;
    drop((registry, locks));
    let took = eventually(
        Duration::from_secs(3),
        "node-a back with its meeting",
        || async {
            let home = locks_after.holder(&meeting).await.ok().flatten();
            load_of(&registry_after, "node-a").await == Some(1)
                && home.is_some_and(|h| h.node_id.as_str() == "node-a" && h.epoch > old.epoch)
        },
    )
    .await;
    eprintln!("registered and home again {took:?} after the restart");
    // The meeting went on throughout: the host's session is the same one.
    let listed = host.ok(json!({"id": 5, "call": "participants.list"})).await;
    assert_eq!(listed.as_array().map(Vec::len), Some(1), "{listed}");
    // The room ends with its last participant and gives up the home it took again.
    host.ok(json!({"id": 6, "call": "meeting.leave"})).await;
    eventually(
        Duration::from_secs(5),
        "the retaken home is given up",
        || async {
            let home = locks_after.holder(&meeting).await.ok().flatten();
            home.is_none() && load_of(&registry_after, "node-a").await == Some(0)
        },
    )
    .await;
    signal(&a, "-TERM");
    assert_eq!(a.exit_code().await, Some(0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_id_in_use_by_a_live_node_is_refused() {
    let Some(redis) = RedisServer::start_or_skip() else {
        return;
    };
    let dir_a = tempfile::tempdir().expect("temp dir");
    let (_a, _) = node(&redis, "node-a", dir_a.path()).await;
    let dir = tempfile::tempdir().expect("temp dir");
    let data = dir.path().to_str().expect("utf-8 path");
    let url = redis.url();
    let args = [
        "serve",
        "--listen",
        "127.0.0.1:0",
        "--data",
        data,
        "--redis",
        &url,
        "--node-id",
        "node-a",
        "--node-ttl-ms",
        "1000",
    ];
    let started = Instant::now();
    let mut twin = Proc::spawn("twin", &args, &[]);
    let line = twin.next().await.expect("an error line");
    assert_eq!(line["ok"], false, "{line}");
    assert_eq!(line["error"]["code"], "bad_request", "{line}");
    let message = line["error"]["message"].as_str().unwrap_or_default();
    assert!(message.contains("node_id_in_use"), "{line}");
    assert_eq!(twin.exit_code().await, Some(1));
    // It waited out a registration's TTL first: a node restarted at once gets its id back.
    assert!(started.elapsed() >= NODE_TTL, "{:?}", started.elapsed());
}
