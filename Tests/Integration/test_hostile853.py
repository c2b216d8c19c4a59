"""Hostile encrypted authoritative servers (issue 8): Lab/hostile853_server.py on 127.53.31.x.

Each zone <behaviour>.test. is served correctly over Do53 on port 53 of its one server and
misbehaves on port 853 (DoT: garbage after the handshake, a record stalled mid-way, malformed
DNS inside valid TLS; DoQ: every stream reset, no stream credit, streams never answered).
One `sotto serve` (probe timeout 1 s) resolves fresh names of each zone through its control
socket until the encrypted transport has settled. Every lookup must end with the right answer
(192.0.2.1, via Do53 where encryption failed) or SERVFAIL, within the query budget; afterwards
no forged record is in the cache, the events are counted (`ctl stats` upstream counters,
`ctl servers` failures/history/timeouts), repeated probes leak no fds, and peak memory is
bounded."""

from __future__ import annotations

import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from harness import (MEMORY_SCALE, REPO, a_records, ctl, labmod, require, serve_with_control,
                     start_lab_script, vmhwm_kb,
                     wait_until)

sys.path.insert(0, str(REPO / "Lab"))

MAX_QUERIES = 100          # ResolverConfiguration.maxQueries: the per-resolution budget
GOOD = "192.0.2.1"
FORGED = "192.0.2.66"      # hostile853_server.FORGED_ADDRESS: carried by the malformed DoT answers
VMHWM_BOUND_KB = 200 * 1024 * MEMORY_SCALE  # MEMORY_SCALE > 1 only in sanitizer runs (harness)
FD_SLACK = 4               # sessions that may legitimately open or close between two fd counts
PROBE_ROUNDS = 6


@dataclass(frozen=True)
class Case:
    id: str
    address: str
    transport: str   # "dot" or "doq"
    settled: str     # what the transport's row must show at the end
    note: str


CASES = [
    Case("dotgarbage", "127.53.31.1", "dot", "damped", "TLS up, then bytes that are not TLS records"),
    Case("dotstall", "127.53.31.2", "dot", "damped", "TLS up, then 15 octets of a 500-octet record, forever"),
    Case("dotformerr", "127.53.31.3", "dot", "damped", "valid TLS, compression-pointer loop in every answer"),
    Case("doqreset", "127.53.31.4", "doq", "good", "every stream RESET_STREAM (OE-37: failed queries only)"),
    Case("doqnostream", "127.53.31.5", "doq", "damped", "initial_max_streams_bidi = 0: no stream can open"),
    Case("doqmute", "127.53.31.6", "doq", "damped", "streams accepted, never answered"),
]
BY_ID = {c.id: c for c in CASES}


