/// One stored item: an RRset or a negative answer, with the time it was stored and its clamped TTL.
struct CacheEntry: Sendable {
  /// What an entry holds, as its readers match on it.
  enum Payload: Sendable {
    /// The set's records; the owner, type and class are the key's. `ownerCase` is the owner's
    /// wire form as received when it differs from the key's lowercase form (else nil, and the key's
    /// bytes are the only copy of the name).
    case positive(rdatas: [RData], ownerCase: [UInt8]?)
    /// NXDOMAIN (key type nil) or NODATA; the SOA's TTL is the negative TTL.
    case negative(soa: ResourceRecord)
  }

  /// A negative entry's SOA, boxed so that the far more common positive entries stay small.
  final class NegativeSOA: Sendable {
    let soa: ResourceRecord
    init(_ soa: ResourceRecord) { self.soa = soa }
  }

  // Stored as plain fields, not as the enum: a multi-payload enum keeps its case in the spare
  // high bits of a pointer (an `indirect` case's box pointer was stored as 0x8000…), which
  // LeakSanitizer cannot recognise, so every negative entry alive at exit was reported as a leak.
  private var rdatas: [RData]
  private var ownerCase: [UInt8]?
  private var negative: NegativeSOA?
  var storedAt: Double
  var ttl: UInt32
  var rank: TrustRank

  init(payload: Payload, storedAt: Double, ttl: UInt32, rank: TrustRank) {
    switch payload {
    case .positive(let rdatas, let ownerCase):
      self.rdatas = rdatas
      self.ownerCase = ownerCase
      self.negative = nil
    case .negative(let soa):
      self.rdatas = []
      self.ownerCase = nil
      self.negative = NegativeSOA(soa)
    }
    self.storedAt = storedAt
    self.ttl = ttl
    self.rank = rank
  }

  /// Takes `memo`'s box for this entry's SOA when it holds an equal record (names compared
  /// ignoring case, as everywhere in the cache), else puts this entry's box there: every
  /// NXDOMAIN and NODATA of a zone carries the same SOA, and one box for all of them spares
  /// ~240 bytes per negative entry. `memo` is emptied when it reaches `memoCapacity` zones.
  mutating func shareSOA(in memo: inout [DNSName: NegativeSOA], memoCapacity: Int) {
    guard let negative else { return }
    if let shared = memo[negative.soa.name], shared.soa == negative.soa {
      self.negative = shared
      return
    }
    if memo.count >= memoCapacity { memo.removeAll(keepingCapacity: true) }
    memo[negative.soa.name] = negative
  }

  /// The entry's records or negative answer.
  var payload: Payload {
    if let negative { return .negative(soa: negative.soa) }
    return .positive(rdatas: rdatas, ownerCase: ownerCase)
  }

  var isPositive: Bool { negative == nil }

  /// The negative entry's SOA box (nil for a positive entry): tests check that entries share it.
  var negativeBox: NegativeSOA? { negative }

  var expiresAt: Double { storedAt + Double(ttl) }

  func isLive(at now: Double) -> Bool { now < expiresAt }

  /// Still kept at `now`: live, or expired less than `maxStale` seconds ago (serve-stale, R-43).
  func isRetained(at now: Double, maxStale: Double) -> Bool { now < expiresAt + maxStale }

  /// TTL left after residence in the cache; at least 1 while the entry is live.
  func remainingTTL(at now: Double) -> UInt32 {
    let elapsed = max(0, now - storedAt).rounded(.down)
    guard elapsed < Double(ttl) else { return 0 }
    return ttl - UInt32(elapsed)
  }
}
