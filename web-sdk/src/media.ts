// Stage media in the browser, on the browser's own WebRTC: publish the camera and
// microphone while this participant is ON_STAGE, receive everyone else on stage. The same
// rules as the Rust SDK's media (crates/client/src/media/plan.rs): what should run is a
// pure function of the stage (`mediaPlan`), and `BrowserStageMedia` only carries it out.
//
// Devices are asked for only when going on stage, and every track is stopped when leaving
// it (or on a kick): the camera light goes off with the stage, not with the page.

import { MAX_TILE_SIDE, type MediaKinds, type StageStatus, type TileSize, type VideoLayer } from './protocol.js';
import { receptionOf, receptionSample, withSample, type Reception, type ReceptionSample, type StatsLike } from './reception.js';

/** What the media side needs of a meeting (an `OnstageMeeting` has all of it). */
export interface MediaMeeting {
  /** This participant. */
  readonly userId: string;
  /** The meeting's connection is up (nothing is sent or received while it is down). */
  connected(): boolean;
  /** Everyone in the meeting and their stage status, this participant included. */
  stageStatuses(): ReadonlyArray<{ user_id: string; stage_status: StageStatus }>;
  /** The relays the welcome named, for `RTCPeerConnection`'s `iceServers`. */
  iceServers(): RTCIceServer[];
  /** One signaling call; resolves with its result, rejects with the server's error. */
  call(name: string, args?: Record<string, unknown>): Promise<unknown>;
  /** Subscribes to a meeting event by name; returns the unsubscribe. */
  on(event: string, listener: (event: Record<string, unknown>) => void): () => void;
  /**
   * Subscribes to the SFU's `layers` messages (the simulcast layers of this participant's
   * video some viewer takes); returns the unsubscribe. Without it every layer stays on.
   */
  onLayers?(listener: (rids: string[]) => void): () => void;
  /**
   * Who publishes what, by user id. Reception judges someone's video and sound only while
   * they send it: a camera switched off still sends a black picture a second, which says
   * nothing about the link. Without it, whatever is received is expected.
   */
  readonly publishing?: ReadonlyMap<string, MediaKinds>;
  /**
   * The tiles last told (`media.tiles`). A video shown at 0x0 is not sent here, so its
   * missing pictures are not held against the link.
   */
  tiles?(): ReadonlyArray<TileSize> | null;
}

/** What should run now, from [`mediaPlan`]'s point of view. */
export interface MediaInputs {
  connected: boolean;
  me: string;
  participants: ReadonlyArray<{ user_id: string; stage_status: StageStatus }>;
}

export interface MediaJobs {
  publishing: boolean;
  subscriptions: ReadonlySet<string>;
}

export type MediaAction =
  | { kind: 'stopPublisher' }
  | { kind: 'unsubscribe'; userId: string }
  | { kind: 'startPublisher' }
  | { kind: 'subscribe'; userId: string };

/**
 * The steps that make the running jobs what the stage asks for: publish only while
 * connected and ON_STAGE; receive every other participant ON_STAGE while connected. Stops
 * come before starts, so devices are let go before anything new opens them.
 */
export function mediaPlan(inputs: MediaInputs, jobs: MediaJobs): MediaAction[] {
  const onStage = new Set(
    inputs.connected
      ? inputs.participants.filter((p) => p.stage_status === 'ON_STAGE').map((p) => p.user_id)
      : [],
  );
  const wantPublisher = onStage.has(inputs.me);
  onStage.delete(inputs.me);
  const stops: MediaAction[] = [];
  const starts: MediaAction[] = [];
  if (jobs.publishing && !wantPublisher) stops.push({ kind: 'stopPublisher' });
  for (const userId of [...jobs.subscriptions].sort()) {
    if (!onStage.has(userId)) stops.push({ kind: 'unsubscribe', userId });
  }
  if (wantPublisher && !jobs.publishing) starts.push({ kind: 'startPublisher' });
  for (const userId of [...onStage].sort()) {
    if (!jobs.subscriptions.has(userId)) starts.push({ kind: 'subscribe', userId });
  }
  return [...stops, ...starts];
}

/** A codec as `RTCRtpSender.getCapabilities` lists it. */
export interface Codec {
  mimeType: string;
  clockRate: number;
  channels?: number;
  sdpFmtpLine?: string;
}

