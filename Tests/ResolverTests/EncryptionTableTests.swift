import Testing

@testable import Resolver

/// Drives the RFC 9539 state machine through every transition of spec §5 with explicit times.
@Suite struct EncryptionTableTests {
  let ip = "192.0.2.53"
  let day: Double = 86_400
  var settings: EncryptionSettings {
    var s = EncryptionSettings()
    s.transports = [.dot]
    return s
  }

  func probe(_ table: inout EncryptionTable, at t: Double) {
    _ = table.connectionStarted(ip, .dot, now: t)
  }
  func succeed(_ table: inout EncryptionTable, at t: Double) {
    table.handshakeSucceeded(ip, .dot, now: t, certificate: nil, handshakeMs: 5, tlsVersion: "TLSv1.3", resumed: false)
  }

  /// A resolver running for weeks keeps the servers of its recent traffic: once the table has
  /// grown to its prune size, servers unused for longer than persistence and damping are dropped
  /// as new ones come (before, only the saved copy was pruned). Servers with a session stay.
  @Test func theLiveTableIsPrunedAsItGrows() {
    var table = EncryptionTable(settings: settings)
    let horizon = max(settings.persistence, settings.damping)
    probe(&table, at: 0)  // 192.0.2.53: a session pending, kept whatever its age
    for i in 1..<EncryptionTable.minPruneSize {
      table.noteServer("10.0.\(i >> 8).\(i & 255)", nsName: "ns.example.", zone: "example.", now: 0)
    }
    #expect(table.servers.count == EncryptionTable.minPruneSize)
    table.noteServer("10.1.0.0", nsName: nil, zone: "example.", now: horizon + 1)
    #expect(table.servers.count == 2, "\(table.servers.count)")
    #expect(table.servers[ip] != nil && table.servers["10.1.0.0"] != nil)
  }

  /// The dashboard's "servers by state" counts each server once, by its best transport: a server
  /// with a DoQ session is established (it was counted by its DoT phase, "unknown").
  @Test func serversByStateCountsEveryTransportInUse() {
    var both = EncryptionSettings()
    both.transports = [.doq, .dot]
    var table = EncryptionTable(settings: both)
    for (address, t) in [("192.0.2.1", EncryptedTransport.doq), ("192.0.2.2", .dot)] {
      _ = table.connectionStarted(address, t, now: 1_000)
      table.handshakeSucceeded(
        address, t, now: 1_000, certificate: nil, handshakeMs: 5, tlsVersion: "TLSv1.3", resumed: false)
    }
    table.noteServer("192.0.2.3", nsName: "ns.example.", zone: "example.", now: 1_000)
    let snapshot = MonitorSnapshot.make(
      monitor: ResolverMonitor(wallClock: { 1_000 }).snapshot(), cache: CacheStatistics(), table: table,
      srtt: { _ in nil })
    #expect(snapshot.stats.encryption.serversByState == ["established": 2, "unknown": 1])
  }

  /// OE-39: over the session cap, the session least recently active goes first, and sending a
  /// query is activity (a session whose queries wait on a slow server is in use).
  @Test func aSessionWithAQuerySentIsNotTheLeastRecentlyActive() {
    var capped = settings
    capped.maxSessions = 1
    var table = EncryptionTable(settings: capped)
    for address in ["192.0.2.1", "192.0.2.2"] {
      _ = table.connectionStarted(address, .dot, now: 0)
      table.handshakeSucceeded(
        address, .dot, now: 0, certificate: nil, handshakeMs: 5, tlsVersion: "TLSv1.3", resumed: false)
    }
    table.responseReceived("192.0.2.1", .dot, now: 5, keepalive: nil)
    table.responseReceived("192.0.2.2", .dot, now: 6, keepalive: nil)
    table.querySent("192.0.2.1", .dot, now: 10)
    #expect(table.sessionsOverCap().map(\.0) == ["192.0.2.2"])
  }

