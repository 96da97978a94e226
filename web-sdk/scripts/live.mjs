// The SDK's build against a real Onstage server: a refused token; two participants through
// a request, a grant, a join, a refused call, a server restart (goodbye shutdown, reconnect,
// resume), a kick, a mute refused off stage, a new preset; a session replaced by the same
// token, one removed by the host; and the host ending the meeting. Not part of `npm test`: it needs
// a built server, given as ONSTAGE_BIN (e.g. target/debug/onstage), and `npm run build`.
//
//   ONSTAGE_BIN=../target/debug/onstage npm run live

import { execFileSync, spawn } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";

// Node before 22 has its WebSocket behind a flag.
if (typeof WebSocket === "undefined") {
  const again = spawn(process.execPath, ["--experimental-websocket", fileURLToPath(import.meta.url)], {
    stdio: "inherit",
  });
  again.on("exit", (code) => process.exit(code ?? 1));
} else {
  await main();
}

async function main() {
  const bin = process.env.ONSTAGE_BIN;
  if (!bin) {
    console.error("set ONSTAGE_BIN to a built onstage binary");
    process.exit(2);
  }
  const { OnstageMeeting } = await import("../dist/onstage-web.js");
  const data = mkdtempSync(join(tmpdir(), "onstage-live-"));
  let server = await serve(bin, "127.0.0.1:0", data);
  const url = server.ready.http;
  const listen = new URL(url).host;
  const key = server.ready.admin_key;
  const cli = (...args) =>
    JSON.parse(execFileSync(bin, [...args, "--server", url, "--admin-key", key]).toString());
  let failed = 0;
  const check = (what, ok, seen) => {
    console.log(`${ok ? "ok  " : "FAIL"} ${what}${ok ? "" : `: ${JSON.stringify(seen)}`}`);
    if (!ok) failed += 1;
  };
  try {
    const meeting = cli("meeting", "create", "--title", "Live");
    const host = cli("participant", "add", "--meeting", meeting.id, "--name", "Hana", "--preset", "host");
    const viewer = cli("participant", "add", "--meeting", meeting.id, "--name", "Vic", "--preset", "viewer");

    const refused = await OnstageMeeting.join(url, "nonsense").then(
      () => null,
      (e) => e,
    );
    check("a bad token is unauthorized", refused?.code === "unauthorized", refused?.message);

    const h = await OnstageMeeting.join(url, host.token);
    const hs = record(h);
    const v = await OnstageMeeting.join(url, viewer.token);
    const vs = record(v);
    check("the welcome", h.title === "Live" && h.preset.name === "host" && v.participants.length === 2, [
      h.title,
      h.preset.name,
    ]);
    await until(() => hs.some((e) => e.event === "participantJoined"));

    const requested = await v.stage.requestAccess();
    check("requestAccess", requested === "REQUESTED_TO_JOIN_STAGE" && v.stage.status === requested, requested);
    check("a place in line", v.stage.placeInQueue === 1, v.stage.placeInQueue);
    await until(() => hs.some((e) => e.event === "newStageRequest"));
    const queue = await h.stage.getAccessRequests();
    check("the host's queue", queue.length === 1 && queue[0].name === "Vic", queue);
    await h.stage.grantAccess([v.userId]);
    await until(() => vs.some((e) => e.event === "stageRequestApproved"));
    check("approved by the host", vs.find((e) => e.event === "stageRequestApproved").by === h.userId, vs);
    const joined = await v.stage.join();
    check("join", joined === "ON_STAGE" && v.stage.status === "ON_STAGE", joined);
    await until(() => h.participant(v.userId)?.stage_status === "ON_STAGE");

    const kick = await v.stage.kick([h.userId]).then(
      () => null,
      (e) => e,
    );
    check("a viewer may not kick", kick?.code === "permission_denied", kick?.code);

    // Restart the server on the same address and data: goodbye shutdown, then resume.
    server.process.kill("SIGTERM");
    await new Promise((r) => server.process.once("exit", r));
    server = await serve(bin, listen, data);
    const back = (events) => events.some((e) => e.event === "connectionStateUpdate" && e.state === "connected");
    await until(() => back(vs) && back(hs), 15000);
    const states = vs.filter((e) => e.event === "connectionStateUpdate");
    check(
      "a restart resumes",
      states[0]?.state === "reconnecting" && states[1]?.resumed === true && v.stage.status === "ON_STAGE",
      states,
    );

    await h.stage.kick([v.userId]);
    await until(() => v.stage.status === "OFF_STAGE");
    check("kicked", v.stage.status === "OFF_STAGE", v.stage.status);

    const notOnStage = await h.muteParticipant(v.userId).then(
      () => null,
      (e) => e,
    );
    check("only a speaker can be muted", notOnStage?.code === "invalid_state", notOnStage?.code);
    await h.setPreset(v.userId, "host");
    await until(() => v.preset.name === "host");
    check("made host", vs.some((e) => e.event === "presetChanged" && e.preset === "host"), vs.slice(-3));

    // The same token again: the first session is told it was replaced, and stops.
    const again = await OnstageMeeting.join(url, viewer.token);
    await until(() => v.connectionState === "disconnected");
    check("replaced", v.endReason === "replaced" && again.connected(), v.endReason);

    // A host removes a participant: its session ends with `removed`.
    const guest = cli("participant", "add", "--meeting", meeting.id, "--name", "Gus", "--preset", "viewer");
    const g = await OnstageMeeting.join(url, guest.token);
    await until(() => h.participant(g.userId) !== undefined);
    await h.removeParticipant(g.userId);
    await until(() => g.connectionState === "disconnected");
    check("removed", g.endReason === "removed", g.endReason);
    const left = hs.find((e) => e.event === "participantLeft" && e.user_id === g.userId);
    check("everyone hears the removal", left?.reason === "removed", left);

    const ended = record(again);
    await h.end();
    await until(() => again.connectionState === "disconnected");
    check(
      "the host ends it for everyone",
      JSON.stringify(ended.slice(-2).map((e) => e.event)) === '["meetingEnded","connectionStateUpdate"]' &&
        again.endReason === "meeting_ended" &&
        h.endReason === "meeting_ended",
      ended.slice(-2),
    );
  } catch (e) {
    check("the scenario ran", false, String(e?.stack ?? e));
  } finally {
    server.process.kill("SIGTERM");
    rmSync(data, { recursive: true, force: true });
  }
  process.exit(failed === 0 ? 0 : 1);
}

function serve(bin, listen, data) {
  return new Promise((resolve, reject) => {
    const child = spawn(bin, ["serve", "--listen", listen, "--data", data, "--grace-ms", "5000"], {
      stdio: ["ignore", "pipe", "ignore"],
    });
    let out = "";
    child.stdout.on("data", (chunk) => {
      out += chunk;
      const line = out.split("\n").find((l) => l.includes('"listening"'));
      if (line) resolve({ process: child, ready: JSON.parse(line) });
    });
    child.on("exit", (code) => reject(new Error(`the server exited (${code})`)));
  });
}

function record(meeting) {
  const events = [];
  meeting.onAny((e) => events.push(e));
  return events;
}

async function until(done, ms = 5000) {
  const start = Date.now();
  while (!done()) {
    if (Date.now() - start > ms) throw new Error(`timed out waiting for ${done}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}
