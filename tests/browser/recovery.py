"""Chromium's own WebRTC (libwebrtc) against the SFU on an impaired network: packets lost
(NACK and RTX), a blackout (a keyframe request, PLI), a rate limit (congestion feedback,
TWCC), UDP blocked (ICE-TCP) and host candidates hidden behind mDNS names. Each scenario
measures what the browser itself counts (getStats) and what a bot decodes, and fails when
the recovery it is about does not happen. Run by scripts/e2e-browser.sh.

    target/e2e-venv/bin/python tests/browser/recovery.py [loss-publish|loss-view|blackout|congestion|tcp-only|mdns ...]

The server runs on the lab's second host (tests/app/harness.py LanLab) and so do the bots:
the only traffic crossing the veth between the two hosts is the browser's, so a rule on
the browser's address (iptables inside the lab's namespace, a tbf on the lab's veth)
impairs the browser's path and nothing else. Every rule lives in the namespace or on the
veth the lab made, and goes with them when the lab closes. With RECOVERY_FIGURES=<file>
each scenario appends its figures there as one JSON line (BENCHMARKS.md).
"""

import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "app"))
from harness import OUT, Bot, LanLab, Server, log, run_scenarios  # noqa: E402

from browser import Browser, PageServer  # noqa: E402

LOSS = 0.05  # the random loss of the loss scenarios
WINDOW = 6.0  # seconds each loss scenario measures over
BLACKOUT = 1.5  # seconds nothing reaches the browser (within the SFU's 3 s RTX history)
LONG_BLACKOUT = 4.0  # seconds nothing reaches the browser (beyond it)
LIMIT_KBIT = 150  # the congestion scenario's rate limit


class Stage:
    """A TLS server on the lab's second host with one meeting, the page server, and what
    the scenario starts (bots on the server's host, browsers here), all ended by `close`."""

    def __init__(self):
        os.makedirs(OUT, exist_ok=True)
        self.lab = LanLab()
        self.data = tempfile.mkdtemp(prefix="onstage-recovery-")
        self.parts = []
        self.pages = None
        try:
            self.server = Server(self.data, tls=True, listen=f"{self.lab.guest_ip}:0", netns=self.lab.ns)
            self.meeting = self.server.admin("meeting", "create", "--title", "Recovery")["id"]
            self.pages = PageServer()
        except Exception:
            self.close()
            raise

    def token(self, name, preset):
        return self.server.admin("participant", "add", "--meeting", self.meeting, "--name", name,
                                 "--preset", preset)["token"]

    def bot(self, name, preset, media="synthetic"):
        bot = Bot(self.server.url, self.token(name, preset), media=media,
                  extra=["--fingerprint", self.server.fingerprint], netns=self.lab.ns)
        self.parts.append(bot)
        return bot

    def browser(self, simulcast=False, **options):
        """A browser on the test page. Its camera goes out as one encoding unless
        `simulcast`: each scenario here is about one stream's recovery, measured on its one
        outbound-rtp report (the simulcast layers are e2e.py's `simulcast`)."""
        params = dict(options.pop("params", None) or {})
        if not simulcast:
            params["simulcast"] = "0"
        browser = Browser(self.pages, self.server.url, params=params, **options)
        self.parts.append(browser)
        return browser

    def rule(self, chain, *match):
        """Adds an iptables DROP rule in the lab's namespace; returns its name (a comment),
        for `dropped` and `unrule`."""
        name = f"r{len(self.parts)}-{time.monotonic_ns() % 10**9}"
        self._ns("iptables", "-A", chain, *match, "-m", "comment", "--comment", name, "-j", "DROP")
        return chain, name, match

    def unrule(self, rule):
        chain, name, match = rule
        self._ns("iptables", "-D", chain, *match, "-m", "comment", "--comment", name, "-j", "DROP")

    def dropped(self, rule):
        """How many packets the rule dropped."""
        chain, name, _ = rule
        listed = self._ns("iptables", "-v", "-x", "-n", "-L", chain)
        for line in listed.splitlines():
            if f"/* {name} */" in line:
                return int(line.split()[0])
        raise RuntimeError(f"rule {name} not found")

    def _ns(self, *argv):
        out = self.lab.run(*argv)
        if out.returncode != 0:
            raise RuntimeError(f"{' '.join(argv)}: {out.stderr.strip()}")
        return out.stdout

    def close(self):
        for part in reversed(self.parts):
            try:
                (part.quit if isinstance(part, Browser) else part.stop)()
            except Exception as e:  # the rest is still cleaned up
                log("cleanup:", e)
        if self.pages:
            self.pages.stop()
        if getattr(self, "server", None):
            self.server.stop()
        self.lab.close()
        shutil.rmtree(self.data, ignore_errors=True)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class Peer:
    """One of the browser's peer connections, read through getStats: the publisher (`user`
    None) or the subscription to `user`."""

    def __init__(self, browser, user=None):
        self.browser, self.user = browser, user

    def read(self):
        got = self.browser.run("return t.rawStats(args[0])", self.user)
        if got is None:
            raise RuntimeError(f"no peer connection for {self.user or 'the publisher'}")
        return got

    def rtp(self, kind="video", snap=None):
        """The video (or audio) inbound-rtp or outbound-rtp report, {} before there is one."""
        snap = snap or self.read()
        want = "outbound-rtp" if self.user is None else "inbound-rtp"
        return next((r for r in snap["reports"] if r["type"] == want and r.get("kind") == kind), {})

    def pair(self, snap=None):
        """The selected candidate pair, with its local and remote candidates, or None."""
        snap = snap or self.read()
        by_id = {r["id"]: r for r in snap["reports"]}
        transport = next((r for r in snap["reports"] if r["type"] == "transport"), {})
        pair = by_id.get(transport.get("selectedCandidatePairId"))
        if not pair:
            return None
        return pair, by_id.get(pair["localCandidateId"], {}), by_id.get(pair["remoteCandidateId"], {})

    def port(self):
        """The browser's UDP port on the selected pair, once there is one."""
        def check():
            p = self.pair()
            return p and p[1].get("protocol") == "udp" and p
        _, local, remote = self.browser.until(check, "a selected candidate pair")
        log("selected pair", local.get("address"), local.get("port"), "->", remote.get("address"),
            remote.get("port"), remote.get("protocol"))
        return local["port"]


