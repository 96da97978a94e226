import { describe, expect, it, vi } from 'vitest';
import { AppState } from './app.svelte';
import { errorText } from './errors';
import type { Backend } from './backend';
import { session } from '../test/fixtures';

// Only the methods a test touches are filled in; calling any other one fails the test.
const backend = (parts: Partial<Backend>) => parts as Backend;

describe('AppState', () => {
  it('run turns a refusal into words in an error toast, never a rejection', async () => {
    vi.useFakeTimers();
    const app = new AppState(backend({}));
    const result = await app.run(() => Promise.reject({ code: 'stage_full', message: 'max 25' }));
    expect(result).toBeUndefined();
    expect(app.toasts).toEqual([{ id: 1, text: 'The stage is full', tone: 'error' }]);
    expect(app.busy).toBe(false);
    vi.advanceTimersByTime(6000);
    expect(app.toasts).toEqual([]);
    vi.useRealTimers();
  });

  it('is busy while a command runs', async () => {
    const app = new AppState(backend({}));
    let finish!: (v: string) => void;
    const running = app.run(() => new Promise<string>((r) => (finish = r)));
    expect(app.busy).toBe(true);
    finish('done');
    expect(await running).toBe('done');
    expect(app.busy).toBe(false);
  });

  it('ignores a late "disconnected" session after leaving, but shows it in a meeting', () => {
    const app = new AppState(backend({}));
    app.applySession(session('viewer', 'OFF_STAGE', [], { connection: 'disconnected' }));
    expect(app.session).toBeNull();
    app.applySession(session('viewer'));
    app.applySession(session('viewer', 'OFF_STAGE', [], { connection: 'disconnected' }));
    expect(app.session?.connection).toBe('disconnected');
  });

  it('rejoin shows the new session, and a refused rejoin keeps the ended one on screen', async () => {
    vi.useFakeTimers();
    const ended = session('viewer', 'OFF_STAGE', [], { connection: 'disconnected', end_reason: 'replaced' });
    const back = session('viewer');
    let answer: () => Promise<typeof back> = () => Promise.reject({ code: 'unreachable', message: 'no answer' });
    const app = new AppState(backend({ rejoinMeeting: () => answer() }));
    app.mode = 'joined';
    app.session = ended;
    expect(await app.rejoin()).toBeUndefined();
    expect(app.session).toEqual(ended);
    expect(app.toasts.map((t) => t.tone)).toEqual(['error']);
    answer = () => Promise.resolve(back);
    expect(await app.rejoin()).toEqual(back);
    expect(app.session).toEqual(back);
    expect(app.mode).toBe('joined');
    vi.useRealTimers();
  });

  it('says where a join goes while it waits, and stops saying it either way', async () => {
    let finish: (s: ReturnType<typeof session>) => void = () => {};
    const app = new AppState(
      backend({ join: () => new Promise((resolve) => (finish = resolve)) }),
    );
    const joining = app.join({ server_url: 'https://meet.example.com:8443', token: 'secret' });
    expect(app.joining).toBe('https://meet.example.com:8443');
    finish(session('viewer'));
    await joining;
    expect(app.joining).toBeNull();
    const refused = new AppState(backend({ join: () => Promise.reject({ code: 'unreachable', message: 'x' }) }));
    await refused.join({ invite_link: 'onstage://join?server=http%3A%2F%2F10.0.0.9%3A1&token=t' });
    expect(refused.joining).toBeNull();
  });

  it('join keeps the session and mode; a refused join is a toast and nothing changes', async () => {
    vi.useFakeTimers();
    const joined = session('viewer');
    const app = new AppState(
      backend({
        join: (args) =>
          'token' in args && args.token === 'bad'
            ? Promise.reject({ code: 'unauthorized', message: 'bad token' })
            : Promise.resolve(joined),
      }),
    );
    expect(await app.join({ server_url: 'https://s', token: 'bad' })).toBeUndefined();
    expect(app.session).toBeNull();
    expect(app.mode).toBe('idle');
    expect(await app.join({ server_url: 'https://s', token: 'good' })).toEqual(joined);
    expect(app.session).toEqual(joined);
    expect(app.mode).toBe('joined');
    vi.useRealTimers();
  });

  it('files a media error under the device the shell names, whatever the message says', () => {
    const app = new AppState(backend({}));
    app.mediaError({ code: 'device_not_found', message: 'no camera', device: 'microphone' });
    expect(app.micProblem).toBe('No microphone found');
    expect(app.cameraProblem).toBeNull();
    app.mediaError({ code: 'device_busy', message: 'microphone busy', device: 'camera' });
    expect(app.cameraProblem).toBe('The camera is in use by another app');
    expect(app.micProblem).toBe('No microphone found');
    expect(app.toasts).toEqual([]);
  });

  it('a speaker error is a toast, not a camera or microphone problem', () => {
    vi.useFakeTimers();
    const app = new AppState(backend({}));
    app.mediaError({ code: 'device_not_found', message: 'no default speaker', device: 'speaker' });
    expect(app.toasts).toEqual([{ id: 1, text: 'No speaker found', tone: 'error' }]);
    expect(app.cameraProblem).toBeNull();
    expect(app.micProblem).toBeNull();
    vi.useRealTimers();
  });

  it('a media error without a device may be either, though its message names one', () => {
    const app = new AppState(backend({}));
    app.mediaError({ code: 'device_error', message: 'camera query failed' });
    expect(app.cameraProblem).toBe('Camera or microphone stopped working');
    expect(app.micProblem).toBe('Camera or microphone stopped working');
  });

  it('a device that publishes clears what was said against it, and only that one', () => {
    const app = new AppState(backend({}));
    app.mediaError({ code: 'device_denied', message: 'NotAllowedError' });
    const denied = errorText({ code: 'device_denied', message: '' });
    app.applySession(session('speaker', 'ON_STAGE', [], { publishing: { audio: false, video: false } }));
    expect([app.cameraProblem, app.micProblem]).toEqual([denied, denied]);
    app.applySession(session('speaker', 'ON_STAGE', [], { publishing: { audio: true, video: false } }));
    expect([app.cameraProblem, app.micProblem]).toEqual([denied, null]);
    app.applySession(session('speaker', 'ON_STAGE'));
    expect([app.cameraProblem, app.micProblem]).toEqual([null, null]);
  });

  it('a failing preview shows as a device problem; a working one clears it', async () => {
    let fail = true;
    const app = new AppState(
      backend({
        preview: () =>
          fail
            ? Promise.reject({ code: 'device_not_found', message: 'no camera', device: 'camera' })
            : Promise.resolve(),
      }),
    );
    await app.preview(true);
    expect(app.cameraProblem).toBe('No camera found');
    fail = false;
    await app.preview(true);
    expect(app.cameraProblem).toBeNull();
  });

  it('hosts, keeping a taken port as the join screen\'s problem rather than a toast', async () => {
    const calls: unknown[][] = [];
    let refuse = true;
    const app = new AppState(
      backend({
        startEmbedded: async (...args: unknown[]) => {
          calls.push(args);
          if (refuse) throw { code: 'port_in_use', message: 'port 8443 (HTTPS) is in use' };
          return session('host');
        },
      }),
    );
    expect(await app.host('Hanna')).toBeUndefined();
    expect(app.appError).toEqual({ code: 'port_in_use', message: 'port 8443 (HTTPS) is in use', context: 'start' });
    expect(app.toasts).toEqual([]);
    refuse = false;
    expect(await app.host('Hanna', true)).toBeDefined();
    expect(calls).toEqual([
      ['Hanna', false],
      ['Hanna', true],
    ]);
    expect([app.appError, app.mode, app.session?.meeting_id]).toEqual([null, 'embedded', session('host').meeting_id]);
  });

  it('shows an app-error on the join screen, and as a toast in a meeting', () => {
    const app = new AppState(backend({}));
    app.reportAppError({ code: 'bad_link', message: 'no token', context: 'link' });
    expect(app.appError?.code).toBe('bad_link');
    expect(app.toasts).toEqual([]);
    app.session = session('host');
    app.reportAppError({ code: 'invalid_state', message: 'already in a meeting', context: 'link' });
    expect(app.toasts.map((t) => t.tone)).toEqual(['error']);
  });

  it('hands a role link that came without a name to the join form, asking for the name', () => {
    const app = new AppState(backend({}));
    const link = 'onstage://join?server=https%3A%2F%2Fh%3A7000&invite=i';
    app.reportAppError({ code: 'bad_request', message: 'give your name', context: 'link', link });
    expect(app.pendingLink).toBe(link);
    expect(errorText(app.appError!)).toBe('This invite link is for anyone: enter your name, then Join');
    // Any other app-error leaves the form alone.
    app.pendingLink = null;
    app.reportAppError({ code: 'bad_link', message: 'no token', context: 'link' });
    expect(app.pendingLink).toBeNull();
  });

  it('other refusals to host are toasts', async () => {
    const app = new AppState(backend({ startEmbedded: () => Promise.reject({ code: 'internal', message: 'x' }) }));
    expect(await app.host('H')).toBeUndefined();
    expect(app.appError).toBeNull();
    expect(app.toasts).toHaveLength(1);
  });
});

