import NIOCore
import NIOPosix

#if canImport(Glibc)
  import Glibc
#endif

/// One pooled TCP connection: its outstanding queries by ID, and whether it takes more.
/// Thread-safe: queries come from any thread, replies on the channel's event loop.
final class Do53TCPConnection: Sendable {
  private struct Waiter {
    let token: UInt64
    let matcher: ResponseMatcher
    let promise: EventLoopPromise<Message>
  }

  private struct State {
    /// Outstanding queries by message ID, waiting for their answer.
    var waiting: [UInt16: Waiter] = [:]
    /// IDs reserved or outstanding (T-13: unique on the connection).
    var ids: Set<UInt16> = []
    var nextToken: UInt64 = 0
    /// False once it takes no new queries (ended, retired, idle).
    var usable = true
    /// True once its close was started.
    var closing = false
    /// Why it ended (a failed connect's error, `.closed`), once it has.
    var endedWith: TransportError?
    /// The idle close scheduled while nothing is outstanding.
    var idleTimer: Scheduled<Void>?
    /// The server's edns-tcp-keepalive, from its last answer: how long the connection may idle.
    var keepalive: TCPKeepalive
    /// When its last query was done, while it has none outstanding.
    var idleSince: NIODeadline?
  }

  enum Reservation { case reserved, idInFlight, full, unusable }

  let eventLoop: any EventLoop
  let channel: EventLoopFuture<any Channel>
  let idleTimeout: TimeAmount
  let mismatches: Counter
  /// Counts this connection once if it is taken out of use for a timeout, an unmatched frame or
  /// the server's keepalive TIMEOUT of 0 (the pool's `retired`).
  let retirements: Counter
  /// The number of this machine's addresses when it was opened (`LocalAddressWatch`).
  let addressGeneration: UInt64
  /// The pool's idle time for a connection falling idle now (shorter under pressure).
  private let idleTime: @Sendable () -> TimeAmount
  private let onEnd: @Sendable (Do53TCPConnection) -> Void
  private let state: StateLock<State>

  init(
    eventLoop: any EventLoop, channel: EventLoopFuture<any Channel>, idleTimeout: TimeAmount, mismatches: Counter,
    retirements: Counter, addressGeneration: UInt64 = 0, idleTime: (@Sendable () -> TimeAmount)? = nil,
    onEnd: @escaping @Sendable (Do53TCPConnection) -> Void
  ) {
    self.eventLoop = eventLoop
    self.retirements = retirements
    self.addressGeneration = addressGeneration
    self.channel = channel
    self.idleTimeout = idleTimeout
    self.mismatches = mismatches
    self.idleTime = idleTime ?? { idleTimeout }
    self.onEnd = onEnd
    state = StateLock(State(keepalive: TCPKeepalive(configuredIdle: UInt64(max(idleTimeout.nanoseconds, 0)))))
    channel.whenFailure { [self] error in
      self.ended(Self.connectFailure(error))
    }
  }

  /// Takes a place for one more query with message ID `id`.
  func reserve(id: UInt16, limit: Int) -> Reservation {
    let (result, timer) = state.withLock { s -> (Reservation, Scheduled<Void>?) in
      guard s.usable else { return (.unusable, nil) }
      guard !s.ids.contains(id) else { return (.idInFlight, nil) }
      guard s.ids.count < limit else { return (.full, nil) }
      s.ids.insert(id)
      s.idleSince = nil
      defer { s.idleTimer = nil }
      return (.reserved, s.idleTimer)
    }
    timer?.cancel()
    return result
  }

  /// Whether it still takes new queries.
  var isUsable: Bool { state.withLock { $0.usable } }

  /// When it fell idle, if it takes queries and has none outstanding.
  func idleSince() -> NIODeadline? {
    state.withLock { s in s.usable && s.ids.isEmpty ? s.idleSince : nil }
  }

