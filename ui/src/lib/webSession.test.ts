// The browser backend's pure side: the Session it shows (as the desktop shell builds it),
// the invite in the page's address, links of both forms, and media failures in words.

import { describe, expect, it } from 'vitest';
import type { Preset } from '@onstage/web-sdk';
import { errorText } from './errors';
import {
  captureConstraints,
  capabilitiesOf,
  devicesOf,
  mediaErrorOf,
  sessionOf,
  type MeetingView,
} from './webSession';

const viewer: Preset = {
  name: 'viewer',
  stage_enabled: true,
  stage_access: 'CAN_REQUEST',
  accept_stage_requests: false,
  kick_participant: false,
  can_produce_audio: true,
  can_produce_video: true,
};
const host: Preset = { ...viewer, name: 'host', stage_access: 'ALLOWED', accept_stage_requests: true, kick_participant: true };

function meeting(over: Partial<MeetingView> = {}): MeetingView {
  return {
    meetingId: 'm1',
    title: 'Standup',
    userId: 'me',
    preset: viewer,
    self: { user_id: 'me', peer_id: 'p1', name: 'Me', preset: 'viewer', stage_status: 'REQUESTED_TO_JOIN_STAGE', connected: true },
    participants: [
      { user_id: 'me', peer_id: 'p1', name: 'Me', preset: 'viewer', stage_status: 'REQUESTED_TO_JOIN_STAGE', connected: true },
      { user_id: 's', peer_id: 'p2', name: 'Speaker', preset: 'speaker', stage_status: 'ON_STAGE', connected: true },
      { user_id: 'o', peer_id: 'p3', name: 'Off', preset: 'viewer', stage_status: 'OFF_STAGE', connected: true },
    ],
    publishing: new Map([
      ['s', { audio: true, video: false }],
      ['o', { audio: true, video: true }],
    ]),
    connectionState: 'connected',
    endReason: null,
    maxOnStage: 25,
    accessRequests: [{ user_id: 'me', name: 'Me', requested_at: 3 }],
    placeInQueue: 1,
    ...over,
  };
}

describe('the session a browser shows', () => {
  it('tells_what_each_participant_publishes_only_while_on_stage', () => {
    const s = sessionOf(meeting(), { mic: true, camera: false, publishing: { audio: false, video: false } });
    const byId = Object.fromEntries(s.participants.map((p) => [p.user_id, p]));
    expect(byId['s']).toMatchObject({ audio: true, video: false });
    expect(byId['o'], 'off stage nothing is forwarded').toMatchObject({ audio: false, video: false });
    expect(s.me).toMatchObject({ user_id: 'me', queue_place: 1, stage_status: 'REQUESTED_TO_JOIN_STAGE' });
    expect(s.camera_on).toBe(false);
    expect(s.queue, 'a viewer is not shown the queue').toEqual([]);
    expect(s.end_reason).toBeUndefined();
  });

  it('gives_a_host_the_queue_and_its_powers', () => {
    const s = sessionOf(meeting({ preset: host, placeInQueue: null }), null);
    expect(s.queue).toEqual([{ user_id: 'me', name: 'Me', requested_at: 3 }]);
    expect(s.me.can).toEqual({ accept_requests: true, kick: true, request: false, join_directly: true, end_meeting: true, remove: true });
    expect('queue_place' in s.me).toBe(false);
  });

  it('names_why_the_meeting_ended_only_for_reasons_the_ui_tells', () => {
    expect(sessionOf(meeting({ connectionState: 'disconnected', endReason: 'removed' }), null).end_reason).toBe('removed');
    expect(sessionOf(meeting({ connectionState: 'disconnected', endReason: 'too_slow' }), null).end_reason).toBeUndefined();
  });

  it('tells_the_reception_of_those_received_on_stage_only', () => {
    const reception = new Map([
      ['s', 'fair' as const],
      ['o', 'poor' as const],
      ['me', 'good' as const],
    ]);
    const s = sessionOf(meeting(), { mic: true, camera: true, publishing: { audio: false, video: false }, reception });
    const byId = Object.fromEntries(s.participants.map((p) => [p.user_id, p]));
    expect(byId['s']?.reception).toBe('fair');
    expect(byId['o'], 'off stage: a level left from before').not.toHaveProperty('reception');
    expect(byId['me']).not.toHaveProperty('reception');
    expect(s.me).not.toHaveProperty('reception');
    // Not judged yet, or no media at all: no field.
    const none = sessionOf(meeting(), { mic: true, camera: true, publishing: { audio: false, video: false }, reception: new Map() });
    expect(none.participants.some((p) => 'reception' in p)).toBe(false);
    expect(sessionOf(meeting(), null).participants.some((p) => 'reception' in p)).toBe(false);
  });

  it('a_disabled_stage_allows_no_request', () => {
    expect(capabilitiesOf({ ...viewer, stage_enabled: false }).request).toBe(false);
  });
});

describe('media in a browser', () => {
  it('says_a_refused_permission_is_the_browsers_setting', () => {
    const err = mediaErrorOf({ code: 'permission_denied', message: 'x' });
    expect(err.code).toBe('device_denied');
    expect(errorText(err)).toMatch(/browser was not allowed/);
    expect(mediaErrorOf({ code: 'device_not_found', message: 'x' }, 'camera')).toEqual({ code: 'device_not_found', message: 'x', device: 'camera' });
    expect(errorText(mediaErrorOf({ code: 'device_busy', message: 'x' }, 'microphone'))).toBe('The microphone is in use by another app');
  });

  it('lists_devices_with_names_before_a_permission', () => {
    const d = devicesOf([
      { kind: 'videoinput', deviceId: 'c1', label: '' },
      { kind: 'audioinput', deviceId: 'm1', label: 'Headset' },
      { kind: 'audioinput', deviceId: '', label: '' },
      { kind: 'audiooutput', deviceId: 'o1', label: '' },
    ]);
    expect(d).toEqual({
      cameras: [{ id: 'c1', name: 'Camera 1' }],
      microphones: [{ id: 'm1', name: 'Headset' }],
      speakers: [{ id: 'o1', name: 'Speaker 1' }],
    });
  });

  it('asks_for_the_chosen_devices', () => {
    const c = captureConstraints({ camera: 'c1' }, { audio: false, video: true });
    expect(c.audio).toBe(false);
    expect(c.video).toMatchObject({ deviceId: { exact: 'c1' } });
    expect(captureConstraints({ microphone: 'm1' }).audio).toEqual({ deviceId: { exact: 'm1' } });
  });
});
