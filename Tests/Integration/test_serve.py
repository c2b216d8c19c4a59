"""`sotto serve`: UDP and TCP service, caching, access control, clean shutdown."""

from __future__ import annotations

import signal
import socket
import threading
import time

import dns.message
import dns.rcode
import pytest

from cases import WWW
from harness import fmt_rrs, rr, framed, lab_query_total, labmod, read_answer, settled_query_total


def test_serve_udp(lab, sotto, free_port):
    with sotto.serve(free_port) as srv:
        r = srv.dig("www.example.test.", "A")
        assert r.status == "NOERROR", r.raw
        assert "ra" in r.flags, f"recursion not available flag missing: {r.raw}"
        assert r.answer == WWW, fmt_rrs(r.answer)


def test_serve_tcp(lab, sotto, free_port):
    with sotto.serve(free_port) as srv:
        r = srv.dig("www.example.test.", "A", "+tcp")
        assert r.status == "NOERROR", r.raw
        assert r.answer == WWW, fmt_rrs(r.answer)
        r = srv.dig("txt.example.test.", "TXT", "+tcp")
        assert r.status == "NOERROR" and len(r.answer) == 1, r.raw


def test_second_query_is_answered_from_cache(lab, sotto, free_port):
    with sotto.serve(free_port) as srv:
        leaf0, total0 = lab.queries("example"), lab_query_total(lab)
        first = srv.dig("www.example.test.", "A")
        assert first.status == "NOERROR" and first.answer == WWW, first.raw
        total1 = settled_query_total(lab)  # a DoT probe may re-send the first query
        leaf1 = lab.queries("example")
        assert leaf1 > leaf0, "the first query never reached the example.test. server"
        second = srv.dig("www.example.test.", "A")
        assert second.status == "NOERROR" and second.answer == WWW, second.raw
        assert lab.queries("example") == leaf1, "second identical query reached the leaf server: not cached"
        assert lab_query_total(lab) == total1, "second identical query caused lab traffic: not cached"
        # Negative answers are cached too (RFC 2308).
        neg = srv.dig("nope.example.test.", "A")
        assert neg.status == "NXDOMAIN", neg.raw
        total2 = settled_query_total(lab)
        neg2 = srv.dig("nope.example.test.", "A")
        assert neg2.status == "NXDOMAIN", neg2.raw
        assert lab_query_total(lab) == total2, "repeated NXDOMAIN query caused lab traffic"


def test_zone_delegated_with_ttl_zero_is_reached_by_every_query_and_never_cached(lab, sotto, free_port):
    """zerottl.test. is delegated with TTL 0 NS and glue (R-15: use for this transaction only). Each
    resolution must use the delegation it was just given; none may cache it or the answer's zone
    servers, so each distinct name walks down from test. again, and every one is answered."""
    with sotto.serve(free_port) as srv:
        for name, address in (("www.zerottl.test.", "198.51.100.120"), ("www2.zerottl.test.", "198.51.100.121")):
            tld0, leaf0 = lab.queries("test-1") + lab.queries("test-2"), lab.queries("zerottl")
            r = srv.dig(name, "A")
            assert r.status == "NOERROR" and r.answer == {rr(name, "A", address)}, r.raw
            assert lab.queries("zerottl") > leaf0, f"{name}: the zerottl.test. server was never asked"
            assert lab.queries("test-1") + lab.queries("test-2") > tld0, \
                f"{name}: answered without asking test. for the delegation again: a TTL-0 delegation was cached"


def test_client_outside_allowed_networks_is_refused(lab, sotto, free_port):
    with sotto.serve(free_port, "--allow", "10.0.0.0/8") as srv:
        before = lab_query_total(lab)
        r = srv.dig("www.example.test.", "A")
        assert r.status == "REFUSED", f"loopback client not in --allow 10.0.0.0/8 must be REFUSED:\n{r.raw}"
        assert not r.answer
        assert lab_query_total(lab) == before, "a refused client's query was resolved anyway"


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_signal_exits_zero_and_releases_port(lab, sotto, free_port, sig):
    with sotto.serve(free_port) as srv:
        r = srv.dig("www.example.test.", "A")
        assert r.status == "NOERROR", r.raw
        code = srv.signal(sig)
        assert code is not None, f"sotto serve did not exit within 10 s of {sig.name}"
        assert code == 0, f"sotto serve exited {code} on {sig.name}:\n{srv.log()}"
    assert labmod.port_free("127.0.0.1", srv.port), f"port {srv.port} still bound after exit"


@pytest.mark.parametrize("kind", [socket.SOCK_DGRAM, socket.SOCK_STREAM], ids=["udp", "tcp"])
def test_taken_port_is_a_clear_error(sotto, free_port, kind):
    """A port another process holds (UDP or TCP alone) stops `serve` at once with exit 64 and an
    error naming the address, not a half-started server. The test harness relies on this text to
    start again on a fresh port when a CI neighbour takes the one it drew."""
    with socket.socket(socket.AF_INET, kind) as holder:
        holder.bind(("127.0.0.1", free_port))
        if kind == socket.SOCK_STREAM:
            holder.listen()
        r = sotto.run("serve", "--listen", f"127.0.0.1:{free_port}", "--allow-loopback", timeout=20)
    assert r.returncode == 64, f"exit {r.returncode}\n{r.stderr}"
    assert f"cannot listen on 127.0.0.1:{free_port}" in r.stderr and "Address already in use" in r.stderr, r.stderr


