/// DNS message parser: any bytes either throw a WireError or give a message that
/// re-serialises and re-parses to the same message, and whose wire form is then stable.
/// Sharing repeated names (and reusing a known question name) must not change what is parsed,
/// octet for octet: a wrongly shared name would survive the round trip, which shares the same way.
@Sendable func fuzzMessage(_ bytes: [UInt8]) {
  let plain = try? Message.parse(bytes, knownQuestionName: nil, sharingNames: false)
  guard let message = try? Message.parse(bytes) else {
    if plain != nil { fuzzFailure("parse failed only when sharing names") }
    return
  }
  guard let plain else { fuzzFailure("parse failed only when not sharing names") }
  guard exactly(plain) == exactly(message) else {
    fuzzFailure("sharing names changed the parse:\n\(exactly(plain))\n\(exactly(message))")
  }
  if let asked = message.questions.first?.name {
    guard let reused = try? Message.parse(bytes, knownQuestionName: asked), exactly(reused) == exactly(message)
    else { fuzzFailure("reusing the known question name changed the parse") }
    // The known name is reused only when it matches octet for octet: one in another case must
    // leave the question as the bytes spell it.
    let flipped = DNSName(
      validWire: asked.storage.map { b in (0x41...0x5A).contains(b) || (0x61...0x7A).contains(b) ? b ^ 0x20 : b })
    guard let other = try? Message.parse(bytes, knownQuestionName: flipped), exactly(other) == exactly(plain)
    else { fuzzFailure("a known question name in another case changed the parse") }
  }
  let wire = message.serialize()
  let again: Message
  do {
    again = try Message.parse(wire)
  } catch {
    fuzzFailure("re-parse of a serialised message failed: \(error)")
  }
  guard again == message else { fuzzFailure("parse(serialize(m)) != m:\n\(message)\n\(again)") }
  guard again.serialize() == wire else { fuzzFailure("serialised form not stable after one round trip") }
}

/// Every field of `m`, names with their exact case (`==` on names ignores case).
private func exactly(_ m: Message) -> String { String(reflecting: m) }
