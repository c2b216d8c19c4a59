"""Helpers shared by the integration tests: prerequisites, running Sotto,
running dig, normalising resource records.  Python 3 stdlib + pytest only."""

from __future__ import annotations

import ipaddress
import json
import os
import resource
import statistics
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "Lab"))

import lab as labmod  # noqa: E402
from mute_server import HALFMUTE, MUTE, MUTE_ANSWER, MuteServer  # noqa: E402,F401

ROOT_HINTS = str(labmod.ROOT_HINTS)
CI = os.environ.get("CI", "").strip().lower() in ("1", "true", "yes")


def _env_factor(name: str) -> float:
    raw = os.environ.get(name, "").strip() or "1"
    try:
        value = float(raw)
    except ValueError:
        raise RuntimeError(f"{name} must be a number >= 1, got {raw!r}") from None
    if not value >= 1:
        raise RuntimeError(f"{name} must be a number >= 1, got {raw!r}")
    return value


# Sanitizer builds of sotto run several times slower (ASan ~2-3x, TSan ~5-15x), more so on a
# shared machine; `make integration-test-asan` / `integration-test-tsan` set SOTTO_TIME_SCALE so
# that the tests' waiting budgets (never what they assert) grow with it. Unset = 1: the normal
# run is unchanged.
TIME_SCALE = _env_factor("SOTTO_TIME_SCALE")

# Peak-memory bounds (VmHWM) are for the normal build. A sanitizer runtime adds its own memory
# (ASan: shadow pages, redzones and a quarantine of freed blocks, up to 256 MB by default; TSan:
# shadow and history of every access), so the sanitizer targets set SOTTO_MEMORY_SCALE. A leak
# in Sotto itself is still caught there by LeakSanitizer and the fd counts.
MEMORY_SCALE = _env_factor("SOTTO_MEMORY_SCALE")


def scaled(seconds: float) -> float:
    """A waiting budget in seconds, multiplied by SOTTO_TIME_SCALE (sanitizer runs)."""
    return seconds * TIME_SCALE


def require(condition: bool, what: str) -> None:
    """A missing prerequisite fails under CI=true and skips (with its reason) otherwise."""
    if condition:
        return
    if CI:
        pytest.fail(f"prerequisite missing (CI=true, not skipping): {what}", pytrace=False)
    pytest.skip(f"prerequisite missing: {what}")


def sotto_path() -> Path:
    p = Path(os.environ.get("SOTTO_BIN", ".build/debug/sotto"))
    return p if p.is_absolute() else REPO / p


# --------------------------------------------------------------------------- records

TEXT_TYPES = {"TXT", "CAA", "SPF"}


def norm_name(name: str) -> str:
    name = name.strip().lower()
    return name if name.endswith(".") else name + "."


def norm_data(rtype: str, data: str) -> str:
    rtype = rtype.upper()
    data = " ".join(str(data).split())
    if rtype == "AAAA":
        try:
            return str(ipaddress.IPv6Address(data))
        except ValueError:
            return data
    if rtype in TEXT_TYPES:
        return data
    return data.lower()


RR = tuple  # (owner, type, data)


def rr(owner: str, rtype: str, data: str) -> RR:
    return (norm_name(owner), rtype.upper(), norm_data(rtype, data))


def rrs_from_json(records: list[dict]) -> set[RR]:
    out = set()
    for r in records:
        for key in ("name", "type", "ttl", "data"):
            assert key in r, f"record without '{key}': {r}"
        out.add(rr(r["name"], r["type"], r["data"]))
    return out


def parse_dig_rrs(text: str) -> set[RR]:
    """RRs from `dig +noall +answer` style output (comments ignored)."""
    out = set()
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith(";"):
            continue
        parts = line.split(None, 4)
        if len(parts) < 5:
            continue
        owner, _ttl, _cls, rtype, data = parts
        out.add(rr(owner, rtype, data))
    return out


def fmt_rrs(rrs) -> str:
    return "\n".join(f"    {o} {t} {d}" for o, t, d in sorted(rrs)) or "    (none)"


# --------------------------------------------------------------------------- dig

@dataclass
class DigResult:
    status: str | None
    flags: set[str]
    answer: set[RR]
    authority: set[RR]
    raw: str


def dig_query(server: str, port: int, name: str, qtype: str, *opts: str, timeout: float = 30.0) -> DigResult:
    args = ["dig", "+time=5", "+tries=1", "+noall", "+comments", "+answer", "+authority",
            f"@{server}", "-p", str(port), name, qtype, *opts]
    r = subprocess.run(args, capture_output=True, text=True, timeout=scaled(timeout))
    status = labmod.dig_status(r.stdout)
    flags: set[str] = set()
    section = None
    answer, authority = [], []
    for line in r.stdout.splitlines():
        if line.startswith(";; flags:"):
            flags = set(line.split(":", 2)[1].split(";")[0].split())
        elif line.startswith(";; ANSWER SECTION"):
            section = answer
        elif line.startswith(";; AUTHORITY SECTION"):
            section = authority
        elif line.startswith(";; ") and "SECTION" in line:
            section = None
        elif section is not None:
            section.append(line)
    return DigResult(status, flags, parse_dig_rrs("\n".join(answer)), parse_dig_rrs("\n".join(authority)),
                     r.stdout + r.stderr)


