"""The browser side of the end-to-end tests: the test page served at localhost (a secure
context) and headless Chromium on it through chromedriver, the web SDK loaded from the
server under test."""

import functools
import http.server
import os
import shutil
import threading
import time

from selenium import webdriver
from selenium.webdriver.chrome.options import Options
from selenium.webdriver.chrome.service import Service

from harness import WAIT, log

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


class Browser:
    """Headless Chromium on the test page, the SDK loaded from `server_url`. Fake camera and
    microphone (a test pattern and a beep), permission granted without a prompt (refused
    with `deny_devices`), and the server's self-signed certificate accepted (as a user
    accepts it once)."""

    def __init__(self, pages, server_url, deny_devices=False):
        options = Options()
        for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--ignore-certificate-errors",
                    "--use-fake-device-for-media-stream", "--autoplay-policy=no-user-gesture-required"):
            options.add_argument(arg)
        # Granted without a prompt, or (`deny_devices`) refused as a user who says no.
        options.add_argument("--deny-permission-prompts" if deny_devices else "--use-fake-ui-for-media-stream")
        self.driver = webdriver.Chrome(options=options, service=Service(CHROMEDRIVER))
        self.driver.set_script_timeout(WAIT)
        self.driver.get(f"{pages.url}#server={server_url}")
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
