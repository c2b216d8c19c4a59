import Testing

@testable import Resolver

/// The DNS side of a DoT session without TLS or sockets: framing, IDs, matching, deadlines, and how
/// a session's end is classified. Completions are plain names here.
@Suite struct DoTQueryBookTests {
  private typealias Book = DoTQueryBook<String>

  /// The query `add` framed, unframed and parsed.
  private func unframe(_ framed: [UInt8]?) throws -> (wire: [UInt8], message: Message) {
    let bytes = try #require(framed)
    try #require(bytes.count >= 2)
    let length = Int(bytes[0]) << 8 | Int(bytes[1])
    try #require(bytes.count == length + 2, "one length prefix and one whole message (T-11)")
    let wire = Array(bytes[2...])
    return (wire, try Message.parse(wire))
  }

  private func reply(to query: Message, id: UInt16? = nil, name: String? = nil, tc: Bool = false) throws -> [UInt8] {
    var response = query
    response.header.qr = true
    response.header.tc = tc
    if let id { response.header.id = id }
    if let name { response.questions = [Question(name: try DNSName(name), type: .a)] }
    response.edns = nil
    return response.serialize()
  }

  @Test func responsesAreMatchedByIDAndQuestionAndGetTheCallersID() throws {
    var book = Book()
    let (wire, sent) = try unframe(
      book.add(try dotQuery("www.dot.test.", .a, id: 0xBEEF), deadline: 100, completion: "q"))
    #expect(wire.count % 128 == 0, "padded (T-40)")
    // Wrong ID, then the right ID with another question: both dropped (T-13).
    guard case .unmatched = book.receive(try reply(to: sent, id: sent.header.id &+ 1)) else {
      Issue.record("a reply with another ID was taken")
      return
    }
    guard case .unmatched = book.receive(try reply(to: sent, name: "other.dot.test.")) else {
      Issue.record("a reply to another question was taken")
      return
    }
    #expect(book.count == 1)
    guard case .answered(let completion, .success(let response)) = book.receive(try reply(to: sent)) else {
      Issue.record("the matching reply was not taken")
      return
    }
    #expect(completion == "q")
    #expect(response.header.id == 0xBEEF && response.header.qr)
    #expect(book.isEmpty)
  }

  @Test func shortAndMalformedRepliesAreTold() throws {
    var book = Book()
    let sent = try unframe(book.add(try dotQuery("www.dot.test.", .a), deadline: 100, completion: "q")).message
    guard case .short = book.receive([0x12]) else {
      Issue.record("a one-octet message was not reported short")
      return
    }
    // Header (ID, QR, 1 question, 1 answer), the question, then an answer whose owner points at itself.
    var wire: [UInt8] = [UInt8(sent.header.id >> 8), UInt8(sent.header.id & 0xFF), 0x84, 0, 0, 1, 0, 1, 0, 0, 0, 0]
    let question: [UInt8] =
      [3] + Array("www".utf8) + [3] + Array("dot".utf8) + [4] + Array("test".utf8) + [0, 0, 1, 0, 1]
    wire += question
    let owner = 12 + question.count
    wire += [0xC0 | UInt8(owner >> 8), UInt8(owner & 0xFF), 0, 1, 0, 1, 0, 0, 1, 44, 0, 4, 192, 0, 2, 66]
    guard case .answered("q", .failure(.malformed)) = book.receive(wire) else {
      Issue.record("a compression loop in the answer did not fail the query as malformed")
      return
    }
    #expect(book.isEmpty)
  }

  @Test func truncatedResponseFailsTheQuery() throws {
    var book = Book()
    let sent = try unframe(book.add(try dotQuery("www.dot.test.", .a), deadline: 100, completion: "q")).message
    guard case .answered("q", .failure(.truncated)) = book.receive(try reply(to: sent, tc: true)) else {
      Issue.record("TC=1 over DoT did not fail the query (T-19)")
      return
    }
  }

  @Test func eachQueryExpiresAtItsOwnDeadline() throws {
    var book = Book()
    let long = try unframe(book.add(try dotQuery("long.dot.test.", .a), deadline: 30, completion: "long")).message
    _ = book.add(try dotQuery("short.dot.test.", .a), deadline: 2, completion: "short")
    _ = book.add(try dotQuery("third.dot.test.", .a), deadline: 5, completion: "third")
    #expect(book.nextDeadline == 2)
    #expect(book.expire(now: 1).isEmpty)
    #expect(book.expire(now: 3) == ["short"])
    #expect(book.nextDeadline == 5)
    #expect(book.expire(now: 6) == ["third"])
    guard case .answered("long", .success) = book.receive(try reply(to: long)) else {
      Issue.record("the query still outstanding was not answered")
      return
    }
    #expect(book.nextDeadline == nil && book.isEmpty)
  }

  @Test func idsAreUniqueAmongOutstandingQueries() throws {
    var book = Book()
    var ids = Set<UInt16>()
    for i in 0..<500 {
      ids.insert(
        try unframe(book.add(try dotQuery("www.dot.test.", .a, id: 1), deadline: 9, completion: "\(i)")).message.header
          .id)
    }
    #expect(ids.count == 500)
    #expect(Set(book.removeAll()).count == 500)
    #expect(book.isEmpty)
  }

  @Test func sessionEndIsCleanOnlyWhenNothingWasOutstandingOrWeClosedIt() {
    #expect(
      EncryptedFailure.dotSessionEnd(failure: nil, closedLocally: false, outstanding: true)
        == .resetWithQueriesOutstanding)
    #expect(EncryptedFailure.dotSessionEnd(failure: nil, closedLocally: false, outstanding: false) == .cleanClose)
    #expect(EncryptedFailure.dotSessionEnd(failure: nil, closedLocally: true, outstanding: true) == .cleanClose)
    #expect(
      EncryptedFailure.dotSessionEnd(failure: .tlsAlert("decode error"), closedLocally: false, outstanding: false)
        == .tlsAlert("decode error"))
    #expect(
      EncryptedFailure.dotSessionEnd(failure: .alpnMismatch("h2"), closedLocally: true, outstanding: true)
        == .alpnMismatch("h2"))
  }
}
