"""Hostile clients against a real `sotto serve` (issue 8): UDP floods held by the per-client rate
limit and the resolution cap, TCP connection floods held by the connection cap and the idle
timeout, a malformed-query barrage, ANY (RFC 8482) and networks outside --allow.

Every flood stays on loopback and is bounded (a few thousand packets). The peak RSS of the server
(VmHWM) after each flood is printed (run with -s to see it) and checked against a generous bound.
The lab is used for the legitimate queries sent before and after each flood.
"""

from __future__ import annotations

import json
import os
import random
import socket
import struct
import threading
import time

import pytest

from cases import WWW
from harness import MEMORY_SCALE, fmt_rrs, labmod, require, scaled, vmhwm_kb

# A debug build of sotto idles at some tens of MB; a flood must not grow it without bound.
RSS_BOUND_KB = 400 * 1024



def query(name: str, qtype: int = 1, qid: int | None = None, flags: int = 0x0100) -> bytes:
    qid = random.randrange(65536) if qid is None else qid
    wire = b"".join(bytes([len(label)]) + label.encode() for label in name.rstrip(".").split(".")) + b"\0"
    return struct.pack("!HHHHHH", qid, flags, 1, 0, 0, 0) + wire + struct.pack("!HH", qtype, 1)


def rcode_of(reply: bytes) -> int:
    return reply[3] & 0x0F


def stats(sotto, sock) -> dict:
    r = sotto.run("ctl", "--control", str(sock), "--json", "stats", timeout=30)
    assert r.returncode == 0, f"sotto ctl stats failed: {r.stderr}"
    data = json.loads(r.stdout)
    return data["stats"]["listener"]


def wait_for(path, seconds: float = 10.0) -> None:
    deadline = time.monotonic() + seconds
    while not path.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert path.exists(), f"{path} was not created"


def udp_flood(port: int, packets: list[bytes]) -> int:
    """Sends every packet from one socket as fast as the kernel takes them; returns replies seen."""
    replies = 0
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
        s.setblocking(False)
        for p in packets:
            while True:
                try:
                    s.sendto(p, ("127.0.0.1", port))
                    break
                except BlockingIOError:
                    time.sleep(0.001)
            try:
                while s.recv(65535):
                    replies += 1
            except BlockingIOError:
                pass
        s.setblocking(True)
        s.settimeout(1.0)
        try:
            while s.recv(65535):
                replies += 1
        except (socket.timeout, TimeoutError):
            pass
    return replies


@pytest.fixture
def served(lab, sotto, free_port, tmp_path):
    """Factory: serve(*flags) starts sotto serve with a control socket; yields (server, socket)."""
    running = []

    def start(*extra: str):
        sock = tmp_path / f"ctl{len(running)}.sock"
        srv = sotto.serve(free_port, "--control", str(sock), "--no-encryption", *extra)
        running.append(srv)
        wait_for(sock)
        return srv, sock

    yield start
    for srv in running:
        srv.stop()


def test_udp_flood_is_held_by_the_client_rate_limit(served, sotto):
    rate = 20
    srv, sock = served("--client-rate-limit", str(rate))
    first = srv.dig("www.example.test.", "A")
    assert first.status == "NOERROR" and first.answer == WWW, first.raw
    packets = [query("www.example.test.") for _ in range(5000)]
    start = time.monotonic()
    replies = udp_flood(srv.port, packets)
    elapsed = time.monotonic() - start
    assert srv.proc.poll() is None, f"sotto serve died under the UDP flood:\n{srv.log()}"
    hwm = vmhwm_kb(srv.proc.pid)
    counters = stats(sotto, sock)
    # The kernel drops what the socket buffer cannot hold; of what reached sotto, the bucket
    # (20/s, bursts of 20) lets through at most 20 + 20 per second of flood (plus the first dig).
    received = counters["queries"] - 1
    allowed = received - counters["rateLimited"]
    print(f"\nUDP flood: 5000 packets sent in {elapsed:.2f} s, {received} reached sotto, "
          f"{counters['rateLimited']} rate-limited, {replies} answered; sotto VmHWM {hwm} kB")
    assert counters["rateLimited"] > 0, counters
    assert allowed <= rate + rate * (elapsed + 1.5) + 2, (allowed, counters)
    assert replies <= allowed, (replies, counters)
    time.sleep(1.5)  # the bucket refills (dig would also retry)
    after = srv.dig("www.example.test.", "A")
    assert after.status == "NOERROR" and after.answer == WWW, f"no answer after the flood:\n{after.raw}"
    assert hwm < RSS_BOUND_KB, f"VmHWM {hwm} kB after the flood"


