import { beforeEach, describe, expect, it, vi } from 'vitest';
import { remote } from './origin';
import { encodePicture, KIND_RGBA } from './picture';
import { FakeSocket } from './testing/fakeSocket';

// Stands in for Tauri's IPC: records every invoke; `video_socket` answers with a URL.
const calls: { cmd: string; args: unknown }[] = [];
vi.mock('@tauri-apps/api/core', () => ({
  invoke: vi.fn(async (cmd: string, args?: unknown) => {
    calls.push({ cmd, args });
    return cmd === 'video_socket' ? { url: 'ws://127.0.0.1:1/pictures/key' } : null;
  }),
}));

// And the page's WebSocket: the test pushes messages as the shell would.
vi.stubGlobal('WebSocket', FakeSocket);
vi.mock('@tauri-apps/api/event', () => ({ listen: vi.fn(async () => () => {}) }));

const { tauriBackend } = await import('./backend');

beforeEach(() => {
  calls.length = 0;
});

describe('tauriBackend', () => {
  it('sends the argument keys Tauri maps to the shell parameters (camelCase)', async () => {
    await tauriBackend.stageGrant(['u1', 'u2']);
    await tauriBackend.stageKick(['u3']);
    await tauriBackend.join({ server_url: 'http://s', token: 't' });
    await tauriBackend.join({ invite_link: 'onstage://x' });
    await tauriBackend.join({ invite_link: 'onstage://y', name: 'Ann' });
    await tauriBackend.setMic(false);
    await tauriBackend.createInvite('speaker', 'Guest');
    await tauriBackend.createInvite('viewer', 'G', '10.99.0.1');
    await tauriBackend.startEmbedded('Host');
    await tauriBackend.startEmbedded('Host', true);
    await tauriBackend.inviteAddresses();
    await tauriBackend.createRoleLink('viewer');
    await tauriBackend.createRoleLink('speaker', '10.99.0.1');
    expect(calls).toEqual([
      { cmd: 'stage_grant', args: { userIds: ['u1', 'u2'] } },
      { cmd: 'stage_kick', args: { userIds: ['u3'] } },
      // No name: the invitation carries the one the host gave (the shell takes none).
      { cmd: 'join', args: { serverUrl: 'http://s', token: 't' } },
      { cmd: 'join', args: { inviteLink: 'onstage://x' } },
      // A role link: the guest's own name goes with it.
      { cmd: 'join', args: { inviteLink: 'onstage://y', name: 'Ann' } },
      { cmd: 'set_mic', args: { on: false } },
      { cmd: 'create_invite', args: { preset: 'speaker', name: 'Guest' } },
      { cmd: 'create_invite', args: { preset: 'viewer', name: 'G', address: '10.99.0.1' } },
      { cmd: 'start_embedded', args: { name: 'Host' } },
      { cmd: 'start_embedded', args: { name: 'Host', newPorts: true } },
      { cmd: 'invite_addresses', args: undefined },
      { cmd: 'create_role_link', args: { preset: 'viewer' } },
      { cmd: 'create_role_link', args: { preset: 'speaker', address: '10.99.0.1' } },
    ]);
  });

  it("names the host's calls about one participant as the shell does", async () => {
    await tauriBackend.removeParticipant('u1');
    await tauriBackend.muteParticipant('u2');
    await tauriBackend.setPreset('u3', 'host');
    await tauriBackend.revokeRoleLink('viewer');
    await tauriBackend.setTiles([{ user_id: 'u1', width: 640, height: 360 }]);
    expect(calls).toEqual([
      { cmd: 'remove_participant', args: { userId: 'u1' } },
      { cmd: 'mute_participant', args: { userId: 'u2' } },
      { cmd: 'set_preset', args: { userId: 'u3', preset: 'host' } },
      { cmd: 'revoke_role_link', args: { preset: 'viewer' } },
      // The sizes inside keep the wire's field names (serde reads them as they are).
      { cmd: 'set_tiles', args: { tiles: [{ user_id: 'u1', width: 640, height: 360 }] } },
    ]);
  });

  it('opens the socket the shell names and decodes its pictures', async () => {
    const pictures: string[] = [];
    const bad: string[] = [];
    await tauriBackend.videoChannel(
      (p) => pictures.push(`${p.origin.origin === 'remote' ? p.origin.user_id : 'local'} ${p.width}x${p.height}`),
      (e) => bad.push(e),
    );
    expect(calls[0]?.cmd).toBe('video_socket');
    const socket = FakeSocket.all[FakeSocket.all.length - 1]!;
    socket.open();
    expect([socket.url, socket.binaryType]).toEqual(['ws://127.0.0.1:1/pictures/key', 'arraybuffer']);
    socket.deliver(encodePicture(KIND_RGBA, remote('u1'), 1, 1, new Uint8Array(4), 9).buffer);
    socket.deliver(new ArrayBuffer(0));
    expect(pictures).toEqual(['u1 1x1']);
    expect(bad).toHaveLength(1);
    expect(socket.sent).toHaveLength(1);
  });
});
