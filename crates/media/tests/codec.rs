//! Codec round trips with the synthetic sources: what the far end of a call sees.

use onstage_media::{
    dominant_frequency, read_stamp, AudioFrame, AudioSource, EncodedVideo, EncoderConfig,
    H264Decoder, H264Encoder, OpusDecoder, OpusEncoder, SyntheticAudio, SyntheticVideo, VideoFrame,
    VideoSource, AUDIO_FRAME_SAMPLES, AUDIO_SAMPLE_RATE, MAX_BITRATE_BPS, MIN_BITRATE_BPS,
};

fn encoder(width: u32, height: u32, bitrate_bps: u32) -> H264Encoder {
    H264Encoder::new(EncoderConfig {
        width,
        height,
        fps: 30,
        bitrate_bps,
    })
    .expect("encoder starts")
}

/// NAL unit types in an Annex-B access unit, in order.
fn nal_types(annex_b: &[u8]) -> Vec<u8> {
    let mut types = Vec::new();
    let mut i = 0;
    while i + 3 < annex_b.len() {
        if annex_b[i..].starts_with(&[0, 0, 1]) {
            types.push(annex_b[i + 3] & 0x1f);
            i += 3;
        } else {
            i += 1;
        }
    }
    types
}

#[test]
fn stamps_survive_h264_at_300_kbps() {
    let mut source = SyntheticVideo::unpaced(640, 480, 30);
    let mut enc = encoder(640, 480, 300_000);
    let mut dec = H264Decoder::new().expect("decoder starts");
    let mut last: Option<u32> = None;
    let mut decoded = 0;
    for k in 0..60u32 {
        let frame = source.next_frame().expect("synthetic frame");
        let Some(encoded) = enc.encode(&frame).expect("encode") else {
            continue; // rate control skipped it
        };
        assert_eq!(encoded.timestamp_us, frame.timestamp_us);
        if k == 0 {
            assert!(encoded.keyframe, "the first frame is a keyframe");
        }
        let picture = dec
            .decode(&encoded.data)
            .expect("decode")
            .expect("every access unit gives a picture");
        assert_eq!((picture.width, picture.height), (640, 480));
        assert!(picture.validate().is_ok());
        let stamp = read_stamp(&picture).unwrap_or_else(|| panic!("frame {k}: stamp unreadable"));
        assert_eq!(stamp.frame_number, k, "frame {k}");
        assert_eq!(stamp.capture_time_ms, frame.timestamp_us / 1000);
        assert!(
            last.is_none_or(|l| stamp.frame_number > l),
            "frame numbers increase"
        );
        last = Some(stamp.frame_number);
        decoded += 1;
    }
    assert!(decoded >= 45, "only {decoded} of 60 frames came out");
}

#[test]
fn keyframe_on_request_with_parameter_sets() {
    let mut source = SyntheticVideo::unpaced(320, 240, 30);
    let mut enc = encoder(320, 240, 500_000);
    let mut outputs: Vec<EncodedVideo> = Vec::new();
    for _ in 0..10 {
        outputs.extend(
            enc.encode(&source.next_frame().expect("frame"))
                .expect("encode"),
        );
    }
    assert!(outputs[0].keyframe);
    let first = nal_types(&outputs[0].data);
    assert!(
        first.contains(&7) && first.contains(&8) && first.contains(&5),
        "IDR access unit carries SPS, PPS and an IDR slice: {first:?}"
    );
    assert!(
        outputs[1..].iter().all(|o| !o.keyframe),
        "no keyframes unless asked"
    );

    enc.request_keyframe();
    let mut next = None;
    for _ in 0..5 {
        if let Some(o) = enc
            .encode(&source.next_frame().expect("frame"))
            .expect("encode")
        {
            next = Some(o);
            break;
        }
    }
    let next = next.expect("an output after the request");
    assert!(
        next.keyframe,
        "the next output after a request is a keyframe"
    );
    let types = nal_types(&next.data);
    assert!(
        types.contains(&7) && types.contains(&8) && types.contains(&5),
        "{types:?}"
    );

    let after = (0..5)
        .find_map(|_| {
            enc.encode(&source.next_frame().expect("frame"))
                .expect("encode")
        })
        .expect("output");
    assert!(!after.keyframe, "one request, one keyframe");
    assert_eq!(
        nal_types(&after.data),
        vec![1],
        "a P frame is a single non-IDR slice"
    );

    // A late viewer can start decoding at the requested keyframe.
    let mut dec = H264Decoder::new().expect("decoder");
    let picture = dec.decode(&next.data).expect("decode").expect("picture");
    assert_eq!((picture.width, picture.height), (320, 240));
}

