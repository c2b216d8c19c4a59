/// A domain name. Case is preserved; equality, hashing and ordering ignore ASCII case
/// (RFC 4343). Limits of 63 octets per label and 255 per name hold.
///
/// Held as its uncompressed wire form in one array (length-prefixed labels, then the root octet):
/// parsing a name from a message, keying the cache by it and writing it back each cost at most
/// one allocation, where an array per label cost one per label plus one for the list.
public struct DNSName: Sendable, Hashable, CustomStringConvertible {
  /// The uncompressed wire form, root octet included. Always well formed: labels of 1-63 octets,
  /// 255 octets at most, ending with the single zero octet.
  let storage: [UInt8]

  /// The root name `.`.
  public static let root = DNSName(validWire: [0])

  /// Creates a name from labels, enforcing the 63/255 octet limits.
  public init(labels: [[UInt8]]) throws(WireError) {
    var total = 1
    for label in labels {
      if label.isEmpty { throw .emptyLabel }
      if label.count > 63 { throw .labelTooLong(length: label.count) }
      total += label.count + 1
    }
    if total > 255 { throw .nameTooLong(length: total) }
    self.init(uncheckedLabels: labels)
  }

  /// A name from labels the caller knows to be within the limits.
  init(uncheckedLabels labels: [[UInt8]]) {
    assert(
      labels.allSatisfy { !$0.isEmpty && $0.count <= 63 } && labels.reduce(1, { $0 + $1.count + 1 }) <= 255,
      "DNSName(uncheckedLabels:) given a label or name outside the limits")
    var wire: [UInt8] = []
    wire.reserveCapacity(labels.reduce(1) { $0 + $1.count + 1 })
    for label in labels {
      wire.append(UInt8(truncatingIfNeeded: label.count))
      wire.append(contentsOf: label)
    }
    wire.append(0)
    self.storage = wire
  }

  /// A name whose wire form is known to be well formed (built by this module).
  init(validWire wire: [UInt8]) { self.storage = wire }

  /// A name from an uncompressed wire form this module produced (`storage`, `lowercasedWire`, a
  /// cache key's owner); stops at the root octet or where the form stops making sense.
  init(uncheckedWire wire: [UInt8]) {
    var i = 0
    while i < wire.count {
      let len = Int(wire[i])
      if len == 0 || len > 63 || i + 1 + len >= wire.count { break }
      i += 1 + len
    }
    if i < wire.count, wire[i] == 0, i + 1 == wire.count {
      self.storage = wire
    } else {
      var valid = Array(wire.prefix(i))
      valid.append(0)
      self.storage = valid
    }
  }

  /// Parses presentation format (`www.example.com.`, `\.` and `\DDD` escapes). A missing
  /// final dot is accepted; the name is always absolute.
  public init(_ text: String) throws(WireError) {
    if text == "." || text.isEmpty {
      self = .root
      return
    }
    var labels: [[UInt8]] = []
    var current: [UInt8] = []
    let bytes = Array(text.utf8)
    var i = 0
    var lastWasDot = false
    while i < bytes.count {
      let c = bytes[i]
      if c == UInt8(ascii: ".") {
        if current.isEmpty { throw .emptyLabel }
        labels.append(current)
        current = []
        lastWasDot = true
        i += 1
        continue
      }
      lastWasDot = false
      if c == UInt8(ascii: "\\") {
        guard i + 1 < bytes.count else { throw .badPresentation("dangling backslash in \(text)") }
        let d = bytes[i + 1]
        if (48...57).contains(d) {
          guard i + 3 < bytes.count + 0, i + 3 <= bytes.count - 0,
            (48...57).contains(bytes[i + 2]), (48...57).contains(bytes[i + 3])
          else { throw .badPresentation("bad \\DDD escape in \(text)") }
          let v = Int(d - 48) * 100 + Int(bytes[i + 2] - 48) * 10 + Int(bytes[i + 3] - 48)
          guard v <= 255 else { throw .badPresentation("\\DDD escape over 255 in \(text)") }
          current.append(UInt8(v))
          i += 4
        } else {
          current.append(d)
          i += 2
        }
        continue
      }
      current.append(c)
      i += 1
    }
    if !current.isEmpty { labels.append(current) } else if !lastWasDot { throw .emptyLabel }
    try self.init(labels: labels)
  }

  /// True for the root name.
  public var isRoot: Bool { storage.count == 1 }
  /// Number of labels, not counting the root.
  public var labelCount: Int {
    var count = 0
    forEachLabel { _ in count += 1 }
    return count
  }
  /// Length of the uncompressed wire form, including the root octet.
  public var wireLength: Int { storage.count }

