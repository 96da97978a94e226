//! Synthetic sources: a moving test pattern and a sine tone, paced in real time.
//!
//! They stand in for the camera and microphone on machines without devices, in bots and
//! in tests. The video pattern carries its own frame number and capture time as big
//! black/white blocks, so the far end of a whole pipeline (encode, RTP, SFU, decode) can
//! read back exactly which frame it got and how old it is ([`read_stamp`]).

use std::f64::consts::TAU;
use std::time::{Duration, Instant};

use crate::{
    now_unix_us, AudioFrame, AudioSource, MediaError, VideoFormat, VideoFrame, VideoSource,
    AUDIO_FRAME_SAMPLES, AUDIO_SAMPLE_RATE,
};

/// Side of one stamp block in pixels: one H.264 macroblock, so a block is coded on its
/// own and a flat black or white macroblock survives even very coarse quantisation.
pub const STAMP_BLOCK: u32 = 16;

/// Sync pattern in front of the payload: a picture that is not ours almost never has
/// these eight blocks, clean black and white, in this order.
const STAMP_SYNC: [bool; 8] = [true, false, true, true, false, false, true, false];
/// 8 sync + 32 frame number + 48 capture time + 8 CRC.
const STAMP_BITS: u32 = 96;
const BLACK: u8 = 16;
const WHITE: u8 = 235;
/// Block means below this read as 0, above [`STAMP_HIGH`] as 1; in between the picture
/// does not check out.
const STAMP_LOW: u32 = 90;
const STAMP_HIGH: u32 = 160;
const TIME_MASK: u64 = (1 << 48) - 1;

/// What [`SyntheticVideo`] stamps into each picture.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Stamp {
    /// Frame number, 0 for the first frame of a source, wrapping at `u32::MAX`.
    pub frame_number: u32,
    /// Capture time in unix milliseconds, truncated to 48 bits (good until year 10889).
    pub capture_time_ms: u64,
}

/// Real-time pacing: frame `k` is due at `start + k / rate`.
///
/// If the consumer falls more than one frame behind (a stall, a debugger), the schedule is
/// moved so the current frame is due now: at most one frame comes out early to catch up,
/// never a burst that would flood an encoder.
#[derive(Debug)]
struct Pacer {
    frames_per_second: u64,
    start: Option<Instant>,
    next: u64,
}

impl Pacer {
    fn new(frames_per_second: u32) -> Self {
        Self {
            frames_per_second: u64::from(frames_per_second.max(1)),
            start: None,
            next: 0,
        }
    }

    fn offset(&self, k: u64) -> Duration {
        let nanos = u128::from(k) * 1_000_000_000 / u128::from(self.frames_per_second);
        Duration::from_nanos(u64::try_from(nanos).unwrap_or(u64::MAX))
    }

    fn wait(&mut self) {
        let now = Instant::now();
        let start = *self.start.get_or_insert(now);
        let due = start + self.offset(self.next);
        let period = self.offset(1);
        if now < due {
            std::thread::sleep(due - now);
        } else if now.duration_since(due) > period {
            if let Some(rebased) = now.checked_sub(self.offset(self.next)) {
                self.start = Some(rebased);
            }
        }
        self.next += 1;
    }
}

/// A moving test pattern (sliding gradient and a travelling bar) with the frame number and
/// capture time stamped into the top rows.
///
/// [`new`](Self::new) paces itself in real time; [`unpaced`](Self::unpaced) returns frames
/// as fast as asked, with timestamps spaced exactly `1/fps` apart, for tests and benches.
#[derive(Debug)]
pub struct SyntheticVideo {
    format: VideoFormat,
    frame_number: u32,
    pacer: Option<Pacer>,
    start_us: u64,
}

impl SyntheticVideo {
    /// A real-time source. Odd sizes are rounded down to even (minimum 2x2), fps to at
    /// least 1. Pictures narrower or shorter than the stamp needs (at 640 wide the stamp
    /// takes the top 48 rows) carry no stamp.
    pub fn new(width: u32, height: u32, fps: u32) -> Self {
        let mut s = Self::unpaced(width, height, fps);
        s.pacer = Some(Pacer::new(s.format.fps));
        s
    }

