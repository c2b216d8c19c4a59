import NIOCore

/// The DNS side of one DoT connection, above TLS and the length-prefix decoder: completes the handshake
/// promise (or fails it, including on the handshake timer), sends pipelined queries with IDs unique on the
/// connection, matches responses by ID and question in any order (T-12, T-13), closes cleanly when idle
/// (T-17), and reports how the session ended exactly once (RFC 9539 §6 gap 5). Event-loop bound.
final class DoTSessionHandler: ChannelInboundHandler {
  typealias InboundIn = ByteBuffer
  typealias OutboundOut = ByteBuffer

  private struct Pending {
    var matcher: ResponseMatcher
    var originalID: UInt16
    var promise: EventLoopPromise<Message>
    var deadline: NIODeadline
  }

  /// Succeeds with the handshake details; fails with the `EncryptedFailure` that ended the attempt.
  let handshakeFuture: EventLoopFuture<TLSHandshakeInfo>
  private let handshakePromise: EventLoopPromise<TLSHandshakeInfo>
  private let handshakeTimeout: TimeAmount
  private let idleTimeout: TimeAmount
  private let onClose: @Sendable (EncryptedFailure) -> Void
  private let status: DoTConnectionStatus
  private let time: any TimeSource
  private let counters: EncryptedReplyCounters

  private var context: ChannelHandlerContext?
  private var pending: [UInt16: Pending] = [:]
  private var handshakeSettled = false
  private var handshakeDone = false
  private var closeReported = false
  private var closingLocally = false
  /// The first TLS failure seen (alert, protocol error, ALPN mismatch, handshake timeout).
  private var failure: EncryptedFailure?
  private var handshakeTimer: Scheduled<Void>?
  private var idleTimer: Scheduled<Void>?
  /// Fails queries whose timeout passed.
  private var deadlines = QueryDeadlineTimer()
  /// When the last outstanding query was answered (or the handshake finished); the idle timer
  /// closes the session `idleTimeout` after it.
  private var idleSince = NIODeadline.uptimeNanoseconds(0)

  /// `handshakePromise` is created by the caller so the outcome survives the pipeline being torn down.
  init(
    handshakePromise: EventLoopPromise<TLSHandshakeInfo>, handshakeTimeout: TimeAmount, idleTimeout: TimeAmount,
    status: DoTConnectionStatus, time: any TimeSource, counters: EncryptedReplyCounters = .init(),
    onClose: @escaping @Sendable (EncryptedFailure) -> Void
  ) {
    self.counters = counters
    self.handshakePromise = handshakePromise
    handshakeFuture = handshakePromise.futureResult
    self.handshakeTimeout = handshakeTimeout
    self.idleTimeout = idleTimeout
    self.status = status
    self.time = time
    self.onClose = onClose
  }

  func handlerAdded(context: ChannelHandlerContext) {
    self.context = context
    if context.channel.isActive { startHandshakeTimer(context: context) }
  }

  func handlerRemoved(context: ChannelHandlerContext) {
    // A connect that never succeeded ends here without channelInactive.
    settleHandshake(.failure(failure ?? .refused))
    self.context = nil
  }

  func channelActive(context: ChannelHandlerContext) {
    startHandshakeTimer(context: context)
    context.fireChannelActive()
  }

