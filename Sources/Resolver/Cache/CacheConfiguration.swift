/// Settings of the cache; all TTLs in seconds.
public struct CacheConfiguration: Sendable {
  /// Cap on positive and negative entries together; the least recently used entry goes first.
  public var maxEntries = 100_000
  /// Upper bound for stored TTLs.
  public var maxTTL: UInt32 = 86_400
  /// Lower bound for stored TTLs; 0 keeps TTLs as received.
  public var minTTL: UInt32 = 0
  /// Upper bound for negative TTLs.
  public var maxNegativeTTL: UInt32 = 3_600
  /// Serve-stale (RFC 8767): how long an entry is kept past its expiry to answer with when its
  /// authorities fail (R-43: 1–3 days); 0 turns serve-stale off.
  public var maxStale: UInt32 = 86_400
  /// TTL of records handed out stale.
  public var staleTTL: UInt32 = 30
  public init() {}
}

/// Counters the cache keeps for monitoring.
public struct CacheStatistics: Sendable, Hashable {
  /// Live and not yet collected expired entries (positive and negative).
  public var entries = 0
  /// Positive lookups answered.
  public var hits = 0
  /// Positive lookups not answered (absent or expired).
  public var misses = 0
  /// Negative lookups answered (NXDOMAIN or NODATA); unanswered negative lookups are not counted.
  public var negativeHits = 0
  /// Entries dropped to stay within `maxEntries`.
  public var evictions = 0
  /// Expired entries handed out by serve-stale lookups (RFC 8767).
  public var staleHits = 0
  public init() {}
}