/**
 * The video codecs to offer, best first: H.264 constrained baseline with
 * packetization-mode=1 (what the SFU forwards and every Onstage client decodes), then any
 * other H.264 with packetization-mode=1, with retransmission kept. `null` when the browser
 * has no usable H.264 (then it cannot take part in video).
 */
export function h264Preferences<T extends Codec>(codecs: readonly T[]): T[] | null {
  const fmtp = (c: Codec) => c.sdpFmtpLine ?? '';
  const h264 = codecs.filter((c) => c.mimeType.toLowerCase() === 'video/h264' && /packetization-mode=1/.test(fmtp(c)));
  if (!h264.length) return null;
  const baseline = (c: Codec) => /profile-level-id=42e01f/i.test(fmtp(c));
  const ordered = [...h264.filter(baseline), ...h264.filter((c) => !baseline(c))];
  const rtx = codecs.filter((c) => c.mimeType.toLowerCase() === 'video/rtx');
  return [...ordered, ...rtx];
}

/** The simulcast layers a camera may be sent as, lowest first: their RIDs and bitrates. */
export const SIMULCAST_LAYERS = [
  { rid: 'q', maxBitrate: 150_000 },
  { rid: 'h', maxBitrate: 450_000 },
  { rid: 'f', maxBitrate: 1_700_000 },
] as const;

/** How a camera is sent as simulcast: the encodings to offer and their description. */
export interface SimulcastPlan {
  /** For `addTransceiver`'s `sendEncodings`, lowest first. */
  encodings: RTCRtpEncodingParameters[];
  /** For `media.publish`'s `layers`: the same layers, their sizes from the capture's. */
  layers: VideoLayer[];
}

/**
 * The simulcast layers for a capture of `width` x `height` (either orientation): three
 * (q, h, f at a quarter, half and full size) from 1280x720 up, two (q at half size, h at
 * full) from 640x360 up, and `null` below: one plain encoding. Pure.
 */
export function simulcastPlan(width: number | undefined, height: number | undefined): SimulcastPlan | null {
  if (!width || !height || !Number.isFinite(width) || !Number.isFinite(height)) return null;
  const [long, short] = width >= height ? [width, height] : [height, width];
  const scales = long >= 1280 && short >= 720 ? [4, 2, 1] : long >= 640 && short >= 360 ? [2, 1] : null;
  if (!scales) return null;
  const encodings: RTCRtpEncodingParameters[] = [];
  const layers: VideoLayer[] = [];
  scales.forEach((scale, i) => {
    const { rid, maxBitrate } = SIMULCAST_LAYERS[i] as (typeof SIMULCAST_LAYERS)[number];
    encodings.push({ rid, scaleResolutionDownBy: scale, maxBitrate });
    layers.push({
      rid,
      width: Math.floor(width / scale),
      height: Math.floor(height / scale),
      max_bitrate: maxBitrate,
    });
  });
  return { encodings, layers };
}

/**
 * Which of a simulcast sender's encodings (their RIDs, lowest first) stay on when the SFU
 * names `wanted` (its `layers` message): those named, and the lowest always, so a viewer
 * always has a picture to fall back to. Pure.
 */
export function activeEncodings(rids: ReadonlyArray<string | undefined>, wanted: readonly string[]): boolean[] {
  return rids.map((rid, i) => i === 0 || (rid !== undefined && wanted.includes(rid)));
}

/** A stage video as the page shows it (`OnstageMeeting.setTiles`), in device pixels. */
export interface Tile {
  userId: string;
  width: number;
  height: number;
}

/**
 * The `media.tiles` list for `tiles`: sides rounded and kept within 0..`MAX_TILE_SIDE`, a
 * tile whose size is not a number left out (its video then gets what the bandwidth
 * carries). Pure.
 */
export function tileSizes(tiles: readonly Tile[]): TileSize[] {
  const side = (x: number) => Math.min(MAX_TILE_SIDE, Math.max(0, Math.round(x)));
  return tiles
    .filter((t) => !Number.isNaN(t.width) && !Number.isNaN(t.height))
    .map((t) => ({ user_id: t.userId, width: side(t.width), height: side(t.height) }));
}