    /// A source that never sleeps: frame `k` is stamped `start + k/fps`.
    pub fn unpaced(width: u32, height: u32, fps: u32) -> Self {
        Self {
            format: VideoFormat {
                width: (width & !1).max(2),
                height: (height & !1).max(2),
                fps: fps.max(1),
            },
            frame_number: 0,
            pacer: None,
            start_us: now_unix_us(),
        }
    }

    /// Draws frame `frame_number` with the given capture time. Deterministic: the same
    /// arguments give the same picture.
    pub fn render(&self, frame_number: u32, timestamp_us: u64) -> VideoFrame {
        let (w, h) = (self.format.width as usize, self.format.height as usize);
        let k = frame_number as usize;
        let mut frame = VideoFrame::black(w as u32, h as u32, timestamp_us);

        // A diagonal triangle-wave gradient sliding left, smooth enough to code cheaply
        // but moving every frame so the encoder has real work. Drawn a row at a time from
        // a table (a camera costs the app nothing to draw; this source should cost little).
        let bar_w = (w / 16).max(2);
        let bar_x = (k * 8) % w;
        let in_bar = |x: usize| (x + w - bar_x) % w < bar_w;
        let luma: Vec<u8> = (0..512)
            .map(|t| {
                let tri = if t < 256 { t } else { 511 - t };
                (16 + tri * 200 / 255) as u8
            })
            .collect();
        let bar_cols: Vec<bool> = (0..w).map(in_bar).collect();
        // Pixel `col` of a row whose phase is `base` is luma[(2 * col + base) % 512]: with
        // base = 2 * b + p, that is entry `b % 256 + col` of the table of parity `p`, so
        // each row is a slice of one of two tables (and the loop a plain select).
        let tables: [Vec<u8>; 2] =
            [0, 1].map(|p| (0..256 + w).map(|t| luma[(2 * t + p) % 512]).collect());
        for row in 0..h {
            let line = &mut frame.y[row * w..(row + 1) * w];
            let base = row + k * 6;
            let start = (base / 2) % 256;
            let gradient = &tables[base % 2][start..start + w];
            for ((px, &bar), &g) in line.iter_mut().zip(&bar_cols).zip(gradient) {
                *px = if bar { 210 } else { g };
            }
        }
        let (cw, ch) = (w / 2, h / 2);
        let fold = |t: usize| (96 + if t < 128 { t } else { 255 - t } / 2) as u8;
        // U varies along a row only, V down the rows only.
        let bar_chroma: Vec<bool> = (0..cw).map(|ccol| in_bar(ccol * 2)).collect();
        let u_row: Vec<u8> = (0..cw)
            .map(|ccol| {
                if bar_chroma[ccol] {
                    90
                } else {
                    fold((ccol + k * 2) % 256)
                }
            })
            .collect();
        for crow in 0..ch {
            let v = fold((crow * 2 + k) % 256);
            frame.u[crow * cw..(crow + 1) * cw].copy_from_slice(&u_row);
            let v_line = &mut frame.v[crow * cw..(crow + 1) * cw];
            for (px, &bar) in v_line.iter_mut().zip(&bar_chroma) {
                *px = if bar { 200 } else { v };
            }
        }

        write_stamp(
            &mut frame,
            Stamp {
                frame_number,
                capture_time_ms: (timestamp_us / 1000) & TIME_MASK,
            },
        );
        frame
    }
}

impl VideoSource for SyntheticVideo {
    fn format(&self) -> VideoFormat {
        self.format
    }

    fn next_frame(&mut self) -> Result<VideoFrame, MediaError> {
        let timestamp_us = match &mut self.pacer {
            Some(pacer) => {
                pacer.wait();
                now_unix_us()
            }
            None => {
                self.start_us
                    + u64::from(self.frame_number) * 1_000_000 / u64::from(self.format.fps)
            }
        };
        let frame = self.render(self.frame_number, timestamp_us);
        self.frame_number = self.frame_number.wrapping_add(1);
        Ok(frame)
    }
}

/// Where bit `i` of the stamp goes, or `None` if the picture is too small for a stamp.
fn stamp_layout(width: u32, height: u32) -> Option<u32> {
    let per_row = width / STAMP_BLOCK;
    if per_row == 0 {
        return None;
    }
    let rows = STAMP_BITS.div_ceil(per_row);
    (rows * STAMP_BLOCK <= height).then_some(per_row)
}

