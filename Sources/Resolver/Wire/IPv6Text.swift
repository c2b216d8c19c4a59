/// IPv6 text forms: RFC 4291 parsing and RFC 5952 printing (as `inet_ntop`/`dig` print them).
extension IPv6Address {
  /// Parses `2001:db8::1`, `::`, `::ffff:192.0.2.1`; nil when malformed.
  static func parse(_ text: String) -> [UInt8]? {
    let parts = text.components(separatedBy: "::")
    guard parts.count <= 2, !text.isEmpty else { return nil }
    func groups(_ s: String, allowV4: Bool) -> [UInt16]? {
      if s.isEmpty { return [] }
      let fields = s.split(separator: ":", omittingEmptySubsequences: false)
      var out: [UInt16] = []
      for (i, f) in fields.enumerated() {
        if i == fields.count - 1, allowV4, f.contains(".") {
          guard let v4 = IPv4Address(String(f)) else { return nil }
          out.append(UInt16(v4.octets[0]) << 8 | UInt16(v4.octets[1]))
          out.append(UInt16(v4.octets[2]) << 8 | UInt16(v4.octets[3]))
          continue
        }
        guard !f.isEmpty, f.count <= 4, f.allSatisfy(\.isHexDigit), let v = UInt16(f, radix: 16) else {
          return nil
        }
        out.append(v)
      }
      return out
    }
    var words: [UInt16]
    if parts.count == 2 {
      guard let head = groups(parts[0], allowV4: false), let tail = groups(parts[1], allowV4: true),
        head.count + tail.count <= 7
      else { return nil }
      words = head + [UInt16](repeating: 0, count: 8 - head.count - tail.count) + tail
    } else {
      guard let all = groups(parts[0], allowV4: true), all.count == 8 else { return nil }
      words = all
    }
    return words.flatMap { [UInt8($0 >> 8), UInt8($0 & 0xFF)] }
  }

  /// RFC 5952 text: lower case, longest run (2+) of zero fields as `::` (first on ties),
  /// IPv4-mapped and IPv4-compatible addresses with a dotted tail like `inet_ntop`.
  static func format(_ octets: [UInt8]) -> String {
    guard octets.count == 16 else { return "<bad ipv6>" }
    let words = (0..<8).map { UInt16(octets[2 * $0]) << 8 | UInt16(octets[2 * $0 + 1]) }
    var bestStart = -1
    var bestLen = 0
    var curStart = -1
    var curLen = 0
    for i in 0..<8 {
      if words[i] == 0 {
        if curStart < 0 {
          curStart = i
          curLen = 0
        }
        curLen += 1
        if curLen > bestLen {
          bestStart = curStart
          bestLen = curLen
        }
      } else {
        curStart = -1
      }
    }
    if bestLen < 2 { bestStart = -1 }
    var out = ""
    var i = 0
    while i < 8 {
      if i == bestStart {
        out += "::"
        i += bestLen
        continue
      }
      if i == 6, bestStart == 0, bestLen == 6 || (bestLen == 5 && words[5] == 0xFFFF) {
        if !out.hasSuffix(":") { out += ":" }
        out += octets[12...15].map(String.init).joined(separator: ".")
        break
      }
      if !out.isEmpty, !out.hasSuffix(":") { out += ":" }
      out += String(words[i], radix: 16)
      i += 1
    }
    return out
  }
}
