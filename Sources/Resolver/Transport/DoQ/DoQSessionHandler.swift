import NIOCore

#if canImport(Glibc)
  import Glibc
#elseif canImport(Darwin)
  import Darwin
#endif

/// Drives one DoQ connection on its datagram channel: feeds datagrams and ngtcp2 timers to the engine,
/// sends what it writes, runs one query per stream (T-24..T-27), settles the handshake and reports how
/// the session ended exactly once. Event-loop bound; the engine is only touched here.
final class DoQSessionHandler: ChannelInboundHandler {
  typealias InboundIn = AddressedEnvelope<ByteBuffer>
  typealias OutboundOut = ByteBuffer

  private struct Pending {
    var query: Message
    var wire: [UInt8]
    var promise: EventLoopPromise<Message>
    var deadline: NIODeadline
    var streamID: Int64?
    var early: Bool
  }

  /// RFC 9250 §4.3 application error codes.
  enum ErrorCode {
    static let noError: UInt64 = 0x0
    static let internalError: UInt64 = 0x1
    static let protocolError: UInt64 = 0x2
    static let requestCancelled: UInt64 = 0x3
    static let excessiveLoad: UInt64 = 0x4
  }

  /// Succeeds with the handshake details; fails with the `EncryptedFailure` that ended the attempt.
  let handshakeFuture: EventLoopFuture<TLSHandshakeInfo>
  private let handshakePromise: EventLoopPromise<TLSHandshakeInfo>
  private let engine: QUICClientEngine
  private let handshakeTimeout: TimeAmount
  private let startedAt: Double
  private let time: any TimeSource
  private let status: DoTConnectionStatus
  private let counters: EncryptedReplyCounters
  private let onTicket: @Sendable ([UInt8]) -> Void
  private let onClose: @Sendable (EncryptedFailure) -> Void

  private var context: ChannelHandlerContext?
  private var pending: [UInt64: Pending] = [:]
  private var byStream: [Int64: UInt64] = [:]
  /// Queries waiting for stream credit, in arrival order.
  private var waiting: [UInt64] = []
  private var nextToken: UInt64 = 0
  private var handshakeSettled = false
  private var handshakeDone = false
  private var terminated = false
  private var closeRequested = false
  /// ngtcp2's expiry timer: a NIO scheduled callback to `expiryHandler`, so arming it allocates
  /// no task, promise or closure (a scheduled task per arming was ~6 allocations per resolution).
  private var expiryTimer: NIOScheduledCallback?
  /// The one callback handler of this session's expiry timer.
  private lazy var expiryHandler = ExpiryCallback(session: self)
  /// When `expiryTimer` fires.
  private var expiryDeadline: NIODeadline?
  private var backstopTimer: Scheduled<Void>?
  /// Cancels queries whose timeout passed.
  private var deadlines = QueryDeadlineTimer()

  init(
    eventLoop: any EventLoop, engine: QUICClientEngine, handshakeTimeout: TimeAmount, startedAt: Double,
    time: any TimeSource, status: DoTConnectionStatus, counters: EncryptedReplyCounters = .init(),
    onTicket: @escaping @Sendable ([UInt8]) -> Void, onClose: @escaping @Sendable (EncryptedFailure) -> Void
  ) {
    self.counters = counters
    handshakePromise = eventLoop.makePromise(of: TLSHandshakeInfo.self)
    handshakeFuture = handshakePromise.futureResult
    self.engine = engine
    self.handshakeTimeout = handshakeTimeout
    self.startedAt = startedAt
    self.time = time
    self.status = status
    self.onTicket = onTicket
    self.onClose = onClose
  }

  func handlerAdded(context: ChannelHandlerContext) {
    self.context = context
    // ngtcp2 enforces the handshake timeout itself; this backstop only covers a stalled loop.
    backstopTimer = context.eventLoop.assumeIsolated().scheduleTask(in: handshakeTimeout + .milliseconds(200)) {
      [self] in
      if !handshakeSettled { terminate(.handshakeTimeout) }
    }
  }

  func handlerRemoved(context: ChannelHandlerContext) {
    terminate(.tlsError("connection closed"))
    self.context = nil
  }

