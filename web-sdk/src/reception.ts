// How well a participant's media reaches this browser: `good`, `fair` or `poor`, for the
// mark on their tile. The same rule as the desktop app's (docs/API.md, "Reception"), as a
// pure function of a history of samples, so every branch is a unit test; `receptionSample`
// reads one sample from a subscription's `getStats()` report.

/** How a participant's media reaches this viewer. */
export type Reception = "good" | "fair" | "poor";

/**
 * One reading of a subscription, about every second. The counters are the browser's
 * (`inbound-rtp`), running totals since the subscription started.
 */
export interface ReceptionSample {
  /** When it was read, in ms (one clock for a participant's whole history). */
  at: number;
  /** Their video is expected here: published with the camera on, received, its tile shown. */
  videoExpected: boolean;
  /** Their sound is expected here: published with the microphone on, received. */
  audioExpected: boolean;
  /** Pictures decoded (`framesDecoded`). */
  framesDecoded: number;
  /** Freezes, the W3C rule (`freezeCount`); a browser without it counts none. */
  freezeCount: number;
  /** Audio samples the decoder had to make up (`concealedSamples` less `silentConcealedSamples`). */
  concealedSamples: number;
  /** Audio samples played out, made up ones included (`totalSamplesReceived`). */
  totalSamplesReceived: number;
}

/** No level before this much media (ms from the first picture or sound). */
export const RECEPTION_START_MS = 2000;
/**
 * Video is judged from this long after it is expected again (the camera turned on, the tile
 * shown again): its first picture waits for a keyframe, and the browser counts that wait as
 * a freeze of the picture shown before.
 */
export const RECEPTION_VIDEO_START_MS = 2000;
/** A freeze this recent, or audio concealment over this span, makes it `poor`. */
export const RECEPTION_POOR_MS = 5000;
/** A freeze this recent makes it `fair`. */
export const RECEPTION_FAIR_MS = 15_000;
/** `peak_fps` is the best one-second figure over this span. */
export const RECEPTION_PEAK_MS = 10_000;
/** How much history the rule reads: older samples may be dropped. */
export const RECEPTION_HISTORY_MS = RECEPTION_FAIR_MS + 1000;

/** `poor` below this many pictures a second, when video is expected. */
const POOR_FPS = 5;
/** `fair` below this share of the peak, when video is expected. */
const FAIR_FPS_SHARE = 0.6;
/** Audio concealment above these shares: `poor`, `fair`. */
const POOR_CONCEALMENT = 0.1;
const FAIR_CONCEALMENT = 0.02;
/**
 * A sample counts as a second after the one it is compared with from this gap on: a timer
 * of 1 s fires a little early or late, and a second-long figure needs a second's samples.
 */
const SECOND_MS = 900;

const grown = (now: number, before: number) => Math.max(0, now - before);

/**
 * The level the samples (oldest first, the last one now) show, or `null` while too little
 * media has come to judge. The rule, with the figures at the last sample:
 * - unknown until `RECEPTION_START_MS` after the first sample with media, and while
 *   neither video nor sound is expected;
 * - `poor` if video is judged and (fps < 5, or a freeze ended less than 5 s ago), or audio
 *   concealment over the last 5 s is above 10 %;
 * - else `fair` if a freeze ended less than 15 s ago, or video is judged and fps < 0.6 x peak_fps
 *   (the best second of the last 10 s), or audio concealment is above 2 %;
 * - else `good`.
 * fps is the pictures decoded over the last second. A second without a picture while video
 * is judged is a freeze going on (a browser without `freezeCount` still sees it).
 */
