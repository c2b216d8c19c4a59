"""Loopback packet capture for the integration tests: tcpdump writes a pcap,
this module parses it in pure Python (stdlib struct) and answers questions like
"did anything go to 127.53.12.1:53 after time T" or "how many SYNs went to
127.53.14.1:853".

    cap = Capture(tmp_path / "lo.pcap")
    cap.start()                 # returns once tcpdump provably captures (sync packet seen)
    ... run sotto ...
    cap.stop()                  # SIGINT to tcpdump, then parse
    cap.to("127.53.12.1", 53)   # packets towards 127.53.12.1 port 53
    cap.syns("127.53.12.1", 853)
    cap.quic_connections("127.53.17.1")   # DoQ: (client port, client CID) per QUIC connection
    cap.quic_to("127.53.17.1", after=t)   # UDP datagrams carrying QUIC to 127.53.17.1:853

Packet times are pcap timestamps (wall clock, seconds since the epoch), so they
can be compared with time.time() taken by the test.  Supported link types:
EN10MB (what `tcpdump -i lo` gives on Linux: zero MACs), LINUX_SLL, LINUX_SLL2,
NULL/LOOP, RAW; IPv4 and IPv6; TCP and UDP (other protocols and IP fragments
after the first are ignored).
"""

from __future__ import annotations

import ipaddress
import os
import shutil
import signal
import socket
import struct
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path

LAB_FILTER = "net 127.53.0.0/16"
# A UDP datagram to this address marks the start of a capture; nothing listens there.
SYNC_ADDRESS = "127.53.254.254"
SYNC_PORT = 9
SYNC_PAYLOAD = b"sotto-capture-sync"

# TCP flag bits
FIN, SYN, RST, PSH, ACK = 0x01, 0x02, 0x04, 0x08, 0x10

TLS_HANDSHAKE, TLS_APPLICATION_DATA, TLS_ALERT = 22, 23, 21

# QUIC v1 long-header packet types (RFC 9000 §17.2); "1-RTT" stands for a short-header packet
QUIC_INITIAL, QUIC_0RTT, QUIC_HANDSHAKE, QUIC_RETRY, QUIC_1RTT = "Initial", "0-RTT", "Handshake", "Retry", "1-RTT"
QUIC_PORTS = {853}  # UDP ports whose datagrams are parsed as QUIC (RFC 9250: DoQ only on 853)
_QUIC_LONG_TYPES = (QUIC_INITIAL, QUIC_0RTT, QUIC_HANDSHAKE, QUIC_RETRY)


def _varint(b: bytes, i: int) -> tuple[int, int]:
    """QUIC variable-length integer at b[i:]: (value, next index); raises IndexError if short."""
    first = b[i]
    n = 1 << (first >> 6)
    if i + n > len(b):
        raise IndexError
    v = first & 0x3F
    for k in range(1, n):
        v = (v << 8) | b[i + k]
    return v, i + n


@dataclass(frozen=True)
class QuicPacket:
    """The unprotected header fields of one QUIC packet in a UDP datagram."""
    type: str            # Initial | 0-RTT | Handshake | Retry | 1-RTT (short header)
    version: int | None  # None for short-header packets
    dcid: bytes          # empty for short-header packets (its length is not on the wire)
    scid: bytes