/** Resolves once ICE gathering is complete (the SFU takes one offer, no trickle), or after `ms`. */
export function gatheringComplete(pc: RTCPeerConnection, ms = 3000): Promise<void> {
  if (pc.iceGatheringState === 'complete') return Promise.resolve();
  return new Promise((resolve) => {
    const timer = setTimeout(done, ms);
    function done() {
      clearTimeout(timer);
      pc.removeEventListener('icegatheringstatechange', check);
      resolve();
    }
    function check() {
      if (pc.iceGatheringState === 'complete') done();
    }
    pc.addEventListener('icegatheringstatechange', check);
  });
}

/** For a `rate_limited` refusal, how long to wait before trying again (ms); else null. */
export function retryAfter(error: unknown): number | null {
  if (typeof error !== 'object' || error === null) return null;
  const { code, retry_after_ms } = error as { code?: unknown; retry_after_ms?: unknown };
  if (code !== 'rate_limited') return null;
  return typeof retry_after_ms === 'number' && retry_after_ms >= 0 ? Math.min(retry_after_ms, 60_000) : 1000;
}

/** Why media could not start, as a stable code (the same words as the desktop app). */
export type MediaProblemCode = 'permission_denied' | 'device_not_found' | 'device_busy' | 'unsupported' | 'negotiation_failed';

export interface MediaProblem {
  code: MediaProblemCode;
  message: string;
}

/** A `getUserMedia` or WebRTC failure in words a user can act on. */
export function mediaProblem(error: unknown): MediaProblem {
  const name = error instanceof Error || (typeof error === 'object' && error !== null && 'name' in error)
    ? String((error as { name: unknown }).name)
    : '';
  const message = error instanceof Error ? error.message : String(error);
  switch (name) {
    case 'NotAllowedError':
    case 'SecurityError':
      return { code: 'permission_denied', message: 'The browser was not allowed to use the camera or microphone' };
    case 'NotFoundError':
    case 'OverconstrainedError':
      return { code: 'device_not_found', message: 'No camera or microphone was found' };
    case 'NotReadableError':
    case 'AbortError':
      return { code: 'device_busy', message: 'The camera or microphone is in use by another program' };
    default:
      return { code: 'negotiation_failed', message: message || 'media could not start' };
  }
}

export interface BrowserMediaOptions {
  /** Defaults to `navigator.mediaDevices.getUserMedia`. */
  getUserMedia?: (constraints: MediaStreamConstraints) => Promise<MediaStream>;
  /** Defaults to the global `RTCPeerConnection`. */
  peerConnection?: new (config: RTCConfiguration) => RTCPeerConnection;
  /**
   * What to capture when going on stage; by default sound and a camera at 1280x720 if it
   * can (ideal constraints: any camera is taken).
   */
  constraints?: MediaStreamConstraints;
  /**
   * Send a camera of 640x360 or more as simulcast layers (`simulcastPlan`), so that each
   * viewer gets the one its tile and network take (default true); false: one encoding.
   */
  simulcast?: boolean;
  /**
   * How long an offer waits for the browser's own ICE candidates (ms; default 0). The SFU
   * needs none: it answers with its addresses and learns the browser's from its
   * connectivity checks. Not waiting halves a browser speaker's first picture (BENCHMARKS.md).
   */
  candidateWaitMs?: number;
  /** How often each subscription's reception is read (ms; default 1000, 0: never). */
  receptionEveryMs?: number;
  /** The clock reception samples are taken by (ms; default `performance.now`). */
  now?: () => number;
}

type Listener = () => void;

/** Sound, and a camera at 1280x720 where it can (enough for three simulcast layers). */
const DEFAULT_CONSTRAINTS: MediaStreamConstraints = {
  audio: true,
  video: { width: { ideal: 1280 }, height: { ideal: 720 } },
};

/**
 * The stage's media in a browser. Follows the meeting: publishes while ON_STAGE (asking
 * for the devices then), receives everyone else on stage as one `MediaStream` each
 * (`streams`), and lets go of all of it on `close()`. `onChange` fires whenever `streams`,
 * `localStream`, `problem` or `reception()` changed.
 */
export class BrowserStageMedia {
  /** Received streams by participant, for `<video>` elements. */
  readonly streams = new Map<string, MediaStream>();
  /** The local capture while publishing (for a self-view), else null. */
  localStream: MediaStream | null = null;
  /** The last device or negotiation failure, until the next successful start. */
  problem: MediaProblem | null = null;
  mic = true;
  camera = true;

