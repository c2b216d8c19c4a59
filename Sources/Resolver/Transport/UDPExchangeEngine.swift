import CLinuxEpoll
import Foundation
import NIOCore
import Synchronization

#if canImport(Glibc)
  import Glibc
#endif

/// An entry the engine completes once its deadline (`UDPExchangeEngine.now()`) has passed.
private protocol EngineDeadline {
  var deadline: UInt64 { get }
}

/// Upstream Do53 UDP queries without a NIO channel each: every query gets its own connected,
/// non-blocking UDP socket (a fresh kernel-chosen random source port, R-31) that one epoll thread
/// per process watches; the first matching reply, an error or the deadline completes the waiting
/// query. The connected socket makes the kernel drop datagrams from any other address or port.
///
/// The same thread is also a task executor (`taskExecutor`): a resolution started with it as its
/// preference runs its jobs here, so sending a query, reading the reply and resuming the waiting
/// task happen on one thread, with no hand-off to the cooperative pool and back for each reply.
/// The listener's UDP sockets are watched by the same thread (`watch`, used by `UDPSocketLoop`),
/// so a client query, its resolution and its answer need no thread switch at all. The DoT and DoQ
/// sessions live here too (`watchStream`, timers, `execute`: `DoTSocketSession`, `DoQSocketSession`),
/// so an encrypted exchange needs none either.
final class UDPExchangeEngine: Sendable {
  /// The process's engine (one thread, started on first use).
  static let shared = UDPExchangeEngine()

  /// Long-lived tasks for the resolutions the listeners start: they prefer this executor and keep
  /// their task-allocator slabs from one resolution to the next (`TaskPool`).
  static let resolutions = TaskPool(executor: shared.taskExecutor, maxIdle: 128)

  /// Bytes read per datagram: the largest EDNS buffer size Sotto can advertise
  /// (`--edns-buffer-size`, at most 4096), so no reply Sotto asked for arrives cut.
  static let receiveSize = 4096

  private struct Pending: EngineDeadline {
    var continuation: UnsafeContinuation<Result<Message, TransportError>, Never>
    let matcher: ResponseMatcher
    let mismatches: Counter
    let suspicionThreshold: Int
    let deadline: UInt64
    var localMismatches = 0
  }

  /// A closure kept in the engine's tables. Wrapped in a struct because a bare closure as a
  /// dictionary or array element is stored reabstracted: every insertion and every read of one
  /// allocated a thunk (with encryption on, about four per cold resolution from the timers alone).
  private struct Call: Sendable {
    let run: @Sendable () -> Void
  }

  /// A stream socket's handler of its epoll event mask, wrapped for the same reason.
  private struct EventCall: Sendable {
    let run: @Sendable (UInt32) -> Void
    /// Handled only when the engine has nothing else to do (`LowPriorityLane`).
    var lowPriority: Bool
    /// Tells this stream from a later one on the same descriptor.
    let id: UInt64
  }

  /// A session timer: when (monotonic ns) and what to call.
  private struct EngineTimer: Sendable, EngineDeadline {
    let deadline: UInt64
    let fire: @Sendable () -> Void
  }

