"""Serve-stale (RFC 8767, R-42-R-45) against the NSD lab: once records have expired and every
authority of their zone is dead, `sotto serve` answers with the expired records (TTL 30, EDE 3
"Stale Answer") instead of SERVFAIL, and does not try the dead servers again for 30 s. A name it
never cached still fails, and with `--max-stale 0` nothing is served stale."""

from __future__ import annotations

import json
import time

from harness import dig_query, labmod, scaled

WWW = "198.51.100.90"  # www.mixed.test. in the lab
NS1 = "127.53.16.1"  # ns1.mixed.test., the zone's own name server


def ctl(sotto, sock, *words) -> dict:
    r = sotto.run("ctl", "--control", str(sock), "--json", *words, timeout=60)
    assert r.stdout.strip(), f"no output from ctl {words}: rc={r.returncode} stderr={r.stderr}"
    return json.loads(r.stdout)


def answer_lines(raw: str) -> list[list[str]]:
    """The ANSWER SECTION of dig's output, one field list per record."""
    out, inside = [], False
    for line in raw.splitlines():
        if line.startswith(";; ANSWER SECTION"):
            inside = True
        elif line.startswith(";;") or not line.strip():
            inside = False
        elif inside:
            out.append(line.split())
    return out


def wait_for_socket(sock, srv) -> None:
    deadline = time.monotonic() + scaled(10)
    while not sock.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert sock.exists(), f"control socket not created:\n{srv.log()}"


def test_expired_records_are_served_stale_when_every_authority_is_dead(lab, sotto, tmp_path):
    insts = [lab.instance("mixed-dot"), lab.instance("mixed-plain")]
    sock = tmp_path / "ctl.sock"
    off_sock = tmp_path / "off.sock"
    # --max-ttl 1: every record of the walk has expired a second after it was cached.
    common = ("--no-encryption", "--max-ttl", "1")
    with sotto.serve(labmod.free_port(), "--control", str(sock), *common) as srv, \
            sotto.serve(labmod.free_port(), "--control", str(off_sock), "--max-stale", "0", *common) as off:
        wait_for_socket(sock, srv)
        wait_for_socket(off_sock, off)
        try:
            for s in (srv, off):
                fresh = s.dig("www.mixed.test", "A", "+ednsopt=ede")
                assert fresh.status == "NOERROR" and ("www.mixed.test.", "A", WWW) in fresh.answer, fresh.raw
                assert "Stale Answer" not in fresh.raw, fresh.raw
                # R-16 reaches the client: the zone's TTL is 3600, the cache keeps it 1 s.
                assert [int(r[1]) for r in answer_lines(fresh.raw)] in ([1], [0]), fresh.raw
            # A name that is also the zone's name server: its answer and the glue the refreshes
            # below store share one cache key.
            ns1 = srv.dig("ns1.mixed.test", "A")
            assert ns1.status == "NOERROR" and ("ns1.mixed.test.", "A", NS1) in ns1.answer, ns1.raw
            time.sleep(1.5)
            for inst in insts:
                labmod.kill_pid(lab.running()[inst.name])

            stale = srv.dig("www.mixed.test", "A")
            assert stale.status == "NOERROR", f"expected the stale answer, got:\n{stale.raw}\n{srv.log()}"
            rows = answer_lines(stale.raw)
            assert [(r[0], r[1], r[3], r[4]) for r in rows] == [("www.mixed.test.", "30", "A", WWW)], stale.raw
            assert "EDE: 3 (Stale Answer)" in stale.raw, stale.raw

            # within the recheck interval the question is answered stale with no upstream
            # query, by the resolver each time: the packet cache does not replay a stale answer (a
            # replay would not touch the DNS cache's stale-hit count).
            before = ctl(sotto, sock, "stats")["stats"]["cache"]["staleHits"]
            again_udp = srv.dig("www.mixed.test", "A")
            assert "EDE: 3 (Stale Answer)" in again_udp.raw and [r[1] for r in answer_lines(again_udp.raw)] == ["30"], \
                again_udp.raw
            assert ctl(sotto, sock, "stats")["stats"]["cache"]["staleHits"] == before + 1
            again = ctl(sotto, sock, "lookup", "www.mixed.test.", "A")["lookup"]
            assert again["rcode"] == "NOERROR" and again["stale"] is True, again
            assert again["hops"] == [] and "failure recheck" in (again["failureReason"] or ""), \
                f"the dead servers were asked again within 30 s: {again}"

            # The refreshes stored ns1.mixed.test.'s glue from test. over its expired answer; the
            # client still gets that answer, stale (it was SERVFAIL while the glue replaced it).
            ns1_stale = srv.dig("ns1.mixed.test", "A", "+ednsopt=ede")
            assert ns1_stale.status == "NOERROR", f"expected ns1's stale answer, got:\n{ns1_stale.raw}\n{srv.log()}"
            assert [(r[0], r[1], r[3], r[4]) for r in answer_lines(ns1_stale.raw)] == \
                [("ns1.mixed.test.", "30", "A", NS1)], ns1_stale.raw
            assert "EDE: 3 (Stale Answer)" in ns1_stale.raw, ns1_stale.raw

            never = srv.dig("www2.mixed.test", "A")
            assert never.status == "SERVFAIL", f"a name never cached has no stale answer:\n{never.raw}"

            no_stale = off.dig("www.mixed.test", "A")
            assert no_stale.status == "SERVFAIL", f"--max-stale 0 but:\n{no_stale.raw}"
            assert srv.proc.poll() is None and off.proc.poll() is None
        finally:
            lab.restart_stopped(insts)
