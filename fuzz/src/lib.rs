//! # onstage-fuzz — fuzz targets for every decoder Onstage feeds with outside input
//!
//! Each `fuzz_*` function takes arbitrary bytes, hands them to the code that reads them in
//! production, and checks what must hold beyond "no panic" (a value that parses writes out
//! and parses back to itself, a refusal is a `bad_request`, a refused session leaves
//! nothing behind). The same functions serve two callers:
//! - the libFuzzer binaries in `fuzz_targets/` (`scripts/fuzz.sh` builds and runs them);
//! - `tests/replay.rs`, which replays every file of `corpus/<target>/` and
//!   `regressions/<target>/` as an ordinary test.
//!
//! Targets: [`fuzz_signal`] (signaling frames, both directions), [`fuzz_token`] (participant
//! tokens and the admin key), [`fuzz_rest`] (admin REST
//! bodies and their checks), [`fuzz_link`] (invite links and fingerprints), [`fuzz_sdp`]
//! (offers into the SFU), [`fuzz_datagram`] (UDP/TCP datagrams into the SFU, with and
//! without a session) and [`fuzz_tcp`] (the ICE-TCP RFC 4571 frame reader).

use std::cell::RefCell;
use std::net::SocketAddr;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use onstage_proto::{
    ErrorCode, Fingerprint, InviteLink, MediaKinds, MeetingId, Request, ServerMessage, UserId,
    MAX_SIGNAL_FRAME_BYTES,
};
use onstage_server::rest::{check_body, Body};
use onstage_server::sfu::engine::{Engine, LocalCandidate, ParticipantKey};
use onstage_server::sfu::net::{read_frames, TcpEvent, MAX_DATAGRAM};
use onstage_server::sfu::SfuError;
use str0m::net::Protocol;

/// A fuzz target: any bytes in, a panic when something that must hold does not.
pub type Target = fn(&[u8]);

/// Every target by name, for the replay test and the fuzz script.
pub const TARGETS: &[(&str, Target)] = &[
    ("signal", fuzz_signal),
    ("rest", fuzz_rest),
    ("link", fuzz_link),
    ("sdp", fuzz_sdp),
    ("datagram", fuzz_datagram),
    ("tcp", fuzz_tcp),
    ("token", fuzz_token),
];

/// Once per fuzzer process, after libFuzzer's own set-up. libfuzzer-sys installs a panic
/// hook that aborts at once, before any `catch_unwind` could act; but the SFU engine
/// deliberately catches the WebRTC stack's panics on offers it cannot negotiate (see
/// `Engine::accept`). Panics unwind here as in production: one that reaches the harness is
/// still a crash (libfuzzer-sys aborts then, and the message was printed at the panic).
pub fn init() {
    drop(std::panic::take_hook());
}

// ---------------------------------------------------------------------------------------
// Signaling

/// One WebSocket text frame, read as the server reads a client's (`Request::leading_id`,
/// the id of a refused frame, `Request::parse`) and as a client reads the server's
/// (`ServerMessage`).
pub fn fuzz_signal(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return; // a text frame is UTF-8 by the time it reaches us
    };
    let leading = Request::leading_id(text);
    let refused_id = onstage_server::signal::request_id(text);
    if leading.is_some() {
        assert_eq!(refused_id, leading, "the frame's start names the id");
    }
    if text.len() <= MAX_SIGNAL_FRAME_BYTES {
        match Request::parse(text) {
            Ok(request) => {
                assert!(onstage_proto::signal::KNOWN_CALLS.contains(&request.call.name()));
                let json = serde_json::to_string(&request).expect("a request serializes");
                assert_eq!(
                    Request::parse(&json).as_ref(),
                    Ok(&request),
                    "a parsed request writes out and parses back to itself: {json}"
                );
                assert_eq!(Request::leading_id(&json), Some(request.id));
            }
            Err((id, error)) => {
                assert_eq!(error.code, ErrorCode::BadRequest);
                if let Some(id) = id {
                    // An id in a reply is one the frame holds.
                    assert!(text.contains(&id.to_string()), "id {id} not in the frame");
                }
            }
        }
    }
    if let Ok(message) = serde_json::from_str::<ServerMessage>(text) {
        let json = serde_json::to_string(&message).expect("a server message serializes");
        let again: ServerMessage = serde_json::from_str(&json)
            .unwrap_or_else(|e| panic!("the server's own message does not read back: {e}: {json}"));
        assert_eq!(again, message, "{json}");
    }
}

