// The client's copy of the room, and the rules that turn room events into meeting events.
// Pure: no I/O, no clock, no timers; the connection feeds it and publishes what it returns.
// A port of the Rust SDK's `mirror.rs`: the same rules, the same order of events.
//
// Ordering and gaps: the mirror starts from the welcome's snapshot (`seq` = the last event it
// includes) and applies event `seq + 1`; older events are already in it. A jump means events
// were missed: it asks for a fresh snapshot (`needSnapshot`), buffers what arrives meanwhile,
// and on `onSnapshot` replaces its state, emits events for the difference, then replays the
// buffered events newer than the snapshot.
//
// Derivation, for `stage_status_changed {user_id, status, reason, by, requested_at}`:
// - this participant: `stageRequestApproved {by}` for `granted`/`invited`,
//   `stageRequestRejected {by}` for `denied`, then `stageStatusUpdate {status}`;
// - always `participantStageStatus {user_id, status}`;
// - for an acceptor whose queue changed: `newStageRequest` when it became REQUESTED, then
//   `stageAccessRequestUpdate` with the whole queue.
// A snapshot replacing the state emits the difference: `participantLeft` (reason `left`: the
// real one is unknown) for those gone, `participantJoined` for newcomers, status and
// connection changes (`stageRequestApproved {by: null}` when this participant became ACCEPTED
// from REQUESTED, or from OFF unless its preset is ALLOWED, whose own request accepts at
// once), and for acceptors `newStageRequest` per new request plus one queue update.

import type { MeetingEvent } from "./events.js";
import {
  mayAcceptRequests,
  type AccessRequest,
  type IceServer,
  type MediaEvent,
  type MediaKinds,
  type ParticipantInfo,
  type Preset,
  type PublishedMedia,
  type RoomEvent,
  type RoomSnapshot,
  type StageStatus,
  type Welcome,
} from "./protocol.js";

/** What applying an input produced. */
export interface Applied {
  /** Events to publish, in order. */
  events: MeetingEvent[];
  /** A gap was seen: ask for `meeting.snapshot` and hand the result to `onSnapshot`. */
  needSnapshot: boolean;
}

function nothing(): Applied {
  return { events: [], needSnapshot: false };
}

function publishingMap(list: PublishedMedia[]): Map<string, MediaKinds> {
  return new Map(list.map((p) => [p.user_id, { audio: p.audio, video: p.video }]));
}

/** Keys in order, as the Rust mirror's BTreeMap walks them, so events come in one order. */
function sortedKeys<V>(map: Map<string, V>): string[] {
  return [...map.keys()].sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
}

function sameRequest(a: AccessRequest, b: AccessRequest): boolean {
  return a.user_id === b.user_id && a.name === b.name && a.requested_at === b.requested_at;
}

function sameQueue(a: AccessRequest[], b: AccessRequest[]): boolean {
  return a.length === b.length && a.every((r, i) => sameRequest(r, b[i] as AccessRequest));
}

function copyQueue(queue: AccessRequest[]): AccessRequest[] {
  return queue.map((r) => ({ ...r }));
}

/** Inserts keeping the queue oldest first; equal times keep arrival order (the room's rule). */
function insertRequest(queue: AccessRequest[], request: AccessRequest): void {
  let at = 0;
  while (at < queue.length && (queue[at] as AccessRequest).requested_at <= request.requested_at) {
    at += 1;
  }
  queue.splice(at, 0, request);
}

export class Mirror {
  private meetingIdValue: string;
  private titleValue: string;
  private userIdValue: string;
  private peerIdValue: string;
  private presetValue: Preset;
  private graceMsValue: number;
  private seqValue: number;
  private maxOnStageValue: number;
  /** The roster in join order. */
  private roster: ParticipantInfo[];
  /** Oldest first. */
  private requests: AccessRequest[];
  /** Set while a snapshot is awaited: the events received meanwhile, by seq. */
  private resync: Map<number, RoomEvent> | null = null;
  private ownStatusSeqValue = 0;
  private publishingValue: Map<string, MediaKinds>;
  private iceServersValue: IceServer[];

  constructor(welcome: Welcome) {
    this.meetingIdValue = welcome.meeting_id;
    this.titleValue = welcome.title;
    this.userIdValue = welcome.user_id;
    this.peerIdValue = welcome.peer_id;
    this.presetValue = welcome.preset;
    this.graceMsValue = welcome.grace_ms;
    this.seqValue = welcome.snapshot.seq;
    this.maxOnStageValue = welcome.snapshot.max_on_stage;
    this.roster = welcome.snapshot.participants.map((p) => ({ ...p }));
    this.requests = copyQueue(welcome.snapshot.queue);
    this.publishingValue = publishingMap(welcome.publishing);
    this.iceServersValue = welcome.ice_servers;
  }

