//! Invite links and certificate fingerprints: the one place they are built and read.
//!
//! An invite link names a server, a participant token and, for a server with a
//! self-signed certificate, that certificate's SHA-256 fingerprint:
//!
//! ```text
//! onstage://join?server=https%3A%2F%2F192.168.1.20%3A8443&token=eyJ...&fp=sha256:3f9a...
//! ```
//!
//! The server puts one in every participant it adds (`"link"`), the desktop app opens
//! them, `onstage bot --link` joins with them.
//!
//! A role link, one for a whole meeting and a preset (`POST /v1/meetings/{id}/invites`),
//! carries its invite token as `invite=` instead of `token=`:
//!
//! ```text
//! onstage://join?server=https%3A%2F%2F192.168.1.20%3A8443&invite=eyJ...&fp=sha256:3f9a...
//! ```
//!
//! so a client knows before connecting that it must ask the guest for a name (the server
//! makes a participant of that name for each join). The key says it rather than the token,
//! which a client cannot read; the server tells the two kinds of token apart on its own.
//!
//! The same invitation opened in a browser is a **web link**: the page the server serves at
//! `/join`, the token in the fragment (so it never reaches a request line or a log):
//!
//! ```text
//! https://192.168.1.20:8443/join#token=eyJ...        (a role link: #invite=eyJ...)
//! ```
//!
//! It carries no fingerprint: a browser decides on its own whether to trust the server's
//! certificate. [`InviteLink::web_link`] writes it and [`InviteLink::parse`] reads it too, so
//! the app and `onstage bot --link` accept either form.
//!
//! These types live in the wire crate because both sides need them and the server does not
//! depend on the SDK; the SDK re-exports them as `onstage_client::link`.
//!
//! A fingerprint is written `sha256:` followed by the 64 lowercase hex digits of the
//! SHA-256 of the certificate's DER bytes (what [`Fingerprint`]'s `Display` prints). On
//! input the digits may also be uppercase and in colon-separated pairs, the form
//! `openssl x509 -fingerprint -sha256` shows (`sha256:3F:9A:...`); the `sha256:` prefix is
//! required so that the algorithm is never guessed.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use url::Url;

use crate::error::ErrorCode;

/// The SHA-256 fingerprint of a certificate (of its DER encoding).
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Fingerprint([u8; 32]);

/// Why a fingerprint could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FingerprintError {
    #[error("a fingerprint starts with \"sha256:\"")]
    MissingPrefix,
    #[error("a sha256 fingerprint has 64 hex digits, this one has {0}")]
    Length(usize),
    #[error("a fingerprint holds hex digits (optionally in colon-separated pairs)")]
    NotHex,
}

impl Fingerprint {
    /// The prefix naming the algorithm.
    pub const PREFIX: &'static str = "sha256:";

    /// A fingerprint from a SHA-256 digest (hashing is left to the crates that link a
    /// crypto library).
    pub fn from_sha256(digest: [u8; 32]) -> Self {
        Self(digest)
    }

    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// The `sha256:AA:BB:...` form (uppercase, colon-separated), as OpenSSL prints it.
    pub fn to_colon_hex(&self) -> String {
        let pairs: Vec<String> = self.0.iter().map(|b| format!("{b:02X}")).collect();
        format!("{}{}", Self::PREFIX, pairs.join(":"))
    }
}

impl fmt::Display for Fingerprint {
    /// `sha256:` + 64 lowercase hex digits: the canonical form.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(Self::PREFIX)?;
        for b in self.0 {
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Fingerprint({self})")
    }
}

impl FromStr for Fingerprint {
    type Err = FingerprintError;