def test_burst_of_cold_queries_from_many_clients_each_get_their_own_answer(lab, sotto, free_port):
    """Answers made by resolutions on a loaded engine are sent together once its queued jobs have
    run (one sendmmsg for many clients), on an idle one each at once: either way each must reach
    the client that asked, for its name."""
    import secrets
    import select
    import socket

    import dns.message
    import dns.name
    import dns.rcode
    import dns.rdatatype

    tag = secrets.token_hex(3)
    with sotto.serve(free_port, "--no-encryption") as srv:
        warm = srv.dig("www.example.test.", "A")  # the delegations are cached; the names below are not
        assert warm.status == "NOERROR", warm.raw
        clients = []
        for i in range(60):
            s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            s.bind(("127.0.0.1", 0))
            # Every third name does not exist (NXDOMAIN); the rest hit the wildcard.
            name = f"b{i}-{tag}.{'nx' if i % 3 == 0 else 'wild'}.example.test."
            clients.append((s, name, dns.message.make_query(name, "A")))
        try:
            for s, _, q in clients:
                s.sendto(q.to_wire(), ("127.0.0.1", srv.port))
            wrong = []
            for s, name, q in clients:
                ready, _, _ = select.select([s], [], [], 10)
                assert ready, f"no answer for {name} within 10 s:\n{srv.log()}"
                r = dns.message.from_wire(s.recv(65535))
                if r.id != q.id or r.question != q.question:
                    wrong.append((name, r.question))
                    continue
                if name.split(".")[1] == "nx":
                    assert r.rcode() == dns.rcode.NXDOMAIN, r
                else:
                    assert r.rcode() == dns.rcode.NOERROR, r
                    a = r.find_rrset(r.answer, dns.name.from_text(name), 1, dns.rdatatype.A)
                    assert [x.address for x in a] == ["192.0.2.99"], r
            assert not wrong, f"answers for another client's question: {wrong[:5]}"
        finally:
            for s, _, _ in clients:
                s.close()


def test_tcp_client_pipelining_past_a_thousand_queries_gets_every_answer(lab, sotto, free_port):
    """A client that keeps one TCP connection and pipelines 1,500 queries (a forwarder, dnsperf)
    gets 1,500 answers under the defaults: no per-connection query limit, as in Unbound,
    PowerDNS Recursor and BIND. (With the old default of 1,000 Sotto closed the connection after
    its 1,000th answer and the queries pipelined past it went unanswered.)"""
    n = 1500
    queries = []
    for i in range(n):
        q = dns.message.make_query(f"p{i % 50}.wild.example.test.", "A")
        q.id = i
        queries.append(framed(q))
    with sotto.serve(free_port) as srv:
        for i in range(50):  # cached first: 1,500 resolutions at once would meet --max-resolutions
            assert srv.dig(f"p{i}.wild.example.test.", "A").status == "NOERROR"
        with socket.create_connection(("127.0.0.1", free_port), timeout=30) as s:
            # Sent from a thread: the answers must be read while the queries still go out.
            threading.Thread(target=lambda: s.sendall(b"".join(queries)), daemon=True).start()
            got: set[int] = set()
            try:
                while len(got) < n:
                    r = read_answer(s)
                    assert r.rcode() == dns.rcode.NOERROR and r.answer, f"query {r.id}: {r}"
                    got.add(r.id)
            except AssertionError as e:
                raise AssertionError(f"{len(got)} of {n} pipelined queries answered: {e}\n{srv.log()}") from None


def _open_file_limits(pid: int) -> tuple[int, int]:
    """Sotto's soft and hard limit on open files, from /proc/PID/limits."""
    with open(f"/proc/{pid}/limits") as f:
        for line in f:
            if line.startswith("Max open files"):
                soft, hard = line.split()[3:5]
                return int(soft), int(hard)
    raise AssertionError(f"no 'Max open files' line in /proc/{pid}/limits")


def test_serve_raises_its_soft_limit_on_open_files_to_the_hard_limit(lab, sotto, free_port):
    """Started with a soft limit of 256 open files (a busy resolver holds thousands: a socket
    per upstream query, DoT connection and client connection), Sotto raises it to the hard limit
    and says nothing about it; with a hard limit of 512 too it warns."""
    with sotto.serve(free_port, "--log-level", "info", nofile=(256, 8192)) as srv:
        assert _open_file_limits(srv.proc.pid) == (8192, 8192)
        r = srv.dig("www.example.test.", "A")
        assert r.status == "NOERROR" and r.answer == WWW, r.raw
        assert _logged(srv, "soft limit raised from 256 to 8192"), srv.log()
        assert "open files (hard limit" not in srv.log(), srv.log()
    with sotto.serve(free_port, nofile=(256, 512)) as srv:
        assert _open_file_limits(srv.proc.pid) == (512, 512)
        assert _logged(srv, "at most 512 open files (hard limit 512)"), srv.log()


def _logged(srv, text: str, seconds: float = 5.0) -> bool:
    """Whether `text` shows in the server's log within `seconds`."""
    deadline = time.monotonic() + seconds
    while text not in srv.log() and time.monotonic() < deadline:
        time.sleep(0.05)
    return text in srv.log()
