import COpenSSL
import NIOCore
import NIOPosix
import Resolver

/// What a DoT responder does besides answering (for the demo's misbehaving servers).
public struct DoTBehaviour: Sendable {
  /// Close the connection (close_notify) after this many answered queries: a session breaker.
  public var closeConnectionAfterQueries: Int?
  /// The edns-tcp-keepalive TIMEOUT (units of 100 ms) put in answers to queries that carry the
  /// option (RFC 7828 §3.3.2); nil: the option is ignored, as NSD 4.6 does.
  public var keepalive: UInt16?
  /// Hold each answer until this many queries of the connection wait, then send them together
  /// (tests that need queries in flight at once); nil: answer each at once.
  public var answerInBatchesOf: Int?
  public init(closeConnectionAfterQueries: Int? = nil, keepalive: UInt16? = nil, answerInBatchesOf: Int? = nil) {
    self.closeConnectionAfterQueries = closeConnectionAfterQueries
    self.keepalive = keepalive
    self.answerInBatchesOf = answerInBatchesOf
  }
}

/// An authoritative DNS-over-TLS server (RFC 7858) on OpenSSL in server mode over memory BIOs:
/// TLS 1.2/1.3, ALPN `dot`, session tickets, several queries per connection.
public final class DoTResponder: Sendable {
  public let address: SocketAddress
  private let channel: any Channel
  private let counters: ResponderCounters

  /// Binds TCP host:port (0: any free port) with `identity` and serves `engine`.
  public static func start(
    group: any EventLoopGroup, host: String, port: Int, identity: CertifiedKey, engine: AuthorityEngine,
    behaviour: DoTBehaviour = .init()
  ) async throws -> DoTResponder {
    let context = try TLSServerContext(identity)
    let counters = ResponderCounters()
    let channel = try await ServerBootstrap(group: group)
      .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
      .childChannelOption(.socketOption(.tcp_nodelay), value: 1)
      .childChannelInitializer { channel in
        channel.eventLoop.makeCompletedFuture {
          let handler = try DoTServerHandler(context: context, engine: engine, behaviour: behaviour, counters: counters)
          try channel.pipeline.syncOperations.addHandler(handler)
        }
      }
      .bind(host: host, port: port).get()
    guard let bound = channel.localAddress else {
      try? await channel.close()
      throw ResponderError.bindFailed("\(host):\(port)")
    }
    return DoTResponder(address: bound, channel: channel, counters: counters)
  }

  private init(address: SocketAddress, channel: any Channel, counters: ResponderCounters) {
    self.address = address
    self.channel = channel
    self.counters = counters
  }

  /// Queries answered so far.
  public var answered: Int { counters.answered }

  /// Stops accepting connections.
  public func stop() async { try? await channel.close() }
}

extension TLSServerContext {
  /// The context for a lab responder's `identity`.
  convenience init(_ identity: CertifiedKey) throws(ResponderError) {
    do {
      try self.init(certificatePEM: identity.certificatePEM, privateKeyPEM: identity.privateKeyPEM)
    } catch {
      throw .tls(error.message)
    }
  }
}

/// One DoT connection: TLS over memory BIOs, 2-octet framed queries in, answers out.
final class DoTServerHandler: ChannelInboundHandler {
  typealias InboundIn = ByteBuffer
  typealias OutboundOut = ByteBuffer

  private let ssl: OpaquePointer
  private let readBIO: OpaquePointer
  private let writeBIO: OpaquePointer
  private let engine: AuthorityEngine
  private let behaviour: DoTBehaviour
  private let counters: ResponderCounters
  private let context: TLSServerContext  // keeps the SSL_CTX alive
  private var handshakeDone = false
  private var plaintext = ByteBuffer()
  private var answered = 0
  private var closing = false
  /// Framed answers held for `answerInBatchesOf`.
  private var held: [[UInt8]] = []

  init(context: TLSServerContext, engine: AuthorityEngine, behaviour: DoTBehaviour, counters: ResponderCounters) throws
  {
    guard let ssl = SSL_new(context.ctx), let r = BIO_new(BIO_s_mem()), let w = BIO_new(BIO_s_mem()) else {
      throw ResponderError.tls("SSL_new failed")
    }
    SSL_set_bio(ssl, r, w)
    SSL_set_accept_state(ssl)
    self.ssl = ssl
    self.readBIO = r
    self.writeBIO = w
    self.engine = engine
    self.behaviour = behaviour
    self.counters = counters
    self.context = context
  }

  deinit { SSL_free(ssl) }

