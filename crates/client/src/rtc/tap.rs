//! [`RtcpTap`]: an interceptor that observes RTP/RTCP for the application, and stamps the
//! stream ids of simulcast packets.
//!
//! webrtc-rs 0.21 ends inbound RTCP inside the interceptor chain (a `NoopInterceptor` is always
//! last), so a sender never sees a PLI by default. Rather than marking packets for delivery and
//! polling each local track, the tap reads them where they pass and publishes what the
//! application needs straight into channels: keyframe requests, bandwidth estimates, counters.
//! Sitting wire-most, it sees inbound RTCP before any interceptor consumes it and outbound RTP
//! after every interceptor produced it (NACK retransmissions included).
//!
//! ## Simulcast stream ids
//! webrtc-rs 0.21 negotiates the MID and RID header extensions
//! (`urn:ietf:params:rtp-hdrext:sdes:mid`, `..:sdes:rtp-stream-id`, RFC 8852) but never
//! writes them, and an SFU (str0m) tells the layers of a simulcast video apart by them: an
//! offer with `a=rid` lines carries no `a=ssrc` lines. The publisher registers the SSRC it
//! chose for each layer ([`TapShared::register_layer`]) and the video's MID; when
//! webrtc-rs binds a stream, the tap looks up the negotiated extension ids, and from then
//! on stamps the MID and the RID on every outgoing packet of that SSRC. Retransmissions
//! pass here too: without RTX (we negotiate none) they are the original packets on the
//! original SSRC, stamped again; an RTX stream, were one bound, would carry the MID and the
//! repaired RID (`..:sdes:repaired-rtp-stream-id`). A plain stream (no RID) is left alone.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use rtc::interceptor::{Attribute, Interceptor, Packet, StreamInfo, TaggedPacket};
use rtc::rtcp::payload_feedbacks::full_intra_request::FullIntraRequest;
use rtc::rtcp::payload_feedbacks::picture_loss_indication::PictureLossIndication;
use rtc::rtcp::payload_feedbacks::receiver_estimated_maximum_bitrate::ReceiverEstimatedMaximumBitrate;
use rtc::rtcp::receiver_report::ReceiverReport;
use rtc::rtcp::reception_report::ReceptionReport;
use rtc::rtcp::sender_report::SenderReport;
use rtc::rtp::header::Header;
use rtc::sansio::Protocol;
use rtc::shared::error::Error;
use tokio::sync::{mpsc, watch};

use super::bwe::LossBasedEstimator;

/// The MID header extension (RFC 8843).
const MID_URI: &str = "urn:ietf:params:rtp-hdrext:sdes:mid";
/// The RID header extension (RFC 8852).
const RID_URI: &str = "urn:ietf:params:rtp-hdrext:sdes:rtp-stream-id";
/// The RID of the stream an RTX stream repairs (RFC 8852).
const REPAIRED_RID_URI: &str = "urn:ietf:params:rtp-hdrext:sdes:repaired-rtp-stream-id";

/// A keyframe request (PLI, or an FIR entry) for one of our video streams.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeyframeRequest {
    /// The SSRC it names.
    pub ssrc: u32,
    /// Which layer that is, 0 the lowest (always 0 for a plain stream).
    pub layer: usize,
}

/// One simulcast layer as the publisher registered it.
#[derive(Debug, Clone)]
struct Layer {
    index: usize,
    rid: String,
}

/// What the tap shares with the peer that owns it.
pub(crate) struct TapShared {
    /// Our outgoing video streams by SSRC (learned when webrtc-rs binds them), and their
    /// layer.
    video_ssrcs: Mutex<HashMap<u32, usize>>,
    /// The simulcast layers by SSRC and the video's MID, as the publisher registered them
    /// before negotiating.
    layers: Mutex<(HashMap<u32, Layer>, Option<String>)>,
    keyframe_tx: mpsc::UnboundedSender<KeyframeRequest>,
    estimator: Mutex<LossBasedEstimator>,
    bitrate_tx: watch::Sender<u32>,
    pub(crate) rtp_packets_sent: AtomicU64,
    pub(crate) rtp_bytes_sent: AtomicU64,
    pub(crate) retransmissions_sent: AtomicU64,
    pub(crate) keyframe_requests: AtomicU64,
}

