import Logging
import NIOCore
import Synchronization
import Testing

@testable import Resolver

/// A scripted upstream: each server address answers with a closure; every query is recorded.
final class ScriptedExchanger: UpstreamExchanger {
  typealias Script = @Sendable (Question) -> Message?
  typealias QueryScript = @Sendable (Message) -> Message?
  let scripts: [String: Script]
  /// Per server, a script that sees the whole query (its EDNS included); before `scripts`.
  let queryScripts: [String: QueryScript]
  let log = Mutex<[(String, Question)]>([])
  /// Per query sent: the server and whether the query carried EDNS.
  let ednsLog = Mutex<[(String, Bool)]>([])
  let delay: Duration
  /// Timeouts say the caller's budget cut them short (`ExchangeResult.cutShort`).
  let cutShort: Bool
  /// What a server without a reply fails with (a timeout unless a test says otherwise).
  let failure = Mutex<TransportError>(.timeout)

  init(
    _ scripts: [String: Script], queryScripts: [String: QueryScript] = [:], delay: Duration = .zero,
    cutShort: Bool = false
  ) {
    self.scripts = scripts
    self.queryScripts = queryScripts
    self.delay = delay
    self.cutShort = cutShort
  }

  var queries: [(String, Question)] { log.withLock { $0 } }

  nonisolated(nonsending) func exchange(
    _ query: Message, server: ServerEndpoint, context: ExchangeContext, timeout: TimeAmount
  ) async -> ExchangeResult {
    guard let q = query.questions.first else { return ExchangeResult(legs: [], response: nil) }
    log.withLock { $0.append((server.ip, q)) }
    ednsLog.withLock { $0.append((server.ip, query.edns != nil)) }
    if delay > .zero { try? await Task.sleep(for: delay) }
    let scripted = queryScripts[server.ip].map { $0(query) } ?? scripts[server.ip].flatMap { $0(q) }
    guard var reply = scripted else {
      let error = failure.withLock { $0 }
      var leg = ExchangeLeg(transport: .do53UDP, rttMs: nil, error: error, truncated: false)
      leg.cutShort = cutShort && error == .timeout
      return ExchangeResult(legs: [leg], response: nil, cutShort: cutShort)
    }
    reply.header.id = query.header.id
    reply.header.qr = true
    reply.questions = [q]
    return ExchangeResult(
      legs: [ExchangeLeg(transport: .do53UDP, rttMs: 1, error: nil, truncated: false)], response: reply)
  }
}

func name(_ s: String) -> DNSName { (try? DNSName(s)) ?? .root }
func record(_ owner: String, _ type: RRType, _ rdata: RData) -> ResourceRecord {
  ResourceRecord(name: name(owner), type: type, ttl: 300, rdata: rdata)
}
func referral(_ child: String, ns: [String], glue: [(String, String)] = []) -> Message {
  var m = Message()
  m.authority = ns.map { record(child, .ns, .ns(name($0))) }
  m.additional = glue.compactMap { g in IPv4Address(g.1).map { record(g.0, .a, .a($0)) } }
  return m
}
func answer(_ records: [ResourceRecord]) -> Message {
  var m = Message()
  m.header.aa = true
  m.answers = records
  return m
}

/// A resolver whose root hint is 192.0.2.1 (no priming), asking `exchanger`; `tweak` sets the rest.
func scriptedResolver(_ exchanger: ScriptedExchanger, _ tweak: (inout ResolverConfiguration) -> Void = { _ in })
  -> RecursiveResolver
{
  var config = ResolverConfiguration()
  config.rootHints = RootHints(unchecked: [(name("a.root."), ["192.0.2.1"])])
  config.primeRoot = false
  tweak(&config)
  return RecursiveResolver(
    configuration: config, exchanger: exchanger, time: SystemTimeSource(), logger: Logger(label: "test"))
}

@Suite struct IterationResolverTests {
  func resolver(_ exchanger: ScriptedExchanger, _ tweak: (inout ResolverConfiguration) -> Void = { _ in })
    -> RecursiveResolver
  { scriptedResolver(exchanger, tweak) }

