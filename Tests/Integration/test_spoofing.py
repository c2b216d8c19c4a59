"""Spoofing: while Sotto resolves names in the lab, a second process floods it with forged
responses (forger.py: source address of the authoritative server, guessed IDs, ports guessed
both at random and from the sockets Sotto has open). No forged record may enter the cache.

Needs root (raw socket). Encryption is off so that every query to the target server is Do53.
"""

from __future__ import annotations

import json
import os
import random
import socket
import struct
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from harness import require, scaled

TARGET_SERVER = "127.53.3.1"   # example.test.'s only server
FORGER = Path(__file__).with_name("forger.py")
NAMES = 600
FORGED = 120_000


def query(name: str, qid: int) -> bytes:
    q = b"".join(bytes([len(l)]) + l.encode() for l in name.rstrip(".").split(".")) + b"\x00"
    return struct.pack("!HHHHHH", qid, 0x0100, 1, 0, 0, 0) + q + struct.pack("!HH", 1, 1)


def a_records(resp: bytes) -> list[str]:
    """The A addresses in a response's answer section (enough parsing for this test)."""
    qd, an = struct.unpack("!HH", resp[4:8])
    i = 12
    for _ in range(qd):
        while resp[i] != 0:
            if resp[i] & 0xC0 == 0xC0:
                i += 1
                break
            i += resp[i] + 1
        i += 1 + 4
    out = []
    for _ in range(an):
        if resp[i] & 0xC0 == 0xC0:
            i += 2
        else:
            while resp[i] != 0:
                i += resp[i] + 1
            i += 1
        rtype, _, _, rdlen = struct.unpack("!HHIH", resp[i:i + 10])
        i += 10
        if rtype == 1 and rdlen == 4:
            out.append(socket.inet_ntoa(resp[i:i + 4]))
        i += rdlen
    return out


def ask_all(port: int, names: list[str], timeout: float = 6.0) -> dict[str, list[str]]:
    """Sends every query (20 in flight at most) and collects the A records of the answers."""
    timeout = scaled(timeout)  # longer only in sanitizer runs (SOTTO_TIME_SCALE)
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.settimeout(0.2)
    pending = {}
    answers: dict[str, list[str]] = {}
    todo = list(names)
    deadline = time.monotonic() + timeout * 4
    while (todo or pending) and time.monotonic() < deadline:
        while todo and len(pending) < 20:
            name = todo.pop()
            qid = random.getrandbits(16)
            while qid in pending:  # a repeated ID would overwrite a pending name: never answered
                qid = random.getrandbits(16)
            pending[qid] = (name, time.monotonic())
            s.sendto(query(name, qid), ("127.0.0.1", port))
        try:
            data, _ = s.recvfrom(4096)
        except socket.timeout:
            data = b""
        if len(data) >= 12:
            qid = struct.unpack("!H", data[:2])[0]
            if qid in pending:
                name, _ = pending.pop(qid)
                answers[name] = a_records(data)
        for qid, (name, t) in list(pending.items()):
            if time.monotonic() - t > timeout:
                pending.pop(qid)
                answers[name] = ["timeout"]
    s.close()
    return answers


def test_forged_responses_never_enter_the_cache(lab, sotto, free_port, tmp_path):
    require(os.geteuid() == 0, "root (the forger needs a raw socket to forge the source address)")
    control = tmp_path / "ctl.sock"
    names = [f"sp{i}.wild.example.test." for i in range(NAMES)]
    names_file = tmp_path / "names.txt"
    names_file.write_text("\n".join(names) + "\n")
    with sotto.serve(free_port, "--no-encryption", "--control", str(control)) as srv:
        assert srv.dig("www.example.test").status == "NOERROR"  # delegations cached
        forger = subprocess.Popen([sys.executable, str(FORGER), "--source", TARGET_SERVER, "--pid", str(srv.proc.pid),
                                   "--names", str(names_file), "--count", str(FORGED)],
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        # Resolve the names while the flood runs (in rounds, so resolutions overlap the flood).
        results: dict[str, list[str]] = {}
        chunks = [names[i::6] for i in range(6)]
        for chunk in chunks:
            results.update(ask_all(srv.port, chunk))
            if forger.poll() is not None:
                break
        out, err = forger.communicate(timeout=scaled(120))
        assert forger.returncode == 0, err
        figures = json.loads(out.strip().splitlines()[-1])
        # Everything not yet asked is asked now (after the flood, from the network or the cache).
        missing = [n for n in names if n not in results]
        results.update(ask_all(srv.port, missing))
        # Then every name again: these answers come from the cache, where a forgery would sit.
        cached = ask_all(srv.port, names)
        # A resolution the flood starved (two timeouts on example.test.'s one server) ends SERVFAIL
        # and stays in the 5 s failure cache: such names are asked once more after it.
        # They must then get the right answer; a forgery would still show as poisoned below.
        retry = [n for n in names if cached.get(n) != ["192.0.2.99"] and "6.6.6.6" not in cached.get(n, [])]
        if retry:
            time.sleep(scaled(5.5))
            cached.update(ask_all(srv.port, retry))
        stats = json.loads(subprocess.run([str(sotto.path), "ctl", "--control", str(control), "stats"],
                                          capture_output=True, text=True).stdout)["stats"]
    poisoned = sorted(n for n in names if "6.6.6.6" in results.get(n, []) + cached.get(n, []))
    answered = sum(1 for n in names if cached.get(n) == ["192.0.2.99"])
    print(f"\nspoofing: {figures['sent']} forged packets ({figures['to_live_ports']} to ports Sotto had open, "
          f"{figures['live_ports_seen']} such ports seen) in {figures['seconds']} s; {len(names)} names resolved; "
          f"poisoned records: {len(poisoned)}; mismatched replies counted by Sotto: "
          f"{stats['upstream']['mismatchedReplies']}; answers correct from cache: {answered} "
          f"({len(retry)} asked again after the failure cache's 5 s)")
    assert figures["sent"] >= 100_000
    assert poisoned == [], f"forged records in the cache: {poisoned[:10]}"
    assert answered == len(names), {n: cached.get(n) for n in names if cached.get(n) != ["192.0.2.99"]}
    # Not asserted here: that forgeries sent to a port Sotto had open were counted. Each upstream
    # socket lives only from the query to its reply (tens of microseconds on loopback), so a
    # forgery aimed at a port the forger saw in /proc usually lands after the socket closed and
    # the kernel drops it uncounted. Counting of mismatched replies is asserted
    # deterministically in test_hostile.py (servers that send wrong IDs and questions).
