import Foundation
import NIOCore
import NIOPosix
import Testing

@testable import Resolver

/// What the DoQ client sends on the wire between queries, seen by a relay in front of the aioquic
/// fixture server. Queries are padded to 128 octets and more (T-35); ACK-only datagrams are a few dozen.
@Suite(.serialized) struct DoQAckTests {
  /// A connected session through a relay, after one exchange and a pause that let the handshake's
  /// last packets, the server's tickets and their ACKs settle.
  private func settledSession(
    _ server: DoQFixtureServer, _ relay: UDPRecordingRelay
  ) async throws -> any EncryptedSession {
    let log = DoQCallbackLog()
    let connector = try DoQConnector(extraCAFile: nil, group: MultiThreadedEventLoopGroup.singleton)
    let endpoint = try #require(relay.endpoint)
    let (session, _) = try await connector.connect(
      to: endpoint, expectedName: nil, resumption: nil, handshakeTimeout: .seconds(3), idleTimeout: .seconds(30),
      onTicket: log.onTicket, onClose: log.onClose)
    _ = try await session.query(try doqTestQuery("warm.example.", id: 1), timeout: .seconds(3))
    try await Task.sleep(for: .milliseconds(100))
    return session
  }

  /// An answer's ACK waits for the next query instead of going out alone: ngtcp2 0.12 on its own
  /// acknowledges a lone packet after an eighth of the RTT, and at once after an ACK-only packet of
  /// the server, which made nearly every answer cost an extra datagram.
  @Test(.enabled(if: DoQFixtureServer.available, "needs python3 with aioquic and dnspython"))
  func answersAreAcknowledgedByTheNextQuery() async throws {
    let server = try await DoQFixtureServer()
    defer { server.stop() }
    let relay = try await UDPRecordingRelay.start(to: try server.endpoint)
    let session: any EncryptedSession
    do { session = try await settledSession(server, relay) } catch {
      await relay.close()
      throw error
    }
    let warmedUp = relay.passed.count
    do {
      for i in 0..<20 {
        let response = try await session.query(
          try doqTestQuery("q\(i).example.", id: UInt16(i + 2)), timeout: .seconds(3))
        #expect(response.answers.count == 1)
        // Longer than ngtcp2's own delay for one packet's ACK (RTT / 8).
        try await Task.sleep(for: .milliseconds(1))
      }
      try await Task.sleep(for: .milliseconds(50))
    } catch {
      session.close()
      await relay.close()
      throw error
    }
    // Read before closing: the close's own datagram must not count as the last answer's ACK.
    let passed = Array(relay.passed.dropFirst(warmedUp))
    session.close()
    await relay.close()
    // At least one per query (more if a stalled machine made the client retransmit one).
    #expect(passed.filter { $0.fromClient && $0.size >= 100 }.count >= 20)
    // An ACK-only datagram that follows a single server datagram (two in a row are acknowledged at
    // once, RFC 9000 §13.2.2) by less than 4 ms went out without waiting for a query. Only prompt
    // answers are judged: after one slower than 20 ms the client's loss timer (PTO, about 25 ms
    // here) may have sent a probe, which is no ACK.
    var early: [String] = []
    var judged = 0
    for k in passed.indices.dropFirst(2) where !passed[k - 1].fromClient && passed[k - 2].fromClient {
      let (query, answer) = (passed[k - 2], passed[k - 1])
      guard answer.at - query.at < 20_000_000 else { continue }
      judged += 1
      if passed[k].fromClient && passed[k].size < 100 && passed[k].at - answer.at < 4_000_000 {
        early.append("answered after \(ms(answer.at - query.at)), acknowledged after \(ms(passed[k].at - answer.at))")
      }
    }
    #expect(judged >= 5, "only \(judged) of 20 answers came within 20 ms")
    #expect(early.isEmpty, "\(early.count) ACK-only datagrams sent within 4 ms of a lone server datagram: \(early)")
    // The last answer is still acknowledged, alone, once the hold is over.
    let lastAnswer = try #require(passed.lastIndex { !$0.fromClient && $0.size >= 100 })
    #expect(passed[(lastAnswer + 1)...].contains(where: { $0.fromClient }), "the last answer was not acknowledged")
  }
}

/// Nanoseconds as milliseconds, for messages.
private func ms(_ nanoseconds: UInt64) -> String { String(format: "%.2f ms", Double(nanoseconds) / 1e6) }
