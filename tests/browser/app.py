"""End-to-end tests of the Onstage app in a browser: the server's `/join` page (the desktop
app's UI built for the browser, ui/dist-web) opened from a web link in headless Chromium,
driven by the same data-testids as the desktop app's WebDriver tests, against a TLS server
on a second LAN host (tests/app/harness.py LanLab) and `onstage bot`s. Run by
scripts/e2e-browser.sh.

    python3 tests/browser/app.py [app-viewer|app-host|app-guest|app-denied ...]   (app-screenshot: docs picture)
"""

import os
import shutil
import sys
import time

from selenium.webdriver.common.by import By

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "app"))
from harness import OUT, ROOT, Bot, frames, gone, log, run_scenarios, shot, testid, until  # noqa: E402

from browser import chromium, lab_server  # noqa: E402

# Before the app's own scripts run: every track the page captures is kept, so the test can
# tell the camera and microphone were asked for only on going on stage, and let go after;
# and every `media.tiles` call the page sends is kept, to check the sizes it tells the SFU.
KEEP_TRACKS = """
window.__captured = [];
const gum = navigator.mediaDevices.getUserMedia.bind(navigator.mediaDevices);
navigator.mediaDevices.getUserMedia = async (constraints) => {
  const stream = await gum(constraints);
  window.__captured.push(...stream.getTracks());
  return stream;
};
window.__tiles = [];
const send = WebSocket.prototype.send;
WebSocket.prototype.send = function (data) {
  if (typeof data === 'string' && data.includes('"media.tiles"')) window.__tiles.push(JSON.parse(data).tiles);
  return send.call(this, data);
};
"""


def told_tiles(driver, uid):
    """Waits for the page to tell the SFU the size of `uid`'s tile as it shows it (device
    pixels: its CSS box x devicePixelRatio, within a pixel); returns what it told."""
    size = ("const r = document.querySelector(`[data-testid='tile-${arguments[0]}']`).getBoundingClientRect();"
            "return [Math.round(r.width * devicePixelRatio), Math.round(r.height * devicePixelRatio)];")

    def check(d):
        told = d.execute_script("return window.__tiles.at(-1) || null")
        width, height = d.execute_script(size, uid)
        mine = [t for t in told or [] if t["user_id"] == uid]
        return (mine and abs(mine[0]["width"] - width) <= 1 and abs(mine[0]["height"] - height) <= 1
                and width > 0 and told)
    return until(driver, check, f"the size of {uid}'s tile told to the SFU")


def open_app(link, deny_devices=False):
    """Chromium on a web link (`https://HOST:PORT/join#token=..`), capture watched."""
    driver = chromium(deny_devices)
    driver.execute_cdp_cmd("Page.addScriptToEvaluateOnNewDocument", {"source": KEEP_TRACKS})
    driver.get(link)
    return driver


def close_page(driver):
    """Quits the browser; when a test is failing, first logs what the page showed and said."""
    if sys.exc_info()[0] is not None:
        try:
            log("page at failure:", driver.current_url.split("#")[0],
                driver.find_element(By.TAG_NAME, "body").text.replace("\n", " | "))
            log("page console:", driver.get_log("browser"))
        except Exception as e:  # the page itself may be what broke
            log("page unreadable:", e)
    driver.quit()


def status(driver):
    return testid(driver, "stage-indicator").get_attribute("data-status")


def live_tracks(driver):
    """(tracks the page captured, of them still live)."""
    return driver.execute_script(
        "const c = window.__captured || []; return [c.length, c.filter((t) => t.readyState === 'live').length];")


def moving_tile(driver, uid, what, more=20):
    """Waits for `uid`'s tile to show pictures, then `more` of them; returns the counts."""
    first = until(driver, lambda d: frames(d, f"tile-{uid}") > 0 and frames(d, f"tile-{uid}"),
                  f"the first picture of {what}")
    later = until(driver, lambda d: frames(d, f"tile-{uid}") >= first + more and frames(d, f"tile-{uid}"),
                  f"more pictures of {what}")
    return first, later


