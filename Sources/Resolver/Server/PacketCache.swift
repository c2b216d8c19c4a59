import NIOCore

#if canImport(Glibc)
  import Glibc
#elseif canImport(Musl)
  import Musl
#elseif canImport(Darwin)
  import Darwin
#endif

/// Serialized responses to repeated client questions, answered on the receiving thread without
/// parsing the query, a task hop, the resolver or serialization (the cached-answer fast path).
///
/// Keyed by the lowercased question (name wire form, type, class) and what shapes the response
/// (RD, CD, EDNS present, DO). A hit copies the stored response, patches the ID and the client's
/// spelling of the name, and decrements every TTL by the whole seconds since it was stored.
/// Entries expire when their smallest TTL would reach 0, and all die when the resolver's cache is
/// flushed (`DNSCache.generation`). Bounded by `capacity` entries with LRU eviction.
public final class PacketCache: Sendable {
  /// Entries held at most.
  public let capacity: Int
  private let generation: @Sendable () -> UInt64
  private let clock: @Sendable () -> UInt64
  private let store: StateLock<LRUStore<UInt64, Entry>>

  /// One stored response; a class, so the store's nodes and a hit hold one reference each.
  final class Entry: Sendable {
    /// The lowercased question key, checked on a hit (the store is indexed by its hash).
    let key: [UInt8]
    /// The question name as in the stored response (the spelling of the query that filled it).
    let name: [UInt8]
    let response: [UInt8]
    /// Offsets of the 32-bit TTL fields (every record but OPT).
    let ttlOffsets: [UInt16]
    let storedAt: UInt64  // monotonic nanoseconds
    let expiresAt: UInt64
    let generation: UInt64
    let rcode: UInt8

    init(
      key: [UInt8], name: [UInt8], response: [UInt8], ttlOffsets: [UInt16], storedAt: UInt64,
      expiresAt: UInt64, generation: UInt64, rcode: UInt8
    ) {
      self.key = key
      self.name = name
      self.response = response
      self.ttlOffsets = ttlOffsets
      self.storedAt = storedAt
      self.expiresAt = expiresAt
      self.generation = generation
      self.rcode = rcode
    }
  }

  /// A hit: the question's type and the client's spelling of the name (the stored array when the
  /// client spelled it the same way, so no copy), and the response's RCODE (for the monitor).
  struct Hit {
    var name: [UInt8]
    var qtype: UInt16
    var rcode: UInt8
  }

  /// A cache of at most `capacity` responses that dies with every change of `generation`;
  /// `now` is a monotonic clock in nanoseconds (by default the engine's per-round clock).
  public init(
    capacity: Int, generation: @escaping @Sendable () -> UInt64,
    now: @escaping @Sendable () -> UInt64 = { TurnClock.engine.now() }
  ) {
    self.capacity = max(0, capacity)
    self.generation = generation
    self.clock = now
    self.store = StateLock(LRUStore(capacity: max(0, capacity)))
  }

  /// A cache tied to `cache`: flushing it (any flush) empties this one.
  public convenience init(capacity: Int, invalidatedBy cache: DNSCache) {
    self.init(capacity: capacity, generation: { cache.generation })
  }

  /// Responses held now (expired ones included until met).
  public var count: Int { store.withLock { $0.count } }

  /// The current generation; take it before resolving and pass it to `insert`, so an answer that
  /// raced a flush is never stored as current.
  public var currentGeneration: UInt64 { generation() }

  /// The response to `query`, written into a buffer from `allocator`, or nil (not held, expired,
  /// not a plain query, or too large for the client's UDP limit).
  func answer(_ query: ByteBuffer, allocator: ByteBufferAllocator) -> (ByteBuffer, Hit)? {
    answer(query, allocator: allocator, generation: generation())
  }

