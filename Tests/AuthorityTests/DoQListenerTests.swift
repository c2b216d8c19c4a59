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

  /// A query whose resolution overruns the answer deadline gets SERVFAIL on its stream from the
  /// listener's watch, counted once; the connection serves the next query with its own answer.
  @Test func aDoQQueryWhoseResolutionOverrunsGetsServfailAndTheConnectionServesOn() async throws {
    let ca = try CertificateFactory()
    let identity = try ca.issue(name: "resolver.test", ip: "127.0.0.1")
    let gated = GatedResolver()
    defer { gated.open() }
    let configuration = ListenerConfiguration(
      addresses: [try SocketAddress(ipAddress: "127.0.0.1", port: 0)], answerDeadline: 0.3,
      quicAddresses: [try SocketAddress(ipAddress: "127.0.0.1", port: 0)],
      tls: try TLSServerContext(certificatePEM: identity.certificatePEM, privateKeyPEM: identity.privateKeyPEM))
    let listener = Listener(
      resolver: gated, configuration: configuration, group: group, logger: Logger(label: "DoQListenerTests"))
    _ = try await listener.start()
    let port = try #require(listener.quicAddresses.first?.port)
    let endpoint = try #require(ServerEndpoint(ip: "127.0.0.1", port: port))
    let log = ClientLog()
    let (connection, info, _) = try await DoQConnection.connect(
      to: endpoint, expectedName: try DNSName("resolver.test."),
      context: try DoQClientContext(extraCAFile: try writeCA(ca)), group: group, resumption: nil, earlyQuery: nil,
      handshakeTimeout: .seconds(5), idleTimeout: .seconds(30), onTicket: log.onTicket, onClose: log.onClose)
    #expect(info.alpn == "doq" && info.certificate.isValid)
    let overdue = try await connection.query(try testQuery("stuck.example."), timeout: .seconds(10))
    #expect(overdue.rcode == .servFail)
    #expect(listener.statistics.resolutionsOverdue == 1 && listener.statistics.resolutionsInFlight == 1)
    gated.open()
    while listener.statistics.resolutionsInFlight > 0 { try await Task.sleep(for: .milliseconds(5)) }
    let next = try await connection.query(try testQuery("next.example."), timeout: .seconds(10))
    #expect(next.rcode == .noError && next.answers.count == 1)
    let stats = listener.statistics
    #expect(stats.resolutionsOverdue == 1 && stats.quicQueries == 2 && stats.quicHandshakes == 1)
    connection.close()
    await listener.stop()
  }
}
