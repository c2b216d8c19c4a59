import CNgtcp2Shim

/// What the QUIC engine reports after a datagram, a timer or a submitted query (see doq_engine.h).
enum DoQEngineEvent {
  case handshakeCompleted
  case handshakeConfirmed
  /// The server finished the stream; all bytes it sent on it.
  case streamFinished(streamID: Int64, bytes: [UInt8])
  /// The server reset the stream with this DoQ error code (T-29).
  case streamReset(streamID: Int64, code: UInt64)
  /// The stream ended without a response (connection teardown, local cancel).
  case streamClosed(streamID: Int64, code: UInt64)
  /// The response exceeded 65535 octets; the stream was abandoned.
  case streamOverflow(streamID: Int64)
  /// A resumption blob to hand to `onTicket`.
  case ticket([UInt8])
  /// More streams may be opened.
  case streamsAvailable
  /// The server refused 0-RTT: queries sent early must be sent again.
  case earlyDataRejected

  init?(_ event: doq_event) {
    switch Int(event.type) {
    case Int(DOQ_EVENT_HANDSHAKE_COMPLETED): self = .handshakeCompleted
    case Int(DOQ_EVENT_HANDSHAKE_CONFIRMED): self = .handshakeConfirmed
    case Int(DOQ_EVENT_STREAM_FIN):
      self = .streamFinished(streamID: event.stream_id, bytes: Self.bytes(event))
    case Int(DOQ_EVENT_STREAM_RESET): self = .streamReset(streamID: event.stream_id, code: event.code)
    case Int(DOQ_EVENT_STREAM_CLOSED): self = .streamClosed(streamID: event.stream_id, code: event.code)
    case Int(DOQ_EVENT_STREAM_OVERFLOW): self = .streamOverflow(streamID: event.stream_id)
    case Int(DOQ_EVENT_TICKET): self = .ticket(Self.bytes(event))
    case Int(DOQ_EVENT_STREAMS_AVAILABLE): self = .streamsAvailable
    case Int(DOQ_EVENT_EARLY_DATA_REJECTED): self = .earlyDataRejected
    default: return nil
    }
  }

  private static func bytes(_ event: doq_event) -> [UInt8] {
    guard let data = event.data, event.len > 0 else { return [] }
    return Array(UnsafeBufferPointer(start: data, count: event.len))
  }
}