class BlackHole:
    """A UDP and TCP socket on 127.0.0.1 that takes queries and never answers: every resolution
    sent there lasts until the resolution deadline."""

    def __init__(self) -> None:
        # Both sockets on one port from outside the ephemeral range, retried if another process
        # takes it in between: binding UDP to port 0 and TCP to the same number failed a CI run
        # with EADDRINUSE (an outgoing TCP connection already held that ephemeral port).
        for _ in range(50):
            self.port = labmod.free_port("127.0.0.1")
            self.udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            self.tcp = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            try:
                self.udp.bind(("127.0.0.1", self.port))
                self.tcp.bind(("127.0.0.1", self.port))
                break
            except OSError:
                self.udp.close()
                self.tcp.close()
        else:
            raise RuntimeError("no port free for both UDP and TCP on 127.0.0.1")
        self.tcp.listen(64)
        self.received = 0
        self.stopping = False
        self.thread = threading.Thread(target=self._drain, daemon=True)
        self.thread.start()

    def _drain(self) -> None:
        self.udp.settimeout(0.2)
        while not self.stopping:
            try:
                self.udp.recv(65535)
                self.received += 1
            except (socket.timeout, TimeoutError, OSError):
                pass

    def close(self) -> None:
        self.stopping = True
        self.thread.join(timeout=2)
        self.udp.close()
        self.tcp.close()


def test_udp_flood_of_slow_resolutions_is_held_by_the_resolution_cap(sotto, free_port, tmp_path):
    hole = BlackHole()
    hints = tmp_path / "root.hints"
    hints.write_text(".  3600000 IN NS a.root.hole.\na.root.hole. 3600000 IN A 127.0.0.1\n")
    sock = tmp_path / "ctl.sock"
    srv = sotto.serve(free_port, "--do53-port", str(hole.port), "--no-encryption", "--control", str(sock),
                      "--max-resolutions", "20", "--client-rate-limit", "0", "--resolution-deadline", "20",
                      root_hints=str(hints))
    try:
        deadline = time.monotonic() + 20
        while not sock.exists() and time.monotonic() < deadline:
            assert srv.proc.poll() is None, f"sotto serve exited at start:\n{srv.log()}"
            time.sleep(0.05)
        # 2000 distinct names: each wants a resolution that hangs on the black hole for 20 s.
        packets = [query(f"n{i}.flood.test.") for i in range(2000)]
        replies = udp_flood(srv.port, packets)
        assert srv.proc.poll() is None, "sotto serve died under the flood"
        hwm = vmhwm_kb(srv.proc.pid)
        counters = stats(sotto, sock)
        print(f"\nresolution-cap flood: 2000 queries sent, {counters['queries']} reached sotto, "
              f"{counters['resolutionsShed']} shed, {replies} answered at once; sotto VmHWM {hwm} kB")
        # At most 20 resolutions ran (none can finish within the 20 s deadline); every other
        # query that reached sotto got SERVFAIL at once, and was counted.
        assert counters["resolutionsShed"] >= counters["queries"] - 20 > 0, counters
        assert counters["resolutionsInFlight"] <= 20, counters
        assert replies >= counters["resolutionsShed"] * 0.9, (replies, counters)
        assert hwm < RSS_BOUND_KB, f"VmHWM {hwm} kB after the flood"
    finally:
        srv.stop()
        hole.close()


