import NIOCore
import NIOPosix
import Synchronization
import Testing

@testable import Resolver

#if canImport(Glibc)
  import Glibc
#endif

/// The event loops of these tests' pools and servers, their own.
let poolTestGroup = MultiThreadedEventLoopGroup(numberOfThreads: 2)

/// A TCP DNS server on 127.0.0.1 for the pool: answers queries for names starting `ok` (A
/// 192.0.2.55), those starting `dup` twice, those starting `slow` after 1 s; the first query for
/// a name starting `fin` (`rst`) it takes as the cue to close that connection (with a reset)
/// without answering, later ones it answers; a name starting `ka<N>-` it answers with an
/// edns-tcp-keepalive TIMEOUT of N (100 ms units) when the query asked for one; it ignores the
/// rest, and counts the connections it accepted and saw close and the queries that asked for a
/// keepalive.
final class CountingTCPServer: Sendable {
  let accepted = Counter()
  let closed = Counter()
  /// Whether the one close (`fin`, `rst`) was made.
  let cut = Mutex(false)
  /// Queries that carried an edns-tcp-keepalive request (RFC 7828: the option without data).
  let keepaliveAsked = Counter()
  let channel: any Channel
  var port: Int { channel.localAddress?.port ?? 0 }
  var address: SocketAddress {
    get throws {
      guard let a = channel.localAddress else { throw DoTTestError.setup("the test server has no address") }
      return a
    }
  }

  init() async throws {
    let accepted = accepted
    let closed = closed
    let cut = cut
    let keepaliveAsked = keepaliveAsked
    channel = try await ServerBootstrap(group: poolTestGroup)
      .childChannelInitializer { ch in
        accepted.increment()
        ch.closeFuture.whenComplete { _ in closed.increment() }
        return ch.eventLoop.makeCompletedFuture {
          try ch.pipeline.syncOperations.addHandler(ByteToMessageHandler(LengthPrefixedMessageDecoder()))
          try ch.pipeline.syncOperations.addHandler(OKAnswerer(cut: cut, keepaliveAsked: keepaliveAsked))
        }
      }
      .bind(host: "127.0.0.1", port: 0).get()
  }

  func stop() async { try? await channel.close() }
}

final class OKAnswerer: ChannelInboundHandler, Sendable {
  typealias InboundIn = ByteBuffer
  typealias OutboundOut = ByteBuffer
  let cut: Mutex<Bool>
  let keepaliveAsked: Counter
  init(cut: Mutex<Bool>, keepaliveAsked: Counter) {
    self.cut = cut
    self.keepaliveAsked = keepaliveAsked
  }

  func channelRead(context: ChannelHandlerContext, data: NIOAny) {
    let bytes = Array(Self.unwrapInboundIn(data).readableBytesView)
    guard let q = try? Message.parse(bytes), let name = q.questions.first?.name.description else { return }
    let asked = q.edns?.options.contains { $0.code == EDNSOption.keepaliveCode && $0.data.isEmpty } ?? false
    if asked { keepaliveAsked.increment() }
    if name.hasPrefix("fin") || name.hasPrefix("rst"), !cut.withLock({ $0 }) {
      cut.withLock { $0 = true }
      let channel = context.channel
      guard name.hasPrefix("rst"), let options = channel as? any SocketOptionProvider else {
        channel.close(promise: nil)
        return
      }
      // SO_LINGER 0: the close sends a reset.
      options.setSoLinger(linger(l_onoff: 1, l_linger: 0)).whenComplete { _ in channel.close(promise: nil) }
      return
    }
    guard ["ok", "dup", "slow", "fin", "rst", "ka"].contains(where: { name.hasPrefix($0) }),
      var real = ForgingServer.answer(bytes)
    else { return }
    if name.hasPrefix("ka"), asked, let units = UInt16(name.dropFirst(2).prefix { $0 != "-" }),
      var reply = try? Message.parse(real), var edns = reply.edns
    {
      edns.options.removeAll { $0.code == EDNSOption.keepaliveCode }
      edns.options.append(EDNSOption(code: EDNSOption.keepaliveCode, data: [UInt8(units >> 8), UInt8(units & 0xFF)]))
      reply.edns = edns
      real = reply.serialize()
    }
    var out = context.channel.allocator.buffer(capacity: 2 * (real.count + 2))
    out.writeLengthPrefixed(real)
    if name.hasPrefix("dup") { out.writeLengthPrefixed(real) }
    let channel = context.channel
    if name.hasPrefix("slow") {
      let late = out
      channel.eventLoop.scheduleTask(in: .seconds(1)) { channel.writeAndFlush(late, promise: nil) }
    } else {
      channel.writeAndFlush(out, promise: nil)
    }
  }
}

