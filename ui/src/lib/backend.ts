// The only module that talks to Tauri. Everything else uses the `Backend` interface, with
// one method per command of docs/APP.md plus the event subscriptions, so components and
// logic never import @tauri-apps/api.

import { invoke } from '@tauri-apps/api/core';
import { listen } from '@tauri-apps/api/event';
import type { Picture } from './picture';
import { openPictureSocket } from './pictureSocket';
import type {
  AppError,
  AppInfo,
  AudioLevel,
  BackendError,
  DeviceSelection,
  Devices,
  Invite,
  InviteAddresses,
  InvitePreset,
  JoinArgs,
  Left,
  MeetingEvent,
  Session,
  StageStatus,
  StreamMap,
  TileSize,
  Unlisten,
} from './types';

export interface Backend {
  /**
   * `desktop`: the Tauri shell (hosting, invite links, devices through the shell);
   * `web`: a browser page served by the server at /join (joins only, media as streams).
   */
  readonly kind: 'desktop' | 'web';
  appInfo(): Promise<AppInfo>;
  /** The server a join is under way to (at start or from a link), or null; answers at once. */
  joinProgress(): Promise<string | null>;
  /** `newPorts` forgets the stored ports (after `port_in_use`; links made before stop working). */
  startEmbedded(name: string, newPorts?: boolean): Promise<Session>;
  join(args: JoinArgs): Promise<Session>;
  /** `address`: what the link's server names (an address of this machine, or a public one). */
  createInvite(preset: InvitePreset, name: string, address?: string): Promise<Invite>;
  /** The meeting's link for anyone with `preset`: each guest gives a name and joins anew. */
  createRoleLink(preset: InvitePreset, address?: string): Promise<Invite>;
  /** The link for anyone with `preset` lets no one new in (its guests stay); whether there was one. */
  revokeRoleLink(preset: InvitePreset): Promise<boolean>;
  inviteAddresses(): Promise<InviteAddresses>;
  /** Leaves; the meeting goes on for the others (an embedded server keeps serving it). */
  leaveMeeting(): Promise<Left>;
  /** Enters the meeting that ended here again, the way it was entered. */
  rejoinMeeting(): Promise<Session>;
  /** Ends the meeting for everyone (a host only). */
  endMeeting(): Promise<Left>;
  session(): Promise<Session>;
  devices(): Promise<Devices>;
  selectDevices(selection: DeviceSelection): Promise<void>;
  preview(on: boolean): Promise<void>;
  setMic(on: boolean): Promise<void>;
  setCamera(on: boolean): Promise<void>;
  stageRequestAccess(): Promise<StageStatus>;
  stageCancelRequest(): Promise<StageStatus>;
  stageJoin(): Promise<StageStatus>;
  stageLeave(): Promise<StageStatus>;
  stageGrant(userIds: string[]): Promise<void>;
  stageDeny(userIds: string[]): Promise<void>;
  stageKick(userIds: string[]): Promise<void>;
  /** Out of the meeting for good: the session ends and the invitation stops working. */
  removeParticipant(userId: string): Promise<void>;
  /** An ON_STAGE speaker's microphone off; they may turn it on again. */
  muteParticipant(userId: string): Promise<void>;
  /** Another preset for a participant, e.g. `host` to hand over the meeting. */
  setPreset(userId: string, preset: string): Promise<void>;
  /**
   * How large each stage video is shown, in device pixels (0x0: not seen), so that the
   * SFU sends no larger a layer than fills it. Each call replaces the last.
   */
  setTiles(tiles: TileSize[]): Promise<void>;
  /**
   * Opens the picture stream. `onPicture` gets every well-formed picture; a malformed
   * message goes to `onBadPicture` and the stream carries on.
   */
  videoChannel(
    onPicture: (picture: Picture) => void,
    onBadPicture?: (error: string) => void,
  ): Promise<void>;
  /** The browser's received and local streams, whenever they change (never on the desktop). */
  onStreams(cb: (streams: StreamMap) => void): Promise<Unlisten>;
  onSession(cb: (session: Session) => void): Promise<Unlisten>;
  onMeetingEvent(cb: (event: MeetingEvent) => void): Promise<Unlisten>;
  onMediaError(cb: (error: BackendError) => void): Promise<Unlisten>;
  onAudioLevel(cb: (level: AudioLevel) => void): Promise<Unlisten>;
  onAppError(cb: (error: AppError) => void): Promise<Unlisten>;
}

