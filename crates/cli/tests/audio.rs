//! Real audio devices end to end: bots on `--media devices` through a private sound server
//! (PulseAudio with null sinks, reached through ALSA's `default` as any program would).
//!
//! A tone is played into the speaker's microphone (`mic`, whose monitor is its default
//! source); the viewer plays what it receives on its default speaker (`spk`), and the
//! recording of `spk.monitor` is measured: the tone's frequency and level, and how long
//! it took from the microphone to the loudspeaker. Each participant of a test is a
//! machine of its own: its own sound server, its own devices.
//!
//! Skipped (said on stderr) only when PulseAudio is not installed; `scripts/setup.sh`
//! installs it. Every wait is bounded and awaits what it waits for.

mod support;

use std::time::Duration;

use serde_json::json;
use tokio::task::block_in_place;

use onstage_testkit::sound::{
    dominant_frequency, sine, tone_level, tone_onsets, Recording, SoundServer, RATE,
};
use support::{add, create_meeting, serve, Proc};

/// What each tone is played at, as a fraction of full scale.
const PLAYED: f32 = 0.3;
/// A tone counts as arrived at a third of what was played (about -10 dB).
const ARRIVED: f32 = PLAYED / 3.0;
/// How long the tone has to have been heard before it is measured.
const MEASURED: f64 = 1.0;
/// The longest any sound may take to arrive, start to end of its path.
const WAIT: Duration = Duration::from_secs(15);

/// A bot of user `name` on `--media devices` with these devices, on `sound`'s devices.
async fn device_bot(
    url: &str,
    token: &str,
    name: &str,
    devices: &[&str],
    sound: &SoundServer,
) -> Proc {
    let mut args = vec![
        "bot", "--server", url, "--token", token, "--media", "devices", "--camera", "none",
    ];
    args.extend_from_slice(devices);
    let mut bot = Proc::spawn(name, &args, &sound.env());
    let joined = bot.next().await.expect("joined line");
    assert_eq!(joined["event"], "joined", "{name}: {joined}");
    bot
}