    /// `sha256:<64 hex>` or `sha256:AA:BB:...` (32 pairs); case does not matter.
    fn from_str(text: &str) -> Result<Self, FingerprintError> {
        let text = text.trim();
        let prefix = text
            .get(..Self::PREFIX.len())
            .filter(|p| p.eq_ignore_ascii_case(Self::PREFIX))
            .ok_or(FingerprintError::MissingPrefix)?;
        let rest = &text[prefix.len()..];
        let digits: String = if rest.contains(':') {
            // Pairs: every group exactly two digits, so "A:BB:..." or "AB::CD" are refused.
            if !rest.split(':').all(|pair| pair.len() == 2) {
                return Err(FingerprintError::NotHex);
            }
            rest.split(':').collect()
        } else {
            rest.to_owned()
        };
        if !digits.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(FingerprintError::NotHex);
        }
        if digits.len() != 64 {
            return Err(FingerprintError::Length(digits.len()));
        }
        let mut out = [0u8; 32];
        for (i, byte) in out.iter_mut().enumerate() {
            *byte = u8::from_str_radix(&digits[2 * i..2 * i + 2], 16)
                .map_err(|_| FingerprintError::NotHex)?;
        }
        Ok(Self(out))
    }
}

impl Serialize for Fingerprint {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Fingerprint {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// `onstage://join?server=<url>&token=<t>[&fp=sha256:<hex>]`, parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InviteLink {
    /// The server's base URL, `http://` or `https://`.
    pub server: Url,
    /// The participant token, or with [`InviteLink::invite`] the role invite token.
    pub token: String,
    /// A role link (`invite=`): joining needs the guest's display name, and the server
    /// answers with a personal token of the participant it makes.
    pub invite: bool,
    /// The server certificate's fingerprint, for a server whose certificate no public
    /// authority vouches for (self-signed). Only with an `https` server.
    pub fingerprint: Option<Fingerprint>,
}

/// What is wrong with an invite link. Every variant has the code `bad_link`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LinkError {
    #[error("not an invite link: {0}")]
    Unparseable(String),
    #[error("an invite link is onstage://join?.. or https://HOST/join#token=.., not {0:?}")]
    NotOnstage(String),
    #[error("the invite link has no server (server=...)")]
    MissingServer,
    #[error("the invite link has no token (token=...)")]
    MissingToken,
    #[error("the invite link has both a token and an invite (token=..., invite=...)")]
    TokenAndInvite,
    #[error("the invite link names {0} more than once")]
    Repeated(&'static str),
    #[error("the invite link's server is not a URL: {0}")]
    BadServer(String),
    #[error("the invite link's server must be http:// or https://, not {0:?}")]
    ServerScheme(String),
    #[error("the invite link's fingerprint: {0}")]
    BadFingerprint(#[from] FingerprintError),
    #[error("a certificate fingerprint needs an https:// server, not {0}")]
    FingerprintWithoutTls(String),
}

impl LinkError {
    /// The stable code: `bad_link`, whatever the cause (the message names it). Not
    /// `bad_request` as for a refused call: nothing was sent, and the user, not the
    /// program, has to fix it.
    pub fn code(&self) -> ErrorCode {
        ErrorCode::BadLink
    }
}

impl InviteLink {
    /// A link, checked as [`InviteLink::parse`] would check it.
    pub fn new(
        server: Url,
        token: impl Into<String>,
        fingerprint: Option<Fingerprint>,
    ) -> Result<Self, LinkError> {
        let token = token.into();
        check_server(&server, fingerprint.is_some())?;
        if token.is_empty() {
            return Err(LinkError::MissingToken);
        }
        Ok(Self {
            server,
            token,
            invite: false,
            fingerprint,
        })
    }

    /// A role link (`invite=`) carrying an invite token, checked as [`InviteLink::new`].
    pub fn role(
        server: Url,
        invite_token: impl Into<String>,
        fingerprint: Option<Fingerprint>,
    ) -> Result<Self, LinkError> {
        Ok(Self {
            invite: true,
            ..Self::new(server, invite_token, fingerprint)?
        })
    }

    /// Reads a link, the app's (`onstage://join?..`) or the browser's (`https://HOST/join#..`);
    /// every way it can be malformed or truncated is a [`LinkError`].
    pub fn parse(link: &str) -> Result<Self, LinkError> {
        let url = Url::parse(link.trim()).map_err(|e| LinkError::Unparseable(e.to_string()))?;
        if let Some(page) = web_page(&url) {
            return Self::parse_web(&url, page);
        }
        if url.scheme() != "onstage" || url.host_str() != Some("join") {
            let shown: String = link.trim().chars().take(40).collect();
            return Err(LinkError::NotOnstage(shown));
        }
        let one = |key: &'static str| -> Result<Option<String>, LinkError> {
            let mut values = url.query_pairs().filter(|(k, _)| k == key).map(|(_, v)| v);
            let first = values.next().map(|v| v.into_owned());
            if values.next().is_some() {
                return Err(LinkError::Repeated(key));
            }
            Ok(first.filter(|v| !v.trim().is_empty()))
        };
        let server = one("server")?.ok_or(LinkError::MissingServer)?;
        let (token, invite) = match (one("token")?, one("invite")?) {
            (Some(token), None) => (token, false),
            (None, Some(invite)) => (invite, true),
            (Some(_), Some(_)) => return Err(LinkError::TokenAndInvite),
            (None, None) => return Err(LinkError::MissingToken),
        };
        let fingerprint = one("fp")?.map(|fp| fp.parse()).transpose()?;
        let server = Url::parse(server.trim())
            .map_err(|e| LinkError::BadServer(format!("{server:?}: {e}")))?;
        if invite {
            Self::role(server, token, fingerprint)
        } else {
            Self::new(server, token, fingerprint)
        }
    }
}

impl InviteLink {
    /// The browser's form of this link: the server's `/join` page with `#token=` (or
    /// `#invite=`) in the fragment, encoded as in the app's link. The fingerprint stays out:
    /// a page cannot pin a certificate.
    pub fn web_link(&self) -> String {
        let mut fragment = url::form_urlencoded::Serializer::new(String::new());
        fragment.append_pair(self.key(), &self.token);
        format!(
            "{}/{WEB_PAGE}#{}",
            bare_server(&self.server).trim_end_matches('/'),
            fragment.finish()
        )
    }