  /// Sends an early query (0-RTT when the resumption allows it), then the first flight.
  func start(earlyQuery: Message?) -> EventLoopFuture<Message>? {
    let early = earlyQuery.map { enqueue($0, timeout: handshakeTimeout * 2, early: true) }
    flush()
    return early
  }

  func channelRead(context: ChannelHandlerContext, data: NIOAny) {
    guard !terminated else { return }
    let envelope = unwrapInboundIn(data)
    let rv = engine.read(envelope.data)
    if rv < 0 {
      fatal(rv)
      return
    }
    if !handshakeSettled, engine.unusableDatagrams > 0 {
      // A non-QUIC reply (NSD's plain-DNS socket on UDP 853 answers an Initial with FORMERR): this
      // port does not speak QUIC. Fail the probe now instead of retransmitting until the timeout.
      terminate(.tlsError("no QUIC on this port (\(engine.unusableDatagrams) non-QUIC reply)"))
      return
    }
    if handshakeDone { status.touch(at: time.now()) }
    processEvents()
    flush()
  }

  func errorCaught(context: ChannelHandlerContext, error: any Error) {
    // A connected UDP socket reports ICMP port/host unreachable as ECONNREFUSED on the next read.
    // After the handshake it is ignored: QUIC's own loss recovery and idle timeout decide.
    if let io = error as? IOError, io.errnoCode == ECONNREFUSED {
      if !handshakeSettled { terminate(.refused) }
      return
    }
    // Any other socket error ends the session; after the handshake it is classified like DoT's resets.
    if !handshakeSettled {
      terminate(.tlsError("socket error: \(error)"))
    } else {
      terminate(pending.isEmpty ? .cleanClose : .resetWithQueriesOutstanding)
    }
  }

  func channelInactive(context: ChannelHandlerContext) {
    terminate(.tlsError("socket closed"))
    context.fireChannelInactive()
  }

  /// Sends one query on a new stream; the future completes with its response (caller's ID restored).
  func send(_ query: Message, timeout: TimeAmount) -> EventLoopFuture<Message> {
    guard handshakeDone, !terminated, !closeRequested else {
      return handshakeFuture.eventLoop.makeFailedFuture(TransportError.closed)
    }
    let future = enqueue(query, timeout: timeout, early: false)
    status.touch(at: time.now())
    flush()
    return future
  }

  /// Closes with DOQ_NO_ERROR once the handshake is confirmed (ngtcp2 would otherwise add a
  /// handshake-level close); `onClose(.cleanClose)` follows.
  func closeGracefully() {
    guard !terminated, !closeRequested else { return }
    closeRequested = true
    status.markInactive()
    if engine.handshakeConfirmed || !handshakeDone {
      sendCloseAndTerminate()
    } else {
      context?.eventLoop.assumeIsolated().scheduleTask(in: .milliseconds(500)) { [self] in sendCloseAndTerminate() }
    }
  }

  // MARK: queries

  private func enqueue(_ query: Message, timeout: TimeAmount, early: Bool) -> EventLoopFuture<Message> {
    let loop = handshakeFuture.eventLoop
    let token = nextToken
    nextToken += 1
    let promise = loop.makePromise(of: Message.self)
    let deadline = loop.now + timeout
    pending[token] = Pending(
      query: query, wire: DoQMessageFraming.queryStream(query), promise: promise, deadline: deadline,
      streamID: nil, early: early)
    deadlines.cover(deadline, on: loop) { [self] in expireQueries() }
    waiting.append(token)
    openStreams()
    return promise.futureResult
  }

  /// Opens streams for waiting queries until ngtcp2 runs out of stream credit.
  private func openStreams() {
    while let token = waiting.first {
      guard var entry = pending[token] else {
        waiting.removeFirst()
        continue
      }
      let id = engine.submit(entry.wire)
      if id == Int64(QUICClientEngine.Code.streamIDBlocked) { return }
      waiting.removeFirst()
      if id < 0 {
        pending[token] = nil
        entry.promise.fail(TransportError.io("cannot open a DoQ stream: \(QUICClientEngine.describe(Int32(id)))"))
        continue
      }
      entry.streamID = id
      entry.early = !handshakeDone
      pending[token] = entry
      byStream[id] = token
    }
  }

