// What the stage looks like from my seat: which controls I get, what the host panel
// lists, which tiles are on stage. Pure functions of the Session, so every rule here is
// unit-tested without Tauri. The room on the server stays the authority: these only decide
// what to offer, and a refused call still comes back as an error code (errors.ts).

import type {
  AccessRequest,
  MeetingEvent,
  Participant,
  Reception,
  Session,
  StageStatus,
} from './types';
import { LOCAL_KEY, userKey } from './origin';

export type ControlId =
  | 'request-access'
  | 'cancel-request'
  | 'join-stage'
  | 'decline'
  | 'leave-stage'
  | 'mute-mic'
  | 'camera-off';

export interface Control {
  id: ControlId;
  label: string;
  enabled: boolean;
  /** For the mic / camera toggles: true while muted / camera off (aria-pressed). */
  pressed?: boolean;
}

export type Indicator = 'On stage' | 'Viewer' | 'Off stage' | 'Requested' | 'Invited';

export interface MyStageView {
  indicator: Indicator;
  /** Invited or granted, not yet on stage: show the local preview before joining. */
  greenRoom: boolean;
  controls: Control[];
  /** A line of explanation when there is something to explain, else null. */
  hint: string | null;
}

export function indicatorText(status: StageStatus): Indicator {
  switch (status) {
    case 'ON_STAGE':
      return 'On stage';
    case 'REQUESTED_TO_JOIN_STAGE':
      return 'Requested';
    case 'ACCEPTED_TO_JOIN_STAGE':
      return 'Invited';
    case 'OFF_STAGE':
      return 'Viewer';
  }
}

/** Stage status of someone else, as the host's participant list shows it. */
export function statusText(status: StageStatus): string {
  return status === 'OFF_STAGE' ? 'Off stage' : indicatorText(status);
}

/** Everyone in the meeting, me included exactly once (the shell may or may not list me). */
export function everyone(s: Session): Participant[] {
  const others = s.participants.filter((p) => p.user_id !== s.me.user_id);
  const listed = s.participants.find((p) => p.user_id === s.me.user_id);
  // My own status comes from `me`, which the shell updates first.
  const me: Participant = { ...(listed ?? s.me), stage_status: s.me.stage_status };
  return [me, ...others];
}

export function onStageCount(s: Session): number {
  return everyone(s).filter((p) => p.stage_status === 'ON_STAGE').length;
}

/** True when joining now would be refused with `stage_full` (I am not on stage yet). */
export function stageFull(s: Session): boolean {
  return s.me.stage_status !== 'ON_STAGE' && onStageCount(s) >= s.max_on_stage;
}

function mediaToggles(s: Session, enabled: boolean): Control[] {
  return [
    {
      id: 'mute-mic',
      label: s.mic_on ? 'Mute mic' : 'Unmute mic',
      enabled,
      pressed: !s.mic_on,
    },
    {
      id: 'camera-off',
      label: s.camera_on ? 'Camera off' : 'Camera on',
      enabled,
      pressed: !s.camera_on,
    },
  ];
}

