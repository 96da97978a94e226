//! Credentials: the admin bearer key and participant tokens (HS256 JWTs).

use std::time::Duration;

use axum::http::HeaderMap;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use onstage_proto::{MeetingId, UnixMillis, UserId};
use serde::{Deserialize, Serialize};

use crate::error::ApiError;

/// What a participant token says.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    /// The participant's user id.
    pub sub: String,
    pub meeting_id: String,
    /// Issued at, seconds since the epoch.
    pub iat: u64,
    /// Expires at, seconds since the epoch.
    pub exp: u64,
    /// The participant's token generation when this token was issued: only a token of the
    /// current generation opens a session, so issuing a new token revokes the older ones.
    /// Tokens from before generations existed carry none and count as generation 0, the
    /// generation their participants were given.
    /// (`gen` on the wire; `gen` is a reserved word from Rust 2024 on.)
    #[serde(default, rename = "gen")]
    pub generation: u64,
}

impl Claims {
    pub fn user_id(&self) -> UserId {
        UserId::new(self.sub.clone())
    }

    pub fn meeting_id(&self) -> MeetingId {
        MeetingId::new(self.meeting_id.clone())
    }
}

/// What a role invite token says. It names an invite (`inv`) and never a participant: it
/// has no `sub`, which participant tokens must have, and participant tokens have no `inv`,
/// which this must have, so neither kind is ever taken for the other.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InviteClaims {
    /// The invite's id.
    pub inv: String,
    pub meeting_id: String,
    /// Issued at, seconds since the epoch (the invite's creation, so the same invite
    /// always has the same token and the list can hand it out again).
    pub iat: u64,
    /// Never set by this server: an invite lasts as long as its meeting unless revoked,
    /// which storage decides. Read only to refuse a token that has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sub: Option<String>,
}

impl InviteClaims {
    pub fn meeting_id(&self) -> MeetingId {
        MeetingId::new(self.meeting_id.clone())
    }
}

/// Checks admin keys, mints and verifies participant and invite tokens.
pub struct Auth {
    admin_key: String,
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
    /// For invite tokens: no required `exp` or `sub` (see [`InviteClaims`]).
    invite_validation: Validation,
    token_ttl: Duration,
}

impl std::fmt::Debug for Auth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Auth").finish_non_exhaustive()
    }
}

impl Auth {
    pub fn new(admin_key: String, jwt_secret: &str, token_ttl: Duration) -> Self {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.leeway = 5;
        validation.set_required_spec_claims(&["exp", "sub"]);
        let mut invite_validation = Validation::new(Algorithm::HS256);
        invite_validation.set_required_spec_claims::<&str>(&[]);
        Self {
            admin_key,
            encoding: EncodingKey::from_secret(jwt_secret.as_bytes()),
            decoding: DecodingKey::from_secret(jwt_secret.as_bytes()),
            validation,
            invite_validation,
            token_ttl,
        }
    }

    pub fn admin_key(&self) -> &str {
        &self.admin_key
    }

    /// Accepts only `Authorization: Bearer <admin key>`.
    pub fn check_admin(&self, headers: &HeaderMap) -> Result<(), ApiError> {
        match bearer(headers) {
            Some(key) if constant_time_eq(key.as_bytes(), self.admin_key.as_bytes()) => Ok(()),
            Some(_) => Err(ApiError::unauthorized("wrong admin key")),
            None => Err(ApiError::unauthorized(
                "missing admin key (Authorization: Bearer <key>)",
            )),
        }
    }

    /// A token for a participant of a meeting at token `generation`, valid for the
    /// configured lifetime (or until a newer generation is issued).
    pub fn mint(
        &self,
        meeting: &MeetingId,
        user: &UserId,
        generation: u64,
        now: UnixMillis,
    ) -> Result<String, ApiError> {
        let iat = now / 1000;
        let claims = Claims {
            sub: user.to_string(),
            meeting_id: meeting.to_string(),
            iat,
            exp: iat.saturating_add(self.token_ttl.as_secs()),
            generation,
        };
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &self.encoding)
            .map_err(|e| ApiError::internal(format!("cannot sign token: {e}")))
    }

    /// The claims of a valid, unexpired token signed by this server. A token that is ours
    /// but past its lifetime is `token_expired` (the user needs a new link, not a fixed
    /// one); everything else wrong with it is `unauthorized`.
    pub fn verify(&self, token: &str) -> Result<Claims, ApiError> {
        jsonwebtoken::decode::<Claims>(token, &self.decoding, &self.validation)
            .map(|data| data.claims)
            .map_err(|e| match e.kind() {
                // Checked only once the signature is: a forged token never says "expired".
                jsonwebtoken::errors::ErrorKind::ExpiredSignature => {
                    ApiError::token_expired("the token has expired")
                }
                _ => ApiError::unauthorized(format!("invalid token: {e}")),
            })
    }
}

