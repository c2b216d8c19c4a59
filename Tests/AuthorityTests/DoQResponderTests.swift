import Foundation
import NIOCore
import NIOPosix
import Resolver
import Testing

@testable import Authority

/// The ngtcp2 DoQ responder against Sotto's own DoQ client (and garbage).
@Suite(.serialized) struct DoQResponderTests {
  let group = MultiThreadedEventLoopGroup.singleton

  /// The server's idle timeout is long by default: a test task that resumes seconds late on a
  /// loaded machine (ASan, every suite at once) must not find its connection closed under it.
  func start(
    _ behaviour: DoQBehaviour = .init(), ca: CertificateFactory, expired: Bool = false,
    idleTimeout: TimeAmount = .seconds(30)
  ) async throws -> (DoQResponder, ServerEndpoint) {
    let engine = try demoEngine("doq.test.")
    let identity = try ca.issue(name: "ns1.doq.test", ip: "127.0.0.1", expired: expired)
    let server = try await DoQResponder.start(
      group: group, host: "127.0.0.1", port: 0, identity: identity, behaviour: behaviour,
      handshakeTimeout: .seconds(2), idleTimeout: idleTimeout
    ) { engine.respond(to: $0) }
    let endpoint = try #require(ServerEndpoint(ip: "127.0.0.1", port: server.address.port ?? 0))
    return (server, endpoint)
  }

  func connect(
    _ endpoint: ServerEndpoint, ca: String, log: ClientLog, resumption: [UInt8]? = nil, early: Message? = nil
  )
    async throws -> (DoQConnection, TLSHandshakeInfo, EventLoopFuture<Message>?)
  {
    try await DoQConnection.connect(
      to: endpoint, expectedName: try DNSName("ns1.doq.test."), context: try DoQClientContext(extraCAFile: ca),
      group: group, resumption: resumption, earlyQuery: early, handshakeTimeout: .seconds(3), idleTimeout: .seconds(30),
      onTicket: log.onTicket, onClose: log.onClose)
  }

  @Test func answersConcurrentQueriesAndResumesWithZeroRTT() async throws {
    let ca = try CertificateFactory()
    let caFile = try writeCA(ca)
    let (server, endpoint) = try await start(ca: ca)
    let log = ClientLog()
    let (connection, info, _) = try await connect(endpoint, ca: caFile, log: log)
    #expect(info.alpn == "doq" && info.tlsVersion.contains("1.3"))
    #expect(info.certificate.isValid, "issued by the CA given to the client: \(info.certificate.problems)")
    async let a = connection.query(try testQuery("www.doq.test."), timeout: .seconds(3))
    async let b = connection.query(try testQuery("mail.doq.test."), timeout: .seconds(3))
    async let c = connection.query(try testQuery("nope.doq.test."), timeout: .seconds(3))
    let (ra, rb, rc) = try await (a, b, c)
    #expect(ra.answers.first?.type == .a && rb.answers.first?.type == .a && rc.rcode == .nxDomain)
    #expect(await log.wait { !$0.tickets.withLock(\.isEmpty) })
    let ticket = try #require(log.tickets.withLock { $0.first })
    connection.close()

    let again = ClientLog()
    let (resumed, info2, early) = try await connect(
      endpoint, ca: caFile, log: again, resumption: ticket, early: try testQuery("api.doq.test."))
    #expect(info2.resumed)
    #expect(info2.earlyDataAccepted == true)
    #expect(try await early?.get().answers.first?.type == .a)
    resumed.close()
    // The server completes the resumed handshake when the client's Finished arrives, which may be
    // after the client already has its 0-RTT answer: wait for it.
    var stats = try await server.statistics()
    for _ in 0..<100 where stats.handshakesCompleted < 2 {
      try await Task.sleep(for: .milliseconds(20))
      stats = try await server.statistics()
    }
    #expect(stats.handshakesCompleted == 2 && stats.queriesAnswered == 4)
    await server.stop()
  }

  @Test func expiredCertificateIsReportedByTheClient() async throws {
    let ca = try CertificateFactory()
    let (server, endpoint) = try await start(ca: ca, expired: true)
    let (connection, info, _) = try await connect(endpoint, ca: try writeCA(ca), log: ClientLog())
    #expect(info.certificate.problems == ["expired"])
    connection.close()
    await server.stop()
  }

