//! H.264 encode benchmark: `cargo run --release -p onstage-media --example encode_bench [frames]`.
//!
//! Encodes `frames` (default 300) pictures of the unpaced synthetic pattern at 1280x720,
//! 30 fps, 1.2 Mbps, one encoder thread, and prints one JSON line: encode throughput, per
//! frame encode time (p50/p95), bytes out and the process CPU seconds of the encode loop.
//! Pattern generation is not in the per-frame times but is in the CPU time. After that
//! (outside the CPU figure) it decodes the stream and converts pictures to RGBA, and
//! reports those rates too.

use std::time::Instant;

use onstage_media::{EncoderConfig, H264Decoder, H264Encoder, SyntheticVideo, VideoSource};

const WIDTH: u32 = 1280;
const HEIGHT: u32 = 720;
const FPS: u32 = 30;
const BITRATE: u32 = 1_200_000;

/// User + system CPU seconds of this process, from `/proc/self/stat` (Linux only).
fn cpu_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the command name (which may contain spaces) start at state (field 3);
    // utime and stime are fields 14 and 15, in clock ticks (USER_HZ, 100 on Linux).
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    Some((utime + stime) / 100.0)
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let idx = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[idx.min(sorted.len() - 1)]
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let frames: usize = match std::env::args().nth(1) {
        Some(arg) => arg.parse()?,
        None => 300,
    };
    let mut source = SyntheticVideo::unpaced(WIDTH, HEIGHT, FPS);
    let mut encoder = H264Encoder::new(EncoderConfig {
        width: WIDTH,
        height: HEIGHT,
        fps: FPS,
        bitrate_bps: BITRATE,
    })?;

    let cpu_start = cpu_seconds();
    let wall = Instant::now();
    let mut times_ms = Vec::with_capacity(frames);
    let (mut bytes, mut encoded, mut keyframes) = (0usize, 0usize, 0usize);
    let mut stream = Vec::with_capacity(frames);
    for _ in 0..frames {
        let frame = source.next_frame()?;
        let t = Instant::now();
        let out = encoder.encode(&frame)?;
        times_ms.push(t.elapsed().as_secs_f64() * 1000.0);
        if let Some(out) = out {
            bytes += out.data.len();
            encoded += 1;
            keyframes += usize::from(out.keyframe);
            stream.push(out.data);
        }
    }
    let wall_s = wall.elapsed().as_secs_f64();
    let cpu = match (cpu_start, cpu_seconds()) {
        (Some(a), Some(b)) => format!("{:.2}", b - a),
        _ => "null".into(),
    };
    let mut decoder = H264Decoder::new()?;
    let t = Instant::now();
    let mut last = None;
    for access_unit in &stream {
        last = decoder.decode(access_unit)?.or(last);
    }
    let decode_fps = stream.len() as f64 / t.elapsed().as_secs_f64().max(f64::EPSILON);
    let rgba_ms = match &last {
        Some(picture) => {
            let t = Instant::now();
            for _ in 0..20 {
                std::hint::black_box(picture.to_rgba());
            }
            t.elapsed().as_secs_f64() * 1000.0 / 20.0
        }
        None => 0.0,
    };

    let encode_s: f64 = times_ms.iter().sum::<f64>() / 1000.0;
    times_ms.sort_by(f64::total_cmp);
    let video_s = frames as f64 / f64::from(FPS);
    println!(
        "{{\"frames\":{frames},\"width\":{WIDTH},\"height\":{HEIGHT},\"bitrate_bps\":{BITRATE},\
         \"fps\":{:.1},\"ms_per_frame_p50\":{:.2},\"ms_per_frame_p95\":{:.2},\"cpu_seconds\":{cpu},\
         \"wall_seconds\":{wall_s:.2},\"encoded_frames\":{encoded},\"keyframes\":{keyframes},\
         \"bytes\":{bytes},\"achieved_bps\":{:.0},\"decode_fps\":{decode_fps:.1},\"to_rgba_ms\":{rgba_ms:.2}}}",
        frames as f64 / encode_s.max(f64::EPSILON),
        percentile(&times_ms, 0.5),
        percentile(&times_ms, 0.95),
        bytes as f64 * 8.0 / video_s,
    );
    Ok(())
}