def test_tcp_connection_flood_is_capped_and_idle_connections_close(served, sotto):
    srv, sock = served("--max-tcp-connections", "20", "--tcp-idle-timeout", "1")
    conns = []
    for _ in range(60):
        c = socket.create_connection(("127.0.0.1", srv.port), timeout=10)
        conns.append(c)
    # The server closes the 40 over the cap at once and the 20 admitted ones after 1 s idle:
    # every connection must see EOF (recv returns b"") without us sending anything.
    closed = 0
    for c in conns:
        try:
            if c.recv(1) == b"":
                closed += 1
        except (ConnectionResetError, socket.timeout, TimeoutError):
            pass
        c.close()
    assert srv.proc.poll() is None, f"sotto serve died under the TCP flood:\n{srv.log()}"
    assert closed == 60, f"only {closed} of 60 idle or excess connections were closed by the server"
    counters = stats(sotto, sock)
    hwm = vmhwm_kb(srv.proc.pid)
    print(f"\nTCP flood: 60 connections, {counters['tcpConnectionsRejected']} rejected, "
          f"{counters['tcpIdleClosed']} closed idle; sotto VmHWM {hwm} kB")
    assert counters["tcpConnectionsRejected"] >= 40, counters
    assert counters["tcpIdleClosed"] >= 1, counters
    r = srv.dig("www.example.test.", "A", "+tcp")
    assert r.status == "NOERROR" and r.answer == WWW, f"legit TCP query not answered after the flood:\n{r.raw}"
    assert hwm < RSS_BOUND_KB


def test_tcp_client_trickling_bytes_is_closed_at_the_idle_timeout(served, sotto):
    """A byte every 0.3 s, never a whole query: only whole queries count as activity, so the
    connection is closed after the 1 s idle timeout instead of holding its slot for ever."""
    srv, sock = served("--tcp-idle-timeout", "1")
    q = query("www.example.test.")
    frame = struct.pack("!H", len(q)) + q
    with socket.create_connection(("127.0.0.1", srv.port), timeout=10) as c:
        c.settimeout(0.3)
        start, closed = time.monotonic(), False
        for b in frame[:-1]:  # never completes the frame: its length says one more octet comes
            try:
                c.send(bytes([b]))
                if c.recv(1) == b"":
                    closed = True
                    break
            except (socket.timeout, TimeoutError):
                continue
            except (BrokenPipeError, ConnectionResetError):
                closed = True
                break
            if time.monotonic() - start > scaled(6):
                break
    assert closed, "a connection that never completed a query was kept open past the idle timeout"
    assert stats(sotto, sock)["tcpIdleClosed"] >= 1


def vmrss_kb(pid: int) -> int:
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError(f"no VmRSS for {pid}")


def test_tcp_client_that_never_reads_cannot_grow_the_servers_memory(served, sotto):
    """A client pipelines cached queries as fast as it can and reads none of the answers. The
    server stops reading the connection once its unsent answers pass NIO's high-water mark, so
    its memory stays put; the other clients are answered meanwhile, and once the client reads,
    every query it got across is answered."""
    srv, sock = served("--client-rate-limit", "0", "--tcp-idle-timeout", "30")
    assert srv.dig("www.example.test.", "A").status == "NOERROR"  # cached: answered on the event loop
    q = query("www.example.test.", qid=0x1234)
    frame = struct.pack("!H", len(q)) + q
    chunk = frame * 4096
    base = vmrss_kb(srv.proc.pid)
    c = socket.create_connection(("127.0.0.1", srv.port), timeout=10)
    c.setblocking(False)
    sent, deadline = 0, time.monotonic() + scaled(4)
    while time.monotonic() < deadline and sent < 256 * len(chunk):
        try:
            sent += c.send(chunk[sent % len(chunk):])
        except BlockingIOError:
            time.sleep(0.01)
    time.sleep(0.5)
    grown = vmrss_kb(srv.proc.pid) - base
    queries = sent // len(frame)
    print(f"\nnever-reading client: {sent} bytes ({queries} queries) sent in 4 s; RSS grew {grown} kB")
    # dig's 5 s, scaled in sanitizer runs: under ASan, with the machine busy beside it, the
    # server once took longer than 5 s to get to the other client (ci162).
    other = srv.dig("www.example.test.", "A", "+tcp", f"+time={round(scaled(5))}")
    assert other.status == "NOERROR" and other.answer == WWW, f"another TCP client was not answered:\n{other.raw}"
    assert stats(sotto, sock)["tcpReadsPaused"] >= 1
    # Without backpressure the answers to ~100k queries a second queue up in the server (32.6 MB
    # for 9.4 MB of queries before the fix). A bound for the normal build only: under ASan the
    # quarantine of freed blocks alone grew it 63 MB (ci151); there tcpReadsPaused above and the
    # answers below are what the run checks.
    if MEMORY_SCALE == 1:
        assert grown < 24 * 1024, f"server memory grew {grown} kB while the client did not read"
    # Now the client reads: every whole query it sent is answered, in order, NOERROR.
    c.setblocking(True)
    c.settimeout(scaled(3))
    buf, at, answers = bytearray(), 0, 0
    try:
        while answers < queries:
            data = c.recv(1 << 20)
            if not data:
                break
            buf += data
            # An offset into the buffer, trimmed once per read: slicing off each answer would copy
            # the rest of a megabyte per answer.
            while len(buf) - at >= 2 and len(buf) - at >= 2 + struct.unpack_from("!H", buf, at)[0]:
                n = struct.unpack_from("!H", buf, at)[0]
                msg = bytes(buf[at + 2:at + 2 + n])
                at += 2 + n
                assert msg[:2] == b"\x12\x34" and rcode_of(msg) == 0, msg.hex()
                answers += 1
            del buf[:at]
            at = 0
    except (socket.timeout, TimeoutError):
        pass
    c.close()
    assert answers == queries, f"{answers} answers to {queries} whole queries"


