import Foundation
import NIOCore
import NIOPosix
import Synchronization
import Testing

@testable import Resolver

/// A Do53 server on 127.0.0.1 that speaks DNS Cookies (RFC 7873) in one of a few ways.
final class CookieServer: Sendable {
  enum Mode: Sendable {
    /// Echo the client cookie with server cookie "SRVCOOKI".
    case echo
    /// BADCOOKIE (with a fresh server cookie) to a query that lacks it, then answer.
    case badCookieFirst
    /// Answer twice: first with a wrong client cookie, then correctly.
    case wrongClientCookieFirst
    /// Answer without any cookie.
    case noCookie
  }
  static let serverCookie = Array("SRVCOOKI".utf8)
  let channel: any Channel
  var port: Int { channel.localAddress?.port ?? 0 }

  /// What the server does from now on (the same socket, so the same port).
  func set(_ mode: Mode) { modeBox.set(mode) }
  private let modeBox: ModeBox

  init(_ mode: Mode, port: Int = 0) async throws {
    let box = LogBox()
    let modeBox = ModeBox(mode)
    self.modeBox = modeBox
    channel = try await DatagramBootstrap(group: MultiThreadedEventLoopGroup.singleton)
      .channelInitializer { ch in
        ch.eventLoop.makeCompletedFuture {
          try ch.pipeline.syncOperations.addHandler(CookieHandler(mode: modeBox, log: box))
        }
      }
      .bind(host: "127.0.0.1", port: port).get()
    logBox = box
  }
  let logBox: LogBox
  var received: [Message] { logBox.all }
  func stop() async { try? await channel.close() }
}

/// A Do53 server over TCP on 127.0.0.1 that answers every query with one A record, no cookie.
final class PlainTCPServer: Sendable {
  let channel: any Channel
  var port: Int { channel.localAddress?.port ?? 0 }

  init(port: Int) async throws {
    channel = try await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
      .childChannelInitializer { ch in
        ch.eventLoop.makeCompletedFuture {
          try ch.pipeline.syncOperations.addHandlers([
            ByteToMessageHandler(LengthPrefixedMessageDecoder()), PlainTCPAnswerer(),
          ])
        }
      }
      .bind(host: "127.0.0.1", port: port).get()
  }

  func stop() async { try? await channel.close() }
}

final class PlainTCPAnswerer: ChannelInboundHandler, Sendable {
  typealias InboundIn = ByteBuffer
  typealias OutboundOut = ByteBuffer

  func channelRead(context: ChannelHandlerContext, data: NIOAny) {
    guard var q = try? Message.parse(Array(Self.unwrapInboundIn(data).readableBytesView)),
      let name = q.questions.first?.name, let a = IPv4Address("192.0.2.78")
    else { return }
    q.header.qr = true
    q.header.aa = true
    q.edns = EDNS(udpPayloadSize: 1232)
    q.answers = [ResourceRecord(name: name, type: .a, ttl: 60, rdata: .a(a))]
    let bytes = q.serialize()
    var out = context.channel.allocator.buffer(capacity: bytes.count + 2)
    out.writeInteger(UInt16(bytes.count))
    out.writeBytes(bytes)
    context.writeAndFlush(Self.wrapOutboundOut(out), promise: nil)
  }
}

/// A `CookieServer`'s mode, changeable while it runs.
final class ModeBox: Sendable {
  private let m: Mutex<CookieServer.Mode>
  init(_ mode: CookieServer.Mode) { m = Mutex(mode) }
  var mode: CookieServer.Mode { m.withLock { $0 } }
  func set(_ mode: CookieServer.Mode) { m.withLock { $0 = mode } }
}

final class LogBox: Sendable {
  private let m = Mutex<[Message]>([])
  func add(_ x: Message) { m.withLock { $0.append(x) } }
  var all: [Message] { m.withLock { $0 } }
}

final class CookieHandler: ChannelInboundHandler, Sendable {
  typealias InboundIn = AddressedEnvelope<ByteBuffer>
  typealias OutboundOut = AddressedEnvelope<ByteBuffer>
  let modeBox: ModeBox
  let log: LogBox
  init(mode: ModeBox, log: LogBox) {
    self.modeBox = mode
    self.log = log
  }

