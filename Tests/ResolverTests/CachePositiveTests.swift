import Testing

@testable import Resolver

@Suite struct CachePositiveTests {
  typealias F = CacheFixtures

  @Test func ttlDecaysByResidenceTime() {
    let time = FakeTimeSource()
    let cache = F.cache(time)
    cache.insert(F.aSet("www.example.com", ttl: 300), rank: .authAnswer)
    #expect(cache.lookup(F.name("www.example.com"), .a)?.rrset.ttl == 300)
    time.advance(100.4)
    #expect(cache.lookup(F.name("www.example.com"), .a)?.rrset.ttl == 200)
    time.advance(199)
    #expect(cache.lookup(F.name("www.example.com"), .a)?.rrset.ttl == 1)
  }

  @Test func expiredEntriesAreAbsentAndRemoved() {
    let time = FakeTimeSource()
    let cache = F.cache(time)
    cache.insert(F.aSet("www.example.com", ttl: 60), rank: .authAnswer)
    time.advance(60)
    #expect(cache.lookup(F.name("www.example.com"), .a) == nil)
    #expect(cache.statistics.entries == 0)
  }

  @Test func lookupIgnoresCaseAndKeepsTypeAndClassApart() {
    let time = FakeTimeSource()
    let cache = F.cache(time)
    cache.insert(F.aSet("WWW.Example.COM", ttl: 60), rank: .authAnswer)
    let hit = cache.lookup(F.name("www.example.com"), .a)
    #expect(hit?.rrset.name.description == "WWW.Example.COM.")
    #expect(hit?.rank == .authAnswer)
    #expect(cache.lookup(F.name("www.example.com"), .aaaa) == nil)
    #expect(cache.lookup(F.name("www.example.com"), .a, .ch) == nil)
  }

  @Test func ttlIsClampedOnInsert() {
    let time = FakeTimeSource()
    let cache = F.cache(time, minTTL: 30, maxTTL: 3600)
    cache.insert(F.aSet("long.example", ttl: 604_800), rank: .authAnswer)
    cache.insert(F.aSet("short.example", ttl: 5), rank: .authAnswer)
    #expect(cache.lookup(F.name("long.example"), .a)?.rrset.ttl == 3600)
    #expect(cache.lookup(F.name("short.example"), .a)?.rrset.ttl == 30)
  }

  @Test func ttlZeroAndMetaTypesAreNotStored() {
    let time = FakeTimeSource()
    let cache = F.cache(time, minTTL: 30)
    cache.insert(F.aSet("zero.example", ttl: 0), rank: .authAnswer)
    cache.insert(RRset(name: F.name("."), type: .opt, ttl: 60, rdatas: [.unknown([])]), rank: .authAnswer)
    #expect(cache.lookup(F.name("zero.example"), .a) == nil)
    #expect(cache.statistics.entries == 0)
  }

  @Test func lowerRankNeverOverwritesLiveHigherRank() {
    let time = FakeTimeSource()
    let cache = F.cache(time)
    cache.insert(F.aSet("ns1.example", ttl: 300, 1), rank: .authAnswer)
    cache.insert(F.aSet("ns1.example", ttl: 300, 2), rank: .glue)
    #expect(cache.lookup(F.name("ns1.example"), .a)?.rrset.rdatas == F.aSet("x", ttl: 1, 1).rdatas)
    #expect(cache.lookup(F.name("ns1.example"), .a)?.rank == .authAnswer)
  }

  @Test func equalOrHigherRankReplaces() {
    let time = FakeTimeSource()
    let cache = F.cache(time)
    cache.insert(F.aSet("ns1.example", ttl: 300, 1), rank: .glue)
    cache.insert(F.aSet("ns1.example", ttl: 100, 2), rank: .glue)
    #expect(cache.lookup(F.name("ns1.example"), .a)?.rrset == F.aSet("ns1.example", ttl: 100, 2))
    cache.insert(F.aSet("ns1.example", ttl: 200, 3), rank: .authAnswer)
    let hit = cache.lookup(F.name("ns1.example"), .a)
    #expect(hit?.rrset == F.aSet("ns1.example", ttl: 200, 3))
    #expect(hit?.rank == .authAnswer)
  }

  @Test func lowerRankReplacesExpiredHigherRank() {
    let time = FakeTimeSource()
    let cache = F.cache(time)
    cache.insert(F.aSet("ns1.example", ttl: 10, 1), rank: .authAnswer)
    time.advance(11)
    cache.insert(F.aSet("ns1.example", ttl: 300, 2), rank: .glue)
    #expect(cache.lookup(F.name("ns1.example"), .a)?.rank == .glue)
  }

  @Test func groupsRecordsIntoSetsWithSmallestTTL() {
    let a1 = ResourceRecord(name: F.name("a.example"), type: .a, ttl: 300, rdata: F.aSet("x", ttl: 1, 1).rdatas[0])
    let a2 = ResourceRecord(name: F.name("A.example"), type: .a, ttl: 100, rdata: F.aSet("x", ttl: 1, 2).rdatas[0])
    let dup = ResourceRecord(name: F.name("a.example"), type: .a, ttl: 300, rdata: F.aSet("x", ttl: 1, 1).rdatas[0])
    let ns = ResourceRecord(name: F.name("a.example"), type: .ns, ttl: 50, rdata: .ns(F.name("ns.example")))
    let sets = RRset.group([a1, ns, a2, dup])
    #expect(sets.count == 2)
    #expect(sets[0].type == .a && sets[0].ttl == 100 && sets[0].rdatas.count == 2)
    #expect(sets[1].type == .ns && sets[1].ttl == 50)
    #expect(sets[0].records.allSatisfy { $0.ttl == 100 })
  }

  /// The iteration's closest delegation: the nearest live NS set at or above a name, and how far up.
  @Test func nearestNSSetIsFoundByLabelsAbove() {
    let time = FakeTimeSource()
    let cache = F.cache(time)
    let ns = F.name("ns1.example.com")
    cache.insert(RRset(name: F.name("Example.com"), type: .ns, ttl: 60, rdatas: [.ns(ns)]), rank: .authAuthority)
    cache.insert(RRset(name: F.name("deep.a.example.com"), type: .ns, ttl: 30, rdatas: [.ns(ns)]), rank: .authAuthority)
    cache.insert(F.aSet("x.b.example.com", ttl: 60), rank: .authAnswer)  // not an NS set
    #expect(cache.labelsAbove(F.name("x.b.EXAMPLE.com"), toNearest: .ns) == 2)
    // Counted as `rdatas` counts its lookups: a miss per level walked, then the hit.
    #expect(cache.statistics.misses == 2 && cache.statistics.hits == 1)
    #expect(cache.labelsAbove(F.name("example.com"), toNearest: .ns) == 0)
    #expect(cache.labelsAbove(F.name("w.x.deep.a.example.com"), toNearest: .ns) == 2)
    #expect(cache.labelsAbove(F.name("example.org"), toNearest: .ns) == nil)
    time.advance(30)  // the deeper cut expires: the search goes on to example.com
    #expect(cache.labelsAbove(F.name("w.x.deep.a.example.com"), toNearest: .ns) == 4)
    let cached = F.name("www.Example.com")
    cache.insert(RRset(name: .root, type: .ns, ttl: 60, rdatas: [.ns(ns)]), rank: .authAuthority)
    #expect(cache.labelsAbove(F.name("example.net"), toNearest: .ns) == nil, "the root is not looked at")
    #expect(cache.labelsAbove(cached, toNearest: .ns) == 1)
  }
}