  private publisher: RTCPeerConnection | null = null;
  /** The publication's simulcast video sender, while there is one. */
  private simulcastSender: RTCRtpSender | null = null;
  /** The RIDs the SFU last named for this publication (`layers`); null: not told yet. */
  private wantedRids: string[] | null = null;
  private layersPending: Promise<void> = Promise.resolve();
  private subscriptions = new Map<string, RTCPeerConnection>();
  private pending: Promise<void> = Promise.resolve();
  private readonly listeners = new Set<Listener>();
  private readonly unsubscribe: Array<() => void> = [];
  private closed = false;
  private retry: ReturnType<typeof setTimeout> | null = null;
  /** Each subscription's reception samples, with the peer they were read from. */
  private readonly receptionHistory = new Map<string, { pc: RTCPeerConnection; samples: ReceptionSample[] }>();
  private receptionLevels = new Map<string, Reception>();
  private receptionTimer: ReturnType<typeof setInterval> | null = null;
  private readingReception = false;

  constructor(
    private readonly meeting: MediaMeeting,
    private readonly options: BrowserMediaOptions = {},
  ) {
    const follow = () => this.follow();
    for (const event of ['participantStageStatus', 'participantLeft', 'connectionStateUpdate', 'stageStatusUpdate']) {
      this.unsubscribe.push(meeting.on(event, follow));
    }
    // A host muted this participant: the microphone goes off here as well (the server
    // already holds the audio); the user may switch it on again.
    this.unsubscribe.push(
      meeting.on('participantMuted', (e) => {
        if (e['user_id'] === meeting.userId) void this.setMic(false);
      }),
    );
    if (meeting.onLayers) {
      this.unsubscribe.push(
        meeting.onLayers((rids) => {
          this.wantedRids = rids;
          this.applyLayers();
        }),
      );
    }
    const every = options.receptionEveryMs ?? 1000;
    if (every > 0) this.receptionTimer = setInterval(() => void this.readReception(), every);
    this.follow();
  }

  /** What this participant's publication carries now: nothing while not publishing. */
  get publishing(): { audio: boolean; video: boolean } {
    const stream = this.publisher ? this.localStream : null;
    return {
      audio: stream !== null && this.mic && stream.getAudioTracks().length > 0,
      video: stream !== null && this.camera && stream.getVideoTracks().length > 0,
    };
  }

  /**
   * Audio levels (0..1) as the browser measures them (`getStats`): this microphone's while
   * publishing (`local`, else null), and each received participant's by user id.
   */
  async audioLevels(): Promise<{ local: number | null; remote: Map<string, number> }> {
    const levelOf = async (pc: RTCPeerConnection, type: string): Promise<number | null> => {
      let level: number | null = null;
      (await pc.getStats()).forEach((r: { type?: string; kind?: string; audioLevel?: number }) => {
        if (r.type === type && r.kind === 'audio' && typeof r.audioLevel === 'number') level = r.audioLevel;
      });
      return level;
    };
    const remote = new Map<string, number>();
    for (const [userId, pc] of [...this.subscriptions]) {
      const level = await levelOf(pc, 'inbound-rtp').catch(() => null);
      if (level !== null) remote.set(userId, level);
    }
    const local = this.publisher ? await levelOf(this.publisher, 'media-source').catch(() => null) : null;
    return { local, remote };
  }

  /**
   * How well each received participant's media reaches this browser, by user id (the rule
   * of `receptionOf`, read from `getStats` about every second). Someone is missing until
   * 2 s of their media has come. `onChange` fires when a level changes.
   */
  reception(): Map<string, Reception> {
    return new Map(this.receptionLevels);
  }

  onChange(listener: Listener): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  /** Unmutes (`true`) or mutes the microphone and tells everyone. */
  async setMic(on: boolean): Promise<void> {
    this.mic = on;
    await this.applySwitches();
  }

  /** Turns the camera on or off and tells everyone. */
  async setCamera(on: boolean): Promise<void> {
    this.camera = on;
    await this.applySwitches();
  }

  /** Ends everything: the tracks stop, the peer connections close. */
  async close(): Promise<void> {
    this.closed = true;
    if (this.retry) clearTimeout(this.retry);
    this.unsubscribe.splice(0).forEach((u) => u());
    if (this.receptionTimer) clearInterval(this.receptionTimer);
    this.receptionTimer = null;
    await this.serial(async () => {
      this.stopPublisher();
      for (const userId of [...this.subscriptions.keys()]) this.stopSubscription(userId);
    });
  }