  private func finish(stream id: Int64, with result: Result<Message, TransportError>) {
    guard let token = byStream.removeValue(forKey: id), let entry = pending.removeValue(forKey: token) else {
      return
    }
    switch result {
    case .success(var response):
      response.header.id = entry.query.header.id
      entry.promise.succeed(response)
    case .failure(let error): entry.promise.fail(error)
    }
  }

  /// Cancels the streams of queries whose deadline passed (T-28), fails them, and re-arms for the
  /// earliest deadline still outstanding.
  private func expireQueries() {
    deadlines.fired()
    guard !terminated else { return }
    let now = handshakeFuture.eventLoop.now
    let (expired, next) = QueryDeadlineTimer.expired(
      pending.lazy.map { ($0.key, $0.value.deadline) }, now: now)
    if let next {
      deadlines.cover(next, on: handshakeFuture.eventLoop) { [self] in expireQueries() }
    }
    guard !expired.isEmpty else { return }
    var failed: [EventLoopPromise<Message>] = []
    var cancelled = false
    for token in expired {
      guard let entry = pending.removeValue(forKey: token) else { continue }
      if let id = entry.streamID {
        byStream[id] = nil
        engine.cancel(streamID: id, code: ErrorCode.requestCancelled)  // T-28
        cancelled = true
      }
      failed.append(entry.promise)
    }
    waiting.removeAll { pending[$0] == nil }
    if cancelled { flush() }
    for promise in failed { promise.fail(TransportError.timeout) }
  }

  // MARK: engine events

  private func processEvents() {
    while !terminated, let event = engine.nextEvent() {
      switch event {
      case .handshakeCompleted: handshakeCompleted()
      case .handshakeConfirmed:
        if closeRequested { sendCloseAndTerminate() }
      case .streamFinished(let id, let bytes):
        guard let token = byStream[id], let entry = pending[token] else { continue }
        let result = DoQMessageFraming.response(bytes, to: entry.query).mapError { TransportError.malformed($0) }
        if case .failure = result { counters.doqMalformed.increment() }
        finish(stream: id, with: result)
      case .streamReset(let id, let code):
        _ = code  // DOQ_INTERNAL_ERROR normally; the transaction is abandoned either way (T-29).
        if byStream[id] != nil { counters.doqResets.increment() }
        finish(stream: id, with: .failure(.closed))
      case .streamClosed(let id, _):
        finish(stream: id, with: .failure(.closed))
      case .streamOverflow(let id):
        if byStream[id] != nil { counters.doqMalformed.increment() }
        finish(stream: id, with: .failure(.malformed(.valueOutOfRange("DoQ response over 65535 octets"))))
      case .ticket(let blob): onTicket(blob)
      case .streamsAvailable: openStreams()
      case .earlyDataRejected: resendEarlyQueries()
      }
    }
  }

  private func handshakeCompleted() {
    backstopTimer?.cancel()
    let alpn = engine.alpn
    guard alpn == "doq" else {
      if let packet = engine.closePacket(applicationCode: ErrorCode.protocolError) { send(packet) }
      terminate(.alpnMismatch(alpn ?? "none"))
      return
    }
    handshakeDone = true
    status.markActive(at: time.now())
    let info = TLSHandshakeInfo(
      tlsVersion: engine.tlsVersion, alpn: alpn, resumed: engine.resumed, certificate: engine.certificate,
      handshakeMs: (time.now() - startedAt) * 1000, earlyDataAccepted: engine.earlyDataAccepted)
    handshakeSettled = true
    handshakePromise.succeed(info)
    openStreams()
  }

  /// Streams sent as 0-RTT were discarded by the server: send their queries again on new streams (T-7).
  private func resendEarlyQueries() {
    for (token, var entry) in pending where entry.early {
      if let id = entry.streamID { byStream[id] = nil }
      entry.streamID = nil
      entry.early = false
      pending[token] = entry
      waiting.append(token)
    }
    waiting.sort()
  }

  // MARK: I/O and timers

  private func flush() {
    guard let context, !terminated else { return }
    var wrote = false
    while true {
      switch engine.nextPacket() {
      case .packet(let packet):
        send(packet, flush: false)
        wrote = true
      case .idle:
        if wrote { context.flush() }
        armTimer()
        return
      case .error(let code):
        if wrote { context.flush() }
        fatal(code)
        return
      }
    }
  }