fn stamp_bits(stamp: Stamp) -> Vec<bool> {
    let payload = payload_bytes(stamp);
    let crc = crc8(&payload);
    let mut bits = STAMP_SYNC.to_vec();
    for byte in payload.iter().chain(std::iter::once(&crc)) {
        for b in (0..8).rev() {
            bits.push(byte >> b & 1 == 1);
        }
    }
    bits
}

fn payload_bytes(stamp: Stamp) -> [u8; 10] {
    let mut p = [0u8; 10];
    p[..4].copy_from_slice(&stamp.frame_number.to_be_bytes());
    p[4..].copy_from_slice(&(stamp.capture_time_ms & TIME_MASK).to_be_bytes()[2..]);
    p
}

/// CRC-8 (polynomial 0x07): catches any corrupted block in the payload.
fn crc8(data: &[u8]) -> u8 {
    let mut crc = 0u8;
    for &byte in data {
        crc ^= byte;
        for _ in 0..8 {
            crc = if crc & 0x80 != 0 {
                (crc << 1) ^ 0x07
            } else {
                crc << 1
            };
        }
    }
    crc
}

/// Paints `stamp` into the top rows of `frame` (no-op if the picture is too small).
pub fn write_stamp(frame: &mut VideoFrame, stamp: Stamp) {
    if frame.validate().is_err() {
        return;
    }
    let Some(per_row) = stamp_layout(frame.width, frame.height) else {
        return;
    };
    let (w, cw) = (frame.width as usize, frame.width as usize / 2);
    let b = STAMP_BLOCK as usize;
    for (i, bit) in stamp_bits(stamp).into_iter().enumerate() {
        let (bx, by) = (i % per_row as usize, i / per_row as usize);
        let value = if bit { WHITE } else { BLACK };
        for row in by * b..(by + 1) * b {
            frame.y[row * w + bx * b..row * w + (bx + 1) * b].fill(value);
        }
        for crow in by * b / 2..(by + 1) * b / 2 {
            let range = crow * cw + bx * b / 2..crow * cw + (bx + 1) * b / 2;
            frame.u[range.clone()].fill(128);
            frame.v[range].fill(128);
        }
    }
}

/// Reads the stamp [`SyntheticVideo`] painted, typically after the picture went through
/// an encoder and decoder.
///
/// Each block is judged by the mean of its inner 8x8 pixels (away from edges the codec
/// smears). Returns `None` if the picture is too small, any block is neither clearly
/// black nor clearly white, the sync pattern is wrong or the CRC does not match: a `Some`
/// is trustworthy.
pub fn read_stamp(frame: &VideoFrame) -> Option<Stamp> {
    frame.validate().ok()?;
    let per_row = stamp_layout(frame.width, frame.height)? as usize;
    let w = frame.width as usize;
    let b = STAMP_BLOCK as usize;
    let mut bits = Vec::with_capacity(STAMP_BITS as usize);
    for i in 0..STAMP_BITS as usize {
        let (bx, by) = (i % per_row, i / per_row);
        let mut sum = 0u32;
        for row in by * b + 4..by * b + 12 {
            let start = row * w + bx * b + 4;
            sum += frame.y[start..start + 8]
                .iter()
                .map(|&p| u32::from(p))
                .sum::<u32>();
        }
        let mean = sum / 64;
        bits.push(match mean {
            m if m < STAMP_LOW => false,
            m if m > STAMP_HIGH => true,
            _ => return None,
        });
    }
    if bits[..8] != STAMP_SYNC {
        return None;
    }
    let mut bytes = [0u8; 11];
    for (j, chunk) in bits[8..].chunks(8).enumerate() {
        bytes[j] = chunk.iter().fold(0u8, |acc, &bit| acc << 1 | u8::from(bit));
    }
    if crc8(&bytes[..10]) != bytes[10] {
        return None;
    }
    let frame_number = u32::from_be_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]);
    let mut t = [0u8; 8];
    t[2..].copy_from_slice(&bytes[4..10]);
    Some(Stamp {
        frame_number,
        capture_time_ms: u64::from_be_bytes(t),
    })
}

/// A sine tone at about 0.3 of full scale, in 20 ms frames, phase-continuous across
/// frames (so it sounds clean and a codec sees a steady signal).
#[derive(Debug)]
pub struct SyntheticAudio {
    step: f64,
    phase: f64,
    pacer: Option<Pacer>,
    frames: u64,
    start_us: u64,
}

