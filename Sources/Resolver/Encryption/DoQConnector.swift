import NIOCore

extension DoQConnection: EncryptedSession {}

/// Opens DoQ sessions for the RFC 9539 policy.
public struct DoQConnector: EncryptedConnector {
  public let transport = EncryptedTransport.doq
  let context: DoQClientContext
  let group: any EventLoopGroup

  /// Loads the trust stores (system plus `extraCAFile`, PEM) once for all connections.
  public init(extraCAFile: String?, group: any EventLoopGroup) throws {
    self.context = try DoQClientContext(extraCAFile: extraCAFile)
    self.group = group
  }

  public func connect(
    to endpoint: ServerEndpoint, expectedName: DNSName?, resumption: [UInt8]?, handshakeTimeout: TimeAmount,
    idleTimeout: TimeAmount, onTicket: @escaping @Sendable ([UInt8]) -> Void,
    onClose: @escaping @Sendable (EncryptedFailure) -> Void
  ) async throws(EncryptedFailure) -> (any EncryptedSession, TLSHandshakeInfo) {
    // The protocol has no early query: resumption here is 1-RTT (earlyDataAccepted stays nil).
    let (connection, info, _) = try await DoQConnection.connect(
      to: endpoint, expectedName: expectedName, context: context, group: group, resumption: resumption,
      handshakeTimeout: handshakeTimeout, idleTimeout: idleTimeout, onTicket: onTicket, onClose: onClose)
    return (connection, info)
  }
}
