import CLinuxEpoll
import NIOCore

#if canImport(Glibc)
  import Glibc
#endif

/// One DoQ connection run by the exchange engine's thread: a connected UDP socket in the engine's
/// epoll set feeding a `QUICClientEngine`, one query per stream (T-24..T-27), and one engine timer
/// for ngtcp2's expiry, the handshake backstop, query deadlines and a delayed close. Resolutions run
/// on the same thread, so a query and its answer need no thread switch.
///
/// Engine-thread confined: everything after `init` runs on the engine thread (`UDPExchangeEngine.execute`).
final class DoQSocketSession: @unchecked Sendable {
  typealias Answer = UnsafeContinuation<Result<Message, TransportError>, Never>
  typealias Handshake = UnsafeContinuation<Result<TLSHandshakeInfo, EncryptedFailure>, Never>

  /// Who waits for a query's answer: a task, or (the early query) a promise handed out by `connect`.
  enum Waiter {
    case task(Answer)
    case promise(EventLoopPromise<Message>)

    func finish(_ result: Result<Message, TransportError>) {
      switch self {
      case .task(let continuation): continuation.resume(returning: result)
      case .promise(let promise): promise.completeWith(result.mapError { $0 as any Error })
      }
    }
  }

  private struct Pending {
    var query: Message
    var wire: [UInt8]
    var waiter: Waiter
    var deadline: UInt64
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

  private let engine: UDPExchangeEngine
  private let fd: Int32
  private let quic: QUICClientEngine
  private let handshakeTimeout: UInt64
  private let startedAt: Double
  private let time: any TimeSource
  private let status: DoTConnectionStatus
  private let counters: EncryptedReplyCounters
  private let onTicket: @Sendable ([UInt8]) -> Void
  private let onClose: @Sendable (EncryptedFailure) -> Void
  private let timerToken: UInt64

  private var handshake: Handshake?
  private var pending: [UInt64: Pending] = [:]
  private var byStream: [Int64: UInt64] = [:]
  /// Queries waiting for stream credit, in arrival order.
  private var waiting: [UInt64] = []
  private var nextToken: UInt64 = 0
  private var handshakeSettled = false
  private var handshakeDone = false
  /// A probe's connection until its handshake is done: its socket events wait for the engine's
  /// other work (`LowPriorityLane`, OE-10).
  private var lowPriority: Bool
  private var terminated = false
  private var closeRequested = false
  /// Engine-clock deadlines (UInt64.max: none): ngtcp2's expiry, the handshake backstop, a delayed close.
  private var expiryAt = UInt64.max
  private var backstopAt = UInt64.max
  private var closeAt = UInt64.max
  /// When the engine timer is set to fire (UInt64.max: not set).
  private var timerAt = UInt64.max
  /// The flush `engine.flushSoon` may defer to the end of the turn, made once (weak: the
  /// engine's list must not keep the session).
  private lazy var deferredFlush: @Sendable () -> Void = { [weak self] in self?.flush() }
  private lazy var timerCallback: @Sendable () -> Void = { [weak self] in self?.timerFired() }
  /// Timers armed for a deadline at most `inlineExpiry` ahead, or already past (any thread may read
  /// it; for tests): each costs an engine turn at once.
  let imminentTimers = Counter()

  init(
    engine: UDPExchangeEngine, fd: Int32, quic: QUICClientEngine, handshakeTimeout: TimeAmount, startedAt: Double,
    time: any TimeSource, status: DoTConnectionStatus, counters: EncryptedReplyCounters, lowPriority: Bool = false,
    onTicket: @escaping @Sendable ([UInt8]) -> Void, onClose: @escaping @Sendable (EncryptedFailure) -> Void
  ) {
    self.engine = engine
    self.lowPriority = lowPriority
    self.fd = fd
    self.quic = quic
    self.handshakeTimeout = UInt64(max(handshakeTimeout.nanoseconds, 0))
    self.startedAt = startedAt
    self.time = time
    self.status = status
    self.counters = counters
    self.onTicket = onTicket
    self.onClose = onClose
    timerToken = engine.newTimerToken()
  }