def fd_count(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def server_row(sotto, sock, address: str) -> dict | None:
    return next((s for s in ctl(sotto, sock, "servers")["servers"] if s["address"] == address), None)


def phase(row: dict | None, transport: str) -> str:
    return ((row or {}).get(transport) or {}).get("phase", "unknown")


@pytest.fixture(scope="module")
def hostile853(lab):
    try:
        import aioquic  # noqa: F401
        import dns.message  # noqa: F401
    except ImportError:
        require(False, "aioquic/dnspython not installed (make pip-deps)")
    import hostile853_server as hs
    busy = [f"{a}:53" for a in hs.BEHAVIOURS if labmod.udp_bound(a, 53)]
    busy += [f"{a}:853" for a in hs.BEHAVIOURS if labmod.udp_bound(a, 853) or not labmod.port_free(a, 853)]
    require(not busy, f"hostile 853 server addresses busy: {busy}")

    def up(log: Path) -> bool:
        return all(labmod.udp_bound(a, 53) for a in hs.BEHAVIOURS) and all(labmod.udp_bound(a, 853) for a in hs.DOQ) \
            and "servers up" in log.read_text()
    yield from start_lab_script(lab, "hostile853_server.py", "hostile853.log", up, timeout=20)


@pytest.fixture(scope="module")
def served(lab, hostile853, tmp_path_factory):
    yield from serve_with_control(lab, tmp_path_factory, "hostile853")


def check_lookup(out: dict, case: str) -> str:
    """The lookup ended right (GOOD only) or in SERVFAIL, within budget; returns the rcode."""
    got = a_records(out["answer"])
    info = f"{case}: rcode {out['rcode']}, answer {out['answer']}, {len(out['hops'])} hops " \
           f"{[(h['server'], h['transport'], h['outcome']) for h in out['hops']]}, reason {out.get('failureReason')}"
    assert FORGED not in got, f"forged record from a malformed encrypted reply accepted: {info}"
    assert len(out["hops"]) <= MAX_QUERIES, f"unbounded work: {info}"
    assert (out["rcode"] == "NOERROR" and got == {GOOD}) or out["rcode"] == "SERVFAIL", info
    return out["rcode"]


RESULTS: dict[str, list[dict]] = {}


def drive(sotto, srv, sock, c: Case, label: str = "h", limit: int = 8) -> list[dict]:
    """Lookups of fresh names until the server's transport has settled as `c.settled`."""
    outs = []
    for i in range(limit):
        out = ctl(sotto, sock, "lookup", f"{label}{i}.{c.id}.test.", "A")["lookup"]
        assert srv.proc.poll() is None, f"sotto serve died on {c.id}:\n{srv.log()}"
        check_lookup(out, c.id)
        outs.append(out)
        row = server_row(sotto, sock, c.address)
        p = phase(row, c.transport)
        if c.settled == "damped" and p == "damped" and out["rcode"] == "NOERROR":
            break
        if c.settled == "good" and p in ("established", "good-idle") and i >= 1 and \
                any(h["server"] == c.address and h["transport"] != "Do53/UDP" and h["transport"] != "Do53/TCP"
                    for h in out["hops"]):
            break  # this lookup went over the (hostile) encrypted session
        time.sleep(0.3)  # let the probe (and its query) run: the answer never waits for it
    return outs


@pytest.mark.parametrize("c", CASES, ids=[c.id for c in CASES])
def test_hostile853_case(served, c):
    sotto, srv, sock = served
    outs = drive(sotto, srv, sock, c)
    RESULTS[c.id] = outs
    row = server_row(sotto, sock, c.address)
    st = row[c.transport]
    history = [(e["transport"], e["kind"], e["detail"]) for e in row["history"]]
    info = f"{c.id} ({c.note}): {c.transport} {st}\nhistory {history}\nlookups " + \
        "; ".join(f"{o['rcode']} {[(h['transport'], h['outcome']) for h in o['hops'] if h['server'] == c.address]}"
                  for o in outs)
    enc = "DoT" if c.transport == "dot" else "DoQ"
    print(f"\n  {info}")
    assert any(e[1] == "established" and e[0] == enc for e in history), \
        f"the hostile server never completed a handshake: {info}"
    used = [h for o in outs for h in o["hops"] if h["server"] == c.address and h["transport"] == enc]
    if c.id != "dotgarbage":  # garbage kills the probe's session before any client query can use it
        assert used, f"no client query was ever sent over {enc}: {info}"
    assert all(h["outcome"] != "answer" for h in used), f"a hostile {enc} reply was used as an answer: {info}"
    if c.settled == "damped":
        assert st["phase"] == "damped", info
        assert outs[-1]["rcode"] == "NOERROR", f"no right answer over Do53 once {enc} was damped: {info}"
        kinds = {e[1] for e in history if e[0] == enc}
        want = {"dotgarbage": "session-failed", "dotstall": "query-timeouts", "dotformerr": "query-failures",
                "doqnostream": "query-timeouts", "doqmute": "query-timeouts"}[c.id]
        assert want in kinds, f"expected a {want} event: {info}"
        assert st["failures"], info
    else:
        # OE-37: a reset stream fails that query only; the server stays good, the zone SERVFAILs.
        assert st["phase"] in ("established", "good-idle"), info
        assert outs[-1]["rcode"] == "SERVFAIL", info
    if c.id in ("dotstall", "doqnostream", "doqmute"):
        # The stalled/mute peer never held a query: every encrypted hop ended in a timeout and the
        # server's timeouts are counted per server. The one exception is the last encrypted hop:
        # when the probe's own query is the third to time out (it runs on its own, longer, clock;
        # seen on a slow CI machine), the damping closes the session under a hop still waiting,
        # which ends "closed" at once and goes to Do53 (the server is damped by then).
        assert all(h["outcome"] == "timeout" for h in used[:-1]), info
        assert used[-1]["outcome"] in ("timeout", "closed"), info
        if used[-1]["outcome"] == "closed":
            kinds_in_order = [e[1] for e in history if e[0] == enc]  # newest first
            assert "closed" in kinds_in_order and "query-timeouts" in kinds_in_order and \
                kinds_in_order.index("closed") < kinds_in_order.index("query-timeouts"), \
                f"a hop ended 'closed' but the session was not closed by the damping: {info}"
        assert row["timeouts"] >= 1, f"query timeouts not counted for {c.address}: {row['timeouts']}"


def test_dotformerr_truncated_and_mismatched_replies(served):
    """dotformerr again after `ctl forget`: replies cut mid-record (malformed) and replies with
    the wrong ID (a mismatch on the stream, dropped: the query times out)."""
    sotto, srv, sock = served
    c = BY_ID["dotformerr"]
    before = ctl(sotto, sock, "stats")["stats"]["upstream"]
    for label in ("trunc", "badid"):
        ctl(sotto, sock, "forget", c.address)
        outs = drive(sotto, srv, sock, c, label=label)
        RESULTS[f"dotformerr-{label}"] = outs
        row = server_row(sotto, sock, c.address)
        assert phase(row, "dot") == "damped" and outs[-1]["rcode"] == "NOERROR", \
            f"{label}: {row['dot']} {[o['rcode'] for o in outs]}"
    after = ctl(sotto, sock, "stats")["stats"]["upstream"]
    assert after["malformedDoTReplies"] - before["malformedDoTReplies"] >= 3, (before, after)
    assert after["mismatchedDoTReplies"] - before["mismatchedDoTReplies"] >= 3, (before, after)


def test_badquic_malformed_doq_replies_counted(doq_lab_served):
    """The lab's badquic.test. (non-zero ID, length prefix too long): counted as malformed DoQ replies."""
    sotto, srv, sock = doq_lab_served
    before = ctl(sotto, sock, "stats")["stats"]["upstream"]["malformedDoQReplies"]
    ctl(sotto, sock, "lookup", "www.badquic.test.", "A")
    wait_until("badquic DoQ up", lambda: phase(server_row(sotto, sock, "127.53.20.1"), "doq")
               in ("established", "good-idle"))
    for name in ("badid.badquic.test.", "badlen.badquic.test."):
        out = ctl(sotto, sock, "lookup", name, "A")["lookup"]
        assert out["rcode"] in ("NOERROR", "SERVFAIL"), out
    after = ctl(sotto, sock, "stats")["stats"]["upstream"]["malformedDoQReplies"]
    assert after - before >= 2, f"malformed DoQ replies not counted: {before} -> {after}"


@pytest.fixture(scope="module")
def doq_lab_served(lab, served):
    require(lab.with_doq, "aioquic/dnspython not importable: the lab runs no DoQ servers")
    return served


def test_no_forged_record_cached(served):
    """Every name looked up above resolves to the zone's real data afterwards (from the cache or
    over Do53): nothing from a malformed or mismatched encrypted reply was cached."""
    sotto, srv, sock = served
    assert RESULTS, "the cases did not run first"
    time.sleep(5.5)  # the failure cache (R-24, 5 s) would answer the names that got SERVFAIL
    for cid, outs in RESULTS.items():
        zone = cid.split("-")[0]
        for out in outs:
            again = ctl(sotto, sock, "lookup", out["name"], "A")["lookup"]
            check_lookup(again, f"{zone} again")
            if zone != "doqreset":
                assert again["rcode"] == "NOERROR" and a_records(again["answer"]) == {GOOD}, again


def test_repeated_probes_leak_nothing_and_counters(lab, served):
    """PROBE_ROUNDS times: `ctl forget` every hostile server (closing its sessions) and look up a
    fresh name in its zone, which probes it again (a new TLS/QUIC connection each time). The fd
    count settles (no leaked sockets), nothing crashes, the counters are in `ctl stats`, and
    peak memory is bounded."""
    sotto, srv, sock = served
    pid = srv.proc.pid
    server_log = lab.instances[0].run_dir.parent / "hostile853.log"

    def quiet() -> bool:
        rows = {s["address"]: s for s in ctl(sotto, sock, "servers")["servers"]}
        return all(phase(rows.get(c.address), t) != "probing" for c in CASES for t in ("dot", "doq"))

    def handshakes() -> int:
        return sum(1 for line in server_log.read_text().splitlines() if ": handshake TLS" in line
                   or ": QUIC handshake" in line)

    def probe_round(n: int):
        for c in CASES:
            ctl(sotto, sock, "forget", c.address)
            check_lookup(ctl(sotto, sock, "lookup", f"round{n}.{c.id}.test.", "A")["lookup"], c.id)
        time.sleep(1.5)  # probe timeout 1 s: every probe and the query it sends have ended by now
        wait_until("probes to finish", quiet)

    probe_round(0)
    first, shaken = fd_count(pid), handshakes()
    counts = [first]
    for n in range(1, PROBE_ROUNDS + 1):
        probe_round(n)
        counts.append(fd_count(pid))
    assert srv.proc.poll() is None, srv.log()
    new_handshakes = handshakes() - shaken
    assert new_handshakes >= PROBE_ROUNDS * len(CASES), \
        f"the rounds did not reconnect every server: {new_handshakes} handshakes"
    assert max(counts) <= first + FD_SLACK, f"fds grow with repeated probes: {counts}"
    stats = ctl(sotto, sock, "stats")["stats"]
    up = stats["upstream"]
    assert up["malformedDoTReplies"] >= 1 and up["mismatchedDoTReplies"] >= 1, up
    assert up["resetDoQStreams"] >= 2, up
    assert up["timeouts"] >= 3, up
    hwm = vmhwm_kb(pid)
    print(f"\nhostile 853 run: {new_handshakes} handshakes in {PROBE_ROUNDS} rounds, sotto serve fds {counts}, "
          f"VmHWM {hwm / 1024:.1f} MB, upstream {up}")
    assert hwm < VMHWM_BOUND_KB, f"sotto serve peak memory {hwm} kB"
