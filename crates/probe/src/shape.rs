//! The shape of the synthetic media: H.264-like RTP payloads (RFC 6184 single NAL units
//! and FU-A fragments) and Opus-sized audio packets, with a *stamp* (frame number and
//! send time) at the start of every frame so a receiver can measure latency and order
//! without decoding anything. Pure functions, unit-tested.

/// NAL unit types used here.
pub const NAL_SLICE: u8 = 1;
pub const NAL_IDR: u8 = 5;
pub const NAL_SPS: u8 = 7;
pub const NAL_PPS: u8 = 8;
pub const NAL_STAP_A: u8 = 24;
pub const NAL_FU_A: u8 = 28;

/// `nal_ref_idc` = 3 in front of the type, as encoders write it for reference pictures.
const NRI: u8 = 0x60;

/// Bytes of a stamp: frame number (u32) and send time in unix microseconds (u64), big
/// endian.
pub const STAMP_LEN: usize = 12;

/// What the first packet of every frame carries right after its NAL header(s).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stamp {
    pub frame: u32,
    pub sent_unix_us: u64,
}

impl Stamp {
    fn write(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.frame.to_be_bytes());
        out.extend_from_slice(&self.sent_unix_us.to_be_bytes());
    }

    fn read(bytes: &[u8]) -> Option<Stamp> {
        let b = bytes.get(..STAMP_LEN)?;
        let frame = u32::from_be_bytes([b[0], b[1], b[2], b[3]]);
        let mut t = [0u8; 8];
        t.copy_from_slice(&b[4..12]);
        Some(Stamp {
            frame,
            sent_unix_us: u64::from_be_bytes(t),
        })
    }
}

/// Splits one video frame of `size` bytes into RTP payloads of at most `mtu` bytes.
///
/// A keyframe is an SPS packet and a PPS packet (single NAL units) followed by the IDR
/// slice; any other frame is one non-IDR slice. A slice that fits in `mtu` goes as a single
/// NAL unit, otherwise as FU-A fragments. The SPS packet (keyframes) or the slice's first
/// packet (other frames) carries the stamp; filler bytes are a cheap pattern.
pub fn video_frame(stamp: Stamp, keyframe: bool, size: usize, mtu: usize) -> Vec<Vec<u8>> {
    let mtu = mtu.max(STAMP_LEN + 16);
    let mut packets = Vec::new();
    let slice_type = if keyframe {
        let mut sps = vec![NRI | NAL_SPS];
        stamp.write(&mut sps);
        sps.extend_from_slice(&[0x42, 0xe0, 0x1f]);
        packets.push(sps);
        packets.push(vec![NRI | NAL_PPS, 0xce, 0x3c, 0x80]);
        NAL_IDR
    } else {
        NAL_SLICE
    };
    // The slice's body (without its one-byte NAL header).
    let body_len = size.max(STAMP_LEN + 1);
    let mut body = Vec::with_capacity(body_len);
    stamp.write(&mut body);
    body.extend((body.len()..body_len).map(|i| (i as u8).wrapping_mul(31)));
    if body.len() < mtu {
        let mut single = Vec::with_capacity(body.len() + 1);
        single.push(NRI | slice_type);
        single.extend_from_slice(&body);
        packets.push(single);
        return packets;
    }
    let chunk = mtu - 2;
    let count = body.len().div_ceil(chunk);
    for (i, part) in body.chunks(chunk).enumerate() {
        let mut fu = Vec::with_capacity(part.len() + 2);
        fu.push(NRI | NAL_FU_A);
        let mut header = slice_type;
        if i == 0 {
            header |= 0x80;
        }
        if i + 1 == count {
            header |= 0x40;
        }
        fu.push(header);
        fu.extend_from_slice(part);
        packets.push(fu);
    }
    packets
}

/// One Opus-sized audio payload (a TOC byte for 20 ms CELT fullband, then filler).
pub fn audio_packet(counter: u64, size: usize) -> Vec<u8> {
    let mut p = vec![0xfc];
    p.extend_from_slice(&counter.to_be_bytes());
    p.resize(size.max(p.len()), 0x55);
    p
}

/// Can a decoder that has seen nothing start at this payload? The SFU's own test, so the
/// probe counts keyframes as the SFU gates on them.
pub use onstage_proto::h264::starts_keyframe;

/// The stamp of a packet that starts a frame: an SPS or slice as a single NAL unit, the
/// first FU-A fragment of a slice, or the first unit of a STAP-A. `None` for everything
/// else (PPS, middle fragments, audio-sized junk).
pub fn stamp_of(payload: &[u8]) -> Option<Stamp> {
    let first = *payload.first()?;
    match first & 0x1f {
        NAL_SLICE | NAL_IDR | NAL_SPS => Stamp::read(payload.get(1..)?),
        NAL_STAP_A => {
            let unit = stap_a_units(&payload[1..]).next()?;
            match unit[0] & 0x1f {
                NAL_SLICE | NAL_IDR | NAL_SPS => Stamp::read(&unit[1..]),
                _ => None,
            }
        }
        NAL_FU_A => {
            let fu = *payload.get(1)?;
            if fu & 0x80 == 0 || !matches!(fu & 0x1f, NAL_SLICE | NAL_IDR | NAL_SPS) {
                return None;
            }
            Stamp::read(payload.get(2..)?)
        }
        _ => None,
    }
}

