import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import {
  BrowserStageMedia,
  activeEncodings,
  h264Preferences,
  mediaPlan,
  mediaProblem,
  retryAfter,
  simulcastPlan,
  tileSizes,
  type MediaInputs,
  type MediaMeeting,
} from './media.js';

const inputs = (me: string, onStage: string[], others: string[] = [], connected = true): MediaInputs => ({
  connected,
  me,
  participants: [
    ...onStage.map((user_id) => ({ user_id, stage_status: 'ON_STAGE' as const })),
    ...others.map((user_id) => ({ user_id, stage_status: 'OFF_STAGE' as const })),
  ],
});
const idle = { publishing: false, subscriptions: new Set<string>() };

describe('the media plan', () => {
  it('publishes only ON_STAGE and receives everyone else on stage', () => {
    expect(mediaPlan(inputs('me', ['me', 'a', 'b'], ['c']), idle)).toEqual([
      { kind: 'startPublisher' },
      { kind: 'subscribe', userId: 'a' },
      { kind: 'subscribe', userId: 'b' },
    ]);
    // Off stage: receive only; nothing asks for the camera or microphone.
    expect(mediaPlan(inputs('me', ['a'], ['me']), idle)).toEqual([{ kind: 'subscribe', userId: 'a' }]);
  });

  it('stops before it starts, and stops what the stage no longer has', () => {
    const running = { publishing: true, subscriptions: new Set(['a', 'gone']) };
    expect(mediaPlan(inputs('me', ['a', 'b'], ['me']), running)).toEqual([
      { kind: 'stopPublisher' },
      { kind: 'unsubscribe', userId: 'gone' },
      { kind: 'subscribe', userId: 'b' },
    ]);
  });

  it('runs nothing while the connection is down (the server ended the peers)', () => {
    const running = { publishing: true, subscriptions: new Set(['a']) };
    expect(mediaPlan(inputs('me', ['me', 'a'], [], false), running)).toEqual([
      { kind: 'stopPublisher' },
      { kind: 'unsubscribe', userId: 'a' },
    ]);
    expect(mediaPlan(inputs('me', ['me', 'a']), { publishing: true, subscriptions: new Set(['a']) })).toEqual([]);
  });
});

describe('codec preferences', () => {
  const c = (mimeType: string, sdpFmtpLine?: string) => ({ mimeType, clockRate: 90000, sdpFmtpLine });
  it('puts constrained baseline H.264 (packetization-mode=1) first and keeps retransmission', () => {
    const list = [
      c('video/VP8'),
      c('video/H264', 'level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=640032'),
      c('video/rtx', 'apt=96'),
      c('video/H264', 'level-asymmetry-allowed=1;packetization-mode=0;profile-level-id=42e01f'),
      c('video/H264', 'level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42e01f'),
    ];
    expect(h264Preferences(list)?.map((x) => x.sdpFmtpLine)).toEqual([
      'level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42e01f',
      'level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=640032',
      'apt=96',
    ]);
  });
  it('is null without a usable H.264', () => {
    expect(h264Preferences([c('video/VP8'), c('video/H264', 'packetization-mode=0')])).toBeNull();
  });
});

describe('media problems', () => {
  it('names each getUserMedia failure so the page can say what to do', () => {
    const named = (name: string) => Object.assign(new Error('x'), { name });
    expect(mediaProblem(named('NotAllowedError')).code).toBe('permission_denied');
    expect(mediaProblem(named('NotFoundError')).code).toBe('device_not_found');
    expect(mediaProblem(named('NotReadableError')).code).toBe('device_busy');
    expect(mediaProblem(new Error('ice failed'))).toEqual({ code: 'negotiation_failed', message: 'ice failed' });
  });
});

