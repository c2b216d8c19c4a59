import Glibc

/// Why a DoT connection attempt or session ended badly (or cleanly); the RFC 9539 failure classes.
public enum EncryptedFailure: Error, Sendable, Hashable, Codable {
  /// TCP RST / ECONNREFUSED / ICMP unreachable while connecting.
  case refused
  /// TCP connect did not complete in time.
  case tcpTimeout
  /// TCP up but TLS handshake not finished in time.
  case handshakeTimeout
  /// A TLS alert was received (its description, e.g. "handshake failure").
  case tlsAlert(String)
  /// The server picked another ALPN protocol than `dot`.
  case alpnMismatch(String)
  /// Any other TLS or protocol error (OpenSSL's text).
  case tlsError(String)
  /// The connection closed or was reset while queries were waiting for replies.
  case resetWithQueriesOutstanding
  /// close_notify/FIN/idle close with nothing outstanding (not a failure for RFC 9539, §6 gap 5).
  case cleanClose
  /// DoQ: closed by Sotto because the server left this many cancelled streams neither answered
  /// nor reset (T-39).
  case danglingStreams(Int)
  /// This machine could not set the connection up (no socket or descriptor left, no memory, no
  /// local port, no epoll slot; the call and its errno text): nothing the server did, so nothing
  /// is recorded against it (no damping, nothing saved).
  case local(String)

  /// Stable short name for counters and the state file: "refused", "tcp-timeout", "handshake-timeout",
  /// "tls-alert", "alpn-mismatch", "tls-error", "reset", "clean-close", "dangling-streams", "local".
  public var className: String {
    switch self {
    case .refused: "refused"
    case .tcpTimeout: "tcp-timeout"
    case .handshakeTimeout: "handshake-timeout"
    case .tlsAlert: "tls-alert"
    case .alpnMismatch: "alpn-mismatch"
    case .tlsError: "tls-error"
    case .resetWithQueriesOutstanding: "reset"
    case .cleanClose: "clean-close"
    case .danglingStreams: "dangling-streams"
    case .local: "local"
    }
  }
}

extension EncryptedFailure {
  /// A `socket()` call that failed with `code`: always this machine's (descriptors, memory,
  /// an address family it lacks).
  static func noSocket(_ code: Int32) -> EncryptedFailure { .local("socket: \(errorText(code))") }

  /// An immediate `connect()` failure with `code`: this machine's when it ran out of local ports or
  /// buffers, else the server's or its network's (refused, unreachable, filtered).
  static func connectFailed(_ code: Int32) -> EncryptedFailure {
    TransportError.isLocal(errno: code) ? .local("connect: \(errorText(code))") : .refused
  }

  /// The socket could not be added to the engine's epoll set (its errno text).
  static func notWatched(_ code: Int32) -> EncryptedFailure { .local("epoll: \(errorText(code))") }

  private static func errorText(_ code: Int32) -> String { String(cString: strerror(code)) }
}
