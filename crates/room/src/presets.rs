//! The four built-in presets. Custom presets are stored by the server and handed to the
//! room with each participant; the room only reads their fields.

use onstage_proto::{Preset, StageAccess};

pub const BUILTIN_PRESET_NAMES: [&str; 4] = ["host", "speaker", "viewer", "spectator"];

fn preset(name: &str, access: StageAccess, accept: bool, kick: bool) -> Preset {
    Preset {
        name: name.to_owned(),
        stage_enabled: true,
        stage_access: access,
        accept_stage_requests: accept,
        kick_participant: kick,
        can_produce_audio: true,
        can_produce_video: true,
    }
}

/// A built-in preset by name: `host` (ALLOWED, accepts requests, kicks), `speaker`
/// (ALLOWED), `viewer` (CAN_REQUEST), `spectator` (NOT_ALLOWED).
pub fn builtin_preset(name: &str) -> Option<Preset> {
    Some(match name {
        "host" => preset("host", StageAccess::Allowed, true, true),
        "speaker" => preset("speaker", StageAccess::Allowed, false, false),
        "viewer" => preset("viewer", StageAccess::CanRequest, false, false),
        "spectator" => preset("spectator", StageAccess::NotAllowed, false, false),
        _ => return None,
    })
}

pub fn is_builtin_preset(name: &str) -> bool {
    BUILTIN_PRESET_NAMES.contains(&name)
}

/// All built-in presets, in the order of [`BUILTIN_PRESET_NAMES`].
pub fn builtin_presets() -> Vec<Preset> {
    BUILTIN_PRESET_NAMES
        .iter()
        .filter_map(|n| builtin_preset(n))
        .collect()
}
