import NIOCore
import NIOPosix
import Testing

@testable import Resolver

/// 0-RTT: a resumed connection sends the triggering query as early data (OE-24).
@Suite(.serialized) struct DoQEarlyDataTests {
  let group = MultiThreadedEventLoopGroup.singleton

  @Test(.enabled(if: DoQFixtureServer.available, "needs python3 with aioquic and dnspython"))
  func resumedConnectionSendsEarlyQuery() async throws {
    let server = try await DoQFixtureServer()
    defer { server.stop() }
    let context = try DoQClientContext()
    let first = DoQCallbackLog()
    let (connection, firstInfo, late) = try await DoQConnection.connect(
      to: try server.endpoint, expectedName: nil, context: context, group: group, resumption: nil,
      earlyQuery: try doqTestQuery("early.example.", id: 11), handshakeTimeout: .seconds(3),
      idleTimeout: .seconds(30), onTicket: first.onTicket, onClose: first.onClose)
    // Without a ticket there is no 0-RTT: the query goes out right after the handshake.
    #expect(firstInfo.earlyDataAccepted == nil)
    #expect(try await late?.get().header.id == 11)
    _ = try await connection.query(try doqTestQuery("a.example.", id: 1), timeout: .seconds(3))
    #expect(await first.wait { !$0.tickets.isEmpty })
    guard let ticket = first.tickets.first else { throw DoQTestError.noTicket }
    connection.close()

    let second = DoQCallbackLog()
    let (resumed, info, early) = try await DoQConnection.connect(
      to: try server.endpoint, expectedName: nil, context: context, group: group, resumption: ticket,
      earlyQuery: try doqTestQuery("early.example.", id: 12), handshakeTimeout: .seconds(3),
      idleTimeout: .seconds(30), onTicket: second.onTicket, onClose: second.onClose)
    #expect(info.resumed)
    #expect(info.earlyDataAccepted == true)
    let response = try #require(try await early?.get())
    #expect(response.header.id == 12)
    #expect(response.answers.count == 1)
    resumed.close()
  }
}

extension DoQEarlyDataTests {
  @Test(.enabled(if: DoQFixtureServer.available, "needs python3 with aioquic and dnspython"))
  func rejectedEarlyQueryIsResentAfterHandshake() async throws {
    let server = try await DoQFixtureServer(flags: ["--reject-early-data"])
    defer { server.stop() }
    let context = try DoQClientContext()
    let first = DoQCallbackLog()
    let (connection, _, _) = try await DoQConnection.connect(
      to: try server.endpoint, expectedName: nil, context: context, group: group, resumption: nil,
      handshakeTimeout: .seconds(3), idleTimeout: .seconds(30), onTicket: first.onTicket, onClose: first.onClose)
    _ = try await connection.query(try doqTestQuery("a.example.", id: 1), timeout: .seconds(3))
    #expect(await first.wait { !$0.tickets.isEmpty })
    guard let ticket = first.tickets.first else { throw DoQTestError.noTicket }
    connection.close()

    let second = DoQCallbackLog()
    let (resumed, info, early) = try await DoQConnection.connect(
      to: try server.endpoint, expectedName: nil, context: context, group: group, resumption: ticket,
      earlyQuery: try doqTestQuery("early.example.", id: 13), handshakeTimeout: .seconds(3),
      idleTimeout: .seconds(30), onTicket: second.onTicket, onClose: second.onClose)
    #expect(info.resumed)
    #expect(info.earlyDataAccepted == false)
    let response = try #require(try await early?.get())
    #expect(response.header.id == 13)
    // The connection stays usable after the rejection.
    let later = try await resumed.query(try doqTestQuery("b.example.", id: 14), timeout: .seconds(3))
    #expect(later.header.id == 14)
    resumed.close()
  }
}
