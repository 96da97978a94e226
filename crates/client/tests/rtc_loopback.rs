//! The client's WebRTC transport over real loopback WebRTC.
//!
//! A small relay built with webrtc-rs itself plays the SFU: it answers the [`PublishPeer`]'s
//! offer, answers each [`SubscribePeer`]'s offer with `TrackLocalStaticRTP` tracks fed with the
//! publisher's RTP packets, relays the subscriber's PLI to the publisher, and closes its
//! subscribers when the publisher goes away. Media is synthetic but real H.264 NAL framing
//! (SPS/PPS/IDR/non-IDR headers, 200 B .. 5 kB so FU-A and STAP-A are exercised) and
//! Opus-sized packets, each carrying its index, compared byte for byte on arrival.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use onstage_client::rtc::{
    EncodedFrame, MediaKind, PublishOptions, PublishPeer, RtcError, SubscribePeer, TransportConfig,
    H264_FMTP, H264_PAYLOAD_TYPE, OPUS_FMTP, OPUS_PAYLOAD_TYPE, START_BITRATE_BPS,
};
use onstage_client::ErrorCode;
use rtc::interceptor::{Attribute, Interceptor, Packet, Slot, StreamInfo, TaggedPacket};
use rtc::media_stream::MediaStreamTrack;
use rtc::peer_connection::configuration::interceptor_registry::{
    register_default_interceptors, Registry,
};
use rtc::peer_connection::configuration::media_engine::{
    MediaEngine, MIME_TYPE_H264, MIME_TYPE_OPUS,
};
use rtc::peer_connection::configuration::RTCConfigurationBuilder;
use rtc::peer_connection::transport::RTCDtlsTransportState;
use rtc::rtcp::payload_feedbacks::full_intra_request::FullIntraRequest;
use rtc::rtcp::payload_feedbacks::picture_loss_indication::PictureLossIndication;
use rtc::rtp_transceiver::rtp_sender::{
    RTCPFeedback, RTCRtpCodec, RTCRtpCodecParameters, RTCRtpCodingParameters,
    RTCRtpEncodingParameters, RtpCodecKind,
};
use rtc::sansio::Protocol;
use tokio::sync::{broadcast, watch};
use tokio::time::timeout;
use webrtc::media_stream::track_local::static_rtp::TrackLocalStaticRTP;
use webrtc::media_stream::track_local::{TrackLocal, TrackLocalEvent};
use webrtc::media_stream::track_remote::{TrackRemote, TrackRemoteEvent};
use webrtc::peer_connection::{
    PeerConnection, PeerConnectionBuilder, PeerConnectionEventHandler, RTCIceGatheringState,
    RTCSessionDescription,
};

const CONNECT: Duration = Duration::from_secs(10);
const EVENT: Duration = Duration::from_secs(10);

// ---------------------------------------------------------------------------------------------
// The relay
// ---------------------------------------------------------------------------------------------

type TestResult = Result<(), Box<dyn std::error::Error + Send + Sync>>;

fn fb(typ: &str, parameter: &str) -> RTCPFeedback {
    RTCPFeedback {
        typ: typ.into(),
        parameter: parameter.into(),
    }
}

fn relay_h264() -> RTCRtpCodec {
    RTCRtpCodec {
        mime_type: MIME_TYPE_H264.into(),
        clock_rate: 90_000,
        channels: 0,
        sdp_fmtp_line: H264_FMTP.into(),
        rtcp_feedback: vec![fb("nack", ""), fb("nack", "pli"), fb("ccm", "fir")],
    }
}

fn relay_opus() -> RTCRtpCodec {
    RTCRtpCodec {
        mime_type: MIME_TYPE_OPUS.into(),
        clock_rate: 48_000,
        channels: 2,
        sdp_fmtp_line: OPUS_FMTP.into(),
        rtcp_feedback: vec![],
    }
}

/// Marks inbound PLI/FIR for the application so the relay's outgoing tracks see them (as in
/// webrtc-rs's `rtcp-processing` example).
struct KeyframeRequestForwarder {
    read: VecDeque<TaggedPacket>,
    write: VecDeque<TaggedPacket>,
}