impl TapShared {
    /// The tap's shared half, with the estimate starting at `start_bps` (the estimator's
    /// own start when `None`).
    pub(crate) fn new(
        start_bps: Option<u32>,
    ) -> (
        Arc<Self>,
        mpsc::UnboundedReceiver<KeyframeRequest>,
        watch::Receiver<u32>,
    ) {
        let (keyframe_tx, keyframe_rx) = mpsc::unbounded_channel();
        let estimator =
            start_bps.map_or_else(LossBasedEstimator::default, LossBasedEstimator::starting_at);
        let (bitrate_tx, bitrate_rx) = watch::channel(estimator.estimate());
        let shared = Arc::new(TapShared {
            video_ssrcs: Mutex::new(HashMap::new()),
            layers: Mutex::new((HashMap::new(), None)),
            keyframe_tx,
            estimator: Mutex::new(estimator),
            bitrate_tx,
            rtp_packets_sent: AtomicU64::new(0),
            rtp_bytes_sent: AtomicU64::new(0),
            retransmissions_sent: AtomicU64::new(0),
            keyframe_requests: AtomicU64::new(0),
        });
        (shared, keyframe_rx, bitrate_rx)
    }

    /// Registers simulcast layer `index` (0 the lowest) with its SSRC and RID; must come
    /// before the stream is bound (before the answer is applied).
    pub(crate) fn register_layer(&self, ssrc: u32, index: usize, rid: &str) {
        if let Ok(mut layers) = self.layers.lock() {
            let rid = rid.to_owned();
            layers.0.insert(ssrc, Layer { index, rid });
        }
    }

    /// The MID of the simulcast video (its transceiver's, from the offer).
    pub(crate) fn set_video_mid(&self, mid: String) {
        if let Ok(mut layers) = self.layers.lock() {
            layers.1 = Some(mid);
        }
    }

    /// The layer of one of our video SSRCs.
    fn our_video(&self, ssrc: u32) -> Option<usize> {
        self.video_ssrcs
            .lock()
            .ok()
            .and_then(|set| set.get(&ssrc).copied())
    }

    fn is_our_video(&self, ssrc: u32) -> bool {
        self.our_video(ssrc).is_some()
    }

    fn keyframe_request(&self, ssrc: u32) {
        let Some(layer) = self.our_video(ssrc) else {
            return;
        };
        self.keyframe_requests.fetch_add(1, Ordering::Relaxed);
        // Nobody listening is fine: the request is simply not needed.
        let _ = self.keyframe_tx.send(KeyframeRequest { ssrc, layer });
    }

    fn with_estimator(&self, f: impl FnOnce(&mut LossBasedEstimator) -> u32) {
        let Ok(mut estimator) = self.estimator.lock() else {
            return;
        };
        let bps = f(&mut estimator);
        self.bitrate_tx.send_replace(bps);
    }

    /// The worst `fraction_lost` any report of `reports` gives for our video, if any does.
    fn worst_loss(&self, reports: &[ReceptionReport]) -> Option<u8> {
        reports
            .iter()
            .filter(|report| self.is_our_video(report.ssrc))
            .map(|report| report.fraction_lost)
            .max()
    }