  /** Runs the plan for the stage as it is now, after whatever is still running. */
  private follow(): void {
    void this.serial(async () => {
      if (this.closed) return;
      const actions = mediaPlan(
        { connected: this.meeting.connected(), me: this.meeting.userId, participants: this.meeting.stageStatuses() },
        { publishing: this.publisher !== null, subscriptions: new Set(this.subscriptions.keys()) },
      );
      for (const action of actions) {
        switch (action.kind) {
          case 'stopPublisher':
            this.stopPublisher();
            break;
          case 'unsubscribe':
            this.stopSubscription(action.userId);
            break;
          case 'startPublisher':
            await this.startPublisher();
            break;
          case 'subscribe':
            await this.startSubscription(action.userId);
            break;
        }
      }
    });
  }

  /**
   * One change at a time, in order: a leave never overtakes the join before it. A start the
   * server put off (`rate_limited`: this participant's changes are over budget) is tried
   * again once the budget allows, as the Rust SDK does; other failures are `problem`.
   */
  private serial(work: () => Promise<void>): Promise<void> {
    this.pending = this.pending.then(work).catch((e: unknown) => {
      const retryMs = retryAfter(e);
      if (retryMs !== null) {
        this.retry ??= setTimeout(() => {
          this.retry = null;
          this.follow();
        }, retryMs);
        return;
      }
      this.problem = mediaProblem(e);
      this.changed();
    });
    return this.pending;
  }

  /** Takes one reception sample of every subscription and updates the levels. */
  private async readReception(): Promise<void> {
    if (this.readingReception || this.closed) return;
    this.readingReception = true;
    try {
      const now = this.options.now ?? (() => performance.now());
      const hidden = new Set(
        (this.meeting.tiles?.() ?? []).filter((t) => t.width === 0 || t.height === 0).map((t) => t.user_id),
      );
      for (const [userId, pc] of [...this.subscriptions]) {
        const report = await pc.getStats().catch(() => null);
        if (!report || this.subscriptions.get(userId) !== pc) continue;
        const sends = this.meeting.publishing?.get(userId) ?? { audio: true, video: true };
        const sample = receptionSample(report as unknown as StatsLike, now(), {
          audio: sends.audio,
          video: sends.video && !hidden.has(userId),
        });
        // A new subscription's counters start again from zero: so does its history.
        const kept = this.receptionHistory.get(userId);
        const samples = withSample(kept?.pc === pc ? kept.samples : [], sample);
        this.receptionHistory.set(userId, { pc, samples });
      }
      const levels = new Map<string, Reception>();
      for (const [userId, { samples }] of [...this.receptionHistory]) {
        if (!this.subscriptions.has(userId)) {
          this.receptionHistory.delete(userId);
          continue;
        }
        const level = receptionOf(samples);
        if (level) levels.set(userId, level);
      }
      const same =
        levels.size === this.receptionLevels.size &&
        [...levels].every(([userId, level]) => this.receptionLevels.get(userId) === level);
      if (!same && !this.closed) {
        this.receptionLevels = levels;
        this.changed();
      }
    } finally {
      this.readingReception = false;
    }
  }

  private changed() {
    this.listeners.forEach((l) => l());
  }

  private newPeer(): RTCPeerConnection {
    const Peer = this.options.peerConnection ?? RTCPeerConnection;
    return new Peer({ iceServers: this.meeting.iceServers(), bundlePolicy: 'max-bundle' });
  }