  private func send(_ packet: [UInt8], flush: Bool = true) {
    guard let context else { return }
    send(context.channel.allocator.buffer(bytes: packet), flush: flush)
  }

  private func send(_ buffer: ByteBuffer, flush: Bool = true) {
    guard let context else { return }
    context.write(wrapOutboundOut(buffer), promise: nil)
    if flush { context.flush() }
  }

  /// Keeps one timer armed for ngtcp2's next expiry. It runs after every flush, i.e. after every
  /// datagram in or query out; cancelling and scheduling a task each time cost more than the
  /// exchange itself on a busy connection. An armed timer is kept when it fires no later than the
  /// new expiry: firing early is harmless (ngtcp2 handles only what has expired, and the flush after
  /// it arms the timer again for the real expiry). Only an earlier expiry reschedules.
  private func armTimer() {
    guard let context, !terminated, let delay = engine.expiryDelay else {
      expiryTimer?.cancel()
      expiryTimer = nil
      expiryDeadline = nil
      return
    }
    let deadline = NIODeadline.now() + delay
    if expiryTimer != nil, let armed = expiryDeadline, armed <= deadline + Self.timerSlack { return }
    expiryTimer?.cancel()
    expiryDeadline = deadline
    // Throws only while the event loop shuts down; the session ends with it.
    expiryTimer = try? context.eventLoop.assumeIsolated()
      .scheduleCallback(at: deadline, handler: expiryHandler)
  }

  /// ngtcp2's expiry came: let it retransmit, acknowledge or time out, then send what it wrote.
  fileprivate func expiryFired() {
    expiryTimer = nil
    expiryDeadline = nil
    guard !terminated else { return }
    let rv = engine.handleExpiry()
    if rv < 0 {
      fatal(rv)
      return
    }
    processEvents()
    flush()
  }

  /// An armed expiry timer this much later than ngtcp2's new expiry is still kept.
  private static let timerSlack = TimeAmount.milliseconds(1)

  /// An ngtcp2 error ended the connection: classify it and tear down.
  private func fatal(_ code: Int32) {
    guard !terminated else { return }
    switch code {
    case QUICClientEngine.Code.draining, QUICClientEngine.Code.closing:
      terminate(DoQCloseClassifier.failure(for: engine.peerClose))
    case QUICClientEngine.Code.handshakeTimeout:
      // A plain-DNS service on the port (e.g. NSD answering FORMERR) replies, but never with QUIC.
      let junk = engine.unusableDatagrams
      terminate(junk > 0 ? .tlsError("no QUIC reply (\(junk) non-QUIC datagrams)") : .handshakeTimeout)
    case QUICClientEngine.Code.idleClose:
      terminate(.cleanClose)
    default:
      if let packet = engine.closePacket(applicationCode: 0, liberr: code) { send(packet) }
      let alert = engine.tlsAlert
      terminate(alert != 0 ? .tlsAlert("alert \(alert)") : .tlsError(QUICClientEngine.describe(code)))
    }
  }

  private func sendCloseAndTerminate() {
    guard !terminated else { return }
    if let packet = engine.closePacket(applicationCode: ErrorCode.noError) { send(packet) }
    terminate(.cleanClose)
  }

  /// Ends the session once: settles the handshake or reports `onClose`, fails every pending query.
  private func terminate(_ reason: EncryptedFailure) {
    guard !terminated else { return }
    terminated = true
    expiryTimer?.cancel()
    backstopTimer?.cancel()
    status.markInactive()
    if !handshakeSettled {
      handshakeSettled = true
      handshakePromise.fail(reason)
    } else if handshakeDone {
      onClose(reason)
    }
    let entries = pending.values
    pending = [:]
    byStream = [:]
    waiting = []
    deadlines.cancel()
    for entry in entries { entry.promise.fail(TransportError.closed) }
    context?.close(promise: nil)
  }
}

/// Calls its session back when the session's expiry timer fires. One per session, reused for every
/// arming; weak, so a timer still queued keeps no closed session alive.
private final class ExpiryCallback: NIOScheduledCallbackHandler {
  weak var session: DoQSessionHandler?

  init(session: DoQSessionHandler) { self.session = session }

  func handleScheduledCallback(eventLoop: some EventLoop) { session?.expiryFired() }
}
