// Stage media in the browser, on the browser's own WebRTC: publish the camera and
// microphone while this participant is ON_STAGE, receive everyone else on stage. The same
// rules as the Rust SDK's media (crates/client/src/media/plan.rs): what should run is a
// pure function of the stage (`mediaPlan`), and `BrowserStageMedia` only carries it out.
//
// Devices are asked for only when going on stage, and every track is stopped when leaving
// it (or on a kick): the camera light goes off with the stage, not with the page.

import type { StageStatus } from './protocol.js';

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
  /** What to capture when going on stage. */
  constraints?: MediaStreamConstraints;
  /**
   * How long an offer waits for the browser's own ICE candidates (ms; default 0). The SFU
   * needs none: it answers with its addresses and learns the browser's from its
   * connectivity checks. Not waiting halves a browser speaker's first picture (BENCHMARKS.md).
   */
  candidateWaitMs?: number;
}

type Listener = () => void;

/**
 * The stage's media in a browser. Follows the meeting: publishes while ON_STAGE (asking
 * for the devices then), receives everyone else on stage as one `MediaStream` each
 * (`streams`), and lets go of all of it on `close()`. `onChange` fires whenever `streams`,
 * `localStream` or `problem` changed.
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
  private subscriptions = new Map<string, RTCPeerConnection>();
  private pending: Promise<void> = Promise.resolve();
  private readonly listeners = new Set<Listener>();
  private readonly unsubscribe: Array<() => void> = [];
  private closed = false;
  private retry: ReturnType<typeof setTimeout> | null = null;

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

  private changed() {
    this.listeners.forEach((l) => l());
  }

  private newPeer(): RTCPeerConnection {
    const Peer = this.options.peerConnection ?? RTCPeerConnection;
    return new Peer({ iceServers: this.meeting.iceServers(), bundlePolicy: 'max-bundle' });
  }

  private async startPublisher(): Promise<void> {
    const getUserMedia = this.options.getUserMedia ?? ((c) => navigator.mediaDevices.getUserMedia(c));
    const stream = await getUserMedia(this.options.constraints ?? { audio: true, video: { width: 1280, height: 720 } });
    const pc = this.newPeer();
    this.publisher = pc;
    this.localStream = stream;
    try {
      for (const track of stream.getTracks()) {
        const transceiver = pc.addTransceiver(track, { direction: 'sendonly', streams: [stream] });
        if (track.kind === 'video') {
          const prefs = h264Preferences(RTCRtpSender.getCapabilities('video')?.codecs ?? []);
          if (!prefs) throw Object.assign(new Error('this browser cannot send H.264 video'), { name: 'unsupported' });
          transceiver.setCodecPreferences(prefs);
        }
      }
      this.applyTrackSwitches();
      await pc.setLocalDescription(await pc.createOffer());
      await gatheringComplete(pc, this.options.candidateWaitMs ?? 0);
      const answer = (await this.meeting.call('media.publish', { sdp: pc.localDescription?.sdp ?? '' })) as { sdp: string };
      if (this.publisher !== pc) return; // left the stage meanwhile
      await pc.setRemoteDescription({ type: 'answer', sdp: answer.sdp });
      await this.tellState();
      this.problem = null;
    } catch (e) {
      this.stopPublisher();
      throw e;
    } finally {
      this.changed();
    }
  }

  private stopPublisher(): void {
    const pc = this.publisher;
    this.publisher = null;
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