  private async startPublisher(): Promise<void> {
    const getUserMedia = this.options.getUserMedia ?? ((c) => navigator.mediaDevices.getUserMedia(c));
    const stream = await getUserMedia(this.options.constraints ?? DEFAULT_CONSTRAINTS);
    const pc = this.newPeer();
    this.publisher = pc;
    this.localStream = stream;
    this.wantedRids = null;
    let layers: VideoLayer[] = [];
    try {
      for (const track of stream.getTracks()) {
        const plan =
          track.kind === 'video' && this.options.simulcast !== false
            ? simulcastPlan(track.getSettings().width, track.getSettings().height)
            : null;
        const transceiver = pc.addTransceiver(track, {
          direction: 'sendonly',
          streams: [stream],
          ...(plan ? { sendEncodings: plan.encodings } : {}),
        });
        if (track.kind === 'video') {
          const prefs = h264Preferences(RTCRtpSender.getCapabilities('video')?.codecs ?? []);
          if (!prefs) throw Object.assign(new Error('this browser cannot send H.264 video'), { name: 'unsupported' });
          transceiver.setCodecPreferences(prefs);
        }
        if (plan) {
          layers = plan.layers;
          this.simulcastSender = transceiver.sender;
        }
      }
      this.applyTrackSwitches();
      await pc.setLocalDescription(await pc.createOffer());
      await gatheringComplete(pc, this.options.candidateWaitMs ?? 0);
      const sdp = pc.localDescription?.sdp ?? '';
      const answer = (await this.meeting.call('media.publish', layers.length ? { sdp, layers } : { sdp })) as {
        sdp: string;
      };
      if (this.publisher !== pc) return; // left the stage meanwhile
      await pc.setRemoteDescription({ type: 'answer', sdp: answer.sdp });
      // The SFU may have named the layers it wants before the answer was taken.
      this.applyLayers();
      await this.tellState();
      this.problem = null;
    } catch (e) {
      this.stopPublisher();
      throw e;
    } finally {
      this.changed();
    }
  }

  /**
   * Turns the simulcast encodings the SFU did not name off (the browser stops encoding
   * them) and those it names on, never the lowest; one change at a time, in order. A
   * sender that refuses keeps encoding as it was: that costs CPU, not the picture.
   */
  private applyLayers(): void {
    this.layersPending = this.layersPending.then(async () => {
      const sender = this.simulcastSender;
      const wanted = this.wantedRids;
      if (!sender || wanted === null || this.publisher?.remoteDescription == null) return;
      const params = sender.getParameters();
      const active = activeEncodings(
        params.encodings.map((e) => e.rid),
        wanted,
      );
      if (params.encodings.every((e, i) => (e.active ?? true) === active[i])) return;
      params.encodings.forEach((e, i) => (e.active = active[i] ?? true));
      await sender.setParameters(params).catch(() => undefined);
    });
  }

  private stopPublisher(): void {
    const pc = this.publisher;
    this.publisher = null;
    this.simulcastSender = null;
    this.wantedRids = null;
    this.localStream?.getTracks().forEach((t) => t.stop());
    this.localStream = null;
    if (pc) {
      pc.close();
      this.changed();
    }
  }

  private async startSubscription(userId: string): Promise<void> {
    const pc = this.newPeer();
    this.subscriptions.set(userId, pc);
    const stream = new MediaStream();
    pc.addTransceiver('audio', { direction: 'recvonly' });
    const video = pc.addTransceiver('video', { direction: 'recvonly' });
    const prefs = h264Preferences(RTCRtpReceiver.getCapabilities('video')?.codecs ?? []);
    if (prefs) video.setCodecPreferences(prefs);
    pc.addEventListener('track', (e) => {
      stream.addTrack(e.track);
      this.streams.set(userId, stream);
      this.changed();
    });
    try {
      await pc.setLocalDescription(await pc.createOffer());
      await gatheringComplete(pc, this.options.candidateWaitMs ?? 0);
      const answer = (await this.meeting.call('media.subscribe', {
        user_id: userId,
        sdp: pc.localDescription?.sdp ?? '',
      })) as { sdp: string };
      if (this.subscriptions.get(userId) !== pc) return;
      await pc.setRemoteDescription({ type: 'answer', sdp: answer.sdp });
    } catch (e) {
      this.stopSubscription(userId);
      throw e;
    }
  }

  private stopSubscription(userId: string): void {
    const pc = this.subscriptions.get(userId);
    this.subscriptions.delete(userId);
    this.receptionHistory.delete(userId);
    this.receptionLevels.delete(userId);
    const stream = this.streams.get(userId);
    this.streams.delete(userId);
    stream?.getTracks().forEach((t) => t.stop());
    if (pc) {
      pc.close();
      this.changed();
    }
  }

  private applyTrackSwitches(): void {
    for (const t of this.localStream?.getAudioTracks() ?? []) t.enabled = this.mic;
    for (const t of this.localStream?.getVideoTracks() ?? []) t.enabled = this.camera;
  }

  private async applySwitches(): Promise<void> {
    this.applyTrackSwitches();
    this.changed();
    if (this.publisher) await this.tellState();
  }

  /** Everyone's tiles show what this publication carries (and unmuting lifts a host's hold). */
  private async tellState(): Promise<void> {
    await this.meeting.call('media.state', { audio: this.mic, video: this.camera });
  }
}
