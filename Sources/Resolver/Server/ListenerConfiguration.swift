import NIOCore

/// Where and for whom the client listener serves, and the caps that hold hostile clients.
public struct ListenerConfiguration: Sendable {
  /// Addresses to serve on, UDP and TCP on the same port; port 0 picks a free one.
  public var addresses: [SocketAddress]
  /// Client networks that get answers; others get REFUSED.
  public var allowed: [CIDR]
  /// A TCP connection with no new query for this long and nothing outstanding is closed (RFC 7766 §6.2.3).
  public var tcpIdleTimeout: TimeAmount
  /// Open client TCP connections at most; further connections are closed at once.
  public var maxTCPConnections: Int
  /// Open TCP, DoT and DoQ connections one client may hold at once (loopback clients are not
  /// limited; 0: no limit); further ones are closed at once (DoQ: after the handshake, which
  /// proves the address).
  public var maxConnectionsPerClient = 64
  /// The IPv6 prefix length a client is counted by for the per-client limits (`ClientKey`;
  /// 128: each address).
  public var clientIPv6Prefix = 64
  /// Queries one TCP connection may send; the connection is closed after answering the last (0,
  /// the default: no limit, as in Unbound, PowerDNS Recursor and BIND; a client pipelining past a
  /// limit loses the queries it sent after the last one answered).
  public var tcpQueriesPerConnection: Int
  /// Client resolutions running at once; a query over the cap gets SERVFAIL at once.
  public var maxResolutions: Int
  /// Queries per second one client may send (bursts of as many); excess is dropped (0: off).
  public var clientRateLimit: Double
  /// Seconds a query (UDP on the full path, TCP, DoT) may wait for its answer; a resolution still
  /// running then gets its client SERVFAIL from the listener, counted in `resolutionsOverdue`
  /// (0: no watch). The NIO fallback UDP listener is not watched.
  /// The default is the default resolution deadline plus one second.
  public var answerDeadline: Double
  /// Addresses to serve DNS-over-TLS on (RFC 7858, TCP only; RFC 9539 §4.4, OE-4). Needs `tls`.
  public var tlsAddresses: [SocketAddress]
  /// Addresses to serve DNS-over-QUIC on (RFC 9250, UDP; RFC 9539 §4.4, OE-4). Needs `tls`.
  /// Each has its own cap of `maxTCPConnections` connections; `tcpIdleTimeout` is their idle
  /// timeout, and their handshake timeout up to 5 s.
  public var quicAddresses: [SocketAddress]
  /// The certificate and key the DoT and DoQ listeners present.
  public var tls: TLSServerContext?

  public init(
    addresses: [SocketAddress], allowed: [CIDR] = CIDR.loopback, tcpIdleTimeout: TimeAmount = .seconds(10),
    maxTCPConnections: Int = 256, tcpQueriesPerConnection: Int = 0, maxResolutions: Int = 1024,
    clientRateLimit: Double = 0, answerDeadline: Double = ResolutionLimits().deadline + 1,
    tlsAddresses: [SocketAddress] = [], quicAddresses: [SocketAddress] = [], tls: TLSServerContext? = nil
  ) {
    self.addresses = addresses
    self.allowed = allowed
    self.tcpIdleTimeout = tcpIdleTimeout
    self.maxTCPConnections = maxTCPConnections
    self.tcpQueriesPerConnection = tcpQueriesPerConnection
    self.maxResolutions = maxResolutions
    self.clientRateLimit = clientRateLimit
    self.answerDeadline = answerDeadline
    self.tlsAddresses = tlsAddresses
    self.quicAddresses = quicAddresses
    self.tls = tls
  }
}

extension ListenerConfiguration {
  /// `answerDeadline` for the stream handlers' `AnswerWatch` (nil: no watch).
  var answerWatch: TimeAmount? { answerDeadline > 0 ? .nanoseconds(Int64(answerDeadline * 1e9)) : nil }

  /// The longest query a DoQ client may send, in octets: a longer one gets its stream reset. A DNS
  /// query (one question, EDNS, padding) needs a few hundred. A stream's flow-control window is
  /// one octet more and never grows, so a connection's 100 open streams can make the listener
  /// buffer about 400 KiB, out-of-order data included.
  public static let maxDoQQuerySize = 4096

  /// Queries one DoQ connection may have unanswered at once; the next has its stream reset with
  /// DOQ_EXCESSIVE_LOAD. A client that cancels its streams after sending gets new ones, so the
  /// limit of 100 open streams alone does not bound its resolutions.
  public static let maxDoQUnanswered = 100

  /// The first address that serves clients beyond this host (not loopback) when there is no
  /// encrypted listener: RFC 9539 §4.4 (OE-4) says such a resolver SHOULD offer one. Nil otherwise.
  public static func cleartextOnlyBeyondLoopback(_ configuration: ListenerConfiguration) -> SocketAddress? {
    guard configuration.tlsAddresses.isEmpty, configuration.quicAddresses.isEmpty else { return nil }
    return configuration.addresses.first { address in
      guard let ip = address.ipAddress else { return false }
      return !(ip.hasPrefix("127.") || ip == "::1")
    }
  }
}
