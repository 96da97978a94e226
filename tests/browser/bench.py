"""The browser's first pictures, for BENCHMARKS.md (on request, not in `make test`):

    target/e2e-venv/bin/python tests/browser/bench.py [joins] [rounds] [candidate wait ms]

A TLS server on a second LAN host (a network namespace), headless Chromium on this one.
1. A bot speaker (synthetic 640x480 at 30 fps) is on stage; a browser viewer joins the
   meeting `joins` times (20), 500 ms apart, each time a new participant: from the join
   (before the WebSocket opens) to the first picture Chromium decoded (getStats
   framesDecoded).
2. The browser, a speaker, joins the stage `rounds` times (10): from the join call to the
   first picture a bot viewer decoded (polled every 10 ms), then leaves it again.
3. The Onstage app the server serves at /join, opened from a viewer's web link `joins`
   times, each a new participant, 500 ms apart: from the navigation (the page's own clock,
   performance.now) to the first picture presented in the bot speaker's tile (its
   data-frames, counted by requestVideoFrameCallback) — page load, join and media in all.
"""

import os
import statistics
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "app"))
from harness import Bot, log  # noqa: E402

from browser import Browser, PageServer, chromium, lab_server  # noqa: E402

# In the app's page: waits for the first picture in `uid`'s tile, then answers the time
# since the navigation began, and when the page had loaded (DOMContentLoaded done).
FIRST_TILE_PICTURE = """
const [uid, done] = arguments;
const tile = () => document.querySelector(`[data-testid="tile-${uid}"]`);
const loaded = () => performance.getEntriesByType('navigation')[0]?.domContentLoadedEventEnd ?? 0;
const look = () => (Number(tile()?.dataset.frames ?? 0) > 0 ? done([performance.now(), loaded()]) : requestAnimationFrame(look));
look();
"""


def pct(values, p):
    values = sorted(values)
    return values[min(len(values) - 1, round(p / 100 * (len(values) - 1)))]


def summary(name, values):
    log(f"{name}: n={len(values)} p50={statistics.median(values):.0f} ms p95={pct(values, 95):.0f} ms "
        f"min={min(values):.0f} max={max(values):.0f}")


def main(joins=20, rounds=10, candidate_wait_ms=0):
    # The rounds change the stage faster than a participant's budget refills (one a second).
    server, add, close = lab_server(extra=["--broadcast-burst", "1000"])
    pages = PageServer()
    pin = ["--fingerprint", server.fingerprint]
    bots = []
    browser = None
    try:
        speaker = Bot(server.url, add("Sam Speaker", "speaker")["token"], media="synthetic", extra=pin)
        bots.append(speaker)
        speaker.call("stage.join")
        browser = Browser(pages, f"{server.url}&candidateWaitMs={candidate_wait_ms}")
        first = []
        for i in range(joins):
            # 500 ms apart, as the desktop clients' benchmark: one keyframe request each.
            time.sleep(0.5)
            first.append(browser.run("return t.timeToFirstFrame(args[0], args[1])",
                                     add(f"Web {i}", "viewer")["token"], speaker.user_id))
        summary("browser viewer joining a live stage -> first decoded picture", first)
        speaker.call("stage.leave")

        viewer = Bot(server.url, add("Vic Viewer", "viewer")["token"], media="synthetic", extra=pin)
        bots.append(viewer)
        me = browser.run("return t.join(args[0])", add("Bea Browser", "speaker")["token"])
        joins_ms = []
        for _ in range(rounds):
            before = viewer.call("media.stats")["received"].get(me, {}).get("video_frames", 0)
            t0 = time.monotonic()
            browser.run("await t.meeting.stage.join()")
            while viewer.call("media.stats")["received"].get(me, {}).get("video_frames", 0) <= before:
                if time.monotonic() - t0 > 10:
                    raise TimeoutError("no picture from the browser at the bot viewer: "
                                       f"{browser.run('return [t.media.problem, t.meeting.stage.status]')} "
                                       f"{viewer.call('media.stats')}")
                time.sleep(0.01)
            joins_ms.append((time.monotonic() - t0) * 1000)
            browser.run("await t.meeting.stage.leave()")
            viewer.event(lambda e: e["event"] == "mediaUnpublished" and e["user_id"] == me, "unpublished")
            # The bot's receive side keeps its counts per user; the next round starts fresh.
            time.sleep(0.3)
        summary("browser speaker stage join -> first picture at a bot viewer", joins_ms)
        browser.quit()
        browser = None

        speaker.call("stage.join")
        page = chromium()
        browser_app, loads = [], []
        try:
            for i in range(joins):
                time.sleep(0.5)
                page.get(add(f"Page {i}", "viewer")["web_link"])
                first_ms, loaded_ms = page.execute_async_script(FIRST_TILE_PICTURE, speaker.user_id)
                browser_app.append(first_ms)
                loads.append(loaded_ms)
                page.get("about:blank")  # leaves the meeting: the next link is a new page
        finally:
            page.quit()
        summary("the app at /join: web link opened -> first picture in the tile", browser_app)
        summary("  of which the page loading (DOMContentLoaded)", loads)
    finally:
        for bot in bots:
            bot.stop()
        if browser:
            browser.quit()
        pages.stop()
        close()


if __name__ == "__main__":
    main(*(int(a) for a in sys.argv[1:]))
