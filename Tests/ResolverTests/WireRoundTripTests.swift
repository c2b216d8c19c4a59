import Testing

@testable import Resolver

/// Test helper: a name from text (test literals only).
func wn(_ s: String) -> DNSName { try! DNSName(s) }

/// Test helper: an IN record with TTL 300.
func wrr(_ name: String, _ type: RRType, _ rdata: RData, ttl: UInt32 = 300) -> ResourceRecord {
  ResourceRecord(name: wn(name), type: type, ttl: ttl, rdata: rdata)
}

/// Test helper: the case name of a WireError (`truncated`, `badOPT`, ...).
func wireErrorKind(_ e: WireError) -> String {
  switch e {
  case .truncated: "truncated"
  case .forwardPointer: "forwardPointer"
  case .pointerLoop: "pointerLoop"
  case .badLabelType: "badLabelType"
  case .labelTooLong: "labelTooLong"
  case .nameTooLong: "nameTooLong"
  case .emptyLabel: "emptyLabel"
  case .badRDataLength: "badRDataLength"
  case .trailingData: "trailingData"
  case .badOPT: "badOPT"
  case .missingCookie: "missingCookie"
  case .badTypeBitmap: "badTypeBitmap"
  case .badPresentation: "badPresentation"
  case .valueOutOfRange: "valueOutOfRange"
  }
}

