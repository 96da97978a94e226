// The signaling socket: sends calls, matches replies, feeds room events to the mirror and
// publishes what it derives, and reconnects with resume. The Rust SDK's `connection.rs`,
// driven by socket callbacks and timers instead of a task.
//
// The WebSocket constructor is injected (the browser's by default), so tests drive a fake
// one frame by frame. A browser does not tell why a handshake failed: a refused token and an
// unreachable server look alike. So after a handshake that failed, the SDK asks the same URL
// once over plain HTTP, where the server answers exactly as it refused the upgrade (401 with
// `unauthorized`, `token_expired` or `token_revoked`, 503 while stopping; 400 "not an
// upgrade" when the token is fine). Where that answer cannot be read (no CORS, no network)
// the failure stays `unreachable`. A browser cannot send pings either: a dead connection is
// noticed when the browser closes it.

import { OnstageError } from "./errors.js";
import type { MeetingEvent } from "./events.js";
import { Mirror } from "./mirror.js";
import {
  RESULT_READERS,
  STATUS_CALLS,
  decodeServerMessage,
  decodeWith,
  encodeRequest,
  isFinal,
  readSnapshot,
  type CallArgs,
  type CallName,
  type CallResult,
  type CloseReason,
  type Json,
  type ServerMessage,
  type TileSize,
  type Welcome,
} from "./protocol.js";

/** A handler type that accepts the browser's own (which takes a richer event). */
type Handler<E> = { bivarianceHack(event: E): void }["bivarianceHack"];

/** What the SDK uses of a WebSocket: the standard API's text-frame subset. */
export interface WebSocketLike {
  onopen: Handler<unknown> | null;
  onmessage: Handler<{ data: unknown }> | null;
  onerror: Handler<unknown> | null;
  onclose: Handler<unknown> | null;
  send(data: string): void;
  close(code?: number, reason?: string): void;
}

export type WebSocketConstructor = new (url: string) => WebSocketLike;

/** What the SDK uses of `fetch`: one GET, its status and body. */
export type FetchLike = (
  url: string,
  init: { method: "GET"; cache: "no-store"; credentials: "omit" },
) => Promise<{ status: number; text(): Promise<string> }>;

export interface ConnectionOptions {
  /** How long a call waits for its reply before failing with `timeout`. */
  requestTimeoutMs: number;
  /** How long one connection attempt (handshake and welcome) may take. */
  connectTimeoutMs: number;
  /** First pause between reconnect attempts; doubles up to `reconnectMaxMs`. */
  reconnectMinMs: number;
  reconnectMaxMs: number;
  /**
   * Past the server's grace period the session is gone there, but the meeting may not be:
   * keep trying, pausing up to this long, and a connection that works then starts afresh
   * (`resumed: false`). `null` gives up at the end of the grace period.
   */
  keepTryingEveryMs: number | null;
  WebSocket: WebSocketConstructor;
  /** Asks why a handshake failed (see above); null when there is none. */
  fetch: FetchLike | null;
}

/** A clock that only moves forward (a wall clock set back must not stretch the grace period). */
function now(): number {
  return performance.now();
}

/** The longest a successful status reply waits for its event; at most half the timeout. */
const DEFER_LIMIT_MS = 1000;

/**
 * Builds the signaling URL: `http(s)://host[/base]` -> `ws(s)://host[/base]/v1/signal?token=`.
 * `name` is a guest's display name, for a role link's invite token.
 */
