/// An encrypted transport to authoritative servers (RFC 9539 §4.4).
public enum EncryptedTransport: String, Sendable, Codable, CaseIterable, Hashable {
  case dot = "DoT"
  case doq = "DoQ"

  /// The transport kind that traces and counters show.
  public var kind: TransportKind { self == .dot ? .dot : .doq }

  /// Hashes the case, not the raw value: a raw-value enum otherwise hashes its `String` (built and
  /// hashed octet by octet) wherever it keys a dictionary, five times per encrypted exchange.
  public func hash(into hasher: inout Hasher) { hasher.combine(self == .dot ? 0 as UInt8 : 1) }
}

/// RFC 9539 tunables (Table 1, §4.3) and this resolver's resource knobs. Operators are encouraged
/// to publish these values; the README lists the defaults.
public struct EncryptionSettings: Sendable {
  /// Opportunistic encryption on/off (OE-1).
  public var enabled = true
  /// Transports to probe and use, most preferred first.
  public var transports: [EncryptedTransport] = [.doq, .dot]
  /// How long a success is remembered after the last response (3 days).
  public var persistence: Double = 259_200
  /// How long a failure or timeout is remembered before probing again (1 day).
  public var damping: Double = 86_400
  /// How long an encrypted handshake may take (4 s).
  public var timeout: Double = 4
  /// Handshakes in progress at once, all servers together (OE-40).
  public var maxConcurrentProbes = 10
  /// Open encrypted sessions at most; the least recently active is closed first (OE-39).
  public var maxSessions = 100
  /// An idle session is closed after this many seconds (T-17).
  public var idleTimeout: Double = 30
  /// DoT connections to one server at most: more than one only while its queries overlap, since
  /// NSD and BIND hold an answer behind an unacknowledged one (`DoTLanes`; T-15 recommends one).
  public var dotConnections = 8
  /// The smallest round trip to a server, milliseconds, at which it gets more than one DoT
  /// connection (a hold costs one round trip; below this it is not worth a handshake).
  public var dotConnectionsMinRTTMs: Double = 1
  /// Consecutive per-query timeouts on a session after which the transport counts as failed (§6 gap 4).
  public var maxConsecutiveQueryTimeouts = 3
  /// Resumption tickets kept per server and transport (OE-23).
  public var maxTicketsPerServer = 4
  /// Servers whose smoothed RTTs are within this many milliseconds count as comparable; among
  /// comparable servers one with working encryption is preferred.
  public var privacyMarginMs: Double = 50
  /// Destination port for DoT and DoQ (853; overridable for labs).
  public var port = 853
  /// Extra CA file used only to classify certificates (never to reject them, OE-26).
  public var extraCAFile: String?
  public init() {}
}
