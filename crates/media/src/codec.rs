//! H.264 (OpenH264) and Opus (libopus) encoders and decoders.
//!
//! H.264 is constrained baseline (`profile-level-id=42e01f`, what the WebRTC SDP offers):
//! no B-frames, single slice per picture (RTP packetization-mode 1 fragments it), SPS/PPS
//! in front of every IDR so a new viewer can start from any keyframe. Keyframes come on
//! request ([`H264Encoder::request_keyframe`], wired to RTCP PLI by the caller), with a
//! periodic IDR only as a slow safety net.
//!
//! Opus is 48 kHz mono with 20 ms frames, matching [`AudioFrame`].

use openh264::encoder::{
    BitRate, Complexity, Encoder, EncoderConfig as RawEncoderConfig, FrameRate, FrameType,
    IntraFramePeriod, Level, Profile, RateControlMode, SpsPpsStrategy, UsageType,
};
use openh264::formats::{YUVSlices, YUVSource};
use openh264::{OpenH264API, Timestamp};

use crate::{AudioFrame, MediaError, VideoFrame, AUDIO_FRAME_SAMPLES, AUDIO_SAMPLE_RATE};

/// Lowest bitrate [`H264Encoder::set_bitrate`] accepts: below it even 320x240 falls apart.
pub const MIN_BITRATE_BPS: u32 = 100_000;
/// Highest bitrate [`H264Encoder::set_bitrate`] accepts: plenty for 720p30.
pub const MAX_BITRATE_BPS: u32 = 4_000_000;

/// A periodic IDR every this many seconds, in case a keyframe request is lost.
const IDR_SAFETY_NET_SECONDS: u32 = 10;
/// OpenH264's limit (level 5.2).
const MAX_DIMENSION: u32 = 3840;

/// Settings for a new [`H264Encoder`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EncoderConfig {
    /// Picture width in pixels (even).
    pub width: u32,
    /// Picture height in pixels (even).
    pub height: u32,
    /// Frames per second the source delivers (rate control spreads the bitrate over them).
    pub fps: u32,
    /// Target bitrate; clamped to [`MIN_BITRATE_BPS`]..=[`MAX_BITRATE_BPS`].
    pub bitrate_bps: u32,
}

/// How much work the H.264 encoder puts into each picture (OpenH264's complexity mode).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum EncoderComplexity {
    /// About a quarter less CPU than [`EncoderComplexity::Medium`] for a slightly worse
    /// picture at the same bitrate: what a simulcast publisher's three encoders run at.
    Low,
    /// OpenH264's default.
    #[default]
    Medium,
}

/// One encoded picture.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EncodedVideo {
    /// One access unit in Annex-B form (start codes before every NAL unit); a keyframe
    /// starts with SPS and PPS.
    pub data: Vec<u8>,
    /// True for an IDR picture: a decoder can start here.
    pub keyframe: bool,
    /// The source frame's capture time (unix microseconds), passed through.
    pub timestamp_us: u64,
}

/// H.264 constrained-baseline encoder for real-time video.
pub struct H264Encoder {
    config: EncoderConfig,
    complexity: EncoderComplexity,
    inner: Encoder,
    /// Whether `inner` has encoded a frame (OpenH264 initialises on the first frame; live
    /// options only apply after that).
    initialised: bool,
    /// A keyframe was asked for and has not come out yet (a forced IDR can still be
    /// dropped by rate control, so we keep asking until one is produced).
    keyframe_pending: bool,
    /// Measures the real input rate from capture times.
    rate: InputRate,
}

/// Tracks the actual frame rate from capture timestamps.
///
/// OpenH264's rate control budgets `bitrate / fps` bits per frame with the configured
/// fps; a camera that slows to 15 fps in the dark would then get half the bitrate. We
/// measure the real rate and tell the encoder when it is off by more than 20 %.
#[derive(Debug, Clone, Copy)]
struct InputRate {
    last_us: Option<u64>,
    /// Smoothed frame interval in microseconds.
    interval_us: f64,
    /// The rate the encoder currently budgets for.
    applied_fps: f32,
    frames: u32,
}

