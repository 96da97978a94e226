"""End-to-end tests of the desktop app: the real app (WebDriver through tauri-driver),
real servers and `onstage bot`s. Run by scripts/e2e-app.sh, which starts Xvfb and
tauri-driver. Screenshots go to target/app-e2e/ (E2E_OUT).

    python3 tests/app/e2e.py [host|viewer|lan|link|end|leave|join-errors|powers|role|browser|bench ...]   (bench: tests/app/bench.py; screenshots: the docs pictures)
"""

import base64
import hashlib
import hmac
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from urllib.parse import parse_qs, urlparse

from selenium.webdriver.common.action_chains import ActionChains
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support.ui import Select

from harness import (APP, ONSTAGE, OUT, ROOT, WAIT, Bot, LanLab, Server, frames, gone, invoke, log,
                     run_scenarios, shot, start_app, testid, until)


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
        # A public address typed for the links (here this machine's loopback: the bots run
        # here), first mistyped.
        testid(app, "invite-public").send_keys("127.0.0.1:0")
        assert "not a port" in testid(app, "invite-address-error").text
        assert not testid(app, "create-invites").is_enabled()
        testid(app, "invite-public").clear()
        testid(app, "invite-public").send_keys("127.0.0.1")
        testid(app, "invite-forward-hint")
        testid(app, "create-invites", clickable=True).click()
        link = until(
            app,
            lambda d: testid(d, "invite-link-viewer").get_attribute("value") or False,
            "the viewer invite link",
        )
        assert link.startswith("onstage://join?"), link
        query = parse_qs(urlparse(link).query)
        server = query["server"][0]
        assert server.startswith("https://127.0.0.1:") and query["fp"][0].startswith("sha256:"), link
        log("invite", server)

        viewer = Bot(link=link, media="synthetic")
        bots.append(viewer)
        uid = viewer.user_id
        viewer.call("stage.requestAccess")
        testid(app, f"queue-item-{uid}")
        shot(app, "host-1-request")

        # Granted from the keyboard: focus stays on the Requests heading, so another Enter
        # does nothing (it never lands on the Remove button of the person just granted).
        testid(app, f"grant-{uid}", clickable=True).send_keys(Keys.ENTER)
        viewer.event(lambda e: e["event"] == "stageRequestApproved", "stageRequestApproved")
        testid(app, f"kick-{uid}")
        focused = lambda d: d.switch_to.active_element.get_attribute("data-testid")
        until(app, lambda d: focused(d) == "requests-title", "focus on the Requests heading")
        app.switch_to.active_element.send_keys(Keys.ENTER)
        assert focused(app) == "requests-title", focused(app)
        assert testid(app, f"participant-status-{uid}").get_attribute("data-status") == "ACCEPTED_TO_JOIN_STAGE"
        viewer.call("stage.join")
        testid(app, f"tile-{uid}")
        first = until(app, lambda d: frames(d, f"tile-{uid}") > 0 and frames(d, f"tile-{uid}"),
                      "the first picture in the tile")
        later = until(app, lambda d: frames(d, f"tile-{uid}") >= first + 10 and frames(d, f"tile-{uid}"),
                      "more pictures in the tile")
        log("tile frames", first, "->", later)
        # The tile's reception mark, from the desktop SDK's judgement of what arrives: on
        # this free link, good once the first seconds are judged.
        until(app, lambda d: testid(d, f"reception-{uid}").get_attribute("data-reception") == "good",
              "a good reception mark on the tile")

        # A second viewer waits in the queue while the first is on stage: the picture for
        # the README.
        second = invoke(app, "create_invite", {"preset": "viewer", "name": "Bob"})
        waiting = Bot(link=second["link"], media="none")
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
        # Joined from the keyboard: focus survives the controls changing under it and lands
        # on the mic toggle, not on Leave stage.
        testid(app, "join-stage", clickable=True).send_keys(Keys.ENTER)
        until(app, lambda d: testid(d, "stage-indicator").get_attribute("data-status") == "ON_STAGE",
              "ON_STAGE in the app")
        until(app, lambda d: d.switch_to.active_element.get_attribute("data-testid") == "mute-mic",
              "focus on the mic toggle")
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

        # Alt+A mutes and unmutes the mic, as the host sees (the SDK's media.state).
        for muted in (True, False):
            ActionChains(app).key_down(Keys.ALT).send_keys("a").key_up(Keys.ALT).perform()
            until(app, lambda d: testid(d, "mute-mic").get_attribute("aria-pressed") == str(muted).lower(),
                  f"the mic {'muted' if muted else 'on'} by Alt+A")
            host.event(lambda e: e["event"] == "mediaPublished" and e.get("user_id") == uid
                       and e.get("audio") is (not muted), f"the host told the mic is {'off' if muted else 'on'}")

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


