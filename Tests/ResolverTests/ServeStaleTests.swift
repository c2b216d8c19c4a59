import Logging
import Synchronization
import Testing

@testable import Resolver

/// Serve-stale (RFC 8767, R-42–R-45): expired data kept past expiry and answered with, TTL 30 and
/// EDE 3, only when the refresh fails.
@Suite struct ServeStaleCacheTests {
  typealias F = CacheFixtures

  func cache(_ time: FakeTimeSource, maxStale: UInt32, maxEntries: Int = 100) -> DNSCache {
    var config = CacheConfiguration()
    config.maxStale = maxStale
    config.maxEntries = maxEntries
    return DNSCache(configuration: config, time: time)
  }

  func staleRRset(_ c: DNSCache, _ name: String, _ type: RRType = .a) -> RRset? {
    if case .rrset(let r) = c.newestStale(F.name(name), type) { return r }
    return nil
  }

  func cname(_ owner: String, _ target: String, ttl: UInt32) -> RRset {
    RRset(name: F.name(owner), type: .cname, ttl: ttl, rdatas: [.cname(F.name(target))])
  }

  @Test func expiredRecordsAreAbsentToNormalLookupsButKeptForStaleOnes() {
    let time = FakeTimeSource()
    let c = cache(time, maxStale: 3_600)
    c.insert(F.aSet("www.example.test.", ttl: 60), rank: .authAnswer)
    time.advance(61)
    #expect(c.lookup(F.name("www.example.test."), .a) == nil)
    let stale = staleRRset(c, "www.example.test.")
    #expect(stale?.ttl == 30)
    #expect(stale?.rdatas == F.aSet("www.example.test.", ttl: 60).rdatas)
    #expect(c.statistics.staleHits == 1)
    #expect(c.statistics.entries == 1)
  }

  @Test func liveRecordsAreNoStaleData() {
    let time = FakeTimeSource()
    let c = cache(time, maxStale: 3_600)
    c.insert(F.aSet("www.example.test.", ttl: 60), rank: .authAnswer)
    time.advance(10)
    #expect(c.newestStale(F.name("www.example.test."), .a) == nil)
    #expect(!c.look(F.name("www.example.test."), .a, checkingStale: true).holdsStale)
    time.advance(51)
    #expect(c.look(F.name("www.example.test."), .a, checkingStale: true).holdsStale)
  }

  @Test func recordsPastTheStaleWindowAreRemoved() {
    let time = FakeTimeSource()
    let c = cache(time, maxStale: 100)
    c.insert(F.aSet("www.example.test.", ttl: 60), rank: .authAnswer)
    time.advance(161)
    #expect(c.lookup(F.name("www.example.test."), .a) == nil)
    #expect(c.newestStale(F.name("www.example.test."), .a) == nil)
    #expect(c.statistics.entries == 0)
  }

  @Test func maxStaleZeroKeepsNothingPastExpiry() {
    let time = FakeTimeSource()
    let c = cache(time, maxStale: 0)
    c.insert(F.aSet("www.example.test.", ttl: 60), rank: .authAnswer)
    time.advance(60)
    #expect(c.lookup(F.name("www.example.test."), .a) == nil)
    #expect(c.newestStale(F.name("www.example.test."), .a) == nil)
    #expect(c.statistics.entries == 0)
  }

  @Test func staleNXDOMAINComesWithTheStaleTTL() {
    let time = FakeTimeSource()
    let c = cache(time, maxStale: 3_600)
    c.insertNegative(name: F.name("nope.example.test."), type: nil, soa: F.soa("example.test.", ttl: 60, minimum: 60))
    time.advance(61)
    #expect(c.lookupNegative(F.name("nope.example.test."), .a) == nil)
    guard case .negative(let stale) = c.newestStale(F.name("nope.example.test."), .a) else {
      Issue.record("no stale NXDOMAIN")
      return
    }
    #expect(stale.nxdomain)
    #expect(stale.soa.ttl == 30)
  }

