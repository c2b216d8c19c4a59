/// Everything Sotto keeps about one authoritative server address (OE-5): the RFC 9539 state per
/// encrypted transport, where the address came from, and what was sent to it.
public struct ServerRecord: Sendable, Hashable {
  public var address: String
  public var transports = TransportSlots()
  /// NS names and zones that led to this address.
  public var nsNames: Set<String> = []
  public var zones: Set<String> = []
  public var firstSeen: Double
  public var lastSeen: Double
  /// Queries sent, by transport ("Do53/UDP", "Do53/TCP", "DoT", "DoQ").
  public var queries: [TransportKind: Int] = [:]
  /// Cleartext queries sent while the server was known good (OE-11). Must stay 0.
  public var cleartextWhileGood = 0
  /// What happened to this server's encrypted transports, oldest first, bounded (not persisted).
  public var history: [ServerEvent] = []
  /// The NS name and zone this record was last noted with (`EncryptionTable.noteServer`'s memo).
  var noted = NotedNames()

  public init(address: String, now: Double) {
    self.address = address
    firstSeen = now
    lastSeen = now
  }

  /// Drops the resumption tickets of every transport (T-6: a ticket must not link two networks);
  /// returns how many there were.
  public mutating func dropResumptions() -> Int {
    var dropped = 0
    for t in EncryptedTransport.allCases where transports.contains(t, where: { !$0.resumptions.isEmpty }) {
      transports.update(t) { st in
        dropped += st.resumptions.count
        st.resumptions = []
      }
    }
    return dropped
  }

  /// The state of one transport (all-null when never touched, OE-9).
  public func state(_ t: EncryptedTransport) -> TransportState { transports[t] ?? TransportState() }
}

/// The NS name and zone an address was last noted with: a memo kept in its `ServerRecord`, not
/// part of the record's value (every two are equal, none hashes anything) and not persisted.
struct NotedNames: Sendable, Hashable {
  private var nsName: DNSName?
  private var zone: DNSName?

  init() {}

  init(nsName: DNSName?, zone: DNSName) {
    self.nsName = nsName
    self.zone = zone
  }

  /// True when the memo holds exactly this pair.
  func holds(nsName: DNSName?, zone: DNSName) -> Bool { self.zone == zone && self.nsName == nsName }

  static func == (a: NotedNames, b: NotedNames) -> Bool { true }
  func hash(into hasher: inout Hasher) {}
}