def speaker_link(app):
    """Creates links in "Invite people" and returns the speaker link shown."""
    testid(app, "create-invites", clickable=True).click()
    return until(app, lambda d: testid(d, "invite-link-speaker").get_attribute("value") or False,
                 "the speaker invite link")


def on_stage_with_pictures(app, bot, what):
    """The bot goes on stage; its tile in the app shows moving pictures."""
    bot.call("stage.join")
    uid = bot.user_id
    testid(app, f"tile-{uid}")
    first = until(app, lambda d: frames(d, f"tile-{uid}") > 0 and frames(d, f"tile-{uid}"),
                  f"the first picture of {what}")
    later = until(app, lambda d: frames(d, f"tile-{uid}") >= first + 10 and frames(d, f"tile-{uid}"),
                  f"more pictures of {what}")
    log(what, "tile frames", first, "->", later)


def host_meeting(app, name):
    testid(app, "join-name").clear()
    testid(app, "join-name").send_keys(name)
    testid(app, "start-meeting", clickable=True).click()
    testid(app, "stage-indicator")
    return invoke(app, "session")["meeting_id"]


def lan_scenario():
    """(c) Hosting for a LAN: the app's embedded server (every interface, TLS) is reached
    from another network namespace at the address chosen in "Invite people"; a bot there
    joins with that exact link, goes on stage and its pictures show. The app restarts: the
    same meeting, port and certificate, the same address offered, and the old link still
    joins."""
    lab = LanLab()  # fails the test if namespaces cannot be made
    data = os.path.join(OUT, "lan-data")
    app = None
    bots = []
    try:
        app = start_app(["--data-dir", data])
        meeting = host_meeting(app, "Lana Lan")
        Select(testid(app, "invite-address")).select_by_value(lab.host_ip)
        link = speaker_link(app)
        query = parse_qs(urlparse(link).query)
        info = invoke(app, "invite_addresses")
        assert query["server"][0] == f"https://{lab.host_ip}:{info['port']}", link
        assert query["fp"][0] == info["fingerprint"], (link, info)
        assert testid(app, "invite-server").text == query["server"][0]
        log("lan link", query["server"][0], query["fp"][0][:20])
        shot(app, "lan-1-invite")

        guest = Bot(link=link, media="synthetic", netns=lab.ns)
        bots.append(guest)
        on_stage_with_pictures(app, guest, "the LAN guest")
        shot(app, "lan-2-guest-on-stage")
        guest.stop()
        gone(app, f"tile-{guest.user_id}")

        record = json.load(open(os.path.join(data, "host.json")))
        assert record["meeting_id"] == meeting and record["http_port"] == info["port"], record
        assert record["invite_address"] == lab.host_ip, record
        app.quit()
        app = None

        # Reopened while another program holds the port: the join screen says so (and offers
        # new ports); once the port is free, hosting brings back the same meeting at the
        # same address, port and certificate.
        app = start_app(["--data-dir", data])
        squatter = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            # (The old server's connections may linger in TIME_WAIT.)
            squatter.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            squatter.bind(("0.0.0.0", info["port"]))
            squatter.listen()
            testid(app, "start-meeting", clickable=True).click()
            problem = testid(app, "app-error")
            assert problem.get_attribute("data-code") == "port_in_use", problem.text
            assert str(info["port"]) in problem.text, problem.text
            testid(app, "host-new-ports")
            shot(app, "lan-3-port-in-use")
        finally:
            squatter.close()
        assert host_meeting(app, "Lana Lan") == meeting
        again = invoke(app, "invite_addresses")
        assert (again["port"], again["media_port"], again["fingerprint"]) == (
            info["port"], info["media_port"], info["fingerprint"]), (info, again)
        assert Select(testid(app, "invite-address")).first_selected_option.get_attribute("value") == lab.host_ip
        fresh = parse_qs(urlparse(speaker_link(app)).query)
        assert (fresh["server"], fresh["fp"]) == (query["server"], query["fp"]), (fresh, query)
        # Yesterday's link still joins.
        guest = Bot(link=link, media="synthetic", netns=lab.ns)
        bots.append(guest)
        on_stage_with_pictures(app, guest, "the LAN guest after the restart")
        shot(app, "lan-4-after-restart")
    finally:
        for bot in bots:
            bot.stop()
        if app:
            app.quit()
        lab.close()


