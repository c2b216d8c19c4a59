import Foundation
import Logging
import NIOCore
import NIOPosix
import Synchronization
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

/// Passes exchanges on to a real exchanger and notes the timeout and budget each was given.
final class RecordingExchanger: UpstreamExchanger {
  let inner: any UpstreamExchanger
  let limits = Mutex<[(timeout: TimeAmount, budget: Double?)]>([])
  init(_ inner: any UpstreamExchanger) { self.inner = inner }
  nonisolated(nonsending) func exchange(
    _ query: Message, server: ServerEndpoint, context: ExchangeContext, timeout: TimeAmount
  ) async -> ExchangeResult {
    limits.withLock { $0.append((timeout, context.budget)) }
    return await inner.exchange(query, server: server, context: context, timeout: timeout)
  }
}

/// The whole path: a resolution whose deadline (0.4 s) is shorter than the silent root server's
/// timeout (2 s) gives the exchange the server's whole timeout and its own time left as the
/// budget, so the exchange itself knows the cut; it ends at the deadline, and that timeout is not
/// held against the server. (The timeout used to arrive already cut, and the cut showed
/// only when the clock moved between two reads.)
@Suite struct DeadlineCutTimeoutTests {
  @Test func aResolutionsDeadlineDoesNotCountAsTheServersTimeout() async throws {
    let silent = try await DatagramBootstrap(group: MultiThreadedEventLoopGroup.singleton)
      .bind(host: "127.0.0.1", port: 0).get()
    let port = try #require(silent.localAddress?.port)
    var config = ResolverConfiguration()
    config.rootHints = RootHints(unchecked: [(try DNSName("a.root."), ["127.0.0.1"])])
    config.primeRoot = false
    config.allowLoopback = true
    config.do53Port = port
    config.queryTimeoutMs = 2000
    config.queryRetries = 1
    config.limits.deadline = 0.4
    let exchanger = RecordingExchanger(
      Do53Exchanger(transport: Do53Transport(group: MultiThreadedEventLoopGroup.singleton)))
    let resolver = RecursiveResolver(
      configuration: config, exchanger: exchanger, time: SystemTimeSource(), logger: Logger(label: "t"))
    let result = await resolver.resolve(Question(name: try DNSName("example.test."), type: .a))
    #expect(result.rcode == .servFail)
    #expect(result.hops.map(\.outcome) == ["timeout"])
    #expect(resolver.serverSelection.timeouts(server: "127.0.0.1") == 0, "the deadline was blamed on the server")
    let given = exchanger.limits.withLock { $0 }
    #expect(given.count == 1)
    #expect(given.first?.timeout == .milliseconds(2000), "\(given)")
    #expect(given.first.map { ($0.budget ?? 99) <= 0.4 } == true, "\(given)")
    try await silent.close()
  }
}