function subscribe<T>(event: string, cb: (payload: T) => void): Promise<Unlisten> {
  return listen<T>(event, (e) => cb(e.payload));
}

/**
 * Tauri 2 matches a command's snake_case Rust parameters to camelCase keys by default
 * (`user_ids` <- `userIds`), so the multi-word arguments of docs/APP.md go over as
 * camelCase.
 */
function joinArgs(args: JoinArgs): Record<string, string | undefined> {
  if ('name' in args) return { inviteLink: args.invite_link, name: args.name };
  return 'invite_link' in args
    ? { inviteLink: args.invite_link }
    : { serverUrl: args.server_url, token: args.token };
}

export const tauriBackend: Backend = {
  kind: 'desktop',
  appInfo: () => invoke('app_info'),
  joinProgress: () => invoke('join_progress'),
  startEmbedded: (name, newPorts) =>
    invoke('start_embedded', newPorts ? { name, newPorts: true } : { name }),
  join: (args) => invoke('join', joinArgs(args)),
  createInvite: (preset, name, address) =>
    invoke('create_invite', address ? { preset, name, address } : { preset, name }),
  revokeRoleLink: (preset) => invoke('revoke_role_link', { preset }),
  createRoleLink: (preset, address) =>
    invoke('create_role_link', address ? { preset, address } : { preset }),
  inviteAddresses: () => invoke('invite_addresses'),
  leaveMeeting: () => invoke('leave_meeting'),
  rejoinMeeting: () => invoke('rejoin_meeting'),
  endMeeting: () => invoke('end_meeting'),
  session: () => invoke('session'),
  devices: () => invoke('devices'),
  selectDevices: (selection) => invoke('select_devices', { ...selection }),
  preview: (on) => invoke('preview', { on }),
  setMic: (on) => invoke('set_mic', { on }),
  setCamera: (on) => invoke('set_camera', { on }),
  stageRequestAccess: () => invoke('stage_request_access'),
  stageCancelRequest: () => invoke('stage_cancel_request'),
  stageJoin: () => invoke('stage_join'),
  stageLeave: () => invoke('stage_leave'),
  stageGrant: (userIds) => invoke('stage_grant', { userIds }),
  stageDeny: (userIds) => invoke('stage_deny', { userIds }),
  stageKick: (userIds) => invoke('stage_kick', { userIds }),
  removeParticipant: (userId) => invoke('remove_participant', { userId }),
  muteParticipant: (userId) => invoke('mute_participant', { userId }),
  setPreset: (userId, preset) => invoke('set_preset', { userId, preset }),
  setTiles: (tiles) => invoke('set_tiles', { tiles }),
  videoChannel: async (onPicture, onBadPicture) => {
    const { url } = await invoke<{ url: string }>('video_socket');
    openPictureSocket(url, { onPicture, onBadPicture });
  },
  onStreams: async () => () => {},
  onSession: (cb) => subscribe('session', cb),
  onMeetingEvent: (cb) => subscribe('meeting-event', cb),
  onMediaError: (cb) => subscribe('media-error', cb),
  onAudioLevel: (cb) => subscribe('audio-level', cb),
  onAppError: (cb) => subscribe('app-error', cb),
};

export function inTauri(): boolean {
  return typeof window !== 'undefined' && '__TAURI_INTERNALS__' in window;
}

/**
 * The Tauri backend inside the app; the web backend in the build the server serves at /join
 * (`vite build --mode web`); in a plain browser otherwise (`npm run dev`) a dev fake so the
 * screens can be worked on without the shell. The web backend and the fake are chunks of
 * their own, loaded only then.
 */
export async function createBackend(): Promise<Backend> {
  if (inTauri()) return tauriBackend;
  if (import.meta.env.MODE === 'web') {
    const { createWebBackend } = await import('./webBackend');
    return createWebBackend();
  }
  const { createDevFakeBackend } = await import('./devFake');
  return createDevFakeBackend();
}
