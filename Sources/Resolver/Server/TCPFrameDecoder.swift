import NIOCore

/// Splits a TCP byte stream into DNS messages by their 2-octet length prefix (RFC 7766 §8).
struct TCPFrameDecoder: ByteToMessageDecoder {
  typealias InboundOut = ByteBuffer

  mutating func decode(context: ChannelHandlerContext, buffer: inout ByteBuffer) throws -> DecodingState {
    guard let length = buffer.getInteger(at: buffer.readerIndex, as: UInt16.self),
      buffer.readableBytes >= 2 + Int(length)
    else { return .needMoreData }
    buffer.moveReaderIndex(forwardBy: 2)
    guard let frame = buffer.readSlice(length: Int(length)) else { return .needMoreData }
    context.fireChannelRead(wrapInboundOut(frame))
    return .continue
  }

  mutating func decodeLast(context: ChannelHandlerContext, buffer: inout ByteBuffer, seenEOF: Bool) throws
    -> DecodingState
  {
    while try decode(context: context, buffer: &buffer) == .continue {}
    return .needMoreData  // a partial frame at EOF is discarded
  }

  /// `message` with its 2-octet length prefix.
  static func frame(_ message: [UInt8], allocator: ByteBufferAllocator) -> ByteBuffer {
    var buffer = allocator.buffer(capacity: message.count + 2)
    buffer.writeInteger(UInt16(truncatingIfNeeded: message.count))
    buffer.writeBytes(message)
    return buffer
  }
}
