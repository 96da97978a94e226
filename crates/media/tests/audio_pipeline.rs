//! The receive path for audio, end to end without a network: tone -> Opus -> a lossy,
//! reordering "network" -> jitter buffer -> decode with concealment -> mixer.

use onstage_media::{
    dominant_frequency, AudioMixer, AudioSource, JitterBuffer, OpusDecoder, OpusEncoder, Playout,
    SyntheticAudio, AUDIO_FRAME_SAMPLES, AUDIO_SAMPLE_RATE,
};

const TICK: u32 = AUDIO_FRAME_SAMPLES as u32;

/// Encodes `n` frames of a tone into (rtp_ts, packet) starting at `ts0`.
fn tone_packets(freq: f32, n: usize, ts0: u32) -> Vec<(u32, Vec<u8>)> {
    let mut tone = SyntheticAudio::unpaced(freq);
    let mut enc = OpusEncoder::new(32_000).expect("encoder");
    (0..n)
        .map(|i| {
            let frame = tone.next_frame().expect("tone");
            let ts = ts0.wrapping_add(i as u32 * TICK);
            (ts, enc.encode(&frame).expect("encode"))
        })
        .collect()
}

/// What arrives in each 20 ms tick: neighbours swapped every 7th packet, every 23rd
/// lost (its tick stays empty). A deterministic "network".
fn network(mut packets: Vec<(u32, Vec<u8>)>) -> Vec<Option<(u32, Vec<u8>)>> {
    for i in (0..packets.len() - 1).step_by(7) {
        packets.swap(i, i + 1);
    }
    packets
        .into_iter()
        .enumerate()
        .map(|(i, p)| (i % 23 != 22).then_some(p))
        .collect()
}

#[test]
fn packets_reordered_and_lost_still_play_the_tone() {
    // Start near the top of the RTP clock so the stream wraps half-way.
    let ts0 = u32::MAX - 50 * TICK + 1;
    let arrivals = network(tone_packets(440.0, 100, ts0));
    let mut jb: JitterBuffer<Vec<u8>> = JitterBuffer::new();
    let mut dec = OpusDecoder::new().expect("decoder");
    let mut played = Vec::new();
    let (mut lost, mut frames) = (0, 0);
    // Each 20 ms tick: at most one packet arrives, and the speaker pulls one frame.
    for arrival in arrivals {
        if let Some((ts, packet)) = arrival {
            jb.push(ts, packet);
        }
        match jb.poll() {
            Playout::Frame(p) => {
                played.extend(dec.decode(&p).expect("decode").samples);
                frames += 1;
            }
            Playout::Lost => {
                played.extend(dec.decode_lost().samples);
                lost += 1;
            }
            Playout::Waiting => {}
        }
    }
    assert_eq!(lost, 4, "each dropped packet was concealed once");
    assert!(frames >= 85, "{frames} frames played");
    assert_eq!(jb.late_frames(), 0, "the 2-frame delay absorbed the swaps");
    let f = dominant_frequency(&played[AUDIO_FRAME_SAMPLES * 5..], AUDIO_SAMPLE_RATE);
    assert!((f - 440.0).abs() <= 5.0, "played {f} Hz");
}

#[test]
fn mixer_carries_each_source() {
    let mut mixer = AudioMixer::new();
    let mut decoders = [
        OpusDecoder::new().expect("decoder"),
        OpusDecoder::new().expect("decoder"),
    ];
    let streams = [
        tone_packets(440.0, 60, 1000),
        tone_packets(440.0, 60, 777_777),
    ];
    let mut out = Vec::new();
    for i in 0..60 {
        for (s, (stream, dec)) in streams.iter().zip(decoders.iter_mut()).enumerate() {
            let (ts, packet) = &stream[i];
            mixer.push(format!("p{s}"), *ts, dec.decode(packet).expect("decode"));
        }
        out.extend(mixer.mix_next().samples);
    }
    // Two copies of the same tone: same frequency, about twice the level, no clipping
    // (0.3 + 0.3 of full scale).
    let steady = &out[AUDIO_FRAME_SAMPLES * 8..];
    let f = dominant_frequency(steady, AUDIO_SAMPLE_RATE);
    assert!((f - 440.0).abs() <= 5.0, "mixed {f} Hz");
    let peak = steady.iter().map(|s| s.unsigned_abs()).max().unwrap_or(0);
    assert!((14_000..32_767).contains(&peak), "peak {peak}");
}
