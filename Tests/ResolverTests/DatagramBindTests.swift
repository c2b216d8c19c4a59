import NIOCore
import NIOPosix
import Testing

@testable import Resolver

@Suite struct DatagramBindTests {
  /// The channel a bind made, held weakly so the test can see it freed.
  struct MadeChannel {
    var made = false
    weak var channel: (any Channel)?
  }

  @Test func aBindToATakenPortFailsAndFreesItsChannel() async throws {
    let group = MultiThreadedEventLoopGroup.singleton
    let holder = try await DatagramBootstrap(group: group).bind(host: "127.0.0.1", port: 0).get()
    let port = try #require(holder.localAddress?.port)
    let seen = StateLock(MadeChannel())
    let taken = try SocketAddress(ipAddress: "127.0.0.1", port: port)
    var bindError: (any Error)?
    do {
      let bootstrap = DatagramBootstrap(group: group)
      let channel = try await bootstrap.bindClosingOnFailure(to: taken) { channel in
        seen.withLock {
          $0.made = true
          $0.channel = channel
        }
        return channel.eventLoop.makeSucceededVoidFuture()
      }
      try? await channel.close()
    } catch {
      bindError = error
    }
    #expect(
      bindError is IOError,
      "bound to a taken port, or failed otherwise: \(String(describing: bindError))")
    try await holder.close()
    #expect(seen.withLock { $0.made })
    // The channel whose bind failed is closed and freed, socket and all: with NIO's own
    // bind(to:) its pipeline holds it forever (LeakSanitizer reports it at exit).
    var freed = false
    for _ in 0..<100 where !freed {
      freed = seen.withLock { $0.channel == nil }
      if !freed { try await Task.sleep(for: .milliseconds(10)) }
    }
    #expect(freed, "the channel of the failed bind is still alive")
  }
}
