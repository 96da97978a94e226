import { describe, expect, it } from 'vitest';
import {
  controlFocusAfter,
  decidable,
  placeText,
  shortcutFor,
  MAX_BATCH_IDS,
  canRejoin,
  disconnectedText,
  eventNotice,
  confirmation,
  everyone,
  hostLayout,
  hostView,
  indicatorText,
  isDestructiveControl,
  myStageView,
  queueOldestFirst,
  requestFromEvent,
  stageFull,
  stageTiles,
  stableOrder,
  type ControlId,
} from './stage';
import type { AudioLevel, EndReason, StageStatus } from './types';
import { LOCAL_KEY, originKey, userKey } from './origin';
import { person, session, type Preset } from '../test/fixtures';

const ids = (preset: Preset, status: StageStatus): ControlId[] =>
  myStageView(session(preset, status)).controls.map((c) => c.id);

describe('my controls, per preset and status', () => {
  it('viewer off stage can request to join, nothing else', () => {
    expect(ids('viewer', 'OFF_STAGE')).toEqual(['request-access']);
    const v = myStageView(session('viewer', 'OFF_STAGE'));
    expect(v.controls[0]).toMatchObject({ label: 'Request to join', enabled: true });
    expect(v.indicator).toBe('Viewer');
    expect(v.greenRoom).toBe(false);
  });

  it('a pending request can only be cancelled', () => {
    for (const preset of ['viewer', 'spectator', 'host', 'speaker'] as const) {
      expect(ids(preset, 'REQUESTED_TO_JOIN_STAGE')).toEqual(['cancel-request']);
    }
    expect(myStageView(session('viewer', 'REQUESTED_TO_JOIN_STAGE')).indicator).toBe('Requested');
  });

  it('accepted: green room with toggles, Join stage and Decline', () => {
    for (const preset of ['viewer', 'spectator', 'host', 'speaker'] as const) {
      const v = myStageView(session(preset, 'ACCEPTED_TO_JOIN_STAGE'));
      expect(v.greenRoom).toBe(true);
      expect(v.indicator).toBe('Invited');
      expect(v.controls.map((c) => c.id)).toEqual(['mute-mic', 'camera-off', 'join-stage', 'decline']);
      expect(v.controls.every((c) => c.enabled)).toBe(true);
    }
  });

  it('on stage: mute, camera off, leave', () => {
    for (const preset of ['viewer', 'spectator', 'host', 'speaker'] as const) {
      const v = myStageView(session(preset, 'ON_STAGE'));
      expect(v.controls.map((c) => c.id)).toEqual(['mute-mic', 'camera-off', 'leave-stage']);
      expect(v.indicator).toBe('On stage');
      expect(v.greenRoom).toBe(false);
    }
  });

  it('host and speaker (stage_access ALLOWED) join directly without asking', () => {
    expect(ids('host', 'OFF_STAGE')).toEqual(['join-stage']);
    expect(ids('speaker', 'OFF_STAGE')).toEqual(['join-stage']);
    expect(myStageView(session('speaker', 'OFF_STAGE')).indicator).toBe('Off stage');
    expect(myStageView(session('host', 'OFF_STAGE')).indicator).toBe('Off stage');
  });

  it('a spectator cannot request, but can accept an invitation', () => {
    const off = myStageView(session('spectator', 'OFF_STAGE'));
    expect(off.controls).toEqual([]);
    expect(off.hint).toMatch(/host can invite you/);
    expect(ids('spectator', 'ACCEPTED_TO_JOIN_STAGE')).toContain('join-stage');
    expect(ids('spectator', 'ACCEPTED_TO_JOIN_STAGE')).toContain('decline');
  });

  it('toggles say what pressing them does and report the muted state', () => {
    const on = myStageView(session('speaker', 'ON_STAGE'));
    expect(on.controls.find((c) => c.id === 'mute-mic')).toMatchObject({ label: 'Mute mic', pressed: false });
    expect(on.controls.find((c) => c.id === 'camera-off')).toMatchObject({ label: 'Camera off', pressed: false });
    const muted = myStageView(session('speaker', 'ON_STAGE', [], { mic_on: false, camera_on: false }));
    expect(muted.controls.find((c) => c.id === 'mute-mic')).toMatchObject({ label: 'Unmute mic', pressed: true });
    expect(muted.controls.find((c) => c.id === 'camera-off')).toMatchObject({ label: 'Camera on', pressed: true });
  });

  it('nothing is clickable while reconnecting', () => {
    for (const status of ['OFF_STAGE', 'REQUESTED_TO_JOIN_STAGE', 'ACCEPTED_TO_JOIN_STAGE', 'ON_STAGE'] as const) {
      const v = myStageView(session('viewer', status, [], { connection: 'reconnecting' }));
      expect(v.controls.length).toBeGreaterThan(0);
      expect(v.controls.every((c) => !c.enabled)).toBe(true);
    }
  });

  it('Join stage is disabled when the stage is full, with the reason', () => {
    const full = session('speaker', 'OFF_STAGE', [person('a', 'ON_STAGE'), person('b', 'ON_STAGE')], {
      max_on_stage: 2,
    });
    expect(stageFull(full)).toBe(true);
    const v = myStageView(full);
    expect(v.controls).toEqual([{ id: 'join-stage', label: 'Join stage', enabled: false }]);
    expect(v.hint).toBe('The stage is full');
    const invited = myStageView({ ...full, me: { ...full.me, stage_status: 'ACCEPTED_TO_JOIN_STAGE' } });
    expect(invited.controls.find((c) => c.id === 'join-stage')?.enabled).toBe(false);
    expect(invited.controls.find((c) => c.id === 'decline')?.enabled).toBe(true);
  });

  it('being on a full stage myself does not count as full', () => {
    const s = session('speaker', 'ON_STAGE', [person('a', 'ON_STAGE')], { max_on_stage: 2 });
    expect(stageFull(s)).toBe(false);
  });

  it('indicator text for every status', () => {
    expect(indicatorText('OFF_STAGE')).toBe('Viewer');
    expect(indicatorText('REQUESTED_TO_JOIN_STAGE')).toBe('Requested');
    expect(indicatorText('ACCEPTED_TO_JOIN_STAGE')).toBe('Invited');
    expect(indicatorText('ON_STAGE')).toBe('On stage');
  });
});

