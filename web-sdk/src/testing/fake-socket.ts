// A WebSocket the tests play the server's side of, frame by frame, so replies, event order,
// gaps, drops and goodbyes are exactly what a test says.

import type { FetchLike, WebSocketLike } from "../connection.js";

type Handler<E> = { bivarianceHack(event: E): void }["bivarianceHack"];

export type Frame = { [key: string]: unknown };

export class FakeSocket implements WebSocketLike {
  /** Every socket the SDK opened, oldest first. */
  static opened: FakeSocket[] = [];

  /** While set, every new socket fails as an unreachable server's does. */
  static unreachable = false;

  static reset(): void {
    FakeSocket.opened = [];
    FakeSocket.unreachable = false;
  }

  /** The socket the SDK opened last. */
  static last(): FakeSocket {
    const socket = FakeSocket.opened[FakeSocket.opened.length - 1];
    if (!socket) throw new Error("no socket was opened");
    return socket;
  }

  onopen: Handler<unknown> | null = null;
  onmessage: Handler<{ data: unknown }> | null = null;
  onerror: Handler<unknown> | null = null;
  onclose: Handler<unknown> | null = null;
  /** What the SDK sent, in order. */
  readonly sent: string[] = [];
  /** Set once either side closed it. */
  closed = false;

  /** When it was opened (the fake clock's time). */
  readonly openedAt = Date.now();

  constructor(readonly url: string) {
    FakeSocket.opened.push(this);
    // As a browser does: the failure is told after the constructor has returned.
    if (FakeSocket.unreachable) queueMicrotask(() => this.drop());
  }

  send(data: string): void {
    // A browser drops what is sent on a closed socket, silently.
    if (!this.closed) this.sent.push(data);
  }

  close(): void {
    this.closed = true;
  }

  /** The token the SDK connected with. */
  get token(): string | null {
    return new URL(this.url).searchParams.get("token");
  }

  /** Set once the handshake succeeded (the first frame implies it). */
  opened = false;

  /** The handshake succeeds. */
  accept(): void {
    if (this.opened) return;
    this.opened = true;
    this.onopen?.({});
  }

  /** The server sends a frame: a value as JSON, a string as it is (malformed ones too). */
  receive(frame: Frame | string | ArrayBuffer): void {
    this.accept();
    const data = typeof frame === "string" || frame instanceof ArrayBuffer ? frame : JSON.stringify(frame);
    this.onmessage?.({ data });
  }

  /** The connection drops (no goodbye). */
  drop(): void {
    this.closed = true;
    this.onerror?.({});
    this.onclose?.({ code: 1006 });
  }

  /** The connection fails with an error and no close, as Node's WebSocket does. */
  fail(): void {
    this.closed = true;
    this.onerror?.({});
  }

  /** The requests the SDK sent, parsed. */
  requests(): Frame[] {
    return this.sent.map((text) => JSON.parse(text) as Frame);
  }

  /** The latest request the SDK sent. */
  request(): Frame {
    const last = this.requests()[this.sent.length - 1];
    if (!last) throw new Error("nothing was sent");
    return last;
  }

  reply(id: unknown, result: unknown): void {
    this.receive({ type: "reply", id, ok: true, result });
  }

  refuse(id: unknown, code: string, message = "no", extra: Frame = {}): void {
    this.receive({ type: "reply", id, ok: false, error: { code, message, ...extra } });
  }
}

/**
 * The server's plain-HTTP answer to the signaling URL, as a test sets it: `null` is no
 * answer at all (no network, or another origin's answer the browser will not show).
 */
export class FakeHttp {
  answer: { status: number; body: string } | null = null;
  /** The URLs asked, in order. */
  readonly asked: string[] = [];

  /** Answers as the server refuses a token: 401 with its JSON error. */
  refuse(code: string, message: string): void {
    this.answer = { status: 401, body: JSON.stringify({ success: false, error: { code, message } }) };
  }

  readonly fetch: FetchLike = (url) => {
    this.asked.push(url);
    const answer = this.answer;
    if (answer === null) return Promise.reject(new TypeError("Failed to fetch"));
    return Promise.resolve({ status: answer.status, text: () => Promise.resolve(answer.body) });
  };
}
