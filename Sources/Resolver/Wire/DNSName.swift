/// A domain name as a sequence of labels. Case is preserved; equality, hashing and
/// ordering ignore ASCII case (RFC 4343). Limits of 63 octets per label and 255 per name hold.
public struct DNSName: Sendable, Hashable, CustomStringConvertible {
  /// The labels, most specific first, without the empty root label.
  public let labels: [[UInt8]]

  /// The root name `.`.
  public static let root = DNSName(uncheckedLabels: [])

  /// Creates a name from labels, enforcing the 63/255 octet limits.
  public init(labels: [[UInt8]]) throws(WireError) {
    var total = 1
    for label in labels {
      if label.isEmpty { throw .emptyLabel }
      if label.count > 63 { throw .labelTooLong(length: label.count) }
      total += label.count + 1
    }
    if total > 255 { throw .nameTooLong(length: total) }
    self.labels = labels
  }

  init(uncheckedLabels: [[UInt8]]) { self.labels = uncheckedLabels }

  /// Parses presentation format (`www.example.com.`, `\.` and `\DDD` escapes). A missing
  /// final dot is accepted; the name is always absolute.
  public init(_ text: String) throws(WireError) {
    if text == "." || text.isEmpty { self = .root; return }
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
  public var isRoot: Bool { labels.isEmpty }
  /// Number of labels, not counting the root.
  public var labelCount: Int { labels.count }
  /// Length of the uncompressed wire form, including the root octet.
  public var wireLength: Int { labels.reduce(1) { $0 + $1.count + 1 } }

  /// The name with its first label removed, or nil for the root.
  public var parent: DNSName? {
    labels.isEmpty ? nil : DNSName(uncheckedLabels: Array(labels.dropFirst()))
  }

  /// The last `count` labels of this name (the ancestor with that many labels).
  public func suffix(labelCount count: Int) -> DNSName {
    DNSName(uncheckedLabels: Array(labels.suffix(max(0, count))))
  }

  /// True if this name equals `other` or lies below it.
  public func isSubdomain(of other: DNSName) -> Bool {
    guard other.labels.count <= labels.count else { return false }
    let offset = labels.count - other.labels.count
    for (i, label) in other.labels.enumerated() where !DNSName.labelEqual(labels[offset + i], label) {
      return false
    }
    return true
  }

  /// A new name with `label` prepended (throws if limits would be exceeded).
  public func prepending(_ label: [UInt8]) throws(WireError) -> DNSName {
    try DNSName(labels: [label] + labels)
  }

  /// The name with ASCII letters lowered; a name that has none is returned as is, sharing its
  /// storage (cache keys of lowercase names then cost no second copy).
  public func lowercased() -> DNSName {
    guard !isLowercase else { return self }
    return DNSName(uncheckedLabels: labels.map { $0.map(DNSName.lower) })
  }

  /// True when no label holds an ASCII capital (the name equals its lowercased form).
  var isLowercase: Bool {
    labels.allSatisfy { label in !label.contains { $0 >= 65 && $0 <= 90 } }
  }

  @inline(__always) static func lower(_ b: UInt8) -> UInt8 { (b >= 65 && b <= 90) ? b | 0x20 : b }

  static func labelEqual(_ a: [UInt8], _ b: [UInt8]) -> Bool {
    guard a.count == b.count else { return false }
    for i in 0..<a.count where lower(a[i]) != lower(b[i]) { return false }
    return true
  }

  public static func == (lhs: DNSName, rhs: DNSName) -> Bool {
    guard lhs.labels.count == rhs.labels.count else { return false }
    for i in 0..<lhs.labels.count where !labelEqual(lhs.labels[i], rhs.labels[i]) { return false }
    return true
  }

  public func hash(into hasher: inout Hasher) {
    hasher.combine(labels.count)
    for label in labels { Self.hashLabel(label, into: &hasher) }
  }

  /// Feeds one label to `hasher` case-insensitively: its length, then its lowered bytes packed
  /// eight to a word (one Hasher round per 8 bytes instead of per byte; name hashing was ~4.5%
  /// of cold-resolution CPU in `perf`). Consistent with `==`.
  @inline(__always) static func hashLabel(_ label: [UInt8], into hasher: inout Hasher) {
    hasher.combine(label.count)
    var word: UInt64 = 0
    var filled = 0
    for b in label {
      word = word << 8 | UInt64(lower(b))
      filled += 1
      if filled == 8 {
        hasher.combine(word)
        word = 0
        filled = 0
      }
    }
    if filled > 0 { hasher.combine(word) }
  }

  /// Presentation format with a trailing dot; special characters escaped as `dig` does.
  public var description: String {
    if labels.isEmpty { return "." }
    // Written straight into the string's storage, sized by a first pass: one allocation, none
    // for names of up to 15 characters (hops, logs and the monitor print names on the hot path).
    var length = 0
    for label in labels {
      for b in label { length += Self.presentationWidth(b) }
      length += 1
    }
    return String(unsafeUninitializedCapacity: length) { out in
      var i = 0
      for label in labels {
        for b in label {
          let width = Self.presentationWidth(b)
          switch width {
          case 1:
            out[i] = b
          case 2:
            out[i] = UInt8(ascii: "\\")
            out[i + 1] = b
          default:
            out[i] = UInt8(ascii: "\\")
            out[i + 1] = 48 + b / 100
            out[i + 2] = 48 + (b / 10) % 10
            out[i + 3] = 48 + b % 10
          }
          i += width
        }
        out[i] = UInt8(ascii: ".")
        i += 1
      }
      return i
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