describe('leaving and ending the meeting', () => {
  it('leaving an embedded meeting says it is still running for the others', async () => {
    const app = new AppState(backend({ leaveMeeting: async () => ({ still_running: true }) }));
    app.session = session('host');
    app.mode = 'embedded';
    await app.leave();
    expect(app.session).toBeNull();
    expect(app.mode).toBe('idle');
    expect(app.afterMeeting).toContain('still running for the others');
  });

  it('leaving a meeting on another server says nothing more', async () => {
    const app = new AppState(backend({ leaveMeeting: async () => ({ still_running: false }) }));
    app.session = session('viewer');
    await app.leave();
    expect(app.session).toBeNull();
    expect(app.afterMeeting).toBeNull();
  });

  it('ending calls end_meeting, not leave, and says it ended for everyone', async () => {
    const leaveMeeting = vi.fn();
    const endMeeting = vi.fn(async () => ({ still_running: false }));
    const app = new AppState(backend({ leaveMeeting, endMeeting }));
    app.session = session('host');
    expect(await app.endForAll()).toBe(true);
    expect(endMeeting).toHaveBeenCalledOnce();
    expect(leaveMeeting).not.toHaveBeenCalled();
    expect(app.session).toBeNull();
    expect(app.afterMeeting).toBe('You ended the meeting for everyone.');
  });

  it('a refused end keeps the meeting and says why', async () => {
    const app = new AppState(
      backend({ endMeeting: () => Promise.reject({ code: 'permission_denied', message: 'no' }) }),
    );
    app.session = session('viewer');
    expect(await app.endForAll()).toBe(false);
    expect(app.session).not.toBeNull();
    expect(app.toasts).toHaveLength(1);
  });

  it('only a host may end the meeting for all', () => {
    expect(session('host').me.can.end_meeting).toBe(true);
    for (const preset of ['speaker', 'viewer', 'spectator'] as const) {
      expect(session(preset).me.can.end_meeting).toBe(false);
    }
  });
});
