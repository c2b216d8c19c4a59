"""Counts authoritative queries by transport from a loopback packet capture (not from any
resolver's own counters).

- Do53: UDP datagrams to port 53 whose DNS header has QR=0, and TCP segments to port 53 that
  carry payload (one query per segment: the resolvers send each query in one write).
- DoT: TLS application-data records from the resolver to port 853 over TCP, skipping the first
  one on each connection (TLS 1.3 wraps the client's Finished as application data) and records
  of 24 octets or less (close_notify).
- DoQ: QUIC datagrams from the resolver to UDP 853 that carry 0-RTT or 1-RTT packets and are
  larger than QUIC_QUERY_MIN octets (ACK-only and other control-only datagrams are smaller; a
  DNS query on a stream is not). Several queries coalesced in one datagram count as one, so the
  DoQ figure is a lower bound.

"Cleartext to a known-good server": a Do53 query to an address once the resolver demonstrably
knew that address answers encrypted: after the address sent its first encrypted answer (a DoT
application-data record or a QUIC 1-RTT datagram that follows the resolver's first counted
encrypted query on it) AND the resolver then sent another encrypted query to it. The second
condition excludes Do53 queries that were already decided while the first encrypted exchange was
in flight and reach the wire a moment after its answer (the capture sees the answer arrive, not
the resolver learning of it); it applies to every resolver alike.
"""

from __future__ import annotations

import struct
import sys
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "Tests" / "Integration"))
from capture import Capture, Packet  # noqa: E402

QUIC_QUERY_MIN = 70
LAB_PREFIX = "127.53."


def tls_records(payload: bytes) -> list[tuple[int, int]]:
    """(content type, length) of the TLS records that start at the segment start, back to back."""
    out, i = [], 0
    while i + 5 <= len(payload):
        ctype, major = payload[i], payload[i + 1]
        if ctype not in (20, 21, 22, 23) or major != 3:
            break
        length = struct.unpack("!H", payload[i + 3:i + 5])[0]
        out.append((ctype, length))
        i += 5 + length
    return out


@dataclass
class ServerCounts:
    do53: int = 0
    dot: int = 0
    doq: int = 0
    cleartext_after_good: int = 0
    answered_at: float | None = None  # first encrypted answer
    good_since: float | None = None  # first encrypted query after that answer


@dataclass
class WireCounts:
    servers: dict[str, ServerCounts] = field(default_factory=dict)

    def total(self, attr: str) -> int:
        return sum(getattr(s, attr) for s in self.servers.values())

    @property
    def queries(self) -> int:
        return self.total("do53") + self.total("dot") + self.total("doq")

    def share(self, attr: str) -> float:
        return self.total(attr) / self.queries if self.queries else 0.0

    @property
    def encrypted_share(self) -> float:
        return (self.total("dot") + self.total("doq")) / self.queries if self.queries else 0.0

    @property
    def cleartext_to_good(self) -> int:
        return self.total("cleartext_after_good")

    def as_dict(self) -> dict:
        return {"queries": self.queries, "do53": self.total("do53"), "dot": self.total("dot"),
                "doq": self.total("doq"), "encrypted_share": self.encrypted_share,
                "doq_share": self.share("doq"), "cleartext_to_known_good": self.cleartext_to_good,
                "cleartext_to_known_good_by_server": {a: s.cleartext_after_good for a, s in self.servers.items()
                                                      if s.cleartext_after_good}}


def count(packets: list[Packet]) -> WireCounts:
    wc = WireCounts()
    seen_first_app: set[tuple[str, int]] = set()   # DoT connections whose Finished was skipped
    first_query_at: dict[tuple[str, str], float] = {}  # (server, "dot"|"doq") -> time of first query
    for p in sorted(packets, key=lambda x: x.time):
        to_server = p.dst.startswith(LAB_PREFIX)
        server = p.dst if to_server else p.src
        if not server.startswith(LAB_PREFIX):
            continue
        s = wc.servers.setdefault(server, ServerCounts())
        if to_server and p.dport == 53:
            is_query = (p.proto == "UDP" and len(p.payload) >= 3 and not p.payload[2] & 0x80) or \
                       (p.proto == "TCP" and p.payload_len > 0)
            if is_query:
                s.do53 += 1
                if s.good_since is not None and p.time > s.good_since:
                    s.cleartext_after_good += 1
        elif p.proto == "TCP" and 853 in (p.sport, p.dport):
            key = (server, p.sport if to_server else p.dport)
            for ctype, length in tls_records(p.payload):
                if ctype != 23:
                    continue
                if to_server:
                    if key not in seen_first_app:
                        seen_first_app.add(key)  # the client's Finished
                        continue
                    if length > 24:
                        s.dot += 1
                        first_query_at.setdefault((server, "dot"), p.time)
                        if s.answered_at is not None and s.good_since is None and p.time > s.answered_at:
                            s.good_since = p.time
                elif (server, "dot") in first_query_at and s.answered_at is None:
                    s.answered_at = p.time
        elif p.proto == "UDP" and 853 in (p.sport, p.dport):
            types = p.quic_types
            if to_server:
                if ("0-RTT" in types or "1-RTT" in types) and p.payload_len > QUIC_QUERY_MIN:
                    s.doq += 1
                    first_query_at.setdefault((server, "doq"), p.time)
                    if s.answered_at is not None and s.good_since is None and p.time > s.answered_at:
                        s.good_since = p.time
            elif "1-RTT" in types and (server, "doq") in first_query_at and s.answered_at is None:
                s.answered_at = p.time
    return wc


class WireCounter:
    """A capture on lo of everything to/from the lab; `stop()` returns the counts."""

    def __init__(self, path: Path):
        self.capture = Capture(path)

    def start(self) -> "WireCounter":
        self.capture.start()
        return self

    def stop(self) -> WireCounts:
        return count(self.capture.stop())