export function myStageView(s: Session): MyStageView {
  const status = s.me.stage_status;
  const can = s.me.can;
  // While reconnecting every call fails with connection_lost: offer nothing clickable.
  const live = s.connection === 'connected';
  const full = stageFull(s);
  const view: MyStageView = {
    // Someone who may go on stage whenever they like (host, speaker) is not a viewer who
    // has to ask: for them off stage is just "Off stage".
    indicator: status === 'OFF_STAGE' && can.join_directly ? 'Off stage' : indicatorText(status),
    greenRoom: status === 'ACCEPTED_TO_JOIN_STAGE',
    controls: [],
    hint: null,
  };

  switch (status) {
    case 'OFF_STAGE':
      if (can.join_directly) {
        view.controls.push({ id: 'join-stage', label: 'Join stage', enabled: live && !full });
        if (full) view.hint = 'The stage is full';
      } else if (can.request) {
        view.controls.push({ id: 'request-access', label: 'Request to join', enabled: live });
      } else {
        // Spectators cannot ask, but a host can still invite them (grant on OFF_STAGE).
        view.hint = 'You are watching. A host can invite you to the stage.';
      }
      break;
    case 'REQUESTED_TO_JOIN_STAGE':
      view.controls.push({ id: 'cancel-request', label: 'Cancel request', enabled: live });
      view.hint = s.me.queue_place
        ? `Waiting for a host to let you in · ${placeText(s.me.queue_place)}`
        : 'Waiting for a host to let you in';
      break;
    case 'ACCEPTED_TO_JOIN_STAGE':
      view.controls.push(
        ...mediaToggles(s, live),
        { id: 'join-stage', label: 'Join stage', enabled: live && !full },
        { id: 'decline', label: 'Decline', enabled: live },
      );
      view.hint = full
        ? 'The stage is full'
        : 'Check your camera and microphone, then join the stage';
      break;
    case 'ON_STAGE':
      view.controls.push(...mediaToggles(s, live), {
        id: 'leave-stage',
        label: 'Leave stage',
        enabled: live,
      });
      break;
  }
  return view;
}

/**
 * What a host may do to a row: take someone on or off the stage, mute a speaker's
 * microphone, hand over the host role, remove someone from the meeting. The last two ask
 * for a confirmation first (`confirmation`).
 */
export type HostAction = 'invite' | 'kick' | 'mute' | 'make-host' | 'remove';

export interface ParticipantRow {
  user_id: string;
  name: string;
  preset: string;
  status: StageStatus;
  statusText: string;
  connected: boolean;
  isMe: boolean;
  actions: HostAction[];
}

export interface HostView {
  /** Only for presets that may accept requests; the queue is not sent to others. */
  queue: AccessRequest[] | null;
  participants: ParticipantRow[];
  /** Whether the host buttons can be pressed now (not while reconnecting). */
  enabled: boolean;
}

/** Oldest first; requests with the same timestamp keep the order the shell gave. */
export function queueOldestFirst(queue: readonly AccessRequest[]): AccessRequest[] {
  return queue
    .map((r, i) => ({ r, i }))
    .sort((a, b) => a.r.requested_at - b.r.requested_at || a.i - b.i)
    .map(({ r }) => r);
}

function stageActions(p: Participant, s: Session): HostAction[] {
  const can = s.me.can;
  switch (p.stage_status) {
    case 'OFF_STAGE':
      // Granting someone who did not ask is an invitation.
      return can.accept_requests ? ['invite'] : [];
    case 'ACCEPTED_TO_JOIN_STAGE':
      return can.accept_requests || can.kick ? ['kick'] : [];
    case 'ON_STAGE':
      if (!can.accept_requests && !can.kick) return [];
      // Muting someone already silent would say nothing.
      return p.audio ? ['mute', 'kick'] : ['kick'];
    case 'REQUESTED_TO_JOIN_STAGE':
      // Decided in the queue with Grant / Deny.
      return [];
  }
}

function hostActions(p: Participant, s: Session): HostAction[] {
  if (p.user_id === s.me.user_id) return []; // my own stage is run by my own controls
  const can = s.me.can;
  const actions = stageActions(p, s);
  if (can.end_meeting && p.preset !== 'host') actions.push('make-host');
  if (can.remove) actions.push('remove');
  return actions;
}

/** The question a host answers before a `make-host` or `remove`, and its button. */
export interface Confirmation {
  question: string;
  confirm: string;
}

export function confirmation(action: 'make-host' | 'remove', name: string): Confirmation {
  return action === 'make-host'
    ? {
        question: `Make ${name} a host? They can then run the stage, remove people and end the meeting.`,
        confirm: 'Make host',
      }
    : {
        question: `Remove ${name} from the meeting? Their invitation stops working.`,
        confirm: 'Remove',
      };
}

