// The front door: `OnstageMeeting` and its `stage`, shaped like RealtimeKit's web-core
// (`meeting.self`, `meeting.participants`, `meeting.stage`) so that a developer who knows
// RealtimeKit's Stage module finds its methods, properties and event names here.

import {
  Connection,
  signalUrl,
  type ConnectionOptions,
  type FetchLike,
  type WebSocketConstructor,
} from "./connection.js";
import { Emitter, type AnyListener, type Listener } from "./emitter.js";
import { OnstageError } from "./errors.js";
import type { ConnectionState, MeetingEventName, StageEventName } from "./events.js";
import { tileSizes, type Tile } from "./media.js";
import type {
  AccessRequest,
  CallArgs,
  CallName,
  CallResult,
  CloseReason,
  IceServer,
  MediaKinds,
  ParticipantInfo,
  Preset,
  StageStatus,
  TileSize,
} from "./protocol.js";

/** A participant as everyone in the meeting sees it. */
export type Participant = ParticipantInfo;

/** A call's arguments, which may be left out when it takes none (`call("media.unpublish")`). */
export type ArgsOf<N extends CallName> =
  Record<string, never> extends CallArgs<N> ? [args?: CallArgs<N>] : [args: CallArgs<N>];

export interface JoinOptions {
  /** How long a call waits for its reply (default 10 000 ms). */
  requestTimeoutMs?: number;
  /** How long one connection attempt, up to the welcome, may take (default 10 000 ms). */
  connectTimeoutMs?: number;
  /** First pause between reconnect attempts (default 50 ms), doubling up to `reconnectMaxMs`. */
  reconnectMinMs?: number;
  /** Longest pause inside the grace period (default 1 000 ms). */
  reconnectMaxMs?: number;
  /**
   * Past the grace period, keep trying at most this far apart (default 10 000 ms); a
   * connection that works then starts afresh. `null` gives up at the end of the grace period.
   */
  keepTryingEveryMs?: number | null;
  /** The WebSocket constructor; the browser's own by default (tests pass a fake one). */
  WebSocket?: WebSocketConstructor;
  /**
   * Asks the server why a WebSocket handshake failed (a refused token, an expired one), so
   * that a join says so and a reconnect stops; the browser's `fetch` by default, `null` for
   * none (then every handshake failure is `unreachable`).
   */
  fetch?: FetchLike | null;
}

function defaultFetch(): FetchLike | null {
  // Typed, not cast, as the WebSocket is; wrapped, since a browser's `fetch` called as a
  // method of another object (the options) throws "Illegal invocation".
  const browser: FetchLike | undefined = globalThis.fetch;
  return browser === undefined ? null : (url, init) => browser(url, init);
}

function connectionOptions(options: JoinOptions): ConnectionOptions {
  // Typed, not cast: the browser's own WebSocket must fit what the SDK drives. Outside a
  // browser (older Node) there may be none.
  const browser: WebSocketConstructor | undefined = globalThis.WebSocket;
  const socket = options.WebSocket ?? browser;
  if (socket === undefined) {
    throw OnstageError.connect("no WebSocket in this environment: pass one in options.WebSocket");
  }
  return {
    requestTimeoutMs: options.requestTimeoutMs ?? 10_000,
    connectTimeoutMs: options.connectTimeoutMs ?? 10_000,
    reconnectMinMs: options.reconnectMinMs ?? 50,
    reconnectMaxMs: options.reconnectMaxMs ?? 1_000,
    keepTryingEveryMs: options.keepTryingEveryMs === undefined ? 10_000 : options.keepTryingEveryMs,
    WebSocket: socket,
    fetch: options.fetch === undefined ? defaultFetch() : options.fetch,
  };
}

/**
 * A joined meeting. Calls are validated by the server; a refused one changes nothing and
 * rejects with an `OnstageError` carrying the server's stable `code`.
 */
export class OnstageMeeting {
  /** The stage (RealtimeKit's `meeting.stage`). */
  readonly stage: Stage;

  private constructor(
    private readonly connection: Connection,
    private readonly emitter: Emitter,
  ) {
    this.stage = new Stage(connection, emitter);
  }

  /**
   * Joins with a participant token. `serverUrl` is the server's base URL, e.g.
   * `https://meet.example.com` (`ws(s)://` works too); resolves once the server's welcome
   * has arrived. Rejects with `invalid_server_url`, `unauthorized`, `token_expired`,
   * `token_revoked` (when the server's refusal can be read, see `JoinOptions.fetch`; else
   * `unreachable`), `unreachable`, `not_onstage_server`, a final goodbye's code, or the
   * server's refusal (`rate_limited`).
   */
  static async join(serverUrl: string, token: string, options: JoinOptions = {}): Promise<OnstageMeeting> {
    const url = signalUrl(serverUrl, token);
    const resolved = connectionOptions(options);
    const emitter = new Emitter();
    const connection = await Connection.open(url, resolved, (events) => emitter.emit(events));
    return new OnstageMeeting(connection, emitter);
  }

