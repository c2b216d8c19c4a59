import Foundation
import NIOCore
import NIOPosix
import Resolver
import Testing

@testable import Authority

/// The OpenSSL DoT responder against Sotto's own DoT client.
@Suite(.serialized) struct DoTResponderTests {
  let group = MultiThreadedEventLoopGroup.singleton

  func start(_ behaviour: DoTBehaviour = .init(), ca: CertificateFactory, expired: Bool = false) async throws
    -> (DoTResponder, ServerEndpoint)
  {
    let identity = try ca.issue(name: "ns1.dot.test", ip: "127.0.0.1", expired: expired)
    let server = try await DoTResponder.start(
      group: group, host: "127.0.0.1", port: 0, identity: identity, engine: try demoEngine("dot.test."),
      behaviour: behaviour)
    return (server, try #require(ServerEndpoint(ip: "127.0.0.1", port: server.address.port ?? 0)))
  }

  func connect(_ endpoint: ServerEndpoint, ca: String, log: ClientLog, resumption: [UInt8]? = nil) async throws
    -> (DoTConnection, TLSHandshakeInfo)
  {
    try await DoTConnection.connect(
      to: endpoint, expectedName: try DNSName("ns1.dot.test."), context: try DoTClientContext(extraCAFile: ca),
      resumption: resumption, connectTimeout: .seconds(2), handshakeTimeout: .seconds(3),
      // Long: a test task that resumes seconds late in a loaded sanitizer run found its session
      // closed as idle before its first query (`.closed`, seen once under ASan in CI).
      idleTimeout: .seconds(30), onTicket: log.onTicket, onClose: log.onClose)
  }

  /// The edns-tcp-keepalive option's data in a reply (RFC 7828), nil without one.
  func keepaliveOption(_ reply: Message) -> [UInt8]? {
    reply.edns?.options.first { $0.code == EDNSOption.keepaliveCode }?.data
  }

  @Test func answersOverTLSWithALPNDotAndResumes() async throws {
    let ca = try CertificateFactory()
    let caFile = try writeCA(ca)
    let (server, endpoint) = try await start(ca: ca)
    let log = ClientLog()
    let (connection, info) = try await connect(endpoint, ca: caFile, log: log)
    #expect(info.alpn == "dot" && info.tlsVersion == "TLSv1.3" && info.certificate.isValid)
    let a = try await connection.query(try testQuery("www.dot.test.", id: 7), timeout: .seconds(3))
    let b = try await connection.query(try testQuery("nope.dot.test.", id: 8), timeout: .seconds(3))
    #expect(a.header.id == 7 && a.answers.first?.type == .a && b.rcode == .nxDomain)
    #expect(keepaliveOption(a) == nil, "a server that ignores the option advertised none")
    #expect(await log.wait { !$0.tickets.withLock(\.isEmpty) })
    let ticket = try #require(log.tickets.withLock { $0.first })
    connection.close()
    let (again, info2) = try await connect(endpoint, ca: caFile, log: ClientLog(), resumption: ticket)
    #expect(info2.resumed)
    _ = try await again.query(try testQuery("mail.dot.test."), timeout: .seconds(3))
    again.close()
    #expect(server.answered == 3)
    await server.stop()
  }

  @Test func expiredCertificateIsReportedAndStillServes() async throws {
    let ca = try CertificateFactory()
    let (server, endpoint) = try await start(ca: ca, expired: true)
    let (connection, info) = try await connect(endpoint, ca: try writeCA(ca), log: ClientLog())
    #expect(info.certificate.problems == ["expired"])
    _ = try await connection.query(try testQuery("www.dot.test."), timeout: .seconds(3))
    connection.close()
    await server.stop()
  }

  /// RFC 7828: the server's TIMEOUT (0.5 s) shortens the client's idle time (30 s here) to 90% of it.
  @Test func theSessionClosesBeforeTheServersKeepaliveRunsOut() async throws {
    let ca = try CertificateFactory()
    let (server, endpoint) = try await start(DoTBehaviour(keepalive: 5), ca: ca)
    let log = ClientLog()
    let (connection, _) = try await connect(endpoint, ca: try writeCA(ca), log: log)
    let clock = ContinuousClock()
    let sent = clock.now
    let answer = try await connection.query(try testQuery("www.dot.test."), timeout: .seconds(3))
    #expect(keepaliveOption(answer) == [0, 5])
    // The configured 30 s would keep it open past this wait; the server's 0.5 s does not.
    #expect(await log.wait(3) { !$0.closes.withLock(\.isEmpty) }, "still open 3 s after the answer")
    // Idle from the answer (after `sent`) for 0.5 s less the 50 ms margin before the close.
    let open = clock.now - sent
    #expect(open >= .milliseconds(440), "closed \(open) after the query: not idle first")
    #expect(log.closes.withLock { $0 } == [.cleanClose])
    #expect(!connection.isActive)
    await server.stop()
  }

  /// RFC 7828: TIMEOUT 0 means no new queries; the connection closes once its answers are in.
  @Test func aKeepaliveOfZeroTakesTheSessionOutOfUseAndClosesIt() async throws {
    let ca = try CertificateFactory()
    // The server answers only once both queries are in: otherwise the first answer's TIMEOUT 0
    // could close the session before the second query was sent (seen under ASan in CI).
    let (server, endpoint) = try await start(DoTBehaviour(keepalive: 0, answerInBatchesOf: 2), ca: ca)
    let log = ClientLog()
    let (connection, _) = try await connect(endpoint, ca: try writeCA(ca), log: log)
    // Two queries in flight at once: both are answered, and the end is reported once, clean.
    async let first = connection.query(try testQuery("www.dot.test.", id: 1), timeout: .seconds(3))
    async let second = connection.query(try testQuery("mail.dot.test.", id: 2), timeout: .seconds(3))
    let (a, b) = try await (first, second)
    #expect(a.header.id == 1 && a.answers.first?.type == .a && b.header.id == 2)
    #expect(!connection.isActive, "a session told TIMEOUT 0 still takes queries")
    #expect(keepaliveOption(a) == [0, 0])
    #expect(log.closes.withLock { $0 } == [.cleanClose], "the end is reported as the session goes out of use")
    #expect(server.answered == 2)
    // The connection itself closes once its answers are in; the end is not reported again.
    try await Task.sleep(for: .milliseconds(300))
    #expect(log.closes.withLock { $0 } == [.cleanClose])
    await server.stop()
  }

  /// A server that closes with close_notify while a query is still on the connection (an idle
  /// close racing a query) closed cleanly (OE-30): the query fails at once (and is re-sent), but
  /// the server's DoT is not damped for a day as after a broken session (OE-29).
  @Test func aCloseNotifyWithAQueryOutstandingIsACleanClose() async throws {
    let ca = try CertificateFactory()
    let (server, endpoint) = try await start(
      DoTBehaviour(closeConnectionAfterQueries: 1, answerInBatchesOf: 2), ca: ca)
    let log = ClientLog()
    let (connection, _) = try await connect(endpoint, ca: try writeCA(ca), log: log)
    let outcomes = try await withThrowingTaskGroup(of: String.self) { group in
      for name in ["www.dot.test.", "mail.dot.test."] {
        let query = try testQuery(name)
        group.addTask {
          do {
            _ = try await connection.query(query, timeout: .seconds(10))
            return "answered"
          } catch {
            return "\(error)"
          }
        }
      }
      return try await group.reduce(into: []) { $0.append($1) }.sorted()
    }
    #expect(outcomes == ["answered", "closed"], "\(outcomes)")
    #expect(await log.wait { !$0.closes.withLock(\.isEmpty) })
    #expect(log.closes.withLock { $0 } == [.cleanClose])
    await server.stop()
  }

  @Test func sessionBreakerClosesCleanlyAfterNQueries() async throws {
    let ca = try CertificateFactory()
    let (server, endpoint) = try await start(DoTBehaviour(closeConnectionAfterQueries: 1), ca: ca)
    let log = ClientLog()
    let (connection, _) = try await connect(endpoint, ca: try writeCA(ca), log: log)
    _ = try await connection.query(try testQuery("www.dot.test."), timeout: .seconds(3))
    #expect(await log.wait { !$0.closes.withLock(\.isEmpty) })
    #expect(!connection.isActive)
    await server.stop()
  }
}
