import NIOCore

#if canImport(Glibc)
  import Glibc
#elseif canImport(Darwin)
  import Darwin
#endif

/// A client's address as a plain value: keeping it holds no reference (a `SocketAddress` is a
/// boxed class), so recording and overwriting a hit does no reference counting for it. The UDP
/// socket loop's full path carries it from the datagram to the answer's `sendto`: a
/// `SocketAddress` made from a `sockaddr_in` is a heap box with its `inet_ntop` text, made for
/// every cold resolution.
enum RawClientAddress: Sendable, CustomStringConvertible {
  case v4(sockaddr_in)
  case v6(sockaddr_in6)
  case other(SocketAddress)

  init(_ address: SocketAddress) {
    switch address {
    case .v4(let a): self = .v4(a.address)
    case .v6(let a): self = .v6(a.address)
    default: self = .other(address)
    }
  }

  /// The address as NIO holds it, without a host text.
  var socketAddress: SocketAddress {
    switch self {
    case .v4(let a): return SocketAddress(a, host: "")
    case .v6(let a): return SocketAddress(a, host: "")
    case .other(let a): return a
    }
  }

  /// The client's port.
  var port: UInt16? {
    switch self {
    case .v4(let a): return UInt16(bigEndian: a.sin_port)
    case .v6(let a): return UInt16(bigEndian: a.sin6_port)
    case .other(let a): return a.port.map { UInt16(clamping: $0) }
    }
  }

  /// `SocketAddress.ipAddress` of the address it was made from.
  var ipAddress: String? { socketAddress.ipAddress }

  /// As `SocketAddress` describes itself (for logs): made only when a log line is written.
  var description: String { socketAddress.description }

  /// Calls `body` with the C socket address and its length.
  func withSockAddr<R>(_ body: (UnsafePointer<sockaddr>, Int) throws -> R) rethrows -> R {
    switch self {
    case .v4(var a):
      return try withUnsafePointer(to: &a) {
        try $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { try body($0, MemoryLayout<sockaddr_in>.size) }
      }
    case .v6(var a):
      return try withUnsafePointer(to: &a) {
        try $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { try body($0, MemoryLayout<sockaddr_in6>.size) }
      }
    case .other(let a):
      return try a.withSockAddr(body)
    }
  }
}
