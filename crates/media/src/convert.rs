//! RGB(A) <-> I420 conversions (BT.601, limited range).
//!
//! BT.601 limited range is what an H.264 stream without colour information is assumed to
//! carry, so pictures converted here look the same in the app and in a browser. Integer
//! fixed-point math (8-bit coefficients) keeps it fast enough for 720p30 on one core
//! without SIMD.

use crate::{MediaError, VideoFrame};

/// Converts packed RGB (3 bytes per pixel, rows of `width * 3`) to I420.
///
/// Odd sizes are cropped to even (the last column/row is dropped) because 4:2:0 needs
/// pairs. Chroma is the average of each 2x2 block.
///
/// # Errors
/// `unsupported_format` if the buffer is shorter than `width * height * 3` or the cropped
/// size is zero.
pub fn rgb_to_i420(
    rgb: &[u8],
    width: u32,
    height: u32,
    timestamp_us: u64,
) -> Result<VideoFrame, MediaError> {
    packed_to_i420(rgb, 3, width, height, timestamp_us)
}

/// Converts packed RGBA (4 bytes per pixel; alpha ignored) to I420. See [`rgb_to_i420`].
///
/// # Errors
/// As [`rgb_to_i420`].
pub fn rgba_to_i420(
    rgba: &[u8],
    width: u32,
    height: u32,
    timestamp_us: u64,
) -> Result<VideoFrame, MediaError> {
    packed_to_i420(rgba, 4, width, height, timestamp_us)
}

fn packed_to_i420(
    src: &[u8],
    bpp: usize,
    width: u32,
    height: u32,
    timestamp_us: u64,
) -> Result<VideoFrame, MediaError> {
    let (w, h) = (width as usize, height as usize);
    let needed = w
        .checked_mul(h)
        .and_then(|n| n.checked_mul(bpp))
        .ok_or_else(|| MediaError::UnsupportedFormat(format!("{width}x{height} is too large")))?;
    if src.len() < needed {
        return Err(MediaError::UnsupportedFormat(format!(
            "{} bytes is too short for {width}x{height} with {bpp} bytes per pixel",
            src.len()
        )));
    }
    let (ew, eh) = (w & !1, h & !1);
    if ew == 0 || eh == 0 {
        return Err(MediaError::UnsupportedFormat(format!(
            "{width}x{height} is too small for I420"
        )));
    }
    let stride = w * bpp;
    let mut y = vec![0u8; ew * eh];
    let mut u = vec![0u8; ew * eh / 4];
    let mut v = vec![0u8; ew * eh / 4];

    for row in 0..eh {
        let line = &src[row * stride..row * stride + ew * bpp];
        let out = &mut y[row * ew..(row + 1) * ew];
        for (o, px) in out.iter_mut().zip(line.chunks_exact(bpp)) {
            *o = rgb_to_y(px[0], px[1], px[2]);
        }
    }
    let cw = ew / 2;
    for crow in 0..eh / 2 {
        let top = &src[2 * crow * stride..];
        let bottom = &src[(2 * crow + 1) * stride..];
        for cx in 0..cw {
            let (mut r, mut g, mut b) = (0i32, 0i32, 0i32);
            for line in [top, bottom] {
                for dx in 0..2 {
                    let p = &line[(2 * cx + dx) * bpp..];
                    r += i32::from(p[0]);
                    g += i32::from(p[1]);
                    b += i32::from(p[2]);
                }
            }
            let (r, g, b) = ((r + 2) >> 2, (g + 2) >> 2, (b + 2) >> 2);
            u[crow * cw + cx] = clamp_u8(((-38 * r - 74 * g + 112 * b + 128) >> 8) + 128);
            v[crow * cw + cx] = clamp_u8(((112 * r - 94 * g - 18 * b + 128) >> 8) + 128);
        }
    }
    Ok(VideoFrame {
        width: ew as u32,
        height: eh as u32,
        y,
        u,
        v,
        timestamp_us,
    })
}

