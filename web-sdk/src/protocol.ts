// The signaling protocol of `/v1/signal`, as the server speaks it (docs/API.md, "Signaling"),
// and a decoder for what the server sends.
//
// The decoder is strict about types and lenient about extra fields, as the server's own
// (serde) reading is: a frame that does not decode is dropped whole rather than half-applied,
// and the defaults the server relies on (a participant's omitted `stage_status` is
// OFF_STAGE, its omitted `connected` is true, ...) are filled in here, once.

/** Where a participant stands with respect to the stage. */
export type StageStatus =
  | "OFF_STAGE"
  | "REQUESTED_TO_JOIN_STAGE"
  | "ACCEPTED_TO_JOIN_STAGE"
  | "ON_STAGE";

export const STAGE_STATUSES: readonly StageStatus[] = [
  "OFF_STAGE",
  "REQUESTED_TO_JOIN_STAGE",
  "ACCEPTED_TO_JOIN_STAGE",
  "ON_STAGE",
];

/** How a preset may reach the stage. */
export type StageAccess = "ALLOWED" | "CAN_REQUEST" | "NOT_ALLOWED";

const STAGE_ACCESS: readonly StageAccess[] = ["ALLOWED", "CAN_REQUEST", "NOT_ALLOWED"];

/** A preset: the permissions a participant joins with (RealtimeKit's field names). */
export interface Preset {
  name: string;
  stage_enabled: boolean;
  stage_access: StageAccess;
  accept_stage_requests: boolean;
  kick_participant: boolean;
  can_produce_audio: boolean;
  can_produce_video: boolean;
}

/** May this preset see the request queue, grant and deny? */
export function mayAcceptRequests(preset: Preset): boolean {
  return preset.accept_stage_requests;
}

/** May this preset end the meeting for everyone? Only a host: one that runs the stage and kicks. */
export function mayEndMeeting(preset: Preset): boolean {
  return preset.accept_stage_requests && preset.kick_participant;
}

/** May this preset take people off the stage? */
export function mayKick(preset: Preset): boolean {
  return preset.accept_stage_requests || preset.kick_participant;
}

/** One entry of the stage request queue. */
export interface AccessRequest {
  user_id: string;
  name: string;
  /** Unix milliseconds: the request's place in the queue. */
  requested_at: number;
}

/** A participant as everyone in the meeting sees it. */
export interface ParticipantInfo {
  user_id: string;
  peer_id: string;
  name: string;
  /** The preset's name. */
  preset: string;
  stage_status: StageStatus;
  /** False while its connection is down and its grace period runs. */
  connected: boolean;
}

/** The whole room at one sequence number. */
export interface RoomSnapshot {
  /** The sequence number of the last event included. */
  seq: number;
  max_on_stage: number;
  participants: ParticipantInfo[];
  /** Oldest first. */
  queue: AccessRequest[];
}

export type StageChangeReason =
  | "requested"
  | "auto_accepted"
  | "cancelled"
  | "granted"
  | "invited"
  | "denied"
  | "joined"
  | "left"
  | "declined"
  | "kicked"
  | "removed";

const STAGE_CHANGE_REASONS: readonly StageChangeReason[] = [
  "requested",
  "auto_accepted",
  "cancelled",
  "granted",
  "invited",
  "denied",
  "joined",
  "left",
  "declined",
  "kicked",
  "removed",
];

/** Why a participant left the roster. */
export type LeaveReason = "left" | "timed_out" | "removed";

const LEAVE_REASONS: readonly LeaveReason[] = ["left", "timed_out", "removed"];

/** A change in the room, told to everyone in the meeting (sequenced). */
export type RoomEvent =
  | { kind: "participant_joined"; participant: ParticipantInfo }
  | { kind: "participant_left"; user_id: string; reason: LeaveReason }
  | { kind: "participant_connection"; user_id: string; connected: boolean }
  | {
      kind: "stage_status_changed";
      user_id: string;
      status: StageStatus;
      reason: StageChangeReason;
      /** Who caused it when it was not the participant itself. */
      by?: string;
      /** Set when the status is REQUESTED: the request's time. */
      requested_at?: number;
    }
  | { kind: "meeting_ended"; by: string }
  | { kind: "participant_muted"; user_id: string; by: string }
  | { kind: "preset_changed"; user_id: string; preset: Preset; by: string };

/** Who publishes media changed (not sequenced). */
export type MediaEvent =
  | { kind: "published"; user_id: string; audio: boolean; video: boolean }
  | { kind: "unpublished"; user_id: string };