export function receptionOf(samples: readonly ReceptionSample[]): Reception | null {
  const last = samples[samples.length - 1];
  if (!last) return null;
  const now = last.at;
  const first = samples.find((s) => s.framesDecoded > 0 || s.totalSamplesReceived > 0);
  if (!first || now - first.at < RECEPTION_START_MS) return null;
  // Someone sending nothing (muted, camera off, tile hidden) gives nothing to judge.
  if (!last.videoExpected && !last.audioExpected) return null;

  // Video is judged within each unbroken run of samples that expected it, from
  // RECEPTION_VIDEO_START_MS into the run: `judgedFrom[i]` is that time for sample i's run.
  const judgedFrom: number[] = [];
  for (const s of samples) {
    const before = judgedFrom[judgedFrom.length - 1] ?? Infinity;
    judgedFrom.push(!s.videoExpected ? Infinity : before !== Infinity ? before : s.at + RECEPTION_VIDEO_START_MS);
  }
  const judged = (i: number, run: number) => judgedFrom[i] === run && (samples[i] as ReceptionSample).at >= run;

  let fps: number | null = null;
  let peakFps = 0;
  let lastFreeze = -Infinity;
  let concealed = 0;
  let played = 0;
  for (let i = 1; i < samples.length; i++) {
    const cur = samples[i] as ReceptionSample;
    const prev = samples[i - 1] as ReceptionSample;
    if (prev.audioExpected && cur.audioExpected && prev.at >= now - RECEPTION_POOR_MS) {
      concealed += grown(cur.concealedSamples, prev.concealedSamples);
      played += grown(cur.totalSamplesReceived, prev.totalSamplesReceived);
    }
    const run = judgedFrom[i] as number;
    if (run === Infinity) continue;
    if (judged(i - 1, run) && cur.freezeCount > prev.freezeCount) lastFreeze = cur.at;
    // The latest sample a second or more before this one, within the judged video.
    let j = i - 1;
    while (j >= 0 && cur.at - (samples[j] as ReceptionSample).at < SECOND_MS) j--;
    const base = samples[j];
    if (!base || !judged(j, run)) continue;
    const frames = grown(cur.framesDecoded, base.framesDecoded);
    const perSecond = (frames * 1000) / (cur.at - base.at);
    if (frames === 0) lastFreeze = cur.at;
    if (i === samples.length - 1) fps = perSecond;
    if (cur.at >= now - RECEPTION_PEAK_MS) peakFps = Math.max(peakFps, perSecond);
  }
  const concealment = played > 0 ? concealed / played : 0;
  const frozeWithin = (ms: number) => now - lastFreeze < ms;

  if ((fps !== null && (fps < POOR_FPS || frozeWithin(RECEPTION_POOR_MS))) || concealment > POOR_CONCEALMENT) {
    return "poor";
  }
  if (frozeWithin(RECEPTION_FAIR_MS) || (fps !== null && fps < FAIR_FPS_SHARE * peakFps) || concealment > FAIR_CONCEALMENT) {
    return "fair";
  }
  return "good";
}

/** A `getStats()` report, or anything with its `forEach` (a `Map` of plain objects in tests). */
export interface StatsLike {
  forEach(callback: (stat: Record<string, unknown>) => void): void;
}

const count = (stat: Record<string, unknown>, field: string): number => {
  const value = stat[field];
  return typeof value === "number" && Number.isFinite(value) ? value : 0;
};

/**
 * One sample from a subscription's statistics (its `inbound-rtp` entries, summed per kind).
 * `expected` says what the participant publishes and this viewer shows; a kind without an
 * `inbound-rtp` entry is not received, so not expected either.
 */
export function receptionSample(
  report: StatsLike,
  at: number,
  expected: { audio: boolean; video: boolean },
): ReceptionSample {
  const sample: ReceptionSample = {
    at,
    videoExpected: false,
    audioExpected: false,
    framesDecoded: 0,
    freezeCount: 0,
    concealedSamples: 0,
    totalSamplesReceived: 0,
  };
  let video = false;
  let audio = false;
  report.forEach((stat) => {
    if (stat["type"] !== "inbound-rtp") return;
    const kind = stat["kind"] ?? stat["mediaType"];
    if (kind === "video") {
      video = true;
      sample.framesDecoded += count(stat, "framesDecoded");
      sample.freezeCount += count(stat, "freezeCount");
    } else if (kind === "audio") {
      audio = true;
      // Comfort noise while the sender is silent (DTX) is made up too, and no loss.
      sample.concealedSamples += Math.max(0, count(stat, "concealedSamples") - count(stat, "silentConcealedSamples"));
      sample.totalSamplesReceived += count(stat, "totalSamplesReceived");
    }
  });
  sample.videoExpected = video && expected.video;
  sample.audioExpected = audio && expected.audio;
  return sample;
}

/** `history` with `sample` added and what the rule no longer reads dropped (one before kept). */
export function withSample(history: readonly ReceptionSample[], sample: ReceptionSample): ReceptionSample[] {
  const all = [...history, sample];
  const keepFrom = sample.at - RECEPTION_HISTORY_MS;
  let start = 0;
  while (start + 1 < all.length && (all[start + 1] as ReceptionSample).at <= keepFrom) start++;
  return all.slice(start);
}
