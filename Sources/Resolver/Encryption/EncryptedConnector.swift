import NIOCore

/// One open encrypted session to one server (a DoT connection, a DoQ connection).
public protocol EncryptedSession: AnyObject, Sendable {
  /// Sends one query and waits for its response (pipelined with others).
  nonisolated(nonsending) func query(_ message: Message, timeout: TimeAmount) async throws(TransportError) -> Message
  /// False once the session has ended, or takes no new queries (a DoT server's keepalive
  /// TIMEOUT of 0: its outstanding queries are still answered, its end already reported).
  var isActive: Bool { get }
  /// Closes cleanly; the connector's `onClose` then reports `.cleanClose`.
  func close()
  /// False once a new query should go on a new connection instead, though this one is still
  /// up: a DoQ connection the server has been silent on for most of the idle timeout (T-32).
  var isReusable: Bool { get }
  /// True once `close()` was called: its queries that fail from now on were not the server's doing.
  var closedLocally: Bool { get }
}

extension EncryptedSession {
  public var isReusable: Bool { true }
}

/// Opens encrypted sessions of one transport. DoT and DoQ each provide one; the RFC 9539 policy
/// drives them the same way.
public protocol EncryptedConnector: Sendable {
  var transport: EncryptedTransport { get }
  /// Connects and completes the handshake, or throws the failure class. `onClose` is called once
  /// when an established session ends; `onTicket` for every resumption ticket received.
  func connect(
    to endpoint: ServerEndpoint, expectedName: DNSName?, resumption: [UInt8]?,
    handshakeTimeout: TimeAmount, idleTimeout: TimeAmount,
    onTicket: @escaping @Sendable ([UInt8]) -> Void,
    onClose: @escaping @Sendable (EncryptedFailure) -> Void
  ) async throws(EncryptedFailure) -> (any EncryptedSession, TLSHandshakeInfo)
}

/// Connectors whose transport can carry the triggering query as 0-RTT early data.
public protocol EarlyDataConnector: EncryptedConnector {
  func connectWithEarlyData(
    to endpoint: ServerEndpoint, expectedName: DNSName?, resumption: [UInt8]?, earlyQuery: Message?,
    handshakeTimeout: TimeAmount, idleTimeout: TimeAmount,
    onTicket: @escaping @Sendable ([UInt8]) -> Void,
    onClose: @escaping @Sendable (EncryptedFailure) -> Void
  ) async throws(EncryptedFailure) -> (any EncryptedSession, TLSHandshakeInfo, EventLoopFuture<Message>?)
}

extension EncryptedFailure {
  /// True for failures of this machine's own (`.local`): not recorded against the server.
  public var isLocal: Bool {
    if case .local = self { return true }
    return false
  }

  /// True for failures that are timeouts (status `timeout` rather than `fail`).
  public var isTimeout: Bool { self == .handshakeTimeout || self == .tcpTimeout }

  /// Human words for traces: "connection refused", "TLS handshake timeout", ...
  public var detail: String {
    switch self {
    case .refused: "connection refused"
    case .tcpTimeout: "TCP connect timeout"
    case .handshakeTimeout: "TLS handshake timeout"
    case .tlsAlert(let a): "TLS alert: \(a)"
    case .alpnMismatch(let p): "ALPN mismatch (\(p))"
    case .tlsError(let e): "TLS error: \(e)"
    case .resetWithQueriesOutstanding: "reset with queries outstanding"
    case .cleanClose: "clean close"
    case .danglingStreams(let n): "closed by Sotto: \(n) cancelled DoQ streams neither answered nor reset"
    case .local(let what): "could not connect from this machine (\(what))"
    }
  }
}
