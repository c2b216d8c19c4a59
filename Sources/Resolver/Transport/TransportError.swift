import Glibc

/// Why an exchange with an authoritative server produced no usable response.
public enum TransportError: Error, Sendable, Equatable {
  /// No matching response before the timeout.
  case timeout
  /// No response before the timeout on an extra DoT connection (`DoTLanes`), which is then
  /// retired: not held against the server's session (its first connection speaks for it), so an
  /// extra connection's trouble never damps DoT or sends the query over Do53.
  case laneTimeout
  /// The server or network refused (ICMP unreachable, TCP RST).
  case unreachable(String)
  /// The connection closed before a full response arrived.
  case closed
  /// The response could not be parsed.
  case malformed(WireError)
  /// This machine could not send the query: no socket or descriptor, no local port, no memory,
  /// the exchange engine down (nothing reached the server, which is not held responsible).
  case io(String)
  /// The response had TC=1 on a stream transport (DoT), where no larger transport exists (T-19).
  case truncated
  /// Too many mismatched replies arrived for one UDP query: it is retried over TCP.
  case spoofSuspected

  /// True for `.malformed`.
  public var isMalformed: Bool {
    if case .malformed = self { return true }
    return false
  }

  /// Short word for traces: `timeout`, `unreachable`, ...
  public var outcome: String {
    switch self {
    case .timeout, .laneTimeout: "timeout"
    case .unreachable: "unreachable"
    case .closed: "closed"
    case .malformed: "malformed"
    case .io: "error"
    case .truncated: "truncated"
    case .spoofSuspected: "spoof-suspected"
    }
  }
}

extension TransportError {
  /// errnos of a `socket()` or `connect()` that say this machine ran out of something (descriptors,
  /// buffers, memory, local ports), not that the server or its network refused.
  static func isLocal(errno code: Int32) -> Bool {
    code == EMFILE || code == ENFILE || code == ENOBUFS || code == ENOMEM || code == EADDRNOTAVAIL || code == EAGAIN
  }
}
