"""End-to-end tests of the web Stage SDK in a real browser: headless Chromium (its own
WebRTC, libwebrtc) through chromedriver, against a real server and `onstage bot`s. The
server runs on a second host of a LAN (a network namespace, tests/app/harness.py LanLab),
so media crosses a real link, never loopback. Run by scripts/e2e-browser.sh.

    python3 tests/browser/e2e.py [viewer|speaker|host|denied|simulcast ...]
"""

import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "app"))
from harness import Bot, log, run_scenarios  # noqa: E402

from browser import Browser, PageServer, lab_server  # noqa: E402

def viewer_scenario():
    """A browser viewer sees and hears a bot speaker: the <video> plays (its time advances,
    frames are decoded at the speaker's size) and audio packets arrive. Before that, a
    refused token is told as `unauthorized`, not as an unreachable server."""
    server, add, close = lab_server()
    pages = PageServer()
    browser = bot = None
    try:
        bot = Bot(server.url, add("Sam Speaker", "speaker")["token"], media="synthetic",
                  extra=["--fingerprint", server.fingerprint])
        bot.call("stage.join")
        browser = Browser(pages, server.url)
        # A refused join says why, though the page is of another origin than the server.
        refused = browser.run("try { await t.join(args[0]); return 'joined'; } catch (e) { return e.code; }",
                              "not-a-token")
        assert refused == "unauthorized", refused
        browser.run("return t.join(args[0])", add("Wes Web", "viewer")["token"])
        sid = bot.user_id
        first = browser.until(lambda: (lambda r: r and r.get("frames", 0) >= 10 and r)(
            browser.run("return (await t.stats()).received[args[0]]", sid)), "decoded frames from the bot")
        later = browser.until(lambda: (lambda r: r["frames"] >= first["frames"] + 30 and r["time"] > first["time"]
                                       and r.get("audioPackets", 0) > first.get("audioPackets", 0) + 20 and r)(
            browser.run("return (await t.stats()).received[args[0]]", sid)), "the video to play on, with sound")
        log("browser viewer", first, "->", later)
        assert later["width"] > 0 and later["height"] > 0, later
        assert browser.run("return t.media.localStream === null"), "a viewer captures nothing"
    finally:
        for part in (bot, browser):
            if part:
                (part.stop if part is bot else part.quit)()
        pages.stop()
        close()


def speaker_scenario():
    """A browser viewer asks for the stage, a host bot grants, the browser joins: a bot
    viewer decodes its video and audio. The host kicks it: the browser's tracks stop (the
    camera is let go) and the viewer receives nothing more from it."""
    server, add, close = lab_server()
    pages = PageServer()
    browser = host = viewer = None
    pin = ["--fingerprint", server.fingerprint]
    try:
        host = Bot(server.url, add("Hana Host", "host")["token"], media="none", extra=pin)
        viewer = Bot(server.url, add("Vic Viewer", "viewer")["token"], media="synthetic", extra=pin)
        browser = Browser(pages, server.url)
        me = browser.run("return t.join(args[0])", add("Wes Web", "viewer")["token"])
        assert browser.run("return t.meeting.stage.requestAccess()") == "REQUESTED_TO_JOIN_STAGE"
        host.event(lambda e: e["event"] == "newStageRequest" and e["request"]["user_id"] == me, "the request")
        host.call("stage.grantAccess", user_ids=[me])
        browser.until(lambda: browser.run("return t.meeting.stage.status") == "ACCEPTED_TO_JOIN_STAGE",
                      "the grant in the browser")
        assert browser.run("return t.media.localStream === null"), "no capture before going on stage"
        assert browser.run("return t.meeting.stage.join()") == "ON_STAGE"

        def from_browser():
            return viewer.call("media.stats")["received"].get(me, {})
        got = browser.until(lambda: (lambda r: r.get("video_frames", 0) >= 30 and r.get("audio_frames", 0) >= 30
                                     and r)(from_browser()), "the bot viewer to decode the browser's media")
        log("bot viewer from the browser", {k: got[k] for k in ("video_frames", "audio_frames", "decode_errors")})
        assert got["decode_errors"] == 0, got
        browser.run("t.tracks = t.media.localStream.getTracks()")

        host.call("stage.kick", user_ids=[me])
        browser.until(lambda: browser.run("return t.tracks.every((x) => x.readyState === 'ended')"),
                      "the browser's tracks to stop")
        assert browser.run("return t.media.localStream === null")
        viewer.event(lambda e: e["event"] == "mediaUnpublished" and e["user_id"] == me, "the unpublication")
        frames = from_browser().get("video_frames", 0)
        # Nothing more arrives from it; a quiet second is the point here.
        time.sleep(1)
        assert from_browser().get("video_frames", 0) == frames, "media after the kick"
    finally:
        for b in (host, viewer):
            if b:
                b.stop()
        if browser:
            browser.quit()
        pages.stop()
        close()