  // MARK: Operations (engine thread)

  /// Watches the socket and sends the first flight, with `early` (the 0-RTT query) if given;
  /// `done` gets the handshake's outcome exactly once.
  func start(_ done: Handshake, early: (query: Message, timeout: TimeAmount, promise: EventLoopPromise<Message>)?) {
    handshake = done
    guard
      engine.watchStream(
        fd, events: EPOLLIN.rawValue, lowPriority: lowPriority, onEvents: { self.handle($0) })
    else {
      let code = errno
      Glibc.close(fd)
      terminated = true
      handshakeSettled = true
      handshake = nil
      early?.promise.fail(TransportError.closed)
      return done.resume(returning: .failure(.notWatched(code)))
    }
    // ngtcp2 enforces the handshake timeout itself; this backstop only covers a stalled engine.
    backstopAt = UDPExchangeEngine.now() &+ handshakeTimeout &+ 200_000_000
    cover(backstopAt)
    if let early { enqueue(early.query, timeout: early.timeout, waiter: .promise(early.promise), early: true) }
    flush()
  }

  /// Sends one query on a new stream; `done` gets the response (caller's ID restored) or the error.
  func send(_ query: Message, timeout: TimeAmount, _ done: Answer) {
    guard handshakeDone, !terminated, !closeRequested else { return done.resume(returning: .failure(.closed)) }
    enqueue(query, timeout: timeout, waiter: .task(done), early: false)
    status.touch(at: time.now())
    engine.flushSoon(timerToken, deferredFlush)
  }

  /// Closes with DOQ_NO_ERROR once the handshake is confirmed (ngtcp2 would otherwise add a
  /// handshake-level close); `onClose(.cleanClose)` follows.
  func closeGracefully() {
    guard !terminated, !closeRequested else { return }
    closeRequested = true
    status.markInactive()
    if quic.handshakeConfirmed || !handshakeDone {
      sendCloseAndTerminate()
    } else {
      closeAt = UDPExchangeEngine.now() &+ 500_000_000
      cover(closeAt)
    }
  }

  // MARK: Queries

  private func enqueue(_ query: Message, timeout: TimeAmount, waiter: Waiter, early: Bool) {
    let token = nextToken
    nextToken += 1
    let deadline = UDPExchangeEngine.now() &+ UInt64(max(timeout.nanoseconds, 0))
    pending[token] = Pending(
      query: query, wire: DoQMessageFraming.queryStream(query), waiter: waiter, deadline: deadline,
      streamID: nil, early: early)
    cover(deadline)
    waiting.append(token)
    openStreams()
  }

  /// Opens streams for waiting queries until ngtcp2 runs out of stream credit.
  private func openStreams() {
    while let token = waiting.first {
      guard let i = pending.index(forKey: token) else {
        waiting.removeFirst()
        continue
      }
      // The entry in place (a read would copy its query and wire, and writing it back hash again).
      let early = !handshakeDone
      let id = modify(&pending.values[i]) { entry -> Int64 in
        let id = quic.submit(entry.wire)
        if id >= 0 {
          entry.streamID = id
          entry.early = early
        }
        return id
      }
      if id == Int64(QUICClientEngine.Code.streamIDBlocked) { return }
      waiting.removeFirst()
      if id < 0 {
        let entry = pending.remove(at: i).value
        entry.waiter.finish(.failure(.io("cannot open a DoQ stream: \(QUICClientEngine.describe(Int32(id)))")))
        continue
      }
      byStream[id] = token
    }
  }

  /// The query on stream `id`, taken out of the books (nil if none: answered, cancelled or failed).
  private func take(stream id: Int64) -> Pending? {
    guard let token = byStream.removeValue(forKey: id) else { return nil }
    return pending.removeValue(forKey: token)
  }

  private func finish(stream id: Int64, with result: Result<Message, TransportError>) {
    guard let entry = take(stream: id) else { return }
    Self.complete(entry, with: result)
  }

