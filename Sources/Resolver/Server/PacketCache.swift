import NIOCore
import Synchronization

/// Serialized responses to repeated client questions, answered on the event loop without parsing
/// the query, a task hop, the resolver or serialization (the cached-answer fast path).
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
  private let store: Mutex<LRUStore<UInt64, Entry>>

  struct Entry {
    /// The lowercased question key, checked on a hit (the store is indexed by its hash).
    var key: [UInt8]
    var response: [UInt8]
    /// Offsets of the 32-bit TTL fields (every record but OPT).
    var ttlOffsets: [UInt16]
    var storedAt: UInt64  // monotonic nanoseconds
    var expiresAt: UInt64
    var generation: UInt64
    var rcode: UInt8
  }

  /// A cache of at most `capacity` responses that dies with every change of `generation`;
  /// `now` is a monotonic clock in nanoseconds.
  public init(
    capacity: Int, generation: @escaping @Sendable () -> UInt64,
    now: @escaping @Sendable () -> UInt64 = { NIODeadline.now().uptimeNanoseconds }
  ) {
    self.capacity = max(0, capacity)
    self.generation = generation
    self.clock = now
    self.store = Mutex(LRUStore(capacity: max(0, capacity)))
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
  func answer(_ query: ByteBuffer, allocator: ByteBufferAllocator) -> (ByteBuffer, FastQuery)? {
    guard capacity > 0, let q = FastQuery(query) else { return nil }
    let now = clock()
    let current = generation()
    let found: Entry? = store.withLock { store in
      guard let e = store.peek(q.hash) else { return nil }
      guard e.key == q.key, now < e.expiresAt, e.generation == current else {
        if e.key == q.key { store.remove(q.hash) }
        return nil
      }
      return store.get(q.hash)
    }
    guard let entry = found, entry.response.count <= q.maxResponseSize else { return nil }
    let elapsed = UInt32(clamping: (now &- entry.storedAt) / 1_000_000_000)
    var out = allocator.buffer(capacity: entry.response.count)
    out.writeBytes(entry.response)
    out.setInteger(q.id, at: 0)
    out.setBytes(q.name, at: 12)  // the client's case (0x20 randomisation)
    for offset in entry.ttlOffsets {
      let o = Int(offset)
      guard let ttl = out.getInteger(at: o, as: UInt32.self) else { return nil }
      out.setInteger(ttl &- min(ttl, elapsed), at: o)
    }
    return (out, q)
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
    let entry = Entry(
      key: query.key, response: response, ttlOffsets: shape.ttlOffsets, storedAt: now,
      expiresAt: now &+ UInt64(shape.minTTL) * 1_000_000_000, generation: generation,
      rcode: shape.rcode)
    store.withLock { _ = $0.set(query.hash, entry) }
  }

  /// Removes everything.
  public func removeAll() { store.withLock { $0.removeAll() } }
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

  init?(_ buffer: ByteBuffer) {
    guard
      let parsed = buffer.withUnsafeReadableBytes({ raw -> FastQuery? in
        FastQuery(bytes: raw)
      })
    else { return nil }
    self = parsed
  }

  init?(bytes raw: UnsafeRawBufferPointer) {
    let n = raw.count
    guard n >= 17 else { return nil }
    let flags1 = raw[2]
    let flags2 = raw[3]
    guard flags1 & 0xF8 == 0 else { return nil }  // QR=0, opcode 0, AA/TC clear
    func u16(_ i: Int) -> UInt16 { UInt16(raw[i]) << 8 | UInt16(raw[i + 1]) }
    guard u16(4) == 1, u16(6) == 0, u16(8) == 0 else { return nil }
    let arcount = u16(10)
    guard arcount <= 1 else { return nil }
    var i = 12
    var key: [UInt8] = []
    key.reserveCapacity(40)
    while true {
      guard i < n else { return nil }
      let len = Int(raw[i])
      if len == 0 { break }
      guard len < 64, i + 1 + len < n else { return nil }
      key.append(raw[i])
      for j in (i + 1)...(i + len) { key.append(DNSName.lower(raw[j])) }
      i += 1 + len
    }
    key.append(0)
    i += 1
    guard key.count <= 255, i + 4 <= n else { return nil }
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
      flagByte |= 0x02 | (raw[i + 7] & 0x80)  // EDNS, DO
      maxSize = min(max(udpSize, 512), Int(ResponseBuilder.ourUDPPayloadSize))
    } else {
      guard i == n else { return nil }
    }
    key.append(raw[nameEnd])
    key.append(raw[nameEnd + 1])
    key.append(raw[nameEnd + 2])
    key.append(raw[nameEnd + 3])
    key.append(flagByte)
    var hasher = Hasher()
    key.withUnsafeBytes { hasher.combine(bytes: $0) }
    self.id = u16(0)
    self.name = Array(raw[12..<nameEnd])
    self.qtype = qtype
    self.key = key
    self.hash = UInt64(bitPattern: Int64(hasher.finalize()))
    self.maxResponseSize = maxSize
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
