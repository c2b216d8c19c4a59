import NIOCore
import NIOPosix

/// One DoQ connection to one server (RFC 9250): a QUIC v1 client (ngtcp2 + GnuTLS) on a connected UDP
/// channel, one query per bidirectional stream, ALPN `doq`, no SNI, any certificate accepted.
public final class DoQConnection: Sendable {
  private let channel: any Channel
  private let session: NIOLoopBound<DoQSessionHandler>
  private let status: DoTConnectionStatus

  private init(channel: any Channel, session: NIOLoopBound<DoQSessionHandler>, status: DoTConnectionStatus) {
    self.channel = channel
    self.session = session
    self.status = status
  }

  /// Connects to `endpoint` (its port is the DoQ port) and completes the QUIC handshake within
  /// `handshakeTimeout`. `resumption` is one blob from an earlier `onTicket` (used once); every ticket the
  /// server issues goes to `onTicket` (OE-23). The QUIC idle timeout is `idleTimeout`. `onClose` is called
  /// once when an established session ends; a failed attempt throws instead.
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
    let time = SystemTimeSource()
    let startedAt = time.now()
    let status = DoTConnectionStatus()
    let channel: any Channel
    do {
      channel = try await DatagramBootstrap(group: group.next()).connect(to: endpoint.socketAddress).get()
    } catch {
      throw .refused
    }
    // Presentation form without the root dot, as certificates spell names.
    let name = expectedName.map { name -> String in
      let text = String(describing: name)
      return text.count > 1 && text.hasSuffix(".") ? String(text.dropLast()) : text
    }
    let replayable = earlyQuery.map { $0.header.opcode == 0 || $0.header.opcode == 4 } ?? false
    do {
      let (session, info, early) = try await channel.eventLoop.flatSubmit {
        () -> EventLoopFuture<(NIOLoopBound<DoQSessionHandler>, TLSHandshakeInfo, EventLoopFuture<Message>?)> in
        do {
          guard let local = channel.localAddress else { throw EncryptedFailure.tlsError("no local address") }
          let engine = try QUICClientEngine(
            context: context, remote: endpoint.socketAddress, local: local, expectedName: name,
            handshakeTimeout: handshakeTimeout, idleTimeout: idleTimeout, resumption: resumption,
            earlyData: replayable && resumption != nil)
          let handler = DoQSessionHandler(
            eventLoop: channel.eventLoop, engine: engine, handshakeTimeout: handshakeTimeout, startedAt: startedAt,
            time: time, status: status, counters: counters, onTicket: onTicket, onClose: onClose)
          try channel.pipeline.syncOperations.addHandler(handler)
          let early = handler.start(earlyQuery: replayable ? earlyQuery : nil)
          let bound = NIOLoopBound(handler, eventLoop: channel.eventLoop)
          return handler.handshakeFuture.map { (bound, $0, early) }
        } catch {
          return channel.eventLoop.makeFailedFuture(error)
        }
      }.get()
      return (DoQConnection(channel: channel, session: session, status: status), info, early)
    } catch let failure as EncryptedFailure {
      channel.close(promise: nil)
      throw failure
    } catch {
      channel.close(promise: nil)
      throw .tlsError("\(error)")
    }
  }

  /// Sends one query on its own stream with Message ID 0 and EDNS padding (T-24..T-26, T-35) and waits
  /// for its response, which carries the caller's original ID. Queries run concurrently (T-27).
  public func query(_ message: Message, timeout: TimeAmount) async throws(TransportError) -> Message {
    let session = self.session
    return try await exchangeOnLoop(channel.eventLoop) { session.value.send(message, timeout: timeout) }
  }

  /// True from the finished handshake until the session closes or `close()` is called.
  public var isActive: Bool { status.isActive }

  /// When a packet was last received or a query sent, in monotonic seconds (`SystemTimeSource`).
  public var lastActivity: Double { status.lastActivity }

  /// Sends CONNECTION_CLOSE with DOQ_NO_ERROR; `onClose(.cleanClose)` follows. Outstanding queries fail.
  public func close() {
    let session = self.session
    channel.eventLoop.execute { session.value.closeGracefully() }
  }
}
