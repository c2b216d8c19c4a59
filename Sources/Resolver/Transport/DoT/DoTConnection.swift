import NIOCore
import NIOPosix

/// One long-lived DoT connection to one server (RFC 7858): pipelined queries, responses matched in any
/// order. OpenSSL runs over memory BIOs inside the channel; no SNI, ALPN `dot`, any certificate accepted.
/// Dropping the object does not close the connection: call `close()`, or the idle timeout will.
public final class DoTConnection: Sendable {
  private let channel: any Channel
  private let session: NIOLoopBound<DoTSessionHandler>
  private let status: DoTConnectionStatus

  private init(channel: any Channel, session: NIOLoopBound<DoTSessionHandler>, status: DoTConnectionStatus) {
    self.channel = channel
    self.session = session
    self.status = status
  }

  /// Opens TCP to `endpoint` (port already chosen), runs the TLS handshake and returns the connection
  /// with what was negotiated. `resumption` is one serialized session to offer; every session the server
  /// sends is handed to `onTicket` (OE-23). `onClose` is called exactly once when a session that completed
  /// its handshake ends: `.cleanClose` for close_notify/FIN/idle or local close with nothing outstanding,
  /// otherwise the failure. A failed attempt throws instead and never calls `onClose`.
  public static func connect(
    to endpoint: ServerEndpoint,
    expectedName: DNSName?,
    context: DoTClientContext, group: any EventLoopGroup,
    resumption: [UInt8]?,
    connectTimeout: TimeAmount, handshakeTimeout: TimeAmount, idleTimeout: TimeAmount,
    onTicket: @escaping @Sendable ([UInt8]) -> Void,
    onClose: @escaping @Sendable (EncryptedFailure) -> Void,
    counters: EncryptedReplyCounters = .init()
  ) async throws(EncryptedFailure) -> (DoTConnection, TLSHandshakeInfo) {
    let time = SystemTimeSource()
    let startedAt = time.now()
    let status = DoTConnectionStatus()
    let ip = endpoint.ip
    let loop = group.next()
    // Both promises live outside the pipeline: a handshake that fails fast may tear the pipeline down
    // before `connect` returns, and its real outcome must still reach the caller.
    let handshake = loop.makePromise(of: TLSHandshakeInfo.self)
    let sessionHandler = loop.makePromise(of: NIOLoopBound<DoTSessionHandler>.self)
    let bootstrap = ClientBootstrap(group: loop)
      .connectTimeout(connectTimeout)
      .channelOption(.socketOption(.tcp_nodelay), value: 1)
      .channelInitializer { channel in
        channel.eventLoop.makeCompletedFuture {
          let engine = try TLSClientEngine(
            context: context, expectedName: expectedName, ip: ip, resumption: resumption, onTicket: onTicket)
          let session = DoTSessionHandler(
            handshakePromise: handshake, handshakeTimeout: handshakeTimeout, idleTimeout: idleTimeout,
            status: status, time: time, counters: counters, onClose: onClose)
          let pipeline = channel.pipeline.syncOperations
          try pipeline.addHandler(QuickAckHandler { session.awaitingAnswers })
          try pipeline.addHandler(TLSClientHandler(engine: engine, startedAt: startedAt, time: time))
          try pipeline.addHandler(ByteToMessageHandler(LengthPrefixedMessageDecoder()))
          try pipeline.addHandler(session)
          sessionHandler.succeed(NIOLoopBound(session, eventLoop: channel.eventLoop))
        }
      }
    let channel: any Channel
    do {
      channel = try await bootstrap.connect(to: endpoint.socketAddress).get()
    } catch {
      let failure = classifyConnectError(error)
      // Completing an already completed promise is a no-op.
      handshake.fail(failure)
      sessionHandler.fail(failure)
      throw failure
    }
    do {
      let session = try await sessionHandler.futureResult.get()
      let info = try await handshake.futureResult.get()
      return (DoTConnection(channel: channel, session: session, status: status), info)
    } catch let failure as EncryptedFailure {
      channel.close(promise: nil)
      throw failure
    } catch {
      channel.close(promise: nil)
      throw .tlsError("\(error)")
    }
  }

  /// Sends one query and waits for its response. The ID is replaced by a random one unique on this
  /// connection, EDNS padding fills the query to a multiple of 128 octets (T-40), RFC 7766 framing.
  /// The response carries the caller's original ID. TC=1 throws `.truncated` (T-19).
  public func query(_ message: Message, timeout: TimeAmount) async throws(TransportError) -> Message {
    let session = self.session
    return try await exchangeOnLoop(channel.eventLoop) { session.value.send(message, timeout: timeout) }
  }

  /// True from the finished handshake until the session closes or `close()` is called.
  public var isActive: Bool { status.isActive }

  /// When a query was last sent or a response received, in monotonic seconds (`SystemTimeSource`).
  public var lastActivity: Double { status.lastActivity }

  /// Sends close_notify, then closes; `onClose(.cleanClose)` follows. Outstanding queries fail with `.closed`.
  public func close() {
    let session = self.session
    channel.eventLoop.execute { session.value.closeGracefully() }
  }

  private static func classifyConnectError(_ error: any Error) -> EncryptedFailure {
    if let failure = error as? EncryptedFailure { return failure }
    if let channelError = error as? ChannelError, case .connectTimeout = channelError { return .tcpTimeout }
    // ECONNREFUSED, EHOSTUNREACH, ENETUNREACH (ICMP) and any other failure to establish TCP.
    return .refused
  }
}