  /// The labels, most specific first, without the empty root label (a copy of each).
  public var labels: [[UInt8]] {
    var out: [[UInt8]] = []
    forEachLabel { out.append(Array(storage[$0])) }
    return out
  }

  /// Calls `body` with the range of each label's octets in `storage` (length octet excluded),
  /// most specific first.
  @inline(__always) private func forEachLabel(_ body: (Range<Int>) -> Void) {
    var i = 0
    while storage[i] != 0 {
      let next = i + 1 + Int(storage[i])
      body((i + 1)..<next)
      i = next
    }
  }

  /// The uncompressed wire form with ASCII letters lowered (root octet included). Length octets
  /// are at most 63, below every capital letter, so the whole form is lowered octet by octet.
  var lowercasedWire: [UInt8] { isLowercase ? storage : storage.map(DNSName.lower) }

  /// The name with its first label removed, or nil for the root.
  public var parent: DNSName? {
    isRoot ? nil : DNSName(validWire: Array(storage[(1 + Int(storage[0]))...]))
  }

  /// The last `count` labels of this name (the ancestor with that many labels).
  public func suffix(labelCount count: Int) -> DNSName {
    let drop = labelCount - max(0, count)
    guard drop > 0 else { return self }
    var i = 0
    for _ in 0..<drop { i += 1 + Int(storage[i]) }
    return DNSName(validWire: Array(storage[i...]))
  }

  /// True if this name equals `other` or lies below it.
  public func isSubdomain(of other: DNSName) -> Bool {
    let offset = storage.count - other.storage.count
    guard offset >= 0 else { return false }
    var i = 0
    while i < offset { i += 1 + Int(storage[i]) }
    guard i == offset else { return false }  // `other` would start inside a label
    return storage.withUnsafeBufferPointer { a in
      other.storage.withUnsafeBufferPointer { b in
        Self.equalIgnoringCase(UnsafeBufferPointer(rebasing: a[offset...]), b)
      }
    }
  }

  /// A new name with `label` prepended (throws if limits would be exceeded).
  public func prepending(_ label: [UInt8]) throws(WireError) -> DNSName {
    if label.isEmpty { throw .emptyLabel }
    if label.count > 63 { throw .labelTooLong(length: label.count) }
    let total = storage.count + label.count + 1
    if total > 255 { throw .nameTooLong(length: total) }
    var wire: [UInt8] = []
    wire.reserveCapacity(total)
    wire.append(UInt8(label.count))
    wire.append(contentsOf: label)
    wire.append(contentsOf: storage)
    return DNSName(validWire: wire)
  }

  /// The name with ASCII letters lowered; a name that has none is returned as is, sharing its
  /// storage (cache keys of lowercase names then cost no second copy).
  public func lowercased() -> DNSName {
    guard !isLowercase else { return self }
    return DNSName(validWire: storage.map(DNSName.lower))
  }

  /// True when no label holds an ASCII capital (the name equals its lowercased form).
  var isLowercase: Bool { !storage.contains { $0 >= 65 && $0 <= 90 } }

  @inline(__always) static func lower(_ b: UInt8) -> UInt8 { (b >= 65 && b <= 90) ? b | 0x20 : b }

  /// True if the two octet runs are equal ignoring ASCII case. Eight octets at a time while they
  /// are equal as they are (the usual case: names from one message, one zone file or the cache), a
  /// word that differs compared octet by octet: a byte-wise loop cost about 600 instructions per
  /// comparison of two names of a cold resolution (callgrind).
  @inline(__always)
  static func equalIgnoringCase(
    _ a: UnsafeBufferPointer<UInt8>, _ b: UnsafeBufferPointer<UInt8>
  ) -> Bool {
    guard a.count == b.count else { return false }
    guard let pa = a.baseAddress, let pb = b.baseAddress else { return true }
    if pa == pb { return true }
    let raw = (UnsafeRawPointer(pa), UnsafeRawPointer(pb))
    var i = 0
    while i + 8 <= a.count {
      if raw.0.loadUnaligned(fromByteOffset: i, as: UInt64.self)
        != raw.1.loadUnaligned(fromByteOffset: i, as: UInt64.self)
      {
        for j in i..<(i + 8) where lower(a[j]) != lower(b[j]) { return false }
      }
      i += 8
    }
    while i < a.count {
      if lower(a[i]) != lower(b[i]) { return false }
      i += 1
    }
    return true
  }

  public static func == (lhs: DNSName, rhs: DNSName) -> Bool {
    guard lhs.storage.count == rhs.storage.count else { return false }
    return lhs.storage.withUnsafeBufferPointer { a in
      rhs.storage.withUnsafeBufferPointer { b in equalIgnoringCase(a, b) }
    }
  }

