// The short tone a host may hear on a new stage request. The choice is kept in
// localStorage; playing never throws (no audio device, no WebAudio, a refused context).

export const SOUND_KEY = 'onstage.requestSound';

type Store = Pick<Storage, 'getItem' | 'setItem'>;

function store(): Store | null {
  try {
    return globalThis.localStorage ?? null;
  } catch {
    return null;
  }
}

/** Off unless the host turned it on. */
export function soundEnabled(s: Store | null = store()): boolean {
  try {
    return s?.getItem(SOUND_KEY) === 'on';
  } catch {
    return false;
  }
}

export function setSoundEnabled(on: boolean, s: Store | null = store()): void {
  try {
    s?.setItem(SOUND_KEY, on ? 'on' : 'off');
  } catch {
    // Storage full or refused: the choice lasts for this run only.
  }
}

interface ToneContext {
  currentTime: number;
  destination: unknown;
  createOscillator(): {
    type: string;
    frequency: { value: number };
    connect(n: unknown): unknown;
    start(t?: number): void;
    stop(t?: number): void;
    onended: (() => void) | null;
  };
  createGain(): {
    gain: { setValueAtTime(v: number, t: number): unknown; exponentialRampToValueAtTime(v: number, t: number): unknown };
    connect(n: unknown): unknown;
  };
  close(): Promise<void>;
}

type ContextFactory = () => ToneContext;

function defaultFactory(): ContextFactory | null {
  const C = (globalThis as { AudioContext?: new () => ToneContext }).AudioContext;
  return C ? () => new C() : null;
}

/** Plays a short two-note chime; returns whether it could start. */
export function playTone(make: ContextFactory | null = defaultFactory()): boolean {
  if (!make) return false;
  try {
    const ctx = make();
    const gain = ctx.createGain();
    const t = ctx.currentTime;
    gain.gain.setValueAtTime(0.15, t);
    gain.gain.exponentialRampToValueAtTime(0.001, t + 0.35);
    gain.connect(ctx.destination);
    const osc = ctx.createOscillator();
    osc.type = 'sine';
    osc.frequency.value = 880;
    osc.connect(gain);
    osc.onended = () => void ctx.close().catch(() => {});
    osc.start(t);
    osc.stop(t + 0.35);
    return true;
  } catch {
    return false;
  }
}