/// Waits until `viewer` has decoded `frames` audio frames from `user` (polled: the count
/// is a call, with no event for it).
async fn await_audio(viewer: &mut Proc, user: &str, frames: u64) {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let stats = viewer.ok(json!({"id": 900, "call": "media.stats"})).await;
        let got = stats["received"][user]["audio_frames"]
            .as_u64()
            .unwrap_or(0);
        if got >= frames {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{} decoded {got} audio frames of {user} within {WAIT:?}",
            viewer.name
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The first onset of `hz` in `recording` after which it was heard without a break for
/// [`MEASURED`] seconds and 0.2 s of settling. A device opened again may take a few
/// tries to play steadily; what is measured is the steady tone.
fn measured_onset(recording: &Recording, hz: f32) -> Option<usize> {
    let steady = ((0.2 + MEASURED) * f64::from(RATE)) as usize;
    tone_onsets(&recording.samples, hz, ARRIVED, 1)
        .into_iter()
        .find(|&onset| {
            onset + steady <= recording.samples.len() && still_heard(recording, onset, steady, hz)
        })
}

/// Whether `hz` is heard in every 10 ms block from `from` for `len` samples.
fn still_heard(recording: &Recording, from: usize, len: usize, hz: f32) -> bool {
    recording.samples[from..from + len]
        .chunks_exact((RATE / 100) as usize)
        .all(|block| tone_level(block, RATE, hz) >= ARRIVED)
}

/// What a tone's recording measures: frequency, level and when it started.
struct Heard {
    /// When the tone was first heard.
    onset_at: std::time::Instant,
    hz: f32,
    level: f32,
    peak: f32,
}

/// `hz` in `recording`: when it was first heard, and its steady second measured.
fn hear(recording: &Recording, hz: f32) -> Heard {
    let first = tone_onsets(&recording.samples, hz, ARRIVED, 1);
    let onset = measured_onset(recording, hz).expect("a measured onset");
    // From 0.2 s after the onset: the jitter buffers have settled.
    let from = onset + (0.2 * f64::from(RATE)) as usize;
    let body = recording.window(from, MEASURED);
    Heard {
        onset_at: recording
            .time_of(first.first().copied().unwrap_or(onset))
            .expect("timed"),
        hz: dominant_frequency(body, RATE),
        level: tone_level(body, RATE, hz),
        peak: recording.peak(from, MEASURED),
    }
}

fn db(level: f32, reference: f32) -> f32 {
    20.0 * (level / reference).log10()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tone_into_the_speakers_microphone_comes_out_of_the_viewers_loudspeaker() {
    let (Some(talker), Some(listener)) = (SoundServer::start(), SoundServer::start()) else {
        return;
    };
    let data = tempfile::tempdir().expect("temp dir");
    let (_server, url, key) = serve(data.path()).await;
    let meeting = create_meeting(&url, &key, "real audio").await;
    let (_, speaker_token) = add(&url, &key, &meeting, "speaker", "speaker").await;
    let (_, viewer_token) = add(&url, &key, &meeting, "viewer", "viewer").await;
    let mut speaker = device_bot(
        &url,
        &speaker_token,
        "speaker",
        &["--mic", "default", "--speaker", "none"],
        &talker,
    )
    .await;
    let mut viewer = device_bot(
        &url,
        &viewer_token,
        "viewer",
        &["--mic", "none", "--speaker", "default"],
        &listener,
    )
    .await;
    speaker.ok(json!({"id": 1, "call": "stage.join"})).await;
    // The path is up (silence flows) before the tone starts.
    await_audio(&mut viewer, "speaker", 25).await;
    let stats = speaker.ok(json!({"id": 2, "call": "media.stats"})).await;
    assert_eq!(stats["publishing"], json!({"audio": true, "video": false}));

    let mouth = talker.record("mic.monitor");
    let ear = listener.record("spk.monitor");
    let _tone = talker.play("mic", sine(440.0, PLAYED));
    let (played, heard) = block_in_place(|| {
        let heard = ear.wait_for("440 Hz on the viewer's loudspeaker", WAIT, |r| {
            measured_onset(r, 440.0).is_some()
        });
        let played = mouth.wait_for("440 Hz into the microphone", WAIT, |r| {
            measured_onset(r, 440.0).is_some()
        });
        (hear(&played, 440.0), hear(&heard, 440.0))
    });
    let delay = heard.onset_at.saturating_duration_since(played.onset_at);
    println!(
        "mouth to ear: {:.0} ms; played {:.1} Hz at {:.3}, heard {:.1} Hz at {:.3} ({:+.1} dB)",
        delay.as_secs_f64() * 1000.0,
        played.hz,
        played.level,
        heard.hz,
        heard.level,
        db(heard.level, played.level)
    );
    assert!((heard.hz - 440.0).abs() <= 5.0, "heard {} Hz", heard.hz);
    assert!(
        db(heard.level, played.level).abs() <= 6.0,
        "played at {}, heard at {}",
        played.level,
        heard.level
    );
    assert!(heard.peak < 0.95, "clipped: peak {}", heard.peak);
    assert!(
        heard.onset_at > played.onset_at && delay < Duration::from_secs(1),
        "mouth to ear {delay:?}"
    );

    for bot in [&mut speaker, &mut viewer] {
        bot.close_stdin().await;
        assert_eq!(bot.exit_code().await, Some(0), "{}", bot.name);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_speakers_are_mixed_on_the_viewers_loudspeaker_without_clipping() {
    let (Some(first), Some(second), Some(listener)) = (
        SoundServer::start_with(&["mic"]),
        SoundServer::start_with(&["mic"]),
        SoundServer::start_with(&["spk"]),
    ) else {
        return;
    };
    let data = tempfile::tempdir().expect("temp dir");
    let (_server, url, key) = serve(data.path()).await;
    let meeting = create_meeting(&url, &key, "two tones").await;
    let mut bots = Vec::new();
    for (name, sound) in [("low", &first), ("high", &second)] {
        let (_, token) = add(&url, &key, &meeting, name, "speaker").await;
        let devices = ["--mic", "default", "--speaker", "none"];
        let mut bot = device_bot(&url, &token, name, &devices, sound).await;
        bot.ok(json!({"id": 1, "call": "stage.join"})).await;
        bots.push(bot);
    }
    let (_, token) = add(&url, &key, &meeting, "viewer", "viewer").await;
    let devices = ["--mic", "none", "--speaker", "default"];
    let mut viewer = device_bot(&url, &token, "viewer", &devices, &listener).await;
    await_audio(&mut viewer, "low", 25).await;
    await_audio(&mut viewer, "high", 25).await;

    let ear = listener.record("spk.monitor");
    let _low = first.play("mic", sine(440.0, PLAYED));
    let _high = second.play("mic", sine(660.0, PLAYED));
    let heard = block_in_place(|| {
        ear.wait_for("440 Hz and 660 Hz on the loudspeaker", WAIT, |r| {
            measured_onset(r, 440.0).is_some() && measured_onset(r, 660.0).is_some()
        })
    });
    // Measured where both are heard.
    let onset = [440.0, 660.0]
        .map(|hz| measured_onset(&heard, hz).unwrap_or(0))
        .into_iter()
        .max()
        .unwrap_or(0);
    let settled = block_in_place(|| {
        ear.wait_for("both tones for a second", WAIT, |r| {
            r.samples.len() >= onset + ((0.2 + MEASURED) * f64::from(RATE)) as usize
        })
    });
    let from = onset + (0.2 * f64::from(RATE)) as usize;
    let body = settled.window(from, MEASURED);
    let (low, high) = (tone_level(body, RATE, 440.0), tone_level(body, RATE, 660.0));
    let between = tone_level(body, RATE, 550.0);
    let peak = settled.peak(from, MEASURED);
    println!(
        "mix: 440 Hz at {low:.3} ({:+.1} dB), 660 Hz at {high:.3} ({:+.1} dB), \
         550 Hz at {between:.4}, peak {peak:.3}",
        db(low, PLAYED),
        db(high, PLAYED)
    );
    for (hz, level) in [(440, low), (660, high)] {
        assert!(
            db(level, PLAYED).abs() <= 6.0,
            "{hz} Hz heard at {level}, played at {PLAYED}"
        );
    }
    // Two peaks: nothing between them comes near either.
    assert!(between < low.min(high) / 10.0, "550 Hz at {between}");
    // Mixed without clipping: the sum of two tones at 0.3 stays well inside full scale.
    assert!(peak < 0.95, "peak {peak}");

    bots.push(viewer);
    for bot in &mut bots {
        bot.close_stdin().await;
        assert_eq!(bot.exit_code().await, Some(0), "{}", bot.name);
    }
}

/// How many `mediaError` lines about `device` a bot has printed so far.
fn media_errors(bot: &Proc, device: &str) -> usize {
    bot.seen()
        .iter()
        .filter(|v| v["event"] == "mediaError" && v["device"] == device)
        .count()
}

/// Waits until `bot`'s `media.stats` says it publishes audio (`on`) or not.
async fn await_publishing_audio(bot: &mut Proc, on: bool) {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let stats = bot.ok(json!({"id": 901, "call": "media.stats"})).await;
        if stats["publishing"]["audio"] == on {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{}: publishing audio is not {on} within {WAIT:?}: {stats}",
            bot.name
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Waits until `recorder` holds a measured second of `hz` from its start.
fn await_tone(recorder: &onstage_testkit::sound::Recorder, what: &str, hz: f32) -> Heard {
    let heard =
        block_in_place(|| recorder.wait_for(what, WAIT, |r| measured_onset(r, hz).is_some()));
    hear(&heard, hz)
}

/// A speaker and a viewer on stage, each on a machine of its own (`talker`: a microphone,
/// `listener`: a loudspeaker), the tone heard: (speaker, viewer).
async fn a_call(
    url: &str,
    key: &str,
    talker: &SoundServer,
    listener: &SoundServer,
) -> (Proc, Proc) {
    let meeting = create_meeting(url, key, "device loss").await;
    let (_, speaker_token) = add(url, key, &meeting, "speaker", "speaker").await;
    let (_, viewer_token) = add(url, key, &meeting, "viewer", "viewer").await;
    let devices = ["--mic", "default", "--speaker", "none"];
    let mut speaker = device_bot(url, &speaker_token, "speaker", &devices, talker).await;
    let devices = ["--mic", "none", "--speaker", "default"];
    let viewer = device_bot(url, &viewer_token, "viewer", &devices, listener).await;
    speaker.ok(json!({"id": 1, "call": "stage.join"})).await;
    (speaker, viewer)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_microphone_unplugged_mid_call_is_told_once_and_heard_again_when_it_returns() {
    let (Some(talker), Some(listener)) = (
        SoundServer::start_with(&["mic"]),
        SoundServer::start_with(&["spk"]),
    ) else {
        return;
    };
    let data = tempfile::tempdir().expect("temp dir");
    let (_server, url, key) = serve(data.path()).await;
    let (mut speaker, mut viewer) = a_call(&url, &key, &talker, &listener).await;
    let tone = talker.play("mic", sine(440.0, PLAYED));
    let ear = listener.record("spk.monitor");
    await_tone(&ear, "the tone before the microphone goes", 440.0);
    drop(ear);

    talker.unload_sink("mic");
    drop(tone);
    let lost = speaker
        .expect_event(
            "mediaError",
            json!({"device": "microphone", "code": "device_lost"}),
        )
        .await;
    println!("lost: {lost}");
    // The stage goes on: the speaker stays on it, shown muted.
    await_publishing_audio(&mut speaker, false).await;
    viewer
        .expect_event(
            "mediaPublished",
            json!({"user_id": "speaker", "audio": false}),
        )
        .await;
    let status = speaker.ok(json!({"id": 3, "call": "stage.status"})).await;
    assert_eq!(status["status"], "ON_STAGE");

    talker.load_sink("mic");
    talker.pactl(&["set-default-source", "mic.monitor"]);
    let _tone = talker.play("mic", sine(440.0, PLAYED));
    await_publishing_audio(&mut speaker, true).await;
    viewer
        .expect_event(
            "mediaPublished",
            json!({"user_id": "speaker", "audio": true}),
        )
        .await;
    let ear = listener.record("spk.monitor");
    let heard = await_tone(&ear, "the tone after the microphone returned", 440.0);
    assert!((heard.hz - 440.0).abs() <= 5.0, "heard {} Hz", heard.hz);
    assert!(
        db(heard.level, PLAYED).abs() <= 6.0,
        "heard at {}",
        heard.level
    );
    // Told once, though it was tried again while it was away.
    assert_eq!(
        media_errors(&speaker, "microphone"),
        1,
        "{:#?}",
        speaker.seen()
    );
    let status = speaker.ok(json!({"id": 4, "call": "stage.status"})).await;
    assert_eq!(status["status"], "ON_STAGE");

    for bot in [&mut speaker, &mut viewer] {
        bot.close_stdin().await;
        assert_eq!(bot.exit_code().await, Some(0), "{}", bot.name);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_loudspeaker_unplugged_mid_call_is_told_once_and_plays_again_when_it_returns() {
    let (Some(talker), Some(listener)) = (
        SoundServer::start_with(&["mic"]),
        SoundServer::start_with(&["spk"]),
    ) else {
        return;
    };
    let data = tempfile::tempdir().expect("temp dir");
    let (_server, url, key) = serve(data.path()).await;
    let (mut speaker, mut viewer) = a_call(&url, &key, &talker, &listener).await;
    let _tone = talker.play("mic", sine(440.0, PLAYED));
    let ear = listener.record("spk.monitor");
    await_tone(&ear, "the tone before the loudspeaker goes", 440.0);
    drop(ear);

    listener.unload_sink("spk");
    viewer
        .expect_event(
            "mediaError",
            json!({"device": "speaker", "code": "device_lost"}),
        )
        .await;
    // The stage goes on: the speaker still publishes and the viewer still receives.
    let before = support::frames_from(&mut viewer, "speaker").await.1;
    await_audio(&mut viewer, "speaker", before + 25).await;
    let status = speaker.ok(json!({"id": 3, "call": "stage.status"})).await;
    assert_eq!(status["status"], "ON_STAGE");

    listener.load_sink("spk");
    listener.pactl(&["set-default-sink", "spk"]);
    let ear = listener.record("spk.monitor");
    let heard = await_tone(&ear, "the tone after the loudspeaker returned", 440.0);
    assert!((heard.hz - 440.0).abs() <= 5.0, "heard {} Hz", heard.hz);
    assert!(
        db(heard.level, PLAYED).abs() <= 6.0,
        "heard at {}",
        heard.level
    );
    assert_eq!(media_errors(&viewer, "speaker"), 1, "{:#?}", viewer.seen());

    for bot in [&mut speaker, &mut viewer] {
        bot.close_stdin().await;
        assert_eq!(bot.exit_code().await, Some(0), "{}", bot.name);
    }
}

/// `onstage devices` with `env`: its lines, and whether it succeeded.
async fn devices(env: &[(&str, &str)]) -> (Vec<serde_json::Value>, bool) {
    let out = tokio::process::Command::new(support::BIN)
        .arg("devices")
        .envs(env.iter().copied())
        .stdin(std::process::Stdio::null())
        .output()
        .await
        .expect("onstage devices runs");
    let lines = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON line"))
        .collect();
    (lines, out.status.success())
}

#[tokio::test]
async fn devices_lists_the_sound_servers_devices_and_no_stand_ins() {
    let Some(sound) = SoundServer::start() else {
        return;
    };
    let (listed, ok) = devices(&sound.env()).await;
    assert!(ok, "{listed:?}");
    for kind in ["microphone", "speaker"] {
        assert!(
            listed
                .iter()
                .any(|d| d["kind"] == kind && d["id"] == "alsa:default"),
            "no default {kind}: {listed:?}"
        );
    }
    // ALSA's null device and its plugins are no microphones or speakers.
    for d in &listed {
        let id = d["id"].as_str().unwrap_or_default();
        assert!(
            id == "alsa:default"
                || id.contains("CARD=")
                || id.contains("hw:")
                || d["kind"] == "camera",
            "a stand-in is listed: {d}"
        );
    }

    // A device named that is not there: a clear error at start, with a stable code.
    let out = tokio::process::Command::new(support::BIN)
        .args([
            "bot",
            "--server",
            "http://127.0.0.1:9",
            "--token",
            "t",
            "--media",
            "devices",
            "--mic",
            "no-such-microphone",
        ])
        .envs(sound.env())
        .stdin(std::process::Stdio::null())
        .output()
        .await
        .expect("onstage bot runs");
    let text = String::from_utf8_lossy(&out.stdout);
    let line: serde_json::Value = serde_json::from_str(text.trim()).expect("one JSON line");
    assert_eq!(out.status.code(), Some(1), "{line}");
    assert_eq!(line["ok"], false, "{line}");
    assert_eq!(line["error"]["code"], "device_not_found", "{line}");
    assert_eq!(line["error"]["device"], "microphone", "{line}");
    // Named on purpose, a stand-in is what was asked for: the bot goes on to join (and
    // here finds no server).
    let out = tokio::process::Command::new(support::BIN)
        .args([
            "bot",
            "--server",
            "http://127.0.0.1:9",
            "--token",
            "t",
            "--media",
            "devices",
            "--mic",
            "alsa:null",
            "--camera",
            "none",
        ])
        .envs(sound.env())
        .stdin(std::process::Stdio::null())
        .output()
        .await
        .expect("onstage bot runs");
    let line: serde_json::Value =
        serde_json::from_str(String::from_utf8_lossy(&out.stdout).trim()).expect("one JSON line");
    assert_eq!(line["error"]["code"], "unreachable", "{line}");
}

/// The `p`-th percentile (0..=100) of `sorted` (nearest rank).
fn percentile(sorted: &[f64], p: f64) -> f64 {
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// Mouth to ear on real audio devices: 20 tone bursts into the speaker's microphone, each
/// onset found in `mic.monitor` and again in the viewer's `spk.monitor`; p50 / p95.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a measurement: cargo nextest run -p onstage --test audio --run-ignored only --no-capture"]
async fn mouth_to_ear_delay_over_20_onsets() {
    const ONSETS: usize = 20;
    let (Some(talker), Some(listener)) = (
        SoundServer::start_with(&["mic"]),
        SoundServer::start_with(&["spk"]),
    ) else {
        return;
    };
    let data = tempfile::tempdir().expect("temp dir");
    let (_server, url, key) = serve(data.path()).await;
    let (mut speaker, mut viewer) = a_call(&url, &key, &talker, &listener).await;
    await_audio(&mut viewer, "speaker", 25).await;
    let mouth = talker.record("mic.monitor");
    let ear = listener.record("spk.monitor");
    let (on, off) = (Duration::from_millis(300), Duration::from_millis(700));
    let _bursts = talker.play(
        "mic",
        onstage_testkit::sound::bursts(440.0, PLAYED, Duration::from_millis(500), on, off, ONSETS),
    );
    // A burst's onset: the tone after 200 ms without it.
    let onsets = |r: &Recording| tone_onsets(&r.samples, 440.0, ARRIVED, 20);
    let within = WAIT + (on + off) * ONSETS as u32;
    let (played, heard) = block_in_place(|| {
        let heard = ear.wait_for("every burst on the loudspeaker", within, |r| {
            onsets(r).len() >= ONSETS
        });
        let played = mouth.wait_for("every burst into the microphone", WAIT, |r| {
            onsets(r).len() >= ONSETS
        });
        (played, heard)
    });
    let times = |r: &Recording| -> Vec<std::time::Instant> {
        onsets(r).into_iter().filter_map(|i| r.time_of(i)).collect()
    };
    let (mouth_at, ear_at) = (times(&played), times(&heard));
    // Each burst is heard after it was played and before the next one is.
    let mut delays: Vec<f64> = mouth_at
        .iter()
        .filter_map(|m| {
            ear_at
                .iter()
                .find(|e| *e > m && e.duration_since(*m) < on + off)
                .map(|e| e.duration_since(*m).as_secs_f64() * 1000.0)
        })
        .collect();
    assert_eq!(delays.len(), ONSETS, "every burst heard once: {delays:?}");
    let in_order: Vec<String> = delays.iter().map(|d| format!("{d:.0}")).collect();
    println!("mouth to ear, burst by burst (ms): {}", in_order.join(" "));
    delays.sort_by(f64::total_cmp);
    println!(
        "mouth to ear over {ONSETS} onsets: p50 {:.0} ms, p95 {:.0} ms, min {:.0} ms, max {:.0} ms",
        percentile(&delays, 50.0),
        percentile(&delays, 95.0),
        delays[0],
        delays[ONSETS - 1]
    );
    for bot in [&mut speaker, &mut viewer] {
        bot.close_stdin().await;
        assert_eq!(bot.exit_code().await, Some(0), "{}", bot.name);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_default_camera_is_told_once_and_the_microphone_goes_on() {
    if std::path::Path::new("/dev/video0").exists() {
        return; // a machine with a camera
    }
    let Some(sound) = SoundServer::start() else {
        return;
    };
    let data = tempfile::tempdir().expect("temp dir");
    let (_server, url, key) = serve(data.path()).await;
    let meeting = create_meeting(&url, &key, "no camera").await;
    let (_, speaker_token) = add(&url, &key, &meeting, "speaker", "speaker").await;
    let (_, viewer_token) = add(&url, &key, &meeting, "viewer", "viewer").await;
    let mut speaker = Proc::spawn(
        "speaker",
        &[
            "bot",
            "--server",
            &url,
            "--token",
            &speaker_token,
            "--media",
            "devices",
            "--speaker",
            "none",
        ],
        &sound.env(),
    );
    speaker.expect_event("joined", json!({})).await;
    let mut viewer = device_bot(&url, &viewer_token, "viewer", &["--mic", "none"], &sound).await;
    speaker.ok(json!({"id": 1, "call": "stage.join"})).await;
    speaker
        .expect_event(
            "mediaError",
            json!({"device": "camera", "code": "device_not_found"}),
        )
        .await;
    // Four seconds of the microphone's audio: the camera is tried again meanwhile (every
    // 2 s), and not told again.
    await_audio(&mut viewer, "speaker", 200).await;
    let stats = speaker.ok(json!({"id": 2, "call": "media.stats"})).await;
    assert_eq!(stats["publishing"], json!({"audio": true, "video": false}));
    assert_eq!(media_errors(&speaker, "camera"), 1, "{:#?}", speaker.seen());
    for bot in [&mut speaker, &mut viewer] {
        bot.close_stdin().await;
        assert_eq!(bot.exit_code().await, Some(0), "{}", bot.name);
    }
}
