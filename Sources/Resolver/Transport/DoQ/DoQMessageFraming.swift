/// RFC 9250 §4.2 framing of one DoQ transaction: the query with Message ID 0, EDNS(0) padding to a
/// multiple of 128 octets (§5.4, T-35) and a 2-octet length prefix; the response checked likewise.
enum DoQMessageFraming {
  /// The bytes to send on a fresh stream (FIN follows). Any edns-tcp-keepalive option is removed (T-33).
  static func queryStream(_ query: Message) -> [UInt8] {
    DoTQueryPadding.framedPaddedWire(query, id: 0, requestingKeepalive: false)  // T-26: ID 0
  }

  /// Parses everything the server sent on a stream: exactly one length-prefixed message with ID 0 that
  /// answers `query` (T-30). Any deviation is `.malformed`; the stream is the correlation, not the ID.
  /// The message is parsed from `bytes` with the prefix shifted out in place (the stream's bytes
  /// are the caller's to give up: no copy), into the result, and the query's name is reused for
  /// the echoed question.
  static func response(_ bytes: consuming [UInt8], to query: borrowing Message) -> Result<Message, WireError> {
    var bytes = bytes
    guard bytes.count >= 2 else { return .failure(.truncated(offset: bytes.count)) }
    let length = Int(bytes[0]) << 8 | Int(bytes[1])
    guard bytes.count >= 2 + length else { return .failure(.truncated(offset: bytes.count)) }
    guard bytes.count == 2 + length else { return .failure(.trailingData(count: bytes.count - 2 - length)) }
    bytes.removeFirst(2)
    var message = Message()
    do {
      try Message.parse(bytes, knownQuestionName: query.questions.first?.name, into: &message)
    } catch {
      return .failure(error)
    }
    guard message.header.id == 0 else {
      return .failure(.valueOutOfRange("DoQ response Message ID \(message.header.id), not 0"))
    }
    guard message.header.qr else { return .failure(.valueOutOfRange("DoQ response without QR")) }
    if let q = query.questions.first, let rq = message.questions.first,
      rq.name != q.name || rq.type != q.type || rq.qclass != q.qclass
    {
      return .failure(.valueOutOfRange("DoQ response question differs from the query"))
    }
    if message.edns?.options.contains(where: { $0.code == EDNSOption.keepaliveCode }) == true {
      return .failure(.badOPT("edns-tcp-keepalive in a DoQ response"))  // T-33
    }
    return .success(consume message)
  }
}
