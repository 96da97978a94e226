//! The speaker: the mix of everyone on stage, one 20 ms frame every 20 ms, on the default
//! output device. A missing speaker is reported, not fatal.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use onstage_media::{AudioFrame, AudioSink, SpeakerSink};

use super::{Device, Shared};

/// Plays the mix on the default speaker, paced by 20 ms frames. Returns the stop flag.
pub(super) fn start_speaker(shared: Arc<Shared>) -> Arc<AtomicBool> {
    let stop = Arc::new(AtomicBool::new(false));
    let flag = stop.clone();
    std::thread::spawn(move || {
        let mut sink = match SpeakerSink::open(None) {
            Ok(s) => s,
            Err(e) => return shared.device_error(Device::Speaker, &e),
        };
        let start = Instant::now();
        let mut n: u32 = 0;
        while !flag.load(Ordering::SeqCst) {
            n = n.wrapping_add(1);
            let due = start + Duration::from_millis(20) * n;
            std::thread::sleep(due.saturating_duration_since(Instant::now()));
            let frame: AudioFrame = match shared.mixer.lock() {
                Ok(mut mixer) => mixer.mix_next(),
                Err(_) => break,
            };
            if let Err(e) = sink.play(&frame) {
                return shared.device_error(Device::Speaker, &e);
            }
        }
    });
    stop
}
