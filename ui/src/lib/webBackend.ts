// The browser's backend: the same `Backend` the desktop window has, over the web Stage SDK
// (the signaling WebSocket) and the browser's own WebRTC (`BrowserStageMedia`: publish
// while ON_STAGE, receive everyone else on stage). The Onstage server serves this page at
// /join, so the server is the page's origin, and the invite comes in the address's
// fragment (`/join#token=T`), which never reaches a request line or a log.
//
// What the desktop shell does here that a browser cannot — host a meeting, make invite
// links — is refused with `unavailable`; the UI does not offer it (`kind: 'web'`).

import {
  BrowserStageMedia,
  OnstageMeeting,
  mediaProblem,
  type CallName,
  type MediaMeeting,
  type MeetingEvent as SdkEvent,
  type MeetingEventName,
} from '@onstage/web-sdk';
import type { Backend } from './backend';
import { Listeners } from './listeners';
import { LOCAL_KEY, userKey } from './origin';
import type {
  AppError,
  AudioLevel,
  BackendError,
  DeviceSelection,
  JoinArgs,
  MeetingEvent,
  Session,
  StreamMap,
} from './types';
import { appLinkFor, inviteInFragment, pageLinkFor, parseJoinLink, type PageInvite } from './links';
import { captureConstraints, devicesOf, mediaErrorOf, sessionOf } from './webSession';

/** How often the tiles' audio levels are read from the browser's statistics. */
const LEVEL_EVERY_MS = 200;

const fail = (code: BackendError['code'], message: string): BackendError => ({ code, message });
const desktopOnly = () => Promise.reject(fail('unavailable', 'hosting and invite links are in the desktop app'));

/** The meeting as `BrowserStageMedia` drives it (the SDK's generic `call`/`on`, by name). */
function mediaMeetingOf(m: OnstageMeeting): MediaMeeting {
  return {
    get userId() {
      return m.userId;
    },
    connected: () => m.connected(),
    stageStatuses: () => m.stageStatuses(),
    iceServers: () => m.iceServers(),
    call: (name, args) => m.call(name as CallName, (args ?? {}) as never),
    on: (event, listener) => m.on(event as MeetingEventName, listener as never),
    onLayers: (listener) => m.onLayers(listener),
    get publishing() {
      return m.publishing;
    },
    tiles: () => m.tiles(),
  };
}

/** One joined meeting and its media, until it is left. */
class Joined {
  readonly media: BrowserStageMedia;
  private readonly stops: Array<() => void> = [];
  private levelTimer: ReturnType<typeof setInterval> | null = null;

  constructor(
    readonly meeting: OnstageMeeting,
    readonly server: string,
    capture: (c: MediaStreamConstraints) => Promise<MediaStream>,
    hooks: { event: (e: SdkEvent) => void; changed: () => void; levels: (l: AudioLevel) => void },
  ) {
    this.media = new BrowserStageMedia(mediaMeetingOf(meeting), { getUserMedia: capture });
    this.stops.push(meeting.onAny(hooks.event));
    this.stops.push(this.media.onChange(hooks.changed));
    this.levelTimer = setInterval(() => {
      void this.media.audioLevels().then(({ local, remote }) => {
        if (local !== null) hooks.levels({ origin: 'local', level: local });
        remote.forEach((level, user_id) => hooks.levels({ origin: 'remote', user_id, level }));
      });
    }, LEVEL_EVERY_MS);
  }

  session(): Session {
    const m = this.meeting;
    return sessionOf(
      {
        meetingId: m.meetingId,
        title: m.title,
        userId: m.userId,
        preset: m.preset,
        self: m.self,
        participants: m.participants,
        publishing: m.publishing,
        connectionState: m.connectionState,
        endReason: m.endReason,
        maxOnStage: m.maxOnStage,
        accessRequests: m.stage.accessRequests,
        placeInQueue: m.stage.placeInQueue,
      },
      {
        mic: this.media.mic,
        camera: this.media.camera,
        publishing: this.media.publishing,
        reception: this.media.reception(),
      },
    );
  }

  async close(): Promise<void> {
    if (this.levelTimer) clearInterval(this.levelTimer);
    this.levelTimer = null;
    this.stops.splice(0).forEach((s) => s());
    await this.media.close();
  }
}

export interface WebEnvironment {
  /** The page's address: its origin is the server, its fragment the invite. */
  location: Pick<Location, 'origin' | 'hash'>;
  /** Where the page's address is rewritten (a guest's own token, so a reload comes back). */
  replaceAddress: (url: string) => void;
  mediaDevices: Pick<MediaDevices, 'getUserMedia' | 'enumerateDevices'>;
}

function browserEnvironment(): WebEnvironment {
  return {
    location: window.location,
    replaceAddress: (url) => window.history.replaceState(null, '', url),
    mediaDevices: navigator.mediaDevices,
  };
}

