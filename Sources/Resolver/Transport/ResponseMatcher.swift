/// RFC 5452 §9.1: a response is accepted only if its ID and question match the query.
/// Source address and port are enforced by the connected socket.
struct ResponseMatcher: Sendable {
  let id: UInt16
  let question: Question?
  /// The COOKIE option the query carried, for the DNS Cookie check; not the whole query,
  /// whose copy cost five reference counts per query and a destroy per answer.
  let sentCookie: [UInt8]?
  /// Over TCP a reply without a cookie is taken even from a server that sent one before (it may
  /// have stopped: another anycast node, a downgrade); it cannot be blind-spoofed there.
  let acceptsMissingCookie: Bool

  /// `id`: the ID the query goes out with, when not its own (a DoT query's per-connection ID).
  init(query: borrowing Message, id: UInt16? = nil, acceptsMissingCookie: Bool = false) {
    self.id = id ?? query.header.id
    question = query.questions.first
    sentCookie = DNSCookieJar.cookie(in: query)
    self.acceptsMissingCookie = acceptsMissingCookie
  }

  /// The parsed response if it answers our query, nil for a mismatch (counted as spoof-suspect by callers).
  func match(_ bytes: [UInt8]) -> Result<Message, WireError>? {
    // Check the ID before paying for a full parse.
    guard bytes.count >= 2, UInt16(bytes[0]) << 8 | UInt16(bytes[1]) == id else { return nil }
    var message = Message()
    do {
      try Message.parse(bytes, knownQuestionName: question?.name, into: &message)
    } catch {
      return .failure(error)
    }
    guard message.header.qr else { return nil }
    if let q = question {
      // A FORMERR/NOTIMP reply may legitimately carry no question.
      if let rq = message.questions.first {
        guard rq.name == q.name, rq.type == q.type, rq.qclass == q.qclass else { return nil }
      } else if message.rcode != .formErr && message.rcode != .notImp {
        return nil
      }
    }
    // a reply carrying a COOKIE that is not our client cookie did not come from our query.
    guard DNSCookieJar.echoes(sentCookie, in: message) else {
      // None at all from a server that sent one before: RFC 7873 §5.3 discards it over UDP; the
      // caller asks again over TCP, so a server that stopped is not lost for good.
      guard DNSCookieJar.cookie(in: message) == nil else { return nil }
      return acceptsMissingCookie ? .success(consume message) : .failure(.missingCookie)
    }
    return .success(consume message)
  }
}