def second_start(link):
    """Starts the app again with a link, as a click on it does; it hands the link to the
    running app and exits."""
    out = subprocess.run([APP, link], capture_output=True, text=True, timeout=WAIT)
    with open(os.path.join(OUT, "second-start.log"), "a") as f:
        f.write(out.stderr)
    assert out.returncode == 0, f"the second start exited {out.returncode}"


def link_scenario():
    """(d) Invite links from outside: the app registers the onstage:// scheme; a start of
    the app with a link while it runs hands the link over (single instance). A truncated
    link shows what is missing, typed or clicked; a good one joins."""
    assert os.environ.get("DBUS_SESSION_BUS_ADDRESS"), "needs the session bus scripts/e2e-app.sh starts"
    data = tempfile.mkdtemp(prefix="onstage-e2e-")
    server = Server(data, tls=True)
    app = None
    try:
        meeting = server.admin("meeting", "create", "--title", "E2E link")["id"]
        viewer = server.admin("participant", "add", "--meeting", meeting, "--name", "Lin Link", "--preset", "viewer")
        link = viewer["link"]
        assert "fp=sha256" in link, link
        truncated = link[:link.index("&token=")]
        app = start_app()
        testid(app, "join-name")

        handler = os.path.join(os.environ["XDG_DATA_HOME"], "applications", "onstage-app-handler.desktop")
        entry = open(handler).read()
        assert "MimeType=x-scheme-handler/onstage" in entry and f'Exec="{APP}" %u' in entry, entry

        testid(app, "join-invite").send_keys(truncated)
        testid(app, "join-submit", clickable=True).click()
        toast = testid(app, "toast-error")
        assert "no token" in toast.text, toast.text

        second_start(truncated)
        problem = testid(app, "app-error")
        assert (problem.get_attribute("data-code"), problem.get_attribute("data-context")) == ("bad_link", "link")
        assert "no token" in problem.text, problem.text
        shot(app, "link-1-truncated")

        second_start(link)
        until(app, lambda d: testid(d, "stage-indicator").get_attribute("data-status") == "OFF_STAGE",
              "joined from the link")
        assert invoke(app, "session")["meeting_id"] == meeting
        shot(app, "link-2-joined")

        # The same link opened elsewhere takes the meeting over: this window says why, and
        # Rejoin (the same link, kept by the app) takes it back.
        other = Bot(link=link, media="none")
        try:
            until(app, lambda d: "another window or device" in testid(d, "connection-banner").text,
                  "the replaced window says why")
            shot(app, "link-3-replaced")
            testid(app, "rejoin", clickable=True).click()
            other.event(lambda l: l.get("event") == "connectionStateUpdate" and l.get("state") == "disconnected"
                        and l.get("reason") == "replaced", "the other copy replaced in turn")
            gone(app, "connection-banner")
            until(app, lambda d: invoke(d, "session")["connection"] == "connected", "connected again after Rejoin")
            assert invoke(app, "session")["me"]["user_id"] == other.user_id
            testid(app, "request-access", clickable=True)
            shot(app, "link-4-rejoined")
        finally:
            other.stop()
    finally:
        if app:
            app.quit()
        server.stop()
        shutil.rmtree(data, ignore_errors=True)


def invited_bot(app, name):
    """A viewer bot joined with an invitation of the app's embedded meeting (at loopback:
    the bot runs on this machine)."""
    invite = invoke(app, "create_invite", {"preset": "viewer", "name": name, "address": "127.0.0.1"})
    return Bot(link=invite["link"], media="none")


def never_reconnected(bot):
    """The bot's connection never dropped: no `reconnecting` among the lines it printed."""
    assert not any(l.get("event") == "connectionStateUpdate" and l.get("state") == "reconnecting"
                   for l in bot.seen), bot.seen