  @Test func walksDownWithMinimisedNamesAndCachesTheAnswer() async {
    let ex = ScriptedExchanger([
      "192.0.2.1": { _ in referral("test.", ns: ["ns.test."], glue: [("ns.test.", "192.0.2.2")]) },
      "192.0.2.2": { _ in referral("example.test.", ns: ["ns.example.test."], glue: [("ns.example.test.", "192.0.2.3")])
      },
      "192.0.2.3": { q in answer([record(q.name.description, .a, .a(IPv4Address("198.51.100.7")!))]) },
    ])
    let r = resolver(ex)
    let first = await r.resolve(Question(name: name("www.example.test."), type: .a))
    #expect(first.rcode == .noError)
    #expect(first.answer.map(\.rdata) == [.a(IPv4Address("198.51.100.7")!)])
    #expect(ex.queries.map { $0.1.name.description } == ["test.", "example.test.", "www.example.test."])
    #expect(ex.queries.map { $0.1.type } == [.a, .a, .a])
    let second = await r.resolve(Question(name: name("www.example.test."), type: .a))
    #expect(second.fromCache)
    #expect(second.hops.isEmpty)
    #expect(ex.queries.count == 3)
  }

  @Test func primingTakesTheRootServersFromTheRootZone() async {
    // The hint knows only 192.0.2.1; the root zone says the root server is 192.0.2.9.
    let root: ScriptedExchanger.Script = { q in
      if q.name.isRoot && q.type == .ns {
        var m = answer([record(".", .ns, .ns(name("x.root.")))])
        m.additional = [record("x.root.", .a, .a(IPv4Address("192.0.2.9")!))]
        return m
      }
      return referral("test.", ns: ["ns.test."], glue: [("ns.test.", "192.0.2.2")])
    }
    let ex = ScriptedExchanger([
      "192.0.2.1": root, "192.0.2.9": root,
      "192.0.2.2": { q in answer([record(q.name.description, .a, .a(IPv4Address("198.51.100.7")!))]) },
    ])
    let r = resolver(ex) { $0.primeRoot = true }
    let res = await r.resolve(Question(name: name("www.test."), type: .a))
    #expect(res.rcode == .noError)
    #expect(ex.queries.map(\.0) == ["192.0.2.1", "192.0.2.9", "192.0.2.2"])
    #expect(ex.queries.first?.1.type == .ns)
  }

  @Test func withoutMinimisationTheFullNameGoesToTheRoot() async {
    let ex = ScriptedExchanger([
      "192.0.2.1": { _ in referral("test.", ns: ["ns.test."], glue: [("ns.test.", "192.0.2.2")]) },
      "192.0.2.2": { q in answer([record(q.name.description, .a, .a(IPv4Address("198.51.100.7")!))]) },
    ])
    let r = resolver(ex) { $0.qnameMinimisation = false }
    _ = await r.resolve(Question(name: name("www.example.test."), type: .mx))
    #expect(ex.queries.first?.1.name == name("www.example.test."))
    #expect(ex.queries.first?.1.type == .mx)
  }

