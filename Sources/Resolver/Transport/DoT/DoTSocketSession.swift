import CLinuxEpoll
import NIOCore

#if canImport(Glibc)
  import Glibc
#endif

/// One DoT connection run by the exchange engine's thread: a non-blocking TCP socket in the engine's
/// epoll set, OpenSSL over memory BIOs (`TLSClientEngine`), the queries in a `DoTQueryBook`, and one
/// engine timer for the connect, handshake, query and idle deadlines (the idle one shortened by the
/// server's edns-tcp-keepalive, `TCPKeepalive`). Resolutions run on the same thread, so a query and
/// its answer need no thread switch (through a NIO channel each DoT exchange woke the event loop
/// thread and then the engine, two context switches on a loaded core).
///
/// Engine-thread confined: everything after `init` runs on the engine thread (`UDPExchangeEngine.execute`).
final class DoTSocketSession: @unchecked Sendable {
  typealias Answer = UnsafeContinuation<Result<Message, TransportError>, Never>
  typealias Handshake = UnsafeContinuation<Result<TLSHandshakeInfo, EncryptedFailure>, Never>

  private enum Phase { case connecting, handshaking, active, closed }

  private let engine: UDPExchangeEngine
  private let endpoint: ServerEndpoint
  private let tls: TLSClientEngine
  private let connectTimeout: UInt64
  private let handshakeTimeout: UInt64
  /// The idle timeout, shortened by the server's edns-tcp-keepalive (RFC 7828).
  private var keepalive: TCPKeepalive
  private let startedAt: Double
  private let time: any TimeSource
  private let status: DoTConnectionStatus
  private let counters: EncryptedReplyCounters
  private let onClose: @Sendable (EncryptedFailure) -> Void
  private let timerToken: UInt64

  private var fd: Int32 = -1
  private var phase = Phase.connecting
  private var book = DoTQueryBook<Answer>()
  private var handshake: Handshake?
  /// The first TLS failure seen (alert, protocol error, ALPN mismatch).
  private var failure: EncryptedFailure?
  private var closingLocally = false
  /// The server sent close_notify: an orderly close, whatever was still outstanding.
  private var peerSaidGoodbye = false
  /// `onClose` was already called: at a TIMEOUT of 0, when the session went out of use.
  private var endReported = false
  /// Takes no new queries and closes once its outstanding ones are answered (`finishAndClose`).
  private var finishing = false
  /// The smallest round trip the kernel saw on the connection by the end of its handshake,
  /// microseconds (TCP_INFO; 0 if unknown).
  private(set) var rttMicros: UInt32 = 0
  /// From when, by estimate, a query sent on it finds no earlier answer held at the server for
  /// Nagle (engine clock; `DoTLanes.clearAt`): a query sent at t reaches the server at t + ½ RTT,
  /// its answer the client at t + RTT, and the client's ACK of that answer the server at
  /// t + 1.5 RTT; an answer written before then waits for it, so a query sent from t + RTT on
  /// finds nothing held.
  private(set) var clearAt: UInt64 = 0
  /// An extra connection of a session (`DoTLanes`): its timeouts are `.laneTimeout`, and the
  /// first one retires it.
  private let isExtraLane: Bool
  /// An extra connection retired after a query on it timed out.
  private(set) var timedOut = false
  /// Replies that answered one of its queries.
  private(set) var answered = 0
  /// The server asked for the connection to close (edns-tcp-keepalive TIMEOUT of 0).
  var serverAskedToClose: Bool { keepalive.draining }
  /// The flush `engine.flushSoon` may defer to the end of the turn, made once (weak: the
  /// engine's list must not keep the session).
  private lazy var deferredFlush: @Sendable () -> Void = { [weak self] in self?.flush() }
  /// Ciphertext the kernel has not taken yet.
  private var output: [UInt8] = []
  /// Plaintext received and not yet split into messages.
  private var plaintext: [UInt8] = []
  /// Framed queries OpenSSL refused with WANT_READ, sent after the next read.
  private var unsent: [[UInt8]] = []
  /// True while EPOLLOUT is watched (output is waiting for socket space).
  private var watchingWritable = false
  /// The connect or handshake deadline while those run.
  private var phaseDeadline = UInt64.max
  /// When the whole attempt (TCP connect plus TLS handshake) must be done: `handshakeTimeout`
  /// after the start, the RFC 9539 `timeout` for an initiated handshake.
  private var attemptDeadline = UInt64.max
  /// When the last query was answered (or the handshake finished), in engine nanoseconds.
  private var idleSince: UInt64 = 0
  /// When the engine timer is set to fire (UInt64.max: not set).
  private var timerAt = UInt64.max
  /// A probe's connection until its handshake is done: its socket events wait for the engine's
  /// other work (`LowPriorityLane`, OE-10).
  private var lowPriority: Bool
  /// The timer's callback, made once (weak: the engine's timer table must not keep the session).
  private lazy var timerCallback: @Sendable () -> Void = { [weak self] in self?.timerFired() }
  /// recv's destination: a TLS record (16 KiB) and its header, allocated once per session.
  private let scratch = UnsafeMutableRawBufferPointer.allocate(byteCount: 16 * 1024 + 512, alignment: 16)