impl Protocol<TaggedPacket, TaggedPacket, ()> for KeyframeRequestForwarder {
    type Rout = TaggedPacket;
    type Wout = TaggedPacket;
    type Eout = ();
    type Error = rtc::shared::error::Error;
    type Time = Instant;

    fn handle_read(&mut self, mut msg: TaggedPacket) -> Result<(), Self::Error> {
        if let Packet::Rtcp(packets) = &msg.message.packet {
            let keep: Vec<Box<dyn rtc::rtcp::Packet>> = packets
                .iter()
                .filter(|p| {
                    p.as_any().is::<PictureLossIndication>() || p.as_any().is::<FullIntraRequest>()
                })
                .cloned()
                .collect();
            if keep.is_empty() {
                return Ok(());
            }
            msg.message.packet = Packet::Rtcp(keep);
            msg.message.add(Attribute::DeliverToApplication);
        }
        self.read.push_back(msg);
        Ok(())
    }
    fn poll_read(&mut self) -> Option<TaggedPacket> {
        self.read.pop_front()
    }
    fn handle_write(&mut self, msg: TaggedPacket) -> Result<(), Self::Error> {
        self.write.push_back(msg);
        Ok(())
    }
    fn poll_write(&mut self) -> Option<TaggedPacket> {
        self.write.pop_front()
    }
}

impl Interceptor for KeyframeRequestForwarder {
    fn bind_local_stream(&mut self, _: &StreamInfo) {}
    fn unbind_local_stream(&mut self, _: &StreamInfo) {}
    fn bind_remote_stream(&mut self, _: &StreamInfo) {}
    fn unbind_remote_stream(&mut self, _: &StreamInfo) {}
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Audio,
    Video,
}

struct RelayHandler {
    gathering: watch::Sender<RTCIceGatheringState>,
    /// Set for the publisher-facing connection only.
    inbound: Option<Arc<Inbound>>,
}

/// What the relay learned from the publisher.
struct Inbound {
    packets: broadcast::Sender<(Kind, rtc::rtp::Packet)>,
    video: Mutex<Option<(Arc<dyn TrackRemote>, u32)>>,
}

#[async_trait::async_trait]
impl PeerConnectionEventHandler for RelayHandler {
    async fn on_ice_gathering_state_change(&self, state: RTCIceGatheringState) {
        self.gathering.send_replace(state);
    }

    async fn on_track(&self, track: Arc<dyn TrackRemote>) {
        let Some(inbound) = self.inbound.clone() else {
            return;
        };
        tokio::spawn(async move {
            let kind = match track.kind().await {
                RtpCodecKind::Video => Kind::Video,
                _ => Kind::Audio,
            };
            let ssrc = track.ssrcs().await.first().copied().unwrap_or_default();
            if kind == Kind::Video {
                *inbound.video.lock().expect("relay lock") = Some((Arc::clone(&track), ssrc));
            }
            while let Some(event) = track.poll().await {
                if let TrackRemoteEvent::OnRtpPacket(packet) = event {
                    // No subscriber yet is fine: the packet is simply not forwarded.
                    let _ = inbound.packets.send((kind, packet));
                }
            }
        });
    }
}

async fn relay_peer(
    handler: RelayHandler,
    forward_keyframe_requests: bool,
) -> Result<Arc<dyn PeerConnection>, Box<dyn std::error::Error + Send + Sync>> {
    let mut engine = MediaEngine::default();
    engine.register_codec(
        RTCRtpCodecParameters {
            rtp_codec: relay_h264(),
            payload_type: H264_PAYLOAD_TYPE,
        },
        RtpCodecKind::Video,
    )?;
    engine.register_codec(
        RTCRtpCodecParameters {
            rtp_codec: relay_opus(),
            payload_type: OPUS_PAYLOAD_TYPE,
        },
        RtpCodecKind::Audio,
    )?;
    let mut registry = register_default_interceptors(Registry::new(), &mut engine)?;
    if forward_keyframe_requests {
        registry = registry.with(
            Slot::from(14_000),
            KeyframeRequestForwarder {
                read: VecDeque::new(),
                write: VecDeque::new(),
            },
        );
    }
    let pc = PeerConnectionBuilder::new()
        .with_configuration(RTCConfigurationBuilder::new().build())
        .with_media_engine(engine)
        .with_interceptor_registry(registry)
        .with_handler(Arc::new(handler))
        .with_udp_addrs(vec!["127.0.0.1:0".to_string()])
        .build()
        .await?;
    Ok(Arc::new(pc))
}

