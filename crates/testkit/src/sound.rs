//! A private sound server for tests: real audio devices on a machine without a sound card.
//!
//! [`SoundServer::start`] runs its own PulseAudio (Debian `pulseaudio`; ALSA's `default`
//! reaches it through `libasound2-plugins`) in a temporary runtime folder, with null sinks
//! standing in for the devices: `mic` (whose monitor `mic.monitor` is the default source:
//! what is played into `mic` is what a program recording from the default microphone
//! hears) and `spk` (the default sink: what a program plays on the default speaker, heard
//! on `spk.monitor`). A process started with [`SoundServer::env`] uses it and nothing
//! else; the daemon is stopped and its folder removed on drop.
//!
//! [`SoundServer::play`] writes a signal into a sink (`pacat`), [`SoundServer::record`]
//! records a source (`parec`) with the wall-clock time of every sample, and
//! [`tone_onsets`] finds where a tone starts. Unloading a sink
//! ([`SoundServer::unload_sink`]) is a device unplugged; loading it again, plugged back in.
//!
//! Everything here is blocking (plain threads and processes): a test calls it from
//! `spawn_blocking`, or between awaits where a few milliseconds do not matter.

use std::io::{Read, Write};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub use onstage_media::{dominant_frequency, tone_level};

/// The rate of everything played and recorded here (and of the null sinks).
pub const RATE: u32 = 48_000;

/// How long the daemon may take to answer after it was started.
const START_WAIT: Duration = Duration::from_secs(10);

/// A running private PulseAudio; stopped and removed on drop.
pub struct SoundServer {
    dir: tempfile::TempDir,
    daemon: Child,
    env: Vec<(&'static str, String)>,
}

impl SoundServer {
    /// Whether PulseAudio and its tools are installed (`scripts/setup.sh` installs them).
    pub fn installed() -> bool {
        ["pulseaudio", "pactl", "pacat", "parec"]
            .iter()
            .all(|tool| on_path(tool))
    }

    /// A server with the null sinks `mic` and `spk`, default source `mic.monitor`, default
    /// sink `spk`; `None` (said on stderr: the test is skipped) when PulseAudio is not
    /// installed. Panics when it is installed and does not start.
    pub fn start() -> Option<SoundServer> {
        Self::start_with(&["mic", "spk"])
    }

    /// A server with a null sink for each of `sinks`. The default source is the monitor of
    /// `mic` and the default sink is `spk`, for those of them that exist: a machine with
    /// only a microphone is `&["mic"]`.
    pub fn start_with(sinks: &[&str]) -> Option<SoundServer> {
        if !Self::installed() {
            eprintln!(
                "skipped: PulseAudio is not installed (pulseaudio, pulseaudio-utils; \
                 scripts/setup.sh installs them)"
            );
            return None;
        }
        let dir = tempfile::tempdir().expect("temp dir for the sound server");
        let runtime = dir.path().join("pulse");
        let state = dir.path().join("state");
        for d in [&runtime, &state] {
            std::fs::create_dir_all(d).expect("sound server folders");
        }
        let socket = runtime.join("native");
        let env = vec![
            ("XDG_RUNTIME_DIR", path_str(dir.path())),
            ("PULSE_RUNTIME_PATH", path_str(&runtime)),
            ("PULSE_STATE_PATH", path_str(&state)),
            ("PULSE_SERVER", format!("unix:{}", path_str(&socket))),
            // Nothing of the real user's sound configuration (~/.config/pulse, ~/.asoundrc).
            ("HOME", path_str(dir.path())),
        ];
        let mut command = Command::new("pulseaudio");
        command
            .args([
                "--daemonize=no",
                "--exit-idle-time=-1",
                // No default script: only the modules below, so nothing else appears.
                "-n",
                "--disallow-exit",
                "--log-target=stderr",
                "--log-level=error",
            ])
            .arg(format!(
                "--load=module-native-protocol-unix socket={}",
                path_str(&socket)
            ))
            .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit());
        let daemon = command.spawn().expect("pulseaudio starts");
        let server = SoundServer { dir, daemon, env };
        server.await_ready();
        for sink in sinks {
            server.load_sink(sink);
        }
        if sinks.contains(&"mic") {
            server.pactl(&["set-default-source", "mic.monitor"]);
        }
        if sinks.contains(&"spk") {
            server.pactl(&["set-default-sink", "spk"]);
        }
        Some(server)
    }

