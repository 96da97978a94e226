"""Helpers for the app's end-to-end tests: the app under WebDriver (tauri-driver), the
`onstage` command's bots and server, bounded waits, screenshots."""

import json
import os
import queue
import subprocess
import threading
import time

from selenium import webdriver
from selenium.webdriver.common.by import By
from selenium.webdriver.common.options import ArgOptions
from selenium.webdriver.remote.client_config import ClientConfig
from selenium.webdriver.support import expected_conditions as EC
from selenium.webdriver.support.ui import WebDriverWait

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
APP = os.environ.get("ONSTAGE_APP", os.path.join(ROOT, "target", "debug", "onstage-app"))
ONSTAGE = os.environ.get("ONSTAGE_BIN", os.path.join(ROOT, "target", "debug", "onstage"))
OUT = os.environ.get("E2E_OUT", os.path.join(ROOT, "target", "app-e2e"))
DRIVER = os.environ.get("TAURI_DRIVER_URL", "http://127.0.0.1:4444")
WAIT = float(os.environ.get("E2E_WAIT", "30"))


def log(*args):
    print(time.strftime("%H:%M:%S"), *args, flush=True)


def start_app(args=()):
    """A WebDriver session on a fresh app process (tauri-driver starts it)."""
    options = ArgOptions()
    options.set_capability("browserName", "wry")
    options.set_capability("tauri:options", {"application": APP, "args": list(args)})
    # Every WebDriver call is bounded too: a page that stops answering fails the test
    # instead of hanging the run.
    config = ClientConfig(remote_server_addr=DRIVER, keep_alive=True, timeout=WAIT * 2)
    return webdriver.Remote(command_executor=DRIVER, options=options, client_config=config)


def testid(driver, tid, timeout=WAIT, clickable=False):
    """The element with data-testid `tid`, once visible (or clickable)."""
    cond = EC.element_to_be_clickable if clickable else EC.visibility_of_element_located
    return WebDriverWait(driver, timeout).until(
        cond((By.CSS_SELECTOR, f'[data-testid="{tid}"]')),
        message=f"waiting for {tid}",
    )


def gone(driver, tid, timeout=WAIT):
    WebDriverWait(driver, timeout).until(
        lambda d: not d.find_elements(By.CSS_SELECTOR, f'[data-testid="{tid}"]'),
        message=f"waiting for {tid} to go",
    )


def until(driver, fn, message, timeout=WAIT):
    return WebDriverWait(driver, timeout, poll_frequency=0.1).until(lambda d: fn(d), message=message)


def frames(driver, tid):
    el = driver.find_elements(By.CSS_SELECTOR, f'[data-testid="{tid}"]')
    if not el:
        return -1
    return int(el[0].get_attribute("data-frames") or 0)


def invoke(driver, command, args=None):
    """Calls a shell command from the page, as the UI does (window.__TAURI__)."""
    script = """
      const done = arguments[arguments.length - 1];
      window.__TAURI__.core.invoke(arguments[0], arguments[1] || {})
        .then((r) => done({ ok: true, result: r }), (e) => done({ ok: false, error: e }));
    """
    driver.set_script_timeout(WAIT)
    reply = driver.execute_async_script(script, command, args or {})
    if not reply["ok"]:
        raise RuntimeError(f"{command}: {reply['error']}")
    return reply["result"]


# WebKitWebDriver takes a screenshot at the page's next paint. The app paints without GL
# compositing (src-tauri/src/main.rs), and then a page where nothing changes does not paint:
# the screenshot would wait for ever. While one is taken, a pixel in a corner changes every
# 50 ms, so a paint always comes.
_PAINT_TICK_ON = """
  if (!window.__onstageShotTick) {
    const dot = document.createElement('div');
    dot.id = 'onstage-shot-tick';
    dot.style.cssText = 'position:fixed;right:0;bottom:0;width:1px;height:1px;pointer-events:none';
    document.body.appendChild(dot);
    let odd = false;
    window.__onstageShotTick = setInterval(() => {
      odd = !odd;
      dot.style.background = odd ? 'rgba(0,0,0,0.02)' : 'rgba(0,0,0,0.01)';
    }, 50);
  }
"""
_PAINT_TICK_OFF = """
  clearInterval(window.__onstageShotTick);
  window.__onstageShotTick = undefined;
  document.getElementById('onstage-shot-tick')?.remove();
"""


