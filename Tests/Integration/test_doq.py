"""RFC 9539 opportunistic DNS over QUIC (RFC 9250) to authoritative servers, checked on the wire.

Every test captures loopback traffic (tcpdump, filtered to 127.53.0.0/16) while sotto runs
and asserts on packets (QUIC headers parsed by capture.py), on `lookup --json` hops and on
`sotto state show --json`.  Lab servers (Lab/lab.py; DoQ by Lab/doq_server.py, NSD on 53):

    127.53.17.1   doq.test.         DoQ (UDP 853) only; TCP 853 refused
    127.53.18.1   both.test.        DoT (NSD, TCP 853) and DoQ (UDP 853)
    127.53.19.1   quicsilent.test.  Do53; UDP 853 swallows every datagram; TCP 853 refused
    127.53.20.1   badquic.test.     DoQ; resets reset*, answers badid* with ID != 0, badlen* with a
                                    too-long length prefix; www/www2/h1..h12 are normal

CLI contract relied on (resolver commands `lookup` and `serve`): the DoT options
(--state-file, --no-encryption, --encrypted-port, --probe-timeout, --damping, --tls-ca-file)
plus --prefer doq|dot (default doq), --no-doq, --no-dot.
`lookup --json` hops: `transport` in Do53/UDP | Do53/TCP | DoT | DoQ, `reason` (non-empty),
`outcome`; encrypted hops (DoT, DoQ) also carry `resumed` (bool) and `early_data` (bool or null).
`sotto state show --state-file PATH --json`: each server has `dot` and `doq` objects with
state, status, initiated, completed, last_response, failures, certificate,
probes{started,succeeded,failed,timed_out}, handshake_ms, tls_version, resumed; `queries` may
have a `DoQ` key.
"""

from __future__ import annotations

import json
import signal
import time
from datetime import datetime
from pathlib import Path

import pytest

from harness import assert_encryption_does_not_slow, dig_query, fmt_rrs, norm_name, require, rrs_from_json, scaled

DOQ = "127.53.17.1"
BOTH = "127.53.18.1"
QUICSILENT = "127.53.19.1"
BADQUIC = "127.53.20.1"

TRANSPORTS = ("Do53/UDP", "Do53/TCP", "DoT", "DoQ")
ENCRYPTED = ("DoT", "DoQ")
STATES = ("established", "good-idle", "good-stale", "damped", "retryable", "probing", "unknown")
OPTIONS = ("--state-file", "--no-encryption", "--encrypted-port", "--probe-timeout", "--damping",
           "--tls-ca-file", "--prefer", "--no-doq", "--no-dot")
STATE_KEYS = ("state", "status", "initiated", "completed", "last_response", "failures", "certificate",
              "probes", "handshake_ms", "tls_version", "resumed")
# Seconds given to the probes on loopback before "later" queries; scaled under sanitizers, where a
# DoQ handshake took 1,071 ms under ThreadSanitizer (CI rehearsal ci93).
PROBE_SETTLE = scaled(1.0)


# --------------------------------------------------------------------------- fixtures and helpers

@pytest.fixture(scope="module")
def doq_lab(lab):
    require(lab.with_doq, "aioquic/dnspython not importable (python3 -m pip install aioquic dnspython): "
                          "the lab runs no DoQ servers")
    return lab


@pytest.fixture
def doq_sotto(sotto):
    """The sotto binary, after checking it knows the DoQ options: a binary without them fails
    here with one clear message instead of obscure errors later."""
    missing = []
    for cmd in (("lookup", "--help"), ("serve", "--help")):
        r = sotto.run(*cmd, timeout=20)
        text = r.stdout + r.stderr
        missing += [f"{cmd[0]} {o}" for o in OPTIONS if o not in text]
    r = sotto.run("state", "show", "--help", timeout=20)
    if r.returncode != 0 or "--state-file" not in r.stdout + r.stderr:
        missing.append("`state show` command")
    if missing:
        pytest.fail(f"{sotto.path} does not implement the opportunistic-DoQ CLI yet; missing: "
                    + ", ".join(missing), pytrace=False)
    return sotto