describe('the host panel', () => {
  it('is absent for presets that can neither accept nor kick', () => {
    for (const preset of ['speaker', 'viewer', 'spectator'] as const) {
      expect(hostView(session(preset))).toBeNull();
    }
  });

  it('lists the queue oldest first, whatever order the shell sent', () => {
    const s = session('host', 'ON_STAGE', [], {
      queue: [
        { user_id: 'late', name: 'Late', requested_at: 300 },
        { user_id: 'first', name: 'First', requested_at: 100 },
        { user_id: 'mid', name: 'Mid', requested_at: 200 },
      ],
    });
    expect(hostView(s)?.queue?.map((r) => r.user_id)).toEqual(['first', 'mid', 'late']);
  });

  it('keeps the shell order for requests with the same time', () => {
    const q = [
      { user_id: 'b', name: 'B', requested_at: 5 },
      { user_id: 'a', name: 'A', requested_at: 5 },
      { user_id: 'z', name: 'Z', requested_at: 1 },
    ];
    expect(queueOldestFirst(q).map((r) => r.user_id)).toEqual(['z', 'b', 'a']);
    expect(q.map((r) => r.user_id)).toEqual(['b', 'a', 'z']); // input untouched
  });

  it('offers per status: Invite when off stage, Remove when on stage or accepted, nothing when requested', () => {
    const s = session('host', 'ON_STAGE', [
      person('off', 'OFF_STAGE'),
      person('req', 'REQUESTED_TO_JOIN_STAGE'),
      person('acc', 'ACCEPTED_TO_JOIN_STAGE'),
      person('on', 'ON_STAGE', 'speaker'),
      person('spec', 'OFF_STAGE', 'spectator'),
    ]);
    const rows = Object.fromEntries(hostView(s)!.participants.map((r) => [r.user_id, r]));
    // Everyone may also be made host or removed from the meeting by a host.
    const always = ['make-host', 'remove'];
    expect(rows['off']).toMatchObject({ actions: ['invite', ...always], statusText: 'Off stage' });
    expect(rows['req']).toMatchObject({ actions: always, statusText: 'Requested' });
    expect(rows['acc']).toMatchObject({ actions: ['kick', ...always], statusText: 'Invited' });
    // A speaker on stage who is heard may be muted.
    expect(rows['on']).toMatchObject({ actions: ['mute', 'kick', ...always], statusText: 'On stage' });
    // Spectators cannot ask, but the host may still invite them.
    expect(rows['spec']?.actions).toEqual(['invite', ...always]);
  });

  it('offers Mute only for someone heard, Make host only for who is not one', () => {
    const silent = { ...person('quiet', 'ON_STAGE', 'speaker'), audio: false };
    const s = session('host', 'ON_STAGE', [silent, person('cohost', 'OFF_STAGE', 'host')]);
    const rows = Object.fromEntries(hostView(s)!.participants.map((r) => [r.user_id, r]));
    expect(rows['quiet']?.actions).toEqual(['kick', 'make-host', 'remove']);
    expect(rows['cohost']?.actions).toEqual(['invite', 'remove']);
  });

  it('asks before handing over the host role or removing someone, naming them', () => {
    expect(confirmation('make-host', 'Vera')).toEqual({
      question: 'Make Vera a host? They can then run the stage, remove people and end the meeting.',
      confirm: 'Make host',
    });
    expect(confirmation('remove', 'Vera')).toEqual({
      question: 'Remove Vera from the meeting? Their invitation stops working.',
      confirm: 'Remove',
    });
  });

  it('never offers actions on my own row', () => {
    for (const status of ['OFF_STAGE', 'ACCEPTED_TO_JOIN_STAGE', 'ON_STAGE'] as const) {
      const me = hostView(session('host', status))!.participants.find((r) => r.isMe);
      expect(me).toMatchObject({ user_id: 'me', actions: [] });
    }
  });

  it('a kick-only preset can remove but sees no queue and cannot invite', () => {
    const s = session('speaker', 'ON_STAGE', [person('on', 'ON_STAGE'), person('off')]);
    s.me.can = { ...s.me.can, kick: true };
    const v = hostView(s)!;
    expect(v.queue).toBeNull();
    expect(v.participants.find((r) => r.user_id === 'on')?.actions).toEqual(['mute', 'kick']);
    expect(v.participants.find((r) => r.user_id === 'off')?.actions).toEqual([]);
  });

  it('is disabled while reconnecting', () => {
    expect(hostView(session('host', 'OFF_STAGE', [], { connection: 'reconnecting' }))?.enabled).toBe(false);
    expect(hostView(session('host'))?.enabled).toBe(true);
  });
});