  /**
   * Joins with a role link's invite token (`invite=` in the link) as a new participant
   * named `name`, who then reconnects with its own token (`token`). Rejects as `join`
   * does, and with `bad_request` for a name the server does not take.
   */
  static async joinGuest(
    serverUrl: string,
    inviteToken: string,
    name: string,
    options: JoinOptions = {},
  ): Promise<OnstageMeeting> {
    const url = signalUrl(serverUrl, inviteToken, name);
    const resolved = connectionOptions(options);
    const emitter = new Emitter();
    const connection = await Connection.open(url, resolved, (events) => emitter.emit(events));
    return new OnstageMeeting(connection, emitter);
  }

  get meetingId(): string {
    return this.connection.mirror.meetingId;
  }

  /** The meeting's title, from the latest welcome. */
  get title(): string {
    return this.connection.mirror.title;
  }

  /** This participant's user id (stable across reconnects and restarts). */
  get userId(): string {
    return this.connection.mirror.userId;
  }

  /** This session's peer id; kept by a resumed reconnect. */
  get peerId(): string {
    return this.connection.mirror.peerId;
  }

  /** This participant's preset (its permissions); changes with `presetChanged`. */
  get preset(): Preset {
    return this.connection.mirror.preset;
  }

  /**
   * The participant token this meeting reconnects with: the one it joined with, or, for a
   * role link's guest, its own (keep it to come back as the same participant, e.g. after a
   * page reload: `join(serverUrl, meeting.token)`).
   */
  get token(): string {
    return this.connection.token;
  }

  /** The TURN relays offered to this participant, as `RTCIceServer`s (renewed by reconnects). */
  iceServers(): IceServer[] {
    return this.connection.mirror.iceServers;
  }

  /** This participant as the room sees it. */
  get self(): Participant {
    return this.connection.mirror.me();
  }

  /** Everyone in the meeting, this participant included, in the order they joined. */
  get participants(): Participant[] {
    return this.connection.mirror.participants();
  }

  participant(userId: string): Participant | undefined {
    return this.connection.mirror.participant(userId);
  }

  /** The most participants the stage holds at once. */
  get maxOnStage(): number {
    return this.connection.mirror.maxOnStage;
  }

  /** Who publishes media right now and what, by user id. */
  get publishing(): Map<string, MediaKinds> {
    return this.connection.mirror.publishing;
  }

  get connectionState(): ConnectionState {
    return this.connection.state;
  }

  /** Is the signaling connection up? (Nothing is sent or received while it is down.) */
  connected(): boolean {
    return this.connection.state === "connected";
  }

  /** Everyone's stage status, this participant included, in join order: what media follows. */
  stageStatuses(): { user_id: string; stage_status: StageStatus }[] {
    return this.connection.mirror.participants().map(({ user_id, stage_status }) => ({ user_id, stage_status }));
  }

  /**
   * Why the meeting is over for this handle, once it is and the reason is known (`left`, or
   * the server's final goodbye); `null` while it goes on, and when it ended otherwise.
   */
  get endReason(): CloseReason | null {
    return this.connection.endReason;
  }

  /**
   * Leaves the meeting for good: the server takes this participant off the stage and out of
   * the queue at once. While reconnecting it just stops trying.
   */
  async leave(): Promise<void> {
    await this.connection.call("meeting.leave", {});
  }

  /** Ends the meeting for everyone (a host's preset only, else `permission_denied`). */
  async end(): Promise<void> {
    await this.connection.call("meeting.end", {});
  }

  /** Removes another participant from the meeting (`kick_participant`); its link stops working. */
  async removeParticipant(userId: string): Promise<void> {
    await this.connection.call("meeting.removeParticipant", { user_id: userId });
  }

  /** Gives a participant another preset (a host only), e.g. `"host"` before leaving. */
  async setPreset(userId: string, preset: string): Promise<void> {
    await this.connection.call("meeting.setPreset", { user_id: userId, preset });
  }

  /** Mutes an ON_STAGE participant's microphone; it may unmute itself. */
  async muteParticipant(userId: string): Promise<void> {
    await this.connection.call("media.muteParticipant", { user_id: userId });
  }

  /**
   * Tells the SFU how large each stage video is shown here (`media.tiles`), in device
   * pixels (CSS size x `devicePixelRatio`): it then sends no larger a simulcast layer than
   * fills a tile, and no video at all for a tile of 0x0 (a hidden page, a tile out of
   * view). A video not listed gets what the bandwidth carries. Each call replaces the last.
   * Sizes are rounded and kept within 0..`MAX_TILE_SIDE`; a tile whose size is not a
   * number is left out.
   */
  async setTiles(tiles: readonly Tile[]): Promise<void> {
    await this.connection.call("media.tiles", { tiles: tileSizes(tiles) });
  }