/** What a publication carries (mic muted, camera off). */
export interface MediaKinds {
  audio: boolean;
  video: boolean;
}

export interface PublishedMedia {
  user_id: string;
  audio: boolean;
  video: boolean;
}

/** A STUN or TURN server and its credentials: the shape of WebRTC's `RTCIceServer`. */
export interface IceServer {
  urls: string[];
  username: string;
  credential: string;
}

/** The first message on a signaling connection. */
export interface Welcome {
  meeting_id: string;
  title: string;
  user_id: string;
  peer_id: string;
  /** True when this connection resumed a session inside its grace period. */
  resumed: boolean;
  preset: Preset;
  grace_ms: number;
  snapshot: RoomSnapshot;
  publishing: PublishedMedia[];
  ice_servers: IceServer[];
  /**
   * For a guest of a role link: its own participant token, which reconnects use from then
   * on (the link's invite token would make a new participant).
   */
  token?: string;
}

/** Why the server closes a connection on purpose. */
export type CloseReason =
  | "left"
  | "replaced"
  | "shutdown"
  | "too_slow"
  | "revoked"
  | "removed"
  | "meeting_deleted"
  | "meeting_ended"
  | "bad_input";

export const CLOSE_REASONS: readonly CloseReason[] = [
  "left",
  "replaced",
  "shutdown",
  "too_slow",
  "revoked",
  "removed",
  "meeting_deleted",
  "meeting_ended",
  "bad_input",
];

/** Only `shutdown` and `too_slow` invite a reconnect (which resumes); the rest are final. */
export function isFinal(reason: CloseReason): boolean {
  return reason !== "shutdown" && reason !== "too_slow";
}

/** The stable error codes: the server's, and the SDK's own. */
export type ErrorCode =
  | "unauthorized"
  | "token_expired"
  | "token_revoked"
  | "permission_denied"
  | "invalid_state"
  | "not_found"
  | "stage_full"
  | "meeting_full"
  | "bad_request"
  | "rate_limited"
  | "internal"
  | "connection_lost"
  | "untrusted_server"
  | "unreachable"
  | "not_onstage_server"
  | "invalid_server_url"
  | "bad_link";

export const ERROR_CODES: readonly ErrorCode[] = [
  "unauthorized",
  "token_expired",
  "token_revoked",
  "permission_denied",
  "invalid_state",
  "not_found",
  "stage_full",
  "meeting_full",
  "bad_request",
  "rate_limited",
  "internal",
  "connection_lost",
  "untrusted_server",
  "unreachable",
  "not_onstage_server",
  "invalid_server_url",
  "bad_link",
];

/** An error as it travels. */
export interface ErrorBody {
  code: ErrorCode;
  message: string;
  /** For `rate_limited`: when the caller may try again. */
  retry_after_ms?: number;
}

/** A JSON value as it came off the wire (a reply's result before it is read per call). */
export type Json = null | boolean | number | string | Json[] | { [key: string]: Json };

/** Everything the server sends. */
export type ServerMessage =
  | { type: "welcome"; welcome: Welcome }
  | { type: "reply"; id: number; ok: true; result: Json }
  | { type: "reply"; id: number; ok: false; error: ErrorBody | null }
  | { type: "event"; seq: number; event: RoomEvent }
  | { type: "error"; error: ErrorBody }
  | { type: "media"; event: MediaEvent }
  /**
   * To a publisher of simulcast video: the layers (by RID) some viewer takes now, the
   * lowest always among them; the others may be paused until named again.
   */
  | { type: "layers"; rids: string[] }
  | { type: "goodbye"; reason: CloseReason };

/** One simulcast layer of a published video, as its publisher describes it (`media.publish`). */
export interface VideoLayer {
  /** Its RTP stream id (`a=rid`), e.g. `q`, `h`, `f`. */
  rid: string;
  width: number;
  height: number;
  /** The most it is encoded at, in bit/s. */
  max_bitrate: number;
}

/** How large one participant's video is shown, in device pixels (`media.tiles`). */
export interface TileSize {
  user_id: string;
  width: number;
  height: number;
}

/** The largest tile side `media.tiles` takes; a larger one is `bad_request`. */
export const MAX_TILE_SIDE = 16_384;