  /// The iteration's `noteServer` (names as `DNSName`) records a new NS name or zone of a known
  /// server, whatever its case, and the same pair again only moves `lastSeen`; the memo of the
  /// last pair is not part of the record's value, and a forgotten server is noted afresh.
  @Test func notingAServerAgainRecordsANewPairAndTheSamePairOnlyMovesLastSeen() throws {
    var table = EncryptionTable(settings: settings)
    let ns = try DNSName("NS1.Example.TEST.")
    let zone = try DNSName("Example.TEST.")
    table.noteServer(ip, nsName: ns, zone: zone, now: 1)
    let first = try #require(table.servers[ip])
    #expect(first.nsNames == ["ns1.example.test."] && first.zones == ["example.test."])
    table.noteServer(ip, nsName: try DNSName("ns1.example.test."), zone: try DNSName("example.test."), now: 2)
    let again = try #require(table.servers[ip])
    #expect(again.lastSeen == 2 && again.nsNames == first.nsNames && again.zones == first.zones)
    var plain = ServerRecord(address: ip, now: 1)  // as a state file restores it: no memo
    (plain.nsNames, plain.zones, plain.lastSeen) = (first.nsNames, first.zones, 2)
    #expect(again == plain, "the memo of the last pair is not part of the record")
    table.noteServer(ip, nsName: nil, zone: try DNSName("sub.example.test."), now: 3)
    #expect(table.servers[ip]?.zones == ["example.test.", "sub.example.test."])
    table.forget(ip)
    table.noteServer(ip, nsName: ns, zone: zone, now: 4)
    #expect(table.servers[ip]?.zones == ["example.test."] && table.servers[ip]?.firstSeen == 4)
  }

  /// A query sent on a session counts as an encrypted query of that transport, never as
  /// cleartext, and is the session's latest activity; a response clears the timeout count and
  /// reports the session's resumption flags for the trace.
  @Test func aQuerySentIsCountedAndAResponseReportsTheSessionFlags() {
    var table = EncryptionTable(settings: settings)
    _ = table.connectionStarted(ip, .dot, now: 0)
    table.handshakeSucceeded(ip, .dot, now: 0, certificate: nil, handshakeMs: 5, tlsVersion: "TLSv1.3", resumed: true)
    let before = table.servers[ip]
    table.querySent(ip, .dot, now: 7)
    table.querySent(ip, .dot, now: 8)
    #expect(table.servers[ip]?.queries == [.dot: 2])
    #expect(table.servers[ip]?.cleartextWhileGood == 0)
    #expect(table.state(ip, .dot).lastActivity == 8)
    #expect(before?.transports[.dot]?.lastActivity == 0, "a copy taken before keeps its state")
    _ = table.queryTimedOut(ip, .dot, now: 9)
    #expect(table.state(ip, .dot).consecutiveQueryTimeouts == 1)
    let flags = table.responseReceived(ip, .dot, now: 10, keepalive: 30)
    #expect(flags.resumed && flags.earlyData == nil)
    #expect(table.state(ip, .dot).consecutiveQueryTimeouts == 0 && table.state(ip, .dot).keepalive == 30)
    #expect(table.transports(ip)[.doq] == nil, "DoQ was never touched")
  }

  /// A server asked for many zones keeps only a few of their names (display only).
  @Test func namesPerServerAreCapped() {
    var table = EncryptionTable(settings: settings)
    for i in 0..<100 { table.noteServer(ip, nsName: "ns\(i).example.", zone: "z\(i).example.", now: Double(i)) }
    let record = table.servers[ip]
    #expect(record?.zones.count == EncryptionTable.maxNamesPerServer)
    #expect(record?.nsNames.count == EncryptionTable.maxNamesPerServer)
  }

  @Test func unknownServerGetsDo53WithOneProbe() {
    let table = EncryptionTable(settings: settings)
    #expect(table.phase(ip, .dot, now: 0) == .unknown)
    guard case .do53(let reason, let probes) = table.decide(ip, now: 0) else {
      Issue.record("expected Do53")
      return
    }
    #expect(probes == [.dot])
    #expect(reason.description.contains("probe started"))
  }

  @Test func probingKeepsDo53AndDoesNotProbeTwice() {
    var table = EncryptionTable(settings: settings)
    probe(&table, at: 0)
    #expect(table.phase(ip, .dot, now: 1) == .probing)
    #expect(table.decide(ip, now: 1) == .do53(reason: "Do53: DoT probe in flight", probe: []))
  }

  @Test func establishedCarriesEverythingAndSuppressesCleartext() {
    var table = EncryptionTable(settings: settings)
    probe(&table, at: 0)
    succeed(&table, at: 0.1)
    #expect(table.phase(ip, .dot, now: 1) == .established)
    #expect(table.decide(ip, now: 1) == .useSession(.dot, reason: "DoT: session established"))
    #expect(table.cleartextSuppressed(ip, now: 1))
  }

