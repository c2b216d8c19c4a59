"""The dashboard (`sotto top`) driven in tmux against the lab.

A private tmux server per test (`tmux -L NAME -f /dev/null`), keys with
`send-keys`, the screen with `capture-pane -p`, polled every 50 ms with a bound
(see ../shared/notes/tui.md).  Only the tmux server a test created is killed.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest

from harness import MUTE, ROOT_HINTS, dig_query, labmod, port_taken, require, retry_on_taken_port, scaled, sotto_path

DOT = "127.53.12.1"
BADCERT = "127.53.13.1"
REFUSED = "127.53.14.1"
SILENT = "127.53.15.1"
MIXED_PLAIN = "127.53.16.2"
DOQ = "127.53.17.1"
PROMPT = "TUITEST$ "


def parent(pid: int) -> int | None:
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
    except (OSError, ValueError, IndexError):
        return None


def descendants(pid: int) -> list[int]:
    """Every process below pid, from /proc."""
    children: dict[int, list[int]] = {}
    for d in Path("/proc").iterdir():
        if d.name.isdigit() and (ppid := parent(int(d.name))) is not None:
            children.setdefault(ppid, []).append(int(d.name))
    out, todo = [], [pid]
    while todo:
        kids = children.get(todo.pop(), [])
        out += kids
        todo += kids
    return out


class Tmux:
    def __init__(self, name: str):
        self.name = name

    def run(self, *args: str, check: bool = True) -> str:
        r = subprocess.run(["tmux", "-L", self.name, *args], capture_output=True, text=True, timeout=10)
        if check and r.returncode != 0:
            raise AssertionError(f"tmux {' '.join(args)} failed: {r.stderr}")
        return r.stdout

    def pane_processes(self) -> list[int]:
        """The shells in this server's panes and every process below them (the dashboard)."""
        out = self.run("list-panes", "-a", "-F", "#{pane_pid}", check=False)
        shells = [int(x) for x in out.split() if x.isdigit()]
        return [p for shell in shells for p in (shell, *descendants(shell))]

    def kill(self, timeout: float = 10.0) -> list[int]:
        """Kills this test's tmux server, as a closed terminal would, and removes its socket. The
        processes that ran in its panes get `timeout` seconds to exit on the hangup; any left then
        are SIGKILLed (with their children), so none outlives the test holding a port or a core.
        Returns the pids that had to be killed."""
        procs = self.pane_processes()
        self.run("kill-server", check=False)
        sock = f"/tmp/tmux-{os.getuid()}/{self.name}"
        if os.path.exists(sock):
            os.unlink(sock)
        deadline = time.monotonic() + scaled(timeout)
        while any(labmod.pid_alive(p) for p in procs) and time.monotonic() < deadline:
            time.sleep(0.05)
        survivors = [p for p in procs if labmod.pid_alive(p)]
        for p in [q for s in survivors for q in (s, *descendants(s))]:
            try:
                os.kill(p, signal.SIGKILL)
            except ProcessLookupError:
                pass
        return survivors

    def keys(self, *keys: str) -> None:
        self.run("send-keys", "-t", "t", *keys)

    def type(self, text: str) -> None:
        self.run("send-keys", "-t", "t", "-l", text)

    def screen(self, colors: bool = False) -> str:
        return self.run("capture-pane", "-t", "t", "-p", *(["-e"] if colors else []))

    def wait(self, predicate, what: str, timeout: float = 10.0) -> str:
        timeout = scaled(timeout)  # longer only in sanitizer runs (SOTTO_TIME_SCALE)
        deadline = time.monotonic() + timeout
        text = ""
        while time.monotonic() < deadline:
            text = self.screen()
            if predicate(text):
                return text
            time.sleep(0.05)
        raise AssertionError(f"timed out waiting for {what}; screen:\n{text}")

    def wait_for(self, needle: str, timeout: float = 10.0) -> str:
        return self.wait(lambda s: needle in s, repr(needle), timeout)


