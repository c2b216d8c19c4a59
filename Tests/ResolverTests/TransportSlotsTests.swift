import Testing

@testable import Resolver

/// A server's per-transport states sit in one copy-on-write box: copies of the table (the
/// dashboard's and the state file's snapshots) must not see later changes, and the reverse.
@Suite struct TransportSlotsTests {
  let ip = "192.0.2.53"

  @Test func aSnapshotOfTheTableKeepsItsStateWhenTheTableMoves() {
    var table = EncryptionTable(settings: EncryptionSettings())
    _ = table.connectionStarted(ip, .dot, now: 0)
    let snapshot = table
    table.handshakeSucceeded(ip, .dot, now: 1, certificate: nil, handshakeMs: 5, tlsVersion: "TLSv1.3", resumed: true)
    #expect(table.phase(ip, .dot, now: 2) == .established)
    #expect(snapshot.phase(ip, .dot, now: 2) == .probing)
    #expect(snapshot.servers[ip]?.transports[.dot]?.resumed == false)
    #expect(table.transports(ip).sessionFlags(.dot).resumed)
  }

  @Test func aCopyChangedDoesNotChangeTheOriginal() {
    var a = TransportSlots()
    a.update(.doq) { $0.probes.started = 1 }
    var b = a
    b.update(.doq) { $0.probes.started += 1 }
    b[.dot] = TransportState()
    #expect(a[.doq]?.probes.started == 1 && a[.dot] == nil)
    #expect(b[.doq]?.probes.started == 2 && b[.dot] != nil)
    #expect(a != b)
    b[.dot] = nil
    b.update(.doq) { $0.probes.started = 1 }
    #expect(a == b && a.hashValue == b.hashValue)
  }

  @Test func iterationListsThePresentTransportsDoTFirst() {
    var slots = TransportSlots()
    slots[.doq] = TransportState()
    #expect(slots.map(\.key) == [.doq])
    slots.update(.dot) { $0.session = .pending }
    #expect(slots.map(\.key) == [.dot, .doq])
    #expect(slots.values.map(\.session) == [.pending, SessionPhase.none])
    #expect(!slots.contains(.dot) { $0.session == .established })
    #expect(slots.contains(.dot) { $0.session == .pending })
  }

  /// `read` lends a present state in place and a never-touched one (OE-9: unknown, may connect)
  /// for an absent transport; a state set to nil is absent again.
  @Test func readSeesThePresentStateOrANeverTouchedOne() {
    var slots = TransportSlots()
    let settings = EncryptionSettings()
    #expect(slots.read(.dot) { $0.phase(at: 10, settings: settings) } == .unknown)
    #expect(slots.read(.dot) { $0.mayConnect(at: 10, settings: settings) })
    slots.update(.dot) { st in
      st.status = .fail
      st.completed = 5
      st.lastFailure = "refused"
    }
    #expect(slots.read(.dot) { $0.phase(at: 10, settings: settings) } == .damped(until: 5 + settings.damping))
    #expect(!slots.read(.dot) { $0.mayConnect(at: 10, settings: settings) })
    #expect(slots.read(.dot) { $0.lastFailure } == "refused")
    #expect(slots.read(.doq) { $0.lastFailure } == nil)
    slots[.dot] = nil
    #expect(slots[.dot] == nil && !slots.contains(.dot) { _ in true })
    #expect(slots.read(.dot) { $0.phase(at: 10, settings: settings) } == .unknown)
  }
}
