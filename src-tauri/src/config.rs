//! How the app was started: command-line arguments and environment.
//!
//! ```text
//! onstage-app                                   # the join screen
//! onstage-app --server URL --token T [--name N] # joins at start
//! onstage-app 'onstage://join?server=..&token=..[&fp=..]'   # or --invite LINK
//! ONSTAGE_AUTOSTART=host onstage-app            # embedded server, joined as host
//! ONSTAGE_SERVER / ONSTAGE_TOKEN                # same as --server / --token
//! onstage-app --data-dir DIR                   # the embedded server's data (or ONSTAGE_DATA_DIR)
//! ONSTAGE_MEDIA=synthetic                       # test pattern + tone instead of devices
//! ONSTAGE_PICTURES=rgba|jpeg                    # picture encoding (default: rgba)
//! ONSTAGE_WEBKIT_COMPOSITING=1                  # keep WebKit's GL compositing (main.rs)
//! ```

use onstage_client::link::{Fingerprint, InviteLink};

use crate::error::{Code, ErrorCode};
use crate::video::PictureKind;

/// What to do once the window is up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Startup {
    /// Show the join screen and wait.
    Idle,
    /// Join this server with this token.
    Join {
        server_url: String,
        token: String,
        name: Option<String>,
        /// The server certificate's fingerprint, from an invite link (self-signed servers).
        fingerprint: Option<Fingerprint>,
        /// The token is a role invite's (a link with `invite=`): joining needs `name`, the
        /// guest's own, and makes a participant of that name.
        guest: bool,
    },
    /// Start the embedded server and join as its host.
    Host { name: String },
}

/// Where published media comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MediaMode {
    /// The camera and microphone (a missing one is a `media-error`, not a crash).
    Devices,
    /// The synthetic test pattern and tone: tests and machines without devices.
    Synthetic,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppConfig {
    pub startup: Startup,
    pub media: MediaMode,
    pub pictures: PictureKind,
    /// The embedded server's data dir (`--data-dir`, `ONSTAGE_DATA_DIR`); `None`: `server/`
    /// in the app's data dir.
    pub data_dir: Option<std::path::PathBuf>,
}

/// A malformed argument: reported on stderr and in the UI (`app_info.start_error`), and
/// the app falls back to the join screen rather than refusing to start. `code` is
/// `bad_link` for an invite link, else `bad_request`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct ArgError {
    pub code: Code,
    pub message: String,
}

impl ArgError {
    pub fn new(code: Code, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
        }
    }
}

impl AppConfig {
    /// Reads the process's arguments and environment.
    pub fn from_env() -> (AppConfig, Option<ArgError>) {
        let args: Vec<String> = std::env::args().skip(1).collect();
        let env = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
        Self::parse(&args, env)
    }

    /// The pure part of [`AppConfig::from_env`], for tests.
    pub fn parse(
        args: &[String],
        env: impl Fn(&str) -> Option<String>,
    ) -> (AppConfig, Option<ArgError>) {
        let media = match env("ONSTAGE_MEDIA").as_deref() {
            Some("synthetic") => MediaMode::Synthetic,
            _ => MediaMode::Devices,
        };
        let pictures = match env("ONSTAGE_PICTURES").as_deref() {
            Some("jpeg") => PictureKind::Jpeg,
            _ => PictureKind::Rgba,
        };
        let mut data_dir = env("ONSTAGE_DATA_DIR").map(std::path::PathBuf::from);
        let mut rest = Vec::with_capacity(args.len());
        let mut error = None;
        let mut it = args.iter();
        while let Some(arg) = it.next() {
            if arg == "--data-dir" {
                match it.next() {
                    Some(dir) => data_dir = Some(dir.into()),
                    None => {
                        error = Some(ArgError::new(
                            Code::Sdk(ErrorCode::BadRequest),
                            "--data-dir needs a value",
                        ))
                    }
                }
            } else {
                rest.push(arg.clone());
            }
        }
        let startup = match startup(&rest, &env) {
            Ok(s) => s,
            Err(e) => {
                error = Some(e);
                Startup::Idle
            }
        };
        (
            AppConfig {
                startup,
                media,
                pictures,
                data_dir,
            },
            error,
        )
    }
}

fn startup(args: &[String], env: &impl Fn(&str) -> Option<String>) -> Result<Startup, ArgError> {
    let mut server = env("ONSTAGE_SERVER");
    let mut token = env("ONSTAGE_TOKEN");
    let mut name = env("ONSTAGE_NAME");
    let mut fingerprint = None;
    let mut guest = false;
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        let mut value = |flag: &str| {
            it.next().cloned().ok_or_else(|| {
                ArgError::new(
                    Code::Sdk(ErrorCode::BadRequest),
                    format!("{flag} needs a value"),
                )
            })
        };
        match arg.as_str() {
            "--server" => server = Some(value("--server")?),
            "--token" => token = Some(value("--token")?),
            "--name" => name = Some(value("--name")?),
            "--invite" => {
                let link = parse_invite(&value("--invite")?)?;
                (server, token) = (Some(link.server.to_string()), Some(link.token));
                fingerprint = link.fingerprint;
                guest = link.invite;
            }
            link if link.starts_with("onstage:") => {
                let link = parse_invite(link)?;
                (server, token) = (Some(link.server.to_string()), Some(link.token));
                fingerprint = link.fingerprint;
                guest = link.invite;
            }
            other => {
                return Err(ArgError::new(
                    Code::Sdk(ErrorCode::BadRequest),
                    format!("unknown argument {other:?}"),
                ))
            }
        }
    }
    match (server, token) {
        (Some(server_url), Some(token)) => Ok(Startup::Join {
            server_url,
            token,
            name,
            fingerprint,
            guest,
        }),
        (Some(_), None) | (None, Some(_)) => Err(ArgError::new(
            Code::Sdk(ErrorCode::BadRequest),
            "--server and --token go together (or pass an invite link)",
        )),
        (None, None) if env("ONSTAGE_AUTOSTART").as_deref() == Some("host") => Ok(Startup::Host {
            name: name.unwrap_or_else(|| "Host".into()),
        }),
        (None, None) => Ok(Startup::Idle),
    }
}