def row(screen: str, address: str) -> str:
    for line in screen.splitlines():
        if re.match(rf"\s*{re.escape(address)}\s", line):
            return line
    return ""


@pytest.fixture
def tmux_bin():
    require(shutil.which("tmux") is not None, "tmux not installed (apt-get install tmux)")


@pytest.fixture
def dash(lab, sotto, tmux_bin, tmp_path):
    """A shell in a private tmux server running `sotto top` against the lab."""
    name = f"sotto-tui-{os.getpid()}-{time.monotonic_ns()}"
    t = Tmux(name)
    try:
        yield from _start_dash(t, lab, tmp_path)
    finally:
        t.kill()


def _start_dash(t, lab, tmp_path, *extra: str):
    t.run("-f", "/dev/null", "new-session", "-d", "-s", "t", "-x", "120", "-y", "40",
          "-e", "LANG=C.UTF-8", "bash --norc --noprofile")
    t.wait(lambda s: s.strip().endswith(("$", "#")), "a shell prompt")
    t.type(f"PS1='{PROMPT}'")
    t.keys("Enter")
    t.wait_for(PROMPT)

    def launch(port: int):
        """`sotto top` on port; None if it exited because the port was taken after the draw."""
        t.type("clear")
        t.keys("Enter")
        t.wait(lambda s: s.strip() == PROMPT.strip(), "a cleared screen")
        cmd = [str(sotto_path()), "top", "--root-hints", ROOT_HINTS, "--allow-loopback",
               "--listen", f"127.0.0.1:{port}", "--tls-ca-file", str(lab.ca_file), "--probe-timeout", "1",
               "--log-file", str(tmp_path / "top.log"), *extra]
        t.type(" ".join(shlex.quote(c) for c in cmd))
        t.keys("Enter")
        screen = t.wait(lambda s: "1 Servers" in s or "cannot listen on" in s.replace("\n", ""), "the dashboard")
        return None if port_taken(screen, "127.0.0.1", port) else port

    t.port = retry_on_taken_port(launch)
    t.wait_for("1 Servers")
    yield t


def dig(dash, name: str, qtype: str = "A"):
    return dig_query("127.0.0.1", dash.port, name, qtype)


def traffic(dash):
    for n in ("www.example.test", "www.dot.test", "www.badcert.test", "www.refused.test", "www.silent.test",
              "www.mixed.test", "nope.example.test", "www.doq.test"):
        dig(dash, n)
    time.sleep(1.6)  # probes finish (--probe-timeout 1)
    for n in ("www2.dot.test", "www2.refused.test", "www2.silent.test", "h1.mixed.test", "www2.doq.test"):
        dig(dash, n)


def header_cache_entries(screen: str) -> int:
    m = re.search(r"cache (\d+) entries", screen)
    assert m, f"no cache count in header:\n{screen}"
    return int(m.group(1))


