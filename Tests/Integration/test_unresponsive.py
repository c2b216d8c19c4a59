"""A server that stops answering is held as unresponsive (R-24; RFC 9520 §3.2 caches an
unresponsive server by its address): after its timeouts, fresh names in its zone get SERVFAIL
at once instead of each waiting out the same timeouts (and holding a resolution slot meanwhile),
the server gets only probes, and once it answers a probe it is used again.

mute.test.'s only server (127.53.40.1, delegated from test.) is a UDP socket the test binds
itself (`harness.MuteServer`, the `mute` fixture): it counts the queries it reads and, until told otherwise, answers none of them (no
ICMP either: a real silent server, unlike dead.test.'s address, which nothing binds)."""

from __future__ import annotations

import socket
import time
from contextlib import contextmanager

import dns.message
import dns.rcode

from harness import HALFMUTE, MUTE, MUTE_ANSWER as ANSWER, Sotto, ctl, labmod, require, sotto_path, wait_until


def burst(port: int, names: list[str], timeout: float = 30.0) -> dict[str, str]:
    """Sends one A query for each of names to 127.0.0.1:port at once; their rcodes by name."""
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.settimeout(0.5)
    by_id = {}
    for i, name in enumerate(names):
        q = dns.message.make_query(name, "A", id=1000 + i)
        by_id[q.id] = name
        s.sendto(q.to_wire(), ("127.0.0.1", port))
    rcodes: dict[str, str] = {}
    deadline = time.monotonic() + timeout
    while len(rcodes) < len(names) and time.monotonic() < deadline:
        try:
            wire = s.recv(4096)
        except socket.timeout:
            continue
        r = dns.message.from_wire(wire)
        if r.id in by_id:
            rcodes[by_id[r.id]] = dns.rcode.to_text(r.rcode())
    s.close()
    return rcodes


def upstream(sotto, sock) -> dict:
    return ctl(sotto, sock, "stats")["stats"]["upstream"]


@contextmanager
def served(tmp_path, *flags: str):
    """`sotto serve --no-encryption` with a control socket and `flags`; yields (sotto, server,
    socket path, port)."""
    sotto = Sotto(sotto_path())
    require(sotto.path.is_file(), f"sotto binary not found at {sotto.path}")
    sock = tmp_path / "ctl.sock"
    port = labmod.free_port()
    with sotto.serve(port, "--control", str(sock), "--no-encryption", *flags) as srv:
        wait_until("the control socket", sock.exists, timeout=10, every=0.05)
        yield sotto, srv, sock, port


def test_a_silent_server_is_held_probed_and_used_again(lab, mute, tmp_path):
    # A deadline of 6 s: the first name's third timeout (its query sent about 1.6 s in, after the
    # R-43 restart, with a 1.6 s timeout) is not cut short by the deadline, even under sanitizers.
    with served(tmp_path, "--resolution-deadline", "6", "--log-level", "notice") as (sotto, srv, sock, port):

        # 1. The first name waits out the server's timeouts (three over more than 2 s hold it).
        first = ctl(sotto, sock, "lookup", "first.mute.test.", "A")["lookup"]
        assert first["rcode"] == "SERVFAIL", first
        assert mute.count() >= 3, f"the silent server read {mute.count()} queries"
        wait_until("the hold", lambda: upstream(sotto, sock).get("unresponsiveServers") == 1, timeout=10)
        assert "127.53.40.1 (mute.test.) unresponsive" in srv.log(), srv.log()

        # 2. 20 fresh names at once: SERVFAIL without waiting for the server again. At most one
        # of them may probe it (one send: the probe is taken once); without the hold each sends 1-4.
        before = mute.count()
        names = [f"n{i}.mute.test." for i in range(20)]
        rcodes = burst(port, names)
        assert rcodes == {n: "SERVFAIL" for n in names}, rcodes
        sent = mute.count() - before
        assert sent <= 4, f"20 fresh names sent {sent} queries to the held server"
        up = upstream(sotto, sock)
        assert up["heldZoneFailures"] >= 15, up
        # A lookup says why, and sends nothing. One may be the next probe (due 1, 2, 4, 8 s after
        # the hold; a probe's own lookup lasts its two timeouts, 6 s): of four in a row one is not.
        lookups = []
        for i in range(4):
            out = ctl(sotto, sock, "lookup", f"why{i}.mute.test.", "A")["lookup"]
            assert out["rcode"] == "SERVFAIL", out
            lookups.append(out)
            if not any(h["server"] == MUTE for h in out.get("hops", [])):
                break
        held = lookups[-1]
        assert "every server for mute.test. is held as unresponsive" in (held.get("failureReason") or ""), lookups
        assert not any(h["server"] == MUTE for h in held.get("hops", [])), lookups

        # 3. The server answers again: a probe (due within 1-2 s of the last) finds it, the hold
        # ends, and fresh names resolve.
        mute.answer()

        def resolved():
            r = ctl(sotto, sock, "lookup", f"r{time.monotonic_ns()}.mute.test.", "A")["lookup"]
            return r if r["rcode"] == "NOERROR" else None
        r = wait_until("a probe to reach the answering server", resolved, timeout=40, every=0.3)
        assert any(ANSWER in line for line in r["answer"]), r
        assert upstream(sotto, sock)["unresponsiveServers"] == 0
        again = burst(port, [f"a{i}.mute.test." for i in range(10)])
        assert set(again.values()) == {"NOERROR"}, again
        assert "127.53.40.1 (mute.test.) answers again" in srv.log(), srv.log()
        assert srv.proc.poll() is None, srv.log()


