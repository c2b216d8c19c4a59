import NIOCore

#if canImport(Glibc)
  import Glibc
#elseif canImport(Darwin)
  import Darwin
#endif

/// The budget a client address counts against for the per-client limits (the query rate and
/// the open connections): an IPv4 address, or an IPv6 /64. A /64 is one subscriber's network,
/// in which a host may use any address (SLAAC, RFC 8981's temporary addresses rotate within
/// it), so one host cannot multiply its share by changing addresses; dnsdist's per-client rules
/// take /64 too. An IPv4 address mapped into IPv6 (`::ffff:a.b.c.d`, a client of a dual-stack
/// `[::]` listener) counts as that IPv4 address. Made from the socket address's bytes: no text.
enum ClientKey: Hashable, Sendable, CustomStringConvertible {
  /// The address in network byte order.
  case v4(UInt32)
  /// The first 64 bits, in network byte order.
  case v6(UInt64)
  /// A peer address that is neither (a Unix socket, none known): one budget for all of them.
  case unknown

  init(_ address: RawClientAddress?) {
    switch address {
    case .v4(let a): self = .v4(a.sin_addr.s_addr)
    case .v6(let a): self = Self(in6: a.sin6_addr)
    case .other(let a): self = Self(a)
    case nil: self = .unknown
    }
  }

  init(_ address: SocketAddress?) {
    switch address {
    case .v4(let a): self = .v4(a.address.sin_addr.s_addr)
    case .v6(let a): self = Self(in6: a.address.sin6_addr)
    default: self = .unknown
    }
  }

  private init(in6 address: in6_addr) {
    self = withUnsafeBytes(of: address) { bytes in
      let mapped = bytes.prefix(10).allSatisfy { $0 == 0 } && bytes[10] == 0xFF && bytes[11] == 0xFF
      if mapped { return .v4(bytes.loadUnaligned(fromByteOffset: 12, as: UInt32.self)) }
      return .v6(bytes.loadUnaligned(fromByteOffset: 0, as: UInt64.self))
    }
  }

  /// The address or the /64, as `inet_ntop` writes it.
  var description: String {
    switch self {
    case .v4(let raw):
      var a = sockaddr_in()
      a.sin_family = sa_family_t(AF_INET)
      a.sin_addr.s_addr = raw
      return SocketAddress(a, host: "").ipAddress ?? "?"
    case .v6(let prefix):
      var a = sockaddr_in6()
      a.sin6_family = sa_family_t(AF_INET6)
      withUnsafeMutableBytes(of: &a.sin6_addr) { $0.storeBytes(of: prefix, toByteOffset: 0, as: UInt64.self) }
      return (SocketAddress(a, host: "").ipAddress ?? "?") + "/64"
    case .unknown: return "?"
    }
  }
}
