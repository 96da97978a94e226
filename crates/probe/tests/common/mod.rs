//! The testkit's real server on 127.0.0.1:0 (SFU included) in a temporary data dir,
//! participants made through the admin client and joined with the SDK. Every wait of these
//! tests is bounded by [`WAIT`], longer than the testkit's: media takes its time.

#![allow(dead_code)]

use std::future::Future;
use std::time::Duration;

pub use onstage_testkit::TestServer as Srv;

pub const WAIT: Duration = Duration::from_secs(15);

/// Awaits `fut`, failing the test with `what` if it takes longer than [`WAIT`].
pub async fn within<T>(what: &str, fut: impl Future<Output = T>) -> T {
    tokio::time::timeout(WAIT, fut)
        .await
        .unwrap_or_else(|_| panic!("timed out waiting for {what}"))
}

/// Polls `check` every 10 ms until it holds (bounded by [`WAIT`]).
pub async fn until(what: &str, mut check: impl FnMut() -> bool) {
    within(what, async {
        while !check() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
}