  /// `answer` with the generation already read. No heap allocation on the way to a hit but the
  /// response buffer: the question key is built and hashed on the stack and compared in place.
  func answer(_ query: ByteBuffer, allocator: ByteBufferAllocator, generation current: UInt64)
    -> (ByteBuffer, Hit)?
  {
    query.withUnsafeReadableBytes { raw -> (ByteBuffer, Hit)? in
      var out: ByteBuffer?
      let hit = answer(raw, generation: current) { size, fill in
        var buffer = allocator.buffer(capacity: size)
        buffer.writeWithUnsafeMutableBytes(minimumWritableBytes: size) { dest in
          fill(dest)
          return size
        }
        out = buffer
        return true
      }
      guard let hit, let out else { return nil }
      return (out, hit)
    }
  }

  /// The response to `query` over TCP or DoT, with its 2-octet length prefix, in a buffer from
  /// `allocator`, or nil. Any stored response fits a stream (none is truncated, and responses
  /// carry no additional records a UDP size limit could have dropped); with `plainEDNSOnly` a
  /// query whose OPT carries options is declined (a padded DoT query needs a padded answer).
  func answerFramed(
    _ query: ByteBuffer, allocator: ByteBufferAllocator, generation current: UInt64, plainEDNSOnly: Bool
  ) -> (ByteBuffer, Hit)? {
    query.withUnsafeReadableBytes { raw -> (ByteBuffer, Hit)? in
      var out: ByteBuffer?
      let hit = answer(raw, generation: current, stream: true, plainEDNSOnly: plainEDNSOnly) { size, fill in
        guard size <= 65_535 else { return false }
        var buffer = allocator.buffer(capacity: size + 2)
        buffer.writeInteger(UInt16(size))
        buffer.writeWithUnsafeMutableBytes(minimumWritableBytes: size) { dest in
          fill(UnsafeMutableRawBufferPointer(rebasing: dest[..<size]))
          return size
        }
        out = buffer
        return true
      }
      guard let hit, let out else { return nil }
      return (out, hit)
    }
  }

  /// `answer` into caller-owned memory (the UDP socket loop's reused send buffers): the response
  /// is written to the start of `dest` and its size returned; nil when not held or larger than `dest`.
  func answer(_ query: UnsafeRawBufferPointer, into dest: UnsafeMutableRawBufferPointer, generation current: UInt64)
    -> (size: Int, hit: Hit)?
  {
    var written = 0
    let hit = answer(query, generation: current) { size, fill in
      guard size <= dest.count else { return false }
      fill(UnsafeMutableRawBufferPointer(rebasing: dest[..<size]))
      written = size
      return true
    }
    return hit.map { (written, $0) }
  }