    /// Waits until the daemon answers (bounded): it has no ready signal of its own.
    fn await_ready(&self) {
        let deadline = Instant::now() + START_WAIT;
        loop {
            let answered = self
                .command("pactl")
                .arg("info")
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success());
            if answered {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "the sound server did not answer within {START_WAIT:?}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// What a process needs in its environment to use this server (and only it).
    pub fn env(&self) -> Vec<(&str, &str)> {
        self.env.iter().map(|(k, v)| (*k, v.as_str())).collect()
    }

    /// The server's folder.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    fn command(&self, program: &str) -> Command {
        let mut command = Command::new(program);
        command.envs(self.env.iter().map(|(k, v)| (*k, v.as_str())));
        command
    }

    /// Runs `pactl` with `args`; its stdout. Panics if it fails.
    pub fn pactl(&self, args: &[&str]) -> String {
        let out = self
            .command("pactl")
            .args(args)
            .stdin(Stdio::null())
            .output()
            .expect("pactl runs");
        assert!(
            out.status.success(),
            "pactl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Adds a null sink `name` at [`RATE`] (its monitor is `NAME.monitor`): a device
    /// plugged in.
    pub fn load_sink(&self, name: &str) {
        self.pactl(&[
            "load-module",
            "module-null-sink",
            &format!("sink_name={name}"),
            &format!("rate={RATE}"),
        ]);
    }

    /// Removes the null sink `name` and its monitor: a device unplugged. Panics if there
    /// is no such sink.
    pub fn unload_sink(&self, name: &str) {
        let modules = self.pactl(&["list", "short", "modules"]);
        let wanted = format!("sink_name={name}");
        let id = modules
            .lines()
            .find(|line| {
                line.contains("module-null-sink")
                    && line.split_whitespace().any(|arg| arg == wanted)
            })
            .and_then(|line| line.split_whitespace().next())
            .unwrap_or_else(|| panic!("no null sink {name:?} loaded: {modules}"))
            .to_owned();
        self.pactl(&["unload-module", &id]);
    }

    /// Plays `signal` into `sink` until it returns `false` (or the player is dropped).
    /// `signal` fills a 10 ms block of 48 kHz mono samples at a time; the sound server
    /// sets the pace (a buffer of 100 ms: enough not to run dry on a busy machine; record
    /// the sink's monitor to know when a sound was really played).
    pub fn play(
        &self,
        sink: &str,
        mut signal: impl FnMut(&mut [i16]) -> bool + Send + 'static,
    ) -> Player {
        let mut child = self
            .command("pacat")
            .args(["--playback", "--raw", "--format=s16le", "--channels=1"])
            .arg(format!("--rate={RATE}"))
            .arg(format!("--device={sink}"))
            .arg("--latency-msec=100")
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("pacat starts");
        let mut stdin = child.stdin.take().expect("pacat's stdin");
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let writer = std::thread::spawn(move || {
            let mut block = vec![0i16; (RATE / 100) as usize];
            let mut bytes = Vec::with_capacity(block.len() * 2);
            while !flag.load(Ordering::SeqCst) {
                block.fill(0);
                let more = signal(&mut block);
                bytes.clear();
                bytes.extend(block.iter().flat_map(|s| s.to_le_bytes()));
                if stdin.write_all(&bytes).is_err() || !more {
                    break;
                }
            }
        });
        Player {
            child,
            stop,
            writer: Some(writer),
        }
    }

    /// Records `source` (`spk.monitor`, `mic.monitor`) from now until dropped.
    pub fn record(&self, source: &str) -> Recorder {
        let mut child = self
            .command("parec")
            .args(["--raw", "--format=s16le", "--channels=1"])
            .arg(format!("--rate={RATE}"))
            .arg(format!("--device={source}"))
            .arg("--latency-msec=10")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("parec starts");
        let mut stdout = child.stdout.take().expect("parec's stdout");
        let recording = Arc::new(Mutex::new(Recording::default()));
        let into = recording.clone();
        let reader = std::thread::spawn(move || {
            let mut buf = vec![0u8; 4096];
            let mut odd: Option<u8> = None;
            loop {
                let n = match stdout.read(&mut buf) {
                    Ok(0) | Err(_) => return,
                    Ok(n) => n,
                };
                let at = Instant::now();
                let mut bytes: Vec<u8> = odd.take().into_iter().collect();
                bytes.extend_from_slice(&buf[..n]);
                if bytes.len() % 2 == 1 {
                    odd = bytes.pop();
                }
                let samples = bytes
                    .chunks_exact(2)
                    .map(|b| i16::from_le_bytes([b[0], b[1]]));
                let mut r = into.lock().unwrap_or_else(|p| p.into_inner());
                r.samples.extend(samples);
                r.arrived(at);
            }
        });
        Recorder {
            child,
            recording,
            reader: Some(reader),
        }
    }
}

impl Drop for SoundServer {
    fn drop(&mut self) {
        let _ = self.daemon.kill();
        let _ = self.daemon.wait();
    }
}

fn on_path(tool: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|path| std::env::split_paths(&path).any(|dir| dir.join(tool).is_file()))
}

fn path_str(path: &Path) -> String {
    path.to_str().expect("temp paths are UTF-8").to_owned()
}

/// A signal being played into a sink; stops (and ends `pacat`) on drop.
pub struct Player {
    child: Child,
    stop: Arc<AtomicBool>,
    writer: Option<std::thread::JoinHandle<()>>,
}

impl Drop for Player {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = self.child.kill();
        let _ = self.child.wait();
        if let Some(writer) = self.writer.take() {
            let _ = writer.join();
        }
    }
}

/// A source being recorded; stops (and ends `parec`) on drop.
pub struct Recorder {
    child: Child,
    recording: Arc<Mutex<Recording>>,
    reader: Option<std::thread::JoinHandle<()>>,
}

impl Recorder {
    /// What has been recorded so far.
    pub fn snapshot(&self) -> Recording {
        self.recording
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Waits (up to `within`) until `done` says yes of the recording so far; the recording
    /// then. Panics with `what` after `within`. Polled: a recording has no events.
    pub fn wait_for(
        &self,
        what: &str,
        within: Duration,
        done: impl Fn(&Recording) -> bool,
    ) -> Recording {
        let deadline = Instant::now() + within;
        loop {
            let now = self.snapshot();
            if done(&now) {
                return now;
            }
            assert!(
                Instant::now() < deadline,
                "{what}: not within {within:?} ({:.1} s recorded)",
                now.seconds()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Recorder {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if let Some(reader) = self.reader.take() {
            let _ = reader.join();
        }
    }
}

/// Samples recorded at [`RATE`] (mono), and when the first of them was heard.
#[derive(Debug, Clone, Default)]
pub struct Recording {
    pub samples: Vec<i16>,
    /// The earliest start the arrivals imply: each block arrives some time after its
    /// last sample was recorded, never before, so the smallest `arrival - position / RATE`
    /// over all blocks is the closest to when sample 0 was heard.
    start: Option<Instant>,
}

impl Recording {
    fn arrived(&mut self, at: Instant) {
        let recorded = Duration::from_secs_f64(self.samples.len() as f64 / f64::from(RATE));
        let start = at.checked_sub(recorded).unwrap_or(at);
        self.start = Some(self.start.map_or(start, |s| s.min(start)));
    }

    /// Seconds recorded.
    pub fn seconds(&self) -> f64 {
        self.samples.len() as f64 / f64::from(RATE)
    }

    /// When sample `index` was heard (wall clock); `None` before anything arrived.
    pub fn time_of(&self, index: usize) -> Option<Instant> {
        Some(self.start? + Duration::from_secs_f64(index as f64 / f64::from(RATE)))
    }

    /// The samples from `from` for `seconds` (as many as there are).
    pub fn window(&self, from: usize, seconds: f64) -> &[i16] {
        let len = (seconds * f64::from(RATE)) as usize;
        let from = from.min(self.samples.len());
        &self.samples[from..(from + len).min(self.samples.len())]
    }

    /// The largest sample magnitude, as a fraction of full scale.
    pub fn peak(&self, from: usize, seconds: f64) -> f32 {
        let peak = self
            .window(from, seconds)
            .iter()
            .map(|s| s.unsigned_abs())
            .max()
            .unwrap_or(0);
        f32::from(peak) / 32768.0
    }
}

/// Blocks of 10 ms in which a tone is looked for.
const ONSET_BLOCK: usize = (RATE / 100) as usize;

/// Where `hz` starts in `samples`: the first sample of each 10 ms block in which the tone
/// reaches `threshold` (its level as a fraction of full scale, see [`tone_level`]) after
/// at least `quiet` blocks below it (the first onset needs no quiet before it).
pub fn tone_onsets(samples: &[i16], hz: f32, threshold: f32, quiet: usize) -> Vec<usize> {
    let mut onsets = Vec::new();
    let mut below = quiet;
    for (i, block) in samples.chunks_exact(ONSET_BLOCK).enumerate() {
        if tone_level(block, RATE, hz) >= threshold {
            if below >= quiet {
                onsets.push(i * ONSET_BLOCK);
            }
            below = 0;
        } else {
            below += 1;
        }
    }
    onsets
}

/// A sine of `hz` at `amplitude` (fraction of full scale), for [`SoundServer::play`],
/// continuous from where the last block ended.
pub fn sine(hz: f32, amplitude: f32) -> impl FnMut(&mut [i16]) -> bool + Send + 'static {
    let mut n: u64 = 0;
    move |block| {
        for s in block.iter_mut() {
            let t = n as f64 / f64::from(RATE);
            let v = f64::from(amplitude) * (std::f64::consts::TAU * f64::from(hz) * t).sin();
            *s = (v * 32767.0) as i16;
            n += 1;
        }
        true
    }
}

/// Silence for `lead`, then `bursts` bursts of a sine (`on` long, `off` apart), then it
/// ends: onsets to time, one per burst.
pub fn bursts(
    hz: f32,
    amplitude: f32,
    lead: Duration,
    on: Duration,
    off: Duration,
    bursts: usize,
) -> impl FnMut(&mut [i16]) -> bool + Send + 'static {
    let samples = |d: Duration| (d.as_secs_f64() * f64::from(RATE)) as u64;
    let (lead, on, period) = (samples(lead), samples(on), samples(on + off));
    let end = lead + period * bursts as u64;
    let mut n: u64 = 0;
    move |block| {
        for s in block.iter_mut() {
            let k = n;
            n += 1;
            if k < lead || k >= end || (k - lead) % period >= on {
                continue;
            }
            let t = (k - lead) as f64 / f64::from(RATE);
            let v = f64::from(amplitude) * (std::f64::consts::TAU * f64::from(hz) * t).sin();
            *s = (v * 32767.0) as i16;
        }
        n < end
    }
}
