#!/usr/bin/env python3
"""Hostile encrypted authoritative servers for the Sotto lab (issue 8): port 853 misbehaving.

One process serves every address of BEHAVIOURS (127.53.31.x, used by nothing else).  Each
address serves the zone ``<behaviour>.test.`` (delegated from test.zone) CORRECTLY over Do53
(UDP and TCP port 53), so RFC 9539's fallback to Do53 has a right answer, and misbehaves on
port 853:

  dotgarbage  TCP 853: completes the TLS handshake (lab-CA certificate, ALPN dot), reads the
              first query, then writes 64 octets that are not TLS records; held open
  dotstall    TCP 853: completes the handshake, and for the first query writes the first 15
              octets of a TLS record whose header announces 500 octets (17 03 03 01 f4 + 10);
              then nothing, ever; the connection is held open until the client closes it
  dotformerr  TCP 853: valid TLS, well-framed (RFC 7858 length prefix) but malformed DNS:
              an answer whose owner is a compression pointer to itself (any name), a reply with
              the ID + 1 (names starting "badid": a mismatch on the stream), or the reply cut in
              the middle of its answer record (names starting "trunc")
  doqreset    UDP 853: DoQ; every query stream gets RESET_STREAM (DOQ_INTERNAL_ERROR)
  doqnostream UDP 853: QUIC handshake completes, but initial_max_streams_bidi = 0 and no
              MAX_STREAMS ever: the client cannot open a stream
  doqmute     UDP 853: DoQ; streams are accepted (flow control credit given), never answered

TCP 853 of the DoQ addresses and UDP 853 of the DoT addresses are closed (RST / ICMP).
Zone data (Do53, and what the DoT/DoQ servers would have said): apex SOA and NS
(ns1.<zone>), ns1 A <address>, every other name one label below the apex A 192.0.2.1 (so
tests can use fresh names), names starting "nope" NXDOMAIN.

    python3 Lab/hostile853_server.py [--pem F --key F]   runs until SIGTERM

Without --pem/--key it issues one leaf certificate for all ns1.<zone> names from the lab CA
(Lab/run/pki/ca.key, made by `lab.py up`) into Lab/run/pki/hostile853.{pem,key}.  Logs one
line per connection and query to stdout.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import socket
import socketserver
import ssl
import struct
import sys
import threading
import time
from pathlib import Path

import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.rcode
import dns.rdatatype
import dns.rrset

BEHAVIOURS = {
    "127.53.31.1": "dotgarbage",
    "127.53.31.2": "dotstall",
    "127.53.31.3": "dotformerr",
    "127.53.31.4": "doqreset",
    "127.53.31.5": "doqnostream",
    "127.53.31.6": "doqmute",
}
DOT = {a for a, b in BEHAVIOURS.items() if b.startswith("dot")}
DOQ = {a for a, b in BEHAVIOURS.items() if b.startswith("doq")}
WWW_ADDRESS = "192.0.2.1"
FORGED_ADDRESS = "192.0.2.66"  # what the malformed DoT answers carry (must never be cached)
GARBAGE = b"HTTP/1.1 400 Bad Request\r\n\r\n" + bytes(range(0x80, 0xA4))
STALL = b"\x17\x03\x03\x01\xf4" + b"\x5a" * 10  # application-data record header for 500 octets, 10 of them
DOQ_INTERNAL_ERROR = 0x1

LOG_LOCK = threading.Lock()


def log(msg: str) -> None:
    with LOG_LOCK:
        print(f"{time.strftime('%H:%M:%S')} {msg}", flush=True)


def zone_name(behaviour: str) -> dns.name.Name:
    return dns.name.from_text(f"{behaviour}.test.")


def rrset(name, rdtype: str, *data: str, ttl: int = 300):
    return dns.rrset.from_text(name, ttl, "IN", rdtype, *data)


def answer(q: dns.message.Message, address: str) -> dns.message.Message:
    """The correct authoritative answer of the zone served at `address`."""
    zone = zone_name(BEHAVIOURS[address])
    r = dns.message.make_response(q)
    r.flags |= dns.flags.AA
    if len(q.question) != 1:
        r.set_rcode(dns.rcode.FORMERR)
        return r
    qname, qtype = q.question[0].name, q.question[0].rdtype
    if not qname.is_subdomain(zone):
        r.flags &= ~dns.flags.AA
        r.set_rcode(dns.rcode.REFUSED)
        return r
    soa = rrset(zone, "SOA", f"ns1.{zone} hostmaster.{zone} 1 300 300 600 60", ttl=60)
    ns1 = dns.name.from_text("ns1", zone)
    if qname == zone:
        if qtype == dns.rdatatype.SOA:
            r.answer.append(soa)
        elif qtype == dns.rdatatype.NS:
            r.answer.append(rrset(zone, "NS", str(ns1)))
            r.additional.append(rrset(ns1, "A", address))
        else:
            r.authority.append(soa)
        return r
    if len(qname) != len(zone) + 1 or qname.labels[0].lower().startswith(b"nope"):
        r.set_rcode(dns.rcode.NXDOMAIN)
        r.authority.append(soa)
        return r
    if qtype == dns.rdatatype.A:
        r.answer.append(rrset(qname, "A", address if qname == ns1 else WWW_ADDRESS))
    else:
        r.authority.append(soa)
    return r


def malformed(q: dns.message.Message, address: str) -> bytes:
    """dotformerr's reply: well framed, never usable."""
    good = answer(q, address)
    first = q.question[0].name.labels[0].lower() if q.question and q.question[0].name.labels else b""
    if first.startswith(b"badid"):
        good.id = (q.id + 1) & 0xFFFF
        good.answer = [rrset(q.question[0].name, "A", FORGED_ADDRESS)]
        return good.to_wire(max_size=65535)
    qlen = 12 + len(q.question[0].name.to_wire()) + 4
    head = bytearray(good.to_wire(max_size=65535)[:qlen])
    head[2] |= 0x04  # AA
    head[6:8] = struct.pack("!H", 1)  # one answer
    head[8:12] = b"\x00\x00\x00\x00"
    record = struct.pack("!H", 0xC000 | qlen) + struct.pack("!HHIH", 1, 1, 300, 4) + socket.inet_aton(FORGED_ADDRESS)
    if first.startswith(b"trunc"):
        owner = struct.pack("!H", 0xC00C)  # a fine pointer to the question name, then the record cut
        return bytes(head) + owner + struct.pack("!HHI", 1, 1, 300)
    return bytes(head) + record  # the owner is a pointer to itself


