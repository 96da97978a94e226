//! RTP -> frames, for the subscriber.
//!
//! Video: [`VideoAssembler`] is a small reorder buffer keyed by (unwrapped) sequence number that
//! emits an access unit as soon as its marker packet arrives and every packet before it is there,
//! depacketized with rtc's H.264 depacketizer into Annex-B. It is used instead of rtc's
//! `SampleBuilder` because that one holds every frame back until the first packet of the *next*
//! frame arrives (to learn the duration), which adds a whole frame interval of latency.
//! A missing packet is waited for (NACK retransmission) for at most [`MAX_WAIT`] or
//! [`MAX_LATE_PACKETS`] newer packets; then the incomplete frame is dropped and delivery resumes
//! at the next keyframe, because H.264 P-frames after a hole are not decodable anyway. The same
//! rule applies at the start of a stream: frames before the first keyframe are dropped.
//!
//! Audio: every RTP packet is one Opus packet; [`SeqTracker`] only drops duplicates and packets
//! that arrive after a newer one was delivered (an Opus decoder wants order; PLC covers holes).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use bytes::{BufMut, Bytes, BytesMut};
use onstage_proto::h264::starts_keyframe;
use rtc::rtp::codec::h264::H264Packet;
use rtc::rtp::packetizer::Depacketizer;
use rtc::rtp::Packet;

/// How long a hole in the sequence is waited for (one or two NACK round trips on a LAN).
pub(crate) const MAX_WAIT: Duration = Duration::from_millis(250);
/// How many newer packets may pile up behind a hole before it is given up.
pub(crate) const MAX_LATE_PACKETS: usize = 600;

/// Unwraps 16-bit RTP sequence numbers into a monotonic 64-bit space.
#[derive(Debug, Default, Clone)]
pub(crate) struct SeqUnwrapper {
    last: Option<u64>,
}

impl SeqUnwrapper {
    pub(crate) fn unwrap(&mut self, seq: u16) -> u64 {
        let Some(last) = self.last else {
            // Start high so that packets slightly older than the first do not underflow.
            let ext = (1u64 << 32) + u64::from(seq);
            self.last = Some(ext);
            return ext;
        };
        let last_seq = (last & 0xffff) as u16;
        let delta = i64::from(seq.wrapping_sub(last_seq) as i16);
        let ext = (last as i64 + delta) as u64;
        if ext > last {
            self.last = Some(ext);
        }
        ext
    }
}

/// Sequence accounting shared by audio and video: RFC 3550 style expected - received.
#[derive(Debug, Default, Clone)]
pub(crate) struct SeqTracker {
    unwrap: SeqUnwrapper,
    first: Option<u64>,
    highest: Option<u64>,
    received: u64,
}

impl SeqTracker {
    /// Records a packet; returns its unwrapped number and whether it is newer than all before.
    pub(crate) fn record(&mut self, seq: u16) -> (u64, bool) {
        let ext = self.unwrap.unwrap(seq);
        self.received += 1;
        let newest = self.highest.is_none_or(|h| ext > h);
        if newest {
            self.highest = Some(ext);
        }
        if self.first.is_none_or(|f| ext < f) {
            self.first = Some(ext);
        }
        (ext, newest)
    }

    /// Packets never seen so far (expected - received, never negative).
    pub(crate) fn lost(&self) -> u64 {
        match (self.first, self.highest) {
            (Some(first), Some(highest)) => (highest - first + 1).saturating_sub(self.received),
            _ => 0,
        }
    }
}

/// One reassembled access unit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct VideoFrame {
    pub(crate) data: Bytes,
    pub(crate) rtp_timestamp: u32,
    pub(crate) keyframe: bool,
}

/// What one [`VideoAssembler::push`] produced.
#[derive(Debug, Default)]
pub(crate) struct PushOutcome {
    pub(crate) frames: Vec<VideoFrame>,
    /// Frames thrown away: incomplete after a hole, undecodable before a keyframe, malformed.
    pub(crate) discarded: u64,
}

struct Buffered {
    packet: Packet,
    arrived: Instant,
}