def test_servers_panel_shows_states(dash):
    traffic(dash)
    # The wait includes the probe counters: the silent server's DoT probe times out 1 s after its
    # first query, and on a slow machine the screen may show the row (DoQ already damped by the
    # refused UDP 853) before that timeout is counted. A timeout never counted still fails here.
    screen = dash.wait(lambda s: "damped" in row(s, SILENT) and "damped" in row(s, REFUSED) and row(s, DOT)
                       and " 2/0/1/1 " in row(s, SILENT) and " 2/0/2/0 " in row(s, REFUSED),
                       "rows for the lab servers, with the silent server's probe timeout counted")
    assert re.search(r"established|good-idle", row(screen, DOT)), row(screen, DOT)
    assert "valid" in row(screen, DOT)
    assert "damped" in row(screen, REFUSED), row(screen, REFUSED)
    assert re.search(r"damped.*damped", row(screen, SILENT)), row(screen, SILENT)
    # mixed.test.: privacy-aware selection prefers ns1 (DoT) once it is known good; ns2 (Do53 only)
    # is damped if it was asked at all.
    assert "damped" in row(screen, MIXED_PLAIN) or not row(screen, MIXED_PLAIN)
    assert re.search(r"expired|wrong-", row(screen, BADCERT)), row(screen, BADCERT)
    # Probe counters s/ok/f/t over DoT and DoQ: the silent server's DoT probe timed out and its
    # closed UDP 853 refused DoQ; the refused server refused both.
    assert " 2/0/1/1 " in row(screen, SILENT), row(screen, SILENT)
    assert " 2/0/2/0 " in row(screen, REFUSED), row(screen, REFUSED)
    # dot.test.'s NSD answers QUIC on UDP 853 with plain DNS: DoQ damped there, DoT established.
    assert re.search(r"(established|good-idle).*damp", row(screen, DOT)), row(screen, DOT)
    # doq.test. speaks DoQ only: DoQ established, DoT damped, its queries counted as DoQ.
    screen = dash.wait(lambda s: re.search(r"damp.*(established|good-idle)", row(s, DOQ)), "the DoQ server's row")
    assert re.search(r"\bQ\d+", row(screen, DOQ)), row(screen, DOQ)
    assert re.search(r"servers \d+: .*established.*damped", screen)
    # Queries panel: hop transports with cleartext marked.
    dash.keys("2")
    q = dash.wait(lambda s: re.search(r"www2\.refused\.test\..*1!\s+refused\.test\. Do53", s)
                  and re.search(r"www2\.dot\.test\..*dot\.test\. DoT", s), "the queries panel")
    assert re.search(r"www2\.dot\.test\..*dot\.test\. DoT", q), q
    assert re.search(r"www2\.refused\.test\..*1!\s+refused\.test\. Do53", q), q
    # Privacy panel: meter, sparkline, recent names.
    dash.keys("3")
    # Wait for the whole panel: a capture can land while the terminal is still being redrawn.
    p = dash.wait(lambda s: "leak meter" in s and "NAME SENT IN CLEARTEXT" in s and "refused.test." in s,
                  "the privacy panel with the names sent in cleartext")
    assert "refused.test." in p and "NAME SENT IN CLEARTEXT" in p
    # Detail view with the reason for the transport.
    dash.keys("1", "/")
    dash.type(REFUSED)
    dash.keys("Enter", "Enter")
    d = dash.wait(lambda s: "next query goes" in s and "DoT damped until" in s, "the detail view")
    assert "DoT damped until" in d and "connection refused" in d
    dash.keys("Escape")
    dash.wait_for("PROBES")


def test_stale_answers_are_marked_in_the_query_list_and_the_lookup_pane(lab, sotto, tmux_bin, tmp_path):
    """Serve-stale in the dashboard: with --max-ttl 1 the records of www.mixed.test. expire at
    once; with both its servers killed the answer is the stale one, shown as `stale` in the
    CACHE column and in the lookup pane with the reason."""
    insts = [lab.instance("mixed-dot"), lab.instance("mixed-plain")]
    t = Tmux(f"sotto-tui-{os.getpid()}-stale")
    try:
        dash = next(_start_dash(t, lab, tmp_path, "--no-encryption", "--max-ttl", "1"))
        assert dig(dash, "www.mixed.test").status == "NOERROR"
        time.sleep(1.5)
        for inst in insts:
            labmod.kill_pid(lab.running()[inst.name])
        stale = dig(dash, "www.mixed.test")
        assert stale.status == "NOERROR" and "Stale Answer" in stale.raw, stale.raw
        dash.keys("2")
        q = dash.wait(lambda s: re.search(r"www\.mixed\.test\.\s+A\s+NOERROR\s+\S+\s+stale", s), "a stale row")
        assert re.search(r"www\.mixed\.test\.\s+A\s+NOERROR\s+\S+\s+miss", q), q  # the fresh answer's row
        dash.keys("l")
        dash.wait_for("lookup NAME [TYPE]")
        dash.type("www.mixed.test")
        dash.keys("Enter")
        s = dash.wait(lambda s: "stale answer, TTL 30" in s and "198.51.100.90" in s
                      and "reason:" in s, "the stale lookup with its answer and reason")
        assert "failure recheck" in s, s
    finally:
        t.kill()
        lab.restart_stopped(insts)