/// Amplitude of the tone: loud enough to measure, far from clipping after a mix.
const TONE_AMPLITUDE: f64 = 0.3 * 32767.0;

impl SyntheticAudio {
    /// A real-time tone at `freq_hz`.
    pub fn new(freq_hz: f32) -> Self {
        let mut s = Self::unpaced(freq_hz);
        s.pacer = Some(Pacer::new(1000 / 20));
        s
    }

    /// A tone that never sleeps; frame `k` is stamped `start + k * 20 ms`.
    pub fn unpaced(freq_hz: f32) -> Self {
        Self {
            step: TAU * f64::from(freq_hz) / f64::from(AUDIO_SAMPLE_RATE),
            phase: 0.0,
            pacer: None,
            frames: 0,
            start_us: now_unix_us(),
        }
    }
}

impl AudioSource for SyntheticAudio {
    fn next_frame(&mut self) -> Result<AudioFrame, MediaError> {
        let timestamp_us = match &mut self.pacer {
            Some(pacer) => {
                pacer.wait();
                now_unix_us()
            }
            None => self.start_us + self.frames * 20_000,
        };
        let mut samples = Vec::with_capacity(AUDIO_FRAME_SAMPLES);
        for _ in 0..AUDIO_FRAME_SAMPLES {
            samples.push((TONE_AMPLITUDE * self.phase.sin()).round() as i16);
            self.phase = (self.phase + self.step) % TAU;
        }
        self.frames += 1;
        Ok(AudioFrame {
            samples,
            timestamp_us,
        })
    }
}

/// The strongest frequency in `samples`, in Hz (0.0 for silence or too little input).
///
/// FFT-free: upward zero crossings (with sub-sample interpolation) give a first estimate,
/// then a Hann-windowed Goertzel scan of +-10 % around it finds the peak to a fraction of
/// a hertz. Meant for checking a decoded test tone, not for analysing music.
pub fn dominant_frequency(samples: &[i16], sample_rate: u32) -> f32 {
    if samples.len() < 8 || sample_rate == 0 {
        return 0.0;
    }
    let mean = samples.iter().map(|&s| f64::from(s)).sum::<f64>() / samples.len() as f64;
    let x: Vec<f64> = samples.iter().map(|&s| f64::from(s) - mean).collect();

    let mut first = None;
    let mut last = 0.0;
    let mut crossings = 0u32;
    for i in 1..x.len() {
        if x[i - 1] < 0.0 && x[i] >= 0.0 {
            let t = (i - 1) as f64 + x[i - 1] / (x[i - 1] - x[i]);
            first.get_or_insert(t);
            last = t;
            crossings += 1;
        }
    }
    let Some(first) = first else {
        return 0.0;
    };
    if crossings < 2 || last <= first {
        return 0.0;
    }
    let rate = f64::from(sample_rate);
    let estimate = f64::from(crossings - 1) / (last - first) * rate;

    let n = x.len();
    let windowed: Vec<f64> = x
        .iter()
        .enumerate()
        .map(|(i, v)| v * (0.5 - 0.5 * (TAU * i as f64 / (n - 1) as f64).cos()))
        .collect();
    let power = |f: f64| {
        let coeff = 2.0 * (TAU * f / rate).cos();
        let (mut s1, mut s2) = (0.0, 0.0);
        for &v in &windowed {
            let s = v + coeff * s1 - s2;
            s2 = s1;
            s1 = s;
        }
        s1 * s1 + s2 * s2 - coeff * s1 * s2
    };
    let lo = estimate * 0.9;
    let steps = 200;
    let step = estimate * 0.2 / f64::from(steps);
    let (mut best_f, mut best_p) = (estimate, f64::MIN);
    for i in 0..=steps {
        let f = lo + step * f64::from(i);
        let p = power(f);
        if p > best_p {
            best_p = p;
            best_f = f;
        }
    }
    // Parabolic refinement between the neighbours of the best step.
    let (pl, pr) = (power(best_f - step), power(best_f + step));
    let denom = pl - 2.0 * best_p + pr;
    if denom < 0.0 {
        best_f += step * 0.5 * (pl - pr) / denom;
    }
    best_f as f32
}

