"""Config file (`--config`, `sotto config`), the operator knobs seen from the outside, and
service behaviour (SIGTERM with a state file, SIGHUP reopening the log file)."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import time

from harness import REPO, norm_name, require, scaled

FULL = "a.b.c.d.example.test."
ROOT_ZONE = "."


def _write(tmp_path, text: str, name: str = "sotto.toml") -> str:
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def _root_qnames(data: dict) -> set[str]:
    """Names sent to the root about the client's question (priming `. NS` left out)."""
    return {norm_name(h["qname"]) for h in data["hops"]
            if norm_name(h["zone"]) == ROOT_ZONE and norm_name(h["qname"]) != ROOT_ZONE}


# --------------------------------------------------------------------------- no lab needed

def test_defaults_file_passes_check_and_round_trips(sotto, tmp_path):
    defaults = sotto.run("config", "defaults")
    assert defaults.returncode == 0, defaults.stderr
    check = subprocess.run([str(sotto.path), "config", "check", "/dev/stdin"], input=defaults.stdout,
                           capture_output=True, text=True, timeout=30)
    assert check.returncode == 0, f"`config defaults | config check /dev/stdin` failed:\n{check.stderr}"
    again = sotto.run("config", "check", _write(tmp_path, check.stdout, "effective.toml"))
    assert again.returncode == 0, again.stderr
    assert again.stdout == check.stdout, "effective settings do not round trip"


def test_check_rejects_bad_file_with_file_line_and_key(sotto, tmp_path):
    path = _write(tmp_path, "# comment\n[resolver]\ndo53-port = 53\ncache-size = -3\n")
    r = sotto.run("config", "check", path)
    assert r.returncode != 0
    assert f"{path}:4" in r.stderr and "resolver.cache-size" in r.stderr, r.stderr
    path = _write(tmp_path, "[encryption]\nprefer = \"dot\"\n\n[log]\nlevl = \"info\"\n", "typo.toml")
    r = sotto.run("config", "check", path)
    assert r.returncode != 0 and f"{path}:5" in r.stderr and "log.levl" in r.stderr, r.stderr


def test_bad_config_stops_lookup_before_any_query(sotto, tmp_path):
    path = _write(tmp_path, "[resolver]\nedns-buffer-size = 100\n")
    r = sotto.run("lookup", "www.example.test.", "--config", path)
    assert r.returncode == 64, r.stderr
    assert f"{path}:2" in r.stderr and "resolver.edns-buffer-size" in r.stderr, r.stderr


def test_readme_settings_table_matches_code(sotto):
    table = sotto.run("config", "table")
    assert table.returncode == 0, table.stderr
    readme = (REPO / "README.md").read_text()
    start, end = "<!-- settings-table:begin -->\n", "<!-- settings-table:end -->"
    assert start in readme and end in readme, "README lacks the settings table markers"
    documented = readme.split(start, 1)[1].split(end, 1)[0]
    assert documented == table.stdout, (
        "README settings table differs from `sotto config table`; paste its output between the markers")


def _numeric_defaults(sotto) -> dict[str, float]:
    """Flag -> default of every numeric setting, from `sotto config defaults` (each key is
    preceded by a comment ending in its flag)."""
    text = sotto.run("config", "defaults").stdout.splitlines()
    out: dict[str, float] = {}
    for comment, line in zip(text, text[1:]):
        m = re.search(r"\((--[a-z0-9-]+)[^()]*\)$", comment)
        value = re.match(r"^[a-z0-9-]+ = (-?[0-9.]+)$", line)
        if comment.startswith("#") and m and value:
            out[m.group(1)] = float(value.group(1))
    return out


def test_help_shows_the_defaults_the_settings_have(sotto):
    """A number in parentheses at the end of an option's --help text is its default: it must be
    the setting's (two had gone stale when their defaults changed)."""
    defaults = _numeric_defaults(sotto)
    assert {"--query-retries", "--resolution-deadline", "--tcp-queries-per-connection"} <= defaults.keys(), defaults
    checked = []
    for command in ("serve", "lookup", "top"):
        helptext = sotto.run(command, "--help").stdout
        # Options start a line with two spaces and "--"; their help runs to the next option.
        for block in re.split(r"\n  (?=-)", helptext):
            m = re.match(r"(?:-[a-z], )?(--[a-z0-9-]+)", block)
            if not m or m.group(1) not in defaults:
                continue
            said = re.findall(r"\(([^()]*)\)\.?\s*$", " ".join(block.split()))
            number = re.findall(r"-?[0-9]+(?:\.[0-9]+)?", said[-1]) if said else []
            if number:
                assert float(number[-1]) == defaults[m.group(1)], (
                    f"`sotto {command} --help` gives {m.group(1)} the default {number[-1]}, "
                    f"the setting's is {defaults[m.group(1)]:g}")
                checked.append(m.group(1))
    assert "--resolution-deadline" in checked and "--unresponsive-after" in checked, checked