  func channelRead(context: ChannelHandlerContext, data: NIOAny) {
    let env = Self.unwrapInboundIn(data)
    guard let q = try? Message.parse(Array(env.data.readableBytesView)), let name = q.questions.first?.name,
      let a = IPv4Address("192.0.2.77")
    else { return }
    log.add(q)
    let client = Array((DNSCookieJar.cookie(in: q) ?? []).prefix(8))
    func reply(_ rcode: RCode, cookie: [UInt8]?) -> [UInt8] {
      var m = q
      m.header.qr = true
      m.header.aa = true
      m.edns = EDNS(
        udpPayloadSize: 1232, options: cookie.map { [EDNSOption(code: EDNSOption.cookieCode, data: $0)] } ?? [])
      m.rcode = rcode
      if rcode == .noError { m.answers = [ResourceRecord(name: name, type: .a, ttl: 60, rdata: .a(a))] }
      return m.serialize()
    }
    var out: [[UInt8]] = []
    switch modeBox.mode {
    case .echo: out = [reply(.noError, cookie: client + CookieServer.serverCookie)]
    case .noCookie: out = [reply(.noError, cookie: nil)]
    case .wrongClientCookieFirst:
      out = [
        reply(.noError, cookie: Array("BADCLIEN".utf8) + CookieServer.serverCookie),
        reply(.noError, cookie: client + CookieServer.serverCookie),
      ]
    case .badCookieFirst:
      let hasServerCookie = (DNSCookieJar.cookie(in: q)?.count ?? 0) > 8
      out = [reply(hasServerCookie ? .noError : .badCookie, cookie: client + CookieServer.serverCookie)]
    }
    for bytes in out {
      context.writeAndFlush(
        Self.wrapOutboundOut(
          AddressedEnvelope(remoteAddress: env.remoteAddress, data: context.channel.allocator.buffer(bytes: bytes))),
        promise: nil)
    }
  }
}

@Suite struct Do53CookieTests {
  func query(_ name: String = "www.example.test.") throws -> Message {
    var m = Message()
    m.header.id = UInt16.random(in: 0...UInt16.max)
    m.questions = [Question(name: try DNSName(name), type: .a)]
    m.edns = EDNS(udpPayloadSize: 1232)
    return m
  }

  func exchange(
    _ server: CookieServer, _ transport: Do53Transport, _ q: Message, timeout: TimeAmount = .seconds(1)
  ) async throws -> ExchangeResult {
    let endpoint = try #require(ServerEndpoint(ip: "127.0.0.1", port: server.port))
    return await Do53Exchanger(transport: transport).exchange(q, server: endpoint, timeout: timeout)
  }

  @Test func clientCookieIsSentAndTheServerCookieLearnedAndEchoed() async throws {
    let server = try await CookieServer(.echo)
    let transport = Do53Transport(group: MultiThreadedEventLoopGroup.singleton)
    let first = try await exchange(server, transport, try query())
    #expect(first.response?.answers.count == 1)
    #expect(transport.cookies.serverCookie(for: "127.0.0.1") == CookieServer.serverCookie)
    _ = try await exchange(server, transport, try query("mail.example.test."))
    let sent = server.received.map { DNSCookieJar.cookie(in: $0) ?? [] }
    #expect(sent.count == 2 && sent[0].count == 8)  // client cookie only, then
    #expect(sent[1].count == 16 && Array(sent[1].suffix(8)) == CookieServer.serverCookie)  // with the server's
    #expect(sent[0].prefix(8) == sent[1].prefix(8))  // a stable client cookie per server
    await server.stop()
  }