export function signalUrl(serverUrl: string, token: string, name?: string): string {
  let url: URL;
  try {
    url = new URL(serverUrl);
  } catch {
    throw OnstageError.badServerUrl(`${JSON.stringify(serverUrl)} is not a URL (use http(s)://)`);
  }
  const scheme = { "http:": "ws:", "ws:": "ws:", "https:": "wss:", "wss:": "wss:" }[url.protocol];
  if (scheme === undefined) {
    throw OnstageError.badServerUrl(
      `unsupported URL scheme ${JSON.stringify(url.protocol.replace(/:$/, ""))} (use http(s):// or ws(s)://)`,
    );
  }
  url.protocol = scheme;
  url.pathname = `${url.pathname.replace(/\/+$/, "")}/v1/signal`;
  url.hash = "";
  url.search = "";
  url.searchParams.set("token", token);
  if (name !== undefined) url.searchParams.set("name", name);
  return url.toString();
}

/** The same signaling URL with a participant's own token (and no guest name). */
function withOwnToken(url: string, token: string): string {
  const next = new URL(url);
  next.searchParams.set("token", token);
  next.searchParams.delete("name");
  return next.toString();
}

type Attempted =
  | { ok: true; socket: WebSocketLike; welcome: Welcome }
  | { ok: false; error: OnstageError };

function detach(socket: WebSocketLike): void {
  socket.onopen = null;
  socket.onmessage = null;
  socket.onerror = null;
  socket.onclose = null;
}

function closeQuietly(socket: WebSocketLike): void {
  detach(socket);
  try {
    socket.close(1000);
  } catch {
    // Already closed or closing: nothing more to do.
  }
}

/**
 * Opens a socket and waits for the welcome, within `limitMs`. `done` is called exactly once,
 * synchronously with the frame that decides, so the caller takes the socket over before any
 * later frame arrives. Returns a function that abandons the attempt.
 */
function attempt(
  options: ConnectionOptions,
  url: string,
  limitMs: number,
  done: (outcome: Attempted) => void,
): () => void {
  const factory = options.WebSocket;
  let socket: WebSocketLike;
  let finished = false;
  let opened = false;
  const finish = (outcome: Attempted) => {
    if (finished) return;
    finished = true;
    clearTimeout(timer);
    if (outcome.ok) detach(outcome.socket);
    else closeQuietly(socket);
    done(outcome);
  };
  const timer = setTimeout(
    () => finish({ ok: false, error: OnstageError.connect(`no welcome from the server within ${limitMs} ms`) }),
    limitMs,
  );
  try {
    socket = new factory(url);
  } catch (e) {
    clearTimeout(timer);
    finished = true;
    const error = OnstageError.badServerUrl(e instanceof Error ? e.message : String(e));
    queueMicrotask(() => done({ ok: false, error }));
    return () => {};
  }
  socket.onmessage = (event) => {
    // Nothing the server sends may throw out of a socket handler.
    try {
      onFirstFrame(event.data);
    } catch (e) {
      finish({ ok: false, error: OnstageError.protocol(e instanceof Error ? e.message : String(e)) });
    }
  };
  const onFirstFrame = (data: unknown) => {
    // Binary frames are none of the protocol's: skip them, as the Rust SDK does.
    if (typeof data !== "string") return;
    const decoded = decodeServerMessage(data);
    if (!decoded.ok) {
      finish({ ok: false, error: OnstageError.notOnstage(`unreadable welcome: ${decoded.error}`) });
      return;
    }
    const message = decoded.value;
    switch (message.type) {
      case "welcome":
        finish({ ok: true, socket, welcome: message.welcome });
        return;
      case "error":
        finish({ ok: false, error: OnstageError.server(message.error) });
        return;
      case "goodbye":
        // Turned away for good before the welcome (a token revoked or a participant
        // removed just as it connected): say why, and never retry.
        finish({
          ok: false,
          error: isFinal(message.reason)
            ? OnstageError.ended(message.reason)
            : OnstageError.connect(`the server closed the connection (${message.reason})`),
        });
        return;
      default:
        finish({ ok: false, error: OnstageError.notOnstage("the first message was not a welcome") });
    }
  };
  socket.onopen = () => {
    opened = true;
  };
  const failed = () => {
    if (opened || options.fetch === null) {
      finish({ ok: false, error: OnstageError.connect("the server closed the connection before the welcome") });
      return;
    }
    // The handshake itself failed: ask why (the attempt's time limit still applies).
    socket.onclose = null;
    socket.onerror = null;
    void whyRefused(options.fetch, url).then((refusal) =>
      finish({ ok: false, error: refusal ?? OnstageError.connect("the WebSocket handshake failed") }),
    );
  };
  socket.onclose = failed;
  // A browser follows an error with a close, but not every WebSocket does (Node's does not
  // after a refused handshake): the error alone ends the attempt.
  socket.onerror = failed;
  return () => {
    if (finished) return;
    finished = true;
    clearTimeout(timer);
    closeQuietly(socket);
  };
}

