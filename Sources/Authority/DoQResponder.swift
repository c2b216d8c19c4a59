import CDoQServer
import NIOCore
import NIOPosix

/// What a DoQ responder does besides answering (for the demo's misbehaving servers).
public struct DoQBehaviour: Sendable {
  /// Close the connection (DOQ_NO_ERROR) after this many answered queries: a session breaker.
  public var closeConnectionAfterQueries: Int?
  /// Reset every Nth stream (RESET_STREAM, DOQ_INTERNAL_ERROR) instead of answering.
  public var resetEveryNthStream: Int?
  public init(closeConnectionAfterQueries: Int? = nil, resetEveryNthStream: Int? = nil) {
    self.closeConnectionAfterQueries = closeConnectionAfterQueries
    self.resetEveryNthStream = resetEveryNthStream
  }
}

/// Counters of a DoQ responder.
public struct DoQResponderStatistics: Sendable, Equatable {
  public var connectionsAccepted: UInt64
  public var handshakesCompleted: UInt64
  public var queriesAnswered: UInt64
  public var streamsReset: UInt64
  public var datagramsDropped: UInt64
  public var connectionsOpen: UInt64
  /// Datagrams sent, every kind (handshake, answers, ACKs, closes).
  public var datagramsSent: UInt64
}

/// An authoritative DNS-over-QUIC server (RFC 9250) on ngtcp2 in server mode (the C engine in
/// `CDoQServer`), driven from one NIO datagram channel: ALPN `doq`, session tickets and 0-RTT.
public final class DoQResponder: Sendable {
  public let address: SocketAddress
  private let channel: any Channel

  /// Binds UDP host:port (0: any free port) and serves: `answer` gets each query message and
  /// returns the response message, or nil to reset the stream. `steerReusePort`: bind with
  /// SO_REUSEPORT and keep every datagram (see `doqs_bind_udp`), so another server can hold a UDP
  /// socket on the same port without answering QUIC packets (the NSD lab's DoT servers).
  public static func start(
    group: any EventLoopGroup, host: String, port: Int, identity: CertifiedKey, behaviour: DoQBehaviour = .init(),
    handshakeTimeout: TimeAmount = .seconds(5), idleTimeout: TimeAmount = .seconds(30), steerReusePort: Bool = false,
    answer: @escaping @Sendable ([UInt8]) -> [UInt8]?
  ) async throws -> DoQResponder {
    let channel: any Channel
    if steerReusePort {
      var err = [CChar](repeating: 0, count: 256)
      let fd = doqs_bind_udp(host, UInt16(clamping: port), 1, &err, err.count)
      guard fd >= 0 else {
        throw ResponderError.bindFailed(
          String(decoding: err.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self))
      }
      channel = try await DatagramBootstrap(group: group).withBoundSocket(fd).get()
    } else {
      channel = try await DatagramBootstrap(group: group)
        .channelOption(.socketOption(.so_reuseaddr), value: 1)
        .bindClosingOnFailure(to: try .makeAddressResolvingHost(host, port: port))
    }
    guard let bound = channel.localAddress, let ip = bound.ipAddress, let boundPort = bound.port else {
      try? await channel.close()
      throw ResponderError.bindFailed("\(host):\(port)")
    }
    do {
      try await channel.eventLoop.submit {
        let handler = try DoQServerHandler(
          identity: identity, ip: ip, port: boundPort, behaviour: behaviour, handshakeTimeout: handshakeTimeout,
          idleTimeout: idleTimeout, answer: answer)
        try channel.pipeline.syncOperations.addHandler(handler, name: DoQServerHandler.name)
      }.get()
    } catch {
      try? await channel.close()
      throw error
    }
    return DoQResponder(address: bound, channel: channel)
  }

  private init(address: SocketAddress, channel: any Channel) {
    self.address = address
    self.channel = channel
  }

  /// The engine's counters.
  public func statistics() async throws -> DoQResponderStatistics {
    let channel = self.channel
    return try await channel.eventLoop.submit {
      try channel.pipeline.syncOperations.handler(type: DoQServerHandler.self).statistics
    }.get()
  }

  /// Closes every connection (CONNECTION_CLOSE) and the socket.
  public func stop() async {
    let channel = self.channel
    try? await channel.eventLoop.submit {
      try channel.pipeline.syncOperations.handler(type: DoQServerHandler.self).closeAll(channel)
    }.get()
    try? await channel.close()
  }
}

/// Moves datagrams between the channel and the C engine, answers queries, and keeps its timer.
final class DoQServerHandler: ChannelInboundHandler {
  typealias InboundIn = AddressedEnvelope<ByteBuffer>
  typealias OutboundOut = AddressedEnvelope<ByteBuffer>
  static let name = "doq-server"
  static let internalError: UInt64 = 0x1  // DOQ_INTERNAL_ERROR (RFC 9250 §8.4)