  /// the client cookie is HMAC(secret, server address): the same for one server while the
  /// secret lasts (also when remembered between queries), different per server, new after rotation.
  @Test func clientCookiePerServerFollowsTheSecret() throws {
    let clock = FakeTimeSource()
    let jar = DNSCookieJar(rotation: 100, time: clock)
    let secret = jar.state.withLock { $0.secret }
    let a1 = jar.option(for: "192.0.2.1").data
    let a2 = jar.option(for: "192.0.2.1").data
    let b = jar.option(for: "192.0.2.2").data
    let local = jar.state.withLock { $0.localAddress }
    #expect(a1.count == 8 && a1 == a2)
    #expect(a1 == DNSCookieJar.clientCookie(secret, local, "192.0.2.1"))
    #expect(b == DNSCookieJar.clientCookie(secret, local, "192.0.2.2") && b != a1)
    clock.advance(100)
    let rotated = jar.option(for: "192.0.2.1").data
    let newSecret = jar.state.withLock { $0.secret }
    #expect(newSecret != secret)
    #expect(rotated == DNSCookieJar.clientCookie(newSecret, local, "192.0.2.1") && rotated != a1)
    #expect(jar.option(for: "192.0.2.1").data == rotated)
  }

  /// R-35, RFC 7873 §4.1: the client cookie follows our own address too. When the machine's
  /// source address changes (another network), every client cookie changes and the server
  /// cookies are forgotten, so no cookie links the old address to the new one. The address is
  /// looked at once per check interval, not per query.
  @Test func clientCookieChangesWithOurAddress() throws {
    let clock = FakeTimeSource()
    let address = Mutex<[UInt8]>([192, 0, 2, 10])
    let looks = Mutex(0)
    let jar = DNSCookieJar(rotation: 3_600, time: clock, addressCheckInterval: 5) {
      looks.withLock { $0 += 1 }
      return address.withLock { $0 }
    }
    let server = "198.51.100.53"
    let first = jar.option(for: server).data
    var r = Message()
    r.edns = EDNS(udpPayloadSize: 1232)
    r.edns?.options = [EDNSOption(code: EDNSOption.cookieCode, data: first + Array("SERVERCK".utf8))]
    jar.learn(from: r, server: server)
    #expect(jar.option(for: server).data == first + Array("SERVERCK".utf8))
    clock.advance(5)
    #expect(jar.option(for: server).data == first + Array("SERVERCK".utf8), "same address: same cookies")
    #expect(looks.withLock { $0 } == 2, "looked at once at the start and once after the interval")
    address.withLock { $0 = [203, 0, 113, 9] }
    clock.advance(1)
    #expect(jar.option(for: server).data == first + Array("SERVERCK".utf8), "not looked at again before 5 s")
    clock.advance(4)
    let moved = jar.option(for: server).data
    #expect(moved.count == 8 && moved != first, "a new address: a new client cookie, no server cookie")
    #expect(jar.serverCookie(for: server) == nil)
    let secret = jar.state.withLock { $0.secret }
    #expect(moved == DNSCookieJar.clientCookie(secret, [203, 0, 113, 9], server))
    // A late reply to a query sent from the old address does not bring its server cookie back.
    jar.learn(from: r, server: server)
    #expect(jar.serverCookie(for: server) == nil && jar.option(for: server).data == moved)
    // A look that finds nothing (no descriptor, no route for a moment) is no change of address.
    address.withLock { $0 = [] }
    clock.advance(5)
    #expect(jar.option(for: server).data == moved)
  }

