import NIOCore
import NIOPosix

/// Plain DNS to authoritative servers over UDP and TCP (RFC 1035, RFC 7766).
/// Each UDP query uses its own connected socket on a kernel-chosen random port, so
/// the kernel drops datagrams from any other address or port; the sockets are not NIO
/// channels but plain ones watched by one epoll thread (`UDPExchangeEngine`), which is cheaper.
public final class Do53Transport: Sendable {
  let group: any EventLoopGroup
  /// Counts responses dropped because they did not match (ID or question), for monitoring.
  let mismatches = Counter()
  /// Counts unparsable replies (UDP or TCP) that matched a query.
  let malformed = Counter()
  /// Identical queries in flight, shared by concurrent resolutions.
  let inflight = InflightExchanges()
  /// DNS Cookies sent with every EDNS query and checked on every reply.
  public let cookies: DNSCookieJar
  /// Our source address, which the cookies depend on; shared with the encryption policy.
  public let addressWatch: LocalAddressWatch
  /// Mismatched replies to one UDP query after which it is abandoned for TCP.
  public static let spoofSuspicionThreshold = 3

  /// Do53 on `group`'s loops; `addressWatch` tells the cookies when our address changes.
  public init(group: any EventLoopGroup, addressWatch: LocalAddressWatch = LocalAddressWatch()) {
    self.group = group
    self.addressWatch = addressWatch
    self.cookies = DNSCookieJar(watch: addressWatch)
  }

  /// Number of mismatched (possibly spoofed) responses seen so far.
  public var mismatchedResponses: Int { mismatches.value }

  /// Number of unparsable replies so far (bad compression pointers, cut datagrams, ...).
  public var malformedResponses: Int { malformed.value }

  /// Number of exchanges that joined an identical query in flight instead of sending one.
  public var coalescedQueries: Int { inflight.joined.value }

  /// Sends `query` over UDP and waits for a matching response. Each query has its own connected
  /// socket on a fresh random source port, watched by the shared `UDPExchangeEngine`.
  public nonisolated(nonsending) func queryUDP(_ query: Message, to server: ServerEndpoint, timeout: TimeAmount)
    async throws(TransportError) -> Message
  {
    try await UDPExchangeEngine.shared.exchange(
      query.serialize(), to: server.socketAddress, matcher: ResponseMatcher(query: query), timeout: timeout,
      mismatches: mismatches, suspicionThreshold: Self.spoofSuspicionThreshold
    ).get()
  }

  /// Sends `query` over a new TCP connection and waits for a matching response, all within `timeout`
  /// (the connect included).
  public func queryTCP(_ query: Message, to server: ServerEndpoint, timeout: TimeAmount) async throws(TransportError)
    -> Message
  {
    let deadline = NIODeadline.now() + timeout
    let bytes = query.serialize()
    let matcher = ResponseMatcher(query: query, acceptsMissingCookie: true)
    let promise = group.next().makePromise(of: Message.self)
    let counter = mismatches
    let bootstrap = ClientBootstrap(group: promise.futureResult.eventLoop)
      .connectTimeout(timeout)
      .channelOption(.socketOption(.tcp_nodelay), value: 1)
      .channelInitializer { channel in
        channel.eventLoop.makeCompletedFuture {
          try channel.pipeline.syncOperations.addHandler(ByteToMessageHandler(LengthPrefixedMessageDecoder()))
          try channel.pipeline.syncOperations.addHandler(
            TCPExchangeHandler(matcher: matcher, promise: promise, mismatches: counter))
        }
      }
    let channel: any Channel
    do {
      channel = try await bootstrap.connect(to: server.socketAddress).get()
    } catch {
      promise.fail(error)
      if let e = error as? ChannelError, case .connectTimeout = e { throw .timeout }
      // No socket or local port for the connection (EMFILE, EADDRNOTAVAIL, ...): this machine's.
      if let e = error as? IOError, TransportError.isLocal(errno: e.errnoCode) { throw .io("TCP: \(e.description)") }
      throw .unreachable("\(error)")
    }
    let timer = channel.eventLoop.scheduleTask(deadline: deadline) { promise.fail(TransportError.timeout) }
    var buffer = channel.allocator.buffer(capacity: bytes.count + 2)
    buffer.writeLengthPrefixed(bytes)
    channel.writeAndFlush(buffer, promise: nil)
    defer {
      timer.cancel()
      channel.close(promise: nil)
    }
    return try await Self.await(promise.futureResult)
  }

  static func await(_ future: EventLoopFuture<Message>) async throws(TransportError) -> Message {
    do {
      return try await future.get()
    } catch let e as TransportError {
      throw e
    } catch let e as IOError {
      throw .unreachable(e.description)
    } catch {
      throw .io("\(error)")
    }
  }
}

/// Completes one exchange's promise from the replies that arrive: the first matching one wins,
/// mismatches are counted and ignored, an unparsable matching one fails the exchange.
/// With a `suspicionThreshold`, that many mismatches fail the exchange as spoof-suspected.
struct ExchangeCompletion: Sendable {
  let matcher: ResponseMatcher
  let promise: EventLoopPromise<Message>
  let mismatches: Counter
  var suspicionThreshold: Int? = nil
  let local = Counter()

  func deliver(_ bytes: [UInt8]) {
    switch matcher.match(bytes) {
    case .none:
      mismatches.increment()
      local.increment()
      if let limit = suspicionThreshold, local.value >= limit { promise.fail(TransportError.spoofSuspected) }
    case .success(let m)?: promise.succeed(m)
    case .failure(let e)?: promise.fail(TransportError.malformed(e))
    }
  }

  func fail(_ error: TransportError) { promise.fail(error) }
}

/// Reads length-prefixed frames on a TCP connection until one matches the query.
final class TCPExchangeHandler: ChannelInboundHandler, Sendable {
  typealias InboundIn = ByteBuffer
  let completion: ExchangeCompletion

  init(matcher: ResponseMatcher, promise: EventLoopPromise<Message>, mismatches: Counter) {
    completion = ExchangeCompletion(matcher: matcher, promise: promise, mismatches: mismatches)
  }

  func channelRead(context: ChannelHandlerContext, data: NIOAny) {
    completion.deliver(Array(unwrapInboundIn(data).readableBytesView))
  }

  func channelInactive(context: ChannelHandlerContext) {
    completion.fail(.closed)
  }

  func errorCaught(context: ChannelHandlerContext, error: any Error) {
    completion.fail(.unreachable("\(error)"))
    context.close(promise: nil)
  }
}
