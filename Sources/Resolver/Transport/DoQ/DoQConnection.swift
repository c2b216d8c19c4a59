import NIOCore

#if canImport(Glibc)
  import Glibc
#endif

/// One DoQ connection to one server (RFC 9250): a QUIC v1 client (ngtcp2 + GnuTLS) on a connected UDP
/// channel, one query per bidirectional stream, ALPN `doq`, no SNI, any certificate accepted.
public final class DoQConnection: Sendable {
  private let session: DoQSocketSession
  private let engine: UDPExchangeEngine
  private let status: DoTConnectionStatus
  /// The clock the session's `status` is kept on.
  private let clock = SystemTimeSource()

  private init(session: DoQSocketSession, engine: UDPExchangeEngine, status: DoTConnectionStatus) {
    self.session = session
    self.engine = engine
    self.status = status
  }

  /// Connects to `endpoint` (its port is the DoQ port) and completes the QUIC handshake within
  /// `handshakeTimeout`. `resumption` is one blob from an earlier `onTicket` (used once); every ticket the
  /// server issues goes to `onTicket` (OE-23). The QUIC idle timeout is `idleTimeout`. `onClose` is called
  /// once when an established session ends; a failed attempt throws instead. The session runs on the
  /// exchange engine's thread; `group` only completes the early query's future.
  ///
  /// `earlyQuery` (the triggering query, OE-24) is sent as 0-RTT when resuming with a ticket that allows
  /// it and the opcode is QUERY or NOTIFY (T-7), otherwise right after the handshake; if the server rejects
  /// early data it is sent again after the handshake. Its response is the third element (nil when no
  /// `earlyQuery` was given or its opcode is not replayable); it times out after twice `handshakeTimeout`.
  /// `TLSHandshakeInfo.earlyDataAccepted` is nil unless early data was actually sent.
  public static func connect(
    to endpoint: ServerEndpoint, expectedName: DNSName?, context: DoQClientContext, group: any EventLoopGroup,
    resumption: [UInt8]?, earlyQuery: Message? = nil, handshakeTimeout: TimeAmount, idleTimeout: TimeAmount,
    onTicket: @escaping @Sendable ([UInt8]) -> Void,
    onClose: @escaping @Sendable (EncryptedFailure) -> Void,
    counters: EncryptedReplyCounters = .init()
  ) async throws(EncryptedFailure) -> (DoQConnection, TLSHandshakeInfo, EventLoopFuture<Message>?) {
    let engine = UDPExchangeEngine.shared
    guard engine.isRunning else { throw .tlsError("the exchange engine thread is not running") }
    // A CA bundle still being parsed at start-up (`TrustStore`): wait for it here, suspended,
    // rather than verify against nothing. Resumed handshakes wait too: a server that declines the
    // ticket sends its certificate after all. Not counted in the handshake timeout (local work,
    // not the server's slowness).
    let verifyStore = await context.trust.store()
    let time = SystemTimeSource()
    let startedAt = time.now()
    let status = DoTConnectionStatus()
    let (fd, local) = try connectedSocket(to: endpoint.socketAddress)
    // Presentation form without the root dot, as certificates spell names.
    let name = expectedName.map { name -> String in
      let text = String(describing: name)
      return text.count > 1 && text.hasSuffix(".") ? String(text.dropLast()) : text
    }
    let replayable = earlyQuery.map { $0.header.opcode == 0 || $0.header.opcode == 4 } ?? false
    let quic: QUICClientEngine
    do {
      quic = try QUICClientEngine(
        context: context, verifyStore: verifyStore, remote: endpoint.socketAddress, local: local, expectedName: name,
        handshakeTimeout: handshakeTimeout, idleTimeout: idleTimeout, resumption: resumption,
        earlyData: replayable && resumption != nil)
    } catch {
      Glibc.close(fd)
      throw error
    }
    let lowPriority = HandshakePriority.low
    let session = DoQSocketSession(
      engine: engine, fd: fd, quic: quic, handshakeTimeout: handshakeTimeout, startedAt: startedAt, time: time,
      status: status, counters: counters, lowPriority: lowPriority, onTicket: onTicket, onClose: onClose)
    let early =
      replayable ? earlyQuery.map { ($0, handshakeTimeout * 2, group.next().makePromise(of: Message.self)) } : nil
    let result = await withUnsafeContinuation { continuation in
      // A probe's first flight (its key share) waits for a turn without other work (OE-10).
      if lowPriority {
        engine.executeAtLowPriority { session.start(continuation, early: early) }
      } else {
        engine.execute { session.start(continuation, early: early) }
      }
    }
    let info = try result.get()
    return (DoQConnection(session: session, engine: engine, status: status), info, early?.2.futureResult)
  }