def shot(driver, name):
    os.makedirs(OUT, exist_ok=True)
    path = os.path.join(OUT, f"{name}.png")
    driver.execute_script(_PAINT_TICK_ON)
    try:
        driver.save_screenshot(path)
    finally:
        driver.execute_script(_PAINT_TICK_OFF)
    log("screenshot", path)
    return path


class Lines:
    """A child process speaking JSON lines on stdout; lines are collected by a thread."""

    def __init__(self, argv, env=None, stdin=True):
        self.argv = argv
        self.proc = subprocess.Popen(
            argv,
            stdin=subprocess.PIPE if stdin else subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=open(os.path.join(OUT, f"{os.path.basename(argv[0])}-{os.getpid()}-{id(self)}.log"), "w"),
            env={**os.environ, **(env or {})},
            text=True,
            bufsize=1,
        )
        self.lines = queue.Queue()
        self.seen = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        for line in self.proc.stdout:
            line = line.strip()
            if not line:
                continue
            try:
                self.lines.put(json.loads(line))
            except ValueError:
                self.lines.put({"unparsed": line})

    def next(self, pred, timeout=WAIT, what="a line"):
        """The first line (seen before or arriving) that `pred` accepts."""
        for i, line in enumerate(self.seen):
            if pred(line):
                return self.seen.pop(i)
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"{self.argv[0]}: no {what} within {timeout}s")
            try:
                line = self.lines.get(timeout=left)
            except queue.Empty:
                continue
            if pred(line):
                return line
            self.seen.append(line)

    def stop(self):
        if self.proc.poll() is None:
            try:
                if self.proc.stdin:
                    self.proc.stdin.close()
                self.proc.wait(timeout=5)
            except (subprocess.TimeoutExpired, OSError):
                self.proc.kill()
                self.proc.wait()


class Bot(Lines):
    """`onstage bot`: calls as JSON lines, one reply each."""

    def __init__(self, server, token, media="synthetic", extra=(), nice=0):
        prefix = ["nice", "-n", str(nice)] if nice else []
        super().__init__([*prefix, ONSTAGE, "bot", "--server", server, "--token", token, "--media", media, *extra])
        joined = self.next(lambda l: l.get("event") == "joined", what="joined")
        self.user_id = joined["user_id"]
        self._id = 0

    def call(self, name, **args):
        self._id += 1
        i = self._id
        self.proc.stdin.write(json.dumps({"id": i, "call": name, **args}) + "\n")
        self.proc.stdin.flush()
        reply = self.next(lambda l: l.get("id") == i and "event" not in l, what=f"reply to {name}")
        if not reply.get("ok"):
            raise RuntimeError(f"{name}: {reply.get('error')}")
        return reply.get("result")

    def event(self, pred, what, timeout=WAIT):
        return self.next(lambda l: "event" in l and pred(l), timeout=timeout, what=what)


class Server(Lines):
    """`onstage serve` on a free port, with its own data dir."""

    def __init__(self, data_dir):
        super().__init__([ONSTAGE, "serve", "--listen", "127.0.0.1:0", "--data", data_dir], stdin=False)
        ready = self.next(lambda l: l.get("event") == "listening", what="listening")
        self.url = ready["http"]
        self.admin_key = ready.get("admin_key") or open(os.path.join(data_dir, "admin_key")).read().strip()

    def admin(self, *args):
        out = subprocess.run(
            [ONSTAGE, *args, "--server", self.url],
            env={**os.environ, "ONSTAGE_ADMIN_KEY": self.admin_key},
            capture_output=True, text=True, timeout=WAIT, check=True,
        )
        return json.loads(out.stdout.strip().splitlines()[-1])

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
