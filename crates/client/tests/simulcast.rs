//! Simulcast publishing against the SFU's own WebRTC stack: a str0m `Rtc` in RTP mode (as
//! the SFU runs it) answers the SDK's offer on a real loopback UDP socket and reports what
//! arrives. It tells the layers apart the way the SFU does: by the RID (and MID) header
//! extensions of the packets, since a simulcast offer carries no `a=ssrc` lines. Keyframe
//! requests go back per layer.

use std::collections::BTreeMap;
use std::net::{SocketAddr, UdpSocket};
use std::sync::mpsc as std_mpsc;
use std::time::{Duration, Instant};

use onstage_client::rtc::{PublishOptions, PublishPeer, TransportConfig};
use str0m::change::SdpOffer;
use str0m::media::{KeyframeRequestKind, MediaKind, Mid, Rid};
use str0m::net::{DatagramRecv, Protocol, Receive};
use str0m::{Candidate, Event, Input, Output, Rtc};

type TestResult = Result<(), Box<dyn std::error::Error + Send + Sync>>;

const CONNECT: Duration = Duration::from_secs(10);
const WAIT: Duration = Duration::from_secs(10);

fn rids() -> Vec<String> {
    ["q", "h", "f"].map(String::from).to_vec()
}

fn options(simulcast: Vec<String>) -> PublishOptions {
    PublishOptions {
        audio: true,
        video: true,
        simulcast,
        ..PublishOptions::default()
    }
}

/// The attribute lines of the offer's video section, in order.
fn video_section(sdp: &str) -> Vec<&str> {
    sdp.lines()
        .map(str::trim)
        .skip_while(|l| !l.starts_with("m=video"))
        .skip(1)
        .take_while(|l| !l.starts_with("m="))
        .collect()
}

/// What the answerer saw of one incoming RTP stream.
#[derive(Debug, Default, Clone)]
struct Seen {
    /// The RID str0m mapped the stream to.
    rid: Option<String>,
    mid: Option<String>,
    packets: u64,
    /// Packets whose own header extensions carried that RID and the video's MID.
    stamped: u64,
}