describe('the host panel layout', () => {
  const ids = (rows: { user_id: string }[]) => rows.map((r) => r.user_id);
  const queued = (user_id: string, requested_at: number) => ({ user_id, name: user_id, requested_at });

  it('groups stage, then requests, then audience', () => {
    const s = session('host', 'ON_STAGE', [
      person('off', 'OFF_STAGE'),
      person('req', 'REQUESTED_TO_JOIN_STAGE'),
      person('acc', 'ACCEPTED_TO_JOIN_STAGE'),
      person('on', 'ON_STAGE', 'speaker'),
    ], { queue: [queued('req', 5)] });
    const l = hostLayout(hostView(s)!);
    expect(ids(l.stage)).toEqual(['me', 'acc', 'on']);
    expect(l.requests).toEqual([{ user_id: 'req', name: 'req', requested_at: 5, connected: true, decide: true }]);
    expect(ids(l.audience)).toEqual(['off']);
    expect(l.order).toEqual(['me', 'acc', 'on', 'req', 'off']);
  });

  it('keeps rows where they were as people join, whatever order the shell lists them in', () => {
    const first = session('host', 'ON_STAGE', [person('b'), person('d'), person('s1', 'ON_STAGE')]);
    const before = hostLayout(hostView(first)!);
    // Newcomers, and a shell that now lists everyone in another order.
    const later = session('host', 'ON_STAGE', [
      person('a'), person('s0', 'ON_STAGE'), person('d'), person('c'), person('s1', 'ON_STAGE'), person('b'),
    ]);
    const after = hostLayout(hostView(later)!, before.order);
    expect(ids(after.stage)).toEqual(['me', 's1', 's0']);
    expect(ids(after.audience)).toEqual(['b', 'd', 'a', 'c']);
  });

  it('adds a new request after the ones already waiting', () => {
    const s = (queue: ReturnType<typeof queued>[]) =>
      session('host', 'ON_STAGE', queue.map((q) => person(q.user_id, 'REQUESTED_TO_JOIN_STAGE')), { queue });
    const before = hostLayout(hostView(s([queued('x', 10), queued('y', 20)]))!);
    const after = hostLayout(hostView(s([queued('z', 30), queued('y', 20), queued('x', 10)]))!, before.order);
    expect(ids(after.requests)).toEqual(['x', 'y', 'z']);
  });

  it('without the queue, someone asking is in Requests with nothing to decide', () => {
    const s = session('speaker', 'ON_STAGE', [person('req', 'REQUESTED_TO_JOIN_STAGE')]);
    s.me.can = { ...s.me.can, kick: true };
    const l = hostLayout(hostView(s)!);
    expect(l.requests).toEqual([{ user_id: 'req', name: 'REQ', requested_at: null, connected: true, decide: false }]);
    expect(ids(l.audience)).toEqual([]);
  });

  it('Accept all and Deny all act on every request I may decide, oldest first, one call at most', () => {
    const s = session('host', 'ON_STAGE', [
      person('late', 'REQUESTED_TO_JOIN_STAGE'),
      person('early', 'REQUESTED_TO_JOIN_STAGE'),
      person('unqueued', 'REQUESTED_TO_JOIN_STAGE'),
    ], { queue: [queued('late', 20), queued('early', 10)] });
    expect(decidable(hostLayout(hostView(s)!).requests)).toEqual(['early', 'late']);
    const many = Array.from({ length: MAX_BATCH_IDS + 5 }, (_, i) => ({
      user_id: `u${i}`, name: '', requested_at: i, connected: true, decide: true,
    }));
    expect(decidable(many)).toHaveLength(MAX_BATCH_IDS);
    expect(decidable(many)[0]).toBe('u0');
  });

  it('stable order: earlier rows first in their earlier order, then newcomers as given', () => {
    const rows = ['n1', 'b', 'n2', 'a'].map((user_id) => ({ user_id }));
    expect(ids(stableOrder(rows, ['a', 'gone', 'b']))).toEqual(['a', 'b', 'n1', 'n2']);
    expect(ids(stableOrder(rows, []))).toEqual(['n1', 'b', 'n2', 'a']);
  });
});