async fn answer(
    pc: &dyn PeerConnection,
    gathering: &watch::Sender<RTCIceGatheringState>,
    offer: &str,
) -> Result<String, Box<dyn std::error::Error + Send + Sync>> {
    let mut gathered = gathering.subscribe();
    pc.set_remote_description(RTCSessionDescription::offer(offer.to_owned())?)
        .await?;
    let answer = pc.create_answer(None).await?;
    pc.set_local_description(answer).await?;
    timeout(
        EVENT,
        gathered.wait_for(|g| *g == RTCIceGatheringState::Complete),
    )
    .await??;
    Ok(pc.local_description().await.ok_or("no answer")?.sdp)
}

async fn dtls_closed(pc: &dyn PeerConnection) -> bool {
    for transceiver in pc.get_transceivers().await {
        if let Ok(Some(receiver)) = transceiver.receiver().await {
            if let Ok(Some(dtls)) = receiver.transport().await {
                return matches!(
                    dtls.state().await,
                    Ok(RTCDtlsTransportState::Closed | RTCDtlsTransportState::Failed)
                );
            }
        }
    }
    false
}

/// A one-publisher SFU stand-in.
struct Relay {
    publisher: Arc<dyn PeerConnection>,
    inbound: Arc<Inbound>,
    subscribers: Arc<tokio::sync::Mutex<Vec<Arc<dyn PeerConnection>>>>,
}

impl Relay {
    /// Answers the publisher's offer; returns the relay and the answer SDP.
    async fn for_publisher(
        offer: &str,
    ) -> Result<(Relay, String), Box<dyn std::error::Error + Send + Sync>> {
        let inbound = Arc::new(Inbound {
            packets: broadcast::channel(4096).0,
            video: Mutex::new(None),
        });
        let gathering = watch::channel(RTCIceGatheringState::New).0;
        let handler = RelayHandler {
            gathering: gathering.clone(),
            inbound: Some(Arc::clone(&inbound)),
        };
        let publisher = relay_peer(handler, false).await?;
        let sdp = answer(publisher.as_ref(), &gathering, offer).await?;
        let relay = Relay {
            publisher,
            inbound,
            subscribers: Arc::default(),
        };
        relay.watch_publisher();
        Ok((relay, sdp))
    }