def rate(before, after, key, seconds):
    return (after.get(key, 0) - before.get(key, 0)) / seconds


def figures(name, **values):
    log("figures", name, values)
    path = os.environ.get("RECOVERY_FIGURES")
    if path:
        with open(path, "a") as f:
            f.write(json.dumps({"scenario": name, "at": time.time(), **values}) + "\n")


def measure(seconds, *samplers):
    """Each sampler read at the start and at the end of a `seconds`-long window: the pairs
    and the window's real length."""
    t0 = time.monotonic()
    before = [s() for s in samplers]
    time.sleep(seconds)  # the measuring window itself, not a wait for an event
    after = [s() for s in samplers]
    return list(zip(before, after)), time.monotonic() - t0


def first_frame(browser, token, from_user):
    """Joins with `token`, then (in the page, every 5 ms) until the first picture from
    `from_user` is decoded: the time in ms. Stays in the meeting."""
    return browser.run("""
        const t0 = performance.now();
        await t.join(args[0]);
        const deadline = t0 + args[2] * 1000;
        for (;;) {
          const pc = t.media.subscriptions.get(args[1]);
          let decoded = 0;
          if (pc) (await pc.getStats()).forEach((s) => {
            if (s.type === 'inbound-rtp' && s.kind === 'video') decoded = s.framesDecoded ?? 0;
          });
          if (decoded > 0) return performance.now() - t0;
          if (performance.now() > deadline) throw new Error('no picture within the deadline');
          await new Promise((r) => setTimeout(r, 5));
        }""", token, from_user, 30)


def decoding(browser, peer, more=30, what="decoded frames"):
    """Until the subscription has decoded `more` frames beyond now."""
    start = peer.rtp().get("framesDecoded", 0)
    browser.until(lambda: peer.rtp().get("framesDecoded", 0) >= start + more, what)


def viewing(stage):
    """A bot speaker on stage and a browser viewer decoding it: (bot, browser, its
    subscription)."""
    speaker = stage.bot("Sam Speaker", "speaker")
    speaker.call("stage.join")
    browser = stage.browser()
    browser.run("return t.join(args[0])", stage.token("Wes Web", "viewer"))
    peer = Peer(browser, speaker.user_id)
    browser.until(lambda: browser.run("return t.media.subscriptions.has(args[0])", speaker.user_id),
                  "the subscription")
    decoding(browser, peer, 10, "the first pictures")
    return speaker, browser, peer