  func channelRead(context: ChannelHandlerContext, data: NIOAny) {
    guard !closing else { return }
    let input = Self.unwrapInboundIn(data)
    input.withUnsafeReadableBytes { p in
      if let base = p.baseAddress, p.count > 0 { _ = BIO_write(readBIO, base, Int32(p.count)) }
    }
    if !handshakeDone {
      ERR_clear_error()
      let rc = SSL_do_handshake(ssl)
      if rc == 1 {
        handshakeDone = true
      } else if SSL_get_error(ssl, rc) != SSL_ERROR_WANT_READ {
        flush(context)
        context.close(promise: nil)
        return
      }
    }
    if handshakeDone { readPlaintext(context) }
    flush(context)
  }

  private func readPlaintext(_ context: ChannelHandlerContext) {
    while true {
      ERR_clear_error()
      var rc: Int32 = 0
      plaintext.writeWithUnsafeMutableBytes(minimumWritableBytes: 16 * 1024) { out in
        rc = SSL_read(ssl, out.baseAddress, Int32(min(out.count, 1 << 20)))
        return rc > 0 ? Int(rc) : 0
      }
      if rc <= 0 {
        if SSL_get_error(ssl, rc) != SSL_ERROR_WANT_READ { close(context) }
        break
      }
    }
    while !closing, let length = plaintext.getInteger(at: plaintext.readerIndex, as: UInt16.self),
      plaintext.readableBytes >= Int(length) + 2
    {
      plaintext.moveReaderIndex(forwardBy: 2)
      guard let query = plaintext.readBytes(length: Int(length)) else { break }
      guard var response = engine.respond(to: query, overTCP: true) else { continue }
      if let timeout = behaviour.keepalive { response = Self.withKeepalive(response, query: query, timeout: timeout) }
      var framed = [UInt8(response.count >> 8), UInt8(response.count & 0xFF)]
      framed += response
      held.append(framed)
      guard held.count >= (behaviour.answerInBatchesOf ?? 1) else { continue }
      for answer in held where !closing {
        ERR_clear_error()
        _ = answer.withUnsafeBytes { SSL_write(ssl, $0.baseAddress, Int32($0.count)) }
        counters.answer()
        answered += 1
        if let limit = behaviour.closeConnectionAfterQueries, answered >= limit { close(context) }
      }
      held.removeAll()
    }
    plaintext.discardReadBytes()
  }

  /// `response` with an edns-tcp-keepalive TIMEOUT when `query` asked for one (RFC 7828 §3.3.2).
  static func withKeepalive(_ response: [UInt8], query: [UInt8], timeout: UInt16) -> [UInt8] {
    guard let asked = try? Message.parse(query),
      asked.edns?.options.contains(where: { $0.code == EDNSOption.keepaliveCode }) == true,
      var answer = try? Message.parse(response), var edns = answer.edns
    else { return response }
    edns.options.append(EDNSOption(code: EDNSOption.keepaliveCode, data: [UInt8(timeout >> 8), UInt8(timeout & 0xFF)]))
    answer.edns = edns
    return answer.serialize()
  }

  private func close(_ context: ChannelHandlerContext) {
    guard !closing else { return }
    closing = true
    ERR_clear_error()
    _ = SSL_shutdown(ssl)
    flush(context)
    context.close(promise: nil)
  }

  private func flush(_ context: ChannelHandlerContext) {
    var out = context.channel.allocator.buffer(capacity: 0)
    while case let pending = BIO_ctrl_pending(writeBIO), pending > 0 {
      let n = out.writeWithUnsafeMutableBytes(minimumWritableBytes: Int(pending)) { raw in
        Int(max(0, BIO_read(writeBIO, raw.baseAddress, Int32(min(raw.count, Int(Int32.max))))))
      }
      if n == 0 { break }
    }
    if out.readableBytes > 0 { context.writeAndFlush(Self.wrapOutboundOut(out), promise: nil) }
  }
}

/// A TCP listener that accepts connections and never sends a byte (a "silent 853").
public final class SilentTCPListener: Sendable {
  private let channel: any Channel
  public static func start(group: any EventLoopGroup, host: String, port: Int) async throws -> SilentTCPListener {
    let channel = try await ServerBootstrap(group: group)
      .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
      .childChannelInitializer { $0.eventLoop.makeSucceededVoidFuture() }
      .bind(host: host, port: port).get()
    return SilentTCPListener(channel: channel)
  }
  private init(channel: any Channel) { self.channel = channel }
  public func stop() async { try? await channel.close() }
}

/// A UDP socket that swallows every datagram (a "silent" DoQ port).
public final class SilentUDPListener: Sendable {
  private let channel: any Channel
  public static func start(group: any EventLoopGroup, host: String, port: Int) async throws -> SilentUDPListener {
    let channel = try await DatagramBootstrap(group: group)
      .bindClosingOnFailure(to: try .makeAddressResolvingHost(host, port: port))
    return SilentUDPListener(channel: channel)
  }
  private init(channel: any Channel) { self.channel = channel }
  public func stop() async { try? await channel.close() }
}
