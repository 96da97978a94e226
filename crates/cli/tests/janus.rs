//! `onstage load-test --compare janus`: our SFU and Janus's VideoRoom side by side, each in
//! the two-namespace lab the command makes (needs root, like the network lab, and Janus,
//! which scripts/setup.sh installs). A short run with a few viewers must show both SFUs
//! delivering media to every viewer and every figure of the table; a Janus that is not
//! there must be named as missing with how to get it, not hang or fail obscurely.

use std::process::Stdio;
use std::time::Duration;

use serde_json::Value;
use tokio::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_onstage");

/// Runs `onstage load-test ARGS`; returns its one stdout line and whether it succeeded.
async fn load_test(args: &[&str], limit: Duration) -> (Value, bool) {
    let output = tokio::time::timeout(
        limit,
        Command::new(BIN)
            .arg("load-test")
            .args(args)
            .env_remove("ONSTAGE_ADMIN_KEY")
            .stdin(Stdio::null())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .output(),
    )
    .await
    .expect("the load test finishes in time")
    .expect("the load test runs");
    let text = String::from_utf8(output.stdout).expect("utf-8");
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 1, "one line: {text:?}");
    let value = serde_json::from_str(lines[0]).expect("a JSON line");
    (value, output.status.success())
}

fn number(v: &Value, path: &str) -> f64 {
    let got = path.split('.').fold(v, |v, k| &v[k]);
    got.as_f64()
        .unwrap_or_else(|| panic!("{path} is a number: {got} in {v}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn both_sfus_serve_every_viewer_and_the_table_has_every_figure() {
    let viewers = 4;
    let (report, ok) = load_test(
        &[
            "--compare",
            "janus",
            "--viewers",
            &viewers.to_string(),
            "--duration",
            "2",
            "--late-viewers",
            "2",
            "--late-gap-ms",
            "100",
        ],
        Duration::from_secs(90),
    )
    .await;
    assert!(ok, "{report}");
    assert_eq!(report["event"], "load_test_compare", "{report}");
    for sfu in ["onstage", "janus"] {
        let f = &report[sfu];
        assert_eq!(
            number(f, "subscriptions_with_media"),
            viewers as f64,
            "{sfu}: every viewer got media: {report}"
        );
        assert_eq!(number(f, "subscribe_failures"), 0.0, "{sfu}: {report}");
        assert_eq!(number(f, "missing_first_frame"), 0.0, "{sfu}: {report}");
        assert_eq!(number(f, "late_viewer_failures"), 0.0, "{sfu}: {report}");
        for figure in [
            "us_per_forwarded_packet",
            "forwarded_per_sec",
            "loss_percent",
            "latency_ms.p50",
            "latency_ms.p95",
            "latency_ms.p99",
            "late_viewer_first_keyframe_ms.p50",
            "late_viewer_first_keyframe_ms.p95",
            "stage_join_to_first_frame_ms.p50",
            "stage_join_to_first_frame_ms.p95",
            "server_rss_kib",
        ] {
            number(f, figure);
        }
        assert!(number(f, "forwarded_per_sec") > 0.0, "{sfu}: {report}");
        assert!(
            number(f, "us_per_forwarded_packet") > 0.0,
            "{sfu}: {report}"
        );
    }
    let ratios = &report["ours_over_janus"];
    for r in ["us_per_forwarded_packet", "latency_p95", "server_rss"] {
        assert!(number(ratios, r) > 0.0, "{r}: {report}");
    }
}

#[tokio::test]
async fn a_missing_janus_is_named_with_how_to_get_it() {
    let (report, ok) = load_test(
        &[
            "--compare",
            "janus",
            "--viewers",
            "2",
            "--janus",
            "/nonexistent/bin/janus",
        ],
        Duration::from_secs(10),
    )
    .await;
    assert!(!ok, "{report}");
    assert_eq!(report["ok"], false, "{report}");
    let message = report["error"]["message"].as_str().unwrap_or_default();
    assert!(message.contains("Janus is not installed"), "{message}");
    assert!(message.contains("apt-get install janus"), "{message}");
    assert!(message.contains("/nonexistent/bin/janus"), "{message}");
}

#[tokio::test]
async fn a_janus_that_fails_to_start_is_reported_with_its_log() {
    // A fake installation: <prefix>/bin/janus that complains and exits, and the modules
    // where the real package puts them.
    let prefix = tempfile::tempdir().expect("temp dir");
    let bin = prefix.path().join("bin");
    for dir in ["bin", "lib/janus/plugins", "lib/janus/transports"] {
        std::fs::create_dir_all(prefix.path().join(dir)).expect("dirs");
    }
    std::fs::write(
        prefix
            .path()
            .join("lib/janus/plugins/libjanus_videoroom.so"),
        "",
    )
    .unwrap();
    std::fs::write(
        prefix.path().join("lib/janus/transports/libjanus_http.so"),
        "",
    )
    .unwrap();
    let janus = bin.join("janus");
    std::fs::write(
        &janus,
        "#!/bin/sh\necho 'fatal: no such thing as this janus'\nexit 3\n",
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&janus, std::fs::Permissions::from_mode(0o755)).unwrap();
    let (report, ok) = load_test(
        &[
            "--sfu",
            "janus",
            "--viewers",
            "2",
            "--janus",
            janus.to_str().unwrap(),
        ],
        Duration::from_secs(30),
    )
    .await;
    assert!(!ok, "{report}");
    let message = report["error"]["message"].as_str().unwrap_or_default();
    assert!(message.contains("Janus exited at start"), "{message}");
    assert!(
        message.contains("fatal: no such thing as this janus"),
        "{message}"
    );
}
