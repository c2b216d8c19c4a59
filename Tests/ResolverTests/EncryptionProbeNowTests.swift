import Logging
import NIOCore
import Synchronization
import Testing

@testable import Resolver

/// The operator's "probe now" (dashboard `R`, `sotto ctl probe`) and the per-server history.
@Suite struct EncryptionProbeNowTests: PolicyFixture {

  func policy(_ connector: FakeConnector, clock: @escaping @Sendable () -> Double = { 1_000 })
    -> EncryptionPolicy
  {
    var s = EncryptionSettings()
    s.timeout = 1
    return EncryptionPolicy(
      settings: s, do53: FakeDo53(), connectors: [connector], wallClock: clock,
      logger: Logger(label: "t"))
  }

  @Test func probeNowConnectsADampedServerWithoutWaitingForAQuery() async {
    let refuse = Mutex(true)
    let connector = FakeConnector { _ in refuse.withLock { $0 } ? .fail(.refused) : .succeed }
    let p = policy(connector)
    _ = await p.exchange(query, server: server, context: context, timeout: .seconds(1))
    await p.waitForProbes(upTo: 30)
    #expect(p.table.phase("192.0.2.7", .dot, now: 1_000) == .damped(until: 1_000 + 86_400))
    refuse.withLock { $0 = false }
    let outcome = p.probeNow("192.0.2.7")
    #expect(outcome?.started == [.dot])
    #expect(outcome?.summary == "probing DoT")
    await p.waitForProbes(upTo: 30)
    // No client query in between: the operator's probe alone made the session.
    #expect(connector.attempts.withLock { $0.count } == 2)
    #expect(p.table.phase("192.0.2.7", .dot, now: 1_000) == .established)
    // The probe's trigger is an SOA query for a zone the server serves, sent over the new session.
    #expect(p.table.servers["192.0.2.7"]?.queries[.dot] == 1)
    let again = p.probeNow("192.0.2.7")
    #expect(again?.started == [])
    #expect(again?.summary == "DoT session already established")
  }

  @Test func probeNowOfAnUnknownAddressDoesNothing() {
    let connector = FakeConnector { _ in .succeed }
    let p = policy(connector)
    #expect(p.probeNow("192.0.2.99") == nil)
    #expect(connector.attempts.withLock { $0.isEmpty })
  }

  @Test func historyRecordsWhatHappenedNewestLastWithReasons() async {
    let refuse = Mutex(true)
    let connector = FakeConnector { _ in refuse.withLock { $0 } ? .fail(.refused) : .succeed }
    let p = policy(connector)
    _ = await p.exchange(query, server: server, context: context, timeout: .seconds(1))
    await p.waitForProbes(upTo: 30)
    refuse.withLock { $0 = false }
    _ = p.probeNow("192.0.2.7")
    await p.waitForProbes(upTo: 30)
    let history = p.table.servers["192.0.2.7"]?.history ?? []
    #expect(
      history.map(\.kind) == [
        .connecting, .handshakeFailed, .operatorProbe, .connecting, .established,
      ])
    #expect(history[1].detail.contains("damped until"))
    #expect(history[2].detail == "damping of DoT ended")
    #expect(history[4].detail.contains("certificate: self-signed"))
    #expect(history.allSatisfy { $0.time == 1_000 })
  }

  @Test func historyIsBoundedPerServer() {
    var table = EncryptionTable(settings: EncryptionSettings())
    for i in 0..<100 {
      _ = table.connectionStarted("192.0.2.1", .dot, now: Double(i))
      table.handshakeFailed(
        "192.0.2.1", .dot, now: Double(i), failure: "refused", timedOut: false,
        detail: "refused \(i)")
    }
    let history = table.servers["192.0.2.1"]?.history ?? []
    #expect(history.count == ServerRecord.historyLimit)
    #expect(history.last?.detail.hasPrefix("refused 99") == true)
    #expect(history.first?.time == Double(100 - ServerRecord.historyLimit / 2))
  }
}