    /// One inbound compound RTCP packet. Its receiver reports move the estimate once, by
    /// the worst loss among our video streams: a simulcast video has one report per layer
    /// in each round, and the path is the same for all of them.
    fn inbound_rtcp(&self, packets: &[Box<dyn rtc::rtcp::Packet>]) {
        let mut worst_loss: Option<u8> = None;
        for packet in packets {
            let any = packet.as_any();
            let loss = if let Some(pli) = any.downcast_ref::<PictureLossIndication>() {
                self.keyframe_request(pli.media_ssrc);
                None
            } else if let Some(fir) = any.downcast_ref::<FullIntraRequest>() {
                if fir.fir.is_empty() {
                    self.keyframe_request(fir.media_ssrc);
                }
                for entry in &fir.fir {
                    self.keyframe_request(entry.ssrc);
                }
                None
            } else if let Some(rr) = any.downcast_ref::<ReceiverReport>() {
                self.worst_loss(&rr.reports)
            } else if let Some(sr) = any.downcast_ref::<SenderReport>() {
                self.worst_loss(&sr.reports)
            } else {
                if let Some(remb) = any.downcast_ref::<ReceiverEstimatedMaximumBitrate>() {
                    // REMB may name our video SSRC or none at all (some SFUs send it per
                    // session).
                    if remb.ssrcs.is_empty() || remb.ssrcs.iter().any(|s| self.is_our_video(*s)) {
                        self.with_estimator(|e| e.on_remb(remb.bitrate));
                    }
                }
                None
            };
            worst_loss = worst_loss.max(loss);
        }
        if let Some(loss) = worst_loss {
            self.with_estimator(|e| e.on_fraction_lost(loss));
        }
    }
}

/// The header extensions stamped on every packet of one outgoing simulcast stream.
struct Stamp {
    extensions: Vec<(u8, bytes::Bytes)>,
}

impl Stamp {
    /// The stamp for a bound stream: the MID and its RID (or, for an RTX stream, the RID it
    /// repairs) under the ids negotiated for it. `None` when neither was negotiated.
    fn new(info: &StreamInfo, mid: Option<&str>, rid: &str, repair: bool) -> Option<Stamp> {
        let id_of = |uri: &str| {
            info.rtp_header_extensions
                .iter()
                .find(|ext| ext.uri == uri)
                .and_then(|ext| u8::try_from(ext.id).ok())
        };
        let rid_uri = if repair { REPAIRED_RID_URI } else { RID_URI };
        let extensions: Vec<(u8, bytes::Bytes)> = [
            id_of(MID_URI).zip(mid.map(str::to_owned)),
            id_of(rid_uri).zip(Some(rid.to_owned())),
        ]
        .into_iter()
        .flatten()
        .map(|(id, value)| (id, bytes::Bytes::from(value)))
        .collect();
        (!extensions.is_empty()).then_some(Stamp { extensions })
    }

    fn apply(&self, header: &mut Header) {
        for (id, value) in &self.extensions {
            if let Err(e) = header.set_extension(*id, value.clone()) {
                tracing::debug!(error = %e, id, "stamping a header extension");
            }
        }
    }
}

/// The interceptor itself; one per peer connection.
pub(crate) struct RtcpTap {
    shared: Arc<TapShared>,
    /// What to stamp on the packets of each simulcast SSRC (see the module docs).
    stamps: HashMap<u32, Stamp>,
    read_queue: VecDeque<TaggedPacket>,
    write_queue: VecDeque<TaggedPacket>,
}

impl RtcpTap {
    pub(crate) fn new(shared: Arc<TapShared>) -> Self {
        RtcpTap {
            shared,
            stamps: HashMap::new(),
            read_queue: VecDeque::new(),
            write_queue: VecDeque::new(),
        }
    }
}

impl Protocol<TaggedPacket, TaggedPacket, ()> for RtcpTap {
    type Rout = TaggedPacket;
    type Wout = TaggedPacket;
    type Eout = ();
    type Error = Error;
    type Time = Instant;

    fn handle_read(&mut self, msg: TaggedPacket) -> Result<(), Self::Error> {
        if let Packet::Rtcp(packets) = &msg.message.packet {
            self.shared.inbound_rtcp(packets);
        }
        self.read_queue.push_back(msg);
        Ok(())
    }

    fn poll_read(&mut self) -> Option<Self::Rout> {
        self.read_queue.pop_front()
    }

