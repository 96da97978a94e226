//! The bodies of the admin REST API (`docs/API.md`): what the server's handlers read and
//! answer and what its clients (`onstage_client::admin::AdminClient`, hence the `onstage`
//! command, the desktop app and the tests) send and read. One definition for both sides,
//! so the two cannot drift apart.
//!
//! Every answer is an [`Envelope`]: `{"success":true,"data":..}` or
//! `{"success":false,"error":{"code","message"}}`.

use serde::de::DeserializeOwned;
use serde::ser::SerializeStruct;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::error::ErrorBody;
use crate::ids::{MeetingId, UserId};
use crate::link::{InviteLink, LinkError};
use crate::UnixMillis;

/// The RealtimeKit-shaped answer of every admin route: its data, or why it failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Envelope<T> {
    /// `{"success":true,"data":T}`
    Success(T),
    /// `{"success":false,"error":ErrorBody}`
    Failure(ErrorBody),
}

impl<T> Envelope<T> {
    /// The data, or the error the server answered.
    pub fn into_result(self) -> Result<T, ErrorBody> {
        match self {
            Envelope::Success(data) => Ok(data),
            Envelope::Failure(error) => Err(error),
        }
    }
}

impl<T: Serialize> Serialize for Envelope<T> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut out = serializer.serialize_struct("Envelope", 2)?;
        match self {
            Envelope::Success(data) => {
                out.serialize_field("success", &true)?;
                out.serialize_field("data", data)?;
            }
            Envelope::Failure(error) => {
                out.serialize_field("success", &false)?;
                out.serialize_field("error", error)?;
            }
        }
        out.end()
    }
}

impl<'de, T: DeserializeOwned> Deserialize<'de> for Envelope<T> {
    /// `success` decides which of `data` and `error` must be there; an envelope that
    /// says one thing and carries the other is refused rather than guessed at.
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(bound = "T: DeserializeOwned")]
        struct Wire<T> {
            success: bool,
            data: Option<T>,
            error: Option<ErrorBody>,
        }
        let wire = Wire::<T>::deserialize(deserializer)?;
        match (wire.success, wire.data, wire.error) {
            (true, Some(data), _) => Ok(Envelope::Success(data)),
            (false, _, Some(error)) => Ok(Envelope::Failure(error)),
            (true, None, _) => Err(serde::de::Error::missing_field("data")),
            (false, _, None) => Err(serde::de::Error::missing_field("error")),
        }
    }
}

/// `POST /v1/meetings`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateMeeting {
    /// 1 to 200 characters once trimmed, no control or format characters.
    pub title: String,
    /// 1 to 1000; the server's default when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_on_stage: Option<u32>,
}

impl CreateMeeting {
    /// A meeting with the server's default stage size.
    pub fn titled(title: impl Into<String>) -> Self {
        Self {
            title: title.into(),
            max_on_stage: None,
        }
    }
}

/// A meeting as the admin API answers it (`POST`, `GET`, `DELETE /v1/meetings/..`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Meeting {
    pub id: MeetingId,
    pub title: String,
    pub max_on_stage: u32,
    pub created_at: UnixMillis,
}

/// `POST /v1/meetings/{id}/participants`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AddParticipant {
    /// 1 to 100 characters once trimmed, no control or format characters.
    pub name: String,
    pub preset_name: String,
    /// The user id to give the participant (adding it again re-issues its token); the
    /// server makes one when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub custom_participant_id: Option<String>,
}

impl AddParticipant {
    /// A participant with a user id of the server's making.
    pub fn new(name: impl Into<String>, preset_name: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            preset_name: preset_name.into(),
            custom_participant_id: None,
        }
    }
}

/// A participant as the admin API lists and removes it: no token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Participant {
    /// The participant's user id.
    pub id: UserId,
    pub name: String,
    pub preset_name: String,
    pub custom_participant_id: Option<String>,
}

