"""`sotto ctl` against a running `sotto serve --control SOCKET` in the lab.

Every command of the control protocol (README, "Control socket"): stats, servers,
queries, flush, flush NAME, forget IP, probe IP, lookup; and bad input (unknown
command, not JSON, missing arguments, unknown server) gets a clear error while the
server keeps answering.
"""

from __future__ import annotations

import json
import os
import socket
import stat
import time

import pytest

from harness import scaled, wait_until

DOT = "127.53.12.1"
REFUSED = "127.53.14.1"


@pytest.fixture
def served(lab, sotto, free_port, tmp_path):
    sock = tmp_path / "ctl.sock"
    with sotto.serve(free_port, "--control", str(sock), "--tls-ca-file", str(lab.ca_file),
                     "--probe-timeout", f"{scaled(1):g}") as srv:
        deadline = time.monotonic() + 10
        while not sock.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert sock.exists(), f"control socket {sock} not created:\n{srv.log()}"
        yield srv, sock


def ctl(sotto, sock, *words, json_out=True):
    args = ["ctl", "--control", str(sock)] + (["--json"] if json_out else []) + list(words)
    return sotto.run(*args, timeout=30)


def ctl_json(sotto, sock, *words):
    r = ctl(sotto, sock, *words)
    assert r.stdout.strip(), f"no output from ctl {words}: rc={r.returncode} stderr={r.stderr}"
    data = json.loads(r.stdout)
    return r, data


