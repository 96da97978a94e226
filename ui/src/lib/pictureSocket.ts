// The UI's end of the picture socket (docs/APP.md "Pictures"): pictures arrive as binary
// WebSocket messages; each one, once handed to its tile, is answered with its 8 ticket
// bytes, which lets the shell send that tile's next picture. A socket that closes (the
// shell restarted it, the page slept) is reopened, a little later each time.

import { parsePicture, pictureTicket, type Picture } from './picture';

/** Timing of the pictures received, read by the transport benchmark (tests/app/bench.py). */
export interface PictureTimings {
  count: number;
  bytes: number;
  /** Shell had the picture -> the page received it, ms. */
  received: number[];
  /** Shell had the picture -> handed to (and, for RGBA, drawn on) its canvas, ms. */
  handled: number[];
}

declare global {
  // On `window` in the page (globalThis is the window there).
  var __onstagePictures: PictureTimings | undefined;
}

/** Keep the last this many timings (the benchmark reads them within a window). */
const TIMINGS_KEPT = 2000;

export interface PictureSocketOptions {
  onPicture: (picture: Picture) => void;
  onBadPicture?: (error: string) => void;
  /** Reopen delays, ms: the first, and the cap as it doubles. */
  retryMs?: number;
  maxRetryMs?: number;
  /** For tests: the WebSocket class and the clock. */
  WebSocketImpl?: typeof WebSocket;
  now?: () => number;
}

/** A picture socket that stays open until `close()`. */
export interface PictureSocket {
  close(): void;
}

function record(timings: PictureTimings, bytes: number, received: number, handled: number) {
  timings.count += 1;
  timings.bytes += bytes;
  timings.received.push(received);
  timings.handled.push(handled);
  if (timings.received.length > TIMINGS_KEPT) {
    timings.received.splice(0, TIMINGS_KEPT / 2);
    timings.handled.splice(0, TIMINGS_KEPT / 2);
  }
}

export function openPictureSocket(url: string, options: PictureSocketOptions): PictureSocket {
  const Impl = options.WebSocketImpl ?? WebSocket;
  const now = options.now ?? (() => Date.now());
  const firstRetry = options.retryMs ?? 250;
  const maxRetry = options.maxRetryMs ?? 5000;
  let retry = firstRetry;
  let closed = false;
  let socket: WebSocket | null = null;
  let timer: ReturnType<typeof setTimeout> | null = null;

  const onMessage = (ws: WebSocket, event: MessageEvent) => {
    const got = now();
    const data: unknown = event.data;
    if (!(data instanceof ArrayBuffer)) {
      options.onBadPicture?.(`not a binary message (${typeof data})`);
      return;
    }
    const parsed = parsePicture(data);
    if (parsed.ok) options.onPicture(parsed.picture);
    else options.onBadPicture?.(parsed.error);
    // Answer even a bad picture: its tile must not stay busy for ever.
    const ticket = pictureTicket(data);
    if (ticket && ws.readyState === Impl.OPEN) ws.send(ticket);
    if (parsed.ok) {
      const timings = (globalThis.__onstagePictures ??= { count: 0, bytes: 0, received: [], handled: [] });
      const produced = parsed.picture.producedMs;
      record(timings, data.byteLength, got - produced, now() - produced);
    }
  };

  const open = () => {
    timer = null;
    if (closed) return;
    const ws = new Impl(url);
    ws.binaryType = 'arraybuffer';
    ws.onopen = () => {
      retry = firstRetry;
    };
    ws.onmessage = (event) => onMessage(ws, event);
    ws.onclose = () => {
      if (closed || socket !== ws) return;
      socket = null;
      timer = setTimeout(open, retry);
      retry = Math.min(retry * 2, maxRetry);
    };
    socket = ws;
  };

  open();
  return {
    close() {
      closed = true;
      if (timer) clearTimeout(timer);
      socket?.close();
      socket = null;
    },
  };
}