  init(
    engine: UDPExchangeEngine, endpoint: ServerEndpoint, tls: TLSClientEngine, connectTimeout: TimeAmount,
    handshakeTimeout: TimeAmount, idleTimeout: TimeAmount, startedAt: Double, time: any TimeSource,
    status: DoTConnectionStatus, counters: EncryptedReplyCounters, lowPriority: Bool = false,
    isExtraLane: Bool = false, onClose: @escaping @Sendable (EncryptedFailure) -> Void
  ) {
    self.engine = engine
    self.isExtraLane = isExtraLane
    self.lowPriority = lowPriority
    self.endpoint = endpoint
    self.tls = tls
    self.connectTimeout = UInt64(max(connectTimeout.nanoseconds, 0))
    self.handshakeTimeout = UInt64(max(handshakeTimeout.nanoseconds, 0))
    self.keepalive = TCPKeepalive(configuredIdle: UInt64(max(idleTimeout.nanoseconds, 0)))
    self.startedAt = startedAt
    self.time = time
    self.status = status
    self.counters = counters
    self.onClose = onClose
    timerToken = engine.newTimerToken()
  }

  deinit { scratch.deallocate() }

  /// Makes a session to `endpoint` and runs its TCP connect and TLS handshake on the engine
  /// thread; returns it once the handshake is done, or throws the attempt's failure. A CA bundle
  /// still being parsed at start-up is waited for first, suspended, not on a thread, and the
  /// attempt's time starts after it (local work, not the server's slowness).
  static func open(
    engine: UDPExchangeEngine, endpoint: ServerEndpoint, expectedName: DNSName?, context: DoTClientContext,
    resumption: [UInt8]?, connectTimeout: TimeAmount, handshakeTimeout: TimeAmount, idleTimeout: TimeAmount,
    status: DoTConnectionStatus, counters: EncryptedReplyCounters, lowPriority: Bool, isExtraLane: Bool = false,
    onTicket: @escaping @Sendable ([UInt8]) -> Void, onClose: @escaping @Sendable (EncryptedFailure) -> Void
  ) async throws(EncryptedFailure) -> (DoTSocketSession, TLSHandshakeInfo) {
    let verifyStore = await context.trust.store()
    let time = SystemTimeSource()
    let startedAt = time.now()
    let tls = try TLSClientEngine(
      context: context, expectedName: expectedName, ip: endpoint.ip, resumption: resumption,
      verifyStore: verifyStore, onTicket: onTicket)
    let session = DoTSocketSession(
      engine: engine, endpoint: endpoint, tls: tls, connectTimeout: connectTimeout,
      handshakeTimeout: handshakeTimeout, idleTimeout: idleTimeout, startedAt: startedAt, time: time,
      status: status, counters: counters, lowPriority: lowPriority, isExtraLane: isExtraLane, onClose: onClose)
    let result = await withUnsafeContinuation { continuation in engine.execute { session.start(continuation) } }
    return (session, try result.get())
  }

  /// Queries sent and not yet answered or timed out.
  var outstanding: Int { book.count }

  /// Whether a query sent now goes out: handshake done, not closing, not draining after the
  /// server's keepalive TIMEOUT of 0.
  var takesQueries: Bool { phase == .active && !closingLocally && !finishing && !keepalive.draining }