describe('focus after my stage controls', () => {
  const controls = (preset: Preset, status: StageStatus) => myStageView(session(preset, status)).controls;

  it('stays on a toggle that is still there', () => {
    expect(controlFocusAfter('mute-mic', controls('speaker', 'ON_STAGE'))).toBe('mute-mic');
  });

  it('never lands on a destructive control', () => {
    // Request to join becomes Cancel request: focus goes to the section instead.
    expect(controlFocusAfter('request-access', controls('viewer', 'REQUESTED_TO_JOIN_STAGE'))).toBeNull();
    // Join stage gives the toggles and Leave stage: the mic toggle, not Leave stage.
    expect(controlFocusAfter('join-stage', controls('viewer', 'ON_STAGE'))).toBe('mute-mic');
    expect(controlFocusAfter('leave-stage', controls('speaker', 'OFF_STAGE'))).toBe('join-stage');
    for (const id of ['leave-stage', 'decline', 'cancel-request'] as const) expect(isDestructiveControl(id)).toBe(true);
  });
});

describe('participants and tiles', () => {
  it('lists me once, first, with my own status even if my entry is stale', () => {
    const s = session('viewer', 'ON_STAGE', [person('a')]);
    s.participants[0] = { ...s.participants[0]!, stage_status: 'OFF_STAGE' };
    const all = everyone(s);
    expect(all.map((p) => p.user_id)).toEqual(['me', 'a']);
    expect(all[0]?.stage_status).toBe('ON_STAGE');
  });

  it('adds me when the shell lists only the others', () => {
    const s = session('viewer', 'OFF_STAGE', [person('a')]);
    s.participants = s.participants.filter((p) => p.user_id !== 'me');
    expect(everyone(s).map((p) => p.user_id)).toEqual(['me', 'a']);
  });

  it('has a tile for everyone on stage only, with their mute state', () => {
    const muted = { ...person('m', 'ON_STAGE'), audio: false, video: false };
    const s = session('viewer', 'OFF_STAGE', [person('a', 'ON_STAGE'), person('b', 'ACCEPTED_TO_JOIN_STAGE'), muted]);
    const tiles = stageTiles(s);
    expect(tiles.map((t) => t.user_id)).toEqual(['a', 'm']);
    expect(tiles[1]).toMatchObject({ audio: false, video: false, isMe: false, pictureKeys: ['user:m'], levelKey: 'user:m' });
  });

  it('my tile shows my local camera and my own switches', () => {
    const s = session('speaker', 'ON_STAGE', [], { mic_on: false, camera_on: true });
    const [mine] = stageTiles(s);
    expect(mine).toMatchObject({ isMe: true, audio: false, video: true, pictureKeys: ['local', 'user:me'], levelKey: 'local' });
  });

  // While reconnecting nothing is published, though I changed nothing: my tile must not
  // say "Camera off · Muted".
  it('my tile keeps my switches while reconnecting', () => {
    const s = session('speaker', 'ON_STAGE', [], {
      connection: 'reconnecting',
      mic_on: true,
      camera_on: true,
      publishing: { audio: false, video: false },
    });
    const [mine] = stageTiles(s);
    expect(mine).toMatchObject({ isMe: true, audio: true, video: true });
  });

  it('a participant whose id is "local" is shown as themselves, not as my camera', () => {
    const s = session('speaker', 'ON_STAGE', [person('local', 'ON_STAGE')]);
    const tiles = stageTiles(s);
    const theirs = tiles.find((t) => t.user_id === 'local');
    const mine = tiles.find((t) => t.isMe);
    expect(theirs).toMatchObject({ isMe: false, pictureKeys: [userKey('local')], levelKey: userKey('local') });
    expect(mine).toMatchObject({ pictureKeys: [LOCAL_KEY, userKey('me')], levelKey: LOCAL_KEY });
    // Their level and my microphone's are filed apart.
    const levels: Record<string, number> = {};
    levels[originKey({ origin: 'remote', user_id: 'local', level: 0.9 } as AudioLevel)] = 0.9;
    levels[originKey({ origin: 'local', level: 0.1 } as AudioLevel)] = 0.1;
    expect(levels[theirs!.levelKey]).toBe(0.9);
    expect(levels[mine!.levelKey]).toBe(0.1);
  });
});

