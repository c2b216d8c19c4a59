"""mute.test.'s only server for the tests and the bench: a UDP socket on 127.53.40.1:53 that
reads queries, counts them and answers none (no ICMP either: a silent server, unlike dead.test.'s
address, which nothing binds) until told to answer. Nothing else binds 127.53.40.1 (the
delegation is in Lab/zones/test.zone); binding port 53 needs root."""

from __future__ import annotations

import socket
import threading

MUTE = "127.53.40.1"  # mute.test.'s only NS (Lab/zones/test.zone); nothing else binds it
MUTE_ANSWER = "192.0.2.40"


class MuteServer:
    """mute.test.'s only server: UDP on MUTE:53 that counts the queries it reads and answers
    none of them (a silent server, no ICMP either) until `answer()`; then A MUTE_ANSWER, AA."""

    def __init__(self):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind((MUTE, 53))
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