describe('a start the server put off', () => {
  it('is tried again after the wait the server named, and only for rate_limited', () => {
    expect(retryAfter({ code: 'rate_limited', retry_after_ms: 504 })).toBe(504);
    expect(retryAfter({ code: 'rate_limited' })).toBe(1000);
    expect(retryAfter({ code: 'rate_limited', retry_after_ms: 1e9 })).toBe(60_000);
    expect(retryAfter({ code: 'invalid_state', retry_after_ms: 5 })).toBeNull();
    expect(retryAfter(new Error('x'))).toBeNull();
    expect(retryAfter(null)).toBeNull();
  });
});

describe('the simulcast plan', () => {
  it('sends a 720p camera as a quarter, a half and the whole, lowest first', () => {
    expect(simulcastPlan(1280, 720)).toEqual({
      encodings: [
        { rid: 'q', scaleResolutionDownBy: 4, maxBitrate: 150_000 },
        { rid: 'h', scaleResolutionDownBy: 2, maxBitrate: 450_000 },
        { rid: 'f', scaleResolutionDownBy: 1, maxBitrate: 1_700_000 },
      ],
      layers: [
        { rid: 'q', width: 320, height: 180, max_bitrate: 150_000 },
        { rid: 'h', width: 640, height: 360, max_bitrate: 450_000 },
        { rid: 'f', width: 1280, height: 720, max_bitrate: 1_700_000 },
      ],
    });
    expect(simulcastPlan(1920, 1080)?.layers.map((l) => [l.rid, l.width, l.height])).toEqual([
      ['q', 480, 270],
      ['h', 960, 540],
      ['f', 1920, 1080],
    ]);
  });

  it('sends a 360p camera as two layers, q at half size', () => {
    expect(simulcastPlan(640, 360)).toEqual({
      encodings: [
        { rid: 'q', scaleResolutionDownBy: 2, maxBitrate: 150_000 },
        { rid: 'h', scaleResolutionDownBy: 1, maxBitrate: 450_000 },
      ],
      layers: [
        { rid: 'q', width: 320, height: 180, max_bitrate: 150_000 },
        { rid: 'h', width: 640, height: 360, max_bitrate: 450_000 },
      ],
    });
    // 1280x719 is short of 720p: two layers.
    expect(simulcastPlan(1280, 719)?.layers.map((l) => l.rid)).toEqual(['q', 'h']);
    expect(simulcastPlan(960, 540)?.layers.map((l) => [l.width, l.height])).toEqual([
      [480, 270],
      [960, 540],
    ]);
  });

  it('takes a portrait camera as a landscape one', () => {
    expect(simulcastPlan(720, 1280)?.layers.map((l) => [l.width, l.height])).toEqual([
      [180, 320],
      [360, 640],
      [720, 1280],
    ]);
    expect(simulcastPlan(360, 640)?.layers).toHaveLength(2);
  });

  it('sends a small or unknown capture as one plain encoding', () => {
    expect(simulcastPlan(640, 359)).toBeNull();
    expect(simulcastPlan(320, 240)).toBeNull();
    expect(simulcastPlan(undefined, 720)).toBeNull();
    expect(simulcastPlan(1280, undefined)).toBeNull();
    expect(simulcastPlan(0, 0)).toBeNull();
    expect(simulcastPlan(Number.NaN, 720)).toBeNull();
  });
});

describe('the layers the SFU names', () => {
  const rids = ['q', 'h', 'f'];
  it('keeps those named on and the others off', () => {
    expect(activeEncodings(rids, ['q', 'h', 'f'])).toEqual([true, true, true]);
    expect(activeEncodings(rids, ['q', 'h'])).toEqual([true, true, false]);
    expect(activeEncodings(rids, ['q', 'f'])).toEqual([true, false, true]);
    expect(activeEncodings(['q', 'h'], ['h', 'q'])).toEqual([true, true]);
  });

  it('never turns the lowest off, whatever the message says', () => {
    expect(activeEncodings(rids, ['q'])).toEqual([true, false, false]);
    expect(activeEncodings(rids, [])).toEqual([true, false, false]);
    expect(activeEncodings(rids, ['f'])).toEqual([true, false, true]);
    expect(activeEncodings(rids, ['x', 'Q'])).toEqual([true, false, false]);
  });

  it('leaves a plain encoding as it is', () => {
    expect(activeEncodings([undefined], [])).toEqual([true]);
    expect(activeEncodings([], ['q'])).toEqual([]);
  });
});