  /// Hands the query's waiter its result, under the caller's message ID.
  private static func complete(_ entry: Pending, with result: Result<Message, TransportError>) {
    switch result {
    case .success(var response):
      response.header.id = entry.query.header.id
      entry.waiter.finish(.success(response))
    case .failure: entry.waiter.finish(result)
    }
  }

  /// Cancels the streams of queries whose deadline passed (T-28) and fails them.
  private func expireQueries(now: UInt64) {
    var expired: [Waiter] = []
    var cancelled = false
    for (token, entry) in pending where entry.deadline <= now {
      pending[token] = nil
      if let id = entry.streamID {
        byStream[id] = nil
        quic.cancel(streamID: id, code: ErrorCode.requestCancelled)  // T-28
        cancelled = true
      }
      expired.append(entry.waiter)
    }
    guard !expired.isEmpty else { return }
    waiting.removeAll { pending[$0] == nil }
    if cancelled { flush() }
    for waiter in expired { waiter.finish(.failure(.timeout)) }
    closeIfStreamsDangle()
  }

  /// T-39 (RFC 9250 §4.2 allows a cap): a server must answer a cancelled stream's STOP_SENDING
  /// with RESET_STREAM (RFC 9000 §3.5), so a stream still open `danglingAfter` its cancel is left
  /// dangling, and holds stream credit the server does not give back. Past `maxDanglingStreams`
  /// the connection is closed with DOQ_PROTOCOL_ERROR and reported as failed (the policy damps
  /// DoQ there, OE-29). Checked when queries time out, the only way streams come to dangle.
  private func closeIfStreamsDangle() {
    guard !terminated else { return }
    let dangling = quic.danglingStreams(olderThan: Self.danglingAfter)
    guard dangling > Self.maxDanglingStreams else { return }
    if let packet = quic.closePacket(applicationCode: ErrorCode.protocolError) { transmit(packet) }
    terminate(.danglingStreams(dangling))
  }

  /// Cancelled streams a connection may hold open past `danglingAfter` (T-39).
  static let maxDanglingStreams = 16
  /// How long after its cancel a stream counts as dangling (three PTOs where that is longer): many
  /// round trips, so that a burst of timeouts whose resets are on their way does not count.
  static let danglingAfter: UInt64 = 2_000_000_000

  // MARK: Engine events