    /// `token` or `invite`: the key the token goes by in both forms of link.
    fn key(&self) -> &'static str {
        if self.invite {
            "invite"
        } else {
            "token"
        }
    }

    /// A web link (`http(s)://HOST[/path]/join#token=..`): the server is the address before
    /// `/join`, the token in the fragment.
    fn parse_web(url: &Url, page: usize) -> Result<Self, LinkError> {
        let mut server = url.clone();
        server.set_fragment(None);
        server.set_query(None);
        let base = format!("{}/", &url.path()[..page]);
        server.set_path(&base);
        let fragment = url.fragment().unwrap_or_default();
        let one = |key: &'static str| -> Result<Option<String>, LinkError> {
            let mut values = url::form_urlencoded::parse(fragment.as_bytes())
                .filter(|(k, _)| k == key)
                .map(|(_, v)| v);
            let first = values.next().map(|v| v.into_owned());
            if values.next().is_some() {
                return Err(LinkError::Repeated(key));
            }
            Ok(first.filter(|v| !v.trim().is_empty()))
        };
        match (one("token")?, one("invite")?) {
            (Some(token), None) => Self::new(server, token, None),
            (None, Some(invite)) => Self::role(server, invite, None),
            (Some(_), Some(_)) => Err(LinkError::TokenAndInvite),
            (None, None) => Err(LinkError::MissingToken),
        }
    }
}

/// The path of the page a server serves browsers (`GET /join`).
pub const WEB_PAGE: &str = "join";

/// Where `/join` starts in an http(s) URL's path that ends with it (or `/join/`): that URL
/// is a web link.
fn web_page(url: &Url) -> Option<usize> {
    if !matches!(url.scheme(), "http" | "https") {
        return None;
    }
    let path = url.path().strip_suffix('/').unwrap_or(url.path());
    path.strip_suffix(WEB_PAGE)
        .filter(|rest| rest.ends_with('/'))
        .map(|rest| rest.len() - 1)
}

