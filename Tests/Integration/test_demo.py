"""`sotto demo`: the built-in loopback hierarchy served by Sotto's own responders, with
synthetic load, in a real terminal (tmux) and in plain-text mode. Needs no root, no NSD
and no lab: everything runs inside the one `sotto demo` process on 127.77.0.0/16.

Independent clients check the responders too: dig (Do53), and dnspython's DoT and DoQ
(aioquic) clients against the demo's DoT and DoQ servers.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import signal
import subprocess
import threading
import time

import pytest

from harness import require, scaled, sotto_path
from test_tui import PROMPT, Tmux, row

DOT = "127.77.3.1"
DOQ = "127.77.4.1"
PLAIN = "127.77.2.1"
SILENT = "127.77.6.1"
EXPIRED = "127.77.7.1"
BOTH = "127.77.5.1"


def demo_sockets(pid: int | None = None) -> list[str]:
    """Listening sockets on the demo's addresses (or of `pid`), from ss."""
    out = subprocess.run(["ss", "-H", "-lnptu"], capture_output=True, text=True).stdout
    return [ln for ln in out.splitlines() if "127.77." in ln or (pid is not None and f"pid={pid}," in ln)]


def encrypted_share(screen: str) -> int:
    m = re.search(r"encrypted (\d+)%", screen)
    assert m, f"no encrypted share in the header:\n{screen}"
    return int(m.group(1))


@pytest.fixture
def demo_tmux():
    require(shutil.which("tmux") is not None, "tmux not installed (apt-get install tmux)")
    require(shutil.which("ss") is not None, "ss not installed (apt-get install iproute2)")
    require(not demo_sockets(), "127.77.x.y already in use by another demo")
    t = Tmux(f"sotto-demo-{os.getpid()}")
    try:
        t.run("-f", "/dev/null", "new-session", "-d", "-s", "t", "-x", "140", "-y", "45",
              "-e", "LANG=C.UTF-8", "bash --norc --noprofile")
        t.wait(lambda s: s.strip().endswith(("$", "#")), "a shell prompt")
        t.type(f"PS1='{PROMPT}'")
        t.keys("Enter")
        t.wait_for(PROMPT)
        yield t
    finally:
        t.kill()


def test_demo_dashboard_fills_within_seconds_and_quits_cleanly(demo_tmux):
    t = demo_tmux
    t.type(shlex.join([str(sotto_path()), "demo", "--rate", "10"]))
    t.keys("Enter")
    started = time.monotonic()
    # Within 10 seconds (issue 6): servers in every state, DoT and DoQ in use, failed probes.
    s = t.wait(lambda s: re.search(r"established", row(s, DOT)) and re.search(r"established", row(s, DOQ))
               and "damped" in row(s, PLAIN) and " 2/0/0/2 " in row(s, SILENT) and "expired" in row(s, EXPIRED),
               "every kind of demo server in the servers panel", timeout=10)
    assert time.monotonic() - started < scaled(10.5)  # 10.5 s except in sanitizer runs
    assert re.search(r"established.*damped", row(s, DOT)), row(s, DOT)        # DoT up, DoQ refused
    assert re.search(r"damped.*established", row(s, DOQ)), row(s, DOQ)        # DoT refused, DoQ up
    assert row(s, BOTH).count("established") == 2, row(s, BOTH)
    assert " 2/0/2/0 " in row(s, PLAIN), row(s, PLAIN)                        # both probes refused
    first = encrypted_share(s)
    assert first > 0, s
    # Queries panel: hops over DoT and DoQ, cleartext hops marked.
    t.keys("2")
    # dot.test's own server over DoT: its first queries go out in cleartext while it is probed,
    # so wait for a later one (the wait once matched on other DoT hops before it came).
    t.wait(lambda s: re.search(r"dot\.test\. DoT", s) and re.search(r"\. DoQ\b", s) and "1!" in s,
           "DoT to dot.test., DoQ and cleartext hops in the queries panel")
    # The reason of a failed probe, in the detail view.
    t.keys("1", "/")
    t.type(PLAIN)
    t.keys("Enter", "Enter")
    d = t.wait(lambda s: "History, newest first" in s and "connection refused" in s, "the refused server's detail")
    assert "handshake-failed" in d
    t.keys("Escape", "Escape")
    # The DoT server's keepalive (the demo's DoT responders advertise 30 s, RFC 7828), in its detail.
    t.keys("1", "/")
    t.type(DOT)
    t.keys("Enter", "Enter")
    d = t.wait(lambda s: f"Server {DOT}" in s and "keepalive" in s, "the DoT server's detail with its keepalive")
    assert re.search(r"keepalive\s+30\.0s \(server's, RFC 7828\)", d), d
    t.keys("Escape", "Escape")
    # The encrypted share keeps rising as the load moves to the encrypted servers.
    later = t.wait(lambda s: "encrypted" in s and encrypted_share(s) > first, "a rising encrypted share", timeout=15)
    assert encrypted_share(later) > first
    pid_line = subprocess.run(["pgrep", "-f", f"{sotto_path()} demo"], capture_output=True, text=True).stdout.split()
    assert pid_line, "the demo process is running"
    t.keys("q")
    t.wait_for(PROMPT)

    def demo_running() -> bool:
        return subprocess.run(["pgrep", "-f", f"{sotto_path()} demo"], capture_output=True).returncode == 0

    # The prompt is on the screen again as soon as the dashboard restores the terminal (endwin),
    # which is before the process has exited: wait (bounded) for the exit. Under ASan the exit
    # runs LeakSanitizer's check, seconds long (pgrep then also sees its tracer task).
    deadline = time.monotonic() + scaled(5)
    while time.monotonic() < deadline and (demo_sockets() or demo_running()):
        time.sleep(0.1)
    assert demo_sockets() == [], "nothing of the demo may be left listening"
    assert not demo_running(), "sotto demo still running after q"
    # The terminal is restored: the shell prompt is back and echoes input.
    t.type("echo restored-ok")
    t.keys("Enter")
    t.wait_for("restored-ok\n")


