/// What the cache is indexed by: the lowercased owner, the type and the class.
/// A nil type stands for "any type" and is used for NXDOMAIN entries.
///
/// The owner is held as its lowercased uncompressed wire form, hashed as raw bytes. Forms of up to
/// `inlineCapacity` octets (most names) sit inside the key itself, so making a key for a lookup
/// allocates nothing; longer ones are an array. Which of the two a key uses follows from the length
/// alone, so equal owners always compare and hash the same way.
struct CacheKey: Hashable, Sendable {
  typealias Words = (UInt64, UInt64, UInt64, UInt64)
  static let inlineCapacity = MemoryLayout<Words>.size

  /// The owner's octets when `length <= inlineCapacity`, zero-filled after them.
  private let words: Words
  /// The owner's octets when longer.
  private let heap: [UInt8]?
  private let length: UInt8
  let type: RRType?
  let rrclass: RRClass

  init(name: DNSName, type: RRType?, rrclass: RRClass) {
    let count = name.wireLength
    if count <= Self.inlineCapacity {
      var words: Words = (0, 0, 0, 0)
      withUnsafeMutableBytes(of: &words) { out in
        name.storage.withUnsafeBytes { wire in
          out.copyMemory(from: UnsafeRawBufferPointer(rebasing: wire.prefix(count)))
        }
      }
      // Lowered a word at a time; the zero fill stays zero.
      words = (
        DNSName.lowerWord(words.0), DNSName.lowerWord(words.1), DNSName.lowerWord(words.2), DNSName.lowerWord(words.3)
      )
      self.words = words
      self.heap = nil
    } else {
      self.words = (0, 0, 0, 0)
      self.heap = name.lowercasedWire
    }
    self.length = UInt8(truncatingIfNeeded: count)
    self.type = type
    self.rrclass = rrclass
  }

  /// A key for an owner already in lowercased wire form (root octet included).
  init(owner: some Collection<UInt8>, type: RRType?, rrclass: RRClass) {
    let count = owner.count
    if count <= Self.inlineCapacity {
      var words: Words = (0, 0, 0, 0)
      withUnsafeMutableBytes(of: &words) { out in
        for (i, b) in owner.enumerated() { out[i] = b }
      }
      self.words = words
      self.heap = nil
    } else {
      self.words = (0, 0, 0, 0)
      self.heap = Array(owner)
    }
    self.length = UInt8(truncatingIfNeeded: count)
    self.type = type
    self.rrclass = rrclass
  }

  /// Calls `body` with the owner's lowercased wire form.
  func withOwner<R>(_ body: (UnsafeRawBufferPointer) -> R) -> R {
    if let heap { return heap.withUnsafeBytes(body) }
    return withUnsafeBytes(of: words) { body(UnsafeRawBufferPointer(rebasing: $0.prefix(Int(length)))) }
  }

  /// The owner's lowercased wire form, root octet included.
  var owner: [UInt8] { heap ?? withOwner { Array($0) } }

  /// The owner as a name (lowercase).
  var name: DNSName { DNSName(uncheckedWire: owner) }

  /// The same owner and class with another type.
  func with(type: RRType?) -> CacheKey {
    CacheKey(words: words, heap: heap, length: length, type: type, rrclass: rrclass)
  }

  /// The key of the owner's parent name (type nil), or nil for the root.
  var parentForAnyType: CacheKey? {
    withOwner { bytes -> CacheKey? in
      guard let first = bytes.first, first != 0, 1 + Int(first) < bytes.count else { return nil }
      return CacheKey(owner: bytes[(1 + Int(first))...], type: nil, rrclass: rrclass)
    }
  }

  private init(words: Words, heap: [UInt8]?, length: UInt8, type: RRType?, rrclass: RRClass) {
    self.words = words
    self.heap = heap
    self.length = length
    self.type = type
    self.rrclass = rrclass
  }

  static func == (a: CacheKey, b: CacheKey) -> Bool {
    guard a.length == b.length, a.type == b.type, a.rrclass == b.rrclass else { return false }
    if let ha = a.heap, let hb = b.heap { return ha == hb }
    return a.words == b.words
  }

  /// The owner's bucket among `DNSCache.stampBuckets` (1,024): its first sixteen octets and its
  /// length, mixed. Not a hash table's hash: a collision only makes a memo be rebuilt.
  var stampBucket: Int {
    var first = words.0
    var second = words.1
    if let heap {
      heap.withUnsafeBytes { bytes in
        withUnsafeMutableBytes(of: &first) { $0.copyMemory(from: UnsafeRawBufferPointer(rebasing: bytes.prefix(8))) }
        withUnsafeMutableBytes(of: &second) {
          $0.copyMemory(from: UnsafeRawBufferPointer(rebasing: bytes.dropFirst(8).prefix(8)))
        }
      }
    }
    let mixed = (first ^ (second &* 0xff51_afd7_ed55_8ccd) ^ UInt64(length)) &* 0x9e37_79b9_7f4a_7c15
    return Int(truncatingIfNeeded: mixed >> 54)
  }

  /// An inline owner goes to the hasher a word at a time, only the words its length covers (the
  /// rest are zero in every key of that length), and length, type and class as one more word
  /// (a long owner as `DNSName.hashWords` feeds it): `combine(bytes:)` cost about twice as many
  /// instructions per cold resolution (callgrind).
  func hash(into hasher: inout Hasher) {
    let type = UInt64(self.type.map { UInt32($0.rawValue) } ?? 0x1_0000)
    hasher.combine(UInt64(length) | type << 8 | UInt64(rrclass.rawValue) << 32)
    if let heap {
      heap.withUnsafeBytes { DNSName.hashWords($0, lowering: false, into: &hasher) }
      return
    }
    hasher.combine(words.0)
    if length > 8 { hasher.combine(words.1) }
    if length > 16 { hasher.combine(words.2) }
    if length > 24 { hasher.combine(words.3) }
  }
}