#[inline]
fn rgb_to_y(r: u8, g: u8, b: u8) -> u8 {
    let (r, g, b) = (i32::from(r), i32::from(g), i32::from(b));
    clamp_u8(((66 * r + 129 * g + 25 * b + 128) >> 8) + 16)
}

#[inline]
fn clamp_u8(x: i32) -> u8 {
    x.clamp(0, 255) as u8
}

/// Halves a picture in each direction (a 2x2 box filter on every plane), e.g. 640x480 to
/// 320x240: a quarter of the pixels to convert and to move for a small tile. Sizes are
/// rounded down to even; a picture smaller than 4x4, or a malformed one, comes back as is.
pub fn half_size(frame: &VideoFrame) -> VideoFrame {
    let (w, h) = (frame.width as usize, frame.height as usize);
    let (nw, nh) = ((w / 2) & !1, (h / 2) & !1);
    if frame.validate().is_err() || nw < 2 || nh < 2 {
        return frame.clone();
    }
    box_filter(frame, nw, nh, 2)
}

/// Scales a picture down to `width` x `height`, e.g. a 1280x720 capture to the 640x360 and
/// 320x180 layers of a simulcast publication. The size is rounded down to even and kept
/// within the picture's own (nothing is scaled up); the capture time is kept.
///
/// A size that divides the picture's exactly (1280x720 by 2 or 4) is a box filter: every
/// output pixel the mean of its k x k block, integer math, each input byte read once. Any
/// other ratio (1366x768 to 682x384) is bilinear, sampled at pixel centres, which for
/// ratios up to 2 reads every input pixel too. A malformed picture, or a size below 2x2,
/// comes back as is.
pub fn downscale(frame: &VideoFrame, width: u32, height: u32) -> VideoFrame {
    let (w, h) = (frame.width as usize, frame.height as usize);
    let dw = (width as usize).min(w) & !1;
    let dh = (height as usize).min(h) & !1;
    if frame.validate().is_err() || dw < 2 || dh < 2 || (dw, dh) == (w, h) {
        return frame.clone();
    }
    let k = w / dw;
    if w == dw * k && h == dh * k {
        return box_filter(frame, dw, dh, k);
    }
    let cw = w / 2;
    let (dcw, dch) = (dw / 2, dh / 2);
    VideoFrame {
        width: dw as u32,
        height: dh as u32,
        y: bilinear_plane(&frame.y, w, h, dw, dh),
        u: bilinear_plane(&frame.u, cw, h / 2, dcw, dch),
        v: bilinear_plane(&frame.v, cw, h / 2, dcw, dch),
        timestamp_us: frame.timestamp_us,
    }
}

/// Every plane of `frame` reduced by `k` in each direction to a `dw` x `dh` picture (its
/// chroma `dw/2` x `dh/2`); reads the top-left `dw*k` x `dh*k` of the picture.
fn box_filter(frame: &VideoFrame, dw: usize, dh: usize, k: usize) -> VideoFrame {
    let w = frame.width as usize;
    VideoFrame {
        width: dw as u32,
        height: dh as u32,
        y: box_plane(&frame.y, w, dw, dh, k),
        u: box_plane(&frame.u, w / 2, dw / 2, dh / 2, k),
        v: box_plane(&frame.v, w / 2, dw / 2, dh / 2, k),
        timestamp_us: frame.timestamp_us,
    }
}

/// One plane of stride `sw` reduced by `k`: each output byte the rounded mean of a k x k
/// block. Rows are summed first (one pass over each input row, in order), then the
/// column sums are folded k at a time; by 2, each output byte straight from its four.
fn box_plane(src: &[u8], sw: usize, dw: usize, dh: usize, k: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(dw * dh);
    if k == 2 {
        // The common case (each simulcast layer is half the next): the two rows summed
        // into 16 bits, then each pair of columns (two plain loops the compiler vectorizes).
        let mut pairs = vec![0u16; 2 * dw];
        for y in 0..dh {
            let r0 = &src[2 * y * sw..][..2 * dw];
            let r1 = &src[(2 * y + 1) * sw..][..2 * dw];
            for ((sum, &a), &b) in pairs.iter_mut().zip(r0).zip(r1) {
                *sum = u16::from(a) + u16::from(b);
            }
            out.extend(
                pairs
                    .chunks_exact(2)
                    .map(|p| ((p[0] + p[1] + 2) >> 2) as u8),
            );
        }
        return out;
    }
    let mut sums = vec![0u32; dw * k];
    let area = (k * k) as u32;
    for y in 0..dh {
        sums.fill(0);
        for row in src[y * k * sw..].chunks(sw).take(k) {
            for (s, &p) in sums.iter_mut().zip(&row[..dw * k]) {
                *s += u32::from(p);
            }
        }
        out.extend(
            sums.chunks_exact(k)
                .map(|block| ((block.iter().sum::<u32>() + area / 2) / area) as u8),
        );
    }
    out
}