    fn handle_write(&mut self, mut msg: TaggedPacket) -> Result<(), Self::Error> {
        let retransmission = msg.message.has(&Attribute::Retransmission);
        if let Packet::Rtp(rtp) = &mut msg.message.packet {
            if let Some(stamp) = self.stamps.get(&rtp.header.ssrc) {
                stamp.apply(&mut rtp.header);
            }
            let shared = &self.shared;
            shared.rtp_packets_sent.fetch_add(1, Ordering::Relaxed);
            shared
                .rtp_bytes_sent
                .fetch_add(rtp.payload.len() as u64, Ordering::Relaxed);
            if retransmission {
                shared.retransmissions_sent.fetch_add(1, Ordering::Relaxed);
            }
        }
        self.write_queue.push_back(msg);
        Ok(())
    }

    fn poll_write(&mut self) -> Option<Self::Wout> {
        self.write_queue.pop_front()
    }
}

impl Interceptor for RtcpTap {
    fn bind_local_stream(&mut self, info: &StreamInfo) {
        if !info.mime_type.to_ascii_lowercase().starts_with("video/") {
            return;
        }
        let (layer, mid) = match self.shared.layers.lock() {
            Ok(layers) => (layers.0.get(&info.ssrc).cloned(), layers.1.clone()),
            Err(_) => (None, None),
        };
        if let Ok(mut set) = self.shared.video_ssrcs.lock() {
            set.insert(info.ssrc, layer.as_ref().map_or(0, |l| l.index));
        }
        let Some(layer) = layer.filter(|l| !l.rid.is_empty()) else {
            return;
        };
        let streams = [(Some(info.ssrc), false), (info.ssrc_rtx, true)];
        for (ssrc, repair) in streams {
            let Some(ssrc) = ssrc else { continue };
            match Stamp::new(info, mid.as_deref(), &layer.rid, repair) {
                Some(stamp) => {
                    self.stamps.insert(ssrc, stamp);
                }
                None => tracing::warn!(
                    ssrc,
                    rid = %layer.rid,
                    "simulcast without the RID header extension: the SFU cannot tell the layers apart"
                ),
            }
        }
    }

    fn unbind_local_stream(&mut self, info: &StreamInfo) {
        if let Ok(mut set) = self.shared.video_ssrcs.lock() {
            set.remove(&info.ssrc);
        }
        self.stamps.remove(&info.ssrc);
        if let Some(rtx) = info.ssrc_rtx {
            self.stamps.remove(&rtx);
        }
    }

    fn bind_remote_stream(&mut self, _info: &StreamInfo) {}

    fn unbind_remote_stream(&mut self, _info: &StreamInfo) {}
}

#[cfg(test)]
mod tests {
    use super::*;
    use rtc::interceptor::{AttributedPacket, RTPHeaderExtension};
    use rtc::rtcp::payload_feedbacks::full_intra_request::FirEntry;
    use rtc::shared::TransportContext;

    const MID_ID: u16 = 1;
    const RID_ID: u16 = 4;
    const REPAIRED_ID: u16 = 5;

    fn video_stream(ssrc: u32, rtx: Option<u32>) -> StreamInfo {
        StreamInfo {
            ssrc,
            ssrc_rtx: rtx,
            mime_type: "video/H264".into(),
            clock_rate: 90_000,
            rtp_header_extensions: [
                (MID_URI, MID_ID),
                (RID_URI, RID_ID),
                (REPAIRED_RID_URI, REPAIRED_ID),
            ]
            .into_iter()
            .map(|(uri, id)| RTPHeaderExtension {
                uri: uri.into(),
                id,
            })
            .collect(),
            ..StreamInfo::default()
        }
    }

    fn packet(ssrc: u32, seq: u16) -> rtc::rtp::Packet {
        rtc::rtp::Packet {
            header: Header {
                version: 2,
                ssrc,
                sequence_number: seq,
                payload_type: 102,
                ..Header::default()
            },
            payload: bytes::Bytes::from_static(&[0x65, 1, 2, 3]),
        }
    }

