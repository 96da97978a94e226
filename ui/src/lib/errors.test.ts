import { describe, expect, it } from 'vitest';
import { describeError, deviceOf, errorPlace, errorText, toBackendError } from './errors';
import type { ErrorCode } from './types';

describe('error wording', () => {
  it.each<[ErrorCode, string]>([
    ['permission_denied', "You don't have permission to do that"],
    ['stage_full', 'The stage is full'],
    ['meeting_full', 'This meeting is full: the link lets nobody new in. Ask the host'],
    ['connection_lost', 'Connection lost — reconnecting…'],
    ['unauthorized', 'The server refused the token: check it, or ask the host for a new invite link'],
    ['token_revoked', 'This invite link no longer works: the host replaced or withdrew it. Ask the host for a new link'],
    ['rate_limited', 'Too many requests — wait a moment and try again'],
    [
      'untrusted_server',
      "The server's identity could not be verified: its certificate is not the one the invite link names",
    ],
  ])('%s -> %s', (code, words) => {
    expect(errorText({ code, message: 'raw server text' })).toBe(words);
  });

  // Each way a join fails has its own words: none of them is "reconnecting", which is only
  // for a meeting joined and then lost.
  it.each<[ErrorCode, string]>([
    ['unreachable', 'Cannot reach the server: check the address and your network'],
    ['not_onstage_server', 'That address answers, but it is not an Onstage server: check the address'],
    ['invalid_server_url', 'That is not a server address: it starts with https:// (or http://)'],
    ['token_expired', 'This invite link or token has expired: ask the host for a new one'],
    ['unauthorized', 'The server refused the token: check it, or ask the host for a new invite link'],
  ])('a failed join: %s -> %s', (code, words) => {
    expect(errorText({ code, message: 'cannot connect: raw text' })).toBe(words);
  });

  it('gives every join failure different words', () => {
    const codes = ['unreachable', 'not_onstage_server', 'invalid_server_url', 'token_expired', 'unauthorized',
      'bad_link', 'connection_lost'] as const;
    const words = codes.map((code) => errorText({ code, message: '' }));
    expect(new Set(words).size).toBe(codes.length);
    expect(errorText({ code: 'bad_link', message: 'no token' })).toBe('This invite link is not valid: no token');
  });

  it('puts a failed join by the join form and a taken port by hosting', () => {
    expect(errorPlace({ code: 'unauthorized', message: '', context: 'start' })).toBe('join');
    expect(errorPlace({ code: 'bad_link', message: '', context: 'link' })).toBe('join');
    expect(errorPlace({ code: 'port_in_use', message: '', context: 'start' })).toBe('host');
  });

  it('keeps the new codes as themselves from the shell', () => {
    for (const code of ['unreachable', 'not_onstage_server', 'invalid_server_url', 'token_expired'] as const) {
      expect(toBackendError({ code, message: 'm' }).code).toBe(code);
    }
  });

  it('has words for every SDK code, never the code or the message', () => {
    for (const code of ['invalid_state', 'not_found', 'bad_request', 'internal', 'closed'] as const) {
      const text = errorText({ code, message: '{"raw":"json"}' });
      expect(text).not.toContain(code);
      expect(text).not.toContain('{');
      expect(text.length).toBeGreaterThan(10);
    }
  });

  it('says what is wrong with a link, an address or a port, from the message', () => {
    expect(errorText({ code: 'bad_link', message: 'the invite link has no token (token=...)' })).toBe(
      'This invite link is not valid: the invite link has no token (token=...)',
    );
    expect(errorText({ code: 'bad_address', message: 'x' })).toBe('That address cannot go into a link: x');
    expect(errorText({ code: 'port_in_use', message: 'port 8443 (HTTPS) is in use' })).toBe(
      'The meeting cannot start: port 8443 (HTTPS) is in use',
    );
    expect(errorText({ code: 'bad_link', message: '' })).toBe('This invite link is not valid');
  });

  it('names the device the shell says a media error is about', () => {
    expect(errorText({ code: 'device_not_found', message: 'x', device: 'camera' })).toBe('No camera found');
    expect(errorText({ code: 'device_not_found', message: 'x', device: 'microphone' })).toBe('No microphone found');
    expect(errorText({ code: 'device_busy', message: 'x', device: 'camera' })).toBe(
      'The camera is in use by another app',
    );
    expect(errorText({ code: 'device_error', message: 'x', device: 'microphone' })).toBe('Microphone stopped working');
    expect(errorText({ code: 'device_not_found', message: 'x', device: 'speaker' })).toBe('No speaker found');
    expect(errorText({ code: 'device_lost', message: 'x', device: 'speaker' })).toBe('Speaker disconnected');
  });

  // The messages are for logs and may name any device: only `device` counts.
  it('never guesses the device from the message', () => {
    expect(deviceOf({ code: 'device_error', message: 'camera thing', device: 'microphone' })).toBe('microphone');
    expect(deviceOf({ code: 'device_error', message: 'mic stream failed', device: 'camera' })).toBe('camera');
    for (const message of ['no camera at index 0', 'no default input (microphone)', 'mic stream failed', 'webcam']) {
      expect(deviceOf({ code: 'device_not_found', message })).toBeNull();
      expect(errorText({ code: 'device_not_found', message })).toBe('No camera or microphone found');
    }
    expect(errorText({ code: 'device_busy', message: 'camera busy' })).toBe(
      'The camera or microphone is in use by another app',
    );
  });
});

describe('toBackendError', () => {
  it('keeps a {code, message} rejection', () => {
    expect(toBackendError({ code: 'stage_full', message: 'm' })).toEqual({ code: 'stage_full', message: 'm' });
  });

  it('reads a JSON string rejection', () => {
    expect(toBackendError('{"code":"permission_denied","message":"no"}')).toEqual({
      code: 'permission_denied',
      message: 'no',
    });
  });

  it('keeps the device the shell names, and only a real one', () => {
    expect(toBackendError({ code: 'device_busy', message: 'm', device: 'speaker' })).toEqual({
      code: 'device_busy',
      message: 'm',
      device: 'speaker',
    });
    expect(toBackendError('{"code":"device_error","message":"m","device":"microphone"}').device).toBe('microphone');
    expect(toBackendError({ code: 'device_busy', message: 'camera', device: 'webcam' })).toEqual({
      code: 'device_busy',
      message: 'camera',
    });
  });

  it('turns a plain string, an Error, an unknown code or anything else into internal', () => {
    expect(toBackendError('command join not found').code).toBe('internal');
    expect(toBackendError(new Error('boom'))).toEqual({ code: 'internal', message: 'boom' });
    expect(toBackendError(undefined).code).toBe('internal');
    expect(toBackendError({ code: 'stage_full' })).toEqual({ code: 'stage_full', message: '' });
    expect(toBackendError({ code: 'something_new', message: 'm' })).toEqual({ code: 'internal', message: 'm' });
  });

  it('describeError gives words for raw rejections', () => {
    expect(describeError('{"code":"stage_full","message":"x"}')).toBe('The stage is full');
    expect(describeError({ code: 'connection_lost', message: '' })).toBe('Connection lost — reconnecting…');
  });
});
