//! A server that is a cluster member (`ServerConfig::cluster`) against a real
//! `redis-server`: a room runs only while it holds its meeting's home lock. Skipped,
//! saying so, only when redis-server is not installed.

mod common;

use std::time::{Duration, Instant};

use common::{Peer, Srv};
use onstage_cluster::cluster::connect;
use onstage_cluster::keys::Keys;
use onstage_cluster::redis;
use onstage_cluster::testing::RedisServer;
use onstage_cluster::{Epoch, HomeLocks, LeaseTiming, NodeId};
use onstage_server::ClusterSettings;
use serde_json::json;

const LEASE: Duration = Duration::from_millis(900);

async fn member(redis: &RedisServer) -> Srv {
    let url = redis.url();
    Srv::start_with(move |config| {
        let mut cluster = ClusterSettings::new(url, NodeId::new("n1").expect("valid"));
        cluster.node_ttl = Duration::from_millis(900);
        cluster.lease_ttl = LEASE;
        config.cluster = Some(cluster);
    })
    .await
}

/// Another node's home locks, taken by hand.
async fn other_node(
    redis: &RedisServer,
    ttl: Duration,
) -> (HomeLocks, redis::aio::ConnectionManager) {
    let conn = connect(&redis.url(), Duration::from_secs(1))
        .await
        .expect("connects");
    let locks = HomeLocks::new(
        conn.clone(),
        Keys::default(),
        LeaseTiming::from_ttl(ttl).expect("valid"),
        NodeId::new("n2").expect("valid"),
        "other",
    );
    (locks, conn)
}

async fn holder(locks: &HomeLocks, meeting: &str) -> Option<(String, Epoch)> {
    let holder = locks.holder(meeting).await.expect("reads");
    holder.map(|h| (h.node_id.to_string(), h.epoch))
}

#[tokio::test]
async fn a_room_that_loses_its_home_lock_ends_its_sessions_and_comes_back_once_it_is_free() {
    let Some(redis) = RedisServer::start_or_skip() else {
        return;
    };
    let srv = member(&redis).await;
    let (n2, conn) = other_node(&redis, Duration::from_millis(600)).await;
    let meeting = srv.meeting("standup").await;
    let (_, _, mut host) = Peer::join_as(&srv, &meeting, "Hana", "host").await;
    let (speaker_id, speaker_token, mut speaker) =
        Peer::join_as(&srv, &meeting, "Sam", "speaker").await;
    speaker.call_ok(json!({"call":"stage.join"})).await;
    let (node, epoch) = holder(&n2, &meeting)
        .await
        .expect("the room holds its home");
    assert_eq!(node, "n1");
    assert_eq!(srv.metric("onstage_cluster_homes").await, 1.0);

    // As if n1 had been frozen past its lease: the lock is gone and n2 takes it.
    let _: () = redis::cmd("DEL")
        .arg(Keys::default().home(&meeting))
        .query_async(&mut conn.clone())
        .await
        .expect("deletes");
    let taken = n2
        .take(&meeting, Epoch(0))
        .await
        .expect("n2 takes the home");
    assert!(taken.epoch() > epoch);
    let lost = Instant::now();
    // n1 finds out at its next renewal (a third of the lease) and ends the sessions.
    host.expect_goodbye("shutdown").await;
    speaker.expect_goodbye("shutdown").await;
    assert!(
        lost.elapsed() < LEASE,
        "stepped down after {:?}",
        lost.elapsed()
    );
    assert_eq!(srv.metric("onstage_cluster_homes_lost_total").await, 1.0);
    assert_eq!(srv.metric("onstage_cluster_homes").await, 0.0);
    assert_eq!(
        holder(&n2, &meeting).await,
        Some(("n2".to_owned(), taken.epoch())),
        "stepping down deletes nobody else's lock"
    );

    // n2 does not renew: once its lock runs out, a reconnect makes n1 the home again, with
    // a newer epoch, and the stage kept by n1 is given back.
    let (_again, welcome) = Peer::join(&srv, &speaker_token).await;
    let (node, epoch) = holder(&n2, &meeting).await.expect("held again");
    assert_eq!(node, "n1");
    assert!(epoch > taken.epoch(), "{epoch} > {}", taken.epoch());
    let me = welcome["snapshot"]["participants"]
        .as_array()
        .expect("participants")
        .iter()
        .find(|p| p["user_id"] == speaker_id)
        .cloned();
    let me = me.unwrap_or_else(|| panic!("Sam in the snapshot: {welcome}"));
    assert_eq!(me["stage_status"], "ON_STAGE", "{welcome}");
}

#[tokio::test]
async fn a_join_is_turned_away_while_another_node_keeps_the_home() {
    let Some(redis) = RedisServer::start_or_skip() else {
        return;
    };
    let srv = member(&redis).await;
    let (n2, _conn) = other_node(&redis, Duration::from_secs(30)).await;
    let meeting = srv.meeting("elsewhere").await;
    let lease = n2
        .take(&meeting, Epoch(0))
        .await
        .expect("n2 takes the home");
    let (_, token) = srv.participant(&meeting, "Vera", "viewer").await;
    let started = Instant::now();
    let mut peer = Peer::connect(&srv, &token).await;
    // Waited for a lease (and a second) for the lock to come free, then turned away.
    let seen = peer.expect_goodbye("shutdown").await;
    assert_eq!(seen.len(), 1, "nothing but the goodbye: {seen:?}");
    assert!(started.elapsed() >= LEASE, "waited {:?}", started.elapsed());
    assert_eq!(
        holder(&n2, &meeting).await,
        Some(("n2".to_owned(), lease.epoch()))
    );
    // Nothing of the meeting runs here: no participant was seated.
    assert_eq!(srv.metric("onstage_participants").await, 0.0);
}