// ---------------------------------------------------------------------------------------
// Credentials

/// The secret and admin key of [`fuzz_token`]'s server; `corpus/token/` holds tokens it
/// signed (see the test `the_token_seed_is_valid`).
const JWT_SECRET: &str = "onstage-fuzz-jwt-secret-0123456789abcdef";
const ADMIN_KEY: &str = "onstage-fuzz-admin-key-0123456789abcdef";

fn auth() -> &'static onstage_server::auth::Auth {
    static AUTH: OnceLock<onstage_server::auth::Auth> = OnceLock::new();
    AUTH.get_or_init(|| {
        onstage_server::auth::Auth::new(
            ADMIN_KEY.into(),
            JWT_SECRET,
            Duration::from_secs(100 * 365 * 24 * 3600),
        )
    })
}

/// A participant token as `/v1/signal` gets it (`?token=` or `Authorization: Bearer`),
/// and an admin key as the REST routes do. Only a token this server signed verifies, and
/// then with the claims it signed; only the admin key passes the admin check.
pub fn fuzz_token(data: &[u8]) {
    let auth = auth();
    if let Ok(text) = std::str::from_utf8(data) {
        if let Ok(claims) = auth.verify(text) {
            let signed = auth
                .mint(
                    &claims.meeting_id(),
                    &claims.user_id(),
                    claims.generation,
                    claims.iat * 1000,
                )
                .expect("mints");
            let head = |t: &str| t.rsplit_once('.').map(|(h, _)| h.to_owned());
            if head(text) != head(&signed) {
                // Only a token from before token generations (no `gen` claim, so
                // generation 0) reads differently from its re-signed self.
                assert_eq!(claims.generation, 0, "verified claims we never signed");
                assert_eq!(auth.verify(&signed).map(|c| c == claims).ok(), Some(true));
            }
        }
        // A role invite token is never a participant token too: it names no participant.
        if let Ok(invite) = auth.verify_invite(text) {
            assert!(invite.sub.is_none(), "an invite token naming a participant");
            assert!(
                auth.verify(text).is_err(),
                "a token read as both an invite and a participant"
            );
        }
    }
    let Ok(value) = axum::http::HeaderValue::from_bytes(data) else {
        return;
    };
    let mut headers = axum::http::HeaderMap::new();
    headers.insert(axum::http::header::AUTHORIZATION, value);
    if let Some(token) = onstage_server::auth::bearer(&headers) {
        let text = std::str::from_utf8(data).expect("a bearer token is text");
        assert!(text.contains(token));
    }
    match auth.check_admin(&headers) {
        Ok(()) => assert_eq!(onstage_server::auth::bearer(&headers), Some(ADMIN_KEY)),
        Err(e) => assert_eq!(e.body.code, ErrorCode::Unauthorized),
    }
}

// ---------------------------------------------------------------------------------------
// REST

/// An admin REST body: the first byte picks the route, the rest is the body, checked as the
/// route checks it (`onstage_server::rest::check_body`).
pub fn fuzz_rest(data: &[u8]) {
    let Some((&pick, bytes)) = data.split_first() else {
        return;
    };
    let body = match pick % 3 {
        0 => Body::CreateMeeting,
        1 => Body::AddParticipant,
        _ => Body::Preset,
    };
    let default_max_on_stage = u32::from(pick >> 2) * 17; // 0 (refused) to a few thousand
    match check_body(body, bytes, default_max_on_stage) {
        Ok(value) => {
            match body {
                Body::CreateMeeting => {
                    assert_clean_text(value["title"].as_str().expect("title"), 200);
                    let max = value["max_on_stage"].as_u64().expect("max_on_stage");
                    assert!((1..=1000).contains(&max), "max_on_stage {max}");
                }
                Body::AddParticipant => {
                    assert_clean_text(value["name"].as_str().expect("name"), 100);
                    if let Some(custom) = value["custom_participant_id"].as_str() {
                        assert!(!custom.is_empty() && custom.len() <= 128, "{custom:?}");
                        assert!(!looks_like_uuid(custom), "a UUID-like custom id {custom:?}");
                    }
                }
                Body::Preset => {
                    let name = value["name"].as_str().expect("name");
                    assert!(
                        !name.is_empty()
                            && name.len() <= 64
                            && name
                                .bytes()
                                .all(|b| matches!(b, b'a'..=b'z' | b'0'..=b'9' | b'_' | b'-')),
                        "preset name {name:?}"
                    );
                }
            }
            // What was accepted, as stored, is accepted again unchanged.
            let stored = serde_json::to_vec(&value).expect("serializes");
            let again = check_body(body, &stored, default_max_on_stage)
                .unwrap_or_else(|e| panic!("the stored form is refused: {e}: {value}"));
            assert_eq!(again, value);
        }
        Err(e) => {
            assert_eq!(e.body.code, ErrorCode::BadRequest, "{e}");
            assert!(e.status == 400 || e.status == 413, "{e}");
        }
    }
}

