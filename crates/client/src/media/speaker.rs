//! The speaker: the mix of everyone on stage, one 20 ms frame at a time as the chosen
//! output device (the default one unless told) takes them.
//!
//! A speaker that is missing or goes away mid-call is reported once (`device_not_found`,
//! `device_lost`), and opened again with a back-off ([`Retry`]) until it works: when
//! it (or another default) returns, the mix plays again. Meanwhile the mix keeps being
//! taken at its pace and dropped, so what plays on return is what is being said then,
//! not a backlog.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use onstage_media::{AudioFrame, AudioSink, SpeakerSink};

use super::backoff::Retry;
use super::{Device, Shared};

/// One mix frame.
const FRAME: Duration = Duration::from_millis(20);
/// What the speaker's queue is kept at (the device holds two 20 ms periods besides): the
/// next frame is mixed when the queue runs below it.
const QUEUE_TARGET: Duration = Duration::from_millis(40);
/// How often the queue is looked at.
const QUEUE_POLL: Duration = Duration::from_millis(5);
/// A device that takes nothing for this long is given a frame anyway: playing is what
/// finds out whether it failed.
const STALLED: Duration = Duration::from_millis(500);

/// Plays the mix on `speaker` (`None`: the default one), paced by 20 ms frames, until the
/// returned flag is set.
pub(super) fn start_speaker(shared: Arc<Shared>, speaker: Option<String>) -> Arc<AtomicBool> {
    let stop = Arc::new(AtomicBool::new(false));
    let flag = stop.clone();
    std::thread::spawn(move || play_mix(&shared, speaker.as_deref(), &flag));
    stop
}

fn play_mix(shared: &Shared, speaker: Option<&str>, stop: &AtomicBool) {
    let mut sink: Option<SpeakerSink> = None;
    let mut retry = Retry::default();
    let mut due = Instant::now();
    let mut played: u64 = 0;
    while !stop.load(Ordering::SeqCst) {
        if sink.is_none() && retry.ready(Instant::now()) {
            match SpeakerSink::open(speaker) {
                Ok(opened) => {
                    tracing::info!(speaker = opened.name(), "speaker playing");
                    retry.opened(Instant::now());
                    sink = Some(opened);
                }
                Err(e) => {
                    let tell = retry.open_failed(Instant::now());
                    report(shared, tell, &e);
                }
            }
            // Opening may take a while: the pace starts again from now, not with a burst.
            due = Instant::now();
        }
        match sink.as_ref() {
            // The device's pace: a frame whenever its queue runs below the target, so the
            // queue neither fills up after a stall (a burst of frames) nor drifts.
            Some(playing) => {
                let waited = Instant::now();
                while playing.queued() >= QUEUE_TARGET
                    && waited.elapsed() < STALLED
                    && !stop.load(Ordering::SeqCst)
                {
                    std::thread::sleep(QUEUE_POLL);
                }
                due = Instant::now();
            }
            // No device: the mix is still taken at its pace (and dropped).
            None => {
                due += FRAME;
                std::thread::sleep(due.saturating_duration_since(Instant::now()));
            }
        }
        let frame: AudioFrame = match shared.mixer.lock() {
            Ok(mut mixer) => mixer.mix_next(),
            Err(_) => break,
        };
        let Some(playing) = sink.as_mut() else {
            continue;
        };
        played += 1;
        if played % 250 == 0 {
            // Every 5 s: where the delay of what plays is held.
            let buffered: Vec<(String, usize)> = match shared.mixer.lock() {
                Ok(mixer) => mixer
                    .source_ids()
                    .filter_map(|id| Some((id.to_owned(), mixer.buffer(id)?.len())))
                    .collect(),
                Err(_) => Vec::new(),
            };
            tracing::debug!(queued = ?playing.queued(), ?buffered, "speaker queue");
        }
        if let Err(e) = playing.play(&frame) {
            // Closed before it is opened again.
            sink = None;
            let tell = retry.failed(Instant::now());
            report(shared, tell, &e);
        }
    }
}

/// Tells the app about the speaker's problem, or only logs it (told already, or a glitch
/// just after opening).
fn report(shared: &Shared, tell: bool, e: &onstage_media::MediaError) {
    if tell {
        shared.device_error(Device::Speaker, e);
    } else {
        tracing::debug!(error = %e, "speaker failed; opening it again");
    }
}