def end_scenario():
    """(e) Ending the meeting for everyone. The embedded host opens "End meeting for all",
    backs out with Escape (nothing ends), then confirms: a bot viewer gets `meetingEnded`
    and its session ends for good (`meeting_ended`, no reconnect). Then the other side: the
    app joined as a viewer sees "The host ended the meeting" at once when a host bot ends
    it, never "reconnecting"."""
    app = start_app()
    bot = None
    host = None
    data = tempfile.mkdtemp(prefix="onstage-e2e-")
    server = None
    try:
        host_meeting(app, "Erin Ender")
        me = invoke(app, "session")["me"]["user_id"]
        bot = invited_bot(app, "Vic Viewer")
        testid(app, "end-meeting", clickable=True).click()
        dialog = testid(app, "end-meeting-dialog")
        assert "everyone" in dialog.text, dialog.text
        # The dialog takes the focus (Cancel first); Escape closes it and nothing ends.
        focused = app.switch_to.active_element
        assert focused.get_attribute("data-testid") == "cancel-end-meeting", focused.get_attribute("outerHTML")
        shot(app, "end-1-confirm")
        ActionChains(app).send_keys(Keys.ESCAPE).perform()
        until(app, lambda d: not d.execute_script(
            "return document.querySelector('[data-testid=end-meeting-dialog]').open"), "the dialog closed")
        assert bot.call("stage.status")["status"] == "OFF_STAGE"
        assert invoke(app, "session")["connection"] == "connected"

        testid(app, "end-meeting", clickable=True).click()
        testid(app, "confirm-end-meeting", clickable=True).click()
        ended = bot.event(lambda e: e["event"] == "meetingEnded", "meetingEnded")
        assert ended["by"] == me, ended
        bot.event(lambda e: e["event"] == "connectionStateUpdate" and e.get("state") == "disconnected"
                  and e.get("reason") == "meeting_ended", "disconnected: meeting_ended")
        never_reconnected(bot)
        assert "ended the meeting for everyone" in testid(app, "after-meeting").text
        # Nobody is left in it: the app does not claim it still runs.
        assert invoke(app, "app_info")["serving"] is False
        shot(app, "end-2-ended")
        app.quit()
        app = None

        # The audience's side: the app as a viewer, a host bot ends the meeting.
        server = Server(data)
        meeting = server.admin("meeting", "create", "--title", "E2E end")["id"]
        h = server.admin("participant", "add", "--meeting", meeting, "--name", "Host Bot", "--preset", "host")
        v = server.admin("participant", "add", "--meeting", meeting, "--name", "Ada Audience", "--preset", "viewer")
        host = Bot(server.url, h["token"], media="none")
        app = start_app(["--server", server.url, "--token", v["token"]])
        testid(app, "stage-indicator")
        assert not app.find_elements("css selector", '[data-testid="end-meeting"]'), "a viewer may not end it"
        host.call("meeting.end")
        until(app, lambda d: testid(d, "connection").get_attribute("data-state") == "disconnected",
              "the meeting ended in the app", timeout=5)
        banner = testid(app, "connection-banner")
        assert "The host ended the meeting" in banner.text, banner.text
        shot(app, "end-3-audience")
    finally:
        for b in (bot, host):
            if b:
                b.stop()
        if app:
            app.quit()
        if server:
            server.stop()
        shutil.rmtree(data, ignore_errors=True)


def leave_scenario():
    """(f) The embedded host leaves without ending: the meeting runs on. A bot viewer stays
    connected (it hears the host leave, and its calls are answered by the app's server),
    the start screen says the meeting is still running, and hosting again goes back into
    the same meeting."""
    app = start_app()
    bot = None
    try:
        meeting = host_meeting(app, "Lee Leaver")
        me = invoke(app, "session")["me"]["user_id"]
        bot = invited_bot(app, "Val Viewer")
        testid(app, "leave-meeting", clickable=True).click()
        notice = testid(app, "after-meeting")
        assert "still running for the others" in notice.text, notice.text
        assert invoke(app, "app_info")["serving"] is True
        bot.event(lambda e: e["event"] == "participantLeft" and e.get("user_id") == me
                  and e.get("reason") == "left", "the host left")
        # The embedded server still serves: the bot's calls are answered, its session lives.
        assert bot.call("stage.requestAccess")["status"] == "REQUESTED_TO_JOIN_STAGE"
        assert [p["user_id"] for p in bot.call("participants.list")] == [bot.user_id]
        never_reconnected(bot)
        shot(app, "leave-1-still-running")

        # Hosting again rejoins the same meeting on the same server; the bot sees the host back
        # and the request waiting in its queue.
        assert host_meeting(app, "Lee Leaver") == meeting
        bot.event(lambda e: e["event"] == "participantJoined"
                  and e.get("participant", {}).get("user_id") == me, "the host back")
        testid(app, f"queue-item-{bot.user_id}")
        never_reconnected(bot)
        shot(app, "leave-2-back")
    finally:
        if bot:
            bot.stop()
        app.quit()


