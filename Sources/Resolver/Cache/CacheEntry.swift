/// One stored item: an RRset or a negative answer, with the time it was stored and its clamped TTL.
struct CacheEntry: Sendable {
  enum Payload: Sendable {
    /// The set's records; the owner, type and class are the key's. `ownerCase` is the owner's
    /// wire form as received when it differs from the key's lowercase form (else nil, and the key's
    /// bytes are the only copy of the name).
    case positive(rdatas: [RData], ownerCase: [UInt8]?)
    /// NXDOMAIN (key type nil) or NODATA; the SOA's TTL is the negative TTL. Boxed, so
    /// the far more common positive entries stay small.
    indirect case negative(soa: ResourceRecord)
  }

  var payload: Payload
  var storedAt: Double
  var ttl: UInt32
  var rank: TrustRank

  var isPositive: Bool {
    if case .positive = payload { return true }
    return false
  }

  var expiresAt: Double { storedAt + Double(ttl) }

  func isLive(at now: Double) -> Bool { now < expiresAt }

  /// TTL left after residence in the cache; at least 1 while the entry is live.
  func remainingTTL(at now: Double) -> UInt32 {
    let elapsed = max(0, now - storedAt).rounded(.down)
    guard elapsed < Double(ttl) else { return 0 }
    return ttl - UInt32(elapsed)
  }
}