/** Each call a client can make: its arguments and what a successful reply carries. */
export interface Calls {
  "stage.getAccessRequests": { args: Record<string, never>; result: AccessRequest[] };
  "stage.requestAccess": { args: Record<string, never>; result: { stage_status: StageStatus } };
  "stage.cancelRequestAccess": {
    args: Record<string, never>;
    result: { stage_status: StageStatus };
  };
  "stage.grantAccess": { args: { user_ids: string[] }; result: null };
  "stage.denyAccess": { args: { user_ids: string[] }; result: null };
  "stage.join": { args: Record<string, never>; result: { stage_status: StageStatus } };
  "stage.leave": { args: Record<string, never>; result: { stage_status: StageStatus } };
  "stage.kick": { args: { user_ids: string[] }; result: null };
  "meeting.snapshot": { args: Record<string, never>; result: RoomSnapshot };
  "meeting.leave": { args: Record<string, never>; result: null };
  "meeting.end": { args: Record<string, never>; result: null };
  "meeting.removeParticipant": { args: { user_id: string }; result: null };
  "meeting.setPreset": { args: { user_id: string; preset: string }; result: null };
  /** `layers`: a simulcast offer's layers, lowest first. */
  "media.publish": { args: { sdp: string; layers?: VideoLayer[] }; result: { sdp: string } };
  "media.unpublish": { args: Record<string, never>; result: null };
  "media.subscribe": { args: { user_id: string; sdp: string }; result: { sdp: string } };
  "media.unsubscribe": { args: { user_id: string }; result: null };
  "media.state": { args: { audio: boolean; video: boolean }; result: null };
  "media.muteParticipant": { args: { user_id: string }; result: null };
  "media.tiles": { args: { tiles: TileSize[] }; result: null };
}

export type CallName = keyof Calls;
export type CallArgs<N extends CallName> = Calls[N]["args"];
export type CallResult<N extends CallName> = Calls[N]["result"];

/** A request as written to the socket: `{"id":N,"call":"stage.join",...args}`, id first. */
export function encodeRequest<N extends CallName>(id: number, call: N, args: CallArgs<N>): string {
  return JSON.stringify({ id, call, ...args });
}

// ---- decoding ----------------------------------------------------------------------------

/** Thrown inside the decoder only; `decodeServerMessage` turns it into a result. */
class DecodeError extends Error {}

type Obj = { [key: string]: unknown };

function fail(path: string, want: string): never {
  throw new DecodeError(`${path}: expected ${want}`);
}

function obj(v: unknown, path: string): Obj {
  if (typeof v !== "object" || v === null || Array.isArray(v)) fail(path, "an object");
  return v as Obj;
}

function str(o: Obj, key: string, path: string): string {
  const v = o[key];
  if (typeof v !== "string") fail(`${path}.${key}`, "a string");
  return v;
}

/** A string item of a list. */
function text(v: unknown, path: string): string {
  if (typeof v !== "string") fail(path, "a string");
  return v;
}

function bool(o: Obj, key: string, path: string, fallback?: boolean): boolean {
  const v = o[key];
  if (v === undefined && fallback !== undefined) return fallback;
  if (typeof v !== "boolean") fail(`${path}.${key}`, "a boolean");
  return v;
}

/** An unsigned integer, as the server's u64 fields are. */
function uint(o: Obj, key: string, path: string): number {
  const v = o[key];
  if (typeof v !== "number" || !Number.isInteger(v) || v < 0) {
    fail(`${path}.${key}`, "an unsigned integer");
  }
  return v;
}

function optional<T>(o: Obj, key: string, read: () => T): T | undefined {
  // serde reads an explicit null as None for optional fields, and so do we.
  return o[key] === undefined || o[key] === null ? undefined : read();
}

function oneOf<T extends string>(o: Obj, key: string, path: string, all: readonly T[]): T {
  const v = o[key];
  if (typeof v !== "string" || !(all as readonly string[]).includes(v)) {
    fail(`${path}.${key}`, `one of ${all.join(", ")}`);
  }
  return v as T;
}

function list<T>(o: Obj, key: string, path: string, read: (v: unknown, p: string) => T): T[] {
  const v = o[key];
  if (!Array.isArray(v)) fail(`${path}.${key}`, "an array");
  return v.map((item, i) => read(item, `${path}.${key}[${i}]`));
}

function listOrEmpty<T>(
  o: Obj,
  key: string,
  path: string,
  read: (v: unknown, p: string) => T,
): T[] {
  return o[key] === undefined ? [] : list(o, key, path, read);
}

export function readPreset(v: unknown, path = "preset"): Preset {
  const o = obj(v, path);
  // `accept_present_requests` is the legacy spelling the server still accepts.
  const accept =
    o.accept_stage_requests !== undefined
      ? bool(o, "accept_stage_requests", path)
      : bool(o, "accept_present_requests", path, false);
  return {
    name: str(o, "name", path),
    stage_enabled: bool(o, "stage_enabled", path, true),
    stage_access: oneOf(o, "stage_access", path, STAGE_ACCESS),
    accept_stage_requests: accept,
    kick_participant: bool(o, "kick_participant", path, false),
    can_produce_audio: bool(o, "can_produce_audio", path, true),
    can_produce_video: bool(o, "can_produce_video", path, true),
  };
}

