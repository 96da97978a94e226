// DEV FAKE — for `npm run dev` in a plain browser only. backend.ts loads it when there is
// no Tauri; it imitates the shell closely enough to click through every screen (a host
// with a queue, a viewer that gets granted, moving test pictures, mic levels). It is not a
// model of the room: behaviour is tested against stage.ts, never against this.

import type { Backend } from './backend';
import { serverUrlFor } from './invite';
import { Listeners } from './listeners';
import { LOCAL, originKey, remote, type Origin } from './origin';
import { encodePicture, KIND_RGBA, parsePicture } from './picture';
import type {
  AudioLevel,
  BackendError,
  DeviceKind,
  ErrorCode,
  Invite,
  MeetingEvent,
  Participant,
  Reception,
  Session,
  StageStatus,
} from './types';
import { appLinkFor, pageLinkFor, type PageInvite } from './links';

const FINGERPRINT = `sha256:${'ab'.repeat(32)}`;
const PORT = 7000;

/** An invite as the shell answers one: the app's link (with its pin) and the browser's. */
function fakeInvite(invite: PageInvite, address = '192.168.1.20'): Invite {
  const server = serverUrlFor(address, PORT);
  return {
    server_url: server,
    token: 'token' in invite ? invite.token : invite.invite,
    link: `${appLinkFor(server, invite)}&fp=${FINGERPRINT}`,
    web_link: pageLinkFor(server, invite),
    address,
  };
}

/** Each fake's reception once on stage, so every mark can be seen: invite Bo, let Cy in. */
const FAKE_RECEPTION: Record<string, Reception> = { ada: 'good', bo: 'fair', cy: 'poor', dee: 'fair' };

function fakeParticipant(
  user_id: string,
  name: string,
  preset: string,
  stage_status: StageStatus,
): Participant {
  const on = stage_status === 'ON_STAGE';
  const p: Participant = { user_id, name, preset, stage_status, connected: true, audio: on, video: on };
  const reception = FAKE_RECEPTION[user_id];
  if (on && reception) p.reception = reception;
  return p;
}

/** A moving colour gradient, so a canvas visibly updates. */
function testPattern(origin: Origin, frame: number): Uint8Array {
  const id = originKey(origin);
  const w = 160;
  const h = 90;
  const px = new Uint8Array(w * h * 4);
  const hue = [...id].reduce((a, c) => a + c.charCodeAt(0), 0) % 255;
  for (let y = 0; y < h; y++) {
    for (let x = 0; x < w; x++) {
      const i = (y * w + x) * 4;
      px[i] = (x * 2 + frame * 3) % 256;
      px[i + 1] = (y * 3 + hue) % 256;
      px[i + 2] = (hue + frame) % 256;
      px[i + 3] = 255;
    }
  }
  return encodePicture(KIND_RGBA, origin, w, h, px);
}

