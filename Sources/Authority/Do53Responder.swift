import NIOCore
import NIOPosix
import Resolver

/// An authoritative Do53 server on one address: UDP and TCP (RFC 7766 framing) on the same port.
public final class Do53Responder: Sendable {
  /// The address and port it is bound to.
  public let address: SocketAddress
  private let channels: [any Channel]
  private let counters: ResponderCounters

  /// Binds UDP and TCP on host:port (port 0: any free port, the same for both) and serves `engine`.
  /// `delay` holds every answer back (a slow server).
  public static func start(
    group: any EventLoopGroup, host: String, port: Int, engine: AuthorityEngine, delay: TimeAmount? = nil
  ) async throws -> Do53Responder {
    let counters = ResponderCounters()
    let tcp = try await ServerBootstrap(group: group)
      .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
      .childChannelInitializer { channel in
        channel.eventLoop.makeCompletedFuture {
          try channel.pipeline.syncOperations.addHandlers([
            ByteToMessageHandler(LengthPrefixedFrameDecoder()),
            TCPAnswerHandler(engine: engine, delay: delay, counters: counters),
          ])
        }
      }
      .bind(host: host, port: port).get()
    guard let bound = tcp.localAddress, let boundPort = bound.port else {
      try? await tcp.close()
      throw ResponderError.bindFailed("\(host):\(port)")
    }
    do {
      let udp = try await DatagramBootstrap(group: group)
        .bindClosingOnFailure(to: try .makeAddressResolvingHost(host, port: boundPort)) { channel in
          channel.eventLoop.makeCompletedFuture {
            try channel.pipeline.syncOperations.addHandler(
              UDPAnswerHandler(engine: engine, delay: delay, counters: counters))
          }
        }
      return Do53Responder(address: bound, channels: [tcp, udp], counters: counters)
    } catch {
      try? await tcp.close()
      throw error
    }
  }

  private init(address: SocketAddress, channels: [any Channel], counters: ResponderCounters) {
    self.address = address
    self.channels = channels
    self.counters = counters
  }

  /// Queries answered so far.
  public var answered: Int { counters.answered }

  /// Closes both sockets.
  public func stop() async {
    for c in channels { try? await c.close() }
  }
}

/// Why a responder could not start.
public enum ResponderError: Error, Sendable, CustomStringConvertible {
  case bindFailed(String)
  case tls(String)
  case quic(String)

  public var description: String {
    switch self {
    case .bindFailed(let a): "cannot bind \(a)"
    case .tls(let why): "TLS: \(why)"
    case .quic(let why): "QUIC: \(why)"
    }
  }
}

/// Counts what a responder did (thread-safe).
final class ResponderCounters: Sendable {
  private let value = StateLock(0)
  func answer() { value.withLock { $0 += 1 } }
  var answered: Int { value.withLock { $0 } }
}

final class UDPAnswerHandler: ChannelInboundHandler, Sendable {
  typealias InboundIn = AddressedEnvelope<ByteBuffer>
  typealias OutboundOut = AddressedEnvelope<ByteBuffer>
  let engine: AuthorityEngine
  let delay: TimeAmount?
  let counters: ResponderCounters

  init(engine: AuthorityEngine, delay: TimeAmount?, counters: ResponderCounters) {
    self.engine = engine
    self.delay = delay
    self.counters = counters
  }

  func channelRead(context: ChannelHandlerContext, data: NIOAny) {
    let envelope = Self.unwrapInboundIn(data)
    guard let response = engine.respond(to: Array(envelope.data.readableBytesView), overTCP: false) else { return }
    counters.answer()
    let channel = context.channel
    let out = AddressedEnvelope(remoteAddress: envelope.remoteAddress, data: channel.allocator.buffer(bytes: response))
    if let delay {
      channel.eventLoop.scheduleTask(in: delay) { channel.writeAndFlush(out, promise: nil) }
    } else {
      context.writeAndFlush(Self.wrapOutboundOut(out), promise: nil)
    }
  }
}

final class TCPAnswerHandler: ChannelInboundHandler, Sendable {
  typealias InboundIn = ByteBuffer
  typealias OutboundOut = ByteBuffer
  let engine: AuthorityEngine
  let delay: TimeAmount?
  let counters: ResponderCounters

  init(engine: AuthorityEngine, delay: TimeAmount?, counters: ResponderCounters) {
    self.engine = engine
    self.delay = delay
    self.counters = counters
  }

  func channelRead(context: ChannelHandlerContext, data: NIOAny) {
    let frame = Self.unwrapInboundIn(data)
    guard let response = engine.respond(to: Array(frame.readableBytesView), overTCP: true) else { return }
    counters.answer()
    let channel = context.channel
    var framed = channel.allocator.buffer(capacity: response.count + 2)
    framed.writeInteger(UInt16(response.count))
    framed.writeBytes(response)
    let out = framed
    if let delay {
      channel.eventLoop.scheduleTask(in: delay) { channel.writeAndFlush(out, promise: nil) }
    } else {
      context.writeAndFlush(Self.wrapOutboundOut(out), promise: nil)
    }
  }
}

/// Splits a byte stream into 2-octet-length-prefixed DNS messages (RFC 1035 §4.2.2, RFC 7858).
struct LengthPrefixedFrameDecoder: ByteToMessageDecoder {
  typealias InboundOut = ByteBuffer
  mutating func decode(context: ChannelHandlerContext, buffer: inout ByteBuffer) throws -> DecodingState {
    guard let length = buffer.getInteger(at: buffer.readerIndex, as: UInt16.self),
      buffer.readableBytes >= Int(length) + 2
    else { return .needMoreData }
    buffer.moveReaderIndex(forwardBy: 2)
    guard let frame = buffer.readSlice(length: Int(length)) else { return .needMoreData }
    context.fireChannelRead(Self.wrapInboundOut(frame))
    return .continue
  }
}
