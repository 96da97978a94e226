// The shapes of docs/APP.md, the contract between this UI and the Tauri shell.

import type { Origin } from './origin';

export type StageStatus =
  | 'OFF_STAGE'
  | 'REQUESTED_TO_JOIN_STAGE'
  | 'ACCEPTED_TO_JOIN_STAGE'
  | 'ON_STAGE';

export type ConnectionState = 'connected' | 'reconnecting' | 'disconnected';

/** Why the meeting ended for good, when the server said so (docs/API.md, goodbye reasons). */
export type EndReason = 'left' | 'replaced' | 'revoked' | 'removed' | 'meeting_deleted' | 'meeting_ended';

/**
 * How well a participant's media reaches this window (docs/API.md, "Reception"): the mark
 * on their tile.
 */
export type Reception = 'good' | 'fair' | 'poor';

export interface Participant {
  user_id: string;
  name: string;
  preset: string;
  stage_status: StageStatus;
  connected: boolean;
  /** What the participant publishes right now: false means muted / camera off. */
  audio: boolean;
  video: boolean;
  /**
   * How their media reaches me: only for someone else on stage, once 2 s of their media has
   * come (absent for me, off stage, and before that).
   */
  reception?: Reception;
}

export interface Capabilities {
  accept_requests: boolean;
  kick: boolean;
  request: boolean;
  join_directly: boolean;
  /** May end the meeting for everyone, and make others host (a host). */
  end_meeting: boolean;
  /** May remove others from the meeting (`kick_participant`). */
  remove: boolean;
}

export interface Me extends Participant {
  can: Capabilities;
  /** While REQUESTED: my place in the queue (1 = next in line). */
  queue_place?: number;
}

export interface AccessRequest {
  user_id: string;
  name: string;
  requested_at: number;
}

export interface Session {
  meeting_id: string;
  /** The meeting's title (empty from a server that sends none). */
  title: string;
  connection: ConnectionState;
  /** Once disconnected: why, when known. */
  end_reason?: EndReason;
  me: Me;
  participants: Participant[];
  queue: AccessRequest[];
  max_on_stage: number;
  mic_on: boolean;
  camera_on: boolean;
  publishing: { audio: boolean; video: boolean };
}

export interface AppInfo {
  mode: 'idle' | 'embedded' | 'joined';
  server_url?: string;
  invite_link?: string;
  /** The last failure no command answered for (also sent as `app-error`). */
  last_error?: AppError;
  /** The embedded server still serves a meeting its host left without ending it. */
  serving?: boolean;
}

/** What leaving or ending answers: whether the meeting goes on for the others. */
export interface Left {
  still_running: boolean;
}

/**
 * `app-error`: hosting or joining at start failed (`start`), or an invite link opened from
 * outside could not be joined (`link`).
 */
export interface AppError extends BackendError {
  context: 'start' | 'link';
  /**
   * A role link that came without the guest's name (opened from outside, or given at
   * start): the join form takes it and asks for the name.
   */
  link?: string;
}

/** One of this machine's addresses (`invite_addresses`). */
export interface HostAddress {
  ip: string;
  interface: string;
  loopback: boolean;
}

export interface InviteAddresses {
  /** The HTTPS port links name. */
  port: number;
  /** The media port (UDP and TCP), for port forwarding. */
  media_port?: number;
  /** Non-loopback first. */
  addresses: HostAddress[];
  /** The address the last invitations named. */
  last_address?: string;
  fingerprint?: string;
}

export type InvitePreset = 'viewer' | 'speaker';

export interface Invite {
  server_url: string;
  token: string;
  link: string;
  /**
   * The same invitation for a browser, nothing to install: the UI the server serves at
   * `https://HOST:PORT/join#token=..` (`#invite=..` for a role link), naming the same server
   * as `link`. It carries no certificate pin: a browser trusts a self-signed server after
   * its own warning.
   */
  web_link: string;
  /** The address the link names. */
  address: string;
}

export interface Device {
  id: string;
  name: string;
}

export interface Devices {
  cameras: Device[];
  microphones: Device[];
  speakers: Device[];
}

export interface DeviceSelection {
  camera?: string | null;
  microphone?: string | null;
}

/**
 * How large one stage video is shown here, in device pixels (`set_tiles`); 0x0: not seen
 * (a hidden window, a tile out of view).
 */
export interface TileSize {
  user_id: string;
  width: number;
  height: number;
}

/**
 * How to join a server's meeting. A personal invitation (link or token) carries the name
 * the host gave it, and that is the name everyone sees: no name goes with it. A role link
 * (`invite=`, one link for anyone) needs the guest's own `name`.
 */
export type JoinArgs =
  | { server_url: string; token: string }
  | { invite_link: string }
  | { invite_link: string; name: string };

/**
 * Every code the shell sends (docs/APP.md "Errors"): the SDK's, the media codes and the
 * shell's own.
 */
export const ERROR_CODES = [
  // the SDK's
  'unauthorized',
  'token_expired',
  'token_revoked',
  'permission_denied',
  'invalid_state',
  'not_found',
  'stage_full',
  'meeting_full',
  'bad_request',
  'rate_limited',
  'internal',
  'connection_lost',
  'untrusted_server',
  'unreachable',
  'not_onstage_server',
  'invalid_server_url',
  'bad_link',
  // media
  'device_not_found',
  'device_busy',
  'device_error',
  'device_lost',
  'unsupported_format',
  'codec_error',
  'closed',
  // the browser's: it was not allowed to use the camera or microphone
  'device_denied',
  // the shell's
  'bad_address',
  'port_in_use',
  'unavailable',
] as const;

export type ErrorCode = (typeof ERROR_CODES)[number];

/** The device a device error is about. */
export const DEVICE_KINDS = ['camera', 'microphone', 'speaker'] as const;

export type DeviceKind = (typeof DEVICE_KINDS)[number];

/**
 * A refused command as the shell rejects it, and the `media-error` event. `device` is set
 * by the shell for an error about one device (it knows which one it was using).
 */
export interface BackendError {
  code: ErrorCode;
  message: string;
  device?: DeviceKind;
}

/**
 * One SDK event as `onstage bot` prints it, e.g. `{"event":"newStageRequest","request":{..}}`.
 * Left loose on purpose: the UI reads a few events and checks their fields where it does
 * (stage.ts), so a new event from the shell never breaks it.
 */
export interface MeetingEvent {
  event: string;
  [field: string]: unknown;
}

/** `audio-level`: a participant's (`origin: "remote"`, with `user_id`) or this machine's microphone (`origin: "local"`). */
export type AudioLevel = Origin & { level: number };

export type Unlisten = () => void;

/**
 * The browser's pictures: one `MediaStream` per origin key (`originKey`: this browser's
 * camera, or a participant's received camera and microphone). The desktop shell sends
 * pictures over its video channel instead and never any stream.
 */
export type StreamMap = Record<string, MediaStream>;
