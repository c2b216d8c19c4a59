#!/usr/bin/env python3
"""Scriptable misbehaving authoritative servers for the Sotto lab (dnspython, from PyPI).

One process binds UDP and TCP port 53 on every address of BEHAVIOURS (127.53.30.x) and
answers according to the behaviour of the address a query arrived on.  Each behaviour
serves the zone ``<behaviour>.test.`` (delegated from test.zone); ``good`` (127.53.30.99)
answers correctly for every hostile zone and is the second NS of the zones where a
correct answer exists.

Every zone holds ``www.<zone> A 192.0.2.1`` (data only: nothing ever sends traffic to it).

    python3 Lab/hostile_server.py [--port 53]     runs until SIGTERM
    python3 Lab/hostile_server.py --root ADDR     a well-behaved root server on ADDR only
        (www. A 192.0.2.1, ns1. A ADDR): the far end of the netem link in test_faults.py;
        with --impair-file FILE ("LOSS DELAY_MS", re-read at every datagram) it drops each UDP
        query and each UDP answer with probability LOSS and delays answers by 2 x DELAY_MS
        (the fallback where the kernel has no sch_netem); with --tcp-close-second every UDP
        answer is truncated (TC=1, no records) and each TCP connection answers its first query
        and closes at its second without answering it (a server's close crossing a query),
        logging "tcp conn N query K NAME: answered|closed"
"""

from __future__ import annotations

import argparse
import random
import signal
import socket
import socketserver
import struct
import sys
import threading
import time

import dns.flags
import dns.message
import dns.name
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.rrset

GOOD_ADDRESS = "127.53.30.99"
BEHAVIOURS = {
    "127.53.30.1": "wrongid",      # UDP: 3 replies with a wrong message ID; TCP correct
    "127.53.30.2": "wrongq",       # UDP: 3 replies for another question; TCP correct
    "127.53.30.3": "wrongport",    # UDP: the reply comes from another source port; TCP: closed
    "127.53.30.4": "poison",       # correct answer + out-of-bailiwick A/NS for example.test./other.lab.
    "127.53.30.5": "refloop",      # every query: a referral to the zone itself (no progress)
    "127.53.30.6": "cnameloop",    # a.Z CNAME b.Z, b.Z CNAME a.Z
    "127.53.30.7": "dnameloop",    # a.Z DNAME b.Z, b.Z DNAME a.Z
    "127.53.30.8": "nxns",         # referral of every child to 300 NS names without glue
    "127.53.30.9": "tcforever",    # UDP: TC=1 always; TCP: garbage then close
    "127.53.30.10": "big",         # UDP and TCP: 400 A records (> 12 kB), ignoring the EDNS size
    "127.53.30.11": "ptrloop",     # answer owner is a compression pointer to itself
    "127.53.30.12": "late",        # correct answer 2.5 s late (after Sotto's retransmit timeouts)
    "127.53.30.13": "cnamechain",  # cN.Z CNAME c(N+1).Z without end: only a chain budget stops it
    "127.53.30.14": "slow",        # every answer SLOW_SECONDS late; www.<SLOW_LABELS>.Z below empty non-terminals
    "127.53.30.15": "noedns",      # from before EDNS: FORMERR without OPT to a query with OPT; logs each query
    GOOD_ADDRESS: "good",
}
LATE_SECONDS = 2.5
SLOW_SECONDS = 0.6  # under the 800 ms retransmit timeout for a server never heard from
SLOW_LABELS = "l7.l6.l5.l4.l3.l2.l1"  # QNAME minimisation asks for each: 8 slow answers for www.<these>.slow.test.
NXNS_COUNT = 300
WWW_ADDRESS = "192.0.2.1"
POISON_ADDRESS = "192.0.2.66"   # what the poisoner claims www.example.test. / end.other.lab. are


def zone_of(qname: dns.name.Name) -> dns.name.Name | None:
    """The hostile zone <behaviour>.test. a name belongs to."""
    labels = qname.labels
    if len(labels) >= 3 and labels[-2].lower() == b"test":
        return dns.name.Name(labels[-3:])
    return None


def rrset(name, rdtype: str, *data: str, ttl: int = 300):
    return dns.rrset.from_text(name, ttl, "IN", rdtype, *data)


