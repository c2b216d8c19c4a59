// CONTRACT STUBS: the cache helper replaces these with real implementations and deletes this file.

/// Trust ranking of cached data (RFC 2181 §5.4.1, R-8): higher wins, lower never overwrites higher.
public enum TrustRank: Int, Sendable, Comparable {
  case glue = 0
  case referralNS = 1
  case additional = 2
  case nonAuthAnswer = 3
  case authAuthority = 4
  case authAnswer = 5
  public static func < (a: TrustRank, b: TrustRank) -> Bool { a.rawValue < b.rawValue }
}

/// A set of records with the same owner, type and class.
public struct RRset: Sendable, Hashable {
  public var name: DNSName
  public var type: RRType
  public var rrclass: RRClass
  public var ttl: UInt32
  public var rdatas: [RData]
  public init(name: DNSName, type: RRType, rrclass: RRClass = .in, ttl: UInt32, rdatas: [RData]) {
    self.name = name; self.type = type; self.rrclass = rrclass; self.ttl = ttl; self.rdatas = rdatas
  }
  /// The set as individual records (all with the set's TTL).
  public var records: [ResourceRecord] {
    rdatas.map { ResourceRecord(name: name, type: type, rrclass: rrclass, ttl: ttl, rdata: $0) }
  }
  /// Groups records into sets by (name, type, class); TTL = smallest of the group.
  public static func group(_ records: [ResourceRecord]) -> [RRset] { fatalError("stub") }
}

/// A negative answer from the cache: NXDOMAIN for the name or NODATA for (name, type) (R-19..R-22).
public struct NegativeAnswer: Sendable, Hashable {
  public var nxdomain: Bool
  /// The SOA that justified caching, TTL already decremented.
  public var soa: ResourceRecord
}

/// Settings of the cache; all TTLs in seconds.
public struct CacheConfiguration: Sendable {
  public var maxEntries = 100_000
  public var maxTTL: UInt32 = 86_400
  public var minTTL: UInt32 = 0
  public var maxNegativeTTL: UInt32 = 3_600
  public init() {}
}

/// Counters the cache keeps for monitoring.
public struct CacheStatistics: Sendable {
  public var entries = 0
  public var hits = 0
  public var misses = 0
  public var evictions = 0
}

/// RRset and negative cache with TTL decay and LRU eviction. Thread-safe (internally locked, never across awaits).
public final class DNSCache: Sendable {
  public init(configuration: CacheConfiguration = CacheConfiguration(), time: any TimeSource = SystemTimeSource()) { fatalError("stub") }

  /// Stores an RRset unless a fresher, higher-ranked copy is held. TTL clamped to [minTTL, maxTTL]; TTL 0 not stored.
  public func insert(_ rrset: RRset, rank: TrustRank) { fatalError("stub") }
  /// The RRset with TTL decayed by residence time, or nil when absent/expired. Counts a hit or miss.
  public func lookup(_ name: DNSName, _ type: RRType, _ rrclass: RRClass = .in) -> (rrset: RRset, rank: TrustRank)? { fatalError("stub") }
  /// Caches NXDOMAIN (type nil) or NODATA (name, type); TTL = min(SOA TTL, SOA minimum, maxNegativeTTL).
  public func insertNegative(name: DNSName, type: RRType?, soa: ResourceRecord, rrclass: RRClass = .in) { fatalError("stub") }
  /// A cached NXDOMAIN for the name (or for an ancestor, RFC 8020 R-23), or NODATA for (name, type).
  public func lookupNegative(_ name: DNSName, _ type: RRType, _ rrclass: RRClass = .in) -> NegativeAnswer? { fatalError("stub") }
  /// Removes everything.
  public func flushAll() { fatalError("stub") }
  /// Removes every entry owned by exactly `name`.
  public func flush(name: DNSName) { fatalError("stub") }
  /// Removes every entry owned by `name` or any name below it.
  public func flush(subtree: DNSName) { fatalError("stub") }
  /// Current counters.
  public var statistics: CacheStatistics { fatalError("stub") }
}
