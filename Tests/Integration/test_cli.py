"""`sotto lookup` failure modes: loopback protection, SERVFAIL, bad arguments."""

from __future__ import annotations

from harness import lab_query_total


def _one_line_error(r) -> str:
    text = (r.stdout + r.stderr).strip()
    assert text, "failed without saying why"
    assert len(text.splitlines()) == 1, f"expected a one-line error, got:\n{text}"
    return text


def test_lookup_without_allow_loopback_fails(lab, sotto):
    before = lab_query_total(lab)
    r = sotto.lookup("www.example.test.", "A", allow_loopback=False)
    assert r.returncode != 0, f"lookup against loopback roots succeeded without --allow-loopback:\n{r.stdout}"
    _one_line_error(r)
    assert lab_query_total(lab) == before, "sotto queried loopback servers without --allow-loopback"
    # Positive control: the same lookup with the flag works.
    ok = sotto.lookup("www.example.test.", "A", allow_loopback=True)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "192.0.2.10" in ok.stdout


def test_lookup_nxdomain_exits_zero(lab, sotto):
    r = sotto.lookup("nope.example.test.", "A")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "NXDOMAIN" in r.stdout


def test_lookup_servfail_exits_nonzero(lab, sotto):
    """dead.test.'s only server (127.53.9.9) never answers."""
    r = sotto.lookup("www.dead.test.", "A", timeout=60)
    assert r.returncode != 0, f"no server reachable, yet exit 0:\n{r.stdout}"
    _one_line_error(r)


def test_lookup_bad_arguments(sotto):
    r = sotto.run("lookup", "www.example.test.", "NOTATYPE", "--allow-loopback")
    assert r.returncode != 0, r.stdout
    r = sotto.run("lookup")
    assert r.returncode != 0, r.stdout
    # A bad name is refused before any query, saying what is wrong in words (then the usage).
    for name, words in [("a..b", "an empty label"), ("x" * 70 + ".test.", "a label of 70 octets (at most 63)")]:
        r = sotto.lookup(name, "A")  # the lab's root hints: never a query beyond loopback
        assert r.returncode != 0, r.stdout
        first = r.stderr.strip().splitlines()[0] if r.stderr.strip() else ""
        assert first.startswith(f"Error: invalid name '{name}': ") and words in first, r.stderr


def test_serve_refuses_a_bad_ca_file_at_start(sotto, tmp_path, free_port):
    """A CA file that cannot be used stops `serve` at once, with the reason, instead of making
    every DoT/DoQ probe fail later."""
    bad = tmp_path / "ca.pem"
    bad.write_text("not a certificate\n")
    for path, reason in [(bad, "no certificate"), (tmp_path / "missing.pem", "cannot be read")]:
        r = sotto.run("serve", "--listen", f"127.0.0.1:{free_port}", "--tls-ca-file", str(path), timeout=20)
        assert r.returncode != 0, r.stdout
        assert reason in r.stderr, r.stderr
