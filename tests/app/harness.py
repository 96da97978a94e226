"""Helpers for the app's end-to-end tests: the app under WebDriver (tauri-driver), the
`onstage` command's bots and server, bounded waits, screenshots."""

import json
import os
import queue
import ssl
import subprocess
import threading
import time
import traceback
import urllib.request

from selenium import webdriver
from selenium.webdriver.common.by import By
from selenium.webdriver.common.options import ArgOptions
from selenium.webdriver.remote.client_config import ClientConfig
from selenium.webdriver.support import expected_conditions as EC
from selenium.common.exceptions import StaleElementReferenceException
from selenium.webdriver.support.ui import WebDriverWait

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
APP = os.environ.get("ONSTAGE_APP", os.path.join(ROOT, "target", "debug", "onstage-app"))
ONSTAGE = os.environ.get("ONSTAGE_BIN", os.path.join(ROOT, "target", "debug", "onstage"))
OUT = os.environ.get("E2E_OUT", os.path.join(ROOT, "target", "app-e2e"))
DRIVER = os.environ.get("TAURI_DRIVER_URL", "http://127.0.0.1:4444")
WAIT = float(os.environ.get("E2E_WAIT", "30"))


def log(*args):
    print(time.strftime("%H:%M:%S"), *args, flush=True)


# The app's single-instance name on the session bus (tauri-plugin-single-instance: the
# identifier + ".SingleInstance"). scripts/e2e-app.sh runs a bus of its own for the run.
INSTANCE_NAME = "dev.onstage.app.SingleInstance"


def instance_running():
    """Whether an app holds the single-instance name (False without a session bus)."""
    if not os.environ.get("DBUS_SESSION_BUS_ADDRESS"):
        return False
    out = subprocess.run(
        ["dbus-send", "--session", "--print-reply", "--dest=org.freedesktop.DBus",
         "/org/freedesktop/DBus", "org.freedesktop.DBus.NameHasOwner", f"string:{INSTANCE_NAME}"],
        capture_output=True, text=True, timeout=10,
    )
    return "boolean true" in out.stdout


def wait_no_instance(timeout=WAIT):
    """Until the previous app has let go of the single-instance name: an app started while
    it still holds it would hand over its arguments and exit."""
    deadline = time.monotonic() + timeout
    while instance_running():
        if time.monotonic() > deadline:
            raise TimeoutError("the previous app still runs (it holds the single-instance name)")
        time.sleep(0.1)  # nothing to await: the bus has no "name released" for us


def start_app(args=()):
    """A WebDriver session on a fresh app process (tauri-driver starts it)."""
    wait_no_instance()
    options = ArgOptions()
    options.set_capability("browserName", "wry")
    options.set_capability("tauri:options", {"application": APP, "args": list(args)})
    # Every WebDriver call is bounded too: a page that stops answering fails the test
    # instead of hanging the run.
    config = ClientConfig(remote_server_addr=DRIVER, keep_alive=True, timeout=WAIT * 2)
    return webdriver.Remote(command_executor=DRIVER, options=options, client_config=config)


# The page re-renders as the session changes: an element found a moment ago (or being
# looked up) may be replaced or removed meanwhile. A wait asks again instead of failing.
STALE = (StaleElementReferenceException,)


def testid(driver, tid, timeout=WAIT, clickable=False):
    """The element with data-testid `tid`, once visible (or clickable)."""
    cond = EC.element_to_be_clickable if clickable else EC.visibility_of_element_located
    return WebDriverWait(driver, timeout, ignored_exceptions=STALE).until(
        cond((By.CSS_SELECTOR, f'[data-testid="{tid}"]')),
        message=f"waiting for {tid}",
    )


def gone(driver, tid, timeout=WAIT):
    WebDriverWait(driver, timeout, ignored_exceptions=STALE).until(
        lambda d: not d.find_elements(By.CSS_SELECTOR, f'[data-testid="{tid}"]'),
        message=f"waiting for {tid} to go",
    )


def until(driver, fn, message, timeout=WAIT):
    return WebDriverWait(driver, timeout, poll_frequency=0.1, ignored_exceptions=STALE).until(
        lambda d: fn(d), message=message)


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
    """`onstage bot`: calls as JSON lines, one reply each. Joins with `server` + `token`, or
    with an invite `link`; `netns` runs it inside that network namespace."""

    def __init__(self, server=None, token=None, media="synthetic", extra=(), nice=0, link=None, netns=None):
        prefix = ["nice", "-n", str(nice)] if nice else []
        if netns:
            prefix = ["ip", "netns", "exec", netns, *prefix]
        target = ["--link", link] if link else ["--server", server, "--token", token]
        super().__init__([*prefix, ONSTAGE, "bot", *target, "--media", media, *extra])
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
    """`onstage serve` on a free port, with its own data dir (`tls`: self-signed https)."""

    def __init__(self, data_dir, tls=False, listen="127.0.0.1:0", netns=None, extra=()):
        """`netns`: served from inside that network namespace (a LanLab guest), at `listen`;
        `extra`: more `onstage serve` options."""
        extra = [*(["--tls-self-signed"] if tls else []), *extra]
        prefix = ["ip", "netns", "exec", netns] if netns else []
        super().__init__([*prefix, ONSTAGE, "serve", "--listen", listen, "--data", data_dir, *extra], stdin=False)
        ready = self.next(lambda l: l.get("event") == "listening", what="listening")
        self.url = ready["http"]
        self.fingerprint = ready.get("fingerprint")
        self.admin_key = ready.get("admin_key") or open(os.path.join(data_dir, "admin_key")).read().strip()

    def admin(self, *args):
        pin = ["--fingerprint", self.fingerprint] if self.fingerprint else []
        out = subprocess.run(
            [ONSTAGE, *args, "--server", self.url, *pin],
            env={**os.environ, "ONSTAGE_ADMIN_KEY": self.admin_key},
            capture_output=True, text=True, timeout=WAIT, check=True,
        )
        return json.loads(out.stdout.strip().splitlines()[-1])

    def rest(self, method, path):
        """An admin REST call with the admin key; the answer's `data`. The certificate is not
        checked: this test started the server, on a link of its own."""
        request = urllib.request.Request(self.url + path, method=method,
                                         headers={"Authorization": f"Bearer {self.admin_key}"})
        unverified = ssl._create_unverified_context()
        with urllib.request.urlopen(request, timeout=WAIT, context=unverified) as response:
            return json.loads(response.read())["data"]

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()