/// One plane of `sw` x `sh` resampled to `dw` x `dh`, bilinear, in 8-bit fixed point.
fn bilinear_plane(src: &[u8], sw: usize, sh: usize, dw: usize, dh: usize) -> Vec<u8> {
    // Source position of output pixel i's centre, in 1/256 pixels: (i + 0.5) * s / d - 0.5,
    // clamped to the picture; its integer part and the weight of the next pixel.
    let taps = |s: usize, d: usize| -> Vec<(usize, u32)> {
        (0..d)
            .map(|i| {
                let pos = ((2 * i + 1) * s * 256 / (2 * d)).saturating_sub(128);
                let pos = pos.min((s - 1) * 256);
                (pos / 256, (pos % 256) as u32)
            })
            .collect()
    };
    let (xs, ys) = (taps(sw, dw), taps(sh, dh));
    let mut out = Vec::with_capacity(dw * dh);
    for &(y0, fy) in &ys {
        let y1 = (y0 + 1).min(sh - 1);
        let (r0, r1) = (&src[y0 * sw..(y0 + 1) * sw], &src[y1 * sw..(y1 + 1) * sw]);
        for &(x0, fx) in &xs {
            let x1 = (x0 + 1).min(sw - 1);
            let top = u32::from(r0[x0]) * (256 - fx) + u32::from(r0[x1]) * fx;
            let bottom = u32::from(r1[x0]) * (256 - fx) + u32::from(r1[x1]) * fx;
            out.push(((top * (256 - fy) + bottom * fy + (1 << 15)) >> 16) as u8);
        }
    }
    out
}

/// Converts I420 to packed RGBA (alpha 255), `width * height * 4` bytes.
///
/// Never panics: pixels whose plane bytes are missing (a frame that fails
/// [`VideoFrame::validate`]) come out black.
pub fn i420_to_rgba(frame: &VideoFrame) -> Vec<u8> {
    i420_to_packed(frame, 4)
}

/// Converts I420 to packed RGB, `width * height * 3` bytes. See [`i420_to_rgba`].
pub fn i420_to_rgb(frame: &VideoFrame) -> Vec<u8> {
    i420_to_packed(frame, 3)
}

fn i420_to_packed(frame: &VideoFrame, bpp: usize) -> Vec<u8> {
    let (w, h) = (frame.width as usize, frame.height as usize);
    let mut out = vec![0u8; w * h * bpp];
    if bpp == 4 {
        for px in out.chunks_exact_mut(4) {
            px[3] = 255;
        }
    }
    if w == 0 || h == 0 {
        return out;
    }
    if frame.validate().is_ok() {
        // Fast path: whole rows as slices, so the inner loop has no bounds surprises.
        let cw = w / 2;
        for (row, line) in out.chunks_exact_mut(w * bpp).enumerate() {
            let ys = &frame.y[row * w..(row + 1) * w];
            let us = &frame.u[(row / 2) * cw..(row / 2 + 1) * cw];
            let vs = &frame.v[(row / 2) * cw..(row / 2 + 1) * cw];
            for (col, px) in line.chunks_exact_mut(bpp).enumerate() {
                write_pixel(px, ys[col], us[col / 2], vs[col / 2]);
            }
        }
        return out;
    }
    // Broken frame: convert what exists, leave the rest black.
    let cw = w.div_ceil(2);
    for row in 0..h {
        for col in 0..w {
            let (Some(&yy), Some(&uu), Some(&vv)) = (
                frame.y.get(row * w + col),
                frame.u.get((row / 2) * cw + col / 2),
                frame.v.get((row / 2) * cw + col / 2),
            ) else {
                continue;
            };
            let o = (row * w + col) * bpp;
            write_pixel(&mut out[o..o + bpp], yy, uu, vv);
        }
    }
    out
}

