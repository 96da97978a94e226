// The SDK against a scripted server (a fake WebSocket): the Rust SDK's scripted-server tests
// (crates/client/tests/scripted_server.rs), under the same names, on a fake clock.

import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";

import { signalUrl } from "./connection.js";
import { OnstageError } from "./errors.js";
import type { MeetingEvent } from "./events.js";
import { OnstageMeeting, type JoinOptions } from "./meeting.js";
import { FakeHttp, FakeSocket, type Frame } from "./testing/fake-socket.js";

const SERVER = "http://127.0.0.1:7800";

function participant(id: string, preset: string, status: string): Frame {
  return {
    user_id: id,
    peer_id: `p-${id}`,
    name: id.toUpperCase(),
    preset,
    stage_status: status,
    connected: true,
  };
}

function preset(name: string): Frame {
  return name === "host"
    ? { name: "host", stage_access: "ALLOWED", accept_stage_requests: true, kick_participant: true }
    : { name: "viewer", stage_access: "CAN_REQUEST" };
}

function welcome(me: string, presetName: string, seq: number, participants: Frame[]): Frame {
  return {
    type: "welcome",
    meeting_id: "m1",
    user_id: me,
    peer_id: `p-${me}`,
    resumed: false,
    preset: preset(presetName),
    grace_ms: 30000,
    snapshot: { seq, max_on_stage: 25, participants, queue: [] },
  };
}

function two(viewerStatus: string): Frame[] {
  return [participant("h", "host", "OFF_STAGE"), participant("v", "viewer", viewerStatus)];
}

function statusEvent(seq: number, user: string, status: string, reason: string, by?: string): Frame {
  const event: Frame = { kind: "stage_status_changed", user_id: user, status, reason };
  if (by !== undefined) event.by = by;
  if (status === "REQUESTED_TO_JOIN_STAGE") event.requested_at = 1000 + seq;
  return { type: "event", seq, event };
}

/** The server's answers over plain HTTP (asked after a failed handshake). */
let http = new FakeHttp();

const fast: JoinOptions = {
  requestTimeoutMs: 3000,
  connectTimeoutMs: 3000,
  reconnectMinMs: 10,
  reconnectMaxMs: 50,
  WebSocket: FakeSocket,
  fetch: (url, init) => http.fetch(url, init),
};

/** Joins as `me`; the scripted side sends the welcome. */
async function join(
  me: string,
  presetName: string,
  options: JoinOptions = {},
  edit: (w: Frame) => void = () => {},
): Promise<{ meeting: OnstageMeeting; conn: FakeSocket; events: MeetingEvent[] }> {
  const joining = OnstageMeeting.join(SERVER, "tok", { ...fast, ...options });
  const conn = FakeSocket.last();
  expect(conn.token).toBe("tok");
  const w = welcome(me, presetName, 2, two("OFF_STAGE"));
  edit(w);
  conn.receive(w);
  const meeting = await joining;
  const events: MeetingEvent[] = [];
  meeting.onAny((e) => events.push(e));
  await settle();
  return { meeting, conn, events };
}

/** Lets promise callbacks and held events run, without moving the clock. */
async function settle(): Promise<void> {
  await vi.advanceTimersByTimeAsync(0);
}

/** Takes the events seen so far. */
function take(events: MeetingEvent[]): MeetingEvent[] {
  return events.splice(0, events.length);
}

async function rejection(p: Promise<unknown>): Promise<OnstageError> {
  try {
    await p;
  } catch (e) {
    if (e instanceof OnstageError) return e;
    throw e;
  }
  throw new Error("expected the call to fail");
}

const meetingEnded = (by: string): MeetingEvent[] => [
  { event: "meetingEnded", by },
  { event: "connectionStateUpdate", state: "disconnected", reason: "meeting_ended" },
];

beforeEach(() => {
  vi.useFakeTimers();
  FakeSocket.reset();
  http = new FakeHttp();
});

afterEach(() => {
  vi.useRealTimers();
});

