/// DNS message parser: any bytes either throw a WireError or give a message that
/// re-serialises and re-parses to the same message, and whose wire form is then stable.
@Sendable func fuzzMessage(_ bytes: [UInt8]) {
  guard let message = try? Message.parse(bytes) else { return }
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