def test_a_server_held_as_unresponsive_shows_down_until_it_answers(lab, sotto, tmux_bin, mute, tmp_path):
    """mute.test.'s silent server (the `mute` fixture): after its timeouts its row's SRTT says
    `down` and the detail view when it is probed next; once it answers, a probe ends the hold and
    the row shows a round trip again."""
    t = Tmux(f"sotto-tui-{os.getpid()}-mute")
    try:
        dash = next(_start_dash(t, lab, tmp_path, "--resolution-deadline", "6"))
        assert dig_query("127.0.0.1", dash.port, "first.mute.test", "A", "+time=10").status == "SERVFAIL"
        screen = dash.wait(lambda s: re.search(r"\bdown\s*$|\bdown\s", row(s, MUTE)), "the silent server's row down")
        assert "mute.test." in row(screen, MUTE), row(screen, MUTE)
        dash.keys("/")
        dash.type(MUTE)
        dash.keys("Enter", "Enter")
        d = dash.wait(lambda s: "unresponsive" in s and "next probe in" in s, "the held server's detail view")
        assert re.search(r"next probe in \d", d), d
        dash.keys("Escape")
        dash.wait_for("PROBES")
        mute.answer()

        def answered():
            return dig(dash, f"r{time.monotonic_ns()}.mute.test").status == "NOERROR"
        deadline = time.monotonic() + scaled(40)
        while not answered():
            assert time.monotonic() < deadline, "no probe reached the answering server"
            time.sleep(0.3)
        # The hold ended: the row shows the server's smoothed RTT again, not `down`.
        dash.wait(lambda s: row(s, MUTE) and " down" not in row(s, MUTE), "the row without down")
    finally:
        t.kill()


def test_the_header_counts_client_queries_over_dot_and_doq(lab, sotto, tmux_bin, tmp_path):
    """With --listen-tls and --listen-quic the dashboard lists both listeners and counts, in its
    header, the client queries that came over each (dig +tls, dnspython's DoQ client)."""
    import dns.message
    import dns.query

    tls_port, quic_port = labmod.free_port("127.0.0.1"), labmod.free_port("127.0.0.1")
    t = Tmux(f"sotto-tui-{os.getpid()}-encrypted-clients")
    try:
        dash = next(_start_dash(t, lab, tmp_path, "--listen-tls", f"127.0.0.1:{tls_port}",
                                "--listen-quic", f"127.0.0.1:{quic_port}"))
        dash.wait_for(f"doq 127.0.0.1:{quic_port}")
        assert "queries 0 (0.0/s; DoT 0, DoQ 0)" in dash.screen()
        assert dig_query("127.0.0.1", tls_port, "www.example.test.", "A", "+tls").status == "NOERROR"
        for name in ("www.example.test.", "nope.example.test."):
            query = dns.message.make_query(name, "A")
            dns.query.quic(query, "127.0.0.1", port=quic_port, timeout=scaled(10), verify=False)
        screen = dash.wait(lambda s: "; DoT 1, DoQ 2)" in s, "DoT 1, DoQ 2 in the header")
        assert re.search(r"queries 3 \([0-9.]+/s; DoT 1, DoQ 2\)", screen), screen
        assert f"dot 127.0.0.1:{tls_port}" in screen, screen
    finally:
        t.kill()


def test_lookup_shows_answer_and_transports(dash):
    dash.keys("l")
    dash.wait_for("lookup NAME [TYPE]")
    dash.type("www.example.test")
    dash.keys("Enter")
    s = dash.wait(lambda s: "ANSWER" in s and "192.0.2.10" in s and "over the network" in s
                  and re.search(r"example\.test\.\s+127\.53\.3\.1\s+(DoT|Do53)\s+answer", s), "the lookup pane")
    assert "NOERROR" in s and "over the network" in s
    assert re.search(r"path\s+\. Do53 > .*example\.test\. (DoT|Do53)", s), s
    assert re.search(r"example\.test\.\s+127\.53\.3\.1\s+(DoT|Do53)\s+answer", s), s