/**
 * The green room's microphone level. A publication's comes from the browser's statistics;
 * a preview has none, so it is read from the samples here (Web Audio), as often as the
 * stage's. Each reading is the RMS of the last ~170 ms, so a short sound is not missed
 * between readings. Answers the function that stops it.
 */
function previewMeter(stream: MediaStream, report: (level: number) => void): () => void {
  const track = stream.getAudioTracks()[0];
  if (!track || typeof AudioContext === 'undefined') return () => undefined;
  const context = new AudioContext();
  const source = context.createMediaStreamSource(new MediaStream([track]));
  const analyser = context.createAnalyser();
  analyser.fftSize = 8192;
  source.connect(analyser);
  const samples = new Float32Array(analyser.fftSize);
  const timer = setInterval(() => {
    analyser.getFloatTimeDomainData(samples);
    let sum = 0;
    for (const x of samples) sum += x * x;
    report(track.enabled ? Math.sqrt(sum / samples.length) : 0);
  }, LEVEL_EVERY_MS);
  return () => {
    clearInterval(timer);
    source.disconnect();
    void context.close();
  };
}

export function createWebBackend(env: WebEnvironment = browserEnvironment()): Backend {
  const origin = env.location.origin;
  const sessions = new Listeners<Session>();
  const events = new Listeners<MeetingEvent>();
  const mediaErrors = new Listeners<BackendError>();
  const levels = new Listeners<AudioLevel>();
  const appErrors = new Listeners<AppError>();
  const streamListeners = new Listeners<StreamMap>();

  let joined: Joined | null = null;
  /** The last meeting's server and participant token, for Rejoin. */
  let last: { server: string; token: string } | null = null;
  let preview: MediaStream | null = null;
  let stopMeter: () => void = () => undefined;
  let selection: DeviceSelection = {};
  let lastError: AppError | undefined;
  let sessionQueued = false;
  /** The join the page's own address asked for, while it runs. */
  let startJoin: Promise<void> | null = null;

  const live = (): Joined => {
    if (!joined) throw fail('invalid_state', 'not in a meeting');
    return joined;
  };

  function streams(): StreamMap {
    const map: StreamMap = {};
    const local = joined?.media.localStream ?? preview;
    if (local) map[LOCAL_KEY] = local;
    joined?.media.streams.forEach((stream, userId) => (map[userKey(userId)] = stream));
    return map;
  }

  /** Many changes in one turn (an event and the media following it) make one session update. */
  function changed() {
    streamListeners.emit(streams());
    if (sessionQueued) return;
    sessionQueued = true;
    queueMicrotask(() => {
      sessionQueued = false;
      if (joined) sessions.emit(joined.session());
    });
  }

  let lastProblem: unknown = null;
  function mediaChanged() {
    const problem = joined?.media.problem ?? null;
    if (problem && problem !== lastProblem) mediaErrors.emit(mediaErrorOf(problem));
    lastProblem = problem;
    changed();
  }

  function reportMedia(device: 'camera' | 'microphone', e: unknown) {
    mediaErrors.emit(mediaErrorOf(mediaProblem(e), device));
  }

  /**
   * The camera and microphone for going on stage: the green room's preview if it runs (no
   * second prompt, no flicker), else asked for now. A missing or busy camera leaves the
   * microphone working and the other way round; a refused permission refuses both.
   */
  async function capture(): Promise<MediaStream> {
    if (preview) {
      const handed = preview;
      preview = null;
      // On stage the level comes from the publication's statistics.
      endMeter();
      return handed;
    }
    const get = (c: MediaStreamConstraints) => env.mediaDevices.getUserMedia(c);
    try {
      return await get(captureConstraints(selection));
    } catch (both) {
      if ((both as { name?: string }).name === 'NotAllowedError') throw both;
      const audio = await get(captureConstraints(selection, { audio: true, video: false })).catch((e: unknown) => {
        reportMedia('microphone', e);
        return null;
      });
      const video = await get(captureConstraints(selection, { audio: false, video: true })).catch((e: unknown) => {
        reportMedia('camera', e);
        return null;
      });
      if (!audio && !video) throw both;
      return new MediaStream([...(audio?.getTracks() ?? []), ...(video?.getTracks() ?? [])]);
    }
  }

  async function startPreview() {
    preview = await env.mediaDevices.getUserMedia(captureConstraints(selection));
    stopMeter = previewMeter(preview, (level) => levels.emit({ origin: 'local', level }));
    changed();
  }

  function endMeter() {
    stopMeter();
    stopMeter = () => undefined;
  }

  function stopPreview() {
    endMeter();
    preview?.getTracks().forEach((t) => t.stop());
    preview = null;
    changed();
  }

  async function enter(server: string, invite: PageInvite, name?: string): Promise<Session> {
    if (joined) await leaveQuietly();
    const meeting =
      'token' in invite
        ? await OnstageMeeting.join(server, invite.token)
        : await OnstageMeeting.joinGuest(server, invite.invite, name ?? '');
    joined = new Joined(meeting, server, capture, {
      event: (e) => {
        events.emit(e as MeetingEvent);
        changed();
      },
      changed: mediaChanged,
      levels: (l) => levels.emit(l),
    });
    last = { server, token: meeting.token };
    // The address now names this participant: a reload comes back as it, not as a new guest.
    if (server === origin) env.replaceAddress(pageLinkFor(origin, { token: meeting.token }));
    changed();
    return joined.session();
  }

  async function leaveQuietly() {
    const j = joined;
    joined = null;
    stopPreview();
    if (j) await j.close();
    changed();
  }

  // The page was opened with an invite: a personal one joins at once, as the desktop app
  // does with a link at start; one for anyone asks for the guest's name first.
  const pageInvite = inviteInFragment(env.location.hash);
  if (pageInvite && 'token' in pageInvite) {
    startJoin = enter(origin, pageInvite)
      .then(
        () => undefined,
        (e: unknown) => {
          const err = e as BackendError;
          lastError = { code: err.code ?? 'internal', message: err.message ?? String(e), context: 'start' };
          appErrors.emit(lastError);
        },
      )
      .finally(() => (startJoin = null));
  } else if (pageInvite) {
    lastError = {
      code: 'bad_request',
      message: 'give your name',
      context: 'start',
      link: appLinkFor(origin, pageInvite),
    };
  }

  return {
    kind: 'web',
    appInfo: async () => {
      if (startJoin) await startJoin;
      return joined
        ? { mode: 'joined', server_url: joined.server }
        : lastError
          ? { mode: 'idle', last_error: lastError }
          : { mode: 'idle' };
    },
    joinProgress: async () => (startJoin ? origin : null),
    startEmbedded: desktopOnly,
    join: async (args: JoinArgs) => {
      lastError = undefined;
      if ('server_url' in args) return enter(args.server_url, { token: args.token });
      const link = parseJoinLink(args.invite_link);
      if ('code' in link) throw link;
      return enter(link.server, link, 'name' in args ? args.name : undefined);
    },
    createInvite: desktopOnly,
    createRoleLink: desktopOnly,
    revokeRoleLink: desktopOnly,
    inviteAddresses: desktopOnly,
    leaveMeeting: async () => {
      const j = joined;
      // Leaving is local: even when the server cannot be told, the meeting is over here.
      await j?.meeting.leave().catch(() => undefined);
      await leaveQuietly();
      return { still_running: false };
    },
    rejoinMeeting: async () => {
      if (!last) throw fail('invalid_state', 'no meeting to go back to');
      return enter(last.server, { token: last.token });
    },
    endMeeting: async () => {
      await live().meeting.end();
      await leaveQuietly();
      return { still_running: false };
    },
    session: async () => live().session(),
    devices: async () => devicesOf(await env.mediaDevices.enumerateDevices()),
    selectDevices: async (choice) => {
      selection = { ...selection, ...choice };
      // A running preview shows the new choice at once, and hands it to the stage. (Devices
      // are chosen in the green room; on stage there is no picker.)
      if (preview) {
        stopPreview();
        await startPreview();
      }
    },
    preview: async (on) => {
      // Only the green room previews: the camera is asked for when the user is about to go
      // on stage, never just for opening the page.
      const wanted = on && joined?.meeting.stage.status === 'ACCEPTED_TO_JOIN_STAGE';
      if (!wanted) {
        if (preview) stopPreview();
        return;
      }
      if (!preview) await startPreview();
    },
    setMic: async (on) => {
      await live().media.setMic(on);
      preview?.getAudioTracks().forEach((t) => (t.enabled = on));
    },
    setCamera: async (on) => {
      await live().media.setCamera(on);
      preview?.getVideoTracks().forEach((t) => (t.enabled = on));
    },
    stageRequestAccess: () => live().meeting.stage.requestAccess(),
    stageCancelRequest: () => live().meeting.stage.cancelRequestAccess(),
    stageJoin: () => live().meeting.stage.join(),
    stageLeave: () => live().meeting.stage.leave(),
    stageGrant: (userIds) => live().meeting.stage.grantAccess(userIds),
    stageDeny: (userIds) => live().meeting.stage.denyAccess(userIds),
    stageKick: (userIds) => live().meeting.stage.kick(userIds),
    removeParticipant: (userId) => live().meeting.removeParticipant(userId),
    muteParticipant: (userId) => live().meeting.muteParticipant(userId),
    setPreset: (userId, preset) => live().meeting.setPreset(userId, preset),
    setTiles: (tiles) =>
      live().meeting.setTiles(tiles.map((t) => ({ userId: t.user_id, width: t.width, height: t.height }))),
    // Pictures come as `MediaStream`s here (`onStreams`), played by <video> elements.
    videoChannel: async () => undefined,
    onStreams: (cb) => streamListeners.add(cb),
    onSession: (cb) => sessions.add(cb),
    onMeetingEvent: (cb) => events.add(cb),
    onMediaError: (cb) => mediaErrors.add(cb),
    onAudioLevel: (cb) => levels.add(cb),
    onAppError: (cb) => appErrors.add(cb),
  };
}
