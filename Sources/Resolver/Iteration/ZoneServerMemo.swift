/// Each zone's server candidates as `ResolutionRun.addresses(for:)` last assembled them from the
/// cache (its NS names' cached addresses, after policy), kept while the cache confirms that none of
/// the NS, A or AAAA data they came from changed, was flushed or expired (`CacheStamps`). Finding
/// them otherwise takes one cache lookup for the NS set and two per NS name, each hashing its key:
/// 7.6% of a cold resolution's instructions (callgrind). Bounded: emptied when full.
final class ZoneServerMemo: Sendable {
  struct Entry: Sendable {
    var candidates: [Candidate]
    var stamps: CacheStamps
    /// Addresses policy left out while assembling them (`ResolutionRun.skippedByPolicy`).
    var skipped: Int
  }

  /// Zones kept before the table is emptied.
  static let capacity = 4_096
  private let table = StateLock<[DNSName: Entry]>([:])

  /// The candidates kept for `zone` if `cache` confirms them, with the addresses policy skipped.
  func candidates(for zone: DNSName, in cache: DNSCache) -> (candidates: [Candidate], skipped: Int)? {
    guard let entry = table.withLock({ $0[zone] }) else { return nil }
    guard cache.confirm(entry.stamps) else { return nil }
    return (entry.candidates, entry.skipped)
  }

  /// Keeps `entry` for `zone`.
  func remember(_ entry: Entry, for zone: DNSName) {
    table.withLock { t in
      if t.count >= Self.capacity, t[zone] == nil { t.removeAll(keepingCapacity: true) }
      t[zone] = entry
    }
  }

  /// Number of zones kept (tests).
  var count: Int { table.withLock { $0.count } }

  /// Forgets every zone (tests).
  func removeAll() { table.withLock { $0.removeAll() } }
}