def test_families_without_a_route_are_skipped_at_once(sotto):
    """In a fresh network namespace (only a down lo) neither family has a route: the built-in
    root servers are all skipped at start instead of each timing out within the 4 s deadline."""
    require(shutil.which("unshare") is not None, "unshare not installed (util-linux)")
    require(os.geteuid() == 0, "unshare -n needs root")
    began = time.monotonic()
    # With a 30 s deadline a wait for the servers would take 30 s, far from anything a slow start
    # under a sanitizer takes.
    r = subprocess.run(["unshare", "-n", str(sotto.path), "lookup", "www.example.com.", "A", "--log-level", "notice",
                        "--resolution-deadline", "30"],
                       capture_output=True, text=True, timeout=60)
    elapsed = time.monotonic() - began
    assert r.returncode == 2, r.stdout + r.stderr
    assert "no IPv6 route" in r.stderr and "no IPv4 route" in r.stderr, r.stderr
    assert "no reachable server" in r.stderr, r.stderr
    # 2 s; in sanitizer runs (SOTTO_TIME_SCALE) longer, but far below the 30 s a wait would take.
    assert elapsed < scaled(2), f"took {elapsed:.2f} s: unroutable servers were waited for"
    assert r.stdout == "", r.stdout


# --------------------------------------------------------------------------- against the lab

def test_config_file_turns_off_qname_minimisation(lab, sotto, tmp_path):
    path = _write(tmp_path, "[resolver]\nqname-minimisation = false\n")
    data = sotto.lookup_json(FULL, "A", "--config", path)
    assert data["rcode"] == "NOERROR", data
    assert _root_qnames(data) == {FULL}, f"root was not sent the full name: {data['hops']}"
    # The command line wins over the file.
    data = sotto.lookup_json(FULL, "A", "--config", path, "--qname-minimisation")
    assert _root_qnames(data) == {"test."}, f"--qname-minimisation did not override the file: {data['hops']}"


def test_flag_turns_off_qname_minimisation(lab, sotto):
    data = sotto.lookup_json(FULL, "A", "--no-qname-minimisation")
    assert _root_qnames(data) == {FULL}, data["hops"]


def test_no_ipv6_sends_nothing_to_ipv6_servers(lab, sotto, tmp_path):
    for extra in (["--no-ipv6"], ["--config", _write(tmp_path, "[resolver]\nipv6 = false\n")]):
        r = sotto.lookup("www.v6.test.", "AAAA", "--json", *extra)
        data = json.loads(r.stdout)
        v6 = [h for h in data["hops"] if ":" in h["server"]]
        assert not v6, f"{extra}: queries went to IPv6 servers: {v6}"
        assert data["rcode"] == "SERVFAIL" and r.returncode == 2, r.stdout + r.stderr


def test_dead_zone_gets_servfail_within_deadline(lab, sotto, free_port):
    with sotto.serve(free_port, "--resolution-deadline", "1.5") as srv:
        began = time.monotonic()
        r = srv.dig("www.dead.test.", "A", "+time=10", "+tries=1")
        elapsed = time.monotonic() - began
        assert r.status == "SERVFAIL", r.raw
        # 3 s; in sanitizer runs longer, but below dig's own 10 s.
        assert elapsed < min(scaled(3), 9.9), f"SERVFAIL after {elapsed:.2f} s with --resolution-deadline 1.5"


def test_sigterm_saves_state_file_and_exits_zero(lab, sotto, free_port, tmp_path):
    state = tmp_path / "state.json"
    with sotto.serve(free_port, "--state-file", str(state), "--state-save-interval", "30") as srv:
        r = srv.dig("www.example.test.", "A")
        assert r.status == "NOERROR", r.raw
        time.sleep(0.5)
        code = srv.signal(signal.SIGTERM)
        assert code == 0, f"exit {code} on SIGTERM:\n{srv.log()}"
    assert state.is_file(), "no state file after SIGTERM"
    json.loads(state.read_text())


def test_sighup_reopens_log_file_and_stdout_stays_quiet(lab, sotto, free_port, tmp_path):
    log = tmp_path / "sotto.log"
    conf = _write(tmp_path, f'[log]\nlevel = "notice"\nfile = "{log}"\n')
    with sotto.serve(free_port, "--config", conf) as srv:
        assert srv.dig("www.example.test.", "A").status == "NOERROR"
        assert "listening" in log.read_text()
        os.rename(log, tmp_path / "sotto.log.1")
        srv.proc.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + 5
        while not log.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert log.exists(), "SIGHUP did not reopen the log file"
        assert srv.signal(signal.SIGTERM) == 0
        assert "stopping" in log.read_text(), log.read_text()
        assert srv.log() == "", f"serve wrote to stdout/stderr with a log file set:\n{srv.log()}"


def test_sighup_without_log_file_is_harmless(lab, sotto, free_port):
    with sotto.serve(free_port) as srv:
        srv.proc.send_signal(signal.SIGHUP)
        time.sleep(0.3)
        assert srv.proc.poll() is None, f"SIGHUP killed serve:\n{srv.log()}"
        assert srv.dig("www.example.test.", "A").status == "NOERROR"
        assert srv.signal(signal.SIGTERM) == 0