  /// Each answer carries the ACK of its query: one datagram per query, not the answer and then,
  /// a delayed-ACK timer later, a 41-byte ACK of its own (ngtcp2's default waits for two packets).
  /// Queries go 1 ms apart, as the bench's do, so the client's held ACK of an answer rides on the
  /// next query. Where the test task ran late (more than 4.5 ms between two queries) that ACK goes
  /// alone and the server answers it with stream credit (MAX_STREAMS): one more datagram each. A
  /// loaded machine may add a loss-recovery probe, so up to five rounds are tried; with a separate
  /// ACK per answer none comes near.
  @Test func answersCarryTheAckOfTheirQuery() async throws {
    let ca = try CertificateFactory()
    let (server, endpoint) = try await start(ca: ca)
    let (connection, _, _) = try await connect(endpoint, ca: try writeCA(ca), log: ClientLog())
    _ = try await connection.query(try testQuery("www.doq.test."), timeout: .seconds(3))
    // The count once nothing more goes out for 40 ms (the client's ACK hold is 5 ms).
    func settled() async throws -> UInt64 {
      var last = try await server.statistics().datagramsSent
      for _ in 0..<50 {
        try await Task.sleep(for: .milliseconds(40))
        let now = try await server.statistics().datagramsSent
        if now == last { break }
        last = now
      }
      return last
    }
    let queries = 8
    var rounds: [(sent: UInt64, late: Int)] = []
    for round in 0..<5 {
      let before = try await settled()
      var calls: [ContinuousClock.Instant] = []
      for i in 0..<queries {
        calls.append(.now)
        let answer = try await connection.query(try testQuery("r\(round)q\(i).doq.test."), timeout: .seconds(3))
        #expect(answer.rcode == .nxDomain)
        try await Task.sleep(for: .milliseconds(1))
      }
      let late = zip(calls, calls.dropFirst()).filter { $1 - $0 >= .microseconds(4500) }.count
      rounds.append((try await settled() - before, late))
      // One per answer, plus the credit sent when the client's ACK of the last answer comes alone
      // after its hold; 14-16 with a separate ACK per answer.
      if rounds[round].sent <= UInt64(queries + 1 + late) { break }
    }
    #expect(
      rounds.contains { $0.sent <= UInt64(queries + 1 + $0.late) },
      "datagrams and late gaps per round of \(queries) queries: \(rounds)")
    connection.close()
    await server.stop()
  }

  @Test func sessionBreakerClosesAfterNQueries() async throws {
    let ca = try CertificateFactory()
    let (server, endpoint) = try await start(DoQBehaviour(closeConnectionAfterQueries: 2), ca: ca)
    let log = ClientLog()
    let (connection, _, _) = try await connect(endpoint, ca: try writeCA(ca), log: log)
    _ = try await connection.query(try testQuery("www.doq.test."), timeout: .seconds(3))
    _ = try await connection.query(try testQuery("api.doq.test."), timeout: .seconds(3))
    #expect(await log.wait { !$0.closes.withLock(\.isEmpty) })
    #expect(log.closes.withLock { $0 } == [.cleanClose])
    #expect(!connection.isActive)
    await server.stop()
  }

  @Test func everyNthStreamIsReset() async throws {
    let ca = try CertificateFactory()
    let (server, endpoint) = try await start(DoQBehaviour(resetEveryNthStream: 2), ca: ca)
    let (connection, _, _) = try await connect(endpoint, ca: try writeCA(ca), log: ClientLog())
    _ = try await connection.query(try testQuery("www.doq.test."), timeout: .seconds(3))
    await #expect(throws: TransportError.self) {
      _ = try await connection.query(try testQuery("api.doq.test."), timeout: .seconds(3))
    }
    // The connection survives a reset stream.
    _ = try await connection.query(try testQuery("mail.doq.test."), timeout: .seconds(3))
    #expect(try await server.statistics().streamsReset == 1)
    connection.close()
    await server.stop()
  }

  @Test func garbageAndHalfOpenHandshakesAreDroppedAndFreed() async throws {
    let ca = try CertificateFactory()
    let (server, endpoint) = try await start(ca: ca, idleTimeout: .seconds(2))
    let fd = socket(AF_INET, Int32(SOCK_DGRAM.rawValue), 0)
    defer { close(fd) }
    var to = sockaddr_in()
    to.sin_family = sa_family_t(AF_INET)
    to.sin_port = UInt16(endpoint.port).bigEndian
    to.sin_addr.s_addr = inet_addr("127.0.0.1")
    // Garbage, a truncated long header, and a lone Initial-looking datagram that never completes.
    for payload: [UInt8] in [
      [1, 2, 3], [0xC0, 0, 0, 0, 1, 8], [0xC3, 0, 0, 0, 1, 8] + [UInt8](repeating: 7, count: 1200),
    ] {
      _ = payload.withUnsafeBytes { p in
        withUnsafePointer(to: &to) {
          $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
            sendto(fd, p.baseAddress, p.count, 0, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
          }
        }
      }
    }
    var dropped: UInt64 = 0
    for _ in 0..<100 {
      dropped = try await server.statistics().datagramsDropped
      if dropped >= 2 { break }
      try await Task.sleep(for: .milliseconds(50))
    }
    #expect(dropped >= 2)
    // A real client still gets answers.
    let (connection, _, _) = try await connect(endpoint, ca: try writeCA(ca), log: ClientLog())
    _ = try await connection.query(try testQuery("www.doq.test."), timeout: .seconds(3))
    #expect(try await server.statistics().connectionsOpen == 1)
    // A connection left idle (the client neither closes it nor sends) is freed after the server's
    // idle timeout (2 s); polled for up to 10 s, as a sanitizer run may be slow to get there.
    var open: UInt64 = 1
    for _ in 0..<100 where open > 0 {
      try await Task.sleep(for: .milliseconds(100))
      open = try await server.statistics().connectionsOpen
    }
    #expect(open == 0)
    connection.close()
    await server.stop()
  }
}
