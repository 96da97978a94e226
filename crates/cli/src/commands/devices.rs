//! `onstage devices`: the cameras, microphones and speakers of this machine, one JSON line
//! each, as the bot's `--camera`, `--mic` and `--speaker` name them.

use std::process::ExitCode;

use serde_json::{json, Value};

use onstage_media::{list_devices, DeviceKind, MediaError};

use crate::output;

/// The kinds listed, in the order they are printed.
const KINDS: [DeviceKind; 3] = [
    DeviceKind::Camera,
    DeviceKind::Microphone,
    DeviceKind::Speaker,
];

/// `{"ok":false,"error":{"code":..,"device":..,"message":..}}`: a device that cannot be
/// used, with the media's stable code (`device_not_found`, `device_busy`, ...) and the kind
/// of device it is about.
pub fn device_error_line(e: &MediaError) -> Value {
    json!({
        "ok": false,
        "error": {
            "code": e.code(),
            "device": e.device(),
            "message": e.to_string(),
        },
    })
}

/// One listed device: `{"kind":"microphone","id":"alsa:default","name":"Default"}`.
fn device_line(kind: DeviceKind, id: &str, name: &str) -> Value {
    json!({ "kind": kind, "id": id, "name": name })
}

pub async fn run() -> ExitCode {
    // Device libraries block (and may be slow to enumerate): off the async threads.
    let listed = tokio::task::spawn_blocking(|| {
        KINDS
            .iter()
            .map(|&kind| (kind, list_devices(kind)))
            .collect::<Vec<_>>()
    })
    .await;
    let Ok(listed) = listed else {
        output::print_line(&json!({
            "ok": false,
            "error": {"code": "internal", "message": "the device listing stopped"},
        }));
        return ExitCode::FAILURE;
    };
    let mut failed = false;
    for (kind, devices) in listed {
        match devices {
            Ok(devices) => {
                for d in devices {
                    output::print_line(&device_line(kind, &d.id, &d.name));
                }
            }
            Err(e) => {
                failed = true;
                output::print_line(&device_error_line(&e));
            }
        }
    }
    if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_have_the_documented_shapes() {
        assert_eq!(
            device_line(DeviceKind::Speaker, "alsa:default", "Default"),
            json!({"kind":"speaker","id":"alsa:default","name":"Default"})
        );
        let e = MediaError::DeviceNotFound(DeviceKind::Microphone, "no microphone \"x\"".into());
        assert_eq!(
            device_error_line(&e),
            json!({"ok":false,"error":{"code":"device_not_found","device":"microphone",
                   "message":"device not found: no microphone \"x\""}})
        );
    }
}