def malformed_barrage(rng: random.Random) -> list[tuple[str, bytes]]:
    """Classes of broken queries, each with what the server must do: 'formerr' or 'drop'."""
    cases: list[tuple[str, bytes]] = []
    for i in range(300):
        qid = 0x4000 + i
        kind = i % 6
        if kind == 0:  # truncated header: nothing to answer
            cases.append(("drop", bytes(rng.randrange(256) for _ in range(rng.randrange(12)))))
        elif kind == 1:  # claims one question, carries none
            cases.append(("formerr", struct.pack("!HHHHHH", qid, 0x0100, 1, 0, 0, 0)))
        elif kind == 2:  # absurd counts
            cases.append(("formerr", query("www.example.test.", qid=qid)[:4] + struct.pack("!HHHH", 1, 65535, 65535, 65535)
                          + query("www.example.test.")[12:]))
        elif kind == 3:  # compression pointer to itself
            cases.append(("formerr", struct.pack("!HHHHHH", qid, 0x0100, 1, 0, 0, 0) + b"\xc0\x0c\x00\x01\x00\x01"))
        elif kind == 4:  # a response (QR=1): never answered
            cases.append(("drop", query("www.example.test.", qid=qid, flags=0x8180)))
        else:  # label running past the end
            cases.append(("formerr", struct.pack("!HHHHHH", qid, 0x0100, 1, 0, 0, 0) + b"\x3fabc"))
    return cases


def test_malformed_query_barrage_gets_formerr_or_nothing(served, sotto):
    srv, sock = served("--client-rate-limit", "0")
    rng = random.Random(8)
    cases = malformed_barrage(rng)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        # No short timer decides "dropped": after each case that must be dropped, a sentinel
        # (a question count with no question: FORMERR) follows on the same socket, and the next
        # reply must be the sentinel's. Loopback UDP keeps order and the listener answers a
        # malformed query where it reads it, so a wrongly answered case fails every time, on any
        # machine speed.
        s.settimeout(scaled(5))
        for i, (expect, payload) in enumerate(cases):
            s.sendto(payload, ("127.0.0.1", srv.port))
            want = payload
            if expect == "drop":
                want = struct.pack("!HHHHHH", 0x7000 + i, 0x0100, 1, 0, 0, 0)
                s.sendto(want, ("127.0.0.1", srv.port))
            try:
                reply = s.recv(65535)
            except (socket.timeout, TimeoutError):
                reply = None
            assert reply is not None, f"no FORMERR for {want.hex()}"
            if expect == "drop":
                assert reply[:2] == want[:2], f"answered {payload.hex()} (must be dropped): {reply.hex()}"
            assert reply[:2] == want[:2] and rcode_of(reply) == 1, (want.hex(), reply.hex())
        # Pure noise, also over TCP: whatever comes back, the server must live.
        for _ in range(2000):
            s.sendto(bytes(rng.randrange(256) for _ in range(rng.randrange(1, 600))), ("127.0.0.1", srv.port))
    for _ in range(50):
        noise = bytes(rng.randrange(256) for _ in range(rng.randrange(1, 300)))
        with socket.create_connection(("127.0.0.1", srv.port), timeout=5) as c:
            c.sendall(struct.pack("!H", len(noise)) + noise)
            c.shutdown(socket.SHUT_WR)
            try:
                while c.recv(65535):
                    pass
            except (ConnectionResetError, socket.timeout, TimeoutError):
                pass
    assert srv.proc.poll() is None, f"sotto serve died under malformed queries:\n{srv.log()}"
    counters = stats(sotto, sock)
    # 200 FORMERR cases and 100 sentinels; 100 cases dropped.
    assert counters["formErrors"] >= 300 and counters["dropped"] >= 100, counters
    r = srv.dig("www.example.test.", "A")
    assert r.status == "NOERROR" and r.answer == WWW, r.raw