def host_scenario():
    """A host in the browser runs the queue for bots: it hears each request (oldest first in
    `getAccessRequests`), grants one, denies the other, and kicks the one it granted once it
    is on stage; each bot hears what was decided."""
    server, add, close = lab_server()
    pages = PageServer()
    browser = None
    bots = []
    pin = ["--fingerprint", server.fingerprint]
    try:
        browser = Browser(pages, server.url)
        browser.run("return t.join(args[0])", add("Hana Web", "host")["token"])
        ann, bob = (Bot(server.url, add(name, "viewer")["token"], media="none", extra=pin)
                    for name in ("Ann", "Bob"))
        bots += [ann, bob]
        for bot in (ann, bob):
            bot.call("stage.requestAccess")
        queue = browser.until(lambda: (lambda q: len(q) == 2 and q)(
            browser.run("return t.meeting.stage.getAccessRequests()")), "both requests")
        assert [r["user_id"] for r in queue] == [ann.user_id, bob.user_id], queue
        heard = browser.run("return t.events.filter((e) => e.event === 'newStageRequest').map((e) => e.request.user_id)")
        assert heard == [ann.user_id, bob.user_id], heard
        browser.run("await t.meeting.stage.grantAccess([args[0]])", ann.user_id)
        browser.run("await t.meeting.stage.denyAccess([args[0]])", bob.user_id)
        ann.event(lambda e: e["event"] == "stageRequestApproved", "Ann approved")
        bob.event(lambda e: e["event"] == "stageRequestRejected", "Bob rejected")
        ann.call("stage.join")
        browser.until(lambda: browser.run(
            "return t.meeting.participant(args[0])?.stage_status === 'ON_STAGE'", ann.user_id), "Ann on stage")
        browser.run("await t.meeting.stage.kick([args[0]])", ann.user_id)
        ann.event(lambda e: e["event"] == "stageStatusUpdate" and e["status"] == "OFF_STAGE", "Ann kicked")
        assert browser.run("return t.meeting.stage.getAccessRequests()") == []
    finally:
        for bot in bots:
            bot.stop()
        if browser:
            browser.quit()
        pages.stop()
        close()


def denied_scenario():
    """A speaker whose browser is refused the camera and microphone: the page gets a clear
    state (`permission_denied`, in words), nothing is published, and it still receives the
    stage; it stays ON_STAGE and can leave as usual."""
    server, add, close = lab_server()
    pages = PageServer()
    browser = bot = None
    try:
        bot = Bot(server.url, add("Sam Speaker", "speaker")["token"], media="synthetic",
                  extra=["--fingerprint", server.fingerprint])
        bot.call("stage.join")
        browser = Browser(pages, server.url, deny_devices=True)
        me = browser.run("return t.join(args[0])", add("Nora No", "speaker")["token"])
        assert browser.run("return t.meeting.stage.join()") == "ON_STAGE"
        problem = browser.until(lambda: browser.run("return t.media.problem"), "the refusal")
        assert problem["code"] == "permission_denied" and "not allowed" in problem["message"], problem
        assert browser.run("return t.media.localStream === null")
        got = bot.call("media.stats")["received"].get(me, {})
        assert got.get("video_frames", 0) == 0 and got.get("audio_frames", 0) == 0, got
        assert not any(l.get("event") == "mediaPublished" and l.get("user_id") == me for l in bot.seen), \
            "nothing was published"
        browser.until(lambda: (lambda r: r and r.get("frames", 0) > 5)(
            browser.run("return (await t.stats()).received[args[0]]", bot.user_id)), "the stage, received")
        assert browser.run("return t.meeting.stage.leave()") == "OFF_STAGE"
    finally:
        for part in (bot, browser):
            if part:
                (part.stop if part is bot else part.quit)()
        pages.stop()
        close()