def sound_plays(driver, what):
    """Some <audio> sink of the page plays on (its clock advances)."""
    clock = "return Math.max(0, ...[...document.querySelectorAll('audio')].map((a) => a.paused ? 0 : a.currentTime))"
    start = until(driver, lambda d: d.execute_script(clock) or False, f"the sound of {what}")
    until(driver, lambda d: d.execute_script(clock) > start + 1, f"the sound of {what} to play on")


def app_viewer_scenario():
    """A guest opens a viewer's web link: the page joins at once, shows the bot speaker's
    tile with moving pictures and plays its sound, capturing nothing. It asks for the stage
    (request-access), a host bot grants, the green room previews (its microphone meter
    moves), and its Join stage puts it on, with the preview's capture: the bot
    decodes its video and audio. The host kicks it: the page is a viewer again and every
    track it captured has stopped (the camera light goes off)."""
    server, add, close = lab_server()
    driver = host = sam = None
    pin = ["--fingerprint", server.fingerprint]
    try:
        sam = Bot(server.url, add("Sam Speaker", "speaker")["token"], media="synthetic", extra=pin)
        sam.call("stage.join")
        host = Bot(server.url, add("Hana Host", "host")["token"], media="none", extra=pin)
        wes = add("Wes Web", "viewer")
        assert wes["web_link"] == f"{server.url}/join#token={wes['token']}", wes
        me = wes["user_id"]
        driver = open_app(wes["web_link"])
        until(driver, lambda d: status(d) == "OFF_STAGE", "the meeting, as a viewer")
        first, later = moving_tile(driver, sam.user_id, "the bot speaker", more=30)
        log("browser app: the bot's tile", first, "->", later)
        told = told_tiles(driver, sam.user_id)
        log("browser app: tiles told to the SFU", told)
        assert [t["user_id"] for t in told] == [sam.user_id], told
        sound_plays(driver, "the bot speaker")
        assert live_tracks(driver) == [0, 0], "a viewer captures nothing"

        testid(driver, "request-access", clickable=True).click()
        host.event(lambda e: e["event"] == "newStageRequest" and e["request"]["user_id"] == me, "the request")
        until(driver, lambda d: status(d) == "REQUESTED_TO_JOIN_STAGE", "Requested in the page")
        host.call("stage.grantAccess", user_ids=[me])
        testid(driver, "green-room")
        # The green room's meter moves with the (fake) microphone's beeps.
        until(driver, lambda d: int(testid(d, "mic-level").get_attribute("data-level")) > 0,
              "the green room's microphone level")
        assert live_tracks(driver)[1] >= 2, "the green room previews camera and microphone"
        testid(driver, "join-stage", clickable=True).click()
        until(driver, lambda d: status(d) == "ON_STAGE", "On stage in the page")
        moving_tile(driver, me, "the page's own camera", more=10)

        def from_page():
            return sam.call("media.stats")["received"].get(me, {})
        got = until(driver, lambda d: (lambda r: r.get("video_frames", 0) >= 30 and r.get("audio_frames", 0) >= 30
                                       and r)(from_page()), "the bot to decode the page's media", timeout=60)
        assert got["decode_errors"] == 0, got
        log("bot from the browser app", {k: got[k] for k in ("video_frames", "audio_frames", "decode_errors")})
        captured, live = live_tracks(driver)
        assert captured == 2 and live == 2, f"the stage took the green room's capture: {captured}, {live}"

        host.call("stage.kick", user_ids=[me])
        until(driver, lambda d: status(d) == "OFF_STAGE", "the page off stage after the kick")
        testid(driver, "request-access")
        until(driver, lambda d: live_tracks(d)[1] == 0, "every captured track to stop")
        sam.event(lambda e: e["event"] == "mediaUnpublished" and e["user_id"] == me, "the unpublication")
        gone(driver, f"tile-{me}")
        assert frames(driver, f"tile-{sam.user_id}") > later, "the stage still plays"
    finally:
        if driver:
            close_page(driver)
        for bot in (host, sam):
            if bot:
                bot.stop()
        close()