@dataclass(frozen=True)
class Packet:
    time: float
    proto: str           # "TCP" | "UDP"
    src: str
    sport: int
    dst: str
    dport: int
    flags: int           # TCP flag bits (0 for UDP)
    payload_len: int     # transport payload length from the headers (not limited by snaplen)
    payload: bytes = b""  # the captured part of the payload

    @property
    def syn(self) -> bool:
        return self.proto == "TCP" and bool(self.flags & SYN) and not self.flags & ACK

    @property
    def rst(self) -> bool:
        return self.proto == "TCP" and bool(self.flags & RST)

    @property
    def flag_str(self) -> str:
        if self.proto != "TCP":
            return ""
        return "".join(c for bit, c in ((SYN, "S"), (FIN, "F"), (RST, "R"), (PSH, "P"), (ACK, "."))
                       if self.flags & bit)

    @property
    def tls_record_types(self) -> list[int]:
        """Content types of the TLS records that start in this segment (walks records
        back to back from the segment start; a record split across segments ends the walk)."""
        out = []
        data, i = self.payload, 0
        while i + 5 <= len(data):
            ctype, major = data[i], data[i + 1]
            if ctype not in (20, 21, 22, 23) or major != 3:
                break
            out.append(ctype)
            i += 5 + struct.unpack("!H", data[i + 3:i + 5])[0]
        return out

    @property
    def quic_packets(self) -> list[QuicPacket]:
        """QUIC packets coalesced in this UDP datagram (RFC 9000 §12.2), from the unprotected
        header fields only: long-header packets are walked by their Length field; a
        short-header packet ends the datagram.  A clear fixed bit is read as greased (RFC 9287)
        where it cannot be padding.  Empty for TCP and for UDP not to/from a port in QUIC_PORTS."""
        out: list[QuicPacket] = []
        b, i = self.payload, 0
        # Only DoQ's port: header bits alone cannot tell QUIC from a DNS message (a DNS ID with
        # bit 0x40 set in its first octet looks like a short-header packet).
        if self.proto != "UDP" or not QUIC_PORTS & {self.sport, self.dport}:
            return out
        try:
            while i < len(b):
                first = b[i]
                # Fixed bit clear: padding after the last packet, or a peer greasing the bit
                # (RFC 9287, when the other side advertised grease_quic_bit, as ngtcp2 does).
                # Padding is zeros, so a long header or the datagram's first packet is greased.
                if not first & 0x40 and i > 0 and not first & 0x80:
                    break
                if not first & 0x80:      # short header: runs to the end of the datagram
                    out.append(QuicPacket(QUIC_1RTT, None, b"", b""))
                    break
                version = struct.unpack("!I", b[i + 1:i + 5])[0]
                j = i + 5
                dl = b[j]
                dcid = b[j + 1:j + 1 + dl]
                j += 1 + dl
                sl = b[j]
                scid = b[j + 1:j + 1 + sl]
                j += 1 + sl
                if version == 0:          # version negotiation
                    out.append(QuicPacket("VersionNegotiation", 0, dcid, scid))
                    break
                ptype = _QUIC_LONG_TYPES[(first >> 4) & 0x03]
                out.append(QuicPacket(ptype, version, dcid, scid))
                if ptype == QUIC_RETRY:
                    break
                if ptype == QUIC_INITIAL:
                    tlen, j = _varint(b, j)
                    j += tlen
                length, j = _varint(b, j)
                i = j + length
        except (IndexError, struct.error):
            pass
        return out

    @property
    def quic_types(self) -> list[str]:
        return [q.type for q in self.quic_packets]

    def __str__(self) -> str:
        f = f" [{self.flag_str}]" if self.proto == "TCP" else ""
        q = ""
        if self.proto == "UDP" and 853 in (self.sport, self.dport):
            q = " QUIC " + "+".join(self.quic_types) if self.quic_types else ""
        return (f"{self.time:.6f} {self.proto} {self.src}:{self.sport} > {self.dst}:{self.dport}{f}"
                f" len {self.payload_len}{q}")


class CaptureError(RuntimeError):
    pass


# --------------------------------------------------------------------------- pcap parsing

def parse_pcap(path: Path | str) -> list[Packet]:
    data = Path(path).read_bytes()
    if len(data) < 24:
        return []
    magic = data[:4]
    if magic == b"\x0a\x0d\x0d\x0a":
        raise CaptureError(f"{path} is pcapng; tcpdump -w writes classic pcap, which is all this parser reads")
    for endian, scale in (("<", 1e-6), (">", 1e-6)):
        m = struct.unpack(endian + "I", magic)[0]
        if m == 0xA1B2C3D4:
            break
        if m == 0xA1B23C4D:
            scale = 1e-9
            break
    else:
        raise CaptureError(f"{path}: not a pcap file (magic {magic.hex()})")
    linktype = struct.unpack(endian + "I", data[20:24])[0] & 0x0FFFFFFF
    out: list[Packet] = []
    off = 24
    while off + 16 <= len(data):
        sec, frac, caplen, _origlen = struct.unpack(endian + "IIII", data[off:off + 16])
        off += 16
        frame = data[off:off + caplen]
        off += caplen
        if len(frame) < caplen:
            break  # truncated last record (capture still being written)
        pkt = _parse_frame(linktype, frame, sec + frac * scale, endian)
        if pkt is not None:
            out.append(pkt)
    return out


