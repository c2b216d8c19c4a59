import Foundation
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

  /// Zones of every length up to past four words, and zones that differ only in case or in their
  /// last octet, are each counted apart in the Privacy figures, and again under the same key.
  @Test func everyZoneSpellingIsCountedUnderItsOwnKey() throws {
    let monitor = ResolverMonitor(wallClock: { 1_000 })
    var zones: [String] = []
    for length in 1...40 {
      let label = String(repeating: "z", count: length)
      zones += ["\(label).test.", "\(label.dropLast())Z.test.", "\(label.dropLast())y.test."]
    }
    zones = Array(Set(zones)).sorted()
    for _ in 0..<2 {
      var resolution = Resolution(rcode: .nxDomain)
      resolution.hops = try zones.map { zone in
        Hop(
          server: "192.0.2.3", nsName: nil, zone: NameText(try DNSName(zone)), qname: NameText(try DNSName(zone)),
          qtype: "A", transport: .do53UDP, rttMs: 1, outcome: "nxdomain")
      }
      monitor.record(client: "127.0.0.9", question: Question(name: .root, type: .a), resolution: resolution)
    }
    // One key per spelling in the table itself (the snapshot would merge duplicates by text).
    #expect(monitor.state.withLock { $0.cleartextByZone.count } == zones.count)
    let byZone = monitor.snapshot().privacy.byZone
    #expect(byZone.count == zones.count)
    #expect(zones.allSatisfy { byZone[$0] == 2 })
  }

  /// Hops recorded with the iteration's names (not yet written out) read like hops given as text;
  /// the Privacy data counts every spelling of a zone apart, as it did when hops held text, and a
  /// name and the same text as one.
  @Test func hopsWithNamesReadAsText() throws {
    let monitor = ResolverMonitor(wallClock: { 1_000 })
    let zone = try DNSName("Test.")
    var resolution = Resolution(rcode: .nxDomain)
    resolution.hops = [
      Hop(
        server: "192.0.2.3", nsName: NameText(try DNSName("ns.test.")), zone: NameText(zone),
        qname: NameText(try DNSName("a-rather-long-label.Test.")), qtype: "A", transport: .do53UDP, rttMs: 1,
        outcome: "nxdomain"),
      Hop(
        server: "192.0.2.3", nsName: nil, zone: NameText(try DNSName("test.")), qname: NameText(try DNSName("b.test.")),
        qtype: "A", transport: .do53UDP, rttMs: 1, outcome: "nxdomain"),
      Hop(
        server: "192.0.2.4", nsName: nil, zone: "Test.", qname: "c.test.", qtype: "A", transport: .do53UDP, rttMs: 1,
        outcome: "nxdomain"),
    ]
    #expect(resolution.hops[0].zone == "Test.")
    #expect(resolution.hops[0].qname == "a-rather-long-label.Test.")
    #expect(resolution.hops[0].nsName == "ns.test.")
    monitor.record(client: "127.0.0.9", question: Question(name: zone, type: .a), resolution: resolution)
    let data = monitor.snapshot()
    #expect(data.privacy.byZone == ["Test.": 2, "test.": 1])
    #expect(data.privacy.recent.map(\.name) == ["c.test.", "b.test.", "a-rather-long-label.Test."])
    #expect(data.queries.first?.hops.map(\.zone) == ["Test.", "test.", "Test."])
    // JSON keeps the names' keys.
    let json = try JSONEncoder().encode(resolution.hops[0])
    let object = try JSONSerialization.jsonObject(with: json) as? [String: Any]
    #expect(object?["zone"] as? String == "Test.")
    #expect(object?["qname"] as? String == "a-rather-long-label.Test.")
    #expect(object?["nsName"] as? String == "ns.test.")
    // Decoded, the names are text; the hop still equals (and hashes as) the one built from names.
    let back = try JSONDecoder().decode(Hop.self, from: json)
    #expect(back == resolution.hops[0])
    #expect(Set([back, resolution.hops[0]]).count == 1)
    // Hops whose zones differ in case are different hops, as their text is.
    var other = resolution.hops[1]
    other.zoneText = NameText(try DNSName("TEST."))
    #expect(other != resolution.hops[1])
  }
}
