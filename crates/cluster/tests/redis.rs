//! The cluster against a real `redis-server` (started per test on a free loopback port, no
//! persistence). Skipped, saying so, only when redis-server is not installed.

use std::time::{Duration, Instant};

use onstage_cluster::cluster::connect;
use onstage_cluster::keys::Keys;
use onstage_cluster::lease::LossReason;
use onstage_cluster::testing::{eventually, RedisServer};
use onstage_cluster::{
    Cluster, ClusterConfig, ClusterError, ClusterEvent, Epoch, HomeLocks, LeaseClock, LeaseStep,
    LeaseTiming, NodeId, Registry, RenewReply,
};

const TTL: Duration = Duration::from_millis(1000);

fn node(id: &str) -> NodeId {
    NodeId::new(id).expect("valid node id")
}

fn config(redis: &RedisServer, id: &str) -> ClusterConfig {
    ClusterConfig::new(redis.url(), node(id), format!("http://{id}.test:8080"))
        .with_node_ttl(TTL)
        .with_lease(LeaseTiming::from_ttl(TTL).expect("valid lease"))
}

async fn join(redis: &RedisServer, id: &str) -> Cluster {
    Cluster::join(config(redis, id), || 7).await.expect("joins")
}

/// Home locks of their own process (own connection, own instance), for driving takes and
/// renewals by hand.
async fn locks(redis: &RedisServer, id: &str, instance: &str) -> HomeLocks {
    let conn = connect(&redis.url(), Duration::from_secs(1))
        .await
        .expect("connects");
    HomeLocks::new(
        conn,
        Keys::default(),
        LeaseTiming::from_ttl(Duration::from_millis(400)).expect("valid lease"),
        node(id),
        instance,
    )
}

async fn registry(redis: &RedisServer) -> Registry {
    let conn = connect(&redis.url(), Duration::from_secs(1))
        .await
        .expect("connects");
    Registry::new(conn, Keys::default(), TTL)
}

async fn node_ids(registry: &Registry) -> Vec<String> {
    match registry.list().await {
        Ok(nodes) => nodes.into_iter().map(|n| n.node_id.to_string()).collect(),
        Err(_) => Vec::new(), // Redis restarting: nobody listed yet
    }
}

async fn next_event(events: &mut tokio::sync::broadcast::Receiver<ClusterEvent>) -> ClusterEvent {
    tokio::time::timeout(Duration::from_secs(5), events.recv())
        .await
        .expect("an event within 5 s")
        .expect("the event channel is open")
}