  // MARK: Operations (engine thread)

  /// Opens the TCP connection and runs the handshake; `done` gets the outcome exactly once.
  func start(_ done: Handshake) {
    handshake = done
    let family = endpoint.socketAddress.protocol.rawValue
    fd = socket(
      family, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_NONBLOCK.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
    // No socket, no local port, no epoll slot: this machine's failure, not the server's. A connect
    // the server or its network refused is `.refused`.
    guard fd >= 0 else { return failAttempt(.noSocket(errno)) }
    var one: Int32 = 1
    _ = setsockopt(fd, Int32(IPPROTO_TCP), TCP_NODELAY, &one, socklen_t(MemoryLayout<Int32>.size))
    let rc = endpoint.socketAddress.withSockAddr { sa, len in Glibc.connect(fd, sa, socklen_t(len)) }
    let connectError = rc == 0 ? 0 : errno
    guard rc == 0 || connectError == EINPROGRESS else { return failAttempt(.connectFailed(connectError)) }
    let events = EPOLLIN.rawValue | EPOLLOUT.rawValue | EPOLLRDHUP.rawValue
    guard engine.watchStream(fd, events: events, lowPriority: lowPriority, onEvents: { self.handle($0) }) else {
      return failAttempt(.notWatched(errno))
    }
    watchingWritable = true
    let now = UDPExchangeEngine.now()
    attemptDeadline = now &+ handshakeTimeout
    phaseDeadline = min(now &+ connectTimeout, attemptDeadline)
    cover(phaseDeadline)
    // A probe's ClientHello (its key share) waits for the engine's turn without other work:
    // EPOLLOUT reports the connection up.
    if rc == 0, !lowPriority { connected() }
  }

  /// Sends one query (padded, under a fresh ID); `done` gets the answer with the caller's ID, or the error.
  func send(_ query: Message, timeout: TimeAmount, _ done: Answer) {
    guard phase == .active, !closingLocally, !finishing else { return done.resume(returning: .failure(.closed)) }
    let now = UDPExchangeEngine.now()
    let deadline = now &+ UInt64(max(timeout.nanoseconds, 0))
    let waiting = book.count
    guard let framed = book.add(query, deadline: deadline, completion: done) else {
      return done.resume(returning: .failure(.io("no free message ID")))
    }
    clearAt = DoTLanes.clearAt(sendingAt: now, previous: clearAt, outstanding: waiting, rttMicros: rttMicros)
    status.touch(at: time.now())
    cover(deadline)
    // One TLS record per query, though a turn's records leave in one send: NSD 4.6.1 answers only
    // the first of several queries in one record (the rest sit decrypted in its OpenSSL buffer
    // while it waits for the socket), so one SSL_write for a turn's queries (about 7,900
    // instructions each, callgrind) cannot be saved (HISTORY.md, 2026-12-07 05:42).
    if !unsent.isEmpty || encrypt(framed) == .wantMore { unsent.append(framed) }
    engine.flushSoon(timerToken, deferredFlush)
  }

  /// Takes no new queries and closes cleanly once the outstanding ones are answered or time out
  /// (an extra lane whose session ended: its queries still get their answers).
  func finishAndClose() {
    guard phase == .active, !closingLocally else { return }
    finishing = true
    status.markInactive()
    if book.isEmpty { closeGracefully() }
  }

  /// Sends close_notify and closes; the session reports `.cleanClose`, outstanding queries fail with `.closed`.
  /// close_notify goes out if the socket takes it at once (it always has room on an idle connection);
  /// the close does not wait for socket space.
  func closeGracefully() {
    guard phase == .active, !closingLocally else { return }
    closingLocally = true
    status.markInactive()
    tls.shutdown()
    tls.drainOutput(into: &output)
    flush()
    end()
  }

  // MARK: Socket events

  private func handle(_ events: UInt32) {
    guard phase != .closed else { return }
    if phase == .connecting {
      guard events & (EPOLLOUT.rawValue | EPOLLERR.rawValue | EPOLLHUP.rawValue) != 0 else { return }
      var error: Int32 = 0
      var length = socklen_t(MemoryLayout<Int32>.size)
      let rc = getsockopt(fd, SOL_SOCKET, SO_ERROR, &error, &length)
      // ECONNREFUSED, EHOSTUNREACH, ENETUNREACH (ICMP) and any other failure to establish TCP.
      guard rc == 0, error == 0 else { return failAttempt(.refused) }
      return connected()
    }
    // Read first: answers that came before a reset are delivered before a failed send ends the session.
    if events & (EPOLLIN.rawValue | EPOLLRDHUP.rawValue | EPOLLHUP.rawValue | EPOLLERR.rawValue) != 0 {
      readAvailable(peerClosed: events & (EPOLLRDHUP.rawValue | EPOLLHUP.rawValue | EPOLLERR.rawValue) != 0)
    }
    if events & EPOLLOUT.rawValue != 0, phase != .closed { flush() }
  }

  private func connected() {
    phase = .handshaking
    quickAck()
    // The handshake gets what is left of the attempt: a slow connect does not buy it more time.
    phaseDeadline = attemptDeadline
    cover(phaseDeadline)
    advanceHandshake()
    flush()
  }

  /// Reads what the socket has (up to 16 reads), hands it to OpenSSL, then ends the session on EOF
  /// or an error. `peerClosed`: epoll reported the peer's FIN or an error, so reading goes on to
  /// the EOF in this turn (the session then ends before the answers' tasks run, and their next
  /// queries reconnect instead of going out on a closing socket).
  private func readAvailable(peerClosed: Bool) {
    var ended: String? = nil
    // At most 16 reads of 16 KiB per wake-up (epoll is level-triggered: the rest waits for the next
    // turn), so one busy server cannot hold the engine thread.
    reading: for _ in 0..<16 where phase != .closed {
      let count = recv(fd, scratch.baseAddress, scratch.count, 0)
      if count > 0 {
        tls.feed(UnsafeRawBufferPointer(rebasing: scratch.prefix(count)))
        // A short read emptied the socket: another recv would only say EAGAIN. Epoll is
        // level-triggered, so what arrives meanwhile (or an EOF) is reported on the next turn.
        if count < scratch.count, !peerClosed { break reading }
        continue reading
      }
      if count == 0 {
        ended = "connection closed"
        break reading
      }
      switch errno {
      case EAGAIN, EWOULDBLOCK: break reading
      case EINTR: continue reading
      case let e:
        ended = "recv: \(UDPExchangeEngine.errorText(e))"
        break reading
      }
    }
    // Data that came before the FIN or error is used first.
    switch phase {
    case .handshaking: advanceHandshake()
    case .active: readPlaintext()
    case .connecting, .closed: break
    }
    flush()
    if let ended, phase != .closed { return transportEnded(ended) }
    // The server may hold an answer behind Nagle until it sees an ACK: while one is outstanding,
    // ACK at once. With nothing outstanding the ACK rides on the next query.
    if phase == .active, !book.isEmpty { quickAck() }
  }

  private func advanceHandshake() {
    switch tls.handshake() {
    case .wantMore: tls.drainOutput(into: &output)
    case .failed(let failure): fail(failure)
    case .closeNotify: fail(.tlsError("close_notify during the handshake"))
    case .done:
      tls.drainOutput(into: &output)
      let info = tls.handshakeInfo(handshakeMs: (time.now() - startedAt) * 1000)
      if let alpn = info.alpn, alpn != TLSClientEngine.alpnProtocol { return fail(.alpnMismatch(alpn)) }
      phase = .active
      phaseDeadline = .max
      // Queries go over it now: its events are as urgent as any other's.
      if lowPriority {
        lowPriority = false
        engine.setStreamPriority(fd, lowPriority: false)
      }
      idleSince = UDPExchangeEngine.now()
      cover(idleSince &+ keepalive.idleTimeout)
      rttMicros = kernelRTT()
      status.markActive(at: time.now())
      handshake?.resume(returning: .success(info))
      handshake = nil
      // Application data or tickets may have arrived with the server's last flight.
      readPlaintext()
    }
  }

  private func readPlaintext() {
    let step = tls.read(into: &plaintext)
    if !plaintext.isEmpty { deliverMessages() }
    guard phase == .active else { return }
    switch step {
    case .wantMore, .done:
      // Writes refused with WANT_READ may go now; SSL_read may also have queued output (KeyUpdate).
      while let first = unsent.first, encrypt(first) != .wantMore { unsent.removeFirst() }
      tls.drainOutput(into: &output)
    case .closeNotify:
      peerSaidGoodbye = true
      tls.shutdown()
      tls.drainOutput(into: &output)
      flush()
      end()
    case .failed(let failure):
      fail(failure)
    }
  }

  /// Splits the plaintext into messages (RFC 7766 framing, split or coalesced) and completes their queries.
  private func deliverMessages() {
    var start = 0
    while plaintext.count - start >= 2 {
      let length = Int(plaintext[start]) << 8 | Int(plaintext[start + 1])
      guard plaintext.count - start - 2 >= length else { break }
      let message = Array(plaintext[(start + 2)..<(start + 2 + length)])
      start += 2 + length
      status.touch(at: time.now())
      switch book.receive(message) {
      case .short: counters.dotMalformed.increment()
      case .unmatched: counters.dotMismatched.increment()
      case .answered(let done, let result):
        answered += 1
        switch result {
        case .failure(.malformed): counters.dotMalformed.increment()
        case .success(let reply): noteKeepalive(reply)
        case .failure: break
        }
        done.resume(returning: result)
        if book.isEmpty {
          idleSince = UDPExchangeEngine.now()
          cover(idleSince &+ keepalive.idleTimeout)
        }
      }
    }
    plaintext.removeFirst(start)
    // T-21: after a TIMEOUT of 0 the connection closes once the outstanding answers are in.
    if keepalive.draining || finishing, book.isEmpty { closeGracefully() }
  }

  /// Takes the server's edns-tcp-keepalive from a reply (T-21, T-22). After a TIMEOUT of 0 the
  /// session is out of use and its end is reported at once, as a clean close (the server asked
  /// for it, so however the connection ends later is not held against the server): the next
  /// query opens a new connection, whose state is not disturbed by this one's end. Queries
  /// already outstanding, or handed this session just before, still get their answers here.
  private func noteKeepalive(_ reply: Message) {
    let wasDraining = keepalive.draining
    keepalive.noteReply(reply)
    guard keepalive.draining, !wasDraining else { return }
    status.markInactive()
    endReported = true
    onClose(.cleanClose)
  }

  // MARK: Output

  /// Encrypts one framed query into `output`.
  private func encrypt(_ framed: [UInt8]) -> TLSClientEngine.Step {
    let step = tls.write(framed)
    switch step {
    case .done, .closeNotify: tls.drainOutput(into: &output)
    case .wantMore: break
    case .failed(let failure): fail(failure)
    }
    return step
  }

  /// Writes the waiting ciphertext; what the kernel does not take waits for EPOLLOUT.
  private func flush() {
    guard fd >= 0, phase != .connecting else { return }
    var sent = 0
    while sent < output.count {
      let n = output.withUnsafeBytes { bytes -> Int in
        guard let base = bytes.baseAddress else { return 0 }
        return Glibc.send(fd, base + sent, bytes.count - sent, Int32(MSG_NOSIGNAL))
      }
      if n > 0 {
        sent += n
        continue
      }
      let e = errno
      if n < 0, e == EINTR { continue }
      if n < 0, e == EAGAIN || e == EWOULDBLOCK { break }
      output.removeAll()
      // The read side sees the same error or EOF; end here in case it never does.
      if phase != .closed { transportEnded("send: \(UDPExchangeEngine.errorText(e))") }
      return
    }
    if sent > 0 { output.removeFirst(sent) }
    let wantWritable = !output.isEmpty
    if wantWritable != watchingWritable, phase != .closed {
      watchingWritable = wantWritable
      let base = EPOLLIN.rawValue | EPOLLRDHUP.rawValue
      engine.modifyStream(fd, events: wantWritable ? base | EPOLLOUT.rawValue : base)
    }
  }

  /// The kernel's smallest RTT sample of the connection in microseconds (`tcpi_min_rtt`, Linux
  /// 4.6 on; not inflated by a delayed ACK or the server's handshake work), its smoothed RTT on
  /// an older kernel, 0 if neither can be read. Glibc's `tcp_info` stops before `tcpi_min_rtt`,
  /// so the kernel's longer struct is read into a buffer.
  private func kernelRTT() -> UInt32 {
    let minRTTOffset = 148  // linux/tcp.h: after tcpi_notsent_bytes
    let rttOffset = MemoryLayout<tcp_info>.offset(of: \.tcpi_rtt) ?? 68
    var buffer = [UInt8](repeating: 0, count: 256)
    var length = socklen_t(buffer.count)
    guard getsockopt(fd, Int32(IPPROTO_TCP), TCP_INFO, &buffer, &length) == 0 else { return 0 }
    let offset = Int(length) >= minRTTOffset + 4 ? minRTTOffset : rttOffset
    guard Int(length) >= offset + 4 else { return 0 }
    return buffer.withUnsafeBytes { $0.loadUnaligned(fromByteOffset: offset, as: UInt32.self) }
  }

  private func quickAck() {
    var one: Int32 = 1
    _ = setsockopt(fd, Int32(IPPROTO_TCP), Int32(TCP_QUICKACK), &one, socklen_t(MemoryLayout<Int32>.size))
  }

  // MARK: Timer

  /// Makes sure the session's timer fires by `deadline`.
  private func cover(_ deadline: UInt64) {
    guard deadline < timerAt else { return }
    timerAt = deadline
    engine.setTimer(timerToken, at: deadline, timerCallback)
  }

  private func timerFired() {
    timerAt = .max
    let now = UDPExchangeEngine.now()
    switch phase {
    case .connecting, .handshaking:
      guard now >= phaseDeadline else { return cover(phaseDeadline) }
      failAttempt(phase == .connecting ? .tcpTimeout : .handshakeTimeout)
    case .active:
      let expired = book.expire(now: now)
      // The session is idle from the last query's end, answered or not.
      if !expired.isEmpty, book.isEmpty { idleSince = now }
      for done in expired { done.resume(returning: .failure(isExtraLane ? .laneTimeout : .timeout)) }
      if isExtraLane, !expired.isEmpty {
        // Retired: its other queries may still be answered (their timers stay covered below).
        timedOut = true
        finishAndClose()
        guard phase == .active else { return }
      }
      if book.isEmpty {
        if keepalive.draining || finishing { return closeGracefully() }
        let idleEnd = idleSince &+ keepalive.idleTimeout
        if now >= idleEnd { return closeGracefully() }
        cover(idleEnd)
      }
      if let next = book.nextDeadline { cover(next) }
    case .closed: break
    }
  }

  // MARK: Endings

  /// A TLS failure: the alert OpenSSL queued goes out, then the session ends.
  private func fail(_ failure: EncryptedFailure) {
    guard phase != .closed else { return }
    if self.failure == nil { self.failure = failure }
    tls.drainOutput(into: &output)
    flush()
    if phase == .active { end() } else { failAttempt(failure) }
  }

  /// EOF or a socket error.
  private func transportEnded(_ reason: String) {
    if phase == .active { return end() }
    failAttempt(failure ?? .tlsError(phase == .handshaking ? "\(reason) during the handshake" : reason))
  }

  /// Ends an attempt that never completed its handshake: `start`'s continuation gets the failure.
  private func failAttempt(_ failure: EncryptedFailure) {
    guard phase != .closed else { return }
    closeSocket()
    handshake?.resume(returning: .failure(failure))
    handshake = nil
  }

  /// Ends a session that completed its handshake and reports how, exactly once.
  private func end() {
    guard phase != .closed else { return }
    // The server's close_notify is an orderly close (OE-30: its idle timeout, load shedding) even
    // when it crossed a query on the wire; a bare FIN or RST with queries waiting is not (OE-29).
    let reason = EncryptedFailure.dotSessionEnd(
      failure: failure, closedLocally: closingLocally || peerSaidGoodbye, outstanding: !book.isEmpty)
    closeSocket()
    for done in book.removeAll() { done.resume(returning: .failure(.closed)) }
    if !endReported { onClose(reason) }
  }

  private func closeSocket() {
    phase = .closed
    status.markInactive()
    engine.clearTimer(timerToken)
    timerAt = .max
    guard fd >= 0 else { return }
    engine.unwatchStream(fd)
    Glibc.close(fd)
    fd = -1
  }
}