#[test]
fn sps_announces_constrained_baseline() {
    let mut enc = encoder(640, 480, 500_000);
    let out = enc
        .encode(&SyntheticVideo::unpaced(640, 480, 30).render(0, 0))
        .expect("encode")
        .expect("first frame");
    let sps_at = out
        .data
        .windows(4)
        .position(|w| w[..3] == [0, 0, 1] && w[3] & 0x1f == 7)
        .expect("SPS present");
    let profile_idc = out.data[sps_at + 4];
    let constraints = out.data[sps_at + 5];
    assert_eq!(profile_idc, 66, "baseline");
    assert!(
        constraints & 0x40 != 0,
        "constraint_set1 (constrained baseline)"
    );
}

fn bytes_over(enc: &mut H264Encoder, source: &mut SyntheticVideo, frames: usize) -> (usize, usize) {
    let mut bytes = 0;
    let mut keyframes = 0;
    for _ in 0..frames {
        if let Some(o) = enc
            .encode(&source.next_frame().expect("frame"))
            .expect("encode")
        {
            bytes += o.data.len();
            keyframes += usize::from(o.keyframe);
        }
    }
    (bytes, keyframes)
}

#[test]
fn set_bitrate_moves_output_size() {
    let mut source = SyntheticVideo::unpaced(640, 480, 30);
    let mut enc = encoder(640, 480, 1_500_000);
    bytes_over(&mut enc, &mut source, 30); // settle
    let (high, _) = bytes_over(&mut enc, &mut source, 60);

    enc.set_bitrate(200_000).expect("lower");
    assert_eq!(enc.bitrate(), 200_000);
    bytes_over(&mut enc, &mut source, 15); // let rate control react
    let (low, keyframes) = bytes_over(&mut enc, &mut source, 60);
    assert_eq!(
        keyframes, 0,
        "a live bitrate change does not restart the stream"
    );
    assert!(
        low * 2 < high,
        "200 kbps gave {low} bytes, 1.5 Mbps gave {high} bytes"
    );

    enc.set_bitrate(1_500_000).expect("raise");
    bytes_over(&mut enc, &mut source, 15);
    let (again, _) = bytes_over(&mut enc, &mut source, 60);
    assert!(again > low * 2, "raised back: {again} bytes vs {low}");
    // 60 frames at 30 fps is 2 s: roughly the target, not wildly above it.
    assert!(again * 8 / 2 < 2 * 1_500_000, "{again} bytes in 2 s");

    enc.set_bitrate(10).expect("clamped low");
    assert_eq!(enc.bitrate(), MIN_BITRATE_BPS);
    enc.set_bitrate(u32::MAX).expect("clamped high");
    assert_eq!(enc.bitrate(), MAX_BITRATE_BPS);
}

#[test]
fn set_bitrate_before_the_first_frame() {
    let mut enc = encoder(320, 240, 300_000);
    enc.set_bitrate(800_000).expect("set");
    assert_eq!(enc.bitrate(), 800_000);
    assert_eq!(enc.config().bitrate_bps, 800_000);
    let out = enc
        .encode(&SyntheticVideo::unpaced(320, 240, 30).render(0, 0))
        .expect("encode")
        .expect("first frame");
    assert!(out.keyframe);
}

#[test]
fn resolution_change_restarts_with_a_keyframe() {
    let mut enc = encoder(640, 480, 500_000);
    let mut dec = H264Decoder::new().expect("decoder");
    let big = SyntheticVideo::unpaced(640, 480, 30);
    let small = SyntheticVideo::unpaced(320, 240, 30);
    for k in 0..3 {
        if let Some(o) = enc.encode(&big.render(k, 0)).expect("encode") {
            dec.decode(&o.data).expect("decode");
        }
    }
    let o = enc
        .encode(&small.render(3, 0))
        .expect("encode")
        .expect("output after resize");
    assert!(o.keyframe);
    assert_eq!(enc.config().width, 320);
    let picture = dec.decode(&o.data).expect("decode").expect("picture");
    assert_eq!((picture.width, picture.height), (320, 240));
    assert_eq!(read_stamp(&picture).map(|s| s.frame_number), Some(3));
}

