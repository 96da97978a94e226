//! The two-host lab the peer comparison runs in: Janus never uses loopback for media, so
//! the SFU under test (Janus, or ours for identical conditions) runs in one network
//! namespace and the load test's probes in another, joined by a veth pair. Names carry
//! this process's id (`osl<pid>-sfu`, `osl<pid>-cl`); [`Lab`]'s drop removes both (which
//! removes the veth pair too), and a new lab first removes those of dead processes.
//!
//! Also here: finding Janus and starting it with its own minimal configuration.

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::{Command as StdCommand, Stdio};
use std::time::Duration;

use onstage_proto::{ErrorBody, ErrorCode};
use tokio::process::{Child, Command};

use super::fail;

/// The SFU host's address; the client host is `.2` on the same /24.
pub(crate) const SFU_IP: Ipv4Addr = Ipv4Addr::new(10, 231, 0, 1);
pub(crate) const CLIENT_IP: Ipv4Addr = Ipv4Addr::new(10, 231, 0, 2);
/// The port Janus's HTTP transport listens on (the namespace is ours alone).
pub(crate) const JANUS_HTTP_PORT: u16 = 8088;

const PREFIX: &str = "osl";

/// Two network namespaces joined by a veth pair, each with a default route (webrtc-style
/// stacks want one), removed on drop.
pub(crate) struct Lab {
    pub sfu_ns: String,
    pub client_ns: String,
    made: Vec<String>,
    /// CPU lists for `taskset`: the SFU's and the clients', when there are two cores or
    /// more and `taskset` is there.
    pins: Option<(String, String)>,
}

fn ip(args: &[&str]) -> Result<(), ErrorBody> {
    let out = StdCommand::new("ip")
        .args(args)
        .output()
        .map_err(|e| fail(format!("`ip` (iproute2) is needed for the lab: {e}")))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(fail(format!(
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        )))
    }
}

impl Lab {
    pub(crate) fn new() -> Result<Lab, ErrorBody> {
        if !is_root() {
            return Err(ErrorBody::new(
                ErrorCode::BadRequest,
                "the Janus modes run both SFUs in network namespaces (Janus never sends \
                 media over loopback), which needs root",
            ));
        }
        onstage_netns::remove_stale(PREFIX);
        let pid = std::process::id();
        let mut lab = Lab {
            sfu_ns: format!("{PREFIX}{pid}-sfu"),
            client_ns: format!("{PREFIX}{pid}-cl"),
            made: Vec::new(),
            pins: pins(),
        };
        let (sfu, cl) = (lab.sfu_ns.clone(), lab.client_ns.clone());
        for ns in [&sfu, &cl] {
            ip(&["netns", "add", ns])?;
            lab.made.push(ns.clone());
            ip(&["-n", ns, "link", "set", "lo", "up"])?;
        }
        ip(&[
            "-n", &sfu, "link", "add", "veth0", "type", "veth", "peer", "name", "veth0", "netns",
            &cl,
        ])?;
        for (ns, addr) in [(&sfu, SFU_IP), (&cl, CLIENT_IP)] {
            ip(&[
                "-n",
                ns,
                "addr",
                "add",
                &format!("{addr}/24"),
                "dev",
                "veth0",
            ])?;
            ip(&["-n", ns, "link", "set", "veth0", "up"])?;
            // A gateway that is not there: real hosts have a default route.
            ip(&["-n", ns, "route", "add", "default", "via", "10.231.0.254"])?;
        }
        Ok(lab)
    }

    /// `ip netns exec <ns> [taskset -c <cpus>] <program>`: the process is `program`'s own
    /// (both exec), so its pid is the one to measure.
    fn exec_in(&self, ns: &str, cpus: Option<&str>, program: &Path) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", ns]);
        if let Some(cpus) = cpus {
            c.args(["taskset", "-c", cpus]);
        }
        c.arg(program);
        c
    }

    /// A command on the SFU host, pinned to the SFU's core.
    pub(crate) fn sfu_command(&self, program: &Path) -> Command {
        let cpus = self.pins.as_ref().map(|p| p.0.as_str());
        self.exec_in(&self.sfu_ns, cpus, program)
    }

    /// A command on the client host, pinned to the other cores.
    pub(crate) fn client_command(&self, program: &Path) -> Command {
        let cpus = self.pins.as_ref().map(|p| p.1.as_str());
        self.exec_in(&self.client_ns, cpus, program)
    }

    /// Cores the SFU may use (1 when pinned).
    pub(crate) fn sfu_cores(&self) -> usize {
        if self.pins.is_some() {
            1
        } else {
            cores()
        }
    }

    /// How the processes were pinned, for the report.
    pub(crate) fn pinning(&self) -> serde_json::Value {
        match &self.pins {
            Some((sfu, clients)) => serde_json::json!({"sfu_cpus": sfu, "client_cpus": clients}),
            None => serde_json::Value::Null,
        }
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        for ns in self.made.drain(..) {
            onstage_netns::delete(&ns);
        }
    }
}