  @Test func cleanCloseKeepsTheServerGoodThenStaleAfterPersistence() {
    var table = EncryptionTable(settings: settings)
    probe(&table, at: 0)
    succeed(&table, at: 0)
    table.responseReceived(ip, .dot, now: 10, keepalive: nil)
    table.sessionClosed(ip, .dot, now: 20, clean: true, failure: "clean-close", detail: "server closed")
    // OE-30: GOOD-IDLE, no cleartext, reconnect at once.
    #expect(table.phase(ip, .dot, now: 30) == .goodIdle)
    #expect(table.decide(ip, now: 30) == .connectAndUse(.dot, reason: "DoT: known good, reconnecting"))
    // persistence (3 days) after the last response → GOOD-STALE: Do53 again, with a probe.
    let stale = 10 + 3 * day
    #expect(table.phase(ip, .dot, now: stale) == .goodStale)
    #expect(!table.cleartextSuppressed(ip, now: stale))
    guard case .do53(_, let probes) = table.decide(ip, now: stale) else {
      Issue.record("expected Do53 when stale")
      return
    }
    #expect(probes == [.dot])
  }

  @Test func handshakeFailureDampsForOneDayThenRetryable() {
    var table = EncryptionTable(settings: settings)
    probe(&table, at: 0)
    table.handshakeFailed(ip, .dot, now: 1, failure: "refused", timedOut: false, detail: "connection refused")
    #expect(table.phase(ip, .dot, now: 2) == .damped(until: 1 + day))
    guard case .do53(let reason, let probes) = table.decide(ip, now: 2) else {
      Issue.record("expected Do53")
      return
    }
    #expect(probes.isEmpty)
    #expect(reason.description.contains("damped until") && reason.description.contains("connection refused"))
    #expect(table.phase(ip, .dot, now: 1 + day + 1) == .retryable)
    guard case .do53(_, let again) = table.decide(ip, now: 1 + day + 1) else { return }
    #expect(again == [.dot])
    let st = table.servers[ip]?.state(.dot)
    #expect(st?.failures == ["refused": 1])
    #expect(st?.probes.failed == 1)
  }

  @Test func handshakeTimeoutSetsCompletedAndDamps() {
    var table = EncryptionTable(settings: settings)
    probe(&table, at: 100)
    table.handshakeFailed(
      ip, .dot, now: 104, failure: "handshake-timeout", timedOut: true, detail: "TLS handshake timeout")
    let st = table.servers[ip]?.state(.dot)
    #expect(st?.status == .timeout)
    #expect(st?.completed == 104)  // §6 gap 2
    #expect(st?.probes.timedOut == 1)
    #expect(table.phase(ip, .dot, now: 105) == .damped(until: 104 + day))
  }

  @Test func sessionFailureDampsFromTheFailureTime() {
    var table = EncryptionTable(settings: settings)
    probe(&table, at: 0)
    succeed(&table, at: 0)
    table.sessionClosed(
      ip, .dot, now: 5 * day, clean: false, failure: "reset", detail: "reset with queries outstanding")
    // Not re-probed at once even though the handshake was long ago (§6 gap 2).
    #expect(table.phase(ip, .dot, now: 5 * day + 1) == .damped(until: 6 * day))
    #expect(!table.cleartextSuppressed(ip, now: 5 * day + 1))
  }

  @Test func repeatedQueryTimeoutsCountAsSessionFailure() {
    var table = EncryptionTable(settings: settings)
    probe(&table, at: 0)
    succeed(&table, at: 0)
    let first = table.queryTimedOut(ip, .dot, now: 1)
    let second = table.queryTimedOut(ip, .dot, now: 2)
    let third = table.queryTimedOut(ip, .dot, now: 3)
    #expect(!first && !second && third)
    // A response in between resets the count.
    var other = EncryptionTable(settings: settings)
    probe(&other, at: 0)
    succeed(&other, at: 0)
    _ = other.queryTimedOut(ip, .dot, now: 1)
    other.responseReceived(ip, .dot, now: 2, keepalive: nil)
    let a = other.queryTimedOut(ip, .dot, now: 3)
    let b = other.queryTimedOut(ip, .dot, now: 4)
    #expect(!a && !b)
  }

