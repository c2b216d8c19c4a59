import COpenSSL
import NIOCore

/// TLS for one client connection (DoT, RFC 7858) on OpenSSL over memory BIOs. Ciphertext read
/// from the socket goes on as plaintext bytes to the TCP framing behind this handler; plaintext
/// written by it leaves encrypted. A close sends close_notify; the client's close_notify reads as
/// the end of its input. Handshakes, failed handshakes and TLS errors are counted.
final class TLSServerHandler: ChannelDuplexHandler {
  typealias InboundIn = ByteBuffer
  typealias InboundOut = ByteBuffer
  typealias OutboundIn = ByteBuffer
  typealias OutboundOut = ByteBuffer

  private let ssl: OpaquePointer
  private let readBIO: OpaquePointer
  private let writeBIO: OpaquePointer
  private let tls: TLSServerContext  // keeps the SSL_CTX alive
  private let counters: ListenerCounters
  private var handshakeDone = false
  /// Set once close_notify was sent or a fatal error seen: nothing more is read or written.
  private var finished = false
  /// Set once the connection was counted as a failed handshake.
  private var failureCounted = false
  /// Set once the client's close_notify was read: what it sends after is dropped unread.
  private var inputEnded = false

  init(tls: TLSServerContext, counters: ListenerCounters) throws(TLSServerError) {
    guard let ssl = SSL_new(tls.ctx) else { throw TLSServerError("SSL_new failed") }
    guard let r = BIO_new(BIO_s_mem()), let w = BIO_new(BIO_s_mem()) else {
      SSL_free(ssl)
      throw TLSServerError("BIO_new failed")
    }
    SSL_set_bio(ssl, r, w)
    SSL_set_accept_state(ssl)
    self.ssl = ssl
    self.readBIO = r
    self.writeBIO = w
    self.tls = tls
    self.counters = counters
  }

  deinit { SSL_free(ssl) }

  func channelRead(context: ChannelHandlerContext, data: NIOAny) {
    guard !finished, !inputEnded else { return }
    let input = unwrapInboundIn(data)
    let written = input.withUnsafeReadableBytes { raw -> Bool in
      guard let base = raw.baseAddress, raw.count > 0 else { return true }
      return BIO_write(readBIO, base, Int32(clamping: raw.count)) == Int32(clamping: raw.count)
    }
    guard written else { return fail(context, handshake: !handshakeDone) }
    if !handshakeDone {
      ERR_clear_error()
      let rc = SSL_do_handshake(ssl)
      if rc == 1 {
        handshakeDone = true
        counters.update { $0.tlsHandshakes += 1 }
      } else if !Self.wantsMore(SSL_get_error(ssl, rc)) {
        return fail(context, handshake: true)  // the alert goes out first
      }
    }
    if handshakeDone { readPlaintext(context) }
    if !finished { writeCiphertext(context, promise: nil, flush: true) }
  }

  private func readPlaintext(_ context: ChannelHandlerContext) {
    while !finished {
      OpenSSLErrorQueue.clearBeforeCall()
      var buffer = context.channel.allocator.buffer(capacity: 16 * 1024)
      var rc: Int32 = 0
      buffer.writeWithUnsafeMutableBytes(minimumWritableBytes: 16 * 1024) { out in
        rc = SSL_read(ssl, out.baseAddress, Int32(clamping: out.count))
        return rc > 0 ? Int(rc) : 0
      }
      if rc > 0 {
        context.fireChannelRead(wrapInboundOut(buffer))
        continue
      }
      let error = SSL_get_error(ssl, rc)
      if error == SSL_ERROR_ZERO_RETURN {
        // The client's close_notify: its input ended; what is outstanding is still answered.
        // Bytes after it would only pile up in the read BIO, so they are no longer taken.
        inputEnded = true
        context.fireUserInboundEventTriggered(ChannelEvent.inputClosed)
      } else if !Self.wantsMore(error) {
        fail(context, handshake: false)
      }
      return
    }
  }

  func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
    let plaintext = unwrapOutboundIn(data)
    guard handshakeDone, !finished else {
      promise?.fail(ChannelError.ioOnClosedChannel)
      return
    }
    OpenSSLErrorQueue.clearBeforeCall()
    let count = plaintext.readableBytes
    let rc = plaintext.withUnsafeReadableBytes { SSL_write(ssl, $0.baseAddress, Int32(clamping: $0.count)) }
    guard count == 0 || rc == Int32(clamping: count) else {
      promise?.fail(ChannelError.ioOnClosedChannel)
      return fail(context, handshake: false)
    }
    writeCiphertext(context, promise: promise, flush: false)
  }

  func close(context: ChannelHandlerContext, mode: CloseMode, promise: EventLoopPromise<Void>?) {
    if mode == .all, handshakeDone, !finished {
      finished = true
      ERR_clear_error()
      _ = SSL_shutdown(ssl)  // close_notify
      writeCiphertext(context, promise: nil, flush: true)
    }
    context.close(mode: mode, promise: promise)
  }

  func channelInactive(context: ChannelHandlerContext) {
    // A client that left (or was timed out) before the handshake ended failed it too.
    if !handshakeDone && !failureCounted {
      failureCounted = true
      counters.update { $0.tlsHandshakeFailures += 1 }
    }
    context.fireChannelInactive()
  }

  /// Counts the failure, sends what OpenSSL queued (an alert) and closes the connection.
  private func fail(_ context: ChannelHandlerContext, handshake: Bool) {
    guard !finished else { return }
    finished = true
    if handshake {
      failureCounted = true
      counters.update { $0.tlsHandshakeFailures += 1 }
    } else {
      counters.update { $0.tlsErrors += 1 }
    }
    writeCiphertext(context, promise: nil, flush: true)
    context.close(promise: nil)
  }

  /// Moves what OpenSSL wrote to its memory BIO onto the socket.
  private func writeCiphertext(_ context: ChannelHandlerContext, promise: EventLoopPromise<Void>?, flush: Bool) {
    let pending = Int(BIO_ctrl_pending(writeBIO))
    guard pending > 0 else {
      promise?.succeed(())
      return
    }
    var out = context.channel.allocator.buffer(capacity: pending)
    out.writeWithUnsafeMutableBytes(minimumWritableBytes: pending) { raw in
      Int(max(0, BIO_read(writeBIO, raw.baseAddress, Int32(clamping: raw.count))))
    }
    if flush {
      context.writeAndFlush(wrapOutboundOut(out), promise: promise)
    } else {
      context.write(wrapOutboundOut(out), promise: promise)
    }
  }

  private static func wantsMore(_ error: Int32) -> Bool {
    error == SSL_ERROR_WANT_READ || error == SSL_ERROR_WANT_WRITE
  }
}