impl Auth {
    /// The token of a role invite of `meeting`, made at `created_at`: the same invite always
    /// gets the same token.
    pub fn mint_invite(
        &self,
        meeting: &MeetingId,
        invite: &str,
        created_at: UnixMillis,
    ) -> Result<String, ApiError> {
        let claims = InviteClaims {
            inv: invite.to_owned(),
            meeting_id: meeting.to_string(),
            iat: created_at / 1000,
            sub: None,
        };
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &self.encoding)
            .map_err(|e| ApiError::internal(format!("cannot sign invite token: {e}")))
    }

    /// The claims of an invite token signed by this server; anything else, a participant
    /// token included, is `unauthorized`. Whether the invite still exists, or was revoked,
    /// is for storage to say.
    pub fn verify_invite(&self, token: &str) -> Result<InviteClaims, ApiError> {
        let claims =
            jsonwebtoken::decode::<InviteClaims>(token, &self.decoding, &self.invite_validation)
                .map(|data| data.claims)
                .map_err(|e| ApiError::unauthorized(format!("invalid invite token: {e}")))?;
        if claims.sub.is_some() {
            return Err(ApiError::unauthorized(
                "invalid invite token: it names a participant",
            ));
        }
        Ok(claims)
    }
}

/// The token of `Authorization: Bearer <token>`, if present.
pub fn bearer(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(axum::http::header::AUTHORIZATION)?
        .to_str()
        .ok()?
        .strip_prefix("Bearer ")
        .map(str::trim)
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;
    use onstage_proto::ErrorCode;

    #[test]
    fn tokens_round_trip_and_are_bound_to_the_secret() {
        let auth = Auth::new("k".into(), "secret", Duration::from_secs(60));
        let now = crate::rooms::now_ms();
        let token = auth
            .mint(&MeetingId::new("m"), &UserId::new("u"), 7, now)
            .expect("mint");
        let claims = auth.verify(&token).expect("verify");
        assert_eq!(
            (
                claims.sub.as_str(),
                claims.meeting_id.as_str(),
                claims.generation
            ),
            ("u", "m", 7)
        );
        let other = Auth::new("k".into(), "other", Duration::from_secs(60));
        assert!(other.verify(&token).is_err());
        assert!(auth.verify("garbage").is_err());
    }

    #[test]
    fn expired_tokens_are_refused() {
        let auth = Auth::new("k".into(), "secret", Duration::from_secs(1));
        let token = auth
            .mint(&MeetingId::new("m"), &UserId::new("u"), 0, 1_000_000)
            .expect("mint");
        let refused = auth.verify(&token).expect_err("expired");
        assert_eq!(refused.body.code, ErrorCode::TokenExpired);
        // The same token signed with another secret is not ours: refused, not "expired".
        let other = Auth::new("k".into(), "other", Duration::from_secs(1));
        assert_eq!(
            other.verify(&token).expect_err("forged").body.code,
            ErrorCode::Unauthorized
        );
    }

    #[test]
    fn tokens_without_a_generation_are_generation_zero() {
        let auth = Auth::new("k".into(), "secret", Duration::from_secs(60));
        let iat = crate::rooms::now_ms() / 1000;
        // The claims every token had before generations existed.
        let legacy = serde_json::json!({"sub":"u","meeting_id":"m","iat":iat,"exp":iat + 60});
        let token = jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            &legacy,
            &EncodingKey::from_secret(b"secret"),
        )
        .expect("sign");
        assert_eq!(auth.verify(&token).expect("verify").generation, 0);
    }

    #[test]
    fn invite_and_participant_tokens_are_never_taken_for_each_other() {
        let auth = Auth::new("k".into(), "secret", Duration::from_secs(60));
        let now = crate::rooms::now_ms();
        let meeting = MeetingId::new("m");
        let invite = auth.mint_invite(&meeting, "i1", now).expect("mint");
        assert_eq!(
            auth.mint_invite(&meeting, "i1", now).expect("mint"),
            invite,
            "the same invite, the same token"
        );
        let claims = auth.verify_invite(&invite).expect("an invite");
        assert_eq!(
            (claims.inv.as_str(), claims.meeting_id.as_str()),
            ("i1", "m")
        );
        assert_eq!(
            auth.verify(&invite)
                .expect_err("not a participant")
                .body
                .code,
            ErrorCode::Unauthorized
        );
        let personal = auth
            .mint(&meeting, &UserId::new("u"), 1, now)
            .expect("mint");
        assert_eq!(
            auth.verify_invite(&personal)
                .expect_err("not an invite")
                .body
                .code,
            ErrorCode::Unauthorized
        );
        // Signed by another server, or naming both an invite and a participant: refused.
        let other = Auth::new("k".into(), "other", Duration::from_secs(60));
        assert!(other.verify_invite(&invite).is_err());
        let both = serde_json::json!({"inv":"i1","meeting_id":"m","iat":1,"sub":"u",
                                      "exp": now / 1000 + 60});
        let both = jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            &both,
            &EncodingKey::from_secret(b"secret"),
        )
        .expect("sign");
        assert!(auth.verify_invite(&both).is_err());
    }

    #[test]
    fn admin_key_compare() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"ab"));
    }
}