/** The host panel, or null when my preset may neither accept requests nor kick. */
export function hostView(s: Session): HostView | null {
  const can = s.me.can;
  if (!can.accept_requests && !can.kick) return null;
  return {
    queue: can.accept_requests ? queueOldestFirst(s.queue) : null,
    participants: everyone(s).map((p) => ({
      user_id: p.user_id,
      name: p.name,
      preset: p.preset,
      status: p.stage_status,
      statusText: statusText(p.stage_status),
      connected: p.connected,
      isMe: p.user_id === s.me.user_id,
      actions: hostActions(p, s),
    })),
    enabled: s.connection === 'connected',
  };
}

export interface TileView {
  user_id: string;
  name: string;
  isMe: boolean;
  audio: boolean;
  video: boolean;
  connected: boolean;
  /** The origin keys (`originKey`) of the pictures drawn on this tile. */
  pictureKeys: string[];
  /** The origin key of the level shown on this tile. */
  levelKey: string;
  /** How their media reaches me; absent on my own tile and while unknown. */
  reception?: Reception;
}

/** One tile per participant on stage, in the shell's order. */
export function stageTiles(s: Session): TileView[] {
  // Once the session is over here (replaced by another window, ended), nothing is received
  // or sent: no tile may go on showing its last picture as if it were live.
  const over = s.connection === 'disconnected';
  return everyone(s)
    .filter((p) => p.stage_status === 'ON_STAGE')
    .map((p) => {
      const isMe = p.user_id === s.me.user_id;
      const tile: TileView = {
        user_id: p.user_id,
        name: p.name,
        isMe,
        // My own tile follows my switches, known locally before the server echoes them.
        // Not what I publish: that is nothing while reconnecting, though I changed nothing
        // (a device that fails has its own message, by the controls).
        audio: !over && (isMe ? s.mic_on : p.audio),
        video: !over && (isMe ? s.camera_on : p.video),
        connected: p.connected,
        // My self-view is the local camera, which needs no round trip; my level is the
        // local microphone's. Anyone else is their user id, whatever it reads.
        pictureKeys: isMe ? [LOCAL_KEY, userKey(p.user_id)] : [userKey(p.user_id)],
        levelKey: isMe ? LOCAL_KEY : userKey(p.user_id),
      };
      // Nothing is received once the session is over, and my own media is not received here.
      if (!over && !isMe && p.reception) tile.reception = p.reception;
      return tile;
    });
}

/** The request carried by a `newStageRequest` event, or null for any other event. */
export function requestFromEvent(e: MeetingEvent): AccessRequest | null {
  if (e.event !== 'newStageRequest') return null;
  const r = e['request'];
  if (typeof r !== 'object' || r === null) return null;
  const { user_id, name, requested_at } = r as Record<string, unknown>;
  if (typeof user_id !== 'string' || typeof name !== 'string') return null;
  return { user_id, name, requested_at: typeof requested_at === 'number' ? requested_at : 0 };
}

export interface Notice {
  text: string;
  tone: 'info' | 'error';
}

/**
 * The toast an event deserves, or null when the session view already says it all. `me` is
 * this participant's user id: some events matter only to the one they are about.
 */
export function eventNotice(e: MeetingEvent, me?: string): Notice | null {
  switch (e.event) {
    case 'participantMuted':
      return e['user_id'] === me
        ? { text: 'A host muted your microphone. Unmute when you are ready.', tone: 'info' }
        : null;
    case 'presetChanged':
      if (e['user_id'] !== me) return null;
      return e['preset'] === 'host'
        ? { text: 'You are now a host of this meeting', tone: 'info' }
        : { text: `Your role is now ${String(e['preset'])}`, tone: 'info' };
    case 'newStageRequest': {
      const r = requestFromEvent(e);
      return r ? { text: `${r.name} asks to join the stage`, tone: 'info' } : null;
    }
    case 'stageRequestApproved':
      return { text: 'You are invited to the stage', tone: 'info' };
    case 'stageRequestRejected':
      return { text: 'Your request to join the stage was declined', tone: 'info' };
    case 'connectionStateUpdate':
      if (e['state'] === 'connected' && e['resumed'] === false) {
        return { text: 'Reconnected, but your place on stage was lost', tone: 'error' };
      }
      return null;
    default:
      return null;
  }
}

