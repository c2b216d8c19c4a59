extension RData {
  /// Parses RDATA presentation text for `type` (zone-file style, RFC 3597 `\# len hex` for any type).
  public static func parse(presentation: String, type: RRType, origin: DNSName) throws(WireError) -> RData {
    let tokens = try PresentationLexer.entries(presentation).flatMap(\.tokens)
    return try parse(tokens: tokens, type: type, origin: origin)
  }

  /// Parses RDATA from already-split tokens.
  static func parse(tokens: [PresentationToken], type: RRType, origin: DNSName) throws(WireError) -> RData {
    var f = Fields(tokens: tokens, origin: origin, type: type)
    if let first = tokens.first, !first.quoted, first.text == "\\#" {
      f.index = 1
      let len = Int(try f.number(max: 65535))
      let bytes = try f.hexRest()
      guard bytes.count == len else { throw .badPresentation("\\# length \(len) but \(bytes.count) octets") }
      // RFC 3597 §5: the generic form of a known type must be valid RDATA of that type; an empty
      // MX (`\# 0`) was once kept raw and then failed the wire round trip (fuzz regression).
      var r = WireReader(bytes)
      r.rdataType = type.rawValue
      do {
        return try RData.decode(type: type, from: &r)
      } catch {
        throw .badPresentation("\\# \(len) is not valid \(type) RDATA: \(error)")
      }
    }
    let rdata: RData
    switch type {
    case .a:
      let t = try f.word()
      guard let ip = IPv4Address(t) else { throw .badPresentation("bad IPv4 address '\(t)'") }
      rdata = .a(ip)
    case .aaaa:
      let t = try f.word()
      guard let ip = IPv6Address(t) else { throw .badPresentation("bad IPv6 address '\(t)'") }
      rdata = .aaaa(ip)
    case .ns: rdata = .ns(try f.name())
    case .cname: rdata = .cname(try f.name())
    case .dname: rdata = .dname(try f.name())
    case .ptr: rdata = .ptr(try f.name())
    case .soa:
      rdata = .soa(
        mname: try f.name(), rname: try f.name(), serial: UInt32(try f.number(max: 0xFFFF_FFFF)),
        refresh: try f.ttl(), retry: try f.ttl(), expire: try f.ttl(), minimum: try f.ttl())
    case .mx:
      rdata = .mx(preference: UInt16(try f.number(max: 65535)), exchange: try f.name())
    case .txt:
      var strings: [[UInt8]] = []
      while f.index < tokens.count { strings.append(try f.characterString()) }
      guard !strings.isEmpty else { throw .badPresentation("TXT needs at least one string") }
      rdata = .txt(strings)
    case .srv:
      rdata = .srv(
        priority: UInt16(try f.number(max: 65535)), weight: UInt16(try f.number(max: 65535)),
        port: UInt16(try f.number(max: 65535)), target: try f.name())
    case .caa:
      let flags = UInt8(try f.number(max: 255))
      let tag = try f.word()
      guard !tag.isEmpty, tag.utf8.count <= 255, tag.allSatisfy({ $0.isASCII && ($0.isLetter || $0.isNumber) }) else {
        throw .badPresentation("bad CAA tag '\(tag)'")
      }
      rdata = .caa(flags: flags, tag: tag, value: try f.characterString(limit: 65535))
    case .ds:
      rdata = .ds(
        keyTag: UInt16(try f.number(max: 65535)), algorithm: UInt8(try f.number(max: 255)),
        digestType: UInt8(try f.number(max: 255)), digest: try f.hexRest())
    case .dnskey:
      rdata = .dnskey(
        flags: UInt16(try f.number(max: 65535)), protocol: UInt8(try f.number(max: 255)),
        algorithm: UInt8(try f.number(max: 255)), publicKey: try f.base64Rest())
    case .nsec:
      rdata = .nsec(nextName: try f.name(), types: try f.typeList())
    case .nsec3: rdata = try f.nsec3()
    case .rrsig: rdata = try f.rrsig()
    case .svcb, .https: rdata = try f.svcb()
    default:
      throw .badPresentation("no text form for \(type) here; use \\# length hex")
    }
    guard f.index == tokens.count else { throw .badPresentation("extra fields after \(type) data") }
    return rdata
  }
}

/// A cursor over RDATA tokens with typed field readers.
struct Fields {
  let tokens: [PresentationToken]
  let origin: DNSName
  let type: RRType
  var index = 0

  init(tokens: [PresentationToken], origin: DNSName, type: RRType) {
    self.tokens = tokens
    self.origin = origin
    self.type = type
  }

  mutating func next() throws(WireError) -> PresentationToken {
    guard index < tokens.count else { throw .badPresentation("missing field in \(type) data") }
    defer { index += 1 }
    return tokens[index]
  }

  mutating func word() throws(WireError) -> String { try next().text }

  mutating func name() throws(WireError) -> DNSName {
    try PresentationLexer.name(try word(), origin: origin)
  }

  mutating func number(max: UInt64) throws(WireError) -> UInt64 {
    let t = try word()
    guard let v = UInt64(t), v <= max else { throw .badPresentation("bad number '\(t)' in \(type) data") }
    return v
  }

  mutating func ttl() throws(WireError) -> UInt32 {
    let t = try word()
    guard let v = ZoneFile.ttlValue(t) else { throw .badPresentation("bad time value '\(t)'") }
    return v
  }

  mutating func characterString(limit: Int = 255) throws(WireError) -> [UInt8] {
    let s = try PresentationLexer.unescape(try next().text)
    guard s.count <= limit else { throw .valueOutOfRange("character-string of \(s.count) octets") }
    return s
  }

  mutating func hexRest() throws(WireError) -> [UInt8] {
    var text = ""
    while index < tokens.count { text += try word() }
    guard let b = TextEncoding.unhex(text) else { throw .badPresentation("bad hex in \(type) data") }
    return b
  }

  /// The rest of the tokens as type mnemonics (NSEC, NSEC3): sorted, each once.
  mutating func typeList() throws(WireError) -> [RRType] {
    var types: [RRType] = []
    while index < tokens.count {
      let t = try word()
      guard let rr = RRType(mnemonic: t) else { throw .badPresentation("unknown type '\(t)'") }
      types.append(rr)
    }
    // A type listed twice is one bit in the bitmap: keep it once, or the value would not
    // equal its own wire form (found by the presentation fuzzer).
    return Set(types.map(\.rawValue)).sorted().map { RRType($0) }
  }

  mutating func base64Rest() throws(WireError) -> [UInt8] {
    var text = ""
    while index < tokens.count { text += try word() }
    guard let b = TextEncoding.unbase64(text) else { throw .badPresentation("bad base64 in \(type) data") }
    return b
  }
}
