//! The orchestration: reads the stage and the switches, asks [`super::plan::stage`] what
//! should run and applies the answer. It holds the jobs (publisher, preview, one
//! subscription per participant on stage) and nothing else decides when they start or end.

use std::collections::BTreeMap;
use std::sync::Arc;

use tokio::sync::watch;

use crate::{ConnectionState, EventStream, Meeting, MeetingEvent, StageStatus, UserId};

use super::capture::run_preview;
use super::plan::{self, JobState, StageAction, StageInputs, StageJobs};
use super::publish::run_publisher;
use super::receive::run_subscription;
use super::speaker::start_speaker;
use super::{MediaConfig, Shared, Sources};

/// A running piece of media work that can be told to stop.
pub(super) struct Job {
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl Job {
    fn spawn<F>(f: impl FnOnce(watch::Receiver<bool>) -> F) -> Job
    where
        F: std::future::Future<Output = ()> + Send + 'static,
    {
        let (stop, rx) = watch::channel(false);
        Job {
            stop,
            task: tokio::spawn(f(rx)),
        }
    }

    /// Tells the job to stop and waits until it has (its devices are closed).
    async fn end(self) {
        self.stop.send_replace(true);
        let _ = self.task.await;
    }

    fn state(&self) -> JobState {
        if self.task.is_finished() {
            JobState::Finished
        } else {
            JobState::Running
        }
    }
}

/// The jobs of one [`super::StageMedia`].
#[derive(Default)]
struct Jobs {
    publisher: Option<Job>,
    preview: Option<Job>,
    subscriptions: BTreeMap<UserId, Job>,
}

impl Jobs {
    /// What [`plan::stage`] needs to know about them.
    fn states(&self) -> StageJobs {
        StageJobs {
            publisher: self.publisher.as_ref().map(Job::state),
            preview: self.preview.as_ref().map(Job::state),
            subscriptions: self
                .subscriptions
                .iter()
                .map(|(u, j)| (u.clone(), j.state()))
                .collect(),
        }
    }

    /// Carries out one action; the stops wait until the job has ended.
    async fn apply(&mut self, action: StageAction, ctx: &Context) {
        match action {
            StageAction::StopPreview => end(self.preview.take()).await,
            StageAction::StopPublisher => end(self.publisher.take()).await,
            StageAction::Unsubscribe(user) => {
                end(self.subscriptions.remove(&user)).await;
                if let Ok(mut mixer) = ctx.shared.mixer.lock() {
                    mixer.remove(user.as_str());
                }
            }
            StageAction::StartPreview => {
                let (c, s) = (ctx.config.clone(), ctx.shared.clone());
                self.preview = Some(Job::spawn(move |stop| run_preview(c, s, stop)));
            }
            StageAction::StartPublisher => {
                let Some(meeting) = ctx.meeting.clone() else {
                    return;
                };
                let (c, s) = (ctx.config.clone(), ctx.shared.clone());
                self.publisher = Some(Job::spawn(move |stop| run_publisher(meeting, c, s, stop)));
            }
            StageAction::Subscribe(user) => {
                let Some(meeting) = ctx.meeting.clone() else {
                    return;
                };
                let (c, s, u) = (ctx.config.clone(), ctx.shared.clone(), user.clone());
                let job = Job::spawn(move |stop| run_subscription(meeting, c, s, u, stop));
                self.subscriptions.insert(user, job);
            }
        }
    }

    /// Asks the plan what should run now and makes it so.
    async fn follow(&mut self, ctx: &Context) {
        for action in plan::stage(&read_inputs(ctx), &self.states()) {
            self.apply(action, ctx).await;
        }
    }

    /// After a reconnect the server has ended this client's peer connections: the jobs
    /// that use them stop, and the next plan starts them again. The preview keeps its
    /// devices.
    async fn end_peers(&mut self) {
        end(self.publisher.take()).await;
        for (_, job) in std::mem::take(&mut self.subscriptions) {
            job.end().await;
        }
    }