/// Do53 over TCP reuses one connection per server (T-12 to T-17).
@Suite struct Do53TCPPoolTests {
  func query(_ name: String) throws -> Message { try randomIDQuery(name) }

  /// `edns`: the query carries EDNS, as the resolver's do (those without are for servers that
  /// do not take it).
  func ask(
    _ pool: Do53TCPPool, _ server: CountingTCPServer, _ name: String, timeout: TimeAmount = .seconds(5),
    edns: Bool = false
  ) async throws -> Message {
    var q = try query(name)
    if edns { q.edns = EDNS(udpPayloadSize: 1232) }
    let address = try server.address
    return try await pool.query(
      q, matcher: ResponseMatcher(query: q, acceptsMissingCookie: true), to: address, timeout: timeout)
  }

  func waitFor(_ what: @escaping @Sendable () -> Bool) async {
    for _ in 0..<600 where !what() { try? await Task.sleep(for: .milliseconds(10)) }
  }

  @Test func queriesOneAfterAnotherAndAtOnceShareOneConnectionThatClosesWhenIdle() async throws {
    let server = try await CountingTCPServer()
    defer { Task { await server.stop() } }
    let pool = Do53TCPPool(group: poolTestGroup, idleTimeout: .seconds(1))
    for i in 0..<3 { #expect(try await ask(pool, server, "ok\(i).test.").answers.count == 1) }
    try await withThrowingTaskGroup(of: Int.self) { group in
      for i in 0..<8 { group.addTask { try await ask(pool, server, "ok-p\(i).test.").answers.count } }
      for try await count in group { #expect(count == 1) }
    }
    #expect(server.accepted.value == 1)
    #expect(pool.counters.opened.value == 1)
    #expect(pool.counters.reusedQueries.value == 10, "10 of the 11 queries went on the open connection")
    #expect(pool.count == 1)
    // T-17: idle for longer than its timeout, the connection is closed and forgotten.
    await waitFor { pool.count == 0 && server.closed.value == 1 }
    #expect(pool.count == 0)
    #expect(server.closed.value == 1)
    #expect(try await ask(pool, server, "ok-again.test.").answers.count == 1)
    #expect(server.accepted.value == 2)
    #expect(pool.counters.statistics == Do53TCPStatistics(opened: 2, reusedQueries: 10))
  }

  /// T-20: every query over the connection asks for edns-tcp-keepalive; T-17: the server's
  /// TIMEOUT of 0.5 s closes it idle after 0.45 s, not after the pool's 30 s. A query without
  /// EDNS (for a server that does not take it) gets no option.
  @Test func theServersKeepaliveShortensTheIdleTime() async throws {
    let server = try await CountingTCPServer()
    defer { Task { await server.stop() } }
    let pool = Do53TCPPool(group: poolTestGroup, idleTimeout: .seconds(30))
    #expect(try await ask(pool, server, "ok.test.").answers.count == 1)
    #expect(server.keepaliveAsked.value == 0, "an option added to a query without EDNS")
    #expect(try await ask(pool, server, "ok2.test.", edns: true).answers.count == 1)
    #expect(try await ask(pool, server, "ka5-a.test.", edns: true).answers.count == 1)
    #expect(server.keepaliveAsked.value == 2)
    #expect(server.accepted.value == 1)
    await waitFor { server.closed.value == 1 }
    #expect(server.closed.value == 1, "the connection outlived the server's keepalive")
    #expect(pool.count == 0)
  }

  /// T-21: a TIMEOUT of 0 takes the connection out of use: a query sent while another is still
  /// outstanding on it goes on a new connection, and the old one closes once its last query is
  /// answered.
  @Test func aKeepaliveOfZeroTakesTheConnectionOutOfUse() async throws {
    let server = try await CountingTCPServer()
    defer { Task { await server.stop() } }
    let pool = Do53TCPPool(group: poolTestGroup, idleTimeout: .seconds(30))
    async let slow = ask(pool, server, "slow-a.test.", edns: true)
    try await Task.sleep(for: .milliseconds(100))
    #expect(try await ask(pool, server, "ka0-b.test.", edns: true).answers.count == 1)
    #expect(try await ask(pool, server, "ok-c.test.", edns: true).answers.count == 1)
    #expect(server.accepted.value == 2, "a query went on the connection after its TIMEOUT 0")
    #expect(try await slow.answers.count == 1)
    await waitFor { server.closed.value == 1 }
    #expect(server.closed.value == 1, "the connection stayed open after TIMEOUT 0")
    #expect(pool.counters.statistics == Do53TCPStatistics(opened: 2, reusedQueries: 1, retired: 1))
  }

  @Test func aQueryThatTimedOutRetiresItsConnection() async throws {
    let server = try await CountingTCPServer()
    defer { Task { await server.stop() } }
    let pool = Do53TCPPool(group: poolTestGroup)
    #expect(try await ask(pool, server, "ok.test.").answers.count == 1)
    await #expect(throws: TransportError.timeout) {
      try await ask(pool, server, "silent.test.", timeout: .milliseconds(200))
    }
    // The server let a query go unanswered: the next one goes on a new connection, and the old
    // one (nothing outstanding on it) is closed.
    #expect(try await ask(pool, server, "ok2.test.").answers.count == 1)
    #expect(server.accepted.value == 2)
    #expect(pool.counters.statistics == Do53TCPStatistics(opened: 2, reusedQueries: 1, retired: 1))
    await waitFor { server.closed.value == 1 }
    #expect(server.closed.value == 1)
  }

  /// T-17 under pressure: with the table full, a new server's connection takes the place of
  /// the one idle the longest, which closes; the one used more recently stays, and the new one
  /// is kept for its server's next query.
  @Test func pastTheConnectionCapTheLongestIdleConnectionMakesRoom() async throws {
    let (a, b, c) = (try await CountingTCPServer(), try await CountingTCPServer(), try await CountingTCPServer())
    defer {
      Task {
        for server in [a, b, c] { await server.stop() }
      }
    }
    // The idle time stays 30 s with the table full: only the eviction closes a connection here.
    let pool = Do53TCPPool(group: poolTestGroup, maxConnections: 2, minimumIdleTimeout: .seconds(30))
    #expect(try await ask(pool, a, "ok.test.").answers.count == 1)
    #expect(try await ask(pool, b, "ok.test.").answers.count == 1)
    #expect(try await ask(pool, a, "ok2.test.").answers.count == 1)  // b is now idle the longest
    #expect(try await ask(pool, c, "ok.test.").answers.count == 1)
    await waitFor { b.closed.value == 1 }
    #expect(b.closed.value == 1, "the longest idle connection was kept past the cap")
    #expect(a.closed.value == 0, "the connection used more recently was closed")
    #expect(pool.count == 2)
    #expect(try await ask(pool, c, "ok2.test.").answers.count == 1)
    #expect(try await ask(pool, a, "ok3.test.").answers.count == 1)
    #expect(c.accepted.value == 1, "the new server's connection was not kept")
    #expect(a.accepted.value == 1)
    #expect(c.closed.value == 0)
    #expect(pool.counters.statistics == Do53TCPStatistics(opened: 3, reusedQueries: 3, evicted: 1))
  }

  /// With the table full and every kept connection busy, a new server's connection carries its
  /// query and closes; the busy one is not touched.
  @Test func pastTheConnectionCapWithNoneIdleANewConnectionCarriesOneQueryAndCloses() async throws {
    let a = try await CountingTCPServer()
    let b = try await CountingTCPServer()
    defer {
      Task {
        await a.stop()
        await b.stop()
      }
    }
    let pool = Do53TCPPool(group: poolTestGroup, maxConnections: 1, minimumIdleTimeout: .seconds(30))
    async let slow = ask(pool, a, "slow.test.")
    await waitFor { a.accepted.value == 1 }
    #expect(try await ask(pool, b, "ok.test.").answers.count == 1)
    await waitFor { b.closed.value == 1 }
    #expect(b.closed.value == 1, "the connection over the cap was kept")
    #expect(try await slow.answers.count == 1)
    #expect(pool.count == 1)
    #expect(a.closed.value == 0)
    #expect(try await ask(pool, a, "ok2.test.").answers.count == 1)
    #expect(a.accepted.value == 1)
    #expect(pool.counters.statistics == Do53TCPStatistics(opened: 2, reusedQueries: 1, oneOff: 1))
  }

  /// T-17 "less under pressure": a connection that falls idle with the table full closes after
  /// `minimumIdleTimeout` (0.5 s here), not after the pool's 30 s; with at most half the table
  /// taken one keeps the whole idle time, and in between the idle time shrinks with the room left.
  @Test func aConnectionThatFallsIdleWithTheTableFullClosesSooner() async throws {
    var made: [CountingTCPServer] = []
    for _ in 0..<3 { made.append(try await CountingTCPServer()) }
    let servers = made
    defer {
      Task {
        for server in servers { await server.stop() }
      }
    }
    let pool = Do53TCPPool(
      group: poolTestGroup, idleTimeout: .seconds(30), maxConnections: 2, minimumIdleTimeout: .milliseconds(500))
    #expect(try await ask(pool, servers[0], "ok.test.").answers.count == 1)
    #expect(pool.idleTimeUnderPressure() == .seconds(30))
    #expect(try await ask(pool, servers[1], "ok.test.").answers.count == 1)
    await waitFor { servers[1].closed.value == 1 }
    #expect(servers[1].closed.value == 1, "an idle connection of a full table kept the pool's 30 s")
    try await Task.sleep(for: .seconds(1))
    #expect(servers[0].closed.value == 0, "a connection that fell idle without pressure closed early")
    #expect(pool.count == 1)

    let wide = Do53TCPPool(group: poolTestGroup, idleTimeout: .seconds(30), maxConnections: 4)
    for server in servers { #expect(try await ask(wide, server, "ok2.test.").answers.count == 1) }
    #expect(wide.idleTimeUnderPressure() == .seconds(15))  // 3 of 4: half the room left
  }

  /// T-37: after this machine's address changed (a laptop on another network), the connection
  /// opened from the old address takes no new queries: the next one goes on a new connection,
  /// and the old one, with nothing outstanding, is closed. Until then, one connection serves all.
  @Test func aConnectionFromBeforeAnAddressChangeTakesNoNewQueries() async throws {
    let server = try await CountingTCPServer()
    defer { Task { await server.stop() } }
    let address = StateLock<[UInt8]>([192, 0, 2, 1])
    let watch = LocalAddressWatch(interval: 0, time: SystemTimeSource()) { address.withLock { $0 } }
    let pool = Do53TCPPool(group: poolTestGroup) { watch.generation() }
    #expect(try await ask(pool, server, "ok1.test.").answers.count == 1)
    #expect(try await ask(pool, server, "ok2.test.").answers.count == 1)
    #expect(server.accepted.value == 1)
    address.withLock { $0 = [198, 51, 100, 7] }
    #expect(try await ask(pool, server, "ok3.test.").answers.count == 1)
    #expect(server.accepted.value == 2, "a query went on the connection from the old address")
    await waitFor { server.closed.value == 1 }
    #expect(server.closed.value == 1, "the connection from the old address stayed open")
    #expect(try await ask(pool, server, "ok4.test.").answers.count == 1)
    #expect(server.accepted.value == 2)
    #expect(pool.count == 1)
    #expect(pool.counters.statistics == Do53TCPStatistics(opened: 2, reusedQueries: 2, retired: 1))
  }

  /// A connection taken out of use for a timeout while another query is outstanding on it stays
  /// in the table until that one is answered; an address change meanwhile replaces it without
  /// counting it as retired a second time.
  @Test func aConnectionRetiredTwiceIsCountedOnce() async throws {
    let server = try await CountingTCPServer()
    defer { Task { await server.stop() } }
    let address = StateLock<[UInt8]>([192, 0, 2, 1])
    let watch = LocalAddressWatch(interval: 0, time: SystemTimeSource()) { address.withLock { $0 } }
    let pool = Do53TCPPool(group: poolTestGroup) { watch.generation() }
    async let slow = ask(pool, server, "slow-a.test.")  // answered after 1 s
    await waitFor { server.accepted.value == 1 }
    await #expect(throws: TransportError.timeout) {
      try await ask(pool, server, "silent.test.", timeout: .milliseconds(200))
    }
    #expect(pool.counters.retired.value == 1)
    address.withLock { $0 = [198, 51, 100, 7] }
    #expect(try await ask(pool, server, "ok.test.").answers.count == 1)
    #expect(try await slow.answers.count == 1)
    #expect(server.accepted.value == 2)
    #expect(pool.counters.statistics == Do53TCPStatistics(opened: 2, reusedQueries: 1, retired: 1))
  }

  /// The same through `Do53Transport`, whose pool follows the transport's address watch (the one
  /// its DNS Cookies follow).
  @Test func theTransportsTCPConnectionsFollowItsAddressWatch() async throws {
    let server = try await CountingTCPServer()
    defer { Task { await server.stop() } }
    let address = StateLock<[UInt8]>([192, 0, 2, 1])
    let watch = LocalAddressWatch(interval: 0, time: SystemTimeSource()) { address.withLock { $0 } }
    let transport = Do53Transport(group: poolTestGroup, addressWatch: watch)
    let endpoint = try #require(ServerEndpoint(ip: "127.0.0.1", port: server.port))
    func ask(_ name: String) async throws -> Int {
      try await transport.queryTCP(try query(name), to: endpoint, timeout: .seconds(5)).answers.count
    }
    #expect(try await ask("ok1.test.") == 1)
    #expect(try await ask("ok2.test.") == 1)
    #expect(server.accepted.value == 1)
    address.withLock { $0 = [198, 51, 100, 7] }
    #expect(try await ask("ok3.test.") == 1)
    #expect(server.accepted.value == 2, "a query went on the connection from the old address")
  }

  /// A timeout the resolution's deadline made (its time cut short) says nothing about the
  /// connection: it stays in use.
  @Test func aTimeoutCutShortByTheDeadlineKeepsTheConnection() async throws {
    let server = try await CountingTCPServer()
    defer { Task { await server.stop() } }
    let pool = Do53TCPPool(group: poolTestGroup)
    #expect(try await ask(pool, server, "ok.test.").answers.count == 1)
    let q = try query("silent.test.")
    let address = try server.address
    await #expect(throws: TransportError.timeout) {
      try await pool.query(
        q, matcher: ResponseMatcher(query: q), to: address, timeout: .milliseconds(200), timeoutRetires: false)
    }
    #expect(try await ask(pool, server, "ok2.test.").answers.count == 1)
    #expect(server.accepted.value == 1)
  }