  private let server: OpaquePointer
  private let behaviour: DoQBehaviour
  private let answer: @Sendable ([UInt8]) -> [UInt8]?
  private var timer: Scheduled<Void>?
  private var answeredPerConnection: [UInt64: Int] = [:]
  private var streamsSeen = 0

  init(
    identity: CertifiedKey, ip: String, port: Int, behaviour: DoQBehaviour, handshakeTimeout: TimeAmount,
    idleTimeout: TimeAmount, answer: @escaping @Sendable ([UInt8]) -> [UInt8]?
  ) throws {
    var err = [CChar](repeating: 0, count: 256)
    guard
      let server = doqs_server_new(
        identity.certificatePEM, identity.privateKeyPEM, ip, UInt16(clamping: port),
        UInt64(max(0, handshakeTimeout.nanoseconds)), UInt64(max(0, idleTimeout.nanoseconds)), &err, err.count)
    else {
      throw ResponderError.quic(String(decoding: err.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self))
    }
    self.server = server
    self.behaviour = behaviour
    self.answer = answer
  }

  deinit { doqs_server_free(server) }

  var statistics: DoQResponderStatistics {
    var s = doqs_stats()
    doqs_server_stats(server, &s)
    return DoQResponderStatistics(
      connectionsAccepted: s.accepted, handshakesCompleted: s.handshakes, queriesAnswered: s.queries,
      streamsReset: s.resets, datagramsDropped: s.dropped, connectionsOpen: s.open, datagramsSent: s.sent)
  }

  func channelRead(context: ChannelHandlerContext, data: NIOAny) {
    let envelope = Self.unwrapInboundIn(data)
    guard let ip = envelope.remoteAddress.ipAddress, let port = envelope.remoteAddress.port else { return }
    envelope.data.withUnsafeReadableBytes { raw in
      guard let base = raw.baseAddress?.assumingMemoryBound(to: UInt8.self) else { return }
      _ = doqs_server_read(server, ip, UInt16(clamping: port), base, raw.count)
    }
    processEvents()
    flush(context.channel)
  }

  func handlerRemoved(context: ChannelHandlerContext) {
    timer?.cancel()
    timer = nil
  }

  func closeAll(_ channel: any Channel) {
    doqs_server_close_all(server)
    flush(channel)
  }

  private func processEvents() {
    var ev = doqs_event()
    while doqs_server_next_event(server, &ev) != 0 {
      switch Int(ev.type) {
      case Int(DOQS_EVENT_QUERY):
        let query = ev.data.map { Array(UnsafeBufferPointer(start: $0, count: ev.len)) } ?? []
        streamsSeen += 1
        if let n = behaviour.resetEveryNthStream, n > 0, streamsSeen % n == 0 {
          _ = doqs_server_reset(server, ev.conn, ev.stream_id, Self.internalError)
          continue
        }
        // The engine echoes the query's ID, which is 0 on DoQ (RFC 9250 §4.2.1).
        guard let response = answer(query) else {
          _ = doqs_server_reset(server, ev.conn, ev.stream_id, Self.internalError)
          continue
        }
        _ = doqs_server_answer(server, ev.conn, ev.stream_id, response, response.count)
        let answered = answeredPerConnection[ev.conn, default: 0] + 1
        answeredPerConnection[ev.conn] = answered
        if let limit = behaviour.closeConnectionAfterQueries, answered >= limit {
          _ = doqs_server_close(server, ev.conn, 0)
        }
      case Int(DOQS_EVENT_CONNECTION_CLOSED):
        answeredPerConnection[ev.conn] = nil
      default:
        break
      }
    }
  }

  private func flush(_ channel: any Channel) {
    var buf = [UInt8](repeating: 0, count: 1500)
    var ip = [CChar](repeating: 0, count: 64)
    var port: UInt16 = 0
    var wrote = false
    while true {
      let n = doqs_server_write(server, &buf, buf.count, &ip, ip.count, &port)
      guard n > 0 else { break }
      let text = String(decoding: ip.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
      guard let to = try? SocketAddress(ipAddress: text, port: Int(port)) else { continue }
      let out = AddressedEnvelope(remoteAddress: to, data: channel.allocator.buffer(bytes: buf[0..<n]))
      channel.write(out, promise: nil)
      wrote = true
    }
    if wrote { channel.flush() }
    processEvents()
    arm(channel)
  }

  private func arm(_ channel: any Channel) {
    timer?.cancel()
    timer = nil
    let delay = doqs_server_expiry_delay(server)
    guard delay >= 0 else { return }
    let loop = channel.eventLoop
    let bound = NIOLoopBound(self, eventLoop: loop)
    timer = loop.scheduleTask(in: .nanoseconds(max(delay, 1_000))) {
      let handler = bound.value
      doqs_server_handle_expiry(handler.server)
      handler.processEvents()
      handler.flush(channel)
    }
  }
}
