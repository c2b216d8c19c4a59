#!/usr/bin/env python3
"""Writes the seed corpora in Fuzz/corpus/ (run by hand; the output is committed).

Seeds: one record of every type Sotto's parser knows (presentation and wire form), responses
built from the lab zones (Lab/zones), the lab zone files and root hints, a sample state file
and the control requests. Needs dnspython.
"""
import hashlib
import json
import pathlib

import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.rdata
import dns.rdataclass
import dns.rdatatype
import dns.rrset
import dns.zone

ROOT = pathlib.Path(__file__).resolve().parent.parent
CORPUS = ROOT / "Fuzz" / "corpus"

# One sample per typed RR (text as a zone file writes it), plus RFC 3597 forms.
SAMPLES = [
    ("A", "192.0.2.1"), ("AAAA", "2001:db8::1"), ("NS", "ns1.example."), ("CNAME", "web.example."),
    ("DNAME", "new.example."), ("PTR", "host.example."),
    ("SOA", "ns1.example. hostmaster.example. 2024010101 7200 3600 1209600 300"),
    ("MX", "10 mx.example."), ("TXT", '"hello world" "\\"\\\\\\001A\\195" ""'),
    ("SRV", "0 5 5060 sip.example."), ("CAA", '0 issue "letsencrypt.org"'),
    ("DS", "20326 8 2 A0A1A2A3A4A5A6A7A8A9AAABACADAEAFB0B1B2B3B4B5B6B7B8B9BABBBCBDBEBF"),
    ("DNSKEY", "257 3 8 AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8gISIjJCUmJygpKissLS4vMDEyMzQ1Njc4OTo7PD0+Pw=="),
    ("RRSIG", "A 8 1 3600 20240101000000 20231201000000 12345 example. ZGVmZ2hpamtsbW5vcHFyc3R1dnd4eXp7fH1+f4CBgoOEhYaHiImKiw=="),
    ("NSEC", "b.example. A NS SOA RRSIG NSEC DNSKEY CAA TYPE1234"),
    ("NSEC3", "1 1 10 AABBCCDD 2T7B4G4VSA5SMI47K61MV5BV1A22BOJR A RRSIG"),
    ("NSEC3PARAM", "1 0 10 AABBCCDD"),
    ("SVCB", '1 svc.example. alpn="h2,h3" port=8443 ipv4hint=192.0.2.1 ipv6hint=2001:db8::1'),
    ("HTTPS", "0 svc.example."), ("HTTPS", '1 . alpn=h2 no-default-alpn'),
    ("HINFO", '"PC" "Linux"'), ("NAPTR", '100 10 "S" "SIP+D2U" "" _sip._udp.example.'),
    ("TYPE65280", "\\# 5 010203C00C"), ("TYPE65281", "\\# 0"), ("A", "\\# 4 C0000201"),
    # Generic forms that decode to RRSIG/NSEC3/SVCB values (presentation fuzz regressions) and
    # the SVCB keys and escapes their text parser handles.
    ("RRSIG", "\\# 23 0001080200000E10FFFFFFFF0000000000010001020304"),
    ("NSEC3", "\\# 9 0100000A01AB02BEEF"), ("SVCB", "\\# 3 000000"),
    ("HTTPS", '1 . mandatory=alpn,port alpn="h2,h\\,3" port=443 ipv4hint=192.0.2.1,192.0.2.2 key9="a\\"b"'),
]

# Sotto's RRType.mnemonics keys in order, then 99 and 1234: the presentation target's selector.
SELECTOR_TYPES = [1, 2, 5, 6, 12, 13, 15, 16, 28, 33, 35, 39, 41, 43, 46, 47, 48, 50, 51, 64, 65,
                  249, 250, 251, 252, 253, 254, 255, 257, 99, 1234]


def write(target: str, data: bytes) -> None:
    d = CORPUS / target
    d.mkdir(parents=True, exist_ok=True)
    (d / hashlib.sha1(data).hexdigest()[:16]).write_bytes(data)


def sample_rrsets():
    out = []
    for mnemonic, text in SAMPLES:
        rdtype = dns.rdatatype.from_text(mnemonic)
        rd = dns.rdata.from_text(dns.rdataclass.IN, rdtype, text, origin=dns.name.root, relativize=False)
        out.append(dns.rrset.from_rdata(dns.name.from_text("example."), 300, rd))
    return out


def lab_zones():
    for path in sorted((ROOT / "Lab" / "zones").glob("*.zone")):
        origin = "." if path.name == "root.zone" else path.name[: -len(".zone")] + "."
        yield path, dns.zone.from_file(str(path), origin=origin, relativize=False, check_origin=False)


