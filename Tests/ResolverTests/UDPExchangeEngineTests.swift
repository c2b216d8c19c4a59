import Foundation
import Synchronization
import Testing

@testable import Resolver

#if canImport(Glibc)
  import Glibc
#endif

/// The engine thread as the executor of resolutions and the reader of the listener's sockets:
/// real sockets on 127.0.0.1.
@Suite struct UDPExchangeEngineTests {
  let engine = UDPExchangeEngine.shared

  @Test func tasksPreferringTheEngineRunOnItsThreadAndStayThere() async throws {
    let executor = try #require(engine.taskExecutor)
    let threads = await Task(executorPreference: executor) { () -> [String?] in
      var seen = [Self.threadName()]
      // Resumed after a suspension: still on the engine thread, not on the cooperative pool.
      try? await Task.sleep(for: .milliseconds(5))
      seen.append(Self.threadName())
      return seen
    }.value
    #expect(threads == ["sotto-engine", "sotto-engine"])
  }

  @Test func aWatchedSocketIsReadUntilUnwatched() async throws {
    let (fd, port) = try Self.boundUDPSocket()
    defer { close(fd) }
    let reads = Mutex(0)
    #expect(
      engine.watch(fd) {
        var buffer = [UInt8](repeating: 0, count: 64)
        while recv(fd, &buffer, buffer.count, 0) > 0 { reads.withLock { $0 += 1 } }
      })
    try Self.send([1, 2, 3], to: port)
    for _ in 0..<200 where reads.withLock({ $0 }) == 0 {
      try await Task.sleep(for: .milliseconds(10))
    }
    #expect(reads.withLock { $0 } == 1)

    await engine.unwatch(fd)
    try Self.send([4, 5, 6], to: port)
    try await Task.sleep(for: .milliseconds(200))
    #expect(reads.withLock { $0 } == 1, "read after unwatch")
    // The datagram is still queued for the socket's owner.
    var buffer = [UInt8](repeating: 0, count: 64)
    #expect(recv(fd, &buffer, buffer.count, 0) == 3)
  }

  /// The calling thread's name (synchronous: `Thread.current` is unavailable in async code).
  static func threadName() -> String? { Thread.current.name }

  /// A non-blocking UDP socket on 127.0.0.1 and its port.
  static func boundUDPSocket() throws -> (Int32, UInt16) {
    let fd = socket(
      AF_INET,
      Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_NONBLOCK.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
    try #require(fd >= 0)
    var address = sockaddr_in()
    address.sin_family = sa_family_t(AF_INET)
    address.sin_addr.s_addr = inet_addr("127.0.0.1")
    var length = socklen_t(MemoryLayout<sockaddr_in>.size)
    let bound = withUnsafeMutablePointer(to: &address) {
      $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
        bind(fd, $0, length) == 0 && getsockname(fd, $0, &length) == 0
      }
    }
    try #require(bound)
    return (fd, UInt16(bigEndian: address.sin_port))
  }

  /// Sends one datagram to 127.0.0.1:`port` from a new socket.
  static func send(_ bytes: [UInt8], to port: UInt16) throws {
    let fd = socket(AF_INET, Int32(SOCK_DGRAM.rawValue), 0)
    try #require(fd >= 0)
    defer { close(fd) }
    var address = sockaddr_in()
    address.sin_family = sa_family_t(AF_INET)
    address.sin_addr.s_addr = inet_addr("127.0.0.1")
    address.sin_port = port.bigEndian
    let sent = withUnsafePointer(to: &address) {
      $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
        sendto(fd, bytes, bytes.count, 0, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
      }
    }
    try #require(sent == bytes.count)
  }
}
