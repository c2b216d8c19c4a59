import Synchronization

/// RRset and negative cache with TTL decay and LRU eviction. Thread-safe (internally locked, never across awaits).
///
/// Positive and negative entries share one LRU store capped at `maxEntries`. Keys are
/// (lowercased name, type, class); NXDOMAIN entries use "any type". Expired entries act as
/// absent; they are kept `maxStale` seconds past expiry for serve-stale lookups (RFC 8767) and
/// removed when met after that.
public final class DNSCache: Sendable {
  struct State {
    var store: LRUStore<CacheKey, CacheEntry>
    var statistics = CacheStatistics()
    /// Bit d is set once an NXDOMAIN was stored for a name of d labels (bit 63: 63 or more), and
    /// cleared only by `flushAll`. The RFC 8020 walk stops at the first ancestor shallower than
    /// every such name: a cold resolution otherwise looked up each ancestor up to the root.
    var nxdomainDepths: UInt64 = 0
    /// Expired answers (kept for serve-stale) that lower-ranked data for the same key replaced:
    /// an NS name's address stored as glue by a refresh of its parent's referral. One entry per
    /// key in the store, so they wait here; only serve-stale reads them. At most
    /// `maxDisplacedStale`.
    var displacedStale: [CacheKey: CacheEntry] = [:]
    /// When `displacedStale` is full of entries still kept, the first time one of them goes:
    /// no new one is set aside, nor the list looked through, before then.
    var displacedFullUntil: Double = 0
    /// The latest negative entry's SOA box per zone, shared by the zone's next negative entries
    /// with an equal SOA (`CacheEntry.shareSOA`). At most `maxSharedSOAs` zones.
    var sharedSOAs: [DNSName: CacheEntry.NegativeSOA] = [:]
    /// Per bucket of owner names, how often NS, A or AAAA data was stored there or removed by
    /// `forgetDelegation` (`CacheStamp`; flushes change the generation instead).
    var stampCounts = [UInt32](repeating: 0, count: DNSCache.stampBuckets)
  }

  /// Cap of `State.sharedSOAs`.
  static let maxSharedSOAs = 1_024

  /// Cap of `State.displacedStale`: past it, entries no longer kept are dropped first, then new
  /// ones are not set aside.
  static let maxDisplacedStale = 4_096

  /// The `nxdomainDepths` bit of a name with `labels` labels.
  static func depthBit(_ labels: Int) -> UInt64 { 1 &<< UInt64(min(max(labels, 0), 63)) }

  let configuration: CacheConfiguration
  /// `configuration.maxStale` as the clock's unit.
  let maxStale: Double
  let time: any TimeSource
  let state: StateLock<State>
  private let flushes = Atomic<UInt64>(0)

  /// Changes with every flush; the packet cache drops answers stored under an older value.
  public var generation: UInt64 { flushes.load(ordering: .acquiring) }

  public init(configuration: CacheConfiguration = CacheConfiguration(), time: any TimeSource = SystemTimeSource()) {
    self.configuration = configuration
    self.maxStale = Double(configuration.maxStale)
    self.time = time
    self.state = StateLock(State(store: LRUStore(capacity: configuration.maxEntries)))
  }

  /// Stores an RRset unless a live, higher-ranked copy is held. TTL clamped to [minTTL, maxTTL];
  /// TTL 0 not stored; meta types such as OPT never stored. Replaces a NODATA entry for the
  /// same (name, type, class).
  public func insert(_ rrset: RRset, rank: TrustRank) {
    guard rrset.ttl > 0, !rrset.rdatas.isEmpty, !rrset.type.isMeta else { return }
    let ttl = min(max(rrset.ttl, configuration.minTTL), configuration.maxTTL)
    guard ttl > 0 else { return }
    let key = CacheKey(name: rrset.name, type: rrset.type, rrclass: rrset.rrclass)
    let ownerCase = rrset.name.isLowercase ? nil : rrset.name.storage
    store(
      CacheEntry(
        payload: .positive(rdatas: rrset.rdatas, ownerCase: ownerCase), storedAt: time.now(), ttl: ttl, rank: rank),
      at: key)
  }

  /// The RRset with TTL decayed by residence time, or nil when absent/expired. Counts a hit or miss.
  public func lookup(_ name: DNSName, _ type: RRType, _ rrclass: RRClass = .in) -> (rrset: RRset, rank: TrustRank)? {
    let now = time.now()
    let key = CacheKey(name: name, type: type, rrclass: rrclass)
    return state.withLock { state -> (rrset: RRset, rank: TrustRank)? in
      guard let entry = live(key, at: now, in: &state), case .positive(let rdatas, let ownerCase) = entry.payload
      else {
        state.statistics.misses += 1
        return nil
      }
      state.statistics.hits += 1
      return (Self.rrset(key, type, rdatas, ownerCase, entry, now), entry.rank)
    }
  }