/// A stored title or name: trimmed, 1 to `max` characters, no control or invisible
/// formatting characters.
fn assert_clean_text(text: &str, max: usize) {
    assert_eq!(text, text.trim(), "not trimmed: {text:?}");
    let n = text.chars().count();
    assert!((1..=max).contains(&n), "{n} characters: {text:?}");
    for c in text.chars() {
        let invisible = matches!(c, '\u{200b}'..='\u{200f}' | '\u{2028}'..='\u{202e}' | '\u{2060}'..='\u{2064}' | '\u{feff}');
        assert!(
            !c.is_control() && !invisible,
            "U+{:04X} in {text:?}",
            u32::from(c)
        );
    }
}

/// The forms `uuid` reads: 32 hex digits, optionally hyphenated 8-4-4-4-12, in braces or
/// after `urn:uuid:`.
fn looks_like_uuid(s: &str) -> bool {
    let s = s.strip_prefix("urn:uuid:").unwrap_or(s);
    let s = s
        .strip_prefix('{')
        .and_then(|s| s.strip_suffix('}'))
        .unwrap_or(s);
    let hex: String = s.chars().filter(|c| *c != '-').collect();
    let hyphens_ok = !s.contains('-') || s.split('-').map(str::len).eq([8usize, 4, 4, 4, 12]);
    hex.len() == 32 && hex.bytes().all(|b| b.is_ascii_hexdigit()) && hyphens_ok
}

// ---------------------------------------------------------------------------------------
// Invite links

/// An invite link and a fingerprint: whatever parses writes out and parses back to itself.
pub fn fuzz_link(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(link) = InviteLink::parse(text) {
        assert!(!link.token.is_empty());
        assert!(matches!(link.server.scheme(), "http" | "https"));
        assert!(link.fingerprint.is_none() || link.server.scheme() == "https");
        let written = link.to_string();
        let again = InviteLink::parse(&written)
            .unwrap_or_else(|e| panic!("{written:?} (from {text:?}) does not parse: {e}"));
        assert_eq!(again, link, "{written:?} from {text:?}");
        assert_eq!(again.to_string(), written);
    }
    if let Ok(fp) = text.parse::<Fingerprint>() {
        assert_eq!(fp.to_string().parse::<Fingerprint>(), Ok(fp));
        assert_eq!(fp.to_colon_hex().parse::<Fingerprint>(), Ok(fp));
        let json = serde_json::to_string(&fp).expect("serializes");
        assert_eq!(serde_json::from_str::<Fingerprint>(&json).ok(), Some(fp));
    }
}

// ---------------------------------------------------------------------------------------
// The SFU

const SFU_V4: &str = "10.0.0.1:5000";
const SFU_V6: &str = "[fd00::1]:5000";
const SFU_LOOPBACK: &str = "127.0.0.1:5000";

fn addr(s: &str) -> SocketAddr {
    s.parse().expect("an address")
}

fn key(user: &str) -> ParticipantKey {
    (MeetingId::new("m"), UserId::new(user))
}

/// The moment every run starts at (str0m only ever sees differences).
fn epoch() -> Instant {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    *EPOCH.get_or_init(Instant::now)
}