# --------------------------------------------------------------------------- Do53 (correct)

class Do53UDP(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        data, sock = self.request
        try:
            q = dns.message.from_wire(data)
        except Exception:  # noqa: BLE001 -- unparsable queries are ignored
            return
        sock.sendto(answer(q, self.server.server_address[0]).to_wire(max_size=65535), self.client_address)


def read_framed(recv) -> bytes | None:
    """One RFC 7766 length-prefixed message from a blocking recv(n) callable, None at EOF."""
    head = b""
    while len(head) < 2:
        chunk = recv(2 - len(head))
        if not chunk:
            return None
        head += chunk
    (n,) = struct.unpack("!H", head)
    body = b""
    while len(body) < n:
        chunk = recv(n - len(body))
        if not chunk:
            return None
        body += chunk
    return body


class Do53TCP(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        conn: socket.socket = self.request
        conn.settimeout(10)
        try:
            while (data := read_framed(conn.recv)) is not None:
                wire = answer(dns.message.from_wire(data), self.server.server_address[0]).to_wire(max_size=65535)
                conn.sendall(struct.pack("!H", len(wire)) + wire)
        except Exception:  # noqa: BLE001
            return


# --------------------------------------------------------------------------- DoT (hostile)

TLS_CONTEXT: list[ssl.SSLContext] = []


class DoTHandler(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        conn: socket.socket = self.request
        address = self.server.server_address[0]
        behaviour = BEHAVIOURS[address]
        peer = "%s:%s" % self.client_address[:2]
        conn.settimeout(10)
        try:
            tls = TLS_CONTEXT[0].wrap_socket(conn, server_side=True)
        except (OSError, ssl.SSLError) as e:
            log(f"{behaviour} {peer}: handshake failed: {e}")
            return
        log(f"{behaviour} {peer}: handshake {tls.version()} alpn={tls.selected_alpn_protocol()}")
        try:
            if behaviour == "dotformerr":
                while (data := read_framed(tls.recv)) is not None:
                    q = dns.message.from_wire(data)
                    wire = malformed(q, address)
                    log(f"{behaviour} {peer}: {q.question[0].name} -> {len(wire)} malformed octets")
                    tls.sendall(struct.pack("!H", len(wire)) + wire)
                return
            data = read_framed(tls.recv)
            if data is None:
                return
            q = dns.message.from_wire(data)
            # Raw octets on the TCP socket, under TLS: the client's record layer gets them.
            os.write(tls.fileno(), GARBAGE if behaviour == "dotgarbage" else STALL)
            log(f"{behaviour} {peer}: {q.question[0].name} -> {'garbage' if behaviour == 'dotgarbage' else 'stall'}")
            # Hold the connection until the client gives up (no timeout: a stall is forever).
            tls.settimeout(None)
            while True:
                chunk = tls.recv(4096)
                if not chunk:
                    break
        except (OSError, ssl.SSLError, ValueError, dns.exception.DNSException) as e:
            log(f"{behaviour} {peer}: {type(e).__name__}: {e}")
        finally:
            log(f"{behaviour} {peer}: closed")


class UDPServer(socketserver.ThreadingMixIn, socketserver.UDPServer):
    daemon_threads = True


class TCPServer(socketserver.ThreadingMixIn, socketserver.TCPServer):
    daemon_threads = True
    allow_reuse_address = True


# --------------------------------------------------------------------------- DoQ (hostile)

def doq_protocol_class():
    from aioquic.asyncio.protocol import QuicConnectionProtocol
    from aioquic.quic.events import HandshakeCompleted, StreamDataReceived

    class HostileDoQ(QuicConnectionProtocol):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            self.behaviour = "?"

        def quic_event_received(self, event) -> None:
            behaviour = self.behaviour
            if isinstance(event, HandshakeCompleted):
                log(f"{behaviour}: QUIC handshake alpn={event.alpn_protocol}")
            elif isinstance(event, StreamDataReceived):
                if behaviour == "doqreset":
                    if event.end_stream:
                        log(f"{behaviour}: stream {event.stream_id} reset")
                        self._quic.reset_stream(event.stream_id, DOQ_INTERNAL_ERROR)
                        self.transmit()
                elif event.end_stream:
                    log(f"{behaviour}: stream {event.stream_id} query swallowed")

    return HostileDoQ


async def serve_doq(pem: str, key: str) -> list:
    from aioquic.asyncio.server import QuicServer
    from aioquic.quic.configuration import QuicConfiguration

    base = doq_protocol_class()
    transports = []
    loop = asyncio.get_running_loop()
    for address in sorted(DOQ):
        behaviour = BEHAVIOURS[address]

        class Proto(base):  # type: ignore[misc, valid-type]
            def __init__(self, *args, _behaviour=behaviour, **kwargs):
                super().__init__(*args, **kwargs)
                self.behaviour = _behaviour
                if _behaviour == "doqnostream":
                    # Transport parameters are serialized at the first flight, after this: the
                    # peer may open no bidirectional stream, and no MAX_STREAMS is ever sent.
                    self._quic._local_max_streams_bidi.value = 0
                    self._quic._local_max_streams_bidi.sent = 0

        config = QuicConfiguration(is_client=False, alpn_protocols=["doq"], idle_timeout=60)
        config.load_cert_chain(pem, key)
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.bind((address, 853))
        transport, _ = await loop.create_datagram_endpoint(
            lambda config=config, Proto=Proto: QuicServer(configuration=config, create_protocol=Proto), sock=sock)
        transports.append(transport)
    return transports


# --------------------------------------------------------------------------- certificates

def issue_certificate() -> tuple[str, str]:
    """One leaf for every ns1.<zone> from the lab CA; returns (pem with chain, key)."""
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import lab  # noqa: PLC0415

    ca_key = lab.PKI_DIR / "ca.key"
    if not ca_key.is_file() or not lab.CA_FILE.is_file():
        raise SystemExit(f"no lab CA at {lab.PKI_DIR} (run `python3 Lab/lab.py up` first) or give --pem/--key")
    names = [f"ns1.{b}.test" for b in BEHAVIOURS.values()]
    pki = lab.PKI_DIR
    key, csr, ext, leaf, pem = (pki / f"hostile853.{x}" for x in ("key", "csr", "ext", "leaf.pem", "pem"))
    ext.write_text(lab._leaf_ext(names))
    ec = ("-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes")
    lab._openssl("req", "-config", str(pki / "openssl.cnf"), "-new", *ec, "-keyout", str(key), "-out", str(csr),
                 "-subj", f"/CN={names[0]}")
    lab._openssl("x509", "-req", "-in", str(csr), "-CA", str(lab.CA_FILE), "-CAkey", str(ca_key),
                 "-set_serial", "0x3853", "-days", "30", "-sha256", "-extfile", str(ext), "-extensions", "leaf",
                 "-out", str(leaf))
    pem.write_text(leaf.read_text() + lab.CA_FILE.read_text())
    key.chmod(0o600)
    return str(pem), str(key)


# --------------------------------------------------------------------------- main

def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--pem", help="certificate chain (PEM); default: issued from the lab CA")
    ap.add_argument("--key", help="private key of --pem")
    args = ap.parse_args()
    pem, key = (args.pem, args.key) if args.pem and args.key else issue_certificate()
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(pem, key)
    ctx.set_alpn_protocols(["dot"])
    ctx.num_tickets = 0
    TLS_CONTEXT.append(ctx)

    servers = []
    for address in BEHAVIOURS:
        binds = [(UDPServer, Do53UDP, 53), (TCPServer, Do53TCP, 53)]
        if address in DOT:
            binds.append((TCPServer, DoTHandler, 853))
        for cls, handler, port in binds:
            s = cls((address, port), handler)
            servers.append(s)
            threading.Thread(target=s.serve_forever, daemon=True).start()

    async def run() -> None:
        transports = await serve_doq(pem, key)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        log(f"hostile 853 servers up on {len(BEHAVIOURS)} addresses (DoT {len(DOT)}, DoQ {len(DOQ)})")
        await stop.wait()
        for t in transports:
            t.close()

    asyncio.run(run())
    for s in servers:
        s.shutdown()
        s.server_close()
    log("stopped")


if __name__ == "__main__":
    main()