  /// the option list a query gets is kept per server, so it must follow what the jar learns:
  /// a new server cookie from a reply, and a new client cookie when the secret rotates.
  @Test func attachedCookieFollowsServerCookieChangesAndRotation() throws {
    let clock = FakeTimeSource()
    let jar = DNSCookieJar(rotation: 100, time: clock)
    let server = "192.0.2.7"
    func attached() -> [UInt8] {
      var q = Message()
      q.edns = EDNS(udpPayloadSize: 1232)
      jar.attach(to: &q, server: server)
      #expect(q.edns?.options.count == 1)
      return DNSCookieJar.cookie(in: q) ?? []
    }
    func reply(serverCookie: String, client: [UInt8]) -> Message {
      var r = Message()
      r.edns = EDNS(udpPayloadSize: 1232)
      r.edns?.options = [EDNSOption(code: EDNSOption.cookieCode, data: client + Array(serverCookie.utf8))]
      return r
    }
    let client = attached()
    #expect(client.count == 8 && attached() == client)
    jar.learn(from: reply(serverCookie: "SRVCOOK1", client: client), server: server)
    #expect(attached() == client + Array("SRVCOOK1".utf8))
    jar.learn(from: reply(serverCookie: "SRVCOOK1", client: client), server: server)
    #expect(attached() == client + Array("SRVCOOK1".utf8))
    jar.learn(from: reply(serverCookie: "SRVCOOK2xx", client: client), server: server)
    #expect(attached() == client + Array("SRVCOOK2xx".utf8))
    clock.advance(100)
    let rotated = attached()
    #expect(rotated.count == 18 && Array(rotated.prefix(8)) != client)
    #expect(Array(rotated.dropFirst(8)) == Array("SRVCOOK2xx".utf8))
    // A query that already carries a COOKIE option has it replaced, not doubled.
    var q = Message()
    q.edns = EDNS(udpPayloadSize: 1232)
    q.edns?.options = [EDNSOption(code: EDNSOption.cookieCode, data: Array(repeating: 1, count: 8))]
    jar.attach(to: &q, server: server)
    #expect(q.edns?.options.count == 1 && DNSCookieJar.cookie(in: q) == rotated)
    // Other options stay, in front of the cookie.
    let padding = EDNSOption(code: 12, data: [0, 0, 0])
    q.edns?.options = [padding]
    jar.attach(to: &q, server: server)
    #expect(q.edns?.options.first == padding && q.edns?.options.count == 2 && DNSCookieJar.cookie(in: q) == rotated)
  }

  /// A server whose cookie the jar forgets (more than `maxServers` servers) gets queries with the
  /// client cookie alone again, not the forgotten server cookie from a kept option list.
  @Test func forgottenServerCookieIsNotSentAgain() throws {
    let jar = DNSCookieJar(rotation: 100, time: FakeTimeSource())
    func attached(_ server: String) -> [UInt8] {
      var q = Message()
      q.edns = EDNS(udpPayloadSize: 1232)
      jar.attach(to: &q, server: server)
      return DNSCookieJar.cookie(in: q) ?? []
    }
    let servers = (0..<DNSCookieJar.maxServers).map { "10.\($0 >> 16).\(($0 >> 8) & 255).\($0 & 255)" }
    for server in servers {
      var r = Message()
      r.edns = EDNS(udpPayloadSize: 1232)
      r.edns?.options = [EDNSOption(code: EDNSOption.cookieCode, data: attached(server) + Array("SERVERCK".utf8))]
      jar.learn(from: r, server: server)
      #expect(attached(server).count == 16)  // kept with the server cookie
    }
    var r = Message()
    r.edns = EDNS(udpPayloadSize: 1232)
    // One more server (its client cookie computed here, so the jar keeps no list for it and every
    // other kept list survives up to here): the jar forgets half of the others' server cookies.
    let (secret, local) = jar.state.withLock { ($0.secret, $0.localAddress) }
    r.edns?.options = [
      EDNSOption(
        code: EDNSOption.cookieCode,
        data: DNSCookieJar.clientCookie(secret, local, "192.0.2.200") + Array("SERVERCK".utf8))
    ]
    jar.learn(from: r, server: "192.0.2.200")
    #expect(jar.state.withLock { $0.optionLists.count } == DNSCookieJar.maxServers / 2)
    let forgotten = servers.filter { jar.serverCookie(for: $0) == nil }
    #expect(forgotten.count == DNSCookieJar.maxServers / 2)
    #expect(forgotten.allSatisfy { attached($0).count == 8 })
    #expect(servers.filter { jar.serverCookie(for: $0) != nil }.allSatisfy { attached($0).count == 16 })
  }

  @Test func replyWithAnotherClientCookieIsDiscarded() async throws {
    let server = try await CookieServer(.wrongClientCookieFirst)
    let transport = Do53Transport(group: MultiThreadedEventLoopGroup.singleton)
    let result = try await exchange(server, transport, try query())
    #expect(result.response?.answers.count == 1)
    #expect(transport.mismatchedResponses == 1)
    #expect(transport.cookies.serverCookie(for: "127.0.0.1") == CookieServer.serverCookie)
    await server.stop()
  }

