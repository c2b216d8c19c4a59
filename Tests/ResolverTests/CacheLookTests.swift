import Testing

@testable import Resolver

/// `DNSCache.look`: the resolution's first look at the cache and serve-stale's check in one lock
/// must find what the separate lookups found, count and mark the same entries, and hold stale
/// data exactly when serve-stale has some that nothing live stands in front of.
@Suite struct CacheLookTests {
  typealias F = CacheFixtures

  /// SplitMix64: the same cache histories on every run.
  struct Random {
    var state: UInt64
    mutating func next(_ bound: Int) -> Int {
      state &+= 0x9e37_79b9_7f4a_7c15
      var z = state
      z = (z ^ (z >> 30)) &* 0xbf58_476d_1ce4_e5b9
      z = (z ^ (z >> 27)) &* 0x94d0_49bb_1331_11eb
      return Int((z ^ (z >> 31)) % UInt64(bound))
    }
  }

  static let names = ["t.", "a.t.", "B.a.t.", "c.b.a.t.", "x.t."]
  static let ranks: [TrustRank] = [.glue, .nonAuthAnswer, .authAnswer]

  /// One random change, made to every cache of `caches` alike.
  static func change(_ r: inout Random, _ caches: [DNSCache], _ times: [FakeTimeSource]) {
    let name = names[r.next(names.count)]
    let ttl = UInt32(10 + r.next(100))
    let rank = ranks[r.next(ranks.count)]
    switch r.next(6) {
    case 0:
      for c in caches { c.insert(F.aSet(name, ttl: ttl, UInt8(r.state & 0x7F)), rank: rank) }
    case 1:
      let target = F.name(names[r.next(names.count)])
      let set = RRset(name: F.name(name), type: .cname, ttl: ttl, rdatas: [.cname(target)])
      for c in caches { c.insert(set, rank: rank) }
    case 2:
      for c in caches { c.insertNegative(name: F.name(name), type: nil, soa: F.soa("t.", ttl: ttl, minimum: ttl)) }
    case 3:
      let type: RRType = r.next(2) == 0 ? .a : .aaaa
      for c in caches { c.insertNegative(name: F.name(name), type: type, soa: F.soa("t.", ttl: ttl, minimum: ttl)) }
    default:
      let seconds = Double(r.next(90))
      for t in times { t.advance(seconds) }
    }
  }

  /// What the lookups `look` replaces answered, in `ResolutionRun`'s order before it.
  static func separately(_ c: DNSCache, _ name: DNSName, _ type: RRType) -> String {
    if let hit = c.lookup(name, type), hit.rank >= .nonAuthAnswer { return "answer \(hit.rrset)" }
    if type != .cname, let hit = c.lookup(name, .cname), hit.rank >= .nonAuthAnswer,
      case .cname = hit.rrset.rdatas.first
    {
      return "alias \(hit.rrset)"
    }
    if let neg = c.lookupNegative(name, type) { return "negative \(neg)" }
    return "none"
  }

  static func described(_ answer: CacheLook.Answer?) -> String {
    switch answer {
    case .rrset(let rrset): "answer \(rrset)"
    case .alias(let rrset): "alias \(rrset)"
    case .negative(let neg): "negative \(neg)"
    case nil: "none"
    }
  }

  /// Serve-stale's verdict worked out another way: `newestStale` finds something, and no live
  /// entry is under the name's keys but glue standing in for a set-aside answer.
  static func holdsStaleByHand(_ c: DNSCache, _ name: DNSName, _ type: RRType, now: Double) -> Bool {
    let own = CacheKey(name: name, type: type, rrclass: .in)
    let keys = [own] + (type == .cname ? [] : [own.with(type: .cname)]) + [own.with(type: nil)]
    let maxStale = c.maxStale
    let live = c.state.withLock { state in
      keys.contains { key in
        guard let entry = state.store.peek(key), entry.isLive(at: now) else { return false }
        let glue = entry.isPositive && entry.rank < .nonAuthAnswer
        // Glue stands in for an answer set aside only while that answer could still be served.
        let asideServes = state.displacedStale[own].map { aside in
          !aside.isLive(at: now) && aside.isRetained(at: now, maxStale: maxStale) && aside.rank >= .nonAuthAnswer
        }
        return !(key == own && glue && asideServes == true)
      }
    }
    return !live && c.newestStale(name, type) != nil
  }

