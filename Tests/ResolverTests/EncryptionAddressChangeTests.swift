import Foundation
import Logging
import Synchronization
import Testing

@testable import Resolver

/// Our own address changes (a laptop on another network): no resumption ticket from before is
/// presented again (T-6) and the sessions from the old address are replaced by new ones (T-37),
/// without the servers losing their known-good state.
@Suite struct EncryptionAddressChangeTests: PolicyFixture {
  /// A policy over a DoT connector that always succeeds, watching an address the test sets.
  func policy(address: Mutex<[UInt8]>, lookEvery: Double = 0) -> (EncryptionPolicy, FakeConnector, FakeDo53) {
    let connector = FakeConnector { _ in .succeed }
    let do53 = FakeDo53()
    let watch = LocalAddressWatch(interval: lookEvery, time: SystemTimeSource()) { address.withLock { $0 } }
    var settings = EncryptionSettings()
    settings.timeout = 1
    let p = EncryptionPolicy(
      settings: settings, do53: do53, connectors: [connector], wallClock: { 1_000 }, addressWatch: watch,
      logger: Logger(label: "t"))
    return (p, connector, do53)
  }

  func ask(_ p: EncryptionPolicy) async -> ExchangeResult {
    await p.exchange(query, server: server, context: context, timeout: .seconds(1))
  }

  @Test func anAddressChangeClosesSessionsAndDropsTicketsButKeepsTheServerGood() async throws {
    let address = Mutex<[UInt8]>([10, 53, 0, 2])
    let (p, connector, do53) = policy(address: address)
    _ = await ask(p)
    await p.waitForProbes(upTo: 30)
    let first = try #require(connector.sessions.withLock { $0["192.0.2.7"] }, "no DoT session")
    #expect(await ask(p).legs.map(\.transport) == [.dot])
    // Same address: a session closed while idle comes back resuming with the ticket it was given.
    first.close()
    #expect(await ask(p).legs.map(\.transport) == [.dot])
    #expect(connector.resumptions.withLock { $0 } == [nil, [1, 2, 3]])
    let second = try #require(connector.sessions.withLock { $0["192.0.2.7"] })
    #expect(second !== first)
    #expect(second.isActive)

    address.withLock { $0 = [10, 53, 1, 2] }
    let r = await ask(p)
    #expect(r.legs.map(\.transport) == [.dot], "\(r.legs)")
    #expect(r.response?.answers.count == 1)
    #expect(!second.isActive, "the session from the old address is still in use")
    let third = try #require(connector.sessions.withLock { $0["192.0.2.7"] })
    #expect(third !== second && third.isActive)
    // The new connection did a full handshake, though the table held tickets from before.
    #expect(connector.resumptions.withLock { $0 } == [nil, [1, 2, 3], nil])
    #expect(do53.count == 1, "cleartext after the address changed")
    #expect(p.table.phase("192.0.2.7", .dot, now: 1_000) == .established)
    #expect(p.table.servers["192.0.2.7"]?.state(.dot).failures.isEmpty == true)
    // Only tickets received since the change are kept.
    #expect(p.table.servers["192.0.2.7"]?.state(.dot).resumptions == [[1, 2, 3]])
  }

  /// A DoT session whose close only notes the request, on the first address; `address` changes it.
  func sessionBeforeTheChange() async throws -> (
    p: EncryptionPolicy, connector: FakeConnector, do53: FakeDo53, address: Mutex<[UInt8]>, old: FakeSession
  ) {
    let address = Mutex<[UInt8]>([10, 53, 0, 2])
    let (p, connector, do53) = policy(address: address)
    connector.closeLater.withLock { $0 = true }
    _ = await ask(p)
    await p.waitForProbes(upTo: 30)
    let old = try #require(connector.sessions.withLock { $0["192.0.2.7"] }, "no DoT session")
    return (p, connector, do53, address, old)
  }

