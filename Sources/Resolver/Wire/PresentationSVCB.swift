/// Text form of SVCB/HTTPS (RFC 9460 §2.1): `priority target key=value...`, as `RData.svcParamText`
/// prints it. A key written by name gets its typed value; `keyN="..."` (the form malformed values
/// print in) is the raw value. Without this parser the printed text did not read back (fuzzer).
extension Fields {
  /// `priority target key[=value]...`, the parameters kept in the order written.
  mutating func svcb() throws(WireError) -> RData {
    let priority = UInt16(try number(max: 65535))
    let target = try name()
    var params: [SVCParam] = []
    while index < tokens.count {
      let token = try next()
      guard !token.quoted else { throw .badPresentation("SVCB value \"\(token.text)\" without a key") }
      let keyText: String
      var valueText: String? = nil
      if let eq = token.text.firstIndex(of: "=") {
        keyText = String(token.text[..<eq])
        var v = String(token.text[token.text.index(after: eq)...])
        // `key="quoted value"` lexes as `key=` and a quoted token.
        if v.isEmpty, index < tokens.count, tokens[index].quoted { v = try next().text }
        valueText = v
      } else {
        keyText = token.text
      }
      let (key, byName) = try Self.svcKey(keyText)
      let value = try Self.svcValue(key: byName ? key : nil, text: valueText ?? "")
      if byName, valueText == nil, key != 2 { throw .badPresentation("SVCB key \(keyText) needs a value") }
      guard value.count <= 65535 else { throw .valueOutOfRange("SVCB \(keyText) value of \(value.count) octets") }
      params.append(SVCParam(key: key, value: value))
    }
    return .svcb(priority: priority, target: target, params: params)
  }

  /// The key of `alpn`, `key1`, ...; whether it was written by name.
  static func svcKey(_ text: String) throws(WireError) -> (UInt16, Bool) {
    if let i = RData.svcKeyNames.firstIndex(of: text) { return (UInt16(i), true) }
    let digits = text.utf8.dropFirst(3)
    if text.hasPrefix("key"), !digits.isEmpty, digits.allSatisfy({ $0 >= 48 && $0 <= 57 }),
      let n = UInt16(text.dropFirst(3))
    {
      return (n, false)
    }
    throw .badPresentation("unknown SVCB key '\(text)'")
  }

  /// The wire value of a key written by name (nil: a `keyN` raw value, escapes decoded).
  static func svcValue(key: UInt16?, text: String) throws(WireError) -> [UInt8] {
    guard let key else { return try PresentationLexer.unescape(text) }
    if key == 1 { return try alpnValue(text) }
    let s = String(decoding: try PresentationLexer.unescape(text), as: UTF8.self)
    let items = s.split(separator: ",", omittingEmptySubsequences: false).map(String.init)
    let bad = WireError.badPresentation("bad SVCB \(RData.svcKeyName(key)) value '\(s)'")
    switch key {
    case 0:
      var out: [UInt8] = []
      for item in items {
        guard let (k, _) = try? svcKey(item) else { throw bad }
        out += [UInt8(k >> 8), UInt8(k & 0xFF)]
      }
      return out
    case 2:
      guard s.isEmpty else { throw bad }
      return []
    case 3:
      guard let port = UInt16(s) else { throw bad }
      return [UInt8(port >> 8), UInt8(port & 0xFF)]
    case 4:
      var out: [UInt8] = []
      for item in items {
        guard let ip = IPv4Address(item) else { throw bad }
        out += ip.octets
      }
      return out
    case 5:
      guard let b = TextEncoding.unbase64(s) else { throw bad }
      return b
    default:  // 6
      var out: [UInt8] = []
      for item in items {
        guard let ip = IPv6Address(item) else { throw bad }
        out += ip.octets
      }
      return out
    }
  }

  /// `h2,h3`: ALPN IDs split at commas that are not escaped (`\,`), each 1...255 octets.
  static func alpnValue(_ text: String) throws(WireError) -> [UInt8] {
    let b = Array(text.utf8)
    var ids: [[UInt8]] = [[]]
    var i = 0
    while i < b.count {
      if b[i] == UInt8(ascii: ",") {
        ids.append([])
        i += 1
      } else if b[i] == UInt8(ascii: "\\") {
        // `\DDD` through the lexer's decoder; `\X` (`\,`, `\"`) is the octet X.
        guard i + 1 < b.count else { throw .badPresentation("dangling backslash in SVCB alpn value") }
        if b[i + 1] >= 48 && b[i + 1] <= 57 {
          let escape = b[i..<min(i + 4, b.count)]
          ids[ids.count - 1] += try PresentationLexer.unescape(String(decoding: escape, as: UTF8.self))
          i += 4
        } else {
          ids[ids.count - 1].append(b[i + 1])
          i += 2
        }
      } else {
        ids[ids.count - 1].append(b[i])
        i += 1
      }
    }
    var out: [UInt8] = []
    for id in ids {
      guard !id.isEmpty, id.count <= 255 else { throw .badPresentation("bad SVCB alpn value '\(text)'") }
      out += [UInt8(id.count)] + id
    }
    return out
  }
}