  @Test func aZoneWhoseServersAllFailIsAskedForAgainAfterItsDelegationIsRefreshedOnce() async {
    // moved.test. moves from 192.0.2.10 to 192.0.2.20; the old server goes silent while its NS set
    // is still cached (R-43: refresh the delegation and restart once).
    let moved = Mutex(false)
    let dead = Mutex(false)
    let ex = ScriptedExchanger([
      "192.0.2.1": { _ in
        let glue = moved.withLock { $0 } ? "192.0.2.20" : "192.0.2.10"
        return referral("moved.test.", ns: ["ns.moved.test."], glue: [("ns.moved.test.", glue)])
      },
      "192.0.2.10": { q in
        moved.withLock { $0 } ? nil : answer([record(q.name.description, .a, .a(IPv4Address("198.51.100.1")!))])
      },
      "192.0.2.20": { q in
        dead.withLock { $0 } ? nil : answer([record(q.name.description, .a, .a(IPv4Address("198.51.100.2")!))])
      },
    ])
    let r = resolver(ex) { $0.qnameMinimisation = false }
    let before = await r.resolve(Question(name: name("a.moved.test."), type: .a))
    #expect(before.answer.map(\.rdata) == [.a(IPv4Address("198.51.100.1")!)])
    moved.withLock { $0 = true }
    let after = await r.resolve(Question(name: name("b.moved.test."), type: .a))
    #expect(after.rcode == .noError)
    #expect(after.answer.map(\.rdata) == [.a(IPv4Address("198.51.100.2")!)])
    // The old server failed, the parent was asked again, the new server answered: all in one trace.
    #expect(after.hops.map(\.server) == ["192.0.2.10", "192.0.2.10", "192.0.2.1", "192.0.2.20"])
    #expect(r.hardening.delegationRefreshCount == 1)
    // A zone whose new servers fail too is not refreshed again within the recheck interval: one
    // more query to its parent per interval, not one per name asked.
    dead.withLock { $0 = true }
    let sent = ex.queries.count
    let gone = await r.resolve(Question(name: name("c.moved.test."), type: .a))
    #expect(gone.rcode == .servFail)
    #expect(!ex.queries.dropFirst(sent).contains { $0.0 == "192.0.2.1" })
    #expect(r.hardening.delegationRefreshCount == 1)
  }

  @Test func delegationLoopEndsInServfailWithBoundedWork() async {
    // a.test is served by ns.b.test and b.test by ns.a.test: neither can be reached (RFC 9520 §2.4).
    let ex = ScriptedExchanger([
      "192.0.2.1": { _ in referral("test.", ns: ["ns.test."], glue: [("ns.test.", "192.0.2.2")]) },
      "192.0.2.2": { q in
        if q.name.isSubdomain(of: name("a.test.")) { return referral("a.test.", ns: ["ns.b.test."]) }
        if q.name.isSubdomain(of: name("b.test.")) { return referral("b.test.", ns: ["ns.a.test."]) }
        return nil
      },
    ])
    let r = resolver(ex)
    let res = await r.resolve(Question(name: name("www.a.test."), type: .a))
    #expect(res.rcode == .servFail)
    #expect(ex.queries.count <= 12)
  }

  /// RFC 2181 §5.2 and §5: an RRset's records reach the client with the set's lowest TTL and
  /// without duplicates, on the first answer as on later ones from the cache.
  @Test func anRRsetReachesTheClientWithOneTTLAndNoDuplicates() async {
    @Sendable func a(_ ip: String, ttl: UInt32) -> ResourceRecord {
      ResourceRecord(name: name("www.test."), type: .a, ttl: ttl, rdata: .a(IPv4Address(ip)!))
    }
    let ex = ScriptedExchanger([
      "192.0.2.1": { _ in
        answer([a("198.51.100.1", ttl: 300), a("198.51.100.2", ttl: 60), a("198.51.100.1", ttl: 300)])
      }
    ])
    let r = resolver(ex) { $0.qnameMinimisation = false }
    for _ in 0..<2 {
      let res = await r.resolve(Question(name: name("www.test."), type: .a))
      #expect(res.answer.count == 2)
      #expect(res.answer.allSatisfy { $0.ttl <= 60 }, "\(res.answer.map(\.ttl))")
    }
    #expect(ex.queries.count == 1)
  }

  @Test func nxnsStyleDelegationIsCapped() async {
    // A referral to 200 glueless NS names must not make 200 sub-resolutions.
    let nsNames = (0..<200).map { "ns\($0).victim.lab." }
    let ex = ScriptedExchanger([
      "192.0.2.1": { q in
        if q.name.isSubdomain(of: name("attack.")) { return referral("attack.", ns: nsNames) }
        var m = Message()
        m.rcode = .nxDomain
        return m
      }
    ])
    let r = resolver(ex)
    let res = await r.resolve(Question(name: name("x.attack."), type: .a))
    #expect(res.rcode == .servFail)
    #expect(ex.queries.count <= 100)
    let victimQueries = Set(ex.queries.filter { $0.1.name.isSubdomain(of: name("victim.lab.")) }.map { $0.1.name })
    #expect(victimQueries.count <= 5)
  }

