//! # onstage-netns — network namespaces of the labs, kept tidy
//!
//! Both network labs make Linux network namespaces named after the process that made them:
//! the load test's peer comparison (`onstage load-test --compare janus`, names `osl<pid>-…`)
//! and the lab tests (`ol<pid>x<n>-…`). A lab deletes its namespaces when it is dropped;
//! one whose process was killed first leaves them behind, and the next lab sweeps them
//! ([`remove_stale`]). What a namespace still runs is killed before it is deleted: a
//! namespace whose processes live on is only unlinked, and keeps its addresses in use.
//!
//! Everything goes through `ip` (iproute2) and `kill`; failures are ignored, as this is
//! clean-up that must not turn a finished run into a failed one.

use std::path::Path;
use std::process::{Command, Stdio};

/// Kills (SIGKILL) every process running in `ns`.
pub fn kill_processes_in(ns: &str) {
    let Ok(out) = Command::new("ip").args(["netns", "pids", ns]).output() else {
        return;
    };
    for pid in String::from_utf8_lossy(&out.stdout).split_whitespace() {
        if pid.parse::<u32>().is_ok() {
            let _ = Command::new("kill")
                .args(["-9", pid])
                .stderr(Stdio::null())
                .status();
        }
    }
}

/// Kills what runs in `ns` and deletes it (with it, the ends of veth pairs inside it).
pub fn delete(ns: &str) {
    kill_processes_in(ns);
    let _ = Command::new("ip")
        .args(["netns", "del", ns])
        .stderr(Stdio::null())
        .status();
}

/// The process id a lab namespace is named after: the digits right after `prefix`.
pub fn maker_of(ns: &str, prefix: &str) -> Option<u32> {
    let rest = ns.strip_prefix(prefix)?;
    let end = rest
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(rest.len());
    rest[..end].parse().ok()
}

/// Deletes the namespaces named `prefix<pid>…` whose process no longer runs.
pub fn remove_stale(prefix: &str) {
    let Ok(out) = Command::new("ip").args(["netns", "list"]).output() else {
        return;
    };
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let Some(ns) = line.split_whitespace().next() else {
            continue;
        };
        if let Some(pid) = maker_of(ns, prefix) {
            if !Path::new(&format!("/proc/{pid}")).exists() {
                delete(ns);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_maker_is_read_from_either_labs_names() {
        assert_eq!(maker_of("osl4242-sfu", "osl"), Some(4242));
        assert_eq!(maker_of("ol17x3-router", "ol"), Some(17));
        // Another lab's names, or none of ours.
        assert_eq!(maker_of("osl4242-sfu", "ol"), None);
        assert_eq!(maker_of("olx3-router", "ol"), None);
        assert_eq!(maker_of("netns0", "ol"), None);
    }
}
