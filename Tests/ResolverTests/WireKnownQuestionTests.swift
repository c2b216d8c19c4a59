import Testing

@testable import Resolver

/// `Message.parse(_:knownQuestionName:)`: a reply's question that echoes the query's name reuses
/// that name instead of copying it, and anything else parses exactly as without it.
@Suite struct WireKnownQuestionTests {
  /// A referral-shaped NXDOMAIN reply for `qname`, compressed as a server writes it.
  func reply(_ qname: String) -> [UInt8] {
    var m = Message()
    m.header.id = 0x1234
    m.header.qr = true
    m.header.aa = true
    m.header.rcodeLow = 3
    m.questions = [Question(name: wn(qname), type: .a)]
    m.authority = [
      wrr(
        "zone.test.", .soa,
        .soa(
          mname: wn("ns1.zone.test."), rname: wn("hostmaster.zone.test."), serial: 1, refresh: 2,
          retry: 3,
          expire: 4, minimum: 5))
    ]
    m.edns = EDNS(udpPayloadSize: 1232)
    return m.serialize()
  }

  @Test func anEchoedQuestionReusesTheQueryNameAndParsesTheSame() throws {
    let bytes = reply("p123.zone.test.")
    let known = wn("p123.zone.test.")
    let plain = try Message.parse(bytes)
    let reused = try Message.parse(bytes, knownQuestionName: known)
    #expect(reused == plain)
    #expect(reused.authority.first?.name.description == "zone.test.")
    // The question is the query name's own storage, not a copy.
    let same = reused.questions[0].name.storage.withUnsafeBufferPointer { a in
      known.storage.withUnsafeBufferPointer { b in a.baseAddress == b.baseAddress }
    }
    #expect(same)
  }

  @Test func aQuestionInAnotherCaseKeepsTheServersCase() throws {
    let bytes = reply("P123.Zone.TEST.")
    let reused = try Message.parse(bytes, knownQuestionName: wn("p123.zone.test."))
    #expect(reused.questions[0].name.description == "P123.Zone.TEST.")
    #expect(reused == (try Message.parse(bytes)))
  }

  @Test func aLongerOrShorterQuestionIsReadFromTheWire() throws {
    let bytes = reply("www.p123.zone.test.")
    for hint in ["p123.zone.test.", "www.p123.zone.", "www.p123.zone.test.x.", "."] {
      let reused = try Message.parse(bytes, knownQuestionName: wn(hint))
      #expect(reused.questions[0].name.description == "www.p123.zone.test.")
      #expect(reused == (try Message.parse(bytes)))
    }
  }

  @Test func aCutQuestionFailsAsItDoesWithoutTheHint() {
    let bytes = reply("p123.zone.test.")
    // Header (12) plus part of the question name.
    for cut in [13, 17, 22, 28] {
      let prefix = Array(bytes.prefix(cut))
      let withHint = #expect(throws: WireError.self) {
        try Message.parse(prefix, knownQuestionName: wn("p123.zone.test."))
      }
      let without = #expect(throws: WireError.self) { try Message.parse(prefix) }
      #expect(withHint != nil && withHint == without)
    }
  }

  /// An owner that is nothing but a pointer to a name read before (answers pointing at the
  /// question) shares that name's storage: one array for the name however many records repeat it.
  @Test func anOwnerPointingAtTheQuestionSharesItsStorage() throws {
    var m = Message()
    m.header.qr = true
    m.questions = [Question(name: wn("www.zone.test."), type: .a)]
    m.answers = [
      wrr("www.zone.test.", .a, .a(try #require(IPv4Address("192.0.2.1")))),
      wrr("www.zone.test.", .a, .a(try #require(IPv4Address("192.0.2.2")))),
    ]
    let bytes = m.serialize()
    for known in [wn("www.zone.test."), nil] {
      let parsed = try Message.parse(bytes, knownQuestionName: known)
      #expect(parsed == m)
      let question = parsed.questions[0].name
      for answer in parsed.answers {
        let shared = answer.name.storage.withUnsafeBufferPointer { a in
          question.storage.withUnsafeBufferPointer { b in a.baseAddress == b.baseAddress }
        }
        #expect(shared)
      }
    }
  }
}
