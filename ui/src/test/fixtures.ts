// Sessions as the shell sends them, built per preset so tests read like the stage table.

import type { Capabilities, Participant, Session, StageStatus } from '../lib/types';

export type Preset = 'host' | 'speaker' | 'viewer' | 'spectator';

/** The capabilities the built-in presets give (DESIGN.md, "The stage"). */
export const CAN: Record<Preset, Capabilities> = {
  host: { accept_requests: true, kick: true, request: false, join_directly: true, end_meeting: true, remove: true },
  speaker: { accept_requests: false, kick: false, request: false, join_directly: true, end_meeting: false, remove: false },
  viewer: { accept_requests: false, kick: false, request: true, join_directly: false, end_meeting: false, remove: false },
  spectator: { accept_requests: false, kick: false, request: false, join_directly: false, end_meeting: false, remove: false },
};

export function person(
  user_id: string,
  stage_status: StageStatus = 'OFF_STAGE',
  preset: Preset = 'viewer',
): Participant {
  const on = stage_status === 'ON_STAGE';
  return { user_id, name: user_id.toUpperCase(), preset, stage_status, connected: true, audio: on, video: on };
}

export function session(
  preset: Preset,
  status: StageStatus = 'OFF_STAGE',
  others: Participant[] = [],
  extra: Partial<Session> = {},
): Session {
  const me = person('me', status, preset);
  return {
    meeting_id: 'm1',
    title: 'Standup',
    connection: 'connected',
    me: { ...me, can: CAN[preset] },
    participants: [me, ...others],
    queue: [],
    max_on_stage: 25,
    mic_on: true,
    camera_on: true,
    publishing: { audio: status === 'ON_STAGE', video: status === 'ON_STAGE' },
    ...extra,
  };
}