def expected_answers(lab, server: str, names: list[str], qtype: str = "A") -> dict:
    """Do53 answers straight from the authoritative server (dig, taken before any capture starts)."""
    out = {}
    for n in names:
        r = dig_query(server, lab.port, n, qtype, "+norec")
        assert r.status == "NOERROR" and r.answer, f"lab server {server} does not answer {n}: {r.raw}"
        out[n] = r.answer
    return out


def _check_transport_state(name: str, t: dict | None) -> None:
    if t is None:  # never probed / turned off (the README's state format allows null)
        return
    for key in STATE_KEYS:
        assert key in t, f"state {name} entry lacks '{key}': {t}"
    assert t["state"] in STATES, t
    assert t["status"] in ("success", "fail", "timeout", None), t
    for key in ("started", "succeeded", "failed", "timed_out"):
        assert isinstance(t["probes"].get(key), int), f"{name}.probes.{key}: {t}"
    assert isinstance(t["failures"], dict), t


def state_show(sotto, path: Path) -> dict:
    r = sotto.run("state", "show", "--state-file", str(path), "--json", timeout=20)
    assert r.returncode == 0, f"sotto state show exited {r.returncode}\nstdout: {r.stdout}\nstderr: {r.stderr}"
    try:
        data = json.loads(r.stdout)
    except json.JSONDecodeError as e:
        pytest.fail(f"state show --json did not print JSON ({e}):\n{r.stdout}")
    assert data.get("version") == 1, f"state show: version must be 1: {r.stdout[:500]}"
    assert isinstance(data.get("servers"), list), r.stdout[:500]
    for s in data["servers"]:
        for key in ("address", "ns_names", "zones", "dot", "doq", "queries"):
            assert key in s, f"state server entry lacks '{key}': {s}"
        _check_transport_state("dot", s["dot"])
        _check_transport_state("doq", s["doq"])
        assert set(s["queries"]) <= set(TRANSPORTS), s["queries"]
    return data


def tstate(server: dict, name: str) -> dict:
    """server["dot"] / server["doq"], failing clearly when it is null (transport never tried)."""
    t = server.get(name)
    assert t is not None, f"state of {server['address']} has no {name} object (null): was {name} never probed? {server}"
    return t


def server_state(state: dict, address: str) -> dict:
    for s in state["servers"]:
        if s["address"] == address:
            return s
    pytest.fail(f"state has no entry for {address}: {[s['address'] for s in state['servers']]}", pytrace=False)


def iso(ts: str) -> datetime:
    return datetime.fromisoformat(ts.replace("Z", "+00:00"))


def check_hops(data: dict) -> None:
    for hop in data["hops"]:
        assert hop.get("transport") in TRANSPORTS, f"hop transport must be one of {TRANSPORTS}: {hop}"
        assert isinstance(hop.get("reason"), str) and hop["reason"].strip(), f"hop without a reason: {hop}"
        if hop["transport"] in ENCRYPTED:
            assert isinstance(hop.get("resumed"), bool), f"encrypted hop without bool 'resumed': {hop}"
            assert "early_data" in hop and hop["early_data"] in (True, False, None), (
                f"encrypted hop without 'early_data' (bool or null): {hop}")


def hops_to(data: dict, server: str) -> list[dict]:
    return [h for h in data["hops"] if h["server"] == server]


def lookup_any(sotto, name: str, *extra: str) -> tuple[dict, object]:
    """lookup --json that may end in SERVFAIL (exit code not checked beyond 'no crash')."""
    r = sotto.lookup(name, "A", "--json", *extra)
    assert r.returncode >= 0 and r.returncode < 64, (
        f"sotto lookup {name} crashed or was killed (exit {r.returncode}):\n{r.stdout}\n{r.stderr}")
    try:
        data = json.loads(r.stdout)
    except json.JSONDecodeError:
        pytest.fail(f"sotto lookup {name} --json printed no JSON (exit {r.returncode}):\n{r.stdout}\n{r.stderr}")
    return data, r


def dig_all(srv, names: list[str], expected: dict) -> None:
    for n in names:
        r = srv.dig(n, "A")
        assert r.status == "NOERROR" and r.answer == expected[n], (
            f"{n} through sotto differs from the authoritative Do53 answer:\n{fmt_rrs(r.answer)}\n"
            f"expected:\n{fmt_rrs(expected[n])}\n{r.raw}")