impl InputRate {
    fn new(fps: u32) -> Self {
        Self {
            last_us: None,
            interval_us: 1e6 / f64::from(fps.max(1)),
            applied_fps: fps as f32,
            frames: 0,
        }
    }

    /// Records a capture time; returns the measured rate if it is more than 20 % away
    /// from the applied one.
    fn observe(&mut self, timestamp_us: u64) -> Option<f32> {
        if timestamp_us == 0 {
            return None;
        }
        let last = self.last_us.replace(timestamp_us);
        let interval = timestamp_us
            .checked_sub(last?)
            .filter(|&d| d > 0 && d < 2_000_000)?;
        self.interval_us = 0.9 * self.interval_us + 0.1 * interval as f64;
        self.frames += 1;
        if self.frames < 10 {
            return None; // not enough history
        }
        let measured = (1e6 / self.interval_us).clamp(1.0, 60.0) as f32;
        let off = (measured - self.applied_fps).abs() / self.applied_fps;
        (off > 0.2).then_some(measured)
    }
}

impl std::fmt::Debug for H264Encoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("H264Encoder")
            .field("config", &self.config)
            .field("complexity", &self.complexity)
            .field("keyframe_pending", &self.keyframe_pending)
            .finish_non_exhaustive()
    }
}

fn codec_err(what: &str, e: impl std::fmt::Display) -> MediaError {
    MediaError::Codec(format!("{what}: {e}"))
}

impl H264Encoder {
    /// Creates an encoder; the first frame it outputs is an IDR.
    ///
    /// # Errors
    /// `unsupported_format` for odd, zero or too large sizes or a zero frame rate;
    /// `codec_error` if OpenH264 refuses.
    pub fn new(config: EncoderConfig) -> Result<Self, MediaError> {
        Self::with_complexity(config, EncoderComplexity::Medium)
    }

    /// [`H264Encoder::new`] at the given complexity (kept across restarts).
    ///
    /// # Errors
    /// As [`H264Encoder::new`].
    pub fn with_complexity(
        config: EncoderConfig,
        complexity: EncoderComplexity,
    ) -> Result<Self, MediaError> {
        check_size(config.width, config.height)?;
        if config.fps == 0 {
            return Err(MediaError::UnsupportedFormat(
                "fps must be at least 1".into(),
            ));
        }
        let config = EncoderConfig {
            bitrate_bps: config.bitrate_bps.clamp(MIN_BITRATE_BPS, MAX_BITRATE_BPS),
            ..config
        };
        Ok(Self {
            config,
            complexity,
            inner: build_encoder(&config, complexity)?,
            initialised: false,
            keyframe_pending: false,
            rate: InputRate::new(config.fps),
        })
    }

    /// The current settings (size follows the frames; bitrate follows
    /// [`set_bitrate`](Self::set_bitrate)).
    pub fn config(&self) -> EncoderConfig {
        self.config
    }

    /// Encodes one frame.
    ///
    /// Returns `Ok(None)` when rate control skips the frame (too many bits spent lately);
    /// the caller just moves on to the next frame. A frame of a different size than the
    /// previous one restarts the encoder at the new size, beginning with an IDR.
    ///
    /// # Errors
    /// `unsupported_format` for a malformed frame, `codec_error` if OpenH264 fails.
    pub fn encode(&mut self, frame: &VideoFrame) -> Result<Option<EncodedVideo>, MediaError> {
        frame.validate()?;
        if (frame.width, frame.height) != (self.config.width, self.config.height) {
            check_size(frame.width, frame.height)?;
            self.config.width = frame.width;
            self.config.height = frame.height;
            self.rebuild()?;
            self.keyframe_pending = false;
        }
        if let Some(fps) = self.rate.observe(frame.timestamp_us) {
            if self.initialised && self.set_frame_rate(fps) {
                self.rate.applied_fps = fps;
            }
        }
        if self.keyframe_pending && self.initialised {
            self.inner.force_intra_frame();
        }
        let (w, h) = (frame.width as usize, frame.height as usize);
        // Lengths were checked by `validate`, so `YUVSlices::new`'s asserts hold.
        let yuv = YUVSlices::new((&frame.y, &frame.u, &frame.v), (w, h), (w, w / 2, w / 2));
        debug_assert_eq!(yuv.dimensions(), (w, h));
        // Real capture times let rate control see the actual frame rate (a camera that
        // drops to 15 fps in the dark still gets the full bitrate); OpenH264 substitutes
        // `last + 1/fps` when they are zero or do not increase.
        let bitstream = self
            .inner
            .encode_at(&yuv, Timestamp::from_millis(frame.timestamp_us / 1000))
            .map_err(|e| codec_err("H.264 encode", e))?;
        self.initialised = true;
        let keyframe = match bitstream.frame_type() {
            FrameType::Skip => return Ok(None),
            FrameType::Invalid => {
                return Err(MediaError::Codec("H.264 encoder produced no frame".into()))
            }
            FrameType::IDR => true,
            FrameType::I | FrameType::P | FrameType::IPMixed => false,
        };
        let data = bitstream.to_vec();
        if data.is_empty() {
            return Ok(None);
        }
        if keyframe {
            self.keyframe_pending = false;
        }
        Ok(Some(EncodedVideo {
            data,
            keyframe,
            timestamp_us: frame.timestamp_us,
        }))
    }