# --------------------------------------------------------------------------- Sotto

class Sotto:
    """Runs the sotto binary; every call is a fresh process (clean cache)."""

    def __init__(self, path: Path):
        self.path = path

    def run(self, *args: str, timeout: float = 40.0, env: dict | None = None) -> subprocess.CompletedProcess:
        """`env`: the whole environment of the process (default: this one's)."""
        return subprocess.run([str(self.path), *args], capture_output=True, text=True, timeout=scaled(timeout),
                              cwd=REPO, env=env)

    def lookup(self, name: str, qtype: str = "A", *extra: str, allow_loopback: bool = True,
               timeout: float = 40.0, env: dict | None = None) -> subprocess.CompletedProcess:
        args = ["lookup", name, qtype, "--root-hints", ROOT_HINTS]
        if allow_loopback:
            args.append("--allow-loopback")
        return self.run(*args, *extra, timeout=timeout, env=env)

    def lookup_json(self, name: str, qtype: str = "A", *extra: str, env: dict | None = None) -> dict:
        r = self.lookup(name, qtype, "--json", *extra, env=env)
        assert r.returncode == 0, (
            f"sotto lookup {name} {qtype} --json exited {r.returncode}\nstdout: {r.stdout}\nstderr: {r.stderr}")
        try:
            data = json.loads(r.stdout)
        except json.JSONDecodeError as e:
            pytest.fail(f"sotto lookup --json did not print one JSON object ({e}):\n{r.stdout}\nstderr: {r.stderr}")
        assert isinstance(data, dict), f"expected a JSON object, got {type(data).__name__}"
        for key in ("question", "rcode", "answer", "authority", "hops", "elapsed_ms"):
            assert key in data, f"lookup --json output lacks '{key}': {r.stdout}"
        return data

    def serve(self, port: int, *extra: str, allow_loopback: bool = True,
              root_hints: str = ROOT_HINTS, nofile: tuple[int, int] | None = None) -> "SottoServer":
        srv = SottoServer(self, port, list(extra), allow_loopback, root_hints=root_hints, nofile=nofile)
        srv.start()
        return srv


@dataclass
class SottoServer:
    sotto: Sotto
    port: int
    extra: list[str] = field(default_factory=list)
    allow_loopback: bool = True
    root_hints: str = ROOT_HINTS
    address: str = "127.0.0.1"
    proc: subprocess.Popen | None = None
    logfile: object = None
    # (soft, hard) limit on open files Sotto starts with (RLIMIT_NOFILE); None: this process's.
    nofile: tuple[int, int] | None = None

    def start(self, timeout: float = 20.0) -> None:
        """Start `sotto serve` and wait until it holds its UDP and TCP ports.

        The port was checked free when the test drew it, but on a shared machine another process
        can take it before Sotto binds (a CI run failed so). Then Sotto exits 64 with "Address
        already in use"; the server is started again on a fresh port, at most twice, and
        `self.port` names the port it finally holds: tests must ask `srv.port`."""
        taken = []
        for _ in range(3):
            if self._start_once(timeout):
                return
            # Free again right after Sotto gave up: then nobody else held it, and the clash may be
            # Sotto's own (a double bind); the failure below says so.
            still_held = not labmod.port_free(self.address, self.port)
            taken.append(f"{self.port} ({'held by another process' if still_held else 'free once Sotto exited'})")
            print(f"sotto serve: port {taken[-1]} was taken when Sotto bound it; trying another")
            self.port = labmod.free_port(self.address)
        pytest.fail(f"sotto serve found its port taken three times: {', '.join(taken)}:\n{self.log()}")

    def _start_once(self, timeout: float) -> bool:
        """False only when Sotto exited because its port was taken by someone else."""
        args = [str(self.sotto.path), "serve", "--listen", f"{self.address}:{self.port}",
                "--root-hints", self.root_hints]
        if self.allow_loopback:
            args.append("--allow-loopback")
        args += self.extra
        if self.logfile:
            self.logfile.close()
        self.logfile = tempfile.TemporaryFile(mode="w+")
        nofile = self.nofile
        limit = (lambda: resource.setrlimit(resource.RLIMIT_NOFILE, nofile)) if nofile else None
        self.proc = subprocess.Popen(args, stdout=self.logfile, stderr=subprocess.STDOUT, cwd=REPO,
                                     preexec_fn=limit)
        timeout = scaled(timeout)
        deadline = time.monotonic() + timeout
        # Ready when this process holds the UDP socket and the listening TCP socket of the port
        # (not merely when both are taken: a neighbour may hold one); no DNS query is sent, so
        # the cache stays empty.
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                log = self.log()
                if self.proc.returncode == 64 and port_taken(log, self.address, self.port):
                    return False
                pytest.fail(f"sotto serve exited with {self.proc.returncode} before listening:\n{log}")
            if _holds_port(self.proc.pid, self.port):
                return True
            time.sleep(0.05)
        self.stop()
        pytest.fail(f"sotto serve did not listen on {self.address}:{self.port} (UDP and TCP) within {timeout}s:\n"
                    f"{self.log()}")

    def log(self) -> str:
        if not self.logfile:
            return ""
        self.logfile.flush()
        self.logfile.seek(0)
        return self.logfile.read()[-4000:]

    def signal(self, sig: int = signal.SIGTERM, timeout: float = 10.0) -> int | None:
        """Send sig, wait; returns the exit code, or None if it did not exit (then it is killed)."""
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout=scaled(timeout))
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                return None
        return self.proc.returncode

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.signal(signal.SIGTERM)

    def dig(self, name: str, qtype: str = "A", *opts: str) -> DigResult:
        return dig_query(self.address, self.port, name, qtype, *opts)

    def __enter__(self) -> "SottoServer":
        return self

    def __exit__(self, *exc) -> None:
        self.stop()
        if self.logfile:
            self.logfile.close()