  /// The lookup shared by both `answer`s: `emit` gets the response size and a function that writes
  /// the patched response into a buffer of exactly that size; it returns false to decline.
  /// `stream`: no UDP size limit applies; `plainEDNSOnly`: decline a query with EDNS options.
  private func answer(
    _ raw: UnsafeRawBufferPointer, generation current: UInt64, stream: Bool = false, plainEDNSOnly: Bool = false,
    emit: (Int, (UnsafeMutableRawBufferPointer) -> Void) -> Bool
  ) -> Hit? {
    guard capacity > 0 else { return nil }
    return withUnsafeTemporaryAllocation(of: UInt8.self, capacity: FastQuestion.maxKeyLength) { keyBuffer -> Hit? in
      guard let q = FastQuestion(raw, key: keyBuffer), !(plainEDNSOnly && q.hasOptions) else { return nil }
      let key = UnsafeBufferPointer(rebasing: keyBuffer[..<q.keyLength])
      let now = clock()
      guard let entry = store.withLock({ $0.get(q.hash) }) else { return nil }
      // A different question with the same hash is a miss.
      guard sameBytes(entry.key, UnsafeRawBufferPointer(key)) else { return nil }
      guard now < entry.expiresAt, entry.generation == current else {
        store.withLock { store in
          if store.peek(q.hash) === entry { store.remove(q.hash) }
        }
        return nil
      }
      let size = entry.response.count
      guard stream || size <= q.maxResponseSize else { return nil }
      // Saturating: an entry stored by another thread may be newer than this round's clock.
      let elapsed = UInt32(clamping: (now > entry.storedAt ? now - entry.storedAt : 0) / 1_000_000_000)
      let clientName = UnsafeRawBufferPointer(rebasing: raw[12..<q.nameEnd])
      let emitted = emit(size) { dest in
        entry.response.withUnsafeBytes { dest.copyMemory(from: $0) }
        dest[0] = raw[0]  // the client's ID
        dest[1] = raw[1]
        // The client's case (0x20 randomisation).
        UnsafeMutableRawBufferPointer(rebasing: dest[12..<q.nameEnd]).copyMemory(from: clientName)
        if elapsed > 0 {
          for offset in entry.ttlOffsets {
            let o = Int(offset)
            let ttl = UInt32(dest[o]) << 24 | UInt32(dest[o + 1]) << 16 | UInt32(dest[o + 2]) << 8 | UInt32(dest[o + 3])
            let left = ttl &- min(ttl, elapsed)
            dest[o] = UInt8(truncatingIfNeeded: left >> 24)
            dest[o + 1] = UInt8(truncatingIfNeeded: left >> 16)
            dest[o + 2] = UInt8(truncatingIfNeeded: left >> 8)
            dest[o + 3] = UInt8(truncatingIfNeeded: left)
          }
        }
      }
      guard emitted else { return nil }
      let name = sameBytes(entry.name, clientName) ? entry.name : Array(clientName)
      return Hit(name: name, qtype: q.qtype, rcode: entry.rcode)
    }
  }

  /// Stores `response` (the wire answer to `query`) when it can be replayed: a plain query,
  /// NOERROR or NXDOMAIN, not truncated, and at least one record with a TTL above 0.
  func insert(response: [UInt8], for query: FastQuery, generation: UInt64) {
    guard capacity > 0, let shape = ResponseShape(response, questionLength: query.name.count) else {
      return
    }
    guard shape.minTTL > 0,
      response[12..<(12 + query.name.count)].elementsEqual(
        query.key[0..<query.name.count], by: { DNSName.lower($0) == $1 })
    else { return }
    let now = clock()
    // The response echoes the client's spelling of the name: keep the query's array then.
    let echoed = response[12..<(12 + query.name.count)]
    let same = response.withUnsafeBytes { sameBytes(query.name, UnsafeRawBufferPointer(rebasing: $0[echoed.indices])) }
    let entry = Entry(
      key: query.key, name: same ? query.name : Array(echoed), response: compact(response),
      ttlOffsets: shape.ttlOffsets, storedAt: now,
      expiresAt: now &+ UInt64(shape.minTTL) * 1_000_000_000, generation: generation,
      rcode: shape.rcode)
    store.withLock { _ = $0.set(query.hash, entry) }
  }

  /// The storage capacity of the response stored for `query`'s question (tests: it is compact).
  func storedCapacity(for query: FastQuery) -> Int? {
    store.withLock { $0.peek(query.hash)?.response.capacity }
  }

  /// Removes everything.
  public func removeAll() { store.withLock { $0.removeAll() } }
}

/// `bytes` in storage of its own size: a serialized response has room for 512 octets or more
/// (`WireWriter`), which 10,000 stored NXDOMAIN answers of ~130 would otherwise keep allocated.
@inline(__always) private func compact(_ bytes: [UInt8]) -> [UInt8] {
  bytes.capacity - bytes.count < 64 ? bytes : bytes.withUnsafeBufferPointer { Array($0) }
}

/// True if `a` holds exactly the bytes of `b` (memcmp, not an element-wise generic loop).
@inline(__always) private func sameBytes(_ a: [UInt8], _ b: UnsafeRawBufferPointer) -> Bool {
  guard a.count == b.count else { return false }
  return a.withUnsafeBytes { a in
    guard let x = a.baseAddress, let y = b.baseAddress else { return a.count == 0 }
    return memcmp(x, y, a.count) == 0
  }
}

