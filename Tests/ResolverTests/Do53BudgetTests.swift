import Foundation
import NIOCore
import NIOPosix
import Testing

@testable import Resolver

/// A Do53 exchange against a UDP socket that never answers, with and without a budget shorter
/// than the exchange's timeout: only the first is "cut short" (the resolution's deadline, not the
/// server, ended it).
@Suite struct Do53BudgetTests {
  @Test func aTimeoutIsCutShortOnlyWhenTheBudgetCutTheLegsTime() async throws {
    let silent = try await DatagramBootstrap(group: MultiThreadedEventLoopGroup.singleton)
      .bind(host: "127.0.0.1", port: 0).get()
    let port = try #require(silent.localAddress?.port)
    let endpoint = try #require(ServerEndpoint(ip: "127.0.0.1", port: port))
    let exchanger = Do53Exchanger(transport: Do53Transport(group: MultiThreadedEventLoopGroup.singleton))
    var q = Message()
    q.header.id = 7
    q.questions = [Question(name: try DNSName("silent.example.test."), type: .a)]

    let cut = await exchanger.exchange(q, server: endpoint, timeout: .seconds(3), budget: 0.3)
    #expect(cut.response == nil && cut.legs.last?.error == .timeout)
    #expect(cut.cutShort)

    q.questions = [Question(name: try DNSName("silent2.example.test."), type: .a)]
    let whole = await exchanger.exchange(q, server: endpoint, timeout: .milliseconds(300), budget: 3)
    #expect(whole.response == nil && whole.legs.last?.error == .timeout)
    #expect(!whole.cutShort, "the server took longer than the whole timeout")

    let none = await exchanger.exchange(q, server: endpoint, timeout: .seconds(1), budget: 0)
    #expect(none.legs.isEmpty && none.cutShort, "nothing sent with no time left")
    try await silent.close()
  }
}