def port_taken(output: str, address: str, port: int) -> bool:
    """True if Sotto's output (a log, or a terminal screen whose wrapped lines are joined here)
    says it could not listen because another process had taken address:port."""
    joined = output.replace("\n", "")
    return f"cannot listen on {address}:{port}" in joined and "Address already in use" in joined


def retry_on_taken_port(attempt, address: str = "127.0.0.1", tries: int = 3):
    """Calls attempt(port) with a freshly drawn free port until it returns something other than
    None; attempt returns None only when Sotto exited because the port was taken between the
    draw and its bind (see SottoServer.start). Fails the test after `tries` taken ports."""
    taken = []
    for _ in range(tries):
        port = labmod.free_port(address)
        result = attempt(port)
        if result is not None:
            return result
        taken.append(str(port))
        print(f"sotto: port {port} was taken when Sotto bound it; trying another")
    pytest.fail(f"sotto found its port taken {tries} times: {', '.join(taken)}")


def _holds_port(pid: int, port: int) -> bool:
    """True if process pid holds a UDP socket and a listening TCP socket on port (any address)."""
    def inodes(tables: tuple[str, ...], listening_only: bool) -> set[str]:
        out = set()
        for table in tables:
            try:
                rows = Path(f"/proc/net/{table}").read_text().splitlines()[1:]
            except OSError:
                continue
            for row in rows:
                f = row.split()
                if len(f) > 9 and int(f[1].rsplit(":", 1)[1], 16) == port and (not listening_only or f[3] == "0A"):
                    out.add(f[9])
        return out
    try:
        fds = {os.readlink(f"/proc/{pid}/fd/{fd}") for fd in os.listdir(f"/proc/{pid}/fd")}
    except OSError:
        return False
    owned = {link[len("socket:["):-1] for link in fds if link.startswith("socket:[")}
    return bool(owned & inodes(("udp", "udp6"), False)) and bool(owned & inodes(("tcp", "tcp6"), True))


def _can_bind(address: str, port: int, udp: bool) -> bool:
    import socket
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM if udp else socket.SOCK_STREAM)
    try:
        if not udp:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind((address, port))
        return True
    except OSError:
        return False
    finally:
        s.close()


def lab_query_total(lab: labmod.Lab) -> int:
    """Sum of num.queries over every running lab NSD."""
    return sum(lab.queries(i.name) for i in lab.instances)


def settled_query_total(lab: labmod.Lab, quiet: float = 0.5, timeout: float = 6.0) -> int:
    """lab_query_total once it has stopped moving for `quiet` seconds.  After an answer,
    a DoT probe may still re-send the triggering query over TLS (RFC 9539 §4.6.4)."""
    quiet, timeout = scaled(quiet), scaled(timeout)
    last, since = lab_query_total(lab), time.monotonic()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        time.sleep(0.1)
        now = lab_query_total(lab)
        if now != last:
            last, since = now, time.monotonic()
        elif time.monotonic() - since >= quiet:
            break
    return last


def is_lab_address(addr: str) -> bool:
    try:
        ip = ipaddress.ip_address(addr)
    except ValueError:
        return False
    return ip.is_loopback


# --------------------------------------------------------------------------- sotto serve + control socket

