import NIOCore
import Testing

@testable import Resolver

/// Before its handshake completes, a DoQ client fails a probe at once on a reply that cannot be
/// QUIC (a plain-DNS FORMERR from the port), but not on a server's 1-RTT packet that overtook its
/// Handshake packet: that one would have damped a working DoQ server for a day.
@Suite struct DoQUnusableDatagramTests {
  func engine() async throws -> QUICClientEngine {
    let context = try DoQClientContext()
    let store = await context.trust.store()
    return try QUICClientEngine(
      context: context, verifyStore: store, remote: try SocketAddress(ipAddress: "127.0.0.1", port: 853),
      local: try SocketAddress(ipAddress: "127.0.0.1", port: 40_853), expectedName: nil,
      handshakeTimeout: .seconds(1), idleTimeout: .seconds(5), resumption: nil, earlyData: false)
  }

  func read(_ quic: QUICClientEngine, _ bytes: [UInt8]) {
    _ = bytes.withUnsafeBytes { quic.read($0) }
  }

  @Test func onlyRepliesThatCannotBeQUICCountAsUnusable() async throws {
    let quic = try await engine()
    // A short-header (1-RTT) packet, fixed bit set: QUIC, early.
    read(quic, [0x41] + [UInt8](repeating: 0xA5, count: 40))
    #expect(quic.unusableDatagrams == 0)
    // A long header of version 1 (an Initial it cannot decrypt): QUIC.
    read(quic, [0xC0, 0, 0, 0, 1, 8] + [UInt8](repeating: 0x11, count: 40))
    #expect(quic.unusableDatagrams == 0)
    // NSD's FORMERR to an Initial: its ID echoes the Initial's first octets (long-header bit set),
    // then DNS flags where a version would be.
    read(quic, [0xC3, 0x00, 0x81, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00])
    #expect(quic.unusableDatagrams == 1)
    // A short header without its fixed bit, and a runt.
    read(quic, [0x01] + [UInt8](repeating: 0, count: 20))
    read(quic, [0x41, 0x00])
    #expect(quic.unusableDatagrams == 3)
  }
}
