"""`sotto serve`: UDP and TCP service, caching, access control, clean shutdown."""

from __future__ import annotations

import signal

import pytest

from cases import WWW
from harness import fmt_rrs, lab_query_total, labmod, settled_query_total


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
    assert labmod.port_free("127.0.0.1", free_port), f"port {free_port} still bound after exit"