/// Every typed record kind with the exact line `dig` prints for it.
let wireSamples: [(ResourceRecord, String)] = [
  (wrr("a.example.", .a, .a(IPv4Address("192.0.2.1")!)), "a.example.\t300\tIN\tA\t192.0.2.1"),
  (wrr("a.example.", .aaaa, .aaaa(IPv6Address("2001:DB8:0:0:0:0:0:1")!)), "a.example.\t300\tIN\tAAAA\t2001:db8::1"),
  (wrr("example.", .ns, .ns(wn("ns1.example."))), "example.\t300\tIN\tNS\tns1.example."),
  (wrr("www.example.", .cname, .cname(wn("web.example."))), "www.example.\t300\tIN\tCNAME\tweb.example."),
  (wrr("old.example.", .dname, .dname(wn("new.example."))), "old.example.\t300\tIN\tDNAME\tnew.example."),
  (
    wrr("1.2.0.192.in-addr.arpa.", .ptr, .ptr(wn("host.example."))),
    "1.2.0.192.in-addr.arpa.\t300\tIN\tPTR\thost.example."
  ),
  (
    wrr(
      "example.", .soa,
      .soa(
        mname: wn("ns1.example."), rname: wn("hostmaster.example."), serial: 2_024_010_101, refresh: 7200,
        retry: 3600, expire: 1_209_600, minimum: 300)),
    "example.\t300\tIN\tSOA\tns1.example. hostmaster.example. 2024010101 7200 3600 1209600 300"
  ),
  (wrr("example.", .mx, .mx(preference: 10, exchange: wn("mx.example."))), "example.\t300\tIN\tMX\t10 mx.example."),
  (
    wrr("example.", .txt, .txt([Array("hello world".utf8), [0x22, 0x5C, 0x01, 0x41, 0xC3], []])),
    "example.\t300\tIN\tTXT\t\"hello world\" \"\\\"\\\\\\001A\\195\" \"\""
  ),
  (
    wrr("_sip._udp.example.", .srv, .srv(priority: 0, weight: 5, port: 5060, target: wn("sip.example."))),
    "_sip._udp.example.\t300\tIN\tSRV\t0 5 5060 sip.example."
  ),
  (
    wrr("example.", .caa, .caa(flags: 0, tag: "issue", value: Array("letsencrypt.org".utf8))),
    "example.\t300\tIN\tCAA\t0 issue \"letsencrypt.org\""
  ),
  (
    wrr("example.", .ds, .ds(keyTag: 20326, algorithm: 8, digestType: 2, digest: Array(0xA0...0xBF))),
    "example.\t300\tIN\tDS\t20326 8 2 A0A1A2A3A4A5A6A7A8A9AAABACADAEAFB0B1B2B3B4B5B6B7B8B9BABB BCBDBEBF"
  ),
  (
    wrr("example.", .dnskey, .dnskey(flags: 257, protocol: 3, algorithm: 8, publicKey: Array(0..<64))),
    "example.\t300\tIN\tDNSKEY\t257 3 8 AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8gISIjJCUmJygp KissLS4vMDEyMzQ1Njc4OTo7PD0+Pw=="
  ),
  (
    wrr(
      "example.", .rrsig,
      .rrsig(
        typeCovered: .a, algorithm: 8, labels: 1, originalTTL: 3600, expiration: 1_704_067_200,
        inception: 1_701_388_800, keyTag: 12345, signerName: wn("example."), signature: Array(100..<140))),
    "example.\t300\tIN\tRRSIG\tA 8 1 3600 20240101000000 20231201000000 12345 example. ZGVmZ2hpamtsbW5vcHFyc3R1dnd4eXp7fH1+f4CBgoOEhYaHiImKiw=="
  ),
  (
    wrr(
      "a.example.", .nsec,
      .nsec(nextName: wn("b.example."), types: [.a, .ns, .soa, .rrsig, .nsec, .dnskey, .caa, RRType(1234)])),
    "a.example.\t300\tIN\tNSEC\tb.example. A NS SOA RRSIG NSEC DNSKEY CAA TYPE1234"
  ),
  (
    wrr(
      "h.example.", .nsec3,
      .nsec3(
        hashAlgorithm: 1, flags: 1, iterations: 10, salt: [0xAA, 0xBB, 0xCC, 0xDD], nextHashedOwner: Array(0..<20),
        types: [.a, .rrsig])),
    "h.example.\t300\tIN\tNSEC3\t1 1 10 AABBCCDD 000G40O40K30E209185GO38E1S8124GJ A RRSIG"
  ),
  (
    wrr(
      "h.example.", .nsec3,
      .nsec3(hashAlgorithm: 1, flags: 0, iterations: 0, salt: [], nextHashedOwner: Array(0..<20), types: [.ns])),
    "h.example.\t300\tIN\tNSEC3\t1 0 0 - 000G40O40K30E209185GO38E1S8124GJ NS"
  ),
  (
    wrr(
      "_443._tcp.example.", .svcb,
      .svcb(
        priority: 1, target: .root,
        params: [
          SVCParam(key: 1, value: [2] + Array("h2".utf8) + [2] + Array("h3".utf8)),
          SVCParam(key: 3, value: [0x01, 0xBB]),
          SVCParam(key: 4, value: [192, 0, 2, 1, 192, 0, 2, 2]),
          SVCParam(key: 6, value: IPv6Address("2001:db8::1")!.octets),
          SVCParam(key: 65000, value: [0x41, 0x01]),
        ])),
    "_443._tcp.example.\t300\tIN\tSVCB\t1 . alpn=\"h2,h3\" port=443 ipv4hint=192.0.2.1,192.0.2.2 ipv6hint=2001:db8::1 key65000=\"A\\001\""
  ),
  (
    wrr("example.", .https, .svcb(priority: 0, target: wn("svc.example."), params: [])),
    "example.\t300\tIN\tHTTPS\t0 svc.example."
  ),
  (
    wrr(
      "example.", .https,
      .svcb(
        priority: 1, target: .root,
        params: [
          SVCParam(key: 0, value: [0, 1]), SVCParam(key: 1, value: [2] + Array("h2".utf8)), SVCParam(key: 2, value: []),
        ])),
    "example.\t300\tIN\tHTTPS\t1 . mandatory=alpn alpn=\"h2\" no-default-alpn"
  ),
  (wrr("example.", RRType(65280), .unknown([1, 2, 3, 0xC0, 0x0C])), "example.\t300\tIN\tTYPE65280\t\\# 5 010203C00C"),
  (wrr("example.", RRType(65281), .unknown([])), "example.\t300\tIN\tTYPE65281\t\\# 0"),
  (wrr("example.", .hinfo, .unknown([3, 0x41, 0x42, 0x43, 1, 0x44])), "example.\t300\tIN\tHINFO\t\\# 6 034142430144"),
]

@Suite struct WireRoundTripTests {
  @Test(arguments: 0..<wireSamples.count)
  func recordRoundTripsInEverySection(_ index: Int) throws {
    let rr = wireSamples[index].0
    var m = Message()
    m.header.id = 0xBEEF
    m.header.qr = true
    m.header.rd = true
    m.questions = [Question(name: rr.name, type: rr.type)]
    m.answers = [rr]
    m.authority = [rr]
    m.additional = [rr]
    let bytes = m.serialize()
    let back = try Message.parse(bytes)
    #expect(back == m)
    #expect(back.answers.first?.rdata == rr.rdata)
    // Re-serializing the parsed message gives the same octets.
    #expect(back.serialize() == bytes)
  }

