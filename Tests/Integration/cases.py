"""Expected results for every lab case.  The same table is checked against
Unbound (lab self-test, test_lab.py) and against `sotto lookup --json`
(test_lookup.py), so an error in the lab cannot masquerade as a Sotto bug."""

from __future__ import annotations

from dataclasses import dataclass, field

from harness import rr

WWW = {rr("www.example.test.", "A", "192.0.2.10"), rr("www.example.test.", "A", "192.0.2.11")}


@dataclass(frozen=True)
class Case:
    id: str
    name: str
    qtype: str
    rcode: str
    answer: frozenset = field(default_factory=frozenset)
    soa: str | None = None  # owner of the SOA expected in authority (negative answers)
    needs_ipv6: bool = False


def case(id, name, qtype, rcode="NOERROR", answer=(), soa=None, needs_ipv6=False) -> Case:
    return Case(id, name, qtype, rcode, frozenset(answer), soa, needs_ipv6)


CASES = [
    case("a", "www.example.test.", "A", answer=WWW),
    case("aaaa", "www.example.test.", "AAAA", answer={rr("www.example.test.", "AAAA", "2001:db8::10")}),
    case("mx", "example.test.", "MX", answer={rr("example.test.", "MX", "10 mail.example.test."),
                                              rr("example.test.", "MX", "20 mx2.example.test.")}),
    case("txt-quotes-spaces", "txt.example.test.", "TXT",
         answer={rr("txt.example.test.", "TXT", r'"hello world" "say \"hi\"" "semi;colon"')}),
    case("srv", "_sip._tcp.example.test.", "SRV",
         answer={rr("_sip._tcp.example.test.", "SRV", "10 60 5060 sip.example.test.")}),
    case("caa", "example.test.", "CAA", answer={rr("example.test.", "CAA", '0 issue "ca.example.net"')}),
    case("cname-in-zone", "alias.example.test.", "A",
         answer={rr("alias.example.test.", "CNAME", "alias2.example.test."),
                 rr("alias2.example.test.", "CNAME", "www.example.test."), *WWW}),
    case("cname-cross-zone", "start.chain.test.", "A",
         answer={rr("start.chain.test.", "CNAME", "hop.example.test."),
                 rr("hop.example.test.", "CNAME", "end.other.lab."),
                 rr("end.other.lab.", "A", "192.0.2.77")}),
    case("cname-to-nxdomain", "dangling.chain.test.", "A", rcode="NXDOMAIN",
         answer={rr("dangling.chain.test.", "CNAME", "gone.other.lab.")}, soa="other.lab."),
    case("dname", "www.ex.dname.test.", "A",
         answer={rr("ex.dname.test.", "DNAME", "example.test."),
                 rr("www.ex.dname.test.", "CNAME", "www.example.test."), *WWW}),
    case("wildcard", "anything.wild.example.test.", "A",
         answer={rr("anything.wild.example.test.", "A", "192.0.2.99")}),
    case("wildcard-deep", "x.y.wild.example.test.", "TXT",
         answer={rr("x.y.wild.example.test.", "TXT", '"wildcard"')}),
    case("nxdomain", "nope.example.test.", "A", rcode="NXDOMAIN", soa="example.test."),
    case("nodata", "v6only.example.test.", "A", soa="example.test."),
    case("out-of-bailiwick-ns", "www.outside.test.", "A", answer={rr("www.outside.test.", "A", "192.0.2.60")}),
    case("broken-glue", "www.broken.test.", "A", answer={rr("www.broken.test.", "A", "192.0.2.90")}),
    case("lame-delegation", "www.lame.test.", "A", answer={rr("www.lame.test.", "A", "192.0.2.91")}),
    case("ipv6-only-zone", "www.v6.test.", "AAAA", answer={rr("www.v6.test.", "AAAA", "2001:db8::66")},
         needs_ipv6=True),
    case("deep-name", "a.b.c.d.example.test.", "A", answer={rr("a.b.c.d.example.test.", "A", "192.0.2.40")}),
    case("zero-ttl-delegation", "www.zerottl.test.", "A", answer={rr("www.zerottl.test.", "A", "198.51.100.120")}),
    # Opportunistic-encryption zones: answers must not depend on the 853 behaviour of the server.
    case("dot-valid", "www.dot.test.", "A", answer={rr("www.dot.test.", "A", "198.51.100.10")}),
    case("dot-badcert", "www.badcert.test.", "A", answer={rr("www.badcert.test.", "A", "198.51.100.30")}),
    case("dot-refused", "www.refused.test.", "A", answer={rr("www.refused.test.", "A", "198.51.100.50")}),
    case("dot-silent", "www.silent.test.", "A", answer={rr("www.silent.test.", "A", "198.51.100.70")}),
    case("dot-mixed", "www.mixed.test.", "A", answer={rr("www.mixed.test.", "A", "198.51.100.90")}),
    case("dot-nxdomain", "nope.dot.test.", "A", rcode="NXDOMAIN", soa="dot.test."),
]

# The 40+ (name, type) pairs of the differential test against Unbound.
DIFFERENTIAL = [
    ("www.example.test.", "A"), ("www.example.test.", "AAAA"), ("www.example.test.", "MX"),
    ("example.test.", "MX"), ("example.test.", "TXT"), ("example.test.", "CAA"), ("example.test.", "NS"),
    ("example.test.", "SOA"), ("txt.example.test.", "TXT"), ("_sip._tcp.example.test.", "SRV"),
    ("mail.example.test.", "A"), ("WWW.Example.TEST.", "A"),
    ("alias.example.test.", "A"), ("alias.example.test.", "AAAA"), ("alias.example.test.", "CNAME"),
    ("alias2.example.test.", "A"),
    ("start.chain.test.", "A"), ("start.chain.test.", "AAAA"), ("start.chain.test.", "TXT"),
    ("dangling.chain.test.", "A"), ("hop.example.test.", "A"),
    ("www.ex.dname.test.", "A"), ("mail.ex.dname.test.", "A"), ("nope.ex.dname.test.", "A"),
    ("anything.wild.example.test.", "A"), ("x.y.wild.example.test.", "TXT"), ("anything.wild.example.test.", "AAAA"),
    ("nope.example.test.", "A"), ("nope.example.test.", "MX"), ("nothere.test.", "A"), ("nothere.lab.", "A"),
    ("v6only.example.test.", "A"), ("v6only.example.test.", "AAAA"),
    ("www.outside.test.", "A"), ("outside.test.", "MX"), ("outside.test.", "NS"), ("ns1.hosts.lab.", "A"),
    ("www.broken.test.", "A"), ("broken.test.", "NS"), ("www.lame.test.", "A"), ("lame.test.", "SOA"),
    ("www.v6.test.", "AAAA"), ("www.v6.test.", "A"),
    ("a.b.c.d.example.test.", "A"), ("a.b.c.d.example.test.", "TXT"), ("c.d.example.test.", "A"),
    ("www.zerottl.test.", "A"), ("www2.zerottl.test.", "A"), ("zerottl.test.", "NS"), ("nope.zerottl.test.", "A"),
    ("end.other.lab.", "AAAA"), ("test.", "SOA"), ("lab.", "NS"),
    # opportunistic-encryption zones
    ("www.dot.test.", "A"), ("www.dot.test.", "AAAA"), ("dot.test.", "TXT"), ("nope.dot.test.", "A"),
    ("www.badcert.test.", "A"), ("www.refused.test.", "AAAA"), ("www.silent.test.", "A"),
    ("mixed.test.", "NS"), ("h3.mixed.test.", "A"),
]