/// The amplitude of the `hz` component of `samples`, as a fraction of full scale (a sine
/// of peak 0.5 gives about 0.5; 0.0 for too little input).
///
/// One Hann-windowed Goertzel term, so two tones a few tens of hertz apart are measured
/// apart: what checks a mix of test tones (each tone's level, no clipping).
pub fn tone_level(samples: &[i16], sample_rate: u32, hz: f32) -> f32 {
    let n = samples.len();
    if n < 8 || sample_rate == 0 {
        return 0.0;
    }
    let (mut re, mut im, mut window_sum) = (0.0f64, 0.0f64, 0.0f64);
    let step = TAU * f64::from(hz) / f64::from(sample_rate);
    for (i, &s) in samples.iter().enumerate() {
        let w = 0.5 - 0.5 * (TAU * i as f64 / (n - 1) as f64).cos();
        let v = f64::from(s) / 32768.0 * w;
        let phase = step * i as f64;
        re += v * phase.cos();
        im += v * phase.sin();
        window_sum += w;
    }
    (2.0 * (re * re + im * im).sqrt() / window_sum) as f32
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The pattern's luma as first written, pixel by pixel: what the table-driven
    /// [`SyntheticVideo::render`] must keep drawing.
    fn reference_luma(width: usize, height: usize, k: usize) -> Vec<u8> {
        let luma: Vec<u8> = (0..512)
            .map(|t| {
                let tri = if t < 256 { t } else { 511 - t };
                (16 + tri * 200 / 255) as u8
            })
            .collect();
        let bar_w = (width / 16).max(2);
        let bar_x = (k * 8) % width;
        let mut y = vec![0u8; width * height];
        for row in 0..height {
            for col in 0..width {
                let in_bar = (col + width - bar_x) % width < bar_w;
                y[row * width + col] = if in_bar {
                    210
                } else {
                    luma[(col * 2 + row + k * 6) % 512]
                };
            }
        }
        y
    }

    #[test]
    fn the_pattern_is_the_one_first_drawn() {
        for (w, h) in [(1280, 720), (640, 480), (322, 182), (2, 2)] {
            let source = SyntheticVideo::unpaced(w, h, 30);
            for k in [0, 1, 7, 43, 1000] {
                let frame = source.render(k, 0);
                let expected = reference_luma(w as usize, h as usize, k as usize);
                // The stamp is painted over the top rows: compare below it.
                let stamp_rows = stamp_layout(w, h)
                    .map_or(0, |per_row| STAMP_BITS.div_ceil(per_row) * STAMP_BLOCK);
                let from = (stamp_rows * w) as usize;
                assert_eq!(frame.y[from..], expected[from..], "{w}x{h} frame {k}");
            }
        }
    }

    #[test]
    fn stamp_round_trips_in_a_clean_picture() {
        let mut src = SyntheticVideo::unpaced(640, 480, 30);
        for k in 0..5u32 {
            let frame = src.next_frame().expect("synthetic never fails");
            assert!(frame.validate().is_ok());
            let stamp = read_stamp(&frame).expect("stamp reads back");
            assert_eq!(stamp.frame_number, k);
            assert_eq!(stamp.capture_time_ms, frame.timestamp_us / 1000);
        }
    }

    #[test]
    fn stamp_survives_extremes() {
        let src = SyntheticVideo::unpaced(320, 240, 30);
        for (n, t) in [(0, 0), (u32::MAX, TIME_MASK), (0x8000_0001, 1 << 47)] {
            let frame = src.render(n, t * 1000);
            assert_eq!(
                read_stamp(&frame),
                Some(Stamp {
                    frame_number: n,
                    capture_time_ms: t
                })
            );
        }
    }

    #[test]
    fn corrupted_or_foreign_pictures_do_not_check_out() {
        let src = SyntheticVideo::unpaced(640, 480, 30);
        let frame = src.render(1234, 1_700_000_000_000_000);
        assert!(read_stamp(&frame).is_some());

        // Flip one payload block: CRC catches it.
        let mut flipped = frame.clone();
        let per_row = 640 / 16;
        let i = 20usize;
        let (bx, by) = (i % per_row, i / per_row);
        for row in by * 16..by * 16 + 16 {
            for col in bx * 16..bx * 16 + 16 {
                let p = &mut flipped.y[row * 640 + col];
                *p = if *p > 128 { BLACK } else { WHITE };
            }
        }
        assert_eq!(read_stamp(&flipped), None);

        // A grey block is neither 0 nor 1.
        let mut grey = frame.clone();
        for row in 0..16 {
            grey.y[row * 640 + 16 * 5..row * 640 + 16 * 6].fill(128);
        }
        assert_eq!(read_stamp(&grey), None);

        assert_eq!(read_stamp(&VideoFrame::black(640, 480, 0)), None);
        // Too small for a stamp: nothing written, nothing read.
        let tiny = SyntheticVideo::unpaced(32, 32, 30).render(1, 0);
        assert_eq!(read_stamp(&tiny), None);
    }

    #[test]
    fn unpaced_video_timestamps_follow_fps_and_picture_moves() {
        let mut src = SyntheticVideo::unpaced(160, 120, 25);
        let a = src.next_frame().expect("frame");
        let b = src.next_frame().expect("frame");
        assert_eq!(b.timestamp_us - a.timestamp_us, 40_000);
        assert_ne!(a.y[160 * 100..], b.y[160 * 100..], "the pattern moves");
        assert_eq!(
            src.format(),
            VideoFormat {
                width: 160,
                height: 120,
                fps: 25
            }
        );
    }

    #[test]
    fn tone_is_phase_continuous_and_at_the_right_level() {
        let mut tone = SyntheticAudio::unpaced(440.0);
        let a = tone.next_frame().expect("frame");
        let b = tone.next_frame().expect("frame");
        assert_eq!(a.samples.len(), AUDIO_FRAME_SAMPLES);
        assert_eq!(b.timestamp_us - a.timestamp_us, 20_000);
        let peak = a
            .samples
            .iter()
            .map(|s| s.unsigned_abs())
            .max()
            .unwrap_or(0);
        assert!((9500..=9900).contains(&peak), "peak {peak}");
        // No jump at the frame boundary bigger than one sample step allows.
        let max_step = (TONE_AMPLITUDE * TAU * 440.0 / 48_000.0) as i32 + 2;
        let jump = (i32::from(b.samples[0]) - i32::from(a.samples[959])).abs();
        assert!(jump <= max_step, "jump {jump} > {max_step}");
    }

    #[test]
    fn dominant_frequency_finds_tones() {
        for f in [100.0f32, 440.0, 1000.0, 3150.5] {
            let mut tone = SyntheticAudio::unpaced(f);
            let mut samples = Vec::new();
            for _ in 0..25 {
                samples.extend(tone.next_frame().expect("frame").samples);
            }
            let got = dominant_frequency(&samples, AUDIO_SAMPLE_RATE);
            assert!((got - f).abs() < 1.0, "wanted {f}, got {got}");
        }
        assert_eq!(dominant_frequency(&[0; 960], AUDIO_SAMPLE_RATE), 0.0);
        assert_eq!(dominant_frequency(&[], AUDIO_SAMPLE_RATE), 0.0);
    }

    #[test]
    fn tone_level_measures_each_tone_of_a_mix() {
        let rate = AUDIO_SAMPLE_RATE as f32;
        let mix: Vec<i16> = (0..48_000)
            .map(|i| {
                let t = i as f32 / rate;
                let v = 0.3 * (TAU as f32 * 440.0 * t).sin() + 0.1 * (TAU as f32 * 660.0 * t).sin();
                (v * 32767.0) as i16
            })
            .collect();
        let level = |hz| tone_level(&mix, AUDIO_SAMPLE_RATE, hz);
        assert!((level(440.0) - 0.3).abs() < 0.01, "{}", level(440.0));
        assert!((level(660.0) - 0.1).abs() < 0.01, "{}", level(660.0));
        assert!(level(1000.0) < 0.005, "{}", level(1000.0));
        assert_eq!(tone_level(&[], AUDIO_SAMPLE_RATE, 440.0), 0.0);
    }

    #[test]
    fn pacer_does_not_burst_after_a_stall() {
        let mut p = Pacer::new(50);
        p.start = Instant::now().checked_sub(Duration::from_secs(1));
        // 50 frames overdue: the first wait rebases instead of leaving 50 frames due.
        p.wait();
        let start = p.start.expect("started");
        let due_next = start + p.offset(p.next);
        assert!(due_next > Instant::now(), "next frame is in the future");
    }
}