  @Test func theNewestKeptEntryWins() {
    // A deleted name: its A expired, then an NXDOMAIN was stored (and expired too).
    let time = FakeTimeSource()
    let c = cache(time, maxStale: 3_600)
    c.insert(F.aSet("gone.example.test.", ttl: 60), rank: .authAnswer)
    time.advance(61)
    c.insertNegative(name: F.name("gone.example.test."), type: nil, soa: F.soa("example.test.", ttl: 60, minimum: 60))
    time.advance(61)
    guard case .negative(let neg) = c.newestStale(F.name("gone.example.test."), .a) else {
      Issue.record("the older A record won over the newer NXDOMAIN")
      return
    }
    #expect(neg.nxdomain)
    // A name that became an alias: the CNAME is newer than the old A.
    c.insert(F.aSet("moved.example.test.", ttl: 60), rank: .authAnswer)
    time.advance(61)
    c.insert(cname("moved.example.test.", "new.example.test.", ttl: 60), rank: .authAnswer)
    time.advance(61)
    #expect(staleRRset(c, "moved.example.test.")?.type == .cname)
  }

  @Test func glueIsNoStaleAnswer() {
    // an address learnt as glue is not an answer, stale or not.
    let time = FakeTimeSource()
    let c = cache(time, maxStale: 3_600)
    c.insert(F.aSet("ns1.example.test.", ttl: 60), rank: .glue)
    time.advance(61)
    #expect(c.newestStale(F.name("ns1.example.test."), .a) == nil)
    #expect(!c.look(F.name("ns1.example.test."), .a, checkingStale: true).holdsStale)
  }

  @Test func anExpiredAnswerThatGlueReplacedIsStillAStaleAnswer() {
    // A name that is also a name server: the refresh of its parent's referral stores its address
    // as glue under the same key as the client's old answer.
    let time = FakeTimeSource()
    let c = cache(time, maxStale: 3_600)
    let ns = F.name("ns1.example.test.")
    c.insert(F.aSet("ns1.example.test.", ttl: 60, 7), rank: .authAnswer)
    time.advance(61)
    c.insert(F.aSet("ns1.example.test.", ttl: 60, 3), rank: .glue)
    #expect(c.rdatas(ns, .a)?.rank == .glue)  // the iteration gets the glue
    #expect(c.look(ns, .a, checkingStale: true).holdsStale)
    #expect(staleRRset(c, "ns1.example.test.")?.rdatas == F.aSet("x.", ttl: 1, 7).rdatas)
    // Once the glue has expired too, the old answer is still the one served.
    time.advance(61)
    #expect(staleRRset(c, "ns1.example.test.")?.rdatas == F.aSet("x.", ttl: 1, 7).rdatas)
    // A newer answer replaces it; a flush removes it.
    c.insert(F.aSet("ns1.example.test.", ttl: 60, 9), rank: .authAnswer)
    time.advance(61)
    c.insert(F.aSet("ns1.example.test.", ttl: 60, 3), rank: .glue)
    #expect(staleRRset(c, "ns1.example.test.")?.rdatas == F.aSet("x.", ttl: 1, 9).rdatas)
    c.flush(name: ns)
    #expect(c.newestStale(ns, .a) == nil)
    #expect(!c.look(ns, .a, checkingStale: true).holdsStale)
  }

  @Test func setAsideAnswersAreCappedAndMakeRoomOnceNoLongerKept() {
    let time = FakeTimeSource()
    let c = cache(time, maxStale: 3_600, maxEntries: 10_000)
    let cap = DNSCache.maxDisplacedStale
    for i in 0...cap { c.insert(F.aSet("ns\(i).example.test.", ttl: 60, 7), rank: .authAnswer) }
    time.advance(61)
    for i in 0...cap { c.insert(F.aSet("ns\(i).example.test.", ttl: 60, 3), rank: .glue) }
    #expect(c.state.withLock { $0.displacedStale.count } == cap)
    #expect(staleRRset(c, "ns0.example.test.") != nil)
    #expect(staleRRset(c, "ns\(cap).example.test.") == nil, "one past the cap was set aside")
    // Once those are past max-stale, a new one takes their room.
    time.advance(3_539)
    c.insert(F.aSet("late.example.test.", ttl: 60, 7), rank: .authAnswer)
    time.advance(61)
    c.insert(F.aSet("late.example.test.", ttl: 60, 3), rank: .glue)
    #expect(staleRRset(c, "late.example.test.")?.rdatas == F.aSet("x.", ttl: 1, 7).rdatas)
    #expect(c.state.withLock { $0.displacedStale.count } == 1)
  }