  /// Takes no new queries; closes once its outstanding ones are done.
  func retire() {
    markOneOff()
    closeIfDone()
  }

  /// Takes no new queries (its reserved ones still go); closed by their release. Safe under the
  /// pool's lock.
  func markOneOff() {
    state.withLock { $0.usable = false }
  }

  /// Sends `bytes` (its ID reserved) and waits for the reply `matcher` accepts, the timeout or
  /// the connection's end. A timeout retires the connection when `timeoutRetires`.
  func exchange(_ bytes: [UInt8], matcher: ResponseMatcher, timeout: TimeAmount, timeoutRetires: Bool = true)
    async throws(TransportError) -> Message
  {
    let promise = eventLoop.makePromise(of: Message.self)
    // Registered even on a retired connection (its place was reserved while it took queries);
    // not on one that ended: that fails at once with what ended it.
    let registered = state.withLock { s -> Result<UInt64, TransportError> in
      if let endedWith = s.endedWith { return .failure(endedWith) }
      s.nextToken &+= 1
      s.waiting[matcher.id] = Waiter(token: s.nextToken, matcher: matcher, promise: promise)
      return .success(s.nextToken)
    }
    let token: UInt64
    switch registered {
    case .success(let t): token = t
    case .failure(let error):
      release(token: nil, id: matcher.id, timedOut: false)
      promise.fail(error)
      throw error
    }
    let timer = eventLoop.scheduleTask(in: timeout) { promise.fail(TransportError.timeout) }
    // A loop shutting down fails the timer instead of running it: the query must not wait forever.
    timer.futureResult.whenFailure { error in
      if let e = error as? EventLoopError, case .cancelled = e { return }
      promise.fail(TransportError.closed)
    }
    channel.whenSuccess { ch in
      var buffer = ch.allocator.buffer(capacity: bytes.count + 2)
      buffer.writeLengthPrefixed(bytes)
      ch.writeAndFlush(buffer, promise: nil)
    }
    do {
      let reply = try await Do53Transport.await(promise.futureResult)
      timer.cancel()
      release(token: token, id: matcher.id, timedOut: false)
      return reply
    } catch {
      timer.cancel()
      release(token: token, id: matcher.id, timedOut: timeoutRetires && error == .timeout)
      throw error
    }
  }

  /// The query's place is free again; a timed-out one retires the connection (a server that
  /// let one query go unanswered gets the next on a new connection). With nothing outstanding,
  /// a retired connection closes now, a usable one after its idle time without queries (the
  /// pool's, shorter under pressure, or the server's keepalive's if sooner).
  private func release(token: UInt64?, id: UInt16, timedOut: Bool) {
    let idle = state.withLock { s -> Bool in
      if let token, s.waiting[id]?.token == token { s.waiting[id] = nil }
      s.ids.remove(id)
      if timedOut, s.usable {
        s.usable = false
        retirements.increment()
      }
      guard s.ids.isEmpty && s.usable else { return false }
      s.idleSince = .now()
      return true
    }
    if idle { scheduleIdleClose() }
    closeIfDone()
  }

  /// One timer per connection: a later idle period replaces an earlier one's. Its length: the
  /// pool's idle time now (T-17, less under pressure), or the server's keepalive's if sooner.
  private func scheduleIdleClose() {
    let pool = UInt64(max(idleTime().nanoseconds, 0))
    let idle = state.withLock { min($0.keepalive.idleTimeout, pool) }
    let timer = eventLoop.scheduleTask(in: .nanoseconds(Int64(clamping: idle))) { [weak self] in
      guard let self else { return }
      let idleOut = self.state.withLock { s -> Bool in
        guard s.ids.isEmpty, s.usable else { return false }
        s.usable = false
        return true
      }
      if idleOut { self.closeIfDone() }
    }
    let cancel = state.withLock { s -> Scheduled<Void>? in
      // A query came meanwhile: it keeps the connection; no idle close.
      guard s.ids.isEmpty, s.usable else { return timer }
      defer { s.idleTimer = timer }
      return s.idleTimer
    }
    cancel?.cancel()
  }