  private struct State {
    var pending: [Int32: Pending] = [:]
    /// No query in `pending` has a deadline before this (a lower bound, UInt64.max: none): the
    /// turn's `expire` and the engine's sleep read it instead of walking every query. Lowered as
    /// queries come, made exact again by the walk once it has passed.
    var pendingDueFrom = UInt64.max
    /// The deadline the engine thread sleeps until (UInt64.max: none); an earlier one wakes it.
    var sleepingUntil = UInt64.max
    /// True while the engine thread is (about to be) blocked in epoll_wait: only then does new
    /// work need a write to the eventfd.
    var asleep = false
    /// Jobs of tasks that prefer this executor, run in order by the engine thread.
    var jobs: [UnownedJob] = []
    /// True once the engine thread was started (epoll, eventfd and the thread were all created).
    var running = false
    /// Long-lived sockets (the listener's) and what to call when one is readable.
    var watchers: [Int32: Call] = [:]
    /// What to call for watched sockets once the queued jobs have run (sending what they queued).
    var afterJobs: [Int32: Call] = [:]
    /// Queries made on the engine thread while more jobs were queued, sent together once the
    /// queued jobs have run (`sendQueued`).
    var outbox: [(fd: Int32, bytes: [UInt8])] = []
    /// Closures to run on the engine thread (`execute`), each turn before the queued jobs.
    var closures: [Call] = []
    /// Bookkeeping the turn's jobs left for after its sends (`afterSends`).
    var afterSends: [Call] = []
    /// Stream sockets (DoT, DoQ) and what to call with their epoll events, on the engine thread.
    var streams: [Int32: EventCall] = [:]
    var lastStreamID: UInt64 = 0
    /// Closures to run on the engine thread when it has nothing else to do (`executeAtLowPriority`).
    var lowPriority: [Call] = []
    /// Flushes that sessions deferred to the end of this turn (`flushSoon`), one per session token.
    var owedFlushes: [UInt64: Call] = [:]
    /// Timers of engine-thread sessions by token.
    var timers: [UInt64: EngineTimer] = [:]
    /// No timer is due before this: `pendingDueFrom`'s bound for `timers`.
    var timersDueFrom = UInt64.max
    var lastTimerToken: UInt64 = 0

    /// Work queued for the engine's next turn: jobs, closures and what they left to send.
    var hasTurnWork: Bool {
      !jobs.isEmpty || !closures.isEmpty || !afterSends.isEmpty || !outbox.isEmpty || !owedFlushes.isEmpty
    }
  }

  /// Marks a watched socket in `epoll_event.data.u64` (the low 32 bits hold the fd).
  private static let watchTag: UInt64 = 1 << 32
  /// Marks a stream socket (`watchStream`) the same way.
  private static let streamTag: UInt64 = 1 << 33

  private let state = StateLock(State())
  /// The engine thread's `pthread_t` once it runs (0 before).
  private let thread = Atomic<UInt>(0)
  /// Jobs of the batch being run that have not started yet (engine thread only).
  private let jobsLeftInBatch = Atomic<Int>(0)
  /// Whether the engine is loaded, so that its sends wait for the turn (engine thread only).
  nonisolated(unsafe) private var load = EngineLoad()
  private let epollFD: Int32
  private let wakeFD: Int32
  /// Whether epoll_pwait2 works (Linux 5.11, not filtered out): false after its first failure.
  private let preciseWait = Atomic<Bool>(true)
  /// How many `executeAtLowPriority` closures wait: a turn without low-priority work takes no lock for it.
  private let lowPriorityQueued = Atomic<Int>(0)
  /// The DoQ sessions' receive buffers: they all read on the engine thread, one at a time.
  let datagramReader = DatagramBatchReader()

  private init() {
    epollFD = epoll_create1(Int32(EPOLL_CLOEXEC))
    wakeFD = eventfd(0, Int32(EFD_NONBLOCK) | Int32(EFD_CLOEXEC))
    guard epollFD >= 0, wakeFD >= 0 else { return }
    var ev = epoll_event()
    ev.events = EPOLLIN.rawValue
    ev.data.u64 = UInt64(UInt32(bitPattern: wakeFD))
    _ = epoll_ctl(epollFD, EPOLL_CTL_ADD, wakeFD, &ev)
    let engine = Unmanaged.passRetained(self).toOpaque()
    var thread = pthread_t()
    let rc = pthread_create(
      &thread, nil,
      { arg in
        guard let arg else { return nil }
        Unmanaged<UDPExchangeEngine>.fromOpaque(arg).takeRetainedValue().run()
        return nil
      }, engine)
    if rc == 0 {
      pthread_detach(thread)
      state.withLock { $0.running = true }
    } else {
      Unmanaged<UDPExchangeEngine>.fromOpaque(engine).release()
    }
  }

  /// The executor for resolutions that should run on the engine thread, or nil (the default
  /// executor) when the thread could not be started.
  var taskExecutor: (any TaskExecutor)? { state.withLock { $0.running } ? self : nil }