  func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
    if let completed = event as? DoTHandshakeCompleted {
      handshakeTimer?.cancel()
      handshakeTimer = nil
      guard !handshakeSettled else { return }
      handshakeDone = true
      status.markActive(at: time.now())
      settleHandshake(.success(completed.info))
      scheduleIdleTimer()
    } else {
      context.fireUserInboundEventTriggered(event)
    }
  }

  func errorCaught(context: ChannelHandlerContext, error: any Error) {
    if let tlsFailure = error as? EncryptedFailure {
      if failure == nil { failure = tlsFailure }
      settleHandshake(.failure(tlsFailure))
    } else if !handshakeDone {
      settleHandshake(.failure(.tlsError("transport error during the handshake: \(error)")))
    }
    // After the handshake a plain socket error (e.g. ECONNRESET) is classified by what is outstanding.
    context.close(promise: nil)
  }

  func channelInactive(context: ChannelHandlerContext) {
    handshakeTimer?.cancel()
    idleTimer?.cancel()
    status.markInactive()
    settleHandshake(.failure(failure ?? .tlsError("connection closed during the handshake")))
    if handshakeDone && !closeReported {
      closeReported = true
      let reason: EncryptedFailure
      switch failure {
      case .tlsAlert?, .tlsError?, .alpnMismatch?: reason = failure ?? .cleanClose
      default:
        reason = closingLocally || pending.isEmpty ? .cleanClose : .resetWithQueriesOutstanding
      }
      failAllPending(.closed)
      onClose(reason)
    }
    failAllPending(.closed)
    context.fireChannelInactive()
  }

  func channelRead(context: ChannelHandlerContext, data: NIOAny) {
    let bytes = Array(unwrapInboundIn(data).readableBytesView)
    status.touch(at: time.now())
    guard bytes.count >= 2 else {
      counters.dotMalformed.increment()
      return
    }
    let id = UInt16(bytes[0]) << 8 | UInt16(bytes[1])
    // Unmatched responses (unknown ID, other question) are dropped (T-13) and counted.
    guard let entry = pending[id], let result = entry.matcher.match(bytes) else {
      counters.dotMismatched.increment()
      return
    }
    pending[id] = nil
    switch result {
    case .failure(let error):
      counters.dotMalformed.increment()
      entry.promise.fail(TransportError.malformed(error))
    case .success(var response):
      if response.header.tc {
        entry.promise.fail(TransportError.truncated)  // T-19
      } else {
        response.header.id = entry.originalID
        entry.promise.succeed(response)
      }
    }
    if pending.isEmpty { scheduleIdleTimer() }
  }

  /// True while a query sent on this connection is unanswered (the server may hold its answer
  /// behind Nagle until it sees an ACK; see `QuickAckHandler`).
  var awaitingAnswers: Bool { !pending.isEmpty }

  /// Sends one query; the future completes with its response (original ID restored) or a `TransportError`.
  func send(_ query: Message, timeout: TimeAmount) -> EventLoopFuture<Message> {
    guard let context else { return handshakeFuture.eventLoop.makeFailedFuture(TransportError.closed) }
    let loop = context.eventLoop
    guard handshakeDone, !closingLocally, !closeReported, context.channel.isActive else {
      return loop.makeFailedFuture(TransportError.closed)
    }
    guard pending.count < Int(UInt16.max) else { return loop.makeFailedFuture(TransportError.io("no free message ID")) }
    var random = PooledRandom()
    var id = UInt16.random(in: .min ... .max, using: &random)
    while pending[id] != nil { id = UInt16.random(in: .min ... .max, using: &random) }
    var wireQuery = query
    wireQuery.header.id = id
    let bytes = DoTQueryPadding.paddedWire(wireQuery)
    let promise = loop.makePromise(of: Message.self)
    let deadline = loop.now + timeout
    pending[id] = Pending(
      matcher: ResponseMatcher(query: wireQuery), originalID: query.header.id, promise: promise, deadline: deadline)
    deadlines.cover(deadline, on: loop) { [self] in expireQueries() }
    status.touch(at: time.now())
    var buffer = context.channel.allocator.buffer(capacity: bytes.count + 2)
    buffer.writeLengthPrefixed(bytes)  // one write per message (T-11)
    context.writeAndFlush(wrapOutboundOut(buffer), promise: nil)
    return promise.futureResult
  }

  /// Sends close_notify and closes; the session then reports `.cleanClose`.
  func closeGracefully() {
    guard let context, !closingLocally else { return }
    closingLocally = true
    status.markInactive()
    context.close(promise: nil)
  }

  private func startHandshakeTimer(context: ChannelHandlerContext) {
    guard handshakeTimer == nil, !handshakeSettled else { return }
    handshakeTimer = context.eventLoop.assumeIsolated().scheduleTask(in: handshakeTimeout) { [self] in
      guard !handshakeSettled else { return }
      failure = .handshakeTimeout
      settleHandshake(.failure(.handshakeTimeout))
      self.context?.close(promise: nil)
    }
  }

  /// Notes that the session became idle. One timer serves every idle period instead of a cancel
  /// and a reschedule around every query (1.2 fewer malloc calls per cold resolution with
  /// encryption on); when it fires it closes the session if it has been idle for `idleTimeout`, re-arms for
  /// the rest otherwise, and does nothing while queries are outstanding (the next idle period arms it).
  private func scheduleIdleTimer() {
    guard let context, handshakeDone, pending.isEmpty else { return }
    idleSince = context.eventLoop.now
    if idleTimer == nil { armIdleTimer(context, in: idleTimeout) }
  }

  private func armIdleTimer(_ context: ChannelHandlerContext, in delay: TimeAmount) {
    idleTimer = context.eventLoop.assumeIsolated().scheduleTask(in: delay) { [self] in
      idleTimer = nil
      guard pending.isEmpty, let context = self.context else { return }
      let left = (idleSince + idleTimeout) - context.eventLoop.now
      if left <= .zero { closeGracefully() } else { armIdleTimer(context, in: left) }
    }
  }

  private func settleHandshake(_ result: Result<TLSHandshakeInfo, EncryptedFailure>) {
    guard !handshakeSettled else { return }
    handshakeSettled = true
    switch result {
    case .success(let info): handshakePromise.succeed(info)
    case .failure(let failure): handshakePromise.fail(failure)
    }
  }

  /// Fails the queries whose deadline passed and re-arms for the earliest one still outstanding.
  private func expireQueries() {
    deadlines.fired()
    guard let context else { return }
    let now = context.eventLoop.now
    let (expired, next) = QueryDeadlineTimer.expired(
      pending.lazy.map { ($0.key, $0.value.deadline) }, now: now)
    if let next { deadlines.cover(next, on: context.eventLoop) { [self] in expireQueries() } }
    for id in expired { pending.removeValue(forKey: id)?.promise.fail(TransportError.timeout) }
    if !expired.isEmpty, pending.isEmpty { scheduleIdleTimer() }
  }

  private func failAllPending(_ error: TransportError) {
    deadlines.cancel()
    let entries = pending.values
    pending = [:]
    for entry in entries { entry.promise.fail(error) }
  }
}
