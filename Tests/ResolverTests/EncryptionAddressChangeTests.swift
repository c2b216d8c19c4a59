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
  func policy(address: Mutex<[UInt8]>) -> (EncryptionPolicy, FakeConnector, FakeDo53) {
    let connector = FakeConnector { _ in .succeed }
    let do53 = FakeDo53()
    let watch = LocalAddressWatch(interval: 0, time: SystemTimeSource()) { address.withLock { $0 } }
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
    await p.waitForProbes(upTo: 2)
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

  /// The old session's close completes only after its replacement is up (a DoQ close waits on
  /// the engine thread): its end, reported late, must not end the new session's record.
  @Test func theOldSessionsLateEndLeavesTheNewOneEstablished() async throws {
    let address = Mutex<[UInt8]>([10, 53, 0, 2])
    let (p, connector, do53) = policy(address: address)
    connector.closeLater.withLock { $0 = true }
    _ = await ask(p)
    await p.waitForProbes(upTo: 2)
    let old = try #require(connector.sessions.withLock { $0["192.0.2.7"] }, "no DoT session")
    address.withLock { $0 = [10, 53, 1, 2] }
    #expect(await ask(p).legs.map(\.transport) == [.dot])
    #expect(old.closeRequested.withLock { $0 }, "the old session was not asked to close")
    let new = try #require(connector.sessions.withLock { $0["192.0.2.7"] })
    #expect(new !== old)
    old.end(.cleanClose)
    #expect(p.table.phase("192.0.2.7", .dot, now: 1_000) == .established)
    #expect(p.table.servers["192.0.2.7"]?.state(.dot).session == .established)
    // And the new session still carries the queries.
    #expect(await ask(p).legs.map(\.transport) == [.dot])
    #expect(connector.attempts.withLock { $0.count } == 2)
    #expect(do53.count == 1)
  }

  @Test func anEmptyLookOrTheFirstAddressChangesNothing() async throws {
    let address = Mutex<[UInt8]>([])
    let (p, connector, _) = policy(address: address)
    _ = await ask(p)
    await p.waitForProbes(upTo: 2)
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
    await p.waitForProbes(upTo: 2)
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
}