thread_local! {
    /// One engine per thread, emptied after every input: making one generates the DTLS
    /// certificate, which would dominate every run.
    static ENGINE: RefCell<Engine> = RefCell::new(Engine::new(vec![
        LocalCandidate::udp(addr(SFU_V4)),
        LocalCandidate::tcp(addr(SFU_V4)),
        LocalCandidate::udp(addr(SFU_V6)),
        LocalCandidate::udp(addr(SFU_LOOPBACK)),
    ]));
}

fn with_engine(f: impl FnOnce(&mut Engine)) {
    ENGINE.with(|engine| {
        let mut engine = engine.borrow_mut();
        f(&mut engine);
        engine.close_all();
        engine.drain_datagrams();
        assert_eq!(engine.counts(), (0, 0), "closing every session leaves none");
    });
}

/// A valid sendonly offer (audio + video), and a recvonly one, whose ICE credentials
/// [`fuzz_datagram`] uses.
pub const PUBLISH_OFFER: &str = include_str!("../seeds/publish.sdp");
pub const SUBSCRIBE_OFFER: &str = include_str!("../seeds/subscribe.sdp");
const CLIENT_UFRAG: &str = "fzcl";
const CLIENT_PWD: &str = "fuzzclientpassword0123456";

/// An SDP offer, as `media.publish` or `media.subscribe` hands it to the SFU. The first
/// byte picks the call and what the preset allows; the rest is the offer.
pub fn fuzz_sdp(data: &[u8]) {
    let Some((&pick, offer)) = data.split_first() else {
        return;
    };
    let Ok(offer) = std::str::from_utf8(offer) else {
        return; // it arrives in a JSON string
    };
    let now = epoch();
    with_engine(|engine| {
        let subscribe = pick & 1 != 0;
        let result = if subscribe {
            engine.subscribe(key("viewer"), key("host"), offer, now)
        } else {
            engine
                .publish(
                    key("host"),
                    offer,
                    &[],
                    MediaKinds::new(pick & 2 != 0, pick & 4 != 0),
                    now,
                )
                .map(|publication| publication.answer)
        };
        match result {
            Ok(answer) => {
                let expected = if subscribe { (0, 1) } else { (1, 0) };
                assert_eq!(engine.counts(), expected);
                str0m::change::SdpAnswer::from_sdp_string(&answer)
                    .unwrap_or_else(|e| panic!("our answer does not parse: {e}\n{answer}"));
                // The session lives on: its timers run, and it can be ended.
                for ms in [1, 50, 1000, 30_000] {
                    engine.handle_timeout(now + Duration::from_millis(ms));
                }
            }
            Err(e) => {
                assert!(
                    matches!(e, SfuError::BadSdp(_) | SfuError::NotAllowed(_)),
                    "{e}"
                );
                assert_eq!(engine.counts(), (0, 0), "a refusal leaves nothing behind");
            }
        }
        engine.drain_datagrams();
    });
}

/// Datagrams into the SFU engine, as the UDP socket and the ICE-TCP connections deliver
/// them. The first byte picks the setup: no session at all, a publication, or a
/// subscription, each set up from a valid offer. Then records of
/// `[flags, len_hi, len_lo, bytes...]`, each one datagram; `flags` picks the source (the
/// peer or a stranger), the transport, the local address, how much time passes first, and
/// whether the bytes are wrapped into a STUN binding request with the session's valid
/// credentials (so that ICE completes and what follows reaches DTLS and SRTP).
pub fn fuzz_datagram(data: &[u8]) {
    let Some((&setup, mut rest)) = data.split_first() else {
        return;
    };
    let now = epoch();
    with_engine(|engine| {
        let creds = match setup % 3 {
            0 => None,
            1 => engine
                .publish(key("host"), PUBLISH_OFFER, &[], MediaKinds::BOTH, now)
                .ok()
                .map(|publication| ice_creds(&publication.answer)),
            _ => engine
                .subscribe(key("viewer"), key("host"), SUBSCRIBE_OFFER, now)
                .ok()
                .map(|answer| ice_creds(&answer)),
        };
        if setup % 3 != 0 {
            assert!(creds.is_some(), "the seed offer is answered");
        }
        let peer = addr("10.0.0.2:6000");
        let stranger = addr("10.0.0.9:7000");
        let mut t = now;
        while rest.len() >= 3 {
            let flags = rest[0];
            let len = usize::from(u16::from_be_bytes([rest[1], rest[2]])) % (MAX_DATAGRAM + 1);
            let len = len.min(rest.len() - 3);
            let bytes = &rest[3..3 + len];
            rest = &rest[3 + len..];

            let source = if flags & 1 == 0 { peer } else { stranger };
            let proto = if flags & 2 == 0 {
                Protocol::Udp
            } else {
                Protocol::Tcp
            };
            let destination = match (flags >> 2) & 3 {
                0 | 1 => addr(SFU_V4),
                2 => addr(SFU_LOOPBACK),
                _ => addr(SFU_V6),
            };
            t += Duration::from_millis(u64::from(flags >> 5) * 25);
            engine.handle_timeout(t);
            answer_checks(engine, t, creds.is_some());
            let stun;
            let contents = match &creds {
                Some(creds) if flags & 16 != 0 => {
                    stun = binding_request(creds, bytes);
                    &stun[..]
                }
                _ => bytes,
            };
            let dropped = engine.stats().dropped;
            let taken = engine.handle_datagram(t, proto, source, destination, contents);
            assert_eq!(
                engine.stats().dropped,
                dropped + u64::from(!taken),
                "a refused datagram is counted, a taken one is not"
            );
            if creds.is_none() {
                assert!(!taken, "no session, yet a datagram was taken");
            }
            answer_checks(engine, t, creds.is_some());
        }
        // Whatever happened, time moves on and the session (if still there) can be ended.
        engine.handle_timeout(t + Duration::from_secs(60));
        assert!(engine.counts().0 + engine.counts().1 <= 1);
    });
}

