import NIOCore

/// Answers length-framed queries on one client TCP connection (RFC 7766 §6.2.1.1): queries are
/// resolved concurrently and answered as they complete, possibly out of order. The connection is
/// closed when idle with nothing outstanding, when the client has closed its side, or after
/// `queryLimit` queries (further frames are ignored), once every answer has been written.
/// A query still unanswered `answerDeadline` after it came gets SERVFAIL from here, counted in
/// `resolutionsOverdue` and logged (a resolution that overruns its deadline is a bug); the
/// resolution's own answer, if it comes later, is dropped.
/// A query the packet cache holds is answered at once on the event loop (`FastPath.streamLookup`),
/// without the hop to the engine thread; those answers are flushed together when the read ends.
/// While the connection's unsent answers are over NIO's high-water mark (the client does not read
/// them), no more is read from it: a client that pipelines queries and never reads cannot make
/// the queued answers grow without bound. Reading resumes when they drain below the low mark; a
/// connection that stays stalled is closed by the idle timeout.
final class TCPQueryHandler: ChannelDuplexHandler {
  typealias InboundIn = ByteBuffer
  typealias OutboundIn = ByteBuffer
  typealias OutboundOut = ByteBuffer

  private let processor: QueryProcessor
  private let counters: ListenerCounters
  /// Queries accepted on this connection at most (0: no limit).
  private let queryLimit: Int
  /// `.tcp`, or `.tls` for DoT (counted in `tlsQueries` as well; padded responses).
  private let transport: ClientTransport
  /// The packet cache's lookup for cached answers (nil: off).
  private let fastPath: FastPath?
  /// Cached answers were written during this read and wait for its end to be flushed.
  private var flushPending = false
  /// The unanswered queries' overdue timers.
  private var watch: AnswerWatch
  /// Set when the handler left the pipeline (the connection closed): answers are not written.
  private var removed = false
  private var outstanding = 0
  private var received = 0
  private var inputClosed = false
  /// A read was asked for while the channel was not writable; it is issued once it is again.
  private var readHeld = false

  init(
    processor: QueryProcessor, counters: ListenerCounters, queryLimit: Int, transport: ClientTransport = .tcp,
    answerDeadline: TimeAmount? = nil, fastPath: FastPath? = nil
  ) {
    self.fastPath = fastPath
    self.processor = processor
    self.counters = counters
    self.queryLimit = queryLimit
    self.transport = transport
    self.watch = AnswerWatch(deadline: answerDeadline)
  }

  func channelRead(context: ChannelHandlerContext, data: NIOAny) {
    guard !inputClosed else { return }  // past the per-connection limit: ignored
    let frame = unwrapInboundIn(data)
    let client = context.channel.remoteAddress
    let processor = self.processor
    guard processor.admit(client) else { return }
    received += 1
    if queryLimit > 0 && received >= queryLimit {
      inputClosed = true  // answer what is outstanding, then close
      counters.update { $0.tcpQueryLimitClosed += 1 }
    }
    var learned: (FastQuery, UInt64)?
    if let fastPath, let client {
      switch fastPath.streamLookup(frame, from: client, via: transport, allocator: context.channel.allocator) {
      case .hit(let framed):
        context.write(wrapOutboundOut(framed), promise: nil)
        flushPending = true
        if inputClosed && outstanding == 0 { flushAndClose(context) }
        return
      case .miss(let query, let generation):
        learned = query.map { ($0, generation) }
      }
    }
    let fastPath = self.fastPath
    let raw = Array(frame.readableBytesView)
    outstanding += 1
    let bound = NIOLoopBound((handler: self, context: context), eventLoop: context.eventLoop)
    let token = watch.begin(on: context.eventLoop) { token, began in
      bound.value.handler.overdue(token, raw, began: began, context: bound.value.context)
    }
    let promise = context.eventLoop.makePromise(of: ([UInt8]?, Bool).self)
    let transport = self.transport
    let toLearn = learned
    // On the upstream engine's thread, as UDPSocketLoop's full path (see UDPExchangeEngine).
    UDPExchangeEngine.resolutions.run {
      await processor.process(raw, from: client, via: transport) { promise.succeed(($0, $1)) }
    }
    promise.futureResult.whenSuccess { response, replayable in  // runs on the channel's event loop
      bound.value.handler.finished(token, response, context: bound.value.context)
      if replayable, let response, let fastPath, let (query, generation) = toLearn {
        fastPath.learn(response, for: query, generation: generation)
      }
    }
  }

  private func finished(_ token: UInt64, _ response: [UInt8]?, context: ChannelHandlerContext) {
    guard !removed else { return }  // the connection is gone
    guard watch.finish(token) else {
      return processor.noteLateEnd(from: Self.describe(context))  // answered as overdue already
    }
    answer(response, context: context)
  }

  /// The watch's timer: the query is still unanswered past `answerDeadline`.
  private func overdue(_ token: UInt64, _ raw: [UInt8], began: NIODeadline, context: ChannelHandlerContext) {
    let waited = AnswerWatch.waitedMs(since: began)
    // A query that did not parse stays with its resolution (it was answered at once).
    guard watch.isWaiting(token),
      let servfail = processor.overdueAnswer(to: raw, from: Self.describe(context), waitedMs: waited, via: transport)
    else { return }
    watch.expire(token)
    answer(servfail, context: context)
  }

  private static func describe(_ context: ChannelHandlerContext) -> String {
    context.channel.remoteAddress.map { "\($0)" } ?? "?"
  }

  private func answer(_ response: [UInt8]?, context: ChannelHandlerContext) {
    outstanding -= 1
    guard context.channel.isActive else { return }
    if let response {
      let frame = TCPFrameDecoder.frame(response, allocator: context.channel.allocator)
      context.writeAndFlush(wrapOutboundOut(frame), promise: nil)
    }
    if inputClosed && outstanding == 0 { flushAndClose(context) }
  }

  func channelReadComplete(context: ChannelHandlerContext) {
    flushIfPending(context)
    context.fireChannelReadComplete()
  }

  /// Backpressure: no read while the answers already written wait over the high-water mark.
  func read(context: ChannelHandlerContext) {
    if context.channel.isWritable {
      context.read()
    } else {
      if !readHeld { counters.update { $0.tcpReadsPaused += 1 } }
      readHeld = true
    }
  }

  func channelWritabilityChanged(context: ChannelHandlerContext) {
    if context.channel.isWritable && readHeld {
      readHeld = false
      context.read()
    }
    context.fireChannelWritabilityChanged()
  }

  /// Closes the connection after what was written (cached answers not flushed yet included).
  private func flushAndClose(_ context: ChannelHandlerContext) {
    flushIfPending(context)
    context.close(promise: nil)
  }

  private func flushIfPending(_ context: ChannelHandlerContext) {
    guard flushPending else { return }
    flushPending = false
    context.flush()
  }

  func handlerRemoved(context: ChannelHandlerContext) {
    removed = true
    watch.cancelAll()
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
      if outstanding == 0 { flushAndClose(context) }
    default:
      context.fireUserInboundEventTriggered(event)
    }
  }

  func errorCaught(context: ChannelHandlerContext, error: Error) {
    context.close(promise: nil)
  }
}
