import { describe, expect, it } from "vitest";
import {
  RECEPTION_HISTORY_MS,
  receptionOf,
  receptionSample,
  withSample,
  type ReceptionSample,
  type StatsLike,
} from "./reception.js";

/** What one second of media brought: pictures, freezes ended, sound played and made up. */
interface Second {
  fps?: number;
  freezes?: number;
  played?: number;
  concealed?: number;
  video?: boolean;
  audio?: boolean;
}

const STEADY: Second = { fps: 30, played: 48_000, concealed: 0 };

/**
 * A history sampled every second from t=0 (nothing received yet), each entry of `seconds`
 * what the second up to its sample brought, the counters summed as a browser's are.
 */
function history(seconds: readonly Second[]): ReceptionSample[] {
  const samples: ReceptionSample[] = [
    {
      at: 0,
      videoExpected: seconds[0]?.video ?? true,
      audioExpected: seconds[0]?.audio ?? true,
      framesDecoded: 0,
      freezeCount: 0,
      concealedSamples: 0,
      totalSamplesReceived: 0,
    },
  ];
  seconds.forEach((s, i) => {
    const prev = samples[samples.length - 1] as ReceptionSample;
    samples.push({
      at: (i + 1) * 1000,
      videoExpected: s.video ?? true,
      audioExpected: s.audio ?? true,
      framesDecoded: prev.framesDecoded + (s.fps ?? 0),
      freezeCount: prev.freezeCount + (s.freezes ?? 0),
      concealedSamples: prev.concealedSamples + (s.concealed ?? 0),
      totalSamplesReceived: prev.totalSamplesReceived + (s.played ?? 0),
    });
  });
  return samples;
}

const steady = (n: number, s: Second = STEADY): Second[] => Array.from({ length: n }, () => ({ ...s }));
/** The level after each of `seconds`, from the first second on. */
const levels = (seconds: readonly Second[]) =>
  seconds.map((_, i) => receptionOf(history(seconds.slice(0, i + 1))));

describe("the reception rule", () => {
  it("is unknown until 2 s after the first media, then good for steady media", () => {
    expect(receptionOf([])).toBeNull();
    // Two seconds of nothing, then media: unknown until 2 s after it came.
    const seconds = [{}, {}, ...steady(6)];
    expect(levels(seconds)).toEqual([null, null, null, null, "good", "good", "good", "good"]);
    // From t=0 with media in the first second (first seen at 1 s).
    expect(levels(steady(4))).toEqual([null, null, "good", "good"]);
  });

  it("is poor below 5 pictures a second while video is expected", () => {
    expect(receptionOf(history([...steady(10), { ...STEADY, fps: 4 }]))).toBe("poor");
    expect(receptionOf(history([...steady(10), { ...STEADY, fps: 0 }]))).toBe("poor");
  });

  it("is fair below 0.6 of the best second of the last 10 s", () => {
    // 30 at best: 17 is below 18, 18 is not.
    expect(receptionOf(history([...steady(10), { ...STEADY, fps: 17 }]))).toBe("fair");
    expect(receptionOf(history([...steady(10), { ...STEADY, fps: 18 }]))).toBe("good");
    // A best second 10 s ago still counts; 11 s ago it does not.
    const peakThen = (ago: number) => [
      ...steady(3, { ...STEADY, fps: 10 }),
      { ...STEADY, fps: 30 },
      ...steady(ago, { ...STEADY, fps: 10 }),
    ];
    expect(receptionOf(history(peakThen(10)))).toBe("fair");
    expect(receptionOf(history(peakThen(11)))).toBe("good");
  });

  it("is poor for 5 s after a freeze ended, fair until 15 s", () => {
    const after = (n: number) => receptionOf(history([...steady(5), { ...STEADY, freezes: 1 }, ...steady(n)]));
    expect(after(0)).toBe("poor");
    expect(after(4)).toBe("poor");
    expect(after(5)).toBe("fair");
    expect(after(14)).toBe("fair");
    expect(after(15)).toBe("good");
  });

  it("takes a second without a picture for a freeze going on, and its end from then", () => {
    const seconds = [...steady(5), { ...STEADY, fps: 0 }, { ...STEADY, fps: 0 }];
    expect(receptionOf(history(seconds))).toBe("poor");
    // Pictures again: the freeze ended with the last second without one.
    expect(receptionOf(history([...seconds, ...steady(4)]))).toBe("poor");
    expect(receptionOf(history([...seconds, ...steady(5)]))).toBe("fair");
    expect(receptionOf(history([...seconds, ...steady(15)]))).toBe("good");
  });

  it("judges sound by its concealment over the last 5 s", () => {
    const lossy = (share: number) => ({ ...STEADY, concealed: 48_000 * share });
    // 10 % is still fair; above it is poor. 2 % is still good; above it is fair.
    expect(receptionOf(history([...steady(5), ...steady(5, lossy(0.1))]))).toBe("fair");
    expect(receptionOf(history([...steady(5), ...steady(5, lossy(0.11))]))).toBe("poor");
    expect(receptionOf(history([...steady(5), ...steady(5, lossy(0.02))]))).toBe("good");
    expect(receptionOf(history([...steady(5), ...steady(5, lossy(0.03))]))).toBe("fair");
    // One bad second: 60 % of a second is 12 % of 5 s, then out of the window after 5 s.
    expect(receptionOf(history([...steady(5), lossy(0.6), ...steady(4)]))).toBe("poor");
    expect(receptionOf(history([...steady(5), lossy(0.6), ...steady(5)]))).toBe("good");
  });

  it("judges sound alone when no video is expected", () => {
    const soundOnly = { ...STEADY, fps: 0, video: false };
    expect(levels(steady(4, soundOnly))).toEqual([null, null, "good", "good"]);
    expect(receptionOf(history([...steady(5, soundOnly), { ...soundOnly, concealed: 48_000 }]))).toBe("poor");
  });

  it("leaves out sound that is not expected (muted, held by a host)", () => {
    const mutedLossy = { ...STEADY, audio: false, concealed: 48_000 };
    expect(receptionOf(history([...steady(5), ...steady(5, mutedLossy)]))).toBe("good");
  });

  it("is unknown while nothing is expected: muted with the camera off", () => {
    const nothing = { fps: 1, played: 48_000, concealed: 48_000, audio: false, video: false };
    expect(receptionOf(history([...steady(5), nothing]))).toBeNull();
    expect(receptionOf(history([...steady(5), nothing, STEADY]))).toBe("good");
  });

  it("judges video from 2 s after it is expected again, and not while it is not", () => {
    const off = { ...STEADY, fps: 1, freezes: 0, video: false };
    // Camera off (a black picture a second) is no bad reception.
    expect(receptionOf(history([...steady(5), ...steady(5, off)]))).toBe("good");
    // Camera on again: its first picture waits for a keyframe, counted as a freeze of the
    // last one; none of it is held against the link.
    const back = [...steady(5), ...steady(5, off), { ...STEADY, fps: 0 }, { ...STEADY, fps: 12, freezes: 1 }];
    expect(receptionOf(history(back))).toBe("good");
    expect(receptionOf(history([...back, ...steady(3)]))).toBe("good");
    // A freeze once video is judged again counts.
    expect(receptionOf(history([...back, ...steady(2), { ...STEADY, freezes: 1 }]))).toBe("poor");
  });

  it("keeps a freeze in mind after video stops being expected", () => {
    const off = { ...STEADY, fps: 0, video: false };
    expect(receptionOf(history([...steady(5), { ...STEADY, freezes: 1 }, off]))).toBe("fair");
  });

  it("reads fps over a second from samples taken faster than that", () => {
    // Every 250 ms: 30 fps is 7 or 8 pictures a sample.
    const fast: ReceptionSample[] = [];
    for (let i = 0; i <= 40; i++) {
      fast.push({
        at: i * 250,
        videoExpected: true,
        audioExpected: true,
        framesDecoded: Math.floor(i * 7.5),
        freezeCount: 0,
        concealedSamples: 0,
        totalSamplesReceived: i * 12_000,
      });
    }
    expect(receptionOf(fast)).toBe("good");
  });

  it("gives the same level from a trimmed history", () => {
    let kept: ReceptionSample[] = [];
    const all = history([...steady(30), { ...STEADY, freezes: 1 }, ...steady(8)]);
    for (const s of all) kept = withSample(kept, s);
    expect(kept.length).toBeLessThan(all.length);
    expect((kept[1] as ReceptionSample).at).toBeGreaterThan((all[all.length - 1] as ReceptionSample).at - RECEPTION_HISTORY_MS);
    expect(receptionOf(kept)).toBe(receptionOf(all));
    expect(receptionOf(kept)).toBe("fair");
  });
});