  @Test func cnameLoopAcrossZonesIsServfail() async {
    let ex = ScriptedExchanger([
      "192.0.2.1": { q in
        if q.name == name("a.") || q.name == name("b.") { return nil }
        if q.name == name("x.a.") { return answer([record("x.a.", .cname, .cname(name("y.b.")))]) }
        if q.name == name("y.b.") { return answer([record("y.b.", .cname, .cname(name("x.a.")))]) }
        return nil
      }
    ])
    let r = resolver(ex) { $0.qnameMinimisation = false }
    let res = await r.resolve(Question(name: name("x.a."), type: .a))
    #expect(res.rcode == .servFail)
    #expect((res.failureReason ?? "").contains("loop"))
  }

  @Test func loopbackServersAreNotQueriedByDefault() async {
    let ex = ScriptedExchanger([:])
    var config = ResolverConfiguration()
    config.rootHints = RootHints(unchecked: [(name("a.root."), ["127.0.0.1"])])
    let r = RecursiveResolver(
      configuration: config, exchanger: ex, time: SystemTimeSource(), logger: Logger(label: "t"))
    let res = await r.resolve(Question(name: name("example.test."), type: .a))
    #expect(res.rcode == .servFail)
    #expect(ex.queries.isEmpty)
  }

  @Test func failuresAreCachedBriefly() async {
    let ex = ScriptedExchanger([:])  // every server times out
    let r = resolver(ex)
    let first = await r.resolve(Question(name: name("dead.test."), type: .a))
    let sent = ex.queries.count
    let second = await r.resolve(Question(name: name("dead.test."), type: .a))
    #expect(first.rcode == .servFail && second.rcode == .servFail)
    #expect(sent > 0)
    #expect(ex.queries.count == sent)  // nothing sent for a cached failure
  }

  /// a timeout is held against the server (its smoothed RTT doubles, it is counted) only
  /// when the server had its whole timeout; not when the resolution's deadline cut it short.
  @Test func onlyWholeTimeoutsCountAgainstTheServer() async {
    for cutShort in [false, true] {
      let ex = ScriptedExchanger([:], cutShort: cutShort)
      let r = resolver(ex)
      let result = await r.resolve(Question(name: name("dead.test."), type: .a))
      #expect(result.rcode == .servFail)
      let timeouts = r.serverSelection.timeouts(server: "192.0.2.1")
      #expect(cutShort ? timeouts == 0 : timeouts > 0, "cut short: \(cutShort), \(timeouts) timeouts")
    }
  }

  @Test func identicalConcurrentQuestionsShareOneResolution() async {
    let ex = ScriptedExchanger(
      [
        "192.0.2.1": { _ in referral("test.", ns: ["ns.test."], glue: [("ns.test.", "192.0.2.2")]) },
        "192.0.2.2": { q in answer([record(q.name.description, .a, .a(IPv4Address("198.51.100.7")!))]) },
      ], delay: .milliseconds(50))
    let r = resolver(ex)
    let results = await withTaskGroup(of: Resolution.self) { group in
      for i in 0..<20 {
        // Same question, differing only in case: one resolution.
        group.addTask { await r.resolve(Question(name: name(i % 2 == 0 ? "www.test." : "WWW.Test."), type: .a)) }
      }
      return await group.reduce(into: []) { $0.append($1) }
    }
    #expect(results.allSatisfy { $0.rcode == .noError && $0.answer.count == 1 })
    #expect(ex.queries.count == 2)
  }

  @Test func localhostIsAnsweredLocally() async {
    let ex = ScriptedExchanger([:])
    let res = await resolver(ex).resolve(Question(name: name("localhost."), type: .a))
    #expect(res.answer.map(\.rdata) == [.a(IPv4Address("127.0.0.1")!)])
    #expect(ex.queries.isEmpty)
  }
}
