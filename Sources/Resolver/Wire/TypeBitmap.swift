/// NSEC/NSEC3 type bitmaps (RFC 4034 §4.1.2): windows in increasing order, 1...32 octets each.
enum TypeBitmap {
  /// Encodes types (any order, duplicates ignored) as windowed bitmaps.
  static func encode(_ types: [RRType]) -> [UInt8] {
    var out: [UInt8] = []
    let sorted = Set(types.map(\.rawValue)).sorted()
    var i = 0
    while i < sorted.count {
      let window = sorted[i] >> 8
      var bits = [UInt8](repeating: 0, count: 32)
      var maxOctet = 0
      while i < sorted.count, sorted[i] >> 8 == window {
        let low = Int(sorted[i] & 0xFF)
        bits[low / 8] |= 0x80 >> UInt8(low % 8)
        maxOctet = max(maxOctet, low / 8)
        i += 1
      }
      out.append(UInt8(window))
      out.append(UInt8(maxOctet + 1))
      out.append(contentsOf: bits[0...maxOctet])
    }
    return out
  }

  /// Decodes the bitmap occupying the rest of the reader's RDATA.
  static func decode(_ r: inout WireReader) throws(WireError) -> [RRType] {
    var types: [RRType] = []
    var lastWindow = -1
    while r.remaining > 0 {
      let start = r.pos
      let window = Int(try r.u8())
      guard r.remaining > 0 else { throw .badTypeBitmap(offset: start) }
      let len = Int(try r.u8())
      guard window > lastWindow, len >= 1, len <= 32, len <= r.remaining else {
        throw .badTypeBitmap(offset: start)
      }
      let bits = try r.take(len)
      if bits[len - 1] == 0 { throw .badTypeBitmap(offset: start) }
      for (octet, b) in bits.enumerated() where b != 0 {
        for bit in 0..<8 where b & (0x80 >> UInt8(bit)) != 0 {
          types.append(RRType(UInt16(window << 8 | octet * 8 + bit)))
        }
      }
      lastWindow = window
    }
    return types
  }
}
