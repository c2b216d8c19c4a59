/// Handshake outcome as RFC 9539 Table 2 records it in `status`.
public enum HandshakeStatus: String, Sendable, Codable {
  case success, fail, timeout
}

/// The `session` field of Table 2: nothing, a handshake in progress, or an established session.
public enum SessionPhase: String, Sendable, Codable {
  case none, pending, established
}

/// The derived states of the RFC 9539 state machine (spec §5).
public enum EncryptionPhase: Sendable, Equatable, CustomStringConvertible {
  case unknown
  case probing
  case established
  case goodIdle
  case goodStale
  case damped(until: Double)
  case retryable

  /// Name used in traces, the state file and the dashboard.
  public var name: String {
    switch self {
    case .unknown: "unknown"
    case .probing: "probing"
    case .established: "established"
    case .goodIdle: "good-idle"
    case .goodStale: "good-stale"
    case .damped: "damped"
    case .retryable: "retryable"
    }
  }
  public var description: String { name }
}

/// Counters kept per server and transport (OE-42, failure classes).
public struct ProbeCounters: Sendable, Codable, Hashable {
  public var started = 0
  public var succeeded = 0
  public var failed = 0
  public var timedOut = 0
  public init() {}
}

/// RFC 9539 Table 2 for one server address and one encrypted transport, plus what we learn on the way.
/// Times are Unix seconds (they must survive restarts, OE-8).
public struct TransportState: Sendable, Hashable {
  // Table 2 fields.
  public var session: SessionPhase = .none
  public var initiated: Double?
  public var completed: Double?
  public var status: HandshakeStatus?
  public var lastResponse: Double?
  /// LIFO stack of serialized resumption sessions; each is used once (OE-22).
  public var resumptions: [[UInt8]] = []
  public var lastActivity: Double?

  // Beyond the table (OE-42).
  public var probes = ProbeCounters()
  /// Failure class name → count ("refused", "handshake-timeout", "tls-alert", ...).
  public var failures: [String: Int] = [:]
  /// Why the latest failure happened, for traces ("TLS handshake timeout").
  public var lastFailure: String?
  public var certificate: CertificateCheck?
  public var handshakeMs: Double?
  public var tlsVersion: String?
  /// The edns-tcp-keepalive TIMEOUT of the last response, seconds (DoT; nil: none, RFC 7828).
  public var keepalive: Double?
  public var resumed = false
  /// Whether the latest handshake's 0-RTT data was accepted (nil: none sent).
  public var earlyDataAccepted: Bool?
  public var consecutiveQueryTimeouts = 0

  public init() {}

  /// The derived state at `now` (spec §5). A persisted `initiated` with no status and no
  /// session counts as unknown (§6 gap 3).
  public func phase(at now: Double, settings: EncryptionSettings) -> EncryptionPhase {
    switch session {
    case .established: return .established
    case .pending: return .probing
    case .none: break
    }
    switch status {
    case nil:
      return .unknown
    case .success:
      // As OE-11 (`suppressesCleartext`): good-idle only with a response within persistence. A
      // handshake that succeeded without any response since is good-stale: Do53 and a probe.
      guard let last = lastResponse else { return .goodStale }
      return now - last < settings.persistence ? .goodIdle : .goodStale
    case .fail, .timeout:
      let since = completed ?? initiated ?? 0
      return now - since <= settings.damping ? .damped(until: since + settings.damping) : .retryable
    }
  }

  /// OE-11: cleartext to this server is suppressed by this transport.
  public func suppressesCleartext(at now: Double, settings: EncryptionSettings) -> Bool {
    if session == .established { return true }
    if status == .success, let last = lastResponse, now - last < settings.persistence { return true }
    return false
  }

  /// OE-20: a new connection may be started (resources permitting).
  public func mayConnect(at now: Double, settings: EncryptionSettings) -> Bool {
    guard session == .none else { return false }
    switch status {
    case .success: return true
    case .fail, .timeout: return now - (completed ?? initiated ?? 0) > settings.damping
    case nil: return true  // initiated == nil, or a stale initiated after restart (gap 3)
    }
  }
}