def good_answer(q: dns.message.Message, zone: dns.name.Name, behaviour: str) -> dns.message.Message:
    """The correct authoritative answer from zone data: SOA/NS at the apex, ns1/ns2/www A."""
    r = dns.message.make_response(q)
    r.flags |= dns.flags.AA
    qname, qtype = q.question[0].name, q.question[0].rdtype
    apex_soa = rrset(zone, "SOA", f"ns1.{zone} hostmaster.{zone} 1 300 300 600 60")
    addrs = {dns.name.from_text("www", zone): WWW_ADDRESS,
             dns.name.from_text("ns2", zone): GOOD_ADDRESS}
    if behaviour != "good":
        addrs[dns.name.from_text("ns1", zone)] = next(a for a, b in BEHAVIOURS.items() if b == behaviour)
    if qname == zone and qtype == dns.rdatatype.SOA:
        r.answer.append(apex_soa)
    elif qname == zone and qtype == dns.rdatatype.NS:
        r.answer.append(rrset(zone, "NS", f"ns1.{zone}"))
    elif qname in addrs:
        if qtype == dns.rdatatype.A:
            r.answer.append(rrset(qname, "A", addrs[qname]))
        else:
            r.authority.append(apex_soa)
    elif qname == zone:
        r.authority.append(apex_soa)
    else:
        r.set_rcode(dns.rcode.NXDOMAIN)
        r.authority.append(apex_soa)
    return r


def slow_answer(q: dns.message.Message, zone: dns.name.Name) -> dns.message.Message:
    """slow.test.: www.<SLOW_LABELS>.<zone> A 192.0.2.1; the names between it and the apex are
    empty non-terminals (NOERROR, no data), so a minimising resolver asks one label at a time."""
    www = dns.name.from_text(f"www.{SLOW_LABELS}", zone)
    qname = q.question[0].name
    if qname != zone and qname != www and www.is_subdomain(qname):
        r = dns.message.make_response(q)
        r.flags |= dns.flags.AA
        r.authority.append(rrset(zone, "SOA", f"ns1.{zone} hostmaster.{zone} 1 300 300 600 60"))
        return r
    if qname == www:
        r = dns.message.make_response(q)
        r.flags |= dns.flags.AA
        if q.question[0].rdtype == dns.rdatatype.A:
            r.answer.append(rrset(qname, "A", WWW_ADDRESS))
        else:
            r.authority.append(rrset(zone, "SOA", f"ns1.{zone} hostmaster.{zone} 1 300 300 600 60"))
        return r
    return good_answer(q, zone, "slow")


ROOT_ADDRESS: list[str] = []
# --tcp-close-second (with --root): UDP answers truncated, TCP connections close at their second query.
TCP_CLOSE_SECOND: list[bool] = []
TCP_CONNECTIONS = [0]
TCP_CONNECTIONS_LOCK = threading.Lock()


def root_answer(q: dns.message.Message, address: str) -> dns.message.Message:
    """A root server authoritative for everything: ., ns1. and www."""
    r = dns.message.make_response(q)
    r.flags |= dns.flags.AA
    qname, qtype = q.question[0].name, q.question[0].rdtype
    root = dns.name.root
    soa = rrset(root, "SOA", "ns1. hostmaster. 1 300 300 600 60")
    data = {(root, dns.rdatatype.NS): rrset(root, "NS", "ns1."),
            (root, dns.rdatatype.SOA): soa,
            (dns.name.from_text("ns1."), dns.rdatatype.A): rrset("ns1.", "A", address),
            (dns.name.from_text("www."), dns.rdatatype.A): rrset("www.", "A", WWW_ADDRESS)}
    if (qname, qtype) in data:
        r.answer.append(data[(qname, qtype)])
        if qtype == dns.rdatatype.NS:
            r.additional.append(data[(dns.name.from_text("ns1."), dns.rdatatype.A)])
    else:
        if qname not in (root, dns.name.from_text("ns1."), dns.name.from_text("www.")):
            r.set_rcode(dns.rcode.NXDOMAIN)
        r.authority.append(soa)
    return r