/// What a viewer of a simulcast publication decodes when the SFU switches it from one
/// layer to another: one decoder, the stream of one encoder up to a keyframe of the other
/// (each layer is its own encoder, so each has its own SPS and PPS, same ids), down and up.
#[test]
fn a_layer_switch_at_a_keyframe_decodes_at_the_new_size() {
    let capture = SyntheticVideo::unpaced(1280, 720, 30);
    let mut small = encoder(640, 360, 450_000);
    let mut large = encoder(1280, 720, 1_700_000);
    let mut dec = H264Decoder::new().expect("decoder");
    // Frames 0..10 from the small layer, 10..20 from the large one, 20..30 small again:
    // each switch is at the new layer's keyframe, as the SFU switches.
    let mut decoded = Vec::new();
    for k in 0..30u32 {
        let frame = capture.render(k, u64::from(k) * 33_333);
        // The stamp painted again at the layer's size, as the publisher does for a
        // synthetic source.
        let mut scaled = onstage_media::downscale(&frame, 640, 360);
        onstage_media::write_stamp(&mut scaled, read_stamp(&frame).expect("stamped"));
        let on_large = (10..20).contains(&k);
        if k == 10 {
            large.request_keyframe();
        }
        if k == 20 {
            small.request_keyframe();
        }
        // Both layers are encoded all along; only one is forwarded.
        let small_out = small.encode(&scaled).expect("encode");
        let large_out = large.encode(&frame).expect("encode");
        let Some(out) = (if on_large { large_out } else { small_out }) else {
            continue;
        };
        if k == 10 || k == 20 {
            assert!(out.keyframe, "frame {k}: the switch is at a keyframe");
        }
        if let Some(picture) = dec.decode(&out.data).expect("decode") {
            let stamp = read_stamp(&picture).map(|s| s.frame_number);
            decoded.push((k, picture.width, picture.height, stamp));
        }
    }
    for &(k, w, h, stamp) in &decoded {
        let size = if (10..20).contains(&k) {
            (1280, 720)
        } else {
            (640, 360)
        };
        assert_eq!((w, h), size, "frame {k}");
        assert_eq!(stamp, Some(k), "frame {k}");
    }
    for k in [9, 10, 19, 20] {
        assert!(
            decoded.iter().any(|d| d.0 == k),
            "frame {k} decoded: {decoded:?}"
        );
    }
}

#[test]
fn bad_input_is_a_typed_error_not_a_panic() {
    let code = |r: Result<H264Encoder, _>| {
        r.map(|_| ())
            .map_err(|e: onstage_media::MediaError| e.code().as_str())
    };
    let cfg = |w, h, fps| EncoderConfig {
        width: w,
        height: h,
        fps,
        bitrate_bps: 500_000,
    };
    assert_eq!(
        code(H264Encoder::new(cfg(641, 480, 30))),
        Err("unsupported_format")
    );
    assert_eq!(
        code(H264Encoder::new(cfg(0, 480, 30))),
        Err("unsupported_format")
    );
    assert_eq!(
        code(H264Encoder::new(cfg(640, 480, 0))),
        Err("unsupported_format")
    );
    assert_eq!(
        code(H264Encoder::new(cfg(8000, 480, 30))),
        Err("unsupported_format")
    );

    let mut enc = encoder(64, 64, 200_000);
    let mut broken = VideoFrame::black(64, 64, 0);
    broken.y.truncate(10);
    assert_eq!(
        enc.encode(&broken)
            .map(|_| ())
            .map_err(|e| e.code().as_str()),
        Err("unsupported_format")
    );

    let mut dec = H264Decoder::new().expect("decoder");
    assert_eq!(dec.decode(&[]), Ok(None));
    let garbage: Vec<u8> = [0u8, 0, 0, 1, 0x65]
        .into_iter()
        .chain((0..500u32).map(|i| (i * 37 % 251) as u8))
        .collect();
    // Either an error or nothing, never a panic or a picture from nowhere.
    if let Ok(Some(_)) = dec.decode(&garbage) {
        panic!("garbage produced a picture");
    }
    // After garbage, a real keyframe still decodes.
    let out = enc
        .encode(&SyntheticVideo::unpaced(64, 64, 30).render(0, 0))
        .expect("encode")
        .expect("frame");
    let mut fresh = H264Decoder::new().expect("decoder");
    assert!(fresh.decode(&out.data).expect("decode").is_some());
}

