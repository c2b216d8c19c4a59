import Foundation
import NIOCore
import NIOPosix
import Testing

@testable import Resolver

/// What the DoQ client sends on the wire between queries, counted by a relay in front of the aioquic
/// fixture server.
@Suite(.serialized) struct DoQAckTests {
  /// An answer's ACK waits for the next query instead of going out alone: ngtcp2 0.12 on its own
  /// acknowledges a lone packet after an eighth of the RTT, which made every answer cost an extra
  /// datagram (and a timer and a wake-up of the server).
  @Test(.enabled(if: DoQFixtureServer.available, "needs python3 with aioquic and dnspython"))
  func answersAreAcknowledgedByTheNextQuery() async throws {
    let server = try await DoQFixtureServer()
    defer { server.stop() }
    let relay = try await UDPCountingRelay.start(to: try server.endpoint)
    let log = DoQCallbackLog()
    let connector = try DoQConnector(extraCAFile: nil, group: MultiThreadedEventLoopGroup.singleton)
    let endpoint = try #require(relay.endpoint)
    let (session, _) = try await connector.connect(
      to: endpoint, expectedName: nil, resumption: nil, handshakeTimeout: .seconds(3), idleTimeout: .seconds(30),
      onTicket: log.onTicket, onClose: log.onClose)
    // The handshake's last packets, the server's tickets and their ACKs settle first.
    _ = try await session.query(try doqTestQuery("warm.example.", id: 1), timeout: .seconds(3))
    try await Task.sleep(for: .milliseconds(100))

    let warmedUp = relay.passed.count
    for i in 0..<20 {
      let response = try await session.query(
        try doqTestQuery("q\(i).example.", id: UInt16(i + 2)), timeout: .seconds(3))
      #expect(response.answers.count == 1)
      // Longer than ngtcp2's own delay for one packet's ACK (RTT / 8).
      try await Task.sleep(for: .milliseconds(1))
    }
    try await Task.sleep(for: .milliseconds(20))
    let passed = Array(relay.passed.dropFirst(warmedUp))
    // Queries are padded to 128 octets and more (T-35); ACK-only datagrams are a few dozen.
    let queries = passed.filter { $0.fromClient && $0.size >= 100 }.count
    #expect(queries == 20)
    // An ACK-only datagram that follows a single server datagram (two in a row are acknowledged at
    // once, RFC 9000 §13.2.2) by less than 4 ms went out without waiting for a query.
    var early = 0
    for k in passed.indices.dropFirst(2) where passed[k].fromClient && passed[k].size < 100 {
      let answer = passed[k - 1]
      if !answer.fromClient && passed[k - 2].fromClient && passed[k].at - answer.at < 4_000_000 { early += 1 }
    }
    #expect(early == 0, "\(early) ACK-only datagrams sent within 4 ms of a lone server datagram")
    // The last answer is still acknowledged, alone, once the hold is over (within the 20 ms waited).
    let lastAnswer = try #require(passed.lastIndex { !$0.fromClient && $0.size >= 100 })
    #expect(passed[(lastAnswer + 1)...].contains { $0.fromClient }, "the last answer was not acknowledged")
    session.close()
    await relay.close()
  }
}
