// Refusals from the shell turned into words. The codes are the SDK's stable codes, the
// media codes and the shell's own (docs/APP.md); users never see a code or raw JSON.

import {
  DEVICE_KINDS,
  ERROR_CODES,
  type AppError,
  type BackendError,
  type DeviceKind,
  type ErrorCode,
} from './types';

const WORDS: Partial<Record<ErrorCode, string>> = {
  permission_denied: "You don't have permission to do that",
  stage_full: 'The stage is full',
  meeting_full: 'This meeting is full: the link lets nobody new in. Ask the host',
  connection_lost: 'Connection lost — reconnecting…',
  invalid_state: 'That is no longer possible: the stage changed. Try again.',
  not_found: 'That person is no longer in the meeting',
  // A join that failed, one set of words per way (the SDK's codes say which).
  unauthorized: 'The server refused the token: check it, or ask the host for a new invite link',
  token_expired: 'This invite link or token has expired: ask the host for a new one',
  unreachable: 'Cannot reach the server: check the address and your network',
  not_onstage_server: 'That address answers, but it is not an Onstage server: check the address',
  invalid_server_url: 'That is not a server address: it starts with https:// (or http://)',
  token_revoked: 'This invite link no longer works: the host replaced or withdrew it. Ask the host for a new link',
  bad_request: 'The app sent a request the server did not understand',
  rate_limited: 'Too many requests — wait a moment and try again',
  internal: 'Something went wrong. Try again.',
  device_denied:
    'The browser was not allowed to use the camera or microphone: allow them for this page in its site settings, then try again',
  codec_error: 'The video codec (H.264) failed or is not available here',
  untrusted_server:
    "The server's identity could not be verified: its certificate is not the one the invite link names",
};

/**
 * Which device a media error is about: the shell's `device` field, set where the error
 * came from. The message is never read for it (it is for logs, and may mention any device).
 */
export function deviceOf(err: BackendError): DeviceKind | null {
  return err.device ?? null;
}

function deviceWords(code: ErrorCode, device: DeviceKind | null): string | null {
  const what = device ?? 'camera or microphone';
  const What = what[0]!.toUpperCase() + what.slice(1);
  switch (code) {
    case 'device_not_found':
      return `No ${what} found`;
    case 'device_busy':
      return `The ${what} is in use by another app`;
    case 'device_error':
      return `${What} stopped working`;
    case 'device_lost':
      return `${What} disconnected`;
    default:
      return null;
  }
}

/** Refusals whose message says exactly what is wrong: shown after the words. */
const WITH_MESSAGE: Partial<Record<ErrorCode, string>> = {
  bad_link: 'This invite link is not valid',
  bad_address: 'That address cannot go into a link',
  port_in_use: 'The meeting cannot start',
};

/**
 * Where the join screen shows an `app-error`: by the form it is about. Hosting's own
 * failures go with "Start a meeting"; everything else was a join (from the command line or
 * a link), so it goes with the join form, where it can be put right.
 */
export function errorPlace(err: AppError): 'host' | 'join' {
  return err.code === 'port_in_use' ? 'host' : 'join';
}

/** Human words for a refusal. */
export function errorText(err: BackendError & { link?: string }): string {
  // A role link handed to the join form: not a failure, a question.
  if (err.link) return 'This invite link is for anyone: enter your name, then Join';
  const lead = WITH_MESSAGE[err.code];
  if (lead) return err.message ? `${lead}: ${err.message}` : lead;
  return (
    WORDS[err.code] ??
    deviceWords(err.code, deviceOf(err)) ??
    'Something went wrong. Try again.'
  );
}

const isCode = (v: unknown): v is ErrorCode => (ERROR_CODES as readonly unknown[]).includes(v);
const isDevice = (v: unknown): v is DeviceKind => (DEVICE_KINDS as readonly unknown[]).includes(v);

/** Shaped like the shell's errors: an object with a string `code`. */
function isErrorShaped(v: unknown): v is { code: string; message?: unknown; device?: unknown } {
  return typeof v === 'object' && v !== null && typeof (v as { code?: unknown }).code === 'string';
}

/**
 * Whatever a rejected promise carried, as a BackendError. The shell rejects with
 * `{code, message, device?}`; Tauri itself rejects with a plain string when a command or
 * its arguments are wrong, and that string may be JSON. A code the UI does not know is
 * `internal` (the message kept), a `device` that is none of the kinds is left out.
 */
export function toBackendError(thrown: unknown): BackendError {
  if (isErrorShaped(thrown)) {
    const message = typeof thrown.message === 'string' ? thrown.message : '';
    const err: BackendError = { code: isCode(thrown.code) ? thrown.code : 'internal', message };
    if (isDevice(thrown.device)) err.device = thrown.device;
    return err;
  }
  if (typeof thrown === 'string') {
    try {
      const parsed: unknown = JSON.parse(thrown);
      if (isErrorShaped(parsed)) return toBackendError(parsed);
    } catch {
      // not JSON: a plain message
    }
    return { code: 'internal', message: thrown };
  }
  if (thrown instanceof Error) return { code: 'internal', message: thrown.message };
  return { code: 'internal', message: String(thrown) };
}

/** Words for anything a command rejected with. */
export function describeError(thrown: unknown): string {
  return errorText(toBackendError(thrown));
}