    /// Makes the next encoded frame an IDR (SPS + PPS + IDR slice), e.g. on RTCP PLI
    /// when a viewer joins or lost packets.
    pub fn request_keyframe(&mut self) {
        self.keyframe_pending = true;
    }

    /// Changes the target bitrate, clamped to [`MIN_BITRATE_BPS`]..=[`MAX_BITRATE_BPS`],
    /// on the live encoder (no new keyframe, no restart), for congestion control.
    ///
    /// If OpenH264 refuses the live change, the encoder is recreated at the new rate (the
    /// next frame is then an IDR).
    ///
    /// # Errors
    /// `codec_error` only if even recreating failed; the old encoder then keeps running
    /// at its old rate, so the caller can log it and carry on.
    pub fn set_bitrate(&mut self, bps: u32) -> Result<(), MediaError> {
        let bps = bps.clamp(MIN_BITRATE_BPS, MAX_BITRATE_BPS);
        if bps == self.config.bitrate_bps {
            return Ok(());
        }
        let old = self.config.bitrate_bps;
        self.config.bitrate_bps = bps;
        if !self.initialised {
            // Nothing encoded yet: simply start with the new setting.
            return self
                .rebuild()
                .inspect_err(|_| self.config.bitrate_bps = old);
        }
        // OpenH264 requires max >= target at every step: raise the ceiling first when
        // going up, lower it last when going down.
        let result = if bps > old {
            self.set_rate_option(openh264_sys2::ENCODER_OPTION_MAX_BITRATE, bps)
                .and_then(|()| self.set_rate_option(openh264_sys2::ENCODER_OPTION_BITRATE, bps))
        } else {
            self.set_rate_option(openh264_sys2::ENCODER_OPTION_BITRATE, bps)
                .and_then(|()| self.set_rate_option(openh264_sys2::ENCODER_OPTION_MAX_BITRATE, bps))
        };
        if let Err(e) = result {
            // Fall back to a fresh encoder at the new rate; it starts with an IDR.
            tracing::warn!(error = %e, bps, "live bitrate change failed, restarting the encoder");
            return self
                .rebuild()
                .inspect_err(|_| self.config.bitrate_bps = old);
        }
        Ok(())
    }

    /// The current target bitrate in bits per second.
    pub fn bitrate(&self) -> u32 {
        self.config.bitrate_bps
    }

    /// A fresh OpenH264 encoder with the current config; its first frame is an IDR. On
    /// error the current encoder stays.
    fn rebuild(&mut self) -> Result<(), MediaError> {
        self.inner = build_encoder(&self.config, self.complexity)?;
        self.initialised = false;
        // The new encoder budgets for the configured rate; re-apply the measured one.
        self.rate.applied_fps = self.config.fps as f32;
        Ok(())
    }