    fn tagged(packet: Packet) -> TaggedPacket {
        TaggedPacket {
            now: Instant::now(),
            transport: TransportContext::default(),
            message: AttributedPacket::new(packet),
        }
    }

    /// Sends `rtp` through the tap; its header extensions as they leave, by id.
    fn send(tap: &mut RtcpTap, message: AttributedPacket) -> Vec<(u8, String)> {
        let mut msg = tagged(Packet::Rtcp(Vec::new()));
        msg.message = message;
        tap.handle_write(msg).expect("write");
        let out = tap.poll_write().expect("passed on");
        let Packet::Rtp(rtp) = out.message.packet else {
            panic!("not RTP");
        };
        let mut exts: Vec<(u8, String)> = rtp
            .header
            .extensions
            .iter()
            .map(|e| (e.id, String::from_utf8_lossy(&e.payload).into_owned()))
            .collect();
        exts.sort();
        // It survives the wire: marshalled and parsed back, the values are there.
        use rtc::shared::marshal::{Marshal, Unmarshal};
        let wire = rtp.marshal().expect("marshal");
        let back = rtc::rtp::Packet::unmarshal(&mut wire.as_ref()).expect("unmarshal");
        for (id, value) in &exts {
            assert_eq!(
                back.header.get_extension(*id).as_deref(),
                Some(value.as_bytes())
            );
        }
        exts
    }

    fn simulcast_tap() -> (
        RtcpTap,
        mpsc::UnboundedReceiver<KeyframeRequest>,
        watch::Receiver<u32>,
    ) {
        let (shared, keyframes, bitrate) = TapShared::new(None);
        for (index, (ssrc, rid)) in [(11, "q"), (12, "h"), (13, "f")].into_iter().enumerate() {
            shared.register_layer(ssrc, index, rid);
        }
        shared.set_video_mid("1".into());
        let mut tap = RtcpTap::new(shared);
        tap.bind_local_stream(&video_stream(11, None));
        tap.bind_local_stream(&video_stream(12, None));
        tap.bind_local_stream(&video_stream(13, Some(23)));
        (tap, keyframes, bitrate)
    }

    #[test]
    fn every_packet_of_a_layer_carries_its_mid_and_rid() {
        let (mut tap, _, _) = simulcast_tap();
        for (ssrc, rid) in [(11, "q"), (12, "h"), (13, "f")] {
            for seq in 0..3 {
                let exts = send(
                    &mut tap,
                    AttributedPacket::new(Packet::Rtp(packet(ssrc, seq))),
                );
                assert_eq!(
                    exts,
                    [(MID_ID as u8, "1".into()), (RID_ID as u8, rid.into())],
                    "ssrc {ssrc} packet {seq}"
                );
            }
        }
        // A NACKed packet resent as it was (no RTX) is stamped again, the same way.
        let resent =
            AttributedPacket::new(Packet::Rtp(packet(12, 1))).with(Attribute::Retransmission);
        assert_eq!(
            send(&mut tap, resent),
            [(MID_ID as u8, "1".into()), (RID_ID as u8, "h".into())]
        );
        assert_eq!(tap.shared.retransmissions_sent.load(Ordering::Relaxed), 1);
        // An RTX stream carries the RID it repairs.
        let rtx = AttributedPacket::new(Packet::Rtp(packet(23, 0))).with(Attribute::Retransmission);
        assert_eq!(
            send(&mut tap, rtx),
            [(MID_ID as u8, "1".into()), (REPAIRED_ID as u8, "f".into())]
        );
        // Audio, and anything unknown, is left alone.
        assert_eq!(
            send(&mut tap, AttributedPacket::new(Packet::Rtp(packet(99, 0)))),
            []
        );
        // Unbound, a layer is no longer stamped.
        tap.unbind_local_stream(&video_stream(13, Some(23)));
        assert_eq!(
            send(&mut tap, AttributedPacket::new(Packet::Rtp(packet(13, 9)))),
            []
        );
        assert_eq!(
            send(&mut tap, AttributedPacket::new(Packet::Rtp(packet(23, 9)))),
            []
        );
    }