/// The units inside a STAP-A aggregate (16-bit size, then the unit), stopping at the first
/// truncated or empty entry.
fn stap_a_units(mut rest: &[u8]) -> impl Iterator<Item = &[u8]> {
    std::iter::from_fn(move || {
        if rest.len() < 3 {
            return None;
        }
        let size = usize::from(u16::from_be_bytes([rest[0], rest[1]]));
        let unit = rest.get(2..2 + size).filter(|u| !u.is_empty())?;
        rest = &rest[2 + size..];
        Some(unit)
    })
}

/// Is this datagram an RTP (not RTCP) packet, judged by its first two bytes (RFC 5761,
/// RFC 7983)? Used to tell media from control traffic in raw socket counts.
pub fn is_rtp_datagram(d: &[u8]) -> bool {
    match d {
        [b0, b1, ..] => (128..=191).contains(b0) && !(192..=223).contains(b1),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const STAMP: Stamp = Stamp {
        frame: 42,
        sent_unix_us: 1_700_000_000_123_456,
    };

    #[test]
    fn a_keyframe_is_sps_pps_then_idr_fragments() {
        let packets = video_frame(STAMP, true, 5000, 1200);
        assert_eq!(packets[0][0] & 0x1f, NAL_SPS);
        assert_eq!(packets[1][0] & 0x1f, NAL_PPS);
        assert!(starts_keyframe(&packets[0]));
        assert!(!starts_keyframe(&packets[1]));
        assert!(starts_keyframe(&packets[2]), "the IDR start is a start too");
        assert_eq!(stamp_of(&packets[0]), Some(STAMP));
        let frags = &packets[2..];
        assert!(frags.len() >= 5);
        assert!(frags
            .iter()
            .all(|p| p.len() <= 1200 && p[0] & 0x1f == NAL_FU_A));
        assert_eq!(frags[0][1] & 0xc0, 0x80, "start bit on the first fragment");
        assert_eq!(
            frags[frags.len() - 1][1] & 0xc0,
            0x40,
            "end bit on the last"
        );
        assert!(frags[1..frags.len() - 1].iter().all(|p| p[1] & 0xc0 == 0));
        let body: usize = frags.iter().map(|p| p.len() - 2).sum();
        assert_eq!(body, 5000);
        assert!(frags[1..].iter().all(|p| stamp_of(p).is_none()));
    }

    #[test]
    fn a_delta_frame_carries_its_stamp_and_starts_nothing() {
        let packets = video_frame(STAMP, false, 3000, 1200);
        assert_eq!(packets.len(), 3);
        assert!(packets.iter().all(|p| !starts_keyframe(p)));
        assert_eq!(stamp_of(&packets[0]), Some(STAMP));
        let small = video_frame(STAMP, false, 300, 1200);
        assert_eq!(small.len(), 1);
        assert_eq!(small[0][0] & 0x1f, NAL_SLICE);
        assert_eq!(stamp_of(&small[0]), Some(STAMP));
    }

    #[test]
    fn stap_a_and_truncated_input() {
        let mut stap = vec![NRI | NAL_STAP_A, 0x00, 13, NRI | NAL_SPS];
        stap.extend_from_slice(&[0, 0, 0, 7, 0, 0, 0, 0, 0, 0, 0, 9]);
        assert!(starts_keyframe(&stap));
        assert_eq!(
            stamp_of(&stap),
            Some(Stamp {
                frame: 7,
                sent_unix_us: 9
            })
        );
        assert!(!starts_keyframe(&[NRI | NAL_STAP_A, 0x00, 0x09, 0x67]));
        assert_eq!(stamp_of(&[NRI | NAL_SPS, 1, 2]), None);
        assert_eq!(stamp_of(&[]), None);
        assert_eq!(stamp_of(&[NRI | NAL_FU_A]), None);
        assert!(!starts_keyframe(&[]));
    }

    #[test]
    fn rtp_is_told_from_rtcp_stun_and_dtls() {
        assert!(is_rtp_datagram(&[0x80, 102, 0, 1]));
        assert!(is_rtp_datagram(&[0x90, 0xe6, 0, 1])); // marker bit + pt 102
        assert!(!is_rtp_datagram(&[0x81, 200, 0, 6])); // sender report
        assert!(!is_rtp_datagram(&[0x00, 0x01, 0, 0])); // STUN
        assert!(!is_rtp_datagram(&[22, 254, 253])); // DTLS
        assert!(!is_rtp_datagram(&[0x80]));
    }

    #[test]
    fn audio_packets_have_the_asked_size() {
        assert_eq!(audio_packet(3, 80).len(), 80);
        assert_eq!(audio_packet(3, 2).len(), 9);
    }
}