  @Test func keptExpiredEntriesAreEvictedBeforeLiveOnes() {
    // A kept expired entry met by normal lookups is not marked recently used.
    let time = FakeTimeSource()
    let c = cache(time, maxStale: 3_600, maxEntries: 2)
    c.insert(F.aSet("old.example.test.", ttl: 10), rank: .authAnswer)
    c.insert(F.aSet("live.example.test.", ttl: 600), rank: .authAnswer)
    time.advance(11)
    #expect(c.lookup(F.name("old.example.test."), .a) == nil)  // met, expired, kept
    #expect(c.lookup(F.name("live.example.test."), .a) != nil)
    #expect(c.lookup(F.name("old.example.test."), .a) == nil)
    c.insert(F.aSet("new.example.test.", ttl: 600), rank: .authAnswer)  // evicts one
    #expect(c.lookup(F.name("live.example.test."), .a) != nil)
    #expect(c.newestStale(F.name("old.example.test."), .a) == nil)
  }

  @Test func freshDataReplacesStaleData() {
    let time = FakeTimeSource()
    let c = cache(time, maxStale: 3_600)
    c.insert(F.aSet("www.example.test.", ttl: 60, 1), rank: .authAnswer)
    time.advance(61)
    c.insert(F.aSet("www.example.test.", ttl: 60, 2), rank: .nonAuthAnswer)
    #expect(c.lookup(F.name("www.example.test."), .a)?.rrset.rdatas == F.aSet("x.", ttl: 1, 2).rdatas)
  }
}

/// The lock-free empty check of the failure caches (R-24, serve-stale's recheck).
@Suite struct FailureCacheTests {
  @Test func holdsAQuestionForItsTTLOnly() {
    let time = FakeTimeSource()
    let f = FailureCache(ttl: 5, time: time)
    let q = Question(name: name("dead.test."), type: .a)
    #expect(!f.contains(q))
    f.insert(q)
    #expect(f.contains(q))
    #expect(!f.contains(Question(name: name("other.test."), type: .a)))
    time.advance(5)
    #expect(!f.contains(q))
    f.insert(q)
    #expect(f.contains(q))
    f.removeAll()
    #expect(!f.contains(q))
  }

  /// a question that fails again soon after its failure expired is kept twice as long each
  /// time, up to the cap; one quiet for longer than its last span starts again at the TTL.
  @Test func persistingFailuresBackOffToTheCap() {
    let time = FakeTimeSource()
    let f = FailureCache(ttl: 5, maxTTL: 30, time: time)
    let q = Question(name: name("dead.test."), type: .a)
    var spans: [Double] = []
    for _ in 0..<5 {
      // Failures that come together (queries joined to one upstream exchange) are one failure.
      f.insert(q)
      f.insert(q)
      f.insert(q)
      var held = 0.0
      while f.contains(q) {
        time.advance(0.5)
        held += 0.5
      }
      spans.append(held)
      time.advance(1)  // the next client comes a second after it expired, and fails again
    }
    #expect(spans == [5, 10, 20, 30, 30])
    time.advance(31)  // quiet for longer than the last span
    f.insert(q)
    time.advance(5)
    #expect(!f.contains(q))
    // Without a cap: always the TTL.
    let plain = FailureCache(ttl: 5, time: time)
    plain.insert(q)
    time.advance(6)
    plain.insert(q)
    time.advance(5)
    #expect(!plain.contains(q))
  }
}

/// The resolver's side: when the refresh fails, what it answers and how often it tries again.
@Suite struct ServeStaleResolverTests {
  /// What the zone's authority (192.0.2.3) does with a query.
  enum Mode: Sendable { case answer, silent, refused }

  final class Authority: Sendable {
    let mode = Mutex<Mode>(.answer)
    func set(_ m: Mode) { mode.withLock { $0 = m } }
    var script: ScriptedExchanger.Script {
      { q in
        switch self.mode.withLock({ $0 }) {
        case .answer: return answer([record(q.name.description, .a, .a(IPv4Address("198.51.100.7")!))])
        case .silent: return nil
        case .refused:
          var m = Message()
          m.rcode = .refused
          return m
        }
      }
    }
  }