def test_any_gets_the_rfc8482_hinfo(served, sotto):
    srv, sock = served()
    r = srv.dig("www.example.test.", "ANY")
    assert r.status == "NOERROR", r.raw
    assert len(r.answer) == 1, fmt_rrs(r.answer)
    ((owner, rtype, data),) = r.answer
    assert owner == "www.example.test." and rtype == "HINFO" and data.lower() == '"rfc8482" ""', r.raw
    missing = srv.dig("nope.example.test.", "ANY")
    assert missing.status == "NXDOMAIN" and not missing.answer, missing.raw
    assert stats(sotto, sock)["anyQueries"] == 2


def upstream_queries(sotto, sock) -> int:
    """Queries sent to authoritative servers so far: the Privacy panel's hop counts."""
    r = sotto.run("ctl", "--control", str(sock), "--json", "stats", timeout=30)
    assert r.returncode == 0, f"sotto ctl stats failed: {r.stderr}"
    privacy = json.loads(r.stdout)["stats"]["privacy"]
    return privacy["cleartextHops"] + privacy["encryptedHops"]


def test_meta_query_types_get_formerr_without_upstream_queries(served, sotto):
    """OPT, TSIG, TKEY, MAILA/MAILB and 128-248 are not questions to resolve (RFC 6895 §3.1):
    FORMERR at once, as Unbound answers, not SERVFAIL after a round of upstream queries."""
    srv, sock = served()
    assert srv.dig("www.example.test.", "A").status == "NOERROR"
    assert upstream_queries(sotto, sock) > 0
    before, formerr = upstream_queries(sotto, sock), stats(sotto, sock)["formErrors"]
    types = ["TYPE41", "TYPE128", "TYPE248", "TYPE249", "TYPE250", "MAILB", "MAILA"]
    for i, t in enumerate(types):
        r = srv.dig(f"meta{i}.example.test.", t)
        assert r.status == "FORMERR" and not r.answer, (t, r.raw)
    assert upstream_queries(sotto, sock) == before, "a meta-type query was sent upstream"
    assert stats(sotto, sock)["formErrors"] == formerr + len(types)
    # An ordinary type next to them still resolves (URI, 256, is just past the meta range).
    assert srv.dig("meta0.example.test.", "TYPE256").status in ("NOERROR", "NXDOMAIN")
    assert upstream_queries(sotto, sock) > before


@pytest.mark.parametrize("port", [7, 19])
def test_queries_from_echo_and_chargen_ports_are_dropped(served, sotto, port):
    """A datagram "from" echo (7) or chargen (19) is a spoofed start of a packet loop: chargen's
    reply text parses as a query header, and each FORMERR or answer would draw another. Sent from
    a socket bound to that port (root), nothing comes back; from any other port, the same query
    is answered."""
    require(os.geteuid() == 0, f"binding UDP port {port} needs root")
    srv, sock = served()
    # Cached first: both queries below are answered (or not) in arrival order, on the fast path.
    assert srv.dig("www.example.test.", "A").status == "NOERROR"
    q = query("www.example.test.", qid=0x0707)
    dropped = stats(sotto, sock)["dropped"]
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as low, \
            socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as high:
        try:
            low.bind(("127.0.0.1", port))
        except OSError as e:
            require(False, f"UDP port {port} on 127.0.0.1 is taken: {e}")
        low.sendto(q, ("127.0.0.1", srv.port))
        high.settimeout(scaled(5))
        high.sendto(q, ("127.0.0.1", srv.port))  # after it on the same listener: answered
        reply = high.recv(65535)
        assert reply[:2] == q[:2] and rcode_of(reply) == 0, reply.hex()
        low.setblocking(False)
        try:
            got = low.recv(65535)
        except BlockingIOError:
            got = None
        assert got is None, f"answered a query from port {port}: {got.hex()}"
    assert stats(sotto, sock)["dropped"] == dropped + 1


