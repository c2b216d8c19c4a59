/// One entry of a server's encryption history: what happened to which transport, and when.
/// Kept per address, newest last, at most `ServerRecord.historyLimit` entries (memory stays bounded).
public struct ServerEvent: Sendable, Hashable, Codable {
  /// What happened.
  public enum Kind: String, Sendable, Codable {
    case connecting, established
    case handshakeFailed = "handshake-failed"
    case handshakeTimeout = "handshake-timeout"
    case closed
    case sessionFailed = "session-failed"
    case queryTimeouts = "query-timeouts"
    /// Queries in a row failed on a session, the last with a malformed response.
    case queryFailures = "query-failures"
    case operatorProbe = "operator-probe"
    /// This machine could not set a connection up (no descriptor, no local port): not held
    /// against the server.
    case localFailure = "local-failure"
  }

  /// Unix seconds.
  public var time: Double
  /// The transport concerned; nil for events about the whole server.
  public var transport: EncryptedTransport?
  public var kind: Kind
  /// Human-readable detail ("resumed, 0-RTT accepted", "TLS alert: certificate expired", ...).
  public var detail: String

  public init(time: Double, transport: EncryptedTransport?, kind: Kind, detail: String) {
    self.time = time
    self.transport = transport
    self.kind = kind
    self.detail = detail
  }
}

extension ServerRecord {
  /// Most events kept per server address.
  public static let historyLimit = 32

  /// Appends `event`, dropping the oldest beyond `historyLimit`.
  mutating func log(_ event: ServerEvent) {
    history.append(event)
    if history.count > Self.historyLimit { history.removeFirst(history.count - Self.historyLimit) }
  }

  /// Logs a local failure (`EncryptionTable.connectionFailedLocally`) in place of the attempt's
  /// `connecting` event, and in place of an identical local failure just before it: a machine out
  /// of descriptors fails every attempt, which would push the server's real events out.
  mutating func logLocalFailure(_ event: ServerEvent) {
    if let last = history.last, last.kind == .connecting, last.transport == event.transport { history.removeLast() }
    if let last = history.last, last.kind == .localFailure, last.transport == event.transport,
      last.detail == event.detail
    {
      history.removeLast()
    }
    log(event)
  }
}
