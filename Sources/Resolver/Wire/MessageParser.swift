extension Message {
  /// Parses a whole message; any malformation throws a `WireError`. `knownQuestionName` (the name
  /// a reply should echo) is reused instead of copied when the first question carries it verbatim.
  public static func parse(
    _ bytes: [UInt8], knownQuestionName: DNSName? = nil
  ) throws(WireError) -> Message {
    try parse(bytes, knownQuestionName: knownQuestionName, sharingNames: true)
  }

  /// `parse` with the sharing of repeated names switchable, so the fuzzer can check that sharing
  /// never changes what is parsed.
  static func parse(
    _ bytes: [UInt8], knownQuestionName: DNSName?, sharingNames: Bool
  ) throws(WireError) -> Message {
    var m = Message()
    try parse(bytes, knownQuestionName: knownQuestionName, sharingNames: sharingNames, into: &m)
    return m
  }

  /// `parse` into `m`, a fresh `Message()`: built where the caller keeps it, not copied out of a
  /// local (that copy cost five reference counts and a destroy per parse). After a throw `m` holds
  /// whatever was read before the error.
  static func parse(
    _ bytes: [UInt8], knownQuestionName: DNSName? = nil, sharingNames: Bool = true, into m: inout Message
  ) throws(WireError) {
    var r = WireReader(bytes)
    m.header.id = try r.u16()
    let flags = try r.u16()
    m.header.qr = flags & 0x8000 != 0
    m.header.opcode = UInt8((flags >> 11) & 0x0F)
    m.header.aa = flags & 0x0400 != 0
    m.header.tc = flags & 0x0200 != 0
    m.header.rd = flags & 0x0100 != 0
    m.header.ra = flags & 0x0080 != 0
    m.header.z = flags & 0x0040 != 0
    m.header.ad = flags & 0x0020 != 0
    m.header.cd = flags & 0x0010 != 0
    m.header.rcodeLow = UInt8(flags & 0x000F)
    let qd = Int(try r.u16())
    let an = Int(try r.u16())
    let ns = Int(try r.u16())
    let ar = Int(try r.u16())
    // More names than the question's (an OPT record's root name aside): share repeated names.
    r.recordNames = sharingNames && (an + ns > 0 || ar > 1)
    // Capacity for the counts the header claims, capped by what the bytes left could hold.
    m.answers.reserveCapacity(min(an, r.remaining / 11))
    m.authority.reserveCapacity(min(ns, r.remaining / 11))

    for i in 0..<qd {
      let name: DNSName
      if i == 0, let known = knownQuestionName {
        name = try r.name(reusing: known)
      } else {
        name = try r.name()
      }
      let type = RRType(try r.u16())
      let qclass = RRClass(try r.u16())
      m.questions.append(Question(name: name, type: type, qclass: qclass))
    }
    for _ in 0..<an { m.answers.append(try parseRecord(&r, section: "answer")) }
    for _ in 0..<ns { m.authority.append(try parseRecord(&r, section: "authority")) }
    for _ in 0..<ar {
      let start = r.pos
      let rr = try parseRecord(&r, section: "additional")
      if rr.type == .opt {
        if m.edns != nil { throw .badOPT("more than one OPT record at offset \(start)") }
        m.edns = try parseOPT(rr)
      } else {
        m.additional.append(rr)
      }
    }
    if r.pos != bytes.count { throw .trailingData(count: bytes.count - r.pos) }
  }

  /// Reads one resource record; OPT is returned raw (as `.unknown`) for the caller to interpret.
  private static func parseRecord(
    _ r: inout WireReader, section: String
  ) throws(WireError) -> ResourceRecord {
    let name = try r.name()
    let type = RRType(try r.u16())
    let rrclass = RRClass(try r.u16())
    let ttl = try r.u32()
    let rdlen = Int(try r.u16())
    try r.need(rdlen)
    if type == .opt {
      if section != "additional" { throw .badOPT("OPT record in the \(section) section") }
      if !name.isRoot { throw .badOPT("OPT record owner \(name) is not the root") }
    }
    // The RDATA is read by `r` itself, bounded to it (a copy of the reader would copy the names it
    // remembers, and forget the ones the RDATA adds).
    let rdataStart = r.pos
    let messageEnd = r.end
    r.end = rdataStart + rdlen
    r.rdataType = type.rawValue
    r.rdataStart = rdataStart
    let rdata: RData = type == .opt ? .unknown(r.rest()) : try RData.decode(type: type, from: &r)
    r.end = messageEnd
    r.rdataType = nil
    r.pos = rdataStart + rdlen
    return ResourceRecord(name: name, type: type, rrclass: rrclass, ttl: ttl, rdata: rdata)
  }

  /// Interprets an OPT pseudo-record (RFC 6891 §6.1.2).
  private static func parseOPT(_ rr: ResourceRecord) throws(WireError) -> EDNS {
    var edns = EDNS(udpPayloadSize: rr.rrclass.rawValue)
    edns.extendedRCode = UInt8(rr.ttl >> 24)
    edns.version = UInt8((rr.ttl >> 16) & 0xFF)
    edns.dnssecOK = rr.ttl & 0x8000 != 0
    guard case .unknown(let data) = rr.rdata else { return edns }
    var r = WireReader(data)
    r.rdataType = RRType.opt.rawValue
    while r.remaining > 0 {
      let code = try r.u16()
      let len = Int(try r.u16())
      edns.options.append(EDNSOption(code: code, data: try r.take(len)))
    }
    return edns
  }
}
