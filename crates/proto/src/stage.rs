//! Stage status and the preset fields that govern it.

use serde::{Deserialize, Serialize};

use crate::{UnixMillis, UserId};

/// Where a participant stands with respect to the stage.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
#[derive(strum::IntoStaticStr, strum::Display, strum::VariantArray)]
#[strum(serialize_all = "SCREAMING_SNAKE_CASE")]
pub enum StageStatus {
    #[default]
    OffStage,
    RequestedToJoinStage,
    AcceptedToJoinStage,
    OnStage,
}

impl StageStatus {
    /// The wire name, e.g. `ON_STAGE`.
    pub fn as_str(self) -> &'static str {
        self.into()
    }
}

/// How a preset may reach the stage.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum StageAccess {
    /// May join the stage directly.
    Allowed,
    /// Must request and be granted.
    CanRequest,
    /// May come up only when invited (granted) by a host.
    NotAllowed,
}

/// A preset: the permissions a participant joins with. Field names follow RealtimeKit's
/// REST presets; `accept_present_requests` is accepted as an alias of
/// `accept_stage_requests`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Preset {
    pub name: String,
    #[serde(default = "default_true")]
    pub stage_enabled: bool,
    pub stage_access: StageAccess,
    #[serde(default, alias = "accept_present_requests")]
    pub accept_stage_requests: bool,
    #[serde(default)]
    pub kick_participant: bool,
    #[serde(default = "default_true")]
    pub can_produce_audio: bool,
    #[serde(default = "default_true")]
    pub can_produce_video: bool,
}

fn default_true() -> bool {
    true
}

impl Preset {
    /// May this preset see the request queue, grant and deny?
    pub fn may_accept_requests(&self) -> bool {
        self.accept_stage_requests
    }

    /// What this preset may publish.
    pub fn may_produce(&self) -> crate::MediaKinds {
        crate::MediaKinds::new(self.can_produce_audio, self.can_produce_video)
    }

    /// May this preset end the meeting for everyone (`meeting.end`)? Only a host: one
    /// that both runs the stage (`accept_stage_requests`) and may remove people from it
    /// (`kick_participant`). A moderator that only handles requests may not.
    pub fn may_end_meeting(&self) -> bool {
        self.accept_stage_requests && self.kick_participant
    }

    /// May this preset take people off the stage?
    pub fn may_kick(&self) -> bool {
        self.accept_stage_requests || self.kick_participant
    }
}

/// One entry of the stage request queue.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccessRequest {
    pub user_id: UserId,
    pub name: String,
    pub requested_at: UnixMillis,
}
