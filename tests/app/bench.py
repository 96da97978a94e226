"""The picture transport benchmark: 4 tiles of 640x480 at 30 fps through the app's video
channel. The app hosts; four speaker bots publish the synthetic pattern. Over a window it
measures the CPU of the app process and of its WebKit processes (from /proc), of the
publishing bots and how idle the machine was, the pictures
that reached the webview and their delay (decoded in the shell -> received in the webview,
and -> handed to the UI's drawing, from the shell's timing hook `window.__onstagePictures`).

Run through the runner, once per picture kind:
    ONSTAGE_PICTURES=rgba bash scripts/e2e-app.sh bench
    ONSTAGE_PICTURES=jpeg bash scripts/e2e-app.sh bench
"""

import json
import os
import time

from harness import APP, OUT, Bot, frames, invoke, log, shot, start_app, testid, until

TILES = int(os.environ.get("BENCH_TILES", "4"))
WINDOW = float(os.environ.get("BENCH_SECONDS", "20"))
TICK = os.sysconf("SC_CLK_TCK")
# The publishers share this machine with the app. BENCH_BOTS_NICE=19 runs them at low
# priority, so that on a saturated machine what is measured is the app, not the scheduler.
BOTS_NICE = int(os.environ.get("BENCH_BOTS_NICE", "0"))


def app_pids():
    """The newest app process and its descendants (the WebKit web and network processes)."""
    procs = {}
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/stat") as f:
                stat = f.read()
            fields = stat[stat.rindex(")") + 2:].split()
            exe = os.path.realpath(f"/proc/{pid}/exe")
            procs[int(pid)] = (int(fields[1]), exe, int(fields[19]))  # ppid, exe, starttime
        except (OSError, ValueError):
            continue
    apps = [(start, pid) for pid, (_, exe, start) in procs.items() if exe == os.path.realpath(APP)]
    app = max(apps)[1]
    family, changed = {app}, True
    while changed:
        changed = False
        for pid, (ppid, _, _) in procs.items():
            if ppid in family and pid not in family:
                family.add(pid)
                changed = True
    return app, family


def cpu_seconds(pids):
    out = {}
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat") as f:
                stat = f.read()
            name = stat[stat.index("(") + 1:stat.rindex(")")]
            fields = stat[stat.rindex(")") + 2:].split()
            out[pid] = (name, (int(fields[11]) + int(fields[12])) / TICK)
        except OSError:
            continue
    return out


def machine_idle():
    """Idle and total jiffies of the whole machine (/proc/stat), to tell a saturated box."""
    with open("/proc/stat") as f:
        fields = [int(x) for x in f.readline().split()[1:]]
    return fields[3] + fields[4], sum(fields)


def pct(values, q):
    if not values:
        return None
    s = sorted(values)
    return round(s[min(len(s) - 1, int(round((len(s) - 1) * q)))], 1)


def bench_scenario():
    kind = os.environ.get("ONSTAGE_PICTURES", "rgba")
    app = start_app()
    bots = []
    try:
        testid(app, "start-meeting", clickable=True).click()
        testid(app, "leave-meeting")
        for i in range(TILES):
            invite = invoke(app, "create_invite", {"preset": "speaker", "name": f"Speaker {i + 1}"})
            bot = Bot(
                invite["server_url"], invite["token"], media="synthetic", extra=["--video", "640x480@30"], nice=BOTS_NICE
            )
            bot.call("stage.join")
            bots.append(bot)
        for bot in bots:
            until(app, lambda d, u=bot.user_id: frames(d, f"tile-{u}") > 0, f"pictures of {bot.user_id}", timeout=60)
        time.sleep(3)  # settle: encoders ramp up, first keyframes
        app_pid, family = app_pids()
        app.execute_script("window.__onstagePictures = undefined")
        before_stats = invoke(app, "picture_stats")
        before_frames = {b.user_id: frames(app, f"tile-{b.user_id}") for b in bots}
        bot_pids = [b.proc.pid for b in bots]
        before_cpu = cpu_seconds(family)
        before_bots = cpu_seconds(bot_pids)
        before_idle = machine_idle()
        t0 = time.monotonic()
        time.sleep(WINDOW)  # the measurement window
        elapsed = time.monotonic() - t0
        after_cpu = cpu_seconds(family)
        after_bots = cpu_seconds(bot_pids)
        after_idle = machine_idle()
        after_frames = {b.user_id: frames(app, f"tile-{b.user_id}") for b in bots}
        after_stats = invoke(app, "picture_stats")
        hook = app.execute_script("return window.__onstagePictures || null") or {}
        shot(app, f"bench-{kind}")

        cpu = {}
        for pid, (name, secs) in after_cpu.items():
            if pid in before_cpu:
                label = "app" if pid == app_pid else name
                cpu[label] = round(cpu.get(label, 0) + 100 * (secs - before_cpu[pid][1]) / elapsed, 1)
        sent = after_stats["sent"] - before_stats["sent"]
        result = {
            "kind": kind,
            "tiles": TILES,
            "bots_nice": BOTS_NICE,
            "seconds": round(elapsed, 1),
            "cpu_percent": cpu,
            # The publishing bots run on this machine too (four H.264 encoders at 4 tiles).
            "publishers_cpu_percent": round(
                sum(100 * (after_bots[p][1] - before_bots[p][1]) for p in after_bots if p in before_bots) / elapsed, 1
            ),
            "machine_idle_percent": round(
                100 * (after_idle[0] - before_idle[0]) / max(1, after_idle[1] - before_idle[1]), 1
            ),
            "sent_per_s": round(sent / elapsed, 1),
            "dropped_busy_per_s": round((after_stats["dropped"] - before_stats["dropped"]) / elapsed, 1),
            "received_per_s": round(hook.get("count", 0) / elapsed, 1),
            "drawn_fps_per_tile": [round((after_frames[u] - before_frames[u]) / elapsed, 1) for u in after_frames],
            "mbytes_per_s": round((after_stats["bytes"] - before_stats["bytes"]) / elapsed / 1e6, 1),
            "convert_ms_per_picture": round((after_stats["convert_ms"] - before_stats["convert_ms"]) / max(sent, 1), 2),
            "received_ms_p50_p95": [pct(hook.get("received", []), 0.5), pct(hook.get("received", []), 0.95)],
            "handled_ms_p50_p95": [pct(hook.get("handled", []), 0.5), pct(hook.get("handled", []), 0.95)],
        }
        log("bench", json.dumps(result))
        with open(os.path.join(OUT, f"bench-{kind}.json"), "w") as f:
            json.dump(result, f, indent=1)
    finally:
        for bot in bots:
            bot.stop()
        app.quit()