/// A participant just added (or re-issued): with its token and invite link, which the
/// admin API hands out only here.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AddedParticipant {
    /// The participant's user id.
    pub id: UserId,
    pub name: String,
    pub preset_name: String,
    pub custom_participant_id: Option<String>,
    /// The participant token (a JWT) to join with.
    pub token: String,
    /// The invite link (`onstage://join?...`) carrying the token, as text: see
    /// [`AddedParticipant::invite`].
    pub link: String,
    /// The same invitation for a browser, `https://HOST:PORT/join#token=..`
    /// ([`InviteLink::web_link`]).
    pub web_link: String,
}

impl AddedParticipant {
    /// The invite link, read.
    pub fn invite(&self) -> Result<InviteLink, LinkError> {
        InviteLink::parse(&self.link)
    }
}

/// `POST /v1/meetings/{id}/invites`: a role link for the meeting.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateInvite {
    /// The preset every guest joining with it gets (built-in or custom).
    pub preset_name: String,
}

impl CreateInvite {
    pub fn new(preset_name: impl Into<String>) -> Self {
        Self {
            preset_name: preset_name.into(),
        }
    }
}

/// A role invite of a meeting: one link for everyone who should join with a preset, each
/// guest giving a name of their own. Valid while the meeting exists, until revoked.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Invite {
    /// The invite's id (what `DELETE .../invites/{id}` names).
    pub id: String,
    pub preset_name: String,
    /// The invite token (a JWT naming the invite, never a participant).
    pub token: String,
    /// The role link (`onstage://join?server=..&invite=..`), as text: see
    /// [`Invite::invite`].
    pub link: String,
    /// The same link for a browser, `https://HOST:PORT/join#invite=..`
    /// ([`InviteLink::web_link`]).
    pub web_link: String,
    pub created_at: UnixMillis,
    /// When it was revoked: from then on it lets nobody new in.
    #[serde(default)]
    pub revoked_at: Option<UnixMillis>,
}

impl Invite {
    /// The role link, read.
    pub fn invite(&self) -> Result<InviteLink, LinkError> {
        InviteLink::parse(&self.link)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ErrorCode;
    use serde_json::json;

    #[test]
    fn envelopes_keep_their_wire_form() {
        let ok = Envelope::Success(json!({"id": "m1"}));
        assert_eq!(
            serde_json::to_string(&ok).unwrap(),
            r#"{"success":true,"data":{"id":"m1"}}"#
        );
        let failed = Envelope::<()>::Failure(ErrorBody::new(ErrorCode::NotFound, "no"));
        assert_eq!(
            serde_json::to_string(&failed).unwrap(),
            r#"{"success":false,"error":{"code":"not_found","message":"no"}}"#
        );
        let back: Envelope<serde_json::Value> = serde_json::from_str(
            r#"{"success":false,"error":{"code":"not_found","message":"no"}}"#,
        )
        .unwrap();
        assert_eq!(
            back.into_result(),
            Err(ErrorBody::new(ErrorCode::NotFound, "no"))
        );
    }

    #[test]
    fn an_envelope_must_carry_what_it_says() {
        let missing = serde_json::from_str::<Envelope<u32>>(r#"{"success":true}"#);
        assert!(missing.is_err());
        let missing = serde_json::from_str::<Envelope<u32>>(r#"{"success":false,"data":1}"#);
        assert!(missing.is_err());
    }

    #[test]
    fn optional_request_fields_are_left_out() {
        assert_eq!(
            serde_json::to_value(CreateMeeting::titled("t")).unwrap(),
            json!({"title": "t"})
        );
        assert_eq!(
            serde_json::to_value(AddParticipant::new("Ann", "host")).unwrap(),
            json!({"name": "Ann", "preset_name": "host"})
        );
        let refused = serde_json::from_value::<CreateMeeting>(json!({"title": "t", "x": 1}));
        assert!(refused.is_err(), "unknown fields are refused");
    }
}