  /// A DoT session whose close only notes the request, then an address change: the session
  /// the next query (over DoT) brought up in its place. The old one has not reported its end.
  func replacedSession() async throws -> (
    p: EncryptionPolicy, connector: FakeConnector, do53: FakeDo53, old: FakeSession, new: FakeSession
  ) {
    let (p, connector, do53, address, old) = try await sessionBeforeTheChange()
    address.withLock { $0 = [10, 53, 1, 2] }
    #expect(await ask(p).legs.map(\.transport) == [.dot])
    let new = try #require(connector.sessions.withLock { $0["192.0.2.7"] })
    #expect(new !== old)
    return (p, connector, do53, old, new)
  }

  /// A query outstanding on the old session when the address changes, which then times out
  /// there: the old session is out of use, so its timeout does not count towards the three in a
  /// row that fail the transport (OE-37, §6 gap 4) of the session that replaced it.
  @Test func aTimeoutOnTheReplacedSessionIsNotCountedAgainstTheNewOne() async throws {
    let (p, connector, _, address, old) = try await sessionBeforeTheChange()
    old.delay.withLock { $0 = .seconds(5) }
    let before = old.sent.withLock { $0 }
    // Another name: the next query must not join this one.
    var other = query
    other.questions = [Question(name: try DNSName("other.example."), type: .a)]
    let slow = other
    let outstanding = Task { await p.exchange(slow, server: server, context: context, timeout: .seconds(1)) }
    while old.sent.withLock({ $0 }) == before { try await Task.sleep(for: .milliseconds(5)) }
    address.withLock { $0 = [10, 53, 1, 2] }
    #expect(await ask(p).legs.map(\.transport) == [.dot])
    let new = try #require(connector.sessions.withLock { $0["192.0.2.7"] })
    #expect(new !== old)
    let r = await outstanding.value
    #expect(r.legs.first?.error == .timeout, "\(r.legs)")
    #expect(p.table.servers["192.0.2.7"]?.state(.dot).consecutiveQueryTimeouts == 0)
    #expect(p.table.phase("192.0.2.7", .dot, now: 1_000) == .established)
  }

  /// The old session's close completes only after its replacement is up (a DoQ close waits on
  /// the engine thread): its end, reported late, must not end the new session's record.
  @Test func theOldSessionsLateEndLeavesTheNewOneEstablished() async throws {
    let (p, connector, do53, old, _) = try await replacedSession()
    #expect(old.closeRequested.withLock { $0 }, "the old session was not asked to close")
    old.end(.cleanClose)
    #expect(p.table.phase("192.0.2.7", .dot, now: 1_000) == .established)
    #expect(p.table.servers["192.0.2.7"]?.state(.dot).session == .established)
    // And the new session still carries the queries.
    #expect(await ask(p).legs.map(\.transport) == [.dot])
    #expect(connector.attempts.withLock { $0.count } == 2)
    #expect(do53.count == 1)
  }

  /// The old session, closed for an address change, then fails on its way out (a reset from a
  /// path that is gone): counted and logged, but the transport its replacement carries is not
  /// damped, and the next queries stay encrypted on the new session.
  @Test func theOldSessionsLateFailureDoesNotDampTheNewOne() async throws {
    let (p, connector, do53, old, new) = try await replacedSession()
    old.end(.resetWithQueriesOutstanding)
    #expect(p.table.phase("192.0.2.7", .dot, now: 1_000) == .established)
    let state = try #require(p.table.servers["192.0.2.7"]?.state(.dot))
    #expect(state.status == .success)
    #expect(state.session == .established)
    #expect(state.failures.values.reduce(0, +) == 1, "the old session's failure is not counted")
    #expect(await ask(p).legs.map(\.transport) == [.dot])
    // The new session idles out cleanly: the server is still good, so the next query reconnects
    // (a damped transport would send it, and a day of queries after it, in cleartext).
    new.end(.cleanClose)
    #expect(await ask(p).legs.map(\.transport) == [.dot])
    #expect(connector.attempts.withLock { $0.count } == 3)
    #expect(do53.count == 1, "cleartext to a server whose encrypted sessions work")
  }