/// The H.264 reorder buffer / frame assembler described in the module docs.
pub(crate) struct VideoAssembler {
    unwrap: SeqUnwrapper,
    buffer: BTreeMap<u64, Buffered>,
    /// The sequence number the next frame starts at; None before the first packet.
    next: Option<u64>,
    /// The timestamp of the last packet consumed before `next` (to spot a frame's tail after a
    /// hole: it shares the timestamp of the part that was lost).
    prev_timestamp: Option<u32>,
    /// Only a keyframe may be delivered next (start of stream, or after a hole).
    need_keyframe: bool,
    /// Frames were thrown away since the last keyframe: a keyframe request is in order. (Not
    /// just `need_keyframe`: at the start of a stream that is set before the first packet of
    /// what may well be a keyframe.)
    dropping: bool,
    max_wait: Duration,
    max_late: usize,
}

impl Default for VideoAssembler {
    fn default() -> Self {
        VideoAssembler::new(MAX_WAIT, MAX_LATE_PACKETS)
    }
}

impl VideoAssembler {
    pub(crate) fn new(max_wait: Duration, max_late: usize) -> Self {
        VideoAssembler {
            unwrap: SeqUnwrapper::default(),
            buffer: BTreeMap::new(),
            next: None,
            prev_timestamp: None,
            need_keyframe: true,
            dropping: false,
            max_wait,
            max_late,
        }
    }

    /// Adds one RTP packet (arrived at `now`) and returns the frames it completed.
    pub(crate) fn push(&mut self, now: Instant, packet: Packet) -> PushOutcome {
        let mut out = PushOutcome::default();
        let ext = self.unwrap.unwrap(packet.header.sequence_number);
        match self.next {
            Some(next) if ext < next => return out, // late or duplicate: its frame is gone
            None => self.next = Some(ext),
            _ => {}
        }
        self.buffer.entry(ext).or_insert(Buffered {
            packet,
            arrived: now,
        });

        loop {
            if self.try_emit(&mut out) {
                continue;
            }
            if self.give_up_hole(now, &mut out) {
                continue;
            }
            break;
        }
        if out.discarded > 0 {
            self.dropping = true;
        }
        out
    }

    /// Whether frames are being dropped until a keyframe arrives (the caller should send PLI).
    pub(crate) fn waiting_for_keyframe(&self) -> bool {
        self.need_keyframe && self.dropping
    }

    /// Tries to take one complete frame starting at `next`. Returns whether it consumed anything.
    fn try_emit(&mut self, out: &mut PushOutcome) -> bool {
        let Some(start) = self.next else { return false };
        let Some(head) = self.buffer.get(&start) else {
            return false;
        };
        let timestamp = head.packet.header.timestamp;
        // Walk the contiguous run with the head's timestamp up to a marker (or to a packet with
        // a new timestamp, which also closes the frame when the marker bit is not used).
        let mut end = start; // exclusive
        let mut complete = false;
        while let Some(b) = self.buffer.get(&end) {
            if b.packet.header.timestamp != timestamp {
                complete = true;
                break;
            }
            end += 1;
            if b.packet.header.marker {
                complete = true;
                break;
            }
        }
        if !complete {
            return false;
        }
        let packets: Vec<Packet> = (start..end)
            .filter_map(|seq| self.buffer.remove(&seq).map(|b| b.packet))
            .collect();
        self.next = Some(end);
        // A run sharing the timestamp of what came before a hole is the tail of a lost frame.
        let is_tail = self.prev_timestamp == Some(timestamp);
        self.prev_timestamp = Some(timestamp);
        if is_tail {
            out.discarded += 1;
            return true;
        }
        match depacketize(&packets) {
            Some(data) => {
                let keyframe = contains_idr(&data);
                if self.need_keyframe && !keyframe {
                    out.discarded += 1;
                } else {
                    self.need_keyframe = false;
                    self.dropping = false;
                    out.frames.push(VideoFrame {
                        data,
                        rtp_timestamp: timestamp,
                        keyframe,
                    });
                }
            }
            None => {
                out.discarded += 1;
                self.need_keyframe = true;
            }
        }
        true
    }