describe("a sample from the browser's statistics", () => {
  const report = (...stats: Record<string, unknown>[]): StatsLike => new Map(stats.map((s, i) => [String(i), s]));

  it("reads the inbound video and audio counters", () => {
    const stats = report(
      { type: "inbound-rtp", kind: "video", framesDecoded: 300, freezeCount: 2, framesPerSecond: 30 },
      { type: "inbound-rtp", kind: "audio", concealedSamples: 900, silentConcealedSamples: 100, totalSamplesReceived: 480_000 },
      { type: "outbound-rtp", kind: "video", framesDecoded: 7 },
      { type: "candidate-pair", bytesReceived: 1 },
    );
    expect(receptionSample(stats, 1234, { audio: true, video: true })).toEqual({
      at: 1234,
      videoExpected: true,
      audioExpected: true,
      framesDecoded: 300,
      freezeCount: 2,
      concealedSamples: 800,
      totalSamplesReceived: 480_000,
    });
  });

  it("expects nothing that is not received, nor what the participant does not send", () => {
    const audioOnly = report({ type: "inbound-rtp", kind: "audio", totalSamplesReceived: 10 });
    expect(receptionSample(audioOnly, 0, { audio: true, video: true })).toMatchObject({
      videoExpected: false,
      audioExpected: true,
    });
    const both = report({ type: "inbound-rtp", kind: "video" }, { type: "inbound-rtp", kind: "audio" });
    expect(receptionSample(both, 0, { audio: false, video: false })).toMatchObject({
      videoExpected: false,
      audioExpected: false,
    });
  });

  it("takes a missing counter (a browser without freezeCount) as none, and older mediaType", () => {
    const stats = report({ type: "inbound-rtp", mediaType: "video", framesDecoded: 5, freezeCount: "x" });
    expect(receptionSample(stats, 0, { audio: true, video: true })).toMatchObject({
      videoExpected: true,
      framesDecoded: 5,
      freezeCount: 0,
      totalSamplesReceived: 0,
    });
  });
});