/**
 * What the banner says once the meeting is over for this window: the reason the server
 * gave (`end_reason`), in words, or the plain fact when there is none. None of these
 * reconnects: another window may hold the meeting now, or the invitation no longer works.
 */
export function disconnectedText(s: Session): string {
  switch (s.end_reason) {
    case 'replaced':
      return 'You joined this meeting from another window or device, so it ended here.';
    case 'revoked':
      return 'Your invitation was replaced by a newer one. Ask the host for the new link.';
    case 'removed':
      return 'The host removed you from the meeting.';
    case 'meeting_deleted':
      return 'The meeting has ended: the host deleted it.';
    case 'meeting_ended':
      return 'The host ended the meeting.';
    case 'left':
      return 'You left the meeting.';
    default:
      return 'You are disconnected from the meeting.';
  }
}

/**
 * Whether the meeting that ended here can be entered again the same way: not after the
 * invitation stopped working (revoked, removed, the meeting deleted) or leaving on purpose.
 * After another window took over, Rejoin takes it back; after the host ended the meeting,
 * the token still works and a rejoin starts a new session of it.
 */
export function canRejoin(s: Session): boolean {
  if (s.connection !== 'disconnected') return false;
  switch (s.end_reason) {
    case 'revoked':
    case 'removed':
    case 'meeting_deleted':
    case 'left':
      return false;
    default:
      return true;
  }
}

/**
 * Controls that take something away (my place on stage, my request, an invitation). Focus
 * never lands on one after an action, so a second Enter cannot undo the first.
 */
const DESTRUCTIVE_CONTROLS: readonly ControlId[] = ['leave-stage', 'decline', 'cancel-request'];

export function isDestructiveControl(id: ControlId): boolean {
  return DESTRUCTIVE_CONTROLS.includes(id);
}

/**
 * Where focus goes once `pressed` has done its work and the controls are `now`: the same
 * control when it is still there (the mic and camera toggles), else the first harmless one,
 * else null (the controls' section itself takes focus). Never a destructive control.
 */
export function controlFocusAfter(pressed: ControlId, now: readonly Control[]): ControlId | null {
  const harmless = now.filter((c) => !isDestructiveControl(c.id));
  if (harmless.some((c) => c.id === pressed)) return pressed;
  return harmless[0]?.id ?? null;
}

export type HostGroup = 'stage' | 'requests' | 'audience';

/** A row of the Requests group: the queue's entry, and whether I may decide it here. */
export interface RequestRow {
  user_id: string;
  name: string;
  requested_at: number | null;
  connected: boolean;
  decide: boolean;
}

/** The host panel's rows, in the order they are shown. */
export interface HostLayout {
  /** On stage, and invited on their way up (both can be removed). */
  stage: ParticipantRow[];
  /** Asking to join, oldest first. */
  requests: RequestRow[];
  /** Everyone else: off stage. */
  audience: ParticipantRow[];
  /** Every id in the order shown: pass it back as `previous` next time. */
  order: string[];
}

/**
 * `rows` with those in `previous` kept in their earlier order and the others after them,
 * in the order given. So a row never moves because someone else joined or left its group:
 * newcomers only ever add rows at the end.
 */
export function stableOrder<T extends { user_id: string }>(rows: readonly T[], previous: readonly string[]): T[] {
  const seen = new Map(previous.map((id, i) => [id, i]));
  return rows
    .map((row, i) => ({ row, i, at: seen.get(row.user_id) }))
    .sort((a, b) => {
      if (a.at !== undefined && b.at !== undefined) return a.at - b.at;
      if (a.at !== undefined) return -1;
      if (b.at !== undefined) return 1;
      return a.i - b.i;
    })
    .map(({ row }) => row);
}