  func setup(
    maxStale: UInt32 = 86_400, maxTTL: UInt32 = 86_400, delay: Duration = .zero, staleAfter: Double = 1.8,
    maxRefreshes: Int = 64
  ) -> (RecursiveResolver, ScriptedExchanger, Authority, FakeTimeSource) {
    let authority = Authority()
    let ex = ScriptedExchanger(
      [
        "192.0.2.1": { _ in referral("test.", ns: ["ns.test."], glue: [("ns.test.", "192.0.2.2")]) },
        "192.0.2.2": { _ in
          referral("example.test.", ns: ["ns.example.test."], glue: [("ns.example.test.", "192.0.2.3")])
        },
        "192.0.2.3": authority.script,
      ], delay: delay)
    var config = ResolverConfiguration()
    config.rootHints = RootHints(unchecked: [(name("a.root."), ["192.0.2.1"])])
    config.primeRoot = false
    config.cache.maxStale = maxStale
    config.cache.maxTTL = maxTTL
    config.staleAnswerAfter = staleAfter
    config.maxBackgroundRefreshes = maxRefreshes
    let time = FakeTimeSource()
    let r = RecursiveResolver(configuration: config, exchanger: ex, time: time, logger: Logger(label: "t"))
    return (r, ex, authority, time)
  }

  let www = Question(name: name("www.example.test."), type: .a)

  @Test func aFailedRefreshIsAnsweredStaleWithTTL30() async {
    let (r, _, authority, time) = setup()
    #expect(await r.resolve(www).stale == false)
    time.advance(301)  // every record of the walk (TTL 300) has expired
    authority.set(.silent)
    let stale = await r.resolve(www)
    #expect(stale.rcode == .noError)
    #expect(stale.stale)
    #expect(stale.answer.map(\.rdata) == [.a(IPv4Address("198.51.100.7")!)])
    #expect(stale.answer.map(\.ttl) == [30])
    #expect(stale.hops.contains { $0.server == "192.0.2.3" && $0.outcome == "timeout" })
    #expect(r.cache.statistics.staleHits >= 1)
  }

  @Test func aNameServersOwnNameKeepsItsStaleAnswerWhenTheRefreshStoresItsGlue() async {
    // ns.example.test. asked by a client, then its zone goes silent: the refresh's referral from
    // test. stores ns.example.test.'s glue under the answer's key. The client still gets the old
    // answer, stale, not SERVFAIL.
    let (r, _, authority, time) = setup()
    let ns = Question(name: name("ns.example.test."), type: .a)
    let fresh = await r.resolve(ns)
    #expect(fresh.answer.map(\.rdata) == [.a(IPv4Address("198.51.100.7")!)])
    time.advance(301)
    authority.set(.silent)
    let stale = await r.resolve(ns)
    #expect(stale.rcode == .noError)
    #expect(stale.stale)
    #expect(stale.answer.map(\.rdata) == [.a(IPv4Address("198.51.100.7")!)])
    #expect(stale.hops.contains { $0.server == "192.0.2.3" && $0.outcome == "timeout" })
  }

  @Test func withinTheRecheckIntervalNoRefreshIsTried() async {
    let (r, ex, authority, time) = setup()
    _ = await r.resolve(www)
    time.advance(301)
    authority.set(.silent)
    _ = await r.resolve(www)
    let asked = ex.queries.count
    time.advance(6)  // past the failure cache (R-24, 5 s), within the stale recheck (R-43, 30 s)
    authority.set(.answer)
    let again = await r.resolve(www)
    #expect(again.stale)
    #expect(again.hops.isEmpty)
    #expect(again.failureReason?.contains("failure recheck") == true)
    #expect(ex.queries.count == asked)
    time.advance(25)  // 31 s after the failure: refreshed
    let fresh = await r.resolve(www)
    #expect(!fresh.stale)
    #expect(fresh.answer.map(\.ttl) == [300])
    #expect(ex.queries.count > asked)
  }

