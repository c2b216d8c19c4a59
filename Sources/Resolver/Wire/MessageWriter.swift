extension Message {
  /// Writes the message with name compression. When `maxSize` is given and the message does not
  /// fit, whole records are dropped from the end (additional, then authority, then answer) and TC is set.
  public func serialize(maxSize: Int? = nil) -> [UInt8] {
    // Most messages fit: write them without keeping record ends (an array per message), and
    // again with them only when the whole does not.
    let whole = serialize(keepingEndsFor: nil)
    guard let maxSize, whole.count > maxSize else { return whole }
    return serialize(keepingEndsFor: maxSize)
  }

  /// The message, cut to `maxSize` when given (whole records only; TC set when an answer or
  /// authority record was left out).
  private func serialize(keepingEndsFor maxSize: Int?) -> [UInt8] {
    var w = WireWriter()
    writeHeaderAndQuestions(into: &w, id: header.id)
    // Records are written section by section, not from a concatenated copy (that copied every
    // record), and the record ends are kept only when a size limit may drop some.
    let total = answers.count + authority.count + additional.count
    // ends[k] = length of the message holding the first k records.
    var ends: [Int] = []
    if maxSize != nil {
      ends.reserveCapacity(total + 1)
      ends.append(w.bytes.count)
    }
    writeRecords(into: &w, ends: &ends)
    var kept = total
    // The OPT record's RDATA length: its options, written straight into the message below.
    let optLength = edns.map { $0.options.reduce(0) { $0 + 4 + $1.data.count } }
    if let maxSize {
      let optSize = optLength.map { 11 + $0 } ?? 0
      while kept > 0, ends[kept] + optSize > maxSize { kept -= 1 }
    }
    if kept < total { w.bytes.removeSubrange(ends[kept]...) }
    if let optLength, let edns {
      Message.writeOPTHead(edns, rdlength: optLength, into: &w)
      for o in edns.options { w.option(o) }
    }
    let an = min(kept, answers.count)
    let ns = min(max(kept - answers.count, 0), authority.count)
    let ar = max(kept - answers.count - authority.count, 0) + (edns == nil ? 0 : 1)
    if kept < answers.count + authority.count { w.bytes[2] |= 0x02 }
    w.patchCounts(questions.count, an, ns, ar)
    return w.bytes
  }

  /// Writes the header with message ID `id` and zero counts (the caller patches them), then the
  /// questions.
  func writeHeaderAndQuestions(into w: inout WireWriter, id: UInt16) {
    w.u16(id)
    var flags: UInt16 = UInt16(header.opcode & 0x0F) << 11 | UInt16(header.rcodeLow & 0x0F)
    if header.qr { flags |= 0x8000 }
    if header.aa { flags |= 0x0400 }
    if header.tc { flags |= 0x0200 }
    if header.rd { flags |= 0x0100 }
    if header.ra { flags |= 0x0080 }
    if header.z { flags |= 0x0040 }
    if header.ad { flags |= 0x0020 }
    if header.cd { flags |= 0x0010 }
    w.u16(flags)
    for _ in 0..<4 { w.u16(0) }  // counts, patched by the caller
    for q in questions {
      w.name(q.name, compress: true)
      w.u16(q.type.rawValue)
      w.u16(q.qclass.rawValue)
    }
  }

  /// Writes the OPT pseudo-record up to its options (RFC 6891 §6.1.2): root name, TYPE 41, the
  /// payload size as CLASS, the extended RCODE, version and DO bit as TTL, then `rdlength` (capped
  /// at 65,535; the caller may patch it).
  static func writeOPTHead(_ edns: EDNS, rdlength: Int, into w: inout WireWriter) {
    w.u8(0)
    w.u16(RRType.opt.rawValue)
    w.u16(edns.udpPayloadSize)
    var ttl = UInt32(edns.extendedRCode) << 24 | UInt32(edns.version) << 16
    if edns.dnssecOK { ttl |= 0x8000 }
    w.u32(ttl)
    w.u16(UInt16(min(rdlength, 0xFFFF)))
  }

  /// Writes the answer, authority and additional records; when `ends` is tracked (not empty),
  /// appends the message length after each record.
  func writeRecords(into w: inout WireWriter, ends: inout [Int]) {
    for section in 0..<3 {
      Message.write(section == 0 ? answers : section == 1 ? authority : additional, into: &w, ends: &ends)
    }
  }

  private static func write(_ rr: ResourceRecord, into w: inout WireWriter) {
    w.name(rr.name, compress: true)
    w.u16(rr.type.rawValue)
    w.u16(rr.rrclass.rawValue)
    w.u32(rr.ttl)
    let lenAt = w.bytes.count
    w.u16(0)
    rr.rdata.encode(into: &w, compress: RData.compressesNames(rr.type))
    w.patchU16(at: lenAt, UInt16(truncatingIfNeeded: w.bytes.count - lenAt - 2))
  }

  /// Writes the records of one section; when `ends` is tracked (not empty), appends the message
  /// length after each record.
  private static func write(_ records: [ResourceRecord], into w: inout WireWriter, ends: inout [Int]) {
    for i in records.indices {
      write(records[i], into: &w)
      if !ends.isEmpty { ends.append(w.bytes.count) }
    }
  }
}