  @Test(arguments: [UInt32(0), 3_600])
  func oneLookFindsWhatTheSeparateLookupsFound(maxStale: UInt32) {
    var r = Random(state: UInt64(maxStale) + 7)
    let times = [FakeTimeSource(), FakeTimeSource()]
    let caches = times.map { F.cache($0, maxEntries: 64, maxStale: maxStale) }
    var answered = 0
    for _ in 0..<3_000 {
      Self.change(&r, caches, times)
      let name = F.name(Self.names[r.next(Self.names.count)])
      let type = [RRType.a, .aaaa, .cname, .mx][r.next(4)]
      let looked = caches[0].look(name, type, checkingStale: false)
      let expected = Self.separately(caches[1], name, type)
      #expect(Self.described(looked.answer) == expected, "\(name) \(type)")
      #expect(!looked.holdsStale)
      if looked.answer != nil { answered += 1 }
      // Counted and removed alike. (The recency order may differ: the separate lookups marked the
      // own key's live entry twice, before and after the CNAME's.)
      #expect(caches[0].statistics == caches[1].statistics)
      let kept = caches.map { c in Set(c.state.withLock { $0.store.keysByRecency }) }
      #expect(kept[0] == kept[1])
    }
    // The history reaches every kind of answer often enough to mean something.
    #expect(answered > 500)
  }

  @Test func aLookMarksLiveEntriesRecentlyUsedButNotExpiredOnesKeptForServeStale() {
    let time = FakeTimeSource()
    let c = F.cache(time, maxStale: 3_600)
    c.insert(F.aSet("old.t.", ttl: 10), rank: .authAnswer)
    c.insert(F.aSet("live.t.", ttl: 100), rank: .authAnswer)
    c.insert(F.aSet("other.t.", ttl: 100), rank: .authAnswer)
    time.advance(20)
    let order = { c.state.withLock { $0.store.keysByRecency.map(\.name.description) } }
    #expect(order().first == "other.t.")
    let stale = c.look(F.name("old.t."), .a, checkingStale: true)
    #expect(stale.answer == nil && stale.holdsStale)
    #expect(order().first == "other.t.")  // not marked: it would push live entries out
    #expect(order().count == 3)  // kept, not removed
    let live = c.look(F.name("live.t."), .a, checkingStale: true)
    if case .rrset(let rrset) = live.answer { #expect(rrset.ttl == 80) } else { Issue.record("no answer") }
    #expect(!live.holdsStale)
    #expect(order().first == "live.t.")
    time.advance(3_600)
    _ = c.look(F.name("old.t."), .a, checkingStale: true)
    #expect(!order().contains("old.t."))  // past the stale window: removed when met
  }

  @Test func serveStalesCheckHoldsExactlyWhenStaleDataHasNothingLiveInFront() {
    var r = Random(state: 42)
    let times = [FakeTimeSource(), FakeTimeSource(), FakeTimeSource()]
    let caches = times.map { F.cache($0, maxEntries: 64, maxStale: 120) }
    var held = 0
    for _ in 0..<3_000 {
      Self.change(&r, caches, times)
      let name = F.name(Self.names[r.next(Self.names.count)])
      let type = [RRType.a, .aaaa, .cname][r.next(3)]
      let counted = caches.prefix(2).map(\.statistics)
      let looked = caches[0].look(name, type, checkingStale: true)
      #expect(Self.described(looked.answer) == Self.separately(caches[1], name, type), "\(name) \(type)")
      // Counted as the separate lookups count, except a look that holds stale data: it counts
      // nothing (serve-stale's paths look again and count).
      let delta = zip(counted, caches.prefix(2).map(\.statistics)).map { before, after in
        [after.hits - before.hits, after.misses - before.misses, after.negativeHits - before.negativeHits]
      }
      #expect(delta[0] == (looked.holdsStale ? [0, 0, 0] : delta[1]), "\(name) \(type)")
      let byHand = Self.holdsStaleByHand(caches[2], name, type, now: times[2].now())
      #expect(looked.holdsStale == byHand, "\(name) \(type)")
      if looked.holdsStale { held += 1 }
      // (`newestStale` marks and counts in the third cache only; with at most 20 keys in 64 slots
      // nothing is evicted, so its entries stay those of the other two.)
    }
    #expect(held > 100)
  }
}
