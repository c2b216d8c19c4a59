import NIOCore
import NIOPosix

extension DatagramBootstrap {
  /// Binds a UDP channel to `address` with `initialize` as its channel initializer, and closes the
  /// channel when the bind fails (a port already taken). NIO's `bind(to:)` leaves such a channel
  /// open: its pipeline and handlers hold it in a reference cycle that nothing frees, socket and all.
  public func bindClosingOnFailure(
    to address: SocketAddress,
    initialize: @escaping @Sendable (any Channel) -> EventLoopFuture<Void> = {
      $0.eventLoop.makeSucceededVoidFuture()
    }
  ) async throws -> any Channel {
    let made = StateLock<(any Channel)?>(nil)
    do {
      return try await channelInitializer { channel in
        made.withLock { $0 = channel }
        return initialize(channel)
      }
      .bind(to: address).get()
    } catch {
      if let channel = made.withLock({ $0 }) {
        try? await channel.close()
      }
      throw error
    }
  }
}