def expired_token(data_dir, meeting):
    """A participant token of the server with data dir `data_dir`, signed with its secret,
    whose lifetime ended an hour ago (the server's TTL is a day: no waiting for one)."""
    secret = open(os.path.join(data_dir, "jwt_secret")).read().strip().encode()
    part = lambda obj: base64.urlsafe_b64encode(json.dumps(obj).encode()).rstrip(b"=")
    now = int(time.time())
    signed = part({"alg": "HS256", "typ": "JWT"}) + b"." + part(
        {"sub": "someone", "meeting_id": meeting, "iat": now - 7200, "exp": now - 3600})
    signature = base64.urlsafe_b64encode(hmac.new(secret, signed, hashlib.sha256).digest()).rstrip(b"=")
    return (signed + b"." + signature).decode()


def join_error_at_start(args, code, words):
    """Starts the app with `args`; the join screen shows the failure, in words, by the
    form."""
    app = start_app(args)
    try:
        problem = testid(app, "app-error")
        assert (problem.get_attribute("data-code"), problem.get_attribute("data-context")) == (code, "start"), \
            (problem.get_attribute("data-code"), problem.text)
        assert words in problem.text, problem.text
        # By the form it is about, not above the page.
        assert app.find_elements(By.CSS_SELECTOR, '[data-testid="join-form"] [data-testid="app-error"]'), \
            "the error is not in the join form"
        shot(app, f"join-error-{code}")
    finally:
        app.quit()


def join_errors_scenario():
    """(e) A join at start that fails is on the join screen, each failure in its own words:
    a refused token, an unreachable server, a malformed link."""
    data = tempfile.mkdtemp(prefix="onstage-e2e-")
    server = Server(data)
    try:
        join_error_at_start(["--server", server.url, "--token", "bad"], "unauthorized",
                            "The server refused the token")
        # Expired: a token of this server whose lifetime is over.
        meeting = server.admin("meeting", "create", "--title", "E2E expired")["id"]
        join_error_at_start(["--server", server.url, "--token", expired_token(data, meeting)], "token_expired",
                            "has expired")
        join_error_at_start(["--server", server.url.split("://", 1)[1], "--token", "t"], "invalid_server_url",
                            "not a server address")
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            closed = f"http://127.0.0.1:{s.getsockname()[1]}"
        join_error_at_start(["--server", closed, "--token", "t"], "unreachable", "Cannot reach the server")
        join_error_at_start(["onstage://join?server=http%3A%2F%2F127.0.0.1%3A1"], "bad_link",
                            "This invite link is not valid")
        # A server that takes the connection and never answers: while the join waits (up to
        # its connect timeout), the join screen says where it goes, then what failed.
        with socket.socket() as silent:
            silent.bind(("127.0.0.1", 0))
            silent.listen(8)
            target = f"http://127.0.0.1:{silent.getsockname()[1]}"
            app = start_app(["--server", target, "--token", "secret"])
            try:
                progress = testid(app, "join-progress")
                assert progress.text == f"Joining the meeting at {target}…", progress.text
                assert not testid(app, "join-submit").is_enabled(), "no second join meanwhile"
                shot(app, "join-progress")
                problem = testid(app, "app-error", timeout=WAIT)
                assert problem.get_attribute("data-code") in ("unreachable", "timeout"), problem.text
                gone(app, "join-progress")
            finally:
                app.quit()
    finally:
        server.stop()
        shutil.rmtree(data, ignore_errors=True)