/**
 * Why the server refuses a WebSocket at `url`, read from its answer to a plain GET of it:
 * the Rust SDK's reading of a refused handshake. Null when the answer says nothing of use
 * (the token is fine) or cannot be had. Never throws.
 */
export async function whyRefused(fetch: FetchLike, url: string): Promise<OnstageError | null> {
  let status: number;
  let body: string;
  try {
    const response = await fetch(url.replace(/^ws/, "http"), {
      method: "GET",
      cache: "no-store",
      credentials: "omit",
    });
    status = response.status;
    body = await response.text();
  } catch {
    // No network, or the answer is not ours to read (another origin without CORS).
    return null;
  }
  let code: string | undefined;
  let message: string | undefined;
  try {
    const parsed: unknown = JSON.parse(body);
    const error = typeof parsed === "object" && parsed !== null ? (parsed as { error?: unknown }).error : undefined;
    if (typeof error === "object" && error !== null) {
      const e = error as { code?: unknown; message?: unknown };
      if (typeof e.code === "string") code = e.code;
      if (typeof e.message === "string") message = e.message;
    }
  } catch {
    // Not JSON: not our server's refusal (a web page, a proxy's error).
  }
  const said = message === undefined ? "" : `: ${message}`;
  if (status === 401 && code === "token_revoked") {
    return OnstageError.tokenRevoked(message ?? "the server revoked the token");
  }
  if (status === 401 && code === "token_expired") {
    return OnstageError.tokenExpired(message ?? "the token has expired");
  }
  if (status === 401) return OnstageError.unauthorized(message ?? "the server refused the token");
  // Ours, shutting down (or a proxy with no server behind it): come back later.
  if (status === 503) return OnstageError.connect(`HTTP 503${said}`);
  // "Not a WebSocket upgrade": the token is fine, something else failed the handshake.
  if (status === 400 && code === "bad_request") return null;
  return OnstageError.notOnstage(`HTTP ${status}${said}`);
}

interface Pending {
  name: CallName;
  /** The mirror's seq when the call was sent. */
  sentSeq: number;
  resolve: (value: unknown) => void;
  reject: (error: OnstageError) => void;
  timer: ReturnType<typeof setTimeout>;
}

/**
 * A successful status reply held back until the event carrying that change reaches the
 * mirror, so `stage.status` agrees with the result as soon as the call returns, whatever
 * order the server sends reply and event in. Released after at most `DEFER_LIMIT_MS`.
 */
interface Deferred {
  pending: Pending;
  value: unknown;
  timer: ReturnType<typeof setTimeout>;
}

type Phase = "connected" | "reconnecting" | "disconnected";

