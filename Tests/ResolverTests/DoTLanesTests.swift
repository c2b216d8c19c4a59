import Foundation
import NIOCore
import Testing

@testable import Resolver

/// What an extra DoT connection's trouble does to a session (`DoTLanes`), against
/// `Fixtures/dot_lanes_server.py`: its first connection answers each query a second late, so
/// queries stay outstanding there, and every later connection misbehaves (`--extra`). The
/// fixture's log says which connection each query went over.
@Suite(.serialized) struct DoTLanesTests {
  private func connect(
    _ server: DoQFixtureServer, counters: EncryptedReplyCounters, maxConnections: Int = 2
  ) async throws -> DoTConnection {
    let (connection, _) = try await DoTConnection.connect(
      to: try server.endpoint, expectedName: nil, context: try DoTClientContext(), resumption: nil,
      connectTimeout: .seconds(2), handshakeTimeout: .seconds(3), idleTimeout: .seconds(30),
      maxConnections: maxConnections,
      lanesMinRTT: .zero, onTicket: { _ in }, onClose: { _ in }, counters: counters)
    return connection
  }

  /// Two queries held on the first connection, the second opening the extra one; returns once
  /// the extra connection is up, with the two still outstanding.
  private func openExtra(
    _ connection: DoTConnection, _ server: DoQFixtureServer, counters: EncryptedReplyCounters
  ) async throws -> [Task<Message, any Error>] {
    let first = Task { try await connection.query(try dotQuery("a1.dot.test.", .a, id: 1), timeout: .seconds(8)) }
    #expect(await server.waitForLine(prefix: "QUERY 1 a1"))
    let second = Task { try await connection.query(try dotQuery("a2.dot.test.", .a, id: 2), timeout: .seconds(8)) }
    #expect(await server.waitForLine(prefix: "QUERY 1 a2"))
    for _ in 0..<150 where counters.extraDoTConnections == 0 { try await Task.sleep(for: .milliseconds(20)) }
    #expect(counters.extraDoTConnections == 1, "the extra connection came up")
    return [first, second]
  }