  @Test func aSlowRefreshIsAnsweredStaleByTheClientResponseTimerAndStillRefreshesTheCache() async throws {
    // each upstream query takes 500 ms, so the refresh (root, test., example.test.) takes
    // 1.5 s; the timer (200 ms here, 1.8 s by default) answers stale first.
    // On the engine's executor, like the refresh and its timer: a late resumption of the test
    // task on the global pool must not let the refresh end before the test's next question.
    try await Task(executorPreference: UDPExchangeEngine.shared.taskExecutor) {
      let (r, ex, _, time) = setup(delay: .milliseconds(500), staleAfter: 0.2)
      let background = Mutex<[Hop]>([])
      r.backgroundHops.connect { hops in background.withLock { $0 += hops } }
      _ = await r.resolve(www)
      #expect(ex.queries.count == 3)
      time.advance(301)
      let early = await r.resolve(www)
      #expect(early.stale)
      #expect(early.rcode == .noError)
      #expect(early.answer.map(\.ttl) == [30])
      #expect(early.failureReason?.contains("client response timer") == true)
      // The refresh goes on after its client was answered: the listener counts it.
      #expect(r.backgroundResolutions == 1)
      // While the refresh runs, the question is answered stale at once, not refreshed again.
      let during = await r.resolve(www)
      #expect(during.stale)
      for _ in 0..<100 where !r.core.refreshing.withLock({ $0.isEmpty }) || r.backgroundResolutions != 0 {
        try await Task.sleep(for: .milliseconds(50))
      }
      #expect(r.core.refreshing.withLock { $0.isEmpty })
      #expect(r.backgroundResolutions == 0)
      // The refresh's three queries, sent after its client was answered, reach the monitor
      // (the Privacy counts) though no client's answer carries them.
      #expect(background.withLock { $0.map(\.server) } == ["192.0.2.1", "192.0.2.2", "192.0.2.3"])
      let after = await r.resolve(www)
      #expect(!after.stale)
      #expect(after.fromCache)
      #expect(after.answer.map(\.ttl) == [300])
      #expect(ex.queries.count == 6)
    }.value
  }

  @Test func pastTheRefreshCapStaleDataIsAnsweredWithoutARefresh() async throws {
    // One background refresh at most: while www's runs, www2 (also stale) is answered stale at
    // once and nothing is sent for it.
    // On the engine's executor, like the refresh and its timer: a late resumption of the test
    // task on the global pool must not let the refresh end before the test's next question.
    try await Task(executorPreference: UDPExchangeEngine.shared.taskExecutor) {
      let (r, ex, _, time) = setup(delay: .milliseconds(500), staleAfter: 0.2, maxRefreshes: 1)
      let www2 = Question(name: name("www2.example.test."), type: .a)
      _ = await r.resolve(www)
      _ = await r.resolve(www2)
      time.advance(301)
      #expect(await r.resolve(www).stale)  // by the timer; its refresh goes on
      let asked = ex.queries.count
      let capped = await r.resolve(www2)
      #expect(capped.stale)
      #expect(capped.failureReason?.contains("refreshes already under way") == true)
      #expect(!ex.queries.dropFirst(asked).contains { $0.1.name == name("www2.example.test.") })
      for _ in 0..<100 where !r.core.refreshing.withLock({ $0.isEmpty }) {
        try await Task.sleep(for: .milliseconds(50))
      }
      #expect(r.core.refreshing.withLock { $0.isEmpty })
    }.value
  }

  @Test func withoutStaleDataASlowResolutionIsWaitedFor() async {
    let (r, ex, _, _) = setup(delay: .milliseconds(100), staleAfter: 0.05)
    let res = await r.resolve(www)
    #expect(res.rcode == .noError && !res.stale)
    #expect(r.backgroundResolutions == 0)
    #expect(ex.queries.count == 3)
  }

  @Test func aRefusedRefreshLeavesTheStaleDataInPlace() async {
    // only NOERROR/NXDOMAIN with AA refresh; REFUSED leaves the stale data.
    let (r, _, authority, time) = setup()
    _ = await r.resolve(www)
    time.advance(301)
    authority.set(.refused)
    #expect(await r.resolve(www).stale)
    time.advance(31)
    let second = await r.resolve(www)
    #expect(second.stale)
    #expect(second.rcode == .noError)
  }

  @Test func withServeStaleOffAFailedRefreshIsServfail() async {
    let (r, _, authority, time) = setup(maxStale: 0)
    _ = await r.resolve(www)
    time.advance(301)
    authority.set(.silent)
    let res = await r.resolve(www)
    #expect(res.rcode == .servFail)
    #expect(!res.stale)
  }