/// A server URL as links write it: without the trailing `/` that URL parsing adds to a bare
/// host (and whole when anything follows that `/`).
fn bare_server(server: &Url) -> String {
    let mut text = server.to_string();
    if server.path() == "/" && server.query().is_none() && server.fragment().is_none() {
        text.pop();
    }
    text
}

/// An http(s) URL with a host; a fingerprint only with https.
fn check_server(server: &Url, pinned: bool) -> Result<(), LinkError> {
    match server.scheme() {
        "https" => {}
        "http" if pinned => return Err(LinkError::FingerprintWithoutTls(server.to_string())),
        "http" => {}
        other => return Err(LinkError::ServerScheme(other.to_owned())),
    }
    if server.host_str().is_none_or(str::is_empty) {
        return Err(LinkError::BadServer(format!("{server} has no host")));
    }
    Ok(())
}

impl FromStr for InviteLink {
    type Err = LinkError;

    fn from_str(link: &str) -> Result<Self, LinkError> {
        Self::parse(link)
    }
}

impl fmt::Display for InviteLink {
    /// `onstage://join?server=..&token=..[&fp=..]` (`invite=` for a role link), every
    /// value query-encoded, the server URL as [`bare_server`] writes it.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut query = url::form_urlencoded::Serializer::new(String::new());
        query.append_pair("server", &bare_server(&self.server));
        query.append_pair(self.key(), &self.token);
        if let Some(fp) = &self.fingerprint {
            query.append_pair("fp", &fp.to_string());
        }
        write!(f, "onstage://join?{}", query.finish())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEX: &str = "3f9a00112233445566778899aabbccddeeff00112233445566778899aabbccdd";

    fn fp() -> Fingerprint {
        format!("sha256:{HEX}").parse().unwrap()
    }

    #[test]
    fn fingerprint_formats_and_parses_both_forms() {
        let fp = fp();
        assert_eq!(fp.to_string(), format!("sha256:{HEX}"));
        assert_eq!(fp.as_bytes()[0], 0x3f);
        let colon = fp.to_colon_hex();
        assert!(colon.starts_with("sha256:3F:9A:00:11:"), "{colon}");
        assert_eq!(colon.len(), "sha256:".len() + 32 * 3 - 1);
        assert_eq!(colon.parse::<Fingerprint>(), Ok(fp));
        assert_eq!(format!("SHA256:{}", HEX.to_uppercase()).parse(), Ok(fp));
        assert_eq!(format!("  sha256:{HEX}\n").parse(), Ok(fp));
        assert_eq!(Fingerprint::from_sha256(*fp.as_bytes()), fp);
        let json = serde_json::to_string(&fp).unwrap();
        assert_eq!(json, format!("\"sha256:{HEX}\""));
        assert_eq!(serde_json::from_str::<Fingerprint>(&json).unwrap(), fp);
    }

    #[test]
    fn malformed_fingerprints_say_what_is_wrong() {
        use FingerprintError::*;
        let parse = |s: &str| s.parse::<Fingerprint>();
        assert_eq!(parse(HEX), Err(MissingPrefix));
        assert_eq!(parse(&format!("sha1:{HEX}")), Err(MissingPrefix));
        assert_eq!(parse(""), Err(MissingPrefix));
        assert_eq!(parse("sha256:"), Err(Length(0)));
        assert_eq!(parse(&format!("sha256:{}", &HEX[..40])), Err(Length(40)));
        assert_eq!(parse(&format!("sha256:{HEX}00")), Err(Length(66)));
        assert_eq!(parse(&format!("sha256:{}zz", &HEX[..62])), Err(NotHex));
        assert_eq!(parse("sha256:3F:9A:0"), Err(NotHex));
        assert_eq!(parse("sha256:3F::9A"), Err(NotHex));
        assert_eq!(parse(&format!("sha256:{}é", &HEX[..63])), Err(NotHex));
        assert!(serde_json::from_str::<Fingerprint>("\"sha256:00\"").is_err());
    }