  get meetingId(): string {
    return this.meetingIdValue;
  }
  /** Empty from a server that does not send one. */
  get title(): string {
    return this.titleValue;
  }
  get userId(): string {
    return this.userIdValue;
  }
  get peerId(): string {
    return this.peerIdValue;
  }
  get preset(): Preset {
    return { ...this.presetValue };
  }
  get graceMs(): number {
    return this.graceMsValue;
  }
  /** The sequence number of the last event applied. */
  get seq(): number {
    return this.seqValue;
  }
  get maxOnStage(): number {
    return this.maxOnStageValue;
  }
  /** The relays (with this participant's credentials) from the latest welcome. */
  get iceServers(): IceServer[] {
    return this.iceServersValue.map((s) => ({ ...s, urls: [...s.urls] }));
  }
  /** Who publishes media right now and what. */
  get publishing(): Map<string, MediaKinds> {
    return new Map(sortedKeys(this.publishingValue).map((u) => [u, { ...this.kinds(u) }]));
  }

  /** Everyone in the roster, this participant included, in join order. */
  participants(): ParticipantInfo[] {
    return this.roster.map((p) => ({ ...p }));
  }

  participant(userId: string): ParticipantInfo | undefined {
    const p = this.find(userId);
    return p && { ...p };
  }

  /**
   * This participant as the roster shows it (an OFF_STAGE stand-in if the roster does not
   * hold it, which only happens in the instant around leaving).
   */
  me(): ParticipantInfo {
    return (
      this.participant(this.userIdValue) ?? {
        user_id: this.userIdValue,
        peer_id: this.peerIdValue,
        name: "",
        preset: this.presetValue.name,
        stage_status: "OFF_STAGE",
        connected: false,
      }
    );
  }

  /** This participant's own stage status. */
  status(): StageStatus {
    return this.statusOf(this.userIdValue);
  }

  /** The request queue, oldest first. */
  queue(): AccessRequest[] {
    return copyQueue(this.requests);
  }

  /**
   * This participant's place in the queue (1 = next in line) while REQUESTED. Every mirror
   * keeps the queue (the events carry each request's time); only acceptors are told it.
   */
  placeInQueue(): number | null {
    const i = this.requests.findIndex((r) => r.user_id === this.userIdValue);
    return i < 0 ? null : i + 1;
  }

  /**
   * The seq of the last event (or snapshot) that changed this participant's own status. A
   * status call sent at seq `s` has taken effect in the mirror once this is greater than `s`.
   */
  get ownStatusSeq(): number {
    return this.ownStatusSeqValue;
  }

  /** Is a snapshot awaited (a gap was seen)? */
  awaitingSnapshot(): boolean {
    return this.resync !== null;
  }

  /** Events telling what is published now (after a join: there is no earlier state). */
  publishingEvents(): MeetingEvent[] {
    return sortedKeys(this.publishingValue).map((user_id) => {
      const k = this.kinds(user_id);
      return { event: "mediaPublished", user_id, audio: k.audio, video: k.video };
    });
  }

  /** A `media` message: who publishes changed. Returns the event to deliver. */
  onMedia(event: MediaEvent): MeetingEvent {
    if (event.kind === "published") {
      this.publishingValue.set(event.user_id, { audio: event.audio, video: event.video });
      return {
        event: "mediaPublished",
        user_id: event.user_id,
        audio: event.audio,
        video: event.video,
      };
    }
    this.publishingValue.delete(event.user_id);
    return { event: "mediaUnpublished", user_id: event.user_id };
  }

  /** Applies one sequenced room event. */
  onEvent(seq: number, event: RoomEvent): Applied {
    if (this.resync !== null) {
      this.resync.set(seq, event);
      return nothing();
    }
    if (seq <= this.seqValue) return nothing();
    if (seq > this.seqValue + 1) {
      this.resync = new Map([[seq, event]]);
      return { events: [], needSnapshot: true };
    }
    this.seqValue = seq;
    return { events: this.apply(event), needSnapshot: false };
  }

