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

  @Test func aZonesServersAreKeptAndCountedAsCacheLookups() async {
    let (r, ex) = lab()
    _ = await r.resolve(Question(name: name("a.test."), type: .a))
    #expect(servers(ex, from: 0) == ["192.0.2.1", "192.0.2.2"])
    #expect(r.core.zoneServers.count >= 1)
    let before = r.cache.statistics
    let res = await r.resolve(Question(name: name("b.test."), type: .a))
    #expect(res.rcode == .noError)
    #expect(servers(ex, from: 2) == ["192.0.2.2"])
    // The kept servers stand for the lookups they were made from (the NS set and ns.test.'s A
    // found, its AAAA not): the dashboard's hit and miss counts do not drop.
    let after = r.cache.statistics
    #expect(after.hits - before.hits >= 2)
    #expect(after.misses - before.misses >= 1)
  }

  @Test func aNewAddressOfAServerIsUsedAtOnce() async {
    let (r, ex) = lab()
    _ = await r.resolve(Question(name: name("a.test."), type: .a))
    // ns.test. answers for its own address now: 192.0.2.3 replaces the glue (higher rank).
    r.cache.insert(CacheFixtures.aSet("ns.test.", ttl: 300, 3), rank: .authAnswer)
    _ = await r.resolve(Question(name: name("b.test."), type: .a))
    #expect(servers(ex, from: 2) == ["192.0.2.3"])
  }

  @Test func aNewNSSetIsUsedAtOnce() async {
    let (r, ex) = lab()
    _ = await r.resolve(Question(name: name("a.test."), type: .a))
    r.cache.insert(
      RRset(name: name("test."), type: .ns, ttl: 300, rdatas: [.ns(name("ns2.test."))]), rank: .authAnswer)
    r.cache.insert(CacheFixtures.aSet("ns2.test.", ttl: 300, 3), rank: .authAnswer)
    _ = await r.resolve(Question(name: name("b.test."), type: .a))
    #expect(servers(ex, from: 2) == ["192.0.2.3"])
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
