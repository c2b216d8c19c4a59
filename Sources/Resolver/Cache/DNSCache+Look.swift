/// What the cache holds for a question before anything is sent (R-3 step 1), and serve-stale's
/// check for it (RFC 8767), found under one lock.
struct CacheLook: Sendable {
  /// Live data that answers the question.
  enum Answer: Sendable {
    /// The question's own RRset, answer-ranked, its TTL decayed.
    case rrset(RRset)
    /// The name's CNAME RRset, answer-ranked, for a question of another type.
    case alias(RRset)
    /// NODATA for (name, type), or NXDOMAIN for the name or an ancestor (R-19..R-23).
    case negative(NegativeAnswer)
  }

  /// Nil when no live data answers.
  var answer: Answer?
  /// True when expired entries still kept could answer and no live entry under the name's keys
  /// stands in their way: what arms serve-stale's client response timer. False when not asked.
  var holdsStale: Bool
}

extension DNSCache {
  /// The question's answer from live data, as `lookup(name, type)`, `lookup(name, .cname)` and
  /// `lookupNegative(name, type)` find it in that order (counted as they count; live entries
  /// marked recently used, the own key's once where those marked it again after the CNAME's),
  /// and with `checkingStale` whether serve-stale holds data for it. One lock, and each of the
  /// name's keys (its own, its CNAME, its NXDOMAIN) looked up once: the four calls this replaces
  /// on every resolution took four locks and seven lookups. A look that finds stale data held
  /// counts nothing: its caller then looks again on serve-stale's paths, which count.
  func look(_ name: DNSName, _ type: RRType, _ rrclass: RRClass = .in, checkingStale: Bool) -> CacheLook {
    let now = time.now()
    let own = CacheKey(name: name, type: type, rrclass: rrclass)
    let checkingStale = checkingStale && maxStale > 0
    return state.withLock { state -> CacheLook in
      let counted = state.statistics
      let look = look(own, type, labels: name.labelCount, checkingStale: checkingStale, at: now, in: &state)
      if look.holdsStale { state.statistics = counted }
      return look
    }
  }

  /// `look` under the lock.
  private func look(
    _ own: CacheKey, _ type: RRType, labels: Int, checkingStale: Bool, at now: Double, in state: inout State
  ) -> CacheLook {
    var tally = StaleTally(now: now, maxStale: maxStale)
    let ownEntry = kept(own, at: now, in: &state)
    if checkingStale {
      let aside = state.displacedStale.isEmpty ? nil : state.displacedStale[own]
      tally.see(ownEntry, aside: aside, ownKey: true, anyType: false)
    }
    if let entry = ownEntry, entry.isLive(at: now), case .positive(let rdatas, let ownerCase) = entry.payload {
      state.statistics.hits += 1
      if entry.rank >= .nonAuthAnswer {
        let rrset = Self.rrset(own, type, rdatas, ownerCase, entry, now)
        return CacheLook(answer: .rrset(rrset), holdsStale: false)
      }
    } else {
      state.statistics.misses += 1
    }
    if type != .cname {
      let key = own.with(type: .cname)
      let entry = kept(key, at: now, in: &state)
      if checkingStale { tally.see(entry, aside: nil, ownKey: false, anyType: false) }
      if let entry, entry.isLive(at: now), case .positive(let rdatas, let ownerCase) = entry.payload {
        state.statistics.hits += 1
        if entry.rank >= .nonAuthAnswer, case .cname = rdatas.first {
          let rrset = Self.rrset(key, .cname, rdatas, ownerCase, entry, now)
          return CacheLook(answer: .alias(rrset), holdsStale: tally.holds)
        }
      } else {
        state.statistics.misses += 1
      }
    }
    if let entry = ownEntry, entry.isLive(at: now), let nodata = Self.negative(entry, own, at: now, in: &state) {
      return CacheLook(answer: .negative(nodata), holdsStale: false)
    }
    // Serve-stale looks at the name's NXDOMAIN entry whether or not one was ever stored at its depth.
    let anyType = own.with(type: nil)
    var first: CacheEntry?? = nil
    if checkingStale {
      let entry = kept(anyType, at: now, in: &state)
      tally.see(entry, aside: nil, ownKey: false, anyType: true)
      first = .some(entry)
    }
    let nxdomain = nxdomain(from: anyType, labels: labels, first: first, at: now, in: &state)
    return CacheLook(answer: nxdomain.map { .negative($0) }, holdsStale: tally.holds)
  }