/// The SFU's ICE credentials, from its answer.
struct IceCreds {
    ufrag: String,
    pwd: String,
}

fn ice_creds(answer: &str) -> IceCreds {
    let attr = |name: &str| {
        answer
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .map(|v| v.trim().to_owned())
            .unwrap_or_else(|| panic!("no {name} in the answer"))
    };
    IceCreds {
        ufrag: attr("a=ice-ufrag:"),
        pwd: attr("a=ice-pwd:"),
    }
}

/// A STUN binding request to the SFU with valid credentials (RFC 8445 / 5389): the first
/// 12 bytes of `extra` are the transaction id, the rest goes in as raw attributes (padded)
/// between the ICE attributes and MESSAGE-INTEGRITY, then FINGERPRINT.
fn binding_request(creds: &IceCreds, extra: &[u8]) -> Vec<u8> {
    let (txid, attrs) = extra.split_at(extra.len().min(12));
    let mut txid_full = [0u8; 12];
    txid_full[..txid.len()].copy_from_slice(txid);
    let mut body = Vec::new();
    let username = format!("{}:{}", creds.ufrag, CLIENT_UFRAG);
    stun_attr(&mut body, 0x0006, username.as_bytes()); // USERNAME
    stun_attr(&mut body, 0x0024, &0x6e00_1eff_u32.to_be_bytes()); // PRIORITY
    stun_attr(&mut body, 0x802a, &0x0102_0304_0506_0708_u64.to_be_bytes()); // ICE-CONTROLLING
    stun_attr(&mut body, 0x0025, &[]); // USE-CANDIDATE
    let room = 1200usize.saturating_sub(body.len());
    body.extend_from_slice(&attrs[..attrs.len().min(room)]);
    while body.len() % 4 != 0 {
        body.push(0);
    }
    stun_message(0x0001, txid_full, &body, creds.pwd.as_bytes())
}

/// The peer's answer to one of the SFU's own ICE checks, if `datagram` is one: a binding
/// success response, signed with the peer's password (the offer's).
fn binding_response(datagram: &[u8], mapped: SocketAddr) -> Option<Vec<u8>> {
    if datagram.len() < 20
        || datagram[..2] != [0x00, 0x01]
        || datagram[4..8] != 0x2112_a442u32.to_be_bytes()
    {
        return None;
    }
    let txid: [u8; 12] = datagram[8..20].try_into().expect("12 bytes");
    // XOR-MAPPED-ADDRESS: where the request came from, as the peer saw it.
    let cookie = 0x2112_a442u32.to_be_bytes();
    let mut value = vec![0, 0];
    let port = mapped.port() ^ 0x2112;
    value.extend_from_slice(&port.to_be_bytes());
    match mapped.ip() {
        std::net::IpAddr::V4(ip) => {
            value[1] = 1;
            value.extend(ip.octets().iter().zip(cookie).map(|(a, b)| a ^ b));
        }
        std::net::IpAddr::V6(ip) => {
            value[1] = 2;
            let mask = cookie.iter().chain(&txid);
            value.extend(ip.octets().iter().zip(mask).map(|(a, b)| a ^ b));
        }
    }
    let mut body = Vec::new();
    stun_attr(&mut body, 0x0020, &value);
    Some(stun_message(0x0101, txid, &body, CLIENT_PWD.as_bytes()))
}