# The layers a 1280x720 camera is sent as (web-sdk simulcastPlan): RID -> picture size.
SIMULCAST = {"q": (320, 180), "h": (640, 360), "f": (1280, 720)}


def simulcast_scenario():
    """A browser speaker whose camera gives 1280x720 publishes it as three simulcast layers
    (its offer: `a=simulcast:send q;h;f`), and each viewer gets the layer its tile and link
    take, the speaker encoding only the layers someone takes:
    - a second browser viewer (nothing said of its tiles) gets the 1280x720 layer; a bot
      viewer whose tile is 640x360 (media.tiles) gets 640x360. All
      three layers are sent then: Chromium's outbound-rtp per RID, H.264, each encoding and
      sending frames at its size (320x180, 640x360, 1280x720);
    - the bot's tile set to 320x180 (media.tiles): it gets the 320x180 layer, the SFU names
      only q and f (`layers`), and the browser stops encoding h (`active` false);
    - the browser viewer's tile set to 0x0 (meeting.setTiles): its video stops, the SFU
      names only q and the browser stops encoding f; the lowest layer never stops;
    - the bot's tile back to 640x360: h is named and encoded again, the bot gets 640x360."""
    server, add, close = lab_server()
    pages = PageServer()
    speaker = watcher = viewer = None
    try:
        viewer = Bot(server.url, add("Vic Viewer", "viewer")["token"], media="synthetic",
                     extra=["--fingerprint", server.fingerprint])
        speaker = Browser(pages, server.url, params={"video": "1280x720"})
        me = speaker.run("return t.join(args[0])", add("Sia Simulcast", "speaker")["token"])
        viewer.call("media.tiles", tiles=[{"user_id": me, "width": 640, "height": 360}])
        watcher = Browser(pages, server.url)
        watcher.run("return t.join(args[0])", add("Wes Watcher", "viewer")["token"])
        assert speaker.run("return t.meeting.stage.join()") == "ON_STAGE"

        def sent():
            """The speaker's video per RID: its outbound-rtp report, with its codec."""
            raw = speaker.run("return t.rawStats(null)") or {"reports": [], "offer": ""}
            codecs = {r["id"]: r.get("mimeType") for r in raw["reports"] if r["type"] == "codec"}
            video = {r["rid"]: dict(r, codec=codecs.get(r.get("codecId"))) for r in raw["reports"]
                     if r["type"] == "outbound-rtp" and r.get("kind") == "video" and "rid" in r}
            return video, raw["offer"] or ""

        def encoding(rids, seconds=2.0):
            """Waits until exactly `rids` are on (`active`), then checks over `seconds` that
            those encode and send frames and the others encode none; returns the reports."""
            speaker.until(lambda: {rid for rid, r in sent()[0].items() if r.get("active")} == set(rids),
                          f"the speaker to encode {sorted(rids)} only (the SFU named {layers()})")
            # A layer just resumed starts slowly (Chromium's encoder ramps up over a second
            # or so): measured from when every one encodes at 10 frames/s.
            speaker.until(lambda: all(sent()[0][rid].get("framesPerSecond", 0) >= 10 for rid in rids),
                          f"{sorted(rids)} to encode at 10 frames/s")
            before = sent()[0]
            time.sleep(seconds)
            after = sent()[0]
            for rid in SIMULCAST:
                a, b = before[rid], after[rid]
                if rid in rids:
                    assert b.get("framesEncoded", 0) >= a.get("framesEncoded", 0) + 10 * seconds, (rid, a, b)
                    assert b.get("framesSent", 0) > a.get("framesSent", 0), (rid, a, b)
                    assert b.get("bytesSent", 0) > a.get("bytesSent", 0), (rid, a, b)
                else:
                    assert b.get("framesEncoded", 0) == a.get("framesEncoded", 0), ("paused", rid, a, b)
            return after

        def layers():
            return speaker.run("return t.layers")

        def bot_sees():
            return viewer.call("media.stats")["received"].get(me, {})

        def watcher_sees():
            return watcher.run("return (await t.stats()).received[args[0]]", me) or {}

        video, offer = speaker.until(lambda: (lambda v: set(v[0]) == set(SIMULCAST) and v)(sent()),
                                     "an outbound-rtp report per RID")
        assert "a=simulcast:send q;h;f" in offer, offer
        for rid in SIMULCAST:
            assert f"a=rid:{rid} send" in offer, (rid, offer)

        # The browser viewer gets the top layer; the bot, showing it at 640x360, the middle.
        top = watcher.until(lambda: (lambda r: r.get("width") == 1280 and r)(watcher_sees()),
                            "the browser viewer to get the 1280x720 layer", timeout=45)
        log("browser viewer of the simulcast speaker", top, "layers named:", layers())
        reports = encoding({"q", "h", "f"})
        summary = {rid: {k: r.get(k) for k in ("frameWidth", "frameHeight", "framesEncoded", "framesSent",
                                                "bytesSent", "qualityLimitationReason")}
                   for rid, r in reports.items()}
        log("speaker simulcast layers", summary)
        for rid, (width, height) in SIMULCAST.items():
            r = reports[rid]
            assert r["codec"] == "video/H264", (rid, r)
            # The browser may scale a layer down when the CPU is short; never up.
            assert 0 < r.get("frameWidth", 0) <= width and 0 < r.get("frameHeight", 0) <= height, (rid, r)
        assert reports["f"]["frameWidth"] > reports["h"]["frameWidth"] > reports["q"]["frameWidth"], summary
        got = speaker.until(lambda: (lambda r: r.get("video_frames", 0) >= 30 and r)(bot_sees()),
                            "the bot viewer to decode the browser's video")
        log("bot viewer of the simulcast speaker", {k: got.get(k) for k in ("video_frames", "width", "height",
                                                                              "fps", "decode_errors")})
        assert got["decode_errors"] == 0, got
        assert (got["width"], got["height"]) == SIMULCAST["h"], got

        # A small tile takes the small layer; nobody takes h any more: it pauses.
        viewer.call("media.tiles", tiles=[{"user_id": me, "width": 320, "height": 180}])
        speaker.until(lambda: (bot_sees().get("width"), bot_sees().get("height")) == SIMULCAST["q"],
                      "the bot to get the 320x180 layer")
        encoding({"q", "f"})
        assert layers()[-1] == ["q", "f"], layers()

        # A tile of 0x0 takes no video; nobody takes f: it pauses, and q never does.
        speaker.run("return t.meeting.setTiles([])")
        watcher.run("return t.meeting.setTiles([{ userId: args[0], width: 0, height: 0 }])", me)
        encoding({"q"})
        frames = watcher_sees().get("frames", 0)
        time.sleep(1)
        assert watcher_sees().get("frames", 0) <= frames + 2, "video to a tile of 0x0"
        assert layers()[-1] == ["q"], layers()

        # The bot's tile grows again: h is named and encoded again, and the bot gets it.
        viewer.call("media.tiles", tiles=[{"user_id": me, "width": 640, "height": 360}])
        encoding({"q", "h"})
        speaker.until(lambda: (bot_sees().get("width"), bot_sees().get("height")) == SIMULCAST["h"],
                      "the bot to get the 640x360 layer again")
        assert bot_sees()["decode_errors"] == 0, bot_sees()
        log("layers the SFU named, in order:", layers())
    finally:
        for part in (viewer, speaker, watcher):
            if part:
                (part.stop if part is viewer else part.quit)()
        pages.stop()
        close()


SCENARIOS = {"viewer": viewer_scenario, "speaker": speaker_scenario, "host": host_scenario,
             "denied": denied_scenario, "simulcast": simulcast_scenario}


if __name__ == "__main__":
    sys.exit(run_scenarios(SCENARIOS, sys.argv[1:], list(SCENARIOS), prefix="browser "))