#[tokio::test]
async fn a_node_appears_reports_its_load_and_vanishes_after_its_ttl() {
    let Some(redis) = RedisServer::start_or_skip() else {
        return;
    };
    let registry = registry(&redis).await;
    let a = join(&redis, "node-a").await;
    a.take_home("m1").await.expect("takes m1");
    let listed = registry.get(&node("node-a")).await.expect("reads");
    let info = listed.expect("node-a is registered as soon as it joined");
    assert_eq!(info.public_url, "http://node-a.test:8080");
    assert_eq!(info.instance, a.instance());
    // The refresh task writes the load: one home, the connections the server tells.
    eventually(TTL * 3, "the load shows one meeting", || async {
        let info = registry.get(&node("node-a")).await.ok().flatten();
        info.is_some_and(|i| i.load.meetings == 1 && i.load.connections == 7)
    })
    .await;

    // Refreshed: still there three TTLs on (checked all along, not only at the end).
    let until = Instant::now() + TTL * 3;
    while Instant::now() < until {
        assert_eq!(
            node_ids(&registry).await,
            ["node-a"],
            "node-a stays while alive"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // Dropped without leaving, as a crash: no more refreshes, gone within its TTL.
    let dropped = Instant::now();
    drop(a);
    eventually(
        TTL + Duration::from_millis(500),
        "node-a vanishes",
        || async { node_ids(&registry).await.is_empty() },
    )
    .await;
    let took = dropped.elapsed();
    assert!(
        took + Duration::from_millis(400) >= TTL / 3,
        "vanished after {took:?}: too soon for a TTL of {TTL:?} refreshed every {:?}",
        TTL / 3
    );
}

#[tokio::test]
async fn a_node_that_leaves_is_gone_at_once_and_frees_its_homes() {
    let Some(redis) = RedisServer::start_or_skip() else {
        return;
    };
    let registry = registry(&redis).await;
    let a = join(&redis, "node-a").await;
    let b = join(&redis, "node-b").await;
    assert_eq!(node_ids(&registry).await, ["node-a", "node-b"]);
    a.take_home("m1").await.expect("takes m1");
    a.leave().await.expect("leaves");
    assert_eq!(node_ids(&registry).await, ["node-b"]);
    assert_eq!(b.home_of("m1").await.expect("reads"), None, "m1 released");
    let lease = b
        .take_home("m1")
        .await
        .expect("b takes the freed meeting at once");
    assert_eq!(lease.epoch(), Epoch(2));
}

#[tokio::test]
async fn a_second_live_process_cannot_take_a_node_id() {
    let Some(redis) = RedisServer::start_or_skip() else {
        return;
    };
    let _a = join(&redis, "node-a").await;
    let second = Cluster::join(config(&redis, "node-a"), || 0).await;
    let err = second.expect_err("the id is in use");
    assert_eq!(err.code(), "node_id_in_use", "{err}");
}

#[tokio::test]
async fn a_restarted_node_gets_its_id_back_once_the_old_registration_runs_out() {
    let Some(redis) = RedisServer::start_or_skip() else {
        return;
    };
    let a = join(&redis, "node-a").await;
    drop(a); // killed: its registration is still there for up to a TTL
    let again = join(&redis, "node-a").await;
    let registry = registry(&redis).await;
    let info = registry.get(&node("node-a")).await.expect("reads");
    assert_eq!(info.map(|i| i.instance), Some(again.instance().to_owned()));
}

#[tokio::test]
async fn unreachable_redis_and_bad_settings_are_clear_errors() {
    let Some(mut redis) = RedisServer::start_or_skip() else {
        return;
    };
    let cfg = config(&redis, "node-a");
    redis.kill();
    let start = Instant::now();
    let err = Cluster::join(cfg, || 0).await.expect_err("no Redis");
    assert_eq!(err.code(), "redis_unavailable", "{err}");
    assert!(start.elapsed() < Duration::from_secs(5), "failed fast");

    let mut cfg = config(&redis, "node-a");
    cfg.redis_url = "http://not-redis".into();
    let err = Cluster::join(cfg, || 0).await.expect_err("bad URL");
    assert_eq!(err.code(), "bad_config", "{err}");

    let cfg = config(&redis, "node-a").with_node_ttl(Duration::from_millis(10));
    let err = Cluster::join(cfg, || 0).await.expect_err("TTL too short");
    assert_eq!(err.code(), "bad_config", "{err}");

    let cfg = config(&redis, "node-a").with_node_ttl(Duration::from_secs(2 * 24 * 3600));
    assert_eq!(
        cfg.check_timings().map_err(|e| e.code()).err(),
        Some("bad_config")
    );
    let err = Cluster::join(cfg, || 0).await.expect_err("TTL too long");
    assert_eq!(err.code(), "bad_config", "{err}");
}

#[tokio::test]
async fn nodes_racing_for_a_meeting_get_exactly_one_home() {
    let Some(redis) = RedisServer::start_or_skip() else {
        return;
    };
    const CONTENDERS: usize = 6;
    const ROUNDS: usize = 40;
    let mut contenders = Vec::new();
    for i in 0..CONTENDERS {
        contenders.push(locks(&redis, &format!("node-{i}"), &format!("inst{i}")).await);
    }
    for round in 0..ROUNDS {
        let meeting = format!("race-{round}");
        let barrier = std::sync::Arc::new(tokio::sync::Barrier::new(CONTENDERS));
        let tasks: Vec<_> = contenders
            .iter()
            .cloned()
            .map(|locks| {
                let meeting = meeting.clone();
                let barrier = barrier.clone();
                tokio::spawn(async move {
                    barrier.wait().await;
                    (
                        locks.node_id().to_string(),
                        locks.take(&meeting, Epoch(0)).await,
                    )
                })
            })
            .collect();
        let mut winners = Vec::new();
        let mut refused = Vec::new();
        for task in tasks {
            let (id, result) = task.await.expect("the task ran");
            match result {
                Ok(lease) => winners.push((id, lease)),
                Err(ClusterError::HeldElsewhere { holder, epoch, .. }) => {
                    refused.push((holder, epoch))
                }
                Err(e) => panic!("round {round}: {id} failed: {e}"),
            }
        }
        assert_eq!(
            winners.len(),
            1,
            "round {round}: exactly one home, got {winners:?}"
        );
        let (winner, lease) = &winners[0];
        assert_eq!(lease.epoch(), Epoch(1), "a refused take spends no epoch");
        assert_eq!(refused.len(), CONTENDERS - 1);
        for (holder, epoch) in &refused {
            assert_eq!(holder, winner, "the refused are told who won");
            assert_eq!(*epoch, Epoch(1));
        }
        let holder = contenders[0].holder(&meeting).await.expect("reads");
        assert_eq!(
            holder.map(|h| h.node_id.to_string()).as_deref(),
            Some(winner.as_str())
        );
    }
}

#[tokio::test]
async fn a_meeting_held_here_is_not_taken_twice_and_an_old_lease_releases_only_itself() {
    let Some(redis) = RedisServer::start_or_skip() else {
        return;
    };
    let a = join(&redis, "node-a").await;
    // Concurrent takes inside one process: one lease.
    let takes: Vec<_> = (0..8)
        .map(|_| {
            let a = a.clone();
            tokio::spawn(async move { a.take_home("m1").await })
        })
        .collect();
    let mut leases = Vec::new();
    for take in takes {
        match take.await.expect("the task ran") {
            Ok(lease) => leases.push(lease),
            Err(e) => assert_eq!(e.code(), "held_elsewhere", "{e}"),
        }
    }
    assert_eq!(leases.len(), 1, "{leases:?}");
    assert_eq!(a.homes(), 1);
    let first = leases.remove(0);
    // Released, then taken again: the first lease's release leaves the second alone.
    assert!(a.release_home(&first).await.expect("releases"));
    let second = a.take_home("m1").await.expect("takes m1 again");
    assert!(second.epoch() > first.epoch());
    assert!(!a.release_home(&first).await.expect("answers"));
    assert_eq!(a.home_epoch("m1"), Some(second.epoch()));
    let holder = a.home_of("m1").await.expect("reads");
    assert_eq!(holder.map(|h| h.epoch), Some(second.epoch()));
}

#[tokio::test]
async fn an_expired_lease_goes_to_another_with_a_higher_epoch_and_the_old_holder_steps_down() {
    let Some(redis) = RedisServer::start_or_skip() else {
        return;
    };
    let a = locks(&redis, "node-a", "ia").await;
    let b = locks(&redis, "node-b", "ib").await;
    let sent = Instant::now();
    let old = a.take("m1", Epoch(0)).await.expect("a takes m1");
    let mut clock = LeaseClock::taken(a.timing(), sent);
    // While a holds it, b is refused.
    let refused = b.take("m1", Epoch(0)).await.expect_err("held by a");
    assert_eq!(refused.code(), "held_elsewhere");
    assert_eq!(a.renew(&old).await.expect("renews"), RenewReply::Renewed);

    // a stops renewing (paused); the lock runs out in Redis and b takes it.
    eventually(Duration::from_secs(3), "a's lock runs out", || async {
        b.holder("m1").await.expect("reads").is_none()
    })
    .await;
    assert!(
        clock.expired(Instant::now()),
        "a's clock counts its lease as over too"
    );
    let new = b
        .take("m1", Epoch(0))
        .await
        .expect("b takes the expired lock");
    assert!(
        new.epoch() > old.epoch(),
        "{} > {}",
        new.epoch(),
        old.epoch()
    );

    // a resumes and renews: refused, and it steps down.
    let reply = a.renew(&old).await.expect("answers");
    assert_eq!(reply, RenewReply::HeldBy(new.holder.value()));
    let step = clock.answered(reply, Instant::now());
    assert_eq!(
        step,
        LeaseStep::StepDown(LossReason::TakenBy(new.holder.value()))
    );
    assert_eq!(
        b.holder("m1").await.expect("reads"),
        Some(new.holder.clone())
    );
}

#[tokio::test]
async fn a_stale_lock_of_the_same_process_is_replaced_with_a_fresh_epoch() {
    let Some(redis) = RedisServer::start_or_skip() else {
        return;
    };
    let a = locks(&redis, "node-a", "ia").await;
    let first = a.take("m1", Epoch(0)).await.expect("takes m1");
    // The caller lost track of it (its answer lost, or given up by the clock): taking
    // again replaces it rather than handing the same epoch out twice.
    let second = a.take("m1", Epoch(0)).await.expect("takes m1 again");
    assert!(
        second.epoch() > first.epoch(),
        "{} > {}",
        second.epoch(),
        first.epoch()
    );
    assert_eq!(
        a.renew(&first).await.expect("answers"),
        RenewReply::HeldBy(second.holder.value())
    );
    assert_eq!(
        a.renew(&second).await.expect("answers"),
        RenewReply::Renewed
    );
    // Another instance under the same node id is not "the same process".
    let twin = locks(&redis, "node-a", "other").await;
    let refused = twin.take("m1", Epoch(0)).await.expect_err("held by ia");
    assert_eq!(refused.code(), "held_elsewhere");
}

#[tokio::test]
async fn compare_and_delete_never_deletes_another_holders_lock() {
    let Some(redis) = RedisServer::start_or_skip() else {
        return;
    };
    let a = locks(&redis, "node-a", "ia").await;
    let b = locks(&redis, "node-b", "ib").await;
    let old = a.take("m1", Epoch(0)).await.expect("a takes m1");
    eventually(Duration::from_secs(3), "a's lock runs out", || async {
        a.holder("m1").await.expect("reads").is_none()
    })
    .await;
    let new = b.take("m1", Epoch(0)).await.expect("b takes m1");
    assert!(
        !a.release(&old).await.expect("answers"),
        "a's release deletes nothing"
    );
    assert_eq!(
        a.holder("m1").await.expect("reads"),
        Some(new.holder.clone())
    );
    // The same node id from another process (a restarted node) is not the holder either.
    let twin = locks(&redis, "node-b", "other").await;
    let forged = onstage_cluster::HomeLease {
        holder: onstage_cluster::Holder {
            instance: "other".into(),
            ..new.holder.clone()
        },
        ..new.clone()
    };
    assert!(!twin.release(&forged).await.expect("answers"));
    assert_eq!(
        a.holder("m1").await.expect("reads"),
        Some(new.holder.clone())
    );
    assert!(
        b.release(&new).await.expect("answers"),
        "the holder's own release works"
    );
    assert_eq!(a.holder("m1").await.expect("reads"), None);
    assert!(
        !b.release(&new).await.expect("answers"),
        "twice deletes nothing more"
    );
}

#[tokio::test]
async fn a_home_whose_lock_is_taken_hears_it_lost() {
    let Some(redis) = RedisServer::start_or_skip() else {
        return;
    };
    let a = join(&redis, "node-a").await;
    let mut events = a.events();
    let lease = a.take_home("m1").await.expect("takes m1");
    assert_eq!(a.home_epoch("m1"), Some(lease.epoch()));
    // Another node finds the lock gone (as if a had been frozen past its TTL) and takes it.
    let conn = connect(&redis.url(), Duration::from_secs(1))
        .await
        .expect("connects");
    let _: () = redis::cmd("DEL")
        .arg(Keys::default().home("m1"))
        .query_async(&mut conn.clone())
        .await
        .expect("deletes");
    let b = locks(&redis, "node-b", "ib").await;
    let taken = b.take("m1", Epoch(0)).await.expect("b takes m1");
    assert!(taken.epoch() > lease.epoch());
    match next_event(&mut events).await {
        ClusterEvent::HomeLost {
            meeting,
            epoch,
            reason: LossReason::TakenBy(holder),
        } => {
            assert_eq!(meeting, "m1");
            assert_eq!(epoch, lease.epoch());
            assert_eq!(holder, taken.holder.value());
        }
        other => panic!("expected m1 lost to node-b, got {other:?}"),
    }
    assert_eq!(a.home_epoch("m1"), None);
    assert_eq!(a.homes(), 0);
    // Stepping down deleted nothing: b still holds it.
    assert_eq!(b.holder("m1").await.expect("reads"), Some(taken.holder));
}

#[tokio::test]
async fn a_home_cut_off_from_redis_steps_down_by_its_own_clock() {
    let Some(mut redis) = RedisServer::start_or_skip() else {
        return;
    };
    let a = join(&redis, "node-a").await;
    let mut events = a.events();
    let lease = a.take_home("m1").await.expect("takes m1");
    let cut = Instant::now();
    redis.kill();
    match next_event(&mut events).await {
        ClusterEvent::HomeLost {
            meeting,
            epoch,
            reason: LossReason::Expired,
        } => {
            assert_eq!(meeting, "m1");
            assert_eq!(epoch, lease.epoch());
        }
        other => panic!("expected m1 expired, got {other:?}"),
    }
    // Before the lock could have run out in Redis (the TTL from the last renewal), and not
    // before its last renewal's lease (at least TTL - drift - one renewal period).
    let after = cut.elapsed();
    assert!(after < TTL, "stepped down after {after:?}, TTL {TTL:?}");
    assert!(
        after >= TTL - TTL / 10 - TTL / 3 - Duration::from_millis(50),
        "{after:?}"
    );
    assert_eq!(a.home_epoch("m1"), None);
}

#[tokio::test]
async fn after_redis_restarts_empty_nodes_register_again_and_retake_their_meetings() {
    let Some(mut redis) = RedisServer::start_or_skip() else {
        return;
    };
    let a = join(&redis, "node-a").await;
    let b = join(&redis, "node-b").await;
    let mut events = a.events();
    // Spend some epochs, so a retake can be seen to go above them.
    for _ in 0..3 {
        let lease = a.take_home("m1").await.expect("takes m1");
        assert!(a.release_home(&lease).await.expect("releases m1"));
    }
    let old = a.take_home("m1").await.expect("takes m1");
    assert_eq!(old.epoch(), Epoch(4));
    let b_lease = b.take_home("m2").await.expect("b takes m2");

    redis.restart_empty().expect("restarts");
    let registry = registry(&redis).await;
    let took = eventually(TTL * 3, "both nodes registered again", || async {
        node_ids(&registry).await == ["node-a", "node-b"]
    })
    .await;
    match next_event(&mut events).await {
        ClusterEvent::HomeRetaken {
            meeting,
            old: was,
            new,
        } => {
            assert_eq!(meeting, "m1");
            assert_eq!(was, old.epoch());
            assert!(new > old.epoch(), "retaken at {new}, above {}", old.epoch());
        }
        other => panic!("expected m1 retaken, got {other:?}"),
    }
    let locks = locks(&redis, "probe", "p").await;
    eventually(TTL * 2, "both homes held again", || async {
        let m1 = locks.holder("m1").await.ok().flatten();
        let m2 = locks.holder("m2").await.ok().flatten();
        m1.is_some_and(|h| h.node_id.as_str() == "node-a" && h.epoch > old.epoch())
            && m2.is_some_and(|h| h.node_id.as_str() == "node-b" && h.epoch > b_lease.epoch())
    })
    .await;
    assert!(a.home_epoch("m1").is_some_and(|e| e > old.epoch()));
    assert_eq!(a.homes(), 1);
    assert_eq!(b.homes(), 1);
    // The lease first handed out still names the holding: releasing it frees the retaken
    // lock (not only the old epoch's value, which Redis no longer has).
    assert!(a.release_home(&old).await.expect("releases"));
    assert_eq!(a.homes(), 0);
    assert_eq!(locks.holder("m1").await.expect("reads"), None);
    eprintln!("registered again {took:?} after the restart");
}

#[tokio::test]
async fn a_home_whose_redis_hangs_steps_down_by_its_clock_in_time() {
    let Some(redis) = RedisServer::start_or_skip() else {
        return;
    };
    let a = join(&redis, "node-a").await;
    let mut events = a.events();
    let lease = a.take_home("m1").await.expect("takes m1");
    // Frozen, not gone: renewals hang until the Redis timeout instead of failing at once.
    let frozen = Instant::now();
    redis.pause();
    let event = next_event(&mut events).await;
    let after = frozen.elapsed();
    redis.resume();
    assert_eq!(
        event,
        ClusterEvent::HomeLost {
            meeting: "m1".into(),
            epoch: lease.epoch(),
            reason: LossReason::Expired,
        }
    );
    // Before the lock can have run out in Redis, renewals stuck or not.
    assert!(
        after < TTL,
        "stepped down {after:?} after Redis froze; TTL {TTL:?}"
    );
    assert_eq!(a.home_epoch("m1"), None);
}

#[tokio::test]
async fn a_foreign_key_among_the_node_keys_hides_nobody() {
    let Some(redis) = RedisServer::start_or_skip() else {
        return;
    };
    let registry = registry(&redis).await;
    let _a = join(&redis, "node-a").await;
    let conn = connect(&redis.url(), Duration::from_secs(1))
        .await
        .expect("connects");
    for (key, value) in [
        ("onstage:node:junk", "not json"),
        ("onstage:node:odd", r#"{"node_id":"a b"}"#),
    ] {
        let _: () = redis::cmd("SET")
            .arg(key)
            .arg(value)
            .query_async(&mut conn.clone())
            .await
            .expect("sets");
    }
    assert_eq!(node_ids(&registry).await, ["node-a"]);
    // Read alone, a foreign value is a clear error, not a node.
    let err = registry
        .get(&node("junk"))
        .await
        .expect_err("not a registration");
    assert_eq!(err.code(), "bad_reply");
}
