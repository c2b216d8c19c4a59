import Glibc
import Logging
import NIOCore
import Testing

@testable import Resolver

/// A connection this machine could not set up (no descriptor, no local port) is not the server's
/// failure: nothing is held against it, and a known-good server's cleartext stays suppressed.
@Suite struct LocalFailureTests: PolicyFixture {
  static let outOfFiles = EncryptedFailure.noSocket(EMFILE)

  func policy(_ connector: FakeConnector, _ do53: FakeDo53) -> EncryptionPolicy {
    var s = EncryptionSettings()
    s.timeout = 1
    return EncryptionPolicy(
      settings: s, do53: do53, connectors: [connector], wallClock: { 1_000 }, logger: Logger(label: "t"))
  }

  @Test func socketAndConnectErrnosAreToldApart() {
    #expect(Self.outOfFiles == .local("socket: Too many open files"))
    #expect(Self.outOfFiles.isLocal && Self.outOfFiles.className == "local")
    #expect(EncryptedFailure.noSocket(EAFNOSUPPORT).isLocal)
    #expect(EncryptedFailure.connectFailed(EADDRNOTAVAIL).isLocal)
    #expect(EncryptedFailure.connectFailed(ENOBUFS).isLocal)
    #expect(EncryptedFailure.notWatched(ENOSPC).isLocal)
    // The server's or its network's: refused, unreachable, filtered.
    for code in [ECONNREFUSED, ENETUNREACH, EHOSTUNREACH, EACCES, EPERM] {
      #expect(EncryptedFailure.connectFailed(code) == .refused, "errno \(code)")
    }
    #expect(!EncryptedFailure.refused.isLocal)
    // Do53 over UDP: out of buffers is this machine's; an ICMP error on the socket is not.
    #expect(UDPExchangeEngine.sendFailure(ENOBUFS) == .io("send: No buffer space available (errno 105)"))
    #expect(UDPExchangeEngine.sendFailure(ECONNREFUSED) == .unreachable("send: Connection refused (errno 111)"))
  }

  /// An exchange failed locally only when none of its legs left the machine.
  @Test func anExchangeFailedLocallyOnlyWhenNoLegLeftTheMachine() {
    let io = ExchangeLeg(transport: .do53UDP, rttMs: nil, error: .io("socket: Too many open files"), truncated: false)
    let timeout = ExchangeLeg(transport: .dot, rttMs: nil, error: .timeout, truncated: false)
    #expect(ExchangeResult(legs: [io], response: nil).failedLocally == "socket: Too many open files")
    #expect(ExchangeResult(legs: [timeout, io], response: nil).failedLocally == nil)
    #expect(ExchangeResult(legs: [], response: nil).failedLocally == nil)
  }