def _parse_frame(linktype: int, frame: bytes, ts: float, endian: str) -> Packet | None:
    if linktype == 1:  # EN10MB
        if len(frame) < 14:
            return None
        etype = struct.unpack("!H", frame[12:14])[0]
        l3 = frame[14:]
        if etype == 0x8100 and len(frame) >= 18:  # one VLAN tag
            etype = struct.unpack("!H", frame[16:18])[0]
            l3 = frame[18:]
        version = {0x0800: 4, 0x86DD: 6}.get(etype)
    elif linktype == 113:  # LINUX_SLL
        if len(frame) < 16:
            return None
        version = {0x0800: 4, 0x86DD: 6}.get(struct.unpack("!H", frame[14:16])[0])
        l3 = frame[16:]
    elif linktype == 276:  # LINUX_SLL2
        if len(frame) < 20:
            return None
        version = {0x0800: 4, 0x86DD: 6}.get(struct.unpack("!H", frame[0:2])[0])
        l3 = frame[20:]
    elif linktype in (0, 108):  # NULL (host byte order) / LOOP (network byte order)
        if len(frame) < 4:
            return None
        fam = struct.unpack((endian if linktype == 0 else "!") + "I", frame[:4])[0]
        version = 4 if fam == 2 else (6 if fam in (10, 24, 28, 30) else None)
        l3 = frame[4:]
    elif linktype in (12, 101, 228, 229):  # RAW, IPV4, IPV6
        l3 = frame
        version = (l3[0] >> 4) if l3 else None
    else:
        raise CaptureError(f"unsupported pcap link type {linktype}")
    if version == 4:
        return _parse_ipv4(l3, ts)
    if version == 6:
        return _parse_ipv6(l3, ts)
    return None


def _parse_ipv4(b: bytes, ts: float) -> Packet | None:
    if len(b) < 20 or b[0] >> 4 != 4:
        return None
    ihl = (b[0] & 0x0F) * 4
    total = struct.unpack("!H", b[2:4])[0]
    frag = struct.unpack("!H", b[6:8])[0]
    if frag & 0x1FFF:  # not the first fragment
        return None
    proto = b[9]
    src = socket.inet_ntop(socket.AF_INET, b[12:16])
    dst = socket.inet_ntop(socket.AF_INET, b[16:20])
    return _parse_l4(proto, b[ihl:], total - ihl, src, dst, ts)


def _parse_ipv6(b: bytes, ts: float) -> Packet | None:
    if len(b) < 40 or b[0] >> 4 != 6:
        return None
    plen = struct.unpack("!H", b[4:6])[0]
    nxt = b[6]
    src = socket.inet_ntop(socket.AF_INET6, b[8:24])
    dst = socket.inet_ntop(socket.AF_INET6, b[24:40])
    rest, length = b[40:], plen
    # skip hop-by-hop, routing, destination options; stop at a fragment header that is not the first
    while nxt in (0, 43, 60, 44) and len(rest) >= 8:
        if nxt == 44:
            if struct.unpack("!H", rest[2:4])[0] & 0xFFF8:
                return None
            hlen = 8
        else:
            hlen = (rest[1] + 1) * 8
        nxt = rest[0]
        rest, length = rest[hlen:], length - hlen
    return _parse_l4(nxt, rest, length, src, dst, ts)


def _parse_l4(proto: int, b: bytes, length: int, src: str, dst: str, ts: float) -> Packet | None:
    if proto == 6 and len(b) >= 20:
        sport, dport = struct.unpack("!HH", b[0:4])
        hl = (b[12] >> 4) * 4
        flags = b[13]
        return Packet(ts, "TCP", src, sport, dst, dport, flags, max(0, length - hl), bytes(b[hl:length]))
    if proto == 17 and len(b) >= 8:
        sport, dport, ulen = struct.unpack("!HHH", b[0:6])
        return Packet(ts, "UDP", src, sport, dst, dport, 0, max(0, ulen - 8), bytes(b[8:ulen]))
    return None


# --------------------------------------------------------------------------- tcpdump

def _same_ip(a: str, b: str) -> bool:
    try:
        return ipaddress.ip_address(a) == ipaddress.ip_address(b)
    except ValueError:
        return a == b