describe('reception on the tiles', () => {
  const withReception = (p: ReturnType<typeof person>, reception: 'good' | 'fair' | 'poor') => ({ ...p, reception });

  it('shows the reception of someone else on stage', () => {
    const s = session('viewer', 'OFF_STAGE', [withReception(person('a', 'ON_STAGE'), 'poor'), person('b', 'ON_STAGE')]);
    const tiles = stageTiles(s);
    expect(tiles.find((t) => t.user_id === 'a')?.reception).toBe('poor');
    // Not yet judged: no mark, not a guess.
    expect(tiles.find((t) => t.user_id === 'b')).not.toHaveProperty('reception');
  });

  it('shows none on my own tile, whatever the shell lists', () => {
    const s = session('speaker', 'ON_STAGE', [person('a', 'ON_STAGE')]);
    s.participants[0] = withReception(s.participants[0]!, 'good');
    s.me = { ...s.me, reception: 'fair' };
    const mine = stageTiles(s).find((t) => t.isMe);
    expect(mine).toBeDefined();
    expect(mine).not.toHaveProperty('reception');
  });

  it('has no tile, so no mark, for someone off stage', () => {
    const s = session('viewer', 'ON_STAGE', [withReception(person('a', 'OFF_STAGE'), 'poor')]);
    expect(stageTiles(s).map((t) => t.user_id)).toEqual(['me']);
  });

  it('shows none once the session is over: nothing is received', () => {
    const s = session('viewer', 'OFF_STAGE', [withReception(person('a', 'ON_STAGE'), 'good')], { connection: 'disconnected' });
    expect(stageTiles(s)[0]).not.toHaveProperty('reception');
  });
});

