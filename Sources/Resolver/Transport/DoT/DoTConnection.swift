import NIOCore

/// One long-lived DoT connection to one server (RFC 7858): pipelined queries, responses matched in any
/// order. It runs on the exchange engine's thread (`DoTSocketSession`); no SNI, ALPN `dot`, any
/// certificate accepted. Dropping the object does not close the connection: call `close()`, or the
/// idle timeout will.
public final class DoTConnection: Sendable {
  private let session: DoTSocketSession
  private let engine: UDPExchangeEngine
  private let status: DoTConnectionStatus

  private init(session: DoTSocketSession, engine: UDPExchangeEngine, status: DoTConnectionStatus) {
    self.session = session
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
  /// not the server's slowness, and must not damp it.
  public static func connect(
    to endpoint: ServerEndpoint,
    expectedName: DNSName?,
    context: DoTClientContext,
    resumption: [UInt8]?,
    connectTimeout: TimeAmount, handshakeTimeout: TimeAmount, idleTimeout: TimeAmount,
    onTicket: @escaping @Sendable ([UInt8]) -> Void,
    onClose: @escaping @Sendable (EncryptedFailure) -> Void,
    counters: EncryptedReplyCounters = .init()
  ) async throws(EncryptedFailure) -> (DoTConnection, TLSHandshakeInfo) {
    let engine = UDPExchangeEngine.shared
    guard engine.isRunning else { throw .tlsError("the exchange engine thread is not running") }
    // A CA bundle still being parsed at start-up: wait for it here, suspended, not on a thread.
    let verifyStore = await context.trust.store()
    let time = SystemTimeSource()
    let startedAt = time.now()
    let status = DoTConnectionStatus()
    let tls = try TLSClientEngine(
      context: context, expectedName: expectedName, ip: endpoint.ip, resumption: resumption,
      verifyStore: verifyStore, onTicket: onTicket)
    let session = DoTSocketSession(
      engine: engine, endpoint: endpoint, tls: tls, connectTimeout: connectTimeout,
      handshakeTimeout: handshakeTimeout, idleTimeout: idleTimeout, startedAt: startedAt, time: time,
      status: status, counters: counters, lowPriority: HandshakePriority.low, onClose: onClose)
    let result = await withUnsafeContinuation { continuation in
      engine.execute { session.start(continuation) }
    }
    return (DoTConnection(session: session, engine: engine, status: status), try result.get())
  }

  /// Sends one query and waits for its response. The ID is replaced by a random one unique on this
  /// connection, EDNS padding fills the query to a multiple of 128 octets (T-40), RFC 7766 framing.
  /// The response carries the caller's original ID. TC=1 throws `.truncated` (T-19).
  public nonisolated(nonsending) func query(_ message: Message, timeout: TimeAmount) async throws(TransportError)
    -> Message
  {
    let session = self.session
    return try await withUnsafeContinuation { continuation in
      engine.execute { session.send(message, timeout: timeout, continuation) }
    }.get()
  }

  /// True from the finished handshake until the session closes, `close()` is called or the
  /// server's edns-tcp-keepalive TIMEOUT of 0 takes it out of use (RFC 7828).
  public var isActive: Bool { status.isActive }

  /// When a query was last sent or a response received, in monotonic seconds (`SystemTimeSource`).
  public var lastActivity: Double { status.lastActivity }

  /// Sends close_notify, then closes; `onClose(.cleanClose)` follows. Outstanding queries fail with `.closed`.
  /// Always queued, never run inside the call, so `onClose` never runs under the caller's locks.
  public func close() {
    let session = self.session
    engine.execute(queued: true) { session.closeGracefully() }
  }
}