def loss_publish_scenario():
    """The browser speaks, a bot views; 5% of the browser's packets are lost on the way to
    the server. The SFU asks for them again (NACK, counted by the browser) and the browser
    resends them (RTX); the bot decodes about the frames the browser sent, with no decode
    error."""
    with Stage() as stage:
        viewer = stage.bot("Vic Viewer", "viewer")
        browser = stage.browser()
        me = browser.run("return t.join(args[0])", stage.token("Wes Web", "speaker"))
        assert browser.run("return t.meeting.stage.join()") == "ON_STAGE"

        def bot_side():
            return viewer.call("media.stats")["received"].get(me, {})
        browser.until(lambda: bot_side().get("video_frames", 0) >= 30, "the bot to decode the browser")
        pub = Peer(browser)
        port = pub.port()
        rule = stage.rule("INPUT", "-i", "eth0", "-p", "udp", "--sport", str(port),
                          "-m", "statistic", "--mode", "random", "--probability", str(LOSS))
        (sent, got), dt = measure(WINDOW, pub.rtp, bot_side)
        lost = stage.dropped(rule)
        nacks = rate(*sent, "nackCount", dt)
        rtx = rate(*sent, "retransmittedPacketsSent", dt)
        sent_fps = rate(*sent, "framesSent", dt)
        bot_fps = rate(*got, "video_frames", dt)
        figures("loss-publish", dropped_per_s=lost / dt, nack_per_s=nacks, rtx_per_s=rtx,
                sent_fps=sent_fps, bot_fps=bot_fps, packets_per_s=rate(*sent, "packetsSent", dt),
                decode_errors=got[1].get("decode_errors", 0) - got[0].get("decode_errors", 0))
        assert lost > 0, "the rule dropped nothing"
        # The SFU's NACKs come batched, one for several losses: at the browser's ~25 video
        # packets a second that is one every 3-6 s, so one may miss the window. Awaited
        # (the loss goes on) rather than counted.
        if nacks == 0:
            browser.until(lambda: pub.rtp().get("nackCount", 0) > sent[0].get("nackCount", 0),
                          "a NACK to reach the browser")
        assert rtx > 0 or pub.rtp().get("retransmittedPacketsSent", 0) > \
            sent[0].get("retransmittedPacketsSent", 0), f"the browser retransmitted nothing: {sent}"
        assert bot_fps >= 0.85 * sent_fps, f"the bot decoded {bot_fps:.1f} fps of {sent_fps:.1f} sent"
        assert got[1].get("decode_errors", 0) == got[0].get("decode_errors", 0), got


def loss_view_scenario():
    """A bot speaks, the browser views; 5% of the packets the server sends the browser are
    lost. The browser asks for them (its NACK count), the SFU resends them (the browser
    counts the retransmissions it got) and the picture goes on at about the rate it had
    before the loss."""
    with Stage() as stage:
        _, browser, peer = viewing(stage)
        port = peer.port()
        (base,), dt0 = measure(3.0, peer.rtp)
        base_fps = rate(*base, "framesDecoded", dt0)
        rule = stage.rule("OUTPUT", "-o", "eth0", "-p", "udp", "--dport", str(port),
                          "-m", "statistic", "--mode", "random", "--probability", str(LOSS))
        (got,), dt = measure(WINDOW, peer.rtp)
        lost = stage.dropped(rule)
        fps = rate(*got, "framesDecoded", dt)
        nacks = rate(*got, "nackCount", dt)
        rtx = rate(*got, "retransmittedPacketsReceived", dt)
        figures("loss-view", dropped_per_s=lost / dt, nack_per_s=nacks, rtx_per_s=rtx, fps=fps,
                base_fps=base_fps, packets_per_s=rate(*got, "packetsReceived", dt),
                lost_net=got[1].get("packetsLost", 0) - got[0].get("packetsLost", 0),
                freezes=got[1].get("freezeCount", 0) - got[0].get("freezeCount", 0),
                plis=got[1].get("pliCount", 0) - got[0].get("pliCount", 0))
        assert lost > 0, "the rule dropped nothing"
        assert nacks > 0, f"the browser sent no NACK: {got}"
        assert fps >= 0.85 * base_fps, f"{fps:.1f} fps under loss, {base_fps:.1f} before"
        # Chromium counts the retransmissions it received (RTX); the SFU answers NACKs with them.
        assert "retransmittedPacketsReceived" in got[1], got[1]
        assert rtx > 0, f"no retransmission reached the browser: {got}"