describe('the tiles message', () => {
  it('names each video by its user id with its size in whole device pixels', () => {
    expect(
      tileSizes([
        { userId: 'a', width: 640, height: 360 },
        { userId: 'b', width: 426.6, height: 239.5 },
      ]),
    ).toEqual([
      { user_id: 'a', width: 640, height: 360 },
      { user_id: 'b', width: 427, height: 240 },
    ]);
  });

  it('keeps sides within 0..16384 and leaves out a size that is not a number', () => {
    expect(
      tileSizes([
        { userId: 'hidden', width: 0, height: 0 },
        { userId: 'huge', width: 20_000, height: Number.POSITIVE_INFINITY },
        { userId: 'odd', width: -3, height: 10 },
        { userId: 'nan', width: Number.NaN, height: 10 },
      ]),
    ).toEqual([
      { user_id: 'hidden', width: 0, height: 0 },
      { user_id: 'huge', width: 16_384, height: 16_384 },
      { user_id: 'odd', width: 0, height: 10 },
    ]);
    expect(tileSizes([])).toEqual([]);
  });
});

describe('a simulcast publication', () => {
  type Encoding = RTCRtpEncodingParameters;
  class FakeSender {
    encodings: Encoding[] = [];
    sets: boolean[][] = [];
    getParameters() {
      return { encodings: this.encodings.map((e) => ({ ...e })) } as unknown as RTCRtpSendParameters;
    }
    async setParameters(p: RTCRtpSendParameters) {
      this.encodings = p.encodings.map((e) => ({ ...e }));
      this.sets.push(this.encodings.map((e) => e.active ?? true));
    }
  }
  class FakePeer {
    static last: FakePeer;
    senders: FakeSender[] = [];
    inits: RTCRtpTransceiverInit[] = [];
    iceGatheringState = 'complete';
    localDescription: { sdp: string } | null = null;
    remoteDescription: { sdp: string } | null = null;
    constructor() {
      FakePeer.last = this;
    }
    addTransceiver(_track: unknown, init: RTCRtpTransceiverInit) {
      const sender = new FakeSender();
      sender.encodings = (init.sendEncodings ?? [{}]).map((e) => ({ ...e, active: true }));
      this.senders.push(sender);
      this.inits.push(init);
      return { sender, setCodecPreferences: () => undefined };
    }
    async createOffer() {
      return { type: 'offer', sdp: 'v=0 offer' };
    }
    async setLocalDescription(d: { sdp: string }) {
      this.localDescription = d;
    }
    async setRemoteDescription(d: { sdp: string }) {
      this.remoteDescription = d;
    }
    close() {}
    addEventListener() {}
  }
  const track = (kind: string, width?: number, height?: number) => ({
    kind,
    enabled: true,
    getSettings: () => ({ width, height }),
    stop: () => undefined,
  });
  function stage(video: ReturnType<typeof track>) {
    const calls: [string, Record<string, unknown> | undefined][] = [];
    let layers: (rids: string[]) => void = () => undefined;
    const tracks = [track('audio'), video];
    const stream = {
      getTracks: () => tracks,
      getAudioTracks: () => tracks.filter((t) => t.kind === 'audio'),
      getVideoTracks: () => tracks.filter((t) => t.kind === 'video'),
    } as unknown as MediaStream;
    const meeting: MediaMeeting = {
      userId: 'me',
      connected: () => true,
      stageStatuses: () => [{ user_id: 'me', stage_status: 'ON_STAGE' }],
      iceServers: () => [],
      call: async (name, args) => {
        calls.push([name, args]);
        return name === 'media.publish' ? { sdp: 'v=0 answer' } : null;
      },
      on: () => () => undefined,
      onLayers: (l) => {
        layers = l;
        return () => undefined;
      },
    };
    const media = new BrowserStageMedia(meeting, {
      getUserMedia: async () => stream,
      peerConnection: FakePeer as unknown as new (c: RTCConfiguration) => RTCPeerConnection,
    });
    return { media, calls, layers: (rids: string[]) => layers(rids) };
  }
  const settle = () => new Promise((r) => setTimeout(r, 0));

  beforeEach(() => {
    vi.stubGlobal('RTCRtpSender', {
      getCapabilities: () => ({
        codecs: [{ mimeType: 'video/H264', clockRate: 90000, sdpFmtpLine: 'packetization-mode=1;profile-level-id=42e01f' }],
      }),
    });
  });
  afterEach(() => {
    vi.unstubAllGlobals();
  });

  it('offers three layers of a 720p camera, describes them, and pauses those the SFU does not name', async () => {
    const { media, calls, layers } = stage(track('video', 1280, 720));
    await settle();
    const peer = FakePeer.last;
    const video = peer.senders[1] as FakeSender;
    expect(peer.inits[1]?.sendEncodings?.map((e) => e.rid)).toEqual(['q', 'h', 'f']);
    expect(peer.inits[0]?.sendEncodings, 'audio is one encoding').toBeUndefined();
    const publish = calls.find(([name]) => name === 'media.publish')?.[1];
    expect(publish?.['layers']).toEqual(simulcastPlan(1280, 720)?.layers);
    layers(['q', 'h']);
    await settle();
    expect(video.sets).toEqual([[true, true, false]]);
    layers(['h']);
    layers(['q', 'h']); // the same again: nothing to change
    await settle();
    expect(video.sets, 'the lowest stays on').toEqual([[true, true, false]]);
    layers(['q', 'h', 'f']);
    await settle();
    expect(video.sets[video.sets.length - 1]).toEqual([true, true, true]);
    await media.close();
  });

  it('sends a small camera as one encoding and ignores layers then', async () => {
    const { media, calls, layers } = stage(track('video', 320, 240));
    await settle();
    expect(FakePeer.last.inits[1]?.sendEncodings).toBeUndefined();
    expect(calls.find(([name]) => name === 'media.publish')?.[1]).toEqual({ sdp: 'v=0 offer' });
    layers(['q']);
    await settle();
    expect((FakePeer.last.senders[1] as FakeSender).sets).toEqual([]);
    await media.close();
  });
});

