/// What a memo of data read from the cache depends on: one bucket of owner names and how often
/// NS, A or AAAA data was stored in or removed from that bucket when the memo's data was read.
struct CacheStamp: Equatable, Sendable {
  var bucket: UInt16
  var count: UInt32
}

/// A memo's claim on the cache: its stamps, the generation (flushes) it was made in, and when the
/// first record it used expires.
struct CacheStamps: Sendable {
  var stamps: [CacheStamp] = []
  var generation: UInt64 = 0
  var expiresAt = Double.infinity
  /// The lookups it stands for, counted again as hits and misses each time it is used.
  var hits = 0
  var misses = 0
}

extension DNSCache {
  /// Buckets of owner names whose NS, A and AAAA changes are counted (`CacheStamp`).
  static let stampBuckets = 1_024

  /// Whether `type` is counted in the stamp buckets: what a zone's server addresses are made of.
  static func isStamped(_ type: RRType?) -> Bool { type == .ns || type == .a || type == .aaaa }

  /// Stamps to collect lookups in, made before the first of them (a flush meanwhile then shows).
  func newStamps() -> CacheStamps { CacheStamps(generation: generation) }

  /// `rdatas`, and the stamp of the owner's bucket and the data's expiry added to `stamps` (the
  /// lookup counted there as a hit or a miss), read under one lock with the data.
  func rdatas(
    _ name: DNSName, _ type: RRType, stamping stamps: inout CacheStamps
  ) -> [RData]? {
    let now = time.now()
    let key = CacheKey(name: name, type: type, rrclass: .in)
    let bucket = key.stampBucket
    let (rdatas, expiresAt, count) = state.withLock { state -> ([RData]?, Double, UInt32) in
      let count = state.stampCounts[bucket]
      guard let entry = live(key, at: now, in: &state), case .positive(let rdatas, _) = entry.payload else {
        state.statistics.misses += 1
        return (nil, .infinity, count)
      }
      state.statistics.hits += 1
      return (rdatas, entry.expiresAt, count)
    }
    stamps.stamps.append(CacheStamp(bucket: UInt16(bucket), count: count))
    stamps.expiresAt = min(stamps.expiresAt, expiresAt)
    if rdatas == nil { stamps.misses += 1 } else { stamps.hits += 1 }
    return rdatas
  }

  /// True when nothing `stamps` depends on has changed, been flushed or expired; the lookups they
  /// stand for are then counted as the cache's hits and misses.
  func confirm(_ stamps: CacheStamps) -> Bool {
    let now = time.now()
    guard now < stamps.expiresAt, generation == stamps.generation else { return false }
    return state.withLock { state in
      for s in stamps.stamps where state.stampCounts[Int(s.bucket)] != s.count { return false }
      state.statistics.hits += stamps.hits
      state.statistics.misses += stamps.misses
      return true
    }
  }
}