def stop_serve(srv) -> None:
    code = srv.signal(signal.SIGTERM)
    assert code == 0, f"sotto serve did not exit 0 on SIGTERM (got {code}):\n{srv.log()}"


def tls_records_to(cap, addr: str, after: float | None = None, before: float | None = None) -> int:
    return sum(p.tls_record_types.count(23) for p in cap.to(addr, 853, "TCP", after, before))


# --------------------------------------------------------------------------- DoQ-capable server

def test_doq_server_probe_then_doq_only(doq_lab, doq_sotto, capture, free_port, tmp_path):
    """First query to doq.test.'s server: Do53/UDP plus one QUIC probe to UDP 853.  Once the
    probe succeeded, every query to that server goes over DoQ and none to port 53."""
    lab = doq_lab
    first, later = "www.doq.test.", [f"h{i}.doq.test." for i in range(1, 7)]
    expected = expected_answers(lab, DOQ, [first] + later)
    state = tmp_path / "state.json"
    cap = capture()
    with doq_sotto.serve(free_port, "--tls-ca-file", str(lab.ca_file), "--state-file", str(state)) as srv:
        dig_all(srv, [first], expected)
        time.sleep(PROBE_SETTLE)
        mark = time.time()
        dig_all(srv, later, expected)
        end = time.time()
        stop_serve(srv)
    cap.stop()
    trace = cap.summary(DOQ)
    before = cap.to(DOQ, before=mark)
    assert any(p.proto == "UDP" and p.dport == 53 for p in before), f"first query did not go over Do53/UDP:\n{trace}"
    probes = cap.quic_connections(DOQ, before=mark)
    assert len(probes) == 1, f"expected exactly one QUIC connection (the DoQ probe) with the first query:\n{trace}"
    first53, first853 = cap.first_per_port(DOQ).get(53), cap.quic_initials_to(DOQ)
    assert first53 and first853, trace
    assert not cap.to(DOQ, 53, after=mark), f"after the DoQ probe succeeded, queries still went to {DOQ}:53:\n{trace}"
    assert len(cap.quic_connections(DOQ, after=mark, before=end)) == 0, (
        f"later queries must reuse the probe's QUIC connection, not open new ones:\n{trace}")
    assert len(cap.quic_1rtt_to(DOQ, after=mark)) >= len(later), (
        f"{len(later)} later queries, but fewer 1-RTT QUIC datagrams to {DOQ}:853:\n{trace}")
    assert not tls_records_to(cap, DOQ), f"TCP 853 of doq.test. is refused, yet TLS data went there:\n{trace}"

    st = server_state(state_show(doq_sotto, state), DOQ)
    doq = tstate(st, "doq")
    assert doq["status"] == "success" and doq["state"] in ("good-idle", "established"), doq
    assert doq["probes"]["succeeded"] >= 1 and doq["probes"]["failed"] == 0 and doq["probes"]["timed_out"] == 0, doq
    assert doq["initiated"] and doq["completed"] and doq["last_response"], doq
    assert doq["tls_version"] in (None, "TLSv1.3"), f"DoQ is always TLS 1.3: {doq}"
    assert st["queries"].get("DoQ", 0) >= len(later), st["queries"]
    assert doq["certificate"] is None or not doq["certificate"]["problems"], (
        f"valid lab-CA certificate for ns1.doq.test classified as problematic (--tls-ca-file given): {doq}")
    assert st["dot"] is None or (st["dot"]["probes"]["succeeded"] == 0 and st["dot"]["status"] != "success"), (
        f"doq.test.'s TCP 853 is refused, DoT cannot have succeeded: {st['dot']}")
    assert "doq.test." in {norm_name(z) for z in st["zones"]}, st