  @Test func aProbeThisMachineCouldNotOpenLeavesTheServerUnknownAndIsTriedAgain() async {
    let local = Mutex(true)
    let connector = FakeConnector { _ in local.withLock { $0 } ? .fail(Self.outOfFiles) : .succeed }
    let do53 = FakeDo53()
    let p = policy(connector, do53)
    let first = await p.exchange(query, server: server, context: context, timeout: .seconds(1))
    #expect(first.response != nil && first.legs.map(\.transport) == [.do53UDP])
    await p.waitForProbes(upTo: 30)
    let st = p.table.state("192.0.2.7", .dot)
    #expect(p.table.phase("192.0.2.7", .dot, now: 1_000) == .unknown, "not damped")
    #expect(st.status == nil && st.failures.isEmpty && st.lastFailure == nil && st.initiated == nil)
    #expect(st.probes == ProbeCounters(), "no probe counted")
    #expect(p.localConnectionFailures == 1)
    let event = p.table.servers["192.0.2.7"]?.history.last
    #expect(event?.kind == .localFailure)
    #expect(
      event?.detail == "could not connect from this machine (socket: Too many open files); not held against the server")
    // Descriptors free again: the next query probes at once, and the server is known good.
    local.withLock { $0 = false }
    _ = await p.exchange(query, server: server, context: context, timeout: .seconds(1))
    await p.waitForProbes(upTo: 30)
    #expect(connector.attempts.withLock { $0.count } == 2)
    #expect(p.table.phase("192.0.2.7", .dot, now: 1_000) == .established)
  }

  @Test func aReconnectionThisMachineCouldNotOpenSendsNoCleartextAndKeepsItsTicket() async {
    let local = Mutex(false)
    let connector = FakeConnector { _ in local.withLock { $0 } ? .fail(Self.outOfFiles) : .succeed }
    let do53 = FakeDo53()
    let p = policy(connector, do53)
    _ = await p.exchange(query, server: server, context: context, timeout: .seconds(1))
    await p.waitForProbes(upTo: 30)
    connector.sessions.withLock { $0["192.0.2.7"] }?.close()
    #expect(p.table.state("192.0.2.7", .dot).resumptions.count == 1, "the session's ticket")
    local.withLock { $0 = true }
    let r = await p.exchange(query, server: server, context: context, timeout: .seconds(1))
    // OE-11: still known good, so no Do53 to it; the resolution moves on to another server.
    #expect(r.response == nil)
    #expect(r.legs.map(\.transport) == [.dot])
    #expect(
      r.legs.first?.error == .io("could not connect from this machine (socket: Too many open files)"))
    #expect(do53.count == 1, "only the first query went over Do53")
    let st = p.table.state("192.0.2.7", .dot)
    #expect(p.table.phase("192.0.2.7", .dot, now: 1_000) == .goodIdle)
    #expect(st.failures.isEmpty && st.probes.started == 1 && st.probes.succeeded == 1)
    #expect(st.resumptions.count == 1, "the unused ticket is kept")
    // Descriptors free again: the reconnection resumes with that ticket.
    local.withLock { $0 = false }
    let again = await p.exchange(query, server: server, context: context, timeout: .seconds(1))
    #expect(again.response != nil && again.legs.map(\.transport) == [.dot])
    #expect(p.table.state("192.0.2.7", .dot).resumed)
    #expect(p.localConnectionFailures == 1)
  }

  /// Every query waiting for a reconnection that fails locally is told so by the connection
  /// itself, so none goes over Do53 to the known-good server, however many joined it.
  @Test func everyQueryWaitingForAReconnectionThatFailsLocallyStaysOffDo53() async {
    let gate = FakeConnector.Gate()
    let reconnecting = Mutex(false)
    let connector = FakeConnector { _ in reconnecting.withLock { $0 } ? .failAfter(gate, Self.outOfFiles) : .succeed }
    let do53 = FakeDo53()
    let p = policy(connector, do53)
    _ = await p.exchange(query, server: server, context: context, timeout: .seconds(1))
    await p.waitForProbes(upTo: 30)
    connector.sessions.withLock { $0["192.0.2.7"] }?.close()
    reconnecting.withLock { $0 = true }
    let results = await withTaskGroup(of: ExchangeResult.self) { group in
      for i in 0..<4 {
        var q = query
        q.questions = [Question(name: (try? DNSName("q\(i).example.test.")) ?? .root, type: .a)]
        group.addTask { await p.exchange(q, server: self.server, context: self.context, timeout: .seconds(2)) }
      }
      // All four wait on the one pending connection (OE-21) before it fails.
      while connector.attempts.withLock({ $0.count }) < 2 { try? await Task.sleep(for: .milliseconds(5)) }
      try? await Task.sleep(for: .milliseconds(50))
      gate.open()
      return await group.reduce(into: []) { $0.append($1) }
    }
    let local = TransportError.io("could not connect from this machine (socket: Too many open files)")
    #expect(results.map { $0.legs.map(\.error) } == Array(repeating: [local], count: 4))
    #expect(do53.count == 1, "only the first query went over Do53")
    #expect(connector.attempts.withLock { $0.count } == 2, "one reconnection for the four")
  }

  /// A zone step whose every server failed locally (a `.io` leg: no socket) is not retried
  /// un-minimised, does not refresh the zone's delegation and is not cached: the
  /// same name resolves as soon as the machine can send again.
  @Test func aZoneStepThatFailedLocallyIsNotRetriedRefreshedNorCached() async {
    let local = Mutex(true)
    let ex = ScriptedExchanger([
      "192.0.2.1": { _ in referral("test.", ns: ["ns.test."], glue: [("ns.test.", "192.0.2.5")]) },
      "192.0.2.5": { _ in
        referral("example.test.", ns: ["ns.example.test."], glue: [("ns.example.test.", "192.0.2.10")])
      },
      "192.0.2.10": { q in
        local.withLock { $0 } ? nil : answer([record(q.name.description, .a, .a(IPv4Address("198.51.100.1")!))])
      },
    ])
    ex.failure.withLock { $0 = .io("socket: Too many open files") }
    var config = ResolverConfiguration()
    config.rootHints = RootHints(unchecked: [(name("a.root."), ["192.0.2.1"])])
    config.primeRoot = false
    let r = RecursiveResolver(
      configuration: config, exchanger: ex, time: SystemTimeSource(), logger: Logger(label: "t"))
    let question = Question(name: name("a.b.example.test."), type: .a)
    let failed = await r.resolve(question)
    #expect(failed.rcode == .servFail)
    #expect(
      ex.queries.map { "\($0.0) \($0.1.name)" } == [
        "192.0.2.1 test.", "192.0.2.5 example.test.", "192.0.2.10 b.example.test.",
      ],
      "no un-minimised retry, no refresh of the delegation")
    #expect(r.hardening.delegationRefreshCount == 0)
    local.withLock { $0 = false }
    let again = await r.resolve(question)
    #expect(again.rcode == .noError && again.answer.map(\.rdata) == [.a(IPv4Address("198.51.100.1")!)])
  }
}
