import Foundation
import Logging
import NIOCore
import NIOPosix
import Resolver
import Synchronization
import Testing

@testable import Authority

/// Answers A 192.0.2.1 once the test opens it (or after 20 s).
private final class GatedResolver: QueryResolving, Sendable {
  let isOpen = Mutex(false)
  func open() { isOpen.withLock { $0 = true } }
  func resolve(_ question: Question) async -> Resolution {
    for _ in 0..<2000 where !isOpen.withLock({ $0 }) { try? await Task.sleep(for: .milliseconds(10)) }
    guard let address = IPv4Address(octets: [192, 0, 2, 1]) else { return Resolution(rcode: .servFail) }
    return Resolution(
      rcode: .noError, answer: [ResourceRecord(name: question.name, type: .a, ttl: 300, rdata: .a(address))])
  }
}

/// The client listener's DoQ addresses (`--listen-quic`) against Sotto's own DoQ client.
@Suite(.serialized) struct DoQListenerTests {
  let group = MultiThreadedEventLoopGroup.singleton

  /// A DoQ listener on 127.0.0.1 with `configure`'s settings, a client connected to it, and the
  /// CA its certificate is from (for more clients).
  private func listening(
    to resolver: some QueryResolving, log: ClientLog = ClientLog(),
    _ configure: (inout ListenerConfiguration) -> Void = { _ in }
  ) async throws -> (Listener, DoQConnection, CertificateFactory) {
    let ca = try CertificateFactory()
    let identity = try ca.issue(name: "resolver.test", ip: "127.0.0.1")
    var configuration = ListenerConfiguration(
      addresses: [try SocketAddress(ipAddress: "127.0.0.1", port: 0)],
      quicAddresses: [try SocketAddress(ipAddress: "127.0.0.1", port: 0)],
      tls: try TLSServerContext(certificatePEM: identity.certificatePEM, privateKeyPEM: identity.privateKeyPEM))
    configure(&configuration)
    let listener = Listener(
      resolver: resolver, configuration: configuration, group: group, logger: Logger(label: "DoQListenerTests"))
    _ = try await listener.start()
    return (listener, try await connect(to: listener, ca: ca, log: log), ca)
  }

  /// A new client connection to `listener`'s DoQ address, trusting `ca`.
  private func connect(to listener: Listener, ca: CertificateFactory, log: ClientLog) async throws -> DoQConnection {
    let port = try #require(listener.quicAddresses.first?.port)
    let endpoint = try #require(ServerEndpoint(ip: "127.0.0.1", port: port))
    let (connection, info, _) = try await DoQConnection.connect(
      to: endpoint, expectedName: try DNSName("resolver.test."),
      context: try DoQClientContext(extraCAFile: try writeCA(ca)), group: group, resumption: nil, earlyQuery: nil,
      handshakeTimeout: .seconds(5), idleTimeout: .seconds(30), onTicket: log.onTicket, onClose: log.onClose)
    #expect(info.alpn == "doq" && info.certificate.isValid)
    return connection
  }

  /// Waits (up to 10 s) for `listener`'s resolutions to end, and checks that they did.
  private func resolutionsEnd(_ listener: Listener) async throws {
    for _ in 0..<2000 where listener.statistics.resolutionsInFlight > 0 {
      try await Task.sleep(for: .milliseconds(5))
    }
    #expect(listener.statistics.resolutionsInFlight == 0)
  }

  /// A query whose resolution overruns the answer deadline gets SERVFAIL on its stream from the
  /// listener's watch, counted once; the connection serves the next query with its own answer.
  @Test func aDoQQueryWhoseResolutionOverrunsGetsServfailAndTheConnectionServesOn() async throws {
    let gated = GatedResolver()
    defer { gated.open() }
    let (listener, connection, _) = try await listening(to: gated) { $0.answerDeadline = 0.3 }
    let overdue = try await connection.query(try recursiveQuery("stuck.example."), timeout: .seconds(10))
    #expect(overdue.rcode == .servFail)
    #expect(listener.statistics.resolutionsOverdue == 1 && listener.statistics.resolutionsInFlight == 1)
    gated.open()
    try await resolutionsEnd(listener)
    let next = try await connection.query(try recursiveQuery("next.example."), timeout: .seconds(10))
    #expect(next.rcode == .noError && next.answers.count == 1)
    let stats = listener.statistics
    #expect(stats.resolutionsOverdue == 1 && stats.quicQueries == 2 && stats.quicHandshakes == 1)
    connection.close()
    await listener.stop()
  }

