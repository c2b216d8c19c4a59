import Testing

@testable import Resolver

/// A cache that lives until the test process exits, holding a negative entry then: under
/// `make test-asan` LeakSanitizer scans it at exit and reports the entry's SOA box if the cache
/// keeps its pointer where it cannot be seen (as a multi-payload enum did, with the case in the
/// pointer's high bits).
private let cacheAliveAtExit: DNSCache = {
  let cache = CacheFixtures.cache(FakeTimeSource())
  cache.insertNegative(
    name: CacheFixtures.name("kept.example"), type: nil, soa: CacheFixtures.soa("example", ttl: 300, minimum: 300))
  cache.insert(CacheFixtures.aSet("www.example", ttl: 300), rank: .authAnswer)
  return cache
}()

@Suite struct CacheNegativeTests {
  typealias F = CacheFixtures

  @Test func entriesAliveAtExitStayVisibleToLeakSanitizer() {
    #expect(cacheAliveAtExit.lookupNegative(F.name("kept.example"), .a)?.nxdomain == true)
    #expect(cacheAliveAtExit.lookup(F.name("www.example"), .a) != nil)
  }

  @Test func nxdomainIgnoresTypeAndUsesSOAMinimum() {
    let time = FakeTimeSource()
    let cache = F.cache(time)
    cache.insertNegative(name: F.name("nope.example"), type: nil, soa: F.soa("example", ttl: 3600, minimum: 300))
    let answer = cache.lookupNegative(F.name("NOPE.example"), .aaaa)
    #expect(answer?.nxdomain == true)
    #expect(answer?.soa.ttl == 300)
    #expect(answer?.soa.name == F.name("example"))
    time.advance(120)
    #expect(cache.lookupNegative(F.name("nope.example"), .mx)?.soa.ttl == 180)
    time.advance(180)
    #expect(cache.lookupNegative(F.name("nope.example"), .a) == nil)
  }

  @Test func negativeTTLIsSmallestOfSOATTLMinimumAndCap() {
    let time = FakeTimeSource()
    let cache = F.cache(time, maxNegativeTTL: 900)
    cache.insertNegative(name: F.name("a.example"), type: nil, soa: F.soa("example", ttl: 60, minimum: 300))
    cache.insertNegative(name: F.name("b.example"), type: nil, soa: F.soa("example", ttl: 7200, minimum: 86_400))
    #expect(cache.lookupNegative(F.name("a.example"), .a)?.soa.ttl == 60)
    #expect(cache.lookupNegative(F.name("b.example"), .a)?.soa.ttl == 900)
  }

  @Test func negativeEntriesOfAZoneShareOneSOAUntilItChanges() {
    let time = FakeTimeSource()
    let cache = F.cache(time)
    let soa = F.soa("example", ttl: 600, minimum: 600)
    var newer = soa
    newer.rdata = .soa(
      mname: F.name("ns1.example"), rname: F.name("hostmaster.example"), serial: 2, refresh: 7200, retry: 900,
      expire: 1_209_600, minimum: 600)
    cache.insertNegative(name: F.name("a.example"), type: nil, soa: soa)
    cache.insertNegative(name: F.name("b.example"), type: nil, soa: soa)
    cache.insertNegative(name: F.name("www.example"), type: .aaaa, soa: soa)
    cache.insertNegative(name: F.name("c.example"), type: nil, soa: newer)
    cache.insertNegative(name: F.name("d.example"), type: nil, soa: newer)
    let a = cache.negativeSOABox(F.name("a.example"), nil)
    #expect(a != nil)
    #expect(a === cache.negativeSOABox(F.name("b.example"), nil))
    #expect(a === cache.negativeSOABox(F.name("www.example"), .aaaa))
    let c = cache.negativeSOABox(F.name("c.example"), nil)
    #expect(c != nil && c !== a)
    #expect(c === cache.negativeSOABox(F.name("d.example"), nil))
    // Each answer keeps the SOA it came with.
    guard case .soa(_, _, let serialB, _, _, _, _) = cache.lookupNegative(F.name("b.example"), .a)?.soa.rdata,
      case .soa(_, _, let serialD, _, _, _, _) = cache.lookupNegative(F.name("d.example"), .a)?.soa.rdata
    else {
      Issue.record("no SOA in a negative answer")
      return
    }
    #expect(serialB == 1 && serialD == 2)
    // A flush forgets the shared boxes with the entries.
    cache.flushAll()
    cache.insertNegative(name: F.name("e.example"), type: nil, soa: newer)
    #expect(cache.negativeSOABox(F.name("e.example"), nil) !== c)
  }

  @Test func nodataIsPerType() {
    let time = FakeTimeSource()
    let cache = F.cache(time)
    cache.insertNegative(name: F.name("www.example"), type: .aaaa, soa: F.soa("example", ttl: 600, minimum: 600))
    let answer = cache.lookupNegative(F.name("www.example"), .aaaa)
    #expect(answer?.nxdomain == false)
    #expect(answer?.soa.ttl == 600)
    #expect(cache.lookupNegative(F.name("www.example"), .a) == nil)
    #expect(cache.lookupNegative(F.name("sub.www.example"), .aaaa) == nil)
  }