#[test]
fn opus_round_trip_keeps_a_440_hz_tone() {
    let mut tone = SyntheticAudio::unpaced(440.0);
    let mut enc = OpusEncoder::new(32_000).expect("encoder");
    let mut dec = OpusDecoder::new().expect("decoder");
    let mut decoded = Vec::new();
    for _ in 0..50 {
        let frame = tone.next_frame().expect("tone");
        let packet = enc.encode(&frame).expect("encode");
        assert!(
            !packet.is_empty() && packet.len() < 400,
            "{} bytes",
            packet.len()
        );
        let out = dec.decode(&packet).expect("decode");
        assert_eq!(out.samples.len(), AUDIO_FRAME_SAMPLES);
        decoded.extend(out.samples);
    }
    // Skip the codec's start-up (look-ahead and ramp).
    let steady = &decoded[AUDIO_FRAME_SAMPLES * 5..];
    let f = dominant_frequency(steady, AUDIO_SAMPLE_RATE);
    assert!((f - 440.0).abs() <= 5.0, "decoded tone at {f} Hz");
    let peak = steady.iter().map(|s| s.unsigned_abs()).max().unwrap_or(0);
    assert!((7000..=12_000).contains(&peak), "level kept: peak {peak}");

    // Concealment continues the sound instead of dropping to silence.
    let concealed = dec.decode_lost();
    assert_eq!(concealed.samples.len(), AUDIO_FRAME_SAMPLES);
    let energy: i64 = concealed.samples.iter().map(|&s| i64::from(s).abs()).sum();
    assert!(energy > 0, "PLC produced sound");
}

#[test]
fn opus_rejects_wrong_frames_and_garbage() {
    let mut enc = OpusEncoder::new(32_000).expect("encoder");
    let short = AudioFrame {
        samples: vec![0; 100],
        timestamp_us: 0,
    };
    assert_eq!(
        enc.encode(&short).map_err(|e| e.code().as_str()),
        Err("unsupported_format")
    );
    let mut dec = OpusDecoder::new().expect("decoder");
    assert_eq!(
        dec.decode(&[]).map_err(|e| e.code().as_str()),
        Err("codec_error")
    );
    // TOC config 0 is one 10 ms SILK frame: valid Opus, but not our 20 ms tick.
    assert_eq!(
        dec.decode(&[0x00, 0xff, 0xff])
            .map_err(|e| e.code().as_str()),
        Err("unsupported_format")
    );
    // Config 1 is 20 ms: accepted.
    assert!(dec.decode(&[1 << 3, 0xff, 0xff]).is_ok());
    // Code 3 with a zero frame count is malformed.
    assert!(dec.decode(&[0x03, 0x00]).is_err());
    // Concealment with no history is silence, not a panic.
    assert_eq!(
        OpusDecoder::new()
            .expect("decoder")
            .decode_lost()
            .samples
            .len(),
        AUDIO_FRAME_SAMPLES
    );
}

#[test]
fn rate_control_follows_capture_times() {
    // The same 60 pictures captured at 15 fps cover 4 s instead of 2 s, so a 30 fps
    // encoder that reads the capture times spends about twice the bytes on them.
    let spend = |frame_interval_us: u64| {
        let source = SyntheticVideo::unpaced(640, 480, 30);
        let mut enc = encoder(640, 480, 300_000);
        let start = 1_700_000_000_000_000u64;
        (0..60u32)
            .filter_map(|k| {
                let frame = source.render(k, start + u64::from(k) * frame_interval_us);
                enc.encode(&frame).expect("encode")
            })
            .map(|o| o.data.len())
            .sum::<usize>()
    };
    let at_30 = spend(33_333);
    let at_15 = spend(66_667);
    assert!(
        at_15 * 2 > at_30 * 3,
        "15 fps capture: {at_15} bytes, 30 fps capture: {at_30} bytes"
    );
}
