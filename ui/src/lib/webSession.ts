// What the browser's backend (webBackend.ts) makes of the web Stage SDK, kept pure so every
// case is a unit test: the Session the UI shows (the same shape the desktop shell builds in
// src-tauri/src/state.rs), devices and capture constraints, and browser media failures in
// the UI's error codes. The links a page is opened with are links.ts's.

import {
  mayAcceptRequests,
  mayEndMeeting,
  mayKick,
  type AccessRequest,
  type CloseReason,
  type ConnectionState,
  type MediaKinds,
  type MediaProblem,
  type MediaProblemCode,
  type ParticipantInfo,
  type Preset,
  type Reception,
} from '@onstage/web-sdk';
import type { BackendError, Capabilities, Devices, DeviceSelection, EndReason, ErrorCode, Participant, Session } from './types';

/** What a Session is built from: the meeting as the SDK mirrors it. */
export interface MeetingView {
  meetingId: string;
  title: string;
  userId: string;
  preset: Preset;
  /** This participant (the SDK's `self`: a stand-in in the instant around leaving). */
  self: ParticipantInfo;
  participants: ParticipantInfo[];
  /** Who publishes what, by user id (from the welcome and the media events). */
  publishing: Map<string, MediaKinds>;
  connectionState: ConnectionState;
  endReason: CloseReason | null;
  maxOnStage: number;
  accessRequests: AccessRequest[];
  placeInQueue: number | null;
}

/** This browser's media switches and what its publication carries. */
export interface MediaView {
  mic: boolean;
  camera: boolean;
  publishing: MediaKinds;
  /** How each received participant's media reaches this browser (`BrowserStageMedia.reception`). */
  reception?: ReadonlyMap<string, Reception>;
}

const NOTHING: MediaKinds = { audio: false, video: false };

/** The reasons the UI says something about when a meeting ends (types.ts `EndReason`). */
const END_REASONS: readonly CloseReason[] = ['left', 'replaced', 'revoked', 'removed', 'meeting_deleted', 'meeting_ended'];

/** What the preset allows, as the desktop shell reads it (src-tauri/src/state.rs). */
export function capabilitiesOf(preset: Preset): Capabilities {
  const stage = preset.stage_enabled;
  return {
    accept_requests: mayAcceptRequests(preset),
    kick: mayKick(preset),
    request: stage && preset.stage_access === 'CAN_REQUEST',
    join_directly: stage && preset.stage_access === 'ALLOWED',
    end_meeting: mayEndMeeting(preset),
    remove: preset.kick_participant,
  };
}

/** The Session of docs/APP.md for this meeting and this browser's media. */
export function sessionOf(meeting: MeetingView, media: MediaView | null): Session {
  const publishing = media?.publishing ?? NOTHING;
  const view = (p: ParticipantInfo): Participant => {
    // Mine is what this browser sends; anyone else's is what the server says they publish
    // while on stage (off stage nobody is forwarded, whatever was last announced).
    const kinds =
      p.user_id === meeting.userId
        ? publishing
        : p.stage_status === 'ON_STAGE'
          ? (meeting.publishing.get(p.user_id) ?? NOTHING)
          : NOTHING;
    const participant: Participant = {
      user_id: p.user_id,
      name: p.name,
      preset: p.preset,
      stage_status: p.stage_status,
      connected: p.connected,
      audio: kinds.audio,
      video: kinds.video,
    };
    // Only someone else on stage is received; a level left from before they left it is stale.
    const reception = media?.reception?.get(p.user_id);
    if (reception && p.user_id !== meeting.userId && p.stage_status === 'ON_STAGE') participant.reception = reception;
    return participant;
  };
  const participants = meeting.participants.map(view);
  const can = capabilitiesOf(meeting.preset);
  const me = view(meeting.self);
  const session: Session = {
    meeting_id: meeting.meetingId,
    title: meeting.title,
    connection: meeting.connectionState,
    me: meeting.placeInQueue === null ? { ...me, can } : { ...me, can, queue_place: meeting.placeInQueue },
    participants,
    queue: can.accept_requests ? meeting.accessRequests.map((r) => ({ ...r })) : [],
    max_on_stage: meeting.maxOnStage,
    mic_on: media?.mic ?? true,
    camera_on: media?.camera ?? true,
    publishing: { ...publishing },
  };
  const reason = meeting.endReason;
  if (reason !== null && END_REASONS.includes(reason)) session.end_reason = reason as EndReason;
  return session;
}

const MEDIA_CODES: Record<MediaProblemCode, ErrorCode> = {
  permission_denied: 'device_denied',
  device_not_found: 'device_not_found',
  device_busy: 'device_busy',
  unsupported: 'codec_error',
  negotiation_failed: 'internal',
};

/**
 * A browser media failure as the UI's error: a refused permission is the browser's setting
 * (not the meeting's `permission_denied`); `device` when the failure was one device's.
 */
export function mediaErrorOf(problem: MediaProblem, device?: 'camera' | 'microphone'): BackendError {
  const code = MEDIA_CODES[problem.code];
  return device ? { code, message: problem.message, device } : { code, message: problem.message };
}

/** The browser's devices (`enumerateDevices`); before a permission they come without labels. */
export function devicesOf(list: ReadonlyArray<Pick<MediaDeviceInfo, 'kind' | 'deviceId' | 'label'>>): Devices {
  const named = (kind: MediaDeviceKind, word: string) =>
    list
      .filter((d) => d.kind === kind && d.deviceId !== '')
      .map((d, i) => ({ id: d.deviceId, name: d.label || `${word} ${i + 1}` }));
  return {
    cameras: named('videoinput', 'Camera'),
    microphones: named('audioinput', 'Microphone'),
    speakers: named('audiooutput', 'Speaker'),
  };
}

/** What to ask `getUserMedia` for with the chosen devices (the browser's default otherwise). */
export function captureConstraints(
  selection: DeviceSelection,
  kinds: { audio: boolean; video: boolean } = { audio: true, video: true },
): MediaStreamConstraints {
  const video: MediaTrackConstraints = { width: { ideal: 1280 }, height: { ideal: 720 } };
  if (selection.camera) video.deviceId = { exact: selection.camera };
  const audio: MediaTrackConstraints | boolean = selection.microphone ? { deviceId: { exact: selection.microphone } } : true;
  return { audio: kinds.audio ? audio : false, video: kinds.video ? video : false };
}
