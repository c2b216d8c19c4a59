"""mute.test.'s only server for the tests and the bench: a UDP socket on 127.53.40.1:53 that
reads queries, counts them and answers none (no ICMP either: a silent server, unlike dead.test.'s
address, which nothing binds) until told to answer. halfmute.test.'s two servers (127.53.40.2
and .3) are two more. Nothing else binds these addresses (the delegations are in
Lab/zones/test.zone); binding port 53 needs root."""

from __future__ import annotations

import socket
import threading

MUTE = "127.53.40.1"  # mute.test.'s only NS (Lab/zones/test.zone); nothing else binds it
HALFMUTE = ("127.53.40.2", "127.53.40.3")  # halfmute.test.'s two NS
MUTE_ANSWER = "192.0.2.40"


class MuteServer:
    """A silent server: UDP on address:53 (mute.test.'s only NS by default) that counts the
    queries it reads and answers none of them (no ICMP either) until `answer()`; then A
    MUTE_ANSWER, AA, for any name."""

    def __init__(self, address: str = MUTE):
        self.address = address
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind((address, 53))
        self.sock.settimeout(0.1)
        self.received = 0
        self.answering = False
        self.lock = threading.Lock()
        self.stopping = False
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()

    def run(self):
        import dns.flags
        import dns.message
        import dns.rdatatype
        import dns.rrset

        while not self.stopping:
            try:
                wire, peer = self.sock.recvfrom(4096)
            except socket.timeout:
                continue
            except OSError:
                return
            with self.lock:
                self.received += 1
                answering = self.answering
            if not answering:
                continue
            try:
                q = dns.message.from_wire(wire)
            except Exception:  # noqa: BLE001 - a test server ignores what it cannot parse
                continue
            r = dns.message.make_response(q)
            r.flags |= dns.flags.AA
            if q.question and q.question[0].rdtype == dns.rdatatype.A:
                r.answer.append(dns.rrset.from_text(q.question[0].name, 300, "IN", "A", MUTE_ANSWER))
            self.sock.sendto(r.to_wire(), peer)

    def count(self) -> int:
        with self.lock:
            return self.received

    def answer(self):
        with self.lock:
            self.answering = True

    def close(self):
        self.stopping = True
        self.thread.join(timeout=5)
        self.sock.close()
