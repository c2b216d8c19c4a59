import Resolver
import XCTest

@testable import TUI

final class DashboardStateTests: XCTestCase {
  func server(_ ip: String, zone: String, phase: String, srtt: Double?) -> ServerSnapshot {
    let t = TransportSnapshot(
      phase: phase, dampedUntil: nil, probes: ProbeCounters(), failures: [:], lastFailure: nil, certificate: nil,
      tlsVersion: nil, handshakeMs: nil, resumed: false)
    return ServerSnapshot(
      address: ip, nsNames: ["ns1.\(zone)"], zones: [zone], dot: t, doq: nil, queries: ["Do53/UDP": 1], srttMs: srtt,
      cleartextWhileGood: 0, firstSeen: 0, lastSeen: 0, reason: "Do53")
  }

  func snapshot() -> MonitorSnapshot {
    let monitor = ResolverMonitor(wallClock: { 1000 })
    let stats = MonitorSnapshot.make(
      monitor: monitor.snapshot(), cache: CacheStatistics(), table: nil, srtt: { _ in nil })
    return MonitorSnapshot(
      stats: stats.stats,
      servers: [
        server("127.53.12.1", zone: "dot.test.", phase: "established", srtt: 3),
        server("127.53.2.1", zone: "lab.", phase: "damped", srtt: 9),
        server("127.53.14.1", zone: "refused.test.", phase: "damped", srtt: nil),
      ], queries: [])
  }

  func testSortFilterAndSelection() {
    var s = DashboardState()
    let snap = snapshot()
    XCTAssertEqual(s.visibleServers(snap).map(\.address), ["127.53.2.1", "127.53.12.1", "127.53.14.1"])
    _ = s.handle(.char(">"), snapshot: snap)
    XCTAssertEqual(s.sort, .zone)
    XCTAssertEqual(s.visibleServers(snap).map(\.address), ["127.53.12.1", "127.53.2.1", "127.53.14.1"])
    _ = s.handle(.char("i"), snapshot: snap)
    XCTAssertEqual(s.visibleServers(snap).first?.address, "127.53.14.1")
    _ = s.handle(.char("/"), snapshot: snap)
    for c in "damped" { _ = s.handle(.char(c), snapshot: snap) }
    _ = s.handle(.enter, snapshot: snap)
    XCTAssertNil(s.prompt)
    XCTAssertEqual(s.visibleServers(snap).count, 2)
    _ = s.handle(.escape, snapshot: snap)
    XCTAssertEqual(s.filter, "")
    _ = s.handle(.end, snapshot: snap)
    XCTAssertEqual(s.selected, 2)
    _ = s.handle(.down, snapshot: snap)
    XCTAssertEqual(s.selected, 2)
    _ = s.handle(.home, snapshot: snap)
    XCTAssertEqual(s.selected, 0)
  }