fn is_root() -> bool {
    // /proc/self/status: "Uid: real effective saved fs".
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Uid:"))
                .and_then(|l| l.split_whitespace().nth(1).map(|u| u == "0"))
        })
        .unwrap_or(false)
}

fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// The SFU on CPU 0, the clients on the rest.
fn pins() -> Option<(String, String)> {
    let n = cores();
    let taskset = StdCommand::new("taskset")
        .arg("-V")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if n < 2 || !taskset {
        return None;
    }
    let clients = if n == 2 {
        "1".to_owned()
    } else {
        format!("1-{}", n - 1)
    };
    Some(("0".to_owned(), clients))
}

/// Janus's binary and its plugin and transport folders.
pub(crate) struct JanusInstall {
    pub binary: PathBuf,
    pub videoroom: PathBuf,
    pub http: PathBuf,
}

const HOW_TO_GET_JANUS: &str = "install it with `apt-get install janus` (Debian, 1.1.x; \
     scripts/setup.sh does it) or name the binary with --janus PATH";

/// Finds `janus` (a path, or a name looked up on PATH) and its VideoRoom plugin and HTTP
/// transport, or says how to get them.
pub(crate) fn find_janus(name: &Path) -> Result<JanusInstall, ErrorBody> {
    let not_installed = |what: String| {
        ErrorBody::new(
            ErrorCode::NotFound,
            format!("Janus is not installed ({what}): {HOW_TO_GET_JANUS}"),
        )
    };
    let binary = if name.components().count() > 1 {
        name.is_file()
            .then(|| name.to_path_buf())
            .ok_or_else(|| not_installed(format!("no file {}", name.display())))?
    } else {
        std::env::var_os("PATH")
            .iter()
            .flat_map(std::env::split_paths)
            .map(|dir| dir.join(name))
            .find(|p| p.is_file())
            .ok_or_else(|| not_installed(format!("no `{}` on PATH", name.display())))?
    };
    // <prefix>/bin/janus: the modules are in <prefix>/lib/<triplet>/janus or <prefix>/lib/janus.
    let binary = binary.canonicalize().unwrap_or(binary);
    let prefix = binary
        .parent()
        .and_then(Path::parent)
        .unwrap_or(Path::new("/usr"))
        .to_path_buf();
    let mut roots = vec![prefix.join("lib/janus")];
    if let Ok(dirs) = std::fs::read_dir(prefix.join("lib")) {
        roots.extend(dirs.flatten().map(|d| d.path().join("janus")));
    }
    let find = |sub: &str, file: &str| {
        roots
            .iter()
            .map(|r| r.join(sub).join(file))
            .find(|p| p.is_file())
    };
    let videoroom = find("plugins", "libjanus_videoroom.so").ok_or_else(|| {
        not_installed(format!(
            "{} has no VideoRoom plugin (libjanus_videoroom.so) beside it",
            binary.display()
        ))
    })?;
    let http = find("transports", "libjanus_http.so").ok_or_else(|| {
        not_installed(format!(
            "{} has no HTTP transport (libjanus_http.so) beside it",
            binary.display()
        ))
    })?;
    Ok(JanusInstall {
        binary,
        videoroom,
        http,
    })
}

/// A Janus running on the lab's SFU host with a configuration of its own: HTTP on the SFU
/// address only, the VideoRoom plugin only, no STUN or NAT look-ups, no mDNS, static event
/// loops one per core it may use. Killed on drop; its configuration and log are removed.
pub(crate) struct JanusProcess {
    child: Child,
    dir: PathBuf,
    log: PathBuf,
}

