import Testing

@testable import Resolver

@Suite struct CacheMaintenanceTests {
  typealias F = CacheFixtures

  @Test func evictsLeastRecentlyUsedAtTheCap() {
    let time = FakeTimeSource()
    let cache = F.cache(time, maxEntries: 3)
    cache.insert(F.aSet("one.example", ttl: 300), rank: .authAnswer)
    cache.insert(F.aSet("two.example", ttl: 300), rank: .authAnswer)
    cache.insertNegative(name: F.name("three.example"), type: nil, soa: F.soa("example", ttl: 300, minimum: 300))
    #expect(cache.lookup(F.name("one.example"), .a) != nil)  // one is now the most recent
    cache.insert(F.aSet("four.example", ttl: 300), rank: .authAnswer)  // evicts two
    #expect(cache.lookup(F.name("two.example"), .a) == nil)
    #expect(cache.lookup(F.name("one.example"), .a) != nil)
    #expect(cache.lookupNegative(F.name("three.example"), .a) != nil)
    cache.insert(F.aSet("five.example", ttl: 300), rank: .authAnswer)  // evicts four
    #expect(cache.lookup(F.name("four.example"), .a) == nil)
    #expect(cache.statistics.entries == 3)
    #expect(cache.statistics.evictions == 2)
  }

  @Test func lruStoreOrderAndSlotReuse() {
    var store = LRUStore<String, Int>(capacity: 2)
    #expect(store.set("a", 1) == nil)
    #expect(store.set("b", 2) == nil)
    #expect(store.get("a") == 1)
    #expect(store.keysByRecency == ["a", "b"])
    #expect(store.set("c", 3)?.key == "b")
    #expect(store.keysByRecency == ["c", "a"])
    #expect(store.remove("a") == 1)
    #expect(store.set("d", 4) == nil)
    #expect(store.keysByRecency == ["d", "c"])
    #expect(store.peek("c") == 3)
    #expect(store.keysByRecency == ["d", "c"])
  }

  /// Thousands of random operations against a plain array kept in recency order: the store's
  /// links, slot reuse and eviction must agree with it after every step.
  @Test func lruStoreMatchesAReferenceModel() {
    var store = LRUStore<Int, Int>(capacity: 8)
    var model: [(key: Int, value: Int)] = []  // most recently used first
    var rng = SplitMix64(state: 7)
    for step in 0..<5000 {
      let key = Int(rng.next() % 12)
      switch rng.next() % 5 {
      case 0, 1:
        // Half the stores look first and store through the slot they found (`DNSCache.store`).
        let evicted: (key: Int, value: Int)?
        if step % 2 == 0 {
          evicted = store.set(key, step)
        } else {
          let slot = store.slot(of: key)
          #expect(slot.flatMap { store.value(at: $0) } == model.first(where: { $0.key == key })?.value)
          evicted = store.set(key, step, slot: slot)
        }
        if let i = model.firstIndex(where: { $0.key == key }) {
          model.remove(at: i)
          #expect(evicted == nil)
        } else if model.count == 8 {
          let last = model.removeLast()
          #expect(evicted?.key == last.key && evicted?.value == last.value)
        } else {
          #expect(evicted == nil)
        }
        model.insert((key, step), at: 0)
      case 2:
        let got = store.get(key)
        if let i = model.firstIndex(where: { $0.key == key }) {
          #expect(got == model[i].value)
          model.insert(model.remove(at: i), at: 0)
        } else {
          #expect(got == nil)
        }
      case 3:
        // Odd values are "expired": removed when met.
        let got = store.get(key, removingUnless: { $0 % 2 == 0 })
        if let i = model.firstIndex(where: { $0.key == key }) {
          if model[i].value % 2 == 0 {
            #expect(got == model[i].value)
            model.insert(model.remove(at: i), at: 0)
          } else {
            #expect(got == nil)
            model.remove(at: i)
          }
        } else {
          #expect(got == nil)
        }
      default:
        let removed = store.remove(key)
        if let i = model.firstIndex(where: { $0.key == key }) {
          #expect(removed == model.remove(at: i).value)
        } else {
          #expect(removed == nil)
        }
      }
      #expect(store.keysByRecency == model.map(\.key), "after step \(step)")
      #expect(store.count == model.count)
    }
  }

  @Test func flushAll() {
    let time = FakeTimeSource()
    let cache = F.cache(time)
    cache.insert(F.aSet("one.example", ttl: 300), rank: .authAnswer)
    cache.insertNegative(name: F.name("x.example"), type: nil, soa: F.soa("example", ttl: 300, minimum: 300))
    cache.flushAll()
    #expect(cache.statistics.entries == 0)
    #expect(cache.lookup(F.name("one.example"), .a) == nil)
  }