    /// Like an SFU told that the publisher left: when the publisher's DTLS closes, every
    /// subscriber connection is closed.
    fn watch_publisher(&self) {
        let publisher = Arc::downgrade(&self.publisher);
        let subscribers = Arc::clone(&self.subscribers);
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_millis(50)).await;
                let Some(pc) = publisher.upgrade() else {
                    return;
                };
                if dtls_closed(pc.as_ref()).await {
                    for sub in subscribers.lock().await.iter() {
                        let _ = sub.close().await;
                    }
                    return;
                }
            }
        });
    }

    /// Answers a subscriber's offer with tracks fed from the publisher.
    async fn add_subscriber(
        &self,
        offer: &str,
    ) -> Result<String, Box<dyn std::error::Error + Send + Sync>> {
        let gathering = watch::channel(RTCIceGatheringState::New).0;
        let handler = RelayHandler {
            gathering: gathering.clone(),
            inbound: None,
        };
        let pc = relay_peer(handler, true).await?;
        let mut tracks = Vec::new();
        for (kind, codec, ssrc) in [
            (Kind::Audio, relay_opus(), 0x1111_0001u32),
            (Kind::Video, relay_h264(), 0x1111_0002u32),
        ] {
            let codec_kind = match kind {
                Kind::Audio => RtpCodecKind::Audio,
                Kind::Video => RtpCodecKind::Video,
            };
            let track = Arc::new(TrackLocalStaticRTP::new(MediaStreamTrack::new(
                "relay".into(),
                format!("relay-{kind:?}"),
                format!("relay-{kind:?}"),
                codec_kind,
                vec![RTCRtpEncodingParameters {
                    rtp_coding_parameters: RTCRtpCodingParameters {
                        ssrc: Some(ssrc),
                        ..Default::default()
                    },
                    codec,
                    ..Default::default()
                }],
            )));
            pc.add_track(Arc::clone(&track) as Arc<dyn TrackLocal>)
                .await?;
            tracks.push((kind, track, ssrc));
        }
        let sdp = answer(pc.as_ref(), &gathering, offer).await?;

        // Forward the publisher's packets, rewriting the SSRC (the payload types are the same
        // on both legs).
        let mut packets = self.inbound.packets.subscribe();
        let out = tracks.clone();
        tokio::spawn(async move {
            loop {
                match packets.recv().await {
                    Ok((kind, mut packet)) => {
                        if let Some((_, track, ssrc)) = out.iter().find(|(k, _, _)| *k == kind) {
                            packet.header.ssrc = *ssrc;
                            // Before the track is bound (not negotiated yet) writes fail: drop.
                            let _ = track.write_rtp(packet).await;
                        }
                    }
                    Err(broadcast::error::RecvError::Lagged(_)) => continue,
                    Err(broadcast::error::RecvError::Closed) => return,
                }
            }
        });

        // Relay keyframe requests from the subscriber to the publisher.
        if let Some((_, video_track, _)) = tracks.iter().find(|(k, _, _)| *k == Kind::Video) {
            let video_track = Arc::clone(video_track);
            let inbound = Arc::clone(&self.inbound);
            tokio::spawn(async move {
                while let Some(event) = video_track.poll().await {
                    let TrackLocalEvent::OnRtcpPacket(packets) = event else {
                        continue;
                    };
                    let wants_keyframe = packets.iter().any(|p| {
                        p.as_any().is::<PictureLossIndication>()
                            || p.as_any().is::<FullIntraRequest>()
                    });
                    let publisher_video = inbound.video.lock().expect("relay lock").clone();
                    if let (true, Some((track, media_ssrc))) = (wants_keyframe, publisher_video) {
                        let _ = track
                            .write_rtcp(vec![Box::new(PictureLossIndication {
                                sender_ssrc: 0,
                                media_ssrc,
                            })])
                            .await;
                    }
                }
            });
        }
        self.subscribers.lock().await.push(pc);
        Ok(sdp)
    }

    async fn close(&self) {
        for sub in self.subscribers.lock().await.iter() {
            let _ = sub.close().await;
        }
        let _ = self.publisher.close().await;
    }
}

// ---------------------------------------------------------------------------------------------
// Synthetic media
// ---------------------------------------------------------------------------------------------

/// NAL units of access unit `i`: every 10th is a keyframe (SPS, PPS, IDR), the rest one
/// non-IDR slice. Sizes cycle through 200 B .. 5 kB. No zero bytes, so no accidental start codes.
fn access_unit(i: usize) -> Vec<Vec<u8>> {
    coded_frame(i, i % 10 == 0)
}

fn coded_frame(i: usize, keyframe: bool) -> Vec<Vec<u8>> {
    let nal = |header: u8, len: usize| -> Vec<u8> {
        let mut v = Vec::with_capacity(len);
        v.push(header);
        v.push(0x80 | (i >> 7) as u8);
        v.push(0x80 | (i & 0x7f) as u8);
        v.extend((3..len).map(|j| ((i * 31 + j * 7) % 251 + 1) as u8));
        v
    };
    let size = 200 + (i * 997) % 4800;
    if keyframe {
        vec![nal(0x67, 12), nal(0x68, 6), nal(0x65, size)]
    } else {
        vec![nal(0x41, size)]
    }
}

fn annex_b(nals: &[Vec<u8>]) -> Vec<u8> {
    let mut out = Vec::new();
    for nal in nals {
        out.extend_from_slice(&[0, 0, 0, 1]);
        out.extend_from_slice(nal);
    }
    out
}