/// The parts of a fast-path query a lookup needs, parsed without allocating: the lowercased key
/// (name wire form + type + class + flag byte) goes into a caller's buffer.
struct FastQuestion {
  /// Longest key: a 255-octet name, type, class and the flag byte.
  static let maxKeyLength = 255 + 5

  var nameEnd: Int
  var qtype: UInt16
  var keyLength: Int
  var hash: UInt64
  var maxResponseSize: Int
  /// The query's OPT record carries options (padding, a cookie, ...).
  var hasOptions = false

  /// Parses a query simple enough for the fast path (see `FastQuery`) and writes its key into
  /// `key` (at least `maxKeyLength` long).
  init?(_ raw: UnsafeRawBufferPointer, key: UnsafeMutableBufferPointer<UInt8>) {
    let n = raw.count
    guard n >= 17, key.count >= Self.maxKeyLength else { return nil }
    let flags1 = raw[2]
    let flags2 = raw[3]
    guard flags1 & 0xF8 == 0 else { return nil }  // QR=0, opcode 0, AA/TC clear
    func u16(_ i: Int) -> UInt16 { UInt16(raw[i]) << 8 | UInt16(raw[i + 1]) }
    guard u16(4) == 1, u16(6) == 0, u16(8) == 0 else { return nil }
    let arcount = u16(10)
    guard arcount <= 1 else { return nil }
    var i = 12
    while true {
      guard i < n else { return nil }
      let len = Int(raw[i])
      if len == 0 { break }
      guard len < 64, i + 1 + len < n, i - 12 + 1 + len < 255 else { return nil }
      i += 1 + len
    }
    i += 1
    // The name's wire form, root octet included, copied at once and lowered a word at a time
    // (length octets are below 64, so lowering leaves them alone).
    var k = i - 12
    guard let keyBase = key.baseAddress, let rawBase = raw.baseAddress else { return nil }
    let keyRaw = UnsafeMutableRawPointer(keyBase)
    keyRaw.copyMemory(from: rawBase + 12, byteCount: k)
    var w = 0
    while w + 8 <= k {
      keyRaw.storeBytes(
        of: DNSName.lowerWord(keyRaw.loadUnaligned(fromByteOffset: w, as: UInt64.self)), toByteOffset: w,
        as: UInt64.self)
      w += 8
    }
    while w < k {
      key[w] = DNSName.lower(key[w])
      w += 1
    }
    guard i + 4 <= n else { return nil }
    let nameEnd = i
    let qtype = u16(i)
    let qclass = u16(i + 2)
    guard qclass == 1, qtype != 251, qtype != 252, qtype != 41 else { return nil }  // IN; not IXFR/AXFR/OPT
    i += 4
    var flagByte: UInt8 = (flags1 & 0x01) | (flags2 & 0x10)  // RD, CD
    var maxSize = 512
    if arcount == 1 {
      // OPT: root owner, type 41, class = UDP size, TTL = ext-rcode, version, flags; RDLEN; options.
      guard i + 11 <= n, raw[i] == 0, u16(i + 1) == 41, raw[i + 5] == 0, raw[i + 6] == 0 else {
        return nil
      }
      let udpSize = Int(u16(i + 3))
      let rdlen = Int(u16(i + 9))
      guard i + 11 + rdlen == n else { return nil }
      hasOptions = rdlen > 0
      flagByte |= 0x02 | (raw[i + 7] & 0x80)  // EDNS, DO
      maxSize = min(max(udpSize, 512), Int(ResponseBuilder.ourUDPPayloadSize))
    } else {
      guard i == n else { return nil }
    }
    for d in 0..<4 { key[k + d] = raw[nameEnd + d] }
    key[k + 4] = flagByte
    k += 5
    var hasher = Hasher()
    DNSName.hashWords(UnsafeRawBufferPointer(start: keyRaw, count: k), lowering: false, into: &hasher)
    self.nameEnd = nameEnd
    self.qtype = qtype
    self.keyLength = k
    self.hash = UInt64(bitPattern: Int64(hasher.finalize()))
    self.maxResponseSize = maxSize
  }
}

