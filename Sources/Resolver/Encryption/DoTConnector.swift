import NIOCore

extension DoTConnection: EncryptedSession {}

/// Opens DoT sessions for the RFC 9539 policy.
public struct DoTConnector: EncryptedConnector {
  public let transport = EncryptedTransport.dot
  let context: DoTClientContext
  let counters: EncryptedReplyCounters
  /// Connections to one server at most while its queries overlap (`DoTLanes`).
  let maxConnections: Int
  /// The smallest round trip to a server at which it gets more than one connection.
  let lanesMinRTT: TimeAmount

  /// `counters` receives the malformed and mismatched responses of every session;
  /// `maxConnections` and `lanesMinRTT` bound the extra connections (`DoTLanes`).
  public init(
    context: DoTClientContext, counters: EncryptedReplyCounters = .init(), maxConnections: Int = 1,
    lanesMinRTT: TimeAmount = .milliseconds(1)
  ) {
    self.context = context
    self.counters = counters
    self.maxConnections = maxConnections
    self.lanesMinRTT = lanesMinRTT
  }

  public func connect(
    to endpoint: ServerEndpoint, expectedName: DNSName?, resumption: [UInt8]?, handshakeTimeout: TimeAmount,
    idleTimeout: TimeAmount, onTicket: @escaping @Sendable ([UInt8]) -> Void,
    onClose: @escaping @Sendable (EncryptedFailure) -> Void
  ) async throws(EncryptedFailure) -> (any EncryptedSession, TLSHandshakeInfo) {
    // The whole attempt (TCP connect plus handshake) is bounded by the RFC 9539 `timeout`.
    let (connection, info) = try await DoTConnection.connect(
      to: endpoint, expectedName: expectedName, context: context, resumption: resumption,
      connectTimeout: handshakeTimeout, handshakeTimeout: handshakeTimeout, idleTimeout: idleTimeout,
      maxConnections: maxConnections, lanesMinRTT: lanesMinRTT, onTicket: onTicket, onClose: onClose, counters: counters
    )
    return (connection, info)
  }
}