export class Connection {
  readonly mirror: Mirror;
  private phase: Phase = "connected";
  private endReasonValue: CloseReason | null = null;
  private socket: WebSocketLike | null;
  private nextId = 0;
  /**
   * The tiles last told (`media.tiles`). The server forgets a viewer's tiles with its
   * connection, so a new connection tells them again: else a hidden page would get video,
   * and a small tile the top layer, until the layout next changed.
   */
  private tiles: CallArgs<"media.tiles"> | null = null;
  private readonly pending = new Map<number, Pending>();
  private deferred: Deferred[] = [];
  /** The id of an in-flight `meeting.leave`. */
  private leaveId: number | null = null;
  /** The id of an in-flight `meeting.end`: it succeeded if the meeting ends before its reply. */
  private endId: number | null = null;
  /** The id of the mirror's own in-flight `meeting.snapshot`. */
  private snapshotId: number | null = null;
  private cancelAttempt: (() => void) | null = null;
  /** Who hears the SFU's `layers` (this participant's simulcast layers some viewer takes). */
  private readonly layersListeners = new Set<(rids: string[]) => void>();
  private retryTimer: ReturnType<typeof setTimeout> | null = null;

  private constructor(
    private url: string,
    private readonly options: ConnectionOptions,
    private readonly emit: (events: MeetingEvent[]) => void,
    socket: WebSocketLike,
    welcome: Welcome,
  ) {
    this.mirror = new Mirror(welcome);
    // A guest of a role link is a participant now: it comes back as itself.
    if (welcome.token !== undefined) this.url = withOwnToken(url, welcome.token);
    this.socket = socket;
    this.serve(socket);
    // Who already publishes, as the first events (held for the first listener).
    this.emit(this.mirror.publishingEvents());
  }

  /**
   * The token this connection (re)connects with: the one it joined with, or a role link
   * guest's own token once the welcome gave it one.
   */
  get token(): string {
    return new URL(this.url).searchParams.get("token") ?? "";
  }

  /** Connects and waits for the welcome; rejects with why it could not join. */
  static open(
    url: string,
    options: ConnectionOptions,
    emit: (events: MeetingEvent[]) => void,
  ): Promise<Connection> {
    return new Promise((resolve, reject) => {
      attempt(options, url, options.connectTimeoutMs, (outcome) => {
        if (outcome.ok) resolve(new Connection(url, options, emit, outcome.socket, outcome.welcome));
        else reject(outcome.error);
      });
    });
  }

  get state(): "connected" | "reconnecting" | "disconnected" {
    return this.phase;
  }

  /** The tiles last told (`media.tiles`), `null` before any. */
  get toldTiles(): TileSize[] | null {
    return this.tiles?.tiles ?? null;
  }

  /** Why the session ended for good, once it has and the reason is known. */
  get endReason(): CloseReason | null {
    return this.endReasonValue;
  }

  /** Listens to the SFU's `layers` messages; returns what stops it. */
  onLayers(listener: (rids: string[]) => void): () => void {
    this.layersListeners.add(listener);
    return () => this.layersListeners.delete(listener);
  }

  /** Sends one call; resolves with its result as read for that call. */
  call<N extends CallName>(name: N, args: CallArgs<N>): Promise<CallResult<N>> {
    return new Promise<CallResult<N>>((resolve, reject) => {
      if (this.phase === "disconnected") {
        reject(OnstageError.afterEnd(this.endReasonValue));
        return;
      }
      if (this.phase === "reconnecting" || this.socket === null) {
        if (name === "meeting.leave") {
          // Nothing to tell a server we cannot reach: it times the session out after its
          // grace period. Leaving now just stops trying.
          // `meeting.leave` returns nothing; TypeScript does not narrow `N` from `name`.
          resolve(null as CallResult<N>);
          this.finish("left", OnstageError.closed());
        } else {
          reject(OnstageError.connectionLost());
        }
        return;
      }
      this.nextId += 1;
      const id = this.nextId;
      const limit = this.options.requestTimeoutMs;
      const pending: Pending = {
        name,
        sentSeq: this.mirror.seq,
        // The reader for `name` produced the value, so it is a `CallResult<N>`.
        resolve: (value) => resolve(value as CallResult<N>),
        reject,
        timer: setTimeout(() => {
          // A late reply finds nobody waiting and is ignored.
          this.pending.delete(id);
          for (const d of this.deferred) if (d.pending === pending) clearTimeout(d.timer);
          this.deferred = this.deferred.filter((d) => d.pending !== pending);
          reject(OnstageError.timeout(limit));
        }, limit),
      };
      this.pending.set(id, pending);
      // `name` is "media.tiles", so `args` are its arguments; TypeScript does not narrow `N`.
      if (name === "media.tiles") this.tiles = args as CallArgs<"media.tiles">;
      if (name === "meeting.leave") this.leaveId = id;
      if (name === "meeting.end") this.endId = id;
      this.send(encodeRequest(id, name, args));
    });
  }