  /// An answer nobody waits for (here, each answer sent twice) retires the connection, which,
  /// with nothing outstanding, closes at once instead of staying open unused.
  @Test func anUnmatchedAnswerClosesAnIdleConnection() async throws {
    let server = try await CountingTCPServer()
    defer { Task { await server.stop() } }
    let mismatches = Counter()
    let pool = Do53TCPPool(group: poolTestGroup, mismatches: mismatches)
    let r = try await ask(pool, server, "dup.test.")
    #expect(r.answers.count == 1)
    await waitFor { server.closed.value == 1 }
    #expect(server.closed.value == 1, "a connection that received an unmatched answer stayed open")
    #expect(mismatches.value == 1)
    #expect(pool.count == 0)
    #expect(try await ask(pool, server, "ok.test.").answers.count == 1)
    #expect(server.accepted.value == 2)
    #expect(pool.counters.statistics == Do53TCPStatistics(opened: 2, retired: 1))
  }

  /// Two queries in flight with one message ID (T-13: unique on a connection): the second goes
  /// on a connection of its own, which closes after it; both get their own answers.
  @Test func aQueryWhoseIDIsInFlightGoesOnAConnectionOfItsOwn() async throws {
    let server = try await CountingTCPServer()
    defer { Task { await server.stop() } }
    let pool = Do53TCPPool(group: poolTestGroup)
    var a = try query("slow-a.test.")
    var b = try query("slow-b.test.")
    a.header.id = 4242
    b.header.id = 4242
    let (qa, qb) = (a, b)
    async let ra = pool.query(
      qa, matcher: ResponseMatcher(query: qa), to: try server.address, timeout: .seconds(5))
    try await Task.sleep(for: .milliseconds(100))
    async let rb = pool.query(
      qb, matcher: ResponseMatcher(query: qb), to: try server.address, timeout: .seconds(5))
    let (answerA, answerB) = try await (ra, rb)
    #expect(answerA.questions.first?.name == qa.questions.first?.name)
    #expect(answerB.questions.first?.name == qb.questions.first?.name)
    #expect(server.accepted.value == 2)
    await waitFor { server.closed.value == 1 }
    #expect(server.closed.value == 1, "the connection of its own stayed open")
    #expect(pool.count == 1)
    #expect(pool.counters.statistics == Do53TCPStatistics(opened: 2, oneOff: 1))
  }