def main() -> None:
    rrsets = sample_rrsets()
    # Presentation target: selector byte + RDATA text.
    for mnemonic, text in SAMPLES:
        code = dns.rdatatype.from_text(mnemonic)
        if code in SELECTOR_TYPES:
            write("presentation", bytes([SELECTOR_TYPES.index(code)]) + text.encode())
    # Message target: one response holding every sample, one per sample, and lab answers.
    q = dns.message.make_query("example.", "A", use_edns=0, want_dnssec=True, payload=1232)
    write("message", q.to_wire())
    everything = dns.message.make_response(q)
    everything.answer.extend(rrsets)
    write("message", everything.to_wire())
    for rrset in rrsets:
        r = dns.message.make_response(dns.message.make_query("example.", rrset.rdtype))
        r.answer.append(rrset)
        write("message", r.to_wire())
    for path, zone in lab_zones():
        soa = None
        msg = dns.message.make_response(dns.message.make_query(zone.origin, "ANY", use_edns=0))
        msg.flags |= dns.flags.AA
        for name, node in zone.nodes.items():
            for rds in node.rdatasets:
                rrset = dns.rrset.from_rdata_list(name, rds.ttl, list(rds))
                (msg.authority if rds.rdtype == dns.rdatatype.NS and name != zone.origin else msg.answer).append(rrset)
        try:
            wire = msg.to_wire()
        except dns.exception.TooBig:  # a hostile lab zone (hundreds of NS names) fills no message
            print(f"skipped {path.name}: its records do not fit one message")
            continue
        write("message", wire)
        # Name target: offsets of every name in this message (the question name is at 12).
        for off in (12, 12 + len(zone.origin.to_wire()) + 4, len(wire) - 1):
            if off < len(wire) and off < 256:
                write("name", bytes([off]) + wire)
        write("zone", path.read_bytes())
    write("zone", (ROOT / "Lab" / "root.hints").read_bytes())
    write("zone", b"$ORIGIN example.\n$TTL 1h\n@ IN SOA ns1 host ( 1 2 3 4 5 )\n" +
          b"".join(f"s{i} 300 IN {m} {t}\n".encode() for i, (m, t) in enumerate(SAMPLES)))
    # Name target: hand-made compression cases.
    write("name", bytes([0, 3]) + b"www\x07example\x03com\x00")
    write("name", bytes([13]) + b"\x07example\x03com\x00\x03www\xc0\x00")
    write("name", bytes([2]) + b"\xc0\x00\xc0\x00")
    # State file target: a document with both transports.
    transport = {
        "state": "good", "status": "success", "initiated": "2026-11-28T08:00:00.000Z",
        "completed": "2026-11-28T08:00:00.050Z", "last_response": "2026-11-28T08:01:00Z",
        "resumptions": ["AAECAw=="], "probes": {"started": 2, "succeeded": 1, "failed": 1, "timed_out": 0},
        "failures": {"tls-handshake": 1}, "last_failure": "tls-handshake",
        "certificate": {"problems": ["self-signed"], "subject": "/CN=ns1.dot.test", "not_after": "2027-01-01T00:00:00Z"},
        "handshake_ms": 12.5, "tls_version": "TLSv1.3", "resumed": False, "early_data": None,
    }
    doc = {
        "version": 1, "saved_at": "2026-11-28T08:02:00.000Z",
        "settings": {"persistence": 259200, "damping": 86400, "timeout": 4},
        "servers": [{
            "address": "127.53.5.1", "ns_names": ["ns1.dot.test."], "zones": ["dot.test."],
            "first_seen": "2026-11-28T07:00:00Z", "last_seen": "2026-11-28T08:01:00Z",
            "queries": {"do53": 3, "dot": 5}, "cleartext_while_good": 0, "dot": transport,
            "doq": dict(transport, state="failed", status="timeout", resumptions=[], certificate=None),
        }, {
            "address": "::1", "ns_names": [], "zones": [], "first_seen": "2026-11-28T07:00:00Z",
            "last_seen": "2026-11-28T07:00:00Z", "queries": {}, "cleartext_while_good": 1, "dot": None, "doq": None,
        }],
    }
    write("statefile", json.dumps(doc, indent=2, sort_keys=True).encode())
    write("statefile", json.dumps(dict(doc, servers=[])).encode())
    write("statefile", b'{"version": 2}')
    # Control target: every request form from ControlProtocol's documentation.
    for line in ['{"cmd":"stats"}', '{"cmd":"servers"}', '{"cmd":"queries","limit":50}', '{"cmd":"flush"}',
                 '{"cmd":"flush","name":"example.test."}', '{"cmd":"flush","negative":true}',
                 '{"cmd":"forget","ip":"192.0.2.1"}', '{"cmd":"probe","ip":"::1"}',
                 '{"cmd":"lookup","name":"www.example.test.","type":"AAAA"}', '{"name":"x"}', '[1,2]']:
        write("control", line.encode())


if __name__ == "__main__":
    main()
