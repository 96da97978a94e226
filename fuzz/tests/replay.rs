//! Every seed of `corpus/<target>/` and every saved crash of `regressions/<target>/`,
//! replayed through its fuzz target as an ordinary test: what the fuzzer once found stays
//! fixed, and the seeds stay valid inputs.

use std::path::Path;

fn replay(target: &str) {
    let (_, run) = onstage_fuzz::TARGETS
        .iter()
        .find(|(name, _)| *name == target)
        .expect("a target of that name");
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut count = 0;
    for dir in ["corpus", "regressions"] {
        let dir = root.join(dir).join(target);
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        let mut files: Vec<_> = entries.map(|e| e.expect("a dir entry").path()).collect();
        files.sort();
        for file in files.iter().filter(|f| f.is_file()) {
            let data = std::fs::read(file).expect("readable");
            let outcome = std::panic::catch_unwind(|| run(&data));
            assert!(outcome.is_ok(), "{} fails on {}", target, file.display());
            count += 1;
        }
    }
    assert!(count > 0, "no seeds for {target} in corpus/{target}/");
}

#[test]
fn signal() {
    replay("signal");
}

#[test]
fn token() {
    replay("token");
}

#[test]
fn rest() {
    replay("rest");
}

#[test]
fn link() {
    replay("link");
}

#[test]
fn sdp() {
    replay("sdp");
}

#[test]
fn datagram() {
    replay("datagram");
}

#[test]
fn tcp() {
    replay("tcp");
}

#[test]
fn every_target_is_replayed_here_and_fuzzed_by_the_script() {
    let script =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/fuzz.sh"))
            .expect("scripts/fuzz.sh");
    let defaults: Vec<&str> = script
        .lines()
        .filter_map(|l| l.trim().strip_prefix("targets=("))
        .find(|l| !l.contains('$'))
        .and_then(|l| l.strip_suffix(')'))
        .expect("the script's default targets=(...)")
        .split_whitespace()
        .collect();
    let this = include_str!("replay.rs");
    for (name, _) in onstage_fuzz::TARGETS {
        assert!(
            this.contains(&format!("fn {name}()")),
            "no replay test for {name}"
        );
        assert!(
            defaults.contains(name),
            "scripts/fuzz.sh does not run {name}"
        );
        assert!(
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .join(format!("fuzz_targets/{name}.rs"))
                .is_file(),
            "no fuzz_targets/{name}.rs"
        );
    }
}