def test_flush_empties_cache_and_next_lookup_goes_out(dash):
    traffic(dash)
    s = dash.wait(lambda s: header_cache_entries(s) > 0, "a non-empty cache")
    dash.keys("f")
    dash.wait_for("(y/n)")
    dash.keys("n")
    dash.wait_for("flush cancelled")
    assert header_cache_entries(dash.screen()) > 0
    dash.keys("f")
    dash.wait_for("(y/n)")
    dash.keys("y")
    s = dash.wait_for("cache flushed:")
    assert re.search(r"cache flushed: \d+ entries", s)
    dash.wait(lambda s: header_cache_entries(s) == 0, "cache 0 entries")
    dash.keys("l")
    dash.type("www.example.test")
    dash.keys("Enter")
    s = dash.wait_for("192.0.2.10")
    assert "over the network" in s and "from the cache" not in s
    # F flushes a name and below; n flushes negatives.
    dash.keys("F")
    dash.wait_for("flush name and everything below")
    dash.type("example.test")
    dash.keys("Enter")
    dash.wait(lambda s: re.search(r"flushed example\.test and below: [1-9]\d* entr", s), "F confirmation")
    dig(dash, "nope.example.test")
    dash.keys("n")
    dash.wait(lambda s: re.search(r"negative answers flushed: [1-9]\d* entr", s), "n confirmation")


def test_reprobe_and_forget_change_state(dash):
    traffic(dash)
    dash.wait(lambda s: "damped" in row(s, REFUSED) and row(s, DOT), "refused damped")
    dash.keys("/")
    dash.type(REFUSED)
    dash.keys("Enter")
    dash.wait_for("filter: 127.53.14.1")
    assert " 2/0/2/0 " in row(dash.screen(), REFUSED), row(dash.screen(), REFUSED)
    # R probes at once: no client query is sent, yet both probes run again (and are refused again).
    dash.keys("R")
    dash.wait_for("127.53.14.1: probing DoQ, DoT")
    s = dash.wait(lambda s: " 4/0/4/0 " in row(s, REFUSED) and "damped" in row(s, REFUSED), "the new probes' outcome")
    # The detail view's history shows the operator's probe and the refusals, newest first.
    dash.keys("Enter")
    d = dash.wait(lambda s: "History, newest first" in s and "operator-probe" in s, "the detail history")
    lines = [ln for ln in d.splitlines() if re.search(r"\d\d:\d\d:\d\d\s+(DoT|DoQ|-)\s", ln)]
    kinds = [re.split(r"\s+", ln.strip())[2] for ln in lines]
    assert kinds[:2] == ["handshake-failed", "handshake-failed"], d
    assert "operator-probe" in kinds and kinds.count("handshake-failed") >= 4, d
    assert any("connection refused" in ln and "damped until" in ln for ln in lines), d
    dash.keys("Escape", "Escape")
    dash.wait_for("filter cleared")
    dash.keys("/")
    dash.type(DOT)
    dash.keys("Enter")
    s = dash.wait(lambda s: re.search(r"(established|good-idle).*damp", row(s, DOT)), "dot established, DoQ damped")
    # On dot.test.'s server DoT is up (nothing to do) and DoQ was damped: R probes DoQ only.
    dash.keys("R")
    # (DoT is probed too if its idle session was closed meanwhile.)
    dash.wait(lambda s: re.search(r"127\.53\.12\.1: probing DoQ(, DoT|; DoT session already established)", s),
              "the probe confirmation")
    dash.keys("Enter")
    d = dash.wait(lambda s: re.search(r"DoT\s+established\s+.*certificate valid", s) and "operator-probe" in s,
                  "the DoT server's history")
    assert re.search(r"DoQ\s+handshake-failed", d), d
    dash.keys("Escape")
    dash.keys("x")
    dash.wait_for("encryption state forgotten")
    dash.wait(lambda s: not row(s, DOT) or "unknown" in row(s, DOT), "dot forgotten")