describe('reception of the participants received', () => {
  type Stats = Record<string, unknown>[];
  class FakeSubscription {
    static all: FakeSubscription[] = [];
    stats: Stats = [];
    iceGatheringState = 'complete';
    localDescription: { sdp: string } | null = null;
    constructor() {
      FakeSubscription.all.push(this);
    }
    addTransceiver() {
      return { setCodecPreferences: () => undefined };
    }
    async createOffer() {
      return { type: 'offer', sdp: 'v=0 offer' };
    }
    async setLocalDescription(d: { sdp: string }) {
      this.localDescription = d;
    }
    async setRemoteDescription() {}
    async getStats() {
      return new Map(this.stats.map((s, i) => [String(i), s]));
    }
    close() {}
    addEventListener() {}
  }
  /** Counters after `seconds` of steady media at 30 fps and 48 kHz, `lost` of the sound made up. */
  const steady = (seconds: number, lost = 0): Stats => [
    { type: 'inbound-rtp', kind: 'video', framesDecoded: 30 * seconds, freezeCount: 0 },
    { type: 'inbound-rtp', kind: 'audio', concealedSamples: 48_000 * seconds * lost, totalSamplesReceived: 48_000 * seconds },
  ];

  let clock = 0;
  let publishing: Map<string, { audio: boolean; video: boolean }>;
  let tiles: { user_id: string; width: number; height: number }[] | null;
  function received(userIds: string[]) {
    const meeting: MediaMeeting = {
      userId: 'me',
      connected: () => true,
      stageStatuses: () => [
        { user_id: 'me', stage_status: 'OFF_STAGE' },
        ...userIds.map((user_id) => ({ user_id, stage_status: 'ON_STAGE' as const })),
      ],
      iceServers: () => [],
      call: async () => ({ sdp: 'v=0 answer' }),
      on: () => () => undefined,
      get publishing() {
        return publishing;
      },
      tiles: () => tiles,
    };
    const media = new BrowserStageMedia(meeting, {
      peerConnection: FakeSubscription as unknown as new (c: RTCConfiguration) => RTCPeerConnection,
      now: () => clock,
    });
    let changes = 0;
    media.onChange(() => changes++);
    return { media, changes: () => changes };
  }
  /** One second on: every subscription has had `stats(t)` by then, and the reading runs. */
  async function second(stats: (t: number, i: number) => Stats) {
    clock += 1000;
    FakeSubscription.all.forEach((s, i) => (s.stats = stats(clock / 1000, i)));
    await vi.advanceTimersByTimeAsync(1000);
  }

  beforeEach(() => {
    vi.useFakeTimers();
    clock = 0;
    FakeSubscription.all = [];
    publishing = new Map([
      ['a', { audio: true, video: true }],
      ['b', { audio: true, video: true }],
    ]);
    tiles = null;
    vi.stubGlobal('MediaStream', class {});
    vi.stubGlobal('RTCRtpReceiver', { getCapabilities: () => ({ codecs: [] }) });
  });
  afterEach(() => {
    vi.useRealTimers();
    vi.unstubAllGlobals();
  });

  it('reads each subscription about every second and tells the levels once 2 s of media came', async () => {
    const { media, changes } = received(['a', 'b']);
    await vi.advanceTimersByTimeAsync(0);
    expect(FakeSubscription.all).toHaveLength(2);
    await second((t) => steady(t));
    await second((t) => steady(t));
    expect(media.reception()).toEqual(new Map());
    const before = changes();
    await second((t) => steady(t));
    expect(media.reception()).toEqual(new Map([['a', 'good'], ['b', 'good']]));
    expect(changes()).toBe(before + 1);
    // b's sound breaks up: only b changes, and once.
    for (let i = 0; i < 3; i++) await second((t, i) => steady(t, i === 1 ? 0.2 : 0));
    expect(media.reception()).toEqual(new Map([['a', 'good'], ['b', 'poor']]));
    expect(changes()).toBe(before + 2);
    await media.close();
  });

  it('holds no missing pictures against a camera switched off or a tile shown at 0x0', async () => {
    const { media } = received(['a', 'b']);
    await vi.advanceTimersByTimeAsync(0);
    publishing.set('a', { audio: true, video: false });
    tiles = [{ user_id: 'b', width: 0, height: 0 }];
    // Neither sends pictures: a's camera is off, b's video is not sent to a hidden tile.
    const soundOnly = (t: number): Stats => [
      { type: 'inbound-rtp', kind: 'video', framesDecoded: 0, freezeCount: 0 },
      { type: 'inbound-rtp', kind: 'audio', concealedSamples: 0, totalSamplesReceived: 48_000 * t },
    ];
    for (let i = 0; i < 4; i++) await second(soundOnly);
    expect(media.reception()).toEqual(new Map([['a', 'good'], ['b', 'good']]));
    // Once b's video is expected and judged, no pictures is poor.
    tiles = [{ user_id: 'b', width: 640, height: 360 }];
    for (let i = 0; i < 4; i++) await second(soundOnly);
    expect(media.reception()).toEqual(new Map([['a', 'good'], ['b', 'poor']]));
    await media.close();
  });

  it('forgets everyone on close, and reads nothing after it', async () => {
    const { media } = received(['a']);
    await vi.advanceTimersByTimeAsync(0);
    for (let i = 0; i < 3; i++) await second((t) => steady(t));
    expect(media.reception().get('a')).toBe('good');
    await media.close();
    expect(media.reception()).toEqual(new Map());
    const reads = vi.fn(async () => new Map());
    FakeSubscription.all.forEach((s) => (s.getStats = reads));
    await vi.advanceTimersByTimeAsync(3000);
    expect(reads).not.toHaveBeenCalled();
  });
});
