import Foundation
import NIOCore
import NIOPosix
import Synchronization
import Testing

@testable import Resolver

/// A Do53 test server on 127.0.0.1 (UDP + TCP, same port) that counts queries and can precede
/// each UDP answer with forged replies (wrong ID) and delay it.
final class ForgingServer: Sendable {
  let udpQueries: Counter
  let tcpQueries: Counter
  let channels: [any Channel]
  let port: Int

  /// Started on a port drawn from 20000-32767 that both its TCP and UDP sockets bind, each bound
  /// directly (no check first, so no one can take the port in between); a taken port is retried
  /// on another, up to 20 draws.
  /// With `gate`, the real UDP answers are held until it opens (after `delay`, if any).
  static func start(forgedPerQuery: Int, delay: TimeAmount = .zero, gate: AnswerGate? = nil) async throws
    -> ForgingServer
  {
    var failures: [String] = []
    for _ in 0..<20 {
      let port = Int.random(in: 20000...32767)
      do {
        return try await start(on: port, forgedPerQuery: forgedPerQuery, delay: delay, gate: gate)
      } catch DoTTestError.setup(let why) {
        failures.append(why)
      }
    }
    throw DoTTestError.setup("no port bound for both TCP and UDP: \(failures.joined(separator: "; "))")
  }

  private static func start(on port: Int, forgedPerQuery: Int, delay: TimeAmount, gate: AnswerGate?) async throws
    -> ForgingServer
  {
    let group = MultiThreadedEventLoopGroup.singleton
    let udpCount = Counter()
    let tcpCount = Counter()
    let tcp: any Channel
    do {
      tcp = try await ServerBootstrap(group: group)
        .childChannelInitializer { ch in
          ch.eventLoop.makeCompletedFuture {
            try ch.pipeline.syncOperations.addHandler(ByteToMessageHandler(LengthPrefixedMessageDecoder()))
            try ch.pipeline.syncOperations.addHandler(TCPAnswerer(count: tcpCount))
          }
        }
        .bind(host: "127.0.0.1", port: port).get()
    } catch {
      throw DoTTestError.setup("TCP port \(port): \(error)")
    }
    let udp: any Channel
    do {
      udp = try await DatagramBootstrap(group: group)
        .bindClosingOnFailure(to: try SocketAddress(ipAddress: "127.0.0.1", port: port)) { ch in
          ch.eventLoop.makeCompletedFuture {
            try ch.pipeline.syncOperations.addHandler(
              ForgingUDPHandler(forged: forgedPerQuery, delay: delay, gate: gate, count: udpCount))
          }
        }
    } catch {
      try? await tcp.close()
      throw DoTTestError.setup("UDP port \(port): \(error)")
    }
    return ForgingServer(udp: udpCount, tcp: tcpCount, channels: [udp, tcp], port: port)
  }

  private init(udp: Counter, tcp: Counter, channels: [any Channel], port: Int) {
    udpQueries = udp
    tcpQueries = tcp
    self.channels = channels
    self.port = port
  }

  func stop() async { for c in channels { try? await c.close() } }

  static func answer(_ bytes: [UInt8], id: UInt16? = nil) -> [UInt8]? {
    guard var m = try? Message.parse(bytes), let q = m.questions.first, let a = IPv4Address("192.0.2.55") else {
      return nil
    }
    m.header.qr = true
    m.header.aa = true
    if let id { m.header.id = id }
    m.answers = [ResourceRecord(name: q.name, type: .a, ttl: 60, rdata: .a(a))]
    return m.serialize()
  }
}

final class ForgingUDPHandler: ChannelInboundHandler, Sendable {
  typealias InboundIn = AddressedEnvelope<ByteBuffer>
  typealias OutboundOut = AddressedEnvelope<ByteBuffer>
  let forged: Int
  let delay: TimeAmount
  let gate: AnswerGate?
  let count: Counter
  init(forged: Int, delay: TimeAmount, gate: AnswerGate? = nil, count: Counter) {
    self.forged = forged
    self.delay = delay
    self.gate = gate
    self.count = count
  }
  func channelRead(context: ChannelHandlerContext, data: NIOAny) {
    let env = Self.unwrapInboundIn(data)
    let bytes = Array(env.data.readableBytesView)
    count.increment()
    guard bytes.count >= 2 else { return }
    let id = UInt16(bytes[0]) << 8 | UInt16(bytes[1])
    let channel = context.channel
    for i in 0..<forged {
      if let f = ForgingServer.answer(bytes, id: id &+ UInt16(i + 1)) {
        channel.writeAndFlush(
          AddressedEnvelope(remoteAddress: env.remoteAddress, data: channel.allocator.buffer(bytes: f)), promise: nil)
      }
    }
    guard let real = ForgingServer.answer(bytes) else { return }
    let out = AddressedEnvelope(remoteAddress: env.remoteAddress, data: channel.allocator.buffer(bytes: real))
    let gate = self.gate
    channel.eventLoop.scheduleTask(in: delay) {
      guard let gate else { return channel.writeAndFlush(out, promise: nil) }
      gate.hold { channel.eventLoop.execute { channel.writeAndFlush(out, promise: nil) } }
    }
  }
}