  /** The tiles last told (`setTiles`, as sent), `null` before any. */
  tiles(): TileSize[] | null {
    return this.connection.toldTiles;
  }

  /**
   * Listens to the SFU's word on this participant's simulcast video (`layers`): the RIDs
   * some viewer takes now, the lowest always among them. `BrowserStageMedia` pauses the
   * others; returns what stops the listener.
   */
  onLayers(listener: (rids: string[]) => void): () => void {
    return this.connection.onLayers(listener);
  }

  /**
   * Sends one call and resolves with its reply's result, read for that call (e.g.
   * `media.publish` gives `{sdp}`). For what the methods above do not cover: media
   * signaling.
   */
  call<N extends CallName>(name: N, ...args: ArgsOf<N>): Promise<CallResult<N>> {
    // Only calls without arguments may leave them out (see `ArgsOf`), so `{}` is theirs.
    return this.connection.call(name, args[0] ?? ({} as CallArgs<N>));
  }

  /** Listens to one event; returns what stops it (as `off` does). */
  on<K extends MeetingEventName>(name: K, listener: Listener<K>): () => void {
    this.emitter.on(name, listener);
    return () => this.emitter.off(name, listener);
  }

  off<K extends MeetingEventName>(name: K, listener: Listener<K>): void {
    this.emitter.off(name, listener);
  }

  /** Listens to every event, in order; returns what stops it. */
  onAny(listener: AnyListener): () => void {
    this.emitter.onAny(listener);
    return () => this.emitter.offAny(listener);
  }

  offAny(listener: AnyListener): void {
    this.emitter.offAny(listener);
  }
}

/**
 * The stage of a meeting: exactly RealtimeKit's Stage module (`getAccessRequests`,
 * `requestAccess`, `cancelRequestAccess`, `grantAccess`, `denyAccess`, `join`, `leave`,
 * `kick`, `peerId`, `status`, its events), plus `placeInQueue`.
 */
export class Stage {
  constructor(
    private readonly connection: Connection,
    private readonly emitter: Emitter,
  ) {}

  /** This session's peer id. */
  get peerId(): string {
    return this.connection.mirror.peerId;
  }

  /** This participant's own stage status, as of the last event received. */
  get status(): StageStatus {
    return this.connection.mirror.status();
  }

  /**
   * The request queue as of the last event received, oldest first (what
   * `getAccessRequests()` answers, without asking the server). Every participant's SDK
   * keeps it; the server tells the queue's events to acceptors only.
   */
  get accessRequests(): AccessRequest[] {
    return this.connection.mirror.queue();
  }

  /** This participant's place in the request queue (1 = next in line), or null when not waiting. */
  get placeInQueue(): number | null {
    return this.connection.mirror.placeInQueue();
  }

  /** The request queue, oldest first. Needs `accept_stage_requests`. */
  getAccessRequests(): Promise<AccessRequest[]> {
    return this.connection.call("stage.getAccessRequests", {});
  }

  /** Asks to come on stage: OFF -> REQUESTED (ACCEPTED at once for an ALLOWED preset). */
  async requestAccess(): Promise<StageStatus> {
    return (await this.connection.call("stage.requestAccess", {})).stage_status;
  }

  /** Withdraws a request: REQUESTED -> OFF. */
  async cancelRequestAccess(): Promise<StageStatus> {
    return (await this.connection.call("stage.cancelRequestAccess", {})).stage_status;
  }

  /** Grants requests or invites (REQUESTED or OFF -> ACCEPTED). All or nothing. */
  async grantAccess(userIds: string[]): Promise<void> {
    await this.connection.call("stage.grantAccess", { user_ids: [...userIds] });
  }

  /** Denies requests (REQUESTED -> OFF). All or nothing. */
  async denyAccess(userIds: string[]): Promise<void> {
    await this.connection.call("stage.denyAccess", { user_ids: [...userIds] });
  }

  /** Goes on stage (from ACCEPTED, or directly with an ALLOWED preset); `stage_full` at the limit. */
  async join(): Promise<StageStatus> {
    return (await this.connection.call("stage.join", {})).stage_status;
  }

  /** Leaves the stage (from ON), or declines an invitation (from ACCEPTED). */
  async leave(): Promise<StageStatus> {
    return (await this.connection.call("stage.leave", {})).stage_status;
  }

  /** Takes participants off the stage (ON or ACCEPTED -> OFF). All or nothing. */
  async kick(userIds: string[]): Promise<void> {
    await this.connection.call("stage.kick", { user_ids: [...userIds] });
  }

  /** The stage's own events, as RealtimeKit's Stage module emits them. */
  on<K extends StageEventName>(name: K, listener: Listener<K>): () => void {
    this.emitter.on(name, listener);
    return () => this.emitter.off(name, listener);
  }

  off<K extends StageEventName>(name: K, listener: Listener<K>): void {
    this.emitter.off(name, listener);
  }
}
