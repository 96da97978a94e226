// What the browser's backend (webBackend.ts) makes of the web Stage SDK, kept pure so every
// case is a unit test: the Session the UI shows (the same shape the desktop shell builds in
// src-tauri/src/state.rs), the invite a page was opened with, and browser media failures in
// the UI's error codes.

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
    return {
      user_id: p.user_id,
      name: p.name,
      preset: p.preset,
      stage_status: p.stage_status,
      connected: p.connected,
      audio: kinds.audio,
      video: kinds.video,
    };
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

/** The invite a page at /join was opened with: `#token=T` (personal) or `#invite=T` (for anyone). */
export type PageInvite = { token: string } | { invite: string };

export function inviteInFragment(hash: string): PageInvite | null {
  const params = new URLSearchParams(hash.replace(/^#/, ''));
  const token = params.get('token')?.trim();
  if (token) return { token };
  const invite = params.get('invite')?.trim();
  if (invite) return { invite };
  return null;
}

/** `token=T` or `invite=T`, encoded: what both forms of link carry after their server. */
function inviteParam(invite: PageInvite): string {
  const [key, value] = 'token' in invite ? ['token', invite.token] : ['invite', invite.invite];
  return `${key}=${encodeURIComponent(value)}`;
}

/** The page's own address for a participant token: a reload comes back as the same participant. */
export function pageLinkFor(origin: string, invite: PageInvite): string {
  return `${origin}/join#${inviteParam(invite)}`;
}

/** The app's link for an invite (what the join form shows and `parseJoinLink` reads). */
export function appLinkFor(server: string, invite: PageInvite): string {
  return `onstage://join?server=${encodeURIComponent(server)}&${inviteParam(invite)}`;
}

/** A link the join form was given, parsed: which server, and the token or the role invite. */
export type ParsedLink = { server: string } & PageInvite;

/**
 * Reads an invite link of either form: the app's `onstage://join?server=..&token=..`
 * (`invite=` for a role link; a certificate pin `fp=` is the browser's business, not the
 * page's) or the browser's `https://HOST:PORT/join#token=..` (`#invite=..`).
 */
export function parseJoinLink(text: string): ParsedLink | BackendError {
  const link = text.trim();
  const bad = (message: string): BackendError => ({ code: 'bad_link', message });
  if (/^onstage:\/\/join\?/i.test(link)) {
    const params = new URLSearchParams(link.slice(link.indexOf('?') + 1).split('#')[0]);
    const server = params.get('server')?.trim();
    if (!server) return bad('the link names no server');
    if (!/^https?:\/\//i.test(server)) return bad(`the link's server ${server} is not an https:// address`);
    const token = params.get('token')?.trim();
    if (token) return { server, token };
    const invite = params.get('invite')?.trim();
    if (invite) return { server, invite };
    return bad('the link carries no token');
  }
  let url: URL;
  try {
    url = new URL(link);
  } catch {
    return bad('it is neither an onstage:// link nor a web address');
  }
  if (url.protocol !== 'https:' && url.protocol !== 'http:') return bad(`${url.protocol}// links cannot be joined here`);
  if (url.pathname.replace(/\/+$/, '') !== '/join') return bad('a web invite link goes to /join');
  const invite = inviteInFragment(url.hash);
  if (!invite) return bad('the link carries no token');
  return { server: url.origin, ...invite };
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