def respond(q: dns.message.Message, behaviour: str, tcp: bool) -> list[bytes] | None:
    """Wire responses to send (several for the UDP spoof-like cases); None = close/ignore."""
    qname = q.question[0].name
    zone = zone_of(qname)
    if zone is None:
        if behaviour != "root":
            r = dns.message.make_response(q)
            r.set_rcode(dns.rcode.REFUSED)
            return [r.to_wire(max_size=65535)]
    if behaviour == "root":
        return [root_answer(q, ROOT_ADDRESS[0]).to_wire(max_size=65535)]
    if behaviour == "good" or (tcp and behaviour in ("wrongid", "wrongq")):
        return [good_answer(q, zone, behaviour if behaviour != "good" else "good").to_wire(max_size=65535)]
    if behaviour == "noedns":
        # RFC 6891 §7: a responder without EDNS answers a query with an OPT record FORMERR, no OPT.
        print(f"noedns {'edns' if q.edns >= 0 else 'plain'} {'tcp' if tcp else 'udp'} {qname}", flush=True)
        if q.edns >= 0:
            r = dns.message.make_response(q)
            r.use_edns(False)
            r.set_rcode(dns.rcode.FORMERR)
            return [r.to_wire(max_size=65535)]
        return [good_answer(q, zone, behaviour).to_wire(max_size=65535)]
    if behaviour == "wrongid":
        out = []
        for delta in (1, 0x5353, 0x8000):
            r = good_answer(q, zone, behaviour)
            r.id = (q.id + delta) & 0xFFFF
            r.answer = [rrset(qname, "A", POISON_ADDRESS)] if r.answer else r.answer
            out.append(r.to_wire(max_size=65535))
        return out
    if behaviour == "wrongq":
        other = dns.name.from_text("www.example.test.")
        fake = dns.message.make_query(other, "A")
        fake.id = q.id
        r = dns.message.make_response(fake)
        r.flags |= dns.flags.AA
        r.answer.append(rrset(other, "A", POISON_ADDRESS))
        return [r.to_wire(max_size=65535)] * 3
    if behaviour == "poison":
        r = good_answer(q, zone, behaviour)
        r.answer.append(rrset("end.other.lab.", "A", POISON_ADDRESS))
        r.authority.append(rrset("example.test.", "NS", f"ns1.{zone}"))
        r.authority.append(rrset("other.lab.", "NS", f"ns1.{zone}"))
        r.additional.append(rrset("www.example.test.", "A", POISON_ADDRESS))
        r.additional.append(rrset("ns1.example.test.", "A", POISON_ADDRESS))
        return [r.to_wire(max_size=65535)]
    if behaviour == "refloop":
        r = dns.message.make_response(q)
        r.authority.append(rrset(zone, "NS", f"ns1.{zone}"))
        r.additional.append(rrset(f"ns1.{zone}", "A", "127.53.30.5"))
        return [r.to_wire(max_size=65535)]
    if behaviour == "cnameloop":
        a, b = dns.name.from_text("a", zone), dns.name.from_text("b", zone)
        r = dns.message.make_response(q)
        r.flags |= dns.flags.AA
        if qname in (a, b):
            r.answer.append(rrset(qname, "CNAME", str(b if qname == a else a)))
            return [r.to_wire(max_size=65535)]
        return [good_answer(q, zone, behaviour).to_wire(max_size=65535)]
    if behaviour == "cnamechain":
        first = qname.labels[0].decode().lower()
        if len(qname.labels) == len(zone.labels) + 1 and first.startswith("c") and first[1:].isdigit():
            r = dns.message.make_response(q)
            r.flags |= dns.flags.AA
            r.answer.append(rrset(qname, "CNAME", f"c{int(first[1:]) + 1}.{zone}"))
            return [r.to_wire(max_size=65535)]
        return [good_answer(q, zone, behaviour).to_wire(max_size=65535)]
    if behaviour == "dnameloop":
        a, b = dns.name.from_text("a", zone), dns.name.from_text("b", zone)
        r = dns.message.make_response(q)
        r.flags |= dns.flags.AA
        for src, dst in ((a, b), (b, a)):
            if qname.is_subdomain(src) and qname != src:
                r.answer.append(rrset(src, "DNAME", str(dst)))
                target = qname.relativize(src).derelativize(dst)
                if len(target.to_wire()) > 255:
                    r.set_rcode(dns.rcode.YXDOMAIN)
                else:
                    r.answer.append(rrset(qname, "CNAME", str(target)))
                return [r.to_wire(max_size=65535)]
            if qname == src:  # the DNAME owner exists: its DNAME, or NODATA for other types
                if q.question[0].rdtype == dns.rdatatype.DNAME:
                    r.answer.append(rrset(src, "DNAME", str(dst)))
                else:
                    r.authority.append(rrset(zone, "SOA", f"ns1.{zone} hostmaster.{zone} 1 300 300 600 60"))
                return [r.to_wire(max_size=65535)]
        return [good_answer(q, zone, behaviour).to_wire(max_size=65535)]
    if behaviour == "nxns":
        rel = qname.relativize(zone)
        if qname == zone or rel.labels == () or qname.labels[0].lower() == b"ns1":
            return [good_answer(q, zone, behaviour).to_wire(max_size=65535)]
        child = dns.name.Name(qname.labels[-(len(zone.labels) + 1):])
        r = dns.message.make_response(q)
        # NS names in other.lab. (served by the lab's NSD): each one costs the victim a query.
        r.authority.append(rrset(child, "NS", *[f"n{i}.victim.other.lab." for i in range(NXNS_COUNT)]))
        wire = r.to_wire(max_size=65535)
        if not tcp and len(wire) > max(512, q.payload):
            r = dns.message.make_response(q)
            r.flags |= dns.flags.TC
            wire = r.to_wire(max_size=65535)
        return [wire]
    if behaviour == "tcforever":
        if tcp:
            return [b"\x00\x10" + b"\xff" * 9]  # a length prefix, then garbage, then close
        r = dns.message.make_response(q)
        r.flags |= dns.flags.TC
        return [r.to_wire(max_size=65535)]
    if behaviour == "big":
        r = good_answer(q, zone, behaviour)
        if r.answer and qname.labels[0].lower() == b"www":
            # WWW_ADDRESS + 399 others, none of them POISON_ADDRESS.
            r.answer = [rrset(qname, "A", WWW_ADDRESS, *[f"198.51.100.{i}" for i in range(1, 255)],
                              *[f"203.0.113.{i}" for i in range(1, 146)])]
        return [r.to_wire(max_size=65535)]
    if behaviour == "ptrloop":
        r = good_answer(q, zone, behaviour)
        wire = bytearray(r.to_wire(max_size=65535))
        if not r.answer:
            return [bytes(wire)]
        # Rebuild: header + question, then one answer whose owner is a pointer to itself.
        qlen = 12 + len(q.question[0].name.to_wire()) + 4
        head = bytearray(wire[:qlen])
        head[6:8] = struct.pack("!H", 1)
        head[8:12] = b"\x00\x00\x00\x00"
        owner = struct.pack("!H", 0xC000 | qlen)  # points at itself
        rdata = socket.inet_aton(POISON_ADDRESS)
        return [bytes(head) + owner + struct.pack("!HHIH", 1, 1, 300, 4) + rdata]
    if behaviour == "late":
        time.sleep(LATE_SECONDS)
        return [good_answer(q, zone, behaviour).to_wire(max_size=65535)]
    if behaviour == "slow":
        time.sleep(SLOW_SECONDS)
        return [slow_answer(q, zone).to_wire(max_size=65535)]
    if behaviour == "wrongport":
        return []  # handled by the UDP handler
    raise ValueError(behaviour)