describe('meeting events', () => {
  const request = { user_id: 'v1', name: 'Vera', requested_at: 42 };

  it('reads the request of newStageRequest', () => {
    expect(requestFromEvent({ event: 'newStageRequest', request })).toEqual(request);
    expect(requestFromEvent({ event: 'newStageRequest', request: null })).toBeNull();
    expect(requestFromEvent({ event: 'newStageRequest', request: { name: 'x' } })).toBeNull();
    expect(requestFromEvent({ event: 'stageStatusUpdate', status: 'ON_STAGE' })).toBeNull();
  });

  it('turns the events that matter into notices', () => {
    expect(eventNotice({ event: 'newStageRequest', request })?.text).toBe('Vera asks to join the stage');
    expect(eventNotice({ event: 'stageRequestApproved', by: 'h' })?.text).toBe('You are invited to the stage');
    // Told only to the one it is about.
    const muted = { event: 'participantMuted', user_id: 'me', by: 'h' };
    expect(eventNotice(muted, 'me')?.text).toBe('A host muted your microphone. Unmute when you are ready.');
    expect(eventNotice(muted, 'other')).toBeNull();
    const host = { event: 'presetChanged', user_id: 'me', preset: 'host', by: 'h' };
    expect(eventNotice(host, 'me')?.text).toBe('You are now a host of this meeting');
    expect(eventNotice({ ...host, preset: 'viewer' }, 'me')?.text).toBe('Your role is now viewer');
    expect(eventNotice(host, 'other')).toBeNull();
    expect(eventNotice({ event: 'stageRequestRejected', by: 'h' })?.text).toBe(
      'Your request to join the stage was declined',
    );
    expect(eventNotice({ event: 'connectionStateUpdate', state: 'connected', resumed: false })?.tone).toBe('error');
    expect(eventNotice({ event: 'connectionStateUpdate', state: 'connected', resumed: true })).toBeNull();
    expect(eventNotice({ event: 'participantJoined', participant: {} })).toBeNull();
  });
});

