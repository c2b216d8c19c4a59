import Testing

@testable import Resolver

@Suite struct WireZoneFileTests {
  static let zone = """
    $ORIGIN example.com.
    $TTL 3600
    @   IN  SOA ns1 hostmaster (
            2024010101 ; serial
            2h         ; refresh
            3600 1209600
            300 )      ; minimum
        IN  NS  ns1
        IN  NS  ns2.example.net.
    ns1 300 IN A 192.0.2.53
        IN 300 AAAA 2001:db8::53
    www     CNAME   @
    txt  TXT "hello \\"world\\"; not a comment" plain\\032text ; a comment
    mail IN MX 10 mail
    _sip._udp SRV 0 5 5060 sip
    @ CAA 0 issue "letsencrypt.org"
    sec DS 12345 8 2 ( 49FD46E6C4B45C55D4AC
       49fd46e6c4b45c55d4ac )
    old DNAME new.example.
    4.2.0 PTR host
    unk TYPE65280 \\# 3 010203
    ak CLASS1 A \\# 4 0A000001
    $ORIGIN sub.example.com.
    deep A 10.0.0.2
    """

  @Test func parsesSmallZone() throws {
    let rrs = try ZoneFile.parse(Self.zone)
    try #require(rrs.count == 16)
    let origin = wn("example.com.")
    #expect(rrs[0].name == origin)
    #expect(
      rrs[0].rdata
        == .soa(
          mname: wn("ns1.example.com."), rname: wn("hostmaster.example.com."), serial: 2_024_010_101, refresh: 7200,
          retry: 3600, expire: 1_209_600, minimum: 300))
    #expect(rrs[0].ttl == 3600)
    #expect(rrs[1].name == origin && rrs[1].rdata == .ns(wn("ns1.example.com.")))
    #expect(rrs[2].rdata == .ns(wn("ns2.example.net.")))
    #expect(rrs[3].ttl == 300 && rrs[3].rdata == .a(IPv4Address("192.0.2.53")!))
    #expect(rrs[4].name == wn("ns1.example.com.") && rrs[4].ttl == 300)
    #expect(rrs[4].rdata == .aaaa(IPv6Address("2001:db8::53")!))
    #expect(rrs[5].rdata == .cname(origin) && rrs[5].ttl == 3600)
    #expect(rrs[6].rdata == .txt([Array("hello \"world\"; not a comment".utf8), Array("plain text".utf8)]))
    #expect(rrs[7].rdata == .mx(preference: 10, exchange: wn("mail.example.com.")))
    #expect(rrs[8].name == wn("_sip._udp.example.com."))
    #expect(rrs[8].rdata == .srv(priority: 0, weight: 5, port: 5060, target: wn("sip.example.com.")))
    #expect(rrs[9].presentation == "example.com.\t3600\tIN\tCAA\t0 issue \"letsencrypt.org\"")
    #expect(
      rrs[10].presentation == "sec.example.com.\t3600\tIN\tDS\t12345 8 2 49FD46E6C4B45C55D4AC49FD46E6C4B45C55D4AC")
    #expect(rrs[11].rdata == .dname(wn("new.example.")))
    #expect(rrs[12].name == wn("4.2.0.example.com.") && rrs[12].rdata == .ptr(wn("host.example.com.")))
    #expect(rrs[13].type == RRType(65280) && rrs[13].rdata == .unknown([1, 2, 3]))
    #expect(rrs[14].name == wn("ak.example.com.") && rrs[14].rdata == .a(IPv4Address("10.0.0.1")!))
    #expect(rrs[15].name == wn("deep.sub.example.com.") && rrs[15].ttl == 3600)
  }

  @Test func rootHints() throws {
    let hints = """
      ;       This file holds the information on root name servers needed to
      ;       initialize cache of Internet domain name servers
      .                        3600000      NS    A.ROOT-SERVERS.NET.
      A.ROOT-SERVERS.NET.      3600000      A     198.41.0.4
      A.ROOT-SERVERS.NET.      3600000      AAAA  2001:503:ba3e::2:30
      ;
      ; FORMERLY NS1.ISI.EDU
      ;
      .                        3600000      NS    B.ROOT-SERVERS.NET.
      B.ROOT-SERVERS.NET.      3600000      A     170.247.170.2
      B.ROOT-SERVERS.NET.      3600000      AAAA  2801:1b8:10::b
      ; End of file
      """
    let rrs = try ZoneFile.parse(hints)
    #expect(
      rrs.map(\.presentation) == [
        ".\t3600000\tIN\tNS\tA.ROOT-SERVERS.NET.",
        "A.ROOT-SERVERS.NET.\t3600000\tIN\tA\t198.41.0.4",
        "A.ROOT-SERVERS.NET.\t3600000\tIN\tAAAA\t2001:503:ba3e::2:30",
        ".\t3600000\tIN\tNS\tB.ROOT-SERVERS.NET.",
        "B.ROOT-SERVERS.NET.\t3600000\tIN\tA\t170.247.170.2",
        "B.ROOT-SERVERS.NET.\t3600000\tIN\tAAAA\t2801:1b8:10::b",
      ])
  }

  @Test func defaultsAndOriginParameter() throws {
    let rrs = try ZoneFile.parse("a A 10.0.0.1\nb 60 A 10.0.0.2\nc A 10.0.0.3\n", origin: wn("lab."), defaultTTL: 42)
    #expect(rrs.map(\.name) == [wn("a.lab."), wn("b.lab."), wn("c.lab.")])
    #expect(rrs.map(\.ttl) == [42, 60, 60])  // no $TTL: the last stated TTL carries over
  }

  @Test(arguments: [
    ("a.example. IN A 10.0.0.1\n\nb.example. IN A 999.1.1.1\n", 3),
    ("$TTL 60\n  IN A 10.0.0.1\n", 2),
    ("a. IN FOO bar\n", 1),
    ("a. IN MX ten b.\n", 1),
    ("a. IN SOA ns. host. (\n 1 2 3 4\n", 1),
    ("a. IN A 1.2.3.4\nb. IN TXT \"open\n", 2),
    ("a. IN A 1.2.3.4 5\n", 1),
    ("$INCLUDE other.zone\n", 1),
    ("a. IN CNAME b..c.\n", 1),
    ("a. IN TYPE99 \\# 3 0102\n", 1),
  ])
  func errorsCarryLineNumbers(_ text: String, _ line: Int) {
    do {
      _ = try ZoneFile.parse(text)
      Issue.record("parsed: \(text)")
    } catch {
      guard case .badPresentation(let msg) = error else {
        Issue.record("wrong error \(error)")
        return
      }
      #expect(msg.hasPrefix("line \(line): "), "\(msg)")
    }
  }

  @Test func rdataParseStandalone() throws {
    let origin = wn("example.")
    #expect(
      try RData.parse(presentation: "10 mx", type: .mx, origin: origin)
        == .mx(preference: 10, exchange: wn("mx.example.")))
    #expect(try RData.parse(presentation: "\\# 4 C0000201", type: .a, origin: origin) == .a(IPv4Address("192.0.2.1")!))
    #expect(
      try RData.parse(presentation: "0 issuewild \";\"", type: .caa, origin: origin)
        == .caa(flags: 0, tag: "issuewild", value: [0x3B]))
    #expect(throws: WireError.valueOutOfRange("character-string of 256 octets")) {
      try RData.parse(presentation: String(repeating: "x", count: 256), type: .txt, origin: origin)
    }
  }
}
