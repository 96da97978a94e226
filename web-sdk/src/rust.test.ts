// The protocol's names, checked against the Rust sources they are ported from
// (crates/proto), so that neither side can add or rename one without the other noticing.
// Skipped when the package stands outside the Onstage repository.

import { describe, expect, it } from "vitest";

import { MEETING_EVENTS } from "./events.js";
import {
  CALL_NAMES,
  CLOSE_REASONS,
  ERROR_CODES,
  MAX_TILE_SIDE,
  STAGE_STATUSES,
  decodeServerMessage,
  readAccessRequest,
  readErrorBody,
  readParticipant,
  readPreset,
  readSnapshot,
  readWelcome,
  type TileSize,
  type VideoLayer,
} from "./protocol.js";

const sources = import.meta.glob(["../../crates/proto/src/*.rs", "../../crates/client/src/event.rs"], {
  query: "?raw",
  import: "default",
  eager: true,
}) as Record<string, string>;

const source = (file: string): string =>
  sources[file.includes("/") ? `../../crates/${file}` : `../../crates/proto/src/${file}`] ?? "";

/** The variant names of `pub enum <name> { ... }`, doc comments and attributes left out. */
function variants(text: string, name: string): string[] {
  const body = text.split(`pub enum ${name} {`)[1]?.split("\n}")[0] ?? "";
  return body
    .split("\n")
    .map((line) => line.trim())
    .filter((line) => /^[A-Z]\w*[,{ (]?/.test(line) && !line.startsWith("//"))
    .map((line) => (/^([A-Z]\w*)/.exec(line) as RegExpExecArray)[1] as string);
}

/** The field names of `pub struct <name> { ... }`. */
function fields(text: string, name: string): string[] {
  const body = text.split(`pub struct ${name} {`)[1]?.split("\n}")[0] ?? "";
  return [...body.matchAll(/^\s*pub (\w+):/gm)].map((m) => m[1] as string);
}

const snake = (name: string) => name.replace(/(?<!^)([A-Z])/g, "_$1").toLowerCase();

describe.skipIf(Object.keys(sources).length === 0)("the Rust protocol", () => {
  it("error_codes_are_the_rust_ones", () => {
    expect(variants(source("error.rs"), "ErrorCode").map(snake)).toEqual([...ERROR_CODES]);
  });

  it("close_reasons_are_the_rust_ones", () => {
    expect(variants(source("signal.rs"), "CloseReason").map(snake)).toEqual([...CLOSE_REASONS]);
  });

  it("stage_statuses_are_the_rust_ones", () => {
    expect(variants(source("stage.rs"), "StageStatus").map((v) => snake(v).toUpperCase())).toEqual([
      ...STAGE_STATUSES,
    ]);
  });

  it("call_names_are_the_servers_known_calls", () => {
    const known = source("signal.rs").split("pub const KNOWN_CALLS: &[&str] = &[")[1]?.split("];")[0] ?? "";
    expect([...known.matchAll(/"([^"]+)"/g)].map((m) => m[1])).toEqual([...CALL_NAMES]);
  });

  it("room_and_media_event_kinds_are_the_rust_ones", () => {
    const signal = source("signal.rs");
    expect(variants(signal, "RoomEvent").map(snake)).toEqual([
      "participant_joined",
      "participant_left",
      "participant_connection",
      "stage_status_changed",
      "meeting_ended",
      "participant_muted",
      "preset_changed",
    ]);
    expect(variants(signal, "MediaEvent").map(snake)).toEqual(["published", "unpublished"]);
    expect(variants(signal, "StageChangeReason").map(snake)).toEqual([
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
    ]);
    expect(variants(signal, "LeaveReason").map(snake)).toEqual(["left", "timed_out", "removed"]);
  });

  it("what_the_decoder_reads_is_every_field_the_rust_types_have", () => {
    const participant = { user_id: "u", peer_id: "p", name: "U", preset: "viewer" };
    const snapshot = { seq: 0, max_on_stage: 1, participants: [], queue: [] };
    const preset = { name: "viewer", stage_access: "CAN_REQUEST" };
    const keys = (v: object) => Object.keys(v).sort();
    const signal = source("signal.rs");
    expect(keys(readParticipant(participant))).toEqual(fields(signal, "ParticipantInfo").sort());
    expect(keys(readSnapshot(snapshot))).toEqual(fields(signal, "RoomSnapshot").sort());
    expect(keys(readPreset(preset))).toEqual(fields(source("stage.rs"), "Preset").sort());
    expect(keys(readAccessRequest({ user_id: "u", name: "U", requested_at: 1 }))).toEqual(
      fields(source("stage.rs"), "AccessRequest").sort(),
    );
    expect(keys(readErrorBody({ code: "internal", message: "m", retry_after_ms: 1 }))).toEqual(
      fields(source("error.rs"), "ErrorBody").sort(),
    );
    const welcome = readWelcome({
      meeting_id: "m",
      user_id: "u",
      peer_id: "p",
      resumed: false,
      preset,
      grace_ms: 1,
      snapshot,
      token: "own",
    });
    expect(keys(welcome)).toEqual(fields(signal, "Welcome").sort());
  });

  it("every_server_message_type_is_read", () => {
    // A type the decoder does not know is reported as unreadable: none of the server's may be.
    for (const type of variants(source("signal.rs"), "ServerMessage").map(snake)) {
      const d = decodeServerMessage(JSON.stringify({ type }));
      if (!d.ok) expect(d.error, type).not.toContain("unknown message type");
    }
  });

  it("the_simulcast_shapes_are_the_rust_ones", () => {
    const signal = source("signal.rs");
    const layer: Record<keyof VideoLayer, unknown> = {
      rid: "q",
      width: 1,
      height: 1,
      max_bitrate: 1,
    };
    const tile: Record<keyof TileSize, unknown> = { user_id: "u", width: 1, height: 1 };
    expect(Object.keys(layer).sort()).toEqual(fields(signal, "VideoLayer").sort());
    expect(Object.keys(tile).sort()).toEqual(fields(signal, "TileSize").sort());
    const side = /pub const MAX_TILE_SIDE: u32 = ([\d_]+);/.exec(signal)?.[1]?.replace(/_/g, "");
    expect(Number(side)).toBe(MAX_TILE_SIDE);
  });

  it("meeting_events_are_the_rust_sdk_ones_and_protocol_error", () => {
    const rust = variants(source("client/src/event.rs"), "MeetingEvent").map(
      (v) => v.charAt(0).toLowerCase() + v.slice(1),
    );
    expect([...rust, "protocolError"]).toEqual([...MEETING_EVENTS]);
  });
});
