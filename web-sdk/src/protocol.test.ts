// The wire shapes, as crates/proto/src/signal.rs pins them (its tests, where they apply to a
// client), and how this SDK reads what the server leaves out.

import { describe, expect, it } from "vitest";

import {
  CALL_NAMES,
  CLOSE_REASONS,
  decodeServerMessage,
  encodeRequest,
  isFinal,
  readParticipant,
  readPreset,
  type ServerMessage,
} from "./protocol.js";

function decoded(frame: unknown): ServerMessage {
  const d = decodeServerMessage(JSON.stringify(frame));
  if (!d.ok) throw new Error(d.error);
  return d.value;
}

describe("protocol", () => {
  it("request_wire_shape_matches_the_bot_contract", () => {
    expect(encodeRequest(2, "stage.grantAccess", { user_ids: ["u1"] })).toBe(
      `{"id":2,"call":"stage.grantAccess","user_ids":["u1"]}`,
    );
    expect(encodeRequest(3, "stage.join", {})).toBe(`{"id":3,"call":"stage.join"}`);
  });

  it("every_known_call_name_is_a_call", () => {
    // The server's KNOWN_CALLS, in its order.
    expect(CALL_NAMES).toEqual([
      "stage.getAccessRequests",
      "stage.requestAccess",
      "stage.cancelRequestAccess",
      "stage.grantAccess",
      "stage.denyAccess",
      "stage.join",
      "stage.leave",
      "stage.kick",
      "meeting.snapshot",
      "meeting.leave",
      "meeting.end",
      "meeting.removeParticipant",
      "meeting.setPreset",
      "media.publish",
      "media.unpublish",
      "media.subscribe",
      "media.unsubscribe",
      "media.state",
      "media.muteParticipant",
      "media.tiles",
    ]);
  });

  it("close_reasons_are_snake_case_and_only_two_invite_a_reconnect", () => {
    expect(CLOSE_REASONS.filter((r) => !isFinal(r))).toEqual(["shutdown", "too_slow"]);
    for (const reason of CLOSE_REASONS) {
      expect(decoded({ type: "goodbye", reason })).toEqual({ type: "goodbye", reason });
    }
    expect(decoded({ type: "event", seq: 9, event: { kind: "meeting_ended", by: "h" } })).toEqual({
      type: "event",
      seq: 9,
      event: { kind: "meeting_ended", by: "h" },
    });
    expect(decoded({ type: "event", seq: 1, event: { kind: "participant_left", user_id: "u", reason: "removed" } }))
      .toMatchObject({ event: { reason: "removed" } });
  });

  it("preset_accepts_legacy_alias", () => {
    const p = readPreset({ name: "mod", stage_access: "CAN_REQUEST", accept_present_requests: true });
    expect(p.accept_stage_requests).toBe(true);
    expect(p.stage_enabled).toBe(true);
    expect(p.kick_participant).toBe(false);
    expect([p.can_produce_audio, p.can_produce_video]).toEqual([true, true]);
  });

  it("status_and_error_wire_names", () => {
    expect(
      decoded({ type: "reply", id: 3, ok: false, error: { code: "permission_denied", message: "no" } }),
    ).toEqual({ type: "reply", id: 3, ok: false, error: { code: "permission_denied", message: "no" } });
    expect(decoded({ type: "reply", id: 4, ok: true })).toEqual({ type: "reply", id: 4, ok: true, result: null });
    expect(
      decoded({
        type: "error",
        error: { code: "rate_limited", message: "later", retry_after_ms: 250 },
      }),
    ).toEqual({ type: "error", error: { code: "rate_limited", message: "later", retry_after_ms: 250 } });
  });

  it("a_participant_omits_what_most_participants_are", () => {
    expect(readParticipant({ user_id: "u", peer_id: "p", name: "U", preset: "viewer" })).toEqual({
      user_id: "u",
      peer_id: "p",
      name: "U",
      preset: "viewer",
      stage_status: "OFF_STAGE",
      connected: true,
    });
  });

  it("a_welcome_fills_in_what_an_older_server_leaves_out", () => {
    const m = decoded({
      type: "welcome",
      meeting_id: "m",
      user_id: "v",
      peer_id: "p-v",
      resumed: false,
      preset: { name: "viewer", stage_access: "CAN_REQUEST" },
      grace_ms: 30000,
      snapshot: { seq: 0, max_on_stage: 25, participants: [], queue: [] },
      ice_servers: [{ urls: ["turn:10.0.0.5:3478"] }],
      extra: "ignored",
    });
    expect(m).toMatchObject({
      welcome: {
        title: "",
        publishing: [],
        ice_servers: [{ urls: ["turn:10.0.0.5:3478"], username: "", credential: "" }],
      },
    });
  });

  it("simulcast_wire_shapes", () => {
    const layers = [
      { rid: "q", width: 320, height: 180, max_bitrate: 150000 },
      { rid: "h", width: 640, height: 360, max_bitrate: 450000 },
    ];
    expect(encodeRequest(5, "media.publish", { sdp: "v=0", layers })).toBe(
      `{"id":5,"call":"media.publish","sdp":"v=0","layers":[{"rid":"q","width":320,"height":180,"max_bitrate":150000},` +
        `{"rid":"h","width":640,"height":360,"max_bitrate":450000}]}`,
    );
    expect(encodeRequest(6, "media.publish", { sdp: "v=0" })).toBe(`{"id":6,"call":"media.publish","sdp":"v=0"}`);
    expect(encodeRequest(7, "media.tiles", { tiles: [{ user_id: "u", width: 640, height: 360 }] })).toBe(
      `{"id":7,"call":"media.tiles","tiles":[{"user_id":"u","width":640,"height":360}]}`,
    );
    expect(decoded({ type: "layers", rids: ["q", "h"] })).toEqual({ type: "layers", rids: ["q", "h"] });
    expect(decoded({ type: "layers", rids: [] })).toEqual({ type: "layers", rids: [] });
  });

  it("what_does_not_decode_says_where", () => {
    const cases: [string, string][] = [
      ["{", "not valid JSON"],
      ["[1,2]", "message: expected an object"],
      [`{"type":"dance"}`, "unknown message type"],
      [`{"type":"event","seq":-1,"event":{}}`, "event.seq"],
      [`{"type":"event","seq":1,"event":{"kind":"stage_status_changed","user_id":"u","status":"UP","reason":"joined"}}`, "event.status"],
      [`{"type":"reply","id":1,"ok":"yes"}`, "reply.ok"],
      [`{"type":"goodbye","reason":"bored"}`, "goodbye.reason"],
      [`{"type":"error","error":{"code":"oops","message":"x"}}`, "error.code"],
      [`{"type":"layers"}`, "layers.rids"],
      [`{"type":"layers","rids":["q",1]}`, "layers.rids[1]"],
    ];
    for (const [text, where] of cases) {
      const d = decodeServerMessage(text);
      expect(d.ok, text).toBe(false);
      if (!d.ok) expect(d.error, text).toContain(where);
    }
  });
});