  @Test func withoutSOANothingIsCached() {
    let time = FakeTimeSource()
    let cache = F.cache(time)
    let notSOA = ResourceRecord(name: F.name("example"), type: .ns, ttl: 600, rdata: .ns(F.name("ns.example")))
    cache.insertNegative(name: F.name("x.example"), type: nil, soa: notSOA)
    cache.insertNegative(name: F.name("y.example"), type: nil, soa: F.soa("example", ttl: 0, minimum: 600))
    #expect(cache.lookupNegative(F.name("x.example"), .a) == nil)
    #expect(cache.statistics.entries == 0)
  }

  @Test func ancestorNXDOMAINAnswersForNamesBelow() {  // R-23, RFC 8020
    let time = FakeTimeSource()
    let cache = F.cache(time)
    cache.insertNegative(name: F.name("gone.example"), type: nil, soa: F.soa("example", ttl: 600, minimum: 600))
    let below = cache.lookupNegative(F.name("a.b.Gone.example"), .txt)
    #expect(below?.nxdomain == true)
    #expect(below?.owner == F.name("gone.example"))
    #expect(cache.lookupNegative(F.name("example"), .a) == nil)
    #expect(cache.lookupNegative(F.name("other.example"), .a) == nil)
  }

  /// The walk up skips depths where no NXDOMAIN was stored (and stops above the shallowest one):
  /// cuts at other depths, and cuts stored again after a flush of everything, are still found.
  @Test func ancestorNXDOMAINFoundAcrossSkippedDepths() {  // R-23, RFC 8020
    let time = FakeTimeSource()
    let cache = F.cache(time)
    let soa = F.soa("example", ttl: 600, minimum: 600)
    cache.insertNegative(name: F.name("a.b.c.elsewhere"), type: nil, soa: soa)  // 4 labels
    cache.insertNegative(name: F.name("gone.example"), type: nil, soa: soa)  // 2 labels
    #expect(cache.lookupNegative(F.name("x.y.z.gone.example"), .a)?.owner == F.name("gone.example"))
    #expect(cache.lookupNegative(F.name("q.a.b.c.elsewhere"), .a)?.owner == F.name("a.b.c.elsewhere"))
    #expect(cache.lookupNegative(F.name("b.c.elsewhere"), .a) == nil)
    cache.flushAll()
    #expect(cache.lookupNegative(F.name("x.gone.example"), .a) == nil)
    cache.insertNegative(name: F.name("example"), type: nil, soa: soa)  // 1 label, after the flush
    #expect(cache.lookupNegative(F.name("x.y.example"), .a)?.owner == F.name("example"))
    #expect(cache.lookupNegative(F.name("x.y.example"), .a)?.nxdomain == true)
  }

  /// Depths from 63 labels on share one bit: cuts around that boundary are still found.
  @Test func ancestorNXDOMAINFoundPastSixtyThreeLabels() {  // R-23, RFC 8020
    let time = FakeTimeSource()
    let cache = F.cache(time)
    let soa = F.soa("example", ttl: 600, minimum: 600)
    func name(_ labels: Int, _ tld: String) -> DNSName { F.name(String(repeating: "a.", count: labels - 1) + tld) }
    cache.insertNegative(name: name(62, "one"), type: nil, soa: soa)
    cache.insertNegative(name: name(70, "two"), type: nil, soa: soa)
    #expect(cache.lookupNegative(name(64, "one"), .a)?.owner == name(62, "one"))
    #expect(cache.lookupNegative(name(80, "two"), .a)?.owner == name(70, "two"))
    #expect(cache.lookupNegative(name(69, "two"), .a) == nil)
  }

  @Test func positiveInsertRemovesMatchingNODATA() {
    let time = FakeTimeSource()
    let cache = F.cache(time)
    cache.insertNegative(name: F.name("www.example"), type: .a, soa: F.soa("example", ttl: 600, minimum: 600))
    cache.insert(F.aSet("www.example", ttl: 60), rank: .nonAuthAnswer)
    #expect(cache.lookupNegative(F.name("www.example"), .a) == nil)
    #expect(cache.lookup(F.name("www.example"), .a)?.rrset.ttl == 60)
  }

  @Test func negativeDoesNotDisplaceLiveAuthoritativeAnswer() {
    let time = FakeTimeSource()
    let cache = F.cache(time)
    cache.insert(F.aSet("www.example", ttl: 60), rank: .authAnswer)
    cache.insertNegative(name: F.name("www.example"), type: .a, soa: F.soa("example", ttl: 600, minimum: 600))
    #expect(cache.lookup(F.name("www.example"), .a) != nil)
    #expect(cache.lookupNegative(F.name("www.example"), .a) == nil)
  }
}
