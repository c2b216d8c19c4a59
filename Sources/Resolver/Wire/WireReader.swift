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

  /// Labels read so far with their offsets, when `recordLabels` is set: a label reached again
  /// through a compression pointer shares the array read the first time instead of a new copy
  /// (most names in a response point into the question's).
  private var labelsRead: [(offset: Int, label: [UInt8])] = []
  /// Whether `name()` remembers labels (set for messages with more than the question's name).
  var recordLabels = false
  private static let maxRecordedLabels = 64

  /// Reads a possibly compressed name. Pointers must point strictly before themselves; loops,
  /// reserved label types and the 63/255 octet limits are rejected.
  mutating func name() throws(WireError) -> DNSName {
    var labels: [[UInt8]] = []
    labels.reserveCapacity(6)
    var total = 1
    var p = pos
    var limit = end
    var jumped = false
    var jumps = 0
    // Each pointer must land before the previous one's target: the labels between a target and the
    // next pointer are the name's own, so landing at or after the last target is a loop.
    var lastTarget = Int.max
    while true {
      guard p < limit else { throw jumped ? .truncated(offset: p) : overrun(at: p) }
      let len = Int(bytes[p])
      switch len & 0xC0 {
      case 0x00:
        if len == 0 {
          if !jumped { pos = p + 1 }
          return DNSName(uncheckedLabels: labels)
        }
        total += len + 1
        if total > 255 { throw .nameTooLong(length: total) }
        guard p + 1 + len <= limit else { throw jumped ? .truncated(offset: p) : overrun(at: p) }
        labels.append(label(at: p, length: len, reached: jumped))
        p += 1 + len
      case 0xC0:
        guard p + 1 < limit else { throw jumped ? .truncated(offset: p) : overrun(at: p) }
        let target = (len & 0x3F) << 8 | Int(bytes[p + 1])
        if target == p || target >= lastTarget { throw .pointerLoop(offset: p) }
        if target > p { throw .forwardPointer(offset: p) }
        jumps += 1
        if jumps > WireReader.maxPointerJumps { throw .pointerLoop(offset: p) }
        lastTarget = target
        if !jumped { pos = p + 2 }
        jumped = true
        limit = bytes.count
        p = target
      default:
        throw .badLabelType(offset: p)
      }
    }
  }

  /// `known` itself when the name at the cursor is `known` written out uncompressed, octet for octet
  /// (a reply's question echoing the query's): no label is copied, and its labels are remembered
  /// for the pointers that follow. Anything else is read as `name()` reads it.
  mutating func name(reusing known: DNSName) throws(WireError) -> DNSName {
    var p = pos
    for label in known.labels {
      guard p + 1 + label.count <= end, Int(bytes[p]) == label.count,
        bytes[(p + 1)..<(p + 1 + label.count)].elementsEqual(label)
      else { return try name() }
      p += 1 + label.count
    }
    guard p < end, bytes[p] == 0 else { return try name() }
    var offset = pos
    for label in known.labels {
      remember(label, at: offset)
      offset += 1 + label.count
    }
    pos = p + 1
    return known
  }

  /// The label of `length` octets after the length octet at `offset`: the array read there before
  /// when one was (only looked up for labels reached through a pointer), else a new copy.
  private mutating func label(at offset: Int, length: Int, reached viaPointer: Bool) -> [UInt8] {
    if viaPointer, let known = labelsRead.first(where: { $0.offset == offset }) { return known.label }
    let label = Array(bytes[offset + 1..<offset + 1 + length])
    remember(label, at: offset)
    return label
  }

  /// Keeps `label`, read at `offset`, for pointers that reach it later (when `recordLabels` is set).
  private mutating func remember(_ label: [UInt8], at offset: Int) {
    guard recordLabels, labelsRead.count < Self.maxRecordedLabels else { return }
    if labelsRead.isEmpty { labelsRead.reserveCapacity(16) }
    labelsRead.append((offset, label))
  }
}
