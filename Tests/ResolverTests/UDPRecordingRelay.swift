import Dispatch
import NIOCore
import NIOPosix
import Synchronization

@testable import Resolver

/// A UDP relay on 127.0.0.1 between one client and one server that records the datagrams it passes:
/// what a client sends on the wire, seen from outside it. The first sender that is not the server is
/// the client; everything it sends goes to the server, everything the server sends goes back to it.
final class UDPRecordingRelay: Sendable {
  let channel: any Channel
  private let record: Log

  private init(channel: any Channel, record: Log) {
    self.channel = channel
    self.record = record
  }

  /// Starts a relay to `server` on a free port of 127.0.0.1.
  static func start(to server: ServerEndpoint) async throws -> UDPRecordingRelay {
    let record = Log()
    let target = server.socketAddress
    let channel = try await DatagramBootstrap(group: MultiThreadedEventLoopGroup.singleton)
      .bindClosingOnFailure(to: try SocketAddress(ipAddress: "127.0.0.1", port: 0)) { channel in
        channel.eventLoop.makeCompletedFuture {
          try channel.pipeline.syncOperations.addHandler(Relay(server: target, record: record))
        }
      }
    return UDPRecordingRelay(channel: channel, record: record)
  }

  /// Where the client sends to.
  var endpoint: ServerEndpoint? {
    guard let port = channel.localAddress?.port else { return nil }
    return ServerEndpoint(ip: "127.0.0.1", port: port)
  }

  /// One datagram passed on: who sent it, its size, when (monotonic nanoseconds).
  struct Passed: Sendable {
    let fromClient: Bool
    let size: Int
    let at: UInt64
  }

  /// Every datagram passed so far, in order.
  var passed: [Passed] { record.entries.withLock { $0 } }

  func close() async { try? await channel.close() }

  private final class Log: Sendable {
    let entries = Mutex<[Passed]>([])
    func add(fromClient: Bool, size: Int) {
      let at = DispatchTime.now().uptimeNanoseconds
      entries.withLock { $0.append(Passed(fromClient: fromClient, size: size, at: at)) }
    }
  }

  private final class Relay: ChannelInboundHandler {
    typealias InboundIn = AddressedEnvelope<ByteBuffer>
    typealias OutboundOut = AddressedEnvelope<ByteBuffer>
    let server: SocketAddress
    let record: Log
    var client: SocketAddress?

    init(server: SocketAddress, record: Log) {
      self.server = server
      self.record = record
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
      let envelope = unwrapInboundIn(data)
      if envelope.remoteAddress == server {
        guard let client else { return }
        record.add(fromClient: false, size: envelope.data.readableBytes)
        context.writeAndFlush(
          wrapOutboundOut(AddressedEnvelope(remoteAddress: client, data: envelope.data)), promise: nil)
      } else {
        client = envelope.remoteAddress
        record.add(fromClient: true, size: envelope.data.readableBytes)
        context.writeAndFlush(
          wrapOutboundOut(AddressedEnvelope(remoteAddress: server, data: envelope.data)), promise: nil)
      }
    }
  }
}
