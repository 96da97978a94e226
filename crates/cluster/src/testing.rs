//! For tests: a real `redis-server` on a free loopback port, with no persistence, killed
//! when dropped.
//!
//! ```no_run
//! # fn demo() {
//! let Some(redis) = onstage_cluster::testing::RedisServer::start_or_skip() else {
//!     return; // redis-server is not installed: the test says so and passes
//! };
//! println!("{}", redis.url());
//! # }
//! ```

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The program the harness runs.
pub const REDIS_SERVER: &str = "redis-server";

/// A running `redis-server`. Dropping it kills the server.
#[derive(Debug)]
pub struct RedisServer {
    child: Option<Child>,
    port: u16,
    dir: tempfile::TempDir,
}

/// Is `redis-server` on the PATH?
pub fn redis_server_installed() -> bool {
    std::env::var_os("PATH").is_some_and(|path| {
        std::env::split_paths(&path).any(|dir| dir.join(REDIS_SERVER).is_file())
    })
}

impl RedisServer {
    /// Starts a server, or `None` after saying on stderr that `redis-server` is absent
    /// (the only reason a test may skip). Any other failure to start panics: it is a real
    /// failure of the test machine.
    pub fn start_or_skip() -> Option<Self> {
        if !redis_server_installed() {
            eprintln!(
                "SKIPPED: {REDIS_SERVER} is not installed (Debian package redis-server; scripts/setup.sh installs it)"
            );
            return None;
        }
        match Self::start() {
            Ok(server) => Some(server),
            Err(e) => panic!("could not start {REDIS_SERVER}: {e}"),
        }
    }

    /// Starts a server on a free loopback port and waits until it answers PING.
    pub fn start() -> Result<Self, String> {
        let mut last = String::new();
        // A port found free may be taken before the server binds it: try another.
        for _ in 0..5 {
            let mut server = Self {
                child: None,
                port: free_port()?,
                dir: tempfile::tempdir().map_err(|e| format!("a temp dir: {e}"))?,
            };
            match server.launch() {
                Ok(()) => return Ok(server),
                Err(e) => last = e,
            }
        }
        Err(last)
    }

    /// `redis://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The server's log file.
    pub fn log_path(&self) -> PathBuf {
        self.dir.path().join("redis.log")
    }

    /// Kills the server (SIGKILL) and waits for it to be gone. Clients now get refused
    /// connections.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Freezes the server (SIGSTOP): connections stay open and commands hang unanswered,
    /// as with a Redis that stalls. [`Self::resume`] lets it go on.
    pub fn pause(&self) {
        self.signal(libc::SIGSTOP);
    }

    /// Resumes a paused server (SIGCONT).
    pub fn resume(&self) {
        self.signal(libc::SIGCONT);
    }

    fn signal(&self, signal: libc::c_int) {
        let Some(pid) = self.child.as_ref().map(Child::id) else {
            return;
        };
        let Ok(pid) = libc::pid_t::try_from(pid) else {
            return;
        };
        // SAFETY: kill(2) with our own child's pid and a valid signal number; the child is
        // not reaped until `kill`/drop, so the pid is still ours.
        unsafe {
            libc::kill(pid, signal);
        }
    }

    /// Kills the server and starts a new, empty one on the same port.
    pub fn restart_empty(&mut self) -> Result<(), String> {
        self.kill();
        // The port was ours a moment ago; the new server binds it with SO_REUSEADDR.
        self.launch()
    }

    fn launch(&mut self) -> Result<(), String> {
        let dir = self.dir.path().to_path_buf();
        let child = Command::new(REDIS_SERVER)
            .args(["--port", &self.port.to_string()])
            .args(["--bind", "127.0.0.1"])
            .args(["--save", ""])
            .args(["--appendonly", "no"])
            .args(["--daemonize", "no"])
            .args(["--protected-mode", "yes"])
            .arg("--dir")
            .arg(&dir)
            .arg("--logfile")
            .arg(dir.join("redis.log"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("spawning {REDIS_SERVER}: {e}"))?;
        self.child = Some(child);
        self.wait_ready(&dir)
    }

    fn wait_ready(&mut self, dir: &Path) -> Result<(), String> {
        let deadline = Instant::now() + Duration::from_secs(10);
        let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, self.port));
        loop {
            if let Some(child) = self.child.as_mut() {
                if let Ok(Some(status)) = child.try_wait() {
                    self.child = None;
                    let log = std::fs::read_to_string(dir.join("redis.log")).unwrap_or_default();
                    return Err(format!(
                        "{REDIS_SERVER} exited ({status}) on port {}: {log}",
                        self.port
                    ));
                }
            }
            if ping(addr) {
                return Ok(());
            }
            if Instant::now() >= deadline {
                self.kill();
                return Err(format!(
                    "{REDIS_SERVER} did not answer PING on port {} within 10 s",
                    self.port
                ));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
    }
}

fn free_port() -> Result<u16, String> {
    let listener =
        TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).map_err(|e| format!("a free port: {e}"))?;
    listener
        .local_addr()
        .map(|a| a.port())
        .map_err(|e| format!("a free port: {e}"))
}

/// One PING over a fresh connection: `+PONG` back means the server is serving.
fn ping(addr: SocketAddr) -> bool {
    let Ok(mut stream) = TcpStream::connect_timeout(&addr, Duration::from_millis(200)) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_millis(500)));
    if stream.write_all(b"PING\r\n").is_err() {
        return false;
    }
    let mut buf = [0u8; 7];
    stream.read_exact(&mut buf).is_ok() && &buf == b"+PONG\r\n"
}

/// Polls `check` every 25 ms until it holds, failing the test if `within` passes first
/// (`what` says what was awaited); returns how long it took, for the tests that report it.
pub async fn eventually<F, Fut>(within: Duration, what: &str, mut check: F) -> Duration
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let start = Instant::now();
    loop {
        if check().await {
            return start.elapsed();
        }
        assert!(start.elapsed() < within, "not within {within:?}: {what}");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}
