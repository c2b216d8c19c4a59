/// An output buffer that writes names with RFC 1035 §4.1.4 compression. Suffixes are matched
/// case-insensitively; the case of the first occurrence is what the pointer refers to.
struct WireWriter {
  var bytes: [UInt8] = []
  /// Offsets of name suffixes already written (keys compare case-insensitively).
  var suffixes: [DNSName: Int] = [:]

  init() { bytes.reserveCapacity(512) }

  mutating func u8(_ v: UInt8) { bytes.append(v) }
  mutating func u16(_ v: UInt16) { bytes.append(UInt8(v >> 8)); bytes.append(UInt8(v & 0xFF)) }
  mutating func u32(_ v: UInt32) {
    bytes.append(UInt8(v >> 24)); bytes.append(UInt8((v >> 16) & 0xFF))
    bytes.append(UInt8((v >> 8) & 0xFF)); bytes.append(UInt8(v & 0xFF))
  }
  mutating func append(_ b: [UInt8]) { bytes.append(contentsOf: b) }

  mutating func patchU16(at offset: Int, _ v: UInt16) {
    bytes[offset] = UInt8(v >> 8)
    bytes[offset + 1] = UInt8(v & 0xFF)
  }

  /// Writes `name`; when `compress` is true an earlier matching suffix becomes a pointer.
  /// Every suffix written in full is remembered as a target for later names either way.
  mutating func name(_ name: DNSName, compress: Bool) {
    let labels = name.labels
    for i in 0..<labels.count {
      let suffix = DNSName(uncheckedLabels: Array(labels[i...]))
      if compress, let off = suffixes[suffix] {
        u16(0xC000 | UInt16(off))
        return
      }
      if bytes.count < 0x4000, suffixes[suffix] == nil { suffixes[suffix] = bytes.count }
      u8(UInt8(labels[i].count))
      append(labels[i])
    }
    u8(0)
  }
}