  /// A failed `send` of a query: out of buffers (ENOBUFS, EAGAIN) is this machine's, anything
  /// else (ICMP unreachable reported on the connected socket, ...) the network's or the server's.
  static func sendFailure(_ code: Int32) -> TransportError {
    let text = "send: \(errorText(code))"
    return TransportError.isLocal(errno: code) ? .io(text) : .unreachable(text)
  }

  /// Sends `bytes` from a new connected socket to `address` and waits until a reply matches
  /// (`matcher`), the socket reports an error, `threshold` mismatches arrived or `timeout` passed.
  nonisolated(nonsending) func exchange(
    _ bytes: [UInt8], to address: SocketAddress, matcher: ResponseMatcher, timeout: TimeAmount,
    mismatches: Counter,
    suspicionThreshold: Int
  ) async -> Result<Message, TransportError> {
    guard epollFD >= 0, wakeFD >= 0 else { return .failure(.io("UDP engine: epoll unavailable")) }
    let family = address.protocol.rawValue
    let fd = socket(
      family,
      Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_NONBLOCK.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
    guard fd >= 0 else { return .failure(.io("socket: \(Self.errorText(errno))")) }
    // no bind; connect() gives the socket a random ephemeral source port.
    let connected = address.withSockAddr { sa, len in connect(fd, sa, socklen_t(len)) }
    guard connected == 0 else {
      let e = errno
      close(fd)
      // No local port or buffer: this machine's; no route (ENETUNREACH, a prohibit route): the network's.
      let text = "connect: \(Self.errorText(e))"
      return .failure(TransportError.isLocal(errno: e) ? .io(text) : .unreachable(text))
    }
    // On the engine thread, with more jobs queued, the query waits in the outbox until they have
    // run, so a burst of queries reaches the authoritative servers together: a server is woken
    // once per burst (a cross-core wake-up costs more than the send) instead of once per query.
    // The last job of a turn sends at once (nothing would join it) unless the turn already queued
    // queries, which it must not overtake.
    let deferred = upstreamSendsWaitForTurn
    if !deferred {
      let sent = bytes.withUnsafeBytes { send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
      guard sent == bytes.count else {
        let e = errno
        close(fd)
        return .failure(Self.sendFailure(e))
      }
    }
    let deadline = Self.now() &+ UInt64(max(timeout.nanoseconds, 0))
    return await withUnsafeContinuation { continuation in
      // Inserted under the lock: the engine thread removes sockets under it too and alone closes
      // them, after removal, so this fd cannot be closed (and its number reused) before it is
      // watched, here or, for a query in the outbox, by the engine thread after its send.
      let wake = state.withLock { s -> Bool in
        s.pending[fd] = Pending(
          continuation: continuation, matcher: matcher, mismatches: mismatches,
          suspicionThreshold: suspicionThreshold,
          deadline: deadline)
        s.pendingDueFrom = min(s.pendingDueFrom, deadline)
        // A query in the outbox is watched once it is sent (`sendQueued`): the turn's sends do
        // not wait for the epoll_ctl calls, and epoll (level-triggered) still reports a reply
        // that came before.
        if deferred {
          s.outbox.append((fd, bytes))
        } else {
          watchReplies(fd)
        }
        guard s.asleep, deferred || deadline < s.sleepingUntil else { return false }
        s.asleep = false
        return true
      }
      if wake { _ = eventfd_write(wakeFD, 1) }
    }
  }

  /// Runs `body` once this turn's answers and queries are sent when called on the engine thread
  /// (bookkeeping a client need not wait for: the query log, the packet cache), else at once.
  func afterSends(_ body: @escaping @Sendable () -> Void) {
    guard isEngineThread else { return body() }
    state.withLock { $0.afterSends.append(Call(run: body)) }
  }

  /// Runs what `afterSends` left for this turn; `later` is the caller's buffer, left empty.
  private func runAfterSends(_ later: inout [Call]) {
    state.withLock { s in
      if !s.afterSends.isEmpty { swap(&s.afterSends, &later) }
    }
    guard !later.isEmpty else { return }
    for body in later { body.run() }
    later.removeAll(keepingCapacity: true)
  }

  /// Adds the query socket `fd` to the epoll set.
  private func watchReplies(_ fd: Int32) {
    var ev = epoll_event()
    ev.events = EPOLLIN.rawValue
    ev.data.u64 = UInt64(UInt32(bitPattern: fd))
    _ = epoll_ctl(epollFD, EPOLL_CTL_ADD, fd, &ev)
  }

  /// True on the engine thread, while it is loaded (`EngineLoad`), when more jobs are queued to run
  /// before it next sends what its jobs queued (`sendQueued`): a datagram made now should wait for
  /// them and leave with theirs.
  var sendsWaitForTurn: Bool { sendsWait(upstream: false) }

  /// `sendsWaitForTurn` for upstream queries: true also while this turn has already queued
  /// upstream sends (the outbox, the sessions' flushes), which one made now must not overtake. The
  /// wire then shows a turn's queries in the order they were decided (its Do53 datagrams, then its
  /// sessions' flushes): a Do53 query decided just before a server became known good no longer
  /// leaves after an encrypted query decided just after (OE-11, as a packet capture judges it).
  /// Client answers keep `sendsWaitForTurn`: a turn's last answer need not wait for its queries.
  var upstreamSendsWaitForTurn: Bool { sendsWait(upstream: true) }

  /// On the engine thread: whether it counts as loaded now (`EngineLoad`), so that its sends wait
  /// for the turn's other jobs. False on any other thread.
  var isLoaded: Bool { isEngineThread && load.isLoaded(now: TurnClock.engine.now()) }

  private func sendsWait(upstream: Bool) -> Bool {
    isLoaded
      && (jobsLeftInBatch.load(ordering: .relaxed) > 0
        || state.withLock { s in !s.jobs.isEmpty || (upstream && (!s.outbox.isEmpty || !s.owedFlushes.isEmpty)) })
  }

  /// Calls `onReadable` on the engine thread whenever the non-blocking socket `fd` is readable,
  /// and `afterJobs` each time the engine ran its queued jobs, until `unwatch(fd)`. False
  /// (nothing watched) when the engine thread does not run.
  func watch(
    _ fd: Int32, onReadable: @escaping @Sendable () -> Void,
    afterJobs: (@Sendable () -> Void)? = nil
  ) -> Bool {
    state.withLock { s in
      guard s.running else { return false }
      var ev = epoll_event()
      ev.events = EPOLLIN.rawValue
      ev.data.u64 = Self.watchTag | UInt64(UInt32(bitPattern: fd))
      guard epoll_ctl(epollFD, EPOLL_CTL_ADD, fd, &ev) == 0 else { return false }
      s.watchers[fd] = Call(run: onReadable)
      s.afterJobs[fd] = afterJobs.map(Call.init)
      return true
    }
  }

  /// Stops watching `fd`, after a last `afterJobs` call (what it queued is sent). Runs on the
  /// engine thread, so no `onReadable` or `afterJobs` call for `fd` is under way when this
  /// returns and the caller may close it.
  func unwatch(_ fd: Int32) async {
    await Task(executorPreference: self) { [self] in
      let last = state.withLock { s in
        let last = s.afterJobs.removeValue(forKey: fd)
        if s.watchers.removeValue(forKey: fd) != nil {
          _ = epoll_ctl(epollFD, EPOLL_CTL_DEL, fd, nil)
        }
        return last
      }
      last?.run()
    }.value
  }

  /// True when the engine thread runs (it did start).
  var isRunning: Bool { state.withLock { $0.running } }

  /// True when called on the engine thread.
  var isEngineThread: Bool { thread.load(ordering: .acquiring) == UInt(pthread_self()) }

  /// Runs `body` on the engine thread: at once when called there (unless `queued`), else at its
  /// next turn.
  func execute(queued: Bool = false, _ body: @escaping @Sendable () -> Void) {
    if !queued, isEngineThread {
      body()
      return
    }
    queueForThread { $0.closures.append(Call(run: body)) }
  }

  /// Adds work for the engine thread under the lock (`add`), then wakes the thread if it is
  /// blocked in epoll_wait.
  @inline(__always)
  private func queueForThread(_ add: (inout State) -> Void) {
    let wake = state.withLock { s -> Bool in
      add(&s)
      guard s.asleep else { return false }
      s.asleep = false
      return true
    }
    if wake { _ = eventfd_write(wakeFD, 1) }
  }

  /// Calls `onEvents` with the epoll event mask on the engine thread while stream socket `fd` has
  /// any of `events` (level-triggered), until `unwatchStream(fd)`. A `lowPriority` stream's events
  /// wait while the engine has other work (`LowPriorityLane`, for probe handshakes; OE-10) until
  /// `setStreamPriority`. Engine thread only.
  func watchStream(
    _ fd: Int32, events: UInt32, lowPriority: Bool = false, onEvents: @escaping @Sendable (UInt32) -> Void
  ) -> Bool {
    state.withLock { s in
      var ev = epoll_event()
      ev.events = events
      ev.data.u64 = Self.streamTag | UInt64(UInt32(bitPattern: fd))
      guard epoll_ctl(epollFD, EPOLL_CTL_ADD, fd, &ev) == 0 else { return false }
      s.lastStreamID &+= 1
      s.streams[fd] = EventCall(run: onEvents, lowPriority: lowPriority, id: s.lastStreamID)
      return true
    }
  }

  /// Makes stream `fd`'s events wait for the engine's other work (`lowPriority`) or not. Engine thread only.
  func setStreamPriority(_ fd: Int32, lowPriority: Bool) {
    state.withLock { $0.streams[fd]?.lowPriority = lowPriority }
  }

  /// Runs `body` on the engine thread in a turn with nothing else to do, or once it has waited
  /// `LowPriorityLane.patience` (one such closure or low-priority stream per turn).
  func executeAtLowPriority(_ body: @escaping @Sendable () -> Void) {
    queueForThread { s in
      s.lowPriority.append(Call(run: body))
      lowPriorityQueued.add(1, ordering: .relaxed)
    }
  }

  /// Changes the events watched on stream socket `fd`. Engine thread only.
  func modifyStream(_ fd: Int32, events: UInt32) {
    var ev = epoll_event()
    ev.events = events
    ev.data.u64 = Self.streamTag | UInt64(UInt32(bitPattern: fd))
    _ = epoll_ctl(epollFD, EPOLL_CTL_MOD, fd, &ev)
  }

  /// Stops watching stream socket `fd` (the caller closes it). Engine thread only.
  func unwatchStream(_ fd: Int32) {
    state.withLock { s in
      if s.streams.removeValue(forKey: fd) != nil { _ = epoll_ctl(epollFD, EPOLL_CTL_DEL, fd, nil) }
    }
  }

  /// Calls `flush` now or, while this turn has more jobs to run, once after them (with the
  /// datagrams they queued): the writes of a turn's queries to one session leave together.
  /// `token` (from `newTimerToken`, never reused) names the session: its flush is queued at most
  /// once per turn. Engine thread only.
  func flushSoon(_ token: UInt64, _ flush: @escaping @Sendable () -> Void) {
    guard upstreamSendsWaitForTurn else { return flush() }
    state.withLock { s in
      if s.owedFlushes[token] == nil { s.owedFlushes[token] = Call(run: flush) }
    }
  }

  /// A token for `setTimer`, unique in the process.
  func newTimerToken() -> UInt64 {
    state.withLock { s in
      s.lastTimerToken &+= 1
      return s.lastTimerToken
    }
  }

  /// Calls `fire` on the engine thread once `deadline` (`now()` nanoseconds) has passed, replacing
  /// the timer `token` had. Engine thread only (the thread looks at timers before it sleeps).
  func setTimer(_ token: UInt64, at deadline: UInt64, _ fire: @escaping @Sendable () -> Void) {
    state.withLock { s in
      s.timers[token] = EngineTimer(deadline: deadline, fire: fire)
      s.timersDueFrom = min(s.timersDueFrom, deadline)
    }
  }

  /// Cancels the timer of `token`, if any.
  func clearTimer(_ token: UInt64) {
    state.withLock { _ = $0.timers.removeValue(forKey: token) }
  }

  private func run() {
    // Named, so top and perf show it (it would inherit the name of whichever thread started it).
    nameCurrentThread("sotto-engine")
    thread.store(UInt(pthread_self()), ordering: .releasing)
    var events = [epoll_event](repeating: epoll_event(), count: 64)
    var buffer = [UInt8](repeating: 0, count: Self.receiveSize)
    var batch: [UnownedJob] = []
    var outgoing: [(fd: Int32, bytes: [UInt8])] = []
    var due: [(UInt64, EngineTimer)] = []
    // Sockets of finished queries, closed once the jobs their replies resumed have run and sent
    // (`sendQueued`): a close costs about as much as a send, and this turn's answers and queries
    // should not wait for it.
    var finished: [Int32] = []
    finished.reserveCapacity(64)
    var later: [Call] = []
    var lane = LowPriorityLane()
    while true {
      runJobs(&batch)
      sendQueued(&outgoing, finished: &finished)
      for fd in finished { close(fd) }
      finished.removeAll(keepingCapacity: true)
      runAfterSends(&later)
      // Nanoseconds to sleep (-1 until woken, 0 not at all), and when the sleep began (0: no
      // sleep), for `load`.
      let (wait, sleptFrom) = state.withLock { s -> (Int64, UInt64) in
        // Jobs queued meanwhile: look at the sockets without sleeping, then run them.
        // (And anything queued for `sendQueued` since it ran: nothing else would send it.)
        if s.hasTurnWork || !s.lowPriority.isEmpty { return (0, 0) }
        // The bounds, not a walk of every query and timer: a bound left early by a query
        // answered meanwhile costs one early wake, whose `expire` makes it exact.
        let next = min(s.pendingDueFrom, s.timersDueFrom)
        s.sleepingUntil = next
        let now = Self.now()
        if next != .max, next <= now { return (0, 0) }
        s.asleep = true
        if next == .max { return (-1, now) }
        return (Int64(clamping: next - now), now)
      }
      let n = events.withUnsafeMutableBufferPointer { self.wait(for: wait, into: $0) }
      if wait != 0 { state.withLock { $0.asleep = false } }
      TurnClock.engine.refresh()
      load.woke(sleptFrom: sleptFrom, now: TurnClock.engine.now())
      // Whether this turn handled events other than low-priority ones and the wake-up.
      var busy = false
      if n > 0 {
        for i in 0..<Int(n) {
          let tag = events[i].data.u64
          let fd = Int32(bitPattern: UInt32(truncatingIfNeeded: tag))
          if tag & Self.watchTag != 0 {
            busy = true
            if let onReadable = state.withLock({ $0.watchers[fd] }) { onReadable.run() }
          } else if tag & Self.streamTag != 0 {
            if let onEvents = state.withLock({ $0.streams[fd] }) {
              if onEvents.lowPriority {
                lane.note(fd: fd, events: events[i].events, id: onEvents.id)
              } else {
                busy = true
                onEvents.run(events[i].events)
              }
            }
          } else if fd == wakeFD {
            var value: eventfd_t = 0
            _ = eventfd_read(wakeFD, &value)
          } else {
            busy = true
            readReplies(fd, into: &buffer, finished: &finished)
          }
        }
      }
      expire(finished: &finished)
      fireTimers(&due)
      runLowPriority(&lane, busy: busy)
    }
  }

  /// Runs one piece of low-priority work (a probe's handshake step) when the turn had nothing
  /// else to do or the work has waited long enough (`LowPriorityLane`). `busy`: the turn handled
  /// other events. Work queued for the next turn (jobs, sends) also counts as busy: the answers
  /// it carries go first.
  private func runLowPriority(_ lane: inout LowPriorityLane, busy: Bool) {
    guard !lane.deferred.isEmpty || lowPriorityQueued.load(ordering: .relaxed) > 0 else { return lane.idle() }
    let (closures, queued) = state.withLock { s in (!s.lowPriority.isEmpty, s.hasTurnWork) }
    guard closures || !lane.deferred.isEmpty else { return lane.idle() }
    guard lane.mayRun(busy: busy || queued, now: Self.now()) else {
      _ = lane.take()
      return
    }
    if let stream = lane.take() {
      let call = state.withLock { s in s.streams[stream.fd].flatMap { $0.id == stream.id ? $0 : nil } }
      call?.run(stream.events)
    } else if let body = state.withLock({ s -> Call? in
      guard !s.lowPriority.isEmpty else { return nil }
      lowPriorityQueued.subtract(1, ordering: .relaxed)
      return s.lowPriority.removeFirst()
    }) {
      body.run()
    }
  }

  /// epoll_wait for up to `nanoseconds` (-1: until an event), finer than a millisecond with
  /// epoll_pwait2 (within the kernel's timer slack, 50 µs by default; ngtcp2's pacing and ACK timers
  /// are finer than a millisecond), else rounded up to a millisecond so that the deadline has passed
  /// when it returns. Any failure of epoll_pwait2 but EINTR (ENOSYS before Linux 5.11, EPERM under
  /// a seccomp filter that does not know it) turns it off for good.
  private func wait(for nanoseconds: Int64, into events: UnsafeMutableBufferPointer<epoll_event>) -> Int32 {
    if preciseWait.load(ordering: .relaxed), nanoseconds > 0 {
      var timeout = timespec(tv_sec: Int(nanoseconds / 1_000_000_000), tv_nsec: Int(nanoseconds % 1_000_000_000))
      let n = epoll_pwait2(epollFD, events.baseAddress, Int32(events.count), &timeout, nil)
      if n >= 0 || errno == EINTR { return n }
      preciseWait.store(false, ordering: .relaxed)
    }
    let ms = nanoseconds < 0 ? -1 : Int32(clamping: (nanoseconds + 999_999) / 1_000_000)
    return epoll_wait(epollFD, events.baseAddress, Int32(events.count), ms)
  }

  /// Runs queued jobs, and the jobs they queue, until none is left or `maxRounds` batches ran
  /// (then the sockets are looked at before the rest).
  private func runJobs(_ batch: inout [UnownedJob], maxRounds: Int = 16) {
    let executor = asUnownedTaskExecutor()
    var closures: [Call] = []
    for _ in 0..<maxRounds {
      state.withLock { s in
        swap(&s.jobs, &batch)
        if !s.closures.isEmpty { swap(&s.closures, &closures) }
      }
      guard !batch.isEmpty || !closures.isEmpty else { return }
      TurnClock.engine.refresh()
      for body in closures { body.run() }
      closures.removeAll()
      for (i, job) in batch.enumerated() {
        jobsLeftInBatch.store(batch.count - i - 1, ordering: .relaxed)
        job.runSynchronously(on: executor)
      }
      batch.removeAll(keepingCapacity: true)
    }
  }

  /// Sends the queries the jobs just run have queued (a query that cannot be sent fails at once),
  /// then lets the watched sockets and the sessions send what they queued (`watch`'s `afterJobs`,
  /// `flushSoon`). Runs on the
  /// engine thread, which alone closes sockets of queued queries (`finish`, `expire`), and only
  /// after this, so every queued fd is still the query's own.
  private func sendQueued(_ outgoing: inout [(fd: Int32, bytes: [UInt8])], finished: inout [Int32]) {
    var owedFlushes: [UInt64: Call] = [:]
    let afterJobs = state.withLock { s in
      swap(&s.outbox, &outgoing)
      if !s.owedFlushes.isEmpty { swap(&s.owedFlushes, &owedFlushes) }
      return s.afterJobs
    }
    var failed = false
    for (fd, bytes) in outgoing {
      let sent = bytes.withUnsafeBytes { send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
      if sent != bytes.count {
        let e = errno
        finish(fd, .failure(Self.sendFailure(e)), finished: &finished)
        failed = true
      }
    }
    for flush in afterJobs.values { flush.run() }
    for flush in owedFlushes.values { flush.run() }
    // The queries are out, and the answers: now the sockets are watched for replies.
    for (fd, _) in outgoing where !failed || !finished.contains(fd) { watchReplies(fd) }
    outgoing.removeAll(keepingCapacity: true)
  }

  /// Reads every queued datagram on `fd` until one completes its query.
  private func readReplies(_ fd: Int32, into buffer: inout [UInt8], finished: inout [Int32]) {
    guard let entry = state.withLock({ $0.pending[fd] }) else { return }
    while true {
      let count = buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
      if count < 0 {
        let e = errno
        if e == EAGAIN || e == EWOULDBLOCK { return }
        if e == EINTR { continue }
        // ECONNREFUSED from an ICMP port unreachable on the connected socket.
        finish(fd, .failure(.unreachable("recv: \(Self.errorText(e))")), finished: &finished)
        return
      }
      switch entry.matcher.match(Array(buffer[0..<count])) {
      case .none:
        entry.mismatches.increment()
        let seen = state.withLock { s -> Int in
          s.pending[fd]?.localMismatches += 1
          return s.pending[fd]?.localMismatches ?? 0
        }
        if seen >= entry.suspicionThreshold {
          finish(fd, .failure(.spoofSuspected), finished: &finished)
          return
        }
      case .success(let message)?:
        finish(fd, .success(message), finished: &finished)
        return
      case .failure(let error)?:
        finish(fd, .failure(.malformed(error)), finished: &finished)
        return
      }
    }
  }

  /// Completes the queries whose deadline has passed.
  private func expire(finished: inout [Int32]) {
    let now = Self.now()
    let expired = state.withLock { s -> [(Int32, Pending)] in
      guard s.pendingDueFrom <= now else { return [] }
      var out: [(Int32, Pending)] = []
      s.pendingDueFrom = Self.takeDue(from: &s.pending, now: now, into: &out)
      return out
    }
    for (fd, p) in expired {
      finished.append(fd)
      p.continuation.resume(returning: .failure(.timeout))
    }
  }

  /// Calls the timers whose deadline has passed; `due` is the caller's buffer (no allocation per
  /// turn), left empty. The due timers are collected before any is removed from the dictionary.
  private func fireTimers(_ due: inout [(UInt64, EngineTimer)]) {
    let now = Self.now()
    state.withLock { s in
      guard s.timersDueFrom <= now else { return }
      s.timersDueFrom = Self.takeDue(from: &s.timers, now: now, into: &due)
    }
    for (_, timer) in due { timer.fire() }
    due.removeAll(keepingCapacity: true)
  }

  /// Moves the entries of `table` whose deadline is `now` or earlier into `due` (all collected
  /// before any is removed) and returns the earliest deadline left (UInt64.max: none): the exact
  /// bound `pendingDueFrom` and `timersDueFrom` become after a walk. A plain loop: `map(\.deadline)`
  /// applied its key path through the runtime (`swift_getAtKeyPath`, about 400 instructions an
  /// entry; callgrind).
  private static func takeDue<Key: Hashable, Entry: EngineDeadline>(
    from table: inout [Key: Entry], now: UInt64, into due: inout [(Key, Entry)]
  ) -> UInt64 {
    let start = due.count
    var next = UInt64.max
    for (key, entry) in table {
      if entry.deadline <= now { due.append((key, entry)) } else if entry.deadline < next { next = entry.deadline }
    }
    for (key, _) in due[start...] { table.removeValue(forKey: key) }
    return next
  }

  /// Completes `fd`'s query; the socket goes into `finished`, closed by the engine loop after
  /// the jobs this resumes have run and sent.
  private func finish(_ fd: Int32, _ result: Result<Message, TransportError>, finished: inout [Int32]) {
    guard let entry = state.withLock({ $0.pending.removeValue(forKey: fd) }) else { return }
    finished.append(fd)
    entry.continuation.resume(returning: result)
  }

  /// Monotonic nanoseconds, the clock of deadlines and timers.
  static func now() -> UInt64 { TurnClock.clockNanoseconds() }

  static func errorText(_ code: Int32) -> String {
    guard let s = strerror(code) else { return "errno \(code)" }
    return "\(String(cString: s)) (errno \(code))"
  }
}

extension UDPExchangeEngine: TaskExecutor {
  /// Queues `job` for the engine thread, waking it only when it is blocked in epoll_wait.
  func enqueue(_ job: consuming ExecutorJob) {
    let job = UnownedJob(job)
    queueForThread { $0.jobs.append(job) }
  }
}