export function readAccessRequest(v: unknown, path = "request"): AccessRequest {
  const o = obj(v, path);
  return {
    user_id: str(o, "user_id", path),
    name: str(o, "name", path),
    requested_at: uint(o, "requested_at", path),
  };
}

export function readParticipant(v: unknown, path = "participant"): ParticipantInfo {
  const o = obj(v, path);
  return {
    user_id: str(o, "user_id", path),
    peer_id: str(o, "peer_id", path),
    name: str(o, "name", path),
    preset: str(o, "preset", path),
    // Omitted on the wire for the common case, to keep a large roster small.
    stage_status:
      o.stage_status === undefined ? "OFF_STAGE" : oneOf(o, "stage_status", path, STAGE_STATUSES),
    connected: bool(o, "connected", path, true),
  };
}

export function readSnapshot(v: unknown, path = "snapshot"): RoomSnapshot {
  const o = obj(v, path);
  return {
    seq: uint(o, "seq", path),
    max_on_stage: uint(o, "max_on_stage", path),
    participants: list(o, "participants", path, readParticipant),
    queue: list(o, "queue", path, readAccessRequest),
  };
}

function readIceServer(v: unknown, path: string): IceServer {
  const o = obj(v, path);
  return {
    urls: list(o, "urls", path, (u, p) => {
      if (typeof u !== "string") fail(p, "a string");
      return u;
    }),
    username: o.username === undefined ? "" : str(o, "username", path),
    credential: o.credential === undefined ? "" : str(o, "credential", path),
  };
}

function readPublished(v: unknown, path: string): PublishedMedia {
  const o = obj(v, path);
  return {
    user_id: str(o, "user_id", path),
    audio: bool(o, "audio", path),
    video: bool(o, "video", path),
  };
}

export function readWelcome(o: Obj, path = "welcome"): Welcome {
  return {
    meeting_id: str(o, "meeting_id", path),
    title: o.title === undefined ? "" : str(o, "title", path),
    user_id: str(o, "user_id", path),
    peer_id: str(o, "peer_id", path),
    resumed: bool(o, "resumed", path),
    preset: readPreset(o.preset, `${path}.preset`),
    grace_ms: uint(o, "grace_ms", path),
    snapshot: readSnapshot(o.snapshot, `${path}.snapshot`),
    publishing: listOrEmpty(o, "publishing", path, readPublished),
    ice_servers: listOrEmpty(o, "ice_servers", path, readIceServer),
    ...(o.token === undefined ? {} : { token: str(o, "token", path) }),
  };
}

export function readErrorBody(v: unknown, path = "error"): ErrorBody {
  const o = obj(v, path);
  const body: ErrorBody = {
    code: oneOf(o, "code", path, ERROR_CODES),
    message: str(o, "message", path),
  };
  const retry = optional(o, "retry_after_ms", () => uint(o, "retry_after_ms", path));
  if (retry !== undefined) body.retry_after_ms = retry;
  return body;
}

export function readRoomEvent(v: unknown, path = "event"): RoomEvent {
  const o = obj(v, path);
  const kind = str(o, "kind", path);
  switch (kind) {
    case "participant_joined":
      return { kind, participant: readParticipant(o.participant, `${path}.participant`) };
    case "participant_left":
      return {
        kind,
        user_id: str(o, "user_id", path),
        reason: oneOf(o, "reason", path, LEAVE_REASONS),
      };
    case "participant_connection":
      return { kind, user_id: str(o, "user_id", path), connected: bool(o, "connected", path) };
    case "stage_status_changed": {
      const event: RoomEvent = {
        kind,
        user_id: str(o, "user_id", path),
        status: oneOf(o, "status", path, STAGE_STATUSES),
        reason: oneOf(o, "reason", path, STAGE_CHANGE_REASONS),
      };
      const by = optional(o, "by", () => str(o, "by", path));
      if (by !== undefined) event.by = by;
      const at = optional(o, "requested_at", () => uint(o, "requested_at", path));
      if (at !== undefined) event.requested_at = at;
      return event;
    }
    case "meeting_ended":
      return { kind, by: str(o, "by", path) };
    case "participant_muted":
      return { kind, user_id: str(o, "user_id", path), by: str(o, "by", path) };
    case "preset_changed":
      return {
        kind,
        user_id: str(o, "user_id", path),
        preset: readPreset(o.preset, `${path}.preset`),
        by: str(o, "by", path),
      };
    default:
      throw new DecodeError(`${path}.kind: unknown room event ${JSON.stringify(kind)}`);
  }
}

