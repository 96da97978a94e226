// How large this window shows each stage video, for the SFU (`media.tiles` through
// `Backend.setTiles`): it sends no larger a simulcast layer than fills a tile, and no video
// at all for a tile nobody can see. The sizes are in device pixels (CSS pixels x
// devicePixelRatio). The rules are pure and unit-tested here; `TileReporter` debounces
// them on injected timers, and `watchTiles` (tileWatch.ts) feeds it from the page.

import type { TileSize } from './types';

/** One tile's box in device pixels. */
export interface Box {
  width: number;
  height: number;
}

/** How long a change waits before it is told, so a resize or a relayout is told once. */
export const TILES_DELAY_MS = 250;

/** A side must change by more than this share to be told again (or cross zero). */
export const TILES_THRESHOLD = 0.1;

/** A CSS box in device pixels, rounded; negative or unknown sides are 0. */
export function devicePixels(cssWidth: number, cssHeight: number, dpr: number): Box {
  const ratio = Number.isFinite(dpr) && dpr > 0 ? dpr : 1;
  const side = (x: number) => (Number.isFinite(x) && x > 0 ? Math.round(x * ratio) : 0);
  return { width: side(cssWidth), height: side(cssHeight) };
}

/**
 * What to tell: every tile's size in user-id order, 0x0 for a tile out of view and for all
 * of them while the page is hidden (a minimised window, a background tab).
 */
export function tilesMessage(
  sizes: ReadonlyMap<string, Box>,
  inView: (userId: string) => boolean,
  pageHidden: boolean,
): TileSize[] {
  return [...sizes.keys()]
    .sort()
    .map((user_id) => {
      const box = sizes.get(user_id) as Box;
      const shown = !pageHidden && inView(user_id);
      return { user_id, width: shown ? box.width : 0, height: shown ? box.height : 0 };
    });
}

/**
 * Is `next` worth telling after `last`? When nothing was told yet, when the tiles are of
 * other participants, when a tile appeared or vanished (crossed zero), or when a side
 * changed by more than `threshold` of what was told.
 */
export function changedEnough(last: readonly TileSize[] | null, next: readonly TileSize[], threshold = TILES_THRESHOLD): boolean {
  if (last === null || last.length !== next.length) return true;
  const before = new Map(last.map((t) => [t.user_id, t]));
  const side = (a: number, b: number) => (a === 0) !== (b === 0) || Math.abs(a - b) > threshold * a;
  return next.some((t) => {
    const was = before.get(t.user_id);
    return !was || side(was.width, t.width) || side(was.height, t.height);
  });
}

export interface ReporterTimers {
  setTimeout: (f: () => void, ms: number) => unknown;
  clearTimeout: (handle: unknown) => void;
}

const realTimers: ReporterTimers = {
  setTimeout: (f, ms) => setTimeout(f, ms),
  clearTimeout: (h) => clearTimeout(h as ReturnType<typeof setTimeout>),
};

/**
 * Collects the tiles' sizes and tells them (`send`) at most once per `delayMs`, and only
 * when `changedEnough`. A send that fails is tried again with the next change (or
 * `resend`, e.g. after a reconnect, when the server has forgotten them).
 */
export class TileReporter {
  private readonly sizes = new Map<string, Box>();
  private readonly outOfView = new Set<string>();
  private hidden = false;
  private last: TileSize[] | null = null;
  private timer: unknown = null;
  private force = false;
  private stopped = false;

  constructor(
    private readonly send: (tiles: TileSize[]) => Promise<void>,
    private readonly delayMs = TILES_DELAY_MS,
    private readonly timers: ReporterTimers = realTimers,
  ) {}

  /** A tile's box, in device pixels. */
  setSize(userId: string, box: Box): void {
    const was = this.sizes.get(userId);
    if (was && was.width === box.width && was.height === box.height) return;
    this.sizes.set(userId, { width: box.width, height: box.height });
    this.schedule();
  }

  /** Whether any of a tile is in view (a tile scrolled away is 0x0). */
  setInView(userId: string, inView: boolean): void {
    if (inView === !this.outOfView.has(userId)) return;
    if (inView) this.outOfView.delete(userId);
    else this.outOfView.add(userId);
    this.schedule();
  }

  /** The tile is gone (its participant left the stage). */
  remove(userId: string): void {
    if (!this.sizes.delete(userId)) return;
    this.outOfView.delete(userId);
    this.schedule();
  }

  /** The page is hidden (minimised, a background tab): every tile is 0x0 meanwhile. */
  setHidden(hidden: boolean): void {
    if (hidden === this.hidden) return;
    this.hidden = hidden;
    this.schedule();
  }

  /** Tells the sizes again even if unchanged (the server forgot them: a new session). */
  resend(): void {
    this.force = true;
    this.schedule();
  }

  /** What would be told now. */
  current(): TileSize[] {
    return tilesMessage(this.sizes, (id) => !this.outOfView.has(id), this.hidden);
  }

  stop(): void {
    this.stopped = true;
    if (this.timer !== null) this.timers.clearTimeout(this.timer);
    this.timer = null;
  }

  private schedule(): void {
    if (this.stopped || this.timer !== null) return;
    this.timer = this.timers.setTimeout(() => {
      this.timer = null;
      this.flush();
    }, this.delayMs);
  }

  private flush(): void {
    const next = this.current();
    const force = this.force;
    this.force = false;
    // Nothing shown and nothing told: no need to say so.
    if (!force && this.last === null && next.length === 0) return;
    if (!force && !changedEnough(this.last, next)) return;
    this.last = next;
    this.send(next).catch(() => {
      // Not told (the connection is down, a refusal): the next change tells it whole.
      if (this.last === next) this.last = null;
    });
  }
}
