import NIOCore

/// Answers length-framed queries on one client TCP connection (RFC 7766 §6.2.1.1): queries are
/// resolved concurrently and answered as they complete, possibly out of order. The connection is
/// closed when idle with nothing outstanding, when the client has closed its side, or after
/// `queryLimit` queries (further frames are ignored), once every answer has been written.
final class TCPQueryHandler: ChannelInboundHandler {
  typealias InboundIn = ByteBuffer
  typealias OutboundOut = ByteBuffer

  private let processor: QueryProcessor
  private let counters: ListenerCounters
  /// Queries accepted on this connection at most (0: no limit).
  private let queryLimit: Int
  /// The connection is DoT (counted in `tlsQueries` as well).
  private let overTLS: Bool
  private var outstanding = 0
  private var received = 0
  private var inputClosed = false

  init(processor: QueryProcessor, counters: ListenerCounters, queryLimit: Int, overTLS: Bool = false) {
    self.processor = processor
    self.counters = counters
    self.queryLimit = queryLimit
    self.overTLS = overTLS
  }

  func channelRead(context: ChannelHandlerContext, data: NIOAny) {
    guard !inputClosed else { return }  // past the per-connection limit: ignored
    let frame = unwrapInboundIn(data)
    let raw = Array(frame.readableBytesView)
    let client = context.channel.remoteAddress
    let processor = self.processor
    guard processor.admit(client) else { return }
    received += 1
    if overTLS { counters.update { $0.tlsQueries += 1 } }
    if queryLimit > 0 && received >= queryLimit {
      inputClosed = true  // answer what is outstanding, then close
      counters.update { $0.tcpQueryLimitClosed += 1 }
    }
    outstanding += 1
    let bound = NIOLoopBound((handler: self, context: context), eventLoop: context.eventLoop)
    let promise = context.eventLoop.makePromise(of: [UInt8]?.self)
    // On the upstream engine's thread, as UDPSocketLoop's full path (see UDPExchangeEngine).
    UDPExchangeEngine.resolutions.run {
      await processor.process(raw, from: client, overTCP: true) { response, _ in promise.succeed(response) }
    }
    promise.futureResult.whenSuccess { response in  // runs on the channel's event loop
      bound.value.handler.finished(response, context: bound.value.context)
    }
  }

  private func finished(_ response: [UInt8]?, context: ChannelHandlerContext) {
    outstanding -= 1
    guard context.channel.isActive else { return }
    if let response {
      let frame = TCPFrameDecoder.frame(response, allocator: context.channel.allocator)
      context.writeAndFlush(wrapOutboundOut(frame), promise: nil)
    }
    if inputClosed && outstanding == 0 { context.close(promise: nil) }
  }

  func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
    switch event {
    case let idle as IdleStateHandler.IdleStateEvent where idle == .read || idle == .all:
      if outstanding == 0 {
        counters.update { $0.tcpIdleClosed += 1 }
        context.close(promise: nil)
      }
    case let channelEvent as ChannelEvent where channelEvent == .inputClosed:
      inputClosed = true
      if outstanding == 0 { context.close(promise: nil) }
    default:
      context.fireUserInboundEventTriggered(event)
    }
  }

  func errorCaught(context: ChannelHandlerContext, error: Error) {
    context.close(promise: nil)
  }
}