  @Test(arguments: 0..<wireSamples.count)
  func presentationMatchesDig(_ index: Int) {
    let (rr, expected) = wireSamples[index]
    #expect(rr.presentation == expected)
  }

  @Test func headerFlagsRoundTrip() throws {
    var m = Message()
    m.header.id = 0x1234
    m.header.qr = true
    m.header.opcode = 5
    m.header.aa = true
    m.header.tc = true
    m.header.rd = true
    m.header.ra = true
    m.header.z = true
    m.header.ad = true
    m.header.cd = true
    m.header.rcodeLow = 3
    let bytes = m.serialize()
    #expect(bytes == [0x12, 0x34, 0xAF, 0xF3, 0, 0, 0, 0, 0, 0, 0, 0])
    #expect(try Message.parse(bytes) == m)
  }

  @Test func unknownTypeIsByteExact() throws {
    // TYPE65280 whose RDATA looks like a compression pointer; it must not be decompressed.
    let bytes: [UInt8] = [
      0, 1, 0x81, 0x80, 0, 1, 0, 1, 0, 0, 0, 0,
      1, 0x61, 0, 0xFF, 0x00, 0, 1,
      0xC0, 12, 0xFF, 0x00, 0, 1, 0, 0, 0, 60, 0, 4, 0x01, 0xC0, 0x0C, 0x00,
    ]
    let m = try Message.parse(bytes)
    #expect(m.answers[0].rdata == .unknown([0x01, 0xC0, 0x0C, 0x00]))
    #expect(m.serialize() == bytes)
  }

  @Test func typeIsAuthorityForUnknownData() throws {
    // An A record whose data is kept raw is written as-is and read back typed.
    var m = Message()
    m.answers = [wrr("a.", .a, .unknown([10, 0, 0, 1]))]
    let back = try Message.parse(m.serialize())
    #expect(back.answers[0].rdata == .a(IPv4Address("10.0.0.1")!))
  }

  @Test func caaWithOddTagStaysRaw() throws {
    var m = Message()
    m.answers = [wrr("a.", .caa, .unknown([0, 2, 0x21, 0x21, 0x78]))]
    let back = try Message.parse(m.serialize())
    #expect(back.answers[0].rdata == .unknown([0, 2, 0x21, 0x21, 0x78]))
  }

  @Test(arguments: [
    ("2001:db8::1", "2001:db8::1"), ("::", "::"), ("::1", "::1"), ("2001:DB8::A", "2001:db8::a"),
    ("2001:db8:0:0:1:0:0:1", "2001:db8::1:0:0:1"), ("2001:db8:0:1:1:1:1:1", "2001:db8:0:1:1:1:1:1"),
    ("1:0:0:2:0:0:0:3", "1:0:0:2::3"), ("fe80:0:0:0:0:0:0:0", "fe80::"), ("::ffff:192.0.2.1", "::ffff:192.0.2.1"),
    ("2001:0db8:0000:0000:0000:ff00:0042:8329", "2001:db8::ff00:42:8329"), ("1:2:3:4:5:6:7:8", "1:2:3:4:5:6:7:8"),
    ("0:0:1:0:0:1:0:0", "::1:0:0:1:0:0"),
  ])
  func ipv6Rfc5952(_ input: String, _ expected: String) {
    #expect(IPv6Address(input)?.description == expected)
  }

  @Test(arguments: ["1:2:3:4:5:6:7", "1::2::3", "12345::", ":::", "1:2:3:4:5:6:7:8:9", "g::", "1:2:3:4:5:6:7::8", ""])
  func ipv6RejectsBadText(_ input: String) {
    #expect(IPv6Address(input) == nil)
  }

  @Test func presentationTextRoundTrips() throws {
    for (rr, _) in wireSamples {
      let text = rr.rdata.presentation
      switch rr.type {
      case .a, .aaaa, .ns, .cname, .dname, .ptr, .soa, .mx, .txt, .srv, .caa, .ds, .dnskey, .nsec:
        #expect(try RData.parse(presentation: text, type: rr.type, origin: .root) == rr.rdata, "\(text)")
      default:
        // Everything parses through the generic RFC 3597 form.
        let generic = "\\# \(rr.rdata.wireBytes.count) " + TextEncoding.hex(rr.rdata.wireBytes).lowercased()
        #expect(try RData.parse(presentation: generic, type: rr.type, origin: .root) == rr.rdata, "\(generic)")
      }
    }
  }
}