  /// Issue 8 regression: a server that completes handshakes but never answers (hostile DoQ
  /// `doqmute`) used to get a clean close after 3 timeouts and stay "good" (reconnect, time out,
  /// forever); now the transport is damped and the next query goes over Do53.
  @Test func repeatedQueryTimeoutsDampTheTransport() {
    var table = EncryptionTable(settings: settings)
    probe(&table, at: 0)
    succeed(&table, at: 0)
    for n in 1...3 { _ = table.queryTimedOut(ip, .dot, now: Double(n)) }
    table.sessionClosed(ip, .dot, now: 3, clean: true, failure: "", detail: "clean close")
    #expect(table.phase(ip, .dot, now: 4) == .damped(until: 3 + day))
    #expect(table.servers[ip]?.state(.dot).failures["query-timeouts"] == 1)
    #expect(!table.cleartextSuppressed(ip, now: 4))
    guard case .do53 = table.decide(ip, now: 4) else {
      Issue.record("expected Do53 while damped")
      return
    }
  }

  /// Malformed responses count like timeouts (hostile DoT `dotformerr`): three in a row damp.
  @Test func repeatedMalformedResponsesDampTheTransport() {
    var table = EncryptionTable(settings: settings)
    probe(&table, at: 0)
    succeed(&table, at: 0)
    let results = (1...3).map { table.queryFailed(ip, .dot, now: Double($0), timedOut: false) }
    #expect(results == [false, false, true])
    #expect(table.servers[ip]?.state(.dot).failures["malformed-responses"] == 1)
    #expect(table.servers[ip]?.history.last?.kind == .queryFailures)
    table.sessionClosed(ip, .dot, now: 3, clean: true, failure: "", detail: "clean close")
    #expect(table.phase(ip, .dot, now: 4) == .damped(until: 3 + day))
  }

  @Test func restartDropsSessionsAndTreatsAStaleInitiatedAsUnknown() {
    var table = EncryptionTable(settings: settings)
    probe(&table, at: 0)  // in flight at shutdown: initiated set, status null
    let reloaded = EncryptionTable(settings: settings, servers: Array(table.servers.values))
    #expect(reloaded.phase(ip, .dot, now: 10) == .unknown)  // §6 gap 3
    guard case .do53(_, let probes) = reloaded.decide(ip, now: 10) else { return }
    #expect(probes == [.dot])

    var good = EncryptionTable(settings: settings)
    probe(&good, at: 0)
    succeed(&good, at: 1)
    let restarted = EncryptionTable(settings: settings, servers: Array(good.servers.values))
    // An established session becomes GOOD-IDLE: still no cleartext (OE-8, OE-11).
    #expect(restarted.phase(ip, .dot, now: 2) == .goodIdle)
    #expect(restarted.cleartextSuppressed(ip, now: 2))
  }

  @Test func ticketsAreAStackUsedOnceAndCapped() {
    var table = EncryptionTable(settings: settings)
    for i in 0..<6 { table.ticketReceived(ip, .dot, ticket: [UInt8(i)], now: 0) }
    #expect(table.servers[ip]?.state(.dot).resumptions.count == 4)
    let ticket = table.connectionStarted(ip, .dot, now: 1)
    #expect(ticket == [5])  // LIFO (OE-22)
    table.handshakeFailed(ip, .dot, now: 2, failure: "refused", timedOut: false, detail: "x")
    #expect(table.servers[ip]?.state(.dot).resumptions.count == 3)
  }

  @Test func probeCapLimitsConcurrentHandshakes() {
    var s = settings
    s.maxConcurrentProbes = 2
    var table = EncryptionTable(settings: s)
    _ = table.connectionStarted("192.0.2.1", .dot, now: 0)
    _ = table.connectionStarted("192.0.2.2", .dot, now: 0)
    guard case .do53(let reason, let probes) = table.decide("192.0.2.3", now: 0) else { return }
    #expect(probes.isEmpty)
    #expect(reason.description.contains("probe skipped"))
  }