def test_lookup_first_do53_then_state_file_resumes_quic(doq_lab, doq_sotto, capture, tmp_path):
    """lookup #1 (--state-file F): Do53 hop to doq.test.'s server with one DoQ probe; the state
    (with the server's session ticket) is saved.  lookup #2 from F: its first packet to that
    server is QUIC on UDP 853, nothing goes to port 53, and the DoQ hop says `resumed: true`;
    `early_data` is reported (true or false: 0-RTT is allowed, not required)."""
    lab = doq_lab
    state = tmp_path / "state.json"
    expected = expected_answers(lab, DOQ, ["www.doq.test.", "www2.doq.test."])
    cap1 = capture("first")
    d1 = doq_sotto.lookup_json("www.doq.test.", "A", "--state-file", str(state), "--tls-ca-file", str(lab.ca_file))
    cap1.stop()
    check_hops(d1)
    assert rrs_from_json(d1["answer"]) == expected["www.doq.test."], d1["answer"]
    h = hops_to(d1, DOQ)
    assert h and h[0]["transport"].startswith("Do53/"), f"first hop to {DOQ} must be Do53 (probe in flight): {h}"
    assert len(cap1.quic_connections(DOQ)) == 1, f"expected one DoQ probe:\n{cap1.summary(DOQ)}"
    assert cap1.sent_to(DOQ, 53, "UDP"), cap1.summary(DOQ)

    assert state.is_file(), "lookup --state-file did not write the state file"
    assert json.loads(state.read_text()).get("version") == 1, state.read_text()[:300]
    st = server_state(state_show(doq_sotto, state), DOQ)
    assert tstate(st, "doq")["status"] == "success" and tstate(st, "doq")["state"] == "good-idle", (
        f"lookup must wait (≤ probe timeout) for its DoQ probe and save the result: {st['doq']}")

    cap2 = capture("second")
    d2 = doq_sotto.lookup_json("www2.doq.test.", "A", "--state-file", str(state))
    cap2.stop()
    trace = cap2.summary(DOQ)
    check_hops(d2)
    assert rrs_from_json(d2["answer"]) == expected["www2.doq.test."], d2["answer"]
    first = cap2.first_to(DOQ)
    assert first is not None and first.proto == "UDP" and first.dport == 853 and first.quic_types[:1] == ["Initial"], (
        f"second process: first packet to {DOQ} must be a QUIC Initial to UDP 853:\n{trace}")
    assert not cap2.sent_to(DOQ, 53), f"second process sent a Do53 copy to {DOQ}:\n{trace}"
    assert len(cap2.quic_connections(DOQ)) == 1, trace
    h = hops_to(d2, DOQ)
    assert h and all(x["transport"] == "DoQ" for x in h), f"hops to {DOQ} from a known-good state: {h}"
    assert h[0]["resumed"] is True, (
        f"the lab DoQ server issued a session ticket in process 1; process 2 must resume with it: {h[0]}")
    assert h[0]["early_data"] in (True, False), f"early_data must say whether 0-RTT was accepted: {h[0]}"
    if h[0]["early_data"]:
        assert cap2.quic_0rtt_to(DOQ), f"early_data: true but no 0-RTT packet on the wire:\n{trace}"
    doq = tstate(server_state(state_show(doq_sotto, state), DOQ), "doq")
    assert doq["resumed"] is True, f"state: the last DoQ session was resumed: {doq}"


# --------------------------------------------------------------------------- DoT and DoQ on one server

def _both_run(lab, doq_sotto, capture, free_port, tmp_path, *extra):
    first, later = "www.both.test.", [f"h{i}.both.test." for i in range(1, 7)]
    expected = expected_answers(lab, BOTH, [first] + later)
    state = tmp_path / "state.json"
    cap = capture()
    with doq_sotto.serve(free_port, "--tls-ca-file", str(lab.ca_file), "--state-file", str(state), *extra) as srv:
        dig_all(srv, [first], expected)
        time.sleep(PROBE_SETTLE)
        mark = time.time()
        dig_all(srv, later, expected)
        end = time.time()
        stop_serve(srv)
    cap.stop()
    st = server_state(state_show(doq_sotto, state), BOTH)
    return cap, st, mark, end, later


def _check_both_probed_once(cap, st, mark):
    trace = cap.summary(BOTH)
    assert len(cap.syns(BOTH, 853)) == 1 and cap.syns(BOTH, 853)[0].time < mark, (
        f"expected exactly one DoT probe (TCP SYN to {BOTH}:853) with the first query:\n{trace}")
    assert len(cap.quic_connections(BOTH, before=mark)) == 1, (
        f"expected exactly one DoQ probe (QUIC connection to {BOTH}:853) with the first query:\n{trace}")
    assert not cap.to(BOTH, 53, after=mark), f"after the probes, queries still went to {BOTH}:53:\n{trace}"
    for name in ("dot", "doq"):
        t = tstate(st, name)
        assert t["status"] == "success" and t["probes"]["started"] == 1 and t["probes"]["succeeded"] == 1, (
            f"both.test.: {name} probed once and successfully: {t}")