    fn set_frame_rate(&mut self, fps: f32) -> bool {
        let mut value = fps;
        // SAFETY: the encoder is initialised; ENCODER_OPTION_FRAME_RATE reads one `float`
        // from the pointer during the call.
        let rc = unsafe {
            self.inner.raw_api().set_option(
                openh264_sys2::ENCODER_OPTION_FRAME_RATE,
                std::ptr::addr_of_mut!(value).cast(),
            )
        };
        if rc == 0 {
            tracing::debug!(fps, "encoder follows the input frame rate");
        } else {
            tracing::warn!(fps, rc, "encoder refused the input frame rate");
        }
        rc == 0
    }

    fn set_rate_option(
        &mut self,
        option: openh264_sys2::ENCODER_OPTION,
        bps: u32,
    ) -> Result<(), MediaError> {
        // The target applies to all layers; the ceiling is per spatial layer (we have one),
        // which is where `EncoderConfig` put it.
        let layer = if option == openh264_sys2::ENCODER_OPTION_BITRATE {
            openh264_sys2::SPATIAL_LAYER_ALL
        } else {
            openh264_sys2::SPATIAL_LAYER_0
        };
        let mut info = openh264_sys2::SBitrateInfo {
            iLayer: layer,
            iBitrate: i32::try_from(bps).unwrap_or(i32::MAX),
        };
        // SAFETY: the encoder is initialised (a frame was encoded), `info` is the struct
        // OpenH264 expects for these two options and outlives the call, which copies it.
        let rc = unsafe {
            self.inner
                .raw_api()
                .set_option(option, std::ptr::addr_of_mut!(info).cast())
        };
        if rc == 0 {
            Ok(())
        } else {
            Err(MediaError::Codec(format!(
                "OpenH264 SetOption({option}) for {bps} bps failed with {rc}"
            )))
        }
    }
}

fn check_size(width: u32, height: u32) -> Result<(), MediaError> {
    if width == 0 || height == 0 || width % 2 != 0 || height % 2 != 0 {
        return Err(MediaError::UnsupportedFormat(format!(
            "H.264 needs an even, non-zero size, got {width}x{height}"
        )));
    }
    if width.max(height) > MAX_DIMENSION || width.min(height) > 2160 {
        return Err(MediaError::UnsupportedFormat(format!(
            "{width}x{height} exceeds OpenH264's 3840x2160"
        )));
    }
    Ok(())
}

fn build_encoder(
    config: &EncoderConfig,
    complexity: EncoderComplexity,
) -> Result<Encoder, MediaError> {
    // Level 3.1 is what 42e01f announces; it covers up to 720p30. Bigger pictures need a
    // higher level, which the SDP would have to announce too.
    let macroblocks = config.width.div_ceil(16) * config.height.div_ceil(16);
    let level = if macroblocks <= 3600 {
        Level::Level_3_1
    } else if macroblocks <= 8192 {
        Level::Level_4_0
    } else {
        Level::Level_5_1
    };
    let raw = RawEncoderConfig::new()
        .profile(Profile::Baseline)
        .level(level)
        .usage_type(UsageType::CameraVideoRealTime)
        .rate_control_mode(RateControlMode::Bitrate)
        .bitrate(BitRate::from_bps(config.bitrate_bps))
        .max_frame_rate(FrameRate::from_hz(config.fps as f32))
        .skip_frames(true)
        // Keyframes come on request; the period is only a safety net.
        .intra_frame_period(IntraFramePeriod::from_num_frames(
            config.fps.saturating_mul(IDR_SAFETY_NET_SECONDS),
        ))
        // SPS/PPS with every IDR, same ids, so any keyframe is a starting point.
        .sps_pps_strategy(SpsPpsStrategy::ConstantId)
        // Scene-change detection inserts IDRs on its own (it fires on big motion and after
        // bitrate drops); in a call every IDR is a bitrate spike for all viewers, and
        // receivers ask for one when they need it.
        .scene_change_detect(false)
        .complexity(match complexity {
            EncoderComplexity::Low => Complexity::Low,
            EncoderComplexity::Medium => Complexity::Medium,
        })
        // One thread: the machine also decodes every other participant, and OpenH264's
        // threads only pay off with several slices.
        .num_threads(1);
    Encoder::with_api_config(OpenH264API::from_source(), raw)
        .map_err(|e| codec_err("H.264 encoder init", e))
}

