import Testing

@testable import Resolver

/// EDNS(0) Padding on DoT queries (T-40, RFC 8467 §4.1).
@Suite struct DoTPaddingTests {
  /// The query as DoQ sends it (no keepalive request), without its 2-octet length prefix.
  static func paddedWire(_ query: Message) -> [UInt8] {
    Array(DoTQueryPadding.framedPaddedWire(query, id: query.header.id, requestingKeepalive: false).dropFirst(2))
  }

  @Test(arguments: [
    "a.", "www.dot.test.", "a-much-longer-label-for-padding.example.test.", String(repeating: "x.", count: 60),
  ])
  func paddedLengthIsAMultipleOf128(_ name: String) throws {
    for withEDNS in [true, false] {
      var query = Message()
      query.header.id = 7
      query.questions = [Question(name: try DNSName(name), type: .a)]
      if withEDNS {
        query.edns = EDNS(options: [EDNSOption(code: EDNSOption.cookieCode, data: Array(repeating: 9, count: 8))])
      }
      let wire = Self.paddedWire(query)
      #expect(wire.count % 128 == 0)
      let parsed = try Message.parse(wire)
      let options = try #require(parsed.edns?.options)
      #expect(options.last?.code == EDNSOption.paddingCode, "padding comes last")
      #expect(options.last?.data.allSatisfy { $0 == 0 } == true)
      #expect(options.filter { $0.code == EDNSOption.paddingCode }.count == 1)
      if withEDNS { #expect(options.first?.code == EDNSOption.cookieCode) }
      #expect(parsed.questions == query.questions)
    }
  }

  /// The reference construction: serialize, measure, serialize again with the option added.
  static func paddedWireTwoPass(_ message: Message, edns: EDNS) -> [UInt8] {
    var message = message
    var edns = edns
    let unpadded = message.serialize().count + 4
    let fill = (DoTQueryPadding.blockSize - unpadded % DoTQueryPadding.blockSize) % DoTQueryPadding.blockSize
    edns.options.append(EDNSOption(code: EDNSOption.paddingCode, data: [UInt8](repeating: 0, count: fill)))
    message.edns = edns
    return message.serialize()
  }

  /// The one-pass construction writes exactly the bytes of serializing with the option in place,
  /// compression pointers included (they count from the message, not from the length prefix).
  @Test(arguments: [
    "a.", "www.dot.test.", "a-much-longer-label-for-padding.example.test.", String(repeating: "x.", count: 60),
  ])
  func onePassEqualsTwoPass(_ name: String) throws {
    let cookie = EDNSOption(code: EDNSOption.cookieCode, data: Array(repeating: 9, count: 8))
    let oldPadding = EDNSOption(code: EDNSOption.paddingCode, data: Array(repeating: 0, count: 77))
    let owner = try DNSName(name)
    for options in [nil, [], [cookie], [oldPadding, cookie], [cookie, oldPadding]] as [[EDNSOption]?] {
      for withRecords in [false, true] {
        var query = Message()
        query.header.id = 0x1234
        query.header.rd = false
        query.questions = [Question(name: owner, type: .aaaa)]
        if withRecords {
          // Names that compress against the question's and each other's.
          let child = try owner.prepending(Array("ns1".utf8))
          query.answers = [ResourceRecord(name: owner, type: .cname, ttl: 60, rdata: .cname(child))]
          query.authority = [ResourceRecord(name: owner, type: .ns, ttl: 60, rdata: .ns(child))]
        }
        if let options { query.edns = EDNS(udpPayloadSize: 1232, options: options) }
        var edns = query.edns ?? EDNS()
        edns.options.removeAll { $0.code == EDNSOption.paddingCode }
        var stripped = query
        stripped.edns = edns
        let reference = Self.paddedWireTwoPass(stripped, edns: edns)
        #expect(Self.paddedWire(query) == reference)
        // The framed form is the same bytes behind their 2-octet length.
        #expect(
          DoTQueryPadding.framedPaddedWire(query, id: 0x1234, requestingKeepalive: false)
            == [UInt8(reference.count >> 8), UInt8(reference.count & 0xFF)] + reference)
        if withRecords {
          let parsed = try Message.parse(Self.paddedWire(query))
          #expect(parsed.answers == query.answers && parsed.authority == query.authority)
        }
      }
    }
  }

  /// The stream query's ID and keepalive option: DoT asks for keepalive once, with no TIMEOUT
  /// (T-20), in place of any the query had; DoQ leaves it out (T-33).
  @Test func idAndKeepaliveAsTheTransportAsks() throws {
    let keepalive = EDNSOption(code: EDNSOption.keepaliveCode, data: [0, 100])
    let cookie = EDNSOption(code: EDNSOption.cookieCode, data: Array(repeating: 9, count: 8))
    var query = Message()
    query.header.id = 0x4242
    query.questions = [Question(name: try DNSName("www.dot.test."), type: .a)]
    query.edns = EDNS(options: [keepalive, cookie])
    func sent(_ id: UInt16, requestingKeepalive: Bool) throws -> Message {
      let framed = DoTQueryPadding.framedPaddedWire(query, id: id, requestingKeepalive: requestingKeepalive)
      #expect(Int(framed[0]) << 8 | Int(framed[1]) == framed.count - 2)
      #expect((framed.count - 2) % DoTQueryPadding.blockSize == 0)
      return try Message.parse(Array(framed.dropFirst(2)))
    }
    let codes = { (m: Message) in m.edns?.options.map(\.code) ?? [] }
    let dot = try sent(0x0101, requestingKeepalive: true)
    #expect(dot.header.id == 0x0101)
    #expect(codes(dot) == [EDNSOption.cookieCode, EDNSOption.keepaliveCode, EDNSOption.paddingCode])
    #expect(dot.edns?.options[1].data == [], "the request is empty: the client sends no TIMEOUT")
    let doq = try sent(0, requestingKeepalive: false)
    #expect(doq.header.id == 0)
    #expect(codes(doq) == [EDNSOption.cookieCode, EDNSOption.paddingCode])
  }

  @Test func existingPaddingIsReplaced() throws {
    var query = Message()
    query.questions = [Question(name: try DNSName("www.dot.test."), type: .a)]
    query.edns = EDNS(options: [EDNSOption(code: EDNSOption.paddingCode, data: Array(repeating: 0, count: 300))])
    let wire = Self.paddedWire(query)
    #expect(wire.count == 128)
  }
}

/// The stable problem names for OpenSSL verification results (OE-26: informational only).
@Suite struct DoTCertificateProblemTests {
  @Test func verifyResultsMapToProblemNames() {
    #expect(CertificateEvaluator.problem(forVerifyResult: 10) == "expired")
    #expect(CertificateEvaluator.problem(forVerifyResult: 9) == "not-yet-valid")
    #expect(CertificateEvaluator.problem(forVerifyResult: 18) == "self-signed")
    #expect(CertificateEvaluator.problem(forVerifyResult: 19) == "self-signed")
    #expect(CertificateEvaluator.problem(forVerifyResult: 20) == "untrusted-issuer")
    #expect(CertificateEvaluator.problem(forVerifyResult: 62) == "wrong-name")
    #expect(CertificateEvaluator.problem(forVerifyResult: 64) == "wrong-name")
    #expect(CertificateEvaluator.problem(forVerifyResult: 7).hasPrefix("other:"))
  }
}