  func testActionsBecomeControlRequests() {
    var s = DashboardState()
    let snap = snapshot()
    XCTAssertEqual(s.handle(.char("f"), snapshot: snap), [])
    XCTAssertEqual(s.prompt, .confirmFlush)
    XCTAssertEqual(s.handle(.char("y"), snapshot: snap), [.send(ControlRequest(cmd: "flush"), .flushAll)])
    s.apply(response: #"{"ok":true,"flushed":1832,"what":"all"}"#, for: .flushAll)
    XCTAssertEqual(s.message, "cache flushed: 1832 entries")
    _ = s.handle(.char("f"), snapshot: snap)
    XCTAssertEqual(s.handle(.char("n"), snapshot: snap), [])
    XCTAssertEqual(s.message, "flush cancelled")
    XCTAssertEqual(
      s.handle(.char("R"), snapshot: snap),
      [.send(ControlRequest(cmd: "probe", ip: "127.53.2.1"), .probe("127.53.2.1"))])
    XCTAssertEqual(
      s.handle(.char("x"), snapshot: snap),
      [.send(ControlRequest(cmd: "forget", ip: "127.53.2.1"), .forget("127.53.2.1"))])
    _ = s.handle(.char("l"), snapshot: snap)
    for c in "example.test mx" { _ = s.handle(.char(c), snapshot: snap) }
    XCTAssertEqual(
      s.handle(.enter, snapshot: snap),
      [.send(ControlRequest(cmd: "lookup", name: "example.test", type: "MX"), .lookup("example.test MX"))])
    XCTAssertEqual(s.panel, .lookup)
    XCTAssertEqual(s.handle(.char("q"), snapshot: snap), [.quit])
    XCTAssertEqual(s.handle(.interrupt, snapshot: snap), [.quit])
  }

  func testPanelsAndPause() {
    var s = DashboardState()
    let snap = snapshot()
    _ = s.handle(.tab, snapshot: snap)
    XCTAssertEqual(s.panel, .queries)
    _ = s.handle(.backTab, snapshot: snap)
    _ = s.handle(.backTab, snapshot: snap)
    XCTAssertEqual(s.panel, .lookup)
    _ = s.handle(.char("3"), snapshot: snap)
    XCTAssertEqual(s.panel, .privacy)
    _ = s.handle(.char(" "), snapshot: snap)
    XCTAssertTrue(s.paused)
    let lines = Renderer(width: 100, height: 30).frame(s, snap)
    XCTAssertEqual(lines.count, 30)
    XCTAssertTrue(lines[0].text.contains("PAUSED"))
    XCTAssertTrue(lines.allSatisfy { Format.width($0.text) <= 100 })
  }

  func testTheHeaderCountsClientQueriesOverEachEncryptedListener() {
    var snap = snapshot()
    let render = { Renderer(width: 100, height: 30).header(snap, DashboardState())[0].text }
    snap.stats.listeners = ["127.0.0.1:5300"]
    XCTAssertTrue(render().contains("queries 0 (0.0/s)"), render())
    snap.stats.listeners = ["127.0.0.1:5300", "dot 127.0.0.1:853", "doq 127.0.0.1:853"]
    snap.stats.listener.tlsQueries = 12
    snap.stats.listener.quicQueries = 34
    XCTAssertTrue(render().contains("queries 0 (0.0/s; DoT 12, DoQ 34)"), render())
    snap.stats.listeners = ["127.0.0.1:5300", "doq 127.0.0.1:853"]
    XCTAssertTrue(render().contains("(0.0/s; DoQ 34)  cache"), render())
  }

  func testServerDetailShowsTheServersKeepalive() {
    var t = TransportSnapshot(
      phase: "established", dampedUntil: nil, probes: ProbeCounters(), failures: [:], lastFailure: nil,
      certificate: nil, tlsVersion: "TLSv1.3", handshakeMs: 2, resumed: false, keepalive: 30)
    func detail(_ t: TransportSnapshot) -> String {
      let s = ServerSnapshot(
        address: "127.0.0.1", nsNames: ["a.root-servers.ka."], zones: ["."], dot: t, doq: nil, queries: [:],
        srttMs: nil, cleartextWhileGood: 0, firstSeen: 0, lastSeen: 0, reason: "DoT")
      return Renderer(width: 100, height: 40).detail(s, now: 1000).map(\.text).joined(separator: "\n")
    }
    XCTAssertTrue(detail(t).contains("keepalive") && detail(t).contains("30.0s (server's, RFC 7828)"), detail(t))
    t.keepalive = 0
    XCTAssertTrue(detail(t).contains("0: one connection per query"), detail(t))
    t.keepalive = nil
    XCTAssertFalse(detail(t).contains("keepalive"), detail(t))
  }

  func testTooSmallAndPlain() {
    let snap = snapshot()
    let small = Renderer(width: 60, height: 10).frame(DashboardState(), snap)
    XCTAssertTrue(small.map(\.text).joined().contains("enlarge the window"))
    let plain = Renderer(width: 120, height: 100).plain(snap)
    XCTAssertTrue(plain.contains("ADDRESS"))
    XCTAssertTrue(plain.contains("127.53.14.1"))
    XCTAssertFalse(plain.contains("\u{1B}"))
  }
}

final class ResolverMonitorTests: XCTestCase {
  final class Clock: @unchecked Sendable {
    var now = 1_000_000.0
  }

  func testRateLogAndExposure() {
    let clock = Clock()
    let monitor = ResolverMonitor(wallClock: { clock.now })
    let hops = [
      HopSummary(zone: ".", server: "127.53.0.1", transport: .do53UDP, outcome: "referral"),
      HopSummary(zone: "test.", server: "127.53.1.1", transport: .dot, outcome: "answer"),
    ]
    for i in 0..<600 {
      clock.now = 1_000_000 + Double(i) / 100
      monitor.record(
        QueryLogEntry(
          time: clock.now, client: "127.0.0.1", name: "n\(i).test.", type: "A", rcode: "NOERROR", latencyMs: 1,
          cacheHit: i % 2 == 0, hops: i % 2 == 0 ? [] : hops))
    }
    clock.now = 1_000_007
    let d = monitor.snapshot()
    XCTAssertEqual(d.clientQueries, 600)
    XCTAssertEqual(d.cacheHits, 300)
    XCTAssertEqual(d.queries.count, ResolverMonitor.logCapacity)
    XCTAssertEqual(d.queries.first?.name, "n599.test.")
    XCTAssertEqual(d.queries.last?.name, "n100.test.")
    XCTAssertEqual(d.queryRate, 60, accuracy: 0.01)  // 600 queries in the last 10 complete seconds
    XCTAssertEqual(d.privacy.cleartextHops, 300)
    XCTAssertEqual(d.privacy.encryptedHops, 300)
    XCTAssertEqual(d.privacy.byZone, [".": 300])
    XCTAssertEqual(d.privacy.byServer, ["127.53.0.1": 300])
    XCTAssertEqual(d.privacy.cleartextSeries.count, 60)
    XCTAssertEqual(d.privacy.cleartextSeries.reduce(0, +), 300)
    XCTAssertEqual(d.privacy.recent.count, ResolverMonitor.leakCapacity)
    XCTAssertEqual(d.privacy.cleartextShare, 0.5, accuracy: 1e-9)
    clock.now += 700
    XCTAssertEqual(monitor.snapshot().privacy.cleartextSeries.reduce(0, +), 0)
    XCTAssertEqual(monitor.snapshot().queryRate, 0)
  }

  func testBucketSeries() {
    var s = BucketSeries(buckets: 3, width: 10)
    s.add(at: 5)
    s.add(2, at: 15)
    s.add(at: 25)
    XCTAssertEqual(s.values(now: 29), [1, 2, 1])
    s.add(at: 35)
    XCTAssertEqual(s.values(now: 35), [2, 1, 1])
    XCTAssertEqual(s.values(now: 100), [0, 0, 0])
  }
}