    #[test]
    fn links_round_trip() {
        let server = Url::parse("https://192.168.1.20:8443").unwrap();
        let link = InviteLink::new(server.clone(), "a.b+c=&d", Some(fp())).unwrap();
        let text = link.to_string();
        assert_eq!(
            text,
            format!(
                "onstage://join?server=https%3A%2F%2F192.168.1.20%3A8443&token=a.b%2Bc%3D%26d&fp=sha256%3A{HEX}"
            )
        );
        assert_eq!(InviteLink::parse(&text), Ok(link.clone()));
        assert_eq!(text.parse::<InviteLink>(), Ok(link));

        // No fingerprint, a path under the server, and a literal ':' in fp are all fine.
        let plain = InviteLink::new(
            Url::parse("http://example.com/onstage/").unwrap(),
            "t",
            None,
        )
        .unwrap();
        assert_eq!(InviteLink::parse(&plain.to_string()), Ok(plain));
        let literal = format!("onstage://join?server=https://h:1&token=t&fp=sha256:{HEX}");
        assert_eq!(InviteLink::parse(&literal).unwrap().fingerprint, Some(fp()));
    }

    #[test]
    fn web_links_round_trip_and_carry_no_fingerprint() {
        let server = Url::parse("https://192.168.1.20:8443").unwrap();
        let link = InviteLink::new(server.clone(), "a.b+c=&d", Some(fp())).unwrap();
        let web = link.web_link();
        assert_eq!(web, "https://192.168.1.20:8443/join#token=a.b%2Bc%3D%26d");
        let read = InviteLink::parse(&web).unwrap();
        assert_eq!(
            read,
            InviteLink {
                fingerprint: None,
                ..link
            }
        );

        let role = InviteLink::role(server, "eyJ.x", None).unwrap();
        assert_eq!(
            role.web_link(),
            "https://192.168.1.20:8443/join#invite=eyJ.x"
        );
        assert_eq!(InviteLink::parse(&role.web_link()), Ok(role));

        // A server under a path keeps it; `/join/` reads as `/join`; plain http is fine.
        let under = InviteLink::new(Url::parse("http://h:1/onstage/").unwrap(), "t", None).unwrap();
        assert_eq!(under.web_link(), "http://h:1/onstage/join#token=t");
        assert_eq!(InviteLink::parse(&under.web_link()), Ok(under.clone()));
        assert_eq!(
            InviteLink::parse("http://h:1/onstage/join/#token=t"),
            Ok(under)
        );
    }

    #[test]
    fn malformed_web_links_say_what_is_wrong() {
        use LinkError::*;
        let parse = InviteLink::parse;
        assert_eq!(parse("https://h/join"), Err(MissingToken));
        assert_eq!(parse("https://h/join#token="), Err(MissingToken));
        // A token in the query would reach request lines and logs: only the fragment counts.
        assert_eq!(parse("https://h/join?token=t"), Err(MissingToken));
        assert_eq!(
            parse("https://h/join#token=a&invite=b"),
            Err(TokenAndInvite)
        );
        assert_eq!(
            parse("https://h/join#token=a&token=b"),
            Err(Repeated("token"))
        );
        assert!(matches!(
            parse("https://h/rejoin#token=t"),
            Err(NotOnstage(_))
        ));
        assert!(matches!(
            parse("https://h/joined#token=t"),
            Err(NotOnstage(_))
        ));
        assert!(matches!(parse("ftp://h/join#token=t"), Err(NotOnstage(_))));
    }

