import Glibc
import Logging
import NIOCore
import Testing

@testable import Resolver

/// A connection this machine could not set up (no descriptor, no local port) is not the server's
/// failure: nothing is held against it, and a known-good server's cleartext stays suppressed.
@Suite struct LocalFailureTests {
  let server = ServerEndpoint(ip: "192.0.2.7", port: 53)!
  let context = ExchangeContext(
    nsName: try? DNSName("ns.example.test."), zone: (try? DNSName("example.test.")) ?? .root)
  var query: Message {
    var m = Message()
    m.header.id = 42
    m.questions = [Question(name: (try? DNSName("www.example.test.")) ?? .root, type: .a)]
    return m
  }
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
  }

  @Test func aProbeThisMachineCouldNotOpenLeavesTheServerUnknownAndIsTriedAgain() async {
    let local = Mutex(true)
    let connector = FakeConnector { _ in local.withLock { $0 } ? .fail(Self.outOfFiles) : .succeed }
    let do53 = FakeDo53()
    let p = policy(connector, do53)
    let first = await p.exchange(query, server: server, context: context, timeout: .seconds(1))
    #expect(first.response != nil && first.legs.map(\.transport) == [.do53UDP])
    await p.waitForProbes(upTo: 2)
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
    await p.waitForProbes(upTo: 2)
    #expect(connector.attempts.withLock { $0.count } == 2)
    #expect(p.table.phase("192.0.2.7", .dot, now: 1_000) == .established)
  }

  @Test func aReconnectionThisMachineCouldNotOpenSendsNoCleartextAndKeepsItsTicket() async {
    let local = Mutex(false)
    let connector = FakeConnector { _ in local.withLock { $0 } ? .fail(Self.outOfFiles) : .succeed }
    let do53 = FakeDo53()
    let p = policy(connector, do53)
    _ = await p.exchange(query, server: server, context: context, timeout: .seconds(1))
    await p.waitForProbes(upTo: 2)
    connector.sessions.withLock { $0["192.0.2.7"] }?.close()
    #expect(p.table.state("192.0.2.7", .dot).resumptions.count == 1, "the session's ticket")
    local.withLock { $0 = true }
    let r = await p.exchange(query, server: server, context: context, timeout: .seconds(1))
    // OE-11: still known good, so no Do53 to it; the resolution moves on to another server.
    #expect(r.response == nil)
    #expect(r.legs.map(\.transport) == [.dot])
    #expect(
      r.legs.first?.error
        == .io("could not connect from this machine (socket: Too many open files); not held against the server"))
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
}