def raw(sock, line: str) -> dict:
    """Sends one raw line on a fresh connection and returns the decoded response."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(10)
        s.connect(str(sock))
        s.sendall(line.encode() + b"\n")
        buf = b""
        while not buf.endswith(b"\n"):
            chunk = s.recv(65536)
            assert chunk, f"server closed the connection after {line!r}"
            buf += chunk
    return json.loads(buf)


def warm(srv, sotto, sock):
    for n in ("www.dot.test", "www.refused.test", "www.example.test", "nope.example.test"):
        srv.dig(n)

    def probed():  # the DoT probe of dot.test's server succeeded, refused.test's was refused; no DoQ probe runs
        servers = {s["address"]: s for s in ctl_json(sotto, sock, "servers")[1]["servers"]}
        dot, refused = servers.get(DOT), servers.get(REFUSED)
        return (dot and refused and dot["dot"]["phase"] in ("established", "good-idle")
                and refused["dot"]["phase"] == "damped"
                and all((s.get("doq") or {}).get("phase") != "probing" for s in (dot, refused)))

    wait_until("both DoT probes' outcomes", probed, timeout=10, every=0.1)
    for n in ("www2.dot.test", "www2.refused.test"):
        srv.dig(n)


def test_socket_mode_is_0600(served):
    _, sock = served
    mode = stat.S_IMODE(os.stat(sock).st_mode)
    assert stat.S_ISSOCK(os.stat(sock).st_mode)
    assert mode == 0o600, oct(mode)


def test_stats_servers_queries(served, sotto):
    srv, sock = served
    warm(srv, sotto, sock)
    r, data = ctl_json(sotto, sock, "stats")
    assert r.returncode == 0 and data["ok"] is True
    st = data["stats"]
    assert st["clientQueries"] >= 6
    assert st["cache"]["entries"] > 0
    assert st["encryption"]["enabled"] is True
    assert st["encryption"]["queries"].get("DoT", 0) > 0
    assert st["privacy"]["cleartextHops"] > 0
    assert len(st["privacy"]["cleartextSeries"]) == 60
    assert any(f":{srv.port}" in a for a in st["listeners"])

    r, data = ctl_json(sotto, sock, "servers")
    assert r.returncode == 0 and data["ok"] is True
    by_ip = {s["address"]: s for s in data["servers"]}
    assert by_ip[DOT]["dot"]["phase"] in ("established", "good-idle"), by_ip[DOT]
    assert by_ip[DOT]["dot"]["certificate"]["problems"] == []
    assert by_ip[REFUSED]["dot"]["phase"] == "damped", by_ip[REFUSED]
    assert "refused" in by_ip[REFUSED]["reason"]

    r, data = ctl_json(sotto, sock, "queries")
    assert r.returncode == 0 and data["ok"] is True
    names = [q["name"] for q in data["queries"]]
    assert names[0] == "www2.refused.test.", names  # newest first
    assert "nope.example.test." in names
    nope = next(q for q in data["queries"] if q["name"] == "nope.example.test.")
    assert nope["rcode"] == "NXDOMAIN"
    assert all({"zone", "server", "transport", "outcome"} <= set(h) for q in data["queries"] for h in q["hops"])

    r, data = ctl_json(sotto, sock, "queries", "2")
    assert len(data["queries"]) == 2

    # Human output: tables for servers and queries, pretty JSON for stats.
    r = ctl(sotto, sock, "servers", json_out=False)
    assert r.returncode == 0 and "ADDRESS" in r.stdout and DOT in r.stdout and "damped" in r.stdout
    r = ctl(sotto, sock, "queries", json_out=False)
    assert r.returncode == 0 and "www2.refused.test." in r.stdout
    r = ctl(sotto, sock, "stats", json_out=False)
    assert r.returncode == 0 and json.loads(r.stdout)["ok"] is True


def test_flush_all_and_name(served, sotto):
    srv, sock = served
    warm(srv, sotto, sock)
    r, data = ctl_json(sotto, sock, "flush", "dot.test")
    assert r.returncode == 0 and data["ok"] and data["flushed"] >= 1 and data["name"] == "dot.test."
    r, data = ctl_json(sotto, sock, "flush-negative")
    assert data["ok"] and data["flushed"] >= 1  # nope.example.test. NXDOMAIN
    r, data = ctl_json(sotto, sock, "flush")
    assert r.returncode == 0 and data["ok"] and data["flushed"] > 0
    _, data = ctl_json(sotto, sock, "stats")
    assert data["stats"]["cache"]["entries"] == 0
    # The next client query goes to the network again.
    srv.dig("www.example.test")
    _, data = ctl_json(sotto, sock, "queries", "1")
    assert data["queries"][0]["name"] == "www.example.test." and data["queries"][0]["cacheHit"] is False
    assert data["queries"][0]["hops"], data


def test_probe_and_forget(served, sotto):
    srv, sock = served
    warm(srv, sotto, sock)
    _, data = ctl_json(sotto, sock, "servers")
    before = next(s for s in data["servers"] if s["address"] == REFUSED)
    r, data = ctl_json(sotto, sock, "probe", REFUSED)
    assert r.returncode == 0 and data["ok"], data
    # Both transports are probed now, without waiting for a client query.
    assert data["started"] == ["DoQ", "DoT"] and data["summary"] == "probing DoQ, DoT", data
    deadline = time.monotonic() + 5
    while True:
        _, data = ctl_json(sotto, sock, "servers")
        refused = next(s for s in data["servers"] if s["address"] == REFUSED)
        if refused["dot"]["probes"]["failed"] > before["dot"]["probes"]["failed"] or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert refused["dot"]["probes"]["started"] == before["dot"]["probes"]["started"] + 1, refused
    assert refused["dot"]["phase"] == "damped", refused
    # Its history (newest first) records the operator's probe and the new refusal.
    kinds = [e["kind"] for e in refused["history"]]
    assert "operator-probe" in kinds and kinds[0] == "handshake-failed", refused["history"]
    assert kinds.index("operator-probe") < len(kinds) - 1
    assert all({"time", "kind", "detail"} <= set(e) for e in refused["history"])

    r, data = ctl_json(sotto, sock, "forget", DOT)
    assert r.returncode == 0 and data["ok"], data
    _, data = ctl_json(sotto, sock, "servers")
    dot = [s for s in data["servers"] if s["address"] == DOT]
    assert not dot or dot[0]["dot"]["phase"] == "unknown", dot

    r, data = ctl_json(sotto, sock, "lookup", "www.dot.test", "TXT")
    assert data["ok"] and data["lookup"]["rcode"] in ("NOERROR", "NXDOMAIN")


def test_bad_commands_get_clear_errors_and_server_keeps_working(served, sotto):
    srv, sock = served
    r, data = ctl_json(sotto, sock, "frobnicate")
    assert r.returncode == 1 and data["ok"] is False and "unknown command" in data["error"]
    r = ctl(sotto, sock, "frobnicate", json_out=False)
    assert r.returncode == 1 and "unknown command 'frobnicate'" in r.stderr and "stats" in r.stderr
    r, data = ctl_json(sotto, sock, "forget", "192.0.2.99")
    assert r.returncode == 1 and data["ok"] is False and "192.0.2.99" in data["error"]
    r, data = ctl_json(sotto, sock, "flush", "bad..name")
    assert data["ok"] is False and "not a domain name" in data["error"]
    r = ctl(sotto, sock, "forget")
    assert r.returncode != 0 and "forget IP" in r.stderr
    assert raw(sock, "this is not json")["error"].startswith("request is not a JSON object")
    assert "cmd" in raw(sock, '{"command":"stats"}')["error"]
    assert raw(sock, '{"cmd":"probe"}') == {"ok": False, "error": 'probe needs "ip"'}
    assert raw(sock, "[1,2]")["ok"] is False
    # Several requests on one connection, a bad one in the middle.
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(10)
        s.connect(str(sock))
        s.sendall(b'{"cmd":"stats"}\n{oops\n{"cmd":"servers"}\n')
        buf = b""
        while buf.count(b"\n") < 3:
            chunk = s.recv(65536)
            assert chunk
            buf += chunk
        replies = [json.loads(l) for l in buf.decode().splitlines()]
        assert [r["ok"] for r in replies] == [True, False, True]
    # The server still answers DNS and control requests.
    assert srv.dig("www.example.test").status == "NOERROR"
    assert raw(sock, '{"cmd":"stats"}')["ok"] is True
    assert srv.proc.poll() is None


def test_unreachable_socket(sotto, tmp_path):
    r = sotto.run("ctl", "--control", str(tmp_path / "none.sock"), "stats", timeout=20)
    assert r.returncode == 2 and "cannot connect" in r.stderr