def test_networks_outside_allow_are_refused_over_udp_and_tcp(lab, served, sotto):
    srv, sock = served("--allow", "10.0.0.0/8")
    udp = srv.dig("www.example.test.", "A")
    tcp = srv.dig("www.example.test.", "A", "+tcp")
    assert udp.status == "REFUSED" and not udp.answer, udp.raw
    assert tcp.status == "REFUSED" and not tcp.answer, tcp.raw
    # Recursion is not available to them: RA must not say it is.
    assert "ra" not in udp.flags and "ra" not in tcp.flags, (udp.flags, tcp.flags)
    counters = stats(sotto, sock)
    assert counters["notAllowed"] >= 2 and counters["refused"] >= 2, counters


def test_rd0_queries_cannot_snoop_the_cache(lab, served, sotto):
    """A query with RD=0 asks what the cache holds; answering it would tell any client which names
    the resolver's other users looked up. It is refused (EDE 18), over UDP (fast path included:
    the name is cached) and TCP, for cached and uncached names alike."""
    srv, sock = served()
    first = srv.dig("www.example.test.", "A")
    assert first.status == "NOERROR" and first.answer == WWW and "ra" in first.flags, first.raw
    before = stats(sotto, sock)
    for opts in ((), ("+tcp",)):
        for name in ("www.example.test.", "never-asked.example.test."):
            r = srv.dig(name, "A", "+norec", *opts)
            assert r.status == "REFUSED" and not r.answer and not r.authority, r.raw
            assert "EDE: 18" in r.raw, r.raw
    after = stats(sotto, sock)
    assert after["refused"] - before["refused"] == 4, (before, after)
    # Ordinary recursive queries are still answered from the cache.
    again = srv.dig("www.example.test.", "A")
    assert again.status == "NOERROR" and again.answer == WWW, again.raw


def spoofed_udp(src: str, sport: int, dport: int, payload: bytes) -> None:
    """Sends one UDP datagram to 127.0.0.1:dport with the source address src (raw socket, root)."""
    def checksum(b: bytes) -> int:
        b += b"\0" * (len(b) % 2)
        s = sum(struct.unpack("!%dH" % (len(b) // 2), b))
        s = (s >> 16) + (s & 0xFFFF)
        return ~(s + (s >> 16)) & 0xFFFF
    udp = struct.pack("!HHHH", sport, dport, 8 + len(payload), 0) + payload
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), random.randrange(65536), 0, 64, 17, 0,
                     socket.inet_aton(src), socket.inet_aton("127.0.0.1"))
    ip = ip[:10] + struct.pack("!H", checksum(ip)) + ip[12:]
    with socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW) as s:
        s.sendto(ip + udp, ("127.0.0.1", 0))


def test_answers_the_kernel_will_not_send_are_counted_and_logged_once(served, sotto):
    """Queries from 127.255.255.255 (the loopback network's broadcast address; the kernel delivers
    them) get answers the kernel refuses to send (EACCES: broadcast without SO_BROADCAST). They
    used to vanish uncounted; they must be counted in `sendFailures`, logged once, and the server
    must go on answering."""
    require(os.geteuid() == 0, "root (a raw socket sends the queries from the broadcast address)")
    srv, sock = served()
    first = srv.dig("www.example.test.", "A")
    assert first.status == "NOERROR" and first.answer == WWW, first.raw
    before = stats(sotto, sock)
    # Cached (the fast path's batched send) and fresh names (the full path's send after resolving).
    names = ["www.example.test."] * 3 + [f"nosend{i}.example.test." for i in range(2)]
    for i, name in enumerate(names):
        spoofed_udp("127.255.255.255", 40000 + i, srv.port, query(name))
    deadline = time.monotonic() + 15
    after = before
    while time.monotonic() < deadline:
        after = stats(sotto, sock)
        if after["sendFailures"] - before["sendFailures"] >= len(names):
            break
        time.sleep(0.2)
    assert after["queries"] - before["queries"] >= len(names), (before, after)
    assert after["sendFailures"] - before["sendFailures"] == len(names), (before, after)
    log = srv.log()
    assert log.count("UDP response to a client not sent: Permission denied") == 1, log
    again = srv.dig("www.example.test.", "A")
    assert again.status == "NOERROR" and again.answer == WWW, again.raw