  /// A non-blocking UDP socket connected to `remote`, and the local address the kernel gave it.
  private static func connectedSocket(to remote: SocketAddress) throws(EncryptedFailure) -> (Int32, SocketAddress) {
    let fd = socket(
      remote.protocol.rawValue,
      Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_NONBLOCK.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
    // No socket or local port: this machine's failure (`.local`), not the server's.
    guard fd >= 0 else { throw .noSocket(errno) }
    let connected = remote.withSockAddr { sa, len in Glibc.connect(fd, sa, socklen_t(len)) }
    let connectError = connected == 0 ? 0 : errno
    var storage = sockaddr_storage()
    var length = socklen_t(MemoryLayout<sockaddr_storage>.size)
    let named = withUnsafeMutablePointer(to: &storage) {
      $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) }
    }
    var local: SocketAddress?
    if connected == 0, named == 0 {
      let family = Int32(storage.ss_family)
      local = withUnsafePointer(to: &storage) { pointer in
        switch family {
        case AF_INET:
          pointer.withMemoryRebound(to: sockaddr_in.self, capacity: 1) { SocketAddress($0.pointee, host: "") }
        case AF_INET6:
          pointer.withMemoryRebound(to: sockaddr_in6.self, capacity: 1) { SocketAddress($0.pointee, host: "") }
        default: nil
        }
      }
    }
    guard let local else {
      Glibc.close(fd)
      // A UDP connect fails at once only for want of a route or a local port.
      throw connectError != 0 ? .connectFailed(connectError) : .local("getsockname: no local address")
    }
    return (fd, local)
  }

  /// Sends one query on its own stream with Message ID 0 and EDNS padding (T-24..T-26, T-35) and waits
  /// for its response, which carries the caller's original ID. Queries run concurrently (T-27).
  public nonisolated(nonsending) func query(_ message: Message, timeout: TimeAmount) async throws(TransportError)
    -> Message
  {
    let session = self.session
    return try await withUnsafeContinuation { continuation in
      engine.execute { session.send(message, timeout: timeout, continuation) }
    }.get()
  }

  /// How many times so far the session armed its timer for a deadline 50 µs ahead or less.
  var imminentTimers: Int { session.imminentTimers.value }

  /// True from the finished handshake until the session closes or `close()` is called.
  public var isActive: Bool { status.isActive }

  /// False once the server has been silent for three quarters of the agreed idle timeout (T-32):
  /// it may have dropped the connection without a word, so new queries go on a new one.
  public var isReusable: Bool { status.heardFromRecently(at: clock.now()) }

  /// True once `close()` was called.
  public var closedLocally: Bool { status.closeRequested }

  /// When a packet was last received or a query sent, in monotonic seconds (`SystemTimeSource`).
  public var lastActivity: Double { status.lastActivity }

  /// Sends CONNECTION_CLOSE with DOQ_NO_ERROR; `onClose(.cleanClose)` follows. Outstanding queries fail.
  /// Always queued, never run inside the call, so `onClose` never runs under the caller's locks.
  public func close() {
    status.requestClose()
    let session = self.session
    engine.execute(queued: true) { session.closeGracefully() }
  }
}
