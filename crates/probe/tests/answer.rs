//! The probe viewer answering an offer (as subscribers of SFUs that offer, Janus's
//! VideoRoom for one, must): here the offer is a probe publisher's own, so the two connect
//! directly and the viewer's counts show the media flowed.

use std::future::Future;
use std::time::{Duration, Instant};

use onstage_probe::{ProbeError, ProbePublisher, ProbeViewer, PublisherOptions, ViewerOptions};
use tokio::sync::oneshot;

const WAIT: Duration = Duration::from_secs(15);

async fn within<T>(what: &str, fut: impl Future<Output = T>) -> T {
    tokio::time::timeout(WAIT, fut)
        .await
        .unwrap_or_else(|_| panic!("timed out waiting for {what}"))
}

async fn until(what: &str, mut check: impl FnMut() -> bool) {
    within(what, async {
        while !check() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_viewer_answers_an_offer_and_receives_its_media() {
    let (viewer_tx, viewer_rx) = oneshot::channel();
    let publisher = within(
        "publisher connects",
        ProbePublisher::start_with(PublisherOptions::default(), |offer| async move {
            let (viewer, answer) =
                ProbeViewer::answer(&offer, Instant::now(), ViewerOptions::default()).await?;
            viewer_tx
                .send(viewer)
                .map_err(|_| ProbeError::Peer("nobody took the viewer".into()))?;
            Ok(answer)
        }),
    )
    .await
    .expect("the answer is accepted and the session connects");
    let viewer = viewer_rx.await.expect("a viewer");
    until("30 frames at the viewer", || viewer.frames() >= 30).await;
    let s = viewer.stats();
    assert!(s.connected_at.is_some(), "{s:?}");
    assert_eq!(s.first_video_was_keyframe, Some(true), "{s:?}");
    assert!(s.audio.packets > 0, "audio arrives too: {s:?}");
    assert_eq!(s.video.lost(), 0, "{s:?}");
    assert!(s.time_to_first_keyframe().is_some());
    assert!(!s.latencies_us.is_empty());
    let sent = publisher.stop().await;
    assert!(sent.frames >= 30, "{sent:?}");
}

#[tokio::test]
async fn an_offer_that_is_not_sdp_is_refused() {
    let got = ProbeViewer::answer("not sdp", Instant::now(), ViewerOptions::default()).await;
    assert!(matches!(got, Err(ProbeError::Sdp(_))), "{:?}", got.err());
}
