"""RFC 9539 opportunistic DoT to authoritative servers, checked on the wire.

Every test captures loopback traffic (tcpdump, filtered to 127.53.0.0/16) while
sotto runs and asserts on packets, on `lookup --json` hops and on
`sotto state show --json`.  Lab servers (Lab/lab.py):

    127.53.12.1   dot.test.      DoT, valid lab-CA certificate (ns1.dot.test)
    127.53.13.1   badcert.test.  DoT, expired certificate for wrong-name.invalid
    127.53.14.1   refused.test.  Do53 only, TCP 853 refused (RST)
    127.53.15.1   silent.test.   Do53; TCP 853 accepts and never sends a byte
    127.53.16.1   mixed.test.    DoT (ns1)      127.53.16.2  mixed.test.  Do53 only (ns2)

CLI contract relied on (all resolver commands): --state-file PATH, --no-encryption,
--encrypted-port N, --probe-timeout S, --damping S, --persistence S, --tls-ca-file FILE;
`lookup --json` hops carry `transport` (Do53/UDP | Do53/TCP | DoT) and `reason`;
`sotto state show --state-file PATH [--json]`.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from datetime import datetime
from pathlib import Path

import pytest

from cases import WWW
from harness import (assert_encryption_does_not_slow, ctl, dig_query, fmt_rrs, norm_name, require, rrs_from_json,
                     scaled)

DOT = "127.53.12.1"
BADCERT = "127.53.13.1"
REFUSED = "127.53.14.1"
SILENT = "127.53.15.1"
MIXED_DOT = "127.53.16.1"
MIXED_PLAIN = "127.53.16.2"

TRANSPORTS = ("Do53/UDP", "Do53/TCP", "DoT")
DOT_STATES = ("established", "good-idle", "good-stale", "damped", "retryable", "probing", "unknown")
DOT_OPTIONS = ("--state-file", "--no-encryption", "--encrypted-port", "--probe-timeout", "--damping",
               "--persistence", "--tls-ca-file")
PROBE_SETTLE = 1.0  # seconds given to a probe on loopback before "later" queries


# --------------------------------------------------------------------------- helpers

@pytest.fixture
def dot_sotto(sotto):
    """The sotto binary, after checking it knows the DoT options at all: a binary
    without them fails here with one clear message instead of obscure errors later."""
    missing = []
    for cmd in (("lookup", "--help"), ("serve", "--help")):
        r = sotto.run(*cmd, timeout=20)
        text = r.stdout + r.stderr
        missing += [f"{cmd[0]} {o}" for o in DOT_OPTIONS if o not in text]
    r = sotto.run("state", "show", "--help", timeout=20)
    if r.returncode != 0 or "--state-file" not in r.stdout + r.stderr:
        missing.append("`state show` command")
    if missing:
        pytest.fail(f"{sotto.path} does not implement the opportunistic-DoT CLI yet; missing: "
                    + ", ".join(missing), pytrace=False)
    return sotto


def expected_answers(lab, server: str, names: list[str], qtype: str = "A") -> dict:
    """Do53 answers straight from the authoritative server (taken before any capture starts)."""
    out = {}
    for n in names:
        r = dig_query(server, lab.port, n, qtype, "+norec")
        assert r.status == "NOERROR" and r.answer, f"lab server {server} does not answer {n}: {r.raw}"
        out[n] = r.answer
    return out


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
        for key in ("address", "ns_names", "zones", "dot", "queries"):
            assert key in s, f"state server entry lacks '{key}': {s}"
        for key in ("state", "status", "initiated", "completed", "last_response", "failures", "certificate",
                    "probes"):
            assert key in s["dot"], f"state dot entry lacks '{key}': {s['dot']}"
        assert s["dot"]["state"] in DOT_STATES, s["dot"]
        assert s["dot"]["status"] in ("success", "fail", "timeout", None), s["dot"]
        for key in ("started", "succeeded", "failed", "timed_out"):
            assert isinstance(s["dot"]["probes"].get(key), int), f"probes.{key}: {s['dot']}"
        # DoQ: sotto may also probe DoQ (UDP 853) on these servers; their queries map may name it.
        assert set(s["queries"]) <= set(TRANSPORTS) | {"DoQ"}, s["queries"]
    return data


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


def hops_to(data: dict, server: str) -> list[dict]:
    return [h for h in data["hops"] if h["server"] == server]


def tls_records_to(cap, addr: str, after: float | None = None) -> int:
    return sum(p.tls_record_types.count(23) for p in cap.to(addr, 853, "TCP", after))


def dig_all(srv, names: list[str], expected: dict) -> None:
    for n in names:
        r = srv.dig(n, "A")
        assert r.status == "NOERROR" and r.answer == expected[n], (
            f"{n} through sotto differs from the authoritative Do53 answer:\n{fmt_rrs(r.answer)}\n"
            f"expected:\n{fmt_rrs(expected[n])}\n{r.raw}")


def stop_serve(srv) -> None:
    code = srv.signal(signal.SIGTERM)
    assert code == 0, f"sotto serve did not exit 0 on SIGTERM (got {code}):\n{srv.log()}"


# --------------------------------------------------------------------------- DoT-capable server

def test_dot_server_probe_then_dot_only(lab, dot_sotto, capture, free_port, tmp_path):
    """First query to dot.test.'s server: Do53/UDP plus exactly one DoT probe.  Once the
    probe succeeded, every query to that server goes over TCP 853 and none to port 53."""
    first, later = "www.dot.test.", [f"h{i}.dot.test." for i in range(1, 7)]
    expected = expected_answers(lab, DOT, [first] + later)
    state = tmp_path / "state.json"
    cap = capture()
    with dot_sotto.serve(free_port, "--tls-ca-file", str(lab.ca_file), "--state-file", str(state)) as srv:
        dig_all(srv, [first], expected)
        time.sleep(PROBE_SETTLE)
        mark = time.time()
        dig_all(srv, later, expected)
        stop_serve(srv)
    cap.stop()
    trace = cap.summary(DOT)
    before = cap.to(DOT, after=None, before=mark)
    assert any(p.proto == "UDP" and p.dport == 53 for p in before), f"first query did not go over Do53/UDP:\n{trace}"
    assert len(cap.syns(DOT, 853)) >= 1 and len([p for p in cap.syns(DOT, 853) if p.time < mark]) == 1, (
        f"expected exactly one DoT probe (TCP SYN to {DOT}:853) with the first query:\n{trace}")
    assert not cap.to(DOT, 53, after=mark), f"after the probe succeeded, queries still went to {DOT}:53:\n{trace}"
    assert tls_records_to(cap, DOT, after=mark) >= len(later), (
        f"{len(later)} later queries, but fewer TLS application-data records to {DOT}:853:\n{trace}")

    st = server_state(state_show(dot_sotto, state), DOT)
    dot = st["dot"]
    assert dot["status"] == "success" and dot["state"] in ("good-idle", "established"), dot
    assert dot["probes"]["succeeded"] >= 1 and dot["probes"]["failed"] == 0 and dot["probes"]["timed_out"] == 0, dot
    assert dot["initiated"] and dot["completed"] and dot["last_response"], dot
    assert st["queries"].get("DoT", 0) >= len(later), st["queries"]
    assert dot["certificate"] is None or not dot["certificate"]["problems"], (
        f"valid lab-CA certificate for ns1.dot.test classified as problematic (--tls-ca-file given): {dot}")
    assert "ns1.dot.test." in {norm_name(n) for n in st["ns_names"]}, st
    assert "dot.test." in {norm_name(z) for z in st["zones"]}, st


def test_lookup_hops_first_do53_then_state_file_goes_straight_to_dot(lab, dot_sotto, capture, tmp_path):
    """lookup #1 (--state-file F): Do53 hop to dot.test.'s server with one probe, state saved.
    lookup #2 from F: its first packet to that server is a SYN to 853, nothing to port 53."""
    state = tmp_path / "state.json"
    expected = expected_answers(lab, DOT, ["www.dot.test.", "www2.dot.test."])
    cap1 = capture("first")
    d1 = dot_sotto.lookup_json("www.dot.test.", "A", "--state-file", str(state), "--tls-ca-file", str(lab.ca_file))
    cap1.stop()
    check_hops(d1)
    assert rrs_from_json(d1["answer"]) == expected["www.dot.test."], d1["answer"]
    h = hops_to(d1, DOT)
    assert h and h[0]["transport"].startswith("Do53/"), f"first hop to {DOT} must be Do53 (probe in flight): {h}"
    assert len(cap1.syns(DOT, 853)) == 1, f"expected one DoT probe:\n{cap1.summary(DOT)}"
    assert cap1.sent_to(DOT, 53, "UDP"), cap1.summary(DOT)

    assert state.is_file(), "lookup --state-file did not write the state file"
    raw = json.loads(state.read_text())
    assert raw.get("version") == 1, f"state file is not versioned JSON (version 1): {state.read_text()[:300]}"
    st = server_state(state_show(dot_sotto, state), DOT)
    assert st["dot"]["status"] == "success" and st["dot"]["state"] == "good-idle", (
        f"lookup must wait (≤ probe timeout) for its probe and save the result: {st['dot']}")
    table = dot_sotto.run("state", "show", "--state-file", str(state))
    assert table.returncode == 0 and DOT in table.stdout and "good-idle" in table.stdout, table.stdout + table.stderr

    cap2 = capture("second")
    d2 = dot_sotto.lookup_json("www2.dot.test.", "A", "--state-file", str(state))
    cap2.stop()
    check_hops(d2)
    assert rrs_from_json(d2["answer"]) == expected["www2.dot.test."], d2["answer"]
    first = cap2.first_to(DOT)
    assert first is not None and first.proto == "TCP" and first.dport == 853 and first.syn, (
        f"second process: first packet to {DOT} must be a TCP SYN to 853:\n{cap2.summary(DOT)}")
    assert not cap2.sent_to(DOT, 53), f"second process sent a Do53 copy to {DOT}:\n{cap2.summary(DOT)}"
    h = hops_to(d2, DOT)
    assert h and all(x["transport"] == "DoT" for x in h), f"hops to {DOT} from a known-good state: {h}"


