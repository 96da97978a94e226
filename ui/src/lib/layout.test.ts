import { describe, expect, it } from 'vitest';
import { HOLD_MS, NO_SPEAKER, columnsFor, gridFor, meetingHeader, nextSpeaker } from './layout';
import { person, session } from '../test/fixtures';

describe('gridFor', () => {
  it('one large, two side by side, 2x2, 3x3, then four wide', () => {
    expect([1, 2, 3, 4, 5, 9, 10, 16].map(columnsFor)).toEqual([1, 2, 2, 2, 3, 3, 4, 4]);
    expect(gridFor(1, 1280, 720, 0)).toMatchObject({ columns: 1, rows: 1, tileWidth: 1280, tileHeight: 720 });
    expect(gridFor(2, 1280, 720, 0)).toMatchObject({ columns: 2, rows: 1, tileWidth: 640, tileHeight: 360 });
    expect(gridFor(4, 1280, 720, 0)).toMatchObject({ columns: 2, rows: 2, tileWidth: 640, tileHeight: 360 });
    expect(gridFor(9, 1280, 720, 0)).toMatchObject({ columns: 3, rows: 3, scroll: false });
  });

  it('keeps 16:9 and fits the area, limited by height or width', () => {
    const cases: [number, number, number][] = [[1, 1000, 300], [4, 900, 900], [9, 1280, 600], [7, 500, 1000]];
    for (const [n, w, h] of cases) {
      const g = gridFor(n, w, h);
      expect(Math.abs(g.tileWidth / g.tileHeight - 16 / 9)).toBeLessThan(0.02);
      expect(g.columns * g.tileWidth + (g.columns - 1) * 8).toBeLessThanOrEqual(w);
      expect(Math.min(g.rows, 3) * g.tileHeight + (Math.min(g.rows, 3) - 1) * 8).toBeLessThanOrEqual(h);
    }
    // Height-limited: a wide, short area.
    expect(gridFor(1, 1000, 270, 0).tileWidth).toBe(480);
  });

  it('beyond nine scrolls; degenerate inputs give an empty tile, not NaN', () => {
    expect(gridFor(13, 1280, 720)).toMatchObject({ columns: 4, rows: 4, scroll: true });
    expect(gridFor(0, 0, 0)).toMatchObject({ columns: 1, rows: 1, tileWidth: 0, tileHeight: 0 });
  });
});

describe('active speaker', () => {
  const keys = ['a', 'b', 'c'];
  it('the loudest above the threshold, nobody when all are quiet', () => {
    expect(nextSpeaker(NO_SPEAKER, { a: 0.1, b: 0.05 }, keys, 0)).toEqual(NO_SPEAKER);
    expect(nextSpeaker(NO_SPEAKER, { a: 0.3, b: 0.6 }, keys, 0).key).toBe('b');
  });

  it('keeps the current speaker unless another is clearly louder', () => {
    const s = nextSpeaker(NO_SPEAKER, { a: 0.5 }, keys, 0);
    expect(nextSpeaker(s, { a: 0.5, b: 0.53 }, keys, 100).key).toBe('a');
    expect(nextSpeaker(s, { a: 0.5, b: 0.7 }, keys, 100).key).toBe('b');
  });

  it('holds the emphasis through a short pause, then drops it', () => {
    const s = nextSpeaker(NO_SPEAKER, { a: 0.5 }, keys, 1000);
    const pause = nextSpeaker(s, { a: 0 }, keys, 1000 + HOLD_MS - 1);
    expect(pause.key).toBe('a');
    expect(nextSpeaker(pause, { a: 0 }, keys, 1000 + HOLD_MS).key).toBeNull();
    // Someone else speaking during the pause takes over at once.
    expect(nextSpeaker(s, { a: 0, c: 0.4 }, keys, 1100).key).toBe('c');
  });

  it('drops a speaker who left the stage', () => {
    const s = nextSpeaker(NO_SPEAKER, { a: 0.5 }, keys, 0);
    expect(nextSpeaker(s, { a: 0.5 }, ['b'], 10)).toEqual(NO_SPEAKER);
  });
});

describe('meetingHeader', () => {
  it('title, hosts, stage and the audience with requesters first', () => {
    const s = session('viewer', 'OFF_STAGE', [
      person('h', 'ON_STAGE', 'host'),
      person('s', 'ON_STAGE', 'speaker'),
      person('z', 'OFF_STAGE'),
      person('r', 'REQUESTED_TO_JOIN_STAGE'),
      { ...person('gone', 'OFF_STAGE'), connected: false },
    ]);
    const h = meetingHeader(s);
    expect(h.title).toBe('Standup');
    expect(meetingHeader({ ...s, title: '' }).title).toBe('m1');
    expect(h.hosts).toEqual(['H']);
    expect(h.onStage).toEqual(['H', 'S']);
    expect(h.audience.map((r) => [r.name, r.requested, r.isMe])).toEqual([
      ['R', true, false],
      ['ME', false, true],
      ['Z', false, false],
    ]);
    expect(h.audienceText).toBe('Audience · 3');
  });
});