IMPAIR_FILE: list[str] = []


def impairment() -> tuple[float, float]:
    """(loss probability, one-way delay in seconds) from --impair-file; (0, 0) without one."""
    if not IMPAIR_FILE:
        return 0.0, 0.0
    try:
        loss, delay = open(IMPAIR_FILE[0]).read().split()[:2]
        return float(loss), float(delay) / 1000
    except (OSError, ValueError):
        return 0.0, 0.0


def impaired_log(what: str) -> None:
    """With --impair-file: one line per datagram dropped or answered, with a monotonic timestamp
    (the netem test prints the tail when a lookup fails)."""
    if IMPAIR_FILE:
        print(f"{time.monotonic():.3f} {what}", flush=True)


class UDPHandler(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        data, sock = self.request
        behaviour = self.server.behaviour  # type: ignore[attr-defined]
        loss, delay = impairment()
        if loss and random.random() < loss:
            impaired_log(f"query from {self.client_address[1]} dropped")
            return  # the query is lost
        try:
            q = dns.message.from_wire(data)
            if len(q.question) != 1:
                return
        except Exception:  # noqa: BLE001 -- anything unparsable is ignored
            return
        if behaviour == "wrongport":
            r = good_answer(q, zone_of(q.question[0].name) or dns.name.root, behaviour) \
                if zone_of(q.question[0].name) else dns.message.make_response(q)
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as other:
                other.bind((self.server.server_address[0], 0))
                other.sendto(r.to_wire(max_size=65535), self.client_address)
            return
        out = respond(q, behaviour, tcp=False) or []
        if TCP_CLOSE_SECOND and out:
            r = dns.message.from_wire(out[0])
            r.flags |= dns.flags.TC
            r.answer, r.authority, r.additional = [], [], []
            out = [r.to_wire(max_size=65535)]
        if delay:
            time.sleep(2 * delay)
        for wire in out:
            if loss and random.random() < loss:
                impaired_log(f"answer to {q.question[0].name} id {q.id} port {self.client_address[1]} dropped")
                continue  # the answer is lost
            sock.sendto(wire, self.client_address)
            impaired_log(f"answer to {q.question[0].name} id {q.id} port {self.client_address[1]} sent")


class TCPHandler(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        conn: socket.socket = self.request
        conn.settimeout(5)
        behaviour = self.server.behaviour  # type: ignore[attr-defined]
        if behaviour == "wrongport":
            return  # closed
        with TCP_CONNECTIONS_LOCK:  # one thread per connection
            TCP_CONNECTIONS[0] += 1
            number, queries = TCP_CONNECTIONS[0], 0
        try:
            while True:
                head = conn.recv(2, socket.MSG_WAITALL)
                if len(head) < 2:
                    return
                (n,) = struct.unpack("!H", head)
                data = conn.recv(n, socket.MSG_WAITALL)
                q = dns.message.from_wire(data)
                queries += 1
                if TCP_CLOSE_SECOND:
                    verdict = "closed" if queries >= 2 else "answered"
                    print(f"tcp conn {number} query {queries} {q.question[0].name}: {verdict}", flush=True)
                    if queries >= 2:
                        return
                out = respond(q, behaviour, tcp=True)
                if out is None:
                    return
                for wire in out:
                    if behaviour == "tcforever":
                        conn.sendall(wire)
                        return
                    conn.sendall(struct.pack("!H", len(wire)) + wire)
        except Exception:  # noqa: BLE001
            return


class UDPServer(socketserver.ThreadingMixIn, socketserver.UDPServer):
    daemon_threads = True


class TCPServer(socketserver.ThreadingMixIn, socketserver.TCPServer):
    daemon_threads = True
    allow_reuse_address = True


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--port", type=int, default=53)
    ap.add_argument("--root", metavar="ADDR", help="serve only a root zone on ADDR")
    ap.add_argument("--impair-file", metavar="FILE", help="'LOSS DELAY_MS': userspace loss and delay")
    ap.add_argument("--tcp-close-second", action="store_true",
                    help="with --root: UDP answers truncated; TCP closes at each connection's second query")
    args = ap.parse_args()
    if args.tcp_close_second:
        TCP_CLOSE_SECOND.append(True)
    if args.impair_file:
        IMPAIR_FILE.append(args.impair_file)
    servers = []
    behaviours = BEHAVIOURS
    if args.root:
        ROOT_ADDRESS.append(args.root)
        behaviours = {args.root: "root"}
    for address, behaviour in behaviours.items():
        for cls, handler in ((UDPServer, UDPHandler), (TCPServer, TCPHandler)):
            s = cls((address, args.port), handler)
            s.behaviour = behaviour  # type: ignore[attr-defined]
            servers.append(s)
            threading.Thread(target=s.serve_forever, daemon=True).start()
    print(f"hostile servers up on {len(behaviours)} addresses, port {args.port}", flush=True)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    stop.wait()
    for s in servers:
        s.shutdown()
        s.server_close()
    sys.exit(0)


if __name__ == "__main__":
    main()
