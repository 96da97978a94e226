//! Device listing and opening. The test machines have no camera and no sound card, so
//! these prove the "no device is a state, not a crash" contract; on a machine with
//! devices they still pass (they only check the missing-device paths strictly).

use onstage_media::{
    list_cameras, list_microphones, list_speakers, CameraSource, DeviceKind, MediaError,
    MediaErrorCode, MicrophoneSource, SpeakerSink, VideoFormat,
};

const DEVICE_CODES: [MediaErrorCode; 4] = [
    MediaErrorCode::DeviceNotFound,
    MediaErrorCode::DeviceBusy,
    MediaErrorCode::DeviceError,
    MediaErrorCode::UnsupportedFormat,
];

/// A device error names the device that was being opened; other errors name none.
fn about(e: &MediaError, device: DeviceKind) {
    if e.code() != MediaErrorCode::UnsupportedFormat {
        assert_eq!(e.device(), Some(device), "{e}");
    }
}

fn vga() -> VideoFormat {
    VideoFormat {
        width: 640,
        height: 480,
        fps: 30,
    }
}

#[test]
fn listing_devices_never_fails_for_lack_of_devices() {
    let cameras = list_cameras().expect("camera listing works without cameras");
    if !std::path::Path::new("/dev/video0").exists() {
        assert!(
            cameras.is_empty(),
            "no /dev/video*, yet cameras: {cameras:?}"
        );
    }
    list_microphones().expect("microphone listing works without a sound card");
    list_speakers().expect("speaker listing works without a sound card");
}

/// No sound card, no sound server: no microphone and no speaker, not the stand-ins ALSA
/// lists beside devices (`null`, its plugins).
#[test]
fn a_machine_without_a_sound_card_lists_no_microphone() {
    let cards = std::fs::read_to_string("/proc/asound/cards").unwrap_or_default();
    let server = ["PULSE_SERVER", "PULSE_RUNTIME_PATH"]
        .iter()
        .any(|v| std::env::var_os(v).is_some());
    if !cfg!(target_os = "linux") || cards.contains('[') || server {
        return; // there may be something to list
    }
    let mics = list_microphones().expect("list");
    let speakers = list_speakers().expect("list");
    // ALSA's `default` is listed only when a sound server runs (the user's own, here).
    let only_default = |d: &[onstage_media::DeviceInfo]| d.iter().all(|d| d.id == "alsa:default");
    assert!(only_default(&mics), "{mics:?}");
    assert!(only_default(&speakers), "{speakers:?}");
}

#[test]
fn a_missing_camera_is_device_not_found() {
    let err = CameraSource::open(Some("no-such-camera-42"), vga()).expect_err("no such camera");
    assert_eq!(err.code(), MediaErrorCode::DeviceNotFound, "{err}");
    assert_eq!(err.device(), Some(DeviceKind::Camera), "{err}");

    match CameraSource::open(None, vga()) {
        Ok(camera) => drop(camera), // a machine with a camera
        Err(e) => {
            assert!(DEVICE_CODES.contains(&e.code()), "{e}");
            about(&e, DeviceKind::Camera);
            if list_cameras().is_ok_and(|c| c.is_empty()) {
                assert_eq!(
                    e,
                    MediaError::DeviceNotFound(DeviceKind::Camera, "no camera".into())
                );
            }
        }
    }
}

#[test]
fn a_missing_microphone_or_speaker_is_device_not_found() {
    let err = MicrophoneSource::open(Some("alsa:no-such-device-42")).expect_err("no such mic");
    assert_eq!(err.code(), MediaErrorCode::DeviceNotFound, "{err}");
    assert_eq!(err.device(), Some(DeviceKind::Microphone), "{err}");
    let err = MicrophoneSource::open(Some("not even an id")).expect_err("no such mic");
    assert_eq!(err.code(), MediaErrorCode::DeviceNotFound, "{err}");
    assert_eq!(err.device(), Some(DeviceKind::Microphone), "{err}");
    let err = SpeakerSink::open(Some("alsa:no-such-device-42")).expect_err("no such speaker");
    assert_eq!(err.code(), MediaErrorCode::DeviceNotFound, "{err}");
    assert_eq!(err.device(), Some(DeviceKind::Speaker), "{err}");
}

#[test]
fn the_default_devices_open_or_fail_with_a_typed_error() {
    // Here: no sound card, so a typed error; elsewhere the device opens and drops cleanly.
    match MicrophoneSource::open(None) {
        Ok(mic) => drop(mic),
        Err(e) => {
            assert!(DEVICE_CODES.contains(&e.code()), "{e}");
            about(&e, DeviceKind::Microphone);
        }
    }
    match SpeakerSink::open(None) {
        Ok(speaker) => drop(speaker),
        Err(e) => {
            assert!(DEVICE_CODES.contains(&e.code()), "{e}");
            about(&e, DeviceKind::Speaker);
        }
    }
}

#[test]
fn the_alsa_null_device_proves_the_audio_wiring() {
    // ALSA's `null` device opens without hardware: capture yields zeros, playback
    // discards. It is not paced in real time, so this checks plumbing, never timing. It is
    // no microphone (not listed as one) but opens when named.
    if !cfg!(target_os = "linux") {
        return; // not an ALSA machine
    }
    assert!(
        !list_microphones()
            .expect("list")
            .iter()
            .any(|m| m.id == "alsa:null"),
        "the null device is listed as a microphone"
    );
    let mut mic = MicrophoneSource::open(Some("alsa:null")).expect("null capture opens");
    use onstage_media::{AudioSink, AudioSource};
    for _ in 0..3 {
        let frame = mic.next_frame().expect("a frame");
        assert_eq!(frame.samples.len(), onstage_media::AUDIO_FRAME_SAMPLES);
        assert!(frame.samples.iter().all(|&s| s == 0));
        assert!(frame.timestamp_us > 0);
    }
    drop(mic);
    let mut speaker = SpeakerSink::open(Some("alsa:null")).expect("null playback opens");
    for _ in 0..3 {
        speaker
            .play(&onstage_media::AudioFrame::silence(0))
            .expect("plays");
    }
}
