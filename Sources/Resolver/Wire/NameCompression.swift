/// An output buffer that writes names with RFC 1035 §4.1.4 compression. Suffixes are matched
/// case-insensitively; the case of the first occurrence is what the pointer refers to.
struct WireWriter {
  var bytes: [UInt8] = []
  /// Offsets of name suffixes already written (keys compare case-insensitively). Filled lazily
  /// from `unindexed` when a name is first looked up, so a message with one name (an iterative
  /// query) hashes nothing.
  private var suffixes: [Suffix: Int] = [:]
  /// Names written since `suffixes` was last brought up to date: the name, how many of its leading
  /// labels were written in full, and the offset of the first one.
  private var unindexed: [(name: DNSName, written: Int, offset: Int)] = []

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
    if compress && !unindexed.isEmpty { indexSuffixes() }
    let start = bytes.count
    var written = 0
    defer { if written > 0 { unindexed.append((name, written, start)) } }
    for i in 0..<labels.count {
      if compress, !suffixes.isEmpty, let off = suffixes[Suffix(name: name, start: i)] {
        u16(0xC000 | UInt16(off))
        return
      }
      u8(UInt8(labels[i].count))
      append(labels[i])
      written += 1
    }
    u8(0)
  }

  /// Adds the suffixes of the names in `unindexed` to `suffixes`, in the order they were written,
  /// so the first occurrence of a suffix is the one pointed to.
  private mutating func indexSuffixes() {
    for entry in unindexed {
      let labels = entry.name.labels
      var offset = entry.offset
      for i in 0..<entry.written {
        guard offset < 0x4000 else { break }
        let suffix = Suffix(name: entry.name, start: i)
        if suffixes[suffix] == nil { suffixes[suffix] = offset }
        offset += 1 + labels[i].count
      }
    }
    unindexed.removeAll(keepingCapacity: true)
  }
}

/// The labels of `name` from `start` on, as a dictionary key: shares the name's storage instead of
/// copying the labels into a new name. Equality and hashing ignore ASCII case, like `DNSName`.
private struct Suffix: Hashable {
  let name: DNSName
  let start: Int

  static func == (a: Suffix, b: Suffix) -> Bool {
    let la = a.name.labels
    let lb = b.name.labels
    guard la.count - a.start == lb.count - b.start else { return false }
    var i = a.start
    var j = b.start
    while i < la.count {
      if !DNSName.labelEqual(la[i], lb[j]) { return false }
      i += 1
      j += 1
    }
    return true
  }

  func hash(into hasher: inout Hasher) {
    let labels = name.labels
    hasher.combine(labels.count - start)
    for i in start..<labels.count { DNSName.hashLabel(labels[i], into: &hasher) }
  }
}
