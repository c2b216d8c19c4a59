"""QNAME minimisation seen from `lookup --json` hops and `--trace` lines:
the root only ever sees `test.`, the test. servers only `example.test.`, and
the full name only reaches the example.test. server."""

from __future__ import annotations

import re

from harness import ctl, norm_name, wait_until

FULL = "a.b.c.d.example.test."
ROOTS = {"127.53.0.1", "127.53.0.2"}
TLDS = {"127.53.1.1", "127.53.1.2"}
EXAMPLE = {"127.53.3.1"}


def test_qmin_hops_json(lab, sotto):
    data = sotto.lookup_json(FULL, "A")
    hops = data["hops"]
    assert norm_name(hops[0]["zone"]) == ".", f"first hop is not to the root: {hops[0]}"
    # Priming (. NS) is allowed; every root query about the client's name is minimised to test.
    root = [h for h in hops if norm_name(h["zone"]) == "." and norm_name(h["qname"]).endswith("test.")]
    assert root, f"no resolution hop to the root: {hops}"
    assert all(norm_name(h["qname"]) == "test." for h in root), f"root saw more than test.: {root}"
    tld = [h for h in hops if norm_name(h["zone"]) == "test."]
    assert tld, f"no hop to the test. servers: {hops}"
    assert all(norm_name(h["qname"]) == "example.test." for h in tld), f"test. servers saw: {tld}"
    full = [h for h in hops if norm_name(h["qname"]) == FULL]
    assert full, "the full name was never asked"
    assert all(norm_name(h["zone"]) == "example.test." and h["server"] in EXAMPLE for h in full), full
    # Minimised queries use A/AAAA/NS only (RFC 9156 §2.1).
    for h in hops:
        if norm_name(h["qname"]) not in (FULL, "."):
            assert h["qtype"].upper() in ("A", "AAAA", "NS"), f"minimised query with type {h['qtype']}: {h}"


def _tokens(line: str) -> set[str]:
    return {t.strip(",;()[]{}\"'").lower() for t in line.split()}


def test_qmin_trace(lab, sotto):
    r = sotto.lookup(FULL, "A", "--trace")
    assert r.returncode == 0, f"exit {r.returncode}: {r.stdout}{r.stderr}"
    out = (r.stdout + "\n" + r.stderr).splitlines()
    hop_lines = [l for l in out if re.search(r"\b127\.53\.\d+\.\d+\b", l)]
    assert hop_lines, f"--trace printed no hop lines:\n{r.stdout}{r.stderr}"
    for l in hop_lines:
        assert "Do53" in l or "DoT" in l, f"trace line without transport: {l}"
        assert re.search(r"\d+(\.\d+)?\s*ms", l), f"trace line without rtt: {l}"
    by_server = lambda servers: [l for l in hop_lines if _tokens(l) & servers]
    root_lines = [l for l in by_server(ROOTS) if "test." in _tokens(l)]
    assert root_lines, f"no trace line shows the root asked for test.:\n" + "\n".join(hop_lines)
    tld_lines = by_server(TLDS)
    assert tld_lines and any("example.test." in _tokens(l) for l in tld_lines), "\n".join(hop_lines)
    for l in by_server(ROOTS):
        assert "example.test." not in _tokens(l), f"root was asked more than test.: {l}"
    for l in by_server(ROOTS) + tld_lines:
        assert FULL not in _tokens(l) and FULL.rstrip(".") not in _tokens(l), f"full name leaked: {l}"
    full_lines = [l for l in hop_lines if FULL in _tokens(l) or FULL.rstrip(".") in _tokens(l)]
    assert full_lines and all(_tokens(l) & EXAMPLE for l in full_lines), "\n".join(hop_lines)


def test_cached_empty_non_terminal_is_not_asked_again(lab, sotto, free_port, tmp_path):
    """Two names below the same empty non-terminal (wild.example.test., which holds only a
    wildcard): the first resolution asks the minimised step `wild.example.test. A` and caches its
    NODATA; the second goes straight to its full name, one hop (R-25 (3) with the cache)."""
    sock = tmp_path / "ctl.sock"
    with sotto.serve(free_port, "--control", str(sock), "--no-encryption") as srv:
        wait_until("the control socket", sock.exists, timeout=10, every=0.05)
        first = ctl(sotto, sock, "lookup", "one.wild.example.test", "A")["lookup"]
        assert first["rcode"] == "NOERROR", first
        ex1 = [h for h in first["hops"] if norm_name(h["zone"]) == "example.test."]
        # The minimised step and the full name, both to example.test.'s server.
        assert len(ex1) == 2, first["hops"]
        second = ctl(sotto, sock, "lookup", "two.wild.example.test", "A")["lookup"]
        assert second["rcode"] == "NOERROR", second
        assert [norm_name(h["zone"]) for h in second["hops"]] == ["example.test."], second["hops"]
        assert second["hops"][0]["server"] in EXAMPLE, second["hops"]