function readMediaEvent(v: unknown, path: string): MediaEvent {
  const o = obj(v, path);
  const kind = str(o, "kind", path);
  switch (kind) {
    case "published":
      return {
        kind,
        user_id: str(o, "user_id", path),
        audio: bool(o, "audio", path),
        video: bool(o, "video", path),
      };
    case "unpublished":
      return { kind, user_id: str(o, "user_id", path) };
    default:
      throw new DecodeError(`${path}.kind: unknown media event ${JSON.stringify(kind)}`);
  }
}

/** JSON.parse's output is already a `Json`; this only narrows the type. */
function asJson(v: unknown): Json {
  return v as Json;
}

export type Decoded<T> = { ok: true; value: T } | { ok: false; error: string };

/** Runs a reader, turning its complaint into a result (the readers' throws stop here). */
export function decodeWith<T>(read: () => T): Decoded<T> {
  try {
    return { ok: true, value: read() };
  } catch (e) {
    if (e instanceof DecodeError) return { ok: false, error: e.message };
    throw e;
  }
}

/** Reads one text frame from the server. Never throws. */
export function decodeServerMessage(text: string): Decoded<ServerMessage> {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    return { ok: false, error: "not valid JSON" };
  }
  return decodeWith(() => readServerMessage(value));
}

function readServerMessage(value: unknown): ServerMessage {
  const o = obj(value, "message");
  const type = str(o, "type", "message");
  switch (type) {
    case "welcome":
      return { type, welcome: readWelcome(o) };
    case "reply": {
      const id = uint(o, "id", "reply");
      if (bool(o, "ok", "reply")) {
        return { type, id, ok: true, result: o.result === undefined ? null : asJson(o.result) };
      }
      const error = optional(o, "error", () => readErrorBody(o.error, "reply.error")) ?? null;
      return { type, id, ok: false, error };
    }
    case "event":
      return { type, seq: uint(o, "seq", "event"), event: readRoomEvent(o.event) };
    case "error":
      return { type, error: readErrorBody(o.error) };
    case "media":
      return { type, event: readMediaEvent(o.event, "media.event") };
    case "layers":
      return { type, rids: list(o, "rids", "layers", text) };
    case "goodbye":
      return { type, reason: oneOf(o, "reason", "goodbye", CLOSE_REASONS) };
    default:
      throw new DecodeError(`message.type: unknown message type ${JSON.stringify(type)}`);
  }
}

function readStatusResult(v: unknown): { stage_status: StageStatus } {
  const o = obj(v, "result");
  return { stage_status: oneOf(o, "stage_status", "result", STAGE_STATUSES) };
}

function readSdpResult(v: unknown): { sdp: string } {
  return { sdp: str(obj(v, "result"), "sdp", "result") };
}

function readNothing(): null {
  // Calls with nothing to return: whatever the server sent along is of no use.
  return null;
}

/** How each call's successful result is read. */
export const RESULT_READERS: { [N in CallName]: (v: Json) => CallResult<N> } = {
  "stage.getAccessRequests": (v) => {
    if (!Array.isArray(v)) fail("result", "an array");
    return v.map((r, i) => readAccessRequest(r, `result[${i}]`));
  },
  "stage.requestAccess": readStatusResult,
  "stage.cancelRequestAccess": readStatusResult,
  "stage.grantAccess": readNothing,
  "stage.denyAccess": readNothing,
  "stage.join": readStatusResult,
  "stage.leave": readStatusResult,
  "stage.kick": readNothing,
  "meeting.snapshot": (v) => readSnapshot(v, "result"),
  "meeting.leave": readNothing,
  "meeting.end": readNothing,
  "meeting.removeParticipant": readNothing,
  "meeting.setPreset": readNothing,
  "media.publish": readSdpResult,
  "media.unpublish": readNothing,
  "media.subscribe": readSdpResult,
  "media.unsubscribe": readNothing,
  "media.state": readNothing,
  "media.muteParticipant": readNothing,
  "media.tiles": readNothing,
};

export const CALL_NAMES = Object.keys(RESULT_READERS) as CallName[];

/** The calls whose result is the caller's own new stage status. */
export const STATUS_CALLS: ReadonlySet<CallName> = new Set<CallName>([
  "stage.requestAccess",
  "stage.cancelRequestAccess",
  "stage.join",
  "stage.leave",
]);