export function createDevFakeBackend(): Backend {
  // `?nodevices` in the address shows the "No camera" / "No microphone" states.
  const noDevices = new URLSearchParams(window.location.search).has('nodevices');
  let session: Session | null = null;
  let previewOn = false;
  const sessionListeners = new Listeners<Session>();
  const eventListeners = new Listeners<MeetingEvent>();
  const levelListeners = new Listeners<AudioLevel>();

  const later = (ms: number, f: () => void) => window.setTimeout(f, ms);
  const fail = (code: ErrorCode, message: string, device?: DeviceKind): BackendError =>
    device ? { code, message, device } : { code, message };

  function live(): Session {
    if (!session) throw fail('invalid_state', 'not in a meeting');
    return session;
  }
  function changed() {
    const s = live();
    const me = s.participants.find((p) => p.user_id === s.me.user_id);
    if (me) Object.assign(me, { stage_status: s.me.stage_status, ...s.publishing });
    s.queue = s.participants
      .filter((p) => p.stage_status === 'REQUESTED_TO_JOIN_STAGE')
      .map((p, i) => ({ user_id: p.user_id, name: p.name, requested_at: Date.now() - 1000 * (9 - i) }));
    sessionListeners.emit(structuredClone(s));
  }
  function setMine(status: StageStatus): StageStatus {
    const s = live();
    s.me.stage_status = status;
    s.publishing = { audio: status === 'ON_STAGE' && s.mic_on, video: status === 'ON_STAGE' && s.camera_on };
    changed();
    return status;
  }
  function setTheirs(ids: string[], status: StageStatus) {
    for (const p of live().participants.filter((p) => ids.includes(p.user_id))) {
      // Off stage nobody is received: no reception left behind.
      delete p.reception;
      Object.assign(p, fakeParticipant(p.user_id, p.name, p.preset, status));
    }
    changed();
  }
  function newSession(name: string, host: boolean): Session {
    const me = fakeParticipant('me', name || 'You', host ? 'host' : 'viewer', 'OFF_STAGE');
    return {
      meeting_id: 'dev-meeting',
      title: 'Dev meeting',
      connection: 'connected',
      me: { ...me, can: { accept_requests: host, kick: host, request: !host, join_directly: host, end_meeting: host, remove: host } },
      participants: [
        me,
        fakeParticipant('ada', 'Ada (dev fake)', 'speaker', 'ON_STAGE'),
        fakeParticipant('bo', 'Bo (dev fake)', 'viewer', 'OFF_STAGE'),
        fakeParticipant('cy', 'Cy (dev fake)', 'viewer', 'REQUESTED_TO_JOIN_STAGE'),
      ],
      queue: [],
      max_on_stage: 25,
      mic_on: true,
      camera_on: true,
      publishing: { audio: false, video: false },
    };
  }
  function started(s: Session): Session {
    session = s;
    changed();
    if (s.me.can.accept_requests) {
      later(6000, () => {
        if (session !== s) return;
        s.participants.push(fakeParticipant('dee', 'Dee (dev fake)', 'viewer', 'REQUESTED_TO_JOIN_STAGE'));
        changed();
        const request = s.queue.find((r) => r.user_id === 'dee');
        eventListeners.emit({ event: 'newStageRequest', request });
      });
    }
    return structuredClone(s);
  }

  return {
    kind: 'desktop',
    onStreams: async () => () => {},
    appInfo: async () => ({ mode: session ? 'joined' : 'idle' }),
    joinProgress: async () => null,
    startEmbedded: async (name) => started(newSession(name, true)),
    join: async (args) => {
      if ('server_url' in args && !args.token) throw fail('unauthorized', 'empty token');
      return started(newSession('name' in args ? args.name : 'You (dev fake)', false));
    },
    createInvite: async (preset, name, address) => fakeInvite({ token: `dev-${preset}-${name}` }, address),
    revokeRoleLink: async () => true,
    createRoleLink: async (preset, address) => fakeInvite({ invite: `dev-invite-${preset}` }, address),
    inviteAddresses: async () => ({
      port: PORT,
      media_port: 7001,
      addresses: [
        { ip: '192.168.1.20', interface: 'wlan0', loopback: false },
        { ip: '10.8.0.2', interface: 'tun0', loopback: false },
        { ip: '127.0.0.1', interface: 'lo', loopback: true },
      ],
      fingerprint: FINGERPRINT,
    }),
    leaveMeeting: async () => {
      session = null;
      return { still_running: false };
    },
    endMeeting: async () => {
      session = null;
      return { still_running: false };
    },
    rejoinMeeting: async () => {
      if (!session) throw fail('invalid_state', 'not in a meeting');
      return started(newSession(session.me.name, session.me.preset === 'host'));
    },
    session: async () => structuredClone(live()),
    devices: async () =>
      noDevices
        ? { cameras: [], microphones: [], speakers: [] }
        : {
            cameras: [{ id: 'cam0', name: 'Test pattern camera (dev fake)' }],
            microphones: [{ id: 'mic0', name: 'Sine microphone (dev fake)' }],
            speakers: [],
          },
    selectDevices: async () => {},
    preview: async (on) => {
      if (on && noDevices) throw fail('device_not_found', 'no camera', 'camera');
      previewOn = on;
    },
    setMic: async (on) => {
      const s = live();
      s.mic_on = on;
      s.publishing.audio = on && s.me.stage_status === 'ON_STAGE';
      changed();
    },
    setCamera: async (on) => {
      const s = live();
      s.camera_on = on;
      s.publishing.video = on && s.me.stage_status === 'ON_STAGE';
      changed();
    },
    stageRequestAccess: async () => {
      const s = live();
      later(3000, () => {
        if (session !== s || s.me.stage_status !== 'REQUESTED_TO_JOIN_STAGE') return;
        setMine('ACCEPTED_TO_JOIN_STAGE');
        eventListeners.emit({ event: 'stageRequestApproved', by: 'ada' });
      });
      return setMine('REQUESTED_TO_JOIN_STAGE');
    },
    stageCancelRequest: async () => setMine('OFF_STAGE'),
    stageJoin: async () => setMine('ON_STAGE'),
    stageLeave: async () => setMine('OFF_STAGE'),
    stageGrant: async (ids) => {
      setTheirs(ids, 'ACCEPTED_TO_JOIN_STAGE');
      later(1500, () => session && setTheirs(ids, 'ON_STAGE'));
    },
    stageDeny: async (ids) => setTheirs(ids, 'OFF_STAGE'),
    stageKick: async (ids) => setTheirs(ids, 'OFF_STAGE'),
    removeParticipant: async (id) => {
      const s = live();
      s.participants = s.participants.filter((p) => p.user_id !== id);
      changed();
    },
    muteParticipant: async (id) => {
      const p = live().participants.find((x) => x.user_id === id);
      if (p) p.audio = false;
      changed();
    },
    setPreset: async (id, preset) => {
      const p = live().participants.find((x) => x.user_id === id);
      if (p) p.preset = preset;
      changed();
    },
    // The fake's pictures are one small size whatever the tiles; the last sizes are kept
    // for a look in the console (`window.onstageTiles`).
    setTiles: async (tiles) => {
      live();
      (window as unknown as { onstageTiles?: unknown }).onstageTiles = tiles;
    },
    videoChannel: async (onPicture, onBadPicture) => {
      let frame = 0;
      window.setInterval(() => {
        frame++;
        const ids = (session?.participants ?? [])
          .filter((p) => p.stage_status === 'ON_STAGE' && p.video && p.user_id !== session?.me.user_id)
          .map((p) => p.user_id);
        const origins: Origin[] = ids.map(remote);
        if (previewOn || session?.publishing.video) origins.push(LOCAL);
        for (const origin of origins) {
          const parsed = parsePicture(testPattern(origin, frame));
          if (parsed.ok) onPicture(parsed.picture);
          else onBadPicture?.(parsed.error);
        }
        for (const origin of [LOCAL, ...ids.map(remote)]) {
          const level = Math.abs(Math.sin(frame / 5 + originKey(origin).length));
          levelListeners.emit({ ...origin, level });
        }
      }, 1000 / 15);
    },
    onSession: (cb) => sessionListeners.add(cb),
    onMeetingEvent: (cb) => eventListeners.add(cb),
    onMediaError: () => Promise.resolve(() => {}),
    onAppError: () => Promise.resolve(() => {}),
    onAudioLevel: (cb) => levelListeners.add(cb),
  };
}