/// A client query simple enough for the fast path: QR=0, opcode 0, one question of class IN with an
/// uncompressed name, no answer/authority records, and at most an EDNS version 0 OPT with the root
/// owner and extended RCODE 0; nothing after it. Anything else takes the full path.
struct FastQuery {
  var id: UInt16
  /// The question name's wire form as the client sent it.
  var name: [UInt8]
  var qtype: UInt16
  /// Lowercased name + type + class + flag byte (RD, CD, EDNS, DO).
  var key: [UInt8]
  var hash: UInt64
  var maxResponseSize: Int
  /// The query's OPT record carries options.
  var hasOptions = false

  init?(_ buffer: ByteBuffer) {
    guard
      let parsed = buffer.withUnsafeReadableBytes({ raw -> FastQuery? in
        FastQuery(bytes: raw)
      })
    else { return nil }
    self = parsed
  }

  init?(bytes raw: UnsafeRawBufferPointer) {
    let parsed = withUnsafeTemporaryAllocation(of: UInt8.self, capacity: FastQuestion.maxKeyLength) {
      keyBuffer -> FastQuery? in
      guard let q = FastQuestion(raw, key: keyBuffer) else { return nil }
      var query = FastQuery(
        id: UInt16(raw[0]) << 8 | UInt16(raw[1]), name: Array(raw[12..<q.nameEnd]), qtype: q.qtype,
        key: Array(keyBuffer[..<q.keyLength]), hash: q.hash, maxResponseSize: q.maxResponseSize)
      query.hasOptions = q.hasOptions
      return query
    }
    guard let parsed else { return nil }
    self = parsed
  }

  init(id: UInt16, name: [UInt8], qtype: UInt16, key: [UInt8], hash: UInt64, maxResponseSize: Int) {
    self.id = id
    self.name = name
    self.qtype = qtype
    self.key = key
    self.hash = hash
    self.maxResponseSize = maxResponseSize
  }
}

/// Where the TTLs of a serialized response are, its smallest TTL and its RCODE; nil when the
/// response must not be replayed (truncated, an RCODE other than NOERROR/NXDOMAIN, more than one
/// question, or anything unexpected in the wire form).
struct ResponseShape {
  var ttlOffsets: [UInt16] = []
  var minTTL: UInt32 = .max
  var rcode: UInt8

  init?(_ wire: [UInt8], questionLength: Int) {
    let n = wire.count
    guard n >= 12, n <= Int(UInt16.max) else { return nil }
    func u16(_ i: Int) -> Int { Int(wire[i]) << 8 | Int(wire[i + 1]) }
    guard wire[2] & 0x82 == 0x80 else { return nil }  // QR=1, TC=0
    rcode = wire[3] & 0x0F
    guard rcode == 0 || rcode == 3, u16(4) == 1 else { return nil }
    let records = u16(6) + u16(8) + u16(10)
    var i = 12 + questionLength + 4
    guard i <= n, wire[12 + questionLength - 1] == 0 else { return nil }
    for _ in 0..<records {
      // Owner: labels ending in the root or a compression pointer.
      while true {
        guard i < n else { return nil }
        let len = Int(wire[i])
        if len == 0 {
          i += 1
          break
        }
        if len & 0xC0 == 0xC0 {
          i += 2
          break
        }
        guard len < 64 else { return nil }
        i += 1 + len
      }
      guard i + 10 <= n else { return nil }
      let type = u16(i)
      let rdlen = u16(i + 8)
      if type != 41 {
        let ttl =
          UInt32(wire[i + 4]) << 24 | UInt32(wire[i + 5]) << 16 | UInt32(wire[i + 6]) << 8
          | UInt32(wire[i + 7])
        ttlOffsets.append(UInt16(i + 4))
        minTTL = min(minTTL, ttl)
      }
      i += 10 + rdlen
    }
    guard i == n, !ttlOffsets.isEmpty else { return nil }
  }
}