  private send(text: string): void {
    try {
      this.socket?.send(text);
    } catch {
      this.dropped();
    }
  }

  private serve(socket: WebSocketLike): void {
    socket.onmessage = (event) => {
      // Nothing the server sends may throw out of here: a bad frame is reported and the
      // connection carries on, as the Rust SDK does.
      try {
        if (typeof event.data === "string") this.onText(event.data);
      } catch (e) {
        this.report(`failed to handle a frame: ${e instanceof Error ? e.message : String(e)}`);
      }
    };
    socket.onclose = () => this.dropped();
    // An error means the connection failed; not every WebSocket follows it with a close.
    socket.onerror = () => this.dropped();
  }

  private report(message: string): void {
    this.emit([{ event: "protocolError", code: "internal", message }]);
  }

  private onText(text: string): void {
    const decoded = decodeServerMessage(text);
    if (!decoded.ok) {
      this.report(`unreadable frame from the server: ${decoded.error}`);
      return;
    }
    this.onMessage(decoded.value);
  }

  private onMessage(message: ServerMessage): void {
    switch (message.type) {
      case "reply": {
        const { id } = message;
        if (this.snapshotId === id) {
          this.snapshotId = null;
          this.onSnapshotReply(message);
          return;
        }
        const pending = this.pending.get(id);
        if (pending) {
          this.pending.delete(id);
          this.answer(pending, message);
        }
        if (this.leaveId === id) {
          this.leaveId = null;
          if (message.ok) this.finish("left", OnstageError.closed());
        }
        return;
      }
      case "event": {
        const { seq, event } = message;
        if (event.kind === "meeting_ended") {
          // The last event of the session: over at once, without waiting for the goodbye
          // (were it lost with the socket, a reconnect would start a new session of a
          // meeting that has ended).
          this.emit(this.mirror.onMeetingEnded(seq, event.by));
          this.finish("meeting_ended", OnstageError.ended("meeting_ended"));
          return;
        }
        const applied = this.mirror.onEvent(seq, event);
        this.emit(applied.events);
        this.releaseDeferred(false);
        if (applied.needSnapshot) this.askSnapshot();
        return;
      }
      case "goodbye":
        // Final reasons are never fought with a reconnect: `replaced` means another session
        // of this participant is live; the others mean the token no longer works.
        if (isFinal(message.reason)) this.finish(message.reason, OnstageError.ended(message.reason));
        else this.dropped();
        return;
      case "media":
        this.emit([this.mirror.onMedia(message.event)]);
        return;
      case "layers":
        for (const listener of [...this.layersListeners]) {
          try {
            listener([...message.rids]);
          } catch (e) {
            // As for events: the app's bug surfaces, the connection carries on.
            queueMicrotask(() => {
              throw e;
            });
          }
        }
        return;
      case "error":
        this.emit([{ event: "protocolError", code: message.error.code, message: message.error.message }]);
        return;
      case "welcome":
        this.report("unexpected second welcome; ignored");
        return;
    }
  }

