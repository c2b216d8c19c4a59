import NIOCore

extension DoTConnection: EncryptedSession {}

/// Opens DoT sessions for the RFC 9539 policy.
public struct DoTConnector: EncryptedConnector {
  public let transport = EncryptedTransport.dot
  let context: BackgroundContext<DoTClientContext>
  let group: any EventLoopGroup
  let counters: EncryptedReplyCounters

  /// `counters` receives the malformed and mismatched responses of every session.
  public init(
    context: DoTClientContext, group: any EventLoopGroup, counters: EncryptedReplyCounters = .init()
  ) {
    self.context = BackgroundContext(ready: context)
    self.group = group
    self.counters = counters
  }

  /// Builds the context (system trust store plus `extraCAFile`, PEM) when the first session needs
  /// it, so that start-up does not wait for it. Check `extraCAFile` first
  /// (`DoTClientContext.checkCAFile`): a bad one then fails at start-up, not at every probe.
  public init(
    extraCAFile: String?, group: any EventLoopGroup, counters: EncryptedReplyCounters = .init()
  ) {
    self.context = BackgroundContext {
      do {
        return .success(try DoTClientContext(extraCAFile: extraCAFile))
      } catch let failure as EncryptedFailure {
        return .failure(failure)
      } catch {
        return .failure(.tlsError("\(error)"))
      }
    }
    self.group = group
    self.counters = counters
  }

  public func connect(
    to endpoint: ServerEndpoint, expectedName: DNSName?, resumption: [UInt8]?,
    handshakeTimeout: TimeAmount,
    idleTimeout: TimeAmount, onTicket: @escaping @Sendable ([UInt8]) -> Void,
    onClose: @escaping @Sendable (EncryptedFailure) -> Void
  ) async throws(EncryptedFailure) -> (any EncryptedSession, TLSHandshakeInfo) {
    // The whole attempt (TCP connect plus handshake) is bounded by the RFC 9539 `timeout`.
    let (connection, info) = try await DoTConnection.connect(
      to: endpoint, expectedName: expectedName, context: try await context.get(), group: group,
      resumption: resumption,
      connectTimeout: handshakeTimeout, handshakeTimeout: handshakeTimeout,
      idleTimeout: idleTimeout,
      onTicket: onTicket, onClose: onClose, counters: counters)
    return (connection, info)
  }
}