def screenshots_scenario():
    """The pictures in docs/screenshots: the app as host with 1, 4 and 9 synthetic speakers on
    stage, and as a viewer, at the run's window size. Run on request only (not in DEFAULT)."""
    docs = os.path.join(ROOT, "docs", "screenshots")
    os.makedirs(docs, exist_ok=True)
    data = tempfile.mkdtemp(prefix="onstage-e2e-")
    server = Server(data)
    bots = []
    listeners = []
    app = None
    names = ["Ada", "Bo", "Chen", "Dara", "Eli", "Femi", "Gus", "Hiro", "Ines"]

    def add(name, preset):
        return server.admin("participant", "add", "--meeting", meeting, "--name", name, "--preset", preset)

    def speaker(name):
        # Small, slow pictures so a two-core machine can run nine of them with the app.
        t = add(name, "speaker")
        bot = Bot(server.url, t["token"], media="synthetic", nice=10,
                  extra=["--video", "160x90@8", "--video-bitrate", "150000", "--tone-hz", str(300 + 40 * len(bots))])
        bots.append(bot)
        bot.call("stage.join")
        return bot

    def save(name, count):
        # The pictures are 1280x800, the size the docs promise (the window opens smaller).
        app.set_window_size(1280, 800)
        until(app, lambda d: int(testid(d, "stage-grid").get_attribute("data-count")) >= count, f"{count} tiles")
        for b in bots[:count]:
            until(app, lambda d: frames(d, f"tile-{b.user_id}") > 2, "pictures in every tile")
        time.sleep(1)
        path = shot(app, name)
        shutil.copy(path, os.path.join(docs, f"{name}.png"))

    try:
        meeting = server.admin("meeting", "create", "--title", "Weekly demo")["id"]
        h = add("Hanna Host", "host")
        # A listening audience (no media), one of them asking to come up.
        for n in ["Walt", "Xena", "Yuri", "Zoe"]:
            bots.append(Bot(server.url, add(n, "viewer")["token"], media="none"))
        bots[0].call("stage.requestAccess")
        listeners = bots[:]
        del bots[:]
        app = start_app(["--server", server.url, "--token", h["token"]])
        testid(app, "stage-grid")
        for count in (1, 4, 9):
            while len(bots) < count:
                speaker(names[len(bots)])
            save(f"host-{count}", count)
        app.quit()
        app = None
        # The host stays in the meeting (from elsewhere) for the viewer's picture.
        listeners.append(Bot(server.url, h["token"], media="none"))
        for b in bots[4:]:
            b.stop()
        del bots[4:]
        v = add("Vera Viewer", "viewer")
        app = start_app(["--server", server.url, "--token", v["token"]])
        save("viewer", 4)
    finally:
        if app:
            app.quit()
        for b in bots + listeners:
            b.stop()
        server.stop()
        shutil.rmtree(data, ignore_errors=True)


def powers_scenario():
    """(g) A host's powers over the others, in the app hosting. Mute a speaker bot: its
    microphone goes off and it is told. Make a viewer bot host: asked first, with the focus
    on Cancel so that Enter changes nothing; confirmed, the bot is told and runs the stage.
    Remove it from the meeting: asked first; its session ends for good (`removed`) and its
    row goes."""
    app = start_app()
    bots = []
    try:
        host_meeting(app, "Pat Powers")
        me = invoke(app, "session")["me"]["user_id"]
        invite = invoke(app, "create_invite", {"preset": "speaker", "name": "Sam Speaker", "address": "127.0.0.1"})
        speaker = Bot(link=invite["link"], media="synthetic")
        bots.append(speaker)
        sid = speaker.user_id
        on_stage_with_pictures(app, speaker, "the speaker")

        testid(app, f"mute-{sid}", clickable=True).click()
        muted = speaker.event(lambda e: e["event"] == "participantMuted" and e["user_id"] == sid,
                              "participantMuted")
        assert muted["by"] == me, muted
        # Silent now: there is nothing left to mute, and the bot no longer sends audio.
        gone(app, f"mute-{sid}")
        deadline = time.monotonic() + WAIT
        while speaker.call("media.stats")["publishing"]["audio"]:
            assert time.monotonic() < deadline, "the speaker's microphone stayed on"
            time.sleep(0.1)
        # The host comes on stage too: two tiles side by side, the same size, 16:9; the
        # host's tone makes its tile the active speaker (the muted one cannot be).
        testid(app, "join-stage", clickable=True).click()
        testid(app, f"tile-{me}")
        until(app, lambda d: testid(d, "stage-grid").get_attribute("data-count") == "2", "two tiles")
        assert testid(app, "stage-grid").get_attribute("data-columns") == "2"

        def side_by_side(d):
            left, right = sorted((testid(d, f"tile-{u}").rect for u in (me, sid)), key=lambda r: r["x"])
            return (abs(left["y"] - right["y"]) < 1 and left["x"] + left["width"] <= right["x"]
                    and abs(left["width"] - right["width"]) < 1
                    and all(abs(r["width"] / r["height"] - 16 / 9) < 0.02 for r in (left, right)))
        # Polled: the grid settles a frame after the second tile arrives.
        until(app, side_by_side, "two tiles side by side, the same size, 16:9")
        until(app, lambda d: testid(d, f"tile-{me}").get_attribute("data-active") == "true",
              "the host's tile is the active speaker")
        assert testid(app, f"tile-{sid}").get_attribute("data-active") == "false"
        shot(app, "powers-1-muted")

        vic = invited_bot(app, "Vic Viewer")
        bots.append(vic)
        vid = vic.user_id
        focused = lambda d: d.switch_to.active_element.get_attribute("data-testid")
        # The rarer actions are one row at a time, behind its "More actions".
        assert not app.find_elements("css selector", f'[data-testid="make-host-{vid}"]')
        testid(app, f"more-{vid}", clickable=True).click()
        testid(app, f"make-host-{vid}", clickable=True).send_keys(Keys.ENTER)
        assert "Make Vic Viewer a host?" in testid(app, f"confirm-question-{vid}").text
        until(app, lambda d: focused(d) == f"cancel-{vid}", "focus on Cancel")
        shot(app, "powers-2-asked")
        app.switch_to.active_element.send_keys(Keys.ENTER)
        gone(app, f"confirm-question-{vid}")
        assert [p["preset"] for p in invoke(app, "session")["participants"] if p["user_id"] == vid] == ["viewer"]
        testid(app, f"make-host-{vid}", clickable=True).click()
        testid(app, f"confirm-{vid}", clickable=True).click()
        changed = vic.event(lambda e: e["event"] == "presetChanged", "presetChanged")
        assert changed["user_id"] == vid and changed["preset"] == "host" and changed["by"] == me, changed
        assert not app.find_elements("css selector", f'[data-testid="make-host-{vid}"]')
        assert vic.call("stage.getAccessRequests") == [], "the new host runs the stage"

        testid(app, f"more-{vid}", clickable=True).click()
        gone(app, f"make-host-{vid}")  # a host already
        testid(app, f"remove-{vid}", clickable=True).click()
        assert "Remove Vic Viewer from the meeting?" in testid(app, f"confirm-question-{vid}").text
        testid(app, f"confirm-{vid}", clickable=True).click()
        vic.event(lambda e: e["event"] == "connectionStateUpdate" and e.get("state") == "disconnected"
                  and e.get("reason") == "removed", "disconnected: removed")
        gone(app, f"participant-{vid}")
        never_reconnected(vic)
        shot(app, "powers-3-removed")
    finally:
        for bot in bots:
            bot.stop()
        app.quit()


