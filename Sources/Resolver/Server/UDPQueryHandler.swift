import NIOCore

/// Answers client datagrams. Repeated questions are answered from the packet cache on the event
/// loop (`FastPath`); the rest are resolved each in its own task and the response is sent back to
/// the datagram's source from the channel's event loop. Writes from one read batch go out with one
/// flush (sendmmsg).
final class UDPQueryHandler: ChannelInboundHandler {
  typealias InboundIn = AddressedEnvelope<ByteBuffer>
  typealias OutboundOut = AddressedEnvelope<ByteBuffer>

  private let processor: QueryProcessor
  private let fastPath: FastPath?
  private var pendingFlush = false

  init(processor: QueryProcessor, fastPath: FastPath? = nil) {
    self.processor = processor
    self.fastPath = fastPath
  }

  func channelRead(context: ChannelHandlerContext, data: NIOAny) {
    let envelope = unwrapInboundIn(data)
    let client = envelope.remoteAddress
    if QueryProcessor.isReflectorPort(client.port.map { UInt16(clamping: $0) }) {
      return processor.dropFromReflectorPort()
    }
    // No copy of the processor (a struct of references) before the fast path has had its go.
    guard self.processor.admit(client) else { return }  // over the client's rate: no task, no answer
    var learn: (FastQuery, UInt64)?
    if let fastPath {
      switch fastPath.lookup(envelope.data, from: client, allocator: context.channel.allocator) {
      case .hit(let response):
        context.write(
          wrapOutboundOut(AddressedEnvelope(remoteAddress: client, data: response)), promise: nil)
        pendingFlush = true
        return
      case .miss(let query, let generation):
        learn = query.map { ($0, generation) }
      }
    }
    let raw = Array(envelope.data.readableBytesView)
    let processor = self.processor
    let channel = context.channel
    let fastPath = self.fastPath
    let learned = learn
    let promise = context.eventLoop.makePromise(of: ([UInt8]?, Bool).self)
    // On the upstream engine's thread, as UDPSocketLoop's full path (see UDPExchangeEngine).
    UDPExchangeEngine.resolutions.run {
      await processor.process(raw, from: client, via: .udp) { promise.succeed(($0, $1)) }
    }
    promise.futureResult.whenSuccess { response, replayable in  // runs on the channel's event loop
      guard let response else { return }
      if channel.isActive {
        let buffer = channel.allocator.buffer(bytes: response)
        channel.writeAndFlush(AddressedEnvelope(remoteAddress: client, data: buffer), promise: nil)
      }
      if replayable, let fastPath, let (query, generation) = learned {
        fastPath.learn(response, for: query, generation: generation)
      }
    }
  }

  func channelReadComplete(context: ChannelHandlerContext) {
    if pendingFlush {
      pendingFlush = false
      context.flush()
    }
    context.fireChannelReadComplete()
  }
}