/// Splits Annex-B into NAL units (3- or 4-byte start codes).
fn split_annex_b(data: &[u8]) -> Vec<Vec<u8>> {
    let mut units: Vec<Vec<u8>> = Vec::new();
    let mut i = 0;
    let mut current: Option<usize> = None;
    while i + 3 <= data.len() {
        if data[i] == 0 && data[i + 1] == 0 && data[i + 2] == 1 {
            if let Some(start) = current {
                let mut end = i;
                if end > start && data[end - 1] == 0 {
                    end -= 1;
                }
                units.push(data[start..end].to_vec());
            }
            i += 3;
            current = Some(i);
        } else {
            i += 1;
        }
    }
    if let Some(start) = current {
        units.push(data[start..].to_vec());
    }
    units
}

fn opus_packet(i: usize) -> Vec<u8> {
    let len = 60 + (i * 13) % 61;
    let mut v = vec![0xFC, (i >> 8) as u8, i as u8];
    v.extend((3..len).map(|j| (i + j) as u8));
    v
}

// ---------------------------------------------------------------------------------------------
// Setup helpers
// ---------------------------------------------------------------------------------------------

struct Session {
    publisher: Arc<PublishPeer>,
    subscriber: Arc<SubscribePeer>,
    relay: Relay,
}

async fn session() -> Result<Session, Box<dyn std::error::Error + Send + Sync>> {
    let t0 = Instant::now();
    let config = TransportConfig::loopback();
    let (publisher, offer) = PublishPeer::with_config(
        PublishOptions {
            audio: true,
            video: true,
            ..PublishOptions::default()
        },
        &config,
    )
    .await?;
    let (relay, answer) = Relay::for_publisher(&offer).await?;
    publisher.apply_answer(&answer).await?;
    publisher.connected(CONNECT).await?;
    let t_pub = t0.elapsed();

    let t1 = Instant::now();
    let (subscriber, offer) = SubscribePeer::with_config(&config).await?;
    let answer = relay.add_subscriber(&offer).await?;
    subscriber.apply_answer(&answer).await?;
    subscriber.connected(CONNECT).await?;
    eprintln!(
        "timing: publisher offer->connected {:?}, subscriber offer->connected {:?}",
        t_pub,
        t1.elapsed()
    );
    Ok(Session {
        publisher: Arc::new(publisher),
        subscriber: Arc::new(subscriber),
        relay,
    })
}

/// Sends `n` video access units and `n` audio packets, paced at 5 ms per step.
async fn send_media(publisher: &PublishPeer, range: std::ops::Range<usize>) -> TestResult {
    let mut tick = tokio::time::interval(Duration::from_millis(5));
    for i in range {
        tick.tick().await;
        publisher
            .write_video(&annex_b(&access_unit(i)), Duration::from_millis(33))
            .await?;
        publisher
            .write_audio(&opus_packet(i), Duration::from_millis(20))
            .await?;
    }
    Ok(())
}

async fn next_frame(
    frames: &mut tokio::sync::mpsc::Receiver<EncodedFrame>,
) -> Result<EncodedFrame, Box<dyn std::error::Error + Send + Sync>> {
    Ok(timeout(EVENT, frames.recv())
        .await?
        .ok_or("frame stream ended")?)
}