def test_both_probed_once_doq_preferred(doq_lab, doq_sotto, capture, free_port, tmp_path):
    cap, st, mark, end, later = _both_run(doq_lab, doq_sotto, capture, free_port, tmp_path)
    trace = cap.summary(BOTH)
    _check_both_probed_once(cap, st, mark)
    assert len(cap.quic_1rtt_to(BOTH, after=mark)) >= len(later), (
        f"default preference is DoQ: {len(later)} later queries, fewer QUIC datagrams:\n{trace}")
    assert tls_records_to(cap, BOTH, after=mark, before=end) == 0, (
        f"default preference is DoQ, yet later queries went over DoT:\n{trace}")
    assert st["queries"].get("DoQ", 0) >= len(later), st["queries"]
    assert st["queries"].get("DoT", 0) <= 1, f"DoT may carry at most the probe's query: {st['queries']}"


def test_both_prefer_dot(doq_lab, doq_sotto, capture, free_port, tmp_path):
    cap, st, mark, end, later = _both_run(doq_lab, doq_sotto, capture, free_port, tmp_path, "--prefer", "dot")
    trace = cap.summary(BOTH)
    _check_both_probed_once(cap, st, mark)
    assert tls_records_to(cap, BOTH, after=mark, before=end) >= len(later), (
        f"--prefer dot: {len(later)} later queries, fewer TLS application-data records:\n{trace}")
    assert st["queries"].get("DoT", 0) >= len(later), st["queries"]
    assert st["queries"].get("DoQ", 0) <= 1, f"DoQ may carry at most the probe's query: {st['queries']}"


@pytest.mark.parametrize("switch,port_proto", [("--no-doq", "UDP"), ("--no-dot", "TCP")])
def test_one_transport_off(doq_lab, doq_sotto, capture, switch, port_proto, tmp_path):
    """--no-doq: nothing to UDP 853; --no-dot: nothing to TCP 853 (the other one still probes)."""
    state = tmp_path / "state.json"
    cap = capture()
    d = doq_sotto.lookup_json("www.both.test.", "A", "--state-file", str(state), switch)
    cap.stop()
    check_hops(d)
    trace = cap.summary(BOTH)
    assert not cap.to(BOTH, 853, port_proto), f"{switch}, yet {port_proto} 853 traffic:\n{trace}"
    other = "TCP" if port_proto == "UDP" else "UDP"
    assert cap.to(BOTH, 853, other), f"{switch} must not turn the other transport off:\n{trace}"


# --------------------------------------------------------------------------- silent UDP 853

