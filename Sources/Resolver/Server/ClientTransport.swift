/// The transport a client query came over: it decides truncation, counting and response padding.
public enum ClientTransport: Sendable, Hashable {
  case udp, tcp
  /// DNS-over-TLS (`--listen-tls`).
  case tls
  /// DNS-over-QUIC (`--listen-quic`).
  case quic

  /// A stream transport: no size limit but 65535, never truncated.
  var isStream: Bool { self != .udp }

  /// Encrypted: a response is padded when its query was (RFC 8467 §4.1).
  var isEncrypted: Bool { self == .tls || self == .quic }

  /// How log lines name it after "came".
  var logSuffix: String {
    switch self {
    case .udp: ""
    case .tcp: " over TCP"
    case .tls: " over DoT"
    case .quic: " over DoQ"
    }
  }
}