  /**
   * A host ended the meeting: told at once, gap or not (nothing after it matters, and a
   * resync could never be answered: the connection closes next).
   */
  onMeetingEnded(seq: number, by: string): MeetingEvent[] {
    this.resync = null;
    this.seqValue = Math.max(this.seqValue, seq);
    return [{ event: "meetingEnded", by }];
  }

  /** Replaces the room with a fresh snapshot, emits what changed, replays the buffer. */
  onSnapshot(snapshot: RoomSnapshot): Applied {
    const buffered = this.resync ?? new Map<number, RoomEvent>();
    this.resync = null;
    const applied: Applied = { events: this.replace(snapshot), needSnapshot: false };
    for (const seq of [...buffered.keys()].sort((a, b) => a - b)) {
      const more = this.onEvent(seq, buffered.get(seq) as RoomEvent);
      applied.events.push(...more.events);
      applied.needSnapshot ||= more.needSnapshot;
    }
    return applied;
  }

  /** The snapshot request failed: drop the buffer; the next event sees the gap and asks anew. */
  snapshotFailed(): void {
    this.resync = null;
  }

  /**
   * A new welcome after a reconnect: takes its ids, preset and snapshot and emits what
   * changed. A pending resync is dropped (the snapshot is fresh).
   */
  onWelcome(welcome: Welcome): MeetingEvent[] {
    this.resync = null;
    this.titleValue = welcome.title;
    // Fresh credentials with every welcome: expired ones are renewed by reconnecting.
    this.iceServersValue = welcome.ice_servers;
    const now = publishingMap(welcome.publishing);
    const media: MeetingEvent[] = sortedKeys(this.publishingValue)
      .filter((u) => !now.has(u))
      .map((user_id) => ({ event: "mediaUnpublished", user_id }));
    for (const user_id of sortedKeys(now)) {
      const kinds = now.get(user_id) as MediaKinds;
      const before = this.publishingValue.get(user_id);
      if (!before || before.audio !== kinds.audio || before.video !== kinds.video) {
        media.push({ event: "mediaPublished", user_id, audio: kinds.audio, video: kinds.video });
      }
    }
    this.publishingValue = now;
    this.meetingIdValue = welcome.meeting_id;
    this.userIdValue = welcome.user_id;
    this.peerIdValue = welcome.peer_id;
    this.presetValue = welcome.preset;
    this.graceMsValue = welcome.grace_ms;
    const events = this.replace(welcome.snapshot);
    events.push(...media);
    return events;
  }

  private kinds(userId: string): MediaKinds {
    return this.publishingValue.get(userId) ?? { audio: false, video: false };
  }

  private find(userId: string): ParticipantInfo | undefined {
    return this.roster.find((p) => p.user_id === userId);
  }

  private statusOf(userId: string): StageStatus {
    return this.find(userId)?.stage_status ?? "OFF_STAGE";
  }

  private isMe(userId: string): boolean {
    return this.userIdValue === userId;
  }

  private acceptor(): boolean {
    return mayAcceptRequests(this.presetValue);
  }

