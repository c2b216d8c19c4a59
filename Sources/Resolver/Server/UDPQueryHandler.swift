import NIOCore

/// Answers client datagrams: each query is resolved in its own task and the response is sent
/// back to the datagram's source from the channel's event loop.
final class UDPQueryHandler: ChannelInboundHandler, Sendable {
  typealias InboundIn = AddressedEnvelope<ByteBuffer>
  typealias OutboundOut = AddressedEnvelope<ByteBuffer>

  private let processor: QueryProcessor

  init(processor: QueryProcessor) { self.processor = processor }

  func channelRead(context: ChannelHandlerContext, data: NIOAny) {
    let envelope = unwrapInboundIn(data)
    let raw = Array(envelope.data.readableBytesView)
    let client = envelope.remoteAddress
    let processor = self.processor
    guard processor.admit(client) else { return }  // over the client's rate: no task, no answer
    let channel = context.channel
    let promise = context.eventLoop.makePromise(of: [UInt8]?.self)
    promise.completeWithTask { await processor.process(raw, from: client, overTCP: false) }
    promise.futureResult.whenSuccess { response in  // runs on the channel's event loop
      guard let response, channel.isActive else { return }
      let buffer = channel.allocator.buffer(bytes: response)
      channel.writeAndFlush(AddressedEnvelope(remoteAddress: client, data: buffer), promise: nil)
    }
  }
}