def app_denied_scenario():
    """A speaker whose browser is refused the camera and microphone goes on stage: the page
    says so in words (device_denied) instead of a dark tile, publishes nothing, still plays
    the stage, and leaves it as usual."""
    server, add, close = lab_server()
    driver = sam = None
    try:
        sam = Bot(server.url, add("Sam Speaker", "speaker")["token"], media="synthetic",
                  extra=["--fingerprint", server.fingerprint])
        sam.call("stage.join")
        dee = add("Dee Denied", "speaker")
        driver = open_app(dee["web_link"], deny_devices=True)
        until(driver, lambda d: status(d) == "OFF_STAGE", "the meeting")
        testid(driver, "join-stage", clickable=True).click()
        until(driver, lambda d: status(d) == "ON_STAGE", "on stage")
        problem = testid(driver, "media-problem").text
        assert "not allowed to use the camera or microphone" in problem, problem
        assert live_tracks(driver) == [0, 0]
        moving_tile(driver, sam.user_id, "the stage, received")
        got = sam.call("media.stats")["received"].get(dee["user_id"], {})
        assert got.get("video_frames", 0) == 0 and got.get("audio_frames", 0) == 0, got
        assert not any(e.get("event") == "mediaPublished" and e.get("user_id") == dee["user_id"] for e in sam.seen)
        testid(driver, "leave-stage", clickable=True).click()
        until(driver, lambda d: status(d) == "OFF_STAGE", "off stage")
        gone(driver, "media-problem")
    finally:
        if driver:
            close_page(driver)
        if sam:
            sam.stop()
        close()


def host_page(add, name="Hana Web"):
    driver = open_app(add(name, "host")["web_link"])
    until(driver, lambda d: status(d) == "OFF_STAGE", "the host's meeting")
    return driver


def queue_order(driver):
    return driver.execute_script(
        "return [...document.querySelectorAll('[data-testid^=\"queue-item-\"]')]"
        ".map((e) => e.dataset.testid.slice('queue-item-'.length))")


def app_host_scenario(screenshot=None):
    """A host in the browser runs the queue for bots from the host panel: both requests show,
    oldest first; Grant lets Ann up (her tile plays once she joins), Deny sends Bob back;
    Remove from stage takes Ann off. Each bot hears what was decided. `screenshot`: a path
    to save the page at, with Ann on stage and Bob waiting."""
    server, add, close = lab_server()
    driver = None
    bots = []
    pin = ["--fingerprint", server.fingerprint]
    try:
        driver = host_page(add)
        ann = Bot(server.url, add("Ann Archer", "viewer")["token"], media="synthetic", extra=pin)
        bob = Bot(server.url, add("Bob Baker", "viewer")["token"], media="none", extra=pin)
        bots += [ann, bob]
        ann.call("stage.requestAccess")
        testid(driver, f"queue-item-{ann.user_id}")
        bob.call("stage.requestAccess")
        testid(driver, f"queue-item-{bob.user_id}")
        assert queue_order(driver) == [ann.user_id, bob.user_id], queue_order(driver)
        until(driver, lambda d: testid(d, "queue-badge").text.strip() == "2", "2 waiting")

        testid(driver, f"grant-{ann.user_id}", clickable=True).click()
        ann.event(lambda e: e["event"] == "stageRequestApproved", "Ann approved")
        ann.call("stage.join")
        until(driver, lambda d: testid(d, f"participant-status-{ann.user_id}").get_attribute("data-status")
              == "ON_STAGE", "Ann on stage in the host panel")
        moving_tile(driver, ann.user_id, "Ann")
        if screenshot:
            # The requests' toasts would cover the host panel in the picture.
            for button in driver.find_elements(By.CSS_SELECTOR, '[data-testid="toast-dismiss"]'):
                button.click()
            gone(driver, "toast-info")
            time.sleep(1)  # a still moment for the picture, not a wait for an event
            path = shot(driver, "browser-host")
            shutil.copy(path, screenshot)
            log("saved", screenshot)

        testid(driver, f"deny-{bob.user_id}", clickable=True).click()
        bob.event(lambda e: e["event"] == "stageRequestRejected", "Bob rejected")
        gone(driver, f"queue-item-{bob.user_id}")

        testid(driver, f"kick-{ann.user_id}", clickable=True).click()
        ann.event(lambda e: e["event"] == "stageStatusUpdate" and e["status"] == "OFF_STAGE", "Ann kicked")
        gone(driver, f"tile-{ann.user_id}")
        until(driver, lambda d: testid(d, f"participant-status-{ann.user_id}").get_attribute("data-status")
              == "OFF_STAGE", "Ann off stage in the host panel")
        assert queue_order(driver) == []
    finally:
        if driver:
            close_page(driver)
        for bot in bots:
            bot.stop()
        close()