  /// The records' data and rank of a live RRset, as `lookup` finds them (and counted the same way),
  /// without building the owner name and RRset: for the iteration's server lookups, which need
  /// neither.
  func rdatas(_ name: DNSName, _ type: RRType, _ rrclass: RRClass = .in) -> (rdatas: [RData], rank: TrustRank)? {
    let now = time.now()
    let key = CacheKey(name: name, type: type, rrclass: rrclass)
    return state.withLock { state -> (rdatas: [RData], rank: TrustRank)? in
      guard let entry = live(key, at: now, in: &state), case .positive(let rdatas, _) = entry.payload else {
        state.statistics.misses += 1
        return nil
      }
      state.statistics.hits += 1
      return (rdatas, entry.rank)
    }
  }

  /// How many labels above `name` the nearest live `type` RRset is (0: at `name` itself), the root
  /// not looked at; nil when there is none. Each miss and the hit count as `rdatas` counts them.
  /// One lock and no name built per step: the iteration's closest known delegation.
  func labelsAbove(_ name: DNSName, toNearest type: RRType, _ rrclass: RRClass = .in) -> Int? {
    let now = time.now()
    let labels = name.labelCount
    return state.withLock { state -> Int? in
      var key: CacheKey? = CacheKey(name: name, type: type, rrclass: rrclass)
      var up = 0
      while up < labels, let k = key {
        if let entry = live(k, at: now, in: &state), entry.isPositive {
          state.statistics.hits += 1
          return up
        }
        state.statistics.misses += 1
        key = k.parentForAnyType?.with(type: type)
        up += 1
      }
      return nil
    }
  }

  /// Caches NXDOMAIN (type nil) or NODATA (name, type); TTL = min(SOA TTL, SOA minimum, maxNegativeTTL).
  /// Nothing is cached when `soa` is not an SOA record or the TTL comes out 0. Negative entries
  /// rank as `rank` (default authority data of an authoritative answer), so they don't displace live
  /// authoritative answers.
  public func insertNegative(
    name: DNSName, type: RRType?, soa: ResourceRecord, rrclass: RRClass = .in, rank: TrustRank = .authAuthority
  ) {
    let cap = min(configuration.maxNegativeTTL, configuration.maxTTL)
    guard let raw = NegativeAnswer.ttl(for: soa, cap: cap), raw > 0 else { return }
    let ttl = min(max(raw, configuration.minTTL), cap)
    var storedSOA = soa
    storedSOA.ttl = ttl
    let key = CacheKey(name: name, type: type, rrclass: rrclass)
    store(
      CacheEntry(payload: .negative(soa: storedSOA), storedAt: time.now(), ttl: ttl, rank: rank), at: key,
      nxdomainLabels: type == nil ? name.labelCount : nil)
  }

  /// A cached NXDOMAIN for the name (or for an ancestor, RFC 8020 R-23), or NODATA for (name, type).
  /// The SOA comes with its TTL decremented. Counts a negative hit when answered.
  public func lookupNegative(_ name: DNSName, _ type: RRType, _ rrclass: RRClass = .in) -> NegativeAnswer? {
    let now = time.now()
    let own = CacheKey(name: name, type: type, rrclass: rrclass)
    return state.withLock { state -> NegativeAnswer? in
      // NODATA for (name, type), then NXDOMAIN for the name or an ancestor (R-23, RFC 8020).
      if let entry = live(own, at: now, in: &state), let nodata = Self.negative(entry, own, at: now, in: &state) {
        return nodata
      }
      return nxdomain(from: own.with(type: nil), labels: name.labelCount, first: nil, at: now, in: &state)
    }
  }

  /// The SOA box of the negative entry at (name, type), nil if none (tests: boxes are shared).
  func negativeSOABox(_ name: DNSName, _ type: RRType?) -> AnyObject? {
    state.withLock { $0.store.peek(CacheKey(name: name, type: type, rrclass: .in))?.negativeBox }
  }

  /// Removes everything; returns how many entries were removed.
  @discardableResult
  public func flushAll() -> Int {
    defer { flushes.add(1, ordering: .releasing) }
    return state.withLock { state in
      let n = state.store.count
      state.store.removeAll()
      state.displacedStale.removeAll()
      state.sharedSOAs.removeAll()
      state.nxdomainDepths = 0
      return n
    }
  }

  /// Removes every entry owned by exactly `name`, and an NXDOMAIN of a name above it (the cut
  /// that would still deny it, RFC 8020); returns how many.
  @discardableResult
  public func flush(name: DNSName) -> Int {
    let owner = name.lowercasedWire
    return flush { key, _ in key.owner == owner || Self.cuts(key, name) }
  }

  /// Removes every entry owned by `name` or any name below it, and an NXDOMAIN of a name above
  /// it; returns how many.
  @discardableResult
  public func flush(subtree: DNSName) -> Int {
    flush { key, _ in key.name.isSubdomain(of: subtree) || Self.cuts(key, subtree) }
  }

  /// Whether `key` is an NXDOMAIN entry (no type) of a name strictly above `name`.
  private static func cuts(_ key: CacheKey, _ name: DNSName) -> Bool {
    key.type == nil && name.labelCount > key.name.labelCount && name.isSubdomain(of: key.name)
  }

