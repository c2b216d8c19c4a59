/// Hex, base64 and base32hex (RFC 4648) used by DNSSEC presentation formats.
enum TextEncoding {
  static func hex(_ bytes: [UInt8]) -> String {
    let digits = Array("0123456789ABCDEF")
    var s = ""
    s.reserveCapacity(bytes.count * 2)
    for b in bytes {
      s.append(digits[Int(b >> 4)])
      s.append(digits[Int(b & 0x0F)])
    }
    return s
  }

  static func unhex(_ text: String) -> [UInt8]? {
    let chars = Array(text.utf8)
    guard chars.count % 2 == 0 else { return nil }
    var out: [UInt8] = []
    var i = 0
    while i < chars.count {
      guard let h = nibble(chars[i]), let l = nibble(chars[i + 1]) else { return nil }
      out.append(h << 4 | l)
      i += 2
    }
    return out
  }

  private static func nibble(_ c: UInt8) -> UInt8? {
    switch c {
    case 48...57: c - 48
    case 65...70: c - 55
    case 97...102: c - 87
    default: nil
    }
  }

  private static let b64 = Array("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/".utf8)

  static func base64(_ bytes: [UInt8]) -> String {
    var out: [UInt8] = []
    var i = 0
    while i < bytes.count {
      let n = min(3, bytes.count - i)
      let b0 = bytes[i]
      let b1 = n > 1 ? bytes[i + 1] : 0
      let b2 = n > 2 ? bytes[i + 2] : 0
      out.append(b64[Int(b0 >> 2)])
      out.append(b64[Int((b0 & 0x03) << 4 | b1 >> 4)])
      out.append(n > 1 ? b64[Int((b1 & 0x0F) << 2 | b2 >> 6)] : UInt8(ascii: "="))
      out.append(n > 2 ? b64[Int(b2 & 0x3F)] : UInt8(ascii: "="))
      i += 3
    }
    return String(decoding: out, as: UTF8.self)
  }

  static func unbase64(_ text: String) -> [UInt8]? {
    var acc: UInt32 = 0
    var bits = 0
    var out: [UInt8] = []
    var pad = 0
    for c in text.utf8 {
      if c == UInt8(ascii: "=") {
        pad += 1
        continue
      }
      guard pad == 0, let v = b64.firstIndex(of: c) else { return nil }
      acc = acc << 6 | UInt32(v)
      bits += 6
      if bits >= 8 {
        bits -= 8
        out.append(UInt8((acc >> UInt32(bits)) & 0xFF))
      }
    }
    guard pad <= 2 else { return nil }
    return out
  }

  private static let b32 = Array("0123456789ABCDEFGHIJKLMNOPQRSTUV".utf8)

  /// Base32 with the extended hex alphabet, upper case, no padding (NSEC3 owner hashes).
  static func base32hex(_ bytes: [UInt8]) -> String {
    var acc: UInt32 = 0
    var bits = 0
    var out: [UInt8] = []
    for b in bytes {
      acc = acc << 8 | UInt32(b)
      bits += 8
      while bits >= 5 {
        bits -= 5
        out.append(b32[Int((acc >> UInt32(bits)) & 0x1F)])
      }
      acc &= (1 << UInt32(bits)) - 1
    }
    if bits > 0 { out.append(b32[Int((acc << UInt32(5 - bits)) & 0x1F)]) }
    return String(decoding: out, as: UTF8.self)
  }

  static func unbase32hex(_ text: String) -> [UInt8]? {
    var acc: UInt32 = 0
    var bits = 0
    var out: [UInt8] = []
    for c in text.uppercased().utf8 where c != UInt8(ascii: "=") {
      guard let v = b32.firstIndex(of: c) else { return nil }
      acc = (acc << 5 | UInt32(v)) & 0xFFFF
      bits += 5
      if bits >= 8 {
        bits -= 8
        out.append(UInt8((acc >> UInt32(bits)) & 0xFF))
      }
    }
    return out
  }

  /// Splits `s` into space-separated chunks of `width` characters, as `dig` prints long fields.
  static func split(_ s: String, width: Int = 56) -> String {
    guard s.count > width else { return s }
    var parts: [Substring] = []
    var rest = Substring(s)
    while !rest.isEmpty {
      parts.append(rest.prefix(width))
      rest = rest.dropFirst(width)
    }
    return parts.joined(separator: " ")
  }
}