  @Test func flushNameRemovesAllTypesOfExactlyThatName() {
    let time = FakeTimeSource()
    let cache = F.cache(time)
    cache.insert(F.aSet("www.example", ttl: 300), rank: .authAnswer)
    cache.insertNegative(name: F.name("www.example"), type: .aaaa, soa: F.soa("example", ttl: 300, minimum: 300))
    cache.insert(F.aSet("sub.www.example", ttl: 300), rank: .authAnswer)
    cache.insert(F.aSet("example", ttl: 300), rank: .authAnswer)
    cache.flush(name: F.name("WWW.example"))
    #expect(cache.lookup(F.name("www.example"), .a) == nil)
    #expect(cache.lookupNegative(F.name("www.example"), .aaaa) == nil)
    #expect(cache.lookup(F.name("sub.www.example"), .a) != nil)
    #expect(cache.lookup(F.name("example"), .a) != nil)
  }

  /// `sotto ctl flush api.dev.example` after the name was created below a cached NXDOMAIN for
  /// `dev.example`: that cut (RFC 8020) goes too, else the name stays NXDOMAIN for its TTL.
  @Test func flushingANameRemovesTheNXDOMAINAboveItThatDeniesIt() {
    for subtree in [false, true] {
      let cache = F.cache(FakeTimeSource())
      let soa = F.soa("example", ttl: 300, minimum: 300)
      cache.insertNegative(name: F.name("dev.example"), type: nil, soa: soa)
      cache.insertNegative(name: F.name("other.example"), type: nil, soa: soa)
      cache.insertNegative(name: F.name("example"), type: .mx, soa: soa)  // NODATA above: kept
      #expect(cache.lookupNegative(F.name("api.dev.example"), .a)?.nxdomain == true)
      if subtree {
        cache.flush(subtree: F.name("api.dev.example"))
      } else {
        cache.flush(name: F.name("api.dev.example"))
      }
      #expect(cache.lookupNegative(F.name("api.dev.example"), .a) == nil)
      #expect(cache.lookupNegative(F.name("other.example"), .a)?.nxdomain == true)
      #expect(cache.lookupNegative(F.name("example"), .mx) != nil)
    }
  }

  @Test func flushSubtreeRemovesNameAndEverythingBelow() {
    let time = FakeTimeSource()
    let cache = F.cache(time)
    cache.insert(F.aSet("www.example", ttl: 300), rank: .authAnswer)
    cache.insert(F.aSet("a.b.www.example", ttl: 300), rank: .authAnswer)
    cache.insert(F.aSet("example", ttl: 300), rank: .authAnswer)
    cache.insert(F.aSet("wwwx.example", ttl: 300), rank: .authAnswer)
    cache.flush(subtree: F.name("www.example"))
    #expect(cache.lookup(F.name("www.example"), .a) == nil)
    #expect(cache.lookup(F.name("a.b.www.example"), .a) == nil)
    #expect(cache.lookup(F.name("example"), .a) != nil)
    #expect(cache.lookup(F.name("wwwx.example"), .a) != nil)
    #expect(cache.statistics.entries == 2)
  }

  @Test func forgettingADelegationDropsItsNSSetAndItsOwnGlueOnly() {
    // de. is served by a.nic.de. (inside the child zone nic.de.) and ns.de. (its own glue).
    let time = FakeTimeSource()
    let cache = F.cache(time)
    func ns(_ zone: String, _ names: [String]) -> RRset {
      RRset(name: F.name(zone), type: .ns, ttl: 300, rdatas: names.map { .ns(F.name($0)) })
    }
    cache.insert(ns("de", ["a.nic.de", "ns.de"]), rank: .referralNS)
    cache.insert(ns("nic.de", ["a.nic.de"]), rank: .referralNS)
    cache.insert(F.aSet("a.nic.de", ttl: 300, 1), rank: .additional)
    cache.insert(F.aSet("ns.de", ttl: 300, 2), rank: .additional)
    cache.insert(F.aSet("www.de", ttl: 300, 3), rank: .authAnswer)
    #expect(cache.forgetDelegation(F.name("de")) == 2)
    #expect(cache.lookup(F.name("de"), .ns) == nil)
    #expect(cache.lookup(F.name("ns.de"), .a) == nil)
    // nic.de.'s delegation and its glue stay: nic.de. still needs them.
    #expect(cache.lookup(F.name("nic.de"), .ns) != nil)
    #expect(cache.lookup(F.name("a.nic.de"), .a) != nil)
    #expect(cache.lookup(F.name("www.de"), .a) != nil)
  }

  @Test func statisticsCountHitsMissesAndNegativeHits() {
    let time = FakeTimeSource()
    let cache = F.cache(time)
    cache.insert(F.aSet("www.example", ttl: 300), rank: .authAnswer)
    cache.insertNegative(name: F.name("no.example"), type: nil, soa: F.soa("example", ttl: 300, minimum: 300))
    _ = cache.lookup(F.name("www.example"), .a)
    _ = cache.lookup(F.name("www.example"), .a)
    _ = cache.lookup(F.name("other.example"), .a)
    _ = cache.lookupNegative(F.name("no.example"), .a)
    _ = cache.lookupNegative(F.name("www.example"), .aaaa)
    let stats = cache.statistics
    #expect(stats.entries == 2)
    #expect(stats.hits == 2)
    #expect(stats.misses == 1)
    #expect(stats.negativeHits == 1)
    #expect(stats.evictions == 0)
  }
}