fn stun_attr(body: &mut Vec<u8>, kind: u16, value: &[u8]) {
    body.extend_from_slice(&kind.to_be_bytes());
    body.extend_from_slice(&(value.len() as u16).to_be_bytes());
    body.extend_from_slice(value);
    while body.len() % 4 != 0 {
        body.push(0);
    }
}

/// A STUN message: header, `body`, MESSAGE-INTEGRITY with `key`, FINGERPRINT.
fn stun_message(kind: u16, txid: [u8; 12], body: &[u8], key: &[u8]) -> Vec<u8> {
    use hmac::{Hmac, Mac};
    // MESSAGE-INTEGRITY covers everything before it, with the length counting it.
    let mut msg = Vec::with_capacity(body.len() + 52);
    msg.extend_from_slice(&kind.to_be_bytes());
    msg.extend_from_slice(&((body.len() + 24) as u16).to_be_bytes());
    msg.extend_from_slice(&0x2112_a442u32.to_be_bytes());
    msg.extend_from_slice(&txid);
    msg.extend_from_slice(body);
    let mut mac = Hmac::<sha1::Sha1>::new_from_slice(key).expect("any key");
    mac.update(&msg);
    let integrity = mac.finalize().into_bytes();
    msg.extend_from_slice(&0x0008u16.to_be_bytes());
    msg.extend_from_slice(&20u16.to_be_bytes());
    msg.extend_from_slice(&integrity);
    // FINGERPRINT: CRC-32 of everything before it (length counting it), xor "STUN".
    let len = msg.len() - 20 + 8;
    msg[2..4].copy_from_slice(&(len as u16).to_be_bytes());
    let crc = crc32fast::hash(&msg) ^ 0x5354_554e;
    msg.extend_from_slice(&0x8028u16.to_be_bytes());
    msg.extend_from_slice(&4u16.to_be_bytes());
    msg.extend_from_slice(&crc.to_be_bytes());
    msg
}

/// Plays the peer's ICE agent: answers every ICE check the SFU sent, so the pair the
/// fuzzer's binding requests opened gets nominated and what follows reaches DTLS. Bounded:
/// the SFU answers answers with nothing, but a few rounds cover its retries.
fn answer_checks(engine: &mut Engine, t: Instant, answering: bool) {
    for _ in 0..4 {
        let out: Vec<_> = engine.drain_datagrams().collect();
        if !answering {
            return;
        }
        let mut answered = false;
        for d in out {
            if let Some(response) = binding_response(&d.contents, d.source) {
                engine.handle_datagram(t, d.proto, d.destination, d.source, &response);
                answered = true;
            }
        }
        if !answered {
            return;
        }
    }
}

// ---------------------------------------------------------------------------------------
// ICE-TCP framing

thread_local! {
    static RUNTIME: tokio::runtime::Runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .expect("a runtime");
}