    #[test]
    fn a_plain_stream_is_not_stamped() {
        let (shared, _, _) = TapShared::new(None);
        let mut tap = RtcpTap::new(shared);
        tap.bind_local_stream(&video_stream(7, None));
        assert_eq!(
            send(&mut tap, AttributedPacket::new(Packet::Rtp(packet(7, 0)))),
            []
        );
        assert!(
            tap.shared.is_our_video(7),
            "still our video, for PLI and reports"
        );
    }

    fn read(tap: &mut RtcpTap, packets: Vec<Box<dyn rtc::rtcp::Packet>>) {
        tap.handle_read(tagged(Packet::Rtcp(packets)))
            .expect("read");
        assert!(tap.poll_read().is_some(), "passed on");
    }

    #[test]
    fn keyframe_requests_name_their_layer() {
        let (mut tap, mut keyframes, _) = simulcast_tap();
        read(
            &mut tap,
            vec![Box::new(PictureLossIndication {
                sender_ssrc: 1,
                media_ssrc: 12,
            })],
        );
        assert_eq!(
            keyframes.try_recv(),
            Ok(KeyframeRequest { ssrc: 12, layer: 1 })
        );
        read(
            &mut tap,
            vec![Box::new(FullIntraRequest {
                sender_ssrc: 1,
                media_ssrc: 0,
                fir: vec![
                    FirEntry {
                        ssrc: 13,
                        sequence_number: 1,
                    },
                    FirEntry {
                        ssrc: 11,
                        sequence_number: 1,
                    },
                ],
            })],
        );
        assert_eq!(
            keyframes.try_recv(),
            Ok(KeyframeRequest { ssrc: 13, layer: 2 })
        );
        assert_eq!(
            keyframes.try_recv(),
            Ok(KeyframeRequest { ssrc: 11, layer: 0 })
        );
        // Not ours: nothing.
        read(
            &mut tap,
            vec![Box::new(PictureLossIndication {
                sender_ssrc: 1,
                media_ssrc: 99,
            })],
        );
        assert!(keyframes.try_recv().is_err());
        assert_eq!(tap.shared.keyframe_requests.load(Ordering::Relaxed), 3);
    }

    fn report(ssrc: u32, fraction_lost: u8) -> ReceptionReport {
        ReceptionReport {
            ssrc,
            fraction_lost,
            ..ReceptionReport::default()
        }
    }

    #[test]
    fn the_reports_of_all_layers_move_the_estimate_once_by_the_worst() {
        let (mut tap, _, bitrate) = simulcast_tap();
        let start = *bitrate.borrow();
        // One report per layer, no loss: one +5 %, not three.
        let rrs: Vec<Box<dyn rtc::rtcp::Packet>> = [11, 12, 13]
            .into_iter()
            .map(|ssrc| {
                Box::new(ReceiverReport {
                    ssrc: 1,
                    reports: vec![report(ssrc, 0)],
                    ..ReceiverReport::default()
                }) as Box<dyn rtc::rtcp::Packet>
            })
            .collect();
        read(&mut tap, rrs);
        assert_eq!(*bitrate.borrow(), (f64::from(start) * 1.05) as u32);
        // The top layer losing 20 % while the others lose nothing: -15 %.
        read(
            &mut tap,
            vec![Box::new(ReceiverReport {
                ssrc: 1,
                reports: vec![
                    report(11, 0),
                    report(13, 51),
                    report(12, 0),
                    report(99, 255),
                ],
                ..ReceiverReport::default()
            })],
        );
        assert_eq!(*bitrate.borrow(), (f64::from(start) * 1.05 * 0.85) as u32);
    }
}