enum Command {
    /// Ask the publisher for a keyframe of this layer (a PLI for its stream).
    Keyframe(&'static str),
    Stop,
}

/// A str0m answerer on its own thread: answers `offer`, then reports every incoming
/// video stream by SSRC until stopped.
struct Answerer {
    commands: std_mpsc::Sender<Command>,
    seen: std_mpsc::Receiver<BTreeMap<u32, Seen>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Answerer {
    fn start(offer: &str) -> Result<(Answerer, String), Box<dyn std::error::Error + Send + Sync>> {
        let socket = UdpSocket::bind("127.0.0.1:0")?;
        let local = socket.local_addr()?;
        let mut rtc = Rtc::builder()
            .set_rtp_mode(true)
            .clear_codecs()
            .enable_h264(true)
            .enable_opus(true, false)
            .build(Instant::now());
        rtc.add_local_candidate(Candidate::host(local, "udp")?);
        let answer = rtc
            .sdp_api()
            .accept_offer(SdpOffer::from_sdp_string(offer)?)?;
        let answer = answer.to_sdp_string();
        let (commands, command_rx) = std_mpsc::channel();
        let (seen_tx, seen) = std_mpsc::channel();
        let thread = std::thread::spawn(move || run(rtc, socket, local, command_rx, seen_tx));
        Ok((
            Answerer {
                commands,
                seen,
                thread: Some(thread),
            },
            answer,
        ))
    }

    /// Waits until `done` holds for what has arrived, and returns it.
    fn wait_for(
        &self,
        what: &str,
        done: impl Fn(&BTreeMap<u32, Seen>) -> bool,
    ) -> BTreeMap<u32, Seen> {
        let deadline = Instant::now() + WAIT;
        let mut last = BTreeMap::new();
        while Instant::now() < deadline {
            if let Ok(seen) = self.seen.recv_timeout(Duration::from_millis(100)) {
                last = seen;
                if done(&last) {
                    return last;
                }
            }
        }
        panic!("timed out waiting for {what}; seen {last:?}");
    }
}

impl Drop for Answerer {
    fn drop(&mut self) {
        let _ = self.commands.send(Command::Stop);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn run(
    mut rtc: Rtc,
    socket: UdpSocket,
    local: SocketAddr,
    commands: std_mpsc::Receiver<Command>,
    seen_tx: std_mpsc::Sender<BTreeMap<u32, Seen>>,
) {
    let mut seen: BTreeMap<u32, Seen> = BTreeMap::new();
    let mut video_mid: Option<Mid> = None;
    let mut last_report = Instant::now();
    let mut buf = vec![0u8; 2000];
    loop {
        // Drain the outputs until str0m wants time to pass.
        let timeout = loop {
            match rtc.poll_output() {
                Ok(Output::Timeout(t)) => break t,
                Ok(Output::Transmit(t)) => {
                    let _ = socket.send_to(&t.contents, t.destination);
                }
                Ok(Output::Event(Event::MediaAdded(m))) if m.kind == MediaKind::Video => {
                    video_mid = Some(m.mid);
                }
                Ok(Output::Event(Event::RtpPacket(p))) => {
                    let ssrc = *p.header.ssrc;
                    let mut api = rtc.direct_api();
                    let Some((stream_mid, stream_rid)) =
                        api.stream_rx(&p.header.ssrc).map(|s| (s.mid(), s.rid()))
                    else {
                        continue;
                    };
                    if Some(stream_mid) != video_mid {
                        continue;
                    }
                    let rid = stream_rid.map(|r| r.to_string());
                    let mid = Some(stream_mid.to_string());
                    let entry = seen.entry(ssrc).or_default();
                    entry.rid.clone_from(&rid);
                    entry.mid.clone_from(&mid);
                    entry.packets += 1;
                    let ext = &p.header.ext_vals;
                    if ext.rid.map(|r| r.to_string()) == rid
                        && ext.mid.map(|m| m.to_string()) == mid
                        && rid.is_some()
                    {
                        entry.stamped += 1;
                    }
                }
                Ok(Output::Event(_)) => {}
                Err(e) => panic!("str0m: {e}"),
            }
        };
        match commands.try_recv() {
            Ok(Command::Stop) | Err(std_mpsc::TryRecvError::Disconnected) => return,
            Ok(Command::Keyframe(rid)) => {
                let mid = video_mid.expect("the video was negotiated");
                let mut api = rtc.direct_api();
                let rx = api
                    .stream_rx_by_mid(mid, Some(Rid::from(rid)))
                    .unwrap_or_else(|| panic!("no stream for rid {rid}"));
                rx.request_keyframe(KeyframeRequestKind::Pli);
                continue;
            }
            Err(std_mpsc::TryRecvError::Empty) => {}
        }
        if last_report.elapsed() > Duration::from_millis(50) {
            last_report = Instant::now();
            let _ = seen_tx.send(seen.clone());
        }
        let wait = timeout
            .saturating_duration_since(Instant::now())
            .clamp(Duration::from_millis(1), Duration::from_millis(20));
        socket.set_read_timeout(Some(wait)).expect("read timeout");
        let input = match socket.recv_from(&mut buf) {
            Ok((n, source)) => match DatagramRecv::try_from(&buf[..n]) {
                Ok(contents) => Input::Receive(
                    Instant::now(),
                    Receive {
                        proto: Protocol::Udp,
                        source,
                        destination: local,
                        contents,
                    },
                ),
                Err(_) => continue,
            },
            Err(_) => Input::Timeout(Instant::now()),
        };
        if let Err(e) = rtc.handle_input(input) {
            panic!("str0m input: {e}");
        }
    }
}

/// An H.264 access unit that looks like one to a packetizer: SPS + PPS + an IDR slice of
/// `len` bytes (several FU-A packets), or a non-IDR slice.
fn access_unit(i: usize, keyframe: bool, len: usize) -> Vec<u8> {
    let mut au = Vec::new();
    if keyframe {
        au.extend_from_slice(&[0, 0, 0, 1, 0x67, 0x42, 0xe0, 0x1f, 0x8d, 0x68]);
        au.extend_from_slice(&[0, 0, 0, 1, 0x68, 0xce, 0x3c, 0x80]);
    }
    au.extend_from_slice(&[0, 0, 0, 1, if keyframe { 0x65 } else { 0x41 }]);
    au.extend((0..len).map(|k| ((i * 31 + k) % 251) as u8 | 1));
    au
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_offer_describes_the_layers_lowest_first() -> TestResult {
    let config = TransportConfig::loopback();
    let (publisher, offer) = PublishPeer::with_config(options(rids()), &config).await?;
    let video = video_section(&offer);
    let rid_lines: Vec<&str> = video
        .iter()
        .copied()
        .filter(|l| l.starts_with("a=rid:") || l.starts_with("a=simulcast:"))
        .collect();
    assert_eq!(
        rid_lines,
        [
            "a=rid:q send",
            "a=rid:h send",
            "a=rid:f send",
            "a=simulcast:send q;h;f"
        ],
        "{offer}"
    );
    assert!(
        !video.iter().any(|l| l.starts_with("a=ssrc")),
        "a simulcast names its layers by RID, not SSRC: {offer}"
    );
    for uri in [
        "urn:ietf:params:rtp-hdrext:sdes:mid",
        "urn:ietf:params:rtp-hdrext:sdes:rtp-stream-id",
    ] {
        assert!(
            video
                .iter()
                .any(|l| l.starts_with("a=extmap:") && l.ends_with(uri)),
            "{uri} offered: {offer}"
        );
    }
    let layers = publisher.video_layers();
    assert_eq!(
        layers
            .iter()
            .map(|(rid, _)| rid.as_str())
            .collect::<Vec<_>>(),
        ["q", "h", "f"]
    );
    let mid = publisher
        .video_mid()
        .expect("the simulcast video has a MID");
    assert!(video.contains(&format!("a=mid:{mid}").as_str()), "{offer}");
    publisher.close().await;

    // Without simulcast (and with a single RID, which is no simulcast): the plain stream
    // of before, one SSRC announced, no RIDs.
    for simulcast in [Vec::new(), vec!["q".to_owned()]] {
        let (plain, offer) = PublishPeer::with_config(options(simulcast), &config).await?;
        let video = video_section(&offer);
        assert!(
            !video
                .iter()
                .any(|l| l.starts_with("a=rid") || l.starts_with("a=simulcast")),
            "{offer}"
        );
        let (rid, ssrc) = plain.video_layers().pop().expect("one layer");
        assert_eq!(rid, "");
        assert!(
            video
                .iter()
                .any(|l| l.starts_with(&format!("a=ssrc:{ssrc} "))),
            "{offer}"
        );
        assert_eq!(plain.video_mid(), None);
        plain.close().await;
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn str0m_tells_the_three_layers_apart_and_asks_each_for_keyframes() -> TestResult {
    let config = TransportConfig::loopback();
    let (publisher, offer) = PublishPeer::with_config(options(rids()), &config).await?;
    let (answerer, answer) = Answerer::start(&offer)?;
    publisher.apply_answer(&answer).await?;
    publisher.connected(CONNECT).await?;
    let layers = publisher.video_layers();

    // 30 frames of each layer, interleaved as the camera thread sends them, bigger layers
    // in bigger pictures (several packets each).
    let frame = Duration::from_millis(33);
    let mut tick = tokio::time::interval(Duration::from_millis(5));
    for i in 0..30 {
        tick.tick().await;
        for (layer, size) in [(0, 300), (1, 1_500), (2, 4_000)] {
            let au = access_unit(i, i == 0, size);
            publisher.write_video_layer(layer, &au, frame).await?;
        }
        publisher
            .write_audio(&[0xf8, 0xff, 0xfe], Duration::from_millis(20))
            .await?;
    }
    let seen = tokio::task::spawn_blocking(move || {
        let seen = answerer.wait_for("30 frames of every layer", |seen| {
            seen.len() == 3 && seen.values().all(|s| s.packets >= 30)
        });
        (answerer, seen)
    });
    let (answerer, seen) = seen.await?;
    for (rid, ssrc) in &layers {
        let stream = seen
            .get(ssrc)
            .unwrap_or_else(|| panic!("layer {rid} (SSRC {ssrc}) arrived: {seen:?}"));
        assert_eq!(stream.rid.as_deref(), Some(rid.as_str()), "{seen:?}");
        assert_eq!(stream.mid, publisher.video_mid(), "{seen:?}");
        assert_eq!(
            stream.stamped, stream.packets,
            "every packet of {rid} carries its RID and MID: {stream:?}"
        );
    }
    let stats = publisher.stats();
    assert_eq!(stats.video_frames_sent, 90);
    let per_layer: Vec<(&str, u64)> = stats
        .layers
        .iter()
        .map(|l| (l.rid.as_str(), l.frames_sent))
        .collect();
    assert_eq!(per_layer, [("q", 30), ("h", 30), ("f", 30)]);
    assert!(stats.layers[2].bytes_sent > stats.layers[1].bytes_sent);

    // A keyframe request names the layer it is for.
    let mut requests = publisher.keyframe_requests();
    for (index, rid) in [(1, "h"), (2, "f"), (0, "q")] {
        answerer.commands.send(Command::Keyframe(rid))?;
        let request = tokio::time::timeout(WAIT, requests.recv())
            .await?
            .ok_or("keyframe requests closed")?;
        assert_eq!(request.layer, index, "{rid}: {request:?}");
        assert_eq!(request.ssrc, layers[index].1);
    }
    assert_eq!(publisher.stats().keyframe_requests, 3);

    drop(answerer);
    publisher.close().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plain_stream_is_still_one_stream_without_rids() -> TestResult {
    let config = TransportConfig::loopback();
    let (publisher, offer) = PublishPeer::with_config(options(Vec::new()), &config).await?;
    let (answerer, answer) = Answerer::start(&offer)?;
    publisher.apply_answer(&answer).await?;
    publisher.connected(CONNECT).await?;
    for i in 0..10 {
        publisher
            .write_video(&access_unit(i, i == 0, 2_000), Duration::from_millis(33))
            .await?;
    }
    let seen = tokio::task::spawn_blocking(move || {
        let seen = answerer.wait_for("10 frames", |seen| seen.values().any(|s| s.packets >= 10));
        (answerer, seen)
    });
    let (answerer, seen) = seen.await?;
    assert_eq!(seen.len(), 1, "{seen:?}");
    let stream = seen.values().next().expect("one stream");
    assert_eq!(stream.rid, None);
    assert_eq!(stream.stamped, 0, "nothing stamped on a plain stream");
    drop(answerer);
    publisher.close().await;
    Ok(())
}
