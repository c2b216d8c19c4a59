import NIOCore
import NIOPosix
import Resolver

/// Synthetic client traffic for the demo: a mix of names, types, repeats and NXDOMAINs over the
/// demo's zones, sent over UDP to the resolver's listener at `rate` queries per second.
public final class DemoLoad: Sendable {
  private let task: Task<Void, Never>
  private let counts: LoadCounts
  private let channel: any Channel

  /// Starts sending to `target`; the first queries go out at once.
  public static func start(group: any EventLoopGroup, target: SocketAddress, rate: Double, zones: [String])
    async throws -> DemoLoad
  {
    let counts = LoadCounts()
    let local = try SocketAddress(
      ipAddress: target.protocol == .inet6 ? "::1" : "127.0.0.1", port: 0)
    let bootstrap = DatagramBootstrap(group: group)
    let channel = try await bootstrap.bindClosingOnFailure(to: local) { channel in
      channel.eventLoop.makeCompletedFuture {
        try channel.pipeline.syncOperations.addHandler(AnswerCounter(counts: counts))
      }
    }
    let leaves = zones.filter { $0.split(separator: ".").count >= 2 }
    let task = Task {
      var i = 0
      let interval = Duration.seconds(1 / max(0.1, rate))
      while !Task.isCancelled {
        let (name, type) = Self.question(i, leaves: leaves)
        i += 1
        if let query = Self.query(name, type) {
          let buffer = channel.allocator.buffer(bytes: query)
          channel.writeAndFlush(AddressedEnvelope(remoteAddress: target, data: buffer), promise: nil)
          counts.value.withLock { $0.sent += 1 }
        }
        try? await Task.sleep(for: interval)
      }
    }
    return DemoLoad(task: task, counts: counts, channel: channel)
  }

  private init(task: Task<Void, Never>, counts: LoadCounts, channel: any Channel) {
    self.task = task
    self.counts = counts
    self.channel = channel
  }

  /// Queries sent and answers received so far.
  public var progress: (sent: Int, answered: Int) { counts.value.withLock { $0 } }

  /// Stops sending and closes the socket.
  public func stop() async {
    task.cancel()
    try? await channel.close()
  }

  /// The i-th question: zones in turn, a few names and types each; every fifth an NXDOMAIN.
  static func question(_ i: Int, leaves: [String]) -> (String, RRType) {
    guard !leaves.isEmpty else { return ("localhost.", .a) }
    let zone = leaves[i % leaves.count]
    let round = i / leaves.count
    let picks: [(String, RRType)] = [
      ("www.\(zone)", .a), ("www.\(zone)", .aaaa), (zone, .mx), ("txt.\(zone)", .txt), ("alias.\(zone)", .a),
      ("h\(round % 8 + 1).\(zone)", .a), (zone, .ns), ("api.\(zone)", .a),
    ]
    if round % 5 == 4 { return ("no-such-\(round).\(zone)", .a) }
    return picks[round % picks.count]
  }

  static func query(_ name: String, _ type: RRType) -> [UInt8]? {
    guard let qname = try? DNSName(name) else { return nil }
    var m = Message()
    m.header.id = UInt16.random(in: 0...UInt16.max)
    m.header.rd = true
    m.questions = [Question(name: qname, type: type)]
    m.edns = EDNS(udpPayloadSize: 1232)
    return m.serialize()
  }
}

private final class AnswerCounter: ChannelInboundHandler, Sendable {
  typealias InboundIn = AddressedEnvelope<ByteBuffer>
  let counts: LoadCounts
  init(counts: LoadCounts) { self.counts = counts }
  func channelRead(context: ChannelHandlerContext, data: NIOAny) { counts.value.withLock { $0.answered += 1 } }
}

final class LoadCounts: Sendable {
  let value = StateLock((sent: 0, answered: 0))
}