    /// When a packet at or after `next` is missing, newer packets are buffered behind it and it
    /// has been waited for long enough: drops the incomplete frame before the hole and resumes at
    /// the first packet after it. Returns whether it skipped.
    fn give_up_hole(&mut self, now: Instant, out: &mut PushOutcome) -> bool {
        let Some(next) = self.next else { return false };
        let mut hole = next;
        while self.buffer.contains_key(&hole) {
            hole += 1;
        }
        let Some((&resume, resume_packet)) = self.buffer.range(hole..).next() else {
            return false; // no hole, the frame at the head is just not complete yet
        };
        let resume_timestamp = resume_packet.packet.header.timestamp;
        let waited = self
            .buffer
            .values()
            .map(|b| now.saturating_duration_since(b.arrived))
            .max()
            .unwrap_or_default();
        // A complete keyframe behind the hole ends the wait at once: what the hole belongs
        // to is older than a picture that can be shown now. (A sender answering congestion
        // sends a second keyframe soon after one the queue cut short.)
        if let Some(keyframe) = self.complete_keyframe_from(hole) {
            tracing::debug!(
                from = hole,
                to = keyframe,
                "video: a keyframe behind missing packets"
            );
            self.buffer.retain(|&seq, _| seq >= keyframe);
            self.next = Some(keyframe);
            self.prev_timestamp = None;
            self.need_keyframe = true;
            out.discarded += 1;
            return true;
        }
        if waited < self.max_wait && self.buffer.len() < self.max_late {
            return false;
        }
        tracing::debug!(
            from = hole,
            to = resume,
            "video: giving up on missing packets"
        );
        for seq in next..hole {
            self.buffer.remove(&seq);
        }
        self.next = Some(resume);
        // Whether the packet after the hole starts a frame cannot be known (its head may be
        // what was lost), so the frame it belongs to is treated as a tail and dropped.
        self.prev_timestamp = Some(resume_timestamp);
        self.need_keyframe = true;
        out.discarded += 1;
        true
    }
}

impl VideoAssembler {
    /// The first buffered packet at or after `from` that starts a keyframe whose every
    /// packet, up to its marker, is there.
    fn complete_keyframe_from(&self, from: u64) -> Option<u64> {
        self.buffer
            .range(from..)
            .filter(|(_, b)| starts_keyframe(&b.packet.payload))
            .map(|(&seq, _)| seq)
            .find(|&start| {
                let timestamp = self.buffer[&start].packet.header.timestamp;
                let mut seq = start;
                while let Some(b) = self.buffer.get(&seq) {
                    if b.packet.header.timestamp != timestamp {
                        return true;
                    }
                    if b.packet.header.marker {
                        return true;
                    }
                    seq += 1;
                }
                false
            })
    }
}

/// Depacketizes one frame's packets into Annex-B; None if the first packet does not start a
/// NAL unit or a payload is malformed.
fn depacketize(packets: &[Packet]) -> Option<Bytes> {
    let mut depacketizer = H264Packet::default();
    let first = packets.first()?;
    if !depacketizer.is_partition_head(&first.payload) {
        return None;
    }
    let mut data = BytesMut::new();
    for packet in packets {
        let part = depacketizer.depacketize(&packet.payload).ok()?;
        data.put(part);
    }
    if data.is_empty() {
        return None;
    }
    Some(data.freeze())
}

/// The NAL unit types in an Annex-B buffer, in order.
pub fn annexb_nal_units(data: &[u8]) -> Vec<&[u8]> {
    let mut starts = Vec::new(); // (start code position, payload position)
    let mut i = 0;
    while i + 3 <= data.len() {
        if data[i] == 0 && data[i + 1] == 0 && data[i + 2] == 1 {
            let code_start = if i > 0 && data[i - 1] == 0 { i - 1 } else { i };
            starts.push((code_start, i + 3));
            i += 3;
        } else {
            i += 1;
        }
    }
    let mut units = Vec::with_capacity(starts.len());
    for (n, &(_, payload)) in starts.iter().enumerate() {
        let end = starts.get(n + 1).map_or(data.len(), |&(code, _)| code);
        if payload < end {
            units.push(&data[payload..end]);
        }
    }
    units
}

