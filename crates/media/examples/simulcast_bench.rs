//! Simulcast encode benchmark:
//! `cargo run --release -p onstage-media --example simulcast_bench [frames] [low|medium]`.
//!
//! What a simulcast publisher's camera thread does per picture, stage by stage, on the
//! unpaced synthetic pattern at 1280x720: draw the picture, scale it down to 640x360 and
//! 320x180 (each from the next larger), and encode the three layers with their own encoders
//! (1.7 Mbit/s, 450 and 150 kbit/s, one thread each, at the given complexity: low, as the
//! SDK runs them, by default). Prints one JSON line: milliseconds per frame of each stage
//! (mean; at 30 fps, `ms * 30 / 1000` is the share of a core it takes), each layer's
//! bitrate and its Y-PSNR against the picture it was encoded from (decoding is not timed).

use std::time::Instant;

use onstage_media::{
    downscale, EncoderComplexity, EncoderConfig, H264Decoder, H264Encoder, SyntheticVideo,
    VideoFrame,
};

const LAYERS: [(&str, u32, u32, u32); 3] = [
    ("q", 320, 180, 150_000),
    ("h", 640, 360, 450_000),
    ("f", 1280, 720, 1_700_000),
];
const FPS: u32 = 30;
/// Pictures before the PSNR counts (rate control settles).
const SETTLE: u32 = 30;

fn y_psnr(a: &VideoFrame, b: &VideoFrame) -> f64 {
    let squared: f64 =
        a.y.iter()
            .zip(&b.y)
            .map(|(&x, &y)| (f64::from(x) - f64::from(y)).powi(2))
            .sum();
    let mse = (squared / a.y.len() as f64).max(1e-9);
    10.0 * (255.0 * 255.0 / mse).log10()
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let frames: u32 = args.next().map_or(Ok(300), |a| a.parse())?;
    let complexity = match args.next().as_deref() {
        None | Some("low") => EncoderComplexity::Low,
        Some("medium") => EncoderComplexity::Medium,
        Some(other) => return Err(format!("complexity low or medium, not {other:?}").into()),
    };
    let source = SyntheticVideo::unpaced(1280, 720, FPS);
    let mut encoders = LAYERS
        .iter()
        .map(|&(_, width, height, bitrate_bps)| {
            let config = EncoderConfig {
                width,
                height,
                fps: FPS,
                bitrate_bps,
            };
            H264Encoder::with_complexity(config, complexity)
        })
        .collect::<Result<Vec<_>, _>>()?;
    let mut decoders = [
        H264Decoder::new()?,
        H264Decoder::new()?,
        H264Decoder::new()?,
    ];
    let (mut draw, mut scale) = (0.0f64, 0.0f64);
    let (mut encode, mut bytes, mut psnr) = ([0.0f64; 3], [0usize; 3], [(0.0f64, 0u32); 3]);
    for k in 0..frames {
        let t = Instant::now();
        let full = source.render(k, u64::from(k) * 1_000_000 / u64::from(FPS));
        draw += t.elapsed().as_secs_f64();
        let t = Instant::now();
        let half = downscale(&full, 640, 360);
        let quarter = downscale(&half, 320, 180);
        scale += t.elapsed().as_secs_f64();
        for (i, picture) in [&quarter, &half, &full].into_iter().enumerate() {
            let t = Instant::now();
            let out = encoders[i].encode(picture)?;
            encode[i] += t.elapsed().as_secs_f64();
            let Some(out) = out else { continue };
            bytes[i] += out.data.len();
            if let Some(decoded) = decoders[i].decode(&out.data)? {
                if k >= SETTLE {
                    psnr[i].0 += y_psnr(picture, &decoded);
                    psnr[i].1 += 1;
                }
            }
        }
    }
    let ms = |s: f64| s * 1000.0 / f64::from(frames);
    let layers: Vec<String> = LAYERS
        .iter()
        .enumerate()
        .map(|(i, (rid, ..))| {
            format!(
                "\"{rid}\":{{\"encode_ms\":{:.2},\"kbit_s\":{:.0},\"y_psnr_db\":{:.2}}}",
                ms(encode[i]),
                bytes[i] as f64 * 8.0 * f64::from(FPS) / f64::from(frames) / 1000.0,
                psnr[i].0 / f64::from(psnr[i].1.max(1)),
            )
        })
        .collect();
    let total = draw + scale + encode.iter().sum::<f64>();
    println!(
        "{{\"frames\":{frames},\"complexity\":\"{complexity:?}\",\"draw_ms\":{:.2},\"downscale_ms\":{:.2},\
         \"layers\":{{{}}},\"total_ms\":{:.2},\"cores_at_30fps\":{:.3}}}",
        ms(draw),
        ms(scale),
        layers.join(","),
        ms(total),
        ms(total) * f64::from(FPS) / 1000.0,
    );
    Ok(())
}
