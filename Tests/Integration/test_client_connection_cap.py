"""`server.max-connections-per-client`: one client address cannot hold every TCP, DoT and DoQ slot
of the listener. A client address beyond the cap has its new TCP or DoT connection closed at once
and its new DoQ connection closed after the handshake (DOQ_EXCESSIVE_LOAD); TCP, DoT and DoQ share
one budget per address; a closed connection frees its share; loopback clients are not limited.

Loopback addresses are exempt, so the test runs in a network namespace it creates and removes
(the one of test_serve_wildcard.py: nothing but lo, with fd00:53::2 on it): a client there that
connects to fd00:53::2 comes from fd00:53::2, a non-loopback address. The queries are RD=0, which
Sotto refuses at once without any upstream work: REFUSED shows the connection is served.
"""

from __future__ import annotations

import json
import sys

from harness import ctl, wait_until
from test_serve_wildcard import namespace  # noqa: F401 -- the fixture

ADDRESS = "fd00:53::2"
PORT, TLS_PORT, QUIC_PORT = 5310, 5311, 5312

# Runs inside the namespace; prints what each step saw as JSON.
CLIENT = r"""
import json, socket, ssl, struct, sys, time
import dns.message, dns.query, dns.rcode
addr, port, tls_port, quic_port = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
out = {}

def query():
    q = dns.message.make_query("www.example.test.", "A")
    q.flags &= ~dns.flags.RD  # refused at once: no upstream
    return q

def tcp(host, p):
    s = socket.create_connection((host, p), timeout=5)
    return s

def served(s):
    # "served": the RD=0 query is answered REFUSED; "closed": the server closed the connection.
    try:
        w = query().to_wire()
        s.sendall(struct.pack("!H", len(w)) + w)
        head = s.recv(2)
        if len(head) < 2:
            return "closed"
        n = struct.unpack("!H", head)[0]
        data = b""
        while len(data) < n:
            chunk = s.recv(n - len(data))
            if not chunk:
                return "closed"
            data += chunk
        return dns.rcode.to_text(dns.message.from_wire(data).rcode())
    except (ConnectionResetError, BrokenPipeError, ssl.SSLError, OSError) as e:
        return "closed"

def dot(host, p):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    try:
        return ctx.wrap_socket(tcp(host, p))
    except (ssl.SSLError, OSError):
        return None

def doq(host):
    try:
        return dns.rcode.to_text(dns.query.quic(query(), host, port=quic_port, timeout=5, verify=False).rcode())
    except Exception as e:
        return "failed: " + type(e).__name__

held = [tcp(addr, port), tcp(addr, port)]
time.sleep(0.3)
out["held"] = [served(s) for s in held]
third = tcp(addr, port)
out["third_tcp"] = served(third)
d = dot(addr, tls_port)
out["dot_over_cap"] = served(d) if d else "closed"
out["doq_over_cap"] = doq(addr)
held[0].close()
time.sleep(0.5)
d = dot(addr, tls_port)
out["dot_after_close"] = served(d) if d else "closed"
held[1].close()
time.sleep(0.5)
out["doq_after_close"] = doq(addr)
d.close()
loop = [tcp("127.0.0.1", port) for _ in range(4)]
time.sleep(0.3)
out["loopback"] = [served(s) for s in loop]
print(json.dumps(out))
"""


def test_one_address_cannot_hold_more_than_its_share_of_connections(sotto, namespace, tmp_path):
    sock = tmp_path / "ctl.sock"
    serve = namespace.start(
        str(sotto.path), "serve", "--listen", f"[{ADDRESS}]:{PORT}", "--listen", f"127.0.0.1:{PORT}",
        "--listen-tls", f"[{ADDRESS}]:{TLS_PORT}", "--listen-quic", f"[{ADDRESS}]:{QUIC_PORT}",
        "--allow", "::/0", "--allow", "127.0.0.0/8", "--no-encryption", "--max-connections-per-client", "2",
        "--control", str(sock), "--log-level", "debug", log="sotto.log")
    log = tmp_path / "sotto.log"
    wait_until("the control socket", lambda: sock.exists() or serve.poll() is not None, timeout=20, every=0.1)
    assert serve.poll() is None, log.read_text()
    r = namespace.run(sys.executable, "-c", CLIENT, ADDRESS, str(PORT), str(TLS_PORT), str(QUIC_PORT), timeout=90)
    assert r.returncode == 0, f"{r.stderr}\n{log.read_text()[-3000:]}"
    seen = json.loads(r.stdout)
    assert seen["held"] == ["REFUSED", "REFUSED"], seen
    assert seen["third_tcp"] == "closed", seen
    assert seen["dot_over_cap"] == "closed", f"TCP and DoT share one budget: {seen}"
    assert seen["doq_over_cap"].startswith("failed"), f"DoQ shares it too: {seen}"
    assert seen["dot_after_close"] == "REFUSED", f"a closed connection frees its share: {seen}"
    assert seen["doq_after_close"] == "REFUSED", seen
    assert seen["loopback"] == ["REFUSED"] * 4, f"loopback clients are not limited: {seen}"
    listener = ctl(sotto, sock, "stats")["stats"]["listener"]
    assert listener["clientConnectionCapClosed"] == 3, listener
    assert "connection limit per client reached" in log.read_text()
