import Testing

@testable import Resolver

/// EDNS(0) Padding on DoT queries (T-40, RFC 8467 §4.1).
@Suite struct DoTPaddingTests {
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
      let wire = DoTQueryPadding.paddedWire(query)
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

  /// The one-pass construction writes exactly the bytes of serializing with the option in place.
  @Test(arguments: [
    "a.", "www.dot.test.", "a-much-longer-label-for-padding.example.test.", String(repeating: "x.", count: 60),
  ])
  func onePassEqualsTwoPass(_ name: String) throws {
    let cookie = EDNSOption(code: EDNSOption.cookieCode, data: Array(repeating: 9, count: 8))
    let oldPadding = EDNSOption(code: EDNSOption.paddingCode, data: Array(repeating: 0, count: 77))
    for options in [nil, [], [cookie], [oldPadding, cookie], [cookie, oldPadding]] as [[EDNSOption]?] {
      var query = Message()
      query.header.id = 0x1234
      query.header.rd = false
      query.questions = [Question(name: try DNSName(name), type: .aaaa)]
      if let options { query.edns = EDNS(udpPayloadSize: 1232, options: options) }
      var edns = query.edns ?? EDNS()
      edns.options.removeAll { $0.code == EDNSOption.paddingCode }
      var stripped = query
      stripped.edns = edns
      let reference = DoTQueryPadding.paddedWireTwoPass(stripped, edns: edns)
      #expect(DoTQueryPadding.paddedWire(query) == reference)
      // The framed form is the same bytes behind their 2-octet length.
      #expect(
        DoTQueryPadding.framedPaddedWire(query)
          == [UInt8(reference.count >> 8), UInt8(reference.count & 0xFF)] + reference)
    }
  }

  @Test func existingPaddingIsReplaced() throws {
    var query = Message()
    query.questions = [Question(name: try DNSName("www.dot.test."), type: .a)]
    query.edns = EDNS(options: [EDNSOption(code: EDNSOption.paddingCode, data: Array(repeating: 0, count: 300))])
    let wire = DoTQueryPadding.paddedWire(query)
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