  /// Hashes the lowered wire form eight octets to a word (one Hasher round per 8 octets instead
  /// of per octet; name hashing was ~4.5% of cold-resolution CPU in `perf`). Consistent with `==`.
  public func hash(into hasher: inout Hasher) {
    storage.withUnsafeBufferPointer { Self.hashLowered($0, into: &hasher) }
  }

  /// Feeds `bytes` to `hasher` with ASCII letters lowered (`hashWords`).
  @inline(__always)
  static func hashLowered(_ bytes: UnsafeBufferPointer<UInt8>, into hasher: inout Hasher) {
    hashWords(UnsafeRawBufferPointer(bytes), lowering: true, into: &hasher)
  }

  /// Feeds `bytes` to `hasher` as the count, then the octets eight to a word (the last word
  /// zero-filled), each word lowered at once (`lowerWord`) when `lowering`. One combine per word
  /// where `combine(bytes:)` goes through the hasher octet by octet.
  @inline(__always)
  static func hashWords(_ bytes: UnsafeRawBufferPointer, lowering: Bool, into hasher: inout Hasher) {
    hasher.combine(bytes.count)
    var i = 0
    while i + 8 <= bytes.count {
      let word = bytes.loadUnaligned(fromByteOffset: i, as: UInt64.self)
      hasher.combine(lowering ? lowerWord(word) : word)
      i += 8
    }
    if i < bytes.count {
      var tail: UInt64 = 0
      withUnsafeMutableBytes(of: &tail) { out in
        for j in i..<bytes.count { out[j - i] = bytes[j] }
      }
      hasher.combine(lowering ? lowerWord(tail) : tail)
    }
  }

  /// The eight octets of `w` with ASCII capitals lowered, all at once (SWAR): for each octet below
  /// 0x80, adding 0x3F sets its top bit when it is at least `A`, adding 0x25 when it is above `Z`;
  /// no sum carries into the next octet.
  @inline(__always)
  static func lowerWord(_ w: UInt64) -> UInt64 {
    let ones: UInt64 = 0x0101_0101_0101_0101
    let low7 = w & (0x7F * ones)
    let atLeastA = low7 &+ (0x3F * ones)
    let aboveZ = low7 &+ (0x25 * ones)
    let upper = atLeastA & ~aboveZ & ~w & (0x80 * ones)
    return w | (upper >> 2)
  }

  /// Presentation format with a trailing dot; special characters escaped as `dig` does.
  public var description: String {
    if isRoot { return "." }
    // Written straight into the string's storage, sized by a first pass: one allocation, none
    // for names of up to 15 characters (hops, logs and the monitor print names on the hot path).
    var length = 0
    forEachLabel { label in
      for b in storage[label] { length += Self.presentationWidth(b) }
      length += 1
    }
    return String(unsafeUninitializedCapacity: length) { out in
      var o = 0
      forEachLabel { label in
        for b in storage[label] {
          let width = Self.presentationWidth(b)
          switch width {
          case 1:
            out[o] = b
          case 2:
            out[o] = UInt8(ascii: "\\")
            out[o + 1] = b
          default:
            out[o] = UInt8(ascii: "\\")
            out[o + 1] = 48 + b / 100
            out[o + 2] = 48 + (b / 10) % 10
            out[o + 3] = 48 + b % 10
          }
          o += width
        }
        out[o] = UInt8(ascii: ".")
        o += 1
      }
      return o
    }
  }

  /// Characters `b` takes in presentation format: itself, `\` and itself (special characters),
  /// or `\DDD` (anything not printable ASCII).
  private static func presentationWidth(_ b: UInt8) -> Int {
    switch b {
    case UInt8(ascii: "."), UInt8(ascii: "\\"), UInt8(ascii: "\""), UInt8(ascii: ";"),
      UInt8(ascii: "("), UInt8(ascii: ")"), UInt8(ascii: "@"), UInt8(ascii: "$"):
      return 2
    case 0x21...0x7E: return 1
    default: return 4
    }
  }
}

extension DNSName: Comparable {
  /// Canonical DNS order (RFC 4034 §6.1): compare label by label from the root, case-insensitively.
  public static func < (lhs: DNSName, rhs: DNSName) -> Bool {
    let l = lhs.labels.reversed().map { $0.map(lower) }
    let r = rhs.labels.reversed().map { $0.map(lower) }
    for (a, b) in zip(l, r) where a != b { return a.lexicographicallyPrecedes(b) }
    return l.count < r.count
  }
}
