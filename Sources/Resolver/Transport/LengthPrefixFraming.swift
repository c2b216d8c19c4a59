import NIOCore

/// RFC 1035 §4.2.2 / RFC 7766 framing: each message is preceded by its length in two octets.
public struct LengthPrefixedMessageDecoder: ByteToMessageDecoder {
  public typealias InboundOut = ByteBuffer
  public init() {}
  public mutating func decode(context: ChannelHandlerContext, buffer: inout ByteBuffer) throws -> DecodingState {
    guard let length = buffer.getInteger(at: buffer.readerIndex, as: UInt16.self),
      buffer.readableBytes >= 2 + Int(length)
    else { return .needMoreData }
    buffer.moveReaderIndex(forwardBy: 2)
    guard let frame = buffer.readSlice(length: Int(length)) else { return .needMoreData }
    context.fireChannelRead(Self.wrapInboundOut(frame))
    return .continue
  }
}

extension ByteBuffer {
  /// Appends `message` with its 2-octet length prefix.
  public mutating func writeLengthPrefixed(_ message: [UInt8]) {
    writeInteger(UInt16(truncatingIfNeeded: message.count))
    writeBytes(message)
  }
}