def test_ssl_cert_file_decides_the_dot_verdict(lab, dot_sotto, tmp_path):
    """With SSL_CERT_FILE naming the trust bundle (no --tls-ca-file), OpenSSL's store is built off
    the start-up path (LazyVerifyStore) and still decides the certificate's verdict: the lab CA as
    the bundle makes ns1.dot.test's certificate valid, a bundle without it does not, and Sotto
    warns that it holds no certificate."""
    empty = tmp_path / "empty.pem"
    empty.write_text("# no certificates\n")
    verdicts, warnings = {}, {}
    # "lab+ca": the same certificate also given as --tls-ca-file (no "holds no certificate" then).
    for name, bundle, extra in (("lab", lab.ca_file, ()), ("empty", empty, ()),
                                ("lab+ca", lab.ca_file, ("--tls-ca-file", str(lab.ca_file)))):
        state = tmp_path / f"{name}.json"
        env = {k: v for k, v in os.environ.items() if k != "SSL_CERT_DIR"}
        env["SSL_CERT_FILE"] = str(bundle)
        r = dot_sotto.lookup("www.dot.test.", "A", "--state-file", str(state), *extra, env=env)
        assert r.returncode == 0, r.stdout + r.stderr
        warnings[name] = r.stderr
        dot = server_state(state_show(dot_sotto, state), DOT)["dot"]
        assert dot["status"] == "success" and dot["certificate"], dot
        verdicts[name] = dot["certificate"]["problems"]
    assert verdicts["lab"] == [] and verdicts["lab+ca"] == [], verdicts
    assert verdicts["empty"] and set(verdicts["empty"]) <= {"self-signed", "untrusted-issuer"}, verdicts
    assert [n for n, w in warnings.items() if "holds no certificate" in w] == ["empty"], warnings