/// Holds actions until `open()`, then runs them and every later one at once.
final class AnswerGate: Sendable {
  private let state = Mutex<(open: Bool, held: [@Sendable () -> Void])>((false, []))

  func hold(_ action: @escaping @Sendable () -> Void) {
    let now = state.withLock { s in
      if s.open { return true }
      s.held.append(action)
      return false
    }
    if now { action() }
  }

  func open() {
    let held = state.withLock { s in
      s.open = true
      defer { s.held = [] }
      return s.held
    }
    for action in held { action() }
  }
}

final class TCPAnswerer: ChannelInboundHandler, Sendable {
  typealias InboundIn = ByteBuffer
  typealias OutboundOut = ByteBuffer
  let count: Counter
  init(count: Counter) { self.count = count }
  func channelRead(context: ChannelHandlerContext, data: NIOAny) {
    count.increment()
    guard let real = ForgingServer.answer(Array(Self.unwrapInboundIn(data).readableBytesView)) else { return }
    var out = context.channel.allocator.buffer(capacity: real.count + 2)
    out.writeLengthPrefixed(real)
    context.writeAndFlush(Self.wrapOutboundOut(out), promise: nil)
  }
}

/// An A query for `name` under a random ID.
func randomIDQuery(_ name: String) throws -> Message {
  var m = Message()
  m.header.id = UInt16.random(in: 0...UInt16.max)
  m.questions = [Question(name: try DNSName(name), type: .a)]
  return m
}

@Suite struct Do53SpoofingTests {
  func query(_ name: String) throws -> Message { try randomIDQuery(name) }

  @Test func repeatedMismatchesMoveTheQueryToTCP() async throws {
    let server = try await ForgingServer.start(forgedPerQuery: 5, delay: .milliseconds(200))
    defer { Task { await server.stop() } }
    let transport = Do53Transport(group: MultiThreadedEventLoopGroup.singleton)
    let exchanger = Do53Exchanger(transport: transport)
    let endpoint = try #require(ServerEndpoint(ip: "127.0.0.1", port: server.port))
    let result = await exchanger.exchange(try query("www.example.test."), server: endpoint, timeout: .seconds(2))
    // R-34: the UDP exchange gave up after 3 forged replies; TCP got the real answer.
    #expect(result.legs.map(\.transport) == [.do53UDP, .do53TCP])
    #expect(result.legs.first?.error == .spoofSuspected)
    #expect(result.response?.answers.count == 1)
    #expect(server.tcpQueries.value == 1)
    #expect(transport.mismatchedResponses >= Do53Transport.spoofSuspicionThreshold)
  }

  @Test func fewMismatchesAreIgnoredOverUDP() async throws {
    let server = try await ForgingServer.start(forgedPerQuery: 1, delay: .milliseconds(20))
    defer { Task { await server.stop() } }
    let transport = Do53Transport(group: MultiThreadedEventLoopGroup.singleton)
    let endpoint = try #require(ServerEndpoint(ip: "127.0.0.1", port: server.port))
    let result = await Do53Exchanger(transport: transport).exchange(
      try query("www.example.test."), server: endpoint, timeout: .seconds(2))
    #expect(result.legs.map(\.transport) == [.do53UDP])
    #expect(result.response?.answers.count == 1)
    #expect(server.tcpQueries.value == 0)
    #expect(transport.mismatchedResponses == 1)
  }

  @Test func identicalQueriesInFlightAreSentOnce() async throws {
    // The server holds its answers until both questions have reached it and the second www
    // query has joined the first: the three are in flight together however late tasks run.
    let gate = AnswerGate()
    defer { gate.open() }
    let server = try await ForgingServer.start(forgedPerQuery: 0, gate: gate)
    defer { Task { await server.stop() } }
    let transport = Do53Transport(group: MultiThreadedEventLoopGroup.singleton)
    let exchanger = Do53Exchanger(transport: transport)
    let endpoint = try #require(ServerEndpoint(ip: "127.0.0.1", port: server.port))
    let q1 = try query("www.example.test.")
    let q2 = try query("WWW.Example.TEST.")  // same question, other case and ID
    let q3 = try query("other.example.test.")
    async let a = exchanger.exchange(q1, server: endpoint, timeout: .seconds(20))
    async let b = exchanger.exchange(q2, server: endpoint, timeout: .seconds(20))
    async let c = exchanger.exchange(q3, server: endpoint, timeout: .seconds(20))
    for _ in 0..<1000 where server.udpQueries.value < 2 || transport.inflight.waiting < 1 {
      try await Task.sleep(for: .milliseconds(10))
    }
    gate.open()
    let (ra, rb, rc) = await (a, b, c)
    #expect(ra.response != nil && rb.response != nil && rc.response != nil)
    // R-33: www was asked once for both resolutions; other once.
    #expect(server.udpQueries.value == 2)
    #expect(transport.coalescedQueries == 1)
    // Once answered, the same question goes out again (nothing is cached here).
    _ = await exchanger.exchange(q1, server: endpoint, timeout: .seconds(2))
    #expect(server.udpQueries.value == 3)
  }
}
