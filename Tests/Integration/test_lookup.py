"""`sotto lookup NAME TYPE --json` against the lab: exact answers for every case."""

from __future__ import annotations

import ipaddress

import pytest

from cases import CASES
from harness import fmt_rrs, is_lab_address, norm_name, rrs_from_json

HOP_KEYS = ("server", "zone", "qname", "qtype", "transport", "rtt_ms", "outcome")


def check_common(data: dict, name: str, qtype: str) -> None:
    q = data["question"]
    assert norm_name(q["name"]) == norm_name(name) and q["type"].upper() == qtype, f"question echoed wrong: {q}"
    assert isinstance(data["elapsed_ms"], (int, float)) and data["elapsed_ms"] >= 0
    assert data["hops"], "no hops reported: where did the answer come from?"
    for hop in data["hops"]:
        for key in HOP_KEYS:
            assert key in hop, f"hop lacks '{key}': {hop}"
        # Never any traffic outside the lab.
        assert is_lab_address(hop["server"]), f"query sent outside loopback: {hop}"
        # With opportunistic encryption on (the default), later hops to a DoT-capable server may be DoT.
        assert hop["transport"] in ("Do53/UDP", "Do53/TCP", "DoT"), hop
    for record in data["answer"] + data["authority"]:
        assert isinstance(record["ttl"], int) and 0 <= record["ttl"] <= 3600, f"bad TTL: {record}"


@pytest.mark.parametrize("c", CASES, ids=[c.id for c in CASES])
def test_lookup_case(lab, sotto, c):
    data = sotto.lookup_json(c.name, c.qtype)
    check_common(data, c.name, c.qtype)
    assert data["rcode"] == c.rcode, f"rcode {data['rcode']}, expected {c.rcode}"
    got = rrs_from_json(data["answer"])
    assert got == set(c.answer), (
        f"answer for {c.name} {c.qtype}\n got:\n{fmt_rrs(got)}\n expected:\n{fmt_rrs(c.answer)}")
    if c.soa:
        auth = rrs_from_json(data["authority"])
        assert any(t == "SOA" and o == c.soa for o, t, _ in auth), (
            f"negative answer without the SOA of {c.soa} in authority:\n{fmt_rrs(auth)}")


def test_ipv6_only_zone_is_reached_over_ipv6(lab, sotto):
    data = sotto.lookup_json("www.v6.test.", "AAAA")
    servers = {h["server"] for h in data["hops"] if norm_name(h["zone"]) == "v6.test."}
    assert servers, f"no hop to the v6.test. servers: {data['hops']}"
    assert all(ipaddress.ip_address(s) == ipaddress.ip_address("::1") for s in servers), servers


def test_out_of_bailiwick_ns_address_is_resolved(lab, sotto):
    """ns1.hosts.lab. has no glue: Sotto must ask hosts.lab.'s server for it."""
    data = sotto.lookup_json("www.outside.test.", "A")
    zones = {norm_name(h["zone"]) for h in data["hops"]}
    assert "hosts.lab." in zones, f"hosts.lab. never queried: {data['hops']}"
    assert any(h["server"] == "127.53.6.1" for h in data["hops"]), data["hops"]


def test_lame_and_broken_servers_are_not_used_for_the_answer(lab, sotto):
    for name, bad in (("www.lame.test.", "127.53.11.1"), ("www.broken.test.", "127.53.9.9")):
        data = sotto.lookup_json(name, "A")
        answered = [h for h in data["hops"] if h["server"] == bad and h["outcome"] in ("answer", "referral")]
        assert not answered, f"{bad} cannot have given an answer/referral: {answered}"