impl JanusProcess {
    pub(crate) fn start(lab: &Lab, install: &JanusInstall) -> Result<JanusProcess, ErrorBody> {
        let dir = std::env::temp_dir().join(format!("onstage-janus-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let write = || -> std::io::Result<PathBuf> {
            for sub in ["plugins", "transports", "events", "loggers"] {
                std::fs::create_dir_all(dir.join(sub))?;
            }
            std::os::unix::fs::symlink(
                &install.videoroom,
                dir.join("plugins/libjanus_videoroom.so"),
            )?;
            std::os::unix::fs::symlink(&install.http, dir.join("transports/libjanus_http.so"))?;
            std::fs::write(dir.join("janus.jcfg"), janus_config(&dir, lab.sfu_cores()))?;
            std::fs::write(
                dir.join("janus.transport.http.jcfg"),
                format!(
                    "general: {{\n  json = \"plain\"\n  base_path = \"/janus\"\n  http = true\n  \
                     port = {JANUS_HTTP_PORT}\n  ip = \"{SFU_IP}\"\n  https = false\n}}\n\
                     admin: {{\n  admin_http = false\n  admin_https = false\n}}\n"
                ),
            )?;
            std::fs::write(dir.join("janus.plugin.videoroom.jcfg"), "general: {\n}\n")?;
            let log = dir.join("janus.log");
            std::fs::write(&log, "")?;
            Ok(log)
        };
        let log = write().map_err(|e| fail(format!("Janus's configuration: {e}")))?;
        let out = std::fs::File::create(&log)
            .and_then(|f| Ok((f.try_clone()?, f)))
            .map_err(|e| fail(format!("Janus's log: {e}")))?;
        let child = lab
            .sfu_command(&install.binary)
            .arg("-F")
            .arg(&dir)
            .arg("-C")
            .arg(dir.join("janus.jcfg"))
            .arg("-P")
            .arg(dir.join("plugins"))
            .args(["-o", "-d", "4"])
            .stdin(Stdio::null())
            .stdout(out.0)
            .stderr(out.1)
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| fail(format!("cannot start Janus: {e}")))?;
        Ok(JanusProcess { child, dir, log })
    }

    pub(crate) fn pid(&self) -> Option<u32> {
        self.child.id()
    }

    /// The HTTP API's base URL (on the SFU host).
    pub(crate) fn url(&self) -> String {
        format!("http://{SFU_IP}:{JANUS_HTTP_PORT}/janus")
    }

    /// Waits until Janus says its HTTP server is up; a Janus that exits or stays silent
    /// is an error with its log's tail.
    pub(crate) async fn ready(&mut self, timeout: Duration) -> Result<(), ErrorBody> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(self.failure(&format!("Janus exited at start ({status})")));
            }
            let log = std::fs::read_to_string(&self.log).unwrap_or_default();
            if log.contains("HTTP webserver started") {
                return Ok(());
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(self.failure(&format!(
                    "Janus did not start its HTTP server within {timeout:?}"
                )));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// `what`, with the last lines of Janus's log.
    pub(crate) fn failure(&self, what: &str) -> ErrorBody {
        fail(format!("{what}; Janus's log ends:\n{}", self.log_tail(20)))
    }

    pub(crate) fn log_tail(&self, lines: usize) -> String {
        let log = std::fs::read_to_string(&self.log).unwrap_or_default();
        let all: Vec<&str> = log.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }

    pub(crate) async fn stop(mut self) {
        let _ = self.child.kill().await;
    }
}

impl Drop for JanusProcess {
    fn drop(&mut self) {
        let _ = self.child.start_kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn janus_config(dir: &Path, loops: usize) -> String {
    let d = dir.display();
    format!(
        r#"general: {{
  configs_folder = "{d}"
  plugins_folder = "{d}/plugins"
  transports_folder = "{d}/transports"
  events_folder = "{d}/events"
  loggers_folder = "{d}/loggers"
  log_to_stdout = true
  debug_level = 4
  server_name = "onstage-load-test"
  # The load test's session lives as long as the run; its long poll keeps it anyway.
  session_timeout = 0
  # Static loops, one per core Janus may use, instead of a thread per handle.
  event_loops = {loops}
}}
certificates: {{
}}
media: {{
  ipv6 = false
  rtp_port_range = "20000-40000"
}}
nat: {{
  nice_debug = false
  ignore_mdns = true
  ice_enforce_list = "veth0"
}}
plugins: {{
}}
transports: {{
}}
events: {{
  broadcast = false
}}
loggers: {{
}}
"#
    )
}
