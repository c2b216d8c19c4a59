/// What the cache is indexed by: the lowercased owner, the type and the class.
/// A nil type stands for "any type" and is used for NXDOMAIN entries.
///
/// The owner is held as its lowercased uncompressed wire form in one array (one allocation
/// instead of one per label plus the label list), hashed as raw bytes.
struct CacheKey: Hashable, Sendable {
  /// Lowercased uncompressed wire form of the owner, root octet included.
  let owner: [UInt8]
  let type: RRType?
  let rrclass: RRClass

  init(name: DNSName, type: RRType?, rrclass: RRClass) {
    self.owner = name.lowercasedWire
    self.type = type
    self.rrclass = rrclass
  }

  init(owner: [UInt8], type: RRType?, rrclass: RRClass) {
    self.owner = owner
    self.type = type
    self.rrclass = rrclass
  }

  /// The owner as a name (lowercase).
  var name: DNSName { DNSName(uncheckedWire: owner) }

  static func == (a: CacheKey, b: CacheKey) -> Bool {
    a.type == b.type && a.rrclass == b.rrclass && a.owner == b.owner
  }

  func hash(into hasher: inout Hasher) {
    owner.withUnsafeBytes { hasher.combine(bytes: $0) }
    hasher.combine(type.map { UInt32($0.rawValue) } ?? 0x1_0000)
    hasher.combine(rrclass.rawValue)
  }
}

extension DNSName {
  /// The uncompressed wire form with ASCII letters lowered (root octet included).
  var lowercasedWire: [UInt8] {
    var out: [UInt8] = []
    out.reserveCapacity(wireLength)
    for label in labels {
      out.append(UInt8(label.count))
      for b in label { out.append(DNSName.lower(b)) }
    }
    out.append(0)
    return out
  }

  /// The uncompressed wire form as stored (root octet included).
  var wire: [UInt8] {
    var out: [UInt8] = []
    out.reserveCapacity(wireLength)
    for label in labels {
      out.append(UInt8(label.count))
      out.append(contentsOf: label)
    }
    out.append(0)
    return out
  }

  /// A name from an uncompressed wire form this module produced (`wire`, `lowercasedWire`);
  /// stops at the root octet or the end.
  init(uncheckedWire wire: [UInt8]) {
    var labels: [[UInt8]] = []
    var i = 0
    while i < wire.count {
      let len = Int(wire[i])
      if len == 0 || i + 1 + len > wire.count { break }
      labels.append(Array(wire[(i + 1)...(i + len)]))
      i += 1 + len
    }
    self.init(uncheckedLabels: labels)
  }
}
