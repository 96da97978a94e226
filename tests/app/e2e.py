"""End-to-end tests of the desktop app: the real app (WebDriver through tauri-driver),
real servers and `onstage bot`s. Run by scripts/e2e-app.sh, which starts Xvfb and
tauri-driver. Screenshots go to target/app-e2e/ (E2E_OUT).

    python3 tests/app/e2e.py [host|viewer|bench ...]   (bench: tests/app/bench.py)
"""

import os
import shutil
import sys
import tempfile
import time
import traceback
from urllib.parse import parse_qs, urlparse

from harness import (OUT, ROOT, Bot, Server, frames, gone, invoke, log, shot, start_app,
                     testid, until)


def host_scenario():
    """(a) The device check shows the camera and the mic; the app hosts (embedded server); a
    bot viewer asks to come up, the host grants,
    the bot's video shows in its tile, the host kicks it and the tile goes."""
    app = start_app()
    bots = []
    try:
        # The device check on the join screen: the camera picture and the mic level move.
        until(app, lambda d: frames(d, "device-preview") >= 5, "the camera preview")
        until(app, lambda d: int(testid(d, "mic-level").get_attribute("data-level") or 0) > 0,
              "the mic level")
        assert testid(app, "camera-state").get_attribute("data-state") == "ok"
        shot(app, "host-0-device-check")
        testid(app, "join-name").clear()
        testid(app, "join-name").send_keys("Hanna Host")
        testid(app, "start-meeting", clickable=True).click()
        testid(app, "create-invites", clickable=True).click()
        link = until(
            app,
            lambda d: testid(d, "invite-link-viewer").get_attribute("value") or False,
            "the viewer invite link",
        )
        assert link.startswith("onstage://join?"), link
        query = parse_qs(urlparse(link).query)
        server, token = query["server"][0], query["token"][0]
        log("invite", server)

        viewer = Bot(server, token, media="synthetic")
        bots.append(viewer)
        uid = viewer.user_id
        viewer.call("stage.requestAccess")
        testid(app, f"queue-item-{uid}")
        shot(app, "host-1-request")

        testid(app, f"grant-{uid}", clickable=True).click()
        viewer.event(lambda e: e["event"] == "stageRequestApproved", "stageRequestApproved")
        viewer.call("stage.join")
        testid(app, f"tile-{uid}")
        first = until(app, lambda d: frames(d, f"tile-{uid}") > 0 and frames(d, f"tile-{uid}"),
                      "the first picture in the tile")
        later = until(app, lambda d: frames(d, f"tile-{uid}") >= first + 10 and frames(d, f"tile-{uid}"),
                      "more pictures in the tile")
        log("tile frames", first, "->", later)

        # A second viewer waits in the queue while the first is on stage: the picture for
        # the README.
        second = invoke(app, "create_invite", {"preset": "viewer", "name": "Bob"})
        waiting = Bot(second["server_url"], second["token"], media="none")
        bots.append(waiting)
        waiting.call("stage.requestAccess")
        testid(app, f"queue-item-{waiting.user_id}")
        until(app, lambda d: frames(d, f"tile-{uid}") >= later + 10, "pictures keep coming")
        path = shot(app, "host-2-tile-and-queue")
        shutil.copyfile(path, os.path.join(ROOT, "target", "host-view.png"))

        testid(app, f"kick-{uid}", clickable=True).click()
        gone(app, f"tile-{uid}")
        viewer.event(lambda e: e["event"] == "stageStatusUpdate" and e.get("status") == "OFF_STAGE",
                     "OFF_STAGE after the kick")
        shot(app, "host-3-kicked")
    finally:
        for bot in bots:
            bot.stop()
        app.quit()


def viewer_scenario():
    """(b) The app joins a server as a viewer (--server/--token); it asks to come up, a host
    bot grants, the app joins the stage (its pictures reach the host), then leaves it."""
    data = tempfile.mkdtemp(prefix="onstage-e2e-")
    server = Server(data)
    host = None
    app = None
    try:
        meeting = server.admin("meeting", "create", "--title", "E2E viewer")["id"]
        h = server.admin("participant", "add", "--meeting", meeting, "--name", "Host Bot", "--preset", "host")
        v = server.admin("participant", "add", "--meeting", meeting, "--name", "Vera Viewer", "--preset", "viewer")
        host = Bot(server.url, h["token"], media="synthetic")  # receives (none: no media at all)
        app = start_app(["--server", server.url, "--token", v["token"]])
        uid = v["user_id"]

        testid(app, "request-access", clickable=True).click()
        host.event(lambda e: e["event"] == "stageAccessRequestUpdate"
                   and any(r["user_id"] == uid for r in e.get("requests", [])), "the app's request")
        until(app, lambda d: testid(d, "stage-indicator").get_attribute("data-status") == "REQUESTED_TO_JOIN_STAGE",
              "REQUESTED in the app")
        shot(app, "viewer-1-requested")

        host.call("stage.grantAccess", user_ids=[uid])
        testid(app, "join-stage", clickable=True).click()
        until(app, lambda d: testid(d, "stage-indicator").get_attribute("data-status") == "ON_STAGE",
              "ON_STAGE in the app")
        # What the app publishes (synthetic camera) reaches the host.
        deadline = time.monotonic() + 30
        received = 0
        while time.monotonic() < deadline:
            stats = host.call("media.stats")
            received = stats.get("received", {}).get(uid, {}).get("video_frames", 0)
            if received >= 10:
                break
            time.sleep(0.3)  # polling another process's counters: nothing to await
        assert received >= 10, f"the host decoded {received} pictures of the app"
        log("host received", received, "pictures from the app")
        shot(app, "viewer-2-on-stage")

        testid(app, "leave-stage", clickable=True).click()
        until(app, lambda d: testid(d, "stage-indicator").get_attribute("data-status") == "OFF_STAGE",
              "OFF_STAGE in the app")
        host.event(lambda e: e["event"] == "participantStageStatus" and e.get("user_id") == uid
                   and e.get("status") == "OFF_STAGE", "the host sees the app leave")
        shot(app, "viewer-3-left")
    finally:
        if app:
            app.quit()
        if host:
            host.stop()
        server.stop()
        shutil.rmtree(data, ignore_errors=True)


SCENARIOS = {"host": host_scenario, "viewer": viewer_scenario}
DEFAULT = ["host", "viewer"]


def bench():
    from bench import bench_scenario  # the transport benchmark, run on request only
    bench_scenario()


SCENARIOS["bench"] = bench


def main(names):
    os.makedirs(OUT, exist_ok=True)
    failed = []
    for name in names or DEFAULT:
        started = time.monotonic()
        log(f"--- {name}")
        try:
            SCENARIOS[name]()
            log(f"ok {name} ({time.monotonic() - started:.1f} s)")
        except Exception:
            traceback.print_exc()
            log(f"FAILED {name} ({time.monotonic() - started:.1f} s)")
            failed.append(name)
    if failed:
        log("failed:", ", ".join(failed))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
