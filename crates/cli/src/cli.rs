//! The command line, as clap sees it. Kept apart from the commands so parsing can be tested
//! on its own.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

use onstage_proto::{Fingerprint, StageAccess};

#[derive(Debug, Parser)]
#[command(
    name = "onstage",
    version,
    about = "Onstage: serve meetings, administer them, and take part as a scripted bot.",
    long_about = "Onstage: serve meetings, administer them, and take part as a scripted bot.\n\n\
        Everything printed on stdout is JSON, one object a line; logs go to stderr \
        (RUST_LOG sets the level). Failures print {\"ok\":false,\"error\":{\"code\":..,\"message\":..}} \
        on stdout and exit with status 1."
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the server: REST admin API, WebSocket signaling, storage.
    ///
    /// Prints {"event":"listening","http":"http://IP:PORT","public_url":..} once ready
    /// ("https://" with TLS), with "fingerprint":"sha256:<hex>" for a self-signed
    /// certificate, and "admin_key" when the key did not come from ONSTAGE_ADMIN_KEY
    /// (generated, or kept in the data dir). Ctrl-C or SIGTERM shuts it down gracefully.
    Serve(Box<ServeArgs>),
    /// Meetings (admin API).
    #[command(subcommand)]
    Meeting(MeetingCommand),
    /// Participants of a meeting (admin API).
    #[command(subcommand)]
    Participant(ParticipantCommand),
    /// Presets (admin API).
    #[command(subcommand)]
    Preset(PresetCommand),
    /// Role invites of a meeting: one link per preset, each guest joining under a name of
    /// their own (admin API).
    #[command(subcommand)]
    Invite(InviteCommand),
    /// Join a meeting and take calls as JSON lines on stdin.
    #[command(long_about = BOT_HELP)]
    Bot(BotArgs),
    /// Benchmark: join N participants to one meeting and measure how long a stage change
    /// takes to reach all of them, and the server's memory per idle participant.
    LoadTest(LoadTestArgs),
    /// List the cameras, microphones and speakers this machine has: one line each,
    /// {"kind":"camera"|"microphone"|"speaker","id":..,"name":..}. The id or the name is
    /// what `bot --camera/--mic/--speaker` take. A device system that cannot be queried
    /// prints an error line ({"ok":false,"error":{"code":..,"device":..}}) and the
    /// command exits with status 1 after listing the others.
    Devices,
}

const BOT_HELP: &str = "\
Join a meeting with a participant token and take calls as JSON lines on stdin.

