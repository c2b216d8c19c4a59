#if canImport(Glibc)
  import CLinuxEpoll
  import Glibc
  import NIOCore

  /// Serves one UDP address from the upstream engine's thread (`UDPExchangeEngine.watch`): vector
  /// reads (recvmmsg) into reused buffers, packet-cache hits written in place into reused send
  /// buffers and sent with one sendmmsg per read batch. Everything else takes the full path
  /// (`QueryProcessor`) in a task on that same thread, and its response is sent where it ends.
  ///
  /// Exists because NIO's per-datagram work (a `SocketAddress` with its `inet_ntop` text, the
  /// envelope, the pipeline, a response `ByteBuffer`, the pending-writes queue) cost more CPU than
  /// the cache lookup itself. Access control, rate limiting, counters and the query log are those
  /// of the NIO path (`FastPath`, `QueryProcessor`).
  ///
  /// Bound to a wildcard address (0.0.0.0, ::), it reads each datagram's destination (IP_PKTINFO,
  /// IPV6_PKTINFO) and sends the answer from that address: otherwise the kernel picks the source
  /// by route, and a client that asked another of the host's addresses drops the answer as coming
  /// from a stranger (dig: "reply from unexpected source").
  final class UDPSocketLoop: @unchecked Sendable {
    /// Datagrams per recvmmsg/sendmmsg.
    static let batch = 32
    /// Bytes per receive and send slot (as the NIO path's 4 KiB receive slices; responses on the
    /// fast path are at most `ResponseBuilder.ourUDPPayloadSize`).
    static let slotSize = 4096
    /// Batches read per readable event before the engine looks at its other sockets and jobs.
    static let batchesPerTurn = 4

    private let fd: Int32
    private let processor: QueryProcessor
    /// The packet cache's side; nil without one (every query takes the full path).
    private let fastPath: FastPath?
    private let calls: MMsgCalls
    /// Open until `stop`; full-path responses are sent under it so none goes to a closed or reused fd.
    private let open = StateLock(true)
    /// Full-path responses made on the engine thread while more jobs were queued there, sent
    /// together (`sendAnswers`) once the engine ran them: a burst wakes the client's reader once,
    /// not once per answer. Not accepting once `stop` began (responses are then sent at once).
    private let answers = StateLock(
      (queued: [(response: [UInt8], client: RawClientAddress, source: ReplySource?)](), accepting: true))

    // Reused memory, touched only on the engine thread (freed in deinit, once the engine dropped
    // its watcher and with it the last reference).
    private let receiveBuffers: UnsafeMutableRawPointer
    private let sendBuffers: UnsafeMutableRawPointer
    private let names: UnsafeMutablePointer<sockaddr_storage>
    private let receiveVectors: UnsafeMutablePointer<iovec>
    private let sendVectors: UnsafeMutablePointer<iovec>
    private let receiveMessages: UnsafeMutablePointer<MMsgHdr>
    private let sendMessages: UnsafeMutablePointer<MMsgHdr>
    /// Control-message space per slot (`sotto_reply_source_space`), and the slots' buffers: set
    /// only when bound to a wildcard address (datagrams carry their destination, answers leave
    /// from it).
    private let controlSpace = sotto_reply_source_space()
    private let receiveControl: UnsafeMutableRawPointer?
    private let sendControl: UnsafeMutableRawPointer?
    /// Full-path queries whose answer has not gone yet, and whether the watch's engine timer is
    /// set: one still unanswered `answerDeadline` after it came gets SERVFAIL (`ResolutionWatch`).
    private let watch = StateLock((queries: ResolutionWatch<WatchedQuery>(), timerSet: false))
    private let watchTimer = UDPExchangeEngine.shared.newTimerToken()
    /// Nanoseconds a full-path query may wait for its answer (0: not watched).
    private let answerDeadline: UInt64

    /// A watched query: what the listener needs to answer it SERVFAIL itself.
    struct WatchedQuery: Sendable {
      let raw: [UInt8]
      let client: RawClientAddress
      let source: ReplySource?
      /// When it came, engine-clock nanoseconds.
      let began: UInt64
    }

    /// The responses `sendAnswers` is sending (swapped with `answers`; engine thread only).
    private var answersSending: [(response: [UInt8], client: RawClientAddress, source: ReplySource?)] = []
    /// Client addresses of the full-path responses in `sendAnswers`.
    private let answerNames: UnsafeMutablePointer<sockaddr_storage>

    /// Binds a UDP socket to `address` and starts serving it; nil when this system lacks
    /// recvmmsg/sendmmsg or the engine thread (the caller then uses the NIO channel).
    /// `answerDeadline`: seconds a full-path query may wait for its answer (0: not watched).
    static func start(
      _ address: SocketAddress, processor: QueryProcessor, fastPath: FastPath?, answerDeadline: Double = 0
    ) throws -> UDPSocketLoop? {
      guard let calls = MMsgCalls.shared else { return nil }
      let family: Int32
      let wildcard: Bool
      switch address {
      case .v4(let a):
        family = AF_INET
        wildcard = a.address.sin_addr.s_addr == 0
      case .v6(let a):
        family = AF_INET6
        wildcard = withUnsafeBytes(of: a.address.sin6_addr) { $0.allSatisfy { $0 == 0 } }
      default: return nil
      }
      let fd = socket(
        family,
        Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_NONBLOCK.rawValue) | Int32(SOCK_CLOEXEC.rawValue),
        0)
      guard fd >= 0 else { throw IOError(errnoCode: errno, reason: "socket") }
      let bound = address.withSockAddr { sa, len in Glibc.bind(fd, sa, socklen_t(len)) }
      guard bound == 0 else {
        let code = errno
        close(fd)
        throw IOError(errnoCode: code, reason: "bind")
      }
      if wildcard, !Self.askForDestinations(fd, family: family) {
        let code = errno
        close(fd)
        throw IOError(errnoCode: code, reason: "setsockopt IP_PKTINFO on a wildcard address")
      }
      let loop = UDPSocketLoop(
        fd: fd, processor: processor, fastPath: fastPath, calls: calls, answerDeadline: answerDeadline,
        repliesFromDestination: wildcard)
      guard
        UDPExchangeEngine.shared.watch(
          fd, onReadable: { loop.drain() }, afterJobs: { loop.sendAnswers() })
      else {
        close(fd)
        return nil
      }
      return loop
    }

    /// IP_PKTINFO on an IPv4 socket, IPV6_RECVPKTINFO on an IPv6 one (which also reports IPv4
    /// on a dual-stack socket, v4-mapped): every datagram then carries its destination.
    private static func askForDestinations(_ fd: Int32, family: Int32) -> Bool {
      var on: Int32 = 1
      let size = socklen_t(MemoryLayout<Int32>.size)
      guard family == AF_INET6 else { return setsockopt(fd, Int32(IPPROTO_IP), IP_PKTINFO, &on, size) == 0 }
      return setsockopt(fd, Int32(IPPROTO_IPV6), IPV6_RECVPKTINFO, &on, size) == 0
    }

    private init(
      fd: Int32, processor: QueryProcessor, fastPath: FastPath?, calls: MMsgCalls, answerDeadline: Double,
      repliesFromDestination: Bool
    ) {
      self.fd = fd
      self.answerDeadline = answerDeadline > 0 ? UInt64(min(answerDeadline, 3600) * 1e9) : 0
      self.processor = processor
      self.fastPath = fastPath
      self.calls = calls
      let n = Self.batch
      receiveBuffers = .allocate(byteCount: n * Self.slotSize, alignment: 16)
      sendBuffers = .allocate(byteCount: n * Self.slotSize, alignment: 16)
      names = .allocate(capacity: n)
      names.initialize(repeating: sockaddr_storage(), count: n)
      answerNames = .allocate(capacity: n)
      answerNames.initialize(repeating: sockaddr_storage(), count: n)
      receiveVectors = .allocate(capacity: n)
      sendVectors = .allocate(capacity: n)
      receiveMessages = .allocate(capacity: n)
      sendMessages = .allocate(capacity: n)
      receiveControl = repliesFromDestination ? .allocate(byteCount: n * controlSpace, alignment: 16) : nil
      sendControl = repliesFromDestination ? .allocate(byteCount: n * controlSpace, alignment: 16) : nil
      for i in 0..<n {
        receiveVectors[i] = iovec(
          iov_base: receiveBuffers + i * Self.slotSize, iov_len: Self.slotSize)
        sendVectors[i] = iovec(iov_base: sendBuffers + i * Self.slotSize, iov_len: 0)
        var r = MMsgHdr()
        r.hdr.msg_name = UnsafeMutableRawPointer(names + i)
        r.hdr.msg_namelen = socklen_t(MemoryLayout<sockaddr_storage>.size)
        r.hdr.msg_iov = receiveVectors + i
        r.hdr.msg_iovlen = 1
        if let receiveControl {
          r.hdr.msg_control = receiveControl + i * controlSpace
          r.hdr.msg_controllen = controlSpace
        }
        receiveMessages[i] = r
        var s = MMsgHdr()
        s.hdr.msg_iov = sendVectors + i
        s.hdr.msg_iovlen = 1
        sendMessages[i] = s
      }
    }

    deinit {
      receiveBuffers.deallocate()
      sendBuffers.deallocate()
      names.deallocate()
      answerNames.deallocate()
      receiveVectors.deallocate()
      sendVectors.deallocate()
      receiveMessages.deallocate()
      sendMessages.deallocate()
      receiveControl?.deallocate()
      sendControl?.deallocate()
    }

    /// Stops serving (no read is under way once the engine dropped the socket) and closes it.
    func stop() async {
      answers.withLock { $0.accepting = false }
      // Sends what was queued (the engine's last `afterJobs` call), then stops reading.
      await UDPExchangeEngine.shared.unwatch(fd)
      UDPExchangeEngine.shared.clearTimer(watchTimer)
      open.withLock { isOpen in
        guard isOpen else { return }
        isOpen = false
        close(fd)
      }
    }

    /// Reads and serves what is queued (on the engine thread, when the socket is readable), at
    /// most `batchesPerTurn` batches: the engine looks at its other sockets before the rest.
    private func drain() {
      let n = Self.batch
      let storageSize = socklen_t(MemoryLayout<sockaddr_storage>.size)
      for _ in 0..<Self.batchesPerTurn {
        // Nothing (EAGAIN), EINTR or a socket error: epoll reports the socket again if need be.
        let received = calls.recv(
          fd, UnsafeMutableRawPointer(receiveMessages), UInt32(n), Int32(MSG_DONTWAIT), nil)
        guard received > 0 else { return }
        var out = 0
        for i in 0..<Int(received) {
          serve(slot: i, length: Int(receiveMessages[i].len), out: &out)
          receiveMessages[i].hdr.msg_namelen = storageSize
          receiveMessages[i].hdr.msg_flags = 0
          if receiveControl != nil { receiveMessages[i].hdr.msg_controllen = controlSpace }
        }
        send(count: out)
        if received < n { return }
      }
    }

    /// Answers the datagram in receive slot `slot` into send slot `out` (then counted up) or hands
    /// it to the full path.
    @inline(__always) private func serve(slot: Int, length: Int, out: inout Int) {
      guard let client = RawClientAddress(names + slot) else { return }
      if QueryProcessor.isReflectorPort(client.port) { return processor.dropFromReflectorPort() }
      let source = receiveControl != nil ? ReplySource(receiveMessages + slot) : nil
      // Over the client's rate: no answer. (The address text is made only when a limit is set.)
      if processor.rateLimiter != nil, !processor.admit(client) { return }
      let query = UnsafeRawBufferPointer(
        start: receiveBuffers + slot * Self.slotSize, count: length)
      let dest = UnsafeMutableRawBufferPointer(
        start: sendBuffers + out * Self.slotSize, count: Self.slotSize)
      guard let fastPath else { return resolve(Array(query), from: client, to: source, learn: nil) }
      switch fastPath.lookup(query, from: client, into: dest) {
      case .hit(let size):
        sendVectors[out].iov_len = size
        sendMessages[out].hdr.msg_name = UnsafeMutableRawPointer(names + slot)
        sendMessages[out].hdr.msg_namelen = receiveMessages[slot].hdr.msg_namelen
        if let sendControl { source.write(into: sendMessages + out, control: sendControl + out * controlSpace) }
        out += 1
      case .miss(let fastQuery, let generation):
        resolve(Array(query), from: client, to: source, learn: fastQuery.map { ($0, generation) })
      }
    }

    /// The full path, as `UDPQueryHandler` takes it; the answer leaves from `source` when given.
    private func resolve(
      _ raw: [UInt8], from client: RawClientAddress, to source: ReplySource?, learn: (FastQuery, UInt64)?
    ) {
      let processor = self.processor
      let fastPath = self.fastPath
      let token = beginWatch(raw, from: client, to: source)
      // On the upstream engine's thread: its replies resume the resolution without a thread hop.
      UDPExchangeEngine.resolutions.run {
        // The answer goes out first (into the turn's burst when more jobs wait on the engine
        // thread); the packet cache and the monitor learn of it afterwards.
        await processor.process(raw, from: client, via: .udp) { response, replayable in
          guard self.endWatch(token), let response else { return }
          self.send(response, to: client, from: source)
          if replayable, let fastPath, let (query, generation) = learn {
            UDPExchangeEngine.shared.afterSends { fastPath.learn(response, for: query, generation: generation) }
          }
        }
      }
    }

    // MARK: The watch on overdue answers

    /// Watches a query going to the full path (engine thread, where `drain` runs); its token, 0
    /// when not watched.
    private func beginWatch(_ raw: [UInt8], from client: RawClientAddress, to source: ReplySource?) -> UInt64 {
      guard answerDeadline > 0 else { return 0 }
      let now = TurnClock.engine.now()
      let deadline = now &+ answerDeadline
      let (token, setTimer) = watch.withLock { w -> (UInt64, Bool) in
        let token = w.queries.begin(
          WatchedQuery(raw: raw, client: client, source: source, began: now), deadline: deadline)
        defer { w.timerSet = true }
        return (token, !w.timerSet)
      }
      if setTimer { setWatchTimer(at: deadline) }
      return token
    }

    /// The query's processing ended; false when it was answered as overdue meanwhile (its answer
    /// is then dropped and the late end logged).
    private func endWatch(_ token: UInt64) -> Bool {
      guard token != 0 else { return true }
      guard case .late(let query) = watch.withLock({ $0.queries.finish(token) }) else { return true }
      processor.noteLateEnd(
        from: query.client.description, tookMs: (UDPExchangeEngine.now() &- query.began) / 1_000_000)
      return false
    }

    private func setWatchTimer(at deadline: UInt64) {
      UDPExchangeEngine.shared.setTimer(watchTimer, at: deadline) { [weak self] in self?.answerOverdue() }
    }

    /// The watch's timer (engine thread): answers every overdue query SERVFAIL.
    private func answerOverdue() {
      let now = UDPExchangeEngine.now()
      let (overdue, next) = watch.withLock { w in
        let taken = w.queries.takeOverdue(now: now)
        w.timerSet = taken.next != nil
        return taken
      }
      if let next { setWatchTimer(at: next) }
      for query in overdue {
        let waited = (now &- query.began) / 1_000_000
        if let answer = processor.overdueAnswer(
          to: query.raw, from: query.client.description, waitedMs: waited, via: .udp)
        {
          send(answer, to: query.client, from: query.source)
        }
      }
    }

    /// Sends the first `count` send slots (one sendmmsg, more if the kernel takes fewer).
    private func send(count: Int) {
      var first = 0
      while first < count {
        let sent = calls.send(
          fd, UnsafeMutableRawPointer(sendMessages + first), UInt32(count - first), 0)
        if sent > 0 {
          first += Int(sent)
        } else if sent < 0, errno == EINTR {
          continue
        } else {
          // This datagram cannot be sent (send buffer full, client unreachable): skip it, as NIO
          // does, and count it.
          processor.counters.noteSendFailure(errno, logger: processor.logger)
          first += 1
        }
      }
    }

    /// Sends one full-path response unless the loop was stopped: on the engine thread with more
    /// jobs queued, after they ran (`sendAnswers`); otherwise at once.
    private func send(_ response: [UInt8], to client: RawClientAddress, from source: ReplySource?) {
      if UDPExchangeEngine.shared.sendsWaitForTurn,
        answers.withLock({ a in
          guard a.accepting else { return false }
          a.queued.append((response, client, source))
          return true
        })
      {
        return
      }
      open.withLock { isOpen in
        guard isOpen else { return }
        sendNow(response, to: client, from: source)
      }
    }

    private func sendNow(_ response: [UInt8], to client: RawClientAddress, from source: ReplySource?) {
      let sent = response.withUnsafeBytes { bytes in
        client.withSockAddr { sa, len -> Int in
          guard source != nil else { return sendto(fd, bytes.baseAddress, bytes.count, 0, sa, socklen_t(len)) }
          // sendmsg only reads the iovec's bytes.
          var vector = iovec(iov_base: UnsafeMutableRawPointer(mutating: bytes.baseAddress), iov_len: bytes.count)
          var message = msghdr()
          message.msg_name = UnsafeMutableRawPointer(mutating: sa)
          message.msg_namelen = socklen_t(len)
          return withUnsafeMutablePointer(to: &vector) { v in
            message.msg_iov = v
            message.msg_iovlen = 1
            return withUnsafeTemporaryAllocation(byteCount: controlSpace, alignment: 16) { control in
              withUnsafeMutablePointer(to: &message) { m in
                if let buffer = control.baseAddress { source.write(into: m, control: buffer) }
                return sendmsg(fd, m, 0)
              }
            }
          }
        }
      }
      if sent < 0 { processor.counters.noteSendFailure(errno, logger: processor.logger) }
    }

    /// Sends the queued full-path responses, up to `batch` per sendmmsg (on the engine thread,
    /// between two drains, so the send slots are free).
    private func sendAnswers() {
      answers.withLock { swap(&$0.queued, &answersSending) }
      guard !answersSending.isEmpty else { return }
      defer { answersSending.removeAll(keepingCapacity: true) }
      open.withLock { isOpen in
        guard isOpen else { return }
        var out = 0
        for (response, client, source) in answersSending {
          // A response larger than a send slot goes alone (a sockaddr always fits the storage).
          guard response.count <= Self.slotSize else {
            sendNow(response, to: client, from: source)
            continue
          }
          client.withSockAddr { sa, len in
            UnsafeMutableRawPointer(answerNames + out).copyMemory(from: sa, byteCount: len)
            sendMessages[out].hdr.msg_namelen = socklen_t(len)
          }
          response.withUnsafeBytes {
            (sendBuffers + out * Self.slotSize).copyMemory(
              from: $0.baseAddress ?? UnsafeRawPointer(sendBuffers), byteCount: $0.count)
          }
          sendVectors[out].iov_len = response.count
          sendMessages[out].hdr.msg_name = UnsafeMutableRawPointer(answerNames + out)
          if let sendControl { source.write(into: sendMessages + out, control: sendControl + out * controlSpace) }
          out += 1
          if out == Self.batch {
            send(count: out)
            out = 0
          }
        }
        send(count: out)
      }
    }
  }

  /// Where a datagram to a wildcard-bound socket was addressed, for its answer's source address
  /// (IP_PKTINFO / IPV6_PKTINFO).
  struct ReplySource: @unchecked Sendable {
    let raw: sotto_reply_source

    /// From a received message's control data; nil when it carried no destination.
    init?(_ message: UnsafeMutablePointer<MMsgHdr>) {
      let found = sotto_reply_source_read(message.pointee.hdr.msg_control, message.pointee.hdr.msg_controllen)
      guard found.family != 0 else { return nil }
      raw = found
    }
  }

  extension Optional where Wrapped == ReplySource {
    /// Points `message`'s control data at `control` holding this source, or clears it for none.
    func write(into message: UnsafeMutablePointer<MMsgHdr>, control: UnsafeMutableRawPointer) {
      write(into: &message.pointee.hdr, control: control)
    }

    func write(into message: UnsafeMutablePointer<msghdr>, control: UnsafeMutableRawPointer) {
      let length =
        self.map { source in withUnsafePointer(to: source.raw) { sotto_reply_source_write($0, control) } } ?? 0
      message.pointee.msg_control = length > 0 ? control : nil
      message.pointee.msg_controllen = length
    }
  }

  /// `struct mmsghdr` of <sys/socket.h>, which Glibc's Swift module does not export.
  struct MMsgHdr {
    var hdr = msghdr()
    var len: UInt32 = 0
  }

  /// recvmmsg and sendmmsg, looked up in the C library (not exported by Glibc's Swift module).
  struct MMsgCalls: @unchecked Sendable {
    /// The `struct mmsghdr *` arguments are raw (a Swift struct is not representable in C).
    typealias Receive =
      @convention(c) (Int32, UnsafeMutableRawPointer?, UInt32, Int32, UnsafeMutableRawPointer?) ->
      Int32
    typealias Send = @convention(c) (Int32, UnsafeMutableRawPointer?, UInt32, Int32) -> Int32

    let recv: Receive
    let send: Send

    /// Nil if either is missing or `MMsgHdr` does not have the C layout (64 bytes on LP64).
    static let shared: MMsgCalls? = {
      guard MemoryLayout<MMsgHdr>.stride == 64, MemoryLayout<MMsgHdr>.offset(of: \.len) == 56,
        let handle = dlopen(nil, RTLD_NOW),
        let r = dlsym(handle, "recvmmsg"), let s = dlsym(handle, "sendmmsg")
      else { return nil }
      return MMsgCalls(
        recv: unsafeBitCast(r, to: Receive.self), send: unsafeBitCast(s, to: Send.self))
    }()
  }

  extension RawClientAddress {
    /// The address recvmmsg wrote, or nil for a family other than IPv4/IPv6.
    init?(_ storage: UnsafePointer<sockaddr_storage>) {
      switch Int32(storage.pointee.ss_family) {
      case AF_INET: self = .v4(UnsafeRawPointer(storage).load(as: sockaddr_in.self))
      case AF_INET6: self = .v6(UnsafeRawPointer(storage).load(as: sockaddr_in6.self))
      default: return nil
      }
    }
  }
#endif