  /// The other order: the new session idles out cleanly first, then the old one's failure
  /// arrives. It is still the old session's: counted, not damping.
  @Test func theOldSessionsFailureAfterTheNewOneIdledOutDoesNotDamp() async throws {
    let (p, connector, do53, old, new) = try await replacedSession()
    new.end(.cleanClose)
    old.end(.resetWithQueriesOutstanding)
    #expect(p.table.servers["192.0.2.7"]?.state(.dot).status == .success)
    #expect(await ask(p).legs.map(\.transport) == [.dot])
    #expect(connector.attempts.withLock { $0.count } == 3)
    #expect(do53.count == 1, "cleartext to a server whose encrypted sessions work")
  }

  @Test func anEmptyLookOrTheFirstAddressChangesNothing() async throws {
    let address = Mutex<[UInt8]>([])
    let (p, connector, _) = policy(address: address)
    _ = await ask(p)
    await p.waitForProbes(upTo: 30)
    let first = try #require(connector.sessions.withLock { $0["192.0.2.7"] }, "no DoT session")
    // The first address seen is where the sessions were made, not a change.
    address.withLock { $0 = [10, 53, 0, 2] }
    _ = await ask(p)
    // A look that finds no address (no route for a moment) is no change either.
    address.withLock { $0 = [] }
    _ = await ask(p)
    #expect(first.isActive)
    #expect(connector.attempts.withLock { $0.count } == 1)
  }

  /// Tickets in the state file are used after a restart only on the network they were saved on.
  @Test func savedTicketsAreDroppedWhenLoadedOnAnotherNetwork() async throws {
    let address = Mutex<[UInt8]>([10, 53, 0, 2])
    let (p, _, _) = policy(address: address)
    _ = await ask(p)
    await p.waitForProbes(upTo: 30)
    #expect(p.table.servers["192.0.2.7"]?.state(.dot).resumptions == [[1, 2, 3]])
    let path = "/tmp/sotto-state-network-\(UInt32.random(in: 0...UInt32.max)).json"
    defer { unlink(path) }
    let store = EncryptionStore(path: path, logger: Logger(label: "t"))
    store.save(p)
    let here = try #require(p.addressWatch?.fingerprint())
    let text = try String(contentsOfFile: path, encoding: .utf8)
    #expect(text.contains("\"network\" : \"\(here)\""), "\(text)")
    #expect(!text.contains("10.53"))
    address.withLock { $0 = [10, 53, 1, 2] }
    let watch = LocalAddressWatch(interval: 0) { address.withLock { $0 } }
    let elsewhere = try #require(watch.fingerprint())
    #expect(elsewhere != here)
    func tickets(_ records: [ServerRecord]) -> [[UInt8]]? {
      records.first { $0.address == "192.0.2.7" }?.transports[.dot]?.resumptions
    }
    #expect(tickets(store.load(network: here)) == [[1, 2, 3]])
    #expect(tickets(store.load(network: elsewhere)) == [])
    // The server is still known good there: only the tickets go.
    let restored = EncryptionTable(settings: EncryptionSettings(), servers: store.load(network: elsewhere))
    #expect(restored.cleartextSuppressed("192.0.2.7", now: 1_000))
    // A file from before the network was recorded: its tickets are not trusted either.
    let older = text.replacingOccurrences(of: "\"network\" : \"\(here)\"", with: "\"unused\" : 0")
    try older.write(toFile: path, atomically: true, encoding: .utf8)
    #expect(tickets(store.load(network: here)) == [])
  }

  /// The DoT session a first query's probe set up, a query waiting 300 ms on it for its answer
  /// (which it loses if the session closes meanwhile), and another query to send meanwhile.
  func queryWaitingOnTheSession(_ p: EncryptionPolicy, _ connector: FakeConnector) async throws
    -> (FakeSession, Task<ExchangeResult, Never>, Message)
  {
    _ = await ask(p)
    await p.waitForProbes(upTo: 30)
    let session = try #require(connector.sessions.withLock { $0["192.0.2.7"] }, "no DoT session")
    session.failsOutstandingOnClose.withLock { $0 = true }
    session.delay.withLock { $0 = .milliseconds(300) }
    let waiting = Task { await ask(p) }
    try await Task.sleep(for: .milliseconds(50))
    var other = query
    other.header.id = 43
    other.questions = [Question(name: try DNSName("other.example.test."), type: .a)]
    return (session, waiting, other)
  }

