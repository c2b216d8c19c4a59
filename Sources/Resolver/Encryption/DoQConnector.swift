import NIOCore

extension DoQConnection: EncryptedSession {}

/// Opens DoQ sessions for the RFC 9539 policy.
public struct DoQConnector: EarlyDataConnector {
  public let transport = EncryptedTransport.doq
  let context: DoQClientContext
  let group: any EventLoopGroup
  let counters: EncryptedReplyCounters

  /// Certificates verified against `trust` for all connections; `counters` receives the
  /// malformed responses of every session.
  public init(trust: TrustStore, group: any EventLoopGroup, counters: EncryptedReplyCounters = .init()) throws {
    self.context = try DoQClientContext(trust: trust)
    self.group = group
    self.counters = counters
  }

  /// `init(trust:group:counters:)` with a trust store of its own (system plus `extraCAFile`, PEM).
  public init(extraCAFile: String?, group: any EventLoopGroup, counters: EncryptedReplyCounters = .init()) throws {
    try self.init(trust: TrustStore(extraCAFile: extraCAFile), group: group, counters: counters)
  }

  public func connect(
    to endpoint: ServerEndpoint, expectedName: DNSName?, resumption: [UInt8]?, handshakeTimeout: TimeAmount,
    idleTimeout: TimeAmount, onTicket: @escaping @Sendable ([UInt8]) -> Void,
    onClose: @escaping @Sendable (EncryptedFailure) -> Void
  ) async throws(EncryptedFailure) -> (any EncryptedSession, TLSHandshakeInfo) {
    let (connection, info, _) = try await DoQConnection.connect(
      to: endpoint, expectedName: expectedName, context: context, group: group, resumption: resumption,
      handshakeTimeout: handshakeTimeout, idleTimeout: idleTimeout, onTicket: onTicket, onClose: onClose,
      counters: counters)
    return (connection, info)
  }

  /// Resumes with `earlyQuery` as 0-RTT when the ticket allows it (OE-24, T-7).
  public func connectWithEarlyData(
    to endpoint: ServerEndpoint, expectedName: DNSName?, resumption: [UInt8]?, earlyQuery: Message?,
    handshakeTimeout: TimeAmount, idleTimeout: TimeAmount, onTicket: @escaping @Sendable ([UInt8]) -> Void,
    onClose: @escaping @Sendable (EncryptedFailure) -> Void
  ) async throws(EncryptedFailure) -> (any EncryptedSession, TLSHandshakeInfo, EventLoopFuture<Message>?) {
    let (connection, info, early) = try await DoQConnection.connect(
      to: endpoint, expectedName: expectedName, context: context, group: group, resumption: resumption,
      earlyQuery: earlyQuery, handshakeTimeout: handshakeTimeout, idleTimeout: idleTimeout, onTicket: onTicket,
      onClose: onClose, counters: counters)
    return (connection, info, early)
  }
}
