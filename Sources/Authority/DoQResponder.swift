import CDoQServer
import NIOCore
import NIOPosix
import Resolver

/// What a DoQ responder does besides answering (for the demo's misbehaving servers).
public struct DoQBehaviour: Sendable {
  /// Close the connection (DOQ_NO_ERROR) after this many answered queries: a session breaker.
  public var closeConnectionAfterQueries: Int?
  /// Reset every Nth stream (RESET_STREAM, DOQ_INTERNAL_ERROR) instead of answering.
  public var resetEveryNthStream: Int?
  public init(closeConnectionAfterQueries: Int? = nil, resetEveryNthStream: Int? = nil) {
    self.closeConnectionAfterQueries = closeConnectionAfterQueries
    self.resetEveryNthStream = resetEveryNthStream
  }
}

/// Counters of a DoQ responder.
public struct DoQResponderStatistics: Sendable, Equatable {
  public var connectionsAccepted: UInt64
  public var handshakesCompleted: UInt64
  public var queriesAnswered: UInt64
  public var streamsReset: UInt64
  public var datagramsDropped: UInt64
  public var connectionsOpen: UInt64
  /// Datagrams sent, every kind (handshake, answers, ACKs, closes).
  public var datagramsSent: UInt64
}

/// An authoritative DNS-over-QUIC server (RFC 9250) on ngtcp2 in server mode (the C engine in
/// `CDoQServer`), driven from one NIO datagram channel: ALPN `doq`, session tickets and 0-RTT.
public final class DoQResponder: Sendable {
  public let address: SocketAddress
  private let channel: any Channel

  /// Binds UDP host:port (0: any free port) and serves: `answer` gets each query message and
  /// returns the response message, or nil to reset the stream. `steerReusePort`: bind with
  /// SO_REUSEPORT and keep every datagram (see `doqs_bind_udp`), so another server can hold a UDP
  /// socket on the same port without answering QUIC packets (the NSD lab's DoT servers).
  public static func start(
    group: any EventLoopGroup, host: String, port: Int, identity: CertifiedKey, behaviour: DoQBehaviour = .init(),
    handshakeTimeout: TimeAmount = .seconds(5), idleTimeout: TimeAmount = .seconds(30), steerReusePort: Bool = false,
    answer: @escaping @Sendable ([UInt8]) -> [UInt8]?
  ) async throws -> DoQResponder {
    let channel: any Channel
    if steerReusePort {
      var err = [CChar](repeating: 0, count: 256)
      let fd = doqs_bind_udp(host, UInt16(clamping: port), 1, &err, err.count)
      guard fd >= 0 else {
        throw ResponderError.bindFailed(
          String(decoding: err.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self))
      }
      channel = try await DatagramBootstrap(group: group).withBoundSocket(fd).get()
    } else {
      channel = try await DatagramBootstrap(group: group)
        .channelOption(.socketOption(.so_reuseaddr), value: 1)
        .bindClosingOnFailure(to: try .makeAddressResolvingHost(host, port: port))
    }
    guard let bound = channel.localAddress, let ip = bound.ipAddress, let boundPort = bound.port else {
      try? await channel.close()
      throw ResponderError.bindFailed("\(host):\(port)")
    }
    do {
      try await channel.eventLoop.submit {
        let lab = DoQLabBehaviour(behaviour, answer: answer)
        let driver = try DoQServerDriver(
          certificatePEM: identity.certificatePEM, privateKeyPEM: identity.privateKeyPEM, ip: ip, port: boundPort,
          handshakeTimeout: handshakeTimeout, idleTimeout: idleTimeout, handle: lab.handle)
        try channel.pipeline.syncOperations.addHandler(driver, name: DoQServerDriver.name)
      }.get()
    } catch let error as DoQServerError {
      try? await channel.close()
      throw ResponderError.quic(error.message)
    } catch {
      try? await channel.close()
      throw error
    }
    return DoQResponder(address: bound, channel: channel)
  }

  private init(address: SocketAddress, channel: any Channel) {
    self.address = address
    self.channel = channel
  }

  /// The engine's counters.
  public func statistics() async throws -> DoQResponderStatistics {
    let channel = self.channel
    let s = try await channel.eventLoop.submit {
      try channel.pipeline.syncOperations.handler(type: DoQServerDriver.self).statistics
    }.get()
    return DoQResponderStatistics(
      connectionsAccepted: s.accepted, handshakesCompleted: s.handshakes, queriesAnswered: s.queries,
      streamsReset: s.resets, datagramsDropped: s.dropped, connectionsOpen: s.open, datagramsSent: s.sent)
  }

  /// Closes every connection (CONNECTION_CLOSE) and the socket.
  public func stop() async {
    let channel = self.channel
    try? await channel.eventLoop.submit {
      try channel.pipeline.syncOperations.handler(type: DoQServerDriver.self).closeAll()
    }.get()
    try? await channel.close()
  }
}

/// What the lab's responder does with the engine's events: answers from `answer`, with the
/// demo's misbehaviours (`DoQBehaviour`). On the channel's event loop.
final class DoQLabBehaviour {
  private let behaviour: DoQBehaviour
  private let answer: @Sendable ([UInt8]) -> [UInt8]?
  private var answeredPerConnection: [UInt64: Int] = [:]
  private var streamsSeen = 0

  init(_ behaviour: DoQBehaviour, answer: @escaping @Sendable ([UInt8]) -> [UInt8]?) {
    self.behaviour = behaviour
    self.answer = answer
  }

  func handle(_ event: DoQServerEvent, _ driver: DoQServerDriver) {
    switch event {
    case .query(let connection, let stream, let query):
      streamsSeen += 1
      if let n = behaviour.resetEveryNthStream, n > 0, streamsSeen % n == 0 {
        return driver.reset(connection: connection, stream: stream, code: DoQErrorCode.internalError)
      }
      // The engine echoes the query's ID, which is 0 on DoQ (RFC 9250 §4.2.1).
      guard let response = answer(query) else {
        return driver.reset(connection: connection, stream: stream, code: DoQErrorCode.internalError)
      }
      driver.answer(connection: connection, stream: stream, response)
      let answered = answeredPerConnection[connection, default: 0] + 1
      answeredPerConnection[connection] = answered
      if let limit = behaviour.closeConnectionAfterQueries, answered >= limit {
        driver.close(connection: connection, code: DoQErrorCode.noError)
      }
    case .connectionClosed(let connection, _):
      answeredPerConnection[connection] = nil
    case .handshakeCompleted:
      break
    }
  }
}
