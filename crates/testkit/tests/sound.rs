//! The sound-server harness itself: what is played into `mic` is heard on `mic.monitor`
//! (the default source) at its frequency and level, tone onsets are found where they are,
//! and a sink can be unplugged and plugged back in.

use std::time::Duration;

use onstage_testkit::sound::{
    bursts, dominant_frequency, sine, tone_level, tone_onsets, SoundServer, RATE,
};

const WAIT: Duration = Duration::from_secs(10);

#[test]
fn a_tone_played_into_mic_is_recorded_on_its_monitor() {
    let Some(sound) = SoundServer::start() else {
        return;
    };
    let defaults = sound.pactl(&["info"]);
    assert!(
        defaults.contains("Default Source: mic.monitor"),
        "{defaults}"
    );
    assert!(defaults.contains("Default Sink: spk"), "{defaults}");

    let recorder = sound.record("mic.monitor");
    let _player = sound.play("mic", sine(440.0, 0.3));
    let heard = recorder.wait_for("a second of 440 Hz", WAIT, |r| {
        tone_onsets(&r.samples, 440.0, 0.15, 1)
            .first()
            .is_some_and(|&at| r.samples.len() >= at + RATE as usize)
    });
    let onset = tone_onsets(&heard.samples, 440.0, 0.15, 1)[0];
    // From 100 ms after the onset: the tone's own ramp is over.
    let body = heard.window(onset + 4_800, 0.5);
    let hz = dominant_frequency(body, RATE);
    assert!((hz - 440.0).abs() < 1.0, "{hz} Hz");
    let level = tone_level(body, RATE, 440.0);
    assert!((level - 0.3).abs() < 0.02, "level {level}");
    assert!(heard.time_of(onset).is_some());
    // Nothing of it on the speaker.
    let speaker = sound.record("spk.monitor");
    let quiet = speaker.wait_for("0.3 s of the speaker", WAIT, |r| r.seconds() >= 0.3);
    assert!(quiet.peak(0, 1.0) < 0.001, "peak {}", quiet.peak(0, 1.0));
}

#[test]
fn bursts_have_one_onset_each_and_a_sink_comes_and_goes() {
    let Some(sound) = SoundServer::start() else {
        return;
    };
    let recorder = sound.record("mic.monitor");
    let on = Duration::from_millis(200);
    let _player = sound.play(
        "mic",
        bursts(660.0, 0.3, Duration::from_millis(100), on, on, 3),
    );
    let heard = recorder.wait_for("three bursts", WAIT, |r| {
        tone_onsets(&r.samples, 660.0, 0.15, 5).len() >= 3
    });
    let onsets = tone_onsets(&heard.samples, 660.0, 0.15, 5);
    let gaps: Vec<usize> = onsets.windows(2).map(|w| w[1] - w[0]).collect();
    // 400 ms apart, to the 10 ms block.
    assert!(
        gaps.iter().all(|&g| g.abs_diff(19_200) <= 480),
        "{onsets:?}"
    );
    drop(recorder);

    sound.unload_sink("mic");
    let sinks = sound.pactl(&["list", "short", "sinks"]);
    assert!(!sinks.contains("mic"), "{sinks}");
    sound.load_sink("mic");
    let sinks = sound.pactl(&["list", "short", "sinks"]);
    assert!(sinks.contains("mic"), "{sinks}");
}
