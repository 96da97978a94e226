import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { changedEnough, devicePixels, TileReporter, tilesMessage, type Box } from './tiles';
import type { TileSize } from './types';

const tile = (user_id: string, width: number, height: number): TileSize => ({ user_id, width, height });

describe('device pixels', () => {
  it('multiplies by the device pixel ratio and rounds', () => {
    expect(devicePixels(640, 360, 1)).toEqual({ width: 640, height: 360 });
    expect(devicePixels(426.5, 240, 2)).toEqual({ width: 853, height: 480 });
    expect(devicePixels(333.3, 187.4, 1.25)).toEqual({ width: 417, height: 234 });
  });

  it('takes a missing or odd ratio as 1 and odd sides as 0', () => {
    expect(devicePixels(640, 360, 0)).toEqual({ width: 640, height: 360 });
    expect(devicePixels(640, 360, Number.NaN)).toEqual({ width: 640, height: 360 });
    expect(devicePixels(-1, Number.NaN, 2)).toEqual({ width: 0, height: 0 });
  });
});

describe('the tiles message', () => {
  const sizes = new Map<string, Box>([
    ['b', { width: 640, height: 360 }],
    ['a', { width: 1280, height: 720 }],
  ]);

  it('lists every tile by user id with its size', () => {
    expect(tilesMessage(sizes, () => true, false)).toEqual([tile('a', 1280, 720), tile('b', 640, 360)]);
  });

  it('makes a tile out of view 0x0, and every tile while the page is hidden', () => {
    expect(tilesMessage(sizes, (id) => id !== 'b', false)).toEqual([tile('a', 1280, 720), tile('b', 0, 0)]);
    expect(tilesMessage(sizes, () => true, true)).toEqual([tile('a', 0, 0), tile('b', 0, 0)]);
    expect(tilesMessage(new Map(), () => true, false)).toEqual([]);
  });
});

describe('a change worth telling', () => {
  const told = [tile('a', 1000, 500), tile('b', 640, 360)];

  it('is anything at first, and other participants', () => {
    expect(changedEnough(null, [])).toBe(true);
    expect(changedEnough(told, [tile('a', 1000, 500)])).toBe(true);
    expect(changedEnough(told, [tile('a', 1000, 500), tile('c', 640, 360)])).toBe(true);
  });

  it('is a side changed by more than 10%, either way', () => {
    expect(changedEnough(told, told)).toBe(false);
    expect(changedEnough(told, [tile('a', 1100, 550), tile('b', 640, 360)]), 'exactly 10%').toBe(false);
    expect(changedEnough(told, [tile('a', 1101, 500), tile('b', 640, 360)])).toBe(true);
    expect(changedEnough(told, [tile('a', 1000, 449), tile('b', 640, 360)])).toBe(true);
    expect(changedEnough(told, [tile('a', 950, 480), tile('b', 600, 340)])).toBe(false);
  });

  it('is a tile that went to 0x0 or came back from it, however small', () => {
    expect(changedEnough(told, [tile('a', 0, 0), tile('b', 640, 360)])).toBe(true);
    const hidden = [tile('a', 0, 0)];
    expect(changedEnough(hidden, [tile('a', 2, 1)])).toBe(true);
    expect(changedEnough(hidden, [tile('a', 0, 0)])).toBe(false);
  });
});

describe('the reporter', () => {
  let sent: TileSize[][];
  let fail: boolean;
  let reporter: TileReporter;
  beforeEach(() => {
    vi.useFakeTimers();
    sent = [];
    fail = false;
    reporter = new TileReporter(async (tiles) => {
      sent.push(tiles);
      if (fail) throw new Error('connection_lost');
    });
  });
  afterEach(() => {
    reporter.stop();
    vi.useRealTimers();
  });

  it('tells a burst of changes once, 250 ms after the first', async () => {
    reporter.setSize('a', { width: 600, height: 340 });
    await vi.advanceTimersByTimeAsync(100);
    reporter.setSize('a', { width: 640, height: 360 });
    reporter.setSize('b', { width: 320, height: 180 });
    await vi.advanceTimersByTimeAsync(149);
    expect(sent).toEqual([]);
    await vi.advanceTimersByTimeAsync(1);
    expect(sent).toEqual([[tile('a', 640, 360), tile('b', 320, 180)]]);
  });

  it('keeps small changes to itself and tells large ones', async () => {
    reporter.setSize('a', { width: 1000, height: 500 });
    await vi.advanceTimersByTimeAsync(250);
    reporter.setSize('a', { width: 1050, height: 520 });
    await vi.advanceTimersByTimeAsync(250);
    reporter.setSize('a', { width: 1090, height: 545 });
    await vi.advanceTimersByTimeAsync(250);
    expect(sent, 'within 10% of what was told').toHaveLength(1);
    reporter.setSize('a', { width: 1120, height: 560 });
    await vi.advanceTimersByTimeAsync(250);
    expect(sent).toEqual([[tile('a', 1000, 500)], [tile('a', 1120, 560)]]);
  });

  it('tells 0x0 for everything while hidden, and the sizes again when shown', async () => {
    reporter.setSize('a', { width: 640, height: 360 });
    reporter.setSize('b', { width: 640, height: 360 });
    await vi.advanceTimersByTimeAsync(250);
    reporter.setHidden(true);
    await vi.advanceTimersByTimeAsync(250);
    reporter.setHidden(false);
    reporter.setInView('b', false);
    await vi.advanceTimersByTimeAsync(250);
    expect(sent).toEqual([
      [tile('a', 640, 360), tile('b', 640, 360)],
      [tile('a', 0, 0), tile('b', 0, 0)],
      [tile('a', 640, 360), tile('b', 0, 0)],
    ]);
  });

  it('tells a tile gone, says nothing while there never was one, and resends on demand', async () => {
    reporter.setHidden(true);
    await vi.advanceTimersByTimeAsync(250);
    expect(sent, 'nothing shown, nothing to tell').toEqual([]);
    reporter.setHidden(false);
    reporter.setSize('a', { width: 640, height: 360 });
    await vi.advanceTimersByTimeAsync(250);
    reporter.remove('a');
    await vi.advanceTimersByTimeAsync(250);
    reporter.resend();
    await vi.advanceTimersByTimeAsync(250);
    expect(sent).toEqual([[tile('a', 640, 360)], [], []]);
  });

  it('tells it all again after a send that failed', async () => {
    fail = true;
    reporter.setSize('a', { width: 640, height: 360 });
    await vi.advanceTimersByTimeAsync(250);
    fail = false;
    reporter.setSize('a', { width: 641, height: 360 });
    await vi.advanceTimersByTimeAsync(250);
    expect(sent).toEqual([[tile('a', 640, 360)], [tile('a', 641, 360)]]);
  });

  it('tells nothing once stopped', async () => {
    reporter.setSize('a', { width: 640, height: 360 });
    reporter.stop();
    await vi.advanceTimersByTimeAsync(1000);
    reporter.setSize('b', { width: 640, height: 360 });
    await vi.advanceTimersByTimeAsync(1000);
    expect(sent).toEqual([]);
  });
});