def ctl(sotto: Sotto, sock: Path, *words: str) -> dict:
    """`sotto ctl --json WORDS` on the control socket sock; asserts the reply says ok."""
    r = sotto.run("ctl", "--control", str(sock), "--json", *words, timeout=60)
    assert r.stdout.strip(), f"no output from ctl {words}: rc={r.returncode} stderr={r.stderr}"
    data = json.loads(r.stdout)
    assert data.get("ok") is True, f"ctl {words}: {r.stdout}"
    return data


def read_exactly(conn, n: int) -> bytes:
    """n bytes from a socket (or TLS socket); asserts the peer did not close first."""
    data = b""
    while len(data) < n:
        chunk = conn.recv(n - len(data))
        assert chunk, f"connection closed after {len(data)} of {n} bytes"
        data += chunk
    return data


def read_answer(conn):
    """One length-prefixed DNS message (RFC 7766 framing) from a TCP or DoT connection."""
    import dns.message

    (length,) = struct.unpack("!H", read_exactly(conn, 2))
    return dns.message.from_wire(read_exactly(conn, length))


def framed(message) -> bytes:
    """A dnspython message in RFC 7766 framing: its length in two octets, then the message."""
    wire = message.to_wire()
    return struct.pack("!H", len(wire)) + wire


def a_records(answer: list[str]) -> set[str]:
    """The addresses of the A records in a `ctl lookup` answer (presentation lines)."""
    return {p[4] for p in (line.split() for line in answer) if len(p) >= 5 and p[3] == "A"}


def vmhwm_kb(pid: int) -> int:
    """Peak resident memory (VmHWM) of process pid in kB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    raise AssertionError(f"no VmHWM in /proc/{pid}/status")


def wait_until(what: str, check, timeout: float = 15.0, every: float = 0.2):
    """Calls check() every `every` seconds until it returns something truthy (returned);
    fails with `what` and the last result after timeout seconds (times SOTTO_TIME_SCALE)."""
    deadline = time.monotonic() + scaled(timeout)
    last = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(every)
    raise AssertionError(f"timed out waiting for {what}; last: {last}")


def stop_process(proc: subprocess.Popen, timeout: float = 10.0) -> None:
    """SIGTERM, then SIGKILL if proc has not exited within timeout seconds; reaps it."""
    proc.terminate()
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def start_lab_script(lab: labmod.Lab, script: str, log_name: str, up, timeout: float):
    """Starts Lab/<script> (a hostile lab server) with its output in <lab run>/<log_name> and
    waits until up(log path) is true; yields the process, then stops it (a generator for a
    pytest fixture)."""
    log_path = lab.instances[0].run_dir.parent / log_name
    log = open(log_path, "w")
    proc = subprocess.Popen([sys.executable, str(REPO / "Lab" / script)],
                            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)

    def started():
        assert proc.poll() is None, f"{script} died: {log_path.read_text()}"
        return up(log_path)
    try:
        wait_until(f"{script} to bind", started, timeout=timeout, every=0.05)
        yield proc
    finally:
        stop_process(proc)
        log.close()


def serve_with_control(lab: labmod.Lab, tmp_path_factory, name: str):
    """One `sotto serve` on a free port with its control socket, trusting the lab CA, probe
    timeout 1 s; yields (sotto, server, socket path) (a generator for a pytest fixture)."""
    sotto = Sotto(sotto_path())
    require(sotto.path.is_file(), f"sotto binary not found at {sotto.path}")
    sock = tmp_path_factory.mktemp(name) / "ctl.sock"
    with sotto.serve(labmod.free_port(), "--control", str(sock), "--tls-ca-file", str(lab.ca_file),
                     "--probe-timeout", "1") as srv:
        try:
            wait_until("the control socket", sock.exists, timeout=10, every=0.05)
        except AssertionError:
            raise AssertionError(f"control socket not created:\n{srv.log()}") from None
        yield sotto, srv, sock


def assert_encryption_does_not_slow(sotto: "Sotto", zone: str, check, env: dict | None = None) -> None:
    """Median elapsed_ms of 5 `lookup --json` of h1..h5.`zone` with encryption on (each a fresh
    process, so each probes) against --no-encryption: on must stay within 3x off + 50 ms.
    `check(data)` is called on every lookup's JSON."""
    def run(extra):
        out = []
        for i in range(1, 6):
            d = sotto.lookup_json(f"h{i}.{zone}", "A", "--probe-timeout", "1", *extra, env=env)
            check(d)
            out.append(float(d["elapsed_ms"]))
        return out
    off = run(["--no-encryption"])
    on = run([])
    m_on, m_off = statistics.median(on), statistics.median(off)
    assert m_on <= m_off * 3 + 50, f"encryption on: median {m_on:.1f} ms {on}; off: {m_off:.1f} ms {off}"
