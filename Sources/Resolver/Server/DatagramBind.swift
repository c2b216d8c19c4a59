import NIOCore
import NIOPosix

extension DatagramBootstrap {
  /// Binds a UDP channel to `address`, with `initialize` run after the bootstrap's own channel
  /// initializer, and closes the channel on every failure (an option, the initializer, or the
  /// bind itself, e.g. a port already taken). NIO's `bind(to:).get()` does not close a channel
  /// whose bind failed: its pipeline and handlers hold it in a reference cycle, socket and all.
  public func bindClosingOnFailure(
    to address: SocketAddress,
    initialize: @escaping @Sendable (any Channel) -> EventLoopFuture<Void> = {
      $0.eventLoop.makeSucceededVoidFuture()
    }
  ) async throws -> any Channel {
    // The async form closes the channel on any failure of its set-up chain.
    try await bind(to: address) { channel in initialize(channel).map { channel } }
  }
}
