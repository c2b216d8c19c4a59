import Testing

@testable import Resolver

@Suite struct WireEDNSTests {
  private func bigResponse(edns: Bool) -> Message {
    var m = Message()
    m.header.qr = true
    m.questions = [Question(name: wn("big.example."), type: .a)]
    m.answers = (1...10).map { wrr("big.example.", .a, .a(IPv4Address(octets: [192, 0, 2, UInt8($0)])!)) }
    m.authority = (1...4).map { wrr("example.", .ns, .ns(wn("ns\($0).example."))) }
    m.additional = (1...4).map { wrr("ns\($0).example.", .a, .a(IPv4Address(octets: [198, 51, 100, UInt8($0)])!)) }
    if edns {
      m.edns = EDNS(udpPayloadSize: 1232, options: [EDNSOption(code: EDNSOption.cookieCode, data: Array(1...8))])
    }
    return m
  }

  @Test func edNSFieldsRoundTrip() throws {
    var m = Message()
    m.questions = [Question(name: wn("example."), type: .dnskey)]
    var e = EDNS(
      udpPayloadSize: 4096, options: [EDNSOption(code: 10, data: Array(1...8)), EDNSOption(code: 12, data: [])])
    e.dnssecOK = true
    e.version = 0
    e.extendedRCode = 0x12
    m.edns = e
    let bytes = m.serialize()
    // OPT at the end: root owner, type 41, class 4096, TTL 0x12 00 80 00.
    #expect(Array(bytes[(12 + 13)..<(12 + 13 + 9)]) == [0, 0, 41, 0x10, 0x00, 0x12, 0x00, 0x80, 0x00])
    #expect(bytes[11] == 1)  // ARCOUNT counts OPT
    let back = try Message.parse(bytes)
    #expect(back == m)
    #expect(back.additional.isEmpty)
    #expect(back.edns?.udpPayloadSize == 4096)
    #expect(back.edns?.dnssecOK == true)
    #expect(back.edns?.extendedRCode == 0x12)
    #expect(back.edns?.options.count == 2)
  }

  @Test func versionRoundTrips() throws {
    var m = Message()
    var e = EDNS()
    e.version = 1
    m.edns = e
    #expect(try Message.parse(m.serialize()).edns?.version == 1)
  }

  @Test func extendedRCode() throws {
    var m = Message()
    m.rcode = .badVers
    #expect(m.header.rcodeLow == 0)
    #expect(m.edns?.extendedRCode == 1)
    let back = try Message.parse(m.serialize())
    #expect(back.rcode == .badVers)
    #expect(back.rcode.description == "BADVERS")
    m.rcode = .nxDomain
    #expect(try Message.parse(m.serialize()).rcode == .nxDomain)
    var plain = Message()
    plain.rcode = .servFail
    #expect(plain.edns == nil)
    #expect(try Message.parse(plain.serialize()).rcode == .servFail)
  }

  @Test func fitsUnchangedWhenSmallEnough() throws {
    let m = bigResponse(edns: true)
    let full = m.serialize()
    #expect(m.serialize(maxSize: full.count) == full)
    #expect(try Message.parse(full) == m)
  }

  @Test func dropsAdditionalFirstWithoutTC() throws {
    let m = bigResponse(edns: true)
    let full = m.serialize()
    let limited = m.serialize(maxSize: full.count - 1)
    #expect(limited.count <= full.count - 1)
    let back = try Message.parse(limited)
    #expect(back.header.tc == false)
    #expect(back.answers == m.answers)
    #expect(back.authority == m.authority)
    #expect(back.additional == Array(m.additional.prefix(3)))
    #expect(back.edns == m.edns)  // OPT always kept
  }

  @Test func dropsAuthorityThenAnswersWithTC() throws {
    let m = bigResponse(edns: true)
    let noAdditional = {
      var c = m
      c.additional = []
      return c.serialize()
    }()
    let back = try Message.parse(m.serialize(maxSize: noAdditional.count - 1))
    #expect(back.header.tc)
    #expect(back.additional.isEmpty)
    #expect(back.authority.count == 3)
    #expect(back.answers.count == 10)
    #expect(back.edns != nil)

    let tiny = m.serialize(maxSize: 100)
    #expect(tiny.count <= 100)
    let t = try Message.parse(tiny)
    #expect(t.header.tc)
    #expect(t.authority.isEmpty && t.additional.isEmpty)
    #expect(t.answers.count < 10)
    #expect(t.edns == m.edns)
    #expect(t.questions == m.questions)
  }

  @Test func truncationWithoutEDNS() throws {
    let m = bigResponse(edns: false)
    for limit in stride(from: 30, through: 512, by: 7) {
      let bytes = m.serialize(maxSize: limit)
      let back = try Message.parse(bytes)  // counts always match the content
      #expect(back.edns == nil)
      if bytes.count > limit {
        // Only the header and question are left and even they do not fit.
        #expect(back.answers.isEmpty)
      }
      let droppedAnswerOrAuthority = back.answers.count < 10 || back.authority.count < 4
      #expect(back.header.tc == droppedAnswerOrAuthority)
    }
  }

  @Test func existingTCIsKept() throws {
    var m = bigResponse(edns: false)
    m.header.tc = true
    #expect(try Message.parse(m.serialize()).header.tc)
  }
}
