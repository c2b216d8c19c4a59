import CDoQServer
import CLinuxEpoll
import NIOCore

#if canImport(Glibc)
  import Glibc
#endif

/// One event of the DoQ server engine.
package enum DoQServerEvent {
  /// A complete query (the DNS message, without its length prefix) on a client stream.
  case query(connection: UInt64, stream: Int64, message: [UInt8])
  case handshakeCompleted(connection: UInt64)
  /// The connection ended and was freed (`code` 0: clean or idle).
  case connectionClosed(connection: UInt64, code: UInt64)
}

/// Why the DoQ server engine could not start.
public struct DoQServerError: Error, Sendable, CustomStringConvertible {
  /// What went wrong, for the operator.
  public let message: String
  public var description: String { message }
}

/// DoQ application error codes (RFC 9250 §8.4).
package enum DoQErrorCode {
  package static let noError: UInt64 = 0x0
  package static let internalError: UInt64 = 0x1
  package static let protocolError: UInt64 = 0x2
  package static let excessiveLoad: UInt64 = 0x4
}

/// The C DoQ server engine (`CDoQServer`: ngtcp2 0.12 server mode + GnuTLS, ALPN `doq`, session
/// tickets and 0-RTT) on one NIO datagram channel: moves datagrams in and out, keeps the engine's
/// timer and hands its events to `handle`, all on the channel's event loop. Answers may be given
/// during `handle` or later (`answer`, then `send`). Used by the client listener's DoQ addresses and
/// the lab's DoQ responders.
package final class DoQServerDriver: ChannelInboundHandler {
  package typealias InboundIn = AddressedEnvelope<ByteBuffer>
  package typealias OutboundOut = AddressedEnvelope<ByteBuffer>
  package static let name = "doq-server"

  private let server: OpaquePointer
  private let handle: (DoQServerEvent, DoQServerDriver) -> Void
  private var channel: (any Channel)?
  private var timer: Scheduled<Void>?
  private var buffer = [UInt8](repeating: 0, count: 1500)
  /// Called at the end of every `send()` (after each datagram read, timer and answer).
  package var afterSend: ((DoQServerDriver) -> Void)?
  /// The channel's socket when it is bound to a wildcard address (`answerFromDestinations`), until
  /// the channel is inactive (NIO closes the socket before it removes the handler).
  private var wildcardSocket: Int32?

  /// An engine for the socket bound at ip:port with the PEM chain and key; at most `maxConnections`
  /// open connections (0: no limit), a new client beyond them is dropped; a message longer than
  /// `maxMessage` octets (0: 65535) gets its stream reset.
  package init(
    certificatePEM: String, privateKeyPEM: String, ip: String, port: Int, handshakeTimeout: TimeAmount,
    idleTimeout: TimeAmount, maxConnections: Int = 0, maxMessage: Int = 0,
    handle: @escaping (DoQServerEvent, DoQServerDriver) -> Void
  ) throws(DoQServerError) {
    var err = [CChar](repeating: 0, count: 256)
    guard
      let server = doqs_server_new(
        certificatePEM, privateKeyPEM, ip, UInt16(clamping: port), UInt64(max(0, handshakeTimeout.nanoseconds)),
        UInt64(max(0, idleTimeout.nanoseconds)), &err, err.count)
    else {
      throw DoQServerError(message: Self.text(err))
    }
    doqs_server_set_limits(server, UInt64(max(0, maxConnections)), max(0, maxMessage))
    self.server = server
    self.handle = handle
  }

  deinit { doqs_server_free(server) }

  /// Connections that start from now on get this chain and key (a renewed certificate); open
  /// ones keep theirs. On the driver's event loop.
  package func setIdentity(certificatePEM: String, privateKeyPEM: String) throws(DoQServerError) {
    var err = [CChar](repeating: 0, count: 256)
    guard doqs_server_set_identity(server, certificatePEM, privateKeyPEM, &err, err.count) == 0 else {
      throw DoQServerError(message: Self.text(err))
    }
  }

  /// The engine's counters.
  package var statistics: doqs_stats {
    var s = doqs_stats()
    doqs_server_stats(server, &s)
    return s
  }

  package func handlerAdded(context: ChannelHandlerContext) { channel = context.channel }

  /// The channel's event loop, once the driver is in its pipeline.
  package var eventLoop: (any EventLoop)? { channel?.eventLoop }

  package func handlerRemoved(context: ChannelHandlerContext) {
    timer?.cancel()
    timer = nil
    channel = nil
  }

  /// For a channel bound to 0.0.0.0 or :: (its socket `fd`, owned by the channel, with
  /// `receivePacketInfo` on): a connection's datagrams leave by sendmsg from the address its first
  /// datagram was sent to (the engine keeps it as the connection's tag), as a QUIC client drops
  /// those from any other address. NIO's own writes let the route pick the source.
  package func answerFromDestinations(socket fd: Int32) { wildcardSocket = fd }

  package func channelInactive(context: ChannelHandlerContext) {
    wildcardSocket = nil
    context.fireChannelInactive()
  }

  package func channelRead(context: ChannelHandlerContext, data: NIOAny) {
    let envelope = Self.unwrapInboundIn(data)
    guard let ip = envelope.remoteAddress.ipAddress, let port = envelope.remoteAddress.port else { return }
    if wildcardSocket != nil {
      var source = envelope.metadata?.packetInfo.map(Self.replySource) ?? sotto_reply_source()
      doqs_server_set_read_tag(server, &source, MemoryLayout<sotto_reply_source>.size)
    }
    envelope.data.withUnsafeReadableBytes { raw in
      guard let base = raw.baseAddress?.assumingMemoryBound(to: UInt8.self) else { return }
      _ = doqs_server_read(server, ip, UInt16(clamping: port), base, raw.count)
    }
    send()
  }

  /// Queues `response` as the answer on `stream` (then FIN); false when the stream or its
  /// connection is gone. Goes out with the next `send()`.
  @discardableResult
  package func answer(connection: UInt64, stream: Int64, _ response: [UInt8]) -> Bool {
    doqs_server_answer(server, connection, stream, response, response.count) == 0
  }

  /// Resets `stream` (RESET_STREAM and STOP_SENDING) with `code`.
  package func reset(connection: UInt64, stream: Int64, code: UInt64) {
    _ = doqs_server_reset(server, connection, stream, code)
  }

  /// Closes `connection` with `code` once its queued answers are out.
  package func close(connection: UInt64, code: UInt64) {
    _ = doqs_server_close(server, connection, code)
  }

  /// Closes `connection` at once with `code` (its CONNECTION_CLOSE goes out with the next `send()`).
  package func abort(connection: UInt64, code: UInt64) {
    _ = doqs_server_abort(server, connection, code)
  }

  /// Closes every connection at once (CONNECTION_CLOSE, DOQ_NO_ERROR) and sends the closes.
  package func closeAll() {
    doqs_server_close_all(server)
    send()
  }

  /// The client address of `connection`; nil when it is gone.
  package func remote(of connection: UInt64) -> SocketAddress? {
    var ip = [CChar](repeating: 0, count: 64)
    var port: UInt16 = 0
    guard doqs_server_remote(server, connection, &ip, ip.count, &port) == 0 else { return nil }
    return try? SocketAddress(ipAddress: Self.text(ip), port: Int(port))
  }

  /// Hands out the engine's events, writes every datagram it has and re-arms its timer.
  package func send() {
    processEvents()
    guard let channel else { return }
    var ip = [CChar](repeating: 0, count: 64)
    var port: UInt16 = 0
    var wrote = false
    while true {
      let n = doqs_server_write(server, &buffer, buffer.count, &ip, ip.count, &port)
      guard n > 0 else { break }
      guard let to = try? SocketAddress(ipAddress: Self.text(ip), port: Int(port)) else { continue }
      if let fd = wildcardSocket {
        var source = sotto_reply_source()
        if doqs_server_write_tag(server, &source, MemoryLayout<sotto_reply_source>.size)
          != MemoryLayout<sotto_reply_source>.size
        {
          source = sotto_reply_source()
        }
        sendFromDestination(fd, count: n, to: to, from: source)
        continue
      }
      let out = AddressedEnvelope(remoteAddress: to, data: channel.allocator.buffer(bytes: buffer[0..<n]))
      channel.write(out, promise: nil)
      wrote = true
    }
    if wrote { channel.flush() }
    processEvents()  // connections reaped by the writes
    arm(channel)
    afterSend?(self)
  }

  /// Sends the first `count` octets of `buffer` to `client` from `source` (the route's pick when
  /// it holds no address). A datagram the kernel refuses is lost, as on a full NIO channel; QUIC
  /// sends it again.
  private func sendFromDestination(_ fd: Int32, count: Int, to client: SocketAddress, from source: sotto_reply_source) {
    var source = source
    buffer.withUnsafeMutableBytes { bytes in
      var vector = iovec(iov_base: bytes.baseAddress, iov_len: count)
      client.withSockAddr { sa, len in
        withUnsafeTemporaryAllocation(byteCount: sotto_reply_source_space(), alignment: 16) { control in
          var message = msghdr()
          message.msg_name = UnsafeMutableRawPointer(mutating: sa)
          message.msg_namelen = socklen_t(len)
          withUnsafeMutablePointer(to: &vector) { v in
            message.msg_iov = v
            message.msg_iovlen = 1
            let length = control.baseAddress.map { sotto_reply_source_write(&source, $0) } ?? 0
            message.msg_control = length > 0 ? control.baseAddress : nil
            message.msg_controllen = length
            _ = sendmsg(fd, &message, 0)
          }
        }
      }
    }
  }

  /// A received datagram's destination as the source to answer from.
  private static func replySource(_ info: NIOPacketInfo) -> sotto_reply_source {
    var out = sotto_reply_source()
    out.ifindex = UInt32(clamping: info.interfaceIndex)
    switch info.destinationAddress {
    case .v4(let a):
      out.family = 2
      withUnsafeBytes(of: a.address.sin_addr) { raw in
        withUnsafeMutableBytes(of: &out.addr) { $0.copyMemory(from: UnsafeRawBufferPointer(rebasing: raw.prefix(4))) }
      }
    case .v6(let a):
      out.family = 10
      withUnsafeBytes(of: a.address.sin6_addr) { raw in
        withUnsafeMutableBytes(of: &out.addr) { $0.copyMemory(from: UnsafeRawBufferPointer(rebasing: raw.prefix(16))) }
      }
    default:
      break
    }
    return out
  }

  private func processEvents() {
    var ev = doqs_event()
    while doqs_server_next_event(server, &ev) != 0 {
      switch Int(ev.type) {
      case Int(DOQS_EVENT_QUERY):
        let message = ev.data.map { Array(UnsafeBufferPointer(start: $0, count: ev.len)) } ?? []
        handle(.query(connection: ev.conn, stream: ev.stream_id, message: message), self)
      case Int(DOQS_EVENT_HANDSHAKE_COMPLETED):
        handle(.handshakeCompleted(connection: ev.conn), self)
      case Int(DOQS_EVENT_CONNECTION_CLOSED):
        handle(.connectionClosed(connection: ev.conn, code: ev.code), self)
      default:
        break
      }
    }
  }

  private func arm(_ channel: any Channel) {
    timer?.cancel()
    timer = nil
    let delay = doqs_server_expiry_delay(server)
    guard delay >= 0 else { return }
    let bound = NIOLoopBound(self, eventLoop: channel.eventLoop)
    timer = channel.eventLoop.scheduleTask(in: .nanoseconds(max(delay, 1_000))) {
      let driver = bound.value
      doqs_server_handle_expiry(driver.server)
      driver.send()
    }
  }

  private static func text(_ chars: [CChar]) -> String {
    String(decoding: chars.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
  }
}