/**
 * The host panel's groups: stage, then requests, then audience, each in a stable order
 * (`previous`: the last `order`). Requests are oldest first, which is also stable: a new
 * one is the newest. Someone asking shows once, in Requests, whether or not I see the
 * queue (without it I cannot decide there).
 */
export function hostLayout(view: HostView, previous: readonly string[] = []): HostLayout {
  const byId = new Map(view.participants.map((p) => [p.user_id, p]));
  const stage = stableOrder(
    view.participants.filter((p) => p.status === 'ON_STAGE' || p.status === 'ACCEPTED_TO_JOIN_STAGE'),
    previous,
  );
  const audience = stableOrder(
    view.participants.filter((p) => p.status === 'OFF_STAGE'),
    previous,
  );
  const queued: RequestRow[] = (view.queue ?? []).map((r) => ({
    user_id: r.user_id,
    name: r.name,
    requested_at: r.requested_at,
    connected: byId.get(r.user_id)?.connected ?? true,
    decide: true,
  }));
  const inQueue = new Set(queued.map((r) => r.user_id));
  const asking: RequestRow[] = stableOrder(
    view.participants.filter((p) => p.status === 'REQUESTED_TO_JOIN_STAGE' && !inQueue.has(p.user_id)),
    previous,
  ).map((p) => ({ user_id: p.user_id, name: p.name, requested_at: null, connected: p.connected, decide: false }));
  const requests = [...queued, ...asking];
  return {
    stage,
    requests,
    audience,
    order: [...stage, ...requests, ...audience].map((r) => r.user_id),
  };
}

/** The most ids one stage call takes (the server's `MAX_BATCH_IDS`). */
export const MAX_BATCH_IDS = 1000;

/**
 * Who "Accept all" and "Deny all" act on: every request I may decide here, oldest first,
 * at most one call's worth (a queue longer than that takes a second press).
 */
export function decidable(requests: readonly RequestRow[]): string[] {
  return requests
    .filter((r) => r.decide)
    .map((r) => r.user_id)
    .slice(0, MAX_BATCH_IDS);
}

/** `1` -> "next in line", `2` -> "2nd in line", `11` -> "11th in line", `23` -> "23rd in line". */
export function placeText(place: number): string {
  if (place <= 1) return 'next in line';
  const teen = place % 100 >= 11 && place % 100 <= 13;
  const suffix = teen ? 'th' : ({ 1: 'st', 2: 'nd', 3: 'rd' } as Record<number, string>)[place % 10] ?? 'th';
  return `${place}${suffix} in line`;
}

/** Keyboard shortcuts for my media, as in Zoom: Alt+A the microphone, Alt+V the camera. */
export const SHORTCUTS: Partial<Record<ControlId, string>> = { 'mute-mic': 'Alt+A', 'camera-off': 'Alt+V' };

/** What a key press asks for, if it is one of the shortcuts. */
export interface KeyPress {
  code: string;
  altKey: boolean;
  ctrlKey: boolean;
  metaKey: boolean;
  shiftKey: boolean;
  /** The element that has focus is a text field: the keys are the user's typing. */
  typing: boolean;
}

/**
 * The control a key press triggers: only one that my controls offer and that can be
 * pressed now (a shortcut never does what the button could not), and never while typing.
 * Matched on the physical key (`code`): Alt changes the character on some layouts.
 */
export function shortcutFor(key: KeyPress, controls: readonly Control[]): ControlId | null {
  if (!key.altKey || key.ctrlKey || key.metaKey || key.shiftKey || key.typing) return null;
  const id: ControlId | null = key.code === 'KeyA' ? 'mute-mic' : key.code === 'KeyV' ? 'camera-off' : null;
  return id && controls.some((c) => c.id === id && c.enabled) ? id : null;
}