describe('the disconnected banner', () => {
  it('says why the meeting ended, in words, for every reason the server gives', () => {
    const ended = (reason?: string) =>
      disconnectedText(
        session('viewer', 'OFF_STAGE', [], {
          connection: 'disconnected',
          // A reason this UI does not know yet must still read sensibly.
          end_reason: reason as EndReason | undefined,
        }),
      );
    expect(ended('replaced')).toContain('another window or device');
    expect(ended('revoked')).toContain('replaced by a newer one');
    expect(ended('removed')).toContain('removed you');
    expect(ended('meeting_deleted')).toContain('deleted');
    expect(ended('meeting_ended')).toBe('The host ended the meeting.');
    expect(ended('left')).toBe('You left the meeting.');
    expect(ended()).toBe('You are disconnected from the meeting.');
    expect(ended('something_new')).toBe('You are disconnected from the meeting.');
  });

  it('shows no live picture or sound on any tile once the session is over here', () => {
    const on = (connection: 'connected' | 'disconnected') =>
      stageTiles(
        session('speaker', 'ON_STAGE', [{ ...person('s2', 'ON_STAGE', 'speaker'), audio: true, video: true }], {
          connection,
          camera_on: true,
          mic_on: true,
          end_reason: connection === 'disconnected' ? 'replaced' : undefined,
        }),
      ).map((t) => [t.user_id, t.audio, t.video]);
    expect(on('connected')).toEqual([
      ['me', true, true],
      ['s2', true, true],
    ]);
    expect(on('disconnected')).toEqual([
      ['me', false, false],
      ['s2', false, false],
    ]);
  });

  it('offers Rejoin only while the way in still works', () => {
    const over = (reason?: string, connection: 'disconnected' | 'connected' | 'reconnecting' = 'disconnected') =>
      canRejoin(session('viewer', 'OFF_STAGE', [], { connection, end_reason: reason as EndReason | undefined }));
    // Another window took over, the host ended it, or the connection gave up: the link works.
    expect(over('replaced')).toBe(true);
    expect(over('meeting_ended')).toBe(true);
    expect(over()).toBe(true);
    expect(over('something_new')).toBe(true);
    // The invitation no longer works, or leaving was meant.
    expect(over('revoked')).toBe(false);
    expect(over('removed')).toBe(false);
    expect(over('meeting_deleted')).toBe(false);
    expect(over('left')).toBe(false);
    // Not over: nothing to rejoin.
    expect(over(undefined, 'connected')).toBe(false);
    expect(over(undefined, 'reconnecting')).toBe(false);
  });
});

describe('my place in the queue', () => {
  it('is said in words, kept to what the shell says', () => {
    expect(['next in line', '2nd in line', '3rd in line', '4th in line', '11th in line', '12th in line', '21st in line', '23rd in line', '112th in line'])
      .toEqual([1, 2, 3, 4, 11, 12, 21, 23, 112].map(placeText));
    const s = session('viewer', 'REQUESTED_TO_JOIN_STAGE', []);
    expect(myStageView(s).hint).toBe('Waiting for a host to let you in');
    s.me.queue_place = 2;
    expect(myStageView(s).hint).toBe('Waiting for a host to let you in · 2nd in line');
  });
});

describe('keyboard shortcuts for my media', () => {
  const key = (code: string, more: Partial<Parameters<typeof shortcutFor>[0]> = {}) => ({
    code, altKey: true, ctrlKey: false, metaKey: false, shiftKey: false, typing: false, ...more,
  });

  it('Alt+A and Alt+V press the mic and camera toggles when they are offered', () => {
    const on = myStageView(session('speaker', 'ON_STAGE', [])).controls;
    expect(shortcutFor(key('KeyA'), on)).toBe('mute-mic');
    expect(shortcutFor(key('KeyV'), on)).toBe('camera-off');
    expect(shortcutFor(key('KeyX'), on)).toBeNull();
    expect(shortcutFor(key('KeyA', { altKey: false }), on)).toBeNull();
    expect(shortcutFor(key('KeyA', { ctrlKey: true }), on)).toBeNull();
  });

  it('never while typing, and never for a toggle that is not there or not enabled', () => {
    const on = myStageView(session('speaker', 'ON_STAGE', [])).controls;
    expect(shortcutFor(key('KeyA', { typing: true }), on)).toBeNull();
    const off = myStageView(session('viewer', 'OFF_STAGE', [])).controls;
    expect(shortcutFor(key('KeyA'), off)).toBeNull();
    const reconnecting = session('speaker', 'ON_STAGE', []);
    reconnecting.connection = 'reconnecting';
    expect(shortcutFor(key('KeyV'), myStageView(reconnecting).controls)).toBeNull();
  });
});

