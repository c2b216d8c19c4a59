/// A bounds-checked cursor over a DNS message, with compressed-name decoding (RFC 1035 §4.1.4).
struct WireReader {
  let bytes: [UInt8]
  var pos: Int
  /// Reads must stay below `end` (the message end, or the end of the current RDATA).
  var end: Int
  /// When set, running past `end` is a `.badRDataLength` for this type instead of `.truncated`.
  var rdataType: UInt16?
  var rdataStart = 0

  /// Maximum number of compression pointers followed while reading one name.
  static let maxPointerJumps = 64

  init(_ bytes: [UInt8]) {
    self.bytes = bytes
    self.pos = 0
    self.end = bytes.count
  }

  var remaining: Int { end - pos }

  func overrun(at offset: Int) -> WireError {
    if let t = rdataType { return .badRDataLength(type: t, offset: rdataStart) }
    return .truncated(offset: offset)
  }

  mutating func need(_ n: Int) throws(WireError) {
    if n < 0 || pos + n > end { throw overrun(at: pos) }
  }

  mutating func u8() throws(WireError) -> UInt8 {
    try need(1)
    defer { pos += 1 }
    return bytes[pos]
  }

  mutating func u16() throws(WireError) -> UInt16 {
    try need(2)
    defer { pos += 2 }
    return UInt16(bytes[pos]) << 8 | UInt16(bytes[pos + 1])
  }

  mutating func u32() throws(WireError) -> UInt32 {
    try need(4)
    defer { pos += 4 }
    return UInt32(bytes[pos]) << 24 | UInt32(bytes[pos + 1]) << 16 | UInt32(bytes[pos + 2]) << 8
      | UInt32(bytes[pos + 3])
  }

  mutating func take(_ n: Int) throws(WireError) -> [UInt8] {
    try need(n)
    defer { pos += n }
    return Array(bytes[pos..<pos + n])
  }

  mutating func rest() -> [UInt8] {
    defer { pos = end }
    return Array(bytes[pos..<end])
  }

  /// The first names read with the offsets they start at, when `recordNames` is set: a name that
  /// is wholly a pointer to one of them (an answer's owner pointing at the question, say) shares
  /// that name's storage instead of a new copy. Held inline, so remembering allocates nothing.
  private var namesRead = RecentNames()
  /// Whether `name()` remembers names (set for messages with more than the question's name).
  var recordNames = false

  /// Reads a possibly compressed name. Pointers must point strictly before themselves; loops,
  /// reserved label types and the 63/255 octet limits are rejected. One allocation at most: a first
  /// pass checks the name and measures it, a second copies its labels into place.
  mutating func name() throws(WireError) -> DNSName {
    let start = pos
    var total = 1
    var p = pos
    var limit = end
    var jumped = false
    var jumps = 0
    // Where the name's first octets point, when the name is nothing but a pointer.
    var whollyAt = -1
    // Each pointer must land before the previous one's target: the labels between a target and the
    // next pointer are the name's own, so landing at or after the last target is a loop.
    var lastTarget = Int.max
    measuring: while true {
      guard p < limit else { throw jumped ? .truncated(offset: p) : overrun(at: p) }
      let len = Int(bytes[p])
      switch len & 0xC0 {
      case 0x00:
        if len == 0 {
          if !jumped { pos = p + 1 }
          break measuring
        }
        total += len + 1
        if total > 255 { throw .nameTooLong(length: total) }
        guard p + 1 + len <= limit else { throw jumped ? .truncated(offset: p) : overrun(at: p) }
        p += 1 + len
      case 0xC0:
        guard p + 1 < limit else { throw jumped ? .truncated(offset: p) : overrun(at: p) }
        let target = (len & 0x3F) << 8 | Int(bytes[p + 1])
        if target == p || target >= lastTarget { throw .pointerLoop(offset: p) }
        if target > p { throw .forwardPointer(offset: p) }
        jumps += 1
        if jumps > WireReader.maxPointerJumps { throw .pointerLoop(offset: p) }
        if p == start { whollyAt = target }
        lastTarget = target
        if !jumped { pos = p + 2 }
        jumped = true
        limit = bytes.count
        p = target
      default:
        throw .badLabelType(offset: p)
      }
    }
    if whollyAt >= 0, let known = namesRead.name(at: whollyAt) { return known }
    // Written out on the stack, then copied into an array of its size: `Array(unsafeUninitializedCapacity:)`
    // allocates through an unspecialised stdlib entry point that looks the array's type up at run
    // time, about 600 instructions a name (callgrind), where `Array(UnsafeBufferPointer)` does not.
    let wire = withUnsafeTemporaryAllocation(of: UInt8.self, capacity: 256) { out -> [UInt8] in
      bytes.withUnsafeBufferPointer { message in
        // The first pass checked every octet this one reads (and the total, at most 255).
        var q = start
        var o = 0
        while true {
          let len = Int(message[q])
          if len == 0 { break }
          if len >= 0xC0 {
            q = (len & 0x3F) << 8 | Int(message[q + 1])
            continue
          }
          for k in 0...len { out[o + k] = message[q + k] }
          o += 1 + len
          q += 1 + len
        }
        out[o] = 0
        return Array(UnsafeBufferPointer(rebasing: out[0...o]))
      }
    }
    let name = DNSName(validWire: wire)
    remember(name, at: start)
    return name
  }

  /// `known` itself when the name at the cursor is `known` written out uncompressed, octet for octet
  /// (a reply's question echoing the query's): nothing is copied, and the name is remembered for
  /// the pointers that follow. Anything else is read as `name()` reads it.
  mutating func name(reusing known: DNSName) throws(WireError) -> DNSName {
    let count = known.storage.count
    guard pos + count <= end else { return try name() }
    let same = bytes.withUnsafeBufferPointer { message in
      known.storage.withUnsafeBufferPointer { wire in
        var i = 0
        while i < count, message[pos + i] == wire[i] { i += 1 }
        return i == count
      }
    }
    guard same else { return try name() }
    remember(known, at: pos)
    pos += count
    return known
  }

  /// Keeps `name`, read at `offset`, for pointers that reach it later (when `recordNames` is set).
  private mutating func remember(_ name: DNSName, at offset: Int) {
    if recordNames { namesRead.add(name, at: offset) }
  }
}

/// Up to four names with the message offsets they were read at, in fixed slots.
private struct RecentNames {
  private typealias Slot = (offset: Int, name: DNSName)?
  private var slots: (Slot, Slot, Slot, Slot) = (nil, nil, nil, nil)
  private var count = 0

  /// Keeps `name` if a slot is free.
  mutating func add(_ name: DNSName, at offset: Int) {
    switch count {
    case 0: slots.0 = (offset, name)
    case 1: slots.1 = (offset, name)
    case 2: slots.2 = (offset, name)
    case 3: slots.3 = (offset, name)
    default: return
    }
    count += 1
  }

  /// The name kept for `offset`, if any.
  func name(at offset: Int) -> DNSName? {
    if let (at, name) = slots.0, at == offset { return name }
    if let (at, name) = slots.1, at == offset { return name }
    if let (at, name) = slots.2, at == offset { return name }
    if let (at, name) = slots.3, at == offset { return name }
    return nil
  }
}
