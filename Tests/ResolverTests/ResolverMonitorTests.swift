import NIOCore
import Testing

@testable import Resolver

/// The query log and Privacy panel show what a resolved query did: its name, type, rcode, hops,
/// and for every cleartext hop the name actually sent (after minimisation).
@Suite struct ResolverMonitorTests {
  @Test func aClientAddressIsShownAsItsIPWhenTheLogIsRead() throws {
    let monitor = ResolverMonitor(wallClock: { 1_000 })
    let question = Question(name: try DNSName("example.test."), type: .a)
    monitor.record(
      clientAddress: try SocketAddress(ipAddress: "127.0.0.9", port: 5353), question: question,
      resolution: Resolution(rcode: .noError))
    monitor.record(
      clientAddress: try SocketAddress(ipAddress: "::1", port: 5353), question: question,
      resolution: Resolution(rcode: .noError))
    monitor.record(clientAddress: nil, question: question, resolution: Resolution(rcode: .noError))
    #expect(monitor.snapshot().queries.map(\.client) == ["?", "::1", "127.0.0.9"])
  }

  @Test func aResolvedQueryShowsInTheLogAndThePrivacyData() throws {
    let monitor = ResolverMonitor(wallClock: { 1_000 })
    var resolution = Resolution(rcode: .nxDomain, elapsedMs: 12.5)
    resolution.hops = [
      Hop(
        server: "192.0.2.1", nsName: "a.root.", zone: ".", qname: "test.", qtype: "A", transport: .do53UDP, rttMs: 1,
        outcome: "referral"),
      Hop(
        server: "192.0.2.2", nsName: "ns.test.", zone: "test.", qname: "www.test.", qtype: "AAAA", transport: .dot,
        rttMs: 2, outcome: "nxdomain"),
      Hop(
        server: "192.0.2.3", nsName: nil, zone: "test.", qname: "www.Test.", qtype: "AAAA", transport: .do53TCP,
        rttMs: 3, outcome: "nxdomain"),
    ]
    let question = Question(name: try DNSName("WWW.Test."), type: .aaaa)
    monitor.record(client: "127.0.0.9", question: question, resolution: resolution)
    monitor.record(client: "127.0.0.9", question: question, resolution: Resolution(rcode: .noError, fromCache: true))

    let data = monitor.snapshot()
    #expect(data.clientQueries == 2)
    #expect(data.cacheHits == 1)
    let entry = try #require(data.queries.last)  // newest first: the resolved one is older
    #expect(entry.client == "127.0.0.9")
    #expect(entry.name == "WWW.Test.")
    #expect(entry.type == "AAAA")
    #expect(entry.rcode == "NXDOMAIN")
    #expect(entry.latencyMs == 12.5)
    #expect(!entry.cacheHit)
    #expect(entry.hops.map(\.zone) == [".", "test.", "test."])
    #expect(entry.hops.map(\.outcome) == ["referral", "nxdomain", "nxdomain"])
    #expect(entry.cleartextHops == 2)
    #expect(data.queries.first?.cacheHit == true)
    #expect(data.privacy.cleartextHops == 2)
    #expect(data.privacy.encryptedHops == 1)
    #expect(data.privacy.byZone == [".": 1, "test.": 1])
    #expect(data.privacy.byServer == ["192.0.2.1": 1, "192.0.2.3": 1])
    #expect(data.privacy.recent.map(\.name) == ["www.Test.", "test."])  // newest first, as sent
  }
}