// ---------------------------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn media_arrives_byte_exact_in_order_with_keyframe_flags() -> TestResult {
    const N: usize = 60;
    let s = session().await?;
    let mut frames = s.subscriber.frames();
    let mut bitrate = s.publisher.bitrate_estimates();
    assert_eq!(*bitrate.borrow(), START_BITRATE_BPS);

    let started = Instant::now();
    let publisher = Arc::clone(&s.publisher);
    let sender = tokio::spawn(async move { send_media(&publisher, 0..N).await });

    let mut video = Vec::new();
    let mut audio = Vec::new();
    let mut first_frame = None;
    while video.len() < N || audio.len() < N {
        let frame = next_frame(&mut frames).await?;
        first_frame.get_or_insert(started.elapsed());
        match frame.kind {
            MediaKind::Video => video.push(frame),
            MediaKind::Audio => audio.push(frame),
        }
    }
    sender.await??;
    eprintln!(
        "timing: first write -> first frame {:?}, all {} frames {:?}",
        first_frame.unwrap_or_default(),
        2 * N,
        started.elapsed()
    );

    for (i, frame) in video.iter().enumerate() {
        assert_eq!(
            split_annex_b(&frame.data),
            access_unit(i),
            "video access unit {i}"
        );
        assert_eq!(frame.keyframe, i % 10 == 0, "keyframe flag of {i}");
    }
    for pair in video.windows(2) {
        // 33 ms at 90 kHz, as written.
        assert_eq!(
            pair[1].rtp_timestamp.wrapping_sub(pair[0].rtp_timestamp),
            2970
        );
    }
    for (i, frame) in audio.iter().enumerate() {
        assert_eq!(&frame.data[..], &opus_packet(i)[..], "opus packet {i}");
        assert!(!frame.keyframe);
    }
    for pair in audio.windows(2) {
        assert_eq!(
            pair[1].rtp_timestamp.wrapping_sub(pair[0].rtp_timestamp),
            960
        );
    }

    let sent = s.publisher.stats();
    assert_eq!(sent.video_frames_sent, N as u64);
    assert_eq!(sent.audio_frames_sent, N as u64);
    // Every keyframe is at least a STAP-A + FU-A packets; every audio frame one packet.
    assert!(sent.packets_sent > 2 * N as u64, "{sent:?}");
    let received = s.subscriber.stats();
    assert_eq!(received.video_frames, N as u64, "{received:?}");
    assert_eq!(received.audio_frames, N as u64, "{received:?}");
    assert_eq!(received.frames_completed, 2 * N as u64);
    assert_eq!(received.frames_dropped, 0);
    assert!(received.packets_received >= sent.packets_sent - sent.retransmissions_sent);
    assert!(received.bytes_received > 0);

    // The relay's receiver reports (no loss) raise the loss-based estimate within a few
    // report intervals.
    timeout(EVENT, bitrate.wait_for(|bps| *bps > START_BITRATE_BPS)).await??;

    s.relay.close().await;
    s.publisher.close().await;
    s.subscriber.close().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscriber_pli_reaches_the_publisher() -> TestResult {
    let s = session().await?;
    let mut requests = s.publisher.keyframe_requests();
    let mut frames = s.subscriber.frames();
    send_media(&s.publisher, 0..3).await?;
    // Wait for video to arrive so both the relay and the subscriber know the video SSRCs.
    loop {
        if next_frame(&mut frames).await?.kind == MediaKind::Video {
            break;
        }
    }
    assert!(
        requests.try_recv().is_err(),
        "no keyframe request before asking: the stream started with one"
    );

    s.subscriber.request_keyframe().await?;
    timeout(EVENT, requests.recv())
        .await?
        .ok_or("keyframe request channel closed")?;
    assert_eq!(s.publisher.stats().keyframe_requests, 1);
    assert_eq!(s.subscriber.stats().keyframe_requests_sent, 1);

    s.relay.close().await;
    s.publisher.close().await;
    s.subscriber.close().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn late_subscriber_gets_a_keyframe_by_asking_for_one() -> TestResult {
    let s = session().await?;
    let mut requests = s.publisher.keyframe_requests();
    let mut frames = s.subscriber.frames();
    let joined = Instant::now();
    // An encoder loop that only ever sends P-frames unless asked for a keyframe, as if the
    // subscriber had joined mid-stream.
    let publisher = Arc::clone(&s.publisher);
    let encoder = tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_millis(10));
        let mut keyframes_sent = Vec::new();
        for i in 1..300usize {
            tick.tick().await;
            let keyframe = requests.try_recv().is_ok();
            if keyframe {
                keyframes_sent.push(i);
            }
            let au = annex_b(&coded_frame(i, keyframe));
            if publisher
                .write_video(&au, Duration::from_millis(33))
                .await
                .is_err()
            {
                break;
            }
        }
        keyframes_sent
    });
    let first = loop {
        let frame = next_frame(&mut frames).await?;
        if frame.kind == MediaKind::Video {
            break frame;
        }
    };
    let elapsed = joined.elapsed();
    assert!(
        first.keyframe,
        "the first video frame delivered is a keyframe"
    );
    let stats = s.subscriber.stats();
    assert!(
        stats.frames_discarded > 0,
        "P-frames before it were dropped"
    );
    assert!(stats.keyframe_requests_sent >= 1, "{stats:?}");
    eprintln!("timing: P-frames only -> first (key)frame delivered {elapsed:?}");
    // Delivery continues after it (audio is not sent in this test).
    assert_eq!(next_frame(&mut frames).await?.kind, MediaKind::Video);

    s.publisher.close().await;
    let keyframes_sent = encoder.await?;
    assert!(!keyframes_sent.is_empty());
    assert_eq!(
        split_annex_b(&first.data),
        coded_frame(keyframes_sent[0], true)
    );
    s.relay.close().await;
    s.subscriber.close().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publisher_close_ends_the_subscriber_stream() -> TestResult {
    let s = session().await?;
    let mut frames = s.subscriber.frames();
    send_media(&s.publisher, 0..5).await?;
    next_frame(&mut frames).await?;

    let closed_at = Instant::now();
    s.publisher.close().await;
    assert!(matches!(
        s.publisher
            .write_video(&annex_b(&access_unit(5)), Duration::from_millis(33))
            .await,
        Err(RtcError::Closed)
    ));
    timeout(EVENT, s.subscriber.closed()).await?;
    // The frame stream drains and then ends.
    timeout(EVENT, async { while frames.recv().await.is_some() {} }).await?;
    eprintln!(
        "timing: publisher close -> subscriber stream ended {:?}",
        closed_at.elapsed()
    );
    assert!(matches!(
        s.subscriber.request_keyframe().await,
        Err(RtcError::Closed)
    ));
    s.relay.close().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_answer_is_bad_request() -> TestResult {
    let config = TransportConfig::loopback();
    let (publisher, _offer) = PublishPeer::with_config(
        PublishOptions {
            audio: false,
            video: true,
            ..PublishOptions::default()
        },
        &config,
    )
    .await?;
    for bad in ["", "this is not sdp", "v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\n"] {
        let err = publisher
            .apply_answer(bad)
            .await
            .expect_err("a bad answer must be refused");
        assert_eq!(err.code(), ErrorCode::BadRequest, "{bad:?}: {err}");
    }
    assert!(matches!(
        publisher
            .write_audio(&[1, 2, 3], Duration::from_millis(20))
            .await,
        Err(RtcError::NoTrack(MediaKind::Audio))
    ));
    publisher.close().await;

    let (subscriber, _offer) = SubscribePeer::with_config(&config).await?;
    let err = subscriber
        .apply_answer("garbage")
        .await
        .expect_err("a bad answer must be refused");
    assert_eq!(err.code(), ErrorCode::BadRequest);
    subscriber.close().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unanswered_peer_times_out_and_offer_has_host_candidates() -> TestResult {
    let (subscriber, offer) = SubscribePeer::with_config(&TransportConfig::loopback()).await?;
    assert!(offer.contains("a=candidate:"), "non-trickle offer: {offer}");
    assert!(offer.contains("127.0.0.1"), "loopback candidate: {offer}");
    assert!(offer.contains("H264/90000") && offer.contains("opus/48000/2"));
    assert!(offer.contains("profile-level-id=42e01f"));
    assert!(!offer.contains("VP8"), "only H.264 and Opus are offered");
    let err = subscriber
        .connected(Duration::from_millis(200))
        .await
        .expect_err("nobody answered");
    assert_eq!(err.code(), ErrorCode::ConnectionLost);
    subscriber.close().await;
    let err = subscriber
        .connected(Duration::from_millis(200))
        .await
        .expect_err("closed");
    assert!(matches!(err, RtcError::Closed), "{err}");
    Ok(())
}

/// Both handles must be shareable across tasks.
#[test]
fn peers_are_send_and_sync() {
    fn check<T: Send + Sync>() {}
    check::<PublishPeer>();
    check::<SubscribePeer>();
    check::<EncodedFrame>();
    check::<RtcError>();
}