  /// Forgets the delegation of `zone`: its NS set and the addresses of those of its NS
  /// names whose closest cut is `zone` (its glue, only learnt from the parent; a name inside a
  /// child zone below it keeps its addresses, which that child's delegation needs). Returns how
  /// many entries went.
  @discardableResult
  func forgetDelegation(_ zone: DNSName, rrclass: RRClass = .in) -> Int {
    let nsNames = rdatas(zone, .ns, rrclass)?.rdatas.compactMap { r -> DNSName? in
      if case .ns(let n) = r { n } else { nil }
    }
    var keys = [CacheKey(name: zone, type: .ns, rrclass: rrclass)]
    for name in nsNames ?? [] where name.isSubdomain(of: zone) {
      guard let up = labelsAbove(name, toNearest: .ns, rrclass), name.labelCount - up == zone.labelCount else {
        continue
      }
      keys.append(CacheKey(name: name, type: .a, rrclass: rrclass))
      keys.append(CacheKey(name: name, type: .aaaa, rrclass: rrclass))
    }
    // No new generation: answers the packet cache holds stay right (only the way to them changes).
    return state.withLock { state in
      keys.reduce(0) { n, key in
        guard state.store.remove(key) != nil else { return n }
        state.stampCounts[key.stampBucket] &+= 1
        return n + 1
      }
    }
  }

  /// Removes every negative entry (NXDOMAIN and NODATA); returns how many.
  @discardableResult
  public func flushNegative() -> Int {
    flush { _, entry in !entry.isPositive }
  }

  /// Current counters.
  public var statistics: CacheStatistics {
    state.withLock { state in
      var stats = state.statistics
      stats.entries = state.store.count
      return stats
    }
  }

  // MARK: - Internals

  private func store(_ entry: CacheEntry, at key: CacheKey, nxdomainLabels: Int? = nil) {
    var entry = entry
    state.withLock { state in
      if let nxdomainLabels { state.nxdomainDepths |= Self.depthBit(nxdomainLabels) }
      // a live entry of higher rank is kept; equal or higher rank replaces. Positive data
      // always replaces a negative entry, so a stale NODATA never shadows fresh records.
      let now = entry.storedAt
      // One hash lookup for the look and the store (nothing below changes the store before it).
      let slot = state.store.slot(of: key)
      let existing = slot.flatMap { state.store.value(at: $0) }
      if let existing, existing.isLive(at: now), existing.rank > entry.rank,
        !(entry.isPositive && !existing.isPositive)
      {
        return
      }
      if entry.isPositive, entry.rank < .nonAuthAnswer {
        // Glue or referral data over an expired answer still kept: the answer is set aside for
        // serve-stale (RFC 8767), which never answers with glue.
        if let existing, maxStale > 0, existing.isPositive, existing.rank >= .nonAuthAnswer,
          existing.isRetained(at: now, maxStale: maxStale)
        {
          setAside(existing, at: key, now: now, in: &state)
        }
      } else if !state.displacedStale.isEmpty {
        state.displacedStale[key] = nil  // a newer answer
      }
      if !entry.isPositive { entry.shareSOA(in: &state.sharedSOAs, memoCapacity: Self.maxSharedSOAs) }
      if Self.isStamped(key.type) { state.stampCounts[key.stampBucket] &+= 1 }
      if state.store.set(key, entry, slot: slot) != nil {
        state.statistics.evictions += 1
      }
    }
  }

  private func setAside(_ answer: CacheEntry, at key: CacheKey, now: Double, in state: inout State) {
    if state.displacedStale.count >= Self.maxDisplacedStale, state.displacedStale[key] == nil {
      guard now >= state.displacedFullUntil else { return }
      let maxStale = maxStale
      state.displacedStale = state.displacedStale.filter { $0.value.isRetained(at: now, maxStale: maxStale) }
      guard state.displacedStale.count < Self.maxDisplacedStale else {
        state.displacedFullUntil = state.displacedStale.values.lazy.map { $0.expiresAt + maxStale }.min() ?? now
        return
      }
    }
    state.displacedStale[key] = answer
  }

  /// The live entry for `key` (marked recently used), removing it once it has expired and
  /// is no longer kept for serve-stale. A kept expired entry is neither returned nor marked
  /// recently used: the iteration passes over it on every lookup, and it must not push live
  /// entries out of the LRU.
  func live(_ key: CacheKey, at now: Double, in state: inout State) -> CacheEntry? {
    let maxStale = maxStale
    return state.store.get(
      key, removingUnless: { $0.isRetained(at: now, maxStale: maxStale) }, using: { $0.isLive(at: now) })
  }

  private func flush(where matches: @Sendable (CacheKey, CacheEntry) -> Bool) -> Int {
    defer { flushes.add(1, ordering: .releasing) }
    return state.withLock { state in
      let doomed = state.store.keys.filter { key in state.store.peek(key).map { matches(key, $0) } ?? false }
      for key in doomed { state.store.remove(key) }
      state.displacedStale = state.displacedStale.filter { !matches($0.key, $0.value) }
      return doomed.count
    }
  }
}
