#if canImport(Glibc)
  import Glibc
#endif
import NIOCore

/// Acknowledges every segment from the server at once (Linux TCP_QUICKACK, which the kernel
/// clears again by itself, so it is re-armed on each read).
///
/// NSD and BIND write a DoT answer right after their TLS session tickets with Nagle on; with the
/// client's delayed ACK the first answer of a new connection waited ~40 ms, and later answers
/// queued behind unacknowledged data waited too (../shared/notes/lab.md).
final class QuickAckHandler: ChannelInboundHandler {
  typealias InboundIn = ByteBuffer
  typealias InboundOut = ByteBuffer

  func channelActive(context: ChannelHandlerContext) {
    Self.arm(context.channel)
    context.fireChannelActive()
  }

  func channelRead(context: ChannelHandlerContext, data: NIOAny) {
    Self.arm(context.channel)
    context.fireChannelRead(data)
  }

  private static func arm(_ channel: any Channel) {
    #if os(Linux)
      let option = ChannelOptions.Types.SocketOption(level: .tcp, name: .init(rawValue: CInt(TCP_QUICKACK)))
      try? channel.syncOptions?.setOption(option, value: 1)
    #endif
  }
}