#[inline]
fn write_pixel(px: &mut [u8], y: u8, u: u8, v: u8) {
    let c = 298 * (i32::from(y) - 16);
    let d = i32::from(u) - 128;
    let e = i32::from(v) - 128;
    px[0] = clamp_u8((c + 409 * e + 128) >> 8);
    px[1] = clamp_u8((c - 100 * d - 208 * e + 128) >> 8);
    px[2] = clamp_u8((c + 516 * d + 128) >> 8);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: u8, b: u8, tol: u8) -> bool {
        a.abs_diff(b) <= tol
    }

    #[test]
    fn primary_colours_round_trip() {
        for colour in [
            [0u8, 0, 0],
            [255, 255, 255],
            [255, 0, 0],
            [0, 255, 0],
            [0, 0, 255],
            [128, 64, 200],
        ] {
            let rgb: Vec<u8> = colour.iter().copied().cycle().take(8 * 4 * 3).collect();
            let frame = rgb_to_i420(&rgb, 8, 4, 5).expect("valid input");
            assert!(frame.validate().is_ok());
            assert_eq!(frame.timestamp_us, 5);
            let back = i420_to_rgb(&frame);
            for px in back.chunks(3) {
                for c in 0..3 {
                    assert!(close(px[c], colour[c], 4), "{colour:?} came back as {px:?}");
                }
            }
        }
    }

    #[test]
    fn limited_range_levels() {
        let white = rgb_to_i420(&[255; 2 * 2 * 3], 2, 2, 0).expect("valid");
        assert_eq!(white.y, vec![235; 4]);
        assert_eq!((white.u[0], white.v[0]), (128, 128));
        let black = rgb_to_i420(&[0; 2 * 2 * 3], 2, 2, 0).expect("valid");
        assert_eq!(black.y, vec![16; 4]);
    }

    #[test]
    fn rgba_ignores_alpha_and_odd_sizes_crop() {
        let rgba: Vec<u8> = [10u8, 200, 30, 0].repeat(5 * 3);
        let frame = rgba_to_i420(&rgba, 5, 3, 0).expect("valid");
        assert_eq!((frame.width, frame.height), (4, 2));
        let back = frame.to_rgba();
        assert_eq!(back.len(), 4 * 2 * 4);
        assert!(close(back[0], 10, 4) && close(back[1], 200, 4) && close(back[2], 30, 4));
        assert_eq!(back[3], 255);
    }

    #[test]
    fn short_or_tiny_input_is_an_error() {
        assert_eq!(
            rgb_to_i420(&[0; 10], 4, 4, 0).map_err(|e| e.code().as_str()),
            Err("unsupported_format")
        );
        assert_eq!(
            rgb_to_i420(&[0; 3], 1, 1, 0).map_err(|e| e.code().as_str()),
            Err("unsupported_format")
        );
        assert_eq!(
            rgb_to_i420(&[], u32::MAX, u32::MAX, 0).map_err(|e| e.code().as_str()),
            Err("unsupported_format")
        );
    }

    #[test]
    fn half_size_averages_blocks_and_keeps_even_sizes() {
        let mut f = VideoFrame::black(8, 6, 7);
        for (i, px) in f.y.iter_mut().enumerate() {
            *px = if (i / 8) % 2 == 0 { 100 } else { 200 };
        }
        let h = half_size(&f);
        assert_eq!((h.width, h.height, h.timestamp_us), (4, 2, 7));
        h.validate().expect("a valid I420 picture");
        assert!(
            h.y.iter().all(|&p| p == 150),
            "rows 100 and 200 average to 150"
        );
        let tiny = VideoFrame::black(2, 2, 0);
        assert_eq!(half_size(&tiny).width, 2, "too small to halve");
    }

    /// A picture whose luma is a horizontal ramp and whose chroma are constants.
    fn ramp(width: u32, height: u32) -> VideoFrame {
        let mut f = VideoFrame::black(width, height, 42);
        for (i, px) in f.y.iter_mut().enumerate() {
            *px = (i % width as usize * 255 / (width as usize - 1)) as u8;
        }
        f.u.fill(90);
        f.v.fill(200);
        f
    }

    #[test]
    fn downscale_by_whole_factors_is_a_box_filter() {
        // Blocks of four distinct values average exactly.
        let mut f = VideoFrame::black(8, 8, 7);
        for (i, px) in f.y.iter_mut().enumerate() {
            let (x, y) = (i % 8, i / 8);
            *px = [10, 20, 30, 40][(x % 2) + 2 * (y % 2)];
        }
        let half = downscale(&f, 4, 4);
        assert_eq!((half.width, half.height, half.timestamp_us), (4, 4, 7));
        assert!(half.y.iter().all(|&p| p == 25), "{:?}", half.y);
        assert_eq!(half, half_size(&f), "the same filter as half_size");
        let quarter = downscale(&f, 2, 2);
        quarter.validate().expect("valid I420");
        assert!(quarter.y.iter().all(|&p| p == 25));
        assert_eq!((quarter.u[0], quarter.v[0]), (128, 128));

        // 1280x720 to the simulcast sizes: the ramp stays a ramp, the chroma stays.
        let capture = ramp(1280, 720);
        for (w, h) in [(640, 360), (320, 180)] {
            let layer = downscale(&capture, w, h);
            layer.validate().expect("valid I420");
            assert_eq!((layer.width, layer.height), (w, h));
            let row = &layer.y[..w as usize];
            assert!(row.windows(2).all(|p| p[0] <= p[1]), "monotonic");
            assert!(row[0] < 4 && row[w as usize - 1] > 251, "{row:?}");
            assert!(layer.y.chunks(w as usize).all(|r| r == row), "rows equal");
            assert!(layer.u.iter().all(|&p| p == 90) && layer.v.iter().all(|&p| p == 200));
        }
    }

    #[test]
    fn downscale_to_other_ratios_is_bilinear() {
        let capture = ramp(1366, 768);
        let layer = downscale(&capture, 683, 384);
        layer.validate().expect("valid I420");
        assert_eq!(
            (layer.width, layer.height),
            (682, 384),
            "rounded down to even"
        );
        let row = &layer.y[..682];
        assert!(row.windows(2).all(|p| p[0] <= p[1]), "monotonic");
        assert!(row[0] < 4 && row[681] > 251, "{} .. {}", row[0], row[681]);
        // The middle of the picture is the middle of the ramp.
        assert!(row[341].abs_diff(128) <= 2, "{}", row[341]);
        assert!(layer.u.iter().all(|&p| p == 90) && layer.v.iter().all(|&p| p == 200));
        // A flat picture stays flat, whatever the ratio.
        let grey = downscale(&VideoFrame::black(1000, 600, 0), 358, 202);
        assert_eq!((grey.width, grey.height), (358, 202));
        assert!(grey.y.iter().all(|&p| p == 16) && grey.u.iter().all(|&p| p == 128));
    }

    #[test]
    fn downscale_never_scales_up_and_leaves_bad_input_alone() {
        let f = ramp(64, 48);
        assert_eq!(downscale(&f, 64, 48), f);
        assert_eq!(downscale(&f, 1280, 720), f, "not scaled up");
        let narrow = downscale(&f, 32, 720);
        assert_eq!(
            (narrow.width, narrow.height),
            (32, 48),
            "each side within the picture"
        );
        assert_eq!(downscale(&f, 1, 1), f, "below 2x2");
        let mut broken = f.clone();
        broken.y.pop();
        assert_eq!(downscale(&broken, 32, 24), broken);
    }
}
