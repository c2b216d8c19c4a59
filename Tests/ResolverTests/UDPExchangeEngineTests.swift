import Foundation
import NIOCore
import NIOPosix
import Synchronization
import Testing

@testable import Resolver

#if canImport(Glibc)
  import Glibc
#endif

/// The engine thread as the executor of resolutions and the reader of the listener's sockets:
/// real sockets on 127.0.0.1.
@Suite struct UDPExchangeEngineTests {
  let engine = UDPExchangeEngine.shared

  @Test func tasksPreferringTheEngineRunOnItsThreadAndStayThere() async throws {
    let executor = try #require(engine.taskExecutor)
    let threads = await Task(executorPreference: executor) { () -> [String?] in
      var seen = [Self.threadName()]
      // Resumed after a suspension: still on the engine thread, not on the cooperative pool.
      try? await Task.sleep(for: .milliseconds(5))
      seen.append(Self.threadName())
      return seen
    }.value
    #expect(threads == ["sotto-engine", "sotto-engine"])
  }

  @Test func aWatchedSocketIsReadUntilUnwatched() async throws {
    let (fd, port) = try Self.boundUDPSocket()
    defer { close(fd) }
    let reads = Mutex(0)
    #expect(
      engine.watch(fd) {
        var buffer = [UInt8](repeating: 0, count: 64)
        while recv(fd, &buffer, buffer.count, 0) > 0 { reads.withLock { $0 += 1 } }
      })
    try Self.send([1, 2, 3], to: port)
    for _ in 0..<200 where reads.withLock({ $0 }) == 0 {
      try await Task.sleep(for: .milliseconds(10))
    }
    #expect(reads.withLock { $0 } == 1)

