import { describe, expect, it } from 'vitest';
import { h264Preferences, mediaPlan, mediaProblem, retryAfter, type MediaInputs } from './media.js';

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