def test_a_held_server_beside_a_live_one_is_probed_in_the_background(lab, halfmute, tmp_path):
    """halfmute.test. has two servers. Both go silent and are held; one comes back and a
    resolution's own probe finds it; then the other comes back too. While the zone has a live
    server, the held one's due probes go beside the resolutions (never in their way: every
    lookup answers from the live server, no hop to the held one), and one that gets a reply ends
    its hold, so it is used again without the live server having to fail first."""
    first, second = halfmute
    with served(tmp_path, "--resolution-deadline", "6", "--log-level", "notice") as (sotto, srv, sock, port):

        def lookup(prefix: str) -> dict:
            return ctl(sotto, sock, "lookup", f"{prefix}{time.monotonic_ns()}.halfmute.test.", "A")["lookup"]

        # 1. Both silent: fresh names wait out their timeouts until both are held.
        def both_held():
            out = lookup("dead")
            assert out["rcode"] == "SERVFAIL", out
            return upstream(sotto, sock).get("unresponsiveServers") == 2
        wait_until("both servers held", both_held, timeout=60, every=0.1)

        # 2. The second answers again: with no live server left, a resolution probes it itself.
        second.answer()
        wait_until("a probe to find the second server", lambda: lookup("back")["rcode"] == "NOERROR",
                   timeout=60, every=0.3)
        assert upstream(sotto, sock)["unresponsiveServers"] == 1
        assert "127.53.40.3 (halfmute.test.) answers again" in srv.log(), srv.log()

        # 3. The first answers again. Every lookup answers from the second server; the first's
        # due probe goes in the background (never as a hop of a lookup while the hold lasts), ends
        # its hold, and is counted in the Privacy figures like any cleartext query.
        first.answer()
        probes_before, first_before = upstream(sotto, sock)["unresponsiveProbes"], first.count()
        shown_before = ctl(sotto, sock, "stats")["stats"]["privacy"]["byServer"].get(HALFMUTE[0], 0)
        held_lookups, seen = [], []

        def first_back():
            held_before = upstream(sotto, sock)["unresponsiveServers"] == 1
            out = lookup("live")
            held_after = upstream(sotto, sock)["unresponsiveServers"] == 1
            # Held when the lookup asked the zone: held before and after it, or held before the
            # first one (no probe of an earlier lookup was in flight to end the hold meanwhile).
            if held_before and (held_after or not seen):
                held_lookups.append(out)
            seen.append(out)
            return not held_after
        wait_until("a background probe to find the first server", first_back, timeout=60, every=0.3)
        assert held_lookups, f"the first server was not held when step 3 began: {seen}"
        assert all(o["rcode"] == "NOERROR" for o in held_lookups), held_lookups
        assert not any(h["server"] == HALFMUTE[0] for o in held_lookups for h in o.get("hops", [])), held_lookups
        assert first.count() > first_before and upstream(sotto, sock)["unresponsiveProbes"] > probes_before
        assert "127.53.40.2 (halfmute.test.) answers again" in srv.log(), srv.log()
        shown = ctl(sotto, sock, "stats")["stats"]["privacy"]["byServer"].get(HALFMUTE[0], 0)
        as_hops = sum(h["server"] == HALFMUTE[0] for o in seen for h in o.get("hops", []))
        assert shown - shown_before > as_hops, \
            f"the probe's cleartext query is not in the Privacy figures: {shown_before} -> {shown}, {as_hops} as hops"

        # 4. Used again: of fresh names, some go to the first server (srtt order among equals).
        before = first.count()
        for i in range(20):
            assert lookup("again")["rcode"] == "NOERROR"
        assert first.count() > before, "the first server was not asked again after its hold ended"
        assert srv.proc.poll() is None, srv.log()


def test_unresponsive_after_zero_never_holds(lab, mute, tmp_path):
    """--unresponsive-after 0: every fresh name waits out the silent server again (the old
    behaviour, for operators who want it)."""
    with served(tmp_path, "--resolution-deadline", "2", "--unresponsive-after", "0") as (sotto, srv, sock, _):
        for name in ("first.mute.test.", "second.mute.test.", "third.mute.test."):
            before = mute.count()
            out = ctl(sotto, sock, "lookup", name, "A")["lookup"]
            assert out["rcode"] == "SERVFAIL", out
            assert mute.count() - before >= 1, f"{name}: no query to the silent server"
        assert upstream(sotto, sock)["unresponsiveServers"] == 0
        assert srv.proc.poll() is None, srv.log()