class Capture:
    """tcpdump on lo, filtered to the lab's addresses, written to `path`."""

    def __init__(self, path: Path | str, bpf: str = LAB_FILTER, interface: str = "lo"):
        self.path = Path(path)
        self.bpf = bpf
        self.interface = interface
        self.proc: subprocess.Popen | None = None
        self.stderr_lines: list[str] = []
        self._reader: threading.Thread | None = None
        self._packets: list[Packet] | None = None
        self.started_at: float | None = None

    @staticmethod
    def tcpdump() -> str | None:
        return shutil.which("tcpdump") or next(
            (p for p in ("/usr/sbin/tcpdump", "/usr/bin/tcpdump") if os.access(p, os.X_OK)), None)

    def start(self, timeout: float = 10.0) -> "Capture":
        exe = self.tcpdump()
        if not exe:
            raise CaptureError("tcpdump not installed (apt-get install tcpdump)")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.path.unlink(missing_ok=True)
        # -U + --immediate-mode: every packet reaches the file at once (without immediate mode
        # libpcap hands packets over in ring-buffer blocks and the tail of a test can be lost);
        # -Z root: keep writing to a root-owned directory.
        # The sync address is always part of the filter.
        bpf = f"({self.bpf}) or host {SYNC_ADDRESS}"
        # -B: a 64 MiB kernel buffer (default 2 MiB). At bench rates (thousands of lab queries a
        # second, tcpdump sharing a core with the lab) the default dropped up to half the packets.
        self.proc = subprocess.Popen([exe, "-i", self.interface, "-n", "-U", "--immediate-mode", "-s", "0", "-Z", "root",
                                      "-B", "65536",
                                      "-w", str(self.path), bpf],
                                     stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.PIPE, text=True)
        self._reader = threading.Thread(target=self._read_stderr, daemon=True)
        self._reader.start()
        deadline = time.monotonic() + timeout
        # Capturing for sure once our own sync datagram shows up in the file.
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            while time.monotonic() < deadline:
                if self.proc.poll() is not None:
                    time.sleep(0.1)
                    raise CaptureError(f"tcpdump exited with {self.proc.returncode}: {' '.join(self.stderr_lines)}")
                try:
                    s.sendto(SYNC_PAYLOAD, (SYNC_ADDRESS, SYNC_PORT))
                except OSError:
                    pass
                time.sleep(0.05)
                try:
                    if any(p.payload == SYNC_PAYLOAD for p in parse_pcap(self.path)):
                        self.started_at = time.time()
                        return self
                except (OSError, CaptureError):
                    pass
        self.stop()
        raise CaptureError(f"tcpdump did not start capturing within {timeout}s: {' '.join(self.stderr_lines)}")

    def _read_stderr(self) -> None:
        assert self.proc is not None and self.proc.stderr is not None
        for line in self.proc.stderr:
            self.stderr_lines.append(line.rstrip())

    def stop(self) -> list[Packet]:
        """Stop tcpdump (SIGINT, it flushes) and parse.  Idempotent."""
        if self.proc is not None:
            if self.proc.poll() is None:
                time.sleep(0.2)  # let the last packets of the test reach the buffer
                self.proc.send_signal(signal.SIGINT)
                try:
                    self.proc.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    self.proc.kill()
                    self.proc.wait()
            if self._reader:
                self._reader.join(timeout=2)
            self.proc = None
            self._packets = None
        return self.packets

    @property
    def dropped(self) -> int:
        for line in self.stderr_lines:
            if "dropped by kernel" in line:
                return int(line.split()[0])
        return 0

    @property
    def packets(self) -> list[Packet]:
        """All captured packets except the sync datagrams (parsed once tcpdump stopped)."""
        if self._packets is None or self.proc is not None:
            pk = [p for p in parse_pcap(self.path) if not (_same_ip(p.dst, SYNC_ADDRESS) or _same_ip(p.src, SYNC_ADDRESS))]
            if self.proc is not None:
                return pk
            self._packets = pk
        return self._packets

    def __enter__(self) -> "Capture":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # ----------------------------------------------------------------- questions

    def to(self, addr: str, port: int | None = None, proto: str | None = None,
           after: float | None = None, before: float | None = None) -> list[Packet]:
        """Packets sent to addr (optionally only to port / over proto / in a time window)."""
        return [p for p in self.packets
                if _same_ip(p.dst, addr) and (port is None or p.dport == port)
                and (proto is None or p.proto == proto)
                and (after is None or p.time >= after) and (before is None or p.time < before)]

    def from_(self, addr: str, port: int | None = None, proto: str | None = None,
              after: float | None = None) -> list[Packet]:
        """Packets sent by addr (its replies), optionally from one port."""
        return [p for p in self.packets
                if _same_ip(p.src, addr) and (port is None or p.sport == port)
                and (proto is None or p.proto == proto) and (after is None or p.time >= after)]

    def sent_to(self, addr: str, port: int, proto: str | None = None, after: float | None = None) -> bool:
        """Did any (UDP/TCP) packet go to addr:port?"""
        return bool(self.to(addr, port, proto, after))

    def syns(self, addr: str, port: int = 853, after: float | None = None) -> list[Packet]:
        """TCP connection attempts (SYN without ACK) to addr:port."""
        return [p for p in self.to(addr, port, "TCP", after) if p.syn]

    def first_to(self, addr: str) -> Packet | None:
        pk = self.to(addr)
        return pk[0] if pk else None

    def first_per_port(self, addr: str) -> dict[int, Packet]:
        """The first packet sent to addr on each destination port."""
        out: dict[int, Packet] = {}
        for p in self.to(addr):
            out.setdefault(p.dport, p)
        return out

    def tls_app_data_to(self, addr: str, port: int = 853, after: float | None = None) -> list[Packet]:
        """TCP segments to addr:port that carry a TLS application-data record (type 23)."""
        return [p for p in self.to(addr, port, "TCP", after) if TLS_APPLICATION_DATA in p.tls_record_types]

    def tls_app_data_from(self, addr: str, port: int = 853, after: float | None = None) -> list[Packet]:
        return [p for p in self.from_(addr, port, "TCP", after) if TLS_APPLICATION_DATA in p.tls_record_types]

    # ----------------------------------------------------------------- QUIC (DoQ on UDP 853)

    def quic_to(self, addr: str, port: int = 853, after: float | None = None,
                before: float | None = None) -> list[Packet]:
        """UDP datagrams to addr:port that carry QUIC packets."""
        return [p for p in self.to(addr, port, "UDP", after, before) if p.quic_packets]

    def quic_from(self, addr: str, port: int = 853, after: float | None = None) -> list[Packet]:
        return [p for p in self.from_(addr, port, "UDP", after) if p.quic_packets]

    def quic_connections(self, addr: str, port: int = 853, after: float | None = None,
                         before: float | None = None) -> list[tuple[int, bytes]]:
        """Distinct QUIC connections a client opened to addr:port, in order: (client port,
        client connection ID) from the Source Connection ID of its long-header packets, which
        stays the same across retransmitted Initials and the Handshake packets."""
        seen: list[tuple[int, bytes]] = []
        for p in self.to(addr, port, "UDP", after, before):
            for q in p.quic_packets:
                if q.type in (QUIC_INITIAL, QUIC_0RTT, QUIC_HANDSHAKE) and (p.sport, q.scid) not in seen:
                    seen.append((p.sport, q.scid))
        return seen

    def quic_initials_to(self, addr: str, port: int = 853, after: float | None = None) -> list[Packet]:
        """Datagrams to addr:port that carry a QUIC Initial packet (handshake starts and their
        retransmissions)."""
        return [p for p in self.to(addr, port, "UDP", after) if QUIC_INITIAL in p.quic_types]

    def quic_0rtt_to(self, addr: str, port: int = 853, after: float | None = None) -> list[Packet]:
        """Datagrams to addr:port carrying a 0-RTT packet (early data on a resumed session)."""
        return [p for p in self.to(addr, port, "UDP", after) if QUIC_0RTT in p.quic_types]

    def quic_1rtt_to(self, addr: str, port: int = 853, after: float | None = None) -> list[Packet]:
        """Datagrams to addr:port with a short-header (1-RTT) packet: traffic on an established
        connection (queries, ACKs)."""
        return [p for p in self.to(addr, port, "UDP", after) if QUIC_1RTT in p.quic_types]

    def payload_from(self, addr: str, port: int, proto: str = "TCP") -> int:
        """Bytes of transport payload that addr sent from port."""
        return sum(p.payload_len for p in self.from_(addr, port, proto))

    def summary(self, addr: str | None = None, limit: int = 60) -> str:
        pk = self.packets if addr is None else [p for p in self.packets if _same_ip(p.dst, addr) or _same_ip(p.src, addr)]
        lines = [str(p) for p in pk[:limit]]
        if len(pk) > limit:
            lines.append(f"... {len(pk) - limit} more")
        return "\n".join(lines) or "(no packets)"