def role_scenario():
    """(h) One link for everyone of a role. The app hosting makes a viewer link in "Invite
    people"; two bots join with that one link under names of their own and the host sees
    both; then the app itself joins a server's meeting with a role link: the join form
    asks for the name (the focus on it), and the guest is in with its own user id."""
    app = start_app()
    bots = []
    data = tempfile.mkdtemp(prefix="onstage-e2e-")
    server = None
    try:
        host_meeting(app, "Rita Roles")
        testid(app, "invite-public").send_keys("127.0.0.1")
        testid(app, "create-role-links", clickable=True).click()
        link = until(app, lambda d: testid(d, "role-link-viewer").get_attribute("value") or False,
                     "the viewer role link")
        assert "invite=" in link and "token=" not in link, link
        for name in ("Gus Guest", "Gia Guest"):
            bots.append(Bot(link=link, media="none", extra=["--name", name]))
        a, b = (bot.user_id for bot in bots)
        assert a != b, "one link, two participants"
        for bot, name in zip(bots, ("Gus Guest", "Gia Guest")):
            row = testid(app, f"participant-{bot.user_id}")
            assert name in row.text and "viewer" in row.text, row.text
        shot(app, "role-1-two-guests")
        # Revoked: nobody new gets in with it, the guests stay; a new link works.
        testid(app, "revoke-role-link-viewer", clickable=True).click()
        testid(app, "role-link-revoked-viewer")
        refused = subprocess.run([ONSTAGE, "bot", "--link", link, "--name", "Late Larry", "--media", "none"],
                                 stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=WAIT)
        assert refused.returncode != 0 and "token_revoked" in refused.stdout + refused.stderr, refused
        assert all(not b.proc.poll() for b in bots), "the guests stay"
        testid(app, "create-role-links", clickable=True).click()
        fresh = until(app, lambda d: testid(d, "role-link-viewer").get_attribute("value") or False, "a new link")
        assert fresh != link, "a new invite"
        bots.append(Bot(link=fresh, media="none", extra=["--name", "Newt Newer"]))
        for bot in bots:
            bot.stop()
        bots.clear()
        app.quit()
        app = None

        # The app as a guest of a server's meeting.
        server = Server(data)
        meeting = server.admin("meeting", "create", "--title", "E2E roles")["id"]
        invite = server.admin("invite", "create", "--meeting", meeting, "--preset", "viewer")
        app = start_app([invite["link"]])
        until(app, lambda d: d.switch_to.active_element.get_attribute("data-testid") == "join-guest-name",
              "the focus on the guest's name")
        testid(app, "join-guest-hint")
        testid(app, "join-guest-name").send_keys("Wendy Web")
        testid(app, "join-submit", clickable=True).click()
        testid(app, "stage-indicator")
        me = invoke(app, "session")["me"]
        assert me["name"] == "Wendy Web" and me["preset"] == "viewer", me
        shot(app, "role-2-guest")
    finally:
        for bot in bots:
            bot.stop()
        if app:
            app.quit()
        if server:
            server.stop()
        shutil.rmtree(data, ignore_errors=True)


