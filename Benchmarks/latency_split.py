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
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "Tests" / "Integration"))
from capture import Packet  # noqa: E402

LAB_PREFIX = "127.53."


def before_by_idle(packets: list[Packet], listener_port: int) -> dict[tuple[str, str, bool], list[float]]:
    """The time from each client query to its first upstream query, keyed by (this resolution's
    transport, the previous one's, whether the previous answer left at least 1 ms earlier)."""
    done: list[tuple[float, float, str, float]] = []  # (query, before, transport, answer)
    query: float | None = None
    first_out: tuple[float, str] | None = None
    for p in packets:
        if p.proto == "UDP" and p.dport == listener_port and not p.src.startswith(LAB_PREFIX):
            query, first_out = p.time, None
        elif query is not None and p.proto == "UDP" and p.sport == listener_port:
            if first_out:
                done.append((query, first_out[0] - query, first_out[1], p.time))
            query = None
        elif query is not None and first_out is None and p.payload_len > 0 and p.dst.startswith(LAB_PREFIX):
            first_out = (p.time, f"{p.proto.lower()}/{p.dport}")
    out: dict[tuple[str, str, bool], list[float]] = defaultdict(list)
    for prev, cur in zip(done, done[1:]):
        out[(cur[2], prev[2], cur[0] - prev[3] >= 0.001)].append(cur[1])
    return out


def report_idle(groups: dict[tuple[str, str, bool], list[float]]) -> list[str]:
    """One line per group of at least 20 resolutions: the median time before the upstream query."""
    return [f"before {kind} after {prev}, {'idle >= 1 ms' if idle else 'idle < 1 ms'}: n={len(v)}"
            f" median={statistics.median(v) * 1e6:.0f}us"
            for (kind, prev, idle), v in sorted(groups.items()) if len(v) >= 20]


def split(packets: list[Packet], listener_port: int) -> dict[str, list[tuple[float, float, float]]]:
    """Per upstream transport: (before, server, after) in seconds for each client query that had
    upstream traffic, from its arrival to the first upstream query, from there to the last
    upstream reply, and from there to the answer."""
    rows: dict[str, list[tuple[float, float, float]]] = defaultdict(list)
    open_query: float | None = None
    upstream: list[tuple[float, bool, str]] = []  # (time, outgoing, transport)
    for p in packets:
        if p.proto == "UDP" and p.dport == listener_port and not p.src.startswith(LAB_PREFIX):
            open_query, upstream = p.time, []
        elif open_query is not None and p.proto == "UDP" and p.sport == listener_port:
            outs = [u for u in upstream if u[1]]
            ins = [u for u in upstream if not u[1]]
            if outs and ins:
                rows[outs[0][2]].append((outs[0][0] - open_query, ins[-1][0] - outs[0][0], p.time - ins[-1][0]))
            open_query = None
        elif open_query is not None and p.payload_len > 0:
            if p.dst.startswith(LAB_PREFIX):
                upstream.append((p.time, True, f"{p.proto.lower()}/{p.dport}"))
            elif p.src.startswith(LAB_PREFIX):
                upstream.append((p.time, False, f"{p.proto.lower()}/{p.sport}"))
    return rows


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