/// H.264 decoder (anything OpenH264 decodes; in practice our constrained baseline).
pub struct H264Decoder {
    inner: openh264::decoder::Decoder,
}

impl std::fmt::Debug for H264Decoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("H264Decoder").finish_non_exhaustive()
    }
}

impl H264Decoder {
    /// A new decoder; it needs a keyframe (SPS, PPS, IDR) before it shows anything.
    ///
    /// # Errors
    /// `codec_error` if OpenH264 fails to start.
    pub fn new() -> Result<Self, MediaError> {
        openh264::decoder::Decoder::new()
            .map(|inner| Self { inner })
            .map_err(|e| codec_err("H.264 decoder init", e))
    }

    /// Decodes one Annex-B access unit.
    ///
    /// Returns `Ok(None)` when the data produced no picture yet (only parameter sets, or
    /// waiting for a keyframe). The frame's size comes from the stream; its timestamp is 0
    /// (the caller knows it from RTP).
    ///
    /// # Errors
    /// `codec_error` for corrupt data or a picture whose references are missing (packet
    /// loss): the caller should ask the sender for a keyframe.
    pub fn decode(&mut self, annex_b: &[u8]) -> Result<Option<VideoFrame>, MediaError> {
        if annex_b.is_empty() {
            return Ok(None);
        }
        let Some(yuv) = self
            .inner
            .decode(annex_b)
            .map_err(|e| codec_err("H.264 decode", e))?
        else {
            return Ok(None);
        };
        let (w, h) = yuv.dimensions();
        let (sy, su, sv) = yuv.strides();
        let (cw, ch) = (w / 2, h / 2);
        if w == 0 || h == 0 || w % 2 != 0 || h % 2 != 0 {
            return Err(MediaError::UnsupportedFormat(format!(
                "decoded picture {w}x{h} is not an even size"
            )));
        }
        let (ys, us, vs) = (yuv.y(), yuv.u(), yuv.v());
        if sy < w
            || su < cw
            || sv < cw
            || ys.len() < sy * h
            || us.len() < su * ch
            || vs.len() < sv * ch
        {
            return Err(MediaError::Codec(
                "decoder returned planes smaller than the picture".into(),
            ));
        }
        let mut frame = VideoFrame {
            width: w as u32,
            height: h as u32,
            y: Vec::with_capacity(w * h),
            u: Vec::with_capacity(cw * ch),
            v: Vec::with_capacity(cw * ch),
            timestamp_us: 0,
        };
        for row in 0..h {
            frame.y.extend_from_slice(&ys[row * sy..row * sy + w]);
        }
        for row in 0..ch {
            frame.u.extend_from_slice(&us[row * su..row * su + cw]);
            frame.v.extend_from_slice(&vs[row * sv..row * sv + cw]);
        }
        Ok(Some(frame))
    }
}

/// Largest Opus packet we produce: libopus's recommended output buffer.
const MAX_OPUS_PACKET: usize = 4000;

/// Opus encoder: 48 kHz mono, 20 ms frames, VoIP tuning (speech first, with the
/// encoder's own high-pass and speech optimisations).
pub struct OpusEncoder {
    inner: opus::Encoder,
}

impl std::fmt::Debug for OpusEncoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OpusEncoder").finish_non_exhaustive()
    }
}

impl OpusEncoder {
    /// A new encoder at `bitrate_bps` (libopus clamps to its own 6..510 kbps range).
    ///
    /// # Errors
    /// `codec_error` if libopus refuses.
    pub fn new(bitrate_bps: u32) -> Result<Self, MediaError> {
        let mut inner = opus::Encoder::new(
            AUDIO_SAMPLE_RATE,
            opus::Channels::Mono,
            opus::Application::Voip,
        )
        .map_err(|e| codec_err("Opus encoder init", e))?;
        inner
            .set_bitrate(opus::Bitrate::Bits(
                i32::try_from(bitrate_bps).unwrap_or(i32::MAX),
            ))
            .map_err(|e| codec_err("Opus bitrate", e))?;
        Ok(Self { inner })
    }

