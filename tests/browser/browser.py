"""The browser side of the end-to-end tests: headless Chromium through chromedriver, the
test page served at localhost (a secure context) with the web SDK loaded from the server
under test, and that server on a second LAN host (`lab_server`)."""

import functools
import http.server
import os
import shutil
import tempfile
import threading
import time

from selenium import webdriver
from selenium.webdriver.chrome.options import Options
from selenium.webdriver.chrome.service import Service

from harness import WAIT, LanLab, Server, log

HERE = os.path.dirname(os.path.abspath(__file__))
CHROMEDRIVER = os.environ.get("CHROMEDRIVER", shutil.which("chromedriver") or "/usr/bin/chromedriver")


class PageServer:
    """Serves this folder (the test page) at localhost, a secure context."""

    def __init__(self):
        handler = functools.partial(_QuietHandler, directory=HERE)
        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.httpd.server_port}/page.html"

    def stop(self):
        self.httpd.shutdown()


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


def chromium(deny_devices=False, flags=()):
    """Headless Chromium through chromedriver: fake camera and microphone (a test pattern and
    a beep), permission granted without a prompt (refused with `deny_devices`, as a user who
    says no), a self-signed certificate accepted (as a user accepts it once), sound allowed
    to play without a click; `flags`: more Chromium switches."""
    options = Options()
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--ignore-certificate-errors",
                "--use-fake-device-for-media-stream", "--autoplay-policy=no-user-gesture-required",
                "--window-size=1280,800"):
        options.add_argument(arg)
    options.add_argument("--deny-permission-prompts" if deny_devices else "--use-fake-ui-for-media-stream")
    for arg in flags:
        options.add_argument(arg)
    driver = webdriver.Chrome(options=options, service=Service(CHROMEDRIVER))
    driver.set_script_timeout(WAIT)
    return driver


class Browser:
    """Headless Chromium (`chromium`) on the test page, the SDK loaded from `server_url`.
    `flags`: more Chromium switches; `params`: more of the page's settings (its address'
    fragment, e.g. candidateWaitMs)."""

    def __init__(self, pages, server_url, deny_devices=False, flags=(), params=None):
        self.driver = chromium(deny_devices, flags)
        extra = "".join(f"&{k}={v}" for k, v in (params or {}).items())
        self.driver.get(f"{pages.url}#server={server_url}{extra}")
        try:
            self.until(lambda: self.driver.execute_script("return window.onstageReady === true"),
                       "the SDK to load")
        except TimeoutError:
            log("browser console:", self.driver.get_log("browser"))
            raise

    def run(self, body, *args):
        """Runs `body` (an async function body; `t` is the page's handle, `args` the
        arguments) and returns its result; a thrown error fails the test with its message."""
        script = ("const done = arguments[arguments.length - 1]; const args = [...arguments].slice(0, -1);"
                  "const t = window.onstageTest;"
                  f"(async () => {{ {body} }})().then((v) => done({{ ok: v === undefined ? null : v }}),"
                  "(e) => done({ error: String(e && (e.code ? e.code + ': ' + e.message : e.message || e)) }));")
        out = self.driver.execute_async_script(script, *args)
        if "error" in out:
            raise RuntimeError(f"in the page: {out['error']}")
        return out["ok"]

    def until(self, check, what, timeout=WAIT):
        deadline = time.monotonic() + timeout
        while True:
            got = check()
            if got:
                return got
            if time.monotonic() > deadline:
                raise TimeoutError(f"waited {timeout} s for {what}")
            time.sleep(0.1)

    def quit(self):
        self.driver.quit()


def lab_server(extra=()):
    """A TLS server on the lab's second host (`extra`: more `onstage serve` options) with a
    meeting; `add(name, preset)` adds a participant to it (`add.meeting` is its id);
    `close()` stops the server and removes the lab."""
    lab = LanLab()
    data = tempfile.mkdtemp(prefix="onstage-browser-")
    try:
        server = Server(data, tls=True, listen=f"{lab.guest_ip}:0", netns=lab.ns, extra=extra)
    except Exception:
        lab.close()
        raise
    meeting = server.admin("meeting", "create", "--title", "Browser stage")["id"]

    def add(name, preset):
        return server.admin("participant", "add", "--meeting", meeting, "--name", name, "--preset", preset)

    def close():
        server.stop()
        lab.close()
        shutil.rmtree(data, ignore_errors=True)

    add.meeting = meeting
    return server, add, close