/// A TCP media connection's byte stream through the RFC 4571 frame reader: the frames it
/// hands on are exactly the well-formed frames the stream starts with.
pub fn fuzz_tcp(data: &[u8]) {
    let peer = addr("10.0.0.2:6000");
    // Every frame takes at least 3 bytes: the queue never fills.
    let (tx, mut rx) = tokio::sync::mpsc::channel(data.len() / 3 + 1);
    RUNTIME.with(|rt| rt.block_on(read_frames(data, peer, &tx)));
    let mut at = 0;
    while let Ok(event) = rx.try_recv() {
        let TcpEvent::Frame {
            peer: from,
            data: frame,
        } = event
        else {
            panic!("the reader sends only frames");
        };
        assert_eq!(from, peer);
        assert!((1..=MAX_DATAGRAM).contains(&frame.len()));
        assert_eq!(&data[at..at + 2], &(frame.len() as u16).to_be_bytes());
        assert_eq!(&data[at + 2..at + 2 + frame.len()], &frame[..]);
        at += 2 + frame.len();
    }
    // It stopped at the end, at a length it does not take, or at a cut frame.
    let rest = &data[at..];
    if rest.len() >= 2 {
        let n = usize::from(u16::from_be_bytes([rest[0], rest[1]]));
        assert!(
            n == 0 || n > MAX_DATAGRAM || rest.len() < 2 + n,
            "a well-formed frame of {n} bytes was not read"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The token seeds are tokens the target's server signed, so mutations start from a
    /// valid signature.
    #[test]
    fn the_token_seed_is_valid() {
        let token = auth()
            .mint(
                &MeetingId::new("m1"),
                &UserId::new("host"),
                0,
                1_700_000_000_000,
            )
            .expect("mints");
        let seed = std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/corpus/token/valid.txt"
        ))
        .unwrap_or_default();
        assert_eq!(seed.trim(), token, "corpus/token/valid.txt");
        assert!(auth().verify(&token).is_ok());
    }

    /// The harness's binding request is a real one: the session takes it and answers, so
    /// what the fuzzer sends after it reaches the session rather than being dropped.
    #[test]
    fn a_wrapped_binding_request_is_taken_and_answered() {
        let now = epoch();
        with_engine(|engine| {
            let answer = engine
                .publish(key("host"), PUBLISH_OFFER, &[], MediaKinds::BOTH, now)
                .expect("the seed offer is answered")
                .answer;
            engine.drain_datagrams();
            let creds = ice_creds(&answer);
            let peer = addr("10.0.0.2:6000");
            let request = binding_request(&creds, b"0123456789ab");
            assert!(engine.handle_datagram(now, Protocol::Udp, peer, addr(SFU_V4), &request));
            let out: Vec<_> = engine.drain_datagrams().collect();
            assert!(
                out.iter()
                    .any(|d| d.destination == peer && d.contents.starts_with(&[0x01, 0x01])),
                "a binding success response"
            );
            // A wrong password is refused.
            let wrong = IceCreds {
                pwd: "not the password".into(),
                ..creds
            };
            let request = binding_request(&wrong, b"0123456789ab");
            let stranger = addr("10.0.0.9:7000");
            assert!(!engine.handle_datagram(now, Protocol::Udp, stranger, addr(SFU_V4), &request));
        });
    }

    /// With the peer's ICE agent played by the harness, ICE completes and DTLS starts: the
    /// fuzzer's later datagrams meet a live DTLS endpoint.
    #[test]
    fn ice_completes_with_the_harness_answering_checks() {
        let now = epoch();
        with_engine(|engine| {
            let answer = engine
                .publish(key("host"), PUBLISH_OFFER, &[], MediaKinds::BOTH, now)
                .expect("answered")
                .answer;
            let creds = ice_creds(&answer);
            let peer = addr("10.0.0.2:6000");
            let request = binding_request(&creds, b"0123456789ab");
            assert!(engine.handle_datagram(now, Protocol::Udp, peer, addr(SFU_V4), &request));
            let mut dtls = false;
            let mut t = now;
            for _ in 0..40 {
                t += Duration::from_millis(25);
                engine.handle_timeout(t);
                for _ in 0..4 {
                    let out: Vec<_> = engine.drain_datagrams().collect();
                    dtls |= out.iter().any(|d| d.contents.first() == Some(&22));
                    for d in out {
                        if let Some(r) = binding_response(&d.contents, d.source) {
                            engine.handle_datagram(t, d.proto, d.destination, d.source, &r);
                        }
                    }
                }
                let request = binding_request(&creds, b"abcdefghijkl");
                engine.handle_datagram(t, Protocol::Udp, peer, addr(SFU_V4), &request);
            }
            assert!(!dtls, "the SFU is DTLS server (setup:passive): it waits");
            let hello = include_bytes!("../seeds/client_hello.bin");
            assert!(engine.handle_datagram(t, Protocol::Udp, peer, addr(SFU_V4), hello));
            let out: Vec<_> = engine.drain_datagrams().collect();
            assert!(
                out.iter()
                    .any(|d| d.destination == peer && d.contents.first() == Some(&22)),
                "a ServerHello flight: {} datagrams",
                out.len()
            );
        });
    }
}
