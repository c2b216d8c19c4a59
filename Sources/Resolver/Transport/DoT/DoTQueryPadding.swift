/// EDNS(0) Padding for encrypted queries (RFC 7830, RFC 8467 §4.1 block padding; T-40).
enum DoTQueryPadding {
  /// Block size for queries (RFC 8467 §4.1).
  static let blockSize = 128

  /// `query` as a stream transport sends it (RFC 7766 for DoT, RFC 9250 §4.2 for DoQ): with message
  /// ID `id`, behind its 2-octet length prefix, its EDNS options but any padding or edns-tcp-keepalive
  /// (RFC 7828), then an empty keepalive request when `requestingKeepalive` (DoT, T-20; DoQ never
  /// sends one, T-33), then a Padding option (code 12) to a multiple of `blockSize` (T-40, T-35).
  /// A query without EDNS gets it.
  ///
  /// Written in one buffer from the message as it is: neither the message nor its options are
  /// copied to be changed first (each copy cost five reference counts and the options an
  /// allocation, on every DoT and DoQ query). The queries are Sotto's own (one question, a cookie,
  /// keepalive), far below the 65,535 octets the 16-bit length and RDLENGTH can say.
  static func framedPaddedWire(_ query: Message, id: UInt16, requestingKeepalive: Bool) -> [UInt8] {
    var w = WireWriter(origin: 2)
    w.u16(0)  // the length, patched below
    query.writeHeaderAndQuestions(into: &w, id: id)
    var ends: [Int] = []  // no size limit: no record ends kept
    query.writeRecords(into: &w, ends: &ends)
    // The OPT record last, its RDLENGTH patched once the padding is known.
    let edns = query.edns ?? EDNS()
    Message.writeOPTHead(edns, rdlength: 0, into: &w)
    let rdlengthAt = w.bytes.count - 2
    for o in edns.options where o.code != EDNSOption.paddingCode && o.code != EDNSOption.keepaliveCode {
      w.option(o)
    }
    if requestingKeepalive { w.option(TCPKeepalive.request) }
    // The padding option's 4-octet header counts towards the padded length.
    let fill = (blockSize - (w.bytes.count - 2 + 4) % blockSize) % blockSize
    w.u16(EDNSOption.paddingCode)
    w.u16(UInt16(fill))
    // From a slice of zeros (copied in one go), not `repeatElement` (appended octet by octet).
    w.bytes.append(contentsOf: zeros.prefix(fill))
    w.patchU16(at: rdlengthAt, UInt16(truncatingIfNeeded: w.bytes.count - rdlengthAt - 2))
    w.patchCounts(query.questions.count, query.answers.count, query.authority.count, query.additional.count + 1)
    w.patchU16(at: 0, UInt16(truncatingIfNeeded: w.bytes.count - 2))
    return w.bytes
  }

  /// A block of zeros, the most padding a query takes (`fill` < `blockSize`).
  private static let zeros = [UInt8](repeating: 0, count: blockSize)
}