def blackout_scenario():
    """Nothing reaches the browser viewer for a while, then everything again, twice. A short
    blackout (1.5 s) the SFU still has every packet of (its retransmission history is 3 s):
    the browser asks for them (NACK), gets them (RTX) and the picture resumes. A long one
    (4 s): what was lost is gone, the browser asks for a keyframe (its PLI count rises) and
    the picture resumes from it."""
    with Stage() as stage:
        _, browser, peer = viewing(stage)
        port = peer.port()
        out = {}
        for name, seconds in (("short", BLACKOUT), ("long", LONG_BLACKOUT)):
            before = peer.rtp()
            rule = stage.rule("OUTPUT", "-o", "eth0", "-p", "udp", "--dport", str(port))
            time.sleep(seconds)  # the blackout's length: what is measured is after it
            stage.unrule(rule)
            restored = time.monotonic()
            frozen = peer.rtp()
            browser.until(lambda: peer.rtp().get("framesDecoded", 0) >= frozen.get("framesDecoded", 0) + 5,
                          f"the picture to resume after the {name} blackout", timeout=10)
            resumed = time.monotonic() - restored
            if name == "long":
                browser.until(lambda: peer.rtp().get("pliCount", 0) > before.get("pliCount", 0),
                              "a keyframe request from the browser", timeout=10)
            after = peer.rtp()
            out[name] = {"blackout_s": seconds, "resume_ms": resumed * 1000,
                         **{k: after.get(f, 0) - before.get(f, 0) for k, f in (
                             ("plis", "pliCount"), ("nacks", "nackCount"), ("rtx", "retransmittedPacketsReceived"),
                             ("keyframes", "keyFramesDecoded"), ("lost", "packetsLost"))}}
            decoding(browser, peer, 15, f"the picture to go on after the {name} blackout")
        figures("blackout", **out)
        assert out["short"]["nacks"] > 0 and out["short"]["rtx"] > 0, out["short"]
        assert out["long"]["keyframes"] > 0, "no keyframe decoded after the long blackout"


def congestion_scenario():
    """The browser speaks through a bottleneck narrower than what it sends (a tbf on its
    way to the server): from the SFU's transport-wide congestion feedback its bandwidth
    estimate falls to about the limit and what it sends below it, while a bot still decodes
    it. (Chromium's fake camera at 640x360 needs only ~200 kbit/s, hence a 150 kbit/s limit.)"""
    with Stage() as stage:
        viewer = stage.bot("Vic Viewer", "viewer")
        browser = stage.browser()
        me = browser.run("return t.join(args[0])", stage.token("Wes Web", "speaker"))
        assert browser.run("return t.meeting.stage.join()") == "ON_STAGE"
        pub = Peer(browser)

        def bot_frames():
            return viewer.call("media.stats")["received"].get(me, {}).get("video_frames", 0)
        browser.until(lambda: bot_frames() >= 30, "the bot to decode the browser")
        answer = browser.run("return t.media.publisher.remoteDescription.sdp")
        assert "transport-cc" in answer, "the SFU's answer offers no transport-wide congestion feedback"

        def sample():
            snap = pub.read()
            pair = pub.pair(snap)
            out = [r for r in snap["reports"] if r["type"] == "outbound-rtp"]
            return {"bytes": sum(r.get("bytesSent", 0) + r.get("headerBytesSent", 0) for r in out),
                    "estimate": (pair[0].get("availableOutgoingBitrate", 0) if pair else 0) / 1000,
                    "t": time.monotonic()}

        def kbit(a, b):
            return (b["bytes"] - a["bytes"]) * 8 / (b["t"] - a["t"]) / 1000

        def window(seconds):
            """Samples every 0.5 s over `seconds`: the send rate over it, the median estimate."""
            samples = [sample()]
            while samples[-1]["t"] - samples[0]["t"] < seconds:
                time.sleep(0.5)  # the sampling period of a measuring window
                samples.append(sample())
            return kbit(samples[0], samples[-1]), statistics.median(s["estimate"] for s in samples)

        # Unlimited first: it sends more than the limit will let through (else the limit
        # tests nothing) and estimates far more.
        free_kbit, free_estimate = window(2.0)
        assert free_kbit > 1.2 * LIMIT_KBIT and free_estimate > 3 * LIMIT_KBIT, (free_kbit, free_estimate)
        veth = stage.lab.veth
        subprocess.run(["tc", "qdisc", "add", "dev", veth, "root", "tbf", "rate", f"{LIMIT_KBIT}kbit",
                        "burst", "16kb", "latency", "100ms"], check=True, capture_output=True)
        limited = time.monotonic()
        try:
            browser.until(lambda: sample()["estimate"] < LIMIT_KBIT, "the estimate to fall", timeout=15)
            adapt_s = time.monotonic() - limited
            frames0, t0 = bot_frames(), time.monotonic()
            held_kbit, held_estimate = window(4.0)
            bot_fps = (bot_frames() - frames0) / (time.monotonic() - t0)
            qdisc = subprocess.run(["tc", "-s", "qdisc", "show", "dev", veth], capture_output=True,
                                   text=True).stdout
            drops = int(re.search(r"dropped (\d+)", qdisc).group(1))
        finally:
            subprocess.run(["tc", "qdisc", "del", "dev", veth, "root"], capture_output=True)
        figures("congestion", limit_kbit=LIMIT_KBIT, free_kbit=free_kbit, free_estimate_kbit=free_estimate,
                adapt_s=adapt_s, limited_kbit=held_kbit, limited_estimate_kbit=held_estimate,
                tbf_drops=drops, bot_fps=bot_fps)
        assert held_kbit < LIMIT_KBIT, f"sending {held_kbit:.0f} kbit/s through a {LIMIT_KBIT} kbit/s limit"
        assert held_estimate < 1.3 * LIMIT_KBIT, f"estimate {held_estimate:.0f} kbit/s"
        assert bot_fps > 5, f"the bot decoded {bot_fps:.1f} fps under the limit"


