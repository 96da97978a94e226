//! What should run now: pure functions from the stage, the switches and the jobs running
//! now to the actions that make the running jobs match. No I/O, no clock, no tokio: the
//! orchestration ([`super::orchestrate`], [`super::publish`], [`super::capture`]) reads
//! its inputs, asks here and applies the answer, so the rules are tested here.
//!
//! Two levels, because the capture threads live inside the publisher or the preview job:
//! - [`stage`]: the publisher, the preview and one subscription per participant on stage;
//! - [`capture`]: the camera and microphone threads inside whichever job holds the devices.

use std::collections::{BTreeMap, BTreeSet};

use crate::{StageStatus, UserId};

use super::{Controls, DeviceChoice};

/// How a job the orchestration started is doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobState {
    Running,
    /// It ended on its own (the server closed the session, a device failed): it is let go
    /// and, if still wanted, started afresh.
    Finished,
}

/// What the stage looks like from here, read from the meeting's mirror.
#[derive(Debug, Clone, PartialEq)]
pub struct StageInputs {
    /// The meeting's connection is up. While it is down nothing is published or received:
    /// the server ends this client's peer connections when it drops.
    pub connected: bool,
    /// This participant; `None` before joining (the device check).
    pub me: Option<UserId>,
    /// Everyone in the meeting (this participant may be among them) and their stage status.
    pub participants: Vec<(UserId, StageStatus)>,
    /// Own stage status.
    pub own_status: StageStatus,
    pub controls: Controls,
    /// There is something to publish ([`super::Sources::None`] is receive only).
    pub has_sources: bool,
}

/// The jobs running now.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct StageJobs {
    pub publisher: Option<JobState>,
    pub preview: Option<JobState>,
    pub subscriptions: BTreeMap<UserId, JobState>,
}

/// One step that brings [`StageJobs`] closer to what [`StageInputs`] ask for.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum StageAction {
    /// End the preview and wait until its devices are closed.
    StopPreview,
    /// End the publication (and its capture).
    StopPublisher,
    /// End the subscription to this participant and forget their audio.
    Unsubscribe(UserId),
    /// Open the devices for the local preview only (nothing is sent).
    StartPreview,
    /// Publish: open the devices, encode and send.
    StartPublisher,
    Subscribe(UserId),
}

impl StageAction {
    /// Stops before starts: a device the preview holds is closed before the publisher
    /// opens it (a camera opens once).
    fn is_stop(&self) -> bool {
        matches!(
            self,
            StageAction::StopPreview | StageAction::StopPublisher | StageAction::Unsubscribe(_)
        )
    }
}

impl StageInputs {
    /// Publish only while connected, ON_STAGE and with something to publish.
    pub fn wants_publisher(&self) -> bool {
        self.connected && self.own_status == StageStatus::OnStage && self.has_sources
    }

    /// Off stage, the preview has the devices when switched on; on stage, the publisher
    /// (which shows the preview itself).
    pub fn wants_preview(&self) -> bool {
        !self.wants_publisher() && self.controls.preview && self.has_sources
    }

    /// Everyone else on stage, while connected.
    pub fn wanted_subscriptions(&self) -> BTreeSet<UserId> {
        if !self.connected {
            return BTreeSet::new();
        }
        self.participants
            .iter()
            .filter(|(user, status)| {
                *status == StageStatus::OnStage && self.me.as_ref() != Some(user)
            })
            .map(|(user, _)| user.clone())
            .collect()
    }
}

/// The actions that make `running` what `inputs` ask for, stops first. A job that
/// finished on its own is stopped (reaped) and, when still wanted, started again.
///
/// Applying the actions to `running` gives a set for which this returns nothing.
pub fn stage(inputs: &StageInputs, running: &StageJobs) -> Vec<StageAction> {
    let mut actions = Vec::new();
    let mut follow = |now: Option<JobState>, want: bool, stop, start| {
        if now.is_some() && (!want || now == Some(JobState::Finished)) {
            actions.push(stop);
        }
        if want && now != Some(JobState::Running) {
            actions.push(start);
        }
    };
    follow(
        running.preview,
        inputs.wants_preview(),
        StageAction::StopPreview,
        StageAction::StartPreview,
    );
    follow(
        running.publisher,
        inputs.wants_publisher(),
        StageAction::StopPublisher,
        StageAction::StartPublisher,
    );
    let wanted = inputs.wanted_subscriptions();
    for (user, state) in &running.subscriptions {
        if !wanted.contains(user) || *state == JobState::Finished {
            actions.push(StageAction::Unsubscribe(user.clone()));
        }
    }
    for user in wanted {
        if running.subscriptions.get(&user) != Some(&JobState::Running) {
            actions.push(StageAction::Subscribe(user));
        }
    }
    // Stable: the preview before the publisher, subscriptions in user order.
    actions.sort_by_key(|a| !a.is_stop());
    actions
}

