/// Presentation-format RDATA parser: the first byte picks the type, the rest is the text.
/// Accepted RDATA prints as text that parses back equal, and survives the wire round trip.
@Sendable func fuzzPresentation(_ bytes: [UInt8]) {
  guard let selector = bytes.first else { return }
  let types = RRType.mnemonics.keys.sorted().map { RRType($0) } + [RRType(99), RRType(1234)]
  let type = types[Int(selector) % types.count]
  let text = String(decoding: bytes.dropFirst(), as: UTF8.self)
  guard let rdata = try? RData.parse(presentation: text, type: type, origin: .root) else { return }
  checkPresentationRoundTrip(rdata, type: type)
}

/// Text and wire round trips for one RDATA value (shared with the zone target).
func checkPresentationRoundTrip(_ rdata: RData, type: RRType) {
  guard type != .opt else { return }
  let printed = rdata.presentation(for: type)
  let reparsed: RData
  do {
    reparsed = try RData.parse(presentation: printed, type: type, origin: .root)
  } catch {
    fuzzFailure("\(type) '\(printed)' does not parse back: \(error)")
  }
  guard reparsed == rdata else { fuzzFailure("\(type) text round trip changed the value: '\(printed)'") }

  var message = Message()
  message.answers = [ResourceRecord(name: .root, type: type, ttl: 1, rdata: rdata)]
  let wire = message.serialize()
  guard let back = try? Message.parse(wire), back.answers.first?.rdata == rdata else {
    fuzzFailure("\(type) '\(printed)' does not survive the wire round trip")
  }
}
