// The app's state: the current session and what arrives beside it (devices, mic levels,
// media errors, toasts). Components read it and call `run` for every command, so every
// refusal ends up as words in a toast and never as an unhandled rejection.

import type { Backend } from './backend';
import { describeError, deviceOf, errorText, toBackendError } from './errors';
import { PictureHub } from './pictureHub';
import { joinTarget } from './invite';
import type { AppError, AppInfo, BackendError, Devices, JoinArgs, Left, Session, StreamMap } from './types';

export interface Toast {
  id: number;
  text: string;
  tone: 'info' | 'error';
}

const TOAST_MS = 6000;

/** What the start screen says after leaving: whether the meeting goes on without us. */
export function leftText(left: Left | undefined): string | null {
  return left?.still_running
    ? 'You left. The meeting is still running for the others while Onstage stays open; host again to go back in.'
    : null;
}

export class AppState {
  session = $state<Session | null>(null);
  mode = $state<AppInfo['mode']>('idle');
  devices = $state<Devices | null>(null);
  /** Words for the last media error per device, cleared when the device works again. */
  cameraProblem = $state<string | null>(null);
  micProblem = $state<string | null>(null);
  /** Latest audio level (0..1) per origin key (`originKey`: my microphone or a participant). */
  levels = $state<Record<string, number>>({});
  toasts = $state<Toast[]>([]);
  /**
   * A failure no command answered for (`app-error`: hosting at start, an invite link opened
   * from outside) or a start that needs a decision (`port_in_use`): shown on the join
   * screen until the next attempt.
   */
  appError = $state<AppError | null>(null);
  /**
   * A role link the shell handed over without a name (`app-error` with `link`): the join
   * form takes it into its link field and asks for the name.
   */
  pendingLink = $state<string | null>(null);
  /** A join under way: the server it goes to, shown until it is in or has failed. */
  joining = $state<string | null>(null);
  /**
   * What the start screen says about the meeting just left: that it goes on for the others
   * (an embedded host left without ending it), or that it was ended for everyone.
   */
  afterMeeting = $state<string | null>(null);
  /** Commands in flight; while any runs, buttons that would race it are disabled. */
  private pending = $state(0);

  readonly pictures = new PictureHub();
  /** In a browser: the streams the tiles and the preview play (`onStreams`); empty on the desktop. */
  streams = $state.raw<StreamMap>({});
  private nextToast = 1;

  constructor(readonly backend: Backend) {}

  get busy(): boolean {
    return this.pending > 0;
  }

  /**
   * Leaves the meeting; it goes on for the others. Leaving is local: even if the shell
   * reported a problem, the meeting is over here.
   */
  async leave() {
    const left = await this.run(() => this.backend.leaveMeeting());
    this.session = null;
    this.mode = 'idle';
    this.afterMeeting = leftText(left);
  }

  /**
   * Ends the meeting for everyone. Refused (not a host, the connection is down): the
   * meeting goes on and the refusal is a toast. Returns whether it ended.
   */
  async endForAll(): Promise<boolean> {
    const ended = await this.run(() => this.backend.endMeeting());
    if (!ended) return false;
    this.session = null;
    this.mode = 'idle';
    this.afterMeeting = 'You ended the meeting for everyone.';
    return true;
  }

  /** Joins a meeting on a server; a refusal is a toast. `joining` names it meanwhile. */
  async join(args: JoinArgs): Promise<Session | undefined> {
    this.appError = null;
    this.joining = joinTarget(args) || 'the server';
    try {
      const session = await this.run(() => this.backend.join(args));
      if (session) {
        this.mode = 'joined';
        this.session = session;
      }
      return session;
    } finally {
      this.joining = null;
    }
  }

  /**
   * Enters the meeting that ended here again, the way it was entered (the same link or
   * token, or hosting again: the shell keeps it). A refusal is a toast and the ended
   * meeting stays on screen, so Rejoin can be tried again.
   */
  async rejoin(): Promise<Session | undefined> {
    const session = await this.run(() => this.backend.rejoinMeeting());
    if (session) this.session = session;
    return session;
  }

  /** A `session` event from the shell. */
  applySession(s: Session) {
    // After Leave meeting the shell may still report the old meeting as disconnected;
    // that must not pull the user back out of the join screen.
    if (s.connection === 'disconnected' && this.session === null) return;
    this.session = s;
    // A device whose track goes out works: what was said against it no longer holds.
    if (s.publishing.video) this.cameraProblem = null;
    if (s.publishing.audio) this.micProblem = null;
  }

  toast(text: string, tone: Toast['tone'] = 'info') {
    const id = this.nextToast++;
    this.toasts.push({ id, text, tone });
    setTimeout(() => this.dismiss(id), TOAST_MS);
  }

  dismiss(id: number) {
    this.toasts = this.toasts.filter((t) => t.id !== id);
  }

  /** Runs a command; a refusal becomes an error toast and the result is undefined. */
  async run<T>(command: () => Promise<T>): Promise<T | undefined> {
    this.pending++;
    try {
      return await command();
    } catch (e) {
      this.toast(describeError(e), 'error');
      return undefined;
    } finally {
      this.pending--;
    }
  }

  /** An `app-error` from the shell: on the join screen, and as a toast in a meeting. */
  reportAppError(err: AppError) {
    this.appError = err;
    if (err.link) this.pendingLink = err.link;
    if (this.session) this.toast(errorText(err), 'error');
  }

  /**
   * Hosts a meeting on the embedded server. A taken port is kept as `appError` (the join
   * screen offers new ports); other refusals are toasts as usual.
   */
  async host(name: string, newPorts = false): Promise<Session | undefined> {
    this.appError = null;
    this.pending++;
    try {
      const session = await this.backend.startEmbedded(name, newPorts);
      this.mode = 'embedded';
      this.session = session;
      return session;
    } catch (e) {
      const err = toBackendError(e);
      if (err.code === 'port_in_use') this.appError = { ...err, context: 'start' };
      else this.toast(errorText(err), 'error');
      return undefined;
    } finally {
      this.pending--;
    }
  }

  /** A media error, filed under the device the shell says it is about. */
  mediaError(err: BackendError) {
    const words = errorText(err);
    switch (deviceOf(err)) {
      case 'camera':
        this.cameraProblem = words;
        break;
      case 'microphone':
        this.micProblem = words;
        break;
      case 'speaker':
        // Nothing on screen stands for the speaker: say it once.
        this.toast(words, 'error');
        break;
      case null:
        // About no one device (listing them failed, ...): either may be affected.
        this.cameraProblem = this.micProblem = words;
    }
  }

  async loadDevices() {
    try {
      this.devices = await this.backend.devices();
    } catch (e) {
      this.mediaError(toBackendError(e));
    }
  }

  /** Turns the local preview on or off; a device error is shown where the preview is. */
  async preview(on: boolean) {
    try {
      await this.backend.preview(on);
      if (on) this.cameraProblem = this.micProblem = null;
    } catch (e) {
      this.mediaError(toBackendError(e));
    }
  }
}
