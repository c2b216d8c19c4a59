/// Serve-stale's view of the cache (RFC 8767): expired entries still kept, `maxStale` seconds past
/// their expiry.
extension DNSCache {
  /// What serve-stale can answer (name, type) with from expired entries still kept.
  enum StaleData {
    /// The RRset itself (answer-ranked), or a CNAME RRset for the name; TTL the stale TTL.
    case rrset(RRset)
    /// NODATA for (name, type) or NXDOMAIN for the name; the SOA with the stale TTL.
    case negative(NegativeAnswer)
  }

  /// The most recently stored of the kept expired entries that could answer (name, type): its
  /// RRset or NODATA, a CNAME, an NXDOMAIN for the name. The newest wins, so an NXDOMAIN stored
  /// after a name's records were (a deleted name) is not answered with the old records. An entry
  /// ranked below an answer (glue, referral NS, R-8) does not count, nor does an NXDOMAIN of an
  /// ancestor. Marks the entry recently used and counts a stale hit; nil when there is none or
  /// serve-stale is off. Callers look for live data first.
  func newestStale(_ name: DNSName, _ type: RRType, _ rrclass: RRClass = .in) -> StaleData? {
    guard maxStale > 0 else { return nil }
    let now = time.now()
    let own = CacheKey(name: name, type: type, rrclass: rrclass)
    let tally = StaleTally(now: now, maxStale: maxStale)
    return state.withLock { state -> StaleData? in
      var best: (key: CacheKey, entry: CacheEntry)?
      Self.forEachStaleKey(own, type) { key, isOwn in
        // The own key's answer may have been set aside when glue took its place.
        let aside = isOwn && !state.displacedStale.isEmpty ? state.displacedStale[key] : nil
        for candidate in [state.store.peek(key), aside] {
          guard let entry = candidate,
            tally.couldAnswer(entry, ownKey: isOwn, anyType: key.type == nil),
            best.map({ entry.storedAt > $0.entry.storedAt }) ?? true
          else { continue }
          best = (key, entry)
        }
      }
      guard let (key, entry) = best else { return nil }
      _ = state.store.get(key)  // recently used
      state.statistics.staleHits += 1
      let ttl = configuration.staleTTL
      switch entry.payload {
      case .positive(let rdatas, let ownerCase):
        let owner = DNSName(uncheckedWire: ownerCase ?? key.owner)
        return .rrset(RRset(name: owner, type: key.type ?? type, rrclass: rrclass, ttl: ttl, rdatas: rdatas))
      case .negative(var soa):
        soa.ttl = ttl
        return .negative(NegativeAnswer(nxdomain: key.type == nil, soa: soa, owner: key.name))
      }
    }
  }

  /// Calls `body` with each key serve-stale looks at for (name, type) and whether it is the
  /// question's own: its own, the name's CNAME (unless `type` is CNAME), its NXDOMAIN.
  private static func forEachStaleKey(_ own: CacheKey, _ type: RRType, _ body: (CacheKey, Bool) -> Void) {
    body(own, true)
    if type != .cname { body(own.with(type: .cname), false) }
    body(own.with(type: nil), false)
  }
}