def test_quicsilent_probe_times_out_and_damps(doq_lab, doq_sotto, capture, tmp_path):
    lab = doq_lab
    state = tmp_path / "state.json"
    expected = expected_answers(lab, QUICSILENT, ["www.quicsilent.test.", "www2.quicsilent.test."])
    cap = capture()
    t0 = time.monotonic()
    d = doq_sotto.lookup_json("www.quicsilent.test.", "A", "--probe-timeout", "1", "--state-file", str(state))
    wall = time.monotonic() - t0
    mark = time.time()
    d2 = doq_sotto.lookup_json("www2.quicsilent.test.", "A", "--probe-timeout", "1", "--state-file", str(state))
    cap.stop()
    trace = cap.summary(QUICSILENT)
    assert rrs_from_json(d["answer"]) == expected["www.quicsilent.test."], d["answer"]
    assert rrs_from_json(d2["answer"]) == expected["www2.quicsilent.test."], d2["answer"]
    for data in (d, d2):
        check_hops(data)
        h = hops_to(data, QUICSILENT)
        assert h and all(x["transport"].startswith("Do53/") for x in h), f"{QUICSILENT} over Do53 only: {h}"
        assert any(x["outcome"] == "answer" for x in h), h
    assert all("damp" in x["reason"].lower() for x in hops_to(d2, QUICSILENT)), (
        f"second lookup: reason should say the server is damped: {hops_to(d2, QUICSILENT)}")
    # The default 4 s probe timeout would take about 8.5 s (probe, its wait, the state write).
    assert wall < min(3 + scaled(3), 8), f"lookup took {wall:.1f}s; it may wait only ~1 s (--probe-timeout 1) for its probe"
    assert len(cap.quic_connections(QUICSILENT)) == 1, f"expected one DoQ probe in the damping period:\n{trace}"
    assert cap.quic_initials_to(QUICSILENT, after=None), f"no QUIC Initial sent to {QUICSILENT}:\n{trace}"
    assert not cap.to(QUICSILENT, 853, "UDP", after=mark), f"damped, yet the second process probed DoQ:\n{trace}"
    assert cap.payload_from(QUICSILENT, 853, "UDP") == 0, f"the silent UDP listener sent bytes?\n{trace}"

    doq = tstate(server_state(state_show(doq_sotto, state), QUICSILENT), "doq")
    assert doq["state"] == "damped" and doq["status"] == "timeout", doq
    assert doq["failures"].get("handshake-timeout", 0) == 1, f"failure class 'handshake-timeout' missing: {doq}"
    assert doq["probes"]["timed_out"] == 1 and doq["probes"]["started"] == 1, doq
    waited = (iso(doq["completed"]) - iso(doq["initiated"])).total_seconds()
    assert 0.8 <= waited <= min(1 + scaled(2), 3.9), f"probe should time out after ~1 s (--probe-timeout 1), took {waited:.2f}s: {doq}"


def test_quicsilent_does_not_slow_lookups(doq_lab, doq_sotto):
    """Median elapsed_ms of 5 lookups through quicsilent.test. with encryption on (each a fresh
    process, so each probes) vs --no-encryption: the DoQ probe must not delay resolution."""
    def check(d):
        check_hops(d)
        assert not [x for x in d["hops"] if x["transport"] in ENCRYPTED and x["server"] == QUICSILENT], d["hops"]
    assert_encryption_does_not_slow(doq_sotto, "quicsilent.test.", check)


# --------------------------------------------------------------------------- malformed DoQ responses

BAD_NAMES = ("reset.badquic.test.", "badid.badquic.test.", "badlen.badquic.test.")


def test_badquic_serve_survives_malformed_responses(doq_lab, doq_sotto, capture, free_port, tmp_path):
    """With the DoQ session up, a stream reset, a non-zero message ID and a too-long length
    prefix each fail that query (SERVFAIL, or an answer through another path), never the
    process; www2 resolves afterwards."""
    lab = doq_lab
    expected = expected_answers(lab, BADQUIC, ["www.badquic.test.", "www2.badquic.test."] + list(BAD_NAMES))
    state = tmp_path / "state.json"
    log_path = lab.instance("badquic").doq_log
    cap = capture()
    with doq_sotto.serve(free_port, "--state-file", str(state)) as srv:
        dig_all(srv, ["www.badquic.test."], expected)
        time.sleep(PROBE_SETTLE)
        mark = time.time()
        log_start = len(log_path.read_text())
        for n in BAD_NAMES:
            r = srv.dig(n, "A")
            assert srv.proc.poll() is None, f"sotto serve died on {n}:\n{srv.log()}"
            assert r.status in ("SERVFAIL", "NOERROR"), f"{n}: {r.raw}"
            if r.status == "NOERROR":
                assert r.answer == expected[n], f"{n}: wrong answer:\n{r.raw}"
        r = srv.dig("www2.badquic.test.", "A")
        assert r.status == "NOERROR" and r.answer == expected["www2.badquic.test."], r.raw
        stop_serve(srv)
    cap.stop()
    trace = cap.summary(BADQUIC)
    assert cap.quic_to(BADQUIC, after=mark), f"the bad names were not sent over DoQ at all:\n{trace}"
    log = log_path.read_text()[log_start:]
    for n in BAD_NAMES:
        assert f"{n} A: " in log, f"{n} never reached the DoQ server over DoQ:\n{log[-1500:]}"
    st = server_state(state_show(doq_sotto, state), BADQUIC)
    assert st["queries"].get("DoQ", 0) >= 1, st["queries"]


