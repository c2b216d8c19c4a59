import Logging
import Testing

@testable import Resolver

/// Each zone's servers are kept from one resolution to the next (`ZoneServerMemo`), but never past
/// a change of the NS or address data they came from, a flush, or its expiry.
@Suite struct ZoneServerMemoTests {
  /// The root (192.0.2.1) delegates `test.` to ns.test. at 192.0.2.2 (glue, TTL 300); the servers
  /// 192.0.2.2 and 192.0.2.3 both answer for it.
  private func lab(time: FakeTimeSource = FakeTimeSource()) -> (RecursiveResolver, ScriptedExchanger) {
    let answerer: ScriptedExchanger.Script = { q in
      answer([record(q.name.description, .a, .a(IPv4Address("198.51.100.7")!))])
    }
    let ex = ScriptedExchanger([
      "192.0.2.1": { _ in referral("test.", ns: ["ns.test."], glue: [("ns.test.", "192.0.2.2")]) },
      "192.0.2.2": answerer, "192.0.2.3": answerer,
    ])
    var config = ResolverConfiguration()
    config.rootHints = RootHints(unchecked: [(name("a.root."), ["192.0.2.1"])])
    config.primeRoot = false
    config.qnameMinimisation = false
    let r = RecursiveResolver(configuration: config, exchanger: ex, time: time, logger: Logger(label: "test"))
    return (r, ex)
  }

  /// The servers each query went to, from the `from`-th query on.
  private func servers(_ ex: ScriptedExchanger, from: Int) -> [String] { ex.queries.dropFirst(from).map(\.0) }

  /// The cache's hit and miss counts for resolving `qname` (the zone's servers known).
  private func lookupCounts(_ r: RecursiveResolver, _ qname: String) async -> (hits: Int, misses: Int) {
    let before = r.cache.statistics
    let res = await r.resolve(Question(name: name(qname), type: .a))
    #expect(res.rcode == .noError)
    let after = r.cache.statistics
    return (after.hits - before.hits, after.misses - before.misses)
  }

  @Test func aZonesServersAreKeptAndCountedAsCacheLookups() async {
    let (r, ex) = lab()
    _ = await r.resolve(Question(name: name("a.test."), type: .a))
    #expect(servers(ex, from: 0) == ["192.0.2.1", "192.0.2.2"])
    #expect(r.core.zoneServers.count == 1)
    let kept = await lookupCounts(r, "b.test.")
    #expect(servers(ex, from: 2) == ["192.0.2.2"])
    // Looked up again (the memo emptied): the same hits and misses as with the kept servers,
    // which stand for the lookups they were made from, so the dashboard's counts do not drop.
    r.core.zoneServers.removeAll()
    let lookedUp = await lookupCounts(r, "c.test.")
    #expect(servers(ex, from: 3) == ["192.0.2.2"])
    #expect(kept == lookedUp)
  }

  /// The servers the next query goes to after `change` to the cache, once a zone's servers are kept.
  private func serversAfter(_ change: (DNSCache) -> Void) async -> [String] {
    let (r, ex) = lab()
    _ = await r.resolve(Question(name: name("a.test."), type: .a))
    change(r.cache)
    _ = await r.resolve(Question(name: name("b.test."), type: .a))
    return servers(ex, from: 2)
  }

  @Test func aNewAddressOfAServerIsUsedAtOnce() async {
    // ns.test. answers for its own address now: 192.0.2.3 replaces the glue (higher rank).
    let used = await serversAfter { $0.insert(CacheFixtures.aSet("ns.test.", ttl: 300, 3), rank: .authAnswer) }
    #expect(used == ["192.0.2.3"])
  }

  @Test func aNewNSSetIsUsedAtOnce() async {
    let used = await serversAfter { cache in
      cache.insert(RRset(name: name("test."), type: .ns, ttl: 300, rdatas: [.ns(name("ns2.test."))]), rank: .authAnswer)
      cache.insert(CacheFixtures.aSet("ns2.test.", ttl: 300, 3), rank: .authAnswer)
    }
    #expect(used == ["192.0.2.3"])
  }

  @Test func flushedOrForgottenServersAreAskedForAgain() async {
    let (r, ex) = lab()
    _ = await r.resolve(Question(name: name("a.test."), type: .a))
    // `sotto ctl flush ns.test.`: the zone's NS set stays, its server's address goes, so the
    // delegation is asked for again (its glue is the only way to the server).
    r.cache.flush(name: name("ns.test."))
    _ = await r.resolve(Question(name: name("b.test."), type: .a))
    #expect(servers(ex, from: 2) == ["192.0.2.1", "192.0.2.2"])
    r.cache.flushAll()
    _ = await r.resolve(Question(name: name("c.test."), type: .a))
    #expect(servers(ex, from: 4) == ["192.0.2.1", "192.0.2.2"])
    _ = r.cache.forgetDelegation(name("test."))
    _ = await r.resolve(Question(name: name("d.test."), type: .a))
    #expect(servers(ex, from: 6) == ["192.0.2.1", "192.0.2.2"])
  }

  @Test func aServerWhoseAddressExpiredIsAskedForAgain() async {
    let time = FakeTimeSource()
    let (r, ex) = lab(time: time)
    _ = await r.resolve(Question(name: name("a.test."), type: .a))
    // The zone's NS set for long, its server's address (192.0.2.3 now) for 100 s.
    r.cache.insert(
      RRset(name: name("test."), type: .ns, ttl: 3_000, rdatas: [.ns(name("ns.test."))]), rank: .authAnswer)
    r.cache.insert(CacheFixtures.aSet("ns.test.", ttl: 100, 3), rank: .authAnswer)
    _ = await r.resolve(Question(name: name("b.test."), type: .a))
    #expect(servers(ex, from: 2) == ["192.0.2.3"])
    time.advance(50)
    _ = await r.resolve(Question(name: name("c.test."), type: .a))
    #expect(servers(ex, from: 3) == ["192.0.2.3"])
    time.advance(60)  // the address has expired; only the root's referral has it again (glue)
    _ = await r.resolve(Question(name: name("d.test."), type: .a))
    #expect(servers(ex, from: 4) == ["192.0.2.1", "192.0.2.2"])
  }
}
