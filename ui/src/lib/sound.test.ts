import { describe, expect, it } from 'vitest';
import { SOUND_KEY, playTone, setSoundEnabled, soundEnabled } from './sound';

function memory() {
  const m = new Map<string, string>();
  return { getItem: (k: string) => m.get(k) ?? null, setItem: (k: string, v: string) => void m.set(k, v), m };
}

describe('request sound', () => {
  it('is off by default and remembers the choice', () => {
    const s = memory();
    expect(soundEnabled(s)).toBe(false);
    setSoundEnabled(true, s);
    expect([soundEnabled(s), s.m.get(SOUND_KEY)]).toEqual([true, 'on']);
    setSoundEnabled(false, s);
    expect(soundEnabled(s)).toBe(false);
  });

  it('a refusing storage neither throws nor turns it on', () => {
    const bad = { getItem: () => { throw new Error('x'); }, setItem: () => { throw new Error('x'); } };
    expect(() => setSoundEnabled(true, bad)).not.toThrow();
    expect(soundEnabled(bad)).toBe(false);
    expect(soundEnabled(null)).toBe(false);
  });

  it('playing never throws without WebAudio or an audio device', () => {
    expect(playTone(null)).toBe(false);
    expect(playTone(() => { throw new Error('no device'); })).toBe(false);
  });

  it('plays a short oscillator tone', () => {
    const calls: string[] = [];
    const node = { connect: () => calls.push('connect') };
    const ok = playTone(() => ({
      currentTime: 1,
      destination: {},
      createGain: () => ({ ...node, gain: { setValueAtTime: () => 0, exponentialRampToValueAtTime: () => 0 } }),
      createOscillator: () => ({
        ...node,
        type: '',
        frequency: { value: 0 },
        onended: null,
        start: (t?: number) => calls.push(`start ${t}`),
        stop: (t?: number) => calls.push(`stop ${t}`),
      }),
      close: () => Promise.resolve(),
    }));
    expect(ok).toBe(true);
    expect(calls).toEqual(['connect', 'connect', 'start 1', 'stop 1.35']);
  });
});
