import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { remote } from './origin';
import { encodePicture, KIND_JPEG, KIND_RGBA } from './picture';
import { openPictureSocket } from './pictureSocket';
import { FakeSocket } from './testing/fakeSocket';

const rgba = (id: string, ticket: number, producedMs = 0) =>
  encodePicture(KIND_RGBA, remote(id), 1, 1, new Uint8Array(4), ticket, producedMs).buffer as ArrayBuffer;

const ticketOf = (b: ArrayBuffer) => new DataView(b).getUint32(0, true);

function open(extra: Partial<Parameters<typeof openPictureSocket>[1]> = {}) {
  const pictures: string[] = [];
  const bad: string[] = [];
  const socket = openPictureSocket('ws://x/pictures/k', {
    onPicture: (p) => pictures.push(p.origin.origin === 'remote' ? p.origin.user_id : 'local'),
    onBadPicture: (e) => bad.push(e),
    WebSocketImpl: FakeSocket as unknown as typeof WebSocket,
    ...extra,
  });
  return { socket, pictures, bad };
}

beforeEach(() => {
  FakeSocket.all = [];
  globalThis.__onstagePictures = undefined;
  vi.useFakeTimers();
});
afterEach(() => vi.useRealTimers());

describe('openPictureSocket', () => {
  it('hands each picture on and answers it with its ticket', () => {
    const { pictures } = open();
    const ws = FakeSocket.all[0]!;
    expect(ws.binaryType).toBe('arraybuffer');
    ws.open();
    ws.deliver(rgba('alice', 41));
    ws.deliver(encodePicture(KIND_JPEG, remote('bob'), 1, 1, new Uint8Array([0xff, 0xd8]), 42).buffer);
    expect(pictures).toEqual(['alice', 'bob']);
    expect(ws.sent.map((t) => [t.byteLength, ticketOf(t)])).toEqual([
      [8, 41],
      [8, 42],
    ]);
  });

  it('answers a malformed picture too, so its tile does not stay busy', () => {
    const { pictures, bad } = open();
    const ws = FakeSocket.all[0]!;
    ws.open();
    const broken = new Uint8Array(rgba('alice', 7));
    broken[0] = 9; // unknown kind
    ws.deliver(broken.buffer);
    ws.deliver('text');
    ws.deliver(new ArrayBuffer(3));
    expect(pictures).toEqual([]);
    expect(bad).toHaveLength(3);
    expect(ws.sent.map(ticketOf)).toEqual([7]);
  });

  it('records the delay since the shell had the picture', () => {
    let clock = 1000;
    open({ now: () => clock });
    const ws = FakeSocket.all[0]!;
    ws.open();
    ws.deliver(rgba('alice', 1, 990));
    clock = 1010;
    ws.deliver(rgba('alice', 2, 1000));
    expect(globalThis.__onstagePictures).toMatchObject({ count: 2, received: [10, 10], handled: [10, 10] });
  });

  it('reopens a dropped socket, later each time, and stops for good on close', () => {
    const { socket } = open({ retryMs: 100, maxRetryMs: 300 });
    FakeSocket.all[0]!.drop();
    expect(FakeSocket.all).toHaveLength(1);
    vi.advanceTimersByTime(100);
    expect(FakeSocket.all).toHaveLength(2);
    FakeSocket.all[1]!.drop();
    vi.advanceTimersByTime(199);
    expect(FakeSocket.all).toHaveLength(2);
    vi.advanceTimersByTime(1);
    expect(FakeSocket.all).toHaveLength(3);
    // An open resets the delay.
    FakeSocket.all[2]!.open();
    FakeSocket.all[2]!.drop();
    vi.advanceTimersByTime(100);
    expect(FakeSocket.all).toHaveLength(4);

    socket.close();
    vi.advanceTimersByTime(10_000);
    expect(FakeSocket.all).toHaveLength(4);
    expect(FakeSocket.all[3]!.readyState).toBe(FakeSocket.CLOSED);
  });
});
