import { beforeEach, describe, expect, it, vi } from 'vitest';
import { encodePicture, KIND_RGBA } from './picture';

// Stands in for Tauri's IPC: records every invoke, and keeps the channel's handler so a
// test can push messages as the shell would.
const calls: { cmd: string; args: unknown }[] = [];
let channelHandler: ((m: unknown) => void) | null = null;
vi.mock('@tauri-apps/api/core', () => ({
  invoke: vi.fn(async (cmd: string, args?: unknown) => {
    calls.push({ cmd, args });
    return null;
  }),
  Channel: class {
    constructor(onmessage: (m: unknown) => void) {
      channelHandler = onmessage;
    }
  },
}));
vi.mock('@tauri-apps/api/event', () => ({ listen: vi.fn(async () => () => {}) }));

const { tauriBackend } = await import('./backend');

beforeEach(() => {
  calls.length = 0;
});

describe('tauriBackend', () => {
  it('sends the argument keys Tauri maps to the shell parameters (camelCase)', async () => {
    await tauriBackend.stageGrant(['u1', 'u2']);
    await tauriBackend.stageKick(['u3']);
    await tauriBackend.join({ server_url: 'http://s', token: 't', name: 'Ann' });
    await tauriBackend.join({ invite_link: 'onstage://x' });
    await tauriBackend.setMic(false);
    await tauriBackend.createInvite('speaker', 'Guest');
    expect(calls).toEqual([
      { cmd: 'stage_grant', args: { userIds: ['u1', 'u2'] } },
      { cmd: 'stage_kick', args: { userIds: ['u3'] } },
      { cmd: 'join', args: { serverUrl: 'http://s', token: 't', name: 'Ann' } },
      { cmd: 'join', args: { inviteLink: 'onstage://x', name: undefined } },
      { cmd: 'set_mic', args: { on: false } },
      { cmd: 'create_invite', args: { preset: 'speaker', name: 'Guest' } },
    ]);
  });

  it('decodes channel messages into pictures and reports bad ones', async () => {
    const pictures: string[] = [];
    const bad: string[] = [];
    await tauriBackend.videoChannel(
      (p) => pictures.push(`${p.id} ${p.width}x${p.height}`),
      (e) => bad.push(e),
    );
    expect(calls[0]?.cmd).toBe('video_channel');
    channelHandler!(encodePicture(KIND_RGBA, 'u1', 1, 1, new Uint8Array(4)).buffer);
    channelHandler!(new ArrayBuffer(0)); // what the shell delivers when a fetch failed
    expect(pictures).toEqual(['u1 1x1']);
    expect(bad).toHaveLength(1);
  });
});