  @Test func sessionCapClosesLeastRecentlyActiveFirst() {
    var s = settings
    s.maxSessions = 2
    var table = EncryptionTable(settings: s)
    for (i, addr) in ["192.0.2.1", "192.0.2.2", "192.0.2.3"].enumerated() {
      _ = table.connectionStarted(addr, .dot, now: 0)
      table.handshakeSucceeded(addr, .dot, now: 0, certificate: nil, handshakeMs: 1, tlsVersion: nil, resumed: false)
      table.responseReceived(addr, .dot, now: Double(10 - i), keepalive: nil)  // .1 most recent, .3 least
    }
    #expect(table.sessionsOverCap().map(\.0) == ["192.0.2.3"])
  }

  @Test func cleartextToAKnownGoodServerIsCounted() {
    var table = EncryptionTable(settings: settings)
    table.noteQuery(ip, transport: .do53UDP, now: 0)
    probe(&table, at: 0)
    succeed(&table, at: 0)
    table.noteQuery(ip, transport: .dot, now: 1)
    #expect(table.servers[ip]?.cleartextWhileGood == 0)
    table.noteQuery(ip, transport: .do53UDP, now: 2)  // a bug elsewhere would show here
    #expect(table.servers[ip]?.cleartextWhileGood == 1)
    #expect(table.servers[ip]?.queries[.do53UDP] == 2)
  }

  @Test func pruneDropsLongUnusedServers() {
    var table = EncryptionTable(settings: settings)
    table.noteServer("192.0.2.1", nsName: "ns.a.test.", zone: "a.test.", now: 0)
    table.noteServer("192.0.2.2", nsName: "ns.b.test.", zone: "b.test.", now: 3 * day)
    table.prune(now: 3 * day + 10)
    #expect(table.servers.keys.sorted() == ["192.0.2.2"])
  }

  @Test func disabledEncryptionNeverProbes() {
    var s = settings
    s.enabled = false
    let table = EncryptionTable(settings: s)
    #expect(table.decide(ip, now: 0) == .do53(reason: "Do53: encryption off", probe: []))
  }

  /// "Known good" means one thing: what the dashboard shows (`phase`), what server choice
  /// prefers (`encryptionWorks`) and how the query goes (`decide`) agree. A server whose last
  /// response is older than persistence, or whose handshake succeeded without a response since,
  /// is good-stale: Do53 with a probe, and not preferred as encrypted (a re-test sent to it
  /// beside an encrypted query would show the name in cleartext).
  @Test func knownGoodMeansTheSameToTheDashboardServerChoiceAndTheDecision() {
    let persistence = settings.persistence
    var table = EncryptionTable(settings: settings)
    // Answered an hour ago, session closed since: good-idle, encrypted, reconnect.
    probe(&table, at: 0)
    succeed(&table, at: 0)
    table.responseReceived(ip, .dot, now: 1, keepalive: nil)
    table.sessionClosed(ip, .dot, now: 2, clean: true, failure: "clean-close", detail: "idle")
    let hourLater = 3_600.0
    #expect(table.phase(ip, .dot, now: hourLater) == .goodIdle)
    #expect(table.encryptionWorks(ip, now: hourLater))
    guard case .connectAndUse(.dot, _) = table.decide(ip, now: hourLater) else {
      Issue.record("good-idle not reconnected: \(table.decide(ip, now: hourLater))")
      return
    }
    // Past persistence: good-stale everywhere.
    let later = 1 + persistence + 1
    #expect(table.phase(ip, .dot, now: later) == .goodStale)
    #expect(!table.encryptionWorks(ip, now: later), "a good-stale server preferred as encrypted")
    guard case .do53(_, let probes) = table.decide(ip, now: later), probes == [.dot] else {
      Issue.record("good-stale not Do53 with a probe: \(table.decide(ip, now: later))")
      return
    }
    // A record from a state file with a completed handshake and no last response (written so
    // by hand, or by an older Sotto): Do53 and a probe, so good-stale, not good-idle.
    let other = "192.0.2.54"
    var record = ServerRecord(address: other, now: 0)
    var st = TransportState()
    st.status = .success
    st.completed = 0
    record.transports[.dot] = st
    table = EncryptionTable(settings: settings, servers: [record])
    #expect(table.phase(other, .dot, now: 2) == .goodStale, "shown good-idle while its queries go Do53")
    #expect(!table.encryptionWorks(other, now: 2))
    guard case .do53 = table.decide(other, now: 2) else {
      Issue.record("no response yet, yet no Do53: \(table.decide(other, now: 2))")
      return
    }
  }
}
