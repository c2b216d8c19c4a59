import NIOCore

/// One long-lived DoT session to one server (RFC 7858): pipelined queries, responses matched in any
/// order, on one connection, and on up to `maxConnections - 1` more while queries overlap
/// (`DoTLanes`). It runs on the exchange engine's thread (`DoTSocketSession`); no SNI, ALPN `dot`,
/// any certificate accepted. Dropping the object does not close the connection: call `close()`,
/// or the idle timeout will.
public final class DoTConnection: Sendable {
  private let session: DoTSocketSession
  private let lanes: DoTLanes
  private let engine: UDPExchangeEngine
  private let status: DoTConnectionStatus

  private init(session: DoTSocketSession, lanes: DoTLanes, engine: UDPExchangeEngine, status: DoTConnectionStatus) {
    self.session = session
    self.lanes = lanes
    self.engine = engine
    self.status = status
  }

  /// Opens TCP to `endpoint` (port already chosen), runs the TLS handshake and returns the connection
  /// with what was negotiated. `resumption` is one serialized session to offer; every session the server
  /// sends is handed to `onTicket` (OE-23). `onClose` is called exactly once when a session that completed
  /// its handshake ends: `.cleanClose` for close_notify/FIN/idle or local close with nothing outstanding,
  /// otherwise the failure; after a keepalive TIMEOUT of 0, `.cleanClose` as the session goes out of
  /// use. A failed attempt throws instead and never calls `onClose`.
  /// `handshakeTimeout` bounds the whole attempt (TCP connect plus TLS handshake, the RFC 9539
  /// `timeout`); `connectTimeout` bounds the TCP connect within it. Neither counts the wait for a
  /// trust store still being built at start-up (`TrustStore`): that is local work,
  /// not the server's slowness, and must not damp it. `maxConnections`: connections to the server
  /// at most while queries overlap, if the first one's round trip is at least `lanesMinRTT`
  /// (`DoTLanes`); `onClose` reports the first one's end only.
  public static func connect(
    to endpoint: ServerEndpoint,
    expectedName: DNSName?,
    context: DoTClientContext,
    resumption: [UInt8]?,
    connectTimeout: TimeAmount, handshakeTimeout: TimeAmount, idleTimeout: TimeAmount,
    maxConnections: Int = 1, lanesMinRTT: TimeAmount = .milliseconds(1),
    onTicket: @escaping @Sendable ([UInt8]) -> Void,
    onClose: @escaping @Sendable (EncryptedFailure) -> Void,
    counters: EncryptedReplyCounters = .init()
  ) async throws(EncryptedFailure) -> (DoTConnection, TLSHandshakeInfo) {
    let engine = UDPExchangeEngine.shared
    guard engine.isRunning else { throw .tlsError("the exchange engine thread is not running") }
    let status = DoTConnectionStatus()
    let lanes = DoTLanes(
      maxLanes: maxConnections, minRTTMicros: UInt32(clamping: lanesMinRTT.nanoseconds / 1000),
      opener: .init(
        endpoint: endpoint, expectedName: expectedName, context: context, handshakeTimeout: handshakeTimeout,
        idleTimeout: idleTimeout, counters: counters, onTicket: onTicket),
      engine: engine)
    let (session, info) = try await DoTSocketSession.open(
      engine: engine, endpoint: endpoint, expectedName: expectedName, context: context, resumption: resumption,
      connectTimeout: connectTimeout, handshakeTimeout: handshakeTimeout, idleTimeout: idleTimeout, status: status,
      counters: counters, lowPriority: HandshakePriority.low, onTicket: onTicket,
      onClose: { failure in
        // The extra lanes end with the first connection (their queries still get answers).
        lanes.end()
        onClose(failure)
      })
    return (DoTConnection(session: session, lanes: lanes, engine: engine, status: status), info)
  }

  /// Sends one query and waits for its response. The ID is replaced by a random one unique on its
  /// connection, EDNS padding fills the query to a multiple of 128 octets (T-40), RFC 7766 framing.
  /// The response carries the caller's original ID. TC=1 throws `.truncated` (T-19). A query a
  /// connection's end cut off goes again on the first connection in the time it has left (which
  /// answers `.closed` itself if it is the one that ended); a timeout on an extra connection is
  /// `.laneTimeout`.
  public nonisolated(nonsending) func query(_ message: Message, timeout: TimeAmount) async throws(TransportError)
    -> Message
  {
    let (session, lanes) = (self.session, self.lanes)
    let sentAt = UDPExchangeEngine.now()
    let result = await withUnsafeContinuation { continuation in
      engine.execute { lanes.lane(first: session).send(message, timeout: timeout, continuation) }
    }
    guard case .failure(.closed) = result else { return try result.get() }
    // No time left is `.closed` too: not a timeout of the server's, nor a reason for Do53 while
    // the session is up.
    let left = Int64(timeout.nanoseconds) - Int64(UDPExchangeEngine.now() &- sentAt)
    guard left > 0 else { throw .closed }
    return try await withUnsafeContinuation { continuation in
      engine.execute { session.send(message, timeout: .nanoseconds(left), continuation) }
    }.get()
  }

  /// True from the finished handshake until the session closes, `close()` is called or the
  /// server's edns-tcp-keepalive TIMEOUT of 0 takes it out of use (RFC 7828).
  public var isActive: Bool { status.isActive }

  /// When a query was last sent or a response received, in monotonic seconds (`SystemTimeSource`).
  public var lastActivity: Double { status.lastActivity }

  /// True once `close()` was called.
  public var closedLocally: Bool { status.closeRequested }

  /// Sends close_notify, then closes; `onClose(.cleanClose)` follows. Outstanding queries fail with `.closed`.
  /// Always queued, never run inside the call, so `onClose` never runs under the caller's locks.
  public func close() {
    status.requestClose()
    let (session, lanes) = (self.session, self.lanes)
    engine.execute(queued: true) {
      lanes.end()
      session.closeGracefully()
    }
  }
}
