//! [`RtcpTap`]: an interceptor that observes RTP/RTCP for the application and changes nothing.
//!
//! webrtc-rs 0.21 ends inbound RTCP inside the interceptor chain (a `NoopInterceptor` is always
//! last), so a sender never sees a PLI by default. Rather than marking packets for delivery and
//! polling each local track, the tap reads them where they pass and publishes what the
//! application needs straight into channels: keyframe requests, bandwidth estimates, counters.
//! Sitting wire-most, it sees inbound RTCP before any interceptor consumes it and outbound RTP
//! after every interceptor produced it (NACK retransmissions included).

use std::collections::{HashSet, VecDeque};
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
use rtc::sansio::Protocol;
use rtc::shared::error::Error;
use tokio::sync::{mpsc, watch};

use super::bwe::LossBasedEstimator;

/// What the tap shares with the peer that owns it.
pub(crate) struct TapShared {
    /// SSRCs of our outgoing video streams (learned when webrtc-rs binds them).
    video_ssrcs: Mutex<HashSet<u32>>,
    keyframe_tx: mpsc::UnboundedSender<()>,
    estimator: Mutex<LossBasedEstimator>,
    bitrate_tx: watch::Sender<u32>,
    pub(crate) rtp_packets_sent: AtomicU64,
    pub(crate) rtp_bytes_sent: AtomicU64,
    pub(crate) retransmissions_sent: AtomicU64,
    pub(crate) keyframe_requests: AtomicU64,
}

impl TapShared {
    pub(crate) fn new() -> (Arc<Self>, mpsc::UnboundedReceiver<()>, watch::Receiver<u32>) {
        let (keyframe_tx, keyframe_rx) = mpsc::unbounded_channel();
        let estimator = LossBasedEstimator::default();
        let (bitrate_tx, bitrate_rx) = watch::channel(estimator.estimate());
        let shared = Arc::new(TapShared {
            video_ssrcs: Mutex::new(HashSet::new()),
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

    fn is_our_video(&self, ssrc: u32) -> bool {
        self.video_ssrcs
            .lock()
            .map(|set| set.contains(&ssrc))
            .unwrap_or(false)
    }

    fn keyframe_request(&self) {
        self.keyframe_requests.fetch_add(1, Ordering::Relaxed);
        // Nobody listening is fine: the request is simply not needed.
        let _ = self.keyframe_tx.send(());
    }

    fn with_estimator(&self, f: impl FnOnce(&mut LossBasedEstimator) -> u32) {
        let Ok(mut estimator) = self.estimator.lock() else {
            return;
        };
        let bps = f(&mut estimator);
        self.bitrate_tx.send_replace(bps);
    }

    fn reception_reports(&self, reports: &[ReceptionReport]) {
        for report in reports {
            if self.is_our_video(report.ssrc) {
                self.with_estimator(|e| e.on_fraction_lost(report.fraction_lost));
            }
        }
    }

    fn inbound_rtcp(&self, packet: &dyn rtc::rtcp::Packet) {
        let any = packet.as_any();
        if let Some(pli) = any.downcast_ref::<PictureLossIndication>() {
            if self.is_our_video(pli.media_ssrc) {
                self.keyframe_request();
            }
        } else if let Some(fir) = any.downcast_ref::<FullIntraRequest>() {
            if fir.fir.iter().any(|entry| self.is_our_video(entry.ssrc))
                || self.is_our_video(fir.media_ssrc)
            {
                self.keyframe_request();
            }
        } else if let Some(rr) = any.downcast_ref::<ReceiverReport>() {
            self.reception_reports(&rr.reports);
        } else if let Some(sr) = any.downcast_ref::<SenderReport>() {
            self.reception_reports(&sr.reports);
        } else if let Some(remb) = any.downcast_ref::<ReceiverEstimatedMaximumBitrate>() {
            // REMB may name our video SSRC or none at all (some SFUs send it per session).
            if remb.ssrcs.is_empty() || remb.ssrcs.iter().any(|s| self.is_our_video(*s)) {
                self.with_estimator(|e| e.on_remb(remb.bitrate));
            }
        }
    }
}

/// The interceptor itself; one per peer connection.
pub(crate) struct RtcpTap {
    shared: Arc<TapShared>,
    read_queue: VecDeque<TaggedPacket>,
    write_queue: VecDeque<TaggedPacket>,
}

impl RtcpTap {
    pub(crate) fn new(shared: Arc<TapShared>) -> Self {
        RtcpTap {
            shared,
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
            for packet in packets {
                self.shared.inbound_rtcp(packet.as_ref());
            }
        }
        self.read_queue.push_back(msg);
        Ok(())
    }

    fn poll_read(&mut self) -> Option<Self::Rout> {
        self.read_queue.pop_front()
    }

    fn handle_write(&mut self, msg: TaggedPacket) -> Result<(), Self::Error> {
        if let Packet::Rtp(rtp) = &msg.message.packet {
            let shared = &self.shared;
            shared.rtp_packets_sent.fetch_add(1, Ordering::Relaxed);
            shared
                .rtp_bytes_sent
                .fetch_add(rtp.payload.len() as u64, Ordering::Relaxed);
            if msg.message.has(&Attribute::Retransmission) {
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
        if info.mime_type.to_ascii_lowercase().starts_with("video/") {
            if let Ok(mut set) = self.shared.video_ssrcs.lock() {
                set.insert(info.ssrc);
            }
        }
    }

    fn unbind_local_stream(&mut self, info: &StreamInfo) {
        if let Ok(mut set) = self.shared.video_ssrcs.lock() {
            set.remove(&info.ssrc);
        }
    }

    fn bind_remote_stream(&mut self, _info: &StreamInfo) {}

    fn unbind_remote_stream(&mut self, _info: &StreamInfo) {}
}
