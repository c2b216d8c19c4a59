/// An output buffer that writes names with RFC 1035 §4.1.4 compression. Suffixes are matched
/// case-insensitively; the case of the first occurrence is what the pointer refers to.
///
/// Pointer targets are found by scanning the names already in `bytes` (following the pointers
/// there, as a reader would), not through a hash index: Sotto's messages hold 1-15 names that
/// share suffixes, and one pass over each earlier name's octets costs far less than hashing
/// every suffix of every name into a dictionary (that was ~5% of cold-resolution CPU).
struct WireWriter {
  var bytes: [UInt8] = []
  /// The first name written with at least one label in full, kept inline so a message with one
  /// name (an iterative query) allocates nothing for compression.
  private var firstTarget: Target?
  /// The later such names, in the order written (so the first occurrence of a suffix wins).
  private var targets: [Target] = []

  /// A name written with at least one leading label in full from `offset` on (then a zero octet
  /// or a pointer), `labels` labels in all. Each label written in full starts a suffix that later
  /// names may point to.
  private struct Target {
    let offset: Int
    let labels: Int
  }

  /// Where the message starts in `bytes`: octets before it (a stream's 2-octet length prefix) are
  /// not part of the message, and compression pointers count from here.
  let origin: Int

  /// A writer whose message starts at `origin` (the caller writes the octets before it).
  init(origin: Int = 0) {
    self.origin = origin
    bytes.reserveCapacity(512)
  }

  mutating func u8(_ v: UInt8) { bytes.append(v) }
  mutating func u16(_ v: UInt16) {
    bytes.append(UInt8(v >> 8))
    bytes.append(UInt8(v & 0xFF))
  }
  mutating func u32(_ v: UInt32) {
    bytes.append(UInt8(v >> 24))
    bytes.append(UInt8((v >> 16) & 0xFF))
    bytes.append(UInt8((v >> 8) & 0xFF))
    bytes.append(UInt8(v & 0xFF))
  }
  mutating func append(_ b: [UInt8]) { bytes.append(contentsOf: b) }
  /// An EDNS option: code, length, data.
  mutating func option(_ o: EDNSOption) {
    u16(o.code)
    u16(UInt16(truncatingIfNeeded: o.data.count))
    append(o.data)
  }

  mutating func patchU16(at offset: Int, _ v: UInt16) {
    bytes[offset] = UInt8(v >> 8)
    bytes[offset + 1] = UInt8(v & 0xFF)
  }

  /// Fills in the header's four section counts.
  mutating func patchCounts(_ qd: Int, _ an: Int, _ ns: Int, _ ar: Int) {
    patchU16(at: origin + 4, UInt16(truncatingIfNeeded: qd))
    patchU16(at: origin + 6, UInt16(truncatingIfNeeded: an))
    patchU16(at: origin + 8, UInt16(truncatingIfNeeded: ns))
    patchU16(at: origin + 10, UInt16(truncatingIfNeeded: ar))
  }

  /// Writes `name`; when `compress` is true the longest earlier suffix becomes a pointer.
  /// Every suffix written in full is remembered as a target for later names either way.
  mutating func name(_ name: DNSName, compress: Bool) {
    let count = name.labelCount
    let start = bytes.count
    // Written in full first, so the search compares octets with octets.
    bytes.append(contentsOf: name.storage)
    guard count > 0 else { return }
    if compress, firstTarget != nil {
      let (shared, pointer) = longestWrittenSuffix(of: start, labels: count)
      if shared > 0 {
        var end = start
        for _ in 0..<(count - shared) { end += 1 + Int(bytes[end]) }
        bytes.removeLast(bytes.count - end)
        u16(0xC000 | UInt16(pointer - origin))
        if shared == count { return }  // all a pointer: nothing new to point to
      }
    }
    let target = Target(offset: start, labels: count)
    if firstTarget == nil {
      firstTarget = target
    } else {
      if targets.isEmpty { targets.reserveCapacity(16) }
      targets.append(target)
    }
  }

  /// The longest suffix of the name written in full at `start` (with `labels` labels) that an
  /// earlier target wrote in full below offset 0x4000 (RFC 1035 §4.1.4: a pointer holds 14 bits):
  /// its length in labels (0 if none) and the offset of its first occurrence.
  private func longestWrittenSuffix(of start: Int, labels count: Int) -> (Int, Int) {
    var best = 0
    var bestOffset = 0
    if let firstTarget { sharedSuffix(of: start, count, with: firstTarget, longerThan: &best, at: &bestOffset) }
    var t = 0
    while t < targets.count, best < count {
      sharedSuffix(of: start, count, with: targets[t], longerThan: &best, at: &bestOffset)
      t += 1
    }
    return (best, bestOffset)
  }

  /// Compares the name at `start` with `target` from the label where their ends align, and if
  /// they share a suffix of more than `best` labels whose first label the target wrote in full
  /// (not through its pointer) below 0x4000, makes that suffix the best one.
  @inline(__always)
  private func sharedSuffix(
    of start: Int, _ count: Int, with target: Target, longerThan best: inout Int, at bestOffset: inout Int
  ) {
    let common = min(count, target.labels)
    guard common > best else { return }
    var p = start
    for _ in 0..<(count - common) { p += 1 + Int(bytes[p]) }
    var q = target.offset
    var direct = true  // q is still among the target's own labels, before its pointer
    for _ in 0..<(target.labels - common) {
      follow(&q, &direct)
      q += 1 + Int(bytes[q])
    }
    var run = 0  // labels matched since the last difference
    var runStart = 0
    var runDirect = false
    for _ in 0..<common {
      follow(&q, &direct)
      let length = Int(bytes[p])
      if length == Int(bytes[q]) && labelsMatch(p + 1, q + 1, length) {
        if run == 0 { (runStart, runDirect) = (q, direct) }
        run += 1
      } else {
        run = 0
      }
      p += 1 + length
      q += 1 + Int(bytes[q])
    }
    if run > best, runDirect, runStart - origin < 0x4000 { (best, bestOffset) = (run, runStart) }
  }

  /// Moves `q` along the pointers at it (each points strictly backwards, as this writer makes them).
  @inline(__always)
  private func follow(_ q: inout Int, _ direct: inout Bool) {
    while bytes[q] >= 0xC0 {
      let next = origin + (Int(bytes[q] & 0x3F) << 8 | Int(bytes[q + 1]))
      precondition(next < q, "compression pointer not backwards")
      q = next
      direct = false
    }
  }

  /// True if the `length` octets at `a` and `b` are equal ignoring ASCII case.
  @inline(__always)
  private func labelsMatch(_ a: Int, _ b: Int, _ length: Int) -> Bool {
    for i in 0..<length {
      let x = bytes[a + i]
      let y = bytes[b + i]
      // Equal, or the same ASCII letter in the other case.
      guard x == y || (x ^ y == 0x20 && (x | 0x20) >= 0x61 && (x | 0x20) <= 0x7A) else { return false }
    }
    return true
  }
}
