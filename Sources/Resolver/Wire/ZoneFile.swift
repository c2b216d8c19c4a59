/// Master-file (RFC 1035 §5) reader: `$ORIGIN`, `$TTL`, `@`, relative names, omitted owner/TTL/class,
/// parentheses, comments, quoted strings. Used for root hints and lab zones.
public enum ZoneFile {
  /// Parses all records; errors are `.badPresentation("line N: ...")`.
  public static func parse(_ text: String, origin: DNSName = .root, defaultTTL: UInt32 = 3600) throws(WireError)
    -> [ResourceRecord]
  {
    var origin = origin
    var dollarTTL: UInt32?
    var lastTTL: UInt32?
    var lastOwner: DNSName?
    var records: [ResourceRecord] = []
    for entry in try PresentationLexer.entries(text) {
      do throws(WireError) {
        var toks = entry.tokens
        let first = toks[0]
        if !first.quoted, !entry.leadingBlank, first.text.hasPrefix("$") {
          switch first.text.uppercased() {
          case "$ORIGIN":
            guard toks.count == 2 else { throw .badPresentation("$ORIGIN needs one name") }
            origin = try PresentationLexer.name(toks[1].text, origin: origin)
          case "$TTL":
            guard toks.count == 2, let v = ttlValue(toks[1].text) else { throw .badPresentation("bad $TTL") }
            dollarTTL = v
          default:
            throw .badPresentation("unsupported directive \(first.text)")
          }
          continue
        }
        let owner: DNSName
        if entry.leadingBlank {
          guard let prev = lastOwner else { throw .badPresentation("no previous owner name") }
          owner = prev
        } else {
          owner = try PresentationLexer.name(first.text, origin: origin)
          toks.removeFirst()
        }
        var ttl: UInt32?
        var rrclass: RRClass?
        var type: RRType?
        while let t = toks.first, !t.quoted {
          toks.removeFirst()
          if ttl == nil, let v = ttlValue(t.text) {
            ttl = v
          } else if rrclass == nil, let c = RRClass(mnemonic: t.text) {
            rrclass = c
          } else if let ty = RRType(mnemonic: t.text) {
            type = ty
            break
          } else {
            throw .badPresentation("unknown type '\(t.text)'")
          }
        }
        guard let type else { throw .badPresentation("missing type") }
        if let ttl { lastTTL = ttl }
        let rdata = try RData.parse(tokens: toks, type: type, origin: origin)
        let effectiveTTL = ttl ?? dollarTTL ?? lastTTL ?? defaultTTL
        records.append(
          ResourceRecord(name: owner, type: type, rrclass: rrclass ?? .in, ttl: effectiveTTL, rdata: rdata))
        lastOwner = owner
      } catch {
        if case .badPresentation(let msg) = error, msg.hasPrefix("line ") { throw error }
        let detail: String
        if case .badPresentation(let msg) = error { detail = msg } else { detail = "\(error)" }
        throw .badPresentation("line \(entry.line): \(detail)")
      }
    }
    return records
  }

  /// A TTL as seconds or BIND units (`1w2d3h4m5s`); nil when not a TTL.
  static func ttlValue(_ text: String) -> UInt32? {
    if let v = UInt32(text) { return v }
    var total: UInt64 = 0
    var current: UInt64 = 0
    var sawDigit = false
    for c in text.lowercased() {
      if let d = c.wholeNumberValue, c.isASCII {
        current = current * 10 + UInt64(d)
        sawDigit = true
        if current > UInt64(UInt32.max) { return nil }
      } else {
        guard sawDigit else { return nil }
        let mult: UInt64
        switch c {
        case "w": mult = 604_800
        case "d": mult = 86400
        case "h": mult = 3600
        case "m": mult = 60
        case "s": mult = 1
        default: return nil
        }
        total += current * mult
        current = 0
        sawDigit = false
      }
    }
    if sawDigit { return nil }  // "1h30" is not a valid unit form
    return total <= UInt64(UInt32.max) && !text.isEmpty ? UInt32(total) : nil
  }
}