  /// The live NXDOMAIN of the name of `anyType` (an any-type key, `labels` labels) or else of its
  /// nearest ancestor that has one (RFC 8020, R-23), its SOA's TTL decayed, counted as a
  /// negative hit. Depths where no NXDOMAIN was ever stored are skipped (`nxdomainDepths`). `first`
  /// is the entry at `anyType` when the caller has already looked it up.
  func nxdomain(
    from anyType: CacheKey, labels: Int, first: CacheEntry??, at now: Double, in state: inout State
  ) -> NegativeAnswer? {
    let depths = state.nxdomainDepths
    // Whether an NXDOMAIN was ever stored at `depth` labels or above: if not, none is found from there on.
    func reachable(_ depth: Int) -> Bool { depths & (Self.depthBit(depth) | (Self.depthBit(depth) &- 1)) != 0 }
    guard reachable(labels) else { return nil }
    var key = anyType
    var depth = labels
    var prefetched = first
    while true {
      let entry: CacheEntry?
      if let looked = prefetched {
        entry = looked.flatMap { $0.isLive(at: now) ? $0 : nil }
        prefetched = nil
      } else {
        entry = depths & Self.depthBit(depth) == 0 ? nil : live(key, at: now, in: &state)
      }
      if let entry, let answer = Self.negative(entry, key, at: now, in: &state) { return answer }
      // The parent's key is made only when the walk goes on to it.
      depth -= 1
      guard reachable(depth), let parent = key.parentForAnyType else { return nil }
      key = parent
    }
  }

  /// The entry for `key` if still kept, live or expired (marked recently used only when live);
  /// one no longer kept is removed.
  private func kept(_ key: CacheKey, at now: Double, in state: inout State) -> CacheEntry? {
    let maxStale = maxStale
    return state.store.kept(
      key, removingUnless: { $0.isRetained(at: now, maxStale: maxStale) }, marking: { $0.isLive(at: now) })
  }

  /// A live negative entry's answer (NXDOMAIN under an any-type key, else NODATA), its SOA's TTL
  /// decayed, counted as a negative hit; nil for a positive entry.
  static func negative(_ entry: CacheEntry, _ key: CacheKey, at now: Double, in state: inout State) -> NegativeAnswer? {
    guard case .negative(var soa) = entry.payload else { return nil }
    soa.ttl = entry.remainingTTL(at: now)
    state.statistics.negativeHits += 1
    return NegativeAnswer(nxdomain: key.type == nil, soa: soa, owner: key.name)
  }

  /// A live entry's RRset: the owner in the case it was received in, the TTL what remains.
  static func rrset(
    _ key: CacheKey, _ type: RRType, _ rdatas: [RData], _ ownerCase: [UInt8]?, _ entry: CacheEntry, _ now: Double
  ) -> RRset {
    let owner = DNSName(uncheckedWire: ownerCase ?? key.owner)
    return RRset(name: owner, type: type, rrclass: key.rrclass, ttl: entry.remainingTTL(at: now), rdatas: rdatas)
  }
}

/// Serve-stale's verdict over a name's keys (`CacheLook.holdsStale`): some expired entry still
/// kept could answer, and no live one stands in its way.
struct StaleTally {
  let now: Double
  let maxStale: Double
  private var stale = false
  private var live = false

  init(now: Double, maxStale: Double) {
    self.now = now
    self.maxStale = maxStale
  }

  var holds: Bool { stale && !live }

  /// Takes in the entry under one of the name's keys, and for its own key the expired answer set
  /// aside when glue took its place (`aside`). That glue, live, answers no client: it does not
  /// stand in the way of the answer.
  mutating func see(_ entry: CacheEntry?, aside: CacheEntry?, ownKey: Bool, anyType: Bool) {
    let asideAnswers = aside.map { couldAnswer($0, ownKey: true, anyType: false) } ?? false
    stale = stale || asideAnswers
    guard let entry else { return }
    if entry.isLive(at: now) && !(asideAnswers && entry.isPositive && entry.rank < .nonAuthAnswer) { live = true }
    stale = stale || couldAnswer(entry, ownKey: ownKey, anyType: anyType)
  }

  /// An expired entry still kept that can answer: an answer-ranked RRset (of the question's own
  /// type or a CNAME), NODATA under the question's own key, NXDOMAIN under the any-type key.
  func couldAnswer(_ entry: CacheEntry, ownKey: Bool, anyType: Bool) -> Bool {
    guard !entry.isLive(at: now), entry.isRetained(at: now, maxStale: maxStale) else { return false }
    if anyType { return !entry.isPositive }
    if entry.isPositive { return entry.rank >= .nonAuthAnswer }
    return ownKey
  }
}
