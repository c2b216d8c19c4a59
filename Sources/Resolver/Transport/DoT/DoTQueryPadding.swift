/// EDNS(0) Padding for encrypted queries (RFC 7830, RFC 8467 §4.1 block padding; T-40).
enum DoTQueryPadding {
  /// Block size for queries (RFC 8467 §4.1).
  static let blockSize = 128

  /// Serializes `query` with a Padding option (code 12) added last so the message length is a multiple
  /// of `blockSize`. Adds EDNS if the query has none and replaces any padding already present.
  static func paddedWire(_ query: Message) -> [UInt8] {
    var message = query
    var edns = message.edns ?? EDNS()
    edns.options.removeAll { $0.code == EDNSOption.paddingCode }
    message.edns = edns
    // The option's 4-octet header counts towards the padded length.
    let unpadded = message.serialize().count + 4
    let fill = (blockSize - unpadded % blockSize) % blockSize
    edns.options.append(EDNSOption(code: EDNSOption.paddingCode, data: [UInt8](repeating: 0, count: fill)))
    message.edns = edns
    return message.serialize()
  }
}