  @Test func badCookieIsRetriedOnceWithTheNewServerCookie() async throws {
    let server = try await CookieServer(.badCookieFirst)
    let transport = Do53Transport(group: MultiThreadedEventLoopGroup.singleton)
    let result = try await exchange(server, transport, try query())
    #expect(result.response?.rcode == .noError && result.response?.answers.count == 1)
    #expect(result.legs.map(\.transport) == [.do53UDP, .do53UDP])
    #expect(server.received.count == 2)
    // the retry is a new query with an ID of its own (1 in 65,536 to repeat by chance).
    #expect(server.received[0].header.id != server.received[1].header.id)
    await server.stop()
  }

  /// A server known to send cookies answers over UDP without one (a forger, or the server
  /// stopped): the reply is not taken (RFC 7873 §5.3) and the query goes over TCP. Here nothing
  /// listens on TCP, so there is no answer, and the server's cookie is kept.
  @Test func knownCookieServerAnsweringWithoutACookieOverUDPIsNotTaken() async throws {
    let echo = try await CookieServer(.echo)
    let transport = Do53Transport(group: MultiThreadedEventLoopGroup.singleton)
    _ = try await exchange(echo, transport, try query())
    await echo.stop()
    // Same address, now a server without cookies (e.g. a forger): its replies are discarded.
    let plain = try await CookieServer(.noCookie)
    let jarKnowsIt = transport.cookies.serverCookie(for: "127.0.0.1") != nil
    #expect(jarKnowsIt)
    let result = try await exchange(plain, transport, try query())
    #expect(result.response == nil)
    #expect(result.legs.map(\.transport) == [.do53UDP, .do53TCP])
    #expect(transport.cookies.serverCookie(for: "127.0.0.1") == CookieServer.serverCookie)
    await plain.stop()
  }

  /// The server stopped doing cookies altogether (another anycast node, a downgrade): its TCP
  /// answer, which cannot be blind-spoofed, is taken, the cookie forgotten, and the next query
  /// is answered over UDP again. Before, every later query to it timed out.
  @Test func serverThatStoppedSendingCookiesIsReachedOverTCPThenUDP() async throws {
    // One port for both: TCP takes a free one, UDP the same number (tried again if it is taken:
    // other tests' sockets come and go on ephemeral ports meanwhile).
    var pair: (PlainTCPServer, CookieServer)?
    for _ in 0..<20 where pair == nil {
      let tcp = try await PlainTCPServer(port: 0)
      if let udp = try? await CookieServer(.echo, port: tcp.port) { pair = (tcp, udp) } else { await tcp.stop() }
    }
    let (tcp, plain) = try #require(pair)
    let transport = Do53Transport(group: MultiThreadedEventLoopGroup.singleton)
    _ = try await exchange(plain, transport, try query(), timeout: .seconds(10))
    #expect(transport.cookies.serverCookie(for: "127.0.0.1") == CookieServer.serverCookie)
    plain.set(.noCookie)  // the same address and port, no cookies any more
    // A whole 10 s for the UDP leg and the TCP connection: the suite starts all at once, and on a
    // loaded machine a TCP connect and answer have taken over the default 1 s (a CI rehearsal).
    let first = try await exchange(plain, transport, try query(), timeout: .seconds(10))
    #expect(first.response?.answers.count == 1)
    #expect(first.legs.map(\.transport) == [.do53UDP, .do53TCP])
    #expect(transport.cookies.serverCookie(for: "127.0.0.1") == nil)
    let second = try await exchange(plain, transport, try query(), timeout: .seconds(10))
    #expect(second.response?.answers.count == 1)
    #expect(second.legs.map(\.transport) == [.do53UDP])
    await plain.stop()
    await tcp.stop()
  }

  @Test func serversWithoutCookiesAreAnsweredNormally() async throws {
    let server = try await CookieServer(.noCookie)
    let transport = Do53Transport(group: MultiThreadedEventLoopGroup.singleton)
    let result = try await exchange(server, transport, try query())
    #expect(result.response?.answers.count == 1)
    #expect(transport.cookies.serverCookie(for: "127.0.0.1") == nil)
    await server.stop()
  }
}