  /// A query still waiting on the old session when the change is seen fails as that session
  /// closes; it goes again over a new DoT connection, not over Do53 to a server known good.
  @Test func aQueryOutstandingOnARetiredSessionIsSentAgainEncrypted() async throws {
    let address = Mutex<[UInt8]>([10, 53, 0, 2])
    let (p, connector, do53) = policy(address: address)
    let (_, waiting, other) = try await queryWaitingOnTheSession(p, connector)
    address.withLock { $0 = [10, 53, 1, 2] }
    _ = await p.exchange(other, server: server, context: context, timeout: .seconds(1))
    let r = await waiting.value
    #expect(r.response?.answers.count == 1, "\(r.legs)")
    #expect(r.legs.map(\.transport) == [.dot, .dot], "\(r.legs.map(\.transportReason))")
    #expect(r.legs.last?.reason?.contains("closed by Sotto") == true, "\(r.legs.map(\.transportReason))")
    #expect(do53.count == 1, "the outstanding query went in cleartext")
  }

  /// T-32 at the policy: a session no longer reusable (a DoQ connection the server has been
  /// silent on) is closed and replaced by a new connection; a query outstanding on it goes
  /// again over the new one, not over Do53.
  @Test func anAgedSessionIsReplacedAndItsOutstandingQueryStaysEncrypted() async throws {
    let address = Mutex<[UInt8]>([10, 53, 0, 2])
    let (p, connector, do53) = policy(address: address)
    let (old, waiting, other) = try await queryWaitingOnTheSession(p, connector)
    old.reusable.withLock { $0 = false }
    let r = await p.exchange(other, server: server, context: context, timeout: .seconds(1))
    #expect(r.legs.map(\.transport) == [.dot])
    #expect(!old.isActive, "the aged session was not closed")
    let new = try #require(connector.sessions.withLock { $0["192.0.2.7"] })
    #expect(new !== old && new.isActive)
    // Resumed: ageing is no reason to drop the ticket.
    #expect(connector.resumptions.withLock { $0 } == [nil, [1, 2, 3]])
    let w = await waiting.value
    #expect(w.response?.answers.count == 1 && w.legs.last?.transport == .dot, "\(w.legs)")
    #expect(do53.count == 1, "cleartext after the ageing")
    #expect(p.table.phase("192.0.2.7", .dot, now: 1_000) == .established)
  }

  /// A reconnection in the seconds before a query notices the change (the address is looked at
  /// every few seconds) presents no ticket from the old network: it looks again first.
  @Test func aReconnectionLooksAgainBeforePresentingATicket() async throws {
    let address = Mutex<[UInt8]>([10, 53, 0, 2])
    let (p, connector, _) = policy(address: address, lookEvery: 3_600)
    _ = await ask(p)
    await p.waitForProbes(upTo: 30)
    let first = try #require(connector.sessions.withLock { $0["192.0.2.7"] }, "no DoT session")
    first.close()
    _ = await ask(p)  // same network: resumes
    let second = try #require(connector.sessions.withLock { $0["192.0.2.7"] })
    second.close()
    address.withLock { $0 = [10, 53, 1, 2] }
    #expect(await ask(p).legs.map(\.transport) == [.dot])
    #expect(connector.resumptions.withLock { $0 } == [nil, [1, 2, 3], nil])
  }

