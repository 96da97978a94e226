// The Rust SDK's mirror tests (crates/client/src/mirror.rs), case for case: both SDKs derive
// the same events, in the same order, from the same room.

import { describe, expect, it } from "vitest";

import { Mirror } from "./mirror.js";
import type {
  AccessRequest,
  IceServer,
  ParticipantInfo,
  Preset,
  RoomEvent,
  RoomSnapshot,
  StageAccess,
  StageChangeReason,
  StageStatus,
  Welcome,
} from "./protocol.js";

function preset(name: string, access: StageAccess, accept: boolean): Preset {
  return {
    name,
    stage_enabled: true,
    stage_access: access,
    accept_stage_requests: accept,
    kick_participant: accept,
    can_produce_audio: true,
    can_produce_video: true,
  };
}

const host = (): Preset => preset("host", "ALLOWED", true);
const viewer = (): Preset => preset("viewer", "CAN_REQUEST", false);

function info(id: string, status: StageStatus): ParticipantInfo {
  return {
    user_id: id,
    peer_id: `p-${id}`,
    name: id.toUpperCase(),
    preset: "viewer",
    stage_status: status,
    connected: true,
  };
}

function request(id: string, at: number): AccessRequest {
  return { user_id: id, name: id.toUpperCase(), requested_at: at };
}

function welcome(me: string, p: Preset, snapshot: RoomSnapshot): Welcome {
  return {
    meeting_id: "m",
    title: "Standup",
    user_id: me,
    peer_id: `p-${me}`,
    resumed: false,
    preset: p,
    grace_ms: 30_000,
    snapshot,
    publishing: [],
    ice_servers: [],
  };
}

function snapshot(seq: number, participants: ParticipantInfo[]): RoomSnapshot {
  return { seq, max_on_stage: 25, participants, queue: [] };
}

function changed(
  id: string,
  status: StageStatus,
  reason: StageChangeReason,
  by: string | null,
  requestedAt: number | null,
): RoomEvent {
  const event: RoomEvent = { kind: "stage_status_changed", user_id: id, status, reason };
  if (by !== null) event.by = by;
  if (requestedAt !== null) event.requested_at = requestedAt;
  return event;
}

/** A host `h` and a viewer `v`, both off stage, at seq 2. */
function room(): RoomSnapshot {
  return snapshot(2, [info("h", "OFF_STAGE"), info("v", "OFF_STAGE")]);
}

function roomAt(seq: number): RoomSnapshot {
  return { ...room(), seq };
}

const none = { events: [], needSnapshot: false };