@pytest.mark.parametrize("kind", ["fifo", "missing"])
def test_an_unusable_trust_bundle_is_reported_and_not_waited_for(lab, dot_sotto, tmp_path, kind):
    """SSL_CERT_FILE naming a FIFO (which OpenSSL would block on opening, for ever, with every
    probe waiting for the store) or a missing file: Sotto says so at start, does not read it, and
    verifies against the certificate directory (SSL_CERT_DIR) instead, as OpenSSL's defaults
    would. DoT still gets its probe through and its verdict from that directory."""
    bundle = tmp_path / "ca.pem"
    if kind == "fifo":
        os.mkfifo(bundle)
    certs = tmp_path / "certs"
    certs.mkdir()
    (certs / "lab-ca.pem").write_text(lab.ca_file.read_text())
    r = subprocess.run(["openssl", "rehash", str(certs)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    env = dict(os.environ, SSL_CERT_FILE=str(bundle), SSL_CERT_DIR=str(certs))
    state = tmp_path / "state.json"
    r = dot_sotto.lookup("www.dot.test.", "A", "--state-file", str(state), env=env, timeout=30)
    assert r.returncode == 0, r.stdout + r.stderr
    dot = server_state(state_show(dot_sotto, state), DOT)["dot"]
    assert dot["status"] == "success" and dot["certificate"], dot
    assert dot["certificate"]["problems"] == [], dot
    expected = "is not a regular file" if kind == "fifo" else "cannot be read: No such file"
    assert f"CA bundle {bundle} (SSL_CERT_FILE) {expected}" in r.stderr, r.stderr
    assert str(certs) in r.stderr, r.stderr


def slow_trust_bundle(tmp_path: Path, lab) -> Path:
    """A CA bundle OpenSSL takes about 0.2 s to parse (213 ms through Python's ssl here; more under
    the sanitizers): Debian's system bundle 10 times over, then the lab CA."""
    system = Path("/etc/ssl/certs/ca-certificates.crt")
    require(system.is_file(), f"{system} (Debian's ca-certificates) is needed for a large CA bundle")
    bundle = tmp_path / "slow-bundle.pem"
    bundle.write_text(system.read_text() * 10 + lab.ca_file.read_text())
    return bundle


def test_a_slow_trust_bundle_delays_no_answer(lab, dot_sotto, tmp_path):
    """SSL_CERT_FILE naming a bundle that takes a while to parse: DoT connections wait for the
    store off every thread that answers, so lookups with encryption on are not slower than with
    it off (the first connection used to build the store on a cooperative thread: +100 ms a
    lookup under AddressSanitizer with the system bundle, in CI), and the verdict, given once the
    store is built, still comes from the bundle."""
    env = {k: v for k, v in os.environ.items() if k != "SSL_CERT_DIR"}
    env["SSL_CERT_FILE"] = str(slow_trust_bundle(tmp_path, lab))

    assert_encryption_does_not_slow(dot_sotto, "silent.test.", check_hops, env=env)
    state = tmp_path / "state.json"
    r = dot_sotto.lookup("www.dot.test.", "A", "--state-file", str(state), env=env)
    assert r.returncode == 0, r.stdout + r.stderr
    dot = server_state(state_show(dot_sotto, state), DOT)["dot"]
    assert dot["status"] == "success" and dot["certificate"], dot
    assert dot["certificate"]["problems"] == [], dot


# --------------------------------------------------------------------------- refused / damping

def test_refused_853_one_probe_per_damping_period(lab, dot_sotto, capture, free_port, tmp_path):
    names = ["www.refused.test."] + [f"h{i}.refused.test." for i in range(1, 5)]
    expected = expected_answers(lab, REFUSED, names + ["h5.refused.test."])
    state = tmp_path / "state.json"
    cap = capture()
    with dot_sotto.serve(free_port, "--state-file", str(state)) as srv:
        dig_all(srv, names[:1], expected)
        time.sleep(0.5)
        dig_all(srv, names[1:], expected)
        stop_serve(srv)
    # A second process from the saved state: still damped, no new probe.
    d = dot_sotto.lookup_json("h5.refused.test.", "A", "--state-file", str(state))
    cap.stop()
    trace = cap.summary(REFUSED)
    assert rrs_from_json(d["answer"]) == expected["h5.refused.test."]
    check_hops(d)
    h = hops_to(d, REFUSED)
    assert h and all(x["transport"].startswith("Do53/") for x in h), h
    assert all("damp" in x["reason"].lower() for x in h), f"reason should say the server is damped: {h}"
    assert len(cap.syns(REFUSED, 853)) == 1, f"expected exactly one SYN to {REFUSED}:853 in the damping period:\n{trace}"
    assert any(p.rst for p in cap.from_(REFUSED, 853)), f"no RST from {REFUSED}:853?\n{trace}"
    assert len([p for p in cap.to(REFUSED, 53) if p.payload_len]) >= len(names) + 1, (
        f"every query must go over Do53 to {REFUSED}:\n{trace}")

    st = server_state(state_show(dot_sotto, state), REFUSED)
    dot = st["dot"]
    assert dot["state"] == "damped" and dot["status"] == "fail", dot
    assert dot["failures"].get("refused", 0) >= 1, f"failure class 'refused' not recorded: {dot}"
    assert dot["probes"]["started"] == 1 and dot["probes"]["failed"] == 1, dot
    assert st["queries"].get("DoT", 0) == 0, st["queries"]


def test_refused_reprobed_after_damping(lab, dot_sotto, capture, tmp_path):
    state = tmp_path / "state.json"
    cap = capture()
    dot_sotto.lookup_json("www.refused.test.", "A", "--state-file", str(state), "--damping", "1")
    n1 = len(cap.syns(REFUSED, 853))
    time.sleep(1.5)
    dot_sotto.lookup_json("www2.refused.test.", "A", "--state-file", str(state), "--damping", "1")
    cap.stop()
    assert n1 == 1 and len(cap.syns(REFUSED, 853)) == 2, (
        f"with --damping 1, a lookup 1.5 s later must probe again (one SYN each):\n{cap.summary(REFUSED)}")
    dot = server_state(state_show(dot_sotto, state), REFUSED)["dot"]
    assert dot["probes"]["started"] == 2 and dot["failures"].get("refused", 0) == 2, dot


# --------------------------------------------------------------------------- silent 853

def test_silent_853_probe_times_out(lab, dot_sotto, capture, tmp_path):
    state = tmp_path / "state.json"
    expected = expected_answers(lab, SILENT, ["www.silent.test."])
    cap = capture()
    t0 = time.monotonic()
    d = dot_sotto.lookup_json("www.silent.test.", "A", "--probe-timeout", "1", "--state-file", str(state))
    wall = time.monotonic() - t0
    cap.stop()
    trace = cap.summary(SILENT)
    assert rrs_from_json(d["answer"]) == expected["www.silent.test."], d["answer"]
    check_hops(d)
    assert not [x for x in d["hops"] if x["transport"] == "DoT" and x["server"] == SILENT], d["hops"]
    h = hops_to(d, SILENT)
    assert h and all(x["transport"].startswith("Do53/") for x in h), f"silent.test.'s server over Do53 only: {h}"
    assert any(x["outcome"] == "answer" for x in h), h
    # Generous: process start + resolution + at most ~1 s waiting for its own probe.
    # The default 4 s probe timeout would take about 8.5 s (probe, its wait, the state write).
    assert wall < min(3 + scaled(3), 8), f"lookup took {wall:.1f}s; it may wait only ~1 s (--probe-timeout 1) for its probe"
    assert len(cap.syns(SILENT, 853)) == 1, f"expected one probe:\n{trace}"
    assert [p for p in cap.to(SILENT, 853) if p.payload_len], f"no ClientHello sent to the silent server:\n{trace}"
    assert cap.payload_from(SILENT, 853) == 0, f"the silent listener sent bytes?\n{trace}"

    dot = server_state(state_show(dot_sotto, state), SILENT)["dot"]
    assert dot["state"] == "damped" and dot["status"] == "timeout", dot
    assert dot["failures"].get("handshake-timeout", 0) == 1, f"failure class 'handshake-timeout' missing: {dot}"
    assert dot["probes"]["timed_out"] == 1, dot
    waited = (iso(dot["completed"]) - iso(dot["initiated"])).total_seconds()
    assert 0.8 <= waited <= min(1 + scaled(2), 3.9), f"probe should time out after ~1 s (--probe-timeout 1), took {waited:.2f}s: {dot}"


def test_known_good_server_gone_silent_on_853_holds_no_query_past_the_deadline(lab, dot_sotto, capture, tmp_path):
    """A state file says silent.test.'s server has working DoT (as if it had it yesterday); its
    853 now accepts and never speaks. With a probe timeout of 8 s and a resolution deadline of
    3 s, the lookup must end by the deadline (a query waits on the pending connection two
    exchange timeouts, never past the deadline), send nothing over Do53 to that server (OE-11:
    its encryption is known to work), and show the DoT hops as timeouts."""
    state = tmp_path / "state.json"
    dot_sotto.lookup_json("www.dot.test.", "A", "--state-file", str(state), "--tls-ca-file", str(lab.ca_file))
    assert server_state(state_show(dot_sotto, state), DOT)["dot"]["status"] == "success"
    # The same record, moved to the silent server's address: known good there now.
    state.write_text(state.read_text().replace(DOT, SILENT))
    assert server_state(state_show(dot_sotto, state), SILENT)["dot"]["status"] == "success"
    cap = capture()
    t0 = time.monotonic()
    r = dot_sotto.lookup("h9.silent.test.", "A", "--json", "--state-file", str(state), "--probe-timeout", "8",
                         "--resolution-deadline", "3")
    wall = time.monotonic() - t0
    cap.stop()
    assert r.returncode == 2 and "SERVFAIL" in r.stderr, f"exit {r.returncode}\n{r.stdout}\n{r.stderr}"
    d = json.loads(r.stdout)
    trace = cap.summary(SILENT)
    check_hops(d)
    h = hops_to(d, SILENT)
    assert h and all(x["transport"] == "DoT" and x["outcome"] == "timeout" for x in h), h
    assert all("waiting for its connection to come up" in x["reason"] for x in h), h
    assert d["rcode"] == "SERVFAIL", (d["rcode"], d.get("error"), h)
    assert not cap.sent_to(SILENT, 53), f"cleartext to a server known to do DoT:\n{trace}"
    assert len(cap.syns(SILENT, 853)) == 1, f"one connection attempt, joined by every query:\n{trace}"
    # Before, every query waited for the 8 s handshake timeout and then went over Do53.
    assert float(d["elapsed_ms"]) < 3000 + min(scaled(1.5), 4.5) * 1000, f"resolution took {d['elapsed_ms']} ms; deadline 3 s"
    assert wall < 3 + scaled(4), f"lookup took {wall:.1f}s; the handshake's own timeout is 8 s"


def test_silent_853_does_not_slow_lookups(lab, dot_sotto):
    """Median elapsed_ms of 5 lookups through silent.test. with encryption on (each a fresh
    process, so each probes) vs --no-encryption: probing must not delay resolution."""
    def check(d):
        check_hops(d)
        assert not [x for x in d["hops"] if x["transport"] == "DoT" and x["server"] == SILENT], d["hops"]
    assert_encryption_does_not_slow(dot_sotto, "silent.test.", check)


# --------------------------------------------------------------------------- bad certificate

def test_badcert_used_over_dot_and_problems_recorded(lab, dot_sotto, capture, free_port, tmp_path):
    first, later = "www.badcert.test.", [f"h{i}.badcert.test." for i in range(1, 5)]
    expected = expected_answers(lab, BADCERT, [first] + later)
    state = tmp_path / "state.json"
    cap = capture()
    with dot_sotto.serve(free_port, "--tls-ca-file", str(lab.ca_file), "--state-file", str(state)) as srv:
        dig_all(srv, [first], expected)
        time.sleep(PROBE_SETTLE)
        mark = time.time()
        dig_all(srv, later, expected)
        stop_serve(srv)
    cap.stop()
    trace = cap.summary(BADCERT)
    assert not cap.to(BADCERT, 53, after=mark), f"expired/wrong-name cert must not stop DoT use (RFC 9539 §4.6.3.4):\n{trace}"
    assert tls_records_to(cap, BADCERT, after=mark) >= len(later), trace

    dot = server_state(state_show(dot_sotto, state), BADCERT)["dot"]
    assert dot["status"] == "success" and dot["state"] in ("good-idle", "established"), dot
    cert = dot["certificate"]
    assert cert is not None, f"certificate classification missing: {dot}"
    assert {"expired", "wrong-name"} <= set(cert["problems"]), f"problems: {cert}"
    assert "wrong-name.invalid" in str(cert.get("subject")), cert
    assert str(cert.get("not_after", "")).startswith("2025-01-01"), cert


def test_tls_ca_file_does_not_decide_dot(lab, dot_sotto, capture, tmp_path):
    """Without --tls-ca-file the bad certificate is unverifiable, and DoT is still used."""
    state = tmp_path / "state.json"
    dot_sotto.lookup_json("www.badcert.test.", "A", "--state-file", str(state))
    cap = capture()
    d = dot_sotto.lookup_json("www2.badcert.test.", "A", "--state-file", str(state))
    cap.stop()
    h = hops_to(d, BADCERT)
    assert h and all(x["transport"] == "DoT" for x in h), h
    assert not cap.sent_to(BADCERT, 53), cap.summary(BADCERT)


# --------------------------------------------------------------------------- mixed zone

def test_mixed_zone_prefers_encrypted_server(lab, dot_sotto, capture, free_port, tmp_path):
    warm = [f"h{i}.mixed.test." for i in range(1, 9)]
    later = [f"h{i}.mixed.test." for i in range(9, 13)] + ["www.mixed.test.", "www2.mixed.test."]
    expected = expected_answers(lab, MIXED_PLAIN, warm + later)
    assert expected == expected_answers(lab, MIXED_DOT, warm + later), "mixed.test. servers disagree"
    state = tmp_path / "state.json"
    sock = tmp_path / "ctl.sock"
    cap = capture()
    with dot_sotto.serve(free_port, "--state-file", str(state), "--control", str(sock)) as srv:
        for n in warm:
            dig_all(srv, [n], expected)
            time.sleep(0.3)

        def dot_known_good() -> bool:
            servers = {s["address"]: s for s in ctl(dot_sotto, sock, "servers")["servers"]}
            return (servers.get(MIXED_DOT) or {}).get("dot", {}).get("phase") in ("established", "good-idle")

        # Both servers are equally fast on loopback, so each query picks one at random: the warm-up
        # may not have asked (and so probed) the DoT server yet (about 1 run in 256 with 8 names and
        # even picks). Fresh names until it has, so that the rest of the test is about a server
        # known good.
        for i in range(40):
            if dot_known_good():
                break
            srv.dig(f"nx{i}.mixed.test.")
            time.sleep(0.3)
        assert dot_known_good(), "mixed.test.'s DoT server was never asked (and probed) in 48 queries"
        time.sleep(PROBE_SETTLE)
        mark = time.time()
        dig_all(srv, later, expected)
        stop_serve(srv)
    cap.stop()
    assert not cap.to(MIXED_PLAIN, after=mark), (
        f"after warm-up, mixed.test. queries still went to the Do53-only server:\n{cap.summary(MIXED_PLAIN)}")
    assert not cap.to(MIXED_DOT, 53, after=mark), cap.summary(MIXED_DOT)
    assert tls_records_to(cap, MIXED_DOT, after=mark) >= len(later), cap.summary(MIXED_DOT)
    dot = server_state(state_show(dot_sotto, state), MIXED_DOT)["dot"]
    assert dot["status"] == "success", dot


# --------------------------------------------------------------------------- state file / switches

def test_corrupt_state_file_warns_backs_up_and_still_resolves(lab, dot_sotto, tmp_path):
    state = tmp_path / "state.json"
    garbage = b"\x00\xffthis is { not json"
    state.write_bytes(garbage)
    r = dot_sotto.lookup("www.example.test.", "A", "--json", "--state-file", str(state))
    assert r.returncode == 0, f"corrupt state file must not break the lookup:\n{r.stdout}\n{r.stderr}"
    assert rrs_from_json(json.loads(r.stdout)["answer"]) == WWW
    backups = [p for p in tmp_path.iterdir() if p.name.startswith(state.name) and p != state
               and p.read_bytes() == garbage]
    assert len(backups) == 1, f"expected one backup copy of the corrupt file next to it: {list(tmp_path.iterdir())}"
    assert str(state) in r.stderr and str(backups[0]) in r.stderr, (
        f"the warning on stderr must name the file and the backup {backups[0]}:\n{r.stderr}")
    if state.exists():
        assert json.loads(state.read_text()).get("version") == 1, state.read_text()[:300]


def test_no_encryption_sends_nothing_to_853(lab, dot_sotto, capture, free_port):
    cap = capture()
    for name in ("www.dot.test.", "www.badcert.test.", "www.example.test.", "h1.mixed.test."):
        d = dot_sotto.lookup_json(name, "A", "--no-encryption")
        check_hops(d)
        assert all(h["transport"].startswith("Do53/") for h in d["hops"]), d["hops"]
    with dot_sotto.serve(free_port, "--no-encryption") as srv:
        for n in ("h1.dot.test.", "h2.dot.test.", "h3.dot.test."):
            r = srv.dig(n, "A")
            assert r.status == "NOERROR" and r.answer, r.raw
        stop_serve(srv)
    cap.stop()
    bad = [str(p) for p in cap.packets if p.dport == 853 or p.sport == 853]
    assert not bad, "--no-encryption, yet traffic on port 853:\n" + "\n".join(bad[:20])


# --------------------------------------------------------------------------- extra connections

def burst(port: int, names: list[str]) -> dict[str, str]:
    """Sends one A query per name to sotto at once (one socket, no waiting between them) and
    returns each name's rcode: the resolutions overlap, so their DoT queries do too."""
    import socket

    import dns.message
    import dns.rcode

    by_id = {}
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(scaled(10))
        for i, n in enumerate(names):
            q = dns.message.make_query(n, "A")
            q.id = i + 1
            by_id[q.id] = n
            s.sendto(q.to_wire(), ("127.0.0.1", port))
        out = {}
        while len(out) < len(names):
            data, _ = s.recvfrom(65535)
            r = dns.message.from_wire(data)
            out[by_id[r.id]] = dns.rcode.to_text(r.rcode())
    return out


@pytest.mark.parametrize("options,extra", [(("--dot-connections", "3", "--dot-connections-min-rtt", "0"), 2),
                                           (("--dot-connections", "1", "--dot-connections-min-rtt", "0"), 0),
                                           ((), 0)], ids=["cap-3", "cap-1", "defaults-on-loopback"])
def test_overlapping_queries_open_extra_dot_connections_up_to_the_cap(lab, dot_sotto, capture, free_port,
                                                                       tmp_path, options, extra):
    """NSD holds an answer behind an unacknowledged one (Nagle), so queries that overlap on one
    DoT connection wait a round trip each: a burst of overlapping queries to dot.test.'s server
    opens up to N-1 more connections (--dot-connections N), all encrypted (no query to its port
    53), every answer right. With N = 1 the burst stays on one connection, and so it does with
    the defaults on loopback, whose round trip is under --dot-connections-min-rtt (1 ms): there a
    hold costs microseconds, not worth a handshake."""
    names = [f"burst{i}.dot.test." for i in range(40)]
    cap = capture()
    with dot_sotto.serve(free_port, "--tls-ca-file", str(lab.ca_file), *options) as srv:
        dig_all(srv, ["www.dot.test."], expected_answers(lab, DOT, ["www.dot.test."]))
        time.sleep(PROBE_SETTLE)
        r = srv.dig("h1.dot.test.", "A")  # over the DoT session: delegations cached, session up
        assert r.status == "NOERROR", r.raw
        mark = time.time()
        rcodes = {}
        for round_ in range(3):
            rcodes.update(burst(free_port, [n.replace("burst", f"b{round_}-") for n in names]))
            time.sleep(0.2)
        stop_serve(srv)
    cap.stop()
    trace = cap.summary(DOT)
    assert len(rcodes) == 3 * len(names) and set(rcodes.values()) == {"NXDOMAIN"}, rcodes
    assert not cap.to(DOT, 53, after=mark), f"queries to {DOT}:53 during the bursts:\n{trace}"
    syns = [p for p in cap.syns(DOT, 853) if p.time >= mark]
    # The connections that carried queries: client ports with TLS application data to 853.
    carrying = {p.sport for p in cap.to(DOT, 853, "TCP", mark) if 23 in p.tls_record_types}
    if extra == 0:
        assert not syns, f"{options or 'defaults'}, yet new connections to {DOT}:853:\n{trace}"
        assert len(carrying) == 1, f"the bursts went over {len(carrying)} connections:\n{trace}"
    else:
        assert 1 <= len(syns) <= extra, (
            f"expected 1 to {extra} extra connections to {DOT}:853 for overlapping queries, got "
            f"{len(syns)}:\n{trace}")
        assert len(carrying) >= 2, f"the extra connections carried no query:\n{trace}"
