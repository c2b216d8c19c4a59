import NIOCore

#if canImport(Glibc)
  import Glibc
#endif

/// Acknowledges the server's segments at once while an answer is outstanding (Linux TCP_QUICKACK,
/// which the kernel clears again by itself, so it is re-armed after each read that leaves a query
/// unanswered).
///
/// NSD and BIND write a DoT answer right after their TLS session tickets with Nagle on; with the
/// client's delayed ACK the first answer of a new connection waited ~40 ms, and later answers
/// queued behind unacknowledged data waited too (../shared/notes/lab.md). Once every query is
/// answered the server has nothing left to hold back, so the ACK waits for the next query, which
/// carries it: no bare ACK segment, and no setsockopt, per answer.
final class QuickAckHandler: ChannelInboundHandler {
  typealias InboundIn = ByteBuffer
  typealias InboundOut = ByteBuffer

  private let awaitingAnswers: () -> Bool
  private let arm: (any Channel) -> Void

  /// `awaitingAnswers` tells, after a read has gone up the pipeline, whether a query is still
  /// unanswered; `arm` sets the option (tests record it instead).
  init(
    awaitingAnswers: @escaping () -> Bool,
    arm: @escaping (any Channel) -> Void = QuickAckHandler.setQuickAck
  ) {
    self.awaitingAnswers = awaitingAnswers
    self.arm = arm
  }

  func channelActive(context: ChannelHandlerContext) {
    arm(context.channel)
    context.fireChannelActive()
  }

  func channelRead(context: ChannelHandlerContext, data: NIOAny) {
    context.fireChannelRead(data)
    if awaitingAnswers() { arm(context.channel) }
  }

  /// Sets TCP_QUICKACK on the channel's socket (Linux; a no-op elsewhere).
  static func setQuickAck(_ channel: any Channel) {
    #if os(Linux)
      let option = ChannelOptions.Types.SocketOption(
        level: .tcp, name: .init(rawValue: CInt(TCP_QUICKACK)))
      try? channel.syncOptions?.setOption(option, value: 1)
    #endif
  }
}