@pytest.fixture
def demo_plain():
    require(shutil.which("dig") is not None, "dig not installed (apt-get install dnsutils)")
    require(not demo_sockets(), "127.77.x.y already in use by another demo")
    proc = subprocess.Popen([str(sotto_path()), "demo", "--rate", "0", "--interval", "60"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline()
        m = re.search(r"resolver on 127\.0\.0\.1:(\d+).*Do53 port (\d+), DoT/DoQ port (\d+)", line)
        assert m, f"no banner: {line!r} {proc.stderr.read() if proc.poll() is not None else ''}"
        yield proc, int(m.group(1)), int(m.group(2)), int(m.group(3))
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=scaled(10))


def test_demo_responders_answer_independent_clients(demo_plain):
    proc, resolver_port, p53, p853 = demo_plain
    try:
        import dns.message
        import dns.query
        import dns.rdatatype
    except ImportError:
        require(False, "dnspython + aioquic (pip install dnspython aioquic)")
    # Do53 with dig, straight at the demo's dot.test. server (authoritative answer).
    r = subprocess.run(["dig", "+norec", "+time=2", "+tries=1", f"@{DOT}", "-p", str(p53), "www.dot.test", "A"],
                       capture_output=True, text=True)
    assert "status: NOERROR" in r.stdout and " aa" in r.stdout.split("flags:")[1].split(";")[0], r.stdout
    assert re.search(r"www\.dot\.test\.\s+\d+\s+IN\s+A\s+192\.0\.2\.\d+", r.stdout), r.stdout
    # DoT with dnspython (its own TLS stack), DoQ with dnspython over aioquic.
    q = dns.message.make_query("www.dot.test.", "A")
    a = dns.query.tls(q, DOT, port=p853, timeout=3, verify=False)
    assert a.rcode() == 0 and a.answer and a.answer[0].rdtype == dns.rdatatype.A
    q = dns.message.make_query("nope.doq.test.", "A")
    a = dns.query.quic(q, DOQ, port=p853, timeout=3, verify=False)
    assert a.rcode() == 3  # NXDOMAIN from the ngtcp2 DoQ responder
    q = dns.message.make_query("www.doq.test.", "AAAA")
    a = dns.query.quic(q, DOQ, port=p853, timeout=3, verify=False)
    assert a.answer and a.answer[0].rdtype == dns.rdatatype.AAAA
    # And the resolver in front of them.
    r = subprocess.run(["dig", "+time=3", "+tries=1", "@127.0.0.1", "-p", str(resolver_port), "alias.both.test", "A"],
                       capture_output=True, text=True)
    assert "status: NOERROR" in r.stdout and "CNAME" in r.stdout, r.stdout
    proc.send_signal(signal.SIGTERM)
    # Read through the text wrapper (it may hold the first report already), in a thread so that
    # a hang fails the test instead of blocking it.
    collected: list[str] = []
    reader = threading.Thread(target=lambda: collected.append(proc.stdout.read()), daemon=True)
    reader.start()
    reader.join(timeout=scaled(10))
    assert collected, f"sotto demo did not exit within {scaled(10):.0f} s of SIGTERM"
    out = collected[0]
    assert proc.wait(timeout=scaled(10)) == 0
    # One report at start (--interval 60), at most one more at the signal: a cancelled report loop
    # once printed reports flat out until the pipe filled and the exit hung on the stdout lock.
    reports = out.count(" Sotto  up ")
    assert 1 <= reports <= 2, f"{reports} plain reports after SIGTERM"
    assert demo_sockets() == []
