import NIOCore

/// Where and for whom the client listener serves.
public struct ListenerConfiguration: Sendable {
  /// Addresses to serve on, UDP and TCP on the same port; port 0 picks a free one.
  public var addresses: [SocketAddress]
  /// Client networks that get answers; others get REFUSED.
  public var allowed: [CIDR]
  /// A TCP connection with no new query for this long and nothing outstanding is closed (RFC 7766 §6.2.3).
  public var tcpIdleTimeout: TimeAmount
  /// Open client TCP connections at most; further connections are closed at once.
  public var maxTCPConnections: Int

  public init(
    addresses: [SocketAddress], allowed: [CIDR] = CIDR.loopback, tcpIdleTimeout: TimeAmount = .seconds(10),
    maxTCPConnections: Int = 256
  ) {
    self.addresses = addresses
    self.allowed = allowed
    self.tcpIdleTimeout = tcpIdleTimeout
    self.maxTCPConnections = maxTCPConnections
  }
}