/// An invite link through the SDK's parser.
fn parse_invite(link: &str) -> Result<InviteLink, ArgError> {
    InviteLink::parse(link).map_err(|e| ArgError::new(Code::Sdk(ErrorCode::BadLink), e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(a: &[&str]) -> Vec<String> {
        a.iter().map(|s| s.to_string()).collect()
    }

    fn link(server: &str, token: &str, fingerprint: Option<Fingerprint>) -> String {
        InviteLink::new(server.parse().unwrap(), token, fingerprint)
            .unwrap()
            .to_string()
    }

    #[test]
    fn invite_links_start_a_join_with_their_fingerprint() {
        let fp: Fingerprint = format!("sha256:{}", "ab".repeat(32)).parse().unwrap();
        let none = |_: &str| None;
        let (c, e) = AppConfig::parse(&args(&[&link("https://h:8443", "a.b+c=", Some(fp))]), none);
        assert_eq!(e, None);
        assert_eq!(
            c.startup,
            Startup::Join {
                server_url: "https://h:8443/".into(),
                token: "a.b+c=".into(),
                name: None,
                fingerprint: Some(fp),
                guest: false,
            }
        );
        // A role link: the guest's name comes with it (--name, or ONSTAGE_NAME).
        let role = InviteLink::role("https://h:8443".parse().unwrap(), "inv", Some(fp))
            .unwrap()
            .to_string();
        let (c, e) = AppConfig::parse(&args(&[&role, "--name", "Ann"]), none);
        assert_eq!(e, None);
        assert_eq!(
            c.startup,
            Startup::Join {
                server_url: "https://h:8443/".into(),
                token: "inv".into(),
                name: Some("Ann".into()),
                fingerprint: Some(fp),
                guest: true,
            }
        );
        let (c, _) = AppConfig::parse(
            &args(&["--invite", &link("http://h", "t", None), "--name", "N"]),
            none,
        );
        assert!(matches!(
            c.startup,
            Startup::Join {
                fingerprint: None,
                name: Some(_),
                ..
            }
        ));
        for bad in [
            "onstage://join?server=a",
            "onstage://join?server=http%3A%2F%2Fh",
            "onstage:nothing",
        ] {
            let (c, e) = AppConfig::parse(&args(&[bad]), none);
            assert_eq!(c.startup, Startup::Idle);
            assert_eq!(
                e.map(|e| e.code),
                Some(Code::Sdk(ErrorCode::BadLink)),
                "{bad}"
            );
        }
        let (_, e) = AppConfig::parse(&args(&["--invite", "https://x/?server=a&token=b"]), none);
        assert!(e.is_some());
    }

    #[test]
    fn arguments_and_environment() {
        let none = |_: &str| None;
        let (c, e) = AppConfig::parse(&[], none);
        assert_eq!(
            (c.startup, c.media, c.pictures, e, c.data_dir),
            (
                Startup::Idle,
                MediaMode::Devices,
                PictureKind::Rgba,
                None,
                None
            )
        );
        let (c, e) = AppConfig::parse(
            &args(&["--data-dir", "/d", "--server", "s", "--token", "t"]),
            |k: &str| (k == "ONSTAGE_DATA_DIR").then(|| "/env".to_string()),
        );
        assert_eq!(e, None);
        assert_eq!(c.data_dir, Some("/d".into()));
        assert!(matches!(c.startup, Startup::Join { .. }));
        let (c, _) = AppConfig::parse(&[], |k: &str| {
            (k == "ONSTAGE_DATA_DIR").then(|| "/env".to_string())
        });
        assert_eq!(c.data_dir, Some("/env".into()));
        let (_, e) = AppConfig::parse(&args(&["--data-dir"]), none);
        assert_eq!(e.map(|e| e.code), Some(Code::Sdk(ErrorCode::BadRequest)));

        let (c, e) = AppConfig::parse(&args(&["--server", "http://s", "--token", "t"]), none);
        assert_eq!(e, None);
        assert_eq!(
            c.startup,
            Startup::Join {
                server_url: "http://s".into(),
                token: "t".into(),
                name: None,
                fingerprint: None,
                guest: false,
            }
        );

        let link = link("http://s", "t", None);
        let (c, _) = AppConfig::parse(&args(&[&link]), none);
        assert!(matches!(c.startup, Startup::Join { .. }));

        let env = |k: &str| match k {
            "ONSTAGE_AUTOSTART" => Some("host".to_string()),
            "ONSTAGE_MEDIA" => Some("synthetic".to_string()),
            "ONSTAGE_PICTURES" => Some("jpeg".to_string()),
            _ => None,
        };
        let (c, _) = AppConfig::parse(&[], env);
        assert_eq!(
            c.startup,
            Startup::Host {
                name: "Host".into()
            }
        );
        assert_eq!(
            (c.media, c.pictures),
            (MediaMode::Synthetic, PictureKind::Jpeg)
        );

        let (c, e) = AppConfig::parse(&args(&["--server", "http://s"]), none);
        assert_eq!(c.startup, Startup::Idle);
        assert!(e.is_some());
        let (_, e) = AppConfig::parse(&args(&["--token"]), none);
        assert!(e.is_some());
    }
}
