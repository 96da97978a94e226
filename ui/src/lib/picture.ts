// The binary picture format of docs/APP.md: a 32-byte little-endian header
// [u16 kind][u16 origin][u32 width][u32 height][u32 id_len][u64 ticket][f64 produced_unix_ms],
// the UTF-8 user id (a participant's picture) or nothing (the local camera), then the
// picture. Parsing never throws: a bad message is dropped by the caller, the stream
// carries on.

import type { Origin } from './origin';

export const HEADER_LEN = 32;
/** Where the ticket is: the UI answers a picture with these 8 bytes. */
export const TICKET_AT = 16;
export const TICKET_LEN = 8;
export const KIND_RGBA = 1;
export const KIND_JPEG = 2;
/** The header's origin: a participant, named by the user id that follows. */
export const ORIGIN_REMOTE = 0;
/** The header's origin: this machine's camera; no user id follows. */
export const ORIGIN_LOCAL = 1;

/** Far above any camera; guards width * height * 4 against absurd headers. */
export const MAX_SIDE = 8192;
/** User ids are short; a long one means the header is garbage. */
export const MAX_ID_LEN = 1024;

interface PictureCommon {
  origin: Origin;
  width: number;
  height: number;
  /** When the shell had the decoded picture, Unix milliseconds. */
  producedMs: number;
}

export type Picture =
  | (PictureCommon & { kind: 'rgba'; data: Uint8ClampedArray })
  | (PictureCommon & { kind: 'jpeg'; data: Uint8Array });

export type ParseResult = { ok: true; picture: Picture } | { ok: false; error: string };

const fail = (error: string): ParseResult => ({ ok: false, error });

const utf8 = new TextDecoder('utf-8', { fatal: true });

/** Parses one picture message. The pixel data is a view into `input`, not a copy. */
export function parsePicture(input: ArrayBuffer | ArrayBufferView): ParseResult {
  const bytes =
    input instanceof ArrayBuffer
      ? new Uint8Array(input)
      : new Uint8Array(input.buffer, input.byteOffset, input.byteLength);
  if (bytes.byteLength < HEADER_LEN) {
    return fail(`truncated header: ${bytes.byteLength} of ${HEADER_LEN} bytes`);
  }
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const kind = view.getUint16(0, true);
  const originCode = view.getUint16(2, true);
  const width = view.getUint32(4, true);
  const height = view.getUint32(8, true);
  const idLen = view.getUint32(12, true);
  const producedMs = view.getFloat64(24, true);

  if (kind !== KIND_RGBA && kind !== KIND_JPEG) return fail(`unknown picture kind ${kind}`);
  let origin: Origin;
  if (originCode === ORIGIN_LOCAL) {
    if (idLen !== 0) return fail(`the local camera has no user id, got ${idLen} bytes`);
    origin = { origin: 'local' };
  } else if (originCode === ORIGIN_REMOTE) {
    if (idLen === 0 || idLen > MAX_ID_LEN) return fail(`bad id length ${idLen}`);
    if (HEADER_LEN + idLen > bytes.byteLength) return fail('truncated user id');
    try {
      origin = { origin: 'remote', user_id: utf8.decode(bytes.subarray(HEADER_LEN, HEADER_LEN + idLen)) };
    } catch {
      return fail('user id is not UTF-8');
    }
  } else {
    return fail(`unknown picture origin ${originCode}`);
  }

  const body = bytes.subarray(HEADER_LEN + idLen);
  if (kind === KIND_RGBA) {
    if (width === 0 || height === 0 || width > MAX_SIDE || height > MAX_SIDE) {
      return fail(`bad size ${width}x${height}`);
    }
    const expected = width * height * 4;
    if (body.byteLength !== expected) {
      return fail(`RGBA ${width}x${height} needs ${expected} bytes, got ${body.byteLength}`);
    }
    const data = new Uint8ClampedArray(body.buffer, body.byteOffset, body.byteLength);
    return { ok: true, picture: { kind: 'rgba', origin, width, height, producedMs, data } };
  }

  // A JPEG starts with the SOI marker FF D8; anything else would only fail later in the
  // decoder, asynchronously and with a less useful error.
  if (body.byteLength < 2 || body[0] !== 0xff || body[1] !== 0xd8) {
    return fail('JPEG data does not start with a JPEG marker');
  }
  return { ok: true, picture: { kind: 'jpeg', origin, width, height, producedMs, data: body } };
}

/** Builds a message in the same format; the dev fake and the tests use it. */
export function encodePicture(
  kind: typeof KIND_RGBA | typeof KIND_JPEG,
  origin: Origin,
  width: number,
  height: number,
  body: Uint8Array,
  ticket = 0,
  producedMs = 0,
): Uint8Array {
  const idBytes = origin.origin === 'remote' ? new TextEncoder().encode(origin.user_id) : new Uint8Array(0);
  const out = new Uint8Array(HEADER_LEN + idBytes.byteLength + body.byteLength);
  const view = new DataView(out.buffer);
  view.setUint16(0, kind, true);
  view.setUint16(2, origin.origin === 'local' ? ORIGIN_LOCAL : ORIGIN_REMOTE, true);
  view.setUint32(4, width, true);
  view.setUint32(8, height, true);
  view.setUint32(12, idBytes.byteLength, true);
  view.setUint32(TICKET_AT, ticket % 2 ** 32, true);
  view.setUint32(TICKET_AT + 4, Math.floor(ticket / 2 ** 32), true);
  view.setFloat64(24, producedMs, true);
  out.set(idBytes, HEADER_LEN);
  out.set(body, HEADER_LEN + idBytes.byteLength);
  return out;
}

/**
 * The ticket of a picture message (its bytes 16..24), copied: what the UI sends back once
 * the picture is drawn. `null` when the message is too short to have one.
 */
export function pictureTicket(message: ArrayBuffer): ArrayBuffer | null {
  if (message.byteLength < HEADER_LEN) return null;
  return message.slice(TICKET_AT, TICKET_AT + TICKET_LEN);
}
