// The front door as a web developer meets it: RealtimeKit's Stage surface, and the README's
// example run against a scripted server.

import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";

import { OnstageMeeting, Stage } from "./index.js";
import { FakeSocket } from "./testing/fake-socket.js";

beforeEach(() => {
  vi.useFakeTimers();
  FakeSocket.reset();
});

afterEach(() => {
  vi.useRealTimers();
});

function members(proto: object): string[] {
  return Object.getOwnPropertyNames(proto)
    .filter((n) => n !== "constructor")
    .sort();
}

describe("meeting", () => {
  it("the_stage_has_exactly_realtimekits_stage_methods_plus_the_queue_as_known", () => {
    expect(members(Stage.prototype)).toEqual(
      [
        "getAccessRequests",
        "requestAccess",
        "cancelRequestAccess",
        "grantAccess",
        "denyAccess",
        "join",
        "leave",
        "kick",
        "peerId",
        "status",
        "placeInQueue",
        "accessRequests",
        "on",
        "off",
      ].sort(),
    );
  });

  it("the_meeting_offers_what_the_media_code_and_apps_use", () => {
    const names = members(OnstageMeeting.prototype);
    for (const name of [
      "self",
      "participants",
      "participant",
      "publishing",
      "leave",
      "end",
      "removeParticipant",
      "setPreset",
      "muteParticipant",
      "call",
      "on",
      "off",
      "onAny",
      "offAny",
      "iceServers",
      "connected",
      "stageStatuses",
      "connectionState",
      "endReason",
      "token",
      "setTiles",
      "onLayers",
    ]) {
      expect(names).toContain(name);
    }
  });

  it("the_readme_example_runs", async () => {
    const joining = OnstageMeeting.join("https://meet.example.com", "<participant token>", {
      WebSocket: FakeSocket,
      fetch: null,
    });
    const server = FakeSocket.last();
    expect(server.url).toBe("wss://meet.example.com/v1/signal?token=%3Cparticipant+token%3E");
    server.receive({
      type: "welcome",
      meeting_id: "m1",
      title: "Standup",
      user_id: "v",
      peer_id: "p-v",
      resumed: false,
      preset: { name: "viewer", stage_access: "CAN_REQUEST" },
      grace_ms: 30000,
      snapshot: {
        seq: 0,
        max_on_stage: 25,
        participants: [{ user_id: "v", peer_id: "p-v", name: "V", preset: "viewer" }],
        queue: [],
      },
    });
    const meeting = await joining;
    const statuses: string[] = [];
    meeting.stage.on("stageStatusUpdate", ({ status }) => statuses.push(status));
    meeting.stage.on("stageRequestApproved", () => {
      void meeting.stage.join();
    });
    const requested = meeting.stage.requestAccess();
    server.receive({
      type: "event",
      seq: 1,
      event: { kind: "stage_status_changed", user_id: "v", status: "REQUESTED_TO_JOIN_STAGE", reason: "requested", requested_at: 5 },
    });
    server.reply(server.request().id, { stage_status: "REQUESTED_TO_JOIN_STAGE" });
    expect(await requested).toBe("REQUESTED_TO_JOIN_STAGE");
    server.receive({
      type: "event",
      seq: 2,
      event: { kind: "stage_status_changed", user_id: "v", status: "ACCEPTED_TO_JOIN_STAGE", reason: "granted", by: "h" },
    });
    await vi.advanceTimersByTimeAsync(0);
    expect(server.request().call, "the listener joined").toBe("stage.join");
    expect(statuses).toEqual(["REQUESTED_TO_JOIN_STAGE", "ACCEPTED_TO_JOIN_STAGE"]);
    expect(meeting.title).toBe("Standup");
  });

  it("call_arguments_may_be_left_out_only_when_a_call_takes_none", async () => {
    const joining = OnstageMeeting.join("http://h:1", "t", { WebSocket: FakeSocket, fetch: null });
    const server = FakeSocket.last();
    server.receive({
      type: "welcome",
      meeting_id: "m1",
      user_id: "v",
      peer_id: "p-v",
      resumed: false,
      preset: { name: "host", stage_access: "ALLOWED" },
      grace_ms: 30000,
      snapshot: { seq: 0, max_on_stage: 25, participants: [], queue: [] },
    });
    const meeting = await joining;
    const unpublishing = meeting.call("media.unpublish");
    expect(server.request()).toEqual({ id: 1, call: "media.unpublish" });
    server.reply(1, null);
    expect(await unpublishing).toBeNull();
    // Checked by `npm run check`, never run: the arguments a call needs cannot be left out.
    const typeChecks = async () => {
      // @ts-expect-error an offer is required
      await meeting.call("media.publish");
      // @ts-expect-error a subscription names its publisher
      await meeting.call("media.subscribe", { sdp: "v=0" });
    };
    expect(typeof typeChecks).toBe("function");
  });

  it("a_guest_keeps_its_own_token_and_every_sdk_keeps_the_queue", async () => {
    const joining = OnstageMeeting.joinGuest("https://meet.example.com", "<invite>", "Ann", {
      WebSocket: FakeSocket,
      fetch: null,
    });
    const server = FakeSocket.last();
    expect(server.url).toContain("token=%3Cinvite%3E");
    server.receive({
      type: "welcome",
      meeting_id: "m1",
      user_id: "g",
      peer_id: "p-g",
      resumed: false,
      token: "<own token>",
      preset: { name: "viewer", stage_access: "CAN_REQUEST" },
      grace_ms: 30000,
      snapshot: {
        seq: 0,
        max_on_stage: 25,
        participants: [
          { user_id: "g", peer_id: "p-g", name: "Ann", preset: "viewer" },
          { user_id: "b", peer_id: "p-b", name: "Bo", preset: "viewer" },
        ],
        queue: [],
      },
    });
    const meeting = await joining;
    expect(meeting.token, "the guest comes back as itself").toBe("<own token>");
    expect(meeting.stage.accessRequests).toEqual([]);
    server.receive({
      type: "event",
      seq: 1,
      event: { kind: "stage_status_changed", user_id: "b", status: "REQUESTED_TO_JOIN_STAGE", reason: "requested", requested_at: 7 },
    });
    expect(meeting.stage.accessRequests).toEqual([{ user_id: "b", name: "Bo", requested_at: 7 }]);
  });

  it("tiles_go_out_as_media_tiles_and_layers_reach_their_listeners", async () => {
    const joining = OnstageMeeting.join("http://h:1", "t", { WebSocket: FakeSocket, fetch: null });
    const server = FakeSocket.last();
    server.receive({
      type: "welcome",
      meeting_id: "m1",
      user_id: "v",
      peer_id: "p-v",
      resumed: false,
      preset: { name: "host", stage_access: "ALLOWED" },
      grace_ms: 30000,
      snapshot: { seq: 0, max_on_stage: 25, participants: [], queue: [] },
    });
    const meeting = await joining;
    const setting = meeting.setTiles([
      { userId: "a", width: 1279.6, height: 720 },
      { userId: "b", width: 0, height: 0 },
    ]);
    expect(server.sent[server.sent.length - 1]).toBe(
      `{"id":1,"call":"media.tiles","tiles":[{"user_id":"a","width":1280,"height":720},{"user_id":"b","width":0,"height":0}]}`,
    );
    server.reply(1, null);
    await expect(setting).resolves.toBeUndefined();

    const events: string[] = [];
    meeting.onAny((e) => events.push(e.event));
    await vi.advanceTimersByTimeAsync(0);
    const heard: string[][] = [];
    const stop = meeting.onLayers((rids) => heard.push(rids));
    meeting.onLayers(() => {
      throw new Error("an app's bug");
    });
    // The SDK hands a listener's exception back to the app on a microtask of its own.
    const rethrown: (() => void)[] = [];
    const spy = vi.spyOn(globalThis, "queueMicrotask").mockImplementation((fn) => {
      rethrown.push(fn);
    });
    try {
      server.receive({ type: "layers", rids: ["q", "h"] });
      // A message of a type this SDK does not know is reported, never thrown.
      server.receive({ type: "layers2", rids: ["q"] });
      server.receive({ type: "layers", rids: "q" });
      stop();
      server.receive({ type: "layers", rids: ["q"] });
    } finally {
      spy.mockRestore();
    }
    expect(rethrown).toHaveLength(2);
    expect(() => rethrown[0]?.()).toThrow("an app's bug");
    expect(heard).toEqual([["q", "h"]]);
    expect(events).toEqual(["protocolError", "protocolError"]);
    expect(meeting.connected()).toBe(true);
  });
});