    /// Encodes one 20 ms frame into one Opus packet.
    ///
    /// # Errors
    /// `unsupported_format` unless the frame has exactly [`AUDIO_FRAME_SAMPLES`] samples;
    /// `codec_error` if libopus fails.
    pub fn encode(&mut self, frame: &AudioFrame) -> Result<Vec<u8>, MediaError> {
        if frame.samples.len() != AUDIO_FRAME_SAMPLES {
            return Err(MediaError::UnsupportedFormat(format!(
                "Opus frames are {AUDIO_FRAME_SAMPLES} samples, got {}",
                frame.samples.len()
            )));
        }
        self.inner
            .encode_vec(&frame.samples, MAX_OPUS_PACKET)
            .map_err(|e| codec_err("Opus encode", e))
    }
}

/// Opus decoder: 48 kHz mono, with packet-loss concealment.
pub struct OpusDecoder {
    inner: opus::Decoder,
}

impl std::fmt::Debug for OpusDecoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OpusDecoder").finish_non_exhaustive()
    }
}

impl OpusDecoder {
    /// A new decoder.
    ///
    /// # Errors
    /// `codec_error` if libopus fails to start.
    pub fn new() -> Result<Self, MediaError> {
        opus::Decoder::new(AUDIO_SAMPLE_RATE, opus::Channels::Mono)
            .map(|inner| Self { inner })
            .map_err(|e| codec_err("Opus decoder init", e))
    }

    /// Decodes one packet into a 20 ms frame (timestamp 0: the caller knows it from RTP).
    ///
    /// # Errors
    /// `unsupported_format` for a valid packet that is not 20 ms long (the mixer works in
    /// 20 ms ticks); `codec_error` for a corrupt packet.
    pub fn decode(&mut self, packet: &[u8]) -> Result<AudioFrame, MediaError> {
        if packet.is_empty() {
            return Err(MediaError::Codec("empty Opus packet".into()));
        }
        let samples = opus::packet::get_nb_samples(packet, AUDIO_SAMPLE_RATE)
            .map_err(|e| codec_err("Opus packet", e))?;
        if samples != AUDIO_FRAME_SAMPLES {
            return Err(MediaError::UnsupportedFormat(format!(
                "Opus packet of {samples} samples, only 20 ms ({AUDIO_FRAME_SAMPLES}) is supported"
            )));
        }
        let mut out = vec![0i16; AUDIO_FRAME_SAMPLES];
        let n = self
            .inner
            .decode(packet, &mut out, false)
            .map_err(|e| codec_err("Opus decode", e))?;
        out.truncate(n);
        out.resize(AUDIO_FRAME_SAMPLES, 0);
        Ok(AudioFrame {
            samples: out,
            timestamp_us: 0,
        })
    }

    /// Makes up 20 ms for a lost packet (Opus packet-loss concealment: the last sound
    /// continues and fades, instead of a click of silence).
    pub fn decode_lost(&mut self) -> AudioFrame {
        let mut out = vec![0i16; AUDIO_FRAME_SAMPLES];
        match self.inner.decode(&[], &mut out, false) {
            Ok(n) => {
                out.truncate(n);
                out.resize(AUDIO_FRAME_SAMPLES, 0);
            }
            Err(e) => {
                tracing::debug!(error = %e, "Opus concealment failed, playing silence");
                out.fill(0);
            }
        }
        AudioFrame {
            samples: out,
            timestamp_us: 0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::InputRate;

    #[test]
    fn input_rate_reports_a_slower_camera_once_it_is_sure() {
        let mut rate = InputRate::new(30);
        let mut reported = None;
        for k in 0..40u64 {
            if let Some(fps) = rate.observe(1_000_000 + k * 66_667) {
                reported.get_or_insert((k, fps));
            }
        }
        let (k, fps) = reported.expect("15 fps is more than 20 % off 30");
        assert!(k >= 10, "needs some history first (reported at frame {k})");
        assert!(fps < 24.0, "reported {fps} fps");

        // On-rate input and missing timestamps report nothing.
        let mut steady = InputRate::new(30);
        assert!((0..100u64).all(|k| steady.observe(1_000_000 + k * 33_333).is_none()));
        assert!((0..100).all(|_| steady.observe(0).is_none()));
    }
}
