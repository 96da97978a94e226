import { describe, expect, it } from 'vitest';
import { LOCAL, remote } from './origin';
import { encodePicture, HEADER_LEN, KIND_JPEG, KIND_RGBA, ORIGIN_LOCAL, parsePicture, pictureTicket } from './picture';

function header(kind: number, width: number, height: number, idLen: number): Uint8Array {
  const b = new Uint8Array(HEADER_LEN);
  const v = new DataView(b.buffer);
  v.setUint32(0, kind, true);
  v.setUint32(4, width, true);
  v.setUint32(8, height, true);
  v.setUint32(12, idLen, true);
  return b;
}

const concat = (...parts: Uint8Array[]) => {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.byteLength, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.byteLength;
  }
  return out;
};

const JPEG = new Uint8Array([0xff, 0xd8, 0xff, 0xe0, 1, 2, 3, 0xff, 0xd9]);

describe('parsePicture', () => {
  it('reads an RGBA picture, header little-endian', () => {
    const pixels = Uint8Array.from({ length: 2 * 3 * 4 }, (_, i) => i);
    const msg = concat(header(1, 2, 3, 5), new TextEncoder().encode('alice'), pixels);
    const r = parsePicture(msg.buffer);
    expect(r.ok).toBe(true);
    if (!r.ok) return;
    expect(r.picture).toMatchObject({ kind: 'rgba', origin: remote('alice'), width: 2, height: 3 });
    expect(r.picture.data).toBeInstanceOf(Uint8ClampedArray);
    expect(Array.from(r.picture.data)).toEqual(Array.from(pixels));
  });

  it('reads a JPEG picture and a UTF-8 id', () => {
    const r = parsePicture(encodePicture(KIND_JPEG, remote('zoë'), 640, 480, JPEG));
    expect(r).toMatchObject({ ok: true, picture: { kind: 'jpeg', origin: remote('zoë'), width: 640, height: 480 } });
    if (r.ok) expect(Array.from(r.picture.data)).toEqual(Array.from(JPEG));
  });

  it('reads a view at an offset inside a larger buffer', () => {
    const msg = encodePicture(KIND_RGBA, remote('local'), 1, 1, new Uint8Array([9, 8, 7, 255]));
    const big = new Uint8Array(msg.byteLength + 10);
    big.set(msg, 7);
    const r = parsePicture(big.subarray(7, 7 + msg.byteLength));
    expect(r).toMatchObject({ ok: true, picture: { origin: remote('local'), width: 1, height: 1 } });
    if (r.ok) expect(Array.from(r.picture.data)).toEqual([9, 8, 7, 255]);
  });

  it.each([
    ['empty', new Uint8Array(0), /truncated header/],
    ['short header', new Uint8Array(31), /truncated header/],
    ['unknown kind', concat(header(3, 1, 1, 1), new Uint8Array([97, 0, 0, 0, 0])), /unknown picture kind 3/],
    ['kind zero (all zeros)', new Uint8Array(96), /unknown picture kind 0/],
    ['id longer than the message', concat(header(1, 1, 1, 50), new Uint8Array(10)), /truncated user id/],
    ['huge id length', concat(header(1, 1, 1, 0xffffffff), new Uint8Array(10)), /bad id length/],
    ['empty id', concat(header(2, 1, 1, 0), JPEG), /bad id length/],
    ['id not UTF-8', concat(header(2, 1, 1, 2), new Uint8Array([0xc3, 0x28]), JPEG), /not UTF-8/],
    ['RGBA short by a byte', concat(header(1, 2, 2, 1), new Uint8Array([97]), new Uint8Array(15)), /needs 16 bytes, got 15/],
    ['RGBA with extra bytes', concat(header(1, 1, 1, 1), new Uint8Array([97]), new Uint8Array(5)), /needs 4 bytes, got 5/],
    ['RGBA of zero width', concat(header(1, 0, 4, 1), new Uint8Array([97])), /bad size 0x4/],
    ['RGBA of absurd size', concat(header(1, 100000, 100000, 1), new Uint8Array([97])), /bad size/],
    ['JPEG without data', concat(header(2, 1, 1, 1), new Uint8Array([97])), /JPEG marker/],
    ['JPEG that is not a JPEG', concat(header(2, 1, 1, 1), new Uint8Array([97, 0x89, 0x50, 0x4e])), /JPEG marker/],
  ])('returns an error for %s', (_name, bytes, error) => {
    const r = parsePicture(bytes);
    expect(r.ok).toBe(false);
    if (!r.ok) expect(r.error).toMatch(error);
  });

  it('never throws on random garbage', () => {
    let seed = 1;
    const rand = () => ((seed = (seed * 1103515245 + 12345) % 2 ** 31), seed);
    for (let i = 0; i < 2000; i++) {
      const bytes = Uint8Array.from({ length: rand() % 96 }, () => rand() % 256);
      // Make a third of them look plausible so deeper checks run too.
      if (bytes.length >= HEADER_LEN && i % 3 === 0) new DataView(bytes.buffer).setUint32(0, 1 + (i % 2), true);
      expect(() => parsePicture(bytes)).not.toThrow();
    }
  });
});

describe('pictureTicket', () => {
  it('is the 8 ticket bytes, copied, and the time travels in the header', () => {
    const msg = encodePicture(KIND_JPEG, remote('u1'), 2, 2, JPEG, 2 ** 32 + 5, 1700000000123.5);
    const ticket = pictureTicket(msg.buffer as ArrayBuffer);
    expect(ticket).not.toBeNull();
    const view = new DataView(ticket!);
    expect([ticket!.byteLength, view.getUint32(0, true), view.getUint32(4, true)]).toEqual([8, 5, 1]);
    const r = parsePicture(msg);
    expect(r.ok && r.picture.producedMs).toBe(1700000000123.5);
  });

  it('is null for a message shorter than a header', () => {
    expect(pictureTicket(new ArrayBuffer(HEADER_LEN - 1))).toBeNull();
  });
});

describe('picture origin', () => {
  it('tells the local camera from a participant whose id is "local"', () => {
    const mine = parsePicture(encodePicture(KIND_JPEG, LOCAL, 2, 2, JPEG));
    expect(mine).toMatchObject({ ok: true, picture: { origin: { origin: 'local' } } });
    const theirs = parsePicture(encodePicture(KIND_JPEG, remote('local'), 2, 2, JPEG));
    expect(theirs).toMatchObject({ ok: true, picture: { origin: { origin: 'remote', user_id: 'local' } } });
  });

  it('refuses a local picture that carries a user id, and unknown origins', () => {
    const msg = encodePicture(KIND_JPEG, remote('local'), 2, 2, JPEG);
    new DataView(msg.buffer).setUint16(2, ORIGIN_LOCAL, true);
    expect(parsePicture(msg).ok).toBe(false);
    new DataView(msg.buffer).setUint16(2, 7, true);
    expect(parsePicture(msg)).toEqual({ ok: false, error: 'unknown picture origin 7' });
  });
});