def test_resize_help_pause_and_quit(dash):
    dash.run("resize-window", "-t", "t", "-x", "60", "-y", "15")
    dash.wait_for("enlarge the window")
    dash.run("resize-window", "-t", "t", "-x", "100", "-y", "30")
    s = dash.wait_for("1 Servers")
    assert "enlarge" not in s
    assert max(len(l) for l in s.splitlines()) <= 100
    dash.keys("?")
    dash.wait_for("Keys")
    s = dash.wait_for("flush the whole cache")
    dash.keys("x")  # any key closes help
    dash.wait(lambda s: "flush the whole cache" not in s, "help closed")
    dash.keys("p")
    dash.wait_for("PAUSED")
    dash.keys("Space")
    dash.wait(lambda s: "PAUSED" not in s, "unpaused")
    dash.keys("Tab")
    dash.wait_for("LATENCY")
    dash.keys("BTab")
    dash.wait_for("PROBES")
    dash.keys("q")
    dash.wait_for(PROMPT)
    dash.type("echo back-$((20+22))")
    dash.keys("Enter")
    dash.wait_for("back-42")  # the terminal echoes again: restored


def test_ctrl_c_quits(dash):
    dash.keys("C-c")
    dash.wait_for(PROMPT)
    dash.type("echo rc=$?")
    dash.keys("Enter")
    dash.wait(lambda s: re.search(r"rc=\d+", s), "exit status")


def dashboard_pid(dash) -> int:
    """The `sotto top` process of this test (by its listen address and executable)."""
    out = subprocess.run(["pgrep", "-f", f"127.0.0.1:{dash.port}"], capture_output=True, text=True).stdout.split()
    exe = os.path.realpath(sotto_path())
    pids = [int(p) for p in out if os.path.exists(f"/proc/{p}/exe") and os.path.realpath(f"/proc/{p}/exe") == exe]
    assert len(pids) == 1, f"sotto top processes on port {dash.port}: {pids}"
    return pids[0]


def test_taken_port_is_reported_in_the_terminal_and_the_dashboard_starts_on_another(
        lab, sotto, tmux_bin, tmp_path, monkeypatch):
    """`sotto top` on a port another process holds ends with exit 64 and the address in the
    terminal (no half-drawn dashboard); the fixtures rely on that text to start again on a fresh
    port, as a CI neighbour taking the drawn port would need."""
    holder = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    holder.bind(("127.0.0.1", labmod.free_port("127.0.0.1")))
    taken = holder.getsockname()[1]
    real = labmod.free_port
    draws = iter([taken])
    monkeypatch.setattr(labmod, "free_port", lambda address="127.0.0.1": next(draws, None) or real(address))
    t = Tmux(f"sotto-tui-{os.getpid()}-taken")
    try:
        with holder:
            started = _start_dash(t, lab, tmp_path)
            dash = next(started)
        assert dash.port != taken
        assert dig(dash, "www.example.test").status == "NOERROR"
    finally:
        t.kill()


