/// EDNS(0) Padding for encrypted queries (RFC 7830, RFC 8467 §4.1 block padding; T-40).
enum DoTQueryPadding {
  /// Block size for queries (RFC 8467 §4.1).
  static let blockSize = 128

  /// Serializes `query` with a Padding option (code 12) added last so the message length is a multiple
  /// of `blockSize`. Adds EDNS if the query has none and replaces any padding already present.
  static func paddedWire(_ query: Message) -> [UInt8] {
    Array(framedPaddedWire(query).dropFirst(2))
  }

  /// `paddedWire` behind its 2-octet length prefix (RFC 7766 for DoT, RFC 9250 §4.2 for DoQ), built
  /// in one buffer.
  ///
  /// The message is serialized once: the OPT record is always written last, so the padding option is
  /// appended to the wire and the OPT RDLENGTH patched (the bytes equal serializing with the option).
  static func framedPaddedWire(_ query: Message) -> [UInt8] {
    var message = query
    var edns = message.edns ?? EDNS()
    // `removeAll(where:)` copies a shared array even when it removes nothing: the usual query
    // has no padding yet, so look first.
    if edns.options.contains(where: { $0.code == EDNSOption.paddingCode }) {
      edns.options.removeAll { $0.code == EDNSOption.paddingCode }
    }
    message.edns = edns
    let wire = message.serialize()
    let optionBytes = edns.options.reduce(0) { $0 + 4 + $1.data.count }
    // The option's 4-octet header counts towards the padded length.
    let fill = (blockSize - (wire.count + 4) % blockSize) % blockSize
    let rdlengthAt = wire.count - optionBytes - 2
    let newRDLength = optionBytes + 4 + fill
    // The OPT record: root name, TYPE 41, CLASS, TTL, RDLENGTH, then the options.
    guard rdlengthAt >= 9, newRDLength <= 0xFFFF, wire[rdlengthAt - 9] == 0,
      wire[rdlengthAt - 8] == 0, wire[rdlengthAt - 7] == UInt8(RRType.opt.rawValue),
      Int(wire[rdlengthAt]) << 8 | Int(wire[rdlengthAt + 1]) == optionBytes
    else {
      let padded = paddedWireTwoPass(message, edns: edns)
      return [UInt8(truncatingIfNeeded: padded.count >> 8), UInt8(truncatingIfNeeded: padded.count)] + padded
    }
    let total = wire.count + 4 + fill
    var out: [UInt8] = []
    out.reserveCapacity(2 + total)
    out.append(UInt8(truncatingIfNeeded: total >> 8))
    out.append(UInt8(truncatingIfNeeded: total))
    out.append(contentsOf: wire)
    out[2 + rdlengthAt] = UInt8(truncatingIfNeeded: newRDLength >> 8)
    out[2 + rdlengthAt + 1] = UInt8(truncatingIfNeeded: newRDLength)
    out.append(UInt8(EDNSOption.paddingCode >> 8))
    out.append(UInt8(truncatingIfNeeded: EDNSOption.paddingCode))
    out.append(UInt8(truncatingIfNeeded: fill >> 8))
    out.append(UInt8(truncatingIfNeeded: fill))
    // From a slice of zeros (copied in one go), not `repeatElement` (appended octet by octet).
    out.append(contentsOf: zeros.prefix(fill))
    return out
  }

  /// A block of zeros, the most padding a query takes (`fill` < `blockSize`).
  private static let zeros = [UInt8](repeating: 0, count: blockSize)

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