def tcp_only_scenario():
    """No UDP between the browser and the server: ICE settles on the SFU's passive TCP
    candidate and the picture comes, and keeps coming."""
    with Stage() as stage:
        speaker = stage.bot("Sam Speaker", "speaker")
        speaker.call("stage.join")
        stage.rule("INPUT", "-i", "eth0", "-p", "udp")
        stage.rule("OUTPUT", "-o", "eth0", "-p", "udp")
        browser = stage.browser()
        ms = first_frame(browser, stage.token("Wes Web", "viewer"), speaker.user_id)
        peer = Peer(browser, speaker.user_id)
        _, local, remote = peer.pair()
        decoding(browser, peer, 30, "the picture to go on over TCP")
        figures("tcp-only", first_frame_ms=ms, local=f"{local.get('protocol')} {local.get('tcpType')}",
                remote=f"{remote.get('protocol')} {remote.get('candidateType')}")
        assert local.get("protocol") == "tcp" and remote.get("protocol") == "tcp", (local, remote)


def mdns_scenario():
    """A browser without camera permission hides its addresses behind mDNS names (.local):
    its offer (candidates gathered first, `candidateWaitMs`) names no address, the SFU
    learns it from the browser's connectivity checks (a peer-reflexive candidate), and the
    picture comes."""
    with Stage() as stage:
        speaker = stage.bot("Sam Speaker", "speaker")
        speaker.call("stage.join")
        browser = stage.browser(deny_devices=True, params={"candidateWaitMs": 1500})
        ms = first_frame(browser, stage.token("Wes Web", "viewer"), speaker.user_id)
        peer = Peer(browser, speaker.user_id)
        snap = peer.read()
        hosts = [line.split()[4] for line in snap["offer"].splitlines()
                 if line.startswith("a=candidate:") and " typ host" in line]
        _, local, remote = peer.pair(snap)
        decoding(browser, peer, 30, "the picture to go on")
        figures("mdns", first_frame_ms=ms, offered=hosts, remote=remote.get("candidateType"))
        assert hosts, "the offer carries no host candidate"
        assert all(h.endswith(".local") for h in hosts), f"addresses in the offer: {hosts}"


SCENARIOS = {"loss-publish": loss_publish_scenario, "loss-view": loss_view_scenario,
             "blackout": blackout_scenario, "congestion": congestion_scenario,
             "tcp-only": tcp_only_scenario, "mdns": mdns_scenario}


if __name__ == "__main__":
    sys.exit(run_scenarios(SCENARIOS, sys.argv[1:], list(SCENARIOS), prefix="browser recovery "))