  /// Saved while the change is not yet seen by a query: the tickets saved are not labelled with
  /// the new network (they would be presented there after a restart).
  @Test func aSaveAfterAnUnseenChangeLabelsNoOldTicketWithTheNewNetwork() async throws {
    let address = Mutex<[UInt8]>([10, 53, 0, 2])
    let (p, _, _) = policy(address: address)
    _ = await ask(p)
    await p.waitForProbes(upTo: 30)
    address.withLock { $0 = [10, 53, 1, 2] }
    let path = "/tmp/sotto-state-unseen-\(UInt32.random(in: 0...UInt32.max)).json"
    defer { unlink(path) }
    let store = EncryptionStore(path: path, logger: Logger(label: "t"))
    store.save(p)
    let here = try #require(LocalAddressWatch.fingerprint(of: [10, 53, 1, 2]))
    let tickets = store.load(network: here).first { $0.address == "192.0.2.7" }?.transports[.dot]?.resumptions
    #expect(tickets == [], "a ticket from 10.53.0.2 would be presented from 10.53.1.2")
  }

  /// Families are compared one by one: IPv6 coming and going (no route for a moment) while IPv4
  /// stays is no change; a new IPv4 address is.
  @Test func onlyAKnownFamilysNewAddressIsAChange() {
    let look = Mutex<[UInt8]>([10, 53, 0, 2])
    let watch = LocalAddressWatch(interval: 0) { look.withLock { $0 } }
    #expect(watch.generation() == 1)
    let v6: [UInt8] = [0xfd, 0, 0, 0x53] + [UInt8](repeating: 0, count: 11) + [2]
    look.withLock { $0 = [10, 53, 0, 2] + v6 }  // IPv6 seen for the first time
    #expect(watch.generation() == 1)
    look.withLock { $0 = [10, 53, 0, 2] }  // IPv6 gone for a moment
    #expect(watch.generation() == 1)
    #expect(watch.lastSeen().address == [10, 53, 0, 2] + v6)
    look.withLock { $0 = [] }  // no route at all
    #expect(watch.generation() == 1)
    look.withLock { $0 = [10, 53, 1, 2] }  // another IPv4 network
    #expect(watch.generation() == 2)
    look.withLock { $0 = [10, 53, 1, 2] + v6.dropLast() + [3] }  // another IPv6 address
    #expect(watch.generation() == 3)
    // IPv6 missing from three looks in a row is gone: another network with the same IPv4
    // address (a home and an office both on 192.168.1.0/24), one without IPv6.
    look.withLock { $0 = [10, 53, 1, 2] }
    #expect(watch.generation() == 3)
    #expect(watch.generation() == 3)
    #expect(watch.generation() == 4)
    #expect(watch.lastSeen().address == [10, 53, 1, 2])
  }

  /// A connection set up from the old address that comes up after the change is seen is not
  /// kept, and the tickets it receives are not stored (they belong to the old network).
  @Test func aConnectionFromTheOldAddressIsNotKeptNorItsTickets() async throws {
    let address = Mutex<[UInt8]>([10, 53, 0, 2])
    let gate = FakeConnector.Gate()
    let connector = FakeConnector { _ in .succeedAfter(gate) }
    let do53 = FakeDo53()
    let watch = LocalAddressWatch(interval: 0, time: SystemTimeSource()) { address.withLock { $0 } }
    var settings = EncryptionSettings()
    settings.timeout = 1
    let p = EncryptionPolicy(
      settings: settings, do53: do53, connectors: [connector], wallClock: { 1_000 }, addressWatch: watch,
      logger: Logger(label: "t"))
    _ = await ask(p)  // Do53, and a probe that waits at the gate
    address.withLock { $0 = [10, 53, 1, 2] }
    _ = await ask(p)  // sees the change
    gate.open()
    await p.waitForProbes(upTo: 30)
    let probe = try #require(connector.sessions.withLock { $0["192.0.2.7"] })
    #expect(!probe.isActive, "a session from the old address was kept")
    #expect(p.table.servers["192.0.2.7"]?.state(.dot).resumptions == [], "a ticket of the old network was stored")
    #expect(p.table.servers["192.0.2.7"]?.state(.dot).status == .success)
    // Its end is recorded as its own: the server is not shown established without a session.
    #expect(p.table.servers["192.0.2.7"]?.state(.dot).session == SessionPhase.none)
    #expect(p.table.phase("192.0.2.7", .dot, now: 1_000) == .goodIdle)
  }
}
