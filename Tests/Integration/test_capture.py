"""The packet-capture parser's QUIC header walk (capture.py), on hand-made datagrams: no lab, no root.

The bench counts DoQ queries from it (Benchmarks/wire_count.py); a peer that greases the QUIC
fixed bit (RFC 9287, as ngtcp2 clients do when the server allows it) must still be counted.
"""

from capture import QUIC_1RTT, QUIC_HANDSHAKE, QUIC_INITIAL, Packet


def udp(payload: bytes, dport: int = 853) -> Packet:
    return Packet(0.0, "UDP", "127.0.0.1", 40000, "127.53.17.1", dport, 0, len(payload), payload)


def long_header(first: int, dcid: bytes, scid: bytes, body: bytes, initial: bool = False) -> bytes:
    out = bytes([first]) + (1).to_bytes(4, "big") + bytes([len(dcid)]) + dcid + bytes([len(scid)]) + scid
    if initial:
        out += b"\x00"  # token length 0
    return out + bytes([0x40 | (len(body) >> 8), len(body) & 0xFF]) + body  # 2-octet varint length


def test_short_header_with_fixed_bit_is_1rtt() -> None:
    assert udp(b"\x43" + bytes(60)).quic_types == [QUIC_1RTT]


def test_greased_short_header_is_1rtt() -> None:
    # Fixed bit (0x40) clear as the first packet of a datagram: greased, not padding.
    assert udp(b"\x03" + bytes(60)).quic_types == [QUIC_1RTT]


def test_greased_long_header_is_parsed_and_padding_after_it_is_not_a_packet() -> None:
    handshake = long_header(0xA0, b"\x11" * 8, b"\x22" * 8, bytes(30))  # Handshake, fixed bit clear
    assert udp(handshake + bytes(40)).quic_types == [QUIC_HANDSHAKE]


def test_coalesced_initial_then_short_header() -> None:
    initial = long_header(0xC0, b"\x11" * 8, b"\x22" * 8, bytes(30), initial=True)
    assert udp(initial + b"\x41" + bytes(20)).quic_types == [QUIC_INITIAL, QUIC_1RTT]


def test_only_doq_port_is_parsed() -> None:
    assert udp(b"\x43" + bytes(60), dport=53).quic_types == []