/// What a job that holds the devices may capture.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CaptureInputs {
    /// The microphone may be opened (the preview; a publisher whose preset sends audio).
    pub audio: bool,
    /// The camera may be opened (the preview; a publisher whose preset sends video).
    pub video: bool,
    pub controls: Controls,
    /// The camera and microphone chosen now.
    pub devices: DeviceChoice,
}

/// How one capture thread is doing inside its job.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CaptureState {
    /// Never opened, or closed by its switch.
    #[default]
    Stopped,
    Running,
    /// Opening the device failed (the failure was reported).
    Failed,
}

/// One capture thread: how it is doing and which device it opened (or tried to).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Slot {
    pub state: CaptureState,
    /// The device id; `None` is the system default.
    pub device: Option<String>,
}

/// The capture threads of one job.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Captures {
    pub audio: Slot,
    pub video: Slot,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CaptureAction {
    /// Stop the microphone's thread and wait until the device is closed.
    StopAudio,
    /// Stop the camera's thread and wait until the device is closed.
    StopVideo,
    StartAudio,
    StartVideo,
}

/// The capture threads a job should start or stop now, stops first (a device is closed
/// before it is opened again, so reopening it cannot find it busy).
///
/// - The microphone opens once and stays open while the job runs, muted or not: levels
///   keep flowing and unmuting is instant. A microphone that failed (to open, or while
///   capturing) stays `Failed` here until another is chosen; the job's `Devices` make it
///   `Stopped` again when its back-off is over, so it is tried again then, not at every
///   wake-up, and its problem is told once.
/// - The camera follows its switch: off closes it (its light goes off). One that failed to
///   open is tried again at the next wake-up while switched on (it may have been plugged
///   in); the publisher wakes for that every couple of seconds, besides every change of
///   the switches or devices.
/// - Choosing another device restarts that capture only; the publication and the
///   subscriptions stay.
pub fn capture(inputs: &CaptureInputs, running: &Captures) -> Vec<CaptureAction> {
    let mut stops = Vec::new();
    let mut starts = Vec::new();
    let mic = &inputs.devices.microphone;
    let audio = &running.audio;
    if inputs.audio {
        match audio.state {
            CaptureState::Stopped => starts.push(CaptureAction::StartAudio),
            CaptureState::Running if audio.device != *mic => {
                stops.push(CaptureAction::StopAudio);
                starts.push(CaptureAction::StartAudio);
            }
            CaptureState::Failed if audio.device != *mic => starts.push(CaptureAction::StartAudio),
            _ => {}
        }
    }
    let camera = &inputs.devices.camera;
    let video = &running.video;
    let want_video = inputs.video && inputs.controls.camera;
    match video.state {
        CaptureState::Running if !want_video => stops.push(CaptureAction::StopVideo),
        CaptureState::Running if video.device != *camera => {
            stops.push(CaptureAction::StopVideo);
            starts.push(CaptureAction::StartVideo);
        }
        CaptureState::Stopped | CaptureState::Failed if want_video => {
            starts.push(CaptureAction::StartVideo)
        }
        _ => {}
    }
    stops.extend(starts);
    stops
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn user(id: &str) -> UserId {
        UserId::new(id)
    }

    fn inputs(own: StageStatus, others: &[(&str, StageStatus)]) -> StageInputs {
        let mut participants: Vec<(UserId, StageStatus)> =
            others.iter().map(|(u, s)| (user(u), *s)).collect();
        participants.push((user("me"), own));
        StageInputs {
            connected: true,
            me: Some(user("me")),
            participants,
            own_status: own,
            controls: Controls::default(),
            has_sources: true,
        }
    }

    /// What the orchestration does with each action, on the bookkeeping only.
    fn apply(running: &StageJobs, actions: &[StageAction]) -> StageJobs {
        let mut next = running.clone();
        for action in actions {
            match action {
                StageAction::StopPreview => next.preview = None,
                StageAction::StopPublisher => next.publisher = None,
                StageAction::Unsubscribe(u) => {
                    next.subscriptions.remove(u);
                }
                StageAction::StartPreview => next.preview = Some(JobState::Running),
                StageAction::StartPublisher => next.publisher = Some(JobState::Running),
                StageAction::Subscribe(u) => {
                    next.subscriptions.insert(u.clone(), JobState::Running);
                }
            }
        }
        next
    }

    #[test]
    fn on_stage_publishes_and_receives_everyone_else_on_stage() {
        let i = inputs(
            StageStatus::OnStage,
            &[
                ("a", StageStatus::OnStage),
                ("b", StageStatus::RequestedToJoinStage),
                ("c", StageStatus::OnStage),
            ],
        );
        assert_eq!(
            stage(&i, &StageJobs::default()),
            vec![
                StageAction::StartPublisher,
                StageAction::Subscribe(user("a")),
                StageAction::Subscribe(user("c")),
            ]
        );
    }

    #[test]
    fn off_stage_nothing_is_published_and_the_preview_follows_its_switch() {
        let mut i = inputs(
            StageStatus::AcceptedToJoinStage,
            &[("a", StageStatus::OnStage)],
        );
        assert_eq!(
            stage(&i, &StageJobs::default()),
            vec![StageAction::Subscribe(user("a"))]
        );
        i.controls.preview = true;
        assert_eq!(
            stage(&i, &StageJobs::default()),
            vec![StageAction::StartPreview, StageAction::Subscribe(user("a"))]
        );
        // Receive only: nothing to preview either.
        i.has_sources = false;
        assert_eq!(
            stage(&i, &StageJobs::default()),
            vec![StageAction::Subscribe(user("a"))]
        );
    }

    #[test]
    fn going_on_stage_closes_the_preview_before_the_publisher_opens_the_devices() {
        let mut i = inputs(StageStatus::OnStage, &[]);
        i.controls.preview = true;
        let running = StageJobs {
            preview: Some(JobState::Running),
            ..StageJobs::default()
        };
        assert_eq!(
            stage(&i, &running),
            vec![StageAction::StopPreview, StageAction::StartPublisher]
        );
        // And back off stage: the publisher lets go before the preview opens them again.
        let off = inputs(StageStatus::OffStage, &[]);
        let off = StageInputs {
            controls: i.controls,
            ..off
        };
        let running = StageJobs {
            publisher: Some(JobState::Running),
            ..StageJobs::default()
        };
        assert_eq!(
            stage(&off, &running),
            vec![StageAction::StopPublisher, StageAction::StartPreview]
        );
    }

    #[test]
    fn finished_jobs_are_reaped_and_started_again_when_still_wanted() {
        let i = inputs(StageStatus::OnStage, &[("a", StageStatus::OnStage)]);
        let running = StageJobs {
            publisher: Some(JobState::Finished),
            preview: None,
            subscriptions: [
                (user("a"), JobState::Finished),
                (user("gone"), JobState::Finished),
            ]
            .into(),
        };
        assert_eq!(
            stage(&i, &running),
            vec![
                StageAction::StopPublisher,
                StageAction::Unsubscribe(user("a")),
                StageAction::Unsubscribe(user("gone")),
                StageAction::StartPublisher,
                StageAction::Subscribe(user("a")),
            ]
        );
    }

    #[test]
    fn disconnected_everything_stops() {
        let mut i = inputs(StageStatus::OnStage, &[("a", StageStatus::OnStage)]);
        i.connected = false;
        let running = StageJobs {
            publisher: Some(JobState::Running),
            preview: None,
            subscriptions: [(user("a"), JobState::Running)].into(),
        };
        assert_eq!(
            stage(&i, &running),
            vec![
                StageAction::StopPublisher,
                StageAction::Unsubscribe(user("a"))
            ]
        );
    }

    #[test]
    fn a_participant_with_my_id_listed_twice_is_never_subscribed() {
        let mut i = inputs(StageStatus::OnStage, &[]);
        i.participants.push((user("me"), StageStatus::OnStage));
        assert_eq!(
            stage(&i, &StageJobs::default()),
            vec![StageAction::StartPublisher]
        );
    }

    fn slot(state: CaptureState) -> Slot {
        Slot {
            state,
            device: None,
        }
    }

    fn may_capture_both() -> CaptureInputs {
        CaptureInputs {
            audio: true,
            video: true,
            controls: Controls::default(),
            devices: DeviceChoice::default(),
        }
    }

    #[test]
    fn the_microphone_opens_once_and_the_camera_follows_its_switch() {
        let mut i = may_capture_both();
        assert_eq!(
            capture(&i, &Captures::default()),
            vec![CaptureAction::StartAudio, CaptureAction::StartVideo]
        );
        let running = Captures {
            audio: slot(CaptureState::Running),
            video: slot(CaptureState::Running),
        };
        assert_eq!(capture(&i, &running), vec![]);
        // Muted: the microphone keeps capturing (levels).
        i.controls.mic = false;
        assert_eq!(capture(&i, &running), vec![]);
        i.controls.camera = false;
        assert_eq!(capture(&i, &running), vec![CaptureAction::StopVideo]);
        // A preset without video never opens the camera.
        let no_video = CaptureInputs {
            video: false,
            controls: Controls::default(),
            ..i
        };
        assert_eq!(
            capture(&no_video, &Captures::default()),
            vec![CaptureAction::StartAudio]
        );
    }

    #[test]
    fn a_failed_camera_is_retried_a_failed_microphone_is_not() {
        let i = may_capture_both();
        let failed = Captures {
            audio: slot(CaptureState::Failed),
            video: slot(CaptureState::Failed),
        };
        assert_eq!(capture(&i, &failed), vec![CaptureAction::StartVideo]);
    }

    #[test]
    fn another_device_restarts_only_that_capture_closing_it_first() {
        let mut i = may_capture_both();
        let running = Captures {
            audio: slot(CaptureState::Running),
            video: slot(CaptureState::Running),
        };
        i.devices.camera = Some("usb-cam".into());
        assert_eq!(
            capture(&i, &running),
            vec![CaptureAction::StopVideo, CaptureAction::StartVideo]
        );
        i.devices.microphone = Some("headset".into());
        assert_eq!(
            capture(&i, &running),
            vec![
                CaptureAction::StopAudio,
                CaptureAction::StopVideo,
                CaptureAction::StartAudio,
                CaptureAction::StartVideo
            ]
        );
        // A microphone that failed is tried again once another is chosen.
        let failed = Captures {
            audio: slot(CaptureState::Failed),
            video: Slot {
                state: CaptureState::Running,
                device: Some("usb-cam".into()),
            },
        };
        assert_eq!(capture(&i, &failed), vec![CaptureAction::StartAudio]);
        // A camera switched off is not opened because another was chosen.
        i.controls.camera = false;
        assert_eq!(
            capture(&i, &Captures::default()),
            vec![CaptureAction::StartAudio]
        );
    }

    fn status() -> impl Strategy<Value = StageStatus> {
        prop_oneof![
            Just(StageStatus::OffStage),
            Just(StageStatus::RequestedToJoinStage),
            Just(StageStatus::AcceptedToJoinStage),
            Just(StageStatus::OnStage),
        ]
    }

    fn job() -> impl Strategy<Value = Option<JobState>> {
        prop_oneof![
            Just(None),
            Just(Some(JobState::Running)),
            Just(Some(JobState::Finished))
        ]
    }

    fn stage_case() -> impl Strategy<Value = (StageInputs, StageJobs)> {
        let ids = prop::sample::select(vec!["me", "a", "b", "c", "local"]);
        (
            any::<bool>(),
            status(),
            prop::collection::vec((ids.clone(), status()), 0..6),
            any::<(bool, bool, bool)>(),
            any::<bool>(),
            job(),
            job(),
            prop::collection::btree_map(ids, any::<bool>(), 0..5),
        )
            .prop_map(
                |(connected, own, others, (mic, camera, preview), has_sources, p, v, subs)| {
                    let mut participants: Vec<(UserId, StageStatus)> =
                        others.into_iter().map(|(u, s)| (user(u), s)).collect();
                    participants.push((user("me"), own));
                    let inputs = StageInputs {
                        connected,
                        me: Some(user("me")),
                        participants,
                        own_status: own,
                        controls: Controls {
                            mic,
                            camera,
                            preview,
                        },
                        has_sources,
                    };
                    let running = StageJobs {
                        publisher: p,
                        preview: v,
                        subscriptions: subs
                            .into_iter()
                            .map(|(u, done)| {
                                let state = if done {
                                    JobState::Finished
                                } else {
                                    JobState::Running
                                };
                                (user(u), state)
                            })
                            .collect(),
                    };
                    (inputs, running)
                },
            )
    }

    proptest! {
        /// Applying the actions always converges in one step to what the inputs ask for:
        /// nothing publishes unless ON_STAGE and connected, the preview and the publisher
        /// never hold the devices together, and exactly the others on stage are received.
        #[test]
        fn applying_the_actions_converges((inputs, running) in stage_case()) {
            let actions = stage(&inputs, &running);
            let first_start = actions.iter().position(|a| !a.is_stop()).unwrap_or(actions.len());
            prop_assert!(actions[first_start..].iter().all(|a| !a.is_stop()), "stops first: {actions:?}");
            let after = apply(&running, &actions);
            prop_assert_eq!(stage(&inputs, &after), vec![]);
            prop_assert_eq!(
                after.publisher.is_some(),
                inputs.connected && inputs.own_status == StageStatus::OnStage && inputs.has_sources
            );
            prop_assert!(!(after.publisher.is_some() && after.preview.is_some()));
            prop_assert_eq!(after.preview.is_some(), inputs.wants_preview());
            let subscribed: BTreeSet<UserId> = after.subscriptions.keys().cloned().collect();
            prop_assert_eq!(&subscribed, &inputs.wanted_subscriptions());
            prop_assert!(inputs.me.iter().all(|me| !subscribed.contains(me)));
            prop_assert!(after
                .subscriptions
                .values()
                .chain(after.publisher.iter())
                .chain(after.preview.iter())
                .all(|s| *s == JobState::Running));
        }

        /// The capture actions converge too, stops come first, the camera is never open
        /// while switched off or not allowed, and what runs is the device chosen.
        #[test]
        fn capture_actions_converge(
            audio in any::<bool>(),
            video in any::<bool>(),
            (mic, camera, preview) in any::<(bool, bool, bool)>(),
            states in any::<(u8, u8)>(),
            devices in any::<(u8, u8, u8, u8)>(),
        ) {
            let state = |n: u8| match n % 3 {
                0 => CaptureState::Stopped,
                1 => CaptureState::Running,
                _ => CaptureState::Failed,
            };
            let device = |n: u8| match n % 3 {
                0 => None,
                k => Some(format!("device-{k}")),
            };
            let inputs = CaptureInputs {
                audio,
                video,
                controls: Controls { mic, camera, preview },
                devices: DeviceChoice { camera: device(devices.0), microphone: device(devices.1) },
            };
            let mut running = Captures {
                audio: Slot { state: state(states.0), device: device(devices.2) },
                video: Slot { state: state(states.1), device: device(devices.3) },
            };
            // A preset that forbids a kind never started it.
            if !video && running.video.state == CaptureState::Running {
                running.video.state = CaptureState::Stopped;
            }
            if !audio && running.audio.state == CaptureState::Running {
                running.audio.state = CaptureState::Stopped;
            }
            let actions = capture(&inputs, &running);
            let stops = |a: &CaptureAction| matches!(a, CaptureAction::StopAudio | CaptureAction::StopVideo);
            let first_start = actions.iter().position(|a| !stops(a)).unwrap_or(actions.len());
            prop_assert!(actions[first_start..].iter().all(|a| !stops(a)), "stops first: {actions:?}");
            for action in actions {
                match action {
                    CaptureAction::StopAudio => running.audio.state = CaptureState::Stopped,
                    CaptureAction::StopVideo => running.video.state = CaptureState::Stopped,
                    CaptureAction::StartAudio => {
                        running.audio = Slot { state: CaptureState::Running, device: inputs.devices.microphone.clone() };
                    }
                    CaptureAction::StartVideo => {
                        running.video = Slot { state: CaptureState::Running, device: inputs.devices.camera.clone() };
                    }
                }
            }
            prop_assert_eq!(capture(&inputs, &running), vec![]);
            prop_assert_eq!(running.video.state == CaptureState::Running, video && camera);
            if running.video.state == CaptureState::Running {
                prop_assert_eq!(&running.video.device, &inputs.devices.camera);
            }
            if running.audio.state == CaptureState::Running {
                prop_assert_eq!(&running.audio.device, &inputs.devices.microphone);
            }
        }
    }
}
