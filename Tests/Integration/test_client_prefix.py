"""The per-client limits count an IPv6 client by its /64, not by each address.

An IPv6 host may use any address of its /64 (SLAAC, RFC 8981's temporary addresses), so a limit
per address lets one host multiply its query rate and its connection share by rotating
addresses. The test runs in a network namespace it creates and removes, with nothing but its
loopback interface and three addresses on it: two in fd00:53:1::/64 and one in fd00:53:2::/64.
`sotto serve` listens there on [::]; clients bound to each address ask it `localhost.` (answered
without any upstream query).
"""

from __future__ import annotations

import json
import sys

from test_serve_wildcard import Namespace, running, wait_for_answer

import pytest

PORT = 5300
SAME_A, SAME_B, OTHER = "fd00:53:1::1", "fd00:53:1::2", "fd00:53:2::1"

# Runs inside the namespace. For each step (source address, how many queries): a socket bound to
# the address sends them, all steps back to back; then the answers each socket gets. Then per
# address: TCP connections opened and whether the server closed each at once (read gives EOF
# within 0.3 s) or kept it.
CLIENT = r"""
import json, socket, sys, time
import dns.message
steps, conns, port = json.loads(sys.argv[1]), json.loads(sys.argv[2]), int(sys.argv[3])
# All bursts back to back (within a few ms: the buckets refill 3 tokens a second), then the
# answers per socket, within 0.5 s.
sockets = []
for source, count in steps:
    s = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
    s.bind((source, 0))
    s.setblocking(False)
    sockets.append(s)
for s, (source, count) in zip(sockets, steps):
    for i in range(count):
        s.sendto(dns.message.make_query("localhost.", "A").to_wire(), ("::1", port))
answered, end = [0] * len(steps), time.monotonic() + 0.5
while time.monotonic() < end and answered != [c for _, c in steps]:
    for n, s in enumerate(sockets):
        try:
            data, _ = s.recvfrom(4096)
        except BlockingIOError:
            continue
        if dns.message.from_wire(data).rcode() == 0:
            answered[n] += 1
    time.sleep(0.005)
held, kept = [], []
for source in conns:
    c = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
    c.bind((source, 0))
    c.connect(("::1", port))
    c.settimeout(0.3)
    try:
        closed = c.recv(1) == b""
    except socket.timeout:
        closed = False
    except ConnectionResetError:
        closed = True
    kept.append(not closed)
    held.append(c)
print(json.dumps({"answered": answered, "kept": kept}))
"""


@pytest.fixture
def namespace(tmp_path):
    ns = Namespace(tmp_path)
    ns.name = f"sotto-prefix-{ns.name.rsplit('-', 1)[1]}"
    with running(ns):
        for address in (SAME_A, SAME_B, OTHER):
            ns.sh("ip", "netns", "exec", ns.name, "ip", "-6", "addr", "add", f"{address}/128", "dev", "lo", "nodad")
        yield ns


def test_an_ipv6_slash64_is_one_client_for_the_rate_limit_and_the_connection_cap(sotto, namespace, tmp_path):
    hints = tmp_path / "root.hints"
    hints.write_text(".  3600000 NS ns1.\nns1. 3600000 A 127.0.0.53\n")  # nothing listens there
    log = tmp_path / "sotto.log"
    serve = namespace.start(
        str(sotto.path), "serve", "--listen", f"[::]:{PORT}", "--root-hints", str(hints), "--no-encryption",
        "--allow", "::/0", "--allow-loopback", "--client-rate-limit", "3", "--max-connections-per-client", "2",
        log="sotto.log")
    wait_for_answer(namespace, "::1", PORT, serve, log)
    # Three queries use up fd00:53:1::1's burst of 3; its neighbour in the same /64 then gets
    # nothing (a refill of 3 a second gives back no whole token in the few ms between), while the
    # next /64 gets its own burst.
    steps = [(SAME_A, 3), (SAME_B, 3), (OTHER, 3)]
    # Two connections from one address of the /64, then one from the other: over the cap of 2.
    conns = [SAME_A, SAME_A, SAME_B, OTHER]
    r = namespace.run(sys.executable, "-c", CLIENT, json.dumps(steps), json.dumps(conns), str(PORT), timeout=30)
    assert r.returncode == 0, r.stderr
    result = json.loads(r.stdout)
    assert result["answered"] == [3, 0, 3], (
        f"answers per step {steps}: {result['answered']} (another address of the same /64 must share "
        f"its bucket)\n{log.read_text()[-2000:]}")
    assert result["kept"] == [True, True, False, True], (
        f"connections {conns} kept: {result['kept']} (a third from the same /64 must be closed)")


def test_at_prefix_128_each_ipv6_address_is_a_client(sotto, namespace, tmp_path):
    hints = tmp_path / "root.hints"
    hints.write_text(".  3600000 NS ns1.\nns1. 3600000 A 127.0.0.53\n")
    log = tmp_path / "sotto.log"
    serve = namespace.start(
        str(sotto.path), "serve", "--listen", f"[::]:{PORT}", "--root-hints", str(hints), "--no-encryption",
        "--allow", "::/0", "--allow-loopback", "--client-rate-limit", "3", "--max-connections-per-client", "2",
        "--client-ipv6-prefix", "128", log="sotto.log")
    wait_for_answer(namespace, "::1", PORT, serve, log)
    steps = [(SAME_A, 3), (SAME_B, 3)]
    conns = [SAME_A, SAME_A, SAME_B, SAME_A]
    r = namespace.run(sys.executable, "-c", CLIENT, json.dumps(steps), json.dumps(conns), str(PORT), timeout=30)
    assert r.returncode == 0, r.stderr
    result = json.loads(r.stdout)
    assert result["answered"] == [3, 3], f"{result}\n{log.read_text()[-2000:]}"
    assert result["kept"] == [True, True, True, False], result
