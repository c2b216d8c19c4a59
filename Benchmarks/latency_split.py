"""Splits each cold resolution's latency, seen on the wire, into the resolver's own time before
its upstream query, the authoritative server's time, and the resolver's time after the reply.

Meant for one outstanding client query (`OUTSTANDING=1 SPLIT=1 profile_cold.py`): packets are
assigned to the client query that is open when they cross the wire, so with several queries in
flight the split would mix them. Timestamps are tcpdump's on lo, i.e. when a packet is handed to
the loopback device. Resolutions are grouped by the transport of their first upstream packet
(`udp/53`, `tcp/853` DoT, `udp/853` DoQ); pure TCP ACKs are not counted as query or reply.
"""

from __future__ import annotations

import statistics
import sys
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "Tests" / "Integration"))
from capture import Packet  # noqa: E402

LAB_PREFIX = "127.53."


@dataclass
class Resolution:
    """One client query that had upstream traffic: when it arrived and was answered, and the
    upstream packets with payload in between as (time, outgoing, transport)."""
    query: float
    answer: float
    upstream: list[tuple[float, bool, str]]

    @property
    def first_out(self) -> tuple[float, bool, str] | None:
        return next((u for u in self.upstream if u[1]), None)

    @property
    def last_in(self) -> tuple[float, bool, str] | None:
        return next((u for u in reversed(self.upstream) if not u[1]), None)


def resolutions(packets: list[Packet], listener_port: int) -> list[Resolution]:
    """The client queries to `listener_port` in capture order, each with its upstream packets."""
    out: list[Resolution] = []
    query: float | None = None
    upstream: list[tuple[float, bool, str]] = []
    for p in packets:
        if p.proto == "UDP" and p.dport == listener_port and not p.src.startswith(LAB_PREFIX):
            query, upstream = p.time, []
        elif query is not None and p.proto == "UDP" and p.sport == listener_port:
            if upstream:
                out.append(Resolution(query, p.time, upstream))
            query = None
        elif query is not None and p.payload_len > 0:
            if p.dst.startswith(LAB_PREFIX):
                upstream.append((p.time, True, f"{p.proto.lower()}/{p.dport}"))
            elif p.src.startswith(LAB_PREFIX):
                upstream.append((p.time, False, f"{p.proto.lower()}/{p.sport}"))
    return out


def split(done: list[Resolution]) -> dict[str, list[tuple[float, float, float]]]:
    """Per upstream transport: (before, server, after) in seconds for each resolution, from the
    client's query to the first upstream query, from there to the last upstream reply, and from
    there to the answer."""
    rows: dict[str, list[tuple[float, float, float]]] = defaultdict(list)
    for r in done:
        out, back = r.first_out, r.last_in
        if out and back:
            rows[out[2]].append((out[0] - r.query, back[0] - out[0], r.answer - back[0]))
    return rows


def own_and_server(done: list[Resolution]) -> tuple[list[float], list[float]]:
    """`split` over all transports, in seconds: per resolution the resolver's own time (before
    plus after) and the time between (the servers', plus the resolver's own time between
    exchanges when there are several)."""
    rows = [row for by_transport in split(done).values() for row in by_transport]
    return [before + after for before, _, after in rows], [server for _, server, _ in rows]


def report(rows: dict[str, list[tuple[float, float, float]]]) -> list[str]:
    """One line per transport: count, the medians in microseconds, and how many server times
    exceeded 10 ms."""
    out = []
    for kind, values in sorted(rows.items()):
        med = [statistics.median(v[i] for v in values) * 1e6 for i in range(3)]
        slow = sum(1 for v in values if v[1] > 0.010)  # e.g. an answer held behind Nagle (~40 ms)
        out.append(f"split {kind}: n={len(values)} before={med[0]:.0f}us server={med[1]:.0f}us after={med[2]:.0f}us"
                   f" server>10ms={slow}")
    return out


def before_by_idle(done: list[Resolution]) -> dict[tuple[str, str, bool], list[float]]:
    """The time from each client query to its first upstream query, keyed by (this resolution's
    transport, the previous one's, whether the previous answer left at least 1 ms earlier)."""
    out: dict[tuple[str, str, bool], list[float]] = defaultdict(list)
    for prev, cur in zip(done, done[1:]):
        first, before = cur.first_out, prev.first_out
        if first and before:
            out[(first[2], before[2], cur.query - prev.answer >= 0.001)].append(first[0] - cur.query)
    return out


def report_idle(groups: dict[tuple[str, str, bool], list[float]]) -> list[str]:
    """One line per group of at least 20 resolutions: the median time before the upstream query."""
    return [f"before {kind} after {prev}, {'idle >= 1 ms' if idle else 'idle < 1 ms'}: n={len(v)}"
            f" median={statistics.median(v) * 1e6:.0f}us"
            for (kind, prev, idle), v in sorted(groups.items()) if len(v) >= 20]