  /// Closes it if it takes no queries and has none outstanding.
  private func closeIfDone() {
    let close = state.withLock { s -> Bool in
      guard !s.usable, s.ids.isEmpty, !s.closing else { return false }
      s.closing = true
      return true
    }
    guard close else { return }
    onEnd(self)
    channel.whenSuccess { $0.close(promise: nil) }
  }

  /// A frame from the server: completes the query it answers (and takes its keepalive, T-21,
  /// T-22); one that answers none is counted and retires the connection.
  func deliver(_ bytes: [UInt8]) {
    let id = bytes.count >= 2 ? UInt16(bytes[0]) << 8 | UInt16(bytes[1]) : nil
    let found = state.withLock { s -> (EventLoopPromise<Message>, Result<Message, WireError>)? in
      if let id, let waiter = s.waiting[id], let result = waiter.matcher.match(bytes) {
        s.waiting[id] = nil  // a second answer to it is unmatched
        if case .success(let reply) = result {
          s.keepalive.noteReply(reply)
          // TIMEOUT 0: the server wants the connection closed once its queries are answered.
          if s.keepalive.draining, s.usable {
            s.usable = false
            retirements.increment()
          }
        }
        return (waiter.promise, result)
      }
      if s.usable { retirements.increment() }
      s.usable = false
      return nil
    }
    guard let (promise, result) = found else {
      mismatches.increment()
      closeIfDone()
      return
    }
    switch result {
    case .success(let message): promise.succeed(message)
    case .failure(let error): promise.fail(TransportError.malformed(error))
    }
  }

  /// The connection ended or failed: it leaves the pool, then its outstanding queries fail with
  /// `error` (so that their one retry finds another connection).
  func ended(_ error: TransportError) {
    let (waiting, timer) = state.withLock { s -> ([Waiter], Scheduled<Void>?) in
      s.usable = false
      s.closing = true
      if s.endedWith == nil { s.endedWith = error }
      defer {
        s.waiting = [:]
        s.idleTimer = nil
      }
      return (Array(s.waiting.values), s.idleTimer)
    }
    timer?.cancel()
    onEnd(self)
    for waiter in waiting { waiter.promise.fail(error) }
  }

  /// A failed connect as the exchange reports it (as a one-off connection's did).
  static func connectFailure(_ error: any Error) -> TransportError {
    if let e = error as? ChannelError, case .connectTimeout = e { return .timeout }
    // No socket or local port for the connection (EMFILE, EADDRNOTAVAIL, ...): this machine's.
    if let e = error as? IOError, TransportError.isLocal(errno: e.errnoCode) { return .io("TCP: \(e.description)") }
    return .unreachable("\(error)")
  }

  /// An error on an established connection: a reset or broken pipe is the server's close
  /// crossing our queries (RFC 7766 §6.2.4: sent again once), anything else unreachable.
  static func streamFailure(_ error: any Error) -> TransportError {
    if let e = error as? IOError, e.errnoCode == ECONNRESET || e.errnoCode == EPIPE { return .closed }
    return .unreachable("\(error)")
  }
}

/// Hands a pooled connection's frames to it, and its end.
final class Do53TCPHandler: ChannelInboundHandler, Sendable {
  typealias InboundIn = ByteBuffer
  let connection: Do53TCPConnection

  init(connection: Do53TCPConnection) { self.connection = connection }

  func channelRead(context: ChannelHandlerContext, data: NIOAny) {
    connection.deliver(Array(unwrapInboundIn(data).readableBytesView))
  }

  func channelInactive(context: ChannelHandlerContext) {
    connection.ended(.closed)
  }

  func errorCaught(context: ChannelHandlerContext, error: any Error) {
    connection.ended(Do53TCPConnection.streamFailure(error))
    context.close(promise: nil)
  }
}