  /** Delivers a reply, holding back a successful status change until the mirror shows it. */
  private answer(pending: Pending, message: Extract<ServerMessage, { type: "reply" }>): void {
    if (!message.ok) {
      this.settle(pending, () =>
        pending.reject(
          message.error
            ? OnstageError.server(message.error)
            : OnstageError.protocol("an error reply without an error"),
        ),
      );
      return;
    }
    // A name outside the protocol can only come from untyped code; the server refuses it
    // (`bad_request`), and should it not, its result is passed on as it came.
    const read: ((v: Json) => unknown) | undefined = Object.prototype.hasOwnProperty.call(RESULT_READERS, pending.name)
      ? RESULT_READERS[pending.name]
      : undefined;
    const decoded = decodeWith(() => (read ? read(message.result) : message.result));
    if (!decoded.ok) {
      this.settle(pending, () =>
        pending.reject(OnstageError.protocol(`unexpected result for ${pending.name}: ${decoded.error}`)),
      );
      return;
    }
    if (STATUS_CALLS.has(pending.name) && this.mirror.ownStatusSeq <= pending.sentSeq) {
      const limit = Math.min(DEFER_LIMIT_MS, this.options.requestTimeoutMs / 2);
      const deferred: Deferred = {
        pending,
        value: decoded.value,
        timer: setTimeout(() => {
          // The call did succeed; its event is late or lost.
          this.deferred = this.deferred.filter((d) => d !== deferred);
          this.settle(pending, () => pending.resolve(deferred.value));
        }, limit),
      };
      this.deferred.push(deferred);
      return;
    }
    this.settle(pending, () => pending.resolve(decoded.value));
  }

  private settle(pending: Pending, how: () => void): void {
    clearTimeout(pending.timer);
    how();
  }

  /** Delivers the held-back replies whose change has reached the mirror (all when `all`). */
  private releaseDeferred(all: boolean): void {
    if (this.deferred.length === 0) return;
    const own = this.mirror.ownStatusSeq;
    const ready = this.deferred.filter((d) => all || own > d.pending.sentSeq);
    this.deferred = this.deferred.filter((d) => !ready.includes(d));
    for (const d of ready) {
      clearTimeout(d.timer);
      this.settle(d.pending, () => d.pending.resolve(d.value));
    }
  }

  private askSnapshot(): void {
    if (this.snapshotId !== null) return;
    this.nextId += 1;
    this.snapshotId = this.nextId;
    this.send(encodeRequest(this.snapshotId, "meeting.snapshot", {}));
  }

  private onSnapshotReply(message: Extract<ServerMessage, { type: "reply" }>): void {
    if (!message.ok) {
      // Asked again at the next gap (a `rate_limited` snapshot is the usual reason).
      this.mirror.snapshotFailed();
      return;
    }
    const decoded = decodeWith(() => readSnapshot(message.result, "result"));
    if (!decoded.ok) {
      this.mirror.snapshotFailed();
      this.report(`unreadable snapshot: ${decoded.error}`);
      return;
    }
    const applied = this.mirror.onSnapshot(decoded.value);
    this.emit(applied.events);
    // The snapshot is at least as new as anything replied so far.
    this.releaseDeferred(true);
    if (applied.needSnapshot) this.askSnapshot();
  }

  /**
   * Answers every call in flight: a pending `meeting.leave` succeeds when the session ended
   * as `left`, a pending `meeting.end` when it ended as `meeting_ended`; the rest get
   * `error`. Held-back successes are delivered as they are.
   */
  private failPending(reason: CloseReason | null, error: OnstageError): void {
    this.releaseDeferred(true);
    const done = reason === "left" ? this.leaveId : reason === "meeting_ended" ? this.endId : null;
    this.leaveId = null;
    this.endId = null;
    this.snapshotId = null;
    const pending = [...this.pending];
    this.pending.clear();
    for (const [id, p] of pending) {
      if (id === done) this.settle(p, () => p.resolve(null));
      else this.settle(p, () => p.reject(error));
    }
    this.mirror.snapshotFailed();
  }

