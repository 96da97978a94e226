//! Just enough H.264 RTP payload parsing (RFC 6184) to find where a viewer can start
//! decoding: the first packet of a keyframe. The SFU switches a viewer's layer there, and
//! a receiver that lost part of a frame resumes there.

/// NAL unit types that begin a decodable picture sequence.
const NAL_IDR: u8 = 5;
const NAL_SPS: u8 = 7;
const NAL_STAP_A: u8 = 24;
const NAL_FU_A: u8 = 28;

/// Does this RTP payload start a keyframe, i.e. can a decoder that has seen nothing before
/// begin here? True for a packet carrying an SPS (encoders put SPS/PPS in front of every
/// IDR) or the first fragment of an IDR slice, in a single NAL unit, STAP-A or FU-A packet.
pub fn starts_keyframe(payload: &[u8]) -> bool {
    let Some(&first) = payload.first() else {
        return false;
    };
    match first & 0x1f {
        NAL_SPS | NAL_IDR => true,
        NAL_STAP_A => stap_a_units(&payload[1..]).any(|t| t == NAL_SPS || t == NAL_IDR),
        NAL_FU_A => match payload.get(1) {
            // Start bit set and the fragmented unit is an IDR slice (or, oddly, an SPS).
            Some(&fu) => fu & 0x80 != 0 && matches!(fu & 0x1f, NAL_IDR | NAL_SPS),
            None => false,
        },
        _ => false,
    }
}

/// The NAL unit types inside a STAP-A aggregate: 16-bit size, then the unit. Stops at the
/// first truncated entry instead of reading past the end.
fn stap_a_units(mut rest: &[u8]) -> impl Iterator<Item = u8> + '_ {
    std::iter::from_fn(move || {
        if rest.len() < 3 {
            return None;
        }
        let size = usize::from(u16::from_be_bytes([rest[0], rest[1]]));
        let unit = rest.get(2..2 + size)?;
        rest = &rest[2 + size..];
        unit.first().map(|h| h & 0x1f)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn single_nal_units() {
        assert!(starts_keyframe(&[0x67, 0x42, 0x00]));
        assert!(starts_keyframe(&[0x65, 0x88]));
        assert!(!starts_keyframe(&[0x41, 0x9a]));
        assert!(!starts_keyframe(&[0x68, 0xce])); // PPS alone is not a start
        assert!(!starts_keyframe(&[]));
    }

    #[test]
    fn stap_a_with_sps_and_pps() {
        let stap = [0x78, 0x00, 0x02, 0x67, 0x42, 0x00, 0x02, 0x68, 0xce];
        assert!(starts_keyframe(&stap));
        let only_pps = [0x78, 0x00, 0x02, 0x68, 0xce];
        assert!(!starts_keyframe(&only_pps));
        let truncated = [0x78, 0x00, 0x09, 0x67];
        assert!(!starts_keyframe(&truncated));
    }

    #[test]
    fn fu_a_start_of_idr_only() {
        assert!(starts_keyframe(&[0x7c, 0x85, 0x00]));
        assert!(!starts_keyframe(&[0x7c, 0x05, 0x00])); // middle fragment
        assert!(!starts_keyframe(&[0x7c, 0x81, 0x00])); // start of a non-IDR slice
        assert!(!starts_keyframe(&[0x7c]));
    }
}
