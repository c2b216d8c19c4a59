import NIOCore

extension DoTConnection: EncryptedSession {}

/// Opens DoT sessions for the RFC 9539 policy.
public struct DoTConnector: EncryptedConnector {
  public let transport = EncryptedTransport.dot
  let context: DoTClientContext
  let counters: EncryptedReplyCounters

  /// `counters` receives the malformed and mismatched responses of every session.
  public init(context: DoTClientContext, counters: EncryptedReplyCounters = .init()) {
    self.context = context
    self.counters = counters
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
      onTicket: onTicket, onClose: onClose, counters: counters)
    return (connection, info)
  }
}
