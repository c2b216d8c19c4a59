import NIOCore

/// Fired inbound once the TLS handshake has finished and ALPN was acceptable.
struct DoTHandshakeCompleted {
  var info: TLSHandshakeInfo
}

/// Fired inbound when the server sent close_notify (before the channel closes).
struct DoTCloseNotifyReceived {}

/// Runs a `TLSClientEngine` on a TCP channel: ciphertext below, plaintext `ByteBuffer`s above.
/// Starts the handshake when the channel becomes active; writes from above wait for the handshake.
/// Fatal TLS errors are fired as `EncryptedFailure` through `errorCaught`, then the channel is closed.
/// A close from above sends close_notify first.
final class TLSClientHandler: ChannelDuplexHandler {
  typealias InboundIn = ByteBuffer
  typealias InboundOut = ByteBuffer
  typealias OutboundIn = ByteBuffer
  typealias OutboundOut = ByteBuffer

  private enum State { case idle, handshaking, active, closed }

  private let engine: TLSClientEngine
  private let startedAt: Double
  private let time: any TimeSource
  private var state = State.idle
  /// Plaintext written before the handshake finished (or refused by OpenSSL with WANT_READ).
  private var pendingWrites = CircularBuffer<(ByteBuffer, EventLoopPromise<Void>?)>(initialCapacity: 4)

  init(engine: TLSClientEngine, startedAt: Double, time: any TimeSource) {
    self.engine = engine
    self.startedAt = startedAt
    self.time = time
  }

  func handlerAdded(context: ChannelHandlerContext) {
    if context.channel.isActive { startHandshake(context: context) }
  }

  func channelActive(context: ChannelHandlerContext) {
    startHandshake(context: context)
    context.fireChannelActive()
  }

  func channelInactive(context: ChannelHandlerContext) {
    state = .closed
    failPendingWrites(ChannelError.ioOnClosedChannel)
    context.fireChannelInactive()
  }

  func channelRead(context: ChannelHandlerContext, data: NIOAny) {
    engine.feed(unwrapInboundIn(data))
    switch state {
    case .handshaking: advanceHandshake(context: context)
    case .active: readPlaintext(context: context)
    case .idle, .closed: break
    }
  }

  func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
    let buffer = unwrapOutboundIn(data)
    switch state {
    case .closed: promise?.fail(ChannelError.ioOnClosedChannel)
    case .idle, .handshaking: pendingWrites.append((buffer, promise))
    case .active:
      if pendingWrites.isEmpty, encrypt(buffer, promise: promise, context: context) != .wantMore { return }
      pendingWrites.append((buffer, promise))
    }
  }

  func flush(context: ChannelHandlerContext) {
    if state == .active { _ = writePending(context: context) }
    context.flush()
  }

  func close(context: ChannelHandlerContext, mode: CloseMode, promise: EventLoopPromise<Void>?) {
    guard state == .active, mode == .all else {
      state = .closed
      context.close(mode: mode, promise: promise)
      return
    }
    state = .closed
    engine.shutdown()
    var out = context.channel.allocator.buffer(capacity: 64)
    engine.drainOutput(into: &out)
    // Let close_notify reach the socket before closing it.
    context.writeAndFlush(wrapOutboundOut(out)).assumeIsolated().whenComplete { _ in
      context.close(mode: mode, promise: promise)
    }
  }

  private func startHandshake(context: ChannelHandlerContext) {
    guard state == .idle else { return }
    state = .handshaking
    advanceHandshake(context: context)
  }

  private func advanceHandshake(context: ChannelHandlerContext) {
    switch engine.handshake() {
    case .wantMore: flushOutput(context: context)
    case .failed(let failure): fail(failure, context: context)
    case .closeNotify: fail(.tlsError("close_notify during the handshake"), context: context)
    case .done:
      flushOutput(context: context)
      let info = engine.handshakeInfo(handshakeMs: (time.now() - startedAt) * 1000)
      if let alpn = info.alpn, alpn != TLSClientEngine.alpnProtocol {
        fail(.alpnMismatch(alpn), context: context)
        return
      }
      state = .active
      context.fireUserInboundEventTriggered(DoTHandshakeCompleted(info: info))
      guard state == .active else { return }
      _ = writePending(context: context)
      context.flush()
      // Application data or tickets may have arrived with the server's last flight.
      readPlaintext(context: context)
    }
  }

  private func readPlaintext(context: ChannelHandlerContext) {
    var plaintext = context.channel.allocator.buffer(capacity: 0)
    let step = engine.read(into: &plaintext)
    if plaintext.readableBytes > 0 { context.fireChannelRead(wrapInboundOut(plaintext)) }
    switch step {
    case .wantMore, .done:
      // Writes refused with WANT_READ may go now; SSL_read may also have queued output (KeyUpdate).
      if writePending(context: context) { context.flush() }
      flushOutput(context: context)
    case .closeNotify:
      guard state == .active else { return }
      context.fireUserInboundEventTriggered(DoTCloseNotifyReceived())
      state = .closed
      engine.shutdown()
      flushOutput(context: context)
      context.close(promise: nil)
    case .failed(let failure):
      fail(failure, context: context)
    }
  }

  /// Encrypts one plaintext buffer and writes the ciphertext (unflushed). On a fatal error the
  /// promise is failed and the channel torn down.
  private func encrypt(_ buffer: ByteBuffer, promise: EventLoopPromise<Void>?, context: ChannelHandlerContext)
    -> TLSClientEngine.Step
  {
    let step = engine.write(buffer)
    switch step {
    case .done, .closeNotify:
      var out = context.channel.allocator.buffer(capacity: buffer.readableBytes + 64)
      engine.drainOutput(into: &out)
      context.write(wrapOutboundOut(out), promise: promise)
    case .wantMore:
      break
    case .failed(let failure):
      promise?.fail(failure)
      fail(failure, context: context)
    }
    return step
  }

  /// Encrypts pending writes in order, stopping at the first one OpenSSL cannot take yet.
  /// Returns true if anything was written (the caller flushes).
  private func writePending(context: ChannelHandlerContext) -> Bool {
    var wrote = false
    while state == .active, let (buffer, promise) = pendingWrites.first {
      switch encrypt(buffer, promise: nil, context: context) {
      case .wantMore: return wrote
      case .failed: return wrote  // fail() already failed every pending promise
      case .done, .closeNotify: break
      }
      _ = pendingWrites.popFirst()
      promise?.succeed()  // ciphertext is queued on the channel; its own write result is not tracked
      wrote = true
    }
    return wrote
  }

  private func flushOutput(context: ChannelHandlerContext) {
    guard engine.hasOutput else { return }
    var out = context.channel.allocator.buffer(capacity: 1024)
    engine.drainOutput(into: &out)
    context.writeAndFlush(wrapOutboundOut(out), promise: nil)
  }

  private func fail(_ failure: EncryptedFailure, context: ChannelHandlerContext) {
    guard state != .closed else { return }
    state = .closed
    flushOutput(context: context)  // the alert OpenSSL queued for the peer
    failPendingWrites(failure)
    context.fireErrorCaught(failure)
    context.close(promise: nil)
  }

  private func failPendingWrites(_ error: any Error) {
    while let (_, promise) = pendingWrites.popFirst() { promise?.fail(error) }
  }
}
