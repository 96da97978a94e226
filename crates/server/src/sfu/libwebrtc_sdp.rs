//! The SFU's answers to offers of a real browser: what Chromium 156 (libwebrtc) offered
//! through the web Stage SDK, captured from headless Chromium (`testdata/`), and what it
//! needs to find in the answer for its media to recover and adapt: H.264 in the
//! packetization our publishers use (mode 1, Constrained Baseline 3.1, 42e01f) with RTX
//! (retransmission on its own payload type, `apt`), NACK, PLI and transport-wide congestion
//! feedback; Opus with transport-wide feedback. The browser tests (tests/browser/recovery.py)
//! show the same on a real network; these tests show it without one, in milliseconds.

use std::collections::HashMap;
use std::time::Instant;

use onstage_proto::{MediaKinds, MeetingId, UserId};

use super::engine::{Engine, LocalCandidate, ParticipantKey};

/// Chromium's offer to publish (sendonly audio + video, H.264 only by the SDK's codec
/// preferences), read from the peer connection once its host candidates were gathered.
const PUBLISH_OFFER: &str = include_str!("testdata/chromium-publish-offer.sdp");
/// Chromium's offer to receive a publisher (recvonly audio + video).
const SUBSCRIBE_OFFER: &str = include_str!("testdata/chromium-subscribe-offer.sdp");

const TWCC: &str = "http://www.ietf.org/id/draft-holmer-rmcat-transport-wide-cc-extensions-01";

fn key(user: &str) -> ParticipantKey {
    (MeetingId::new("m"), UserId::new(user))
}

fn engine() -> Engine {
    Engine::new(vec![
        LocalCandidate::udp("10.0.0.1:5000".parse().expect("addr")),
        LocalCandidate::tcp("10.0.0.1:5000".parse().expect("addr")),
    ])
}

/// One media section of an SDP: its kind and its attribute lines (without `a=`).
struct Section {
    kind: String,
    attrs: Vec<String>,
}

impl Section {
    fn has(&self, attr: &str) -> bool {
        self.attrs.iter().any(|a| a == attr)
    }

    /// Payload type -> (encoding as in rtpmap, fmtp parameters).
    fn payloads(&self) -> HashMap<u8, (String, String)> {
        let mut out = HashMap::new();
        for a in &self.attrs {
            if let Some((pt, enc)) = a.strip_prefix("rtpmap:").and_then(|r| r.split_once(' ')) {
                if let Ok(pt) = pt.parse() {
                    out.insert(pt, (enc.to_string(), String::new()));
                }
            }
        }
        for a in &self.attrs {
            if let Some((pt, params)) = a.strip_prefix("fmtp:").and_then(|r| r.split_once(' ')) {
                if let Some(p) = pt.parse().ok().and_then(|pt: u8| out.get_mut(&pt)) {
                    p.1 = params.to_string();
                }
            }
        }
        out
    }

    /// The H.264 payload types of packetization mode 1, profile-level-id 42e01f.
    fn baseline_h264(&self) -> Vec<u8> {
        let mut pts: Vec<u8> = self
            .payloads()
            .into_iter()
            .filter(|(_, (enc, fmtp))| {
                let fmtp = fmtp.to_ascii_lowercase();
                enc.eq_ignore_ascii_case("H264/90000")
                    && fmtp.split(';').any(|p| p == "packetization-mode=1")
                    && fmtp.split(';').any(|p| p == "profile-level-id=42e01f")
            })
            .map(|(pt, _)| pt)
            .collect();
        pts.sort_unstable();
        pts
    }

    /// The RTX payload type whose `apt` is `pt`.
    fn rtx_for(&self, pt: u8) -> Option<u8> {
        self.payloads()
            .into_iter()
            .find(|(_, (enc, fmtp))| {
                enc.eq_ignore_ascii_case("rtx/90000")
                    && fmtp.split(';').any(|p| p == format!("apt={pt}"))
            })
            .map(|(rtx, _)| rtx)
    }

    fn direction(&self) -> &str {
        ["sendrecv", "sendonly", "recvonly", "inactive"]
            .into_iter()
            .find(|d| self.has(d))
            .unwrap_or("sendrecv")
    }

    fn extmap(&self, uri: &str) -> bool {
        self.attrs
            .iter()
            .any(|a| a.starts_with("extmap:") && a.split_whitespace().nth(1) == Some(uri))
    }
}

fn sections(sdp: &str) -> Vec<Section> {
    let mut out: Vec<Section> = Vec::new();
    for line in sdp.lines().map(str::trim) {
        if let Some(m) = line.strip_prefix("m=") {
            out.push(Section {
                kind: m.split_whitespace().next().unwrap_or_default().to_string(),
                attrs: Vec::new(),
            });
        } else if let (Some(a), Some(s)) = (line.strip_prefix("a="), out.last_mut()) {
            s.attrs.push(a.to_string());
        }
    }
    out
}

