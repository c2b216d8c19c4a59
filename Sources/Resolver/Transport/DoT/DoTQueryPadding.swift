/// EDNS(0) Padding for encrypted queries (RFC 7830, RFC 8467 §4.1 block padding; T-40).
enum DoTQueryPadding {
  /// Block size for queries (RFC 8467 §4.1).
  static let blockSize = 128

  /// Serializes `query` with a Padding option (code 12) added last so the message length is a multiple
  /// of `blockSize`. Adds EDNS if the query has none and replaces any padding already present.
  ///
  /// The message is serialized once: the OPT record is always written last, so the padding option is
  /// appended to the wire and the OPT RDLENGTH patched (the bytes equal serializing with the option).
  static func paddedWire(_ query: Message) -> [UInt8] {
    var message = query
    var edns = message.edns ?? EDNS()
    edns.options.removeAll { $0.code == EDNSOption.paddingCode }
    message.edns = edns
    var wire = message.serialize()
    let optionBytes = edns.options.reduce(0) { $0 + 4 + $1.data.count }
    // The option's 4-octet header counts towards the padded length.
    let fill = (blockSize - (wire.count + 4) % blockSize) % blockSize
    let rdlengthAt = wire.count - optionBytes - 2
    let newRDLength = optionBytes + 4 + fill
    // The OPT record: root name, TYPE 41, CLASS, TTL, RDLENGTH, then the options.
    guard rdlengthAt >= 9, newRDLength <= 0xFFFF, wire[rdlengthAt - 9] == 0,
      wire[rdlengthAt - 8] == 0, wire[rdlengthAt - 7] == UInt8(RRType.opt.rawValue),
      Int(wire[rdlengthAt]) << 8 | Int(wire[rdlengthAt + 1]) == optionBytes
    else { return paddedWireTwoPass(message, edns: edns) }
    wire[rdlengthAt] = UInt8(truncatingIfNeeded: newRDLength >> 8)
    wire[rdlengthAt + 1] = UInt8(truncatingIfNeeded: newRDLength)
    wire.reserveCapacity(wire.count + 4 + fill)
    wire.append(contentsOf: [
      UInt8(EDNSOption.paddingCode >> 8), UInt8(truncatingIfNeeded: EDNSOption.paddingCode),
      UInt8(truncatingIfNeeded: fill >> 8), UInt8(truncatingIfNeeded: fill),
    ])
    wire.append(contentsOf: repeatElement(0, count: fill))
    return wire
  }

  /// The reference construction (serialize, measure, serialize again with the option); used when the
  /// wire does not end with the OPT record as expected (options over 65535 octets).
  static func paddedWireTwoPass(_ message: Message, edns: EDNS) -> [UInt8] {
    var message = message
    var edns = edns
    let unpadded = message.serialize().count + 4
    let fill = (blockSize - unpadded % blockSize) % blockSize
    edns.options.append(EDNSOption(code: EDNSOption.paddingCode, data: [UInt8](repeating: 0, count: fill)))
    message.edns = edns
    return message.serialize()
  }
}