  @Test(.enabled(if: DoQFixtureServer.available, "needs python3 with dnspython and cryptography"))
  func aQueryAnExtraConnectionsEndCutOffIsAnsweredOnTheFirstAndNoOtherOpens() async throws {
    let server = try await DoQFixtureServer(script: "dot_lanes_server.py", flags: ["--extra", "close", "--delay", "2"])
    defer { server.stop() }
    let counters = EncryptedReplyCounters()
    let connection = try await connect(server, counters: counters)
    let held = try await openExtra(connection, server, counters: counters)
    // The first connection has two queries outstanding, the extra one none: this one goes there,
    // the server closes it unanswered, and the query goes again on the first connection.
    let third = Task { try await connection.query(try dotQuery("a3.dot.test.", .a, id: 3), timeout: .seconds(8)) }
    #expect(await server.waitForLine(prefix: "QUERY 1 a3"))
    // Queries overlap again, but an extra connection that ended unanswered keeps others off for
    // 30 s: this one waits on the first connection and no third connection opens.
    let fourth = try await connection.query(try dotQuery("a4.dot.test.", .a, id: 4), timeout: .seconds(8))
    #expect(fourth.answers.count == 1)
    let answer = try await third.value
    let a3 = try DNSName("a3.dot.test.")
    #expect(answer.header.id == 3 && answer.questions.first?.name == a3)
    #expect(answer.answers.count == 1)
    #expect(server.log.contains("QUERY 2 a3.dot.test."), "sent on the extra connection first:\n\(server.log)")
    #expect(server.log.contains("QUERY 1 a4.dot.test."), "\(server.log)")
    #expect(!server.log.contains("TCP 3"), "another extra connection opened at once:\n\(server.log)")
    #expect(counters.extraDoTConnections == 1)
    #expect(connection.isActive, "the session outlived its extra connection")
    for task in held { #expect(try await task.value.answers.count == 1) }
    connection.close()
  }

  @Test(.enabled(if: DoQFixtureServer.available, "needs python3 with dnspython and cryptography"))
  func aTimeoutOnAnExtraConnectionIsALaneTimeoutAndRetiresIt() async throws {
    let server = try await DoQFixtureServer(
      script: "dot_lanes_server.py", flags: ["--extra", "silent", "--delay", "2"])
    defer { server.stop() }
    let counters = EncryptedReplyCounters()
    let connection = try await connect(server, counters: counters)
    let held = try await openExtra(connection, server, counters: counters)
    // Not `.timeout`: the encryption policy counts those towards damping DoT (then Do53).
    await #expect(throws: TransportError.laneTimeout) {
      try await connection.query(try dotQuery("a3.dot.test.", .a, id: 3), timeout: .milliseconds(300))
    }
    #expect(server.log.contains("QUERY 2 a3.dot.test."), "\(server.log)")
    // The silent connection is retired and no other opens: the next query waits on the first.
    let answer = try await connection.query(try dotQuery("a4.dot.test.", .a, id: 4), timeout: .seconds(8))
    #expect(answer.answers.count == 1)
    #expect(
      server.log.contains("QUERY 1 a4.dot.test.") && !server.log.contains("QUERY 2 a4.dot.test."), "\(server.log)")
    #expect(counters.extraDoTConnections == 1)
    #expect(connection.isActive)
    for task in held { _ = try await task.value }
    connection.close()
  }

  /// Extra connections open one handshake at a time until the server has taken one, then one
  /// more than are up, within the cap. One extra connection is up and every connection is busy;
  /// a4, a5 and a6 each find them busy. With a cap of 5, a4 and a5 open the third and fourth at
  /// once (both TCP connects come while the server holds the third's handshake for 1.5 s) and a6
  /// opens none (two handshakes under way, one extra up). With a cap of 3, a4 opens the third
  /// and nothing opens a fourth.
  @Test(
    .enabled(if: DoQFixtureServer.available, "needs python3 with dnspython and cryptography"), arguments: [5, 3])
  func onceAnExtraConnectionIsUpTheNextTwoOpenAtOnceWithinTheCap(cap: Int) async throws {
    let server = try await DoQFixtureServer(
      script: "dot_lanes_server.py", flags: ["--extra", "answer", "--delay", "4", "--handshake-delay", "1.5"])
    defer { server.stop() }
    let counters = EncryptedReplyCounters()
    let connection = try await connect(server, counters: counters, maxConnections: cap)
    var held = try await openExtra(connection, server, counters: counters)
    // a3 goes on the idle extra connection; a4 to a6 find every connection busy.
    for i in 3...6 {
      held.append(
        Task { try await connection.query(try dotQuery("a\(i).dot.test.", .a, id: UInt16(i)), timeout: .seconds(10)) })
      #expect(await server.waitForLog(containing: " a\(i).dot.test.", seconds: 2), "a\(i) was not sent:\n\(server.log)")
    }
    #expect(await server.waitForLine(prefix: "CONN 3"), "\(server.log)")
    let lines = server.log.split(separator: "\n").map(String.init)
    let conn3 = lines.firstIndex(of: "CONN 3") ?? lines.count
    if cap == 5 {
      let tcp4 = lines.firstIndex(of: "TCP 4")
      #expect(tcp4.map { $0 < conn3 } == true, "the fourth waited for the third's handshake:\n\(server.log)")
    }
    for task in held { #expect(try await task.value.answers.count == 1) }
    // Cap 5: a6 came while two handshakes ran with one extra up (the ramp); cap 3: past the cap.
    let tooMany = cap == 5 ? "TCP 5" : "TCP 4"
    #expect(!server.log.contains(tooMany), "\(tooMany) with a cap of \(cap):\n\(server.log)")
    #expect(counters.extraDoTConnections == (cap == 5 ? 3 : 2))
    connection.close()
  }
}