    #[test]
    fn malformed_links_say_what_is_wrong() {
        use LinkError::*;
        let parse = InviteLink::parse;
        let good = format!("onstage://join?server=https%3A%2F%2Fh%3A1&token=t&fp=sha256:{HEX}");
        assert!(parse(&good).is_ok());
        assert!(matches!(parse("not a link"), Err(Unparseable(_))));
        assert!(matches!(parse(""), Err(Unparseable(_))));
        assert!(matches!(
            parse("https://h/?server=http://a&token=b"),
            Err(NotOnstage(_))
        ));
        assert!(matches!(
            parse("onstage://leave?server=http://a&token=b"),
            Err(NotOnstage(_))
        ));
        assert_eq!(parse("onstage://join?token=t"), Err(MissingServer));
        assert_eq!(parse("onstage://join?server=&token=t"), Err(MissingServer));
        assert_eq!(parse("onstage://join?server=http://h"), Err(MissingToken));
        assert_eq!(parse("onstage://join"), Err(MissingServer));
        // Cut off in the middle of the token's name, or of the fingerprint.
        assert_eq!(
            parse(&good[..good.find("&token").unwrap() + 4]),
            Err(MissingToken)
        );
        assert_eq!(
            parse(&good[..good.len() - 10]),
            Err(BadFingerprint(FingerprintError::Length(54)))
        );
        assert_eq!(
            parse("onstage://join?server=http://a&server=http://b&token=t"),
            Err(Repeated("server"))
        );
        assert!(matches!(
            parse("onstage://join?server=no%20url&token=t"),
            Err(BadServer(_))
        ));
        assert_eq!(
            parse("onstage://join?server=ftp://h&token=t"),
            Err(ServerScheme("ftp".into()))
        );
        assert_eq!(
            parse("onstage://join?server=ws://h&token=t"),
            Err(ServerScheme("ws".into()))
        );
        assert_eq!(
            parse("onstage://join?server=https://h&token=t&fp=md5:00"),
            Err(BadFingerprint(FingerprintError::MissingPrefix))
        );
        assert!(matches!(
            parse(&format!(
                "onstage://join?server=http://h&token=t&fp=sha256:{HEX}"
            )),
            Err(FingerprintWithoutTls(_))
        ));
        for e in [MissingServer, MissingToken, NotOnstage("x".into())] {
            assert_eq!(e.code(), ErrorCode::BadLink);
        }
    }

    #[test]
    fn role_links_say_invite_and_round_trip() {
        let server = Url::parse("https://h:8443").unwrap();
        let link = InviteLink::role(server.clone(), "inv.tok", Some(fp())).unwrap();
        assert!(link.invite);
        let text = link.to_string();
        assert_eq!(
            text,
            format!(
                "onstage://join?server=https%3A%2F%2Fh%3A8443&invite=inv.tok&fp=sha256%3A{HEX}"
            )
        );
        assert_eq!(InviteLink::parse(&text), Ok(link));
        // A personal link is not a role link, and a link is one or the other.
        assert!(
            !InviteLink::parse("onstage://join?server=http://h&token=t")
                .unwrap()
                .invite
        );
        assert_eq!(
            InviteLink::parse("onstage://join?server=http://h&token=t&invite=i"),
            Err(LinkError::TokenAndInvite)
        );
        assert_eq!(
            InviteLink::parse("onstage://join?server=http://h&invite="),
            Err(LinkError::MissingToken)
        );
        assert_eq!(
            InviteLink::parse("onstage://join?server=http://h&invite=a&invite=b"),
            Err(LinkError::Repeated("invite"))
        );
        assert_eq!(
            InviteLink::role(server, "", None),
            Err(LinkError::MissingToken)
        );
    }

    #[test]
    fn a_server_with_a_query_or_fragment_writes_out_whole() {
        for server in [
            "http://h/#A081",
            "http://h/#",
            "https://h/?x=1",
            "https://h/?",
        ] {
            let link = InviteLink::new(Url::parse(server).unwrap(), "t", None).unwrap();
            let again = InviteLink::parse(&link.to_string()).unwrap();
            assert_eq!(again, link, "{server}");
        }
        let bare = InviteLink::new(Url::parse("http://h").unwrap(), "t", None).unwrap();
        assert_eq!(
            bare.to_string(),
            "onstage://join?server=http%3A%2F%2Fh&token=t"
        );
    }
}
