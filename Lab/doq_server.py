#!/usr/bin/env python3
"""A small DNS-over-QUIC (RFC 9250) authoritative server for the Sotto lab.

Debian 12 has no DoQ-capable authoritative server, so the lab runs this one on
UDP ADDR:853 next to the NSD instance that serves the same zone file on ADDR:53.
Needs aioquic and dnspython (PyPI; `make test` installs them).

    python3 Lab/doq_server.py --address 127.53.17.1 --zone doq.test. \
        --zonefile Lab/zones/doq.test.zone --cert run/pki/doq.pem --key run/pki/doq.key \
        [--port 853] [--misbehave reset,bad-id,bad-length] [--reuseport]

Behaviour:
  * ALPN "doq", TLS 1.3 with the given (lab-CA-signed) certificate chain.
  * Session tickets: issued after every handshake, kept in memory, each usable once
    (single-use store).  0-RTT is accepted (aioquic servers advertise max_early_data).
  * One query per client-initiated bidirectional stream: 2-octet length prefix, message
    ID 0.  A query with a non-zero ID closes the connection with DOQ_PROTOCOL_ERROR.
    The answer goes back on the same stream with ID 0, followed by FIN.
  * Answers from the zone file (dnspython): AA answers, in-zone CNAME, NODATA and
    NXDOMAIN with the SOA, REFUSED outside the zone.  One zone per server, so no referrals.
  * --misbehave (names are matched on their first label, so one server can serve good and
    bad names):  reset      -> RESET_STREAM with DOQ_INTERNAL_ERROR for names starting "reset"
                 bad-id     -> answer with message ID 0x5353 for names starting "badid"
                 bad-length -> length prefix 16 octets longer than the message, then FIN,
                               for names starting "badlen"
  * --reuseport: the UDP socket is bound with SO_REUSEPORT and a classic BPF program that
    steers every datagram to the first socket of the group (this one).  lab.py uses it where
    NSD serves DoT on TCP ADDR:853: NSD insists on opening a plain-DNS UDP socket on 853 as
    well, and without the steering it would answer half of the QUIC packets with FORMERR.
    This server must bind before NSD does.

One line per connection event and per query is printed to stdout (lab.py sends it to
run/NAME/doq.log): handshake completion with resumed/early-data, queries with stream id,
name, type, rcode and what was done to misbehave.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import socket
import struct
import sys
import time

import dns.edns
import dns.flags
import dns.message
import dns.name
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.rrset
import dns.zone
from aioquic.asyncio.protocol import QuicConnectionProtocol
from aioquic.asyncio.server import QuicServer
from aioquic.quic.configuration import QuicConfiguration
from aioquic.quic.events import (ConnectionTerminated, HandshakeCompleted, StreamDataReceived,
                                 StreamReset)

DOQ_NO_ERROR = 0x0
DOQ_INTERNAL_ERROR = 0x1
DOQ_PROTOCOL_ERROR = 0x2

MISBEHAVIOURS = ("reset", "bad-id", "bad-length", "too-early")
# Queries whose first label starts so misbehave; "too-early" has no trigger: it answers every
# query that came in 0-RTT REFUSED with Extended DNS Error 26, Too Early (RFC 9250 §4.5).
TRIGGER = {"reset": b"reset", "bad-id": b"badid", "bad-length": b"badlen"}

SO_ATTACH_REUSEPORT_CBPF = 51


def log(msg: str) -> None:
    print(f"{time.strftime('%H:%M:%S')} {msg}", flush=True)


# --------------------------------------------------------------------------- answers

class ZoneAnswerer:
    def __init__(self, origin: str, path: str):
        self.origin = dns.name.from_text(origin)
        self.zone = dns.zone.from_file(path, origin=self.origin, relativize=False, check_origin=True)
        soa = self.zone.find_rdataset(self.origin, dns.rdatatype.SOA)
        self.soa = dns.rrset.RRset(self.origin, dns.rdataclass.IN, dns.rdatatype.SOA)
        self.soa.update(soa)
        # NXDOMAIN/NODATA: negative TTL = min(SOA TTL, SOA MINIMUM) (RFC 2308)
        self.soa.ttl = min(soa.ttl, soa[0].minimum)
        self.names = set(self.zone.nodes.keys())

    def answer(self, query: dns.message.Message) -> dns.message.Message:
        resp = dns.message.make_response(query, our_payload=65535, pad=468)
        resp.flags &= ~dns.flags.RA
        if query.opcode() != 0 or len(query.question) != 1:
            resp.set_rcode(dns.rcode.NOTIMP if query.opcode() != 0 else dns.rcode.FORMERR)
            return resp
        q = query.question[0]
        if q.rdclass != dns.rdataclass.IN or not q.name.is_subdomain(self.origin):
            resp.set_rcode(dns.rcode.REFUSED)
            return resp
        resp.flags |= dns.flags.AA
        name, seen = q.name, set()
        while True:
            node = self.zone.get_node(name)
            if node is None:
                if not any(n.is_subdomain(name) for n in self.names):  # else an empty non-terminal: NODATA
                    resp.set_rcode(dns.rcode.NXDOMAIN)
                resp.authority.append(self.soa)
                return resp
            rds = node.get_rdataset(dns.rdataclass.IN, q.rdtype)
            if rds is not None:
                rr = dns.rrset.RRset(name, dns.rdataclass.IN, q.rdtype)
                rr.update(rds)
                resp.answer.append(rr)
                return resp
            cname = node.get_rdataset(dns.rdataclass.IN, dns.rdatatype.CNAME)
            if cname is not None and q.rdtype != dns.rdatatype.CNAME and name not in seen:
                seen.add(name)
                rr = dns.rrset.RRset(name, dns.rdataclass.IN, dns.rdatatype.CNAME)
                rr.update(cname)
                resp.answer.append(rr)
                name = cname[0].target
                if not name.is_subdomain(self.origin):
                    return resp
                continue
            resp.authority.append(self.soa)  # NODATA
            return resp


# --------------------------------------------------------------------------- QUIC side

class DoQProtocol(QuicConnectionProtocol):
    answerer: ZoneAnswerer
    misbehave: frozenset = frozenset()

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._buffers: dict[int, bytearray] = {}
        self._handshake_done = False  # until then, stream data came in 0-RTT

    def _peer(self) -> str:
        try:
            return "%s:%s" % self._transport.get_extra_info("peername")[:2]  # type: ignore[union-attr]
        except Exception:
            return "?"

    def quic_event_received(self, event) -> None:
        if isinstance(event, HandshakeCompleted):
            self._handshake_done = True
            log(f"handshake alpn={event.alpn_protocol} resumed={event.session_resumed} "
                f"early_data={event.early_data_accepted} cid={self._quic.host_cid.hex()}")
        elif isinstance(event, StreamDataReceived):
            buf = self._buffers.setdefault(event.stream_id, bytearray())
            buf.extend(event.data)
            if event.end_stream:
                self._handle(event.stream_id, bytes(self._buffers.pop(event.stream_id)),
                             early=not self._handshake_done)
        elif isinstance(event, StreamReset):
            self._buffers.pop(event.stream_id, None)
            log(f"stream {event.stream_id} reset by client code={event.error_code}")
        elif isinstance(event, ConnectionTerminated):
            log(f"connection closed code={event.error_code} reason={event.reason_phrase!r} "
                f"cid={self._quic.host_cid.hex()}")

    def _protocol_error(self, why: str) -> None:
        log(f"protocol error: {why}: closing with DOQ_PROTOCOL_ERROR")
        self._quic.close(error_code=DOQ_PROTOCOL_ERROR, reason_phrase=why)
        self.transmit()

    def _handle(self, sid: int, data: bytes, early: bool = False) -> None:
        if sid % 4 != 0:
            return self._protocol_error(f"query on stream {sid}, not a client bidirectional stream")
        if len(data) < 2 or struct.unpack("!H", data[:2])[0] != len(data) - 2:
            return self._protocol_error(f"stream {sid}: length prefix does not match {len(data)} octets")
        wire = data[2:]
        try:
            query = dns.message.from_wire(wire)
        except Exception as e:  # noqa: BLE001
            return self._protocol_error(f"stream {sid}: unparsable query: {e}")
        if query.id != 0:
            return self._protocol_error(f"stream {sid}: message ID {query.id} is not 0")
        qname = query.question[0].name if query.question else dns.name.root
        qtype = dns.rdatatype.to_text(query.question[0].rdtype) if query.question else "-"
        first = qname.labels[0].lower() if qname.labels else b""
        if early and "too-early" in self.misbehave:
            resp = dns.message.make_response(query)
            resp.set_rcode(dns.rcode.REFUSED)
            resp.use_edns(0, options=[dns.edns.EDEOption(dns.edns.EDECode.TOO_EARLY)])
            out = resp.to_wire()
            log(f"stream {sid} {qname} {qtype}: REFUSED Too Early (came in 0-RTT)")
            self._quic.send_stream_data(sid, struct.pack("!H", len(out)) + out, end_stream=True)
            self.transmit()
            return
        mode = next((m for m in self.misbehave if m in TRIGGER and first.startswith(TRIGGER[m])), None)
        if mode == "reset":
            log(f"stream {sid} {qname} {qtype}: misbehave reset (DOQ_INTERNAL_ERROR)")
            self._quic.reset_stream(sid, DOQ_INTERNAL_ERROR)
            self.transmit()
            return
        resp = self.answerer.answer(query)
        out = resp.to_wire(max_size=65535)
        prefix = len(out)
        if mode == "bad-id":
            out = struct.pack("!H", 0x5353) + out[2:]
        elif mode == "bad-length":
            prefix = min(len(out) + 16, 0xFFFF)
        log(f"stream {sid} {qname} {qtype}: {dns.rcode.to_text(resp.rcode())} {len(resp.answer)} answer rrsets"
            + (f" misbehave {mode}" if mode else ""))
        self._quic.send_stream_data(sid, struct.pack("!H", prefix) + out, end_stream=True)
        self.transmit()


class TicketStore:
    """Single-use session tickets (RFC 9250 §5.5.3 / RFC 8446 App. C.4)."""

    def __init__(self):
        self.tickets: dict[bytes, object] = {}

    def add(self, ticket) -> None:
        self.tickets[ticket.ticket] = ticket

    def pop(self, label: bytes):
        t = self.tickets.pop(label, None)
        log(f"ticket presented: {'found (now used up)' if t else 'unknown or already used'}")
        return t


def make_socket(address: str, port: int, reuseport: bool) -> socket.socket:
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    s = socket.socket(family, socket.SOCK_DGRAM)
    if reuseport:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        # classic BPF "ret #0": every datagram goes to socket 0 of the reuseport group (us, bound first)
        prog = struct.pack("HBBI", 0x06, 0, 0, 0)  # BPF_RET | BPF_K, k = 0
        import ctypes
        buf = ctypes.create_string_buffer(prog)
        fprog = struct.pack("HL", 1, ctypes.addressof(buf))
        s.setsockopt(socket.SOL_SOCKET, SO_ATTACH_REUSEPORT_CBPF, fprog)
    s.bind((address, port))
    return s


async def run(args) -> None:
    answerer = ZoneAnswerer(args.zone, args.zonefile)
    misbehave = frozenset(m for m in (args.misbehave or "").split(",") if m)
    bad = misbehave - set(MISBEHAVIOURS)
    if bad:
        raise SystemExit(f"unknown --misbehave {sorted(bad)}; known: {MISBEHAVIOURS}")

    class Proto(DoQProtocol):
        pass
    Proto.answerer = answerer
    Proto.misbehave = misbehave

    config = QuicConfiguration(is_client=False, alpn_protocols=["doq"], idle_timeout=args.idle_timeout)
    config.load_cert_chain(args.cert, args.key)
    store = TicketStore()
    sock = make_socket(args.address, args.port, args.reuseport)
    loop = asyncio.get_running_loop()
    transport, _ = await loop.create_datagram_endpoint(
        lambda: QuicServer(configuration=config, create_protocol=Proto,
                           session_ticket_fetcher=store.pop, session_ticket_handler=store.add),
        sock=sock)
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    log(f"DoQ server for {args.zone} on {args.address}:{args.port} misbehave={sorted(misbehave) or 'none'}"
        f" reuseport={args.reuseport}")
    await stop.wait()
    transport.close()
    log("stopped")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--address", required=True)
    p.add_argument("--port", type=int, default=853)
    p.add_argument("--zone", required=True)
    p.add_argument("--zonefile", required=True)
    p.add_argument("--cert", required=True, help="PEM: leaf certificate followed by the chain")
    p.add_argument("--key", required=True)
    p.add_argument("--misbehave", default="", help="comma-separated: " + ", ".join(MISBEHAVIOURS))
    p.add_argument("--reuseport", action="store_true")
    p.add_argument("--idle-timeout", type=float, default=30.0)
    args = p.parse_args(argv)
    asyncio.run(run(args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