/// Whether an Annex-B access unit contains an IDR slice (NAL type 5).
pub fn contains_idr(data: &[u8]) -> bool {
    annexb_nal_units(data)
        .iter()
        .any(|nal| nal.first().is_some_and(|b| b & 0x1f == 5))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rtc::rtp::header::Header;

    fn pkt(seq: u16, ts: u32, marker: bool, payload: &[u8]) -> Packet {
        Packet {
            header: Header {
                version: 2,
                sequence_number: seq,
                timestamp: ts,
                marker,
                payload_type: 102,
                ssrc: 1,
                ..Default::default()
            },
            payload: Bytes::copy_from_slice(payload),
        }
    }

    /// A frame of one single-NAL packet of `nal_type`.
    fn single(seq: u16, ts: u32, nal_type: u8) -> Packet {
        pkt(seq, ts, true, &[0x60 | nal_type, 0xAA, seq as u8 | 1])
    }

    /// FU-A fragments of a NAL of type `nal_type`: (start, middle, end).
    fn fua(seq: u16, ts: u32, nal_type: u8) -> [Packet; 3] {
        [
            pkt(seq, ts, false, &[0x7c, 0x80 | nal_type, 1, 2]),
            pkt(seq.wrapping_add(1), ts, false, &[0x7c, nal_type, 3, 4]),
            pkt(
                seq.wrapping_add(2),
                ts,
                true,
                &[0x7c, 0x40 | nal_type, 5, 6],
            ),
        ]
    }

    fn run(asm: &mut VideoAssembler, now: Instant, packets: Vec<Packet>) -> PushOutcome {
        let mut total = PushOutcome::default();
        for p in packets {
            let o = asm.push(now, p);
            total.frames.extend(o.frames);
            total.discarded += o.discarded;
        }
        total
    }

    #[test]
    fn unwrapper_handles_wrap_and_reorder() {
        let mut u = SeqUnwrapper::default();
        let a = u.unwrap(65534);
        assert_eq!(u.unwrap(65535), a + 1);
        assert_eq!(u.unwrap(1), a + 3);
        assert_eq!(u.unwrap(0), a + 2, "late packet across the wrap");
    }

    #[test]
    fn tracker_counts_gaps() {
        let mut t = SeqTracker::default();
        for s in [10u16, 11, 14, 15] {
            t.record(s);
        }
        assert_eq!(t.lost(), 2);
        t.record(12);
        assert_eq!(t.lost(), 1);
    }

    #[test]
    fn emits_on_marker_without_waiting_for_next_frame() {
        let mut asm = VideoAssembler::default();
        let now = Instant::now();
        let [a, b, c] = fua(100, 9000, 5);
        assert!(asm.push(now, a).frames.is_empty());
        assert!(!asm.waiting_for_keyframe(), "nothing dropped yet: no PLI");
        assert!(asm.push(now, b).frames.is_empty());
        let out = asm.push(now, c);
        assert_eq!(out.frames.len(), 1);
        let f = &out.frames[0];
        assert!(f.keyframe);
        assert_eq!(f.rtp_timestamp, 9000);
        assert_eq!(&f.data[..], &[0, 0, 0, 1, 0x65, 1, 2, 3, 4, 5, 6]);
    }

    #[test]
    fn reorders_within_a_frame_and_across_frames() {
        let mut asm = VideoAssembler::default();
        let now = Instant::now();
        let [a, b, c] = fua(10, 0, 5);
        let p = single(13, 3000, 1);
        let out = run(&mut asm, now, vec![a, p, c, b]);
        assert_eq!(out.frames.len(), 2);
        assert!(out.frames[0].keyframe);
        assert_eq!(out.frames[1].rtp_timestamp, 3000);
        assert!(!out.frames[1].keyframe);
    }

    #[test]
    fn drops_until_first_keyframe_and_asks_for_one() {
        let mut asm = VideoAssembler::default();
        let now = Instant::now();
        let out = run(&mut asm, now, vec![single(1, 0, 1), single(2, 3000, 1)]);
        assert!(asm.waiting_for_keyframe());
        let out2 = run(&mut asm, now, vec![single(3, 6000, 5)]);
        let out = PushOutcome {
            frames: out2.frames,
            discarded: out.discarded + out2.discarded,
        };
        assert!(!asm.waiting_for_keyframe());
        assert_eq!(out.discarded, 2);
        assert_eq!(out.frames.len(), 1);
        assert!(out.frames[0].keyframe);
    }

    #[test]
    fn waits_for_a_retransmission_then_gives_up_and_resyncs_on_keyframe() {
        let mut asm = VideoAssembler::new(Duration::from_millis(100), 1000);
        let t0 = Instant::now();
        let [a, b, c] = fua(50, 0, 5);
        assert_eq!(run(&mut asm, t0, vec![a, b, c]).frames.len(), 1);
        // Frame at ts 3000 is packets 53..=55; 54 is lost.
        let [d, _lost, f] = fua(53, 3000, 1);
        let out = run(&mut asm, t0, vec![d, f, single(56, 6000, 1)]);
        assert!(out.frames.is_empty(), "waits for 54");
        // Retransmission in time completes both frames.
        let mut asm2 = VideoAssembler::new(Duration::from_millis(100), 1000);
        let [a, b, c] = fua(50, 0, 5);
        run(&mut asm2, t0, vec![a, b, c]);
        let [d, e, f] = fua(53, 3000, 1);
        let out = run(&mut asm2, t0, vec![d, f, single(56, 6000, 1), e]);
        assert_eq!(out.frames.len(), 2);

        // Too late: the hole is given up, P-frames are dropped until a keyframe.
        let later = t0 + Duration::from_millis(150);
        let out = asm.push(later, single(57, 9000, 1));
        assert!(out.frames.is_empty());
        assert!(asm.waiting_for_keyframe());
        assert!(out.discarded >= 2);
        let out = asm.push(later, single(58, 12000, 5));
        assert_eq!(out.frames.len(), 1);
        assert!(out.frames[0].keyframe);
    }

    #[test]
    fn tail_of_a_frame_after_a_hole_is_not_delivered() {
        let mut asm = VideoAssembler::new(Duration::from_millis(10), 1000);
        let t0 = Instant::now();
        run(&mut asm, t0, vec![single(1, 0, 5)]);
        // Keyframe at ts 3000: 2 = start (lost), 3 = middle, 4 = end. Then IDRs at 6000, 9000.
        let [_s, m, e] = fua(2, 3000, 5);
        let out = run(&mut asm, t0, vec![m, e, single(5, 6000, 1)]);
        assert!(out.frames.is_empty(), "still waiting for 2");
        let later = t0 + Duration::from_millis(20);
        let out = asm.push(later, single(6, 9000, 1));
        assert!(
            out.frames.is_empty(),
            "P-frames after the hole are not decodable"
        );
        assert_eq!(out.discarded, 4, "the hole, the tail and two P-frames");
        let out = asm.push(later, single(7, 12000, 5));
        let stamps: Vec<u32> = out.frames.iter().map(|f| f.rtp_timestamp).collect();
        assert_eq!(stamps, vec![12000]);
    }

    #[test]
    fn a_complete_keyframe_behind_a_hole_is_shown_without_waiting() {
        let mut asm = VideoAssembler::new(Duration::from_secs(10), 1000);
        let t0 = Instant::now();
        run(&mut asm, t0, vec![single(1, 0, 5)]);
        // A keyframe cut short (2 lost), then a P-frame, then a second keyframe in three
        // packets: shown as soon as its last packet is in, not after the wait.
        let [_lost, m, e] = fua(2, 3000, 5);
        let [a, b, c] = fua(6, 9000, 5);
        let out = run(&mut asm, t0, vec![m, e, single(5, 6000, 1), a, b]);
        assert!(
            out.frames.is_empty(),
            "the second keyframe is not complete yet"
        );
        let out = asm.push(t0, c);
        let stamps: Vec<u32> = out.frames.iter().map(|f| f.rtp_timestamp).collect();
        assert_eq!(stamps, vec![9000]);
        assert!(out.frames[0].keyframe);
        assert!(!asm.waiting_for_keyframe());
        // And what follows it plays on.
        let out = asm.push(t0, single(9, 12000, 1));
        assert_eq!(out.frames.len(), 1);
        // A late retransmission of what the keyframe superseded changes nothing.
        assert!(asm.push(t0, single(3, 3000, 5)).frames.is_empty());
    }

    #[test]
    fn hole_in_the_middle_of_a_frame_is_given_up() {
        let mut asm = VideoAssembler::new(Duration::from_millis(10), 1000);
        let t0 = Instant::now();
        run(&mut asm, t0, vec![single(1, 0, 5)]);
        let [s, _lost, e] = fua(2, 3000, 1);
        let out = run(&mut asm, t0, vec![s, e]);
        assert!(out.frames.is_empty());
        let later = t0 + Duration::from_millis(20);
        let out = run(
            &mut asm,
            later,
            vec![single(5, 6000, 1), single(6, 9000, 5)],
        );
        let stamps: Vec<u32> = out.frames.iter().map(|f| f.rtp_timestamp).collect();
        assert_eq!(
            stamps,
            vec![9000],
            "P-frame after the hole dropped, IDR delivered"
        );
        assert!(!asm.waiting_for_keyframe());
    }

    #[test]
    fn nal_units_split_both_start_code_forms() {
        let data = [0, 0, 0, 1, 0x67, 1, 0, 0, 1, 0x68, 2, 0, 0, 0, 1, 0x65, 3];
        let units = annexb_nal_units(&data);
        assert_eq!(units, vec![&[0x67, 1][..], &[0x68, 2][..], &[0x65, 3][..]]);
        assert!(contains_idr(&data));
        assert!(!contains_idr(&[0, 0, 1, 0x41, 9]));
    }
}