  /// A client that gives up on its queries (cancels their streams, as Sotto's own client does on a
  /// timeout) gets new streams, but not new resolutions past `ListenerConfiguration.maxDoQUnanswered`: the
  /// next query's stream is reset with DOQ_EXCESSIVE_LOAD at once, counted in
  /// `quicExcessiveLoad`. Once the resolutions end the connection is served again.
  @Test func aConnectionCannotPileUpMoreThanAHundredUnansweredResolutions() async throws {
    let gated = GatedResolver()
    defer { gated.open() }
    let (listener, connection, _) = try await listening(to: gated) { $0.answerDeadline = 0 }
    let cap = ListenerConfiguration.maxDoQUnanswered
    // Each query times out on the client, which cancels its stream (6 s: time for all 100 to
    // reach the listener even under a sanitizer with the other suites running).
    await withTaskGroup(of: Void.self) { group in
      for i in 0..<cap {
        group.addTask { _ = try? await connection.query(try recursiveQuery("q\(i).example."), timeout: .seconds(6)) }
      }
    }
    #expect(listener.statistics.resolutionsInFlight == cap && listener.statistics.quicQueries == cap)
    // Reset (closed), not left unanswered until the client's timeout.
    await #expect(throws: TransportError.closed) {
      _ = try await connection.query(try recursiveQuery("one-more.example."), timeout: .seconds(5))
    }
    #expect(listener.statistics.quicExcessiveLoad == 1 && listener.statistics.resolutionsInFlight == cap)
    gated.open()
    try await resolutionsEnd(listener)
    let served = try await connection.query(try recursiveQuery("after.example."), timeout: .seconds(5))
    #expect(served.rcode == .noError && served.answers.count == 1)
    #expect(listener.statistics.quicExcessiveLoad == 1)
    connection.close()
    await listener.stop()
  }

  /// `tcpQueriesPerConnection` applies to DoQ: the connection's last allowed query is answered,
  /// then the connection is closed cleanly (DOQ_NO_ERROR, counted once in `quicQueryLimitClosed`),
  /// and the client's next connection is served.
  @Test func aDoQConnectionIsClosedCleanlyAfterItsQueryLimit() async throws {
    let gated = GatedResolver()
    gated.open()
    let log = ClientLog()
    let (listener, connection, ca) = try await listening(to: gated, log: log) { $0.tcpQueriesPerConnection = 3 }
    for name in ["a.example.", "b.example.", "c.example."] {
      let answer = try await connection.query(try recursiveQuery(name), timeout: .seconds(5))
      #expect(answer.rcode == .noError && answer.answers.count == 1)
    }
    #expect(await log.wait(5) { !$0.closes.withLock(\.isEmpty) }, "the connection was not closed after 3 queries")
    #expect(log.closes.withLock { $0 } == [.cleanClose])
    #expect(!connection.isActive)
    #expect(listener.statistics.quicQueryLimitClosed == 1 && listener.statistics.quicQueries == 3)
    let again = try await connect(to: listener, ca: ca, log: ClientLog())
    let next = try await again.query(try recursiveQuery("d.example."), timeout: .seconds(5))
    #expect(next.rcode == .noError)
    again.close()
    await listener.stop()
  }

  /// The per-client rate limit covers DoQ: a query over it gets its stream reset (no answer, no
  /// resolution), counted in `rateLimited`; the connection stays up and serves once the bucket
  /// has refilled.
  @Test func aDoQClientOverTheRateLimitHasItsStreamResetAndIsServedLater() async throws {
    let gated = GatedResolver()
    gated.open()
    // One every 4 s with a burst of 1: the second query is over it unless the test task resumes
    // 4 s late (at 1/s a second's delay under parallel tests would refill the bucket).
    let (listener, connection, _) = try await listening(to: gated) { $0.clientRateLimit = 0.25 }
    let first = try await connection.query(try recursiveQuery("a.example."), timeout: .seconds(5))
    #expect(first.rcode == .noError)
    await #expect(throws: TransportError.closed) {
      _ = try await connection.query(try recursiveQuery("b.example."), timeout: .seconds(5))
    }
    #expect(listener.statistics.rateLimited == 1 && listener.statistics.quicQueries == 1)
    // Asked again every half second, the client is served once a token is back, on the same
    // connection; each refusal meanwhile is counted.
    var later: Message?
    let giveUp = ContinuousClock.now + .seconds(20)
    while later == nil && ContinuousClock.now < giveUp {
      try await Task.sleep(for: .milliseconds(500))
      later = try? await connection.query(try recursiveQuery("d.example."), timeout: .seconds(5))
    }
    let served = try #require(later, "not served again within 20 s at one query every 4 s")
    #expect(served.rcode == .noError && connection.isActive)
    let limited = listener.statistics.rateLimited
    #expect(limited >= 1 && listener.statistics.quicQueries == 2, "rateLimited \(limited)")
    connection.close()
    await listener.stop()
  }
}
