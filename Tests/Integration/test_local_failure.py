"""An encrypted connection this machine cannot open (out of file descriptors) is not the
server's failure: the server is not damped, nothing is saved against it, and a known-good
server gets no cleartext meanwhile (OE-11), and the failure is not cached.  The descriptors run
out for real: the test lowers the running `sotto serve`'s soft RLIMIT_NOFILE to the number its
next descriptor would get (prlimit on its pid).  Do53 cannot open a socket then either, so that
no cleartext goes to a known-good server is checked by LocalFailureTests, not on the wire here."""

from __future__ import annotations

import json
import os
import resource
import time

import pytest

from harness import ctl, require, wait_until
from test_dot import expected_answers

DOT, DOQ = "127.53.12.1", "127.53.17.1"  # dot.test. (NSD, DoT only), doq.test. (aioquic, DoQ only)
# transport: (server, zone, the state's key, options, the encrypted port's protocol)
CASES = {"DoT": (DOT, "dot.test.", "dot", "--no-doq", "TCP"), "DoQ": (DOQ, "doq.test.", "doq", "--no-dot", "UDP")}


def _lowest_free_descriptor(pid: int) -> int:
    """The number the process's next descriptor would get: a soft RLIMIT_NOFILE of it leaves
    none (the limit caps descriptor numbers, not how many are open)."""
    held = {int(fd) for fd in os.listdir(f"/proc/{pid}/fd")}
    return min(set(range(max(held) + 2)) - held)


def _row(sotto, sock, server: str) -> dict | None:
    return next((s for s in ctl(sotto, sock, "servers")["servers"] if s["address"] == server), None)


def _phase(sotto, sock, server: str, key: str) -> str | None:
    row = _row(sotto, sock, server)
    return row and row[key] and row[key]["phase"]


@pytest.mark.parametrize("transport", CASES)
def test_a_connection_this_machine_cannot_open_leaves_the_server_good(
        lab, sotto, capture, free_port, tmp_path, transport):
    server, zone, key, option, proto = CASES[transport]
    if transport == "DoQ":
        require(lab.with_doq, "aioquic/dnspython not importable: the lab runs no DoQ servers")
    names = [f"www.{zone}"] + [f"h{i}.{zone}" for i in range(1, 4)]
    expected = expected_answers(lab, server, names)
    state, sock = tmp_path / "state.json", tmp_path / "ctl.sock"
    cap = capture()
    with sotto.serve(free_port, "--tls-ca-file", str(lab.ca_file), "--state-file", str(state),
                     "--control", str(sock), option, "--session-idle-timeout", "1") as srv:
        pid = srv.proc.pid
        wait_until("the control socket", sock.exists, timeout=10, every=0.05)

        def answers(name):
            r = srv.dig(name, "A")
            assert r.status == "NOERROR" and r.answer == expected[name], f"{name}: {r.raw}\n{srv.log()}"

        # The first query probes; the second goes over the session; then the session idles out.
        answers(names[0])
        wait_until(f"the {transport} probe", lambda: _phase(sotto, sock, server, key) == "established", timeout=10,
                   every=0.1)
        answers(names[1])
        wait_until("the session's idle close", lambda: _phase(sotto, sock, server, key) == "good-idle", timeout=10,
                   every=0.1)
        time.sleep(0.5)  # the descriptors of the queries so far are closed
        before = ctl(sotto, sock, "stats")["stats"]
        time.sleep(0.3)  # the control connection's descriptor is closed
        soft, hard = resource.prlimit(pid, resource.RLIMIT_NOFILE)
        resource.prlimit(pid, resource.RLIMIT_NOFILE, (_lowest_free_descriptor(pid), hard))
        try:
            limited = srv.dig(names[2], "A")
        finally:
            resource.prlimit(pid, resource.RLIMIT_NOFILE, (soft, hard))
        restored = time.time()
        after = ctl(sotto, sock, "stats")["stats"]
        # Descriptors free again: the same name resolves at once (its failure was not cached),
        # over a new encrypted connection to the same server.
        answers(names[2])
        answers(names[3])
        row = _row(sotto, sock, server)
        log = srv.log()
        code = srv.signal(15)
        assert code == 0, f"sotto serve did not exit 0 on SIGTERM (got {code}):\n{log}"
    cap.stop()
    trace = cap.summary(server)
    assert limited.status == "SERVFAIL", f"out of descriptors, {names[2]} got {limited.status}:\n{limited.raw}\n{log}"
    assert after["upstream"]["localConnectionFailures"] >= 1, (after["upstream"], log)
    assert ("could not connect from this machine (socket: Too many open files); not held against the server"
            in log), log
    # Nothing left the machine, so nothing counts as exposed or sent, and no delegation was
    # fetched again (R-43) for a failure that was not the servers'.
    for k in ("cleartextHops", "encryptedHops"):
        assert after["privacy"][k] == before["privacy"][k], (k, before["privacy"], after["privacy"])
    assert after["upstream"]["delegationRefreshes"] == before["upstream"]["delegationRefreshes"], after["upstream"]
    assert cap.to(server, 853, proto, after=restored), f"no new {transport} connection afterwards:\n{trace}"
    assert not cap.to(server, 53, after=restored), f"cleartext to the known-good server afterwards:\n{trace}"
    assert any(e["kind"] == "local-failure" for e in row["history"]), row["history"]
    assert row[key]["phase"] in ("good-idle", "established") and not row[key]["failures"], row[key]
    r = sotto.run("state", "show", "--state-file", str(state), "--json", timeout=20)
    saved = next(s for s in json.loads(r.stdout)["servers"] if s["address"] == server)[key]
    assert saved["status"] == "success" and not saved["failures"] and saved["probes"]["failed"] == 0, (
        f"the local failure was held against {server}: {saved}")