    await engine.unwatch(fd)
    try Self.send([4, 5, 6], to: port)
    try await Task.sleep(for: .milliseconds(200))
    #expect(reads.withLock { $0 } == 1, "read after unwatch")
    // The datagram is still queued for the socket's owner.
    var buffer = [UInt8](repeating: 0, count: 64)
    #expect(recv(fd, &buffer, buffer.count, 0) == 3)
  }

  @Test func unwatchingSendsWhatTheSocketQueuedForTheTurn() async throws {
    // A socket unwatched in the turn in which it queued something for `afterJobs` gets a last
    // call: how a graceful stop of the listener still sends the answers it had queued.
    let (fd, _) = try Self.boundUDPSocket()
    defer { close(fd) }
    let sends = StateLock((queued: [Int](), sent: [Int](), callsAfterUnwatch: 0))
    let unwatched = StateLock(false)
    let watching = engine.watch(
      fd, onReadable: {},
      afterJobs: {
        let late = unwatched.withLock { $0 }
        sends.withLock { s in
          s.sent += s.queued
          s.queued.removeAll()
          if late { s.callsAfterUnwatch += 1 }
        }
      })
    #expect(watching)
    let executor = try #require(engine.taskExecutor)
    let engine = self.engine
    await Task(executorPreference: executor) {
      // Queued on the engine thread; the unwatch job runs in the same turn, before the turn's
      // own afterJobs calls.
      sends.withLock { $0.queued.append(1) }
      await engine.unwatch(fd)
      unwatched.withLock { $0 = true }
    }.value
    #expect(sends.withLock { $0.sent } == [1], "what was queued was not sent by unwatch")
    try await Task.sleep(for: .milliseconds(50))
    #expect(sends.withLock { $0.callsAfterUnwatch } == 0)
  }

  @Test func queriesMadeOnTheEngineThreadAreSentAndAnswered() async throws {
    // Queries made by resolutions on the engine thread wait until its queued jobs have run and
    // then leave together: each must still go out once and get its own answer.
    let server = try await ForgingServer.start(forgedPerQuery: 0)
    defer { Task { await server.stop() } }
    let endpoint = try #require(ServerEndpoint(ip: "127.0.0.1", port: server.port))
    let transport = Do53Transport(group: MultiThreadedEventLoopGroup.singleton)
    let queries = try (0..<30).map { i in
      try Self.query("q\(i).example.test.", id: UInt16(1000 + i))
    }
    let executor = try #require(engine.taskExecutor)
    let answered = await Task(executorPreference: executor) { () -> [String] in
      await withTaskGroup(of: String.self) { group in
        for q in queries {
          group.addTask {
            let reply = try? await transport.queryUDP(q, to: endpoint, timeout: .seconds(5))
            guard let reply, reply.header.id == q.header.id, reply.answers.count == 1 else {
              return "none"
            }
            return reply.questions.first?.name.description ?? "no question"
          }
        }
        return await group.reduce(into: []) { $0.append($1) }
      }
    }.value
    #expect(answered.sorted() == queries.map { $0.questions[0].name.description }.sorted())
    #expect(server.udpQueries.value == 30)
  }

  /// The engine sleeps until the earliest deadline it knows of, a bound that an answered query
  /// leaves early: a query still waiting behind it must still time out (not wait for some other
  /// event), and a cleared timer must not fire while the one after it does.
  @Test func deadlinesAfterAnAnsweredQueryOrAClearedTimerStillComeDue() async throws {
    let server = try await ForgingServer.start(forgedPerQuery: 0)
    defer { Task { await server.stop() } }
    let answering = try #require(ServerEndpoint(ip: "127.0.0.1", port: server.port))
    let (silentFD, silentPort) = try Self.boundUDPSocket()
    defer { close(silentFD) }
    let silent = try #require(ServerEndpoint(ip: "127.0.0.1", port: Int(silentPort)))
    let transport = Do53Transport(group: MultiThreadedEventLoopGroup.singleton)
    let first = try Self.query("answered.example.test.", id: 7)
    let second = try Self.query("unanswered.example.test.", id: 8)
    let executor = try #require(engine.taskExecutor)
    let engine = self.engine
    let fired = StateLock([String]())
    // Polled with a limit, not awaited: a query whose deadline never came would hang the test.
    let result = StateLock<(Bool, String)?>(nil)
    Task(executorPreference: executor) {
      let now = UDPExchangeEngine.now()
      let early = engine.newTimerToken()
      let late = engine.newTimerToken()
      engine.setTimer(early, at: now + 200_000_000) { fired.withLock { $0.append("cleared") } }
      engine.setTimer(late, at: now + 400_000_000) { fired.withLock { $0.append("kept") } }
      engine.clearTimer(early)
      async let answered = try? transport.queryUDP(first, to: answering, timeout: .milliseconds(300))
      async let unanswered: String = {
        do {
          _ = try await transport.queryUDP(second, to: silent, timeout: .milliseconds(700))
          return "answered"
        } catch {
          return "\(error)"
        }
      }()
      let outcome = (await answered?.header.id == 7, await unanswered)
      result.withLock { $0 = outcome }
    }
    for _ in 0..<1_000 where result.withLock({ $0 }) == nil { try await Task.sleep(for: .milliseconds(10)) }
    let outcome = try #require(result.withLock { $0 }, "the unanswered query never timed out")
    #expect(outcome.0, "the first query was not answered")
    #expect(outcome.1.contains("timeout") || outcome.1.contains("timed out"), "\(outcome.1)")
    for _ in 0..<500 where fired.withLock({ $0 }).isEmpty { try await Task.sleep(for: .milliseconds(10)) }
    try await Task.sleep(for: .milliseconds(100))
    #expect(fired.withLock { $0 } == ["kept"])
  }

  @Test func aQueryMadeWhileMoreJobsWaitLeavesOnceTheyRan() async throws {
    // The point of the outbox: a job queued after the asking one runs before the query leaves
    // (so the queries of one turn leave together), and then it does leave.
    let (fd, port) = try Self.boundUDPSocket()  // takes the query and never answers
    defer { close(fd) }
    let address = try SocketAddress(ipAddress: "127.0.0.1", port: Int(port))
    let query = try Self.query("later.example.test.", id: 9)
    let executor = try #require(engine.taskExecutor)
    let seenByNextJob = await Task(executorPreference: executor) { [engine] () -> Bool in
      Self.keepEngineAwake()  // a loaded engine holds its sends (an idle one sends at once)
      return await Self.sendThenPeek(engine, executor, query, to: address, arrivingAt: fd)
    }.value
    #expect(!seenByNextJob, "the query left before the job queued after it had run")
    var buffer = [UInt8](repeating: 0, count: 512)
    #expect(recv(fd, &buffer, buffer.count, Int32(MSG_DONTWAIT)) == query.serialize().count)
  }

  @Test func aTurnsLastSendDoesNotOvertakeTheQueriesItsEarlierJobsQueued() async throws {
    // A Do53 query queued by one job, then the turn's last job flushing a session (as an encrypted
    // query decided after the server became known good): the Do53 query must reach the wire first,
    // or a capture shows cleartext to the server after encryption to it worked (OE-11).
    let (fd, port) = try Self.boundUDPSocket()  // takes both and never answers
    defer { close(fd) }
    let address = try SocketAddress(ipAddress: "127.0.0.1", port: Int(port))
    let query = try Self.query("first.example.test.", id: 11)
    let executor = try #require(engine.taskExecutor)
    let token = engine.newTimerToken()
    let waits = await Task(executorPreference: executor) { [engine] in
      Self.keepEngineAwake()
      // Queued by this job, so the engine runs them one after the other in one batch.
      let asker = Task(executorPreference: executor) {
        await engine.exchange(
          query.serialize(), to: address, matcher: ResponseMatcher(query: query),
          timeout: .milliseconds(200), mismatches: Counter(), suspicionThreshold: 3)
      }
      let flusher = Task(executorPreference: executor) { () -> Bool in
        // The turn's last job (unless other tests' jobs are queued too): its query waits.
        let waits = engine.upstreamSendsWaitForTurn
        engine.flushSoon(token) { try? Self.send([0xEE], to: port) }
        return waits
      }
      let waits = await flusher.value
      _ = await asker.value  // .timeout: nobody answers
      return waits
    }.value
    var buffer = [UInt8](repeating: 0, count: 512)
    #expect(recv(fd, &buffer, buffer.count, Int32(MSG_DONTWAIT)) == query.serialize().count, "the Do53 query first")
    #expect(recv(fd, &buffer, buffer.count, Int32(MSG_DONTWAIT)) == 1, "then the session's flush")
    #expect(waits, "an upstream query made after the turn queued one did not wait for it")
  }

  @Test func anIdleEngineSendsAQueryAtOnceThoughMoreJobsWait() async throws {
    // The other side of the outbox: an engine that slept until a moment ago (EngineLoad) holds
    // nothing, since nothing queues behind the jobs its wake-up brought. The engine is shared with
    // the other suites, so a try whose turn did not start after an idle spell is retried.
    let (fd, port) = try Self.boundUDPSocket()
    defer { close(fd) }
    let address = try SocketAddress(ipAddress: "127.0.0.1", port: Int(port))
    let executor = try #require(engine.taskExecutor)
    var idleTries = 0
    for attempt in 0..<50 where idleTries == 0 {
      try await Task.sleep(for: .milliseconds(5))  // the engine sleeps, unless other suites keep it busy
      let query = try Self.query("now\(attempt).example.test.", id: UInt16(20 + attempt))
      let loadedAtSend = StateLock(true)
      let seenByNextJob = await Task(executorPreference: executor) { [engine] () -> Bool in
        await Self.sendThenPeek(engine, executor, query, to: address, arrivingAt: fd, timeout: .milliseconds(50)) {
          loadedAtSend.withLock { $0 = engine.isLoaded }
        }
      }.value
      Self.drain(fd)
      guard !loadedAtSend.withLock({ $0 }) else { continue }
      idleTries += 1
      #expect(seenByNextJob, "an idle engine held the query for the job queued after it")
    }
    #expect(idleTries == 1, "the engine never came to this test idle in 50 tries")
  }

  @Test(arguments: [true, false])
  func aQueryThatCannotBeSentFailsAtOnce(onEngineThread: Bool) async throws {
    // 70,000 bytes do not fit in a UDP datagram: send fails (EMSGSIZE). On the engine thread the
    // failure comes when the queued query is sent, and must end the wait then, not at the deadline.
    let (fd, port) = try Self.boundUDPSocket()
    defer { close(fd) }
    let address = try SocketAddress(ipAddress: "127.0.0.1", port: Int(port))
    let query = try Self.query("big.example.test.", id: 7)
    let exchange = { @Sendable [engine] in
      await engine.exchange(
        [UInt8](repeating: 0, count: 70_000), to: address,
        matcher: ResponseMatcher(query: query), timeout: .seconds(30), mismatches: Counter(),
        suspicionThreshold: 3)
    }
    let executor = try #require(engine.taskExecutor)
    let result =
      onEngineThread
      ? await Task(executorPreference: executor) { () -> Result<Message, TransportError> in
        Self.keepEngineAwake()
        // A second job in the same batch, so the query waits in the outbox (as in a busy turn).
        let asker = Task(executorPreference: executor) { await exchange() }
        await Task(executorPreference: executor) {}.value
        return await asker.value
      }.value
      : await Task.detached { await exchange() }.value
    guard case .failure(.unreachable(let why)) = result else {
      Issue.record("expected a send failure, got \(result)")
      return
    }
    #expect(why.hasPrefix("send: "), "\(why)")
  }

  /// A probe's handshake must not hold answers (OE-10): a low-priority stream that became readable
  /// first is handled after the normal one that became readable in the same turn.
  @Test func aLowPriorityStreamWaitsForTheTurnsOtherEvents() async throws {
    let (low, lowPort) = try Self.boundUDPSocket()
    let (normal, normalPort) = try Self.boundUDPSocket()
    let order = Mutex<[String]>([])
    await onEngineThread { engine in
      _ = engine.watchStream(low, events: Self.epollIn, lowPriority: true) { _ in
        Self.drain(low)
        order.withLock { $0.append("low") }
      }
      _ = engine.watchStream(normal, events: Self.epollIn) { _ in
        Self.drain(normal)
        order.withLock { $0.append("normal") }
      }
      // Both are readable before the engine next looks at its sockets, the low-priority one first.
      try? Self.send([1], to: lowPort)
      try? Self.send([2], to: normalPort)
    }
    for _ in 0..<200 where order.withLock({ $0.count }) < 2 { try await Task.sleep(for: .milliseconds(10)) }
    #expect(order.withLock { $0 } == ["normal", "low"])
    await unwatchAndClose([low, normal])
  }

  /// A low-priority stream still gets its turn while the engine always has other work: a normal
  /// stream that is never drained is reported readable in every turn.
  @Test func aLowPriorityStreamIsNotStarvedByBusyTurns() async throws {
    let (low, lowPort) = try Self.boundUDPSocket()
    let (busy, busyPort) = try Self.boundUDPSocket()
    let calls = Mutex((busy: 0, low: 0, busyBeforeLow: 0))
    await onEngineThread { engine in
      _ = engine.watchStream(busy, events: Self.epollIn) { _ in calls.withLock { $0.busy += 1 } }
      _ = engine.watchStream(low, events: Self.epollIn, lowPriority: true) { _ in
        Self.drain(low)
        calls.withLock { c in
          if c.low == 0 { c.busyBeforeLow = c.busy }
          c.low += 1
        }
      }
      try? Self.send([1], to: busyPort)
      try? Self.send([2], to: lowPort)
    }
    for _ in 0..<200 where calls.withLock({ $0.low }) == 0 { try await Task.sleep(for: .milliseconds(10)) }
    let seen = calls.withLock { $0 }
    #expect(seen.low == 1)
    // It waited behind the busy stream's turn(s), then ran anyway. At least one: on a loaded
    // machine one turn can outlast the lane's patience (0.5 ms); `LowPriorityLaneTests` times it.
    #expect(seen.busyBeforeLow >= 1)
    await unwatchAndClose([low, busy])
  }

  /// A low-priority closure runs after normal work queued after it in the same turn.
  @Test func aLowPriorityClosureRunsAfterTheTurnsOtherWork() async throws {
    let order = Mutex<[String]>([])
    await onEngineThread { engine in
      engine.executeAtLowPriority { order.withLock { $0.append("low") } }
      engine.execute(queued: true) { order.withLock { $0.append("normal") } }
    }
    for _ in 0..<200 where order.withLock({ $0.count }) < 2 { try await Task.sleep(for: .milliseconds(10)) }
    #expect(order.withLock { $0 } == ["normal", "low"])
  }

  /// Runs `body` on the engine thread and waits for it.
  private func onEngineThread(_ body: @escaping @Sendable (UDPExchangeEngine) -> Void) async {
    let engine = self.engine
    await withCheckedContinuation { (done: CheckedContinuation<Void, Never>) in
      engine.execute(queued: true) {
        body(engine)
        done.resume()
      }
    }
  }

  /// Stops watching the streams on the engine thread, then closes them.
  private func unwatchAndClose(_ fds: [Int32]) async {
    await onEngineThread { engine in
      for fd in fds { engine.unwatchStream(fd) }
    }
    for fd in fds { close(fd) }
  }

  /// EPOLLIN (sys/epoll.h; the tests do not import the engine's epoll module).
  static let epollIn: UInt32 = 0x001

  /// Reads and discards every datagram queued on `fd`.
  static func drain(_ fd: Int32) {
    var buffer = [UInt8](repeating: 0, count: 64)
    while recv(fd, &buffer, buffer.count, 0) > 0 {}
  }

  /// An A query for `name` with ID `id`.
  static func query(_ name: String, id: UInt16) throws -> Message {
    var m = Message()
    m.header.id = id
    m.questions = [Question(name: try DNSName(name), type: .a)]
    return m
  }

  /// The calling thread's name (synchronous: `Thread.current` is unavailable in async code).
  static func threadName() -> String? { Thread.current.name }

  /// Run in a job on the engine thread: queues a job that sends `query` to `address` (nobody
  /// answers; `atSend` runs in it first) and, after it in the same batch, one that peeks whether
  /// the query has reached `fd`. Whether it had.
  static func sendThenPeek(
    _ engine: UDPExchangeEngine, _ executor: any TaskExecutor, _ query: Message, to address: SocketAddress,
    arrivingAt fd: Int32, timeout: TimeAmount = .milliseconds(200), atSend: @escaping @Sendable () -> Void = {}
  ) async -> Bool {
    let asker = Task(executorPreference: executor) {
      atSend()
      return await engine.exchange(
        query.serialize(), to: address, matcher: ResponseMatcher(query: query),
        timeout: timeout, mismatches: Counter(), suspicionThreshold: 3)
    }
    let peeker = Task(executorPreference: executor) { () -> Bool in
      var buffer = [UInt8](repeating: 0, count: 512)
      return recv(fd, &buffer, buffer.count, Int32(MSG_PEEK) | Int32(MSG_DONTWAIT)) > 0
    }
    let seen = await peeker.value
    _ = await asker.value  // .timeout: nobody answers
    return seen
  }

  /// Keeps the calling job (on the engine thread) busy for longer than `EngineLoad.window`, so that
  /// the engine counts as loaded for the jobs it queues: they run in the next round of the same
  /// turn, after the engine has been awake that long.
  static func keepEngineAwake() {
    let until = TurnClock.clockNanoseconds() + EngineLoad.window + 200_000
    while TurnClock.clockNanoseconds() < until {}
  }

  /// A non-blocking UDP socket (or, with `type`, another kind, bound and not listening) on
  /// 127.0.0.1 and its port.
  static func boundUDPSocket(type: Int32 = Int32(SOCK_DGRAM.rawValue)) throws -> (Int32, UInt16) {
    let fd = socket(AF_INET, type | Int32(SOCK_NONBLOCK.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
    try #require(fd >= 0)
    var address = sockaddr_in()
    address.sin_family = sa_family_t(AF_INET)
    address.sin_addr.s_addr = inet_addr("127.0.0.1")
    var length = socklen_t(MemoryLayout<sockaddr_in>.size)
    let bound = withUnsafeMutablePointer(to: &address) {
      $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
        bind(fd, $0, length) == 0 && getsockname(fd, $0, &length) == 0
      }
    }
    try #require(bound)
    return (fd, UInt16(bigEndian: address.sin_port))
  }

  /// 127.0.0.1:`port`.
  static func loopback(_ port: UInt16) -> sockaddr_in {
    var address = sockaddr_in()
    address.sin_family = sa_family_t(AF_INET)
    address.sin_addr.s_addr = inet_addr("127.0.0.1")
    address.sin_port = port.bigEndian
    return address
  }

  /// Sends one datagram to 127.0.0.1:`port` from a new socket.
  static func send(_ bytes: [UInt8], to port: UInt16) throws {
    let fd = socket(AF_INET, Int32(SOCK_DGRAM.rawValue), 0)
    try #require(fd >= 0)
    defer { close(fd) }
    var address = loopback(port)
    let sent = withUnsafePointer(to: &address) {
      $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
        sendto(fd, bytes, bytes.count, 0, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
      }
    }
    try #require(sent == bytes.count)
  }
}