def app_guest_scenario():
    """A role link opened in the browser (`#invite=`): the join form asks the guest's name,
    the guest joins under it, and the page's address then names the guest's own token, so a
    reload comes back as the same participant, not as a second guest."""
    server, add, close = lab_server()
    driver = host = None
    try:
        host = Bot(server.url, add("Hana Host", "host")["token"], media="none",
                   extra=["--fingerprint", server.fingerprint])
        invite = server.admin("invite", "create", "--meeting", add.meeting, "--preset", "viewer")
        assert invite["web_link"].startswith(f"{server.url}/join#invite="), invite
        driver = open_app(invite["web_link"])
        testid(driver, "join-guest-name").send_keys("Gus Guest")
        testid(driver, "join-submit", clickable=True).click()
        until(driver, lambda d: status(d) == "OFF_STAGE", "the guest in the meeting")
        joined = host.event(lambda e: e["event"] == "participantJoined"
                            and e["participant"]["name"] == "Gus Guest", "the guest joining")
        gus = joined["participant"]["user_id"]
        fragment = until(driver, lambda d: (lambda u: "#token=" in u and u)(d.current_url), "the guest's own token")
        assert "invite=" not in fragment, fragment

        driver.refresh()
        # (The connection line is empty, so not visible, while connected.)
        until(driver, lambda d: status(d) == "OFF_STAGE" and d.find_element(
            By.CSS_SELECTOR, '[data-testid="connection"]').get_attribute("data-state") == "connected",
            "the guest back after a reload")
        # The server's own list: a second guest would be a second stored participant.
        stored = server.rest("GET", f"/v1/meetings/{add.meeting}/participants")
        guests = [p["id"] for p in stored if p["name"] == "Gus Guest"]
        assert guests == [gus], stored
    finally:
        if driver:
            close_page(driver)
        if host:
            host.stop()
        close()


def app_screenshot_scenario():
    """docs/browser-host.png: the app in a browser, as a host with a speaker on stage."""
    app_host_scenario(screenshot=os.path.join(ROOT, "docs", "browser-host.png"))


SCENARIOS = {"app-viewer": app_viewer_scenario, "app-host": app_host_scenario, "app-guest": app_guest_scenario,
             "app-denied": app_denied_scenario, "app-screenshot": app_screenshot_scenario}
DEFAULT = ["app-viewer", "app-host", "app-guest", "app-denied"]


if __name__ == "__main__":
    os.makedirs(OUT, exist_ok=True)
    sys.exit(run_scenarios(SCENARIOS, sys.argv[1:], DEFAULT, prefix="browser "))