Once joined it prints {\"event\":\"joined\",\"user_id\":..,\"peer_id\":..}. Then every stdin line
is one call, {\"id\":N,\"call\":NAME,...}, answered by exactly one line with the same id:
{\"id\":N,\"ok\":true,\"result\":..} or {\"id\":N,\"ok\":false,\"error\":{\"code\":..,\"message\":..}}.

Calls and their results:
  stage.getAccessRequests        [{\"user_id\",\"name\",\"requested_at\"}, ...] oldest first
  stage.requestAccess            {\"status\":STATUS} (the caller's new stage status)
  stage.cancelRequestAccess      {\"status\":STATUS}
  stage.grantAccess   user_ids   null
  stage.denyAccess    user_ids   null
  stage.join                     {\"status\":STATUS}
  stage.leave                    {\"status\":STATUS}
  stage.kick          user_ids   null
  stage.status                   {\"status\":STATUS} (local, no round trip)
  participants.list              [{\"user_id\",\"name\",\"preset\",\"stage_status\"}, ...] everyone,
                                 the bot included, in join order
  media.stats                    {\"publishing\":{\"audio\":bool,\"video\":bool},
                                  \"layers\":[{\"rid\",\"width\",\"height\",\"bitrate_bps\" (0: paused),
                                  \"frames_encoded\",\"bytes_encoded\",\"keyframes\"}, ..] (published),
                                  \"received\":{USER_ID:{\"video_frames\":N,\"audio_frames\":N,
                                  \"width\":N,\"height\":N,\"fps\":F (last second),
                                  \"freezes\":N,\"longest_freeze_ms\":N,
                                  \"reception\":\"good\"|\"fair\"|\"poor\" (once known),..}}}
  media.tiles         tiles      null; tiles [{\"user_id\",\"width\",\"height\"}, ..]: how large the
                                 bot shows each stage video (--tiles tells it for every one)
  meeting.leave                  null; the bot then exits with status 0

A line that is not JSON or names no known call gets {\"ok\":false,\"error\":{\"code\":\"bad_request\",..}}
(with the id when it could be read) and the bot carries on. Errors from the server carry its
codes (permission_denied, invalid_state, not_found, stage_full, meeting_full, bad_request,
rate_limited);
calls made while the connection is down get connection_lost.

Events are printed as they happen, one line each, with an \"event\" key: stageStatusUpdate,
stageAccessRequestUpdate, newStageRequest, stageRequestApproved, stageRequestRejected,
participantStageStatus, participantJoined, participantLeft, participantConnection,
connectionStateUpdate. With media, a device it cannot use is
{\"event\":\"mediaError\",\"device\":\"camera\"|\"microphone\"|\"speaker\",\"code\":..,\"message\":..}:
device_not_found, device_busy, device_error, or device_lost for a microphone or speaker that
went away mid-call (told once; it is opened again with a back-off, and the stage goes on).
The last connectionStateUpdate, {\"state\":\"disconnected\"}, says why when
the server ended the session for good, in \"reason\": left, replaced (the same token joined
elsewhere), revoked (a newer token was issued), removed (an admin removed the participant)
or meeting_deleted; the bot never reconnects after those.

End of input (or Ctrl-C / SIGTERM) leaves the meeting and exits with status 0.";

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Address to listen on, e.g. 127.0.0.1:8080 (port 0 picks a free port).
    #[arg(long, value_name = "ADDR")]
    pub listen: SocketAddr,
    /// Directory for the database, the admin key and the token secret.
    #[arg(long, value_name = "DIR")]
    pub data: PathBuf,
    /// How long a dropped participant keeps its stage status and queue place, in ms.
    #[arg(long, value_name = "N")]
    pub grace_ms: Option<u64>,
    /// How long participant tokens stay valid, in seconds.
    #[arg(long, value_name = "N")]
    pub token_ttl_secs: Option<u64>,
    /// Default most participants on stage at once, for meetings that do not set it.
    #[arg(long, value_name = "N")]
    pub max_on_stage: Option<u32>,
    /// Most participants a meeting holds before its role links let nobody new in
    /// (meeting_full; default 10000).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    pub max_participants: Option<u32>,
    /// Where the SFU's media socket binds, UDP and ICE-TCP on the same port (default: the
    /// listen IP, a free port). A wildcard (0.0.0.0, or :: for IPv6 and IPv4) serves every
    /// interface and offers each interface's address.
    #[arg(long, value_name = "ADDR")]
    pub media_udp: Option<SocketAddr>,
    /// The public IP of a server behind 1:1 NAT (a cloud VM): announced in place of the
    /// interfaces' private addresses (repeatable, one per address family). Forward the
    /// media port, UDP and TCP, unchanged to this machine.
    #[arg(long, value_name = "IP")]
    pub media_ip: Vec<std::net::IpAddr>,
    /// Do not accept media over TCP (ICE-TCP), only UDP.
    #[arg(long)]
    pub no_media_tcp: bool,
    /// A TURN relay for guests that reach nothing else, e.g. turn:turn.example.org:3478
    /// (repeatable; UDP). Needs --turn-secret.
    #[arg(long, value_name = "URL", requires = "turn_secret")]
    pub turn_url: Vec<String>,
    /// The relay's shared secret (coturn's static-auth-secret); each participant gets
    /// credentials minted from it (the TURN REST API).
    #[arg(
        long,
        value_name = "SECRET",
        env = "ONSTAGE_TURN_SECRET",
        hide_env_values = true,
        requires = "turn_url"
    )]
    pub turn_secret: Option<String>,
    /// Serve https/wss with this PEM certificate chain (leaf first); needs --tls-key.
    #[arg(
        long,
        value_name = "FILE",
        requires = "tls_key",
        conflicts_with = "tls_self_signed"
    )]
    pub tls_cert: Option<PathBuf>,
    /// The PEM private key of --tls-cert.
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// Serve https/wss with a self-signed certificate for this machine's names and
    /// addresses, made once and kept in the data dir. Clients pin it by the fingerprint
    /// the ready line prints and invite links carry.
    #[arg(long)]
    pub tls_self_signed: bool,
    /// The server's URL as invitees reach it, named by invite links (default: the listen
    /// address, https with TLS; loopback for a wildcard address).
    #[arg(long, value_name = "URL")]
    pub public_url: Option<url::Url>,
    /// Open HTTP connections at most, WebSockets included; more get a fast 503 (default:
    /// sized from the open-files limit).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    pub max_connections: Option<u32>,
    /// Open HTTP connections from one address (an IPv6 /64) at most (default 256).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    pub max_connections_per_source: Option<u32>,
    /// Hold loopback connections to --max-connections-per-source too (by default this
    /// machine's own clients are not).
    #[arg(long)]
    pub limit_loopback: bool,
    /// How long a client may take to send a request's head, also the idle time allowed
    /// between requests, in ms (default 10000).
    #[arg(long, value_name = "MS", value_parser = clap::value_parser!(u64).range(100..))]
    pub header_timeout_ms: Option<u64>,
    /// Room-wide changes one participant may cause at once before it must wait for the
    /// budget to refill, one a second (default 20).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    pub broadcast_burst: Option<u32>,
    /// Join a cluster of nodes on this Redis (`redis://HOST:PORT`): the node registers
    /// itself with its public URL and load, and holds the home lock of every meeting it
    /// runs. Without it the server is a node on its own.
    #[arg(long, value_name = "URL", requires = "node_id")]
    pub redis: Option<String>,
    /// This node's name in the cluster: 1 to 64 of A-Z a-z 0-9 . _ - (with --redis).
    #[arg(long, value_name = "ID", requires = "redis")]
    pub node_id: Option<String>,
    /// How long the node's registration lives unless refreshed, in ms; refreshed three
    /// times within it (default 6000).
    #[arg(long, value_name = "MS", requires = "redis", value_parser = clap::value_parser!(u64).range(300..))]
    pub node_ttl_ms: Option<u64>,
    /// How long a meeting's home lock lives unless renewed, in ms; renewed three times
    /// within it (default 10000).
    #[arg(long, value_name = "MS", requires = "redis", value_parser = clap::value_parser!(u64).range(300..))]
    pub lease_ttl_ms: Option<u64>,
}

/// Where the admin API is and the key to use.
#[derive(Debug, Args)]
pub struct AdminConnection {
    /// The server's base URL, e.g. http://127.0.0.1:8080.
    #[arg(long, value_name = "URL")]
    pub server: String,
    /// The admin key (default: $ONSTAGE_ADMIN_KEY).
    #[arg(
        long,
        value_name = "KEY",
        env = "ONSTAGE_ADMIN_KEY",
        hide_env_values = true
    )]
    pub admin_key: Option<String>,
    /// The certificate fingerprint of a self-signed https server (sha256:<hex>, as its
    /// ready line prints it; sha256:AA:BB:.. works too).
    #[arg(long, value_name = "FP")]
    pub fingerprint: Option<Fingerprint>,
}

#[derive(Debug, Subcommand)]
pub enum MeetingCommand {
    /// Create a meeting. Prints {"id":"..."}.
    Create {
        #[command(flatten)]
        conn: AdminConnection,
        /// The meeting's title.
        #[arg(long)]
        title: String,
        /// Most participants on stage at once (server default when unset).
        #[arg(long, value_name = "N")]
        max_on_stage: Option<u32>,
    },
    /// Delete a meeting and its participants. Everyone in it is disconnected
    /// (goodbye meeting_deleted) and every token of it stops working. Prints {"id":"..."}.
    Delete {
        #[command(flatten)]
        conn: AdminConnection,
        /// The meeting's id.
        #[arg(long, value_name = "ID")]
        meeting: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum ParticipantCommand {
    /// Add a participant to a meeting. Prints {"user_id":"...","token":"...","link":"onstage://..",
    /// "web_link":"https://HOST:PORT/join#token=.."}.
    Add {
        #[command(flatten)]
        conn: AdminConnection,
        /// The meeting's id.
        #[arg(long, value_name = "ID")]
        meeting: String,
        /// The participant's display name.
        #[arg(long)]
        name: String,
        /// The preset's name: host, speaker, viewer, spectator or a custom one.
        #[arg(long)]
        preset: String,
        /// Use this user id (RealtimeKit's custom_participant_id); adding it again updates
        /// the name and preset and issues a fresh token, which revokes the one before (its
        /// live session ends with goodbye revoked).
        #[arg(long, value_name = "U")]
        user_id: Option<String>,
    },
    /// Remove a participant from a meeting. Its live session ends (goodbye removed), it
    /// leaves the stage and the queue, and its tokens stop working. Prints {"user_id":"..."}.
    Remove {
        #[command(flatten)]
        conn: AdminConnection,
        /// The meeting's id.
        #[arg(long, value_name = "ID")]
        meeting: String,
        /// The participant's user id.
        #[arg(long, value_name = "U")]
        user_id: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum InviteCommand {
    /// Create a role link for a preset. Everyone who joins with it gives a name and becomes
    /// a new participant with that preset (`onstage bot --link L --name N`). Prints
    /// {"invite_id":"...","preset":"...","token":"...","link":"onstage://join?..&invite=..",
    /// "web_link":"https://HOST:PORT/join#invite=.."}.
    Create {
        #[command(flatten)]
        conn: AdminConnection,
        /// The meeting's id.
        #[arg(long, value_name = "ID")]
        meeting: String,
        /// The preset guests get: host, speaker, viewer, spectator or a custom one.
        #[arg(long)]
        preset: String,
    },
    /// List a meeting's role invites, revoked ones included. Prints one line per invite,
    /// as create does, plus "revoked_at" (null while it lets people in).
    List {
        #[command(flatten)]
        conn: AdminConnection,
        /// The meeting's id.
        #[arg(long, value_name = "ID")]
        meeting: String,
    },
    /// Revoke a role invite: nobody new joins with it (token_revoked); whoever joined
    /// stays. Prints {"invite_id":"...","revoked_at":N}.
    Revoke {
        #[command(flatten)]
        conn: AdminConnection,
        /// The meeting's id.
        #[arg(long, value_name = "ID")]
        meeting: String,
        /// The invite's id.
        #[arg(long, value_name = "ID")]
        invite_id: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum PresetCommand {
    /// Create a custom preset. Prints the preset as the server stored it.
    Create {
        #[command(flatten)]
        conn: AdminConnection,
        /// The preset's name.
        #[arg(long)]
        name: String,
        /// ALLOWED (joins directly), CAN_REQUEST (asks first) or NOT_ALLOWED (invitation only).
        #[arg(long, value_name = "A", value_parser = parse_stage_access)]
        stage_access: StageAccess,
        /// May see the request queue, grant, deny and kick.
        #[arg(long)]
        accept_stage_requests: bool,
        /// May take participants off the stage.
        #[arg(long)]
        kick_participant: bool,
        /// Disables the stage for this preset (stage_enabled = false).
        #[arg(long)]
        no_stage: bool,
    },
}

/// Media the bot publishes while on stage.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum MediaMode {
    /// Publish and decode nothing.
    None,
    /// A moving test pattern (640x480, 30 fps, stamped with frame number and capture
    /// time) and a sine tone; also receives and decodes everyone on stage.
    Synthetic,
    /// The real camera and microphone (--camera, --mic) while on stage, and what it
    /// receives played on the real speaker (--speaker), as the desktop app does.
    Devices,
}

/// Which device `--media devices` uses: `default` (the system's), `none` (left out) or
/// one named by its id or name from `onstage devices`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeviceArg {
    Default,
    None,
    Named(String),
}

impl DeviceArg {
    /// Whether the device is used at all.
    pub fn is_used(&self) -> bool {
        *self != DeviceArg::None
    }

    /// The device id to open: `None` for the default (and for a device left out).
    pub fn id(&self) -> Option<String> {
        match self {
            DeviceArg::Named(name) => Some(name.clone()),
            DeviceArg::Default | DeviceArg::None => None,
        }
    }
}

fn parse_device(text: &str) -> Result<DeviceArg, String> {
    Ok(match text {
        "" => return Err("expected a device id or name, default or none".into()),
        "default" => DeviceArg::Default,
        "none" => DeviceArg::None,
        named => DeviceArg::Named(named.to_owned()),
    })
}

#[derive(Debug, Args)]
pub struct BotArgs {
    /// The server's base URL, e.g. http://127.0.0.1:8080 (or pass --link).
    #[arg(
        long,
        value_name = "URL",
        required_unless_present = "link",
        requires = "token"
    )]
    pub server: Option<String>,
    /// A participant token (from `onstage participant add`).
    #[arg(long, value_name = "T", requires = "server")]
    pub token: Option<String>,
    /// An invite link, onstage://join?server=..&token=..[&fp=..] (the "link" of
    /// `onstage participant add`) or its browser form https://HOST:PORT/join#token=..
    /// ("web_link"), instead of --server and --token. A malformed one is
    /// answered like any refusal: a bad_request line on stdout.
    #[arg(long, value_name = "LINK", conflicts_with_all = ["server", "token", "fingerprint"])]
    pub link: Option<String>,
    /// The bot's display name, for a role link (`invite=`, from `onstage invite create`),
    /// which makes a new participant of that name; a personal link's name is the host's.
    #[arg(long, value_name = "NAME", requires = "link")]
    pub name: Option<String>,
    /// With --server: the certificate fingerprint of a self-signed https server.
    #[arg(long, value_name = "FP")]
    pub fingerprint: Option<Fingerprint>,
    /// Media to publish while on stage.
    #[arg(long, value_enum, default_value_t = MediaMode::None)]
    pub media: MediaMode,
    /// With --media devices: the camera (an id or name from `onstage devices`), default or
    /// none. A named camera that does not exist stops the bot at start
    /// ({"ok":false,"error":{"code":"device_not_found","device":"camera",..}}, status 1).
    #[arg(long, default_value = "default", value_parser = parse_device, value_name = "NAME|default|none")]
    pub camera: DeviceArg,
    /// With --media devices: the microphone (an id or name), default or none.
    #[arg(long, default_value = "default", value_parser = parse_device, value_name = "NAME|default|none")]
    pub mic: DeviceArg,
    /// With --media devices: the speaker the mix of everyone on stage plays on (an id or
    /// name), default or none (nothing is played).
    #[arg(long, default_value = "default", value_parser = parse_device, value_name = "NAME|default|none")]
    pub speaker: DeviceArg,
    /// The synthetic tone's frequency, Hz.
    #[arg(long, default_value_t = 440.0, value_name = "HZ")]
    pub tone_hz: f32,
    /// The synthetic picture: WIDTHxHEIGHT@FPS.
    #[arg(long, default_value = "640x480@30", value_parser = parse_video, value_name = "WxH@FPS")]
    pub video: onstage_media::VideoFormat,
    /// Starting video bitrate, bits per second (the encoder then follows the estimate).
    #[arg(long, default_value_t = 1_000_000, value_name = "BPS")]
    pub video_bitrate: u32,
    /// Publish a picture of at least 640x360 as simulcast layers (two, three from
    /// 1280x720, each encoded on its own), or as one stream (off): to compare what each
    /// costs at the same --video.
    #[arg(long, value_enum, default_value_t = Switch::On, value_name = "on|off")]
    pub simulcast: Switch,
    /// Tell the SFU that this bot shows every stage video at WIDTHxHEIGHT (device pixels),
    /// as an app's tiles do: no larger a simulcast layer is sent to it. Told again
    /// whenever someone comes on or leaves the stage. Without it the bot tells nothing
    /// and gets what its bandwidth carries.
    #[arg(long, value_parser = parse_size, value_name = "WxH")]
    pub tiles: Option<(u32, u32)>,
}

/// On or off.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Switch {
    On,
    Off,
}

/// `320x180` -> (320, 180), each side 0..=16384 (0x0: a hidden tile).
fn parse_size(text: &str) -> Result<(u32, u32), String> {
    let bad = || format!("expected WIDTHxHEIGHT like 320x180, got {text:?}");
    let (w, h) = text.split_once('x').ok_or_else(bad)?;
    let (width, height): (u32, u32) =
        (w.parse().map_err(|_| bad())?, h.parse().map_err(|_| bad())?);
    let max = onstage_proto::MAX_TILE_SIDE;
    if width > max || height > max {
        return Err(format!("{text:?}: each side at most {max}"));
    }
    Ok((width, height))
}

/// `1280x720@30` -> a video format (even sizes, 1..=60 fps).
fn parse_video(text: &str) -> Result<onstage_media::VideoFormat, String> {
    let bad = || format!("expected WIDTHxHEIGHT@FPS like 1280x720@30, got {text:?}");
    let (size, fps) = text.split_once('@').ok_or_else(bad)?;
    let (w, h) = size.split_once('x').ok_or_else(bad)?;
    let (width, height, fps): (u32, u32, u32) = (
        w.parse().map_err(|_| bad())?,
        h.parse().map_err(|_| bad())?,
        fps.parse().map_err(|_| bad())?,
    );
    if width == 0
        || height == 0
        || width % 2 == 1
        || height % 2 == 1
        || width > 3840
        || height > 2160
    {
        return Err(format!(
            "{text:?}: width and height must be even, at most 3840x2160"
        ));
    }
    if !(1..=60).contains(&fps) {
        return Err(format!("{text:?}: fps must be 1..=60"));
    }
    Ok(onstage_media::VideoFormat { width, height, fps })
}

#[derive(Debug, Args)]
pub struct LoadTestArgs {
    /// Participants to join to one meeting (the first is the host).
    #[arg(long, default_value_t = 1000)]
    pub participants: usize,
    /// Stage changes to measure (the host joins and leaves the stage in turn).
    #[arg(long, default_value_t = 20)]
    pub rounds: usize,
    /// Signaling only, no media.
    #[arg(long)]
    pub no_media: bool,
    /// Test this running server instead of starting one (needs the admin key); with --sfu
    /// janus, the running Janus's HTTP API.
    #[arg(long, value_name = "URL")]
    pub server: Option<String>,
    /// The pid of the `--server`, to read its memory and CPU time.
    #[arg(long)]
    pub server_pid: Option<u32>,
    /// The admin key of `--server` (default: $ONSTAGE_ADMIN_KEY).
    #[arg(long, env = "ONSTAGE_ADMIN_KEY", hide_env_values = true)]
    pub admin_key: Option<String>,
    /// Registrations and joins in flight at once while setting up.
    #[arg(long, default_value_t = 50)]
    pub join_concurrency: usize,
    /// Media: participants publishing on stage.
    #[arg(long, default_value_t = 1)]
    pub publishers: usize,
    /// Media: viewers receiving everyone on stage. Without --sdk-clients, N > 0 runs the
    /// SFU benchmark with lightweight probe endpoints (M publishers, N viewers each).
    #[arg(long, default_value_t = 0)]
    pub viewers: usize,
    /// Media: seconds of steady streaming to measure.
    #[arg(long, default_value_t = 10)]
    pub duration: u64,
    /// Media with the real SDK clients (capture, H.264/Opus encoding, WebRTC, decoding)
    /// instead of lightweight probes: the client-side figures (glass to glass, time to
    /// first picture, the publisher's CPU). The publisher is an `onstage bot` child
    /// process; `--rounds` stage joins are timed, then `--late-viewers` join a live stage.
    #[arg(long)]
    pub sdk_clients: bool,
    /// With --sdk-clients: the publisher's synthetic picture.
    #[arg(long, default_value = "1280x720@30", value_parser = parse_video, value_name = "WxH@FPS")]
    pub video: onstage_media::VideoFormat,
    /// The publishers' (starting) video bitrate.
    #[arg(long, default_value_t = 1_200_000, value_name = "BPS")]
    pub video_bitrate: u32,
    /// Media: viewers that join the live stage one after another (time to first frame).
    #[arg(long, default_value_t = 20)]
    pub late_viewers: usize,
    /// Media: the pause between two late viewers, from the first keyframe of one to the
    /// next one's subscribing (0: back to back).
    #[arg(long, default_value_t = 400, value_name = "MS")]
    pub late_gap_ms: u64,
    /// Media: the SFU to drive. `janus`: Janus's VideoRoom with the same probes and load,
    /// through its HTTP API; with --server URL (its API, e.g. http://10.0.0.1:8088/janus)
    /// a running Janus, else one started here in a network namespace (needs root).
    #[arg(long, value_enum, default_value_t = SfuKind::Onstage)]
    pub sfu: SfuKind,
    /// Media: run our SFU and then this one under identical conditions (both in a network
    /// namespace, the SFU pinned to one core and the probes to the others) and print the
    /// figures side by side with their ratios. Needs root and Janus installed.
    #[arg(long, value_enum, value_name = "SFU", conflicts_with_all = ["server", "sdk_clients"])]
    pub compare: Option<PeerSfu>,
    /// The Janus binary (a path, or a name looked up on PATH).
    #[arg(long, value_name = "PATH", default_value = "janus")]
    pub janus: PathBuf,
    /// Media: the local address the probes bind to (the SFU must be reachable from it).
    #[arg(long, value_name = "IP", default_value = "127.0.0.1")]
    pub bind_ip: std::net::IpAddr,
}

/// The SFU `load-test` drives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum SfuKind {
    /// Ours (`onstage serve`).
    Onstage,
    /// Janus's VideoRoom plugin.
    Janus,
}

impl SfuKind {
    pub fn name(self) -> &'static str {
        match self {
            SfuKind::Onstage => "onstage",
            SfuKind::Janus => "janus",
        }
    }
}

/// Another SFU to compare ours with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum PeerSfu {
    /// Janus's VideoRoom plugin.
    Janus,
}

/// `ALLOWED`, `CAN_REQUEST`, `NOT_ALLOWED`; case and `-`/`_` do not matter.
pub fn parse_stage_access(s: &str) -> Result<StageAccess, String> {
    let normal = s.trim().to_ascii_uppercase().replace('-', "_");
    serde_json::from_value(serde_json::Value::String(normal))
        .map_err(|_| format!("{s:?} is not one of ALLOWED, CAN_REQUEST, NOT_ALLOWED"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(std::iter::once("onstage").chain(args.iter().copied()))
    }

    #[test]
    fn the_command_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn serve_takes_an_address_with_port_zero_and_options() {
        let cli = parse(&[
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--data",
            "/tmp/x",
            "--grace-ms",
            "500",
            "--token-ttl-secs",
            "60",
            "--max-on-stage",
            "3",
            "--max-participants",
            "7",
        ])
        .unwrap();
        let Command::Serve(args) = cli.command else {
            panic!("serve")
        };
        assert_eq!(args.max_participants, Some(7));
        assert!(
            parse(&[
                "serve",
                "--listen",
                "127.0.0.1:0",
                "--data",
                "/x",
                "--max-participants",
                "0"
            ])
            .is_err(),
            "a meeting holds someone"
        );
        assert_eq!(args.listen.port(), 0);
        assert_eq!(args.data, PathBuf::from("/tmp/x"));
        assert_eq!(args.grace_ms, Some(500));
        assert_eq!(args.token_ttl_secs, Some(60));
        assert_eq!(args.max_on_stage, Some(3));
        assert!(parse(&["serve", "--listen", "nowhere", "--data", "d"]).is_err());
        assert!(parse(&["serve", "--data", "d"]).is_err());
    }

    #[test]
    fn admin_commands() {
        let cli = parse(&[
            "meeting",
            "create",
            "--server",
            "http://h:1",
            "--title",
            "T",
            "--admin-key",
            "k",
        ])
        .unwrap();
        let Command::Meeting(MeetingCommand::Create { conn, title, .. }) = cli.command else {
            panic!("meeting create")
        };
        assert_eq!(
            (
                conn.server.as_str(),
                conn.admin_key.as_deref(),
                title.as_str()
            ),
            ("http://h:1", Some("k"), "T")
        );

        let cli = parse(&[
            "participant",
            "add",
            "--server",
            "http://h:1",
            "--meeting",
            "m",
            "--name",
            "N",
            "--preset",
            "viewer",
            "--user-id",
            "u",
        ])
        .unwrap();
        let Command::Participant(ParticipantCommand::Add {
            meeting,
            name,
            preset,
            user_id,
            ..
        }) = cli.command
        else {
            panic!("participant add")
        };
        assert_eq!(
            (
                meeting.as_str(),
                name.as_str(),
                preset.as_str(),
                user_id.as_deref()
            ),
            ("m", "N", "viewer", Some("u"))
        );

        let cli = parse(&[
            "preset",
            "create",
            "--server",
            "http://h:1",
            "--name",
            "mod",
            "--stage-access",
            "can_request",
            "--kick-participant",
            "--no-stage",
        ])
        .unwrap();
        let Command::Preset(PresetCommand::Create {
            stage_access,
            accept_stage_requests,
            kick_participant,
            no_stage,
            ..
        }) = cli.command
        else {
            panic!("preset create")
        };
        assert_eq!(stage_access, StageAccess::CanRequest);
        assert!(!accept_stage_requests && kick_participant && no_stage);

        let cli = parse(&[
            "participant",
            "remove",
            "--server",
            "http://h:1",
            "--meeting",
            "m",
            "--user-id",
            "u",
        ])
        .unwrap();
        let Command::Participant(ParticipantCommand::Remove {
            meeting, user_id, ..
        }) = cli.command
        else {
            panic!("participant remove")
        };
        assert_eq!((meeting.as_str(), user_id.as_str()), ("m", "u"));
        assert!(
            parse(&[
                "participant",
                "remove",
                "--server",
                "http://h:1",
                "--meeting",
                "m"
            ])
            .is_err(),
            "the user id is required"
        );

        let cli = parse(&[
            "meeting",
            "delete",
            "--server",
            "http://h:1",
            "--meeting",
            "m",
        ])
        .unwrap();
        let Command::Meeting(MeetingCommand::Delete { meeting, .. }) = cli.command else {
            panic!("meeting delete")
        };
        assert_eq!(meeting, "m");
        assert!(parse(&["meeting", "delete", "--server", "http://h:1"]).is_err());
    }

    #[test]
    fn stage_access_values() {
        assert_eq!(parse_stage_access("ALLOWED"), Ok(StageAccess::Allowed));
        assert_eq!(
            parse_stage_access("can-request"),
            Ok(StageAccess::CanRequest)
        );
        assert_eq!(
            parse_stage_access("NOT_ALLOWED"),
            Ok(StageAccess::NotAllowed)
        );
        assert!(parse_stage_access("SOMETIMES").is_err());
    }

    #[test]
    fn tls_and_link_arguments() {
        let fp = format!("sha256:{}", "ab".repeat(32));
        let cli = parse(&[
            "serve",
            "--listen",
            "0.0.0.0:8443",
            "--data",
            "d",
            "--tls-self-signed",
            "--public-url",
            "https://meet.example.com",
        ])
        .unwrap();
        let Command::Serve(args) = cli.command else {
            panic!("serve")
        };
        assert!(args.tls_self_signed && args.tls_cert.is_none());
        assert_eq!(
            args.public_url.map(String::from).as_deref(),
            Some("https://meet.example.com/")
        );
        let serve = ["serve", "--listen", "127.0.0.1:0", "--data", "d"];
        let with = |extra: &[&str]| parse(&[&serve[..], extra].concat());
        assert!(with(&["--tls-cert", "c.pem", "--tls-key", "k.pem"]).is_ok());
        assert!(with(&["--tls-cert", "c.pem"]).is_err());
        assert!(with(&["--tls-key", "k.pem"]).is_err());
        assert!(with(&["--tls-cert", "c", "--tls-key", "k", "--tls-self-signed"]).is_err());
        assert!(with(&["--public-url", "not a url"]).is_err());

        let link = format!("onstage://join?server=https://h:1&token=t&fp={fp}");
        let cli = parse(&["bot", "--link", &link]).unwrap();
        let Command::Bot(args) = cli.command else {
            panic!("bot")
        };
        assert_eq!(args.link.as_deref(), Some(link.as_str()));
        assert!(parse(&["bot", "--link", &link, "--token", "t"]).is_err());
        assert!(parse(&["bot"]).is_err());
        assert!(parse(&[
            "bot",
            "--server",
            "https://h",
            "--token",
            "t",
            "--fingerprint",
            &fp
        ])
        .is_ok());
        assert!(parse(&[
            "bot",
            "--server",
            "https://h",
            "--token",
            "t",
            "--fingerprint",
            "sha256:12"
        ])
        .is_err());

        let cli = parse(&[
            "meeting",
            "create",
            "--server",
            "https://h:1",
            "--title",
            "T",
            "--fingerprint",
            &fp,
        ])
        .unwrap();
        let Command::Meeting(MeetingCommand::Create { conn, .. }) = cli.command else {
            panic!("meeting create")
        };
        assert_eq!(conn.fingerprint.map(|f| f.to_string()), Some(fp));
    }

    #[test]
    fn bot_media_defaults_to_none() {
        let cli = parse(&["bot", "--server", "http://h:1", "--token", "t"]).unwrap();
        let Command::Bot(args) = cli.command else {
            panic!("bot")
        };
        assert_eq!(args.media, MediaMode::None);
        let cli = parse(&[
            "bot",
            "--server",
            "http://h:1",
            "--token",
            "t",
            "--media",
            "synthetic",
        ])
        .unwrap();
        let Command::Bot(args) = cli.command else {
            panic!("bot")
        };
        assert_eq!(args.media, MediaMode::Synthetic);
        assert!(parse(&["bot", "--server", "s", "--token", "t", "--media", "x"]).is_err());
        let cli = parse(&[
            "bot",
            "--server",
            "http://h:1",
            "--token",
            "t",
            "--media",
            "devices",
            "--camera",
            "none",
            "--mic",
            "alsa:pulse",
        ])
        .unwrap();
        let Command::Bot(args) = cli.command else {
            panic!("bot")
        };
        assert_eq!(args.media, MediaMode::Devices);
        assert_eq!(args.camera, DeviceArg::None);
        assert_eq!(args.mic, DeviceArg::Named("alsa:pulse".into()));
        assert_eq!(args.mic.id().as_deref(), Some("alsa:pulse"));
        assert_eq!(args.speaker, DeviceArg::Default);
        assert!(!args.camera.is_used() && args.speaker.is_used());
        assert_eq!(args.speaker.id(), None);
        assert!(parse(&["bot", "--server", "s", "--token", "t", "--mic", ""]).is_err());
        assert!(parse(&["bot", "--server", "s"]).is_err());
    }

    #[test]
    fn bot_simulcast_is_on_by_default_and_tiles_are_a_size() {
        let bot = |extra: &[&str]| {
            let args = [&["bot", "--server", "http://h:1", "--token", "t"], extra].concat();
            parse(&args).map(|cli| match cli.command {
                Command::Bot(args) => args,
                _ => panic!("bot"),
            })
        };
        let args = bot(&[]).unwrap();
        assert_eq!((args.simulcast, args.tiles), (Switch::On, None));
        let args = bot(&["--simulcast", "off", "--tiles", "320x180"]).unwrap();
        assert_eq!(
            (args.simulcast, args.tiles),
            (Switch::Off, Some((320, 180)))
        );
        assert_eq!(
            bot(&["--tiles", "0x0"]).unwrap().tiles,
            Some((0, 0)),
            "hidden"
        );
        for bad in ["320", "320x", "x180", "-1x2", "16385x10", "1.5x2"] {
            assert!(bot(&["--tiles", bad]).is_err(), "{bad}");
        }
        assert!(bot(&["--simulcast", "maybe"]).is_err());
    }
}
