//! Simulcast through the real server: a speaker publishing a 1280x720 synthetic capture
//! as three layers, the SFU forwarding to each viewer the layer its tile takes, and telling
//! the speaker which layers anyone takes, so that the others stop being encoded.

use std::time::{Duration, Instant};

use onstage_client::rtc::TransportConfig;
use onstage_client::{MediaConfig, MediaStats, Meeting, Sources, StageMedia};
use onstage_media::VideoFormat;
use onstage_proto::{TileSize, UserId};
use onstage_testkit::{within, TestServer};

/// Simulcast takes a while: the publisher's estimate has to grow before its top layer
/// comes on, and the SFU's per-viewer estimate before a viewer is moved up to it.
const SLOW: Duration = Duration::from_secs(45);

fn config(sources: Sources) -> MediaConfig {
    MediaConfig {
        sources,
        video: VideoFormat {
            width: 1280,
            height: 720,
            fps: 30,
        },
        transport: TransportConfig::loopback(),
        ..MediaConfig::default()
    }
}

/// Waits (up to `limit`) until `pred` holds on the media stats; the stats when it did.
async fn wait_stats(
    media: &StageMedia,
    what: &str,
    limit: Duration,
    pred: impl Fn(&MediaStats) -> bool,
) -> MediaStats {
    let started = Instant::now();
    loop {
        let stats = media.stats();
        if pred(&stats) {
            eprintln!("{what}: after {:?}", started.elapsed());
            return stats;
        }
        assert!(
            started.elapsed() < limit,
            "timed out waiting for {what}; stats {stats:#?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn encoded(stats: &MediaStats) -> Vec<(String, u64)> {
    stats
        .layers
        .iter()
        .map(|l| (l.rid.clone(), l.frames_encoded))
        .collect()
}

async fn tiles(viewer: &Meeting, speaker: &UserId, (width, height): (u32, u32)) {
    let tiles = vec![TileSize {
        user_id: speaker.clone(),
        width,
        height,
    }];
    within("media.tiles", viewer.set_tiles(tiles))
        .await
        .expect("tiles told");
}

/// Whether `stats` show a picture of the speaker larger than 320x180, stamped.
fn larger_than_small(stats: &MediaStats, speaker: &UserId, frames: u64) -> bool {
    stats
        .received
        .get(speaker)
        .is_some_and(|r| r.width > 320 && r.height > 180 && r.stamped_frames >= frames)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_720p_speaker_sends_its_layers_by_tile_and_encodes_only_those_taken() {
    let server = TestServer::start().await;
    let meeting = server.meeting("simulcast").await;
    let speaker = server.join(&meeting, "Speaker", "speaker").await;
    let small = server.join(&meeting, "Small", "viewer").await;
    let large = server.join(&meeting, "Large", "viewer").await;
    let speaker_id = speaker.user_id();
    let speaker_media = StageMedia::start(
        speaker.clone(),
        config(Sources::Synthetic { tone_hz: 440.0 }),
    );
    within("the speaker joins the stage", speaker.stage().join())
        .await
        .expect("on stage");

    // Nobody watches yet: the SFU says so at once (the lowest layer is always named), and
    // only that one is encoded.
    wait_stats(
        &speaker_media,
        "nobody watching, only q encoded",
        SLOW,
        |s| {
            s.layers.len() == 3
                && s.layers[0].frames_encoded >= 10
                && s.layers[1..].iter().all(|l| l.bitrate_bps == 0)
        },
    )
    .await;
    assert_eq!(
        *speaker.wanted_layers().borrow(),
        Some(vec!["q".to_owned()])
    );

    let receive_only = config(Sources::None);
    let small_media = StageMedia::start(small.clone(), receive_only.clone());
    let large_media = StageMedia::start(large.clone(), receive_only);
    tiles(&small, &speaker_id, (320, 180)).await;
    tiles(&large, &speaker_id, (1280, 720)).await;

    // Each viewer decodes the layer its tile takes, stamps and all (the synthetic stamp is
    // painted at every layer's size): the small tile q, the large one a larger layer (h or
    // f, as the SFU's estimate of its link allows).
    let received = |stats: &MediaStats| stats.received.get(&speaker_id).cloned();
    let small_stats = wait_stats(&small_media, "the small tile gets 320x180", SLOW, |s| {
        received(s).is_some_and(|r| (r.width, r.height) == (320, 180) && r.stamped_frames >= 30)
    })
    .await;
    let r = received(&small_stats).expect("received");
    assert_eq!((r.out_of_order_frames, r.decode_errors), (0, 0), "{r:?}");
    wait_stats(
        &large_media,
        "the large tile gets a larger layer",
        SLOW,
        |s| larger_than_small(s, &speaker_id, 30),
    )
    .await;

    // Three layers at a quarter, half and full size, and exactly those the SFU names are
    // encoded: q and the large tile's.
    let taken = |s: &MediaStats| -> Vec<String> {
        s.layers
            .iter()
            .filter(|l| l.bitrate_bps > 0)
            .map(|l| l.rid.clone())
            .collect()
    };
    let stats = wait_stats(
        &speaker_media,
        "the layers named are the layers encoded",
        SLOW,
        |s| {
            let named = speaker.wanted_layers().borrow().clone();
            named.as_ref().is_some_and(|n| n.len() >= 2) && named == Some(taken(s))
        },
    )
    .await;
    let sizes: Vec<(&str, u32, u32)> = stats
        .layers
        .iter()
        .map(|l| (l.rid.as_str(), l.width, l.height))
        .collect();
    assert_eq!(sizes, [("q", 320, 180), ("h", 640, 360), ("f", 1280, 720)]);
    let shown = received(&large_media.stats()).expect("received");
    let rid = sizes
        .iter()
        .find(|(_, w, h)| (*w, *h) == (shown.width, shown.height))
        .map(|(rid, ..)| rid.to_string());
    assert!(
        rid.as_ref().is_some_and(|rid| taken(&stats).contains(rid)),
        "the large tile shows {}x{}, a layer encoded: {stats:?}",
        shown.width,
        shown.height
    );

    // Both tiles small: the SFU says only q is taken, and h and f stop being encoded.
    tiles(&large, &speaker_id, (320, 180)).await;
    let paused = wait_stats(&speaker_media, "h and f paused", SLOW, |s| {
        s.layers.len() == 3 && s.layers[1].bitrate_bps == 0 && s.layers[2].bitrate_bps == 0
    })
    .await;
    assert_eq!(
        *speaker.wanted_layers().borrow(),
        Some(vec!["q".to_owned()])
    );
    tokio::time::sleep(Duration::from_secs(1)).await;
    let later = speaker_media.stats();
    let (before, after) = (encoded(&paused), encoded(&later));
    assert!(
        after[0].1 >= before[0].1 + 20,
        "q goes on: {before:?} -> {after:?}"
    );
    for layer in [1, 2] {
        assert!(
            after[layer].1 <= before[layer].1 + 1,
            "{} is not encoded: {before:?} -> {after:?}",
            after[layer].0
        );
    }
    wait_stats(
        &large_media,
        "the large viewer moved to 320x180",
        SLOW,
        |s| received(s).is_some_and(|r| (r.width, r.height) == (320, 180)),
    )
    .await;

    // A large tile again: a larger layer is taken again, encoded again from a keyframe,
    // and shown.
    tiles(&large, &speaker_id, (1280, 720)).await;
    let resumed = wait_stats(&speaker_media, "a larger layer encoded again", SLOW, |s| {
        s.layers.len() == 3 && (1..3).any(|i| s.layers[i].frames_encoded >= after[i].1 + 30)
    })
    .await;
    assert!(
        (1..3).any(|i| resumed.layers[i].keyframes > paused.layers[i].keyframes),
        "{paused:?} -> {resumed:?}"
    );
    let stamped = received(&large_media.stats()).map_or(0, |r| r.stamped_frames);
    let back = wait_stats(
        &large_media,
        "the large tile back above 320x180",
        SLOW,
        |s| larger_than_small(s, &speaker_id, stamped + 30),
    )
    .await;
    // Down a layer and up again, every picture decoded is the next one captured: at a
    // switch the new layer's keyframe leaves the publisher before the old layer's picture
    // of the same capture, so no instant is shown twice.
    let r = received(&back).expect("received");
    assert_eq!((r.out_of_order_frames, r.decode_errors), (0, 0), "{r:?}");
    assert_eq!(r.stamped_frames, r.video_frames, "{r:?}");

    speaker_media.stop().await;
    small_media.stop().await;
    large_media.stop().await;
}