class LanLab:
    """A second host on a LAN with this machine: a network namespace joined to the root
    namespace (where the app runs) by a veth pair, `10.99.N.1/24` on this side and
    `10.99.N.2/24` on the guest's, the guest routing everything through this machine. N is
    a /24 no interface here uses yet. Names carry the test's pid (`oe<pid>...`), so runs in
    parallel do not collide, and what a killed run left behind is removed by the next.
    Needs root: without it the constructor raises (the test fails, it is not skipped)."""

    def __init__(self):
        pid = os.getpid()
        self.ns = f"oe{pid}-guest"
        self.veth = f"oe{pid}r"[:15]
        _remove_stale_labs()
        made = subprocess.run(["ip", "netns", "add", self.ns], capture_output=True, text=True)
        if made.returncode != 0:
            raise RuntimeError("cannot make a network namespace for the LAN test (it needs root and "
                               f"iproute2): {made.stderr.strip()}")
        try:
            n = _free_subnet()
            self.host_ip, self.guest_ip = f"10.99.{n}.1", f"10.99.{n}.2"
            _sh("ip", "link", "add", self.veth, "type", "veth", "peer", "name", "eth0", "netns", self.ns)
            _sh("ip", "addr", "add", f"{self.host_ip}/24", "dev", self.veth)
            _sh("ip", "link", "set", self.veth, "up")
            _sh("ip", "-n", self.ns, "link", "set", "lo", "up")
            _sh("ip", "-n", self.ns, "addr", "add", f"{self.guest_ip}/24", "dev", "eth0")
            _sh("ip", "-n", self.ns, "link", "set", "eth0", "up")
            _sh("ip", "-n", self.ns, "route", "add", "default", "via", self.host_ip)
        except Exception:
            self.close()
            raise
        log("lab: guest", self.ns, self.guest_ip, "reaches this machine at", self.host_ip, "on", self.veth)

    def run(self, *argv, timeout=WAIT):
        """Runs a command on the guest; its completed process."""
        return subprocess.run(["ip", "netns", "exec", self.ns, *argv], capture_output=True, text=True,
                              timeout=timeout)

    def close(self):
        _remove_lab(self.ns, self.veth)


def _sh(*argv):
    out = subprocess.run(argv, capture_output=True, text=True, timeout=WAIT)
    if out.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)}: {out.stderr.strip()}")
    return out.stdout


def _free_subnet():
    """A 10.99.N.0/24 no address of this machine is in."""
    used = subprocess.run(["ip", "-o", "-4", "addr"], capture_output=True, text=True).stdout
    start = os.getpid() % 200
    for i in range(250):
        n = (start + i) % 250 + 1
        if f" 10.99.{n}." not in used:
            return n
    raise RuntimeError("no free 10.99.N.0/24 for the LAN test")


def _remove_lab(ns, veth):
    pids = subprocess.run(["ip", "netns", "pids", ns], capture_output=True, text=True).stdout.split()
    for pid in pids:  # only ever what this lab started in its namespace
        subprocess.run(["kill", "-9", pid], capture_output=True)
    subprocess.run(["ip", "netns", "del", ns], capture_output=True)
    # Deleting the namespace takes the veth pair with it; make sure of it.
    subprocess.run(["ip", "link", "del", veth], capture_output=True)


def _remove_stale_labs():
    """Labs of test processes that no longer run (killed before cleaning up)."""
    listed = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    for line in listed.splitlines():
        ns = line.split()[0] if line.split() else ""
        if ns.startswith("oe") and ns.endswith("-guest"):
            pid = ns[2:-len("-guest")]
            if pid.isdigit() and not os.path.exists(f"/proc/{pid}"):
                _remove_lab(ns, f"oe{pid}r"[:15])


def run_scenarios(scenarios, names, default, prefix=""):
    """Runs the scenarios named (else `default`), each on its own: a failure is printed and
    the next one runs. Returns the exit status: 1 when any failed."""
    failed = []
    for name in names or default:
        started = time.monotonic()
        log(f"--- {prefix}{name}")
        try:
            scenarios[name]()
            log(f"ok {name} ({time.monotonic() - started:.1f} s)")
        except Exception:
            traceback.print_exc()
            log(f"FAILED {name} ({time.monotonic() - started:.1f} s)")
            failed.append(name)
    if failed:
        log("failed:", ", ".join(failed))
        return 1
    return 0