  /** The socket dropped, or the server asked us to come back later: reconnect. */
  private dropped(): void {
    if (this.phase !== "connected") return;
    if (this.socket) closeQuietly(this.socket);
    this.socket = null;
    if (this.leaveId !== null) {
      // Leaving and the socket went: gone either way (the server times the session out).
      this.finish("left", OnstageError.connectionLost());
      return;
    }
    this.failPending(null, OnstageError.connectionLost());
    this.phase = "reconnecting";
    this.emit([{ event: "connectionStateUpdate", state: "reconnecting" }]);
    this.reconnect();
  }

  /** Over for good: answers what is in flight, says why, and never tries again. */
  private finish(reason: CloseReason | null, error: OnstageError): void {
    if (this.phase === "disconnected") return;
    this.failPending(reason, error);
    this.phase = "disconnected";
    this.endReasonValue = reason;
    if (this.socket) closeQuietly(this.socket);
    this.socket = null;
    this.cancelAttempt?.();
    this.cancelAttempt = null;
    if (this.retryTimer !== null) clearTimeout(this.retryTimer);
    this.retryTimer = null;
    const event: MeetingEvent = { event: "connectionStateUpdate", state: "disconnected" };
    if (reason !== null) event.reason = reason;
    this.emit([event]);
  }

  /**
   * Retries with backoff inside the server's grace period (the session resumes), then, unless
   * `keepTryingEveryMs` is null, on at a slower pace.
   */
  private reconnect(): void {
    const { connectTimeoutMs, reconnectMinMs, reconnectMaxMs, keepTryingEveryMs } = this.options;
    const deadline = now() + this.mirror.graceMs;
    let backoff = reconnectMinMs;
    let pastGrace = false;
    const tryOnce = () => {
      this.retryTimer = null;
      if (this.phase !== "reconnecting") return;
      const left = deadline - now();
      const limit = Math.max(left > 0 ? Math.min(connectTimeoutMs, left) : connectTimeoutMs, 100);
      this.cancelAttempt = attempt(this.options, this.url, limit, (outcome) => {
        this.cancelAttempt = null;
        if (this.phase !== "reconnecting") {
          if (outcome.ok) closeQuietly(outcome.socket);
          return;
        }
        if (outcome.ok) {
          this.resume(outcome.socket, outcome.welcome);
          return;
        }
        const { error } = outcome;
        if (error.kind === "ended" && error.reason !== undefined) {
          this.finish(error.reason, OnstageError.ended(error.reason));
          return;
        }
        // The goodbye that said so was lost with the connection: the token was superseded.
        if (error.kind === "token_revoked") {
          this.finish("revoked", OnstageError.ended("revoked"));
          return;
        }
        // Retrying with a token the server refuses can only be refused again.
        if (error.kind === "unauthorized" || error.kind === "token_expired") {
          this.finish(null, OnstageError.closed());
          return;
        }
        const leftNow = deadline - now();
        let pause: number;
        if (leftNow > 0) {
          pause = Math.min(backoff, leftNow);
        } else if (keepTryingEveryMs !== null) {
          pastGrace = true;
          pause = Math.min(backoff, keepTryingEveryMs);
        } else {
          this.finish(null, OnstageError.closed());
          return;
        }
        this.retryTimer = setTimeout(tryOnce, pause);
        const cap = pastGrace ? (keepTryingEveryMs ?? reconnectMaxMs) : reconnectMaxMs;
        backoff = Math.min(backoff * 2, cap);
      });
    };
    tryOnce();
  }

  private resume(socket: WebSocketLike, welcome: Welcome): void {
    this.socket = socket;
    this.serve(socket);
    const events = this.mirror.onWelcome(welcome);
    this.phase = "connected";
    events.push({ event: "connectionStateUpdate", state: "connected", resumed: welcome.resumed });
    this.emit(events);
    // Nobody waits for this reply: the caller had its answer before.
    if (this.tiles !== null) this.call("media.tiles", this.tiles).catch(() => undefined);
  }
}
