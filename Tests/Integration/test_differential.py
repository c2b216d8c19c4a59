"""Differential test: the same 40+ queries to Unbound (recursing through the
lab) and to `sotto serve`; rcode and answer RRsets must match (TTL and order
ignored, owner names case-folded)."""

from __future__ import annotations

import pytest

from cases import DIFFERENTIAL
from harness import DigResult, dig_query, fmt_rrs


def diff(name: str, qtype: str, ub: DigResult, so: DigResult) -> str | None:
    problems = []
    if ub.status != so.status:
        problems.append(f"  rcode: unbound {ub.status}, sotto {so.status}")
    if ub.answer != so.answer:
        problems.append(f"  only in unbound:\n{fmt_rrs(ub.answer - so.answer)}")
        problems.append(f"  only in sotto:\n{fmt_rrs(so.answer - ub.answer)}")
    if problems:
        return f"{name} {qtype}:\n" + "\n".join(problems)
    return None


@pytest.mark.parametrize("name,qtype", DIFFERENTIAL, ids=[f"{n}{t}" for n, t in DIFFERENTIAL])
def test_same_as_unbound(unbound, sotto, free_port, name, qtype):
    ub = dig_query(unbound.address, unbound.port, name, qtype, "+tries=3")
    assert ub.status is not None, f"Unbound gave no answer: {ub.raw}"
    with sotto.serve(free_port) as srv:
        so = srv.dig(name, qtype)
    assert so.status is not None, f"sotto gave no answer: {so.raw}"
    problem = diff(name, qtype, ub, so)
    assert problem is None, "sotto differs from Unbound\n" + problem


def test_same_as_unbound_with_shared_cache(unbound, sotto, free_port):
    """All queries through one sotto process: cached delegations and chains must not change answers."""
    problems = []
    with sotto.serve(free_port) as srv:
        for name, qtype in DIFFERENTIAL + DIFFERENTIAL[:10]:
            ub = dig_query(unbound.address, unbound.port, name, qtype, "+tries=3")
            so = srv.dig(name, qtype)
            p = diff(name, qtype, ub, so)
            if p:
                problems.append(p)
    assert not problems, f"{len(problems)} differences from Unbound:\n" + "\n".join(problems)