  private func processEvents() {
    while !terminated, let event = quic.nextEvent() {
      // Consumed, so an answer's bytes reach the parser unshared (its prefix shifted out in place).
      switch consume event {
      case .handshakeCompleted: handshakeCompleted()
      case .handshakeConfirmed:
        if closeRequested { sendCloseAndTerminate() }
      case .streamFinished(let id, let bytes):
        guard let entry = take(stream: id) else { continue }
        let result = DoQMessageFraming.response(bytes, to: entry.query).mapError { TransportError.malformed($0) }
        if case .failure = result { counters.doqMalformed.increment() }
        Self.complete(entry, with: result)
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
    backstopAt = .max
    let alpn = quic.alpn
    guard alpn == "doq" else {
      if let packet = quic.closePacket(applicationCode: ErrorCode.protocolError) { transmit(packet) }
      return terminate(.alpnMismatch(alpn ?? "none"))
    }
    handshakeDone = true
    // Queries go over it now: its packets are as urgent as any other's.
    if lowPriority {
      lowPriority = false
      engine.setStreamPriority(fd, lowPriority: false)
    }
    // T-32 (RFC 9250 §5.5.1): new queries only while the server's last packet is well within
    // the idle timeout both ends agreed on (three quarters of it); later the server may have
    // dropped the connection silently, and a query on it would be lost.
    let idle = quic.idleTimeoutNanoseconds
    status.markActive(at: time.now(), reuseWithin: idle == 0 ? .infinity : 0.75 * Double(idle) / 1e9)
    let info = TLSHandshakeInfo(
      tlsVersion: quic.tlsVersion, alpn: alpn, resumed: quic.resumed, certificate: quic.certificate,
      handshakeMs: (time.now() - startedAt) * 1000, earlyDataAccepted: quic.earlyDataAccepted)
    handshakeSettled = true
    handshake?.resume(returning: .success(info))
    handshake = nil
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

  // MARK: Socket I/O

  /// Reads up to `maxDatagramsPerTurn` datagrams (epoll is level-triggered: the rest wait for the
  /// next turn, so one busy peer cannot hold the engine thread), in batches of the engine's shared
  /// reader (one recvmmsg each; a short batch means the socket is empty, no read to learn that),
  /// handling each one's events before the next is read, then sends what they produced in one go.
  private func handle(_ events: UInt32) {
    guard !terminated else { return }
    let reader = engine.datagramReader
    var read = 0
    reading: while read < Self.maxDatagramsPerTurn, !terminated {
      switch reader.read(fd) {
      case .empty: break reading
      case .failed(let e):
        socketError(e)
        break reading
      case .datagrams(let count, let drained):
        for index in 0..<count where !terminated {
          read += 1
          let rv = quic.read(reader.datagram(index))
          if rv < 0 {
            // Answers in the datagram that also closed the connection (ngtcp2 handles its frames
            // in order, then says DRAINING) are delivered before the rest fail.
            processEvents()
            return fatal(rv)
          }
          if !handshakeSettled, quic.unusableDatagrams > 0 {
            // A non-QUIC reply (NSD's plain-DNS socket on UDP 853 answers an Initial with FORMERR):
            // this port does not speak QUIC. Fail the probe now instead of retransmitting until the
            // timeout.
            return terminate(.tlsError("no QUIC on this port (\(quic.unusableDatagrams) non-QUIC reply)"))
          }
          // Before the next datagram: an answer followed by a fatal close is still delivered.
          processEvents()
        }
        if drained { break reading }
      }
    }
    guard read > 0, !terminated else { return }
    if handshakeDone { status.received(at: time.now()) }
    flush()
  }

  /// Datagrams read per wake-up at most.
  private static let maxDatagramsPerTurn = 64

  /// A connected UDP socket reports ICMP port/host unreachable as ECONNREFUSED: before the handshake
  /// the server is refused; after it QUIC's own loss recovery and idle timeout decide. Any other
  /// socket error ends the session.
  private func socketError(_ e: Int32) {
    if e == ECONNREFUSED {
      if !handshakeSettled { terminate(.refused) }
      return
    }
    if !handshakeSettled {
      terminate(.tlsError("socket error: \(UDPExchangeEngine.errorText(e))"))
    } else {
      terminate(pending.isEmpty ? .cleanClose : .resetWithQueriesOutstanding)
    }
  }

  /// Sends every packet ngtcp2 has ready, then sets the timer for its next expiry. An expiry due
  /// within `inlineExpiry` is handled here, once: after every packet written ngtcp2 paces the next
  /// one (`ngtcp2_conn_update_pkt_tx_time`), and that pacing deadline, microseconds ahead or past
  /// by the time the writes are done, counts as an expiry until `ngtcp2_conn_handle_expiry` clears
  /// it (which handles only what is due, so a few microseconds early is harmless). Left to the
  /// timer, it cost every DoQ query an engine turn of its own (an `epoll_wait` that returned at
  /// once, the timer's bookkeeping and the same handling): 1.0 timer firings per exchange, about
  /// 3,800 instructions (callgrind, `doq.test.`).
  private func flush() {
    guard !terminated else { return }
    var expiryHandled = false
    while true {
      var sendError: Int32 = 0
      let output = quic.nextPacket { packet in
        if Glibc.send(fd, packet.baseAddress, packet.count, Int32(MSG_NOSIGNAL)) < 0 { sendError = errno }
      }
      switch output {
      case .packet:
        // A full socket buffer drops the datagram: QUIC's loss recovery resends it.
        if sendError != 0, sendError != EAGAIN, sendError != EWOULDBLOCK, sendError != EINTR {
          socketError(sendError)
          if terminated { return }
        }
      case .idle:
        let delay = quic.expiryNanoseconds
        if delay <= Self.inlineExpiry, delay >= 0, !expiryHandled {
          expiryHandled = true
          let rv = quic.handleExpiry()
          if rv < 0 { return fatal(rv) }
          processEvents()
          if terminated { return }
          continue
        }
        expiryAt = delay < 0 ? .max : UDPExchangeEngine.now() &+ UInt64(delay)
        cover(expiryAt)
        return
      case .error(let code):
        return fatal(code)
      }
    }
  }

  /// Expiries this close (nanoseconds) are handled in `flush` instead of by the timer: the engine's
  /// precise wait has a timer slack of 50 µs anyway.
  static let inlineExpiry: Int64 = 50_000

  private func transmit(_ packet: [UInt8]) {
    _ = packet.withUnsafeBytes { Glibc.send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
  }

  // MARK: Timer

  /// Makes sure the session's timer fires by `deadline`.
  private func cover(_ deadline: UInt64) {
    guard deadline < timerAt, !terminated else { return }
    if deadline <= UDPExchangeEngine.now() &+ UInt64(Self.inlineExpiry) { imminentTimers.increment() }
    timerAt = deadline
    engine.setTimer(timerToken, at: deadline, timerCallback)
  }

  private func timerFired() {
    timerAt = .max
    guard !terminated else { return }
    let now = UDPExchangeEngine.now()
    if !handshakeSettled, now >= backstopAt { return terminate(.handshakeTimeout) }
    if now >= closeAt { return sendCloseAndTerminate() }
    expireQueries(now: now)
    if !terminated, now >= expiryAt {
      // ngtcp2's expiry came: let it retransmit, acknowledge or time out, then send what it wrote.
      let rv = quic.handleExpiry()
      if rv < 0 { return fatal(rv) }
      processEvents()
      flush()
    }
    guard !terminated else { return }
    cover(expiryAt)
    cover(backstopAt)
    cover(closeAt)
    // A closure, not `\.deadline`: a key path is applied through the runtime (swift_getAtKeyPath).
    if let next = pending.values.lazy.map({ $0.deadline }).min() { cover(next) }
  }

  // MARK: Endings

  /// An ngtcp2 error ended the connection: classify it and tear down.
  private func fatal(_ code: Int32) {
    guard !terminated else { return }
    switch code {
    case QUICClientEngine.Code.draining, QUICClientEngine.Code.closing:
      terminate(DoQCloseClassifier.failure(for: quic.peerClose))
    case QUICClientEngine.Code.handshakeTimeout:
      // A plain-DNS service on the port (e.g. NSD answering FORMERR) replies, but never with QUIC.
      let junk = quic.unusableDatagrams
      terminate(junk > 0 ? .tlsError("no QUIC reply (\(junk) non-QUIC datagrams)") : .handshakeTimeout)
    case QUICClientEngine.Code.idleClose:
      terminate(.cleanClose)
    default:
      if let packet = quic.closePacket(applicationCode: 0, liberr: code) { transmit(packet) }
      let alert = quic.tlsAlert
      terminate(alert != 0 ? .tlsAlert("alert \(alert)") : .tlsError(QUICClientEngine.describe(code)))
    }
  }

  private func sendCloseAndTerminate() {
    guard !terminated else { return }
    if let packet = quic.closePacket(applicationCode: ErrorCode.noError) { transmit(packet) }
    terminate(.cleanClose)
  }

  /// Ends the session once: settles the handshake or reports `onClose`, fails every pending query.
  private func terminate(_ reason: EncryptedFailure) {
    guard !terminated else { return }
    terminated = true
    engine.clearTimer(timerToken)
    timerAt = .max
    engine.unwatchStream(fd)
    Glibc.close(fd)
    status.markInactive()
    if !handshakeSettled {
      handshakeSettled = true
      handshake?.resume(returning: .failure(reason))
      handshake = nil
    } else if handshakeDone {
      onClose(reason)
    }
    let entries = pending.values
    pending = [:]
    byStream = [:]
    waiting = []
    for entry in entries { entry.waiter.finish(.failure(.closed)) }
  }
}