def test_badquic_reset_is_a_failed_query_not_a_damped_server(doq_lab, doq_sotto, tmp_path):
    """RESET_STREAM (DOQ_INTERNAL_ERROR): that query fails (OE-37, T-29); the DoQ status of the
    server stays success, and the next lookup still goes over DoQ."""
    state = tmp_path / "state.json"
    expected = expected_answers(doq_lab, BADQUIC, ["www.badquic.test.", "h1.badquic.test.", "reset.badquic.test."])
    d0 = doq_sotto.lookup_json("www.badquic.test.", "A", "--state-file", str(state))
    assert rrs_from_json(d0["answer"]) == expected["www.badquic.test."]
    assert tstate(server_state(state_show(doq_sotto, state), BADQUIC), "doq")["status"] == "success"
    d, r = lookup_any(doq_sotto, "reset.badquic.test.", "--state-file", str(state))
    check_hops(d)
    h = hops_to(d, BADQUIC)
    doq_hops = [x for x in h if x["transport"] == "DoQ"]
    assert doq_hops and doq_hops[0]["outcome"] != "answer", f"the reset DoQ query must be a failed hop: {h}"
    assert d["rcode"] == "SERVFAIL" or rrs_from_json(d["answer"]) == expected["reset.badquic.test."], d
    doq = tstate(server_state(state_show(doq_sotto, state), BADQUIC), "doq")
    assert doq["status"] == "success" and doq["state"] != "damped", (
        f"a per-query failure must not change the DoQ status (OE-37): {doq}")
    d2 = doq_sotto.lookup_json("h1.badquic.test.", "A", "--state-file", str(state))
    assert rrs_from_json(d2["answer"]) == expected["h1.badquic.test."]
    assert [x["transport"] for x in hops_to(d2, BADQUIC)] == ["DoQ"], hops_to(d2, BADQUIC)


@pytest.mark.parametrize("name", ["badid.badquic.test.", "badlen.badquic.test."])
def test_badquic_malformed_response_counted(doq_lab, doq_sotto, name, tmp_path):
    """A DoQ response with a non-zero message ID or a length prefix longer than the stream is
    malformed: that query fails over DoQ (hop outcome), the lookup ends in SERVFAIL or an answer
    via another path, and the process does not crash."""
    state = tmp_path / "state.json"
    expected = expected_answers(doq_lab, BADQUIC, ["www.badquic.test.", name])
    doq_sotto.lookup_json("www.badquic.test.", "A", "--state-file", str(state))
    d, r = lookup_any(doq_sotto, name, "--state-file", str(state))
    check_hops(d)
    h = hops_to(d, BADQUIC)
    doq_hops = [x for x in h if x["transport"] == "DoQ"]
    assert doq_hops and all(x["outcome"] != "answer" for x in doq_hops), f"malformed DoQ response used? {h}"
    assert d["rcode"] == "SERVFAIL" or rrs_from_json(d["answer"]) == expected[name], d
    st = server_state(state_show(doq_sotto, state), BADQUIC)
    assert st["queries"].get("DoQ", 0) >= 1, st["queries"]
    after = doq_sotto.lookup_json("www2.badquic.test.", "A", "--state-file", str(state))
    assert after["rcode"] == "NOERROR" and after["answer"], after


# --------------------------------------------------------------------------- switches

def test_no_encryption_sends_nothing_to_853(doq_lab, doq_sotto, capture, free_port):
    cap = capture()
    for name in ("www.doq.test.", "www.both.test.", "www.quicsilent.test.", "www.badquic.test."):
        d = doq_sotto.lookup_json(name, "A", "--no-encryption")
        check_hops(d)
        assert all(h["transport"].startswith("Do53/") for h in d["hops"]), d["hops"]
    with doq_sotto.serve(free_port, "--no-encryption") as srv:
        for n in ("h1.doq.test.", "h2.both.test.", "h3.doq.test."):
            r = srv.dig(n, "A")
            assert r.status == "NOERROR" and r.answer, r.raw
        stop_serve(srv)
    cap.stop()
    bad = [str(p) for p in cap.packets if p.dport == 853 or p.sport == 853]
    assert not bad, "--no-encryption, yet traffic on port 853:\n" + "\n".join(bad[:20])