def test_closing_the_terminal_ends_the_dashboard(dash):
    """A dropped ssh session or a closed terminal window takes `sotto top` with it: on the hangup
    it exits within seconds and frees its port, rather than staying behind holding the port (53
    in real use) or a core."""
    pid = dashboard_pid(dash)
    dash.run("kill-server", check=False)
    deadline = time.monotonic() + scaled(10)
    while labmod.pid_alive(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    if labmod.pid_alive(pid):
        # Under LeakSanitizer the exit-time leak check ptrace-stops the process; when the closed
        # terminal orphans its process group just then, the kernel's SIGCONT to that group can
        # cancel the stop and the check waits forever (seen once in a CI ASan run, 100% CPU).
        # Sotto has exited by then (exit() called, listeners closed); the sanitizer hangs.
        try:
            m = re.search(r"TracerPid:\s+(\d+)", Path(f"/proc/{pid}/status").read_text())
        except OSError:  # it exited just now
            m = None
        tracer = int(m.group(1)) if m else 0
        in_leak_check = tracer > 0 and parent(tracer) == pid  # LSan's tracer is its child
        for q in (pid, *descendants(pid)):
            try:
                os.kill(q, signal.SIGKILL)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + 5
        while labmod.pid_alive(pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert in_leak_check or m is None, f"sotto top still running {scaled(10):.0f} s after its terminal closed"
        if in_leak_check:
            print("sotto top exited, but LeakSanitizer's exit-time check hung (killed)")
    assert labmod.port_free("127.0.0.1", dash.port), f"port {dash.port} still bound after the dashboard exited"


def test_dashboard_thread_is_named(dash):
    # top -H, perf and `make bench`'s dashboard cost (its own thread's CPU) find it by this name.
    pid = dashboard_pid(dash)
    names = []
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{tid}/comm") as f:
                names.append(f.read().strip())
        except OSError:
            continue
    assert names.count("sotto-dashboard") == 1, names
    assert "sotto-engine" in names, names


def test_plain_text_when_not_a_terminal(lab, sotto, tmp_path):
    def top(port: int):
        r = subprocess.run(
            [str(sotto_path()), "top", "--root-hints", ROOT_HINTS, "--allow-loopback", "--listen", f"127.0.0.1:{port}",
             "--count", "2", "--interval", "0.3"],
            capture_output=True, text=True, timeout=30, env={**os.environ, "TERM": "xterm"})
        return None if r.returncode == 64 and port_taken(r.stderr, "127.0.0.1", port) else r

    r = retry_on_taken_port(top)
    assert r.returncode == 0, r.stderr
    assert r.stdout.count("ADDRESS") == 2 and r.stdout.count("leak meter") == 2
    assert "\x1b" not in r.stdout


def test_attach_to_serve_control(lab, sotto, tmux_bin, free_port, tmp_path):
    """`sotto top --attach SOCKET` shows a running `serve --control` and its keys act on it."""
    sock = tmp_path / "ctl.sock"
    with sotto.serve(free_port, "--control", str(sock), "--tls-ca-file", str(lab.ca_file), "--probe-timeout", "1") as srv:
        deadline = time.monotonic() + 10
        while not sock.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        for n in ("www.dot.test", "www.refused.test", "www.example.test"):
            srv.dig(n)
        time.sleep(1.5)
        t = Tmux(f"sotto-tui-attach-{os.getpid()}")
        try:
            t.run("-f", "/dev/null", "new-session", "-d", "-s", "t", "-x", "120", "-y", "40", "-e", "LANG=C.UTF-8",
                  "-e", "NO_COLOR=1",
                  f"{shlex.quote(str(sotto_path()))} top --attach {shlex.quote(str(sock))}; sleep 30")
            s = t.wait(lambda s: "damped" in row(s, REFUSED) and row(s, DOT), "servers of the attached resolver")
            assert "attached /" in s
            assert re.search(r"established|good-idle", row(s, DOT))
            assert header_cache_entries(s) > 0
            # NO_COLOR: attributes only, no color escapes.
            colored = t.screen(colors=True)
            assert not re.search(r"\x1b\[[0-9;]*(3[0-7]|4[0-7]|38;|48;)[0-9;]*m", colored), colored[:400]
            t.keys("f")
            t.wait_for("(y/n)")
            t.keys("y")
            t.wait_for("cache flushed:")
            t.wait(lambda s: header_cache_entries(s) == 0, "cache 0 entries")
            t.keys("l")
            t.type("www.example.test")
            t.keys("Enter")
            t.wait_for("192.0.2.10")
            t.keys("q")
            t.wait(lambda s: "1 Servers" not in s, "the dashboard to exit")
        finally:
            t.kill()
        assert srv.proc.poll() is None, "the attached resolver must keep running"