  private apply(event: RoomEvent): MeetingEvent[] {
    const out: MeetingEvent[] = [];
    switch (event.kind) {
      case "participant_joined": {
        const participant = { ...event.participant };
        const i = this.roster.findIndex((p) => p.user_id === participant.user_id);
        if (i >= 0) this.roster[i] = participant;
        else this.roster.push(participant);
        out.push({ event: "participantJoined", participant: { ...participant } });
        break;
      }
      case "participant_left": {
        const { user_id, reason } = event;
        this.roster = this.roster.filter((p) => p.user_id !== user_id);
        const before = this.requests.length;
        this.requests = this.requests.filter((r) => r.user_id !== user_id);
        if (this.requests.length !== before && this.acceptor()) {
          out.push({ event: "stageAccessRequestUpdate", requests: copyQueue(this.requests) });
        }
        out.push({ event: "participantLeft", user_id, reason });
        break;
      }
      case "meeting_ended":
        out.push({ event: "meetingEnded", by: event.by });
        break;
      case "participant_muted":
        out.push({ event: "participantMuted", user_id: event.user_id, by: event.by });
        break;
      case "preset_changed": {
        const { user_id, preset, by } = event;
        const p = this.find(user_id);
        if (p) p.preset = preset.name;
        const wasAcceptor = this.acceptor();
        if (this.isMe(user_id)) this.presetValue = { ...preset };
        out.push({ event: "presetChanged", user_id, preset: preset.name, by });
        // A new host is shown the queue as it stands (it heard no request so far).
        if (!wasAcceptor && this.acceptor()) {
          out.push({ event: "stageAccessRequestUpdate", requests: copyQueue(this.requests) });
        }
        break;
      }
      case "participant_connection": {
        const { user_id, connected } = event;
        const p = this.find(user_id);
        if (p) p.connected = connected;
        out.push({ event: "participantConnection", user_id, connected });
        break;
      }
      case "stage_status_changed": {
        const { user_id, status, reason } = event;
        const by = event.by ?? null;
        let name = "";
        const p = this.find(user_id);
        if (p) {
          p.stage_status = status;
          name = p.name;
        }
        const before = this.requests.length;
        this.requests = this.requests.filter((r) => r.user_id !== user_id);
        let queueChanged = this.requests.length !== before;
        let newRequest: AccessRequest | null = null;
        if (status === "REQUESTED_TO_JOIN_STAGE") {
          const request = { user_id, name, requested_at: event.requested_at ?? 0 };
          insertRequest(this.requests, request);
          newRequest = { ...request };
          queueChanged = true;
        }
        if (this.isMe(user_id)) {
          this.ownStatusSeqValue = this.seqValue;
          if (reason === "granted" || reason === "invited") {
            out.push({ event: "stageRequestApproved", by });
          } else if (reason === "denied") {
            out.push({ event: "stageRequestRejected", by });
          }
          out.push({ event: "stageStatusUpdate", status });
        }
        out.push({ event: "participantStageStatus", user_id, status });
        if (queueChanged && this.acceptor()) {
          if (newRequest) out.push({ event: "newStageRequest", request: newRequest });
          out.push({ event: "stageAccessRequestUpdate", requests: copyQueue(this.requests) });
        }
        break;
      }
    }
    return out;
  }

  /** Replaces roster and queue with a snapshot; returns the events for the difference. */
  private replace(snapshot: RoomSnapshot): MeetingEvent[] {
    const oldParticipants = this.roster;
    const oldQueue = this.requests;
    this.roster = snapshot.participants.map((p) => ({ ...p }));
    this.requests = copyQueue(snapshot.queue);
    this.seqValue = snapshot.seq;
    this.maxOnStageValue = snapshot.max_on_stage;

    const findOld = (id: string) => oldParticipants.find((p) => p.user_id === id);
    const oldOwn = findOld(this.userIdValue)?.stage_status ?? "OFF_STAGE";
    if (oldOwn !== this.status()) this.ownStatusSeqValue = this.seqValue;

    const out: MeetingEvent[] = [];
    for (const gone of oldParticipants.filter((o) => this.find(o.user_id) === undefined)) {
      if (gone.stage_status !== "OFF_STAGE") {
        if (this.isMe(gone.user_id)) out.push({ event: "stageStatusUpdate", status: "OFF_STAGE" });
        out.push({ event: "participantStageStatus", user_id: gone.user_id, status: "OFF_STAGE" });
      }
      out.push({ event: "participantLeft", user_id: gone.user_id, reason: "left" });
    }

    for (const now of this.roster) {
      const old = findOld(now.user_id);
      const oldStatus = old?.stage_status ?? "OFF_STAGE";
      if (this.isMe(now.user_id) && oldStatus !== now.stage_status) {
        // Accepted without asking (an ALLOWED preset's own request goes straight to
        // ACCEPTED) is not an approval; anything else is.
        const approved =
          now.stage_status === "ACCEPTED_TO_JOIN_STAGE" &&
          (oldStatus === "REQUESTED_TO_JOIN_STAGE" ||
            (oldStatus === "OFF_STAGE" && this.presetValue.stage_access !== "ALLOWED"));
        if (approved) out.push({ event: "stageRequestApproved", by: null });
        out.push({ event: "stageStatusUpdate", status: now.stage_status });
      }
      if (!old) {
        out.push({ event: "participantJoined", participant: { ...now } });
        continue;
      }
      if (old.stage_status !== now.stage_status) {
        out.push({ event: "participantStageStatus", user_id: now.user_id, status: now.stage_status });
      }
      if (old.connected !== now.connected) {
        out.push({ event: "participantConnection", user_id: now.user_id, connected: now.connected });
      }
    }

    if (this.acceptor() && !sameQueue(oldQueue, this.requests)) {
      for (const request of this.requests.filter((r) => !oldQueue.some((o) => sameRequest(o, r)))) {
        out.push({ event: "newStageRequest", request: { ...request } });
      }
      out.push({ event: "stageAccessRequestUpdate", requests: copyQueue(this.requests) });
    }
    return out;
  }
}