describe("mirror", () => {
  it("made_host_takes_the_new_permissions_and_is_shown_the_queue", () => {
    const r = room();
    r.participants.push(info("w", "REQUESTED_TO_JOIN_STAGE"));
    r.queue.push(request("w", 50));
    const m = new Mirror(welcome("v", viewer(), r));
    let a = m.onEvent(3, { kind: "preset_changed", user_id: "v", preset: host(), by: "h" });
    expect(a.events).toEqual([
      { event: "presetChanged", user_id: "v", preset: "host", by: "h" },
      { event: "stageAccessRequestUpdate", requests: [request("w", 50)] },
    ]);
    expect(m.preset.accept_stage_requests).toBe(true);
    expect(m.me().preset).toBe("host");
    // Someone else's change is told, and changes only the roster.
    a = m.onEvent(4, { kind: "preset_changed", user_id: "h", preset: viewer(), by: "v" });
    expect(a.events).toHaveLength(1);
    expect(m.participant("h")?.preset).toBe("viewer");
    expect(m.preset.accept_stage_requests, "still a host").toBe(true);
    a = m.onEvent(5, { kind: "participant_muted", user_id: "v", by: "h" });
    expect(a.events).toEqual([{ event: "participantMuted", user_id: "v", by: "h" }]);
  });

  it("own_request_and_grant_as_seen_by_the_requester", () => {
    const m = new Mirror(welcome("v", viewer(), room()));
    let a = m.onEvent(3, changed("v", "REQUESTED_TO_JOIN_STAGE", "requested", null, 100));
    expect(a.needSnapshot).toBe(false);
    expect(a.events, "a viewer gets no queue events").toEqual([
      { event: "stageStatusUpdate", status: "REQUESTED_TO_JOIN_STAGE" },
      { event: "participantStageStatus", user_id: "v", status: "REQUESTED_TO_JOIN_STAGE" },
    ]);
    expect(m.queue()).toEqual([request("v", 100)]);
    expect(m.status()).toBe("REQUESTED_TO_JOIN_STAGE");
    expect(m.ownStatusSeq).toBe(3);

    a = m.onEvent(4, changed("v", "ACCEPTED_TO_JOIN_STAGE", "granted", "h", null));
    expect(a.events).toEqual([
      { event: "stageRequestApproved", by: "h" },
      { event: "stageStatusUpdate", status: "ACCEPTED_TO_JOIN_STAGE" },
      { event: "participantStageStatus", user_id: "v", status: "ACCEPTED_TO_JOIN_STAGE" },
    ]);
    expect(m.queue()).toEqual([]);
    expect(m.me().stage_status).toBe("ACCEPTED_TO_JOIN_STAGE");
  });

  it("requests_as_seen_by_the_host", () => {
    const m = new Mirror(welcome("h", host(), room()));
    let a = m.onEvent(3, changed("v", "REQUESTED_TO_JOIN_STAGE", "requested", null, 100));
    expect(a.events).toEqual([
      { event: "participantStageStatus", user_id: "v", status: "REQUESTED_TO_JOIN_STAGE" },
      { event: "newStageRequest", request: request("v", 100) },
      { event: "stageAccessRequestUpdate", requests: [request("v", 100)] },
    ]);
    expect(m.ownStatusSeq, "someone else's change").toBe(0);
    a = m.onEvent(4, changed("v", "OFF_STAGE", "denied", "h", null));
    expect(a.events).toEqual([
      { event: "participantStageStatus", user_id: "v", status: "OFF_STAGE" },
      { event: "stageAccessRequestUpdate", requests: [] },
    ]);
    // The host's own join touches no queue.
    a = m.onEvent(5, changed("h", "ON_STAGE", "joined", null, null));
    expect(a.events).toEqual([
      { event: "stageStatusUpdate", status: "ON_STAGE" },
      { event: "participantStageStatus", user_id: "h", status: "ON_STAGE" },
    ]);
  });

  it("denied_and_invited_are_told_to_the_target", () => {
    const m = new Mirror(welcome("v", viewer(), room()));
    m.onEvent(3, changed("v", "REQUESTED_TO_JOIN_STAGE", "requested", null, 1));
    let a = m.onEvent(4, changed("v", "OFF_STAGE", "denied", "h", null));
    expect(a.events[0]).toEqual({ event: "stageRequestRejected", by: "h" });
    a = m.onEvent(5, changed("v", "ACCEPTED_TO_JOIN_STAGE", "invited", "h", null));
    expect(a.events[0]).toEqual({ event: "stageRequestApproved", by: "h" });
    // Kicked: only the status events.
    a = m.onEvent(6, changed("v", "OFF_STAGE", "kicked", "h", null));
    expect(a.events).toEqual([
      { event: "stageStatusUpdate", status: "OFF_STAGE" },
      { event: "participantStageStatus", user_id: "v", status: "OFF_STAGE" },
    ]);
  });

  it("queue_keeps_oldest_first_with_ties_in_arrival_order", () => {
    const m = new Mirror(
      welcome(
        "h",
        host(),
        snapshot(0, [
          info("h", "OFF_STAGE"),
          info("a", "OFF_STAGE"),
          info("b", "OFF_STAGE"),
          info("c", "OFF_STAGE"),
        ]),
      ),
    );
    m.onEvent(1, changed("a", "REQUESTED_TO_JOIN_STAGE", "requested", null, 10));
    m.onEvent(2, changed("b", "REQUESTED_TO_JOIN_STAGE", "requested", null, 10));
    m.onEvent(3, changed("c", "REQUESTED_TO_JOIN_STAGE", "requested", null, 5));
    expect(m.queue().map((r) => r.user_id)).toEqual(["c", "a", "b"]);
    expect(m.queue()[1]?.name, "names come from the roster").toBe("A");
  });

  it("a_requester_knows_its_place_in_line_as_it_changes", () => {
    const m = new Mirror(
      welcome(
        "b",
        viewer(),
        snapshot(0, [info("a", "OFF_STAGE"), info("b", "OFF_STAGE"), info("c", "OFF_STAGE")]),
      ),
    );
    expect(m.placeInQueue()).toBeNull();
    m.onEvent(1, changed("a", "REQUESTED_TO_JOIN_STAGE", "requested", null, 10));
    m.onEvent(2, changed("b", "REQUESTED_TO_JOIN_STAGE", "requested", null, 20));
    m.onEvent(3, changed("c", "REQUESTED_TO_JOIN_STAGE", "requested", null, 30));
    expect(m.placeInQueue(), "not an acceptor, yet it knows").toBe(2);
    m.onEvent(4, changed("a", "ACCEPTED_TO_JOIN_STAGE", "granted", null, null));
    expect(m.placeInQueue()).toBe(1);
    m.onEvent(5, changed("b", "OFF_STAGE", "cancelled", null, null));
    expect(m.placeInQueue()).toBeNull();
  });

  it("roster_events_map_one_to_one_and_leaving_drops_the_request", () => {
    const m = new Mirror(welcome("h", host(), room()));
    const newcomer = info("n", "OFF_STAGE");
    let a = m.onEvent(3, { kind: "participant_joined", participant: newcomer });
    expect(a.events).toEqual([{ event: "participantJoined", participant: newcomer }]);
    expect(m.participants()).toHaveLength(3);
    m.onEvent(4, changed("n", "REQUESTED_TO_JOIN_STAGE", "requested", null, 7));
    a = m.onEvent(5, { kind: "participant_connection", user_id: "n", connected: false });
    expect(a.events).toEqual([{ event: "participantConnection", user_id: "n", connected: false }]);
    expect(m.participant("n")?.connected).toBe(false);
    // The room first takes a leaver off the stage, then removes it.
    a = m.onEvent(6, changed("n", "OFF_STAGE", "removed", null, null));
    expect(a.events).toHaveLength(2);
    a = m.onEvent(7, { kind: "participant_left", user_id: "n", reason: "timed_out" });
    expect(a.events).toEqual([{ event: "participantLeft", user_id: "n", reason: "timed_out" }]);
    expect(m.participants()).toHaveLength(2);
    expect(m.queue()).toEqual([]);
  });

  it("old_events_are_ignored", () => {
    const m = new Mirror(welcome("h", host(), room()));
    const a = m.onEvent(2, changed("v", "ON_STAGE", "joined", null, null));
    expect(a).toEqual(none);
    expect(m.participant("v")?.stage_status).toBe("OFF_STAGE");
  });

  it("a_gap_asks_for_a_snapshot_buffers_and_replays", () => {
    const m = new Mirror(welcome("v", viewer(), room()));
    // seq 3 is lost; 4 arrives.
    let a = m.onEvent(4, changed("v", "ACCEPTED_TO_JOIN_STAGE", "granted", "h", null));
    expect(a).toEqual({ events: [], needSnapshot: true });
    expect(m.awaitingSnapshot()).toBe(true);
    // 6 arrives while waiting: buffered.
    a = m.onEvent(6, changed("h", "ON_STAGE", "joined", null, null));
    expect(a).toEqual(none);
    // The snapshot is at 5; seq 6 (h joins) is newer and gets replayed.
    const snap = snapshot(5, [info("h", "OFF_STAGE"), info("v", "ACCEPTED_TO_JOIN_STAGE")]);
    snap.max_on_stage = 3;
    a = m.onSnapshot(snap);
    expect(a.needSnapshot).toBe(false);
    expect(a.events).toEqual([
      { event: "stageRequestApproved", by: null },
      { event: "stageStatusUpdate", status: "ACCEPTED_TO_JOIN_STAGE" },
      { event: "participantStageStatus", user_id: "v", status: "ACCEPTED_TO_JOIN_STAGE" },
      { event: "participantStageStatus", user_id: "h", status: "ON_STAGE" },
    ]);
    expect(m.seq).toBe(6);
    expect(m.maxOnStage).toBe(3);
    expect(m.awaitingSnapshot()).toBe(false);
  });

  it("a_gap_inside_the_buffer_asks_again", () => {
    const m = new Mirror(welcome("v", viewer(), room()));
    expect(m.onEvent(5, changed("h", "ON_STAGE", "joined", null, null)).needSnapshot).toBe(true);
    m.onEvent(9, changed("h", "OFF_STAGE", "left", null, null));
    const a = m.onSnapshot(roomAt(6));
    expect(a.needSnapshot, "9 does not follow 6").toBe(true);
    expect(m.awaitingSnapshot()).toBe(true);
    m.snapshotFailed();
    expect(m.awaitingSnapshot()).toBe(false);
  });

  it("a_snapshot_diff_reports_joins_leaves_connections_and_the_queue", () => {
    const m = new Mirror(
      welcome(
        "h",
        host(),
        snapshot(10, [info("h", "ON_STAGE"), info("gone", "ON_STAGE"), info("v", "OFF_STAGE")]),
      ),
    );
    const v = { ...info("v", "REQUESTED_TO_JOIN_STAGE"), connected: false };
    const snap = snapshot(20, [info("h", "ON_STAGE"), v, info("new", "OFF_STAGE")]);
    snap.queue = [request("v", 15)];
    const a = m.onSnapshot(snap);
    expect(a.events).toEqual([
      { event: "participantStageStatus", user_id: "gone", status: "OFF_STAGE" },
      { event: "participantLeft", user_id: "gone", reason: "left" },
      { event: "participantStageStatus", user_id: "v", status: "REQUESTED_TO_JOIN_STAGE" },
      { event: "participantConnection", user_id: "v", connected: false },
      { event: "participantJoined", participant: info("new", "OFF_STAGE") },
      { event: "newStageRequest", request: request("v", 15) },
      { event: "stageAccessRequestUpdate", requests: [request("v", 15)] },
    ]);
    expect(m.seq).toBe(20);
  });

  it("an_unchanged_snapshot_emits_nothing", () => {
    const m = new Mirror(welcome("h", host(), room()));
    expect(m.onSnapshot(roomAt(2))).toEqual(none);
  });

  it("a_fresh_welcome_after_the_session_was_lost_resets_own_status", () => {
    const m = new Mirror(
      welcome("v", viewer(), snapshot(4, [info("h", "ON_STAGE"), info("v", "ON_STAGE")])),
    );
    // The server restarted: a new room with only us in it, new peer id, seq from 0.
    const w = welcome("v", viewer(), snapshot(1, [info("v", "OFF_STAGE")]));
    w.peer_id = "p-v-2";
    expect(m.onWelcome(w)).toEqual([
      { event: "participantStageStatus", user_id: "h", status: "OFF_STAGE" },
      { event: "participantLeft", user_id: "h", reason: "left" },
      { event: "stageStatusUpdate", status: "OFF_STAGE" },
      { event: "participantStageStatus", user_id: "v", status: "OFF_STAGE" },
    ]);
    expect(m.peerId).toBe("p-v-2");
    expect(m.seq).toBe(1);
    // Events continue from the new numbering.
    const a = m.onEvent(2, changed("v", "ON_STAGE", "joined", null, null));
    expect(a.events.length).toBeGreaterThan(0);
  });

  it("a_resumed_welcome_with_nothing_changed_emits_nothing", () => {
    const m = new Mirror(welcome("v", viewer(), room()));
    const w = welcome("v", viewer(), roomAt(2));
    w.resumed = true;
    expect(m.onWelcome(w)).toEqual([]);
  });

  it("every_welcome_renews_the_relay_credentials", () => {
    const relay = (user: string): IceServer => ({
      urls: ["turn:10.0.0.5:3478"],
      username: user,
      credential: "c",
    });
    const first = welcome("v", viewer(), room());
    first.ice_servers = [relay("100:v")];
    const m = new Mirror(first);
    expect(m.iceServers).toEqual([relay("100:v")]);
    // A reconnect's welcome carries fresh credentials: the old ones are gone.
    const again = welcome("v", viewer(), roomAt(2));
    again.resumed = true;
    again.ice_servers = [relay("200:v")];
    expect(m.onWelcome(again)).toEqual([]);
    expect(m.iceServers).toEqual([relay("200:v")]);
  });

  // Beyond the Rust cases: what the web SDK adds around the same rules.

  it("media_messages_and_a_reconnect_welcome_tell_who_publishes", () => {
    const first = welcome("v", viewer(), room());
    first.publishing = [
      { user_id: "h", audio: true, video: true },
      { user_id: "a", audio: false, video: true },
    ];
    const m = new Mirror(first);
    expect(m.publishingEvents()).toEqual([
      { event: "mediaPublished", user_id: "a", audio: false, video: true },
      { event: "mediaPublished", user_id: "h", audio: true, video: true },
    ]);
    expect(m.onMedia({ kind: "published", user_id: "h", audio: false, video: true })).toEqual({
      event: "mediaPublished",
      user_id: "h",
      audio: false,
      video: true,
    });
    expect(m.onMedia({ kind: "unpublished", user_id: "a" })).toEqual({
      event: "mediaUnpublished",
      user_id: "a",
    });
    expect([...m.publishing.keys()]).toEqual(["h"]);
    const again = welcome("v", viewer(), roomAt(2));
    again.publishing = [{ user_id: "b", audio: true, video: true }];
    expect(m.onWelcome(again)).toEqual([
      { event: "mediaUnpublished", user_id: "h" },
      { event: "mediaPublished", user_id: "b", audio: true, video: true },
    ]);
  });

  it("meeting_ended_is_told_at_once_even_inside_a_gap", () => {
    const m = new Mirror(welcome("v", viewer(), room()));
    expect(m.onEvent(5, changed("h", "ON_STAGE", "joined", null, null)).needSnapshot).toBe(true);
    expect(m.onMeetingEnded(7, "h")).toEqual([{ event: "meetingEnded", by: "h" }]);
    expect(m.awaitingSnapshot()).toBe(false);
    expect(m.seq).toBe(7);
  });

  it("what_it_hands_out_cannot_change_the_mirror", () => {
    const m = new Mirror(welcome("v", viewer(), room()));
    const list = m.participants();
    (list[0] as ParticipantInfo).stage_status = "ON_STAGE";
    m.me().name = "changed";
    expect(m.participant("h")?.stage_status).toBe("OFF_STAGE");
    expect(m.me().name).toBe("V");
  });
});