describe("connection", () => {
  it("signal_url_from_http_base", () => {
    expect(signalUrl("http://127.0.0.1:8080", "a b&c")).toBe("ws://127.0.0.1:8080/v1/signal?token=a+b%26c");
    expect(signalUrl("https://example.com/onstage/", "t")).toBe("wss://example.com/onstage/v1/signal?token=t");
    expect(signalUrl("ws://h:1/?x=1", "t")).toBe("ws://h:1/v1/signal?token=t");
    for (const address of ["ftp://h", "not a url", "meet.example.com"]) {
      let error: unknown;
      try {
        signalUrl(address, "t");
      } catch (e) {
        error = e;
      }
      expect(error, address).toBeInstanceOf(OnstageError);
      expect((error as OnstageError).code, address).toBe("invalid_server_url");
    }
  });

  it("join_exposes_the_welcome", async () => {
    const { meeting } = await join("v", "viewer");
    expect(FakeSocket.last().url).toBe("ws://127.0.0.1:7800/v1/signal?token=tok");
    expect(meeting.userId).toBe("v");
    expect(meeting.peerId).toBe("p-v");
    expect(meeting.stage.peerId).toBe("p-v");
    expect(meeting.meetingId).toBe("m1");
    expect(meeting.preset.name).toBe("viewer");
    expect(meeting.preset.can_produce_video, "defaults filled in").toBe(true);
    expect(meeting.participants).toHaveLength(2);
    expect(meeting.self.name).toBe("V");
    expect(meeting.stage.status).toBe("OFF_STAGE");
    expect(meeting.connectionState).toBe("connected");
    expect(meeting.maxOnStage).toBe(25);
    expect(meeting.title).toBe("");
    expect(meeting.iceServers()).toEqual([]);
    expect(meeting.connected()).toBe(true);
    expect(meeting.stageStatuses()).toEqual([
      { user_id: "h", stage_status: "OFF_STAGE" },
      { user_id: "v", stage_status: "OFF_STAGE" },
    ]);
  });

  it("a_call_gets_its_reply_and_events_are_derived", async () => {
    const joining = OnstageMeeting.join(SERVER, "tok", fast);
    const conn = FakeSocket.last();
    conn.receive(welcome("v", "viewer", 2, two("OFF_STAGE")));
    // An event right behind the welcome, before anyone listens, still reaches the first
    // listeners.
    conn.receive({
      type: "event",
      seq: 3,
      event: { kind: "participant_connection", user_id: "h", connected: false },
    });
    const meeting = await joining;
    const call = meeting.stage.requestAccess();
    const req = conn.request();
    expect(req.call).toBe("stage.requestAccess");
    expect(typeof req.id).toBe("number");
    expect(conn.sent[0]?.startsWith(`{"id":${String(req.id)},`), "id first").toBe(true);
    conn.receive(statusEvent(4, "v", "REQUESTED_TO_JOIN_STAGE", "requested"));
    conn.reply(req.id, { stage_status: "REQUESTED_TO_JOIN_STAGE" });
    expect(await call).toBe("REQUESTED_TO_JOIN_STAGE");
    expect(meeting.stage.status).toBe("REQUESTED_TO_JOIN_STAGE");

    const events: MeetingEvent[] = [];
    meeting.onAny((e) => events.push(e));
    const statusUpdates: MeetingEvent[] = [];
    meeting.stage.on("stageStatusUpdate", (e) => statusUpdates.push(e));
    await settle();
    expect(events).toEqual([
      { event: "participantConnection", user_id: "h", connected: false },
      { event: "stageStatusUpdate", status: "REQUESTED_TO_JOIN_STAGE" },
      { event: "participantStageStatus", user_id: "v", status: "REQUESTED_TO_JOIN_STAGE" },
    ]);
    expect(statusUpdates, "listeners added together share what was held").toEqual([
      { event: "stageStatusUpdate", status: "REQUESTED_TO_JOIN_STAGE" },
    ]);
    // A later listener starts from now.
    const later: MeetingEvent[] = [];
    meeting.onAny((e) => later.push(e));
    await settle();
    expect(later).toEqual([]);

    // An error reply carries the server's code.
    const refused = meeting.stage.join();
    conn.refuse(conn.request().id, "permission_denied");
    const err = await rejection(refused);
    expect(err.code).toBe("permission_denied");
    expect(err.kind).toBe("server");
  });

  it("a_status_reply_waits_for_its_event_so_status_agrees", async () => {
    const { meeting, conn } = await join("v", "viewer");
    for (let round = 0; round < 20; round += 1) {
      const requesting = round % 2 === 0;
      const [call, want, reason] = requesting
        ? (["stage.requestAccess", "REQUESTED_TO_JOIN_STAGE", "requested"] as const)
        : (["stage.cancelRequestAccess", "OFF_STAGE", "cancelled"] as const);
      const task = (requesting ? meeting.stage.requestAccess() : meeting.stage.cancelRequestAccess()).then(
        // The moment the call returns, the mirror already shows the change.
        (got) => [got, meeting.stage.status],
      );
      const req = conn.request();
      expect(req.call).toBe(call);
      // The reply overtakes its event.
      conn.reply(req.id, { stage_status: want });
      conn.receive(statusEvent(3 + round, "v", want, reason));
      expect(await task).toEqual([want, want]);
    }
    // A reply whose event never comes is still delivered, a little later.
    let done = false;
    const late = meeting.stage.requestAccess().then((s) => {
      done = true;
      return s;
    });
    conn.reply(conn.request().id, { stage_status: "REQUESTED_TO_JOIN_STAGE" });
    await vi.advanceTimersByTimeAsync(999);
    expect(done).toBe(false);
    await vi.advanceTimersByTimeAsync(1);
    expect(await late).toBe("REQUESTED_TO_JOIN_STAGE");
  });

  it("batch_calls_send_user_ids_and_return_unit", async () => {
    const { meeting, conn } = await join("h", "host");
    const granting = meeting.stage.grantAccess(["v", "w"]);
    const req = conn.request();
    expect(req.call).toBe("stage.grantAccess");
    expect(req.user_ids).toEqual(["v", "w"]);
    conn.reply(req.id, null);
    await expect(granting).resolves.toBeUndefined();

    const asking = meeting.stage.getAccessRequests();
    conn.reply(conn.request().id, [{ user_id: "v", name: "V", requested_at: 7 }]);
    const queue = await asking;
    expect(queue).toHaveLength(1);
    expect(queue[0]?.requested_at).toBe(7);

    for (const [run, call, args] of [
      [() => meeting.stage.denyAccess(["v"]), "stage.denyAccess", { user_ids: ["v"] }],
      [() => meeting.stage.kick(["v"]), "stage.kick", { user_ids: ["v"] }],
      [() => meeting.removeParticipant("v"), "meeting.removeParticipant", { user_id: "v" }],
      [() => meeting.setPreset("v", "host"), "meeting.setPreset", { user_id: "v", preset: "host" }],
      [() => meeting.muteParticipant("v"), "media.muteParticipant", { user_id: "v" }],
    ] as const) {
      const p = run();
      const r = conn.request();
      expect(r).toEqual({ id: r.id, call, ...args });
      conn.reply(r.id, null);
      await expect(p).resolves.toBeUndefined();
    }
  });

  it("the_low_level_call_returns_the_result_read_for_that_call", async () => {
    const { meeting, conn } = await join("h", "host");
    const publishing = meeting.call("media.publish", { sdp: "v=0 offer" });
    expect(conn.request()).toEqual({ id: conn.request().id, call: "media.publish", sdp: "v=0 offer" });
    conn.reply(conn.request().id, { sdp: "v=0 answer" });
    expect(await publishing).toEqual({ sdp: "v=0 answer" });
    // A result that is not what the call returns is a protocol error, not a bad value.
    const subscribing = meeting.call("media.subscribe", { user_id: "v", sdp: "v=0" });
    conn.reply(conn.request().id, { stage_status: "ON_STAGE" });
    const err = await rejection(subscribing);
    expect([err.kind, err.code]).toEqual(["protocol", "internal"]);
    // A rate-limited call says when to try again.
    const stating = meeting.call("media.state", { audio: false, video: true });
    conn.refuse(conn.request().id, "rate_limited", "too many stage changes; try again in 800 ms", {
      retry_after_ms: 800,
    });
    const limited = await rejection(stating);
    expect([limited.code, limited.retry_after_ms]).toEqual(["rate_limited", 800]);
  });

  it("a_call_outside_the_protocol_gets_the_server_refusal", async () => {
    const { meeting, conn } = await join("v", "viewer");
    // What untyped code can send: the server refuses it, and so the call fails.
    const untyped = meeting.call.bind(meeting) as (name: string, args: object) => Promise<unknown>;
    const dancing = rejection(untyped("stage.dance", {}));
    conn.refuse(conn.request().id, "bad_request", `unknown call "stage.dance"`);
    expect((await dancing).code).toBe("bad_request");
    // A newer server's call this SDK does not know yet: its result passes as it came.
    const newer = untyped("meeting.raiseHand", {});
    conn.reply(conn.request().id, { raised: true });
    expect(await newer).toEqual({ raised: true });
  });

  it("an_unanswered_call_times_out", async () => {
    const { meeting, conn } = await join("v", "viewer", { requestTimeoutMs: 200 });
    const joining = rejection(meeting.stage.join());
    await vi.advanceTimersByTimeAsync(200);
    const err = await joining;
    expect(err.kind).toBe("timeout");
    expect(err.code).toBe("connection_lost");
    // A late reply to the abandoned call is ignored; the next call works.
    const req = conn.request();
    conn.reply(req.id, { stage_status: "ON_STAGE" });
    const kicking = meeting.stage.kick(["h"]);
    const req2 = conn.request();
    expect(req2.id).not.toBe(req.id);
    conn.reply(req2.id, null);
    await expect(kicking).resolves.toBeUndefined();
  });

  it("a_sequence_gap_resyncs_from_a_snapshot", async () => {
    const { meeting, conn, events } = await join("v", "viewer");
    // seq 3 (request) and 4 (grant) are lost; 5 arrives.
    conn.receive(statusEvent(5, "h", "ON_STAGE", "joined"));
    const req = conn.request();
    expect(req.call).toBe("meeting.snapshot");
    // 6 arrives before the snapshot answer; it is newer than the snapshot and replayed.
    conn.receive(statusEvent(6, "v", "ON_STAGE", "joined"));
    const participants = two("ACCEPTED_TO_JOIN_STAGE");
    (participants[0] as Frame).stage_status = "ON_STAGE";
    conn.reply(req.id, { seq: 5, max_on_stage: 25, participants, queue: [] });
    expect(take(events)).toEqual([
      { event: "participantStageStatus", user_id: "h", status: "ON_STAGE" },
      { event: "stageRequestApproved", by: null },
      { event: "stageStatusUpdate", status: "ACCEPTED_TO_JOIN_STAGE" },
      { event: "participantStageStatus", user_id: "v", status: "ACCEPTED_TO_JOIN_STAGE" },
      { event: "stageStatusUpdate", status: "ON_STAGE" },
      { event: "participantStageStatus", user_id: "v", status: "ON_STAGE" },
    ]);
    expect(meeting.stage.status).toBe("ON_STAGE");
    expect(conn.requests(), "one snapshot asked").toHaveLength(1);
  });

  it("a_refused_snapshot_is_asked_again_at_the_next_gap", async () => {
    const { conn, events } = await join("v", "viewer");
    conn.receive(statusEvent(5, "h", "ON_STAGE", "joined"));
    conn.refuse(conn.request().id, "rate_limited");
    expect(take(events)).toEqual([]);
    conn.receive(statusEvent(7, "h", "OFF_STAGE", "left"));
    expect(conn.requests().map((r) => r.call)).toEqual(["meeting.snapshot", "meeting.snapshot"]);
  });

  it("a_dropped_connection_reconnects_and_resumes", async () => {
    const { meeting, conn, events } = await join("v", "viewer");
    conn.drop();
    await settle();
    expect(take(events)).toEqual([{ event: "connectionStateUpdate", state: "reconnecting" }]);
    expect(meeting.connectionState).toBe("reconnecting");
    const again = FakeSocket.last();
    expect(again).not.toBe(conn);
    expect(again.url).toBe(conn.url);
    // Until the welcome arrives, calls fail at once.
    const err = await rejection(meeting.stage.join());
    expect(err.kind).toBe("connection_lost");
    expect(err.code).toBe("connection_lost");
    const w = welcome("v", "viewer", 9, two("OFF_STAGE"));
    w.resumed = true;
    ((w.snapshot as Frame).participants as Frame[])[0]!.connected = false;
    again.receive(w);
    expect(take(events)).toEqual([
      { event: "participantConnection", user_id: "h", connected: false },
      { event: "connectionStateUpdate", state: "connected", resumed: true },
    ]);
    expect(meeting.connectionState).toBe("connected");
    // Sequence numbers continue from the new welcome.
    again.receive(statusEvent(10, "h", "ON_STAGE", "joined"));
    expect(take(events)).toEqual([{ event: "participantStageStatus", user_id: "h", status: "ON_STAGE" }]);
  });

  it("the_tiles_are_told_again_on_a_new_connection_and_only_the_last_ones", async () => {
    const { meeting, conn } = await join("v", "viewer");
    for (const width of [1280, 320]) {
      const telling = meeting.setTiles([{ userId: "h", width, height: (width * 9) / 16 }]);
      const req = conn.request();
      expect(req.call).toBe("media.tiles");
      conn.reply(req.id, null);
      await expect(telling).resolves.toBeUndefined();
    }
    conn.drop();
    await settle();
    const again = FakeSocket.last();
    again.receive(welcome("v", "viewer", 9, two("OFF_STAGE")));
    const req = again.request();
    expect(req).toEqual({ id: req.id, call: "media.tiles", tiles: [{ user_id: "h", width: 320, height: 180 }] });
    // Its reply is nobody's, and the connection goes on.
    again.reply(req.id, null);
    const granting = meeting.stage.grantAccess(["v"]);
    const next = again.request();
    expect(next.call).toBe("stage.grantAccess");
    again.reply(next.id, null);
    await expect(granting).resolves.toBeUndefined();
  });

  it("a_guest_of_a_role_link_joins_with_its_name_and_comes_back_as_itself", async () => {
    const joining = OnstageMeeting.joinGuest(SERVER, "invite-tok", "Gus Guest", fast);
    const conn = FakeSocket.last();
    const url = new URL(conn.url);
    expect([url.searchParams.get("token"), url.searchParams.get("name")]).toEqual(["invite-tok", "Gus Guest"]);
    const w = welcome("g", "viewer", 2, two("OFF_STAGE"));
    w.token = "own-tok";
    conn.receive(w);
    const meeting = await joining;
    conn.drop();
    await settle();
    // The invite would make another participant: the reconnect is this one's own.
    const again = new URL(FakeSocket.last().url);
    expect([again.searchParams.get("token"), again.searchParams.get("name")]).toEqual(["own-tok", null]);
    expect(meeting.userId).toBe("g");
  });

  it("an_error_without_a_close_is_a_drop_too", async () => {
    const { conn, events } = await join("v", "viewer");
    conn.fail();
    expect(take(events)).toEqual([{ event: "connectionStateUpdate", state: "reconnecting" }]);
    expect(FakeSocket.opened).toHaveLength(2);
  });

  it("a_call_in_flight_when_the_connection_drops_fails_with_connection_lost", async () => {
    const { meeting, conn } = await join("v", "viewer");
    const joining = rejection(meeting.stage.join());
    conn.drop();
    expect((await joining).code).toBe("connection_lost");
  });

  it("reconnect_attempts_back_off_from_50_ms_doubling_to_1_s", async () => {
    const { conn } = await join("v", "viewer", {
      reconnectMinMs: undefined,
      reconnectMaxMs: undefined,
    });
    const start = Date.now();
    FakeSocket.unreachable = true;
    conn.drop();
    await vi.advanceTimersByTimeAsync(5000);
    const at = FakeSocket.opened.slice(1).map((s) => s.openedAt - start);
    expect(at).toEqual([0, 50, 150, 350, 750, 1550, 2550, 3550, 4550]);
  });

  it("a_goodbye_shutdown_reconnects_but_replaced_ends_the_meeting", async () => {
    const { meeting, conn, events } = await join("v", "viewer");
    conn.receive({ type: "goodbye", reason: "shutdown" });
    expect(take(events)).toEqual([{ event: "connectionStateUpdate", state: "reconnecting" }]);
    expect(conn.closed).toBe(true);
    const again = FakeSocket.last();
    again.receive(welcome("v", "viewer", 2, two("OFF_STAGE")));
    expect(take(events)).toEqual([{ event: "connectionStateUpdate", state: "connected", resumed: false }]);

    again.receive({ type: "goodbye", reason: "replaced" });
    // Another session of the same participant is live: stop, and say so.
    expect(take(events)).toEqual([
      { event: "connectionStateUpdate", state: "disconnected", reason: "replaced" },
    ]);
    const err = await rejection(meeting.stage.join());
    expect([err.kind, err.reason, err.code]).toEqual(["ended", "replaced", "connection_lost"]);
    expect(err.message).toContain("elsewhere");
    expect(meeting.connectionState).toBe("disconnected");
    expect(meeting.endReason).toBe("replaced");
    // No reconnect attempt follows.
    const opened = FakeSocket.opened.length;
    await vi.advanceTimersByTimeAsync(60_000);
    expect(FakeSocket.opened).toHaveLength(opened);
  });

  it("too_slow_reconnects_like_shutdown", async () => {
    const { conn, events } = await join("v", "viewer");
    conn.receive({ type: "goodbye", reason: "too_slow" });
    expect(take(events)).toEqual([{ event: "connectionStateUpdate", state: "reconnecting" }]);
    expect(FakeSocket.opened).toHaveLength(2);
  });

  it("revoked_removed_meeting_deleted_and_bad_input_goodbyes_stop_for_good_and_say_why", async () => {
    for (const [reason, code] of [
      ["revoked", "token_revoked"],
      ["removed", "unauthorized"],
      ["meeting_deleted", "unauthorized"],
      ["bad_input", "bad_request"],
    ] as const) {
      FakeSocket.reset();
      const { meeting, conn, events } = await join("v", "viewer");
      // A call in flight when the goodbye comes fails with the reason.
      const pending = rejection(meeting.stage.requestAccess());
      conn.receive({ type: "goodbye", reason });
      await settle();
      expect(take(events), reason).toEqual([
        { event: "connectionStateUpdate", state: "disconnected", reason },
      ]);
      const error = await pending;
      expect([error.kind, error.reason, error.code], reason).toEqual(["ended", reason, code]);
      expect(meeting.connectionState).toBe("disconnected");
      await overForGood(meeting, reason);
    }
  });

  it("joining_with_a_revoked_token_or_being_turned_away_says_why", async () => {
    // Turned away with a final goodbye instead of a welcome (removed just as it came).
    const joining = rejection(OnstageMeeting.join(SERVER, "tok", fast));
    FakeSocket.last().receive({ type: "goodbye", reason: "removed" });
    const err = await joining;
    expect([err.kind, err.reason, err.code]).toEqual(["ended", "removed", "unauthorized"]);
    // Refused for the arrival budget: the server's error instead of the welcome.
    const limited = rejection(OnstageMeeting.join(SERVER, "tok", fast));
    FakeSocket.last().receive({
      type: "error",
      error: { code: "rate_limited", message: "too many arrivals", retry_after_ms: 1000 },
    });
    const e = await limited;
    expect([e.kind, e.code, e.retry_after_ms]).toEqual(["server", "rate_limited", 1000]);
  });

  it("each_join_failure_has_its_own_code", async () => {
    // Addresses that are none: no scheme, another scheme.
    for (const address of ["meet.example.com", "ftp://meet.example.com"]) {
      const err = await rejection(OnstageMeeting.join(address, "t", fast));
      expect(err.code, address).toBe("invalid_server_url");
    }
    expect(FakeSocket.opened, "nothing was sent").toHaveLength(0);
    // A WebSocket server that does not speak the protocol.
    let joining = rejection(OnstageMeeting.join(SERVER, "t", fast));
    FakeSocket.last().receive(`{"hello":"world"}`);
    expect((await joining).code).toBe("not_onstage_server");
    joining = rejection(OnstageMeeting.join(SERVER, "t", fast));
    FakeSocket.last().receive("<html>Not Found</html>");
    expect((await joining).code).toBe("not_onstage_server");
    // Closed before any welcome: what a browser sees of a refused token and of no server.
    joining = rejection(OnstageMeeting.join(SERVER, "t", fast));
    FakeSocket.last().drop();
    expect((await joining).code).toBe("unreachable");
    // Open, but silent.
    joining = rejection(OnstageMeeting.join(SERVER, "t", fast));
    const silent = FakeSocket.last();
    await vi.advanceTimersByTimeAsync(3000);
    expect((await joining).code).toBe("unreachable");
    expect(silent.closed).toBe(true);
  });

  it("a_refused_handshake_says_why_as_the_server_does_over_http", async () => {
    // A handshake the server refused: the browser only sees the socket close.
    const refusedJoin = async (): Promise<OnstageError> => {
      const joining = rejection(OnstageMeeting.join(SERVER, "a b", fast));
      FakeSocket.last().drop();
      return joining;
    };
    http.refuse("unauthorized", "token expired");
    let err = await refusedJoin();
    expect([err.kind, err.code]).toEqual(["unauthorized", "unauthorized"]);
    expect(err.message).toBe("unauthorized: token expired");
    expect(http.asked).toEqual(["http://127.0.0.1:7800/v1/signal?token=a+b"]);
    http.refuse("token_expired", "the token has expired");
    expect((await refusedJoin()).code).toBe("token_expired");
    http.refuse("token_revoked", "this token was revoked");
    err = await refusedJoin();
    expect([err.kind, err.code, err.message]).toEqual([
      "token_revoked",
      "token_revoked",
      "token revoked: this token was revoked",
    ]);
    // A web server without the signaling path.
    http.answer = { status: 404, body: "<html>Not Found</html>" };
    expect((await refusedJoin()).code).toBe("not_onstage_server");
    // Ours, stopping: come back later.
    http.answer = { status: 503, body: `{"error":{"code":"internal","message":"shutting down"}}` };
    expect((await refusedJoin()).code).toBe("unreachable");
    // The token is fine ("not an upgrade"): something between failed the handshake.
    http.answer = { status: 400, body: `{"error":{"code":"bad_request","message":"expects a WebSocket upgrade"}}` };
    expect((await refusedJoin()).code).toBe("unreachable");
    // No answer to be had (no network, or another origin without CORS).
    http.answer = null;
    expect((await refusedJoin()).code).toBe("unreachable");
    // An error without a close (Node's WebSocket after a refused handshake) says as much.
    http.refuse("unauthorized", "invalid token");
    const erring = rejection(OnstageMeeting.join(SERVER, "t", fast));
    FakeSocket.last().fail();
    expect((await erring).code).toBe("unauthorized");
    // A socket that opened and then closed was not refused: nothing to ask.
    const asked = http.asked.length;
    const joining = rejection(OnstageMeeting.join(SERVER, "t", fast));
    FakeSocket.last().accept();
    FakeSocket.last().drop();
    expect((await joining).code).toBe("unreachable");
    expect(http.asked).toHaveLength(asked);
  });

  it("a_reconnect_refused_as_token_revoked_ends_with_revoked", async () => {
    const { meeting, conn, events } = await join("v", "viewer");
    // The connection drops before any goodbye; meanwhile the token was superseded.
    http.refuse("token_revoked", "this token was revoked");
    FakeSocket.unreachable = true;
    conn.drop();
    await settle();
    expect(take(events)).toEqual([
      { event: "connectionStateUpdate", state: "reconnecting" },
      { event: "connectionStateUpdate", state: "disconnected", reason: "revoked" },
    ]);
    expect(meeting.endReason).toBe("revoked");
    expect((await rejection(meeting.stage.join())).code).toBe("token_revoked");
  });

  it("reconnecting_stops_when_the_token_is_refused", async () => {
    const { conn, events } = await join("v", "viewer");
    http.refuse("unauthorized", "token expired");
    FakeSocket.unreachable = true;
    conn.drop();
    await settle();
    expect(take(events)).toEqual([
      { event: "connectionStateUpdate", state: "reconnecting" },
      { event: "connectionStateUpdate", state: "disconnected" },
    ]);
    const opened = FakeSocket.opened.length;
    await vi.advanceTimersByTimeAsync(60_000);
    expect(FakeSocket.opened).toHaveLength(opened);
  });

  it("reconnecting_gives_up_after_the_grace_period", async () => {
    const { meeting, conn, events } = await join("v", "viewer", { keepTryingEveryMs: null }, (w) => {
      w.grace_ms = 300;
    });
    FakeSocket.unreachable = true;
    conn.drop();
    await vi.advanceTimersByTimeAsync(299);
    expect(meeting.connectionState).toBe("reconnecting");
    await vi.advanceTimersByTimeAsync(1);
    expect(take(events)).toEqual([
      { event: "connectionStateUpdate", state: "reconnecting" },
      { event: "connectionStateUpdate", state: "disconnected" },
    ]);
    expect(FakeSocket.opened.length, "it tried").toBeGreaterThan(2);
    expect((await rejection(meeting.stage.join())).kind).toBe("closed");
  });

  it("reconnecting_keeps_trying_past_the_grace_period_and_starts_afresh", async () => {
    const { meeting, conn, events } = await join("v", "viewer", { keepTryingEveryMs: 50 }, (w) => {
      w.grace_ms = 200;
    });
    FakeSocket.unreachable = true;
    conn.drop();
    await vi.advanceTimersByTimeAsync(600);
    const attempts = FakeSocket.opened.length - 1;
    expect(attempts, `it kept trying (${attempts} attempts)`).toBeGreaterThan(2);
    expect(meeting.connectionState).toBe("reconnecting");
    FakeSocket.unreachable = false;
    await vi.advanceTimersByTimeAsync(50);
    const w = welcome("v", "viewer", 3, two("OFF_STAGE"));
    FakeSocket.last().receive(w);
    expect(take(events)).toEqual([
      { event: "connectionStateUpdate", state: "reconnecting" },
      { event: "connectionStateUpdate", state: "connected", resumed: false },
    ]);
  });

  it("a_goodbye_while_reconnecting_ends_it_for_good", async () => {
    const { meeting, conn, events } = await join("v", "viewer");
    conn.drop();
    FakeSocket.last().receive({ type: "goodbye", reason: "revoked" });
    expect(take(events)).toEqual([
      { event: "connectionStateUpdate", state: "reconnecting" },
      { event: "connectionStateUpdate", state: "disconnected", reason: "revoked" },
    ]);
    expect(meeting.endReason).toBe("revoked");
    expect((await rejection(meeting.stage.join())).code).toBe("token_revoked");
  });

  it("leave_ends_the_meeting", async () => {
    const { meeting, conn, events } = await join("v", "viewer");
    const leaving = meeting.leave();
    const req = conn.request();
    expect(req.call).toBe("meeting.leave");
    // The goodbye may come first; the leave still succeeds.
    conn.receive({ type: "goodbye", reason: "left" });
    conn.reply(req.id, null);
    await expect(leaving).resolves.toBeUndefined();
    expect(take(events)).toEqual([{ event: "connectionStateUpdate", state: "disconnected", reason: "left" }]);
    expect((await rejection(meeting.leave())).kind).toBe("closed");
    expect(meeting.endReason).toBe("left");
    expect(conn.closed).toBe(true);
  });

  it("leave_after_its_reply_closes_the_socket", async () => {
    const { meeting, conn, events } = await join("v", "viewer");
    const leaving = meeting.leave();
    conn.reply(conn.request().id, null);
    await expect(leaving).resolves.toBeUndefined();
    expect(conn.closed).toBe(true);
    expect(take(events)).toEqual([{ event: "connectionStateUpdate", state: "disconnected", reason: "left" }]);
  });

  it("leave_while_reconnecting_stops_trying", async () => {
    const { meeting, conn, events } = await join("v", "viewer");
    FakeSocket.unreachable = true;
    conn.drop();
    await expect(meeting.leave()).resolves.toBeUndefined();
    expect(take(events)).toEqual([
      { event: "connectionStateUpdate", state: "reconnecting" },
      { event: "connectionStateUpdate", state: "disconnected", reason: "left" },
    ]);
    const opened = FakeSocket.opened.length;
    await vi.advanceTimersByTimeAsync(60_000);
    expect(FakeSocket.opened).toHaveLength(opened);
  });

  it("meeting_ended_stops_at_the_event_even_if_the_goodbye_is_lost", async () => {
    const { meeting, conn, events } = await join("v", "viewer");
    // The event, then the socket drops without its goodbye: over all the same, no reconnect
    // (it would start a new session of a meeting that has ended).
    conn.receive({ type: "event", seq: 3, event: { kind: "meeting_ended", by: "h" } });
    conn.drop();
    expect(take(events)).toEqual(meetingEnded("h"));
    await overForGood(meeting, "meeting_ended");
  });

  it("the_host_ending_succeeds_though_the_event_comes_before_its_reply", async () => {
    const { meeting, conn, events } = await join("h", "host");
    const ending = meeting.end();
    expect(conn.request().call).toBe("meeting.end");
    conn.receive({ type: "event", seq: 3, event: { kind: "meeting_ended", by: "h" } });
    await expect(ending).resolves.toBeUndefined();
    expect(take(events)).toEqual(meetingEnded("h"));
    expect(meeting.endReason).toBe("meeting_ended");
  });

  it("bad_input_from_the_network_is_reported_and_the_connection_carries_on", async () => {
    const { meeting, conn, events } = await join("v", "viewer");
    conn.receive("not json");
    conn.receive({ type: "dance" });
    conn.receive({ type: "event", seq: "3", event: { kind: "participant_connection", user_id: "h", connected: false } });
    conn.receive({ type: "event", seq: 3, event: { kind: "stage_dance", user_id: "h" } });
    conn.receive({ type: "goodbye", reason: "bored" });
    conn.receive({ type: "media", event: { kind: "published", user_id: "h", audio: "yes", video: true } });
    conn.receive(new ArrayBuffer(4));
    conn.receive({ type: "reply", id: 999, ok: true, result: null });
    conn.receive({ type: "error", error: { code: "bad_request", message: "not valid JSON" } });
    conn.receive(welcome("v", "viewer", 2, two("OFF_STAGE")));
    const reported = take(events);
    expect(reported.map((e) => (e.event === "protocolError" ? e.code : e.event))).toEqual([
      "internal",
      "internal",
      "internal",
      "internal",
      "internal",
      "internal",
      "bad_request",
      "internal",
    ]);
    expect(reported[1]).toMatchObject({ message: expect.stringContaining("dance") });
    expect(meeting.connectionState).toBe("connected");
    // The real seq 3 still applies: nothing of the bad frames was half-applied.
    conn.receive(statusEvent(3, "h", "ON_STAGE", "joined"));
    expect(take(events)).toEqual([{ event: "participantStageStatus", user_id: "h", status: "ON_STAGE" }]);
    const joining = meeting.stage.join();
    conn.reply(conn.request().id, { stage_status: "ON_STAGE" });
    conn.receive(statusEvent(4, "v", "ON_STAGE", "joined"));
    expect(await joining).toBe("ON_STAGE");
  });

  it("a_listener_that_throws_does_not_stop_the_others_or_the_connection", async () => {
    const { meeting, conn, events } = await join("v", "viewer");
    // The SDK hands a listener's exception back to the app on a microtask of its own.
    const rethrown: (() => void)[] = [];
    const spy = vi.spyOn(globalThis, "queueMicrotask").mockImplementation((fn) => {
      rethrown.push(fn);
    });
    try {
      meeting.on("participantStageStatus", () => {
        throw new Error("app bug");
      });
      conn.receive(statusEvent(3, "h", "ON_STAGE", "joined"));
      conn.receive(statusEvent(4, "h", "OFF_STAGE", "left"));
    } finally {
      spy.mockRestore();
    }
    expect(take(events), "the other listener heard both").toHaveLength(2);
    expect(meeting.participant("h")?.stage_status).toBe("OFF_STAGE");
    expect(rethrown).toHaveLength(2);
    expect(() => rethrown[0]?.()).toThrow("app bug");
  });

  it("a_host_hears_requests_on_the_stage_and_a_viewer_does_not", async () => {
    for (const [me, presetName, heard] of [
      ["h", "host", true],
      ["v", "viewer", false],
    ] as const) {
      FakeSocket.reset();
      const joining = OnstageMeeting.join(SERVER, "tok", fast);
      const conn = FakeSocket.last();
      conn.receive(welcome(me, presetName, 2, [...two("OFF_STAGE"), participant("w", "viewer", "OFF_STAGE")]));
      const meeting = await joining;
      const requests: MeetingEvent[] = [];
      meeting.stage.on("newStageRequest", (e) => requests.push(e));
      meeting.stage.on("stageAccessRequestUpdate", (e) => requests.push(e));
      conn.receive(statusEvent(3, "w", "REQUESTED_TO_JOIN_STAGE", "requested"));
      await settle();
      const request = { user_id: "w", name: "W", requested_at: 1003 };
      expect(requests, presetName).toEqual(
        heard
          ? [
              { event: "newStageRequest", request },
              { event: "stageAccessRequestUpdate", requests: [request] },
            ]
          : [],
      );
    }
  });

  it("an_error_reply_without_an_error_is_a_protocol_error", async () => {
    const { meeting, conn } = await join("v", "viewer");
    const joining = rejection(meeting.stage.join());
    conn.receive({ type: "reply", id: conn.request().id, ok: false });
    const err = await joining;
    expect([err.kind, err.code]).toEqual(["protocol", "internal"]);
  });

  it("wire_shapes_match_the_bot_contract", async () => {
    // Exactly the JSON the Rust SDK's events serialize to (crates/client/src/event.rs): no
    // keys for what is not set, `null` for an unknown `by`.
    const { conn, events } = await join("v", "viewer");
    conn.receive(statusEvent(3, "v", "REQUESTED_TO_JOIN_STAGE", "requested"));
    conn.receive(statusEvent(4, "v", "ACCEPTED_TO_JOIN_STAGE", "invited"));
    conn.receive({ type: "event", seq: 5, event: { kind: "participant_left", user_id: "h", reason: "timed_out" } });
    conn.receive({ type: "goodbye", reason: "shutdown" });
    FakeSocket.last().receive(welcome("v", "viewer", 5, [participant("v", "viewer", "ACCEPTED_TO_JOIN_STAGE")]));
    FakeSocket.last().receive({ type: "goodbye", reason: "meeting_deleted" });
    expect(take(events).map((e) => JSON.stringify(e))).toEqual([
      `{"event":"stageStatusUpdate","status":"REQUESTED_TO_JOIN_STAGE"}`,
      `{"event":"participantStageStatus","user_id":"v","status":"REQUESTED_TO_JOIN_STAGE"}`,
      `{"event":"stageRequestApproved","by":null}`,
      `{"event":"stageStatusUpdate","status":"ACCEPTED_TO_JOIN_STAGE"}`,
      `{"event":"participantStageStatus","user_id":"v","status":"ACCEPTED_TO_JOIN_STAGE"}`,
      `{"event":"participantLeft","user_id":"h","reason":"timed_out"}`,
      `{"event":"connectionStateUpdate","state":"reconnecting"}`,
      `{"event":"connectionStateUpdate","state":"connected","resumed":false}`,
      `{"event":"connectionStateUpdate","state":"disconnected","reason":"meeting_deleted"}`,
    ]);
  });

  it("who_publishes_comes_from_the_welcome_and_media_messages", async () => {
    const { meeting, conn, events } = await join("v", "viewer", {}, (w) => {
      w.publishing = [{ user_id: "h", audio: true, video: true }];
    });
    expect(take(events), "held for the first listener").toEqual([
      { event: "mediaPublished", user_id: "h", audio: true, video: true },
    ]);
    expect(meeting.publishing).toEqual(new Map([["h", { audio: true, video: true }]]));
    conn.receive({ type: "media", event: { kind: "published", user_id: "h", audio: false, video: true } });
    expect(meeting.publishing.get("h")).toEqual({ audio: false, video: true });
    conn.receive({ type: "media", event: { kind: "unpublished", user_id: "h" } });
    expect(meeting.publishing.size).toBe(0);
    expect(take(events)).toEqual([
      { event: "mediaPublished", user_id: "h", audio: false, video: true },
      { event: "mediaUnpublished", user_id: "h" },
    ]);
  });

  it("the_stage_emits_its_own_events_and_knows_the_place_in_line", async () => {
    const { meeting, conn } = await join("v", "viewer");
    const approved: MeetingEvent[] = [];
    const onApproved = (e: MeetingEvent) => approved.push(e);
    meeting.stage.on("stageRequestApproved", onApproved);
    await settle();
    conn.receive(statusEvent(3, "v", "REQUESTED_TO_JOIN_STAGE", "requested"));
    expect(meeting.stage.placeInQueue).toBe(1);
    conn.receive(statusEvent(4, "v", "ACCEPTED_TO_JOIN_STAGE", "granted", "h"));
    expect(meeting.stage.placeInQueue).toBeNull();
    expect(approved).toEqual([{ event: "stageRequestApproved", by: "h" }]);
    meeting.stage.off("stageRequestApproved", onApproved);
    conn.receive(statusEvent(5, "v", "OFF_STAGE", "declined"));
    conn.receive(statusEvent(6, "v", "ACCEPTED_TO_JOIN_STAGE", "invited", "h"));
    expect(approved).toHaveLength(1);
  });
});

/** The session ended for `reason`: calls refused with it, and no reconnect attempt follows. */
async function overForGood(meeting: OnstageMeeting, reason: string): Promise<void> {
  const err = await rejection(meeting.stage.join());
  expect([err.kind, err.reason]).toEqual(["ended", reason]);
  expect(meeting.endReason).toBe(reason);
  const opened = FakeSocket.opened.length;
  await vi.advanceTimersByTimeAsync(60_000);
  expect(FakeSocket.opened.length, `${reason}: it tried to reconnect`).toBe(opened);
}