  /// The server closes (`fin`) or resets (`rst`) a reused connection with eight queries
  /// outstanding on it (RFC 7766 §6.2.4): each goes once more, all on one new connection, and
  /// all are answered.
  @Test(arguments: ["fin", "rst"]) func queriesCutOffByTheServersCloseGoAgainOnOneNewConnection(_ how: String)
    async throws
  {
    let server = try await CountingTCPServer()
    defer { Task { await server.stop() } }
    let pool = Do53TCPPool(group: poolTestGroup)
    #expect(try await ask(pool, server, "ok.test.").answers.count == 1)
    try await withThrowingTaskGroup(of: Int.self) { group in
      for i in 0..<8 { group.addTask { try await ask(pool, server, "slow\(i).test.").answers.count } }
      try await Task.sleep(for: .milliseconds(200))
      group.addTask { try await ask(pool, server, "\(how).test.").answers.count }
      for try await count in group { #expect(count == 1) }
    }
    #expect(server.cut.withLock { $0 }, "the server never closed the connection")
    #expect(server.accepted.value == 2, "the retries did not share one new connection")
    let counted = pool.counters.statistics
    #expect(counted.opened == 2)
    #expect(counted.resent >= 8, "\(counted.resent) queries counted as sent again, 8 were cut off")
  }

  @Test func aRefusedConnectIsUnreachable() async throws {
    // A port bound and not listening, held for the test: no other test's server can take it
    // (a listener closed before the connect could be, with tests running in parallel).
    let (fd, port) = try UDPExchangeEngineTests.boundUDPSocket(type: Int32(SOCK_STREAM.rawValue))
    defer { close(fd) }
    let address = try SocketAddress(ipAddress: "127.0.0.1", port: Int(port))
    let pool = Do53TCPPool(group: poolTestGroup)
    let q = try query("ok.test.")
    do {
      _ = try await pool.query(
        q, matcher: ResponseMatcher(query: q), to: address, timeout: .seconds(2))
      Issue.record("a closed port answered")
    } catch {
      guard case .unreachable = error else {
        Issue.record("expected unreachable, got \(error)")
        return
      }
    }
    #expect(pool.count == 0)
  }
}