fn section<'a>(all: &'a [Section], kind: &str) -> &'a Section {
    let mut of_kind = all.iter().filter(|s| s.kind == kind);
    let s = of_kind
        .next()
        .unwrap_or_else(|| panic!("no {kind} section"));
    assert!(of_kind.next().is_none(), "one {kind} section");
    s
}

/// What libwebrtc needs of the answer's video: the offered baseline H.264 payload type,
/// its RTX, NACK, PLI and transport-cc; and of its audio: Opus with transport-cc.
fn assert_recovery_kept(offer: &str, answer: &str) {
    let offered = sections(offer);
    let answered = sections(answer);

    let video = section(&answered, "video");
    let h264 = video.baseline_h264();
    assert_eq!(h264.len(), 1, "one baseline H.264 payload type: {h264:?}");
    let pt = h264[0];
    assert!(
        section(&offered, "video").baseline_h264().contains(&pt),
        "the answer's H.264 payload type {pt} is one the browser offered"
    );
    for fb in ["nack", "nack pli", "transport-cc"] {
        assert!(
            video.has(&format!("rtcp-fb:{pt} {fb}")),
            "video feedback {fb:?} kept: {:?}",
            video.attrs
        );
    }
    let rtx = video.rtx_for(pt).expect("an RTX payload type for H.264");
    assert_eq!(
        section(&offered, "video").rtx_for(pt),
        Some(rtx),
        "the RTX payload type is the browser's own for it"
    );
    assert!(
        video.extmap(TWCC),
        "video: the transport-wide sequence number"
    );
    assert!(video.has("rtcp-mux"));

    let audio = section(&answered, "audio");
    let opus: Vec<_> = audio
        .payloads()
        .into_iter()
        .filter(|(_, (enc, _))| enc.eq_ignore_ascii_case("opus/48000/2"))
        .collect();
    assert_eq!(opus.len(), 1, "Opus: {:?}", audio.attrs);
    assert!(audio.has(&format!("rtcp-fb:{} transport-cc", opus[0].0)));
    assert!(
        audio.extmap(TWCC),
        "audio: the transport-wide sequence number"
    );
}

#[test]
fn the_fixtures_are_what_chromium_offers() {
    for offer in [PUBLISH_OFFER, SUBSCRIBE_OFFER] {
        let video = sections(offer);
        let video = section(&video, "video");
        assert!(!video.baseline_h264().is_empty());
        assert!(offer.contains("a=group:BUNDLE 0 1"));
    }
    assert!(PUBLISH_OFFER.contains("a=sendonly"));
    assert!(SUBSCRIBE_OFFER.contains("a=recvonly"));
}

#[test]
fn a_chromium_publisher_gets_nack_rtx_pli_and_transport_cc() {
    let mut engine = engine();
    let publication = engine
        .publish(
            key("pub"),
            PUBLISH_OFFER,
            &[],
            MediaKinds::BOTH,
            Instant::now(),
        )
        .expect("Chromium's publish offer is accepted");
    assert_eq!(publication.kinds, MediaKinds::BOTH);
    assert_recovery_kept(PUBLISH_OFFER, &publication.answer);
    let answered = sections(&publication.answer);
    assert_eq!(section(&answered, "video").direction(), "recvonly");
    assert_eq!(section(&answered, "audio").direction(), "recvonly");
}

#[test]
fn a_chromium_viewer_gets_nack_rtx_pli_and_transport_cc_and_an_rtx_stream() {
    let mut engine = engine();
    let now = Instant::now();
    engine
        .publish(key("pub"), PUBLISH_OFFER, &[], MediaKinds::BOTH, now)
        .expect("publish");
    let answer = engine
        .subscribe(key("viewer"), key("pub"), SUBSCRIBE_OFFER, now)
        .expect("Chromium's subscribe offer is accepted");
    assert_recovery_kept(SUBSCRIBE_OFFER, &answer);
    let answered = sections(&answer);
    let video = section(&answered, "video");
    assert_eq!(video.direction(), "sendonly");
    // The SFU sends: it names its video stream and the RTX stream paired with it, so the
    // browser knows the retransmissions' SSRC.
    let fid = video
        .attrs
        .iter()
        .find_map(|a| a.strip_prefix("ssrc-group:FID "))
        .expect("an RTX stream (ssrc-group FID)");
    let ssrcs: Vec<&str> = fid.split_whitespace().collect();
    assert_eq!(ssrcs.len(), 2, "a media SSRC and its RTX SSRC: {fid}");
    assert_eq!(section(&answered, "audio").direction(), "sendonly");
}
