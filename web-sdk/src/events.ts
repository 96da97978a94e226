// The events a meeting delivers: RealtimeKit's names (camelCase), fields as the Rust SDK and
// the `onstage bot` print them (`{"event":"stageStatusUpdate","status":"ON_STAGE"}`), so one
// reading of an event serves every Onstage client.

import type {
  AccessRequest,
  CloseReason,
  ErrorCode,
  LeaveReason,
  ParticipantInfo,
  StageStatus,
} from "./protocol.js";

/** The state of the signaling connection. */
export type ConnectionState = "connected" | "reconnecting" | "disconnected";

export type MeetingEvent =
  /** This participant's own stage status changed. */
  | { event: "stageStatusUpdate"; status: StageStatus }
  /** The whole request queue, oldest first, after any change. Acceptors only. */
  | { event: "stageAccessRequestUpdate"; requests: AccessRequest[] }
  /** Someone asked to come on stage. Acceptors only. */
  | { event: "newStageRequest"; request: AccessRequest }
  /** This participant was granted or invited (now ACCEPTED); `by` when known. */
  | { event: "stageRequestApproved"; by: string | null }
  /** This participant's request was denied (back to OFF_STAGE). */
  | { event: "stageRequestRejected"; by: string | null }
  /** Any participant's stage status changed, this participant's own included. */
  | { event: "participantStageStatus"; user_id: string; status: StageStatus }
  | { event: "participantJoined"; participant: ParticipantInfo }
  | { event: "participantLeft"; user_id: string; reason: LeaveReason }
  /** A participant's connection dropped (it keeps its place for the grace period) or came back. */
  | { event: "participantConnection"; user_id: string; connected: boolean }
  | { event: "mediaPublished"; user_id: string; audio: boolean; video: boolean }
  | { event: "mediaUnpublished"; user_id: string }
  /** A host ended the meeting for everyone; `disconnected` (reason `meeting_ended`) follows. */
  | { event: "meetingEnded"; by: string }
  /** A host muted an ON_STAGE participant's microphone. */
  | { event: "participantMuted"; user_id: string; by: string }
  /** A participant was given another preset (its name). */
  | { event: "presetChanged"; user_id: string; preset: string; by: string }
  /**
   * This client's connection changed state. `resumed` on `connected` after a reconnect;
   * `reason` on `disconnected` when the session ended for a known reason.
   */
  | {
      event: "connectionStateUpdate";
      state: ConnectionState;
      resumed?: boolean;
      reason?: CloseReason;
    }
  /**
   * The server sent something this SDK cannot read (code `internal`), or reported an error
   * not tied to a call (its code). The connection carries on.
   */
  | { event: "protocolError"; code: ErrorCode; message: string };

export type MeetingEventName = MeetingEvent["event"];

/** Every event's name, the Rust SDK's first, in its order. */
export const MEETING_EVENTS = [
  "stageStatusUpdate",
  "stageAccessRequestUpdate",
  "newStageRequest",
  "stageRequestApproved",
  "stageRequestRejected",
  "participantStageStatus",
  "participantJoined",
  "participantLeft",
  "participantConnection",
  "mediaPublished",
  "mediaUnpublished",
  "meetingEnded",
  "participantMuted",
  "presetChanged",
  "connectionStateUpdate",
  "protocolError",
] as const satisfies readonly MeetingEventName[];

// The list and the union must name the same events: this fails to compile otherwise.
type Missing = Exclude<MeetingEventName, (typeof MEETING_EVENTS)[number]>;
const everyEventListed: [Missing] extends [never] ? true : Missing = true;
void everyEventListed;

export type EventOf<K extends MeetingEventName> = Extract<MeetingEvent, { event: K }>;

/** The events RealtimeKit's Stage module emits, also available on `meeting.stage`. */
export const STAGE_EVENTS = [
  "stageStatusUpdate",
  "stageAccessRequestUpdate",
  "newStageRequest",
  "stageRequestApproved",
  "stageRequestRejected",
] as const;

export type StageEventName = (typeof STAGE_EVENTS)[number];