  @Test func aNameNeverCachedStillFails() async {
    let (r, _, authority, _) = setup()
    authority.set(.silent)
    let res = await r.resolve(Question(name: name("new.example.test."), type: .a))
    #expect(res.rcode == .servFail)
  }

  @Test func aFreshAnswerCarriesTheCachesMaxTTLNotTheAuthoritys() async {
    // R-16 for the client: the authority says 300 s, the cache keeps it 60 s, so does the answer
    // (else the packet cache and the client would hold it five times longer than the resolver).
    let (r, _, _, _) = setup(maxTTL: 60)
    #expect(await r.resolve(www).answer.map(\.ttl) == [60])
    var config = CacheConfiguration()
    config.minTTL = 10
    config.maxNegativeTTL = 3_600
    var res = Resolution(
      rcode: .nxDomain, answer: [record("a.test.", .a, .a(IPv4Address("198.51.100.7")!))],
      authority: [CacheFixtures.soa("test.", ttl: 7_200, minimum: 90)])
    res.answer[0].ttl = 5
    RecursiveResolver.clampTTLs(&res, config)
    #expect(res.answer.map(\.ttl) == [5])  // a decayed TTL is not raised to minTTL
    #expect(res.authority.map(\.ttl) == [90])  // min(SOA TTL, MINIMUM, cap)
    config.maxNegativeTTL = 30
    RecursiveResolver.clampTTLs(&res, config)
    #expect(res.authority.map(\.ttl) == [30])
  }

  @Test func aLiveAliasIsFollowedBeforeAnOldAddress() async {
    // www was an A record, then became a CNAME to web. With the CNAME live and web's A expired,
    // the stale answer follows the CNAME, not www's old A record (kept, expired, older).
    let (r, _, _, time) = setup()
    r.cache.insert(CacheFixtures.aSet("www.example.test.", ttl: 60), rank: .authAnswer)
    time.advance(61)
    r.cache.insert(
      RRset(name: name("www.example.test."), type: .cname, ttl: 600, rdatas: [.cname(name("web.example.test."))]),
      rank: .authAnswer)
    r.cache.insert(CacheFixtures.aSet("web.example.test.", ttl: 60, 9), rank: .authAnswer)
    time.advance(61)
    let stale = await r.staleResolution(www)
    #expect(stale?.answer.map(\.type) == [.cname, .a])
    #expect(stale?.answer.last?.rdata == CacheFixtures.aSet("x.", ttl: 1, 9).rdatas.first)
  }

  @Test func staleAnswersCarryExtendedDNSError3() throws {
    var query = Message()
    query.questions = [www]
    query.edns = EDNS()
    var resolution = Resolution(
      rcode: .noError, answer: [record("www.example.test.", .a, .a(IPv4Address("198.51.100.7")!))])
    resolution.stale = true
    let response = ResponseBuilder.response(to: query, resolution: resolution)
    #expect(response.edns?.options == [EDNSOption(code: 15, data: [0, 3])])
    let parsed = try Message.parse(ResponseBuilder.serialize(response, for: query, overTCP: false))
    #expect(parsed.edns?.options.contains(EDNSOption(code: 15, data: [0, 3])) == true)
    query.edns = nil
    #expect(ResponseBuilder.response(to: query, resolution: resolution).edns == nil)
    resolution.stale = false
    query.edns = EDNS()
    #expect(ResponseBuilder.response(to: query, resolution: resolution).edns?.options.isEmpty == true)
    // ANY (RFC 8482) is answered from an A lookup; a stale one says so too.
    resolution.stale = true
    query.questions = [Question(name: name("www.example.test."), type: .any)]
    #expect(
      ResponseBuilder.response(to: query, resolution: resolution).edns?.options == [EDNSOption(code: 15, data: [0, 3])])
  }

  /// A stale NXDOMAIN carries EDE 19, "Stale NXDOMAIN Answer" (RFC 8914 §4.20), not 3.
  @Test func staleNXDOMAINCarriesExtendedDNSError19() {
    var query = Message()
    query.questions = [www]
    query.edns = EDNS()
    var resolution = Resolution(rcode: .nxDomain, answer: [])
    resolution.stale = true
    #expect(
      ResponseBuilder.response(to: query, resolution: resolution).edns?.options == [
        EDNSOption(code: 15, data: [0, 19])
      ])
  }
}