def browser_scenario():
    """(i) The app and a browser, both ways: the app hosts and makes its links for anyone
    (Invite people); a headless Chromium opens the speaker link's browser form (the app the
    embedded server serves at /join, on Chromium's own WebRTC), gives its name and goes on
    stage: the app shows its tile with moving pictures decoded from Chromium's H.264. The
    host goes on stage too: its tile plays in the browser."""
    sys.path.insert(0, os.path.join(ROOT, "tests", "browser"))
    from browser import chromium

    app = start_app()
    browser = None
    try:
        host_meeting(app, "Hal Host")
        # The machine's own first address (not loopback: earlier scenarios may have left that
        # as the one last used), chosen as a user would when there are several.
        ours = next(a for a in invoke(app, "invite_addresses")["addresses"] if not a["loopback"])
        if app.find_elements(By.CSS_SELECTOR, '[data-testid="invite-address"]'):
            Select(testid(app, "invite-address")).select_by_value(ours["ip"])
        testid(app, "create-role-links", clickable=True).click()
        web_link = until(app, lambda d: testid(d, "role-web-link-speaker").get_attribute("value") or False,
                         "the speaker link's browser form")
        app_link = testid(app, "role-link-speaker").get_attribute("value")
        server = parse_qs(urlparse(app_link).query)["server"][0]
        assert web_link.startswith(f"{server}/join#invite="), (web_link, server)
        assert not server.startswith("https://127."), server

        browser = chromium()
        browser.get(web_link)
        testid(browser, "join-guest-name").send_keys("Bea Browser")
        testid(browser, "join-submit", clickable=True).click()
        testid(browser, "join-stage", clickable=True).click()
        until(browser, lambda d: testid(d, "stage-indicator").get_attribute("data-status") == "ON_STAGE",
              "the browser on stage")
        uid = until(app, lambda d: next((p["user_id"] for p in invoke(d, "session")["participants"]
                                         if p["name"] == "Bea Browser"), None), "the browser guest in the app")
        testid(app, f"tile-{uid}")
        first = until(app, lambda d: frames(d, f"tile-{uid}") > 0 and frames(d, f"tile-{uid}"),
                      "the browser's first picture")
        later = until(app, lambda d: frames(d, f"tile-{uid}") >= first + 10 and frames(d, f"tile-{uid}"),
                      "more pictures from the browser")
        log("browser tile frames in the app", first, "->", later)
        assert "Bea Browser" in testid(app, f"tile-{uid}").text
        shot(app, "browser-1-tile")

        # The desktop host on stage plays in the browser. (The app hosts the meeting its
        # data dir keeps, so an earlier scenario may have left the host on stage already.)
        host = invoke(app, "session")["me"]["user_id"]
        if testid(app, "stage-indicator").get_attribute("data-status") != "ON_STAGE":
            testid(app, "join-stage", clickable=True).click()
        until(app, lambda d: testid(d, "stage-indicator").get_attribute("data-status") == "ON_STAGE",
              "the host on stage")
        seen = until(browser, lambda d: frames(d, f"tile-{host}") >= 10 and frames(d, f"tile-{host}"),
                     "the host's pictures in the browser")
        log("host tile frames in the browser", seen)
    finally:
        if browser:
            browser.quit()
        app.quit()


SCENARIOS = {"host": host_scenario, "viewer": viewer_scenario, "lan": lan_scenario, "link": link_scenario,
             "end": end_scenario, "leave": leave_scenario, "join-errors": join_errors_scenario,
             "powers": powers_scenario, "role": role_scenario, "browser": browser_scenario}
DEFAULT = ["host", "viewer", "lan", "link", "end", "leave", "join-errors", "powers", "role", "browser"]


def bench():
    from bench import bench_scenario  # the transport benchmark, run on request only
    bench_scenario()


SCENARIOS["bench"] = bench
SCENARIOS["screenshots"] = screenshots_scenario  # docs pictures, on request only


def main(names):
    os.makedirs(OUT, exist_ok=True)
    return run_scenarios(SCENARIOS, names, DEFAULT)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
