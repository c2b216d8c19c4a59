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