    /// Everything stops: the end of the media.
    async fn end_all(&mut self) {
        self.end_peers().await;
        end(self.preview.take()).await;
    }
}

async fn end(job: Option<Job>) {
    if let Some(job) = job {
        job.end().await;
    }
}

/// What every job is started with.
struct Context {
    /// `None` for the device check: only the preview runs.
    meeting: Option<Meeting>,
    config: MediaConfig,
    shared: Arc<Shared>,
}

/// What the plan reads: the meeting's mirror and the switches.
fn read_inputs(ctx: &Context) -> StageInputs {
    let controls = ctx.shared.controls();
    let has_sources = ctx.config.sources != Sources::None;
    match &ctx.meeting {
        Some(meeting) => StageInputs {
            connected: meeting.connection_state() == ConnectionState::Connected,
            me: Some(meeting.user_id()),
            participants: meeting
                .participants()
                .into_iter()
                .map(|p| (p.user_id, p.stage_status))
                .collect(),
            own_status: meeting.stage().status(),
            controls,
            has_sources,
        },
        // The device check before joining: never on stage, so only the preview runs.
        None => StageInputs {
            connected: false,
            me: None,
            participants: Vec::new(),
            own_status: StageStatus::OffStage,
            controls,
            has_sources,
        },
    }
}

/// [`super::StageMedia::start`] (with a meeting: follows its stage) and
/// [`super::StageMedia::device_check`] (without one: only the preview follows its switch),
/// until stopped.
pub(super) async fn run(
    meeting: Option<Meeting>,
    config: MediaConfig,
    shared: Arc<Shared>,
    mut stop: watch::Receiver<bool>,
) {
    let mut events = meeting.as_ref().map(Meeting::events);
    let mut controls = shared.controls.subscribe();
    // The device check before joining plays nothing: there is no one to hear.
    let speaker = (config.play_audio && meeting.is_some())
        .then(|| start_speaker(shared.clone(), config.speaker.clone()));
    let me = meeting.as_ref().map(Meeting::user_id);
    let ctx = Context {
        meeting,
        config,
        shared,
    };
    let mut jobs = Jobs::default();
    loop {
        // A job that ended on its own (the server closed it, a device failed) is started
        // again if still wanted; this runs on events only, so a failing device is retried
        // at the pace of the meeting's events.
        jobs.follow(&ctx).await;
        tokio::select! {
            event = next_event(&mut events) => match event {
                None => break,
                // Back after a drop: the server ended this client's peer connections.
                Some(MeetingEvent::ConnectionStateUpdate { state: ConnectionState::Connected, .. }) => {
                    jobs.end_peers().await;
                }
                // Someone left the stage: stop receiving them now, before a quick return
                // to the stage could hide the change from the mirror.
                Some(MeetingEvent::ParticipantStageStatus { user_id, status })
                    if status != StageStatus::OnStage =>
                {
                    let action = if me.as_ref() == Some(&user_id) {
                        StageAction::StopPublisher
                    } else {
                        StageAction::Unsubscribe(user_id)
                    };
                    jobs.apply(action, &ctx).await;
                }
                // A host muted this participant: the microphone goes off here too (the
                // server already holds its audio), and the user may switch it on again.
                Some(MeetingEvent::ParticipantMuted { user_id, .. })
                    if me.as_ref() == Some(&user_id) =>
                {
                    ctx.shared
                        .retell_state
                        .store(true, std::sync::atomic::Ordering::SeqCst);
                    ctx.shared.controls.send_modify(|c| c.mic = false);
                }
                Some(_) => {}
            },
            // The preview switch decides who holds the devices (see the plan).
            Ok(()) = controls.changed() => {}
            _ = stop.changed() => break,
        }
    }
    jobs.end_all().await;
    if let Some(speaker) = speaker {
        speaker.store(true, std::sync::atomic::Ordering::SeqCst);
    }
}

/// The meeting's next event; without a meeting (the device check) there never is one.
async fn next_event(events: &mut Option<EventStream>) -> Option<MeetingEvent> {
    match events {
        Some(events) => events.recv().await,
        None => std::future::pending().await,
    }
}
